/* run_plan: the memory plan of a job (mem_plan.h) as a command and as a check.
 * --plan (run_plan): every rank of the job is planned by running the trainer's allocation
 * sequence against the plan backend (train.h: trainer_plan: no GPU is touched, no weights
 * are made): under mpirun -np N each rank plans its own share with MPI communicators; with
 * --ranks N this one process plans rank 0..N-1 in turn, each with a planned runtime (rank r
 * of N, device.gpus_per_node ranks per node) and stand-in communicators (comm_plan.h). Rank 0
 * prints its table, what memory.offload decided, the optimizer's ZeRO slice, the expected
 * step time, the largest device and host need of a rank (and whose), the largest host need
 * of a node, and whether the job fits device.memory_gib and, per node,
 * device.host_memory_gib (0: this machine's physical memory); the fit is checked only with
 * device.memory_gib set. Exit 0 when it fits or the fit is not checked, 3 when it does not,
 * with what to change: the smallest change of parallel.zero / memory.optimizer that fits,
 * found by planning every rank with it, and the activation levers.
 * A cuda run (run_check_fit), before anything is allocated: the same plan against what the
 * GPU has free once the CUDA context exists. Its allowances are then not held against that
 * memory (the context is already out of it; the libraries' handles are small), so the check
 * fails only where the job surely cannot run: exit 3 with the table at start-up instead of
 * a failing cudaMalloc later (which still reports its own no-fit as the backstop). The host
 * is not checked there. */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef RT_HAVE_CUDA
#include "cuda_backend.h"
#endif
#include "mem_plan.h"
#include "offload.h"
#include "train.h"

/* The MFU the step-time estimate assumes: what one H200 reached on the 7B shape at 16K-64K
 * tokens (docs/benchmarks.md): 44.0-47.0% with cuDNN's attention, 29.6-36.3% with the
 * native kernels (the lower end at 64K, where attention dominates). */
#define MFU_CUDNN  0.45
#define MFU_NATIVE 0.30

/* How the plans of a job are made: the plan backend's GPU (mem_plan_init's arguments) and the
 * host memory of one node the ranks' host memory is checked against (0: not checked). */
struct setup {
    double gpu_gib, host_gib;
    int    measured, ranks_per_gpu;
    int    standin; /* plan every rank in this process with stand-in communicators (--ranks) */
};

/* What one rank needs. */
struct need {
    double device, host;
    int    device_fits;
};

/* The plan over all ranks: the largest device and host need per rank and whose it is, the
 * largest node's host need (ranks per_node at a time), and whether it all fits. */
struct verdict {
    int    ranks, per_node;
    double device, host, node_host, host_gib;
    int    device_rank, host_rank, node;
    int    device_fits, host_fits, fits;
};

/* The runtime of rank r of a job of n ranks planned in this process: per_node ranks per node,
 * no communicator (train.h: trainer_plan). */
static struct runtime planned_runtime(const struct runtime *rt, int r, int n, int per_node) {
    struct runtime p = *rt;
    p.rank = r;
    p.world = n;
    p.local_rank = r % per_node;
    int first = r / per_node * per_node;
    p.local_size = n - first < per_node ? n - first : per_node;
    p.world_comm = MPI_COMM_NULL;
    return p;
}

static struct need need_of(const struct mem_plan *p) {
    return (struct need){(double)mem_plan_need(p), (double)mem_plan_host(p), mem_plan_fits(p) && !p->no_fit[0]};
}

static void plan_init(struct mem_plan *p, const struct setup *s) {
    mem_plan_init(p, s->gpu_gib, s->measured, s->ranks_per_gpu);
}

/* The largest of n numbers and its index. */
static double largest(const double *x, int n, int *at) {
    *at = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[*at]) *at = i;
    return x[*at];
}

static struct verdict judge(const struct need *need, int n, int per_node, double host_gib) {
    struct verdict v = {.ranks = n, .per_node = per_node, .host_gib = host_gib, .device_fits = 1};
    double *dev = rt_malloc((size_t)n * sizeof *dev, "plan needs"), *host = rt_malloc((size_t)n * sizeof *host, "plan needs");
    int nodes = (n + per_node - 1) / per_node;
    double *node = rt_calloc((size_t)nodes, sizeof *node, "plan needs");
    for (int r = 0; r < n; r++) {
        dev[r] = need[r].device;
        host[r] = need[r].host;
        node[r / per_node] += need[r].host;
        v.device_fits &= need[r].device_fits;
    }
    v.device = largest(dev, n, &v.device_rank);
    v.host = largest(host, n, &v.host_rank);
    v.node_host = largest(node, nodes, &v.node);
    v.host_fits = host_gib <= 0 || v.node_host <= host_gib * MEM_GIB;
    v.fits = v.device_fits && v.host_fits;
    free(dev), free(host), free(node);
    return v;
}

/* Every rank of job j planned (rank 0 of the plan into t0 and p0, made here with plan_init);
 * the verdict on rank 0 of rt (every rank: whether it fits). With s->standin rank 0 of rt plans
 * every rank of the job in turn; else every rank of rt plans its own share (collective). */
static struct verdict plan_ranks(struct trainer *t0, struct mem_plan *p0, const struct job *j,
                                 const struct runtime *rt, const struct setup *s) {
    int n = j->cp * j->dp, per_node = j->cfg.device.gpus_per_node < n ? j->cfg.device.gpus_per_node : n;
    struct need *need = rt_calloc((size_t)n, sizeof *need, "plan needs");
    struct verdict v = {0};
    plan_init(p0, s);
    if (s->standin) {
        for (int r = 0; r < n; r++) {
            struct runtime pr = planned_runtime(rt, r, n, per_node);
            if (r == 0) {
                trainer_plan(t0, j, &pr, p0);
                need[0] = need_of(p0);
                continue;
            }
            struct mem_plan p;
            struct trainer *t = rt_calloc(1, sizeof *t, "trainer");
            plan_init(&p, s);
            trainer_plan(t, j, &pr, &p);
            need[r] = need_of(&p);
            trainer_free(t);
            free(t);
            mem_plan_free(&p);
        }
        v = judge(need, n, per_node, s->host_gib);
    } else {
        trainer_plan(t0, j, rt, p0);
        struct need mine = need_of(p0);
        MPI_CHECK(MPI_Gather(&mine, (int)sizeof mine, MPI_BYTE, need, (int)sizeof mine, MPI_BYTE, 0, rt->world_comm));
        if (rt->rank == 0) v = judge(need, n, per_node, s->host_gib);
        MPI_CHECK(MPI_Bcast(&v, (int)sizeof v, MPI_BYTE, 0, rt->world_comm));
    }
    free(need);
    return v;
}

/* The tile the model chose (model_tile). */
static void print_tiles(const struct trainer *t) {
    const struct cfg *c = &t->job.cfg;
    int tile = t->model.tile, T = (int)t->T, n = (T + tile - 1) / tile;
    char set[96];
    snprintf(set, sizeof set, c->memory.tile_tokens ? "memory.tile_tokens %d" : "memory.tile_tokens auto: the "
             "largest of 4096, 8192, 16384 that fits as 4096 does", c->memory.tile_tokens);
    if (c->memory.checkpointing == CKPT_NONE)
        printf("tiles: none (memory.checkpointing none keeps every activation of every layer whole)\n");
    else if (n == 1)
        printf("tiles: one of all %d tokens per rank (%s)\n", T, set);
    else
        printf("tiles: the norms, projections, RoPE, MLP and final norm run on %d tiles of %d tokens (%s); "
               "their scratch is sized by the tile\n", n, tile, set);
}

/* The ring's attention calls (ring_call_block). */
static void print_calls(const struct trainer *t) {
    const struct cfg *c = &t->job.cfg;
    int blk = t->model.ring.blk;
    char set[64];
    snprintf(set, sizeof set, c->memory.attention_block_tokens ? "memory.attention_block_tokens %d"
             : "memory.attention_block_tokens auto", c->memory.attention_block_tokens);
    if (t->model.qblk)
        printf("attention calls: blocks of at most %d query rows x %d keys (%s); the layers run attention query "
               "block by query block: q, the attention output and their gradients, the workspace and block output "
               "are sized by them\n", blk, blk, set);
    else if (blk)
        printf("attention calls: blocks of at most %d query rows x %d keys (%s); the attention workspace and "
               "block output are sized by them\n", blk, blk, set);
    else if (t->job.cp > 1)
        printf("attention calls: one per ring block (%s)\n", set);
    else
        printf("attention calls: one over all %lld tokens (%s)\n", (long long)t->T, set);
}

static void print_header(const struct trainer *t, const struct mem_plan *p) {
    char ckpt[16];
    const struct job *j = &t->job;
    const struct cfg *c = &j->cfg;
    int world = t->groups.world.size;
    printf("memory plan of %s: %d rank%s (cp %d x dp %d), seq_len %lld (%lld tokens per rank), %d sequence%s "
           "per step, backend %s, checkpointing %s\n", c->path, world, world > 1 ? "s" : "", j->cp, j->dp,
           (long long)t->L, (long long)t->T, c->train.seqs_per_step, c->train.seqs_per_step > 1 ? "s" : "",
           p->be.name, cfg_choice("memory.checkpointing", c->memory.checkpointing, ckpt, sizeof ckpt));
    print_tiles(t);
    print_calls(t);
    if (c->device.backend == BACKEND_CUDA) {
        printf("attention: %s\n", p->attention);
        if (c->parallel.transport == TRANSPORT_MPI || p->ranks_per_gpu > 1)
            printf("transport: MPI staged through pinned host memory (%d rank%s per GPU)\n", p->ranks_per_gpu,
                   p->ranks_per_gpu > 1 ? "s" : "");
        else
            printf("transport: NCCL (one GPU per rank)\n");
    }
}

static void print_offload(const struct trainer *t, const struct mem_plan *p) {
    const struct cfg *c = &t->job.cfg;
    const struct model *m = &t->model;
    long long T = m->T, host = m->T - m->split;
    char gib[32];
    mem_bytes_text(model_offloaded_bytes(m, m->split, m->keep), gib, sizeof gib);
    if (c->memory.checkpointing == CKPT_AUTO)
        printf("checkpointing auto: %d of %d layers save their attention output (selective), the others recompute "
               "it (full: the ring forward again in the backward)%s\n", m->keep, t->job.mc.n_layers,
               p->be.mem_free ? ", the most that fit the device and this rank's share of the host memory"
                              : " (no device limit: every layer)");
    if (c->memory.checkpointing == CKPT_NONE) {
        printf("offload: none (memory.checkpointing none saves every activation on the device)\n");
    } else if (c->memory.offload == OFFLOAD_NONE) {
        printf("offload: none (memory.offload none)\n");
    } else if (c->memory.offload == OFFLOAD_ALL) {
        printf("offload: memory.offload all: every layer's saved activations wait in host memory (%s)\n", gib);
    } else if (p->no_fit[0]) {
        printf("offload: memory.offload auto: the job does not fit even with every token offloaded (%s in host "
               "memory, as in the table): %s\n", gib, p->no_fit);
    } else if (c->device.backend != BACKEND_CUDA) {
        printf("offload: none (memory.offload auto never offloads on the cpu backend)\n");
    } else if (!p->be.mem_free) {
        printf("offload: memory.offload auto decides at start-up from the free GPU memory; without "
               "device.memory_gib the table keeps every layer's saved activations on the device\n");
    } else if (host == 0) {
        printf("offload: memory.offload auto: none needed (every layer's saved activations fit on the device with "
               "memory.reserve_gib %.2f GiB of the GPU left free)\n", c->memory.reserve_gib);
    } else {
        printf("offload: memory.offload auto keeps the last %lld of %lld tokens (%.1f%%) of every layer's saved "
               "activations in pinned host memory (%s), the fewest in steps of %d that leave memory.reserve_gib "
               "%.2f GiB of the GPU free\n", host, T, 100.0 * (double)host / (double)T, gib, OFFLOAD_STEP,
               c->memory.reserve_gib);
    }
    if (host > 0)
        printf("  (every layer keeps %lld tokens of each saved tensor on the device and stages the rest: the layer "
               "input in %d buffers of %lld tokens%s)\n", T - host, OFFLOAD_SLOTS, host,
               m->keep ? ", the attention output in one of all tokens" : "");
}

static void print_step_time(const struct trainer *t, const struct mem_plan *p) {
    const struct cfg *c = &t->job.cfg;
    int world = t->groups.world.size;
    double flops = train_flops_per_seq(&t->job.mc, t->L) * c->train.seqs_per_step;
    printf("step: %.3e model FLOPs (%d x %lld tokens, forward and backward; recomputation not counted)\n", flops,
           c->train.seqs_per_step, (long long)t->L);
    if (c->device.backend != BACKEND_CUDA) {
        printf("expected step time: not estimated on the cpu backend (the MFU assumptions are GPU measurements)\n");
        return;
    }
    double mfu = p->cudnn ? MFU_CUDNN : MFU_NATIVE;
    double peak = c->device.peak_tflops > 0 ? c->device.peak_tflops * 1e12 : TRAIN_PEAK_FLOPS;
    double s = flops / (mfu * peak * world);
    printf("expected step time: %.2f s (%.0f tokens/s) at an assumed %.0f%% MFU of %d GPU%s of %.0f TFLOP/s (%s): "
           "what %s reached on one H200 at 16K-64K tokens (docs/benchmarks.md)%s\n", s,
           (double)c->train.seqs_per_step * t->L / s, 100 * mfu, world, world > 1 ? "s" : "", peak / 1e12,
           c->device.peak_tflops > 0 ? "device.peak_tflops" : "an H100/H200; device.peak_tflops sets another",
           p->cudnn ? "cuDNN's attention" : "the native attention",
           t->job.cp > 1 ? "; ring communication that the compute does not hide is not counted" : "");
}

/* The smallest change of model state placement that makes job j fit: ZeRO stages above the
 * current one with the optimizer where it is, then the optimizer moved (device <-> host) at
 * the current stage and above (on one rank only ZeRO-3 with the optimizer on the host
 * differs); each candidate is planned for every rank (stand-ins, this process). Returns 1
 * with the settings in *zero, *opt and their verdict in *v; 0 when none fits. */
static int state_fix(const struct job *j, const struct runtime *rt, const struct setup *s, int *zero, int *opt,
                     struct verdict *v) {
    const struct cfg *c = &j->cfg;
    int world = j->cp * j->dp, other = c->memory.optimizer == OPTIMIZER_HOST ? OPTIMIZER_DEVICE : OPTIMIZER_HOST;
    int opts[2] = {c->memory.optimizer, other};
    struct setup s1 = *s;
    s1.standin = 1;
    for (int k = 0; k < 2; k++)
        for (int z = c->parallel.zero; z <= (world > 1 || opts[k] == OPTIMIZER_HOST ? 3 : c->parallel.zero); z++) {
            if (k == 0 && z == c->parallel.zero) continue;
            struct job *j1 = rt_malloc(sizeof *j1, "job");
            *j1 = *j;
            j1->cfg.parallel.zero = z;
            j1->cfg.memory.optimizer = opts[k];
            struct trainer *t = rt_calloc(1, sizeof *t, "trainer");
            struct mem_plan p;
            *v = plan_ranks(t, &p, j1, rt, &s1);
            trainer_free(t);
            free(t);
            mem_plan_free(&p);
            free(j1);
            if (v->fits) {
                *zero = z, *opt = opts[k];
                return 1;
            }
        }
    return 0;
}

static void print_advice(const struct trainer *t, const struct verdict *v, const struct runtime *rt,
                         const struct setup *s, FILE *f) {
    const struct cfg *c = &t->job.cfg;
    int shape[2];
    size_t rb[2];
    char b[32], d[32], h[32];
    model_saved_rows(&t->model, shape, rb);
    fprintf(f, "what to change:\n");
    int zero, opt;
    struct verdict fix;
    const char *where[] = {[OPTIMIZER_DEVICE] = "device", [OPTIMIZER_HOST] = "host"};
    if (state_fix(&t->job, rt, s, &zero, &opt, &fix)) {
        fprintf(f, "  - model state: --set parallel.zero=%d --set memory.optimizer=%s fits (planned for every rank: "
                "device %s per rank, host %s per node): the smallest change of ZeRO stage (now %d) and optimizer "
                "placement (now %s) that does\n", zero, where[opt], mem_bytes_text(fix.device, d, sizeof d),
                mem_bytes_text(fix.node_host, h, sizeof h), c->parallel.zero, where[c->memory.optimizer]);
    } else {
        fprintf(f, "  - model state: no ZeRO stage (now %d) or optimizer placement (now %s) makes it fit alone\n",
                c->parallel.zero, where[c->memory.optimizer]);
    }
    if (!v->host_fits) {
        fprintf(f, "  - host memory: fewer ranks per node (now %d, device.gpus_per_node), fewer offloaded tokens "
                "(memory.offload), or the optimizer on the device (memory.optimizer) lower what a node holds\n",
                v->per_node);
    }
    if (v->device_fits) return;
    fprintf(f, "  - fewer tokens per rank (now %lld = data.seq_len %lld / parallel.cp %d): more ranks in the ring "
            "(parallel.cp), or a shorter data.seq_len; the activations shrink with them\n", (long long)t->T,
            (long long)t->L, t->job.cp);
    if (c->memory.checkpointing != CKPT_NONE && c->memory.offload == OFFLOAD_NONE)
        fprintf(f, "  - memory.offload: auto or all (now none) keeps saved activations in pinned host memory\n");
    if (c->memory.checkpointing == CKPT_NONE)
        fprintf(f, "  - memory.checkpointing: selective or full (now none keeps every activation of every layer, "
                "and cannot offload)\n");
    else if (c->memory.checkpointing == CKPT_SELECTIVE)
        fprintf(f, "  - memory.checkpointing: full (now selective) saves no attention output (%s per layer), at "
                "the cost of re-running the ring in the backward\n", mem_bytes_text((double)rb[1] * (double)t->model.T, b, sizeof b));
}

/* The node whose host memory is largest: "node 1 (ranks 8-15)". */
static const char *node_text(const struct verdict *v, char *buf, size_t n) {
    int lo = v->node * v->per_node, hi = lo + v->per_node - 1 < v->ranks - 1 ? lo + v->per_node - 1 : v->ranks - 1;
    if (lo == hi) snprintf(buf, n, "node %d (rank %d)", v->node, lo);
    else snprintf(buf, n, "node %d (ranks %d-%d)", v->node, lo, hi);
    return buf;
}

/* The table and everything about it (rank 0). */
static void print_plan(const struct trainer *t, const struct mem_plan *p, const struct verdict *v) {
    print_header(t, p);
    printf("rank 0%s:\n", v->ranks > 1 ? " (every rank is planned; ranks differ only where their shares do)" : "");
    mem_plan_print(p, stdout, "  ");
    print_offload(t, p);
    run_print_optimizer(t);
    const struct pstore *ps = &t->model.ps;
    if (ps->shards > 1)
        printf("ZeRO-%d: each of the %d units (embedding, %d layers, head) cut into %d parts (whole multiples of %d "
               "floats); a layer's part is %lld parameters\n", ps->stage, ps->n_units, ps->Ly, ps->shards,
               PSTORE_ALIGN, (long long)ps->u[1].s);
    print_step_time(t, p);
    char dev[32], host[32], node[32], which[48];
    mem_bytes_text(v->device, dev, sizeof dev);
    mem_bytes_text(v->host, host, sizeof host);
    mem_bytes_text(v->node_host, node, sizeof node);
    if (v->ranks > 1)
        printf("largest device total: %s, rank %d; largest host total (pinned and plain): %s, rank %d; host per node "
               "(%d ranks each, device.gpus_per_node): largest %s, %s\n", dev, v->device_rank, host, v->host_rank,
               v->per_node, node, node_text(v, which, sizeof which));
}

/* One line for scripts, after everything else (rank 0). */
static void print_summary(const struct trainer *t, const struct mem_plan *p, const struct verdict *v) {
    const char *fit = p->gpu_gib <= 0 ? "unchecked" : v->fits ? "yes" : "no";
    printf("plan: device %.2f GiB per rank (rank %d), host %.2f GiB per rank (rank %d), %.2f GiB per node (%d ranks), "
           "offload %lld of %d tokens per layer, fits %s\n", v->device / MEM_GIB, v->device_rank, v->host / MEM_GIB,
           v->host_rank, v->node_host / MEM_GIB, v->per_node, (long long)(t->model.T - t->model.split), t->model.T,
           fit);
}

/* The fit line (rank 0). */
static void print_fit(const struct cfg *c, const struct mem_plan *p, const struct verdict *v) {
    double gpu = p->gpu_gib * MEM_GIB, hostmem = v->host_gib * MEM_GIB;
    char need[32], have[32], spare[32], node[32], hmem[32], which[48];
    mem_bytes_text(v->device, need, sizeof need);
    mem_bytes_text(gpu, have, sizeof have);
    mem_bytes_text(v->node_host, node, sizeof node);
    mem_bytes_text(hostmem, hmem, sizeof hmem);
    const char *hsrc = c->device.host_memory_gib > 0 ? "device.host_memory_gib"
                                                      : "this machine's physical memory less memory.host_reserve_gib, "
                                                        "device.host_memory_gib 0";
    if (p->gpu_gib <= 0 && c->device.backend == BACKEND_CUDA) {
        printf("fit: not checked: device.memory_gib is not set; add --set device.memory_gib=GIB (one GPU's "
               "memory, e.g. 139.5 for an H200) to check it and to let memory.offload: auto decide\n");
        return;
    }
    if (p->gpu_gib <= 0) {
        printf("fit: not checked: device.memory_gib is not set (--set device.memory_gib=GIB checks the backend "
               "memory against it)\n");
        return;
    }
    if (v->device_fits)
        printf("%s: %s of device memory per rank, of the %s GPU (device.memory_gib), %s to spare\n",
               v->fits ? "fits" : "device memory fits", need, have, mem_bytes_text(gpu - v->device, spare, sizeof spare));
    else
        printf("does not fit: %s of device memory per rank, the GPU has %s (device.memory_gib)%s\n", need, have,
               p->no_fit[0] ? "; memory.offload auto cannot make it fit (above)" : "");
    if (v->host_fits)
        printf("host memory fits: %s per node at most, %s, of %s (%s)\n", node, node_text(v, which, sizeof which),
               hmem, hsrc);
    else
        printf("does not fit: host memory: %s per node, %s (the pinned and plain host memory of its ranks), the node "
               "has %s (%s)\n", node, node_text(v, which, sizeof which), hmem, hsrc);
}

int run_plan(const struct job *j, const struct runtime *rt, int standin) {
    const struct cfg *c = &j->cfg;
    struct setup s = {.gpu_gib = c->device.memory_gib, .measured = 0, .ranks_per_gpu = 1, .standin = standin};
    if (c->device.memory_gib > 0) s.host_gib = mem_node_host_gib(c->device.host_memory_gib, c->memory.host_reserve_gib);
    struct mem_plan p;
    struct trainer *t = rt_calloc(1, sizeof *t, "trainer");
    struct verdict v = plan_ranks(t, &p, j, rt, &s); /* standin: rt is one rank (main.c) */
    if (rt->rank == 0) {
        print_plan(t, &p, &v);
        print_fit(c, &p, &v);
        if (!v.fits) print_advice(t, &v, rt, &s, stdout);
        print_summary(t, &p, &v);
        fflush(stdout);
    }
    int rc = v.fits ? 0 : 3;
    trainer_free(t);
    free(t);
    mem_plan_free(&p);
    return rc;
}

int run_check_fit(const struct job *j, const struct runtime *rt) {
#ifdef RT_HAVE_CUDA
    if (j->cfg.device.backend != BACKEND_CUDA) return 0;
    size_t free_b, total;
    cuda_device_memory(rt->local_rank, &free_b, &total); /* makes this rank's CUDA context */
    MPI_CHECK(MPI_Barrier(rt->world_comm));              /* and every other rank's */
    cuda_device_memory(rt->local_rank, &free_b, &total);
    int gpus = cuda_device_count();
    /* The host is not checked here: the run's host memory is what it is. */
    struct setup s = {.gpu_gib = free_b / MEM_GIB, .measured = 1, .ranks_per_gpu = (rt->local_size + gpus - 1) / gpus};
    struct mem_plan p;
    struct trainer *t = rt_calloc(1, sizeof *t, "trainer");
    struct verdict v = plan_ranks(t, &p, j, rt, &s);
    char need[32], have[32], all[32];
    mem_bytes_text(v.device, need, sizeof need);
    mem_bytes_text((double)free_b, have, sizeof have);
    mem_bytes_text((double)p.total[MEM_DEVICE], all, sizeof all);
    if (rt->rank == 0 && v.fits) {
        printf("memory plan: %s of device memory per rank, %s with the allowances (offload %lld of %d tokens per "
               "layer, tiles of %d tokens); %s free on the GPU at start-up\n", need, all,
               (long long)(t->model.T - t->model.split), t->model.T, t->model.tile, have);
    } else if (rt->rank == 0) {
        print_plan(t, &p, &v);
        print_summary(t, &p, &v);
        fflush(stdout);
        fprintf(stderr, "ringtrain: does not fit: the plan above needs %s of device memory per rank (its buffers, "
                "without the allowances)%s, %s is free on the GPU%s%s\n", need, p.ranks_per_gpu > 1 ? " (ranks sharing the GPU split it)" : "", have,
                p.no_fit[0] ? "; memory.offload auto: " : "", p.no_fit);
        print_advice(t, &v, rt, &s, stderr);
    }
    fflush(stdout);
    trainer_free(t);
    free(t);
    mem_plan_free(&p);
    return v.fits ? 0 : 3;
#else
    (void)j, (void)rt;
    return 0;
#endif
}
