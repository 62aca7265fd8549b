/* train: the trainer of one job on this rank: its groups (world, ring, data: groups.h) and
 * their transports,
 * model (its parameter store shards weights, gradients and AdamW state by ZeRO stage,
 * pstore.h) and data, the
 * step (draw seqs_per_step sequences, shard, forward and backward, reduce, clip, AdamW) and
 * evaluation; train_state.c writes and reads its checkpoints (every rank its own slices);
 * train_backend.c opens the backend and the transports. The same set-up runs against the
 * plan backend of a memory plan (trainer_plan, mem_plan.h). Logging lives in the caller
 * (run.c). */
#ifndef RT_TRAIN_H
#define RT_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "checkpoint.h"
#include "comm.h"
#include "data.h"
#include "groups.h"
#include "job.h"
#include "mem_plan.h"
#include "model.h"
#include "runtime.h"

/* Test switches; zero in a real run. */
struct train_opts {
    int     local_attention_only;   /* attention never crosses shards (long-range task control) */
    int64_t poison_from, poison_to; /* steps [from, to) get a NaN gradient (numerical guard test) */
    int     place;                  /* 1: the saved tensors placed as below, not as the plan would */
    int64_t place_split;            /*    rows of every layer's saved tensors kept on the device */
    int     place_keep;             /*    layers saving their attention output (selective policy) */
};

struct trainer {
    struct job        job;
    struct comm       ctl;           /* MPI over all ranks, host buffers: losses, signals, broadcasts */
    struct groups     groups;        /* this rank's world, ring and data groups (groups.h) */
    struct comm       world, cp;     /* the backend's transport over groups.world (gradients, ZeRO) and
                                        groups.ring (the ring); stand-ins in a plan without MPI */
    struct model      model;         /* its parameter store model.ps holds the optimizer state */
    struct data_source data;
    int64_t           L, T;          /* global and local tokens per sequence */
    int32_t          *seq_in, *seq_lab; /* (seqs_per_step, L) the step's sequences */
    int32_t          *tok, *lab;     /* (T) this rank's shard */
    int64_t          *pos;           /* (T) */
    double           *tok_loss;      /* (T) an evaluation forward's token losses (host) */
    int32_t          *tok_pred;      /* (T) and argmax predictions */
    int64_t           step;          /* steps taken (skipped ones included) */
    int64_t           bad_in_row;    /* non-finite steps in a row */
    int64_t           skipped;       /* non-finite steps skipped in this process's run */
    struct train_opts opts;          /* test switches; zero in a real run */
    struct backend   *cuda;          /* the CUDA backend when device.backend is cuda, else NULL */
    struct backend   *cpu;           /* the cpu backend's table serving the arena when it is cpu, else NULL */
    struct arena      arena;         /* every backend buffer of the run, laid out by its plan (arena.h) */
    int               gpu_sharing;   /* ranks of this host per GPU (1 on the CPU backend) */
    int               lend_grads;    /* the host optimizer's reduced gradients may live in the host rows of
                                        the offloaded layer inputs (one sequence per step; model_place_saved) */
};

struct step_stats {
    double  loss;        /* mean token loss of the step's forward pass (before the update) */
    double  grad_norm;   /* global norm before clipping */
    double  lr;
    int64_t tokens;      /* tokens processed in the step (all ranks) */
    int64_t loss_tokens; /* tokens that carried a label */
    int     skipped;     /* non-finite loss or gradient norm: the update was not applied */
    double  t_data, t_compute, t_reduce, t_optim; /* seconds in each phase (host clock) */
    double  t_ring_wait;    /* seconds the ring spent waiting for K/V and dK/dV exchanges */
    double  t_optim_wait;   /* memory.optimizer host: seconds the forward waited for the last update
                             * (the update runs during the next forward; t_optim only starts it) */
    int     profiled;       /* kernel_ms is filled (log.profile on a device backend) */
    double  kernel_ms[PROF_NCAT]; /* kernel time by enum backend_prof */
};

/* Builds everything; loads HF weights or random-initialises them. Collective. The start-up
 * is planned first (trainer_plan, against what the GPU has free on cuda), memory.offload
 * is what the plan decided, and the backend hands every buffer out of one device and one
 * pinned host block laid out from the plan (arena.h): an allocation the plan does not have,
 * during the start-up or after it, is fatal. */
void trainer_init(struct trainer *t, const struct job *j, const struct runtime *rt,
                  const struct train_opts *o);
/* trainer_init's allocation sequence against the plan backend of `plan` (mem_plan.h, made
 * with mem_plan_init), which records every buffer: no weights are made or loaded, no data is
 * read, nothing touches a GPU. With a runtime of MPI_COMM_NULL (a planned rank, runtime.h)
 * every communicator is a stand-in (comm_plan.h) and nothing is collective; else the
 * transports are MPI on host buffers (only barriers run on them) and the call is collective.
 * The plain host buffers a run adds (the step's token buffers, checkpoint staging, the
 * export's weights on rank 0) are recorded as such. memory.offload: auto decides from
 * plan->gpu_gib; when nothing fits it leaves every layer offloaded and says why in
 * plan->no_fit. The plan's arena is laid out (mem_plan_pack). The trainer holds the planned
 * shape (model, zero, opt, T); trainer_free it after. */
void trainer_plan(struct trainer *t, const struct job *j, const struct runtime *rt, struct mem_plan *plan);
void trainer_free(struct trainer *t);

/* One training step (collective). A step whose loss or gradient norm is not finite is
 * skipped (no update). Returns 1 when train.max_bad_steps such steps came in a row. */
int trainer_step(struct trainer *t, struct step_stats *st);
/* Forward and backward of the next step without an update: the gradients, summed over
 * ranks and scaled by 1 / label count, into `full` (pt.total floats, host, every rank).
 * Returns the mean loss. For tests. */
double trainer_gradients(struct trainer *t, struct step_stats *st, float *full);
/* An evaluation forward's results for one sequence i on this rank: its shard's T global
 * positions, labels, token losses (0 where the label is < 0) and argmax predictions. */
typedef void (*trainer_sink)(void *ctx, int i, const int64_t *pos, const int32_t *lab, const double *loss,
                             const int32_t *pred, int64_t T);
/* Forward only (no gradient, no update, the data cursor untouched) of the first nseq
 * (<= train.seqs_per_step) sequences of seq_in / seq_lab, shared over the data-parallel
 * groups as a step's are. sink (NULL: none) receives each sequence this rank ran. Returns
 * this rank's sum of token losses (the caller adds them over the ranks). Collective. */
double trainer_forward(struct trainer *t, int nseq, trainer_sink sink, void *ctx);

/* Collective: write a checkpoint of the current state into dir (ckpt_save: every rank its
 * 1/world share of the files), keeping `keep`. Returns 0, or -1 with err on every rank. */
int trainer_save(struct trainer *t, const char *dir, int keep, const struct ckpt_faults *f, char *err,
                 size_t errlen);
/* Collective: load the newest usable checkpoint of dir (ckpt_load_latest: every rank reads
 * what its layout holds) -- the weights, and with `moments` the AdamW moments -- and refresh
 * the working weights. The step and counters are the caller's (trainer_restore). Returns
 * ckpt_load_latest's result; the live state is touched only when it is 1. */
int trainer_load(struct trainer *t, const char *dir, FILE *log, int moments, char *name, struct ckpt_meta *meta,
                 char *err, size_t errlen);
/* Collective: the full fp32 weights (pt.total floats) on rank 0 (malloc'd; the caller frees),
 * NULL elsewhere, for the HF export. */
float *trainer_gather_params(struct trainer *t);

/* Checkpoint state of the trainer, and its restoration (the step, data cursor, optimizer
 * step count; parameters and moments are restored by the caller into model/opt). */
void trainer_meta(const struct trainer *t, struct ckpt_meta *m);
void trainer_restore(struct trainer *t, const struct ckpt_meta *m);

/* Dense bf16 FLOP/s of one H100/H200 (ARCHITECTURE.md section 6): the --plan's expected step
 * time assumes it unless device.peak_tflops is set; a run's MFU is against the peak of mfu.h. */
#define TRAIN_PEAK_FLOPS 989e12
/* Model FLOPs of one sequence of L tokens, forward and backward (ARCHITECTURE.md section 6). */
double train_flops_per_seq(const struct model_config *mc, int64_t L);

#endif
