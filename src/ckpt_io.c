/* ckpt_io: a rank's reads and writes of checkpoint files (see ckpt_io.h). */
#include "ckpt_io.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "runtime.h"

const char *const ckpt_file_names[CKPT_NFILES] = {"model.bin", "optim.bin"};

#define IO_CHUNK ((size_t)64 << 20) /* bytes per read or write call */

/* pwrite all of p at `at`, counting into w and applying its fault hooks. */
static int put_bytes(int fd, const char *p, size_t n, int64_t at, struct ckpt_writes *w) {
    const struct ckpt_faults *f = w->f;
    while (n) {
        size_t k = n < IO_CHUNK ? n : IO_CHUNK;
        if (f && f->kill_after && w->bytes + (int64_t)k >= f->kill_after) {
            if (pwrite(fd, p, (size_t)(f->kill_after - w->bytes), at) < 0) { /* half a write, then die */ }
            kill(getpid(), SIGKILL);
        }
        ssize_t r = f && f->fail_after && w->bytes + (int64_t)k >= f->fail_after ? (errno = ENOSPC, -1)
                                                                                 : pwrite(fd, p, k, at);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += r, n -= (size_t)r, at += r, w->bytes += r;
    }
    return 0;
}

/* pread all of n bytes at `at`; -1 on an error or an early end of file. */
static int get_bytes(int fd, char *p, size_t n, int64_t at) {
    while (n) {
        ssize_t r = pread(fd, p, n < IO_CHUNK ? n : IO_CHUNK, at);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r, n -= (size_t)r, at += r;
    }
    return 0;
}

int ckpt_io_write_file(const char *path, const void *data, size_t bytes, struct ckpt_writes *w, char *err,
                       size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno)), -1;
    if (put_bytes(fd, data, bytes, 0, w)) {
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        return snprintf(err, errlen, "%s: fsync/close failed: %s", path, strerror(errno)), -1;
    return 0;
}

int ckpt_io_create(const char *base, const int64_t bytes[CKPT_NFILES], char *err, size_t errlen) {
    char path[4200];
    for (int i = 0; i < CKPT_NFILES; i++) {
        snprintf(path, sizeof path, "%s/%s", base, ckpt_file_names[i]);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) return snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno)), -1;
        int rc = ftruncate(fd, (off_t)bytes[i]);
        int e = errno;
        close(fd);
        if (rc) return snprintf(err, errlen, "%s: cannot size: %s", path, strerror(e)), -1;
    }
    return 0;
}

static int64_t stage_floats(const struct ckpt_part *p) {
    int64_t n = 1;
    for (int i = 0; i < p->n; i++)
        if (p->r[i].n > n) n = p->r[i].n;
    return n < CKPT_STAGE_BYTES / 4 ? n : CKPT_STAGE_BYTES / 4;
}

/* Open the data files that p's ranges touch (fd -1 for the others). */
static int open_files(const char *base, const struct ckpt_part *p, int flags, int rank, int fd[CKPT_NFILES],
                      char *err, size_t errlen) {
    char path[4200];
    int used[CKPT_NFILES] = {0};
    for (int i = 0; i < p->n; i++) used[p->r[i].file] = 1;
    for (int i = 0; i < CKPT_NFILES; i++) fd[i] = -1;
    for (int i = 0; i < CKPT_NFILES; i++) {
        if (!used[i]) continue;
        snprintf(path, sizeof path, "%s/%s", base, ckpt_file_names[i]);
        if ((fd[i] = open(path, flags | O_CLOEXEC)) >= 0) continue;
        if (errno == ENOENT && rank > 0)
            snprintf(err, errlen, "%s: not found on rank %d, where rank 0 created it: checkpoint.dir must be on "
                     "a file system every rank sees", path, rank);
        else
            snprintf(err, errlen, "%s: cannot open on rank %d: %s", path, rank, strerror(errno));
        for (int k = 0; k < i; k++)
            if (fd[k] >= 0) close(fd[k]);
        return -1;
    }
    return 0;
}

int ckpt_io_write_part(const char *base, const struct ckpt_part *mine, int rank, struct ckpt_writes *w,
                       struct ckpt_block *blocks, char *err, size_t errlen) {
    int fd[CKPT_NFILES];
    if (open_files(base, mine, O_WRONLY, rank, fd, err, errlen)) return -1;
    int64_t cap = stage_floats(mine);
    float *stage = rt_malloc((size_t)cap * sizeof(float), "checkpoint staging buffer");
    XXH3_state_t *st = XXH3_createState();
    int rc = 0;
    for (int i = 0; i < mine->n && !rc; i++) {
        const struct ckpt_range *r = &mine->r[i];
        XXH3_64bits_reset(st);
        for (int64_t at = 0; at < r->n && !rc; at += cap) {
            int64_t k = r->n - at < cap ? r->n - at : cap;
            mine->get(mine->ctx, i, at, k, stage);
            XXH3_64bits_update(st, stage, (size_t)k * sizeof(float));
            if (put_bytes(fd[r->file], (const char *)stage, (size_t)k * sizeof(float), (r->off + at) * 4, w)) {
                snprintf(err, errlen, "%s/%s: write failed on rank %d: %s", base, ckpt_file_names[r->file], rank,
                         strerror(errno));
                rc = -1;
            }
        }
        blocks[i] = (struct ckpt_block){r->off * 4, r->n * 4, XXH3_64bits_digest(st)};
    }
    XXH3_freeState(st);
    free(stage);
    for (int i = 0; i < CKPT_NFILES; i++) {
        if (fd[i] < 0) continue;
        if (!rc && fsync(fd[i]) != 0) {
            snprintf(err, errlen, "%s/%s: fsync failed on rank %d: %s", base, ckpt_file_names[i], rank,
                     strerror(errno));
            rc = -1;
        }
        close(fd[i]);
    }
    return rc;
}

int64_t ckpt_io_verify(const char *base, const struct ckpt_files *f, int nfiles, int rank, int size,
                       int *read_error) {
    char path[4200];
    int64_t k = 0, most = 1;
    *read_error = 0;
    for (int i = 0; i < nfiles; i++)
        for (int b = 0; b < f->n_blocks[i]; b++)
            if (f->blocks[i][b].bytes > most) most = f->blocks[i][b].bytes;
    size_t cap = (size_t)(most < CKPT_STAGE_BYTES ? most : CKPT_STAGE_BYTES);
    char *buf = NULL;
    XXH3_state_t *st = XXH3_createState();
    int64_t bad = -1;
    for (int i = 0; i < nfiles && bad < 0; i++) {
        int fd = -1;
        for (int b = 0; b < f->n_blocks[i] && bad < 0; b++, k++) {
            if (k % size != rank) continue;
            const struct ckpt_block *blk = &f->blocks[i][b];
            if (!buf) buf = rt_malloc(cap, "checkpoint verification buffer");
            if (fd < 0) snprintf(path, sizeof path, "%s/%s", base, ckpt_file_names[i]), fd = open(path, O_RDONLY | O_CLOEXEC);
            XXH3_64bits_reset(st);
            int ok = fd >= 0;
            for (int64_t at = 0; ok && at < blk->bytes; at += (int64_t)cap) {
                size_t n = blk->bytes - at < (int64_t)cap ? (size_t)(blk->bytes - at) : cap;
                ok = get_bytes(fd, buf, n, blk->off + at) == 0;
                if (ok) XXH3_64bits_update(st, buf, n);
            }
            if (!ok) *read_error = 1;
            if (!ok || XXH3_64bits_digest(st) != blk->hash) bad = k;
        }
        if (fd >= 0) close(fd);
    }
    XXH3_freeState(st);
    free(buf);
    return bad;
}

int ckpt_io_read_part(const char *base, const struct ckpt_part *need, char *err, size_t errlen) {
    int fd[CKPT_NFILES];
    if (open_files(base, need, O_RDONLY, 0, fd, err, errlen)) return -1;
    int64_t cap = stage_floats(need);
    float *stage = rt_malloc((size_t)cap * sizeof(float), "checkpoint staging buffer");
    int rc = 0;
    for (int i = 0; i < need->n && !rc; i++) {
        const struct ckpt_range *r = &need->r[i];
        for (int64_t at = 0; at < r->n && !rc; at += cap) {
            int64_t k = r->n - at < cap ? r->n - at : cap;
            if (get_bytes(fd[r->file], (char *)stage, (size_t)k * sizeof(float), (r->off + at) * 4)) {
                snprintf(err, errlen, "%s/%s: read failed at byte %lld", base, ckpt_file_names[r->file],
                         (long long)((r->off + at) * 4));
                rc = -1;
            } else {
                need->put(need->ctx, i, at, k, stage);
            }
        }
    }
    free(stage);
    for (int i = 0; i < CKPT_NFILES; i++)
        if (fd[i] >= 0) close(fd[i]);
    return rc;
}
