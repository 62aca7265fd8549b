/* config: loads the job file (a YAML node tree from config_yaml.c -> schema-driven
 * conversion), applies --set overrides, runs cross-key checks, and prints the schema
 * (--help-config, docs/config.md) and the effective configuration as YAML. Every key's
 * type, bounds, default and doc come from cfg_schema (config_schema.c). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_schema.h"
#include "config_yaml.h"
#include "mapfile.h"

#define FILE_MAX   (1 << 20) /* job files are small; refuse anything larger */
#define NAME_MAX_  128       /* longest key name we look at */

/* ---- numbers and value descriptions ---- */

/* [+-]digits, and with frac also [+-][digits][.digits][(e|E)[+-]digits]; the whole string. */
static int scan_number(const char *s, int frac) {
    int digits = 0;
    if (*s == '+' || *s == '-') s++;
    for (; isdigit((unsigned char)*s); s++) digits++;
    if (frac && *s == '.')
        for (s++; isdigit((unsigned char)*s); s++) digits++;
    if (!digits) return 0;
    if (frac && (*s == 'e' || *s == 'E')) {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!isdigit((unsigned char)*s)) return 0;
        while (isdigit((unsigned char)*s)) s++;
    }
    return *s == '\0';
}

static int parse_i64(const char *s, int64_t *out) {
    if (!scan_number(s, 0)) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = x;
    return 0;
}

static int parse_f64(const char *s, double *out) {
    if (!scan_number(s, 1)) return -1;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (*end || !isfinite(x) || (errno == ERANGE && fabs(x) > 1)) return -1; /* underflow is ok */
    *out = x;
    return 0;
}

/* Shortest %g that reads back to the same double. */
static void fmt_double(double x, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static int in_bounds(const struct cfg_key *k, double x) {
    if (k->lo_open ? !(x > k->lo) : !(x >= k->lo)) return 0;
    if (k->hi_open ? !(x < k->hi) : !(x <= k->hi)) return 0;
    return 1;
}

/* " >= 2", " > 0", " in [0, 1)" or "". */
static void bound_text(const struct cfg_key *k, char *buf, size_t n) {
    char lo[32], hi[32];
    fmt_double(k->lo, lo, sizeof lo);
    fmt_double(k->hi, hi, sizeof hi);
    if (isinf(k->lo) && isinf(k->hi)) buf[0] = '\0';
    else if (isinf(k->hi)) snprintf(buf, n, " %s %s", k->lo_open ? ">" : ">=", lo);
    else snprintf(buf, n, " in %c%s, %s%c", k->lo_open ? '(' : '[', lo, hi, k->hi_open ? ')' : ']');
}

/* What the key wants, for "expected ...". */
static void describe(const struct cfg_key *k, char *buf, size_t n) {
    char b[96];
    bound_text(k, b, sizeof b);
    switch (k->type) {
    case CFGT_INT: case CFGT_INT64: snprintf(buf, n, "an integer%s", b); break;
    case CFGT_UINT64: snprintf(buf, n, "an integer >= 0"); break;
    case CFGT_FLOAT: snprintf(buf, n, "a number%s", b); break;
    case CFGT_BOOL: snprintf(buf, n, "true or false"); break;
    case CFGT_PATH: case CFGT_PATHLIST: snprintf(buf, n, k->def ? "a path" : "a non-empty path"); break;
    case CFGT_INIT: snprintf(buf, n, "random or hf:<dir>"); break;
    case CFGT_PAIR: snprintf(buf, n, "a list of 2 numbers%s", b); break;
    case CFGT_ENUM: {
        size_t w = 0;
        w += (size_t)snprintf(buf, n, "one of ");
        for (const char *s = k->choices; *s && w < n; s++)
            w += (size_t)(*s == '|' ? snprintf(buf + w, n - w, " | ") : snprintf(buf + w, n - w, "%c", *s));
        break;
    }
    }
}

/* What was found, for "got ...": null, a list, a mapping, 1.5 or "text" (escaped, shortened). */
static void got_text(const struct ynode *v, char *buf, size_t n) {
    if (v->kind == YN_SEQ) { snprintf(buf, n, "a list of %d item%s", v->n, v->n == 1 ? "" : "s"); return; }
    if (v->kind == YN_MAP) { snprintf(buf, n, "a mapping"); return; }
    if (ynull(v)) { snprintf(buf, n, "null"); return; }
    if (!v->quoted && scan_number(v->text, 1) && strlen(v->text) < 40) { snprintf(buf, n, "%s", v->text); return; }
    size_t w = 0;
    buf[w++] = '"';
    for (const unsigned char *s = (const unsigned char *)v->text; *s && w + 8 < n; s++) {
        if (s - (const unsigned char *)v->text >= 40) { w += (size_t)snprintf(buf + w, n - w, "..."); break; }
        if (*s == '"' || *s == '\\') buf[w++] = '\\', buf[w++] = (char)*s;
        else if (*s < 0x20 || *s == 0x7f) w += (size_t)snprintf(buf + w, n - w, "\\x%02x", *s);
        else buf[w++] = (char)*s;
    }
    buf[w++] = '"';
    buf[w] = '\0';
}

static int expected(const struct cfg_key *k, const struct ynode *v, struct yerr *e) {
    char want[160], got[128];
    describe(k, want, sizeof want);
    got_text(v, got, sizeof got);
    yfail(e, v->line, v->col, "%s: expected %s, got %s", k->name, want, got);
    return -1;
}

/* ---- one conversion function per type: node -> field (written only on success) ---- */

#define FIELD(c, off, T) ((T *)((char *)(c) + (off)))

static int resolve(const char *base, const char *p, char *out) {
    int w;
    if (!*p || *p == '/' || !base || !*base) w = snprintf(out, CFG_PATH_MAX, "%s", p);
    else if (base[strlen(base) - 1] == '/') w = snprintf(out, CFG_PATH_MAX, "%s%s", base, p);
    else w = snprintf(out, CFG_PATH_MAX, "%s/%s", base, p);
    return w < 0 || w >= CFG_PATH_MAX ? -1 : 0;
}

static void set_path(char *field, const char *p) {
    memset(field, 0, CFG_PATH_MAX);
    memcpy(field, p, strlen(p));
}

static int conv_int(const struct cfg_key *k, const struct ynode *v, const char *base, struct cfg *c,
                    struct yerr *e) {
    (void)base;
    int64_t x;
    if (v->kind != YN_SCALAR || parse_i64(v->text, &x) || x < INT_MIN || x > INT_MAX ||
        !in_bounds(k, (double)x))
        return expected(k, v, e);
    *FIELD(c, k->off, int) = (int)x;
    return 0;
}

static int conv_int64(const struct cfg_key *k, const struct ynode *v, const char *base, struct cfg *c,
                      struct yerr *e) {
    (void)base;
    int64_t x;
    if (v->kind != YN_SCALAR || parse_i64(v->text, &x) || !in_bounds(k, (double)x))
        return expected(k, v, e);
    *FIELD(c, k->off, int64_t) = x;
    return 0;
}

static int conv_uint64(const struct cfg_key *k, const struct ynode *v, const char *base, struct cfg *c,
                       struct yerr *e) {
    (void)base;
    if (v->kind != YN_SCALAR || !scan_number(v->text, 0) || v->text[0] == '-') return expected(k, v, e);
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v->text, &end, 10);
    if (errno || *end) return expected(k, v, e);
    *FIELD(c, k->off, uint64_t) = x;
    return 0;
}

static int conv_float(const struct cfg_key *k, const struct ynode *v, const char *base, struct cfg *c,
                      struct yerr *e) {
    (void)base;
    double x;
    if (v->kind != YN_SCALAR || parse_f64(v->text, &x) || !in_bounds(k, x)) return expected(k, v, e);
    *FIELD(c, k->off, double) = x;
    return 0;
}

static int conv_bool(const struct cfg_key *k, const struct ynode *v, const char *base, struct cfg *c,
                     struct yerr *e) {
    (void)base;
    static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False", "FALSE"};
    if (v->kind == YN_SCALAR)
        for (int i = 0; i < 3; i++) {
            if (!strcmp(v->text, t[i])) { *FIELD(c, k->off, int) = 1; return 0; }
            if (!strcmp(v->text, f[i])) { *FIELD(c, k->off, int) = 0; return 0; }
        }
    return expected(k, v, e);
}

static int conv_enum(const struct cfg_key *k, const struct ynode *v, const char *base, struct cfg *c,
                     struct yerr *e) {
    (void)base;
    if (v->kind == YN_SCALAR) {
        size_t len = strlen(v->text);
        int i = 0;
        for (const char *s = k->choices; *s; i++) {
            size_t w = strcspn(s, "|");
            if (w == len && !strncmp(s, v->text, w)) {
                *FIELD(c, k->off, int) = i;
                return 0;
            }
            s += w + (s[w] == '|');
        }
    }
    return expected(k, v, e);
}

static int conv_path(const struct cfg_key *k, const struct ynode *v, const char *base, struct cfg *c,
                     struct yerr *e) {
    char p[CFG_PATH_MAX];
    if (v->kind != YN_SCALAR || ynull(v) || (!k->def && !*v->text)) return expected(k, v, e);
    if (resolve(base, v->text, p)) {
        yfail(e, v->line, v->col, "%s: path is too long (at most %d bytes)", k->name, CFG_PATH_MAX - 1);
        return -1;
    }
    set_path(FIELD(c, k->off, char), p);
    return 0;
}

/* One element of a path list: a non-empty scalar without a newline, resolved, appended to
 * out (w bytes used so far, one path a line). */
static int pathlist_add(const struct cfg_key *k, const struct ynode *v, int item, const char *base, char *out,
                        size_t *w, struct yerr *e) {
    char p[CFG_PATH_MAX], what[32] = "";
    if (item) snprintf(what, sizeof what, " item %d:", item);
    if (v->kind != YN_SCALAR || ynull(v) || !*v->text) {
        char got[128];
        got_text(v, got, sizeof got);
        yfail(e, v->line, v->col, "%s:%s expected a non-empty path, got %s", k->name, what, got);
        return -1;
    }
    if (strchr(v->text, '\n')) {
        yfail(e, v->line, v->col, "%s:%s a path may not contain a newline", k->name, what);
        return -1;
    }
    if (resolve(base, v->text, p)) {
        yfail(e, v->line, v->col, "%s:%s path is too long (at most %d bytes)", k->name, what, CFG_PATH_MAX - 1);
        return -1;
    }
    size_t len = strlen(p);
    if (*w + (*w > 0) + len >= CFG_PATHLIST_MAX) {
        yfail(e, v->line, v->col, "%s:%s the list of paths is too long (at most %d bytes in all; "
              "name a directory of .npy files instead)", k->name, what, CFG_PATHLIST_MAX - 1);
        return -1;
    }
    if (*w) out[(*w)++] = '\n';
    memcpy(out + *w, p, len);
    *w += len;
    return 0;
}

/* A path, or a non-empty list of them; stored one per line. "" (when there is a default) = none. */
static int conv_pathlist(const struct cfg_key *k, const struct ynode *v, const char *base, struct cfg *c,
                         struct yerr *e) {
    char buf[CFG_PATHLIST_MAX] = "";
    size_t w = 0;
    if (v->kind == YN_SCALAR) {
        if (ynull(v) || (!k->def && !*v->text)) return expected(k, v, e);
        if (*v->text && pathlist_add(k, v, 0, base, buf, &w, e)) return -1;
    } else if (v->kind == YN_SEQ && v->n > 0) {
        for (int i = 0; i < v->n; i++)
            if (pathlist_add(k, &v->kid[i], i + 1, base, buf, &w, e)) return -1;
    } else {
        char got[128];
        got_text(v, got, sizeof got);
        yfail(e, v->line, v->col, "%s: expected a path or a non-empty list of paths, got %s", k->name, got);
        return -1;
    }
    memcpy(FIELD(c, k->off, char), buf, CFG_PATHLIST_MAX);
    return 0;
}

static int conv_init(const struct cfg_key *k, const struct ynode *v, const char *base, struct cfg *c,
                     struct yerr *e) {
    char p[CFG_PATH_MAX] = "";
    if (v->kind != YN_SCALAR) return expected(k, v, e);
    if (strcmp(v->text, "random")) {
        if (strncmp(v->text, "hf:", 3) || !v->text[3]) return expected(k, v, e);
        if (resolve(base, v->text + 3, p)) {
            yfail(e, v->line, v->col, "%s: path is too long (at most %d bytes)", k->name, CFG_PATH_MAX - 1);
            return -1;
        }
    }
    *FIELD(c, k->off, int) = *p ? INIT_HF : INIT_RANDOM;
    set_path(FIELD(c, k->off2, char), p);
    return 0;
}

static int conv_pair(const struct cfg_key *k, const struct ynode *v, const char *base, struct cfg *c,
                     struct yerr *e) {
    (void)base;
    double x[2];
    if (v->kind != YN_SEQ || v->n != 2) return expected(k, v, e);
    for (int i = 0; i < 2; i++)
        if (v->kid[i].kind != YN_SCALAR || parse_f64(v->kid[i].text, &x[i]) || !in_bounds(k, x[i]))
            return expected(k, &v->kid[i], e);
    *FIELD(c, k->off, double) = x[0];
    *FIELD(c, k->off2, double) = x[1];
    return 0;
}

typedef int (*conv_fn)(const struct cfg_key *, const struct ynode *, const char *, struct cfg *,
                       struct yerr *);
static const conv_fn conv_of[] = {
    [CFGT_INT] = conv_int,   [CFGT_INT64] = conv_int64, [CFGT_UINT64] = conv_uint64,
    [CFGT_FLOAT] = conv_float, [CFGT_BOOL] = conv_bool, [CFGT_ENUM] = conv_enum,
    [CFGT_PATH] = conv_path, [CFGT_INIT] = conv_init,   [CFGT_PAIR] = conv_pair,
    [CFGT_PATHLIST] = conv_pathlist,
};

/* ---- key names and did-you-mean ---- */

static int key_index(const char *name) {
    for (int i = 0; i < cfg_schema_n; i++)
        if (!strcmp(cfg_schema[i].name, name)) return i;
    return -1;
}

static size_t section_len(const char *name) { return strcspn(name, "."); }

/* The index of the first key "<s>.something", which stands for the section; -1 if none. */
static int section_index(const char *s) {
    size_t n = strlen(s);
    for (int i = 0; i < cfg_schema_n; i++)
        if (section_len(cfg_schema[i].name) == n && !strncmp(cfg_schema[i].name, s, n)) return i;
    return -1;
}

/* Optimal string alignment distance (edits and adjacent swaps); strings up to NAME_MAX_. */
static int edit_distance(const char *a, const char *b, size_t bn) {
    size_t an = strlen(a);
    if (an > NAME_MAX_ || bn > NAME_MAX_) return INT_MAX;
    static int d[NAME_MAX_ + 1][NAME_MAX_ + 1];
    for (size_t i = 0; i <= an; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= bn; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= an; i++)
        for (size_t j = 1; j <= bn; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[an][bn];
}

/* " (did you mean X?)" or "": the nearest key (or section) within 3 edits; for a key, the
 * same leaf name in another section wins over 2 or 3 edits ("train.seed" -> model.seed). */
static void hint(const char *name, int sections, char *buf, size_t n) {
    int best = 4, bi = -1;
    buf[0] = '\0';
    for (int i = 0; i < cfg_schema_n; i++) {
        const char *k = cfg_schema[i].name;
        int d = edit_distance(name, k, sections ? section_len(k) : strlen(k));
        if (d < best) best = d, bi = i;
    }
    const char *leaf = sections ? NULL : strchr(name, '.');
    for (int i = 0; leaf && best > 1 && i < cfg_schema_n; i++)
        if (!strcmp(strchr(cfg_schema[i].name, '.'), leaf)) best = 1, bi = i;
    if (bi >= 0) {
        const char *k = cfg_schema[bi].name;
        snprintf(buf, n, " (did you mean %.*s?)", (int)(sections ? section_len(k) : strlen(k)), k);
    }
}

/* ---- defaults, job file, --set ---- */

static int convert(int idx, const struct ynode *v, const char *base, struct cfg *c, struct yerr *e) {
    return conv_of[cfg_schema[idx].type](&cfg_schema[idx], v, base, c, e);
}

/* Parse a YAML value given as text (a default or a --set value); empty text is null. */
static int convert_text(int idx, const char *text, struct cfg *c, struct yerr *e) {
    struct ynode root, null = {.kind = YN_SCALAR, .text = ""};
    int have, rc = yparse(text, strlen(text), &root, &have, e);
    if (rc == 0) rc = convert(idx, have ? &root : &null, NULL, c, e);
    if (have) yfree(&root);
    return rc;
}

void cfg_defaults(struct cfg *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < cfg_schema_n; i++) {
        struct yerr e = {0};
        if (cfg_schema[i].def && convert_text(i, cfg_schema[i].def, c, &e)) {
            fprintf(stderr, "config_schema.c: bad default of %s: %s\n", cfg_schema[i].name, e.msg);
            abort();
        }
    }
}

/* Whether name is a group of keys ("model.rope_scaling" for model.rope_scaling.*). */
static int is_group(const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < cfg_schema_n; i++)
        if (!strncmp(cfg_schema[i].name, name, n) && cfg_schema[i].name[n] == '.') return 1;
    return 0;
}

/* The keys of mapping m under prefix ("model", or a group such as "model.rope_scaling", whose
 * keys may also be written as one nested mapping). key_line[i]: where key i was seen. */
static int apply_keys(struct cfg *c, const char *prefix, const struct ynode *m, const char *base,
                      int *key_line, struct yerr *e) {
    char h[160], got[128], full[2 * NAME_MAX_];
    for (int j = 0; j < m->n; j += 2) {
        const struct ynode *k = &m->kid[j], *v = &m->kid[j + 1];
        if (k->kind != YN_SCALAR || ynull(k)) {
            got_text(k, got, sizeof got);
            yfail(e, k->line, k->col, "%s: expected a key name, got %s", prefix, got);
            return -1;
        }
        if (snprintf(full, sizeof full, "%s.%s", prefix, k->text) >= (int)sizeof full) {
            yfail(e, k->line, k->col, "%s: key name too long", prefix);
            return -1;
        }
        int idx = key_index(full);
        if (idx < 0 && v->kind == YN_MAP && is_group(full)) {
            if (apply_keys(c, full, v, base, key_line, e)) return -1;
            continue;
        }
        if (idx < 0) {
            hint(full, 0, h, sizeof h);
            yfail(e, k->line, k->col, "%s: unknown key%s", full, h);
            return -1;
        }
        if (key_line[idx]) {
            yfail(e, k->line, k->col, "%s: duplicate key (first at line %d)", full, key_line[idx]);
            return -1;
        }
        key_line[idx] = k->line;
        if (convert(idx, v, base, c, e)) return -1;
        c->origin[idx] = (struct cfg_origin){ORIGIN_FILE, v->line, v->col};
    }
    return 0;
}

/* Apply a parsed job file: sections, then keys, each converted by its schema row. */
static int apply_doc(struct cfg *c, const struct ynode *root, const char *base, struct yerr *e) {
    int sec_line[CFG_MAX_KEYS] = {0}, key_line[CFG_MAX_KEYS] = {0};
    char h[160], got[128];
    if (ynull(root)) return 0;
    if (root->kind != YN_MAP) {
        got_text(root, got, sizeof got);
        yfail(e, root->line, root->col, "expected a mapping of sections (model:, data:, train:, ...), got %s", got);
        return -1;
    }
    for (int i = 0; i < root->n; i += 2) {
        const struct ynode *s = &root->kid[i], *m = &root->kid[i + 1];
        if (s->kind != YN_SCALAR || ynull(s)) {
            got_text(s, got, sizeof got);
            yfail(e, s->line, s->col, "expected a section name, got %s", got);
            return -1;
        }
        int si = section_index(s->text);
        if (si < 0) {
            hint(s->text, 1, h, sizeof h);
            yfail(e, s->line, s->col, "%s: unknown section%s", s->text, h);
            return -1;
        }
        if (sec_line[si]) {
            yfail(e, s->line, s->col, "%s: duplicate section (first at line %d)", s->text, sec_line[si]);
            return -1;
        }
        sec_line[si] = s->line;
        if (ynull(m)) continue; /* a section with every key commented out */
        if (m->kind != YN_MAP) {
            got_text(m, got, sizeof got);
            yfail(e, m->line, m->col, "%s: expected a mapping of keys, got %s", s->text, got);
            return -1;
        }
        if (apply_keys(c, s->text, m, base, key_line, e)) return -1;
    }
    return 0;
}

static int read_all(const char *path, char **out, size_t *len, char *err, size_t errlen) {
    int fd = mapfile_open_regular(path, err, errlen); /* a FIFO would block the read forever */
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) { snprintf(err, errlen, "%s: out of memory", path); break; }
        n += fread(buf + n, 1, cap - n, f);
        if (ferror(f)) { snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno)); break; }
        if (n > FILE_MAX) { snprintf(err, errlen, "%s: file is too large (over %d bytes)", path, FILE_MAX); break; }
        if (feof(f)) {
            fclose(f);
            *out = buf, *len = n;
            return 0;
        }
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    free(buf);
    fclose(f);
    return -1;
}

/* Error messages are one line: control characters from the file (a quoted key "a\nb") become '?'. */
static int one_line(char *err) {
    for (; *err; err++)
        if ((unsigned char)*err < 0x20) *err = '?';
    return -1;
}

int cfg_load_file(struct cfg *c, const char *path, char *err, size_t errlen) {
    char *buf, base[CFG_PATH_MAX];
    size_t len;
    if (strlen(path) >= CFG_PATH_MAX) {
        snprintf(err, errlen, "%.64s...: path is too long (at most %d bytes)", path, CFG_PATH_MAX - 1);
        return -1;
    }
    if (read_all(path, &buf, &len, err, errlen)) return -1;
    set_path(c->path, path);
    snprintf(base, sizeof base, "%s", path);
    char *slash = strrchr(base, '/');
    if (slash) slash[slash == base] = '\0';
    else base[0] = '\0';

    struct ynode root;
    struct yerr e = {0};
    int have, rc = yparse(buf, len, &root, &have, &e);
    free(buf);
    if (rc == 0 && have) rc = apply_doc(c, &root, base, &e);
    if (have) yfree(&root);
    if (rc && e.line) snprintf(err, errlen, "%s:%d:%d: %s", path, e.line, e.col, e.msg);
    else if (rc) snprintf(err, errlen, "%s: %s", path, e.msg);
    return rc ? one_line(err) : 0;
}

int cfg_apply_set(struct cfg *c, const char *kv, char *err, size_t errlen) {
    const char *eq = strchr(kv, '=');
    char key[NAME_MAX_ + 1], h[160];
    if (!eq || eq == kv) {
        snprintf(err, errlen, "--set wants key=value, got \"%.200s\"", kv);
        return one_line(err);
    }
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    int idx = (size_t)(eq - kv) <= NAME_MAX_ ? key_index(key) : -1;
    if (idx < 0) {
        hint(key, 0, h, sizeof h);
        snprintf(err, errlen, "--set %s: unknown key%s", key, h);
        return one_line(err);
    }
    struct yerr e = {0};
    if (convert_text(idx, eq + 1, c, &e)) {
        /* conversion messages start with the key; YAML syntax messages do not */
        if (!strncmp(e.msg, key, strlen(key)) && e.msg[strlen(key)] == ':')
            snprintf(err, errlen, "--set %s", e.msg);
        else
            snprintf(err, errlen, "--set %s: %s", key, e.msg);
        return one_line(err);
    }
    c->origin[idx] = (struct cfg_origin){ORIGIN_SET, 0, 0};
    return 0;
}

/* ---- origins and cross-key checks ---- */

void cfg_where(const struct cfg *c, const char *key, char *buf, size_t buflen) {
    int i = key_index(key);
    if (i < 0) snprintf(buf, buflen, "unknown key");
    else if (c->origin[i].kind == ORIGIN_FILE)
        snprintf(buf, buflen, "%s:%d:%d", c->path, c->origin[i].line, c->origin[i].col);
    else snprintf(buf, buflen, c->origin[i].kind == ORIGIN_SET ? "--set" : "default");
}

const char *cfg_choice(const char *key, int value, char *buf, size_t buflen) {
    int i = key_index(key);
    const char *p = value >= 0 && i >= 0 && cfg_schema[i].type == CFGT_ENUM ? cfg_schema[i].choices : NULL;
    for (int v = 0; p && v < value; v++) p = (p = strchr(p, '|')) ? p + 1 : NULL;
    if (p) snprintf(buf, buflen, "%.*s", (int)strcspn(p, "|"), p);
    else snprintf(buf, buflen, "%d", value); /* not an enum key, or out of its range */
    return buf;
}

int cfg_is_set(const struct cfg *c, const char *key) {
    int i = key_index(key);
    return i >= 0 && c->origin[i].kind != ORIGIN_DEFAULT;
}

/* "<where of a>: a: what (b's where)"; where of a is "file:l:c", "--set" or the file alone. */
static int verr(const struct cfg *c, char *err, size_t errlen, const char *a, const char *b,
                const char *fmt, ...) {
    char wa[CFG_PATH_MAX + 32], wb[CFG_PATH_MAX + 32], what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    cfg_where(c, a, wa, sizeof wa);
    cfg_where(c, b, wb, sizeof wb);
    const char *pre = !strcmp(wa, "default") ? c->path : wa;
    const char *sep = !*pre ? "" : !strcmp(wa, "--set") ? " " : ": ";
    snprintf(err, errlen, "%s%s%s: %s (%s: %s)", pre, sep, a, what, b, wb);
    return -1;
}

int cfg_validate(const struct cfg *c, char *err, size_t errlen) {
    char x[32], y[32];
    if (!c->data.train[0] && c->data.synthetic == SYNTHETIC_NONE) {
        snprintf(err, errlen, "%s%sdata.train: required key is missing", c->path, *c->path ? ": " : "");
        return -1;
    }
    if (c->train.min_lr > c->train.lr) {
        fmt_double(c->train.min_lr, x, sizeof x);
        fmt_double(c->train.lr, y, sizeof y);
        return verr(c, err, errlen, "train.min_lr", "train.lr", "%s is greater than train.lr %s", x, y);
    }
    if (c->train.warmup_steps > c->train.steps)
        return verr(c, err, errlen, "train.warmup_steps", "train.steps", "%" PRId64
                    " is greater than train.steps %" PRId64, c->train.warmup_steps, c->train.steps);
    if (c->log.eval_every && !c->data.eval[0])
        return verr(c, err, errlen, "log.eval_every", "data.eval", "%" PRId64 " needs data.eval (the tokens to "
                    "evaluate)", c->log.eval_every);
    if (c->eval.buckets > c->data.seq_len)
        return verr(c, err, errlen, "eval.buckets", "data.seq_len", "%d is more than data.seq_len %" PRId64,
                    c->eval.buckets, c->data.seq_len);
    if (c->device.attention == ATTN_CUDNN && c->device.backend != BACKEND_CUDA)
        return verr(c, err, errlen, "device.attention", "device.backend", "cudnn needs device.backend cuda");
    if (c->memory.offload == OFFLOAD_ALL && c->memory.checkpointing == CKPT_NONE)
        return verr(c, err, errlen, "memory.offload", "memory.checkpointing",
                    "all needs memory.checkpointing full or selective (none keeps every activation)");
    if (c->model.init != INIT_RANDOM) return 0; /* an HF model's shape comes from its config.json */
    const struct cfg_model *m = &c->model;
    if (m->n_heads % m->n_kv_heads)
        return verr(c, err, errlen, "model.n_heads", "model.n_kv_heads",
                    "%d is not a multiple of model.n_kv_heads %d", m->n_heads, m->n_kv_heads);
    if (m->dim % m->n_heads)
        return verr(c, err, errlen, "model.dim", "model.n_heads",
                    "%d is not a multiple of model.n_heads %d", m->dim, m->n_heads);
    if ((m->dim / m->n_heads) % 2)
        return verr(c, err, errlen, "model.dim", "model.n_heads",
                    "%d / model.n_heads %d gives an odd head size %d (rotary embeddings need it even)",
                    m->dim, m->n_heads, m->dim / m->n_heads);
    return 0;
}

/* ---- printing ---- */

static const char *type_name(const struct cfg_key *k) {
    static const char *const names[] = {
        [CFGT_INT] = "int", [CFGT_INT64] = "int64", [CFGT_UINT64] = "uint64", [CFGT_FLOAT] = "float",
        [CFGT_BOOL] = "bool", [CFGT_ENUM] = "enum", [CFGT_PATH] = "path", [CFGT_INIT] = "string",
        [CFGT_PAIR] = "[float, float]", [CFGT_PATHLIST] = "path or [paths]",
    };
    return names[k->type];
}

/* Allowed values: ">= 2", "each in [0, 1)", "a | b", "random | hf:<dir>", "". With md, in markdown. */
static void allowed_text(const struct cfg_key *k, int md, char *buf, size_t n) {
    char b[96];
    bound_text(k, b, sizeof b);
    if (k->type == CFGT_ENUM) {
        size_t w = 0;
        for (const char *s = k->choices; *s && w < n; s += strcspn(s, "|") + (s[strcspn(s, "|")] == '|'))
            w += (size_t)snprintf(buf + w, n - w, md ? "%s`%.*s`" : "%s%.*s", w ? (md ? " \\| " : " | ") : "",
                                  (int)strcspn(s, "|"), s);
    } else if (k->type == CFGT_INIT) snprintf(buf, n, md ? "`random` or `hf:<dir>`" : "random | hf:<dir>");
    else if (k->type == CFGT_PAIR) snprintf(buf, n, "each%s", b);
    else if (k->type == CFGT_BOOL) snprintf(buf, n, md ? "`true` \\| `false`" : "");
    else snprintf(buf, n, "%s", b[0] ? b + 1 : "");
}

static const char *md_intro =
    "# Job file reference\n"
    "\n"
    "<!-- Generated from src/config_schema.c by `./ringtrain --help-config=markdown` (make docs);\n"
    "     do not edit by hand: test_config fails when this file drifts from the schema. -->\n"
    "\n"
    "A job file is a YAML mapping of sections, each a mapping of keys:\n"
    "\n"
    "```yaml\n"
    "model:\n"
    "  dim: 64\n"
    "data:\n"
    "  train: tokens.bin\n"
    "train:\n"
    "  lr: 3e-4\n"
    "  betas: [0.9, 0.95]\n"
    "```\n"
    "\n"
    "Every key has a default except `data.train` (not needed with `data.synthetic`). Paths are relative to the directory of the\n"
    "job file unless absolute. `data.train` and `data.eval` also take a list of token files, read as\n"
    "one stream in the given order, and a directory stands for its `*.npy` files sorted by name\n"
    "(docs/formats.md, \"Token files\"). Unknown keys, duplicate keys, wrong types and out-of-range values\n"
    "are errors naming the file, the line and column, and the key, for example\n"
    "\n"
    "    job.yaml:7:9: train.lr: expected a number > 0, got \"fast\"\n"
    "    job.yaml:3:3: train.lrr: unknown key (did you mean train.lr?)\n"
    "\n"
    "`--set key=value` (repeatable) overrides one key after the file is read, e.g.\n"
    "`--set train.lr=1e-3` or `--set train.betas=[0.9,0.99]`; the value is read as YAML and a\n"
    "relative path in it is relative to the current directory.\n"
    "\n"
    "Checks across keys: `train.min_lr` <= `train.lr`, `train.warmup_steps` <= `train.steps`,\n"
    "`device.attention: cudnn` needs `device.backend: cuda`, and with `model.init: random`,\n"
    "`model.n_heads` is a multiple of `model.n_kv_heads` and `model.dim` a multiple of\n"
    "`model.n_heads` with an even quotient (the head size). With `model.init: hf:<dir>` the\n"
    "model shape comes from the checkpoint's config.json instead of the `model.*` keys, except\n"
    "RoPE: `model.rope_theta` and `model.rope_scaling.*` given in the job override config.json's.\n"
    "\n"
    "The `model.rope_scaling.*` keys are written as one nested mapping under `model:`, e.g.\n"
    "`rope_scaling: {type: yarn, factor: 4, original_max_position_embeddings: 32768}`, or one by\n"
    "one (`--set model.rope_scaling.factor=4`). They follow Hugging Face's `rope_scaling` keys and\n"
    "give the frequencies transformers computes (docs/rope.md); a key the chosen type does not use\n"
    "is an error, and so is a missing one the type requires (reported at `type`'s line).\n";

void cfg_print_help(FILE *f, const char *format) {
    int md = format && !strcmp(format, "markdown");
    char allowed[128], type[160];
    if (md) fputs(md_intro, f);
    else fprintf(f, "Job file keys (section.key; override one with --set key=value):\n\n");
    for (int i = 0; i < cfg_schema_n; i++) {
        const struct cfg_key *k = &cfg_schema[i];
        size_t sl = section_len(k->name);
        int new_section = i == 0 || strncmp(k->name, cfg_schema[i - 1].name, sl + 1);
        allowed_text(k, md, allowed, sizeof allowed);
        if (md) {
            if (new_section)
                fprintf(f, "\n## %.*s\n\n| key | type | default | allowed | description |\n"
                        "|---|---|---|---|---|\n", (int)sl, k->name);
            fprintf(f, "| `%s` | %s | ", k->name, type_name(k));
            fprintf(f, k->def ? "`%s`" : "*required*", k->def);
            fprintf(f, " | %s | %s |\n", allowed, k->doc);
        } else {
            if (new_section && i) fputc('\n', f);
            snprintf(type, sizeof type, "%s%s%s", k->type == CFGT_ENUM || k->type == CFGT_INIT ? "" : type_name(k),
                     allowed[0] && k->type != CFGT_ENUM && k->type != CFGT_INIT ? " " : "", allowed);
            fprintf(f, "%-22s %-30s default: %s\n    %s\n", k->name, type, k->def ? k->def : "(required)", k->doc);
        }
    }
}

/* A YAML double-quoted string; relative paths made absolute so the output reads back anywhere. */
static void print_quoted(FILE *f, const char *prefix, const char *p) {
    char cwd[CFG_PATH_MAX];
    fprintf(f, "\"%s", prefix);
    if (*p && *p != '/' && getcwd(cwd, sizeof cwd) && strlen(cwd) + strlen(p) + 1 < CFG_PATH_MAX)
        fprintf(f, "%s%s", cwd, strcmp(cwd, "/") ? "/" : "");
    for (const unsigned char *s = (const unsigned char *)p; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if (*s < 0x20 || *s == 0x7f) fprintf(f, "\\x%02x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

/* One path as a quoted string, several as a flow list of them. */
static void print_pathlist(FILE *f, const char *list) {
    char p[CFG_PATH_MAX];
    int many = strchr(list, '\n') != NULL;
    if (many) fputc('[', f);
    for (const char *s = list;;) {
        size_t len = strcspn(s, "\n");
        snprintf(p, sizeof p, "%.*s", (int)len, s);
        print_quoted(f, "", p);
        if (!s[len]) break;
        fputs(", ", f);
        s += len + 1;
    }
    if (many) fputc(']', f);
}

void cfg_print(FILE *f, const struct cfg *c) {
    char x[32], y[32];
    for (int i = 0; i < cfg_schema_n; i++) {
        const struct cfg_key *k = &cfg_schema[i];
        size_t sl = section_len(k->name);
        if (i == 0 || strncmp(k->name, cfg_schema[i - 1].name, sl + 1)) fprintf(f, "%.*s:\n", (int)sl, k->name);
        fprintf(f, "  %s: ", k->name + sl + 1);
        switch (k->type) {
        case CFGT_INT: fprintf(f, "%d", *FIELD(c, k->off, const int)); break;
        case CFGT_INT64: fprintf(f, "%" PRId64, *FIELD(c, k->off, const int64_t)); break;
        case CFGT_UINT64: fprintf(f, "%" PRIu64, *FIELD(c, k->off, const uint64_t)); break;
        case CFGT_FLOAT: fmt_double(*FIELD(c, k->off, const double), x, sizeof x); fputs(x, f); break;
        case CFGT_BOOL: fputs(*FIELD(c, k->off, const int) ? "true" : "false", f); break;
        case CFGT_PATH: print_quoted(f, "", FIELD(c, k->off, const char)); break;
        case CFGT_PATHLIST: print_pathlist(f, FIELD(c, k->off, const char)); break;
        case CFGT_INIT:
            if (*FIELD(c, k->off, const int) == INIT_HF) print_quoted(f, "hf:", FIELD(c, k->off2, const char));
            else fputs("random", f);
            break;
        case CFGT_PAIR:
            fmt_double(*FIELD(c, k->off, const double), x, sizeof x);
            fmt_double(*FIELD(c, k->off2, const double), y, sizeof y);
            fprintf(f, "[%s, %s]", x, y);
            break;
        case CFGT_ENUM: {
            const char *s = k->choices;
            for (int j = *FIELD(c, k->off, const int); j > 0 && *s; j--) s += strcspn(s, "|") + 1;
            fprintf(f, "%.*s", (int)strcspn(s, "|"), s);
            break;
        }
        }
        fputc('\n', f);
    }
}
