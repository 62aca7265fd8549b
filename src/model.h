/* model: the Llama forward/backward driver, written once for every backend. It owns the
 * parameter store (weights, gradients, optimizer state: pstore.h), the activations
 * saved for the backward according to the checkpointing policy, the per-tile scratch of
 * the token-wise layer work (layer.h), and the ring attention state. One call processes
 * one rank's shard of one sequence.
 * Shapes: T local tokens, t tokens per tile (t <= T), d dim, H/Hkv heads, D head dim,
 * F ffn dim, V vocab, Ly layers.
 * Buffers marked act hold the backend's activation type (backend.h); the rest are fp32. */
#ifndef RT_MODEL_H
#define RT_MODEL_H

#include "backend.h"
#include "comm.h"
#include "offload.h"
#include "params.h"
#include "pstore.h"
#include "ring.h"

enum model_ckpt { MODEL_SAVE_ALL, MODEL_SAVE_FULL, MODEL_SAVE_SELECTIVE };

/* One layer's activations; pointers into per-layer storage or shared scratch. The (t, .)
 * ones hold one tile's rows (layer.h); t = T under MODEL_SAVE_ALL, which keeps them all. */
struct layer_acts {
    void  *xn1;   /* (t, d) act */
    float *rstd1; /* (t) */
    void  *q;     /* (T, H, D) act, after RoPE; (b, H, D) with query blocks */
    void  *k;     /* (T, Hkv, D) act, after RoPE */
    void  *v;     /* (T, Hkv, D) act */
    void  *attn;  /* (T, H, D) act, attention output, pre o_proj; the shared one (b, H, D) with query blocks */
    float *lse;   /* (H, T) */
    void  *h;     /* (t, d) act, residual after attention */
    void  *xn2;   /* (t, d) act */
    float *rstd2; /* (t) */
    void  *gate;  /* (t, F) act */
    void  *up;    /* (t, F) act */
    void  *act;   /* (t, F) act, silu(gate) * up */
};

struct model {
    const struct backend *be;
    struct model_config mc;
    struct pstore ps;      /* weights, gradients and optimizer state (parallel.zero, memory.optimizer) */
    struct param_table pt; /* the layout (params.h) */
    double *inv_freq;      /* (D/2) backend memory */
    double  rope_scale;    /* RoPE attention factor (yarn's; else 1): scales cos and sin */
    int     T;             /* local tokens per sequence shard */
    int     tile;          /* t: tokens per tile of the token-wise work (model_init) */
    int     qblk;          /* b: query rows per block of the layer's attention (a blocked ring of one
                            * rank, under checkpointing: layer.c); 0: all T at once */
    int     ckpt;          /* enum model_ckpt */
    struct ring ring;
    struct saved_rows *xs; /* Ly+1 of (T, d) act: each layer's input (where its rows are now); xs[Ly] the last output */
    struct offload_set saved_x;    /* the layer inputs xs[0..Ly) */
    struct offload_set saved_attn; /* the attention outputs (selective policy) */
    int64_t split;         /* rows of every saved tensor kept on the device; the rest offloaded (T: none) */
    int     keep;          /* selective: layers [0, keep) save their attention output, the others recompute it */
    int     placed;        /* model_place_saved was called */
    struct layer_acts *la; /* Ly */
    struct layer_acts scratch;
    void  *xnf;            /* (t, d) act: final norm of one tile */
    float *rstdf;          /* (t) */
    void  *tmp;            /* (t, d) act */
    void  *g;              /* (T, d) act: dL/d(the residual stream); the buffer of xs[Ly] */
    void  *dxn;            /* (t, d) act: dL/d(a norm's output), one tile */
    void  *dattn;          /* (T, H*D) act; (b, H*D) with query blocks */
    void  *dq_a, *dk_a, *dv_a; /* (T, H*D), (T, Hkv*D) x2 act: from the ring; (b, .) with query blocks */
    void  *dgate, *dup, *dact; /* (t, F) act */
    int32_t *tok, *lab;    /* (T) backend copies of the shard */
    int64_t *pos;          /* (T) */
    double  *loss;         /* (1) backend memory: summed token losses */
    double  *tok_loss;     /* (T) backend memory: each token's loss, when tokens_out */
    int32_t *tok_pred;     /* (T) backend memory: each token's argmax prediction, when tokens_out */
    int      tokens_out;   /* 1: a forward fills tok_loss and tok_pred (evaluation); 0: training */
    void    *owned;        /* every buffer allocated here, for model_free */
};

/* Allocates the parameter store (zero: load or init the weights with model_set_params;
 * world: the ZeRO group, stage: parallel.zero, host_opt: memory.optimizer host) and the
 * activations. tile_tokens: memory.tile_tokens (0: auto, model_tile); attn_block: the
 * ring's tokens per attention call (ring_call_block; 0: one call per block). */
void model_init(struct model *m, const struct backend *be, const struct model_config *mc,
                struct comm *cp, int zigzag, int T, int ckpt, int tile_tokens, int attn_block, struct comm *world,
                int stage, int host_opt);
/* Tokens per tile for T local tokens: T under MODEL_SAVE_ALL (nothing is recomputed, every
 * activation is kept whole); else min(tile_tokens, T), or for tile_tokens 0 (auto) T split
 * evenly into the fewest tiles of at most MODEL_TILE_AUTO tokens. */
int model_tile(int T, int ckpt, int tile_tokens);
#define MODEL_TILE_AUTO 4096
/* T split evenly into the fewest tiles of at most `most` tokens: their size. */
int model_tile_even(int T, int most);
void model_free(struct model *m);
/* The per-layer tensors the checkpointing policy saves for the backward and offload can
 * move: their shapes (offload.h) and bytes per token row (the layer input, then the
 * attention output); returns how many (2 under the selective policy, else 1). */
int model_saved_rows(const struct model *m, int *shape, size_t *row_bytes);
/* Bytes of host memory they take with rows [0, split) of every layer on the device and the
 * attention outputs of keep layers saved. */
double model_offloaded_bytes(const struct model *m, int64_t split, int keep);
/* Bytes of the reduced gradient shard the parameter store allocates in host memory (the
 * optimizer on the host; else 0) once model_place_saved(split, keep, lend) has lent it. */
double model_grad_shard_bytes(const struct model *m, int64_t split, int keep, int lend);
/* Device bytes model_place_saved adds besides the offload sets with keep layers saving their
 * attention output: their lse, and one attention output and lse shared by the others. */
size_t model_attn_scratch_bytes(const struct model *m, int keep);
/* Allocate them: rows [0, split) of every layer's on the backend, the rest in host memory
 * (offload; split = T: none); the layers tile the two parts apart (layer.c). keep: the
 * layers [0, keep) save their attention output (selective policy only; 0..Ly), the others
 * recompute it in the backward (the ring forward again, as full checkpointing does).
 * lend (the optimizer on the host, one sequence per step: the caller's promise): the host
 * rows of layer j's input, then those of layer j - 1's saved attention output, also hold
 * layer j - 1's reduced gradients (as much of them as fit) from the backward to the next
 * forward (pstore_place_grads); their lifetimes do not meet: the backward reads both before
 * layer j - 1's gradients exist, and the forward writes both after the weights of layer
 * j - 1 are acquired, i.e. updated. Called once after model_init, before the first forward. */
void model_place_saved(struct model *m, int64_t split, int keep, int lend);
/* Whether layer l saved its attention output (else the backward recomputes it). */
int model_saves_attn(const struct model *m, int l);

/* Take fp32 master weights from host memory (pt.total floats, the same on every rank; each
 * rank keeps its shard) and refresh the working copies. Collective. */
void model_set_params(struct model *m, const float *host);

/* Forward (and backward when train) over this rank's shard: tokens, labels (label < 0 is
 * ignored) and global positions, T each, in host memory. Gradients are scaled by
 * grad_scale and added into the parameter store (pstore_begin_step first); this rank's
 * token losses are added to m->loss. Every rank of the ring calls it, and with ZeRO-2/3
 * every rank of the world. */
void model_forward_backward(struct model *m, const int32_t *tokens, const int32_t *labels,
                            const int64_t *pos, float grad_scale, int train);
/* The losses summed since the last call (waits for the backend), and reset to 0. */
double model_take_loss(struct model *m);
/* After a forward with m->tokens_out set: each of the T tokens' loss (0 where the label is
 * < 0) and its argmax prediction, into host memory (waits). */
void model_take_tokens(struct model *m, double *loss, int32_t *pred);

#endif
