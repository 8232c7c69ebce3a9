/*
 * util — small pure helpers: time, number parsing, names, tokens, files.
 *
 * Everything here uses libc (and Linux's getrandom) only, returns errors as
 * negative errno values, and never logs.
 */
#ifndef YCI_LIB_UTIL_H
#define YCI_LIB_UTIL_H

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Milliseconds on the monotonic clock (for timeouts and intervals). */
int64_t time_mono_ms(void);
/* Milliseconds since the epoch (for timestamps stored and shown). */
int64_t time_now_ms(void);
/* Sleep for ms milliseconds (restarting after signals). */
void time_sleep_ms(int64_t ms);

/* Parse a whole decimal string into *out within [min, max]; -EINVAL or -ERANGE. */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);
int parse_int(const char *s, int min, int max, int *out);

/* True if s is a safe name for a repository or runner: 1..YCI_MAX_NAME_LEN of
 * [A-Za-z0-9._-], not starting with '.' or '-'. Safe in paths and URLs. */
bool name_valid(const char *s);
/* True if s is 40 lowercase hex digits (a full SHA-1 commit id). */
bool sha_valid(const char *s);

/* Constant-time comparison of two NUL-terminated secrets. */
bool secret_equal(const char *a, const char *b);
/* Fill out with n random bytes from the kernel; 0 or -errno. */
int random_bytes(void *out, size_t n);
/* A new random token: 2*nbytes lowercase hex characters. */
char *random_token(size_t nbytes);

/* Write all len bytes to fd (restarting after EINTR and short writes); 0 or -errno. */
int fd_write_all(int fd, const void *data, size_t len);
/* Read a whole file into b (appending); 0 or -errno. */
int file_read(const char *path, struct buf *b);
/* Write a file atomically (temp file + fsync + rename) with the given mode. */
int file_write_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* A condition variable that times out on the monotonic clock (what
 * cond_wait_ms and the timed waits of the threads expect). */
void cond_init_monotonic(pthread_cond_t *c);
/* Wait on c (m held) for at most ms milliseconds, or until signalled. */
void cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *m, int64_t ms);
/* Fill [at, at + n) of a gap [from, to) in a log (bytes lost) with what
 * stands for them: note at from (cut if the gap is shorter), then blanks,
 * and a newline as the gap's last byte: offsets after it hold. */
void log_gap_fill(char *buf, size_t n, uint64_t at, uint64_t from, uint64_t to, const char *note);
/* The note of bytes of a log that the server lost (and nobody has any more). */
#define LOG_LOST_NOTE "\n[yci: the server lost %" PRIu64 " bytes of this log]"
/* Write the whole gap [from, to) as log_gap_fill() fills it, with
 * LOG_LOST_NOTE, in pieces of at most YCI_MAX_LOG_CHUNK bytes, through
 * write(arg, offset, bytes, n) (0 or -errno): 0, or its first error. */
int log_gap_write(uint64_t from, uint64_t to,
                  int (*write)(void *arg, uint64_t at, const char *p, size_t n), void *arg);
/* An environment being built: *env a NULL-terminated vector of *n owned
 * "NAME=value" strings (start from xcalloc(1, sizeof *env) and 0). Set or
 * replace kv's NAME (ignored without a '=' after a name); free with
 * env_free(). */
void env_set(char ***env, size_t *n, const char *kv);
void env_free(char **env, size_t n);
/* Stop a thread that loops under m until *stop: set *stop, wake it on c,
 * and join it if it was started (*started, then false). */
void thread_stop(pthread_mutex_t *m, pthread_cond_t *c, bool *stop, pthread_t t, bool *started);

/* mkdir -p; 0 or -errno. */
int mkdir_p(const char *path, unsigned mode);
/* rm -rf (does not follow symlinks); 0 or -errno. A missing path is 0. */
int remove_tree(const char *path);
/* The same for what a directory holds, the directory itself kept (given
 * back its owner's rights); a path that is not a directory is removed. */
int remove_contents(const char *path);

#endif
