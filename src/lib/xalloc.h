/*
 * xalloc — allocation that never returns NULL.
 *
 * Out of memory is not an error yci tries to survive: these wrappers print a
 * message and abort, so callers never write half-hearted NULL checks (the git
 * and redis convention). Everything returned is owned by the caller and freed
 * with free().
 */
#ifndef YCI_LIB_XALLOC_H
#define YCI_LIB_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* A copy of n bytes (n > 0). */
void *xmemdup(const void *p, size_t n);
/* A newly allocated formatted string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

#endif
