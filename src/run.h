/* run: what one invocation does once the job is resolved. Training: resume from the
 * newest checkpoint, the step loop with its progress line and metrics record, checkpoints
 * every checkpoint.every steps and at the end, signals (SIGTERM saves and exits 0, SIGUSR1
 * saves and continues, SIGINT stops without saving; SIGTERM wins when both come at one
 * step), the numerical guard (nothing is saved during a run of non-finite steps), and the
 * export at the end, evaluation of data.eval every log.eval_every steps. Evaluation of the
 * newest checkpoint (or the initial weights): --eval, the loss by position bucket; --passkey,
 * the passkey-retrieval grid (passkey.h); each writes a CSV into eval.out. Export
 * of the newest checkpoint. The memory plan (--plan, and the
 * check of a cuda run before it allocates). Each returns the exit code. */
#ifndef RT_RUN_H
#define RT_RUN_H

#include "job.h"
#include "runtime.h"

#define EXIT_INTERRUPTED 130 /* SIGINT, as shells report it */

int run_train(const struct job *j, const struct runtime *rt, int resume);
int run_eval(const struct job *j, const struct runtime *rt, int resume);
int run_passkey(const struct job *j, const struct runtime *rt, int resume);
int run_export(const struct job *j, const struct runtime *rt, const char *dir);

/* The memory plan (run_plan.c): --plan prints it (0: fits or unchecked, 3: does not fit);
 * with `standin` (--plan --ranks N, rt a 1-rank runtime) this process plans every rank of the
 * job, else every rank of rt plans its own (collective). run_check_fit checks it against the
 * GPU before a cuda run allocates (0 at once on other backends; 3, with the table, when the
 * job cannot fit). Collective. */
int run_plan(const struct job *j, const struct runtime *rt, int standin);
int run_check_fit(const struct job *j, const struct runtime *rt);

struct trainer;
/* The start-up log's line on the optimizer state of a rank (shared by run.c and run_plan.c). */
void run_print_optimizer(const struct trainer *t);

#endif
