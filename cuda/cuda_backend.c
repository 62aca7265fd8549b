/* cuda_backend: the CUDA backend's operation table. Each entry calls a kernel wrapper of
 * cuda_ops.h / cuda_attn.h on the backend's stream; scratch for the cross-entropy chunks,
 * the RMSNorm weight-gradient parts and the gradient-norm reduction is allocated once, from
 * the arena (arena_backend.h) like every buffer of the trainer. */
#include "cuda_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena_backend.h"
#include "cuda_attn.h"
#include "cuda_check.h"
#include "cuda_ops.h"
#include "cudnn_attn.h"
#include "mem_plan.h"
#include "ring.h"
#include "runtime.h"

#define XENT_CHUNK 1024 /* tokens per lm_head/cross-entropy chunk */
#define PROF_START 16384 /* timed op calls between two reads of the profile, at first (doubles as needed) */
/* Memory plan allowances (mem_plan.h): device memory taken by others than our buffers --
 * the CUDA context, the cuBLAS/cuDNN handles and the kernels they load, NCCL, the rounding
 * of allocations -- and cuDNN's own part of the attention workspace. CONTEXT_ALLOWANCE is
 * what an H200 showed at 7B 32K and 64K on one rank (cudaMemGetInfo's used, 127.95 and
 * 137.65 GiB, less the planned buffers); cuDNN's own workspace was under 8 MiB there. */
#define CONTEXT_ALLOWANCE ((size_t)1792 << 20)
#define CUDNN_OWN_ALLOWANCE ((size_t)128 << 20)
/* Host memory of the same: the CUDA driver and runtime, the libraries' code and host state,
 * the threads. What an H200 run (CUDA 13, cuDNN 9.19, 16 OpenMP threads, 7B on one rank)
 * used beyond its planned host buffers: 3.0 GiB at 64K and 128K, 3.4 GiB at 384K (`free`'s
 * used during the run less before it; test/gpu/bench_long.sh). */
#define HOST_ALLOWANCE ((size_t)3 << 30)

struct cuda_ctx {
    int device;
    char device_name[256];                 /* cudaDeviceProp.name (backend.device_name) */
    cudaStream_t stream;
    cudaStream_t copy_stream;              /* offload copies (copy_async) */
    cudaEvent_t issued;                    /* recorded on stream: what copy_async waits for */
    int profiling;                         /* time every op with events (log.profile) */
    int nprof;                             /* op calls timed since the last read */
    int prof_cap;                          /* op calls the events below can time */
    cudaEvent_t *prof_ev;                  /* (2 * prof_cap) start/stop pairs */
    unsigned char *prof_cat;               /* (prof_cap) enum backend_prof */
    struct cuda_blas *blas;
    void *xent_scratch;
    float *norm_scratch;
    size_t norm_bytes;
    double *sumsq_scratch, *sumsq_out;
    struct cudnn_attn *cudnn;              /* NULL: the native attention kernels */
    size_t xent_bytes, local32_bytes;      /* the scratch cuda_backend_attach takes (local32: 0 for none) */
    float *local32;                        /* ring of one rank, native kernels: fp32 dq|dk|dv (out in the forward) */
    char attention[128];                   /* for the start-up log */
};

static struct cuda_ctx *ctx(const struct backend *be) { return be->ctx; }
static cudaStream_t st(const struct backend *be) { return ctx(be)->stream; }

/* Room for twice as many timed calls (the events already recorded keep their handles).
 * A step times every op it issues: token tiles multiply them (7B at 64K: ~25000). */
static void prof_grow(struct cuda_ctx *c) {
    int cap = c->prof_cap ? 2 * c->prof_cap : PROF_START;
    cudaEvent_t *ev = realloc(c->prof_ev, (size_t)2 * cap * sizeof *ev);
    unsigned char *cat = realloc(c->prof_cat, (size_t)cap);
    if (!ev || !cat) RT_FATAL("cuda: out of host memory for %d profile events", 2 * cap);
    for (int i = 2 * c->prof_cap; i < 2 * cap; i++) CUDA_CHECK(cudaEventCreate(&ev[i]));
    c->prof_ev = ev, c->prof_cat = cat, c->prof_cap = cap;
}

/* Bracket an op with events when profiling: PROF(be, CAT, call). */
static int prof_begin(const struct backend *be) {
    struct cuda_ctx *c = ctx(be);
    if (!c->profiling) return -1;
    if (c->nprof == c->prof_cap) prof_grow(c);
    CUDA_CHECK(cudaEventRecord(c->prof_ev[2 * c->nprof], c->stream));
    return c->nprof++;
}
static void prof_end(const struct backend *be, int slot, int cat) {
    struct cuda_ctx *c = ctx(be);
    if (slot < 0) return;
    CUDA_CHECK(cudaEventRecord(c->prof_ev[2 * slot + 1], c->stream));
    c->prof_cat[slot] = (unsigned char)cat;
}
#define PROF(be, cat, call)                  \
    do {                                     \
        int slot_ = prof_begin(be);          \
        call;                                \
        prof_end(be, slot_, cat);            \
    } while (0)

static void g_profile(const struct backend *be, double *ms) {
    struct cuda_ctx *c = ctx(be);
    for (int i = 0; i < PROF_NCAT; i++) ms[i] = 0;
    if (!c->nprof) return;
    CUDA_CHECK(cudaEventSynchronize(c->prof_ev[2 * c->nprof - 1]));
    for (int i = 0; i < c->nprof; i++) {
        float t = 0;
        CUDA_CHECK(cudaEventElapsedTime(&t, c->prof_ev[2 * i], c->prof_ev[2 * i + 1]));
        ms[c->prof_cat[i]] += t;
    }
    c->nprof = 0;
}

static void *g_alloc(const struct backend *be, size_t bytes, const char *what) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        size_t free_b = 0, total = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total);
        RT_NO_FIT("does not fit: %.2f GiB for %s, %.2f of %.2f GiB free on the GPU; try fewer tokens per rank "
                  "(more ranks or a shorter data.seq_len) or memory.checkpointing: full",
                  bytes / 1073741824.0, what, free_b / 1073741824.0, total / 1073741824.0);
    }
    if (e != cudaSuccess)
        RT_FATAL("cudaMalloc of %zu bytes for %s failed: %s", bytes, what, cudaGetErrorString(e));
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, st(be)));
    return p;
}
static void g_free(const struct backend *be, void *p) {
    CUDA_CHECK(cudaStreamSynchronize(st(be)));
    CUDA_CHECK(cudaFree(p));
}
static void g_zero(const struct backend *be, void *p, size_t n) {
    CUDA_CHECK(cudaMemsetAsync(p, 0, n, st(be)));
}
static void g_copy(const struct backend *be, void *d, const void *s, size_t n) {
    if (d != s) CUDA_CHECK(cudaMemcpyAsync(d, s, n, cudaMemcpyDeviceToDevice, st(be)));
}
/* The host buffer may be reused as soon as this returns: wait for the copy. */
static void g_upload(const struct backend *be, void *d, const void *h, size_t n) {
    CUDA_CHECK(cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, st(be)));
    CUDA_CHECK(cudaStreamSynchronize(st(be)));
}
static void g_download(const struct backend *be, void *h, const void *d, size_t n) {
    CUDA_CHECK(cudaMemcpyAsync(h, d, n, cudaMemcpyDeviceToHost, st(be)));
    CUDA_CHECK(cudaStreamSynchronize(st(be)));
}
/* Offload: pinned host memory, copies on copy_stream ordered after the compute stream's
 * work issued so far; a fence is an event. */
static void *g_host_alloc(const struct backend *be, size_t bytes, const char *what) {
    (void)be;
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault);
    if (e != cudaSuccess)
        RT_NO_FIT("cannot pin %.2f GiB of host memory for %s: %s; offload fewer layers (memory.offload) or free "
                  "host memory", bytes / 1073741824.0, what, cudaGetErrorString(e));
    return p;
}
static void g_host_free(const struct backend *be, void *p) {
    CUDA_CHECK(cudaStreamSynchronize(ctx(be)->copy_stream));
    CUDA_CHECK(cudaFreeHost(p));
}
static void *g_fence_new(const struct backend *be) {
    (void)be;
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return e;
}
static void g_fence_free(const struct backend *be, void *f) {
    (void)be;
    CUDA_CHECK(cudaEventDestroy((cudaEvent_t)f));
}
static void g_copy_async(const struct backend *be, void *d, const void *s, size_t n, void *fence) {
    struct cuda_ctx *c = ctx(be);
    CUDA_CHECK(cudaEventRecord(c->issued, c->stream));
    CUDA_CHECK(cudaStreamWaitEvent(c->copy_stream, c->issued, 0));
    CUDA_CHECK(cudaMemcpyAsync(d, s, n, cudaMemcpyDefault, c->copy_stream));
    CUDA_CHECK(cudaEventRecord((cudaEvent_t)fence, c->copy_stream));
}
static void g_fence_wait(const struct backend *be, void *fence) {
    CUDA_CHECK(cudaStreamWaitEvent(st(be), (cudaEvent_t)fence, 0));
}

static void g_host_fn(const struct backend *be, void (*fn)(void *), void *arg) {
    CUDA_CHECK(cudaLaunchHostFunc(ctx(be)->copy_stream, fn, arg));
}

static void g_to_act(const struct backend *be, void *d, const float *s, int64_t n) {
    PROF(be, PROF_OTHER, cuda_to_bf16(d, s, n, st(be)));
}

static void g_matmul_fwd(const struct backend *be, void *out, const void *x, const void *w, int T, int ni, int no) {
    PROF(be, PROF_GEMM, cuda_matmul_forward(ctx(be)->blas, out, x, w, T, ni, no, st(be)));
}
static void g_matmul_bwd(const struct backend *be, void *dx, float *dw, const void *dy, const void *x,
                         const void *w, int T, int ni, int no) {
    PROF(be, PROF_GEMM, cuda_matmul_backward(ctx(be)->blas, dx, dw, dy, x, w, T, ni, no, st(be)));
}
static void g_rms_fwd(const struct backend *be, void *out, float *rstd, const void *x, const void *w, int T, int d,
                      float eps) {
    PROF(be, PROF_OTHER, cuda_rmsnorm_forward(out, rstd, x, w, T, d, eps, st(be)));
}
static void g_rms_bwd(const struct backend *be, void *dx, float *dw, const void *dout, const void *x, const void *w,
                      const float *rstd, int T, int d) {
    if (cuda_rmsnorm_scratch(T, d) > ctx(be)->norm_bytes)
        RT_FATAL("cuda: RMSNorm scratch for T=%d d=%d exceeds the %zu bytes planned", T, d, ctx(be)->norm_bytes);
    cuda_rmsnorm_backward(dx, dw, dout, x, w, rstd, T, d, ctx(be)->norm_scratch, st(be));
}
static void g_rope_fwd(const struct backend *be, void *x, const int64_t *pos, const double *f, double sc, int T,
                       int nh, int D) {
    PROF(be, PROF_OTHER, cuda_rope_forward(x, pos, f, sc, T, nh, D, st(be)));
}
static void g_rope_bwd(const struct backend *be, void *x, const int64_t *pos, const double *f, double sc, int T,
                       int nh, int D) {
    PROF(be, PROF_OTHER, cuda_rope_backward(x, pos, f, sc, T, nh, D, st(be)));
}
static void g_swiglu_fwd(const struct backend *be, void *out, const void *g, const void *u, int64_t n) {
    PROF(be, PROF_OTHER, cuda_swiglu_forward(out, g, u, n, st(be)));
}
static void g_swiglu_bwd(const struct backend *be, void *dg, void *du, const void *dout, const void *g,
                         const void *u, int64_t n) {
    PROF(be, PROF_OTHER, cuda_swiglu_backward(dg, du, dout, g, u, n, st(be)));
}
static void g_embed_fwd(const struct backend *be, void *out, const int32_t *tok, const void *wte, int T, int d) {
    PROF(be, PROF_OTHER, cuda_embedding_forward(out, tok, wte, T, d, st(be)));
}
static void g_embed_bwd(const struct backend *be, float *dwte, const void *dout, const int32_t *tok, int T, int d) {
    PROF(be, PROF_OTHER, cuda_embedding_backward(dwte, dout, tok, T, d, st(be)));
}
static void g_add(const struct backend *be, void *y, const void *x, int64_t n) {
    PROF(be, PROF_OTHER, cuda_add_bf16(y, x, n, st(be)));
}
static void g_attn_fwd(const struct backend *be, float *out, float *lse, int ld, const void *q, const void *k,
                       const void *v, int Tq, int Tk, int H, int Hkv, int D, int causal) {
    struct cudnn_attn *ca = ctx(be)->cudnn;
    if (ca) PROF(be, PROF_ATTN, cudnn_attn_forward(ca, out, lse, ld, q, k, v, Tq, Tk, H, Hkv, D, causal, st(be)));
    else PROF(be, PROF_ATTN, cuda_attn_forward(out, lse, ld, q, k, v, Tq, Tk, H, Hkv, D, causal, st(be)));
}
static void g_attn_delta(const struct backend *be, float *delta, int ld, const void *dout, const void *out, int T,
                         int H, int D) {
    PROF(be, PROF_ATTN, cuda_attn_delta(delta, ld, dout, out, T, H, D, st(be)));
}
static void g_attn_bwd(const struct backend *be, float *dq, float *dk, float *dv, const void *dout, const void *q,
                       const void *k, const void *v, const void *out, const float *lse, const float *delta, int ld,
                       int Tq, int Tk, int H, int Hkv, int D, int causal) {
    struct cudnn_attn *ca = ctx(be)->cudnn;
    if (ca)
        PROF(be, PROF_ATTN, cudnn_attn_backward(ca, dq, dk, dv, dout, q, k, v, out, lse, delta, ld, Tq, Tk, H, Hkv, D,
                                                causal, st(be)));
    else
        PROF(be, PROF_ATTN, cuda_attn_backward(dq, dk, dv, dout, q, k, v, lse, delta, ld, Tq, Tk, H, Hkv, D, causal,
                                               st(be)));
}
static void g_attn_merge(const struct backend *be, float *out, float *lse, int ld, const float *ob, const float *lb,
                         int ldb, int Tq, int H, int D) {
    PROF(be, PROF_ATTN, cuda_attn_merge(out, lse, ld, ob, lb, ldb, Tq, H, D, st(be)));
}
/* A ring of one rank: cuDNN writes the bf16 outputs itself; the native kernels work in fp32
 * (local32) and are narrowed after. */
static void g_attn_local_fwd(const struct backend *be, void *out, float *lse, const void *q, const void *k,
                             const void *v, int T, int H, int Hkv, int D) {
    struct cuda_ctx *c = ctx(be);
    if (c->cudnn) {
        int done;
        PROF(be, PROF_ATTN, done = cudnn_attn_forward_bf16(c->cudnn, out, lse, T, q, k, v, T, T, H, Hkv, D, 1, st(be)));
        if (!done) RT_FATAL("cuda: cuDNN declined a prepared attention call: %s", cudnn_attn_last_path(c->cudnn));
        return;
    }
    if (!c->local32) RT_FATAL("cuda: attn_local_forward on a backend opened for a ring of more than one rank");
    PROF(be, PROF_ATTN, cuda_attn_forward(c->local32, lse, T, q, k, v, T, T, H, Hkv, D, 1, st(be)));
    PROF(be, PROF_ATTN, cuda_to_bf16(out, c->local32, (int64_t)T * H * D, st(be)));
}
static void g_attn_local_bwd(const struct backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                             const void *k, const void *v, const void *out, const float *lse, float *delta, int T,
                             int H, int Hkv, int D) {
    struct cuda_ctx *c = ctx(be);
    if (c->cudnn) {
        int done;
        PROF(be, PROF_ATTN, done = cudnn_attn_backward_bf16(c->cudnn, dq, dk, dv, dout, q, k, v, out, lse, T, T, T, H,
                                                            Hkv, D, 1, st(be)));
        if (!done) RT_FATAL("cuda: cuDNN declined a prepared attention call: %s", cudnn_attn_last_path(c->cudnn));
        return;
    }
    if (!c->local32) RT_FATAL("cuda: attn_local_backward on a backend opened for a ring of more than one rank");
    size_t nq = (size_t)T * H * D, nk = (size_t)T * Hkv * D;
    float *dq32 = c->local32, *dk32 = dq32 + nq, *dv32 = dk32 + nk;
    CUDA_CHECK(cudaMemsetAsync(c->local32, 0, (nq + 2 * nk) * sizeof(float), st(be)));
    PROF(be, PROF_ATTN, cuda_attn_delta(delta, T, dout, out, T, H, D, st(be)));
    PROF(be, PROF_ATTN, cuda_attn_backward(dq32, dk32, dv32, dout, q, k, v, lse, delta, T, T, T, H, Hkv, D, 1, st(be)));
    PROF(be, PROF_ATTN, cuda_to_bf16(dq, dq32, (int64_t)nq, st(be)));
    PROF(be, PROF_ATTN, cuda_to_bf16(dk, dk32, (int64_t)nk, st(be)));
    PROF(be, PROF_ATTN, cuda_to_bf16(dv, dv32, (int64_t)nk, st(be)));
}
static void g_xent(const struct backend *be, double *loss, double *tok_loss, int32_t *tok_pred, void *dx, float *dw,
                   const void *x, const void *w, const int32_t *labels, int T, int d, int V, float grad_scale) {
    PROF(be, PROF_XENT, cuda_xent(ctx(be)->blas, loss, tok_loss, tok_pred, dx, dx ? dw : NULL, x, w, labels, T, d, V,
                                  grad_scale, XENT_CHUNK, ctx(be)->xent_scratch, st(be)));
}
static void g_adamw(const struct backend *be, float *p, const float *g, float gs, float *m, float *v, int64_t n,
                    float lr, float b1, float b2, float eps, float wd, float bc1, float bc2) {
    PROF(be, PROF_OPTIM, cuda_adamw(p, NULL, g, gs, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, st(be)));
}
static double g_sumsq(const struct backend *be, const float *x, int64_t n) {
    double r;
    cuda_sumsq(ctx(be)->sumsq_out, x, n, ctx(be)->sumsq_scratch, st(be));
    g_download(be, &r, ctx(be)->sumsq_out, sizeof r);
    return r;
}
static void g_add_f32(const struct backend *be, float *y, const float *x, int64_t n) {
    PROF(be, PROF_OPTIM, cuda_accum_f32(y, x, n, st(be)));
}
static void g_sync(const struct backend *be) { CUDA_CHECK(cudaStreamSynchronize(st(be))); }

static size_t g_mem_free(const struct backend *be) {
    size_t free_b = 0, total = 0;
    (void)be;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
    return free_b;
}

/* Everything is allocated at start-up, so what is in use now is the peak. */
static double g_mem_gib(const struct backend *be) {
    size_t free_b = 0, total = 0;
    (void)be;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
    return (double)(total - free_b) / (1024.0 * 1024.0 * 1024.0);
}

static const struct backend table = {
    .name = "cuda",
    .act_size = 2,
    .shared_weights = 0,
    .host_memory = 0,
    .alloc = g_alloc,
    .free = g_free,
    .zero = g_zero,
    .copy = g_copy,
    .upload = g_upload,
    .download = g_download,
    .to_act = g_to_act,
    .host_alloc = g_host_alloc,
    .host_free = g_host_free,
    .fence_new = g_fence_new,
    .fence_free = g_fence_free,
    .copy_async = g_copy_async,
    .fence_wait = g_fence_wait,
    .host_fn = g_host_fn,
    .matmul_forward = g_matmul_fwd,
    .matmul_backward = g_matmul_bwd,
    .rmsnorm_forward = g_rms_fwd,
    .rmsnorm_backward = g_rms_bwd,
    .rope_forward = g_rope_fwd,
    .rope_backward = g_rope_bwd,
    .swiglu_forward = g_swiglu_fwd,
    .swiglu_backward = g_swiglu_bwd,
    .embedding_forward = g_embed_fwd,
    .embedding_backward = g_embed_bwd,
    .add = g_add,
    .attn_forward = g_attn_fwd,
    .attn_delta = g_attn_delta,
    .attn_backward = g_attn_bwd,
    .attn_merge = g_attn_merge,
    .attn_local_forward = g_attn_local_fwd,
    .attn_local_backward = g_attn_local_bwd,
    .xent = g_xent,
    .adamw = g_adamw,
    .sumsq = g_sumsq,
    .add_f32 = g_add_f32,
    .sync = g_sync,
    .profile = g_profile,
    .mem_gib = g_mem_gib,
    .mem_free = g_mem_free,
};

int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

int cuda_device_pci_bus_id(int local_rank, char *busid, int len) {
    int n = cuda_device_count();
    return n > 0 && cudaDeviceGetPCIBusId(busid, len, local_rank % n) == cudaSuccess ? 0 : -1;
}

/* The attention calls the ring will make (ring_call_shapes); all with ld = T. */
#define MAX_SHAPES 16
static int ring_shapes(const struct cuda_backend_opts *o, struct ring_shape *b) {
    return ring_call_shapes(o->T, o->ring_size, o->zigzag, o->attn_block, b, MAX_SHAPES);
}

/* The scratch buffers cuda_backend_create allocates (their sizes are functions of the
 * options alone, so the memory plan records the same ones). */
static size_t xent_bytes(const struct cuda_backend_opts *o) {
    return cuda_xent_scratch(o->T < XENT_CHUNK ? o->T : XENT_CHUNK, o->V);
}
static size_t local32_bytes(const struct cuda_backend_opts *o) {
    return (size_t)o->T * (o->H + 2 * o->Hkv) * o->D * sizeof(float);
}
#define XENT_WHAT "cross-entropy chunk"
#define NORM_WHAT "RMSNorm scratch"
#define SUMSQ_WHAT "norm scratch"
#define SUMSQ_OUT_WHAT "norm result"
#define LOCAL32_WHAT "attention fp32 scratch (native kernels, one rank)"

/* device.attention: cudnn requires cuDNN for every block shape; auto takes it when it
 * serves them all; native never. takes: cudnn_attn_supported, or cudnn_attn_takes_shape
 * where no GPU may be touched (a plan). */
static int use_cudnn(const struct cuda_backend_opts *o, int (*takes)(int, int, int, int, int, int)) {
    struct ring_shape b[MAX_SHAPES];
    int n = ring_shapes(o, b), ok = o->attention != ATTN_NATIVE;
    for (int i = 0; i < n && ok; i++) ok = takes(b[i].Tq, b[i].Tk, o->H, o->Hkv, o->D, b[i].causal);
    if (!ok && o->attention == ATTN_CUDNN)
        RT_FATAL("device.attention cudnn: cuDNN's fused attention %s (T=%d, heads %d/%d, head dim %d)",
                 cudnn_attn_version() ? "does not take this shape" : "is not in this build", o->T, o->H, o->Hkv, o->D);
    return ok;
}

static void native_text(char *buf, size_t n, const struct cuda_backend_opts *o) {
    snprintf(buf, n, "native flash attention (cuda/attn_*.cu)%s",
             o->attention == ATTN_AUTO ? ", cuDNN not available for this shape" : "");
}

/* Plans are built and the workspace reserved now (a ring of one rank writes cuDNN's bf16
 * outputs directly: no staging). The native kernels of a ring of one rank will take their
 * fp32 scratch (cuda_backend_attach). */
static void choose_attention(struct backend *be, const struct cuda_backend_opts *o) {
    struct cuda_ctx *c = be->ctx;
    struct ring_shape b[MAX_SHAPES];
    int n = ring_shapes(o, b), direct = o->ring_size == 1 && !o->attn_block;
    if (!use_cudnn(o, cudnn_attn_supported)) {
        native_text(c->attention, sizeof c->attention, o);
        if (direct) c->local32_bytes = local32_bytes(o);
        return;
    }
    c->cudnn = cudnn_attn_init(0);
    be->attn_own_delta = 1; /* cuDNN's backward forms delta from out (its native fallback too) */
    size_t ws = 0;
    for (int i = 0; i < n; i++) {
        size_t need = cudnn_attn_prepare(c->cudnn, b[i].Tq, b[i].Tk, o->H, o->Hkv, o->D, b[i].causal, o->T, direct);
        if (need > ws) ws = need;
    }
    cudnn_attn_reserve(c->cudnn, ws);
    size_t v = cudnn_attn_version();
    snprintf(c->attention, sizeof c->attention, "cuDNN %zu.%zu.%zu fused attention (workspace %.2f GiB)", v / 10000,
             v / 100 % 100, v % 100, ws / 1073741824.0);
}

struct backend *cuda_backend_create(const struct cuda_backend_opts *o) {
    int local_rank = o->local_rank, profile = o->profile;
    int n = cuda_device_count();
    if (n < 1) RT_FATAL("device.backend cuda: no CUDA device is visible");
    struct backend *be = rt_calloc(1, sizeof *be, "cuda backend");
    struct cuda_ctx *c = rt_calloc(1, sizeof *c, "cuda backend");
    *be = table;
    be->ctx = c;
    c->device = local_rank % n;
    CUDA_CHECK(cudaSetDevice(c->device));
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, c->device));
    snprintf(c->device_name, sizeof c->device_name, "%s", prop.name);
    be->device_name = c->device_name;
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&c->issued, cudaEventDisableTiming));
    c->blas = cuda_blas_init(0);
    c->xent_bytes = xent_bytes(o);
    c->norm_bytes = cuda_rmsnorm_scratch(o->T, o->d);
    c->profiling = profile;
    if (profile) prof_grow(c);
    choose_attention(be, o);
    be->attention = c->attention;
    return be;
}

void cuda_backend_attach(struct backend *be, struct arena *a) {
    struct cuda_ctx *c = be->ctx;
    arena_backend_attach(be, a);
    c->xent_scratch = be->alloc(be, c->xent_bytes, XENT_WHAT);
    c->norm_scratch = c->norm_bytes ? be->alloc(be, c->norm_bytes, NORM_WHAT) : NULL;
    c->sumsq_scratch = be->alloc(be, CUDA_SUMSQ_PARTS * sizeof(double), SUMSQ_WHAT);
    c->sumsq_out = be->alloc(be, sizeof(double), SUMSQ_OUT_WHAT);
    if (c->local32_bytes) c->local32 = be->alloc(be, c->local32_bytes, LOCAL32_WHAT);
}

void cuda_backend_destroy(struct backend *be) {
    struct cuda_ctx *c = be->ctx;
    if (be->arena) {
        be->free(be, c->xent_scratch);
        if (c->norm_scratch) be->free(be, c->norm_scratch);
        be->free(be, c->sumsq_scratch);
        be->free(be, c->sumsq_out);
        if (c->local32) be->free(be, c->local32);
        arena_backend_detach(be);
    }
    cuda_blas_free(c->blas);
    if (c->cudnn) cudnn_attn_free(c->cudnn);
    if (c->profiling) {
        for (int i = 0; i < 2 * c->prof_cap; i++) CUDA_CHECK(cudaEventDestroy(c->prof_ev[i]));
        free(c->prof_ev);
        free(c->prof_cat);
    }
    CUDA_CHECK(cudaStreamSynchronize(c->copy_stream));
    CUDA_CHECK(cudaEventDestroy(c->issued));
    CUDA_CHECK(cudaStreamDestroy(c->copy_stream));
    CUDA_CHECK(cudaStreamDestroy(c->stream));
    free(c);
    free(be);
}

cudaStream_t cuda_backend_stream(const struct backend *be) { return st(be); }

void cuda_backend_plan(const struct cuda_backend_opts *o, struct mem_plan *p) {
    mem_plan_like(p, &table);
    mem_plan_add(p, "CUDA context, cuBLAS/cuDNN handles and kernels, NCCL", MEM_DEVICE, 1, CONTEXT_ALLOWANCE, 1);
    mem_plan_add(p, "CUDA driver and runtime, libraries, threads", MEM_PLAIN, 1,
                 HOST_ALLOWANCE, 1);
    mem_plan_add(p, "cuBLAS workspace", MEM_DEVICE, 0, CUDA_BLAS_WORKSPACE_DEFAULT, 1);
    /* the arena's buffers, through the plan backend in cuda_backend_attach's order */
    const struct backend *pb = mem_plan_backend(p);
    pb->alloc(pb, xent_bytes(o), XENT_WHAT);
    size_t norm = cuda_rmsnorm_scratch(o->T, o->d);
    if (norm) pb->alloc(pb, norm, NORM_WHAT);
    pb->alloc(pb, CUDA_SUMSQ_PARTS * sizeof(double), SUMSQ_WHAT);
    pb->alloc(pb, sizeof(double), SUMSQ_OUT_WHAT);
    struct ring_shape b[MAX_SHAPES];
    int n = ring_shapes(o, b), direct = o->ring_size == 1 && !o->attn_block;
    /* a run's plan (measured: the GPU is there) asks the GPU as choose_attention does */
    p->cudnn = use_cudnn(o, p->measured ? cudnn_attn_supported : cudnn_attn_takes_shape);
    p->be.attn_own_delta = p->cudnn; /* as choose_attention sets it: the ring plans no delta */
    if (!p->cudnn) {
        native_text(p->attention, sizeof p->attention, o);
        if (direct) pb->alloc(pb, local32_bytes(o), LOCAL32_WHAT);
        return;
    }
    size_t ws = 0;
    for (int i = 0; i < n; i++) {
        size_t need = cudnn_attn_workspace_estimate(b[i].Tq, b[i].Tk, o->H, o->Hkv, o->D, b[i].causal, o->T, direct, 0);
        if (need > ws) ws = need;
    }
    mem_plan_add(p, "cuDNN attention workspace (staging, dQ accumulator)", MEM_DEVICE, 0, ws, 1);
    mem_plan_add(p, "cuDNN attention workspace, cuDNN's own part", MEM_DEVICE, 1, CUDNN_OWN_ALLOWANCE, 1);
    size_t v = cudnn_attn_version();
    snprintf(p->attention, sizeof p->attention, "cuDNN %zu.%zu.%zu fused attention (assumes an sm_80 or newer GPU)",
             v / 10000, v / 100 % 100, v % 100);
}

void cuda_device_memory(int local_rank, size_t *free_b, size_t *total) {
    int n = cuda_device_count();
    if (n < 1) RT_FATAL("device.backend cuda: no CUDA device is visible");
    CUDA_CHECK(cudaSetDevice(local_rank % n));
    CUDA_CHECK(cudaMemGetInfo(free_b, total));
}
