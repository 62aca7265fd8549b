/* model: Llama forward and backward over one rank's shard, with rematerialization-aware
 * checkpointing: MODEL_SAVE_SELECTIVE keeps each layer's input, attention output and lse
 * (the backward recomputes norms, projections, RoPE and the MLP, never the ring);
 * MODEL_SAVE_FULL keeps only the layer input (the backward re-runs the ring);
 * MODEL_SAVE_ALL keeps everything. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static float *falloc(const struct backend *be, int64_t n, const char *what) {
    return be->alloc((size_t)n * sizeof(float), what);
}

/* Allocate the fields of a that are NULL (so per-layer storage can be mixed with scratch). */
static void acts_alloc(const struct backend *be, struct layer_acts *a, const struct model_config *mc, int T) {
    int64_t d = mc->dim, hd = (int64_t)mc->n_heads * mc->head_dim,
            kvd = (int64_t)mc->n_kv_heads * mc->head_dim, F = mc->ffn_dim;
    struct { float **p; int64_t n; } f[] = {
        {&a->xn1, T * d}, {&a->rstd1, T},     {&a->q, T * hd},  {&a->k, T * kvd},
        {&a->v, T * kvd}, {&a->attn, T * hd}, {&a->lse, mc->n_heads * (int64_t)T},
        {&a->h, T * d},   {&a->xn2, T * d},   {&a->rstd2, T},   {&a->gate, T * F},
        {&a->up, T * F},  {&a->act, T * F},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!*f[i].p) *f[i].p = falloc(be, f[i].n, "activations");
}

void model_init(struct model *m, const struct backend *be, const struct model_config *mc,
                struct comm *cp, int zigzag, int T, int ckpt) {
    memset(m, 0, sizeof *m);
    m->be = be;
    m->mc = *mc;
    m->T = T;
    m->ckpt = ckpt;
    char err[256];
    if (params_init(&m->pt, mc, err, sizeof err)) RT_FATAL("model: %s", err);
    m->params = falloc(be, m->pt.total, "parameters");
    m->grads = falloc(be, m->pt.total, "gradients");
    m->inv_freq = rt_calloc((size_t)mc->head_dim / 2, sizeof(double), "rope frequencies");
    params_rope_inv_freq(mc, m->inv_freq);
    ring_init(&m->ring, be, cp, zigzag, T, mc->n_heads, mc->n_kv_heads, mc->head_dim);

    int Ly = mc->n_layers;
    int64_t d = mc->dim, hd = (int64_t)mc->n_heads * mc->head_dim,
            kvd = (int64_t)mc->n_kv_heads * mc->head_dim, F = mc->ffn_dim, V = mc->vocab_size;
    m->xs = rt_calloc((size_t)Ly + 1, sizeof *m->xs, "layer inputs");
    for (int l = 0; l <= Ly; l++) m->xs[l] = falloc(be, T * d, "layer inputs");
    m->la = rt_calloc((size_t)Ly, sizeof *m->la, "layer activations");
    acts_alloc(be, &m->scratch, mc, T);
    for (int l = 0; l < Ly; l++) {
        struct layer_acts *a = &m->la[l];
        if (ckpt == MODEL_SAVE_ALL) {
            acts_alloc(be, a, mc, T);
            continue;
        }
        *a = m->scratch;
        if (ckpt == MODEL_SAVE_SELECTIVE) {
            a->attn = falloc(be, T * hd, "saved attention output");
            a->lse = falloc(be, (int64_t)mc->n_heads * T, "saved lse");
        }
    }
    m->xnf = falloc(be, T * d, "final norm");
    m->rstdf = falloc(be, T, "final norm");
    m->tmp = falloc(be, T * d, "scratch");
    m->g = falloc(be, T * d, "gradient");
    m->dxn = falloc(be, T * d, "gradient");
    m->dattn = falloc(be, T * hd, "gradient");
    m->dq = falloc(be, T * hd, "gradient");
    m->dk = falloc(be, T * kvd, "gradient");
    m->dv = falloc(be, T * kvd, "gradient");
    m->dgate = falloc(be, T * F, "gradient");
    m->dup = falloc(be, T * F, "gradient");
    m->dact = falloc(be, T * F, "gradient");
    m->xent_chunk = T < 256 ? T : 256;
    m->xent_scratch = falloc(be, (int64_t)m->xent_chunk * V, "cross-entropy chunk");
}

void model_free(struct model *m) {
    const struct backend *be = m->be;
    int Ly = m->mc.n_layers;
    for (int l = 0; l <= Ly; l++) be->free(m->xs[l]);
    free(m->xs);
    float **mine[] = {&m->scratch.xn1, &m->scratch.rstd1, &m->scratch.q,    &m->scratch.k,
                      &m->scratch.v,   &m->scratch.attn,  &m->scratch.lse,  &m->scratch.h,
                      &m->scratch.xn2, &m->scratch.rstd2, &m->scratch.gate, &m->scratch.up,
                      &m->scratch.act};
    for (int l = 0; l < Ly; l++) {
        struct layer_acts *a = &m->la[l];
        float **fields[] = {&a->xn1, &a->rstd1, &a->q,    &a->k,    &a->v,  &a->attn, &a->lse,
                            &a->h,   &a->xn2,   &a->rstd2, &a->gate, &a->up, &a->act};
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            if (*fields[i] != *mine[i]) be->free(*fields[i]);
    }
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++) be->free(*mine[i]);
    free(m->la);
    float *bufs[] = {m->params, m->grads, m->xnf, m->rstdf, m->tmp,  m->g,    m->dxn,
                     m->dattn,  m->dq,    m->dk,  m->dv,    m->dgate, m->dup, m->dact,
                     m->xent_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(bufs[i]);
    free(m->inv_freq);
    ring_free(&m->ring);
    params_free(&m->pt);
}

/* Layer l forward from xs[l]. attention: also run the ring (else attn/lse are saved).
 * out: where the layer output goes (NULL when only recomputing for the backward). */
static void layer_forward(struct model *m, int l, const int64_t *pos, int attention, float *out) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    struct layer_acts *a = &m->la[l];
    struct layer_params lp;
    params_layer(&m->pt, l, &lp);
    const float *W = m->params;
    int T = m->T, d = mc->dim, H = mc->n_heads, Hkv = mc->n_kv_heads, D = mc->head_dim, F = mc->ffn_dim;
    const float *x = m->xs[l];
    be->rmsnorm_forward(a->xn1, a->rstd1, x, W + lp.attn_norm, T, d, (float)mc->norm_eps);
    be->matmul_forward(a->q, a->xn1, W + lp.wq, T, d, H * D);
    be->matmul_forward(a->k, a->xn1, W + lp.wk, T, d, Hkv * D);
    be->matmul_forward(a->v, a->xn1, W + lp.wv, T, d, Hkv * D);
    be->rope_forward(a->q, pos, m->inv_freq, T, H, D);
    be->rope_forward(a->k, pos, m->inv_freq, T, Hkv, D);
    if (attention) ring_forward(&m->ring, a->attn, a->lse, a->q, a->k, a->v);
    be->matmul_forward(m->tmp, a->attn, W + lp.wo, T, H * D, d);
    be->copy(a->h, x, (size_t)T * d * sizeof(float));
    be->add(a->h, m->tmp, (int64_t)T * d);
    be->rmsnorm_forward(a->xn2, a->rstd2, a->h, W + lp.mlp_norm, T, d, (float)mc->norm_eps);
    be->matmul_forward(a->gate, a->xn2, W + lp.w_gate, T, d, F);
    be->matmul_forward(a->up, a->xn2, W + lp.w_up, T, d, F);
    be->swiglu_forward(a->act, a->gate, a->up, (int64_t)T * F);
    if (out) {
        be->matmul_forward(m->tmp, a->act, W + lp.w_down, T, F, d);
        be->copy(out, a->h, (size_t)T * d * sizeof(float));
        be->add(out, m->tmp, (int64_t)T * d);
    }
}

/* Layer l backward: m->g holds dL/d(layer output) and becomes dL/d(layer input). */
static void layer_backward(struct model *m, int l, const int64_t *pos) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    struct layer_acts *a = &m->la[l];
    struct layer_params lp;
    params_layer(&m->pt, l, &lp);
    const float *W = m->params;
    float *G = m->grads;
    int T = m->T, d = mc->dim, H = mc->n_heads, Hkv = mc->n_kv_heads, D = mc->head_dim, F = mc->ffn_dim;
    size_t td = (size_t)T * d * sizeof(float);

    /* MLP: out = h + down(silu(gate) * up); g is dL/dout and, through the residual, dL/dh. */
    be->zero(m->dact, (size_t)T * F * sizeof(float));
    be->matmul_backward(m->dact, G + lp.w_down, m->g, a->act, W + lp.w_down, T, F, d);
    be->swiglu_backward(m->dgate, m->dup, m->dact, a->gate, a->up, (int64_t)T * F);
    be->zero(m->dxn, td);
    be->matmul_backward(m->dxn, G + lp.w_gate, m->dgate, a->xn2, W + lp.w_gate, T, d, F);
    be->matmul_backward(m->dxn, G + lp.w_up, m->dup, a->xn2, W + lp.w_up, T, d, F);
    be->rmsnorm_backward(m->g, G + lp.mlp_norm, m->dxn, a->h, W + lp.mlp_norm, a->rstd2, T, d);

    /* Attention: h = x + o(attn(rope(q), rope(k), v)). */
    be->zero(m->dattn, (size_t)T * H * D * sizeof(float));
    be->matmul_backward(m->dattn, G + lp.wo, m->g, a->attn, W + lp.wo, T, H * D, d);
    ring_backward(&m->ring, m->dq, m->dk, m->dv, m->dattn, a->q, a->k, a->v, a->attn, a->lse);
    be->rope_backward(m->dq, pos, m->inv_freq, T, H, D);
    be->rope_backward(m->dk, pos, m->inv_freq, T, Hkv, D);
    be->zero(m->dxn, td);
    be->matmul_backward(m->dxn, G + lp.wq, m->dq, a->xn1, W + lp.wq, T, d, H * D);
    be->matmul_backward(m->dxn, G + lp.wk, m->dk, a->xn1, W + lp.wk, T, d, Hkv * D);
    be->matmul_backward(m->dxn, G + lp.wv, m->dv, a->xn1, W + lp.wv, T, d, Hkv * D);
    be->rmsnorm_backward(m->g, G + lp.attn_norm, m->dxn, m->xs[l], W + lp.attn_norm, a->rstd1, T, d);
}

double model_forward_backward(struct model *m, const int32_t *tokens, const int32_t *labels,
                              const int64_t *pos, float grad_scale, int train) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int T = m->T, d = mc->dim, V = mc->vocab_size, Ly = mc->n_layers;
    const float *W = m->params;
    int64_t embed = params_embed(&m->pt), head = params_lm_head(&m->pt), fnorm = params_final_norm(&m->pt);

    be->embedding_forward(m->xs[0], tokens, W + embed, T, d);
    for (int l = 0; l < Ly; l++) layer_forward(m, l, pos, 1, m->xs[l + 1]);
    be->rmsnorm_forward(m->xnf, m->rstdf, m->xs[Ly], W + fnorm, T, d, (float)mc->norm_eps);
    if (!train)
        return be->xent_forward_backward(NULL, NULL, m->xnf, W + head, labels, T, d, V, 0.0f,
                                         m->xent_chunk, m->xent_scratch);

    size_t td = (size_t)T * d * sizeof(float);
    be->zero(m->dxn, td);
    double loss = be->xent_forward_backward(m->dxn, m->grads + head, m->xnf, W + head, labels, T, d,
                                            V, grad_scale, m->xent_chunk, m->xent_scratch);
    be->zero(m->g, td);
    be->rmsnorm_backward(m->g, m->grads + fnorm, m->dxn, m->xs[Ly], W + fnorm, m->rstdf, T, d);
    for (int l = Ly - 1; l >= 0; l--) {
        if (m->ckpt != MODEL_SAVE_ALL) layer_forward(m, l, pos, m->ckpt == MODEL_SAVE_FULL, NULL);
        layer_backward(m, l, pos);
    }
    be->embedding_backward(m->grads + embed, m->g, tokens, T, d);
    return loss;
}
