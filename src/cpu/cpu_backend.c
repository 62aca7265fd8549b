/* cpu_backend: the CPU backend's operation table (host memory, fp32). */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_ops.h"
#include "runtime.h"

static void cpu_free(void *p) { free(p); }
static void *cpu_alloc(size_t bytes, const char *what) { return rt_calloc(1, bytes, what); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }

const struct backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .attn_forward = cpu_attn_forward,
    .attn_delta = cpu_attn_delta,
    .attn_backward = cpu_attn_backward,
    .attn_merge = cpu_attn_merge,
    .xent_forward_backward = cpu_xent_forward_backward,
    .adamw = cpu_adamw,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .add = cpu_add,
};
