/* data: sequence sampling from a token stream (corpus.c) and the generated copy task;
 * zigzag sharding. Sequential windows start at cursor and advance by L, wrapping to 0 when
 * L + 1 tokens no longer fit; random windows start at floor(u * (N - L)), u drawn from
 * (seed, draw). N is the token count of the whole stream. */
#include "data.h"

#include <stdio.h>
#include <string.h>

#include "rng.h"

int data_open(struct data_source *ds, int kind, const char *paths, int64_t L, int vocab, int random,
              uint64_t seed, char *err, size_t errlen) {
    memset(ds, 0, sizeof *ds);
    ds->kind = kind;
    ds->L = L;
    ds->vocab = vocab;
    ds->random = random;
    ds->seed = seed;
    if (kind == DATA_COPY_TASK) return 0;
    if (corpus_open(&ds->corpus, paths, err, errlen)) return -1;
    if (ds->corpus.total < L + 1) {
        char name[2 * NPY_PATH_MAX + 64];
        corpus_describe(&ds->corpus, name, sizeof name);
        snprintf(err, errlen, "%s: %lld tokens, fewer than one window of data.seq_len + 1 = %lld", name,
                 (long long)ds->corpus.total, (long long)(L + 1));
        corpus_close(&ds->corpus);
        return -1;
    }
    return 0;
}

void data_close(struct data_source *ds) {
    if (ds->kind == DATA_NPY) corpus_close(&ds->corpus);
}

static void window_at(const struct data_source *ds, int64_t start, int32_t *inputs, int32_t *labels) {
    corpus_read(&ds->corpus, start, ds->L, inputs);
    corpus_read(&ds->corpus, start + 1, ds->L, labels);
}

void data_next(struct data_source *ds, int32_t *inputs, int32_t *labels) {
    if (ds->kind == DATA_COPY_TASK) {
        data_copy_task(ds->seed, ds->cursor++, ds->L, ds->vocab, inputs, labels);
        return;
    }
    int64_t start;
    if (ds->random) {
        int64_t span = ds->corpus.total - ds->L; /* starts 0 .. N-L-1 */
        start = (int64_t)(rng_uniform(ds->seed, (uint64_t)ds->cursor++) * (double)span);
    } else {
        if (ds->cursor + ds->L + 1 > ds->corpus.total) ds->cursor = 0;
        start = ds->cursor;
        ds->cursor += ds->L;
    }
    window_at(ds, start, inputs, labels);
}

int64_t data_eval_count(const struct data_source *ds) { return (ds->corpus.total - 1) / ds->L; }

void data_eval_window(const struct data_source *ds, int64_t i, int32_t *inputs, int32_t *labels) {
    window_at(ds, i * ds->L, inputs, labels);
}

void data_shard(const int32_t *inputs, const int32_t *labels, int64_t L, int N, int r, int zigzag,
                int32_t *tok, int32_t *lab, int64_t *pos) {
    int64_t nchunks = zigzag ? 2 * N : N, C = L / nchunks;
    int64_t chunks[2] = {r, 2 * (int64_t)N - 1 - r};
    for (int c = 0; c < (zigzag ? 2 : 1); c++) {
        int64_t g0 = chunks[c] * C;
        for (int64_t i = 0; i < C; i++) {
            tok[c * C + i] = inputs[g0 + i];
            lab[c * C + i] = labels[g0 + i];
            pos[c * C + i] = g0 + i;
        }
    }
}

void data_copy_task(uint64_t seed, int64_t draw, int64_t L, int vocab, int32_t *inputs, int32_t *labels) {
    int64_t half = L / 2;
    uint64_t key = rng_mix(seed ^ rng_mix((uint64_t)draw + 0x636F7079ull));
    /* s[0..L]: s[i] random for i < half, s[i] = s[i - half] after. */
    for (int64_t i = 0; i <= L; i++) {
        int32_t s = i < half ? (int32_t)(rng_u64(key, (uint64_t)i) % (uint64_t)vocab) : inputs[i - half];
        if (i < L) inputs[i] = s;
        if (i > 0) labels[i - 1] = i >= half ? s : -1;
    }
}
