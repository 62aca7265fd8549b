/* pstore_worker: one host thread that runs the host optimizer's jobs (memory.optimizer host)
 * in the order they are posted: per unit, the sum of squares of its reduced gradient shard
 * (posted as the backward delivers the unit, so it overlaps the rest of the backward) and
 * its AdamW update (posted for every unit at the end of a step, in the order the next
 * forward uses them, so it overlaps that forward). The store waits for one unit's job only
 * when it needs that unit. What a job does is the store's (a callback); this file owns the
 * thread, the queue and the done flags.
 *
 * A job is "expected" from the moment the poster knows it will come (done flag cleared), and
 * "posted" when its inputs are ready -- possibly later, from the backend's callback thread
 * once a copy has landed (pw_arrive). Waiting for an expected job blocks until it is done,
 * so a flag left over from the last step is never mistaken for this step's result. */
#ifndef RT_PSTORE_WORKER_H
#define RT_PSTORE_WORKER_H

#include <pthread.h>

enum pw_kind { PW_NORM, PW_UPDATE, PW_KINDS };

struct pstore_worker;

/* A unit's "its gradients have arrived" message for the backend's host callback. */
struct pw_arrival {
    struct pstore_worker *w;
    int unit;
};

struct pstore_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* signalled on every post and every completion */
    int started, stop;
    int n;                    /* units */
    int *queue;               /* ring of kind * n + unit, capacity PW_KINDS * n */
    int head, len;
    unsigned char *done[PW_KINDS]; /* per unit: the last expected job of this kind is done */
    struct pw_arrival *arrival;    /* (n) */
    void (*run)(void *ctx, int kind, int unit);
    void *ctx;
};

/* Starts the thread for n units; run(ctx, kind, unit) does a job. Every flag starts done. */
void pw_start(struct pstore_worker *w, int n, void (*run)(void *ctx, int kind, int unit), void *ctx);
/* Waits for every posted job, then ends the thread (a never-started worker: nothing). */
void pw_stop(struct pstore_worker *w);
/* The job will come: its flag is cleared now. */
void pw_expect(struct pstore_worker *w, int kind, int unit);
/* The job's inputs are ready: queue it (expects it too, when not yet expected). */
void pw_post(struct pstore_worker *w, int kind, int unit);
/* pw_post(PW_NORM, a->unit), as a backend host callback (void *arg: a struct pw_arrival). */
void pw_arrive(void *arg);
/* Blocks until the job is done / whether it is done now. */
void pw_wait(struct pstore_worker *w, int kind, int unit);
int pw_done(struct pstore_worker *w, int kind, int unit);

#endif
