/* test_arena: the arena (arena.c, arena_backend.c) and the run that uses it.
 * - Layout: offsets are multiples of 256 B; a buffer freed before another is allocated shares
 *   its bytes, buffers alive together never do (also over random records); sizes as computed.
 * - Hand-out: the planned buffers in order at their offsets; an allocation of another size or
 *   name, one after the last planned (in the step), one planned over a buffer not yet given
 *   back, a free of a pointer the arena did not hand out, and an incomplete start-up are all
 *   refused with a message naming the buffer.
 * - Backend: the cpu backend with an arena zero-fills each buffer, also over bytes a freed
 *   buffer left dirty.
 * - Plan: the plan backend records the arena; after mem_plan_pack the plan's totals are the
 *   arena's blocks + the rows outside it + the allowances, and a measured GPU is charged
 *   without the allowances (and without the rows outside, once the backend is made); a
 *   trainer's arena is its plan's, and it trains on it. In a CUDA build, a cuda job's plan
 *   (no GPU needed) holds the backend's scratch in the arena and its workspaces outside.
 * - Death: a trainer that allocates after its start-up (as a step would) ends with the
 *   arena's message naming the buffer (this program re-run with --late-alloc). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "arena_backend.h"
#include "mem_plan.h"
#include "rng.h"
#include "testutil.h"
#include "train.h"

#define LATE_WHAT "a buffer in the step"

static int overlap(size_t a0, size_t a1, size_t b0, size_t b1) { return a0 < b1 && b0 < a1; }
static size_t padded(size_t n) { return n ? (n + 255) / 256 * 256 : 256; }

/* Buffers alive at the same time in one space never share a byte; every offset is aligned
 * and inside its space. */
static int layout_ok(const struct arena *a) {
    int ok = 1;
    for (int i = 0; i < a->n; i++) {
        const struct arena_buf *x = &a->buf[i];
        ok &= x->offset % ARENA_ALIGN == 0 && x->offset + padded(x->bytes) <= a->size[x->space];
        for (int j = i + 1; j < a->n; j++) {
            const struct arena_buf *y = &a->buf[j];
            int together = x->born < y->dies && y->born < x->dies;
            if (x->space == y->space && together)
                ok &= !overlap(x->offset, x->offset + padded(x->bytes), y->offset, y->offset + padded(y->bytes));
        }
    }
    return ok;
}

/* A: 1000 B, B: 300 B, H: 100 B pinned, A freed, C: 800 B, D: 0 B. */
static void record_abcd(struct arena *a) {
    arena_init(a);
    char err[256];
    arena_record(a, ARENA_DEVICE, 1000, "A", 1);
    arena_record(a, ARENA_DEVICE, 300, "B", 2);
    arena_record(a, ARENA_HOST, 100, "H", 3);
    CHECK(arena_record_free(a, 1, err, sizeof err) == 0);
    CHECK(arena_record_free(a, 1, err, sizeof err) == -1 && strstr(err, "not yet freed")); /* twice */
    arena_record(a, ARENA_DEVICE, 800, "C", 4);
    arena_record(a, ARENA_DEVICE, 0, "D", 5);
    arena_layout(a);
}

static void test_layout(void) {
    struct arena a;
    record_abcd(&a);
    const struct arena_buf *A = &a.buf[0], *B = &a.buf[1], *H = &a.buf[2], *C = &a.buf[3], *D = &a.buf[4];
    CHECK(A->dies == 3 && C->born == 4 && B->dies == ARENA_NEVER);
    /* largest first: A at 0; C shares A's bytes (A was freed before C came); B after them; D after B */
    CHECK(A->offset == 0 && C->offset == 0 && B->offset == 1024 && D->offset == 1536 && H->offset == 0);
    CHECK(a.size[ARENA_DEVICE] == 1792 && a.size[ARENA_HOST] == 256);
    CHECK(a.bytes[ARENA_DEVICE] == 2100 && a.padded[ARENA_DEVICE] == 2816 && a.count[ARENA_DEVICE] == 4);
    CHECK(a.count[ARENA_HOST] == 1 && a.bytes[ARENA_HOST] == 100);
    CHECK(layout_ok(&a));
    arena_free(&a);

    /* Random records: the invariant holds, no space exceeds its buffers' padded sum, and with
     * nothing freed a space is exactly that sum. */
    for (int trial = 0; trial < 200; trial++) {
        struct arena r;
        arena_init(&r);
        char err[256];
        uintptr_t tag = 1;
        int frees = trial % 2;
        for (int k = 0; k < 60; k++) {
            uint64_t u = rng_u64((uint64_t)trial, (uint64_t)k);
            if (frees && u % 3 == 0 && r.n > 0) {
                uintptr_t t = 1 + (uintptr_t)((u >> 8) % (uint64_t)r.n);
                arena_record_free(&r, t, err, sizeof err); /* may name one already freed: refused, fine */
            } else {
                arena_record(&r, (int)((u >> 4) % 2), (size_t)((u >> 16) % 5000), "random", tag++);
            }
        }
        arena_layout(&r);
        CHECK(layout_ok(&r));
        for (int s = 0; s < ARENA_NSPACE; s++) {
            CHECK(r.size[s] <= r.padded[s]);
            if (!frees) CHECK(r.size[s] == r.padded[s]);
        }
        arena_free(&r);
    }
}

static void test_hand_out(void) {
    struct arena a;
    char err[512];
    void *p, *pa, *pb, *ph, *pc, *pd;
    record_abcd(&a);
    char *dev = calloc(1, a.size[ARENA_DEVICE]), *host = calloc(1, a.size[ARENA_HOST]);
    a.base[ARENA_DEVICE] = dev, a.base[ARENA_HOST] = host;
    CHECK(arena_take(&a, ARENA_DEVICE, 1000, "A", &pa, err, sizeof err) == 0 && pa == dev);
    CHECK(arena_take(&a, ARENA_DEVICE, 300, "B", &pb, err, sizeof err) == 0 && pb == dev + 1024);
    CHECK(arena_complete(&a, err, sizeof err) == -1 && strstr(err, "2 of the 5") && strstr(err, "for H"));
    CHECK(arena_take(&a, ARENA_HOST, 100, "H", &ph, err, sizeof err) == 0 && ph == host);
    /* C was planned after A is freed: A still in use */
    CHECK(arena_take(&a, ARENA_DEVICE, 800, "C", &p, err, sizeof err) == -1 && !p);
    CHECK(strstr(err, "C (allocation 3)") && strstr(err, "after A") && strstr(err, "still in use"));
    CHECK(arena_give(&a, dev + 8, err, sizeof err) == -1 && strstr(err, "no buffer of the arena"));
    CHECK(arena_give(&a, pa, err, sizeof err) == 0);
    CHECK(arena_give(&a, pa, err, sizeof err) == -1); /* twice */
    /* another size, another name, another space: refused, naming both */
    CHECK(arena_take(&a, ARENA_DEVICE, 801, "C", &p, err, sizeof err) == -1 && strstr(err, "801 bytes"));
    CHECK(arena_take(&a, ARENA_DEVICE, 800, "not C", &p, err, sizeof err) == -1);
    CHECK(strstr(err, "for not C were not planned") && strstr(err, "planned as 800 bytes of device memory for C"));
    CHECK(arena_take(&a, ARENA_HOST, 800, "C", &p, err, sizeof err) == -1 && strstr(err, "pinned host memory for C"));
    CHECK(arena_take(&a, ARENA_DEVICE, 800, "C", &pc, err, sizeof err) == 0 && pc == dev);
    CHECK(arena_take(&a, ARENA_DEVICE, 0, "D", &pd, err, sizeof err) == 0 && pd == dev + 1536);
    CHECK(arena_complete(&a, err, sizeof err) == 0);
    /* the start-up is done: anything more is refused */
    CHECK(arena_take(&a, ARENA_DEVICE, 64, LATE_WHAT, &p, err, sizeof err) == -1 && !p);
    CHECK(strstr(err, LATE_WHAT) && strstr(err, "nothing is allocated after them (in the step)"));
    CHECK(arena_give(&a, pb, err, sizeof err) == 0 && arena_give(&a, ph, err, sizeof err) == 0);
    arena_free(&a);
    free(dev), free(host);
}

/* The cpu backend on an arena: every buffer is zero-filled, the one over a freed buffer's
 * dirty bytes too; alloc and host_alloc come from the two blocks. */
static void test_backend(void) {
    struct arena a;
    record_abcd(&a);
    struct backend be = cpu_backend;
    arena_backend_attach(&be, &a);
    CHECK(be.arena != NULL && a.base[ARENA_DEVICE] && a.base[ARENA_HOST]);
    unsigned char *pa = be.alloc(&be, 1000, "A");
    CHECK(pa == (unsigned char *)a.base[ARENA_DEVICE]);
    memset(pa, 0xab, 1000);
    void *pb = be.alloc(&be, 300, "B");
    unsigned char *ph = be.host_alloc(&be, 100, "H");
    CHECK(ph == (unsigned char *)a.base[ARENA_HOST]);
    be.free(&be, pa);
    unsigned char *pc = be.alloc(&be, 800, "C");
    int zero = pc == pa;
    for (int i = 0; i < 800; i++) zero &= pc[i] == 0;
    CHECK(zero);
    void *pd = be.alloc(&be, 0, "D");
    arena_backend_check(&be);
    be.free(&be, pb), be.host_free(&be, ph), be.free(&be, pc), be.free(&be, pd);
    arena_backend_detach(&be);
    CHECK(be.arena == NULL && be.alloc == cpu_backend.alloc && be.free == cpu_backend.free);
    CHECK(a.base[ARENA_DEVICE] == NULL && a.base[ARENA_HOST] == NULL);
    arena_free(&a);
}

/* A tiny cpu job (the copy task) with offload, so that both spaces have buffers. */
static struct job tiny_job(int host_opt) {
    struct job j;
    memset(&j, 0, sizeof j);
    cfg_defaults(&j.cfg);
    j.cfg.data.synthetic = SYNTHETIC_COPY;
    j.cfg.data.seq_len = 32;
    j.cfg.train.steps = 4;
    j.cfg.train.warmup_steps = 1;
    j.cfg.memory.offload = OFFLOAD_ALL;
    j.cfg.memory.optimizer = host_opt ? OPTIMIZER_HOST : OPTIMIZER_DEVICE;
    j.mc = (struct model_config){.vocab_size = 16, .dim = 16, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1,
                                 .head_dim = 8, .ffn_dim = 24, .norm_eps = 1e-5, .rope_theta = 10000};
    j.cp = 1;
    j.dp = 1;
    return j;
}

static void test_plan(const struct runtime *rt) {
    /* the plan backend records the arena; the totals after packing */
    struct mem_plan p;
    mem_plan_init(&p, 0, 0, 1);
    const struct backend *pb = mem_plan_backend(&p);
    void *x = pb->alloc(pb, 1000, "x");
    pb->host_alloc(pb, 100, "h");
    pb->free(pb, x);
    pb->alloc(pb, 1000, "y");
    void *f = pb->fence_new(pb);
    pb->fence_free(pb, f); /* a fence is no buffer */
    mem_plan_add(&p, "library workspace", MEM_DEVICE, 0, 4096, 1);
    mem_plan_add(&p, "context", MEM_DEVICE, 1, 1 << 20, 1);
    CHECK(p.arena.n == 3 && p.arena.buf[0].dies == 2 && p.arena.buf[2].born == 3);
    mem_plan_pack(&p);
    /* x and y share 1024 bytes; 24 + 24 + 156 bytes of alignment */
    CHECK(p.arena.size[ARENA_DEVICE] == 1024 && p.arena.size[ARENA_HOST] == 256);
    CHECK(p.shared[MEM_DEVICE] == 1024 && p.shared[MEM_HOST] == 0);
    CHECK(p.total[MEM_DEVICE] == 1024 + 4096 + (1 << 20) && p.total[MEM_HOST] == 256);
    /* what counts against a measured GPU: the allowances are out of it already, and in a
     * run's plan (the backend made) the buffers outside the arena too */
    CHECK(mem_plan_need(&p) == 1024 + 4096 + (1 << 20));
    p.measured = 1;
    CHECK(mem_plan_need(&p) == 1024 + 4096);
    p.backend_made = 1;
    CHECK(mem_plan_need(&p) == 1024);
    char out[4096];
    FILE *mf = fmemopen(out, sizeof out, "w");
    mem_plan_print(&p, mf, "");
    fclose(mf);
    CHECK(strstr(out, "library workspace (outside the arena)") && !strstr(out, "context (outside"));
    CHECK(strstr(out, "less: arena bytes shared by disjoint lifetimes") && strstr(out, "arena alignment"));
    CHECK(strstr(out, "arena: 1.00 KiB backend memory (2 buffers), 256 B offload host memory (1 buffers)") != NULL);
    mem_plan_free(&p);

    /* a trainer's plan: the totals are the arena's blocks (nothing outside, no allowance on the
     * cpu backend); the trainer's own arena is that layout, every buffer handed out; a step */
    for (int host_opt = 0; host_opt < 2; host_opt++) {
        struct job j = tiny_job(host_opt);
        struct trainer *t = calloc(1, sizeof *t);
        mem_plan_init(&p, 0, 0, 1);
        trainer_plan(t, &j, rt, &p);
        CHECK(p.arena.laid_out && p.arena.count[ARENA_HOST] > 0 && p.arena.count[ARENA_DEVICE] > 0);
        CHECK(p.total[MEM_DEVICE] == p.arena.size[ARENA_DEVICE] && p.total[MEM_HOST] == p.arena.size[ARENA_HOST]);
        struct arena planned = p.arena;
        trainer_free(t);
        trainer_init(t, &j, rt, NULL);
        CHECK(t->arena.n == planned.n && t->arena.next == t->arena.n);
        CHECK(t->arena.size[ARENA_DEVICE] == planned.size[ARENA_DEVICE]);
        CHECK(t->arena.size[ARENA_HOST] == planned.size[ARENA_HOST]);
        int same = 1;
        for (int i = 0; i < planned.n && i < t->arena.n; i++)
            same &= t->arena.buf[i].bytes == planned.buf[i].bytes && t->arena.buf[i].offset == planned.buf[i].offset;
        CHECK(same);
        struct step_stats st;
        trainer_step(t, &st);
        CHECK(st.loss > 0 && !st.skipped && t->arena.next == t->arena.n);
        trainer_free(t);
        free(t);
        mem_plan_free(&p);
    }
}

#ifdef RT_HAVE_CUDA
/* A cuda job's plan (no CUDA call): the backend's scratch is the arena's, its library
 * workspaces are outside it, and each total is the arena's block + the rows outside + the
 * allowances. */
static void test_cuda_plan(const struct runtime *rt) {
    struct job j = tiny_job(1);
    j.cfg.device.backend = BACKEND_CUDA;
    struct trainer *t = calloc(1, sizeof *t);
    struct mem_plan p;
    mem_plan_init(&p, 0, 0, 1);
    trainer_plan(t, &j, rt, &p);
    CHECK(p.arena.n > 0 && !strcmp(p.arena.buf[0].what, "cross-entropy chunk"));
    CHECK(p.outside[MEM_DEVICE] > 0 && p.allowance[MEM_DEVICE] > 0 && p.arena.count[ARENA_HOST] > 0);
    for (int w = MEM_DEVICE; w <= MEM_HOST; w++)
        CHECK(p.total[w] == p.arena.size[w == MEM_DEVICE ? ARENA_DEVICE : ARENA_HOST] + p.outside[w] + p.allowance[w]);
    char out[16384];
    FILE *f = fmemopen(out, sizeof out, "w");
    mem_plan_print(&p, f, "");
    fclose(f);
    CHECK(strstr(out, "cuBLAS workspace (outside the arena)") && strstr(out, "(allowance)"));
    CHECK(strstr(out, "arena: ") && strstr(out, " device (") && strstr(out, " pinned host ("));
    trainer_free(t);
    free(t);
    mem_plan_free(&p);
}
#endif

/* The child of the death test: a trainer allocates after its start-up. */
static int late_alloc(int argc, char **argv) {
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    struct job j = tiny_job(0);
    struct trainer *t = calloc(1, sizeof *t);
    trainer_init(t, &j, &rt, NULL);
    struct step_stats st;
    trainer_step(t, &st);
    const struct backend *be = t->model.be;
    be->alloc(be, 64, LATE_WHAT); /* fatal */
    printf("test_arena: the late allocation was not refused\n");
    rt_finalize(&rt);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--late-alloc")) return late_alloc(argc, argv);
    test_layout();
    test_hand_out();
    test_backend();
    /* the death test runs before this process starts MPI (it is a process of its own) */
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "%s/test_arena --late-alloc", tu_build());
    int rc = tu_run(cmd, out, sizeof out);
    CHECK(rc == 1);
    CHECK(strstr(out, LATE_WHAT " were not planned") && strstr(out, "(in the step)"));
    CHECK(!strstr(out, "was not refused"));
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    test_plan(&rt);
#ifdef RT_HAVE_CUDA
    test_cuda_plan(&rt);
#endif
    int status = tu_done("test_arena");
    rt_finalize(&rt);
    return status;
}
