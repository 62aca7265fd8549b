/* hf_export: owns writing a Hugging Face LlamaForCausalLM directory: config.json from struct
 * model_config (and the source model's token ids), the shard plan, the weights (through
 * st_write), the index, the tokenizer and generation files copied from the source model
 * directory, and the crash-safe replacement of the target directory (temporary sibling,
 * fsync, rename). */
#include "hf_export.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "hf.h"
#include "mapfile.h"
#include "safetensors.h"

#define HFX_PATH_MAX 4096

static const char *const st_meta[] = {"format", "pt", NULL}; /* what save_pretrained writes */

/* ---------------------------------------------------------------- small file helpers */

static int join(char *out, size_t outlen, const char *a, const char *b, char *err, size_t errlen) {
    int k = snprintf(out, outlen, "%s%s", a, b);
    if (k < 0 || (size_t)k >= outlen) {
        snprintf(err, errlen, "%s%s: path too long", a, b);
        return -1;
    }
    return 0;
}

static int fsync_dir(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd)) {
        snprintf(err, errlen, "%s: cannot fsync the directory: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* Create path (a new file), write text, fsync, close. */
static int write_text(const char *path, const char *text, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    size_t n = strlen(text);
    while (n > 0) {
        ssize_t w = write(fd, text, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            snprintf(err, errlen, "%s: write failed: %s", path, w < 0 ? strerror(errno) : "no progress");
            close(fd);
            return -1;
        }
        text += w;
        n -= (size_t)w;
    }
    if (fsync(fd) || close(fd)) {
        snprintf(err, errlen, "%s: fsync/close failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Copy the regular file src to dst (a new file), fsync. */
static int copy_file(const char *src, const char *dst, char *err, size_t errlen) {
    int in = mapfile_open_regular(src, err, errlen);
    if (in < 0) return -1;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), rc = -1;
    if (out < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", dst, strerror(errno));
        close(in);
        return -1;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: read failed: %s", src, strerror(errno));
            goto out;
        }
        if (n == 0) break;
        for (char *p = buf; n > 0;) {
            ssize_t w = write(out, p, (size_t)n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                snprintf(err, errlen, "%s: write failed: %s", dst, w < 0 ? strerror(errno) : "no progress");
                goto out;
            }
            p += w;
            n -= w;
        }
    }
    if (fsync(out)) {
        snprintf(err, errlen, "%s: fsync failed: %s", dst, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    close(in);
    if (close(out) && rc == 0) {
        snprintf(err, errlen, "%s: close failed: %s", dst, strerror(errno));
        rc = -1;
    }
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path) ? -1 : 0;
}

/* Remove a directory tree (our temporary directory, or a replaced export). */
static int remove_tree(const char *path) { return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* mkdir -p of the parent directories of path (not path itself). */
static int make_parents(const char *path, char *err, size_t errlen) {
    char buf[HFX_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) {
            snprintf(err, errlen, "%s: cannot create the directory: %s", buf, strerror(errno));
            return -1;
        }
        *s = '/';
    }
    return 0;
}

enum target { TARGET_ABSENT, TARGET_EMPTY, TARGET_EXPORT };

static int has_config(const char *dir) {
    char p[HFX_PATH_MAX];
    struct stat sb;
    int k = snprintf(p, sizeof p, "%s/config.json", dir);
    return k > 0 && (size_t)k < sizeof p && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* What is at dir now: nothing, an empty directory, or a previous export; -1 for anything else. */
static int classify_target(const char *dir, int *kind, char *err, size_t errlen) {
    struct stat sb;
    if (lstat(dir, &sb)) {
        if (errno == ENOENT) {
            *kind = TARGET_ABSENT;
            return 0;
        }
        snprintf(err, errlen, "%s: cannot stat: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s: exists and is not a directory; refusing to replace it", dir);
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot read the directory: %s", dir, strerror(errno));
        return -1;
    }
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) entries++;
    closedir(d);
    if (entries == 0) *kind = TARGET_EMPTY;
    else if (has_config(dir)) *kind = TARGET_EXPORT;
    else {
        snprintf(err, errlen,
                 "%s: exists, is not empty and has no config.json (not a previous export); "
                 "refusing to replace it",
                 dir);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- config.json */

/* Shortest decimal that reads back as x, always with a '.' or an exponent so that Python
 * reads a float. */
static void fmt_float(char *out, size_t outlen, double x) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, outlen, "%.*g", prec, x);
        if (strtod(out, NULL) == x) break;
    }
    if (!strpbrk(out, ".eE")) strncat(out, ".0", outlen - strlen(out) - 1);
}

static int add_float(cJSON *o, const char *key, double x) {
    char s[40];
    fmt_float(s, sizeof s, x);
    return cJSON_AddRawToObject(o, key, s) ? 0 : -1;
}

static int add_int(cJSON *o, const char *key, int64_t x) {
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)x);
    return cJSON_AddRawToObject(o, key, s) ? 0 : -1;
}

static int add_str(cJSON *o, const char *key, const char *s) {
    return cJSON_AddStringToObject(o, key, s) ? 0 : -1;
}

static int add_bool(cJSON *o, const char *key, int b) {
    return cJSON_AddBoolToObject(o, key, b) ? 0 : -1;
}

/* The rope_scaling object (keys sorted), or JSON null for default RoPE. Every key that the
 * type uses is written with the value used, so transformers computes the same frequencies
 * (dynamic's original length is max_position_embeddings, written by config_text). */
static int add_rope(cJSON *o, const struct model_config *mc) {
    const struct rope_scaling *r = &mc->rope;
    if (r->type == ROPE_DEFAULT) return cJSON_AddNullToObject(o, "rope_scaling") ? 0 : -1;
    cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
    if (!rs) return -1;
    const int yarn = r->type == ROPE_YARN, llama3 = r->type == ROPE_LLAMA3;
    if (yarn && r->attention_factor > 0 && add_float(rs, "attention_factor", r->attention_factor)) return -1;
    if (yarn && (add_float(rs, "beta_fast", r->beta_fast) || add_float(rs, "beta_slow", r->beta_slow))) return -1;
    if (add_float(rs, "factor", r->factor)) return -1;
    if (llama3 && (add_float(rs, "high_freq_factor", r->high_freq_factor) ||
                   add_float(rs, "low_freq_factor", r->low_freq_factor)))
        return -1;
    if (yarn && r->mscale > 0 && add_float(rs, "mscale", r->mscale)) return -1;
    if (yarn && r->mscale_all_dim > 0 && add_float(rs, "mscale_all_dim", r->mscale_all_dim)) return -1;
    if ((yarn || llama3) && add_int(rs, "original_max_position_embeddings", r->original_max_pos)) return -1;
    if (add_str(rs, "rope_type", rope_type_name(r->type))) return -1;
    return yarn ? add_bool(rs, "truncate", r->truncate) : 0;
}

/* The source model's token ids among keys (NULL-terminated; bos_token_id, eos_token_id,
 * pad_token_id: an integer, a list or null, copied as they are); the ones it has are
 * appended to got. */
static int add_token_ids(cJSON *o, const cJSON *src, const char *const *keys, char *got, size_t gotlen) {
    for (size_t i = 0; src && keys[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, keys[i]);
        if (!v) continue;
        cJSON *dup = cJSON_Duplicate(v, 1);
        if (!dup || !cJSON_AddItemToObject(o, keys[i], dup)) {
            cJSON_Delete(dup);
            return -1;
        }
        size_t k = strlen(got);
        snprintf(got + k, gotlen - k, "%s%s", k ? ", " : "", keys[i]);
    }
    return 0;
}

/* config.json text (keys sorted, as save_pretrained writes them; the source's token ids in
 * it when src is not NULL, their names appended to ids); NULL when out of memory. */
static char *config_text(const struct model_config *mc, int64_t max_positions, int dtype, const cJSON *src,
                         char *ids, size_t idslen) {
    cJSON *o = cJSON_CreateObject(), *arch = cJSON_CreateStringArray((const char *[]){"LlamaForCausalLM"}, 1);
    char *text = NULL;
    if (!o || !arch) goto out;
    cJSON_AddItemToObject(o, "architectures", arch);
    arch = NULL;
    /* transformers' dynamic NTK scales relative to max_position_embeddings */
    if (mc->rope.type == ROPE_DYNAMIC) max_positions = mc->rope.original_max_pos;
    if (add_bool(o, "attention_bias", 0) || add_float(o, "attention_dropout", 0.0) ||
        add_token_ids(o, src, (const char *const[]){"bos_token_id", "eos_token_id", NULL}, ids, idslen) ||
        add_int(o, "head_dim", mc->head_dim) || add_str(o, "hidden_act", "silu") ||
        add_int(o, "hidden_size", mc->dim) || add_int(o, "intermediate_size", mc->ffn_dim) ||
        add_int(o, "max_position_embeddings", max_positions) || add_bool(o, "mlp_bias", 0) ||
        add_str(o, "model_type", "llama") || add_int(o, "num_attention_heads", mc->n_heads) ||
        add_int(o, "num_hidden_layers", mc->n_layers) ||
        add_int(o, "num_key_value_heads", mc->n_kv_heads) ||
        add_token_ids(o, src, (const char *const[]){"pad_token_id", NULL}, ids, idslen) ||
        add_float(o, "rms_norm_eps", mc->norm_eps) || add_rope(o, mc) ||
        add_float(o, "rope_theta", mc->rope_theta) ||
        add_bool(o, "tie_word_embeddings", mc->tie_embeddings) ||
        add_str(o, "torch_dtype", dtype == DTYPE_BF16 ? "bfloat16" : "float32") ||
        add_int(o, "vocab_size", mc->vocab_size))
        goto out;
    text = cJSON_Print(o);
out:
    cJSON_Delete(arch);
    cJSON_Delete(o);
    return text;
}

/* Values config.json must be able to hold, and that transformers accepts. */
static int check_config(const struct model_config *mc, int64_t max_positions, char *err,
                        size_t errlen) {
    const char *bad = NULL, *field;
    char msg[160];
    if (!(mc->norm_eps > 0) || !isfinite(mc->norm_eps)) bad = "norm_eps must be finite and > 0";
    else if (!(mc->rope_theta > 0) || !isfinite(mc->rope_theta)) bad = "rope_theta must be finite and > 0";
    else if (max_positions < 1) bad = "max_position_embeddings must be >= 1";
    if (bad) {
        snprintf(err, errlen, "cannot export this model config: %s", bad);
        return -1;
    }
    if (rope_check(&mc->rope, &field, msg, sizeof msg)) {
        snprintf(err, errlen, "cannot export this model config: rope_scaling.%s: %s", field, msg);
        return -1;
    }
    return 0;
}

/* t must be the layout params_init builds for mc (names, shapes, offsets). */
static int check_table(const struct model_config *mc, const struct param_table *t, char *err,
                       size_t errlen) {
    struct param_table want;
    if (params_init(&want, mc, err, errlen)) return -1;
    int ok = want.n == t->n && want.total == t->total;
    for (int i = 0; ok && i < t->n; i++) {
        const struct param *a = &want.p[i], *b = &t->p[i];
        ok = !strcmp(a->name, b->name) && a->ndim == b->ndim && a->offset == b->offset &&
             a->shape[0] == b->shape[0] && a->shape[1] == b->shape[1];
    }
    params_free(&want);
    if (!ok) snprintf(err, errlen, "cannot export: the parameter table does not match the model config");
    return ok ? 0 : -1;
}

/* ---------------------------------------------------------------- weights */

/* Split ws into files: shard s holds ws[first[s] .. first[s+1]), first has n + 1 slots.
 * Greedy in table order on whole file sizes (header included): a file takes the next tensor
 * while it stays within shard_bytes, and always takes at least one. One file when everything
 * fits or shard_bytes <= 0. Returns the number of files. */
static int plan_shards(int n, const struct st_wtensor *ws, double shard_bytes, int *first) {
    int n_shards = 0;
    first[0] = 0;
    if (shard_bytes > 0 && (double)st_write_size(n, ws, st_meta) > shard_bytes) {
        for (int i = 1; i < n; i++) {
            int start = first[n_shards];
            if ((double)st_write_size(i + 1 - start, ws + start, st_meta) > shard_bytes)
                first[++n_shards] = i;
        }
    }
    first[++n_shards] = n;
    return n_shards;
}

/* Write the weights into tmp: one file, or shards of at most shard_bytes plus the index. */
static int write_weights(const char *tmp, const struct param_table *t, const float *params,
                         int dtype, double shard_bytes, char *err, size_t errlen) {
    int n = t->n, rc = -1, n_shards = 0;
    struct st_wtensor *ws = calloc((size_t)n, sizeof *ws);
    int *first = calloc((size_t)n + 1, sizeof *first); /* shard s holds [first[s], first[s+1]) */
    cJSON *index = NULL;
    char *text = NULL, path[HFX_PATH_MAX], name[64];
    if (!ws || !first) {
        snprintf(err, errlen, "%s: out of memory", tmp);
        goto out;
    }
    uint64_t total_size = 0;
    for (int i = 0; i < n; i++) {
        const struct param *p = &t->p[i];
        ws[i].name = p->name;
        ws[i].dtype = dtype == DTYPE_BF16 ? ST_BF16 : ST_F32;
        ws[i].ndim = p->ndim;
        ws[i].shape[0] = p->shape[0];
        ws[i].shape[1] = p->shape[1];
        ws[i].src = params + p->offset;
        ws[i].src_dtype = ST_F32;
        total_size += (uint64_t)p->numel * (uint64_t)st_dtype_size(ws[i].dtype);
    }
    n_shards = plan_shards(n, ws, shard_bytes, first);
    if (n_shards == 1) {
        if (join(path, sizeof path, tmp, "/model.safetensors", err, errlen) ||
            st_write(path, n, ws, st_meta, err, errlen))
            goto out;
        rc = 0;
        goto out;
    }
    if (n_shards > 99999) {
        snprintf(err, errlen, "%s: %d shards (at most 99999); raise the shard size", tmp, n_shards);
        goto out;
    }
    index = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(index, "metadata"), *map = cJSON_AddObjectToObject(index, "weight_map");
    if (!meta || !map || add_int(meta, "total_size", (int64_t)total_size)) goto oom;
    for (int s = 0; s < n_shards; s++) {
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        char rel[80];
        snprintf(rel, sizeof rel, "/%s", name);
        if (join(path, sizeof path, tmp, rel, err, errlen) ||
            st_write(path, first[s + 1] - first[s], ws + first[s], st_meta, err, errlen))
            goto out;
        for (int i = first[s]; i < first[s + 1]; i++)
            if (!cJSON_AddStringToObject(map, ws[i].name, name)) goto oom;
    }
    if (!(text = cJSON_Print(index))) goto oom;
    if (join(path, sizeof path, tmp, "/model.safetensors.index.json", err, errlen) ||
        write_text(path, text, err, errlen))
        goto out;
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "%s: out of memory", tmp);
out:
    free(text);
    cJSON_Delete(index);
    free(first);
    free(ws);
    return rc;
}

/* ---------------------------------------------------------------- the source's files */

/* What an export takes from the model directory it started from, besides the token ids. */
static const char *const src_files[] = {
    "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "tokenizer.model",
};

/* Copy src_files that src_dir has into tmp; names copied and names absent appended. */
static int copy_source_files(const char *tmp, const char *src_dir, char *copied, char *absent, size_t len,
                             char *err, size_t errlen) {
    char from[HFX_PATH_MAX], to[HFX_PATH_MAX];
    for (size_t i = 0; i < sizeof src_files / sizeof src_files[0]; i++) {
        const char *name = src_files[i];
        if (snprintf(from, sizeof from, "%s/%s", src_dir, name) >= (int)sizeof from ||
            snprintf(to, sizeof to, "%s/%s", tmp, name) >= (int)sizeof to) {
            snprintf(err, errlen, "%s/%s: path too long", src_dir, name);
            return -1;
        }
        struct stat sb;
        char *list = stat(from, &sb) == 0 ? copied : absent;
        if (list == copied && copy_file(from, to, err, errlen)) return -1;
        size_t k = strlen(list);
        snprintf(list + k, len - k, "%s%s", k ? ", " : "", name);
    }
    return 0;
}

/* ---------------------------------------------------------------- the export */

/* Put the finished tmp at dir. kind is what classify_target found there. Returns 0; -1 when
 * dir is unchanged and tmp still ours; -2 when our export is installed but the previous one,
 * moved aside, could not be removed. */
static int install(const char *tmp, const char *dir, int kind, const char *parent, char *err,
                   size_t errlen) {
    if (kind != TARGET_EXPORT) {
        if (rename(tmp, dir)) { /* rename replaces an empty directory */
            snprintf(err, errlen, "%s: cannot rename to %s: %s", tmp, dir, strerror(errno));
            return -1;
        }
        return fsync_dir(parent, err, errlen);
    }
    /* The previous export ends up at old, then is removed. */
    char old[HFX_PATH_MAX];
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        snprintf(old, sizeof old, "%s", tmp);
    } else if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
        /* No atomic exchange on this file system: move the old export aside, then ours in. */
        if (snprintf(old, sizeof old, "%s.old-%ld", dir, (long)getpid()) >= (int)sizeof old) {
            snprintf(err, errlen, "%s: path too long", dir);
            return -1;
        }
        if (rename(dir, old)) {
            snprintf(err, errlen, "%s: cannot move the previous export aside to %s: %s", dir, old,
                     strerror(errno));
            return -1;
        }
        if (rename(tmp, dir)) {
            snprintf(err, errlen, "%s: cannot rename to %s: %s", tmp, dir, strerror(errno));
            rename(old, dir);
            return -1;
        }
    } else {
        snprintf(err, errlen, "%s: cannot exchange with %s: %s", tmp, dir, strerror(errno));
        return -1;
    }
    if (fsync_dir(parent, err, errlen)) return -2;
    /* Only ever delete what is still a previous export (guards a race on the target). */
    if (!has_config(old) || remove_tree(old)) {
        snprintf(err, errlen, "%s: exported, but the previous export (now at %s) could not be removed",
                 dir, old);
        return -2;
    }
    return 0;
}

/* dir_in without trailing slashes into dir, and its parent directory (for the directory
 * fsync and the temporary directory). */
static int target_paths(const char *dir_in, char *dir, char *parent, char *err, size_t errlen) {
    size_t len = strlen(dir_in);
    while (len > 1 && dir_in[len - 1] == '/') len--;
    if (len == 0 || len >= HFX_PATH_MAX) {
        snprintf(err, errlen, "export directory \"%s\": %s", dir_in, len ? "path too long" : "empty");
        return -1;
    }
    memcpy(dir, dir_in, len);
    dir[len] = 0;
    const char *slash = strrchr(dir, '/'), *base = slash ? slash + 1 : dir;
    if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(dir, "/")) {
        snprintf(err, errlen, "%s: name the export directory itself (not . or .. or /)", dir);
        return -1;
    }
    if (!slash) snprintf(parent, HFX_PATH_MAX, ".");
    else if (slash == dir) snprintf(parent, HFX_PATH_MAX, "/");
    else snprintf(parent, HFX_PATH_MAX, "%.*s", (int)(slash - dir), dir);
    return 0;
}

int hf_export_check(const char *dir_in, char *err, size_t errlen) {
    char dir[HFX_PATH_MAX], up[HFX_PATH_MAX], probe[HFX_PATH_MAX + 64];
    int kind;
    if (target_paths(dir_in, dir, up, err, errlen) || classify_target(dir, &kind, err, errlen)) return -1;
    /* The nearest existing ancestor must take the temporary directory (and missing parents). */
    struct stat sb;
    while (lstat(up, &sb) != 0 && errno == ENOENT && strcmp(up, ".") && strcmp(up, "/")) {
        char *slash = strrchr(up, '/');
        if (!slash) snprintf(up, sizeof up, ".");
        else slash[slash == up] = 0;
    }
    snprintf(probe, sizeof probe, "%s/.ringtrain-probe-%ld", up, (long)getpid());
    if (mkdir(probe, 0755) != 0) {
        snprintf(err, errlen, "%s: cannot create a directory in %s: %s", dir, up, strerror(errno));
        return -1;
    }
    rmdir(probe);
    return 0;
}

int hf_export(const char *dir_in, const struct model_config *mc, const struct param_table *t,
              const float *params, int dtype, double shard_bytes, int64_t max_positions, const char *src_dir,
              char *note, size_t notelen, char *err, size_t errlen) {
    char dir[HFX_PATH_MAX], tmp[HFX_PATH_MAX], parent[HFX_PATH_MAX], path[HFX_PATH_MAX];
    char ids[96] = "", copied[256] = "", absent[256] = "";
    if (target_paths(dir_in, dir, parent, err, errlen)) return -1;
    if (dtype != DTYPE_BF16 && dtype != DTYPE_FP32) {
        snprintf(err, errlen, "%s: unknown export dtype %d", dir, dtype);
        return -1;
    }
    if (check_config(mc, max_positions, err, errlen) || check_table(mc, t, err, errlen)) return -1;
    int kind;
    if (classify_target(dir, &kind, err, errlen)) return -1;
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", dir, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errlen, "%s: path too long", dir);
        return -1;
    }
    cJSON *src = NULL;
    if (src_dir && (join(path, sizeof path, src_dir, "/config.json", err, errlen) ||
                    !(src = hf_read_json(path, err, errlen))))
        return -1;
    if (make_parents(dir, err, errlen)) {
        cJSON_Delete(src);
        return -1;
    }
    if (mkdir(tmp, 0755)) {
        snprintf(err, errlen, "%s: cannot create the directory: %s", tmp, strerror(errno));
        cJSON_Delete(src);
        return -1;
    }
    char *text = config_text(mc, max_positions, dtype, src, ids, sizeof ids);
    cJSON_Delete(src);
    if (!text) {
        snprintf(err, errlen, "%s: out of memory", dir);
        goto fail;
    }
    int rc = join(path, sizeof path, tmp, "/config.json", err, errlen) ||
             write_text(path, text, err, errlen);
    free(text);
    if (rc || write_weights(tmp, t, params, dtype, shard_bytes, err, errlen) ||
        (src_dir && copy_source_files(tmp, src_dir, copied, absent, sizeof copied, err, errlen)) ||
        fsync_dir(tmp, err, errlen))
        goto fail;
    rc = install(tmp, dir, kind, parent, err, errlen);
    if (rc == -1) goto fail;
    if (note && src_dir)
        snprintf(note, notelen, "from %s: %s%s%s%s%s", src_dir, *ids ? ids : "no token ids in its config.json",
                 *copied ? "; copied " : "", copied, *absent ? "; it has no " : "", absent);
    else if (note)
        snprintf(note, notelen, "not written: bos/eos/pad token ids, generation_config.json, tokenizer files "
                 "(a random-init model has none)");
    return rc ? -1 : 0;
fail:
    remove_tree(tmp); /* ours alone: created above, not yet installed */
    return -1;
}
