/* ckpt_lock: the flock that keeps a second run out of a checkpoint directory (see ckpt_lock.h). */
#include "ckpt_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The holder named in the lock file, as "host h, pid p" (empty when it wrote nothing yet). */
static void holder(int fd, char *out, size_t outlen) {
    char buf[256], host[128];
    int pid;
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    if (sscanf(buf, "%127s %d", host, &pid) == 2) snprintf(out, outlen, " (host %s, pid %d)", host, pid);
    else out[0] = 0;
}

int ckpt_lock_acquire(struct ckpt_lock *l, const char *dir, char *why, size_t whylen) {
    char path[4200];
    l->fd = -1;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return snprintf(why, whylen, "cannot create: %s", strerror(errno)), -1;
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return snprintf(why, whylen, "cannot write %s: %s", CKPT_LOCK_FILE, strerror(errno)), -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char who[200];
        int e = errno;
        if (e == EWOULDBLOCK) {
            holder(fd, who, sizeof who);
            snprintf(why, whylen, "in use by another run%s; one run per checkpoint.dir", who);
        } else {
            snprintf(why, whylen, "cannot lock %s: %s", CKPT_LOCK_FILE, strerror(e));
        }
        close(fd);
        return -1;
    }
    char host[128] = "?", text[200];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    int n = snprintf(text, sizeof text, "%s %d\n", host, (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n || fsync(fd) != 0) { /* other hosts read it */
        snprintf(why, whylen, "cannot write %s: %s", CKPT_LOCK_FILE, strerror(errno));
        close(fd);
        return -1;
    }
    l->fd = fd;
    return 0;
}

void ckpt_lock_release(struct ckpt_lock *l) {
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}
