/* checkpoint: training state on disk, written and read by every rank for its own slices.
 * A checkpoint is the directory <checkpoint.dir>/step-NNNNNNNN holding model.bin (fp32
 * parameters), optim.bin (AdamW moments m then v, fp32), meta.json (step, data cursor,
 * optimizer step count, hashes of the model shape and the job, world layout, per file its
 * size and the xxh3-64 checksums of its blocks -- the ranges the ranks wrote -- and an
 * xxh3-64 checksum of its own content) and, last, the completion marker DONE.
 *
 * A save: rank 0 creates the temporary directory and the two data files at their full
 * size; every rank pwrites its ranges (struct ckpt_part) into them through a bounded
 * staging buffer, hashing each range as one block, and fsyncs; the ranks agree that every
 * write succeeded (a failure anywhere removes the temporary directory on rank 0 and fails the
 * save on every rank); rank 0 gathers the block checksums, writes meta.json, renames the
 * directory into place and writes DONE. A crash or a full disk during a save leaves the
 * previous checkpoints untouched. A load verifies the newest complete checkpoint with the
 * blocks shared out over the ranks, agrees on the result (the first bad block is named and
 * the next older one tried), then every rank reads the ranges it needs. checkpoint.dir must
 * be on a file system every rank sees. Every function here is collective over ctl (an MPI
 * communicator on host buffers, comm_mpi.h); rank 0 does the directory work. */
#ifndef RT_CHECKPOINT_H
#define RT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "comm.h"

#define CKPT_NAME_MAX 64
#define CKPT_STAGE_BYTES ((int64_t)64 << 20) /* a rank's staging buffer, at most */

enum { CKPT_MODEL, CKPT_OPTIM, CKPT_NFILES }; /* model.bin, optim.bin */

struct ckpt_meta {
    int64_t  step;          /* steps completed */
    int64_t  data_cursor;   /* struct data_source cursor after those steps */
    int64_t  opt_t;         /* AdamW updates taken */
    int64_t  bad_in_row;    /* non-finite steps in a row at the save */
    int64_t  n_params;      /* floats in model.bin; optim.bin holds 2x */
    uint64_t model_hash;    /* shape of the model: must match to resume */
    uint64_t job_hash;      /* the rest of the job that shapes the numbers: a warning if it differs */
    int      world, cp, dp;
};

/* A range of floats of one file: [off, off + n) counted in floats from the file's start. */
struct ckpt_range {
    int     file; /* CKPT_MODEL or CKPT_OPTIM */
    int64_t off, n;
};

/* This rank's share of a checkpoint: the ranges it writes (a save) or reads (a load), and
 * how their floats move: get copies floats [at, at + n) of range i into host memory, put
 * the other way (both synchronous; n never exceeds the staging buffer). */
struct ckpt_part {
    int                n;
    struct ckpt_range *r;   /* (n) */
    void              *ctx;
    void (*get)(void *ctx, int i, int64_t at, int64_t n, float *dst);
    void (*put)(void *ctx, int i, int64_t at, int64_t n, const float *src);
};

/* Test hooks (zero in a real run): on rank `rank` of ctl, after it has written this many
 * bytes of a save, kill the process with SIGKILL (kill_after) or fail the write with ENOSPC
 * (fail_after). */
struct ckpt_faults {
    int64_t kill_after;
    int64_t fail_after;
    int     rank;
};

/* Writes the checkpoint of meta->step into dir (created if missing) from every rank's
 * `mine` (together they must cover both files exactly once), then deletes the checkpoints
 * older than the newest `keep` complete, verified ones (older ones are verified, shared out
 * over the ranks, before anything behind them is deleted), incomplete ones and stale
 * temporary directories. Returns 0, or -1 on every rank with the same message in err (the
 * temporary directory is removed). */
int ckpt_save(struct comm *ctl, const char *dir, const struct ckpt_meta *meta, const struct ckpt_part *mine,
              int keep, const struct ckpt_faults *faults, char *err, size_t errlen);

/* Loads the newest usable checkpoint in dir: complete (DONE), meta.json intact, files of the
 * recorded sizes and block checksums (optim.bin only with `moments`), n_params and
 * model_hash equal to expect's. Every rejected one is reported on rank 0's `log` by name with
 * the reason and the next older one is tried. Only then does each rank read `need` (its
 * ranges of model.bin, and of optim.bin with moments) and put them; a read that fails after
 * the checkpoint verified aborts the job. Returns, the same on every rank: 1 with name and
 * meta filled when one was loaded; 0 when there is no complete one (dir missing or empty
 * included); -2 when there are complete ones and none verifies (err names each with its
 * reason); -1 on an error reading dir or a checkpoint of another model (err says which). */
int ckpt_load_latest(struct comm *ctl, const char *dir, FILE *log, const struct ckpt_meta *expect, int moments,
                     const struct ckpt_part *need, char *name, struct ckpt_meta *meta, char *err, size_t errlen);

#endif
