/* pstore: the parameter store's layout, buffers and working weights (stage 3: gathered per
 * layer, the next one prefetched; see pstore.h); pstore_grad.c holds the gradients and the
 * update, pstore_state.c the checkpoint state. */
#include "pstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static int64_t round_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

int64_t pstore_split(int64_t lo, int64_t hi, int shards, int rank, int64_t *own_lo, int64_t *own_n) {
    int64_t s = round_up((hi - lo + shards - 1) / shards, PSTORE_ALIGN);
    int64_t a = lo + rank * s, b = a + s < hi ? a + s : hi;
    *own_lo = a < hi ? a : hi;
    *own_n = b > a ? b - a : 0;
    return s;
}

void pstore_layout(struct pstore *ps, const struct model_config *mc, int stage, int host_opt, int world,
                   int rank) {
    memset(ps, 0, sizeof *ps);
    char err[256];
    if (params_init(&ps->pt, mc, err, sizeof err)) RT_FATAL("pstore: %s", err);
    ps->Ly = mc->n_layers;
    ps->n_units = ps->Ly + 2;
    ps->stage = world > 1 ? stage : 0;
    ps->host_opt = host_opt;
    ps->shards = ps->stage >= 1 ? world : 1;
    ps->rank = ps->shards > 1 ? rank : 0;
    ps->grad_full = !host_opt && ps->stage <= 1;
    ps->wmode = ps->stage == 3 && ps->shards > 1       ? PW_GATHER
              : stage == 3 && world == 1 && host_opt ? PW_CONVERT /* streamed from the host master */
              : host_opt || ps->shards > 1             ? PW_RESIDENT
                                                       : PW_CONVERT;
    ps->u = rt_calloc((size_t)ps->n_units, sizeof *ps->u, "parameter units");
    int64_t S = 0, G = 0;
    for (int i = 0; i < ps->n_units; i++) {
        struct pstore_unit *u = &ps->u[i];
        struct layer_params lp;
        if (i == 0) {
            params_layer(&ps->pt, 0, &lp);
            u->lo = 0, u->hi = lp.attn_norm;
        } else if (i <= ps->Ly) {
            params_layer(&ps->pt, i - 1, &lp);
            u->lo = lp.attn_norm;
            if (i < ps->Ly) params_layer(&ps->pt, i, &lp), u->hi = lp.attn_norm;
            else u->hi = params_final_norm(&ps->pt);
        } else {
            u->lo = params_final_norm(&ps->pt), u->hi = ps->pt.total;
        }
        u->s = pstore_split(u->lo, u->hi, ps->shards, ps->rank, &u->own_lo, &u->own_n);
        u->sh = u->gsh = S;
        u->gfull = G;
        u->wslot = -1;
        S += u->s;
        G += ps->shards * u->s;
        if (u->s > ps->max_part) ps->max_part = u->s;
    }
    ps->S = S;
    for (int k = 0; k < PSTORE_SLOTS; k++) ps->wslot_unit[k] = ps->gslot_unit[k] = -1;
    ps->stage_unit[0] = ps->stage_unit[1] = -1;
}

int64_t pstore_max_unit(const struct pstore *ps) { return ps->shards * ps->max_part; }

static int64_t padded(const struct pstore *ps, int u) { return ps->shards * ps->u[u].s; }
static int is_layer(const struct pstore *ps, int u) { return u >= 1 && u <= ps->Ly; }

/* Elements into an act buffer. */
static void *act_at(const struct pstore *ps, void *base, int64_t elems) {
    return (char *)base + elems * (int64_t)ps->be->act_size;
}

/* Host memory of the optimizer's state: pinned (the device copies to and from it). */
static float *opt_alloc(struct pstore *ps, int64_t n, const char *what) {
    const struct backend *be = ps->be;
    size_t bytes = (size_t)n * sizeof(float);
    if (!ps->host_opt) return be->alloc(be, bytes, what);
    float *p = be->host_alloc(be, bytes, what);
    if (!be->recording) memset(p, 0, bytes);
    return p;
}

static void opt_free(struct pstore *ps, float *p) {
    if (!p) return;
    if (ps->host_opt) ps->be->host_free(ps->be, p);
    else ps->be->free(ps->be, p);
}

void pstore_init(struct pstore *ps, const struct backend *be, struct comm *world, const struct model_config *mc,
                 int stage, int host_opt) {
    pstore_layout(ps, mc, stage, host_opt, world->size, world->rank);
    ps->be = be;
    ps->world = world;
    ps->obe = host_opt ? &cpu_backend : be;
    ps->aliased = ps->wmode == PW_CONVERT && be->shared_weights;
    ps->dtype = be->act_size == 2 ? COMM_BF16 : COMM_F32;
    int head = pstore_head(ps);
    ps->master = opt_alloc(ps, ps->S, "master weights (fp32 shard)");
    ps->m = opt_alloc(ps, ps->S, "AdamW first moment (shard)");
    ps->v = opt_alloc(ps, ps->S, "AdamW second moment (shard)");
    int64_t max_layer = 0;
    for (int u = 1; u <= ps->Ly; u++)
        if (padded(ps, u) > max_layer) max_layer = padded(ps, u);
    if (ps->grad_full) {
        ps->gfull = be->alloc(be, (size_t)(ps->u[head].gfull + padded(ps, head)) * sizeof(float), "gradients");
        for (int u = 0; u < ps->n_units; u++) ps->u[u].g = ps->gfull + ps->u[u].gfull;
    } else {
        if (!host_opt) ps->gshard = opt_alloc(ps, ps->S, "gradients (reduced shard)"); /* host: pstore_place_grads */
        for (int k = 0; k < PSTORE_SLOTS; k++)
            ps->gslot[k] = be->alloc(be, (size_t)max_layer * sizeof(float), "gradients (layer buffers)");
        ps->gglob[0] = be->alloc(be, (size_t)padded(ps, 0) * sizeof(float), "gradients (embedding)");
        ps->gglob[1] = be->alloc(be, (size_t)padded(ps, head) * sizeof(float), "gradients (head)");
    }
    if (ps->aliased) {
        for (int u = 0; u < ps->n_units; u++) ps->u[u].w = ps->master + ps->u[u].sh;
    } else {
        size_t as = be->act_size;
        ps->wglob = be->alloc(be, (size_t)(padded(ps, 0) + padded(ps, head)) * as,
                              "working weights (embedding, head)");
        ps->u[0].w = ps->wglob;
        ps->u[head].w = act_at(ps, ps->wglob, padded(ps, 0));
        if (ps->wmode == PW_RESIDENT) {
            ps->wres = be->alloc(be, (size_t)(ps->u[head].gfull - ps->u[1].gfull) * as, "working weights (layers)");
            for (int u = 1; u <= ps->Ly; u++)
                ps->u[u].w = act_at(ps, ps->wres, ps->u[u].gfull - ps->u[1].gfull);
        }
        int slots = ps->wmode == PW_GATHER ? PSTORE_SLOTS : ps->wmode == PW_CONVERT ? 1 : 0;
        for (int k = 0; k < slots; k++) ps->wslot[k] = be->alloc(be, (size_t)max_layer * as, "working weights (layer buffers)");
        if (ps->wmode == PW_GATHER) ps->ashard = be->alloc(be, (size_t)ps->S * as, "working weights (act shard)");
    }
    if (host_opt) {
        for (int k = 0; k < 2 && !be->host_memory; k++) {
            ps->stage_buf[k] = be->alloc(be, (size_t)ps->max_part * sizeof(float), "master weights on their way to act");
            ps->stage_fence[k] = be->fence_new(be);
        }
        ps->host_add = be->host_alloc(be, (size_t)ps->max_part * sizeof(float), "gradients on their way to the host");
        ps->fence = be->fence_new(be);
        for (int k = 0; k < PSTORE_SLOTS + 2; k++) ps->gfence[k] = be->fence_new(be);
        ps->ss = rt_calloc((size_t)ps->n_units, sizeof *ps->ss, "gradient sums of squares");
        if (!be->recording) pw_start(&ps->worker, ps->n_units, pstore_host_job, ps);
    }
}

/* Floats of unit i's reduced gradients that lend puts in lender k (into n[k]); returns the rest. */
static int64_t lent_floats(const struct pstore *ps, int i, const struct pstore_lend *lend, int64_t *n) {
    int64_t left = ps->u[i].own_n;
    for (int k = 0; k < PSTORE_LENDERS; k++) {
        int64_t m = lend ? lend[i * PSTORE_LENDERS + k].n : 0;
        n[k] = m < left ? m : left;
        left -= n[k];
    }
    return left;
}

int64_t pstore_grad_shard_floats(const struct pstore *ps, const struct pstore_lend *lend) {
    if (!lend) return ps->S;
    int64_t S = 0, n[PSTORE_LENDERS];
    for (int i = 0; i < ps->n_units; i++) S += round_up(lent_floats(ps, i, lend, n), PSTORE_ALIGN);
    return S;
}

void pstore_place_grads(struct pstore *ps, const struct pstore_lend *lend) {
    if (!ps->host_opt) return;
    if (ps->gshard) RT_FATAL("pstore: the gradient shard placed twice");
    int64_t S = 0;
    for (int i = 0; i < ps->n_units && lend; i++) { /* else every unit's rest is its part at sh */
        struct pstore_unit *u = &ps->u[i];
        int64_t rest = lent_floats(ps, i, lend, u->nlent);
        for (int k = 0; k < PSTORE_LENDERS; k++) u->glent[k] = u->nlent[k] ? lend[i * PSTORE_LENDERS + k].p : NULL;
        u->gsh = S;
        S += round_up(rest, PSTORE_ALIGN);
    }
    ps->gshard = lend ? opt_alloc(ps, S ? S : 1, "gradients (reduced shard, the part not lent)")
                      : opt_alloc(ps, ps->S, "gradients (reduced shard)");
}

void pstore_free(struct pstore *ps) {
    const struct backend *be = ps->be;
    pw_stop(&ps->worker);
    free(ps->ss);
    if (be) {
        opt_free(ps, ps->master), opt_free(ps, ps->m), opt_free(ps, ps->v), opt_free(ps, ps->gshard);
        void *dev[] = {ps->gfull,     ps->wglob,        ps->wres,         ps->ashard,   ps->stage_buf[0],
                       ps->stage_buf[1], ps->gglob[0],  ps->gglob[1],     ps->wslot[0], ps->wslot[1],
                       ps->gslot[0],  ps->gslot[1]};
        for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
            if (dev[i]) be->free(be, dev[i]);
        if (ps->host_add) be->host_free(be, ps->host_add);
        void *fences[] = {ps->fence,     ps->stage_fence[0], ps->stage_fence[1], ps->gfence[0],
                          ps->gfence[1], ps->gfence[2],      ps->gfence[3]};
        for (size_t i = 0; i < sizeof fences / sizeof fences[0]; i++)
            if (fences[i]) be->fence_free(be, fences[i]);
    }
    free(ps->u);
    params_free(&ps->pt);
    memset(ps, 0, sizeof *ps);
}

const char *pstore_describe(const struct pstore *ps, char *buf, size_t n) {
    static const char *wm[] = {"converted per layer", "resident", "gathered per layer"};
    char over[32] = "";
    if (ps->world && ps->world->size > 1) snprintf(over, sizeof over, " over %d ranks", ps->world->size);
    const char *how = ps->aliased                                 ? "= master"
                    : ps->wmode == PW_CONVERT && ps->host_opt ? "streamed per layer from the host master "
                                                                  "(parallel.zero 3 on one rank)"
                                                                : wm[ps->wmode];
    snprintf(buf, n, "ZeRO-%d%s, working weights %s", ps->stage, over, how);
    return buf;
}

int pstore_unit_of(const struct pstore *ps, int64_t off) {
    if (off < 0 || off >= ps->pt.total) RT_FATAL("pstore: parameter offset %lld of %lld", (long long)off,
                                                  (long long)ps->pt.total);
    if (off < ps->u[0].hi) return 0;
    int head = pstore_head(ps);
    if (off >= ps->u[head].lo) return head;
    int64_t lay = ps->u[1].hi - ps->u[1].lo;
    return 1 + (int)((off - ps->u[1].lo) / lay);
}

/* Where the optimizer's memory is host memory the CPU may touch. */
static int opt_on_host(const struct pstore *ps) { return ps->host_opt || ps->be->host_memory; }

void pstore_fill(struct pstore *ps, void (*fill)(void *ctx, int64_t lo, int64_t n, float *dst), void *ctx) {
    pstore_drain(ps);
    float *buf = opt_on_host(ps) ? NULL : rt_malloc((size_t)ps->max_part * sizeof(float), "weights (one part)");
    for (int i = 0; i < ps->n_units; i++) {
        const struct pstore_unit *u = &ps->u[i];
        if (!u->own_n) continue;
        fill(ctx, u->own_lo, u->own_n, buf ? buf : ps->master + u->sh);
        if (buf) ps->be->upload(ps->be, ps->master + u->sh, buf, (size_t)u->own_n * sizeof(float));
    }
    free(buf);
    pstore_refresh(ps);
}

static void from_host(void *ctx, int64_t lo, int64_t n, float *dst) {
    memcpy(dst, (const float *)ctx + lo, (size_t)n * sizeof(float));
}

void pstore_set(struct pstore *ps, const float *host) { pstore_fill(ps, from_host, (void *)host); }

/* The stage buffer of unit i's part (host optimizer on a device backend). */
static int stage_of(int i) { return i % 2; }

/* Start copying unit i's host master part into its stage buffer (the copy queue). */
static void stage_in(struct pstore *ps, int i) {
    const struct pstore_unit *u = &ps->u[i];
    int k = stage_of(i);
    ps->be->copy_async(ps->be, ps->stage_buf[k], ps->master + u->sh, (size_t)u->own_n * sizeof(float),
                       ps->stage_fence[k]);
    ps->stage_unit[k] = i;
}

/* This rank's part of unit i in act at dst, from the master. */
static void own_to_act(struct pstore *ps, int i, void *dst) {
    const struct backend *be = ps->be;
    const struct pstore_unit *u = &ps->u[i];
    if (!u->own_n) return;
    const float *src = ps->master + u->sh;
    if (ps->stage_buf[0]) {
        int k = stage_of(i);
        if (ps->stage_unit[k] != i) stage_in(ps, i);
        be->fence_wait(be, ps->stage_fence[k]);
        ps->stage_unit[k] = -1;
        src = ps->stage_buf[k];
    }
    be->to_act(be, dst, src, u->own_n);
}

/* Wait for the gather in flight into weight slot k, if any (stage 3). */
static void wslot_wait(struct pstore *ps, int k) {
    if (!ps->wreq[k].active) return;
    char what[48];
    snprintf(what, sizeof what, "of the working weights of unit %d", ps->wslot_unit[k]);
    comm_coll_wait(ps->world, &ps->wreq[k], what);
}

/* Start gathering layer i's working weights into its slot (stage 3). The transport orders it
 * after the work queued so far, which holds every reader of the slot's previous layer. */
static void gather_start(struct pstore *ps, int i) {
    const struct pstore_unit *u = &ps->u[i];
    int k = i % PSTORE_SLOTS;
    wslot_wait(ps, k);
    comm_all_gather_start(ps->world, act_at(ps, ps->ashard, u->sh), ps->wslot[k], u->s, ps->dtype, &ps->wreq[k]);
    ps->wslot_unit[k] = i;
}

/* Unit i's working weights from the master (layers converted per use: nothing to do). */
static void refresh_unit(struct pstore *ps, int i) {
    struct pstore_unit *u = &ps->u[i];
    for (int k = 0; k < PSTORE_SLOTS; k++)
        if (ps->wslot_unit[k] == i) wslot_wait(ps, k), ps->wslot_unit[k] = -1;
    if (ps->aliased || (is_layer(ps, i) && ps->wmode == PW_CONVERT)) return;
    if (is_layer(ps, i) && ps->wmode == PW_GATHER) {
        u->w = NULL;
        own_to_act(ps, i, act_at(ps, ps->ashard, u->sh));
        return;
    }
    own_to_act(ps, i, act_at(ps, u->w, ps->rank * u->s));
    if (ps->shards > 1) comm_all_gather(ps->world, act_at(ps, u->w, ps->rank * u->s), u->w, u->s, ps->dtype);
}

/* Unit i's pending update finished and its working weights refreshed. */
static void settle(struct pstore *ps, int i) {
    struct pstore_unit *u = &ps->u[i];
    if (!u->stale) return;
    double t0 = rt_now();
    pw_wait(&ps->worker, PW_UPDATE, i);
    ps->t_wait += rt_now() - t0;
    refresh_unit(ps, i);
    u->stale = 0;
}

void pstore_drain(struct pstore *ps) {
    for (int i = 0; i < ps->n_units; i++) settle(ps, i);
}

void pstore_refresh(struct pstore *ps) {
    pstore_drain(ps);
    for (int i = 0; i < ps->n_units; i++) refresh_unit(ps, i);
}

/* Stage 3: start gathering layer `next` into its slot while unit i (a layer in the other
 * slot, or the embedding) computes. A layer whose host update is still to come is gathered
 * by its own acquire, after the update (settle). */
static void prefetch(struct pstore *ps, int i, int next) {
    if (ps->wmode != PW_GATHER || next < 0 || !is_layer(ps, next) || ps->u[next].stale) return;
    if (is_layer(ps, i) && next % PSTORE_SLOTS == i % PSTORE_SLOTS) return;
    if (ps->wslot_unit[next % PSTORE_SLOTS] != next) gather_start(ps, next);
}

/* Whether unit i's working weights are made from its (host) master at its next acquire:
 * after an update, or every time when streamed. */
static int made_at_acquire(const struct pstore *ps, int i) {
    return ps->u[i].stale || (is_layer(ps, i) && ps->wmode == PW_CONVERT && ps->wslot_unit[0] != i);
}

void pstore_acquire_weights(struct pstore *ps, int i, int next) {
    struct pstore_unit *u = &ps->u[i];
    settle(ps, i);
    if (next >= 0 && made_at_acquire(ps, next) && ps->u[next].own_n && ps->stage_buf[0] &&
        ps->stage_unit[stage_of(next)] < 0 && pw_done(&ps->worker, PW_UPDATE, next))
        stage_in(ps, next);
    if (!is_layer(ps, i)) {
        prefetch(ps, i, next);
        return;
    }
    if (ps->aliased || ps->wmode == PW_RESIDENT) return;
    int k = ps->wmode == PW_CONVERT ? 0 : i % PSTORE_SLOTS;
    if (ps->wmode == PW_CONVERT) {
        if (ps->wslot_unit[k] != i) own_to_act(ps, i, ps->wslot[k]);
        ps->wslot_unit[k] = i;
    } else {
        if (ps->wslot_unit[k] != i) gather_start(ps, i); /* not prefetched */
        prefetch(ps, i, next);
        wslot_wait(ps, k);
    }
    u->w = ps->wslot[k];
    u->wslot = k;
}

void pstore_release_weights(struct pstore *ps, int i) {
    struct pstore_unit *u = &ps->u[i];
    if (u->wslot < 0) return;
    u->w = NULL;
    u->wslot = -1;
}

const void *pstore_weight(const struct pstore *ps, int64_t off) {
    int i = pstore_unit_of(ps, off);
    const struct pstore_unit *u = &ps->u[i];
    if (!u->w) RT_FATAL("pstore: weight at offset %lld used while unit %d is not acquired", (long long)off, i);
    return act_at(ps, u->w, off - u->lo);
}
