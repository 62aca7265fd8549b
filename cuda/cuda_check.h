/* cuda_check: the error path of every CUDA runtime call and kernel launch. A failure prints
 * "[rank host:pid] file:line call -> error" through rt_fatal (mpi/runtime.h), which aborts
 * every rank. Plain C and C++ (the .cu files include it; they do not see mpi.h, so rt_fatal
 * is declared here with the same signature as in runtime.h).
 *   CUDA_CHECK(cudaMalloc(&p, n));
 *   kernel<<<grid, block, smem, stream>>>(...); CUDA_LAUNCH_CHECK("kernel name"); */
#ifndef RT_CUDA_CHECK_H
#define RT_CUDA_CHECK_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

__attribute__((noreturn, format(printf, 3, 4))) void rt_fatal(const char *file, int line,
                                                              const char *fmt, ...);

#ifdef __cplusplus
}
#endif

#define CUDA_CHECK(call)                                                                  \
    do {                                                                                  \
        cudaError_t cuda_rc_ = (call);                                                    \
        if (cuda_rc_ != cudaSuccess)                                                      \
            rt_fatal(__FILE__, __LINE__, "%s -> %s (%s)", #call, cudaGetErrorString(cuda_rc_), \
                     cudaGetErrorName(cuda_rc_));                                         \
    } while (0)

/* After every launch: a bad configuration (grid, shared memory, missing sm code) shows here;
 * a fault inside the kernel shows at the next synchronizing call. */
#define CUDA_LAUNCH_CHECK(what)                                                           \
    do {                                                                                  \
        cudaError_t cuda_rc_ = cudaGetLastError();                                        \
        if (cuda_rc_ != cudaSuccess)                                                      \
            rt_fatal(__FILE__, __LINE__, "launch of %s -> %s (%s)", (what),               \
                     cudaGetErrorString(cuda_rc_), cudaGetErrorName(cuda_rc_));           \
    } while (0)

#endif
