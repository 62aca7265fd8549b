/* comm_mpi: the MPI implementation of struct comm, on host buffers. */
#ifndef RT_COMM_MPI_H
#define RT_COMM_MPI_H

#include <mpi.h>

#include "comm.h"

/* Wrap a duplicate of `parent` (MPI_ERRORS_RETURN set). timeout_s bounds ring waits. */
void comm_mpi_init(struct comm *c, MPI_Comm parent, const char *name, double timeout_s);

#endif
