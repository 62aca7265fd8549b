/* waits: how a rank waits for other ranks. Every wait of every transport (MPI requests,
 * the CUDA events that follow NCCL work) polls here, with the communicator's deadline
 * (parallel.timeout_s); while it polls it answers other ranks' roll calls and watches for
 * a stop signal (SIGINT). When the deadline passes (or a few seconds after the signal) it
 * calls the roll of the ranks it was waiting for: the ranks that do not answer -- stopped,
 * hung, or busy outside any wait -- are the ones its message names. The roll call runs
 * on its own duplicate of MPI_COMM_WORLD, so it never mixes with a transport's traffic. */
#ifndef RT_WAITS_H
#define RT_WAITS_H

#include <mpi.h>
#include <stddef.h>

enum { WAITS_DONE, WAITS_TIMED_OUT, WAITS_INTERRUPTED };

#define WAITS_ROLLCALL_S     2.0 /* how long a roll call waits for the answers */
#define WAITS_SIGNAL_GRACE_S 3.0 /* how long a wait goes on once a stop signal is pending */

/* Process-wide, from rt_init / rt_finalize (collective over MPI_COMM_WORLD). */
void waits_init(void);
void waits_finalize(void);

/* The stop-signal check (signals.c installs it with its handlers): the name of a pending
 * stop signal ("SIGINT"), or NULL. Unset: signals are not watched. */
void waits_set_interrupt(const char *(*pending)(void));

/* Poll done(arg) (1 = finished; it may abort the job itself) until it returns 1 (WAITS_DONE),
 * or until timeout_s seconds pass (WAITS_TIMED_OUT) or a stop signal has been pending for
 * WAITS_SIGNAL_GRACE_S (WAITS_INTERRUPTED). Then why holds the outcome of a roll call of
 * members (n world ranks, this one among them): "rank 2 did not answer a roll call within
 * 2 s (stopped, hung, or busy outside a wait); ranks 0, 1, 3 are waiting". */
int waits_poll(int (*done)(void *), void *arg, double timeout_s, const int *members, int n, char *why,
               size_t whylen);

/* The world rank of every rank of c (n of them), in c's order: for waits_poll's members. */
int *waits_members(MPI_Comm c, int n);

#endif
