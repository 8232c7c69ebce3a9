/*
 * logstore — job logs as plain files, one per attempt.
 *
 * Layout: <dir>/<job id / 1000>/<job id>.<attempt>.log (job 12345's second
 * attempt: 12/12345.2.log). The files are written as the job runs, so nginx
 * (or any static server) can serve them (contrib/nginx.conf maps
 * /logs/<job>/<attempt>.log there) and a reader can tail them. Paths are
 * built from integers only: nothing a client sends can make one escape <dir>.
 *
 * A directory holds the logs of a thousand jobs: a directory per job cost an
 * inode allocation per job (the slowest kind on ext4, and some file systems
 * cap a directory's subdirectories at 32,000 or 65,000). logstore_open()
 * moves the logs of the first layout, <dir>/<job id>/<attempt>.log, into
 * this one once (rename: nothing is copied).
 *
 * Appends are by offset, which makes a retried upload idempotent: bytes at an
 * offset below the current size are written again (they are the same bytes),
 * and an offset past the end is refused, since it would leave a hole.
 * Thread-safe.
 */
#ifndef YCI_STORE_LOGSTORE_H
#define YCI_STORE_LOGSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

struct logstore;

int logstore_open(const char *dir, struct logstore **out, struct buf *err);
void logstore_free(struct logstore *ls);

/* Write len bytes at offset. On success *size is the log's new size. When
 * offset is past the end, returns -ERANGE and *size is the current size. */
int logstore_append(struct logstore *ls, int64_t job_id, int attempt, uint64_t offset,
                    const void *data, size_t len, uint64_t *size);
/* The current size (0 for a log not yet written). */
int logstore_size(struct logstore *ls, int64_t job_id, int attempt, uint64_t *size);
/* Open the log for reading (O_CLOEXEC); -ENOENT when there is none. */
int logstore_open_read(struct logstore *ls, int64_t job_id, int attempt, int *fd,
                       uint64_t *size);
/* The number of newlines in the first upto bytes of the log (for a page
 * that shows its tail with line numbers). 0 when there is no log. */
int logstore_count_lines(struct logstore *ls, int64_t job_id, int attempt, uint64_t upto,
                         uint64_t *count);
/* The log's path, newly allocated. */
char *logstore_path(struct logstore *ls, int64_t job_id, int attempt);

#endif
