/* mapfile: owns opening a regular file (refusing FIFOs, devices and directories before a
 * read could block on them), mapping it read-only (open, fstat, S_ISREG, mmap), with the
 * error messages the file readers share, and reads of a mapping that survive the file
 * shrinking under them (SIGBUS turned into an error return). */
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void mapfile_reset(struct mapfile *m) {
    m->fd = -1;
    m->map = NULL;
    m->len = 0;
}

static const char *kind_of(mode_t mode) {
    return S_ISFIFO(mode) ? "a FIFO" : S_ISDIR(mode) ? "a directory" : S_ISCHR(mode) ? "a character device"
         : S_ISBLK(mode) ? "a block device" : S_ISSOCK(mode) ? "a socket" : "not a plain file";
}

/* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. */
int mapfile_open_regular(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb)) {
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file (%s)", path, kind_of(sb.st_mode));
    } else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    } else {
        return fd;
    }
    close(fd);
    return -1;
}

int mapfile_open(struct mapfile *m, const char *path, char *err, size_t errlen) {
    mapfile_reset(m);
    m->fd = mapfile_open_regular(path, err, errlen);
    if (m->fd < 0) {
        mapfile_reset(m);
        return -1;
    }
    struct stat sb;
    if (fstat(m->fd, &sb)) {
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size > SIZE_MAX) {
        snprintf(err, errlen, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)size,
                 strerror(EFBIG));
        goto fail;
    }
    if (size == 0) return 0;
    m->map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, m->fd, 0);
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        snprintf(err, errlen, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)size,
                 strerror(errno));
        goto fail;
    }
    m->len = (size_t)size;
    return 0;
fail:
    mapfile_close(m);
    return -1;
}

void mapfile_close(struct mapfile *m) {
    if (m->map) munmap(m->map, m->len);
    if (m->fd >= 0) close(m->fd);
    mapfile_reset(m);
}

/* The guarded read in progress on this thread: SIGBUS is synchronous, so it is delivered to
 * the thread whose read faulted, which jumps back out of the read. */
static _Thread_local sigjmp_buf *guard;

static void on_sigbus(int sig, siginfo_t *si, void *ctx) {
    (void)si, (void)ctx;
    if (guard) siglongjmp(*guard, 1);
    signal(sig, SIG_DFL); /* not a guarded read: the fault re-occurs and ends the process as before */
}

int mapfile_guarded(void (*read)(void *), void *arg) {
    static int installed;
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, NULL)) return 0; /* unguarded: a fault then ends the process */
        installed = 1;
    }
    sigjmp_buf env;
    if (sigsetjmp(env, 1)) { /* restores the signal mask: SIGBUS is blocked inside the handler */
        guard = NULL;
        return -1;
    }
    guard = &env;
    read(arg);
    guard = NULL;
    return 0;
}
