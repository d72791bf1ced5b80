/*
 * worker_sweep.c — `sluice serve`'s sweep, after a cycle whose reply was lost.
 *
 * A cycle that claimed got no answer (cycle_done: orphans_possible). If the
 * connection broke after Postgres committed it, runs it claimed are running
 * under this worker in the database though the worker never heard of them:
 * none would start, the lease renewal (which names the runs held) would let
 * their leases run out, and another worker's rescue would fail them, spending
 * an attempt of jobs that never ran. Before it claims again, with no cycle in
 * flight, the worker sends a sweep instead: release_unheld_runs() gives back
 * every run running under it that it does not hold, as if never claimed (as
 * release_runs() does at shutdown). Held are the runs in flight, those
 * claimed and waiting for a slot, and the ended runs whose outcomes wait to
 * be recorded (still running in the database), and the runs whose outcomes
 * the database refused outright (refused(): they ran; their leases hand them
 * to the rescue, and once seen ended they count as ended lazily:
 * check_abandoned), and the runs whose outcomes were recorded lazily and are
 * perhaps not on disk yet (note_recorded): a crash of the database may have
 * lost such an outcome, leaving a run that did run running under this worker,
 * and giving it back would delete its record; its lease hands it to the
 * rescue instead. No cycle goes while the sweep is in flight: a run it
 * claimed would be given back.
 */
#include "buf.h"
#include "log.h"
#include "pg.h"
#include "runtime.h"
#include "worker_int.h"

#include <libpq-fe.h>
#include <stdio.h>

/* Every run this worker holds, as a Postgres array literal ("{a,b}"). With no
 * cycle in flight, no batch of outcomes is anywhere but in w->done. */
static void held_ids(sl_worker *w, sl_buf *ids)
{
    sl_buf held = {0};
    sl_worker_put_held_ids(w, &held); /* "a,b," */
    if (w->abandoned.len) sl_buf_puts(&held, sl_buf_str(&w->abandoned));
    for (const unflushed *f = w->unflushed; f; f = f->next)
        if (f->ids.len) sl_buf_puts(&held, sl_buf_str(&f->ids));
    sl_buf_id_array(ids, sl_buf_str(&held));
    sl_buf_free(&held);
}

/* What follows a sweep that is over: the cycle it held back, or the exit. */
static void after_sweep(sl_worker *w)
{
    if (w->stopping && !w->done)
        sl_worker_maybe_exit(w);
    else
        sl_worker_cycle(w);
}

/* A sweep answered (sl_worker_note_attempt). */
static void note_sweep(sl_worker *w, const char *err)
{
    sl_worker_note_attempt(
        w, &w->failing.sweep, err,
        "looking for runs claimed by a cycle whose reply was lost failed, retrying",
        "looking for runs claimed by a cycle whose reply was lost works again");
}

static void sweep_done(PGresult *res, const char *err, void *data)
{
    sl_worker *w = data;
    w->sweeping = 0;
    w->cycle_again = 0; /* after_sweep's cycle is that one */
    if (err && res) PQclear(res);
    /* a statement the database refuses would be refused again: no cycle may
     * wait on it (nor, once stopping, on the database coming back). A read-only
     * database or a privilege missing is waited out, as an outage is: once
     * changed, it takes the sweep; but not a privilege refused for a lease
     * already (sl_worker_note_denied) */
    const char *st = err ? sl_pg_error_sqlstate(w->ctx->pg) : NULL;
    if (err && (w->stopping || sl_pg_sqlstate_fault(st) != SL_PG_TRANSIENT ||
                sl_worker_note_denied(w, st))) {
        w->orphans_possible = 0;
        sl_log(SL_WARN,
               "could not look for runs claimed by a cycle whose reply was lost; if there are "
               "any, their leases will run out",
               "error", err, NULL);
        after_sweep(w);
        return;
    }
    if (err) {
        sl_worker_retry_later(w);
        note_sweep(w, err);
        return;
    }
    note_sweep(w, NULL);
    /* the backoff is the cycle's, left to a cycle that succeeds: a sweep is a
     * read, and answered where the cycle after it failed (a database turned
     * read-only) reset it to retry five times a second for as long */
    w->orphans_possible = 0;
    int n = PQntuples(res);
    if (n > 0) {
        sl_buf given = {0}, ids = {0};
        for (int i = 0; i < n; i++) {
            sl_buf_puts(&given, PQgetvalue(res, i, 0));
            sl_buf_puts(&given, ",");
        }
        sl_buf_id_array(&ids, sl_buf_str(&given));
        sl_buf_free(&given);
        char count[16];
        snprintf(count, sizeof count, "%d", n);
        sl_log(SL_WARN,
               "gave back runs claimed by a cycle whose reply was lost; their jobs are due again, "
               "no attempt spent",
               SL_NUM "count", count, "runs", sl_buf_str(&ids), NULL);
        sl_buf_free(&ids);
    } else {
        sl_log(SL_DEBUG, "no runs were claimed by the cycle whose reply was lost", NULL);
    }
    PQclear(res);
    after_sweep(w);
}

/* Sends the sweep (see above); sl_worker_cycle() calls it, with no cycle in flight. */
void sl_worker_sweep(sl_worker *w)
{
    sl_buf ids = {0};
    held_ids(w, &ids);
    const char *params[] = {w->id, sl_buf_str(&ids)};
    w->sweeping = 1;
    sl_pg_query(w->ctx->pg, "SELECT sluice.release_unheld_runs($1, $2::uuid[])", 2, params,
                sweep_done, w);
    sl_buf_free(&ids);
}
