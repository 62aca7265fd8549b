/* pstore_state: the parameter store's state as full flat arrays on rank 0 of the control
 * communicator (checkpoints, exports, tests) and back (see pstore.h). Unit by unit: each
 * rank's part goes through a host buffer of one part (downloaded when it lives on the
 * device), rank 0 assembles the parts of a unit (shards x s floats) and keeps its n floats.
 * With one shard every rank holds the whole unit: rank 0 reads its own, and a scatter is a
 * broadcast. */
#include <stdlib.h>
#include <string.h>

#include "comm_mpi.h"
#include "pstore.h"
#include "runtime.h"

static int opt_on_host(const struct pstore *ps) { return ps->host_opt || ps->be->host_memory; }

/* which: 0 master, 1 m, 2 v, 3 the reduced gradients (owned part). */
static float *part_of(struct pstore *ps, int which, int i) {
    const struct pstore_unit *u = &ps->u[i];
    if (which == 3) return u->own_n ? pstore_owned_grad(ps, u->own_lo) : NULL;
    float *b[] = {ps->master, ps->m, ps->v};
    return b[which] + u->sh;
}

/* Read/write this rank's part of unit i (own_n floats) through host memory. */
static void read_part(struct pstore *ps, int which, int i, float *host) {
    const struct pstore_unit *u = &ps->u[i];
    size_t bytes = (size_t)u->own_n * sizeof(float);
    const float *src = part_of(ps, which, i);
    if (!bytes) return;
    if (opt_on_host(ps)) memcpy(host, src, bytes);
    else ps->be->download(ps->be, host, src, bytes);
}

static void write_part(struct pstore *ps, int which, int i, const float *host) {
    const struct pstore_unit *u = &ps->u[i];
    size_t bytes = (size_t)u->own_n * sizeof(float);
    if (!bytes) return;
    float *dst = part_of(ps, which, i);
    if (opt_on_host(ps)) memcpy(dst, host, bytes);
    else ps->be->upload(ps->be, dst, host, bytes);
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

void pstore_scatter(struct pstore *ps, struct comm *ctl, int which, const float *full) {
    if (which < 0 || which > 2) RT_FATAL("pstore: state %d", which);
    pstore_drain(ps);
    float *part = rt_calloc((size_t)pstore_max_unit(ps), sizeof(float), "state part");
    float *all = ctl->rank == 0 && ps->shards > 1 ? rt_calloc((size_t)pstore_max_unit(ps), sizeof(float), "state unit")
                                                 : NULL;
    for (int i = 0; i < ps->n_units; i++) {
        const struct pstore_unit *u = &ps->u[i];
        size_t n = (size_t)(u->hi - u->lo);
        if (ps->shards == 1) {
            if (ctl->rank == 0) memcpy(part, full + u->lo, n * sizeof(float));
            comm_broadcast(ctl, part, (int64_t)n, COMM_F32, 0);
        } else {
            if (all) {
                memset(all, 0, (size_t)pstore_max_unit(ps) * sizeof(float));
                memcpy(all, full + u->lo, n * sizeof(float));
            }
            comm_mpi_scatter(ctl, all, part, u->s, COMM_F32, 0);
        }
        write_part(ps, which, i, part);
    }
    free(part);
    free(all);
}

void pstore_all_grads(struct pstore *ps, struct comm *ctl, float *full) {
    gather(ps, ctl, 3, full);
    comm_broadcast(ctl, full, ps->pt.total, COMM_F32, 0);
}
