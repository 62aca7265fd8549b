/* groups: the job's named process groups for one rank, computed in one place from (world,
 * cp, rank); every other file asks this struct instead of doing rank arithmetic.
 *
 *   world  every rank of the job: the ZeRO group (pstore.h shards model state over it) and
 *          the group gradients are reduced over (weights are shared by all cp x dp ranks)
 *   ring   the cp ranks that hold one sequence (the context-parallel group): world ranks
 *          data * cp .. data * cp + cp - 1, consecutive; index = rank % cp. Ring index i
 *          holds the zigzag chunks i and 2cp-1-i of each of its sequences (data.h:
 *          data_shard) and sends K/V to index (i + 1) % cp (ring.h)
 *   data   the dp ranks with the same ring index, one per ring (the data-parallel group):
 *          world ranks index, index + cp, ...; this rank's index in it = rank / cp picks its
 *          sequences of a step (data index, data index + dp, ...)
 *
 * So world rank = data index x cp + ring index. A group's members are first + k x stride for
 * k < size (groups_member). groups_split_ring makes the ring's MPI communicator for a run;
 * a plan (run_plan.c --ranks) uses the same struct without any communicator. */
#ifndef RT_GROUPS_H
#define RT_GROUPS_H

#include <mpi.h>

struct group {
    int size, index;   /* ranks in the group, this rank's place among them */
    int first, stride; /* world rank of member k: first + k * stride */
};

struct groups {
    int          rank;            /* in the world */
    struct group world, ring, data;
};

/* The groups of world rank `rank` in a job of `world` ranks with rings of cp (cp divides world). */
void groups_init(struct groups *g, int world, int cp, int rank);
/* The world rank of member k of group gr. */
static inline int groups_member(const struct group *gr, int k) { return gr->first + k * gr->stride; }
/* The ring's communicator out of `world` (a communicator of every rank in world-rank order),
 * ordered by ring index. Collective over world. */
void groups_split_ring(const struct groups *g, MPI_Comm world, MPI_Comm *ring);

#endif
