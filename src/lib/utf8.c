/* utf8 — see utf8.h. */
#include "utf8.h"

#include "buf.h"
#include "banned.h"

size_t utf8_prefix(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

char *utf8_clean(const char *s, size_t len, size_t max)
{
    struct buf b = BUF_INIT;
    size_t i = 0;
    while (i < len) {
        size_t good = utf8_prefix(s + i, len - i);
        size_t take = good;
        if (b.len + take > max) {
            take = max - b.len;
            while (take > 0 && ((unsigned char)s[i + take] & 0xc0) == 0x80)
                take--; /* not inside a character */
        }
        buf_add(&b, s + i, take);
        if (take < good || b.len >= max)
            break;
        i += good;
        if (i < len) {
            buf_addch(&b, '?');
            i++;
        }
    }
    return buf_detach(&b, NULL);
}
