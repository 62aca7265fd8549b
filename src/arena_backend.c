/* arena_backend: a backend's memory functions served by an arena (see arena_backend.h). */
#include "arena_backend.h"

#include <stdlib.h>

#include "runtime.h"

/* The arena and the backend's own memory functions (be->arena). */
struct arena_binding {
    struct arena *a;
    void *(*alloc)(const struct backend *be, size_t bytes, const char *what);
    void (*free)(const struct backend *be, void *p);
    void *(*host_alloc)(const struct backend *be, size_t bytes, const char *what);
    void (*host_free)(const struct backend *be, void *p);
};

static void *take(const struct backend *be, int space, size_t bytes, const char *what) {
    char err[512];
    void *p;
    if (arena_take(be->arena->a, space, bytes, what, &p, err, sizeof err)) RT_FATAL("%s", err);
    return p;
}

static void give(const struct backend *be, void *p) {
    char err[256];
    if (arena_give(be->arena->a, p, err, sizeof err)) RT_FATAL("%s", err);
}

static void *a_alloc(const struct backend *be, size_t bytes, const char *what) {
    void *p = take(be, ARENA_DEVICE, bytes, what);
    be->zero(be, p, bytes);
    return p;
}

static void *a_host_alloc(const struct backend *be, size_t bytes, const char *what) {
    void *p = take(be, ARENA_HOST, bytes, what);
    if (be->host_memory) be->zero(be, p, bytes);
    return p;
}

void arena_backend_attach(struct backend *be, struct arena *a) {
    if (!a->laid_out) RT_FATAL("arena: attached to the %s backend before its layout was made", be->name);
    struct arena_binding *b = rt_calloc(1, sizeof *b, "arena binding");
    *b = (struct arena_binding){a, be->alloc, be->free, be->host_alloc, be->host_free};
    if (a->size[ARENA_DEVICE]) a->base[ARENA_DEVICE] = be->alloc(be, a->size[ARENA_DEVICE], "the device arena");
    if (a->size[ARENA_HOST]) a->base[ARENA_HOST] = be->host_alloc(be, a->size[ARENA_HOST], "the pinned host arena");
    be->arena = b;
    be->alloc = a_alloc;
    be->free = give;
    be->host_alloc = a_host_alloc;
    be->host_free = give;
}

void arena_backend_detach(struct backend *be) {
    struct arena_binding *b = be->arena;
    struct arena *a = b->a;
    be->alloc = b->alloc;
    be->free = b->free;
    be->host_alloc = b->host_alloc;
    be->host_free = b->host_free;
    be->arena = NULL;
    if (a->base[ARENA_DEVICE]) be->free(be, a->base[ARENA_DEVICE]);
    if (a->base[ARENA_HOST]) be->host_free(be, a->base[ARENA_HOST]);
    a->base[ARENA_DEVICE] = a->base[ARENA_HOST] = NULL;
    free(b);
}

void arena_backend_check(const struct backend *be) {
    char err[512];
    if (arena_complete(be->arena->a, err, sizeof err)) RT_FATAL("%s", err);
}
