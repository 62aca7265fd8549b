/* mem_plan: the memory plan of one rank -- every buffer its trainer allocates at start-up,
 * grouped by name and size, in device memory (the backend's memory: host RAM on the cpu
 * backend), in pinned host memory, or in plain host memory.
 * A plan is filled by running the trainer's own allocation sequence (train.h: trainer_plan)
 * against the plan backend: a struct backend whose alloc and host_alloc record the buffer
 * and return a distinct fake address that is never dereferenced, whose other memory ops do
 * nothing, and whose mem_free answers from the recorded bytes, so memory.offload: auto
 * decides as it would on the GPU. The device backend and the transports add the buffers
 * they allocate themselves (mem_plan_add); sizes that are estimates rather than computed
 * (the CUDA context and libraries, cuDNN's own workspace) are marked as allowances.
 * The allocations through the plan backend are also recorded in order, with their frees, as
 * an arena (arena.h); mem_plan_pack lays it out at the end of the start-up, and a run hands
 * out its buffers from the layout (train.c). Buffers others allocate (mem_plan_add: the
 * libraries' workspaces, the staged transport's buffers) lie outside the arena, and the
 * table says so; a total is the arena's block + those + the allowances.
 * Used by --plan, by a CUDA run's check before it allocates (run_plan.c) and by every run's
 * start-up (train.c). */
#ifndef RT_MEM_PLAN_H
#define RT_MEM_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "backend.h"

/* MEM_HOST: pinned host memory (the backend's host_alloc); MEM_PLAIN: plain host memory the
 * trainer allocates itself (malloc) that is large enough to count. */
enum mem_where { MEM_DEVICE, MEM_HOST, MEM_PLAIN, MEM_NWHERE };

/* Buffers of one name, place and size. */
struct mem_group {
    char    what[96];
    int     where;     /* enum mem_where */
    int     allowance; /* 1: an estimate of what others allocate, not a buffer of ours */
    int     in_arena;  /* 1: allocated through the plan backend (the arena's); 0: outside it */
    size_t  bytes;     /* each */
    int64_t count;
};

struct mem_plan {
    struct backend    be;            /* the plan backend; be.ctx is this plan */
    struct mem_group *groups;        /* in the order of their first allocation */
    int               n, cap;
    size_t            total[MEM_NWHERE];     /* bytes by enum mem_where, allowances included */
    size_t            allowance[MEM_NWHERE]; /* the allowances among them */
    size_t            outside[MEM_NWHERE];   /* the buffers outside the arena among them */
    struct arena      arena;         /* the plan backend's allocations and frees, in order */
    size_t            shared[MEM_NWHERE]; /* mem_plan_pack: bytes the arena saves by lifetimes
                                        (taken off total) */
    double            gpu_gib;       /* memory of one GPU the job must fit in; 0: unknown */
    int               measured;      /* 1: gpu_gib is what was free with the CUDA context made:
                                        the allowances are not held against it */
    int               backend_made;  /* 1 (with measured): and with the backend and the transports
                                        made: nor are the buffers outside the arena (a run's plan) */
    int               ranks_per_gpu; /* ranks sharing one GPU (the recorded bytes are one rank's) */
    uintptr_t         next;          /* the next fake address */
    int               cudnn;         /* the device backend would run cuDNN's fused attention */
    char              attention[160]; /* which attention kernels would run */
    char              no_fit[1024];   /* why memory.offload: auto found no way to fit; "" if it did */
};

/* An empty plan for one rank. gpu_gib: memory of one GPU (0: unknown; the plan backend then
 * has no mem_free, as a host backend has none), measured: it is what was free after the
 * CUDA context was made (see the field); ranks_per_gpu: ranks sharing it. The plan backend
 * acts as the cpu backend until mem_plan_like names another. */
void mem_plan_init(struct mem_plan *p, double gpu_gib, int measured, int ranks_per_gpu);
/* Bytes of one rank's device memory that count against gpu_gib (the allowances too unless
 * measured, the buffers outside the arena too unless backend_made), and whether
 * ranks_per_gpu such ranks fit in it (1 when gpu_gib is unknown). */
size_t mem_plan_need(const struct mem_plan *p);
/* Bytes of one rank's host memory: pinned and plain, and on a backend whose memory is host
 * RAM (the cpu backend) its memory too. */
size_t mem_plan_host(const struct mem_plan *p);
/* The physical memory of this machine in GiB. */
double mem_machine_gib(void);
/* GiB of host memory the ranks of a node may use: host_memory_gib when > 0, else this
 * machine's physical memory less reserve_gib (memory.host_reserve_gib). */
double mem_node_host_gib(double host_memory_gib, double reserve_gib);
int mem_plan_fits(const struct mem_plan *p);
void mem_plan_free(struct mem_plan *p);
/* The plan backend takes the name, activation size and weight sharing of `real` (a backend
 * table; none of its ops is called), and answers mem_free when real has it and gpu_gib is known. */
void mem_plan_like(struct mem_plan *p, const struct backend *real);
const struct backend *mem_plan_backend(struct mem_plan *p);

/* Record count buffers of `bytes` each that others than the plan backend allocate, outside
 * the arena (what: their name; allowance: an estimate). */
void mem_plan_add(struct mem_plan *p, const char *what, int where, int allowance, size_t bytes, int64_t count);
/* At the end of the start-up: lay the arena out (arena_layout) and count it in the totals:
 * a row for the alignment of its buffers' offsets, and less what buffers of disjoint
 * lifetimes share (shared). */
void mem_plan_pack(struct mem_plan *p);

/* The table: every group with count, size and total, device part, pinned host part, then
 * plain host part, each with its total; then the arena's blocks (once packed). `indent`
 * starts every line. */
void mem_plan_print(const struct mem_plan *p, FILE *f, const char *indent);
/* "1.50 GiB", "32.00 MiB", "8 B" into buf. */
const char *mem_bytes_text(double bytes, char *buf, size_t n);

#define MEM_GIB 1073741824.0

#endif
