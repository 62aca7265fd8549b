/* ring: ring attention over a context-parallel communicator, backend- and
 * transport-independent (ARCHITECTURE.md section 4). Each of the N ranks holds T local
 * tokens: with zigzag sharding chunks r and 2N-1-r of C = T/2 tokens each, with the plain
 * ring the contiguous chunk r. K/V blocks travel to rank r+1 while the rank computes; block
 * results merge into the running (out, lse) in fp32 through the log-sum-exp.
 * Shapes: q, out (T, H, D); k, v (T, Hkv, D); lse (H, T). q, k, v, out, dout are in the
 * backend's activation type; K/V travel in it; merging, lse, the dq accumulator and the
 * dK/dV accumulators that travel in the backward are fp32. A ring of one rank runs the
 * backend's attn_local_* ops, whose outputs are act (no fp32 buffers at all).
 * Blocked calls (blk > 0, memory.attention_block_tokens): every block of a step is cut into
 * attention calls of at most blk query rows and blk keys (a causal block into the calls on
 * and below its diagonal), so the backend's workspace and the block output are (blk, .),
 * not (T, .). A blocked ring of one rank runs these fp32 calls too, query block by query
 * block: the output merges per query block (blk rows), dq accumulates per query block, dK/dV
 * in whole fp32 accumulators; the layer can then hold q, the output and their gradients per
 * query block (ring_local_block_*). */
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
    int   blk;            /* query rows and keys per attention call; 0: one call per block */
    int   act_dtype;      /* comm dtype of the activations */
    void  *kv[2];         /* (2, T, Hkv, D) act, double-buffered K|V travelling the ring (N > 1) */
    float *dkv[2];        /* (2, T, Hkv, D) fp32 dK|dV accumulators travelling with them (N > 1);
                           * a blocked ring of one rank: dkv[0] only, its dK|dV accumulator */
    float *out32;         /* (T, H, D) fp32 merged output; the dq accumulator in the backward (N > 1);
                           * a blocked ring of one rank: (blk, H, D), one query block's */
    float *blk_out;       /* (b, H, D) one call's output, b = blk or T (N > 1 or blocked) */
    float *blk_lse;       /* (H, T) one call's lse in rows [0, nq) (row stride T, as every lse view) */
    float *delta;         /* (H, T) rowsum(dout * out); NULL when the backend forms it itself (attn_own_delta) */
    double t_wait;        /* seconds spent in exchange waits (exposed communication), summed */
};

/* blk: ring_call_block's. */
void ring_init(struct ring *rg, const struct backend *be, struct comm *cp, int zigzag, int T, int H,
               int Hkv, int D, int blk);
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

/* A blocked ring of one rank, query block by query block (what a layer that bounds q, the
 * output and their gradients by the block calls, layer.c). Query block i (0 <= i <
 * ring_query_blocks) is rows [q0, q0 + nq) of ring_query_block; its keys are rows
 * [0, q0 + nq). Needs cp size 1 and blk > 0. */
int  ring_query_blocks(const struct ring *rg);
void ring_query_block(const struct ring *rg, int i, int *q0, int *nq);
/* out (nq rows, act, overwritten) and lse rows [q0, q0 + nq) (the whole (H, T) lse) of query
 * block i: q its nq rows, k, v the whole (T, Hkv, D). Keys up to the block's rows must be
 * final in k, v. */
void ring_local_block_forward(struct ring *rg, void *out, float *lse, const void *q, const void *k, const void *v,
                              int i);
/* The backward: begin zeroes the fp32 dK/dV accumulators; block_backward writes query block
 * i's dq (nq rows, act, overwritten) from its dout, q and final out (nq rows each) and the
 * whole lse, and adds into the dK/dV of keys [0, q0 + nq); dkv writes dk, dv rows
 * [k0, k0 + nk) (act, overwritten): final once every query block at or after k0 is done. */
void ring_local_backward_begin(struct ring *rg);
void ring_local_block_backward(struct ring *rg, void *dq, const void *dout, const void *q, const void *k,
                               const void *v, const void *out, const float *lse, int i);
void ring_local_dkv(struct ring *rg, void *dk, void *dv, int k0, int nk);

/* Query rows and keys per attention call for memory.attention_block_tokens cfg_blk (0: auto)
 * on a ring of N ranks of T local tokens; 0: one call per block. Auto: RING_CALL_AUTO tokens
 * on a ring of several ranks, and on a ring of one rank past RING_LOCAL_DIRECT_MAX tokens;
 * up to there a ring of one rank makes one direct call (the fastest: bf16 outputs straight
 * from cuDNN, no merge; its memory matters less than its speed there). 0 when blk >= T:
 * every block is one call. */
int ring_call_block(int cfg_blk, int N, int T);
#define RING_CALL_AUTO 16384
#define RING_LOCAL_DIRECT_MAX 131072

/* The distinct (Tq, Tk, causal) shapes of the attention calls a ring makes (N ranks, T local
 * tokens, zigzag or not, blk from ring_call_block), at most max of them into s (16 always
 * suffice); returns how many. What a backend plans workspace for. */
struct ring_shape { int Tq, Tk, causal; };
int ring_call_shapes(int T, int N, int zigzag, int blk, struct ring_shape *s, int max);

#endif
