/* attn_fwd: block attention forward with log-sum-exp on the GPU (cuda_attn_forward).
 * q (Tq, H, D), k/v (Tk, Hkv, D) bf16; out (Tq, H, D) fp32; lse (H, ld) fp32.
 *
 * Tensor-core kernel (D = 64, 128), flash-attention-2 style: one CTA per (head, tile of BM
 * query rows), NW warps of MT x 16 rows each. Q stays in shared memory; K/V tiles of BN keys
 * are streamed through a shared double buffer with cp.async (tile j+1 loads while tile j is
 * computed). S = Q K^T and O += P V run on mma.m16n8k16 (bf16 in, fp32 accumulate); the
 * softmax is online in fp32, in base 2 with 1/sqrt(D) * log2(e) folded into one multiply; P
 * is rounded to bf16 only as the operand of P V. Causal: key tiles above the diagonal are never
 * loaded, the diagonal ones masked; causal CTAs start with the heaviest query tiles. The output
 * is divided by the row sum in fp32 and written fp32 (it goes to the merge as is).
 * Default tile: BM = 128 rows (4 warps of 32 rows), BN = 64 keys; other tiles and the grid
 * order are variants for tuning (RT_ATTN_FWD_VARIANT, docs/cuda_attention.md).
 * SIMT kernel (any D <= 256): one warp per (query row, head), 32 keys at a time.
 * Both are deterministic: no atomics, fixed summation order. */
#include "attn_mma.cuh"
#include "cuda_attn.h"

#include <math.h>

namespace attn {

struct FwdArgs {
    float *out, *lse;
    const bf16 *q, *k, *v;
    int ld, Tq, Tk, H, Hkv, causal;
    float scale, scale_log2; /* 1/sqrt(D), and times log2(e) */
    int qmajor; /* grid order: 0 = (head, q tile), heads fastest; 1 = (q tile, head) */
};

template <int D, int BN, int MT, int NW>
struct FwdTile {
    static constexpr int BM = 16 * MT * NW; /* query rows per CTA */
    static constexpr int THREADS = 32 * NW;
    static constexpr int LDS = D + 8;       /* shared row stride (elements) */
    static constexpr size_t SMEM = (size_t)(BM + 4 * BN) * LDS * sizeof(bf16); /* Q, 2x(K, V) */
};

template <int D, int BN, int MT, int NW>
__global__ void __launch_bounds__(32 * NW) attn_fwd_mma(FwdArgs a) {
    typedef FwdTile<D, BN, MT, NW> C;
    constexpr int BM = C::BM, LDS = C::LDS, CH = D / 8; /* 16-byte chunks per row */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem_raw);
    bf16 *sK = sQ + BM * LDS; /* two buffers of BN rows */
    bf16 *sV = sK + 2 * BN * LDS;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int h = a.qmajor ? (int)blockIdx.y : (int)blockIdx.x, g = h / (a.H / a.Hkv);
    const int nqt = a.qmajor ? (int)gridDim.x : (int)gridDim.y;
    const int qi = a.qmajor ? (int)blockIdx.x : (int)blockIdx.y;
    const int qt = a.causal ? nqt - 1 - qi : qi; /* causal: the heaviest tiles first */
    const int q0 = qt * BM;
    const size_t qs = (size_t)a.H * D, ks = (size_t)a.Hkv * D; /* row strides */
    const bf16 *qg = a.q + (size_t)q0 * qs + (size_t)h * D;
    const bf16 *kg = a.k + (size_t)g * D, *vg = a.v + (size_t)g * D;
    const int kend = a.causal ? min(a.Tk, q0 + BM) : a.Tk; /* keys [0, kend) are needed */
    const int nkt = (kend + BN - 1) / BN;

    const int qrows = min(BM, a.Tq - q0);
    for (int i = tid; i < BM * CH; i += C::THREADS) {
        int r = i / CH, c = (i % CH) * 8;
        bool ok = r < qrows;
        cp_async16(smem_u32(sQ + r * LDS + c), ok ? qg + (size_t)r * qs + c : qg, ok);
    }
    auto load_kv = [&](int kt, int buf) {
        const int k0 = kt * BN, rows = min(BN, a.Tk - k0);
        bf16 *dk = sK + buf * BN * LDS, *dv = sV + buf * BN * LDS;
        for (int i = tid; i < BN * CH; i += C::THREADS) {
            int r = i / CH, c = (i % CH) * 8;
            bool ok = r < rows;
            size_t off = ok ? (size_t)(k0 + r) * ks + c : 0;
            cp_async16(smem_u32(dk + r * LDS + c), kg + off, ok);
            cp_async16(smem_u32(dv + r * LDS + c), vg + off, ok);
        }
    };
    if (nkt > 0) load_kv(0, 0);
    cp_async_commit();

    const int wr0 = warp * 16 * MT; /* the warp's first row in the tile */
    float o[MT][D / 8][4];
    float m[MT][2], l[MT][2]; /* running max (base-2 scaled units) and this lane's partial sum */
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[mt][dt][e] = 0.0f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
    }

    for (int kt = 0; kt < nkt; kt++) {
        cp_async_wait_all();
        __syncthreads(); /* tile kt is in; every warp is done with tile kt-1's buffer */
        if (kt + 1 < nkt) load_kv(kt + 1, (kt + 1) & 1);
        cp_async_commit();
        const bf16 *cK = sK + (kt & 1) * BN * LDS, *cV = sV + (kt & 1) * BN * LDS;

        /* S = Q K^T for the warp's rows: (16 MT) x BN */
        float s[MT][BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[mt][nt][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t af[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
                ldsm_x4(af[mt], smem_u32(sQ + (wr0 + mt * 16 + lm_row_m(lane)) * LDS + kk * 16 +
                                         lm_col_m(lane)));
#pragma unroll
            for (int np = 0; np < BN / 16; np++) {
                uint32_t bf[4];
                ldsm_x4(bf, smem_u32(cK + (np * 16 + lm_row_n(lane)) * LDS + kk * 16 + lm_col_n(lane)));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(s[mt][2 * np], af[mt], bf[0], bf[1]);
                    mma_bf16(s[mt][2 * np + 1], af[mt], bf[2], bf[3]);
                }
            }
        }

        /* Mask keys past Tk and, on the diagonal, keys after the row (warp-uniform test). */
        const int k0 = kt * BN;
        if (k0 + BN > a.Tk || (a.causal && k0 + BN - 1 > q0 + wr0)) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int row = q0 + wr0 + mt * 16 + (lane >> 2) + (e >> 1) * 8;
                        int key = k0 + nt * 8 + (lane & 3) * 2 + (e & 1);
                        if (key >= a.Tk || (a.causal && key > row)) s[mt][nt][e] = -INFINITY;
                    }
        }

        /* Online softmax: rows grp and grp+8 of each m-tile (hf = 0, 1); a row's values are
         * spread over the 4 lanes of a quad. */
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < BN / 8; nt++)
                    mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hf], s[mt][nt][2 * hf + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mnew = fmaxf(m[mt][hf], mx * a.scale_log2);
                const float msafe = mnew == -INFINITY ? 0.0f : mnew;
                const float alpha = fast_exp2(m[mt][hf] - msafe);
                m[mt][hf] = mnew;
                float rs = 0.0f;
#pragma unroll
                for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
                    for (int e = 2 * hf; e < 2 * hf + 2; e++) {
                        float p = fast_exp2(fmaf(s[mt][nt][e], a.scale_log2, -msafe));
                        s[mt][nt][e] = p;
                        rs += p;
                    }
                l[mt][hf] = l[mt][hf] * alpha + rs;
#pragma unroll
                for (int dt = 0; dt < D / 8; dt++) {
                    o[mt][dt][2 * hf] *= alpha;
                    o[mt][dt][2 * hf + 1] *= alpha;
                }
            }

        /* O += P V: P (bf16) from the S registers, V fragments by transposed ldmatrix. */
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t bf[4];
                ldsm_x4_t(bf, smem_u32(cV + (kk * 16 + lm_row_m(lane)) * LDS + dp * 16 + lm_col_m(lane)));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(o[mt][2 * dp], pa[mt], bf[0], bf[1]);
                    mma_bf16(o[mt][2 * dp + 1], pa[mt], bf[2], bf[3]);
                }
            }
        }
    }

    /* Normalize and write: out rows in fp32, lse = m ln2 + ln(l) (natural log). */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            float lt = l[mt][hf];
            lt += __shfl_xor_sync(0xffffffffu, lt, 1);
            lt += __shfl_xor_sync(0xffffffffu, lt, 2);
            const int row = q0 + wr0 + mt * 16 + (lane >> 2) + hf * 8;
            if (row >= a.Tq) continue;
            const float inv = lt > 0.0f ? 1.0f / lt : 0.0f;
            float *op = a.out + (size_t)row * qs + (size_t)h * D + (lane & 3) * 2;
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++)
                *reinterpret_cast<float2 *>(op + dt * 8) =
                    make_float2(o[mt][dt][2 * hf] * inv, o[mt][dt][2 * hf + 1] * inv);
            if ((lane & 3) == 0)
                a.lse[(size_t)h * a.ld + row] = lt > 0.0f ? m[mt][hf] * kLn2 + logf(lt) : -INFINITY;
        }
}

/* SIMT fallback: one warp per (query row i, head h); lane t scores key j0 + t, then the warp
 * accumulates the 32 weighted V rows (lane owns dims lane, lane + 32, ...). */
constexpr int kSimtWarps = 4;

__global__ void __launch_bounds__(32 * kSimtWarps) attn_fwd_simt(FwdArgs a, int D) {
    __shared__ float sq[kSimtWarps][256];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const long long wid = (long long)blockIdx.x * kSimtWarps + warp;
    if (wid >= (long long)a.Tq * a.H) return;
    const int h = (int)(wid / a.Tq), i = (int)(wid % a.Tq), g = h / (a.H / a.Hkv);
    const bf16 *qr = a.q + ((size_t)i * a.H + h) * D;
    for (int d = lane; d < D; d += 32) sq[warp][d] = __bfloat162float(qr[d]);
    __syncwarp();
    const int n = a.causal ? i + 1 : a.Tk;
    float mrun = -INFINITY, l = 0.0f, acc[8];
#pragma unroll
    for (int r = 0; r < 8; r++) acc[r] = 0.0f;
    for (int j0 = 0; j0 < n; j0 += 32) {
        const int j = j0 + lane;
        float s = -INFINITY;
        if (j < n) {
            const bf16 *kr = a.k + ((size_t)j * a.Hkv + g) * D;
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot = fmaf(sq[warp][d], __bfloat162float(kr[d]), dot);
            s = a.scale * dot;
        }
        float mx = s;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        const float mnew = fmaxf(mrun, mx); /* finite: key j0 <= n - 1 is valid */
        const float alpha = expf(mrun - mnew);
        const float p = j < n ? expf(s - mnew) : 0.0f;
        float ps = p;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
        l = l * alpha + ps;
        mrun = mnew;
#pragma unroll
        for (int r = 0; r < 8; r++) acc[r] *= alpha;
        const int nt = min(32, n - j0);
        for (int t = 0; t < nt; t++) {
            const float pt = __shfl_sync(0xffffffffu, p, t);
            const bf16 *vr = a.v + ((size_t)(j0 + t) * a.Hkv + g) * D;
#pragma unroll
            for (int r = 0; r < 8; r++) {
                const int d = lane + 32 * r;
                if (d < D) acc[r] = fmaf(pt, __bfloat162float(vr[d]), acc[r]);
            }
        }
    }
    float *orow = a.out + ((size_t)i * a.H + h) * D;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int r = 0; r < 8; r++) {
        const int d = lane + 32 * r;
        if (d < D) orow[d] = acc[r] * inv;
    }
    if (lane == 0) a.lse[(size_t)h * a.ld + i] = l > 0.0f ? mrun + logf(l) : -INFINITY;
}

template <int D, int BN, int MT, int NW>
static bool fwd_fits() {
    return attn_smem_fits(FwdTile<D, BN, MT, NW>::SMEM);
}

template <int D, int BN, int MT, int NW>
static void launch_fwd_mma(const FwdArgs &a, cudaStream_t s) {
    typedef FwdTile<D, BN, MT, NW> C;
    auto kern = attn_fwd_mma<D, BN, MT, NW>;
    const int nqt = (a.Tq + C::BM - 1) / C::BM;
    if (!a.qmajor && nqt > 65535)
        rt_fatal(__FILE__, __LINE__, "cuda_attn_forward: Tq=%d is over the %d rows of one launch",
                 a.Tq, 65535 * C::BM);
    CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
    if (a.qmajor && a.H > 65535) rt_fatal(__FILE__, __LINE__, "cuda_attn_forward: H=%d", a.H);
    dim3 grid(a.qmajor ? (unsigned)nqt : (unsigned)a.H, a.qmajor ? (unsigned)a.H : (unsigned)nqt);
    kern<<<grid, C::THREADS, C::SMEM, s>>>(a);
    CUDA_LAUNCH_CHECK("attn_fwd_mma");
}

} // namespace attn

using namespace attn;

extern "C" void cuda_attn_forward(float *out, float *lse, int ld, const rt_bf16 *q, const rt_bf16 *k,
                                  const rt_bf16 *v, int Tq, int Tk, int H, int Hkv, int D,
                                  int causal, cudaStream_t s) {
    attn_check_shape("cuda_attn_forward", Tq, Tk, H, Hkv, D, causal, ld);
    if (Tq == 0) return;
    FwdArgs a;
    a.out = out;
    a.lse = lse;
    a.q = reinterpret_cast<const bf16 *>(q);
    a.k = reinterpret_cast<const bf16 *>(k);
    a.v = reinterpret_cast<const bf16 *>(v);
    a.ld = ld;
    a.Tq = Tq;
    a.Tk = Tk;
    a.H = H;
    a.Hkv = Hkv;
    a.causal = causal != 0;
    a.scale = (float)(1.0 / sqrt((double)D));
    a.scale_log2 = (float)(kLog2e / sqrt((double)D));
    a.qmajor = 0;
    const bool aligned = attn_aligned(q, 16) && attn_aligned(k, 16) && attn_aligned(v, 16) &&
                         attn_aligned(out, 8);
    /* variants (RT_ATTN_FWD_VARIANT): tile <BN keys, MT m-tiles per warp, NW warps>, grid order */
    int var = attn_variant("RT_ATTN_FWD_VARIANT", 5);
    a.qmajor = var == 4; /* variant 4: tile 0 with the (q tile, head) grid order */
    if (var == 4) var = 0;
    if (aligned && D == 128) {
        switch (var) {
        case 1: launch_fwd_mma<128, 64, 1, 8>(a, s); break;
        case 2: launch_fwd_mma<128, 32, 2, 4>(a, s); break;
        case 3:
            if (fwd_fits<128, 128, 1, 8>()) {
                launch_fwd_mma<128, 128, 1, 8>(a, s);
                break;
            }
            [[fallthrough]]; /* too much shared memory for this device */
        default: launch_fwd_mma<128, 64, 2, 4>(a, s); break;
        }
    } else if (aligned && D == 64) {
        switch (var) {
        case 1: launch_fwd_mma<64, 64, 1, 8>(a, s); break;
        case 2: launch_fwd_mma<64, 32, 2, 4>(a, s); break;
        case 3: launch_fwd_mma<64, 128, 1, 8>(a, s); break;
        default: launch_fwd_mma<64, 64, 2, 4>(a, s); break;
        }
    } else {
        long long warps = (long long)Tq * H;
        unsigned blocks = (unsigned)((warps + kSimtWarps - 1) / kSimtWarps);
        attn_fwd_simt<<<blocks, 32 * kSimtWarps, 0, s>>>(a, D);
        CUDA_LAUNCH_CHECK("attn_fwd_simt");
    }
}
