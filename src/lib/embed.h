/*
 * embed — files built into the binary by scripts/embed (see src/runner/ and
 * src/server/meson.build): arrays of these, ended by an entry with name NULL.
 */
#ifndef YCI_LIB_EMBED_H
#define YCI_LIB_EMBED_H

#include <stddef.h>

struct embed_file {
    const char *name; /* path relative to the embedded folder, e.g. "yci/run.py" */
    const unsigned char *data;
    size_t size;
};

#endif
