/* test_config: the job-file loader against good and bad files (test/config/ and small
 * files written to a tmp dir), --set, cross-key checks, the cfg_print round trip, and
 * docs/config.md against the schema. Run from the repository root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_schema.h" /* the table, to check that docs/config.md names every key */
#include "testutil.h"

static char err[2048];
static const char *tmp;

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf && (n += fread(buf + n, 1, cap - n, f)) == cap) buf = realloc(buf, (cap *= 2) + 1);
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* 1-based line and column where needle (unique) starts in the file. */
static void find_pos(const char *path, const char *needle, int *line, int *col) {
    char *text = slurp(path, NULL), *at = text ? strstr(text, needle) : NULL;
    *line = *col = 0;
    if (!at) return;
    *line = 1, *col = 1;
    for (char *p = text; p < at; p++) {
        if (*p == '\n') (*line)++, *col = 1;
        else (*col)++;
    }
    free(text);
}

static int starts_with(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

static void test_defaults(void) {
    struct cfg c;
    cfg_defaults(&c);
    CHECK(c.model.init == INIT_RANDOM && c.model.hf_dir[0] == '\0');
    CHECK(c.model.seed == 1234);
    CHECK(c.model.vocab_size == 256 && c.model.dim == 64 && c.model.n_layers == 2);
    CHECK(c.model.n_heads == 4 && c.model.n_kv_heads == 4 && c.model.ffn_dim == 176);
    CHECK_REL(c.model.norm_eps, 1e-5, 0);
    CHECK_REL(c.model.rope_theta, 10000, 0);
    CHECK(c.model.tie_embeddings == 0);
    CHECK(c.data.train[0] == '\0' && c.data.eval[0] == '\0');
    CHECK(c.data.seq_len == 256 && c.data.sampling == SAMPLING_SEQUENTIAL && c.data.seed == 0);
    CHECK(c.train.steps == 100 && c.train.seqs_per_step == 1);
    CHECK_REL(c.train.lr, 3e-4, 0);
    CHECK(c.train.min_lr == 0);
    CHECK(c.train.schedule == SCHEDULE_COSINE && c.train.warmup_steps == 0);
    CHECK_REL(c.train.beta1, 0.9, 0);
    CHECK_REL(c.train.beta2, 0.95, 0);
    CHECK_REL(c.train.eps, 1e-8, 0);
    CHECK_REL(c.train.weight_decay, 0.1, 0);
    CHECK_REL(c.train.grad_clip, 1.0, 0);
    CHECK(c.parallel.cp == 0 && c.parallel.attention == RING_ZIGZAG);
    CHECK(c.memory.checkpointing == CKPT_SELECTIVE && c.memory.offload == OFFLOAD_AUTO);
    CHECK(c.device.backend == BACKEND_CPU && c.device.attention == ATTN_AUTO && c.device.bind == BIND_AUTO);
    CHECK(c.checkpoint.dir[0] == '\0' && c.checkpoint.every == 0 && c.checkpoint.keep == 2);
    CHECK(c.log.every == 1 && c.log.metrics[0] == '\0');
    CHECK(!cfg_is_set(&c, "train.lr"));
    char where[64];
    cfg_where(&c, "train.lr", where, sizeof where);
    CHECK(!strcmp(where, "default"));
    /* no job file and no data.train */
    CHECK(cfg_validate(&c, err, sizeof err) == -1 && !strcmp(err, "data.train: required key is missing"));
}

static void test_full_file(void) {
    const char *path = "test/config/full.yaml";
    struct cfg c;
    cfg_defaults(&c);
    CHECK(cfg_load_file(&c, path, err, sizeof err) == 0);
    if (tu_failures) fprintf(stderr, "  %s\n", err);
    CHECK(!strcmp(c.path, path));
    CHECK(c.model.init == INIT_HF && !strcmp(c.model.hf_dir, "test/config/models/tiny"));
    CHECK(c.model.seed == 42);
    CHECK(c.model.vocab_size == 32000 && c.model.dim == 512 && c.model.n_layers == 8);
    CHECK(c.model.n_heads == 8 && c.model.n_kv_heads == 2 && c.model.ffn_dim == 1376);
    CHECK_REL(c.model.norm_eps, 1e-6, 0);
    CHECK_REL(c.model.rope_theta, 500000, 0);
    CHECK(c.model.tie_embeddings == 1);
    CHECK(!strcmp(c.data.train, "test/config/tokens/train.bin"));
    CHECK(!strcmp(c.data.eval, "/data/eval.bin"));
    CHECK(c.data.seq_len == 4096 && c.data.sampling == SAMPLING_RANDOM);
    CHECK(c.data.seed == UINT64_MAX);
    CHECK(c.train.steps == 1000 && c.train.seqs_per_step == 8);
    CHECK_REL(c.train.lr, 6e-4, 0);
    CHECK_REL(c.train.min_lr, 6e-5, 0);
    CHECK(c.train.schedule == SCHEDULE_CONSTANT && c.train.warmup_steps == 50);
    CHECK_REL(c.train.beta1, 0.85, 0);
    CHECK_REL(c.train.beta2, 0.99, 0);
    CHECK_REL(c.train.eps, 1e-10, 0);
    CHECK_REL(c.train.weight_decay, 0.05, 0);
    CHECK(c.train.grad_clip == 0);
    CHECK(c.parallel.cp == 4 && c.parallel.attention == RING_PLAIN);
    CHECK(c.memory.checkpointing == CKPT_FULL && c.memory.offload == OFFLOAD_ALL);
    CHECK(c.device.backend == BACKEND_CUDA && c.device.attention == ATTN_CUDNN);
    CHECK(!strcmp(c.checkpoint.dir, "test/config/ckpt"));
    CHECK(c.checkpoint.every == 100 && c.checkpoint.keep == 5);
    CHECK(c.log.every == 10 && !strcmp(c.log.metrics, "test/config/metrics.jsonl"));
    CHECK(cfg_validate(&c, err, sizeof err) == 0);

    /* origins: the value's line and column */
    int line, col;
    char where[CFG_PATH_MAX + 32], want[CFG_PATH_MAX + 32];
    find_pos(path, "512", &line, &col);
    CHECK(line > 1 && c.origin[3].kind == ORIGIN_FILE && c.origin[3].line == line && c.origin[3].col == col);
    cfg_where(&c, "model.dim", where, sizeof where);
    snprintf(want, sizeof want, "%s:%d:%d", path, line, col);
    CHECK(!strcmp(where, want));
    find_pos(path, "[0.85", &line, &col);
    cfg_where(&c, "train.betas", where, sizeof where);
    snprintf(want, sizeof want, "%s:%d:%d", path, line, col);
    CHECK(line > 1 && !strcmp(where, want));
    CHECK(cfg_is_set(&c, "train.lr") && cfg_is_set(&c, "log.metrics") && !cfg_is_set(&c, "no.such"));
    cfg_where(&c, "no.such", where, sizeof where);
    CHECK(!strcmp(where, "unknown key"));
}

static void test_minimal_and_flow(void) {
    struct cfg c, d;
    cfg_defaults(&c);
    cfg_defaults(&d);
    CHECK(cfg_load_file(&c, "test/config/minimal.yaml", err, sizeof err) == 0);
    CHECK(!strcmp(c.data.train, "test/config/tokens.bin"));
    CHECK(!cfg_is_set(&c, "model.dim") && cfg_is_set(&c, "data.train"));
    CHECK(cfg_validate(&c, err, sizeof err) == 0);
    /* apart from data.train, all of it is the defaults */
    memset(c.data.train, 0, sizeof c.data.train);
    memset(c.path, 0, sizeof c.path);
    memset(c.origin, 0, sizeof c.origin);
    CHECK(!memcmp(&c, &d, sizeof c));

    /* flow style, an empty section, a path without a directory part, a comment-only section */
    char path[600];
    snprintf(path, sizeof path, "%s/flow.yaml", tmp);
    const char *y = "data: {train: /t.bin}\ntrain: {lr: 0.5, betas: [0.1, 0.2]}\nlog:\n  # every: 3\nmodel: {}\n";
    tu_write_file(path, y, strlen(y));
    cfg_defaults(&c);
    CHECK(cfg_load_file(&c, path, err, sizeof err) == 0);
    CHECK(!strcmp(c.data.train, "/t.bin"));
    CHECK_REL(c.train.lr, 0.5, 0);
    CHECK_REL(c.train.beta1, 0.1, 0);
    CHECK_REL(c.train.beta2, 0.2, 0);
    CHECK(c.log.every == 1);
    CHECK(cfg_validate(&c, err, sizeof err) == 0);
}

static void test_set(void) {
    struct cfg c;
    char where[64];
    cfg_defaults(&c);
    CHECK(cfg_load_file(&c, "test/config/minimal.yaml", err, sizeof err) == 0);
    CHECK(cfg_apply_set(&c, "model.dim=128", err, sizeof err) == 0 && c.model.dim == 128);
    CHECK(cfg_apply_set(&c, "parallel.attention=ring", err, sizeof err) == 0 && c.parallel.attention == RING_PLAIN);
    CHECK(cfg_apply_set(&c, "train.betas=[0.8,0.99]", err, sizeof err) == 0);
    CHECK_REL(c.train.beta1, 0.8, 0);
    CHECK_REL(c.train.beta2, 0.99, 0);
    CHECK(cfg_apply_set(&c, "model.init=hf:some/dir", err, sizeof err) == 0);
    CHECK(c.model.init == INIT_HF && !strcmp(c.model.hf_dir, "some/dir")); /* relative to cwd */
    CHECK(cfg_apply_set(&c, "data.train=other.bin", err, sizeof err) == 0 && !strcmp(c.data.train, "other.bin"));
    CHECK(cfg_apply_set(&c, "train.lr=1e-3", err, sizeof err) == 0);
    CHECK_REL(c.train.lr, 1e-3, 0);
    CHECK(cfg_apply_set(&c, "memory.offload=none", err, sizeof err) == 0 && c.memory.offload == OFFLOAD_NONE);
    CHECK(cfg_apply_set(&c, "data.seq_len=1024", err, sizeof err) == 0 && c.data.seq_len == 1024);
    CHECK(cfg_apply_set(&c, "data.eval=\"\"", err, sizeof err) == 0 && c.data.eval[0] == '\0');
    CHECK(cfg_apply_set(&c, "model.init=random", err, sizeof err) == 0 && c.model.init == INIT_RANDOM &&
          c.model.hf_dir[0] == '\0');
    cfg_where(&c, "model.dim", where, sizeof where);
    CHECK(!strcmp(where, "--set") && c.origin[3].kind == ORIGIN_SET && cfg_is_set(&c, "model.dim"));
    CHECK(cfg_validate(&c, err, sizeof err) == 0);

    static const struct { const char *kv, *want; } bad[] = {
        {"train.lr", "--set wants key=value, got \"train.lr\""},
        {"=5", "--set wants key=value, got \"=5\""},
        {"train.lrr=1", "--set train.lrr: unknown key (did you mean train.lr?)"},
        {"train.lr=fast", "--set train.lr: expected a number > 0, got \"fast\""},
        {"train.steps=0", "--set train.steps: expected an integer in [1, 1e+12], got 0"},
        {"train.betas=[0.9]", "--set train.betas: expected a list of 2 numbers in [0, 1), got a list of 1 item"},
        {"parallel.attention=zz", "--set parallel.attention: expected one of zigzag | ring, got \"zz\""},
        {"data.eval=", "--set data.eval: expected a path, got null"},
        {"model.init=\"hf:\"", "--set model.init: expected random or hf:<dir>, got \"hf:\""},
        {"model.init=hf:", "--set model.init: expected random or hf:<dir>, got a mapping"},
        {"train.betas=[0.9", "--set train.betas: malformed YAML: "},
        {"train.lr=1\n---\n2", "--set train.lr: more than one YAML document"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cfg before = c;
        int rc = cfg_apply_set(&c, bad[i].kv, err, sizeof err);
        if (!CHECK(rc == -1 && starts_with(err, bad[i].want)))
            fprintf(stderr, "  --set %s: got \"%s\", want \"%s\"\n", bad[i].kv, err, bad[i].want);
        CHECK(!memcmp(&before, &c, sizeof c)); /* a failed --set changes nothing */
    }
}

/* print -> load -> print: the same text, the same struct */
static void test_round_trip(void) {
    struct cfg a, b, c;
    char p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/print1.yaml", tmp);
    snprintf(p2, sizeof p2, "%s/print2.yaml", tmp);
    cfg_defaults(&a);
    CHECK(cfg_load_file(&a, "test/config/full.yaml", err, sizeof err) == 0);
    CHECK(cfg_apply_set(&a, "log.metrics=\"odd \\\"name\\\\\\\".jsonl\"", err, sizeof err) == 0);
    CHECK(!strcmp(a.log.metrics, "odd \"name\\\".jsonl"));
    CHECK(cfg_apply_set(&a, "train.lr=0.1", err, sizeof err) == 0);
    FILE *f = fopen(p1, "w");
    cfg_print(f, &a);
    fclose(f);
    cfg_defaults(&b);
    CHECK(cfg_load_file(&b, p1, err, sizeof err) == 0);
    if (tu_failures) fprintf(stderr, "  %s\n", err);
    f = fopen(p2, "w");
    cfg_print(f, &b);
    fclose(f);
    char *t1 = slurp(p1, NULL), *t2 = slurp(p2, NULL);
    CHECK(t1 && t2 && !strcmp(t1, t2));
    CHECK(t1 && strstr(t1, "train:\n  steps: 1000\n") && strstr(t1, "  lr: 0.1\n") && strstr(t1, "  betas: [0.85, 0.99]\n"));
    free(t1);
    free(t2);
    /* the numbers and enums are exact; relative paths came back absolute */
    CHECK(!memcmp(&a.train, &b.train, sizeof a.train) && !memcmp(&a.parallel, &b.parallel, sizeof a.parallel));
    CHECK(!memcmp(&a.memory, &b.memory, sizeof a.memory) && !memcmp(&a.device, &b.device, sizeof a.device));
    CHECK(a.model.seed == b.model.seed && a.model.dim == b.model.dim && a.model.norm_eps == b.model.norm_eps);
    CHECK(a.data.seed == b.data.seed && a.data.seq_len == b.data.seq_len && a.log.every == b.log.every);
    char cwd[512], want[CFG_PATHLIST_MAX + 600];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(want, sizeof want, "%s/%s", cwd, a.data.train);
    CHECK(!strcmp(b.data.train, want));
    snprintf(want, sizeof want, "%s/%s", cwd, a.model.hf_dir);
    CHECK(b.model.init == INIT_HF && !strcmp(b.model.hf_dir, want));
    CHECK(!strcmp(b.data.eval, "/data/eval.bin"));
    snprintf(want, sizeof want, "%s/%s", cwd, a.log.metrics);
    CHECK(!strcmp(b.log.metrics, want));
    /* once absolute, a second load gives the same bytes */
    cfg_defaults(&c);
    CHECK(cfg_load_file(&c, p2, err, sizeof err) == 0);
    memcpy(c.path, b.path, sizeof c.path);
    memcpy(c.origin, b.origin, sizeof c.origin);
    CHECK(!memcmp(&b, &c, sizeof b));
}

/* data.train / data.eval as a list: one resolved path a line; --set; printed as a flow
 * list that reads back; too many bytes in all is an error naming the item. */
static void test_pathlist(void) {
    struct cfg c, d;
    char path[600], want[3 * 600 + 64], p1[600];
    snprintf(path, sizeof path, "%s/list.yaml", tmp);
    const char *y = "data:\n  train:\n    - a.npy\n    - /abs/b.npy\n    - sub/\n  eval: [e1.npy, e2.npy]\n";
    tu_write_file(path, y, strlen(y));
    cfg_defaults(&c);
    CHECK(cfg_load_file(&c, path, err, sizeof err) == 0);
    snprintf(want, sizeof want, "%s/a.npy\n/abs/b.npy\n%s/sub/", tmp, tmp);
    if (!CHECK(!strcmp(c.data.train, want))) fprintf(stderr, "  got \"%s\"\n", c.data.train);
    snprintf(want, sizeof want, "%s/e1.npy\n%s/e2.npy", tmp, tmp);
    CHECK(!strcmp(c.data.eval, want));
    char where[700];
    cfg_where(&c, "data.train", where, sizeof where);
    snprintf(want, sizeof want, "%s:3:5", path);
    CHECK(!strcmp(where, want));
    /* printed as a list, read back the same */
    snprintf(p1, sizeof p1, "%s/list_print.yaml", tmp);
    FILE *f = fopen(p1, "w");
    cfg_print(f, &c);
    fclose(f);
    char *t = slurp(p1, NULL);
    snprintf(want, sizeof want, "  train: [\"%s/a.npy\", \"/abs/b.npy\", \"%s/sub/\"]\n", tmp, tmp);
    if (!CHECK(t && strstr(t, want))) fprintf(stderr, "  printed:\n%s\n", t ? t : "(none)");
    free(t);
    cfg_defaults(&d);
    CHECK(cfg_load_file(&d, p1, err, sizeof err) == 0 && !strcmp(c.data.train, d.data.train) &&
          !strcmp(c.data.eval, d.data.eval));
    /* --set: a flow list relative to the current directory; a scalar is a one-path list */
    CHECK(cfg_apply_set(&c, "data.train=[x.npy, y/z.npy]", err, sizeof err) == 0 &&
          !strcmp(c.data.train, "x.npy\ny/z.npy"));
    CHECK(cfg_apply_set(&c, "data.train=w.npy", err, sizeof err) == 0 && !strcmp(c.data.train, "w.npy"));
    CHECK(cfg_apply_set(&c, "data.eval=[]", err, sizeof err) == -1 &&
          starts_with(err, "--set data.eval: expected a path or a non-empty list of paths, got a list of 0 items"));
    CHECK(cfg_apply_set(&c, "data.train=[a, 3]", err, sizeof err) == 0 && !strcmp(c.data.train, "a\n3"));
    /* the whole list must fit CFG_PATHLIST_MAX bytes */
    size_t cap = CFG_PATHLIST_MAX + 4096, n = 0;
    char *big = malloc(cap);
    n += (size_t)snprintf(big + n, cap - n, "data:\n  train:\n");
    int items = 0;
    while (n < CFG_PATHLIST_MAX + 1024)
        n += (size_t)snprintf(big + n, cap - n, "    - /%0200d.npy\n", ++items);
    tu_write_file(path, big, n);
    free(big);
    cfg_defaults(&c);
    int per = 206; /* "/" + 200 digits + ".npy" + newline */
    int first_bad = CFG_PATHLIST_MAX / per + 1;
    snprintf(want, sizeof want, "%s:%d:7: data.train: item %d: the list of paths is too long", path, 2 + first_bad,
             first_bad);
    if (!CHECK(cfg_load_file(&c, path, err, sizeof err) == -1 && starts_with(err, want)))
        fprintf(stderr, "  got \"%s\"\n  want \"%s...\"\n", err, want);
}

struct bad_case {
    const char *yaml;
    const char *want;   /* expected start of the message after "path:" ("" = none) */
    const char *frag;   /* also somewhere in it (NULL = none) */
    int at_validate;    /* 1: loads fine, cfg_validate fails */
};

static const struct bad_case bad_cases[] = {
    /* sizes are bounded before anything is sized by them */
    {"model:\n  n_layers: 100000000\n", "2:13: model.n_layers: expected an integer in [1, 4096], got 100000000", NULL, 0},
    {"model:\n  vocab_size: 1e9\n", "2:15: model.vocab_size: expected an integer in [2, 16777216], got 1e9", NULL, 0},
    {"train:\n  steps: 10000000000000\n", "2:10: train.steps: expected an integer in [1, 1e+12]", NULL, 0},
    /* syntax and structure */
    {"data:\n  train: t.bin\n  seq_len 128\n  sampling: random\n", "3:3: malformed YAML: could not find expected ':'", NULL, 0},
    {"train: [1, 2\n", "2:1: malformed YAML: ", NULL, 0},
    {"- a\n- b\n", "1:1: expected a mapping of sections", "got a list of 2 items", 0},
    {"hello\n", "1:1: expected a mapping of sections (model:, data:, train:, ...), got \"hello\"", NULL, 0},
    {"train: 5\n", "1:8: train: expected a mapping of keys, got 5", NULL, 0},
    {"train:\n  - lr\n", "2:3: train: expected a mapping of keys, got a list of 1 item", NULL, 0},
    {"train: {}\n---\ntrain: {}\n", "2:1: more than one YAML document", NULL, 0},
    {"train:\n  lr: &x 0.1\n  min_lr: *x\n", "2:7: anchors (&x) are not supported", NULL, 0},
    {"train:\n  lr: !!float 1\n", "2:7: tags (tag:yaml.org,2002:float) are not supported", NULL, 0},
    {"train:\n  \"l\\nr\": 1\n", "2:3: train.l?r: unknown key (did you mean train.lr?)", NULL, 0},
    {"train:\n  [a]: 1\n", "2:3: train: expected a key name, got a list of 1 item", NULL, 0},
    /* unknown and duplicate names */
    {"train:\n  lrr: 0.1\n", "2:3: train.lrr: unknown key (did you mean train.lr?)", NULL, 0},
    {"train:\n  seed: 1\n", "2:3: train.seed: unknown key (did you mean model.seed?)", NULL, 0},
    {"trian:\n  lr: 0.1\n", "1:1: trian: unknown section (did you mean train?)", NULL, 0},
    {"train:\n  lr: 0.1\n  steps: 5\n  lr: 0.2\n", "4:3: train.lr: duplicate key (first at line 2)", NULL, 0},
    {"train: {lr: 1}\nlog: {}\ntrain: {}\n", "3:1: train: duplicate section (first at line 1)", NULL, 0},
    /* types and bounds */
    {"train:\n  lr: fast\n", "2:7: train.lr: expected a number > 0, got \"fast\"", NULL, 0},
    {"train:\n  lr: 0\n", "2:7: train.lr: expected a number > 0, got 0", NULL, 0},
    {"train:\n  lr:\n", "2:6: train.lr: expected a number > 0, got null", NULL, 0},
    {"train:\n  lr: 3e-4x\n", "2:7: train.lr: expected a number > 0, got \"3e-4x\"", NULL, 0},
    {"train:\n  lr: .inf\n", "2:7: train.lr: expected a number > 0, got \".inf\"", NULL, 0},
    {"train:\n  eps: nan\n", "2:8: train.eps: expected a number > 0, got \"nan\"", NULL, 0},
    {"train:\n  lr: 1e999\n", "2:7: train.lr: expected a number > 0, got 1e999", NULL, 0},
    {"train:\n  weight_decay: -0.1\n", "2:17: train.weight_decay: expected a number >= 0, got -0.1", NULL, 0},
    {"train:\n  steps: 1.5\n", "2:10: train.steps: expected an integer in [1, 1e+12], got 1.5", NULL, 0},
    {"train:\n  steps: 0\n", "2:10: train.steps: expected an integer in [1, 1e+12], got 0", NULL, 0},
    {"train:\n  steps: 99999999999999999999\n", "2:10: train.steps: expected an integer in [1, 1e+12]", NULL, 0},
    {"model:\n  vocab_size: 1\n", "2:15: model.vocab_size: expected an integer in [2, 16777216], got 1", NULL, 0},
    {"model:\n  dim: 3000000000\n", "2:8: model.dim: expected an integer in [2, 131072], got 3000000000", NULL, 0},
    {"model:\n  dim: \"64\"x\n", "2:", "malformed YAML", 0},
    {"parallel:\n  cp: -1\n", "2:7: parallel.cp: expected an integer in [0, 1048576], got -1", NULL, 0},
    {"model:\n  seed: -1\n", "2:9: model.seed: expected an integer >= 0, got -1", NULL, 0},
    {"model:\n  seed: 18446744073709551616\n", "2:9: model.seed: expected an integer >= 0", NULL, 0},
    {"parallel:\n  attention: zz\n", "2:14: parallel.attention: expected one of zigzag | ring, got \"zz\"", NULL, 0},
    {"memory:\n  checkpointing: some\n", "2:18: memory.checkpointing: expected one of none | full | selective", NULL, 0},
    {"model:\n  tie_embeddings: yes\n", "2:19: model.tie_embeddings: expected true or false, got \"yes\"", NULL, 0},
    {"model:\n  tie_embeddings: 1\n", "2:19: model.tie_embeddings: expected true or false, got 1", NULL, 0},
    {"memory:\n  offload: true\n", "2:12: memory.offload: expected one of none | auto | all, got \"true\"", NULL, 0},
    {"device:\n  bind: numa\n", "2:9: device.bind: expected one of auto | none, got \"numa\"", NULL, 0},
    {"model:\n  init: foo\n", "2:9: model.init: expected random or hf:<dir>, got \"foo\"", NULL, 0},
    {"train:\n  betas: [0.9]\n", "2:10: train.betas: expected a list of 2 numbers in [0, 1), got a list of 1 item", NULL, 0},
    {"train:\n  betas: [0.9, 1.0]\n", "2:16: train.betas: expected a list of 2 numbers in [0, 1), got 1.0", NULL, 0},
    {"train:\n  betas: 0.9\n", "2:10: train.betas: expected a list of 2 numbers in [0, 1), got 0.9", NULL, 0},
    {"train:\n  betas: {a: 1}\n", "2:10: train.betas: expected a list of 2 numbers in [0, 1), got a mapping", NULL, 0},
    {"data:\n  train: \"\"\n", "2:10: data.train: expected a non-empty path, got \"\"", NULL, 0},
    {"data:\n  eval: {a: 1}\n", "2:9: data.eval: expected a path or a non-empty list of paths, got a mapping", NULL, 0},
    {"data:\n  eval: []\n", "2:9: data.eval: expected a path or a non-empty list of paths, got a list of 0 items", NULL, 0},
    {"data:\n  train: [a.npy, [b.npy]]\n", "2:18: data.train: item 2: expected a non-empty path, got a list of 1 item", NULL, 0},
    {"data:\n  train:\n    - a.npy\n    - {x: 1}\n", "4:7: data.train: item 2: expected a non-empty path, got a mapping", NULL, 0},
    {"data:\n  train: [a.npy, ~]\n", "2:18: data.train: item 2: expected a non-empty path, got null", NULL, 0},
    {"data:\n  train: [\"\"]\n", "2:11: data.train: item 1: expected a non-empty path, got \"\"", NULL, 0},
    {"data:\n  train: [\"a\\nb.npy\"]\n", "2:11: data.train: item 1: a path may not contain a newline", NULL, 0},
    /* cross-key checks */
    {"", "", "data.train: required key is missing", 1},
    {"train:\n  lr: 0.001\n", "", "data.train: required key is missing", 1},
    {"data: {train: t}\ntrain:\n  lr: 0.001\n  min_lr: 0.01\n",
     "4:11: train.min_lr: 0.01 is greater than train.lr 0.001 (train.lr: ", NULL, 1},
    {"data: {train: t}\ntrain:\n  steps: 10\n  warmup_steps: 11\n",
     "4:17: train.warmup_steps: 11 is greater than train.steps 10 (train.steps: ", NULL, 1},
    {"data: {train: t}\nmodel:\n  n_kv_heads: 3\n", "", "model.n_heads: 4 is not a multiple of model.n_kv_heads 3", 1},
    {"data: {train: t}\nmodel:\n  dim: 66\n", "3:8: model.dim: 66 is not a multiple of model.n_heads 4 (model.n_heads: default)", NULL, 1},
    {"data: {train: t}\nmodel:\n  dim: 36\n", "3:8: model.dim: 36 / model.n_heads 4 gives an odd head size 9", NULL, 1},
    {"data: {train: t}\ndevice:\n  attention: cudnn\n", "3:14: device.attention: cudnn needs device.backend cuda", NULL, 1},
    {"data: {train: t}\nmemory:\n  offload: all\n  checkpointing: none\n",
     "3:12: memory.offload: all needs memory.checkpointing full or selective", NULL, 1},
};

static void test_bad_files(void) {
    char path[600], want[2 * 600 + 200];
    snprintf(path, sizeof path, "%s/job.yaml", tmp);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *b = &bad_cases[i];
        struct cfg c;
        cfg_defaults(&c);
        tu_write_file(path, b->yaml, strlen(b->yaml));
        int load = cfg_load_file(&c, path, err, sizeof err);
        int ok = b->at_validate ? load == 0 && cfg_validate(&c, err, sizeof err) == -1 : load == -1;
        snprintf(want, sizeof want, "%s:%s", path, b->want);
        if (!*b->want) snprintf(want, sizeof want, "%s: ", path);
        ok = ok && starts_with(err, want) && (!b->frag || strstr(err, b->frag)) && !strchr(err, '\n');
        if (!CHECK(ok))
            fprintf(stderr, "  case %zu (%s): got \"%s\"\n  want \"%s\" ... \"%s\"\n", i,
                    b->at_validate ? "validate" : "load", err, want, b->frag ? b->frag : "");
    }

    /* exact messages: no hint when nothing is near; the other key's origin */
    struct cfg c;
    const char *y = "train:\n  zzzzzzzzzz: 1\n";
    tu_write_file(path, y, strlen(y));
    cfg_defaults(&c);
    snprintf(want, sizeof want, "%s:2:3: train.zzzzzzzzzz: unknown key", path);
    CHECK(cfg_load_file(&c, path, err, sizeof err) == -1 && !strcmp(err, want));
    y = "data: {train: t}\ntrain:\n  lr: 0.001\n  min_lr: 0.01\n";
    tu_write_file(path, y, strlen(y));
    cfg_defaults(&c);
    snprintf(want, sizeof want, "%s:4:11: train.min_lr: 0.01 is greater than train.lr 0.001 (train.lr: %s:3:7)",
             path, path);
    CHECK(cfg_load_file(&c, path, err, sizeof err) == 0 && cfg_validate(&c, err, sizeof err) == -1 &&
          !strcmp(err, want));
    snprintf(want, sizeof want, "%s: data.train: required key is missing", path);
    tu_write_file(path, "", 0);
    cfg_defaults(&c);
    CHECK(cfg_load_file(&c, path, err, sizeof err) == 0 && cfg_validate(&c, err, sizeof err) == -1 &&
          !strcmp(err, want));
    /* --set supplies the missing key; with an hf model, the shape is not checked */
    CHECK(cfg_apply_set(&c, "data.train=x.bin", err, sizeof err) == 0 && cfg_validate(&c, err, sizeof err) == 0);
    CHECK(cfg_apply_set(&c, "model.dim=36", err, sizeof err) == 0 && cfg_validate(&c, err, sizeof err) == -1);
    CHECK(starts_with(err, "--set model.dim: 36 / model.n_heads 4"));
    CHECK(cfg_apply_set(&c, "model.init=hf:m", err, sizeof err) == 0 && cfg_validate(&c, err, sizeof err) == 0);

    /* a too-long path, after joining with the job file's directory */
    char *big = malloc(CFG_PATH_MAX + 64);
    int n = snprintf(big, CFG_PATH_MAX + 64, "data:\n  train: ");
    memset(big + n, 'a', CFG_PATH_MAX - 20);
    strcpy(big + n + CFG_PATH_MAX - 20, "\n");
    tu_write_file(path, big, strlen(big));
    free(big);
    cfg_defaults(&c);
    snprintf(want, sizeof want, "%s:2:10: data.train: path is too long", path);
    CHECK(cfg_load_file(&c, path, err, sizeof err) == -1 && starts_with(err, want));

    /* files that cannot be read */
    CHECK(cfg_load_file(&c, "test/config/no_such.yaml", err, sizeof err) == -1 &&
          !strcmp(err, "test/config/no_such.yaml: cannot open: No such file or directory"));
    CHECK(cfg_load_file(&c, "test/config", err, sizeof err) == -1 &&
          !strcmp(err, "test/config: not a regular file (a directory)"));

    /* the example files in test/config */
    CHECK(cfg_load_file(&c, "test/config/bad_type.yaml", err, sizeof err) == -1 &&
          !strcmp(err, "test/config/bad_type.yaml:5:7: train.lr: expected a number > 0, got \"fast\""));
    CHECK(cfg_load_file(&c, "test/config/bad_unknown_key.yaml", err, sizeof err) == -1 &&
          !strcmp(err, "test/config/bad_unknown_key.yaml:5:3: train.lrr: unknown key (did you mean train.lr?)"));
    CHECK(cfg_load_file(&c, "test/config/bad_malformed.yaml", err, sizeof err) == -1 &&
          starts_with(err, "test/config/bad_malformed.yaml:4:3: malformed YAML: could not find expected ':'"));
}

/* docs/config.md is exactly cfg_print_help(markdown) and names every key; so does the text help. */
static void test_docs(void) {
    char *md = NULL, *txt = NULL;
    size_t mdn = 0, txtn = 0, docn = 0;
    FILE *f = open_memstream(&md, &mdn);
    cfg_print_help(f, "markdown");
    fclose(f);
    f = open_memstream(&txt, &txtn);
    cfg_print_help(f, "text");
    fclose(f);
    char *doc = slurp("docs/config.md", &docn);
    if (!CHECK(doc && docn == mdn && !memcmp(doc, md, mdn)))
        fprintf(stderr, "  docs/config.md is out of date: regenerate it with "
                        "./ringtrain --help-config=markdown > docs/config.md\n");
    /* every key of the schema is documented, in the text help, and printed by cfg_print */
    struct cfg c;
    char *yaml = NULL, key[160];
    size_t yn = 0;
    cfg_defaults(&c);
    f = open_memstream(&yaml, &yn);
    cfg_print(f, &c);
    fclose(f);
    CHECK(cfg_schema_n >= 37);
    for (int i = 0; i < cfg_schema_n; i++) {
        const char *name = cfg_schema[i].name, *leaf = strchr(name, '.');
        snprintf(key, sizeof key, "`%s`", name);
        if (!CHECK(doc && strstr(doc, key) && strstr(md, key))) fprintf(stderr, "  %s not in docs/config.md\n", key);
        snprintf(key, sizeof key, "\n%s ", name);
        CHECK(strstr(txt, key) != NULL);
        snprintf(key, sizeof key, "\n%.*s:\n", (int)(leaf - name), name);
        CHECK(!strncmp(yaml, key + 1, strlen(key + 1)) || strstr(yaml, key) != NULL);
        snprintf(key, sizeof key, "\n  %s: ", leaf + 1);
        CHECK(strstr(yaml, key) != NULL);
    }
    free(yaml);
    free(doc);
    free(md);
    free(txt);
}

/* cfg_choice names an enum value from the schema's choices; a number otherwise. */
static void test_choice(void) {
    char b[32];
    CHECK(!strcmp(cfg_choice("memory.checkpointing", CKPT_NONE, b, sizeof b), "none"));
    CHECK(!strcmp(cfg_choice("memory.checkpointing", CKPT_SELECTIVE, b, sizeof b), "selective"));
    CHECK(!strcmp(cfg_choice("memory.checkpointing", CKPT_AUTO, b, sizeof b), "auto"));
    CHECK(!strcmp(cfg_choice("memory.offload", OFFLOAD_ALL, b, sizeof b), "all"));
    CHECK(!strcmp(cfg_choice("memory.checkpointing", 4, b, sizeof b), "4"));
    CHECK(!strcmp(cfg_choice("memory.checkpointing", -1, b, sizeof b), "-1"));
    CHECK(!strcmp(cfg_choice("train.lr", 0, b, sizeof b), "0"));
}

int main(void) {
    tmp = tu_tmpdir("config");
    test_choice();
    test_defaults();
    test_full_file();
    test_minimal_and_flow();
    test_set();
    test_round_trip();
    test_pathlist();
    test_bad_files();
    test_docs();
    return tu_done("test_config");
}
