/* ring: the zigzag and plain ring attention schedules, forward and backward.
 *
 * Forward, step s = 0..N-1, the rank holds K/V of src = (r - s) mod N:
 *   s = 0      local q vs local K/V, causal (both chunks are in global order)  -> seeds out, lse
 *   src < r    zigzag: all q vs the first K/V chunk;   plain: all q vs all K/V -> merge all rows
 *   src > r    zigzag: second q chunk vs all K/V;      plain: nothing (masked) -> merge rows [C, 2C)
 * Backward: the same blocks with the final out/lse; dq stays local, the dK/dV accumulators
 * travel with K/V to r+1 after every step (N hops) and so end at their owner. The exchange
 * of K/V for step s+1 is posted before the compute of step s. With one rank (N = 1) the
 * single causal block runs on the rank's own K/V and gradients: no buffers travel.
 * Blocked (blk > 0): each step's block is cut into calls of at most blk query rows and blk
 * keys (call_next); the first call of a query block at step 0 seeds its rows, every other
 * call merges (forward) or accumulates (backward) into them. */
#include "ring.h"

#include <stdio.h>
#include <string.h>

#include "runtime.h"

/* Wait for an exchange, adding the time to t_wait. */
static void wait_timed(struct ring *rg, struct comm_ring_req *req, const char *what) {
    double t0 = rt_now();
    comm_ring_wait(rg->cp, req, what);
    rg->t_wait += rt_now() - t0;
}

static size_t kv_elems(const struct ring *rg) { return (size_t)2 * rg->T * rg->Hkv * rg->D; }

/* Element offset into an act buffer. */
static void *at(const struct ring *rg, const void *base, size_t elems) {
    return (char *)base + elems * rg->be->act_size;
}

int ring_call_block(int cfg_blk, int N, int T) {
    int blk = cfg_blk > 0 ? cfg_blk : N > 1 || T > RING_LOCAL_DIRECT_MAX ? RING_CALL_AUTO : 0;
    return blk > 0 && blk < T ? blk : 0;
}

void ring_init(struct ring *rg, const struct backend *be, struct comm *cp, int zigzag, int T, int H,
               int Hkv, int D, int blk) {
    memset(rg, 0, sizeof *rg);
    rg->be = be;
    rg->cp = cp;
    rg->zigzag = zigzag;
    rg->T = T;
    rg->H = H;
    rg->Hkv = Hkv;
    rg->D = D;
    rg->blk = blk > 0 && blk < T ? blk : 0;
    rg->act_dtype = be->act_size == 2 ? COMM_BF16 : COMM_F32;
    /* delta only for kernels that do not form it themselves (cuDNN does: attn_own_delta) */
    rg->delta = be->attn_own_delta ? NULL : be->alloc(be, (size_t)H * T * sizeof(float), "ring delta");
    size_t rows = rg->blk ? (size_t)rg->blk : (size_t)T, hd = (size_t)H * D;
    if (cp->size == 1 && !rg->blk) return; /* one direct call on the rank's own K/V: nothing travels or merges */
    if (cp->size == 1) { /* one rank, blocked: query-block accumulators, whole dK/dV */
        rg->out32 = be->alloc(be, rows * hd * sizeof(float), "ring query block output (dq in the backward)");
        rg->dkv[0] = be->alloc(be, kv_elems(rg) * sizeof(float), "ring dK/dV buffer");
    } else {
        rg->out32 = be->alloc(be, (size_t)T * hd * sizeof(float), "ring merged output (dq in the backward)");
        for (int i = 0; i < 2; i++) {
            rg->kv[i] = be->alloc(be, kv_elems(rg) * be->act_size, "ring K/V buffer");
            rg->dkv[i] = be->alloc(be, kv_elems(rg) * sizeof(float), "ring dK/dV buffer");
        }
    }
    rg->blk_out = be->alloc(be, rows * hd * sizeof(float), "ring block output");
    rg->blk_lse = be->alloc(be, (size_t)H * T * sizeof(float), "ring block lse"); /* row stride T, as lse */
}

void ring_free(struct ring *rg) {
    const struct backend *be = rg->be;
    if (rg->delta) be->free(be, rg->delta);
    if (!rg->out32) return;
    be->free(be, rg->out32);
    for (int i = 0; i < 2; i++) {
        if (rg->kv[i]) be->free(be, rg->kv[i]);
        if (rg->dkv[i]) be->free(be, rg->dkv[i]);
    }
    be->free(be, rg->blk_out);
    be->free(be, rg->blk_lse);
}

/* Which block a step computes: q rows [q0, q0+nq), keys [k0, k0+nk) of the held K/V. */
struct block { int q0, nq, k0, nk, causal; };

/* One attention call of a block: q rows [q0, q0+nq), keys [k0, k0+nk); first / last: the
 * first / last call of its query rows. */
struct call { int q0, nq, k0, nk, causal, first, last; };

/* Piece i of n rows cut into pieces of blk (the last shorter; blk 0: one piece). */
static int n_pieces(int n, int blk) { return blk > 0 && blk < n ? (n + blk - 1) / blk : 1; }
static void piece(int n, int blk, int i, int *p0, int *pn) {
    if (n_pieces(n, blk) == 1) {
        *p0 = 0;
        *pn = n;
        return;
    }
    *p0 = i * blk;
    *pn = n - *p0 < blk ? n - *p0 : blk;
}

/* The calls of block b, query pieces outer, key pieces inner: from *i = *j = 0, fills c and
 * advances; 0 past the last. A causal block (q0 == k0, nq == nk) has the calls on and below
 * its diagonal: the diagonal ones causal, the ones below whole (their keys precede their
 * queries). */
static int call_next(const struct block *b, int blk, int *i, int *j, struct call *c) {
    if (*i >= n_pieces(b->nq, blk)) return 0;
    int qa, qn, ka, kn, last_j = b->causal ? *i : n_pieces(b->nk, blk) - 1;
    piece(b->nq, blk, *i, &qa, &qn);
    piece(b->nk, blk, *j, &ka, &kn);
    *c = (struct call){b->q0 + qa, qn, b->k0 + ka, kn, b->causal && *i == *j, *j == 0, *j == last_j};
    if (*j < last_j) (*j)++;
    else (*i)++, *j = 0;
    return 1;
}

/* The blocks a ring's steps compute, whatever the rank: the causal local block, and with N > 1
 * the zigzag (or plain) cross-shard ones. */
static int block_kinds(int T, int N, int zigzag, struct block *b) {
    int n = 0, C = T / 2;
    b[n++] = (struct block){0, T, 0, T, 1};
    if (N > 1 && zigzag) {
        b[n++] = (struct block){0, T, 0, C, 0};
        b[n++] = (struct block){C, C, 0, T, 0};
    } else if (N > 1) {
        b[n++] = (struct block){0, T, 0, T, 0};
    }
    return n;
}

int ring_call_shapes(int T, int N, int zigzag, int blk, struct ring_shape *s, int max) {
    struct block b[3];
    int nb = block_kinds(T, N, zigzag, b), n = 0;
    for (int k = 0; k < nb; k++) {
        struct call c;
        for (int i = 0, j = 0; call_next(&b[k], blk, &i, &j, &c);) {
            int seen = 0;
            for (int m = 0; m < n && !seen; m++) seen = s[m].Tq == c.nq && s[m].Tk == c.nk && s[m].causal == c.causal;
            if (seen) continue;
            if (n == max) RT_FATAL("ring: more than %d attention call shapes", max);
            s[n++] = (struct ring_shape){c.nq, c.nk, c.causal};
        }
    }
    return n;
}

static int step_block(const struct ring *rg, int s, struct block *b) {
    int N = rg->cp->size, r = rg->cp->rank, T = rg->T, C = T / 2;
    int src = ((r - s) % N + N) % N;
    if (s == 0) {
        *b = (struct block){0, T, 0, T, 1};
        return 1;
    }
    if (rg->local_only) return 0;
    if (rg->zigzag) {
        if (src < r) *b = (struct block){0, T, 0, C, 0};
        else *b = (struct block){C, C, 0, T, 0};
        return 1;
    }
    if (src < r) {
        *b = (struct block){0, T, 0, T, 0};
        return 1;
    }
    return 0;
}

/* One call of the forward into the running (acc, lse) of its query rows: qb and acc at the
 * call's first query row, lse the whole (H, T). A seed call (the first of its query rows)
 * writes them, every other call goes through the call buffers and merges. k, v: the held
 * keys' first row. */
static void forward_call(struct ring *rg, const struct call *c, int seed, float *acc, float *lse, const void *qb,
                         const void *k, const void *v) {
    const struct backend *be = rg->be;
    int H = rg->H, Hkv = rg->Hkv, D = rg->D, T = rg->T;
    size_t ko = (size_t)c->k0 * Hkv * D;
    const void *kb = at(rg, k, ko), *vb = at(rg, v, ko);
    if (seed) {
        be->attn_forward(be, acc, lse + c->q0, T, qb, kb, vb, c->nq, c->nk, H, Hkv, D, c->causal);
        return;
    }
    be->attn_forward(be, rg->blk_out, rg->blk_lse, T, qb, kb, vb, c->nq, c->nk, H, Hkv, D, c->causal);
    be->attn_merge(be, acc, lse + c->q0, T, rg->blk_out, rg->blk_lse, T, c->nq, H, D);
}

/* One call of the backward: acc, doutb, qb, outb at the call's first query row (its dq rows
 * += into acc), its keys' dK/dV += into dk, dv (fp32, the held keys' first row); lse and
 * delta whole. */
static void backward_call(struct ring *rg, const struct call *c, float *acc, float *dk, float *dv, const void *doutb,
                          const void *qb, const void *k, const void *v, const void *outb, const float *lse,
                          const float *delta) {
    const struct backend *be = rg->be;
    int H = rg->H, Hkv = rg->Hkv, D = rg->D;
    size_t ko = (size_t)c->k0 * Hkv * D;
    be->attn_backward(be, acc, dk + ko, dv + ko, doutb, qb, at(rg, k, ko), at(rg, v, ko), outb, lse + c->q0,
                      delta ? delta + c->q0 : NULL, rg->T, c->nq, c->nk, H, Hkv, D, c->causal);
}

/* rowsum(dout * out) of rows [q0, q0 + nq) (dout, out at row q0) into the ring's delta,
 * unless the kernels form it themselves (NULL). */
static const float *ring_delta(struct ring *rg, const void *dout, const void *out, int q0, int nq) {
    const struct backend *be = rg->be;
    if (be->attn_own_delta) return NULL;
    be->attn_delta(be, rg->delta + q0, rg->T, dout, out, nq, rg->H, rg->D);
    return rg->delta;
}

int ring_query_blocks(const struct ring *rg) { return n_pieces(rg->T, rg->blk); }

void ring_query_block(const struct ring *rg, int i, int *q0, int *nq) { piece(rg->T, rg->blk, i, q0, nq); }

/* The calls of query block i of a blocked one-rank ring: key blocks j = 0..i, the last
 * (its own rows) causal. */
static struct call local_call(const struct ring *rg, int i, int j) {
    int q0, nq, k0, nk;
    piece(rg->T, rg->blk, i, &q0, &nq);
    piece(rg->T, rg->blk, j, &k0, &nk);
    return (struct call){q0, nq, k0, nk, j == i, j == 0, j == i};
}

void ring_local_block_forward(struct ring *rg, void *out, float *lse, const void *q, const void *k, const void *v,
                              int i) {
    int q0, nq;
    ring_query_block(rg, i, &q0, &nq);
    for (int j = 0; j <= i; j++) {
        struct call c = local_call(rg, i, j);
        forward_call(rg, &c, c.first, rg->out32, lse, q, k, v);
    }
    rg->be->to_act(rg->be, out, rg->out32, (int64_t)nq * rg->H * rg->D);
}

void ring_local_backward_begin(struct ring *rg) {
    rg->be->zero(rg->be, rg->dkv[0], kv_elems(rg) * sizeof(float));
}

void ring_local_block_backward(struct ring *rg, void *dq, const void *dout, const void *q, const void *k,
                               const void *v, const void *out, const float *lse, int i) {
    const struct backend *be = rg->be;
    int q0, nq;
    ring_query_block(rg, i, &q0, &nq);
    size_t kv_half = (size_t)rg->T * rg->Hkv * rg->D;
    const float *delta = ring_delta(rg, dout, out, q0, nq);
    be->zero(be, rg->out32, (size_t)nq * rg->H * rg->D * sizeof(float));
    for (int j = 0; j <= i; j++) {
        struct call c = local_call(rg, i, j);
        backward_call(rg, &c, rg->out32, rg->dkv[0], rg->dkv[0] + kv_half, dout, q, k, v, out, lse, delta);
    }
    be->to_act(be, dq, rg->out32, (int64_t)nq * rg->H * rg->D);
}

void ring_local_dkv(struct ring *rg, void *dk, void *dv, int k0, int nk) {
    size_t kvd = (size_t)rg->Hkv * rg->D, kv_half = (size_t)rg->T * kvd;
    rg->be->to_act(rg->be, dk, rg->dkv[0] + (size_t)k0 * kvd, (int64_t)((size_t)nk * kvd));
    rg->be->to_act(rg->be, dv, rg->dkv[0] + kv_half + (size_t)k0 * kvd, (int64_t)((size_t)nk * kvd));
}

/* The whole forward and backward of a blocked one-rank ring, query block by query block. */
static void local_blocked_forward(struct ring *rg, void *out, float *lse, const void *q, const void *k,
                                  const void *v) {
    size_t hd = (size_t)rg->H * rg->D;
    for (int i = 0, q0, nq; i < ring_query_blocks(rg); i++) {
        ring_query_block(rg, i, &q0, &nq);
        ring_local_block_forward(rg, at(rg, out, q0 * hd), lse, at(rg, q, q0 * hd), k, v, i);
    }
}

static void local_blocked_backward(struct ring *rg, void *dq_out, void *dk_out, void *dv_out, const void *dout,
                                   const void *q, const void *k, const void *v, const void *out,
                                   const float *lse) {
    size_t hd = (size_t)rg->H * rg->D;
    ring_local_backward_begin(rg);
    for (int i = 0, q0, nq; i < ring_query_blocks(rg); i++) {
        ring_query_block(rg, i, &q0, &nq);
        ring_local_block_backward(rg, at(rg, dq_out, q0 * hd), at(rg, dout, q0 * hd), at(rg, q, q0 * hd), k, v,
                                  at(rg, out, q0 * hd), lse, i);
    }
    ring_local_dkv(rg, dk_out, dv_out, 0, rg->T);
}

void ring_forward(struct ring *rg, void *out, float *lse, const void *q, const void *k,
                  const void *v) {
    const struct backend *be = rg->be;
    int N = rg->cp->size, T = rg->T, H = rg->H, Hkv = rg->Hkv, D = rg->D;
    size_t kv_half = (size_t)T * Hkv * D, hd = (size_t)H * D;
    if (N == 1 && rg->blk) {
        local_blocked_forward(rg, out, lse, q, k, v);
        return;
    }
    if (N == 1) {
        be->attn_local_forward(be, out, lse, q, k, v, T, H, Hkv, D);
        return;
    }
    be->copy(be, rg->kv[0], k, kv_half * be->act_size);
    be->copy(be, at(rg, rg->kv[0], kv_half), v, kv_half * be->act_size);
    struct comm_ring_req req = {0};
    char what[64];
    for (int s = 0; s < N; s++) {
        void *cur = rg->kv[s & 1], *next = rg->kv[(s + 1) & 1];
        if (s + 1 < N) comm_ring_start(rg->cp, cur, next, (int64_t)(2 * kv_half), rg->act_dtype, &req);
        struct block b;
        struct call c;
        if (step_block(rg, s, &b))
            for (int i = 0, j = 0; call_next(&b, rg->blk, &i, &j, &c);)
                forward_call(rg, &c, s == 0 && c.first, rg->out32 + c.q0 * hd, lse, at(rg, q, c.q0 * hd), cur,
                             at(rg, cur, kv_half));
        if (s + 1 < N) {
            snprintf(what, sizeof what, "K/V forward step %d/%d", s + 1, N);
            wait_timed(rg, &req, what);
        }
    }
    be->to_act(be, out, rg->out32, (int64_t)(T * hd));
}

void ring_backward(struct ring *rg, void *dq_out, void *dk_out, void *dv_out, const void *dout,
                   const void *q, const void *k, const void *v, const void *out,
                   const float *lse) {
    const struct backend *be = rg->be;
    int N = rg->cp->size, T = rg->T, H = rg->H, Hkv = rg->Hkv, D = rg->D;
    size_t kv_half = (size_t)T * Hkv * D, hd = (size_t)H * D;
    if (N == 1 && rg->blk) {
        local_blocked_backward(rg, dq_out, dk_out, dv_out, dout, q, k, v, out, lse);
        return;
    }
    if (N == 1) {
        be->attn_local_backward(be, dq_out, dk_out, dv_out, dout, q, k, v, out, lse, rg->delta, T, H, Hkv, D);
        return;
    }
    float *dq = rg->out32; /* the forward's merge buffer accumulates dq */
    const float *delta = ring_delta(rg, dout, out, 0, T);
    be->zero(be, dq, (size_t)T * hd * sizeof(float));
    be->copy(be, rg->kv[0], k, kv_half * be->act_size);
    be->copy(be, at(rg, rg->kv[0], kv_half), v, kv_half * be->act_size);
    be->zero(be, rg->dkv[0], 2 * kv_half * sizeof(float));
    struct comm_ring_req req = {0}, dreq = {0};
    char what[64];
    for (int s = 0; s < N; s++) {
        void *cur = rg->kv[s & 1], *next = rg->kv[(s + 1) & 1];
        float *dcur = rg->dkv[s & 1], *dnext = rg->dkv[(s + 1) & 1];
        if (s + 1 < N) comm_ring_start(rg->cp, cur, next, (int64_t)(2 * kv_half), rg->act_dtype, &req);
        struct block b;
        struct call c;
        if (step_block(rg, s, &b))
            for (int i = 0, j = 0; call_next(&b, rg->blk, &i, &j, &c);)
                backward_call(rg, &c, dq + c.q0 * hd, dcur, dcur + kv_half, at(rg, dout, c.q0 * hd),
                              at(rg, q, c.q0 * hd), cur, at(rg, cur, kv_half), at(rg, out, c.q0 * hd), lse, delta);
        /* dK/dV of src go on to r+1; what arrives belongs to src - 1 (after N hops: ours). */
        comm_ring_start(rg->cp, dcur, dnext, (int64_t)(2 * kv_half), COMM_F32, &dreq);
        if (s + 1 < N) {
            snprintf(what, sizeof what, "K/V backward step %d/%d", s + 1, N);
            wait_timed(rg, &req, what);
        }
        snprintf(what, sizeof what, "dK/dV backward step %d/%d", s + 1, N);
        wait_timed(rg, &dreq, what);
    }
    const float *dmine = rg->dkv[N & 1];
    be->to_act(be, dq_out, dq, (int64_t)(T * hd));
    be->to_act(be, dk_out, dmine, (int64_t)kv_half);
    be->to_act(be, dv_out, dmine + kv_half, (int64_t)kv_half);
}
