/* offload: per-layer saved tensors split token-wise between the device and host memory
 * (offload.h). */
#include "offload.h"

#include <stdlib.h>

#include "runtime.h"

static size_t rows_bytes(const struct offload_set *s, int64_t rows) { return (size_t)rows * s->row_bytes; }
static int64_t host_rows(const struct offload_set *s) { return s->T - s->split; }
static int slot_of(const struct offload_set *s, int l) { return s->shape == OFFLOAD_WHOLE ? 0 : l % OFFLOAD_SLOTS; }

void offload_init(struct offload_set *s, const struct backend *be, const char *what, int shape, size_t row_bytes,
                  int64_t T, int n, int64_t split) {
    if (split < 0 || split > T) RT_FATAL("offload: %lld of %lld rows of %s on the device", (long long)split,
                                         (long long)T, what);
    *s = (struct offload_set){.be = be, .what = what, .shape = shape, .row_bytes = row_bytes, .T = T,
                              .split = split, .n = n};
    s->dev = rt_calloc((size_t)n, sizeof *s->dev, what);
    for (int l = 0; l < n && split; l++) s->dev[l] = be->alloc(be, rows_bytes(s, split), what);
    for (int k = 0; k < OFFLOAD_SLOTS; k++) s->slot_layer[k] = -1;
    if (split == T || !n) return;
    s->host = rt_calloc((size_t)n, sizeof *s->host, what);
    for (int l = 0; l < n; l++) s->host[l] = be->host_alloc(be, rows_bytes(s, host_rows(s)), what);
    s->nslots = shape == OFFLOAD_WHOLE ? 1 : OFFLOAD_SLOTS;
    for (int k = 0; k < s->nslots; k++) {
        s->slot[k] = be->alloc(be, rows_bytes(s, shape == OFFLOAD_WHOLE ? T : host_rows(s)), what);
        s->out_done[k] = be->fence_new(be);
        s->in_done[k] = be->fence_new(be);
    }
}

void offload_free(struct offload_set *s) {
    const struct backend *be = s->be;
    for (int l = 0; l < s->n && s->split; l++) be->free(be, s->dev[l]);
    for (int l = 0; s->host && l < s->n; l++) be->host_free(be, s->host[l]);
    for (int k = 0; k < s->nslots; k++) {
        be->free(be, s->slot[k]);
        be->fence_free(be, s->out_done[k]);
        be->fence_free(be, s->in_done[k]);
    }
    free(s->dev);
    free(s->host);
}

/* Layer l's rows as the layer sees them (its slot k for the host part). */
static struct saved_rows view(const struct offload_set *s, int l) {
    struct saved_rows v = {s->dev[l], NULL, s->split, s->row_bytes};
    if (s->split == s->T) return v;
    char *slot = s->slot[slot_of(s, l)];
    if (s->shape == OFFLOAD_WHOLE) return (struct saved_rows){slot, slot + rows_bytes(s, s->split), s->split,
                                                              s->row_bytes};
    v.tail = slot;
    return v;
}

struct saved_rows offload_write(struct offload_set *s, int l) {
    if (s->split < s->T) {
        int k = slot_of(s, l);
        if (s->slot_layer[k] >= 0) s->be->fence_wait(s->be, s->out_done[k]);
        s->slot_layer[k] = l;
    }
    return view(s, l);
}

void offload_written(struct offload_set *s, int l) {
    if (s->split == s->T) return;
    const struct backend *be = s->be;
    int k = slot_of(s, l);
    const char *slot = s->slot[k];
    if (s->shape == OFFLOAD_WHOLE) {
        if (s->split) be->copy_async(be, s->dev[l], slot, rows_bytes(s, s->split), s->out_done[k]);
        slot += rows_bytes(s, s->split);
    }
    be->copy_async(be, s->host[l], slot, rows_bytes(s, host_rows(s)), s->out_done[k]);
}

void offload_prefetch(struct offload_set *s, int l) {
    if (l < 0 || s->split == s->T) return;
    const struct backend *be = s->be;
    int k = slot_of(s, l);
    if (s->slot_layer[k] == l) return;
    char *slot = s->slot[k];
    if (s->shape == OFFLOAD_WHOLE) {
        if (s->split) be->copy_async(be, slot, s->dev[l], rows_bytes(s, s->split), s->in_done[k]);
        slot += rows_bytes(s, s->split);
    }
    be->copy_async(be, slot, s->host[l], rows_bytes(s, host_rows(s)), s->in_done[k]);
    s->slot_layer[k] = l;
}

struct saved_rows offload_read(struct offload_set *s, int l) {
    if (s->split < s->T) {
        offload_prefetch(s, l);
        /* A slot filled by the forward has no copy-in; waiting on its (already reached or
         * never recorded) fence is harmless. */
        s->be->fence_wait(s->be, s->in_done[slot_of(s, l)]);
    }
    return view(s, l);
}

size_t offload_device_bytes(int shape, size_t row_bytes, int64_t T, int n, int64_t split) {
    if (!n) return 0;
    int64_t staging = split == T ? 0 : shape == OFFLOAD_WHOLE ? T : OFFLOAD_SLOTS * (T - split);
    return row_bytes * (size_t)(n * split + staging);
}

size_t offload_need(int64_t T, const int *shape, const size_t *row_bytes, const int *n, int nsets, size_t fixed,
                    int64_t split) {
    size_t need = fixed;
    for (int i = 0; i < nsets; i++) need += offload_device_bytes(shape[i], row_bytes[i], T, n[i], split);
    return need;
}

int64_t offload_split_for(int mode, int64_t T, int64_t step, const int *shape, const size_t *row_bytes, const int *n,
                          int nsets, size_t fixed, size_t budget) {
    if (mode != OFFLOAD_AUTO) {
        int64_t split = mode == OFFLOAD_NONE ? T : 0;
        return offload_need(T, shape, row_bytes, n, nsets, fixed, split) <= budget ? split : -1;
    }
    for (int64_t split = T; split >= 0; split = split == T ? (T - 1) / step * step : split - step) {
        if (offload_need(T, shape, row_bytes, n, nsets, fixed, split) <= budget) return split;
        if (split == 0) break;
    }
    return -1;
}
