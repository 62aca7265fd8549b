/* cuda_backend: the CUDA backend (struct backend on one GPU): bf16 activations and working
 * weights, fp32 master weights, gradients and moments, every op on one compute stream.
 * Plain C; built only with the CUDA build (RT_HAVE_CUDA). */
#ifndef RT_CUDA_BACKEND_H
#define RT_CUDA_BACKEND_H

#include <cuda_runtime_api.h>

#include "arena.h"
#include "backend.h"
#include "config.h"
#include "mem_plan.h"

struct cuda_backend_opts {
    int local_rank;          /* selects GPU local_rank % (visible GPUs) */
    int T, d, V;             /* shard tokens, model width, vocabulary: scratch sizes */
    int H, Hkv, D;           /* attention heads, kv heads, head dim */
    int ring_size, zigzag;   /* the ring the attention blocks come from */
    int attn_block;          /* its tokens per attention call (ring_call_block; 0: one call per block) */
    int attention;           /* enum cfg_attn_impl: auto | cudnn | native */
    int profile;             /* time every op with CUDA events (read with be->profile) */
};

/* Creates the stream, cuBLASLt and the attention (cuDNN plans, and cuDNN's workspace, outside
 * the arena: its size is known only once cuDNN has built its plans on the GPU);
 * be->attention says which attention runs. Nothing else is allocated until
 * cuda_backend_attach. */
struct backend *cuda_backend_create(const struct cuda_backend_opts *o);
/* The arena's blocks (a: laid out from the plan of the run, whose first buffers are
 * cuda_backend_plan's; arena_backend.h), then the backend's scratch buffers from it. */
void cuda_backend_attach(struct backend *be, struct arena *a);
void cuda_backend_destroy(struct backend *be);
cudaStream_t cuda_backend_stream(const struct backend *be);
/* The backend cuda_backend_create would make, as a memory plan: the plan backend takes the
 * CUDA table's activation size and weight sharing, and p records the backend's own buffers
 * (scratch, through the plan backend as the arena's; the cuBLAS and attention workspaces
 * outside it) and allowances for the CUDA context, the libraries and cuDNN's own workspace;
 * p->cudnn and p->attention say which attention would run. Pure size arithmetic: no CUDA
 * call (it works without a GPU; it assumes sm_80+), except in a run's plan (p->measured),
 * which asks the GPU whether cuDNN takes the shapes, as cuda_backend_create will. */
void cuda_backend_plan(const struct cuda_backend_opts *o, struct mem_plan *p);
/* Free and total memory of the GPU cuda_backend_create picks for this local rank (this
 * creates the process's CUDA context on it). */
void cuda_device_memory(int local_rank, size_t *free_b, size_t *total);
/* Number of GPUs this process can see. */
int cuda_device_count(void);
/* PCI bus id ("0000:41:00.0") of the GPU cuda_backend_create picks for this local rank
 * (local_rank % visible GPUs), to bind near it before the backend exists. 0, or -1 without one. */
int cuda_device_pci_bus_id(int local_rank, char *busid, int len);

#endif
