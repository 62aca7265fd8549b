/* optimizer: AdamW, gradient clipping and the learning-rate schedule, on a range of the
 * flat parameter vector (see optimizer.h). */
#include "optimizer.h"

#include <math.h>

#include "runtime.h"

double opt_lr(const struct cfg_train *tc, int64_t step) {
    if (step < tc->warmup_steps) return tc->lr * (double)(step + 1) / (double)tc->warmup_steps;
    if (tc->schedule == SCHEDULE_CONSTANT) return tc->lr;
    int64_t span = tc->steps - tc->warmup_steps;
    double progress = (double)(step - tc->warmup_steps) / (double)(span > 1 ? span : 1);
    if (progress > 1) progress = 1;
    return tc->min_lr + 0.5 * (tc->lr - tc->min_lr) * (1.0 + cos(M_PI * progress));
}

void opt_adamw(const struct backend *be, const struct cfg_train *tc, const struct param_table *pt, int64_t lo,
               int64_t hi, float *p, const float *g, float *m, float *v, double grad_norm, double lr, int64_t t) {
    if (lo < 0 || hi < lo || t < 1) RT_FATAL("optimizer: parameters [%lld, %lld) at update %lld", (long long)lo,
                                             (long long)hi, (long long)t);
    float gs = 1.0f; /* clipping, fused into the update (g stays as reduced) */
    if (tc->grad_clip > 0) {
        double coef = tc->grad_clip / (grad_norm + 1e-6);
        if (coef < 1.0) gs = (float)coef;
    }
    float bc1 = (float)(1.0 - pow(tc->beta1, (double)t));
    float bc2 = (float)(1.0 - pow(tc->beta2, (double)t));
    for (int i = 0; i < pt->n; i++) {
        const struct param *q = &pt->p[i];
        int64_t a = q->offset > lo ? q->offset : lo, b = q->offset + q->numel < hi ? q->offset + q->numel : hi;
        if (a >= b) continue;
        float wd = q->ndim >= 2 ? (float)tc->weight_decay : 0.0f;
        be->adamw(be, p + (a - lo), g + (a - lo), gs, m + (a - lo), v + (a - lo), b - a, (float)lr, (float)tc->beta1,
                  (float)tc->beta2, (float)tc->eps, wd, bc1, bc2);
    }
}
