/* train: trainer set-up (for a run, or as a memory plan), the training step and evaluation. */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena_backend.h"
#include "comm_mpi.h"
#include "comm_plan.h"
#include "corpus.h"
#include "hf.h"
#include "optimizer.h"
#include "train_backend.h"

/* Where the saved tensors go, decided in a plan (a run takes its plan's choice): *split, the
 * rows (tokens) of every layer's saved tensors kept on the device (memory.offload; the rest
 * wait in host memory), and *keep, the layers that save their attention output (all under
 * memory.checkpointing selective, none under full; under auto the most that the device, with
 * offload, and the host's share of this rank hold). memory.offload auto and checkpointing
 * auto measure the free device memory once every rank has recorded everything else (ranks
 * sharing a GPU split it). Returns -1, with the reason in why, when nothing fits. */
static int place_saved_for(struct trainer *t, const struct runtime *rt, const struct mem_plan *plan,
                           int64_t *split, int *keep, char *why, size_t whylen) {
    const struct cfg *c = &t->job.cfg;
    const struct model *m = &t->model;
    const struct backend *be = m->be;
    int Ly = t->job.mc.n_layers, mode = c->memory.offload, shape[2], autokeep = c->memory.checkpointing == CKPT_AUTO;
    size_t rb[2];
    int nsets = model_saved_rows(m, shape, rb);
    *split = m->T;
    *keep = m->ckpt == MODEL_SAVE_SELECTIVE ? Ly : 0;
    if (m->ckpt == MODEL_SAVE_ALL) return 0;
    int measure = (mode == OFFLOAD_AUTO || autokeep) && be->mem_free;
    if (!measure && mode == OFFLOAD_AUTO) return 0; /* no device limit: nothing offloaded, every layer kept */
    size_t budget = SIZE_MAX;
    if (measure) {
        comm_barrier(&t->ctl);
        double free_b = (double)be->mem_free(be) / t->gpu_sharing - c->memory.reserve_gib * MEM_GIB;
        comm_barrier(&t->ctl);
        budget = free_b > 0 ? (size_t)free_b : 0;
    }
    /* this rank's share of its node's host memory, less what it has planned there already (the
     * host optimizer's gradient shard is placed with the saved tensors: counted per split) */
    double node_gib = mem_node_host_gib(c->device.host_memory_gib, c->memory.host_reserve_gib);
    double host_left = node_gib * MEM_GIB / (rt->local_size > 0 ? rt->local_size : 1) - (double)mem_plan_host(plan);
    for (int k = *keep; k >= (autokeep && measure ? 0 : *keep); k--) {
        int n[2] = {Ly, k};
        size_t fixed = model_attn_scratch_bytes(m, k);
        int64_t s = offload_split_for(mode, m->T, OFFLOAD_STEP, shape, rb, n, nsets, fixed, budget);
        if (s < 0) continue;
        if (autokeep && k > 0 &&
            model_offloaded_bytes(m, s, k) + model_grad_shard_bytes(m, s, k, t->lend_grads) > host_left)
            continue;
        *split = s;
        *keep = k;
        return 0;
    }
    int k = autokeep ? 0 : *keep, n[2] = {Ly, k};
    size_t need = offload_need(m->T, shape, rb, n, nsets, model_attn_scratch_bytes(m, k), 0);
    snprintf(why, whylen,
             "with every token of every layer offloaded%s the saved activations still need %.2f GiB of device "
             "memory, %.2f GiB is free after the weights, optimizer state and scratch (memory.reserve_gib %.2f kept "
             "back); try fewer tokens per rank (more ranks or a shorter data.seq_len)",
             autokeep ? " and every attention output recomputed" : "", need / MEM_GIB, budget / MEM_GIB,
             c->memory.reserve_gib);
    *split = 0;
    *keep = k;
    return -1;
}

/* The weights: loaded from the HF directory or randomly initialised, each rank only the
 * ranges it holds. */
struct weight_source {
    const struct cfg       *c;
    const struct param_table *pt;
    struct hf_reader       *hf; /* NULL: random */
};

static void fill_weights(void *ctx, int64_t lo, int64_t n, float *dst) {
    struct weight_source *w = ctx;
    char err[1024];
    if (!w->hf) params_init_random_range(w->pt, w->c->model.seed, lo, n, dst);
    else if (hf_reader_read(w->hf, lo, n, dst, err, sizeof err)) RT_BAD_INPUT("%s", err);
}

static void init_weights(struct trainer *t) {
    const struct cfg *c = &t->job.cfg;
    char err[1024];
    struct weight_source w = {c, &t->model.pt, NULL};
    if (c->model.init == INIT_HF && hf_reader_open(&w.hf, c->model.hf_dir, &t->model.pt, err, sizeof err))
        RT_BAD_INPUT("%s", err);
    pstore_fill(&t->model.ps, fill_weights, &w);
    hf_reader_close(w.hf);
}

/* The plain host memory a run allocates besides the backend's (trainer_build's token
 * buffers below; ckpt_io.c's staging buffer during a save or a load; on rank 0 the export's
 * full fp32 weights, trainer_gather_params, while the rest is still allocated). */
static void plan_plain_host(const struct trainer *t, struct mem_plan *plan) {
    const struct cfg *c = &t->job.cfg;
    size_t nseq = (size_t)c->train.seqs_per_step * (size_t)t->L;
    mem_plan_add(plan, "step sequences and labels", MEM_PLAIN, 0, nseq * sizeof(int32_t), 2);
    mem_plan_add(plan, "shard tokens, labels and positions", MEM_PLAIN, 0,
                 (size_t)t->T * (2 * sizeof(int32_t) + sizeof(int64_t)), 1);
    if (c->checkpoint.dir[0])
        mem_plan_add(plan, "checkpoint staging buffer (during a save or a load)", MEM_PLAIN, 0, CKPT_STAGE_BYTES, 1);
    if (c->export_.dir[0] && t->groups.rank == 0)
        mem_plan_add(plan, "fp32 weights of the export (at the end)", MEM_PLAIN, 0,
                     (size_t)t->model.pt.total * sizeof(float), 1);
}

static void trainer_build(struct trainer *t, const struct job *j, const struct runtime *rt,
                          const struct train_opts *o, struct mem_plan *plan);
static int local_seqs(const struct trainer *t, int nseq);

/* memory.tile_tokens auto under checkpointing: T split evenly into tiles of at most 4096,
 * 8192 or 16384 tokens. Larger tiles make fewer, larger GEMMs (7B at 64K on an H200: 47.3%
 * MFU with 4096, 48.0% with 16384; docs/benchmarks.md) but their scratch comes out of the
 * device memory the saved tensors could use. Each is planned as plan is (device budget,
 * ranks per GPU); the largest whose plan fits the device and this rank's share of the host
 * and keeps as many attention outputs (checkpointing auto) as tiles of 4096 is taken, the
 * smallest choice of any rank on every rank. Collective over t->ctl (every rank plans the
 * same candidates) unless the ranks are planned stand-ins. Returns the tile in tokens. */
static int auto_tile(struct trainer *t, const struct runtime *rt, const struct train_opts *o,
                     const struct mem_plan *plan) {
    static const int most[] = {MODEL_TILE_AUTO, 2 * MODEL_TILE_AUTO, 4 * MODEL_TILE_AUTO};
    const struct cfg *c = &t->job.cfg;
    int T = (int)t->T, best = model_tile_even(T, most[0]), last = best, keep0 = 0;
    if (model_tile_even(T, most[2]) == best) return best; /* one candidate: the same on every rank */
    double share = mem_node_host_gib(c->device.host_memory_gib, c->memory.host_reserve_gib) * MEM_GIB /
                   (rt->local_size > 0 ? rt->local_size : 1);
    for (int i = 0; i < 3; i++) {
        int tile = model_tile_even(T, most[i]);
        if (i > 0 && tile == last) continue; /* T fits fewer candidates: the same on every rank */
        last = tile;
        struct job j1 = t->job;
        j1.cfg.memory.tile_tokens = tile;
        struct mem_plan p;
        mem_plan_init(&p, plan->gpu_gib, plan->measured, plan->ranks_per_gpu);
        p.backend_made = plan->backend_made;
        struct trainer *pt = rt_calloc(1, sizeof *pt, "trainer");
        trainer_build(pt, &j1, rt, o, &p);
        int ok = !p.no_fit[0] && mem_plan_fits(&p) && (double)mem_plan_host(&p) <= share;
        if (i == 0) keep0 = pt->model.keep;
        else if (ok && pt->model.keep >= keep0) best = tile;
        trainer_free(pt);
        free(pt);
        mem_plan_free(&p);
    }
    int neg = -best; /* the smallest over the ranks (planned stand-ins: each its own) */
    if (rt->world_comm != MPI_COMM_NULL) comm_all_reduce(&t->ctl, &neg, &neg, 1, COMM_I32, COMM_MAX);
    return -neg;
}

/* The plan of a run's start-up (t: the run's trainer, its backend open but nothing allocated),
 * against what train_backend_budget measures: its arena, laid out, into t->arena; the plan's
 * placement of the saved tensors (place_saved_for) into split and keep, its tile into tile.
 * Returns -1 when nothing fits (why). */
static int plan_run(struct trainer *t, const struct runtime *rt, const struct train_opts *o, int64_t *split,
                    int *keep, int *tile, char *why, size_t whylen) {
    double gpu_gib;
    int ranks_per_gpu;
    train_backend_budget(t, &gpu_gib, &ranks_per_gpu);
    struct mem_plan plan;
    mem_plan_init(&plan, gpu_gib, gpu_gib > 0, ranks_per_gpu);
    plan.backend_made = gpu_gib > 0;
    struct trainer *pt = rt_calloc(1, sizeof *pt, "trainer");
    trainer_build(pt, &t->job, rt, o, &plan);
    int rc = plan.no_fit[0] ? -1 : 0;
    *split = pt->model.split;
    *keep = pt->model.keep;
    *tile = pt->model.tile;
    snprintf(why, whylen, "%s", plan.no_fit);
    arena_move(&t->arena, &plan.arena);
    trainer_free(pt);
    free(pt);
    mem_plan_free(&plan);
    return rc;
}

/* The trainer's start-up, shared by a memory plan (every backend buffer recorded into plan, no
 * weights made or loaded) and a run (plan NULL: the backend opened, the run's plan made, the
 * backend's buffers then handed out of its arena). */
static void trainer_build(struct trainer *t, const struct job *j, const struct runtime *rt,
                          const struct train_opts *o, struct mem_plan *plan) {
    memset(t, 0, sizeof *t);
    t->job = *j;
    const struct cfg *c = &t->job.cfg;
    groups_init(&t->groups, rt->world, j->cp, rt->rank);
    t->L = c->data.seq_len;
    t->T = t->L / j->cp;
    t->gpu_sharing = 1;
    if (rt->world_comm == MPI_COMM_NULL) comm_plan_init(&t->ctl, &t->groups.world, "ctl");
    else comm_mpi_init(&t->ctl, rt->world_comm, "ctl", c->parallel.timeout_s);
    char err[1024];
    const struct backend *be = plan ? train_backend_plan(t, rt, plan) : train_backend_open(t, rt);
    int64_t split = 0;
    int keep = 0, tile = c->memory.tile_tokens;
    if (!plan) { /* the run's plan, before anything is allocated */
        char why[1024];
        if (plan_run(t, rt, o, &split, &keep, &tile, why, sizeof why)) RT_NO_FIT("does not fit: %s", why);
        train_backend_attach(t);
    } else if (!tile && c->memory.checkpointing != CKPT_NONE) {
        tile = auto_tile(t, rt, o, plan);
    }
    static const int ckpt_map[] = {[CKPT_NONE] = MODEL_SAVE_ALL, [CKPT_FULL] = MODEL_SAVE_FULL,
                                   [CKPT_SELECTIVE] = MODEL_SAVE_SELECTIVE, [CKPT_AUTO] = MODEL_SAVE_SELECTIVE};
    model_init(&t->model, be, &j->mc, &t->cp, c->parallel.attention == RING_ZIGZAG, (int)t->T,
               ckpt_map[c->memory.checkpointing], tile,
               ring_call_block(c->memory.attention_block_tokens, j->cp, (int)t->T), &t->world, c->parallel.zero,
               c->memory.optimizer == OPTIMIZER_HOST);
    if (o) t->opts = *o;
    t->model.ring.local_only = t->opts.local_attention_only;
    if (!plan) init_weights(t);
    t->lend_grads = c->memory.optimizer == OPTIMIZER_HOST && local_seqs(t, c->train.seqs_per_step) == 1;
    /* a plan reads no data: the token buffers (seq_len x seqs_per_step on every rank) are recorded */
    if (plan) plan_plain_host(t, plan);
    if (plan && place_saved_for(t, rt, plan, &split, &keep, err, sizeof err))
        snprintf(plan->no_fit, sizeof plan->no_fit, "%s", err);
    if (plan && t->opts.place) split = t->opts.place_split, keep = t->opts.place_keep;
    model_place_saved(&t->model, split, keep, t->lend_grads);
    if (plan) {
        mem_plan_pack(plan);
        return;
    }
    arena_backend_check(be); /* the start-up is done: every planned buffer was allocated, and none will be */
    int kind = c->data.synthetic == SYNTHETIC_COPY ? DATA_COPY_TASK : DATA_NPY;
    if (data_open(&t->data, kind, c->data.train, t->L, j->mc.vocab_size,
                  c->data.sampling == SAMPLING_RANDOM, c->data.seed, err, sizeof err))
        RT_FATAL("%s", err);
    size_t nseq = (size_t)c->train.seqs_per_step * (size_t)t->L;
    t->seq_in = rt_malloc(nseq * sizeof(int32_t), "step sequences");
    t->seq_lab = rt_malloc(nseq * sizeof(int32_t), "step labels");
    t->tok = rt_malloc((size_t)t->T * sizeof(int32_t), "shard tokens");
    t->lab = rt_malloc((size_t)t->T * sizeof(int32_t), "shard labels");
    t->pos = rt_malloc((size_t)t->T * sizeof(int64_t), "shard positions");
    t->tok_loss = rt_malloc((size_t)t->T * sizeof(double), "shard token losses");
    t->tok_pred = rt_malloc((size_t)t->T * sizeof(int32_t), "shard token predictions");
}

void trainer_init(struct trainer *t, const struct job *j, const struct runtime *rt,
                  const struct train_opts *o) {
    trainer_build(t, j, rt, o, NULL);
}

void trainer_plan(struct trainer *t, const struct job *j, const struct runtime *rt, struct mem_plan *plan) {
    trainer_build(t, j, rt, NULL, plan);
}

void trainer_free(struct trainer *t) {
    free(t->seq_in);
    free(t->seq_lab);
    free(t->tok);
    free(t->lab);
    free(t->pos);
    free(t->tok_loss);
    free(t->tok_pred);
    data_close(&t->data);
    model_free(&t->model);
    train_backend_close(t);
    arena_free(&t->arena);
    comm_free(&t->ctl);
}

static void run_one(struct trainer *t, int i, float grad_scale, int train) {
    int zigzag = t->job.cfg.parallel.attention == RING_ZIGZAG;
    data_shard(t->seq_in + (size_t)i * t->L, t->seq_lab + (size_t)i * t->L, t->L, t->job.cp, t->groups.ring.index, zigzag,
               t->tok, t->lab, t->pos);
    model_forward_backward(&t->model, t->tok, t->lab, t->pos, grad_scale, train);
}

/* Whether this rank runs a stand-in sequence (no data parallel share of the step's
 * sequences, but its ZeRO-3 gathers are collective). */
static int stand_in(const struct trainer *t, int nseq) {
    return t->groups.data.index >= nseq && t->model.ps.wmode == PW_GATHER;
}

/* The sequences this rank runs in a step of nseq. */
static int local_seqs(const struct trainer *t, int nseq) {
    if (stand_in(t, nseq)) return 1;
    int d = t->groups.data.index;
    return d < nseq ? (nseq - d + t->job.dp - 1) / t->job.dp : 0;
}

/* Sum of this rank's token losses over sequences i = d, d + dp, ... (d: its data index) (read from
 * the backend once, after all of them); sink (NULL: none) receives each sequence's token
 * losses and predictions. Training steps give every rank as many sequences (job.c); the
 * last evaluation batch may not, and a ZeRO-3 store gathers each layer's weights over the
 * world, so a rank without a sequence then runs the batch's first one and drops its loss. */
static double run_sequences(struct trainer *t, int nseq, float grad_scale, int train, trainer_sink sink,
                            void *ctx) {
    struct model *m = &t->model;
    int standin = stand_in(t, nseq);
    if (standin) run_one(t, 0, grad_scale, train);
    for (int i = t->groups.data.index; i < nseq && !standin; i += t->job.dp) {
        run_one(t, i, grad_scale, train);
        if (!sink) continue;
        model_take_tokens(m, t->tok_loss, t->tok_pred);
        sink(ctx, i, t->pos, t->lab, t->tok_loss, t->tok_pred, t->T);
    }
    double loss = model_take_loss(m);
    return standin ? 0.0 : loss;
}

static int64_t count_labels(const int32_t *lab, int64_t n) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += lab[i] >= 0;
    return k;
}

/* Forward and backward of the step's sequences on this rank: its gradients in
 * model.grads, the loss summed over ranks. */
static void local_gradients(struct trainer *t, struct step_stats *st) {
    const struct cfg *c = &t->job.cfg;
    int nseq = c->train.seqs_per_step;
    double t0 = MPI_Wtime();
    /* Every rank draws every sequence of the step (the cursor stays identical everywhere). */
    for (int i = 0; i < nseq; i++)
        data_next(&t->data, t->seq_in + (size_t)i * t->L, t->seq_lab + (size_t)i * t->L);
    int64_t nlab = count_labels(t->seq_lab, (int64_t)nseq * t->L);
    float scale = nlab ? (float)(1.0 / (double)nlab) : 0.0f;
    double t1 = MPI_Wtime();
    pstore_begin_step(&t->model.ps, local_seqs(t, nseq));
    if (t->step >= t->opts.poison_from && t->step < t->opts.poison_to) pstore_poison(&t->model.ps);
    double loss = run_sequences(t, nseq, scale, 1, NULL, NULL);
    double t2 = MPI_Wtime();
    comm_all_reduce(&t->ctl, &loss, &loss, 1, COMM_F64, COMM_SUM);
    st->t_reduce = MPI_Wtime() - t2;
    st->loss = nlab ? loss / (double)nlab : 0.0;
    st->tokens = (int64_t)nseq * t->L;
    st->loss_tokens = nlab;
    st->t_data = t1 - t0;
    st->t_compute = t2 - t1;
    st->t_ring_wait = t->model.ring.t_wait;
    t->model.ring.t_wait = 0;
    st->t_optim_wait = t->model.ps.t_wait;
    t->model.ps.t_wait = 0;
}

/* Reduce the step's gradients into every rank's shard (pstore.h) and take their global
 * norm: the shards' sums of squares added over the ranks when sharded (every rank gets the
 * same norm). */
static void reduce_gradients(struct trainer *t, struct step_stats *st) {
    struct pstore *ps = &t->model.ps;
    double t0 = MPI_Wtime();
    double ss = pstore_reduce(ps);
    if (ps->shards > 1) comm_all_reduce(&t->ctl, &ss, &ss, 1, COMM_F64, COMM_SUM);
    st->grad_norm = sqrt(ss);
    st->t_reduce += MPI_Wtime() - t0;
}

double trainer_gradients(struct trainer *t, struct step_stats *st, float *full) {
    local_gradients(t, st);
    reduce_gradients(t, st);
    pstore_all_grads(&t->model.ps, &t->ctl, full);
    return st->loss;
}

int trainer_step(struct trainer *t, struct step_stats *st) {
    const struct cfg_train *tc = &t->job.cfg.train;
    local_gradients(t, st);
    reduce_gradients(t, st);
    double t0 = MPI_Wtime();
    st->lr = opt_lr(tc, t->step);
    /* Every rank holds the same all-reduced loss and norm, so all take the same branch. */
    st->skipped = !isfinite(st->loss) || !isfinite(st->grad_norm);
    if (st->skipped) {
        t->bad_in_row++;
        t->skipped++;
    } else {
        t->bad_in_row = 0;
        pstore_update(&t->model.ps, tc, st->grad_norm, st->lr);
    }
    st->t_optim = MPI_Wtime() - t0;
    const struct backend *be = t->model.be;
    st->profiled = be->profile && t->job.cfg.log.profile;
    if (st->profiled) be->profile(be, st->kernel_ms);
    t->step++;
    return t->bad_in_row >= tc->max_bad_steps;
}

void trainer_meta(const struct trainer *t, struct ckpt_meta *m) {
    memset(m, 0, sizeof *m);
    m->step = t->step;
    m->data_cursor = t->data.cursor;
    m->opt_t = t->model.ps.t;
    m->bad_in_row = t->bad_in_row;
    m->n_params = t->model.pt.total;
    m->model_hash = job_model_hash(&t->job);
    /* The job's settings and the shape of the token stream the data cursor points into. */
    m->job_hash = job_run_hash(&t->job) ^ (t->data.kind == DATA_NPY ? corpus_fingerprint(&t->data.corpus) : 0);
    m->world = t->world.size;
    m->cp = t->job.cp;
    m->dp = t->job.dp;
}

void trainer_restore(struct trainer *t, const struct ckpt_meta *m) {
    t->step = m->step;
    t->data.cursor = m->data_cursor;
    t->model.ps.t = m->opt_t;
    t->bad_in_row = m->bad_in_row;
}

double trainer_forward(struct trainer *t, int nseq, trainer_sink sink, void *ctx) {
    t->model.tokens_out = sink != NULL;
    double loss = run_sequences(t, nseq, 0.0f, 0, sink, ctx);
    t->model.tokens_out = 0;
    return loss;
}

double train_flops_per_seq(const struct model_config *mc, int64_t L) {
    double d = mc->dim, hd = (double)mc->n_heads * mc->head_dim, kvd = (double)mc->n_kv_heads * mc->head_dim;
    double per_layer = d * hd * 2 + d * kvd * 2 + 3.0 * d * mc->ffn_dim;
    double matmul_params = mc->n_layers * per_layer + (double)mc->vocab_size * d;
    return 6.0 * matmul_params * (double)L +
           6.0 * mc->n_layers * (double)L * (double)L * mc->n_heads * mc->head_dim;
}
