/* test_data: sequence sampling and sharding. Sequential windows (stride seq_len, labels
 * shifted by one, wrap to 0 when the next window would not fit); seeded random windows
 * (in range, reproducible, seed-dependent); evaluation windows; zigzag and contiguous
 * shards with global positions; the copy task's structure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "testutil.h"

/* A .npy of n int32 tokens t[i] = i % 1000. */
static const char *token_file(int n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/tok.npy", tu_tmpdir("data"));
    char shape[32];
    snprintf(shape, sizeof shape, "(%d,)", n);
    int32_t *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++) t[i] = i % 1000;
    tu_write_npy(path, "<i4", shape, t, n);
    free(t);
    return path;
}

int main(void) {
    enum { L = 16 };
    char err[512];
    const char *path = token_file(60); /* windows start 0, 16, 32; 48 + 17 > 60 wraps */
    struct data_source ds;
    int32_t in[L], lab[L];
    CHECK(data_open(&ds, DATA_NPY, path, L, 1000, 0, 0, err, sizeof err) == 0);
    int64_t starts[] = {0, 16, 32, 0, 16};
    for (int w = 0; w < 5; w++) {
        data_next(&ds, in, lab);
        int ok = 1;
        for (int i = 0; i < L; i++) ok &= in[i] == starts[w] + i && lab[i] == starts[w] + i + 1;
        if (!CHECK(ok)) fprintf(stderr, "  sequential window %d does not start at %lld\n", w, (long long)starts[w]);
    }
    CHECK(data_eval_count(&ds) == 3); /* (60 - 1) / 16 */
    data_eval_window(&ds, 2, in, lab);
    CHECK(in[0] == 32 && lab[L - 1] == 48);
    data_close(&ds);

    /* Random windows: inside the file, the same for the same seed, different for another. */
    int32_t first[2][8];
    for (int seed = 0; seed < 2; seed++) {
        CHECK(data_open(&ds, DATA_NPY, path, L, 1000, 1, (uint64_t)seed + 5, err, sizeof err) == 0);
        int ok = 1;
        for (int w = 0; w < 200; w++) {
            data_next(&ds, in, lab);
            ok &= in[0] >= 0 && in[0] + L + 1 <= 60 && lab[L - 1] == in[0] + L;
            if (w < 8) first[seed][w] = in[0];
        }
        CHECK(ok);
        data_close(&ds);
    }
    CHECK(memcmp(first[0], first[1], sizeof first[0]) != 0);
    CHECK(data_open(&ds, DATA_NPY, path, L, 1000, 1, 5, err, sizeof err) == 0);
    int same = 1;
    for (int w = 0; w < 8; w++) {
        data_next(&ds, in, lab);
        same &= in[0] == first[0][w];
    }
    CHECK(same);
    data_close(&ds);
    CHECK(data_open(&ds, DATA_NPY, path, 64, 1000, 0, 0, err, sizeof err) != 0); /* shorter than a window */
    CHECK(strstr(err, "fewer than one window") != NULL);

    /* Zigzag shard of rank 1 of 4 over 16 tokens: chunks 1 and 6 of 2 tokens. */
    int32_t gin[L], glab[L], tok[4], tl[4];
    int64_t pos[4];
    for (int i = 0; i < L; i++) gin[i] = 100 + i, glab[i] = 200 + i;
    data_shard(gin, glab, L, 4, 1, 1, tok, tl, pos);
    CHECK(pos[0] == 2 && pos[1] == 3 && pos[2] == 12 && pos[3] == 13);
    CHECK(tok[2] == 112 && tl[3] == 213);
    data_shard(gin, glab, L, 4, 3, 0, tok, tl, pos);
    CHECK(pos[0] == 12 && pos[3] == 15 && tok[0] == 112);

    /* Copy task: second half repeats the first; labels only where the answer is a copy. */
    int32_t ci[64], cl[64], ci2[64], cl2[64];
    data_copy_task(3, 0, 64, 32, ci, cl);
    int ok = 1;
    for (int i = 32; i < 64; i++) ok &= ci[i] == ci[i - 32];
    for (int i = 0; i < 64; i++) ok &= i < 31 ? cl[i] == -1 : cl[i] == ci[(i + 1) - 32];
    for (int i = 0; i < 64; i++) ok &= ci[i] >= 0 && ci[i] < 32;
    CHECK(ok);
    data_copy_task(3, 1, 64, 32, ci2, cl2);
    CHECK(memcmp(ci, ci2, sizeof ci) != 0);
    return tu_done("test_data");
}
