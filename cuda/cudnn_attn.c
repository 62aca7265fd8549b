/* cudnn_attn: block attention through cuDNN's fused flash-attention engine, built from C with
 * the cuDNN graph backend API (cudnnBackendCreateDescriptor / SetAttribute / Finalize /
 * Execute): the forward graph with the softmax statistics (the fp32 lse), the backward graph,
 * a plan cache (one entry per shape and lse stride), one device workspace, and the fallback to
 * the native kernels (cuda_attn.h). API and semantics: cudnn_attn.h; the graphs, what was
 * measured and why: docs/cudnn_attention.md.
 * Shape letters: Tq query rows, Tk keys, H query heads, Hkv kv heads, D head dim; cuDNN's dim
 * order is (B, H, S, D) with B = 1, and ringtrain's token-major (T, H, D) buffers are the
 * strides {T*H*D, D, H*D, 1} of it (no copy). The body needs RT_HAVE_CUDNN (and -lcudnn);
 * without it only the native path is compiled. */
#include "cudnn_attn.h"
#include "cuda_attn.h"
#include "cuda_check.h"
#include "runtime.h"
#include "cuda_ops.h" /* cuda_to_f32, cuda_accum_* */

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef RT_HAVE_CUDNN

#include <cudnn.h>

/* snprintf into / onto a fixed buffer, truncating silently (messages only). */
static void strf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void strf(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}
static void catf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void catf(char *buf, size_t cap, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static void fmt_bytes(char *buf, size_t n, double b) {
    if (b >= 1e9) strf(buf, n, "%.2f GB", b / 1e9);
    else if (b >= 1e6) strf(buf, n, "%.1f MB", b / 1e6);
    else strf(buf, n, "%.0f B", b);
}

/* ---------- errors ---------- */

#define CUDNN_CHECK(call)                                                                    \
    do {                                                                                     \
        cudnnStatus_t cudnn_st_ = (call);                                                    \
        if (cudnn_st_ != CUDNN_STATUS_SUCCESS) {                                             \
            char cudnn_msg_[512] = "";                                                       \
            cudnnGetLastErrorString(cudnn_msg_, sizeof cudnn_msg_);                          \
            rt_fatal(__FILE__, __LINE__, "%s -> %s (%d): %s", #call,                         \
                     cudnnGetErrorString(cudnn_st_), (int)cudnn_st_, cudnn_msg_);            \
        }                                                                                    \
    } while (0)

/* The execution-plan and operation-graph handle attributes are marked deprecated in cuDNN 9
 * headers but are what cudnn-frontend still sets; read them once here, warnings off. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static const cudnnBackendAttributeName_t ATTR_GRAPH_HANDLE = CUDNN_ATTR_OPERATIONGRAPH_HANDLE;
static const cudnnBackendAttributeName_t ATTR_PLAN_HANDLE = CUDNN_ATTR_EXECUTION_PLAN_HANDLE;
#pragma GCC diagnostic pop

/* Unique ids of the non-virtual tensors (the variant pack); virtual ones count from 100. */
enum {
    UID_Q = 1, UID_K, UID_V, UID_O, UID_STATS, UID_SCALE, UID_NEGINF, UID_DO, UID_DQ, UID_DK,
    UID_DV, UID_ONE, UID_SSUM, UID_DQACC, UID_VIRTUAL = 100
};

enum { KIND_FWD = 0, KIND_BWD = 1 };

#define WS_ALIGN 256

static size_t align_up(size_t x) { return (x + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN; }

/* ---------- graph builder: every descriptor of one graph, first error kept ---------- */

#define GB_MAX_DESC 256
#define GB_MAX_OPS 64
#define GB_LOG 6144

struct gb {
    cudnnBackendDescriptor_t all[GB_MAX_DESC]; /* destroyed with the plan */
    int nall;
    cudnnBackendDescriptor_t ops[GB_MAX_OPS];
    int nops;
    cudnnStatus_t st; /* first failure */
    char err[640];
    int64_t next_uid;
    char log[GB_LOG]; /* the graph, one op per line (docs, failure reports) */
    size_t loglen;
};

struct tens {
    cudnnBackendDescriptor_t d;
    int64_t uid;
    cudnnDataType_t dt;
    int64_t dim[4], str[4];
    int virt, byval;
    char name[16];
};

static void gb_logf(struct gb *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gb_logf(struct gb *g, const char *fmt, ...) {
    if (g->loglen >= sizeof g->log - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g->log + g->loglen, sizeof g->log - g->loglen, fmt, ap);
    va_end(ap);
    if (n > 0) g->loglen += (size_t)n;
    if (g->loglen > sizeof g->log - 1) g->loglen = sizeof g->log - 1;
}

static void gb_fail(struct gb *g, cudnnStatus_t st, const char *what) {
    if (g->st != CUDNN_STATUS_SUCCESS) return;
    char msg[400] = "";
    cudnnGetLastErrorString(msg, sizeof msg);
    for (char *c = msg; *c; c++)
        if (*c == '\n') *c = ' ';
    g->st = st;
    strf(g->err, sizeof g->err, "%s -> %s (%d)%s%s", what, cudnnGetErrorString(st), (int)st,
             msg[0] ? ": " : "", msg);
}

static int gb_ok(const struct gb *g) { return g->st == CUDNN_STATUS_SUCCESS; }

static cudnnBackendDescriptor_t gb_new(struct gb *g, cudnnBackendDescriptorType_t t, const char *what) {
    if (!gb_ok(g)) return NULL;
    if (g->nall >= GB_MAX_DESC) {
        gb_fail(g, CUDNN_STATUS_INTERNAL_ERROR, "gb_new: too many descriptors");
        return NULL;
    }
    cudnnBackendDescriptor_t d = NULL;
    cudnnStatus_t st = cudnnBackendCreateDescriptor(t, &d);
    if (st != CUDNN_STATUS_SUCCESS) {
        gb_fail(g, st, what);
        return NULL;
    }
    g->all[g->nall++] = d;
    return d;
}

static void gb_set(struct gb *g, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a,
                   cudnnBackendAttributeType_t t, int64_t n, const void *v, const char *what) {
    if (!gb_ok(g)) return;
    cudnnStatus_t st = cudnnBackendSetAttribute(d, a, t, n, v);
    if (st != CUDNN_STATUS_SUCCESS) gb_fail(g, st, what);
}

static void gb_fin(struct gb *g, cudnnBackendDescriptor_t d, const char *what) {
    if (!gb_ok(g)) return;
    cudnnStatus_t st = cudnnBackendFinalize(d);
    if (st != CUDNN_STATUS_SUCCESS) gb_fail(g, st, what);
}

static const char *dt_name(cudnnDataType_t dt) {
    switch (dt) {
    case CUDNN_DATA_FLOAT: return "f32";
    case CUDNN_DATA_BFLOAT16: return "bf16";
    case CUDNN_DATA_INT32: return "i32";
    case CUDNN_DATA_BOOLEAN: return "bool";
    default: return "?";
    }
}

static const char *tens_str(const struct tens *t, char *buf, size_t n) {
    strf(buf, n, "%s[%s%s%s %lldx%lldx%lldx%lld /%lld,%lld,%lld,%lld]", t->name, t->virt ? "v " : "",
             t->byval ? "byval " : "", dt_name(t->dt), (long long)t->dim[0], (long long)t->dim[1],
             (long long)t->dim[2], (long long)t->dim[3], (long long)t->str[0], (long long)t->str[1],
             (long long)t->str[2], (long long)t->str[3]);
    return buf;
}

/* A tensor descriptor: uid 0 means a fresh virtual uid. 16-byte alignment, as cudnn-frontend. */
static struct tens gb_tensor(struct gb *g, const char *name, int64_t uid, cudnnDataType_t dt,
                             const int64_t dim[4], const int64_t str[4], int virt, int byval) {
    struct tens t;
    memset(&t, 0, sizeof t);
    strf(t.name, sizeof t.name, "%s", name);
    t.uid = uid ? uid : g->next_uid++;
    t.dt = dt;
    memcpy(t.dim, dim, sizeof t.dim);
    memcpy(t.str, str, sizeof t.str);
    t.virt = virt;
    t.byval = byval;
    char what[96];
    strf(what, sizeof what, "tensor %s", name);
    t.d = gb_new(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR, what);
    int64_t align = 16;
    bool bvirt = virt != 0, bbyval = byval != 0;
    gb_set(g, t.d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt, what);
    gb_set(g, t.d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim, what);
    gb_set(g, t.d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str, what);
    gb_set(g, t.d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &t.uid, what);
    gb_set(g, t.d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align, what);
    gb_set(g, t.d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &bvirt, what);
    gb_set(g, t.d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &bbyval, what);
    gb_fin(g, t.d, what);
    return t;
}

#define D4(a, b, c, d) ((const int64_t[4]){(a), (b), (c), (d)})

static struct tens gb_virt(struct gb *g, const char *name, cudnnDataType_t dt, const int64_t dim[4],
                           const int64_t str[4]) {
    return gb_tensor(g, name, 0, dt, dim, str, 1, 0);
}

static struct tens gb_scalar(struct gb *g, const char *name, int64_t uid) {
    return gb_tensor(g, name, uid, CUDNN_DATA_FLOAT, D4(1, 1, 1, 1), D4(1, 1, 1, 1), 0, 1);
}

static void gb_add_op(struct gb *g, cudnnBackendDescriptor_t op) {
    if (!gb_ok(g)) return;
    if (g->nops >= GB_MAX_OPS) {
        gb_fail(g, CUDNN_STATUS_INTERNAL_ERROR, "gb_add_op: too many ops");
        return;
    }
    g->ops[g->nops++] = op;
}

static const char *pw_name(cudnnPointwiseMode_t m) {
    switch (m) {
    case CUDNN_POINTWISE_ADD: return "ADD";
    case CUDNN_POINTWISE_SUB: return "SUB";
    case CUDNN_POINTWISE_MUL: return "MUL";
    case CUDNN_POINTWISE_DIV: return "DIV";
    case CUDNN_POINTWISE_EXP: return "EXP";
    case CUDNN_POINTWISE_LOG: return "LOG";
    case CUDNN_POINTWISE_IDENTITY: return "IDENTITY";
    case CUDNN_POINTWISE_GEN_INDEX: return "GEN_INDEX";
    case CUDNN_POINTWISE_CMP_GE: return "CMP_GE";
    case CUDNN_POINTWISE_BINARY_SELECT: return "BINARY_SELECT";
    default: return "?";
    }
}

/* y = mode(x[, b[, t]]) (BINARY_SELECT: y = t ? x : b); axis >= 0 for GEN_INDEX. */
static void gb_pw(struct gb *g, cudnnPointwiseMode_t mode, cudnnDataType_t prec, const struct tens *x,
                  const struct tens *b, const struct tens *t, const struct tens *y, int64_t axis) {
    char what[64], s1[128], s2[128], s3[128], s4[128];
    strf(what, sizeof what, "pointwise %s -> %s", pw_name(mode), y->name);
    cudnnBackendDescriptor_t pw = gb_new(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, what);
    gb_set(g, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, what);
    gb_set(g, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec, what);
    if (axis >= 0) gb_set(g, pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, what);
    gb_fin(g, pw, what);
    cudnnBackendDescriptor_t op = gb_new(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x->d, what);
    if (b) gb_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b->d, what);
    if (t) gb_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t->d, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y->d, what);
    float one = 1.0f;
    gb_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one, what);
    gb_fin(g, op, what);
    gb_add_op(g, op);
    const char *ax = axis < 0 ? "" : axis == 2 ? ", axis 2" : ", axis 3";
    gb_logf(g, "  %-13s (prec %s%s) %s = %s", pw_name(mode), dt_name(prec), ax, tens_str(y, s1, sizeof s1),
            tens_str(x, s2, sizeof s2));
    if (b) gb_logf(g, ", %s", tens_str(b, s3, sizeof s3));
    if (t) gb_logf(g, ", %s", tens_str(t, s4, sizeof s4));
    gb_logf(g, "\n");
}

static void gb_matmul(struct gb *g, const struct tens *a, const struct tens *b, const struct tens *c) {
    char what[64], s1[128], s2[128], s3[128];
    strf(what, sizeof what, "matmul -> %s", c->name);
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t mm = gb_new(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR, what);
    gb_set(g, mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, what);
    gb_fin(g, mm, what);
    cudnnBackendDescriptor_t op = gb_new(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a->d, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b->d, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c->d, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm, what);
    gb_fin(g, op, what);
    gb_add_op(g, op);
    gb_logf(g, "  %-13s (comp f32) %s = %s x %s\n", "MATMUL", tens_str(c, s1, sizeof s1),
            tens_str(a, s2, sizeof s2), tens_str(b, s3, sizeof s3));
}

static void gb_reduce(struct gb *g, cudnnReduceTensorOp_t rop, const struct tens *x, const struct tens *y) {
    char what[64], s1[128], s2[128];
    strf(what, sizeof what, "reduction -> %s", y->name);
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    bool det = false;
    cudnnBackendDescriptor_t rd = gb_new(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, what);
    gb_set(g, rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, what);
    gb_set(g, rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &rop, what);
    if (cudnnGetVersion() >= 91100) /* the attribute exists from 9.11 */
        gb_set(g, rd, CUDNN_ATTR_REDUCTION_IS_DETERMINISTIC, CUDNN_TYPE_BOOLEAN, 1, &det, what);
    gb_fin(g, rd, what);
    cudnnBackendDescriptor_t op = gb_new(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x->d, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y->d, what);
    gb_fin(g, op, what);
    gb_add_op(g, op);
    gb_logf(g, "  %-13s (comp f32) %s = %s\n", rop == CUDNN_REDUCE_TENSOR_MAX ? "REDUCE_MAX" : "REDUCE_ADD",
            tens_str(y, s1, sizeof s1), tens_str(x, s2, sizeof s2));
}

static void gb_reshape(struct gb *g, const struct tens *x, const struct tens *y) {
    char what[64], s1[128], s2[128];
    strf(what, sizeof what, "reshape -> %s", y->name);
    cudnnBackendDescriptor_t op = gb_new(g, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x->d, what);
    gb_set(g, op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y->d, what);
    gb_fin(g, op, what);
    gb_add_op(g, op);
    gb_logf(g, "  %-13s %s = %s\n", "RESHAPE", tens_str(y, s1, sizeof s1), tens_str(x, s2, sizeof s2));
}

/* Top-left causal mask, as cudnn-frontend's composite diagonal-band node (right bound 0) for
 * cuDNN < 9.21: keep row >= col, else -inf. Returns the masked tensor. */
static struct tens gb_causal(struct gb *g, const struct tens *s, const struct tens *neginf) {
    struct tens row = gb_virt(g, "row", CUDNN_DATA_INT32, s->dim, s->str);
    struct tens col = gb_virt(g, "col", CUDNN_DATA_INT32, s->dim, s->str);
    struct tens keep = gb_virt(g, "keep", CUDNN_DATA_BOOLEAN, s->dim, s->str);
    struct tens out = gb_virt(g, "S_masked", CUDNN_DATA_FLOAT, s->dim, s->str);
    gb_pw(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, s, NULL, NULL, &row, 2);
    gb_pw(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_FLOAT, s, NULL, NULL, &col, 3);
    gb_pw(g, CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, &row, &col, NULL, &keep, -1);
    gb_pw(g, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, s, neginf, &keep, &out, -1);
    return out;
}

/* ---------- the two graphs (cudnn-frontend's composite SDPA nodes, written out) ---------- */

/* Forward. lds: row stride of the stats (lse) tensor; o32: O in fp32 (else bf16). */
static void build_fwd(struct gb *g, int Tq, int Tk, int H, int Hkv, int D, int causal, int lds, int o32) {
    const int64_t sq = Tq, sk = Tk, h = H, hk = Hkv, d = D, ls = lds;
    const cudnnDataType_t BF = CUDNN_DATA_BFLOAT16, F = CUDNN_DATA_FLOAT;
    const int64_t *sdim = D4(1, h, sq, sk), *sstr = D4(h * sq * sk, sq * sk, sk, 1);
    const int64_t *rdim = D4(1, h, sq, 1), *rstr = D4(h * sq, sq, 1, 1);
    gb_logf(g, "SDPA forward Tq=%d Tk=%d H=%d Hkv=%d D=%d causal=%d lse stride %d, O %s\n", Tq, Tk, H,
            Hkv, D, causal, lds, o32 ? "f32" : "bf16");
    struct tens Q = gb_tensor(g, "Q", UID_Q, BF, D4(1, h, sq, d), D4(sq * h * d, d, h * d, 1), 0, 0);
    struct tens KT = gb_tensor(g, "KT", UID_K, BF, D4(1, hk, d, sk), D4(sk * hk * d, d, 1, hk * d), 0, 0);
    struct tens V = gb_tensor(g, "V", UID_V, BF, D4(1, hk, sk, d), D4(sk * hk * d, d, hk * d, 1), 0, 0);
    struct tens O = gb_tensor(g, "O", UID_O, o32 ? F : BF, D4(1, h, sq, d), D4(sq * h * d, d, h * d, 1), 0, 0);
    struct tens St = gb_tensor(g, "Stats", UID_STATS, F, rdim, D4(h * ls, ls, 1, 1), 0, 0);
    struct tens Sc = gb_scalar(g, "attn_scale", UID_SCALE);
    struct tens S = gb_virt(g, "S", F, sdim, sstr);
    gb_matmul(g, &Q, &KT, &S);
    struct tens S1 = gb_virt(g, "S_scaled", F, sdim, sstr);
    gb_pw(g, CUDNN_POINTWISE_MUL, F, &S, &Sc, NULL, &S1, -1);
    struct tens last = S1;
    if (causal) {
        struct tens ninf = gb_scalar(g, "neg_inf", UID_NEGINF);
        last = gb_causal(g, &S1, &ninf);
    }
    struct tens M = gb_virt(g, "M", F, rdim, rstr);
    gb_reduce(g, CUDNN_REDUCE_TENSOR_MAX, &last, &M);
    struct tens Sub = gb_virt(g, "S_sub_M", F, sdim, sstr);
    gb_pw(g, CUDNN_POINTWISE_SUB, F, &last, &M, NULL, &Sub, -1);
    struct tens E = gb_virt(g, "E", F, sdim, sstr);
    gb_pw(g, CUDNN_POINTWISE_EXP, F, &Sub, NULL, NULL, &E, -1);
    struct tens Z = gb_virt(g, "Z", F, rdim, rstr);
    gb_reduce(g, CUDNN_REDUCE_TENSOR_ADD, &E, &Z);
    struct tens LZ = gb_virt(g, "logZ", F, rdim, rstr);
    gb_pw(g, CUDNN_POINTWISE_LOG, F, &Z, NULL, NULL, &LZ, -1);
    gb_pw(g, CUDNN_POINTWISE_ADD, F, &M, &LZ, NULL, &St, -1);
    struct tens P = gb_virt(g, "P", BF, sdim, sstr);
    gb_pw(g, CUDNN_POINTWISE_DIV, F, &E, &Z, NULL, &P, -1);
    gb_matmul(g, &P, &V, &O);
}

/* Backward. g32q / g32kv: dQ / dK, dV written in fp32 (else bf16). */
static void build_bwd(struct gb *g, int Tq, int Tk, int H, int Hkv, int D, int causal, int lds, int g32q,
                      int g32kv) {
    const int64_t sq = Tq, sk = Tk, h = H, hk = Hkv, d = D, ls = lds;
    const cudnnDataType_t BF = CUDNN_DATA_BFLOAT16, F = CUDNN_DATA_FLOAT;
    const int64_t *sdim = D4(1, h, sq, sk), *sstr = D4(h * sq * sk, sq * sk, sk, 1);
    const int64_t *tdim = D4(1, h, sk, sq), *tstr = D4(h * sq * sk, sq * sk, 1, sk); /* transposed view */
    const int64_t *rdim = D4(1, h, sq, 1), *rstr = D4(h * sq, sq, 1, 1);
    const int64_t *qdim = D4(1, h, sq, d), *qstr = D4(sq * h * d, d, h * d, 1);
    const int64_t *kdim = D4(1, hk, sk, d), *kstr = D4(sk * hk * d, d, hk * d, 1);
    const int64_t *ktdim = D4(1, hk, d, sk), *ktstr = D4(sk * hk * d, d, 1, hk * d);
    gb_logf(g, "SDPA backward Tq=%d Tk=%d H=%d Hkv=%d D=%d causal=%d lse stride %d, dQ %s, dK/dV %s\n", Tq,
            Tk, H, Hkv, D, causal, lds, g32q ? "f32" : "bf16", g32kv ? "f32" : "bf16");
    struct tens Q = gb_tensor(g, "Q", UID_Q, BF, qdim, qstr, 0, 0);
    struct tens KT = gb_tensor(g, "KT", UID_K, BF, ktdim, ktstr, 0, 0);
    struct tens VT = gb_tensor(g, "VT", UID_V, BF, ktdim, ktstr, 0, 0);
    struct tens O = gb_tensor(g, "O", UID_O, BF, qdim, qstr, 0, 0);
    struct tens dO = gb_tensor(g, "dO", UID_DO, BF, qdim, qstr, 0, 0);
    struct tens St = gb_tensor(g, "Stats", UID_STATS, F, rdim, D4(h * ls, ls, 1, 1), 0, 0);
    struct tens dQ = gb_tensor(g, "dQ", UID_DQ, g32q ? F : BF, qdim, qstr, 0, 0);
    struct tens dK = gb_tensor(g, "dK", UID_DK, g32kv ? F : BF, kdim, kstr, 0, 0);
    struct tens dV = gb_tensor(g, "dV", UID_DV, g32kv ? F : BF, kdim, kstr, 0, 0);
    struct tens Sc = gb_scalar(g, "attn_scale", UID_SCALE);
    struct tens One = gb_scalar(g, "one", UID_ONE);
    struct tens Ssum = gb_tensor(g, "softmax_sum", UID_SSUM, F, rdim, rstr, 0, 0);
    struct tens dQacc = gb_tensor(g, "dQ_accum", UID_DQACC, F, qdim, D4(h * sq * d, sq * d, d, 1), 0, 0);

    /* softmax_sum = rowsum(dO * O) * 1 */
    struct tens dOO = gb_virt(g, "dO_O", F, qdim, D4(h * sq * d, sq * d, h * d, 1));
    gb_pw(g, CUDNN_POINTWISE_MUL, F, &dO, &O, NULL, &dOO, -1);
    struct tens dOOs = gb_virt(g, "dO_O_sum", F, rdim, rstr);
    gb_reduce(g, CUDNN_REDUCE_TENSOR_ADD, &dOO, &dOOs);
    gb_pw(g, CUDNN_POINTWISE_MUL, F, &dOOs, &One, NULL, &Ssum, -1);
    /* P = exp(scale Q K^T - stats) (masked) */
    struct tens S = gb_virt(g, "S", F, sdim, sstr);
    gb_matmul(g, &Q, &KT, &S);
    struct tens S1 = gb_virt(g, "S_scaled", F, sdim, sstr);
    gb_pw(g, CUDNN_POINTWISE_MUL, F, &S, &Sc, NULL, &S1, -1);
    struct tens S2 = gb_virt(g, "S_sub_lse", F, sdim, sstr);
    gb_pw(g, CUDNN_POINTWISE_SUB, F, &S1, &St, NULL, &S2, -1);
    struct tens last = S2;
    if (causal) {
        struct tens ninf = gb_scalar(g, "neg_inf", UID_NEGINF);
        last = gb_causal(g, &S2, &ninf);
    }
    struct tens P = gb_virt(g, "P", F, sdim, sstr);
    gb_pw(g, CUDNN_POINTWISE_EXP, F, &last, NULL, NULL, &P, -1);
    /* dV = P^T dO (summed over the heads of a group) */
    struct tens PT = gb_virt(g, "PT", BF, tdim, tstr);
    gb_reshape(g, &P, &PT);
    if (H == Hkv) {
        gb_matmul(g, &PT, &dO, &dV);
    } else {
        struct tens dVf = gb_virt(g, "dV_fullhead", BF, D4(1, h, sk, d), D4(h * sk * d, sk * d, d, 1));
        gb_matmul(g, &PT, &dO, &dVf);
        gb_reduce(g, CUDNN_REDUCE_TENSOR_ADD, &dVf, &dV);
    }
    /* dS = scale P (dO V^T - softmax_sum) */
    struct tens dP = gb_virt(g, "dP", F, sdim, sstr);
    gb_matmul(g, &dO, &VT, &dP);
    struct tens dPs = gb_virt(g, "dP_sub", F, sdim, sstr);
    gb_pw(g, CUDNN_POINTWISE_SUB, F, &dP, &Ssum, NULL, &dPs, -1);
    struct tens dS = gb_virt(g, "dS", F, sdim, sstr);
    gb_pw(g, CUDNN_POINTWISE_MUL, F, &dPs, &P, NULL, &dS, -1);
    struct tens dS1 = gb_virt(g, "dS_scaled", F, sdim, sstr);
    gb_pw(g, CUDNN_POINTWISE_MUL, F, &dS, &Sc, NULL, &dS1, -1);
    /* dK = dS^T Q */
    struct tens dST = gb_virt(g, "dST", BF, tdim, tstr);
    gb_reshape(g, &dS1, &dST);
    if (H == Hkv) {
        gb_matmul(g, &dST, &Q, &dK);
    } else {
        struct tens dKf = gb_virt(g, "dK_fullhead", BF, D4(1, h, sk, d), D4(h * sk * d, sk * d, d, 1));
        gb_matmul(g, &dST, &Q, &dKf);
        gb_reduce(g, CUDNN_REDUCE_TENSOR_ADD, &dKf, &dK);
    }
    /* dQ = dS K (fp32 accumulator, then dQ) */
    struct tens K = gb_virt(g, "K", F, kdim, kstr);
    gb_reshape(g, &KT, &K);
    gb_matmul(g, &dS1, &K, &dQacc);
    gb_pw(g, CUDNN_POINTWISE_IDENTITY, F, &dQacc, NULL, NULL, &dQ, -1);
}

/* Operation graph, heuristics (mode A, or FALLBACK when fallback is set), the first engine
 * config (from index `first`) whose plan finalizes. Returns the plan (NULL on failure, reason
 * in g->err). */
static cudnnBackendDescriptor_t gb_plan(struct gb *g, cudnnHandle_t h, int fallback, int first, int64_t *ws,
                                        char *engine, size_t engine_n) {
    cudnnBackendDescriptor_t graph = gb_new(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, "operation graph");
    gb_set(g, graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->nops, g->ops,
           "operation graph ops");
    gb_set(g, graph, ATTR_GRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h, "operation graph handle");
    gb_fin(g, graph, "operation graph finalize");
    if (!gb_ok(g)) return NULL;
    char tried[640] = "";
    {
        const int mi = fallback ? 1 : 0;
        cudnnBackendHeurMode_t mode = fallback ? CUDNN_HEUR_MODE_FALLBACK : CUDNN_HEUR_MODE_A;
        cudnnBackendDescriptor_t heur = gb_new(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heuristics");
        gb_set(g, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph,
               "heuristics graph");
        gb_set(g, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics mode");
        gb_fin(g, heur, mi == 0 ? "heuristics (mode A) finalize" : "heuristics (mode FALLBACK) finalize");
        if (!gb_ok(g)) return NULL;
        int64_t count = 0;
        cudnnStatus_t st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                                    0, &count, NULL);
        if (st != CUDNN_STATUS_SUCCESS) {
            gb_fail(g, st, "heuristics result count");
            return NULL;
        }
        if (count > 16) count = 16;
        cudnnBackendDescriptor_t cfg[16];
        for (int64_t i = 0; i < count; i++) cfg[i] = gb_new(g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config");
        if (!gb_ok(g)) return NULL;
        int64_t got = 0;
        if (count > 0) {
            st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                          &got, cfg);
            if (st != CUDNN_STATUS_SUCCESS) {
                gb_fail(g, st, "heuristics results");
                return NULL;
            }
        }
        catf(tried, sizeof tried, "mode %s: %lld config(s)", mi == 0 ? "A" : "FALLBACK",
                                   (long long)got);
        for (int64_t i = first < got ? first : 0; i < got; i++) {
            cudnnBackendDescriptor_t plan = NULL;
            st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan);
            if (st != CUDNN_STATUS_SUCCESS) {
                gb_fail(g, st, "execution plan create");
                return NULL;
            }
            st = cudnnBackendSetAttribute(plan, ATTR_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
            if (st == CUDNN_STATUS_SUCCESS)
                st = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i]);
            if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(plan);
            /* which engine (global index) */
            int64_t eidx = -1, n = 0;
            cudnnBackendDescriptor_t eng = NULL;
            if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) == CUDNN_STATUS_SUCCESS) {
                if (cudnnBackendGetAttribute(cfg[i], CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n,
                                             &eng) == CUDNN_STATUS_SUCCESS)
                    cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &eidx);
                cudnnBackendDestroyDescriptor(eng);
            }
            if (st == CUDNN_STATUS_SUCCESS) {
                *ws = 0;
                cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, ws);
                strf(engine, engine_n, "engine %lld (heuristics mode %s, config %lld of %lld)", (long long)eidx,
                         mi == 0 ? "A" : "FALLBACK", (long long)i, (long long)got);
                return plan;
            }
            char msg[300] = "";
            cudnnGetLastErrorString(msg, sizeof msg);
            for (char *c = msg; *c; c++)
                if (*c == '\n') *c = ' ';
            catf(tried, sizeof tried, "; engine %lld plan -> %s (%d) %s", (long long)eidx,
                                       cudnnGetErrorString(st), (int)st, msg);
            cudnnBackendDestroyDescriptor(plan);
        }
    }
    gb_fail(g, CUDNN_STATUS_NOT_SUPPORTED, "no engine config gave a plan");
    strf(g->err, sizeof g->err, "no plan: %s", tried);
    return NULL;
}

static void gb_destroy(struct gb *g) {
    if (!g) return;
    for (int i = g->nall - 1; i >= 0; i--) cudnnBackendDestroyDescriptor(g->all[i]);
    free(g);
}

/* ---------- plan cache ---------- */

struct plan {
    int kind, Tq, Tk, H, Hkv, D, causal, ld; /* key; ld = lse row stride when direct, 0 staged */
    int ok;                                  /* 0: no configuration gave a plan */
    cudnnBackendDescriptor_t exec;
    struct gb *g;           /* the graph's descriptors, alive as long as the plan */
    int o32, g32q, g32kv;   /* output dtypes chosen (see build_fwd / build_bwd) */
    int64_t cudnn_ws;       /* bytes of cuDNN's own workspace */
    size_t need;            /* bytes of a call with fp32 outputs: cuDNN's + staging */
    size_t need_direct;     /* bytes of a call with bf16 outputs written directly (the *_bf16 calls) */
    double build_s;         /* seconds to build (all attempts) */
    int warned;             /* workspace shortfall reported */
    char desc[256];         /* "O f32, lse direct, engine 6 ..." */
    char why[1400];         /* the failures, one per attempt */
};

struct cudnn_attn {
    cudnnHandle_t h;
    void *ws;
    size_t ws_bytes;
    struct plan **plans;
    int nplans, cap;
    int verbose;
    int try_o32, try_g32, force_staged; /* RT_CUDNN_ATTN_CFG knobs */
    int clear_dqacc;                    /* memset dQ_accum before the backward (cuDNN < 9.6) */
    int config_index;          /* RT_CUDNN_ATTN_CONFIG_INDEX: heuristics result to use (0 = first) */
    float scale, neg_inf, one; /* by-value scalars of the graphs */
    char path[320];
};


/* Workspace of one call with plan p, in the order the calls carve it: first what every call
 * needs (cuDNN's own, the staged lse, the backward's softmax_sum and dQ_accum: the "direct"
 * bytes), then the outputs staged in bf16 before they are widened or accumulated into the
 * fp32 outputs of cudnn_attn_forward / cudnn_attn_backward. */
static size_t plan_direct(const struct plan *p) {
    const size_t nq = (size_t)p->Tq * p->H * p->D, rows = (size_t)p->H * p->Tq * 4;
    size_t n = align_up((size_t)p->cudnn_ws) + (p->ld ? 0 : align_up(rows));
    if (p->kind == KIND_BWD) n += align_up(rows) + align_up(nq * 4); /* softmax_sum, dQ_accum */
    return n;
}
static size_t plan_need(const struct plan *p) {
    const size_t nq = (size_t)p->Tq * p->H * p->D, nk = (size_t)p->Tk * p->Hkv * p->D;
    size_t n = plan_direct(p);
    if (p->kind == KIND_FWD) {
        if (!p->o32) n += align_up(nq * 2);
    } else {
        n += align_up(nq * (p->g32q ? 4 : 2));      /* dQ */
        n += 2 * align_up(nk * (p->g32kv ? 4 : 2)); /* dK, dV */
    }
    return n;
}

/* What every shape reserves: the delta of the native path a call may fall back to. */
static size_t fallback_bytes(int Tq, int H, int ld) { return align_up((size_t)H * (ld > Tq ? ld : Tq) * 4); }

static struct plan *find_plan(struct cudnn_attn *ca, int kind, int Tq, int Tk, int H, int Hkv, int D, int causal,
                              int ld) {
    for (int i = 0; i < ca->nplans; i++) {
        struct plan *p = ca->plans[i];
        if (p->kind == kind && p->Tq == Tq && p->Tk == Tk && p->H == H && p->Hkv == Hkv && p->D == D &&
            p->causal == causal && p->ld == ld)
            return p;
    }
    return NULL;
}

static struct plan *get_plan(struct cudnn_attn *ca, int kind, int Tq, int Tk, int H, int Hkv, int D, int causal,
                             int ld) {
    struct plan *p = find_plan(ca, kind, Tq, Tk, H, Hkv, D, causal, ld);
    if (p) return p;
    p = calloc(1, sizeof *p);
    if (!p) rt_fatal(__FILE__, __LINE__, "cudnn_attn: out of host memory");
    p->kind = kind; p->Tq = Tq; p->Tk = Tk; p->H = H; p->Hkv = Hkv; p->D = D; p->causal = causal; p->ld = ld;
    const int lds = ld ? ld : Tq;
    /* Output dtypes tried in order: bf16 (cudnn-frontend's SDPA graphs), heuristics mode A, then
     * mode FALLBACK. fp32 outputs (O, dQ, dK, dV straight in fp32) are tried first only on request
     * (RT_CUDNN_ATTN_CFG=o32 / g32): cuDNN 9.19 builds those plans but computes them wrong on an
     * H200 (O partly unwritten, dQ and MHA dK/dV off by O(1); docs/cudnn_attention.md). */
    static const int fwd_cfg[3] = {1, 0, 0};
    static const int bwd_cfg[4][2] = {{1, 1}, {1, 0}, {0, 0}, {0, 0}};
    const int ncfg = kind == KIND_FWD ? 3 : 4;
    double t0 = rt_now();
    for (int c = 0; c < ncfg && !p->ok; c++) {
        const int fallback = c == ncfg - 1;
        int skip = kind == KIND_FWD ? (fwd_cfg[c] && !ca->try_o32)
                                    : ((bwd_cfg[c][0] || bwd_cfg[c][1]) && !ca->try_g32);
        if (skip) continue;
        struct gb *g = calloc(1, sizeof *g);
        if (!g) rt_fatal(__FILE__, __LINE__, "cudnn_attn: out of host memory");
        g->next_uid = UID_VIRTUAL;
        if (kind == KIND_FWD) build_fwd(g, Tq, Tk, H, Hkv, D, causal, lds, fwd_cfg[c]);
        else build_bwd(g, Tq, Tk, H, Hkv, D, causal, lds, bwd_cfg[c][0], bwd_cfg[c][1]);
        char engine[128] = "";
        int64_t ws = 0;
        cudnnBackendDescriptor_t exec =
            gb_ok(g) ? gb_plan(g, ca->h, fallback, fallback ? 0 : ca->config_index, &ws, engine, sizeof engine) : NULL;
        if (ca->verbose >= 2 || (ca->verbose && !exec && c == 0)) fprintf(stderr, "[cudnn_attn] graph:\n%s", g->log);
        if (exec) {
            p->ok = 1;
            p->exec = exec;
            p->g = g;
            p->cudnn_ws = ws;
            if (kind == KIND_FWD) p->o32 = fwd_cfg[c];
            else { p->g32q = bwd_cfg[c][0]; p->g32kv = bwd_cfg[c][1]; }
            if (kind == KIND_FWD)
                strf(p->desc, sizeof p->desc, "O %s, lse %s, %s", p->o32 ? "f32" : "bf16", ld ? "direct" : "staged",
                         engine);
            else
                strf(p->desc, sizeof p->desc, "dQ %s, dK/dV %s, lse %s, %s", p->g32q ? "f32" : "bf16",
                         p->g32kv ? "f32" : "bf16", ld ? "direct" : "staged", engine);
        } else {
            catf(p->why, sizeof p->why, "%s[%s%s] %s", p->why[0] ? " | " : "",
                 kind == KIND_FWD ? (fwd_cfg[c] ? "O f32" : "O bf16")
                                  : (bwd_cfg[c][0] ? (bwd_cfg[c][1] ? "grads f32" : "dQ f32 dKV bf16") : "grads bf16"),
                 fallback ? ", mode FALLBACK" : "", g->err);
            gb_destroy(g);
        }
    }
    p->build_s = rt_now() - t0;
    if (p->ok) p->need = plan_need(p), p->need_direct = plan_direct(p);
    if (ca->verbose) {
        char b[32];
        fmt_bytes(b, sizeof b, (double)p->need);
        fprintf(stderr, "[cudnn_attn] %s plan Tq=%d Tk=%d H=%d Hkv=%d D=%d causal=%d ld=%d: %s (%.2f s)%s%s%s\n",
                kind == KIND_FWD ? "fwd" : "bwd", Tq, Tk, H, Hkv, D, causal, ld, p->ok ? p->desc : "FAILED", p->build_s,
                p->ok ? ", workspace " : "", p->ok ? b : "", p->why[0] ? "\n    failed attempts: " : "");
        if (p->why[0]) fprintf(stderr, "    %s\n", p->why);
    }
    if (ca->nplans == ca->cap) {
        ca->cap = ca->cap ? 2 * ca->cap : 16;
        ca->plans = realloc(ca->plans, (size_t)ca->cap * sizeof *ca->plans);
        if (!ca->plans) rt_fatal(__FILE__, __LINE__, "cudnn_attn: out of host memory");
    }
    ca->plans[ca->nplans++] = p;
    return p;
}

/* The plan a call with lse view `lse` (row stride ld) uses: lse direct when the view is 16-byte
 * aligned with ld % 4 == 0 and a plan builds, else staged through the workspace. */
static struct plan *plan_for(struct cudnn_attn *ca, int kind, int Tq, int Tk, int H, int Hkv, int D, int causal,
                             int ld, int lse_aligned) {
    if (lse_aligned && ld % 4 == 0 && !ca->force_staged) {
        struct plan *p = get_plan(ca, kind, Tq, Tk, H, Hkv, D, causal, ld);
        if (p->ok) return p;
    }
    return get_plan(ca, kind, Tq, Tk, H, Hkv, D, causal, 0);
}

static void plan_free(struct plan *p) {
    if (p->exec) cudnnBackendDestroyDescriptor(p->exec);
    gb_destroy(p->g);
    free(p);
}

/* ---------- public API ---------- */

size_t cudnn_attn_version(void) { return cudnnGetVersion(); }

/* Why the library or the shape rules cuDNN out (NULL: they do not); no device call. */
static const char *shape_why(int Tq, int Tk, int H, int Hkv, int D, int causal) {
    static char buf[128];
    const size_t ver = cudnnGetVersion();
    if (ver < 90000) return "cuDNN older than 9.0";
    if (ver == 91000 || ver == 91001) return "cuDNN 9.10.0/9.10.1 (known SDPA bugs)";
    if (Tq < 1 || Tk < 1 || (Tq == 1 && Tk == 1)) {
        strf(buf, sizeof buf, "Tq=%d Tk=%d not taken by cuDNN", Tq, Tk);
        return buf;
    }
    if (D % 8 != 0 || D > 128 || D < 8) {
        strf(buf, sizeof buf, "D=%d not taken by cuDNN", D);
        return buf;
    }
    if (Hkv < 1 || H % Hkv != 0) return "H % Hkv != 0";
    if (causal && Tq != Tk) return "causal with Tq != Tk";
    if (ver < 91600 && Tk % 128 != 0) return "Tk % 128 != 0 needs cuDNN >= 9.16 (no padding-mask workaround here)";
    return NULL;
}

static const char *unsupported_why(int Tq, int Tk, int H, int Hkv, int D, int causal) {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
        return "no CUDA device";
    if (major < 8) return "device older than sm_80";
    return shape_why(Tq, Tk, H, Hkv, D, causal);
}

int cudnn_attn_supported(int Tq, int Tk, int H, int Hkv, int D, int causal) {
    return unsupported_why(Tq, Tk, H, Hkv, D, causal) == NULL;
}

int cudnn_attn_takes_shape(int Tq, int Tk, int H, int Hkv, int D, int causal) {
    return shape_why(Tq, Tk, H, Hkv, D, causal) == NULL;
}

size_t cudnn_attn_workspace_estimate(int Tq, int Tk, int H, int Hkv, int D, int causal, int ld, int direct,
                                     size_t cudnn_own) {
    size_t need = fallback_bytes(Tq, H, ld);
    for (int kind = KIND_FWD; kind <= KIND_BWD; kind++) {
        struct plan p = {.kind = kind, .Tq = Tq, .Tk = Tk, .H = H, .Hkv = Hkv, .D = D, .causal = causal,
                         .ld = ld % 4 == 0 ? ld : 0, .cudnn_ws = (int64_t)cudnn_own}; /* as plan_for picks */
        size_t n = direct ? plan_direct(&p) : plan_need(&p);
        if (n > need) need = n;
    }
    return need;
}

struct cudnn_attn *cudnn_attn_init(size_t workspace_bytes) {
    struct cudnn_attn *ca = calloc(1, sizeof *ca);
    if (!ca) rt_fatal(__FILE__, __LINE__, "cudnn_attn: out of host memory");
    CUDNN_CHECK(cudnnCreate(&ca->h));
    const char *v = getenv("RT_CUDNN_ATTN_VERBOSE");
    ca->verbose = v ? atoi(v) : 0;
    /* tuning / diagnosis knobs (not settings): RT_CUDNN_ATTN_CFG holds any of o32 (try the forward
     * with O in fp32 first), g32 (try fp32 dQ, dK, dV first), staged (lse through the workspace),
     * clear (memset dQ_accum before every backward, as needed before cuDNN 9.6);
     * RT_CUDNN_ATTN_CONFIG_INDEX=k takes the k-th engine config of the mode-A heuristics */
    const char *cfg = getenv("RT_CUDNN_ATTN_CFG");
    ca->clear_dqacc = cudnnGetVersion() < 90600;
    if (cfg) {
        if (strstr(cfg, "clear")) ca->clear_dqacc = 1;
        ca->try_o32 = strstr(cfg, "o32") != NULL;
        ca->try_g32 = strstr(cfg, "g32") != NULL;
        ca->force_staged = strstr(cfg, "staged") != NULL;
    }
    const char *ci = getenv("RT_CUDNN_ATTN_CONFIG_INDEX");
    ca->config_index = ci ? atoi(ci) : 0;
    ca->neg_inf = -INFINITY;
    ca->one = 1.0f;
    strf(ca->path, sizeof ca->path, "none yet");
    cudnn_attn_reserve(ca, workspace_bytes);
    if (ca->verbose) {
        size_t ver = cudnnGetVersion();
        fprintf(stderr, "[cudnn_attn] cuDNN %zu.%zu.%zu (headers %d.%d.%d)\n", ver / 10000, ver / 100 % 100, ver % 100,
                CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
    }
    return ca;
}

void cudnn_attn_free(struct cudnn_attn *ca) {
    if (!ca) return;
    for (int i = 0; i < ca->nplans; i++) plan_free(ca->plans[i]);
    free(ca->plans);
    if (ca->ws) CUDA_CHECK(cudaFree(ca->ws));
    cudnnDestroy(ca->h);
    free(ca);
}

void cudnn_attn_reserve(struct cudnn_attn *ca, size_t bytes) {
    if (!ca || bytes <= ca->ws_bytes) return;
    CUDA_CHECK(cudaDeviceSynchronize());
    if (ca->ws) CUDA_CHECK(cudaFree(ca->ws));
    ca->ws = NULL;
    CUDA_CHECK(cudaMalloc(&ca->ws, bytes));
    ca->ws_bytes = bytes;
}

size_t cudnn_attn_workspace_bytes(const struct cudnn_attn *ca) { return ca ? ca->ws_bytes : 0; }

void cudnn_attn_poison_workspace(struct cudnn_attn *ca) {
    if (!ca || !ca->ws) return;
    CUDA_CHECK(cudaMemset(ca->ws, 0xff, ca->ws_bytes));
    CUDA_CHECK(cudaDeviceSynchronize());
}

const char *cudnn_attn_last_path(const struct cudnn_attn *ca) { return ca ? ca->path : "native (built without cuDNN)"; }

static size_t need_of(const struct plan *p, int direct) {
    if (!p || !p->ok) return 0;
    return direct ? p->need_direct : p->need;
}

size_t cudnn_attn_prepare(struct cudnn_attn *ca, int Tq, int Tk, int H, int Hkv, int D, int causal, int ld,
                          int direct) {
    const size_t fallback = fallback_bytes(Tq, H, ld);
    if (!ca || unsupported_why(Tq, Tk, H, Hkv, D, causal)) return fallback;
    struct plan *ps[4] = {plan_for(ca, KIND_FWD, Tq, Tk, H, Hkv, D, causal, ld, 1),
                          plan_for(ca, KIND_BWD, Tq, Tk, H, Hkv, D, causal, ld, 1), NULL, NULL};
    /* a call with a misaligned lse view takes the staged plan: count it too */
    if (ld % 4 == 0) {
        ps[2] = find_plan(ca, KIND_FWD, Tq, Tk, H, Hkv, D, causal, 0);
        ps[3] = find_plan(ca, KIND_BWD, Tq, Tk, H, Hkv, D, causal, 0);
    }
    size_t need = fallback;
    for (int i = 0; i < 4; i++)
        if (need_of(ps[i], direct) > need) need = need_of(ps[i], direct);
    return need;
}

/* A call whose plan needs more workspace than reserved runs natively (no allocation inside the
 * step), with one warning per plan. */
static const char *ws_short(struct cudnn_attn *ca, struct plan *p, const char *fn, int direct) {
    static char buf[200];
    if (need_of(p, direct) <= ca->ws_bytes) return NULL;
    strf(buf, sizeof buf, "workspace %zu bytes < %zu needed: call cudnn_attn_prepare/reserve at startup",
             ca->ws_bytes, need_of(p, direct));
    if (!p->warned)
        fprintf(stderr, "[cudnn_attn] %s Tq=%d Tk=%d H=%d Hkv=%d D=%d causal=%d: %s; running the native kernel\n", fn,
                p->Tq, p->Tk, p->H, p->Hkv, p->D, p->causal, buf);
    p->warned = 1;
    return buf;
}

static void execute(struct cudnn_attn *ca, const struct plan *p, int n, const int64_t *uids, void **ptrs, void *ws,
                    cudaStream_t s) {
    cudnnBackendDescriptor_t vp = NULL;
    CUDNN_CHECK(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp));
    CUDNN_CHECK(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids));
    CUDNN_CHECK(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs));
    CUDNN_CHECK(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws));
    CUDNN_CHECK(cudnnBackendFinalize(vp));
    CUDNN_CHECK(cudnnSetStream(ca->h, s));
    CUDNN_CHECK(cudnnBackendExecute(ca->h, p->exec, vp));
    CUDNN_CHECK(cudnnBackendDestroyDescriptor(vp));
}

/* Carves the workspace in order; returns the next free byte. */
static char *carve(char **at, size_t bytes) {
    char *p = *at;
    *at += align_up(bytes);
    return p;
}

/* The plan of a call, or why there is none (then the caller runs natively or declines). */
static const char *plan_or_why(struct cudnn_attn *ca, struct plan **pp, int kind, const void *const *ptrs, int nptrs,
                               const float *lse, int ld, int Tq, int Tk, int H, int Hkv, int D, int causal, int direct,
                               const char *fn) {
    const char *why = ca ? unsupported_why(Tq, Tk, H, Hkv, D, causal) : "built without a cuDNN handle";
    for (int i = 0; i < nptrs && !why; i++)
        if (!aligned16(ptrs[i])) why = "pointers not 16-byte aligned";
    if (!why && ld < Tq) why = "ld < Tq";
    if (!why) {
        *pp = plan_for(ca, kind, Tq, Tk, H, Hkv, D, causal, ld, aligned16(lse));
        if (!(*pp)->ok) why = "no cuDNN plan for this shape (RT_CUDNN_ATTN_VERBOSE=1 prints why)";
        else why = ws_short(ca, *pp, fn, direct);
    }
    return why;
}

/* Runs a forward plan writing O to o (bf16 unless p->o32); the lse directly or staged. */
static void fwd_exec(struct cudnn_attn *ca, const struct plan *p, void *o, float *lse, int ld, const rt_bf16 *q,
                     const rt_bf16 *k, const rt_bf16 *v, int Tq, int H, int causal, cudaStream_t s) {
    char *at = ca->ws;
    void *cws = carve(&at, (size_t)p->cudnn_ws);
    float *st = p->ld ? lse : (float *)carve(&at, (size_t)H * Tq * 4);
    ca->scale = 1.0f / sqrtf((float)p->D);
    int64_t uids[7] = {UID_Q, UID_K, UID_V, UID_O, UID_STATS, UID_SCALE, UID_NEGINF};
    void *ptrs[7] = {(void *)q, (void *)k, (void *)v, o, st, &ca->scale, &ca->neg_inf};
    execute(ca, p, causal ? 7 : 6, uids, ptrs, cws, s);
    if (!p->ld)
        CUDA_CHECK(cudaMemcpy2DAsync(lse, (size_t)ld * 4, st, (size_t)Tq * 4, (size_t)Tq * 4, (size_t)H,
                                     cudaMemcpyDeviceToDevice, s));
    char b[32];
    fmt_bytes(b, sizeof b, (double)p->need);
    strf(ca->path, sizeof ca->path, "cudnn fwd [%s] ws %s", p->desc, b);
}

void cudnn_attn_forward(struct cudnn_attn *ca, float *out, float *lse, int ld, const rt_bf16 *q, const rt_bf16 *k,
                        const rt_bf16 *v, int Tq, int Tk, int H, int Hkv, int D, int causal, cudaStream_t s) {
    struct plan *p = NULL;
    const void *ptrs[4] = {out, q, k, v};
    const char *why = plan_or_why(ca, &p, KIND_FWD, ptrs, 4, lse, ld, Tq, Tk, H, Hkv, D, causal, 0, "cudnn_attn_forward");
    if (why) {
        if (ca) strf(ca->path, sizeof ca->path, "native fwd (%s)", why);
        cuda_attn_forward(out, lse, ld, q, k, v, Tq, Tk, H, Hkv, D, causal, s);
        return;
    }
    const size_t nq = (size_t)Tq * H * D;
    rt_bf16 *o16 = p->o32 ? NULL : (rt_bf16 *)((char *)ca->ws + p->need_direct);
    fwd_exec(ca, p, p->o32 ? (void *)out : (void *)o16, lse, ld, q, k, v, Tq, H, causal, s);
    if (!p->o32) cuda_to_f32(out, o16, (int64_t)nq, s);
}

int cudnn_attn_forward_bf16(struct cudnn_attn *ca, rt_bf16 *out, float *lse, int ld, const rt_bf16 *q,
                            const rt_bf16 *k, const rt_bf16 *v, int Tq, int Tk, int H, int Hkv, int D, int causal,
                            cudaStream_t s) {
    struct plan *p = NULL;
    const void *ptrs[4] = {out, q, k, v};
    const char *why =
        plan_or_why(ca, &p, KIND_FWD, ptrs, 4, lse, ld, Tq, Tk, H, Hkv, D, causal, 1, "cudnn_attn_forward_bf16");
    if (!why && p->o32) why = "the plan writes O in fp32";
    if (why) {
        if (ca) strf(ca->path, sizeof ca->path, "declined bf16 fwd (%s)", why);
        return 0;
    }
    fwd_exec(ca, p, out, lse, ld, q, k, v, Tq, H, causal, s);
    return 1;
}

/* Runs a backward plan writing dQ, dK, dV to the given buffers (bf16 unless p->g32q / g32kv). */
static void bwd_exec(struct cudnn_attn *ca, const struct plan *p, void *dq, void *dk, void *dv, const rt_bf16 *dout,
                     const rt_bf16 *q, const rt_bf16 *k, const rt_bf16 *v, const rt_bf16 *out, const float *lse,
                     int ld, int Tq, int H, int causal, cudaStream_t s) {
    const size_t nq = (size_t)Tq * H * p->D;
    char *at = ca->ws;
    void *cws = carve(&at, (size_t)p->cudnn_ws);
    float *st = p->ld ? (float *)lse : (float *)carve(&at, (size_t)H * Tq * 4);
    float *ssum = (float *)carve(&at, (size_t)H * Tq * 4);
    float *dqacc = (float *)carve(&at, nq * 4);
    if (!p->ld)
        CUDA_CHECK(cudaMemcpy2DAsync(st, (size_t)Tq * 4, lse, (size_t)ld * 4, (size_t)Tq * 4, (size_t)H,
                                     cudaMemcpyDeviceToDevice, s));
    /* cuDNN >= 9.6 clears dQ_accum itself (cudnn-frontend clears it only before 9.6) */
    if (ca->clear_dqacc) CUDA_CHECK(cudaMemsetAsync(dqacc, 0, nq * 4, s));
    ca->scale = 1.0f / sqrtf((float)p->D);
    int64_t uids[15] = {UID_Q, UID_K, UID_V, UID_O, UID_DO, UID_STATS, UID_DQ, UID_DK, UID_DV,
                        UID_SCALE, UID_ONE, UID_SSUM, UID_DQACC, UID_NEGINF};
    void *ptrs[15] = {(void *)q, (void *)k, (void *)v, (void *)out, (void *)dout, st, dq, dk, dv,
                      &ca->scale, &ca->one, ssum, dqacc, &ca->neg_inf};
    execute(ca, p, causal ? 14 : 13, uids, ptrs, cws, s);
    char b[32];
    fmt_bytes(b, sizeof b, (double)p->need);
    strf(ca->path, sizeof ca->path, "cudnn bwd [%s] ws %s", p->desc, b);
}

void cudnn_attn_backward(struct cudnn_attn *ca, float *dq, float *dk, float *dv, const rt_bf16 *dout, const rt_bf16 *q,
                         const rt_bf16 *k, const rt_bf16 *v, const rt_bf16 *out, const float *lse, const float *delta,
                         int ld, int Tq, int Tk, int H, int Hkv, int D, int causal, cudaStream_t s) {
    struct plan *p = NULL;
    const void *ptrs[8] = {dq, dk, dv, dout, q, k, v, out};
    const char *why =
        plan_or_why(ca, &p, KIND_BWD, ptrs, 8, lse, ld, Tq, Tk, H, Hkv, D, causal, 0, "cudnn_attn_backward");
    if (why) {
        if (ca) strf(ca->path, sizeof ca->path, "native bwd (%s)", why);
        if (!delta) { /* the native kernel needs delta: rows [0, Tq) of an (H, ld) buffer */
            if (!ca || (size_t)H * ld * 4 > ca->ws_bytes)
                rt_fatal(__FILE__, __LINE__, "cudnn_attn_backward: native fallback without delta needs %zu bytes of "
                         "workspace", (size_t)H * ld * 4);
            cuda_attn_delta(ca->ws, ld, dout, out, Tq, H, D, s);
            delta = ca->ws;
        }
        cuda_attn_backward(dq, dk, dv, dout, q, k, v, lse, delta, ld, Tq, Tk, H, Hkv, D, causal, s);
        return;
    }
    const size_t nq = (size_t)Tq * H * D, nk = (size_t)Tk * Hkv * D;
    char *at = (char *)ca->ws + p->need_direct;
    void *dq_s = carve(&at, nq * (p->g32q ? 4 : 2));
    void *dk_s = carve(&at, nk * (p->g32kv ? 4 : 2));
    void *dv_s = carve(&at, nk * (p->g32kv ? 4 : 2));
    bwd_exec(ca, p, dq_s, dk_s, dv_s, dout, q, k, v, out, lse, ld, Tq, H, causal, s);
    if (p->g32q) cuda_accum_f32(dq, dq_s, (int64_t)nq, s);
    else cuda_accum_bf16(dq, dq_s, (int64_t)nq, s);
    if (p->g32kv) {
        cuda_accum_f32(dk, dk_s, (int64_t)nk, s);
        cuda_accum_f32(dv, dv_s, (int64_t)nk, s);
    } else {
        cuda_accum_bf16(dk, dk_s, (int64_t)nk, s);
        cuda_accum_bf16(dv, dv_s, (int64_t)nk, s);
    }
}

int cudnn_attn_backward_bf16(struct cudnn_attn *ca, rt_bf16 *dq, rt_bf16 *dk, rt_bf16 *dv, const rt_bf16 *dout,
                             const rt_bf16 *q, const rt_bf16 *k, const rt_bf16 *v, const rt_bf16 *out,
                             const float *lse, int ld, int Tq, int Tk, int H, int Hkv, int D, int causal,
                             cudaStream_t s) {
    struct plan *p = NULL;
    const void *ptrs[8] = {dq, dk, dv, dout, q, k, v, out};
    const char *why =
        plan_or_why(ca, &p, KIND_BWD, ptrs, 8, lse, ld, Tq, Tk, H, Hkv, D, causal, 1, "cudnn_attn_backward_bf16");
    if (!why && (p->g32q || p->g32kv)) why = "the plan writes gradients in fp32";
    if (why) {
        if (ca) strf(ca->path, sizeof ca->path, "declined bf16 bwd (%s)", why);
        return 0;
    }
    bwd_exec(ca, p, dq, dk, dv, dout, q, k, v, out, lse, ld, Tq, H, causal, s);
    return 1;
}

#else /* !RT_HAVE_CUDNN: the same API on the native kernels */

struct cudnn_attn {
    int unused;
};

size_t cudnn_attn_version(void) { return 0; }
int cudnn_attn_supported(int Tq, int Tk, int H, int Hkv, int D, int causal) {
    (void)Tq; (void)Tk; (void)H; (void)Hkv; (void)D; (void)causal;
    return 0;
}
int cudnn_attn_takes_shape(int Tq, int Tk, int H, int Hkv, int D, int causal) {
    (void)Tq; (void)Tk; (void)H; (void)Hkv; (void)D; (void)causal;
    return 0;
}
size_t cudnn_attn_workspace_estimate(int Tq, int Tk, int H, int Hkv, int D, int causal, int ld, int direct,
                                     size_t cudnn_own) {
    (void)Tq; (void)Tk; (void)H; (void)Hkv; (void)D; (void)causal; (void)ld; (void)direct; (void)cudnn_own;
    return 0;
}
struct cudnn_attn *cudnn_attn_init(size_t workspace_bytes) {
    (void)workspace_bytes;
    return NULL;
}
void cudnn_attn_free(struct cudnn_attn *ca) { (void)ca; }
size_t cudnn_attn_prepare(struct cudnn_attn *ca, int Tq, int Tk, int H, int Hkv, int D, int causal, int ld,
                          int direct) {
    (void)ca; (void)Tq; (void)Tk; (void)H; (void)Hkv; (void)D; (void)causal; (void)ld; (void)direct;
    return 0;
}
void cudnn_attn_reserve(struct cudnn_attn *ca, size_t bytes) { (void)ca; (void)bytes; }
size_t cudnn_attn_workspace_bytes(const struct cudnn_attn *ca) { (void)ca; return 0; }
void cudnn_attn_poison_workspace(struct cudnn_attn *ca) { (void)ca; }
const char *cudnn_attn_last_path(const struct cudnn_attn *ca) {
    (void)ca;
    return "native (built without cuDNN)";
}

void cudnn_attn_forward(struct cudnn_attn *ca, float *out, float *lse, int ld, const rt_bf16 *q, const rt_bf16 *k,
                        const rt_bf16 *v, int Tq, int Tk, int H, int Hkv, int D, int causal, cudaStream_t s) {
    (void)ca;
    cuda_attn_forward(out, lse, ld, q, k, v, Tq, Tk, H, Hkv, D, causal, s);
}

void cudnn_attn_backward(struct cudnn_attn *ca, float *dq, float *dk, float *dv, const rt_bf16 *dout, const rt_bf16 *q,
                         const rt_bf16 *k, const rt_bf16 *v, const rt_bf16 *out, const float *lse, const float *delta,
                         int ld, int Tq, int Tk, int H, int Hkv, int D, int causal, cudaStream_t s) {
    (void)ca; (void)out;
    if (!delta) rt_fatal(__FILE__, __LINE__, "cudnn_attn_backward: built without cuDNN, delta is required");
    cuda_attn_backward(dq, dk, dv, dout, q, k, v, lse, delta, ld, Tq, Tk, H, Hkv, D, causal, s);
}

int cudnn_attn_forward_bf16(struct cudnn_attn *ca, rt_bf16 *out, float *lse, int ld, const rt_bf16 *q,
                            const rt_bf16 *k, const rt_bf16 *v, int Tq, int Tk, int H, int Hkv, int D, int causal,
                            cudaStream_t s) {
    (void)ca; (void)out; (void)lse; (void)ld; (void)q; (void)k; (void)v; (void)Tq; (void)Tk; (void)H; (void)Hkv;
    (void)D; (void)causal; (void)s;
    return 0;
}

int cudnn_attn_backward_bf16(struct cudnn_attn *ca, rt_bf16 *dq, rt_bf16 *dk, rt_bf16 *dv, const rt_bf16 *dout,
                             const rt_bf16 *q, const rt_bf16 *k, const rt_bf16 *v, const rt_bf16 *out,
                             const float *lse, int ld, int Tq, int Tk, int H, int Hkv, int D, int causal,
                             cudaStream_t s) {
    (void)ca; (void)dq; (void)dk; (void)dv; (void)dout; (void)q; (void)k; (void)v; (void)out; (void)lse; (void)ld;
    (void)Tq; (void)Tk; (void)H; (void)Hkv; (void)D; (void)causal; (void)s;
    return 0;
}

#endif
