/* train_state: the trainer's fp32 weights and AdamW moments as full host arrays on rank 0,
 * for checkpoints and exports, and back (see train.h).
 *   weights: whole on every rank. A pull reads rank 0's (a device backend downloads them);
 *            a push broadcasts rank 0's over the world transport (on backend memory).
 *   moments: without ZeRO, whole on every rank and handled like the weights. With ZeRO
 *            each rank holds its slice: a pull gathers the slices to rank 0 and a push
 *            scatters them back, over ctl (MPI on host memory); a device backend stages
 *            its slice through the host (rank 0 in block 0 of its full array, in place;
 *            the other ranks in host_slice).
 * Host arrays exist on rank 0 only (and host_slice on the others), allocated at first use. */
#include <stdlib.h>

#include "comm_mpi.h"
#include "train.h"

static size_t floats(int64_t n) { return (size_t)n * sizeof(float); }

void trainer_host_state(struct trainer *t, float **p, float **m, float **v) {
    const struct backend *be = t->model.be;
    *p = *m = *v = NULL;
    if (t->ctl.rank != 0) return;
    if (be->host_memory) {
        *p = t->model.params;
    } else {
        if (!t->host_p) t->host_p = rt_malloc(floats(t->zero.total), "host copy of the weights");
        *p = t->host_p;
    }
    if (be->host_memory && !t->zero.on) {
        *m = t->opt.m, *v = t->opt.v;
        return;
    }
    if (!t->host_m) {
        size_t n = (size_t)zero_flat(&t->zero);
        t->host_m = rt_calloc(n, sizeof(float), "host copy of the moments");
        t->host_v = rt_calloc(n, sizeof(float), "host copy of the moments");
    }
    *m = t->host_m, *v = t->host_v;
}

/* Where a device backend stages its moment slice on this rank. */
static float *stage(struct trainer *t, float *full) {
    if (t->ctl.rank == 0) return full;
    if (!t->host_slice) t->host_slice = rt_malloc(floats(t->zero.slice), "host copy of a moment slice");
    return t->host_slice;
}

/* mine: this rank's moment buffer (backend memory); full: rank 0's host array (NULL elsewhere). */
static void pull_moment(struct trainer *t, const float *mine, float *full) {
    const struct backend *be = t->model.be;
    if (!t->zero.on) {
        if (full && !be->host_memory) be->download(be, full, mine, floats(t->zero.total));
        return;
    }
    const float *send = mine;
    if (!be->host_memory) {
        float *s = stage(t, full);
        be->download(be, s, mine, floats(t->zero.slice));
        send = s;
    }
    comm_mpi_gather(&t->ctl, send, full, t->zero.slice, COMM_F32, 0);
}

static void push_moment(struct trainer *t, float *full, float *mine) {
    const struct backend *be = t->model.be;
    if (!t->zero.on) {
        if (full && !be->host_memory) be->upload(be, mine, full, floats(t->zero.total));
        comm_broadcast(&t->world, mine, t->zero.total, COMM_F32, 0);
        return;
    }
    if (be->host_memory) {
        comm_mpi_scatter(&t->ctl, full, mine, t->zero.slice, COMM_F32, 0);
        return;
    }
    float *s = stage(t, full);
    comm_mpi_scatter(&t->ctl, full, s, t->zero.slice, COMM_F32, 0);
    be->upload(be, mine, s, floats(t->zero.slice));
}

void trainer_pull_state(struct trainer *t, int moments) {
    const struct backend *be = t->model.be;
    float *p, *m, *v;
    trainer_host_state(t, &p, &m, &v);
    if (p && !be->host_memory) be->download(be, p, t->model.params, floats(t->zero.total));
    if (!moments) return;
    pull_moment(t, t->opt.m, m);
    pull_moment(t, t->opt.v, v);
}

void trainer_push_state(struct trainer *t, int moments) {
    const struct backend *be = t->model.be;
    float *p, *m, *v;
    trainer_host_state(t, &p, &m, &v);
    if (p && !be->host_memory) be->upload(be, t->model.params, p, floats(t->zero.total));
    comm_broadcast(&t->world, t->model.params, t->zero.total, COMM_F32, 0);
    model_refresh_weights(&t->model);
    if (!moments) return;
    push_moment(t, m, t->opt.m);
    push_moment(t, v, t->opt.v);
}
