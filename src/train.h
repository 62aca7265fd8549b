/* train: the trainer of one job on this rank: communicators (world, cp ring, dp group),
 * model, optimizer and data, the step (draw seqs_per_step sequences, shard, forward and
 * backward, reduce, clip, AdamW) and evaluation. Logging lives in the caller (main.c). */
#ifndef RT_TRAIN_H
#define RT_TRAIN_H

#include <stdint.h>

#include "comm.h"
#include "data.h"
#include "job.h"
#include "model.h"
#include "optimizer.h"
#include "runtime.h"

struct trainer {
    struct job        job;
    struct comm       world, cp, dp;
    int               cp_rank, dp_rank;
    struct model      model;
    struct optimizer  opt;
    struct data_source data;
    int64_t           L, T;          /* global and local tokens per sequence */
    int32_t          *seq_in, *seq_lab; /* (seqs_per_step, L) the step's sequences */
    int32_t          *tok, *lab;     /* (T) this rank's shard */
    int64_t          *pos;           /* (T) */
    int64_t           step;          /* steps taken */
};

struct step_stats {
    double  loss;        /* mean token loss of the step's forward pass (before the update) */
    double  grad_norm;   /* global norm before clipping */
    double  lr;
    int64_t tokens;      /* tokens processed in the step (all ranks) */
    int64_t loss_tokens; /* tokens that carried a label */
};

/* Options tests set; zero for a normal run. */
struct train_opts {
    int local_attention_only; /* attention never crosses shards (long-range task control) */
};

/* Builds everything; loads HF weights or random-initialises them. Collective. */
void trainer_init(struct trainer *t, const struct job *j, const struct runtime *rt,
                  const struct train_opts *o);
void trainer_free(struct trainer *t);

/* One training step (collective). */
void trainer_step(struct trainer *t, struct step_stats *st);
/* Forward and backward of the next step without an update: gradients left in
 * t->model.grads (summed over ranks, scaled by 1 / label count). Returns the mean loss. */
double trainer_gradients(struct trainer *t, struct step_stats *st);
/* Mean token loss over the eval windows of `path` (no update). Collective. */
double trainer_eval(struct trainer *t, const char *path, int64_t *windows);

/* Model FLOPs of one sequence of L tokens, forward and backward (ARCHITECTURE.md section 6). */
double train_flops_per_seq(const struct model_config *mc, int64_t L);

#endif
