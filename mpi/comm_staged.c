/* comm_staged: struct comm on device buffers through pinned host buffers and the MPI
 * transport (CUDA build only). Owns one MPI struct comm (comm_mpi_init: it does the talking,
 * the timeouts and the messages) and one pinned arena of COMM_STAGED_BUFFERS x max_bytes:
 *   ring[i].send/recv  (max_bytes each) a ring exchange in flight, COMM_STAGED_RING_SLOTS at once
 *   send/recv          (max_bytes each) the collective in progress
 * Every operation starts by waiting for the compute stream (after its device->host copies)
 * before MPI touches a host buffer, which also retires the host->device copies that earlier
 * operations queued from the same buffers. A started reduce-scatter or all-gather finishes
 * inside its start (the copies are on the compute stream already); its wait does nothing. */
#include "comm_staged.h"

#ifdef RT_HAVE_CUDA

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_mpi.h"
#include "cuda_check.h"
#include "runtime.h"

struct ring_slot {
    void *send, *recv;          /* (max_bytes) pinned */
    void *dev_recv;             /* where ring_wait copies the message */
    size_t bytes;
    struct comm_ring_req inner; /* the MPI exchange */
    int busy;
};

struct staged_impl {
    struct comm      mpi;
    cudaStream_t     compute;
    size_t           max_bytes;
    void            *arena;      /* (COMM_STAGED_BUFFERS x max_bytes) pinned */
    void            *send, *recv; /* (max_bytes) pinned, for collectives */
    struct ring_slot ring[COMM_STAGED_RING_SLOTS];
};

static struct staged_impl *impl(struct comm *c) { return c->impl; }

/* Bytes of count elements, checked against the staging buffers. */
static size_t staged_bytes(struct comm *c, int64_t count, int64_t blocks, int dtype, const char *op) {
    struct staged_impl *m = impl(c);
    if (count < 0) RT_FATAL("comm %s: %s of %lld elements", c->name, op, (long long)count);
    size_t bytes = (size_t)count * (size_t)blocks * comm_dtype_size(dtype);
    if (bytes > m->max_bytes)
        RT_FATAL("comm %s: %s needs %zu bytes of staging, more than the %zu bytes per buffer given to comm_staged_init",
                 c->name, op, bytes, m->max_bytes);
    return bytes;
}

/* Device -> host on the compute stream (after the work queued there), then wait for it. */
static void to_host(struct staged_impl *m, void *host, const void *dev, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, m->compute));
    CUDA_CHECK(cudaStreamSynchronize(m->compute));
}

/* Host -> device on the compute stream; the host buffer is reused only after the next
 * operation has waited for the compute stream. */
static void to_dev(struct staged_impl *m, void *dev, const void *host, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, m->compute));
}

static void settle(struct staged_impl *m) { CUDA_CHECK(cudaStreamSynchronize(m->compute)); }

static void staged_ring_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                              struct comm_ring_req *req) {
    struct staged_impl *m = impl(c);
    size_t bytes = staged_bytes(c, count, 1, dtype, "ring exchange");
    int i = 0;
    while (i < COMM_STAGED_RING_SLOTS && m->ring[i].busy) i++;
    if (i == COMM_STAGED_RING_SLOTS)
        RT_FATAL("comm %s: more than %d ring exchanges in flight (wait for one first)", c->name, COMM_STAGED_RING_SLOTS);
    struct ring_slot *s = &m->ring[i];
    to_host(m, s->send, send, bytes);
    memset(&s->inner, 0, sizeof s->inner);
    comm_ring_start(&m->mpi, s->send, s->recv, count, dtype, &s->inner);
    s->dev_recv = recv;
    s->bytes = bytes;
    s->busy = 1;
    req->impl[0] = s;
    req->active = 1;
}

static void staged_ring_wait(struct comm *c, struct comm_ring_req *req, const char *what) {
    struct staged_impl *m = impl(c);
    if (!req->active) RT_FATAL("comm %s: ring wait without a ring exchange (%s)", c->name, what);
    struct ring_slot *s = req->impl[0];
    m->mpi.timeout_s = c->timeout_s;
    comm_ring_wait(&m->mpi, &s->inner, what);
    to_dev(m, s->dev_recv, s->recv, s->bytes);
    s->busy = 0;
    req->impl[0] = NULL;
    req->active = 0;
}

static void staged_all_reduce(struct comm *c, const void *send, void *recv, int64_t count, int dtype, int op) {
    struct staged_impl *m = impl(c);
    size_t bytes = staged_bytes(c, count, 1, dtype, "all-reduce");
    to_host(m, m->send, send, bytes);
    comm_all_reduce(&m->mpi, m->send, m->recv, count, dtype, op);
    to_dev(m, recv, m->recv, bytes);
}

static void staged_reduce_scatter(struct comm *c, const void *send, void *recv, int64_t count, int dtype) {
    struct staged_impl *m = impl(c);
    size_t sbytes = staged_bytes(c, count, c->size, dtype, "reduce-scatter");
    size_t rbytes = staged_bytes(c, count, 1, dtype, "reduce-scatter");
    to_host(m, m->send, send, sbytes);
    comm_reduce_scatter(&m->mpi, m->send, m->recv, count, dtype);
    to_dev(m, recv, m->recv, rbytes);
}

static void staged_all_gather(struct comm *c, const void *send, void *recv, int64_t count, int dtype) {
    struct staged_impl *m = impl(c);
    size_t sbytes = staged_bytes(c, count, 1, dtype, "all-gather");
    size_t rbytes = staged_bytes(c, count, c->size, dtype, "all-gather");
    to_host(m, m->send, send, sbytes);
    comm_all_gather(&m->mpi, m->send, m->recv, count, dtype);
    to_dev(m, recv, m->recv, rbytes);
}

/* The started forms finish at once: the data has to pass through the host buffers anyway. */
static void mark_started(struct comm *c, struct comm_req *req, const char *kind) {
    if (req->active) RT_FATAL("comm %s: %s started on a request still in flight", c->name, kind);
    req->active = 1;
}

static void staged_reduce_scatter_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                        struct comm_req *req) {
    mark_started(c, req, "reduce-scatter");
    staged_reduce_scatter(c, send, recv, count, dtype);
}

static void staged_all_gather_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                    struct comm_req *req) {
    mark_started(c, req, "all-gather");
    staged_all_gather(c, send, recv, count, dtype);
}

static void staged_coll_wait(struct comm *c, struct comm_req *req, const char *what) {
    if (!req->active) RT_FATAL("comm %s: collective wait without a collective (%s)", c->name, what);
    req->active = 0;
}

static void staged_broadcast(struct comm *c, void *buf, int64_t count, int dtype, int root) {
    struct staged_impl *m = impl(c);
    size_t bytes = staged_bytes(c, count, 1, dtype, "broadcast");
    if (c->rank == root) to_host(m, m->send, buf, bytes);
    else settle(m);
    comm_broadcast(&m->mpi, m->send, count, dtype, root);
    if (c->rank != root) to_dev(m, buf, m->send, bytes);
}

static void staged_barrier(struct comm *c) {
    struct staged_impl *m = impl(c);
    settle(m);
    comm_barrier(&m->mpi);
}

static void staged_free(struct comm *c) {
    struct staged_impl *m = impl(c);
    settle(m);
    CUDA_CHECK(cudaFreeHost(m->arena));
    comm_free(&m->mpi);
    free(m);
    c->impl = NULL;
    c->members = NULL;
}

static const struct comm_ops staged_ops = {
    .ring_start = staged_ring_start,
    .ring_wait = staged_ring_wait,
    .all_reduce = staged_all_reduce,
    .reduce_scatter = staged_reduce_scatter,
    .all_gather = staged_all_gather,
    .reduce_scatter_start = staged_reduce_scatter_start,
    .all_gather_start = staged_all_gather_start,
    .coll_wait = staged_coll_wait,
    .broadcast = staged_broadcast,
    .barrier = staged_barrier,
    .free = staged_free,
};

void comm_staged_init(struct comm *c, MPI_Comm parent, const char *name, double timeout_s,
                      cudaStream_t compute, size_t max_bytes) {
    struct staged_impl *m = rt_calloc(1, sizeof *m, "staged communicator");
    comm_mpi_init(&m->mpi, parent, name, timeout_s);
    memset(c, 0, sizeof *c);
    c->ops = &staged_ops;
    c->rank = m->mpi.rank;
    c->size = m->mpi.size;
    c->timeout_s = timeout_s;
    c->members = m->mpi.members; /* the MPI communicator's (it waits and names the ranks) */
    snprintf(c->name, sizeof c->name, "%s", name);
    c->impl = m;
    m->compute = compute;
    m->max_bytes = max_bytes;
    size_t nbuf = COMM_STAGED_BUFFERS;
    if (max_bytes > SIZE_MAX / nbuf) RT_FATAL("comm %s: staging buffers of %zu bytes", name, max_bytes);
    CUDA_CHECK(cudaMallocHost(&m->arena, max_bytes ? nbuf * max_bytes : 1));
    char *p = m->arena;
    m->send = p, p += max_bytes;
    m->recv = p, p += max_bytes;
    for (int i = 0; i < COMM_STAGED_RING_SLOTS; i++) {
        m->ring[i].send = p, p += max_bytes;
        m->ring[i].recv = p, p += max_bytes;
    }
}

#else
typedef int comm_staged_needs_cuda; /* CPU-only build: nothing here (ISO C wants a declaration) */
#endif /* RT_HAVE_CUDA */
