/* arena: the buffers of a rank's start-up placed at offsets of two blocks, one of device
 * memory and one of pinned host memory (the backend's alloc and host_alloc), so that a run
 * makes one allocation of each and nothing after.
 * Three stages on one struct:
 *  - record: the memory plan's backend (mem_plan.c) notes every alloc / host_alloc of the
 *    start-up in order (name, space, bytes) and every free, as events 0, 1, 2, ...; buffer i
 *    lives over [born, dies) (dies ARENA_NEVER: not freed during the start-up);
 *  - layout: each buffer gets an offset in its space, a multiple of ARENA_ALIGN, its size
 *    rounded up to ARENA_ALIGN (at least ARENA_ALIGN, so every buffer has an address of its
 *    own). Greedy, largest first: the lowest offset clear of every buffer already placed in
 *    the same space whose lifetime overlaps. Buffers share bytes only when the record proves
 *    their lifetimes disjoint (one freed before the other is allocated). A space's size is the
 *    highest end;
 *  - hand-out: with the blocks' base addresses set, arena_take answers the k-th allocation
 *    with the k-th recorded buffer when space, bytes and name agree and every buffer the
 *    record freed before it was allocated has been given back; anything else -- another
 *    allocation, or one after the last recorded (in the step) -- is refused with a message
 *    naming it. arena_give takes a buffer back; its bytes are not handed out again (the
 *    layout already placed the buffers that follow).
 * The functions that can fail return 0, or -1 with the reason in err; arena_backend.h makes
 * such a failure fatal for a backend. */
#ifndef RT_ARENA_H
#define RT_ARENA_H

#include <stddef.h>
#include <stdint.h>

#define ARENA_ALIGN ((size_t)256)
#define ARENA_NEVER INT64_MAX

enum arena_space { ARENA_DEVICE, ARENA_HOST, ARENA_NSPACE };

/* One recorded buffer. */
struct arena_buf {
    char      what[96];
    int       space;      /* enum arena_space */
    size_t    bytes;      /* as asked */
    int64_t   born, dies; /* events of its allocation and its free (ARENA_NEVER: none recorded) */
    uintptr_t tag;        /* the address the recording backend gave it (its free names it) */
    size_t    offset;     /* in its space (arena_layout) */
    int       state;      /* hand-out: 0 not yet, 1 handed out, 2 given back */
};

struct arena {
    struct arena_buf *buf;                 /* (n) in the order of their allocation */
    int               n, cap;
    int64_t           events;              /* allocations and frees recorded */
    int               laid_out;            /* arena_layout ran: the record is closed */
    size_t            size[ARENA_NSPACE];  /* bytes of each space's block (arena_layout) */
    size_t            bytes[ARENA_NSPACE]; /* the buffers' own bytes, by space */
    size_t            padded[ARENA_NSPACE]; /* the same rounded up to ARENA_ALIGN each */
    int               count[ARENA_NSPACE]; /* buffers, by space */
    char             *base[ARENA_NSPACE];  /* the blocks (hand-out) */
    int               next;                /* the next buffer to hand out */
};

void arena_init(struct arena *a);
void arena_free(struct arena *a);
/* dst takes src's record and layout; src is left empty and closed (frees are ignored). */
void arena_move(struct arena *dst, struct arena *src);

/* Record an allocation of `bytes` in `space` that the recording backend answered with tag. */
void arena_record(struct arena *a, int space, size_t bytes, const char *what, uintptr_t tag);
/* Record the free of the live buffer answered with tag; -1 when none is (ignored once closed). */
int arena_record_free(struct arena *a, uintptr_t tag, char *err, size_t errlen);
/* Offsets and sizes (above); closes the record. */
void arena_layout(struct arena *a);

/* Hand-out (after arena_layout and the bases): the next buffer, or -1 (p NULL) with why. */
int arena_take(struct arena *a, int space, size_t bytes, const char *what, void **p, char *err, size_t errlen);
/* Give back a buffer handed out; -1 when p is none. */
int arena_give(struct arena *a, void *p, char *err, size_t errlen);
/* Whether every recorded buffer was handed out (-1 with the first that was not). */
int arena_complete(const struct arena *a, char *err, size_t errlen);

/* "arena: 1.50 GiB device (12 buffers), 64.00 MiB pinned host (3 buffers)" into buf; on a
 * host backend (host_memory) the spaces are named "backend memory" and "offload host memory". */
const char *arena_text(const struct arena *a, int host_memory, char *buf, size_t n);

#endif
