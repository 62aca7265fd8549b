/* hf: owns the Hugging Face model directory: config.json parsing into struct model_config
 * (including the v4/v5 RoPE spellings), and locating, validating and converting the
 * safetensors weights (single file or sharded index) into the flat fp32 buffer. */
#include "hf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mapfile.h"
#include "safetensors.h"

#define HF_PATH_MAX 4096
#define HF_JSON_MAX (64ll << 20) /* config and index files are a few KB to a few MB */

static int join_path(char *out, size_t outlen, const char *dir, const char *name, char *err,
                     size_t errlen) {
    int k = snprintf(out, outlen, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= outlen) {
        snprintf(err, errlen, "%s/%s: path too long", dir, name);
        return -1;
    }
    return 0;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

cJSON *hf_read_json(const char *path, char *err, size_t errlen) {
    int fd = mapfile_open_regular(path, err, errlen); /* a FIFO would block the read forever */
    if (fd < 0) return NULL;
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    char *buf = NULL;
    long long len = -1;
    if (fseek(fp, 0, SEEK_END) == 0) len = ftell(fp);
    if (len < 0 || len > HF_JSON_MAX || fseek(fp, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "%s: cannot read (size %lld, limit %lld bytes)", path, len, HF_JSON_MAX);
        fclose(fp);
        return NULL;
    }
    buf = malloc((size_t)len + 1);
    if (!buf || fread(buf, 1, (size_t)len, fp) != (size_t)len) {
        snprintf(err, errlen, "%s: %s", path, buf ? "read failed" : "out of memory");
        free(buf);
        fclose(fp);
        return NULL;
    }
    fclose(fp);
    buf[len] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, (size_t)len, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        long long at = end ? (long long)(end - buf) : 0;
        int line = 1;
        for (long long i = 0; i < at && i < len; i++) line += buf[i] == '\n';
        if (root) snprintf(err, errlen, "%s: expected a JSON object at the top level", path);
        else snprintf(err, errlen, "%s:%d: invalid JSON near byte %lld", path, line, at);
        cJSON_Delete(root);
        root = NULL;
    }
    free(buf);
    return root;
}

/* ---------------------------------------------------------------- config.json */

/* Typed field readers. `pre` is the key's parent ("" or "rope_scaling." ...). A JSON null is
 * treated as absent. Return 1 when present and stored, 0 when absent, -1 on error. */
static const cJSON *get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static int get_int(const char *path, const cJSON *obj, const char *pre, const char *key,
                   int64_t max, int64_t *out, char *err, size_t errlen) {
    const cJSON *v = get(obj, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || floor(v->valuedouble) != v->valuedouble) {
        snprintf(err, errlen, "%s: %s%s: expected an integer", path, pre, key);
        return -1;
    }
    if (v->valuedouble < 1 || v->valuedouble > (double)max) {
        snprintf(err, errlen, "%s: %s%s: %.17g is outside [1, %lld]", path, pre, key, v->valuedouble,
                 (long long)max);
        return -1;
    }
    *out = (int64_t)v->valuedouble;
    return 1;
}

static int get_posnum(const char *path, const cJSON *obj, const char *pre, const char *key,
                      double *out, char *err, size_t errlen) {
    const cJSON *v = get(obj, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) {
        snprintf(err, errlen, "%s: %s%s: expected a number", path, pre, key);
        return -1;
    }
    if (!(v->valuedouble > 0) || !isfinite(v->valuedouble)) {
        snprintf(err, errlen, "%s: %s%s: %.17g must be > 0", path, pre, key, v->valuedouble);
        return -1;
    }
    *out = v->valuedouble;
    return 1;
}

static int get_bool(const char *path, const cJSON *obj, const char *key, int *out, char *err,
                    size_t errlen) {
    const cJSON *v = get(obj, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) {
        snprintf(err, errlen, "%s: %s: expected true or false", path, key);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 1;
}

static int get_str(const char *path, const cJSON *obj, const char *pre, const char *key,
                   const char **out, char *err, size_t errlen) {
    const cJSON *v = get(obj, key);
    if (!v) return 0;
    if (!cJSON_IsString(v)) {
        snprintf(err, errlen, "%s: %s%s: expected a string", path, pre, key);
        return -1;
    }
    *out = v->valuestring;
    return 1;
}

static int missing(const char *path, const char *pre, const char *key, char *err, size_t errlen) {
    snprintf(err, errlen, "%s: %s%s: missing", path, pre, key);
    return -1;
}

/* Required positive int field, at most max. */
static int req_int(const char *path, const cJSON *obj, const char *key, int64_t max, int *out, char *err,
                   size_t errlen) {
    int64_t v;
    int r = get_int(path, obj, "", key, max, &v, err, errlen);
    if (r < 0) return -1;
    if (r == 0) return missing(path, "", key, err, errlen);
    *out = (int)v;
    return 0;
}

/* A required positive number of a RoPE object. */
static int req_posnum(const char *path, const cJSON *rs, const char *pre, const char *key, double *out,
                      char *err, size_t errlen) {
    int r = get_posnum(path, rs, pre, key, out, err, errlen);
    return r <= 0 ? (r < 0 ? -1 : missing(path, pre, key, err, errlen)) : 0;
}

/* An optional number >= 0 of a RoPE object (absent: *out unchanged). */
static int opt_nonneg(const char *path, const cJSON *rs, const char *pre, const char *key, double *out,
                      char *err, size_t errlen) {
    const cJSON *v = get(rs, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || !isfinite(v->valuedouble)) {
        snprintf(err, errlen, "%s: %s%s: expected a number >= 0", path, pre, key);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

/* RoPE scaling from a rope_scaling (v4) or rope_parameters (v5) object, with transformers'
 * rules: original_max_position_embeddings defaults to max_position_embeddings for llama3 and
 * yarn; dynamic scales relative to max_position_embeddings (and ignores the former); yarn's
 * beta_fast, beta_slow default to 32, 1 (also when 0), mscale and mscale_all_dim count only
 * when both are non-zero, truncate defaults to true. */
static int read_rope(const char *path, const cJSON *rs, const char *objname, int type_default,
                     struct model_config *mc, char *err, size_t errlen) {
    char pre[64];
    snprintf(pre, sizeof pre, "%s.", objname);
    if (!cJSON_IsObject(rs)) {
        snprintf(err, errlen, "%s: %s: expected an object or null", path, objname);
        return -1;
    }
    const char *type = NULL, *type_key = "rope_type";
    int r = get_str(path, rs, pre, "rope_type", &type, err, errlen);
    if (r == 0) {
        type_key = "type"; /* the legacy spelling */
        r = get_str(path, rs, pre, "type", &type, err, errlen);
    }
    if (r < 0) return -1;
    if (r == 0) {
        if (!type_default) return missing(path, pre, "rope_type", err, errlen);
        type = "default";
    }
    struct rope_scaling *ro = &mc->rope;
    int t = rope_type_of(type);
    if (t < 0) {
        snprintf(err, errlen, "%s: %s%s: \"%s\" is not supported (default, linear, llama3, dynamic, yarn)", path,
                 pre, type_key, type);
        return -1;
    }
    rope_defaults(ro, t);
    if (t == ROPE_DEFAULT) return 0;
    if (req_posnum(path, rs, pre, "factor", &ro->factor, err, errlen)) return -1;
    if (t == ROPE_LINEAR) return 0;
    if (t == ROPE_DYNAMIC) {
        if (!mc->max_positions) return missing(path, "", "max_position_embeddings (dynamic RoPE scales from it)",
                                               err, errlen);
        ro->original_max_pos = mc->max_positions;
        return 0;
    }
    if (t == ROPE_LLAMA3) {
        if (req_posnum(path, rs, pre, "low_freq_factor", &ro->low_freq_factor, err, errlen) ||
            req_posnum(path, rs, pre, "high_freq_factor", &ro->high_freq_factor, err, errlen))
            return -1;
        if (!(ro->high_freq_factor > ro->low_freq_factor)) {
            snprintf(err, errlen, "%s: %shigh_freq_factor: %g must be greater than low_freq_factor %g",
                     path, pre, ro->high_freq_factor, ro->low_freq_factor);
            return -1;
        }
    }
    r = get_int(path, rs, pre, "original_max_position_embeddings", INT64_MAX / 2, &ro->original_max_pos, err,
                errlen);
    if (r < 0) return -1;
    if (r == 0 && !mc->max_positions)
        return missing(path, pre, "original_max_position_embeddings (nor is max_position_embeddings given)", err,
                       errlen);
    if (r == 0) ro->original_max_pos = mc->max_positions;
    if (t == ROPE_LLAMA3) return 0;
    /* yarn */
    if (opt_nonneg(path, rs, pre, "beta_fast", &ro->beta_fast, err, errlen) ||
        opt_nonneg(path, rs, pre, "beta_slow", &ro->beta_slow, err, errlen) ||
        opt_nonneg(path, rs, pre, "mscale", &ro->mscale, err, errlen) ||
        opt_nonneg(path, rs, pre, "mscale_all_dim", &ro->mscale_all_dim, err, errlen))
        return -1;
    if (ro->beta_fast == 0) ro->beta_fast = 32; /* HF: `or 32` */
    if (ro->beta_slow == 0) ro->beta_slow = 1;
    if (get_posnum(path, rs, pre, "attention_factor", &ro->attention_factor, err, errlen) < 0) return -1;
    const cJSON *tr = get(rs, "truncate");
    if (tr && !cJSON_IsBool(tr)) {
        snprintf(err, errlen, "%s: %struncate: expected true or false", path, pre);
        return -1;
    }
    if (tr) ro->truncate = cJSON_IsTrue(tr);
    return 0;
}

/* Keys whose non-default values ringtrain does not implement. */
static int check_unsupported(const char *path, const cJSON *root, char *err, size_t errlen) {
    const char *s = NULL;
    int r = get_str(path, root, "", "model_type", &s, err, errlen);
    if (r < 0) return -1;
    if (r > 0 && strcmp(s, "llama")) {
        snprintf(err, errlen, "%s: model_type: \"%s\" is not supported (llama)", path, s);
        return -1;
    }
    r = get_str(path, root, "", "hidden_act", &s, err, errlen);
    if (r < 0) return -1;
    if (r > 0 && strcmp(s, "silu")) {
        snprintf(err, errlen, "%s: hidden_act: \"%s\" is not supported (silu)", path, s);
        return -1;
    }
    static const char *const bias_keys[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < sizeof bias_keys / sizeof bias_keys[0]; i++) {
        int b = 0;
        if (get_bool(path, root, bias_keys[i], &b, err, errlen) < 0) return -1;
        if (b) {
            snprintf(err, errlen, "%s: %s: true is not supported (bias-free projections only)", path,
                     bias_keys[i]);
            return -1;
        }
    }
    const cJSON *v = get(root, "attention_dropout");
    if (v && (!cJSON_IsNumber(v) || v->valuedouble != 0)) {
        snprintf(err, errlen, "%s: attention_dropout: only 0 is supported", path);
        return -1;
    }
    return 0;
}

static int parse_config(const char *path, const cJSON *root, struct model_config *mc, char *err,
                        size_t errlen) {
    memset(mc, 0, sizeof *mc);
    if (check_unsupported(path, root, err, errlen)) return -1;
    if (req_int(path, root, "vocab_size", MODEL_MAX_VOCAB, &mc->vocab_size, err, errlen) ||
        req_int(path, root, "hidden_size", MODEL_MAX_DIM, &mc->dim, err, errlen) ||
        req_int(path, root, "num_hidden_layers", MODEL_MAX_LAYERS, &mc->n_layers, err, errlen) ||
        req_int(path, root, "num_attention_heads", MODEL_MAX_HEADS, &mc->n_heads, err, errlen) ||
        req_int(path, root, "intermediate_size", MODEL_MAX_FFN, &mc->ffn_dim, err, errlen))
        return -1;
    int64_t v;
    int r = get_int(path, root, "", "num_key_value_heads", MODEL_MAX_HEADS, &v, err, errlen);
    if (r < 0) return -1;
    mc->n_kv_heads = r ? (int)v : mc->n_heads;
    if (mc->n_heads % mc->n_kv_heads) {
        snprintf(err, errlen, "%s: num_key_value_heads: %d does not divide num_attention_heads %d",
                 path, mc->n_kv_heads, mc->n_heads);
        return -1;
    }
    r = get_int(path, root, "", "head_dim", MODEL_MAX_DIM, &v, err, errlen);
    if (r < 0) return -1;
    if (r) {
        mc->head_dim = (int)v;
    } else {
        if (mc->dim % mc->n_heads) {
            snprintf(err, errlen,
                     "%s: hidden_size: %d is not a multiple of num_attention_heads %d (and no head_dim)",
                     path, mc->dim, mc->n_heads);
            return -1;
        }
        mc->head_dim = mc->dim / mc->n_heads;
    }
    if (mc->head_dim % 2) {
        snprintf(err, errlen, "%s: head_dim: %d is odd (RoPE rotates pairs)", path, mc->head_dim);
        return -1;
    }
    if (get_int(path, root, "", "max_position_embeddings", INT64_MAX, &mc->max_positions, err, errlen) < 0)
        return -1;
    mc->norm_eps = 1e-6;
    if (get_posnum(path, root, "", "rms_norm_eps", &mc->norm_eps, err, errlen) < 0) return -1;
    if (get_bool(path, root, "tie_word_embeddings", &mc->tie_embeddings, err, errlen) < 0) return -1;

    /* RoPE: v5 rope_parameters (which carries rope_theta) wins over v4 rope_scaling. */
    mc->rope_theta = 10000.0;
    if (get_posnum(path, root, "", "rope_theta", &mc->rope_theta, err, errlen) < 0) return -1;
    rope_defaults(&mc->rope, ROPE_DEFAULT);
    const cJSON *rp = get(root, "rope_parameters");
    if (rp) {
        if (read_rope(path, rp, "rope_parameters", 1, mc, err, errlen)) return -1;
        if (get_posnum(path, rp, "rope_parameters.", "rope_theta", &mc->rope_theta, err, errlen) < 0)
            return -1;
    } else {
        const cJSON *rs = get(root, "rope_scaling");
        if (rs && read_rope(path, rs, "rope_scaling", 0, mc, err, errlen)) return -1;
    }
    return 0;
}

int hf_read_config(const char *dir, struct model_config *mc, char *err, size_t errlen) {
    char path[HF_PATH_MAX];
    if (join_path(path, sizeof path, dir, "config.json", err, errlen)) return -1;
    cJSON *root = hf_read_json(path, err, errlen);
    if (!root) return -1;
    int rc = parse_config(path, root, mc, err, errlen);
    cJSON_Delete(root);
    return rc;
}

/* ---------------------------------------------------------------- weights */

/* The directory's weights, opened once, and for every table entry its source tensor. */
struct hf_weights {
    int                      n_shards;
    struct st_file          *shards;
    const struct st_tensor **src; /* (t->n) */
};

static void weights_close(struct hf_weights *w) {
    for (int i = 0; i < w->n_shards; i++) st_close(&w->shards[i]);
    free(w->shards);
    free(w->src);
    memset(w, 0, sizeof *w);
}

static void format_dims(const int64_t *shape, int ndim, char *out, size_t outlen) {
    size_t k = (size_t)snprintf(out, outlen, "[");
    for (int i = 0; i < ndim && k < outlen; i++)
        k += (size_t)snprintf(out + k, outlen - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < outlen) snprintf(out + k, outlen - k, "]");
}

/* The tensor must have exactly p's shape and a float dtype. */
static int check_tensor(const struct st_tensor *s, const struct param *p, char *err, size_t errlen) {
    int same = s->ndim == p->ndim;
    for (int i = 0; same && i < p->ndim; i++) same = s->shape[i] == p->shape[i];
    if (!same) {
        char got[160], want[64];
        format_dims(s->shape, s->ndim, got, sizeof got);
        format_dims(p->shape, p->ndim, want, sizeof want);
        snprintf(err, errlen, "%s: %s: shape %s, expected %s", s->file, p->name, got, want);
        return -1;
    }
    if (!st_dtype_is_float(s->dtype)) {
        snprintf(err, errlen, "%s: %s: dtype %s is not a float type (F32, BF16, F16, F64)", s->file,
                 p->name, st_dtype_name(s->dtype));
        return -1;
    }
    return 0;
}

/* Open dir/<name> as shard i of w. */
static int open_shard(struct hf_weights *w, const char *dir, const char *name, char *err,
                      size_t errlen) {
    char path[HF_PATH_MAX];
    if (join_path(path, sizeof path, dir, name, err, errlen)) return -1;
    if (st_open(&w->shards[w->n_shards], path, err, errlen)) return -1;
    w->n_shards++;
    return 0;
}

/* A sharded model: the index's weight_map names each tensor's shard. shard_of[i] is set for
 * every table entry; every distinct shard is opened once. */
static int open_index(struct hf_weights *w, const char *dir, const char *index_path,
                      const struct param_table *t, int *shard_of, char *err, size_t errlen) {
    cJSON *root = hf_read_json(index_path, err, errlen);
    if (!root) return -1;
    int rc = -1, n_names = 0;
    const char **names = NULL; /* distinct shard file names, in the index's order */
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        snprintf(err, errlen, "%s: weight_map: %s", index_path, map ? "expected an object" : "missing");
        goto out;
    }
    int n_entries = cJSON_GetArraySize(map);
    names = calloc((size_t)(n_entries > 0 ? n_entries : 1), sizeof *names);
    w->shards = calloc((size_t)(n_entries > 0 ? n_entries : 1), sizeof *w->shards);
    if (!names || !w->shards) {
        snprintf(err, errlen, "%s: out of memory", index_path);
        goto out;
    }
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            snprintf(err, errlen, "%s: weight_map.%s: expected a file name string", index_path,
                     e->string);
            goto out;
        }
        const char *s = e->valuestring;
        if (!*s || s[0] == '/' || strstr(s, "..")) {
            snprintf(err, errlen, "%s: weight_map.%s: \"%s\" is not a file name inside %s", index_path,
                     e->string, s, dir);
            goto out;
        }
        int k = 0;
        while (k < n_names && strcmp(names[k], s)) k++;
        if (k == n_names) {
            names[n_names++] = s;
            if (open_shard(w, dir, s, err, errlen)) goto out;
        }
    }
    for (int i = 0; i < t->n; i++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(map, t->p[i].name);
        if (!e) {
            snprintf(err, errlen, "%s: weight_map: missing tensor %s", index_path, t->p[i].name);
            goto out;
        }
        int k = 0;
        while (strcmp(names[k], e->valuestring)) k++;
        shard_of[i] = k;
    }
    rc = 0;
out:
    free(names);
    cJSON_Delete(root);
    return rc;
}

/* Locate and validate every tensor of t; the one code path under check and load. */
static int weights_open(struct hf_weights *w, const char *dir, const struct param_table *t,
                        char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    char single[HF_PATH_MAX], index[HF_PATH_MAX];
    if (join_path(single, sizeof single, dir, "model.safetensors", err, errlen) ||
        join_path(index, sizeof index, dir, "model.safetensors.index.json", err, errlen))
        return -1;
    int *shard_of = calloc((size_t)(t->n > 0 ? t->n : 1), sizeof *shard_of);
    w->src = calloc((size_t)(t->n > 0 ? t->n : 1), sizeof *w->src);
    if (!shard_of || !w->src) {
        snprintf(err, errlen, "%s: out of memory", dir);
        goto fail;
    }
    if (file_exists(single)) {
        w->shards = calloc(1, sizeof *w->shards);
        if (!w->shards) {
            snprintf(err, errlen, "%s: out of memory", dir);
            goto fail;
        }
        if (open_shard(w, dir, "model.safetensors", err, errlen)) goto fail;
    } else if (file_exists(index)) {
        if (open_index(w, dir, index, t, shard_of, err, errlen)) goto fail;
    } else {
        snprintf(err, errlen, "%s: no model.safetensors or model.safetensors.index.json", dir);
        goto fail;
    }
    for (int i = 0; i < t->n; i++) {
        const struct st_file *sf = &w->shards[shard_of[i]];
        const struct st_tensor *s = st_find(sf, t->p[i].name);
        if (!s) {
            snprintf(err, errlen, "%s: missing tensor %s", sf->path, t->p[i].name);
            goto fail;
        }
        if (check_tensor(s, &t->p[i], err, errlen)) goto fail;
        w->src[i] = s;
    }
    free(shard_of);
    return 0;
fail:
    free(shard_of);
    weights_close(w);
    return -1;
}

int hf_check_weights(const char *dir, const struct param_table *t, char *err, size_t errlen) {
    struct hf_weights w;
    if (weights_open(&w, dir, t, err, errlen)) return -1;
    weights_close(&w);
    return 0;
}

struct hf_reader {
    struct hf_weights w;
    const struct param_table *t;
};

int hf_reader_open(struct hf_reader **r, const char *dir, const struct param_table *t, char *err, size_t errlen) {
    *r = calloc(1, sizeof **r);
    if (!*r) {
        snprintf(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    (*r)->t = t;
    if (weights_open(&(*r)->w, dir, t, err, errlen)) {
        free(*r);
        *r = NULL;
        return -1;
    }
    return 0;
}

int hf_reader_read(struct hf_reader *r, int64_t lo, int64_t n, float *dst, char *err, size_t errlen) {
    const struct param_table *t = r->t;
    for (int i = 0; i < t->n; i++) {
        const struct param *p = &t->p[i];
        int64_t a = p->offset > lo ? p->offset : lo, b = p->offset + p->numel < lo + n ? p->offset + p->numel : lo + n;
        if (a >= b) continue;
        float *x = dst + (a - lo);
        const int64_t first = a - p->offset, m = b - a;
        if (st_to_f32_range(r->w.src[i], first, m, x, err, errlen)) return -1;
        int64_t bad = m;
#pragma omp parallel for reduction(min : bad) schedule(static) if (m > (1 << 20))
        for (int64_t k = 0; k < m; k++)
            if (!isfinite(x[k]) && k < bad) bad = k;
        if (bad < m) {
            snprintf(err, errlen, "%s: %s: element %lld is not finite (%g)", r->w.src[i]->file, p->name,
                     (long long)(first + bad), (double)x[bad]);
            return -1;
        }
    }
    return 0;
}

void hf_reader_close(struct hf_reader *r) {
    if (!r) return;
    weights_close(&r->w);
    free(r);
}

int hf_load_weights(const char *dir, const struct param_table *t, float *buf, char *err, size_t errlen) {
    struct hf_reader *r;
    if (hf_reader_open(&r, dir, t, err, errlen)) return -1;
    int rc = hf_reader_read(r, 0, t->total, buf, err, errlen);
    hf_reader_close(r);
    return rc;
}
