/*
 * log — one line per event on stderr, with a UTC timestamp and a level.
 *
 * Only the program layers (server/, runner/, cli/) log; lower layers return
 * errors in a struct buf. Conventions: quote user strings, say ", ignoring"
 * when an error is not fatal, and put "job N" in every line about a job.
 * Thread-safe: each line is written with a single write(2).
 */
#ifndef YCI_LIB_LOG_H
#define YCI_LIB_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below this level are dropped (default LOG_INFO; YCI_DEBUG=1 sets LOG_DEBUG). */
void log_set_level(enum log_level level);
/* A short tag printed on every line, e.g. "server" or "runner". Not copied. */
void log_set_prefix(const char *prefix);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
