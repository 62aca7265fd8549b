/* ring: the zigzag and plain ring attention schedules, forward and backward.
 *
 * Forward, step s = 0..N-1, the rank holds K/V of src = (r - s) mod N:
 *   s = 0      local q vs local K/V, causal (both chunks are in global order)  -> seeds out, lse
 *   src < r    zigzag: all q vs the first K/V chunk;   plain: all q vs all K/V -> merge all rows
 *   src > r    zigzag: second q chunk vs all K/V;      plain: nothing (masked) -> merge rows [C, 2C)
 * Backward: the same blocks with the final out/lse; dq stays local, the dK/dV accumulators
 * travel with K/V to r+1 after every step (N hops) and so end at their owner. The exchange
 * of K/V for step s+1 is posted before the compute of step s. With one rank (N = 1) the
 * single causal block runs on the rank's own K/V and gradients: no buffers travel. */
#include "ring.h"

#include <stdio.h>

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

void ring_init(struct ring *rg, const struct backend *be, struct comm *cp, int zigzag, int T, int H,
               int Hkv, int D) {
    rg->be = be;
    rg->cp = cp;
    rg->zigzag = zigzag;
    rg->local_only = 0;
    rg->T = T;
    rg->H = H;
    rg->Hkv = Hkv;
    rg->D = D;
    rg->act_dtype = be->act_size == 2 ? COMM_BF16 : COMM_F32;
    /* delta only for kernels that do not form it themselves (cuDNN does: attn_own_delta) */
    rg->delta = be->attn_own_delta ? NULL : be->alloc(be, (size_t)H * T * sizeof(float), "ring delta");
    if (cp->size == 1) return; /* one block, on the rank's own K/V: nothing travels or merges */
    rg->out32 = be->alloc(be, (size_t)T * H * D * sizeof(float), "ring merged output (dq in the backward)");
    for (int i = 0; i < 2; i++) {
        rg->kv[i] = be->alloc(be, kv_elems(rg) * be->act_size, "ring K/V buffer");
        rg->dkv[i] = be->alloc(be, kv_elems(rg) * sizeof(float), "ring dK/dV buffer");
    }
    rg->blk_out = be->alloc(be, (size_t)T * H * D * sizeof(float), "ring block output");
    rg->blk_lse = be->alloc(be, (size_t)H * T * sizeof(float), "ring block lse");
}

void ring_free(struct ring *rg) {
    const struct backend *be = rg->be;
    if (rg->delta) be->free(be, rg->delta);
    if (rg->cp->size == 1) return;
    be->free(be, rg->out32);
    for (int i = 0; i < 2; i++) {
        be->free(be, rg->kv[i]);
        be->free(be, rg->dkv[i]);
    }
    be->free(be, rg->blk_out);
    be->free(be, rg->blk_lse);
}

/* Which block a step computes: q rows [q0, q0+nq), keys [k0, k0+nk) of the held K/V. */
struct block { int q0, nq, k0, nk, causal; };

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

void ring_forward(struct ring *rg, void *out, float *lse, const void *q, const void *k,
                  const void *v) {
    const struct backend *be = rg->be;
    int N = rg->cp->size, T = rg->T, H = rg->H, Hkv = rg->Hkv, D = rg->D;
    size_t kv_half = (size_t)T * Hkv * D, hd = (size_t)H * D;
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
        if (step_block(rg, s, &b)) {
            const void *kb = at(rg, cur, (size_t)b.k0 * Hkv * D), *vb = at(rg, cur, kv_half + (size_t)b.k0 * Hkv * D);
            const void *qb = at(rg, q, (size_t)b.q0 * hd);
            if (s == 0) {
                be->attn_forward(be, rg->out32, lse, T, q, kb, vb, b.nq, b.nk, H, Hkv, D, b.causal);
            } else {
                be->attn_forward(be, rg->blk_out, rg->blk_lse, T, qb, kb, vb, b.nq, b.nk, H, Hkv, D, b.causal);
                be->attn_merge(be, rg->out32 + (size_t)b.q0 * hd, lse + b.q0, T, rg->blk_out, rg->blk_lse, T,
                               b.nq, H, D);
            }
        }
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
    if (N == 1) {
        be->attn_local_backward(be, dq_out, dk_out, dv_out, dout, q, k, v, out, lse, rg->delta, T, H, Hkv, D);
        return;
    }
    float *dq = rg->out32; /* the forward's merge buffer accumulates dq */
    const float *delta = NULL; /* rowsum(dout * out), unless the kernels form it themselves */
    if (!be->attn_own_delta) {
        be->attn_delta(be, rg->delta, T, dout, out, T, H, D);
        delta = rg->delta;
    }
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
        if (step_block(rg, s, &b)) {
            size_t ko = (size_t)b.k0 * Hkv * D, qo = (size_t)b.q0 * hd;
            be->attn_backward(be, dq + qo, dcur + ko, dcur + kv_half + ko, at(rg, dout, qo), at(rg, q, qo),
                              at(rg, cur, ko), at(rg, cur, kv_half + ko), at(rg, out, qo), lse + b.q0,
                              delta ? delta + b.q0 : NULL, T, b.nq, b.nk, H, Hkv, D, b.causal);
        }
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
