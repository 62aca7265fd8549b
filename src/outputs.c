/* outputs: start-up checks of the paths a run writes (see outputs.h). */
#include "outputs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

int outputs_check_export(const char *dir, char *err, size_t errlen) {
    char why[1024];
    if (!hf_export_check(dir, why, sizeof why)) return 0;
    snprintf(err, errlen, "--export: %s", why);
    return -1;
}
