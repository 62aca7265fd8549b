/* eval: the loss of the model over the windows of a set of token files (data.eval), by
 * position bucket: the sequence positions 0..L-1 are cut into nb equal buckets
 * [floor(b L / nb), floor((b + 1) L / nb)), and the token losses of each (the loss of
 * predicting token p + 1 from tokens 0..p, at position p) are summed over the windows and
 * the ranks. Forward only, through the ring, on every rank (trainer_forward). The
 * evaluation of `--eval` (every window, eval.buckets buckets, eval_buckets.csv) and the
 * one during training (log.eval_every: the first log.eval_windows windows, one bucket).
 * Shapes: L = data.seq_len positions, nb buckets. */
#ifndef RT_EVAL_H
#define RT_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "train.h"

struct eval_result {
    int64_t  windows;   /* windows evaluated */
    int64_t  L;         /* positions per window */
    int      nb;        /* buckets */
    double  *sum;       /* (nb) summed token losses of each bucket, all ranks */
    int64_t *count;     /* (nb) labelled tokens of each bucket */
    double   loss;      /* mean token loss over every bucket */
    int64_t  tokens;    /* labelled tokens in all */
};

/* Evaluate the first min(max_windows, all) windows of `paths` (newline-separated, as
 * data.eval) in nb buckets (1 <= nb <= L). max_windows <= 0: all of them. Collective; every
 * rank gets the same result. */
void eval_run(struct trainer *t, const char *paths, int64_t max_windows, int nb, struct eval_result *r);
void eval_result_free(struct eval_result *r);

/* First position of bucket b (b = nb: L). */
int64_t eval_bucket_start(const struct eval_result *r, int b);

/* eval_buckets.csv (docs/formats.md): a header, then one line per bucket
 * `bucket,ctx_from,ctx_to,tokens,loss,ppl`. Returns 0, or -1 with err. */
int eval_write_csv(const struct eval_result *r, const char *path, char *err, size_t errlen);

#endif
