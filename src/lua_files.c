/*
 * lua_files.c — the one file-system primitive handlers get: storing bytes in the
 * content-addressed asset store. The sandbox has no io library; this is the only
 * way a handler writes a file, and it cannot choose the path.
 *
 *   sha256, path, size, created = put_asset(bytes, ext)
 *   nil, err                                            (expected failures)
 *
 * The store is one directory: SLUICE_ASSET_DIR when set, else
 * <state directory>/assets (SLUICE_HOME). A file is stored at
 * <dir>/<first two hex digits>/<sha256>.<ext>, so the same bytes are stored once;
 * `created` is false when they were already there. `ext` is 1-8 lower-case
 * letters or digits (misuse raises). Writes go to a temporary file in the same
 * directory, which is then renamed into place: a reader never sees a partial
 * file, and two runs storing the same bytes at once both succeed.
 *
 * The write is blocking (plain write(2) from the loop thread). Assets are images
 * and short videos, whose download took far longer than the write; the friendly
 * API (lua/sluice/assets.lua) caps their size.
 */
#include "config.h"
#include "ctx.h"
#include "runtime_int.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ sha256 */

typedef struct {
    uint32_t h[8];
    uint64_t bits;
    unsigned char block[64];
    size_t used;
} sl_sha256;

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror32(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha256_block(sl_sha256 *s, const unsigned char *p)
{
    uint32_t w[64];
    for (size_t i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) +
                      sha256_k[i] + w[i];
        uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

/* The SHA-256 of p[0..n) as 64 lower-case hex digits and a NUL. */
static void sha256_hex(const unsigned char *p, size_t n, char out[65])
{
    sl_sha256 s = {{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c,
                    0x1f83d9ab, 0x5be0cd19},
                   0,
                   {0},
                   0};
    s.bits = (uint64_t)n * 8;
    while (n >= 64) {
        sha256_block(&s, p);
        p += 64;
        n -= 64;
    }
    memcpy(s.block, p, n);
    s.used = n;
    s.block[s.used++] = 0x80;
    if (s.used > 56) {
        memset(s.block + s.used, 0, 64 - s.used);
        sha256_block(&s, s.block);
        s.used = 0;
    }
    memset(s.block + s.used, 0, 56 - s.used);
    for (int i = 0; i < 8; i++)
        s.block[56 + i] = (unsigned char)(s.bits >> (56 - 8 * i));
    sha256_block(&s, s.block);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) {
            unsigned char byte = (unsigned char)(s.h[i] >> (24 - 8 * j));
            out[8 * i + 2 * j] = hex[byte >> 4];
            out[8 * i + 2 * j + 1] = hex[byte & 15];
        }
    out[64] = '\0';
}

/* ------------------------------------------------------------------ the store */

/* The store's directory into buf; -1 with a message in err when there is none. */
static int asset_dir(const sl_ctx *ctx, char *buf, size_t len, char *err, size_t errlen)
{
    const char *dir = getenv("SLUICE_ASSET_DIR");
    int n;
    if (dir && *dir)
        n = snprintf(buf, len, "%s", dir);
    else if (ctx->cfg && ctx->cfg->home && *ctx->cfg->home)
        n = snprintf(buf, len, "%s/assets", ctx->cfg->home);
    else {
        snprintf(err, errlen, "no asset directory: set SLUICE_ASSET_DIR or SLUICE_HOME");
        return -1;
    }
    if (n < 0 || (size_t)n >= len) {
        snprintf(err, errlen, "asset directory path is too long");
        return -1;
    }
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    return 0;
}

/* mkdir -p path (mode 0755); -1 with a message in err. */
static int make_dirs(char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        snprintf(err, errlen, "cannot use %s as the asset directory: not a directory", path);
        return -1;
    }
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        int rc = mkdir(path, 0755);
        int e = errno;
        int is_dir = rc == 0 || (e == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode));
        *p = saved;
        if (!is_dir) {
            snprintf(err, errlen, "cannot create the asset directory %s: %s", path,
                     strerror(rc == 0 ? ENOTDIR : e));
            return -1;
        }
        if (saved == '\0') return 0;
    }
}

/* Writes p[0..n) to a new temporary file in dir and renames it to path. */
static int write_atomically(const char *dir, const char *path, const char *p, size_t n, char *err,
                            size_t errlen)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/.tmp-XXXXXX", dir) >= (int)sizeof tmp) {
        snprintf(err, errlen, "asset path is too long");
        return -1;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write to the asset directory %s: %s", dir, strerror(errno));
        return -1;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (fchmod(fd, 0644) < 0 || close(fd) < 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) < 0) {
        snprintf(err, errlen, "cannot store %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int valid_ext(const char *ext, size_t n)
{
    if (n < 1 || n > 8) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((ext[i] >= 'a' && ext[i] <= 'z') || (ext[i] >= '0' && ext[i] <= '9'))) return 0;
    return 1;
}

/* put_asset(bytes, ext) → sha256, path, size, created | nil, err */
static int l_put_asset(lua_State *L)
{
    size_t n, extlen;
    const char *bytes = luaL_checklstring(L, 1, &n);
    const char *ext = luaL_checklstring(L, 2, &extlen);
    if (!valid_ext(ext, extlen))
        return luaL_error(L,
                          "sluice.assets.put: the extension must be 1-8 lower-case letters "
                          "or digits, not '%s'",
                          ext);
    sl_ctx *ctx = sl_ctx_from_lua(L);
    char err[PATH_MAX + 128], dir[PATH_MAX], path[PATH_MAX], hash[65];
    sha256_hex((const unsigned char *)bytes, n, hash);
    if (asset_dir(ctx, dir, sizeof dir - 4, err, sizeof err) < 0) goto fail;
    size_t dl = strlen(dir);
    snprintf(dir + dl, sizeof dir - dl, "/%.2s", hash);
    if (snprintf(path, sizeof path, "%s/%s.%s", dir, hash, ext) >= (int)sizeof path) {
        snprintf(err, sizeof err, "asset path is too long");
        goto fail;
    }
    int created = 0;
    struct stat st;
    /* the same bytes are already stored (a size mismatch can only be damage: rewrite) */
    if (!(stat(path, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == n)) {
        if (make_dirs(dir, err, sizeof err) < 0) goto fail;
        if (write_atomically(dir, path, bytes, n, err, sizeof err) < 0) goto fail;
        created = 1;
    }
    lua_pushstring(L, hash);
    lua_pushstring(L, path);
    lua_pushinteger(L, (lua_Integer)n);
    lua_pushboolean(L, created);
    return 4;
fail:
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

int luaopen_sluice_files(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"put_asset", l_put_asset},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
