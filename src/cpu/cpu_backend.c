/* cpu_backend: the CPU backend's operation table: host memory, fp32 activations (act =
 * float), the working weights are the master weights. Each entry adapts a cpu_ops.h
 * function to the table's signature. A trainer serves alloc and host_alloc from an arena
 * (arena_backend.h); the cross-entropy chunk each xent call takes for itself and the fences
 * stay outside it. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_ops.h"
#include "runtime.h"

#define XENT_CHUNK 256 /* tokens per lm_head/cross-entropy chunk */

static void *c_alloc(const struct backend *be, size_t bytes, const char *what) {
    (void)be;
    return rt_calloc(1, bytes, what);
}
static void c_free(const struct backend *be, void *p) { (void)be, free(p); }
static void c_zero(const struct backend *be, void *p, size_t n) { (void)be, memset(p, 0, n); }
static void c_copy(const struct backend *be, void *d, const void *s, size_t n) {
    (void)be;
    if (d != s) memmove(d, s, n);
}
static void c_to_act(const struct backend *be, void *d, const float *s, int64_t n) {
    c_copy(be, d, s, (size_t)n * sizeof(float));
}

/* Offload on the host: the "host" buffers are more host memory, copies are immediate and
 * fences have nothing to wait for (each is a byte so that it is a distinct pointer). */
static void *c_fence_new(const struct backend *be) { return c_alloc(be, 1, "offload fence"); }
static void c_copy_async(const struct backend *be, void *d, const void *s, size_t n, void *fence) {
    (void)fence, c_copy(be, d, s, n);
}
static void c_fence_wait(const struct backend *be, void *fence) { (void)be, (void)fence; }
static void c_host_fn(const struct backend *be, void (*fn)(void *), void *arg) { (void)be, fn(arg); }

static void c_matmul_fwd(const struct backend *be, void *out, const void *x, const void *w, int T, int ni, int no) {
    (void)be, cpu_matmul_forward(out, x, w, T, ni, no);
}
static void c_matmul_bwd(const struct backend *be, void *dx, float *dw, const void *dy, const void *x,
                         const void *w, int T, int ni, int no) {
    (void)be, cpu_matmul_backward(dx, dw, dy, x, w, T, ni, no);
}
static void c_rms_fwd(const struct backend *be, void *out, float *rstd, const void *x, const void *w, int T, int d,
                      float eps) {
    (void)be, cpu_rmsnorm_forward(out, rstd, x, w, T, d, eps);
}
static void c_rms_bwd(const struct backend *be, void *dx, float *dw, const void *dout, const void *x, const void *w,
                      const float *rstd, int T, int d) {
    (void)be, cpu_rmsnorm_backward(dx, dw, dout, x, w, rstd, T, d);
}
static void c_rope_fwd(const struct backend *be, void *x, const int64_t *pos, const double *f, double sc, int T,
                       int nh, int D) {
    (void)be, cpu_rope_forward(x, pos, f, sc, T, nh, D);
}
static void c_rope_bwd(const struct backend *be, void *x, const int64_t *pos, const double *f, double sc, int T,
                       int nh, int D) {
    (void)be, cpu_rope_backward(x, pos, f, sc, T, nh, D);
}
static void c_swiglu_fwd(const struct backend *be, void *out, const void *g, const void *u, int64_t n) {
    (void)be, cpu_swiglu_forward(out, g, u, n);
}
static void c_swiglu_bwd(const struct backend *be, void *dg, void *du, const void *dout, const void *g,
                         const void *u, int64_t n) {
    (void)be, cpu_swiglu_backward(dg, du, dout, g, u, n);
}
static void c_embed_fwd(const struct backend *be, void *out, const int32_t *tok, const void *wte, int T, int d) {
    (void)be, cpu_embedding_forward(out, tok, wte, T, d);
}
static void c_embed_bwd(const struct backend *be, float *dwte, const void *dout, const int32_t *tok, int T, int d) {
    (void)be, cpu_embedding_backward(dwte, dout, tok, T, d);
}
static void c_add(const struct backend *be, void *y, const void *x, int64_t n) { (void)be, cpu_add(y, x, n); }
static void c_attn_fwd(const struct backend *be, float *out, float *lse, int ld, const void *q, const void *k,
                       const void *v, int Tq, int Tk, int H, int Hkv, int D, int causal) {
    (void)be, cpu_attn_forward(out, lse, ld, q, k, v, Tq, Tk, H, Hkv, D, causal);
}
static void c_attn_delta(const struct backend *be, float *delta, int ld, const void *dout, const void *out, int T,
                         int H, int D) {
    (void)be, cpu_attn_delta(delta, ld, dout, out, T, H, D);
}
static void c_attn_bwd(const struct backend *be, float *dq, float *dk, float *dv, const void *dout, const void *q,
                       const void *k, const void *v, const void *out, const float *lse, const float *delta, int ld,
                       int Tq, int Tk, int H, int Hkv, int D, int causal) {
    (void)be, (void)out, cpu_attn_backward(dq, dk, dv, dout, q, k, v, lse, delta, ld, Tq, Tk, H, Hkv, D, causal);
}
static void c_attn_local_fwd(const struct backend *be, void *out, float *lse, const void *q, const void *k,
                             const void *v, int T, int H, int Hkv, int D) {
    (void)be, cpu_attn_forward(out, lse, T, q, k, v, T, T, H, Hkv, D, 1);
}
static void c_attn_local_bwd(const struct backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                             const void *k, const void *v, const void *out, const float *lse, float *delta, int T,
                             int H, int Hkv, int D) {
    c_zero(be, dq, (size_t)T * H * D * sizeof(float));
    c_zero(be, dk, (size_t)T * Hkv * D * sizeof(float));
    c_zero(be, dv, (size_t)T * Hkv * D * sizeof(float));
    cpu_attn_delta(delta, T, dout, out, T, H, D);
    cpu_attn_backward(dq, dk, dv, dout, q, k, v, lse, delta, T, T, T, H, Hkv, D, 1);
}
static void c_attn_merge(const struct backend *be, float *out, float *lse, int ld, const float *ob, const float *lb,
                         int ldb, int Tq, int H, int D) {
    (void)be, cpu_attn_merge(out, lse, ld, ob, lb, ldb, Tq, H, D);
}
static void c_xent(const struct backend *be, double *loss, double *tok_loss, int32_t *tok_pred, void *dx, float *dw,
                   const void *x, const void *w, const int32_t *labels, int T, int d, int V, float grad_scale) {
    int chunk = T < XENT_CHUNK ? T : XENT_CHUNK;
    float *scratch = c_alloc(be, (size_t)chunk * V * sizeof(float), "cross-entropy chunk");
    *loss += cpu_xent_forward_backward(dx, dx ? dw : NULL, tok_loss, tok_pred, x, w, labels, T, d, V, grad_scale,
                                       chunk, scratch);
    free(scratch);
}
static void c_adamw(const struct backend *be, float *p, const float *g, float gs, float *m, float *v, int64_t n,
                    float lr, float b1, float b2, float eps, float wd, float bc1, float bc2) {
    (void)be, cpu_adamw(p, g, gs, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
}
static double c_sumsq(const struct backend *be, const float *x, int64_t n) { return (void)be, cpu_sumsq(x, n); }
static void c_add_f32(const struct backend *be, float *y, const float *x, int64_t n) { (void)be, cpu_add(y, x, n); }
static void c_sync(const struct backend *be) { (void)be; }

const struct backend cpu_backend = {
    .name = "cpu",
    .act_size = sizeof(float),
    .shared_weights = 1,
    .host_memory = 1,
    .attention = "cpu reference (cpu_attn.c)",
    .ctx = NULL,
    .alloc = c_alloc,
    .free = c_free,
    .zero = c_zero,
    .copy = c_copy,
    .upload = c_copy,
    .download = c_copy,
    .to_act = c_to_act,
    .host_alloc = c_alloc,
    .host_free = c_free,
    .fence_new = c_fence_new,
    .fence_free = c_free,
    .copy_async = c_copy_async,
    .fence_wait = c_fence_wait,
    .host_fn = c_host_fn,
    .matmul_forward = c_matmul_fwd,
    .matmul_backward = c_matmul_bwd,
    .rmsnorm_forward = c_rms_fwd,
    .rmsnorm_backward = c_rms_bwd,
    .rope_forward = c_rope_fwd,
    .rope_backward = c_rope_bwd,
    .swiglu_forward = c_swiglu_fwd,
    .swiglu_backward = c_swiglu_bwd,
    .embedding_forward = c_embed_fwd,
    .embedding_backward = c_embed_bwd,
    .add = c_add,
    .attn_forward = c_attn_fwd,
    .attn_delta = c_attn_delta,
    .attn_backward = c_attn_bwd,
    .attn_merge = c_attn_merge,
    .attn_local_forward = c_attn_local_fwd,
    .attn_local_backward = c_attn_local_bwd,
    .xent = c_xent,
    .adamw = c_adamw,
    .sumsq = c_sumsq,
    .add_f32 = c_add_f32,
    .sync = c_sync,
};
