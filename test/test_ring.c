/* test_ring: under mpirun -np N, the N-rank ring (zigzag and plain, MHA and GQA, every
 * checkpointing policy) gives the same loss and every parameter gradient as a 1-rank run
 * of the same model computed in the same process over MPI_COMM_SELF; 10 training steps
 * give the same losses; cp x dp layouts agree with cp = world and with 1 rank.
 * Tolerance: 1e-5 relative (fp32, sums taken in a different order). Offload (the saved
 * tensors of some or all layers kept in "host" buffers through rotating slots) changes no
 * bit: compared exactly, over two sequences in a row, with more layers than slots.
 * Token tiles (memory.tile_tokens): every tile size -- 1 token, sizes that do not divide the
 * T local tokens, T - 1, larger than T, auto -- gives the loss and gradients of no tiling
 * (tile = T) on this ring, under every policy and with a layer offloaded, and the same
 * loss without the backward: 1e-6 relative (the weight gradients are summed tile by tile,
 * in another order), also with T / 2 + 1 tokens of every layer's saved tensors kept on the
 * device and the rest offloaded (tiles do not straddle the split). Offload splits tokens:
 * with 4-token tiles, every layer's saved tensors kept whole on the device, T - 4 or 8
 * tokens of them kept and the rest offloaded, or all offloaded, give the same bits (T - 3
 * and 5, which cut a tile in two, 1e-6).
 * Ring size: at 8 ranks, rings of 1, 2, 3, 4, 6 and 8 of them (sub-communicators) against
 * one rank: the gradient error stays flat in the ring size (the dK/dV accumulators travel
 * N hops in fp32): every error within 5e-6 and within 3x the 2-rank error (measured: all
 * 0.7-1.0e-6; dK/dV rounded to bf16 on the way would be ~1e-3 and grow with the hops).
 * Attention calls blocked (memory.attention_block_tokens) to sizes that divide T, T / 2 or
 * neither give the loss and gradients of one call per block (1e-6), and every call's shape is
 * one ring_call_shapes lists for the GPU's workspace. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_mpi.h"
#include "model.h"
#include "rng.h"
#include "runtime.h"
#include "testutil.h"
#include "train.h"

#define TOL 1e-5

static struct runtime rt;

static struct model_config shape(int gqa) {
    struct model_config mc = {0};
    mc.vocab_size = 61;
    mc.dim = 48;
    mc.n_layers = 2;
    mc.n_heads = 4;
    mc.n_kv_heads = gqa ? 2 : 4;
    mc.head_dim = 12;
    mc.ffn_dim = 40;
    mc.norm_eps = 1e-5;
    mc.rope_theta = 10000;
    mc.tie_embeddings = gqa;
    return mc;
}

static void set_random(struct model *m, uint64_t seed) {
    float *w = malloc(m->pt.total * sizeof(float));
    params_init_random(&m->pt, seed, w);
    model_set_params(m, w);
    free(w);
}

/* A sequence of n random tokens and labels (seeds seed and seed + 1); the labels of the
 * positions i with i % every == at are ignored (-1; every 0: none). */
static void sequence(uint64_t seed, int every, int at, int vocab, int n, int32_t *in, int32_t *lab) {
    for (int i = 0; i < n; i++) {
        in[i] = (int32_t)(rng_u64(seed, i) % vocab);
        lab[i] = every && i % every == at ? -1 : (int32_t)(rng_u64(seed + 1, i) % vocab);
    }
}

/* Loss and summed gradients of one sequence on communicator cp (world = cp here). */
static double loss_and_grads(struct model *m, struct comm *cp, int zigzag, const int32_t *in,
                             const int32_t *lab, int64_t L, float *grads_out) {
    int64_t T = L / cp->size;
    int32_t *tok = malloc(T * sizeof *tok), *lb = malloc(T * sizeof *lb);
    int64_t *pos = malloc(T * sizeof *pos);
    data_shard(in, lab, L, cp->size, cp->rank, zigzag, tok, lb, pos);
    int64_t nlab = 0;
    for (int64_t i = 0; i < L; i++) nlab += lab[i] >= 0;
    pstore_begin_step(&m->ps, 1);
    model_forward_backward(m, tok, lb, pos, (float)(1.0 / nlab), 1);
    double loss = model_take_loss(m);
    comm_all_reduce(cp, &loss, &loss, 1, COMM_F64, COMM_SUM);
    pstore_reduce(&m->ps); /* ZeRO-0 over cp: the gradients all-reduced */
    pstore_all_grads(&m->ps, cp, grads_out);
    free(tok), free(lb), free(pos);
    return loss / nlab;
}

/* Loss of one sequence without the backward (evaluation: the head's forward-only path). */
static double eval_loss(struct model *m, struct comm *cp, int zigzag, const int32_t *in, const int32_t *lab,
                        int64_t L) {
    int64_t T = L / cp->size, nlab = 0;
    int32_t *tok = malloc(T * sizeof *tok), *lb = malloc(T * sizeof *lb);
    int64_t *pos = malloc(T * sizeof *pos);
    data_shard(in, lab, L, cp->size, cp->rank, zigzag, tok, lb, pos);
    for (int64_t i = 0; i < L; i++) nlab += lab[i] >= 0;
    model_forward_backward(m, tok, lb, pos, 1.0f, 0);
    double loss = model_take_loss(m);
    comm_all_reduce(cp, &loss, &loss, 1, COMM_F64, COMM_SUM);
    free(tok), free(lb), free(pos);
    return loss / nlab;
}

/* The layers that save their attention output when the policy saves them all. */
static int all_kept(const struct model *m) { return m->ckpt == MODEL_SAVE_SELECTIVE ? m->mc.n_layers : 0; }

static void test_gradients(struct comm *world, struct comm *self, int zigzag, int gqa, int ckpt) {
    struct model_config mc = shape(gqa);
    int64_t L = 96;
    int32_t in[96], lab[96];
    sequence(7, 7, 3, mc.vocab_size, (int)L, in, lab); /* some ignored */
    struct model m1, mN;
    model_init(&m1, &cpu_backend, &mc, self, zigzag, (int)L, MODEL_SAVE_ALL, 0, 0, self, 0, 0);
    model_init(&mN, &cpu_backend, &mc, world, zigzag, (int)(L / world->size), ckpt, 0, 0, world, 0, 0);
    model_place_saved(&m1, m1.T, 0, 0);
    model_place_saved(&mN, ckpt == MODEL_SAVE_ALL ? mN.T : 0, all_kept(&mN), 0); /* every token offloaded */
    set_random(&m1, 42);
    set_random(&mN, 42);
    float *g1 = malloc(m1.pt.total * sizeof(float)), *gN = malloc(mN.pt.total * sizeof(float));
    double l1 = loss_and_grads(&m1, self, zigzag, in, lab, L, g1);
    double lN = loss_and_grads(&mN, world, zigzag, in, lab, L, gN);
    char what[160];
    snprintf(what, sizeof what, "N=%d %s %s ckpt=%d loss", world->size, zigzag ? "zigzag" : "ring",
             gqa ? "gqa" : "mha", ckpt);
    if (!CHECK_REL(lN, l1, TOL)) fprintf(stderr, "  in %s\n", what);
    for (int i = 0; i < m1.pt.n; i++) {
        const struct param *p = &m1.pt.p[i];
        snprintf(what, sizeof what, "N=%d %s %s ckpt=%d grad %s", world->size, zigzag ? "zigzag" : "ring",
                 gqa ? "gqa" : "mha", ckpt, p->name);
        CHECK_ARRAY(gN + p->offset, g1 + p->offset, p->numel, TOL, what);
    }
    free(g1), free(gN);
    model_free(&m1);
    model_free(&mN);
}

static void tiles_case(struct comm *world, int zigzag, int gqa, int ckpt) {
    struct model_config mc = shape(gqa);
    int64_t L = 96;
    int T = (int)(L / world->size);
    int32_t in[96], lab[96];
    sequence(37, 5, 2, mc.vocab_size, (int)L, in, lab); /* some ignored */
    struct model r;
    model_init(&r, &cpu_backend, &mc, world, zigzag, T, ckpt, T, 0, world, 0, 0);
    model_place_saved(&r, ckpt == MODEL_SAVE_ALL ? T : 0, all_kept(&r), 0);
    set_random(&r, 11);
    float *gr = malloc(r.pt.total * sizeof(float)), *g = malloc(r.pt.total * sizeof(float));
    double lr = loss_and_grads(&r, world, zigzag, in, lab, L, gr);
    CHECK(r.tile == T);
    const int tiles[] = {1, 5, 7, 13, T - 1, T + 3, 0};
    for (size_t c = 0; c < sizeof tiles / sizeof tiles[0]; c++) {
        struct model m;
        model_init(&m, &cpu_backend, &mc, world, zigzag, T, ckpt, tiles[c], 0, world, 0, 0);
        int want = ckpt == MODEL_SAVE_ALL || tiles[c] == 0 || tiles[c] > T ? T : tiles[c];
        CHECK(m.tile == want);
        model_place_saved(&m, ckpt == MODEL_SAVE_ALL ? T : T / 2 + 1, all_kept(&m), 0); /* about half offloaded */
        set_random(&m, 11);
        double l = loss_and_grads(&m, world, zigzag, in, lab, L, g);
        char what[128];
        snprintf(what, sizeof what, "N=%d T=%d tile %d (%d) %s %s ckpt=%d", world->size, T, tiles[c], m.tile,
                 zigzag ? "zigzag" : "ring", gqa ? "gqa" : "mha", ckpt);
        if (!CHECK_REL(l, lr, 1e-6)) fprintf(stderr, "  loss in %s\n", what);
        CHECK_ARRAY(g, gr, m.pt.total, 1e-6, what);
        if (!CHECK_REL(eval_loss(&m, world, zigzag, in, lab, L), lr, 1e-6)) fprintf(stderr, "  eval loss in %s\n", what);
        model_free(&m);
    }
    free(gr), free(g);
    model_free(&r);
}

/* The shapes of the attention calls the CPU backend receives, recorded by a backend that
 * wraps it: blocks_case checks each against ring_call_shapes (what a GPU plans workspace for). */
static struct backend rec_backend;
static struct ring_shape rec_shapes[64];
static int rec_n, rec_rows_max;
static void rec_shape(int Tq, int Tk, int causal) {
    for (int i = 0; i < rec_n; i++)
        if (rec_shapes[i].Tq == Tq && rec_shapes[i].Tk == Tk && rec_shapes[i].causal == causal) return;
    if (rec_n < 64) rec_shapes[rec_n++] = (struct ring_shape){Tq, Tk, causal};
}
static void rec_fwd(const struct backend *be, float *out, float *lse, int ld, const void *q, const void *k,
                    const void *v, int Tq, int Tk, int H, int Hkv, int D, int causal) {
    rec_shape(Tq, Tk, causal);
    if (Tq > rec_rows_max) rec_rows_max = Tq;
    cpu_backend.attn_forward(be, out, lse, ld, q, k, v, Tq, Tk, H, Hkv, D, causal);
}
static void rec_bwd(const struct backend *be, float *dq, float *dk, float *dv, const void *dout, const void *q,
                    const void *k, const void *v, const void *out, const float *lse, const float *delta, int ld, int Tq,
                    int Tk, int H, int Hkv, int D, int causal) {
    rec_shape(Tq, Tk, causal);
    if (Tq > rec_rows_max) rec_rows_max = Tq;
    cpu_backend.attn_backward(be, dq, dk, dv, dout, q, k, v, out, lse, delta, ld, Tq, Tk, H, Hkv, D, causal);
}

/* Blocked attention calls (memory.attention_block_tokens): blocks of 1, 3, 5 (dividing
 * neither T nor T / 2), T / 2 and T - 1 tokens give the loss and gradients of one call per
 * block, within 1e-6 (the blocks merge through the log-sum-exp in another order), on this
 * ring; on a ring of one rank the layers then run query block by query block (model qblk),
 * also with 4-token tiles, about half of every layer's tokens offloaded (a split inside a
 * block and a tile) and, under selective, one of the two layers saving its attention output.
 * The same loss without the backward (evaluation). Every call the backend receives has a
 * shape ring_call_shapes lists and at most blk query rows. */
static void blocks_case(struct comm *world, int zigzag, int gqa, int ckpt) {
    struct model_config mc = shape(gqa);
    int64_t L = 96;
    int T = (int)(L / world->size);
    int32_t in[96], lab[96];
    sequence(57, 6, 1, mc.vocab_size, (int)L, in, lab); /* some ignored */
    struct model r;
    model_init(&r, &cpu_backend, &mc, world, zigzag, T, ckpt, 0, 0, world, 0, 0);
    model_place_saved(&r, T, all_kept(&r), 0);
    set_random(&r, 23);
    float *gr = malloc(r.pt.total * sizeof(float)), *g = malloc(r.pt.total * sizeof(float));
    double lr = loss_and_grads(&r, world, zigzag, in, lab, L, gr);
    rec_backend = cpu_backend;
    rec_backend.attn_forward = rec_fwd;
    rec_backend.attn_backward = rec_bwd;
    /* blk, tile (0: auto), split (-1: T), keep (-1: all the policy keeps) */
    const struct { int blk, tile, split, keep; } var[] = {
        {1, 0, -1, -1}, {3, 0, -1, -1}, {5, 0, -1, -1}, {T / 2, 0, -1, -1}, {T - 1, 0, -1, -1},
        {5, 4, T / 2 + 1, ckpt == MODEL_SAVE_SELECTIVE ? 1 : -1}};
    for (size_t c = 0; c < sizeof var / sizeof var[0]; c++) {
        struct model m;
        model_init(&m, &rec_backend, &mc, world, zigzag, T, ckpt, var[c].tile, var[c].blk, world, 0, 0);
        CHECK(m.ring.blk == var[c].blk && m.qblk == (world->size == 1 ? var[c].blk : 0));
        model_place_saved(&m, var[c].split < 0 ? T : var[c].split, var[c].keep < 0 ? all_kept(&m) : var[c].keep,
                          0);
        set_random(&m, 23);
        rec_n = rec_rows_max = 0;
        double l = loss_and_grads(&m, world, zigzag, in, lab, L, g);
        char what[160];
        snprintf(what, sizeof what, "N=%d T=%d attention blocks of %d, tiles %d, %d tokens kept, %d attention saved, "
                 "%s %s ckpt=%d", world->size, T, var[c].blk, m.tile, (int)m.split, m.keep, zigzag ? "zigzag" : "ring",
                 gqa ? "gqa" : "mha", ckpt);
        if (!CHECK_REL(l, lr, 1e-6)) fprintf(stderr, "  loss in %s\n", what);
        CHECK_ARRAY(g, gr, m.pt.total, 1e-6, what);
        if (!CHECK_REL(eval_loss(&m, world, zigzag, in, lab, L), lr, 1e-6)) fprintf(stderr, "  eval loss in %s\n", what);
        struct ring_shape want[16];
        int nw = ring_call_shapes(T, world->size, zigzag, var[c].blk, want, 16);
        for (int i = 0; i < rec_n; i++) {
            int found = 0;
            for (int w = 0; w < nw && !found; w++)
                found = want[w].Tq == rec_shapes[i].Tq && want[w].Tk == rec_shapes[i].Tk &&
                        want[w].causal == rec_shapes[i].causal;
            if (!CHECK(found))
                fprintf(stderr, "  %s: call %dx%d causal %d not in ring_call_shapes\n", what, rec_shapes[i].Tq,
                        rec_shapes[i].Tk, rec_shapes[i].causal);
        }
        if (!CHECK(rec_n > 0 && rec_rows_max <= var[c].blk))
            fprintf(stderr, "  %s: %d rows in a call\n", what, rec_rows_max);
        model_free(&m);
    }
    free(gr), free(g);
    model_free(&r);
}

/* ring_call_block's auto and ring_call_shapes on small cases worked by hand. */
static void test_call_shapes(void) {
    CHECK(ring_call_block(0, 8, 131072) == RING_CALL_AUTO);
    CHECK(ring_call_block(0, 8, RING_CALL_AUTO) == 0); /* one call per block already */
    CHECK(ring_call_block(0, 1, RING_LOCAL_DIRECT_MAX) == 0); /* one rank: the direct call */
    CHECK(ring_call_block(0, 1, 524288) == RING_CALL_AUTO);   /* past it, query blocks */
    CHECK(ring_call_block(4096, 1, 524288) == 4096);
    CHECK(ring_call_block(20000, 2, 16384) == 0);
    struct ring_shape s[16];
    /* one rank, T = 10, blocks of 4: rows 4, 4, 2: diagonal 4x4 and 2x2 causal, below 4x4 and 2x4 */
    CHECK(ring_call_shapes(10, 1, 1, 4, s, 16) == 4);
    CHECK(ring_call_shapes(10, 1, 1, 0, s, 16) == 1 && s[0].Tq == 10 && s[0].Tk == 10 && s[0].causal);
    /* zigzag, T = 10 (C = 5), blocks of 4: the above, and T x C (4|2 x 4|1), C x T (4|1 x 4|2) */
    CHECK(ring_call_shapes(10, 2, 1, 4, s, 16) == 9);
    CHECK(ring_call_shapes(10, 2, 1, 0, s, 16) == 3);
    CHECK(ring_call_shapes(10, 2, 0, 4, s, 16) == 6); /* plain: the full T x T block adds 4x2 and 2x2 */
}

/* At 8 ranks: rings of n = 1, 2, 3, 4, 6, 8 ranks (the first n) against one rank. */
static void test_ring_sizes(struct comm *self) {
    if (rt.world != 8) return;
    struct model_config mc = shape(1);
    int64_t L = 96;
    int32_t in[96], lab[96];
    sequence(47, 0, 0, mc.vocab_size, (int)L, in, lab);
    struct model m1;
    model_init(&m1, &cpu_backend, &mc, self, 1, (int)L, MODEL_SAVE_ALL, 0, 0, self, 0, 0);
    model_place_saved(&m1, m1.T, 0, 0);
    set_random(&m1, 3);
    float *g1 = malloc(m1.pt.total * sizeof(float)), *gN = malloc(m1.pt.total * sizeof(float));
    double l1 = loss_and_grads(&m1, self, 1, in, lab, L, g1);
    const int sizes[] = {1, 2, 3, 4, 6, 8};
    double err[6] = {0};
    for (int c = 0; c < 6; c++) {
        MPI_Comm sub;
        MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, rt.rank < sizes[c] ? 0 : MPI_UNDEFINED, rt.rank, &sub));
        if (sub == MPI_COMM_NULL) continue;
        struct comm ring;
        comm_mpi_init(&ring, sub, "sub-ring", 60);
        struct model m;
        model_init(&m, &cpu_backend, &mc, &ring, 1, (int)(L / sizes[c]), MODEL_SAVE_SELECTIVE, 0, 0, &ring, 0, 0);
        model_place_saved(&m, m.T, all_kept(&m), 0);
        set_random(&m, 3);
        double l = loss_and_grads(&m, &ring, 1, in, lab, L, gN);
        err[c] = fabs(l - l1) / l1;
        for (int i = 0; i < m1.pt.n; i++) {
            const struct param *p = &m1.pt.p[i];
            double e = tu_max_rel_err(gN + p->offset, g1 + p->offset, p->numel);
            if (e > err[c]) err[c] = e;
        }
        model_free(&m);
        comm_free(&ring);
        MPI_CHECK(MPI_Comm_free(&sub));
    }
    if (rt.rank == 0) {
        printf("ring size vs 1 rank, worst loss/gradient error:");
        for (int c = 0; c < 6; c++) printf(" N=%d %.2e", sizes[c], err[c]);
        printf("\n");
        for (int c = 0; c < 6; c++) {
            double flat = 3 * err[1];
            if (!CHECK(err[c] <= 5e-6 && err[c] <= flat))
                fprintf(stderr, "  ring of %d: error %.3g (bounds 5e-6, %.3g)\n", sizes[c], err[c], flat);
        }
    }
    free(g1), free(gN);
    model_free(&m1);
}

/* Keeping all T, T - 4, 8 or none of every layer's tokens on the device (the rest offloaded),
 * and under selective the attention outputs of only 3, 1 or 0 of the layers saved (the
 * others recomputed in the backward),
 * gives identical losses and gradients, with 4-token tiles (T - 3 and 5, which cut a tile in
 * two: within 1e-6), on two different sequences one
 * after the other (slots keep state across calls); 7 layers, more than the slots. */
static void test_offload(struct comm *world, int ckpt) {
    struct model_config mc = shape(1);
    mc.n_layers = 7;
    int64_t L = 96;
    int32_t in[2][96], lab[2][96];
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < L; i++) {
            in[s][i] = (int32_t)(rng_u64(17 + s, i) % mc.vocab_size);
            lab[s][i] = (int32_t)(rng_u64(27 + s, i) % mc.vocab_size);
        }
    float *ref[2] = {NULL, NULL};
    double ref_loss[2] = {0, 0};
    int T = (int)(L / world->size);
    /* keep: layers saving their attention output under selective (-1: all 7) */
    const int split[] = {T, T - 4, T - 3, 8, 5, 0, T, 8, 0, T - 4};
    const int keep[] = {-1, -1, -1, -1, -1, -1, 3, 3, 1, 0};
    int ncase = ckpt == MODEL_SAVE_SELECTIVE ? 10 : 6;
    for (int c = 0; c < ncase; c++) {
        struct model m;
        model_init(&m, &cpu_backend, &mc, world, 1, T, ckpt, 4, 0, world, 0, 0);
        model_place_saved(&m, split[c], keep[c] < 0 ? all_kept(&m) : keep[c], 0);
        set_random(&m, 5);
        for (int s = 0; s < 2; s++) {
            float *g = malloc(m.pt.total * sizeof(float));
            double loss = loss_and_grads(&m, world, 1, in[s], lab[s], L, g);
            if (!c) {
                ref[s] = g, ref_loss[s] = loss;
                continue;
            }
            char what[128];
            snprintf(what, sizeof what, "%d of %d tokens kept, attention saved by %d layers, ckpt=%d, sequence %d",
                     split[c], T, m.keep, ckpt, s);
            /* a split inside a tile cuts it in two: the weight gradients are summed in other pieces */
            double tol = split[c] % 4 ? 1e-6 : 0.0;
            CHECK_ARRAY(g, ref[s], m.pt.total, tol, what);
            if (!CHECK_REL(loss, ref_loss[s], tol)) fprintf(stderr, "  loss in %s\n", what);
            free(g);
        }
        model_free(&m);
    }
    free(ref[0]), free(ref[1]);
}

/* A token file written by rank 0 into a directory every rank can read. */
static void token_file(char *path, size_t len) {
    if (rt.rank == 0) {
        const char *dir = tu_tmpdir("ring");
        snprintf(path, len, "%s/tokens.npy", dir);
        enum { N = 2000 };
        int32_t tok[N];
        for (int i = 0; i < N; i++) tok[i] = (int32_t)(rng_u64(99, i) % 61);
        tu_write_npy(path, "<i4", "(2000,)", tok, sizeof tok);
    }
    MPI_CHECK(MPI_Bcast(path, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD));
}

static struct job make_job(const char *tokens, int cp, int dp, int seqs, int gqa, int zigzag) {
    struct job j;
    memset(&j, 0, sizeof j);
    cfg_defaults(&j.cfg);
    snprintf(j.cfg.data.train, sizeof j.cfg.data.train, "%s", tokens);
    j.cfg.data.seq_len = 96;
    j.cfg.train.steps = 10;
    j.cfg.train.seqs_per_step = seqs;
    j.cfg.train.lr = 3e-3;
    j.cfg.train.warmup_steps = 2;
    j.cfg.parallel.attention = zigzag ? RING_ZIGZAG : RING_PLAIN;
    j.mc = shape(gqa);
    j.cp = cp;
    j.dp = dp;
    return j;
}

static void train_losses_opts(const struct job *j, const struct runtime *r, const struct train_opts *o,
                              double *losses) {
    struct trainer t;
    trainer_init(&t, j, r, o);
    for (int s = 0; s < j->cfg.train.steps; s++) {
        struct step_stats st;
        trainer_step(&t, &st);
        losses[s] = st.loss;
    }
    trainer_free(&t);
}

static void train_losses(const struct job *j, const struct runtime *r, double *losses) {
    train_losses_opts(j, r, NULL, losses);
}

static void test_training(const char *tokens, const struct runtime *self_rt) {
    for (int zigzag = 0; zigzag < 2; zigzag++) {
        double ref[10], got[10];
        struct job j1 = make_job(tokens, 1, 1, 2, 1, zigzag);
        struct job jN = make_job(tokens, rt.world, 1, 2, 1, zigzag);
        train_losses(&j1, self_rt, ref);
        train_losses(&jN, &rt, got);
        for (int s = 0; s < 10; s++) CHECK_REL(got[s], ref[s], TOL);
        CHECK(got[9] < got[0]); /* it trains */
        jN.cfg.memory.offload = OFFLOAD_ALL; /* the trainer's offload path changes nothing */
        double off[10];
        train_losses(&jN, &rt, off);
        for (int s = 0; s < 10; s++) CHECK(off[s] == got[s]);
        /* the trainer's placement hook: every token offloaded and the attention output of
         * layer 0 alone saved (layer 1 recomputes it); checkpointing auto (every layer on
         * the cpu): the same losses, bit for bit */
        struct train_opts o = {.place = 1, .place_split = 0, .place_keep = 1};
        train_losses_opts(&jN, &rt, &o, off);
        for (int s = 0; s < 10; s++) CHECK(off[s] == got[s]);
        jN.cfg.memory.checkpointing = CKPT_AUTO;
        train_losses(&jN, &rt, off);
        for (int s = 0; s < 10; s++) CHECK(off[s] == got[s]);
        if (rt.world == 4) { /* cp 2 x dp 2 equals cp 4 x dp 1 and 1 rank */
            struct job j22 = make_job(tokens, 2, 2, 2, 1, zigzag);
            train_losses(&j22, &rt, got);
            for (int s = 0; s < 10; s++) CHECK_REL(got[s], ref[s], TOL);
        }
    }
}

int main(int argc, char **argv) {
    rt_init(&rt, &argc, &argv);
    struct comm world, self;
    comm_mpi_init(&world, MPI_COMM_WORLD, "world", 60);
    comm_mpi_init(&self, MPI_COMM_SELF, "self", 60);
    for (int zigzag = 0; zigzag < 2; zigzag++)
        for (int gqa = 0; gqa < 2; gqa++)
            test_gradients(&world, &self, zigzag, gqa, MODEL_SAVE_SELECTIVE);
    test_gradients(&world, &self, 1, 1, MODEL_SAVE_ALL);
    test_gradients(&world, &self, 1, 1, MODEL_SAVE_FULL);
    test_offload(&world, MODEL_SAVE_SELECTIVE);
    test_offload(&world, MODEL_SAVE_FULL);
    tiles_case(&world, 1, 1, MODEL_SAVE_SELECTIVE);
    tiles_case(&world, 0, 0, MODEL_SAVE_SELECTIVE);
    tiles_case(&world, 1, 0, MODEL_SAVE_FULL);
    tiles_case(&world, 1, 1, MODEL_SAVE_ALL);
    test_ring_sizes(&self);
    test_call_shapes();
    blocks_case(&world, 1, 1, MODEL_SAVE_SELECTIVE);
    blocks_case(&world, 0, 0, MODEL_SAVE_SELECTIVE);
    blocks_case(&world, 1, 0, MODEL_SAVE_FULL);

    char tokens[512];
    token_file(tokens, sizeof tokens);
    struct runtime self_rt = rt;
    self_rt.rank = 0;
    self_rt.world = 1;
    self_rt.world_comm = MPI_COMM_SELF;
    test_training(tokens, &self_rt);

    int fails = tu_failures;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    char name[32];
    snprintf(name, sizeof name, "test_ring[N=%d rank %d]", rt.world, rt.rank);
    int rc = rt.rank == 0 ? tu_done(name) : 0;
    if (fails && rt.rank == 0) fprintf(stderr, "test_ring: %d failures across ranks\n", fails);
    comm_free(&world);
    comm_free(&self);
    rt_finalize(&rt);
    return fails ? 1 : rc;
}
