/* corpus: one token stream over a list of .npy files. Owns the list parsing (one path a
 * line), directory expansion (*.npy sorted by name with strcmp, so every rank sees the
 * same order), the file offsets, reads that cross file boundaries, and the token range
 * check naming the file at fault. Shape letters: n files, N tokens in all. */
#include "corpus.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mapfile.h"
#include "runtime.h"
/* A growing array of owned strings. */
struct names {
    char **v;
    int    n, cap;
};

static int names_push(struct names *s, const char *p, size_t len) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        char **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        s->v = v, s->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, p, len);
    copy[len] = '\0';
    s->v[s->n++] = copy;
    return 0;
}

static void names_free(struct names *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append dir's *.npy files (not those starting with '.'), sorted by name. */
static int expand_dir(struct names *out, const char *dir, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot read directory: %s", dir, strerror(errno));
        return -1;
    }
    struct names found = {0};
    const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
    char path[NPY_PATH_MAX];
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) {
                snprintf(err, errlen, "%s: cannot read directory: %s", dir, strerror(errno));
                rc = -1;
            }
            break;
        }
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".npy")) continue;
        int w = snprintf(path, sizeof path, "%s%s%s", dir, sep, de->d_name);
        if (w < 0 || (size_t)w >= sizeof path) {
            snprintf(err, errlen, "%s: path of %s is too long", dir, de->d_name);
            rc = -1;
            break;
        }
        if (names_push(&found, path, (size_t)w)) {
            snprintf(err, errlen, "%s: out of memory listing the directory", dir);
            rc = -1;
            break;
        }
    }
    closedir(d);
    if (rc == 0 && found.n == 0) {
        snprintf(err, errlen, "%s: directory holds no .npy files", dir);
        rc = -1;
    }
    if (rc == 0) {
        qsort(found.v, (size_t)found.n, sizeof *found.v, by_name);
        for (int i = 0; i < found.n && rc == 0; i++)
            if (names_push(out, found.v[i], strlen(found.v[i]))) {
                snprintf(err, errlen, "%s: out of memory listing the directory", dir);
                rc = -1;
            }
    }
    names_free(&found);
    return rc;
}

/* Append the files matching a glob(3) pattern, sorted by name with strcmp. */
static int expand_glob(struct names *out, const char *pattern, char *err, size_t errlen) {
    glob_t g;
    int rc = glob(pattern, GLOB_ERR | GLOB_NOSORT, NULL, &g);
    if (rc) {
        if (rc == GLOB_NOMATCH) snprintf(err, errlen, "%s: the pattern matches no files", pattern);
        else snprintf(err, errlen, "%s: cannot expand the pattern (%s)", pattern,
                      rc == GLOB_NOSPACE ? "out of memory" : "a directory cannot be read");
        globfree(&g);
        return -1;
    }
    qsort(g.gl_pathv, g.gl_pathc, sizeof *g.gl_pathv, by_name);
    for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
        if (names_push(out, g.gl_pathv[i], strlen(g.gl_pathv[i]))) {
            snprintf(err, errlen, "%s: out of memory", pattern);
            rc = -1;
        }
    globfree(&g);
    return rc;
}

/* The list as file paths: each line a file, a directory (its *.npy files), or, when no
 * such path exists and it holds * ? or [, a glob pattern (its matches). */
static int list_files(struct names *out, const char *list, char *err, size_t errlen) {
    if (!*list) {
        snprintf(err, errlen, "no token files given");
        return -1;
    }
    for (const char *s = list;;) {
        size_t len = strcspn(s, "\n");
        char path[NPY_PATH_MAX];
        if (len == 0) {
            snprintf(err, errlen, "an empty path in the list of token files");
            return -1;
        }
        if (len >= sizeof path) {
            snprintf(err, errlen, "%.64s...: path is too long", s);
            return -1;
        }
        memcpy(path, s, len);
        path[len] = '\0';
        struct stat st;
        int exists = stat(path, &st) == 0;
        if (exists && S_ISDIR(st.st_mode)) {
            if (expand_dir(out, path, err, errlen)) return -1;
        } else if (!exists && strpbrk(path, "*?[")) {
            if (expand_glob(out, path, err, errlen)) return -1;
        } else if (names_push(out, path, len)) { /* a missing file is reported by npy_open */
            snprintf(err, errlen, "%s: out of memory", path);
            return -1;
        }
        if (!s[len]) return 0;
        s += len + 1;
    }
}

int corpus_open(struct corpus *c, const char *list, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    struct names names = {0};
    if (list_files(&names, list, err, errlen)) goto fail;
    c->files = calloc((size_t)names.n, sizeof *c->files);
    c->start = calloc((size_t)names.n + 1, sizeof *c->start);
    if (!c->files || !c->start) {
        snprintf(err, errlen, "%s: out of memory for %d token files", names.v[0], names.n);
        goto fail;
    }
    for (int i = 0; i < names.n; i++) {
        if (npy_open(&c->files[i], names.v[i], err, errlen)) goto fail;
        /* The mapping outlives its descriptor: a corpus of thousands of shards must not run
         * into the open-file limit. npy_close skips fd -1. */
        if (c->files[i].fd >= 0) close(c->files[i].fd);
        c->files[i].fd = -1;
        c->n = i + 1;
        c->start[i + 1] = c->start[i] + c->files[i].n;
    }
    c->total = c->start[c->n];
    names_free(&names);
    return 0;
fail:
    names_free(&names);
    corpus_close(c);
    return -1;
}

/* The file holding global token g (0 <= g < total): the last i with start[i] <= g. */
static int file_of(const struct corpus *c, int64_t g) {
    int lo = 0, hi = c->n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (c->start[mid] <= g) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* One corpus_read, and the file it is reading (for the message when that file shrinks). */
struct read_job {
    const struct corpus *c;
    int64_t start, count;
    int32_t *out;
    volatile int file;
};

static void read_files(void *arg) {
    struct read_job *r = arg;
    int64_t start = r->start, count = r->count;
    int32_t *out = r->out;
    for (int i = file_of(r->c, start); count > 0; i++) {
        int64_t off = start - r->c->start[i], k = r->c->files[i].n - off;
        if (k > count) k = count;
        r->file = i;
        npy_read_tokens(&r->c->files[i], off, k, out);
        out += k, start += k, count -= k;
    }
}

void corpus_read(const struct corpus *c, int64_t start, int64_t count, int32_t *out) {
    if (count <= 0) return;
    struct read_job r = {c, start, count, out, -1};
    if (mapfile_guarded(read_files, &r))
        RT_FATAL("%s: the token file shrank while the run had it mapped (truncated or rewritten in place?): "
                 "reading its tokens failed (SIGBUS); it held %lld tokens when the run started",
                 c->files[r.file].path, (long long)c->files[r.file].n);
}

int corpus_check_tokens(const struct corpus *c, int64_t vocab_size, char *err, size_t errlen) {
    for (int i = 0; i < c->n; i++) {
        char msg[NPY_PATH_MAX + 256];
        if (npy_check_tokens(&c->files[i], vocab_size, msg, sizeof msg) == 0) continue;
        if (c->n == 1) snprintf(err, errlen, "%s", msg);
        else snprintf(err, errlen, "%s (file %d of %d)", msg, i + 1, c->n);
        return -1;
    }
    return 0;
}

void corpus_describe(const struct corpus *c, char *buf, size_t buflen) {
    if (c->n == 1) snprintf(buf, buflen, "%s", c->files[0].path);
    else snprintf(buf, buflen, "%d files (%s ... %s)", c->n, c->files[0].path, c->files[c->n - 1].path);
}

void corpus_list_text(const char *list, char *buf, size_t buflen) {
    if (!buflen) return;
    int n = 1;
    for (const char *s = list; *s; s++) n += *s == '\n';
    size_t w = 0;
    for (const char *s = list; w < buflen; s++, w++) {
        buf[w] = *s == '\n' ? ',' : *s;
        if (!*s) return;
        if (*s == '\n' && ++w < buflen) buf[w] = ' ';
    }
    snprintf(buf, buflen, "%.*s, ... (%d paths)", (int)strcspn(list, "\n"), list, n);
}

/* FNV-1a over 64-bit words. */
static uint64_t fnv_word(uint64_t h, uint64_t w) {
    for (int i = 0; i < 8; i++) h = (h ^ ((w >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    return h;
}

uint64_t corpus_fingerprint(const struct corpus *c) {
    uint64_t h = fnv_word(0xcbf29ce484222325ull, (uint64_t)c->n);
    for (int i = 0; i < c->n; i++)
        h = fnv_word(fnv_word(h, (uint64_t)c->files[i].n), (uint64_t)c->files[i].itemsize);
    return h;
}

void corpus_close(struct corpus *c) {
    for (int i = 0; c->files && i < c->n; i++) npy_close(&c->files[i]);
    free(c->files);
    free(c->start);
    memset(c, 0, sizeof *c);
}
