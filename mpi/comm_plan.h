/* comm_plan: the stand-in communicator of a planned rank (run_plan.c: --plan --ranks N plans
 * every rank of an N-rank job in one process). It has the size, rank and members of the group
 * it stands for, so everything sized by a communicator (ZeRO parts, the ring) is planned as in
 * the job, but it reaches no other process: a barrier returns at once (a plan's only
 * collective: memory.offload auto's, whose measure is the plan's own bytes) and any data
 * operation is a fatal error, since a plan moves no data. */
#ifndef RT_COMM_PLAN_H
#define RT_COMM_PLAN_H

#include "comm.h"
#include "groups.h"

void comm_plan_init(struct comm *c, const struct group *gr, const char *name);

#endif
