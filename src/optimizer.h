/* optimizer: AdamW with torch semantics (bias correction; decoupled weight decay on tensors
 * of 2+ dims only), global-norm gradient clipping (torch.nn.utils.clip_grad_norm_), and the
 * learning-rate schedule (linear warmup, then constant or cosine down to min_lr).
 * State: fp32 moments m, v of the parameters [lo, hi) of the flat vector (params.h layout):
 * all of them, or one rank's ZeRO slice (zero.h); m[i - lo] belongs to parameter i. */
#ifndef RT_OPTIMIZER_H
#define RT_OPTIMIZER_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "params.h"

struct optimizer {
    const struct backend *be;
    int64_t lo, hi;   /* the parameters updated here */
    float  *m, *v;    /* (n) moments, n >= hi - lo (the rest is zero padding) */
    int64_t n;
    int64_t t;        /* updates taken */
};

/* Moments for parameters [lo, hi), n floats each (n >= hi - lo), zero-filled. */
void opt_init(struct optimizer *o, const struct backend *be, int64_t lo, int64_t hi, int64_t n);
void opt_free(struct optimizer *o);

/* Learning rate at step (0-based). */
double opt_lr(const struct cfg_train *tc, int64_t step);

/* Clip (when grad_clip > 0) given the global pre-clip norm, then one AdamW update at lr of
 * the fp32 params [lo, hi), each tensor's part of that range with the tensor's weight-decay
 * rule. params and grads are the whole flat buffers; only [lo, hi) is read or written (the
 * caller gathers other ranks' slices and refreshes any working copy). */
void opt_step(struct optimizer *o, const struct cfg_train *tc, const struct param_table *pt,
              float *params, float *grads, double grad_norm, double lr);

#endif
