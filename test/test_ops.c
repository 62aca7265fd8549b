/* test_ops: the CPU backend's operations (src/cpu/cpu_ops.h) against finite differences,
 * naive double-precision references, exact identities (attention split over key blocks,
 * the zigzag composition, block-wise backward), a hand-computed AdamW, and determinism.
 *
 * Finite differences: for an op f, L = sum(f(x) * R) with a fixed random R, summed in
 * double; the analytic dL/dx is compared to (L(x+h) - L(x-h)) / (2h) (the step actually
 * taken in fp32) on every element (small sizes) or a sample. Error = max |analytic - fd|
 * / max |fd| over the checked elements. With h = 1e-2 the truncation error is O(h^2) ~ 1e-4
 * relative and the fp32 rounding of the forward contributes ~ eps32 * sqrt(#outputs) / h
 * ~ 1e-5, so FD_TOL = 1e-2 leaves two orders of margin while a wrong term (a missing
 * factor, a wrong index) gives errors of order 1 (see the negative controls). */
#include "cpu_ops.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_TOL   1e-2 /* finite differences, see above */
#define FD_H     1e-2f
#define EXACT_TOL 1e-5 /* identities and fp32-vs-double references (fp32 eps ~ 6e-8) */

static double g_fd_worst = 0; /* largest FD error seen among the passing checks (reported) */
static double g_ref_worst = 0; /* largest error of the exact/reference checks (reported) */

/* ---------- helpers ---------- */

static void *xalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}
#define FALLOC(n) ((float *)xalloc((size_t)(n) * sizeof(float)))
#define DALLOC(n) ((double *)xalloc((size_t)(n) * sizeof(double)))

static void fill_normal(float *x, int64_t n, uint64_t key, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * (float)rng_normal(key, (uint64_t)i);
}

static float *normal_array(int64_t n, uint64_t key, float scale) {
    float *x = FALLOC(n);
    fill_normal(x, n, key, scale);
    return x;
}

static double dot_d(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void to_float(float *dst, const double *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

/* a -= b (to isolate what an accumulating backward added to a pre-filled buffer) */
static void sub(float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) a[i] -= b[i];
}

/* CHECK_ARRAY that also records the worst error for the summary. */
static void check_ref(const float *a, const float *b, int64_t n, double tol, const char *what) {
    double e = tu_max_rel_err(a, b, n);
    if (e <= tol && e > g_ref_worst) g_ref_worst = e;
    printf("  %-44s err %.2e (tol %.0e)\n", what, e, tol);
    tu_check_array(a, b, n, tol, what, __FILE__, __LINE__);
}

/* ---------- finite-difference harness ---------- */

typedef double (*loss_fn)(void *ctx);

/* Normalized max error of grad (n) against central differences of f w.r.t. param (n), over
 * every element when n <= nsample, else nsample pseudo-random ones. param is restored. */
static double fd_error(loss_fn f, void *ctx, float *param, const float *grad, int64_t n,
                       int nsample, uint64_t key) {
    double maxerr = 0, maxref = 0;
    int64_t m = n <= nsample ? n : nsample;
    for (int64_t s = 0; s < m; s++) {
        int64_t i = n <= nsample ? s : (int64_t)(rng_u64(key, (uint64_t)s) % (uint64_t)n);
        float x0 = param[i], xp = x0 + FD_H, xm = x0 - FD_H;
        param[i] = xp;
        double lp = f(ctx);
        param[i] = xm;
        double lm = f(ctx);
        param[i] = x0;
        double fd = (lp - lm) / ((double)xp - (double)xm);
        double e = fabs(fd - (double)grad[i]);
        if (!(e <= maxerr)) maxerr = e; /* NaN propagates */
        if (fabs(fd) > maxref) maxref = fabs(fd);
    }
    return maxerr / (maxref > 1e-30 ? maxref : 1e-30);
}

static void fd_check(const char *what, loss_fn f, void *ctx, float *param, const float *grad,
                     int64_t n, int nsample) {
    double e = fd_error(f, ctx, param, grad, n, nsample, rng_hash_str(7, what));
    printf("  FD %-41s err %.2e (tol %.0e)\n", what, e, FD_TOL);
    if (e <= FD_TOL && e > g_fd_worst) g_fd_worst = e;
    if (!CHECK(e <= FD_TOL)) fprintf(stderr, "  ^ FD check %s: %.3g\n", what, e);
}

/* ---------- matmul ---------- */

typedef struct { const float *x, *w, *R; float *out; int T, n_in, n_out; } mm_ctx;
static double mm_loss(void *p) {
    mm_ctx *c = p;
    cpu_matmul_forward(c->out, c->x, c->w, c->T, c->n_in, c->n_out);
    return dot_d(c->out, c->R, (int64_t)c->T * c->n_out);
}

static void test_matmul(void) {
    printf("matmul\n");
    int T = 5, n_in = 7, n_out = 4;
    float *x = normal_array(T * n_in, 11, 1), *w = normal_array(n_out * n_in, 12, 1);
    float *R = normal_array(T * n_out, 13, 1), *out = FALLOC(T * n_out);
    /* forward vs double reference */
    double *ref = DALLOC(T * n_out);
    for (int t = 0; t < T; t++)
        for (int o = 0; o < n_out; o++)
            for (int i = 0; i < n_in; i++) ref[t * n_out + o] += (double)x[t * n_in + i] * w[o * n_in + i];
    float *reff = FALLOC(T * n_out);
    to_float(reff, ref, T * n_out);
    cpu_matmul_forward(out, x, w, T, n_in, n_out);
    check_ref(out, reff, T * n_out, EXACT_TOL, "matmul forward vs double");
    /* backward accumulates: pre-fill, then subtract the pre-fill */
    float *A = normal_array(T * n_in, 14, 1), *B = normal_array(n_out * n_in, 15, 1);
    float *dx = FALLOC(T * n_in), *dw = FALLOC(n_out * n_in), *dw2 = FALLOC(n_out * n_in);
    memcpy(dx, A, sizeof(float) * T * n_in);
    memcpy(dw, B, sizeof(float) * n_out * n_in);
    cpu_matmul_backward(dx, dw, R, x, w, T, n_in, n_out);
    sub(dx, A, T * n_in);
    sub(dw, B, n_out * n_in);
    mm_ctx c = {x, w, R, out, T, n_in, n_out};
    fd_check("matmul dx", mm_loss, &c, x, dx, T * n_in, 1000);
    fd_check("matmul dw", mm_loss, &c, w, dw, n_out * n_in, 1000);
    /* dx == NULL: dw alone, same values */
    cpu_matmul_backward(NULL, dw2, R, x, w, T, n_in, n_out);
    check_ref(dw2, dw, n_out * n_in, EXACT_TOL, "matmul dw with dx NULL");
    free(x); free(w); free(R); free(out); free(ref); free(reff); free(A); free(B);
    free(dx); free(dw); free(dw2);
}

/* ---------- rmsnorm ---------- */

typedef struct { const float *x, *w, *R; float *out, *rstd; int T, d; float eps; } rn_ctx;
static double rn_loss(void *p) {
    rn_ctx *c = p;
    cpu_rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->T, c->d, c->eps);
    return dot_d(c->out, c->R, (int64_t)c->T * c->d);
}

static void test_rmsnorm(void) {
    printf("rmsnorm\n");
    int T = 4, d = 10;
    float eps = 1e-5f;
    float *x = normal_array(T * d, 21, 1), *w = normal_array(d, 22, 0.3f);
    for (int i = 0; i < d; i++) w[i] += 1.0f;
    float *R = normal_array(T * d, 23, 1), *out = FALLOC(T * d), *rstd = FALLOC(T);
    float *reff = FALLOC(T * d);
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)x[t * d + i] * x[t * d + i];
        double r = 1.0 / sqrt(ss / d + eps);
        for (int i = 0; i < d; i++) reff[t * d + i] = (float)(w[i] * x[t * d + i] * r);
    }
    cpu_rmsnorm_forward(out, rstd, x, w, T, d, eps);
    check_ref(out, reff, T * d, EXACT_TOL, "rmsnorm forward vs double");
    float *A = normal_array(T * d, 24, 1), *B = normal_array(d, 25, 1);
    float *dx = FALLOC(T * d), *dw = FALLOC(d);
    memcpy(dx, A, sizeof(float) * T * d);
    memcpy(dw, B, sizeof(float) * d);
    cpu_rmsnorm_backward(dx, dw, R, x, w, rstd, T, d);
    sub(dx, A, T * d);
    sub(dw, B, d);
    rn_ctx c = {x, w, R, out, rstd, T, d, eps};
    fd_check("rmsnorm dx", rn_loss, &c, x, dx, T * d, 1000);
    fd_check("rmsnorm dw", rn_loss, &c, w, dw, d, 1000);

    /* Negative control 1: one wrong element of a correct gradient must be flagged. The
     * element is off by 5% of the largest gradient, i.e. 5x the tolerance. */
    float gmax = 0;
    for (int i = 0; i < T * d; i++) gmax = fmaxf(gmax, fabsf(dx[i]));
    float *bad = FALLOC(T * d);
    memcpy(bad, dx, sizeof(float) * T * d);
    bad[17] += 0.05f * gmax;
    double e = fd_error(rn_loss, &c, x, bad, T * d, 1000, 1);
    printf("  negative control (one element +5%% of max): err %.2e, must exceed %.0e\n", e, FD_TOL);
    CHECK(e > FD_TOL);
    /* Negative control 2: dx without the term through rstd (dx = r w g) must be flagged. */
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++) bad[t * d + i] = rstd[t] * w[i] * R[t * d + i];
    e = fd_error(rn_loss, &c, x, bad, T * d, 1000, 1);
    printf("  negative control (rstd term dropped):     err %.2e, must exceed %.0e\n", e, FD_TOL);
    CHECK(e > FD_TOL);
    free(x); free(w); free(R); free(out); free(rstd); free(reff); free(A); free(B);
    free(dx); free(dw); free(bad);
}

/* ---------- rope ---------- */

typedef struct {
    const float *x, *R; float *tmp; const int64_t *pos; const double *inv_freq; double scale; int T, nh, D;
} rp_ctx;
static double rp_loss(void *p) {
    rp_ctx *c = p;
    int64_t n = (int64_t)c->T * c->nh * c->D;
    memcpy(c->tmp, c->x, sizeof(float) * n);
    cpu_rope_forward(c->tmp, c->pos, c->inv_freq, c->scale, c->T, c->nh, c->D);
    return dot_d(c->tmp, c->R, n);
}

/* scale: the attention factor (yarn's), multiplying cos and sin. */
static void test_rope_one(int D, double scale) {
    int T = 6, nh = 3, n = T * nh * D;
    int64_t pos[6] = {0, 1, 7, 100, 12345, 1000003};
    double inv_freq[16];
    for (int i = 0; i < D / 2; i++) inv_freq[i] = pow(10000.0, -2.0 * i / D);
    float *x = normal_array(n, 31 + D, 1), *R = normal_array(n, 32 + D, 1), *tmp = FALLOC(n);
    /* forward vs a double reference of the header's formula */
    float *ref = FALLOC(n);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < D / 2; i++) {
                double a = (double)pos[t] * inv_freq[i];
                const float *xh = x + (t * nh + h) * D;
                ref[(t * nh + h) * D + i] = (float)(scale * (xh[i] * cos(a) - xh[i + D / 2] * sin(a)));
                ref[(t * nh + h) * D + i + D / 2] = (float)(scale * (xh[i + D / 2] * cos(a) + xh[i] * sin(a)));
            }
    memcpy(tmp, x, sizeof(float) * n);
    cpu_rope_forward(tmp, pos, inv_freq, scale, T, nh, D);
    char what[64];
    snprintf(what, sizeof what, "rope D=%d scale %g forward vs double", D, scale);
    check_ref(tmp, ref, n, EXACT_TOL, what);
    /* position 0 is the scaling alone, exactly (the identity at scale 1) */
    for (int i = 0; i < nh * D; i++) CHECK(tmp[i] == (float)(scale * x[i]));
    /* backward of forward is scale^2 times the identity (rotation by -a after +a) */
    cpu_rope_backward(tmp, pos, inv_freq, scale, T, nh, D);
    for (int i = 0; i < n; i++) ref[i] = (float)(scale * scale * x[i]);
    snprintf(what, sizeof what, "rope D=%d scale %g backward(forward(x)) == scale^2 x", D, scale);
    check_ref(tmp, ref, n, EXACT_TOL, what);
    /* FD: backward overwrites the gradient in place */
    float *dx = FALLOC(n);
    memcpy(dx, R, sizeof(float) * n);
    cpu_rope_backward(dx, pos, inv_freq, scale, T, nh, D);
    rp_ctx c = {x, R, tmp, pos, inv_freq, scale, T, nh, D};
    snprintf(what, sizeof what, "rope D=%d scale %g dx", D, scale);
    fd_check(what, rp_loss, &c, x, dx, n, 1000);
    free(x); free(R); free(tmp); free(ref); free(dx);
}

static void test_rope(void) {
    printf("rope\n");
    test_rope_one(8, 1.0);
    test_rope_one(6, 1.0);
    test_rope_one(8, 1.1386294361119891); /* yarn's attention factor at factor 4: 0.1 ln 4 + 1 */
    /* a hand value: D = 2, inv_freq 1, position 1: (1, 0) -> (cos 1, sin 1) */
    float x[2] = {1, 0};
    int64_t pos = 1;
    double f = 1.0;
    cpu_rope_forward(x, &pos, &f, 1.0, 1, 1, 2);
    CHECK_REL(x[0], cos(1.0), 1e-7);
    CHECK_REL(x[1], sin(1.0), 1e-7);
}

/* ---------- swiglu ---------- */

typedef struct { const float *gate, *up, *R; float *out; int n; } sw_ctx;
static double sw_loss(void *p) {
    sw_ctx *c = p;
    cpu_swiglu_forward(c->out, c->gate, c->up, c->n);
    return dot_d(c->out, c->R, c->n);
}

static void test_swiglu(void) {
    printf("swiglu\n");
    int n = 64;
    float *gate = normal_array(n, 41, 3), *up = normal_array(n, 42, 1);
    gate[0] = -120.0f; /* exp overflow territory for a naive sigmoid */
    gate[1] = 120.0f;
    float *R = normal_array(n, 43, 1), *out = FALLOC(n), *ref = FALLOC(n);
    for (int i = 0; i < n; i++) ref[i] = (float)(gate[i] / (1.0 + exp(-(double)gate[i])) * up[i]);
    cpu_swiglu_forward(out, gate, up, n);
    check_ref(out, ref, n, EXACT_TOL, "swiglu forward vs double");
    float *dg = FALLOC(n), *du = FALLOC(n);
    cpu_swiglu_backward(dg, du, R, gate, up, n);
    CHECK(isfinite(dg[0]) && isfinite(dg[1]));
    sw_ctx c = {gate, up, R, out, n};
    fd_check("swiglu dgate", sw_loss, &c, gate, dg, n, 1000);
    fd_check("swiglu dup", sw_loss, &c, up, du, n, 1000);
    free(gate); free(up); free(R); free(out); free(ref); free(dg); free(du);
}

/* ---------- embedding ---------- */

typedef struct { const float *wte, *R; float *out; const int32_t *tok; int T, d; } em_ctx;
static double em_loss(void *p) {
    em_ctx *c = p;
    cpu_embedding_forward(c->out, c->tok, c->wte, c->T, c->d);
    return dot_d(c->out, c->R, (int64_t)c->T * c->d);
}

static void test_embedding(void) {
    printf("embedding\n");
    int V = 7, d = 5, T = 9;
    int32_t tok[9] = {3, 0, 6, 3, 3, 1, 6, 5, 0}; /* repeats; token 2 and 4 unused */
    float *wte = normal_array(V * d, 51, 1), *R = normal_array(T * d, 52, 1), *out = FALLOC(T * d);
    cpu_embedding_forward(out, tok, wte, T, d);
    int ok = 1;
    for (int t = 0; t < T; t++) ok &= memcmp(out + t * d, wte + tok[t] * d, sizeof(float) * d) == 0;
    CHECK(ok);
    float *A = normal_array(V * d, 53, 1), *dw = FALLOC(V * d);
    memcpy(dw, A, sizeof(float) * V * d);
    cpu_embedding_backward(dw, R, tok, T, d);
    sub(dw, A, V * d);
    em_ctx c = {wte, R, out, tok, T, d};
    fd_check("embedding dwte", em_loss, &c, wte, dw, V * d, 1000);
    free(wte); free(R); free(out); free(A); free(dw);
}

/* ---------- attention ---------- */

typedef struct {
    const float *q, *k, *v, *R;
    float *out, *lse;
    int ld, Tq, Tk, H, Hkv, D, causal;
} at_ctx;
static double at_loss(void *p) {
    at_ctx *c = p;
    cpu_attn_forward(c->out, c->lse, c->ld, c->q, c->k, c->v, c->Tq, c->Tk, c->H, c->Hkv, c->D,
                     c->causal);
    return dot_d(c->out, c->R, (int64_t)c->Tq * c->H * c->D);
}

typedef struct { int Tq, Tk, H, Hkv, D, causal; } at_shape;

static void test_attn_fd_one(at_shape s, int zero_delta_control) {
    int nq = s.Tq * s.H * s.D, nk = s.Tk * s.Hkv * s.D, ld = s.Tq + 3;
    uint64_t key = 1000 + 97 * s.Tq + 13 * s.Tk + 7 * s.H + 3 * s.Hkv + s.D + 500 * s.causal;
    float *q = normal_array(nq, key, 1), *k = normal_array(nk, key + 1, 1);
    float *v = normal_array(nk, key + 2, 1), *R = normal_array(nq, key + 3, 1);
    float *out = FALLOC(nq), *lse = FALLOC(s.H * ld), *delta = FALLOC(s.H * ld);
    float *A = normal_array(nq, key + 4, 1), *B = normal_array(nk, key + 5, 1), *C = normal_array(nk, key + 6, 1);
    float *dq = FALLOC(nq), *dk = FALLOC(nk), *dv = FALLOC(nk);
    memcpy(dq, A, sizeof(float) * nq);
    memcpy(dk, B, sizeof(float) * nk);
    memcpy(dv, C, sizeof(float) * nk);
    cpu_attn_forward(out, lse, ld, q, k, v, s.Tq, s.Tk, s.H, s.Hkv, s.D, s.causal);
    cpu_attn_delta(delta, ld, R, out, s.Tq, s.H, s.D);
    if (zero_delta_control) memset(delta, 0, sizeof(float) * s.H * ld);
    cpu_attn_backward(dq, dk, dv, R, q, k, v, lse, delta, ld, s.Tq, s.Tk, s.H, s.Hkv, s.D, s.causal);
    sub(dq, A, nq);
    sub(dk, B, nk);
    sub(dv, C, nk);
    at_ctx c = {q, k, v, R, out, lse, ld, s.Tq, s.Tk, s.H, s.Hkv, s.D, s.causal};
    char what[96];
    if (zero_delta_control) {
        /* Negative control 3: the backward without the delta term must be flagged on dq. */
        double e = fd_error(at_loss, &c, q, dq, nq, 1000, 2);
        printf("  negative control (attention delta = 0):  err %.2e, must exceed %.0e\n", e, FD_TOL);
        CHECK(e > FD_TOL);
    } else {
        const char *nm[3] = {"dq", "dk", "dv"};
        float *par[3] = {q, k, v}, *gr[3] = {dq, dk, dv};
        int64_t n[3] = {nq, nk, nk};
        for (int i = 0; i < 3; i++) {
            snprintf(what, sizeof what, "attn %s Tq%d Tk%d H%d Hkv%d D%d %s", nm[i], s.Tq, s.Tk,
                     s.H, s.Hkv, s.D, s.causal ? "causal" : "full");
            fd_check(what, at_loss, &c, par[i], gr[i], n[i], 1000);
        }
    }
    free(q); free(k); free(v); free(R); free(out); free(lse); free(delta);
    free(A); free(B); free(C); free(dq); free(dk); free(dv);
}

static void test_attn_fd(void) {
    printf("attention finite differences\n");
    at_shape shapes[] = {
        {6, 6, 4, 2, 8, 1},  /* GQA causal D=8 */
        {5, 7, 4, 2, 8, 0},  /* GQA full Tq < Tk */
        {9, 4, 4, 2, 6, 0},  /* GQA full Tq > Tk D=6 */
        {7, 7, 2, 2, 6, 1},  /* MHA causal D=6 */
        {4, 6, 3, 3, 8, 0},  /* MHA full */
        {5, 5, 4, 1, 6, 1},  /* MQA causal */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_attn_fd_one(shapes[i], 0);
    test_attn_fd_one(shapes[0], 1);
}

/* Naive dense reference in double: out (Tq,H,D), lse (H,Tq), and the backward given dout. */
static void ref_attn(double *out, double *lse, double *dq, double *dk, double *dv,
                     const float *dout, const float *q, const float *k, const float *v, int Tq,
                     int Tk, int H, int Hkv, int D, int causal) {
    double scale = 1.0 / sqrt((double)D);
    double *p = DALLOC(Tk), *dp = DALLOC(Tk);
    int grp = H / Hkv;
    memset(dq, 0, sizeof(double) * Tq * H * D);
    memset(dk, 0, sizeof(double) * Tk * Hkv * D);
    memset(dv, 0, sizeof(double) * Tk * Hkv * D);
    for (int h = 0; h < H; h++) {
        int g = h / grp;
        for (int i = 0; i < Tq; i++) {
            int n = causal ? i + 1 : Tk;
            const float *qi = q + (i * H + h) * D, *doi = dout + (i * H + h) * D;
            double m = -INFINITY, l = 0;
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int d = 0; d < D; d++) s += (double)qi[d] * k[(j * Hkv + g) * D + d];
                p[j] = s * scale;
                if (p[j] > m) m = p[j];
            }
            for (int j = 0; j < n; j++) l += (p[j] = exp(p[j] - m));
            double *oi = out + (i * H + h) * D;
            for (int d = 0; d < D; d++) oi[d] = 0;
            for (int j = 0; j < n; j++) {
                p[j] /= l;
                for (int d = 0; d < D; d++) oi[d] += p[j] * v[(j * Hkv + g) * D + d];
            }
            lse[h * Tq + i] = m + log(l);
            double delta = 0;
            for (int d = 0; d < D; d++) delta += doi[d] * oi[d];
            for (int j = 0; j < n; j++) {
                dp[j] = 0;
                for (int d = 0; d < D; d++) dp[j] += (double)doi[d] * v[(j * Hkv + g) * D + d];
                double ds = p[j] * (dp[j] - delta);
                for (int d = 0; d < D; d++) {
                    dq[(i * H + h) * D + d] += scale * ds * k[(j * Hkv + g) * D + d];
                    dk[(j * Hkv + g) * D + d] += scale * ds * qi[d];
                    dv[(j * Hkv + g) * D + d] += p[j] * doi[d];
                }
            }
        }
    }
    free(p);
    free(dp);
}

static void test_attn_reference_one(at_shape s, float qscale, double tol) {
    int nq = s.Tq * s.H * s.D, nk = s.Tk * s.Hkv * s.D;
    uint64_t key = 3000 + 97 * s.Tq + 13 * s.Tk + s.D + 500 * s.causal;
    float *q = normal_array(nq, key, qscale), *k = normal_array(nk, key + 1, 1);
    float *v = normal_array(nk, key + 2, 1), *dout = normal_array(nq, key + 3, 1);
    double *ro = DALLOC(nq), *rl = DALLOC(s.H * s.Tq), *rdq = DALLOC(nq), *rdk = DALLOC(nk), *rdv = DALLOC(nk);
    ref_attn(ro, rl, rdq, rdk, rdv, dout, q, k, v, s.Tq, s.Tk, s.H, s.Hkv, s.D, s.causal);
    float *out = FALLOC(nq), *lse = FALLOC(s.H * s.Tq), *delta = FALLOC(s.H * s.Tq);
    float *dq = FALLOC(nq), *dk = FALLOC(nk), *dv = FALLOC(nk), *ref = FALLOC(nq > nk ? nq : nk);
    cpu_attn_forward(out, lse, s.Tq, q, k, v, s.Tq, s.Tk, s.H, s.Hkv, s.D, s.causal);
    cpu_attn_delta(delta, s.Tq, dout, out, s.Tq, s.H, s.D);
    cpu_attn_backward(dq, dk, dv, dout, q, k, v, lse, delta, s.Tq, s.Tq, s.Tk, s.H, s.Hkv, s.D, s.causal);
    char what[96];
    const char *tag = s.causal ? "causal" : "full";
#define REF(arr, r, n, name)                                                                      \
    do {                                                                                          \
        to_float(ref, r, n);                                                                      \
        snprintf(what, sizeof what, "attn %s %s Tq%d Tk%d H%d/%d D%d q*%g", name, tag, s.Tq, s.Tk, \
                 s.H, s.Hkv, s.D, qscale);                                                        \
        check_ref(arr, ref, n, tol, what);                                                        \
    } while (0)
    REF(out, ro, nq, "out");
    REF(lse, rl, s.H * s.Tq, "lse");
    REF(dq, rdq, nq, "dq");
    REF(dk, rdk, nk, "dk");
    REF(dv, rdv, nk, "dv");
#undef REF
    free(q); free(k); free(v); free(dout); free(ro); free(rl); free(rdq); free(rdk); free(rdv);
    free(out); free(lse); free(delta); free(dq); free(dk); free(dv); free(ref);
}

static void test_attn_reference(void) {
    printf("attention vs dense double reference\n");
    at_shape a = {37, 37, 4, 2, 16, 1}, b = {19, 45, 3, 1, 8, 0}, c = {23, 23, 2, 2, 6, 1};
    test_attn_reference_one(a, 1, EXACT_TOL);
    test_attn_reference_one(b, 1, EXACT_TOL);
    test_attn_reference_one(c, 1, EXACT_TOL);
    /* Sharp softmax: scores of magnitude ~100 (exp would overflow without the max shift).
     * fp32 scores then carry an absolute error ~1e-5 (eps32 * 100) which exp turns into a
     * relative error of p of the same size, so the bound is 1e-4 here. */
    test_attn_reference_one(a, 30, 1e-4);
    test_attn_reference_one(b, 30, 1e-4);
}

/* attn(q, k[0:Tk]) == merge(attn(q, k[0:a]), attn(q, k[a:Tk])), and the same for the
 * backward: the sum over the two key blocks with the merged lse/delta equals the whole. */
static void test_attn_key_split(void) {
    printf("attention split over key blocks\n");
    int Tq = 12, Tk = 20, a = 7, H = 4, Hkv = 2, D = 8;
    int nq = Tq * H * D, nk = Tk * Hkv * D, kvrow = Hkv * D;
    float *q = normal_array(nq, 401, 1), *k = normal_array(nk, 402, 1), *v = normal_array(nk, 403, 1);
    float *dout = normal_array(nq, 404, 1);
    float *o_full = FALLOC(nq), *l_full = FALLOC(H * Tq);
    cpu_attn_forward(o_full, l_full, Tq, q, k, v, Tq, Tk, H, Hkv, D, 0);
    int ldb = Tq + 2;
    float *o = FALLOC(nq), *l = FALLOC(H * Tq), *ob = FALLOC(nq), *lb = FALLOC(H * ldb);
    cpu_attn_forward(o, l, Tq, q, k, v, Tq, a, H, Hkv, D, 0);
    cpu_attn_forward(ob, lb, ldb, q, k + a * kvrow, v + a * kvrow, Tq, Tk - a, H, Hkv, D, 0);
    cpu_attn_merge(o, l, Tq, ob, lb, ldb, Tq, H, D);
    check_ref(o, o_full, nq, EXACT_TOL, "merge of 2 key blocks: out");
    check_ref(l, l_full, H * Tq, EXACT_TOL, "merge of 2 key blocks: lse");
    /* merge in the other order (block first) gives the same */
    float *o2 = FALLOC(nq), *l2 = FALLOC(H * Tq);
    cpu_attn_forward(o2, l2, Tq, q, k + a * kvrow, v + a * kvrow, Tq, Tk - a, H, Hkv, D, 0);
    cpu_attn_forward(ob, lb, ldb, q, k, v, Tq, a, H, Hkv, D, 0);
    cpu_attn_merge(o2, l2, Tq, ob, lb, ldb, Tq, H, D);
    check_ref(o2, o_full, nq, EXACT_TOL, "merge, other order: out");
    check_ref(l2, l_full, H * Tq, EXACT_TOL, "merge, other order: lse");

    float *delta = FALLOC(H * Tq);
    cpu_attn_delta(delta, Tq, dout, o_full, Tq, H, D);
    float *dq = FALLOC(nq), *dk = FALLOC(nk), *dv = FALLOC(nk);
    float *dq2 = FALLOC(nq), *dk2 = FALLOC(nk), *dv2 = FALLOC(nk);
    cpu_attn_backward(dq, dk, dv, dout, q, k, v, l_full, delta, Tq, Tq, Tk, H, Hkv, D, 0);
    cpu_attn_backward(dq2, dk2, dv2, dout, q, k, v, l_full, delta, Tq, Tq, a, H, Hkv, D, 0);
    cpu_attn_backward(dq2, dk2 + a * kvrow, dv2 + a * kvrow, dout, q, k + a * kvrow, v + a * kvrow,
                      l_full, delta, Tq, Tq, Tk - a, H, Hkv, D, 0);
    check_ref(dq2, dq, nq, EXACT_TOL, "backward over 2 key blocks: dq");
    check_ref(dk2, dk, nk, EXACT_TOL, "backward over 2 key blocks: dk");
    check_ref(dv2, dv, nk, EXACT_TOL, "backward over 2 key blocks: dv");
    free(q); free(k); free(v); free(dout); free(o_full); free(l_full); free(o); free(l);
    free(ob); free(lb); free(o2); free(l2); free(delta); free(dq); free(dk); free(dv);
    free(dq2); free(dk2); free(dv2);
}

/* Causal attention over 2C tokens == causal on each half, plus (second-half q) x (first-half
 * k, v) unmasked merged into the second half's rows; lse as (H, 2C) views with ld = 2C.
 * Same for the backward: the three blocks with the global lse/delta sum to the whole. */
static void test_attn_zigzag(void) {
    printf("attention zigzag composition\n");
    int C = 9, T = 2 * C, H = 4, Hkv = 2, D = 8, qrow = H * D, kvrow = Hkv * D;
    int nq = T * qrow, nk = T * kvrow;
    float *q = normal_array(nq, 501, 1), *k = normal_array(nk, 502, 1), *v = normal_array(nk, 503, 1);
    float *dout = normal_array(nq, 504, 1);
    float *o_full = FALLOC(nq), *l_full = FALLOC(H * T);
    cpu_attn_forward(o_full, l_full, T, q, k, v, T, T, H, Hkv, D, 1);
    float *o = FALLOC(nq), *l = FALLOC(H * T), *ob = FALLOC(C * qrow), *lb = FALLOC(H * C);
    cpu_attn_forward(o, l, T, q, k, v, C, C, H, Hkv, D, 1);
    cpu_attn_forward(o + C * qrow, l + C, T, q + C * qrow, k + C * kvrow, v + C * kvrow, C, C, H,
                     Hkv, D, 1);
    cpu_attn_forward(ob, lb, C, q + C * qrow, k, v, C, C, H, Hkv, D, 0);
    cpu_attn_merge(o + C * qrow, l + C, T, ob, lb, C, C, H, D);
    check_ref(o, o_full, nq, EXACT_TOL, "zigzag composition: out");
    check_ref(l, l_full, H * T, EXACT_TOL, "zigzag composition: lse");

    float *delta = FALLOC(H * T);
    cpu_attn_delta(delta, T, dout, o_full, T, H, D);
    float *dq = FALLOC(nq), *dk = FALLOC(nk), *dv = FALLOC(nk);
    float *dq2 = FALLOC(nq), *dk2 = FALLOC(nk), *dv2 = FALLOC(nk);
    cpu_attn_backward(dq, dk, dv, dout, q, k, v, l_full, delta, T, T, T, H, Hkv, D, 1);
    /* first-half diagonal */
    cpu_attn_backward(dq2, dk2, dv2, dout, q, k, v, l_full, delta, T, C, C, H, Hkv, D, 1);
    /* second-half diagonal */
    cpu_attn_backward(dq2 + C * qrow, dk2 + C * kvrow, dv2 + C * kvrow, dout + C * qrow,
                      q + C * qrow, k + C * kvrow, v + C * kvrow, l_full + C, delta + C, T, C, C,
                      H, Hkv, D, 1);
    /* second-half q vs first-half k, v */
    cpu_attn_backward(dq2 + C * qrow, dk2, dv2, dout + C * qrow, q + C * qrow, k, v, l_full + C,
                      delta + C, T, C, C, H, Hkv, D, 0);
    check_ref(dq2, dq, nq, EXACT_TOL, "zigzag block-wise backward: dq");
    check_ref(dk2, dk, nk, EXACT_TOL, "zigzag block-wise backward: dk");
    check_ref(dv2, dv, nk, EXACT_TOL, "zigzag block-wise backward: dv");
    free(q); free(k); free(v); free(dout); free(o_full); free(l_full); free(o); free(l);
    free(ob); free(lb); free(delta); free(dq); free(dk); free(dv); free(dq2); free(dk2); free(dv2);
}

/* lse / delta with a row stride ld > T and a pointer offset: values equal those with ld = T,
 * and every entry outside rows [0, Tq) of the view keeps its sentinel. */
static void test_attn_strides(void) {
    printf("attention lse/delta strides\n");
    int Tq = 5, Tk = 8, H = 3, Hkv = 1, D = 6, ld = Tq + 6, off = 2;
    int nq = Tq * H * D, nk = Tk * Hkv * D;
    const float sentinel = 777.0f;
    float *q = normal_array(nq, 601, 1), *k = normal_array(nk, 602, 1), *v = normal_array(nk, 603, 1);
    float *dout = normal_array(nq, 604, 1);
    float *o1 = FALLOC(nq), *l1 = FALLOC(H * Tq), *d1 = FALLOC(H * Tq);
    cpu_attn_forward(o1, l1, Tq, q, k, v, Tq, Tk, H, Hkv, D, 0);
    cpu_attn_delta(d1, Tq, dout, o1, Tq, H, D);
    float *o2 = FALLOC(nq), *lbuf = FALLOC(H * ld), *dbuf = FALLOC(H * ld);
    for (int i = 0; i < H * ld; i++) lbuf[i] = dbuf[i] = sentinel;
    cpu_attn_forward(o2, lbuf + off, ld, q, k, v, Tq, Tk, H, Hkv, D, 0);
    cpu_attn_delta(dbuf + off, ld, dout, o2, Tq, H, D);
    int same = memcmp(o1, o2, sizeof(float) * nq) == 0, untouched = 1;
    for (int h = 0; h < H; h++)
        for (int t = 0; t < ld; t++) {
            int inside = t >= off && t < off + Tq;
            if (inside) {
                same &= lbuf[h * ld + t] == l1[h * Tq + t - off];
                same &= dbuf[h * ld + t] == d1[h * Tq + t - off];
            } else {
                untouched &= lbuf[h * ld + t] == sentinel && dbuf[h * ld + t] == sentinel;
            }
        }
    CHECK(same);
    CHECK(untouched);
    /* merge with two different strides touches only its rows */
    int ldb = Tq + 1;
    float *lb = FALLOC(H * ldb), *ob = FALLOC(nq), *o3 = FALLOC(nq), *l3 = FALLOC(H * Tq);
    cpu_attn_forward(ob, lb, ldb, q, k, v, Tq, 3, H, Hkv, D, 0);
    memcpy(o3, o1, sizeof(float) * nq);
    memcpy(l3, l1, sizeof(float) * H * Tq);
    cpu_attn_merge(o3, l3, Tq, ob, lb, ldb, Tq, H, D);
    cpu_attn_merge(o2, lbuf + off, ld, ob, lb, ldb, Tq, H, D);
    same = memcmp(o3, o2, sizeof(float) * nq) == 0;
    untouched = 1;
    for (int h = 0; h < H; h++)
        for (int t = 0; t < ld; t++) {
            if (t >= off && t < off + Tq) same &= lbuf[h * ld + t] == l3[h * Tq + t - off];
            else untouched &= lbuf[h * ld + t] == sentinel;
        }
    CHECK(same);
    CHECK(untouched);
    /* backward reads the strided lse/delta: same dq as with ld = Tq */
    float *dqa = FALLOC(nq), *dka = FALLOC(nk), *dva = FALLOC(nk);
    float *dqb = FALLOC(nq), *dkb = FALLOC(nk), *dvb = FALLOC(nk);
    cpu_attn_forward(o2, lbuf + off, ld, q, k, v, Tq, Tk, H, Hkv, D, 0);
    cpu_attn_backward(dqa, dka, dva, dout, q, k, v, l1, d1, Tq, Tq, Tk, H, Hkv, D, 0);
    cpu_attn_backward(dqb, dkb, dvb, dout, q, k, v, lbuf + off, dbuf + off, ld, Tq, Tk, H, Hkv, D, 0);
    CHECK(memcmp(dqa, dqb, sizeof(float) * nq) == 0 && memcmp(dka, dkb, sizeof(float) * nk) == 0 &&
          memcmp(dva, dvb, sizeof(float) * nk) == 0);
    free(q); free(k); free(v); free(dout); free(o1); free(l1); free(d1); free(o2); free(lbuf);
    free(dbuf); free(lb); free(ob); free(o3); free(l3); free(dqa); free(dka); free(dva);
    free(dqb); free(dkb); free(dvb);
}

/* Merge edge: blocks with very different lse (weights ~e^-80) stay finite and pick the
 * dominant block. */
static void test_attn_merge_extreme(void) {
    printf("attention merge, extreme lse\n");
    int H = 1, D = 2, T = 2;
    float out[4] = {1, 2, 3, 4}, lse[2] = {100.0f, -10.0f};
    float ob[4] = {5, 6, 7, 8}, lb[2] = {20.0f, 70.0f};
    cpu_attn_merge(out, lse, T, ob, lb, T, T, H, D);
    /* row 0: block weight e^-80, row 1: running weight e^-80 */
    CHECK(out[0] == 1.0f && out[1] == 2.0f && out[2] == 7.0f && out[3] == 8.0f);
    CHECK_REL(lse[0], 100.0, 1e-7);
    CHECK_REL(lse[1], 70.0, 1e-7);
    float o2[2] = {1, 3}, l2[1] = {0.0f}, ob2[2] = {3, 5}, lb2[1] = {0.0f};
    cpu_attn_merge(o2, l2, 1, ob2, lb2, 1, 1, 1, 2); /* equal weights: mean, lse + log 2 */
    CHECK_REL(o2[0], 2.0, 1e-7);
    CHECK_REL(o2[1], 4.0, 1e-7);
    CHECK_REL(l2[0], log(2.0), 1e-6);
}

/* Bitwise determinism: forward and backward twice, and with one thread vs the default. */
static void test_attn_determinism(void) {
    printf("attention determinism\n");
    for (int causal = 0; causal <= 1; causal++) {
        int T = 160, H = 4, Hkv = 2, D = 32, nq = T * H * D, nk = T * Hkv * D;
        float *q = normal_array(nq, 701, 1), *k = normal_array(nk, 702, 1), *v = normal_array(nk, 703, 1);
        float *dout = normal_array(nq, 704, 1);
        float *res[3][6];
        int nthreads = omp_get_max_threads();
        for (int run = 0; run < 3; run++) {
            omp_set_num_threads(run == 2 ? 1 : nthreads);
            float *o = FALLOC(nq), *l = FALLOC(H * T), *dl = FALLOC(H * T);
            float *dq = FALLOC(nq), *dk = FALLOC(nk), *dv = FALLOC(nk);
            cpu_attn_forward(o, l, T, q, k, v, T, T, H, Hkv, D, causal);
            cpu_attn_delta(dl, T, dout, o, T, H, D);
            cpu_attn_backward(dq, dk, dv, dout, q, k, v, l, dl, T, T, T, H, Hkv, D, causal);
            res[run][0] = o; res[run][1] = l; res[run][2] = dl;
            res[run][3] = dq; res[run][4] = dk; res[run][5] = dv;
        }
        omp_set_num_threads(nthreads);
        int64_t n[6] = {nq, H * T, H * T, nq, nk, nk};
        int same_twice = 1, same_1thread = 1;
        for (int a = 0; a < 6; a++) {
            same_twice &= memcmp(res[0][a], res[1][a], sizeof(float) * n[a]) == 0;
            same_1thread &= memcmp(res[0][a], res[2][a], sizeof(float) * n[a]) == 0;
        }
        printf("  %s: twice %s, 1 vs %d threads %s\n", causal ? "causal" : "full",
               same_twice ? "bitwise equal" : "DIFFER", nthreads, same_1thread ? "bitwise equal" : "DIFFER");
        CHECK(same_twice);
        CHECK(same_1thread);
        for (int r = 0; r < 3; r++)
            for (int a = 0; a < 6; a++) free(res[r][a]);
        free(q); free(k); free(v); free(dout);
    }
}

/* ---------- cross-entropy ---------- */

typedef struct { const float *x, *w; const int32_t *y; float *scratch; int T, d, V, chunk; float gs; } xe_ctx;
static double xe_loss(void *p) {
    xe_ctx *c = p;
    return c->gs * cpu_xent_forward_backward(NULL, NULL, NULL, NULL, c->x, c->w, c->y, c->T, c->d, c->V, c->gs,
                                             c->chunk, c->scratch);
}

static void test_xent_fd(void) {
    printf("cross-entropy finite differences\n");
    int T = 7, d = 6, V = 11, chunk = 3;
    float gs = 0.7f;
    float *x = normal_array(T * d, 801, 1), *w = normal_array(V * d, 802, 1);
    int32_t y[7];
    for (int t = 0; t < T; t++) y[t] = (int32_t)(rng_u64(803, t) % V);
    y[5] = -1; /* an ignored token */
    float *scratch = FALLOC(chunk * V), *A = normal_array(T * d, 804, 1), *B = normal_array(V * d, 805, 1);
    float *dx = FALLOC(T * d), *dw = FALLOC(V * d);
    memcpy(dx, A, sizeof(float) * T * d);
    memcpy(dw, B, sizeof(float) * V * d);
    cpu_xent_forward_backward(dx, dw, NULL, NULL, x, w, y, T, d, V, gs, chunk, scratch);
    sub(dx, A, T * d);
    sub(dw, B, V * d);
    xe_ctx c = {x, w, y, scratch, T, d, V, chunk, gs};
    fd_check("xent dx (chunk 3 of 7)", xe_loss, &c, x, dx, T * d, 1000);
    fd_check("xent dw (chunk 3 of 7)", xe_loss, &c, w, dw, V * d, 1000);
    free(x); free(w); free(scratch); free(A); free(B); free(dx); free(dw);
}

static void test_xent_reference(void) {
    printf("cross-entropy vs full-logits double reference\n");
    int T = 10, d = 16, V = 37;
    float gs = 1.0f / T;
    float *x = normal_array(T * d, 811, 1), *w = normal_array(V * d, 812, 0.5f);
    int32_t y[10];
    for (int t = 0; t < T; t++) y[t] = (int32_t)(rng_u64(813, t) % V);
    y[3] = y[7] = -1; /* ignored tokens: no loss, no gradient */
    double *lg = DALLOC(V), *rdx = DALLOC(T * d), *rdw = DALLOC(V * d), rloss = 0, rtok[10] = {0};
    int32_t rarg[10];
    for (int t = 0; t < T; t++) {
        double m = -INFINITY, s = 0;
        for (int j = 0; j < V; j++) {
            lg[j] = 0;
            for (int i = 0; i < d; i++) lg[j] += (double)x[t * d + i] * w[j * d + i];
            if (lg[j] > m) m = lg[j], rarg[t] = j;
        }
        if (y[t] < 0) continue; /* its argmax is still reported */
        for (int j = 0; j < V; j++) s += exp(lg[j] - m);
        double lse = m + log(s);
        rtok[t] = lse - lg[y[t]];
        rloss += rtok[t];
        for (int j = 0; j < V; j++) {
            double g = (exp(lg[j] - lse) - (j == y[t])) * gs;
            for (int i = 0; i < d; i++) {
                rdx[t * d + i] += g * w[j * d + i];
                rdw[j * d + i] += g * x[t * d + i];
            }
        }
    }
    float *fdx = FALLOC(T * d), *fdw = FALLOC(V * d);
    to_float(fdx, rdx, T * d);
    to_float(fdw, rdw, V * d);
    int chunks[3] = {1, 3, T};
    double loss0 = 0;
    for (int ci = 0; ci < 3; ci++) {
        int ch = chunks[ci];
        float *scratch = FALLOC(ch * V), *dx = FALLOC(T * d), *dw = FALLOC(V * d);
        double loss = cpu_xent_forward_backward(dx, dw, NULL, NULL, x, w, y, T, d, V, gs, ch, scratch);
        char what[64];
        double e = fabs(loss - rloss) / fabs(rloss);
        printf("  xent loss chunk %-2d                           err %.2e (tol %.0e)\n", ch, e, EXACT_TOL);
        if (e > g_ref_worst && e <= EXACT_TOL) g_ref_worst = e;
        CHECK_REL(loss, rloss, EXACT_TOL);
        snprintf(what, sizeof what, "xent dx chunk %d", ch);
        check_ref(dx, fdx, T * d, EXACT_TOL, what);
        snprintf(what, sizeof what, "xent dw chunk %d", ch);
        check_ref(dw, fdw, V * d, EXACT_TOL, what);
        /* inference path (dx NULL): the same loss bitwise, dw untouched; each token's loss
         * (0 where ignored) and the argmax of its logits as the double reference has them */
        float *dw0 = FALLOC(V * d);
        double tok[10];
        int32_t arg[10];
        double loss_inf = cpu_xent_forward_backward(NULL, dw0, tok, arg, x, w, y, T, d, V, gs, ch, scratch);
        CHECK(loss_inf == loss);
        double tok_sum = 0;
        for (int t = 0; t < T; t++) {
            tok_sum += tok[t];
            if (y[t] < 0) CHECK(tok[t] == 0.0);
            else CHECK_REL(tok[t], rtok[t], EXACT_TOL);
            CHECK(arg[t] == rarg[t]);
        }
        CHECK(tok_sum == loss);
        int zero = 1;
        for (int i = 0; i < V * d; i++) zero &= dw0[i] == 0.0f;
        CHECK(zero);
        /* deterministic: twice gives the same bits */
        float *dx2 = FALLOC(T * d), *dw2 = FALLOC(V * d);
        double loss2 = cpu_xent_forward_backward(dx2, dw2, NULL, NULL, x, w, y, T, d, V, gs, ch, scratch);
        CHECK(loss2 == loss && memcmp(dx, dx2, sizeof(float) * T * d) == 0 &&
              memcmp(dw, dw2, sizeof(float) * V * d) == 0);
        if (ci == 0) loss0 = loss;
        else CHECK_REL(loss, loss0, 1e-6); /* GEMMs of other shapes round logits differently */
        free(scratch); free(dx); free(dw); free(dw0); free(dx2); free(dw2);
    }
    free(x); free(w); free(lg); free(rdx); free(rdw); free(fdx); free(fdw);

    /* Logits of magnitude ~1000 (exp overflows without the max shift): loss vs double. */
    {
        int T2 = 3, d2 = 4, V2 = 5;
        float *x2 = normal_array(T2 * d2, 821, 300), *w2 = normal_array(V2 * d2, 822, 1);
        int32_t y2[3] = {0, 4, 2};
        double r2 = 0;
        for (int t = 0; t < T2; t++) {
            double l2[5], m = -INFINITY, s2 = 0;
            for (int j = 0; j < V2; j++) {
                l2[j] = 0;
                for (int i = 0; i < d2; i++) l2[j] += (double)x2[t * d2 + i] * w2[j * d2 + i];
                m = l2[j] > m ? l2[j] : m;
            }
            for (int j = 0; j < V2; j++) s2 += exp(l2[j] - m);
            r2 += m + log(s2) - l2[y2[t]];
        }
        float *sc2 = FALLOC(2 * V2), *dx2 = FALLOC(T2 * d2), *dw2 = FALLOC(V2 * d2);
        double loss2 = cpu_xent_forward_backward(dx2, dw2, NULL, NULL, x2, w2, y2, T2, d2, V2, 1.0f, 2, sc2);
        /* fp32 logits of size ~1000 carry ~1e-4 absolute error; the loss sum is ~1e3 */
        CHECK_REL(loss2, r2, 1e-5);
        int finite = 1;
        for (int i = 0; i < T2 * d2; i++) finite &= isfinite(dx2[i]);
        for (int i = 0; i < V2 * d2; i++) finite &= isfinite(dw2[i]);
        CHECK(finite);
        printf("  xent logits ~1e3: loss %.6g vs %.6g\n", loss2, r2);
        free(x2); free(w2); free(sc2); free(dx2); free(dw2);
    }
}

/* ---------- AdamW ---------- */

static void test_adamw(void) {
    printf("adamw\n");
    enum { N = 6, STEPS = 4 };
    const float lr = 0.05f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const float p0[N] = {0.5f, -1.25f, 2.0f, 0.0f, 3.0f, -0.1f};
    for (int wdi = 0; wdi < 2; wdi++) {
        float wd = wdi ? 0.1f : 0.0f;
        float p[N], m[N] = {0}, v[N] = {0};
        double rp[N], rm[N] = {0}, rv[N] = {0};
        for (int i = 0; i < N; i++) rp[i] = p[i] = p0[i];
        for (int t = 1; t <= STEPS; t++) {
            float g[N];
            for (int i = 0; i < N; i++) g[i] = (float)rng_normal(900 + t, i) * (i == 3 ? 0.0f : 1.0f);
            double bc1 = 1.0 - pow((double)b1, t), bc2 = 1.0 - pow((double)b2, t);
            cpu_adamw(p, g, 1.0f, m, v, N, lr, b1, b2, eps, wd, (float)bc1, (float)bc2);
            for (int i = 0; i < N; i++) { /* the header's formulas, in double */
                rp[i] -= (double)lr * wd * rp[i];
                rm[i] = b1 * rm[i] + (1.0 - b1) * g[i];
                rv[i] = b2 * rv[i] + (1.0 - b2) * (double)g[i] * g[i];
                rp[i] -= ((double)lr / bc1) * rm[i] / (sqrt(rv[i]) / sqrt(bc2) + eps);
            }
            if (t == 1) { /* by hand: after step 1 m/bc1 = g and sqrt(v/bc2) = |g| */
                float g0 = g[0];
                double hand = p0[0] * (1.0 - (double)lr * wd) - lr * g0 / (fabs(g0) + eps);
                CHECK_REL(p[0], hand, 1e-6);
                CHECK(p[3] == (float)(p0[3] * (1.0 - (double)lr * wd))); /* g = 0: decay only */
            }
        }
        float fp[N], fm[N], fv[N];
        for (int i = 0; i < N; i++) { fp[i] = (float)rp[i]; fm[i] = (float)rm[i]; fv[i] = (float)rv[i]; }
        char what[64];
        snprintf(what, sizeof what, "adamw %d steps wd=%g: p", STEPS, wd);
        check_ref(p, fp, N, EXACT_TOL, what);
        snprintf(what, sizeof what, "adamw %d steps wd=%g: m", STEPS, wd);
        check_ref(m, fm, N, EXACT_TOL, what);
        snprintf(what, sizeof what, "adamw %d steps wd=%g: v", STEPS, wd);
        check_ref(v, fv, N, EXACT_TOL, what);
        /* the clipping coefficient fused: bitwise the update on the fp32-scaled gradient, g untouched */
        float g[N], gc[N], pa[N], pb[N], ma[N] = {0}, mb[N] = {0}, va[N] = {0}, vb[N] = {0};
        for (int i = 0; i < N; i++) g[i] = (float)rng_normal(950, i), gc[i] = g[i] * 0.37f, pa[i] = pb[i] = p0[i];
        float g_before[N];
        memcpy(g_before, g, sizeof g);
        cpu_adamw(pa, g, 0.37f, ma, va, N, lr, b1, b2, eps, wd, 0.1f, 0.001f);
        cpu_adamw(pb, gc, 1.0f, mb, vb, N, lr, b1, b2, eps, wd, 0.1f, 0.001f);
        CHECK(!memcmp(pa, pb, sizeof pa) && !memcmp(ma, mb, sizeof ma) && !memcmp(va, vb, sizeof va) &&
              !memcmp(g, g_before, sizeof g));
    }
}

/* ---------- the parallel paths (sizes above the serial thresholds) vs double ---------- */

static void test_large_paths(void) {
    printf("parallel paths vs double references\n");
    { /* rmsnorm: T * d above the threshold, d spanning 3 column blocks of the dw sum */
        int T = 64, d = 600, n = T * d;
        float *x = normal_array(n, 1101, 1), *w = normal_array(d, 1102, 1), *g = normal_array(n, 1103, 1);
        float *out = FALLOC(n), *rstd = FALLOC(T), *dx = FALLOC(n), *dw = FALLOC(d);
        double *rdx = DALLOC(n), *rdw = DALLOC(d);
        float *ro = FALLOC(n), *fdx = FALLOC(n), *fdw = FALLOC(d);
        for (int t = 0; t < T; t++) {
            double ss = 0, dot = 0;
            for (int i = 0; i < d; i++) ss += (double)x[t * d + i] * x[t * d + i];
            double r = 1.0 / sqrt(ss / d + 1e-6);
            for (int i = 0; i < d; i++) {
                ro[t * d + i] = (float)(w[i] * x[t * d + i] * r);
                dot += (double)g[t * d + i] * w[i] * x[t * d + i];
                rdw[i] += (double)g[t * d + i] * x[t * d + i] * r;
            }
            for (int i = 0; i < d; i++)
                rdx[t * d + i] = r * w[i] * g[t * d + i] - r * r * r * dot / d * x[t * d + i];
        }
        cpu_rmsnorm_forward(out, rstd, x, w, T, d, 1e-6f);
        cpu_rmsnorm_backward(dx, dw, g, x, w, rstd, T, d);
        to_float(fdx, rdx, n);
        to_float(fdw, rdw, d);
        check_ref(out, ro, n, EXACT_TOL, "rmsnorm forward T64 d600");
        check_ref(dx, fdx, n, EXACT_TOL, "rmsnorm dx T64 d600");
        check_ref(dw, fdw, d, EXACT_TOL, "rmsnorm dw T64 d600");
        free(x); free(w); free(g); free(out); free(rstd); free(dx); free(dw); free(rdx); free(rdw);
        free(ro); free(fdx); free(fdw);
    }
    { /* swiglu */
        int n = 50001;
        float *gt = normal_array(n, 1111, 2), *up = normal_array(n, 1112, 1), *dy = normal_array(n, 1113, 1);
        float *out = FALLOC(n), *dg = FALLOC(n), *du = FALLOC(n), *ro = FALLOC(n), *rg = FALLOC(n), *ru = FALLOC(n);
        for (int i = 0; i < n; i++) {
            double gg = gt[i], sg = 1.0 / (1.0 + exp(-gg));
            ro[i] = (float)(gg * sg * up[i]);
            rg[i] = (float)(dy[i] * up[i] * (sg + gg * sg * (1 - sg)));
            ru[i] = (float)(dy[i] * gg * sg);
        }
        cpu_swiglu_forward(out, gt, up, n);
        cpu_swiglu_backward(dg, du, dy, gt, up, n);
        check_ref(out, ro, n, EXACT_TOL, "swiglu forward n50001");
        check_ref(dg, rg, n, EXACT_TOL, "swiglu dgate n50001");
        check_ref(du, ru, n, EXACT_TOL, "swiglu dup n50001");
        free(gt); free(up); free(dy); free(out); free(dg); free(du); free(ro); free(rg); free(ru);
    }
    { /* embedding backward: column blocks, repeated tokens */
        int V = 50, d = 700, T = 80;
        int32_t tok[80];
        for (int t = 0; t < T; t++) tok[t] = (int32_t)(rng_u64(1121, t) % 20);
        float *dy = normal_array(T * d, 1122, 1), *dw = FALLOC(V * d), *rw = FALLOC(V * d);
        double *acc = DALLOC(V * d);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++) acc[tok[t] * d + i] += dy[t * d + i];
        to_float(rw, acc, V * d);
        cpu_embedding_backward(dw, dy, tok, T, d);
        check_ref(dw, rw, V * d, EXACT_TOL, "embedding dwte T80 d700");
        free(dy); free(dw); free(rw); free(acc);
    }
    { /* rope */
        int T = 64, nh = 8, D = 64, n = T * nh * D;
        int64_t pos[64];
        double inv_freq[32];
        for (int t = 0; t < T; t++) pos[t] = 1000 + 37 * t;
        for (int i = 0; i < D / 2; i++) inv_freq[i] = pow(500000.0, -2.0 * i / D);
        float *x = normal_array(n, 1131, 1), *y = FALLOC(n), *ry = FALLOC(n);
        memcpy(y, x, sizeof(float) * n);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++)
                for (int i = 0; i < D / 2; i++) {
                    double a = (double)pos[t] * inv_freq[i];
                    const float *xh = x + (t * nh + h) * D;
                    ry[(t * nh + h) * D + i] = (float)(xh[i] * cos(a) - xh[i + D / 2] * sin(a));
                    ry[(t * nh + h) * D + i + D / 2] = (float)(xh[i + D / 2] * cos(a) + xh[i] * sin(a));
                }
        cpu_rope_forward(y, pos, inv_freq, 1.0, T, nh, D);
        check_ref(y, ry, n, EXACT_TOL, "rope forward T64 nh8 D64");
        free(x); free(y); free(ry);
    }
    { /* attention delta and merge over T * H * D above the threshold */
        int T = 130, H = 4, D = 64, n = T * H * D, ld = T + 1;
        float *o = normal_array(n, 1141, 1), *ob = normal_array(n, 1142, 1), *dy = normal_array(n, 1143, 1);
        float *l = normal_array(H * ld, 1144, 2), *lb = normal_array(H * T, 1145, 2);
        float *del = FALLOC(H * ld), *rdel = FALLOC(H * ld), *ro = FALLOC(n), *rl = FALLOC(H * ld);
        memcpy(rl, l, sizeof(float) * H * ld);
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                double s = 0, a = l[h * ld + t], b = lb[h * T + t], mx = a > b ? a : b;
                double wa = exp(a - mx), wb = exp(b - mx);
                for (int i = 0; i < D; i++) {
                    int x = (t * H + h) * D + i;
                    s += (double)dy[x] * o[x];
                    ro[x] = (float)((wa * o[x] + wb * ob[x]) / (wa + wb));
                }
                rdel[h * ld + t] = (float)s;
                rl[h * ld + t] = (float)(mx + log(wa + wb));
            }
        cpu_attn_delta(del, ld, dy, o, T, H, D);
        cpu_attn_merge(o, l, ld, ob, lb, T, T, H, D);
        check_ref(del, rdel, H * ld, EXACT_TOL, "attn delta T130 H4 D64");
        check_ref(o, ro, n, EXACT_TOL, "attn merge out T130 H4 D64");
        check_ref(l, rl, H * ld, EXACT_TOL, "attn merge lse T130 H4 D64");
        free(o); free(ob); free(dy); free(l); free(lb); free(del); free(rdel); free(ro); free(rl);
    }
    { /* cross-entropy: rows of a chunk split between threads */
        int T = 40, d = 16, V = 2000, ch = 36;
        float gs = 0.25f;
        float *x = normal_array(T * d, 1151, 1), *w = normal_array(V * d, 1152, 0.5f);
        int32_t y[40];
        for (int t = 0; t < T; t++) y[t] = (int32_t)(rng_u64(1153, t) % V);
        double *lg = DALLOC(V), *rdx = DALLOC(T * d), *rdw = DALLOC(V * d), rloss = 0;
        for (int t = 0; t < T; t++) {
            double m = -INFINITY, s = 0;
            for (int j = 0; j < V; j++) {
                lg[j] = 0;
                for (int i = 0; i < d; i++) lg[j] += (double)x[t * d + i] * w[j * d + i];
                m = lg[j] > m ? lg[j] : m;
            }
            for (int j = 0; j < V; j++) s += exp(lg[j] - m);
            double lse = m + log(s);
            rloss += lse - lg[y[t]];
            for (int j = 0; j < V; j++) {
                double gj = (exp(lg[j] - lse) - (j == y[t])) * gs;
                for (int i = 0; i < d; i++) {
                    rdx[t * d + i] += gj * w[j * d + i];
                    rdw[j * d + i] += gj * x[t * d + i];
                }
            }
        }
        float *scratch = FALLOC(ch * V), *dx = FALLOC(T * d), *dw = FALLOC(V * d);
        float *fdx = FALLOC(T * d), *fdw = FALLOC(V * d);
        double loss = cpu_xent_forward_backward(dx, dw, NULL, NULL, x, w, y, T, d, V, gs, ch, scratch);
        to_float(fdx, rdx, T * d);
        to_float(fdw, rdw, V * d);
        CHECK_REL(loss, rloss, EXACT_TOL);
        check_ref(dx, fdx, T * d, EXACT_TOL, "xent dx T40 V2000 chunk 36");
        check_ref(dw, fdw, V * d, EXACT_TOL, "xent dw T40 V2000 chunk 36");
        free(x); free(w); free(lg); free(rdx); free(rdw); free(scratch); free(dx); free(dw);
        free(fdx); free(fdw);
    }
    { /* adamw, one step */
        int n = 40000;
        float *p = normal_array(n, 1161, 1), *g = normal_array(n, 1162, 1);
        float *m = normal_array(n, 1163, 0.1f), *v = FALLOC(n), *rp = FALLOC(n);
        for (int i = 0; i < n; i++) v[i] = 0.01f * (float)rng_uniform(1164, i);
        for (int i = 0; i < n; i++) {
            double pm = p[i] * (1.0 - 1e-3 * 0.1), mm = 0.9 * m[i] + 0.1 * g[i];
            double vv = 0.99 * v[i] + 0.01 * (double)g[i] * g[i];
            double bc1 = 1 - pow(0.9, 5), bc2 = 1 - pow(0.99, 5);
            rp[i] = (float)(pm - 1e-3 / bc1 * mm / (sqrt(vv) / sqrt(bc2) + 1e-8));
        }
        cpu_adamw(p, g, 1.0f, m, v, n, 1e-3f, 0.9f, 0.99f, 1e-8f, 0.1f, (float)(1 - pow(0.9, 5)),
                  (float)(1 - pow(0.99, 5)));
        check_ref(p, rp, n, EXACT_TOL, "adamw n40000");
        free(p); free(g); free(m); free(v); free(rp);
    }
}

/* ---------- vector helpers ---------- */

static void test_vec(void) {
    printf("vector helpers\n");
    int64_t n = 100003; /* several blocks of the parallel sum, ragged tail */
    float *x = normal_array(n, 1001, 1), *y = normal_array(n, 1002, 1), *y0 = FALLOC(n);
    double ref = 0;
    for (int64_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
    double s = cpu_sumsq(x, n);
    CHECK_REL(s, ref, 1e-12); /* double sums of the same terms in another order */
    int nth = omp_get_max_threads();
    omp_set_num_threads(1);
    double s1 = cpu_sumsq(x, n);
    omp_set_num_threads(nth);
    CHECK(s1 == s);
    CHECK(cpu_sumsq(x, 0) == 0.0);
    memcpy(y0, y, sizeof(float) * n);
    cpu_add(y, x, n);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) ok &= y[i] == y0[i] + x[i];
    CHECK(ok);
    free(x); free(y); free(y0);
}

int main(void) {
    test_matmul();
    test_rmsnorm();
    test_rope();
    test_swiglu();
    test_embedding();
    test_attn_fd();
    test_attn_reference();
    test_attn_key_split();
    test_attn_zigzag();
    test_attn_strides();
    test_attn_merge_extreme();
    test_attn_determinism();
    test_xent_fd();
    test_xent_reference();
    test_adamw();
    test_large_paths();
    test_vec();
    printf("worst FD error among passing checks: %.2e (tol %.0e); worst exact/reference error: %.2e\n",
           g_fd_worst, FD_TOL, g_ref_worst);
    return tu_done("test_ops");
}
