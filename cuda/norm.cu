/* norm: RMSNorm (HF LlamaRMSNorm) on the GPU, the twin of cpu_norm.c. x, out, dout, dx (T, d)
 * bf16, weight w (d) bf16, rstd (T) fp32 (saved by the forward), dw (d) fp32.
 * Forward and the dx part of the backward: one block per row (sum of squares / dot product
 * as a fixed-order block reduction in fp32). dw: the rows are cut into P parts (a function
 * of T only); part p sums g * x * rstd over its rows per column into scratch (P, d), then one
 * thread per column adds the P partial sums in part order into dw: deterministic, no atomics.
 * One part (small T) adds into dw directly. Rows of d % 8 == 0 with 16-byte aligned bases
 * take 16-byte loads. */
#include "ops_common.cuh"

using namespace ops;

namespace {

constexpr int kMaxParts = 256;   /* partial sums of dw */
constexpr int kRowsPerPart = 32; /* fewest rows per part before P grows */

int dw_parts(int T) {
    int p = (T + kRowsPerPart - 1) / kRowsPerPart;
    return p < kMaxParts ? p : kMaxParts;
}

int row_threads(int d, bool v8) {
    int work = v8 ? d / 8 : d;
    int t = (work + 31) / 32 * 32;
    return t < 32 ? 32 : t > 256 ? 256 : t;
}

template <bool V8>
__global__ void rmsnorm_fwd_kernel(bf16 *out, float *rstd, const bf16 *x, const bf16 *w, int d,
                                   float eps) {
    __shared__ float sh[32];
    const int64_t t = blockIdx.x;
    const bf16 *xr = x + t * d;
    bf16 *orow = out + t * d;
    float ss = 0.0f;
    if (V8) {
        for (int i = threadIdx.x * 8; i < d; i += blockDim.x * 8) {
            float f[8];
            load8(xr + i, f);
#pragma unroll
            for (int j = 0; j < 8; j++) ss = fmaf(f[j], f[j], ss);
        }
    } else {
        for (int i = threadIdx.x; i < d; i += blockDim.x) {
            float v = bf2f(xr[i]);
            ss = fmaf(v, v, ss);
        }
    }
    ss = block_sum(ss, sh);
    const float r = (float)(1.0 / sqrt((double)ss / d + (double)eps));
    if (threadIdx.x == 0) rstd[t] = r;
    if (V8) {
        for (int i = threadIdx.x * 8; i < d; i += blockDim.x * 8) {
            float f[8], g[8];
            load8(xr + i, f);
            load8(w + i, g);
#pragma unroll
            for (int j = 0; j < 8; j++) f[j] = g[j] * (f[j] * r);
            store8(orow + i, f);
        }
    } else {
        for (int i = threadIdx.x; i < d; i += blockDim.x) orow[i] = f2bf(bf2f(w[i]) * (bf2f(xr[i]) * r));
    }
}

/* dx_j += r w_j g_j - (r^3 / d) x_j sum_i g_i w_i x_i */
template <bool V8>
__global__ void rmsnorm_bwd_dx_kernel(bf16 *dx, const bf16 *dout, const bf16 *x, const bf16 *w,
                                      const float *rstd, int d) {
    __shared__ float sh[32];
    const int64_t t = blockIdx.x;
    const bf16 *xr = x + t * d, *gr = dout + t * d;
    bf16 *dr = dx + t * d;
    float dot = 0.0f;
    if (V8) {
        for (int i = threadIdx.x * 8; i < d; i += blockDim.x * 8) {
            float xv[8], gv[8], wv[8];
            load8(xr + i, xv);
            load8(gr + i, gv);
            load8(w + i, wv);
#pragma unroll
            for (int j = 0; j < 8; j++) dot = fmaf(gv[j] * wv[j], xv[j], dot);
        }
    } else {
        for (int i = threadIdx.x; i < d; i += blockDim.x)
            dot = fmaf(bf2f(gr[i]) * bf2f(w[i]), bf2f(xr[i]), dot);
    }
    dot = block_sum(dot, sh);
    const float r = rstd[t], c = r * r * r * dot / (float)d;
    if (V8) {
        for (int i = threadIdx.x * 8; i < d; i += blockDim.x * 8) {
            float xv[8], gv[8], wv[8], dv[8];
            load8(xr + i, xv);
            load8(gr + i, gv);
            load8(w + i, wv);
            load8(dr + i, dv);
#pragma unroll
            for (int j = 0; j < 8; j++) dv[j] += r * wv[j] * gv[j] - c * xv[j];
            store8(dr + i, dv);
        }
    } else {
        for (int i = threadIdx.x; i < d; i += blockDim.x)
            dr[i] = f2bf(bf2f(dr[i]) + (r * bf2f(w[i]) * bf2f(gr[i]) - c * bf2f(xr[i])));
    }
}

/* Part blockIdx.y of P: column sums of g * x * r over its rows, into part (P, d) of scratch,
 * or added into dw when P == 1. Thread: 8 columns (V8) or one. */
template <bool V8>
__global__ void rmsnorm_bwd_dw_kernel(float *dst, int add, const bf16 *dout, const bf16 *x,
                                      const float *rstd, int T, int d, int rows_per_part) {
    const int64_t c = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * (V8 ? 8 : 1);
    if (c >= d) return;
    const int t0 = blockIdx.y * rows_per_part, t1 = min(T, t0 + rows_per_part);
    float *o = dst + (int64_t)blockIdx.y * d + c; /* add: P == 1, y == 0 */
    if (V8) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int t = t0; t < t1; t++) {
            float xv[8], gv[8];
            load8(x + (int64_t)t * d + c, xv);
            load8(dout + (int64_t)t * d + c, gv);
            const float r = rstd[t];
#pragma unroll
            for (int j = 0; j < 8; j++) acc[j] = fmaf(gv[j] * xv[j], r, acc[j]);
        }
        if (add) {
            float cur[8];
            load8(o, cur);
#pragma unroll
            for (int j = 0; j < 8; j++) cur[j] += acc[j];
            store8(o, cur);
        } else {
            store8(o, acc);
        }
    } else {
        float acc = 0.0f;
        for (int t = t0; t < t1; t++)
            acc = fmaf(bf2f(dout[(int64_t)t * d + c]) * bf2f(x[(int64_t)t * d + c]), rstd[t], acc);
        if (add) *o += acc;
        else *o = acc;
    }
}

/* dw[i] += sum over parts p (in order) of part[p][i]. */
__global__ void rmsnorm_dw_final_kernel(float *dw, const float *part, int P, int d) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= d) return;
    float s = 0.0f;
    for (int p = 0; p < P; p++) s += part[(int64_t)p * d + i];
    dw[i] += s;
}

} // namespace

extern "C" size_t cuda_rmsnorm_scratch(int T, int d) {
    if (T <= 0 || d <= 0) return 0;
    int P = dw_parts(T);
    return P > 1 ? (size_t)P * d * sizeof(float) : 0;
}

extern "C" void cuda_rmsnorm_forward(rt_bf16 *out, float *rstd, const rt_bf16 *x, const rt_bf16 *w,
                                     int T, int d, float eps, cudaStream_t s) {
    if (T < 0 || d <= 0)
        rt_fatal(__FILE__, __LINE__, "cuda_rmsnorm_forward: bad shape T=%d d=%d", T, d);
    if (T == 0) return;
    const bool v8 = d % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w);
    const int th = row_threads(d, v8);
    bf16 *o = (bf16 *)out;
    const bf16 *xx = (const bf16 *)x, *ww = (const bf16 *)w;
    if (v8) rmsnorm_fwd_kernel<true><<<T, th, 0, s>>>(o, rstd, xx, ww, d, eps);
    else rmsnorm_fwd_kernel<false><<<T, th, 0, s>>>(o, rstd, xx, ww, d, eps);
    CUDA_LAUNCH_CHECK("rmsnorm_fwd_kernel");
}

extern "C" void cuda_rmsnorm_backward(rt_bf16 *dx, float *dw, const rt_bf16 *dout, const rt_bf16 *x,
                                      const rt_bf16 *w, const float *rstd, int T, int d,
                                      float *scratch, cudaStream_t s) {
    if (T < 0 || d <= 0)
        rt_fatal(__FILE__, __LINE__, "cuda_rmsnorm_backward: bad shape T=%d d=%d", T, d);
    if (T == 0) return;
    const bf16 *g = (const bf16 *)dout, *xx = (const bf16 *)x, *ww = (const bf16 *)w;
    const bool v8 = d % 8 == 0 && aligned16(dx) && aligned16(dout) && aligned16(x) && aligned16(w);
    const int th = row_threads(d, v8);
    if (v8) rmsnorm_bwd_dx_kernel<true><<<T, th, 0, s>>>((bf16 *)dx, g, xx, ww, rstd, d);
    else rmsnorm_bwd_dx_kernel<false><<<T, th, 0, s>>>((bf16 *)dx, g, xx, ww, rstd, d);
    CUDA_LAUNCH_CHECK("rmsnorm_bwd_dx_kernel");

    const int P = dw_parts(T), rpp = (T + P - 1) / P;
    if (P > 1 && !scratch)
        rt_fatal(__FILE__, __LINE__,
                 "cuda_rmsnorm_backward: T=%d d=%d needs %zu bytes of scratch, got NULL", T, d,
                 cuda_rmsnorm_scratch(T, d));
    const bool w8 = d % 8 == 0 && aligned16(dout) && aligned16(x) && aligned16(dw) &&
                    (P == 1 || aligned16(scratch));
    const int cols = w8 ? d / 8 : d, cth = 128;
    dim3 grid((unsigned)((cols + cth - 1) / cth), (unsigned)P);
    float *dst = P > 1 ? scratch : dw;
    if (w8) rmsnorm_bwd_dw_kernel<true><<<grid, cth, 0, s>>>(dst, P == 1, g, xx, rstd, T, d, rpp);
    else rmsnorm_bwd_dw_kernel<false><<<grid, cth, 0, s>>>(dst, P == 1, g, xx, rstd, T, d, rpp);
    CUDA_LAUNCH_CHECK("rmsnorm_bwd_dw_kernel");
    if (P > 1) {
        rmsnorm_dw_final_kernel<<<(d + 255) / 256, 256, 0, s>>>(dw, scratch, P, d);
        CUDA_LAUNCH_CHECK("rmsnorm_dw_final_kernel");
    }
}
