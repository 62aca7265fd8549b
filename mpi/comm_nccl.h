/* comm_nccl: the NCCL implementation of struct comm, on DEVICE buffers (CUDA build only).
 * It owns one NCCL communicator, its own communication stream (non-blocking) and the events
 * that order it against the caller's compute stream: every operation starts after the work
 * already queued on the compute stream, and the compute stream waits for its result (events
 * only, no device-wide synchronization). Every operation is also waited for on the host
 * (polling its event with the timeout, NCCL's asynchronous errors and the stop signal:
 * waits.h), which aborts the communicator and then the job naming the ranks that stopped
 * answering; a started reduce-scatter or all-gather only at its coll_wait, so the host and
 * the compute stream run on while it is in flight. Up to 8 started ones may be in flight. */
#ifndef RT_COMM_NCCL_H
#define RT_COMM_NCCL_H

#ifdef RT_HAVE_CUDA

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include "comm.h"
#include "runtime.h"

/* Every NCCL call: on failure "[rank host:pid] file:line call -> error (NCCL's last message)"
 * through rt_fatal, which aborts every rank. */
#define NCCL_CHECK(call)                                                                  \
    do {                                                                                  \
        ncclResult_t nccl_rc_ = (call);                                                   \
        if (nccl_rc_ != ncclSuccess)                                                      \
            rt_fatal(__FILE__, __LINE__, "%s -> %s (%s)", #call, ncclGetErrorString(nccl_rc_), \
                     ncclGetLastError(NULL));                                             \
    } while (0)

/* One NCCL communicator over the ranks of `parent` (collective over parent: rank 0 makes the
 * unique id and broadcasts it with MPI). The calling rank's GPU must be current already
 * (cudaSetDevice), one GPU per rank: NCCL refuses two ranks on one GPU (use comm_staged for
 * that). `compute` is the stream the caller's kernels run on (0 for the legacy default
 * stream); timeout_s bounds every wait. Up to 4 ring exchanges may be in flight. */
void comm_nccl_init(struct comm *c, MPI_Comm parent, const char *name, double timeout_s,
                    cudaStream_t compute);

#endif /* RT_HAVE_CUDA */
#endif
