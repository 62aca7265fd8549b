/* test_comm (GPU): the CUDA transports on device buffers, under mpirun -np N on one or more
 * GPUs, checked as test/test_comm.c checks the MPI one, without a reference rank: every
 * value sent is a function of (seed, sender, offset), so each receiver knows what must
 * arrive. Values are integers, so every sum is exact in any order.
 *   comm_staged  all N ranks (any number may share a GPU)
 *   comm_nccl    the ranks with a GPU of their own (local rank < GPUs visible): 1 rank on a
 *                single GPU, N on N GPUs
 * Each: ring exchange over several hops (double-buffered, as the ring schedule uses it; f32
 * and bf16; two exchanges in flight at once, waited in reverse order), all-reduce (sum, max,
 * in place and out of place; bf16 sum on NCCL), reduce-scatter and all-gather (out of
 * place, and in place as ZeRO runs them on the gradients and weights), their started forms
 * as the parameter store overlaps them (an in-place f32 reduce-scatter and a bf16 all-gather
 * into a slot in flight together, a blocking all-reduce between, waited in reverse order:
 * the same bytes as the blocking forms give; on NCCL the start returns while the compute
 * stream is still busy, i.e. without waiting for it on the host), broadcast, barrier.
 * Stream order is checked too: the first ring message and the started collectives' inputs
 * are written by copies queued on the compute stream behind slow work and sent without a
 * host wait (the transport must order after the compute stream), and results are read back
 * by copies queued on the compute stream right after a collective returns or is waited for
 * (the compute stream must wait for the transport).
 * Prints one summary line (rank 0); exits non-zero on any failed check on any rank. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_nccl.h"
#include "comm_staged.h"
#include "gpu_testutil.h"
#include "runtime.h"

#define RING_N   10007     /* f32 ring message, elements */
#define HOPS     5
#define COLL_N   1001      /* collective blocks, elements */
#define BIG_N    (1 << 20) /* large all-reduce (f32), for the stream-order check */
#define SLOW_B   ((size_t)512 << 20) /* bytes memset on the compute stream to delay it */
#define MAX_STAGE ((size_t)16 << 20) /* comm_staged buffer size: BIG_N f32 and 8 x COLL_N f64 */

static cudaStream_t g_compute; /* the compute stream every transport is given */
static void *g_slow;           /* (SLOW_B) scratch for delaying the compute stream */

static float value(uint64_t seed, int rank, int64_t i) {
    return (float)(rng_u64(seed * 1000003u + (uint64_t)rank, (uint64_t)i) % 100000) - 50000.0f;
}

/* Raw 16-bit words for bf16 moves (never reduced). */
static uint16_t word(uint64_t seed, int rank, int64_t i) {
    return (uint16_t)rng_u64(seed * 1000003u + (uint64_t)rank, (uint64_t)i);
}

/* bf16 of a small integer (exact: the top 16 bits of its f32). */
static uint16_t bf16_int(int v) { return (uint16_t)(fbits((float)v) >> 16); }

static void *dalloc(size_t bytes) {
    void *p = dmalloc(bytes);
    poison(p, bytes ? bytes : 1); /* NaN / -1 everywhere */
    sync_device();
    return p;
}

/* Host <-> device through the compute stream, then wait for it. */
static void up(void *dev, const void *host, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, g_compute));
    CUDA_CHECK(cudaStreamSynchronize(g_compute));
}
static void down(void *host, const void *dev, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, g_compute));
    CUDA_CHECK(cudaStreamSynchronize(g_compute));
}

/* Queue slow work on the compute stream (returns at once). */
static void delay_compute(void) {
    for (int i = 0; i < 4; i++) CUDA_CHECK(cudaMemsetAsync(g_slow, i, SLOW_B, g_compute));
}

static int src_after(const struct comm *c, int hops) {
    return ((c->rank - hops) % c->size + c->size) % c->size;
}

static void test_ring(struct comm *c) {
    size_t bytes = RING_N * sizeof(float);
    float *h = NULL, *got = malloc(bytes);
    CUDA_CHECK(cudaMallocHost((void **)&h, bytes));
    float *buf[2] = {dalloc(bytes), dalloc(bytes)};
    for (int64_t i = 0; i < RING_N; i++) h[i] = value(1, c->rank, i);
    /* The message is written behind slow work on the compute stream; no host wait. */
    delay_compute();
    CUDA_CHECK(cudaMemcpyAsync(buf[0], h, bytes, cudaMemcpyHostToDevice, g_compute));
    for (int hop = 0; hop < HOPS; hop++) {
        struct comm_ring_req req = {0};
        comm_ring_start(c, buf[hop & 1], buf[(hop + 1) & 1], RING_N, COMM_F32, &req);
        comm_ring_wait(c, &req, "test hop");
        down(got, buf[(hop + 1) & 1], bytes);
        int src = src_after(c, hop + 1), bad = 0;
        for (int64_t i = 0; i < RING_N; i++) bad += got[i] != value(1, src, i);
        if (!CHECK(bad == 0)) fprintf(stderr, "  %s: ring hop %d: %d of %d wrong\n", c->name, hop, bad, RING_N);
    }
    CUDA_CHECK(cudaFree(buf[0]));
    CUDA_CHECK(cudaFree(buf[1]));
    CUDA_CHECK(cudaFreeHost(h));
    free(got);
}

/* Two exchanges in flight at once (K/V and dK/dV in the ring backward), f32 and bf16 of
 * different sizes, waited in the reverse order; then the pair hops again. */
static void test_ring_pair(struct comm *c) {
    enum { NA = 3001, NB = 5003 };
    float *a[2] = {dalloc(NA * sizeof(float)), dalloc(NA * sizeof(float))};
    uint16_t *b[2] = {dalloc(NB * 2), dalloc(NB * 2)};
    float *ha = malloc(NA * sizeof(float));
    uint16_t *hb = malloc(NB * 2);
    for (int64_t i = 0; i < NA; i++) ha[i] = value(5, c->rank, i);
    for (int64_t i = 0; i < NB; i++) hb[i] = word(6, c->rank, i);
    up(a[0], ha, NA * sizeof(float));
    up(b[0], hb, NB * 2);
    for (int hop = 0; hop < 2; hop++) {
        struct comm_ring_req ra = {0}, rb = {0};
        comm_ring_start(c, a[hop & 1], a[(hop + 1) & 1], NA, COMM_F32, &ra);
        comm_ring_start(c, b[hop & 1], b[(hop + 1) & 1], NB, COMM_BF16, &rb);
        comm_ring_wait(c, &rb, "test bf16 pair");
        comm_ring_wait(c, &ra, "test f32 pair");
        down(ha, a[(hop + 1) & 1], NA * sizeof(float));
        down(hb, b[(hop + 1) & 1], NB * 2);
        int src = src_after(c, hop + 1), bad = 0;
        for (int64_t i = 0; i < NA; i++) bad += ha[i] != value(5, src, i);
        for (int64_t i = 0; i < NB; i++) bad += hb[i] != word(6, src, i);
        if (!CHECK(bad == 0)) fprintf(stderr, "  %s: ring pair hop %d: %d wrong\n", c->name, hop, bad);
    }
    for (int i = 0; i < 2; i++) {
        CUDA_CHECK(cudaFree(a[i]));
        CUDA_CHECK(cudaFree(b[i]));
    }
    free(ha), free(hb);
}

static void test_all_reduce(struct comm *c, int is_nccl) {
    int P = c->size, bad = 0;
    /* f64 sum, out of place */
    double *hd = malloc(COLL_N * sizeof *hd);
    double *d = dalloc(COLL_N * sizeof *d), *dsum = dalloc(COLL_N * sizeof *dsum);
    for (int64_t i = 0; i < COLL_N; i++) hd[i] = value(2, c->rank, i);
    up(d, hd, COLL_N * sizeof *hd);
    comm_all_reduce(c, d, dsum, COLL_N, COMM_F64, COMM_SUM);
    down(hd, dsum, COLL_N * sizeof *hd);
    for (int64_t i = 0; i < COLL_N; i++) {
        double e = 0;
        for (int r = 0; r < P; r++) e += value(2, r, i);
        bad += hd[i] != e;
    }
    CHECK(bad == 0);
    down(hd, d, COLL_N * sizeof *hd); /* out of place leaves the input alone */
    bad = 0;
    for (int64_t i = 0; i < COLL_N; i++) bad += hd[i] != value(2, c->rank, i);
    CHECK(bad == 0);

    /* f32 sum in place */
    float *hf = malloc(COLL_N * sizeof *hf), *f = dalloc(COLL_N * sizeof *f);
    for (int64_t i = 0; i < COLL_N; i++) hf[i] = value(7, c->rank, i);
    up(f, hf, COLL_N * sizeof *hf);
    comm_all_reduce(c, f, f, COLL_N, COMM_F32, COMM_SUM);
    down(hf, f, COLL_N * sizeof *hf);
    bad = 0;
    for (int64_t i = 0; i < COLL_N; i++) {
        float e = 0;
        for (int r = 0; r < P; r++) e += value(7, r, i);
        bad += hf[i] != e;
    }
    CHECK(bad == 0);

    /* i64 max in place (one element), i32 max out of place */
    int64_t mx = c->rank * 10 + 3, *dmx = dalloc(sizeof mx);
    up(dmx, &mx, sizeof mx);
    comm_all_reduce(c, dmx, dmx, 1, COMM_I64, COMM_MAX);
    down(&mx, dmx, sizeof mx);
    CHECK(mx == (int64_t)(P - 1) * 10 + 3);
    int32_t *hi = malloc(COLL_N * sizeof *hi), *di = dalloc(COLL_N * sizeof *di), *dimax = dalloc(COLL_N * sizeof *di);
    for (int64_t i = 0; i < COLL_N; i++) hi[i] = (int32_t)value(8, c->rank, i);
    up(di, hi, COLL_N * sizeof *hi);
    comm_all_reduce(c, di, dimax, COLL_N, COMM_I32, COMM_MAX);
    down(hi, dimax, COLL_N * sizeof *hi);
    bad = 0;
    for (int64_t i = 0; i < COLL_N; i++) {
        int32_t e = (int32_t)value(8, 0, i);
        for (int r = 1; r < P; r++) e = (int32_t)value(8, r, i) > e ? (int32_t)value(8, r, i) : e;
        bad += hi[i] != e;
    }
    CHECK(bad == 0);

    /* Large f32 sum out of place into a poisoned buffer, read back by a copy queued on the
     * compute stream as soon as the call returns (no host wait in between). */
    float *hbig = malloc(BIG_N * sizeof *hbig), *big = dalloc(BIG_N * sizeof *big), *bigsum = dalloc(BIG_N * sizeof *big);
    for (int64_t i = 0; i < BIG_N; i++) hbig[i] = value(9, c->rank, i);
    up(big, hbig, BIG_N * sizeof *hbig);
    comm_all_reduce(c, big, bigsum, BIG_N, COMM_F32, COMM_SUM);
    down(hbig, bigsum, BIG_N * sizeof *hbig);
    bad = 0;
    for (int64_t i = 0; i < BIG_N; i++) {
        float e = 0;
        for (int r = 0; r < P; r++) e += value(9, r, i);
        bad += hbig[i] != e;
    }
    if (!CHECK(bad == 0)) fprintf(stderr, "  %s: large all-reduce: %d of %d wrong\n", c->name, bad, BIG_N);

    /* bf16 sum (NCCL only: MPI cannot reduce bf16) of small integers: exact. */
    if (is_nccl) {
        uint16_t *hb = malloc(COLL_N * 2), *db = dalloc(COLL_N * 2);
        for (int64_t i = 0; i < COLL_N; i++) hb[i] = bf16_int((int)(word(10, c->rank, i) % 17) - 8);
        up(db, hb, COLL_N * 2);
        comm_all_reduce(c, db, db, COLL_N, COMM_BF16, COMM_SUM);
        down(hb, db, COLL_N * 2);
        bad = 0;
        for (int64_t i = 0; i < COLL_N; i++) {
            int e = 0;
            for (int r = 0; r < P; r++) e += (int)(word(10, r, i) % 17) - 8;
            bad += hb[i] != bf16_int(e);
        }
        CHECK(bad == 0);
        CUDA_CHECK(cudaFree(db));
        free(hb);
    }
    CUDA_CHECK(cudaFree(d));
    CUDA_CHECK(cudaFree(dsum));
    CUDA_CHECK(cudaFree(f));
    CUDA_CHECK(cudaFree(dmx));
    CUDA_CHECK(cudaFree(di));
    CUDA_CHECK(cudaFree(dimax));
    CUDA_CHECK(cudaFree(big));
    CUDA_CHECK(cudaFree(bigsum));
    free(hd), free(hf), free(hi), free(hbig);
}

static void test_scatter_gather(struct comm *c) {
    int P = c->size, bad = 0;
    size_t all = (size_t)P * COLL_N;
    float *hs = malloc(all * sizeof(float)), *hr = malloc(COLL_N * sizeof(float));
    float *send = dalloc(all * sizeof(float)), *recv = dalloc(COLL_N * sizeof(float));
    for (int64_t i = 0; i < (int64_t)all; i++) hs[i] = value(3, c->rank, i);
    up(send, hs, all * sizeof(float));
    comm_reduce_scatter(c, send, recv, COLL_N, COMM_F32);
    down(hr, recv, COLL_N * sizeof(float));
    for (int64_t i = 0; i < COLL_N; i++) {
        float e = 0;
        for (int r = 0; r < P; r++) e += value(3, r, (int64_t)c->rank * COLL_N + i);
        bad += hr[i] != e;
    }
    CHECK(bad == 0);

    for (int64_t i = 0; i < COLL_N; i++) hr[i] = value(4, c->rank, i);
    up(recv, hr, COLL_N * sizeof(float));
    comm_all_gather(c, recv, send, COLL_N, COMM_F32);
    down(hs, send, all * sizeof(float));
    bad = 0;
    for (int r = 0; r < P; r++)
        for (int64_t i = 0; i < COLL_N; i++) bad += hs[(int64_t)r * COLL_N + i] != value(4, r, i);
    CHECK(bad == 0);

    /* In place: reduce-scatter into this rank's block of the buffer, then all-gather from
     * it, the other blocks poisoned before the gather. */
    float *mine = send + (int64_t)c->rank * COLL_N;
    for (int64_t i = 0; i < (int64_t)all; i++) hs[i] = value(13, c->rank, i);
    up(send, hs, all * sizeof(float));
    comm_reduce_scatter(c, send, mine, COLL_N, COMM_F32);
    down(hr, mine, COLL_N * sizeof(float));
    bad = 0;
    for (int64_t i = 0; i < COLL_N; i++) {
        float e = 0;
        for (int r = 0; r < P; r++) e += value(13, r, (int64_t)c->rank * COLL_N + i);
        bad += hr[i] != e;
    }
    if (!CHECK(bad == 0)) fprintf(stderr, "  %s: in-place reduce-scatter: %d wrong\n", c->name, bad);
    poison(send, all * sizeof(float));
    sync_device();
    for (int64_t i = 0; i < COLL_N; i++) hr[i] = value(14, c->rank, (int64_t)c->rank * COLL_N + i);
    up(mine, hr, COLL_N * sizeof(float));
    comm_all_gather(c, mine, send, COLL_N, COMM_F32);
    down(hs, send, all * sizeof(float));
    bad = 0;
    for (int64_t i = 0; i < (int64_t)all; i++) bad += hs[i] != value(14, (int)(i / COLL_N), i);
    if (!CHECK(bad == 0)) fprintf(stderr, "  %s: in-place all-gather: %d wrong\n", c->name, bad);

    /* bf16 all-gather (moved as 16-bit words) */
    uint16_t *hw = malloc(all * 2), *dw = dalloc(COLL_N * 2), *dwall = dalloc(all * 2);
    for (int64_t i = 0; i < COLL_N; i++) hw[i] = word(11, c->rank, i);
    up(dw, hw, COLL_N * 2);
    comm_all_gather(c, dw, dwall, COLL_N, COMM_BF16);
    down(hw, dwall, all * 2);
    bad = 0;
    for (int r = 0; r < P; r++)
        for (int64_t i = 0; i < COLL_N; i++) bad += hw[(int64_t)r * COLL_N + i] != word(11, r, i);
    CHECK(bad == 0);

    CUDA_CHECK(cudaFree(send));
    CUDA_CHECK(cudaFree(recv));
    CUDA_CHECK(cudaFree(dw));
    CUDA_CHECK(cudaFree(dwall));
    free(hs), free(hr), free(hw);
}

/* The started forms against the blocking ones: a gradient buffer (f32, P x COLL_N) reduce-
 * scattered in place and a weight part (bf16 words, COLL_N) gathered into a slot, first
 * blocking, then started -- inputs written behind slow compute work, both in flight with an
 * all-reduce between, waited in reverse order -- with byte-identical results. */
static void test_started(struct comm *c, int is_nccl) {
    int P = c->size;
    size_t all = (size_t)P * COLL_N, gbytes = all * sizeof(float), wbytes = all * 2;
    float *hg = NULL, *want_g = malloc(COLL_N * sizeof(float)), *got_g = malloc(COLL_N * sizeof(float));
    uint16_t *hw = NULL, *want_w = malloc(wbytes), *got_w = malloc(wbytes);
    CUDA_CHECK(cudaMallocHost((void **)&hg, gbytes)); /* pinned: the copies behind the slow work stay async */
    CUDA_CHECK(cudaMallocHost((void **)&hw, COLL_N * 2));
    float *g = dalloc(gbytes), *mine = g + (int64_t)c->rank * COLL_N;
    uint16_t *part = dalloc(COLL_N * 2), *slot = dalloc(wbytes);
    int32_t x = 1, *dx = dalloc(sizeof x);
    for (size_t i = 0; i < all; i++) hg[i] = value(15, c->rank, (int64_t)i);
    for (int64_t i = 0; i < COLL_N; i++) hw[i] = word(16, c->rank, i);

    up(g, hg, gbytes);
    up(part, hw, COLL_N * 2);
    comm_reduce_scatter(c, g, mine, COLL_N, COMM_F32);
    comm_all_gather(c, part, slot, COLL_N, COMM_BF16);
    down(want_g, mine, COLL_N * sizeof(float));
    down(want_w, slot, wbytes);

    poison(g, gbytes);
    poison(slot, wbytes);
    sync_device();
    for (int i = 0; i < 4; i++) delay_compute();
    CUDA_CHECK(cudaMemcpyAsync(g, hg, gbytes, cudaMemcpyHostToDevice, g_compute));
    struct comm_req rs = {0}, ag = {0};
    comm_reduce_scatter_start(c, g, mine, COLL_N, COMM_F32, &rs);
    if (is_nccl) CHECK(cudaStreamQuery(g_compute) == cudaErrorNotReady); /* the host did not wait for it */
    CUDA_CHECK(cudaMemcpyAsync(part, hw, COLL_N * 2, cudaMemcpyHostToDevice, g_compute));
    comm_all_gather_start(c, part, slot, COLL_N, COMM_BF16, &ag);
    up(dx, &x, sizeof x);
    comm_all_reduce(c, dx, dx, 1, COMM_I32, COMM_SUM);
    comm_coll_wait(c, &ag, "test all-gather");
    CUDA_CHECK(cudaMemcpyAsync(got_w, slot, wbytes, cudaMemcpyDeviceToHost, g_compute));
    comm_coll_wait(c, &rs, "test reduce-scatter");
    CHECK(!rs.active && !ag.active);
    down(got_g, mine, COLL_N * sizeof(float));
    down(&x, dx, sizeof x);
    CHECK(x == P);
    int bad = 0;
    for (int64_t i = 0; i < COLL_N; i++) {
        float e = 0;
        for (int r = 0; r < P; r++) e += value(15, r, (int64_t)c->rank * COLL_N + i);
        bad += want_g[i] != e;
    }
    for (size_t i = 0; i < all; i++) bad += want_w[i] != word(16, (int)(i / COLL_N), (int64_t)(i % COLL_N));
    if (!CHECK(bad == 0)) fprintf(stderr, "  %s: blocking reduce-scatter / all-gather: %d wrong\n", c->name, bad);
    int same = !memcmp(got_g, want_g, COLL_N * sizeof(float)) && !memcmp(got_w, want_w, wbytes);
    if (!CHECK(same)) fprintf(stderr, "  %s: started collectives differ from the blocking ones\n", c->name);
    CUDA_CHECK(cudaFree(g));
    CUDA_CHECK(cudaFree(part));
    CUDA_CHECK(cudaFree(slot));
    CUDA_CHECK(cudaFree(dx));
    CUDA_CHECK(cudaFreeHost(hg));
    CUDA_CHECK(cudaFreeHost(hw));
    free(want_g), free(got_g), free(want_w), free(got_w);
}

static void test_broadcast(struct comm *c) {
    int P = c->size;
    int32_t b[3] = {c->rank, c->rank + 1, c->rank + 2}, *db = dalloc(sizeof b);
    up(db, b, sizeof b);
    comm_broadcast(c, db, 3, COMM_I32, P - 1);
    down(b, db, sizeof b);
    CHECK(b[0] == P - 1 && b[1] == P && b[2] == P + 1);

    uint16_t *hw = malloc(COLL_N * 2), *dw = dalloc(COLL_N * 2);
    for (int64_t i = 0; i < COLL_N; i++) hw[i] = word(12, c->rank, i);
    up(dw, hw, COLL_N * 2);
    comm_broadcast(c, dw, COLL_N, COMM_BF16, 0);
    down(hw, dw, COLL_N * 2);
    int bad = 0;
    for (int64_t i = 0; i < COLL_N; i++) bad += hw[i] != word(12, 0, i);
    CHECK(bad == 0);
    CUDA_CHECK(cudaFree(db));
    CUDA_CHECK(cudaFree(dw));
    free(hw);
}

static void test_transport(struct comm *c, int is_nccl) {
    int before = tu_failures;
    test_ring(c);
    test_ring_pair(c);
    test_all_reduce(c, is_nccl);
    test_scatter_gather(c);
    test_started(c, is_nccl);
    test_broadcast(c);
    comm_barrier(c);
    if (tu_failures != before)
        fprintf(stderr, "rank %d: %s transport (%d ranks): %d failed checks\n", c->rank, c->name, c->size,
                tu_failures - before);
}

int main(int argc, char **argv) {
    setenv("NCCL_NVLS_ENABLE", "0", 1); /* never NVLink multicast (see the device notes) */
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    int ndev = 0;
    CUDA_CHECK(cudaGetDeviceCount(&ndev));
    CUDA_CHECK(cudaSetDevice(rt.local_rank % ndev));
    CUDA_CHECK(cudaStreamCreateWithFlags(&g_compute, cudaStreamNonBlocking));
    g_slow = dalloc(SLOW_B);
    CHECK(comm_dtype_size(COMM_BF16) == 2);

    struct comm st;
    comm_staged_init(&st, rt.world_comm, "staged", 60, g_compute, MAX_STAGE);
    test_transport(&st, 0);
    comm_free(&st);

    /* NCCL over the ranks that have a GPU of their own. */
    int in_nccl = rt.local_rank < ndev, nccl_size = 0;
    MPI_Comm sub;
    MPI_CHECK(MPI_Comm_split(rt.world_comm, in_nccl ? 0 : MPI_UNDEFINED, rt.rank, &sub));
    if (in_nccl) {
        struct comm nc;
        comm_nccl_init(&nc, sub, "nccl", 60, g_compute);
        nccl_size = nc.size;
        test_transport(&nc, 1);
        comm_free(&nc);
        MPI_CHECK(MPI_Comm_free(&sub));
    }

    int counts[2] = {tu_checks, tu_failures};
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT, MPI_SUM, rt.world_comm));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &nccl_size, 1, MPI_INT, MPI_MAX, rt.world_comm));
    if (rt.rank == 0) {
        char name[64];
        snprintf(name, sizeof name, "test_comm[gpu: staged N=%d, nccl N=%d, %d GPU(s)]", rt.world, nccl_size, ndev);
        tu_checks = counts[0], tu_failures = counts[1]; /* the job's totals */
        tu_done(name);
    }
    CUDA_CHECK(cudaFree(g_slow));
    CUDA_CHECK(cudaStreamDestroy(g_compute));
    rt_finalize(&rt);
    return counts[1] ? 1 : 0;
}
