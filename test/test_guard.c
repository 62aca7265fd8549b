/* test_guard: the numerical guard, under mpirun. A step whose gradient norm is not finite
 * (a NaN injected into one rank's gradient) is skipped on every rank -- parameters and
 * moments unchanged, counted -- and training goes on; train.max_bad_steps such steps in a
 * row make trainer_step ask the run to stop. With ZeRO-1 (the default on 2+ ranks) the NaN
 * lies in rank 0's slice only: the other ranks learn of it through the global norm. Both
 * optimizer placements: with memory.optimizer host the NaN reaches the norm through the host
 * thread that sums each unit as it arrives. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "testutil.h"
#include "train.h"

static struct job make_job(int world, int host_opt) {
    struct job j;
    memset(&j, 0, sizeof j);
    cfg_defaults(&j.cfg);
    j.cfg.data.synthetic = SYNTHETIC_COPY;
    j.cfg.data.seq_len = 32;
    j.cfg.train.steps = 10;
    j.cfg.train.max_bad_steps = 3;
    j.cfg.memory.optimizer = host_opt ? OPTIMIZER_HOST : OPTIMIZER_DEVICE;
    j.mc = (struct model_config){.vocab_size = 16, .dim = 16, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2,
                                 .head_dim = 8, .ffn_dim = 16, .norm_eps = 1e-5, .rope_theta = 10000};
    j.cp = world;
    j.dp = 1;
    return j;
}

int main(int argc, char **argv) {
    struct runtime rt;
    rt_init(&rt, &argc, &argv);
    for (int host = 0; host < 2; host++) {
        struct job j = make_job(rt.world, host);
        struct train_opts o = {.poison_from = 2, .poison_to = 4};
        struct trainer *t = calloc(1, sizeof *t);
        trainer_init(t, &j, &rt, &o);
        struct pstore *ps = &t->model.ps;
        CHECK(ps->shards == rt.world && (ps->u[0].own_lo > 0) == (rt.rank > 0) && ps->host_opt == host);
        int64_t n = ps->S; /* this rank's shard of the master weights (host memory here) */
        float *before = malloc(n * sizeof(float));
        struct step_stats st;
        int stops = 0, skipped = 0;
        for (int s = 0; s < 6; s++) {
            memcpy(before, ps->master, n * sizeof(float));
            stops += trainer_step(t, &st);
            /* host: a good step's update is only started; it finishes as the next forward acquires the units */
            CHECK(ps->u[ps->Ly].stale == (host && !st.skipped));
            pstore_drain(ps);
            CHECK(!ps->u[ps->Ly].stale);
            skipped += st.skipped;
            int same = !memcmp(before, ps->master, n * sizeof(float));
            CHECK(st.skipped == (s == 2 || s == 3));
            CHECK(same == st.skipped); /* a skipped step leaves the weights alone; a good one moves them */
        }
        CHECK(stops == 0 && skipped == 2 && t->skipped == 2 && t->step == 6 && ps->t == 4);
        trainer_free(t);

        /* Bad from step 1 on: the third bad step in a row asks to stop. */
        o = (struct train_opts){.poison_from = 1, .poison_to = 100};
        trainer_init(t, &j, &rt, &o);
        int stop_at = -1;
        for (int s = 0; s < 6 && stop_at < 0; s++)
            if (trainer_step(t, &st)) stop_at = s;
        CHECK(stop_at == 3 && t->bad_in_row == 3);
        trainer_free(t);
        free(t);
        free(before);
    }
    int fails = tu_failures;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, rt.world_comm));
    if (rt.rank == 0) tu_done("test_guard");
    rt_finalize(&rt);
    return fails ? 1 : 0;
}
