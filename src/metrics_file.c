/* metrics_file: log.metrics opened for a fresh or a resumed run (see metrics_file.h). */
#include "metrics_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether a record line belongs after the resume: a step, evaluation or checkpoint record
 * of a step beyond resumed_step, or a line cut short (no newline). Other lines are kept. */
static int replayed(const char *line, size_t len, int64_t resumed_step) {
    long long step;
    if (len == 0 || line[len - 1] != '\n') return 1;
    return (sscanf(line, "{\"step\":%lld", &step) == 1 || sscanf(line, "{\"eval_step\":%lld", &step) == 1 ||
            sscanf(line, "{\"event\":\"checkpoint\",\"step\":%lld", &step) == 1) && step > resumed_step;
}

/* Rewrite path without the replayed records. Returns 0 (also when there was no file or
 * nothing to drop), or -1 with err. */
static int drop_replayed(const char *path, int64_t resumed_step, char *err, size_t errlen) {
    FILE *in = fopen(path, "r");
    if (!in) {
        if (errno == ENOENT) return 0;
        return snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno)), -1;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno)), -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int64_t dropped = 0;
    int bad = 0;
    for (ssize_t n; (n = getline(&line, &cap, in)) > 0;) {
        if (replayed(line, (size_t)n, resumed_step)) dropped++;
        else bad |= fwrite(line, 1, (size_t)n, out) != (size_t)n;
    }
    free(line);
    bad |= ferror(in);
    fclose(in);
    bad |= fflush(out) != 0 || fsync(fileno(out)) != 0;
    bad |= fclose(out) != 0;
    if (bad || !dropped) {
        unlink(tmp);
        return bad ? (snprintf(err, errlen, "%s: cannot rewrite (I/O error)", path), -1) : 0;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot replace with %s: %s", path, tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

FILE *metrics_open(const char *path, int64_t resumed_step, char *err, size_t errlen) {
    if (resumed_step > 0 && drop_replayed(path, resumed_step, err, errlen)) return NULL;
    FILE *f = fopen(path, resumed_step > 0 ? "a" : "w");
    if (!f) snprintf(err, errlen, "%s: cannot open for writing: %s", path, strerror(errno));
    return f;
}
