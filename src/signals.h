/* signals: what Slurm and users send a run. SIGTERM (preemption, time limit): save a
 * checkpoint at the next step boundary and exit 0 so a requeued job resumes. SIGUSR1:
 * save and continue. SIGINT: stop at the next step boundary without saving. The handlers
 * only set flags; signals_agree makes every rank act on a signal any one rank received. */
#ifndef RT_SIGNALS_H
#define RT_SIGNALS_H

#include "comm.h"

enum { SIGNAL_SAVE_EXIT = 1, SIGNAL_SAVE_CONTINUE = 2, SIGNAL_STOP = 4 };

void signals_install(void);
/* Collective over c: the union of the signals received by any rank since the last call. */
int  signals_agree(struct comm *c);

#endif
