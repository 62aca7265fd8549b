/* config_yaml: libyaml events -> a node tree with line:column marks (see config_yaml.h). */
#include "config_yaml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

void yfail(struct yerr *e, int line, int col, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    e->line = line;
    e->col = col;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

void yfree(struct ynode *n) {
    free(n->text);
    for (int i = 0; i < n->n; i++) yfree(&n->kid[i]);
    free(n->kid);
}

static int ynext(yaml_parser_t *p, yaml_event_t *ev, struct yerr *e) {
    if (yaml_parser_parse(p, ev)) return 0;
    const char *what = p->problem ? p->problem : "out of memory";
    const yaml_mark_t *m = &p->problem_mark;
    if (p->error == YAML_READER_ERROR)
        yfail(e, 0, 0, "malformed YAML: %s at byte %zu", what, p->problem_offset);
    else if (p->error == YAML_SCANNER_ERROR && p->context) /* the token that went wrong starts here */
        yfail(e, (int)p->context_mark.line + 1, (int)p->context_mark.column + 1, "malformed YAML: %s (%s)",
              what, p->context);
    else if (p->context)
        yfail(e, (int)m->line + 1, (int)m->column + 1, "malformed YAML: %s (%s at line %d)", what,
              p->context, (int)p->context_mark.line + 1);
    else
        yfail(e, (int)m->line + 1, (int)m->column + 1, "malformed YAML: %s", what);
    return -1;
}

/* Build *out from ev (consumed) and, for collections, the events up to the matching end. */
static int ybuild(yaml_parser_t *p, yaml_event_t *ev, struct ynode *out, int depth, struct yerr *e) {
    memset(out, 0, sizeof *out);
    out->line = (int)ev->start_mark.line + 1;
    out->col = (int)ev->start_mark.column + 1;
    const yaml_char_t *anchor = NULL, *tag = NULL;
    yaml_event_type_t end = YAML_NO_EVENT;
    int rc = -1;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor, tag = ev->data.scalar.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor, tag = ev->data.sequence_start.tag;
        out->kind = YN_SEQ, end = YAML_SEQUENCE_END_EVENT;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor, tag = ev->data.mapping_start.tag;
        out->kind = YN_MAP, end = YAML_MAPPING_END_EVENT;
        break;
    case YAML_ALIAS_EVENT:
        yfail(e, out->line, out->col, "aliases (*%s) are not supported", ev->data.alias.anchor);
        goto done;
    default:
        yfail(e, out->line, out->col, "unexpected YAML structure");
        goto done;
    }
    if (anchor) {
        yfail(e, out->line, out->col, "anchors (&%s) are not supported", anchor);
        goto done;
    }
    if (tag) {
        yfail(e, out->line, out->col, "tags (%s) are not supported", tag);
        goto done;
    }
    if (depth > YAML_DEPTH_MAX) {
        yfail(e, out->line, out->col, "nesting is too deep");
        goto done;
    }
    if (ev->type == YAML_SCALAR_EVENT) {
        size_t len = ev->data.scalar.length;
        if (memchr(ev->data.scalar.value, 0, len)) {
            yfail(e, out->line, out->col, "NUL characters are not allowed");
            goto done;
        }
        out->kind = YN_SCALAR;
        out->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        out->text = malloc(len + 1);
        if (!out->text) {
            yfail(e, out->line, out->col, "out of memory");
            goto done;
        }
        memcpy(out->text, ev->data.scalar.value, len);
        out->text[len] = '\0';
        rc = 0;
        goto done;
    }
    yaml_event_delete(ev);
    for (int cap = 0;;) {
        yaml_event_t kid;
        if (ynext(p, &kid, e)) return -1;
        if (kid.type == end) {
            yaml_event_delete(&kid);
            return 0;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 8;
            struct ynode *k = realloc(out->kid, (size_t)cap * sizeof *k);
            if (!k) {
                yaml_event_delete(&kid);
                yfail(e, out->line, out->col, "out of memory");
                return -1;
            }
            out->kid = k;
        }
        if (ybuild(p, &kid, &out->kid[out->n++], depth + 1, e)) return -1;
    }
done:
    yaml_event_delete(ev);
    return rc;
}

int yparse(const char *buf, size_t len, struct ynode *root, int *have, struct yerr *e) {
    yaml_parser_t p;
    yaml_event_t ev;
    int rc = -1;
    *have = 0;
    if (!yaml_parser_initialize(&p)) {
        yfail(e, 0, 0, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    if (ynext(&p, &ev, e)) goto out; /* stream start */
    yaml_event_delete(&ev);
    if (ynext(&p, &ev, e)) goto out;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        rc = 0;
        goto out;
    }
    yaml_event_delete(&ev); /* document start */
    if (ynext(&p, &ev, e)) goto out;
    *have = 1;
    if (ybuild(&p, &ev, root, 0, e)) goto out;
    if (ynext(&p, &ev, e)) goto out; /* document end */
    yaml_event_delete(&ev);
    if (ynext(&p, &ev, e)) goto out;
    if (ev.type == YAML_DOCUMENT_START_EVENT)
        yfail(e, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
              "more than one YAML document (a second one starts here)");
    else
        rc = 0;
    yaml_event_delete(&ev);
out:
    yaml_parser_delete(&p);
    return rc;
}

int ynull(const struct ynode *v) {
    if (v->kind != YN_SCALAR || v->quoted) return 0;
    const char *t = v->text;
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}
