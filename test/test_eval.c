/* test_eval: evaluation, passkey retrieval and the MFU through the real command line, on 2
 * ranks (the ring forward) and 1. A tiny model is trained on the synthetic copy task
 * (every answer L/2 - 1 positions back); data.eval holds copy-task windows, whose first
 * half cannot be predicted (loss ~ ln V) and whose second half can.
 *  1. log.eval_every: the losses of training are bit for bit those of a run without it (also
 *     with ZeRO-3 and the optimizer on the host);
 *     the metrics hold valid JSON `eval_step` records at the cadence and the last step, the
 *     evaluation loss falls, checkpoints are announced (progress line, metrics event).
 *  2. --eval by position bucket: eval_buckets.csv has the buckets of the context lengths,
 *     the unpredictable half near ln V and the copied half near 0, its mean is the printed
 *     mean; 1 and 2 ranks (the ring), and 3 data-parallel ranks with ZeRO-3, agree (1e-5).
 *  3. --passkey: the trained model retrieves the passkey exactly in the cells where the
 *     needle lies L/2 tokens before the answer (the copy distance) and nowhere else; the
 *     initial weights retrieve nothing; needle positions are floor(d body + 1/2); an id spec
 *     file places its needle text; bad id specs and grids exit 2 naming file:line or key.
 *  4. MFU: with device.peak_tflops the progress line has `mfu x.x%` and the metrics' mfu is
 *     model FLOPs / (step time x peak x ranks); on the cpu without it, no MFU (null); the
 *     peak table by device name. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "mfu.h"
#include "testutil.h"

#define L 64
#define V 32
#define K 5
#define STEPS 400

static const char *dir;

static void put(const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    tu_write_file(p, text, strlen(text));
}

/* ringtrain under mpirun -np np in the test directory: exit status, output in out. */
static int ringtrain(int np, const char *args, char *out, size_t outlen) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && OMP_NUM_THREADS=1 timeout 300 %s/scripts/mpirun.sh -np %d %s %s", dir,
             getenv("RT_ROOT"), np, tu_bin(), args);
    return tu_run(cmd, out, outlen);
}

static char *slurp(const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (!f) return NULL;
    char *s = calloc(1, 1 << 20);
    size_t n = fread(s, 1, (1 << 20) - 1, f);
    s[n] = 0;
    fclose(f);
    return s;
}

/* The "loss" values of the step records, as text (17 digits: equal text = equal bits). */
static void step_losses(const char *jsonl, char *out, size_t outlen) {
    size_t w = 0;
    out[0] = 0;
    for (const char *p = jsonl; (p = strstr(p, "{\"step\":")); p++) {
        const char *l = strstr(p, "\"loss\":"), *e = l ? strchr(l, ',') : NULL;
        if (!e || w + (size_t)(e - l) + 2 >= outlen) break;
        memcpy(out + w, l, (size_t)(e - l));
        w += (size_t)(e - l);
        out[w++] = '\n';
        out[w] = 0;
    }
}

/* CSV rows after the header: up to max rows of n numbers each into v; returns the rows. */
static int read_csv(const char *name, int n, double *v, int max) {
    char *s = slurp(name);
    if (!s) return -1;
    int rows = 0;
    char *line = strchr(s, '\n');
    while (line && *++line && rows < max) {
        char *p = line;
        for (int i = 0; i < n; i++) {
            v[rows * n + i] = strtod(p, &p);
            if (*p == ',') p++;
        }
        rows++;
        line = strchr(line, '\n');
    }
    free(s);
    return rows;
}

static void test_training_eval(void) {
    printf("1. log.eval_every\n");
    char out[65536];
    int rc = ringtrain(2, "job.yaml --set log.metrics=a.jsonl --set log.eval_every=100 --set checkpoint.dir=ck "
                          "--set checkpoint.every=200", out, sizeof out);
    if (!CHECK(rc == 0)) fprintf(stderr, "%s\n", out);
    CHECK(strstr(out, "eval step 100: loss ") && strstr(out, "eval step 400: loss "));
    CHECK(strstr(out, "checkpoint step-00000200 written to ck (") && strstr(out, "checkpoint step-00000400 written"));
    CHECK(!strstr(out, "mfu")); /* the cpu backend without device.peak_tflops */
    rc = ringtrain(2, "job.yaml --set log.metrics=b.jsonl", out, sizeof out);
    CHECK(rc == 0 && !strstr(out, "eval step"));
    char *a = slurp("a.jsonl"), *b = slurp("b.jsonl");
    if (!CHECK(a && b)) return;
    static char la[65536], lb[65536];
    step_losses(a, la, sizeof la);
    step_losses(b, lb, sizeof lb);
    if (!CHECK(tu_count(la, "\n") == STEPS && !strcmp(la, lb)))
        fprintf(stderr, "  the losses with log.eval_every differ from those without\n");
    /* the same with ZeRO-3 and the optimizer on the host (its update overlaps the next forward) */
    const char *z3 = "job.yaml --set train.steps=60 --set parallel.zero=3 --set memory.optimizer=host";
    char args[512];
    snprintf(args, sizeof args, "%s --set log.metrics=z1.jsonl --set log.eval_every=7", z3);
    CHECK(ringtrain(2, args, out, sizeof out) == 0 && tu_count(out, "eval step ") == 9);
    snprintf(args, sizeof args, "%s --set log.metrics=z2.jsonl", z3);
    CHECK(ringtrain(2, args, out, sizeof out) == 0);
    char *z1 = slurp("z1.jsonl"), *z2 = slurp("z2.jsonl");
    static char l1[65536], l2[65536];
    step_losses(z1 ? z1 : "", l1, sizeof l1);
    step_losses(z2 ? z2 : "", l2, sizeof l2);
    if (!CHECK(tu_count(l1, "\n") == 60 && !strcmp(l1, l2)))
        fprintf(stderr, "  ZeRO-3, host optimizer: the losses with log.eval_every differ from those without\n");
    free(z1);
    free(z2);
    /* every line valid JSON; eval records at 100, 200, 300, 400; two checkpoint events */
    int evals = 0, ckpts = 0, bad = 0, null_mfu = 0;
    double first = NAN, last = NAN;
    for (char *line = strtok(a, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        if (!j) {
            bad++;
            continue;
        }
        cJSON *es = cJSON_GetObjectItem(j, "eval_step"), *el = cJSON_GetObjectItem(j, "eval_loss");
        cJSON *ev = cJSON_GetObjectItem(j, "event"), *mfu = cJSON_GetObjectItem(j, "mfu");
        if (es && cJSON_IsNumber(el) && es->valuedouble == 100 * (evals + 1)) {
            if (!evals) first = el->valuedouble;
            last = el->valuedouble;
            CHECK_REL(cJSON_GetObjectItem(j, "eval_ppl")->valuedouble, exp(el->valuedouble), 1e-12);
            CHECK(cJSON_GetObjectItem(j, "eval_windows")->valuedouble == 4);
            evals++;
        }
        if (ev && !strcmp(ev->valuestring, "checkpoint")) ckpts++;
        null_mfu += mfu && cJSON_IsNull(mfu);
        cJSON_Delete(j);
    }
    printf("  eval loss %.4f at step 100, %.4f at step %d (ln V %.4f)\n", first, last, STEPS, log(V));
    CHECK(bad == 0 && evals == 4 && ckpts == 2 && null_mfu == STEPS);
    CHECK(first > 0.8 * log(V) && last != first);
    /* the last one is --eval of the final checkpoint over the same 4 windows (eval4.npy is the
     * first 4 L + 1 tokens of eval.npy) */
    rc = ringtrain(2, "--eval job.yaml --set checkpoint.dir=ck --set data.eval=eval4.npy --set eval.out=e4", out,
                   sizeof out);
    const char *m = strstr(out, "\"windows\":4,\"loss\":");
    CHECK(rc == 0 && strstr(out, "evaluating checkpoint ck/step-00000400") && m);
    if (m) CHECK_REL(atof(m + strlen("\"windows\":4,\"loss\":")), last, 1e-8);
    free(a);
    free(b);
}

static void test_buckets(void) {
    printf("2. --eval by position bucket\n");
    char out[65536];
    double v[2][4 * 6];
    double mean[2];
    for (int k = 0; k < 2; k++) {
        char args[256];
        snprintf(args, sizeof args, "--eval job.yaml --set checkpoint.dir=ck --set eval.buckets=4 --set eval.out=e%d",
                 k + 1);
        int rc = ringtrain(k + 1, args, out, sizeof out);
        if (!CHECK(rc == 0)) fprintf(stderr, "%s\n", out);
        const char *m = strstr(out, "\"loss\":");
        mean[k] = m ? atof(m + 7) : NAN;
        char name[32];
        snprintf(name, sizeof name, "e%d/eval_buckets.csv", k + 1);
        CHECK(read_csv(name, 6, v[k], 4) == 4);
    }
    double sum = 0, n = 0;
    for (int b = 0; b < 4; b++) {
        const double *r = v[1] + 6 * b;
        printf("  bucket %d: context %g-%g, %g tokens, loss %.4f, ppl %.4f\n", b, r[1], r[2], r[3], r[4], r[5]);
        CHECK(r[0] == b && r[1] == 16 * b + 1 && r[2] == 16 * b + 16 && r[3] == 8 * 16);
        CHECK_REL(r[5], exp(r[4]), 1e-6);
        CHECK_REL(v[0][6 * b + 4], r[4], 1e-5); /* 1 rank == 2 ranks */
        sum += r[3] * r[4];
        n += r[3];
    }
    CHECK_REL(sum / n, mean[1], 1e-6);
    /* 3 data-parallel ranks with ZeRO-3: 8 windows in batches of 3, the last one with a
     * stand-in rank (its layer gathers are collective) whose tokens must not count */
    double z[4 * 6];
    int rc = ringtrain(3, "--eval job.yaml --set checkpoint.dir=ck --set eval.buckets=4 --set eval.out=e3 "
                          "--set parallel.cp=1 --set train.seqs_per_step=3 --set parallel.zero=3", out, sizeof out);
    if (!CHECK(rc == 0 && read_csv("e3/eval_buckets.csv", 6, z, 4) == 4)) fprintf(stderr, "%s\n", out);
    for (int b = 0; b < 4; b++) {
        CHECK(z[6 * b + 3] == 128);
        CHECK_REL(z[6 * b + 4], v[0][6 * b + 4], 1e-5);
    }
    /* positions 0..30 predict random tokens (never trained there: above chance), 31..62
     * copies, 63 the next window's first token (1 of bucket 3's 16 unpredictable) */
    CHECK(v[1][4] > log(V) && v[1][6 + 4] > log(V) && v[1][12 + 4] < 0.01);
    CHECK(v[1][18 + 4] > v[1][6 + 4] / 32 && v[1][18 + 4] < v[1][6 + 4] / 8);
}

static void test_passkey(void) {
    printf("3. --passkey\n");
    char out[65536];
    double v[20 * 8];
    int rc = ringtrain(2, "--passkey job.yaml --set checkpoint.dir=ck --set eval.out=p", out, sizeof out);
    if (!CHECK(rc == 0)) fprintf(stderr, "%s\n", out);
    CHECK(read_csv("p/passkey.csv", 8, v, 20) == 20);
    int hot = 0;
    for (int i = 0; i < 20; i++) {
        const double *r = v + 8 * i;
        int64_t n = (int64_t)r[0], pos = (int64_t)r[2];
        CHECK(n == L * (i / 5 + 1) / 4 && r[1] == (i % 5) / 4.0 && r[3] == 4);
        CHECK(pos == (int64_t)floor(r[1] * (double)(n - 2 * K) + 0.5));
        /* the copy model retrieves exactly where the key lies L/2 before the answer */
        int want = pos == n - K - L / 2;
        hot += want;
        if (!CHECK(r[5] == (want ? 1.0 : 0.0)))
            fprintf(stderr, "  cell n %lld depth %g: accuracy %g, expected %d\n", (long long)n, r[1], r[5], want);
    }
    CHECK(hot == 1);
    rc = ringtrain(2, "--passkey job.yaml --set checkpoint.dir=ck --set eval.out=p0 --no-resume", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "\"retrieved\":0,"));
    /* an id spec: the needle text before the key moves it by its length */
    put("ids.txt", "# test spec\nfiller: 1 2 3\nneedle: 4 5 6\nafter: 7\nquestion: 8 9\n"
                   "digits: 20 21 22 23 24 25 26 27 28 29\n");
    rc = ringtrain(1, "--passkey job.yaml --no-resume --set eval.out=p1 --set eval.passkey_ids=ids.txt "
                      "--set eval.passkey_depths=1 --set eval.passkey_lengths=1", out, sizeof out);
    CHECK(rc == 0 && read_csv("p1/passkey.csv", 8, v, 1) == 1);
    CHECK(v[0] == L && v[2] == 3 + floor(0.5 * (L - 3 - 1 - 2 - 2 * K) + 0.5));
    /* bad input: exit 2 naming the file and line, or the key */
    put("bad.txt", "filler: 1 2\ndigits: 0 1 2 3 4 5 6 7 8 99\n");
    rc = ringtrain(2, "--passkey job.yaml --set eval.out=p1 --set eval.passkey_ids=bad.txt", out, sizeof out);
    CHECK(rc == 2 && strstr(out, "bad.txt:2: digits: \"99\" is not a token id in [0, 32)") &&
          tu_count(out, "is not a token id") == 1);
    put("bad2.txt", "filler: 1 2\nnedle: 3\n");
    rc = ringtrain(1, "--passkey job.yaml --set eval.out=p1 --set eval.passkey_ids=bad2.txt", out, sizeof out);
    CHECK(rc == 2 && strstr(out, "bad2.txt:2: unknown part \"nedle\""));
    rc = ringtrain(1, "--passkey job.yaml --set eval.out=p1 --set eval.passkey_lengths=8", out, sizeof out);
    CHECK(rc == 2 && strstr(out, "--set: eval.passkey_lengths: the shortest context length data.seq_len 64 / 8 = 8"));
    rc = ringtrain(1, "job.yaml --set log.eval_every=5 --set 'data.eval=\"\"'", out, sizeof out);
    CHECK(rc == 2 && strstr(out, "log.eval_every: 5 needs data.eval"));
    rc = ringtrain(1, "--eval job.yaml --set eval.buckets=65", out, sizeof out);
    CHECK(rc == 2 && strstr(out, "eval.buckets: 65 is more than data.seq_len 64"));
}

static void test_mfu(void) {
    printf("4. MFU\n");
    char out[65536];
    int rc = ringtrain(2, "job.yaml --no-resume --set train.steps=5 --set train.warmup_steps=0 --set log.every=1 "
                          "--set device.peak_tflops=0.002 "
                          "--set log.metrics=m.jsonl", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "mfu: against 0.002 TFLOP/s per GPU (device.peak_tflops)"));
    CHECK(tu_count(out, "% ") >= 5 && strstr(out, "tok/s  mfu "));
    /* model FLOPs of a sequence (ARCHITECTURE.md section 6): d 64, 2 layers, 4 heads of 16, 2 kv, ffn 128 */
    double d = 64, per_layer = d * 64 * 2 + d * 32 * 2 + 3 * d * 128, flops = 6 * (2 * per_layer + V * d) * L +
                                                                            6.0 * 2 * L * L * 4 * 16;
    char *m = slurp("m.jsonl");
    int n = 0;
    for (char *line = m ? strtok(m, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cJSON *mfu = cJSON_GetObjectItem(j, "mfu"), *dt = cJSON_GetObjectItem(j, "step_s");
        if (cJSON_IsNumber(mfu) && cJSON_IsNumber(dt)) {
            /* 4 sequences a step, 2 ranks; step_s and mfu are printed to 6 digits */
            CHECK_REL(mfu->valuedouble, flops * 4 / (dt->valuedouble * 0.002e12 * 2), 2e-5);
            n++;
        }
        cJSON_Delete(j);
    }
    CHECK(n == 5);
    free(m);
    CHECK(mfu_device_tflops("NVIDIA H200") == 989 && mfu_device_tflops("NVIDIA H100 80GB HBM3") == 989);
    CHECK(mfu_device_tflops("NVIDIA H100 PCIe") == 756 && mfu_device_tflops("NVIDIA A100-SXM4-80GB") == 312);
    CHECK(mfu_device_tflops("NVIDIA H200 NVL") == 0 && mfu_device_tflops("NVIDIA GeForce RTX 4090") == 0);
    char why[256];
    CHECK(mfu_peak_flops(0, NULL, why, sizeof why) == 0 && !why[0]);
    CHECK(mfu_peak_flops(0, "NVIDIA H200", why, sizeof why) == 989e12 && !why[0]);
    CHECK(mfu_peak_flops(0, "Tesla T4", why, sizeof why) == 0 && strstr(why, "Tesla T4") &&
          strstr(why, "device.peak_tflops"));
    CHECK(mfu_peak_flops(500, "Tesla T4", why, sizeof why) == 500e12);
}

int main(void) {
    char root[1024];
    if (!getenv("RT_ROOT")) {
        if (!realpath(".", root)) abort();
        setenv("RT_ROOT", root, 1);
    }
    dir = tu_tmpdir("eval");
    /* data.eval: 8 copy-task windows of L tokens and one token more (the last label) */
    int32_t *tok = calloc(8 * L + 1, sizeof *tok), lab[L];
    for (int w = 0; w < 8; w++) data_copy_task(99, w, L, V, tok + w * L, lab);
    char p[1024];
    snprintf(p, sizeof p, "%s/eval.npy", dir);
    tu_write_npy(p, "<i4", "(513,)", tok, (8 * L + 1) * sizeof *tok);
    snprintf(p, sizeof p, "%s/eval4.npy", dir);
    tu_write_npy(p, "<i4", "(257,)", tok, (4 * L + 1) * sizeof *tok);
    free(tok);
    put("job.yaml", "model: {vocab_size: 32, dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 128}\n"
                    "data: {synthetic: copy, seq_len: 64, seed: 7, eval: eval.npy}\n"
                    "train: {steps: 400, seqs_per_step: 4, lr: 3e-3, min_lr: 3e-4, warmup_steps: 20, "
                    "weight_decay: 0.0, grad_clip: 1.0}\n"
                    "log: {every: 100, eval_windows: 4}\n");
    test_training_eval();
    test_buckets();
    test_passkey();
    test_mfu();
    int rc = tu_done("test_eval");
    if (!rc) {
        snprintf(p, sizeof p, "rm -rf %s", dir);
        char out[256];
        tu_run(p, out, sizeof out);
    }
    return rc;
}
