/* zero: the ZeRO-1 slice layout and the step's two collectives (see zero.h). */
#include "zero.h"

#include "runtime.h"

void zero_init(struct zero *z, int on, int world, int rank, int64_t total) {
    z->on = on && world > 1;
    z->shards = z->on ? world : 1;
    z->rank = z->on ? rank : 0;
    z->total = total;
    if (z->on) {
        int64_t per = (total + world - 1) / world;
        z->slice = (per + ZERO_ALIGN - 1) / ZERO_ALIGN * ZERO_ALIGN;
    } else {
        z->slice = total;
    }
    int64_t lo = (int64_t)z->rank * z->slice, hi = lo + z->slice;
    z->lo = lo < total ? lo : total;
    z->hi = hi < total ? hi : total;
}

int64_t zero_flat(const struct zero *z) { return (int64_t)z->shards * z->slice; }

/* The slices must be laid out for exactly this communicator and this rank in it. */
static void check_world(const struct zero *z, const struct comm *world, const char *op) {
    if (!z->on || world->size != z->shards || world->rank != z->rank)
        RT_FATAL("zero: %s on rank %d of %d of communicator %s, but the slices are laid out for rank %d of %d%s", op,
                 world->rank, world->size, world->name, z->rank, z->shards, z->on ? "" : " (not sharded)");
}

void zero_reduce_scatter(const struct zero *z, struct comm *world, float *grads) {
    check_world(z, world, "reduce-scatter");
    comm_reduce_scatter(world, grads, grads + (int64_t)z->rank * z->slice, z->slice, COMM_F32);
}

void zero_all_gather(const struct zero *z, struct comm *world, float *params) {
    check_world(z, world, "all-gather");
    comm_all_gather(world, params + (int64_t)z->rank * z->slice, params, z->slice, COMM_F32);
}
