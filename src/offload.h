/* offload: one kind of per-layer saved tensor (a layer input, an attention output) for all
 * layers, split token-wise (MEMO's placement): rows [0, split) of every layer stay on the
 * device in a buffer of the layer's own, rows [split, T) wait in pinned host memory between
 * the forward and the backward. Every layer has the same split, so each layer moves the same
 * bytes over PCIe and the device holds only the host part's staging, not whole layers.
 *
 * Two shapes, by how the tensor is read:
 *  - OFFLOAD_ROWS (the layer input): read and written by token tiles, so a layer sees its
 *    two parts through a struct saved_rows (layer.c tiles the parts apart, so no tile
 *    straddles the split). The host rows of a layer are computed in one of two staging slots of
 *    T - split rows: the forward writes layer l's into slot l % 2 once the slot's copy-out
 *    of layer l - 2 is done, and copies them out once written; the backward copies layer
 *    l - 1's back while layer l runs. A slot still holding its layer from the forward is not
 *    copied back.
 *  - OFFLOAD_WHOLE (the attention output): the ring reads all T rows at once, so with any
 *    host rows the layer works in one whole (T rows) staging buffer: the forward's copy-out
 *    sends rows [0, split) to the layer's device buffer and the rest to the host, the
 *    backward's copy-in assembles both. Whoever last read the staging buffer calls the
 *    next prefetch (layer.c: after the ring backward).
 * Copies go through the backend's copy queue (backend.h: copy_async, fence_wait): they start
 * after every op issued so far and later ops wait for them only when they need the buffer.
 * split = T keeps everything on the device: no staging, no copies. */
#ifndef RT_OFFLOAD_H
#define RT_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"

enum offload_shape { OFFLOAD_ROWS, OFFLOAD_WHOLE };
#define OFFLOAD_SLOTS 2 /* ROWS: the layer being written or read, and the one copying */
#define OFFLOAD_STEP 256 /* memory.offload auto moves tokens in steps of this many */

/* A layer's tensor as the layer sees it: rows [0, split) at dev, rows [split, T) at tail.
 * When tail == dev + split rows (no host part, or the WHOLE shape) the rows are contiguous
 * and dev is the whole tensor. */
struct saved_rows {
    char   *dev, *tail;
    int64_t split;
    size_t  row_bytes;
};

/* Row r of a layer's tensor. */
static inline void *saved_row(const struct saved_rows *v, int64_t r) {
    return r < v->split ? v->dev + r * (int64_t)v->row_bytes : v->tail + (r - v->split) * (int64_t)v->row_bytes;
}

struct offload_set {
    const struct backend *be;
    const char *what;                  /* for allocation messages */
    int     shape;                     /* enum offload_shape */
    size_t  row_bytes;                 /* one token's row */
    int64_t T, split;                  /* rows per layer; rows [0, split) stay on the device */
    int     n;                         /* layers */
    int     nslots;                    /* staging buffers: 0 (split = T), 2 (ROWS) or 1 (WHOLE) */
    void  **dev;                       /* (n) the device rows of each layer (NULL when split = 0) */
    void  **host;                      /* (n) the host rows (when split < T) */
    void   *slot[OFFLOAD_SLOTS];       /* staging: T - split rows (ROWS), T rows (WHOLE) */
    int     slot_layer[OFFLOAD_SLOTS]; /* the layer a slot holds (or is receiving); -1: none */
    void   *out_done[OFFLOAD_SLOTS];   /* fence: the slot's copy-out finished */
    void   *in_done[OFFLOAD_SLOTS];    /* fence: the slot's copy-in finished */
};

/* Allocates the device rows, the host rows and the staging. split: 0 <= split <= T. */
void offload_init(struct offload_set *s, const struct backend *be, const char *what, int shape, size_t row_bytes,
                  int64_t T, int n, int64_t split);
void offload_free(struct offload_set *s);

/* Forward: where layer l's tensor is written now (for host rows its slot, once the slot's
 * previous copy-out has finished), and, once it is complete, the start of its copy-out. */
struct saved_rows offload_write(struct offload_set *s, int l);
void offload_written(struct offload_set *s, int l);
/* Backward: start bringing layer l back (no-op for l < 0, split = T, or a layer still in its
 * slot); then offload_read returns it, making later ops wait for the copy. */
void offload_prefetch(struct offload_set *s, int l);
struct saved_rows offload_read(struct offload_set *s, int l);

/* Device bytes of a set of n layers of T rows with `split` rows each on the device (0 for
 * no layers). */
size_t offload_device_bytes(int shape, size_t row_bytes, int64_t T, int n, int64_t split);

/* Device bytes of the saved tensors with `split` rows of each layer on the device: `fixed`
 * plus offload_device_bytes of the nsets tensor kinds shape[i], row_bytes[i] of n[i] layers. */
size_t offload_need(int64_t T, const int *shape, const size_t *row_bytes, const int *n, int nsets, size_t fixed,
                    int64_t split);
/* The rows per layer to keep on the device: mode (enum cfg_offload) OFFLOAD_NONE: T;
 * OFFLOAD_ALL: 0; OFFLOAD_AUTO: the most, in steps of `step` rows (T itself always counts),
 * whose offload_need fits in `budget`. -1 when the mode's split does not fit (for AUTO:
 * not even split 0). */
int64_t offload_split_for(int mode, int64_t T, int64_t step, const int *shape, const size_t *row_bytes, const int *n,
                          int nsets, size_t fixed, size_t budget);

#endif
