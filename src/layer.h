/* layer: one Llama decoder layer's forward and backward over token tiles, on the buffers
 * struct model owns (model.h). The token-wise work -- RMSNorm, the q/k/v/o projections,
 * RoPE, the SwiGLU MLP and their gradients -- runs on tiles of m->tile tokens: rows
 * [t0, t0 + n) of the token-major (T, .) tensors, so its scratch is (tile, .) and not
 * (T, .). Attention runs once over all T rows (q, k, v, the attention output, lse and their
 * gradients whole), or, on a blocked ring of one rank (m->qblk), query block by query block:
 * then q, the shared attention output, dattn, dq, dk and dv are (block, .), only k, v, lse
 * (and the ring's fp32 dK/dV) stay whole. Weight gradients accumulate (+=) tile by tile, so
 * a tiled layer equals an untiled one up to float summation order. The backward of a tile
 * uses the tile's own recomputed forward activations (checkpointing selective or full;
 * under "all" the tile is the whole shard and nothing is recomputed).
 * Shapes: T local tokens, n <= tile tokens of one tile, d dim, H/Hkv heads, D head dim,
 * F ffn dim. */
#ifndef RT_LAYER_H
#define RT_LAYER_H

#include "model.h"

/* One layer's working weights (act, read) and weight gradients (fp32, +=); the model
 * resolves them (model.c: wt, gw). */
struct layer_weights {
    const void *attn_norm, *wq, *wk, *wv, *wo; /* (d), (H*D, d), (Hkv*D, d) x2, (d, H*D) */
    const void *mlp_norm, *w_gate, *w_up, *w_down; /* (d), (F, d) x2, (d, F) */
    float *g_attn_norm, *g_wq, *g_wk, *g_wv, *g_wo; /* their gradients, same shapes */
    float *g_mlp_norm, *g_w_gate, *g_w_up, *g_w_down;
};

/* Forward of layer l from m->xs[l] into out (T, d): tiles of q/k/v, the ring, tiles of
 * o-proj and MLP. Leaves m->la[l]'s whole tensors (attn, lse; and under "all" everything);
 * a layer that saves its attention output (model_saves_attn) writes it to m->saved_attn
 * (copied out there). */
void layer_forward(struct model *m, int l, const struct layer_weights *w, const struct saved_rows *out);
/* Backward of layer l: m->g (T, d) holds dL/d(layer output) and becomes dL/d(layer input);
 * recomputes what the checkpointing policy did not save (q/k/v, and the ring under full).
 * Under selective it reads the attention output back from m->saved_attn and, once the ring
 * backward is done with it, starts bringing back layer l - 1's. */
void layer_backward(struct model *m, int l, const struct layer_weights *w);

#endif
