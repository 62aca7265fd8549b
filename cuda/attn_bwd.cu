/* attn_bwd: block attention backward on the GPU (cuda_attn_backward), given the final lse and
 * delta = rowsum(dO * O) of the rows. q, dout (Tq, H, D), k, v (Tk, Hkv, D) bf16; dq (Tq, H, D),
 * dk, dv (Tk, Hkv, D) fp32, all accumulated (+=); lse, delta (H, ld) fp32.
 *
 * Tensor-core kernel (D = 64, 128), flash-attention-2 style: one CTA per (kv head g, tile of
 * BN = 16 NW keys); warp w owns key rows [16w, 16w+16) of the tile and keeps their dK and dV
 * in fp32 registers for the whole CTA. K and V stay in shared memory; the CTA walks the query
 * tiles (BM rows) of every head of the group (GQA without expanding K/V, and without atomics
 * on dK/dV), with Q, dO, lse and delta of the next tile loading (cp.async) while the current
 * one is computed. Per query tile, each warp computes on mma.m16n8k16:
 *   S^T = K_w Q^T, P^T = exp2(S^T scale log2e - lse log2e)   (recomputed, never stored)
 *   dV_w += P^T dO                                           (P^T to bf16 from the registers)
 *   dP^T = V_w dO^T, dS^T = P^T (dP^T - delta)
 *   dK_w += dS^T Q                                           (dS^T to bf16 from the registers)
 * then dS^T goes to shared memory (bf16) and the CTA computes dQ_tile = dS K over its keys and
 * adds scale * dQ_tile to the caller's dq with fp32 atomics (float2 on sm_90). With PIPE (the
 * default) that dQ product runs one step late, right after the next step's barrier, from a
 * second dS^T buffer: one barrier per query tile instead of two. At the end dk
 * += scale dK, dv += dV, a plain read-modify-write: each CTA owns its (key rows, kv head).
 * Causal: query tiles entirely above the diagonal are skipped, the diagonal ones masked.
 * dk, dv are bitwise deterministic; dq's atomics make its last bits depend on timing.
 * SIMT kernels (any D <= 256): dq with one warp per (query row, head), dk/dv with one warp
 * per (key row, kv head) looping over the group's heads; deterministic. */
#include "attn_mma.cuh"
#include "cuda_attn.h"

#include <math.h>

namespace attn {

struct BwdArgs {
    float *dq, *dk, *dv;
    const bf16 *dout, *q, *k, *v;
    const float *lse, *delta;
    int ld, Tq, Tk, H, Hkv, causal;
    float scale, scale_log2;
    int kmajor; /* grid order: 0 = (kv head, key tile), heads fastest; 1 = (key tile, kv head) */
};

template <int D, int BM, int NW, bool PIPE>
struct BwdTile {
    static constexpr int BN = 16 * NW; /* key rows per CTA */
    static constexpr int THREADS = 32 * NW;
    static constexpr int LDS = D + 8;  /* row stride of the K, V, Q, dO tiles (elements) */
    static constexpr int LDP = BM + 8; /* row stride of the dS^T tile */
    static constexpr size_t SMEM = (size_t)(2 * BN + 4 * BM) * LDS * sizeof(bf16) /* K V 2x(Q dO) */
                                   + (size_t)(PIPE ? 2 : 1) * BN * LDP * sizeof(bf16) /* dS^T */
                                   + (size_t)4 * BM * sizeof(float);             /* 2x(lse delta) */
    /* dQ = dS K: warps tile (BM x D) as WR rows of 16 x WC column blocks of DC */
    static constexpr int WR = BM / 16, WC = NW / WR, DC = D / WC;
    static_assert(NW % WR == 0 && D % (16 * WC) == 0, "dQ warp tiling");
};

template <int D, int BM, int NW, bool PIPE>
__global__ void __launch_bounds__(32 * NW, 1) attn_bwd_mma(BwdArgs a) {
    typedef BwdTile<D, BM, NW, PIPE> C;
    constexpr int BN = C::BN, LDS = C::LDS, LDP = C::LDP, CH = D / 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *sK = reinterpret_cast<bf16 *>(smem_raw);
    bf16 *sV = sK + BN * LDS;
    bf16 *sQ = sV + BN * LDS;     /* two buffers of BM rows */
    bf16 *sdO = sQ + 2 * BM * LDS; /* two buffers */
    bf16 *sdS = sdO + 2 * BM * LDS; /* PIPE: two buffers */
    float *sL = reinterpret_cast<float *>(sdS + (PIPE ? 2 : 1) * BN * LDP); /* two buffers of BM lse */
    float *sDl = sL + 2 * BM;                              /* two buffers of BM delta */

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = a.kmajor ? (int)blockIdx.y : (int)blockIdx.x;
    const int k0 = (a.kmajor ? (int)blockIdx.x : (int)blockIdx.y) * BN, grp = a.H / a.Hkv;
    const size_t qs = (size_t)a.H * D, ks = (size_t)a.Hkv * D;
    const int nqt = (a.Tq + BM - 1) / BM;
    const int i_first = a.causal ? k0 / BM : 0; /* earlier query tiles see none of the keys */
    const int per_head = nqt - i_first, n_it = grp * per_head;

    {   /* K, V tile */
        const int rows = min(BN, a.Tk - k0);
        for (int i = tid; i < BN * CH; i += C::THREADS) {
            int r = i / CH, c = (i % CH) * 8;
            bool ok = r < rows;
            size_t off = ok ? (size_t)(k0 + r) * ks + (size_t)g * D + c : 0;
            cp_async16(smem_u32(sK + r * LDS + c), a.k + off, ok);
            cp_async16(smem_u32(sV + r * LDS + c), a.v + off, ok);
        }
    }
    /* Query tile `it` of the CTA's sequence: head g*grp + it / per_head, tile i_first + it % per_head. */
    auto load_q = [&](int it, int buf) {
        const int h = g * grp + it / per_head, q0 = (i_first + it % per_head) * BM;
        const int rows = min(BM, a.Tq - q0);
        bf16 *dq = sQ + buf * BM * LDS, *ddo = sdO + buf * BM * LDS;
        for (int i = tid; i < BM * CH; i += C::THREADS) {
            int r = i / CH, c = (i % CH) * 8;
            bool ok = r < rows;
            size_t off = ok ? (size_t)(q0 + r) * qs + (size_t)h * D + c : 0;
            cp_async16(smem_u32(dq + r * LDS + c), a.q + off, ok);
            cp_async16(smem_u32(ddo + r * LDS + c), a.dout + off, ok);
        }
        for (int r = tid; r < BM; r += C::THREADS) {
            bool ok = r < rows;
            size_t off = ok ? (size_t)h * a.ld + q0 + r : 0;
            cp_async4(smem_u32(sL + buf * BM + r), a.lse + off, ok);
            cp_async4(smem_u32(sDl + buf * BM + r), a.delta + off, ok);
        }
    };
    if (n_it > 0) load_q(0, 0);
    cp_async_commit();

    const int kr0 = warp * 16; /* the warp's key rows in the tile */
    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[dt][e] = dv[dt][e] = 0.0f;

    /* dQ warp tile */
    const int qr0 = (warp % C::WR) * 16, dc0 = (warp / C::WR) * C::DC;

    /* dQ tile (BM x D) of query tile `it` = dS K over the CTA's keys, added to dq with
     * atomics: A = dS from dS^T by transposed load, B = K (k = key, n = d) by transposed load. */
    auto dq_step = [&](int it, const bf16 *cdS) {
        const int h = g * grp + it / per_head, q0 = (i_first + it % per_head) * BM;
        float dqa[C::DC / 8][4];
#pragma unroll
        for (int nt = 0; nt < C::DC / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) dqa[nt][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t af[4];
            ldsm_x4_t(af, smem_u32(cdS + (kk * 16 + lm_row_n(lane)) * LDP + qr0 + lm_col_n(lane)));
#pragma unroll
            for (int dp = 0; dp < C::DC / 16; dp++) {
                uint32_t bf[4];
                ldsm_x4_t(bf, smem_u32(sK + (kk * 16 + lm_row_m(lane)) * LDS + dc0 + dp * 16 + lm_col_m(lane)));
                mma_bf16(dqa[2 * dp], af, bf[0], bf[1]);
                mma_bf16(dqa[2 * dp + 1], af, bf[2], bf[3]);
            }
        }
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int row = q0 + qr0 + (lane >> 2) + hf * 8;
            if (row >= a.Tq) continue;
            float *dqr = a.dq + (size_t)row * qs + (size_t)h * D + dc0 + (lane & 3) * 2;
#pragma unroll
            for (int nt = 0; nt < C::DC / 8; nt++) {
                const float x = a.scale * dqa[nt][2 * hf], y = a.scale * dqa[nt][2 * hf + 1];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
                atomicAdd(reinterpret_cast<float2 *>(dqr + nt * 8), make_float2(x, y));
#else
                atomicAdd(dqr + nt * 8, x);
                atomicAdd(dqr + nt * 8 + 1, y);
#endif
            }
        }
    };

    for (int it = 0; it < n_it; it++) {
        cp_async_wait_all();
        __syncthreads(); /* tile it is in; everyone is done with tile it-1 (Q, dO, dS) */
        if (it + 1 < n_it) load_q(it + 1, (it + 1) & 1);
        cp_async_commit();
        if (PIPE && it > 0) dq_step(it - 1, sdS + ((it - 1) & 1) * BN * LDP);
        bf16 *wdS = PIPE ? sdS + (it & 1) * BN * LDP : sdS; /* this tile's dS^T */
        const int q0 = (i_first + it % per_head) * BM;
        const bf16 *cQ = sQ + (it & 1) * BM * LDS, *cdO = sdO + (it & 1) * BM * LDS;
        const float *cL = sL + (it & 1) * BM, *cDl = sDl + (it & 1) * BM;

        /* S^T = K_w Q^T: 16 keys x BM queries */
        float st[BM / 8][4];
#pragma unroll
        for (int nt = 0; nt < BM / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) st[nt][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t af[4];
            ldsm_x4(af, smem_u32(sK + (kr0 + lm_row_m(lane)) * LDS + kk * 16 + lm_col_m(lane)));
#pragma unroll
            for (int np = 0; np < BM / 16; np++) {
                uint32_t bf[4];
                ldsm_x4(bf, smem_u32(cQ + (np * 16 + lm_row_n(lane)) * LDS + kk * 16 + lm_col_n(lane)));
                mma_bf16(st[2 * np], af, bf[0], bf[1]);
                mma_bf16(st[2 * np + 1], af, bf[2], bf[3]);
            }
        }
        /* P^T; masked: queries past Tq, keys past Tk, and (causal) key > query. */
        const bool need_mask = q0 + BM > a.Tq || k0 + BN > a.Tk || (a.causal && k0 + BN - 1 > q0);
#pragma unroll
        for (int nt = 0; nt < BM / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int qc = nt * 8 + (lane & 3) * 2 + (e & 1);
                float p = fast_exp2(fmaf(st[nt][e], a.scale_log2, -cL[qc] * kLog2e));
                if (need_mask) {
                    const int key = k0 + kr0 + (lane >> 2) + (e >> 1) * 8, qrow = q0 + qc;
                    if (qrow >= a.Tq || key >= a.Tk || (a.causal && key > qrow)) p = 0.0f;
                }
                st[nt][e] = p;
            }
        /* dV_w += P^T dO: A = P^T from registers, B = dO (k = query, n = d) by transposed load */
#pragma unroll
        for (int kq = 0; kq < BM / 16; kq++) {
            uint32_t pa[4];
            pa[0] = pack_bf16(st[2 * kq][0], st[2 * kq][1]);
            pa[1] = pack_bf16(st[2 * kq][2], st[2 * kq][3]);
            pa[2] = pack_bf16(st[2 * kq + 1][0], st[2 * kq + 1][1]);
            pa[3] = pack_bf16(st[2 * kq + 1][2], st[2 * kq + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t bf[4];
                ldsm_x4_t(bf, smem_u32(cdO + (kq * 16 + lm_row_m(lane)) * LDS + dp * 16 + lm_col_m(lane)));
                mma_bf16(dv[2 * dp], pa, bf[0], bf[1]);
                mma_bf16(dv[2 * dp + 1], pa, bf[2], bf[3]);
            }
        }
        /* dP^T = V_w dO^T, then dS^T = P^T (dP^T - delta) in place */
        float dpt[BM / 8][4];
#pragma unroll
        for (int nt = 0; nt < BM / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) dpt[nt][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t af[4];
            ldsm_x4(af, smem_u32(sV + (kr0 + lm_row_m(lane)) * LDS + kk * 16 + lm_col_m(lane)));
#pragma unroll
            for (int np = 0; np < BM / 16; np++) {
                uint32_t bf[4];
                ldsm_x4(bf, smem_u32(cdO + (np * 16 + lm_row_n(lane)) * LDS + kk * 16 + lm_col_n(lane)));
                mma_bf16(dpt[2 * np], af, bf[0], bf[1]);
                mma_bf16(dpt[2 * np + 1], af, bf[2], bf[3]);
            }
        }
#pragma unroll
        for (int nt = 0; nt < BM / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int qc = nt * 8 + (lane & 3) * 2 + (e & 1);
                dpt[nt][e] = st[nt][e] * (dpt[nt][e] - cDl[qc]);
            }
        /* dK_w += dS^T Q; dS^T (bf16) also to shared memory for dQ */
#pragma unroll
        for (int kq = 0; kq < BM / 16; kq++) {
            uint32_t pa[4];
            pa[0] = pack_bf16(dpt[2 * kq][0], dpt[2 * kq][1]);
            pa[1] = pack_bf16(dpt[2 * kq][2], dpt[2 * kq][3]);
            pa[2] = pack_bf16(dpt[2 * kq + 1][0], dpt[2 * kq + 1][1]);
            pa[3] = pack_bf16(dpt[2 * kq + 1][2], dpt[2 * kq + 1][3]);
            const int r = kr0 + (lane >> 2), c = kq * 16 + (lane & 3) * 2;
            *reinterpret_cast<uint32_t *>(wdS + r * LDP + c) = pa[0];
            *reinterpret_cast<uint32_t *>(wdS + (r + 8) * LDP + c) = pa[1];
            *reinterpret_cast<uint32_t *>(wdS + r * LDP + c + 8) = pa[2];
            *reinterpret_cast<uint32_t *>(wdS + (r + 8) * LDP + c + 8) = pa[3];
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t bf[4];
                ldsm_x4_t(bf, smem_u32(cQ + (kq * 16 + lm_row_m(lane)) * LDS + dp * 16 + lm_col_m(lane)));
                mma_bf16(dk[2 * dp], pa, bf[0], bf[1]);
                mma_bf16(dk[2 * dp + 1], pa, bf[2], bf[3]);
            }
        }
        if (!PIPE) { /* (PIPE: after the barrier at the top of the next iteration) */
            __syncthreads(); /* dS^T of every warp is in */
            dq_step(it, sdS);
        }
    }
    if (PIPE && n_it > 0) {
        __syncthreads();
        dq_step(n_it - 1, sdS + ((n_it - 1) & 1) * BN * LDP);
    }

    /* dk += scale dK, dv += dV for the warp's key rows (owned by this CTA alone) */
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        const int row = k0 + kr0 + (lane >> 2) + hf * 8;
        if (row >= a.Tk) continue;
        const size_t base = (size_t)row * ks + (size_t)g * D + (lane & 3) * 2;
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++) {
            float2 *pk = reinterpret_cast<float2 *>(a.dk + base + dt * 8);
            float2 *pv = reinterpret_cast<float2 *>(a.dv + base + dt * 8);
            float2 x = *pk, y = *pv;
            x.x += a.scale * dk[dt][2 * hf];
            x.y += a.scale * dk[dt][2 * hf + 1];
            y.x += dv[dt][2 * hf];
            y.y += dv[dt][2 * hf + 1];
            *pk = x;
            *pv = y;
        }
    }
}

/* SIMT fallback. dq: one warp per (query row i, head h); lane t handles key j0 + t. */
constexpr int kSimtWarps = 4;

__global__ void __launch_bounds__(32 * kSimtWarps) attn_bwd_dq_simt(BwdArgs a, int D) {
    __shared__ float sq[kSimtWarps][256], sdo[kSimtWarps][256];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const long long wid = (long long)blockIdx.x * kSimtWarps + warp;
    if (wid >= (long long)a.Tq * a.H) return;
    const int h = (int)(wid / a.Tq), i = (int)(wid % a.Tq), g = h / (a.H / a.Hkv);
    const size_t row = ((size_t)i * a.H + h) * D;
    for (int d = lane; d < D; d += 32) {
        sq[warp][d] = __bfloat162float(a.q[row + d]);
        sdo[warp][d] = __bfloat162float(a.dout[row + d]);
    }
    __syncwarp();
    const float lse = a.lse[(size_t)h * a.ld + i], del = a.delta[(size_t)h * a.ld + i];
    const int n = a.causal ? i + 1 : a.Tk;
    float acc[8];
#pragma unroll
    for (int r = 0; r < 8; r++) acc[r] = 0.0f;
    for (int j0 = 0; j0 < n; j0 += 32) {
        const int j = j0 + lane;
        float ds = 0.0f;
        if (j < n) {
            const bf16 *kr = a.k + ((size_t)j * a.Hkv + g) * D, *vr = a.v + ((size_t)j * a.Hkv + g) * D;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) {
                s = fmaf(sq[warp][d], __bfloat162float(kr[d]), s);
                dp = fmaf(sdo[warp][d], __bfloat162float(vr[d]), dp);
            }
            ds = expf(a.scale * s - lse) * (dp - del);
        }
        const int nt = min(32, n - j0);
        for (int t = 0; t < nt; t++) {
            const float dst = __shfl_sync(0xffffffffu, ds, t);
            const bf16 *kr = a.k + ((size_t)(j0 + t) * a.Hkv + g) * D;
#pragma unroll
            for (int r = 0; r < 8; r++) {
                const int d = lane + 32 * r;
                if (d < D) acc[r] = fmaf(dst, __bfloat162float(kr[d]), acc[r]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 8; r++) {
        const int d = lane + 32 * r;
        if (d < D) a.dq[row + d] += a.scale * acc[r];
    }
}

/* dk, dv: one warp per (key row j, kv head g), over the group's heads h and the rows i that
 * see key j; lane t handles query i0 + t. */
__global__ void __launch_bounds__(32 * kSimtWarps) attn_bwd_dkv_simt(BwdArgs a, int D) {
    __shared__ float sk[kSimtWarps][256], sv[kSimtWarps][256];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const long long wid = (long long)blockIdx.x * kSimtWarps + warp;
    if (wid >= (long long)a.Tk * a.Hkv) return;
    const int g = (int)(wid / a.Tk), j = (int)(wid % a.Tk), grp = a.H / a.Hkv;
    const size_t krow = ((size_t)j * a.Hkv + g) * D;
    for (int d = lane; d < D; d += 32) {
        sk[warp][d] = __bfloat162float(a.k[krow + d]);
        sv[warp][d] = __bfloat162float(a.v[krow + d]);
    }
    __syncwarp();
    float ak[8], av[8];
#pragma unroll
    for (int r = 0; r < 8; r++) ak[r] = av[r] = 0.0f;
    for (int h = g * grp; h < (g + 1) * grp; h++) {
        for (int i0 = a.causal ? j : 0; i0 < a.Tq; i0 += 32) {
            const int i = i0 + lane;
            float p = 0.0f, ds = 0.0f;
            if (i < a.Tq) {
                const size_t row = ((size_t)i * a.H + h) * D;
                float s = 0.0f, dp = 0.0f;
                for (int d = 0; d < D; d++) {
                    s = fmaf(__bfloat162float(a.q[row + d]), sk[warp][d], s);
                    dp = fmaf(__bfloat162float(a.dout[row + d]), sv[warp][d], dp);
                }
                p = expf(a.scale * s - a.lse[(size_t)h * a.ld + i]);
                ds = p * (dp - a.delta[(size_t)h * a.ld + i]);
            }
            const int nt = min(32, a.Tq - i0);
            for (int t = 0; t < nt; t++) {
                const float pt = __shfl_sync(0xffffffffu, p, t), dst = __shfl_sync(0xffffffffu, ds, t);
                const size_t row = ((size_t)(i0 + t) * a.H + h) * D;
#pragma unroll
                for (int r = 0; r < 8; r++) {
                    const int d = lane + 32 * r;
                    if (d < D) {
                        ak[r] = fmaf(dst, __bfloat162float(a.q[row + d]), ak[r]);
                        av[r] = fmaf(pt, __bfloat162float(a.dout[row + d]), av[r]);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 8; r++) {
        const int d = lane + 32 * r;
        if (d < D) {
            a.dk[krow + d] += a.scale * ak[r];
            a.dv[krow + d] += av[r];
        }
    }
}

template <int D, int BM, int NW, bool PIPE>
static bool bwd_fits() {
    return attn_smem_fits(BwdTile<D, BM, NW, PIPE>::SMEM);
}

template <int D, int BM, int NW, bool PIPE>
static void launch_bwd_mma(const BwdArgs &a, cudaStream_t s) {
    typedef BwdTile<D, BM, NW, PIPE> C;
    auto kern = attn_bwd_mma<D, BM, NW, PIPE>;
    CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
    const int nkt = (a.Tk + C::BN - 1) / C::BN;
    if ((!a.kmajor && nkt > 65535) || (a.kmajor && a.Hkv > 65535))
        rt_fatal(__FILE__, __LINE__, "cuda_attn_backward: Tk=%d Hkv=%d over the grid limits", a.Tk,
                 a.Hkv);
    dim3 grid(a.kmajor ? (unsigned)nkt : (unsigned)a.Hkv, a.kmajor ? (unsigned)a.Hkv : (unsigned)nkt);
    kern<<<grid, C::THREADS, C::SMEM, s>>>(a);
    CUDA_LAUNCH_CHECK("attn_bwd_mma");
}

} // namespace attn

using namespace attn;

extern "C" void cuda_attn_backward(float *dq, float *dk, float *dv, const rt_bf16 *dout,
                                   const rt_bf16 *q, const rt_bf16 *k, const rt_bf16 *v,
                                   const float *lse, const float *delta, int ld, int Tq, int Tk,
                                   int H, int Hkv, int D, int causal, cudaStream_t s) {
    attn_check_shape("cuda_attn_backward", Tq, Tk, H, Hkv, D, causal, ld);
    if (Tq == 0 || Tk == 0) return;
    BwdArgs a;
    a.dq = dq;
    a.dk = dk;
    a.dv = dv;
    a.dout = reinterpret_cast<const bf16 *>(dout);
    a.q = reinterpret_cast<const bf16 *>(q);
    a.k = reinterpret_cast<const bf16 *>(k);
    a.v = reinterpret_cast<const bf16 *>(v);
    a.lse = lse;
    a.delta = delta;
    a.ld = ld;
    a.Tq = Tq;
    a.Tk = Tk;
    a.H = H;
    a.Hkv = Hkv;
    a.causal = causal != 0;
    a.scale = (float)(1.0 / sqrt((double)D));
    a.scale_log2 = (float)(kLog2e / sqrt((double)D));
    const bool aligned = attn_aligned(q, 16) && attn_aligned(k, 16) && attn_aligned(v, 16) &&
                         attn_aligned(dout, 16) && attn_aligned(dq, 8) && attn_aligned(dk, 8) &&
                         attn_aligned(dv, 8) && attn_aligned(lse, 4) && attn_aligned(delta, 4);
    /* variants (RT_ATTN_BWD_VARIANT): tile <BM queries per step, NW warps (BN = 16 NW keys),
     * PIPE (dQ one step late: one barrier per step, two dS buffers)>, grid order.
     * PIPE needs 177 KB of shared memory at D = 128: without it (A100) variant 3 runs. */
    int var = attn_variant("RT_ATTN_BWD_VARIANT", 5);
    a.kmajor = var == 4; /* variant 4: variant 0 with the (key tile, kv head) grid order */
    if (var == 4) var = 0;
    if (aligned && D == 128) {
        if (var == 0 && !bwd_fits<128, 64, 8, true>()) var = 3;
        switch (var) {
        case 1: launch_bwd_mma<128, 32, 8, false>(a, s); break;
        case 2: launch_bwd_mma<128, 64, 4, false>(a, s); break;
        case 3: launch_bwd_mma<128, 64, 8, false>(a, s); break;
        default: launch_bwd_mma<128, 64, 8, true>(a, s); break;
        }
    } else if (aligned && D == 64) {
        switch (var) {
        case 1: launch_bwd_mma<64, 32, 8, false>(a, s); break;
        case 2: launch_bwd_mma<64, 64, 4, false>(a, s); break;
        case 3: launch_bwd_mma<64, 64, 8, false>(a, s); break;
        default: launch_bwd_mma<64, 64, 8, true>(a, s); break;
        }
    } else {
        long long wq = (long long)Tq * H, wk = (long long)Tk * Hkv;
        attn_bwd_dq_simt<<<(unsigned)((wq + kSimtWarps - 1) / kSimtWarps), 32 * kSimtWarps, 0, s>>>(a, D);
        CUDA_LAUNCH_CHECK("attn_bwd_dq_simt");
        attn_bwd_dkv_simt<<<(unsigned)((wk + kSimtWarps - 1) / kSimtWarps), 32 * kSimtWarps, 0, s>>>(a, D);
        CUDA_LAUNCH_CHECK("attn_bwd_dkv_simt");
    }
}
