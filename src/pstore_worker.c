/* pstore_worker: the host optimizer's thread, its job queue and done flags (see
 * pstore_worker.h). */
#include "pstore_worker.h"

#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#define PCHECK(call)                                                                   \
    do {                                                                               \
        int rc_ = (call);                                                              \
        if (rc_) RT_FATAL("pstore worker: %s failed (%s)", #call, strerror(rc_));       \
    } while (0)

static void *loop(void *arg) {
    struct pstore_worker *w = arg;
    PCHECK(pthread_mutex_lock(&w->mu));
    for (;;) {
        while (!w->len && !w->stop) PCHECK(pthread_cond_wait(&w->cv, &w->mu));
        if (!w->len) break; /* stop, and nothing left */
        int job = w->queue[w->head];
        w->head = (w->head + 1) % (PW_KINDS * w->n);
        w->len--;
        PCHECK(pthread_mutex_unlock(&w->mu));
        w->run(w->ctx, job / w->n, job % w->n);
        PCHECK(pthread_mutex_lock(&w->mu));
        w->done[job / w->n][job % w->n] = 1;
        PCHECK(pthread_cond_broadcast(&w->cv));
    }
    PCHECK(pthread_mutex_unlock(&w->mu));
    return NULL;
}

void pw_start(struct pstore_worker *w, int n, void (*run)(void *ctx, int kind, int unit), void *ctx) {
    memset(w, 0, sizeof *w);
    w->n = n;
    w->run = run;
    w->ctx = ctx;
    w->queue = rt_calloc((size_t)PW_KINDS * n, sizeof *w->queue, "host optimizer queue");
    for (int k = 0; k < PW_KINDS; k++) {
        w->done[k] = rt_calloc((size_t)n, 1, "host optimizer flags");
        memset(w->done[k], 1, (size_t)n);
    }
    w->arrival = rt_calloc((size_t)n, sizeof *w->arrival, "host optimizer arrivals");
    for (int i = 0; i < n; i++) w->arrival[i] = (struct pw_arrival){w, i};
    PCHECK(pthread_mutex_init(&w->mu, NULL));
    PCHECK(pthread_cond_init(&w->cv, NULL));
    PCHECK(pthread_create(&w->thread, NULL, loop, w));
    w->started = 1;
}

void pw_stop(struct pstore_worker *w) {
    if (!w->started) return;
    PCHECK(pthread_mutex_lock(&w->mu));
    w->stop = 1;
    PCHECK(pthread_cond_broadcast(&w->cv));
    PCHECK(pthread_mutex_unlock(&w->mu));
    PCHECK(pthread_join(w->thread, NULL));
    PCHECK(pthread_cond_destroy(&w->cv));
    PCHECK(pthread_mutex_destroy(&w->mu));
    for (int k = 0; k < PW_KINDS; k++) free(w->done[k]);
    free(w->queue);
    free(w->arrival);
    memset(w, 0, sizeof *w);
}

void pw_expect(struct pstore_worker *w, int kind, int unit) {
    PCHECK(pthread_mutex_lock(&w->mu));
    w->done[kind][unit] = 0;
    PCHECK(pthread_mutex_unlock(&w->mu));
}

void pw_post(struct pstore_worker *w, int kind, int unit) {
    PCHECK(pthread_mutex_lock(&w->mu));
    if (w->len == PW_KINDS * w->n) RT_FATAL("pstore worker: more than %d jobs queued", PW_KINDS * w->n);
    w->done[kind][unit] = 0;
    w->queue[(w->head + w->len) % (PW_KINDS * w->n)] = kind * w->n + unit;
    w->len++;
    PCHECK(pthread_cond_broadcast(&w->cv));
    PCHECK(pthread_mutex_unlock(&w->mu));
}

void pw_arrive(void *arg) {
    struct pw_arrival *a = arg;
    pw_post(a->w, PW_NORM, a->unit);
}

void pw_wait(struct pstore_worker *w, int kind, int unit) {
    PCHECK(pthread_mutex_lock(&w->mu));
    while (!w->done[kind][unit]) PCHECK(pthread_cond_wait(&w->cv, &w->mu));
    PCHECK(pthread_mutex_unlock(&w->mu));
}

int pw_done(struct pstore_worker *w, int kind, int unit) {
    PCHECK(pthread_mutex_lock(&w->mu));
    int d = w->done[kind][unit];
    PCHECK(pthread_mutex_unlock(&w->mu));
    return d;
}
