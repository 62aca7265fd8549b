/* comm_nccl: struct comm over NCCL on device buffers (CUDA build only). Owns the NCCL
 * communicator, the communication stream and its events:
 *   ready        recorded on the compute stream before each operation; the comm stream
 *                waits on it, so an operation sees everything the caller queued before it
 *   ring_done[]  one per ring exchange in flight (the request holds it); ring_wait polls it
 *                with a timeout and then makes the compute stream wait on it
 *   coll_done    recorded after a collective; the compute stream waits on it, and the host
 *                polls it (waits.c), so a collective that never completes is a timeout,
 *                not a hang in a later synchronization
 *   started[]    one per started reduce-scatter / all-gather in flight (the request holds
 *                it): recorded after it on the comm stream; coll_wait polls it on the host
 *                with the timeout and then makes the compute stream wait on it, so the
 *                compute stream runs on meanwhile (a blocking collective is a started one
 *                waited at once)
 *   flag         one device int that barrier all-reduces
 * Streams are ordered only by events; nothing here synchronizes the whole device. */
#include "comm_nccl.h"

#ifdef RT_HAVE_CUDA

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "waits.h"

#define RING_SLOTS 4 /* ring exchanges in flight at once (the ring backward uses 2) */
#define COLL_SLOTS 8 /* started collectives in flight at once (the parameter store: up to 6) */

struct nccl_impl {
    ncclComm_t   nc;
    cudaStream_t stream;  /* communication, cudaStreamNonBlocking */
    cudaStream_t compute; /* the caller's */
    cudaEvent_t  ready, coll_done, ring_done[RING_SLOTS], started[COLL_SLOTS];
    int          ring_busy[RING_SLOTS], coll_busy[COLL_SLOTS];
    int         *flag;    /* (2) device ints: barrier, warm-up exchange */
    int          device;
};

static struct nccl_impl *impl(struct comm *c) { return c->impl; }

static ncclDataType_t dtype_map(int dtype) {
    switch (dtype) {
    case COMM_F32: return ncclFloat32;
    case COMM_F64: return ncclFloat64;
    case COMM_I32: return ncclInt32;
    case COMM_I64: return ncclInt64;
    case COMM_U8: return ncclUint8;
    case COMM_BF16: return ncclBfloat16;
    default: RT_FATAL("comm: unknown dtype %d", dtype);
    }
}

static size_t elems(struct comm *c, int64_t count, const char *op) {
    if (count < 0) RT_FATAL("comm %s: %s of %lld elements", c->name, op, (long long)count);
    return (size_t)count;
}


/* Order the comm stream after everything queued so far on the compute stream. */
static void after_compute(struct nccl_impl *m) {
    CUDA_CHECK(cudaEventRecord(m->ready, m->compute));
    CUDA_CHECK(cudaStreamWaitEvent(m->stream, m->ready, 0));
}

/* Make the compute stream wait for what is queued so far on the comm stream. */
static void compute_waits(struct nccl_impl *m) {
    CUDA_CHECK(cudaEventRecord(m->coll_done, m->stream));
    CUDA_CHECK(cudaStreamWaitEvent(m->compute, m->coll_done, 0));
}

/* An event being waited for, and what to name in a message. */
struct event_wait {
    struct comm *c;
    cudaEvent_t  ev;
    const char  *kind, *what, *peers;
};

/* 1 when the event completed; NCCL's asynchronous errors abort the communicator (so no rank
 * stays stuck in a kernel) and then the job. */
static int event_done(void *arg) {
    struct event_wait *e = arg;
    cudaError_t rc = cudaEventQuery(e->ev);
    if (rc == cudaSuccess) return 1;
    if (rc != cudaErrorNotReady) CUDA_CHECK(rc);
    struct nccl_impl *m = impl(e->c);
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(m->nc, &async));
    if (async != ncclSuccess && async != ncclInProgress) {
        const char *detail = ncclGetLastError(m->nc);
        (void)ncclCommAbort(m->nc); /* on the way out: its own result changes nothing */
        RT_FATAL("comm %s: %s%s%s failed: %s (%s)%s", e->c->name, e->kind, *e->what ? " " : "", e->what,
                 ncclGetErrorString(async), detail, e->peers);
    }
    return 0;
}

/* Poll an event on the host until it completes (waits.c: the timeout, the stop signal, the
 * roll call); on giving up abort the communicator, then the job. `kind` and `what` name the
 * operation in the message, ring exchanges also the peers. */
static void wait_event(struct comm *c, cudaEvent_t ev, const char *kind, const char *what, int ring) {
    char peers[96] = "", why[1024];
    if (ring)
        snprintf(peers, sizeof peers, " (receiving from rank %d, sending to rank %d)",
                 c->members[(c->rank - 1 + c->size) % c->size], c->members[(c->rank + 1) % c->size]);
    struct event_wait e = {c, ev, kind, what, peers};
    int rc = waits_poll(event_done, &e, c->timeout_s, c->members, c->size, why, sizeof why);
    if (rc == WAITS_DONE) return;
    (void)ncclCommAbort(impl(c)->nc);
    RT_ABORT(rc == WAITS_INTERRUPTED ? 130 : 1, "comm %s: %s%s%s%s %s", c->name, kind, *what ? " " : "", what, peers,
             why);
}

static void nccl_ring_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                            struct comm_ring_req *req) {
    struct nccl_impl *m = impl(c);
    size_t n = elems(c, count, "ring exchange");
    int slot = 0;
    while (slot < RING_SLOTS && m->ring_busy[slot]) slot++;
    if (slot == RING_SLOTS)
        RT_FATAL("comm %s: more than %d ring exchanges in flight (wait for one first)", c->name, RING_SLOTS);
    int next = (c->rank + 1) % c->size, prev = (c->rank - 1 + c->size) % c->size;
    after_compute(m);
    NCCL_CHECK(ncclGroupStart());
    NCCL_CHECK(ncclSend(send, n, dtype_map(dtype), next, m->nc, m->stream));
    NCCL_CHECK(ncclRecv(recv, n, dtype_map(dtype), prev, m->nc, m->stream));
    NCCL_CHECK(ncclGroupEnd());
    CUDA_CHECK(cudaEventRecord(m->ring_done[slot], m->stream));
    m->ring_busy[slot] = 1;
    req->impl[0] = m->ring_done[slot];
    req->impl[1] = (void *)(intptr_t)slot;
    req->active = 1;
}

static void nccl_ring_wait(struct comm *c, struct comm_ring_req *req, const char *what) {
    struct nccl_impl *m = impl(c);
    if (!req->active) RT_FATAL("comm %s: ring wait without a ring exchange (%s)", c->name, what);
    int slot = (int)(intptr_t)req->impl[1];
    cudaEvent_t done = req->impl[0];
    wait_event(c, done, "ring exchange", what, 1);
    CUDA_CHECK(cudaStreamWaitEvent(m->compute, done, 0));
    m->ring_busy[slot] = 0;
    req->impl[0] = req->impl[1] = NULL;
    req->active = 0;
}

static void nccl_all_reduce(struct comm *c, const void *send, void *recv, int64_t count, int dtype, int op) {
    struct nccl_impl *m = impl(c);
    size_t n = elems(c, count, "all-reduce");
    if (op != COMM_SUM && op != COMM_MAX) RT_FATAL("comm %s: unknown reduction %d", c->name, op);
    after_compute(m);
    NCCL_CHECK(ncclAllReduce(send, recv, n, dtype_map(dtype), op == COMM_MAX ? ncclMax : ncclSum, m->nc, m->stream));
    compute_waits(m);
    wait_event(c, m->coll_done, "all-reduce", "", 0);
}

/* A free slot for a started collective, its event and its request; the op is queued next. */
static int coll_take(struct comm *c, struct comm_req *req, const char *kind) {
    struct nccl_impl *m = impl(c);
    if (req->active) RT_FATAL("comm %s: %s started on a request still in flight", c->name, kind);
    int slot = 0;
    while (slot < COLL_SLOTS && m->coll_busy[slot]) slot++;
    if (slot == COLL_SLOTS)
        RT_FATAL("comm %s: more than %d collectives in flight (wait for one first)", c->name, COLL_SLOTS);
    m->coll_busy[slot] = 1;
    req->impl[0] = (void *)(intptr_t)slot;
    req->impl[1] = (void *)kind;
    req->active = 1;
    after_compute(m);
    return slot;
}

static void nccl_reduce_scatter_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                      struct comm_req *req) {
    struct nccl_impl *m = impl(c);
    size_t n = elems(c, count, "reduce-scatter");
    int slot = coll_take(c, req, "reduce-scatter");
    NCCL_CHECK(ncclReduceScatter(send, recv, n, dtype_map(dtype), ncclSum, m->nc, m->stream));
    CUDA_CHECK(cudaEventRecord(m->started[slot], m->stream));
}

static void nccl_all_gather_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                  struct comm_req *req) {
    struct nccl_impl *m = impl(c);
    size_t n = elems(c, count, "all-gather");
    int slot = coll_take(c, req, "all-gather");
    NCCL_CHECK(ncclAllGather(send, recv, n, dtype_map(dtype), m->nc, m->stream));
    CUDA_CHECK(cudaEventRecord(m->started[slot], m->stream));
}

static void nccl_coll_wait(struct comm *c, struct comm_req *req, const char *what) {
    struct nccl_impl *m = impl(c);
    if (!req->active) RT_FATAL("comm %s: collective wait without a collective (%s)", c->name, what);
    int slot = (int)(intptr_t)req->impl[0];
    wait_event(c, m->started[slot], (const char *)req->impl[1], what, 0);
    CUDA_CHECK(cudaStreamWaitEvent(m->compute, m->started[slot], 0));
    m->coll_busy[slot] = 0;
    req->impl[0] = req->impl[1] = NULL;
    req->active = 0;
}

static void nccl_reduce_scatter(struct comm *c, const void *send, void *recv, int64_t count, int dtype) {
    struct comm_req req = {0};
    nccl_reduce_scatter_start(c, send, recv, count, dtype, &req);
    nccl_coll_wait(c, &req, "");
}

static void nccl_all_gather(struct comm *c, const void *send, void *recv, int64_t count, int dtype) {
    struct comm_req req = {0};
    nccl_all_gather_start(c, send, recv, count, dtype, &req);
    nccl_coll_wait(c, &req, "");
}

static void nccl_broadcast(struct comm *c, void *buf, int64_t count, int dtype, int root) {
    struct nccl_impl *m = impl(c);
    size_t n = elems(c, count, "broadcast");
    if (root < 0 || root >= c->size) RT_FATAL("comm %s: broadcast from rank %d of %d", c->name, root, c->size);
    after_compute(m);
    NCCL_CHECK(ncclBroadcast(buf, buf, n, dtype_map(dtype), root, m->nc, m->stream));
    compute_waits(m);
    wait_event(c, m->coll_done, "broadcast", "", 0);
}

/* Every rank has queued all its work up to here and joined the all-reduce; waited on the
 * host (with the timeout), so it also waits for this rank's queued compute. */
static void nccl_barrier(struct comm *c) {
    struct nccl_impl *m = impl(c);
    after_compute(m);
    NCCL_CHECK(ncclAllReduce(m->flag, m->flag, 1, ncclInt32, ncclSum, m->nc, m->stream));
    compute_waits(m);
    wait_event(c, m->coll_done, "barrier", "", 0);
}

static void nccl_free(struct comm *c) {
    struct nccl_impl *m = impl(c);
    CUDA_CHECK(cudaStreamSynchronize(m->stream));
    NCCL_CHECK(ncclCommDestroy(m->nc));
    for (int i = 0; i < RING_SLOTS; i++) CUDA_CHECK(cudaEventDestroy(m->ring_done[i]));
    for (int i = 0; i < COLL_SLOTS; i++) CUDA_CHECK(cudaEventDestroy(m->started[i]));
    CUDA_CHECK(cudaEventDestroy(m->ready));
    CUDA_CHECK(cudaEventDestroy(m->coll_done));
    CUDA_CHECK(cudaStreamDestroy(m->stream));
    CUDA_CHECK(cudaFree(m->flag));
    free(m);
    free(c->members);
    c->impl = NULL;
    c->members = NULL;
}

static const struct comm_ops nccl_ops = {
    .ring_start = nccl_ring_start,
    .ring_wait = nccl_ring_wait,
    .all_reduce = nccl_all_reduce,
    .reduce_scatter = nccl_reduce_scatter,
    .all_gather = nccl_all_gather,
    .reduce_scatter_start = nccl_reduce_scatter_start,
    .all_gather_start = nccl_all_gather_start,
    .coll_wait = nccl_coll_wait,
    .broadcast = nccl_broadcast,
    .barrier = nccl_barrier,
    .free = nccl_free,
};

/* NCCL connects peers lazily, on their first operation: do one ring exchange and one
 * barrier now, so the connection set-up is not charged to (or stuck inside) the first
 * training step, and a broken peer shows up at start-up. */
static void warm_up(struct comm *c) {
    struct nccl_impl *m = impl(c);
    struct comm_ring_req req = {0};
    comm_ring_start(c, m->flag, m->flag + 1, 1, COMM_I32, &req);
    comm_ring_wait(c, &req, "warm-up exchange");
    comm_barrier(c);
}

void comm_nccl_init(struct comm *c, MPI_Comm parent, const char *name, double timeout_s,
                    cudaStream_t compute) {
    memset(c, 0, sizeof *c);
    MPI_CHECK(MPI_Comm_rank(parent, &c->rank));
    MPI_CHECK(MPI_Comm_size(parent, &c->size));
    c->ops = &nccl_ops;
    c->timeout_s = timeout_s;
    c->members = waits_members(parent, c->size);
    snprintf(c->name, sizeof c->name, "%s", name);

    struct nccl_impl *m = rt_calloc(1, sizeof *m, "NCCL communicator");
    c->impl = m;
    m->compute = compute;
    CUDA_CHECK(cudaGetDevice(&m->device));
    ncclUniqueId id;
    if (c->rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    MPI_CHECK(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, parent));
    NCCL_CHECK(ncclCommInitRank(&m->nc, c->size, id, c->rank));

    CUDA_CHECK(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&m->ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&m->coll_done, cudaEventDisableTiming));
    for (int i = 0; i < RING_SLOTS; i++) CUDA_CHECK(cudaEventCreateWithFlags(&m->ring_done[i], cudaEventDisableTiming));
    for (int i = 0; i < COLL_SLOTS; i++) CUDA_CHECK(cudaEventCreateWithFlags(&m->started[i], cudaEventDisableTiming));
    CUDA_CHECK(cudaMalloc((void **)&m->flag, 2 * sizeof *m->flag));
    CUDA_CHECK(cudaMemsetAsync(m->flag, 0, 2 * sizeof *m->flag, m->stream));
    warm_up(c);
}

#else
typedef int comm_nccl_needs_cuda; /* CPU-only build: nothing here (ISO C wants a declaration) */
#endif /* RT_HAVE_CUDA */
