/* train_state: the trainer's state in checkpoints (see train.h): every rank writes and
 * reads its own slices of the files through the parameter store's checkpoint parts
 * (pstore_state.c); no rank holds more than its shard and a bounded staging buffer. The
 * HF export's full weights are assembled on rank 0 alone. */
#include <stdlib.h>

#include "train.h"

int trainer_save(struct trainer *t, const char *dir, int keep, const struct ckpt_faults *f, char *err,
                 size_t errlen) {
    struct ckpt_meta meta;
    struct ckpt_part mine;
    trainer_meta(t, &meta);
    pstore_part(&t->model.ps, 1, 1, t->ctl.size, t->ctl.rank, &mine);
    int rc = ckpt_save(&t->ctl, dir, &meta, &mine, keep, f, err, errlen);
    pstore_part_free(&mine);
    return rc;
}

int trainer_load(struct trainer *t, const char *dir, FILE *log, int moments, char *name, struct ckpt_meta *meta,
                 char *err, size_t errlen) {
    struct ckpt_meta mine;
    struct ckpt_part need;
    trainer_meta(t, &mine);
    pstore_part(&t->model.ps, 0, moments, t->ctl.size, t->ctl.rank, &need);
    int found = ckpt_load_latest(&t->ctl, dir, log, &mine, moments, &need, name, meta, err, errlen);
    pstore_part_free(&need);
    if (found == 1) pstore_refresh(&t->model.ps);
    return found;
}

float *trainer_gather_params(struct trainer *t) {
    float *p = t->ctl.rank == 0 ? rt_malloc((size_t)t->model.pt.total * sizeof(float), "weights for the export") : NULL;
    pstore_gather(&t->model.ps, &t->ctl, 0, p);
    return p;
}
