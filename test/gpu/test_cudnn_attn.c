/* test_cudnn_attn: the cuDNN block attention (cuda/cudnn_attn.h) against the CPU twin
 * (cpu_attn_*) and against the native kernels (cuda_attn_*), on a GPU, for the three zigzag
 * ring block kinds (s = 0 causal 2C x 2C; src < r: 2C rows x the first C keys; src > r: the
 * second C rows x 2C keys, lse/delta views at offset C of ld = 2C), GQA and MHA, D = 128 and
 * 64, plus odd lengths, a misaligned lse view (the staged-lse path) and one shape cuDNN does not
 * take (D = 12: the native fallback, with delta = NULL).
 * Inputs are random normals rounded to bf16; the CPU gets the same values as fp32.
 * Error = max |gpu - cpu| / max |cpu| over an output (for gradients the denominator is at
 * least GRAD_FLOOR, as in test_attn). Bounds, and why:
 *   out       1e-2  P is rounded to bf16 as the operand of P V, and cuDNN writes O in bf16
 *                   (2^-9 relative per element); measured 2.0e-3 - 3.0e-3.
 *   lse       1e-3  fp32 statistics, only the summation order and exp/log differ; relative to
 *                   max |lse|. A base-2 lse (or a missing scale) would be off by ~40 %.
 *   dq dk dv  2e-2  P and dS rounded to bf16 for four products, dQ/dK/dV written in bf16 by
 *                   cuDNN, delta from O rounded to bf16; measured 2.0e-3 - 5.7e-3.
 * Also checked: every output element written (buffers poisoned with NaN first), nothing in
 * the workspace read before written (it is poisoned with NaN before every call: this covers
 * cuDNN's dQ_accum, which cuDNN >= 9.6 clears itself), lse written only inside its view
 * (bitwise), the backward ACCUMULATES into random non-zero dq/dk/dv, and which path ran
 * (cuDNN where it must, the native kernel where cuDNN cannot). The distance to the native
 * kernel is printed (not bounded: both are approximations of the CPU).
 * The causal cases cuDNN takes also run the direct calls of a ring of one rank
 * (cudnn_attn_forward_bf16 / cudnn_attn_backward_bf16: bf16 outputs, overwritten) against the
 * CPU, with the same bounds, every output element written and the workspace poisoned.
 * RT_CUDNN_ATTN_VERBOSE=1 prints every plan built (engine, workspace, failed attempts). */
#include "cuda_attn.h"
#include "cudnn_attn.h"
#include "gpu_testutil.h"

#define TOL_OUT   1e-2
#define TOL_LSE   1e-3
#define TOL_GRAD  2e-2
#define GRAD_FLOOR 1e-2

/* "case output  cudnn-vs-cpu  bound  ok  | native-vs-cpu, cudnn-vs-native" */
static void report(const char *cname, const char *op, double e_cd, double e_nat, double e_cn, double bound,
                   const char *extra) {
    int ok = check_bound(e_cd, bound);
    printf("  %-36s %-5s cudnn %.2e  bound %.0e  %-6s| native %.2e  cudnn-native %.2e%s\n", cname, op, e_cd, bound,
           ok ? "ok" : "FAILED", e_nat, e_cn, extra ? extra : "");
}

/* ---------- one case ---------- */

struct acase {
    const char *name;
    int Tq, Tk, H, Hkv, D, causal;
    int ld, off;  /* lse/delta: rows [off, off+Tq) of an (H, ld) buffer */
    float qscale; /* larger: peakier softmax */
    int expect;   /* 1: must run on cuDNN, 0: must run natively, -1: either (reported) */
};

static struct cudnn_attn *g_ca;
static double g_cpu_seconds;

static int path_is_cudnn(void) { return strncmp(cudnn_attn_last_path(g_ca), "cudnn", 5) == 0; }

static void check_path(const struct acase *c, const char *what) {
    const int on = path_is_cudnn();
    printf("  %-36s %-5s path: %s\n", c->name, what, cudnn_attn_last_path(g_ca));
    if (c->expect >= 0) {
        tu_checks++;
        if (on != c->expect) {
            tu_failures++;
            printf("  %-36s %-5s FAILED: expected the %s path\n", c->name, what, c->expect ? "cuDNN" : "native");
        }
    }
}

/* 1 when no value is NaN (bf16 buffers are poisoned with 0xffff, a NaN). */
static int no_nan(const float *h, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (isnan(h[i])) return 0;
    return 1;
}

/* The direct (bf16, overwriting) calls of a ring of one rank, prepared with direct = 1. */
static void direct_case(const struct acase *c, const struct attn_ref *r) {
    const int Tq = c->Tq, Tk = c->Tk, H = c->H, Hkv = c->Hkv, D = c->D;
    const int64_t nq = (int64_t)Tq * H * D, nk = (int64_t)Tk * Hkv * D, nr = (int64_t)H * Tq;
    cudnn_attn_prepare(g_ca, Tq, Tk, H, Hkv, D, 1, Tq, 1);
    rt_bf16 *o = dmalloc((size_t)nq * 2), *g = dmalloc((size_t)(nq + 2 * nk) * 2);
    float *lse = dalloc_f(nr), *h = FALLOC(nq + 2 * nk), *hl = FALLOC(nr);
    poison(o, (size_t)nq * 2);
    poison_f(lse, nr);
    cudnn_attn_poison_workspace(g_ca);
    int fwd = cudnn_attn_forward_bf16(g_ca, o, lse, Tq, r->q.dev, r->k.dev, r->v.dev, Tq, Tk, H, Hkv, D, 1, 0);
    sync_device();
    CHECK(fwd);
    d2h_bf(h, o, nq);
    d2h_f(hl, lse, nr);
    int written = no_nan(h, nq) && all_written(hl, nr);
    CHECK(written);
    report(c->name, "out16", tu_max_rel_err(h, r->out, nq), 0, 0, TOL_OUT, written ? " (direct)" : " (direct) UNWRITTEN");
    report(c->name, "lse", tu_max_rel_err(hl, r->lse, nr), 0, 0, TOL_LSE, " (direct)");
    h2d_f(lse, r->lse, nr);
    poison(g, (size_t)(nq + 2 * nk) * 2);
    cudnn_attn_poison_workspace(g_ca);
    int bwd = cudnn_attn_backward_bf16(g_ca, g, g + nq, g + nq + nk, r->dout.dev, r->q.dev, r->k.dev, r->v.dev,
                                       r->out16.dev, lse, Tq, Tq, Tk, H, Hkv, D, 1, 0);
    sync_device();
    CHECK(bwd);
    d2h_bf(h, g, nq + 2 * nk);
    CHECK(no_nan(h, nq + 2 * nk));
    report(c->name, "dq16", err_floor(h, r->dq, nq, GRAD_FLOOR), 0, 0, TOL_GRAD, " (direct)");
    report(c->name, "dk16", err_floor(h + nq, r->dk, nk, GRAD_FLOOR), 0, 0, TOL_GRAD, " (direct)");
    report(c->name, "dv16", err_floor(h + nq + nk, r->dv, nk, GRAD_FLOOR), 0, 0, TOL_GRAD, " (direct)");
    CUDA_CHECK(cudaFree(o));
    CUDA_CHECK(cudaFree(g));
    CUDA_CHECK(cudaFree(lse));
    free(h);
    free(hl);
}

static void run_case(const struct acase *c, uint64_t seed) {
    const int Tq = c->Tq, Tk = c->Tk, H = c->H, Hkv = c->Hkv, D = c->D, ld = c->ld, off = c->off;
    const int64_t nq = (int64_t)Tq * H * D, nk = (int64_t)Tk * Hkv * D, nl = (int64_t)H * ld, nr = (int64_t)H * Tq;

    /* prepare() sizes for aligned lse views; the misaligned case (off % 4 != 0) takes the
     * staged-lse plan, a little larger: reserve with room for it */
    size_t need = cudnn_attn_prepare(g_ca, Tq, Tk, H, Hkv, D, c->causal, ld, 0);
    cudnn_attn_reserve(g_ca, need + need / 4 + ((size_t)1 << 20));

    /* inputs and the CPU reference */
    struct attn_ref r;
    g_cpu_seconds += attn_ref_init(&r, Tq, Tk, H, Hkv, D, c->causal, c->qscale, seed);

    float *out_d = dalloc_f(nq), *lse_d = dalloc_f(nl), *del_d = dalloc_f(nl);
    float *dq_d = dalloc_f(nq), *dk_d = dalloc_f(nk), *dv_d = dalloc_f(nk);
    float *out_g = FALLOC(nq), *lse_g = FALLOC(nr), *out_n = FALLOC(nq), *lse_n = FALLOC(nr);

    /* forward: native, then cuDNN, into poisoned buffers */
    poison_f(out_d, nq);
    poison_f(lse_d, nl);
    cuda_attn_forward(out_d, lse_d + off, ld, r.q.dev, r.k.dev, r.v.dev, Tq, Tk, H, Hkv, D, c->causal, 0);
    sync_device();
    d2h_f(out_n, out_d, nq);
    get_view(lse_n, lse_d, H, Tq, ld, off);
    poison_f(out_d, nq);
    poison_f(lse_d, nl);
    cudnn_attn_poison_workspace(g_ca);
    cudnn_attn_forward(g_ca, out_d, lse_d + off, ld, r.q.dev, r.k.dev, r.v.dev, Tq, Tk, H, Hkv, D, c->causal, 0);
    sync_device();
    check_path(c, "fwd");
    d2h_f(out_g, out_d, nq);
    int view_ok = get_view(lse_g, lse_d, H, Tq, ld, off);
    int written = all_written(out_g, nq);
    /* lse against the native kernel: the same layout and log base means the same numbers */
    double mean_g = 0, mean_n = 0, lse_abs = 0;
    for (int64_t i = 0; i < nr; i++) {
        mean_g += lse_g[i];
        mean_n += lse_n[i];
        double e = fabs((double)lse_g[i] - lse_n[i]);
        if (e > lse_abs) lse_abs = e;
    }
    char extra[256];
    snprintf(extra, sizeof extra, "%s", written ? "" : "  OUTPUT NOT FULLY WRITTEN");
    report(c->name, "out", tu_max_rel_err(out_g, r.out, nq), tu_max_rel_err(out_n, r.out, nq),
           tu_max_rel_err(out_g, out_n, nq), TOL_OUT, extra);
    snprintf(extra, sizeof extra, "  (max |lse-native| %.1e, mean %.4f vs native %.4f)%s", lse_abs, mean_g / nr,
             mean_n / nr, view_ok ? "" : "  WROTE OUTSIDE THE VIEW / UNWRITTEN");
    report(c->name, "lse", tu_max_rel_err(lse_g, r.lse, nr), tu_max_rel_err(lse_n, r.lse, nr),
           tu_max_rel_err(lse_g, lse_n, nr), TOL_LSE, extra);
    CHECK(view_ok);
    CHECK(written);

    /* backward from the CPU's out, lse, delta (views, NaN elsewhere); gradients start random */
    put_view(lse_d, r.lse, H, Tq, ld, off);
    put_view(del_d, r.delta, H, Tq, ld, off);
    float *g[2][3];
    for (int pass = 0; pass < 2; pass++) { /* 0 native, 1 cuDNN */
        g[pass][0] = FALLOC(nq);
        g[pass][1] = FALLOC(nk);
        g[pass][2] = FALLOC(nk);
        h2d_f(dq_d, r.iq, nq);
        h2d_f(dk_d, r.ik, nk);
        h2d_f(dv_d, r.iv, nk);
        if (pass == 0)
            cuda_attn_backward(dq_d, dk_d, dv_d, r.dout.dev, r.q.dev, r.k.dev, r.v.dev, lse_d + off, del_d + off, ld,
                               Tq, Tk, H, Hkv, D, c->causal, 0);
        else { /* the fallback shapes get delta = NULL: it is computed from out */
            cudnn_attn_poison_workspace(g_ca);
            cudnn_attn_backward(g_ca, dq_d, dk_d, dv_d, r.dout.dev, r.q.dev, r.k.dev, r.v.dev, r.out16.dev, lse_d + off,
                                c->expect == 0 ? NULL : del_d + off, ld, Tq, Tk, H, Hkv, D, c->causal, 0);
        }
        sync_device();
        if (pass == 1) check_path(c, "bwd");
        d2h_f(g[pass][0], dq_d, nq);
        d2h_f(g[pass][1], dk_d, nk);
        d2h_f(g[pass][2], dv_d, nk);
        sub_init(g[pass][0], r.iq, nq);
        sub_init(g[pass][1], r.ik, nk);
        sub_init(g[pass][2], r.iv, nk);
    }
    const char *names[3] = {"dq", "dk", "dv"};
    const float *ref[3] = {r.dq, r.dk, r.dv};
    const int64_t cnt[3] = {nq, nk, nk};
    for (int j = 0; j < 3; j++)
        report(c->name, names[j], err_floor(g[1][j], ref[j], cnt[j], GRAD_FLOOR),
               err_floor(g[0][j], ref[j], cnt[j], GRAD_FLOOR), err_floor(g[1][j], g[0][j], cnt[j], GRAD_FLOOR),
               TOL_GRAD, NULL);
    /* the lse / delta buffers were inputs: untouched outside and inside */
    float *chk = FALLOC(nr);
    CHECK(get_view(chk, lse_d, H, Tq, ld, off));
    CHECK(memcmp(chk, r.lse, (size_t)nr * 4) == 0);
    free(chk);

    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < 3; j++) free(g[pass][j]);
    free(out_g); free(lse_g); free(out_n); free(lse_n);
    CUDA_CHECK(cudaFree(out_d)); CUDA_CHECK(cudaFree(lse_d)); CUDA_CHECK(cudaFree(del_d));
    CUDA_CHECK(cudaFree(dq_d)); CUDA_CHECK(cudaFree(dk_d)); CUDA_CHECK(cudaFree(dv_d));
    if (c->causal && c->expect == 1) direct_case(c, &r);
    attn_ref_free(&r);
}

int main(void) {
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const size_t ver = cudnn_attn_version();
    printf("test_cudnn_attn on %s (sm_%d%d), cuDNN %zu, %d CPU threads for the reference\n", prop.name, prop.major,
           prop.minor, ver, omp_get_max_threads());
    if (ver == 0) {
        printf("built without cuDNN (RT_HAVE_CUDNN undefined): nothing to test\n");
        return 0;
    }
    g_ca = cudnn_attn_init(0);
    /* name, Tq, Tk, H, Hkv, D, causal, ld, off, qscale, expect. The ring blocks of a shard of
     * 2C = 1024 (GQA, D128) and 2C = 768 (MHA, D64). */
    const struct acase cases[] = {
        {"ring s=0 causal 2C GQA 32/8 D128", 1024, 1024, 32, 8, 128, 1, 1024, 0, 1.0f, 1},
        {"ring 2C x C GQA 32/8 D128", 1024, 512, 32, 8, 128, 0, 1024, 0, 1.0f, 1},
        {"ring C x 2C GQA 32/8 D128 view+C", 512, 1024, 32, 8, 128, 0, 1024, 512, 1.0f, 1},
        {"ring s=0 causal 2C MHA D64", 768, 768, 8, 8, 64, 1, 768, 0, 1.0f, 1},
        {"ring 2C x C MHA D64", 768, 384, 8, 8, 64, 0, 768, 0, 1.0f, 1},
        {"ring C x 2C MHA D64 view+C", 384, 768, 8, 8, 64, 0, 768, 384, 1.0f, 1},
        {"causal MHA D128 T=2048", 2048, 2048, 8, 8, 128, 1, 2048, 0, 1.0f, 1},
        {"ring C x 2C MHA D128 view+C", 512, 1024, 8, 8, 128, 0, 1024, 512, 1.0f, 1},
        {"causal GQA 16/4 D64 T=777", 777, 777, 16, 4, 64, 1, 800, 0, 1.0f, -1},
        {"nc GQA 8/2 D128 Tq=77 Tk=300 peaky off11", 77, 300, 8, 2, 128, 0, 100, 11, 6.0f, -1},
        {"causal MQA 8/1 D128 T=333 peaky", 333, 333, 8, 1, 128, 1, 333, 0, 4.0f, -1},
        {"fallback D12 causal GQA 4/2 T=200", 200, 200, 4, 2, 12, 1, 200, 0, 1.0f, 0},
    };
    printf("  errors: max|x-cpu|/max|cpu| (gradients: denominator >= %.0e); native = cuda_attn_*\n", GRAD_FLOOR);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 1000 * (i + 1));
    printf("CPU reference time %.1f s, cuDNN workspace %zu bytes\n", g_cpu_seconds, cudnn_attn_workspace_bytes(g_ca));
    cudnn_attn_free(g_ca);
    return tu_done("test_cudnn_attn");
}
