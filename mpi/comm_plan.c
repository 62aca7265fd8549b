/* comm_plan: a planned rank's stand-in communicator (see comm_plan.h). */
#include "comm_plan.h"

#include <stdio.h>
#include <stdlib.h>

#include "runtime.h"

static _Noreturn void no_data(struct comm *c, const char *op) {
    RT_FATAL("comm %s: %s on a planned rank's stand-in communicator (a plan moves no data)", c->name, op);
}
static void plan_ring_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                            struct comm_ring_req *req) {
    (void)send, (void)recv, (void)count, (void)dtype, (void)req;
    no_data(c, "ring exchange");
}
static void plan_ring_wait(struct comm *c, struct comm_ring_req *req, const char *what) {
    (void)req, (void)what;
    no_data(c, "ring wait");
}
static void plan_all_reduce(struct comm *c, const void *send, void *recv, int64_t count, int dtype, int op) {
    (void)send, (void)recv, (void)count, (void)dtype, (void)op;
    no_data(c, "all-reduce");
}
static void plan_reduce_scatter(struct comm *c, const void *send, void *recv, int64_t count, int dtype) {
    (void)send, (void)recv, (void)count, (void)dtype;
    no_data(c, "reduce-scatter");
}
static void plan_all_gather(struct comm *c, const void *send, void *recv, int64_t count, int dtype) {
    (void)send, (void)recv, (void)count, (void)dtype;
    no_data(c, "all-gather");
}
static void plan_reduce_scatter_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                      struct comm_req *req) {
    (void)send, (void)recv, (void)count, (void)dtype, (void)req;
    no_data(c, "reduce-scatter");
}
static void plan_all_gather_start(struct comm *c, const void *send, void *recv, int64_t count, int dtype,
                                  struct comm_req *req) {
    (void)send, (void)recv, (void)count, (void)dtype, (void)req;
    no_data(c, "all-gather");
}
static void plan_coll_wait(struct comm *c, struct comm_req *req, const char *what) {
    (void)req, (void)what;
    no_data(c, "collective wait");
}
static void plan_broadcast(struct comm *c, void *buf, int64_t count, int dtype, int root) {
    (void)buf, (void)count, (void)dtype, (void)root;
    no_data(c, "broadcast");
}
static void plan_barrier(struct comm *c) { (void)c; }
static void plan_free(struct comm *c) {
    free(c->members);
    c->members = NULL;
}

static const struct comm_ops plan_ops = {
    .ring_start = plan_ring_start,
    .ring_wait = plan_ring_wait,
    .all_reduce = plan_all_reduce,
    .reduce_scatter = plan_reduce_scatter,
    .all_gather = plan_all_gather,
    .reduce_scatter_start = plan_reduce_scatter_start,
    .all_gather_start = plan_all_gather_start,
    .coll_wait = plan_coll_wait,
    .broadcast = plan_broadcast,
    .barrier = plan_barrier,
    .free = plan_free,
};

void comm_plan_init(struct comm *c, const struct group *gr, const char *name) {
    *c = (struct comm){.ops = &plan_ops, .rank = gr->index, .size = gr->size};
    c->members = rt_malloc((size_t)gr->size * sizeof *c->members, "plan communicator members");
    for (int k = 0; k < gr->size; k++) c->members[k] = groups_member(gr, k);
    snprintf(c->name, sizeof c->name, "%s", name);
}
