/* test_checkpoint: the checkpoint module on its own. Save/load round trip (bitwise);
 * only the newest `keep` complete, verified checkpoints are kept (a corrupt one does not
 * count, so the valid older one stays); an incomplete (no DONE), corrupt or truncated
 * checkpoint, or one whose meta.json was edited, is reported by name and the previous one
 * is loaded; when complete checkpoints exist and none verifies, the load says so (-2)
 * instead of reporting an empty directory; a write that fails (ENOSPC) leaves the previous
 * checkpoint intact and no temporary directory; a checkpoint of another model size is an
 * error, not a silent fresh start. The directory lock: a second holder is refused, naming
 * the first (host and pid), until the first releases it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "ckpt_lock.h"
#include "testutil.h"

enum { N = 1000 };
static float P[N], M[N], V[N];

static void fill(float k) {
    for (int i = 0; i < N; i++) P[i] = k + i, M[i] = k * 2 + i, V[i] = k * 3 + i;
}

static int save(const char *dir, int64_t step, int keep, const struct ckpt_faults *f, char *err) {
    struct ckpt_meta m = {.step = step, .data_cursor = step * 10, .opt_t = step, .n_params = N,
                          .model_hash = 0xABCDEF0123456789ull, .job_hash = 42, .world = 2, .cp = 2, .dp = 1};
    fill((float)step);
    return ckpt_save(dir, &m, P, M, V, keep, f, err, 512);
}

static int count_entries(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += !strncmp(e->d_name, prefix, strlen(prefix));
    if (d) closedir(d);
    return n;
}

static void flip_byte(const char *dir, const char *file, long at) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "r+b");
    if (!f) abort();
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x5A, f);
    fclose(f);
}

static int exists(const char *dir, const char *name) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static int64_t load(const char *dir, FILE *log) {
    float p[N], m[N], v[N];
    char name[CKPT_NAME_MAX], err[512];
    struct ckpt_meta meta;
    int rc = ckpt_load_latest(dir, log, N, p, m, v, name, &meta, err, sizeof err);
    if (rc != 1) return -1;
    fill((float)meta.step);
    CHECK(!memcmp(p, P, sizeof p) && !memcmp(m, M, sizeof m) && !memcmp(v, V, sizeof v));
    CHECK(meta.data_cursor == meta.step * 10 && meta.model_hash == 0xABCDEF0123456789ull && meta.world == 2);
    return meta.step;
}

int main(void) {
    char dir[600], p[700], err[512], logbuf[4096];
    snprintf(dir, sizeof dir, "%s/ck", tu_tmpdir("ckpt"));
    CHECK(load(dir, NULL) == -1); /* no directory: nothing to resume */
    for (int s = 1; s <= 4; s++) CHECK(save(dir, s * 10, 2, NULL, err) == 0);
    CHECK(count_entries(dir, "step-") == 2); /* keep 2 */
    CHECK(load(dir, NULL) == 40);

    /* An incomplete newest one (crash after the rename, before DONE) is skipped. */
    snprintf(p, sizeof p, "%s/step-00000040/DONE", dir);
    CHECK(unlink(p) == 0);
    FILE *log = fmemopen(logbuf, sizeof logbuf, "w");
    CHECK(load(dir, log) == 30);
    fclose(log);
    CHECK(strstr(logbuf, "step-00000040: incomplete (no DONE marker)") != NULL);

    /* Corrupt: one flipped byte in model.bin of the newest. */
    CHECK(save(dir, 50, 3, NULL, err) == 0); /* also removes the incomplete 40 */
    CHECK(count_entries(dir, "step-") == 2);
    snprintf(p, sizeof p, "%s/step-00000050/model.bin", dir);
    FILE *f = fopen(p, "r+b");
    fseek(f, 17, SEEK_SET);
    fputc(0x5A, f);
    fclose(f);
    log = fmemopen(logbuf, sizeof logbuf, "w");
    CHECK(load(dir, log) == 30);
    fclose(log);
    CHECK(strstr(logbuf, "step-00000050: model.bin checksum mismatch") != NULL);

    /* Truncated optim.bin. */
    CHECK(save(dir, 60, 3, NULL, err) == 0);
    snprintf(p, sizeof p, "%s/step-00000060/optim.bin", dir);
    CHECK(truncate(p, 100) == 0);
    log = fmemopen(logbuf, sizeof logbuf, "w");
    CHECK(load(dir, log) == 30);
    fclose(log);
    CHECK(strstr(logbuf, "step-00000060: optim.bin has 100 bytes") != NULL);

    /* A full disk in the middle of a save: error, previous checkpoints intact, no temp dir. */
    struct ckpt_faults full = {.fail_after = 5000};
    CHECK(save(dir, 70, 3, &full, err) == -1);
    CHECK(strstr(err, "No space left on device") != NULL);
    CHECK(count_entries(dir, ".step-") == 0);
    snprintf(p, sizeof p, "%s/step-00000070", dir);
    CHECK(access(p, F_OK) != 0);
    CHECK(load(dir, NULL) == 30);

    /* Cleanup counts only verified checkpoints: with 20 corrupt, saving 30 (keep 2) keeps 10. */
    char dir2[600];
    snprintf(dir2, sizeof dir2, "%s/ck2", tu_tmpdir("ckpt"));
    CHECK(save(dir2, 10, 2, NULL, err) == 0 && save(dir2, 20, 2, NULL, err) == 0);
    flip_byte(dir2, "step-00000020/model.bin", 33);
    CHECK(save(dir2, 30, 2, NULL, err) == 0);
    CHECK(exists(dir2, "step-00000010") && exists(dir2, "step-00000030"));
    CHECK(save(dir2, 40, 2, NULL, err) == 0); /* 40 and 30 verified: 20 and 10 go */
    CHECK(count_entries(dir2, "step-") == 2 && exists(dir2, "step-00000040") && exists(dir2, "step-00000030"));

    /* An edited meta.json (the data cursor) is caught by its checksum and named. */
    snprintf(p, sizeof p, "%s/step-00000040/meta.json", dir2);
    char text[4096];
    FILE *mf = fopen(p, "rb");
    size_t len = fread(text, 1, sizeof text - 1, mf);
    fclose(mf);
    text[len] = 0;
    char *cur = strstr(text, "\"data_cursor\":");
    CHECK(cur != NULL);
    while (cur && (*cur < '0' || *cur > '9')) cur++;
    if (cur) *cur = *cur == '9' ? '8' : (char)(*cur + 1);
    mf = fopen(p, "wb");
    fwrite(text, 1, len, mf);
    fclose(mf);
    log = fmemopen(logbuf, sizeof logbuf, "w");
    CHECK(load(dir2, log) == 30);
    fclose(log);
    CHECK(strstr(logbuf, "step-00000040: meta.json checksum mismatch") != NULL);

    /* Complete checkpoints, none of which verifies: -2, naming them; incomplete ones alone
     * are an empty directory (0). */
    char dir3[600];
    snprintf(dir3, sizeof dir3, "%s/ck3", tu_tmpdir("ckpt"));
    CHECK(save(dir3, 10, 2, NULL, err) == 0);
    flip_byte(dir3, "step-00000010/optim.bin", 5);
    float q3[N];
    char name3[CKPT_NAME_MAX];
    struct ckpt_meta meta3;
    CHECK(ckpt_load_latest(dir3, NULL, N, q3, q3, q3, name3, &meta3, err, sizeof err) == -2);
    CHECK(strstr(err, "step-00000010: optim.bin checksum mismatch") != NULL);
    snprintf(p, sizeof p, "%s/step-00000010/DONE", dir3);
    CHECK(unlink(p) == 0);
    CHECK(ckpt_load_latest(dir3, NULL, N, q3, q3, q3, name3, &meta3, err, sizeof err) == 0);

    /* The lock: a missing directory is created; a second lock (another open file, as another
     * process would hold) is refused naming the holder; after the release it is free. */
    struct ckpt_lock a, b;
    char why[512], holder[200], host[128] = "";
    snprintf(p, sizeof p, "%s/locked", dir3);
    CHECK(ckpt_lock_acquire(&a, p, why, sizeof why) == 0);
    CHECK(ckpt_lock_acquire(&b, p, why, sizeof why) == -1 && b.fd == -1);
    gethostname(host, sizeof host - 1);
    snprintf(holder, sizeof holder, "in use by another run (host %s, pid %d)", host, (int)getpid());
    if (!CHECK(strstr(why, holder) != NULL)) fprintf(stderr, "  lock: %s\n", why);
    ckpt_lock_release(&a);
    CHECK(ckpt_lock_acquire(&b, p, why, sizeof why) == 0);
    ckpt_lock_release(&b);
    snprintf(p, sizeof p, "%s/nothere/ck", dir3);
    CHECK(ckpt_lock_acquire(&a, p, why, sizeof why) == -1 && strstr(why, "cannot create: No such file or directory"));

    /* Another model size: an error naming the checkpoint. */
    float q[N / 2];
    char name[CKPT_NAME_MAX];
    struct ckpt_meta meta;
    CHECK(ckpt_load_latest(dir, NULL, N / 2, q, q, q, name, &meta, err, sizeof err) == -1);
    CHECK(strstr(err, "holds 1000 parameters but the model has 500") != NULL);
    return tu_done("test_checkpoint");
}
