/* signals: SIGTERM / SIGUSR1 / SIGINT flags and their agreement across ranks. */
#include "signals.h"

#include <signal.h>
#include <string.h>

#include "waits.h"

static volatile sig_atomic_t pending[3]; /* SIGTERM, SIGUSR1, SIGINT */

static void on_signal(int sig) {
    pending[sig == SIGTERM ? 0 : sig == SIGUSR1 ? 1 : 2] = 1;
}

/* For waits.c: a pending SIGINT ends a wait for other ranks within seconds. */
static const char *stop_pending(void) { return pending[2] ? "SIGINT" : NULL; }

void signals_install(void) {
    waits_set_interrupt(stop_pending);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

int signals_agree(struct comm *c) {
    int32_t f[3];
    for (int i = 0; i < 3; i++) {
        f[i] = pending[i];
        pending[i] = 0;
    }
    comm_all_reduce(c, f, f, 3, COMM_I32, COMM_MAX);
    return (f[0] ? SIGNAL_SAVE_EXIT : 0) | (f[1] ? SIGNAL_SAVE_CONTINUE : 0) | (f[2] ? SIGNAL_STOP : 0);
}
