/* adamw: the AdamW update on the GPU, the twin of cpu_adamw.c, on n fp32 values p, g (times gs, the clipping coefficient), m, v,
 * then the bf16 working copy p_bf16 = bf16(p) (nearest even) when one is given. The per-call
 * scalars are formed on the host in double exactly as the CPU forms them; the per-element
 * arithmetic is the CPU's fp32 operations in the CPU's order, written with the _rn intrinsics
 * so that nvcc does not contract them into FMAs: the result is bitwise the CPU's.
 * Grid-stride loop over groups of 8 values (16-byte accesses when every pointer is 16-byte
 * aligned), then the tail one by one. */
#include <math.h>

#include "ops_common.cuh"

using namespace ops;

namespace {

struct adamw_consts {
    float decay, b1, b2, c1, c2, step, bc2_sqrt, eps, gs;
};

__device__ __forceinline__ void adamw_one(float &p, float &m, float &v, float graw,
                                          const adamw_consts &k) {
    const float g = __fmul_rn(graw, k.gs);
    const float pi = __fmul_rn(p, k.decay);
    const float mi = __fadd_rn(__fmul_rn(k.b1, m), __fmul_rn(k.c1, g));
    const float vi = __fadd_rn(__fmul_rn(k.b2, v), __fmul_rn(__fmul_rn(k.c2, g), g));
    m = mi;
    v = vi;
    const float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2_sqrt), k.eps);
    p = __fsub_rn(pi, __fmul_rn(k.step, __fdiv_rn(mi, den)));
}

template <bool V8>
__global__ void adamw_kernel(float *p, bf16 *p_bf16, const float *g, float *m, float *v, int64_t n,
                             adamw_consts k) {
    int64_t done = 0;
    if (V8) {
        const int64_t ng = n / 8;
        for (int64_t q = gtid(); q < ng; q += gstride()) {
            float pp[8], gg[8], mm[8], vv[8];
            load8(p + 8 * q, pp);
            load8(g + 8 * q, gg);
            load8(m + 8 * q, mm);
            load8(v + 8 * q, vv);
#pragma unroll
            for (int j = 0; j < 8; j++) adamw_one(pp[j], mm[j], vv[j], gg[j], k);
            store8(p + 8 * q, pp);
            store8(m + 8 * q, mm);
            store8(v + 8 * q, vv);
            if (p_bf16) store8(p_bf16 + 8 * q, pp);
        }
        done = ng * 8;
    }
    for (int64_t i = done + gtid(); i < n; i += gstride()) {
        float pp = p[i], mm = m[i], vv = v[i];
        adamw_one(pp, mm, vv, g[i], k);
        p[i] = pp;
        m[i] = mm;
        v[i] = vv;
        if (p_bf16) p_bf16[i] = f2bf(pp);
    }
}

} // namespace

extern "C" void cuda_adamw(float *p, rt_bf16 *p_bf16, const float *g, float gs, float *m, float *v, int64_t n,
                           float lr, float b1, float b2, float eps, float wd, float bc1, float bc2,
                           cudaStream_t s) {
    if (n < 0) rt_fatal(__FILE__, __LINE__, "cuda_adamw: bad size n=%lld", (long long)n);
    if (n == 0) return;
    adamw_consts k;
    k.decay = (float)(1.0 - (double)lr * wd);
    k.c1 = (float)(1.0 - (double)b1);
    k.c2 = (float)(1.0 - (double)b2);
    k.step = (float)((double)lr / bc1);
    k.bc2_sqrt = (float)sqrt((double)bc2);
    k.b1 = b1;
    k.b2 = b2;
    k.eps = eps;
    k.gs = gs;
    const bool v8 = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v) &&
                    (!p_bf16 || aligned16(p_bf16));
    const unsigned grid = grid_for(v8 ? n / 8 + 8 : n, kThreads);
    if (v8) adamw_kernel<true><<<grid, kThreads, 0, s>>>(p, (bf16 *)p_bf16, g, m, v, n, k);
    else adamw_kernel<false><<<grid, kThreads, 0, s>>>(p, (bf16 *)p_bf16, g, m, v, n, k);
    CUDA_LAUNCH_CHECK("adamw_kernel");
}
