/* groups: the world, ring and data groups of a rank (see groups.h). */
#include "groups.h"

#include "runtime.h"

void groups_init(struct groups *g, int world, int cp, int rank) {
    if (cp < 1 || world % cp || rank < 0 || rank >= world)
        RT_FATAL("groups: rank %d of %d ranks in rings of %d", rank, world, cp);
    int ring_index = rank % cp, data_index = rank / cp;
    g->rank = rank;
    g->world = (struct group){.size = world, .index = rank, .first = 0, .stride = 1};
    g->ring = (struct group){.size = cp, .index = ring_index, .first = data_index * cp, .stride = 1};
    g->data = (struct group){.size = world / cp, .index = data_index, .first = ring_index, .stride = cp};
}

void groups_split_ring(const struct groups *g, MPI_Comm world, MPI_Comm *ring) {
    MPI_CHECK(MPI_Comm_split(world, g->data.index, g->ring.index, ring));
}
