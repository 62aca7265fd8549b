/* test_groups: the named process groups (groups.c) against a brute-force expectation, and
 * their communicators. For every (world <= 24, cp dividing it, rank): the ring of a rank is
 * the set of ranks that hold the same sequences -- world ranks with the same quotient by cp --
 * and the data group the ranks at the same place of their ring (the same remainder); each
 * group's members, found by scanning all ranks in order, must equal groups_member's, its size
 * and this rank's index among them; world rank = data index x cp + ring index. Under mpirun
 * -np N, for every cp dividing N: the ring communicator of groups_split_ring has the ring's
 * size, this rank's ring index as its rank, and members of the same ring (an all-gather of
 * world ranks over it), and a stand-in communicator (comm_plan.c) has the group's size,
 * index and members. */
#include <stdio.h>
#include <stdlib.h>

#include "comm_plan.h"
#include "groups.h"
#include "runtime.h"
#include "testutil.h"

/* Compare group gr of `rank` with the members found by scanning: ranks q with key(q) == key(rank). */
static void check_group(const struct group *gr, int world, int cp, int rank, int by_quotient) {
    int n = 0, index = -1;
    for (int q = 0; q < world; q++) {
        int same = by_quotient ? q / cp == rank / cp : q % cp == rank % cp;
        if (!same) continue;
        if (q == rank) index = n;
        if (n >= gr->size || groups_member(gr, n) != q) {
            CHECK(!"member");
            fprintf(stderr, "  world %d cp %d rank %d: member %d should be %d\n", world, cp, rank, n, q);
        }
        n++;
    }
    CHECK(n == gr->size && index == gr->index);
}

static void brute_force(void) {
    for (int world = 1; world <= 24; world++)
        for (int cp = 1; cp <= world; cp++) {
            if (world % cp) continue;
            for (int rank = 0; rank < world; rank++) {
                struct groups g;
                groups_init(&g, world, cp, rank);
                CHECK(g.rank == rank && g.world.size == world && g.world.index == rank);
                for (int k = 0; k < world; k++) CHECK(groups_member(&g.world, k) == k);
                check_group(&g.ring, world, cp, rank, 1);
                check_group(&g.data, world, cp, rank, 0);
                CHECK(g.ring.size * g.data.size == world);
                CHECK(g.data.index * cp + g.ring.index == rank);
            }
        }
}

static void communicators(const struct runtime *rt) {
    for (int cp = 1; cp <= rt->world; cp++) {
        if (rt->world % cp) continue;
        struct groups g;
        groups_init(&g, rt->world, cp, rt->rank);
        MPI_Comm ring;
        groups_split_ring(&g, rt->world_comm, &ring);
        int size, rank;
        MPI_CHECK(MPI_Comm_size(ring, &size));
        MPI_CHECK(MPI_Comm_rank(ring, &rank));
        CHECK(size == g.ring.size && rank == g.ring.index);
        int *members = malloc((size_t)size * sizeof *members);
        MPI_CHECK(MPI_Allgather(&rt->rank, 1, MPI_INT, members, 1, MPI_INT, ring));
        for (int k = 0; k < size; k++) CHECK(members[k] == groups_member(&g.ring, k));
        free(members);
        MPI_CHECK(MPI_Comm_free(&ring));
        struct comm standin;
        comm_plan_init(&standin, &g.data, "dp");
        CHECK(standin.size == g.data.size && standin.rank == g.data.index);
        for (int k = 0; k < standin.size; k++) CHECK(standin.members[k] == groups_member(&g.data, k));
        comm_barrier(&standin);
        comm_free(&standin);
    }
}

int main(int argc, char **argv) {
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    brute_force();
    communicators(&rt);
    int fails = tu_failures;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, rt.world_comm));
    if (rt.rank == 0) {
        char name[32];
        snprintf(name, sizeof name, "test_groups[N=%d]", rt.world);
        tu_done(name);
    }
    rt_finalize(&rt);
    return fails ? 1 : 0;
}
