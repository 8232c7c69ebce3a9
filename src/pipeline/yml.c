/*
 * yml — .yci.yml to jobs.
 *
 * Two steps. build() turns libyaml's events into a small tree of our own,
 * with each node's position, under hard limits: nesting depth, and the node
 * and byte counts with every alias counted as a full copy of what it names
 * (so "billion laughs" stops at PIPELINE_MAX_NODES instead of eating memory;
 * aliases themselves are only pointers to the anchored node). Then the
 * interpreter walks the tree with the schema of docs/pipelines.md, reporting
 * the first problem at the node that has it, and fills the shared job model
 * that validate.c expands.
 *
 * Scalars follow the YAML 1.2 core schema where a type matters (true/false,
 * null, integers): "yes", "on" and "3.10" are strings, and every scalar used
 * as a string keeps its text exactly as written.
 */
#include "pipeline/pipeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "lib/buf.h"
#include "lib/limits.h"
#include "lib/utf8.h"
#include "lib/xalloc.h"
#include "pipeline/internal.h"
#include "lib/banned.h"

enum ykind { Y_SCALAR, Y_SEQ, Y_MAP };

struct ynode {
    enum ykind kind;
    struct pos at;
    char *str; /* scalars: the text, NUL-free */
    size_t len;
    bool plain;          /* a plain scalar without tag: may be null, a bool, a number */
    char *anchor;        /* collections: registered when complete */
    struct ynode **kids; /* sequence items; mapping keys and values, alternating */
    size_t n, cap;
    size_t nodes, bytes; /* size with aliases expanded */
    size_t index;        /* in ytree.all */
};

struct ytree {
    struct ynode **all; /* every node, to free them */
    size_t n, cap;
    json_t *anchors; /* name -> index in all */
    size_t nodes, bytes;
    struct ynode *root;
};

static struct pos mark_pos(yaml_mark_t m)
{
    return (struct pos){(int)m.line + 1, (int)m.column + 1};
}

static void tree_release(struct ytree *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->all[i]->str);
        free(t->all[i]->anchor);
        free(t->all[i]->kids);
        free(t->all[i]);
    }
    free(t->all);
    json_decref(t->anchors);
}

static struct ynode *node_new(struct ytree *t, enum ykind kind, yaml_mark_t m)
{
    struct ynode *n = xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->at = mark_pos(m);
    n->nodes = 1;
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->all = xrealloc(t->all, t->cap * sizeof(*t->all));
    }
    n->index = t->n;
    t->all[t->n++] = n;
    return n;
}

static void kid_add(struct ynode *parent, struct ynode *kid)
{
    if (parent->n == parent->cap) {
        parent->cap = parent->cap ? parent->cap * 2 : 4;
        parent->kids = xrealloc(parent->kids, parent->cap * sizeof(*parent->kids));
    }
    parent->kids[parent->n++] = kid;
}

/* Where the byte at offset is, counting lines and characters. */
static struct pos offset_pos(const char *data, size_t len, size_t offset)
{
    struct pos p = {1, 1};
    for (size_t i = 0; i < offset && i < len; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch == '\n' || (ch == '\r' && (i + 1 >= len || data[i + 1] != '\n'))) {
            p.line++;
            p.col = 1;
        } else if ((ch & 0xc0) != 0x80) {
            p.col++;
        }
    }
    return p;
}

static int yaml_problem(struct pctx *c, yaml_parser_t *p, const char *data, size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown problem";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return perr(c, (struct pos){1, 1}, "out of memory while reading YAML");
    case YAML_READER_ERROR:
        if (p->problem_value != -1)
            return perr(c, offset_pos(data, len, p->problem_offset),
                        "YAML syntax error: %s (character U+%04X)", problem,
                        (unsigned)p->problem_value);
        return perr(c, offset_pos(data, len, p->problem_offset), "YAML syntax error: %s", problem);
    default:
        if (p->context)
            return perr(c, mark_pos(p->problem_mark),
                        "YAML syntax error: %s (%s at line %d, column %d)", problem, p->context,
                        (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
        return perr(c, mark_pos(p->problem_mark), "YAML syntax error: %s", problem);
    }
}

/* Tags we understand: none, "!" (non-specific), and the standard ones for
 * the node's own kind. !!str makes a scalar a plain string. */
static int tag_check(struct pctx *c, const yaml_char_t *tag, enum ykind kind, yaml_mark_t m,
                     bool *is_str)
{
    const char *t = (const char *)tag;
    if (!t || strcmp(t, "!") == 0)
        return 0;
    if ((kind == Y_SCALAR && strcmp(t, YAML_STR_TAG) == 0)) {
        *is_str = true;
        return 0;
    }
    if ((kind == Y_SEQ && strcmp(t, YAML_SEQ_TAG) == 0) ||
        (kind == Y_MAP && strcmp(t, YAML_MAP_TAG) == 0))
        return 0;
    bool std = strncmp(t, "tag:yaml.org,2002:", 18) == 0;
    return perr(c, mark_pos(m), "YAML tags are not supported here (found '%s%s')", std ? "!!" : "",
                pshow(c, std ? t + 18 : t));
}

/* Count a node (or an alias's copy) against the limits. */
static int account(struct pctx *c, struct ytree *t, size_t nodes, size_t bytes, yaml_mark_t m)
{
    t->nodes += nodes;
    t->bytes += bytes;
    if (t->nodes > PIPELINE_MAX_NODES)
        return perr(c, mark_pos(m),
                    "the file is too large: more than %d YAML nodes (aliases count as copies "
                    "of what they name)",
                    PIPELINE_MAX_NODES);
    if (t->bytes > PIPELINE_MAX_EXPANDED)
        return perr(c, mark_pos(m),
                    "the file is too large: more than %d MiB of text (aliases count as copies "
                    "of what they name)",
                    PIPELINE_MAX_EXPANDED / (1024 * 1024));
    return 0;
}

static int build(struct pctx *c, const char *data, size_t len, struct ytree *t)
{
    yaml_parser_t p;
    yaml_event_t ev;
    struct ynode *stack[PIPELINE_MAX_DEPTH];
    size_t depth = 0;
    int docs = 0, r = 0;
    bool done = false;

    t->anchors = json_object();
    if (!yaml_parser_initialize(&p))
        return perr(c, (struct pos){1, 1}, "out of memory while reading YAML");
    yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
    while (!done && r == 0) {
        if (!yaml_parser_parse(&p, &ev)) {
            r = yaml_problem(c, &p, data, len);
            break;
        }
        struct ynode *parent = depth ? stack[depth - 1] : NULL;
        struct ynode *n = NULL;
        bool is_str = false;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                r = perr(c, mark_pos(ev.start_mark),
                         "only one YAML document is allowed in the file (this is a second)");
            break;
        case YAML_ALIAS_EVENT: {
            const char *name = (const char *)ev.data.alias.anchor;
            json_t *idx = json_object_get(t->anchors, name);
            if (!idx) {
                r = perr(c, mark_pos(ev.start_mark),
                         "the alias '*%s' names no anchor defined before it (or one whose node "
                         "is not complete: recursive structures are not allowed)",
                         pshow(c, name));
                break;
            }
            n = t->all[json_integer_value(idx)];
            r = account(c, t, n->nodes, n->bytes, ev.start_mark);
            break;
        }
        case YAML_SCALAR_EVENT:
            r = tag_check(c, ev.data.scalar.tag, Y_SCALAR, ev.start_mark, &is_str);
            if (r < 0)
                break;
            if (memchr(ev.data.scalar.value, '\0', ev.data.scalar.length)) {
                r = perr(c, mark_pos(ev.start_mark), "NUL characters are not allowed");
                break;
            }
            n = node_new(t, Y_SCALAR, ev.start_mark);
            n->str = xstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            n->len = ev.data.scalar.length;
            n->plain = ev.data.scalar.plain_implicit && !is_str;
            n->bytes = n->len;
            if (ev.data.scalar.anchor)
                json_object_set_new(t->anchors, (const char *)ev.data.scalar.anchor,
                                    json_integer((json_int_t)n->index));
            r = account(c, t, 1, n->len, ev.start_mark);
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            bool seq = ev.type == YAML_SEQUENCE_START_EVENT;
            const yaml_char_t *tag = seq ? ev.data.sequence_start.tag : ev.data.mapping_start.tag;
            const yaml_char_t *anchor =
                seq ? ev.data.sequence_start.anchor : ev.data.mapping_start.anchor;
            r = tag_check(c, tag, seq ? Y_SEQ : Y_MAP, ev.start_mark, &is_str);
            if (r == 0 && depth == PIPELINE_MAX_DEPTH)
                r = perr(c, mark_pos(ev.start_mark), "the YAML is nested more than %d levels deep",
                         PIPELINE_MAX_DEPTH);
            if (r == 0)
                r = account(c, t, 1, 0, ev.start_mark);
            if (r < 0)
                break;
            n = node_new(t, seq ? Y_SEQ : Y_MAP, ev.start_mark);
            if (anchor)
                n->anchor = xstrdup((const char *)anchor);
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
            struct ynode *done_node = stack[--depth];
            if (done_node->anchor) /* complete now: aliases may name it */
                json_object_set_new(t->anchors, done_node->anchor,
                                    json_integer((json_int_t)done_node->index));
            if (depth) {
                stack[depth - 1]->nodes += done_node->nodes;
                stack[depth - 1]->bytes += done_node->bytes;
            }
            break;
        }
        default:
            break;
        }
        if (n) {
            /* A new node or an alias: it belongs to the open collection, or
             * it is the document's root. */
            if (parent) {
                kid_add(parent, n);
                if (n->kind == Y_SCALAR || ev.type == YAML_ALIAS_EVENT) {
                    parent->nodes += n->nodes;
                    parent->bytes += n->bytes;
                }
            } else {
                t->root = n;
            }
            if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT)
                stack[depth++] = n;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return r;
}

/* ---- reading the tree ----------------------------------------------------- */

struct pair {
    struct ynode *k, *v;
};

struct pairs {
    struct pair *v;
    size_t n, cap;
};

static void pairs_release(struct pairs *ps)
{
    free(ps->v);
    ps->v = NULL;
    ps->n = ps->cap = 0;
}

static bool is_null(const struct ynode *n)
{
    return n->kind == Y_SCALAR && n->plain &&
           (n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
            strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0);
}

/* What a node is, for messages. */
static const char *what(struct pctx *c, const struct ynode *n)
{
    if (n->kind == Y_MAP)
        return "a mapping";
    if (n->kind == Y_SEQ)
        return "a list";
    if (is_null(n))
        return "nothing";
    const char *s = pshow(c, n->str);
    /* pshow's ring holds the copy; quote it in another slot. */
    char *q = c->shown[c->next_shown++ % 6];
    snprintf(q, sizeof(c->shown[0]), "'%s'", s);
    return q;
}

static bool is_scalar_value(const struct ynode *n)
{
    return n->kind == Y_SCALAR && !is_null(n);
}

/*
 * The key/value pairs of mapping m, with YAML merge keys ("<<: *defaults")
 * applied: keys written in m win over merged ones, earlier merges over later.
 * Keys must be non-empty strings and unique. where names the mapping in
 * messages ("job 'tests'"); jobs makes duplicates read as job names.
 */
static int map_pairs(struct pctx *c, struct ynode *m, const char *where, bool jobs,
                     struct pairs *out, int level)
{
    json_t *seen = json_object();
    struct pairs merged = {0};
    int r = 0;

    for (size_t i = 0; i + 1 < m->n && r == 0; i += 2) {
        struct ynode *k = m->kids[i], *v = m->kids[i + 1];
        if (k->kind != Y_SCALAR || k->len == 0 || (k->plain && is_null(k))) {
            r = perr(c, k->at, "keys must be non-empty strings (in %s)", where);
            break;
        }
        if (k->plain && strcmp(k->str, "<<") == 0) {
            /* A merge: a mapping, or a list of mappings (usually aliases). */
            struct ynode *one = v;
            size_t count = v->kind == Y_SEQ ? v->n : 1;
            if (level >= PIPELINE_MAX_DEPTH) {
                r = perr(c, k->at, "merge keys ('<<') are nested too deeply");
                break;
            }
            for (size_t e = 0; e < count && r == 0; e++) {
                if (v->kind == Y_SEQ)
                    one = v->kids[e];
                if (one->kind != Y_MAP) {
                    r = perr(c, one->at,
                             "a merge key ('<<') takes a mapping or a list of mappings (got %s)",
                             what(c, one));
                    break;
                }
                struct pairs sub = {0};
                r = map_pairs(c, one, where, jobs, &sub, level + 1);
                for (size_t s = 0; s < sub.n && r == 0; s++) {
                    if (merged.n == merged.cap) {
                        merged.cap = merged.cap ? merged.cap * 2 : 8;
                        merged.v = xrealloc(merged.v, merged.cap * sizeof(*merged.v));
                    }
                    merged.v[merged.n++] = sub.v[s];
                }
                pairs_release(&sub);
            }
            continue;
        }
        json_t *prev = json_object_get(seen, k->str);
        if (prev) {
            struct ynode *pk = out->v[json_integer_value(prev)].k;
            if (jobs)
                r = perr(c, k->at, "job '%s' is defined twice (first at line %d)", pshow(c, k->str),
                         pk->at.line);
            else
                r = perr(c, k->at, "key '%s' is given twice in %s (first at line %d)",
                         pshow(c, k->str), where, pk->at.line);
            break;
        }
        json_object_set_new(seen, k->str, json_integer((json_int_t)out->n));
        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 8;
            out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
        }
        out->v[out->n++] = (struct pair){k, v};
    }
    for (size_t s = 0; s < merged.n && r == 0; s++) {
        if (json_object_get(seen, merged.v[s].k->str))
            continue;
        json_object_set_new(seen, merged.v[s].k->str, json_integer((json_int_t)out->n));
        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 8;
            out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
        }
        out->v[out->n++] = merged.v[s];
    }
    pairs_release(&merged);
    json_decref(seen);
    if (r < 0)
        pairs_release(out);
    return r;
}

/* where says where, with its preposition: "in job 'tests'", "at the top level". */
static int unknown_key(struct pctx *c, struct ynode *k, const char *where, const char *const *valid,
                       const char *hint)
{
    bool near = nearest_key(k->str, valid) != NULL;
    return perr(c, k->at, "unknown key '%s' %s (%s)%s", pshow(c, k->str), where,
                key_hint(c, k->str, valid), hint && !near ? hint : "");
}

static int get_bool(struct pctx *c, struct ynode *v, const char *key, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    if (v->kind == Y_SCALAR && v->plain) {
        for (size_t i = 0; i < 3; i++) {
            if (strcmp(v->str, yes[i]) == 0) {
                *out = true;
                return 0;
            }
            if (strcmp(v->str, no[i]) == 0) {
                *out = false;
                return 0;
            }
        }
    }
    return perr(c, v->at, "'%s' must be true or false (got %s)", key, what(c, v));
}

static json_t *text(struct ynode *n)
{
    /* Input was checked to be UTF-8 and libyaml's escapes produce UTF-8. */
    json_t *s = json_stringn(n->str, n->len);
    return s ? s : json_string("");
}

/* A string or a list of strings; each non-empty. */
static int get_strings(struct pctx *c, struct pjob *j, struct ynode *v, const char *key,
                       const char *msg, bool allow_empty, json_t *into)
{
    if (is_scalar_value(v)) {
        if (!allow_empty && v->len == 0)
            return perr(c, v->at, "%s: '%s' must not be empty", j->who, key);
        json_array_append_new(into, text(v));
        return 0;
    }
    if (v->kind != Y_SEQ || v->n == 0)
        return perr(c, v->at, "%s: %s (got %s)", j->who, msg,
                    v->kind == Y_SEQ ? "an empty list" : what(c, v));
    for (size_t i = 0; i < v->n; i++) {
        struct ynode *e = v->kids[i];
        if (!is_scalar_value(e))
            return perr(c, e->at, "%s: %s (item %zu is %s)", j->who, msg, i + 1, what(c, e));
        if (!allow_empty && e->len == 0)
            return perr(c, e->at, "%s: item %zu of '%s' is empty", j->who, i + 1, key);
        json_array_append_new(into, text(e));
    }
    return 0;
}

static int get_seconds(struct pctx *c, struct pjob *j, struct ynode *v, const char *key,
                       int64_t *out)
{
    int r = is_scalar_value(v) ? parse_seconds(v->str, out) : -EINVAL;
    if (r == -ERANGE)
        return perr(c, v->at, "%s: '%s' is longer than the limit of %d seconds (7 days)", j->who,
                    key, PIPELINE_MAX_SECONDS);
    if (r < 0)
        return perr(c, v->at,
                    "%s: '%s' must be a non-negative number of seconds or a duration such as "
                    "'10m' or '1h30m' (got %s)",
                    j->who, key, what(c, v));
    return 0;
}

static int get_count(struct pctx *c, struct pjob *j, struct ynode *v)
{
    int64_t n = -1;
    if (v->kind == Y_SCALAR && v->plain && v->len > 0 && v->len <= 3 &&
        strspn(v->str, "0123456789") == v->len)
        n = strtol(v->str, NULL, 10);
    if (n < 0 || n > PIPELINE_MAX_RETRIES)
        return perr(c, v->at, "%s: the retry 'count' must be an integer from 0 to %d (got %s)",
                    j->who, PIPELINE_MAX_RETRIES, what(c, v));
    j->retry_count = n;
    return 0;
}

static int job_retry(struct pctx *c, struct pjob *j, struct ynode *v)
{
    static const char *const keys[] = {"count", "increment", NULL};
    if (v->kind == Y_SCALAR)
        return get_count(c, j, v);
    if (v->kind != Y_MAP)
        return perr(c, v->at,
                    "%s: 'retry' must be a mapping {count: N, increment: SECONDS} or a count "
                    "(got %s)",
                    j->who, what(c, v));
    struct pairs ps = {0};
    char *where = xasprintf("'retry' of %s", j->who);
    char *in = xasprintf("in %s", where);
    int r = map_pairs(c, v, where, false, &ps, 0);
    for (size_t i = 0; i < ps.n && r == 0; i++) {
        struct ynode *k = ps.v[i].k, *e = ps.v[i].v;
        if (strcmp(k->str, "count") == 0)
            r = get_count(c, j, e);
        else if (strcmp(k->str, "increment") == 0)
            r = get_seconds(c, j, e, "increment", &j->retry_increment);
        else
            r = unknown_key(c, k, in, keys, NULL);
    }
    free(in);
    free(where);
    pairs_release(&ps);
    return r;
}

/* env and labels: a mapping of names to scalars. */
static int job_strmap(struct pctx *c, struct pjob *j, struct ynode *v, bool env)
{
    const char *key = env ? "env" : "labels";
    if (v->kind != Y_MAP)
        return perr(c, v->at, "%s: '%s' must be a mapping of names to values (got %s)", j->who, key,
                    what(c, v));
    struct pairs ps = {0};
    char *where = xasprintf("'%s' of %s", key, j->who);
    int r = map_pairs(c, v, where, false, &ps, 0);
    for (size_t i = 0; i < ps.n && r == 0; i++) {
        struct ynode *k = ps.v[i].k, *e = ps.v[i].v;
        if (env && !env_name_ok(k->str)) {
            r = perr(c, k->at,
                     "%s: '%s' is not a valid environment variable name (letters, digits and "
                     "'_', not starting with a digit)",
                     j->who, pshow(c, k->str));
        } else if (is_null(e)) {
            r = perr(c, e->at, "%s: %s '%s' has no value (write %s: \"\" for an empty string)",
                     j->who, env ? "env" : "label", pshow(c, k->str), pshow(c, k->str));
        } else if (e->kind != Y_SCALAR) {
            r = perr(c, e->at, "%s: %s '%s' must be a string (got %s)", j->who,
                     env ? "env" : "label", pshow(c, k->str), what(c, e));
        } else {
            const char *problem = env ? NULL : label_problem(k->str, e->len, i + 1);
            if (problem)
                r = perr(c, k->at, "%s: label '%s': %s", j->who, pshow(c, k->str), problem);
            else
                json_object_set_new(env ? j->env : j->labels, k->str, text(e));
        }
    }
    free(where);
    pairs_release(&ps);
    return r;
}

static int job_matrix(struct pctx *c, struct pjob *j, struct ynode *key, struct ynode *v)
{
    j->matrix_at = key->at;
    if (v->kind != Y_MAP)
        return perr(c, v->at,
                    "%s: 'matrix' must be a mapping of environment variables to lists of values "
                    "(got %s)",
                    j->who, what(c, v));
    if (v->n == 0)
        return perr(c, v->at, "%s: the matrix is empty", j->who);
    struct pairs ps = {0};
    char *where = xasprintf("'matrix' of %s", j->who);
    int r = map_pairs(c, v, where, false, &ps, 0);
    if (r == 0 && ps.n == 0)
        r = perr(c, v->at, "%s: the matrix is empty", j->who);
    if (r == 0)
        j->matrix = xcalloc(ps.n, sizeof(*j->matrix));
    for (size_t i = 0; i < ps.n && r == 0; i++) {
        struct ynode *k = ps.v[i].k, *e = ps.v[i].v;
        if (!env_name_ok(k->str)) {
            r = perr(c, k->at,
                     "%s: '%s' is not a valid environment variable name (letters, digits and "
                     "'_', not starting with a digit)",
                     j->who, pshow(c, k->str));
            break;
        }
        if (e->kind != Y_SEQ || e->n == 0) {
            if (e->kind == Y_SEQ || is_null(e))
                r = perr(c, e->at, "%s: matrix '%s' has no values", j->who, pshow(c, k->str));
            else
                r = perr(c, e->at, "%s: matrix '%s' must be a list of values (got %s)", j->who,
                         pshow(c, k->str), what(c, e));
            break;
        }
        struct pmatrix_var *mv = &j->matrix[j->nmatrix++];
        mv->name = xstrdup(k->str);
        mv->at = k->at;
        mv->values = json_array();
        for (size_t x = 0; x < e->n && r == 0; x++) {
            struct ynode *val = e->kids[x];
            if (!is_scalar_value(val))
                r = perr(c, val->at,
                         "%s: the values of matrix '%s' must be strings (item %zu is "
                         "%s)",
                         j->who, pshow(c, k->str), x + 1, what(c, val));
            else
                json_array_append_new(mv->values, text(val));
        }
    }
    free(where);
    pairs_release(&ps);
    return r;
}

/* One pattern element (a character, '?', "[...]" or "\\x") against ch;
 * *next is set past it. A '[' without its ']' is an ordinary character. */
static bool glob_elem(const char *p, unsigned char ch, const char **next)
{
    if (*p == '?') {
        *next = p + 1;
        return true;
    }
    if (*p == '\\' && p[1]) {
        *next = p + 2;
        return (unsigned char)p[1] == ch;
    }
    if (*p == '[') {
        const char *q = p + 1;
        bool neg = *q == '!' || *q == '^';
        if (neg)
            q++;
        bool match = false;
        const char *first = q;
        while (*q && (*q != ']' || q == first)) {
            unsigned char lo = (unsigned char)*q, hi = lo;
            if (q[1] == '-' && q[2] && q[2] != ']') {
                hi = (unsigned char)q[2];
                q += 3;
            } else {
                q++;
            }
            if (ch >= lo && ch <= hi)
                match = true;
        }
        if (*q == ']') {
            *next = q + 1;
            return match != neg;
        }
    }
    *next = p + 1;
    return (unsigned char)*p == ch;
}

/*
 * fnmatch()-style globbing without flags ('*' matches '/' too), written out
 * because glibc's fnmatch backtracks exponentially on patterns with many
 * stars: this is the classic single-backtrack-point match, O(len(p) * len(s)).
 */
static bool glob_match(const char *p, const char *s)
{
    const char *star_p = NULL, *star_s = NULL;
    while (*s) {
        const char *next;
        if (*p == '*') {
            while (*p == '*')
                p++;
            if (!*p)
                return true;
            star_p = p;
            star_s = s;
            continue;
        }
        if (*p && glob_elem(p, (unsigned char)*s, &next)) {
            p = next;
            s++;
        } else if (star_p) {
            p = star_p;
            s = ++star_s;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return !*p;
}

static bool glob_any(json_t *globs, const char *branch)
{
    size_t i;
    json_t *g;
    json_array_foreach(globs, i, g) {
        if (glob_match(json_string_value(g), branch))
            return true;
    }
    return false;
}

static int job_branches(struct pctx *c, struct pjob *j, struct ynode *v, const char *branch)
{
    static const char *const keys[] = {"only", "except", NULL};
    if (v->kind != Y_MAP)
        return perr(c, v->at,
                    "%s: 'branches' must be a mapping with 'only' and/or 'except' (got %s)", j->who,
                    what(c, v));
    struct pairs ps = {0};
    char *where = xasprintf("'branches' of %s", j->who);
    int r = map_pairs(c, v, where, false, &ps, 0);
    for (size_t i = 0; i < ps.n && r == 0; i++) {
        struct ynode *k = ps.v[i].k, *e = ps.v[i].v;
        bool only = strcmp(k->str, "only") == 0;
        if (!only && strcmp(k->str, "except") != 0) {
            char *in = xasprintf("in %s", where);
            r = unknown_key(c, k, in, keys, NULL);
            free(in);
            break;
        }
        json_t *globs = json_array();
        char *msg = xasprintf("'%s' must be a branch pattern or a non-empty list of them", k->str);
        r = get_strings(c, j, e, k->str, msg, false, globs);
        if (r == 0 && branch) {
            bool match = glob_any(globs, branch);
            if (only ? !match : match)
                j->dropped = true;
        }
        free(msg);
        json_decref(globs);
    }
    free(where);
    pairs_release(&ps);
    return r;
}

static int job_needs(struct pctx *c, struct pjob *j, struct ynode *v)
{
    const char *msg = "'needs' must be a job name or a list of job names";
    if (is_scalar_value(v)) {
        pjob_need_add(j, v->str, v->len, v->at);
        return 0;
    }
    if (v->kind != Y_SEQ)
        return perr(c, v->at, "%s: %s (got %s)", j->who, msg, what(c, v));
    for (size_t i = 0; i < v->n; i++) {
        struct ynode *e = v->kids[i];
        if (!is_scalar_value(e))
            return perr(c, e->at, "%s: %s (item %zu is %s)", j->who, msg, i + 1, what(c, e));
        pjob_need_add(j, e->str, e->len, e->at);
    }
    return 0;
}

static int read_job(struct pctx *c, struct ynode *key, struct ynode *v, const char *branch,
                    struct pjobs *js)
{
    static const char *const keys[] = {"run",    "env",   "matrix",   "retry", "timeout",
                                       "labels", "needs", "branches", NULL};
    const char *problem = job_name_problem(key->str, key->len);
    if (problem)
        return perr(c, key->at, "job '%s': %s", pshow(c, key->str), problem);
    struct pjob *j = pjobs_add(js);
    j->name = xstrdup(key->str);
    j->who = xasprintf("job '%s'", pshow(c, j->name));
    j->at = key->at;
    if (is_null(v))
        return perr(c, v->at, "%s is empty: it needs at least 'run' (the commands to run)", j->who);
    if (v->kind != Y_MAP)
        return perr(c, v->at, "%s must be a mapping with at least 'run' (got %s)", j->who,
                    what(c, v));
    struct pairs ps = {0};
    struct ynode *run = NULL;
    int r = map_pairs(c, v, j->who, false, &ps, 0);
    for (size_t i = 0; i < ps.n && r == 0; i++) {
        struct ynode *k = ps.v[i].k, *e = ps.v[i].v;
        const char *name = k->str;
        bool optional_null =
            is_null(e) && (strcmp(name, "env") == 0 || strcmp(name, "labels") == 0 ||
                           strcmp(name, "needs") == 0 || strcmp(name, "branches") == 0);
        if (optional_null)
            continue;
        if (strcmp(name, "run") == 0) {
            run = k;
            r = get_strings(c, j, e, "run", "'run' must be a string or a list of strings", false,
                            j->commands);
        } else if (strcmp(name, "env") == 0) {
            r = job_strmap(c, j, e, true);
        } else if (strcmp(name, "labels") == 0) {
            r = job_strmap(c, j, e, false);
        } else if (strcmp(name, "matrix") == 0) {
            r = job_matrix(c, j, k, e);
        } else if (strcmp(name, "retry") == 0) {
            r = job_retry(c, j, e);
        } else if (strcmp(name, "timeout") == 0) {
            r = get_seconds(c, j, e, "timeout", &j->timeout);
        } else if (strcmp(name, "needs") == 0) {
            r = job_needs(c, j, e);
        } else if (strcmp(name, "branches") == 0) {
            r = job_branches(c, j, e, branch);
        } else {
            char *in = xasprintf("in %s", j->who);
            r = unknown_key(c, k, in, keys, NULL);
            free(in);
        }
    }
    pairs_release(&ps);
    if (r == 0 && !run)
        r = perr(c, key->at, "%s has no 'run' (the commands to run)", j->who);
    return r;
}

static int read_top(struct pctx *c, struct ynode *root, const char *branch, json_t **out)
{
    static const char *const keys[] = {"jobs", "cancel_superseded", "submodules", NULL};
    struct pairs ps = {0}, jps = {0};
    struct pjobs js = {0};
    struct ynode *jobs = NULL, *jobs_key = NULL;
    bool cancel = true, submodules = false;
    json_t *list = NULL;
    int r;

    if (!root || is_null(root))
        return perr(c, root ? root->at : (struct pos){1, 1},
                    "the file is empty: it needs a 'jobs:' mapping (see docs/pipelines.md)");
    if (root->kind != Y_MAP)
        return perr(c, root->at, "the top level must be a mapping with 'jobs:' (got %s)",
                    what(c, root));
    r = map_pairs(c, root, "the top level", false, &ps, 0);
    for (size_t i = 0; i < ps.n && r == 0; i++) {
        struct ynode *k = ps.v[i].k, *e = ps.v[i].v;
        if (strcmp(k->str, "jobs") == 0) {
            jobs = e;
            jobs_key = k;
        } else if (strcmp(k->str, "cancel_superseded") == 0) {
            r = get_bool(c, e, k->str, &cancel);
        } else if (strcmp(k->str, "submodules") == 0) {
            r = get_bool(c, e, k->str, &submodules);
        } else if (strncmp(k->str, "x-", 2) == 0) {
            /* Extension keys are ignored: a place for anchors ("x-defaults: &d"). */
        } else {
            /* A job written at the top level, as some CI systems do it? */
            bool looks_like_job = false;
            for (size_t x = 0; e->kind == Y_MAP && x + 1 < e->n; x += 2)
                if (e->kids[x]->kind == Y_SCALAR && strcmp(e->kids[x]->str, "run") == 0)
                    looks_like_job = true;
            r = unknown_key(c, k, "at the top level", keys,
                            looks_like_job ? " (jobs go under 'jobs:')" : NULL);
        }
    }
    if (r == 0 && !jobs)
        r = perr(c, root->at, "'jobs' is missing: the file must say which jobs to run");
    if (r == 0 && (is_null(jobs) || (jobs->kind == Y_MAP && jobs->n == 0)))
        r = perr(c, is_null(jobs) ? jobs_key->at : jobs->at, "'jobs' must list at least one job");
    if (r == 0 && jobs->kind != Y_MAP)
        r = perr(c, jobs->at, "'jobs' must be a mapping of job names to jobs (got %s)",
                 what(c, jobs));
    if (r == 0)
        r = map_pairs(c, jobs, "'jobs'", true, &jps, 0);
    for (size_t i = 0; i < jps.n && r == 0; i++)
        r = read_job(c, jps.v[i].k, jps.v[i].v, branch, &js);
    if (r == 0)
        r = pjobs_finish(c, &js, &list);
    if (r == 0)
        *out = json_pack("{s:o, s:b, s:b}", "jobs", list, "cancel_superseded", cancel, "submodules",
                         submodules);
    pjobs_release(&js);
    pairs_release(&jps);
    pairs_release(&ps);
    return r;
}

int pipeline_parse_yml(const char *data, size_t len, const char *filename, const char *branch,
                       int max_jobs, json_t **out, struct buf *err)
{
    struct pctx c = {.file = filename ? filename : ".yci.yml", .err = err};
    struct ytree t = {0};
    c.max_jobs = max_jobs > 0 ? (size_t)max_jobs : YCI_MAX_JOBS_PER_BUILD;
    int r;

    if (len > PIPELINE_MAX_YML)
        return perr(&c, (struct pos){1, 1}, "the file is larger than the limit of %d KiB",
                    PIPELINE_MAX_YML / 1024);
    size_t bad = utf8_prefix(data, len);
    if (bad < len)
        return perr(&c, offset_pos(data, len, bad),
                    "the file is not valid UTF-8 (byte 0x%02x): .yci.yml must be UTF-8 text",
                    (unsigned char)data[bad]);
    r = build(&c, data ? data : "", len, &t);
    if (r == 0)
        r = read_top(&c, t.root, branch, out);
    tree_release(&t);
    return r;
}
