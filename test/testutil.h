/* testutil: assertions and comparisons shared by the C test programs. A failed check
 * prints file:line and the values, and the program exits 1 at the end (test_done). */
#ifndef RT_TESTUTIL_H
#define RT_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

extern int tu_failures;
extern int tu_checks;

#define CHECK(cond) tu_check((cond), #cond, __FILE__, __LINE__)
/* |a-b| <= tol * max(|b|, floor) */
#define CHECK_REL(a, b, tol) tu_check_rel((double)(a), (double)(b), (tol), #a, __FILE__, __LINE__)
/* max_i |a_i-b_i| / max(max_i |b_i|, 1e-30) <= tol; prints the worst index on failure. */
#define CHECK_ARRAY(a, b, n, tol, what) tu_check_array((a), (b), (n), (tol), (what), __FILE__, __LINE__)

int    tu_check(int ok, const char *expr, const char *file, int line);
int    tu_check_rel(double a, double b, double tol, const char *expr, const char *file, int line);
int    tu_check_array(const float *a, const float *b, int64_t n, double tol, const char *what,
                      const char *file, int line);
/* Normalized max error of a against reference b (as in CHECK_ARRAY). */
double tu_max_rel_err(const float *a, const float *b, int64_t n);
/* A fresh empty directory under $TMPDIR (or /tmp); the path is static storage per call slot. */
const char *tu_tmpdir(const char *tag);
/* Write bytes to a file; aborts the test on failure. */
void   tu_write_file(const char *path, const void *data, size_t n);
/* Write a .npy file: header with descr and shape as given (e.g. "<i4", "(5,)"), padded as
 * numpy pads it, then `bytes` bytes of data. Aborts the test on failure. */
void   tu_write_npy(const char *path, const char *descr, const char *shape, const void *data, size_t bytes);
/* Run a shell command; its stdout and stderr (up to outlen - 1 bytes) in out. Returns its
 * exit status (-1 when it did not exit normally). */
int    tu_run(const char *cmd, char *out, size_t outlen);
/* How many times needle occurs in hay. */
int    tu_count(const char *hay, const char *needle);
/* The programs under test, as absolute paths (tests may change directory): the ringtrain
 * binary ($RT_BIN, else ./ringtrain) and the build directory ($RT_BUILD, else build), which
 * `make sanitize` points at its own build. */
const char *tu_bin(void);
const char *tu_build(void);
/* Note that part of a test could not run (a missing Python package): printed, counted. */
void   tu_skip(const char *what);
/* Print "name: N checks, M failures[, K skipped]" and return the exit status: 1 when a
 * check failed, else 77 (the suite's "skipped") when something was skipped, else 0. */
int    tu_done(const char *name);

#endif
