/* arena: record, layout and hand-out of a start-up's buffers (see arena.h). */
#include "arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem_plan.h"
#include "runtime.h"

static const char *space_name[ARENA_NSPACE] = {"device", "pinned host"};

static size_t padded_size(size_t bytes) {
    size_t n = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    return n ? n : ARENA_ALIGN;
}

void arena_init(struct arena *a) { memset(a, 0, sizeof *a); }

void arena_free(struct arena *a) {
    free(a->buf);
    arena_init(a);
}

void arena_move(struct arena *dst, struct arena *src) {
    *dst = *src;
    arena_init(src);
    src->laid_out = 1;
}

void arena_record(struct arena *a, int space, size_t bytes, const char *what, uintptr_t tag) {
    if (a->laid_out) RT_FATAL("arena: %s recorded after the layout was made", what);
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->buf = realloc(a->buf, (size_t)a->cap * sizeof *a->buf);
        if (!a->buf) RT_FATAL("arena: out of memory for %d buffers", a->cap);
    }
    struct arena_buf *b = &a->buf[a->n++];
    memset(b, 0, sizeof *b);
    snprintf(b->what, sizeof b->what, "%s", what);
    b->space = space;
    b->bytes = bytes;
    b->born = a->events++;
    b->dies = ARENA_NEVER;
    b->tag = tag;
}

int arena_record_free(struct arena *a, uintptr_t tag, char *err, size_t errlen) {
    if (a->laid_out) return 0;
    for (int i = a->n - 1; i >= 0; i--) {
        struct arena_buf *b = &a->buf[i];
        if (b->tag != tag || b->dies != ARENA_NEVER) continue;
        b->dies = a->events++;
        return 0;
    }
    snprintf(err, errlen, "arena: free of %#llx, which is no buffer allocated and not yet freed",
             (unsigned long long)tag);
    return -1;
}

static int overlap_in_time(const struct arena_buf *x, const struct arena_buf *y) {
    return x->born < y->dies && y->born < x->dies;
}

/* Larger first; equal sizes in the order of their allocation. */
static int by_size(const void *pa, const void *pb) {
    const struct arena_buf *x = *(struct arena_buf *const *)pa, *y = *(struct arena_buf *const *)pb;
    size_t sx = padded_size(x->bytes), sy = padded_size(y->bytes);
    if (sx != sy) return sx > sy ? -1 : 1;
    return x->born < y->born ? -1 : x->born > y->born;
}
static int by_offset(const void *pa, const void *pb) {
    const struct arena_buf *x = *(struct arena_buf *const *)pa, *y = *(struct arena_buf *const *)pb;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

void arena_layout(struct arena *a) {
    size_t n = (size_t)(a->n ? a->n : 1);
    struct arena_buf **order = rt_malloc(n * sizeof *order, "arena layout");
    struct arena_buf **near = rt_malloc(n * sizeof *near, "arena layout");
    for (int i = 0; i < a->n; i++) order[i] = &a->buf[i];
    qsort(order, (size_t)a->n, sizeof *order, by_size);
    for (int s = 0; s < ARENA_NSPACE; s++) a->size[s] = a->bytes[s] = a->padded[s] = 0, a->count[s] = 0;
    for (int k = 0; k < a->n; k++) {
        struct arena_buf *b = order[k];
        size_t need = padded_size(b->bytes);
        /* the placed buffers of its space alive at the same time, by offset: the first gap that holds it */
        int m = 0;
        for (int j = 0; j < k; j++)
            if (order[j]->space == b->space && overlap_in_time(order[j], b)) near[m++] = order[j];
        qsort(near, (size_t)m, sizeof *near, by_offset);
        size_t at = 0;
        for (int j = 0; j < m && near[j]->offset < at + need; j++) {
            size_t end = near[j]->offset + padded_size(near[j]->bytes);
            if (end > at) at = end;
        }
        b->offset = at;
        if (at + need > a->size[b->space]) a->size[b->space] = at + need;
        a->bytes[b->space] += b->bytes;
        a->padded[b->space] += need;
        a->count[b->space]++;
    }
    free(order);
    free(near);
    a->laid_out = 1;
}

int arena_take(struct arena *a, int space, size_t bytes, const char *what, void **p, char *err, size_t errlen) {
    *p = NULL;
    if (a->next == a->n) {
        snprintf(err, errlen, "arena: %zu bytes of %s memory for %s were not planned: the start-up's %d "
                 "allocations are all made, and nothing is allocated after them (in the step)", bytes,
                 space_name[space], what, a->n);
        return -1;
    }
    const struct arena_buf *b = &a->buf[a->next];
    if (b->space != space || b->bytes != bytes || strcmp(b->what, what)) {
        snprintf(err, errlen, "arena: %zu bytes of %s memory for %s were not planned: allocation %d of the "
                 "start-up was planned as %zu bytes of %s memory for %s", bytes, space_name[space], what, a->next,
                 b->bytes, space_name[b->space], b->what);
        return -1;
    }
    for (int i = 0; i < a->next; i++) {
        const struct arena_buf *o = &a->buf[i];
        if (o->dies < b->born && o->state != 2) {
            snprintf(err, errlen, "arena: %s (allocation %d) was planned after %s (allocation %d) is freed, "
                     "which is still in use", what, a->next, o->what, i);
            return -1;
        }
    }
    if (!a->base[space]) {
        snprintf(err, errlen, "arena: no %s block to take %s from", space_name[space], what);
        return -1;
    }
    a->buf[a->next++].state = 1;
    *p = a->base[space] + b->offset;
    return 0;
}

int arena_give(struct arena *a, void *p, char *err, size_t errlen) {
    for (int i = 0; i < a->next; i++) {
        struct arena_buf *b = &a->buf[i];
        if (b->state == 1 && a->base[b->space] + b->offset == (char *)p) {
            b->state = 2;
            return 0;
        }
    }
    snprintf(err, errlen, "arena: free of %p, which is no buffer of the arena in use", p);
    return -1;
}

int arena_complete(const struct arena *a, char *err, size_t errlen) {
    if (a->next == a->n) return 0;
    const struct arena_buf *b = &a->buf[a->next];
    snprintf(err, errlen, "arena: the start-up made %d of the %d allocations planned; the next was %zu bytes of %s "
             "memory for %s", a->next, a->n, b->bytes, space_name[b->space], b->what);
    return -1;
}

const char *arena_text(const struct arena *a, int host_memory, char *buf, size_t n) {
    char d[32], h[32];
    snprintf(buf, n, "arena: %s %s (%d buffers), %s %s (%d buffers)",
             mem_bytes_text((double)a->size[ARENA_DEVICE], d, sizeof d), host_memory ? "backend memory" : "device",
             a->count[ARENA_DEVICE], mem_bytes_text((double)a->size[ARENA_HOST], h, sizeof h),
             host_memory ? "offload host memory" : "pinned host", a->count[ARENA_HOST]);
    return buf;
}
