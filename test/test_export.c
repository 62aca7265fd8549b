/* test_export: the safetensors writer (safetensors_write.c) and the Hugging Face export
 * (hf_export.c): lossless fp32 round trips through hf.c's readers, bf16 rounding, sharding,
 * replacing a previous export and refusing anything else, and, when torch and transformers
 * are importable, scripts/check_export.py loading exports of the reference fixtures. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "hf.h"
#include "hf_export.h"
#include "params.h"
#include "safetensors.h"
#include "testutil.h"

static char err[1024];

static int err_has(const char *a, const char *b) {
    int ok = strstr(err, a) && (!b || strstr(err, b));
    if (!ok) fprintf(stderr, "  error was: %s\n  wanted: \"%s\" and \"%s\"\n", err, a, b ? b : "");
    return ok;
}

/* dir/name into out (PATH_LEN bytes). */
#define PATH_LEN 4352
static char *join_to(char *out, const char *dir, const char *name) {
    int k = snprintf(out, PATH_LEN, "%s/%s", dir, name);
    if (k < 0 || k >= PATH_LEN) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(1);
    }
    return out;
}

/* dir/name in one of 8 rotating buffers: for paths used at once, not kept. */
static const char *path_in(const char *dir, const char *name) {
    static char slots[8][PATH_LEN];
    static int next;
    return join_to(slots[next++ % 8], dir, name);
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static long long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) ? -1 : (long long)sb.st_size;
}

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

/* Entries of a directory (without . and ..), sorted, joined by spaces. */
static const char *listing(const char *dir) {
    static char out[4096];
    char names[64][256];
    int n = 0;
    out[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return "(no such directory)";
    for (struct dirent *e; (e = readdir(d)) && n < 64;)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_name);
    for (int i = 0; i < n; i++) {
        strncat(out, i ? " " : "", sizeof out - strlen(out) - 1);
        strncat(out, names[i], sizeof out - strlen(out) - 1);
    }
    return out;
}

static int check_listing(const char *dir, const char *want, int line) {
    const char *got = listing(dir);
    int ok = !strcmp(got, want);
    if (!ok) fprintf(stderr, "  %s holds \"%s\", expected \"%s\"\n", dir, got, want);
    return tu_check(ok, "directory listing", __FILE__, line);
}
#define CHECK_LISTING(dir, want) check_listing((dir), (want), __LINE__)

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

static float f32_of(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* ---------------------------------------------------------------- models */

static struct model_config tiny_untied(void) {
    struct model_config mc = {.vocab_size = 50, .dim = 16, .n_layers = 2, .n_heads = 4,
                              .n_kv_heads = 4, .head_dim = 4, .ffn_dim = 24, .norm_eps = 1e-5,
                              .rope_theta = 10000.0, .tie_embeddings = 0};
    rope_defaults(&mc.rope, ROPE_DEFAULT); /* what hf_read_config sets for default RoPE */
    return mc;
}

/* Tied, GQA, head_dim != dim / heads, llama3 RoPE, values that need 17 digits. */
static struct model_config tied_gqa_llama3(void) {
    struct model_config mc = {.vocab_size = 40, .dim = 24, .n_layers = 2, .n_heads = 6,
                              .n_kv_heads = 2, .head_dim = 8, .ffn_dim = 40, .norm_eps = 1e-6,
                              .rope_theta = 500000.0, .tie_embeddings = 1};
    rope_defaults(&mc.rope, ROPE_LLAMA3);
    mc.rope.factor = 8.0;
    mc.rope.low_freq_factor = 1.0;
    mc.rope.high_freq_factor = 4.0;
    mc.rope.original_max_pos = 8192;
    return mc;
}

static struct model_config odd_linear(void) {
    struct model_config mc = {.vocab_size = 33, .dim = 12, .n_layers = 1, .n_heads = 3,
                              .n_kv_heads = 1, .head_dim = 6, .ffn_dim = 20,
                              .norm_eps = 3.3e-7 + 1e-22, .rope_theta = 12345.678901234567,
                              .tie_embeddings = 0};
    rope_defaults(&mc.rope, ROPE_LINEAR);
    mc.rope.factor = 2.5;
    return mc;
}

/* YaRN with every optional key given (attention_factor, mscales, betas, no truncation). */
static struct model_config yarn_all_keys(void) {
    struct model_config mc = tiny_untied();
    mc.rope_theta = 150000.0;
    rope_defaults(&mc.rope, ROPE_YARN);
    mc.rope.factor = 32.0;
    mc.rope.original_max_pos = 4096;
    mc.rope.beta_fast = 16.5;
    mc.rope.beta_slow = 2.0;
    mc.rope.mscale = 0.707;
    mc.rope.mscale_all_dim = 1.0;
    mc.rope.attention_factor = 1.25;
    mc.rope.truncate = 0;
    return mc;
}

/* Dynamic NTK: the export writes its original length as max_position_embeddings. */
static struct model_config dynamic_ntk(void) {
    struct model_config mc = tiny_untied();
    rope_defaults(&mc.rope, ROPE_DYNAMIC);
    mc.rope.factor = 2.0;
    mc.rope.original_max_pos = 2048;
    return mc;
}

static int same_config(const struct model_config *a, const struct model_config *b) {
    return a->vocab_size == b->vocab_size && a->dim == b->dim && a->n_layers == b->n_layers &&
           a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->ffn_dim == b->ffn_dim && a->norm_eps == b->norm_eps &&
           a->rope_theta == b->rope_theta && a->tie_embeddings == b->tie_embeddings &&
           a->rope.type == b->rope.type && a->rope.factor == b->rope.factor &&
           a->rope.low_freq_factor == b->rope.low_freq_factor &&
           a->rope.high_freq_factor == b->rope.high_freq_factor &&
           a->rope.original_max_pos == b->rope.original_max_pos && a->rope.beta_fast == b->rope.beta_fast &&
           a->rope.beta_slow == b->rope.beta_slow && a->rope.mscale == b->rope.mscale &&
           a->rope.mscale_all_dim == b->rope.mscale_all_dim && a->rope.attention_factor == b->rope.attention_factor &&
           a->rope.truncate == b->rope.truncate;
}

/* A model's table and seeded random parameters. */
struct model {
    struct model_config mc;
    struct param_table  t;
    float              *w;
};

static void model_make(struct model *m, struct model_config mc, uint64_t seed) {
    m->mc = mc;
    if (params_init(&m->t, &mc, err, sizeof err)) {
        fprintf(stderr, "params_init: %s\n", err);
        exit(1);
    }
    m->w = malloc((size_t)m->t.total * sizeof *m->w);
    params_init_random(&m->t, seed, m->w);
    /* Norm weights are 1 after init; make them distinct so a mix-up shows. */
    for (int i = 0; i < m->t.n; i++)
        if (m->t.p[i].ndim == 1)
            for (int64_t j = 0; j < m->t.p[i].numel; j++) m->w[m->t.p[i].offset + j] += 0.001f * (float)(j + i);
}

static void model_free(struct model *m) {
    params_free(&m->t);
    free(m->w);
}

/* Read dir back with hf.c: the config must equal want's and the weights (into a fresh
 * buffer) are returned; NULL when reading fails. */
static float *read_back(const char *dir, const struct model *want, int line) {
    struct model_config mc;
    if (!tu_check(hf_read_config(dir, &mc, err, sizeof err) == 0, "hf_read_config", __FILE__, line)) {
        fprintf(stderr, "  %s\n", err);
        return NULL;
    }
    tu_check(same_config(&mc, &want->mc), "config read back equals the exported one", __FILE__, line);
    struct param_table t;
    if (params_init(&t, &mc, err, sizeof err)) return NULL;
    float *w = malloc((size_t)t.total * sizeof *w);
    for (int64_t i = 0; i < t.total; i++) w[i] = NAN;
    int ok = tu_check(t.total == want->t.total && hf_load_weights(dir, &t, w, err, sizeof err) == 0,
                      "hf_load_weights", __FILE__, line);
    if (!ok) fprintf(stderr, "  %s\n", err);
    params_free(&t);
    if (!ok) {
        free(w);
        return NULL;
    }
    return w;
}

/* ---------------------------------------------------------------- st_write */

static void test_st_write(const char *dir) {
    const float f[6] = {1, -2, 3.5f, 0, 1e-30f, -7};
    const int32_t i32[3] = {-1, 2, 1 << 30};
    const float scalar = 42;
    struct st_wtensor ts[4] = {
        {.name = "b.f32", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .src = f, .src_dtype = ST_F32},
        {.name = "a \"quoted\"\\name", .dtype = ST_I32, .ndim = 1, .shape = {3}, .src = i32, .src_dtype = ST_I32},
        {.name = "c.scalar", .dtype = ST_BF16, .ndim = 0, .src = &scalar, .src_dtype = ST_F32},
        {.name = "d.empty", .dtype = ST_F32, .ndim = 2, .shape = {0, 5}, .src = NULL, .src_dtype = ST_F32},
    };
    const char *meta[] = {"format", "pt", "note", "x\ny", NULL};
    char p[PATH_LEN];
    join_to(p, dir, "w.safetensors");
    CHECK(st_write(p, 4, ts, meta, err, sizeof err) == 0);
    CHECK((long long)st_write_size(4, ts, meta) == file_size(p));

    /* The raw layout: header length a multiple of 8, keys in the order given, offsets contiguous. */
    FILE *fp = fopen(p, "rb");
    unsigned char len8[8];
    CHECK(fp && fread(len8, 1, 8, fp) == 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    CHECK(hlen % 8 == 0 && hlen < 4096);
    char hdr[4096] = {0};
    CHECK(fread(hdr, 1, hlen, fp) == hlen);
    fclose(fp);
    CHECK(hdr[hlen - 1] == ' ' || hdr[hlen - 1] == '}');
    cJSON *h = cJSON_Parse(hdr);
    CHECK(h != NULL);
    if (h) {
        const char *order[] = {"__metadata__", ts[0].name, ts[1].name, ts[2].name, ts[3].name};
        int k = 0, ok = 1;
        for (cJSON *e = h->child; e; e = e->next, k++) ok = ok && k < 5 && !strcmp(e->string, order[k]);
        CHECK(ok && k == 5);
        cJSON *m = cJSON_GetObjectItem(h, "__metadata__");
        CHECK(m && !strcmp(cJSON_GetObjectItem(m, "note")->valuestring, "x\ny"));
        uint64_t want_off[4][2] = {{0, 24}, {24, 36}, {36, 38}, {38, 38}};
        for (int i = 0; i < 4; i++) {
            cJSON *o = cJSON_GetObjectItem(cJSON_GetObjectItem(h, ts[i].name), "data_offsets");
            CHECK(o && cJSON_GetArrayItem(o, 0)->valuedouble == (double)want_off[i][0] &&
                  cJSON_GetArrayItem(o, 1)->valuedouble == (double)want_off[i][1]);
        }
        cJSON_Delete(h);
    }
    CHECK(file_size(p) == (long long)(8 + hlen + 38));

    /* The reader takes it back. */
    struct st_file sf;
    CHECK(st_open(&sf, p, err, sizeof err) == 0);
    const struct st_tensor *t = st_find(&sf, "b.f32");
    float out[6];
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
          st_to_f32(t, out, err, sizeof err) == 0 && !memcmp(out, f, sizeof f));
    t = st_find(&sf, ts[1].name);
    CHECK(t && t->dtype == ST_I32 && t->nbytes == 12 && !memcmp(t->data, i32, 12));
    t = st_find(&sf, "c.scalar");
    CHECK(t && t->dtype == ST_BF16 && t->ndim == 0 && st_to_f32(t, out, err, sizeof err) == 0 &&
          out[0] == 42.0f);
    t = st_find(&sf, "d.empty");
    CHECK(t && t->numel == 0 && t->ndim == 2 && t->shape[1] == 5);
    st_close(&sf);

    /* Refusals, each leaving no file behind. */
    char q[PATH_LEN];
    join_to(q, dir, "bad.safetensors");
    struct st_wtensor dup[2] = {ts[0], ts[0]};
    CHECK(st_write(q, 2, dup, NULL, err, sizeof err) == -1 && err_has("b.f32", "twice") && !exists(q));
    struct st_wtensor conv = ts[1];
    conv.dtype = ST_BF16;
    CHECK(st_write(q, 1, &conv, NULL, err, sizeof err) == -1 && err_has("cannot store I32 data as BF16", NULL) &&
          !exists(q));
    struct st_wtensor md = ts[0];
    md.name = "__metadata__";
    CHECK(st_write(q, 1, &md, NULL, err, sizeof err) == -1 && err_has("not allowed", NULL));
    struct st_wtensor neg = ts[0];
    neg.shape[1] = -3;
    CHECK(st_write(q, 1, &neg, NULL, err, sizeof err) == -1 && err_has("negative", NULL));
    CHECK(st_write_size(1, &neg, NULL) == 0);
    CHECK(st_write(path_in(dir, "no/such/dir.safetensors"), 1, ts, NULL, err, sizeof err) == -1 &&
          err_has("cannot create", NULL));
}

/* ---------------------------------------------------------------- bf16 */

/* Nearest bf16 to x, ties to even, by comparing the two neighbours in double. */
static float bf16_reference(float x) {
    uint32_t u = bits_of(x);
    float lo = f32_of(u & 0xffff0000u), hi = f32_of((u & 0xffff0000u) + 0x10000u);
    double dl = fabs((double)x - lo), dh = fabs((double)x - hi);
    if (dl != dh) return dl < dh ? lo : hi;
    return (bits_of(lo) >> 16 & 1) ? hi : lo;
}

static void test_bf16_rounding(void) {
    static const struct { uint32_t in; uint16_t out; } cases[] = {
        {0x3f800000u, 0x3f80}, /* 1.0: exact */
        {0x3f808000u, 0x3f80}, /* 1 + 2^-8: a tie, to even (down) */
        {0x3f818000u, 0x3f82}, /* a tie, to even (up) */
        {0x3f808001u, 0x3f81}, /* just above half */
        {0x3f807fffu, 0x3f80}, /* just below half */
        {0xbf818000u, 0xbf82}, /* negative tie */
        {0x00008000u, 0x0000}, /* subnormal tie to zero */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds to inf */
        {0xff800000u, 0xff80}, /* -inf */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = st_f32_to_bf16(f32_of(cases[i].in));
        if (!CHECK(got == cases[i].out))
            fprintf(stderr, "  0x%08x -> 0x%04x, expected 0x%04x\n", cases[i].in, got, cases[i].out);
    }
    uint16_t nan = st_f32_to_bf16(f32_of(0x7f800001u)); /* a NaN whose payload truncation would lose */
    CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0);
}

static void test_bf16_export(const char *base) {
    struct model m;
    model_make(&m, tiny_untied(), 11);
    /* Hand-picked values at the start of the buffer; every 4th value of the rest is made
     * exactly representable in bf16. */
    static const uint32_t picked[] = {0x3f800000u, 0x3f808000u, 0x3f818000u, 0x3f808001u,
                                      0x3f807fffu, 0xbf818000u, 0x00008000u, 0x3c23d70au};
    static const uint32_t want[] = {0x3f800000u, 0x3f800000u, 0x3f820000u, 0x3f810000u,
                                    0x3f800000u, 0xbf820000u, 0x00000000u, 0x3c240000u};
    for (int i = 0; i < 8; i++) m.w[i] = f32_of(picked[i]);
    for (int64_t i = 8; i < m.t.total; i += 4) m.w[i] = f32_of(bits_of(m.w[i]) & 0xffff0000u);
    char dir[PATH_LEN];
    join_to(dir, base, "bf16");
    CHECK(hf_export(dir, &m.mc, &m.t, m.w, DTYPE_BF16, 0, 64, NULL, NULL, 0, err, sizeof err) == 0);
    float *r = read_back(dir, &m, __LINE__);
    if (r) {
        int ok = 1;
        for (int i = 0; i < 8; i++) {
            if (bits_of(r[i]) != want[i]) {
                fprintf(stderr, "  value %d: 0x%08x -> 0x%08x, expected 0x%08x\n", i, picked[i],
                        bits_of(r[i]), want[i]);
                ok = 0;
            }
        }
        CHECK(ok);
        int64_t exact_bad = -1, round_bad = -1;
        for (int64_t i = 8; i < m.t.total; i++) {
            if (i % 4 == 0 && r[i] != m.w[i]) exact_bad = i;
            if (bits_of(r[i]) != bits_of(bf16_reference(m.w[i]))) round_bad = i;
        }
        CHECK(exact_bad < 0); /* representable values come back exactly */
        CHECK(round_bad < 0); /* the others are the nearest bf16, ties to even */
        free(r);
    }
    struct st_file sf;
    CHECK(st_open(&sf, path_in(dir, "model.safetensors"), err, sizeof err) == 0);
    int all_bf16 = sf.n == m.t.n;
    for (int i = 0; i < sf.n; i++) all_bf16 = all_bf16 && sf.tensors[i].dtype == ST_BF16;
    CHECK(all_bf16);
    st_close(&sf);
    cJSON *cfg = read_json(path_in(dir, "config.json"));
    CHECK(cfg && !strcmp(cJSON_GetObjectItem(cfg, "torch_dtype")->valuestring, "bfloat16"));
    cJSON_Delete(cfg);
    model_free(&m);
}

/* ---------------------------------------------------------------- fp32 round trips */

/* Header keys in table order, data_offsets contiguous, {"format": "pt"} metadata. */
static void check_layout(const char *file, const struct param_table *t) {
    FILE *fp = fopen(file, "rb");
    unsigned char len8[8];
    if (!CHECK(fp && fread(len8, 1, 8, fp) == 8)) {
        if (fp) fclose(fp);
        return;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    char *hdr = calloc(1, hlen + 1);
    CHECK(hlen % 8 == 0 && fread(hdr, 1, hlen, fp) == hlen);
    fclose(fp);
    cJSON *h = cJSON_Parse(hdr);
    free(hdr);
    if (!CHECK(h != NULL)) return;
    cJSON *e = h->child;
    int ok = e && !strcmp(e->string, "__metadata__") &&
             !strcmp(cJSON_GetObjectItem(e, "format")->valuestring, "pt");
    double off = 0;
    for (int i = 0; ok && i < t->n; i++) {
        e = e->next;
        ok = e && !strcmp(e->string, t->p[i].name);
        cJSON *o = ok ? cJSON_GetObjectItem(e, "data_offsets") : NULL;
        ok = ok && o && cJSON_GetArrayItem(o, 0)->valuedouble == off;
        if (ok) off = cJSON_GetArrayItem(o, 1)->valuedouble;
    }
    CHECK(ok && e && !e->next);
    cJSON_Delete(h);
}

static void test_roundtrip(const char *base, struct model_config mc, const char *name) {
    struct model m;
    model_make(&m, mc, 1234);
    char dir[PATH_LEN];
    join_to(dir, base, name);
    CHECK(hf_export(dir, &m.mc, &m.t, m.w, DTYPE_FP32, 1e12, 4096, NULL, NULL, 0, err, sizeof err) == 0);
    float *r = read_back(dir, &m, __LINE__);
    CHECK(r && !memcmp(r, m.w, (size_t)m.t.total * sizeof *r));
    free(r);
    CHECK_LISTING(dir, "config.json model.safetensors");
    check_layout(path_in(dir, "model.safetensors"), &m.t);

    struct st_file sf;
    CHECK(st_open(&sf, path_in(dir, "model.safetensors"), err, sizeof err) == 0);
    CHECK(sf.n == m.t.n && (st_find(&sf, "lm_head.weight") != NULL) == !mc.tie_embeddings);
    st_close(&sf);

    cJSON *c = read_json(path_in(dir, "config.json"));
    CHECK(c != NULL);
    if (c) {
        cJSON *arch = cJSON_GetObjectItem(c, "architectures");
        CHECK(cJSON_GetArraySize(arch) == 1 &&
              !strcmp(cJSON_GetArrayItem(arch, 0)->valuestring, "LlamaForCausalLM"));
        CHECK(!strcmp(cJSON_GetObjectItem(c, "model_type")->valuestring, "llama"));
        CHECK(!strcmp(cJSON_GetObjectItem(c, "hidden_act")->valuestring, "silu"));
        CHECK(!strcmp(cJSON_GetObjectItem(c, "torch_dtype")->valuestring, "float32"));
        CHECK(cJSON_GetObjectItem(c, "max_position_embeddings")->valuedouble ==
              (mc.rope.type == ROPE_DYNAMIC ? (double)mc.rope.original_max_pos : 4096));
        /* no source model: no token ids */
        CHECK(!cJSON_GetObjectItem(c, "bos_token_id") && !cJSON_GetObjectItem(c, "eos_token_id"));
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(c, "attention_bias")) &&
              cJSON_IsFalse(cJSON_GetObjectItem(c, "mlp_bias")));
        CHECK(cJSON_IsBool(cJSON_GetObjectItem(c, "tie_word_embeddings")));
        cJSON *rs = cJSON_GetObjectItem(c, "rope_scaling");
        CHECK(rs && (mc.rope.type == ROPE_DEFAULT ? cJSON_IsNull(rs) : cJSON_IsObject(rs)));
        CHECK(cJSON_GetObjectItem(c, "rope_parameters") == NULL);
        cJSON_Delete(c);
    }
    /* Floats are written as floats: "8.0", not "8" (Python reads them as float). */
    FILE *fp = fopen(path_in(dir, "config.json"), "r");
    char text[4096] = {0};
    if (fp) {
        size_t n = fread(text, 1, sizeof text - 1, fp);
        text[n] = 0;
        fclose(fp);
    }
    if (mc.rope.type == ROPE_LLAMA3) CHECK(strstr(text, "\"factor\":\t8.0") != NULL);
    model_free(&m);
}

/* ---------------------------------------------------------------- the source model's files */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    if (buf) buf[fread(buf, 1, (1 << 16) - 1, f)] = 0;
    fclose(f);
    return buf;
}

/* An export from an HF model copies its generation_config.json and tokenizer files and its
 * token ids into config.json, and says what it lacked; without a source it says what was
 * not written; a source without config.json fails before anything is written. */
static void test_source_files(const char *base) {
    char src[PATH_LEN], dir[PATH_LEN], note[1024];
    join_to(src, base, "source");
    CHECK(mkdir(src, 0755) == 0);
    static const struct { const char *name, *text; } files[] = {
        {"config.json", "{\"bos_token_id\": 128000, \"eos_token_id\": [128001, 128009], \"pad_token_id\": null}"},
        {"generation_config.json", "{\"bos_token_id\": 128000, \"do_sample\": true, \"temperature\": 0.6}\n"},
        {"tokenizer.json", "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}\n"},
        {"tokenizer_config.json", "{\"model_max_length\": 131072}\n"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        tu_write_file(path_in(src, files[i].name), files[i].text, strlen(files[i].text));
    struct model m;
    model_make(&m, tiny_untied(), 77);
    join_to(dir, base, "from_source");
    CHECK(hf_export(dir, &m.mc, &m.t, m.w, DTYPE_BF16, 0, 64, src, note, sizeof note, err, sizeof err) == 0);
    CHECK_LISTING(dir, "config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json");
    for (size_t i = 1; i < sizeof files / sizeof files[0]; i++) {
        char *got = slurp(path_in(dir, files[i].name));
        CHECK(got && !strcmp(got, files[i].text));
        free(got);
    }
    cJSON *c = read_json(path_in(dir, "config.json"));
    if (CHECK(c != NULL)) {
        const cJSON *eos = cJSON_GetObjectItem(c, "eos_token_id");
        CHECK(cJSON_GetObjectItem(c, "bos_token_id")->valuedouble == 128000);
        CHECK(cJSON_GetArraySize(eos) == 2 && cJSON_GetArrayItem(eos, 1)->valuedouble == 128009);
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(c, "pad_token_id")));
        cJSON_Delete(c);
    }
    printf("  export note: %s\n", note);
    CHECK(strstr(note, "bos_token_id, eos_token_id, pad_token_id") &&
          strstr(note, "copied generation_config.json, tokenizer.json, tokenizer_config.json") &&
          strstr(note, "it has no special_tokens_map.json, tokenizer.model"));
    /* a random-init model: the output says what was not written */
    join_to(dir, base, "no_source");
    CHECK(hf_export(dir, &m.mc, &m.t, m.w, DTYPE_BF16, 0, 64, NULL, note, sizeof note, err, sizeof err) == 0);
    CHECK(strstr(note, "not written: bos/eos/pad token ids, generation_config.json, tokenizer files") != NULL);
    CHECK_LISTING(dir, "config.json model.safetensors");
    /* a source without config.json */
    remove(path_in(src, "config.json"));
    join_to(dir, base, "bad_source");
    CHECK(hf_export(dir, &m.mc, &m.t, m.w, DTYPE_BF16, 0, 64, src, note, sizeof note, err, sizeof err) == -1 &&
          err_has("source/config.json", NULL) && !exists(dir));
    model_free(&m);
}

/* ---------------------------------------------------------------- sharding */

static void test_sharding(const char *base) {
    struct model_config mc = tiny_untied();
    mc.n_layers = 3;
    struct model m;
    model_make(&m, mc, 77);
    /* The embedding and lm_head (50 x 16 x 4 = 3200 bytes) exceed the limit: each gets a shard
     * of its own; the layer tensors (<= 1536 bytes) pack several to a shard. */
    const double limit = 2500;
    char dir[PATH_LEN];
    join_to(dir, base, "sharded");
    CHECK(hf_export(dir, &m.mc, &m.t, m.w, DTYPE_FP32, limit, 64, NULL, NULL, 0, err, sizeof err) == 0);
    CHECK(!exists(path_in(dir, "model.safetensors")));
    cJSON *idx = read_json(path_in(dir, "model.safetensors.index.json"));
    if (!CHECK(idx != NULL)) goto out;
    cJSON *map = cJSON_GetObjectItem(idx, "weight_map");
    cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(idx, "metadata"), "total_size");
    CHECK(ts && ts->valuedouble == (double)m.t.total * 4);
    CHECK(cJSON_GetArraySize(map) == m.t.n);
    /* Every tensor in the file the index names; every shard within the limit unless it holds
     * one tensor; shard names model-0000i-of-0000N. */
    char files[64][64];
    int nfiles = 0, ok = 1;
    for (int i = 0; i < m.t.n; i++) {
        cJSON *f = cJSON_GetObjectItem(map, m.t.p[i].name);
        if (!f || !cJSON_IsString(f)) {
            ok = 0;
            continue;
        }
        if (!nfiles || strcmp(files[nfiles - 1], f->valuestring))
            snprintf(files[nfiles++], sizeof files[0], "%s", f->valuestring);
        struct st_file sf;
        ok = ok && st_open(&sf, path_in(dir, f->valuestring), err, sizeof err) == 0;
        if (ok) {
            ok = st_find(&sf, m.t.p[i].name) != NULL;
            st_close(&sf);
        }
    }
    CHECK(ok);
    CHECK(nfiles >= 3);
    char want_list[4096] = "config.json";
    for (int s = 0; s < nfiles; s++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, nfiles);
        CHECK(!strcmp(files[s], name));
        struct st_file sf;
        if (st_open(&sf, path_in(dir, files[s]), err, sizeof err) == 0) {
            long long size = file_size(path_in(dir, files[s]));
            if (!CHECK(size <= limit || sf.n == 1)) fprintf(stderr, "  %s: %lld bytes\n", files[s], size);
            st_close(&sf);
        }
        strcat(want_list, " ");
        strcat(want_list, name);
    }
    strcat(want_list, " model.safetensors.index.json");
    CHECK_LISTING(dir, want_list);
    float *r = read_back(dir, &m, __LINE__);
    CHECK(r && !memcmp(r, m.w, (size_t)m.t.total * sizeof *r));
    free(r);
out:
    cJSON_Delete(idx);
    model_free(&m);
}

/* ---------------------------------------------------------------- replacing, refusing */

static void test_replace(const char *base) {
    struct model a, b;
    model_make(&a, tiny_untied(), 1);
    model_make(&b, tied_gqa_llama3(), 2);
    char dir[PATH_LEN];
    join_to(dir, base, "out");

    /* A sharded export, then a single-file export of another model over it: nothing of the
     * first remains, nothing temporary is left beside it. */
    CHECK(hf_export(dir, &a.mc, &a.t, a.w, DTYPE_FP32, 2500, 64, NULL, NULL, 0, err, sizeof err) == 0);
    CHECK(exists(path_in(dir, "model.safetensors.index.json")));
    CHECK(hf_export(dir, &b.mc, &b.t, b.w, DTYPE_FP32, 0, 64, NULL, NULL, 0, err, sizeof err) == 0);
    CHECK_LISTING(dir, "config.json model.safetensors");
    CHECK_LISTING(base, "out");
    float *r = read_back(dir, &b, __LINE__);
    CHECK(r && !memcmp(r, b.w, (size_t)b.t.total * sizeof *r));
    free(r);

    /* A failure before the rename leaves the previous export as it was, and no temporary. */
    char tmp[PATH_LEN + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", dir, (long)getpid());
    tu_write_file(tmp, "x", 1); /* mkdir of the temporary directory fails */
    CHECK(hf_export(dir, &a.mc, &a.t, a.w, DTYPE_FP32, 0, 64, NULL, NULL, 0, err, sizeof err) == -1 &&
          err_has(".tmp-", "cannot create"));
    unlink(tmp);
    CHECK(hf_export(dir, &a.mc, &a.t, a.w, DTYPE_FP32, 0, 0, NULL, NULL, 0, err, sizeof err) == -1 &&
          err_has("max_position_embeddings", NULL));
    CHECK(hf_export(dir, &a.mc, &b.t, b.w, DTYPE_FP32, 0, 64, NULL, NULL, 0, err, sizeof err) == -1 &&
          err_has("does not match", NULL));
    r = read_back(dir, &b, __LINE__);
    CHECK(r && !memcmp(r, b.w, (size_t)b.t.total * sizeof *r));
    free(r);
    CHECK_LISTING(base, "out");

    /* A trailing slash names the same directory. */
    char slash[PATH_LEN];
    join_to(slash, dir, "");
    CHECK(hf_export(slash, &a.mc, &a.t, a.w, DTYPE_FP32, 0, 64, NULL, NULL, 0, err, sizeof err) == 0);
    CHECK_LISTING(base, "out");
    r = read_back(dir, &a, __LINE__);
    CHECK(r && !memcmp(r, a.w, (size_t)a.t.total * sizeof *r));
    free(r);

    /* A foreign non-empty directory and a plain file are refused and left alone. */
    char foreign[PATH_LEN];
    join_to(foreign, base, "foreign");
    CHECK(mkdir(foreign, 0755) == 0);
    tu_write_file(path_in(foreign, "notes.txt"), "mine", 4);
    CHECK(hf_export(foreign, &a.mc, &a.t, a.w, DTYPE_FP32, 0, 64, NULL, NULL, 0, err, sizeof err) == -1 &&
          err_has(foreign, "no config.json") && err_has("refusing to replace", NULL));
    CHECK_LISTING(foreign, "notes.txt");
    char plain[PATH_LEN];
    join_to(plain, base, "plain");
    tu_write_file(plain, "x", 1);
    CHECK(hf_export(plain, &a.mc, &a.t, a.w, DTYPE_FP32, 0, 64, NULL, NULL, 0, err, sizeof err) == -1 &&
          err_has("not a directory", NULL));
    CHECK(file_size(plain) == 1);

    /* An empty directory is taken; missing parents are created. */
    char empty[PATH_LEN];
    join_to(empty, base, "empty");
    CHECK(mkdir(empty, 0755) == 0);
    CHECK(hf_export(empty, &a.mc, &a.t, a.w, DTYPE_FP32, 0, 64, NULL, NULL, 0, err, sizeof err) == 0);
    CHECK_LISTING(empty, "config.json model.safetensors");
    char deep[PATH_LEN];
    join_to(deep, base, "x/y/z");
    CHECK(hf_export(deep, &a.mc, &a.t, a.w, DTYPE_FP32, 0, 64, NULL, NULL, 0, err, sizeof err) == 0);
    CHECK_LISTING(path_in(base, "x/y"), "z");
    CHECK_LISTING(base, "empty foreign out plain x");
    model_free(&a);
    model_free(&b);
}

/* ---------------------------------------------------------------- with transformers */

/* Export a fixture's hf/ directory (read by hf.c) into out, with the fixtures'
 * max_position_embeddings (128; transformers warns when a llama3 model's is not above
 * original_max_position_embeddings, 64 in llama3_v5). */
static int export_fixture(const char *fixture, const char *out, int dtype, double shard_bytes) {
    char hf[512];
    snprintf(hf, sizeof hf, "test/fixtures/%s/hf", fixture);
    struct model m;
    if (!CHECK(hf_read_config(hf, &m.mc, err, sizeof err) == 0)) {
        fprintf(stderr, "  %s\n", err);
        return -1;
    }
    if (params_init(&m.t, &m.mc, err, sizeof err)) return -1;
    m.w = malloc((size_t)m.t.total * sizeof *m.w);
    int ok = CHECK(hf_load_weights(hf, &m.t, m.w, err, sizeof err) == 0) &&
             CHECK(hf_export(out, &m.mc, &m.t, m.w, dtype, shard_bytes, 128, hf, NULL, 0, err, sizeof err) == 0);
    if (!ok) fprintf(stderr, "  %s: %s\n", fixture, err);
    /* And back: the export reads as the fixture did. */
    float *r = ok ? read_back(out, &m, __LINE__) : NULL;
    CHECK(r && !memcmp(r, m.w, (size_t)m.t.total * sizeof *r));
    free(r);
    model_free(&m);
    return ok ? 0 : -1;
}

static void test_transformers(const char *base) {
    static const struct { const char *fixture; int dtype; double shard_bytes; } cases[] = {
        {"mha_untied", DTYPE_FP32, 0},     /* untied, default RoPE */
        {"gqa_tied", DTYPE_FP32, 0},       /* tied, GQA */
        {"rope_theta", DTYPE_FP32, 0},     /* llama3 RoPE, theta 5e5, one kv head */
        {"llama3_v5", DTYPE_FP32, 20000},  /* from a v5 config; sharded */
        {"odd_sizes", DTYPE_BF16, 0},      /* bf16 weights stay exact in bf16; linear RoPE */
        {"yarn", DTYPE_FP32, 0},           /* yarn RoPE: frequencies and attention factor */
    };
    const int n = sizeof cases / sizeof cases[0];
    char cmd[8 * PATH_LEN], out[8][PATH_LEN];
    const char *py = getenv("PYTHON");
    if (!py || !*py) py = "python3";
    int k = snprintf(cmd, sizeof cmd, "%s scripts/check_export.py", py);
    for (int i = 0; i < n; i++) {
        join_to(out[i], base, cases[i].fixture);
        if (export_fixture(cases[i].fixture, out[i], cases[i].dtype, cases[i].shard_bytes)) return;
        k += snprintf(cmd + k, sizeof cmd - (size_t)k, " %s test/fixtures/%s", out[i], cases[i].fixture);
    }
    CHECK(exists(path_in(out[3], "model.safetensors.index.json")));

    char probe[256];
    snprintf(probe, sizeof probe, "%s -c 'import transformers, torch, safetensors, numpy' >/dev/null 2>&1", py);
    if (system(probe) != 0) {
        tu_skip("check_export.py (transformers, torch, safetensors or numpy not installed; pip install torch "
                "transformers safetensors numpy)");
        return;
    }
    fflush(stdout);
    int st = system(cmd);
    if (!CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "  failed: %s\n", cmd);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int main(void) {
    /* Everything under one temporary directory, removed when every check passed. */
    const char *base = tu_tmpdir("export");
    static const char *const parts[] = {"st", "bf16", "rt", "shard", "replace", "hf"};
    char sub[6][PATH_LEN];
    for (int i = 0; i < 6; i++) {
        if (mkdir(join_to(sub[i], base, parts[i]), 0755)) {
            perror(sub[i]);
            return 1;
        }
    }
    test_st_write(sub[0]);
    test_bf16_rounding();
    test_bf16_export(sub[1]);
    test_roundtrip(sub[2], tiny_untied(), "untied");
    test_roundtrip(sub[2], tied_gqa_llama3(), "tied_gqa_llama3");
    test_roundtrip(sub[2], odd_linear(), "odd_linear");
    test_roundtrip(sub[2], yarn_all_keys(), "yarn_all_keys");
    test_roundtrip(sub[2], dynamic_ntk(), "dynamic_ntk");
    test_source_files(sub[2]);
    test_sharding(sub[3]);
    test_replace(sub[4]);
    test_transformers(sub[5]);
    if (tu_failures == 0) nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else fprintf(stderr, "test_export: files kept in %s\n", base);
    return tu_done("test_export");
}
