/* main: the ringtrain command line. Rank 0 parses and checks the job and the places it
 * writes, locking checkpoint.dir for a training run (exit 2 on bad input, before anything
 * is allocated), and broadcasts it; every rank checks that it sees that checkpoint.dir; every rank binds to its cores
 * (affinity.c), then trains, evaluates (--eval, --passkey) or exports (run.c), or, with --plan,
 * plans its memory without touching a GPU (run_plan.c; --plan --ranks N: one process plans the
 * N ranks). Exit codes: 0 ok, 1 runtime failure, 2 bad
 * input, 3 does not fit, 130 stopped by SIGINT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "affinity.h"
#include "config.h"
#include "job.h"
#include "outputs.h"
#include "run.h"
#include "runtime.h"
#include "signals.h"

enum mode { MODE_TRAIN, MODE_EVAL, MODE_PASSKEY, MODE_PLAN, MODE_EXPORT };

struct args {
    int         mode;
    int         no_resume;
    int         ranks;      /* --ranks N: plan an N-rank job in this process (0: the MPI world's) */
    const char *job;
    const char *export_dir;
    const char *sets[64];
    int         nsets;
};

static const char *usage =
    "usage: ringtrain JOB.yaml [--set key=value]... [--no-resume]  train (resumes from the newest\n"
    "                                                      checkpoint in checkpoint.dir unless --no-resume)\n"
    "       ringtrain --eval JOB.yaml [--set key=value]...  mean token loss over data.eval (or data.train) of the\n"
    "                                                      newest checkpoint (the initial weights with --no-resume),\n"
    "                                                      and by position bucket: eval.out/eval_buckets.csv\n"
    "       ringtrain --passkey JOB.yaml [--set key=value]... passkey retrieval over context lengths x needle\n"
    "                                                      depths (eval.passkey_*): eval.out/passkey.csv\n"
    "       ringtrain --export DIR JOB.yaml                 write the newest checkpoint as an HF model dir\n"
    "       ringtrain --plan JOB.yaml [--ranks N] [--set key=value]...  memory plan (every buffer of a rank),\n"
    "                                                      offload, expected step time; touches no GPU; exit 3 when\n"
    "                                                      it does not fit device.memory_gib (e.g. --set\n"
    "                                                      device.memory_gib=139.5) or the host memory of a node\n"
    "                                                      (device.host_memory_gib); --ranks N plans every rank of\n"
    "                                                      an N-rank job in this one process (no mpirun)\n"
    "       ringtrain --help | --help-config[=markdown] | --version\n"
    "Run under mpirun for several ranks: mpirun -np 4 ./ringtrain job.yaml\n"
    "Signals: SIGTERM saves a checkpoint and exits 0, SIGUSR1 saves and continues, SIGINT stops.\n"
    "Exit codes: 0 success, 1 runtime failure, 2 bad input, 3 does not fit, 130 SIGINT.\n";

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
        } else if (!strcmp(s, "--passkey")) {
            a->mode = MODE_PASSKEY;
        } else if (!strcmp(s, "--plan")) {
            a->mode = MODE_PLAN;
        } else if (!strcmp(s, "--ranks")) {
            char *end = "";
            long n = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (n < 1 || n > 1 << 20 || *end) return snprintf(err, errlen, "--ranks needs a number of ranks in [1, %d]", 1 << 20), 2;
            a->ranks = (int)n;
            i++;
        } else if (!strcmp(s, "--no-resume")) {
            a->no_resume = 1;
        } else if (!strcmp(s, "--export")) {
            if (i + 1 >= argc) return snprintf(err, errlen, "--export needs a directory"), 2;
            a->mode = MODE_EXPORT;
            a->export_dir = argv[++i];
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
    if (a->ranks && a->mode != MODE_PLAN) return snprintf(err, errlen, "--ranks goes with --plan only"), 2;
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

/* Rank 0: the places this mode writes can be written; a training run locks checkpoint.dir. */
static int check_outputs(const struct args *a, const struct cfg *c, struct ckpt_lock *lock, char *err,
                         size_t errlen) {
    if (a->mode == MODE_TRAIN) return outputs_check_train(c, lock, err, errlen);
    if (a->mode == MODE_EXPORT) return outputs_check_export(a->export_dir, err, errlen);
    if (a->mode == MODE_EVAL) return outputs_check_eval(c, "eval_buckets.csv", err, errlen);
    if (a->mode == MODE_PASSKEY) return outputs_check_eval(c, "passkey.csv", err, errlen);
    return 0;
}

int main(int argc, char **argv) {
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    struct args a;
    char err[2048] = "";
    int rc = parse_args(argc, argv, &a, rt.rank == 0, err, sizeof err);
    if (rc == 0 && a.ranks && rt.world > 1) {
        snprintf(err, sizeof err, "--plan --ranks %d plans every rank in one process: run it without mpirun (this "
                 "is %d ranks); mpirun -np N ringtrain --plan plans N ranks without --ranks", a.ranks, rt.world);
        rc = 2;
    }
    /* Training acts on SIGTERM / SIGUSR1 / SIGINT from here on, loading included (a signal
     * before the first step is handled at it); the other modes keep the default actions. */
    if (rc == 0 && a.mode == MODE_TRAIN) signals_install();
    struct job *j = rt_calloc(1, sizeof *j, "job");
    struct ckpt_lock lock = {.fd = -1};
    if (rc == 0 && rt.rank == 0 && load_job(&a, a.ranks ? a.ranks : rt.world, j, err, sizeof err)) rc = 2;
    if (rc == 0 && rt.rank == 0 && check_outputs(&a, &j->cfg, &lock, err, sizeof err)) rc = 2;
    MPI_CHECK(MPI_Bcast(&rc, 1, MPI_INT, 0, rt.world_comm));
    if (rc) {
        if (rc == 2 && rt.rank == 0) fprintf(stderr, "ringtrain: %s\n", err);
        free(j);
        rt_finalize(&rt);
        return rc == 1 ? 0 : rc;
    }
    MPI_CHECK(MPI_Bcast(j, (int)sizeof *j, MPI_BYTE, 0, rt.world_comm));
    if (a.mode == MODE_TRAIN && outputs_check_shared(&j->cfg, &rt, err, sizeof err)) {
        if (rt.rank == 0) fprintf(stderr, "ringtrain: %s\n", err);
        ckpt_lock_release(&lock);
        free(j);
        rt_finalize(&rt);
        return 2;
    }
    /* A plan touches no GPU, so it neither looks for one nor binds near it. */
    if (a.mode != MODE_PLAN) affinity_setup(&rt, &j->cfg.device);
    if (a.mode == MODE_PLAN) rc = run_plan(j, &rt, a.ranks > 0);
    else if (a.mode == MODE_EVAL) rc = run_eval(j, &rt, !a.no_resume);
    else if (a.mode == MODE_PASSKEY) rc = run_passkey(j, &rt, !a.no_resume);
    else if (a.mode == MODE_EXPORT) rc = run_export(j, &rt, a.export_dir);
    else rc = run_train(j, &rt, !a.no_resume);
    ckpt_lock_release(&lock);
    free(j);
    fflush(stdout);
    rt_finalize(&rt);
    return rc;
}
