/* cpu_mlp: the SwiGLU nonlinearity of the Llama MLP, out (n) = silu(gate) * up, and its
 * backward; elementwise over n = T * F values. */
#include "cpu_ops.h"

#include <math.h>
#include <stdint.h>

#define MLP_PAR_MIN 32768 /* elements below which the loops stay serial */

static inline float sigmoidf_(float z) {
    /* stable both ways: exp of a non-positive number only */
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

void cpu_swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= MLP_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g * sigmoidf_(g) * up[i];
    }
}

/* d silu(g)/dg = s + g s (1 - s), s = sigmoid(g). */
void cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= MLP_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], s = sigmoidf_(g), dy = dout[i];
        dgate[i] = dy * up[i] * (s * (1.0f + g * (1.0f - s)));
        dup[i] = dy * (g * s);
    }
}
