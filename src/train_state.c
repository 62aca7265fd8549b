/* train_state: the trainer's fp32 weights and AdamW moments as full host arrays on rank 0,
 * for checkpoints and exports, and back (see train.h). The parameter store moves each
 * rank's shards to and from rank 0 unit by unit over ctl (pstore_state.c). The host arrays
 * exist on rank 0 only, allocated at first use. */
#include <stdlib.h>

#include "train.h"

void trainer_host_state(struct trainer *t, float **p, float **m, float **v) {
    *p = *m = *v = NULL;
    if (t->ctl.rank != 0) return;
    size_t n = (size_t)t->model.pt.total;
    if (!t->host_p) {
        t->host_p = rt_calloc(n, sizeof(float), "host copy of the weights");
        t->host_m = rt_calloc(n, sizeof(float), "host copy of the moments");
        t->host_v = rt_calloc(n, sizeof(float), "host copy of the moments");
    }
    *p = t->host_p, *m = t->host_m, *v = t->host_v;
}

void trainer_pull_state(struct trainer *t, int moments) {
    float *a[3];
    trainer_host_state(t, &a[0], &a[1], &a[2]);
    for (int k = 0; k < (moments ? 3 : 1); k++) pstore_gather(&t->model.ps, &t->ctl, k, a[k]);
}

void trainer_push_state(struct trainer *t, int moments) {
    float *a[3];
    trainer_host_state(t, &a[0], &a[1], &a[2]);
    for (int k = 0; k < (moments ? 3 : 1); k++) pstore_scatter(&t->model.ps, &t->ctl, k, a[k]);
    pstore_refresh(&t->model.ps);
}
