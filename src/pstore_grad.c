/* pstore_grad: the parameter store's gradients -- unit buffers and their reduce-scatter into
 * the rank's shard (started at a unit's release, added into the shard when its buffer is
 * next needed), the full buffer's reduction, the norm -- and the AdamW update on the shard
 * (see pstore.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "optimizer.h"
#include "pstore.h"
#include "runtime.h"

static int is_layer(const struct pstore *ps, int u) { return u >= 1 && u <= ps->Ly; }

/* Unit i's gradient buffer: layer slot 0..PSTORE_SLOTS-1, the embedding's (PSTORE_SLOTS)
 * or the head's (PSTORE_SLOTS + 1); it indexes gfence and greq. */
static int gbuf_of(const struct pstore *ps, int i) {
    return is_layer(ps, i) ? i % PSTORE_SLOTS : i == 0 ? PSTORE_SLOTS : PSTORE_SLOTS + 1;
}

static float *gbuf(const struct pstore *ps, int i) {
    int b = gbuf_of(ps, i);
    return b < PSTORE_SLOTS ? ps->gslot[b] : ps->gglob[b - PSTORE_SLOTS];
}

void pstore_begin_step(struct pstore *ps, int nseq) {
    ps->nseq = nseq;
    if (ps->grad_full) {
        int head = pstore_head(ps);
        size_t n = (size_t)(ps->u[head].gfull + ps->shards * ps->u[head].s);
        ps->be->zero(ps->be, ps->gfull, n * sizeof(float));
        return;
    }
    for (int i = 0; i < ps->n_units; i++) ps->u[i].g_first = 1, ps->u[i].g_seen = 0;
}

void pstore_poison(struct pstore *ps) { ps->poison = 1; }

/* Wait on the host until the copies to the host shard are done. */
static void host_wait(struct pstore *ps) {
    ps->be->fence_wait(ps->be, ps->fence);
    ps->be->sync(ps->be);
}

int pstore_grad_pieces(const struct pstore *ps, int i, struct pstore_piece pc[PSTORE_PIECES]) {
    const struct pstore_unit *u = &ps->u[i];
    if (ps->grad_full) {
        pc[0] = (struct pstore_piece){ps->gfull + u->gfull + ps->rank * u->s, 0, u->own_n};
        return 1;
    }
    int n = 0;
    int64_t off = 0;
    for (int k = 0; k < PSTORE_LENDERS; k++) {
        if (u->nlent[k]) pc[n++] = (struct pstore_piece){u->glent[k], off, u->nlent[k]};
        off += u->nlent[k];
    }
    if (u->own_n > off) pc[n++] = (struct pstore_piece){ps->gshard + u->gsh, off, u->own_n - off};
    return n;
}

/* Add this rank's part of unit i's (reduced) buffer into the gradient shard, piece by piece;
 * the first sequence of the step copies. */
static void add_into_shard(struct pstore *ps, int i) {
    const struct backend *be = ps->be;
    struct pstore_unit *u = &ps->u[i];
    const float *part = gbuf(ps, i) + ps->rank * u->s;
    int first = u->g_first;
    u->g_first = 0;
    struct pstore_piece pc[PSTORE_PIECES];
    int np = pstore_grad_pieces(ps, i, pc);
    for (int k = 0; k < np; k++) {
        const float *src = part + pc[k].off;
        float *dst = pc[k].p;
        int64_t n = pc[k].n;
        size_t bytes = (size_t)n * sizeof(float);
        if (!ps->host_opt || be->host_memory) {
            if (first) be->copy(be, dst, src, bytes);
            else ps->obe->add_f32(ps->obe, dst, src, n);
        } else if (first) {
            be->copy_async(be, dst, src, bytes, ps->gfence[gbuf_of(ps, i)]);
        } else {
            be->copy_async(be, ps->host_add, src, bytes, ps->fence);
            host_wait(ps);
            ps->obe->add_f32(ps->obe, dst, ps->host_add, n);
        }
    }
}

/* Pending unit i into the shard: its reduction waited for (on a device, the shard's copy or
 * add is ordered after it on the compute stream; the host waits for it only here), then
 * added; with the host optimizer its sum of squares follows once the last sequence's copy
 * lands. */
static void retire(struct pstore *ps, int i) {
    struct pstore_unit *u = &ps->u[i];
    if (!u->pending) return;
    struct comm_req *req = &ps->greq[gbuf_of(ps, i)];
    if (req->active) {
        char what[48];
        snprintf(what, sizeof what, "of the gradients of unit %d", i);
        comm_coll_wait(ps->world, req, what);
    }
    add_into_shard(ps, i);
    u->pending = 0;
    if (ps->worker.started && ++u->g_seen == ps->nseq) { /* the shard is final once its copy lands */
        pw_expect(&ps->worker, PW_NORM, i);
        ps->be->host_fn(ps->be, pw_arrive, &ps->worker.arrival[i]);
    }
}

void pstore_acquire_grads(struct pstore *ps, int i) {
    if (ps->grad_full) return;
    struct pstore_unit *u = &ps->u[i];
    if (u->g) return; /* the embedding, acquired at the head when tied */
    int b = gbuf_of(ps, i);
    if (b < PSTORE_SLOTS) { /* a layer slot: its last unit settled first */
        if (ps->gslot_unit[b] >= 0) retire(ps, ps->gslot_unit[b]);
        ps->gslot_unit[b] = i;
    } else {
        retire(ps, i); /* the previous sequence's */
    }
    float *buf = gbuf(ps, i);
    if (ps->host_opt && !ps->be->host_memory) ps->be->fence_wait(ps->be, ps->gfence[b]); /* its last copy out */
    ps->be->zero(ps->be, buf, (size_t)(ps->shards * u->s) * sizeof(float));
    u->g = buf;
}

void pstore_release_grads(struct pstore *ps, int i) {
    if (ps->grad_full) return;
    struct pstore_unit *u = &ps->u[i];
    if (!u->g) RT_FATAL("pstore: gradients of unit %d released but not acquired", i);
    if (ps->shards > 1)
        comm_reduce_scatter_start(ps->world, u->g, u->g + ps->rank * u->s, u->s, COMM_F32, &ps->greq[gbuf_of(ps, i)]);
    else if (ps->world->size > 1)
        comm_all_reduce(ps->world, u->g, u->g, u->s, COMM_F32, COMM_SUM);
    u->g = NULL;
    u->pending = 1;
}

float *pstore_grad(const struct pstore *ps, int64_t off) {
    int i = pstore_unit_of(ps, off);
    const struct pstore_unit *u = &ps->u[i];
    if (!u->g) RT_FATAL("pstore: gradient at offset %lld used while unit %d is not acquired", (long long)off, i);
    return u->g + (off - u->lo);
}

/* The sum of squares of this rank's reduced gradients of unit i. */
static double unit_sumsq(struct pstore *ps, int i) {
    struct pstore_piece pc[PSTORE_PIECES];
    double ss = 0;
    int np = pstore_grad_pieces(ps, i, pc);
    for (int k = 0; k < np; k++) ss += ps->obe->sumsq(ps->obe, pc[k].p, pc[k].n);
    return ss;
}

/* AdamW on this rank's part of unit i, piece by piece (bit for bit the update of the whole). */
static void unit_adamw(struct pstore *ps, int i, const struct cfg_train *tc, double norm, double lr) {
    const struct pstore_unit *u = &ps->u[i];
    struct pstore_piece pc[PSTORE_PIECES];
    int np = pstore_grad_pieces(ps, i, pc);
    for (int k = 0; k < np && pc[k].n; k++) {
        int64_t at = u->sh + pc[k].off, lo = u->own_lo + pc[k].off;
        opt_adamw(ps->obe, tc, &ps->pt, lo, lo + pc[k].n, ps->master + at, pc[k].p, ps->m + at, ps->v + at, norm, lr,
                  ps->t);
    }
}

/* Zero this rank's reduced gradients of unit i (no sequence of the step added into it). */
static void unit_zero(struct pstore *ps, int i) {
    struct pstore_piece pc[PSTORE_PIECES];
    int np = pstore_grad_pieces(ps, i, pc);
    for (int k = 0; k < np; k++) ps->obe->zero(ps->obe, pc[k].p, (size_t)pc[k].n * sizeof(float));
}

/* The test switch on this rank's reduced gradient of parameter 0, if it owns it. */
static void poison_owned(struct pstore *ps) {
    float *g = pstore_owned_grad(ps, 0), nan = NAN;
    if (!g) return;
    if (ps->host_opt || ps->be->host_memory) *g = nan;
    else ps->be->upload(ps->be, g, &nan, sizeof nan);
}

void pstore_host_job(void *ctx, int kind, int i) {
    struct pstore *ps = ctx;
    const struct pstore_unit *u = &ps->u[i];
    if (kind == PW_NORM) {
        if (ps->poison && i == 0) poison_owned(ps);
        ps->ss[i] = unit_sumsq(ps, i);
    } else if (u->own_n) {
        unit_adamw(ps, i, ps->upd_tc, ps->upd_norm, ps->upd_lr);
    }
}

double pstore_reduce(struct pstore *ps) {
    for (int i = 0; i < ps->n_units; i++) retire(ps, i);
    if (ps->grad_full && ps->world->size > 1) {
        for (int i = 0; i < ps->n_units; i++) {
            struct pstore_unit *u = &ps->u[i];
            float *g = ps->gfull + u->gfull;
            if (ps->shards > 1) comm_reduce_scatter(ps->world, g, g + ps->rank * u->s, u->s, COMM_F32);
            else comm_all_reduce(ps->world, g, g, u->s, COMM_F32, COMM_SUM);
        }
    }
    double ss = 0;
    if (ps->worker.started) { /* the worker summed each unit as it arrived */
        for (int i = 0; i < ps->n_units; i++) {
            struct pstore_unit *u = &ps->u[i];
            if (u->g_first) { /* no sequence added into it this step */
                unit_zero(ps, i);
                continue;
            }
            if (u->g_seen != ps->nseq)
                RT_FATAL("pstore: unit %d released %d times in a step of %d sequences", i, u->g_seen, ps->nseq);
            pw_wait(&ps->worker, PW_NORM, i);
            ss += ps->ss[i];
        }
        ps->poison = 0;
        return ss;
    }
    if (ps->poison) poison_owned(ps), ps->poison = 0;
    for (int i = 0; i < ps->n_units; i++) {
        struct pstore_unit *u = &ps->u[i];
        if (!ps->grad_full && u->g_first) unit_zero(ps, i); /* no sequence added into it this step */
        ss += unit_sumsq(ps, i);
    }
    return ss;
}

float *pstore_owned_grad(struct pstore *ps, int64_t off) {
    int i = pstore_unit_of(ps, off);
    const struct pstore_unit *u = &ps->u[i];
    if (off < u->own_lo || off >= u->own_lo + u->own_n) return NULL;
    struct pstore_piece pc[PSTORE_PIECES];
    int k = pstore_grad_pieces(ps, i, pc) - 1;
    while (off - u->own_lo < pc[k].off) k--; /* the last piece starting at or before it */
    return pc[k].p + (off - u->own_lo - pc[k].off);
}

void pstore_update(struct pstore *ps, const struct cfg_train *tc, double grad_norm, double lr) {
    ps->t++;
    if (ps->worker.started) { /* units taken in the order the next forward acquires them */
        ps->upd_tc = tc, ps->upd_norm = grad_norm, ps->upd_lr = lr;
        for (int i = 0; i < ps->n_units; i++) {
            ps->u[i].stale = 1;
            pw_post(&ps->worker, PW_UPDATE, i);
        }
        return;
    }
    for (int i = 0; i < ps->n_units; i++) unit_adamw(ps, i, tc, grad_norm, lr);
    pstore_refresh(ps);
}
