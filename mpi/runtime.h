/* runtime: the process's place in the job (rank, world, local rank, host) set up over MPI,
 * and the one error path: print "[rank host:pid] file:line what" and MPI_Abort the whole
 * job. Running without mpirun is a 1-rank job (MPI singleton). */
#ifndef RT_RUNTIME_H
#define RT_RUNTIME_H

#include <mpi.h>

struct runtime {
    int      rank, world;        /* in MPI_COMM_WORLD */
    int      local_rank, local_size; /* among the ranks of this host */
    int      pid;
    char     host[64];
    MPI_Comm world_comm;         /* a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN; MPI_COMM_NULL
                                    in the runtime of a planned rank (run_plan.c, --plan --ranks N:
                                    rank and world describe the job, no communication) */
};

void rt_init(struct runtime *rt, int *argc, char ***argv);
void rt_finalize(struct runtime *rt);

/* Print "[rank host:pid] file:line message" on stderr and abort every rank (exit code 1). */
_Noreturn void rt_fatal(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define RT_FATAL(...) rt_fatal(__FILE__, __LINE__, __VA_ARGS__)
/* The same for bad input found after the start-up checks (e.g. a non-finite value in the
 * weights being loaded): every rank ends with exit code 2. */
_Noreturn void rt_bad_input(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define RT_BAD_INPUT(...) rt_bad_input(__FILE__, __LINE__, __VA_ARGS__)
/* The same with another exit code for every rank (130: a wait given up after SIGINT). */
_Noreturn void rt_abort(int code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define RT_ABORT(code, ...) rt_abort((code), __FILE__, __LINE__, __VA_ARGS__)
/* The same for a job that does not fit in memory: every rank ends with exit code 3. */
_Noreturn void rt_no_fit(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define RT_NO_FIT(...) rt_no_fit(__FILE__, __LINE__, __VA_ARGS__)

#define MPI_CHECK(call)                                                      \
    do {                                                                     \
        int mpi_rc_ = (call);                                                \
        if (mpi_rc_ != MPI_SUCCESS) {                                        \
            char mpi_s_[MPI_MAX_ERROR_STRING];                               \
            int mpi_l_ = 0;                                                  \
            MPI_Error_string(mpi_rc_, mpi_s_, &mpi_l_);                      \
            rt_fatal(__FILE__, __LINE__, "%s -> %s", #call, mpi_s_);         \
        }                                                                    \
    } while (0)

/* Seconds on the monotonic clock (for timeouts and phase times). */
double rt_now(void);

/* malloc/calloc that abort the job with the size and purpose on failure. */
void *rt_malloc(size_t bytes, const char *what);
void *rt_calloc(size_t n, size_t size, const char *what);
/* The size of the largest rt_malloc / rt_calloc of this process since the last reset (reset
 * set: start counting again). Tests bound the host memory of a code path with it, e.g. a
 * checkpoint save allocates no full-model array. */
size_t rt_alloc_largest(int reset);

#endif
