/* eval: the loss over token windows by position bucket (eval.h). */
#include "eval.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

int64_t eval_bucket_start(const struct eval_result *r, int b) { return (int64_t)b * r->L / r->nb; }

/* The bucket of position p: floor(b L / nb) <= p < floor((b + 1) L / nb). */
static int bucket_of(const struct eval_result *r, int64_t p) { return (int)(((p + 1) * r->nb - 1) / r->L); }

/* trainer_sink: this rank's token losses of one window into the buckets. */
static void add_tokens(void *ctx, int i, const int64_t *pos, const int32_t *lab, const double *loss,
                       const int32_t *pred, int64_t T) {
    struct eval_result *r = ctx;
    (void)i, (void)pred;
    for (int64_t k = 0; k < T; k++) {
        if (lab[k] < 0) continue;
        int b = bucket_of(r, pos[k]);
        r->sum[b] += loss[k];
        r->count[b]++;
    }
}

void eval_run(struct trainer *t, const char *paths, int64_t max_windows, int nb, struct eval_result *r) {
    struct data_source ds;
    char err[1024];
    memset(r, 0, sizeof *r);
    r->L = t->L;
    r->nb = nb;
    if (nb < 1 || nb > t->L) RT_FATAL("eval: %d buckets for %lld positions", nb, (long long)t->L);
    r->sum = rt_calloc((size_t)nb, sizeof *r->sum, "eval buckets");
    r->count = rt_calloc((size_t)nb, sizeof *r->count, "eval buckets");
    if (data_open(&ds, DATA_NPY, paths, t->L, t->job.mc.vocab_size, 0, 0, err, sizeof err)) RT_FATAL("%s", err);
    int64_t n = data_eval_count(&ds);
    if (max_windows > 0 && max_windows < n) n = max_windows;
    int batch = t->job.dp; /* seqs_per_step is a multiple of dp (job.c): the sequences fit */
    for (int64_t w0 = 0; w0 < n; w0 += batch) {
        int nseq = (int)(n - w0 < batch ? n - w0 : batch);
        for (int i = 0; i < nseq; i++)
            data_eval_window(&ds, w0 + i, t->seq_in + (size_t)i * t->L, t->seq_lab + (size_t)i * t->L);
        trainer_forward(t, nseq, add_tokens, r);
    }
    data_close(&ds);
    comm_all_reduce(&t->ctl, r->sum, r->sum, nb, COMM_F64, COMM_SUM);
    comm_all_reduce(&t->ctl, r->count, r->count, nb, COMM_I64, COMM_SUM);
    double sum = 0;
    for (int b = 0; b < nb; b++) sum += r->sum[b], r->tokens += r->count[b];
    r->windows = n;
    r->loss = r->tokens ? sum / (double)r->tokens : 0.0;
}

void eval_result_free(struct eval_result *r) {
    free(r->sum);
    free(r->count);
    memset(r, 0, sizeof *r);
}

int eval_write_csv(const struct eval_result *r, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) return snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno)), -1;
    fprintf(f, "bucket,ctx_from,ctx_to,tokens,loss,ppl\n");
    for (int b = 0; b < r->nb; b++) {
        double loss = r->count[b] ? r->sum[b] / (double)r->count[b] : NAN;
        /* context length of position p: p + 1 tokens seen */
        fprintf(f, "%d,%lld,%lld,%lld,%.9g,%.9g\n", b, (long long)eval_bucket_start(r, b) + 1,
                (long long)eval_bucket_start(r, b + 1), (long long)r->count[b], loss, exp(loss));
    }
    if (fclose(f) != 0) return snprintf(err, errlen, "%s: error writing: %s", path, strerror(errno)), -1;
    return 0;
}
