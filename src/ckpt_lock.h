/* ckpt_lock: one training run per checkpoint directory. Rank 0 of a run creates the
 * directory when it is missing and holds an exclusive flock on <dir>/LOCK for the whole
 * run, with "host pid" written into the file; a second run finds the lock taken and names
 * the holder. The kernel drops the lock when the process ends (a crash included), so a
 * leftover file never blocks a run; the file stays in place (deleting it would let two runs
 * lock two different files). Evaluation and export read without locking. */
#ifndef RT_CKPT_LOCK_H
#define RT_CKPT_LOCK_H

#include <stddef.h>

#define CKPT_LOCK_FILE "LOCK"

struct ckpt_lock {
    int fd; /* the open LOCK file holding the flock; -1 when none is held */
};

/* Create dir if missing (not its parents) and lock it. Returns 0, or -1 with why (e.g.
 * "cannot create: No such file or directory", "in use by another run (host h, pid 12)"). */
int  ckpt_lock_acquire(struct ckpt_lock *l, const char *dir, char *why, size_t whylen);
void ckpt_lock_release(struct ckpt_lock *l);

#endif
