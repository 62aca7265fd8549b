/* test_affinity: binding at start-up, under mpirun. First the plan alone on synthetic
 * hwloc machines (2 packages, GPUs on either, launcher bindings, overlap, oversubscription),
 * then the real binding of the ranks: device.bind none leaves the affinity alone; auto gives
 * each rank a non-empty set of PUs, disjoint from the other ranks', inside the PUs the
 * launcher gave the job, with memory on their node and the OpenMP threads set to its cores --
 * or, when the job's cores are fewer than the ranks, leaves every rank unbound and says so.
 * The same with a PCI device of this machine standing in for the GPU, and with a GPU that
 * is not there (a warning, not an error). */
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "affinity.h"
#include "affinity_plan.h"
#include "runtime.h"
#include "testutil.h"

#define MAXR 9

struct plan_case {
    const char *machine;      /* hwloc synthetic description */
    int n;
    const char *start[MAXR];  /* PUs the launcher gave; NULL = the whole machine */
    const char *gpu[MAXR];    /* PUs near the GPU; NULL = no GPU */
    const char *want[MAXR];   /* the rank's PUs; "" = unbound */
    int cores[MAXR];
    const char *note[MAXR];   /* a fragment of its note; NULL = no note */
    int far[MAXR];
};

/* "pack:2 core:4 pu:2": package 0 = PUs 0-7 (core c = PUs 2c, 2c+1), package 1 = PUs 8-15. */
#define P2C4 "pack:2 core:4 pu:2"
static const struct plan_case plan_cases[] = {
    {P2C4, 4, .gpu = {"0-7", "0-7", "8-15", "8-15"}, .want = {"0-3", "4-7", "8-11", "12-15"}, .cores = {2, 2, 2, 2}},
    {P2C4, 3, .want = {"0-3", "4-9", "10-15"}, .cores = {2, 3, 3}},
    {P2C4, 2, .gpu = {"0-15", "0-7"}, .want = {"0-7", "8-15"}, .cores = {4, 4}, .note = {"overlap", "overlap"}},
    {P2C4, 9, .want = {"", "", "", "", "", "", "", "", ""},
     .note = {"9 ranks share 8 cores", "9 ranks", "9 ranks", "9 ranks", "9 ranks", "9 ranks", "9 ranks", "9 ranks", "9 ranks"}},
    /* the launcher put both on package 1, their GPUs are on package 0 */
    {P2C4, 2, .start = {"8-15", "8-15"}, .gpu = {"0-7", "0-7"}, .want = {"8-11", "12-15"}, .cores = {2, 2},
     .note = {"near its GPU", "near its GPU"}, .far = {1, 1}},
    /* three ranks share the 2 cores of package 0, one has package 1 to itself */
    {"pack:2 core:2 pu:1", 4, .gpu = {"0-1", "0-1", "0-1", "2-3"}, .want = {"", "", "", "2-3"}, .cores = {0, 0, 0, 2},
     .note = {"3 ranks share 2 cores", "3 ranks share 2 cores", "3 ranks share 2 cores", NULL}},
    /* launcher bindings to single hyperthreads: the sibling PUs are not added */
    {"pack:1 core:4 pu:2", 2, .start = {"0", "2,4"}, .want = {"0", "2,4"}, .cores = {1, 2}},
};

static void test_plans(void) {
    for (size_t c = 0; c < sizeof plan_cases / sizeof plan_cases[0]; c++) {
        const struct plan_case *pc = &plan_cases[c];
        hwloc_topology_t topo;
        if (!CHECK(!hwloc_topology_init(&topo) && !hwloc_topology_set_synthetic(topo, pc->machine) &&
                   !hwloc_topology_load(topo)))
            return;
        struct aff_rank r[MAXR];
        hwloc_bitmap_t start[MAXR], gpu[MAXR], want = hwloc_bitmap_alloc();
        for (int i = 0; i < pc->n; i++) {
            start[i] = hwloc_bitmap_dup(hwloc_topology_get_topology_cpuset(topo));
            gpu[i] = hwloc_bitmap_alloc();
            if (pc->start[i]) CHECK(!hwloc_bitmap_list_sscanf(start[i], pc->start[i]));
            if (pc->gpu[i]) CHECK(!hwloc_bitmap_list_sscanf(gpu[i], pc->gpu[i]));
            r[i] = (struct aff_rank){.start = start[i], .gpu = pc->gpu[i] ? gpu[i] : NULL, .cpus = hwloc_bitmap_alloc()};
        }
        CHECK(aff_plan(topo, pc->n, r) == 0);
        for (int i = 0; i < pc->n; i++) {
            char got[64];
            hwloc_bitmap_list_snprintf(got, sizeof got, r[i].cpus);
            CHECK(!hwloc_bitmap_list_sscanf(want, pc->want[i]));
            int ok = hwloc_bitmap_isequal(r[i].cpus, want) && r[i].cores == pc->cores[i] && r[i].far == pc->far[i] &&
                     (pc->note[i] ? strstr(r[i].note, pc->note[i]) != NULL : !r[i].note[0]);
            if (!CHECK(ok))
                fprintf(stderr, "  plan %zu (%s, %d ranks) rank %d: PUs \"%s\" (%d cores, far %d, note \"%s\"), want "
                        "\"%s\" (%d cores, far %d, note with \"%s\")\n", c, pc->machine, pc->n, i, got, r[i].cores,
                        r[i].far, r[i].note, pc->want[i], pc->cores[i], pc->far[i], pc->note[i] ? pc->note[i] : "");
            hwloc_bitmap_free(start[i]);
            hwloc_bitmap_free(gpu[i]);
            hwloc_bitmap_free(r[i].cpus);
        }
        hwloc_bitmap_free(want);
        hwloc_topology_destroy(topo);
    }
}

/* The real machine: this process's PUs, and everybody's. */
struct host {
    hwloc_topology_t topo;
    const struct runtime *rt;
    cpu_set_t initial;        /* what the launcher gave this rank */
    cpu_set_t pool;           /* what it gave all ranks (one host) */
    int expect_bind;          /* the pool has at least one core per rank */
};

static cpu_set_t current(void) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CHECK(sched_getaffinity(0, sizeof s, &s) == 0);
    return s;
}

static void to_hwloc(const cpu_set_t *s, hwloc_bitmap_t b) {
    hwloc_bitmap_zero(b);
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, s)) hwloc_bitmap_set(b, (unsigned)i);
}

/* Back to the launcher's binding and the default memory policy. */
static void restore(const struct host *h) {
    hwloc_bitmap_t b = hwloc_bitmap_alloc();
    to_hwloc(&h->initial, b);
    CHECK(hwloc_set_cpubind(h->topo, b, HWLOC_CPUBIND_PROCESS) == 0);
    CHECK(hwloc_set_membind(h->topo, hwloc_topology_get_topology_nodeset(h->topo), HWLOC_MEMBIND_DEFAULT,
                            HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) == 0);
    hwloc_bitmap_free(b);
    cpu_set_t now = current();
    CHECK(CPU_EQUAL(&now, &h->initial));
}

/* Cores (core objects, or PUs without them) with PUs in s. */
static int cores_in(hwloc_topology_t topo, const cpu_set_t *s) {
    hwloc_bitmap_t b = hwloc_bitmap_alloc();
    to_hwloc(s, b);
    int n = 0, depth = hwloc_get_type_or_below_depth(topo, HWLOC_OBJ_CORE);
    for (hwloc_obj_t o = NULL; (o = hwloc_get_next_obj_covering_cpuset_by_depth(topo, b, depth, o));) n++;
    hwloc_bitmap_free(b);
    return n;
}

/* Checks one auto binding (near = PUs near the GPU stand-in, NULL = none). */
static void check_auto(const struct host *h, const struct affinity *a, hwloc_const_cpuset_t near) {
    const struct runtime *rt = h->rt;
    const char *omp = getenv("OMP_NUM_THREADS");
    cpu_set_t mine = current(), *all = calloc((size_t)rt->world, sizeof *all);
    MPI_CHECK(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all, sizeof mine, MPI_BYTE, rt->world_comm));
    if (!h->expect_bind) {
        CHECK(!a->bound && a->threads == 0 && CPU_EQUAL(&mine, &h->initial) && strstr(a->line, "oversubscribed"));
        free(all);
        return;
    }
    cpu_set_t outside;
    CPU_XOR(&outside, &mine, &h->pool);
    CPU_AND(&outside, &outside, &mine);
    CHECK(a->bound && CPU_COUNT(&mine) > 0 && CPU_COUNT(&outside) == 0);
    for (int i = 0; i < rt->world; i++) {
        cpu_set_t both;
        CPU_AND(&both, &all[i], &mine);
        if (!CHECK(i == rt->rank || CPU_COUNT(&both) == 0))
            fprintf(stderr, "  ranks %d and %d share PUs: %s\n", rt->rank, i, a->line);
    }
    hwloc_bitmap_t b = hwloc_bitmap_alloc(), want = hwloc_bitmap_alloc(), got = hwloc_bitmap_alloc();
    to_hwloc(&mine, b);
    if (near) CHECK(hwloc_bitmap_isincluded(b, near));
    /* memory: preferred on the node of the PUs when they are on one node */
    hwloc_membind_policy_t policy;
    CHECK(hwloc_cpuset_to_nodeset(h->topo, b, want) == 0);
    CHECK(hwloc_get_membind(h->topo, got, &policy, HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) == 0);
    if (hwloc_bitmap_weight(want) == 1) CHECK(policy == HWLOC_MEMBIND_BIND && hwloc_bitmap_isequal(got, want));
    /* OpenMP: one thread per bound core, unless OMP_NUM_THREADS says otherwise */
    int threads = omp && *omp ? 0 : cores_in(h->topo, &mine);
    if (!CHECK(a->threads == threads && (threads == 0 || omp_get_max_threads() == threads)))
        fprintf(stderr, "  rank %d: %d OpenMP threads set, %d running, want %d\n", rt->rank, a->threads,
                omp_get_max_threads(), threads);
    hwloc_bitmap_free(b);
    hwloc_bitmap_free(want);
    hwloc_bitmap_free(got);
    free(all);
}

/* The bus id of some PCI device of this machine, or "" when hwloc sees none. */
static void some_pci_device(char *busid, size_t len, hwloc_bitmap_t near) {
    hwloc_topology_t t;
    busid[0] = 0;
    CHECK(!hwloc_topology_init(&t) && !hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT) &&
          !hwloc_topology_load(t));
    hwloc_obj_t dev = hwloc_get_next_pcidev(t, NULL);
    if (dev) {
        snprintf(busid, len, "%04x:%02x:%02x.%01x", dev->attr->pcidev.domain, dev->attr->pcidev.bus,
                 dev->attr->pcidev.dev, dev->attr->pcidev.func);
        hwloc_bitmap_copy(near, hwloc_get_non_io_ancestor_obj(t, dev)->cpuset);
    }
    hwloc_topology_destroy(t);
}

static void test_binding(const struct runtime *rt) {
    struct host h = {.rt = rt};
    CHECK(!hwloc_topology_init(&h.topo) && !hwloc_topology_load(h.topo));
    h.initial = current();
    cpu_set_t *all = calloc((size_t)rt->world, sizeof *all);
    MPI_CHECK(MPI_Allgather(&h.initial, sizeof h.initial, MPI_BYTE, all, sizeof h.initial, MPI_BYTE, rt->world_comm));
    CPU_ZERO(&h.pool);
    for (int i = 0; i < rt->world; i++) CPU_OR(&h.pool, &h.pool, &all[i]);
    free(all);
    int cores = cores_in(h.topo, &h.pool);
    h.expect_bind = cores >= rt->world;
    if (rt->rank == 0)
        printf("  %d ranks, %d cores given by the launcher: checking the %s path\n", rt->world, cores,
               h.expect_bind ? "binding" : "oversubscribed (not binding)");

    struct affinity a;
    affinity_bind(&a, rt, BIND_NONE, NULL);
    cpu_set_t now = current();
    CHECK(!a.bound && a.threads == 0 && !a.warn && CPU_EQUAL(&now, &h.initial));

    affinity_bind(&a, rt, BIND_AUTO, NULL);
    affinity_report(&a, rt, stdout);
    check_auto(&h, &a, NULL);
    CHECK(!a.warn);
    restore(&h);

    /* without OMP_NUM_THREADS (make test sets it), one OpenMP thread per bound core */
    unsetenv("OMP_NUM_THREADS");
    omp_set_num_threads(64);
    affinity_bind(&a, rt, BIND_AUTO, NULL);
    check_auto(&h, &a, NULL);
    restore(&h);

    /* a PCI device of this machine as the GPU every rank shares */
    char busid[32];
    hwloc_bitmap_t near = hwloc_bitmap_alloc();
    some_pci_device(busid, sizeof busid, near);
    if (busid[0]) {
        affinity_bind(&a, rt, BIND_AUTO, busid);
        if (rt->rank == 0) printf("  PCI device %s as the GPU: %s\n", busid, a.line);
        check_auto(&h, &a, near);
        CHECK(!a.warn && (!h.expect_bind || strstr(a.line, busid)));
        restore(&h);
    } else if (rt->rank == 0) {
        printf("  hwloc sees no PCI device here: GPU locality not checked\n");
    }
    hwloc_bitmap_free(near);

    /* a GPU that is not in the topology: a warning, placed as if it had none */
    affinity_bind(&a, rt, BIND_AUTO, "ffff:ff:1f.7");
    check_auto(&h, &a, NULL);
    CHECK(a.warn && strstr(a.line, "ffff:ff:1f.7 is not in hwloc's topology"));
    restore(&h);
    hwloc_topology_destroy(h.topo);
}

int main(int argc, char **argv) {
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    if (rt.rank == 0) test_plans();
    test_binding(&rt);
    int fails = tu_failures;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, rt.world_comm));
    if (rt.rank == 0) tu_done("test_affinity");
    rt_finalize(&rt);
    return fails ? 1 : 0;
}
