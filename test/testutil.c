/* testutil: assertions and comparisons shared by the C test programs. */
#include "testutil.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int tu_failures = 0;
int tu_checks = 0;

int tu_check(int ok, const char *expr, const char *file, int line) {
    tu_checks++;
    if (!ok) {
        tu_failures++;
        fprintf(stderr, "%s:%d: check failed: %s\n", file, line, expr);
    }
    return ok;
}

int tu_check_rel(double a, double b, double tol, const char *expr, const char *file, int line) {
    tu_checks++;
    double err = fabs(a - b), scale = fabs(b) > 1e-30 ? fabs(b) : 1e-30;
    if (!(err <= tol * scale)) {
        tu_failures++;
        fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g (rel err %.3g > %.3g)\n", file, line, expr,
                a, b, err / scale, tol);
        return 0;
    }
    return 1;
}

double tu_max_rel_err(const float *a, const float *b, int64_t n) {
    double maxref = 0, maxerr = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= maxerr)) maxerr = e; /* NaN propagates */
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    }
    return maxerr / (maxref > 1e-30 ? maxref : 1e-30);
}

int tu_check_array(const float *a, const float *b, int64_t n, double tol, const char *what,
                   const char *file, int line) {
    tu_checks++;
    double err = tu_max_rel_err(a, b, n);
    if (!(err <= tol)) {
        int64_t worst = 0;
        double we = -1;
        for (int64_t i = 0; i < n; i++) {
            double e = fabs((double)a[i] - (double)b[i]);
            if (!(e <= we)) { we = e; worst = i; }
        }
        tu_failures++;
        fprintf(stderr, "%s:%d: %s: normalized max error %.3g > %.3g (worst [%lld]: %.9g vs %.9g)\n",
                file, line, what, err, tol, (long long)worst, a[worst], b[worst]);
        return 0;
    }
    return 1;
}

const char *tu_tmpdir(const char *tag) {
    static char slots[8][512];
    static int next = 0;
    char *buf = slots[next++ % 8];
    const char *base = getenv("TMPDIR");
    snprintf(buf, 512, "%s/ringtrain_%s_XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
    return buf;
}

void tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

void tu_write_npy(const char *path, const char *descr, const char *shape, const void *data, size_t bytes) {
    char hdr[256];
    int h = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    int pad = (64 - (10 + h + 1) % 64) % 64;
    size_t len = 10 + (size_t)h + (size_t)pad + 1 + bytes;
    unsigned char *b = calloc(1, len);
    if (!b) exit(1);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)((h + pad + 1) & 0xff);
    b[9] = (unsigned char)((h + pad + 1) >> 8);
    memcpy(b + 10, hdr, (size_t)h);
    memset(b + 10 + h, ' ', (size_t)pad);
    b[10 + h + pad] = '\n';
    memcpy(b + 10 + h + pad + 1, data, bytes);
    tu_write_file(path, b, len);
    free(b);
}

static int tu_skips;

/* getenv(var) or dflt, made absolute once. */
static const char *abs_path(const char *var, const char *dflt, char *buf) {
    if (!buf[0]) {
        const char *p = getenv(var);
        if (!realpath(p && *p ? p : dflt, buf)) snprintf(buf, PATH_MAX, "%s", p && *p ? p : dflt);
    }
    return buf;
}

const char *tu_bin(void) {
    static char buf[PATH_MAX];
    return abs_path("RT_BIN", "ringtrain", buf);
}

const char *tu_build(void) {
    static char buf[PATH_MAX];
    return abs_path("RT_BUILD", "build", buf);
}

void tu_skip(const char *what) {
    printf("SKIPPED: %s\n", what);
    tu_skips++;
}

int tu_done(const char *name) {
    printf("%s: %d checks, %d failures", name, tu_checks, tu_failures);
    if (tu_skips) printf(", %d skipped", tu_skips);
    printf("\n");
    return tu_failures ? 1 : tu_skips ? 77 : 0;
}

int tu_run(const char *cmd, char *out, size_t outlen) {
    char full[2048];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    size_t n = p ? fread(out, 1, outlen - 1, p) : 0;
    out[n] = 0;
    int st = p ? pclose(p) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int tu_count(const char *hay, const char *needle) {
    int k = 0;
    for (const char *s = hay; (s = strstr(s, needle)); s++) k++;
    return k;
}
