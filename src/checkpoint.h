/* checkpoint: training state on disk. A checkpoint is the directory
 * <checkpoint.dir>/step-NNNNNNNN holding model.bin (fp32 parameters), optim.bin (AdamW
 * moments m then v, fp32), meta.json (step, data cursor, optimizer step count, hashes of
 * the model shape and the job, world layout, an xxh3-64 checksum and size per file, and
 * an xxh3-64 checksum of its own content) and, last, the completion marker DONE. It is written under a temporary name, every
 * file and directory fsynced, renamed into place, then marked DONE: a crash or a full
 * disk during a save leaves the previous checkpoints untouched. Loading verifies sizes
 * and checksums and falls back to the next older complete checkpoint, naming the bad one.
 * These functions do file work on one rank; the caller broadcasts. */
#ifndef RT_CHECKPOINT_H
#define RT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CKPT_NAME_MAX 64

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

/* Test hooks (zero in a real run): after writing this many bytes of a save, kill the
 * process with SIGKILL (kill_after) or fail the write with ENOSPC (fail_after). */
struct ckpt_faults {
    int64_t kill_after;
    int64_t fail_after;
};

/* Writes a checkpoint of meta->step into dir (created if missing), then deletes the
 * checkpoints older than the newest `keep` complete, verified ones (older ones are read back
 * to verify them before anything behind them is deleted), incomplete ones and stale
 * temporary directories. Returns 0, or -1 with a message (the partial temporary directory
 * is removed). */
int ckpt_save(const char *dir, const struct ckpt_meta *meta, const float *params, const float *m,
              const float *v, int keep, const struct ckpt_faults *faults, char *err, size_t errlen);

/* Loads the newest usable checkpoint in dir: complete (DONE), meta.json readable, files of
 * the recorded sizes and checksums, n_params == expect_params. Every rejected one is
 * reported on `log` by name with the reason and the next older one is tried. params, m and
 * v receive expect_params floats each (m and v may be NULL: optim.bin is then not read).
 * Returns 1 and fills name/meta when one was loaded, 0 when there is no complete one (dir
 * missing or empty included), -2 when there are complete ones and none verifies (err names
 * each with its reason), -1 on an error reading dir or a checkpoint of another model size. */
int ckpt_load_latest(const char *dir, FILE *log, int64_t expect_params, float *params, float *m,
                     float *v, char *name, struct ckpt_meta *meta, char *err, size_t errlen);

#endif
