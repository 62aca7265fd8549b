/* checkpoint: crash-safe checkpoint directories with checksums (see checkpoint.h). */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define META_FORMAT 1
#define IO_CHUNK ((size_t)64 << 20)

struct piece { const void *data; size_t bytes; };

struct file_sum { uint64_t bytes, hash; };

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

/* Write pieces to path, hashing them; fsync. `written` counts bytes across the save. */
static int write_file(const char *path, const struct piece *pc, int n, const struct ckpt_faults *f,
                      int64_t *written, struct file_sum *sum, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    sum->bytes = 0;
    for (int i = 0; i < n; i++) {
        const char *p = pc[i].data;
        size_t left = pc[i].bytes;
        while (left) {
            size_t k = left < IO_CHUNK ? left : IO_CHUNK;
            if (f && f->kill_after && *written + (int64_t)k >= f->kill_after) {
                if (write(fd, p, (size_t)(f->kill_after - *written)) < 0) { /* half a write, then die */ }
                kill(getpid(), SIGKILL);
            }
            ssize_t w = (f && f->fail_after && *written + (int64_t)k >= f->fail_after) ? (errno = ENOSPC, -1)
                                                                                      : write(fd, p, k);
            if (w < 0) {
                if (errno == EINTR) continue;
                snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
                XXH3_freeState(st);
                close(fd);
                return -1;
            }
            XXH3_64bits_update(st, p, (size_t)w);
            p += w, left -= (size_t)w, *written += w, sum->bytes += (uint64_t)w;
        }
    }
    sum->hash = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    if (fsync(fd) != 0 || close(fd) != 0) {
        snprintf(err, errlen, "%s: fsync/close failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static char *meta_json(const struct ckpt_meta *m, const struct file_sum sums[2]) {
    char hex[3][24];
    snprintf(hex[0], sizeof hex[0], "%016" PRIx64, m->model_hash);
    snprintf(hex[1], sizeof hex[1], "%016" PRIx64, m->job_hash);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "format", META_FORMAT);
    cJSON_AddNumberToObject(o, "step", (double)m->step);
    cJSON_AddNumberToObject(o, "data_cursor", (double)m->data_cursor);
    cJSON_AddNumberToObject(o, "opt_t", (double)m->opt_t);
    cJSON_AddNumberToObject(o, "bad_in_row", (double)m->bad_in_row);
    cJSON_AddNumberToObject(o, "n_params", (double)m->n_params);
    cJSON_AddStringToObject(o, "model_hash", hex[0]);
    cJSON_AddStringToObject(o, "job_hash", hex[1]);
    cJSON_AddNumberToObject(o, "world", m->world);
    cJSON_AddNumberToObject(o, "cp", m->cp);
    cJSON_AddNumberToObject(o, "dp", m->dp);
    cJSON *files = cJSON_AddObjectToObject(o, "files");
    static const char *names[2] = {"model.bin", "optim.bin"};
    for (int i = 0; i < 2; i++) {
        cJSON *f = cJSON_AddObjectToObject(files, names[i]);
        snprintf(hex[2], sizeof hex[2], "%016" PRIx64, sums[i].hash);
        cJSON_AddNumberToObject(f, "bytes", (double)sums[i].bytes);
        cJSON_AddStringToObject(f, "xxh3", hex[2]);
    }
    /* meta_xxh3: of the compact text of every other member, so an edit of any value shows. */
    char *body = cJSON_PrintUnformatted(o);
    snprintf(hex[2], sizeof hex[2], "%016" PRIx64, XXH3_64bits(body, strlen(body)));
    free(body);
    cJSON_AddStringToObject(o, "meta_xxh3", hex[2]);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
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
    char p[4096];
    snprintf(p, sizeof p, "%s/%s/DONE", dir, name);
    return access(p, F_OK) == 0;
}

static int cmp_desc(const void *a, const void *b) {
    int64_t x = step_of(*(char *const *)a), y = step_of(*(char *const *)b);
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Checkpoint directory names in dir, newest first. Returns the count or -1. */
static int list_steps(const char *dir, char ***out, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    *out = NULL;
    if (!d) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "%s: cannot read: %s", dir, strerror(errno));
        return -1;
    }
    int n = 0, cap = 0;
    char **names = NULL;
    for (struct dirent *e; (e = readdir(d));) {
        if (step_of(e->d_name) < 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            names = realloc(names, (size_t)cap * sizeof *names);
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_desc);
    *out = names;
    return n;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static int verified(const char *dir, const char *name);

/* Delete checkpoints older than the newest `keep` complete, verified ones (the one just
 * written counts without being read back), incomplete ones, and stale temporary
 * directories (a crashed save). A complete one that does not verify is not counted and, when
 * newer than the keep-th good one, not deleted either. Whether one counts decides only about
 * older ones, so one with no complete checkpoint behind it is not read. */
static void prune(const char *dir, int keep, const char *written) {
    char **names, err[256], p[4096];
    int n = list_steps(dir, &names, err, sizeof err), kept = 0, last_done = -1;
    for (int i = 0; i < n; i++)
        if (has_done(dir, names[i])) last_done = i;
    for (int i = 0; i < n; i++) {
        int done = has_done(dir, names[i]);
        if (done && kept < keep) {
            if (i == last_done || !strcmp(names[i], written) || verified(dir, names[i])) kept++;
            continue;
        }
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        rm_tree(p);
    }
    free_names(names, n > 0 ? n : 0);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, ".step-", 6) || !strstr(e->d_name, ".tmp-")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        rm_tree(p);
    }
    if (d) closedir(d);
}

int ckpt_save(const char *dir, const struct ckpt_meta *meta, const float *params, const float *m,
              const float *v, int keep, const struct ckpt_faults *faults, char *err, size_t errlen) {
    char tmp[4096], fin[4096], path[4200];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(fin, sizeof fin, "%s/step-%08" PRId64, dir, meta->step);
    snprintf(tmp, sizeof tmp, "%s/.step-%08" PRId64 ".tmp-%d", dir, meta->step, (int)getpid());
    rm_tree(tmp);
    if (mkdir(tmp, 0755) != 0) {
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        return -1;
    }
    size_t pb = (size_t)meta->n_params * sizeof(float);
    struct piece model[1] = {{params, pb}}, optim[2] = {{m, pb}, {v, pb}};
    struct file_sum sums[2];
    int64_t written = 0;
    snprintf(path, sizeof path, "%s/model.bin", tmp);
    if (write_file(path, model, 1, faults, &written, &sums[0], err, errlen)) goto fail;
    snprintf(path, sizeof path, "%s/optim.bin", tmp);
    if (write_file(path, optim, 2, faults, &written, &sums[1], err, errlen)) goto fail;
    char *json = meta_json(meta, sums);
    struct piece mp[1] = {{json, strlen(json)}};
    struct file_sum msum;
    snprintf(path, sizeof path, "%s/meta.json", tmp);
    int rc = write_file(path, mp, 1, faults, &written, &msum, err, errlen);
    free(json);
    if (rc || fsync_path(tmp, err, errlen)) goto fail;
    rm_tree(fin); /* a re-save of the same step replaces it */
    if (rename(tmp, fin) != 0) {
        snprintf(err, errlen, "rename %s -> %s failed: %s", tmp, fin, strerror(errno));
        goto fail;
    }
    if (fsync_path(dir, err, errlen)) return -1;
    snprintf(path, sizeof path, "%s/DONE", fin);
    struct piece none[1] = {{"", 0}};
    if (write_file(path, none, 1, NULL, &written, &msum, err, errlen) || fsync_path(fin, err, errlen)) return -1;
    prune(dir, keep, fin + strlen(dir) + 1);
    return 0;
fail:
    rm_tree(tmp);
    return -1;
}

static int read_text(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (1 << 20)) return fclose(f), -1;
    *out = malloc((size_t)n + 1);
    size_t r = fread(*out, 1, (size_t)n, f);
    fclose(f);
    (*out)[r] = 0;
    return 0;
}

static int json_i64(const cJSON *o, const char *key, int64_t *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x)) return -1;
    *v = (int64_t)x->valuedouble;
    return 0;
}

static int json_hex_item(const cJSON *x, uint64_t *v) {
    char *end;
    if (!cJSON_IsString(x) || !*x->valuestring) return -1;
    *v = strtoull(x->valuestring, &end, 16);
    return *end ? -1 : 0;
}

static int json_hex(const cJSON *o, const char *key, uint64_t *v) {
    return json_hex_item(cJSON_GetObjectItemCaseSensitive(o, key), v);
}

/* Parse meta.json, with the recorded size and checksum of model.bin and optim.bin. */
static int parse_meta(const char *path, struct ckpt_meta *m, struct file_sum sums[2], char *why, size_t wl) {
    char *text = NULL;
    if (read_text(path, &text)) return snprintf(why, wl, "meta.json missing or unreadable"), -1;
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!o) return snprintf(why, wl, "meta.json is malformed"), -1;
    cJSON *check = cJSON_DetachItemFromObjectCaseSensitive(o, "meta_xxh3");
    char *body = cJSON_PrintUnformatted(o);
    uint64_t want = 0;
    int sum_ok = check && json_hex_item(check, &want) == 0 && XXH3_64bits(body, strlen(body)) == want;
    free(body);
    cJSON_Delete(check);
    if (!sum_ok) {
        cJSON_Delete(o);
        return snprintf(why, wl, check ? "meta.json checksum mismatch (edited or corrupt)"
                                       : "meta.json has no checksum (meta_xxh3)"), -1;
    }
    int64_t fmt = 0, w = 0, cp = 0, dp = 0;
    int bad = json_i64(o, "format", &fmt) || fmt != META_FORMAT || json_i64(o, "step", &m->step) ||
              json_i64(o, "data_cursor", &m->data_cursor) || json_i64(o, "opt_t", &m->opt_t) ||
              json_i64(o, "bad_in_row", &m->bad_in_row) || json_i64(o, "n_params", &m->n_params) ||
              json_hex(o, "model_hash", &m->model_hash) || json_hex(o, "job_hash", &m->job_hash) ||
              json_i64(o, "world", &w) || json_i64(o, "cp", &cp) || json_i64(o, "dp", &dp);
    static const char *names[2] = {"model.bin", "optim.bin"};
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files");
    for (int i = 0; i < 2 && !bad; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(files, names[i]);
        int64_t b = 0;
        bad = !f || json_i64(f, "bytes", &b) || json_hex(f, "xxh3", &sums[i].hash);
        sums[i].bytes = (uint64_t)b;
    }
    cJSON_Delete(o);
    m->world = (int)w, m->cp = (int)cp, m->dp = (int)dp;
    if (bad) return snprintf(why, wl, "meta.json is malformed"), -1;
    return 0;
}

/* Read a file of exactly sum->bytes into pieces, verifying size and checksum. With dst NULL
 * the file is only checksummed (read through a scratch buffer). */
static int read_verified(const char *path, const char *label, const struct file_sum *sum, void **dst,
                         const size_t *len, int n, char *why, size_t wl) {
    struct stat sb;
    if (stat(path, &sb) != 0) return snprintf(why, wl, "%s missing", label), -1;
    if ((uint64_t)sb.st_size != sum->bytes)
        return snprintf(why, wl, "%s has %lld bytes, meta.json says %llu (truncated?)", label,
                        (long long)sb.st_size, (unsigned long long)sum->bytes), -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return snprintf(why, wl, "%s: %s", label, strerror(errno)), -1;
    size_t whole = (size_t)sum->bytes;
    char *scratch = dst ? NULL : malloc(whole < IO_CHUNK ? whole + 1 : IO_CHUNK);
    if (!dst && !scratch) {
        close(fd);
        return snprintf(why, wl, "%s: out of memory", label), -1;
    }
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    int rc = 0;
    for (int i = 0; i < (dst ? n : 1) && !rc; i++) {
        char *p = dst ? dst[i] : scratch;
        size_t left = dst ? len[i] : whole;
        while (left) {
            ssize_t r = read(fd, p, left < IO_CHUNK ? left : IO_CHUNK);
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                snprintf(why, wl, "%s: read failed", label);
                rc = -1;
                break;
            }
            XXH3_64bits_update(st, p, (size_t)r);
            if (dst) p += r;
            left -= (size_t)r;
        }
    }
    if (!rc && XXH3_64bits_digest(st) != sum->hash)
        rc = -1, snprintf(why, wl, "%s checksum mismatch (corrupt)", label);
    XXH3_freeState(st);
    free(scratch);
    close(fd);
    return rc;
}

/* Verify the complete checkpoint dir/name: meta.json (its own checksum), the sizes and
 * checksums of model.bin and optim.bin. With params given, model.bin is read into it and,
 * with m given, optim.bin into m and v (expect_params floats each; a checkpoint of another
 * size is then an error: -2 with the message in err). Returns 0, or -1 with the reason in why. */
static int verify(const char *dir, const char *name, int64_t expect_params, float *params, float *m, float *v,
                  struct ckpt_meta *meta, char *why, size_t wl, char *err, size_t errlen) {
    char base[4096], path[4200];
    struct file_sum sums[2];
    snprintf(base, sizeof base, "%s/%s", dir, name);
    snprintf(path, sizeof path, "%s/meta.json", base);
    if (parse_meta(path, meta, sums, why, wl)) return -1;
    if (params && meta->n_params != expect_params) {
        snprintf(err, errlen, "checkpoint %s holds %lld parameters but the model has %lld: "
                 "it was written for another model (use another checkpoint.dir, or --no-resume)",
                 base, (long long)meta->n_params, (long long)expect_params);
        return -2;
    }
    size_t pb = (size_t)expect_params * sizeof(float);
    void *mdst[1] = {params}, *odst[2] = {m, v};
    size_t mlen[1] = {pb}, olen[2] = {pb, pb};
    snprintf(path, sizeof path, "%s/model.bin", base);
    if (read_verified(path, "model.bin", &sums[0], params ? mdst : NULL, mlen, 1, why, wl)) return -1;
    if (params && !m) return 0;
    snprintf(path, sizeof path, "%s/optim.bin", base);
    return read_verified(path, "optim.bin", &sums[1], params ? odst : NULL, olen, 2, why, wl);
}

static int verified(const char *dir, const char *name) {
    struct ckpt_meta meta;
    char why[512], err[16];
    return verify(dir, name, 0, NULL, NULL, NULL, &meta, why, sizeof why, err, sizeof err) == 0;
}

int ckpt_load_latest(const char *dir, FILE *log, int64_t expect_params, float *params, float *m,
                     float *v, char *name, struct ckpt_meta *meta, char *err, size_t errlen) {
    char **names;
    int n = list_steps(dir, &names, err, errlen);
    if (n < 0) return -1;
    int found = 0, damaged = 0;
    size_t said = 0; /* of err: the damaged ones, in case none loads */
    for (int i = 0; i < n && !found; i++) {
        char why[512] = "";
        if (!has_done(dir, names[i])) {
            snprintf(why, sizeof why, "incomplete (no DONE marker)");
        } else {
            int rc = verify(dir, names[i], expect_params, params, m, v, meta, why, sizeof why, err, errlen);
            if (rc == -2) {
                found = -1;
                break;
            }
            found = rc == 0;
            if (!found && said < errlen) {
                said += (size_t)snprintf(err + said, errlen - said, "%s%s: %s", damaged ? "; " : "", names[i], why);
                damaged++;
            }
        }
        if (found == 1) snprintf(name, CKPT_NAME_MAX, "%s", names[i]);
        else if (log) fprintf(log, "ringtrain: checkpoint %s/%s: %s; trying an older one\n", dir, names[i], why);
    }
    free_names(names, n);
    if (found == 0 && damaged) {
        char what[1024];
        snprintf(what, sizeof what, "%s", err);
        snprintf(err, errlen, "%s: %d complete checkpoint%s and none verifies (%s)", dir, damaged,
                 damaged > 1 ? "s" : "", what);
        return -2;
    }
    return found;
}
