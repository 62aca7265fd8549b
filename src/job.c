/* job: resolve and check a parsed configuration against the world size, the HF model
 * directory and the token files. Runs on rank 0 only, before any memory is allocated. */
#include "job.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "corpus.h"
#include "data.h"
#include "hf.h"

static int fail(char *err, size_t errlen, const struct cfg *c, const char *key, const char *msg) {
    char where[CFG_PATH_MAX + 32];
    cfg_where(c, key, where, sizeof where);
    snprintf(err, errlen, "%s: %s: %s", where, key, msg);
    return -1;
}

/* A shape key given in the job must agree with the HF config. */
static int agree(const struct cfg *c, const char *key, double job, double hf, char *err, size_t errlen) {
    if (!cfg_is_set(c, key) || job == hf) return 0;
    char msg[CFG_PATH_MAX + 128];
    snprintf(msg, sizeof msg, "%g disagrees with %s/config.json (%g)", job, c->model.hf_dir, hf);
    return fail(err, errlen, c, key, msg);
}

/* An error at where_key's place in the job about key (a key that was not given has no place). */
static int fail_at(char *err, size_t errlen, const struct cfg *c, const char *where_key, const char *key,
                   const char *msg) {
    char where[CFG_PATH_MAX + 32];
    cfg_where(c, where_key, where, sizeof where);
    if (!strcmp(where, "default")) snprintf(where, sizeof where, "%s", c->path);
    snprintf(err, errlen, "%s: %s: %s", where, key, msg);
    return -1;
}

/* The model.rope_scaling keys besides type: HF's name, the field of struct rope_scaling. */
#define ROPE_FIELD(name, field) {name, offsetof(struct rope_scaling, field), sizeof(((struct rope_scaling *)0)->field)}
static const struct { const char *name; size_t off, size; } rope_fields[] = {
    ROPE_FIELD("factor", factor), ROPE_FIELD("low_freq_factor", low_freq_factor),
    ROPE_FIELD("high_freq_factor", high_freq_factor),
    ROPE_FIELD("original_max_position_embeddings", original_max_pos), ROPE_FIELD("beta_fast", beta_fast),
    ROPE_FIELD("beta_slow", beta_slow), ROPE_FIELD("mscale", mscale), ROPE_FIELD("mscale_all_dim", mscale_all_dim),
    ROPE_FIELD("attention_factor", attention_factor), ROPE_FIELD("truncate", truncate),
};
#define N_ROPE_FIELDS (sizeof rope_fields / sizeof rope_fields[0])

/* Whether the job gives any model.rope_scaling key. */
static int rope_keys_given(const struct cfg *c) {
    char key[96];
    if (cfg_is_set(c, "model.rope_scaling.type")) return 1;
    for (size_t i = 0; i < N_ROPE_FIELDS; i++) {
        snprintf(key, sizeof key, "model.rope_scaling.%s", rope_fields[i].name);
        if (cfg_is_set(c, key)) return 1;
    }
    return 0;
}

/* The RoPE scaling of the job's model.rope_scaling keys into r: the type's fields only (the
 * others as rope_defaults leaves them). hf_max_pos: an HF config's max_position_embeddings,
 * which transformers takes for a missing original_max_position_embeddings (0: none). */
static int rope_from_job(const struct cfg *c, int64_t hf_max_pos, struct rope_scaling *r, char *err,
                         size_t errlen) {
    const struct rope_scaling *in = &c->model.rope;
    const int type = in->type;
    const char *tkey = "model.rope_scaling.type", *tname = rope_type_name(type);
    char key[96], msg[256];
    rope_defaults(r, type);
    for (size_t i = 0; i < N_ROPE_FIELDS; i++) {
        const char *f = rope_fields[i].name;
        snprintf(key, sizeof key, "model.rope_scaling.%s", f);
        int given = cfg_is_set(c, key), used = rope_uses(type, f);
        if (given && !cfg_is_set(c, tkey))
            return fail(err, errlen, c, key, "needs model.rope_scaling.type (linear, llama3, dynamic or yarn)");
        if (given && !used) {
            snprintf(msg, sizeof msg, "is not used by model.rope_scaling.type %s", tname);
            return fail(err, errlen, c, key, msg);
        }
        if (!used) continue;
        int optional = type == ROPE_YARN && strcmp(f, "factor") && strcmp(f, "original_max_position_embeddings");
        if (!given && !strcmp(f, "original_max_position_embeddings") && hf_max_pos > 0) {
            r->original_max_pos = hf_max_pos;
            continue;
        }
        if (!given && !optional) {
            snprintf(msg, sizeof msg, "required by model.rope_scaling.type %s%s", tname,
                     strcmp(f, "original_max_position_embeddings") ? "" :
                     " (the context length the model was pretrained at)");
            return fail_at(err, errlen, c, tkey, key, msg);
        }
        if (given) memcpy((char *)r + rope_fields[i].off, (const char *)in + rope_fields[i].off, rope_fields[i].size);
    }
    const char *field;
    if (rope_check(r, &field, msg, sizeof msg)) {
        snprintf(key, sizeof key, "model.rope_scaling.%s", field);
        return fail_at(err, errlen, c, cfg_is_set(c, key) ? key : tkey, key, msg);
    }
    return 0;
}

/* RoPE of the model: the job's model.rope_theta and model.rope_scaling keys (over an HF
 * config's when given), the sequence length dynamic NTK is computed for, and the start-up
 * line saying what was used and where it came from. */
static int resolve_rope(struct job *j, const struct cfg *c, char *err, size_t errlen) {
    struct model_config *mc = &j->mc;
    const int hf = c->model.init == INIT_HF;
    char from_theta[96] = "", from_scaling[300] = "", was[200];
    if (!hf || cfg_is_set(c, "model.rope_theta")) {
        if (hf)
            snprintf(from_theta, sizeof from_theta, " (model.rope_theta, over config.json's %g)", mc->rope_theta);
        mc->rope_theta = c->model.rope_theta;
    }
    if (!hf || rope_keys_given(c)) {
        struct rope_scaling r;
        if (rope_from_job(c, hf ? mc->max_positions : 0, &r, err, errlen)) return -1;
        if (hf) {
            rope_describe(&mc->rope, was, sizeof was);
            snprintf(from_scaling, sizeof from_scaling, " (model.rope_scaling, over config.json's %s)", was);
        }
        mc->rope = r;
    }
    if (mc->rope.type == ROPE_DYNAMIC && mc->head_dim <= 2) /* its exponent is D / (D - 2) */
        return fail(err, errlen, c, hf && !rope_keys_given(c) ? "model.init" : "model.rope_scaling.type",
                    "dynamic RoPE needs a head dim > 2");
    if (mc->rope.type == ROPE_DYNAMIC) mc->rope.seq_len = c->data.seq_len;
    char desc[200];
    double attn, *inv = calloc((size_t)mc->head_dim / 2, sizeof *inv);
    if (!inv) return fail(err, errlen, c, "model.init", "out of memory");
    rope_frequencies(&mc->rope, mc->rope_theta, mc->head_dim, inv, &attn);
    free(inv);
    rope_describe(&mc->rope, desc, sizeof desc);
    snprintf(j->rope_note, sizeof j->rope_note, "theta %g%s, scaling %s%s, attention factor %.6g", mc->rope_theta,
             from_theta, desc, from_scaling, attn);
    return 0;
}

static int resolve_model(struct job *j, const struct cfg *c, char *err, size_t errlen) {
    struct model_config *mc = &j->mc;
    memset(mc, 0, sizeof *mc);
    if (c->model.init == INIT_HF) {
        if (hf_read_config(c->model.hf_dir, mc, err, errlen)) return -1;
        if (agree(c, "model.vocab_size", c->model.vocab_size, mc->vocab_size, err, errlen) ||
            agree(c, "model.dim", c->model.dim, mc->dim, err, errlen) ||
            agree(c, "model.n_layers", c->model.n_layers, mc->n_layers, err, errlen) ||
            agree(c, "model.n_heads", c->model.n_heads, mc->n_heads, err, errlen) ||
            agree(c, "model.n_kv_heads", c->model.n_kv_heads, mc->n_kv_heads, err, errlen) ||
            agree(c, "model.ffn_dim", c->model.ffn_dim, mc->ffn_dim, err, errlen) ||
            agree(c, "model.norm_eps", c->model.norm_eps, mc->norm_eps, err, errlen) ||
            agree(c, "model.tie_embeddings", c->model.tie_embeddings, mc->tie_embeddings, err, errlen))
            return -1;
    } else {
        mc->vocab_size = c->model.vocab_size;
        mc->dim = c->model.dim;
        mc->n_layers = c->model.n_layers;
        mc->n_heads = c->model.n_heads;
        mc->n_kv_heads = c->model.n_kv_heads;
        mc->head_dim = c->model.dim / c->model.n_heads;
        mc->ffn_dim = c->model.ffn_dim;
        mc->norm_eps = c->model.norm_eps;
        mc->tie_embeddings = c->model.tie_embeddings;
    }
    if (resolve_rope(j, c, err, errlen)) return -1;
    struct param_table pt;
    char msg[256];
    if (params_init(&pt, mc, msg, sizeof msg)) return fail(err, errlen, c, "model.init", msg);
    int rc = c->model.init == INIT_HF ? hf_check_weights(c->model.hf_dir, &pt, err, errlen) : 0;
    params_free(&pt);
    return rc;
}

/* The token files of key (data.train or data.eval): each one a valid .npy, together at
 * least one window long, every token below the vocabulary size. Errors name where the key
 * was set, the key, and the file (and the index within it). */
static int check_tokens(const struct cfg *c, const char *key, const char *paths, int64_t L, int vocab,
                        char *err, size_t errlen) {
    struct data_source ds;
    char msg[2 * NPY_PATH_MAX + 512];
    int rc = data_open(&ds, DATA_NPY, paths, L, vocab, 0, 0, msg, sizeof msg);
    if (rc == 0) {
        rc = corpus_check_tokens(&ds.corpus, vocab, msg, sizeof msg);
        data_close(&ds);
    }
    return rc ? fail(err, errlen, c, key, msg) : 0;
}

static int resolve_parallel(struct job *j, const struct cfg *c, int world, char *err, size_t errlen) {
    char msg[256];
    j->cp = c->parallel.cp ? c->parallel.cp : world;
    if (world % j->cp) {
        snprintf(msg, sizeof msg, "%d does not divide the %d ranks", j->cp, world);
        return fail(err, errlen, c, "parallel.cp", msg);
    }
    j->dp = world / j->cp;
    int64_t chunks = c->parallel.attention == RING_ZIGZAG ? 2 * (int64_t)j->cp : j->cp;
    if (c->data.seq_len % chunks) {
        snprintf(msg, sizeof msg, "%lld is not a multiple of %s%d (cp = %d)", (long long)c->data.seq_len,
                 c->parallel.attention == RING_ZIGZAG ? "2 x cp = " : "cp = ", (int)chunks, j->cp);
        return fail(err, errlen, c, "data.seq_len", msg);
    }
    /* The model's buffers are indexed by int tokens per rank (the backend table's T). */
    if (c->data.seq_len / j->cp > INT_MAX) {
        snprintf(msg, sizeof msg, "%lld tokens per rank (data.seq_len / cp %d) exceed the %d one rank can hold; "
                 "use more ranks in the ring (parallel.cp)", (long long)(c->data.seq_len / j->cp), j->cp, INT_MAX);
        return fail(err, errlen, c, "data.seq_len", msg);
    }
    if (c->train.seqs_per_step % j->dp) {
        snprintf(msg, sizeof msg, "%d is not a multiple of the %d data-parallel groups (%d ranks / cp %d)",
                 c->train.seqs_per_step, j->dp, world, j->cp);
        return fail(err, errlen, c, "train.seqs_per_step", msg);
    }
    return 0;
}

/* Keys whose feature needs another backend or a later version: refuse rather than ignore. */
static int refuse_unavailable(const struct cfg *c, char *err, size_t errlen) {
#ifndef RT_HAVE_CUDA
    if (c->device.backend == BACKEND_CUDA)
        return fail(err, errlen, c, "device.backend", "this build has no CUDA backend (use cpu)");
#endif
    if (c->device.attention == ATTN_CUDNN && c->device.backend != BACKEND_CUDA)
        return fail(err, errlen, c, "device.attention", "cudnn needs device.backend: cuda");
    return 0;
}

int job_resolve(struct job *j, const struct cfg *c, int world, char *err, size_t errlen) {
    memset(j, 0, sizeof *j);
    j->cfg = *c;
    if (refuse_unavailable(c, err, errlen) || resolve_parallel(j, c, world, err, errlen) ||
        resolve_model(j, c, err, errlen))
        return -1;
    if (c->data.synthetic == SYNTHETIC_NONE &&
        check_tokens(c, "data.train", c->data.train, c->data.seq_len, j->mc.vocab_size, err, errlen))
        return -1;
    if (c->data.eval[0] &&
        check_tokens(c, "data.eval", c->data.eval, c->data.seq_len, j->mc.vocab_size, err, errlen))
        return -1;
    return 0;
}

uint64_t job_model_hash(const struct job *j) { return XXH3_64bits(&j->mc, sizeof j->mc); }

/* path made canonical into out (CFG_PATH_MAX): realpath of the path, else of its directory
 * (a file yet to exist, a pattern) followed by its last component, else the path as it is. */
static void canonical_path(const char *path, char *out) {
    char *real = realpath(path, NULL), dir[CFG_PATH_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + (slash == path) : 1, slash ? path : ".");
    char *real_dir = real ? NULL : realpath(dir, NULL);
    if (real) snprintf(out, CFG_PATH_MAX, "%s", real);
    else if (real_dir) snprintf(out, CFG_PATH_MAX, "%s/%s", real_dir, slash ? slash + 1 : path);
    else snprintf(out, CFG_PATH_MAX, "%s", path);
    free(real);
    free(real_dir);
}

/* Every path of a path list (one per line, CFG_PATHLIST_MAX bytes) made canonical, in place. */
static void canonical_list(char *list) {
    char out[CFG_PATHLIST_MAX] = "", one[CFG_PATH_MAX], canon[CFG_PATH_MAX];
    size_t w = 0;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, "\n");
        snprintf(one, sizeof one, "%.*s", (int)n, p);
        canonical_path(one, canon);
        w += (size_t)snprintf(out + w, w < sizeof out ? sizeof out - w : 0, "%s%s", w ? "\n" : "", canon);
        if (w >= sizeof out) break;
        p += n + (p[n] == '\n');
    }
    memset(list, 0, CFG_PATHLIST_MAX);
    memcpy(list, out, strnlen(out, sizeof out - 1));
}

uint64_t job_run_hash(const struct job *j) {
    struct cfg c = j->cfg; /* a byte copy: padding as cfg_defaults zeroed it */
    /* Paths as the files they name, not as spelled: relative ones were resolved against the
     * job file's directory, so job.yaml, ./job.yaml and /abs/job.yaml spell them differently. */
    canonical_list(c.data.train);
    canonical_list(c.data.eval);
    char hf[CFG_PATH_MAX];
    if (c.model.hf_dir[0]) {
        canonical_path(c.model.hf_dir, hf);
        memset(c.model.hf_dir, 0, sizeof c.model.hf_dir);
        memcpy(c.model.hf_dir, hf, strlen(hf));
    }
    memset(c.path, 0, sizeof c.path);
    memset(c.origin, 0, sizeof c.origin);
    memset(&c.parallel, 0, sizeof c.parallel);
    memset(&c.memory, 0, sizeof c.memory);
    memset(&c.device, 0, sizeof c.device);
    memset(&c.checkpoint, 0, sizeof c.checkpoint);
    memset(&c.log, 0, sizeof c.log);
    memset(&c.export_, 0, sizeof c.export_);
    memset(&c.eval, 0, sizeof c.eval);
    c.train.steps = 0;
    c.train.max_bad_steps = 0;
    return XXH3_64bits(&c, sizeof c) ^ job_model_hash(j);
}
