/* model: Llama forward and backward over one rank's shard, with rematerialization-aware
 * checkpointing: MODEL_SAVE_SELECTIVE keeps each layer's input, attention output and lse
 * (the backward recomputes norms, projections, RoPE and the MLP, never the ring);
 * MODEL_SAVE_FULL keeps only the layer input (the backward re-runs the ring);
 * MODEL_SAVE_ALL keeps everything.
 * Weights and gradients live in the parameter store (pstore.h), unit by unit (embedding,
 * layers, head): a layer's weights are acquired before it runs and released after (a store
 * converts or gathers them then), its gradients acquired before its backward and released
 * at its end (a ZeRO-2/3 store reduce-scatters them then).
 * Offload: the saved layer inputs and attention outputs of the first n_host layers live in
 * host memory between the forward and the backward (offload.h); model_place_saved decides. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

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

/* The working weight and the gradient at flat offset off (params.h layout). */
static const void *wt(const struct model *m, int64_t off) { return pstore_weight(&m->ps, off); }
static float *gw(const struct model *m, int64_t off) { return pstore_grad(&m->ps, off); }

/* Allocate the fields of a that are NULL (so per-layer storage can be mixed with scratch). */
static void acts_alloc(struct model *m, struct layer_acts *a) {
    const struct model_config *mc = &m->mc;
    int64_t T = m->T, d = mc->dim, hd = (int64_t)mc->n_heads * mc->head_dim,
            kvd = (int64_t)mc->n_kv_heads * mc->head_dim, F = mc->ffn_dim;
    struct { void **p; int64_t n; } act[] = {
        {&a->xn1, T * d}, {&a->q, T * hd}, {&a->k, T * kvd}, {&a->v, T * kvd}, {&a->attn, T * hd},
        {&a->h, T * d}, {&a->xn2, T * d}, {&a->gate, T * F}, {&a->up, T * F}, {&a->act, T * F},
    };
    for (size_t i = 0; i < sizeof act / sizeof act[0]; i++)
        if (!*act[i].p) *act[i].p = act_alloc(m, act[i].n, "activations");
    if (!a->rstd1) a->rstd1 = f32_alloc(m, T, "activations");
    if (!a->rstd2) a->rstd2 = f32_alloc(m, T, "activations");
    if (!a->lse) a->lse = f32_alloc(m, mc->n_heads * T, "activations");
}

void model_init(struct model *m, const struct backend *be, const struct model_config *mc,
                struct comm *cp, int zigzag, int T, int ckpt, struct comm *world, int stage, int host_opt) {
    memset(m, 0, sizeof *m);
    m->be = be;
    m->mc = *mc;
    m->T = T;
    m->ckpt = ckpt;
    m->owned = rt_calloc(1, sizeof(struct owned), "model buffers");
    char err[256];
    if (params_init(&m->pt, mc, err, sizeof err)) RT_FATAL("model: %s", err);
    pstore_init(&m->ps, be, world, mc, stage, host_opt);
    double *inv = rt_calloc((size_t)mc->head_dim / 2, sizeof(double), "rope frequencies");
    params_rope_inv_freq(mc, inv);
    m->inv_freq = own(m, owned_of(m), (size_t)mc->head_dim / 2 * sizeof(double), "rope frequencies");
    be->upload(be, m->inv_freq, inv, (size_t)mc->head_dim / 2 * sizeof(double));
    free(inv);
    ring_init(&m->ring, be, cp, zigzag, T, mc->n_heads, mc->n_kv_heads, mc->head_dim);

    int Ly = mc->n_layers;
    int64_t d = mc->dim, hd = (int64_t)mc->n_heads * mc->head_dim,
            kvd = (int64_t)mc->n_kv_heads * mc->head_dim, F = mc->ffn_dim;
    m->xs = rt_calloc((size_t)Ly + 1, sizeof *m->xs, "layer inputs");
    m->xs[Ly] = act_alloc(m, T * d, "layer inputs");
    m->la = rt_calloc((size_t)Ly, sizeof *m->la, "layer activations");
    acts_alloc(m, &m->scratch);
    for (int l = 0; l < Ly; l++) {
        struct layer_acts *a = &m->la[l];
        if (ckpt == MODEL_SAVE_ALL) {
            acts_alloc(m, a);
            continue;
        }
        *a = m->scratch;
        if (ckpt == MODEL_SAVE_SELECTIVE) {
            a->attn = NULL; /* placed by model_place_saved */
            a->lse = f32_alloc(m, (int64_t)mc->n_heads * T, "saved lse");
        }
    }
    m->xnf = act_alloc(m, T * d, "final norm");
    m->rstdf = f32_alloc(m, T, "final norm");
    m->tmp = act_alloc(m, T * d, "scratch");
    m->g = act_alloc(m, T * d, "gradient");
    m->dxn = act_alloc(m, T * d, "gradient");
    m->dattn = act_alloc(m, T * hd, "gradient");
    m->dq_a = act_alloc(m, T * hd, "gradient");
    m->dk_a = act_alloc(m, T * kvd, "gradient");
    m->dv_a = act_alloc(m, T * kvd, "gradient");
    m->dgate = act_alloc(m, T * F, "gradient");
    m->dup = act_alloc(m, T * F, "gradient");
    m->dact = act_alloc(m, T * F, "gradient");
    m->tok = own(m, owned_of(m), (size_t)T * sizeof(int32_t), "shard tokens");
    m->lab = own(m, owned_of(m), (size_t)T * sizeof(int32_t), "shard labels");
    m->pos = own(m, owned_of(m), (size_t)T * sizeof(int64_t), "shard positions");
    m->loss = own(m, owned_of(m), sizeof(double), "loss");
}

/* The attention output is a saved tensor of its own (offloadable) under the selective policy;
 * the policy "all" keeps it with the layer's other activations. */
static int saves_attn(const struct model *m) { return m->ckpt == MODEL_SAVE_SELECTIVE; }

int model_saved_sizes(const struct model *m, size_t *bytes) {
    int64_t T = m->T, hd = (int64_t)m->mc.n_heads * m->mc.head_dim;
    bytes[0] = (size_t)(T * m->mc.dim) * m->be->act_size;
    bytes[1] = (size_t)(T * hd) * m->be->act_size;
    return saves_attn(m) ? 2 : 1;
}

void model_place_saved(struct model *m, int n_host) {
    if (n_host && m->ckpt == MODEL_SAVE_ALL)
        RT_FATAL("model: offload needs the selective or full checkpointing policy");
    size_t bytes[2];
    model_saved_sizes(m, bytes);
    m->n_host = n_host;
    offload_init(&m->saved_x, m->be, "saved layer inputs", bytes[0], m->mc.n_layers, n_host);
    if (saves_attn(m)) offload_init(&m->saved_attn, m->be, "saved attention outputs", bytes[1], m->mc.n_layers, n_host);
    m->placed = 1;
}

void model_free(struct model *m) {
    if (m->placed) {
        offload_free(&m->saved_x);
        if (saves_attn(m)) offload_free(&m->saved_attn);
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

/* Layer l forward from xs[l]. attention: also run the ring (else attn/lse are saved).
 * out: where the layer output goes (NULL when only recomputing for the backward). */
static void layer_forward(struct model *m, int l, int attention, void *out) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    struct layer_acts *a = &m->la[l];
    struct layer_params lp;
    params_layer(&m->pt, l, &lp);
    int T = m->T, d = mc->dim, H = mc->n_heads, Hkv = mc->n_kv_heads, D = mc->head_dim, F = mc->ffn_dim;
    const void *x = m->xs[l];
    size_t td = (size_t)T * d * be->act_size;
    be->rmsnorm_forward(be, a->xn1, a->rstd1, x, wt(m, lp.attn_norm), T, d, (float)mc->norm_eps);
    be->matmul_forward(be, a->q, a->xn1, wt(m, lp.wq), T, d, H * D);
    be->matmul_forward(be, a->k, a->xn1, wt(m, lp.wk), T, d, Hkv * D);
    be->matmul_forward(be, a->v, a->xn1, wt(m, lp.wv), T, d, Hkv * D);
    be->rope_forward(be, a->q, m->pos, m->inv_freq, T, H, D);
    be->rope_forward(be, a->k, m->pos, m->inv_freq, T, Hkv, D);
    if (attention) ring_forward(&m->ring, a->attn, a->lse, a->q, a->k, a->v);
    be->matmul_forward(be, m->tmp, a->attn, wt(m, lp.wo), T, H * D, d);
    be->copy(be, a->h, x, td);
    be->add(be, a->h, m->tmp, (int64_t)T * d);
    be->rmsnorm_forward(be, a->xn2, a->rstd2, a->h, wt(m, lp.mlp_norm), T, d, (float)mc->norm_eps);
    be->matmul_forward(be, a->gate, a->xn2, wt(m, lp.w_gate), T, d, F);
    be->matmul_forward(be, a->up, a->xn2, wt(m, lp.w_up), T, d, F);
    be->swiglu_forward(be, a->act, a->gate, a->up, (int64_t)T * F);
    if (out) {
        be->matmul_forward(be, m->tmp, a->act, wt(m, lp.w_down), T, F, d);
        be->copy(be, out, a->h, td);
        be->add(be, out, m->tmp, (int64_t)T * d);
    }
}

/* Layer l backward: m->g holds dL/d(layer output) and becomes dL/d(layer input). */
static void layer_backward(struct model *m, int l) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    struct layer_acts *a = &m->la[l];
    struct layer_params lp;
    params_layer(&m->pt, l, &lp);
    int T = m->T, d = mc->dim, H = mc->n_heads, Hkv = mc->n_kv_heads, D = mc->head_dim, F = mc->ffn_dim;
    size_t as = be->act_size, td = (size_t)T * d * as;

    /* MLP: out = h + down(silu(gate) * up); g is dL/dout and, through the residual, dL/dh. */
    be->zero(be, m->dact, (size_t)T * F * as);
    be->matmul_backward(be, m->dact, gw(m, lp.w_down), m->g, a->act, wt(m, lp.w_down), T, F, d);
    be->swiglu_backward(be, m->dgate, m->dup, m->dact, a->gate, a->up, (int64_t)T * F);
    be->zero(be, m->dxn, td);
    be->matmul_backward(be, m->dxn, gw(m, lp.w_gate), m->dgate, a->xn2, wt(m, lp.w_gate), T, d, F);
    be->matmul_backward(be, m->dxn, gw(m, lp.w_up), m->dup, a->xn2, wt(m, lp.w_up), T, d, F);
    be->rmsnorm_backward(be, m->g, gw(m, lp.mlp_norm), m->dxn, a->h, wt(m, lp.mlp_norm), a->rstd2, T, d);

    /* Attention: h = x + o(attn(rope(q), rope(k), v)). */
    be->zero(be, m->dattn, (size_t)T * H * D * as);
    be->matmul_backward(be, m->dattn, gw(m, lp.wo), m->g, a->attn, wt(m, lp.wo), T, H * D, d);
    ring_backward(&m->ring, m->dq_a, m->dk_a, m->dv_a, m->dattn, a->q, a->k, a->v, a->attn, a->lse);
    be->rope_backward(be, m->dq_a, m->pos, m->inv_freq, T, H, D);
    be->rope_backward(be, m->dk_a, m->pos, m->inv_freq, T, Hkv, D);
    be->zero(be, m->dxn, td);
    be->matmul_backward(be, m->dxn, gw(m, lp.wq), m->dq_a, a->xn1, wt(m, lp.wq), T, d, H * D);
    be->matmul_backward(be, m->dxn, gw(m, lp.wk), m->dk_a, a->xn1, wt(m, lp.wk), T, d, Hkv * D);
    be->matmul_backward(be, m->dxn, gw(m, lp.wv), m->dv_a, a->xn1, wt(m, lp.wv), T, d, Hkv * D);
    be->rmsnorm_backward(be, m->g, gw(m, lp.attn_norm), m->dxn, m->xs[l], wt(m, lp.attn_norm), a->rstd1, T, d);
}

void model_forward_backward(struct model *m, const int32_t *tokens, const int32_t *labels,
                            const int64_t *pos, float grad_scale, int train) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int T = m->T, d = mc->dim, V = mc->vocab_size, Ly = mc->n_layers;
    int64_t embed = params_embed(&m->pt), head = params_lm_head(&m->pt), fnorm = params_final_norm(&m->pt);
    be->upload(be, m->tok, tokens, (size_t)T * sizeof(int32_t));
    be->upload(be, m->lab, labels, (size_t)T * sizeof(int32_t));
    be->upload(be, m->pos, pos, (size_t)T * sizeof(int64_t));

    if (!m->placed) RT_FATAL("model: model_place_saved was not called");
    int keep_attn = saves_attn(m);
    struct pstore *ps = &m->ps;
    int unit_head = pstore_head(ps);
    m->xs[0] = offload_write(&m->saved_x, 0);
    be->embedding_forward(be, m->xs[0], m->tok, wt(m, embed), T, d);
    for (int l = 0; l < Ly; l++) { /* layer l is unit l + 1 */
        pstore_acquire_weights(ps, l + 1, l + 1 < Ly ? l + 2 : -1);
        if (l + 1 < Ly) m->xs[l + 1] = offload_write(&m->saved_x, l + 1);
        if (keep_attn) m->la[l].attn = offload_write(&m->saved_attn, l);
        layer_forward(m, l, 1, m->xs[l + 1]);
        offload_written(&m->saved_x, l);
        if (keep_attn) offload_written(&m->saved_attn, l);
        pstore_release_weights(ps, l + 1);
    }
    be->rmsnorm_forward(be, m->xnf, m->rstdf, m->xs[Ly], wt(m, fnorm), T, d, (float)mc->norm_eps);
    size_t td = (size_t)T * d * be->act_size;
    if (train) {
        be->zero(be, m->dxn, td);
        pstore_acquire_grads(ps, unit_head);
        if (mc->tie_embeddings) pstore_acquire_grads(ps, 0); /* lm_head is the embedding */
    }
    be->xent(be, m->loss, train ? m->dxn : NULL, train ? gw(m, head) : NULL, m->xnf, wt(m, head), m->lab, T, d, V,
             grad_scale);
    if (!train) return;
    be->zero(be, m->g, td);
    be->rmsnorm_backward(be, m->g, gw(m, fnorm), m->dxn, m->xs[Ly], wt(m, fnorm), m->rstdf, T, d);
    pstore_release_grads(ps, unit_head);
    for (int l = Ly - 1; l >= 0; l--) {
        m->xs[l] = offload_read(&m->saved_x, l);
        if (keep_attn) m->la[l].attn = offload_read(&m->saved_attn, l);
        offload_prefetch(&m->saved_x, l - 1);
        if (keep_attn) offload_prefetch(&m->saved_attn, l - 1);
        pstore_acquire_weights(ps, l + 1, l > 0 ? l : -1);
        pstore_acquire_grads(ps, l + 1);
        if (m->ckpt != MODEL_SAVE_ALL) layer_forward(m, l, m->ckpt == MODEL_SAVE_FULL, NULL);
        layer_backward(m, l);
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
