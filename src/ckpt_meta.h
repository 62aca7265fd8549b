/* ckpt_meta: the text of a checkpoint's meta.json (docs/checkpoints.md). Format 2 lists per
 * data file its size and its blocks -- [offset, bytes, "xxh3-64"], the ranges the ranks
 * wrote, tiling the file in offset order; format 1 (one xxh3-64 of the whole file) is read as
 * one block per file. meta_xxh3 is the xxh3-64 of the compact text of every other member. */
#ifndef RT_CKPT_META_H
#define RT_CKPT_META_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"

#define CKPT_FORMAT 2
#define CKPT_META_MAX ((long)64 << 20) /* bytes of meta.json read at most */

struct ckpt_block {
    int64_t  off, bytes; /* in the file */
    uint64_t hash;       /* xxh3-64 of those bytes */
};

/* What meta.json says about model.bin and optim.bin. */
struct ckpt_files {
    int                format;
    int64_t            bytes[CKPT_NFILES];
    int                n_blocks[CKPT_NFILES];
    struct ckpt_block *blocks[CKPT_NFILES]; /* (n_blocks) by offset; empty blocks left out */
};

/* The meta.json text (format 2) of m and f's blocks, sorted here (malloc'd; NULL when out of
 * memory). */
char *ckpt_meta_text(const struct ckpt_meta *m, struct ckpt_files *f);
/* Parse text: its checksum, the members, and that each file's blocks tile it. Returns 0, or
 * -1 with the reason in why. f is to be freed with ckpt_files_free either way. */
int ckpt_meta_parse(const char *text, struct ckpt_meta *m, struct ckpt_files *f, char *why, size_t wl);
/* The blocks of each file (sorted) tile it exactly, and the sizes are those of n_params
 * floats (model.bin) and twice that (optim.bin). Returns 0, or -1 with why. */
int ckpt_files_check(const struct ckpt_files *f, int64_t n_params, char *why, size_t wl);
void ckpt_files_free(struct ckpt_files *f);

#endif
