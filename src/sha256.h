/*
 * sha256.h — SHA-256, incremental: the asset store names files by it, and a
 * download streamed to disk is hashed as its bytes arrive (http.c).
 *
 *   sl_sha256 s; sl_sha256_init(&s);
 *   sl_sha256_update(&s, p, n); …
 *   char hex[65]; sl_sha256_hex(&s, hex);     (finishes s)
 */
#ifndef SL_SHA256_H
#define SL_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_sha256 {
    uint32_t h[8];
    uint64_t bits;
    unsigned char block[64];
    size_t used;
} sl_sha256;

void sl_sha256_init(sl_sha256 *s);
void sl_sha256_update(sl_sha256 *s, const void *p, size_t n);
/* Finishes the hash: 64 lower-case hex digits and a NUL. s is spent. */
void sl_sha256_hex(sl_sha256 *s, char out[65]);

#endif
