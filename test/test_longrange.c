/* test_longrange: the synthetic copy task of yaml/demo.yaml (every answer lies L/2 - 1
 * tokens back, in another rank's zigzag shard on 4 ranks) is learned by a tiny model on
 * 4 ranks -- the answer-token loss falls far below chance ln(V) -- and is not learned
 * when attention may not cross shards (the test-only local_attention_only switch).
 * Run under mpirun -np 4. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime.h"
#include "testutil.h"
#include "train.h"

/* Mean loss of the last 5 steps of the demo's schedule. */
static double final_loss(const struct job *j, const struct runtime *rt, int local_only) {
    int64_t steps = j->cfg.train.steps;
    struct train_opts o = {.local_attention_only = local_only};
    struct trainer *t = calloc(1, sizeof *t);
    trainer_init(t, j, rt, &o);
    double tail = 0;
    for (int64_t s = 0; s < steps; s++) {
        struct step_stats st;
        trainer_step(t, &st);
        if (s >= steps - 5) tail += st.loss / 5;
    }
    trainer_free(t);
    free(t);
    return tail;
}

int main(int argc, char **argv) {
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    struct cfg *c = calloc(1, sizeof *c);
    struct job *j = calloc(1, sizeof *j);
    char err[2048];
    cfg_defaults(c);
    if (cfg_load_file(c, "yaml/demo.yaml", err, sizeof err) || cfg_validate(c, err, sizeof err))
        RT_FATAL("%s", err);
    if (job_resolve(j, c, rt.world, err, sizeof err)) RT_FATAL("%s", err);
    double chance = log((double)j->mc.vocab_size);
    double full = final_loss(j, &rt, 0), local = final_loss(j, &rt, 1);
    if (rt.rank == 0) {
        printf("copy task on %d ranks after %lld steps: answer loss %.4f with the ring, %.4f with local "
               "attention only (chance %.4f)\n", rt.world, (long long)j->cfg.train.steps, full, local, chance);
        CHECK(rt.world == 4);
        CHECK(full < 0.1 * chance);
        CHECK(local > 0.9 * chance);
        tu_done("test_longrange");
    }
    free(c);
    free(j);
    rt_finalize(&rt);
    return tu_failures ? 1 : 0;
}
