/*
 * validate — the checks that involve several jobs, matrix expansion and the
 * normalised output (shared by both front ends), and the front end for the
 * JSON a .yci.py plan job prints.
 */
#include "pipeline/pipeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/limits.h"
#include "lib/xalloc.h"
#include "pipeline/internal.h"
#include "lib/banned.h"

/* ---- small helpers ------------------------------------------------------ */

int perr(struct pctx *c, struct pos at, const char *fmt, ...)
{
    if (!c->err)
        return -EINVAL;
    buf_reset(c->err);
    if (c->file && at.line > 0)
        buf_addf(c->err, "%s:%d:%d: ", c->file, at.line, at.col);
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(c->err, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

const char *pshow(struct pctx *c, const char *s)
{
    char *out = c->shown[c->next_shown++ % 6];
    const size_t room = sizeof(c->shown[0]) - 4; /* leave space for "..." */
    size_t n = strlen(s);
    bool cut = n > room;
    if (cut) {
        n = room;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--; /* do not split a UTF-8 sequence */
    }
    for (size_t i = 0; i < n; i++)
        out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    if (cut) {
        memcpy(out + n, "...", 4);
    } else {
        out[n] = '\0';
    }
    return out;
}

bool env_name_ok(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

const char *job_name_problem(const char *s, size_t len)
{
    if (len == 0)
        return "a job name must not be empty";
    if (len > PIPELINE_MAX_JOB_NAME)
        return "a job name must be at most " PSTR(PIPELINE_MAX_JOB_NAME) " bytes long";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return "a job name must not contain control characters";
    return NULL;
}

const char *label_problem(const char *key, size_t vlen, size_t count)
{
    if (count > YCI_MAX_LABELS)
        return "too many labels (at most " PSTR(YCI_MAX_LABELS) ")";
    size_t klen = strlen(key);
    if (klen == 0 || klen > YCI_MAX_LABEL_LEN)
        return "label names must be 1 to " PSTR(YCI_MAX_LABEL_LEN) " bytes long";
    if (vlen > YCI_MAX_LABEL_LEN)
        return "label values must be at most " PSTR(YCI_MAX_LABEL_LEN) " bytes long";
    return NULL;
}

int parse_seconds(const char *s, int64_t *out)
{
    int64_t total = 0;
    const char *p = s;
    bool bare = *s && strspn(s, "0123456789") == strlen(s);
    if (!*p)
        return -EINVAL;
    while (*p) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        int64_t n = 0, unit = 1;
        for (; *p >= '0' && *p <= '9'; p++) {
            n = n * 10 + (*p - '0');
            if (n > PIPELINE_MAX_SECONDS)
                return -ERANGE;
        }
        if (!bare) {
            const char *units = "smhd";
            const int64_t mult[] = {1, 60, 3600, 86400};
            const char *u = *p ? strchr(units, *p) : NULL;
            if (!u)
                return -EINVAL; /* "1h30" or "5x" */
            unit = mult[u - units];
            p++;
        }
        total += n * unit;
        if (total > PIPELINE_MAX_SECONDS)
            return -ERANGE;
    }
    *out = total;
    return 0;
}

/* Edit distance with adjacent transpositions (optimal string alignment),
 * for keys of at most 32 bytes. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t d[33][33];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

const char *nearest_key(const char *key, const char *const *valid)
{
    /* Words other CI systems use for our keys. */
    static const char *const synonyms[][2] = {
        {"script", "run"},         {"steps", "run"},       {"command", "run"},
        {"commands", "run"},       {"cmd", "run"},         {"environment", "env"},
        {"variables", "env"},      {"vars", "env"},        {"depends_on", "needs"},
        {"dependencies", "needs"}, {"requires", "needs"},  {"tags", "labels"},
        {"runs-on", "labels"},     {"retries", "retry"},   {"branch", "branches"},
        {"only", "branches"},      {"except", "branches"}, {"timeout_seconds", "timeout"},
        {"run", "commands"},       {"script", "commands"},
    };
    for (size_t i = 0; i < sizeof(synonyms) / sizeof(synonyms[0]); i++) {
        if (strcmp(key, synonyms[i][0]) != 0)
            continue;
        for (size_t k = 0; valid[k]; k++)
            if (strcmp(valid[k], synonyms[i][1]) == 0)
                return valid[k];
    }
    size_t klen = strlen(key);
    if (klen < 3 || klen > 32)
        return NULL;
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t k = 0; valid[k]; k++) {
        if (strlen(valid[k]) > 32)
            continue;
        size_t d = edit_distance(key, valid[k]);
        if (d < best_d) {
            best_d = d;
            best = valid[k];
        }
    }
    /* Close enough to be a typo: at most a third of the key, and at least 1
     * (so "tiemout" -> "timeout", "evn" -> "env", but not "foo" -> "run"). */
    size_t allowed = klen / 3 > 1 ? klen / 3 : 1;
    if (allowed > 3)
        allowed = 3;
    return best && best_d <= allowed ? best : NULL;
}

const char *key_hint(struct pctx *c, const char *key, const char *const *valid)
{
    char *out = c->shown[c->next_shown++ % 6];
    const char *near = nearest_key(key, valid);
    if (near) {
        snprintf(out, sizeof(c->shown[0]), "did you mean '%s'?", near);
        return out;
    }
    size_t n = (size_t)snprintf(out, sizeof(c->shown[0]), "valid keys:");
    for (size_t i = 0; valid[i] && n < sizeof(c->shown[0]); i++)
        n += (size_t)snprintf(out + n, sizeof(c->shown[0]) - n, "%s %s", i ? "," : "", valid[i]);
    return out;
}

/* ---- the job list ------------------------------------------------------- */

struct pjob *pjobs_add(struct pjobs *js)
{
    if (js->n == js->cap) {
        js->cap = js->cap ? js->cap * 2 : 8;
        js->v = xrealloc(js->v, js->cap * sizeof(*js->v));
    }
    struct pjob *j = &js->v[js->n++];
    memset(j, 0, sizeof(*j));
    j->commands = json_array();
    j->env = json_object();
    j->labels = json_object();
    return j;
}

void pjob_need_add(struct pjob *j, const char *name, size_t len, struct pos at)
{
    if ((j->nneeds & (j->nneeds - 1)) == 0) { /* 0, 1, 2, 4...: grow to double */
        size_t cap = j->nneeds ? j->nneeds * 2 : 1;
        j->needs = xrealloc(j->needs, cap * sizeof(*j->needs));
        j->needs_at = xrealloc(j->needs_at, cap * sizeof(*j->needs_at));
    }
    j->needs[j->nneeds] = xstrndup(name, len);
    j->needs_at[j->nneeds] = at;
    j->nneeds++;
}

void pjobs_release(struct pjobs *js)
{
    for (size_t i = 0; i < js->n; i++) {
        struct pjob *j = &js->v[i];
        free(j->name);
        free(j->who);
        json_decref(j->commands);
        json_decref(j->env);
        json_decref(j->labels);
        for (size_t k = 0; k < j->nneeds; k++)
            free(j->needs[k]);
        free(j->needs);
        free(j->needs_at);
        for (size_t k = 0; k < j->nmatrix; k++) {
            free(j->matrix[k].name);
            json_decref(j->matrix[k].values);
        }
        free(j->matrix);
        free(j->deps);
        free(j->deps_at);
    }
    free(js->v);
    js->v = NULL;
    js->n = js->cap = 0;
}

/* needs → indexes into the list (deps), with unknown names reported. */
static int resolve_needs(struct pctx *c, struct pjobs *js, json_t *index)
{
    size_t *stamp = xcalloc(js->n ? js->n : 1, sizeof(*stamp));
    const char **names = xcalloc(js->n + 1, sizeof(*names));
    int r = 0;
    for (size_t i = 0; i < js->n; i++)
        names[i] = js->v[i].name;
    for (size_t i = 0; i < js->n && r == 0; i++) {
        struct pjob *j = &js->v[i];
        j->deps = xcalloc(j->nneeds ? j->nneeds : 1, sizeof(*j->deps));
        j->deps_at = xcalloc(j->nneeds ? j->nneeds : 1, sizeof(*j->deps_at));
        for (size_t k = 0; k < j->nneeds; k++) {
            json_t *idx = json_object_get(index, j->needs[k]);
            if (!idx) {
                const char *near = nearest_key(j->needs[k], names);
                r = perr(c, j->needs_at[k], "%s: 'needs' names '%s', which is not a job%s%s%s",
                         j->who, pshow(c, j->needs[k]), near ? " (did you mean '" : "",
                         near ? pshow(c, near) : "", near ? "'?)" : "");
                break;
            }
            size_t d = (size_t)json_integer_value(idx);
            if (stamp[d] == i + 1)
                continue; /* named twice */
            stamp[d] = i + 1;
            j->deps_at[j->ndeps] = j->needs_at[k];
            j->deps[j->ndeps++] = d;
        }
    }
    free(names);
    free(stamp);
    return r;
}

/* A cycle in needs is an error naming it: "a -> b -> a". Iterative DFS. */
static int find_cycles(struct pctx *c, struct pjobs *js)
{
    enum { WHITE, GREY, BLACK };
    size_t n = js->n;
    unsigned char *color = xcalloc(n ? n : 1, 1);
    size_t *stack = xcalloc(n ? n : 1, sizeof(*stack));
    size_t *next = xcalloc(n ? n : 1, sizeof(*next));
    int r = 0;
    for (size_t root = 0; root < n && r == 0; root++) {
        if (color[root] != WHITE)
            continue;
        size_t top = 0;
        stack[top++] = root;
        color[root] = GREY;
        next[root] = 0;
        while (top > 0 && r == 0) {
            size_t x = stack[top - 1];
            struct pjob *j = &js->v[x];
            if (next[x] == j->ndeps) {
                color[x] = BLACK;
                top--;
                continue;
            }
            size_t k = next[x]++;
            size_t d = j->deps[k];
            if (color[d] == WHITE) {
                color[d] = GREY;
                next[d] = 0;
                stack[top++] = d;
            } else if (color[d] == GREY) {
                struct buf path = BUF_INIT;
                size_t from = top - 1;
                while (stack[from] != d)
                    from--;
                for (size_t s = from; s < top; s++) {
                    if (s - from >= 10) {
                        buf_adds(&path, "... -> ");
                        break;
                    }
                    buf_addf(&path, "%s -> ", pshow(c, js->v[stack[s]].name));
                }
                buf_adds(&path, pshow(c, js->v[d].name));
                r = perr(c, j->deps_at[k], "%s: 'needs' makes a cycle: %s", j->who, path.data);
                buf_release(&path);
            }
        }
    }
    free(next);
    free(stack);
    free(color);
    return r;
}

static size_t sat_add(size_t a, size_t b)
{
    size_t r;
    return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

static size_t sat_mul(size_t a, size_t b)
{
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

static size_t strings_bytes(json_t *v)
{
    size_t n = 0, i;
    const char *k;
    json_t *e;
    /* Each string also costs a jansson value and an allocation or two. */
    if (json_is_string(v))
        return json_string_length(v) + 32;
    if (json_is_array(v)) {
        json_array_foreach(v, i, e) {
            n += strings_bytes(e);
        }
    } else if (json_is_object(v)) {
        json_object_foreach(v, k, e) {
            n += strlen(k) + 32 + strings_bytes(e);
        }
    }
    return n;
}

/* What execve() would refuse (E2BIG, "Argument list too long" on the
 * runner, naming nothing): a command or a NAME=value over YCI_MAX_ARG_LEN,
 * or an environment over YCI_MAX_JOB_ENV. */
static int check_exec_sizes(struct pctx *c, const struct pjob *j)
{
    size_t i, total = 0;
    json_t *e;
    const char *k;
    json_array_foreach(j->commands, i, e) {
        if (json_string_length(e) > YCI_MAX_ARG_LEN)
            return perr(c, j->at,
                        "%s: command %zu is %zu bytes long, more than a program can be given "
                        "(%d): put it in a script",
                        j->who, i + 1, json_string_length(e), YCI_MAX_ARG_LEN);
    }
    json_object_foreach(j->env, k, e) {
        size_t n = strlen(k) + 1 + json_string_length(e);
        if (n > YCI_MAX_ARG_LEN)
            return perr(c, j->at,
                        "%s: env '%s' is %zu bytes long with its name, more than one "
                        "environment variable can hold (%d)",
                        j->who, pshow(c, k), n, YCI_MAX_ARG_LEN);
        total += n + 1;
    }
    for (size_t m = 0; m < j->nmatrix; m++) {
        size_t longest = 0;
        json_array_foreach(j->matrix[m].values, i, e) {
            size_t n = strlen(j->matrix[m].name) + 1 + json_string_length(e);
            if (n > YCI_MAX_ARG_LEN)
                return perr(c, j->matrix_at,
                            "%s: matrix value %zu of '%s' is %zu bytes long with its name, more "
                            "than one environment variable can hold (%d)",
                            j->who, i + 1, pshow(c, j->matrix[m].name), n, YCI_MAX_ARG_LEN);
            longest = n > longest ? n : longest;
        }
        total += longest + 1;
    }
    if (total > YCI_MAX_JOB_ENV)
        return perr(c, j->at, "%s: its environment takes %zu bytes, more than the %d a job can have",
                    j->who, total, YCI_MAX_JOB_ENV);
    return 0;
}

/* Count the jobs after expansion without building them: fail before a
 * 100x100x100 matrix takes any memory. */
static int check_counts(struct pctx *c, struct pjobs *js)
{
    size_t total = 0, bytes = 0;
    for (size_t i = 0; i < js->n; i++) {
        struct pjob *j = &js->v[i];
        if (j->dropped)
            continue;
        int r = check_exec_sizes(c, j);
        if (r < 0)
            return r;
        size_t cells = 1, base = strlen(j->name) + 64;
        for (size_t k = 0; k < j->nmatrix; k++) {
            cells = sat_mul(cells, json_array_size(j->matrix[k].values));
            base += strlen(j->matrix[k].name) + 32 + strings_bytes(j->matrix[k].values);
        }
        j->ncells = cells;
        if (cells > c->max_jobs || total + cells > c->max_jobs) {
            struct pos at = j->nmatrix ? j->matrix_at : j->at;
            if (cells > c->max_jobs)
                return perr(c, at,
                            "%s: too many jobs: its matrix makes %s%zu jobs, more than "
                            "the limit of %zu jobs in a build",
                            j->who, cells == SIZE_MAX ? "more than " : "", cells, c->max_jobs);
            return perr(c, at,
                        "%s: too many jobs: the build would have %zu jobs, more than the "
                        "limit of %zu",
                        j->who, total + cells, c->max_jobs);
        }
        total += cells;
        base += strings_bytes(j->commands) + strings_bytes(j->env) + strings_bytes(j->labels);
        bytes = sat_add(bytes, sat_mul(cells, base));
    }
    /* Each cell's needs lists every cell of every job it needs. */
    for (size_t i = 0; i < js->n; i++) {
        struct pjob *j = &js->v[i];
        if (j->dropped)
            continue;
        size_t per_cell = 0;
        for (size_t k = 0; k < j->ndeps; k++) {
            struct pjob *d = &js->v[j->deps[k]];
            if (!d->dropped)
                per_cell = sat_add(per_cell, sat_mul(d->ncells, PIPELINE_MAX_JOB_NAME + 32));
        }
        bytes = sat_add(bytes, sat_mul(per_cell, j->ncells));
    }
    if (bytes > PIPELINE_MAX_OUTPUT)
        return perr(c, (struct pos){0, 0},
                    "the jobs are too large: expanded, their commands, environments, labels and "
                    "needs would take more than %d MiB",
                    PIPELINE_MAX_OUTPUT / (1024 * 1024));
    return 0;
}

/* Build the cells of job j into cells (names checked against taken). */
static int expand(struct pctx *c, struct pjob *j, json_t *cells, json_t *taken)
{
    size_t *odo = xcalloc(j->nmatrix ? j->nmatrix : 1, sizeof(*odo));
    struct buf name = BUF_INIT;
    int r = 0;
    j->first_cell = json_array_size(cells);
    for (size_t cell = 0; cell < j->ncells && r == 0; cell++) {
        json_t *env = json_deep_copy(j->env);
        buf_reset(&name);
        buf_adds(&name, j->name);
        for (size_t k = 0; k < j->nmatrix; k++) {
            json_t *v = json_array_get(j->matrix[k].values, odo[k]);
            buf_adds(&name, k == 0 ? " (" : ", ");
            buf_add(&name, json_string_value(v), json_string_length(v));
            json_object_set(env, j->matrix[k].name, v);
        }
        if (j->nmatrix)
            buf_addch(&name, ')');
        struct pos at = j->nmatrix ? j->matrix_at : j->at;
        const char *problem = job_name_problem(name.data, name.len);
        if (problem) {
            r = perr(c, at, "%s: matrix cell '%s': %s", j->who, pshow(c, name.data), problem);
        } else if (json_object_get(taken, name.data)) {
            r = perr(c, at, "%s: the job name '%s' is used twice%s", j->who, pshow(c, name.data),
                     j->nmatrix ? " (matrix cells are named 'JOB (VALUE, ...)')" : "");
        } else {
            json_object_set_new(taken, name.data, json_true());
            json_t *cell = json_pack(
                "{s:s%, s:o, s:o, s:o, s:I, s:{s:I, s:I}, s:[]}", "name", name.data, name.len,
                "commands", json_deep_copy(j->commands), "env", env, "labels",
                json_deep_copy(j->labels), "timeout", (json_int_t)j->timeout, "retry", "count",
                (json_int_t)j->retry_count, "increment", (json_int_t)j->retry_increment, "needs");
            env = NULL; /* json_pack took it, even on failure */
            /* Only fails on a string that is not UTF-8, which the front ends exclude. */
            if (!cell || json_array_append_new(cells, cell) < 0)
                r = perr(c, at, "%s: matrix cell '%s' could not be built (not UTF-8?)", j->who,
                         pshow(c, name.data));
        }
        json_decref(env);
        /* Next cell: the last matrix key varies fastest. */
        for (size_t k = j->nmatrix; k-- > 0;) {
            if (++odo[k] < json_array_size(j->matrix[k].values))
                break;
            odo[k] = 0;
        }
    }
    buf_release(&name);
    free(odo);
    return r;
}

int pjobs_finish(struct pctx *c, struct pjobs *js, json_t **out)
{
    json_t *index = json_object();
    json_t *taken = json_object();
    json_t *cells = json_array();
    int r = 0;

    for (size_t i = 0; i < js->n && r == 0; i++) {
        struct pjob *j = &js->v[i];
        json_t *prev = json_object_get(index, j->name);
        if (prev)
            r = perr(c, j->at, "%s: the name is used twice (also job %lld)", j->who,
                     (long long)json_integer_value(prev) + 1);
        else
            json_object_set_new(index, j->name, json_integer((json_int_t)i));
    }
    if (r == 0)
        r = resolve_needs(c, js, index);
    if (r == 0)
        r = find_cycles(c, js);
    if (r == 0)
        r = check_counts(c, js);
    for (size_t i = 0; i < js->n && r == 0; i++)
        if (!js->v[i].dropped)
            r = expand(c, &js->v[i], cells, taken);
    for (size_t i = 0; i < js->n && r == 0; i++) {
        struct pjob *j = &js->v[i];
        if (j->dropped)
            continue;
        /* A needed job that a branch filter dropped is not waited for. */
        json_t *needs = json_array();
        for (size_t k = 0; k < j->ndeps; k++) {
            struct pjob *d = &js->v[j->deps[k]];
            if (d->dropped)
                continue;
            for (size_t e = 0; e < d->ncells; e++)
                json_array_append(
                    needs, json_object_get(json_array_get(cells, d->first_cell + e), "name"));
        }
        for (size_t e = 0; e < j->ncells; e++)
            json_object_set_new(json_array_get(cells, j->first_cell + e), "needs",
                                json_deep_copy(needs));
        json_decref(needs);
    }
    if (r == 0)
        *out = json_incref(cells);
    json_decref(cells);
    json_decref(taken);
    json_decref(index);
    return r;
}

/* ---- the plan's JSON ---------------------------------------------------- */

static const char *json_type_name(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

static bool json_clean_string(json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static const struct pos NOWHERE = {0, 0};

static int json_commands(struct pctx *c, struct pjob *j, json_t *v)
{
    const char *msg = "'commands' must be a string or a non-empty list of strings";
    if (json_is_string(v)) {
        if (!json_clean_string(v) || json_string_length(v) == 0)
            return perr(c, NOWHERE, "%s: %s (not empty, without NUL characters)", j->who, msg);
        json_array_append(j->commands, v);
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return perr(c, NOWHERE, "%s: %s (got %s)", j->who, msg, json_type_name(v));
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e))
            return perr(c, NOWHERE, "%s: %s (command %zu is %s)", j->who, msg, i + 1,
                        json_type_name(e));
        if (!json_clean_string(e) || json_string_length(e) == 0)
            return perr(c, NOWHERE, "%s: command %zu is empty or contains a NUL character", j->who,
                        i + 1);
        json_array_append(j->commands, e);
    }
    return 0;
}

static int json_strmap(struct pctx *c, struct pjob *j, json_t *v, const char *what, bool env)
{
    if (!json_is_object(v))
        return perr(c, NOWHERE, "%s: '%s' must be an object of strings (got %s)", j->who, what,
                    json_type_name(v));
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) {
        const char *item = env ? "env" : "label";
        if (!json_is_string(e))
            return perr(c, NOWHERE, "%s: %s '%s' must be a string (got %s)", j->who, item,
                        pshow(c, k), json_type_name(e));
        if (!json_clean_string(e))
            return perr(c, NOWHERE, "%s: %s '%s' contains a NUL character", j->who, item,
                        pshow(c, k));
        if (env && !env_name_ok(k))
            return perr(c, NOWHERE,
                        "%s: '%s' is not a valid environment variable name "
                        "(letters, digits and '_', not starting with a digit)",
                        j->who, pshow(c, k));
        const char *problem =
            env ? NULL : label_problem(k, json_string_length(e), json_object_size(v));
        if (problem)
            return perr(c, NOWHERE, "%s: label '%s': %s", j->who, pshow(c, k), problem);
        json_object_set(env ? j->env : j->labels, k, e);
    }
    return 0;
}

/* timeout and increment: an integer or a duration string. */
static int json_seconds(struct pctx *c, struct pjob *j, json_t *v, const char *what, int64_t *out)
{
    int r = -EINVAL;
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        r = n < 0 ? -EINVAL : n > PIPELINE_MAX_SECONDS ? -ERANGE : 0;
        if (r == 0)
            *out = n;
    } else if (json_clean_string(v)) {
        r = parse_seconds(json_string_value(v), out);
    }
    if (r == -ERANGE)
        return perr(c, NOWHERE, "%s: %s is longer than the limit of %d seconds (7 days)", j->who,
                    what, PIPELINE_MAX_SECONDS);
    if (r < 0)
        return perr(c, NOWHERE,
                    "%s: %s must be a non-negative number of seconds or a duration such as "
                    "'10m' or '1h30m'",
                    j->who, what);
    return 0;
}

static int json_retry_count(struct pctx *c, struct pjob *j, json_t *v)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > PIPELINE_MAX_RETRIES)
        return perr(c, NOWHERE, "%s: the retry count must be an integer from 0 to %d", j->who,
                    PIPELINE_MAX_RETRIES);
    j->retry_count = json_integer_value(v);
    return 0;
}

static int json_retry(struct pctx *c, struct pjob *j, json_t *v)
{
    static const char *const keys[] = {"count", "increment", NULL};
    if (json_is_integer(v))
        return json_retry_count(c, j, v);
    if (!json_is_object(v))
        return perr(c, NOWHERE,
                    "%s: 'retry' must be an object {\"count\": N, \"increment\": SECONDS} or a "
                    "count (got %s)",
                    j->who, json_type_name(v));
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) {
        int r;
        if (json_is_null(e))
            continue;
        if (strcmp(k, "count") == 0) {
            r = json_retry_count(c, j, e);
        } else if (strcmp(k, "increment") == 0) {
            r = json_seconds(c, j, e, "the retry increment", &j->retry_increment);
        } else {
            r = perr(c, NOWHERE, "%s: unknown key '%s' in 'retry' (%s)", j->who, pshow(c, k),
                     key_hint(c, k, keys));
        }
        if (r < 0)
            return r;
    }
    return 0;
}

static int json_needs(struct pctx *c, struct pjob *j, json_t *v)
{
    if (json_is_string(v)) {
        pjob_need_add(j, json_string_value(v), strlen(json_string_value(v)), NOWHERE);
        return 0;
    }
    if (!json_is_array(v))
        return perr(c, NOWHERE, "%s: 'needs' must be a job name or a list of job names (got %s)",
                    j->who, json_type_name(v));
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e))
            return perr(c, NOWHERE,
                        "%s: 'needs' must be a job name or a list of job names "
                        "(item %zu is %s)",
                        j->who, i + 1, json_type_name(e));
        pjob_need_add(j, json_string_value(e), strlen(json_string_value(e)), NOWHERE);
    }
    return 0;
}

static int json_job(struct pctx *c, struct pjobs *js, size_t i, json_t *v)
{
    static const char *const keys[] = {"name",    "commands", "env",   "labels",
                                       "timeout", "retry",    "needs", NULL};
    if (!json_is_object(v))
        return perr(c, NOWHERE, "job %zu: a job must be an object (got %s)", i + 1,
                    json_type_name(v));
    json_t *name = json_object_get(v, "name");
    if (!json_is_string(name))
        return perr(c, NOWHERE, "job %zu: 'name' must be a string (got %s)", i + 1,
                    name ? json_type_name(name) : "nothing");
    const char *problem = job_name_problem(json_string_value(name), json_string_length(name));
    if (problem)
        return perr(c, NOWHERE, "job %zu: %s", i + 1, problem);
    struct pjob *j = pjobs_add(js);
    j->name = xstrdup(json_string_value(name));
    j->who = xasprintf("job %zu '%s'", i + 1, pshow(c, j->name));
    if (!json_object_get(v, "commands"))
        return perr(c, NOWHERE, "%s: 'commands' is missing (what should the job run?)", j->who);

    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) {
        int r = 0;
        if (strcmp(k, "name") == 0)
            continue;
        if (json_is_null(e) && strcmp(k, "commands") != 0)
            continue;
        if (strcmp(k, "commands") == 0) {
            r = json_commands(c, j, e);
        } else if (strcmp(k, "env") == 0) {
            r = json_strmap(c, j, e, "env", true);
        } else if (strcmp(k, "labels") == 0) {
            r = json_strmap(c, j, e, "labels", false);
        } else if (strcmp(k, "timeout") == 0) {
            r = json_seconds(c, j, e, "'timeout'", &j->timeout);
        } else if (strcmp(k, "retry") == 0) {
            r = json_retry(c, j, e);
        } else if (strcmp(k, "needs") == 0) {
            r = json_needs(c, j, e);
        } else {
            r = perr(c, NOWHERE, "%s: unknown key '%s' (%s)", j->who, pshow(c, k),
                     key_hint(c, k, keys));
        }
        if (r < 0)
            return r;
    }
    return 0;
}

int pipeline_validate_jobs(json_t *jobs, int max_jobs, json_t **out, struct buf *err)
{
    struct pctx c = {.file = NULL, .err = err};
    c.max_jobs = max_jobs > 0 ? (size_t)max_jobs : YCI_MAX_JOBS_PER_BUILD;
    if (!json_is_array(jobs))
        return perr(&c, NOWHERE, "the plan's jobs must be a JSON array (got %s)",
                    jobs ? json_type_name(jobs) : "nothing");
    if (json_array_size(jobs) > c.max_jobs)
        return perr(&c, NOWHERE, "too many jobs: the plan gave %zu, more than the limit of %zu",
                    json_array_size(jobs), c.max_jobs);
    struct pjobs js = {0};
    int r = 0;
    for (size_t i = 0; i < json_array_size(jobs) && r == 0; i++)
        r = json_job(&c, &js, i, json_array_get(jobs, i));
    json_t *res = NULL;
    if (r == 0)
        r = pjobs_finish(&c, &js, &res);
    if (r == 0)
        *out = res;
    pjobs_release(&js);
    return r;
}
