/* test_checkpoint: the checkpoint module on its own, under mpirun -np 1 and 3: each rank
 * writes its third (a ragged split) of three arrays standing for the weights and moments,
 * and reads them back whole (as an unsharded layout does). Save/load round trip (bitwise);
 * meta.json (format 2) lists one block per written range, tiling each file; only the
 * newest `keep` complete, verified checkpoints are kept (a corrupt one does not count, so
 * the valid older one stays); an incomplete (no DONE), corrupt or truncated checkpoint, or
 * one whose meta.json was edited, is reported by name and the previous one is loaded; a
 * corrupt block is named by its byte range, which holds the damaged byte; when complete
 * checkpoints exist and none verifies, the load says so (-2) instead of reporting an empty
 * directory; a write that fails (ENOSPC) on rank 0 or on the last rank fails the save on
 * every rank, leaves the previous checkpoint intact and no temporary directory; a format-1
 * checkpoint (one whole-file checksum) still loads; a checkpoint of another model size or
 * shape is an error, not a silent fresh start. The directory lock: a second holder is
 * refused, naming the first (host and pid), until the first releases it. A rank that does
 * not see checkpoint.dir as rank 0 does (here: rank 1 in another working directory, as on a
 * file system of its own) is found at start-up (outputs_check_shared) and by a save, which
 * fails on every rank naming it. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "checkpoint.h"
#include "ckpt_lock.h"
#include "comm_mpi.h"
#include "outputs.h"
#include "runtime.h"
#include "testutil.h"

enum { N = 1000 };
#define HASH 0xABCDEF0123456789ull
static float P[N], M[N], V[N];
static struct runtime rt;
static struct comm ctl;

static void fill(float k) {
    for (int i = 0; i < N; i++) P[i] = k + i, M[i] = k * 2 + i, V[i] = k * 3 + i;
}

/* A part over the arrays a[0..2] (model, m, v): ranges [lo, hi) of each. */
struct arrays {
    float            *a[3];
    struct ckpt_range r[3];
};

static void arr_get(void *ctx, int i, int64_t at, int64_t n, float *dst) {
    struct arrays *x = ctx;
    int64_t base = x->r[i].off - (i == 2 ? N : 0);
    memcpy(dst, x->a[i] + base + at, (size_t)n * sizeof(float));
}

static void arr_put(void *ctx, int i, int64_t at, int64_t n, const float *src) {
    struct arrays *x = ctx;
    int64_t base = x->r[i].off - (i == 2 ? N : 0);
    memcpy(x->a[i] + base + at, src, (size_t)n * sizeof(float));
}

static struct ckpt_part part(struct arrays *x, float *p, float *m, float *v, int64_t lo, int64_t hi, int moments) {
    x->a[0] = p, x->a[1] = m, x->a[2] = v;
    x->r[0] = (struct ckpt_range){CKPT_MODEL, lo, hi - lo};
    x->r[1] = (struct ckpt_range){CKPT_OPTIM, lo, hi - lo};
    x->r[2] = (struct ckpt_range){CKPT_OPTIM, N + lo, hi - lo};
    return (struct ckpt_part){moments ? 3 : 1, x->r, x, arr_get, arr_put};
}

static struct ckpt_meta meta_of(int64_t step, int64_t n) {
    return (struct ckpt_meta){.step = step, .data_cursor = step * 10, .opt_t = step, .n_params = n,
                              .model_hash = HASH, .job_hash = 42, .world = 2, .cp = 2, .dp = 1};
}

/* Rank r writes [r N / W - 7, ...) (the first and last ranks stretched to the ends). */
static int save(const char *dir, int64_t step, int keep, const struct ckpt_faults *f, char *err) {
    struct ckpt_meta m = meta_of(step, N);
    fill((float)step);
    int64_t lo = ctl.rank ? (int64_t)ctl.rank * N / ctl.size - 7 : 0;
    int64_t hi = ctl.rank + 1 < ctl.size ? (int64_t)(ctl.rank + 1) * N / ctl.size - 7 : N;
    struct arrays x;
    struct ckpt_part p = part(&x, P, M, V, lo, hi, 1);
    return ckpt_save(&ctl, dir, &m, &p, keep, f, err, 512);
}

static int count_entries(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += !strncmp(e->d_name, prefix, strlen(prefix));
    if (d) closedir(d);
    return n;
}

/* Rank 0 flips a byte once every rank is done with the files (a load's reads are not
 * collective); the others wait. */
static void flip_byte(const char *dir, const char *file, long at) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    comm_barrier(&ctl);
    if (ctl.rank == 0) {
        FILE *f = fopen(p, "r+b");
        if (!f) abort();
        fseek(f, at, SEEK_SET);
        int c = fgetc(f);
        fseek(f, at, SEEK_SET);
        fputc(c ^ 0x5A, f);
        fclose(f);
    }
    comm_barrier(&ctl);
}

static int exists(const char *dir, const char *name) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static int load_rc(const char *dir, FILE *log, int64_t n, float *p, float *m, float *v, char *name,
                   struct ckpt_meta *meta, char *err, size_t errlen) {
    struct ckpt_meta want = meta_of(0, n);
    struct arrays x;
    struct ckpt_part need = part(&x, p, m, v, 0, n, 1);
    return ckpt_load_latest(&ctl, dir, log, &want, 1, &need, name, meta, err, errlen);
}

static int64_t load(const char *dir, FILE *log) {
    float p[N], m[N], v[N];
    char name[CKPT_NAME_MAX], err[512];
    struct ckpt_meta meta;
    if (load_rc(dir, log, N, p, m, v, name, &meta, err, sizeof err) != 1) return -1;
    fill((float)meta.step);
    if (!CHECK(!memcmp(p, P, sizeof p) && !memcmp(m, M, sizeof m) && !memcmp(v, V, sizeof v)))
        for (int i = 0; i < N; i++)
            if (p[i] != P[i] || m[i] != M[i] || v[i] != V[i]) {
                fprintf(stderr, "  rank %d: %s step %lld: at %d %g %g %g want %g %g %g\n", ctl.rank, dir,
                        (long long)meta.step, i, p[i], m[i], v[i], P[i], M[i], V[i]);
                break;
            }
    CHECK(meta.data_cursor == meta.step * 10 && meta.model_hash == HASH && meta.world == 2);
    return meta.step;
}

/* A log on rank 0 (NULL elsewhere) into buf. */
static FILE *open_log(char *buf, size_t n) { return ctl.rank == 0 ? fmemopen(buf, n, "w") : NULL; }
static int logged(FILE *log, const char *buf, const char *what) {
    if (log) fclose(log);
    return ctl.rank != 0 || strstr(buf, what) != NULL;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    return text;
}

/* Rewrite dir/step's meta.json as format 1: one xxh3-64 per whole file (rank 0). */
static void make_format1(const char *dir, const char *step) {
    char p[700], hex[24];
    comm_barrier(&ctl);
    if (ctl.rank == 0) {
        snprintf(p, sizeof p, "%s/%s/meta.json", dir, step);
        cJSON *o = cJSON_Parse(read_all(p));
        cJSON_DeleteItemFromObject(o, "meta_xxh3");
        cJSON_ReplaceItemInObject(o, "format", cJSON_CreateNumber(1));
        cJSON *files = cJSON_GetObjectItem(o, "files");
        const char *names[2] = {"model.bin", "optim.bin"};
        for (int i = 0; i < 2; i++) {
            char fp[700];
            snprintf(fp, sizeof fp, "%s/%s/%s", dir, step, names[i]);
            struct stat sb;
            stat(fp, &sb);
            char *data = malloc((size_t)sb.st_size);
            FILE *f = fopen(fp, "rb");
            CHECK(fread(data, 1, (size_t)sb.st_size, f) == (size_t)sb.st_size);
            fclose(f);
            snprintf(hex, sizeof hex, "%016" PRIx64, XXH3_64bits(data, (size_t)sb.st_size));
            free(data);
            cJSON *fo = cJSON_GetObjectItem(files, names[i]);
            cJSON_DeleteItemFromObject(fo, "blocks");
            cJSON_AddStringToObject(fo, "xxh3", hex);
        }
        char *body = cJSON_PrintUnformatted(o);
        snprintf(hex, sizeof hex, "%016" PRIx64, XXH3_64bits(body, strlen(body)));
        free(body);
        cJSON_AddStringToObject(o, "meta_xxh3", hex);
        char *text = cJSON_Print(o);
        tu_write_file(p, text, strlen(text));
        free(text);
        cJSON_Delete(o);
    }
    comm_barrier(&ctl);
}

static void test_lock(const char *base) {
    /* The lock: a missing directory is created; a second lock (another open file, as another
     * process would hold) is refused naming the holder; after the release it is free. */
    struct ckpt_lock a, b;
    char p[700], why[512], holder[200], host[128] = "";
    snprintf(p, sizeof p, "%s/locked", base);
    CHECK(ckpt_lock_acquire(&a, p, why, sizeof why) == 0);
    CHECK(ckpt_lock_acquire(&b, p, why, sizeof why) == -1 && b.fd == -1);
    gethostname(host, sizeof host - 1);
    snprintf(holder, sizeof holder, "in use by another run (host %s, pid %d)", host, (int)getpid());
    if (!CHECK(strstr(why, holder) != NULL)) fprintf(stderr, "  lock: %s\n", why);
    ckpt_lock_release(&a);
    CHECK(ckpt_lock_acquire(&b, p, why, sizeof why) == 0);
    ckpt_lock_release(&b);
    snprintf(p, sizeof p, "%s/nothere/ck", base);
    CHECK(ckpt_lock_acquire(&a, p, why, sizeof why) == -1 && strstr(why, "cannot create: No such file or directory"));
}

/* checkpoint.dir "ck", relative: rank 1 works in another directory. */
static void test_not_shared(const char *base) {
    char own[700], cwd[4096], err[2048], want[160];
    snprintf(own, sizeof own, "%s/%s", base, ctl.rank == 1 ? "elsewhere" : "here");
    if (!getcwd(cwd, sizeof cwd)) abort();
    CHECK((mkdir(own, 0755) == 0 || errno == EEXIST) && chdir(own) == 0); /* ranks 0 and 2 share "here" */
    struct cfg *c = calloc(1, sizeof *c);
    cfg_defaults(c);
    snprintf(c->checkpoint.dir, sizeof c->checkpoint.dir, "ck");
    struct ckpt_lock lock = {.fd = -1};
    if (ctl.rank == 0) CHECK(outputs_check_train(c, &lock, err, sizeof err) == 0);
    if (ctl.rank == 1) CHECK(mkdir("ck", 0755) == 0); /* a directory of the same name, without the lock */
    int rc = outputs_check_shared(c, &rt, err, sizeof err);
    snprintf(want, sizeof want, "checkpoint.dir: ck: rank 1 (host %s) does not see the LOCK rank 0 holds there", rt.host);
    if (!CHECK(rc == -1 && strstr(err, want) && strstr(err, "must be on a file system every rank sees")))
        fprintf(stderr, "  not shared: %s\n", err);
    CHECK(save("ck", 10, 1, NULL, err) == -1);
    if (!CHECK(strstr(err, "not found on rank 1, where rank 0 created it: checkpoint.dir must be on a file system "
                           "every rank sees") != NULL))
        fprintf(stderr, "  save: %s\n", err);
    CHECK(count_entries("ck", ".step-") == 0 && count_entries("ck", "step-") == 0);
    ckpt_lock_release(&lock);
    free(c);
    CHECK(chdir(cwd) == 0);
}

int main(int argc, char **argv) {
    rt_init(&rt, &argc, &argv);
    comm_mpi_init(&ctl, rt.world_comm, "ctl", 60);
    char base[512], dir[600], p[700], err[512], logbuf[4096];
    if (ctl.rank == 0) snprintf(base, sizeof base, "%s", tu_tmpdir("ckpt"));
    comm_broadcast(&ctl, base, sizeof base, COMM_U8, 0);
    snprintf(dir, sizeof dir, "%s/ck", base);
    CHECK(load(dir, NULL) == -1); /* no directory: nothing to resume */
    for (int s = 1; s <= 4; s++) CHECK(save(dir, s * 10, 2, NULL, err) == 0);
    CHECK(count_entries(dir, "step-") == 2); /* keep 2 */
    CHECK(load(dir, NULL) == 40);
    /* meta.json lists the ranks' ranges as blocks: 3 per rank in optim.bin (m and v), 1 in model.bin */
    snprintf(p, sizeof p, "%s/step-00000040/meta.json", dir);
    char *text = read_all(p);
    CHECK(text && strstr(text, "\"format\":\t2") && tu_count(text, "\"") > 0);
    CHECK(text && tu_count(strstr(text, "optim.bin"), "[") == 1 + 2 * ctl.size);

    /* An incomplete newest one (crash after the rename, before DONE) is skipped. */
    snprintf(p, sizeof p, "%s/step-00000040/DONE", dir);
    comm_barrier(&ctl);
    if (ctl.rank == 0) CHECK(unlink(p) == 0);
    comm_barrier(&ctl);
    FILE *log = open_log(logbuf, sizeof logbuf);
    CHECK(load(dir, log) == 30);
    CHECK(logged(log, logbuf, "step-00000040: incomplete (no DONE marker)"));

    /* Corrupt: one flipped byte in model.bin of the newest; the block holding it is named. */
    CHECK(save(dir, 50, 3, NULL, err) == 0); /* also removes the incomplete 40 */
    CHECK(count_entries(dir, "step-") == 2);
    flip_byte(dir, "step-00000050/model.bin", 3001);
    log = open_log(logbuf, sizeof logbuf);
    CHECK(load(dir, log) == 30);
    if (log) fclose(log);
    if (ctl.rank == 0) {
        long a = -1, b = -1;
        const char *at = strstr(logbuf, "step-00000050: model.bin checksum mismatch at bytes ");
        if (CHECK(at != NULL)) sscanf(at + strlen("step-00000050: model.bin checksum mismatch at bytes "), "%ld..%ld", &a, &b);
        if (!CHECK(a <= 3001 && 3001 <= b && (ctl.size == 1 || b - a < 4 * N / 2))) fprintf(stderr, "  log: %s\n", logbuf);
    }

    /* Truncated optim.bin. */
    CHECK(save(dir, 60, 3, NULL, err) == 0);
    snprintf(p, sizeof p, "%s/step-00000060/optim.bin", dir);
    comm_barrier(&ctl);
    if (ctl.rank == 0) CHECK(truncate(p, 100) == 0);
    comm_barrier(&ctl);
    log = open_log(logbuf, sizeof logbuf);
    CHECK(load(dir, log) == 30);
    CHECK(logged(log, logbuf, "step-00000060: optim.bin has 100 bytes"));

    /* A full disk in the middle of a save, on rank 0 and on the last rank: error on every
     * rank naming the rank, previous checkpoints intact, no temp dir. */
    for (int r = 0; r < (ctl.size > 1 ? 2 : 1); r++) {
        struct ckpt_faults full = {.fail_after = 500, .rank = r ? ctl.size - 1 : 0};
        char want[64];
        snprintf(want, sizeof want, "write failed on rank %d: No space left on device", full.rank);
        CHECK(save(dir, 70, 3, &full, err) == -1);
        if (!CHECK(strstr(err, want) != NULL)) fprintf(stderr, "  ENOSPC on rank %d: %s\n", full.rank, err);
        CHECK(count_entries(dir, ".step-") == 0);
        snprintf(p, sizeof p, "%s/step-00000070", dir);
        CHECK(access(p, F_OK) != 0);
        CHECK(load(dir, NULL) == 30);
    }

    /* Cleanup counts only verified checkpoints: with 20 corrupt, saving 30 (keep 2) keeps 10. */
    char dir2[600];
    snprintf(dir2, sizeof dir2, "%s/ck2", base);
    CHECK(save(dir2, 10, 2, NULL, err) == 0 && save(dir2, 20, 2, NULL, err) == 0);
    flip_byte(dir2, "step-00000020/model.bin", 3999);
    CHECK(save(dir2, 30, 2, NULL, err) == 0);
    CHECK(exists(dir2, "step-00000010") && exists(dir2, "step-00000030"));
    CHECK(save(dir2, 40, 2, NULL, err) == 0); /* 40 and 30 verified: 20 and 10 go */
    CHECK(count_entries(dir2, "step-") == 2 && exists(dir2, "step-00000040") && exists(dir2, "step-00000030"));

    /* An edited meta.json (the data cursor) is caught by its checksum and named. */
    comm_barrier(&ctl);
    if (ctl.rank == 0) {
        snprintf(p, sizeof p, "%s/step-00000040/meta.json", dir2);
        char *t = read_all(p);
        size_t len = strlen(t);
        char *cur = strstr(t, "\"data_cursor\":");
        CHECK(cur != NULL);
        while (cur && (*cur < '0' || *cur > '9')) cur++;
        if (cur) *cur = *cur == '9' ? '8' : (char)(*cur + 1);
        tu_write_file(p, t, len);
    }
    comm_barrier(&ctl);
    log = open_log(logbuf, sizeof logbuf);
    CHECK(load(dir2, log) == 30);
    CHECK(logged(log, logbuf, "step-00000040: meta.json checksum mismatch"));

    /* A format-1 checkpoint (whole-file checksums) still loads; corrupt, it is named. */
    make_format1(dir2, "step-00000030");
    CHECK(load(dir2, NULL) == 30);
    flip_byte(dir2, "step-00000030/optim.bin", 7000);
    log = open_log(logbuf, sizeof logbuf);
    CHECK(load(dir2, log) == -1);
    CHECK(logged(log, logbuf, "step-00000030: optim.bin checksum mismatch at bytes 0..7999 (block 1 of 1)"));

    /* Complete checkpoints, none of which verifies: -2, naming them; incomplete ones alone
     * are an empty directory (0). */
    char dir3[600];
    snprintf(dir3, sizeof dir3, "%s/ck3", base);
    CHECK(save(dir3, 10, 2, NULL, err) == 0);
    flip_byte(dir3, "step-00000010/optim.bin", 5);
    float q3[N];
    char name3[CKPT_NAME_MAX];
    struct ckpt_meta meta3;
    CHECK(load_rc(dir3, NULL, N, q3, q3, q3, name3, &meta3, err, sizeof err) == -2);
    CHECK(strstr(err, "step-00000010: optim.bin checksum mismatch") != NULL);
    snprintf(p, sizeof p, "%s/step-00000010/DONE", dir3);
    comm_barrier(&ctl);
    if (ctl.rank == 0) CHECK(unlink(p) == 0);
    comm_barrier(&ctl);
    CHECK(load_rc(dir3, NULL, N, q3, q3, q3, name3, &meta3, err, sizeof err) == 0);

    if (ctl.rank == 0) test_lock(dir3);

    /* Another model size, or another shape of the same size: an error naming the checkpoint. */
    float q[N];
    char name[CKPT_NAME_MAX];
    struct ckpt_meta meta, want = meta_of(0, N);
    CHECK(load_rc(dir, NULL, N / 2, q, q, q, name, &meta, err, sizeof err) == -1);
    CHECK(strstr(err, "holds 1000 parameters but the model has 500") != NULL);
    want.model_hash ^= 1;
    struct arrays x;
    struct ckpt_part need = part(&x, q, q, q, 0, N, 0);
    CHECK(ckpt_load_latest(&ctl, dir, NULL, &want, 0, &need, name, &meta, err, sizeof err) == -1);
    CHECK(strstr(err, "was written for a model of another shape") != NULL);

    if (ctl.size > 1) test_not_shared(base);

    int fails = tu_failures;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, rt.world_comm));
    char tname[40];
    snprintf(tname, sizeof tname, "test_checkpoint[N=%d]", ctl.size);
    int rc = ctl.rank == 0 ? tu_done(tname) : 0;
    comm_free(&ctl);
    rt_finalize(&rt);
    return fails ? 1 : rc;
}
