/*
 * ctx.h — the one context of a sluice process: the loop and everything hung on it.
 *
 * There is no other mutable global state. Callbacks reach the context through
 * their watcher's data pointer; Lua C functions through sl_ctx_from_lua().
 */
#ifndef SL_CTX_H
#define SL_CTX_H

#include <lua.h>

struct ev_loop;
struct sl_config;
struct sl_pg;
struct sl_http;
struct sl_runtime;
struct sl_worker;

typedef struct sl_ctx {
    struct ev_loop *loop;
    const struct sl_config *cfg;
    struct sl_pg *pg;           /* database pool + LISTEN connection */
    struct sl_http *http;       /* libcurl multi driver (NULL until first use) */
    struct sl_runtime *rt;      /* lua_State, handler registry, runs */
    struct sl_worker *worker;   /* the daemon's scheduler (serve only) */
    const char *db_url;         /* resolved connection string */
    const char *trigger_source; /* "manual" (run), "repl", "scheduled" (serve) */
    struct sl_cli_early *early; /* the connection being opened for sl_queue_boot */
    int assets_swept;           /* the asset store's stale pending files were removed */
    int db_refused;             /* sluice.db's connection was refused for its settings (exit 2) */
} sl_ctx;

/* The context stored in L's registry by the runtime; raises if absent. */
sl_ctx *sl_ctx_from_lua(lua_State *L);

#endif
