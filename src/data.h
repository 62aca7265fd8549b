/* data: training sequences. A source yields global sequences of L = seq_len input tokens
 * with their labels (the window shifted by one, label < 0 = no loss), from a corpus of .npy
 * token files read as one stream (sequential or seeded random windows, crossing file
 * boundaries) or from a generated long-range copy task;
 * data_shard then cuts one sequence into a rank's zigzag (or contiguous) shard with global
 * positions. The cursor is a plain integer so a checkpoint can save it. */
#ifndef RT_DATA_H
#define RT_DATA_H

#include <stdint.h>

#include "corpus.h"

enum data_kind { DATA_NPY, DATA_COPY_TASK };

struct data_source {
    int      kind;       /* enum data_kind */
    struct corpus corpus; /* DATA_NPY: the token stream of one or more files */
    int64_t  L;          /* seq_len */
    int      vocab;
    int      random;     /* 1: random window starts, 0: sequential */
    uint64_t seed;
    int64_t  cursor;     /* sequential: next window start; random and copy task: draws made */
};

/* Opens paths (DATA_NPY: the newline-separated files and directories of data.train /
 * data.eval, see corpus.h) or sets up the copy task (paths NULL). Errors name the file. */
int  data_open(struct data_source *ds, int kind, const char *paths, int64_t L, int vocab,
               int random, uint64_t seed, char *err, size_t errlen);
void data_close(struct data_source *ds);

/* Next sequence: inputs (L), labels (L). */
void data_next(struct data_source *ds, int32_t *inputs, int32_t *labels);

/* Evaluation windows of the token stream: consecutive, stride L, no wrap. */
int64_t data_eval_count(const struct data_source *ds);
void    data_eval_window(const struct data_source *ds, int64_t i, int32_t *inputs, int32_t *labels);

/* Rank r of N's shard of a global sequence of L tokens: zigzag holds chunks r and 2N-1-r
 * of L/(2N) tokens, contiguous holds chunk r of L/N. T = L/N values each. */
void data_shard(const int32_t *inputs, const int32_t *labels, int64_t L, int N, int r, int zigzag,
                int32_t *tok, int32_t *lab, int64_t *pos);

/* The copy task: first half random tokens, second half a copy of it; only the copied
 * tokens carry labels (the answer of each lies L/2 - 1 positions earlier). */
void data_copy_task(uint64_t seed, int64_t draw, int64_t L, int vocab, int32_t *inputs,
                    int32_t *labels);

#endif
