/* offload: per-layer saved tensors kept in host memory between the forward and the backward
 * (offload.h). */
#include "offload.h"

#include <stdlib.h>

#include "runtime.h"

static int is_host(const struct offload_set *s, int l) { return l < s->n_host; }

void offload_init(struct offload_set *s, const struct backend *be, const char *what, size_t bytes, int n,
                  int n_host) {
    if (n_host < 0 || n_host > n) RT_FATAL("offload: %d of %d layers of %s", n_host, n, what);
    *s = (struct offload_set){.be = be, .what = what, .bytes = bytes, .n = n, .n_host = n_host};
    s->dev = rt_calloc((size_t)n, sizeof *s->dev, what);
    for (int l = n_host; l < n; l++) s->dev[l] = be->alloc(be, bytes, what);
    for (int k = 0; k < OFFLOAD_SLOTS; k++) s->slot_layer[k] = -1;
    if (!n_host) return;
    s->host = rt_calloc((size_t)n_host, sizeof *s->host, what);
    for (int l = 0; l < n_host; l++) s->host[l] = be->host_alloc(be, bytes, what);
    for (int k = 0; k < OFFLOAD_SLOTS; k++) {
        s->slot[k] = be->alloc(be, bytes, what);
        s->out_done[k] = be->fence_new(be);
        s->in_done[k] = be->fence_new(be);
    }
}

void offload_free(struct offload_set *s) {
    const struct backend *be = s->be;
    for (int l = s->n_host; l < s->n; l++) be->free(be, s->dev[l]);
    if (s->n_host) {
        for (int l = 0; l < s->n_host; l++) be->host_free(be, s->host[l]);
        for (int k = 0; k < OFFLOAD_SLOTS; k++) {
            be->free(be, s->slot[k]);
            be->fence_free(be, s->out_done[k]);
            be->fence_free(be, s->in_done[k]);
        }
    }
    free(s->dev);
    free(s->host);
}

void *offload_write(struct offload_set *s, int l) {
    if (!is_host(s, l)) return s->dev[l];
    int k = l % OFFLOAD_SLOTS;
    if (s->slot_layer[k] >= 0) s->be->fence_wait(s->be, s->out_done[k]);
    s->slot_layer[k] = l;
    return s->slot[k];
}

void offload_written(struct offload_set *s, int l) {
    if (!is_host(s, l)) return;
    int k = l % OFFLOAD_SLOTS;
    s->be->copy_async(s->be, s->host[l], s->slot[k], s->bytes, s->out_done[k]);
}

void offload_prefetch(struct offload_set *s, int l) {
    if (l < 0 || !is_host(s, l)) return;
    int k = l % OFFLOAD_SLOTS;
    if (s->slot_layer[k] == l) return;
    s->be->copy_async(s->be, s->slot[k], s->host[l], s->bytes, s->in_done[k]);
    s->slot_layer[k] = l;
}

void *offload_read(struct offload_set *s, int l) {
    if (!is_host(s, l)) return s->dev[l];
    int k = l % OFFLOAD_SLOTS;
    offload_prefetch(s, l);
    /* A slot filled by the forward has no copy-in; waiting on its (already reached or
     * never recorded) fence is harmless. */
    s->be->fence_wait(s->be, s->in_done[k]);
    return s->slot[k];
}

size_t offload_device_bytes(size_t bytes, int n, int n_host) {
    return bytes * (size_t)(n - n_host + (n_host ? OFFLOAD_SLOTS : 0));
}

int offload_layers_for(int mode, int n, const size_t *bytes, int nsets, size_t budget) {
    if (mode == OFFLOAD_NONE) return 0;
    if (mode == OFFLOAD_ALL) return n;
    for (int k = 0; k <= n; k++) {
        size_t need = 0;
        for (int i = 0; i < nsets; i++) need += offload_device_bytes(bytes[i], n, k);
        if (need <= budget) return k;
    }
    return -1;
}
