/*
 * lua_files.c — the one file-system primitive handlers get: the content-addressed
 * asset store. The sandbox has no io library; this is the only way a handler
 * writes a file, and it cannot choose the path.
 *
 *   sha256, path, size, created = put_asset(bytes, ext)     bytes in hand
 *   part = begin_asset()                                    a file to fill:
 *     request{…, save_to = part}                            the body streams in
 *     sha256, path, size, created = part:commit(ext)
 *     part:discard()                                        (or let it go: __close, __gc)
 *   nil, err                                                (expected failures)
 *
 * The store is one directory: SLUICE_ASSET_DIR when set, else
 * <state directory>/assets (SLUICE_HOME). A file is stored at
 * <dir>/<first two hex digits>/<sha256>.<ext>, so the same bytes are stored once;
 * `created` is false when they were already there. `ext` is 1-8 lower-case
 * letters or digits (misuse raises). Writes go to a temporary file in the store,
 * which is then renamed into place: a reader never sees a partial file, and two
 * runs storing the same bytes at once both succeed.
 *
 * A pending asset (begin_asset) is a temporary file <dir>/.partial-XXXXXX that a
 * request writes its body to as it arrives (lua_http.c hands the bytes to
 * sl_asset_sink_write), hashed on the way, so a download is never held in
 * memory whatever its size. Committing renames it into place; discarding (or
 * dropping it unfinished) removes it. Files a killed process left behind are
 * removed by the next process's first begin_asset once they are an hour old.
 *
 * Writes are blocking (plain write(2) from the loop thread): a local disk takes
 * them far faster than a download delivers them.
 */
#include "config.h"
#include "ctx.h"
#include "runtime_int.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static const char *check_ext(lua_State *L, int idx, const char *what)
{
    size_t n;
    if (lua_type(L, idx) != LUA_TSTRING) /* not "bad argument #1 to 'commit'" */
        luaL_error(L, "%s: the extension must be a string such as \"jpg\", not %s", what,
                   lua_isnoneornil(L, idx) ? "nothing" : luaL_typename(L, idx));
    const char *ext = lua_tolstring(L, idx, &n);
    if (!valid_ext(ext, n))
        luaL_error(L, "%s: the extension must be 1-8 lower-case letters or digits, not '%s'", what,
                   ext);
    return ext;
}

/* Where bytes with this hash live: their directory (created) and path. Returns
 * 1 when a file of that size is there already (a size mismatch can only be
 * damage: it is replaced), 0 when it is not, -1 with a message in err. */
static int place(const sl_ctx *ctx, const char *hash, const char *ext, size_t size, char *dir,
                 char *path, char *err, size_t errlen)
{
    if (asset_dir(ctx, dir, PATH_MAX - 4, err, errlen) < 0) return -1;
    size_t dl = strlen(dir);
    snprintf(dir + dl, PATH_MAX - dl, "/%.2s", hash);
    if (snprintf(path, PATH_MAX, "%s/%s.%s", dir, hash, ext) >= PATH_MAX) {
        snprintf(err, errlen, "asset path is too long");
        return -1;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == size) return 1;
    return make_dirs(dir, err, errlen) < 0 ? -1 : 0;
}

static int push_stored(lua_State *L, const char *hash, const char *path, size_t size, int created)
{
    lua_pushstring(L, hash);
    lua_pushstring(L, path);
    lua_pushinteger(L, (lua_Integer)size);
    lua_pushboolean(L, created);
    return 4;
}

static int push_fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* put_asset(bytes, ext) → sha256, path, size, created | nil, err */
static int l_put_asset(lua_State *L)
{
    size_t n;
    const char *bytes = luaL_checklstring(L, 1, &n);
    const char *ext = check_ext(L, 2, "sluice.assets.put");
    sl_ctx *ctx = sl_ctx_from_lua(L);
    char err[PATH_MAX + 128], dir[PATH_MAX], path[PATH_MAX], hash[65];
    sl_sha256 s;
    sl_sha256_init(&s);
    sl_sha256_update(&s, bytes, n);
    sl_sha256_hex(&s, hash);
    int there = place(ctx, hash, ext, n, dir, path, err, sizeof err);
    if (there < 0) return push_fail(L, err);
    if (!there && write_atomically(dir, path, bytes, n, err, sizeof err) < 0)
        return push_fail(L, err);
    return push_stored(L, hash, path, n, !there);
}

/* ------------------------------------------------------------------ pending assets */

#define PARTIAL_MT "sluice.pending_asset"
#define STALE_PARTIAL_SECONDS 3600

typedef struct partial {
    int fd;   /* -1 once committed or discarded */
    int busy; /* a request is writing its body here */
    size_t size;
    sl_sha256 sha;
    char path[PATH_MAX];
} partial;

static void partial_drop(partial *p)
{
    if (p->fd < 0) return;
    close(p->fd);
    unlink(p->path);
    p->fd = -1;
}

/* Removes .partial-* files in dir older than an hour: what a killed process left. */
static void sweep_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    time_t now = time(NULL);
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, ".partial-", 9) != 0) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            now - st.st_mtime > STALE_PARTIAL_SECONDS)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/* begin_asset() → part | nil, err */
static int l_begin_asset(lua_State *L)
{
    sl_ctx *ctx = sl_ctx_from_lua(L);
    char err[PATH_MAX + 128], dir[PATH_MAX];
    if (asset_dir(ctx, dir, sizeof dir - 20, err, sizeof err) < 0 ||
        make_dirs(dir, err, sizeof err) < 0)
        return push_fail(L, err);
    if (!ctx->assets_swept) {
        ctx->assets_swept = 1;
        sweep_stale(dir);
    }
    partial *p = lua_newuserdatauv(L, sizeof *p, 0);
    p->fd = -1;
    p->busy = 0;
    p->size = 0;
    sl_sha256_init(&p->sha);
    luaL_setmetatable(L, PARTIAL_MT);
    if (snprintf(p->path, sizeof p->path, "%s/.partial-XXXXXX", dir) >= (int)sizeof p->path)
        return push_fail(L, "asset path is too long");
    p->fd = mkstemp(p->path);
    if (p->fd < 0) {
        snprintf(err, sizeof err, "cannot write to the asset directory %s: %s", dir,
                 strerror(errno));
        return push_fail(L, err);
    }
    return 1;
}

static partial *check_partial(lua_State *L, int idx, const char *what)
{
    partial *p = luaL_checkudata(L, idx, PARTIAL_MT);
    if (p->fd < 0) luaL_error(L, "%s: the pending asset was already committed or discarded", what);
    if (p->busy) luaL_error(L, "%s: a request is still writing to the pending asset", what);
    return p;
}

/* part:commit(ext) → sha256, path, size, created | nil, err. The pending file is
 * gone either way. */
static int l_partial_commit(lua_State *L)
{
    partial *p = check_partial(L, 1, "part:commit");
    const char *ext = check_ext(L, 2, "part:commit");
    char err[PATH_MAX + 128], dir[PATH_MAX], path[PATH_MAX], hash[65];
    sl_sha256_hex(&p->sha, hash);
    size_t size = p->size;
    int there = place(sl_ctx_from_lua(L), hash, ext, size, dir, path, err, sizeof err);
    if (there < 0) {
        partial_drop(p);
        return push_fail(L, err);
    }
    if (!there) {
        if (fchmod(p->fd, 0644) < 0 || rename(p->path, path) < 0) {
            snprintf(err, sizeof err, "cannot store %s: %s", path, strerror(errno));
            partial_drop(p);
            return push_fail(L, err);
        }
        close(p->fd);
        p->fd = -1;
    } else {
        partial_drop(p);
    }
    return push_stored(L, hash, path, size, !there);
}

/* part:discard(); also __close and __gc (a no-op once committed). */
static int l_partial_discard(lua_State *L)
{
    partial *p = luaL_checkudata(L, 1, PARTIAL_MT);
    if (p->busy)
        return luaL_error(L, "part:discard: a request is still writing to the pending asset");
    partial_drop(p);
    return 0;
}

static int l_partial_gc(lua_State *L)
{
    partial_drop(luaL_checkudata(L, 1, PARTIAL_MT));
    return 0;
}

/* part:size() → bytes written so far */
static int l_partial_size(lua_State *L)
{
    partial *p = luaL_checkudata(L, 1, PARTIAL_MT);
    lua_pushinteger(L, (lua_Integer)p->size);
    return 1;
}

static int l_partial_tostring(lua_State *L)
{
    partial *p = luaL_checkudata(L, 1, PARTIAL_MT);
    lua_pushfstring(L, "pending asset (%I bytes%s)", (lua_Integer)p->size,
                    p->fd < 0 ? ", closed" : "");
    return 1;
}

void *sl_asset_sink_claim(lua_State *L, int idx, const char *what, int level)
{
    partial *p = luaL_testudata(L, idx, PARTIAL_MT);
    const char *why = NULL;
    if (!p)
        why = lua_pushfstring(
            L, "save_to must be a pending asset from sluice.assets.begin(), not a %s",
            luaL_typename(L, idx));
    else if (p->fd < 0)
        why = "save_to: the pending asset was already committed or discarded";
    else if (p->busy)
        why = "save_to: a request is still writing to the pending asset";
    else if (p->size > 0)
        why = "save_to: the pending asset has been written already (begin a new one)";
    if (why || !p) { /* at the caller's line, as the request's other misuse */
        luaL_where(L, level);
        lua_pushfstring(L, "%s: %s", what, why ? why : "save_to must be a pending asset");
        lua_concat(L, 2);
        lua_error(L);
        return NULL; /* not reached: lua_error does not return */
    }
    p->busy = 1;
    return p;
}

int sl_asset_sink_write(void *sink, const char *buf, size_t n)
{
    partial *p = sink;
    sl_sha256_update(&p->sha, buf, n);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(p->fd, buf + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno;
        off += (size_t)w;
    }
    p->size += n;
    return 0;
}

void sl_asset_sink_done(void *sink)
{
    if (sink) ((partial *)sink)->busy = 0;
}

int luaopen_sluice_files(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"commit", l_partial_commit},
        {"discard", l_partial_discard},
        {"size", l_partial_size},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__gc", l_partial_gc},
        {"__close", l_partial_gc},
        {"__tostring", l_partial_tostring},
        {NULL, NULL},
    };
    luaL_newmetatable(L, PARTIAL_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0); /* getmetatable(part) → false: its __gc stays out of reach */
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"put_asset", l_put_asset},
        {"begin_asset", l_begin_asset},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
