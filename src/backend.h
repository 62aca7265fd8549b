/* backend: the table of operations the model driver and the ring schedule call. The CPU
 * table (src/cpu/cpu_backend.c) is the specification; a CUDA table will have the same
 * signatures and layouts. Semantics of each op: src/cpu/cpu_ops.h. Buffers are backend
 * memory (host memory for the CPU backend) from the backend's alloc. */
#ifndef RT_BACKEND_H
#define RT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

struct backend {
    const char *name;
    void *(*alloc)(size_t bytes, const char *what); /* zero-filled */
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);

    void (*matmul_forward)(float *out, const float *x, const float *w, int T, int n_in, int n_out);
    void (*matmul_backward)(float *dx, float *dw, const float *dy, const float *x, const float *w,
                            int T, int n_in, int n_out);
    void (*rmsnorm_forward)(float *out, float *rstd, const float *x, const float *w, int T, int d,
                            float eps);
    void (*rmsnorm_backward)(float *dx, float *dw, const float *dout, const float *x,
                             const float *w, const float *rstd, int T, int d);
    void (*rope_forward)(float *x, const int64_t *pos, const double *inv_freq, int T, int nh, int D);
    void (*rope_backward)(float *dx, const int64_t *pos, const double *inv_freq, int T, int nh, int D);
    void (*swiglu_forward)(float *out, const float *gate, const float *up, int64_t n);
    void (*swiglu_backward)(float *dgate, float *dup, const float *dout, const float *gate,
                            const float *up, int64_t n);
    void (*embedding_forward)(float *out, const int32_t *tokens, const float *wte, int T, int d);
    void (*embedding_backward)(float *dwte, const float *dout, const int32_t *tokens, int T, int d);
    void (*attn_forward)(float *out, float *lse, int ld, const float *q, const float *k,
                         const float *v, int Tq, int Tk, int H, int Hkv, int D, int causal);
    void (*attn_delta)(float *delta, int ld, const float *dout, const float *out, int T, int H, int D);
    void (*attn_backward)(float *dq, float *dk, float *dv, const float *dout, const float *q,
                          const float *k, const float *v, const float *lse, const float *delta,
                          int ld, int Tq, int Tk, int H, int Hkv, int D, int causal);
    void (*attn_merge)(float *out, float *lse, int ld, const float *out_b, const float *lse_b,
                       int ld_b, int Tq, int H, int D);
    double (*xent_forward_backward)(float *dx, float *dw, const float *x, const float *w,
                                    const int32_t *labels, int T, int d, int V, float grad_scale,
                                    int chunk, float *scratch);
    void (*adamw)(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1,
                  float b2, float eps, float wd, float bc1, float bc2);
    double (*sumsq)(const float *x, int64_t n);
    void (*scale)(float *x, float s, int64_t n);
    void (*add)(float *y, const float *x, int64_t n);
};

extern const struct backend cpu_backend;

#endif
