/* waits: the one polled wait of every transport, the roll call that names the ranks that
 * stopped answering, and the watch for a stop signal while waiting (see waits.h). Roll-call
 * messages on `roll` (a duplicate of MPI_COMM_WORLD): TAG_ASK from the caller to every
 * member, TAG_ANSWER back from each member that is polling in a wait. */
#include "waits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime.h"

enum { TAG_ASK = 1, TAG_ANSWER = 2 };

static struct {
    MPI_Comm roll;                   /* MPI_COMM_NULL before waits_init */
    int      rank;                   /* in MPI_COMM_WORLD */
    const char *(*interrupt)(void);  /* pending stop signal, or NULL */
} w = {MPI_COMM_NULL, -1, NULL};

void waits_init(void) {
    MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &w.roll));
    MPI_CHECK(MPI_Comm_set_errhandler(w.roll, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(w.roll, &w.rank));
}

void waits_finalize(void) {
    if (w.roll != MPI_COMM_NULL) MPI_CHECK(MPI_Comm_free(&w.roll));
}

void waits_set_interrupt(const char *(*pending)(void)) { w.interrupt = pending; }

int *waits_members(MPI_Comm c, int n) {
    MPI_Group g, world;
    int *mine = rt_malloc((size_t)n * sizeof *mine, "communicator members");
    int *out = rt_malloc((size_t)n * sizeof *out, "communicator members");
    for (int i = 0; i < n; i++) mine[i] = i;
    MPI_CHECK(MPI_Comm_group(c, &g));
    MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world));
    MPI_CHECK(MPI_Group_translate_ranks(g, n, mine, world, out));
    MPI_CHECK(MPI_Group_free(&g));
    MPI_CHECK(MPI_Group_free(&world));
    free(mine);
    return out;
}

/* Answer every roll call that has arrived: this rank is alive and waiting. */
static void answer(void) {
    static const int here = 1; /* the answers' send buffer: never changes */
    for (;;) {
        int flag = 0, ask;
        MPI_Status st;
        MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, TAG_ASK, w.roll, &flag, &st));
        if (!flag) return;
        MPI_CHECK(MPI_Recv(&ask, 1, MPI_INT, st.MPI_SOURCE, TAG_ASK, w.roll, MPI_STATUS_IGNORE));
        MPI_Request r;
        MPI_CHECK(MPI_Isend(&here, 1, MPI_INT, st.MPI_SOURCE, TAG_ANSWER, w.roll, &r));
        MPI_CHECK(MPI_Request_free(&r));
    }
}

/* "a, b, c" of the world ranks members[i] with mark[i] == want; returns how many. */
static int list_ranks(const int *members, const int *mark, int n, int want, char *buf, size_t len) {
    int k = 0;
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n; i++) {
        if (mark[i] != want) continue;
        if (used < len) used += (size_t)snprintf(buf + used, len - used, "%s%d", k ? ", " : "", members[i]);
        k++;
    }
    return k;
}

/* Ask every other member whether it is alive (waiting), for WAITS_ROLLCALL_S, answering the
 * roll calls of others meanwhile (they may be calling theirs); describe the result in why. */
static void roll_call(const int *members, int n, char *why, size_t whylen) {
    static const int ask = 1;
    int *answered = rt_calloc((size_t)n, sizeof *answered, "roll call");
    int *got = rt_calloc((size_t)n, sizeof *got, "roll call");
    MPI_Request *req = rt_malloc(2 * (size_t)n * sizeof *req, "roll call");
    for (int i = 0; i < n; i++) {
        req[i] = req[n + i] = MPI_REQUEST_NULL;
        if (members[i] == w.rank) { answered[i] = 1; continue; }
        MPI_CHECK(MPI_Irecv(&got[i], 1, MPI_INT, members[i], TAG_ANSWER, w.roll, &req[i]));
        MPI_CHECK(MPI_Isend(&ask, 1, MPI_INT, members[i], TAG_ASK, w.roll, &req[n + i]));
    }
    double t0 = rt_now();
    struct timespec nap = {0, 1000000};
    int missing = n;
    while (rt_now() - t0 < WAITS_ROLLCALL_S) {
        answer();
        missing = 0;
        for (int i = 0; i < n; i++) {
            int flag = 0;
            /* an answer carries 1: a receive completed by the peer's death leaves 0 */
            if (!answered[i]) MPI_CHECK(MPI_Test(&req[i], &flag, MPI_STATUS_IGNORE));
            answered[i] |= flag && got[i] == 1;
            missing += !answered[i];
        }
        if (!missing) break;
        nanosleep(&nap, NULL);
    }
    char absent[256], present[256];
    int n_absent = list_ranks(members, answered, n, 0, absent, sizeof absent);
    int n_present = list_ranks(members, answered, n, 1, present, sizeof present);
    if (n_absent)
        snprintf(why, whylen, "rank%s %s did not answer a roll call within %.0f s (stopped, hung, or busy "
                 "outside a wait); rank%s %s %s waiting", n_absent > 1 ? "s" : "", absent, WAITS_ROLLCALL_S,
                 n_present > 1 ? "s" : "", present, n_present > 1 ? "are" : "is");
    else
        snprintf(why, whylen, "every rank of it (%s) answered a roll call: they wait for each other in different "
                 "operations (a rank skipped or reordered a collective)", present);
    /* The job ends next (the caller aborts): the unanswered requests die with it. */
    free(answered);
    free(got);
    free(req);
}

int waits_poll(int (*done)(void *), void *arg, double timeout_s, const int *members, int n, char *why,
               size_t whylen) {
    double t0 = rt_now(), t_signal = 0;
    const char *sig = NULL;
    struct timespec nap = {0, 20000};
    for (;;) {
        if (done(arg)) return WAITS_DONE;
        answer();
        double now = rt_now();
        if (!sig && w.interrupt && (sig = w.interrupt())) t_signal = now;
        int outcome = now - t0 > timeout_s ? WAITS_TIMED_OUT
                    : sig && now - t_signal > WAITS_SIGNAL_GRACE_S ? WAITS_INTERRUPTED : WAITS_DONE;
        if (outcome != WAITS_DONE) {
            char roll[768];
            roll_call(members, n, roll, sizeof roll);
            if (outcome == WAITS_TIMED_OUT)
                snprintf(why, whylen, "timed out after %.0f s (parallel.timeout_s): %s", timeout_s, roll);
            else
                snprintf(why, whylen, "%s received while waiting (%.0f s so far): %s", sig, now - t0, roll);
            return outcome;
        }
        nanosleep(&nap, NULL);
    }
}
