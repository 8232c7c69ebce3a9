/*
 * utf8 — checking and cleaning UTF-8 text (names and messages from
 * repositories are bytes; JSON and the pages need valid UTF-8).
 */
#ifndef YCI_LIB_UTF8_H
#define YCI_LIB_UTF8_H

#include <stddef.h>

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF):
 * the length of the valid prefix of text (len when all of it is). */
size_t utf8_prefix(const char *text, size_t len);
/* A copy of text as valid UTF-8 (each bad byte becomes '?') of at most max
 * bytes, cut between characters. */
char *utf8_clean(const char *text, size_t len, size_t max);

#endif
