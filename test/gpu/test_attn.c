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
#include "cuda_attn.h"
#include "gpu_testutil.h"

#define TOL_OUT   1e-2
#define TOL_LSE   1e-3
#define TOL_GRAD  2e-2
#define TOL_DELTA 1e-4
#define TOL_MERGE 1e-5
#define GRAD_FLOOR 1e-2

#define N_FWD_VARIANTS 5
#define N_BWD_VARIANTS 5

static double g_cpu_seconds = 0;

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
    int ok = check_bound(l->worst, bound);
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

    /* inputs and the CPU reference */
    struct attn_ref r;
    g_cpu_seconds += attn_ref_init(&r, Tq, Tk, H, Hkv, D, c->causal, c->qscale, seed);

    /* device buffers */
    float *out_d = dalloc_f(nq), *lse_d = dalloc_f(nl), *del_d = dalloc_f(nl);
    float *dq_d = dalloc_f(nq), *dk_d = dalloc_f(nk), *dv_d = dalloc_f(nk);
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
            poison_f(out_d, nq);
            poison_f(lse_d, nl);
            cuda_attn_forward(out_d, lse_d + off, ld, r.q.dev, r.k.dev, r.v.dev, Tq, Tk, H, Hkv, D,
                              c->causal, 0);
            sync_device();
            d2h_f(og, out_d, nq);
            views_ok &= get_view(lg, lse_d, H, Tq, ld, off);
            written &= all_written(og, nq);
        }
        if (var == 0)
            repro = memcmp(out_g, out_g2, (size_t)nq * 4) == 0 &&
                    memcmp(lse_g, lse_g2, (size_t)H * Tq * 4) == 0;
        line_add(&lo, var, tu_max_rel_err(out_g, r.out, nq));
        line_add(&ll, var, tu_max_rel_err(lse_g, r.lse, (int64_t)H * Tq));
    }
    line_end(&lo, TOL_OUT, repro ? "  (bitwise reproducible)" : "  NOT REPRODUCIBLE");
    line_end(&ll, TOL_LSE, views_ok ? "  (view rows only)" : "  WROTE OUTSIDE THE VIEW / UNWRITTEN");
    CHECK(views_ok);
    CHECK(written);
    CHECK(repro);
    unsetenv("RT_ATTN_FWD_VARIANT");

    /* delta of the CPU's out (rounded to bf16, as the model saves it) and dout, into a view */
    {
        struct line l;
        line_start(&l, cname, "delta");
        poison_f(del_d, nl);
        cuda_attn_delta(del_d + off, ld, r.dout.dev, r.out16.dev, Tq, H, D, 0);
        sync_device();
        int ok = get_view(del_g, del_d, H, Tq, ld, off);
        line_add(&l, 0, tu_max_rel_err(del_g, r.delta, (int64_t)H * Tq));
        line_end(&l, TOL_DELTA, ok ? "" : "  WROTE OUTSIDE THE VIEW / UNWRITTEN");
        CHECK(ok);
    }

    /* backward: the CPU's lse and delta in views (NaN elsewhere), dq/dk/dv start from random
     * values (accumulation); the increment is compared with the CPU gradient */
    put_view(lse_d, r.lse, H, Tq, ld, off);
    put_view(del_d, r.delta, H, Tq, ld, off);
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
            h2d_f(dq_d, r.iq, nq);
            h2d_f(dk_d, r.ik, nk);
            h2d_f(dv_d, r.iv, nk);
            cuda_attn_backward(dq_d, dk_d, dv_d, r.dout.dev, r.q.dev, r.k.dev, r.v.dev, lse_d + off,
                               del_d + off, ld, Tq, Tk, H, Hkv, D, c->causal, 0);
            sync_device();
            d2h_f(qg, dq_d, nq);
            d2h_f(kg, dk_d, nk);
            d2h_f(vg, dv_d, nk);
        }
        if (var == 0) {
            kv_repro = memcmp(dk_g, dk_g2, (size_t)nk * 4) == 0 && memcmp(dv_g, dv_g2, (size_t)nk * 4) == 0;
            for (int64_t i = 0; i < nq; i++) {
                double e = fabs((double)dq_g[i] - dq_g2[i]);
                if (e > dq_diff) dq_diff = e;
            }
        }
        sub_init(dq_g, r.iq, nq);
        sub_init(dk_g, r.ik, nk);
        sub_init(dv_g, r.iv, nk);
        line_add(&lq, var, err_floor(dq_g, r.dq, nq, GRAD_FLOOR));
        line_add(&lk, var, err_floor(dk_g, r.dk, nk, GRAD_FLOOR));
        line_add(&lv, var, err_floor(dv_g, r.dv, nk, GRAD_FLOOR));
    }
    unsetenv("RT_ATTN_BWD_VARIANT");
    char extra[96];
    snprintf(extra, sizeof extra, "  (run-to-run max |diff| %.1e)", dq_diff);
    line_end(&lq, TOL_GRAD, extra);
    line_end(&lk, TOL_GRAD, kv_repro ? "  (bitwise reproducible)" : "  NOT REPRODUCIBLE");
    line_end(&lv, TOL_GRAD, kv_repro ? "  (bitwise reproducible)" : "  NOT REPRODUCIBLE");
    CHECK(kv_repro);

    free(out_g); free(out_g2); free(lse_g); free(lse_g2); free(del_g);
    free(dq_g); free(dk_g); free(dv_g); free(dq_g2); free(dk_g2); free(dv_g2);
    CUDA_CHECK(cudaFree(out_d)); CUDA_CHECK(cudaFree(lse_d)); CUDA_CHECK(cudaFree(del_d));
    CUDA_CHECK(cudaFree(dq_d)); CUDA_CHECK(cudaFree(dk_d)); CUDA_CHECK(cudaFree(dv_d));
    attn_ref_free(&r);
}

/* Tk = 0 (non-causal): out = 0, lse = -inf; the backward leaves the gradients alone. */
static void test_no_keys(void) {
    const int Tq = 5, H = 4, Hkv = 2, D = 64;
    struct bft q, kv;
    bft_init(&q, (int64_t)Tq * H * D, 99, 0.0f, 1.0f, 0);
    bft_init(&kv, 8, 98, 0.0f, 1.0f, 0);
    float *out_d = dalloc_f((int64_t)Tq * H * D), *lse_d = dalloc_f((int64_t)H * Tq);
    poison_f(out_d, (int64_t)Tq * H * D);
    poison_f(lse_d, (int64_t)H * Tq);
    cuda_attn_forward(out_d, lse_d, Tq, q.dev, kv.dev, kv.dev, Tq, 0, H, Hkv, D, 0, 0);
    sync_device();
    float *out = FALLOC((int64_t)Tq * H * D), lse[5 * 4];
    d2h_f(out, out_d, (int64_t)Tq * H * D);
    d2h_f(lse, lse_d, (int64_t)H * Tq);
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
    randn(o, n, seed, 1.0f);
    randn(ob, n, seed + 1, 1.0f);
    for (int64_t i = 0; i < (int64_t)H * Tq; i++) {
        l[i] = 3.0f * (float)rng_normal(seed + 2, (uint64_t)i) + 5.0f;
        lb[i] = 3.0f * (float)rng_normal(seed + 3, (uint64_t)i) + 5.0f;
    }
    float *o_d = dalloc_f(n), *ob_d = dalloc_f(n), *l_d = dalloc_f((int64_t)H * ld), *lb_d = dalloc_f((int64_t)H * ld_b);
    h2d_f(o_d, o, n);
    h2d_f(ob_d, ob, n);
    put_view(l_d, l, H, Tq, ld, off);
    put_view(lb_d, lb, H, Tq, ld_b, 0);
    cpu_attn_merge(o, l, Tq, ob, lb, Tq, Tq, H, D);
    cuda_attn_merge(o_d, l_d + off, ld, ob_d, lb_d, ld_b, Tq, H, D, 0);
    sync_device();
    float *og = FALLOC(n), *lg = FALLOC((int64_t)H * Tq);
    d2h_f(og, o_d, n);
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
