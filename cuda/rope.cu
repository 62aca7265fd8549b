/* rope: rotary position embedding on the GPU, in place on x (T, nh, D) bf16, HF rotate-half
 * layout (pairs (i, i + D/2)), the twin of cpu_rope.c. pos (T) int64 global positions,
 * inv_freq (D/2) double. One thread per (token, pair): the angle pos * inv_freq, its cos
 * and sin and the rotation are in double (positions reach 1e6 and beyond, where an fp32
 * angle would be off by radians), both multiplied by scale (the attention factor, rope.h, as
 * HF multiplies cos and sin), then the token's nh heads are rotated and rounded once to bf16.
 * The backward (the transpose) is the rotation by the opposite angle with the same scale. */
#include "ops_common.cuh"

using namespace ops;

namespace {

__global__ void rope_kernel(bf16 *x, const int64_t *pos, const double *inv_freq, double scale, int T,
                            int nh, int D, double sign) {
    const int half = D / 2;
    const int64_t n = (int64_t)T * half;
    for (int64_t idx = gtid(); idx < n; idx += gstride()) {
        const int64_t t = idx / half;
        const int i = (int)(idx - t * half);
        const double a = (double)pos[t] * inv_freq[i];
        double sn, cs;
        sincos(a, &sn, &cs);
        sn *= sign * scale;
        cs *= scale;
        bf16 *xt = x + t * nh * D + i;
        for (int h = 0; h < nh; h++, xt += D) {
            const double x1 = bf2f(xt[0]), x2 = bf2f(xt[half]);
            xt[0] = __double2bfloat16(x1 * cs - x2 * sn);
            xt[half] = __double2bfloat16(x2 * cs + x1 * sn);
        }
    }
}

void rope(const char *fn, rt_bf16 *x, const int64_t *pos, const double *inv_freq, double scale, int T,
          int nh, int D, double sign, cudaStream_t s) {
    if (T < 0 || nh <= 0 || D <= 0 || D % 2)
        rt_fatal(__FILE__, __LINE__, "%s: bad shape T=%d nh=%d D=%d", fn, T, nh, D);
    if (T == 0) return;
    const int64_t work = (int64_t)T * (D / 2);
    rope_kernel<<<grid_for(work, kThreads), kThreads, 0, s>>>((bf16 *)x, pos, inv_freq, scale, T, nh,
                                                             D, sign);
    CUDA_LAUNCH_CHECK("rope_kernel");
}

} // namespace

extern "C" void cuda_rope_forward(rt_bf16 *x, const int64_t *pos, const double *inv_freq, double scale,
                                  int T, int nh, int D, cudaStream_t s) {
    rope("cuda_rope_forward", x, pos, inv_freq, scale, T, nh, D, 1.0, s);
}

extern "C" void cuda_rope_backward(rt_bf16 *dx, const int64_t *pos, const double *inv_freq, double scale,
                                   int T, int nh, int D, cudaStream_t s) {
    rope("cuda_rope_backward", dx, pos, inv_freq, scale, T, nh, D, -1.0, s);
}
