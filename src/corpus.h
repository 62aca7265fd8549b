/* corpus: a token stream made of .npy token files read in order, as if concatenated. The
 * list is the text of data.train / data.eval: one path a line, a directory standing for
 * its *.npy files sorted by name, a glob pattern (train-*.npy) for its matches sorted by
 * name. Global token index g lies in file i when
 * start[i] <= g < start[i + 1]. Shape letters: n files, N tokens in all. */
#ifndef RT_CORPUS_H
#define RT_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "npy.h"

struct corpus {
    int         n;      /* files, >= 1 */
    struct npy *files;  /* (n) mapped token files, in stream order */
    int64_t    *start;  /* (n + 1) global index of each file's first token; start[n] = N */
    int64_t     total;  /* N tokens */
};

/* Open every file of a newline-separated list (directories expanded to their *.npy files,
 * sorted by name, entries starting with '.' skipped; a path that does not exist and holds
 * * ? or [ expanded as a glob pattern, sorted by name). Names sort with strcmp, whatever
 * the locale, so every rank sees one order. Returns 0, or -1 with one line in err naming
 * the file, directory or pattern at fault. */
int  corpus_open(struct corpus *c, const char *list, char *err, size_t errlen);
/* Every token in [0, vocab_size). Returns 0, or -1 naming the file, the index within that
 * file, the value, and the file's place in the list. */
int  corpus_check_tokens(const struct corpus *c, int64_t vocab_size, char *err, size_t errlen);
/* out[i] = token[start + i] of the stream, for i < count; crosses file boundaries. The
 * caller keeps 0 <= start and start + count <= total. A file that shrank since it was
 * opened (its mapping then faults with SIGBUS) aborts the job with a message naming it. */
void corpus_read(const struct corpus *c, int64_t start, int64_t count, int32_t *out);
/* "path" for one file, "N files (first ... last)" for more; for messages. */
void corpus_describe(const struct corpus *c, char *buf, size_t buflen);
/* The list text (data.train / data.eval, one path a line) on one line for logs and JSON:
 * "a.npy" or "a.npy, b.npy, dir/"; shortened to "a.npy, ... (N paths)" when it does not fit. */
void corpus_list_text(const char *list, char *buf, size_t buflen);
/* A fingerprint of the stream's shape: the number of files and each one's token count and
 * item size, in order (not the paths, so a moved copy matches; not the contents, which
 * would mean reading everything). For a checkpoint to tell that a resume reads the same
 * stream, where its cursor means the same windows. */
uint64_t corpus_fingerprint(const struct corpus *c);
void corpus_close(struct corpus *c);

#endif
