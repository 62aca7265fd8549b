/* outputs: start-up checks of the paths a run writes (see outputs.h). */
#include "outputs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comm_mpi.h"
#include "hf_export.h"

static int fail(const struct cfg *c, const char *key, const char *path, const char *why, char *err, size_t errlen) {
    char where[CFG_PATH_MAX + 32];
    cfg_where(c, key, where, sizeof where);
    snprintf(err, errlen, "%s%s%s: %s: %s", where, strcmp(where, "--set") ? ": " : " ", key, path, why);
    return -1;
}

/* A file that can be written where it is, or created (and is removed again). */
static int check_file(const char *path, char *why, size_t whylen) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) return close(fd), 0;
    if (errno != ENOENT) return snprintf(why, whylen, "cannot write: %s", strerror(errno)), -1;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return snprintf(why, whylen, "cannot create: %s", strerror(errno)), -1;
    close(fd);
    unlink(path);
    return 0;
}

int outputs_check_train(const struct cfg *c, struct ckpt_lock *lock, char *err, size_t errlen) {
    char why[1024];
    lock->fd = -1;
    if (c->log.metrics[0] && check_file(c->log.metrics, why, sizeof why))
        return fail(c, "log.metrics", c->log.metrics, why, err, errlen);
    if (c->export_.dir[0] && hf_export_check(c->export_.dir, why, sizeof why)) {
        /* hf_export_check's message starts with the directory */
        size_t n = strlen(c->export_.dir);
        const char *what = !strncmp(why, c->export_.dir, n) && !strncmp(why + n, ": ", 2) ? why + n + 2 : why;
        return fail(c, "export.dir", c->export_.dir, what, err, errlen);
    }
    if (c->checkpoint.dir[0] && ckpt_lock_acquire(lock, c->checkpoint.dir, why, sizeof why))
        return fail(c, "checkpoint.dir", c->checkpoint.dir, why, err, errlen);
    return 0;
}

int outputs_check_eval(const struct cfg *c, const char *name, char *err, size_t errlen) {
    char why[1024], path[CFG_PATH_MAX + 64];
    const char *dir = c->eval.out;
    if (mkdir(dir, 0755) && errno != EEXIST) {
        snprintf(why, sizeof why, "cannot create the directory: %s", strerror(errno));
        return fail(c, "eval.out", dir, why, err, errlen);
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (check_file(path, why, sizeof why)) return fail(c, "eval.out", path, why, err, errlen);
    return 0;
}

int outputs_check_export(const char *dir, char *err, size_t errlen) {
    char why[1024];
    if (!hf_export_check(dir, why, sizeof why)) return 0;
    snprintf(err, errlen, "--export: %s", why);
    return -1;
}

/* The lock file's text ("host pid"), or "" when it cannot be read (why says so). */
static void lock_text(const char *dir, char *out, size_t outlen, char *why, size_t whylen) {
    char path[CFG_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_LOCK_FILE);
    out[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return;
    }
    ssize_t n = read(fd, out, outlen - 1);
    out[n > 0 ? n : 0] = 0;
    close(fd);
}

int outputs_check_shared(const struct cfg *c, const struct runtime *rt, char *err, size_t errlen) {
    if (!c->checkpoint.dir[0] || rt->world == 1) return 0;
    struct comm ctl;
    comm_mpi_init(&ctl, rt->world_comm, "ctl", c->parallel.timeout_s);
    char want[256], mine[256], why[600] = "";
    lock_text(c->checkpoint.dir, want, sizeof want, why, sizeof why);
    comm_broadcast(&ctl, want, sizeof want, COMM_U8, 0);
    int v = 0; /* the lowest rank that does not see rank 0's lock has the largest v */
    if (rt->rank > 0) {
        lock_text(c->checkpoint.dir, mine, sizeof mine, why, sizeof why);
        if (strcmp(mine, want)) {
            if (mine[0]) snprintf(why, sizeof why, "its %s names \"%.100s\"", CKPT_LOCK_FILE, strtok(mine, "\n"));
            v = rt->world - rt->rank;
        }
    }
    comm_all_reduce(&ctl, &v, &v, 1, COMM_I32, COMM_MAX);
    int rc = 0;
    if (v) {
        int who = rt->world - v;
        char msg[1200];
        if (rt->rank == who)
            snprintf(msg, sizeof msg, "rank %d (host %s) does not see the %s rank 0 holds there (%s); every rank "
                     "writes its own slices of a checkpoint, so checkpoint.dir must be on a file system every rank "
                     "sees", who, rt->host, CKPT_LOCK_FILE, why);
        comm_broadcast(&ctl, msg, sizeof msg, COMM_U8, who);
        msg[sizeof msg - 1] = 0;
        rc = fail(c, "checkpoint.dir", c->checkpoint.dir, msg, err, errlen);
    }
    comm_free(&ctl);
    return rc;
}
