/* optimizer: AdamW with torch semantics (bias correction; decoupled weight decay on tensors
 * of 2+ dims only), global-norm gradient clipping (torch.nn.utils.clip_grad_norm_), and the
 * learning-rate schedule (linear warmup, then constant or cosine down to min_lr).
 * State: fp32 moments m, v laid out like the parameters (params.h). */
#ifndef RT_OPTIMIZER_H
#define RT_OPTIMIZER_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "params.h"

struct optimizer {
    const struct backend *be;
    float  *m, *v;    /* (total) moments */
    int64_t t;        /* updates taken */
};

void opt_init(struct optimizer *o, const struct backend *be, int64_t total);
void opt_free(struct optimizer *o);

/* Learning rate at step (0-based). */
double opt_lr(const struct cfg_train *tc, int64_t step);

/* Global L2 norm of the gradients (before clipping). */
double opt_grad_norm(const struct backend *be, const float *grads, int64_t total);

/* Clip (when grad_clip > 0) given the pre-clip norm, then one AdamW update at lr of the
 * fp32 params (the caller refreshes any working copy). */
void opt_step(struct optimizer *o, const struct cfg_train *tc, const struct param_table *pt,
              float *params, float *grads, double grad_norm, double lr);

#endif
