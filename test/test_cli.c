/* test_cli: every bad input to ./ringtrain exits 2 with one message naming the file and
 * line or key, before anything runs: malformed YAML, wrong type, out of range, unknown
 * key, missing files, .npy of wrong dtype/rank/out-of-range tokens, safetensors with a
 * wrong shape, a missing tensor or a non-finite value, an HF config that disagrees with
 * the job, a sequence length the ring cannot split, a checkpoint.dir, log.metrics or export
 * directory that cannot be written; under mpirun the message is printed once. Also the
 * informational flags (exit 0), --eval (of the newest checkpoint, saying which weights),
 * and the job hash, which does not depend on how the job file's path is spelled. Runs
 * from the repository root. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "params.h"
#include "testutil.h"

static const char *dir;

static void put(const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    tu_write_file(p, text, strlen(text));
}

/* A .npy with the given descr/shape text and n int32 tokens of value `tok`. */
static void put_npy(const char *name, const char *descr, const char *shape, int n, int32_t tok) {
    char p[1024];
    int32_t *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++) t[i] = i == n / 2 ? tok : i % 16;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    tu_write_npy(p, descr, shape, t, 4 * (size_t)n);
    free(t);
}

/* An HF dir for a tiny Llama with every weight `fill`; `skip` names a tensor to leave out,
 * `bad` one to misshape, `nan` one whose last value is a NaN. */
static void put_hf(const char *sub, const char *skip, const char *bad, const char *nan, float fill) {
    struct model_config mc = {.vocab_size = 16, .dim = 8, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2,
                              .head_dim = 4, .ffn_dim = 8, .norm_eps = 1e-5, .rope_theta = 10000};
    struct param_table pt;
    char err[256], p[1024];
    if (params_init(&pt, &mc, err, sizeof err)) abort();
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", p);
    if (system(cmd)) abort();
    char json[8192] = "{";
    size_t off = 0, nan_at = 0;
    for (int i = 0; i < pt.n; i++) {
        const struct param *q = &pt.p[i];
        if (skip && !strcmp(q->name, skip)) continue;
        int64_t s0 = q->shape[0], s1 = q->shape[1];
        if (bad && !strcmp(q->name, bad)) s1 += 1;
        char e[256];
        if (q->ndim == 1)
            snprintf(e, sizeof e, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                     off ? "," : "", q->name, (long long)s0, off, off + 4 * (size_t)s0);
        else
            snprintf(e, sizeof e, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                     off ? "," : "", q->name, (long long)s0, (long long)s1, off, off + 4 * (size_t)(s0 * s1));
        strcat(json, e);
        off += 4 * (size_t)(s0 * (q->ndim == 1 ? 1 : s1));
        if (nan && !strcmp(q->name, nan)) nan_at = off - 4;
    }
    strcat(json, "}");
    uint64_t hl = strlen(json);
    size_t len = 8 + hl + off;
    unsigned char *b = calloc(1, len);
    for (size_t i = 0; i < off / 4; i++) memcpy(b + 8 + hl + 4 * i, &fill, 4);
    memcpy(b, &hl, 8);
    memcpy(b + 8, json, hl);
    if (nan) {
        const float x = NAN;
        memcpy(b + 8 + hl + nan_at, &x, 4);
    }
    char f[1100];
    snprintf(f, sizeof f, "%s/model.safetensors", p);
    tu_write_file(f, b, len);
    free(b);
    snprintf(f, sizeof f, "%s/config.json", p);
    const char *cfg = "{\"model_type\": \"llama\", \"vocab_size\": 16, \"hidden_size\": 8, \"num_hidden_layers\": 1,"
                      " \"num_attention_heads\": 2, \"num_key_value_heads\": 2, \"intermediate_size\": 8,"
                      " \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"hidden_act\": \"silu\"}";
    tu_write_file(f, cfg, strlen(cfg));
    params_free(&pt);
}

/* Run a command; return its exit status, with stdout+stderr in out. */

/* A shell command run in the test directory; its exit status. */
static int in_dir(const char *cmd) {
    char full[2048], out[4096];
    snprintf(full, sizeof full, "cd %s && %s", dir, cmd);
    return tu_run(full, out, sizeof out);
}

/* ringtrain ARGS in the test directory: its exit status, stdout and stderr in out. */
static int ringtrain(const char *args, char *out, size_t outlen) {
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "cd %s && timeout 60 %s %s", dir, tu_bin(), args);
    return tu_run(cmd, out, outlen);
}

/* The mean loss of an --eval's done line, or NAN. */
static double eval_loss(const char *out) {
    const char *p = strstr(out, "\"event\":\"done\",\"windows\":");
    double loss = NAN;
    if (!p || sscanf(p, "\"event\":\"done\",\"windows\":%*d,\"loss\":%lf", &loss) != 1) return NAN;
    return loss;
}

/* ringtrain ARGS must exit `code` with output containing every fragment ('|' separated). */
static void expect(const char *args, int code, const char *fragments) {
    static char out[1 << 16]; /* --help-config is over 16 KiB: a shorter read would end it with SIGPIPE */
    int rc = ringtrain(args, out, sizeof out);
    int ok = rc == code;
    char frag[512];
    snprintf(frag, sizeof frag, "%s", fragments);
    for (char *f = strtok(frag, "|"); f; f = strtok(NULL, "|")) ok &= strstr(out, f) != NULL;
    if (!CHECK(ok)) fprintf(stderr, "  ringtrain %s: exit %d (want %d), output:\n%s\n  (wanted: %s)\n", args, rc, code, out, fragments);
}

int main(void) {
    char root[1024];
    if (!getenv("RT_ROOT")) {
        if (!realpath(".", root)) abort();
        setenv("RT_ROOT", root, 1);
    }
    dir = tu_tmpdir("cli");
    put_npy("tok.npy", "<i4", "(400,)", 400, 3);
    put_npy("f4.npy", "<f4", "(400,)", 400, 3);
    put_npy("twod.npy", "<i4", "(20, 20)", 400, 3);
    put_npy("big.npy", "<i4", "(400,)", 400, 999);
    put_hf("hf_ok", NULL, NULL, NULL, 0);
    put_hf("hf_shape", NULL, "model.layers.0.self_attn.k_proj.weight", NULL, 0);
    put_hf("hf_missing", "model.norm.weight", NULL, NULL, 0);
    put_hf("hf_nan", NULL, NULL, "model.layers.0.mlp.up_proj.weight", 0);
    put_hf("hf_huge", NULL, NULL, NULL, 1e30f); /* finite weights whose forward pass overflows */
    const char *base = "data: {train: tok.npy, seq_len: 32}\ntrain: {steps: 2}\nmodel: {vocab_size: 16, dim: 16, n_heads: 2, n_kv_heads: 2, ffn_dim: 16}\n";
    put("ok.yaml", base);
    put("malformed.yaml", "data: {train: tok.npy\ntrain:\n  lr: [\n");
    put("type.yaml", "data: {train: tok.npy}\ntrain:\n  lr: fast\n");
    put("range.yaml", "data: {train: tok.npy}\ntrain:\n  grad_clip: -1\n");
    put("unknown.yaml", "data: {train: tok.npy}\ntrain:\n  lrr: 0.1\n");
    put("nodata.yaml", "data: {train: nothere.npy, seq_len: 32}\nmodel: {vocab_size: 16}\n");
    put("f4.yaml", "data: {train: f4.npy, seq_len: 32}\nmodel: {vocab_size: 16}\n");
    put("twod.yaml", "data: {train: twod.npy, seq_len: 32}\nmodel: {vocab_size: 16}\n");
    put("big.yaml", "data: {train: big.npy, seq_len: 32}\nmodel: {vocab_size: 16}\n");
    put("hf_shape.yaml", "model: {init: \"hf:hf_shape\"}\ndata: {train: tok.npy, seq_len: 32}\n");
    put("hf_missing.yaml", "model: {init: \"hf:hf_missing\"}\ndata: {train: tok.npy, seq_len: 32}\n");
    put("hf_disagree.yaml", "model:\n  init: \"hf:hf_ok\"\n  dim: 32\ndata: {train: tok.npy, seq_len: 32}\n");
    put("hf_ok.yaml", "model: {init: \"hf:hf_ok\"}\ndata: {train: tok.npy, seq_len: 32}\ntrain: {steps: 1}\n");
    put("hf_nan.yaml", "model: {init: \"hf:hf_nan\"}\ndata: {train: tok.npy, seq_len: 32}\ntrain: {steps: 1}\n");
    put("seqlen.yaml", "data: {train: tok.npy, seq_len: 34}\nmodel: {vocab_size: 16}\n");
    put("seqlen33.yaml", "data: {train: tok.npy, seq_len: 33}\nmodel: {vocab_size: 16}\n");

    expect("--version", 0, "ringtrain");
    expect("--help", 0, "usage:");
    expect("--help-config", 0, "train.lr");
    expect("--bogus", 2, "unknown option --bogus");
    expect("", 2, "no job file");
    expect("missing.yaml", 2, "missing.yaml: cannot open");
    expect("malformed.yaml", 2, "malformed.yaml:|malformed YAML");
    expect("type.yaml", 2, "type.yaml:3:7: train.lr: expected a number > 0, got \"fast\"");
    expect("range.yaml", 2, "range.yaml:3:14: train.grad_clip:|>= 0");
    expect("unknown.yaml", 2, "unknown.yaml:3:3: train.lrr: unknown key (did you mean train.lr?)");
    expect("ok.yaml --set train.lr=fast", 2, "--set train.lr: expected a number > 0");
    expect("nodata.yaml", 2, "nothere.npy");
    expect("f4.yaml", 2, "f4.npy: dtype '<f4'");
    expect("twod.yaml", 2, "twod.npy:|1-D");
    expect("big.yaml", 2, "big.npy: token 999 at index 200");
    expect("hf_shape.yaml", 2, "model.layers.0.self_attn.k_proj.weight: shape [8, 9], expected [8, 8]");
    expect("hf_missing.yaml", 2, "missing tensor model.norm.weight");
    expect("hf_disagree.yaml", 2, "hf_disagree.yaml:3:8: model.dim: 32 disagrees with|config.json (8)");
    expect("seqlen33.yaml", 2, "seqlen33.yaml:1:33: data.seq_len: 33 is not a multiple of 2 x cp = 2");
    expect("ok.yaml --plan", 0, "memory plan of ok.yaml|plan: device");
    expect("ok.yaml", 0, "\"event\":\"done\",\"step\":2");
    expect("hf_ok.yaml", 0, "\"event\":\"done\",\"step\":1");
    /* issue 14: RoPE overrides of an HF model win and are named at start-up; its export
     * carries them and says what it took from the source directory */
    expect("hf_ok.yaml --set model.rope_theta=1e6 --set model.rope_scaling.type=yarn --set model.rope_scaling.factor=4 "
           "--set model.rope_scaling.original_max_position_embeddings=32 "
           "--set export.dir=hf_yarn", 0,
           "rope: theta 1e+06 (model.rope_theta, over config.json's 10000), scaling yarn (factor 4, original 32|"
           "(model.rope_scaling, over config.json's default), attention factor 1.13863|"
           "exported the model to hf_yarn (bf16); from hf_ok: no token ids in its config.json; it has no "
           "generation_config.json");
    expect("hf_ok.yaml --set model.rope_scaling.type=llama3 --set model.rope_scaling.factor=8", 2,
           "--set: model.rope_scaling.low_freq_factor: required by model.rope_scaling.type llama3");
    expect("hf_nan.yaml --set checkpoint.dir=ck_nan", 2,
           "hf_nan/model.safetensors: model.layers.0.mlp.up_proj.weight: element 63 is not finite (nan)");
    CHECK(in_dir("ls ck_nan 2>/dev/null | grep step-") != 0); /* nothing trained, nothing saved */
    expect("ok.yaml --eval", 0, "\"event\":\"done\",\"windows\"");

    /* Token files as a list or a directory: one stream; errors name the key and the file. */
    put_npy("p1.npy", "<i4", "(150,)", 150, 3);
    put_npy("p2.npy", "<u4", "(100,)", 100, 5);
    put_npy("p2bad.npy", "<u4", "(100,)", 100, 999);
    put_npy("p3.npy", "<i4", "(150,)", 150, 7);
    put("notes.txt", "not tokens\n");
    char sub[1100];
    snprintf(sub, sizeof sub, "mkdir -p %s/shards %s/empty && cp %s/p1.npy %s/p2.npy %s/p3.npy %s/notes.txt %s/shards/",
             dir, dir, dir, dir, dir, dir, dir);
    if (system(sub)) abort();
    const char *model = "model: {vocab_size: 16, dim: 16, n_heads: 2, n_kv_heads: 2, ffn_dim: 16}\ntrain: {steps: 2}\n";
    char job[1024];
    snprintf(job, sizeof job, "data: {train: [p1.npy, p2.npy, p3.npy], eval: [p3.npy, p1.npy], seq_len: 32}\n%s", model);
    put("list.yaml", job);
    snprintf(job, sizeof job, "data:\n  train: shards\n  seq_len: 32\n%s", model);
    put("dir.yaml", job);
    snprintf(job, sizeof job, "data: {train: [p1.npy, p2bad.npy, p3.npy], seq_len: 32}\n%s", model);
    put("listbad.yaml", job);
    snprintf(job, sizeof job, "data:\n  train: empty/\n  seq_len: 32\n%s", model);
    put("emptydir.yaml", job);
    snprintf(job, sizeof job, "data: {train: [p1.npy, notes.txt], seq_len: 32}\n%s", model);
    put("notnpy.yaml", job);
    snprintf(job, sizeof job, "data: {train: [p1.npy, nothere2.npy], seq_len: 32}\n%s", model);
    put("listmissing.yaml", job);
    snprintf(job, sizeof job, "data: {train: [p1.npy, {a: 1}], seq_len: 32}\n%s", model);
    put("listtype.yaml", job);
    snprintf(job, sizeof job, "data: {train: tok.npy, eval: empty, seq_len: 32}\n%s", model);
    put("evalempty.yaml", job);
    expect("list.yaml", 0, "\"event\":\"done\",\"step\":2");
    expect("list.yaml --eval", 0, "\"event\":\"done\",\"windows\":9");
    expect("dir.yaml", 0, "\"event\":\"done\",\"step\":2");
    expect("dir.yaml --set data.train=shards/p*.npy", 0, "\"event\":\"done\",\"step\":2");
    expect("dir.yaml --set data.train=shards/q*.npy", 2, "--set: data.train: shards/q*.npy: the pattern matches no files");
    expect("ok.yaml --set data.train=[p1.npy,p2.npy,p3.npy]", 0, "\"event\":\"done\",\"step\":2");
    expect("listbad.yaml", 2, "listbad.yaml:1:15: data.train: p2bad.npy: token 999 at index 50|(file 2 of 3)");
    expect("emptydir.yaml", 2, "emptydir.yaml:2:10: data.train: empty/: directory holds no .npy files");
    expect("notnpy.yaml", 2, "notnpy.yaml:1:15: data.train: notes.txt: not a .npy file");
    expect("listmissing.yaml", 2, "listmissing.yaml:1:15: data.train: nothere2.npy: cannot open");
    expect("listtype.yaml", 2, "listtype.yaml:1:24: data.train: item 2: expected a non-empty path, got a mapping");
    expect("evalempty.yaml", 2, "evalempty.yaml:1:30: data.eval: empty: directory holds no .npy files");
    expect("ok.yaml --set data.train=[p1.npy,nothere3.npy]", 2, "--set: data.train: nothere3.npy: cannot open");

    /* A FIFO as job file, token file or config.json is refused at once (reading it would
     * wait for a writer forever). */
    snprintf(sub, sizeof sub, "cd %s && mkdir -p hf_fifo && mkfifo fifo.yaml fifo.npy hf_fifo/config.json", dir);
    if (system(sub)) abort();
    put("hf_fifo.yaml", "model: {init: \"hf:hf_fifo\"}\ndata: {train: tok.npy, seq_len: 32}\n");
    /* A size far beyond any model in config.json is refused before anything is sized by it. */
    snprintf(sub, sizeof sub, "mkdir -p %s/hf_layers && sed 's/\"num_hidden_layers\": 1/\"num_hidden_layers\": 100000000/' "
             "%s/hf_ok/config.json > %s/hf_layers/config.json", dir, dir, dir);
    if (system(sub)) abort();
    put("hf_layers.yaml", "model: {init: \"hf:hf_layers\"}\ndata: {train: tok.npy, seq_len: 32}\n");
    expect("hf_layers.yaml", 2, "hf_layers/config.json: num_hidden_layers: 100000000 is outside [1, 4096]");
    expect("fifo.yaml", 2, "fifo.yaml: not a regular file (a FIFO)");
    expect("ok.yaml --set data.train=fifo.npy", 2, "--set: data.train: fifo.npy: not a regular file (a FIFO)");
    expect("ok.yaml --set data.eval=[p1.npy,fifo.npy]", 2, "data.eval: fifo.npy: not a regular file (a FIFO)");
    expect("hf_fifo.yaml", 2, "hf_fifo/config.json: not a regular file (a FIFO)");

    /* The metrics file: one JSON object per step with the documented keys. */
    expect("ok.yaml --set log.metrics=m.jsonl --set train.steps=3", 0, "\"step\":3");
    char mpath[1100], line[1024];
    snprintf(mpath, sizeof mpath, "%s/m.jsonl", dir);
    FILE *mf = fopen(mpath, "r");
    int lines = 0, keys_ok = 1;
    static const char *keys[] = {"\"step\":", "\"loss\":", "\"lr\":", "\"grad_norm\":", "\"tokens\":",
                                 "\"tokens_per_s\":", "\"mfu\":", "\"mem_gib\":"};
    while (mf && fgets(line, sizeof line, mf)) {
        lines++;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) keys_ok &= strstr(line, keys[k]) != NULL;
        keys_ok &= line[0] == '{' && strchr(line, '}') != NULL;
    }
    if (mf) fclose(mf);
    CHECK(lines == 3 && keys_ok);

    /* --eval evaluates the newest complete checkpoint of checkpoint.dir and says so; without
     * one, the initial weights. */
    char out[16384];
    int rc = ringtrain("ok.yaml --eval --set checkpoint.dir=ck_eval", out, sizeof out);
    double init_loss = eval_loss(out);
    if (!CHECK(rc == 0 && strstr(out, "evaluating the initial weights (no checkpoint in ck_eval)")))
        fprintf(stderr, "eval without a checkpoint: exit %d\n%s\n", rc, out);
    rc = ringtrain("ok.yaml --eval", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "evaluating the initial weights (checkpoint.dir is not set)") && eval_loss(out) == init_loss);
    expect("ok.yaml --set checkpoint.dir=ck_eval --set train.lr=0.05 --set train.warmup_steps=0", 0, "\"step\":2");
    rc = ringtrain("ok.yaml --eval --set checkpoint.dir=ck_eval", out, sizeof out);
    if (!CHECK(rc == 0 && strstr(out, "evaluating checkpoint ck_eval/step-00000002") && eval_loss(out) < init_loss - 0.01))
        fprintf(stderr, "eval of a checkpoint: exit %d (initial loss %g)\n%s\n", rc, init_loss, out);
    rc = ringtrain("ok.yaml --eval --no-resume --set checkpoint.dir=ck_eval", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "evaluating the initial weights (--no-resume)") && eval_loss(out) == init_loss);

    /* The places a run writes are checked at start-up (exit 2 naming key, path and reason),
     * not at the first save; --export's failures use the documented exit codes. */
    put("file", "x\n");
    expect("ok.yaml --set checkpoint.dir=nothere/ck", 2, "--set checkpoint.dir: nothere/ck: cannot create|No such file or directory");
    expect("ok.yaml --set checkpoint.dir=file/ck", 2, "--set checkpoint.dir: file/ck: cannot create|Not a directory");
    expect("ok.yaml --set log.metrics=nothere/m.jsonl", 2, "--set log.metrics: nothere/m.jsonl: cannot create|No such file or directory");
    expect("ok.yaml --set log.metrics=shards", 2, "--set log.metrics: shards: cannot write|Is a directory");
    expect("ok.yaml --set export.dir=file/hf", 2, "--set export.dir: file/hf:");
    expect("ok.yaml --set export.dir=shards", 2, "--set export.dir: shards: exists, is not empty and has no config.json");
    put("ck_yaml.yaml", "data: {train: tok.npy, seq_len: 32}\nmodel: {vocab_size: 16, dim: 16, n_heads: 2, n_kv_heads: 2, ffn_dim: 16}\n"
                        "checkpoint:\n  dir: file/ck\n");
    expect("ck_yaml.yaml", 2, "ck_yaml.yaml:4:8: checkpoint.dir: file/ck: cannot create");
    expect("--export file/hf ok.yaml --set checkpoint.dir=ck_eval", 2, "--export: file/hf:");
    expect("--export shards ok.yaml --set checkpoint.dir=ck_eval", 2, "--export: shards: exists, is not empty");
    expect("--export hf_out ok.yaml --set checkpoint.dir=ck_eval", 0, "exported the model to hf_out");
    /* Read-only directories: as root, write permission bits do not stop a write, so an
     * unprivileged user (setpriv) runs those. */
    CHECK(in_dir("mkdir -p ro/ck && chmod 755 . && chmod 555 ro ro/ck && chmod 644 *.npy *.yaml") == 0);
    const char *as_user = geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups " : "";
    char args[1024];
    snprintf(args, sizeof args, "cd %s && %s%s ok.yaml --set checkpoint.dir=ro/ck", dir, as_user, tu_bin());
    rc = tu_run(args, out, sizeof out);
    if (!CHECK(rc == 2 && strstr(out, "--set checkpoint.dir: ro/ck: ") && strstr(out, "Permission denied")))
        fprintf(stderr, "read-only checkpoint.dir: exit %d\n%s\n", rc, out);
    snprintf(args, sizeof args, "cd %s && %s%s ok.yaml --set log.metrics=ro/m.jsonl", dir, as_user, tu_bin());
    rc = tu_run(args, out, sizeof out);
    if (!CHECK(rc == 2 && strstr(out, "--set log.metrics: ro/m.jsonl: cannot create") && strstr(out, "Permission denied")))
        fprintf(stderr, "read-only log.metrics: exit %d\n%s\n", rc, out);

    /* The job hash does not depend on how the job file's path is spelled: the same job as
     * ok.yaml, ./ok.yaml and /abs/ok.yaml resumes without the "other data" warning. */
    expect("ok.yaml --set checkpoint.dir=ck_hash", 0, "\"step\":2");
    rc = ringtrain("./ok.yaml --set checkpoint.dir=ck_hash --set train.steps=3", out, sizeof out);
    if (!CHECK(rc == 0 && strstr(out, "at step 2 ") && !strstr(out, "other data")))
        fprintf(stderr, "./ok.yaml: exit %d\n%s\n", rc, out);
    snprintf(args, sizeof args, "%s/ok.yaml --set checkpoint.dir=ck_hash --set train.steps=4", dir);
    rc = ringtrain(args, out, sizeof out);
    if (!CHECK(rc == 0 && strstr(out, "at step 3 ") && !strstr(out, "other data")))
        fprintf(stderr, "/abs/ok.yaml: exit %d\n%s\n", rc, out);
    rc = ringtrain("ok.yaml --set checkpoint.dir=ck_hash --set train.steps=5 --set train.lr=1e-3", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "at step 4 ") && strstr(out, "other data")); /* a real change still warns */

    /* A diverging run (lr 1e38: the weights overflow after step 1, steps 2 and 3 are skipped)
     * still writes valid JSON: non-finite values as null, never nan or inf. */
    expect("ok.yaml --set log.metrics=nan.jsonl --set train.steps=3 --set train.lr=1e38 --set train.grad_clip=0", 0,
           "SKIPPED (non-finite)|\"event\":\"done\",\"step\":3,\"loss\":null");
    snprintf(mpath, sizeof mpath, "%s/nan.jsonl", dir);
    mf = fopen(mpath, "r");
    int nulls = 0, finite_only = 1;
    lines = 0;
    while (mf && fgets(line, sizeof line, mf)) {
        lines++;
        nulls += strstr(line, "\"loss\":null,") != NULL;
        finite_only &= !strstr(line, "nan") && !strstr(line, "inf");
    }
    if (mf) fclose(mf);
    CHECK(lines == 3 && nulls == 2 && finite_only);
    /* --eval whose mean loss is not finite fails. */
    put("hf_huge.yaml", "model: {init: \"hf:hf_huge\"}\ndata: {train: tok.npy, seq_len: 32}\n");
    expect("hf_huge.yaml --eval", 1, "--eval: the mean loss over tok.npy is not finite|\"loss\":null");

    /* A runtime failure on one rank takes the whole job down with its message. */
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "timeout 60 %s/scripts/mpirun.sh -np 3 %s/test_abort", getenv("RT_ROOT"), tu_build());
    rc = tu_run(cmd, out, sizeof out);
    if (!CHECK(rc != 0 && rc != 124 && strstr(out, "[1 ") && strstr(out, "test_abort.c:") &&
               strstr(out, "deliberate failure on rank 1")))
        fprintf(stderr, "abort run: exit %d, output:\n%s\n", rc, out);

    /* Under mpirun, rank 0 alone reports a bad job file, and every rank exits 2. */
    snprintf(cmd, sizeof cmd, "cd %s && %s/scripts/mpirun.sh -np 2 %s type.yaml", dir, getenv("RT_ROOT"),
             tu_bin());
    rc = tu_run(cmd, out, sizeof out);
    CHECK(rc == 2);
    if (!CHECK(tu_count(out, "train.lr: expected") == 1)) fprintf(stderr, "mpirun output:\n%s\n", out);
    snprintf(cmd, sizeof cmd, "cd %s && %s/scripts/mpirun.sh -np 4 %s seqlen.yaml", dir, getenv("RT_ROOT"),
             tu_bin());
    rc = tu_run(cmd, out, sizeof out);
    if (!CHECK(rc == 2 && strstr(out, "seq_len: 34 is not a multiple of 2 x cp = 8")))
        fprintf(stderr, "mpirun output:\n%s\n", out);
    return tu_done("test_cli");
}
