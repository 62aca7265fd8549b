/* test_zero: ZeRO-1 (zero.h) under mpirun -np N.
 *  1. The optimizer on slices: AdamW over [0, a), [a, b), [b, total) with three optimizers
 *     (a and b cut through a 2-D and a 1-D tensor) equals one optimizer over everything,
 *     bit for bit, clipping included; with zero gradients only 2-D tensors decay. The
 *     slices of 1..8 ranks tile the parameters (tiny counts included: empty last slices).
 *  2. For every cp x dp layout of the N ranks: 8 AdamW steps with parallel.zero on and off
 *     (grad_clip small enough to clip every step, weight_decay 0.5; a parameter count that
 *     no slice count divides) give the same losses and gradient norms, and the same weights
 *     on every rank and moments (gathered to rank 0) at the end.
 *     Tolerances (relative): losses and gradient norms 1e-6; per tensor, ||a - b|| / ||b||
 *     1e-6 for the weights and 2e-6 for the moments, max |a - b| / max |b| 1e-5 for both.
 *     The runs differ only in the order of fp32 sums (reduce-scatter vs all-reduce: the same
 *     for 2 ranks, not for more), about one ulp per gradient element per step, which the
 *     moments' running sums and AdamW's m / sqrt(v) grow over the steps (seen at 4 ranks:
 *     loss 7e-10, norm 6e-8, weights 3e-7 L2 and 4e-6 max, moments 6e-7 L2).
 *  3. The checkpoint state: pulled from a sharded run after 4 steps (moments gathered to
 *     rank 0) and pushed into a fresh trainer (scattered), sharded or not, the next 4 steps
 *     continue as the original run does: bit for bit when sharded the same way, within the
 *     tolerance of 2 when not. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "runtime.h"
#include "testutil.h"
#include "train.h"

#define TOL     1e-6 /* losses, gradient norms; weights: ||a - b|| / ||b|| per tensor */
#define TOL_MOM 2e-6 /* moments: ||a - b|| / ||b|| per tensor */
#define TOL_MAX 1e-5 /* weights and moments: max |a - b| / max |b| per tensor */
#define STEPS 8
#define CLIP  0.05

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
    struct optimizer whole, part[3];
    opt_init(&whole, &cpu_backend, 0, n, n);
    for (int k = 0; k < 3; k++) opt_init(&part[k], &cpu_backend, cut[k], cut[k + 1], cut[k + 1] - cut[k] + 5);
    for (int s = 0; s < 3; s++) {
        fill(ga, n, 100 + s, 0.1f);
        memcpy(gb, ga, bytes);
        double norm2 = sqrt(cpu_backend.sumsq(&cpu_backend, ga, n)); /* > CLIP: clipped */
        CHECK(norm2 > CLIP);
        opt_step(&whole, &tc, &pt, pa, ga, norm2, tc.lr);
        for (int k = 0; k < 3; k++) opt_step(&part[k], &tc, &pt, pb, gb, norm2, tc.lr);
    }
    CHECK(!memcmp(pa, pb, bytes));
    int same_m = 1;
    for (int k = 0; k < 3; k++) {
        int64_t len = cut[k + 1] - cut[k];
        same_m &= !memcmp(whole.m + cut[k], part[k].m, (size_t)len * sizeof(float)) &&
                  !memcmp(whole.v + cut[k], part[k].v, (size_t)len * sizeof(float));
    }
    CHECK(same_m);
    CHECK(whole.t == 3 && part[0].t == 3 && part[2].t == 3);

    /* Zero gradients and moments: 2-D tensors decay by (1 - lr * wd), 1-D ones do not move. */
    struct optimizer fresh[3];
    for (int k = 0; k < 3; k++) opt_init(&fresh[k], &cpu_backend, cut[k], cut[k + 1], cut[k + 1] - cut[k]);
    memset(gb, 0, bytes);
    memcpy(pa, pb, bytes);
    for (int k = 0; k < 3; k++) opt_step(&fresh[k], &tc, &pt, pb, gb, 0.0, tc.lr);
    float decay = (float)(1.0 - (double)(float)tc.lr * (float)tc.weight_decay); /* as cpu_adamw forms it */
    int bad = 0;
    for (int i = 0; i < pt.n; i++) {
        const struct param *p = &pt.p[i];
        for (int64_t e = p->offset; e < p->offset + p->numel; e++)
            bad += pb[e] != (p->ndim >= 2 ? pa[e] * decay : pa[e]);
    }
    CHECK(bad == 0);
    opt_free(&whole);
    for (int k = 0; k < 3; k++) opt_free(&part[k]), opt_free(&fresh[k]);
    free(pa), free(pb), free(ga), free(gb);
    params_free(&pt);
}

/* The slices of every rank tile [0, total) in rank order, each a multiple of ZERO_ALIGN,
 * the last ones short or empty on a tiny model; off, one slice of everything. */
static void test_layouts(void) {
    static const int64_t totals[] = {1, 63, 300, 31440, 1000003};
    for (size_t k = 0; k < sizeof totals / sizeof totals[0]; k++)
        for (int world = 1; world <= 8; world++) {
            int64_t total = totals[k], next = 0;
            int ok = 1;
            for (int r = 0; r < world; r++) {
                struct zero z;
                zero_init(&z, 1, world, r, total);
                ok &= z.on == (world > 1) && z.lo == next && z.hi >= z.lo && z.hi - z.lo <= z.slice &&
                      zero_flat(&z) >= total && (!z.on || z.slice % ZERO_ALIGN == 0);
                ok &= z.on || (z.slice == total && zero_flat(&z) == total);
                next = z.hi;
            }
            struct zero off;
            zero_init(&off, 0, world, world - 1, total);
            ok &= !off.on && off.lo == 0 && off.hi == total && zero_flat(&off) == total;
            if (!CHECK(ok && next == total))
                fprintf(stderr, "  zero layout of %lld parameters over %d ranks\n", (long long)total, world);
        }
}

/* ---- 2. sharded against unsharded training ---- */

static struct job make_job(int cp, int dp, int zero) {
    struct job j;
    memset(&j, 0, sizeof j);
    cfg_defaults(&j.cfg);
    j.cfg.data.synthetic = SYNTHETIC_COPY;
    j.cfg.data.seq_len = 96;
    j.cfg.data.seed = 11;
    j.cfg.train.steps = STEPS;
    j.cfg.train.seqs_per_step = 12;
    j.cfg.train.lr = 3e-3;
    j.cfg.train.schedule = SCHEDULE_CONSTANT;
    j.cfg.train.warmup_steps = 2;
    j.cfg.train.weight_decay = 0.5;
    j.cfg.train.grad_clip = CLIP;
    j.cfg.parallel.zero = zero;
    j.mc = shape();
    j.cp = cp;
    j.dp = dp;
    return j;
}

/* What a run leaves: losses and norms per step, the weights of this rank and (rank 0) the
 * moments gathered from every rank. */
struct outcome {
    double  loss[STEPS], norm[STEPS];
    float  *p, *m, *v; /* (total) */
    int64_t total;
};

static void run(const struct job *j, int steps, struct outcome *o) {
    struct trainer *t = calloc(1, sizeof *t);
    trainer_init(t, j, &rt, NULL);
    int64_t n = t->model.pt.total;
    if (j->cfg.parallel.zero && rt.world > 1) { /* the layout: N slices, padded, each rank's moments one slice */
        const struct zero *z = &t->zero;
        CHECK(z->on && z->shards == rt.world && z->slice % ZERO_ALIGN == 0);
        CHECK(zero_flat(z) > n && zero_flat(z) - z->slice < n); /* padding, inside the last slice */
        CHECK(t->opt.n == z->slice && z->lo == (int64_t)rt.rank * z->slice);
    } else {
        CHECK(!t->zero.on && t->opt.n == n);
    }
    for (int s = 0; s < steps; s++) {
        struct step_stats st;
        trainer_step(t, &st);
        o->loss[s] = st.loss, o->norm[s] = st.grad_norm;
        CHECK(!st.skipped && st.grad_norm > CLIP); /* every step clips */
    }
    o->total = n;
    o->p = malloc((size_t)n * sizeof(float));
    memcpy(o->p, t->model.params, (size_t)n * sizeof(float));
    trainer_pull_state(t, 1);
    float *p, *m, *v;
    trainer_host_state(t, &p, &m, &v);
    o->m = o->v = NULL;
    if (rt.rank == 0) {
        CHECK(!memcmp(p, o->p, (size_t)n * sizeof(float)));
        o->m = malloc((size_t)n * sizeof(float));
        o->v = malloc((size_t)n * sizeof(float));
        memcpy(o->m, m, (size_t)n * sizeof(float));
        memcpy(o->v, v, (size_t)n * sizeof(float));
    }
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
    worst[0] = worst[1] = 0;
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
    char layout[64];
    snprintf(layout, sizeof layout, "N=%d cp %d x dp %d", rt.world, cp, dp);
    struct job off = make_job(cp, dp, 0), on = make_job(cp, dp, 1);
    struct outcome a, b;
    run(&off, STEPS, &a);
    run(&on, STEPS, &b);
    double wl = 0, wn = 0;
    for (int s = 0; s < STEPS; s++) {
        if (!CHECK_REL(b.loss[s], a.loss[s], TOL) | !CHECK_REL(b.norm[s], a.norm[s], TOL))
            fprintf(stderr, "  %s step %d\n", layout, s);
        wl = fmax(wl, fabs(b.loss[s] - a.loss[s]) / a.loss[s]);
        wn = fmax(wn, fabs(b.norm[s] - a.norm[s]) / a.norm[s]);
    }
    CHECK(a.loss[STEPS - 1] < a.loss[0]); /* it trains */
    double worst[6] = {0}; /* weights, m, v: L2 and max */
    compare(b.p, a.p, TOL, "weights", layout, worst);
    if (rt.rank == 0) {
        compare(b.m, a.m, TOL_MOM, "first moment", layout, worst + 2);
        compare(b.v, a.v, TOL_MOM, "second moment", layout, worst + 4);
    }
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, worst, 6, MPI_DOUBLE, MPI_MAX, rt.world_comm));
    if (rt.rank == 0)
        printf("  %s, zero on vs off, %d steps: loss %.1e, grad norm %.1e; per tensor, relative L2 (max): "
               "weights %.1e (%.1e), m %.1e (%.1e), v %.1e (%.1e)\n", layout, STEPS, wl, wn, worst[0], worst[1],
               worst[2], worst[3], worst[4], worst[5]);
    outcome_free(&a);
    outcome_free(&b);
}

/* ---- 3. the checkpoint state through host arrays ---- */

static void test_state(int cp, int dp) {
    enum { HALF = STEPS / 2 };
    struct job on = make_job(cp, dp, 1);
    struct trainer *t = calloc(1, sizeof *t);
    trainer_init(t, &on, &rt, NULL);
    struct step_stats st;
    for (int s = 0; s < HALF; s++) trainer_step(t, &st);
    trainer_pull_state(t, 1);
    struct ckpt_meta meta;
    trainer_meta(t, &meta);
    int64_t n = t->model.pt.total;
    size_t bytes = (size_t)n * sizeof(float);
    float *saved[3] = {NULL, NULL, NULL}, *host[3];
    trainer_host_state(t, &host[0], &host[1], &host[2]);
    if (rt.rank == 0)
        for (int k = 0; k < 3; k++) memcpy(saved[k] = malloc(bytes), host[k], bytes);
    double want[HALF];
    for (int s = 0; s < HALF; s++) trainer_step(t, &st), want[s] = st.loss;
    trainer_free(t);

    for (int zero = 1; zero >= 0; zero--) {
        struct job j = make_job(cp, dp, zero);
        trainer_init(t, &j, &rt, NULL);
        trainer_host_state(t, &host[0], &host[1], &host[2]);
        if (rt.rank == 0)
            for (int k = 0; k < 3; k++) memcpy(host[k], saved[k], bytes);
        trainer_push_state(t, 1);
        trainer_restore(t, &meta);
        int same = 1;
        for (int s = 0; s < HALF; s++) {
            trainer_step(t, &st);
            same &= st.loss == want[s];
            if (!CHECK_REL(st.loss, want[s], TOL)) fprintf(stderr, "  state zero=%d step %d\n", zero, HALF + s);
        }
        if (zero) CHECK(same); /* the same layout: bit for bit */
        trainer_free(t);
    }
    free(t);
    for (int k = 0; k < 3; k++) free(saved[k]);
}

int main(int argc, char **argv) {
    rt_init(&rt, &argc, &argv);
    test_slices();
    test_layouts();
    for (int cp = rt.world; cp >= 1; cp--)
        if (rt.world % cp == 0) test_layout(cp, rt.world / cp);
    test_state(rt.world, 1);
    if (rt.world % 2 == 0) test_state(2, rt.world / 2);
    int fails = tu_failures;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, rt.world_comm));
    char name[32];
    snprintf(name, sizeof name, "test_zero[N=%d]", rt.world);
    int rc = rt.rank == 0 ? tu_done(name) : 0;
    if (fails && rt.rank == 0) fprintf(stderr, "test_zero: %d failures across ranks\n", fails);
    rt_finalize(&rt);
    return fails ? 1 : rc;
}
