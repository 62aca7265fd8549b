/* safetensors: owns reading the .safetensors file format (the file mapped by mapfile.c):
 * header validation (lengths, dtypes, shapes, offsets), lookup by tensor name, and exact
 * conversion of F32/F64/BF16/F16 data to fp32. The writer is safetensors_write.c. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mapfile.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads little-endian data with plain loads"
#endif

/* The safetensors reference implementation refuses headers over 100 MB. */
#define ST_MAX_HEADER 100000000ull

static const struct {
    const char *name;
    int         size;
} st_types[ST_NDTYPES] = {
    [ST_F64] = {"F64", 8},  [ST_F32] = {"F32", 4},        [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I64] = {"I64", 8},       [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},  [ST_I8] = {"I8", 1},          [ST_U64] = {"U64", 8},
    [ST_U32] = {"U32", 4},  [ST_U16] = {"U16", 2},        [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(int dtype) {
    return dtype >= 0 && dtype < ST_NDTYPES ? st_types[dtype].name : "?";
}

int st_dtype_size(int dtype) { return dtype >= 0 && dtype < ST_NDTYPES ? st_types[dtype].size : 0; }

int st_dtype_is_float(int dtype) {
    return dtype == ST_F32 || dtype == ST_F64 || dtype == ST_BF16 || dtype == ST_F16;
}

static int dtype_from_name(const char *s) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(s, st_types[i].name)) return i;
    return -1;
}

/* A JSON number that is a non-negative integer exactly representable in a double. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double x = v->valuedouble;
    if (!(x >= 0 && x <= 9007199254740992.0) || floor(x) != x) return -1;
    *out = (uint64_t)x;
    return 0;
}

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const struct st_tensor *)a)->name, ((const struct st_tensor *)b)->name);
}

/* Fill t from one header entry; -1 with a message naming the tensor. */
static int parse_entry(const struct st_file *f, const cJSON *e, uint64_t data_len,
                       const unsigned char *data, struct st_tensor *t, char *err, size_t errlen) {
    const char *path = f->path, *name = e->string;
    if (!cJSON_IsObject(e)) {
        snprintf(err, errlen, "%s: %s: header entry is not an object", path, name);
        return -1;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) {
        snprintf(err, errlen, "%s: %s: dtype: %s", path, name, dt ? "expected a string" : "missing");
        return -1;
    }
    t->dtype = dtype_from_name(dt->valuestring);
    if (t->dtype < 0) {
        snprintf(err, errlen, "%s: %s: dtype: unknown dtype \"%s\"", path, name, dt->valuestring);
        return -1;
    }
    if (!cJSON_IsArray(sh)) {
        snprintf(err, errlen, "%s: %s: shape: %s", path, name, sh ? "expected an array" : "missing");
        return -1;
    }
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS) {
        snprintf(err, errlen, "%s: %s: shape: %d dims (at most %d supported)", path, name, nd,
                 ST_MAX_DIMS);
        return -1;
    }
    t->ndim = nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (json_uint(cJSON_GetArrayItem(sh, i), &d)) {
            snprintf(err, errlen, "%s: %s: shape[%d]: expected a non-negative integer", path, name, i);
            return -1;
        }
        t->shape[i] = (int64_t)d;
        if (d && numel > (uint64_t)INT64_MAX / d) overflow = 1;
        else numel *= d;
    }
    uint64_t b, e2;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        json_uint(cJSON_GetArrayItem(off, 0), &b) || json_uint(cJSON_GetArrayItem(off, 1), &e2)) {
        snprintf(err, errlen, "%s: %s: data_offsets: %s", path, name,
                 off ? "expected [begin, end] with non-negative integers" : "missing");
        return -1;
    }
    if (e2 < b) {
        snprintf(err, errlen, "%s: %s: data_offsets [%llu, %llu]: end < begin", path, name,
                 (unsigned long long)b, (unsigned long long)e2);
        return -1;
    }
    if (e2 > data_len) {
        snprintf(err, errlen,
                 "%s: %s: data_offsets [%llu, %llu] run past the end of the data section (%llu bytes)",
                 path, name, (unsigned long long)b, (unsigned long long)e2,
                 (unsigned long long)data_len);
        return -1;
    }
    uint64_t isz = (uint64_t)st_types[t->dtype].size;
    if (overflow || numel > UINT64_MAX / isz || numel * isz != e2 - b) {
        snprintf(err, errlen,
                 "%s: %s: data_offsets [%llu, %llu] hold %llu bytes, but shape and dtype %s need %s%llu",
                 path, name, (unsigned long long)b, (unsigned long long)e2,
                 (unsigned long long)(e2 - b), st_types[t->dtype].name, overflow ? "more than " : "",
                 overflow ? (unsigned long long)INT64_MAX : (unsigned long long)(numel * isz));
        return -1;
    }
    t->numel = (int64_t)numel;
    t->nbytes = e2 - b;
    t->data = data + b;
    t->file = f->path;
    return 0;
}

static void st_reset(struct st_file *f) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

int st_open(struct st_file *f, const char *path, char *err, size_t errlen) {
    st_reset(f);
    cJSON *root = NULL;
    f->path = strdup(path);
    if (!f->path) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    struct mapfile m;
    if (mapfile_open(&m, path, err, errlen)) goto fail;
    f->fd = m.fd;
    f->map = m.map;
    f->map_len = m.len;
    uint64_t size = (uint64_t)m.len;
    if (size < 8) {
        snprintf(err, errlen, "%s: %llu bytes is too short for a safetensors header length", path,
                 (unsigned long long)size);
        goto fail;
    }
    const unsigned char *base = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | base[i];
    if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > size - 8) {
        snprintf(err, errlen,
                 "%s: header length %llu is impossible (file has %llu bytes after the length, limit %llu)",
                 path, (unsigned long long)hlen, (unsigned long long)(size - 8), ST_MAX_HEADER);
        goto fail;
    }
    const char *hdr = (const char *)base + 8, *parse_end = NULL;
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &parse_end, 0);
    if (!root) {
        snprintf(err, errlen, "%s: header is not valid JSON (error near header byte %lld)", path,
                 (long long)(parse_end ? parse_end - hdr : 0));
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: header is not a JSON object", path);
        goto fail;
    }
    for (const char *p = parse_end; p && p < hdr + hlen; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != 0) {
            snprintf(err, errlen, "%s: trailing bytes after the header JSON at header byte %lld", path,
                     (long long)(p - hdr));
            goto fail;
        }
    }
    const unsigned char *data = base + 8 + hlen;
    uint64_t data_len = size - 8 - hlen;
    int cap = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)(cap > 0 ? cap : 1), sizeof *f->tensors);
    if (!f->tensors) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        struct st_tensor *t = &f->tensors[f->n];
        if (parse_entry(f, e, data_len, data, t, err, errlen)) goto fail;
        t->name = strdup(e->string);
        if (!t->name) {
            snprintf(err, errlen, "%s: out of memory", path);
            goto fail;
        }
        f->n++;
    }
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_tensor);
    for (int i = 1; i < f->n; i++) {
        if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name)) {
            snprintf(err, errlen, "%s: %s: tensor appears twice in the header", path, f->tensors[i].name);
            goto fail;
        }
    }
    cJSON_Delete(root);
    return 0;
fail:
    cJSON_Delete(root);
    st_close(f);
    return -1;
}

const struct st_tensor *st_find(const struct st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->tensors[mid].name);
        if (!c) return &f->tensors[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

static float bits_to_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN payloads). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | mant << 13);
    if (exp == 0) {
        if (mant == 0) return bits_to_f32(sign);
        /* Subnormal: mant * 2^-24; renormalize so the leading 1 is the implicit bit. */
        int e = -14;
        while (!(mant & 0x400)) {
            mant <<= 1;
            e--;
        }
        return bits_to_f32(sign | (uint32_t)(e + 127) << 23 | (mant & 0x3ff) << 13);
    }
    return bits_to_f32(sign | (exp - 15 + 127) << 23 | mant << 13);
}

#define ST_PAR_MIN 65536 /* elements below which conversion stays on one thread */

int st_to_f32(const struct st_tensor *t, float *out, char *err, size_t errlen) {
    return st_to_f32_range(t, 0, t->numel, out, err, errlen);
}

int st_to_f32_range(const struct st_tensor *t, int64_t first, int64_t n, float *out, char *err, size_t errlen) {
    if (first < 0 || n < 0 || first > t->numel - n) {
        snprintf(err, errlen, "%s: %s: elements [%lld, +%lld) of %lld", t->file ? t->file : "safetensors", t->name,
                 (long long)first, (long long)n, (long long)t->numel);
        return -1;
    }
    const unsigned char *src = (const unsigned char *)t->data + first * st_dtype_size(t->dtype);
    switch (t->dtype) {
    case ST_F32:
#pragma omp parallel for schedule(static) if (n > ST_PAR_MIN)
        for (int64_t i = 0; i < n; i++) memcpy(&out[i], src + 4 * i, 4);
        return 0;
    case ST_F64:
#pragma omp parallel for schedule(static) if (n > ST_PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, src + 8 * i, 8);
            out[i] = (float)v;
        }
        return 0;
    case ST_BF16:
#pragma omp parallel for schedule(static) if (n > ST_PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, src + 2 * i, 2);
            out[i] = bits_to_f32((uint32_t)v << 16);
        }
        return 0;
    case ST_F16:
#pragma omp parallel for schedule(static) if (n > ST_PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, src + 2 * i, 2);
            out[i] = f16_to_f32(v);
        }
        return 0;
    default:
        snprintf(err, errlen, "%s: %s: dtype %s is not a float type (F32, BF16, F16, F64)",
                 t->file ? t->file : "safetensors", t->name, st_dtype_name(t->dtype));
        return -1;
    }
}

void st_close(struct st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    struct mapfile m = {.fd = f->fd, .map = f->map, .len = f->map_len};
    mapfile_close(&m);
    free(f->path);
    st_reset(f);
}
