/* config_schema: the table of job-file keys (internal to config.c). One row per key:
 * dotted name, value type, where it lives in struct cfg, bounds, default, doc line.
 * The row index is also the index of the key in cfg.origin[]. */
#ifndef RT_CONFIG_SCHEMA_H
#define RT_CONFIG_SCHEMA_H

#include <stddef.h>

enum cfg_type {
    CFGT_INT,     /* int */
    CFGT_INT64,   /* int64_t */
    CFGT_UINT64,  /* uint64_t, no bounds */
    CFGT_FLOAT,   /* double, finite */
    CFGT_BOOL,    /* int 0/1 from true/false */
    CFGT_ENUM,    /* int, index into choices */
    CFGT_PATH,    /* char[CFG_PATH_MAX], relative to the job file's directory */
    CFGT_INIT,    /* "random" | "hf:<dir>": int at off, char[CFG_PATH_MAX] dir at off2 */
    CFGT_PAIR,    /* [a, b]: double at off, double at off2, both within the bounds */
    CFGT_PATHLIST,/* a path or a list of paths: char[CFG_PATHLIST_MAX], one resolved path a line */
};

struct cfg_key {
    const char *name;     /* "train.lr" */
    enum cfg_type type;
    size_t off, off2;     /* offsetof(struct cfg, ...); off2 for INIT and PAIR */
    double lo, hi;        /* bounds for numbers; -INFINITY / INFINITY = none */
    int lo_open, hi_open; /* 1 = strict (> lo, < hi) */
    const char *choices;  /* ENUM: "a|b|c" in enum order */
    const char *def;      /* default as YAML text; NULL = required key */
    const char *doc;      /* one sentence */
};

extern const struct cfg_key cfg_schema[];
extern const int cfg_schema_n;

#endif
