/* mlp: the SwiGLU nonlinearity of the Llama MLP on the GPU, out (n) = silu(gate) * up, and
 * its backward (overwrites dgate, dup), the twin of cpu_mlp.c; bf16 tensors of n = T * F
 * values, fp32 arithmetic with the CPU's stable sigmoid (expf of a non-positive number),
 * one rounding per output. Grid-stride loops over groups of 8 values (16-byte accesses when
 * every pointer is 16-byte aligned), then the tail one by one. */
#include "ops_common.cuh"

using namespace ops;

namespace {

__device__ __forceinline__ float sigmoid(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    const float e = expf(z);
    return e / (1.0f + e);
}

__device__ __forceinline__ float swiglu(float g, float u) { return g * sigmoid(g) * u; }

/* d silu(g)/dg = s + g s (1 - s), s = sigmoid(g). */
__device__ __forceinline__ void swiglu_grad(float dy, float g, float u, float *dg, float *du) {
    const float s = sigmoid(g);
    *dg = dy * u * (s * (1.0f + g * (1.0f - s)));
    *du = dy * (g * s);
}

template <bool V8>
__global__ void swiglu_fwd_kernel(bf16 *out, const bf16 *gate, const bf16 *up, int64_t n) {
    int64_t done = 0;
    if (V8) {
        const int64_t ng = n / 8;
        for (int64_t k = gtid(); k < ng; k += gstride()) {
            float g[8], u[8];
            load8(gate + 8 * k, g);
            load8(up + 8 * k, u);
#pragma unroll
            for (int j = 0; j < 8; j++) g[j] = swiglu(g[j], u[j]);
            store8(out + 8 * k, g);
        }
        done = ng * 8;
    }
    for (int64_t i = done + gtid(); i < n; i += gstride())
        out[i] = f2bf(swiglu(bf2f(gate[i]), bf2f(up[i])));
}

template <bool V8>
__global__ void swiglu_bwd_kernel(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate,
                                  const bf16 *up, int64_t n) {
    int64_t done = 0;
    if (V8) {
        const int64_t ng = n / 8;
        for (int64_t k = gtid(); k < ng; k += gstride()) {
            float dy[8], g[8], u[8], dg[8], du[8];
            load8(dout + 8 * k, dy);
            load8(gate + 8 * k, g);
            load8(up + 8 * k, u);
#pragma unroll
            for (int j = 0; j < 8; j++) swiglu_grad(dy[j], g[j], u[j], &dg[j], &du[j]);
            store8(dgate + 8 * k, dg);
            store8(dup + 8 * k, du);
        }
        done = ng * 8;
    }
    for (int64_t i = done + gtid(); i < n; i += gstride()) {
        float dg, du;
        swiglu_grad(bf2f(dout[i]), bf2f(gate[i]), bf2f(up[i]), &dg, &du);
        dgate[i] = f2bf(dg);
        dup[i] = f2bf(du);
    }
}

} // namespace

extern "C" void cuda_swiglu_forward(rt_bf16 *out, const rt_bf16 *gate, const rt_bf16 *up,
                                    int64_t n, cudaStream_t s) {
    if (n < 0) rt_fatal(__FILE__, __LINE__, "cuda_swiglu_forward: bad size n=%lld", (long long)n);
    if (n == 0) return;
    const bool v8 = aligned16(out) && aligned16(gate) && aligned16(up);
    const unsigned grid = grid_for(v8 ? n / 8 + 8 : n, kThreads);
    if (v8) swiglu_fwd_kernel<true><<<grid, kThreads, 0, s>>>((bf16 *)out, (const bf16 *)gate, (const bf16 *)up, n);
    else swiglu_fwd_kernel<false><<<grid, kThreads, 0, s>>>((bf16 *)out, (const bf16 *)gate, (const bf16 *)up, n);
    CUDA_LAUNCH_CHECK("swiglu_fwd_kernel");
}

extern "C" void cuda_swiglu_backward(rt_bf16 *dgate, rt_bf16 *dup, const rt_bf16 *dout,
                                     const rt_bf16 *gate, const rt_bf16 *up, int64_t n,
                                     cudaStream_t s) {
    if (n < 0) rt_fatal(__FILE__, __LINE__, "cuda_swiglu_backward: bad size n=%lld", (long long)n);
    if (n == 0) return;
    const bool v8 = aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) &&
                    aligned16(up);
    const unsigned grid = grid_for(v8 ? n / 8 + 8 : n, kThreads);
    bf16 *dg = (bf16 *)dgate, *du = (bf16 *)dup;
    const bf16 *dy = (const bf16 *)dout, *g = (const bf16 *)gate, *u = (const bf16 *)up;
    if (v8) swiglu_bwd_kernel<true><<<grid, kThreads, 0, s>>>(dg, du, dy, g, u, n);
    else swiglu_bwd_kernel<false><<<grid, kThreads, 0, s>>>(dg, du, dy, g, u, n);
    CUDA_LAUNCH_CHECK("swiglu_bwd_kernel");
}
