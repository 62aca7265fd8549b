/* npy: NumPy .npy token files. Owns the header parser (the Python dict literal of format
 * versions 1.0/2.0/3.0), the token range check, and windowed reads converted to int32.
 * Shape letters: n tokens. */
#include "npy.h"

#include <stdio.h>
#include <string.h>

#include "mapfile.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c reads little-endian data with plain loads"
#endif

#define NPY_MAX_DIMS 8
#define NPY_EXPECTED "expected uint16 '<u2', int32 '<i4' or uint32 '<u4'"

/* Cursor over the header text. */
struct hcur {
    const char *p, *end;
};

static void skip_ws(struct hcur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int eat(struct hcur *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes ('...' or "..."). */
static int parse_str(struct hcur *c, char *out, size_t outlen) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
    char q = *c->p++;
    size_t k = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || k + 1 >= outlen) return -1;
        out[k++] = *c->p++;
    }
    if (c->p >= c->end) return -1;
    c->p++;
    out[k] = 0;
    return 0;
}

/* A non-negative decimal integer (Python 2 headers may append 'L'). */
static int parse_uint(struct hcur *c, int64_t *v) {
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return -1;
    int64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int d = *c->p++ - '0';
        if (x > (INT64_MAX - d) / 10) return -1;
        x = 10 * x + d;
    }
    if (c->p < c->end && *c->p == 'L') c->p++;
    *v = x;
    return 0;
}

/* (a, b, ...) with an optional trailing comma; () is a 0-d shape. */
static int parse_shape(struct hcur *c, int64_t *dims, int *ndim) {
    *ndim = 0;
    if (!eat(c, '(')) return -1;
    if (eat(c, ')')) return 0;
    for (;;) {
        int64_t v;
        if (*ndim == NPY_MAX_DIMS || parse_uint(c, &v)) return -1;
        dims[(*ndim)++] = v;
        if (eat(c, ')')) return 0;
        if (!eat(c, ',')) return -1;
        if (eat(c, ')')) return 0;
    }
}

static int parse_bool(struct hcur *c, int *v) {
    skip_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && !memcmp(c->p, "True", 4)) {
        c->p += 4;
        *v = 1;
        return 0;
    }
    if (left >= 5 && !memcmp(c->p, "False", 5)) {
        c->p += 5;
        *v = 0;
        return 0;
    }
    return -1;
}

static void format_shape(const int64_t *dims, int ndim, char *out, size_t outlen) {
    size_t k = (size_t)snprintf(out, outlen, "(");
    for (int i = 0; i < ndim && k < outlen; i++)
        k += (size_t)snprintf(out + k, outlen - k, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (k < outlen) snprintf(out + k, outlen - k, ndim == 1 ? ",)" : ")");
}

/* Dtype from a descr string; -1 with a message when it is not a token type. */
static int parse_descr(const char *path, const char *descr, struct npy *f, char *err, size_t errlen) {
    char order = descr[0];
    const char *kind = descr[0] ? descr + 1 : descr;
    int type = -1;
    if (!strcmp(kind, "u2")) type = NPY_U16;
    else if (!strcmp(kind, "i4")) type = NPY_I32;
    else if (!strcmp(kind, "u4")) type = NPY_U32;
    if (type >= 0 && order == '>') {
        snprintf(err, errlen, "%s: dtype '%s' is big-endian (%s, little-endian)", path, descr,
                 NPY_EXPECTED);
        return -1;
    }
    /* '=' is native order, which is little endian here. */
    if (type < 0 || (order != '<' && order != '=')) {
        snprintf(err, errlen, "%s: dtype '%s' is not a token type (%s)", path, descr, NPY_EXPECTED);
        return -1;
    }
    f->dtype = type;
    f->itemsize = type == NPY_U16 ? 2 : 4;
    return 0;
}

static int parse_header(struct npy *f, const char *h, size_t hlen, char *err, size_t errlen) {
    const char *path = f->path;
    struct hcur c = {h, h + hlen};
    char key[64], descr[64] = "";
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0, ndim = 0;
    int64_t dims[NPY_MAX_DIMS];
    if (!eat(&c, '{')) goto bad;
    while (!eat(&c, '}')) {
        if (parse_str(&c, key, sizeof key) || !eat(&c, ':')) goto bad;
        if (!strcmp(key, "descr")) {
            if (parse_str(&c, descr, sizeof descr)) {
                snprintf(err, errlen, "%s: header 'descr' is not a simple dtype string", path);
                return -1;
            }
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order")) {
            if (parse_bool(&c, &fortran)) goto bad;
            have_order = 1;
        } else if (!strcmp(key, "shape")) {
            if (parse_shape(&c, dims, &ndim)) {
                snprintf(err, errlen, "%s: header 'shape' is not a tuple of at most %d integers", path,
                         NPY_MAX_DIMS);
                return -1;
            }
            have_shape = 1;
        } else {
            snprintf(err, errlen, "%s: header has an unknown key '%s'", path, key);
            return -1;
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}')) goto bad;
            break;
        }
    }
    if (!have_descr || !have_order || !have_shape) {
        snprintf(err, errlen, "%s: header lacks '%s'", path,
                 !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
        return -1;
    }
    if (parse_descr(path, descr, f, err, errlen)) return -1;
    if (fortran) {
        snprintf(err, errlen, "%s: fortran_order is True (expected a C-order array)", path);
        return -1;
    }
    if (ndim != 1) {
        char s[256];
        format_shape(dims, ndim, s, sizeof s);
        snprintf(err, errlen, "%s: expected a 1-D array, got shape %s", path, s);
        return -1;
    }
    if (dims[0] < 1) {
        snprintf(err, errlen, "%s: shape (0,): the file holds no tokens", path);
        return -1;
    }
    f->n = dims[0];
    return 0;
bad:
    snprintf(err, errlen, "%s: malformed header dict near byte %lld of the header", path,
             (long long)(c.p - h));
    return -1;
}

static void npy_reset(struct npy *f) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

int npy_open(struct npy *f, const char *path, char *err, size_t errlen) {
    npy_reset(f);
    snprintf(f->path, sizeof f->path, "%s", path);
    struct mapfile m;
    if (mapfile_open(&m, path, err, errlen)) {
        npy_reset(f);
        return -1;
    }
    f->fd = m.fd;
    f->map = m.map;
    f->map_len = m.len;
    uint64_t size = (uint64_t)m.len;
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (size < 10) {
        snprintf(err, errlen, "%s: not a .npy file (bad magic: only %llu bytes)", path,
                 (unsigned long long)size);
        goto fail;
    }
    const unsigned char *b = f->map;
    if (memcmp(b, magic, sizeof magic)) {
        snprintf(err, errlen, "%s: not a .npy file (bad magic)", path);
        goto fail;
    }
    int major = b[6], minor = b[7];
    uint64_t hlen, hstart;
    if (major == 1 && minor == 0) {
        hlen = (uint64_t)b[8] | (uint64_t)b[9] << 8;
        hstart = 10;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (size < 12) {
            snprintf(err, errlen, "%s: truncated header (%llu bytes)", path, (unsigned long long)size);
            goto fail;
        }
        hlen = (uint64_t)b[8] | (uint64_t)b[9] << 8 | (uint64_t)b[10] << 16 | (uint64_t)b[11] << 24;
        hstart = 12;
    } else {
        snprintf(err, errlen, "%s: unsupported .npy format version %d.%d (expected 1.0, 2.0 or 3.0)",
                 path, major, minor);
        goto fail;
    }
    if (hlen > size - hstart) {
        snprintf(err, errlen, "%s: truncated: header length %llu exceeds the %llu bytes after it", path,
                 (unsigned long long)hlen, (unsigned long long)(size - hstart));
        goto fail;
    }
    if (parse_header(f, (const char *)b + hstart, (size_t)hlen, err, errlen)) goto fail;
    uint64_t data_off = hstart + hlen, have = size - data_off;
    if ((uint64_t)f->n > have / (uint64_t)f->itemsize) {
        snprintf(err, errlen,
                 "%s: truncated: %lld tokens of %d bytes need %llu data bytes, the file has %llu",
                 path, (long long)f->n, f->itemsize,
                 (unsigned long long)f->n * (unsigned long long)f->itemsize,
                 (unsigned long long)have);
        goto fail;
    }
    f->data = b + data_off;
    return 0;
fail:
    npy_close(f);
    return -1;
}

/* Token i as a signed 64-bit value (uint32 stays non-negative). */
static int64_t token_at(const struct npy *f, int64_t i) {
    const unsigned char *p = f->data + i * f->itemsize;
    if (f->dtype == NPY_U16) {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    if (f->dtype == NPY_U32) {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

int npy_check_tokens(const struct npy *f, int64_t vocab_size, char *err, size_t errlen) {
    const unsigned char *d = f->data;
    const int64_t n = f->n;
    int64_t bad = n; /* first index out of range */
    if (f->dtype == NPY_U16) {
#pragma omp parallel for schedule(static) reduction(min : bad)
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, d + 2 * i, 2);
            if ((int64_t)v >= vocab_size && i < bad) bad = i;
        }
    } else if (f->dtype == NPY_U32) {
#pragma omp parallel for schedule(static) reduction(min : bad)
        for (int64_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, d + 4 * i, 4);
            if ((int64_t)v >= vocab_size && i < bad) bad = i;
        }
    } else {
#pragma omp parallel for schedule(static) reduction(min : bad)
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, d + 4 * i, 4);
            if ((v < 0 || (int64_t)v >= vocab_size) && i < bad) bad = i;
        }
    }
    if (bad < n) {
        snprintf(err, errlen, "%s: token %lld at index %lld is outside [0, %lld) (model.vocab_size)",
                 f->path, (long long)token_at(f, bad), (long long)bad, (long long)vocab_size);
        return -1;
    }
    return 0;
}

void npy_read_tokens(const struct npy *f, int64_t start, int64_t count, int32_t *out) {
    const unsigned char *d = f->data + start * f->itemsize;
    if (f->dtype == NPY_U16) {
        for (int64_t i = 0; i < count; i++) {
            uint16_t v;
            memcpy(&v, d + 2 * i, 2);
            out[i] = v;
        }
    } else {
        /* int32 copies as is; uint32 tokens are < vocab_size <= INT32_MAX once checked. */
        memcpy(out, d, (size_t)count * 4);
    }
}

void npy_close(struct npy *f) {
    struct mapfile m = {.fd = f->fd, .map = f->map, .len = f->map_len};
    mapfile_close(&m);
    npy_reset(f);
}
