/* outputs: the places a run writes, checked on rank 0 at start-up, before anything is
 * allocated, so that a path that cannot be written is bad input (exit 2) instead of a
 * failure at the first save or at the end of the run. A training run: checkpoint.dir
 * (created when missing, then locked for the run: ckpt_lock.h), log.metrics (a file that
 * can be created or written), export.dir (hf_export_check), and then, collectively, that
 * every rank sees checkpoint.dir's lock (a file system they share). An export: its directory.
 * --eval and --passkey: eval.out and the CSV file they write there.
 * Errors name where the key was set (file:line:column or --set), the key, the path and why. */
#ifndef RT_OUTPUTS_H
#define RT_OUTPUTS_H

#include <stddef.h>

#include "ckpt_lock.h"
#include "config.h"
#include "runtime.h"

/* Returns 0 with checkpoint.dir locked in lock (when set; lock->fd is -1 otherwise), or -1
 * with one line in err and nothing locked. */
int outputs_check_train(const struct cfg *c, struct ckpt_lock *lock, char *err, size_t errlen);
/* Collective, after the job is broadcast (a training run, checkpoint.dir locked by rank 0):
 * every rank sees the lock file rank 0 holds, so every rank writes into the same
 * checkpoint.dir (each writes its own slices of a checkpoint). Returns 0, or -1 with one line
 * in err naming the first rank that does not (on every rank). */
int outputs_check_shared(const struct cfg *c, const struct runtime *rt, char *err, size_t errlen);
/* --eval and --passkey: eval.out (created when missing; its parent must exist) and the file
 * `name` in it can be written. Returns 0, or -1 with one line in err. */
int outputs_check_eval(const struct cfg *c, const char *name, char *err, size_t errlen);
/* The directory of --export DIR. Returns 0, or -1 with one line in err. */
int outputs_check_export(const char *dir, char *err, size_t errlen);

#endif
