/* params: the model's shape (struct model_config) and its parameter layout: one flat
 * fp32 buffer with named views whose names and shapes are exactly Hugging Face
 * LlamaForCausalLM's tensor names (model.layers.{l}.self_attn.q_proj.weight, ...).
 * Linear weights are (out, in) as in torch: y = x W^T. */
#ifndef RT_PARAMS_H
#define RT_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "rope.h"

/* The largest model shape ringtrain accepts, from the job's model.* keys (config_schema.c) or
 * an HF config.json (hf.c), checked before anything is sized by it: a typo like n_layers
 * 1e8 is a bad-input error, not a table grown until the kernel kills rank 0. Each is far
 * above today's largest open models (Llama 3 405B: vocab 128256, dim 16384, 126 layers,
 * 128 heads, ffn 53248) and keeps every per-tensor size within int64. */
#define MODEL_MAX_VOCAB  (1 << 24)
#define MODEL_MAX_DIM    (1 << 17)
#define MODEL_MAX_LAYERS 4096
#define MODEL_MAX_HEADS  4096
#define MODEL_MAX_FFN    (1 << 20)

struct model_config {
    int    vocab_size;     /* V */
    int    dim;            /* d */
    int    n_layers;       /* Ly */
    int    n_heads;        /* H */
    int    n_kv_heads;     /* Hkv, divides H */
    int    head_dim;       /* D, even; dim / n_heads unless an HF config says otherwise */
    int    ffn_dim;        /* F */
    double norm_eps;
    double rope_theta;
    int    tie_embeddings; /* lm_head shares model.embed_tokens.weight */
    int64_t max_positions; /* an HF config's max_position_embeddings; 0 when unknown (exports
                              advertise max(this, data.seq_len)) */
    struct rope_scaling rope; /* rope.h; dynamic: rope.seq_len = data.seq_len */
};

#define PARAM_NAME_MAX 96

struct param {
    char    name[PARAM_NAME_MAX]; /* HF tensor name */
    int64_t offset;               /* in floats, into the flat buffer */
    int     ndim;                 /* 1 or 2 */
    int64_t shape[2];
    int64_t numel;
};

struct param_table {
    int           n;
    struct param *p;      /* n entries, in a fixed order (embedding, layers, norm, lm_head) */
    int64_t       total;  /* floats in the flat buffer */
};

/* Build the layout for a shape. Returns 0, or -1 with a message for an impossible shape. */
int  params_init(struct param_table *t, const struct model_config *mc, char *err, size_t errlen);
void params_free(struct param_table *t);
/* NULL when absent. */
const struct param *params_find(const struct param_table *t, const char *name);

/* Layer tensor offsets, for the model driver. */
struct layer_params {
    int64_t attn_norm;   /* (d) */
    int64_t wq;          /* (H*D, d) */
    int64_t wk;          /* (Hkv*D, d) */
    int64_t wv;          /* (Hkv*D, d) */
    int64_t wo;          /* (d, H*D) */
    int64_t mlp_norm;    /* (d) */
    int64_t w_gate;      /* (F, d) */
    int64_t w_up;        /* (F, d) */
    int64_t w_down;      /* (d, F) */
};
void params_layer(const struct param_table *t, int layer, struct layer_params *lp);
int64_t params_embed(const struct param_table *t);    /* (V, d) */
int64_t params_final_norm(const struct param_table *t); /* (d) */
int64_t params_lm_head(const struct param_table *t);  /* (V, d); the embedding when tied */

/* Random init that depends only on the seed and each tensor's name (never on the rank
 * count): norm weights 1, every other tensor normal(0, 0.02). */
void params_init_random(const struct param_table *t, uint64_t seed, float *buf);
/* The same values for the flat range [lo, lo + n) only, into dst[n]. */
void params_init_random_range(const struct param_table *t, uint64_t seed, int64_t lo, int64_t n, float *dst);

#endif
