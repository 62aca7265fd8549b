/* ring: ring attention over a context-parallel communicator, backend- and
 * transport-independent (ARCHITECTURE.md section 4). Each of the N ranks holds T local
 * tokens: with zigzag sharding chunks r and 2N-1-r of C = T/2 tokens each, with the plain
 * ring the contiguous chunk r. K/V blocks travel to rank r+1 while the rank computes; block
 * results merge into the running (out, lse) in fp32 through the log-sum-exp.
 * Shapes: q, out (T, H, D); k, v (T, Hkv, D); lse (H, T). q, k, v, out, dout are in the
 * backend's activation type; K/V travel in it; merging, lse, the dq accumulator and the
 * dK/dV accumulators that travel in the backward are fp32. A ring of one rank runs the
 * backend's attn_local_* ops, whose outputs are act (no fp32 buffers at all). */
#ifndef RT_RING_H
#define RT_RING_H

#include "backend.h"
#include "comm.h"

struct ring {
    const struct backend *be;
    struct comm *cp;      /* the ring; size N, rank r */
    int   zigzag;         /* 1: zigzag shards, 0: contiguous shards */
    int   local_only;     /* test-only: skip every cross-shard step */
    int   T, H, Hkv, D;
    int   act_dtype;      /* comm dtype of the activations */
    void  *kv[2];         /* (2, T, Hkv, D) act, double-buffered K|V travelling the ring (N > 1) */
    float *dkv[2];        /* (2, T, Hkv, D) fp32 dK|dV accumulators travelling with them (N > 1) */
    float *out32;         /* (T, H, D) fp32 merged output; the dq accumulator in the backward (N > 1) */
    float *blk_out;       /* (T, H, D) one block's output (N > 1) */
    float *blk_lse;       /* (H, T) one block's lse (N > 1) */
    float *delta;         /* (H, T) rowsum(dout * out); NULL when the backend forms it itself (attn_own_delta) */
    double t_wait;        /* seconds spent in exchange waits (exposed communication), summed */
};

void ring_init(struct ring *rg, const struct backend *be, struct comm *cp, int zigzag, int T, int H,
               int Hkv, int D);
void ring_free(struct ring *rg);

/* out (act) and lse (overwritten) = causal attention of the local q over the whole
 * sequence's K/V. */
void ring_forward(struct ring *rg, void *out, float *lse, const void *q, const void *k,
                  const void *v);
/* dq, dk, dv (act, overwritten) given the final out (act), lse and dout (act); they are
 * accumulated in fp32 over the ring's blocks (a ring of one rank has one block). */
void ring_backward(struct ring *rg, void *dq, void *dk, void *dv, const void *dout,
                   const void *q, const void *k, const void *v, const void *out,
                   const float *lse);

#endif
