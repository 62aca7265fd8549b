/* comm: the transport interface the trainer moves data through. One communicator is a
 * group of ranks (the world, a context-parallel ring, a data-parallel group) with a table
 * of operations; the MPI implementation (comm_mpi.c) works on host buffers, NCCL
 * (comm_nccl.c) and MPI staged through pinned memory (comm_staged.c) on device buffers.
 * Counts are in elements; the mapping of comm_dtype to the transport's types lives in one
 * place per implementation.
 *
 * Reduce-scatter and all-gather also come in a started form (the parameter store's
 * per-unit collectives, overlapped with the layers): *_start queues the operation after
 * the caller's work so far and returns; coll_wait makes the caller's later work see its
 * result. Until then neither buffer may be read or written by the caller (send may be
 * read). A transport may finish the operation inside *_start (staged MPI does) or only
 * inside coll_wait. */
#ifndef RT_COMM_H
#define RT_COMM_H

#include <stddef.h>
#include <stdint.h>

/* COMM_BF16: 2-byte bfloat16; MPI moves it as raw 16-bit words and cannot reduce it (NCCL can). */
enum comm_dtype { COMM_F32, COMM_F64, COMM_I32, COMM_I64, COMM_U8, COMM_BF16, COMM_NDTYPES };
enum comm_op { COMM_SUM, COMM_MAX };

size_t comm_dtype_size(int dtype);

/* A ring exchange in flight: send to rank+1, receive from rank-1. */
struct comm_ring_req {
    void *impl[4]; /* transport-owned handles */
    int   active;
};

/* A started collective. */
struct comm_req {
    void *impl[4]; /* transport-owned handles */
    int   active;
};

struct comm;
struct comm_ops {
    /* Post a non-blocking ring exchange; send and recv must not overlap. */
    void (*ring_start)(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                       struct comm_ring_req *req);
    /* Wait for it; after timeout_s seconds abort naming the peers, `what` and the ranks that
     * stopped answering (waits.h). Every other operation waits the same way. */
    void (*ring_wait)(struct comm *c, struct comm_ring_req *req, const char *what);
    /* In place when send == recv. */
    void (*all_reduce)(struct comm *c, const void *send, void *recv, int64_t count, int dtype, int op);
    /* send holds size * count elements; rank i receives the sum of block i (count elements).
     * In place when recv == send + rank * count (every rank); the other blocks of send are
     * then left undefined. */
    void (*reduce_scatter)(struct comm *c, const void *send, void *recv, int64_t count, int dtype);
    /* every rank contributes count elements; recv holds size * count in rank order. In place
     * when send == recv + rank * count (every rank). */
    void (*all_gather)(struct comm *c, const void *send, void *recv, int64_t count, int dtype);
    /* The same two, started (see above); req must not be active. */
    void (*reduce_scatter_start)(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                 struct comm_req *req);
    void (*all_gather_start)(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                             struct comm_req *req);
    /* Wait for a started collective (bounded and abortable as every wait; `what` names it in
     * a message): on host buffers it is complete on return; on device buffers the work the
     * caller queues on its compute stream from now on runs after it. Then req is inactive. */
    void (*coll_wait)(struct comm *c, struct comm_req *req, const char *what);
    void (*broadcast)(struct comm *c, void *buf, int64_t count, int dtype, int root);
    void (*barrier)(struct comm *c);
    void (*free)(struct comm *c);
};

struct comm {
    const struct comm_ops *ops;
    int    rank, size;
    double timeout_s;   /* longest wait of any operation (parallel.timeout_s) */
    char   name[16];    /* "world", "cp", "dp": for messages */
    int   *members;     /* (size) world rank of each rank: for messages and roll calls */
    void  *impl;
};

/* Convenience wrappers. */
static inline void comm_ring_start(struct comm *c, const void *send, void *recv, int64_t count,
                                   int dtype, struct comm_ring_req *req) {
    c->ops->ring_start(c, send, recv, count, dtype, req);
}
static inline void comm_ring_wait(struct comm *c, struct comm_ring_req *req, const char *what) {
    c->ops->ring_wait(c, req, what);
}
static inline void comm_all_reduce(struct comm *c, const void *send, void *recv, int64_t count,
                                   int dtype, int op) {
    c->ops->all_reduce(c, send, recv, count, dtype, op);
}
static inline void comm_reduce_scatter(struct comm *c, const void *send, void *recv, int64_t count,
                                       int dtype) {
    c->ops->reduce_scatter(c, send, recv, count, dtype);
}
static inline void comm_all_gather(struct comm *c, const void *send, void *recv, int64_t count,
                                   int dtype) {
    c->ops->all_gather(c, send, recv, count, dtype);
}
static inline void comm_reduce_scatter_start(struct comm *c, const void *send, void *recv, int64_t count,
                                             int dtype, struct comm_req *req) {
    c->ops->reduce_scatter_start(c, send, recv, count, dtype, req);
}
static inline void comm_all_gather_start(struct comm *c, const void *send, void *recv, int64_t count,
                                         int dtype, struct comm_req *req) {
    c->ops->all_gather_start(c, send, recv, count, dtype, req);
}
static inline void comm_coll_wait(struct comm *c, struct comm_req *req, const char *what) {
    c->ops->coll_wait(c, req, what);
}
static inline void comm_broadcast(struct comm *c, void *buf, int64_t count, int dtype, int root) {
    c->ops->broadcast(c, buf, count, dtype, root);
}
static inline void comm_barrier(struct comm *c) { c->ops->barrier(c); }
static inline void comm_free(struct comm *c) { c->ops->free(c); }

#endif
