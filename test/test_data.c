/* test_data: sequence sampling and sharding. Sequential windows (stride seq_len, labels
 * shifted by one, wrap to 0 when the next window would not fit); seeded random windows
 * (in range, reproducible, seed-dependent); evaluation windows; zigzag and contiguous
 * shards with global positions; the copy task's structure. Corpora of several files (a
 * list, a directory, a glob pattern): the same windows as one concatenated file, reads
 * across file boundaries, and errors naming the file (and the index within it). A token
 * file truncated while mapped ends the reader with exit 1 and a message naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "corpus.h"
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
    tu_write_npy(path, "<i4", shape, t, 4 * (size_t)n);
    free(t);
    return path;
}

/* A 1-D uint16 .npy. */
static void write_u16(const char *path, const int32_t *tok, int n) {
    char shape[32];
    uint16_t *u = malloc(2 * (size_t)n);
    for (int i = 0; i < n; i++) u[i] = (uint16_t)tok[i];
    snprintf(shape, sizeof shape, "(%d,)", n);
    tu_write_npy(path, "<u2", shape, u, 2 * (size_t)n);
    free(u);
}

static void write_i4(const char *path, const char *descr, const int32_t *tok, int n) {
    char shape[32];
    snprintf(shape, sizeof shape, "(%d,)", n);
    tu_write_npy(path, descr, shape, tok, 4 * (size_t)n);
}

/* Two sources give the same windows: n sequential draws (wrapping), then eval windows. */
static int same_windows(struct data_source *a, struct data_source *b, int draws, int64_t L) {
    int32_t ia[64], la[64], ib[64], lb[64];
    int ok = 1;
    for (int w = 0; w < draws; w++) {
        data_next(a, ia, la);
        data_next(b, ib, lb);
        ok &= !memcmp(ia, ib, (size_t)L * 4) && !memcmp(la, lb, (size_t)L * 4) && a->cursor == b->cursor;
    }
    ok &= data_eval_count(a) == data_eval_count(b);
    for (int64_t i = 0; ok && i < data_eval_count(a); i++) {
        data_eval_window(a, i, ia, la);
        data_eval_window(b, i, ib, lb);
        ok &= !memcmp(ia, ib, (size_t)L * 4) && !memcmp(la, lb, (size_t)L * 4);
    }
    return ok;
}

static int contains(const char *s, const char *a, const char *b) {
    int ok = strstr(s, a) != NULL && (!b || strstr(s, b) != NULL);
    if (!ok) fprintf(stderr, "  message \"%s\" lacks \"%s\"%s%s\n", s, a, b ? " or " : "", b ? b : "");
    return ok;
}

/* Three files of 23 (int32), 17 (uint16) and 40 (uint32) tokens against one file of all 80,
 * as a list and as a directory; corpus reads at every start and length; error messages. */
static void test_corpus(void) {
    enum { L = 8, N = 80 };
    const int sizes[3] = {23, 17, 40};
    const char *dir = tu_tmpdir("corpus");
    char whole[600], p[3][700], list[3000], shards[600], f[800], err[1024];
    int32_t all[N];
    for (int i = 0; i < N; i++) all[i] = (i * 37 + 11) % 997;
    snprintf(whole, sizeof whole, "%s/whole.npy", dir);
    write_i4(whole, "<i4", all, N);
    snprintf(shards, sizeof shards, "%s/shards", dir);
    CHECK(mkdir(shards, 0755) == 0);
    int off = 0;
    for (int k = 0; k < 3; k++) {
        /* names sort in stream order only by strcmp: "part-10" < "part-9" */
        static const char *const names[3] = {"part-10.npy", "part-11.npy", "part-9x.npy"};
        snprintf(p[k], sizeof p[k], "%s/%s", shards, names[k]);
        if (k == 1) write_u16(p[k], all + off, sizes[k]);
        else write_i4(p[k], k == 0 ? "<i4" : "<u4", all + off, sizes[k]);
        off += sizes[k];
    }
    snprintf(f, sizeof f, "%s/notes.txt", shards); /* not *.npy: ignored in a directory */
    tu_write_file(f, "x", 1);
    snprintf(f, sizeof f, "%s/.tmp.npy", shards); /* hidden: ignored */
    tu_write_file(f, "x", 1);
    snprintf(f, sizeof f, "%s/sub", shards);     /* a subdirectory: ignored */
    CHECK(mkdir(f, 0755) == 0);
    snprintf(list, sizeof list, "%s\n%s\n%s", p[0], p[1], p[2]);

    /* the corpus itself: offsets, and every read equals the same slice of the whole */
    struct corpus c;
    CHECK(corpus_open(&c, list, err, sizeof err) == 0);
    CHECK(c.n == 3 && c.total == N && c.start[1] == 23 && c.start[2] == 40 && c.start[3] == N);
    int ok = 1;
    int32_t out[N];
    for (int s = 0; s < N; s++)
        for (int k = 0; s + k <= N; k++) {
            memset(out, 0xff, sizeof out);
            corpus_read(&c, s, k, out);
            ok &= !memcmp(out, all + s, (size_t)k * 4) && (k == N || out[k] == -1);
        }
    CHECK(ok);
    int32_t top = 0;
    for (int i = 0; i < N; i++) top = all[i] > top ? all[i] : top;
    CHECK(corpus_check_tokens(&c, top + 1, err, sizeof err) == 0);
    CHECK(corpus_check_tokens(&c, top, err, sizeof err) == -1);
    corpus_describe(&c, f, sizeof f);
    CHECK(contains(f, "3 files (", "part-9x.npy)"));
    char line[40];
    corpus_list_text("a.npy\nb/c.npy\nd/", line, sizeof line);
    CHECK(!strcmp(line, "a.npy, b/c.npy, d/"));
    corpus_list_text("a.npy\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.npy\nc", line, sizeof line);
    CHECK(!strcmp(line, "a.npy, ... (3 paths)"));
    corpus_close(&c);

    /* list and directory against the concatenated file: sequential (wrapping) and random */
    struct data_source a, b;
    const char *sources[2] = {list, shards};
    for (int src = 0; src < 2; src++)
        for (int rnd = 0; rnd < 2; rnd++) {
            CHECK(data_open(&a, DATA_NPY, whole, L, 997, rnd, 77, err, sizeof err) == 0);
            if (!CHECK(data_open(&b, DATA_NPY, sources[src], L, 997, rnd, 77, err, sizeof err) == 0))
                fprintf(stderr, "  %s\n", err);
            if (!CHECK(same_windows(&a, &b, 60, L)))
                fprintf(stderr, "  %s, %s windows differ from one file\n", src ? "directory" : "list",
                        rnd ? "random" : "sequential");
            data_close(&a);
            data_close(&b);
        }
    /* a glob pattern: its matches sorted by name (the hidden .tmp.npy is not matched) */
    snprintf(list, sizeof list, "%s/part-1?.npy\n%s/*x.npy", shards, shards);
    CHECK(corpus_open(&c, list, err, sizeof err) == 0 && c.n == 3 && c.total == N &&
          strstr(c.files[0].path, "part-10.npy") && strstr(c.files[2].path, "part-9x.npy"));
    corpus_close(&c);
    snprintf(list, sizeof list, "%s/nothing-*.npy", shards);
    CHECK(corpus_open(&c, list, err, sizeof err) == -1 && contains(err, "nothing-*.npy: the pattern matches no files", NULL));
    /* the fingerprint: the same for the same files anywhere, another for another split */
    CHECK(corpus_open(&c, shards, err, sizeof err) == 0);
    uint64_t fp = corpus_fingerprint(&c);
    corpus_close(&c);
    snprintf(list, sizeof list, "%s\n%s\n%s", p[0], p[1], p[2]);
    CHECK(corpus_open(&c, list, err, sizeof err) == 0 && corpus_fingerprint(&c) == fp);
    corpus_close(&c);
    CHECK(corpus_open(&c, whole, err, sizeof err) == 0 && corpus_fingerprint(&c) != fp);
    corpus_close(&c);
    /* a directory inside a list expands in place; a trailing slash is fine */
    snprintf(list, sizeof list, "%s\n%s/", whole, shards);
    CHECK(data_open(&b, DATA_NPY, list, L, 997, 0, 0, err, sizeof err) == 0 && b.corpus.n == 4 &&
          b.corpus.total == 2 * N);
    data_close(&b);

    /* a bad token in the second file: named with its index in that file */
    int32_t bad[17];
    memcpy(bad, all + 23, sizeof bad);
    bad[5] = 2000;
    snprintf(f, sizeof f, "%s/bad.npy", dir);
    write_u16(f, bad, 17);
    snprintf(list, sizeof list, "%s\n%s\n%s", p[0], f, p[2]);
    CHECK(corpus_open(&c, list, err, sizeof err) == 0);
    CHECK(corpus_check_tokens(&c, 997, err, sizeof err) == -1 &&
          contains(err, "bad.npy: token 2000 at index 5 is outside [0, 997)", "(file 2 of 3)"));
    corpus_close(&c);

    /* errors name the file or directory */
    char empty[700];
    snprintf(empty, sizeof empty, "%s/empty", dir);
    CHECK(mkdir(empty, 0755) == 0);
    CHECK(corpus_open(&c, empty, err, sizeof err) == -1 && contains(err, "empty: directory holds no .npy files", NULL));
    snprintf(f, sizeof f, "%s/notes.txt", shards);
    snprintf(list, sizeof list, "%s\n%s", p[0], f);
    CHECK(corpus_open(&c, list, err, sizeof err) == -1 && contains(err, "notes.txt: not a .npy file", NULL));
    snprintf(list, sizeof list, "%s\n%s/absent.npy", p[0], dir);
    CHECK(corpus_open(&c, list, err, sizeof err) == -1 && contains(err, "absent.npy: cannot open", NULL));
    CHECK(corpus_open(&c, "", err, sizeof err) == -1);
    snprintf(list, sizeof list, "%s\n%s", p[1], p[0]); /* 40 tokens: one window of 64 + 1 does not fit */
    CHECK(data_open(&b, DATA_NPY, list, 64, 997, 0, 0, err, sizeof err) == -1 &&
          contains(err, "2 files (", "40 tokens, fewer than one window"));
}

/* A token file truncated after it was opened (mapped): reading past its new end raises
 * SIGBUS, which the reader turns into the job's abort path (exit 1, naming the file), in a
 * child process so the abort is observable. */
static void test_truncated(void) {
    char path[512], err[512], msg[4096] = "";
    snprintf(path, sizeof path, "%s/shrinks.npy", tu_tmpdir("data_trunc"));
    enum { N = 8192 }; /* 32 KiB of tokens: several pages */
    int32_t *t = malloc(N * sizeof *t);
    for (int i = 0; i < N; i++) t[i] = i % 1000;
    tu_write_npy(path, "<i4", "(8192,)", t, sizeof(int32_t) * N);
    free(t);
    struct corpus c;
    if (!CHECK(corpus_open(&c, path, err, sizeof err) == 0)) return;
    int32_t out[16];
    corpus_read(&c, N - 16, 16, out); /* intact: reads fine */
    CHECK(out[15] == (N - 1) % 1000);
    CHECK(truncate(path, 4096) == 0);
    int fds[2];
    if (pipe(fds)) abort();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        corpus_read(&c, N - 16, 16, out); /* the last page is gone */
        _exit(0);
    }
    close(fds[1]);
    int st = 0;
    waitpid(pid, &st, 0);
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    msg[n > 0 ? n : 0] = 0;
    close(fds[0]);
    if (!CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(msg, path) && strstr(msg, "shrank") &&
               strstr(msg, "SIGBUS")))
        fprintf(stderr, "  truncated token file: status %#x, message: %s\n", st, msg);
    corpus_close(&c);
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

    test_corpus();
    test_truncated();
    return tu_done("test_data");
}
