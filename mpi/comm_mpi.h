/* comm_mpi: the MPI implementation of struct comm, on host buffers. */
#ifndef RT_COMM_MPI_H
#define RT_COMM_MPI_H

#include <mpi.h>

#include "comm.h"

/* Wrap a duplicate of `parent` (MPI_ERRORS_RETURN set). timeout_s bounds every wait: each
 * operation is a non-blocking MPI call polled through waits_poll (waits.h). */
void comm_mpi_init(struct comm *c, MPI_Comm parent, const char *name, double timeout_s);

/* Collectives of the MPI transport alone (host buffers; c must come from comm_mpi_init), for
 * the control communicator. Blocks of count elements, any count (sent in pieces):
 * gather: root receives every rank's send into recv (size x count, rank order); in place at
 * the root when send == recv + root * count. recv is used on the root only.
 * scatter: rank i receives block i of the root's send (size x count) into recv; in place at
 * the root when recv == send + root * count. send is used on the root only. */
void comm_mpi_gather(struct comm *c, const void *send, void *recv, int64_t count, int dtype, int root);
void comm_mpi_scatter(struct comm *c, const void *send, void *recv, int64_t count, int dtype, int root);

#endif
