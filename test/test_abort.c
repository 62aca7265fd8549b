/* test_abort: helper for test_cli. Under mpirun, rank 1 fails through RT_FATAL while the
 * other ranks wait in a barrier: the whole job must end (never hang) with rank 1's
 * "[rank host:pid] file:line message" line. */
#include "runtime.h"

int main(int argc, char **argv) {
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    if (rt.rank == 1) RT_FATAL("deliberate failure on rank %d", rt.rank);
    MPI_CHECK(MPI_Barrier(rt.world_comm));
    rt_finalize(&rt);
    return 0;
}
