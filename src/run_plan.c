/* run_plan: the memory plan of a job (mem_plan.h) as a command and as a check.
 * --plan (run_plan): every rank plans its own share by running the trainer's allocation
 * sequence against the plan backend (train.h: trainer_plan: no GPU is touched, no weights
 * are made); rank 0 prints its table, what memory.offload decided, the optimizer's ZeRO
 * slice, the expected step time, and whether the job fits device.memory_gib. Exit 0 when it
 * fits or the fit is not checked, 3 (with what to change) when it does not.
 * A cuda run (run_check_fit), before anything is allocated: the same plan against what the
 * GPU has free once the CUDA context exists. Its allowances are then not held against that
 * memory (the context is already out of it; the libraries' handles are small), so the check
 * fails only where the job surely cannot run: exit 3 with the table at start-up instead of
 * a failing cudaMalloc later (which still reports its own no-fit as the backstop). */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>

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

/* The plan over all ranks: the largest device need, whose it is, and whether all fit. */
struct verdict {
    double need;
    int    rank, fits;
};

static void plan_job(struct trainer *t, struct mem_plan *p, struct verdict *v, const struct job *j,
                     const struct runtime *rt) {
    trainer_plan(t, j, rt, p);
    struct { double v; int r; } in = {(double)mem_plan_need(p), rt->rank}, out;
    MPI_CHECK(MPI_Allreduce(&in, &out, 1, MPI_DOUBLE_INT, MPI_MAXLOC, rt->world_comm));
    int fits = mem_plan_fits(p) && !p->no_fit[0];
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &fits, 1, MPI_INT, MPI_MIN, rt->world_comm));
    *v = (struct verdict){out.v, out.r, fits};
}

/* The tile the model chose (model_tile). */
static void print_tiles(const struct trainer *t) {
    const struct cfg *c = &t->job.cfg;
    int tile = t->model.tile, T = (int)t->T, n = (T + tile - 1) / tile;
    char set[64];
    snprintf(set, sizeof set, c->memory.tile_tokens ? "memory.tile_tokens %d" : "memory.tile_tokens auto",
             c->memory.tile_tokens);
    if (c->memory.checkpointing == CKPT_NONE)
        printf("tiles: none (memory.checkpointing none keeps every activation of every layer whole)\n");
    else if (n == 1)
        printf("tiles: one of all %d tokens per rank (%s)\n", T, set);
    else
        printf("tiles: the norms, projections, RoPE, MLP and final norm run on %d tiles of %d tokens (%s); "
               "their scratch is sized by the tile\n", n, tile, set);
}

static void print_header(const struct trainer *t, const struct mem_plan *p, const struct runtime *rt) {
    const struct job *j = &t->job;
    const struct cfg *c = &j->cfg;
    printf("memory plan of %s: %d rank%s (cp %d x dp %d), seq_len %lld (%lld tokens per rank), %d sequence%s "
           "per step, backend %s, checkpointing %s\n", c->path, rt->world, rt->world > 1 ? "s" : "", j->cp, j->dp,
           (long long)t->L, (long long)t->T, c->train.seqs_per_step, c->train.seqs_per_step > 1 ? "s" : "",
           p->be.name, (const char *[]){"none", "full", "selective"}[c->memory.checkpointing]);
    print_tiles(t);
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
    int Ly = t->job.mc.n_layers, k = t->model.n_host;
    size_t bytes[2];
    int nsets = model_saved_sizes(&t->model, bytes);
    char gib[32];
    mem_bytes_text((double)k * (double)(bytes[0] + (nsets > 1 ? bytes[1] : 0)), gib, sizeof gib);
    if (c->memory.checkpointing == CKPT_NONE) {
        printf("offload: none (memory.checkpointing none saves every activation on the device)\n");
    } else if (c->memory.offload == OFFLOAD_NONE) {
        printf("offload: none (memory.offload none)\n");
    } else if (c->memory.offload == OFFLOAD_ALL) {
        printf("offload: memory.offload all: the saved activations of all %d layers wait in host memory (%s)\n", Ly,
               gib);
    } else if (p->no_fit[0]) {
        printf("offload: memory.offload auto: the job does not fit even with all %d layers offloaded (%s in host "
               "memory, as in the table): %s\n", Ly, gib, p->no_fit);
    } else if (c->device.backend != BACKEND_CUDA) {
        printf("offload: none (memory.offload auto never offloads on the cpu backend)\n");
    } else if (!p->be.mem_free) {
        printf("offload: memory.offload auto decides at start-up from the free GPU memory; without "
               "device.memory_gib the table keeps every layer's saved activations on the device\n");
    } else if (k == 0) {
        printf("offload: memory.offload auto: none needed (every layer's saved activations fit on the device with "
               "memory.reserve_gib %.2f GiB of the GPU left free)\n", c->memory.reserve_gib);
    } else {
        printf("offload: memory.offload auto keeps the saved activations of %d of %d layers in pinned host memory "
               "(%s), the fewest that leave memory.reserve_gib %.2f GiB of the GPU free\n", k, Ly, gib,
               c->memory.reserve_gib);
    }
    if (k > 0)
        printf("  (each saved tensor keeps %d layers and %d copy slots on the device)\n", Ly - k, OFFLOAD_SLOTS);
}

static void print_step_time(const struct trainer *t, const struct mem_plan *p, const struct runtime *rt) {
    const struct cfg *c = &t->job.cfg;
    double flops = train_flops_per_seq(&t->job.mc, t->L) * c->train.seqs_per_step;
    printf("step: %.3e model FLOPs (%d x %lld tokens, forward and backward; recomputation not counted)\n", flops,
           c->train.seqs_per_step, (long long)t->L);
    if (c->device.backend != BACKEND_CUDA) {
        printf("expected step time: not estimated on the cpu backend (the MFU assumptions are GPU measurements)\n");
        return;
    }
    double mfu = p->cudnn ? MFU_CUDNN : MFU_NATIVE;
    double s = flops / (mfu * TRAIN_PEAK_FLOPS * rt->world);
    printf("expected step time: %.2f s (%.0f tokens/s) at an assumed %.0f%% MFU of %d GPU%s: what %s reached on "
           "one H200 at 16K-64K tokens (docs/benchmarks.md)%s\n", s, (double)c->train.seqs_per_step * t->L / s,
           100 * mfu, rt->world, rt->world > 1 ? "s" : "", p->cudnn ? "cuDNN's attention" : "the native attention",
           t->job.cp > 1 ? "; ring communication that the compute does not hide is not counted" : "");
}

static void print_advice(const struct trainer *t, FILE *f) {
    const struct cfg *c = &t->job.cfg;
    size_t bytes[2];
    char b[32];
    model_saved_sizes(&t->model, bytes);
    fprintf(f, "what to change:\n");
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
                "the cost of re-running the ring in the backward\n", mem_bytes_text((double)bytes[1], b, sizeof b));
    const struct pstore *ps = &t->model.ps;
    if (ps->stage < 3 && t->world.size > 1)
        fprintf(f, "  - parallel.zero: %d (now %d) shards %s over the %d ranks\n", ps->stage + 1, ps->stage,
                (const char *[]){"the master weights and AdamW moments", "the gradients", "the working weights"}[ps->stage],
                t->world.size);
    if (!ps->host_opt)
        fprintf(f, "  - memory.optimizer: host (now device) keeps the master weights, moments and reduced gradients "
                "in pinned host memory (%s per rank)\n", mem_bytes_text(4.0 * (double)ps->S * sizeof(float), b, sizeof b));
}

/* The table and everything about it (rank 0). */
static void print_plan(const struct trainer *t, const struct mem_plan *p, const struct verdict *v,
                       const struct runtime *rt) {
    print_header(t, p, rt);
    printf("rank 0%s:\n", rt->world > 1 ? " (every rank plans its own share)" : "");
    mem_plan_print(p, stdout, "  ");
    print_offload(t, p);
    run_print_optimizer(t);
    const struct pstore *ps = &t->model.ps;
    if (ps->shards > 1)
        printf("ZeRO-%d: each of the %d units (embedding, %d layers, head) cut into %d parts (whole multiples of %d "
               "floats); a layer's part is %lld parameters\n", ps->stage, ps->n_units, ps->Ly, ps->shards,
               PSTORE_ALIGN, (long long)ps->u[1].s);
    print_step_time(t, p, rt);
    char need[32];
    mem_bytes_text(v->need, need, sizeof need);
    if (rt->world > 1) printf("largest device total: %s, rank %d\n", need, v->rank);
}

/* One line for scripts, after everything else (rank 0). */
static void print_summary(const struct trainer *t, const struct mem_plan *p, const struct verdict *v) {
    const char *fit = p->gpu_gib <= 0 ? "unchecked" : v->fits ? "yes" : "no";
    printf("plan: device %.2f GiB per rank, host %.2f GiB per rank, offload %d of %d layers, fits %s\n",
           v->need / MEM_GIB, p->total[MEM_HOST] / MEM_GIB, t->model.n_host, t->job.mc.n_layers, fit);
}

int run_plan(const struct job *j, const struct runtime *rt) {
    const struct cfg *c = &j->cfg;
    struct mem_plan p;
    struct verdict v;
    mem_plan_init(&p, c->device.memory_gib, 0, 1);
    struct trainer *t = rt_calloc(1, sizeof *t, "trainer");
    plan_job(t, &p, &v, j, rt);
    if (rt->rank == 0) {
        print_plan(t, &p, &v, rt);
        double gpu = p.gpu_gib * MEM_GIB;
        char need[32], have[32], spare[32];
        mem_bytes_text(v.need, need, sizeof need);
        mem_bytes_text(gpu, have, sizeof have);
        if (p.gpu_gib <= 0 && c->device.backend == BACKEND_CUDA) {
            printf("fit: not checked: device.memory_gib is not set; add --set device.memory_gib=GIB (one GPU's "
                   "memory, e.g. 139.5 for an H200) to check it and to let memory.offload: auto decide\n");
        } else if (p.gpu_gib <= 0) {
            printf("fit: not checked: device.memory_gib is not set (--set device.memory_gib=GIB checks the backend "
                   "memory against it)\n");
        } else if (v.fits) {
            printf("fits: %s of device memory per rank, of the %s GPU (device.memory_gib), %s to spare\n", need, have,
                   mem_bytes_text(gpu - v.need, spare, sizeof spare));
        } else {
            printf("does not fit: %s of device memory per rank, the GPU has %s (device.memory_gib)%s\n", need, have,
                   p.no_fit[0] ? "; memory.offload auto cannot make it fit (above)" : "");
            print_advice(t, stdout);
        }
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
    struct mem_plan p;
    struct verdict v;
    mem_plan_init(&p, free_b / MEM_GIB, 1, (rt->local_size + gpus - 1) / gpus);
    struct trainer *t = rt_calloc(1, sizeof *t, "trainer");
    plan_job(t, &p, &v, j, rt);
    char need[32], have[32], all[32];
    mem_bytes_text(v.need, need, sizeof need);
    mem_bytes_text((double)free_b, have, sizeof have);
    mem_bytes_text((double)p.total[MEM_DEVICE], all, sizeof all);
    if (rt->rank == 0 && v.fits) {
        printf("memory plan: %s of device memory per rank, %s with the allowances (offload %d of %d layers, tiles "
               "of %d tokens); %s free on the GPU at start-up\n", need, all, t->model.n_host, t->job.mc.n_layers,
               t->model.tile, have);
    } else if (rt->rank == 0) {
        print_plan(t, &p, &v, rt);
        print_summary(t, &p, &v);
        fflush(stdout);
        fprintf(stderr, "ringtrain: does not fit: the plan above needs %s of device memory per rank (its buffers, "
                "without the allowances)%s, %s is free on the GPU%s%s\n", need, p.ranks_per_gpu > 1 ? " (ranks sharing the GPU split it)" : "", have,
                p.no_fit[0] ? "; memory.offload auto: " : "", p.no_fit);
        print_advice(t, stderr);
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
