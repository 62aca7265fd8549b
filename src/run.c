/* run: training loop with checkpoints, resume, signals and the numerical guard;
 * evaluation; export. Rank 0 does the printing; every rank writes and reads its own
 * slices of a checkpoint (train_state.c). */
#include "run.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "corpus.h"
#include "eval.h"
#include "hf_export.h"
#include "mem_plan.h"
#include "metrics_file.h"
#include "mfu.h"
#include "passkey.h"
#include "signals.h"
#include "train.h"

struct run {
    struct trainer *t;
    const struct runtime *rt;
    const struct cfg *c;
    FILE *metrics;
    char last_ckpt[CKPT_NAME_MAX]; /* newest checkpoint written or loaded; "" = none */
    double t_ckpt;                 /* seconds spent saving in the current step */
    double peak_flops;             /* MFU's denominator per GPU (mfu.h); 0 = no MFU */
};

static double peak_rss_gib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / (1024.0 * 1024.0); /* KiB on Linux */
}

/* Test hook: RINGTRAIN_TEST_CKPT_KILL / _FAIL = "STEP:BYTES[:RANK]" makes the save of that
 * step die by SIGKILL / fail with ENOSPC on rank RANK (default 0) after it wrote BYTES bytes.
 * Unset in a real run. */
static void test_faults(int64_t step, struct ckpt_faults *f) {
    memset(f, 0, sizeof *f);
    const char *names[2] = {"RINGTRAIN_TEST_CKPT_KILL", "RINGTRAIN_TEST_CKPT_FAIL"};
    int64_t *dst[2] = {&f->kill_after, &f->fail_after};
    for (int i = 0; i < 2; i++) {
        const char *e = getenv(names[i]);
        long long s, b;
        int rank = 0;
        if (e && sscanf(e, "%lld:%lld:%d", &s, &b, &rank) >= 2 && s == step) *dst[i] = b, f->rank = rank;
    }
}

/* Test hook: RINGTRAIN_TEST_POISON = "FROM:TO" gives steps [FROM, TO) a NaN gradient (the
 * numerical guard through the command line). Unset in a real run. */
static void test_poison(struct train_opts *o) {
    const char *e = getenv("RINGTRAIN_TEST_POISON");
    long long from, to;
    memset(o, 0, sizeof *o);
    if (e && sscanf(e, "%lld:%lld", &from, &to) == 2) o->poison_from = from, o->poison_to = to;
}

/* Bytes of the files directly in dir (a checkpoint's); 0 when it cannot be read. */
static double dir_bytes(const char *dir) {
    DIR *d = opendir(dir);
    double total = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        char path[CFG_PATH_MAX + 512];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!stat(path, &st) && S_ISREG(st.st_mode)) total += (double)st.st_size;
    }
    closedir(d);
    return total;
}

/* Rank 0: a line saying the checkpoint just written, its size and time, and a checkpoint
 * event in the metrics. */
static void announce_checkpoint(const struct run *r, double seconds) {
    if (r->rt->rank != 0) return;
    char dir[CFG_PATH_MAX + CKPT_NAME_MAX + 2];
    snprintf(dir, sizeof dir, "%s/%s", r->c->checkpoint.dir, r->last_ckpt);
    double gib = dir_bytes(dir) / 1073741824.0;
    printf("checkpoint %s written to %s (%.3g GiB, %.1f s)\n", r->last_ckpt, r->c->checkpoint.dir, gib, seconds);
    fflush(stdout);
    if (r->metrics) {
        fprintf(r->metrics, "{\"event\":\"checkpoint\",\"step\":%lld,\"name\":\"%s\",\"gib\":%.6g,\"seconds\":%.6g}\n",
                (long long)r->t->step, r->last_ckpt, gib, seconds);
        fflush(r->metrics);
    }
}

/* Collective. Returns 0 when saved. */
static int save(struct run *r) {
    struct trainer *t = r->t;
    double t0 = MPI_Wtime();
    char err[1024] = "";
    struct ckpt_faults f;
    test_faults(t->step, &f);
    int rc = trainer_save(t, r->c->checkpoint.dir, r->c->checkpoint.keep, &f, err, sizeof err);
    if (rc && r->rt->rank == 0) fprintf(stderr, "ringtrain: checkpoint of step %lld failed: %s\n", (long long)t->step, err);
    if (!rc) snprintf(r->last_ckpt, sizeof r->last_ckpt, "step-%08lld", (long long)t->step);
    double dt = MPI_Wtime() - t0;
    r->t_ckpt += dt;
    if (!rc) announce_checkpoint(r, dt);
    return rc;
}

/* Collective, before the first step: load the newest usable checkpoint of checkpoint.dir
 * (the weights, and with `moments` the AdamW moments and the step, cursor and counters).
 * Returns 0 (loaded: r->last_ckpt names it; or none: r->last_ckpt is "") or an exit code.
 * Complete checkpoints none of which verifies stop the run (2) unless
 * checkpoint.fresh_start. A checkpoint is verified (every rank a share of its blocks) before
 * any rank reads it into the live weights, so a corrupt one changes nothing. */
static int load_checkpoint(struct run *r, int moments) {
    struct trainer *t = r->t;
    const char *dir = r->c->checkpoint.dir;
    struct ckpt_meta meta, mine;
    char err[2048];
    memset(&meta, 0, sizeof meta);
    trainer_meta(t, &mine);
    int found = trainer_load(t, dir, stderr, moments, r->last_ckpt, &meta, err, sizeof err);
    int rank0 = r->rt->rank == 0;
    if (found == -2 && r->c->checkpoint.fresh_start) {
        if (rank0) fprintf(stderr, "ringtrain: warning: %s; starting from step 0 as checkpoint.fresh_start asks\n", err);
        found = 0;
    } else if (found == -2) {
        if (rank0) fprintf(stderr, "ringtrain: %s; stopping rather than starting afresh over them: repair or move "
                           "them, or set checkpoint.fresh_start: true\n", err);
    } else if (found < 0) {
        if (rank0) fprintf(stderr, "ringtrain: %s\n", err);
    } else if (found && moments && meta.job_hash != mine.job_hash && rank0) {
        fprintf(stderr, "ringtrain: warning: %s/%s was written by a job with other data, token "
                "files or optimizer settings; resuming with the current ones\n", dir, r->last_ckpt);
    }
    if (found <= 0) r->last_ckpt[0] = 0;
    if (found < 0) return 2;
    if (!found || !moments) return 0;
    trainer_restore(t, &meta);
    if (rank0)
        printf("resuming from %s/%s at step %lld (written by %d rank%s, cp %d x dp %d)\n", dir, r->last_ckpt,
               (long long)meta.step, meta.world, meta.world > 1 ? "s" : "", meta.cp, meta.dp);
    return 0;
}

/* The optimizer state each rank holds (pstore.h): its shard of the fp32 master weights and
 * the two AdamW moments, and where. */
void run_print_optimizer(const struct trainer *t) {
    const struct pstore *ps = &t->model.ps;
    char mine[32], all[32], how[160];
    mem_bytes_text(3.0 * (double)ps->S * sizeof(float), mine, sizeof mine);
    mem_bytes_text(3.0 * (double)ps->pt.total * sizeof(float), all, sizeof all);
    printf("optimizer: AdamW, master weights and moments 3 x %lld floats = %s per rank on the %s (%s; %s "
           "unsharded)\n", (long long)ps->S, mine, ps->host_opt ? "host" : "device", pstore_describe(ps, how, sizeof how),
           all);
    int64_t lent[PSTORE_LENDERS] = {0};
    int units = 0;
    for (int i = 0; i < ps->n_units; i++) {
        int64_t any = 0;
        for (int k = 0; k < PSTORE_LENDERS; k++) lent[k] += ps->u[i].nlent[k], any += ps->u[i].nlent[k];
        units += any > 0;
    }
    if (!lent[0] && !lent[1]) return;
    char attn[32];
    mem_bytes_text((double)lent[0] * sizeof(float), mine, sizeof mine);
    mem_bytes_text((double)lent[1] * sizeof(float), attn, sizeof attn);
    printf("  its reduced gradients: of %d layers, %s in the host rows of the next layer's offloaded input and %s in "
           "those of the layer's own saved attention output (free from the backward to the next forward), the rest "
           "in the gradient shard\n", units, mine, attn);
}

static void print_start(const struct trainer *t, const struct runtime *rt) {
    const struct job *j = &t->job;
    const struct model_config *mc = &j->mc;
    char ckpt[16], calls[96] = "";
    printf("ringtrain %s: %d rank%s (cp %d x dp %d), backend %s, %s attention, checkpointing %s\n",
           RT_VERSION, rt->world, rt->world > 1 ? "s" : "", j->cp, j->dp, t->model.be->name,
           j->cfg.parallel.attention == RING_ZIGZAG ? "zigzag ring" : "plain ring",
           cfg_choice("memory.checkpointing", j->cfg.memory.checkpointing, ckpt, sizeof ckpt));
    if (t->model.ring.blk)
        snprintf(calls, sizeof calls, "; calls of at most %d x %d tokens%s", t->model.ring.blk, t->model.ring.blk,
                 t->model.qblk ? ", the layers working query block by query block" : "");
    printf("attention kernels: %s%s\n", t->model.be->attention, calls);
    char arena[160];
    printf("%s, one allocation each, laid out by the memory plan\n",
           arena_text(&t->arena, t->model.be->host_memory, arena, sizeof arena));
    if (t->model.split < t->model.T) {
        const struct model *m = &t->model;
        printf("offload: the last %lld of %lld tokens of every layer's saved activations wait in %shost memory "
               "(%.2f GiB on rank 0)\n", (long long)(m->T - m->split), (long long)m->T,
               m->be->host_memory ? "" : "pinned ", model_offloaded_bytes(m, m->split, m->keep) / 1073741824.0);
    }
    if (j->cfg.memory.checkpointing == CKPT_AUTO)
        printf("checkpointing auto: the first %d of %d layers save their attention output (selective), the others "
               "recompute it (full)\n", t->model.keep, mc->n_layers);
    printf("model: %lld parameters, vocab %d, dim %d, %d layers, %d heads (%d kv, head dim %d), ffn %d%s\n",
           (long long)t->model.pt.total, mc->vocab_size, mc->dim, mc->n_layers, mc->n_heads,
           mc->n_kv_heads, mc->head_dim, mc->ffn_dim, mc->tie_embeddings ? ", tied embeddings" : "");
    printf("rope: %s\n", j->rope_note);
    char files[1024];
    corpus_list_text(j->cfg.data.train, files, sizeof files);
    printf("data: %s, seq_len %lld (%lld tokens per rank), %d sequence%s per step\n",
           j->cfg.data.synthetic == SYNTHETIC_COPY ? "synthetic copy task" : files,
           (long long)t->L, (long long)t->T, j->cfg.train.seqs_per_step,
           j->cfg.train.seqs_per_step > 1 ? "s" : "");
    run_print_optimizer(t);
    fflush(stdout);
}

/* ,"key":x with `digits` significant digits; a non-finite x (a diverged loss, a NaN norm) as
 * null, which JSON can hold (nan and inf are not JSON). */
static void json_num(FILE *f, const char *key, double x, int digits) {
    if (isfinite(x)) fprintf(f, ",\"%s\":%.*g", key, digits, x);
    else fprintf(f, ",\"%s\":null", key);
}

static void log_step(struct run *r, const struct step_stats *st, double dt, double elapsed, int64_t done_here) {
    const struct cfg *c = r->c;
    struct trainer *t = r->t;
    const struct backend *be = t->model.be;
    double mem = be->mem_gib ? be->mem_gib(be) : peak_rss_gib();
    comm_all_reduce(&t->ctl, &mem, &mem, 1, COMM_F64, COMM_MAX);
    if (r->rt->rank != 0) return;
    double tps = st->tokens / dt;
    /* no peak known: NAN, written as null */
    double mfu = r->peak_flops > 0 ? train_flops_per_seq(&t->job.mc, t->L) * c->train.seqs_per_step /
                                         (dt * r->peak_flops * r->rt->world) : NAN;
    int64_t step = t->step;
    if (step % c->log.every == 0 || step == c->train.steps || st->skipped) {
        double eta = elapsed / (double)done_here * (double)(c->train.steps - step);
        char mfu_text[32] = "";
        if (r->peak_flops > 0) snprintf(mfu_text, sizeof mfu_text, "  mfu %.1f%%", 100 * mfu);
        printf("step %lld/%lld  loss %.4f  lr %.3e  grad_norm %.3f  %.0f tok/s%s  mem %.2f GiB  eta %.0fs%s\n",
               (long long)step, (long long)c->train.steps, st->loss, st->lr, st->grad_norm, tps, mfu_text, mem, eta,
               st->skipped ? "  SKIPPED (non-finite)" : "");
        if (st->profiled)
            printf("  time: step %.3fs = kernels gemm %.3f attention %.3f xent %.3f optimizer %.3f other %.3f; "
                   "ring waits %.3f, gradient reduce %.3f, host optimizer waits %.3f\n", dt,
                   st->kernel_ms[PROF_GEMM] / 1e3, st->kernel_ms[PROF_ATTN] / 1e3, st->kernel_ms[PROF_XENT] / 1e3,
                   st->kernel_ms[PROF_OPTIM] / 1e3, st->kernel_ms[PROF_OTHER] / 1e3, st->t_ring_wait, st->t_reduce,
                   st->t_optim_wait);
        fflush(stdout);
    }
    if (r->metrics) {
        FILE *f = r->metrics;
        fprintf(f, "{\"step\":%lld", (long long)step);
        json_num(f, "loss", st->loss, 17);
        json_num(f, "lr", st->lr, 17);
        json_num(f, "grad_norm", st->grad_norm, 17);
        fprintf(f, ",\"tokens\":%lld,\"loss_tokens\":%lld", (long long)st->tokens, (long long)st->loss_tokens);
        json_num(f, "tokens_per_s", tps, 6);
        json_num(f, "mfu", mfu, 6);
        json_num(f, "mem_gib", mem, 6);
        json_num(f, "step_s", dt, 6);
        fprintf(f, ",\"skipped\":%s,\"skipped_steps\":%lld", st->skipped ? "true" : "false", (long long)t->skipped);
        json_num(f, "time_data_s", st->t_data, 6);
        json_num(f, "time_compute_s", st->t_compute, 6);
        json_num(f, "time_reduce_s", st->t_reduce, 6);
        json_num(f, "time_optim_s", st->t_optim, 6);
        json_num(f, "time_checkpoint_s", r->t_ckpt, 6);
        json_num(f, "time_ring_wait_s", st->t_ring_wait, 6);
        json_num(f, "time_optim_wait_s", st->t_optim_wait, 6);
        if (st->profiled) {
            static const char *const names[] = {[PROF_GEMM] = "kernel_gemm_s", [PROF_ATTN] = "kernel_attention_s",
                                                [PROF_XENT] = "kernel_xent_s", [PROF_OPTIM] = "kernel_optimizer_s",
                                                [PROF_OTHER] = "kernel_other_s"};
            for (int k = 0; k < PROF_NCAT; k++) json_num(f, names[k], st->kernel_ms[k] / 1e3, 6);
        }
        fputs("}\n", f);
        fflush(f);
    }
}

static void print_end(struct run *r, const char *event, const char *reason, const struct step_stats *st,
                      int64_t tokens, double elapsed) {
    if (r->rt->rank != 0) return;
    printf("{\"event\":\"%s\",%s%s%s\"step\":%lld", event, reason ? "\"reason\":\"" : "", reason ? reason : "",
           reason ? "\"," : "", (long long)r->t->step);
    json_num(stdout, "loss", st->loss, 9);
    printf(",\"tokens\":%lld,\"elapsed_s\":%.3f,\"tokens_per_s\":%.6g,\"skipped_steps\":%lld,\"checkpoint\":\"%s\","
           "\"ranks\":%d}\n", (long long)tokens, elapsed, elapsed > 0 ? tokens / elapsed : 0.0,
           (long long)r->t->skipped, r->last_ckpt, r->rt->world);
    fflush(stdout);
}

/* Returns 0, or 1 (the runtime failure's exit code) when the export failed. Collective. */
static int export_params(const struct run *r) {
    const struct cfg *c = r->c;
    int rc = 0;
    float *params = trainer_gather_params(r->t);
    if (r->rt->rank == 0) {
        char err[1024];
        const struct model_config *mc = &r->t->job.mc;
        int64_t positions = mc->max_positions > c->data.seq_len ? mc->max_positions : c->data.seq_len;
        char note[1024];
        rc = hf_export(c->export_.dir, mc, &r->t->model.pt, params, c->export_.dtype,
                       c->export_.shard_gib * 1073741824.0, positions,
                       c->model.init == INIT_HF ? c->model.hf_dir : NULL, note, sizeof note, err, sizeof err) ? 1 : 0;
        if (rc) fprintf(stderr, "ringtrain: export failed: %s\n", err);
        else printf("exported the model to %s (%s); %s\n", c->export_.dir,
                    c->export_.dtype == DTYPE_BF16 ? "bf16" : "fp32", note);
    }
    free(params);
    comm_broadcast(&r->t->ctl, &rc, 1, COMM_I32, 0);
    return rc;
}

/* A save that would fall in a run of non-finite steps is not made: the checkpoint to go
 * back to is the last good one, which the guard names. */
static void say_not_saved(const struct run *r) {
    if (r->rt->rank == 0)
        fprintf(stderr, "ringtrain: no checkpoint at step %lld: the last %lld step%s had a non-finite loss or "
                "gradient norm (the last good checkpoint is %s)\n", (long long)r->t->step,
                (long long)r->t->bad_in_row, r->t->bad_in_row > 1 ? "s" : "",
                r->last_ckpt[0] ? r->last_ckpt : "(none)");
}

/* Every log.eval_every steps and after the last: the mean loss over the first
 * log.eval_windows windows of data.eval, printed and recorded. Collective. */
static void eval_during_training(struct run *r) {
    const struct cfg *c = r->c;
    int64_t step = r->t->step;
    if (!c->log.eval_every || (step % c->log.eval_every && step != c->train.steps)) return;
    double t0 = MPI_Wtime();
    struct eval_result e;
    eval_run(r->t, c->data.eval, c->log.eval_windows, 1, &e);
    double dt = MPI_Wtime() - t0;
    if (r->rt->rank == 0) {
        printf("eval step %lld: loss %.4f  ppl %.4g  (%lld windows of data.eval, %lld tokens, %.1f s)\n",
               (long long)step, e.loss, exp(e.loss), (long long)e.windows, (long long)e.tokens, dt);
        fflush(stdout);
        if (r->metrics) {
            FILE *f = r->metrics;
            fprintf(f, "{\"eval_step\":%lld", (long long)step);
            json_num(f, "eval_loss", e.loss, 17);
            json_num(f, "eval_ppl", exp(e.loss), 17);
            fprintf(f, ",\"eval_windows\":%lld,\"eval_tokens\":%lld", (long long)e.windows, (long long)e.tokens);
            json_num(f, "eval_s", dt, 6);
            fputs("}\n", f);
            fflush(f);
        }
    }
    eval_result_free(&e);
}

static int train_loop(struct run *r) {
    struct trainer *t = r->t;
    const struct cfg *c = r->c;
    const int have_dir = c->checkpoint.dir[0] != 0;
    struct step_stats st;
    memset(&st, 0, sizeof st);
    int64_t tokens = 0, first = t->step;
    double t_start = MPI_Wtime();
    int saved_last = 0;
    /* Signals received while loading (the handlers are installed at start-up): SIGINT and
     * SIGTERM stop before the first step (the state is the initial or resumed one, which a
     * resume recreates: nothing to save); SIGUSR1 is kept for the first step's boundary. */
    int sig = signals_agree(&t->ctl);
    if (sig & (SIGNAL_STOP | SIGNAL_SAVE_EXIT)) {
        const char *name = sig & SIGNAL_STOP ? "SIGINT" : "SIGTERM";
        if (r->rt->rank == 0)
            fprintf(stderr, "ringtrain: %s before the first step: stopping at step %lld (nothing new to save)\n", name,
                    (long long)t->step);
        st.loss = NAN; /* no step ran: null in the JSON */
        print_end(r, "stopped", name, &st, tokens, 0);
        return sig & SIGNAL_STOP ? EXIT_INTERRUPTED : 0;
    }
    int early = sig & SIGNAL_SAVE_CONTINUE;
    while (t->step < c->train.steps) {
        double t0 = MPI_Wtime();
        r->t_ckpt = 0;
        int stop = trainer_step(t, &st);
        double dt = MPI_Wtime() - t0;
        tokens += st.tokens;
        sig = signals_agree(&t->ctl) | early;
        early = 0;
        saved_last = 0;
        if (stop) {
            if (r->rt->rank == 0)
                fprintf(stderr, "ringtrain: %lld steps in a row had a non-finite loss or gradient norm "
                        "(train.max_bad_steps); stopping. The last good checkpoint is %s\n",
                        (long long)t->bad_in_row, r->last_ckpt[0] ? r->last_ckpt : "(none)");
            log_step(r, &st, dt, MPI_Wtime() - t_start, t->step - first);
            print_end(r, "error", "non-finite", &st, tokens, MPI_Wtime() - t_start);
            return 1;
        }
        /* SIGTERM wins over a SIGINT of the same step: its checkpoint is what a requeued job needs. */
        if ((sig & SIGNAL_STOP) && !(sig & SIGNAL_SAVE_EXIT)) {
            log_step(r, &st, dt, MPI_Wtime() - t_start, t->step - first);
            if (r->rt->rank == 0) fprintf(stderr, "ringtrain: SIGINT: stopping after step %lld without saving a checkpoint\n", (long long)t->step);
            print_end(r, "stopped", "SIGINT", &st, tokens, MPI_Wtime() - t_start);
            return EXIT_INTERRUPTED;
        }
        const int asked = sig & (SIGNAL_SAVE_EXIT | SIGNAL_SAVE_CONTINUE);
        const int periodic = c->checkpoint.every && t->step % c->checkpoint.every == 0;
        if (asked && !have_dir && r->rt->rank == 0)
            fprintf(stderr, "ringtrain: signal received but checkpoint.dir is not set: no checkpoint written\n");
        if (have_dir && (asked || periodic)) {
            if (t->bad_in_row) {
                say_not_saved(r);
            } else {
                saved_last = save(r) == 0; /* a failed periodic save is reported; training goes on */
                if (!saved_last && (sig & SIGNAL_SAVE_EXIT)) return 1;
            }
        }
        log_step(r, &st, dt, MPI_Wtime() - t_start, t->step - first);
        if (!(sig & SIGNAL_SAVE_EXIT)) eval_during_training(r);
        if (sig & SIGNAL_SAVE_EXIT) {
            if (r->rt->rank == 0) {
                if (sig & SIGNAL_STOP) fprintf(stderr, "ringtrain: SIGTERM and SIGINT at the same step: SIGTERM wins\n");
                fprintf(stderr, "ringtrain: SIGTERM: %s at step %lld; exiting 0 so a requeued job resumes\n",
                        saved_last ? "checkpoint written" : "stopping", (long long)t->step);
            }
            print_end(r, "stopped", "SIGTERM", &st, tokens, MPI_Wtime() - t_start);
            return 0;
        }
    }
    if (have_dir && !saved_last && t->step > first) {
        if (t->bad_in_row) say_not_saved(r);
        else if (save(r)) return 1;
    }
    if (c->export_.dir[0] && export_params(r)) return 1;
    print_end(r, "done", NULL, &st, tokens, MPI_Wtime() - t_start);
    return 0;
}

static void run_open(struct run *r, const struct job *j, const struct runtime *rt) {
    memset(r, 0, sizeof *r);
    r->rt = rt;
    r->t = rt_calloc(1, sizeof *r->t, "trainer");
    struct train_opts o;
    test_poison(&o);
    trainer_init(r->t, j, rt, &o);
    r->c = &r->t->job.cfg;
}

static void run_close(struct run *r) {
    trainer_free(r->t);
    free(r->t);
}

int run_train(const struct job *j, const struct runtime *rt, int do_resume) {
    int rc = run_check_fit(j, rt);
    if (rc) return rc;
    struct run r;
    run_open(&r, j, rt);
    if (rt->rank == 0) print_start(r.t, rt);
    char why[512];
    const char *device = r.t->model.be->device_name;
    r.peak_flops = mfu_peak_flops(r.c->device.peak_tflops, device, why, sizeof why);
    if (rt->rank == 0 && why[0]) fprintf(stderr, "ringtrain: warning: %s\n", why);
    if (rt->rank == 0 && r.peak_flops > 0)
        printf("mfu: against %g TFLOP/s per GPU (%s)\n", r.peak_flops / 1e12,
               r.c->device.peak_tflops > 0 ? "device.peak_tflops" : device);
    if (r.c->checkpoint.dir[0] && do_resume) rc = load_checkpoint(&r, 1);
    /* A resumed run keeps the records up to its step and appends; a fresh one starts the file. */
    char err[4600];
    if (!rc && rt->rank == 0 && r.c->log.metrics[0] &&
        !(r.metrics = metrics_open(r.c->log.metrics, r.t->step, err, sizeof err)))
        RT_FATAL("log.metrics: %s", err);
    if (!rc) rc = train_loop(&r);
    if (r.metrics && fclose(r.metrics) != 0) RT_FATAL("log.metrics: error writing %s", r.c->log.metrics);
    run_close(&r);
    return rc;
}

/* Collective: the weights --eval and --passkey look at: the newest checkpoint of
 * checkpoint.dir (unless --no-resume), else the initial ones; rank 0 says which. */
static int load_for_eval(struct run *r, int do_resume) {
    const char *dir = r->c->checkpoint.dir;
    int rc = dir[0] && do_resume ? load_checkpoint(r, 0) : 0;
    if (!rc && r->rt->rank == 0) {
        if (r->last_ckpt[0]) printf("evaluating checkpoint %s/%s\n", dir, r->last_ckpt);
        else printf("evaluating the initial weights (%s%s)\n", !dir[0] ? "checkpoint.dir is not set" :
                    !do_resume ? "--no-resume" : "no checkpoint in ", dir[0] && do_resume ? dir : "");
    }
    return rc;
}

/* Rank 0: the --eval table and eval.out/eval_buckets.csv. Returns 0 or 1 (not written). */
static int report_buckets(const struct eval_result *e, const char *out) {
    char path[CFG_PATH_MAX + 32], err[CFG_PATH_MAX + 128];
    printf("loss by position (context length = tokens seen):\n%-8s %-19s %12s %10s %10s\n", "bucket", "context",
           "tokens", "loss", "ppl");
    for (int b = 0; b < e->nb; b++) {
        double loss = e->count[b] ? e->sum[b] / (double)e->count[b] : NAN;
        char ctx[48];
        snprintf(ctx, sizeof ctx, "%lld-%lld", (long long)eval_bucket_start(e, b) + 1,
                 (long long)eval_bucket_start(e, b + 1));
        printf("%-8d %-19s %12lld %10.4f %10.4g\n", b, ctx, (long long)e->count[b], loss, exp(loss));
    }
    snprintf(path, sizeof path, "%s/eval_buckets.csv", out);
    if (eval_write_csv(e, path, err, sizeof err)) {
        fprintf(stderr, "ringtrain: --eval: %s\n", err);
        return 1;
    }
    printf("wrote %s (scripts/plot_eval.py %s draws it)\n", path, path);
    return 0;
}

int run_eval(const struct job *j, const struct runtime *rt, int do_resume) {
    const struct cfg *c = &j->cfg;
    if (c->data.synthetic != SYNTHETIC_NONE && !c->data.eval[0]) {
        if (rt->rank == 0) fprintf(stderr, "ringtrain: --eval needs data.eval when data.synthetic is set\n");
        return 2;
    }
    int rc = run_check_fit(j, rt);
    if (rc) return rc;
    struct run r;
    run_open(&r, j, rt);
    rc = load_for_eval(&r, do_resume);
    if (!rc) {
        const char *path = c->data.eval[0] ? c->data.eval : c->data.train;
        struct eval_result e;
        eval_run(r.t, path, 0, c->eval.buckets, &e);
        if (rt->rank == 0) {
            char files[1024];
            corpus_list_text(path, files, sizeof files);
            printf("eval: %s: %lld windows of %lld tokens, mean loss %.6f, perplexity %.6g\n", files,
                   (long long)e.windows, (long long)r.t->L, e.loss, exp(e.loss));
            rc = report_buckets(&e, c->eval.out);
            if (isfinite(e.loss)) {
                printf("{\"event\":\"done\",\"windows\":%lld,\"loss\":%.9g,\"ppl\":%.9g}\n", (long long)e.windows,
                       e.loss, exp(e.loss));
            } else {
                fprintf(stderr, "ringtrain: --eval: the mean loss over %s is not finite (%g): the weights or the "
                        "forward pass overflowed\n", files, e.loss);
                printf("{\"event\":\"error\",\"reason\":\"non-finite\",\"windows\":%lld,\"loss\":null}\n",
                       (long long)e.windows);
            }
        }
        if (!isfinite(e.loss)) rc = 1;
        eval_result_free(&e);
        comm_broadcast(&r.t->ctl, &rc, 1, COMM_I32, 0);
    }
    run_close(&r);
    return rc;
}

/* Rank 0: the --passkey table and eval.out/passkey.csv. Returns 0 or 1 (not written). */
static int report_passkey(const struct passkey_grid *g, const char *out) {
    char path[CFG_PATH_MAX + 32], err[CFG_PATH_MAX + 128];
    printf("passkey retrieval (%d digits; trials retrieved of trials, rows: needle depth, columns: context length)\n"
           "%-8s", g->K, "depth");
    for (int a = 0; a < g->nl; a++) printf(" %10lld", (long long)g->cell[a * g->nd].n);
    printf("\n");
    for (int b = 0; b < g->nd; b++) {
        printf("%-8.3g", g->cell[b].depth);
        for (int a = 0; a < g->nl; a++) {
            const struct passkey_cell *c = &g->cell[a * g->nd + b];
            char v[32];
            snprintf(v, sizeof v, "%d/%d", c->retrieved, c->trials);
            printf(" %10s", v);
        }
        printf("\n");
    }
    snprintf(path, sizeof path, "%s/passkey.csv", out);
    if (passkey_write_csv(g, path, err, sizeof err)) {
        fprintf(stderr, "ringtrain: --passkey: %s\n", err);
        return 1;
    }
    int right = 0, all = 0;
    for (int i = 0; i < g->nl * g->nd; i++) right += g->cell[i].retrieved, all += g->cell[i].trials;
    printf("wrote %s (scripts/plot_eval.py %s draws the heatmap)\n", path, path);
    printf("{\"event\":\"done\",\"trials\":%d,\"retrieved\":%d,\"accuracy\":%.6g}\n", all, right,
           (double)right / all);
    return 0;
}

int run_passkey(const struct job *j, const struct runtime *rt, int do_resume) {
    struct passkey_ids ids;
    char err[CFG_PATH_MAX + 512];
    int rc = rt->rank == 0 && passkey_ids_load(&j->cfg, j->mc.vocab_size, &ids, err, sizeof err) ? 2 : 0;
    MPI_CHECK(MPI_Bcast(&rc, 1, MPI_INT, 0, rt->world_comm));
    if (rc) {
        if (rt->rank == 0) fprintf(stderr, "ringtrain: %s\n", err);
        return rc;
    }
    MPI_CHECK(MPI_Bcast(&ids, (int)sizeof ids, MPI_BYTE, 0, rt->world_comm));
    rc = run_check_fit(j, rt);
    if (rc) return rc;
    struct run r;
    run_open(&r, j, rt);
    rc = load_for_eval(&r, do_resume);
    if (!rc) {
        struct passkey_grid g;
        passkey_run(r.t, &ids, &g);
        if (rt->rank == 0) rc = report_passkey(&g, r.c->eval.out);
        comm_broadcast(&r.t->ctl, &rc, 1, COMM_I32, 0);
        passkey_grid_free(&g);
    }
    run_close(&r);
    return rc;
}

int run_export(const struct job *j, const struct runtime *rt, const char *dir) {
    int rc = run_check_fit(j, rt);
    if (rc) return rc;
    struct run r;
    run_open(&r, j, rt);
    if (!r.c->checkpoint.dir[0]) {
        if (rt->rank == 0) fprintf(stderr, "ringtrain: --export needs checkpoint.dir in the job\n");
        rc = 2;
    } else {
        rc = load_checkpoint(&r, 0);
        int none = !r.last_ckpt[0];
        comm_broadcast(&r.t->ctl, &none, 1, COMM_I32, 0);
        if (!rc && none) {
            if (rt->rank == 0) fprintf(stderr, "ringtrain: --export: no complete checkpoint in %s\n", r.c->checkpoint.dir);
            rc = 2;
        }
    }
    if (!rc) {
        struct cfg_export *e = &r.t->job.cfg.export_;
        snprintf(e->dir, sizeof e->dir, "%s", dir);
        rc = export_params(&r);
    }
    run_close(&r);
    return rc;
}
