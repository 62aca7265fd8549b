/* cpu_adamw: the AdamW update of n fp32 values with moments m, v (n), in the order of
 * torch.optim.AdamW (single-tensor, non-amsgrad) on the gradient g * gs (gs: the clipping
 * coefficient, an fp32 product as torch's in-place clip makes it): decoupled weight decay
 * on p, then the moments, then p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps). The
 * per-call scalars are formed in double once; the per-element arithmetic is fp32. */
#include "cpu_ops.h"

#include <math.h>
#include <stdint.h>

#define ADAMW_PAR_MIN 32768 /* values below which the loop stays serial */

void cpu_adamw(float *p, const float *g, float gs, float *m, float *v, int64_t n, float lr, float b1,
               float b2, float eps, float wd, float bc1, float bc2) {
    const float decay = (float)(1.0 - (double)lr * wd);
    const float c1 = (float)(1.0 - (double)b1), c2 = (float)(1.0 - (double)b2);
    const float step = (float)((double)lr / bc1);
    const float bc2_sqrt = (float)sqrt((double)bc2);
/* simd: vectorised (sqrt and division are correctly rounded in every lane, and the build
 * has -fno-math-errno and no FP contraction, so the lanes give the scalar loop's bits) */
#pragma omp parallel for simd schedule(static) if (n >= ADAMW_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * gs;
        float pi = p[i] * decay;
        float mi = b1 * m[i] + c1 * gi;
        float vi = b2 * v[i] + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}
