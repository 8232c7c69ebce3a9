#include "cli/common.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/help.h"
#include "lib/util.h"
#include "lib/xalloc.h"
#include "lib/banned.h"

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "yci %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'yci %s --help'.\n", cmd);
    return 2;
}

void cli_getopt_reset(void)
{
    optind = 0; /* 0, not 1: glibc then also resets its internal state */
    opterr = 0;
}

int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
    char opts[64];
    snprintf(opts, sizeof(opts), ":%s", shortopts);
    int c = getopt_long(argc, argv, opts, longopts, NULL);
    if (c == '?') {
        const char *arg = argv[optind - 1];
        if (strncmp(arg, "--", 2) == 0 && optopt != 0)
            cli_usage(cmd, "option '%.*s' takes no value", (int)strcspn(arg, "="), arg);
        else if (strncmp(arg, "--", 2) == 0 || optopt <= 0 || optopt >= 256)
            cli_usage(cmd, "unknown option '%s'", arg);
        else
            cli_usage(cmd, "unknown option '-%c'", optopt);
        return '?';
    }
    if (c == ':') {
        const char *arg = argv[optind - 1];
        if (optopt > 0 && optopt < 256 && strncmp(arg, "--", 2) != 0)
            cli_usage(cmd, "option '-%c' needs a value", optopt);
        else
            cli_usage(cmd, "option '%s' needs a value", arg);
        return '?';
    }
    if (c == 'h')
        cli_help_print(cmd, stdout);
    return c;
}

int cli_parse_id(const char *cmd, const char *what, const char *s, int64_t *out)
{
    if (parse_int64(s, 1, INT64_MAX, out) < 0)
        return cli_usage(cmd, "invalid %s '%s' (a positive number)", what, s);
    return 0;
}

char *cli_absolute_path(const char *path)
{
    if (path[0] == '/')
        return xstrdup(path);
    char *real = realpath(path, NULL);
    if (real)
        return real;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return xstrdup(path);
    return xasprintf("%s/%s", cwd, path);
}

/* ---- the API client ---------------------------------------------------- */

static char *read_token_file(const char *dir, bool explicit_dir, int *status)
{
    char *path = xasprintf("%s/admin-token", dir);
    struct buf b = BUF_INIT;
    char *token = NULL;
    int r = file_read(path, &b);
    if (r < 0) {
        if (explicit_dir) {
            fprintf(stderr, "yci: cannot read the admin token '%s': %s\n", path, strerror(-r));
            *status = 1;
        }
        goto out;
    }
    while (b.len && isspace((unsigned char)b.data[b.len - 1]))
        b.data[--b.len] = '\0';
    if (b.len)
        token = buf_detach(&b, NULL);
out:
    buf_release(&b);
    free(path);
    return token;
}

int cli_api_open(struct cli_api *api, const struct cli_target *target, bool need_token)
{
    memset(api, 0, sizeof(*api));
    const char *server = target->server;
    if (!server || !*server)
        server = getenv("YCI_SERVER");
    if (!server || !*server)
        server = CLI_DEFAULT_SERVER;
    size_t n = strlen(server);
    while (n > 1 && server[n - 1] == '/')
        n--;
    api->server = xstrndup(server, n);
    api->json = target->json;

    if (need_token) {
        const char *env = getenv("YCI_TOKEN");
        int status = 0;
        if (env && *env) {
            api->token = xstrdup(env);
        } else if (target->data && *target->data) {
            api->token = read_token_file(target->data, true, &status);
        } else if ((env = getenv("YCI_DATA")) && *env) {
            api->token = read_token_file(env, true, &status);
        } else {
            struct stat st;
            if (stat(CLI_DEFAULT_DATA, &st) == 0 && S_ISDIR(st.st_mode))
                api->token = read_token_file(CLI_DEFAULT_DATA, false, &status);
        }
        if (status) {
            cli_api_close(api);
            return status;
        }
    }
    api->http = http_client_new(api->server, api->token);
    return 0;
}

void cli_api_close(struct cli_api *api)
{
    http_client_free(api->http);
    free(api->server);
    free(api->token);
    memset(api, 0, sizeof(*api));
}

/* Print the error of a non-2xx answer; returns 1. */
static int api_error(struct cli_api *api, const struct http_result *res)
{
    json_t *v = json_loadb(res->body.data ? res->body.data : "", res->body.len, 0, NULL);
    const char *msg = cli_jstr(v, "error");
    if (msg)
        fprintf(stderr, "yci: %s\n", msg);
    else
        fprintf(stderr, "yci: the server answered HTTP %ld\n", res->status);
    if (res->status == 401 && !api->token)
        fprintf(stderr, "yci: this needs the admin token: set YCI_TOKEN, or give --data DIR "
                        "(the server's data directory)\n");
    json_decref(v);
    return 1;
}

static int api_unreachable(struct cli_api *api, const char *method, const char *path,
                           const struct buf *err)
{
    /* The client's message starts with "METHOD URL: "; the URL is said already. */
    char *prefix = xasprintf("%s %s%s: ", method, api->server, path);
    const char *msg = err->len ? err->data : "no answer";
    if (strncmp(msg, prefix, strlen(prefix)) == 0 && msg[strlen(prefix)])
        msg += strlen(prefix);
    fprintf(stderr, "yci: cannot reach the yci server at %s: %s\n", api->server, msg);
    free(prefix);
    return 1;
}

/* One request, or with api->patient as many as it takes the server to come
 * back (see struct cli_api). */
static int api_request(struct cli_api *api, const char *method, const char *path,
                       const char *text, struct http_result *res, struct buf *err)
{
    int64_t lost_at = 0, wait_ms = 500;
    for (;;) {
        int r = http_client_request(api->http, method, path, text ? "application/json" : NULL,
                                    text, text ? strlen(text) : 0, CLI_REQUEST_TIMEOUT_MS, res,
                                    err);
        bool gone = r < 0 || (res->status >= 502 && res->status <= 504);
        if (!gone && lost_at)
            fprintf(stderr, "yci: the server is back\n");
        if (!gone || !api->patient || (lost_at && time_mono_ms() - lost_at > CLI_PATIENCE_MS))
            return r;
        if (!lost_at) {
            fprintf(stderr, "yci: lost the yci server at %s (%s); waiting for it\n", api->server,
                    r < 0 ? (err->len ? err->data : strerror(-r)) : "a proxy's error");
            lost_at = time_mono_ms();
        }
        time_sleep_ms(wait_ms);
        wait_ms = wait_ms < 5000 ? wait_ms * 2 : 5000;
        http_result_release(res);
        *res = (struct http_result)HTTP_RESULT_INIT;
        buf_reset(err);
    }
}

int cli_api_call(struct cli_api *api, const char *method, const char *path, json_t *body,
                 json_t **out)
{
    struct http_result res = HTTP_RESULT_INIT;
    struct buf err = BUF_INIT;
    char *text = NULL;
    int status = 1;
    if (body)
        text = json_dumps(body, JSON_COMPACT);
    int r = api_request(api, method, path, text, &res, &err);
    if (r < 0) {
        status = api_unreachable(api, method, path, &err);
        goto out;
    }
    if (res.status < 200 || res.status > 299) {
        status = api_error(api, &res);
        goto out;
    }
    if (out) {
        *out = NULL;
        if (res.body.len) {
            json_error_t jerr;
            json_t *v = json_loadb(res.body.data, res.body.len, 0, &jerr);
            if (!v) {
                fprintf(stderr, "yci: the server sent invalid JSON: %s\n", jerr.text);
                goto out;
            }
            *out = v;
        }
    }
    status = 0;
out:
    free(text);
    buf_release(&err);
    http_result_release(&res);
    return status;
}

int cli_api_get_raw(struct cli_api *api, const char *path, struct http_result *res)
{
    struct buf err = BUF_INIT;
    int status = 0;
    int r = api_request(api, "GET", path, NULL, res, &err);
    if (r < 0)
        status = api_unreachable(api, "GET", path, &err);
    else if (res->status < 200 || res->status > 299)
        status = api_error(api, res);
    buf_release(&err);
    return status;
}

void cli_print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}

/* ---- JSON accessors ---------------------------------------------------- */

const char *cli_jstr(const json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *cli_jstr_or(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = cli_jstr(obj, key);
    return s ? s : dflt;
}

bool cli_jint(const json_t *obj, const char *key, int64_t *out)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!json_is_integer(v))
        return false;
    *out = json_integer_value(v);
    return true;
}

void cli_url_escape(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            buf_addch(b, (char)c);
        } else {
            buf_addch(b, '%');
            buf_addch(b, hex[c >> 4]);
            buf_addch(b, hex[c & 15]);
        }
    }
}

/* ---- formatting -------------------------------------------------------- */

void cli_fmt_age(char *out, size_t n, int64_t when_ms, int64_t now_ms)
{
    if (when_ms <= 0) {
        snprintf(out, n, "-");
        return;
    }
    int64_t s = (now_ms - when_ms) / 1000;
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(out, n, "%llds ago", (long long)s);
    else if (s < 3600)
        snprintf(out, n, "%lldm ago", (long long)(s / 60));
    else if (s < 86400)
        snprintf(out, n, "%lldh ago", (long long)(s / 3600));
    else
        snprintf(out, n, "%lldd ago", (long long)(s / 86400));
}

void cli_fmt_duration(char *out, size_t n, int64_t ms)
{
    if (ms < 0)
        snprintf(out, n, "-");
    else if (ms < 1000)
        snprintf(out, n, "%lldms", (long long)ms);
    else if (ms < 60000)
        snprintf(out, n, "%lld.%llds", (long long)(ms / 1000), (long long)(ms % 1000 / 100));
    else if (ms < 3600000)
        snprintf(out, n, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else
        snprintf(out, n, "%lldh%02lldm", (long long)(ms / 3600000), (long long)(ms / 60000 % 60));
}

int64_t cli_obj_duration(const json_t *obj, int64_t now_ms)
{
    int64_t d, started;
    if (cli_jint(obj, "duration_ms", &d))
        return d;
    const char *status = cli_jstr(obj, "status");
    if (status && strcmp(status, "running") == 0 && cli_jint(obj, "started", &started) &&
        started > 0)
        return now_ms - started;
    return -1;
}

/* ---- tables ------------------------------------------------------------ */

struct cli_table {
    size_t ncols;
    size_t nrows;
    size_t cap;
    char **cells; /* nrows * ncols */
};

struct cli_table *cli_table_new(size_t ncols)
{
    struct cli_table *t = xcalloc(1, sizeof(*t));
    t->ncols = ncols;
    return t;
}

void cli_table_add(struct cli_table *t, ...)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->cells = xrealloc(t->cells, t->cap * t->ncols * sizeof(char *));
    }
    va_list ap;
    va_start(ap, t);
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        t->cells[t->nrows * t->ncols + i] = xstrdup(s && *s ? s : "-");
    }
    va_end(ap);
    t->nrows++;
}

/* Display width of a UTF-8 string (counts code points, not bytes). */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

void cli_table_print(const struct cli_table *t, FILE *f)
{
    size_t *width = xcalloc(t->ncols, sizeof(size_t));
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t w = text_width(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            fputs(s, f);
            if (c + 1 < t->ncols)
                for (size_t i = text_width(s); i < width[c] + 2; i++)
                    fputc(' ', f);
        }
        fputc('\n', f);
    }
    free(width);
}

void cli_table_free(struct cli_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}
