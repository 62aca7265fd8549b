/* model: the Llama forward/backward driver, written once for every backend. It owns the
 * parameters and their gradients (flat buffers laid out by params.h), the activations
 * saved for the backward according to the checkpointing policy, and the ring attention
 * state. One call processes one rank's shard of one sequence.
 * Shapes: T local tokens, d dim, H/Hkv heads, D head dim, F ffn dim, V vocab, Ly layers. */
#ifndef RT_MODEL_H
#define RT_MODEL_H

#include "backend.h"
#include "comm.h"
#include "params.h"
#include "ring.h"

enum model_ckpt { MODEL_SAVE_ALL, MODEL_SAVE_FULL, MODEL_SAVE_SELECTIVE };

/* One layer's activations; pointers into per-layer storage or shared scratch. */
struct layer_acts {
    float *xn1;   /* (T, d) */
    float *rstd1; /* (T) */
    float *q;     /* (T, H, D) after RoPE */
    float *k;     /* (T, Hkv, D) after RoPE */
    float *v;     /* (T, Hkv, D) */
    float *attn;  /* (T, H, D) attention output, pre o_proj */
    float *lse;   /* (H, T) */
    float *h;     /* (T, d) residual after attention */
    float *xn2;   /* (T, d) */
    float *rstd2; /* (T) */
    float *gate;  /* (T, F) */
    float *up;    /* (T, F) */
    float *act;   /* (T, F) silu(gate) * up */
};

struct model {
    const struct backend *be;
    struct model_config mc;
    struct param_table pt;
    float  *params;        /* (pt.total) */
    float  *grads;         /* (pt.total) accumulated by model_forward_backward */
    double *inv_freq;      /* (D/2) host */
    int     T;             /* local tokens per sequence shard */
    int     ckpt;          /* enum model_ckpt */
    int     xent_chunk;    /* tokens per lm_head/cross-entropy chunk */
    struct ring ring;
    float **xs;            /* Ly+1 of (T, d): each layer's input; xs[Ly] the last output */
    struct layer_acts *la; /* Ly */
    struct layer_acts scratch;
    float *xnf, *rstdf;    /* (T, d), (T): final norm */
    float *tmp;            /* (T, d) */
    float *g, *dxn;        /* (T, d) gradients */
    float *dattn, *dq, *dk, *dv; /* (T, H*D), (T, H*D), (T, Hkv*D) x2 */
    float *dgate, *dup, *dact;   /* (T, F) */
    float *xent_scratch;   /* (xent_chunk, V) */
};

/* Allocates parameters (uninitialised: load or init them), gradients and activations. */
void model_init(struct model *m, const struct backend *be, const struct model_config *mc,
                struct comm *cp, int zigzag, int T, int ckpt);
void model_free(struct model *m);

/* Forward (and backward when train) over this rank's shard: tokens, labels (label < 0 is
 * ignored) and global positions, T each. Gradients are scaled by grad_scale and added to
 * m->grads. Returns the sum of this rank's token losses. Every rank of the ring calls it. */
double model_forward_backward(struct model *m, const int32_t *tokens, const int32_t *labels,
                              const int64_t *pos, float grad_scale, int train);

#endif
