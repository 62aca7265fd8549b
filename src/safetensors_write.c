/* safetensors_write: owns writing .safetensors files: the JSON header (metadata, tensors in
 * the caller's order, contiguous data_offsets, space padding to 8 bytes), streaming the data
 * (copied, or fp32 rounded to bf16 on the way), fsync. The reader is safetensors.c. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors_write.c writes little-endian data with plain stores"
#endif

#define STW_CHUNK (1 << 20) /* elements converted per write() when rounding to bf16 */

uint16_t st_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(u >> 16 | 0x0040u); /* quiet NaN */
    /* Add just under half an ulp of bf16, plus one when the kept part is odd: ties go to even.
     * A carry into the exponent is the correct rounding (up to inf past the largest finite). */
    u += 0x7fffu + (u >> 16 & 1u);
    return (uint16_t)(u >> 16);
}

/* ---------------------------------------------------------------- header text */

struct sbuf {
    char  *p;
    size_t len, cap;
    int    oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* A JSON string literal: quote, backslash and control characters escaped; other bytes
 * (UTF-8 included) as they are. */
static void sb_json_str(struct sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            char e[2] = {'\\', (char)*c};
            sb_put(b, e, 2);
        } else if (*c < 0x20) {
            sb_printf(b, "\\u%04x", *c);
        } else {
            sb_put(b, (const char *)c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Check the tensors; nbytes[i] gets each tensor's stored size. -1 with a message. */
static int check_tensors(const char *path, int n, const struct st_wtensor *ts, uint64_t *nbytes,
                         char *err, size_t errlen) {
    if (n < 0) {
        snprintf(err, errlen, "%s: %d tensors", path, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const struct st_wtensor *t = &ts[i];
        const char *name = t->name ? t->name : "(null)";
        if (!t->name || !*t->name || !strcmp(t->name, "__metadata__")) {
            snprintf(err, errlen, "%s: tensor %d: name \"%s\" is not allowed", path, i, name);
            return -1;
        }
        int isz = st_dtype_size(t->dtype);
        if (isz == 0) {
            snprintf(err, errlen, "%s: %s: unknown dtype %d", path, name, t->dtype);
            return -1;
        }
        if (t->src_dtype != t->dtype && !(t->src_dtype == ST_F32 && t->dtype == ST_BF16)) {
            snprintf(err, errlen, "%s: %s: cannot store %s data as %s (only F32 -> BF16 converts)",
                     path, name, st_dtype_name(t->src_dtype), st_dtype_name(t->dtype));
            return -1;
        }
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) {
            snprintf(err, errlen, "%s: %s: %d dims (0..%d)", path, name, t->ndim, ST_MAX_DIMS);
            return -1;
        }
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) {
                snprintf(err, errlen, "%s: %s: shape[%d] = %lld is negative", path, name, d,
                         (long long)t->shape[d]);
                return -1;
            }
            uint64_t s = (uint64_t)t->shape[d];
            if (s && numel > (uint64_t)INT64_MAX / 8 / s) {
                snprintf(err, errlen, "%s: %s: shape too large", path, name);
                return -1;
            }
            numel *= s;
        }
        if (numel && !t->src) {
            snprintf(err, errlen, "%s: %s: no data", path, name);
            return -1;
        }
        nbytes[i] = numel * (uint64_t)isz;
    }
    const char **names = malloc((size_t)(n > 0 ? n : 1) * sizeof *names);
    if (!names) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    for (int i = 0; i < n; i++) names[i] = ts[i].name;
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    int rc = 0;
    for (int i = 1; i < n && !rc; i++) {
        if (!strcmp(names[i - 1], names[i])) {
            snprintf(err, errlen, "%s: %s: tensor name given twice", path, names[i]);
            rc = -1;
        }
    }
    free(names);
    return rc;
}

/* The padded header text into b; -1 with a message. */
static int build_header(const char *path, int n, const struct st_wtensor *ts,
                        const char *const *meta, struct sbuf *b, char *err, size_t errlen) {
    uint64_t *nbytes = malloc((size_t)(n > 0 ? n : 1) * sizeof *nbytes);
    if (!nbytes) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if (check_tensors(path, n, ts, nbytes, err, errlen)) {
        free(nbytes);
        return -1;
    }
    sb_puts(b, "{");
    int first = 1;
    if (meta && meta[0]) {
        sb_puts(b, "\"__metadata__\":{");
        for (int k = 0; meta[k]; k += 2) {
            if (!meta[k + 1]) {
                snprintf(err, errlen, "%s: metadata key \"%s\" has no value", path, meta[k]);
                free(nbytes);
                return -1;
            }
            if (k) sb_puts(b, ",");
            sb_json_str(b, meta[k]);
            sb_puts(b, ":");
            sb_json_str(b, meta[k + 1]);
        }
        sb_puts(b, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const struct st_wtensor *t = &ts[i];
        if (!first) sb_puts(b, ",");
        first = 0;
        sb_json_str(b, t->name);
        sb_puts(b, ":{\"dtype\":");
        sb_json_str(b, st_dtype_name(t->dtype));
        sb_puts(b, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) sb_printf(b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        sb_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)(off + nbytes[i]));
        off += nbytes[i];
    }
    sb_puts(b, "}");
    while (b->len % 8) sb_puts(b, " ");
    free(nbytes);
    if (b->oom) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    return 0;
}

uint64_t st_write_size(int n, const struct st_wtensor *ts, const char *const *meta) {
    struct sbuf b = {0};
    char err[256];
    uint64_t size = 0;
    if (!build_header("", n, ts, meta, &b, err, sizeof err)) {
        size = 8 + (uint64_t)b.len;
        for (int i = 0; i < n; i++) {
            uint64_t numel = 1;
            for (int d = 0; d < ts[i].ndim; d++) numel *= (uint64_t)ts[i].shape[d];
            size += numel * (uint64_t)st_dtype_size(ts[i].dtype);
        }
    }
    free(b.p);
    return size;
}

/* ---------------------------------------------------------------- file output */

static int write_all(int fd, const void *p, uint64_t n, const char *path, char *err,
                     size_t errlen) {
    const char *c = p;
    while (n > 0) {
        size_t k = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t w = write(fd, c, k);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            snprintf(err, errlen, "%s: write failed: %s", path, w < 0 ? strerror(errno) : "no progress");
            return -1;
        }
        c += w;
        n -= (uint64_t)w;
    }
    return 0;
}

/* One tensor's data, copied or rounded to bf16 through buf (STW_CHUNK items). */
static int write_data(int fd, const struct st_wtensor *t, uint16_t *buf, const char *path,
                      char *err, size_t errlen) {
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
    if (t->src_dtype == t->dtype)
        return write_all(fd, t->src, numel * (uint64_t)st_dtype_size(t->dtype), path, err, errlen);
    const unsigned char *src = t->src;
    for (uint64_t i = 0; i < numel; i += STW_CHUNK) {
        int64_t k = (int64_t)(numel - i < STW_CHUNK ? numel - i : STW_CHUNK);
#pragma omp parallel for schedule(static) if (k > 65536)
        for (int64_t j = 0; j < k; j++) {
            float x;
            memcpy(&x, src + 4 * (i + (uint64_t)j), 4);
            buf[j] = st_f32_to_bf16(x);
        }
        if (write_all(fd, buf, 2 * (uint64_t)k, path, err, errlen)) return -1;
    }
    return 0;
}

int st_write(const char *path, int n, const struct st_wtensor *ts, const char *const *meta,
             char *err, size_t errlen) {
    struct sbuf b = {0};
    uint16_t *buf = NULL;
    int fd = -1, created = 0;
    if (build_header(path, n, ts, meta, &b, err, errlen)) goto fail;
    int convert = 0;
    for (int i = 0; i < n; i++) convert |= ts[i].src_dtype != ts[i].dtype;
    if (convert && !(buf = malloc(STW_CHUNK * sizeof *buf))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        goto fail;
    }
    created = 1;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)b.len >> (8 * i));
    if (write_all(fd, len8, 8, path, err, errlen) || write_all(fd, b.p, b.len, path, err, errlen))
        goto fail;
    for (int i = 0; i < n; i++) {
        if (write_data(fd, &ts[i], buf, path, err, errlen)) {
            size_t k = strlen(err);
            if (k < errlen) snprintf(err + k, errlen - k, " (tensor %s)", ts[i].name);
            goto fail;
        }
    }
    if (fsync(fd)) {
        snprintf(err, errlen, "%s: fsync failed: %s", path, strerror(errno));
        goto fail;
    }
    int rc = close(fd);
    fd = -1;
    if (rc) {
        snprintf(err, errlen, "%s: close failed: %s", path, strerror(errno));
        goto fail;
    }
    free(buf);
    free(b.p);
    return 0;
fail:
    if (fd >= 0) close(fd);
    if (created) unlink(path);
    free(buf);
    free(b.p);
    return -1;
}
