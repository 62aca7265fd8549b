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
 *   With query blocks (a blocked ring of one rank, m->qblk) the same per block: forward
 *   block by block (its q/k/v tiles, its attention against the keys so far, its MLP tiles);
 *   backward k, v recomputed whole, then block by block from the last (its q, [its
 *   attention output], its MLP backward, its attention backward, and -- its keys' dK/dV
 *   final -- its q/k/v backward).
 * Per-tile buffers (tile, .): xn1, rstd1, h, xn2, rstd2, gate, up, act, tmp, dxn, dgate,
 * dup, dact. Whole buffers (T, .): x, out, k, v, lse, g; and q, attn, dattn, dq_a, dk_a,
 * dv_a unless query blocks make them (block, .).
 * A range that is one tile keeps xn1 from the q/k/v recompute to the q/k/v backward (not
 * recomputed a second time). */
#include "layer.h"

/* Element offset into an act buffer. */
static void *at(const struct model *m, const void *base, int64_t elems) {
    return (char *)base + elems * (int64_t)m->be->act_size;
}

/* Rows of the tile starting at row t0 of a range ending at end: at most m->tile, and never
 * across the saved tensors' split (offload.h), so a tile's rows of a layer input are in one
 * buffer. Loops: for (t0 = a; t0 < b; t0 += n) n = tile_len(m, t0, b). */
static int tile_len(const struct model *m, int t0, int end) {
    int lim = t0 < m->split && m->split < end ? (int)m->split : end;
    return lim - t0 < m->tile ? lim - t0 : m->tile;
}

/* Rows [t0, t0 + n): xn1, rstd1 = rmsnorm(x rows); q rows = its projection with RoPE (q: the
 * tile's first row; NULL: not now), k, v rows likewise (NULL: not now). */
static void qkv_tile(struct model *m, const struct layer_acts *a, const struct saved_rows *x, const struct layer_weights *w,
                     int t0, int n, void *q, void *k, void *v) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int d = mc->dim, H = mc->n_heads, Hkv = mc->n_kv_heads, D = mc->head_dim;
    be->rmsnorm_forward(be, a->xn1, a->rstd1, saved_row(x, t0), w->attn_norm, n, d, (float)mc->norm_eps);
    if (q) {
        be->matmul_forward(be, q, a->xn1, w->wq, n, d, H * D);
        be->rope_forward(be, q, m->pos + t0, m->inv_freq, m->rope_scale, n, H, D);
    }
    if (k) {
        be->matmul_forward(be, k, a->xn1, w->wk, n, d, Hkv * D);
        be->matmul_forward(be, v, a->xn1, w->wv, n, d, Hkv * D);
        be->rope_forward(be, k, m->pos + t0, m->inv_freq, m->rope_scale, n, Hkv, D);
    }
}

/* Rows [t0, t0 + n) after attention (attn: the tile's first row of the attention output):
 * h = x + o(attn), xn2, rstd2, gate, up, act of the tile; and out rows = h + down(act) when
 * out (the forward; NULL when recomputing). */
static void mlp_tile(struct model *m, const struct layer_acts *a, const struct saved_rows *x,
                     const struct layer_weights *w, int t0, int n, const void *attn, const struct saved_rows *out) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int d = mc->dim, F = mc->ffn_dim;
    int64_t hd = (int64_t)mc->n_heads * mc->head_dim, nd = (int64_t)n * d;
    size_t nd_bytes = (size_t)nd * be->act_size;
    be->matmul_forward(be, m->tmp, attn, w->wo, n, (int)hd, d);
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
 * carries g itself); dattn rows (the tile's first) = dL/d attn through the o-projection of
 * the attention output rows attn. */
static void mlp_tile_backward(struct model *m, const struct layer_acts *a, const struct layer_weights *w, int t0,
                              int n, const void *attn, void *dattn) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int d = mc->dim, F = mc->ffn_dim;
    int64_t hd = (int64_t)mc->n_heads * mc->head_dim;
    size_t as = be->act_size;
    void *g = at(m, m->g, (int64_t)t0 * d);
    be->zero(be, m->dact, (size_t)n * F * as);
    be->matmul_backward(be, m->dact, w->g_w_down, g, a->act, w->w_down, n, F, d);
    be->swiglu_backward(be, m->dgate, m->dup, m->dact, a->gate, a->up, (int64_t)n * F);
    be->zero(be, m->dxn, (size_t)n * d * as);
    be->matmul_backward(be, m->dxn, w->g_w_gate, m->dgate, a->xn2, w->w_gate, n, d, F);
    be->matmul_backward(be, m->dxn, w->g_w_up, m->dup, a->xn2, w->w_up, n, d, F);
    be->rmsnorm_backward(be, g, w->g_mlp_norm, m->dxn, a->h, w->mlp_norm, a->rstd2, n, d);
    be->zero(be, dattn, (size_t)(n * hd) * as);
    be->matmul_backward(be, dattn, w->g_wo, g, attn, w->wo, n, (int)hd, d);
}

/* Rows [t0, t0 + n): dq, dk, dv rows (the tile's first; from the ring) through RoPE and the
 * projections into the tile's dxn, and through norm1 added to the g rows. xn1, rstd1 hold
 * the tile's. */
static void qkv_tile_backward(struct model *m, const struct layer_acts *a, const struct saved_rows *x,
                              const struct layer_weights *w, int t0, int n, void *dq, void *dk, void *dv) {
    const struct backend *be = m->be;
    const struct model_config *mc = &m->mc;
    int d = mc->dim, H = mc->n_heads, Hkv = mc->n_kv_heads, D = mc->head_dim;
    be->rope_backward(be, dq, m->pos + t0, m->inv_freq, m->rope_scale, n, H, D);
    be->rope_backward(be, dk, m->pos + t0, m->inv_freq, m->rope_scale, n, Hkv, D);
    be->zero(be, m->dxn, (size_t)n * d * be->act_size);
    be->matmul_backward(be, m->dxn, w->g_wq, dq, a->xn1, w->wq, n, d, H * D);
    be->matmul_backward(be, m->dxn, w->g_wk, dk, a->xn1, w->wk, n, d, Hkv * D);
    be->matmul_backward(be, m->dxn, w->g_wv, dv, a->xn1, w->wv, n, d, Hkv * D);
    be->rmsnorm_backward(be, at(m, m->g, (int64_t)t0 * d), w->g_attn_norm, m->dxn, saved_row(x, t0),
                         w->attn_norm, a->rstd1, n, d);
}

/* The q/k/v backward of the tiles of rows [r0, r1), whose dq, dk, dv rows start at row r0 of
 * m->dq_a, dk_a, dv_a; xn1 is recomputed per tile unless [r0, r1) is one tile (it still
 * holds it). */
static void qkv_backward_rows(struct model *m, const struct layer_acts *a, const struct saved_rows *x,
                              const struct layer_weights *w, int r0, int r1) {
    const struct model_config *mc = &m->mc;
    int64_t hd = (int64_t)mc->n_heads * mc->head_dim, kvd = (int64_t)mc->n_kv_heads * mc->head_dim;
    int one = tile_len(m, r0, r1) == r1 - r0;
    for (int t0 = r0, n; t0 < r1; t0 += n) {
        n = tile_len(m, t0, r1);
        if (!one) m->be->rmsnorm_forward(m->be, a->xn1, a->rstd1, saved_row(x, t0), w->attn_norm, n, mc->dim,
                                         (float)mc->norm_eps);
        qkv_tile_backward(m, a, x, w, t0, n, at(m, m->dq_a, (t0 - r0) * hd), at(m, m->dk_a, (t0 - r0) * kvd),
                          at(m, m->dv_a, (t0 - r0) * kvd));
    }
}

/* The forward with query blocks (m->qblk): block by block, the q/k/v tiles of its rows, its
 * attention against the keys so far, its o-projection and MLP tiles. */
static void forward_blocks(struct model *m, int l, const struct layer_weights *w, const struct saved_rows *out) {
    struct layer_acts *a = &m->la[l];
    const struct saved_rows *x = &m->xs[l];
    const struct model_config *mc = &m->mc;
    int64_t hd = (int64_t)mc->n_heads * mc->head_dim, kvd = (int64_t)mc->n_kv_heads * mc->head_dim;
    int keep_attn = model_saves_attn(m, l);
    if (keep_attn) a->attn = offload_write(&m->saved_attn, l).dev;
    for (int i = 0, q0, nq; i < ring_query_blocks(&m->ring); i++) {
        ring_query_block(&m->ring, i, &q0, &nq);
        for (int t0 = q0, n; t0 < q0 + nq; t0 += n) {
            n = tile_len(m, t0, q0 + nq);
            qkv_tile(m, a, x, w, t0, n, at(m, a->q, (t0 - q0) * hd), at(m, a->k, t0 * kvd), at(m, a->v, t0 * kvd));
        }
        void *attn = keep_attn ? at(m, a->attn, q0 * hd) : a->attn;
        ring_local_block_forward(&m->ring, attn, a->lse, a->q, a->k, a->v, i);
        for (int t0 = q0, n; t0 < q0 + nq; t0 += n) {
            n = tile_len(m, t0, q0 + nq);
            mlp_tile(m, a, x, w, t0, n, at(m, attn, (t0 - q0) * hd), out);
        }
    }
    if (keep_attn) offload_written(&m->saved_attn, l);
}

/* The backward with query blocks: k, v recomputed whole, then the blocks from the last: its
 * q (and attention output, when not saved), its MLP and o-projection backward, its attention
 * backward (dq; dK/dV of its keys and those before accumulate), and -- its keys' dK/dV now
 * final -- its q/k/v and norm1 backward. */
static void backward_blocks(struct model *m, int l, const struct layer_weights *w) {
    struct layer_acts *a = &m->la[l];
    const struct saved_rows *x = &m->xs[l];
    const struct model_config *mc = &m->mc;
    int64_t hd = (int64_t)mc->n_heads * mc->head_dim, kvd = (int64_t)mc->n_kv_heads * mc->head_dim;
    int keep_attn = model_saves_attn(m, l);
    for (int t0 = 0, n; t0 < m->T; t0 += n) {
        n = tile_len(m, t0, m->T);
        qkv_tile(m, a, x, w, t0, n, NULL, at(m, a->k, t0 * kvd), at(m, a->v, t0 * kvd));
    }
    if (keep_attn) a->attn = offload_read(&m->saved_attn, l).dev;
    ring_local_backward_begin(&m->ring);
    for (int i = ring_query_blocks(&m->ring) - 1, q0, nq; i >= 0; i--) {
        ring_query_block(&m->ring, i, &q0, &nq);
        for (int t0 = q0, n; t0 < q0 + nq; t0 += n) {
            n = tile_len(m, t0, q0 + nq);
            qkv_tile(m, a, x, w, t0, n, at(m, a->q, (t0 - q0) * hd), NULL, NULL);
        }
        void *attn = keep_attn ? at(m, a->attn, q0 * hd) : a->attn;
        if (!keep_attn) ring_local_block_forward(&m->ring, attn, a->lse, a->q, a->k, a->v, i);
        for (int t0 = q0, n; t0 < q0 + nq; t0 += n) {
            n = tile_len(m, t0, q0 + nq);
            mlp_tile(m, a, x, w, t0, n, at(m, attn, (t0 - q0) * hd), NULL);
            mlp_tile_backward(m, a, w, t0, n, at(m, attn, (t0 - q0) * hd), at(m, m->dattn, (t0 - q0) * hd));
        }
        ring_local_block_backward(&m->ring, m->dq_a, m->dattn, a->q, a->k, a->v, attn, a->lse, i);
        ring_local_dkv(&m->ring, m->dk_a, m->dv_a, q0, nq);
        qkv_backward_rows(m, a, x, w, q0, q0 + nq);
    }
    if (l > 0 && model_saves_attn(m, l - 1)) offload_prefetch(&m->saved_attn, l - 1);
}

void layer_forward(struct model *m, int l, const struct layer_weights *w, const struct saved_rows *out) {
    if (m->qblk) {
        forward_blocks(m, l, w, out);
        return;
    }
    struct layer_acts *a = &m->la[l];
    const struct saved_rows *x = &m->xs[l];
    int64_t hd = (int64_t)m->mc.n_heads * m->mc.head_dim, kvd = (int64_t)m->mc.n_kv_heads * m->mc.head_dim;
    int T = m->T, keep_attn = model_saves_attn(m, l);
    for (int t0 = 0, n; t0 < T; t0 += n) {
        n = tile_len(m, t0, T);
        qkv_tile(m, a, x, w, t0, n, at(m, a->q, t0 * hd), at(m, a->k, t0 * kvd), at(m, a->v, t0 * kvd));
    }
    if (keep_attn) a->attn = offload_write(&m->saved_attn, l).dev; /* contiguous: OFFLOAD_WHOLE */
    ring_forward(&m->ring, a->attn, a->lse, a->q, a->k, a->v);
    for (int t0 = 0, n; t0 < T; t0 += n) {
        n = tile_len(m, t0, T);
        mlp_tile(m, a, x, w, t0, n, at(m, a->attn, t0 * hd), out);
    }
    if (keep_attn) offload_written(&m->saved_attn, l);
}

void layer_backward(struct model *m, int l, const struct layer_weights *w) {
    if (m->qblk) {
        backward_blocks(m, l, w);
        return;
    }
    struct layer_acts *a = &m->la[l];
    const struct saved_rows *x = &m->xs[l];
    int64_t hd = (int64_t)m->mc.n_heads * m->mc.head_dim, kvd = (int64_t)m->mc.n_kv_heads * m->mc.head_dim;
    int T = m->T, recompute = m->ckpt != MODEL_SAVE_ALL, keep_attn = model_saves_attn(m, l);
    if (recompute) {
        for (int t0 = 0, n; t0 < T; t0 += n) {
            n = tile_len(m, t0, T);
            qkv_tile(m, a, x, w, t0, n, at(m, a->q, t0 * hd), at(m, a->k, t0 * kvd), at(m, a->v, t0 * kvd));
        }
        if (!keep_attn) ring_forward(&m->ring, a->attn, a->lse, a->q, a->k, a->v);
    }
    if (keep_attn) a->attn = offload_read(&m->saved_attn, l).dev;
    for (int t0 = 0, n; t0 < T; t0 += n) {
        n = tile_len(m, t0, T);
        if (recompute) mlp_tile(m, a, x, w, t0, n, at(m, a->attn, t0 * hd), NULL);
        mlp_tile_backward(m, a, w, t0, n, at(m, a->attn, t0 * hd), at(m, m->dattn, t0 * hd));
    }
    ring_backward(&m->ring, m->dq_a, m->dk_a, m->dv_a, m->dattn, a->q, a->k, a->v, a->attn, a->lse);
    /* the attention output's staging is free: the layer below may come back into it */
    if (l > 0 && model_saves_attn(m, l - 1)) offload_prefetch(&m->saved_attn, l - 1);
    qkv_backward_rows(m, a, x, w, 0, T);
}
