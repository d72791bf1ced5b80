/*
 * worker_serve.c — `sluice serve` itself: its options (which a reload applies
 * again), start-up (the pidfile, the handlers, the database, waited for while
 * it is down), setting up the loop's watchers (the cycle's timers, the lease
 * renewal, the periodic passes, signals, LISTEN), the loop, and what is freed
 * once it is over.
 */
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "daemon.h"
#include "http.h"
#include "log.h"
#include "migrate.h"
#include "pg.h"
#include "queue.h"
#include "reload.h"
#include "runtime.h"
#include "tz.h"
#include "worker_int.h"

#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --prefetch's default (see PREFETCH_HORIZON in worker.c). */
#define DEFAULT_PREFETCH 500
/* Run on each pool connection as it opens (sl_pg_warmup): the queue functions'
 * code compiled and their statements planned with nothing claimed, started or
 * recorded (no jobs asked for, none given), so that a job NOTIFY'd to an idle
 * worker does not wait for that on a connection no claim has used yet. */
#define WARMUP_SQL                                                                                 \
    "SELECT (SELECT count(*) FROM sluice.finish_and_claim_runs('[]', NULL, 0, 0, NULL, true, "     \
    "false, NULL)) "                                                                               \
    "+ (SELECT count(*) FROM sluice.claim_jobs(NULL, 0, 0, NULL)) "                                \
    "+ (SELECT count(*) FROM sluice.start_runs(NULL, '{}', 0)) "                                   \
    "+ (SELECT count(*) FROM sluice.finish_runs('[]'))"

/* ------------------------------------------------------------------ serve */

/* A stop (SIGINT, SIGTERM) or a reload (SIGHUP) asked for during start-up,
 * before the loop's signal watchers are set up: without this the signal's
 * default action ended the process (status 143 for SIGTERM) where a stop exits
 * 0, and a reload killed it. Both are acted on once the loop watches them. */
static volatile sig_atomic_t startup_stop, startup_reload;

static void startup_signal(int sig)
{
    if (sig == SIGHUP)
        startup_reload = 1;
    else
        startup_stop = 1;
}

static void serve_usage(FILE *out)
{
    fprintf(out,
            "usage: sluice serve [--concurrency N] [--prefetch N] [--lease SECONDS]\n"
            "                    [--grace SECONDS] [--poll SECONDS] [--pidfile PATH]\n"
            "                    [--no-watch]\n\n"
            "Runs the daemon in the foreground: applies migrations, loads the handlers,\n"
            "syncs the job-type registry, then claims due jobs and runs them. SIGHUP\n"
            "reloads the handlers and the config file (settings that need a restart are\n"
            "logged and kept).\n\n"
            "  --concurrency N   runs in flight at once (default 10; 1 to 10000); -c N for\n"
            "                    short\n"
            "  --prefetch N      claim up to N more runs than free slots, so that a slot is\n"
            "                    refilled without a round trip; never more than the worker\n"
            "                    starts in 0.5 s at its pace (default 500; 0: never)\n"
            "  --lease SECONDS   run lease, renewed every third of it (default 60; 1 to\n"
            "                    86400)\n"
            "  --grace SECONDS   on SIGINT/SIGTERM, time given to runs in flight (default 30;\n"
            "                    0 to 86400)\n"
            "  --poll SECONDS    fallback poll interval (default 5; 0.1 to 3600; new jobs are\n"
            "                    picked up at once through LISTEN/NOTIFY)\n"
            "  --pidfile PATH    write the pid there; refuse to start if another daemon\n"
            "                    holds it\n"
            "  --no-watch        do not reload handlers when their files change (SIGHUP\n"
            "                    still reloads)\n");
}

/* A numeric flag of serve: the setting key's value from the next argument,
 * bounded as in the config file (config.c). -1 after saying why not. */
static int number_flag(sl_config *cfg, const char *key, int argc, char **argv, int *i)
{
    char err[512];
    const char *flag = argv[*i];
    if (*i + 1 >= argc) {
        sl_cli_error("serve: %s needs a value", flag);
        return -1;
    }
    if (sl_config_set(cfg, key, argv[++*i], flag, err, sizeof err) < 0) {
        sl_cli_error("%s", err);
        return -1;
    }
    return 0;
}

/* Whether any job type loaded; if none did, says why on stderr. A worker claims
 * only the types it has handlers for, so one without any would serve nothing
 * and say nothing: a handler directory named wrong or missing would go
 * unnoticed. (On a reload, types that fail to load keep their previous
 * versions, so this concerns the start only.) */
static int has_job_types(sl_ctx *ctx, const sl_config *cfg)
{
    char *names = sl_runtime_type_names(ctx->rt, ", ");
    int any = names && *names;
    free(names);
    if (any) return 1;
    sl_buf dirs = {0};
    for (int i = 0; i < cfg->n_handler_dirs; i++)
        sl_buf_printf(&dirs, "%s%s", i ? ":" : "", cfg->handler_dirs[i]);
    sl_cli_error("serve: no job types loaded from %s (%s); not serving: a worker without "
                 "them would run nothing",
                 sl_buf_str(&dirs),
                 sl_runtime_dirs_unread(ctx->rt) ? "a handler directory cannot be read"
                                                 : "`sluice check` says why");
    sl_buf_free(&dirs);
    return 0;
}

/* Leaves serve before its loop ran: what start-up set up (sl_queue_close: the
 * runtime, the loop, an early connection; the time zones; the pidfile). */
static int serve_quit(sl_ctx *ctx, sl_worker *w, int pidfd, const char *pidfile, int status)
{
    if (w) {
        sl_watch_stop(w->watch);
        sl_tz_cache_free(w->zones);
    }
    sl_queue_close(ctx);
    sl_pidfile_release(pidfd, pidfile);
    return status;
}

/* serve's own options (argv as serve got it): into o, and the numeric settings
 * into cfg, on top of the file, the environment and the global flags (they
 * win). 0; 1 after --help, the usage printed; -1 after saying what is wrong.
 * A reload calls it again on the config it builds: the flags still win. */
int sl_worker_serve_options(sl_config *cfg, int argc, char **argv, serve_opts *o)
{
    *o = (serve_opts){.watch = 1, .prefetch = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            serve_usage(stdout);
            return 1;
        } else if (strcmp(a, "--concurrency") == 0 || strcmp(a, "-c") == 0) {
            if (number_flag(cfg, "concurrency", argc, argv, &i) < 0) return -1;
        } else if (strcmp(a, "--lease") == 0) {
            if (number_flag(cfg, "lease_seconds", argc, argv, &i) < 0) return -1;
        } else if (strcmp(a, "--grace") == 0) {
            if (number_flag(cfg, "grace_seconds", argc, argv, &i) < 0) return -1;
        } else if (strcmp(a, "--prefetch") == 0) {
            const char *v;
            long n;
            if (sl_cli_option_value(argc, argv, &i, "serve", NULL, &v) < 0 ||
                sl_cli_whole_number("--prefetch", v, 0, SL_WORKER_CLAIM_MAX, &n) < 0)
                return -1;
            o->prefetch = (int)n;
        } else if (strcmp(a, "--pidfile") == 0) {
            if (sl_cli_option_value(argc, argv, &i, "serve", NULL, &o->pidfile) < 0) return -1;
        } else if (strcmp(a, "--no-watch") == 0) {
            o->watch = 0;
        } else if (strcmp(a, "--poll") == 0) {
            if (number_flag(cfg, "poll_seconds", argc, argv, &i) < 0) return -1;
        } else {
            sl_cli_error("serve: unknown option '%s' (see `sluice serve --help`)", a);
            return -1;
        }
    }
    return 0;
}

/* The daemon, with cfg (serve's own copy, the settings in force) and its
 * options; argc and argv are serve's, for a reload. */
static int serve(sl_config *cfg, const serve_opts *o, int argc, char **argv)
{
    const char *pidfile = o->pidfile;
    int watch = o->watch, prefetch = o->prefetch;
    int pidfd = -1;
    if (pidfile && (pidfd = sl_pidfile_acquire(pidfile)) < 0) return 1;
    sl_ctx ctx = {0};
    ctx.loop = ev_default_loop(EVFLAG_AUTO);
    ctx.cfg = cfg;
    ctx.trigger_source = "scheduled";
    sl_queue_connect_early(&ctx); /* the server starts the session meanwhile */
    char err[1024];
    sl_runtime_opts ropts = {.echo = SL_ECHO_LOG};
    if (!sl_runtime_new(&ctx, &ropts, err, sizeof err)) {
        sl_cli_error("%s", err);
        return serve_quit(&ctx, NULL, pidfd, pidfile, 1);
    }
    sl_worker w = {0};
    w.ctx = &ctx;
    w.cfg = cfg;
    w.argc = argc;
    w.argv = argv;
    w.concurrency = cfg->concurrency;
    w.prefetch = prefetch >= 0 ? prefetch : DEFAULT_PREFETCH;
    /* no evidence of short runs yet: half a second of one-second runs ahead */
    w.avg_run = 1.0;
    w.zones = sl_tz_cache_new();
    sl_config_fmt_number(cfg->lease_seconds, w.lease, sizeof w.lease);
    ctx.worker = (struct sl_worker *)&w;

    /* Start-up needs the database; while it is down, keep trying (and say so).
     * SIGINT/SIGTERM meanwhile cut the wait short and stop it (exit 0). */
    struct sigaction stop = {.sa_handler = startup_signal};
    sigemptyset(&stop.sa_mask);
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGHUP, &stop, NULL);
    /* watched before the files are read: an edit made from now on, while
     * start-up waits for the database say, is a reload once the loop runs */
    if (watch) w.watch = sl_watch_start(ctx.loop, cfg, sl_worker_reload_handlers, &w);
    sl_queue_load(&ctx, 0);
    if (!has_job_types(&ctx, cfg)) return serve_quit(&ctx, &w, pidfd, pidfile, 2);
    double backoff = 1;
    PGconn *boot;
    sl_cli_errors_to_log(1); /* why an attempt failed, as a line of the log */
    int failed;
    while (!(boot = sl_queue_boot(&ctx, "serve", w.id, &failed))) {
        free((char *)ctx.db_url);
        ctx.db_url = NULL;
        if (failed == 2) {
            /* the server or libpq refuses the connection's settings (the
             * error above says which): not an outage to wait out, like a URL
             * libpq refuses; exit 2, which systemd's unit does not restart */
            sl_cli_errors_to_log(0);
            sl_log(SL_ERROR,
                   "not starting: the database refuses this connection's settings; fix them "
                   "(or the server's) and start again",
                   NULL);
            return serve_quit(&ctx, &w, pidfd, pidfile, 2);
        }
        if (!startup_stop) {
            sl_logf(SL_WARN, "start-up failed; retrying in %.0fs", backoff);
            /* in steps, so that a signal just before one is seen within 0.1 s */
            for (int step = 0; step < (int)(backoff * 10) && !startup_stop; step++)
                nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
        }
        if (startup_stop) {
            sl_cli_errors_to_log(0);
            sl_log(SL_INFO, "sluice stopped: asked to before start-up succeeded", NULL);
            return serve_quit(&ctx, &w, pidfd, pidfile, 0);
        }
        backoff = backoff * 2 > 30 ? 30 : backoff * 2;
    }
    sl_cli_errors_to_log(0);
    /* a newer sluice migrated the database (a rolling upgrade under way, or
     * this worker left behind): the schema keeps what older workers call,
     * so it serves, but says so */
    char newer[1024];
    if (sl_migrate_unknown(boot, newer, sizeof newer) > 0)
        sl_log(SL_WARN,
               "the database's schema is newer than this sluice: it has migrations this "
               "version does not; serving on it, as during a rolling upgrade, but upgrade this "
               "worker",
               "migrations", newer, "version", SLUICE_VERSION, NULL);
    /* start-up blocked the loop, whose clock still reads when it was made:
     * every timer armed from here on (the pool's connect deadlines, leases)
     * would count from then, and fire at once after a wait for the database */
    ev_now_update(ctx.loop);
    ctx.pg = sl_pg_new(ctx.loop, ctx.db_url, cfg->pool_size);
    sl_pg_reserve(ctx.pg);     /* handlers cannot hold up lease renewals */
    sl_pg_adopt(ctx.pg, boot); /* the first claim needs no new connection */

    w.types = sl_queue_type_array(ctx.rt);

    ev_init(&w.claim_timer, sl_worker_claim_timer_cb);
    w.claim_timer.data = &w;
    ev_init(&w.soon, sl_worker_soon_cb);
    w.soon.data = &w;
    ev_init(&w.grace, sl_worker_grace_cb);
    w.grace.data = &w;
    ev_init(&w.leave, sl_worker_leave_cb);
    w.leave.data = &w;
    ev_init(&w.remind, sl_worker_remind_cb);
    w.remind.data = &w;
    ev_prepare_init(&w.leaves, sl_worker_leaves_cb);
    w.leaves.data = &w;
    w.renewal = (sl_queue_lease){.ctx = &ctx,
                                 .worker = w.id,
                                 .lease = w.lease,
                                 .waiting = sl_worker_queued_ids,
                                 .not_started = sl_worker_stop_queued,
                                 .data = &w};
    sl_queue_lease_start(&w.renewal);
    double every = cfg->lease_seconds / 3 < 5 ? cfg->lease_seconds / 3 : 5;
    ev_timer_init(&w.rescue, sl_worker_rescue_cb, 0.5, every);
    w.rescue.data = &w;
    ev_timer_start(ctx.loop, &w.rescue);
    ev_timer_init(&w.logflush, sl_worker_logflush_cb, 2, 2);
    w.logflush.data = &w;
    ev_timer_start(ctx.loop, &w.logflush);
    /* the first pass half a minute after start (unless passes are closer):
     * not in the rush of a start, not so late a short-lived worker never
     * makes one */
    double pass = cfg->retention_every_minutes * 60;
    ev_timer_init(&w.retention, sl_worker_retention_cb, pass < 30 ? pass : 30, pass);
    w.retention.data = &w;
    ev_timer_start(ctx.loop, &w.retention);
    ev_signal_init(&w.sigint, sl_worker_signal_cb, SIGINT);
    w.sigint.data = &w;
    ev_signal_start(ctx.loop, &w.sigint);
    ev_signal_init(&w.sigterm, sl_worker_signal_cb, SIGTERM);
    w.sigterm.data = &w;
    ev_signal_start(ctx.loop, &w.sigterm);
    if (startup_stop) raise(SIGTERM); /* asked while the last start-up attempt ran */
    signal(SIGPIPE, SIG_IGN);

    ev_signal_init(&w.sighup, sl_worker_sighup_cb, SIGHUP);
    w.sighup.data = &w;
    ev_signal_start(ctx.loop, &w.sighup);
    if (startup_reload) raise(SIGHUP); /* asked during start-up */
    sl_pg_listen(ctx.pg, "sluice_jobs", sl_worker_on_notify, &w);
    sl_pg_listen(ctx.pg, "sluice_cancel", sl_worker_on_notify, &w);
    sl_worker_cycle(&w);
    sl_pg_warmup(ctx.pg, WARMUP_SQL); /* behind the first claim on its connection */
    /* while the first claim is in flight: what the first runs would set up */
    sl_runtime_preload(ctx.rt);
    if (!ctx.http) ctx.http = sl_http_new(ctx.loop, cfg);
    /* said once every watcher is set up: a file edited or a signal sent after
     * this line is acted on */
    char *names = sl_runtime_type_names(ctx.rt, ", ");
    char conc[16];
    snprintf(conc, sizeof conc, "%d", w.concurrency);
    sl_log(SL_INFO, "sluice serving", "worker", w.id, SL_NUM "concurrency", conc, "job_types",
           names, "version", SLUICE_VERSION, NULL);
    free(names);
    sl_notify("READY=1\nSTATUS=serving");
    ev_run(ctx.loop, 0);

    sl_log(SL_INFO, "sluice stopped", "worker", w.id, NULL);
    ev_timer_stop(ctx.loop, &w.claim_timer);
    ev_timer_stop(ctx.loop, &w.soon);
    ev_timer_stop(ctx.loop, &w.grace);
    ev_timer_stop(ctx.loop, &w.leave);
    ev_timer_stop(ctx.loop, &w.remind);
    ev_prepare_stop(ctx.loop, &w.leaves);
    sl_queue_lease_stop(&w.renewal);
    ev_timer_stop(ctx.loop, &w.rescue);
    ev_timer_stop(ctx.loop, &w.retention);
    ev_timer_stop(ctx.loop, &w.logflush);
    ev_signal_stop(ctx.loop, &w.sigint);
    ev_signal_stop(ctx.loop, &w.sigterm);
    ev_signal_stop(ctx.loop, &w.sighup);
    sl_watch_stop(w.watch);
    sl_runtime_free(ctx.rt);
    sl_http_free(ctx.http); /* after the runtime: its runs cancelled their requests */
    ctx.http = NULL;
    sl_pg_free(ctx.pg); /* requests still queued are dropped without their callbacks */
    sl_worker_free_held(&w);
    sl_tz_cache_free(w.zones);
    free(w.types);
    free((char *)ctx.db_url);
    ev_loop_destroy(ctx.loop);
    sl_pidfile_release(pidfd, pidfile);
    return w.exit_status;
}

int sl_cmd_serve(const sl_config *cfg_in, int argc, char **argv)
{
    sl_config cfg; /* the settings in force: serve's own, which a reload updates */
    serve_opts o;
    sl_config_copy(&cfg, cfg_in);
    int r = sl_worker_serve_options(&cfg, argc, argv, &o);
    int status = r < 0 ? 2 : r > 0 ? 0 : serve(&cfg, &o, argc, argv);
    sl_config_free(&cfg);
    return status;
}
