/* rope: RoPE scaling types, their checks, and the inverse frequencies and attention factor
 * as transformers' modeling_rope_utils.py computes them (the float32 steps of HF taken in
 * double; test/fixtures/rope holds transformers' own values, test_rope checks them). */
#include "rope.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const type_names[ROPE_NTYPES] = {"default", "linear", "llama3", "dynamic", "yarn"};

const char *rope_type_name(int type) {
    return type >= 0 && type < ROPE_NTYPES ? type_names[type] : NULL;
}

int rope_type_of(const char *name) {
    for (int i = 0; i < ROPE_NTYPES; i++)
        if (!strcmp(name, type_names[i])) return i;
    return -1;
}

void rope_defaults(struct rope_scaling *r, int type) {
    memset(r, 0, sizeof *r);
    r->type = type;
    r->factor = 1.0;
    r->beta_fast = 32.0;
    r->beta_slow = 1.0;
    r->truncate = 1;
}

int rope_uses(int type, const char *field) {
    static const char *const uses[ROPE_NTYPES] = {
        [ROPE_DEFAULT] = "",
        [ROPE_LINEAR] = " factor ",
        [ROPE_LLAMA3] = " factor low_freq_factor high_freq_factor original_max_position_embeddings ",
        [ROPE_DYNAMIC] = " factor original_max_position_embeddings ",
        [ROPE_YARN] = " factor original_max_position_embeddings beta_fast beta_slow mscale mscale_all_dim "
                      "attention_factor truncate ",
    };
    char key[80];
    if (type < 0 || type >= ROPE_NTYPES || strlen(field) > sizeof key - 3) return 0;
    snprintf(key, sizeof key, " %s ", field);
    return strstr(uses[type], key) != NULL;
}

static int bad(const char **field, const char *name, char *msg, size_t msglen, const char *what, double x) {
    *field = name;
    snprintf(msg, msglen, "%.17g %s", x, what);
    return -1;
}

int rope_check(const struct rope_scaling *r, const char **field, char *msg, size_t msglen) {
    if (!rope_type_name(r->type)) {
        *field = "rope_type";
        snprintf(msg, msglen, "unknown type %d", r->type);
        return -1;
    }
    if (r->type == ROPE_DEFAULT) return 0;
    if (!(r->factor > 0) || !isfinite(r->factor)) return bad(field, "factor", msg, msglen, "must be > 0", r->factor);
    if (r->type != ROPE_LINEAR && r->original_max_pos < 1)
        return bad(field, "original_max_position_embeddings", msg, msglen, "must be >= 1",
                   (double)r->original_max_pos);
    if (r->type == ROPE_LLAMA3) {
        if (!(r->low_freq_factor > 0) || !isfinite(r->low_freq_factor))
            return bad(field, "low_freq_factor", msg, msglen, "must be > 0", r->low_freq_factor);
        if (!(r->high_freq_factor > r->low_freq_factor) || !isfinite(r->high_freq_factor))
            return bad(field, "high_freq_factor", msg, msglen, "must be greater than low_freq_factor",
                       r->high_freq_factor);
    }
    if (r->type == ROPE_YARN) {
        const struct { const char *name; double x; int strict; } v[] = {
            {"beta_fast", r->beta_fast, 1}, {"beta_slow", r->beta_slow, 1}, {"mscale", r->mscale, 0},
            {"mscale_all_dim", r->mscale_all_dim, 0}, {"attention_factor", r->attention_factor, 0},
        };
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
            if ((v[i].strict ? !(v[i].x > 0) : !(v[i].x >= 0)) || !isfinite(v[i].x))
                return bad(field, v[i].name, msg, msglen, v[i].strict ? "must be > 0" : "must be >= 0", v[i].x);
    }
    return 0;
}

/* yarn's attention factor from factor and the mscales (get_mscale in HF). */
static double yarn_mscale(double scale, double mscale) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* yarn: the dimension at which a wavelength makes num_rotations turns over orig positions. */
static double yarn_correction_dim(double num_rotations, int D, double theta, double orig) {
    return (D * log(orig / (num_rotations * 2 * M_PI))) / (2 * log(theta));
}

static void yarn(const struct rope_scaling *r, double theta, int D, double *inv_freq, double *attn) {
    double f = r->factor;
    if (r->attention_factor > 0) *attn = r->attention_factor;
    else if (r->mscale > 0 && r->mscale_all_dim > 0)
        *attn = yarn_mscale(f, r->mscale) / yarn_mscale(f, r->mscale_all_dim);
    else *attn = yarn_mscale(f, 1.0);
    double orig = (double)r->original_max_pos;
    double lo = yarn_correction_dim(r->beta_fast, D, theta, orig);
    double hi = yarn_correction_dim(r->beta_slow, D, theta, orig);
    if (r->truncate) lo = floor(lo), hi = ceil(hi);
    if (lo < 0) lo = 0;
    if (hi > D - 1) hi = D - 1;
    if (lo == hi) hi += 0.001; /* HF: "prevent singularity" */
    for (int i = 0; i < D / 2; i++) {
        double pos_freq = pow(theta, (2.0 * i) / D);
        double ramp = (i - lo) / (hi - lo);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double extrapolation = 1 - ramp; /* the share of the unscaled frequency */
        inv_freq[i] = 1.0 / (f * pos_freq) * (1 - extrapolation) + 1.0 / pos_freq * extrapolation;
    }
}

void rope_frequencies(const struct rope_scaling *r, double theta, int D, double *inv_freq,
                      double *attention_factor) {
    *attention_factor = 1.0;
    if (r->type == ROPE_YARN) {
        yarn(r, theta, D, inv_freq, attention_factor);
        return;
    }
    if (r->type == ROPE_DYNAMIC) {
        /* HF's frequencies for a sequence of seq_len tokens: the base grows once the sequence
         * is longer than max_position_embeddings (our original_max_pos), else stays. */
        double orig = (double)r->original_max_pos;
        double len = (double)r->seq_len > orig ? (double)r->seq_len : orig;
        theta *= pow(r->factor * len / orig - (r->factor - 1), (double)D / (D - 2));
    }
    for (int i = 0; i < D / 2; i++) {
        double f = 1.0 / pow(theta, (2.0 * i) / D);
        if (r->type == ROPE_LINEAR) {
            f /= r->factor;
        } else if (r->type == ROPE_LLAMA3) {
            /* Llama 3.1: long wavelengths scaled by factor, short kept, smooth in between. */
            double old = (double)r->original_max_pos;
            double low_wl = old / r->low_freq_factor, high_wl = old / r->high_freq_factor;
            double wl = 2.0 * M_PI / f;
            if (wl > low_wl) {
                f /= r->factor;
            } else if (wl >= high_wl) {
                double s = (old / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
                f = (1.0 - s) * f / r->factor + s * f;
            }
        }
        inv_freq[i] = f;
    }
}

void rope_describe(const struct rope_scaling *r, char *buf, size_t buflen) {
    switch (r->type) {
    case ROPE_LINEAR: snprintf(buf, buflen, "linear (factor %g)", r->factor); break;
    case ROPE_LLAMA3:
        snprintf(buf, buflen, "llama3 (factor %g, low_freq_factor %g, high_freq_factor %g, original %lld)",
                 r->factor, r->low_freq_factor, r->high_freq_factor, (long long)r->original_max_pos);
        break;
    case ROPE_DYNAMIC:
        snprintf(buf, buflen, "dynamic NTK (factor %g, original %lld, for %lld-token sequences)", r->factor,
                 (long long)r->original_max_pos, (long long)r->seq_len);
        break;
    case ROPE_YARN:
        snprintf(buf, buflen, "yarn (factor %g, original %lld, beta_fast %g, beta_slow %g%s)", r->factor,
                 (long long)r->original_max_pos, r->beta_fast, r->beta_slow, r->truncate ? "" : ", not truncated");
        break;
    default: snprintf(buf, buflen, "default"); break;
    }
}
