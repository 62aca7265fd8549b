/* cuda_backend: the CUDA backend (struct backend on one GPU): bf16 activations and working
 * weights, fp32 master weights, gradients and moments, every op on one compute stream.
 * Plain C; built only with the CUDA build (RT_HAVE_CUDA). */
#ifndef RT_CUDA_BACKEND_H
#define RT_CUDA_BACKEND_H

#include <cuda_runtime_api.h>

#include "backend.h"

/* Selects GPU local_rank % (visible GPUs), creates the stream, cuBLASLt and the scratch
 * buffers sized for shards of T tokens of a model of width d and vocabulary V. profile:
 * time every op with CUDA events (read with be->profile). */
struct backend *cuda_backend_create(int local_rank, int T, int d, int V, int profile);
void cuda_backend_destroy(struct backend *be);
cudaStream_t cuda_backend_stream(const struct backend *be);
/* Number of GPUs this process can see. */
int cuda_device_count(void);

#endif
