/* comm_staged: struct comm on DEVICE buffers carried by MPI through pinned host buffers (CUDA
 * build only). Slower than NCCL, but any number of ranks may share one GPU, so the CUDA
 * backend's multi-rank paths can be tested on a single GPU. It wraps an MPI communicator
 * from comm_mpi_init (timeouts, messages and dtype mapping are the MPI transport's; bf16
 * moves but does not reduce). Every operation follows the work queued on the compute stream
 * (device->host copies on it, then a wait for them); results are copied host->device on the
 * compute stream, so later work there sees them. */
#ifndef RT_COMM_STAGED_H
#define RT_COMM_STAGED_H

#ifdef RT_HAVE_CUDA

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <stddef.h>

#include "comm.h"

#define COMM_STAGED_RING_SLOTS 2 /* ring exchanges in flight at once (the ring backward uses 2) */
/* Pinned buffers of max_bytes each: send and recv of every ring slot and of one collective. */
#define COMM_STAGED_BUFFERS (2 + 2 * COMM_STAGED_RING_SLOTS)

/* Collective over `parent`; the calling rank's GPU must be current. max_bytes bounds every
 * buffer one operation stages on one side: a ring message, an all-reduce or broadcast
 * buffer, reduce-scatter's send (size x count elements), all-gather's recv (size x count).
 * Pinned memory taken: COMM_STAGED_BUFFERS x max_bytes; it never grows: a larger operation
 * is a fatal error naming both sizes. */
void comm_staged_init(struct comm *c, MPI_Comm parent, const char *name, double timeout_s,
                      cudaStream_t compute, size_t max_bytes);

#endif /* RT_HAVE_CUDA */
#endif
