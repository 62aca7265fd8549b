/* optimizer: AdamW with torch semantics (bias correction; decoupled weight decay on tensors
 * of 2+ dims only), global-norm gradient clipping (torch.nn.utils.clip_grad_norm_), and the
 * learning-rate schedule (linear warmup, then constant or cosine down to min_lr).
 * The state (fp32 master weights, moments m and v) of a range [lo, hi) of the flat parameter
 * vector (params.h layout) lives in buffers indexed from lo; the parameter store (pstore.h)
 * holds it per unit and calls opt_adamw on each unit's part it owns. */
#ifndef RT_OPTIMIZER_H
#define RT_OPTIMIZER_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "params.h"

/* Learning rate at step (0-based). */
double opt_lr(const struct cfg_train *tc, int64_t step);

/* Clip g (when grad_clip > 0; fused into the update, g itself is left as it is) given the
 * global pre-clip norm, then the t-th AdamW update
 * (t >= 1) at lr of the parameters [lo, hi): p[i - lo], g[i - lo], m[i - lo], v[i - lo] belong
 * to parameter i; each tensor's part of the range gets that tensor's weight-decay rule. The
 * ops run on `be` (whose memory the buffers are in). */
void opt_adamw(const struct backend *be, const struct cfg_train *tc, const struct param_table *pt, int64_t lo,
               int64_t hi, float *p, const float *g, float *m, float *v, double grad_norm, double lr, int64_t t);

#endif
