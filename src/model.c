/* model: Llama forward and backward over one rank's shard, with rematerialization-aware
 * checkpointing: MODEL_SAVE_SELECTIVE keeps each layer's input, and the attention output and
 * lse of the layers [0, keep) (model_place_saved; all of them under memory.checkpointing
 * selective): the backward recomputes norms, projections, RoPE and the MLP, and the ring only
 * for the layers past keep;
 * MODEL_SAVE_FULL keeps only the layer input (the backward re-runs the ring);
 * MODEL_SAVE_ALL keeps everything.
 * Weights and gradients live in the parameter store (pstore.h), unit by unit (embedding,
 * layers, head): a layer's weights are acquired before it runs and released after (a store
 * converts or gathers them then), its gradients acquired before its backward and released
 * at its end (a ZeRO-2/3 store reduce-scatters them then).
 * Offload: the last T - split tokens of every layer's saved input and attention output live
 * in host memory between the forward and the backward (offload.h); model_place_saved
 * decides the split.
 * Tiles: the layers (layer.h) and the head (final norm, lm_head and cross-entropy) work on
 * tiles of m->tile tokens; their scratch is (tile, .). Query blocks: on a blocked ring of one
 * rank the layers also run attention query block by query block, and q, the shared
 * attention output and the attention gradients are (block, .). */
#include "model.h"

#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "runtime.h"

/* Every buffer this model allocates, for model_free. */
struct owned {
    void **p;
    int n, cap;
};

static void *own(struct model *m, struct owned *o, size_t bytes, const char *what) {
    void *p = m->be->alloc(m->be, bytes, what);
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->p = realloc(o->p, (size_t)o->cap * sizeof *o->p);
        if (!o->p) RT_FATAL("out of memory");
    }
    o->p[o->n++] = p;
    return p;
}

static struct owned *owned_of(struct model *m) { return (struct owned *)m->owned; }

static void *act_alloc(struct model *m, int64_t n, const char *what) {
    return own(m, owned_of(m), (size_t)n * m->be->act_size, what);
}
static float *f32_alloc(struct model *m, int64_t n, const char *what) {
    return own(m, owned_of(m), (size_t)n * sizeof(float), what);
}

/* Element offset into an act buffer. */
static void *at(const struct model *m, const void *base, int64_t elems) {
    return (char *)base + elems * (int64_t)m->be->act_size;
}

/* The working weight and the gradient at flat offset off (params.h layout). */
static const void *wt(const struct model *m, int64_t off) { return pstore_weight(&m->ps, off); }
static float *gw(const struct model *m, int64_t off) { return pstore_grad(&m->ps, off); }

int model_tile_even(int T, int most) {
    int n = (T + most - 1) / most;
    return (T + n - 1) / n;
}

int model_tile(int T, int ckpt, int tile_tokens) {
    if (ckpt == MODEL_SAVE_ALL || T <= 0) return T;
    if (tile_tokens > 0) return tile_tokens < T ? tile_tokens : T;
    return model_tile_even(T, MODEL_TILE_AUTO);
}

/* Rows of q, the shared attention output and the attention gradients: a query block
 * (m->qblk) or all T. */
static int64_t q_rows(const struct model *m) { return m->qblk ? m->qblk : m->T; }

/* Allocate a layer's activations: q (q_rows), k, v whole (T rows), the token-wise ones for one
 * tile (t rows), and the attention output and lse (whole) when attn. */
static void acts_alloc(struct model *m, struct layer_acts *a, int attn) {
    const struct model_config *mc = &m->mc;
    int64_t T = m->T, t = m->tile, d = mc->dim, hd = (int64_t)mc->n_heads * mc->head_dim,
            kvd = (int64_t)mc->n_kv_heads * mc->head_dim, F = mc->ffn_dim;
    a->q = act_alloc(m, q_rows(m) * hd, "activations: q");
    a->k = act_alloc(m, T * kvd, "activations: k, v");
    a->v = act_alloc(m, T * kvd, "activations: k, v");
    if (attn) {
        a->attn = act_alloc(m, T * hd, "activations: attention output");
        a->lse = f32_alloc(m, mc->n_heads * T, "activations: lse");
    }
    a->xn1 = act_alloc(m, t * d, "tile activations: xn1, h, xn2");
    a->h = act_alloc(m, t * d, "tile activations: xn1, h, xn2");
    a->xn2 = act_alloc(m, t * d, "tile activations: xn1, h, xn2");
    a->gate = act_alloc(m, t * F, "tile activations: gate, up, act");
    a->up = act_alloc(m, t * F, "tile activations: gate, up, act");
    a->act = act_alloc(m, t * F, "tile activations: gate, up, act");
    a->rstd1 = f32_alloc(m, t, "tile activations: rstd");
    a->rstd2 = f32_alloc(m, t, "tile activations: rstd");
}

void model_init(struct model *m, const struct backend *be, const struct model_config *mc,
                struct comm *cp, int zigzag, int T, int ckpt, int tile_tokens, int attn_block, struct comm *world,
                int stage, int host_opt) {
    memset(m, 0, sizeof *m);
    m->be = be;
    m->mc = *mc;
    m->T = T;
    m->ckpt = ckpt;
    m->tile = model_tile(T, ckpt, tile_tokens);
    m->owned = rt_calloc(1, sizeof(struct owned), "model buffers");
    char err[256];
    if (params_init(&m->pt, mc, err, sizeof err)) RT_FATAL("model: %s", err);
    pstore_init(&m->ps, be, world, mc, stage, host_opt);
    double *inv = rt_calloc((size_t)mc->head_dim / 2, sizeof(double), "rope frequencies");
    rope_frequencies(&mc->rope, mc->rope_theta, mc->head_dim, inv, &m->rope_scale);
    m->inv_freq = own(m, owned_of(m), (size_t)mc->head_dim / 2 * sizeof(double), "rope frequencies");
    be->upload(be, m->inv_freq, inv, (size_t)mc->head_dim / 2 * sizeof(double));
    free(inv);
    ring_init(&m->ring, be, cp, zigzag, T, mc->n_heads, mc->n_kv_heads, mc->head_dim, attn_block);
    /* a blocked ring of one rank: the layer runs query block by query block (layer.c) */
    m->qblk = cp->size == 1 && m->ring.blk && ckpt != MODEL_SAVE_ALL ? m->ring.blk : 0;

    int Ly = mc->n_layers;
    int64_t d = mc->dim, hd = (int64_t)mc->n_heads * mc->head_dim,
            kvd = (int64_t)mc->n_kv_heads * mc->head_dim, F = mc->ffn_dim, t = m->tile;
    m->xs = rt_calloc((size_t)Ly + 1, sizeof *m->xs, "layer inputs");
    /* the last layer's output, and once the head has read a tile of it, that tile's gradient */
    m->g = act_alloc(m, T * d, "last layer output, then the residual stream's gradient");
    m->xs[Ly] = (struct saved_rows){m->g, NULL, T, (size_t)d * be->act_size};
    m->la = rt_calloc((size_t)Ly, sizeof *m->la, "layer activations");
    /* "all" keeps every layer's own; the others share one scratch layer, whose attention
     * output and lse only full checkpointing uses (selective saves them per layer). */
    if (ckpt != MODEL_SAVE_ALL) acts_alloc(m, &m->scratch, 0);
    for (int l = 0; l < Ly; l++) {
        struct layer_acts *a = &m->la[l];
        if (ckpt == MODEL_SAVE_ALL) {
            acts_alloc(m, a, 1);
            continue;
        }
        *a = m->scratch;
        /* the selective policy's attn: m->saved_attn's, set by the layer (layer.c) */
    }
    m->xnf = act_alloc(m, t * d, "tile activations: final norm");
    m->rstdf = f32_alloc(m, t, "tile activations: rstd");
    m->tmp = act_alloc(m, t * d, "tile activations: projection output");
    m->dxn = act_alloc(m, t * d, "tile gradients: dxn");
    m->dattn = act_alloc(m, q_rows(m) * hd, "gradient: dattn");
    m->dq_a = act_alloc(m, q_rows(m) * hd, "gradient: dq");
    m->dk_a = act_alloc(m, q_rows(m) * kvd, "gradient: dk, dv");
    m->dv_a = act_alloc(m, q_rows(m) * kvd, "gradient: dk, dv");
    m->dgate = act_alloc(m, t * F, "tile gradients: dgate, dup, dact");
    m->dup = act_alloc(m, t * F, "tile gradients: dgate, dup, dact");
    m->dact = act_alloc(m, t * F, "tile gradients: dgate, dup, dact");
    m->tok = own(m, owned_of(m), (size_t)T * sizeof(int32_t), "shard tokens");
    m->lab = own(m, owned_of(m), (size_t)T * sizeof(int32_t), "shard labels");
    m->pos = own(m, owned_of(m), (size_t)T * sizeof(int64_t), "shard positions");
    m->loss = own(m, owned_of(m), sizeof(double), "loss");
    m->tok_loss = own(m, owned_of(m), (size_t)T * sizeof(double), "token losses and predictions");
    m->tok_pred = own(m, owned_of(m), (size_t)T * sizeof(int32_t), "token losses and predictions");
}

/* The attention output is a saved tensor of its own (offloadable) under the selective policy,
 * for the layers [0, keep); the policy "all" keeps it with the layer's other activations. */
int model_saves_attn(const struct model *m, int l) { return m->ckpt == MODEL_SAVE_SELECTIVE && l < m->keep; }

int model_saved_rows(const struct model *m, int *shape, size_t *row_bytes) {
    shape[0] = OFFLOAD_ROWS;
    shape[1] = OFFLOAD_WHOLE;
    row_bytes[0] = (size_t)m->mc.dim * m->be->act_size;
    row_bytes[1] = (size_t)m->mc.n_heads * m->mc.head_dim * m->be->act_size;
    return m->ckpt == MODEL_SAVE_SELECTIVE ? 2 : 1;
}

double model_offloaded_bytes(const struct model *m, int64_t split, int keep) {
    int shape[2];
    size_t rb[2];
    model_saved_rows(m, shape, rb);
    return ((double)rb[0] * m->mc.n_layers + (double)rb[1] * keep) * (double)(m->T - split);
}

/* The host memory lent to each parameter store unit (model_place_saved) with rows
 * [split, T) of every layer's saved tensors offloaded and keep layers saving their attention
 * output: unit j (layer j - 1) gets the host rows of layer j's input (j = 1 .. Ly - 1), then
 * those of its own layer's attention output (when saved). Pointers only once placed. */
static struct pstore_lend *lent_per_unit(const struct model *m, int64_t split, int keep) {
    int shape[2], Ly = m->mc.n_layers;
    size_t rb[2];
    model_saved_rows(m, shape, rb);
    struct pstore_lend *l = rt_calloc((size_t)m->ps.n_units * PSTORE_LENDERS, sizeof *l, "lent memory");
    for (int u = 1; u <= Ly && split < m->T; u++) {
        struct pstore_lend *x = &l[u * PSTORE_LENDERS], *a = x + 1;
        if (u < Ly) *x = (struct pstore_lend){m->placed ? m->saved_x.host[u] : NULL,
                                              (int64_t)(rb[0] * (size_t)(m->T - split) / sizeof(float))};
        if (u - 1 < keep) *a = (struct pstore_lend){m->placed ? m->saved_attn.host[u - 1] : NULL,
                                                    (int64_t)(rb[1] * (size_t)(m->T - split) / sizeof(float))};
    }
    return l;
}

double model_grad_shard_bytes(const struct model *m, int64_t split, int keep, int lend) {
    if (!m->ps.host_opt) return 0;
    struct pstore_lend *l = lent_per_unit(m, split, keep);
    double b = (double)pstore_grad_shard_floats(&m->ps, lend ? l : NULL) * sizeof(float);
    free(l);
    return b;
}

size_t model_attn_scratch_bytes(const struct model *m, int keep) {
    const struct model_config *mc = &m->mc;
    size_t lse = (size_t)mc->n_heads * (size_t)m->T * sizeof(float);
    size_t attn = (size_t)q_rows(m) * (size_t)mc->n_heads * (size_t)mc->head_dim * m->be->act_size;
    if (m->ckpt == MODEL_SAVE_ALL) return 0;
    return (size_t)keep * lse + (keep < mc->n_layers ? attn + lse : 0);
}

void model_place_saved(struct model *m, int64_t split, int keep, int lend) {
    const struct model_config *mc = &m->mc;
    int Ly = mc->n_layers;
    if (split < m->T && m->ckpt == MODEL_SAVE_ALL)
        RT_FATAL("model: offload needs the selective or full checkpointing policy");
    if (keep < 0 || keep > Ly || (keep && m->ckpt != MODEL_SAVE_SELECTIVE))
        RT_FATAL("model: the attention outputs of %d of %d layers saved under checkpointing policy %d", keep, Ly,
                 m->ckpt);
    int shape[2];
    size_t rb[2];
    model_saved_rows(m, shape, rb);
    m->split = split;
    m->keep = keep;
    if (m->ckpt != MODEL_SAVE_ALL) {
        /* the layers that recompute their attention output share one, and one lse */
        if (keep < Ly) {
            m->scratch.attn = act_alloc(m, q_rows(m) * mc->n_heads * mc->head_dim, "activations: attention output");
            m->scratch.lse = f32_alloc(m, (int64_t)mc->n_heads * m->T, "activations: lse");
        }
        for (int l = 0; l < Ly; l++) {
            if (l < keep) m->la[l].lse = f32_alloc(m, (int64_t)mc->n_heads * m->T, "saved lse");
            else m->la[l].attn = m->scratch.attn, m->la[l].lse = m->scratch.lse;
        }
    }
    offload_init(&m->saved_x, m->be, "saved layer inputs", shape[0], rb[0], m->T, Ly, split);
    if (keep) offload_init(&m->saved_attn, m->be, "saved attention outputs", shape[1], rb[1], m->T, keep, split);
    m->placed = 1;
    struct pstore_lend *l = lent_per_unit(m, split, keep);
    pstore_place_grads(&m->ps, lend && split < m->T ? l : NULL);
    free(l);
}

void model_free(struct model *m) {
    if (m->placed) {
        offload_free(&m->saved_x);
        if (m->keep) offload_free(&m->saved_attn);
    }
    struct owned *o = owned_of(m);
    for (int i = 0; i < o->n; i++) m->be->free(m->be, o->p[i]);
    free(o->p);
    free(o);
    free(m->xs);
    free(m->la);
    ring_free(&m->ring);
    pstore_free(&m->ps);
    params_free(&m->pt);
}

void model_set_params(struct model *m, const float *host) { pstore_set(&m->ps, host); }

/* Layer l's working weights and, with grads, its weight gradients (unit l + 1 of the
 * parameter store acquired for them). */
static void layer_weights_of(const struct model *m, int l, int grads, struct layer_weights *w) {
    struct layer_params lp;
    params_layer(&m->pt, l, &lp);
    *w = (struct layer_weights){
        .attn_norm = wt(m, lp.attn_norm), .wq = wt(m, lp.wq), .wk = wt(m, lp.wk), .wv = wt(m, lp.wv),
        .wo = wt(m, lp.wo), .mlp_norm = wt(m, lp.mlp_norm), .w_gate = wt(m, lp.w_gate), .w_up = wt(m, lp.w_up),
        .w_down = wt(m, lp.w_down)};
    if (!grads) return;
    *w = (struct layer_weights){
        .attn_norm = w->attn_norm, .wq = w->wq, .wk = w->wk, .wv = w->wv, .wo = w->wo, .mlp_norm = w->mlp_norm,
        .w_gate = w->w_gate, .w_up = w->w_up, .w_down = w->w_down,
        .g_attn_norm = gw(m, lp.attn_norm), .g_wq = gw(m, lp.wq), .g_wk = gw(m, lp.wk), .g_wv = gw(m, lp.wv),
        .g_wo = gw(m, lp.wo), .g_mlp_norm = gw(m, lp.mlp_norm), .g_w_gate = gw(m, lp.w_gate),
        .g_w_up = gw(m, lp.w_up), .g_w_down = gw(m, lp.w_down)};
}

/* The head over tiles of the last layer's output xs[Ly]: final norm, lm_head and
 * cross-entropy (the backend chunks it further); when train, dL/d xs[Ly] replaces xs[Ly]
 * tile by tile (m->g is the same buffer), through the tile buffer tmp. */
static void head(struct model *m, float grad_scale, int train) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int T = m->T, d = mc->dim, V = mc->vocab_size;
    int64_t head = params_lm_head(&m->pt), fnorm = params_final_norm(&m->pt);
    struct pstore *ps = &m->ps;
    pstore_acquire_weights(ps, pstore_head(ps), -1);
    if (train) {
        pstore_acquire_grads(ps, pstore_head(ps));
        if (mc->tie_embeddings) pstore_acquire_grads(ps, 0); /* lm_head is the embedding */
    }
    for (int t0 = 0; t0 < T; t0 += m->tile) {
        int n = T - t0 < m->tile ? T - t0 : m->tile;
        size_t nd = (size_t)n * d * be->act_size;
        const void *x = at(m, m->g, (int64_t)t0 * d);
        be->rmsnorm_forward(be, m->xnf, m->rstdf, x, wt(m, fnorm), n, d, (float)mc->norm_eps);
        if (train) be->zero(be, m->dxn, nd);
        int out = m->tokens_out;
        be->xent(be, m->loss, out ? m->tok_loss + t0 : NULL, out ? m->tok_pred + t0 : NULL, train ? m->dxn : NULL,
                 train ? gw(m, head) : NULL, m->xnf, wt(m, head), m->lab + t0, n, d, V, grad_scale);
        if (!train) continue;
        be->zero(be, m->tmp, nd);
        be->rmsnorm_backward(be, m->tmp, gw(m, fnorm), m->dxn, x, wt(m, fnorm), m->rstdf, n, d);
        be->copy(be, at(m, m->g, (int64_t)t0 * d), m->tmp, nd);
    }
    if (train) pstore_release_grads(ps, pstore_head(ps));
}

void model_forward_backward(struct model *m, const int32_t *tokens, const int32_t *labels,
                            const int64_t *pos, float grad_scale, int train) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int T = m->T, d = mc->dim, Ly = mc->n_layers;
    int64_t embed = params_embed(&m->pt);
    struct layer_weights w;
    be->upload(be, m->tok, tokens, (size_t)T * sizeof(int32_t));
    be->upload(be, m->lab, labels, (size_t)T * sizeof(int32_t));
    be->upload(be, m->pos, pos, (size_t)T * sizeof(int64_t));

    if (!m->placed) RT_FATAL("model: model_place_saved was not called");
    struct pstore *ps = &m->ps;
    struct saved_rows *x0 = &m->xs[0];
    *x0 = offload_write(&m->saved_x, 0);
    pstore_acquire_weights(ps, 0, 1);
    int split = (int)x0->split; /* rows [0, split) at x0->dev, the rest at x0->tail */
    if (split) be->embedding_forward(be, x0->dev, m->tok, wt(m, embed), split, d);
    if (split < T) be->embedding_forward(be, x0->tail, m->tok + split, wt(m, embed), T - split, d);
    offload_written(&m->saved_x, 0);
    for (int l = 0; l < Ly; l++) { /* layer l is unit l + 1 of the parameter store */
        pstore_acquire_weights(ps, l + 1, l + 1 < Ly ? l + 2 : -1);
        if (l + 1 < Ly) m->xs[l + 1] = offload_write(&m->saved_x, l + 1);
        layer_weights_of(m, l, 0, &w);
        layer_forward(m, l, &w, &m->xs[l + 1]);
        if (l + 1 < Ly) offload_written(&m->saved_x, l + 1);
        pstore_release_weights(ps, l + 1);
    }
    head(m, grad_scale, train);
    if (!train) return;
    for (int l = Ly - 1; l >= 0; l--) {
        m->xs[l] = offload_read(&m->saved_x, l);
        offload_prefetch(&m->saved_x, l - 1);
        pstore_acquire_weights(ps, l + 1, l > 0 ? l : -1);
        pstore_acquire_grads(ps, l + 1);
        layer_weights_of(m, l, 1, &w);
        layer_backward(m, l, &w);
        pstore_release_weights(ps, l + 1);
        pstore_release_grads(ps, l + 1);
    }
    pstore_acquire_grads(ps, 0);
    be->embedding_backward(be, gw(m, embed), m->g, m->tok, T, d);
    pstore_release_grads(ps, 0);
}

double model_take_loss(struct model *m) {
    double loss;
    m->be->download(m->be, &loss, m->loss, sizeof loss);
    m->be->zero(m->be, m->loss, sizeof(double));
    return loss;
}

void model_take_tokens(struct model *m, double *loss, int32_t *pred) {
    m->be->download(m->be, loss, m->tok_loss, (size_t)m->T * sizeof(double));
    m->be->download(m->be, pred, m->tok_pred, (size_t)m->T * sizeof(int32_t));
}
