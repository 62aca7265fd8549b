/* optimizer: AdamW, gradient clipping and the learning-rate schedule, on a range of the
 * flat parameter vector (see optimizer.h). */
#include "optimizer.h"

#include <math.h>

#include "runtime.h"

void opt_init(struct optimizer *o, const struct backend *be, int64_t lo, int64_t hi, int64_t n) {
    if (lo < 0 || hi < lo || n < hi - lo)
        RT_FATAL("optimizer: parameters [%lld, %lld) with moments of %lld floats", (long long)lo, (long long)hi,
                 (long long)n);
    o->be = be;
    o->lo = lo;
    o->hi = hi;
    o->n = n;
    o->m = be->alloc(be, (size_t)n * sizeof(float), "AdamW first moment");
    o->v = be->alloc(be, (size_t)n * sizeof(float), "AdamW second moment");
    o->t = 0;
}

void opt_free(struct optimizer *o) {
    o->be->free(o->be, o->m);
    o->be->free(o->be, o->v);
}

double opt_lr(const struct cfg_train *tc, int64_t step) {
    if (step < tc->warmup_steps) return tc->lr * (double)(step + 1) / (double)tc->warmup_steps;
    if (tc->schedule == SCHEDULE_CONSTANT) return tc->lr;
    int64_t span = tc->steps - tc->warmup_steps;
    double progress = (double)(step - tc->warmup_steps) / (double)(span > 1 ? span : 1);
    if (progress > 1) progress = 1;
    return tc->min_lr + 0.5 * (tc->lr - tc->min_lr) * (1.0 + cos(M_PI * progress));
}

void opt_step(struct optimizer *o, const struct cfg_train *tc, const struct param_table *pt,
              float *params, float *grads, double grad_norm, double lr) {
    const struct backend *be = o->be;
    int64_t lo = o->lo, hi = o->hi;
    if (tc->grad_clip > 0) {
        double coef = tc->grad_clip / (grad_norm + 1e-6);
        if (coef < 1.0) be->scale(be, grads + lo, (float)coef, hi - lo);
    }
    o->t++;
    float bc1 = (float)(1.0 - pow(tc->beta1, (double)o->t));
    float bc2 = (float)(1.0 - pow(tc->beta2, (double)o->t));
    for (int i = 0; i < pt->n; i++) {
        const struct param *p = &pt->p[i];
        int64_t a = p->offset > lo ? p->offset : lo, b = p->offset + p->numel < hi ? p->offset + p->numel : hi;
        if (a >= b) continue;
        float wd = p->ndim >= 2 ? (float)tc->weight_decay : 0.0f;
        be->adamw(be, params + a, grads + a, o->m + (a - lo), o->v + (a - lo), b - a, (float)lr,
                  (float)tc->beta1, (float)tc->beta2, (float)tc->eps, wd, bc1, bc2);
    }
}
