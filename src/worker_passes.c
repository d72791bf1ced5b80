/*
 * worker_passes.c — `sluice serve`'s periodic passes, each on its own timer:
 * the rescue pass (failing runs whose lease expired, whatever worker held
 * them, but for those this worker still holds; slotting recurring jobs that
 * have no next slot; letting go of the abandoned runs no longer running here;
 * settling which job types are available against the live workers),
 * the retention pass (archiving old jobs, pruning old runs), and the log flush
 * (recording the new log lines of runs in flight every few seconds). Each
 * fails quietly and tries again at its next turn: none stops the daemon.
 */
#include "buf.h"
#include "config.h"
#include "log.h"
#include "pg.h"
#include "queue.h"
#include "runtime.h"
#include "worker_int.h"

#include <ev.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ leases */

/* A column's value, NULL when it is NULL or not in the result (col -1). */
static const char *col_or_null(const PGresult *res, int row, int col)
{
    return col < 0 || PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static void rescue_done(PGresult *res, const char *err, void *data)
{
    sl_worker *w = data;
    w->rescuing--;
    if (sl_worker_note_attempt(w, &w->failing.rescue, err, "rescue pass failed",
                               "rescue pass works again"))
        return;
    int n = 0, error_col = PQfnumber(res, "error"), decision = PQfnumber(res, "decision"),
        type = PQfnumber(res, "job_type");
    for (int i = 0; i < PQntuples(res); i++) {
        if (error_col >= 0 && !PQgetisnull(res, i, error_col)) {
            /* it stays running with its lease expired: tried again next pass */
            sl_log(SL_ERROR, "could not fail a run whose worker was lost; will try again", "run",
                   PQgetvalue(res, i, 0), "type", col_or_null(res, i, type), "error",
                   PQgetvalue(res, i, error_col), NULL);
            continue;
        }
        sl_log(SL_WARN, "failed a run whose worker was lost (lease expired)", "run",
               PQgetvalue(res, i, 0), "type", col_or_null(res, i, type), "job_status",
               PQgetvalue(res, i, 1), "then", col_or_null(res, i, decision), NULL);
        n++;
    }
    PQclear(res);
    if (n > 0) sl_worker_cycle(w);
}

/* Recurring jobs without a next slot (created through SQL, or rescued): compute
 * their slots here, where the cron evaluator is. */
static void unscheduled_done(PGresult *res, const char *err, void *data)
{
    sl_worker *w = data;
    w->rescuing--;
    if (sl_worker_note_attempt(w, &w->failing.unscheduled, err,
                               "looking for unscheduled recurring jobs failed",
                               "looking for unscheduled recurring jobs works again"))
        return;
    int n = PQntuples(res);
    if (n > 0) {
        sl_buf b = {0};
        sl_buf_puts(&b, "[");
        for (int i = 0; i < n; i++) {
            char next[40], why[256];
            if (i) sl_buf_puts(&b, ",");
            sl_buf_puts(&b, "{\"id\":");
            sl_buf_json_string(&b, PQgetvalue(res, i, 0));
            if (sl_queue_cron_slot(PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), w->zones, next,
                                   why, sizeof why) == 0) {
                sl_buf_puts(&b, ",\"next_run_at\":");
                sl_buf_json_string(&b, next);
            } else {
                sl_log(SL_ERROR, "a recurring job's schedule cannot be evaluated; failing the job",
                       "job", PQgetvalue(res, i, 0), "error", why, NULL);
                sl_buf_puts(&b, ",\"error\":");
                sl_buf_json_string(&b, why);
            }
            sl_buf_puts(&b, "}");
        }
        sl_buf_puts(&b, "]");
        const char *p[] = {sl_buf_str(&b)};
        sl_pg_query(w->ctx->pg, "SELECT sluice.set_next_slots($1::jsonb)", 1, p,
                    sl_worker_ignore_result, "scheduling recurring jobs failed");
        sl_buf_free(&b);
    }
    PQclear(res);
}

/* The registry's availability settled against the live daemons: a type no
 * live daemon serves any longer marked unavailable, one this worker serves
 * that another took for gone available again (200_only_daemons_retire_types.sql). */
static void served_done(PGresult *res, const char *err, void *data)
{
    sl_worker *w = data;
    w->rescuing--;
    if (sl_worker_note_attempt(w, &w->failing.served, err,
                               "settling which job types are served failed",
                               "settling which job types are served works again"))
        return;
    for (int i = 0; i < PQntuples(res); i++) {
        if (*PQgetvalue(res, i, 1) == 't')
            sl_log(SL_INFO, "job type available again: this worker serves it", "type",
                   PQgetvalue(res, i, 0), NULL);
        else
            sl_log(SL_INFO, "job type marked unavailable: no live worker serves it any longer",
                   "type", PQgetvalue(res, i, 0), NULL);
    }
    PQclear(res);
}

/* Removes id from ids ("a,b,"), if there. */
static void drop_id(sl_buf *ids, const char *id)
{
    size_t n = strlen(id);
    for (size_t at = 0; at < ids->len;) {
        const char *comma = memchr(ids->data + at, ',', ids->len - at);
        size_t len = comma ? (size_t)(comma - (ids->data + at)) : ids->len - at;
        size_t next = at + len + (comma != NULL);
        if (len == n && memcmp(ids->data + at, id, n) == 0) {
            memmove(ids->data + at, ids->data + next, ids->len - next + 1); /* and the NUL */
            ids->len -= next - at;
            return;
        }
        at = next;
    }
}

static void abandoned_checked(PGresult *res, const char *err, void *data)
{
    sl_worker *w = data;
    w->checking_abandoned = 0;
    if (sl_worker_note_attempt(w, &w->failing.abandoned, err,
                               "looking for runs whose outcomes were refused failed",
                               "looking for runs whose outcomes were refused works again")) {
        if (res) PQclear(res);
        return;
    }
    int n = PQntuples(res);
    if (n > 0) {
        unflushed *f = sl_xcalloc(1, sizeof *f);
        f->at = ev_now(w->ctx->loop);
        for (int i = 0; i < n; i++) {
            drop_id(&w->abandoned, PQgetvalue(res, i, 0));
            sl_buf_puts(&f->ids, PQgetvalue(res, i, 0));
            sl_buf_puts(&f->ids, ",");
        }
        sl_buf runs = {0};
        sl_buf_id_array(&runs, sl_buf_str(&f->ids));
        f->next = w->unflushed;
        w->unflushed = f;
        char count[16];
        snprintf(count, sizeof count, "%d", n);
        sl_log(SL_DEBUG, "runs whose outcomes were refused are no longer running here",
               SL_NUM "count", count, "runs", sl_buf_str(&runs), NULL);
        sl_buf_free(&runs);
    }
    PQclear(res);
}

/* The runs whose outcomes the database refused outright (refused(): in
 * w->abandoned) stay running under this worker until their leases run out and
 * a rescue, this worker's or another's, fails them; held till then, they would
 * be held for the worker's lifetime. Asked with each rescue pass while there
 * are any: those no longer running here, which no sweep can give back any
 * more. They leave w->abandoned for the runs ended lazily (unflushed), as the
 * rescue committed lazily: a crash of the database may still set one running
 * here again, until a durable cycle sent after this answer drops them. */
static void check_abandoned(sl_worker *w)
{
    sl_buf ids = {0};
    sl_buf_id_array(&ids, sl_buf_str(&w->abandoned));
    const char *params[] = {sl_buf_str(&ids), w->id};
    w->checking_abandoned = 1;
    sl_pg_query(w->ctx->pg,
                "SELECT u.id FROM unnest($1::uuid[]) AS u(id) WHERE NOT EXISTS (SELECT 1 FROM "
                "sluice.scheduled_job_runs r WHERE r.id = u.id AND r.status = 'running' AND "
                "r.worker_id = $2)",
                2, params, abandoned_checked, w);
    sl_buf_free(&ids);
}

void sl_worker_rescue_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    sl_worker *w = t->data;
    if (w->stopping) return;
    /* the last pass still waits (a table locked): passes sent behind it
     * would pile up in the pool's queue for as long as the lock is held */
    if (w->rescuing > 0) return;
    /* the runs whose outcomes this worker is to record are not lost, even
     * with their leases expired (the database was out of reach longer than
     * a lease): their outcomes are recorded as they are; a run in flight that
     * went unrenewed that long was stopped by the fence */
    sl_buf held = {0}, spare = {0};
    sl_worker_put_held_ids(w, &held);
    sl_buf_id_array(&spare, sl_buf_str(&held));
    sl_buf_free(&held);
    const char *params[] = {sl_buf_str(&spare)};
    /* a worker that could not read a handler directory does not know what it
     * serves, and says nothing of it */
    int settle = !sl_runtime_dirs_unread(w->ctx->rt);
    w->rescuing = 2 + settle;
    sl_pg_query(w->ctx->pg,
                "SELECT run_id, job_status, error, decision, (SELECT r.job_type FROM "
                "sluice.scheduled_job_runs r WHERE r.id = l.run_id) AS job_type "
                "FROM sluice.rescue_lost_runs($1::uuid[]) l",
                1, params, rescue_done, w);
    sl_buf_free(&spare);
    sl_pg_query(w->ctx->pg, "SELECT * FROM sluice.unscheduled_jobs(100)", 0, NULL, unscheduled_done,
                w);
    if (settle) {
        const char *served[] = {w->types};
        sl_pg_query(w->ctx->pg,
                    "SELECT name, available FROM sluice.settle_served_types($1::text[])", 1, served,
                    served_done, w);
    }
    if (w->abandoned.len && !w->checking_abandoned) check_abandoned(w);
}

static void retention_done(PGresult *res, const char *err, void *data)
{
    sl_worker *w = data;
    if (sl_worker_note_attempt(w, &w->failing.retention, err, "retention pass failed",
                               "retention pass works again"))
        return;
    int workers = PQfnumber(res, "workers");
    if (PQntuples(res) == 1 && (atoi(PQgetvalue(res, 0, 0)) || atoi(PQgetvalue(res, 0, 1)) ||
                                (workers >= 0 && atoi(PQgetvalue(res, 0, workers)))))
        sl_log(SL_INFO, "retention", SL_NUM "archived_jobs", PQgetvalue(res, 0, 0),
               SL_NUM "pruned_runs", PQgetvalue(res, 0, 1), SL_NUM "pruned_workers",
               workers >= 0 ? PQgetvalue(res, 0, workers) : NULL, NULL);
    PQclear(res);
}

void sl_worker_retention_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    sl_worker *w = t->data;
    char an[40], pn[40], a[48], p[48];
    sl_config_fmt_number(w->cfg->archive_after_days, an, sizeof an);
    sl_config_fmt_number(w->cfg->prune_after_days, pn, sizeof pn);
    snprintf(a, sizeof a, "%s days", an);
    snprintf(p, sizeof p, "%s days", pn);
    const char *params[] = {a, p};
    sl_pg_query(w->ctx->pg, "SELECT * FROM sluice.apply_retention($1::interval, $2::interval)", 2,
                params, retention_done, w);
}

/* ------------------------------------------------------------------ log flush */

typedef struct {
    sl_worker *w;
    int n;
    sl_log_chunk chunks[];
} logflush_req;

static void logs_done(PGresult *res, const char *err, void *data)
{
    logflush_req *q = data;
    sl_worker *w = q->w;
    w->flushing_logs = 0;
    w->flush = NULL;
    if (!sl_worker_note_attempt(w, &w->failing.log_flush, err,
                                "recording log lines failed; they are recorded when the run ends",
                                "recording log lines works again")) {
        /* only the runs the statement appended to (a run that ended meanwhile
         * records its lines with its outcome) */
        for (int r = 0; r < PQntuples(res); r++)
            for (int i = 0; i < q->n; i++)
                if (strcmp(q->chunks[i].run_id, PQgetvalue(res, r, 0)) == 0)
                    sl_runtime_logs_sent(w->ctx->rt, &q->chunks[i]);
    }
    if (res) PQclear(res);
    free(q);
    sl_worker_maybe_exit(w);
}

/* Every few seconds, the new log lines of runs in flight: one statement. */
void sl_worker_logflush_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    sl_worker *w = t->data;
    if (w->flushing_logs || w->stopping == 2) return;
    sl_buf b = {0};
    logflush_req *q =
        calloc(1, sizeof *q + sizeof q->chunks[0] * (size_t)sl_runtime_active(w->ctx->rt));
    if (!q) return; /* out of memory: the lines wait for the next flush */
    q->w = w;
    q->n = sl_runtime_pending_logs(w->ctx->rt, &b, q->chunks);
    if (q->n == 0) {
        free(q);
        sl_buf_free(&b);
        return;
    }
    const char *params[] = {sl_buf_str(&b)};
    w->flushing_logs = 1;
    w->flush = q;
    sl_pg_query_prepared(w->ctx->pg, "sl_logs", "SELECT * FROM sluice.append_logs($1::jsonb)", 1,
                         params, logs_done, q);
    sl_buf_free(&b);
}
