/* xent: lm_head + cross-entropy on the GPU, fused and chunked over tokens, the twin of
 * cpu_xent.c. x (T, d) bf16, w (V, d) bf16, labels (T) int32 (< 0: ignored), dx (T, d) bf16
 * +=, dw (V, d) fp32 +=, *loss one device double +=.
 * Per chunk of c tokens:
 *   1. logits (c, V) fp32 = x_chunk @ w^T            cuBLASLt (ops::gemm), into scratch
 *   2. one block per row: online max / sum of exp in fp32 (fixed-order reductions), lse,
 *      row loss lse - logit[y] in double; when training dlogits = (softmax - onehot) *
 *      grad_scale rounded to bf16 into scratch (a zero row for an ignored label)
 *      (and, on request, the row loss into tok_loss and the row's argmax into tok_pred)
 *   3. one block adds the c row losses (double, fixed tree) to *loss: deterministic
 *   4. dx_chunk += dlogits @ w, dw += dlogits^T @ x_chunk   cuda_matmul_backward
 * Scratch (cuda_xent_scratch): logits c*V fp32 | dlogits c*V bf16 | row losses c doubles,
 * each part 256-byte aligned. Nothing of size (T, V) exists. */
#include <assert.h>

#include "ops_common.cuh"

using namespace ops;

namespace {

size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

/* (m, s): running max and sum of exp(v - m); merge of two such pairs. */
__device__ __forceinline__ void ms_add(float &m, float &s, float v) {
    if (v > m) {
        s = s * expf(m - v) + 1.0f; /* m = -inf at first: expf(-inf) = 0 */
        m = v;
    } else {
        s += expf(v - m);
    }
}

__device__ __forceinline__ void ms_merge(float &m, float &s, float m2, float s2) {
    const float mm = fmaxf(m, m2);
    if (mm == -INFINITY) return; /* both empty */
    s = s * expf(m - mm) + s2 * expf(m2 - mm);
    m = mm;
}

/* (v, i): the larger value, of equal ones the smaller index (a NaN never wins). */
__device__ __forceinline__ void arg_merge(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) {
        v = v2;
        i = i2;
    }
}

/* pred[t] = the index of the row's largest logit (the first of equal ones). */
__device__ void row_argmax(const float *lg, int V, int32_t *pred) {
    __shared__ float shv[32];
    __shared__ int shi[32];
    float v = -INFINITY;
    int i = V; /* no candidate yet: an index no real one loses to */
    for (int j = threadIdx.x; j < V; j += blockDim.x) arg_merge(v, i, lg[j], j);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
        const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
        arg_merge(v, i, v2, i2);
    }
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) {
        shv[wid] = v;
        shi[wid] = i;
    }
    __syncthreads();
    v = lane < nw ? shv[lane] : -INFINITY;
    i = lane < nw ? shi[lane] : V;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
        const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
        arg_merge(v, i, v2, i2);
    }
    if (threadIdx.x == 0) *pred = i < V ? i : 0; /* every logit NaN or -inf: 0, as the CPU */
}

template <bool V4>
__global__ void xent_row_kernel(const float *logits, bf16 *dlogits, double *row_loss, double *tok_loss,
                                int32_t *tok_pred, const int32_t *labels, int V, float grad_scale, int train) {
    __shared__ float shm[32], shs[32];
    const int64_t t = blockIdx.x;
    const float *lg = logits + t * V;
    const int y = labels[t];
    assert(y < V); /* a label outside the vocabulary is a data error */
    float m = -INFINITY, s = 0.0f;
    if (V4) {
        const float4 *lg4 = reinterpret_cast<const float4 *>(lg);
        for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
            const float4 v = lg4[j];
            ms_add(m, s, v.x);
            ms_add(m, s, v.y);
            ms_add(m, s, v.z);
            ms_add(m, s, v.w);
        }
    } else {
        for (int j = threadIdx.x; j < V; j += blockDim.x) ms_add(m, s, lg[j]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_merge(m, s, m2, s2);
    }
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) {
        shm[wid] = m;
        shs[wid] = s;
    }
    __syncthreads();
    m = lane < nw ? shm[lane] : -INFINITY;
    s = lane < nw ? shs[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_merge(m, s, m2, s2);
    }
    const double lse = (double)m + log((double)s);
    if (threadIdx.x == 0) {
        row_loss[t] = y < 0 ? 0.0 : lse - (double)lg[y];
        if (tok_loss) tok_loss[t] = row_loss[t];
    }
    if (tok_pred) row_argmax(lg, V, tok_pred + t);
    if (!train) return;
    bf16 *dl = dlogits + t * V;
    const float lsef = (float)lse, zero = y < 0 ? 0.0f : 1.0f;
    if (V4) {
        const float4 *lg4 = reinterpret_cast<const float4 *>(lg);
        for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
            const float4 v = lg4[j];
            float p[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int q = 0; q < 4; q++) {
                p[q] = zero * expf(p[q] - lsef) * grad_scale;
                if (4 * j + q == y) p[q] -= grad_scale;
            }
            uint2 u;
            __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
            h[0] = __floats2bfloat162_rn(p[0], p[1]);
            h[1] = __floats2bfloat162_rn(p[2], p[3]);
            reinterpret_cast<uint2 *>(dl)[j] = u;
        }
    } else {
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            float p = zero * expf(lg[j] - lsef) * grad_scale;
            if (j == y) p -= grad_scale;
            dl[j] = f2bf(p);
        }
    }
}

/* *loss += sum of row_loss[0, n), in a fixed order. One block. */
__global__ void xent_loss_sum_kernel(double *loss, const double *row_loss, int n) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += row_loss[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) *loss += s;
}

} // namespace

extern "C" size_t cuda_xent_scratch(int chunk, int V) {
    if (chunk <= 0 || V <= 0) return 0;
    const size_t cv = (size_t)chunk * V;
    return align256(cv * sizeof(float)) + align256(cv * sizeof(bf16)) +
           align256((size_t)chunk * sizeof(double));
}

extern "C" void cuda_xent(struct cuda_blas *b, double *loss, double *tok_loss, int32_t *tok_pred, rt_bf16 *dx,
                          float *dw,
                          const rt_bf16 *x, const rt_bf16 *w, const int32_t *labels, int T, int d,
                          int V, float grad_scale, int chunk, void *scratch, cudaStream_t s) {
    if (T < 0 || d <= 0 || V <= 0)
        rt_fatal(__FILE__, __LINE__, "cuda_xent: bad shape T=%d d=%d V=%d", T, d, V);
    if (T == 0) return;
    if (!scratch) rt_fatal(__FILE__, __LINE__, "cuda_xent: no scratch");
    if (chunk <= 0 || chunk > T) chunk = T;
    const size_t cv = (size_t)chunk * V;
    float *logits = (float *)scratch;
    bf16 *dlogits = (bf16 *)((char *)scratch + align256(cv * sizeof(float)));
    double *row_loss =
        (double *)((char *)scratch + align256(cv * sizeof(float)) + align256(cv * sizeof(bf16)));
    const bool v4 = V % 4 == 0;
    int th = ((v4 ? V / 4 : V) + 31) / 32 * 32;
    th = th > 1024 ? 1024 : th;
    const bf16 *wb = (const bf16 *)w;
    for (int c0 = 0; c0 < T; c0 += chunk) {
        const int n = T - c0 < chunk ? T - c0 : chunk;
        const bf16 *xc = (const bf16 *)x + (int64_t)c0 * d;
        /* logits^T (V, n) = op_T(w: d x V, ld d) xc^T (d x n, ld d) */
        gemm(b, true, false, V, n, d, wb, d, xc, d, 0.0f, logits, true, V, s);
        double *tl = tok_loss ? tok_loss + c0 : NULL;
        int32_t *tp = tok_pred ? tok_pred + c0 : NULL;
        if (v4)
            xent_row_kernel<true><<<n, th, 0, s>>>(logits, dlogits, row_loss, tl, tp, labels + c0, V, grad_scale,
                                                   dx != NULL);
        else
            xent_row_kernel<false><<<n, th, 0, s>>>(logits, dlogits, row_loss, tl, tp, labels + c0, V, grad_scale,
                                                    dx != NULL);
        CUDA_LAUNCH_CHECK("xent_row_kernel");
        xent_loss_sum_kernel<<<1, 256, 0, s>>>(loss, row_loss, n);
        CUDA_LAUNCH_CHECK("xent_loss_sum_kernel");
        if (dx)
            cuda_matmul_backward(b, dx + (int64_t)c0 * d, dw, (const rt_bf16 *)dlogits,
                                 (const rt_bf16 *)xc, w, n, d, V, s);
    }
}
