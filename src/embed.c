/*
 * embed.c — lookup in the table of files compiled into the binary.
 */
#include "embed.h"

#include <string.h>

const sl_embedded_file *sl_embedded_find(const char *path)
{
    for (const sl_embedded_file *f = sl_embedded_files; f->path; f++)
        if (strcmp(f->path, path) == 0) return f;
    return NULL;
}
