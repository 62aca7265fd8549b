/* layer: a decoder layer over token tiles (see layer.h).
 *   forward:  tiles: xn1 = norm(x), q/k/v rows = proj(xn1), RoPE
 *             ring attention over all rows -> attn, lse
 *             tiles: h = x + o(attn), xn2 = norm(h), act = silu(gate(xn2)) * up(xn2),
 *                    out = h + down(act)
 *   backward: [recompute the q/k/v tiles; and the ring when the layer did not save its
 *             attention output (full, or past keep under checkpointing auto)]
 *             tiles: [recompute h .. act of the tile], MLP and norm2 backward into g rows,
 *                    o-proj backward into dattn rows
 *             ring backward -> dq, dk, dv (whole)
 *             tiles: [recompute xn1 of the tile], RoPE and q/k/v backward, norm1 backward
 *                    into g rows
 * Per-tile buffers (tile, .): xn1, rstd1, h, xn2, rstd2, gate, up, act, tmp, dxn, dgate,
 * dup, dact. Whole buffers (T, .): x, out, q, k, v, attn, lse, g, dattn, dq_a, dk_a, dv_a.
 * With one tile (T <= tile) xn1 survives from the q/k/v recompute to the q/k/v backward and
 * is not recomputed a second time. */
#include "layer.h"

/* Element offset into an act buffer. */
static void *at(const struct model *m, const void *base, int64_t elems) {
    return (char *)base + elems * (int64_t)m->be->act_size;
}

/* Tiles of m->tile rows, which never straddle the saved tensors' split (offload.h): rows
 * [0, split) and [split, T) are tiled apart, so a tile's rows of a layer input are in one
 * buffer. */
static int seg_tiles(const struct model *m, int rows) { return (rows + m->tile - 1) / m->tile; }
static int n_tiles(const struct model *m) {
    int s = (int)m->split;
    return seg_tiles(m, s) + seg_tiles(m, m->T - s);
}
/* Tile i: its first row t0 and its n rows. */
static void tile_at(const struct model *m, int i, int *t0, int *n) {
    int s = (int)m->split, first = seg_tiles(m, s), end = i < first ? s : m->T;
    *t0 = i < first ? i * m->tile : s + (i - first) * m->tile;
    *n = end - *t0 < m->tile ? end - *t0 : m->tile;
}

/* Rows [t0, t0 + n): xn1, rstd1 = rmsnorm(x rows); q, k, v rows = projections, RoPE on q, k. */
static void qkv_tile(struct model *m, const struct layer_acts *a, const struct saved_rows *x, const struct layer_weights *w,
                     int t0, int n) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int d = mc->dim, H = mc->n_heads, Hkv = mc->n_kv_heads, D = mc->head_dim;
    int64_t hd = (int64_t)H * D, kvd = (int64_t)Hkv * D;
    void *q = at(m, a->q, t0 * hd), *k = at(m, a->k, t0 * kvd), *v = at(m, a->v, t0 * kvd);
    be->rmsnorm_forward(be, a->xn1, a->rstd1, saved_row(x, t0), w->attn_norm, n, d, (float)mc->norm_eps);
    be->matmul_forward(be, q, a->xn1, w->wq, n, d, (int)hd);
    be->matmul_forward(be, k, a->xn1, w->wk, n, d, (int)kvd);
    be->matmul_forward(be, v, a->xn1, w->wv, n, d, (int)kvd);
    be->rope_forward(be, q, m->pos + t0, m->inv_freq, m->rope_scale, n, H, D);
    be->rope_forward(be, k, m->pos + t0, m->inv_freq, m->rope_scale, n, Hkv, D);
}

/* Rows [t0, t0 + n) after attention: h = x + o(attn), xn2, rstd2, gate, up, act of the
 * tile; and out rows = h + down(act) when out (the forward; NULL when recomputing). */
static void mlp_tile(struct model *m, const struct layer_acts *a, const struct saved_rows *x,
                     const struct layer_weights *w, int t0, int n, const struct saved_rows *out) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int d = mc->dim, F = mc->ffn_dim;
    int64_t hd = (int64_t)mc->n_heads * mc->head_dim, nd = (int64_t)n * d;
    size_t nd_bytes = (size_t)nd * be->act_size;
    be->matmul_forward(be, m->tmp, at(m, a->attn, t0 * hd), w->wo, n, (int)hd, d);
    be->copy(be, a->h, saved_row(x, t0), nd_bytes);
    be->add(be, a->h, m->tmp, nd);
    be->rmsnorm_forward(be, a->xn2, a->rstd2, a->h, w->mlp_norm, n, d, (float)mc->norm_eps);
    be->matmul_forward(be, a->gate, a->xn2, w->w_gate, n, d, F);
    be->matmul_forward(be, a->up, a->xn2, w->w_up, n, d, F);
    be->swiglu_forward(be, a->act, a->gate, a->up, (int64_t)n * F);
    if (!out) return;
    void *o = saved_row(out, t0);
    be->matmul_forward(be, m->tmp, a->act, w->w_down, n, F, d);
    be->copy(be, o, a->h, nd_bytes);
    be->add(be, o, m->tmp, nd);
}

/* Rows [t0, t0 + n): g rows (dL/d out) become dL/dh through the MLP and norm2 (the residual
 * carries g itself); dattn rows = dL/d attn through the o-projection. */
static void mlp_tile_backward(struct model *m, const struct layer_acts *a, const struct layer_weights *w, int t0,
                              int n) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int d = mc->dim, F = mc->ffn_dim;
    int64_t hd = (int64_t)mc->n_heads * mc->head_dim;
    size_t as = be->act_size;
    void *g = at(m, m->g, (int64_t)t0 * d), *dattn = at(m, m->dattn, t0 * hd);
    be->zero(be, m->dact, (size_t)n * F * as);
    be->matmul_backward(be, m->dact, w->g_w_down, g, a->act, w->w_down, n, F, d);
    be->swiglu_backward(be, m->dgate, m->dup, m->dact, a->gate, a->up, (int64_t)n * F);
    be->zero(be, m->dxn, (size_t)n * d * as);
    be->matmul_backward(be, m->dxn, w->g_w_gate, m->dgate, a->xn2, w->w_gate, n, d, F);
    be->matmul_backward(be, m->dxn, w->g_w_up, m->dup, a->xn2, w->w_up, n, d, F);
    be->rmsnorm_backward(be, g, w->g_mlp_norm, m->dxn, a->h, w->mlp_norm, a->rstd2, n, d);
    be->zero(be, dattn, (size_t)(n * hd) * as);
    be->matmul_backward(be, dattn, w->g_wo, g, at(m, a->attn, t0 * hd), w->wo, n, (int)hd, d);
}

/* Rows [t0, t0 + n): dq, dk, dv rows (from the ring) through RoPE and the projections into
 * the tile's dxn, and through norm1 added to the g rows. xn1, rstd1 hold the tile's. */
static void qkv_tile_backward(struct model *m, const struct layer_acts *a, const struct saved_rows *x,
                              const struct layer_weights *w, int t0, int n) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int d = mc->dim, H = mc->n_heads, Hkv = mc->n_kv_heads, D = mc->head_dim;
    int64_t hd = (int64_t)H * D, kvd = (int64_t)Hkv * D;
    void *dq = at(m, m->dq_a, t0 * hd), *dk = at(m, m->dk_a, t0 * kvd), *dv = at(m, m->dv_a, t0 * kvd);
    be->rope_backward(be, dq, m->pos + t0, m->inv_freq, m->rope_scale, n, H, D);
    be->rope_backward(be, dk, m->pos + t0, m->inv_freq, m->rope_scale, n, Hkv, D);
    be->zero(be, m->dxn, (size_t)n * d * be->act_size);
    be->matmul_backward(be, m->dxn, w->g_wq, dq, a->xn1, w->wq, n, d, (int)hd);
    be->matmul_backward(be, m->dxn, w->g_wk, dk, a->xn1, w->wk, n, d, (int)kvd);
    be->matmul_backward(be, m->dxn, w->g_wv, dv, a->xn1, w->wv, n, d, (int)kvd);
    be->rmsnorm_backward(be, at(m, m->g, (int64_t)t0 * d), w->g_attn_norm, m->dxn, saved_row(x, t0),
                         w->attn_norm, a->rstd1, n, d);
}

void layer_forward(struct model *m, int l, const struct layer_weights *w, const struct saved_rows *out) {
    struct layer_acts *a = &m->la[l];
    const struct saved_rows *x = &m->xs[l];
    int nt = n_tiles(m), keep_attn = model_saves_attn(m, l);
    for (int i = 0, t0, n; i < nt; i++) tile_at(m, i, &t0, &n), qkv_tile(m, a, x, w, t0, n);
    if (keep_attn) a->attn = offload_write(&m->saved_attn, l).dev; /* contiguous: OFFLOAD_WHOLE */
    ring_forward(&m->ring, a->attn, a->lse, a->q, a->k, a->v);
    for (int i = 0, t0, n; i < nt; i++) tile_at(m, i, &t0, &n), mlp_tile(m, a, x, w, t0, n, out);
    if (keep_attn) offload_written(&m->saved_attn, l);
}

void layer_backward(struct model *m, int l, const struct layer_weights *w) {
    struct layer_acts *a = &m->la[l];
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    const struct saved_rows *x = &m->xs[l];
    int nt = n_tiles(m), recompute = m->ckpt != MODEL_SAVE_ALL, keep_attn = model_saves_attn(m, l);
    if (recompute) {
        for (int i = 0, t0, n; i < nt; i++) tile_at(m, i, &t0, &n), qkv_tile(m, a, x, w, t0, n);
        if (!keep_attn) ring_forward(&m->ring, a->attn, a->lse, a->q, a->k, a->v);
    }
    if (keep_attn) a->attn = offload_read(&m->saved_attn, l).dev;
    for (int i = 0, t0, n; i < nt; i++) {
        tile_at(m, i, &t0, &n);
        if (recompute) mlp_tile(m, a, x, w, t0, n, NULL);
        mlp_tile_backward(m, a, w, t0, n);
    }
    ring_backward(&m->ring, m->dq_a, m->dk_a, m->dv_a, m->dattn, a->q, a->k, a->v, a->attn, a->lse);
    /* the attention output's staging is free: the layer below may come back into it */
    if (l > 0 && model_saves_attn(m, l - 1)) offload_prefetch(&m->saved_attn, l - 1);
    for (int i = 0, t0, n; i < nt; i++) {
        tile_at(m, i, &t0, &n);
        if (nt > 1) /* the tile's xn1 was overwritten by later tiles */
            be->rmsnorm_forward(be, a->xn1, a->rstd1, saved_row(x, t0), w->attn_norm, n, mc->dim,
                                (float)mc->norm_eps);
        qkv_tile_backward(m, a, x, w, t0, n);
    }
}
