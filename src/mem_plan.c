/* mem_plan: the plan backend and the table of a rank's buffers (see mem_plan.h). The plan
 * backend carries the memory ops only; its compute ops and download are NULL, since a plan
 * never runs the model. */
#include "mem_plan.h"

#include <unistd.h>

#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define FAKE_BASE  ((uintptr_t)1 << 44) /* fake addresses start here, far from any real one */
#define FAKE_ALIGN ((uintptr_t)4096)
#define ALLOWANCE_TAG " (allowance)"
#define OUTSIDE_TAG " (outside the arena)"
#define SHARED_LABEL "less: arena bytes shared by disjoint lifetimes"

static struct mem_plan *plan_of(const struct backend *be) { return be->ctx; }

static void group_add(struct mem_plan *p, const char *what, int where, int allowance, int in_arena, size_t bytes,
                      int64_t count) {
    struct mem_group *g = NULL;
    for (int i = 0; i < p->n && !g; i++) {
        struct mem_group *h = &p->groups[i];
        if (h->where == where && h->allowance == allowance && h->in_arena == in_arena && h->bytes == bytes &&
            !strcmp(h->what, what))
            g = h;
    }
    if (!g) {
        if (p->n == p->cap) {
            p->cap = p->cap ? 2 * p->cap : 64;
            p->groups = realloc(p->groups, (size_t)p->cap * sizeof *p->groups);
            if (!p->groups) RT_FATAL("out of memory");
        }
        g = &p->groups[p->n++];
        memset(g, 0, sizeof *g);
        snprintf(g->what, sizeof g->what, "%s", what);
        g->where = where;
        g->allowance = allowance;
        g->in_arena = in_arena;
        g->bytes = bytes;
    }
    g->count += count;
    p->total[where] += bytes * (size_t)count;
    if (allowance) p->allowance[where] += bytes * (size_t)count;
    else if (!in_arena) p->outside[where] += bytes * (size_t)count;
}

void mem_plan_add(struct mem_plan *p, const char *what, int where, int allowance, size_t bytes, int64_t count) {
    group_add(p, what, where, allowance, 0, bytes, count);
}

/* A distinct address for a buffer of `bytes`; nothing is ever read or written there. */
static void *fake(struct mem_plan *p, size_t bytes) {
    void *a = (void *)p->next;
    p->next += ((uintptr_t)bytes + FAKE_ALIGN - 1) / FAKE_ALIGN * FAKE_ALIGN + FAKE_ALIGN;
    return a;
}

/* A buffer of the arena: in the table and in the arena's record. */
static void *arena_buffer(const struct backend *be, int where, int space, size_t bytes, const char *what) {
    struct mem_plan *p = plan_of(be);
    group_add(p, what, where, 0, 1, bytes, 1);
    void *a = fake(p, bytes);
    arena_record(&p->arena, space, bytes, what, (uintptr_t)a);
    return a;
}
static void *p_alloc(const struct backend *be, size_t bytes, const char *what) {
    return arena_buffer(be, MEM_DEVICE, ARENA_DEVICE, bytes, what);
}
static void *p_host_alloc(const struct backend *be, size_t bytes, const char *what) {
    return arena_buffer(be, MEM_HOST, ARENA_HOST, bytes, what);
}
static void *p_fence_new(const struct backend *be) { return fake(plan_of(be), 0); }
static void p_fence_free(const struct backend *be, void *fence) { (void)be, (void)fence; }
static void p_free(const struct backend *be, void *ptr) {
    char err[256];
    if (arena_record_free(&plan_of(be)->arena, (uintptr_t)ptr, err, sizeof err)) RT_FATAL("memory plan: %s", err);
}
static void p_zero(const struct backend *be, void *ptr, size_t n) { (void)be, (void)ptr, (void)n; }
static void p_copy(const struct backend *be, void *d, const void *s, size_t n) { (void)be, (void)d, (void)s, (void)n; }
static void p_to_act(const struct backend *be, void *d, const float *s, int64_t n) { (void)be, (void)d, (void)s, (void)n; }
static void p_copy_async(const struct backend *be, void *d, const void *s, size_t n, void *fence) {
    (void)be, (void)d, (void)s, (void)n, (void)fence;
}
static void p_fence_wait(const struct backend *be, void *fence) { (void)be, (void)fence; }

size_t mem_plan_need(const struct mem_plan *p) {
    return p->total[MEM_DEVICE] - (p->measured ? p->allowance[MEM_DEVICE] : 0) -
           (p->backend_made ? p->outside[MEM_DEVICE] : 0);
}

double mem_machine_gib(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || size <= 0) RT_FATAL("sysconf: the physical memory of this machine is unknown");
    return (double)pages * (double)size / MEM_GIB;
}

double mem_node_host_gib(double host_memory_gib, double reserve_gib) {
    if (host_memory_gib > 0) return host_memory_gib;
    double g = mem_machine_gib() - reserve_gib;
    return g > 0 ? g : 0;
}

size_t mem_plan_host(const struct mem_plan *p) {
    return p->total[MEM_HOST] + p->total[MEM_PLAIN] + (p->be.host_memory ? p->total[MEM_DEVICE] : 0);
}

int mem_plan_fits(const struct mem_plan *p) {
    return p->gpu_gib <= 0 || (double)p->ranks_per_gpu * (double)mem_plan_need(p) <= p->gpu_gib * MEM_GIB;
}

/* One GPU's memory less what its ranks take (each as this one). */
static size_t p_mem_free(const struct backend *be) {
    const struct mem_plan *p = plan_of(be);
    double left = p->gpu_gib * MEM_GIB - (double)p->ranks_per_gpu * (double)mem_plan_need(p);
    return left > 0 ? (size_t)left : 0;
}

void mem_plan_init(struct mem_plan *p, double gpu_gib, int measured, int ranks_per_gpu) {
    memset(p, 0, sizeof *p);
    p->gpu_gib = gpu_gib;
    p->measured = measured;
    p->ranks_per_gpu = ranks_per_gpu;
    p->next = FAKE_BASE;
    p->be = (struct backend){
        .alloc = p_alloc, .free = p_free, .zero = p_zero, .copy = p_copy, .upload = p_copy,
        .to_act = p_to_act, .host_alloc = p_host_alloc, .host_free = p_free, .fence_new = p_fence_new,
        .fence_free = p_fence_free, .copy_async = p_copy_async, .fence_wait = p_fence_wait, .recording = 1, .ctx = p};
    mem_plan_like(p, &cpu_backend);
}

void mem_plan_like(struct mem_plan *p, const struct backend *real) {
    p->be.name = real->name;
    p->be.act_size = real->act_size;
    p->be.shared_weights = real->shared_weights;
    p->be.host_memory = real->host_memory;
    p->be.attention = p->attention;
    p->be.mem_free = real->mem_free && p->gpu_gib > 0 ? p_mem_free : NULL;
    if (real->attention) snprintf(p->attention, sizeof p->attention, "%s", real->attention);
}

void mem_plan_pack(struct mem_plan *p) {
    static const int where_of[ARENA_NSPACE] = {[ARENA_DEVICE] = MEM_DEVICE, [ARENA_HOST] = MEM_HOST};
    struct arena *a = &p->arena;
    arena_layout(a);
    for (int s = 0; s < ARENA_NSPACE; s++) {
        if (a->padded[s] > a->bytes[s])
            group_add(p, "arena alignment (each buffer at a 256-byte offset)", where_of[s], 0, 1,
                      a->padded[s] - a->bytes[s], 1);
        p->shared[where_of[s]] = a->padded[s] - a->size[s];
        p->total[where_of[s]] -= p->shared[where_of[s]];
    }
}

void mem_plan_free(struct mem_plan *p) {
    arena_free(&p->arena);
    free(p->groups);
    p->groups = NULL;
    p->n = p->cap = 0;
}

const struct backend *mem_plan_backend(struct mem_plan *p) { return &p->be; }

const char *mem_bytes_text(double b, char *buf, size_t n) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, u++;
    snprintf(buf, n, u ? "%.2f %s" : "%.0f %s", b, units[u]);
    return buf;
}

/* A row's name with its tag: an allowance, or a buffer of the device or pinned part outside
 * the arena. */
static const char *row_name(const struct mem_group *g, char *buf, size_t n) {
    const char *tag = g->allowance ? ALLOWANCE_TAG : !g->in_arena && g->where != MEM_PLAIN ? OUTSIDE_TAG : "";
    snprintf(buf, n, "%s%s", g->what, tag);
    return buf;
}

static void print_part(const struct mem_plan *p, FILE *f, const char *indent, int where, int width) {
    static const char *names[2][MEM_NWHERE] = {
        {"device memory", "pinned host memory", "plain host memory"},
        {"backend memory (host RAM on this backend)", "offload host memory", "plain host memory"}};
    char each[32], all[32];
    int rows = 0;
    for (int i = 0; i < p->n; i++) rows += p->groups[i].where == where;
    fprintf(f, "%s%s%s\n", indent, names[p->be.host_memory != 0][where], rows ? "" : ": none");
    if (!rows) return;
    for (int i = 0; i < p->n; i++) {
        const struct mem_group *g = &p->groups[i];
        if (g->where != where) continue;
        char name[128];
        fprintf(f, "%s  %-*s %6lld x %10s = %10s\n", indent, width, row_name(g, name, sizeof name), (long long)g->count,
                mem_bytes_text((double)g->bytes, each, sizeof each),
                mem_bytes_text((double)g->bytes * (double)g->count, all, sizeof all));
    }
    if (p->shared[where])
        fprintf(f, "%s  %-*s %21s -%9s\n", indent, width, SHARED_LABEL, "",
                mem_bytes_text((double)p->shared[where], all, sizeof all));
    mem_bytes_text((double)p->total[where], all, sizeof all);
    if (p->allowance[where])
        fprintf(f, "%s  %-*s %21s %10s (%s of it allowances)\n", indent, width, "total", "", all,
                mem_bytes_text((double)p->allowance[where], each, sizeof each));
    else
        fprintf(f, "%s  %-*s %21s %10s\n", indent, width, "total", "", all);
}

void mem_plan_print(const struct mem_plan *p, FILE *f, const char *indent) {
    int width = p->shared[MEM_DEVICE] || p->shared[MEM_HOST] ? (int)strlen(SHARED_LABEL) : 0;
    for (int i = 0; i < p->n; i++) {
        char name[128];
        int w = (int)strlen(row_name(&p->groups[i], name, sizeof name));
        if (w > width) width = w;
    }
    print_part(p, f, indent, MEM_DEVICE, width);
    print_part(p, f, indent, MEM_HOST, width);
    print_part(p, f, indent, MEM_PLAIN, width);
    if (!p->arena.laid_out) return;
    char text[160];
    fprintf(f, "%s%s, one allocation each; the totals add the rows outside the arena and the allowances\n", indent,
            arena_text(&p->arena, p->be.host_memory, text, sizeof text));
}
