/* mapfile: a regular file opened and memory-mapped read-only as a whole, for the readers of
 * token files (npy.c) and weights (safetensors.c). */
#ifndef RT_MAPFILE_H
#define RT_MAPFILE_H

#include <stddef.h>

struct mapfile {
    int    fd;   /* -1 when closed */
    void  *map;  /* (len) bytes, PROT_READ; NULL when closed or when the file is empty */
    size_t len;  /* the file size in bytes */
};

/* Open path, check that it is a regular file and map all of it read-only. An empty file is
 * opened without a mapping (map NULL, len 0: mmap refuses length 0); callers check len
 * against their format's minimum. Returns 0, or -1 with one line in err (those of
 * mapfile_open_regular, "<path>: mmap of N bytes failed: ...") and m closed. */
int  mapfile_open(struct mapfile *m, const char *path, char *err, size_t errlen);
/* Open path read-only, refusing what is not a regular file (a FIFO, whose open and reads
 * would block, a device, a directory) without blocking. Returns the descriptor (blocking
 * reads, close-on-exec), or -1 with one line in err ("<path>: cannot open: ...", "<path>:
 * not a regular file (a FIFO)"). For every reader of input files (job file, config.json,
 * token and weight files). */
int  mapfile_open_regular(const char *path, char *err, size_t errlen);
/* Run read(arg), which reads mapped files, so that a page beyond the end of a file that was
 * truncated after it was mapped (SIGBUS) ends the read instead of the process. Returns 0
 * when read returned, -1 when it faulted (its writes up to there are kept, the rest are
 * not done). Main thread or any one thread at a time per call; read must not hold locks or
 * allocate (it is abandoned at the fault). */
int  mapfile_guarded(void (*read)(void *), void *arg);
/* Unmap and close; safe on a closed mapfile. Leaves fd -1, map NULL, len 0. */
void mapfile_close(struct mapfile *m);

#endif
