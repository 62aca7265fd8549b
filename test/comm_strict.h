/* comm_strict (tests): a struct comm wrapped around another (the MPI transport, host
 * buffers) that holds its caller to the contract of the started collectives (comm.h). A
 * started reduce-scatter or all-gather runs only at its wait; from the start to the wait its
 * recv buffer holds poison (0xff bytes: NaN as f32) and its send buffer is kept aside. At the
 * wait both are checked -- recv still all poison, send unchanged where it lies outside recv
 * -- and any difference is counted as a violation (a write while in flight); then send is
 * put back and the wrapped transport runs the operation. So a caller that reads a result
 * before its wait computes with NaNs, and one that writes either buffer in flight is
 * counted. Every other operation is the wrapped transport's. */
#ifndef RT_COMM_STRICT_H
#define RT_COMM_STRICT_H

#include "comm.h"

struct comm_strict_stats {
    int started;        /* collectives started */
    int violations;     /* waits that found a buffer written while in flight */
    int most_in_flight; /* the most started collectives not yet waited for, at once */
};

/* c becomes strict in place (its pointer stays valid for those that hold it); comm_free(c)
 * frees the wrapped transport too. */
void comm_strict_wrap(struct comm *c);
const struct comm_strict_stats *comm_strict_stats(const struct comm *c);

#endif
