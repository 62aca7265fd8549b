/* job: the configuration resolved against the world and the files it names, on rank 0
 * before anything is allocated: the model shape (from the job or the HF config, which must
 * agree; the job's RoPE keys override the HF config's), the parallel layout (cp x dp), and the validity of the token and weight files.
 * struct job is plain old data, broadcast as bytes to every rank. */
#ifndef RT_JOB_H
#define RT_JOB_H

#include "config.h"
#include "params.h"

struct job {
    struct cfg          cfg;
    struct model_config mc;
    int                 cp, dp;   /* ring size and data-parallel groups; cp * dp = world */
    char                rope_note[1024]; /* the RoPE used and where it came from (start-up line) */
};

/* Returns 0, or -1 with one line in err (exit code 2). */
int job_resolve(struct job *j, const struct cfg *c, int world, char *err, size_t errlen);

/* Hashes saved in checkpoints: the model's shape (must match to resume), and the keys that
 * shape the numbers of a run -- model, data, optimizer -- but not train.steps, logging,
 * checkpointing, export or the layout of ranks (which may change across a resume). */
uint64_t job_model_hash(const struct job *j);
uint64_t job_run_hash(const struct job *j);

#endif
