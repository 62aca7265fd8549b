/* checkpoint: crash-safe checkpoint directories written and read by every rank, with
 * block checksums (see checkpoint.h): the save, the load, and the cleanup after a save.
 * meta.json's text lives in ckpt_meta.c, each rank's file work in ckpt_io.c. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_io.h"
#include "ckpt_meta.h"
#include "comm_mpi.h"
#include "runtime.h"

#define MSG_MAX 1024 /* bytes of a message one rank tells the others */

static int fsync_path(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: fsync failed: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Collective: 0 when no rank failed; else -1 on every rank, with the message (err) of the
 * lowest rank that failed. */
static int agree(struct comm *ctl, int failed, char *err, size_t errlen) {
    int v = failed ? ctl->size - ctl->rank : 0; /* the lowest failing rank has the largest v */
    comm_all_reduce(ctl, &v, &v, 1, COMM_I32, COMM_MAX);
    if (!v) return 0;
    char msg[MSG_MAX];
    int who = ctl->size - v;
    if (ctl->rank == who) snprintf(msg, sizeof msg, "%s", err);
    comm_broadcast(ctl, msg, MSG_MAX, COMM_U8, who);
    msg[MSG_MAX - 1] = 0;
    snprintf(err, errlen, "%s", msg);
    return -1;
}

/* Step number of "step-NNNNNNNN", or -1. */
static int64_t step_of(const char *name) {
    if (strncmp(name, "step-", 5) || strlen(name) != 13) return -1;
    int64_t s = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        s = s * 10 + (*p - '0');
    }
    return s;
}

static int has_done(const char *dir, const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s/DONE", dir, name);
    return access(p, F_OK) == 0;
}

static int cmp_desc(const void *a, const void *b) {
    int64_t x = step_of(a), y = step_of(b);
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The checkpoints of dir, newest first, as rank 0 sees them: names (CKPT_NAME_MAX bytes each,
 * malloc'd) and whether each is complete (DONE). Collective. Returns the count, or -1 with
 * err (the same on every rank). */
static int list_steps(struct comm *ctl, const char *dir, char **names, int **done, char *err, size_t errlen) {
    int n = 0, cap = 0, failed = 0;
    char *list = NULL;
    if (ctl->rank == 0) {
        DIR *d = opendir(dir);
        if (!d && errno != ENOENT) failed = 1, snprintf(err, errlen, "%s: cannot read: %s", dir, strerror(errno));
        for (struct dirent *e; d && (e = readdir(d));) {
            if (step_of(e->d_name) < 0) continue;
            if (n == cap && !(list = realloc(list, (size_t)(cap = cap ? 2 * cap : 16) * CKPT_NAME_MAX)))
                RT_FATAL("checkpoint: out of memory listing %s", dir);
            memcpy(list + (size_t)n++ * CKPT_NAME_MAX, e->d_name, 14); /* step_of: 13 characters */
        }
        if (d) closedir(d);
        if (n) qsort(list, (size_t)n, CKPT_NAME_MAX, cmp_desc);
    }
    if (agree(ctl, failed, err, errlen)) return free(list), -1;
    comm_broadcast(ctl, &n, 1, COMM_I32, 0);
    if (ctl->rank != 0) list = rt_malloc((size_t)(n ? n : 1) * CKPT_NAME_MAX, "checkpoint names");
    int *dn = rt_calloc((size_t)(n ? n : 1), sizeof(int), "checkpoint names");
    for (int i = 0; i < n && ctl->rank == 0; i++) dn[i] = has_done(dir, list + (size_t)i * CKPT_NAME_MAX);
    if (n) {
        comm_broadcast(ctl, list, (int64_t)n * CKPT_NAME_MAX, COMM_U8, 0);
        comm_broadcast(ctl, dn, n, COMM_I32, 0);
    }
    *names = list, *done = dn;
    return n;
}

/* Rank 0 reads meta.json (at most CKPT_META_MAX bytes) and every rank gets its text
 * (malloc'd), or NULL with why. Collective. */
static char *meta_text(struct comm *ctl, const char *base, char *why, size_t wl) {
    int64_t n = -1;
    char *text = NULL, path[4200];
    if (ctl->rank == 0) {
        snprintf(path, sizeof path, "%s/meta.json", base);
        FILE *f = fopen(path, "rb");
        long len = -1;
        if (f && fseek(f, 0, SEEK_END) == 0) len = ftell(f);
        if (f && len >= 0 && len <= CKPT_META_MAX && fseek(f, 0, SEEK_SET) == 0) {
            text = rt_malloc((size_t)len + 1, "meta.json");
            n = (int64_t)fread(text, 1, (size_t)len, f);
            text[n] = 0;
        }
        if (f) fclose(f);
    }
    comm_broadcast(ctl, &n, 1, COMM_I64, 0);
    if (n < 0) {
        snprintf(why, wl, "meta.json missing or unreadable");
        return NULL;
    }
    if (ctl->rank != 0) text = rt_malloc((size_t)n + 1, "meta.json");
    comm_broadcast(ctl, text, n, COMM_U8, 0);
    text[n] = 0;
    return text;
}

/* Collective: whether the complete checkpoint dir/name is usable: meta.json intact, the
 * first nfiles data files of the recorded sizes, every block of them matching its checksum
 * (shared out over the ranks), and, with expect, written for the same model. Returns 0 with
 * meta filled; -1 with why (not usable); -2 with err (another model). */
static int verify(struct comm *ctl, const char *dir, const char *name, const struct ckpt_meta *expect, int nfiles,
                  struct ckpt_meta *meta, char *why, size_t wl, char *err, size_t errlen) {
    char base[4096], path[4200];
    snprintf(base, sizeof base, "%s/%s", dir, name);
    char *text = meta_text(ctl, base, why, wl);
    if (!text) return -1;
    struct ckpt_files f;
    int rc = ckpt_meta_parse(text, meta, &f, why, wl) ? -1 : 0; /* the same text: the same outcome everywhere */
    free(text);
    if (!rc && expect && meta->n_params != expect->n_params) {
        snprintf(err, errlen, "checkpoint %s holds %lld parameters but the model has %lld: it was written for "
                 "another model (use another checkpoint.dir, or --no-resume)", base, (long long)meta->n_params,
                 (long long)expect->n_params);
        rc = -2;
    } else if (!rc && expect && meta->model_hash != expect->model_hash) {
        snprintf(err, errlen, "checkpoint %s was written for a model of another shape (use another checkpoint.dir, "
                 "or --no-resume)", base);
        rc = -2;
    }
    /* Sizes on rank 0, then the blocks everywhere; the first bad block in file order is named. */
    for (int i = 0; i < nfiles && !rc; i++) {
        int bad = 0;
        struct stat sb;
        if (ctl->rank == 0) {
            snprintf(path, sizeof path, "%s/%s", base, ckpt_file_names[i]);
            if (stat(path, &sb) != 0) bad = 1, snprintf(why, wl, "%s missing", ckpt_file_names[i]);
            else if (sb.st_size != f.bytes[i])
                bad = 1, snprintf(why, wl, "%s has %lld bytes, meta.json says %lld (truncated?)", ckpt_file_names[i],
                                  (long long)sb.st_size, (long long)f.bytes[i]);
        }
        rc = agree(ctl, bad, why, wl);
    }
    if (!rc) {
        int64_t total = 0;
        for (int i = 0; i < nfiles; i++) total += f.n_blocks[i];
        int read_error = 0;
        int64_t bad = ckpt_io_verify(base, &f, nfiles, ctl->rank, ctl->size, &read_error);
        int64_t v = bad < 0 ? 0 : (total - bad) * 2 + read_error; /* the first bad block has the largest v */
        comm_all_reduce(ctl, &v, &v, 1, COMM_I64, COMM_MAX);
        if (v) {
            int64_t k = total - v / 2;
            int i = 0;
            while (k >= f.n_blocks[i]) k -= f.n_blocks[i++];
            const struct ckpt_block *b = &f.blocks[i][k];
            snprintf(why, wl, "%s %s at bytes %lld..%lld (block %lld of %d)", ckpt_file_names[i],
                     v % 2 ? "could not be read" : "checksum mismatch", (long long)b->off,
                     (long long)(b->off + b->bytes - 1), (long long)k + 1, f.n_blocks[i]);
            rc = -1;
        }
    }
    ckpt_files_free(&f);
    return rc;
}

/* Collective. Delete checkpoints older than the newest `keep` complete, verified ones (the
 * one just written counts without being verified), incomplete ones, and stale temporary
 * directories (a crashed save). A complete one that does not verify is not counted and, when
 * newer than the keep-th good one, not deleted either. Whether one counts decides only about
 * older ones, so one with no complete checkpoint behind it is not verified. */
static void prune(struct comm *ctl, const char *dir, int keep, const char *written) {
    char *names, err[MSG_MAX], why[512], p[4200];
    int *done;
    int n = list_steps(ctl, dir, &names, &done, err, sizeof err), kept = 0, last_done = -1;
    if (n < 0) return;
    for (int i = 0; i < n; i++)
        if (done[i]) last_done = i;
    for (int i = 0; i < n; i++) {
        const char *name = names + (size_t)i * CKPT_NAME_MAX;
        if (done[i] && kept < keep) {
            struct ckpt_meta meta;
            if (i == last_done || !strcmp(name, written) ||
                verify(ctl, dir, name, NULL, CKPT_NFILES, &meta, why, sizeof why, err, sizeof err) == 0)
                kept++;
            continue;
        }
        snprintf(p, sizeof p, "%s/%s", dir, name);
        if (ctl->rank == 0) rm_tree(p);
    }
    free(names);
    free(done);
    DIR *d = ctl->rank == 0 ? opendir(dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, ".step-", 6) || !strstr(e->d_name, ".tmp-")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        rm_tree(p);
    }
    if (d) closedir(d);
    comm_barrier(ctl); /* the directory is as it stays for every rank when the save returns */
}

/* Rank 0: the block checksums of every rank (n blocks of 4 int64 each: file, offset, bytes,
 * hash; file -1 for padding) as the data files' block lists. */
static void collect_blocks(const int64_t *all, int64_t n, const struct ckpt_meta *meta, struct ckpt_files *f) {
    memset(f, 0, sizeof *f);
    f->format = CKPT_FORMAT;
    f->bytes[CKPT_MODEL] = meta->n_params * 4;
    f->bytes[CKPT_OPTIM] = 2 * f->bytes[CKPT_MODEL];
    for (int i = 0; i < CKPT_NFILES; i++) f->blocks[i] = rt_calloc((size_t)n + 1, sizeof *f->blocks[i], "checkpoint blocks");
    for (int64_t k = 0; k < n; k++) {
        const int64_t *e = all + 4 * k;
        if (e[0] < 0 || e[2] == 0) continue;
        f->blocks[e[0]][f->n_blocks[e[0]]++] = (struct ckpt_block){e[1], e[2], (uint64_t)e[3]};
    }
}

/* Rank 0, once every rank's writes are safe: meta.json, then the rename and DONE. */
static int finish(const char *dir, const char *tmp, const char *fin, const struct ckpt_meta *meta,
                  struct ckpt_files *f, struct ckpt_writes *w, char *err, size_t errlen) {
    char path[4200];
    char *json = ckpt_meta_text(meta, f);
    if (!json) return snprintf(err, errlen, "%s: out of memory for meta.json", tmp), rm_tree(tmp), -1;
    if (ckpt_files_check(f, meta->n_params, err, errlen))
        RT_FATAL("checkpoint: the ranks' ranges do not cover the files exactly: %s", err);
    snprintf(path, sizeof path, "%s/meta.json", tmp);
    int rc = ckpt_io_write_file(path, json, strlen(json), w, err, errlen);
    free(json);
    if (rc || fsync_path(tmp, err, errlen)) return rm_tree(tmp), -1;
    rm_tree(fin); /* a re-save of the same step replaces it */
    if (rename(tmp, fin) != 0) {
        snprintf(err, errlen, "rename %s -> %s failed: %s", tmp, fin, strerror(errno));
        return rm_tree(tmp), -1;
    }
    if (fsync_path(dir, err, errlen)) return -1;
    snprintf(path, sizeof path, "%s/DONE", fin);
    struct ckpt_writes none = {NULL, 0};
    if (ckpt_io_write_file(path, "", 0, &none, err, errlen) || fsync_path(fin, err, errlen)) return -1;
    return 0;
}

int ckpt_save(struct comm *ctl, const char *dir, const struct ckpt_meta *meta, const struct ckpt_part *mine,
              int keep, const struct ckpt_faults *faults, char *err, size_t errlen) {
    char tmp[4096], fin[4096];
    struct ckpt_writes w = {faults && faults->rank == ctl->rank ? faults : NULL, 0};
    int failed = 0;
    snprintf(fin, sizeof fin, "%s/step-%08" PRId64, dir, meta->step);
    /* Rank 0 makes the temporary directory (named after its pid) and the files at full size. */
    if (ctl->rank == 0) {
        snprintf(tmp, sizeof tmp, "%s/.step-%08" PRId64 ".tmp-%d", dir, meta->step, (int)getpid());
        int64_t bytes[CKPT_NFILES] = {meta->n_params * 4, meta->n_params * 8};
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            failed = 1, snprintf(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
        } else {
            rm_tree(tmp);
            if (mkdir(tmp, 0755) != 0) failed = 1, snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
            else if (ckpt_io_create(tmp, bytes, err, errlen)) failed = 1, rm_tree(tmp);
        }
    }
    if (agree(ctl, failed, err, errlen)) return -1;
    comm_broadcast(ctl, tmp, sizeof tmp, COMM_U8, 0);
    /* Every rank writes its ranges and fsyncs; all must succeed. */
    struct ckpt_block *blocks = rt_calloc((size_t)mine->n + 1, sizeof *blocks, "checkpoint blocks");
    failed = ckpt_io_write_part(tmp, mine, ctl->rank, &w, blocks, err, errlen) != 0;
    if (agree(ctl, failed, err, errlen)) {
        if (ctl->rank == 0) rm_tree(tmp);
        comm_barrier(ctl); /* gone for every rank when the save returns */
        free(blocks);
        return -1;
    }
    int64_t nmax = mine->n;
    comm_all_reduce(ctl, &nmax, &nmax, 1, COMM_I64, COMM_MAX);
    int64_t *pack = rt_malloc((size_t)(4 * nmax + 1) * sizeof(int64_t), "checkpoint blocks");
    for (int64_t k = 0; k < nmax; k++) {
        int64_t *e = pack + 4 * k;
        if (k < mine->n) e[0] = mine->r[k].file, e[1] = blocks[k].off, e[2] = blocks[k].bytes, e[3] = (int64_t)blocks[k].hash;
        else e[0] = -1, e[1] = e[2] = e[3] = 0;
    }
    free(blocks);
    int64_t *all = ctl->rank == 0 ? rt_malloc((size_t)(4 * nmax * ctl->size + 1) * sizeof(int64_t), "checkpoint blocks")
                                  : NULL;
    comm_mpi_gather(ctl, pack, all, 4 * nmax, COMM_I64, 0);
    free(pack);
    if (ctl->rank == 0) {
        struct ckpt_files f;
        collect_blocks(all, nmax * ctl->size, meta, &f);
        failed = finish(dir, tmp, fin, meta, &f, &w, err, errlen) != 0;
        ckpt_files_free(&f);
        free(all);
    }
    if (agree(ctl, failed, err, errlen)) return -1;
    prune(ctl, dir, keep, fin + strlen(dir) + 1);
    return 0;
}

int ckpt_load_latest(struct comm *ctl, const char *dir, FILE *log, const struct ckpt_meta *expect, int moments,
                     const struct ckpt_part *need, char *name, struct ckpt_meta *meta, char *err, size_t errlen) {
    char *names, base[4200];
    int *done;
    int n = list_steps(ctl, dir, &names, &done, err, errlen);
    if (n < 0) return -1;
    int found = 0, damaged = 0;
    size_t said = 0; /* of err: the damaged ones, in case none loads */
    for (int i = 0; i < n && !found; i++) {
        const char *nm = names + (size_t)i * CKPT_NAME_MAX;
        char why[512] = "";
        if (!done[i]) {
            snprintf(why, sizeof why, "incomplete (no DONE marker)");
        } else {
            int rc = verify(ctl, dir, nm, expect, moments ? CKPT_NFILES : 1, meta, why, sizeof why, err, errlen);
            if (rc == -2) {
                found = -1;
                break;
            }
            found = rc == 0;
            if (!found && said < errlen) {
                said += (size_t)snprintf(err + said, errlen - said, "%s%s: %s", damaged ? "; " : "", nm, why);
                damaged++;
            }
        }
        if (found == 1) snprintf(name, CKPT_NAME_MAX, "%s", nm);
        else if (log && ctl->rank == 0) fprintf(log, "ringtrain: checkpoint %s/%s: %s; trying an older one\n", dir, nm, why);
    }
    free(names);
    free(done);
    if (found == 1) {
        snprintf(base, sizeof base, "%s/%s", dir, name);
        char why[1024];
        if (ckpt_io_read_part(base, need, why, sizeof why)) RT_FATAL("checkpoint %s verified, then: %s", base, why);
        return 1;
    }
    if (found == 0 && damaged) {
        char what[1024];
        snprintf(what, sizeof what, "%s", err);
        snprintf(err, errlen, "%s: %d complete checkpoint%s and none verifies (%s)", dir, damaged,
                 damaged > 1 ? "s" : "", what);
        return -2;
    }
    return found;
}
