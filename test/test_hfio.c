/* test_hfio: the file readers: .npy token files (npy), safetensors (safetensors) and Hugging
 * Face model directories (hf). Every input is written by hand into a temporary directory. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf.h"
#include "npy.h"
#include "params.h"
#include "safetensors.h"
#include "testutil.h"

static char err[1024];

/* The last error mentions both fragments (b may be NULL). */
static int err_has(const char *a, const char *b) {
    int ok = strstr(err, a) && (!b || strstr(err, b));
    if (!ok) fprintf(stderr, "  error was: %s\n  wanted: \"%s\" and \"%s\"\n", err, a, b ? b : "");
    return ok;
}

static const char *path_in(const char *dir, const char *name) {
    static char slots[4][1024];
    static int next;
    char *p = slots[next++ % 4];
    snprintf(p, 1024, "%s/%s", dir, name);
    return p;
}

/* ---------------------------------------------------------------- npy */

/* A .npy file: magic, version major.0, header length (2 bytes for v1, 4 otherwise), the dict
 * padded with spaces and '\n' so the data starts at a multiple of 64, then the data. */
static void write_npy(const char *path, int major, const char *dict, const void *data, size_t n) {
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t hlen = dl + 1;
    while ((pre + hlen) % 64) hlen++;
    unsigned char *b = malloc(pre + hlen + n);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) b[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + pre, dict, dl);
    memset(b + pre + dl, ' ', hlen - dl - 1);
    b[pre + hlen - 1] = '\n';
    if (n) memcpy(b + pre + hlen, data, n);
    tu_write_file(path, b, pre + hlen + n);
    free(b);
}

static void test_npy_good(const char *dir) {
    struct npy f;
    int32_t out[8];

    /* uint16, v1 header */
    const uint16_t u16[] = {0, 1, 65535, 42, 7};
    const char *p = path_in(dir, "u16.npy");
    write_npy(p, 1, "{'descr': '<u2', 'fortran_order': False, 'shape': (5,), }", u16, sizeof u16);
    CHECK(npy_open(&f, p, err, sizeof err) == 0);
    CHECK(f.dtype == NPY_U16 && f.itemsize == 2 && f.n == 5);
    CHECK(npy_check_tokens(&f, 65536, err, sizeof err) == 0);
    npy_read_tokens(&f, 1, 3, out);
    CHECK(out[0] == 1 && out[1] == 65535 && out[2] == 42);
    CHECK(npy_check_tokens(&f, 65535, err, sizeof err) == -1 && err_has(p, "token 65535 at index 2"));
    npy_close(&f);
    CHECK(f.fd == -1 && f.map == NULL);

    /* int32, v2 header, spaces inside the shape tuple, keys in another order */
    const int32_t i32[] = {5, 0, 31999, 7};
    p = path_in(dir, "i32.npy");
    write_npy(p, 2, "{'shape': ( 4 , ), 'fortran_order': False, 'descr': '<i4'}", i32, sizeof i32);
    CHECK(npy_open(&f, p, err, sizeof err) == 0);
    CHECK(f.dtype == NPY_I32 && f.itemsize == 4 && f.n == 4);
    CHECK(npy_check_tokens(&f, 32000, err, sizeof err) == 0);
    npy_read_tokens(&f, 0, 4, out);
    CHECK(out[0] == 5 && out[1] == 0 && out[2] == 31999 && out[3] == 7);
    npy_close(&f);

    /* uint32, v3 header, native-order descr, values above 2^16 */
    const uint32_t u32[] = {70000, 3, 100000, 1, 65536};
    p = path_in(dir, "u32.npy");
    write_npy(p, 3, "{\"descr\": \"=u4\", \"fortran_order\": False, \"shape\": (5,)}", u32, sizeof u32);
    CHECK(npy_open(&f, p, err, sizeof err) == 0);
    CHECK(f.dtype == NPY_U32 && f.n == 5);
    CHECK(npy_check_tokens(&f, 100001, err, sizeof err) == 0);
    npy_read_tokens(&f, 2, 3, out);
    CHECK(out[0] == 100000 && out[1] == 1 && out[2] == 65536);
    npy_close(&f);

    /* data longer than the shape says is fine (only the first n items are tokens) */
    p = path_in(dir, "long.npy");
    write_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", i32, sizeof i32);
    CHECK(npy_open(&f, p, err, sizeof err) == 0 && f.n == 2);
    npy_close(&f);

    /* a large file: the parallel check reports the first bad index of several */
    const int64_t n = 3000000;
    uint16_t *big = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) big[i] = (uint16_t)(i % 1000);
    big[2999990] = 5000;
    big[2777777] = 4000;
    big[1234567] = 3000;
    big[1234570] = 4500; /* same thread chunk: the first one must win */
    p = path_in(dir, "big.npy");
    write_npy(p, 1, "{'descr': '<u2', 'fortran_order': False, 'shape': (3000000,), }", big,
              (size_t)n * 2);
    free(big);
    CHECK(npy_open(&f, p, err, sizeof err) == 0 && f.n == n);
    CHECK(npy_check_tokens(&f, 1000, err, sizeof err) == -1 &&
          err_has("token 3000 at index 1234567 is outside [0, 1000) (model.vocab_size)", NULL));
    CHECK(npy_check_tokens(&f, 5001, err, sizeof err) == 0);
    npy_close(&f);
}

static void npy_bad(const char *dir, const char *name, int major, const char *dict, const void *data,
                    size_t n, const char *frag, int line) {
    struct npy f;
    const char *p = path_in(dir, name);
    write_npy(p, major, dict, data, n);
    int rc = npy_open(&f, p, err, sizeof err);
    if (!tu_check(rc == -1, "npy_open fails", __FILE__, line)) {
        npy_close(&f);
        return;
    }
    tu_check(err_has(p, frag), frag, __FILE__, line);
    tu_check(f.fd == -1 && f.map == NULL, "closed after failure", __FILE__, line);
}

static void test_npy_bad(const char *dir) {
    const int32_t d[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    npy_bad(dir, "f4.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", d, 16,
            "dtype '<f4' is not a token type (expected uint16 '<u2', int32 '<i4' or uint32 '<u4')",
            __LINE__);
    npy_bad(dir, "be.npy", 1, "{'descr': '>i4', 'fortran_order': False, 'shape': (4,), }", d, 16,
            "dtype '>i4' is big-endian", __LINE__);
    npy_bad(dir, "u1.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", d, 16,
            "dtype '|u1' is not a token type", __LINE__);
    npy_bad(dir, "2d.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 5), }", d, 40,
            "expected a 1-D array, got shape (2, 5)", __LINE__);
    npy_bad(dir, "0d.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (), }", d, 4,
            "expected a 1-D array, got shape ()", __LINE__);
    npy_bad(dir, "empty.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (0,), }", d, 0,
            "holds no tokens", __LINE__);
    npy_bad(dir, "fortran.npy", 1, "{'descr': '<i4', 'fortran_order': True, 'shape': (4,), }", d, 16,
            "fortran_order is True", __LINE__);
    npy_bad(dir, "trunc.npy", 2, "{'descr': '<i4', 'fortran_order': False, 'shape': (10,), }", d, 36,
            "truncated: 10 tokens of 4 bytes need 40 data bytes, the file has 36", __LINE__);
    npy_bad(dir, "noshape.npy", 1, "{'descr': '<i4', 'fortran_order': False, }", d, 16,
            "lacks 'shape'", __LINE__);
    npy_bad(dir, "garbage.npy", 1, "{'descr' '<i4'}", d, 16, "malformed header", __LINE__);

    struct npy f;
    const char *p = path_in(dir, "magic.npy");
    tu_write_file(p, "\x93NUMPX\x01\x00\x10\x00{}              \n", 26);
    CHECK(npy_open(&f, p, err, sizeof err) == -1 && err_has(p, "not a .npy file (bad magic)"));
    p = path_in(dir, "tiny.npy");
    tu_write_file(p, "\x93NUM", 4);
    CHECK(npy_open(&f, p, err, sizeof err) == -1 && err_has(p, "bad magic"));
    p = path_in(dir, "v9.npy");
    tu_write_file(p, "\x93NUMPY\x09\x00\x10\x00{}              \n", 26);
    CHECK(npy_open(&f, p, err, sizeof err) == -1 && err_has(p, "version 9.0"));
    p = path_in(dir, "hlen.npy");
    tu_write_file(p, "\x93NUMPY\x01\x00\xff\x00{}              \n", 26);
    CHECK(npy_open(&f, p, err, sizeof err) == -1 && err_has(p, "header length 255"));
    CHECK(npy_open(&f, path_in(dir, "absent.npy"), err, sizeof err) == -1 &&
          err_has("absent.npy: cannot open", NULL));

    /* token range errors name the file, value and index */
    const uint32_t u32[] = {1, 2, 70000, 80000};
    p = path_in(dir, "range.npy");
    write_npy(p, 1, "{'descr': '<u4', 'fortran_order': False, 'shape': (4,), }", u32, sizeof u32);
    CHECK(npy_open(&f, p, err, sizeof err) == 0);
    CHECK(npy_check_tokens(&f, 32000, err, sizeof err) == -1 &&
          err_has(p, "token 70000 at index 2 is outside [0, 32000) (model.vocab_size)"));
    npy_close(&f);
    const int32_t neg[] = {1, -5, 3};
    p = path_in(dir, "neg.npy");
    write_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", neg, sizeof neg);
    CHECK(npy_open(&f, p, err, sizeof err) == 0);
    CHECK(npy_check_tokens(&f, 32000, err, sizeof err) == -1 &&
          err_has(p, "token -5 at index 1 is outside [0, 32000)"));
    npy_close(&f);
}

/* ---------------------------------------------------------------- safetensors */

/* Builds a safetensors file: header JSON (cJSON) + concatenated data. */
struct stb {
    cJSON         *hdr;
    unsigned char *data;
    size_t         len;
};

static void stb_init(struct stb *b) {
    b->hdr = cJSON_CreateObject();
    b->data = NULL;
    b->len = 0;
}

static void stb_add(struct stb *b, const char *name, const char *dtype, int ndim,
                    const int64_t *shape, const void *bytes, size_t n) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "dtype", dtype);
    cJSON *sh = cJSON_AddArrayToObject(e, "shape");
    for (int i = 0; i < ndim; i++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[i]));
    cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)b->len));
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(b->len + n)));
    cJSON_AddItemToObject(b->hdr, name, e);
    b->data = realloc(b->data, b->len + n + 1);
    if (n) memcpy(b->data + b->len, bytes, n);
    b->len += n;
}

/* Header length field, header text, data; hlen_field 0 means the true length. */
static void write_st_raw(const char *path, uint64_t hlen_field, const char *hdr, const void *data,
                         size_t n) {
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    unsigned char *buf = calloc(1, 8 + padded + n);
    uint64_t hf = hlen_field ? hlen_field : padded;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hf >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    if (n) memcpy(buf + 8 + padded, data, n);
    tu_write_file(path, buf, 8 + padded + n);
    free(buf);
}

static void stb_write(struct stb *b, const char *path) {
    char *h = cJSON_PrintUnformatted(b->hdr);
    write_st_raw(path, 0, h, b->data, b->len);
    free(h);
    cJSON_Delete(b->hdr);
    free(b->data);
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static int same_bits(float a, float b) { return !memcmp(&a, &b, 4); }

static void test_st_good(const char *dir) {
    struct stb b;
    stb_init(&b);
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "format", "pt");
    cJSON_AddItemToObject(b.hdr, "__metadata__", meta);
    const float f32[] = {1.5f, -2.25f, 3e-38f, INFINITY, 0.1f, -0.0f};
    const double f64[] = {0.1, 1.0 / 3.0, -2.5, 1e-40};
    const uint16_t bf16[] = {0x3f80, 0xc040, 0x0001, 0x7f80, 0x3dcd, 0x8000};
    const uint16_t f16[] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x7bff, 0x7c00,
                            0xfc00, 0x7e00, 0x8000, 0x0400, 0x3555, 0x8200};
    const int32_t i32[] = {1, 2};
    const float scalar = 7.0f;
    stb_add(&b, "a.f32", "F32", 2, (int64_t[]){2, 3}, f32, sizeof f32);
    stb_add(&b, "b.f64", "F64", 1, (int64_t[]){4}, f64, sizeof f64);
    stb_add(&b, "c.bf16", "BF16", 3, (int64_t[]){1, 2, 3}, bf16, sizeof bf16);
    stb_add(&b, "d.f16", "F16", 1, (int64_t[]){12}, f16, sizeof f16);
    stb_add(&b, "e.i32", "I32", 1, (int64_t[]){2}, i32, sizeof i32);
    stb_add(&b, "f.scalar", "F32", 0, NULL, &scalar, 4);
    stb_add(&b, "g.empty", "BF16", 2, (int64_t[]){0, 5}, NULL, 0);
    const char *p = path_in(dir, "good.safetensors");
    stb_write(&b, p);

    struct st_file f;
    float out[16];
    CHECK(st_open(&f, p, err, sizeof err) == 0);
    CHECK(f.n == 7);
    CHECK(st_find(&f, "__metadata__") == NULL && st_find(&f, "nope") == NULL);

    const struct st_tensor *t = st_find(&f, "a.f32");
    CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
          t->numel == 6 && t->nbytes == 24);
    CHECK(t && st_to_f32(t, out, err, sizeof err) == 0 && !memcmp(out, f32, sizeof f32));

    t = st_find(&f, "b.f64");
    CHECK(t && t->dtype == ST_F64 && st_to_f32(t, out, err, sizeof err) == 0);
    for (int i = 0; i < 4; i++) CHECK(same_bits(out[i], (float)f64[i]));

    t = st_find(&f, "c.bf16");
    CHECK(t && t->dtype == ST_BF16 && t->ndim == 3 && t->numel == 6);
    CHECK(t && st_to_f32(t, out, err, sizeof err) == 0);
    CHECK(out[0] == 1.0f && out[1] == -3.0f && out[3] == INFINITY);
    CHECK(same_bits(out[2], from_bits(0x00010000u)) && out[2] == ldexpf(1.0f, -133));
    CHECK(same_bits(out[4], from_bits(0x3dcd0000u)) && same_bits(out[5], -0.0f));

    t = st_find(&f, "d.f16");
    CHECK(t && t->dtype == ST_F16 && st_to_f32(t, out, err, sizeof err) == 0);
    CHECK(out[0] == 1.0f && out[1] == -2.0f);
    CHECK(out[2] == ldexpf(1.0f, -24));             /* smallest subnormal */
    CHECK(out[3] == ldexpf(1023.0f, -24));          /* largest subnormal */
    CHECK(out[4] == 65504.0f);                      /* largest normal */
    CHECK(out[5] == INFINITY && out[6] == -INFINITY);
    CHECK(isnan(out[7]));
    CHECK(out[8] == 0.0f && signbit(out[8]));
    CHECK(out[9] == ldexpf(1.0f, -14));             /* smallest normal */
    CHECK(out[10] == 1365.0f / 4096.0f);            /* 0x3555: 1.0101010101b * 2^-2 */
    CHECK(out[11] == -ldexpf(512.0f, -24));         /* negative subnormal */

    t = st_find(&f, "e.i32");
    CHECK(t && t->dtype == ST_I32 && st_to_f32(t, out, err, sizeof err) == -1 &&
          err_has(p, "e.i32: dtype I32 is not a float type"));
    t = st_find(&f, "f.scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1 && st_to_f32(t, out, err, sizeof err) == 0 &&
          out[0] == 7.0f);
    t = st_find(&f, "g.empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0);
    st_close(&f);
    CHECK(f.fd == -1 && f.map == NULL && f.n == 0);
}

static void st_bad(const char *dir, const char *name, uint64_t hlen, const char *hdr, size_t ndata,
                   const char *frag, int line) {
    unsigned char data[64] = {0};
    const char *p = path_in(dir, name);
    write_st_raw(p, hlen, hdr, data, ndata);
    struct st_file f;
    int rc = st_open(&f, p, err, sizeof err);
    if (!tu_check(rc == -1, "st_open fails", __FILE__, line)) {
        st_close(&f);
        return;
    }
    tu_check(err_has(p, frag), frag, __FILE__, line);
}

static void test_st_bad(const char *dir) {
    const char *ok = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    st_bad(dir, "hlen_huge.safetensors", 1ull << 40, ok, 16, "header length 1099511627776", __LINE__);
    st_bad(dir, "hlen_past.safetensors", 500, ok, 16, "header length 500", __LINE__);
    st_bad(dir, "hlen_short.safetensors", 8, ok, 16, "not valid JSON", __LINE__);
    st_bad(dir, "json.safetensors", 0, "{\"w\": [}", 16, "not valid JSON", __LINE__);
    st_bad(dir, "past.safetensors", 0,
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", 16,
           "w: data_offsets [0, 400] run past the end of the data section (16 bytes)", __LINE__);
    st_bad(dir, "nbytes.safetensors", 0,
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16,
           "w: data_offsets [0, 16] hold 16 bytes, but shape and dtype F32 need 12", __LINE__);
    st_bad(dir, "order.safetensors", 0,
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 16, "end < begin",
           __LINE__);
    st_bad(dir, "dtype.safetensors", 0,
           "{\"w\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,4]}}", 16,
           "w: dtype: unknown dtype \"Q4\"", __LINE__);
    st_bad(dir, "noshape.safetensors", 0, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 16,
           "w: shape: missing", __LINE__);
    st_bad(dir, "negdim.safetensors", 0,
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 16,
           "w: shape[0]: expected a non-negative integer", __LINE__);
    st_bad(dir, "dims.safetensors", 0,
           "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 16,
           "9 dims", __LINE__);
    st_bad(dir, "overflow.safetensors", 0,
           "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}}", 16,
           "need more than", __LINE__);
    st_bad(dir, "dup.safetensors", 0,
           "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
           "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
           16, "w: tensor appears twice", __LINE__);
    struct st_file f;
    const char *p = path_in(dir, "short.safetensors");
    tu_write_file(p, "\x01\x02", 2);
    CHECK(st_open(&f, p, err, sizeof err) == -1 && err_has(p, "too short"));
}

/* ---------------------------------------------------------------- hf config */

static int read_cfg(const char *dir, const char *json, struct model_config *mc) {
    tu_write_file(path_in(dir, "config.json"), json, strlen(json));
    memset(mc, 0x5a, sizeof *mc);
    return hf_read_config(dir, mc, err, sizeof err);
}

#define BASE "\"vocab_size\": 1000, \"hidden_size\": 64, \"num_hidden_layers\": 2, " \
             "\"num_attention_heads\": 4, \"intermediate_size\": 160"

static void cfg_bad(const char *dir, const char *json, const char *frag, int line) {
    struct model_config mc;
    int rc = read_cfg(dir, json, &mc);
    if (tu_check(rc == -1, "hf_read_config fails", __FILE__, line))
        tu_check(err_has("config.json", frag), frag, __FILE__, line);
}

static void test_hf_config(const char *dir) {
    struct model_config mc;
    /* transformers v4, Llama 3.1 8B */
    CHECK(read_cfg(dir,
                   "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                   "\"vocab_size\": 128256, \"hidden_size\": 4096, \"num_hidden_layers\": 32, "
                   "\"num_attention_heads\": 32, \"num_key_value_heads\": 8, \"head_dim\": 128, "
                   "\"intermediate_size\": 14336, \"rms_norm_eps\": 1e-05, \"rope_theta\": 500000.0, "
                   "\"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, "
                   "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, "
                   "\"rope_type\": \"llama3\"}, \"tie_word_embeddings\": false, "
                   "\"hidden_act\": \"silu\", \"attention_bias\": false, \"mlp_bias\": false, "
                   "\"attention_dropout\": 0.0, \"torch_dtype\": \"bfloat16\", "
                   "\"max_position_embeddings\": 131072}",
                   &mc) == 0);
    CHECK(mc.vocab_size == 128256 && mc.dim == 4096 && mc.n_layers == 32 && mc.n_heads == 32 &&
          mc.n_kv_heads == 8 && mc.head_dim == 128 && mc.ffn_dim == 14336);
    CHECK(mc.norm_eps == 1e-5 && mc.rope_theta == 500000.0 && mc.tie_embeddings == 0);
    CHECK(mc.rope.type == ROPE_LLAMA3 && mc.rope.factor == 8.0 && mc.rope.low_freq_factor == 1.0 &&
          mc.rope.high_freq_factor == 4.0 && mc.rope.original_max_pos == 8192);

    /* transformers v5 rope_parameters, linear; head_dim null; tied */
    CHECK(read_cfg(dir,
                   "{" BASE ", \"head_dim\": null, \"num_key_value_heads\": 2, "
                   "\"tie_word_embeddings\": true, \"rope_parameters\": {\"rope_type\": \"linear\", "
                   "\"factor\": 2.0, \"rope_theta\": 250000.0}}",
                   &mc) == 0);
    CHECK(mc.head_dim == 16 && mc.n_kv_heads == 2 && mc.tie_embeddings == 1);
    CHECK(mc.rope.type == ROPE_LINEAR && mc.rope.factor == 2.0 && mc.rope_theta == 250000.0);

    /* v5 default rope */
    CHECK(read_cfg(dir, "{" BASE ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1e6}}",
                   &mc) == 0);
    CHECK(mc.rope.type == ROPE_DEFAULT && mc.rope_theta == 1e6);

    /* defaults */
    CHECK(read_cfg(dir, "{" BASE "}", &mc) == 0);
    CHECK(mc.vocab_size == 1000 && mc.dim == 64 && mc.n_layers == 2 && mc.n_heads == 4 &&
          mc.n_kv_heads == 4 && mc.head_dim == 16 && mc.ffn_dim == 160);
    CHECK(mc.norm_eps == 1e-6 && mc.rope_theta == 10000.0 && mc.tie_embeddings == 0 &&
          mc.rope.type == ROPE_DEFAULT);
    CHECK(read_cfg(dir, "{" BASE ", \"rope_scaling\": null, \"num_key_value_heads\": null}", &mc) == 0);
    CHECK(mc.rope.type == ROPE_DEFAULT && mc.n_kv_heads == 4);

    /* legacy "type" spelling */
    CHECK(read_cfg(dir, "{" BASE ", \"rope_theta\": 5e5, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4}}",
                   &mc) == 0);
    CHECK(mc.rope.type == ROPE_LINEAR && mc.rope.factor == 4.0 && mc.rope_theta == 5e5);

    cfg_bad(dir, "{" BASE ", \"rope_scaling\": {\"rope_type\": \"su\", \"factor\": 4}}",
            "rope_scaling.rope_type: \"su\" is not supported (default, linear, llama3, dynamic, yarn)", __LINE__);
    cfg_bad(dir, "{" BASE ", \"rope_scaling\": {\"type\": \"ntk\", \"factor\": 4}}",
            "rope_scaling.type: \"ntk\" is not supported", __LINE__);
    cfg_bad(dir, "{" BASE ", \"rope_parameters\": {\"rope_type\": \"longrope\"}}",
            "rope_parameters.rope_type: \"longrope\" is not supported", __LINE__);
    cfg_bad(dir, "{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}}",
            "rope_scaling.low_freq_factor: missing", __LINE__);
    cfg_bad(dir, "{" BASE ", \"rope_scaling\": {\"rope_type\": \"linear\"}}",
            "rope_scaling.factor: missing", __LINE__);
    cfg_bad(dir, "{" BASE ", \"rope_scaling\": {\"factor\": 2}}", "rope_scaling.rope_type: missing",
            __LINE__);
    cfg_bad(dir, "{" BASE ", \"attention_bias\": true}", "attention_bias: true is not supported",
            __LINE__);
    cfg_bad(dir, "{" BASE ", \"mlp_bias\": true}", "mlp_bias: true is not supported", __LINE__);
    cfg_bad(dir, "{" BASE ", \"model_type\": \"mistral\"}", "model_type: \"mistral\" is not supported",
            __LINE__);
    cfg_bad(dir, "{" BASE ", \"hidden_act\": \"gelu\"}", "hidden_act: \"gelu\" is not supported",
            __LINE__);
    cfg_bad(dir, "{\"vocab_size\": 10, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                 "\"intermediate_size\": 8}",
            "config.json: hidden_size: missing", __LINE__);
    cfg_bad(dir, "{\"vocab_size\": 10, \"hidden_size\": \"64\", \"num_hidden_layers\": 2, "
                 "\"num_attention_heads\": 4, \"intermediate_size\": 8}",
            "hidden_size: expected an integer", __LINE__);
    cfg_bad(dir, "{\"vocab_size\": 10.5, \"hidden_size\": 64, \"num_hidden_layers\": 2, "
                 "\"num_attention_heads\": 4, \"intermediate_size\": 8}",
            "vocab_size: expected an integer", __LINE__);
    cfg_bad(dir, "{" BASE ", \"num_key_value_heads\": 3}", "num_key_value_heads: 3 does not divide",
            __LINE__);
    cfg_bad(dir, "{" BASE ", \"head_dim\": 7}", "head_dim: 7 is odd", __LINE__);
    cfg_bad(dir, "{" BASE ", \"tie_word_embeddings\": 1}", "tie_word_embeddings: expected true or false",
            __LINE__);
    cfg_bad(dir, "{" BASE ",\n \"rope_theta\": }", "config.json:2: invalid JSON", __LINE__);
    CHECK(hf_read_config(path_in(dir, "nodir"), &mc, err, sizeof err) == -1 &&
          err_has("nodir/config.json: cannot open", NULL));
}

/* ---------------------------------------------------------------- hf weights */

/* A model's table and its values. */
struct model_dir {
    const struct param_table *t;
    const float              *buf;
};

/* Write the tensors i with i % nparts == part (F32, from m->buf) into path, leaving out `skip`,
 * giving `reshape` two columns too few, and adding a 4-float tensor named `extra`. */
static void write_model_st(const char *path, const struct model_dir *m, int part, int nparts,
                           const char *skip, const char *reshape, const char *extra) {
    struct stb b;
    stb_init(&b);
    for (int i = 0; i < m->t->n; i++) {
        const struct param *p = &m->t->p[i];
        if (i % nparts != part || (skip && !strcmp(p->name, skip))) continue;
        int64_t shape[2] = {p->shape[0], p->shape[1]};
        const float *src = m->buf + p->offset;
        if (reshape && !strcmp(p->name, reshape)) {
            shape[1] = p->shape[1] - 2; /* fewer columns, and bytes to match */
            stb_add(&b, p->name, "F32", 2, shape, src, (size_t)(shape[0] * shape[1]) * 4);
            continue;
        }
        stb_add(&b, p->name, "F32", p->ndim, shape, src, (size_t)p->numel * 4);
    }
    if (extra) {
        const float ones[4] = {1, 1, 1, 1};
        stb_add(&b, extra, "F32", 1, (int64_t[]){4}, ones, sizeof ones);
    }
    stb_write(&b, path);
}

static void write_index(const char *dir, const struct param_table *t, int nparts, const char *fmt) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)(t->total * 4));
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    char name[64];
    for (int i = 0; i < t->n; i++) {
        snprintf(name, sizeof name, fmt, i % nparts + 1, nparts);
        cJSON_AddStringToObject(map, t->p[i].name, name);
    }
    char *s = cJSON_Print(root);
    tu_write_file(path_in(dir, "model.safetensors.index.json"), s, strlen(s));
    free(s);
    cJSON_Delete(root);
}

static void test_hf_weights(void) {
    const char *cfg = "{\"model_type\": \"llama\", \"vocab_size\": 16, \"hidden_size\": 8, "
                      "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, "
                      "\"num_key_value_heads\": 1, \"head_dim\": 4, \"intermediate_size\": 12}";
    const char *single = tu_tmpdir("hf_single");
    tu_write_file(path_in(single, "config.json"), cfg, strlen(cfg));
    struct model_config mc;
    struct param_table t;
    CHECK(hf_read_config(single, &mc, err, sizeof err) == 0);
    CHECK(params_init(&t, &mc, err, sizeof err) == 0);
    CHECK(params_find(&t, "lm_head.weight") != NULL);
    float *ref = malloc((size_t)t.total * 4), *got = malloc((size_t)t.total * 4);
    params_init_random(&t, 1234, ref);
    for (int64_t i = 0; i < t.total; i++) ref[i] += 0.001f * (float)i; /* norms differ too */
    struct model_dir m = {&t, ref};

    /* one file, with an extra tensor that is ignored */
    write_model_st(path_in(single, "model.safetensors"), &m, 0, 1, NULL, NULL,
                   "model.layers.0.self_attn.rotary_emb.inv_freq");
    CHECK(hf_check_weights(single, &t, err, sizeof err) == 0);
    memset(got, 0, (size_t)t.total * 4);
    CHECK(hf_load_weights(single, &t, got, err, sizeof err) == 0);
    CHECK(!memcmp(got, ref, (size_t)t.total * 4));

    /* sharded over two files through the index: the same buffer */
    const char *sharded = tu_tmpdir("hf_sharded");
    write_model_st(path_in(sharded, "model-00001-of-00002.safetensors"), &m, 0, 2, NULL, NULL, NULL);
    write_model_st(path_in(sharded, "model-00002-of-00002.safetensors"), &m, 1, 2, NULL, NULL, NULL);
    write_index(sharded, &t, 2, "model-%05d-of-%05d.safetensors");
    CHECK(hf_check_weights(sharded, &t, err, sizeof err) == 0);
    memset(got, 0, (size_t)t.total * 4);
    CHECK(hf_load_weights(sharded, &t, got, err, sizeof err) == 0);
    CHECK(!memcmp(got, ref, (size_t)t.total * 4));

    /* ranges of the flat vector (what one rank of a sharded store reads), across tensor and
     * file boundaries: the same floats; and the random init of a range is that of the whole */
    struct hf_reader *rd;
    CHECK(hf_reader_open(&rd, sharded, &t, err, sizeof err) == 0);
    float *all = malloc((size_t)t.total * 4);
    params_init_random(&t, 77, all);
    int64_t cuts[][2] = {{0, 1}, {3, 97}, {t.total / 3, t.total / 2}, {t.total - 5, 5}, {0, t.total}};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        int64_t lo = cuts[c][0], n = cuts[c][1];
        memset(got, 0, (size_t)t.total * 4);
        CHECK(hf_reader_read(rd, lo, n, got, err, sizeof err) == 0 && !memcmp(got, ref + lo, (size_t)n * 4));
        params_init_random_range(&t, 77, lo, n, got);
        CHECK(!memcmp(got, all + lo, (size_t)n * 4));
    }
    hf_reader_close(rd);
    free(all);

    /* the index names a shard that does not exist */
    const char *noshard = tu_tmpdir("hf_noshard");
    write_model_st(path_in(noshard, "model-00001-of-00003.safetensors"), &m, 0, 3, NULL, NULL, NULL);
    write_model_st(path_in(noshard, "model-00002-of-00003.safetensors"), &m, 1, 3, NULL, NULL, NULL);
    write_index(noshard, &t, 3, "model-%05d-of-%05d.safetensors");
    CHECK(hf_load_weights(noshard, &t, got, err, sizeof err) == -1 &&
          err_has("model-00003-of-00003.safetensors: cannot open", NULL));

    /* the index lacks a tensor; a shard lacks the tensor the index puts there */
    const char *noent = tu_tmpdir("hf_noentry");
    write_model_st(path_in(noent, "a.safetensors"), &m, 0, 1, "model.norm.weight", NULL, NULL);
    write_index(noent, &t, 1, "a.safetensors");
    CHECK(hf_check_weights(noent, &t, err, sizeof err) == -1 &&
          err_has("a.safetensors: missing tensor model.norm.weight", NULL));
    cJSON *idx = cJSON_CreateObject();
    cJSON *wm = cJSON_AddObjectToObject(idx, "weight_map");
    for (int i = 0; i < t.n; i++)
        if (strcmp(t.p[i].name, "model.layers.1.mlp.up_proj.weight"))
            cJSON_AddStringToObject(wm, t.p[i].name, "a.safetensors");
    char *s = cJSON_Print(idx);
    tu_write_file(path_in(noent, "model.safetensors.index.json"), s, strlen(s));
    free(s);
    cJSON_Delete(idx);
    CHECK(hf_check_weights(noent, &t, err, sizeof err) == -1 &&
          err_has("model.safetensors.index.json: weight_map: missing tensor "
                  "model.layers.1.mlp.up_proj.weight", NULL));

    /* wrong shape, missing tensor, no weights at all, non-float dtype */
    const char *bad = tu_tmpdir("hf_bad");
    write_model_st(path_in(bad, "model.safetensors"), &m, 0, 1, NULL,
                   "model.layers.0.self_attn.q_proj.weight", NULL);
    CHECK(hf_check_weights(bad, &t, err, sizeof err) == -1 &&
          err_has("model.safetensors: model.layers.0.self_attn.q_proj.weight: shape [8, 6], "
                  "expected [8, 8]", NULL));
    CHECK(hf_load_weights(bad, &t, got, err, sizeof err) == -1 &&
          err_has("q_proj.weight: shape [8, 6], expected [8, 8]", NULL));
    write_model_st(path_in(bad, "model.safetensors"), &m, 0, 1, "model.norm.weight", NULL, NULL);
    CHECK(hf_check_weights(bad, &t, err, sizeof err) == -1 &&
          err_has("model.safetensors: missing tensor model.norm.weight", NULL));
    const char *empty = tu_tmpdir("hf_empty");
    CHECK(hf_check_weights(empty, &t, err, sizeof err) == -1 &&
          err_has(empty, ": no model.safetensors or model.safetensors.index.json"));
    {
        struct stb b;
        stb_init(&b);
        for (int i = 0; i < t.n; i++) {
            const struct param *p = &t.p[i];
            int is_norm = !strcmp(p->name, "model.norm.weight");
            stb_add(&b, p->name, is_norm ? "I32" : "F32", p->ndim, p->shape, ref + p->offset,
                    (size_t)p->numel * 4);
        }
        stb_write(&b, path_in(bad, "model.safetensors"));
        CHECK(hf_check_weights(bad, &t, err, sizeof err) == -1 &&
              err_has("model.norm.weight: dtype I32 is not a float type", NULL));
    }
    /* a 1-D expected shape against a 2-D tensor */
    {
        struct stb b;
        stb_init(&b);
        for (int i = 0; i < t.n; i++) {
            const struct param *p = &t.p[i];
            int64_t sh[2] = {1, p->shape[0]};
            int is_norm = !strcmp(p->name, "model.norm.weight");
            stb_add(&b, p->name, "F32", is_norm ? 2 : p->ndim, is_norm ? sh : p->shape,
                    ref + p->offset, (size_t)p->numel * 4);
        }
        stb_write(&b, path_in(bad, "model.safetensors"));
        CHECK(hf_check_weights(bad, &t, err, sizeof err) == -1 &&
              err_has("model.norm.weight: shape [1, 8], expected [8]", NULL));
    }

    /* tied: the table has no lm_head; files with or without one load the same */
    struct model_config tied = mc;
    tied.tie_embeddings = 1;
    struct param_table tt;
    CHECK(params_init(&tt, &tied, err, sizeof err) == 0);
    CHECK(params_find(&tt, "lm_head.weight") == NULL && tt.total < t.total);
    const char *tdir = tu_tmpdir("hf_tied");
    float *tref = malloc((size_t)tt.total * 4), *tgot = malloc((size_t)tt.total * 4);
    params_init_random(&tt, 99, tref);
    struct model_dir tm = {&tt, tref};
    write_model_st(path_in(tdir, "model.safetensors"), &tm, 0, 1, NULL, NULL, NULL);
    memset(tgot, 0, (size_t)tt.total * 4);
    CHECK(hf_load_weights(tdir, &tt, tgot, err, sizeof err) == 0);
    CHECK(!memcmp(tgot, tref, (size_t)tt.total * 4));
    write_model_st(path_in(tdir, "model.safetensors"), &tm, 0, 1, NULL, NULL, "lm_head.weight");
    memset(tgot, 0, (size_t)tt.total * 4);
    CHECK(hf_load_weights(tdir, &tt, tgot, err, sizeof err) == 0);
    CHECK(!memcmp(tgot, tref, (size_t)tt.total * 4));

    /* BF16 weights convert on load */
    {
        const char *bdir = tu_tmpdir("hf_bf16");
        struct stb b;
        stb_init(&b);
        float *want = malloc((size_t)tt.total * 4);
        for (int i = 0; i < tt.n; i++) {
            const struct param *p = &tt.p[i];
            uint16_t *h = malloc((size_t)p->numel * 2);
            for (int64_t j = 0; j < p->numel; j++) {
                uint32_t u;
                memcpy(&u, &tref[p->offset + j], 4);
                h[j] = (uint16_t)(u >> 16);
                want[p->offset + j] = from_bits((uint32_t)h[j] << 16);
            }
            stb_add(&b, p->name, "BF16", p->ndim, p->shape, h, (size_t)p->numel * 2);
            free(h);
        }
        stb_write(&b, path_in(bdir, "model.safetensors"));
        CHECK(hf_load_weights(bdir, &tt, tgot, err, sizeof err) == 0);
        CHECK(!memcmp(tgot, want, (size_t)tt.total * 4));
        free(want);
    }

    free(tref);
    free(tgot);
    free(ref);
    free(got);
    params_free(&tt);
    params_free(&t);
}

int main(void) {
    const char *dir = tu_tmpdir("hfio");
    test_npy_good(dir);
    test_npy_bad(dir);
    test_st_good(dir);
    test_st_bad(dir);
    test_hf_config(dir);
    test_hf_weights();
    return tu_done("test_hfio");
}
