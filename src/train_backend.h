/* train_backend: a trainer's backend (device.backend) and its transports (the world and cp
 * communicators, parallel.transport), opened for a run, or as a memory plan. Used by train.c
 * only; shape letters as in train.h. */
#ifndef RT_TRAIN_BACKEND_H
#define RT_TRAIN_BACKEND_H

#include "mem_plan.h"
#include "train.h"

/* The backend and the transport that suits it, in t->world and t->cp: MPI on host buffers
 * for the CPU; for CUDA, NCCL when every rank of the host has a GPU of its own (or when
 * parallel.transport says so), else MPI staged through pinned host memory (its buffers
 * outside the arena). The backend allocates nothing until train_backend_attach. Sets t->cuda
 * or t->cpu and t->gpu_sharing. Collective. */
const struct backend *train_backend_open(struct trainer *t, const struct runtime *rt);
/* What a run's plan is made against, the backend open (mem_plan_init's gpu_gib, measured and
 * backend_made when > 0, and ranks_per_gpu): on cuda the memory the GPU has free once every
 * rank of the host has made its backend and transports (collective), shared by
 * t->gpu_sharing ranks; on the cpu backend no GPU (0). */
void train_backend_budget(struct trainer *t, double *gpu_gib, int *ranks_per_gpu);
/* The backend serves t->arena from now on (laid out: arena_backend.h); on cuda its scratch
 * buffers are the arena's first. */
void train_backend_attach(struct trainer *t);
/* The same as a memory plan: the plan backend of p stands in for the backend, which records
 * its own buffers (and the staged transport its pinned ones) into p; t->world and t->cp are
 * MPI on host buffers whatever the backend (only barriers run on them), or stand-ins
 * (comm_plan.h) for a planned rank (rt->world_comm MPI_COMM_NULL); p->ranks_per_gpu stands
 * for the GPUs of the host. No CUDA call. Collective unless a planned rank. */
const struct backend *train_backend_plan(struct trainer *t, const struct runtime *rt, struct mem_plan *p);
/* The transports, then the backend (either kind of opening). */
void train_backend_close(struct trainer *t);

#endif
