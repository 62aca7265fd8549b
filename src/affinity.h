/* affinity: binds each rank at start-up (device.bind auto) to its share of the cores near
 * its GPU -- of the host when it has none -- and its memory to their NUMA node(s), sets
 * the OpenMP threads to those cores, and prints one line per rank. The split is
 * affinity_plan.c; docs/design.md "Binding" says what is bound and why. Binding is an
 * optimization: whatever fails is a warning in the rank's line, never an error. */
#ifndef RT_AFFINITY_H
#define RT_AFFINITY_H

#include <stdio.h>

#include "config.h"
#include "runtime.h"

#define AFF_LINE_MAX 512

struct affinity {
    int  bound;              /* 1: this process's PUs were bound (memory too unless warn says otherwise) */
    int  threads;            /* OpenMP threads set to the bound cores; 0 = left alone */
    int  warn;               /* line reports a failure */
    char line[AFF_LINE_MAX]; /* this rank's row of the start-up table */
};

/* Collective over MPI_COMM_WORLD (the ranks of each host plan together). mode: enum cfg_bind;
 * gpu_busid: PCI bus id ("0000:41:00.0") of the rank's GPU, NULL without one. */
void affinity_bind(struct affinity *a, const struct runtime *rt, int mode, const char *gpu_busid);

/* Collective: rank 0 prints every rank's line on out (consecutive equal lines of one host
 * as one), warnings on stderr. */
void affinity_report(const struct affinity *a, const struct runtime *rt, FILE *out);

/* Start-up (main): the GPU the CUDA backend will use, if device.backend is cuda; bind; report. */
void affinity_setup(const struct runtime *rt, const struct cfg_device *d);

#endif
