/* comm_strict: the started collectives run at their wait, buffers poisoned and checked in
 * between (see comm_strict.h). Owns the wrapped communicator and, per started collective,
 * a record with the copy of its send buffer. */
#include "comm_strict.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define POISON 0xff

struct strict {
    struct comm inner;
    struct comm_strict_stats st;
    int in_flight;
};

/* One started collective, until its wait. */
struct started {
    int         gather; /* 0: reduce-scatter, 1: all-gather */
    const void *send;
    void       *recv;
    int64_t     count;
    int         dtype;
    size_t      in_bytes, out_bytes;
    unsigned char *kept; /* (in_bytes) send as it was at the start */
};

static struct strict *impl(const struct comm *c) { return c->impl; }

static void start(struct comm *c, int gather, const void *send, void *recv, int64_t count, int dtype,
                  struct comm_req *req) {
    struct strict *s = impl(c);
    if (req->active) RT_FATAL("comm %s (strict): a collective started on a request in flight", c->name);
    size_t block = (size_t)count * comm_dtype_size(dtype), all = block * (size_t)c->size;
    struct started *q = rt_calloc(1, sizeof *q, "strict collective");
    *q = (struct started){gather, send, recv, count, dtype, gather ? block : all, gather ? all : block, NULL};
    q->kept = rt_malloc(q->in_bytes ? q->in_bytes : 1, "strict collective");
    memcpy(q->kept, send, q->in_bytes);
    memset(recv, POISON, q->out_bytes);
    req->impl[0] = q;
    req->active = 1;
    s->st.started++;
    if (++s->in_flight > s->st.most_in_flight) s->st.most_in_flight = s->in_flight;
}

static void strict_reduce_scatter_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                        struct comm_req *req) {
    start(c, 0, send, recv, count, dtype, req);
}

static void strict_all_gather_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                    struct comm_req *req) {
    start(c, 1, send, recv, count, dtype, req);
}

/* Bytes of the started collective's buffers that changed since its start. */
static size_t changed(const struct started *q) {
    const unsigned char *out = q->recv, *in = q->send;
    uintptr_t lo = (uintptr_t)out, hi = lo + q->out_bytes;
    size_t n = 0;
    for (size_t i = 0; i < q->out_bytes; i++) n += out[i] != POISON;
    for (size_t i = 0; i < q->in_bytes; i++) {
        uintptr_t at = (uintptr_t)in + i;
        n += (at < lo || at >= hi) && in[i] != q->kept[i];
    }
    return n;
}

static void strict_coll_wait(struct comm *c, struct comm_req *req, const char *what) {
    struct strict *s = impl(c);
    if (!req->active) RT_FATAL("comm %s (strict): collective wait without a collective (%s)", c->name, what);
    struct started *q = req->impl[0];
    size_t n = changed(q);
    if (n) {
        s->st.violations++;
        fprintf(stderr, "comm %s (strict): %s %s: %zu bytes of its buffers written while in flight\n", c->name,
                q->gather ? "all-gather" : "reduce-scatter", what, n);
    }
    memcpy((void *)q->send, q->kept, q->in_bytes);
    if (q->gather) comm_all_gather(&s->inner, q->send, q->recv, q->count, q->dtype);
    else comm_reduce_scatter(&s->inner, q->send, q->recv, q->count, q->dtype);
    free(q->kept);
    free(q);
    req->impl[0] = NULL;
    req->active = 0;
    s->in_flight--;
}

static void strict_ring_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                              struct comm_ring_req *req) {
    comm_ring_start(&impl(c)->inner, send, recv, count, dtype, req);
}
static void strict_ring_wait(struct comm *c, struct comm_ring_req *req, const char *what) {
    comm_ring_wait(&impl(c)->inner, req, what);
}
static void strict_all_reduce(struct comm *c, const void *send, void *recv, int64_t count, int dtype, int op) {
    comm_all_reduce(&impl(c)->inner, send, recv, count, dtype, op);
}
static void strict_reduce_scatter(struct comm *c, const void *send, void *recv, int64_t count, int dtype) {
    comm_reduce_scatter(&impl(c)->inner, send, recv, count, dtype);
}
static void strict_all_gather(struct comm *c, const void *send, void *recv, int64_t count, int dtype) {
    comm_all_gather(&impl(c)->inner, send, recv, count, dtype);
}
static void strict_broadcast(struct comm *c, void *buf, int64_t count, int dtype, int root) {
    comm_broadcast(&impl(c)->inner, buf, count, dtype, root);
}
static void strict_barrier(struct comm *c) { comm_barrier(&impl(c)->inner); }

static void strict_free(struct comm *c) {
    struct strict *s = impl(c);
    if (s->in_flight) RT_FATAL("comm %s (strict): freed with %d collectives in flight", c->name, s->in_flight);
    comm_free(&s->inner);
    free(s);
    c->impl = NULL;
    c->members = NULL;
}

static const struct comm_ops strict_ops = {
    .ring_start = strict_ring_start,
    .ring_wait = strict_ring_wait,
    .all_reduce = strict_all_reduce,
    .reduce_scatter = strict_reduce_scatter,
    .all_gather = strict_all_gather,
    .reduce_scatter_start = strict_reduce_scatter_start,
    .all_gather_start = strict_all_gather_start,
    .coll_wait = strict_coll_wait,
    .broadcast = strict_broadcast,
    .barrier = strict_barrier,
    .free = strict_free,
};

void comm_strict_wrap(struct comm *c) {
    struct strict *s = rt_calloc(1, sizeof *s, "strict communicator");
    s->inner = *c;
    c->ops = &strict_ops;
    c->impl = s;
}

const struct comm_strict_stats *comm_strict_stats(const struct comm *c) {
    if (c->ops != &strict_ops) RT_FATAL("comm %s: not a strict communicator", c->name);
    return &impl(c)->st;
}
