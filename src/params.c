/* params: parameter layout (HF names, one flat fp32 buffer), seeded random init. */
#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static void add(struct param_table *t, int *cap, const char *name, int ndim, int64_t s0, int64_t s1) {
    if (t->n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        struct param *p = realloc(t->p, (size_t)*cap * sizeof *p);
        if (!p) { perror("realloc"); abort(); }
        t->p = p;
    }
    struct param *p = &t->p[t->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->shape[0] = s0;
    p->shape[1] = ndim == 2 ? s1 : 1;
    p->numel = s0 * p->shape[1];
    p->offset = t->total;
    t->total += p->numel;
}

int params_init(struct param_table *t, const struct model_config *mc, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    if (mc->vocab_size < 1 || mc->dim < 1 || mc->n_layers < 1 || mc->n_heads < 1 ||
        mc->n_kv_heads < 1 || mc->ffn_dim < 1 || mc->head_dim < 2) {
        snprintf(err, errlen, "model shape has a dimension < 1");
        return -1;
    }
    if (mc->n_heads % mc->n_kv_heads) {
        snprintf(err, errlen, "n_heads %d is not a multiple of n_kv_heads %d", mc->n_heads,
                 mc->n_kv_heads);
        return -1;
    }
    if (mc->head_dim % 2) {
        snprintf(err, errlen, "head dim %d is odd (RoPE needs pairs)", mc->head_dim);
        return -1;
    }
    int cap = 0;
    char name[PARAM_NAME_MAX];
    int64_t d = mc->dim, hd = (int64_t)mc->n_heads * mc->head_dim,
            kvd = (int64_t)mc->n_kv_heads * mc->head_dim, f = mc->ffn_dim;
    add(t, &cap, "model.embed_tokens.weight", 2, mc->vocab_size, d);
    static const struct { const char *name; int which; } layer[] = {
        {"input_layernorm.weight", 0},  {"self_attn.q_proj.weight", 1},
        {"self_attn.k_proj.weight", 2}, {"self_attn.v_proj.weight", 2},
        {"self_attn.o_proj.weight", 3}, {"post_attention_layernorm.weight", 0},
        {"mlp.gate_proj.weight", 4},    {"mlp.up_proj.weight", 4},
        {"mlp.down_proj.weight", 5},
    };
    for (int l = 0; l < mc->n_layers; l++) {
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, layer[i].name);
            switch (layer[i].which) {
            case 0: add(t, &cap, name, 1, d, 1); break;
            case 1: add(t, &cap, name, 2, hd, d); break;
            case 2: add(t, &cap, name, 2, kvd, d); break;
            case 3: add(t, &cap, name, 2, d, hd); break;
            case 4: add(t, &cap, name, 2, f, d); break;
            default: add(t, &cap, name, 2, d, f); break;
            }
        }
    }
    add(t, &cap, "model.norm.weight", 1, d, 1);
    if (!mc->tie_embeddings) add(t, &cap, "lm_head.weight", 2, mc->vocab_size, d);
    return 0;
}

void params_free(struct param_table *t) {
    free(t->p);
    memset(t, 0, sizeof *t);
}

const struct param *params_find(const struct param_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->p[i].name, name)) return &t->p[i];
    return NULL;
}

enum { LAYER_TENSORS = 9 };

void params_layer(const struct param_table *t, int layer, struct layer_params *lp) {
    const struct param *p = &t->p[1 + layer * LAYER_TENSORS];
    lp->attn_norm = p[0].offset;
    lp->wq = p[1].offset;
    lp->wk = p[2].offset;
    lp->wv = p[3].offset;
    lp->wo = p[4].offset;
    lp->mlp_norm = p[5].offset;
    lp->w_gate = p[6].offset;
    lp->w_up = p[7].offset;
    lp->w_down = p[8].offset;
}

int64_t params_embed(const struct param_table *t) { return t->p[0].offset; }

int64_t params_final_norm(const struct param_table *t) {
    const struct param *p = params_find(t, "model.norm.weight");
    return p->offset;
}

int64_t params_lm_head(const struct param_table *t) {
    const struct param *p = params_find(t, "lm_head.weight");
    return p ? p->offset : params_embed(t);
}

void params_init_random(const struct param_table *t, uint64_t seed, float *buf) {
    params_init_random_range(t, seed, 0, t->total, buf);
}

void params_init_random_range(const struct param_table *t, uint64_t seed, int64_t lo, int64_t n, float *dst) {
    for (int i = 0; i < t->n; i++) {
        const struct param *p = &t->p[i];
        int64_t a = p->offset > lo ? p->offset : lo, b = p->offset + p->numel < lo + n ? p->offset + p->numel : lo + n;
        if (a >= b) continue;
        float *w = dst + (a - lo);
        if (p->ndim == 1) {
            for (int64_t j = 0; j < b - a; j++) w[j] = 1.0f;
            continue;
        }
        uint64_t key = rng_hash_str(seed, p->name);
        int64_t j0 = a - p->offset;
#pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < b - a; j++) w[j] = 0.02f * (float)rng_normal(key, (uint64_t)(j0 + j));
    }
}
