/* rope: the rotary position embedding's settings (theta aside) and what they give: the
 * D/2 inverse frequencies and the attention factor, computed in double exactly as Hugging
 * Face transformers' modeling_rope_utils.py does for each rope_type (docs/rope.md). The
 * struct is plain old data (part of struct model_config, broadcast as bytes). */
#ifndef RT_ROPE_H
#define RT_ROPE_H

#include <stddef.h>
#include <stdint.h>

enum rope_type { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3, ROPE_DYNAMIC, ROPE_YARN, ROPE_NTYPES };

/* No padding (two ints, then 8-byte fields): hashed as bytes into the checkpoints' model hash. */
struct rope_scaling {
    int     type;              /* enum rope_type */
    int     truncate;          /* yarn: round the correction range outwards (HF default true) */
    double  factor;            /* every type but default */
    double  low_freq_factor;   /* llama3 */
    double  high_freq_factor;  /* llama3 */
    int64_t original_max_pos;  /* llama3, dynamic, yarn: original_max_position_embeddings */
    double  beta_fast;         /* yarn (HF default 32) */
    double  beta_slow;         /* yarn (HF default 1) */
    double  mscale;            /* yarn; 0 = not given */
    double  mscale_all_dim;    /* yarn; 0 = not given */
    double  attention_factor;  /* yarn; 0 = not given (then computed from factor and mscales) */
    int64_t seq_len;           /* dynamic: the sequence length the frequencies are for
                                  (data.seq_len; see docs/rope.md) */
};

/* "default", "linear", "llama3", "dynamic", "yarn" (HF's rope_type names); NULL if bad. */
const char *rope_type_name(int type);
/* The type for an HF name, or -1. */
int rope_type_of(const char *name);

/* A scaling with HF's defaults for type: factor 1, beta_fast 32, beta_slow 1, truncate. */
void rope_defaults(struct rope_scaling *r, int type);

/* Whether field (an HF key name: factor, low_freq_factor, high_freq_factor,
 * original_max_position_embeddings, beta_fast, beta_slow, mscale, mscale_all_dim,
 * attention_factor, truncate) belongs to type. */
int rope_uses(int type, const char *field);

/* Values HF (and the frequencies) need: factor > 0; llama3 0 < low_freq_factor <
 * high_freq_factor; original_max_position_embeddings >= 1 for llama3, dynamic and yarn;
 * yarn's betas > 0 and mscales, attention_factor >= 0; everything finite. Returns 0, or
 * -1 with *field set to the offending HF key name and what is wrong in msg. */
int rope_check(const struct rope_scaling *r, const char **field, char *msg, size_t msglen);

/* inv_freq (D/2 values) and the attention factor (the scale of cos and sin; 1 except for
 * yarn) for head dim D and base theta, as transformers computes them, in double. */
void rope_frequencies(const struct rope_scaling *r, double theta, int D, double *inv_freq,
                      double *attention_factor);

/* One line describing the scaling: "yarn (factor 4, original 4096, ...)". */
void rope_describe(const struct rope_scaling *r, char *buf, size_t buflen);

_Static_assert(sizeof(struct rope_scaling) == 2 * sizeof(int) + 8 * 8 + 2 * sizeof(int64_t),
               "struct rope_scaling has padding");

#endif
