/* pstore_state: the parameter store's state in checkpoints and exports (see pstore.h). A
 * checkpoint part lists, per unit, the range of model.bin (and of m and v in optim.bin) this
 * rank writes or reads and where it lies in this rank's shard buffers; the floats move
 * through the caller's host buffer. The gather assembles whole arrays on rank 0 unit by unit:
 * each rank's part goes through a host buffer of one part (downloaded when it lives on the
 * device), rank 0 assembles the parts of a unit (shards x s floats) and keeps its n floats.
 * With one shard every rank holds the whole unit and rank 0 reads its own. */
#include <stdlib.h>
#include <string.h>

#include "comm_mpi.h"
#include "pstore.h"
#include "runtime.h"

static int opt_on_host(const struct pstore *ps) { return ps->host_opt || ps->be->host_memory; }

/* Read this rank's part of unit i (own_n floats) into host memory. which: 0 master, 1 m, 2 v,
 * 3 the reduced gradients (in pieces, pstore_grad_pieces). */
static void read_part(struct pstore *ps, int which, int i, float *host) {
    const struct pstore_unit *u = &ps->u[i];
    float *b[] = {ps->master, ps->m, ps->v};
    struct pstore_piece pc[PSTORE_PIECES] = {{which < 3 ? b[which] + u->sh : NULL, 0, u->own_n}};
    int np = which < 3 ? 1 : pstore_grad_pieces(ps, i, pc);
    for (int k = 0; k < np && pc[k].n; k++) {
        size_t bytes = (size_t)pc[k].n * sizeof(float);
        if (opt_on_host(ps)) memcpy(host + pc[k].off, pc[k].p, bytes);
        else ps->be->download(ps->be, host + pc[k].off, pc[k].p, bytes);
    }
}

static void gather(struct pstore *ps, struct comm *ctl, int which, float *full) {
    float *part = rt_calloc((size_t)ps->max_part, sizeof(float), "state part");
    float *all = ctl->rank == 0 ? rt_calloc((size_t)pstore_max_unit(ps), sizeof(float), "state unit") : NULL;
    for (int i = 0; i < ps->n_units; i++) {
        const struct pstore_unit *u = &ps->u[i];
        size_t n = (size_t)(u->hi - u->lo);
        if (ps->shards == 1) {
            if (ctl->rank == 0) read_part(ps, which, i, full + u->lo);
            continue;
        }
        memset(part, 0, (size_t)u->s * sizeof(float));
        read_part(ps, which, i, part);
        comm_mpi_gather(ctl, part, all, u->s, COMM_F32, 0);
        if (ctl->rank == 0) memcpy(full + u->lo, all, n * sizeof(float));
    }
    free(part);
    free(all);
}

void pstore_gather(struct pstore *ps, struct comm *ctl, int which, float *full) {
    if (which < 0 || which > 2) RT_FATAL("pstore: state %d", which);
    pstore_drain(ps);
    gather(ps, ctl, which, full);
}

void pstore_all_grads(struct pstore *ps, struct comm *ctl, float *full) {
    gather(ps, ctl, 3, full);
    comm_broadcast(ctl, full, ps->pt.total, COMM_F32, 0);
}

/* ---- checkpoint parts ---- */

struct part_ctx {
    struct pstore *ps;
    float        **at; /* (n) where each range starts in this rank's shard buffers */
};

static void part_get(void *ctx, int i, int64_t at, int64_t n, float *dst) {
    struct part_ctx *c = ctx;
    const float *src = c->at[i] + at;
    if (opt_on_host(c->ps)) memcpy(dst, src, (size_t)n * sizeof(float));
    else c->ps->be->download(c->ps->be, dst, src, (size_t)n * sizeof(float));
}

static void part_put(void *ctx, int i, int64_t at, int64_t n, const float *src) {
    struct part_ctx *c = ctx;
    float *dst = c->at[i] + at;
    if (opt_on_host(c->ps)) memcpy(dst, src, (size_t)n * sizeof(float));
    else c->ps->be->upload(c->ps->be, dst, src, (size_t)n * sizeof(float));
}

void pstore_part(struct pstore *ps, int write, int moments, int world, int rank, struct ckpt_part *p) {
    pstore_drain(ps); /* no update running on what the ranges point into */
    int nstate = moments ? 3 : 1;
    struct part_ctx *c = rt_calloc(1, sizeof *c, "checkpoint part");
    c->ps = ps;
    c->at = rt_calloc((size_t)(ps->n_units * nstate), sizeof *c->at, "checkpoint part");
    memset(p, 0, sizeof *p);
    p->r = rt_calloc((size_t)(ps->n_units * nstate), sizeof *p->r, "checkpoint part");
    p->ctx = c, p->get = part_get, p->put = part_put;
    for (int k = 0; k < nstate; k++)
        for (int i = 0; i < ps->n_units; i++) {
            const struct pstore_unit *u = &ps->u[i];
            int64_t lo = ps->shards == 1 ? u->lo : u->own_lo, n = ps->shards == 1 ? u->hi - u->lo : u->own_n;
            if (write) pstore_split(u->lo, u->hi, world, rank, &lo, &n); /* the writers' parts */
            /* This rank holds [u->lo, u->hi) unsharded, else [own_lo, own_lo + own_n) (a writer's part). */
            int64_t held = ps->shards == 1 ? u->lo : u->own_lo;
            if (write && ps->shards > 1 && (lo != u->own_lo || n != u->own_n))
                RT_FATAL("pstore: rank %d of %d writes [%lld, +%lld) of unit %d but owns [%lld, +%lld)", rank, world,
                         (long long)lo, (long long)n, i, (long long)u->own_lo, (long long)u->own_n);
            if (!n) continue;
            p->r[p->n] = (struct ckpt_range){k == 0 ? CKPT_MODEL : CKPT_OPTIM, lo + (k == 2 ? ps->pt.total : 0), n};
            float *b[] = {ps->master, ps->m, ps->v};
            c->at[p->n++] = b[k] + u->sh + (lo - held);
        }
}

void pstore_part_free(struct ckpt_part *p) {
    struct part_ctx *c = p->ctx;
    if (c) free(c->at);
    free(c);
    free(p->r);
    memset(p, 0, sizeof *p);
}
