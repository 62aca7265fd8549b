/* run: what one invocation does once the job is resolved. Training: resume from the
 * newest checkpoint, the step loop with its progress line and metrics record, checkpoints
 * every checkpoint.every steps and at the end, signals (SIGTERM saves and exits 0, SIGUSR1
 * saves and continues, SIGINT stops without saving), the numerical guard, and the export
 * at the end. Evaluation. Export of the newest checkpoint. Each returns the exit code. */
#ifndef RT_RUN_H
#define RT_RUN_H

#include "job.h"
#include "runtime.h"

#define EXIT_INTERRUPTED 130 /* SIGINT, as shells report it */

int run_train(const struct job *j, const struct runtime *rt, int resume);
int run_eval(const struct job *j, const struct runtime *rt);
int run_export(const struct job *j, const struct runtime *rt, const char *dir);

#endif
