/*
 * worker_reload.c — `sluice serve` reloading while it runs: on SIGHUP the
 * config file is read again as start-up read it and the settings that can
 * change live are applied (the others are logged as needing a restart), then
 * every handler file is loaded again, as on an edit the watch saw
 * (reload.c). A file that fails keeps what was in force.
 */
#include "buf.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "pg.h"
#include "worker_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void registry_synced(PGresult *res, const char *err, void *data)
{
    (void)data;
    if (err)
        sl_log(SL_WARN, "syncing the registry after a reload failed", "error", err, NULL);
    else /* how many types it wrote: 0 when nothing had changed */
        sl_log(SL_DEBUG, "registry synced after a reload", SL_NUM "synced",
               PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "0", NULL);
    if (res) PQclear(res);
}

/* Reloads every handler file (and the libraries they use). A file that fails
 * keeps its previous version; runs in flight finish on the version they began
 * with. The registry tables get the result. */
void sl_worker_reload_handlers(void *data)
{
    sl_worker *w = data;
    char *problems = NULL;
    int n = sl_runtime_load_handlers(w->ctx->rt, NULL, 0, &problems);
    for (char *p = problems, *nl; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        sl_log(SL_ERROR, "handler rejected; its previous version (if any) keeps serving", "problem",
               p, NULL);
    }
    free(problems);
    free(w->types);
    w->types = sl_queue_type_array(w->ctx->rt);
    char *reg = sl_runtime_registry_json(w->ctx->rt);
    if (reg) {
        const char *params[] = {reg, w->id, w->types};
        sl_pg_query(w->ctx->pg, sl_queue_registry_sync_sql(w->ctx->rt, 1), 3, params,
                    registry_synced, w);
        free(reg);
    }
    char *names = sl_runtime_type_names(w->ctx->rt, ", ");
    sl_log(n ? SL_WARN : SL_INFO, n ? "handlers reloaded with problems" : "handlers reloaded",
           "job_types", names, NULL);
    free(names);
}

/* Whether serve applies a new value of setting `key` while it runs. The others
 * take a restart: the database and its pool, the state, handler and library
 * directories (the pool, the watches and the loaded files depend on them), and
 * the lease the runs in flight were claimed with. */
static int live_setting(const char *key)
{
    static const char *const live[] = {
        "concurrency",      "grace_seconds",           "poll_seconds",       "archive_after_days",
        "prune_after_days", "retention_every_minutes", "log_format",         "log_level",
        "http_limit",       "memory_limit_mb",         "instruction_budget",
    };
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
        if (strcmp(live[i], key) == 0) return 1;
    return 0;
}

/* Moves the settings that change live from next into cfg (and what cfg had
 * into next, which the caller frees): nothing that runs hold a pointer into
 * changes hands, the strings moved being the http_limit lines (the limiters
 * keep copies of their own) and the file's path. */
static void take_live_settings(sl_config *cfg, sl_config *next)
{
    cfg->concurrency = next->concurrency;
    cfg->grace_seconds = next->grace_seconds;
    cfg->poll_seconds = next->poll_seconds;
    cfg->archive_after_days = next->archive_after_days;
    cfg->prune_after_days = next->prune_after_days;
    cfg->retention_every_minutes = next->retention_every_minutes;
    cfg->log_format = next->log_format;
    cfg->log_level = next->log_level;
    cfg->memory_limit_mb = next->memory_limit_mb;
    cfg->instruction_budget = next->instruction_budget;
    for (int i = 0; i < SL_MAX_HTTP_LIMITS; i++) {
        char *line = cfg->http_limits[i];
        cfg->http_limits[i] = next->http_limits[i];
        next->http_limits[i] = line;
    }
    int n = cfg->n_http_limits;
    cfg->n_http_limits = next->n_http_limits;
    next->n_http_limits = n;
    char *file = cfg->config_file;
    cfg->config_file = next->config_file;
    next->config_file = file;
}

/* Applies the live settings just taken into w->cfg; was: their values before
 * (only its numbers are read: its strings went with the swap). The limiters
 * are given the http_limit lines whatever happened to them: only those whose
 * line changed are touched. */
static void apply_live_settings(sl_worker *w, const sl_config *was)
{
    const sl_config *cfg = w->cfg;
    struct ev_loop *loop = w->ctx->loop;
    if (was->log_format != cfg->log_format || was->log_level != cfg->log_level)
        sl_log_setup(cfg->log_format, cfg->log_level);
    if (w->ctx->http) sl_http_config_limits(w->ctx->http, cfg);
    if (was->memory_limit_mb != cfg->memory_limit_mb ||
        was->instruction_budget != cfg->instruction_budget) {
        size_t cap = (size_t)cfg->memory_limit_mb << 20;
        size_t used = sl_runtime_set_caps(w->ctx->rt, cap, cfg->instruction_budget);
        if (used > cap) {
            char mb[32];
            snprintf(mb, sizeof mb, "%zu", used >> 20);
            sl_log(SL_WARN,
                   "config reload: the Lua state uses more than the new memory_limit_mb; "
                   "what runs allocate fails until they free memory",
                   "used_mb", mb, NULL);
        }
    }
    if (was->retention_every_minutes != cfg->retention_every_minutes && !w->stopping) {
        double pass = cfg->retention_every_minutes * 60;
        ev_timer_stop(loop, &w->retention);
        ev_timer_set(&w->retention, pass, pass);
        ev_timer_start(loop, &w->retention);
    }
    /* a poll shortened: the wait armed with the longer one is cut short */
    if (was->poll_seconds != cfg->poll_seconds && !w->stopping && !w->cycling &&
        ev_is_active(&w->claim_timer) &&
        ev_timer_remaining(loop, &w->claim_timer) > cfg->poll_seconds)
        sl_worker_arm_claim_timer(w, cfg->poll_seconds);
    if (was->concurrency != cfg->concurrency) {
        /* fewer: runs in flight finish, and no new one starts until fewer run;
         * more: claimed runs start at once, and a cycle claims for the rest */
        w->concurrency = cfg->concurrency;
        char conc[16];
        snprintf(conc, sizeof conc, "%d", w->concurrency);
        const char *params[] = {conc, w->id};
        sl_pg_query(w->ctx->pg, "UPDATE sluice.workers SET concurrency = $1 WHERE id = $2", 2,
                    params, sl_worker_ignore_result,
                    "recording the worker's new concurrency in sluice.workers failed");
        sl_worker_start_queued(w);
        if (!w->stopping) sl_worker_cycle(w);
    }
}

/* Reads the config file again (SIGHUP), building the config as start-up did:
 * the file, the environment, the global flags, then serve's flags, so flags
 * and the environment still win over the file. A config that does not load (a
 * line of the file that is wrong, a file named by --config that is gone, a new
 * database URL libpq refuses: checked without sl_config_check_db, which changes
 * the environment for a moment, not a thing to do while libcurl's resolver
 * threads may read it) changes nothing. Otherwise the settings that can
 * change live take their new values, and each other one whose value changed
 * is logged as needing a restart and keeps the value in force. */
static void reload_config(sl_worker *w)
{
    sl_config next, *cfg = w->cfg;
    serve_opts o;
    char err[1024];
    if (sl_config_load(&next, cfg->argc, cfg->argv, NULL, NULL, err, sizeof err) < 0) {
        sl_log(SL_ERROR, "config file rejected: every setting in force is kept", "error", err,
               NULL);
        return;
    }
    /* serve's flags passed at start: they cannot fail now */
    int rc = sl_worker_serve_options(&next, w->argc, w->argv, &o) == 0 ? 0 : -1;
    if (rc < 0) snprintf(err, sizeof err, "serve's options were refused");
    /* a database URL libpq refuses would stop the restart it waits for: said
     * now (the environment is as at start, where the URL in force passed) */
    char why[512], origin[256];
    if (rc == 0 && next.db_url && (!cfg->db_url || strcmp(next.db_url, cfg->db_url) != 0) &&
        sl_pg_check_url(next.db_url, why, sizeof why) < 0) {
        sl_config_db_origin(&next, origin, sizeof origin);
        snprintf(err, sizeof err, "the database URL is not valid: %s (it comes from %s)", why,
                 origin);
        rc = -1;
    }
    if (rc < 0) {
        sl_log(SL_ERROR, "config file rejected: every setting in force is kept", "file",
               next.config_file, "error", err, NULL);
        sl_config_free(&next);
        return;
    }
    sl_buf was = {0}, now = {0}, changed = {0};
    const char *key;
    for (size_t i = 0;
         sl_buf_reset(&was), sl_buf_reset(&now), (key = sl_config_setting_at(cfg, i, &was)); i++) {
        sl_config_setting_at(&next, i, &now);
        if (strcmp(sl_buf_str(&was), sl_buf_str(&now)) == 0) continue;
        if (live_setting(key)) {
            sl_buf_printf(&changed, "%s, ", key);
            continue;
        }
        sl_log(SL_WARN,
               "config reload: a setting changed that takes a restart; its value in "
               "force is kept until the daemon restarts",
               "setting", key, "in_force", sl_buf_str(&was), "configured", sl_buf_str(&now), NULL);
    }
    sl_config was_cfg = *cfg; /* its numbers, to compare */
    take_live_settings(cfg, &next);
    sl_config_free(&next); /* with what cfg had of the settings just taken */
    apply_live_settings(w, &was_cfg);
    if (changed.len) changed.data[changed.len -= 2] = '\0'; /* the last ", " */
    sl_log(SL_INFO, "config file reloaded", "file", cfg->config_file ? cfg->config_file : "(none)",
           "changed", changed.len ? sl_buf_str(&changed) : "nothing", NULL);
    sl_buf_free(&was);
    sl_buf_free(&now);
    sl_buf_free(&changed);
}

void sl_worker_sighup_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    sl_log(SL_INFO, "SIGHUP: reloading handlers and the config file", NULL);
    reload_config(s->data);
    sl_worker_reload_handlers(s->data); /* whether the config file loaded or not */
}
