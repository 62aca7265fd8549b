/* arena_backend: a backend whose alloc, free, host_alloc and host_free are served by an arena
 * (arena.h). arena_backend_attach makes the arena's two blocks with the backend's own alloc
 * (the device block) and host_alloc (the pinned host block: on CUDA one cudaHostAlloc, whose
 * pages land on the memory node the process is bound to, affinity.c, as each buffer's did)
 * and puts the arena's hand-out in place of the four: alloc still zero-fills (with the
 * backend's zero), and on a host backend host_alloc too; a free gives the buffer back and
 * releases nothing. An allocation the arena refuses -- one the plan does not have, or any
 * after the start-up (in the step) -- is fatal, naming the buffer. arena_backend_detach frees
 * the blocks with the backend's own functions and puts them back. */
#ifndef RT_ARENA_BACKEND_H
#define RT_ARENA_BACKEND_H

#include "arena.h"
#include "backend.h"

/* be: a writable backend table (its own alloc, free, host_alloc, host_free in place); a: laid
 * out (arena_layout), outliving the attachment. */
void arena_backend_attach(struct backend *be, struct arena *a);
void arena_backend_detach(struct backend *be);
/* Fatal unless the start-up allocated every buffer of the arena (call it when it is done). */
void arena_backend_check(const struct backend *be);

#endif
