/* zero: ZeRO stage 1, the layout that shards the AdamW moments and the update over the
 * ranks of the world (every rank still keeps all fp32 weights and gradients). The flat
 * parameter vector (params.h layout, total floats) is cut into `shards` equal slices of
 * `slice` floats, a multiple of ZERO_ALIGN so every slice starts 256-byte aligned; the
 * model's params and grads carry zero_flat - total floats of zero padding after the
 * parameters, so the transports' equal-count reduce-scatter and all-gather run on them in
 * place. Rank r owns the parameters [lo, hi) = [r * slice, (r + 1) * slice) clipped to
 * total: the last slices may be short, or empty on a tiny model.
 * Off (parallel.zero false, or one rank): one slice holding all total floats, no padding.
 * A sharded step: zero_reduce_scatter (each rank gets the summed gradients of its slice),
 * clipping and AdamW on [lo, hi) only (optimizer.h), zero_all_gather (every rank gets every
 * updated slice). */
#ifndef RT_ZERO_H
#define RT_ZERO_H

#include <stdint.h>

#include "comm.h"

#define ZERO_ALIGN 64 /* floats: slices are multiples of 256 bytes */

struct zero {
    int     on;            /* 1: sharded over `shards` ranks */
    int     shards, rank;  /* the world's size and this rank in it (1 and 0 when off) */
    int64_t total;         /* parameters */
    int64_t slice;         /* floats per slice: the moments each rank holds */
    int64_t lo, hi;        /* the parameters this rank updates */
};

/* on: parallel.zero; sharding happens when it is set and world > 1. */
void zero_init(struct zero *z, int on, int world, int rank, int64_t total);

/* Floats in the padded flat buffers: shards * slice (total when off). */
int64_t zero_flat(const struct zero *z);

/* grads: zero_flat floats on every rank (the transport's memory). Afterwards this rank's
 * slice holds the sum over the ranks of `world`; the rest of grads is undefined. */
void zero_reduce_scatter(const struct zero *z, struct comm *world, float *grads);
/* params: zero_flat floats. This rank's slice goes to every rank: afterwards all of params
 * is the same everywhere. */
void zero_all_gather(const struct zero *z, struct comm *world, float *params);

#endif
