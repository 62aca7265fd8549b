/* affinity: binding at start-up (see affinity.h): the hwloc topology and the GPU's place
 * in it, the plan the ranks of a host share, the binding itself and the start-up table. */
#include "affinity.h"

#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "affinity_plan.h"
#ifdef RT_HAVE_CUDA
#include "cuda_backend.h"
#endif

#define AFF_SET_CHARS 1024 /* a cpuset in hwloc's hex form: room for ~2,900 PUs */

/* What each rank of a host tells the others. */
struct aff_wire {
    int  ok;                   /* 0: this rank could not read its topology or binding */
    int  has_gpu;              /* gpu holds the PUs near its GPU */
    char start[AFF_SET_CHARS]; /* the PUs it may run on now */
    char gpu[AFF_SET_CHARS];
};

/* One rank's row of the start-up table, as gathered on rank 0. */
struct aff_row {
    int  warn;
    char host[64];
    char line[AFF_LINE_MAX];
};

static void add(char *line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(char *line, const char *fmt, ...) {
    size_t used = strlen(line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + used, AFF_LINE_MAX - used, fmt, ap);
    va_end(ap);
}

static int failed(char *why, const char *call) {
    snprintf(why, AFF_LINE_MAX, "%s: %s", call, strerror(errno));
    return -1;
}

static int put_set(char *dst, hwloc_const_bitmap_t set, char *why) {
    int k = hwloc_bitmap_snprintf(dst, AFF_SET_CHARS, set);
    if (k >= 0 && k < AFF_SET_CHARS) return 0;
    snprintf(why, AFF_LINE_MAX, "a cpuset of %d characters is too long to share", k);
    return -1;
}

/* The topology, with PCI devices when a GPU is to be found in it. */
static int load_topology(hwloc_topology_t *topo, int with_io, char *why) {
    if (hwloc_topology_init(topo)) {
        *topo = NULL;
        return failed(why, "hwloc_topology_init");
    }
    if (with_io && hwloc_topology_set_io_types_filter(*topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT))
        return failed(why, "hwloc_topology_set_io_types_filter");
    if (hwloc_topology_load(*topo)) return failed(why, "hwloc_topology_load");
    return 0;
}

/* This rank's part of the plan: where it may run now, and the PUs near its GPU (gpu_note
 * says why when the GPU is not in the topology). */
static int describe(hwloc_topology_t topo, const char *busid, struct aff_wire *w, char *gpu_note, char *why) {
    hwloc_cpuset_t start = hwloc_bitmap_alloc();
    if (!start) return failed(why, "hwloc_bitmap_alloc");
    int rc = hwloc_get_cpubind(topo, start, HWLOC_CPUBIND_PROCESS) ? failed(why, "hwloc_get_cpubind")
                                                                   : put_set(w->start, start, why);
    hwloc_bitmap_free(start);
    if (rc || !busid) return rc;
    hwloc_obj_t dev = hwloc_get_pcidev_by_busidstring(topo, busid);
    hwloc_obj_t near = dev ? hwloc_get_non_io_ancestor_obj(topo, dev) : NULL;
    if (!near) {
        snprintf(gpu_note, AFF_NOTE_MAX, "GPU %s is not in hwloc's topology: placed as if it had none", busid);
        return 0;
    }
    w->has_gpu = 1;
    return put_set(w->gpu, near->cpuset, why);
}

/* Binds PUs, then memory; sets the OpenMP threads; writes the line. */
static void bind_to(struct affinity *a, hwloc_topology_t topo, const struct aff_rank *r, const char *busid,
                    const char *gpu_note, char *why) {
    if (hwloc_set_cpubind(topo, r->cpus, HWLOC_CPUBIND_PROCESS)) {
        failed(why, "hwloc_set_cpubind");
        return;
    }
    a->bound = 1;
    char pus[256], nodes[64] = "?", mem[AFF_LINE_MAX] = "";
    hwloc_bitmap_list_snprintf(pus, sizeof pus, r->cpus);
    hwloc_nodeset_t ns = hwloc_bitmap_alloc();
    int one_node = 0;
    /* Memory goes to the node of the cores, preferred (not strict: a full node spills
     * rather than fails). Cores on several nodes keep the default first-touch policy: each
     * thread's pages land on its own node. Linux has no process-wide memory policy: this is
     * the main thread's, inherited by the threads it starts; threads already running
     * allocate on their (now bound) cores' node by first touch. */
    if (!ns || hwloc_cpuset_to_nodeset(topo, r->cpus, ns))
        failed(mem, "hwloc_cpuset_to_nodeset");
    else if ((one_node = hwloc_bitmap_weight(ns) == 1) &&
             hwloc_set_membind(topo, ns, HWLOC_MEMBIND_BIND, HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET))
        failed(mem, "hwloc_set_membind");
    if (ns) hwloc_bitmap_list_snprintf(nodes, sizeof nodes, ns);
    hwloc_bitmap_free(ns);
    const char *omp = getenv("OMP_NUM_THREADS");
    if (!omp || !*omp) {
        omp_set_num_threads(r->cores);
        a->threads = r->cores;
    }
    add(a->line, "PUs %s (%d core%s), ", pus, r->cores, r->cores == 1 ? "" : "s");
    if (mem[0]) add(a->line, "memory not bound (%s)", mem);
    else if (one_node) add(a->line, "memory on NUMA node %s", nodes);
    else add(a->line, "memory first-touch on NUMA nodes %s", nodes);
    if (busid && !gpu_note[0]) add(a->line, ", GPU %s", busid);
    if (a->threads) add(a->line, ", %d OpenMP thread%s", a->threads, a->threads == 1 ? "" : "s");
    else add(a->line, ", OpenMP threads from OMP_NUM_THREADS=%s", omp);
    if (!hwloc_bitmap_isincluded(hwloc_topology_get_allowed_cpuset(topo), r->start)) {
        hwloc_bitmap_list_snprintf(pus, sizeof pus, r->start);
        add(a->line, "; the launcher had bound it to PUs %s", pus);
    }
    a->warn = mem[0] || gpu_note[0] || r->far;
    if (gpu_note[0]) add(a->line, "; %s", gpu_note);
    if (r->note[0]) add(a->line, "; %s", r->note);
}

/* Every rank of the host plans the whole host from what all of them said; this one binds. */
static void plan_and_bind(struct affinity *a, hwloc_topology_t topo, int n, int me, const struct aff_wire *all,
                          const char *busid, const char *gpu_note, char *why) {
    struct aff_rank *r = rt_calloc((size_t)n, sizeof *r, "binding plan");
    hwloc_bitmap_t *sets = rt_calloc(3 * (size_t)n, sizeof *sets, "binding plan");
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        hwloc_bitmap_t *s = sets + 3 * i;
        ok = (s[0] = hwloc_bitmap_alloc()) && (s[1] = hwloc_bitmap_alloc()) && (s[2] = hwloc_bitmap_alloc()) &&
             !hwloc_bitmap_sscanf(s[0], all[i].start) && (!all[i].has_gpu || !hwloc_bitmap_sscanf(s[1], all[i].gpu));
        r[i] = (struct aff_rank){.start = s[0], .gpu = all[i].has_gpu ? s[1] : NULL, .cpus = s[2]};
    }
    if (!ok || aff_plan(topo, n, r)) {
        snprintf(why, AFF_LINE_MAX, "hwloc could not read or split the host's cpusets");
    } else if (hwloc_bitmap_iszero(r[me].cpus)) {
        snprintf(a->line, AFF_LINE_MAX, "not bound: %s", r[me].note);
        a->warn = gpu_note[0] != 0;
        if (a->warn) add(a->line, "; %s", gpu_note);
    } else {
        bind_to(a, topo, &r[me], busid, gpu_note, why);
    }
    for (int i = 0; i < 3 * n; i++) hwloc_bitmap_free(sets[i]);
    free(sets);
    free(r);
}

void affinity_bind(struct affinity *a, const struct runtime *rt, int mode, const char *gpu_busid) {
    memset(a, 0, sizeof *a);
    if (mode == BIND_NONE) {
        snprintf(a->line, sizeof a->line, "not bound (device.bind: none)");
        return;
    }
    MPI_Comm host;
    int n, me;
    MPI_CHECK(MPI_Comm_split_type(rt->world_comm, MPI_COMM_TYPE_SHARED, rt->rank, MPI_INFO_NULL, &host));
    MPI_CHECK(MPI_Comm_size(host, &n));
    MPI_CHECK(MPI_Comm_rank(host, &me));
    struct aff_wire mine, *all = rt_calloc((size_t)n, sizeof *all, "binding plan");
    memset(&mine, 0, sizeof mine);
    hwloc_topology_t topo = NULL;
    char why[AFF_LINE_MAX] = "", gpu_note[AFF_NOTE_MAX] = "";
    mine.ok = !load_topology(&topo, gpu_busid != NULL, why) && !describe(topo, gpu_busid, &mine, gpu_note, why);
    MPI_CHECK(MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, host));
    MPI_CHECK(MPI_Comm_free(&host));
    for (int i = 0; i < n && mine.ok && !why[0]; i++)
        if (!all[i].ok) snprintf(why, sizeof why, "local rank %d could not describe its binding", i);
    if (!why[0]) plan_and_bind(a, topo, n, me, all, gpu_busid, gpu_note, why);
    if (why[0]) {
        a->warn = 1;
        /* the reason fills the rest of the line, cut if it must be (why is as long as line) */
        snprintf(a->line, sizeof a->line, "not bound: %.*s", (int)sizeof a->line - 12, why);
    }
    free(all);
    if (topo) hwloc_topology_destroy(topo);
}

void affinity_report(const struct affinity *a, const struct runtime *rt, FILE *out) {
    struct aff_row mine, *rows = NULL;
    memset(&mine, 0, sizeof mine);
    mine.warn = a->warn;
    snprintf(mine.host, sizeof mine.host, "%s", rt->host);
    snprintf(mine.line, sizeof mine.line, "%s", a->line);
    if (rt->rank == 0) rows = rt_calloc((size_t)rt->world, sizeof *rows, "binding table");
    MPI_CHECK(MPI_Gather(&mine, (int)sizeof mine, MPI_BYTE, rows, (int)sizeof mine, MPI_BYTE, 0, rt->world_comm));
    for (int i = 0, j; rows && i < rt->world; i = j) {
        for (j = i + 1; j < rt->world && !memcmp(&rows[j], &rows[i], sizeof rows[i]); j++) {}
        char who[32];
        if (j - i > 1) snprintf(who, sizeof who, "ranks %d-%d", i, j - 1);
        else snprintf(who, sizeof who, "rank %d", i);
        fprintf(rows[i].warn ? stderr : out, "%sbinding: %s (%s): %s\n", rows[i].warn ? "ringtrain: warning: " : "",
                who, rows[i].host, rows[i].line);
    }
    fflush(out);
    free(rows);
}

void affinity_setup(const struct runtime *rt, const struct cfg_device *d) {
    const char *gpu = NULL;
#ifdef RT_HAVE_CUDA
    char busid[32];
    if (d->backend == BACKEND_CUDA && d->bind == BIND_AUTO &&
        !cuda_device_pci_bus_id(rt->local_rank, busid, (int)sizeof busid))
        gpu = busid;
#endif
    struct affinity a;
    affinity_bind(&a, rt, d->bind, gpu);
    affinity_report(&a, rt, stdout);
}
