/* blas: the GEMMs of the CUDA backend through cuBLASLt: struct cuda_blas (handle, one
 * workspace allocated at init, a cache of descriptors and heuristic choices per shape), the
 * linear layer cuda_matmul_forward / cuda_matmul_backward, and ops::gemm, which xent.cu
 * also uses.
 * Layout: tensors are row-major; cuBLAS is column-major, and a row-major (r, c) matrix is a
 * column-major (c, r) one with the same leading dimension. So row-major C = A B is computed
 * as column-major C^T = B^T A^T:
 * with A, B, D the column-major views of the row-major buffers (w as (n_in, n_out), x as
 * (n_in, T), dy as (n_out, T)):
 *   forward  out (T, n_out) = x w^T      ->  D (n_out, T)    = A^T B, A = w, B = x    (TN)
 *   dx       dx (T, n_in) += dy w        ->  D (n_in, T)    += A B,   A = w, B = dy   (NN)
 *   dw       dw (n_out, n_in) += dy^T x  ->  D (n_in, n_out) += A B^T, A = x, B = dy  (NT)
 * bf16 A and B, CUBLAS_COMPUTE_32F with fp32 scalars, D bf16 (out, dx) or fp32 (dw, logits);
 * the accumulating products pass beta = 1 with C = D.
 * Heuristic: the first choice of cublasLtMatmulAlgoGetHeuristic for the shape, the leading
 * dimensions and the pointers' alignments (passed as MIN_ALIGNMENT preferences, so views at
 * odd offsets are served), cached per key. Should cuBLASLt offer no algorithm for a key, that
 * key goes to cublasGemmEx (same types, same workspace) instead. */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <stdio.h>
#include <string.h>

#include "ops_common.cuh"

#define BLAS_CHECK(call)                                                                     \
    do {                                                                                     \
        cublasStatus_t blas_rc_ = (call);                                                    \
        if (blas_rc_ != CUBLAS_STATUS_SUCCESS)                                               \
            rt_fatal(__FILE__, __LINE__, "%s -> %s (%s)", #call,                             \
                     cublasLtGetStatusString(blas_rc_), cublasLtGetStatusName(blas_rc_));    \
    } while (0)

namespace {

constexpr int kCacheSize = 64; /* distinct GEMM shapes kept (a Llama step uses ~10) */

/* Everything the choice of algorithm depends on. Zero-filled before use (compared bytewise). */
struct gemm_key {
    int32_t ta, tb, d_f32;
    int32_t m, n, k, lda, ldb, ldd;
    uint32_t align_a, align_b, align_d; /* bytes, power of two <= 256 */
};

struct gemm_plan {
    gemm_key key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    int legacy;        /* 1: no cuBLASLt algorithm, cublasGemmEx runs it */
    uint64_t last_use; /* 0: slot empty */
};

} // namespace

struct cuda_blas {
    cublasLtHandle_t lt;
    cublasHandle_t legacy; /* fallback for keys cuBLASLt has no algorithm for */
    void *workspace;
    size_t workspace_bytes;
    uint64_t tick;
    gemm_plan plans[kCacheSize];
};

static uint32_t ptr_align(const void *p) {
    uintptr_t u = (uintptr_t)p;
    uint32_t a = 256;
    while (a > 1 && (u & (a - 1))) a >>= 1;
    return a;
}

static void plan_destroy(gemm_plan *p) {
    if (!p->last_use) return;
    BLAS_CHECK(cublasLtMatrixLayoutDestroy(p->la));
    BLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lb));
    BLAS_CHECK(cublasLtMatrixLayoutDestroy(p->ld));
    BLAS_CHECK(cublasLtMatmulDescDestroy(p->op));
    p->last_use = 0;
}

/* Descriptors and the heuristic's first choice for a key, built into slot p. */
static void plan_build(cuda_blas *b, gemm_plan *p, const gemm_key *k) {
    p->key = *k;
    cublasOperation_t ta = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    BLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    BLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    BLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    /* stored shapes: op(A) is m x k, op(B) is k x n */
    BLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, k->ta ? k->k : k->m,
                                          k->ta ? k->m : k->k, k->lda));
    BLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, k->tb ? k->n : k->k,
                                          k->tb ? k->k : k->n, k->ldb));
    BLAS_CHECK(cublasLtMatrixLayoutCreate(&p->ld, k->d_f32 ? CUDA_R_32F : CUDA_R_16BF, k->m, k->n,
                                          k->ldd));

    cublasLtMatmulPreference_t pref;
    BLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    BLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &b->workspace_bytes, sizeof b->workspace_bytes));
    BLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                    &k->align_a, sizeof k->align_a));
    BLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                    &k->align_b, sizeof k->align_b));
    BLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                    &k->align_d, sizeof k->align_d));
    BLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                    &k->align_d, sizeof k->align_d));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(b->lt, p->op, p->la, p->lb, p->ld, p->ld,
                                                       pref, 1, &res, &found);
    if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED)
        BLAS_CHECK(st); /* names the status */
    BLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    p->legacy = st != CUBLAS_STATUS_SUCCESS || found < 1 || res.state != CUBLAS_STATUS_SUCCESS;
    if (!p->legacy) p->algo = res.algo;
    else
        fprintf(stderr,
                "cuda_blas: cuBLASLt offers no algorithm for %c%c m=%d n=%d k=%d lda=%d ldb=%d "
                "ldd=%d (%s out, alignment %u/%u/%u bytes); cublasGemmEx serves it\n",
                k->ta ? 'T' : 'N', k->tb ? 'T' : 'N', k->m, k->n, k->k, k->lda, k->ldb, k->ldd,
                k->d_f32 ? "fp32" : "bf16", k->align_a, k->align_b, k->align_d);
}

/* The cached plan for a key; builds it on a miss, evicting the least recently used. */
static gemm_plan *plan_get(cuda_blas *b, const gemm_key *k) {
    gemm_plan *victim = &b->plans[0];
    for (int i = 0; i < kCacheSize; i++) {
        gemm_plan *p = &b->plans[i];
        if (p->last_use && memcmp(&p->key, k, sizeof *k) == 0) {
            p->last_use = ++b->tick;
            return p;
        }
        if (p->last_use < victim->last_use) victim = p;
    }
    plan_destroy(victim);
    plan_build(b, victim, k);
    victim->last_use = ++b->tick;
    return victim;
}

void ops::gemm(cuda_blas *b, bool ta, bool tb, int m, int n, int k, const bf16 *A, int lda,
               const bf16 *B, int ldb, float beta, void *D, bool d_f32, int ldd, cudaStream_t s) {
    gemm_key key;
    memset(&key, 0, sizeof key);
    key.ta = ta;
    key.tb = tb;
    key.d_f32 = d_f32;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldd = ldd;
    key.align_a = ptr_align(A);
    key.align_b = ptr_align(B);
    key.align_d = ptr_align(D);
    gemm_plan *p = plan_get(b, &key);
    const float alpha = 1.0f;
    if (p->legacy) {
        BLAS_CHECK(cublasSetStream(b->legacy, s));
        BLAS_CHECK(cublasGemmEx(b->legacy, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                m, n, k, &alpha, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &beta, D,
                                d_f32 ? CUDA_R_32F : CUDA_R_16BF, ldd, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
        return;
    }
    BLAS_CHECK(cublasLtMatmul(b->lt, p->op, &alpha, A, p->la, B, p->lb, &beta, D, p->ld, D, p->ld,
                              &p->algo, b->workspace, b->workspace_bytes, s));
}

extern "C" struct cuda_blas *cuda_blas_init(size_t workspace_bytes) {
    cuda_blas *b = (cuda_blas *)calloc(1, sizeof *b);
    if (!b) rt_fatal(__FILE__, __LINE__, "cuda_blas_init: out of host memory");
    if (!workspace_bytes) workspace_bytes = CUDA_BLAS_WORKSPACE_DEFAULT;
    BLAS_CHECK(cublasLtCreate(&b->lt));
    BLAS_CHECK(cublasCreate(&b->legacy));
    CUDA_CHECK(cudaMalloc(&b->workspace, workspace_bytes));
    b->workspace_bytes = workspace_bytes;
    BLAS_CHECK(cublasSetWorkspace(b->legacy, b->workspace, workspace_bytes));
    return b;
}

extern "C" void cuda_blas_free(struct cuda_blas *b) {
    if (!b) return;
    for (int i = 0; i < kCacheSize; i++) plan_destroy(&b->plans[i]);
    CUDA_CHECK(cudaFree(b->workspace));
    BLAS_CHECK(cublasDestroy(b->legacy));
    BLAS_CHECK(cublasLtDestroy(b->lt));
    free(b);
}

static void check_dims(const char *fn, int T, int n_in, int n_out) {
    if (T < 0 || n_in < 0 || n_out < 0)
        rt_fatal(__FILE__, __LINE__, "%s: bad shape T=%d n_in=%d n_out=%d", fn, T, n_in, n_out);
}

extern "C" void cuda_matmul_forward(struct cuda_blas *b, rt_bf16 *out, const rt_bf16 *x,
                                    const rt_bf16 *w, int T, int n_in, int n_out, cudaStream_t s) {
    check_dims("cuda_matmul_forward", T, n_in, n_out);
    if (T == 0 || n_out == 0) return;
    if (n_in == 0) { /* empty reduction */
        CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)T * n_out * sizeof(rt_bf16), s));
        return;
    }
    /* out^T (n_out, T) = op_T(w: n_in x n_out, ld n_in) x (n_in x T, ld n_in) */
    ops::gemm(b, true, false, n_out, T, n_in, (const ops::bf16 *)w, n_in, (const ops::bf16 *)x, n_in,
              0.0f, out, false, n_out, s);
}

extern "C" void cuda_matmul_backward(struct cuda_blas *b, rt_bf16 *dx, float *dw, const rt_bf16 *dy,
                                     const rt_bf16 *x, const rt_bf16 *w, int T, int n_in, int n_out,
                                     cudaStream_t s) {
    check_dims("cuda_matmul_backward", T, n_in, n_out);
    if (T == 0 || n_in == 0 || n_out == 0) return;
    /* dx^T (n_in, T) += w (n_in x n_out, ld n_in) dy^T (n_out x T, ld n_out) */
    if (dx)
        ops::gemm(b, false, false, n_in, T, n_out, (const ops::bf16 *)w, n_in,
                  (const ops::bf16 *)dy, n_out, 1.0f, dx, false, n_in, s);
    /* dw^T (n_in, n_out) += x^T (n_in x T, ld n_in) op_T(dy^T: n_out x T, ld n_out) */
    if (dw)
        ops::gemm(b, false, true, n_in, n_out, T, (const ops::bf16 *)x, n_in,
                  (const ops::bf16 *)dy, n_out, 1.0f, dw, true, n_in, s);
}
