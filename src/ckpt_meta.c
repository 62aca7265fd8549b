/* ckpt_meta: meta.json of a checkpoint, format 2 (and 1 for reading) (see ckpt_meta.h). */
#include "ckpt_meta.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static const char *const file_names[CKPT_NFILES] = {"model.bin", "optim.bin"};

static int by_offset(const void *a, const void *b) {
    int64_t x = ((const struct ckpt_block *)a)->off, y = ((const struct ckpt_block *)b)->off;
    return x < y ? -1 : x > y;
}

static void hex64(char out[24], uint64_t v) { snprintf(out, 24, "%016" PRIx64, v); }

char *ckpt_meta_text(const struct ckpt_meta *m, struct ckpt_files *f) {
    char hex[24];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "format", CKPT_FORMAT);
    cJSON_AddNumberToObject(o, "step", (double)m->step);
    cJSON_AddNumberToObject(o, "data_cursor", (double)m->data_cursor);
    cJSON_AddNumberToObject(o, "opt_t", (double)m->opt_t);
    cJSON_AddNumberToObject(o, "bad_in_row", (double)m->bad_in_row);
    cJSON_AddNumberToObject(o, "n_params", (double)m->n_params);
    hex64(hex, m->model_hash);
    cJSON_AddStringToObject(o, "model_hash", hex);
    hex64(hex, m->job_hash);
    cJSON_AddStringToObject(o, "job_hash", hex);
    cJSON_AddNumberToObject(o, "world", m->world);
    cJSON_AddNumberToObject(o, "cp", m->cp);
    cJSON_AddNumberToObject(o, "dp", m->dp);
    cJSON *files = cJSON_AddObjectToObject(o, "files");
    for (int i = 0; i < CKPT_NFILES; i++) {
        qsort(f->blocks[i], (size_t)f->n_blocks[i], sizeof *f->blocks[i], by_offset);
        cJSON *fo = cJSON_AddObjectToObject(files, file_names[i]);
        cJSON_AddNumberToObject(fo, "bytes", (double)f->bytes[i]);
        cJSON *list = cJSON_AddArrayToObject(fo, "blocks");
        for (int k = 0; k < f->n_blocks[i]; k++) {
            const struct ckpt_block *b = &f->blocks[i][k];
            cJSON *e = cJSON_CreateArray();
            hex64(hex, b->hash);
            cJSON_AddItemToArray(e, cJSON_CreateNumber((double)b->off));
            cJSON_AddItemToArray(e, cJSON_CreateNumber((double)b->bytes));
            cJSON_AddItemToArray(e, cJSON_CreateString(hex));
            cJSON_AddItemToArray(list, e);
        }
    }
    /* meta_xxh3: of the compact text of every other member, so an edit of any value shows. */
    char *body = cJSON_PrintUnformatted(o);
    char *s = NULL;
    if (body) {
        hex64(hex, XXH3_64bits(body, strlen(body)));
        free(body);
        cJSON_AddStringToObject(o, "meta_xxh3", hex);
        s = cJSON_Print(o);
    }
    cJSON_Delete(o);
    return s;
}

/* An integer that a double holds exactly (offsets and sizes up to 2^53). */
static int num_i64(const cJSON *x, int64_t *v) {
    if (!cJSON_IsNumber(x) || x->valuedouble != (double)(int64_t)x->valuedouble) return -1;
    *v = (int64_t)x->valuedouble;
    return 0;
}

static int json_i64(const cJSON *o, const char *key, int64_t *v) {
    return num_i64(cJSON_GetObjectItemCaseSensitive(o, key), v);
}

static int json_hex_item(const cJSON *x, uint64_t *v) {
    char *end;
    if (!cJSON_IsString(x) || !*x->valuestring) return -1;
    *v = strtoull(x->valuestring, &end, 16);
    return *end ? -1 : 0;
}

static int json_hex(const cJSON *o, const char *key, uint64_t *v) {
    return json_hex_item(cJSON_GetObjectItemCaseSensitive(o, key), v);
}

/* One file's entry: format 1 {bytes, xxh3} as one block, format 2 {bytes, blocks}. */
static int parse_file(const cJSON *fo, int format, struct ckpt_files *f, int i) {
    if (!fo || json_i64(fo, "bytes", &f->bytes[i]) || f->bytes[i] < 0) return -1;
    if (format == 1) {
        f->blocks[i] = calloc(1, sizeof *f->blocks[i]);
        if (!f->blocks[i]) return -1;
        f->n_blocks[i] = f->bytes[i] > 0;
        f->blocks[i]->bytes = f->bytes[i];
        return json_hex(fo, "xxh3", &f->blocks[i]->hash);
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(fo, "blocks");
    int n = cJSON_GetArraySize(list);
    if (!cJSON_IsArray(list) || !(f->blocks[i] = calloc((size_t)n + 1, sizeof *f->blocks[i]))) return -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        struct ckpt_block *b = &f->blocks[i][f->n_blocks[i]++];
        if (cJSON_GetArraySize(e) != 3 || num_i64(cJSON_GetArrayItem(e, 0), &b->off) ||
            num_i64(cJSON_GetArrayItem(e, 1), &b->bytes) || json_hex_item(cJSON_GetArrayItem(e, 2), &b->hash))
            return -1;
    }
    return 0;
}

/* The blocks of a file, in order, cover it exactly: no gap that nothing verifies. */
static int tiles(const struct ckpt_files *f, int i) {
    int64_t at = 0;
    for (int k = 0; k < f->n_blocks[i]; k++) {
        const struct ckpt_block *b = &f->blocks[i][k];
        if (b->off != at || b->bytes <= 0) return 0;
        at += b->bytes;
    }
    return at == f->bytes[i];
}

int ckpt_meta_parse(const char *text, struct ckpt_meta *m, struct ckpt_files *f, char *why, size_t wl) {
    memset(f, 0, sizeof *f);
    cJSON *o = cJSON_Parse(text);
    if (!o) return snprintf(why, wl, "meta.json is malformed"), -1;
    cJSON *check = cJSON_DetachItemFromObjectCaseSensitive(o, "meta_xxh3");
    char *body = cJSON_PrintUnformatted(o);
    uint64_t want = 0;
    int sum_ok = body && check && json_hex_item(check, &want) == 0 && XXH3_64bits(body, strlen(body)) == want;
    free(body);
    cJSON_Delete(check);
    if (!sum_ok) {
        cJSON_Delete(o);
        return snprintf(why, wl, check ? "meta.json checksum mismatch (edited or corrupt)"
                                       : "meta.json has no checksum (meta_xxh3)"), -1;
    }
    int64_t fmt = 0, w = 0, cp = 0, dp = 0;
    if (json_i64(o, "format", &fmt) || (fmt != 1 && fmt != CKPT_FORMAT)) {
        cJSON_Delete(o);
        return snprintf(why, wl, "meta.json: unknown format (this build reads formats 1 and %d)", CKPT_FORMAT), -1;
    }
    f->format = (int)fmt;
    int bad = json_i64(o, "step", &m->step) || json_i64(o, "data_cursor", &m->data_cursor) ||
              json_i64(o, "opt_t", &m->opt_t) || json_i64(o, "bad_in_row", &m->bad_in_row) ||
              json_i64(o, "n_params", &m->n_params) || json_hex(o, "model_hash", &m->model_hash) ||
              json_hex(o, "job_hash", &m->job_hash) || json_i64(o, "world", &w) || json_i64(o, "cp", &cp) ||
              json_i64(o, "dp", &dp);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files");
    for (int i = 0; i < CKPT_NFILES && !bad; i++)
        bad = parse_file(cJSON_GetObjectItemCaseSensitive(files, file_names[i]), f->format, f, i);
    cJSON_Delete(o);
    m->world = (int)w, m->cp = (int)cp, m->dp = (int)dp;
    if (bad) return snprintf(why, wl, "meta.json is malformed"), -1;
    return ckpt_files_check(f, m->n_params, why, wl);
}

int ckpt_files_check(const struct ckpt_files *f, int64_t n_params, char *why, size_t wl) {
    for (int i = 0; i < CKPT_NFILES; i++)
        if (!tiles(f, i)) return snprintf(why, wl, "meta.json: the blocks of %s do not cover it", file_names[i]), -1;
    if (f->bytes[CKPT_MODEL] != n_params * 4 || f->bytes[CKPT_OPTIM] != 2 * f->bytes[CKPT_MODEL])
        return snprintf(why, wl, "meta.json: the file sizes do not match n_params"), -1;
    return 0;
}

void ckpt_files_free(struct ckpt_files *f) {
    for (int i = 0; i < CKPT_NFILES; i++) free(f->blocks[i]);
    memset(f, 0, sizeof *f);
}
