/* test_rope: RoPE frequencies and attention factors (rope.c) against transformers' own values
 * in float64 (test/fixtures/rope/cases.json, scripts/make_rope_reference.py) through the three
 * ways in: an HF config.json (hf.c), the job's model.rope_theta / model.rope_scaling keys
 * (config.c, job.c), and an export read back (hf_export.c: the same frequencies, bit for bit);
 * plus the job keys' errors, the nested YAML form, and an HF model's overrides. */
#include <cjson/cJSON.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "hf.h"
#include "hf_export.h"
#include "job.h"
#include "params.h"
#include "rope.h"
#include "testutil.h"

#define FIXTURE "test/fixtures/rope/cases.json"
#define FREQ_TOL 1e-12 /* relative, each inv_freq and the attention factor: double vs double */
#define MAX_HALF 256

static char err[2048];
static const char *base; /* every file of the test under it; removed when every check passed */

/* A fresh directory base/<tag>-<n>. */
static const char *new_dir(const char *tag) {
    static char slots[4][1024];
    static int n;
    char *d = slots[n % 4];
    snprintf(d, sizeof slots[0], "%s/%s-%d", base, tag, n++);
    if (mkdir(d, 0755)) {
        perror(d);
        exit(1);
    }
    return d;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* err holds every piece (NULL ends the list). */
static int err_has(const char *a, const char *b, const char *c) {
    int ok = strstr(err, a) && (!b || strstr(err, b)) && (!c || strstr(err, c));
    if (!ok) fprintf(stderr, "  error was: %s\n  wanted: \"%s\" \"%s\" \"%s\"\n", err, a, b ? b : "", c ? c : "");
    return ok;
}

/* Frequencies of mc against the case's; returns the worst relative error (inv_freq and factor). */
static double compare(const struct model_config *mc, const cJSON *cs) {
    double inv[MAX_HALF], attn, worst = 0;
    const cJSON *want = cJSON_GetObjectItem(cs, "inv_freq");
    int half = mc->head_dim / 2;
    CHECK(half <= MAX_HALF && cJSON_GetArraySize(want) == half);
    rope_frequencies(&mc->rope, mc->rope_theta, mc->head_dim, inv, &attn);
    for (int i = 0; i < half && i < MAX_HALF; i++) {
        double w = cJSON_GetArrayItem(want, i)->valuedouble, e = fabs(inv[i] - w) / w;
        if (e > worst) worst = e;
    }
    double wa = cJSON_GetObjectItem(cs, "attention_factor")->valuedouble, ea = fabs(attn - wa) / wa;
    return ea > worst ? ea : worst;
}

static int64_t int_of(const cJSON *o, const char *key) { return (int64_t)cJSON_GetObjectItem(o, key)->valuedouble; }

/* 1. config.json as transformers reads it. 3. The export of that model read back. */
static void test_hf_and_export(const cJSON *cs) {
    const char *name = cJSON_GetObjectItem(cs, "name")->valuestring;
    const cJSON *cfg = cJSON_GetObjectItem(cs, "config");
    char *text = cJSON_Print(cfg), path[4096];
    const char *dir = new_dir("rope_hf");
    snprintf(path, sizeof path, "%s/config.json", dir);
    tu_write_file(path, text, strlen(text));
    free(text);
    struct model_config mc;
    if (!CHECK(hf_read_config(dir, &mc, err, sizeof err) == 0)) {
        fprintf(stderr, "  %s: %s\n", name, err);
        return;
    }
    if (mc.rope.type == ROPE_DYNAMIC) mc.rope.seq_len = int_of(cs, "seq_len");
    double e = compare(&mc, cs);
    printf("  %-24s config.json: worst relative error %.1e (tol %.0e)\n", name, e, FREQ_TOL);
    CHECK(e <= FREQ_TOL);

    struct param_table t;
    CHECK(params_init(&t, &mc, err, sizeof err) == 0);
    float *w = calloc((size_t)t.total, sizeof *w);
    const char *out = new_dir("rope_export");
    char exp_dir[4096];
    snprintf(exp_dir, sizeof exp_dir, "%s/model", out);
    CHECK(w && hf_export(exp_dir, &mc, &t, w, DTYPE_BF16, 0, 2 * int_of(cs, "seq_len"), NULL, NULL, 0, err,
                         sizeof err) == 0);
    struct model_config back;
    if (CHECK(hf_read_config(exp_dir, &back, err, sizeof err) == 0)) {
        if (back.rope.type == ROPE_DYNAMIC) back.rope.seq_len = mc.rope.seq_len;
        double a[MAX_HALF], b[MAX_HALF], fa, fb;
        rope_frequencies(&mc.rope, mc.rope_theta, mc.head_dim, a, &fa);
        rope_frequencies(&back.rope, back.rope_theta, back.head_dim, b, &fb);
        int same = back.rope.type == mc.rope.type && back.rope_theta == mc.rope_theta && fa == fb;
        for (int i = 0; i < mc.head_dim / 2; i++) same &= a[i] == b[i];
        if (!CHECK(same)) fprintf(stderr, "  %s: the export reads back with other frequencies\n", name);
    }
    free(w);
    params_free(&t);
}

/* A job of a random model with the case's RoPE as --set keys (world 1, synthetic data). */
static int job_of(const cJSON *cs, const char *const *extra, struct job *j) {
    const cJSON *cfg = cJSON_GetObjectItem(cs, "config"), *rs = cJSON_GetObjectItem(cfg, "rope_scaling");
    struct cfg c;
    char kv[256];
    cfg_defaults(&c);
    snprintf(c.path, sizeof c.path, "job.yaml");
    int D = (int)int_of(cfg, "head_dim");
    const char *sets[] = {"data.synthetic=copy", "model.vocab_size=32", "model.n_layers=1", "model.ffn_dim=16"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        if (cfg_apply_set(&c, sets[i], err, sizeof err)) return -1;
    snprintf(kv, sizeof kv, "model.dim=%d", 4 * D);
    if (cfg_apply_set(&c, kv, err, sizeof err)) return -1;
    snprintf(kv, sizeof kv, "model.rope_theta=%.17g", cJSON_GetObjectItem(cfg, "rope_theta")->valuedouble);
    if (cfg_apply_set(&c, kv, err, sizeof err)) return -1;
    snprintf(kv, sizeof kv, "data.seq_len=%lld", (long long)int_of(cs, "seq_len"));
    if (cfg_apply_set(&c, kv, err, sizeof err)) return -1;
    int has_orig = 0, type = ROPE_DEFAULT;
    for (const cJSON *f = rs ? rs->child : NULL; f; f = f->next) {
        if (!strcmp(f->string, "rope_type") || !strcmp(f->string, "type")) {
            type = rope_type_of(f->valuestring);
            snprintf(kv, sizeof kv, "model.rope_scaling.type=%s", f->valuestring);
        } else if (cJSON_IsBool(f)) {
            snprintf(kv, sizeof kv, "model.rope_scaling.%s=%s", f->string, cJSON_IsTrue(f) ? "true" : "false");
        } else {
            snprintf(kv, sizeof kv, "model.rope_scaling.%s=%.17g", f->string, f->valuedouble);
        }
        has_orig |= !strcmp(f->string, "original_max_position_embeddings");
        if (cfg_apply_set(&c, kv, err, sizeof err)) return -1;
    }
    /* transformers takes max_position_embeddings where it is missing (and dynamic always) */
    if (type != ROPE_DEFAULT && type != ROPE_LINEAR && !has_orig) {
        snprintf(kv, sizeof kv, "model.rope_scaling.original_max_position_embeddings=%lld",
                 (long long)int_of(cfg, "max_position_embeddings"));
        if (cfg_apply_set(&c, kv, err, sizeof err)) return -1;
    }
    for (; extra && *extra; extra++)
        if (cfg_apply_set(&c, *extra, err, sizeof err)) return -1;
    if (cfg_validate(&c, err, sizeof err)) return -1;
    return job_resolve(j, &c, 1, err, sizeof err);
}

/* 2. The job keys of a random model. */
static void test_job_keys(const cJSON *cs) {
    const char *name = cJSON_GetObjectItem(cs, "name")->valuestring;
    struct job j;
    if (!CHECK(job_of(cs, NULL, &j) == 0)) {
        fprintf(stderr, "  %s: %s\n", name, err);
        return;
    }
    double e = compare(&j.mc, cs);
    printf("  %-24s job keys:    worst relative error %.1e (tol %.0e)\n", name, e, FREQ_TOL);
    CHECK(e <= FREQ_TOL);
}

static const cJSON *case_named(const cJSON *cases, const char *name) {
    for (const cJSON *cs = cases->child; cs; cs = cs->next)
        if (!strcmp(cJSON_GetObjectItem(cs, "name")->valuestring, name)) return cs;
    fprintf(stderr, "fixture case %s missing\n", name);
    exit(1);
}

/* Bad job keys: errors naming where and the key, before anything is made. */
static void test_job_errors(const cJSON *cases) {
    const cJSON *yarn = case_named(cases, "yarn_small"), *dflt = case_named(cases, "default_d16");
    const cJSON *l3 = case_named(cases, "llama3_small");
    struct job j;
    printf("job key errors\n");
    CHECK(job_of(dflt, (const char *[]){"model.rope_scaling.factor=0", NULL}, &j) == -1 &&
          err_has("--set model.rope_scaling.factor: expected a number > 0, got 0", NULL, NULL));
    CHECK(job_of(dflt, (const char *[]){"model.rope_scaling.type=ntk", NULL}, &j) == -1 &&
          err_has("model.rope_scaling.type: expected one of default | linear | llama3 | dynamic | yarn", NULL, NULL));
    CHECK(job_of(dflt, (const char *[]){"model.rope_scaling.factor=4", NULL}, &j) == -1 &&
          err_has("--set: model.rope_scaling.factor: needs model.rope_scaling.type", NULL, NULL));
    CHECK(job_of(yarn, (const char *[]){"model.rope_scaling.low_freq_factor=2", NULL}, &j) == -1 &&
          err_has("model.rope_scaling.low_freq_factor: is not used by model.rope_scaling.type yarn", NULL, NULL));
    CHECK(job_of(dflt, (const char *[]){"model.rope_scaling.type=linear", NULL}, &j) == -1 &&
          err_has("--set: model.rope_scaling.factor: required by model.rope_scaling.type linear", NULL, NULL));
    CHECK(job_of(dflt, (const char *[]){"model.rope_scaling.type=dynamic", "model.rope_scaling.factor=2", NULL},
                 &j) == -1 &&
          err_has("model.rope_scaling.original_max_position_embeddings: required by model.rope_scaling.type dynamic",
                  NULL, NULL));
    CHECK(job_of(l3, (const char *[]){"model.rope_scaling.high_freq_factor=0.5", NULL}, &j) == -1 &&
          err_has("--set: model.rope_scaling.high_freq_factor: 0.5 must be greater than low_freq_factor", NULL,
                  NULL));
    CHECK(job_of(yarn, (const char *[]){"model.rope_scaling.mscale=-1", NULL}, &j) == -1 &&
          err_has("--set model.rope_scaling.mscale: expected a number >= 0, got -1", NULL, NULL));
    CHECK(job_of(yarn, (const char *[]){"model.rope_scaling.beta_fast=0", NULL}, &j) == -1 &&
          err_has("model.rope_scaling.beta_fast: expected a number > 0", NULL, NULL));
    /* the start-up line names what was used */
    CHECK(job_of(yarn, NULL, &j) == 0 && strstr(j.rope_note, "theta 10000, scaling yarn (factor 4, original 16") &&
          strstr(j.rope_note, "attention factor 1.13863"));
}

/* The job file: rope_scaling as a nested mapping under model, its errors with line and column. */
static void test_yaml(void) {
    printf("job file\n");
    const char *dir = new_dir("rope_yaml");
    char path[4096];
    snprintf(path, sizeof path, "%s/job.yaml", dir);
    const char *good = "model:\n  rope_theta: 1e6\n  rope_scaling:\n    type: yarn\n    factor: 8\n"
                       "    original_max_position_embeddings: 4096\n    truncate: false\n"
                       "data: {train: tokens.npy, seq_len: 64}\n";
    tu_write_file(path, good, strlen(good));
    struct cfg c;
    cfg_defaults(&c);
    if (CHECK(cfg_load_file(&c, path, err, sizeof err) == 0)) {
        CHECK(c.model.rope_theta == 1e6 && c.model.rope.type == ROPE_YARN && c.model.rope.factor == 8 &&
              c.model.rope.original_max_pos == 4096 && c.model.rope.truncate == 0);
        char where[64];
        cfg_where(&c, "model.rope_scaling.factor", where, sizeof where);
        CHECK(strstr(where, "job.yaml:5:13") != NULL);
        /* the printed configuration reads back (dotted keys under model:) */
        char out[4096];
        snprintf(out, sizeof out, "%s/printed.yaml", dir);
        FILE *f = fopen(out, "w");
        cfg_print(f, &c);
        fclose(f);
        struct cfg d;
        cfg_defaults(&d);
        CHECK(cfg_load_file(&d, out, err, sizeof err) == 0 && d.model.rope.type == ROPE_YARN &&
              d.model.rope.factor == 8 && d.model.rope.truncate == 0 && d.model.rope.original_max_pos == 4096);
    }
    const char *bad = "model:\n  rope_scaling:\n    type: yarn\n    factr: 8\n";
    tu_write_file(path, bad, strlen(bad));
    cfg_defaults(&c);
    CHECK(cfg_load_file(&c, path, err, sizeof err) == -1 &&
          err_has("job.yaml:4:5: model.rope_scaling.factr: unknown key (did you mean model.rope_scaling.factor?)",
                  NULL, NULL));
    const char *neg = "model:\n  rope_scaling: {type: linear, factor: -2}\n";
    tu_write_file(path, neg, strlen(neg));
    cfg_defaults(&c);
    CHECK(cfg_load_file(&c, path, err, sizeof err) == -1 &&
          err_has("job.yaml:2:40: model.rope_scaling.factor: expected a number > 0, got -2", NULL, NULL));
    /* a missing key is reported at the type's line */
    const char *miss = "model:\n  rope_scaling:\n    type: llama3\n    factor: 8\ndata: {synthetic: copy}\n";
    tu_write_file(path, miss, strlen(miss));
    cfg_defaults(&c);
    struct job j;
    CHECK(cfg_load_file(&c, path, err, sizeof err) == 0);
    CHECK(job_resolve(&j, &c, 1, err, sizeof err) == -1 &&
          err_has("job.yaml:3:11: model.rope_scaling.low_freq_factor: required by model.rope_scaling.type llama3",
                  NULL, NULL));
}

/* An HF model: model.rope_theta and model.rope_scaling override its config.json (the bug of
 * issue 14: `--set model.rope_theta=1e6` exited 2), and the start-up line says so. */
static void test_hf_override(void) {
    printf("HF model overrides\n");
    struct cfg c;
    struct job j;
    const char *base[] = {"model.init=hf:test/fixtures/rope_theta/hf", "data.synthetic=copy", "data.seq_len=64"};
    cfg_defaults(&c);
    for (size_t i = 0; i < 3; i++) CHECK(cfg_apply_set(&c, base[i], err, sizeof err) == 0);
    CHECK(job_resolve(&j, &c, 1, err, sizeof err) == 0);
    CHECK(j.mc.rope_theta == 500000.0 && j.mc.rope.type == ROPE_LLAMA3 && j.mc.rope.original_max_pos == 16);
    CHECK(cfg_apply_set(&c, "model.rope_theta=1e6", err, sizeof err) == 0);
    if (CHECK(job_resolve(&j, &c, 1, err, sizeof err) == 0)) {
        CHECK(j.mc.rope_theta == 1e6 && j.mc.rope.type == ROPE_LLAMA3);
        CHECK(strstr(j.rope_note, "theta 1e+06 (model.rope_theta, over config.json's 500000)") != NULL);
    } else {
        fprintf(stderr, "  %s\n", err);
    }
    CHECK(cfg_apply_set(&c, "model.rope_scaling.type=yarn", err, sizeof err) == 0);
    CHECK(cfg_apply_set(&c, "model.rope_scaling.factor=4", err, sizeof err) == 0);
    if (CHECK(job_resolve(&j, &c, 1, err, sizeof err) == 0)) {
        /* original_max_position_embeddings from config.json's max_position_embeddings (128) */
        CHECK(j.mc.rope.type == ROPE_YARN && j.mc.rope.factor == 4 && j.mc.rope.original_max_pos == 128 &&
              j.mc.rope.low_freq_factor == 0);
        CHECK(strstr(j.rope_note, "(model.rope_scaling, over config.json's llama3 (factor 8") != NULL);
    }
    CHECK(cfg_apply_set(&c, "model.rope_scaling.type=default", err, sizeof err) == 0);
    CHECK(job_resolve(&j, &c, 1, err, sizeof err) == -1 &&
          err_has("--set: model.rope_scaling.factor: is not used by model.rope_scaling.type default", NULL, NULL));
    /* bad values in config.json name the file and the key */
    const char *dir = new_dir("rope_badhf");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    static const struct { const char *rs, *want; } bad[] = {
        {"{\"rope_type\": \"longrope\", \"factor\": 4}", "rope_scaling.rope_type: \"longrope\" is not supported"},
        {"{\"rope_type\": \"yarn\", \"factor\": 0}", "rope_scaling.factor: 0 must be > 0"},
        {"{\"rope_type\": \"yarn\", \"factor\": 4, \"beta_fast\": -1}", "rope_scaling.beta_fast: expected a number >= 0"},
        {"{\"rope_type\": \"yarn\", \"factor\": 4, \"truncate\": 1}", "rope_scaling.truncate: expected true or false"},
        {"{\"rope_type\": \"yarn\", \"factor\": 4, \"attention_factor\": 0}", "rope_scaling.attention_factor: 0 must be > 0"},
        {"{\"rope_type\": \"yarn\"}", "rope_scaling.factor: missing"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "{\"hidden_size\": 64, \"num_attention_heads\": 4, \"num_hidden_layers\": 1, "
                 "\"intermediate_size\": 32, \"vocab_size\": 32, \"max_position_embeddings\": 64, "
                 "\"rope_scaling\": %s}", bad[i].rs);
        tu_write_file(path, text, strlen(text));
        struct model_config mc;
        CHECK(hf_read_config(dir, &mc, err, sizeof err) == -1 && err_has(path, bad[i].want, NULL));
    }
    const char *nomax = "{\"hidden_size\": 64, \"num_attention_heads\": 4, \"num_hidden_layers\": 1, "
                        "\"intermediate_size\": 32, \"vocab_size\": 32, \"rope_scaling\": {\"rope_type\": \"dynamic\", "
                        "\"factor\": 2}}";
    tu_write_file(path, nomax, strlen(nomax));
    struct model_config mc;
    CHECK(hf_read_config(dir, &mc, err, sizeof err) == -1 && err_has("max_position_embeddings", "missing", NULL));
}

int main(void) {
    char ferr[512];
    base = tu_tmpdir("rope");
    cJSON *doc = hf_read_json(FIXTURE, ferr, sizeof ferr);
    if (!doc) {
        fprintf(stderr, "test_rope: %s\n", ferr);
        return 1;
    }
    const cJSON *cases = cJSON_GetObjectItem(doc, "cases");
    printf("RoPE vs transformers (%s, %d cases)\n", FIXTURE, cJSON_GetArraySize(cases));
    for (const cJSON *cs = cases->child; cs; cs = cs->next) {
        test_hf_and_export(cs);
        test_job_keys(cs);
    }
    test_job_errors(cases);
    test_yaml();
    test_hf_override();
    cJSON_Delete(doc);
    if (tu_failures == 0) nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else fprintf(stderr, "test_rope: files kept in %s\n", base);
    return tu_done("test_rope");
}
