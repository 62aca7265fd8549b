/* test_hf_reference: the CPU model against Hugging Face transformers in float64
 * (test/fixtures/<case>, made by scripts/make_reference.py): the loss of step 0, logits at
 * a few positions, every parameter's gradient, and the losses, pre-clip gradient norms and
 * learning rates of several AdamW steps. Runs on 1 rank or under mpirun on N ranks (the
 * ring then splits each sequence). Tolerances (fp32 CPU vs fp64 HF): losses 1e-5 relative,
 * logits and every gradient 1e-4 normalized max error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "runtime.h"
#include "safetensors.h"
#include "testutil.h"
#include "train.h"

static const char *cases[] = {"mha_untied", "gqa_tied", "odd_sizes", "rope_theta", "llama3_v5", "yarn"};

static struct runtime rt;

static float *ref_tensor(const struct st_file *f, const char *name, int64_t *numel) {
    const struct st_tensor *t = st_find(f, name);
    if (!t) RT_FATAL("%s: no tensor %s", f->path, name);
    float *out = malloc((size_t)t->numel * sizeof(float));
    char err[512];
    if (st_to_f32(t, out, err, sizeof err)) RT_FATAL("%s", err);
    if (numel) *numel = t->numel;
    return out;
}

static void load_job(const char *dir, struct job *j) {
    char path[1024], err[2048];
    snprintf(path, sizeof path, "%s/job.yaml", dir);
    struct cfg *c = malloc(sizeof *c);
    cfg_defaults(c);
    if (cfg_load_file(c, path, err, sizeof err) || cfg_validate(c, err, sizeof err) ||
        job_resolve(j, c, rt.world, err, sizeof err))
        RT_FATAL("%s", err);
    free(c);
}

/* Logits at the reference positions of sequence 0 of step 0, from this rank's shard. */
static void check_logits(struct trainer *t, const struct st_file *ref, const char *name) {
    const struct st_tensor *pt = st_find(ref, "logits_pos");
    if (!pt || pt->dtype != ST_I64) RT_FATAL("%s: logits_pos must be I64", ref->path);
    const int64_t *want_pos = pt->data;
    int64_t n;
    float *want = ref_tensor(ref, "logits", &n);
    struct model *m = &t->model;
    int V = m->mc.vocab_size, d = m->mc.dim;
    data_next(&t->data, t->seq_in, t->seq_lab);
    data_shard(t->seq_in, t->seq_lab, t->L, t->job.cp, t->groups.ring.index, t->job.cfg.parallel.attention == RING_ZIGZAG,
               t->tok, t->lab, t->pos);
    model_forward_backward(m, t->tok, t->lab, t->pos, 0.0f, 0);
    model_take_loss(m);
    float *got = malloc((size_t)V * sizeof(float));
    int checked = 0;
    for (int64_t p = 0; p < pt->numel; p++)
        for (int64_t i = 0; i < t->T; i++) {
            if (t->pos[i] != want_pos[p]) continue;
            cpu_matmul_forward(got, (const float *)m->xnf + i * d, (const float *)pstore_weight(&m->ps, params_lm_head(&m->pt)), 1, d, V);
            char what[160];
            snprintf(what, sizeof what, "%s logits at position %lld", name, (long long)want_pos[p]);
            CHECK_ARRAY(got, want + p * V, V, 1e-4, what);
            checked++;
        }
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &checked, 1, MPI_INT, MPI_SUM, rt.world_comm));
    CHECK(checked == pt->numel);
    free(got);
    free(want);
}

static void run_case(const char *name) {
    char dir[512], path[1024], err[512];
    snprintf(dir, sizeof dir, "test/fixtures/%s", name);
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    struct st_file ref;
    if (st_open(&ref, path, err, sizeof err)) RT_FATAL("%s", err);
    struct job j;
    load_job(dir, &j);

    /* Step 0: loss and every gradient (before clipping). */
    struct trainer *t = calloc(1, sizeof *t);
    trainer_init(t, &j, &rt, NULL);
    struct step_stats st;
    float *grads = malloc((size_t)t->model.pt.total * sizeof(float));
    trainer_gradients(t, &st, grads);
    float *loss = ref_tensor(&ref, "loss", NULL);
    CHECK_REL(st.loss, loss[0], 1e-5);
    free(loss);
    for (int i = 0; i < t->model.pt.n; i++) {
        const struct param *p = &t->model.pt.p[i];
        char gname[PARAM_NAME_MAX + 8], what[256];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        int64_t n;
        float *want = ref_tensor(&ref, gname, &n);
        snprintf(what, sizeof what, "%s %s", name, gname);
        if (CHECK(n == p->numel)) CHECK_ARRAY(grads + p->offset, want, n, 1e-4, what);
        free(want);
    }
    trainer_free(t);
    free(grads);

    trainer_init(t, &j, &rt, NULL);
    check_logits(t, &ref, name);
    trainer_free(t);

    /* AdamW steps: losses, pre-clip gradient norms, learning rates. */
    int64_t S;
    float *losses = ref_tensor(&ref, "losses", &S), *norms = ref_tensor(&ref, "grad_norms", NULL),
          *lrs = ref_tensor(&ref, "lrs", NULL);
    CHECK(S == j.cfg.train.steps);
    /* Every ZeRO stage and optimizer placement (pstore.h) follows the reference. */
    static const struct { int zero, host; } placings[] = {{1, 0}, {0, 1}, {2, 0}, {3, 1}};
    for (size_t k = 0; k < sizeof placings / sizeof placings[0]; k++) {
        j.cfg.parallel.zero = placings[k].zero;
        j.cfg.memory.optimizer = placings[k].host ? OPTIMIZER_HOST : OPTIMIZER_DEVICE;
        trainer_init(t, &j, &rt, NULL);
        for (int64_t s = 0; s < S; s++) {
            trainer_step(t, &st);
            if (!CHECK_REL(st.loss, losses[s], 1e-5) | !CHECK_REL(st.grad_norm, norms[s], 1e-4) |
                !CHECK_REL(st.lr, lrs[s], 1e-6))
                fprintf(stderr, "  %s step %lld, zero %d, optimizer on the %s\n", name, (long long)s, placings[k].zero,
                        placings[k].host ? "host" : "device");
        }
        trainer_free(t);
    }
    free(t);
    free(losses), free(norms), free(lrs);
    st_close(&ref);
}

int main(int argc, char **argv) {
    rt_init(&rt, &argc, &argv);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i]);
    int fails = tu_failures;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, rt.world_comm));
    if (rt.rank == 0) {
        char name[48];
        snprintf(name, sizeof name, "test_hf_reference[N=%d]", rt.world);
        tu_done(name);
    }
    rt_finalize(&rt);
    return fails ? 1 : 0;
}
