/* affinity_plan: the split of one host's cores among its ranks (see affinity_plan.h). */
#include "affinity_plan.h"

#include <stdio.h>
#include <stdlib.h>

/* Depth of what a rank gets whole: cores, or PUs where the topology has no cores. */
static int unit_depth(hwloc_topology_t topo) { return hwloc_get_type_or_below_depth(topo, HWLOC_OBJ_CORE); }

static int count_units(hwloc_topology_t topo, hwloc_const_cpuset_t set) {
    int n = 0, depth = unit_depth(topo);
    for (hwloc_obj_t o = NULL; (o = hwloc_get_next_obj_covering_cpuset_by_depth(topo, set, depth, o));) n++;
    return n;
}

/* out = the PUs of set that lie in its units lo .. hi-1 (logical order). */
static int take_units(hwloc_topology_t topo, hwloc_const_cpuset_t set, int lo, int hi, hwloc_cpuset_t out) {
    int i = 0, depth = unit_depth(topo);
    hwloc_bitmap_zero(out);
    for (hwloc_obj_t o = NULL; (o = hwloc_get_next_obj_covering_cpuset_by_depth(topo, set, depth, o)); i++)
        if (i >= lo && i < hi && hwloc_bitmap_or(out, out, o->cpuset)) return -1;
    return hwloc_bitmap_and(out, out, set);
}

/* loc[i] = the PUs rank i may be given: the pool near its GPU, else the whole pool. */
static int localities(hwloc_topology_t topo, int n, struct aff_rank *r, hwloc_bitmap_t pool, hwloc_bitmap_t *loc) {
    for (int i = 0; i < n; i++)
        if (hwloc_bitmap_or(pool, pool, r[i].start)) return -1;
    if (hwloc_bitmap_and(pool, pool, hwloc_topology_get_allowed_cpuset(topo))) return -1;
    for (int i = 0; i < n; i++) {
        if (hwloc_bitmap_copy(loc[i], pool)) return -1;
        if (!r[i].gpu) continue;
        if (hwloc_bitmap_and(loc[i], pool, r[i].gpu)) return -1;
        if (hwloc_bitmap_iszero(loc[i])) {
            r[i].far = 1;
            snprintf(r[i].note, sizeof r[i].note, "no core of the job on this host is near its GPU");
            if (hwloc_bitmap_copy(loc[i], pool)) return -1;
        }
    }
    int overlap = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            overlap |= !hwloc_bitmap_isequal(loc[i], loc[j]) && hwloc_bitmap_intersects(loc[i], loc[j]);
    for (int i = 0; overlap && i < n; i++) {
        snprintf(r[i].note, sizeof r[i].note, "the GPUs' core sets overlap: the host's cores are split evenly");
        if (hwloc_bitmap_copy(loc[i], pool)) return -1;
    }
    return 0;
}

/* Ranks first..n-1 whose locality equals loc[first] (and are not placed yet) share it. */
static int split_group(hwloc_topology_t topo, int n, struct aff_rank *r, hwloc_bitmap_t *loc, int *placed, int first) {
    int k = 0, m = 0, units = count_units(topo, loc[first]);
    for (int j = first; j < n; j++) k += !placed[j] && hwloc_bitmap_isequal(loc[j], loc[first]);
    for (int j = first; j < n; j++) {
        if (placed[j] || !hwloc_bitmap_isequal(loc[j], loc[first])) continue;
        placed[j] = 1;
        if (units < k) {
            snprintf(r[j].note, sizeof r[j].note, "oversubscribed: %d ranks share %d core%s", k, units,
                     units == 1 ? "" : "s");
            continue;
        }
        int lo = (int)((long)m * units / k), hi = (int)((long)(m + 1) * units / k);
        m++;
        if (take_units(topo, loc[first], lo, hi, r[j].cpus)) return -1;
        r[j].cores = hi - lo;
    }
    return 0;
}

int aff_plan(hwloc_topology_t topo, int n, struct aff_rank *r) {
    int rc = -1;
    hwloc_bitmap_t pool = hwloc_bitmap_alloc();
    hwloc_bitmap_t *loc = calloc((size_t)n, sizeof *loc);
    int *placed = calloc((size_t)n, sizeof *placed);
    if (!pool || !loc || !placed) goto out;
    for (int i = 0; i < n; i++) {
        r[i].note[0] = 0;
        r[i].cores = r[i].far = 0;
        hwloc_bitmap_zero(r[i].cpus);
        if (!(loc[i] = hwloc_bitmap_alloc())) goto out;
    }
    if (localities(topo, n, r, pool, loc)) goto out;
    for (int i = 0; i < n; i++)
        if (!placed[i] && split_group(topo, n, r, loc, placed, i)) goto out;
    rc = 0;
out:
    for (int j = 0; loc && j < n; j++) hwloc_bitmap_free(loc[j]);
    free(loc);
    free(placed);
    hwloc_bitmap_free(pool);
    return rc;
}
