/* config: the job file. One schema table (key, type, bounds, default, doc) drives
 * parsing (libyaml), validation, --set overrides, --help-config and docs/config.md.
 * struct cfg is plain old data (no pointers) so rank 0 can parse it and MPI_Bcast it
 * as bytes to every other rank. */
#ifndef RT_CONFIG_H
#define RT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rope.h"

#define CFG_PATH_MAX 1024
#define CFG_MAX_KEYS 96
/* A list of paths (data.train, data.eval): the paths one per line, each resolved and
 * shorter than CFG_PATH_MAX; a directory in it stands for its *.npy files (corpus.c). */
#define CFG_PATHLIST_MAX (16 * 1024)

enum cfg_init      { INIT_RANDOM, INIT_HF };
enum cfg_sampling  { SAMPLING_SEQUENTIAL, SAMPLING_RANDOM };
enum cfg_synthetic { SYNTHETIC_NONE, SYNTHETIC_COPY };
enum cfg_schedule  { SCHEDULE_CONSTANT, SCHEDULE_COSINE };
enum cfg_ring      { RING_ZIGZAG, RING_PLAIN };
enum cfg_transport { TRANSPORT_AUTO, TRANSPORT_NCCL, TRANSPORT_MPI };
enum cfg_ckpting   { CKPT_NONE, CKPT_FULL, CKPT_SELECTIVE, CKPT_AUTO };
enum cfg_offload   { OFFLOAD_NONE, OFFLOAD_AUTO, OFFLOAD_ALL };
enum cfg_optimizer { OPTIMIZER_DEVICE, OPTIMIZER_HOST };
enum cfg_backend   { BACKEND_CPU, BACKEND_CUDA };
enum cfg_attn_impl { ATTN_AUTO, ATTN_CUDNN, ATTN_NATIVE };
enum cfg_bind      { BIND_AUTO, BIND_NONE };
enum cfg_dtype     { DTYPE_BF16, DTYPE_FP32 };

/* Where a key's value came from: the job file (file:line:col), a --set, or the default. */
enum cfg_origin_kind { ORIGIN_DEFAULT = 0, ORIGIN_FILE, ORIGIN_SET };
struct cfg_origin {
    int kind;       /* enum cfg_origin_kind */
    int line, col;  /* 1-based, for ORIGIN_FILE */
};

struct cfg_model {
    int      init;                 /* enum cfg_init */
    char     hf_dir[CFG_PATH_MAX]; /* the <dir> of "hf:<dir>", resolved relative to the job file */
    uint64_t seed;
    int      vocab_size, dim, n_layers, n_heads, n_kv_heads, ffn_dim;
    double   norm_eps, rope_theta;
    int      tie_embeddings;       /* 0 or 1 */
    struct rope_scaling rope;      /* model.rope_scaling.*; seq_len unused (job.c sets the model's) */
};

struct cfg_data {
    char     train[CFG_PATHLIST_MAX]; /* token files or directories, one per line, resolved
                                         relative to the job file; read as one stream */
    char     eval[CFG_PATHLIST_MAX];  /* the same for evaluation; "" when not set */
    int64_t  seq_len;
    int      sampling;             /* enum cfg_sampling */
    uint64_t seed;
    int      synthetic;            /* enum cfg_synthetic: a generated task instead of data.train */
};

struct cfg_train {
    int64_t steps;
    int     seqs_per_step;
    double  lr, min_lr;
    int     schedule;              /* enum cfg_schedule */
    int64_t warmup_steps;
    double  beta1, beta2;          /* betas: [b1, b2] */
    double  eps, weight_decay, grad_clip;
    int     max_bad_steps;
};

struct cfg_parallel {
    int cp;                        /* 0 = the world size (resolved at start-up) */
    int attention;                 /* enum cfg_ring */
    int transport;                 /* enum cfg_transport */
    int zero;                      /* ZeRO stage 0..3 (pstore.h) */
    double timeout_s;              /* longest wait for other ranks, of any operation */
};

struct cfg_memory {
    int checkpointing;             /* enum cfg_ckpting */
    int optimizer;                 /* enum cfg_optimizer: where master weights and moments live */
    int offload;                   /* enum cfg_offload */
    double reserve_gib;            /* GPU memory memory.offload: auto leaves free */
    double host_reserve_gib;       /* host memory left free when the budget is the physical memory */
    int tile_tokens;               /* tokens per tile of the token-wise layer work; 0 = auto */
    int attention_block_tokens;    /* query rows and keys per attention call; 0 = auto */
};

struct cfg_device {
    int backend;                   /* enum cfg_backend */
    int attention;                 /* enum cfg_attn_impl */
    int bind;                      /* enum cfg_bind: cores and NUMA node of each rank */
    double memory_gib;             /* one GPU's memory for --plan; 0 = the GPU's (a run measures it) */
    double host_memory_gib;        /* one node's host memory for --plan; 0 = this machine's */
    int    gpus_per_node;          /* --plan: ranks (one GPU each) per node, for host memory per node */
    double peak_tflops;            /* MFU's denominator per GPU; 0 = from the device name (none on the cpu) */
};

struct cfg_checkpoint {
    char    dir[CFG_PATH_MAX];     /* "" = no checkpoints */
    int64_t every;
    int     keep;
    int     fresh_start;           /* start from step 0 when checkpoints exist and none verifies */
};

struct cfg_log {
    int64_t every;
    char    metrics[CFG_PATH_MAX]; /* "" = no metrics file */
    int     profile;               /* time every kernel by category (device backends) */
    int64_t eval_every;            /* evaluate data.eval every this many steps; 0 = never */
    int64_t eval_windows;          /* windows of data.eval per evaluation during training */
};

struct cfg_eval {
    int      buckets;              /* --eval: position buckets of the loss by context length */
    char     out[CFG_PATH_MAX];    /* directory of the --eval and --passkey CSV files */
    int      passkey_lengths;      /* --passkey: context lengths, evenly spaced up to data.seq_len */
    int      passkey_depths;       /* needle depths, evenly spaced over [0, 1] */
    int      passkey_digits;       /* digits of a passkey */
    int      passkey_trials;       /* passkeys per cell of the grid */
    uint64_t passkey_seed;         /* the passkeys' digits */
    char     passkey_ids[CFG_PATH_MAX]; /* token id spec (scripts/passkey_ids.py); "" = the model's own ids */
};

struct cfg_export {
    char   dir[CFG_PATH_MAX];      /* "" = no export */
    int    dtype;                  /* enum cfg_dtype */
    double shard_gib;
};

struct cfg {
    char                  path[CFG_PATH_MAX];   /* the job file, for messages */
    struct cfg_model      model;
    struct cfg_data       data;
    struct cfg_train      train;
    struct cfg_parallel   parallel;
    struct cfg_memory     memory;
    struct cfg_device     device;
    struct cfg_checkpoint checkpoint;
    struct cfg_log        log;
    struct cfg_export     export_;  /* "export" in the job file */
    struct cfg_eval       eval;
    struct cfg_origin     origin[CFG_MAX_KEYS]; /* indexed like the schema table */
};

/* Fill every key with its default; origin = ORIGIN_DEFAULT. */
void cfg_defaults(struct cfg *c);

/* Parse a job file over the defaults. On error write one line
 * "path:line:col: key: what" (no trailing newline) into err and return -1. */
int cfg_load_file(struct cfg *c, const char *path, char *err, size_t errlen);

/* Apply one "key=value" override (value in YAML scalar/flow syntax, e.g. "[0.9, 0.95]").
 * Errors: "--set key: what". */
int cfg_apply_set(struct cfg *c, const char *kv, char *err, size_t errlen);

/* Cross-key checks that need no other file (min_lr <= lr, warmup <= steps, ...). */
int cfg_validate(const struct cfg *c, char *err, size_t errlen);

/* "job.yaml:7:9" / "--set" / "default" for a key; for error messages of later checks. */
void cfg_where(const struct cfg *c, const char *key, char *buf, size_t buflen);
/* The name of choice `value` of an enum key ("memory.checkpointing", CKPT_AUTO -> "auto"),
 * in buf; the number itself for a key that is no enum or a value out of its range. */
const char *cfg_choice(const char *key, int value, char *buf, size_t buflen);
/* 1 if the key was given in the job file or by --set. */
int cfg_is_set(const struct cfg *c, const char *key);

/* --help-config: the schema as text ("text") or as the markdown of docs/config.md ("markdown"). */
void cfg_print_help(FILE *f, const char *format);
/* The effective configuration as YAML (start-up log, checkpoints). */
void cfg_print(FILE *f, const struct cfg *c);

#endif
