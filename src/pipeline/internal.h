/*
 * pipeline internals — the job model both front ends fill in.
 *
 * yml.c turns a .yci.yml into a list of struct pjob (one per job as written,
 * matrix not yet expanded, branch filters applied by marking jobs dropped);
 * validate.c does the same for a plan's JSON. pjobs_finish() then checks what
 * involves several jobs (needs, cycles, the job limit, names after expansion)
 * and builds the normalised JSON. Nothing here is visible outside src/pipeline.
 */
#ifndef YCI_PIPELINE_INTERNAL_H
#define YCI_PIPELINE_INTERNAL_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* A number macro as a string literal, for messages. */
#define PSTR_(x) #x
#define PSTR(x) PSTR_(x)

/* A place in the .yci.yml, 1-based; line 0 means "no place" (JSON input). */
struct pos {
    int line, col;
};

/* Where messages go, and the limits of this call. */
struct pctx {
    const char *file; /* NULL for JSON input: messages get no FILE:L:C prefix */
    struct buf *err;
    size_t max_jobs;
    char shown[6][96]; /* pshow()'s ring of printable copies */
    unsigned next_shown;
};

/* Set the error to "FILE:L:C: message" (just "message" when c->file is NULL
 * or at.line is 0). Always returns -EINVAL, so callers `return perr(...)`. */
int perr(struct pctx *c, struct pos at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A printable, truncated copy of s for messages (control characters become
 * '?', long strings end in "..."). Valid until six more calls. */
const char *pshow(struct pctx *c, const char *s);

struct pmatrix_var {
    char *name;
    struct pos at;
    json_t *values; /* array of strings, non-empty */
};

struct pjob {
    char *name;
    char *who; /* "job 'tests'" (YAML) or "job 2 'tests'" (JSON), for messages */
    struct pos at;
    json_t *commands; /* array of strings */
    json_t *env;      /* object of strings */
    json_t *labels;   /* object of strings */
    int64_t timeout, retry_count, retry_increment;
    char **needs; /* names as written */
    struct pos *needs_at;
    size_t nneeds;
    struct pmatrix_var *matrix;
    size_t nmatrix;
    struct pos matrix_at;
    bool dropped; /* excluded by a branch filter */
    /* Filled in by pjobs_finish(). */
    size_t *deps; /* indexes of the jobs named by needs, without repeats */
    struct pos *deps_at;
    size_t ndeps;
    size_t first_cell, ncells;
};

struct pjobs {
    struct pjob *v;
    size_t n, cap;
};

/* A new zeroed job at the end of the list (with empty commands/env/labels). */
struct pjob *pjobs_add(struct pjobs *js);
void pjobs_release(struct pjobs *js);
void pjob_need_add(struct pjob *j, const char *name, size_t len, struct pos at);

/* Check the jobs together and build the normalised array into *out. */
int pjobs_finish(struct pctx *c, struct pjobs *js, json_t **out);

/* [A-Za-z_][A-Za-z0-9_]* */
bool env_name_ok(const char *s);
/* A job name: 1..PIPELINE_MAX_JOB_NAME bytes, no control characters. NULL if
 * fine, else what is wrong. */
const char *job_name_problem(const char *s, size_t len);
/* Seconds: "600", or a duration of <number><unit> parts, units s, m, h, d
 * ("90s", "10m", "1h30m"). 0, -EINVAL (not a duration) or -ERANGE (more
 * than PIPELINE_MAX_SECONDS). */
int parse_seconds(const char *s, int64_t *out);
/* The valid key nearest to key by edit distance, or a known synonym's key
 * ("script" -> "run"), or NULL when nothing is close. valid ends with NULL. */
const char *nearest_key(const char *key, const char *const *valid);
/* "did you mean 'timeout'?" or "valid keys: a, b, c", for an unknown key
 * (in pshow()'s ring). */
const char *key_hint(struct pctx *c, const char *key, const char *const *valid);
/* Labels: at most YCI_MAX_LABELS, keys 1..YCI_MAX_LABEL_LEN, values at most
 * YCI_MAX_LABEL_LEN. NULL if fine, else what is wrong. */
const char *label_problem(const char *key, size_t vlen, size_t count);

#endif
