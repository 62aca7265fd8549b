/* runtime: MPI bootstrap, process identity for messages, and the abort path. */
#include "runtime.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "waits.h"

/* Identity used by rt_fatal, which may be called from anywhere. */
static struct { int rank, pid; char host[64]; } ident = {-1, 0, "?"};

void rt_init(struct runtime *rt, int *argc, char ***argv) {
    memset(rt, 0, sizeof *rt);
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "ringtrain: MPI_Init_thread failed\n");
        exit(1);
    }
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &rt->world_comm));
    MPI_CHECK(MPI_Comm_rank(rt->world_comm, &rt->rank));
    MPI_CHECK(MPI_Comm_size(rt->world_comm, &rt->world));
    MPI_Comm local;
    MPI_CHECK(MPI_Comm_split_type(rt->world_comm, MPI_COMM_TYPE_SHARED, rt->rank, MPI_INFO_NULL, &local));
    MPI_CHECK(MPI_Comm_rank(local, &rt->local_rank));
    MPI_CHECK(MPI_Comm_size(local, &rt->local_size));
    MPI_CHECK(MPI_Comm_free(&local));
    waits_init();
    rt->pid = (int)getpid();
    if (gethostname(rt->host, sizeof rt->host) != 0) snprintf(rt->host, sizeof rt->host, "?");
    rt->host[sizeof rt->host - 1] = 0;
    ident.rank = rt->rank;
    ident.pid = rt->pid;
    memcpy(ident.host, rt->host, sizeof ident.host);
}

void rt_finalize(struct runtime *rt) {
    waits_finalize();
    MPI_CHECK(MPI_Comm_free(&rt->world_comm));
    MPI_Finalize();
}

static _Noreturn void die(int code, const char *file, int line, const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "[%d %s:%d] %s:%d %s\n", ident.rank, ident.host, ident.pid, file, line, msg);
    fflush(stderr);
    int up = 0;
    MPI_Initialized(&up);
    if (up) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

void rt_fatal(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    die(1, file, line, fmt, ap);
}

void rt_bad_input(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    die(2, file, line, fmt, ap);
}

void rt_abort(int code, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    die(code, file, line, fmt, ap);
}

void rt_no_fit(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    die(3, file, line, fmt, ap);
}

double rt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* The largest rt_malloc / rt_calloc since the last rt_alloc_largest(1) (see runtime.h). */
static size_t largest_alloc;

size_t rt_alloc_largest(int reset) {
    size_t n = largest_alloc;
    if (reset) largest_alloc = 0;
    return n;
}

void *rt_malloc(size_t bytes, const char *what) {
    if (bytes > largest_alloc) largest_alloc = bytes;
    void *p = malloc(bytes ? bytes : 1);
    if (!p) rt_fatal(__FILE__, __LINE__, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *rt_calloc(size_t n, size_t size, const char *what) {
    if (n * size > largest_alloc) largest_alloc = n * size;
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) rt_fatal(__FILE__, __LINE__, "out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}
