/* test_comm: the MPI transport under mpirun -np N, checked without a reference rank:
 * every value sent is a function of (seed, sender, offset), so each receiver knows what
 * must arrive. Ring exchange over several hops (double-buffered, as the ring schedule
 * uses it), all-reduce (sum, max, in place), reduce-scatter and all-gather (out of place
 * and in place, as ZeRO uses them), their started forms as the parameter store overlaps
 * them (an in-place reduce-scatter and an all-gather in flight together with a blocking
 * all-reduce between, waited in the reverse order; two started on the same buffers in a
 * row), broadcast, and the MPI-only gather and scatter to and from a root (in place at the
 * root and not). */
#include <stdio.h>
#include <stdlib.h>

#include "comm_mpi.h"
#include "rng.h"
#include "runtime.h"
#include "testutil.h"

static float value(uint64_t seed, int rank, int64_t i) {
    return (float)(rng_u64(seed * 1000003u + (uint64_t)rank, (uint64_t)i) % 100000) - 50000.0f;
}

static void test_ring(struct comm *c) {
    enum { N = 10007, HOPS = 5 };
    float *buf[2] = {malloc(N * sizeof(float)), malloc(N * sizeof(float))};
    for (int64_t i = 0; i < N; i++) buf[0][i] = value(1, c->rank, i);
    for (int h = 0; h < HOPS; h++) {
        struct comm_ring_req req = {0};
        comm_ring_start(c, buf[h & 1], buf[(h + 1) & 1], N, COMM_F32, &req);
        comm_ring_wait(c, &req, "test hop");
        /* After h+1 hops we hold the data of rank r - (h+1). */
        int src = ((c->rank - (h + 1)) % c->size + c->size) % c->size;
        int bad = 0;
        for (int64_t i = 0; i < N; i++) bad += buf[(h + 1) & 1][i] != value(1, src, i);
        CHECK(bad == 0);
    }
    free(buf[0]), free(buf[1]);
}

static void test_collectives(struct comm *c) {
    enum { N = 1001 };
    int P = c->size;
    double *d = malloc(N * sizeof *d), *dsum = malloc(N * sizeof *dsum);
    for (int64_t i = 0; i < N; i++) d[i] = value(2, c->rank, i);
    comm_all_reduce(c, d, dsum, N, COMM_F64, COMM_SUM);
    int bad = 0;
    for (int64_t i = 0; i < N; i++) {
        double e = 0;
        for (int r = 0; r < P; r++) e += value(2, r, i);
        bad += dsum[i] != e;
    }
    CHECK(bad == 0);
    int64_t mx = c->rank * 10 + 3;
    comm_all_reduce(c, &mx, &mx, 1, COMM_I64, COMM_MAX);
    CHECK(mx == (P - 1) * 10 + 3);

    float *send = malloc((size_t)P * N * sizeof(float)), *recv = malloc(N * sizeof(float));
    for (int64_t i = 0; i < (int64_t)P * N; i++) send[i] = value(3, c->rank, i);
    comm_reduce_scatter(c, send, recv, N, COMM_F32);
    bad = 0;
    for (int64_t i = 0; i < N; i++) {
        float e = 0;
        for (int r = 0; r < P; r++) e += value(3, r, (int64_t)c->rank * N + i);
        bad += recv[i] != e;
    }
    CHECK(bad == 0);

    for (int64_t i = 0; i < N; i++) recv[i] = value(4, c->rank, i);
    comm_all_gather(c, recv, send, N, COMM_F32);
    bad = 0;
    for (int r = 0; r < P; r++)
        for (int64_t i = 0; i < N; i++) bad += send[(int64_t)r * N + i] != value(4, r, i);
    CHECK(bad == 0);

    /* In place: reduce-scatter into this rank's block of send, all-gather from it. */
    for (int64_t i = 0; i < (int64_t)P * N; i++) send[i] = value(5, c->rank, i);
    float *mine = send + (int64_t)c->rank * N;
    comm_reduce_scatter(c, send, mine, N, COMM_F32);
    bad = 0;
    for (int64_t i = 0; i < N; i++) {
        float e = 0;
        for (int r = 0; r < P; r++) e += value(5, r, (int64_t)c->rank * N + i);
        bad += mine[i] != e;
    }
    CHECK(bad == 0);
    for (int64_t i = 0; i < (int64_t)P * N; i++) send[i] = (int64_t)c->rank * N <= i && i < (int64_t)(c->rank + 1) * N
                                                           ? value(6, c->rank, i) : -1.0f;
    comm_all_gather(c, mine, send, N, COMM_F32);
    bad = 0;
    for (int64_t i = 0; i < (int64_t)P * N; i++) bad += send[i] != value(6, (int)(i / N), i);
    CHECK(bad == 0);

    int32_t b[3] = {c->rank, c->rank + 1, c->rank + 2};
    comm_broadcast(c, b, 3, COMM_I32, P - 1);
    CHECK(b[0] == P - 1 && b[2] == P + 1);
    free(d), free(dsum), free(send), free(recv);
}

/* Sum over the ranks of value(seed, r, i). */
static float sum_of(int P, uint64_t seed, int64_t i) {
    float e = 0;
    for (int r = 0; r < P; r++) e += value(seed, r, i);
    return e;
}

/* The started forms: a gradient buffer's in-place reduce-scatter and a weight slot's
 * all-gather in flight at once, a blocking all-reduce issued meanwhile, waited in the
 * reverse order; then the same buffers again (a slot reused after its wait). */
static void test_started(struct comm *c) {
    enum { N = 1003 };
    int P = c->size;
    int64_t all = (int64_t)P * N;
    float *g = malloc((size_t)all * sizeof(float)), *w = malloc((size_t)all * sizeof(float));
    float *part = malloc(N * sizeof(float));
    float *mine = g + (int64_t)c->rank * N;
    for (int round = 0; round < 2; round++) {
        uint64_t sg = 20 + 2 * round, sw = 21 + 2 * round;
        for (int64_t i = 0; i < all; i++) g[i] = value(sg, c->rank, i), w[i] = -1.0f;
        for (int64_t i = 0; i < N; i++) part[i] = value(sw, c->rank, i);
        struct comm_req rs = {0}, ag = {0};
        float x[2] = {1.0f, (float)c->rank};
        comm_reduce_scatter_start(c, g, mine, N, COMM_F32, &rs);
        comm_all_gather_start(c, part, w, N, COMM_F32, &ag);
        CHECK(rs.active && ag.active);
        comm_all_reduce(c, x, x, 2, COMM_F32, COMM_SUM);
        comm_coll_wait(c, &ag, "test all-gather");
        comm_coll_wait(c, &rs, "test reduce-scatter");
        CHECK(!rs.active && !ag.active);
        CHECK(x[0] == (float)P && x[1] == (float)(P * (P - 1) / 2));
        int bad = 0;
        for (int64_t i = 0; i < N; i++) bad += mine[i] != sum_of(P, sg, (int64_t)c->rank * N + i);
        for (int64_t i = 0; i < all; i++) bad += w[i] != value(sw, (int)(i / N), i % N);
        if (!CHECK(bad == 0)) fprintf(stderr, "  started collectives, round %d: %d wrong\n", round, bad);
    }
    free(g), free(w), free(part);
}

/* Gather to and scatter from the last rank, out of place and in place at the root. */
static void test_root_collectives(struct comm *c) {
    enum { N = 777 };
    int P = c->size, root = P - 1, bad = 0;
    float *all = malloc((size_t)P * N * sizeof(float)), *mine = malloc(N * sizeof(float));
    for (int in_place = 0; in_place < 2; in_place++) {
        for (int64_t i = 0; i < (int64_t)P * N; i++) all[i] = -1.0f;
        float *send = in_place && c->rank == root ? all + (int64_t)root * N : mine;
        for (int64_t i = 0; i < N; i++) send[i] = value(7 + in_place, c->rank, i);
        comm_mpi_gather(c, send, all, N, COMM_F32, root);
        bad = 0;
        if (c->rank == root)
            for (int64_t i = 0; i < (int64_t)P * N; i++) bad += all[i] != value(7 + in_place, (int)(i / N), i % N);
        CHECK(bad == 0);

        for (int64_t i = 0; i < (int64_t)P * N; i++) all[i] = c->rank == root ? value(9 + in_place, 0, i) : -1.0f;
        float *recv = in_place && c->rank == root ? all + (int64_t)root * N : mine;
        comm_mpi_scatter(c, all, recv, N, COMM_F32, root);
        bad = 0;
        for (int64_t i = 0; i < N; i++) bad += recv[i] != value(9 + in_place, 0, (int64_t)c->rank * N + i);
        CHECK(bad == 0);
    }
    free(all), free(mine);
}

int main(int argc, char **argv) {
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    struct comm world;
    comm_mpi_init(&world, rt.world_comm, "world", 30);
    CHECK(comm_dtype_size(COMM_F64) == 8 && comm_dtype_size(COMM_I32) == 4);
    test_ring(&world);
    test_collectives(&world);
    test_started(&world);
    test_root_collectives(&world);
    int fails = tu_failures;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, rt.world_comm));
    if (rt.rank == 0) {
        char name[32];
        snprintf(name, sizeof name, "test_comm[N=%d]", rt.world);
        tu_done(name);
    }
    comm_free(&world);
    rt_finalize(&rt);
    return fails ? 1 : 0;
}
