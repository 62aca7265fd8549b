/* test_attn: the CUDA block attention (cuda/cuda_attn.h) against its CPU twin (cpu_attn_*),
 * on a GPU. Inputs are random normals rounded to bf16; the CPU gets the same values as fp32.
 * Error = max |gpu - cpu| / max |cpu| over an output (tu_max_rel_err); for the gradients the
 * denominator is at least GRAD_FLOOR (the inputs are O(1), so are the gradients; a one-key
 * softmax has an exactly zero dq/dk, where the relative error is meaningless). Bounds, and why:
 *   out       1e-2  P is rounded to bf16 (rel. 2^-9) as the operand of P V; the rounding errors
 *                   of the weights average over the keys, so ~1e-3 is typical.
 *   lse       1e-3  only fp32 accumulation order differs (~1e-6 expected); relative to max|lse|.
 *   dq dk dv  2e-2  P and dS are rounded to bf16 as operands of four products, and dS = P (dP -
 *                   delta) loses relative precision where dP ~ delta; ~3e-3 typical.
 *   delta     1e-4  fp32 sums of D products (the CPU sums in double).
 *   merge     1e-5  the same fp32 formula; expf/log1pf may differ by an ulp.
 * The SIMT path (other D) is fp32 throughout and lands near 1e-6 under the same bounds.
 * Every tensor-core tile variant (RT_ATTN_FWD_VARIANT 0..4, RT_ATTN_BWD_VARIANT 0..4) is
 * checked; one line per case and output lists each variant's error.
 * Also checked: lse/delta as (H, ld) views at an offset (entries outside the rows stay
 * untouched, bitwise), every output element written (buffers poisoned with NaN first),
 * the backward accumulates (+=) into non-zero buffers, the forward and dk/dv are bitwise
 * reproducible (dq's atomics may differ in the last bits: the difference is printed),
 * Tk = 0 (empty softmax), and the merge on views. */
#include "cpu_ops.h"
#include "cuda_attn.h"
#include "cuda_check.h"
#include "rng.h"
#include "../testutil.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_OUT   1e-2
#define TOL_LSE   1e-3
#define TOL_GRAD  2e-2
#define TOL_DELTA 1e-4
#define TOL_MERGE 1e-5
#define GRAD_FLOOR 1e-2

#define N_FWD_VARIANTS 5
#define N_BWD_VARIANTS 5

static double g_cpu_seconds = 0;

/* ---------- host helpers ---------- */

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}
#define FALLOC(n) ((float *)xmalloc((size_t)(n) * sizeof(float)))

static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static float bf2f(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A bf16 tensor: bits for the GPU, the same values as fp32 for the CPU, and a device copy. */
struct bft {
    int64_t n;
    uint16_t *bits;
    float *f;
    rt_bf16 *dev;
};

static void bft_init(struct bft *t, int64_t n, uint64_t key, float scale) {
    t->n = n;
    t->bits = xmalloc((size_t)n * 2);
    t->f = FALLOC(n);
    for (int64_t i = 0; i < n; i++) {
        t->bits[i] = f2bf(scale * (float)rng_normal(key, (uint64_t)i));
        t->f[i] = bf2f(t->bits[i]);
    }
    CUDA_CHECK(cudaMalloc((void **)&t->dev, (size_t)n * 2 + 16));
    CUDA_CHECK(cudaMemcpy(t->dev, t->bits, (size_t)n * 2, cudaMemcpyHostToDevice));
}

static void bft_free(struct bft *t) {
    free(t->bits);
    free(t->f);
    CUDA_CHECK(cudaFree(t->dev));
}

static float *dalloc(int64_t n) {
    float *p = NULL;
    CUDA_CHECK(cudaMalloc((void **)&p, (size_t)(n ? n : 1) * sizeof(float)));
    return p;
}

static void h2d(float *d, const float *h, int64_t n) {
    CUDA_CHECK(cudaMemcpy(d, h, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
}

static void d2h(float *h, const float *d, int64_t n) {
    CUDA_CHECK(cudaMemcpy(h, d, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost));
}

static void poison(float *d, int64_t n) { CUDA_CHECK(cudaMemset(d, 0xff, (size_t)n * sizeof(float))); }

static int is_poison(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u == 0xffffffffu;
}

/* (H, T) rows of a host array into rows [off, off+T) of a device (H, ld) view buffer, the
 * rest poisoned. */
static void put_view(float *dbuf, const float *h, int H, int T, int ld, int off) {
    poison(dbuf, (int64_t)H * ld);
    if (T == 0) return;
    CUDA_CHECK(cudaMemcpy2D(dbuf + off, (size_t)ld * sizeof(float), h, (size_t)T * sizeof(float),
                            (size_t)T * sizeof(float), (size_t)H, cudaMemcpyHostToDevice));
}

/* Rows [off, off+T) of a device (H, ld) view into a host (H, T) array; returns 1 when every
 * entry outside the view is still poison and every entry inside was written. */
static int get_view(float *h, const float *dbuf, int H, int T, int ld, int off) {
    float *all = FALLOC((int64_t)H * ld);
    d2h(all, dbuf, (int64_t)H * ld);
    int ok = 1;
    for (int r = 0; r < H; r++)
        for (int t = 0; t < ld; t++) {
            float x = all[(int64_t)r * ld + t];
            if (t >= off && t < off + T) {
                h[(int64_t)r * T + t - off] = x;
                if (is_poison(x)) ok = 0;
            } else if (!is_poison(x)) {
                ok = 0;
            }
        }
    free(all);
    return ok;
}

/* max |a - b| / max(max |b|, floor) */
static double err_floor(const float *a, const float *b, int64_t n, double floor) {
    double maxref = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    return tu_max_rel_err(a, b, n) * (maxref > 1e-30 ? maxref : 1e-30) / (maxref > floor ? maxref : floor);
}

static int all_written(const float *h, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (is_poison(h[i])) return 0;
    return 1;
}

static void set_variant(const char *name, int v) {
    char s[16];
    snprintf(s, sizeof s, "%d", v);
    setenv(name, s, 1);
}

/* One output line: "case  op  err per variant  bound  ok". */
struct line {
    char text[512];
    size_t len;
    double worst;
};

static void line_start(struct line *l, const char *cname, const char *op) {
    l->len = (size_t)snprintf(l->text, sizeof l->text, "  %-34s %-6s", cname, op);
    l->worst = 0;
}

static void line_add(struct line *l, int var, double err) {
    if (l->len < sizeof l->text)
        l->len += (size_t)snprintf(l->text + l->len, sizeof l->text - l->len, " v%d %.2e", var, err);
    if (!(err <= l->worst)) l->worst = err;
}

static void line_end(struct line *l, double bound, const char *extra) {
    tu_checks++;
    int ok = l->worst <= bound;
    if (!ok) tu_failures++;
    printf("%s  bound %.0e  %s%s\n", l->text, bound, ok ? "ok" : "FAILED", extra ? extra : "");
}

/* ---------- one block attention case ---------- */

struct acase {
    const char *name;
    int Tq, Tk, H, Hkv, D, causal;
    int ld, off; /* lse/delta: rows [off, off+Tq) of an (H, ld) buffer */
    float qscale; /* q ~ N(0, qscale^2): larger makes the softmax peakier */
};

static void run_case(const struct acase *c, uint64_t seed) {
    const int Tq = c->Tq, Tk = c->Tk, H = c->H, Hkv = c->Hkv, D = c->D, ld = c->ld, off = c->off;
    const int64_t nq = (int64_t)Tq * H * D, nk = (int64_t)Tk * Hkv * D, nl = (int64_t)H * ld;
    char cname[64];
    snprintf(cname, sizeof cname, "%s", c->name);

    struct bft q, k, v, dout;
    bft_init(&q, nq, seed + 1, c->qscale);
    bft_init(&k, nk, seed + 2, 1.0f);
    bft_init(&v, nk, seed + 3, 1.0f);
    bft_init(&dout, nq, seed + 4, 1.0f);

    /* CPU reference */
    float *out_c = FALLOC(nq), *lse_c = FALLOC((int64_t)H * Tq), *del_c = FALLOC((int64_t)H * Tq);
    float *dq_c = calloc((size_t)nq + 1, sizeof(float)), *dk_c = calloc((size_t)nk + 1, sizeof(float)),
          *dv_c = calloc((size_t)nk + 1, sizeof(float));
    double t0 = omp_get_wtime();
    cpu_attn_forward(out_c, lse_c, Tq, q.f, k.f, v.f, Tq, Tk, H, Hkv, D, c->causal);
    cpu_attn_delta(del_c, Tq, dout.f, out_c, Tq, H, D);
    cpu_attn_backward(dq_c, dk_c, dv_c, dout.f, q.f, k.f, v.f, lse_c, del_c, Tq, Tq, Tk, H, Hkv, D,
                      c->causal);
    g_cpu_seconds += omp_get_wtime() - t0;

    /* device buffers */
    float *out_d = dalloc(nq), *lse_d = dalloc(nl), *del_d = dalloc(nl);
    float *dq_d = dalloc(nq), *dk_d = dalloc(nk), *dv_d = dalloc(nk);
    float *out_g = FALLOC(nq), *out_g2 = FALLOC(nq), *lse_g = FALLOC((int64_t)H * Tq),
          *lse_g2 = FALLOC((int64_t)H * Tq), *del_g = FALLOC((int64_t)H * Tq);
    float *dq_g = FALLOC(nq), *dk_g = FALLOC(nk), *dv_g = FALLOC(nk), *dk_g2 = FALLOC(nk),
          *dv_g2 = FALLOC(nk), *dq_g2 = FALLOC(nq);
    const int fast = D == 64 || D == 128;
    const int nfv = fast ? N_FWD_VARIANTS : 1, nbv = fast ? N_BWD_VARIANTS : 1;

    /* forward, every variant; variant 0 twice for bitwise reproducibility */
    struct line lo, ll;
    line_start(&lo, cname, "out");
    line_start(&ll, cname, "lse");
    int views_ok = 1, written = 1, repro = 1;
    for (int var = 0; var < nfv; var++) {
        set_variant("RT_ATTN_FWD_VARIANT", var);
        for (int rep = 0; rep < (var == 0 ? 2 : 1); rep++) {
            float *og = rep ? out_g2 : out_g, *lg = rep ? lse_g2 : lse_g;
            poison(out_d, nq);
            poison(lse_d, nl);
            cuda_attn_forward(out_d, lse_d + off, ld, q.dev, k.dev, v.dev, Tq, Tk, H, Hkv, D,
                              c->causal, 0);
            CUDA_CHECK(cudaDeviceSynchronize());
            d2h(og, out_d, nq);
            views_ok &= get_view(lg, lse_d, H, Tq, ld, off);
            written &= all_written(og, nq);
        }
        if (var == 0)
            repro = memcmp(out_g, out_g2, (size_t)nq * 4) == 0 &&
                    memcmp(lse_g, lse_g2, (size_t)H * Tq * 4) == 0;
        line_add(&lo, var, tu_max_rel_err(out_g, out_c, nq));
        line_add(&ll, var, tu_max_rel_err(lse_g, lse_c, (int64_t)H * Tq));
    }
    line_end(&lo, TOL_OUT, repro ? "  (bitwise reproducible)" : "  NOT REPRODUCIBLE");
    line_end(&ll, TOL_LSE, views_ok ? "  (view rows only)" : "  WROTE OUTSIDE THE VIEW / UNWRITTEN");
    CHECK(views_ok);
    CHECK(written);
    CHECK(repro);
    unsetenv("RT_ATTN_FWD_VARIANT");

    /* delta of the CPU's out (fp32) and dout (bf16), into a view */
    {
        struct line l;
        line_start(&l, cname, "delta");
        h2d(out_d, out_c, nq);
        poison(del_d, nl);
        cuda_attn_delta(del_d + off, ld, dout.dev, out_d, Tq, H, D, 0);
        CUDA_CHECK(cudaDeviceSynchronize());
        int ok = get_view(del_g, del_d, H, Tq, ld, off);
        line_add(&l, 0, tu_max_rel_err(del_g, del_c, (int64_t)H * Tq));
        line_end(&l, TOL_DELTA, ok ? "" : "  WROTE OUTSIDE THE VIEW / UNWRITTEN");
        CHECK(ok);
    }

    /* backward: the CPU's lse and delta in views (NaN elsewhere), dq/dk/dv start from random
     * values (accumulation); the increment is compared with the CPU gradient */
    put_view(lse_d, lse_c, H, Tq, ld, off);
    put_view(del_d, del_c, H, Tq, ld, off);
    float *iq = FALLOC(nq), *ik = FALLOC(nk), *iv = FALLOC(nk);
    for (int64_t i = 0; i < nq; i++) iq[i] = (float)rng_normal(seed + 5, (uint64_t)i);
    for (int64_t i = 0; i < nk; i++) {
        ik[i] = (float)rng_normal(seed + 6, (uint64_t)i);
        iv[i] = (float)rng_normal(seed + 7, (uint64_t)i);
    }
    struct line lq, lk, lv;
    line_start(&lq, cname, "dq");
    line_start(&lk, cname, "dk");
    line_start(&lv, cname, "dv");
    int kv_repro = 1;
    double dq_diff = 0;
    for (int var = 0; var < nbv; var++) {
        set_variant("RT_ATTN_BWD_VARIANT", var);
        for (int rep = 0; rep < (var == 0 ? 2 : 1); rep++) {
            float *qg = rep ? dq_g2 : dq_g, *kg = rep ? dk_g2 : dk_g, *vg = rep ? dv_g2 : dv_g;
            h2d(dq_d, iq, nq);
            h2d(dk_d, ik, nk);
            h2d(dv_d, iv, nk);
            cuda_attn_backward(dq_d, dk_d, dv_d, dout.dev, q.dev, k.dev, v.dev, lse_d + off,
                               del_d + off, ld, Tq, Tk, H, Hkv, D, c->causal, 0);
            CUDA_CHECK(cudaDeviceSynchronize());
            d2h(qg, dq_d, nq);
            d2h(kg, dk_d, nk);
            d2h(vg, dv_d, nk);
        }
        if (var == 0) {
            kv_repro = memcmp(dk_g, dk_g2, (size_t)nk * 4) == 0 && memcmp(dv_g, dv_g2, (size_t)nk * 4) == 0;
            for (int64_t i = 0; i < nq; i++) {
                double e = fabs((double)dq_g[i] - dq_g2[i]);
                if (e > dq_diff) dq_diff = e;
            }
        }
        for (int64_t i = 0; i < nq; i++) dq_g[i] = (float)((double)dq_g[i] - iq[i]);
        for (int64_t i = 0; i < nk; i++) {
            dk_g[i] = (float)((double)dk_g[i] - ik[i]);
            dv_g[i] = (float)((double)dv_g[i] - iv[i]);
        }
        line_add(&lq, var, err_floor(dq_g, dq_c, nq, GRAD_FLOOR));
        line_add(&lk, var, err_floor(dk_g, dk_c, nk, GRAD_FLOOR));
        line_add(&lv, var, err_floor(dv_g, dv_c, nk, GRAD_FLOOR));
    }
    unsetenv("RT_ATTN_BWD_VARIANT");
    char extra[96];
    snprintf(extra, sizeof extra, "  (run-to-run max |diff| %.1e)", dq_diff);
    line_end(&lq, TOL_GRAD, extra);
    line_end(&lk, TOL_GRAD, kv_repro ? "  (bitwise reproducible)" : "  NOT REPRODUCIBLE");
    line_end(&lv, TOL_GRAD, kv_repro ? "  (bitwise reproducible)" : "  NOT REPRODUCIBLE");
    CHECK(kv_repro);

    free(iq); free(ik); free(iv);
    free(out_c); free(lse_c); free(del_c); free(dq_c); free(dk_c); free(dv_c);
    free(out_g); free(out_g2); free(lse_g); free(lse_g2); free(del_g);
    free(dq_g); free(dk_g); free(dv_g); free(dq_g2); free(dk_g2); free(dv_g2);
    CUDA_CHECK(cudaFree(out_d)); CUDA_CHECK(cudaFree(lse_d)); CUDA_CHECK(cudaFree(del_d));
    CUDA_CHECK(cudaFree(dq_d)); CUDA_CHECK(cudaFree(dk_d)); CUDA_CHECK(cudaFree(dv_d));
    bft_free(&q); bft_free(&k); bft_free(&v); bft_free(&dout);
}

/* Tk = 0 (non-causal): out = 0, lse = -inf; the backward leaves the gradients alone. */
static void test_no_keys(void) {
    const int Tq = 5, H = 4, Hkv = 2, D = 64;
    struct bft q, kv;
    bft_init(&q, (int64_t)Tq * H * D, 99, 1.0f);
    bft_init(&kv, 8, 98, 1.0f);
    float *out_d = dalloc((int64_t)Tq * H * D), *lse_d = dalloc((int64_t)H * Tq);
    poison(out_d, (int64_t)Tq * H * D);
    poison(lse_d, (int64_t)H * Tq);
    cuda_attn_forward(out_d, lse_d, Tq, q.dev, kv.dev, kv.dev, Tq, 0, H, Hkv, D, 0, 0);
    CUDA_CHECK(cudaDeviceSynchronize());
    float *out = FALLOC((int64_t)Tq * H * D), lse[5 * 4];
    d2h(out, out_d, (int64_t)Tq * H * D);
    d2h(lse, lse_d, (int64_t)H * Tq);
    int ok = 1;
    for (int64_t i = 0; i < (int64_t)Tq * H * D; i++) ok &= out[i] == 0.0f;
    for (int i = 0; i < H * Tq; i++) ok &= isinf(lse[i]) && lse[i] < 0;
    CHECK(ok);
    printf("  %-34s out = 0, lse = -inf  %s\n", "Tk=0 (empty softmax)", ok ? "ok" : "FAILED");
    free(out);
    CUDA_CHECK(cudaFree(out_d));
    CUDA_CHECK(cudaFree(lse_d));
    bft_free(&q);
    bft_free(&kv);
}

/* Merge on views: out (Tq, H, D), lse rows [off, off+Tq) of (H, ld), lse_b rows [0, Tq) of
 * (H, ld_b). */
static void test_merge(int Tq, int H, int D, int ld, int off, int ld_b, uint64_t seed) {
    const int64_t n = (int64_t)Tq * H * D;
    float *o = FALLOC(n), *ob = FALLOC(n), *l = FALLOC((int64_t)H * Tq), *lb = FALLOC((int64_t)H * Tq);
    for (int64_t i = 0; i < n; i++) {
        o[i] = (float)rng_normal(seed, (uint64_t)i);
        ob[i] = (float)rng_normal(seed + 1, (uint64_t)i);
    }
    for (int64_t i = 0; i < (int64_t)H * Tq; i++) {
        l[i] = 3.0f * (float)rng_normal(seed + 2, (uint64_t)i) + 5.0f;
        lb[i] = 3.0f * (float)rng_normal(seed + 3, (uint64_t)i) + 5.0f;
    }
    float *o_d = dalloc(n), *ob_d = dalloc(n), *l_d = dalloc((int64_t)H * ld), *lb_d = dalloc((int64_t)H * ld_b);
    h2d(o_d, o, n);
    h2d(ob_d, ob, n);
    put_view(l_d, l, H, Tq, ld, off);
    put_view(lb_d, lb, H, Tq, ld_b, 0);
    cpu_attn_merge(o, l, Tq, ob, lb, Tq, Tq, H, D);
    cuda_attn_merge(o_d, l_d + off, ld, ob_d, lb_d, ld_b, Tq, H, D, 0);
    CUDA_CHECK(cudaDeviceSynchronize());
    float *og = FALLOC(n), *lg = FALLOC((int64_t)H * Tq);
    d2h(og, o_d, n);
    int ok = get_view(lg, l_d, H, Tq, ld, off);
    CHECK(ok);
    char cname[64];
    snprintf(cname, sizeof cname, "merge Tq=%d H=%d D=%d ld=%d+%d", Tq, H, D, ld, off);
    struct line lo, ll;
    line_start(&lo, cname, "out");
    line_add(&lo, 0, tu_max_rel_err(og, o, n));
    line_end(&lo, TOL_MERGE, "");
    line_start(&ll, cname, "lse");
    line_add(&ll, 0, tu_max_rel_err(lg, l, (int64_t)H * Tq));
    line_end(&ll, TOL_MERGE, ok ? "  (view rows only)" : "  WROTE OUTSIDE THE VIEW");
    free(o); free(ob); free(l); free(lb); free(og); free(lg);
    CUDA_CHECK(cudaFree(o_d)); CUDA_CHECK(cudaFree(ob_d));
    CUDA_CHECK(cudaFree(l_d)); CUDA_CHECK(cudaFree(lb_d));
}

int main(void) {
    int dev = 0;
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaSetDevice(dev));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    printf("test_attn on %s (sm_%d%d), %d CPU threads for the reference\n", prop.name, prop.major,
           prop.minor, omp_get_max_threads());
    printf("  %-34s %-6s errors per tile variant (max|gpu-cpu| / max|cpu|)\n", "case", "output");
    /* name, Tq, Tk, H, Hkv, D, causal, ld, off, qscale. The ring blocks of a shard of 2C = 1024
     * tokens: s = 0 causal (2C x 2C), src < r (2C rows x C keys), src > r (second C rows x 2C
     * keys, lse/delta view at offset C). */
    const struct acase cases[] = {
        {"causal MHA D128 T=2048", 2048, 2048, 8, 8, 128, 1, 2048, 0, 1.0f},
        {"causal GQA 32/8 D128 T=1024", 1024, 1024, 32, 8, 128, 1, 1024, 0, 1.0f},
        {"ring 2C x C GQA 32/8 D128", 1024, 512, 32, 8, 128, 0, 1024, 0, 1.0f},
        {"ring C x 2C GQA 32/8 D128 view+C", 512, 1024, 32, 8, 128, 0, 1024, 512, 1.0f},
        {"causal MHA D128 T=4096", 4096, 4096, 4, 4, 128, 1, 4096, 0, 1.0f},
        {"causal GQA 16/4 D64 T=777", 777, 777, 16, 4, 64, 1, 800, 0, 1.0f},
        {"ring C x 2C MHA D64 view+C", 384, 768, 8, 8, 64, 0, 768, 384, 1.0f},
        {"nc MHA D64 Tq=300 Tk=77", 300, 77, 4, 4, 64, 0, 300, 0, 1.0f},
        {"nc GQA 8/2 D128 Tq=77 Tk=300 peaky", 77, 300, 8, 2, 128, 0, 100, 11, 6.0f},
        {"causal D128 T=1", 1, 1, 2, 1, 128, 1, 1, 0, 1.0f},
        {"causal MQA 8/1 D128 T=333 peaky", 333, 333, 8, 1, 128, 1, 333, 0, 4.0f},
        {"simt causal GQA 4/2 D12 T=200", 200, 200, 4, 2, 12, 1, 200, 0, 1.0f},
        {"simt nc D12 Tq=100 Tk=150 view", 100, 150, 4, 2, 12, 0, 160, 60, 1.0f},
        {"simt causal MHA D8 T=64", 64, 64, 3, 3, 8, 1, 64, 0, 1.0f},
        {"simt causal D6 T=50", 50, 50, 2, 1, 6, 1, 50, 0, 1.0f},
        {"simt nc GQA 6/3 D16 Tq=70 Tk=40", 70, 40, 6, 3, 16, 0, 70, 0, 1.0f},
        {"simt causal D256 T=100", 100, 100, 2, 2, 256, 1, 100, 0, 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 1000 * (i + 1));
    test_no_keys();
    test_merge(300, 6, 40, 400, 50, 300, 7000);
    test_merge(1024, 32, 128, 2048, 1024, 1024, 7100);
    printf("CPU reference time %.1f s\n", g_cpu_seconds);
    return tu_done("test_attn");
}
