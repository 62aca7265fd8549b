/* test_ops (GPU): every non-attention CUDA op (cuda/cuda_ops.h) against its CPU twin
 * (src/cpu/cpu_ops.h), on a GPU. Inputs are random normals rounded to bf16 where the GPU
 * reads bf16, so the CPU computes on exactly the same values (as fp32). One line per check:
 * the measured error, the bound, ok/FAILED; the program exits non-zero when any check fails.
 * Error = max |gpu - cpu| / max |cpu| over the output (NaN or inf counts as infinite; every
 * out-of-place output is poisoned with NaN before the call, so an unwritten element fails).
 * Accumulating outputs ("+=") start from random values of the size of the increment and the
 * final values are compared. Bounds, and why:
 *   bf16 outputs       1e-2  one rounding to bf16 is <= 2^-9 relative (1.95e-3) of the
 *                            element; a last-bit flip where fp32 results differ in the last
 *                            ulp costs one bf16 ulp (<= 2^-8 relative); ~2e-3 is typical.
 *   fp32 GEMM dw       1e-4  same bf16 inputs, only the fp32 summation order differs.
 *   rstd               1e-5  fp32 sum of squares (the CPU sums in double).
 *   rmsnorm dw         1e-4  fp32 partial sums (the CPU sums in double).
 *   embedding dwte     1e-5  fp32 sums of a few rows in another order.
 *   xent loss          1e-3  relative to the CPU's sum (fp32 logsumexp vs double; ~1e-6 seen).
 *   xent dx, dw        1e-2  dlogits are rounded to bf16 before the two GEMMs.
 *   adamw p, m, v      1e-6  the same fp32 operations in the same order: bitwise expected
 *                            (the mismatch count is printed).
 *   sumsq              1e-12 relative: both sum exact squares in double, in another order.
 *   conversions, add, scale, embedding forward: bitwise.
 * The 4096^3 GEMMs are also timed (CUDA events, median of 20 after 3 warm-ups) and
 * reported in TFLOP/s, with a few Llama-shaped products (timing only). */
#include "gpu_testutil.h"
#include "params.h"

#define TOL_BF16   1e-2
#define TOL_DW     1e-4
#define TOL_RSTD   1e-5
#define TOL_NORMDW 1e-4
#define TOL_EMB    1e-5
#define TOL_LOSS   1e-3
#define TOL_XENT   1e-2
#define TOL_ADAMW  1e-6
#define TOL_SUMSQ  1e-12

static struct cuda_blas *g_blas;

/* ---------- errors ---------- */

/* max |a - b| / max |b|; a NaN or infinite difference gives +inf. */
static double nerr(const float *a, const float *b, int64_t n) {
    double maxref = 0, maxerr = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= 1e300)) return INFINITY;
        if (e > maxerr) maxerr = e;
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    }
    return maxerr / (maxref > 1e-30 ? maxref : 1e-30);
}

static void report(const char *cname, const char *what, double err, double bound,
                   const char *extra) {
    int ok = check_bound(err, bound);
    printf("  %-40s %-8s err %.2e  bound %.0e  %s%s\n", cname, what, err, bound,
           ok ? "ok" : "FAILED", extra ? extra : "");
    fflush(stdout);
}

/* An exact check: `bad` mismatches out of n. */
static void report_exact(const char *cname, const char *what, int64_t bad, int64_t n) {
    tu_checks++;
    if (bad) tu_failures++;
    printf("  %-40s %-8s %lld of %lld differ (bitwise)  %s\n", cname, what, (long long)bad,
           (long long)n, bad ? "FAILED" : "ok");
    fflush(stdout);
}

/* ---------- conversions, add, scale, sumsq ---------- */

static void test_convert(int64_t n, int off) {
    char cname[64];
    snprintf(cname, sizeof cname, "convert n=%lld off=%d", (long long)n, off);
    float *src = FALLOC(n);
    randn(src, n, 11, 1.0f);
    const float specials[] = {NAN, INFINITY, -INFINITY, -0.0f, 1e-40f, -3e-39f, 3.4e38f, -3.39e38f,
                              1.00390625f /* tie -> 1 */, 1.01171875f /* tie -> 1.015625 */,
                              -1.00390625f, 65504.0f, 1e-45f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0] && (int64_t)i * 97 < n; i++)
        src[i * 97] = specials[i];
    for (int64_t i = 1; i < n; i += 1013) src[i] *= 1e20f; /* a few large values */
    float *src_d = (float *)dmalloc((size_t)(n + off) * 4) + off;
    rt_bf16 *bf_d = (rt_bf16 *)dmalloc((size_t)(n + off) * 2) + off;
    h2d(src_d, src, (size_t)n * 4);
    poison(bf_d, (size_t)n * 2);
    cuda_to_bf16(bf_d, src_d, n, 0);
    sync_device();
    uint16_t *got = xmalloc((size_t)n * 2);
    d2h(got, bf_d, (size_t)n * 2);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t want = f2bf(src[i]);
        int isnan_w = (want & 0x7fffu) > 0x7f80u, isnan_g = (got[i] & 0x7fffu) > 0x7f80u;
        if (isnan_w ? !isnan_g : got[i] != want) bad++;
    }
    report_exact(cname, "to_bf16", bad, n);

    /* to_f32 of every bf16 pattern (repeated), exact bits */
    uint16_t *pat = xmalloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) pat[i] = (uint16_t)(i * 40503u + 7);
    h2d(bf_d, pat, (size_t)n * 2);
    poison(src_d, (size_t)n * 4);
    cuda_to_f32(src_d, bf_d, n, 0);
    sync_device();
    float *back = FALLOC(n);
    d2h(back, src_d, (size_t)n * 4);
    bad = 0;
    for (int64_t i = 0; i < n; i++) bad += fbits(back[i]) != fbits(bf2f(pat[i]));
    report_exact(cname, "to_f32", bad, n);
    free(src); free(got); free(pat); free(back);
    CUDA_CHECK(cudaFree(src_d - off));
    CUDA_CHECK(cudaFree(bf_d - off));
}

static void test_add_bf16(int64_t n, int off) {
    char cname[64];
    snprintf(cname, sizeof cname, "vec n=%lld off=%d", (long long)n, off);
    struct bft y, x;
    bft_init(&y, n, 21, 0.0f, 1.0f, off);
    bft_init(&x, n, 22, 0.0f, 0.3f, off);
    cuda_add_bf16(y.dev, x.dev, n, 0);
    sync_device();
    uint16_t *got = xmalloc((size_t)n * 2);
    d2h(got, y.dev, (size_t)n * 2);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += got[i] != f2bf(y.f[i] + x.f[i]);
    report_exact(cname, "add_bf16", bad, n);

    free(got);
    bft_free(&y);
    bft_free(&x);
}

static void test_sumsq(int64_t n, int off) {
    char cname[64];
    snprintf(cname, sizeof cname, "sumsq n=%lld off=%d", (long long)n, off);
    float *x = FALLOC(n);
    randn(x, n, 31, 1.5f);
    float *x_d = (float *)dmalloc((size_t)(n + off) * 4) + off;
    double *out_d = dmalloc(sizeof(double)), *scr = dmalloc(CUDA_SUMSQ_PARTS * sizeof(double));
    h2d(x_d, x, (size_t)n * 4);
    double got[2];
    for (int rep = 0; rep < 2; rep++) {
        poison(out_d, sizeof(double));
        cuda_sumsq(out_d, x_d, n, scr, 0);
        sync_device();
        d2h(&got[rep], out_d, sizeof(double));
    }
    double want = cpu_sumsq(x, n);
    double err = fabs(got[0] - want) / (want > 1e-300 ? want : 1.0);
    if (!(fabs(got[0] - want) <= 1e300)) err = INFINITY;
    report(cname, "sumsq", err, TOL_SUMSQ,
           memcmp(&got[0], &got[1], sizeof(double)) == 0 ? "  (bitwise reproducible)" : "  NOT REPRODUCIBLE");
    CHECK(memcmp(&got[0], &got[1], sizeof(double)) == 0);
    free(x);
    CUDA_CHECK(cudaFree(x_d - off));
    CUDA_CHECK(cudaFree(out_d));
    CUDA_CHECK(cudaFree(scr));
}

/* ---------- GEMM ---------- */

enum { OP_FWD, OP_DX, OP_DW };

/* Median milliseconds of one product (OP_*) over 20 timed runs after 3 warm-ups. */
static double time_gemm(int op, rt_bf16 *out, rt_bf16 *dx, float *dw, const rt_bf16 *x,
                        const rt_bf16 *w, const rt_bf16 *dy, int T, int n_in, int n_out) {
    enum { WARM = 3, REPS = 20 };
    struct gpu_timer tm;
    gpu_timer_init(&tm);
    float ms[REPS];
    for (int r = 0; r < WARM + REPS; r++) {
        gpu_timer_start(&tm);
        if (op == OP_FWD) cuda_matmul_forward(g_blas, out, x, w, T, n_in, n_out, 0);
        else if (op == OP_DX) cuda_matmul_backward(g_blas, dx, NULL, dy, x, w, T, n_in, n_out, 0);
        else cuda_matmul_backward(g_blas, NULL, dw, dy, x, w, T, n_in, n_out, 0);
        float t = gpu_timer_stop(&tm);
        if (r >= WARM) ms[r - WARM] = t;
    }
    gpu_timer_free(&tm);
    return median_ms(ms, REPS);
}

static char g_tflops[2048];
static size_t g_tflops_len;

static void note_tflops(const char *what, int T, int n_in, int n_out, double ms) {
    double tf = 2.0 * T * n_in * n_out / (ms * 1e-3) / 1e12;
    if (g_tflops_len < sizeof g_tflops)
        g_tflops_len += (size_t)snprintf(g_tflops + g_tflops_len, sizeof g_tflops - g_tflops_len,
                                         "  %-44s %8.3f ms  %6.1f TFLOP/s\n", what, ms, tf);
}

static void test_matmul(int T, int n_in, int n_out, int off, int timed) {
    char cname[64];
    snprintf(cname, sizeof cname, "matmul T=%d in=%d out=%d%s", T, n_in, n_out, off ? " off=1" : "");
    const int64_t nx = (int64_t)T * n_in, nw = (int64_t)n_out * n_in, ny = (int64_t)T * n_out;
    struct bft x, w, dy, dx;
    bft_init(&x, nx, 101, 0.0f, 1.0f, off);
    bft_init(&w, nw, 102, 0.0f, 1.0f, off);
    bft_init(&dy, ny, 103, 0.0f, 1.0f, off);
    /* dx starts at values of the size of the increment (sqrt(n_out)) */
    bft_init(&dx, nx, 104, 0.0f, sqrtf((float)n_out), off);
    float *dw0 = FALLOC(nw);
    randn(dw0, nw, 105, sqrtf((float)T));

    float *out_c = FALLOC(ny), *dx_c = FALLOC(nx), *dw_c = FALLOC(nw);
    cpu_matmul_forward(out_c, x.f, w.f, T, n_in, n_out);
    memcpy(dx_c, dx.f, (size_t)nx * 4);
    memcpy(dw_c, dw0, (size_t)nw * 4);
    cpu_matmul_backward(dx_c, dw_c, dy.f, x.f, w.f, T, n_in, n_out);

    rt_bf16 *out_base = dmalloc((size_t)(ny + off) * 2), *out_d = out_base + off;
    float *dw_d = dmalloc((size_t)nw * 4);
    poison(out_d, (size_t)ny * 2);
    h2d(dw_d, dw0, (size_t)nw * 4);
    cuda_matmul_forward(g_blas, out_d, x.dev, w.dev, T, n_in, n_out, 0);
    cuda_matmul_backward(g_blas, dx.dev, dw_d, dy.dev, x.dev, w.dev, T, n_in, n_out, 0);
    sync_device();
    float *out_g = FALLOC(ny), *dx_g = FALLOC(nx), *dw_g = FALLOC(nw);
    d2h_bf(out_g, out_d, ny);
    d2h_bf(dx_g, dx.dev, nx);
    d2h(dw_g, dw_d, (size_t)nw * 4);
    report(cname, "out", nerr(out_g, out_c, ny), TOL_BF16, NULL);
    report(cname, "dx +=", nerr(dx_g, dx_c, nx), TOL_BF16, NULL);
    report(cname, "dw +=", nerr(dw_g, dw_c, nw), TOL_DW, NULL);

    /* dx == NULL: dw only (dx untouched); from dw0 again */
    h2d(dw_d, dw0, (size_t)nw * 4);
    bft_upload(&dx);
    cuda_matmul_backward(g_blas, NULL, dw_d, dy.dev, x.dev, w.dev, T, n_in, n_out, 0);
    sync_device();
    d2h(dw_g, dw_d, (size_t)nw * 4);
    float *dx_u = FALLOC(nx);
    d2h_bf(dx_u, dx.dev, nx);
    report(cname, "dw only", nerr(dw_g, dw_c, nw), TOL_DW,
           memcmp(dx_u, dx.f, (size_t)nx * 4) == 0 ? "  (dx untouched)" : "  DX CHANGED");
    CHECK(memcmp(dx_u, dx.f, (size_t)nx * 4) == 0);
    free(dx_u);

    if (timed) {
        char what[96];
        double ms;
        ms = time_gemm(OP_FWD, out_d, NULL, NULL, x.dev, w.dev, NULL, T, n_in, n_out);
        snprintf(what, sizeof what, "fwd  x(%d,%d) w(%d,%d)^T", T, n_in, n_out, n_in);
        note_tflops(what, T, n_in, n_out, ms);
        ms = time_gemm(OP_DX, NULL, dx.dev, NULL, x.dev, w.dev, dy.dev, T, n_in, n_out);
        snprintf(what, sizeof what, "dx   += dy(%d,%d) w", T, n_out);
        note_tflops(what, T, n_in, n_out, ms);
        ms = time_gemm(OP_DW, NULL, NULL, dw_d, x.dev, w.dev, dy.dev, T, n_in, n_out);
        snprintf(what, sizeof what, "dw   += dy^T x (fp32 out)");
        note_tflops(what, T, n_in, n_out, ms);
    }

    free(dw0); free(out_c); free(dx_c); free(dw_c); free(out_g); free(dx_g); free(dw_g);
    CUDA_CHECK(cudaFree(out_base));
    CUDA_CHECK(cudaFree(dw_d));
    bft_free(&x); bft_free(&w); bft_free(&dy); bft_free(&dx);
}

/* Timing only (random bf16 data, no CPU reference): the three products of a linear layer. */
static void time_matmul(const char *name, int T, int n_in, int n_out) {
    const int64_t nx = (int64_t)T * n_in, nw = (int64_t)n_out * n_in, ny = (int64_t)T * n_out;
    struct bft x, w, dy;
    bft_init(&x, nx, 111, 0.0f, 1.0f, 0);
    bft_init(&w, nw, 112, 0.0f, 0.02f, 0);
    bft_init(&dy, ny, 113, 0.0f, 1.0f, 0);
    rt_bf16 *out = dmalloc((size_t)ny * 2), *dx = dmalloc((size_t)nx * 2);
    float *dw = dmalloc((size_t)nw * 4);
    CUDA_CHECK(cudaMemset(dx, 0, (size_t)nx * 2));
    CUDA_CHECK(cudaMemset(dw, 0, (size_t)nw * 4));
    char what[96];
    snprintf(what, sizeof what, "%s fwd (%d,%d)x(%d,%d)^T", name, T, n_in, n_out, n_in);
    note_tflops(what, T, n_in, n_out, time_gemm(OP_FWD, out, NULL, NULL, x.dev, w.dev, NULL, T, n_in, n_out));
    snprintf(what, sizeof what, "%s dx", name);
    note_tflops(what, T, n_in, n_out, time_gemm(OP_DX, NULL, dx, NULL, x.dev, w.dev, dy.dev, T, n_in, n_out));
    snprintf(what, sizeof what, "%s dw", name);
    note_tflops(what, T, n_in, n_out, time_gemm(OP_DW, NULL, NULL, dw, x.dev, w.dev, dy.dev, T, n_in, n_out));
    CUDA_CHECK(cudaFree(out));
    CUDA_CHECK(cudaFree(dx));
    CUDA_CHECK(cudaFree(dw));
    bft_free(&x); bft_free(&w); bft_free(&dy);
}

/* ---------- RMSNorm ---------- */

static void test_rmsnorm(int T, int d, int off) {
    char cname[64];
    snprintf(cname, sizeof cname, "rmsnorm T=%d d=%d%s", T, d, off ? " off=1" : "");
    const int64_t n = (int64_t)T * d;
    const float eps = 1e-5f;
    struct bft x, w, g, dx;
    bft_init(&x, n, 201, 0.0f, 3.0f, off);
    bft_init(&w, d, 202, 1.0f, 0.2f, off);
    bft_init(&g, n, 203, 0.0f, 1.0f, off);
    bft_init(&dx, n, 204, 0.0f, 1.0f, off);
    float *dw0 = FALLOC(d);
    randn(dw0, d, 205, sqrtf((float)T));

    float *out_c = FALLOC(n), *rstd_c = FALLOC(T), *dx_c = FALLOC(n), *dw_c = FALLOC(d);
    cpu_rmsnorm_forward(out_c, rstd_c, x.f, w.f, T, d, eps);
    memcpy(dx_c, dx.f, (size_t)n * 4);
    memcpy(dw_c, dw0, (size_t)d * 4);
    cpu_rmsnorm_backward(dx_c, dw_c, g.f, x.f, w.f, rstd_c, T, d);

    rt_bf16 *out_base = dmalloc((size_t)(n + off) * 2), *out_d = out_base + off;
    float *rstd_d = dmalloc((size_t)T * 4), *dw_d = dmalloc((size_t)d * 4);
    size_t sb = cuda_rmsnorm_scratch(T, d);
    float *scr = sb ? dmalloc(sb) : NULL;
    poison(out_d, (size_t)n * 2);
    poison(rstd_d, (size_t)T * 4);
    cuda_rmsnorm_forward(out_d, rstd_d, x.dev, w.dev, T, d, eps, 0);
    sync_device();
    float *out_g = FALLOC(n), *rstd_g = FALLOC(T), *dx_g = FALLOC(n), *dw_g = FALLOC(d),
          *dw_g2 = FALLOC(d);
    d2h_bf(out_g, out_d, n);
    d2h(rstd_g, rstd_d, (size_t)T * 4);
    report(cname, "out", nerr(out_g, out_c, n), TOL_BF16, NULL);
    report(cname, "rstd", nerr(rstd_g, rstd_c, T), TOL_RSTD, NULL);

    /* backward with the CPU's rstd, twice from the same start (dw must be bitwise the same) */
    h2d(rstd_d, rstd_c, (size_t)T * 4);
    for (int rep = 0; rep < 2; rep++) {
        bft_upload(&dx);
        h2d(dw_d, dw0, (size_t)d * 4);
        cuda_rmsnorm_backward(dx.dev, dw_d, g.dev, x.dev, w.dev, rstd_d, T, d, scr, 0);
        sync_device();
        d2h(rep ? dw_g2 : dw_g, dw_d, (size_t)d * 4);
    }
    d2h_bf(dx_g, dx.dev, n);
    int repro = memcmp(dw_g, dw_g2, (size_t)d * 4) == 0;
    char extra[96];
    snprintf(extra, sizeof extra, "  (%zu B scratch; %s)", sb, repro ? "bitwise reproducible" : "NOT REPRODUCIBLE");
    report(cname, "dx +=", nerr(dx_g, dx_c, n), TOL_BF16, NULL);
    report(cname, "dw +=", nerr(dw_g, dw_c, d), TOL_NORMDW, extra);
    CHECK(repro);

    free(dw0); free(out_c); free(rstd_c); free(dx_c); free(dw_c);
    free(out_g); free(rstd_g); free(dx_g); free(dw_g); free(dw_g2);
    CUDA_CHECK(cudaFree(out_base));
    CUDA_CHECK(cudaFree(rstd_d));
    CUDA_CHECK(cudaFree(dw_d));
    if (scr) CUDA_CHECK(cudaFree(scr));
    bft_free(&x); bft_free(&w); bft_free(&g); bft_free(&dx);
}

/* ---------- RoPE ---------- */

/* type: ROPE_DEFAULT (theta 1e4), ROPE_LLAMA3 (Llama 3.1's, theta 5e5) or ROPE_YARN (factor
 * 4 over 4096 positions, theta 1e4: attention factor 1.139, which scales cos and sin). */
static void test_rope(int T, int nh, int D, int64_t maxpos, int type) {
    char cname[64];
    snprintf(cname, sizeof cname, "rope T=%d nh=%d D=%d pos<%lld %s", T, nh, D, (long long)maxpos,
             rope_type_name(type));
    struct rope_scaling rs;
    rope_defaults(&rs, type);
    double theta = type == ROPE_LLAMA3 ? 500000.0 : 10000.0, scale;
    if (type == ROPE_LLAMA3) {
        rs.factor = 8.0;
        rs.low_freq_factor = 1.0;
        rs.high_freq_factor = 4.0;
        rs.original_max_pos = 8192;
    } else if (type == ROPE_YARN) {
        rs.factor = 4.0;
        rs.original_max_pos = 4096;
    }
    double *inv = xmalloc((size_t)(D / 2) * sizeof(double));
    rope_frequencies(&rs, theta, D, inv, &scale);
    int64_t *pos = xmalloc((size_t)T * sizeof(int64_t));
    for (int t = 0; t < T; t++) pos[t] = (int64_t)(rng_u64(301, (uint64_t)t) % (uint64_t)maxpos);
    pos[T - 1] = maxpos - 1;
    double *inv_d = dmalloc((size_t)(D / 2) * sizeof(double));
    int64_t *pos_d = dmalloc((size_t)T * sizeof(int64_t));
    h2d(inv_d, inv, (size_t)(D / 2) * sizeof(double));
    h2d(pos_d, pos, (size_t)T * sizeof(int64_t));

    const int64_t n = (int64_t)T * nh * D;
    struct bft x;
    bft_init(&x, n, 302, 0.0f, 1.0f, 0);
    float *ref = FALLOC(n), *got = FALLOC(n);
    for (int dir = 0; dir < 2; dir++) {
        if (dir) {
            bft_fill(&x, 303, 0.0f, 1.0f);
            bft_upload(&x);
        }
        memcpy(ref, x.f, (size_t)n * 4);
        if (dir == 0) {
            cpu_rope_forward(ref, pos, inv, scale, T, nh, D);
            cuda_rope_forward(x.dev, pos_d, inv_d, scale, T, nh, D, 0);
        } else {
            cpu_rope_backward(ref, pos, inv, scale, T, nh, D);
            cuda_rope_backward(x.dev, pos_d, inv_d, scale, T, nh, D, 0);
        }
        sync_device();
        d2h_bf(got, x.dev, n);
        report(cname, dir ? "bwd" : "fwd", nerr(got, ref, n), TOL_BF16, NULL);
    }
    free(inv); free(pos); free(ref); free(got);
    CUDA_CHECK(cudaFree(inv_d));
    CUDA_CHECK(cudaFree(pos_d));
    bft_free(&x);
}

/* ---------- SwiGLU ---------- */

static void test_swiglu(int64_t n, int off) {
    char cname[64];
    snprintf(cname, sizeof cname, "swiglu n=%lld%s", (long long)n, off ? " off=1" : "");
    struct bft gate, up, dout;
    bft_init(&gate, n, 401, 0.0f, 3.0f, off); /* both sigmoid branches, saturation */
    bft_init(&up, n, 402, 0.0f, 1.0f, off);
    bft_init(&dout, n, 403, 0.0f, 1.0f, off);
    float *out_c = FALLOC(n), *dg_c = FALLOC(n), *du_c = FALLOC(n), *got = FALLOC(n);
    cpu_swiglu_forward(out_c, gate.f, up.f, n);
    cpu_swiglu_backward(dg_c, du_c, dout.f, gate.f, up.f, n);
    rt_bf16 *b1 = dmalloc((size_t)(n + off) * 2), *b2 = dmalloc((size_t)(n + off) * 2),
            *b3 = dmalloc((size_t)(n + off) * 2);
    rt_bf16 *out_d = b1 + off, *dg_d = b2 + off, *du_d = b3 + off;
    poison(out_d, (size_t)n * 2);
    poison(dg_d, (size_t)n * 2);
    poison(du_d, (size_t)n * 2);
    cuda_swiglu_forward(out_d, gate.dev, up.dev, n, 0);
    cuda_swiglu_backward(dg_d, du_d, dout.dev, gate.dev, up.dev, n, 0);
    sync_device();
    d2h_bf(got, out_d, n);
    report(cname, "out", nerr(got, out_c, n), TOL_BF16, NULL);
    d2h_bf(got, dg_d, n);
    report(cname, "dgate", nerr(got, dg_c, n), TOL_BF16, NULL);
    d2h_bf(got, du_d, n);
    report(cname, "dup", nerr(got, du_c, n), TOL_BF16, NULL);
    free(out_c); free(dg_c); free(du_c); free(got);
    CUDA_CHECK(cudaFree(b1)); CUDA_CHECK(cudaFree(b2)); CUDA_CHECK(cudaFree(b3));
    bft_free(&gate); bft_free(&up); bft_free(&dout);
}

/* ---------- embedding ---------- */

static void test_embedding(int T, int d, int V) {
    char cname[64];
    snprintf(cname, sizeof cname, "embedding T=%d d=%d V=%d", T, d, V);
    int32_t *tok = xmalloc((size_t)T * 4);
    for (int t = 0; t < T; t++) tok[t] = (int32_t)(rng_u64(501, (uint64_t)t) % (uint64_t)V);
    tok[0] = V - 1;
    int32_t *tok_d = dmalloc((size_t)T * 4);
    h2d(tok_d, tok, (size_t)T * 4);
    const int64_t n = (int64_t)T * d, nv = (int64_t)V * d;
    struct bft wte, dout;
    bft_init(&wte, nv, 502, 0.0f, 1.0f, 0);
    bft_init(&dout, n, 503, 0.0f, 1.0f, 0);
    float *out_c = FALLOC(n), *got = FALLOC(n);
    cpu_embedding_forward(out_c, tok, wte.f, T, d);
    rt_bf16 *out_d = dmalloc((size_t)n * 2);
    poison(out_d, (size_t)n * 2);
    cuda_embedding_forward(out_d, tok_d, wte.dev, T, d, 0);
    sync_device();
    d2h_bf(got, out_d, n);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += fbits(got[i]) != fbits(out_c[i]);
    report_exact(cname, "fwd", bad, n);

    float *dw_c = FALLOC(nv), *dw_g = FALLOC(nv);
    randn(dw_c, nv, 504, 1.0f);
    float *dw_d = dmalloc((size_t)nv * 4);
    h2d(dw_d, dw_c, (size_t)nv * 4);
    cpu_embedding_backward(dw_c, dout.f, tok, T, d);
    cuda_embedding_backward(dw_d, dout.dev, tok_d, T, d, 0);
    sync_device();
    d2h(dw_g, dw_d, (size_t)nv * 4);
    report(cname, "dwte +=", nerr(dw_g, dw_c, nv), TOL_EMB, "  (fp32 atomics)");
    free(tok); free(out_c); free(got); free(dw_c); free(dw_g);
    CUDA_CHECK(cudaFree(tok_d));
    CUDA_CHECK(cudaFree(out_d));
    CUDA_CHECK(cudaFree(dw_d));
    bft_free(&wte); bft_free(&dout);
}

/* ---------- lm_head + cross-entropy ---------- */

/* grad_scale < 0: 1 / (number of counted tokens), with dx and dw starting at zero;
 * otherwise dx and dw start at random values of the size of the increments. */
static void test_xent(int T, int d, int V, int chunk, double ignore_frac, float grad_scale) {
    char cname[64];
    snprintf(cname, sizeof cname, "xent T=%d d=%d V=%d chunk=%d", T, d, V, chunk);
    int32_t *lab = xmalloc((size_t)T * 4);
    int count = 0;
    for (int t = 0; t < T; t++) {
        lab[t] = (int32_t)(rng_u64(601, (uint64_t)t) % (uint64_t)V);
        if (rng_uniform(602, (uint64_t)t) < ignore_frac) lab[t] = -1;
        count += lab[t] >= 0;
    }
    const int zero_start = grad_scale < 0;
    if (zero_start) grad_scale = 1.0f / (float)(count > 0 ? count : 1);
    const int64_t nx = (int64_t)T * d, nw = (int64_t)V * d;
    struct bft x, w, dx;
    bft_init(&x, nx, 603, 0.0f, 1.0f, 0);
    bft_init(&w, nw, 604, 0.0f, 2.0f / sqrtf((float)d), 0); /* logits ~ N(0, 4) */
    bft_init(&dx, nx, 605, 0.0f, zero_start ? 0.0f : 1.0f, 0);
    float *dw0 = FALLOC(nw);
    randn(dw0, nw, 606, zero_start ? 0.0f : 1.0f);

    float *dx_c = FALLOC(nx), *dw_c = FALLOC(nw), *scr_c = FALLOC((int64_t)chunk * V);
    memcpy(dx_c, dx.f, (size_t)nx * 4);
    memcpy(dw_c, dw0, (size_t)nw * 4);
    double t0 = omp_get_wtime();
    double *tl_c = xmalloc((size_t)T * sizeof(double)), *tl_g = xmalloc((size_t)T * sizeof(double));
    int32_t *tp_c = xmalloc((size_t)T * 4), *tp_g = xmalloc((size_t)T * 4);
    double loss_c = cpu_xent_forward_backward(dx_c, dw_c, tl_c, tp_c, x.f, w.f, lab, T, d, V, grad_scale, chunk,
                                              scr_c);
    double cpu_s = omp_get_wtime() - t0;

    int32_t *lab_d = dmalloc((size_t)T * 4);
    h2d(lab_d, lab, (size_t)T * 4);
    size_t sb = cuda_xent_scratch(chunk, V);
    void *scr = dmalloc(sb);
    float *dw_d = dmalloc((size_t)nw * 4);
    h2d(dw_d, dw0, (size_t)nw * 4);
    double *loss_d = dmalloc(3 * sizeof(double)), loss0 = 1.5, losses[3];
    for (int i = 0; i < 3; i++) h2d(loss_d + i, &loss0, sizeof(double));
    cuda_xent(g_blas, loss_d, NULL, NULL, dx.dev, dw_d, x.dev, w.dev, lab_d, T, d, V, grad_scale, chunk, scr, 0);
    /* forward only (loss must be bitwise the training call's) with each token's loss and
     * argmax, and the same again without them */
    double *tl_d = dmalloc((size_t)T * sizeof(double));
    int32_t *tp_d = dmalloc((size_t)T * 4);
    cuda_xent(g_blas, loss_d + 1, tl_d, tp_d, NULL, NULL, x.dev, w.dev, lab_d, T, d, V, grad_scale, chunk, scr, 0);
    cuda_xent(g_blas, loss_d + 2, NULL, NULL, NULL, NULL, x.dev, w.dev, lab_d, T, d, V, grad_scale, chunk, scr, 0);
    sync_device();
    d2h(losses, loss_d, 3 * sizeof(double));
    float *dx_g = FALLOC(nx), *dw_g = FALLOC(nw);
    d2h_bf(dx_g, dx.dev, nx);
    d2h(dw_g, dw_d, (size_t)nw * 4);
    /* time one more training call (descriptors cached now); its results are not checked */
    struct gpu_timer tm;
    gpu_timer_init(&tm);
    gpu_timer_start(&tm);
    cuda_xent(g_blas, loss_d + 2, NULL, NULL, dx.dev, dw_d, x.dev, w.dev, lab_d, T, d, V, grad_scale, chunk, scr, 0);
    float ms = gpu_timer_stop(&tm);
    sync_device();

    const double lg = losses[0] - loss0;
    double lerr = fabs(lg - loss_c) / (fabs(loss_c) > 1e-30 ? fabs(loss_c) : 1e-30);
    if (!(fabs(lg - loss_c) <= 1e300)) lerr = INFINITY;
    int same = losses[0] == losses[1] && losses[1] == losses[2];
    char extra[160];
    snprintf(extra, sizeof extra, "  (loss %.6f vs cpu %.6f, %d of %d tokens; fwd-only %s; gpu %.2f ms, cpu %.2f s)",
             lg, loss_c, count, T, same ? "bitwise equal" : "DIFFERS", ms, cpu_s);
    report(cname, "loss", lerr, TOL_LOSS, extra);
    CHECK(same);
    report(cname, zero_start ? "dx" : "dx +=", nerr(dx_g, dx_c, nx), TOL_XENT, NULL);
    report(cname, zero_start ? "dw" : "dw +=", nerr(dw_g, dw_c, nw), TOL_XENT, NULL);
    /* each token's loss: the largest difference over the mean loss; the argmax: a token whose
     * argmax differs from the CPU's must be a near tie, its two logits (in double from the
     * same bf16 values) within 1e-4 of the largest logit's size */
    d2h(tl_g, tl_d, (size_t)T * sizeof(double));
    d2h(tp_g, tp_d, (size_t)T * 4);
    double dmax = 0, lsum = 0;
    int differ = 0, far = 0;
    for (int t = 0; t < T; t++) {
        lsum += fabs(tl_c[t]);
        double e = fabs(tl_g[t] - tl_c[t]);
        if (e != e) e = INFINITY;
        if (e > dmax) dmax = e;
        if (tp_g[t] == tp_c[t]) continue;
        differ++;
        double a = 0, b = 0, big = 0;
        for (int j = 0; j < V; j++) {
            double z = 0;
            for (int i = 0; i < d; i++) z += (double)x.f[(int64_t)t * d + i] * w.f[(int64_t)j * d + i];
            if (j == tp_g[t]) a = z;
            if (j == tp_c[t]) b = z;
            big = fabs(z) > big ? fabs(z) : big;
        }
        far += tp_g[t] < 0 || tp_g[t] >= V || fabs(a - b) > 1e-4 * big;
    }
    snprintf(extra, sizeof extra, "  (argmax differs at %d of %d tokens, %d of them not a near tie)", differ, T, far);
    report(cname, "token losses", dmax / (lsum > 0 ? lsum / T : 1.0), TOL_LOSS, extra);
    CHECK(far == 0);
    free(tl_c); free(tl_g); free(tp_c); free(tp_g);
    CUDA_CHECK(cudaFree(tl_d));
    CUDA_CHECK(cudaFree(tp_d));

    gpu_timer_free(&tm);
    free(lab); free(dw0); free(dx_c); free(dw_c); free(scr_c); free(dx_g); free(dw_g);
    CUDA_CHECK(cudaFree(lab_d));
    CUDA_CHECK(cudaFree(scr));
    CUDA_CHECK(cudaFree(dw_d));
    CUDA_CHECK(cudaFree(loss_d));
    bft_free(&x); bft_free(&w); bft_free(&dx);
}

/* ---------- AdamW ---------- */

static void test_adamw(int64_t n, int off, int with_bf16) {
    char cname[64];
    snprintf(cname, sizeof cname, "adamw n=%lld%s%s", (long long)n, off ? " off=1" : "",
             with_bf16 ? " +bf16" : "");
    const float lr = 3e-4f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    float *p = FALLOC(n), *g = FALLOC(n), *m = FALLOC(n), *v = FALLOC(n);
    randn(p, n, 701, 1.0f);
    memset(m, 0, (size_t)n * 4);
    memset(v, 0, (size_t)n * 4);
    float *bufs[4];
    for (int k = 0; k < 4; k++) bufs[k] = dmalloc((size_t)(n + off) * 4);
    float *p_d = bufs[0] + off, *g_d = bufs[1] + off, *m_d = bufs[2] + off, *v_d = bufs[3] + off;
    rt_bf16 *pb_base = with_bf16 ? dmalloc((size_t)(n + off) * 2) : NULL;
    rt_bf16 *pb_d = with_bf16 ? pb_base + off : NULL;
    h2d(p_d, p, (size_t)n * 4);
    h2d(m_d, m, (size_t)n * 4);
    h2d(v_d, v, (size_t)n * 4);
    if (pb_d) poison(pb_d, (size_t)n * 2);
    for (int step = 1; step <= 3; step++) {
        randn(g, n, 710 + (uint64_t)step, 0.1f);
        if (step == 2)
            for (int64_t i = 0; i < n; i += 17) g[i] = 0.0f;
        h2d(g_d, g, (size_t)n * 4);
        float bc1 = (float)(1.0 - pow(b1, step)), bc2 = (float)(1.0 - pow(b2, step));
        float gs = step == 3 ? 0.37f : 1.0f; /* the clipping coefficient, fused */
        cpu_adamw(p, g, gs, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
        cuda_adamw(p_d, pb_d, g_d, gs, m_d, v_d, n, lr, b1, b2, eps, wd, bc1, bc2, 0);
    }
    sync_device();
    float *pg = FALLOC(n), *mg = FALLOC(n), *vg = FALLOC(n);
    d2h(pg, p_d, (size_t)n * 4);
    d2h(mg, m_d, (size_t)n * 4);
    d2h(vg, v_d, (size_t)n * 4);
    const float *want[3] = {p, m, v}, *got[3] = {pg, mg, vg};
    const char *names[3] = {"p (3 st)", "m", "v"};
    for (int k = 0; k < 3; k++) {
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += fbits(got[k][i]) != fbits(want[k][i]);
        char extra[64];
        snprintf(extra, sizeof extra, "  (%lld of %lld not bitwise equal)", (long long)bad, (long long)n);
        report(cname, names[k], nerr(got[k], want[k], n), TOL_ADAMW, extra);
    }
    if (pb_d) {
        uint16_t *pb = xmalloc((size_t)n * 2);
        d2h(pb, pb_d, (size_t)n * 2);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += pb[i] != f2bf(pg[i]);
        report_exact(cname, "p_bf16", bad, n);
        free(pb);
        CUDA_CHECK(cudaFree(pb_base));
    }
    free(p); free(g); free(m); free(v); free(pg); free(mg); free(vg);
    for (int k = 0; k < 4; k++) CUDA_CHECK(cudaFree(bufs[k]));
}


/* ---------- speed of the memory-bound ops (informational, no bound) ---------- */

static char g_bw[4096];
static size_t g_bw_len;

/* Median ms of 10 runs of `call` after 2 warm-ups; appends a line with the bytes moved. */
#define TIME_OP(what, bytes, call)                                                            \
    do {                                                                                      \
        struct gpu_timer tm_;                                                                 \
        float ms_[10];                                                                        \
        gpu_timer_init(&tm_);                                                                 \
        for (int r_ = 0; r_ < 12; r_++) {                                                     \
            gpu_timer_start(&tm_);                                                            \
            call;                                                                             \
            float t_ = gpu_timer_stop(&tm_);                                                  \
            if (r_ >= 2) ms_[r_ - 2] = t_;                                                    \
        }                                                                                     \
        const double med_ = median_ms(ms_, 10);                                               \
        if (g_bw_len < sizeof g_bw)                                                           \
            g_bw_len += (size_t)snprintf(g_bw + g_bw_len, sizeof g_bw - g_bw_len,             \
                                         "  %-44s %8.3f ms  %7.0f GB/s\n", (what), med_,      \
                                         (double)(bytes) / (med_ * 1e-3) / 1e9);              \
        gpu_timer_free(&tm_);                                                                 \
    } while (0)

static void time_memory_ops(void) {
    const int64_t n = (int64_t)1 << 28; /* 268M values */
    const int T = 16384, d = 4096, nh = 32, D = 128;
    const int64_t td = (int64_t)T * d, nf = (int64_t)T * 14336;
    /* one pool, filled with the byte 0x3c (bf16 0x3c3c = 0.0115, fp32 0x3c3c3c3c = 0.0115):
     * finite non-zero values */
    size_t pool_bytes = (size_t)n * 4 * 4 + (size_t)n * 2 + 64 * 16;
    char *pool = dmalloc(pool_bytes);
    CUDA_CHECK(cudaMemset(pool, 0x3c, pool_bytes));
    float *p = (float *)pool, *g = p + n, *m = g + n, *v = m + n;
    rt_bf16 *pb = (rt_bf16 *)(v + n);
    double *scr = dmalloc(CUDA_SUMSQ_PARTS * sizeof(double)), *out = dmalloc(sizeof(double));
    TIME_OP("copy (cudaMemcpy D2D, 1 GiB)", 2.0 * n * 4,
            CUDA_CHECK(cudaMemcpyAsync(g, p, (size_t)n * 4, cudaMemcpyDeviceToDevice, 0)));
    TIME_OP("adamw n=2^28 (+bf16 copy)", 30.0 * n,
            cuda_adamw(p, pb, g, 1.0f, m, v, n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.5f, 0));
    CUDA_CHECK(cudaMemset(pool, 0x3c, pool_bytes));
    TIME_OP("sumsq n=2^28", 4.0 * n, cuda_sumsq(out, p, n, scr, 0));
    TIME_OP("to_bf16 n=2^28", 6.0 * n, cuda_to_bf16(pb, p, n, 0));
    TIME_OP("add_bf16 n=2^28", 6.0 * n, cuda_add_bf16(pb, (rt_bf16 *)g, n, 0));
    rt_bf16 *x = (rt_bf16 *)p, *o = (rt_bf16 *)g, *dx = (rt_bf16 *)m, *w = pb;
    float *rstd = v, *dw = v + T, *nscr = v + T + d;
    TIME_OP("rmsnorm fwd T=16384 d=4096", 4.0 * td, cuda_rmsnorm_forward(o, rstd, x, w, T, d, 1e-5f, 0));
    TIME_OP("rmsnorm bwd T=16384 d=4096", 12.0 * td,
            cuda_rmsnorm_backward(dx, dw, o, x, w, rstd, T, d, nscr, 0));
    TIME_OP("swiglu fwd n=16384*14336", 6.0 * nf, cuda_swiglu_forward(o, x, dx, nf, 0));
    TIME_OP("swiglu bwd n=16384*14336", 10.0 * nf,
            cuda_swiglu_backward(o, pb, x, dx, (rt_bf16 *)v, nf, 0));
    int64_t *pos = (int64_t *)v;
    double *inv = (double *)(v + 2 * T);
    {
        int64_t *hp = xmalloc((size_t)T * 8);
        double hi[64];
        for (int t = 0; t < T; t++) hp[t] = 1000000 - t;
        for (int i = 0; i < 64; i++) hi[i] = pow(500000.0, -2.0 * i / 128);
        h2d(pos, hp, (size_t)T * 8);
        h2d(inv, hi, sizeof hi);
        free(hp);
    }
    TIME_OP("rope fwd T=16384 H=32 D=128", 4.0 * T * nh * D,
            cuda_rope_forward(o, pos, inv, 1.0, T, nh, D, 0));
    int32_t *tok = (int32_t *)(v + 4 * T);
    {
        int32_t *ht = xmalloc((size_t)T * 4);
        for (int t = 0; t < T; t++) ht[t] = (int32_t)(rng_u64(9, (uint64_t)t) % 32000);
        h2d(tok, ht, (size_t)T * 4);
        free(ht);
    }
    TIME_OP("embedding fwd T=16384 d=4096 (V=32000)", 4.0 * td,
            cuda_embedding_forward(o, tok, x, T, d, 0));
    TIME_OP("embedding bwd T=16384 d=4096 (atomics)", 10.0 * td,
            cuda_embedding_backward(p + (int64_t)8 * T, o, tok, T, d, 0));
    CUDA_CHECK(cudaFree(pool));
    CUDA_CHECK(cudaFree(scr));
    CUDA_CHECK(cudaFree(out));
}

int main(void) {
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("test_ops on %s (sm_%d%d, %d SMs), %d CPU threads for the reference\n", prop.name,
           prop.major, prop.minor, prop.multiProcessorCount, omp_get_max_threads());
    printf("  %-40s %-8s error = max|gpu-cpu| / max|cpu|\n", "case", "output");
    g_blas = cuda_blas_init(0);

    test_convert(100003, 0);
    test_convert(4099, 1);
    test_add_bf16(1000003, 0);
    test_add_bf16(1001, 1);
    test_sumsq(0, 0);
    test_sumsq(1, 0);
    test_sumsq(1000, 1);
    test_sumsq(50000017, 0);
    test_sumsq(3000001, 1);

    test_matmul(1, 1, 1, 0, 0);
    test_matmul(3, 0, 4, 0, 0); /* empty reduction: out = 0 */
    test_matmul(7, 13, 5, 0, 0);
    test_matmul(37, 129, 65, 1, 0);
    test_matmul(300, 257, 511, 0, 0);
    test_matmul(256, 512, 384, 1, 0);
    test_matmul(4096, 4096, 4096, 0, 1);
    time_matmul("llama8b qkv", 8192, 4096, 6144);
    time_matmul("llama8b up", 8192, 4096, 14336);
    time_matmul("llama8b down", 8192, 14336, 4096);

    test_rmsnorm(1, 8, 0);
    test_rmsnorm(5, 7, 0);
    test_rmsnorm(100, 64, 1);
    test_rmsnorm(333, 4096, 0);
    test_rmsnorm(4097, 1000, 0);
    test_rmsnorm(16384, 4096, 0);

    test_rope(7, 3, 6, 100, ROPE_DEFAULT);
    test_rope(1000, 8, 128, 1000000, ROPE_LLAMA3);
    test_rope(4096, 32, 128, 1048576, ROPE_LLAMA3);
    test_rope(333, 4, 64, 1000000, ROPE_DEFAULT);
    test_rope(1000, 8, 128, 16384, ROPE_YARN);

    test_swiglu(7, 0);
    test_swiglu(1000003, 0);
    test_swiglu(100001, 1);

    test_embedding(1000, 256, 50);
    test_embedding(77, 13, 1000);
    test_embedding(4096, 4096, 8192);

    test_xent(1, 8, 5, 1, 0.0, 1.0f);
    test_xent(300, 256, 1001, 64, 0.1, 1.0f);
    test_xent(1000, 512, 32000, 256, 0.1, -1.0f);
    test_xent(512, 1024, 128256, 200, 0.05, -1.0f);

    test_adamw(1000003, 0, 1);
    test_adamw(100001, 1, 1);
    test_adamw(4097, 0, 0);

    time_memory_ops();
    printf("GEMM speed on %s (bf16 in, fp32 accumulation; median of 20):\n%s", prop.name, g_tflops);
    printf("memory-bound ops on %s (median of 10; bytes = each input read once, each output "
           "written once):\n%s", prop.name, g_bw);
    cuda_blas_free(g_blas);
    return tu_done("test_ops (GPU)");
}
