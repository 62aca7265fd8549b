/* passkey: the passkey-retrieval grid (passkey.h): the id spec, the prompts, the scoring. */
#include "passkey.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* ---- the id spec: lines `part: id id ...` for filler, needle, after, question, digits ---- */

static int parse_ids(const char *path, int line, const char *part, char *s, int32_t *out, int max, int V,
                     int *n, char *err, size_t errlen) {
    *n = 0;
    for (char *tok = strtok(s, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
        char *end;
        errno = 0;
        long x = strtol(tok, &end, 10);
        if (*end || errno || x < 0 || x >= V)
            return snprintf(err, errlen, "%s:%d: %s: \"%.40s\" is not a token id in [0, %d) (model.vocab_size)",
                            path, line, part, tok, V), -1;
        if (*n == max)
            return snprintf(err, errlen, "%s:%d: %s: more than %d ids", path, line, part, max), -1;
        out[(*n)++] = (int32_t)x;
    }
    return 0;
}

static int read_spec(const char *path, int V, struct passkey_ids *ids, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) return snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)), -1;
    char buf[16384];
    int line = 0, ndig = -1, rc = 0;
    while (!rc && fgets(buf, sizeof buf, f)) {
        line++;
        char *s = buf;
        while (isspace((unsigned char)*s)) s++;
        if (!*s || *s == '#') continue;
        char *colon = strchr(s, ':');
        if (!colon) {
            rc = (snprintf(err, errlen, "%s:%d: expected `part: ids`", path, line), -1);
            break;
        }
        *colon = 0;
        static const char *const parts[] = {"filler", "needle", "after", "question", "digits"};
        int32_t *dst[] = {ids->filler, ids->needle, ids->after, ids->question, ids->digit};
        int *cnt[] = {&ids->nfiller, &ids->nneedle, &ids->nafter, &ids->nquestion, &ndig};
        int k = 0;
        while (k < 5 && strcmp(s, parts[k])) k++;
        if (k == 5) rc = (snprintf(err, errlen, "%s:%d: unknown part \"%.40s\" (filler, needle, after, question, "
                                   "digits)", path, line, s), -1);
        else rc = parse_ids(path, line, s, colon + 1, dst[k], k == 4 ? 10 : PASSKEY_MAX_IDS, V, cnt[k], err, errlen);
    }
    if (!rc && ferror(f)) rc = (snprintf(err, errlen, "%s: read error", path), -1);
    fclose(f);
    if (rc) return -1;
    if (ndig != 10) return snprintf(err, errlen, "%s: digits: expected the 10 ids of 0..9, got %d", path, ndig), -1;
    if (!ids->nfiller) return snprintf(err, errlen, "%s: filler: no ids", path), -1;
    return 0;
}

int passkey_ids_load(const struct cfg *c, int V, struct passkey_ids *ids, char *err, size_t errlen) {
    memset(ids, 0, sizeof *ids);
    char where[CFG_PATH_MAX + 32];
    if (c->eval.passkey_ids[0]) {
        if (read_spec(c->eval.passkey_ids, V, ids, err, errlen)) return -1;
    } else {
        if (V < 11)
            return snprintf(err, errlen, "--passkey: model.vocab_size %d is below 11: the model's own ids need 10 "
                            "digits and a filler (or set eval.passkey_ids)", V), -1;
        ids->nfiller = V - 10 < PASSKEY_MAX_IDS ? V - 10 : PASSKEY_MAX_IDS;
        for (int i = 0; i < ids->nfiller; i++) ids->filler[i] = i;
        for (int i = 0; i < 10; i++) ids->digit[i] = V - 10 + i;
    }
    int64_t shortest = c->data.seq_len / c->eval.passkey_lengths;
    int64_t need = ids->nneedle + ids->nafter + ids->nquestion + 2 * (int64_t)c->eval.passkey_digits;
    if (shortest < need) {
        cfg_where(c, "eval.passkey_lengths", where, sizeof where);
        return snprintf(err, errlen, "%s: eval.passkey_lengths: the shortest context length data.seq_len %lld / %d = "
                        "%lld tokens cannot hold the prompt's %lld tokens (needle, question and twice "
                        "eval.passkey_digits)", where, (long long)c->data.seq_len, c->eval.passkey_lengths,
                        (long long)shortest, (long long)need), -1;
    }
    return 0;
}

/* ---- the grid ---- */

static double depth_of(int nd, int j) { return nd == 1 ? 0.5 : (double)j / (nd - 1); }

/* The key's digits (0..9) of trial k of cell c: seeded, independent of the rank count. */
static void key_digits(uint64_t seed, int64_t cell, int k, int K, int *digits) {
    uint64_t key = rng_mix(seed ^ rng_mix((uint64_t)cell * 1000003u + (uint64_t)k + 0x706B6579ull));
    for (int i = 0; i < K; i++) digits[i] = (int)(rng_u64(key, (uint64_t)i) % 10u);
}

/* The prompt of cell c with the given digits, padded to L: inputs and labels (passkey.h). */
static void build(const struct passkey_ids *ids, const struct passkey_cell *c, const int *digits, int K, int64_t L,
                  int32_t *in, int32_t *lab) {
    int64_t p = 0, f = 0;
#define PUT(tok) (in[p++] = (tok))
#define FILL() (in[p++] = ids->filler[f++ % ids->nfiller])
    int64_t body = c->n - ids->nneedle - ids->nafter - ids->nquestion - 2 * K;
    for (int64_t i = 0; i < c->needle_pos - ids->nneedle; i++) FILL();
    for (int i = 0; i < ids->nneedle; i++) PUT(ids->needle[i]);
    for (int i = 0; i < K; i++) PUT(ids->digit[digits[i]]);
    for (int i = 0; i < ids->nafter; i++) PUT(ids->after[i]);
    for (int64_t i = c->needle_pos - ids->nneedle; i < body; i++) FILL();
    for (int i = 0; i < ids->nquestion; i++) PUT(ids->question[i]);
    for (int i = 0; i < K; i++) PUT(ids->digit[digits[i]]);
    while (p < L) FILL();
#undef PUT
#undef FILL
    for (int64_t i = 0; i < L; i++) lab[i] = -1;
    for (int i = 0; i < K; i++) lab[c->n - K - 1 + i] = ids->digit[digits[i]]; /* predicts token n - K + i */
}

/* Per prompt of a batch: answer digits right, answer tokens seen, their loss (this rank's part). */
struct tally {
    double *right, *seen, *loss; /* (batch) */
};

static void score(void *ctx, int i, const int64_t *pos, const int32_t *lab, const double *loss, const int32_t *pred,
                  int64_t T) {
    struct tally *y = ctx;
    (void)pos;
    for (int64_t k = 0; k < T; k++) {
        if (lab[k] < 0) continue;
        y->right[i] += pred[k] == lab[k];
        y->seen[i] += 1;
        y->loss[i] += loss[k];
    }
}

void passkey_run(struct trainer *t, const struct passkey_ids *ids, struct passkey_grid *g) {
    const struct cfg_eval *e = &t->job.cfg.eval;
    int64_t L = t->L;
    int K = e->passkey_digits, batch = t->job.dp;
    memset(g, 0, sizeof *g);
    g->nl = e->passkey_lengths;
    g->nd = e->passkey_depths;
    g->K = K;
    g->cell = rt_calloc((size_t)g->nl * g->nd, sizeof *g->cell, "passkey grid");
    for (int a = 0; a < g->nl; a++)
        for (int b = 0; b < g->nd; b++) {
            struct passkey_cell *c = &g->cell[a * g->nd + b];
            c->n = L * (a + 1) / g->nl;
            c->depth = depth_of(g->nd, b);
            int64_t body = c->n - ids->nneedle - ids->nafter - ids->nquestion - 2 * K;
            c->needle_pos = (int64_t)floor(c->depth * (double)body + 0.5) + ids->nneedle;
        }
    /* every (cell, trial) is one prompt; batches of dp prompts */
    int64_t ncells = (int64_t)g->nl * g->nd, total = ncells * e->passkey_trials;
    double *buf = rt_calloc(3 * (size_t)batch, sizeof(double), "passkey tally");
    int *digits = rt_calloc((size_t)batch * K, sizeof(int), "passkey digits");
    for (int64_t q0 = 0; q0 < total; q0 += batch) {
        int nseq = (int)(total - q0 < batch ? total - q0 : batch);
        for (int i = 0; i < nseq; i++) {
            int64_t q = q0 + i, ci = q / e->passkey_trials;
            key_digits(e->passkey_seed, ci, (int)(q % e->passkey_trials), K, digits + (size_t)i * K);
            build(ids, &g->cell[ci], digits + (size_t)i * K, K, L, t->seq_in + (size_t)i * L,
                  t->seq_lab + (size_t)i * L);
        }
        memset(buf, 0, 3 * (size_t)batch * sizeof(double));
        struct tally y = {buf, buf + batch, buf + 2 * batch};
        trainer_forward(t, nseq, score, &y);
        comm_all_reduce(&t->ctl, buf, buf, 3 * batch, COMM_F64, COMM_SUM);
        for (int i = 0; i < nseq; i++) {
            struct passkey_cell *c = &g->cell[(q0 + i) / e->passkey_trials];
            if (y.seen[i] != K) RT_FATAL("passkey: %g answer tokens seen, %d expected", y.seen[i], K);
            c->trials++;
            c->retrieved += y.right[i] == K;
            c->digits_right += (int64_t)y.right[i];
            c->digits += K;
            c->answer_loss += y.loss[i];
        }
    }
    free(buf);
    free(digits);
}

void passkey_grid_free(struct passkey_grid *g) {
    free(g->cell);
    memset(g, 0, sizeof *g);
}

int passkey_write_csv(const struct passkey_grid *g, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) return snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno)), -1;
    fprintf(f, "context_len,depth,needle_pos,trials,retrieved,accuracy,digit_accuracy,answer_loss\n");
    for (int i = 0; i < g->nl * g->nd; i++) {
        const struct passkey_cell *c = &g->cell[i];
        fprintf(f, "%lld,%.6g,%lld,%d,%d,%.6g,%.6g,%.9g\n", (long long)c->n, c->depth, (long long)c->needle_pos,
                c->trials, c->retrieved, (double)c->retrieved / c->trials, (double)c->digits_right / c->digits,
                c->answer_loss / c->digits);
    }
    if (fclose(f) != 0) return snprintf(err, errlen, "%s: error writing: %s", path, strerror(errno)), -1;
    return 0;
}
