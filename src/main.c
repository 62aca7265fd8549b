/* main: the ringtrain command line. Rank 0 parses and checks the job (exit 2 on bad
 * input, before anything is allocated) and broadcasts it; every rank then trains or
 * evaluates. Rank 0 prints a progress line per log.every steps, writes the metrics JSONL,
 * and ends with one JSON object on stdout. Exit codes: 0 ok, 1 runtime failure,
 * 2 bad input, 3 does not fit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config.h"
#include "job.h"
#include "runtime.h"
#include "train.h"

#define PEAK_FLOPS 989e12 /* per GPU, ARCHITECTURE.md section 6 */

enum mode { MODE_TRAIN, MODE_EVAL, MODE_PLAN };

struct args {
    int         mode;
    const char *job;
    const char *sets[64];
    int         nsets;
};

static const char *usage =
    "usage: ringtrain JOB.yaml [--set key=value]...         train\n"
    "       ringtrain --eval JOB.yaml [--set key=value]...  mean token loss over data.eval (or data.train)\n"
    "       ringtrain --plan JOB.yaml [--set key=value]...  memory plan (not available yet)\n"
    "       ringtrain --help | --help-config[=markdown] | --version\n"
    "Run under mpirun for several ranks: mpirun -np 4 ./ringtrain job.yaml\n"
    "Exit codes: 0 success, 1 runtime failure, 2 bad input, 3 does not fit.\n";

/* 0: run; 1: done (help printed); 2: bad usage (message in err). */
static int parse_args(int argc, char **argv, struct args *a, int print, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            if (print) fputs(usage, stdout);
            return 1;
        } else if (!strcmp(s, "--version")) {
            if (print) printf("ringtrain %s\n", RT_VERSION);
            return 1;
        } else if (!strcmp(s, "--help-config") || !strcmp(s, "--help-config=text")) {
            if (print) cfg_print_help(stdout, "text");
            return 1;
        } else if (!strcmp(s, "--help-config=markdown")) {
            if (print) cfg_print_help(stdout, "markdown");
            return 1;
        } else if (!strcmp(s, "--eval")) {
            a->mode = MODE_EVAL;
        } else if (!strcmp(s, "--plan")) {
            a->mode = MODE_PLAN;
        } else if (!strcmp(s, "--set") || !strncmp(s, "--set=", 6)) {
            const char *kv = s[5] == '=' ? s + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!kv) return snprintf(err, errlen, "--set needs key=value"), 2;
            if (a->nsets == (int)(sizeof a->sets / sizeof a->sets[0])) return snprintf(err, errlen, "too many --set"), 2;
            a->sets[a->nsets++] = kv;
        } else if (s[0] == '-') {
            return snprintf(err, errlen, "unknown option %s (see --help)", s), 2;
        } else if (a->job) {
            return snprintf(err, errlen, "more than one job file (%s, %s)", a->job, s), 2;
        } else {
            a->job = s;
        }
    }
    if (!a->job) return snprintf(err, errlen, "no job file given (see --help)"), 2;
    return 0;
}

/* Rank 0: load, override, validate and resolve the job. */
static int load_job(const struct args *a, int world, struct job *j, char *err, size_t errlen) {
    struct cfg *c = malloc(sizeof *c);
    if (!c) return snprintf(err, errlen, "out of memory"), -1;
    cfg_defaults(c);
    int rc = cfg_load_file(c, a->job, err, errlen);
    for (int i = 0; !rc && i < a->nsets; i++) rc = cfg_apply_set(c, a->sets[i], err, errlen);
    if (!rc) rc = cfg_validate(c, err, errlen);
    if (!rc) rc = job_resolve(j, c, world, err, errlen);
    free(c);
    return rc;
}

static double peak_rss_gib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / (1024.0 * 1024.0); /* KiB on Linux */
}

static void print_start(const struct trainer *t, const struct runtime *rt) {
    const struct job *j = &t->job;
    const struct model_config *mc = &j->mc;
    printf("ringtrain %s: %d rank%s (cp %d x dp %d), backend %s, %s attention, checkpointing %s\n",
           RT_VERSION, rt->world, rt->world > 1 ? "s" : "", j->cp, j->dp, t->model.be->name,
           j->cfg.parallel.attention == RING_ZIGZAG ? "zigzag ring" : "plain ring",
           (const char *[]){"none", "full", "selective"}[j->cfg.memory.checkpointing]);
    printf("model: %lld parameters, vocab %d, dim %d, %d layers, %d heads (%d kv, head dim %d), ffn %d%s\n",
           (long long)t->model.pt.total, mc->vocab_size, mc->dim, mc->n_layers, mc->n_heads,
           mc->n_kv_heads, mc->head_dim, mc->ffn_dim, mc->tie_embeddings ? ", tied embeddings" : "");
    printf("data: %s, seq_len %lld (%lld tokens per rank), %d sequence%s per step\n",
           j->cfg.data.synthetic == SYNTHETIC_COPY ? "synthetic copy task" : j->cfg.data.train,
           (long long)t->L, (long long)t->T, j->cfg.train.seqs_per_step,
           j->cfg.train.seqs_per_step > 1 ? "s" : "");
    fflush(stdout);
}

static void run_train(struct trainer *t, const struct runtime *rt) {
    const struct cfg *c = &t->job.cfg;
    FILE *metrics = NULL;
    if (rt->rank == 0) {
        print_start(t, rt);
        if (c->log.metrics[0] && !(metrics = fopen(c->log.metrics, "w")))
            RT_FATAL("log.metrics: cannot open %s for writing", c->log.metrics);
    }
    double flops_seq = train_flops_per_seq(&t->job.mc, t->L);
    double t_start = MPI_Wtime(), elapsed = 0;
    int64_t tokens_total = 0;
    struct step_stats st = {0};
    for (int64_t step = 0; step < c->train.steps; step++) {
        double t0 = MPI_Wtime();
        trainer_step(t, &st);
        double dt = MPI_Wtime() - t0;
        double mem = peak_rss_gib();
        comm_all_reduce(&t->world, &mem, &mem, 1, COMM_F64, COMM_MAX);
        tokens_total += st.tokens;
        elapsed = MPI_Wtime() - t_start;
        double tps = st.tokens / dt;
        double mfu = flops_seq * c->train.seqs_per_step / (dt * PEAK_FLOPS * rt->world);
        if (rt->rank != 0) continue;
        if ((step + 1) % c->log.every == 0 || step + 1 == c->train.steps) {
            double eta = elapsed / (double)(step + 1) * (double)(c->train.steps - step - 1);
            printf("step %lld/%lld  loss %.4f  lr %.3e  grad_norm %.3f  %.0f tok/s  mfu %.2e  mem %.2f GiB  eta %.0fs\n",
                   (long long)(step + 1), (long long)c->train.steps, st.loss, st.lr, st.grad_norm, tps,
                   mfu, mem, eta);
            fflush(stdout);
        }
        if (metrics) {
            fprintf(metrics,
                    "{\"step\":%lld,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens\":%lld,"
                    "\"loss_tokens\":%lld,\"tokens_per_s\":%.6g,\"mfu\":%.6g,\"mem_gib\":%.6g,\"step_s\":%.6g}\n",
                    (long long)(step + 1), st.loss, st.lr, st.grad_norm, (long long)st.tokens,
                    (long long)st.loss_tokens, tps, mfu, mem, dt);
            fflush(metrics);
        }
    }
    if (rt->rank == 0) {
        if (metrics && fclose(metrics) != 0) RT_FATAL("log.metrics: error writing %s", c->log.metrics);
        printf("{\"event\":\"done\",\"step\":%lld,\"loss\":%.9g,\"tokens\":%lld,\"elapsed_s\":%.3f,"
               "\"tokens_per_s\":%.6g,\"ranks\":%d}\n",
               (long long)t->step, st.loss, (long long)tokens_total, elapsed,
               elapsed > 0 ? tokens_total / elapsed : 0.0, rt->world);
    }
}

static void run_eval(struct trainer *t, const struct runtime *rt) {
    const struct cfg *c = &t->job.cfg;
    const char *path = c->data.eval[0] ? c->data.eval : c->data.train;
    if (c->data.synthetic != SYNTHETIC_NONE && !c->data.eval[0])
        RT_FATAL("--eval needs data.eval with a synthetic data.train");
    int64_t windows = 0;
    double loss = trainer_eval(t, path, &windows);
    if (rt->rank == 0) {
        printf("eval: %s: %lld windows of %lld tokens, mean loss %.6f\n", path, (long long)windows,
               (long long)t->L, loss);
        printf("{\"event\":\"done\",\"eval\":\"%s\",\"windows\":%lld,\"loss\":%.9g}\n", path,
               (long long)windows, loss);
    }
}

int main(int argc, char **argv) {
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    struct args a;
    char err[2048] = "";
    int rc = parse_args(argc, argv, &a, rt.rank == 0, err, sizeof err);
    if (rc == 0 && a.mode == MODE_PLAN) {
        snprintf(err, sizeof err, "--plan: the memory planner is not available in this version");
        rc = 2;
    }
    struct job *j = rt_calloc(1, sizeof *j, "job");
    if (rc == 0 && rt.rank == 0 && load_job(&a, rt.world, j, err, sizeof err)) rc = 2;
    MPI_CHECK(MPI_Bcast(&rc, 1, MPI_INT, 0, rt.world_comm));
    if (rc) {
        if (rc == 2 && rt.rank == 0) fprintf(stderr, "ringtrain: %s\n", err);
        free(j);
        rt_finalize(&rt);
        return rc == 1 ? 0 : rc;
    }
    MPI_CHECK(MPI_Bcast(j, (int)sizeof *j, MPI_BYTE, 0, rt.world_comm));
    struct train_opts opts = {0};
    struct trainer *t = rt_calloc(1, sizeof *t, "trainer");
    trainer_init(t, j, &rt, &opts);
    if (a.mode == MODE_EVAL) run_eval(t, &rt);
    else run_train(t, &rt);
    trainer_free(t);
    free(t);
    free(j);
    fflush(stdout);
    rt_finalize(&rt);
    return 0;
}
