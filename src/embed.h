/*
 * embed.h — files compiled into the binary (lua/ libraries and schema/ migrations).
 *
 * cmake/embed.cmake generates the table; sl_embedded_find() looks a file up by its
 * path relative to the source root, e.g. "lua/sluice/params.lua".
 */
#ifndef SL_EMBED_H
#define SL_EMBED_H

#include <stddef.h>

typedef struct sl_embedded_file {
    const char *path; /* relative to the source root; NULL ends the table */
    const char *data; /* NUL-terminated */
    size_t len;
    const char *md5; /* of the bytes, in hex: computed when the table was generated */
} sl_embedded_file;

extern const sl_embedded_file sl_embedded_files[];

/* The embedded file at `path`, or NULL. */
const sl_embedded_file *sl_embedded_find(const char *path);

#endif
