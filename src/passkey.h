/* passkey: the passkey-retrieval grid of `--passkey`: for each context length n and needle
 * depth d, prompts of filler tokens with a passkey of K digit tokens inserted at depth d and
 * the question at the end, followed by the passkey again (teacher forcing). One forward pass
 * per prompt (forward only, through the ring, on every rank); a trial retrieves the passkey
 * when the argmax prediction at each of the K answer positions is the passkey's digit there.
 * Prompt of n tokens (docs/formats.md):
 *   filler[0, s) | needle | key | after | filler[s, body) | question | key
 * body = n - |needle| - |after| - |question| - 2K, s = floor(d body + 1/2) (the needle depth
 * as a fraction of the filler); filler slot f holds filler[f mod |filler|], counted over the
 * whole prompt; the prompt is padded to L = data.seq_len tokens with filler (no loss), so
 * every length splits across the ranks as a training sequence does. Labels: only the
 * positions predicting the answer's K digits.
 * The token ids come from eval.passkey_ids (scripts/passkey_ids.py from a tokenizer) or are
 * the model's own: filler 0, 1, ..., V-11, digits V-10..V-1, no needle, after or question. */
#ifndef RT_PASSKEY_H
#define RT_PASSKEY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "train.h"

#define PASSKEY_MAX_IDS 512 /* tokens of each text part of an id spec */

struct passkey_ids {
    int32_t filler[PASSKEY_MAX_IDS];   /* (nfiller) */
    int32_t needle[PASSKEY_MAX_IDS];   /* (nneedle) before the key: "The pass key is" */
    int32_t after[PASSKEY_MAX_IDS];    /* (nafter) after it: ". Remember it." */
    int32_t question[PASSKEY_MAX_IDS]; /* (nquestion) "What is the pass key? The pass key is" */
    int32_t digit[10];                 /* the tokens of 0..9 */
    int     nfiller, nneedle, nafter, nquestion;
};

struct passkey_cell {
    int64_t n;          /* context length */
    double  depth;      /* in [0, 1] */
    int64_t needle_pos; /* position of the key's first digit */
    int     trials, retrieved;
    int64_t digits_right, digits;
    double  answer_loss; /* summed token loss of the answer digits */
};

struct passkey_grid {
    int nl, nd, K;              /* lengths, depths, digits */
    struct passkey_cell *cell;  /* (nl, nd) */
};

/* The ids (plain data: rank 0 reads them and broadcasts the struct): from the file of
 * eval.passkey_ids, or the model's own for vocab V. Then checks that every id is below V, that
 * the shortest context length holds the prompt, and the grid's sizes. Returns 0, or -1
 * with err naming the file (and line) or the key. */
int passkey_ids_load(const struct cfg *c, int V, struct passkey_ids *ids, char *err, size_t errlen);

/* Runs the grid of c->eval (eval.passkey_*), dp prompts at a time. Collective; the result
 * on every rank. */
void passkey_run(struct trainer *t, const struct passkey_ids *ids, struct passkey_grid *g);
void passkey_grid_free(struct passkey_grid *g);

/* passkey.csv: a header, then one line per cell
 * `context_len,depth,needle_pos,trials,retrieved,accuracy,digit_accuracy,answer_loss`. */
int passkey_write_csv(const struct passkey_grid *g, const char *path, char *err, size_t errlen);

#endif
