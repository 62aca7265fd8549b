/* comm_mpi: struct comm over MPI on host buffers. Counts above INT_MAX are sent in
 * pieces; every operation is a non-blocking MPI call whose requests are polled with the
 * communicator's timeout (waits.c), which aborts the job naming the ranks that stopped
 * answering. A started reduce-scatter or all-gather keeps its request until coll_wait. */
#include "comm_mpi.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "waits.h"

#define PIECE ((int64_t)1 << 30) /* elements per MPI call */

static MPI_Datatype dtype_map(int dtype) {
    switch (dtype) {
    case COMM_F32: return MPI_FLOAT;
    case COMM_F64: return MPI_DOUBLE;
    case COMM_I32: return MPI_INT32_T;
    case COMM_I64: return MPI_INT64_T;
    case COMM_U8: return MPI_UINT8_T;
    case COMM_BF16: return MPI_UINT16_T; /* moved, never reduced (no_bf16_reduce) */
    default: RT_FATAL("comm: unknown dtype %d", dtype);
    }
}

size_t comm_dtype_size(int dtype) {
    static const size_t sizes[COMM_NDTYPES] = {4, 8, 4, 8, 1, 2};
    if (dtype < 0 || dtype >= COMM_NDTYPES) RT_FATAL("comm: unknown dtype %d", dtype);
    return sizes[dtype];
}

/* MPI has no bfloat16 type: summing its bits as integers would be silently wrong. */
static void no_bf16_reduce(struct comm *c, int dtype, const char *op) {
    if (dtype == COMM_BF16) RT_FATAL("comm %s: %s of bf16 is not supported by the MPI transport", c->name, op);
}

static MPI_Comm mcomm(struct comm *c) { return *(MPI_Comm *)c->impl; }

struct reqs {
    MPI_Request *r;
    int          n;
};

static int reqs_done(void *arg) {
    struct reqs *q = arg;
    int done = 0;
    MPI_CHECK(MPI_Testall(q->n, q->r, &done, MPI_STATUSES_IGNORE));
    return done;
}

/* Wait for n requests of an operation of c (`kind`, `what` for the message; peers: the
 * ring's neighbours, or NULL). */
static void wait_reqs(struct comm *c, MPI_Request *r, int n, const char *kind, const char *what, const char *peers) {
    struct reqs q = {r, n};
    char why[1024];
    int rc = waits_poll(reqs_done, &q, c->timeout_s, c->members, c->size, why, sizeof why);
    if (rc != WAITS_DONE)
        RT_ABORT(rc == WAITS_INTERRUPTED ? 130 : 1, "comm %s: %s%s%s%s %s", c->name, kind, *what ? " " : "", what,
                 peers ? peers : "", why);
}

static void wait1(struct comm *c, MPI_Request *r, const char *kind) { wait_reqs(c, r, 1, kind, "", NULL); }

static void mpi_ring_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                           struct comm_ring_req *req) {
    if (count > INT_MAX) RT_FATAL("comm %s: ring exchange of %lld elements exceeds one MPI message", c->name, (long long)count);
    MPI_Request *r = rt_malloc(2 * sizeof *r, "ring requests");
    int next = (c->rank + 1) % c->size, prev = (c->rank - 1 + c->size) % c->size;
    MPI_CHECK(MPI_Irecv(recv, (int)count, dtype_map(dtype), prev, 7, mcomm(c), &r[0]));
    MPI_CHECK(MPI_Isend(send, (int)count, dtype_map(dtype), next, 7, mcomm(c), &r[1]));
    req->impl[0] = r;
    req->active = 1;
}

static void mpi_ring_wait(struct comm *c, struct comm_ring_req *req, const char *what) {
    if (!req->active) RT_FATAL("comm %s: ring wait without a ring exchange (%s)", c->name, what);
    MPI_Request *r = req->impl[0];
    char peers[96];
    snprintf(peers, sizeof peers, " (receiving from rank %d, sending to rank %d)",
             c->members[(c->rank - 1 + c->size) % c->size], c->members[(c->rank + 1) % c->size]);
    wait_reqs(c, r, 2, "ring exchange", what, peers);
    free(r);
    req->impl[0] = NULL;
    req->active = 0;
}

static void mpi_all_reduce(struct comm *c, const void *send, void *recv, int64_t count, int dtype, int op) {
    no_bf16_reduce(c, dtype, "all-reduce");
    size_t es = comm_dtype_size(dtype);
    MPI_Op mop = op == COMM_MAX ? MPI_MAX : MPI_SUM;
    for (int64_t off = 0; off < count; off += PIECE) {
        int n = (int)(count - off < PIECE ? count - off : PIECE);
        void *rb = (char *)recv + off * es;
        const void *sb = send == recv ? MPI_IN_PLACE : (const char *)send + off * es;
        MPI_Request r;
        MPI_CHECK(MPI_Iallreduce(sb, rb, n, dtype_map(dtype), mop, mcomm(c), &r));
        wait1(c, &r, "all-reduce");
    }
}

/* A started reduce-scatter or all-gather: its request, and the move that finishes an in-place
 * reduce-scatter on a rank > 0 (MPI leaves the sum at the start of the buffer). */
struct coll {
    MPI_Request r;
    const char *kind;
    void       *move_to;
    const void *move_from;
    size_t      move_bytes;
};

static struct coll *coll_new(struct comm *c, struct comm_req *req, const char *kind, int64_t count) {
    if (req->active) RT_FATAL("comm %s: %s started on a request still in flight", c->name, kind);
    if (count > INT_MAX) RT_FATAL("comm %s: %s block of %lld elements exceeds one MPI call", c->name, kind, (long long)count);
    struct coll *q = rt_calloc(1, sizeof *q, "collective request");
    q->kind = kind;
    req->impl[0] = q;
    req->active = 1;
    return q;
}

static void mpi_coll_wait(struct comm *c, struct comm_req *req, const char *what) {
    if (!req->active) RT_FATAL("comm %s: collective wait without a collective (%s)", c->name, what);
    struct coll *q = req->impl[0];
    wait_reqs(c, &q->r, 1, q->kind, what, NULL);
    if (q->move_bytes) memmove(q->move_to, q->move_from, q->move_bytes);
    free(q);
    req->impl[0] = NULL;
    req->active = 0;
}

/* In place when recv == send + rank * count: the sum is moved to the rank's block at the
 * wait (block 0 of a rank > 0 becomes undefined). */
static void mpi_reduce_scatter_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                     struct comm_req *req) {
    no_bf16_reduce(c, dtype, "reduce-scatter");
    struct coll *q = coll_new(c, req, "reduce-scatter", count);
    size_t block = (size_t)count * comm_dtype_size(dtype);
    if ((const char *)recv == (const char *)send + (size_t)c->rank * block) {
        MPI_CHECK(MPI_Ireduce_scatter_block(MPI_IN_PLACE, (void *)send, (int)count, dtype_map(dtype), MPI_SUM,
                                            mcomm(c), &q->r));
        if (c->rank) q->move_to = recv, q->move_from = send, q->move_bytes = block;
        return;
    }
    MPI_CHECK(MPI_Ireduce_scatter_block(send, recv, (int)count, dtype_map(dtype), MPI_SUM, mcomm(c), &q->r));
}

/* In place when send == recv + rank * count. */
static void mpi_all_gather_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                 struct comm_req *req) {
    struct coll *q = coll_new(c, req, "all-gather", count);
    int in_place = (const char *)send == (char *)recv + (size_t)c->rank * (size_t)count * comm_dtype_size(dtype);
    MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : send, (int)count, dtype_map(dtype), recv, (int)count,
                             dtype_map(dtype), mcomm(c), &q->r));
}

static void mpi_reduce_scatter(struct comm *c, const void *send, void *recv, int64_t count, int dtype) {
    struct comm_req req = {0};
    mpi_reduce_scatter_start(c, send, recv, count, dtype, &req);
    mpi_coll_wait(c, &req, "");
}

static void mpi_all_gather(struct comm *c, const void *send, void *recv, int64_t count, int dtype) {
    struct comm_req req = {0};
    mpi_all_gather_start(c, send, recv, count, dtype, &req);
    mpi_coll_wait(c, &req, "");
}

static void mpi_broadcast(struct comm *c, void *buf, int64_t count, int dtype, int root) {
    size_t es = comm_dtype_size(dtype);
    for (int64_t off = 0; off < count; off += PIECE) {
        int n = (int)(count - off < PIECE ? count - off : PIECE);
        MPI_Request r;
        MPI_CHECK(MPI_Ibcast((char *)buf + off * es, n, dtype_map(dtype), root, mcomm(c), &r));
        wait1(c, &r, "broadcast");
    }
}

static void mpi_barrier(struct comm *c) {
    MPI_Request r;
    MPI_CHECK(MPI_Ibarrier(mcomm(c), &r));
    wait1(c, &r, "barrier");
}

static void mpi_free(struct comm *c) {
    MPI_Comm *m = c->impl;
    MPI_CHECK(MPI_Comm_free(m));
    free(m);
    free(c->members);
    c->impl = NULL;
    c->members = NULL;
}

static const struct comm_ops mpi_ops = {
    .ring_start = mpi_ring_start,
    .ring_wait = mpi_ring_wait,
    .all_reduce = mpi_all_reduce,
    .reduce_scatter = mpi_reduce_scatter,
    .all_gather = mpi_all_gather,
    .reduce_scatter_start = mpi_reduce_scatter_start,
    .all_gather_start = mpi_all_gather_start,
    .coll_wait = mpi_coll_wait,
    .broadcast = mpi_broadcast,
    .barrier = mpi_barrier,
    .free = mpi_free,
};

static void wrap(struct comm *c, MPI_Comm *m, const char *name, double timeout_s) {
    memset(c, 0, sizeof *c);
    MPI_CHECK(MPI_Comm_set_errhandler(*m, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(*m, &c->rank));
    MPI_CHECK(MPI_Comm_size(*m, &c->size));
    c->ops = &mpi_ops;
    c->impl = m;
    c->timeout_s = timeout_s;
    c->members = waits_members(*m, c->size);
    snprintf(c->name, sizeof c->name, "%s", name);
}

void comm_mpi_init(struct comm *c, MPI_Comm parent, const char *name, double timeout_s) {
    MPI_Comm *m = rt_malloc(sizeof *m, "communicator");
    MPI_CHECK(MPI_Comm_dup(parent, m));
    wrap(c, m, name, timeout_s);
}

/* Gather and scatter (below) take host buffers over MPI: refuse another transport. */
static void mpi_only(struct comm *c, const char *op) {
    if (c->ops != &mpi_ops) RT_FATAL("comm %s: %s needs the MPI transport (host buffers)", c->name, op);
}

/* An MPI type of n elements of dtype whose extent is `stride` elements: block r of a gather
 * or scatter of it lands at r * stride elements. */
static MPI_Datatype strided_block(int n, int64_t stride, int dtype) {
    MPI_Datatype contig, t;
    MPI_CHECK(MPI_Type_contiguous(n, dtype_map(dtype), &contig));
    MPI_CHECK(MPI_Type_create_resized(contig, 0, (MPI_Aint)((size_t)stride * comm_dtype_size(dtype)), &t));
    MPI_CHECK(MPI_Type_commit(&t));
    MPI_CHECK(MPI_Type_free(&contig));
    return t;
}

/* Gather and scatter move blocks of any size in pieces of at most PIECE elements: piece k of
 * every block travels in one MPI call whose root-side type has the block's stride. */
void comm_mpi_gather(struct comm *c, const void *send, void *recv, int64_t count, int dtype, int root) {
    mpi_only(c, "gather");
    size_t es = comm_dtype_size(dtype);
    int is_root = c->rank == root;
    int in_place = is_root && (const char *)send == (char *)recv + (size_t)root * (size_t)count * es;
    for (int64_t off = 0; off < count; off += PIECE) {
        int n = (int)(count - off < PIECE ? count - off : PIECE);
        MPI_Datatype blk = strided_block(n, count, dtype);
        const void *sb = in_place ? MPI_IN_PLACE : (const char *)send + (size_t)off * es;
        void *rb = is_root ? (char *)recv + (size_t)off * es : NULL;
        MPI_Request r;
        MPI_CHECK(MPI_Igather(sb, n, dtype_map(dtype), rb, 1, blk, root, mcomm(c), &r));
        wait1(c, &r, "gather");
        MPI_CHECK(MPI_Type_free(&blk));
    }
}

void comm_mpi_scatter(struct comm *c, const void *send, void *recv, int64_t count, int dtype, int root) {
    mpi_only(c, "scatter");
    size_t es = comm_dtype_size(dtype);
    int is_root = c->rank == root;
    int in_place = is_root && (const char *)recv == (const char *)send + (size_t)root * (size_t)count * es;
    for (int64_t off = 0; off < count; off += PIECE) {
        int n = (int)(count - off < PIECE ? count - off : PIECE);
        MPI_Datatype blk = strided_block(n, count, dtype);
        const void *sb = is_root ? (const char *)send + (size_t)off * es : NULL;
        void *rb = in_place ? MPI_IN_PLACE : (char *)recv + (size_t)off * es;
        MPI_Request r;
        MPI_CHECK(MPI_Iscatter(sb, 1, blk, rb, n, dtype_map(dtype), root, mcomm(c), &r));
        wait1(c, &r, "scatter");
        MPI_CHECK(MPI_Type_free(&blk));
    }
}
