/* config_yaml: a small node tree built from libyaml events, with 1-based line:column marks
 * and one-line errors; the job-file loader (config.c) converts it through the schema.
 * Internal to the config module. */
#ifndef RT_CONFIG_YAML_H
#define RT_CONFIG_YAML_H

#include <stddef.h>

#define YAML_DEPTH_MAX 16

enum { YN_SCALAR, YN_SEQ, YN_MAP };

struct ynode {
    int kind;
    int quoted;          /* scalar written quoted or as a block: never null, never a number */
    int line, col;       /* 1-based start mark */
    char *text;          /* YN_SCALAR */
    struct ynode *kid;   /* YN_SEQ: items; YN_MAP: key0, value0, key1, value1, ... */
    int n;
};

struct yerr {
    int line, col;       /* 0 = no position */
    char msg[512];
};

void yfail(struct yerr *e, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void yfree(struct ynode *n);
/* Parse one YAML document. *have = 1 when root holds a tree to yfree (even on error);
 * an empty stream gives *have = 0 and success. */
int  yparse(const char *buf, size_t len, struct ynode *root, int *have, struct yerr *e);
/* A plain scalar that YAML reads as null (empty, ~, null). */
int  ynull(const struct ynode *v);

#endif
