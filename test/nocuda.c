/* nocuda: an LD_PRELOAD library (build/nocuda.so, CUDA builds) in whose presence the first
 * call of a CUDA runtime, cuBLAS, cuDNN or NCCL entry point that makes or uses a device
 * context prints "nocuda: NAME called" and ends the process with exit code 42. test_plan
 * runs --plan under it (a plan must touch no GPU) and a real run (which must be stopped, so
 * the shim is known to intercept). The entry points return int: cudaError_t and the
 * libraries' status types are enums, so the calls link and return as declared. */
#include <stdio.h>
#include <unistd.h>

static int hit(const char *name) {
    fprintf(stderr, "nocuda: %s called\n", name);
    fflush(stderr);
    _exit(42);
}

#define SHIM(name) \
    int name(void) { return hit(#name); }

SHIM(cudaGetDeviceCount)
SHIM(cudaSetDevice)
SHIM(cudaGetDevice)
SHIM(cudaDeviceGetAttribute)
SHIM(cudaDeviceGetPCIBusId)
SHIM(cudaFree)
SHIM(cudaMalloc)
SHIM(cudaMallocHost)
SHIM(cudaHostAlloc)
SHIM(cudaMemGetInfo)
SHIM(cudaStreamCreateWithFlags)
SHIM(cudaEventCreateWithFlags)
SHIM(cublasCreate_v2)
SHIM(cublasLtCreate)
SHIM(cudnnCreate)
SHIM(ncclGetUniqueId)
SHIM(ncclCommInitRank)
