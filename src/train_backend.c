/* train_backend: the trainer's backend and transports, for a run or a plan (see
 * train_backend.h). */
#include "train_backend.h"

#include <stdlib.h>

#include "arena_backend.h"
#include "comm_mpi.h"
#include "comm_plan.h"
#include "ring.h"
#ifdef RT_HAVE_CUDA
#include "comm_nccl.h"
#include "comm_staged.h"
#include "cuda_backend.h"
#endif

#ifdef RT_HAVE_CUDA
static struct cuda_backend_opts cuda_opts(const struct trainer *t, const struct runtime *rt) {
    const struct cfg *c = &t->job.cfg;
    const struct model_config *mc = &t->job.mc;
    return (struct cuda_backend_opts){
        .local_rank = rt->local_rank, .T = (int)t->T, .d = mc->dim, .V = mc->vocab_size, .H = mc->n_heads,
        .Hkv = mc->n_kv_heads, .D = mc->head_dim, .ring_size = t->job.cp,
        .zigzag = c->parallel.attention == RING_ZIGZAG,
        .attn_block = ring_call_block(c->memory.attention_block_tokens, t->job.cp, (int)t->T),
        .attention = c->device.attention,
        .profile = c->log.profile};
}

/* NCCL when every rank of the host has a GPU of its own (or when parallel.transport says
 * so), else MPI staged through pinned host memory. */
static int use_nccl(const struct trainer *t, const struct runtime *rt, int gpus) {
    const struct cfg *c = &t->job.cfg;
    int own_gpu = rt->local_size <= gpus;
    int nccl = c->parallel.transport == TRANSPORT_NCCL || (c->parallel.transport == TRANSPORT_AUTO && own_gpu);
    if (nccl && !own_gpu)
        RT_FATAL("parallel.transport nccl: %d ranks on this host share %d GPU(s); NCCL needs one GPU per "
                 "rank (use parallel.transport: mpi)", rt->local_size, gpus);
    return nccl;
}

/* The staged transport's buffer sizes. The world moves one padded unit of the parameter
 * store at a time (pstore.h: gradients reduced, working weights gathered); the ring moves K|V. */
static void staged_bytes(const struct trainer *t, size_t *world, size_t *ring) {
    const struct cfg *c = &t->job.cfg;
    const struct model_config *mc = &t->job.mc;
    size_t kv = (size_t)2 * t->T * mc->n_kv_heads * mc->head_dim * sizeof(float);
    struct pstore ps;
    pstore_layout(&ps, mc, c->parallel.zero, c->memory.optimizer == OPTIMIZER_HOST, t->groups.world.size,
                  t->groups.rank);
    size_t unit = (size_t)pstore_max_unit(&ps) * sizeof(float);
    pstore_free(&ps);
    *world = unit > kv ? unit : kv;
    *ring = kv;
}
#endif

const struct backend *train_backend_open(struct trainer *t, const struct runtime *rt) {
    const struct cfg *c = &t->job.cfg;
    MPI_Comm ring;
    groups_split_ring(&t->groups, rt->world_comm, &ring);
    const struct backend *be;
    if (c->device.backend == BACKEND_CPU) {
        t->cpu = rt_malloc(sizeof *t->cpu, "cpu backend");
        *t->cpu = cpu_backend;
        be = t->cpu;
        comm_mpi_init(&t->world, rt->world_comm, "world", c->parallel.timeout_s);
        comm_mpi_init(&t->cp, ring, "cp", c->parallel.timeout_s);
    } else {
#ifdef RT_HAVE_CUDA
        struct cuda_backend_opts go = cuda_opts(t, rt);
        struct backend *g = cuda_backend_create(&go);
        cudaStream_t s = cuda_backend_stream(g);
        int gpus = cuda_device_count();
        if (use_nccl(t, rt, gpus)) {
            comm_nccl_init(&t->world, rt->world_comm, "world", c->parallel.timeout_s, s);
            comm_nccl_init(&t->cp, ring, "cp", c->parallel.timeout_s, s);
        } else {
            size_t world_bytes, ring_bytes;
            staged_bytes(t, &world_bytes, &ring_bytes);
            comm_staged_init(&t->world, rt->world_comm, "world", c->parallel.timeout_s, s, world_bytes);
            comm_staged_init(&t->cp, ring, "cp", c->parallel.timeout_s, s, ring_bytes);
        }
        t->cuda = g;
        t->gpu_sharing = (rt->local_size + gpus - 1) / gpus;
        be = g;
#else
        RT_FATAL("device.backend cuda: this build has no CUDA backend");
#endif
    }
    MPI_CHECK(MPI_Comm_free(&ring));
    return be;
}

void train_backend_budget(struct trainer *t, double *gpu_gib, int *ranks_per_gpu) {
    *gpu_gib = 0;
    *ranks_per_gpu = t->gpu_sharing;
    if (!t->cuda) return;
    comm_barrier(&t->ctl); /* every rank of the host has made its backend and transports */
    *gpu_gib = (double)t->cuda->mem_free(t->cuda) / MEM_GIB;
    comm_barrier(&t->ctl);
}

void train_backend_attach(struct trainer *t) {
    if (t->cpu) arena_backend_attach(t->cpu, &t->arena);
#ifdef RT_HAVE_CUDA
    if (t->cuda) cuda_backend_attach(t->cuda, &t->arena);
#endif
}

const struct backend *train_backend_plan(struct trainer *t, const struct runtime *rt, struct mem_plan *p) {
    const struct cfg *c = &t->job.cfg;
    if (c->device.backend == BACKEND_CPU) {
        mem_plan_like(p, &cpu_backend);
    } else {
#ifdef RT_HAVE_CUDA
        struct cuda_backend_opts go = cuda_opts(t, rt);
        cuda_backend_plan(&go, p);
        int gpus = (rt->local_size + p->ranks_per_gpu - 1) / p->ranks_per_gpu;
        if (!use_nccl(t, rt, gpus)) {
            size_t world_bytes, ring_bytes;
            staged_bytes(t, &world_bytes, &ring_bytes);
            mem_plan_add(p, "MPI staging buffers (world)", MEM_HOST, 0, world_bytes, COMM_STAGED_BUFFERS);
            mem_plan_add(p, "MPI staging buffers (cp)", MEM_HOST, 0, ring_bytes, COMM_STAGED_BUFFERS);
        }
        t->gpu_sharing = p->ranks_per_gpu;
#else
        RT_FATAL("device.backend cuda: this build has no CUDA backend");
#endif
    }
    if (rt->world_comm == MPI_COMM_NULL) {
        comm_plan_init(&t->world, &t->groups.world, "world");
        comm_plan_init(&t->cp, &t->groups.ring, "cp");
    } else {
        MPI_Comm ring;
        groups_split_ring(&t->groups, rt->world_comm, &ring);
        comm_mpi_init(&t->world, rt->world_comm, "world", c->parallel.timeout_s);
        comm_mpi_init(&t->cp, ring, "cp", c->parallel.timeout_s);
        MPI_CHECK(MPI_Comm_free(&ring));
    }
    return mem_plan_backend(p);
}

void train_backend_close(struct trainer *t) {
    comm_free(&t->cp);
    comm_free(&t->world);
#ifdef RT_HAVE_CUDA
    if (t->cuda) cuda_backend_destroy(t->cuda);
#endif
    if (t->cpu) {
        if (t->cpu->arena) arena_backend_detach(t->cpu);
        free(t->cpu);
    }
}
