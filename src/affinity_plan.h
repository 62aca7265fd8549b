/* affinity_plan: which cores each rank of one host gets (pure: no MPI, nothing bound).
 * The pool is the union of the PUs the host's ranks may run on at start-up (the
 * launcher's binding, or the whole allowed host when they are not bound). A rank's
 * locality is the part of the pool near its GPU (the PUs of the GPU's first non-I/O
 * ancestor in the hwloc tree), or the whole pool when it has no GPU or no pool PU is near
 * it. Ranks with the same locality share its cores: split evenly, in hwloc's logical order,
 * whole cores each. Localities that overlap without being equal make the pool one
 * locality for every rank. A locality with fewer cores than ranks is oversubscribed: its
 * ranks stay unbound. A "core" is a core object of the topology, or a PU where there are
 * none; a core only partly in the locality counts with its PUs that are. */
#ifndef RT_AFFINITY_PLAN_H
#define RT_AFFINITY_PLAN_H

#include <hwloc.h>

#if HWLOC_API_VERSION < 0x00020000
#error "ringtrain needs hwloc 2.x"
#endif

#define AFF_NOTE_MAX 160

struct aff_rank {
    hwloc_const_cpuset_t start; /* in: PUs the rank may run on now */
    hwloc_const_cpuset_t gpu;   /* in: PUs near its GPU; NULL = no GPU known */
    hwloc_cpuset_t cpus;        /* out (allocated by the caller): its share; empty = stay unbound */
    int cores;                  /* out: cores in cpus */
    int far;                    /* out: 1 when it has a GPU but no core of the pool is near it */
    char note[AFF_NOTE_MAX];    /* out: why it stays unbound, or is not near its GPU; "" = nothing */
};

/* Plans the n ranks of one host (r[i] = local rank i); every rank of the host computes
 * the same plan from the same inputs. Returns 0, or -1 when hwloc is out of memory. */
int aff_plan(hwloc_topology_t topo, int n, struct aff_rank *r);

#endif
