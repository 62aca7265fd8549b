/* test_zero: the parameter store (pstore.h) at every ZeRO stage and optimizer placement,
 * under mpirun -np N.
 *  1. The optimizer on slices: AdamW over [0, a), [a, b), [b, total) (a and b cut through a
 *     2-D and a 1-D tensor) equals AdamW over everything, bit for bit, clipping included;
 *     with zero gradients only 2-D tensors decay. The parts of 1..8 ranks tile every unit in
 *     rank order (tiny counts included: empty last parts), and each stage/placement picks the
 *     buffers pstore.h's table says (ZeRO-3 on one rank with the optimizer on the host: the
 *     layers' working weights converted per use, streamed from the host master).
 *  2. For every cp x dp layout of the N ranks: STEPS AdamW steps with parallel.zero 0..3 and
 *     memory.optimizer device/host (grad_clip small enough to clip every step, weight_decay
 *     0.5, a parameter count no part count divides, 2 sequences per rank per step so the
 *     shards accumulate) give the same losses and gradient norms as zero 0 on the device,
 *     and the same weights and moments (gathered to rank 0) at the end.
 *     Tolerances (relative): losses and gradient norms 1e-6; per tensor, ||a - b|| / ||b||
 *     1e-5 and max |a - b| / max |b| 1e-4 for the weights and moments. The runs differ only
 *     in the order of fp32 sums: reduce-scatter vs all-reduce, and with unit gradient buffers
 *     (stages 2-3, the host optimizer) each sequence's gradients are reduced over the ranks
 *     and then added, where full buffers add the sequences first. That is about one ulp per
 *     gradient element per step, which AdamW's m / sqrt(v) grows on elements with a small v
 *     (seen at 4 ranks over 20 steps: losses 3e-9, weights 3e-6 L2 and 4e-5 max).
 *     These runs move the store's started collectives over the strict transport
 *     (comm_strict.h: each runs only at its wait, its output poisoned until then), so a
 *     gradient or weight read before its collective's wait turns the losses into NaN; no
 *     buffer may be written while in flight, sharded unit gradient buffers (ZeRO-2/3, and
 *     ZeRO-1 with the host optimizer) must start collectives and have two in flight at once
 *     (a layer's reduce-scatter or gather overlaps other work), the other placements none.
 *     The checkpoint runs (3) use the MPI transport's own started collectives.
 *  3. Checkpoints: saved by a ZeRO-3 run after STEPS/2 steps (every rank writes its slices)
 *     and loaded by fresh trainers of every stage and placement (every rank reads what it
 *     holds), the next steps continue as the original run does: bit for bit with the same
 *     stage and placement, within the tolerance of 2 otherwise. Each of them saves again:
 *     model.bin and optim.bin are byte-identical whoever wrote them (every stage and
 *     placement on N ranks, and one rank alone). No save, and no sharded load, makes a host
 *     allocation larger than one part (1/N of a unit; rt_alloc_largest).
 *  4. Lent gradients: one sequence per rank per step, every token of the saved tensors
 *     offloaded (memory.offload all) and the optimizer on the host: the reduced gradients of
 *     layer 0 live in the host rows of layer 1's saved input (full checkpointing: partly at
 *     seq_len 96, wholly at 768), under selective checkpointing then in those of their own
 *     layer's saved attention output (layer 1's only there), from the backward to the next
 *     forward (model_place_saved), and every ZeRO stage gives zero 0 on the device's losses,
 *     norms, weights and moments within the tolerances of 2 (every run checks which units
 *     hold lent memory and how much). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_strict.h"
#include "rng.h"
#include "runtime.h"
#include "testutil.h"
#include "optimizer.h"
#include "train.h"

#define TOL     1e-6 /* losses, gradient norms */
#define TOL_W   1e-5 /* weights and moments: ||a - b|| / ||b|| per tensor */
#define TOL_MAX 1e-4 /* weights and moments: max |a - b| / max |b| per tensor */
#define STEPS 20
#define CLIP  0.05
#define LENT_STEPS 6 /* 4.: the lent memory is reused from the second step on */

static struct runtime rt;

static struct model_config shape(void) {
    struct model_config mc = {.vocab_size = 61, .dim = 48, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                              .head_dim = 12, .ffn_dim = 40, .norm_eps = 1e-5, .rope_theta = 10000};
    return mc;
}

/* ---- 1. slices of one optimizer step ---- */

static void fill(float *x, int64_t n, uint64_t seed, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * ((float)(rng_u64(seed, (uint64_t)i) % 2001) / 1000.0f - 1.0f);
}

static void test_slices(void) {
    struct model_config mc = shape();
    struct param_table pt;
    char err[256];
    if (params_init(&pt, &mc, err, sizeof err)) RT_FATAL("%s", err);
    const struct param *norm = params_find(&pt, "model.layers.1.input_layernorm.weight");
    const struct param *wq = params_find(&pt, "model.layers.0.self_attn.q_proj.weight");
    int64_t n = pt.total, cut[4] = {0, wq->offset + 7, norm->offset + 5, n};
    CHECK(cut[1] < cut[2] && norm->ndim == 1 && wq->ndim == 2); /* cuts inside a 1-D and a 2-D tensor */
    struct cfg_train tc = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.5,
                           .grad_clip = CLIP};
    size_t bytes = (size_t)n * sizeof(float);
    float *pa = malloc(bytes), *pb = malloc(bytes), *ga = malloc(bytes), *gb = malloc(bytes);
    params_init_random(&pt, 9, pa);
    memcpy(pb, pa, bytes);
    float *m[2], *v[2];
    for (int k = 0; k < 2; k++) m[k] = calloc((size_t)n, sizeof(float)), v[k] = calloc((size_t)n, sizeof(float));
    for (int s = 0; s < 3; s++) {
        fill(ga, n, 100 + s, 0.1f);
        memcpy(gb, ga, bytes);
        double norm2 = sqrt(cpu_backend.sumsq(&cpu_backend, ga, n)); /* > CLIP: clipped */
        CHECK(norm2 > CLIP);
        opt_adamw(&cpu_backend, &tc, &pt, 0, n, pa, ga, m[0], v[0], norm2, tc.lr, s + 1);
        for (int k = 0; k < 3; k++)
            opt_adamw(&cpu_backend, &tc, &pt, cut[k], cut[k + 1], pb + cut[k], gb + cut[k], m[1] + cut[k],
                      v[1] + cut[k], norm2, tc.lr, s + 1);
    }
    CHECK(!memcmp(pa, pb, bytes) && !memcmp(m[0], m[1], bytes) && !memcmp(v[0], v[1], bytes));

    /* Zero gradients and moments: 2-D tensors decay by (1 - lr * wd), 1-D ones do not move. */
    memset(gb, 0, bytes);
    memset(m[1], 0, bytes), memset(v[1], 0, bytes);
    memcpy(pa, pb, bytes);
    for (int k = 0; k < 3; k++)
        opt_adamw(&cpu_backend, &tc, &pt, cut[k], cut[k + 1], pb + cut[k], gb + cut[k], m[1] + cut[k],
                  v[1] + cut[k], 0.0, tc.lr, 1);
    float decay = (float)(1.0 - (double)(float)tc.lr * (float)tc.weight_decay); /* as cpu_adamw forms it */
    int bad = 0;
    for (int i = 0; i < pt.n; i++) {
        const struct param *p = &pt.p[i];
        for (int64_t e = p->offset; e < p->offset + p->numel; e++)
            bad += pb[e] != (p->ndim >= 2 ? pa[e] * decay : pa[e]);
    }
    CHECK(bad == 0);
    for (int k = 0; k < 2; k++) free(m[k]), free(v[k]);
    free(pa), free(pb), free(ga), free(gb);
    params_free(&pt);
}

/* The parts of every rank tile each unit in rank order, each a multiple of PSTORE_ALIGN, the
 * last ones short or empty; units tile the parameters; stage and placement pick the modes. */
static void test_layouts(void) {
    struct model_config shapes[3] = {shape(), shape(), shape()};
    shapes[1].vocab_size = 3, shapes[1].dim = 4, shapes[1].n_heads = shapes[1].n_kv_heads = 1;
    shapes[1].head_dim = 4, shapes[1].ffn_dim = 2, shapes[1].n_layers = 1;
    shapes[2].tie_embeddings = 1, shapes[2].n_layers = 5;
    for (int k = 0; k < 3; k++)
        for (int world = 1; world <= 8; world++)
            for (int stage = 0; stage <= 3; stage++)
                for (int host = 0; host <= 1; host++) {
                    int ok = 1;
                    int64_t next_unit = 0;
                    for (int r = 0; r < world; r++) {
                        struct pstore ps;
                        pstore_layout(&ps, &shapes[k], stage, host, world, r);
                        int shards = stage >= 1 && world > 1 ? world : 1;
                        ok &= ps.shards == shards && ps.rank == (shards > 1 ? r : 0) && ps.n_units == ps.Ly + 2;
                        ok &= ps.grad_full == (!host && ps.stage <= 1);
                        ok &= ps.wmode == (stage == 3 && shards > 1                 ? PW_GATHER
                                           : stage == 3 && world == 1 && host          ? PW_CONVERT /* streamed */
                                           : host || shards > 1                        ? PW_RESIDENT
                                                                                       : PW_CONVERT);
                        int64_t S = 0;
                        for (int i = 0; i < ps.n_units; i++) {
                            const struct pstore_unit *u = &ps.u[i];
                            if (r == 0) ok &= u->lo == next_unit, next_unit = u->hi;
                            int64_t a = u->lo + (int64_t)ps.rank * u->s;
                            ok &= u->s % PSTORE_ALIGN == 0 && u->s * shards >= u->hi - u->lo && u->sh == S;
                            ok &= u->own_n == 0 || u->own_lo == a;
                            ok &= u->own_n == (a >= u->hi ? 0 : (a + u->s < u->hi ? u->s : u->hi - a));
                            ok &= (u->s - PSTORE_ALIGN) * shards < u->hi - u->lo; /* the smallest aligned part */
                            S += u->s;
                        }
                        ok &= ps.S == S && (r > 0 || next_unit == ps.pt.total);
                        pstore_free(&ps);
                    }
                    if (!CHECK(ok))
                        fprintf(stderr, "  layout of shape %d over %d ranks, stage %d, host %d\n", k, world, stage, host);
                }
}

/* ---- 2. every stage and placement against zero 0 on the device ---- */

struct placing {
    int zero, host;
};
static const struct placing placings[] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 0}, {2, 1}, {3, 0}, {3, 1}};
#define NPLACINGS ((int)(sizeof placings / sizeof placings[0]))

static struct job make_job(int cp, int dp, struct placing pl) {
    struct job j;
    memset(&j, 0, sizeof j);
    cfg_defaults(&j.cfg);
    j.cfg.data.synthetic = SYNTHETIC_COPY;
    j.cfg.data.seq_len = 96;
    j.cfg.data.seed = 11;
    j.cfg.train.steps = STEPS;
    j.cfg.train.seqs_per_step = 12; /* 3 or more per rank: the shards accumulate */
    j.cfg.train.lr = 3e-3;
    j.cfg.train.schedule = SCHEDULE_CONSTANT;
    j.cfg.train.warmup_steps = 2;
    j.cfg.train.weight_decay = 0.5;
    j.cfg.train.grad_clip = CLIP;
    j.cfg.parallel.zero = pl.zero;
    j.cfg.memory.optimizer = pl.host ? OPTIMIZER_HOST : OPTIMIZER_DEVICE;
    j.mc = shape();
    j.cp = cp;
    j.dp = dp;
    return j;
}

/* What a run leaves: losses and norms per step and (rank 0) the weights and moments gathered
 * from every rank. */
struct outcome {
    double  loss[STEPS], norm[STEPS];
    float  *p, *m, *v; /* (total), rank 0 */
    int64_t total;
};

static void take_state(struct trainer *t, struct outcome *o) {
    int64_t n = t->model.pt.total;
    o->total = n;
    float **dst[3] = {&o->p, &o->m, &o->v};
    for (int k = 0; k < 3; k++) {
        *dst[k] = rt.rank == 0 ? malloc((size_t)n * sizeof(float)) : NULL;
        pstore_gather(&t->model.ps, &t->ctl, k, *dst[k]);
    }
}

/* The started collectives of a run over the strict transport: where unit gradient buffers are
 * sharded (ZeRO-2/3; ZeRO-1 with the host optimizer) some, two in flight at once at least;
 * else none. Never a buffer written in flight. */
static void check_started(const struct trainer *t, const struct job *j) {
    const struct comm_strict_stats *st = comm_strict_stats(&t->world);
    const struct pstore *ps = &t->model.ps;
    int overlapped = !ps->grad_full && ps->shards > 1;
    if (!CHECK(st->violations == 0 && (overlapped ? st->started > 0 && st->most_in_flight >= 2 : st->started == 0)))
        fprintf(stderr, "  zero %d host %d: %d started collectives, at most %d in flight, %d written in flight\n",
                j->cfg.parallel.zero, j->cfg.memory.optimizer == OPTIMIZER_HOST, st->started, st->most_in_flight,
                st->violations);
}

/* The floats of each unit's reduced gradients in lent memory: with the optimizer on the host,
 * one sequence per rank per step and offloaded saved tensors, layer j - 1's (unit j) in layer
 * j's T input rows of d floats (j < Ly), then (selective) in its own layer's T attention
 * output rows of H x D floats; nothing elsewhere. */
static void check_lent(const struct trainer *t, const struct job *j) {
    const struct pstore *ps = &t->model.ps;
    int lend = j->cfg.memory.optimizer == OPTIMIZER_HOST && j->cfg.train.seqs_per_step == j->dp &&
               j->cfg.memory.offload == OFFLOAD_ALL;
    int sel = j->cfg.memory.checkpointing == CKPT_SELECTIVE;
    int64_t rx = t->model.T * j->mc.dim, ra = t->model.T * j->mc.n_heads * j->mc.head_dim;
    for (int u = 0; u < ps->n_units; u++) {
        int64_t n = ps->u[u].own_n;
        int64_t w0 = lend && u >= 1 && u < ps->Ly ? (rx < n ? rx : n) : 0;
        int64_t w1 = lend && sel && u >= 1 && u <= ps->Ly ? (ra < n - w0 ? ra : n - w0) : 0;
        if (!CHECK(ps->u[u].nlent[0] == w0 && ps->u[u].nlent[1] == w1))
            fprintf(stderr, "  zero %d host %d: unit %d has %lld + %lld floats lent, want %lld + %lld\n",
                    j->cfg.parallel.zero, j->cfg.memory.optimizer == OPTIMIZER_HOST, u, (long long)ps->u[u].nlent[0],
                    (long long)ps->u[u].nlent[1], (long long)w0, (long long)w1);
    }
}

static void run(const struct job *j, int steps, struct outcome *o) {
    struct trainer *t = calloc(1, sizeof *t);
    trainer_init(t, j, &rt, NULL);
    check_lent(t, j);
    comm_strict_wrap(&t->world);
    const struct pstore *ps = &t->model.ps;
    int sharded = j->cfg.parallel.zero >= 1 && rt.world > 1;
    CHECK(ps->shards == (sharded ? rt.world : 1) && ps->stage == (rt.world > 1 ? j->cfg.parallel.zero : 0));
    CHECK(ps->host_opt == (j->cfg.memory.optimizer == OPTIMIZER_HOST));
    for (int s = 0; s < steps; s++) {
        struct step_stats st;
        trainer_step(t, &st);
        o->loss[s] = st.loss, o->norm[s] = st.grad_norm;
        CHECK(!st.skipped && st.grad_norm > CLIP); /* every step clips */
    }
    take_state(t, o);
    check_started(t, j);
    trainer_free(t);
    free(t);
}

static void outcome_free(struct outcome *o) { free(o->p), free(o->m), free(o->v); }

/* ||a - b|| / ||b|| (L2) */
static double rel_l2(const float *a, const float *b, int64_t n) {
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        d += e * e;
        r += (double)b[i] * b[i];
    }
    return sqrt(d) / (r > 0 ? sqrt(r) : 1e-30);
}

/* Per-tensor comparison of a full flat array: relative L2 error <= tol and normalized max
 * error <= TOL_MAX. worst[0], worst[1]: the largest of each over the tensors. */
static void compare(const float *got, const float *want, double tol, const char *what, const char *layout,
                    double worst[2]) {
    struct model_config mc = shape();
    struct param_table pt;
    char err[256], name[256];
    if (params_init(&pt, &mc, err, sizeof err)) RT_FATAL("%s", err);
    for (int i = 0; i < pt.n; i++) {
        const struct param *p = &pt.p[i];
        double e = rel_l2(got + p->offset, want + p->offset, p->numel);
        snprintf(name, sizeof name, "%s: %s of %s", layout, what, p->name);
        if (!CHECK(e <= tol)) fprintf(stderr, "  %s: relative L2 error %.3g > %.0e\n", name, e, tol);
        CHECK_ARRAY(got + p->offset, want + p->offset, p->numel, TOL_MAX, name);
        worst[0] = fmax(worst[0], e);
        worst[1] = fmax(worst[1], tu_max_rel_err(got + p->offset, want + p->offset, p->numel));
    }
    params_free(&pt);
}

static void test_layout(int cp, int dp) {
    struct outcome ref, b;
    struct job j = make_job(cp, dp, placings[0]);
    run(&j, STEPS, &ref);
    CHECK(ref.loss[STEPS - 1] < ref.loss[0]); /* it trains */
    double wl = 0, wn = 0, worst[6] = {0}; /* weights, m, v: L2 and max */
    for (int k = 1; k < NPLACINGS; k++) {
        char layout[96];
        snprintf(layout, sizeof layout, "N=%d cp %d x dp %d, zero %d, optimizer on the %s", rt.world, cp, dp,
                 placings[k].zero, placings[k].host ? "host" : "device");
        j = make_job(cp, dp, placings[k]);
        run(&j, STEPS, &b);
        for (int s = 0; s < STEPS; s++) {
            if (!CHECK_REL(b.loss[s], ref.loss[s], TOL) | !CHECK_REL(b.norm[s], ref.norm[s], TOL))
                fprintf(stderr, "  %s step %d\n", layout, s);
            wl = fmax(wl, fabs(b.loss[s] - ref.loss[s]) / ref.loss[s]);
            wn = fmax(wn, fabs(b.norm[s] - ref.norm[s]) / ref.norm[s]);
        }
        if (rt.rank == 0) {
            compare(b.p, ref.p, TOL_W, "weights", layout, worst);
            compare(b.m, ref.m, TOL_W, "first moment", layout, worst + 2);
            compare(b.v, ref.v, TOL_W, "second moment", layout, worst + 4);
        }
        outcome_free(&b);
    }
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, worst, 6, MPI_DOUBLE, MPI_MAX, rt.world_comm));
    if (rt.rank == 0)
        printf("  N=%d cp %d x dp %d, zero 0..3 x device/host vs zero 0 device, %d steps: loss %.1e, grad norm "
               "%.1e; per tensor, relative L2 (max): weights %.1e (%.1e), m %.1e (%.1e), v %.1e (%.1e)\n", rt.world,
               cp, dp, STEPS, wl, wn, worst[0], worst[1], worst[2], worst[3], worst[4], worst[5]);
    outcome_free(&ref);
}

/* ---- 4. reduced gradients in lent host memory ---- */

static void test_lent(int cp, int dp, int seq_len, int ckpt) {
    struct outcome ref, b;
    double worst = 0, w[6] = {0};
    for (int k = 0; k < NPLACINGS; k++) {
        if (k > 0 && !placings[k].host) continue;
        struct job j = make_job(cp, dp, placings[k]);
        j.cfg.data.seq_len = seq_len;
        j.cfg.train.seqs_per_step = dp;
        j.cfg.memory.checkpointing = ckpt;
        j.cfg.memory.offload = OFFLOAD_ALL;
        run(&j, LENT_STEPS, k ? &b : &ref);
        if (!k) continue;
        for (int s = 0; s < LENT_STEPS; s++) {
            if (!CHECK_REL(b.loss[s], ref.loss[s], TOL) | !CHECK_REL(b.norm[s], ref.norm[s], TOL))
                fprintf(stderr, "  lent gradients, cp %d x dp %d, seq_len %d, zero %d: step %d\n", cp, dp, seq_len,
                        placings[k].zero, s);
            worst = fmax(worst, fabs(b.loss[s] - ref.loss[s]) / ref.loss[s]);
        }
        if (rt.rank == 0) {
            compare(b.p, ref.p, TOL_W, "weights (lent gradients)", "lent", w);
            compare(b.m, ref.m, TOL_W, "first moment (lent gradients)", "lent", w + 2);
            compare(b.v, ref.v, TOL_W, "second moment (lent gradients)", "lent", w + 4);
        }
        outcome_free(&b);
    }
    if (rt.rank == 0)
        printf("  N=%d cp %d x dp %d, seq_len %d, %s, gradients lent to the offloaded saved tensors, zero 0..3 host vs "
               "zero 0 device, %d steps: loss %.1e, weights %.1e, m %.1e, v %.1e\n", rt.world, cp, dp, seq_len,
               ckpt == CKPT_FULL ? "full" : "selective", LENT_STEPS, worst, w[0], w[2], w[4]);
    outcome_free(&ref);
}

/* ---- 3. the checkpoint state through checkpoint files ---- */

/* Whether dir_a/step and dir_b/step hold the same model.bin and optim.bin, byte for byte
 * (rank 0; 1 elsewhere). */
static int same_files(const char *a, const char *b, const char *step) {
    if (rt.rank != 0) return 1;
    char cmd[2200], out[512];
    snprintf(cmd, sizeof cmd, "cmp %s/%s/model.bin %s/%s/model.bin && cmp %s/%s/optim.bin %s/%s/optim.bin", a, step,
             b, step, a, step, b, step);
    int rc = tu_run(cmd, out, sizeof out);
    if (rc) fprintf(stderr, "  %s", out);
    return rc == 0;
}

/* The largest host allocation of a save or a load (rt_alloc_largest) is at most one
 * part -- the largest range a rank writes or reads, which the staging buffer holds -- and
 * far from the full weights. */
static void check_alloc(const struct pstore *ps, int64_t range_floats, const char *what) {
    size_t got = rt_alloc_largest(1), bound = (size_t)range_floats * sizeof(float);
    if (!CHECK(got <= bound && bound < (size_t)ps->pt.total * sizeof(float)))
        fprintf(stderr, "  %s: largest host allocation %zu bytes, bound %zu (the weights: %lld)\n", what, got, bound,
                (long long)ps->pt.total * 4);
}

static int64_t largest_part(const struct pstore *ps, int world) {
    int64_t most = 0;
    for (int i = 0; i < ps->n_units; i++) {
        int64_t lo, n;
        pstore_split(ps->u[i].lo, ps->u[i].hi, world, 0, &lo, &n);
        if (n > most) most = n;
    }
    return most;
}

/* A ZeRO-3 run saves after STEPS/2 steps (directory A); trainers of every stage and
 * placement load it, save it again (their own directory) and take the next steps: the
 * files are byte-identical to A, the steps continue as the original run does (bit for bit
 * with the same stage and placement, within the tolerance of 2 otherwise), and no save or
 * sharded load allocates more host memory than one part. A 1-rank trainer on rank 0 does
 * the same: written by one rank, the files are those of N ranks. */
static void test_state(int cp, int dp) {
    enum { HALF = STEPS / 2 };
    const struct placing from = {3, 0};
    char base[512], dir_a[600], dir[600], err[1024], name[CKPT_NAME_MAX];
    if (rt.rank == 0) snprintf(base, sizeof base, "%s", tu_tmpdir("zero_ckpt"));
    MPI_CHECK(MPI_Bcast(base, sizeof base, MPI_CHAR, 0, rt.world_comm));
    snprintf(dir_a, sizeof dir_a, "%s/a", base);
    const char *step = "step-00000010";
    struct job j = make_job(cp, dp, from);
    struct trainer *t = calloc(1, sizeof *t);
    trainer_init(t, &j, &rt, NULL);
    struct step_stats st;
    for (int s = 0; s < HALF; s++) trainer_step(t, &st);
    rt_alloc_largest(1);
    CHECK(trainer_save(t, dir_a, 1, NULL, err, sizeof err) == 0);
    check_alloc(&t->model.ps, largest_part(&t->model.ps, rt.world), "ZeRO-3 save");
    double want[HALF];
    for (int s = 0; s < HALF; s++) trainer_step(t, &st), want[s] = st.loss;
    trainer_free(t);

    for (int k = 0; k < NPLACINGS; k++) {
        j = make_job(cp, dp, placings[k]);
        trainer_init(t, &j, &rt, NULL);
        struct ckpt_meta meta;
        rt_alloc_largest(1);
        CHECK(trainer_load(t, dir_a, NULL, 1, name, &meta, err, sizeof err) == 1 && !strcmp(name, step));
        if (placings[k].zero > 0) check_alloc(&t->model.ps, largest_part(&t->model.ps, rt.world), "sharded load");
        else rt_alloc_largest(1);
        trainer_restore(t, &meta);
        snprintf(dir, sizeof dir, "%s/p%d", base, k);
        CHECK(trainer_save(t, dir, 1, NULL, err, sizeof err) == 0);
        check_alloc(&t->model.ps, largest_part(&t->model.ps, rt.world), "save");
        if (!CHECK(same_files(dir_a, dir, step)))
            fprintf(stderr, "  written by zero %d host %d: the files differ from zero 3's\n", placings[k].zero,
                    placings[k].host);
        int same = 1;
        for (int s = 0; s < HALF; s++) {
            trainer_step(t, &st);
            same &= st.loss == want[s];
            if (!CHECK_REL(st.loss, want[s], TOL))
                fprintf(stderr, "  state into zero %d host %d, step %d\n", placings[k].zero, placings[k].host, HALF + s);
        }
        if (placings[k].zero == from.zero && placings[k].host == from.host) CHECK(same); /* bit for bit */
        trainer_free(t);
    }
    /* One rank alone (its own world): load A, save B; B's files are A's. */
    if (rt.rank == 0) {
        struct runtime one = rt;
        one.world = 1, one.local_size = 1;
        MPI_CHECK(MPI_Comm_dup(MPI_COMM_SELF, &one.world_comm));
        MPI_CHECK(MPI_Comm_set_errhandler(one.world_comm, MPI_ERRORS_RETURN));
        j = make_job(1, 1, placings[0]);
        trainer_init(t, &j, &one, NULL);
        struct ckpt_meta meta;
        CHECK(trainer_load(t, dir_a, NULL, 1, name, &meta, err, sizeof err) == 1);
        trainer_restore(t, &meta);
        snprintf(dir, sizeof dir, "%s/one", base);
        CHECK(trainer_save(t, dir, 1, NULL, err, sizeof err) == 0);
        if (!CHECK(same_files(dir_a, dir, step))) fprintf(stderr, "  written by one rank: the files differ\n");
        trainer_free(t);
        MPI_CHECK(MPI_Comm_free(&one.world_comm));
    }
    free(t);
}

int main(int argc, char **argv) {
    rt_init(&rt, &argc, &argv);
    test_slices();
    test_layouts();
    for (int cp = rt.world; cp >= 1; cp--)
        if (rt.world % cp == 0) test_layout(cp, rt.world / cp);
    test_state(rt.world, 1);
    if (rt.world % 2 == 0) test_state(2, rt.world / 2);
    for (int cp = rt.world; cp >= 1; cp /= 2) {
        test_lent(cp, rt.world / cp, 96, CKPT_FULL);
        test_lent(cp, rt.world / cp, 768, CKPT_FULL);
        test_lent(cp, rt.world / cp, 96, CKPT_SELECTIVE);
        if (cp % 2) break;
    }
    int fails = tu_failures;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, rt.world_comm));
    char name[32];
    snprintf(name, sizeof name, "test_zero[N=%d]", rt.world);
    int rc = rt.rank == 0 ? tu_done(name) : 0;
    if (fails && rt.rank == 0) fprintf(stderr, "test_zero: %d failures across ranks\n", fails);
    rt_finalize(&rt);
    return fails ? 1 : rc;
}
