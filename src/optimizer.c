/* optimizer: AdamW, gradient clipping and the learning-rate schedule. */
#include "optimizer.h"

#include <math.h>

void opt_init(struct optimizer *o, const struct backend *be, int64_t total) {
    o->be = be;
    o->m = be->alloc(be, (size_t)total * sizeof(float), "AdamW first moment");
    o->v = be->alloc(be, (size_t)total * sizeof(float), "AdamW second moment");
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

double opt_grad_norm(const struct backend *be, const float *grads, int64_t total) {
    return sqrt(be->sumsq(be, grads, total));
}

void opt_step(struct optimizer *o, const struct cfg_train *tc, const struct param_table *pt,
              float *params, float *grads, double grad_norm, double lr) {
    const struct backend *be = o->be;
    if (tc->grad_clip > 0) {
        double coef = tc->grad_clip / (grad_norm + 1e-6);
        if (coef < 1.0) be->scale(be, grads, (float)coef, pt->total);
    }
    o->t++;
    float bc1 = (float)(1.0 - pow(tc->beta1, (double)o->t));
    float bc2 = (float)(1.0 - pow(tc->beta2, (double)o->t));
    for (int i = 0; i < pt->n; i++) {
        const struct param *p = &pt->p[i];
        float wd = p->ndim >= 2 ? (float)tc->weight_decay : 0.0f;
        be->adamw(be, params + p->offset, grads + p->offset,
                  o->m + p->offset, o->v + p->offset, p->numel, (float)lr, (float)tc->beta1, (float)tc->beta2,
                  (float)tc->eps, wd, bc1, bc2);
    }
}
