/* ckpt_io: one rank's file work in a checkpoint directory: its ranges written with pwrite
 * into the data files rank 0 created (each range hashed as one block, the fault hooks
 * applied, fsynced), whole small files (meta.json, DONE), blocks verified, ranges read. Host
 * memory: one staging buffer of at most CKPT_STAGE_BYTES (the largest range or block
 * below that). Not collective: checkpoint.c orders the ranks. */
#ifndef RT_CKPT_IO_H
#define RT_CKPT_IO_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "ckpt_meta.h"

extern const char *const ckpt_file_names[CKPT_NFILES]; /* "model.bin", "optim.bin" */

/* Byte counter of this rank's writes in one save, and the fault hooks that watch it (f NULL
 * or zero: none). */
struct ckpt_writes {
    const struct ckpt_faults *f;
    int64_t                   bytes;
};

/* Write path whole (created or truncated) and fsync it. Returns 0, or -1 with err. */
int ckpt_io_write_file(const char *path, const void *data, size_t bytes, struct ckpt_writes *w, char *err,
                       size_t errlen);
/* Rank 0: create base's data files at their full sizes (bytes[i], holes until written). */
int ckpt_io_create(const char *base, const int64_t bytes[CKPT_NFILES], char *err, size_t errlen);
/* Write mine's ranges into base's data files and fsync them; blocks[i] receives range i's
 * offset, size and xxh3-64 (in bytes). rank names this rank in messages. Returns 0, or -1
 * with err. */
int ckpt_io_write_part(const char *base, const struct ckpt_part *mine, int rank, struct ckpt_writes *w,
                       struct ckpt_block *blocks, char *err, size_t errlen);
/* Verify the blocks of the first nfiles files of f that fall to this rank (block k of all of
 * them in file order goes to rank k % size). Returns -1 when they all match, else the
 * index k of the first bad one; *read_error is set when it could not be read. */
int64_t ckpt_io_verify(const char *base, const struct ckpt_files *f, int nfiles, int rank, int size,
                       int *read_error);
/* Read need's ranges from base's data files and put them. Returns 0, or -1 with err. */
int ckpt_io_read_part(const char *base, const struct ckpt_part *need, char *err, size_t errlen);

#endif
