/*
 * buf — a growable byte buffer.
 *
 * Invariants: data is NULL when cap is 0; otherwise data[len] == '\0', so the
 * contents can always be used as a C string (they may also hold NUL bytes:
 * len is the truth). A struct buf owns its data. Lifecycle:
 *
 *     struct buf b = BUF_INIT;
 *     buf_addf(&b, "job %lld", id);
 *     use(b.data, b.len);
 *     buf_release(&b);          // or: char *s = buf_detach(&b);
 *
 * An optional cap (buf.max, 0 = none) bounds growth: buf_add() on a capped
 * buffer that would pass it returns -E2BIG and leaves the buffer unchanged,
 * which is how request bodies and log chunks keep their named limits.
 */
#ifndef YCI_LIB_BUF_H
#define YCI_LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* 0: unbounded */
};

#define BUF_INIT {NULL, 0, 0, 0}

/* Make room for at least extra more bytes (plus the terminating NUL). */
void buf_grow(struct buf *b, size_t extra);
/* Append len bytes; -E2BIG if that would pass b->max, else 0. */
int buf_add(struct buf *b, const void *data, size_t len);
int buf_adds(struct buf *b, const char *s);
int buf_addch(struct buf *b, char c);
int buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vaddf(struct buf *b, const char *fmt, va_list ap);
/* Replace the contents with a formatted string (handy for error messages). */
void buf_setf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empty the buffer but keep its memory. */
void buf_reset(struct buf *b);
/* Free the memory; the buffer is BUF_INIT again (max kept). */
void buf_release(struct buf *b);
/* Hand the data to the caller (never NULL: "" for an empty buffer). */
char *buf_detach(struct buf *b, size_t *len);
/* Remove the first n bytes. */
void buf_consume(struct buf *b, size_t n);

#endif
