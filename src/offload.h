/* offload: one kind of per-layer saved tensor (a layer input, an attention output) for all
 * layers, of which the first n_host live in host memory between the forward and the
 * backward. Those layers are computed in one of OFFLOAD_SLOTS rotating device slots: the
 * forward writes layer l into slot l % OFFLOAD_SLOTS and copies it out while the next layers
 * run; the backward copies layer l-1 back while layer l runs. Copies go through the
 * backend's copy queue (backend.h: copy_async, fence_wait), so they overlap compute and the
 * compute stream waits only when a copy is late. Layers [n_host, n) own device buffers.
 * A slot still holding a layer from the forward is not copied back. */
#ifndef RT_OFFLOAD_H
#define RT_OFFLOAD_H

#include <stddef.h>

#include "backend.h"
#include "config.h"

#define OFFLOAD_SLOTS 3 /* the layer being written, the one before it (read), one copying out */

struct offload_set {
    const struct backend *be;
    const char *what;                  /* for allocation messages */
    size_t bytes;                      /* one layer's tensor */
    int    n, n_host;                  /* layers; [0, n_host) live in host memory */
    void **dev;                        /* (n) own device buffers of the resident layers, else NULL */
    void **host;                       /* (n_host) host copies */
    void  *slot[OFFLOAD_SLOTS];        /* device slots (when n_host > 0) */
    int    slot_layer[OFFLOAD_SLOTS];  /* the layer a slot holds (or is receiving); -1: none */
    void  *out_done[OFFLOAD_SLOTS];    /* fence: the slot's copy to the host finished */
    void  *in_done[OFFLOAD_SLOTS];     /* fence: the slot's copy from the host finished */
};

/* Allocates the resident buffers, the host copies and the slots. */
void offload_init(struct offload_set *s, const struct backend *be, const char *what, size_t bytes, int n,
                  int n_host);
void offload_free(struct offload_set *s);

/* Forward: where layer l's tensor is written now (for a host layer its slot, once the slot's
 * previous copy-out has finished), and, once it is complete, the start of its copy-out. */
void *offload_write(struct offload_set *s, int l);
void offload_written(struct offload_set *s, int l);
/* Backward: start bringing layer l back (no-op for l < 0, a resident layer, or a layer still
 * in its slot); then offload_read returns it, making later ops wait for the copy. */
void offload_prefetch(struct offload_set *s, int l);
void *offload_read(struct offload_set *s, int l);

/* Bytes of device memory the set needs: the resident layers and the slots. */
size_t offload_device_bytes(size_t bytes, int n, int n_host);

/* How many layers to keep in host memory: mode (enum cfg_offload) OFFLOAD_NONE: 0; OFFLOAD_ALL: n; OFFLOAD_AUTO:
 * the fewest such that the device part (offload_device_bytes of each per-layer size in
 * bytes[0..nsets)) fits in `budget` bytes; -1 when even n does not fit. */
int offload_layers_for(int mode, int n, const size_t *bytes, int nsets, size_t budget);

#endif
