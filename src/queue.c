/*
 * queue.c — client side of the job state machine (see queue.h): start-up with
 * a blocking connection, claimed rows → run specs, outcomes → finish entries,
 * and the next cron slot of recurring jobs.
 */
#include "queue.h"
#include "buf.h"
#include "cli.h"
#include "config.h"
#include "cron.h"
#include "ctx.h"
#include "http.h"
#include "log.h"
#include "pg.h"
#include "tz.h"

#include <ev.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *field(const PGresult *res, int row, int c)
{
    if (c < 0 || PQgetisnull(res, row, c)) return NULL;
    return PQgetvalue(res, row, c);
}

void sl_queue_claim_columns(const PGresult *res, sl_claim_columns *out)
{
    *out = (sl_claim_columns){
        .run_id = PQfnumber(res, "run_id"),
        .job_id = PQfnumber(res, "job_id"),
        .job_type = PQfnumber(res, "job_type"),
        .brand_id = PQfnumber(res, "brand_id"),
        .parameters = PQfnumber(res, "parameters"),
        .checkpoint = PQfnumber(res, "checkpoint"),
        .trigger_source = PQfnumber(res, "trigger_source"),
        .attempt_number = PQfnumber(res, "attempt_number"),
        .timeout_seconds = PQfnumber(res, "timeout_seconds"),
        .schedule_type = PQfnumber(res, "schedule_type"),
        .cron_expression = PQfnumber(res, "cron_expression"),
        .timezone = PQfnumber(res, "timezone"),
    };
}

void sl_queue_claimed(const PGresult *res, int row, const sl_claim_columns *cols, sl_claimed *out)
{
    memset(out, 0, sizeof *out);
    out->spec.run_id = field(res, row, cols->run_id);
    out->spec.job_id = field(res, row, cols->job_id);
    out->spec.job_type = field(res, row, cols->job_type);
    out->spec.brand_id = field(res, row, cols->brand_id);
    out->spec.params_json = field(res, row, cols->parameters);
    out->spec.checkpoint_json = field(res, row, cols->checkpoint);
    out->spec.trigger_source = field(res, row, cols->trigger_source);
    const char *a = field(res, row, cols->attempt_number);
    out->spec.attempt = a ? atoi(a) : 1;
    const char *t = field(res, row, cols->timeout_seconds);
    out->spec.timeout_seconds = t ? atof(t) : 0;
    out->schedule_type = field(res, row, cols->schedule_type);
    out->spec.cron_expression = field(res, row, cols->cron_expression);
    out->spec.timezone = field(res, row, cols->timezone);
}

static const char *const status_names[] = {"running", "completed", "failed", "cancelled"};

const char *sl_queue_status_name(int status)
{
    return status >= 0 && status <= SL_RUN_CANCELLED ? status_names[status] : "failed";
}

void sl_queue_outcome_json(sl_buf *b, sl_run *run, const char *next_cron)
{
    sl_queue_outcome_json_of(b, sl_run_id(run), sl_run_outcome_of(run), next_cron);
}

/* A count in decimal. */
static void put_size(sl_buf *b, unsigned long long n)
{
    char digits[24], *at = digits + sizeof digits;
    do {
        *--at = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    sl_buf_add(b, at, (size_t)(digits + sizeof digits - at));
}

/* Epoch seconds to the microsecond, digit by digit: the outcome of every
 * ended run has two, and formatting them through printf was most of what
 * writing an outcome cost the daemon at 20,000 runs a second. */
static void put_epoch(sl_buf *b, double t)
{
    long long us = llround(t * 1e6);
    unsigned long long u = us < 0 ? 0ULL - (unsigned long long)us : (unsigned long long)us;
    if (us < 0) sl_buf_puts(b, "-");
    put_size(b, u / 1000000);
    char frac[7], *at = frac + sizeof frac;
    u %= 1000000;
    for (int i = 0; i < 6; i++, u /= 10)
        *--at = (char)('0' + u % 10);
    *--at = '.';
    sl_buf_add(b, frac, sizeof frac);
}

/* A field left out reads as its default in finish_runs() (jsonb_to_recordset
 * gives NULL, as for a JSON null): result, error, next_cron and datasets null,
 * logs empty, retryable true. Most outcomes are bare completions, and the
 * database parses every byte of the batch. */
void sl_queue_outcome_json_of(sl_buf *b, const char *run_id, const sl_run_outcome *o,
                              const char *next_cron)
{
    sl_buf_puts(b, "{\"run_id\":");
    sl_buf_json_string(b, run_id);
    sl_buf_puts(b, ",\"status\":");
    sl_buf_json_string(b, sl_queue_status_name(o->status));
    if (o->result_json && strcmp(o->result_json, "null") != 0) {
        sl_buf_puts(b, ",\"result\":");
        sl_buf_puts(b, o->result_json);
    }
    if (o->error) {
        sl_buf_puts(b, ",\"error\":");
        sl_buf_json_string(b, o->error);
    }
    if (o->logs && *o->logs) {
        sl_buf_puts(b, ",\"logs\":");
        sl_buf_json_string(b, o->logs);
    }
    if (!o->retryable) sl_buf_puts(b, ",\"retryable\":false");
    if (next_cron && *next_cron) {
        sl_buf_puts(b, ",\"next_cron\":");
        sl_buf_json_string(b, next_cron);
    }
    if (o->datasets_json) {
        sl_buf_puts(b, ",\"datasets\":");
        sl_buf_puts(b, o->datasets_json);
    }
    if (o->handler_version) {
        sl_buf_puts(b, ",\"handler_version\":");
        sl_buf_json_string(b, o->handler_version);
    }
    sl_buf_puts(b, ",\"started_at\":");
    put_epoch(b, o->started);
    sl_buf_puts(b, ",\"finished_at\":");
    put_epoch(b, o->finished);
    sl_buf_puts(b, ",\"log_from\":");
    put_size(b, o->log_from);
    sl_buf_puts(b, "}");
}

void sl_queue_bare_failure_json(sl_buf *b, const char *run_id, const sl_run_outcome *o,
                                const char *error)
{
    sl_run_outcome bare = *o;
    bare.status = SL_RUN_FAILED;
    bare.error = error;
    bare.result_json = NULL;
    bare.logs = NULL;
    bare.datasets_json = NULL;
    bare.retryable = 1;
    sl_queue_outcome_json_of(b, run_id, &bare, NULL);
}

int sl_queue_cron_slot(const char *cron, const char *tzname, sl_tz_cache *zones, char out[40],
                       char *why, size_t whylen)
{
    char err[256];
    out[0] = '\0';
    sl_cron *c = sl_cron_parse(cron, err, sizeof err);
    if (!c) {
        snprintf(why, whylen, "bad cron expression '%s': %s", cron, err);
        return -1;
    }
    const char *name = tzname && *tzname ? tzname : "UTC";
    sl_tz *own = zones ? NULL : sl_tz_load(name, err, sizeof err);
    const sl_tz *tz = zones ? sl_tz_cache_get(zones, name, err, sizeof err) : own;
    if (!tz) {
        snprintf(why, whylen, "bad time zone '%s': %s", tzname, err);
        sl_cron_free(c);
        return -1;
    }
    /* Strictly after the current second by the precise clock: time() reads a
     * coarse one, up to a few ms behind, so a run that ended moments after its
     * slot began was given that same slot again, and ran twice. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t next;
    int rc = sl_cron_next(c, tz, (int64_t)now.tv_sec, &next);
    if (rc == 0) {
        time_t tt = (time_t)next;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(out, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
    } else {
        snprintf(why, whylen, "cron expression '%s' never fires", cron);
    }
    if (own) sl_tz_free(own);
    sl_cron_free(c);
    return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ leases */

void sl_queue_stop(sl_queue_lease *l, const char *run_id, const char *reason)
{
    sl_run *run = sl_runtime_find_run(l->ctx->rt, run_id);
    if (!run) {
        if (l->not_started) l->not_started(run_id, reason, l->data);
        return;
    }
    if (strcmp(reason, "cancelled") == 0) {
        sl_log(SL_INFO, "cancelling run: its job was cancelled", "run", run_id, "type",
               sl_run_job_type(run), NULL);
        sl_run_cancel(run, SL_RUN_CANCELLED, "cancelled", 0);
    } else if (strcmp(reason, "deleted") == 0) {
        sl_log(SL_WARN, "stopping run: its job was deleted", "run", run_id, "type",
               sl_run_job_type(run), NULL);
        sl_run_cancel(run, SL_RUN_CANCELLED, "its job was deleted", 0);
    } else if (strcmp(reason, "lost") == 0) {
        sl_log(SL_WARN,
               "stopping run: its lease expired and it was failed (another worker may run it)",
               "run", run_id, "type", sl_run_job_type(run), NULL);
        sl_run_cancel(run, SL_RUN_FAILED, "lease lost: the run was failed after its lease expired",
                      1);
    } /* "paused": a run in flight finishes */
}

/* The fence: no renewal has succeeded for most of a lease, so other workers may
 * soon (by the database's clock) fail this process's runs and retry their jobs.
 * The runs stop here first rather than run beside those retries; their
 * outcomes are recorded once the database answers again (as failures, retried
 * by policy, unless a rescue already failed them). */
static void fence_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    sl_queue_lease *l = t->data;
    char why[160];
    snprintf(why, sizeof why,
             "lease lost: no lease renewal succeeded for %.0f s (the lease is %s s)",
             ev_now(l->ctx->loop) - l->renewed_at, l->lease);
    if (l->not_started) l->not_started(NULL, "lost", l->data);
    if (sl_runtime_active(l->ctx->rt) > 0) {
        sl_log(SL_WARN, "stopping every run: the database has not renewed this process's leases",
               "error", why, NULL);
        sl_runtime_cancel_all_runs(l->ctx->rt, why);
    }
    /* nothing is held now: the runs claimed from here on set the fence anew */
    l->renewed_at = ev_now(l->ctx->loop);
    if (l->sending_at > 0) l->flight_base = l->renewed_at;
}

/* Arms the fence at FENCE_SHARE of a lease after renewed_at: the sending of
 * the last renewal that succeeded or of a claim answered since (the database's
 * lease runs from later). */
#define FENCE_SHARE 0.9
static void arm_fence(sl_queue_lease *l)
{
    struct ev_loop *loop = l->ctx->loop;
    double at = l->renewed_at + FENCE_SHARE * l->lease_seconds - ev_now(loop);
    ev_timer_stop(loop, &l->fence);
    ev_timer_set(&l->fence, at > 0 ? at : 0, 0);
    ev_timer_start(loop, &l->fence);
}

int sl_queue_lease_fenced(sl_queue_lease *l)
{
    struct ev_loop *loop = l->ctx->loop;
    /* the clock, not the loop's time: a process stopped in the middle of a
     * callback goes on with the loop's time from before */
    if (!l->holding || ev_time() - l->renewed_at < FENCE_SHARE * l->lease_seconds) return 0;
    /* its time has passed, its timer not run yet: the loop was held up */
    ev_now_update(loop);
    ev_timer_stop(loop, &l->fence);
    fence_cb(loop, &l->fence, 0);
    return 1;
}

static void renewed(PGresult *res, const char *err, void *data)
{
    sl_queue_lease *l = data;
    l->sending_at = 0;
    l->req = NULL;
    /* during an outage the pool says so once, and the fence below says what
     * it costs */
    sl_log_attempt(&l->failing, sl_pg_outage_error(l->ctx->pg) ? SL_DEBUG : SL_WARN,
                   ev_now(l->ctx->loop), err, "lease renewal failed", "lease renewal works again");
    if (!err) {
        if (l->flight_base > l->renewed_at) l->renewed_at = l->flight_base;
        if (l->holding) arm_fence(l);
        /* runs waiting for a slot first: stopping a run in flight frees its
         * slot, which must not go to a waiting run the answer also names */
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < PQntuples(res); i++) {
                const char *id = PQgetvalue(res, i, 0);
                if ((sl_runtime_find_run(l->ctx->rt, id) != NULL) == pass)
                    sl_queue_stop(l, id, PQgetvalue(res, i, 1));
            }
    }
    if (res) PQclear(res);
}

/* Sends one renewal for every run held (those in flight, then those waiting),
 * unless the last one is still unanswered. */
static void renew_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    sl_queue_lease *l = t->data;
    if (l->sending_at > 0) return; /* the last one has not been answered yet */
    if (!l->ctx->pg) return;       /* no database (a REPL started without one) */
    sl_buf held = {0}, ids = {0};
    sl_runtime_run_ids(l->ctx->rt, &held); /* "a,b," */
    if (l->waiting) l->waiting(&held, l->data);
    sl_buf_id_array(&ids, sl_buf_str(&held));
    sl_buf_free(&held);
    l->sending_at = ev_now(loop);
    l->flight_base = l->sending_at; /* it names every run held now */
    const char *params[] = {l->worker, l->lease, sl_buf_str(&ids)};
    sl_pg_req *req =
        sl_pg_query_prepared(l->ctx->pg, "sl_renew_leases",
                             "SELECT run_id, reason FROM sluice.renew_leases($1, $2, $3::uuid[])",
                             3, params, renewed, l);
    if (l->sending_at > 0) l->req = req; /* not answered at once (renewed() clears it) */
    sl_buf_free(&ids);
}

/* Holds the runs from now on, their leases running from `since` at least. */
static void hold(sl_queue_lease *l, double since)
{
    struct ev_loop *loop = l->ctx->loop;
    double every = l->lease_seconds / 3;
    ev_init(&l->fence, fence_cb);
    l->fence.data = l;
    ev_timer_init(&l->renew, renew_cb, every, every);
    l->renew.data = l;
    l->holding = 1;
    l->renewed_at = since;
    arm_fence(l);
    ev_timer_start(loop, &l->renew);
}

void sl_queue_lease_start(sl_queue_lease *l)
{
    l->lease_seconds = atof(l->lease);
    hold(l, ev_now(l->ctx->loop)); /* a claim gave the runs a fresh lease */
}

int sl_queue_lease_claimed(sl_queue_lease *l, double sent)
{
    if (!l->holding) l->lease_seconds = atof(l->lease);
    if (ev_now(l->ctx->loop) - sent >= FENCE_SHARE * l->lease_seconds) return -1;
    if (!l->holding) {
        hold(l, sent);
        return 0;
    }
    if (sent < l->renewed_at) l->renewed_at = sent;
    if (l->sending_at > 0 && sent < l->flight_base) l->flight_base = sent;
    arm_fence(l);
    return 0;
}

void sl_queue_late_claim_why(char *buf, size_t len, double after, const char *lease)
{
    snprintf(buf, len,
             "its claim came back %.1f s after it was sent, too late for its %s s lease (a rescue "
             "may already have failed it)",
             after, lease);
}

void sl_queue_lease_stop(sl_queue_lease *l)
{
    if (l->holding) {
        ev_timer_stop(l->ctx->loop, &l->renew);
        ev_timer_stop(l->ctx->loop, &l->fence);
    }
    l->holding = 0;
    if (l->req) sl_pg_cancel(l->req); /* its answer would find nothing to renew */
    l->req = NULL;
    l->sending_at = 0;
}

void sl_queue_next_cron(const char *job_id, const char *cron, const char *tzname,
                        sl_tz_cache *zones, char out[40])
{
    char why[512];
    out[0] = '\0';
    if (!cron || !*cron) return;
    if (sl_queue_cron_slot(cron, tzname, zones, out, why, sizeof why) < 0)
        sl_log(SL_ERROR, "cannot compute the next slot of a recurring job; it will be failed",
               "job", job_id, "error", why, NULL);
}

/* ------------------------------------------------------------------ set-up */

int sl_queue_open(sl_ctx *ctx, const sl_config *cfg, int echo)
{
    char err[1024];
    memset(ctx, 0, sizeof *ctx);
    ctx->loop = ev_default_loop(EVFLAG_AUTO);
    ctx->cfg = cfg;
    sl_runtime_opts opts = {.echo = echo};
    if (!sl_runtime_new(ctx, &opts, err, sizeof err)) {
        sl_cli_error("%s", err);
        ev_loop_destroy(ctx->loop);
        ctx->loop = NULL;
        return -1;
    }
    return 0;
}

void sl_queue_connect_early(sl_ctx *ctx)
{
    if (!ctx->early) ctx->early = sl_cli_open_early(ctx->cfg);
}

void sl_queue_close(sl_ctx *ctx)
{
    sl_cli_early_free(ctx->early);
    ctx->early = NULL;
    sl_runtime_free(ctx->rt);
    ctx->rt = NULL;
    sl_http_free(ctx->http); /* after the runtime: its runs cancelled their requests */
    ctx->http = NULL;
    sl_pg_free(ctx->pg);
    ctx->pg = NULL;
    free((char *)ctx->db_url);
    ctx->db_url = NULL;
    if (ctx->loop) ev_loop_destroy(ctx->loop);
    ctx->loop = NULL;
}

/* ------------------------------------------------------------------ boot */

static void print_problems(const char *problems, int strict)
{
    const char *p = problems;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        char line[2048];
        snprintf(line, sizeof line, "%.*s", n, p);
        if (strict)
            sl_cli_error("%s", line);
        else
            sl_log(SL_ERROR, "handler rejected", "problem", line, NULL);
        p = nl ? nl + 1 : NULL;
    }
}

/* The expressions that sync ($1: the registry): in full, or in part when a
 * handler directory could not be read (its types are not known to be gone) or
 * the process is no daemon (it does not say what the daemons serve:
 * 200_only_daemons_retire_types.sql). The partial one does nothing when the
 * last full sync had this very registry (091_registry_state.sql). */
#define SYNC_FULL "sluice.sync_registry_if_changed($1::jsonb)"
#define SYNC_PARTIAL                                                                               \
    "CASE WHEN EXISTS (SELECT 1 FROM sluice.registry_state WHERE types_md5 = "                     \
    "md5($1::jsonb::text)) THEN 0 ELSE sluice.sync_registry($1::jsonb, true) END"

static int sync_partial(const sl_runtime *rt, int daemon)
{
    return !daemon || sl_runtime_dirs_unread(rt);
}

const char *sl_queue_registry_sync_sql(const sl_runtime *rt, int daemon)
{
    if (!daemon) return "SELECT " SYNC_PARTIAL;
    return sl_runtime_dirs_unread(rt)
               ? "SELECT sluice.sync_daemon_registry($1::jsonb, $2::uuid, $3::text[], true)"
               : "SELECT sluice.sync_daemon_registry($1::jsonb, $2::uuid, $3::text[], false)";
}

char *sl_queue_type_array(sl_runtime *rt)
{
    char *names = sl_runtime_type_names(rt, ",");
    sl_buf b = {0};
    sl_buf_printf(&b, "{%s}", names);
    free(names);
    return b.data;
}

int sl_queue_load(sl_ctx *ctx, int strict)
{
    char *problems = NULL;
    int nproblems = sl_runtime_load_handlers(ctx->rt, NULL, 0, &problems);
    if (nproblems > 0) print_problems(problems, strict);
    free(problems);
    return strict && nproblems > 0 ? -1 : 0;
}

/* Registers the process in sluice.workers as `kind`, with the types it has
 * handlers for and its lease, into worker_id. 0, or -1 after printing the
 * error. */
static int register_worker(PGconn *c, sl_ctx *ctx, const char *kind, char worker_id[40])
{
    char host[256] = "", pid[32], conc[32], lease[32];
    gethostname(host, sizeof host - 1);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(conc, sizeof conc, "%d", ctx->cfg->concurrency);
    snprintf(lease, sizeof lease, "%g", ctx->cfg->lease_seconds);
    char *types = sl_queue_type_array(ctx->rt);
    const char *p[] = {host, pid, kind, conc, SLUICE_VERSION, types, lease};
    PGresult *r = sl_cli_exec(c,
                              "INSERT INTO sluice.workers (hostname, pid, kind, concurrency, "
                              "version, types, lease_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                              "RETURNING id",
                              7, p);
    free(types);
    if (!r) return -1;
    snprintf(worker_id, 40, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

/* Syncs the registry of the loaded handlers: in full for a daemon. 0, or -1
 * after printing the error. */
static int sync_registry(PGconn *c, sl_ctx *ctx, int daemon)
{
    char *reg = sl_runtime_registry_json(ctx->rt);
    if (!reg) {
        sl_cli_error("cannot describe the handler registry (see the log above)");
        return -1;
    }
    const char *p[] = {reg};
#define LAZY "SELECT set_config('synchronous_commit', 'off', true), "
    PGresult *r =
        sl_cli_exec(c, sync_partial(ctx->rt, daemon) ? LAZY SYNC_PARTIAL : LAZY SYNC_FULL, 1, p);
#undef LAZY
    free(reg);
    if (!r) return -1;
    PQclear(r);
    return 0;
}

/* sl_queue_boot but for *status, which only the connection's failure sets. A
 * worker is registered before the sync, so of two daemons starting at once
 * the second to sync sees the first's types (and its own sync puts back any of
 * its types the first one's retired): 200_only_daemons_retire_types.sql. */
static PGconn *boot(sl_ctx *ctx, const char *kind, char worker_id[40], int *status)
{
    char *url = NULL;
    PGconn *c = sl_cli_open_finish(ctx->cfg, ctx->early, &url, status);
    ctx->early = NULL;
    if (!c) return NULL;
    ctx->db_url = url;
    if (worker_id && register_worker(c, ctx, kind, worker_id) < 0) {
        PQfinish(c);
        return NULL;
    }
    if (sync_registry(c, ctx, strcmp(kind, "serve") == 0) < 0) {
        if (worker_id) { /* a start-up retried registers again: this row is done */
            const char *p[] = {worker_id};
            PQclear(PQexecParams(c, "UPDATE sluice.workers SET stopped_at = now() WHERE id = $1", 1,
                                 NULL, p, NULL, NULL, 0));
        }
        PQfinish(c);
        return NULL;
    }
    return c;
}

PGconn *sl_queue_boot(sl_ctx *ctx, const char *kind, char worker_id[40], int *status)
{
    int failed = 1;
    PGconn *c = boot(ctx, kind, worker_id, &failed);
    if (!c && status) *status = failed;
    return c;
}
