/* backend: the table of operations the model driver, the ring schedule and the optimizer
 * call. The CPU table (src/cpu/cpu_backend.c) is the specification: every op there is the
 * fp32 function of src/cpu/cpu_ops.h, whose comments define the semantics. The CUDA table
 * has the same ops on device memory with bf16 activations.
 *
 * Buffer types: `void *` buffers hold the backend's activation type ("act": fp32 on the
 * CPU, bf16 on CUDA; act_size bytes per element): activations, their gradients, and the
 * working copy of the weights. `float *` buffers are fp32 everywhere: master weights,
 * weight gradients, optimizer moments, lse/delta/rstd, the attention outputs as they are
 * merged, the dq/dk/dv accumulators. Gradients marked "+=" accumulate. Every op is
 * asynchronous on the backend's compute stream; only download and sumsq wait. */
#ifndef RT_BACKEND_H
#define RT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* Kernel-time categories of backend->profile. */
enum backend_prof { PROF_GEMM, PROF_ATTN, PROF_XENT, PROF_OPTIM, PROF_OTHER, PROF_NCAT };

struct arena_binding;

struct backend {
    const char *name;
    size_t act_size;      /* bytes per act element: 4 (fp32) or 2 (bf16) */
    int    shared_weights; /* 1: the working weights are the fp32 master weights (no copy) */
    int    host_memory;   /* 1: backend memory is host memory (pointers usable directly) */
    const char *attention; /* which attention kernels run, for the start-up log */
    int    attn_own_delta; /* 1: attn_backward computes delta from out itself (pass delta NULL) */
    int    recording;     /* 1: a memory plan's backend: it records allocations, nothing may touch them */
    const char *device_name; /* the device's name (its peak FLOP/s for the MFU); NULL on a host backend */
    void  *ctx;           /* the backend's state (streams, library handles, workspaces) */
    struct arena_binding *arena; /* alloc and host_alloc hand out an arena's buffers (arena_backend.h); NULL: none */

    /* Memory (backend memory: host for the CPU, device for CUDA); alloc zero-fills. With an
     * arena (a trainer's backend) only the planned start-up allocations are made. */
    void *(*alloc)(const struct backend *be, size_t bytes, const char *what);
    void (*free)(const struct backend *be, void *p);
    void (*zero)(const struct backend *be, void *p, size_t bytes);
    void (*copy)(const struct backend *be, void *dst, const void *src, size_t bytes);
    void (*upload)(const struct backend *be, void *dst, const void *host, size_t bytes);
    void (*download)(const struct backend *be, void *host, const void *src, size_t bytes); /* waits */
    void (*to_act)(const struct backend *be, void *dst, const float *src, int64_t n);

    /* Offload (src/offload.c): host buffers the device can copy to and from asynchronously
     * (pinned on CUDA), and a copy queue beside the compute stream. copy_async starts after
     * every op issued so far and records `fence` when done; fence_wait makes the ops issued
     * after it wait for the fence. On a host backend the copy is immediate. */
    void *(*host_alloc)(const struct backend *be, size_t bytes, const char *what);
    void (*host_free)(const struct backend *be, void *p);
    void *(*fence_new)(const struct backend *be);
    void (*fence_free)(const struct backend *be, void *fence);
    void (*copy_async)(const struct backend *be, void *dst, const void *src, size_t bytes, void *fence);
    void (*fence_wait)(const struct backend *be, void *fence);
    /* Calls fn(arg) once every copy issued so far with copy_async is done: on a device
     * backend from a thread of the driver's (fn must be quick and must not call the backend),
     * on a host backend now. */
    void (*host_fn)(const struct backend *be, void (*fn)(void *arg), void *arg);

    /* Layers. x, out, dx, dy, w...: act; dw, rstd: fp32. */
    void (*matmul_forward)(const struct backend *be, void *out, const void *x, const void *w, int T,
                           int n_in, int n_out);
    void (*matmul_backward)(const struct backend *be, void *dx, float *dw, const void *dy,
                            const void *x, const void *w, int T, int n_in, int n_out);
    void (*rmsnorm_forward)(const struct backend *be, void *out, float *rstd, const void *x,
                            const void *w, int T, int d, float eps);
    void (*rmsnorm_backward)(const struct backend *be, void *dx, float *dw, const void *dout,
                             const void *x, const void *w, const float *rstd, int T, int d);
    /* scale: the attention factor (rope.h), multiplying cos and sin; 1 but for yarn */
    void (*rope_forward)(const struct backend *be, void *x, const int64_t *pos,
                         const double *inv_freq, double scale, int T, int nh, int D);
    void (*rope_backward)(const struct backend *be, void *dx, const int64_t *pos,
                          const double *inv_freq, double scale, int T, int nh, int D);
    void (*swiglu_forward)(const struct backend *be, void *out, const void *gate, const void *up,
                           int64_t n);
    void (*swiglu_backward)(const struct backend *be, void *dgate, void *dup, const void *dout,
                            const void *gate, const void *up, int64_t n);
    void (*embedding_forward)(const struct backend *be, void *out, const int32_t *tokens,
                              const void *wte, int T, int d);
    void (*embedding_backward)(const struct backend *be, float *dwte, const void *dout,
                               const int32_t *tokens, int T, int d);
    void (*add)(const struct backend *be, void *y, const void *x, int64_t n); /* y += x */

    /* Attention blocks (the ring schedule's kernels). q, k, v, dout: act; the rest fp32. */
    void (*attn_forward)(const struct backend *be, float *out, float *lse, int ld, const void *q,
                         const void *k, const void *v, int Tq, int Tk, int H, int Hkv, int D,
                         int causal);
    /* out: the final output of the rows as the model keeps it (act, (T, H, D)). */
    void (*attn_delta)(const struct backend *be, float *delta, int ld, const void *dout,
                       const void *out, int T, int H, int D);
    /* out (act): as for attn_delta; kernels that compute delta themselves read it (then
     * attn_own_delta is set and delta may be NULL), the others use delta. */
    void (*attn_backward)(const struct backend *be, float *dq, float *dk, float *dv,
                          const void *dout, const void *q, const void *k, const void *v,
                          const void *out, const float *lse, const float *delta, int ld, int Tq,
                          int Tk, int H, int Hkv, int D, int causal);
    void (*attn_merge)(const struct backend *be, float *out, float *lse, int ld, const float *out_b,
                       const float *lse_b, int ld_b, int Tq, int H, int D);
    /* A ring of one rank: causal attention of the T local tokens on their own K/V, with every
     * output in act and OVERWRITTEN (no fp32 merge or accumulation is needed, so a kernel
     * writing act directly runs alone); lse (H, T). delta (H, T) is scratch (NULL when
     * attn_own_delta: such kernels need none). */
    void (*attn_local_forward)(const struct backend *be, void *out, float *lse, const void *q,
                               const void *k, const void *v, int T, int H, int Hkv, int D);
    void (*attn_local_backward)(const struct backend *be, void *dq, void *dk, void *dv,
                                const void *dout, const void *q, const void *k, const void *v,
                                const void *out, const float *lse, float *delta, int T, int H,
                                int Hkv, int D);

    /* lm_head + cross-entropy over T tokens (x, w, dx: act; dw fp32 +=): adds the sum of the
     * token losses to *loss (one double in backend memory). dx == NULL: forward only.
     * tok_loss (T doubles) and tok_pred (T), backend memory, each NULL when not wanted: every
     * token's loss (0 for a label < 0) and the index of its largest logit (the first of equal
     * ones), for evaluation by position and the passkey test. */
    void (*xent)(const struct backend *be, double *loss, double *tok_loss, int32_t *tok_pred, void *dx, float *dw,
                 const void *x, const void *w, const int32_t *labels, int T, int d, int V, float grad_scale);

    /* Optimizer and gradients (fp32); the model refreshes its working weights after. */
    /* On the gradient g * gs (gs: the clipping coefficient or 1; g is read only). */
    void (*adamw)(const struct backend *be, float *p, const float *g, float gs, float *m, float *v, int64_t n,
                  float lr, float b1, float b2, float eps, float wd, float bc1, float bc2);
    double (*sumsq)(const struct backend *be, const float *x, int64_t n); /* waits */
    void (*add_f32)(const struct backend *be, float *y, const float *x, int64_t n); /* y += x */
    /* Wait on the host for every op issued so far (and the fences it was made to wait for). */
    void (*sync)(const struct backend *be);

    /* Milliseconds of kernel time per enum backend_prof category since the last call (waits);
     * NULL when the backend does not time its ops. */
    void (*profile)(const struct backend *be, double *ms);
    /* GiB of device memory in use by this process's device; NULL on a host backend (the
     * caller reports peak resident memory instead). */
    double (*mem_gib)(const struct backend *be);
    /* Bytes of device memory still free; NULL on a host backend. */
    size_t (*mem_free)(const struct backend *be);
};

extern const struct backend cpu_backend;

#endif
