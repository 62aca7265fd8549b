/* attn_mma: the device building blocks shared by the attention kernels (attn_fwd.cu,
 * attn_bwd.cu): 16-byte cp.async with zero fill, ldmatrix (plain and transposed), the
 * bf16 tensor-core product mma.m16n8k16 with fp32 accumulation, bf16 packing, exp2, and the
 * host-side shape check. Portable to sm_80 (no Hopper-only instruction).
 *
 * Fragment layouts of mma.m16n8k16 (lane = 4 * grp + tig, grp = lane >> 2, tig = lane & 3):
 *   A (16x16, row-major)  a0 (grp, 2tig..+1)  a1 (grp+8, 2tig..)  a2 (grp, 2tig+8..)  a3 (grp+8, 2tig+8..)
 *   B (16x8, k x n)       b0 (k = 2tig..+1, n = grp)  b1 (k = 2tig+8..+1, n = grp)
 *   C (16x8, fp32)        c0,c1 (grp, 2tig..+1)  c2,c3 (grp+8, 2tig..+1)
 * C fragments of two neighbouring n-tiles are, packed to bf16, the A fragment of the next
 * product (the P of attention never leaves the registers).
 * Shared tiles are row-major bf16 with a row stride of (row length + 8) elements: rows land
 * 16 bytes apart in the 128-byte bank cycle, so the 8 row addresses of an ldmatrix phase hit
 * distinct banks. */
#ifndef RT_ATTN_MMA_CUH
#define RT_ATTN_MMA_CUH

#include <cuda_bf16.h>
#include <stdint.h>
#include <stdlib.h>

#include "cuda_check.h"

namespace attn {

typedef __nv_bfloat16 bf16;

/* log2(e) and ln(2): scores are kept in base-2 units with the 1/sqrt(D) scale folded in. */
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, bypassing L1; valid == false writes 16 zero bytes (src unread). */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}

/* 4 bytes global -> shared (lse, delta); valid == false writes zero. */
__device__ __forceinline__ void cp_async4(uint32_t dst, const void *src, bool valid) {
    int n = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }

/* Four 8x8 bf16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, register i
 * receives matrix i: (row lane/4, cols 2(lane%4)..+1), or transposed with _t. */
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* c (16x8 fp32) += a (16x16 bf16) b (16x8 bf16). */
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats -> bf16x2 (round to nearest even), lo in the low half (the lower column). */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* 2^x (hardware approximation, ~2 ulp; 2^-inf = 0). */
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* Where lane points its ldmatrix.x4 row address, inside a 16x16 block of a row-major tile.
 * Pattern "m" (matrices ordered: rows 0-7 | rows 8-15 | cols +8 rows 0-7 | cols +8 rows 8-15):
 *   row lane & 15, col (lane >> 4) * 8. Gives
 *   - non-transposed: the A fragment of a row-major X[m][k] block;
 *   - transposed: the B fragments of two n-tiles from Z[k][n] (B = Z): b0, b1 of n0, b0, b1 of n0+8.
 * Pattern "n" (matrices ordered: cols 0-7 | cols 8-15 | rows +8 cols 0-7 | rows +8 cols 8-15):
 *   row (lane & 7) + (lane >> 4) * 8, col ((lane >> 3) & 1) * 8. Gives
 *   - non-transposed: the B fragments of two n-tiles from Y[n][k] (B = Y^T);
 *   - transposed: the A fragment from W[k][m] (A = W^T). */
__device__ __forceinline__ int lm_row_m(int lane) { return lane & 15; }
__device__ __forceinline__ int lm_col_m(int lane) { return (lane >> 4) * 8; }
__device__ __forceinline__ int lm_row_n(int lane) { return (lane & 7) + (lane >> 4) * 8; }
__device__ __forceinline__ int lm_col_n(int lane) { return ((lane >> 3) & 1) * 8; }

} // namespace attn

/* Host side: the shape rules shared by the forward and the backward (as cpu_attn). */
static inline void attn_check_shape(const char *fn, int Tq, int Tk, int H, int Hkv, int D,
                                    int causal, int ld) {
    if (Tq < 0 || Tk < 0 || H <= 0 || Hkv <= 0 || H % Hkv != 0 || D <= 0 || D > 256 ||
        (causal && Tq != Tk) || ld < Tq)
        rt_fatal(__FILE__, __LINE__,
                 "%s: bad shape Tq=%d Tk=%d H=%d Hkv=%d D=%d causal=%d ld=%d (need H %% Hkv == 0, "
                 "0 < D <= 256, ld >= Tq, Tq == Tk when causal)",
                 fn, Tq, Tk, H, Hkv, D, causal, ld);
}

/* Tile-shape variant of the tensor-core kernels, from the environment (0, the default, when
 * unset): a tuning knob for test/gpu/bench_attn and test/gpu/test_attn, not a setting. */
static inline int attn_variant(const char *name, int n) {
    const char *e = getenv(name);
    int v = e ? atoi(e) : 0;
    return v >= 0 && v < n ? v : 0;
}

/* Whether a kernel needing `bytes` of dynamic shared memory (per block) can run on the current
 * device (227 KB on Hopper, 163 KB on A100, 99 KB on consumer parts). */
static inline int attn_smem_fits(size_t bytes) {
    int dev = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    return bytes <= (size_t)optin;
}

static inline int attn_aligned(const void *p, unsigned bytes) {
    return ((uintptr_t)p % bytes) == 0;
}

#endif
