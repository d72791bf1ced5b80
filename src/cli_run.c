/*
 * cli_run.c — `sluice run`: one job in the foreground (the seed's "run directly"
 * mode). The run is recorded like any other (trigger_source manual, a lease kept
 * alive while it runs), its log lines stream to the terminal, and the exit status
 * says how it went: 0 completed, 1 failed, 2 bad input, 128 + the signal's number
 * interrupted (130 for Ctrl-C).
 */
#include "cli.h"
#include "config.h"
#include "ctx.h"
#include "log.h"
#include "pg.h"
#include "queue.h"
#include "runtime.h"
#include "table.h"

#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sl_ctx *ctx;
    sl_run *run;
    int ended;
    char worker[40];
    char lease[32];
    sl_queue_lease renewal; /* renews the run's lease, and the fence */
    ev_signal sigint, sigterm, sighup;
    int signo; /* the signal that interrupted the run, or 0 */
} fg_run;

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice run <job_type> [--brand NAME|UUID] [--params JSON] [--json]\n\n"
                 "Runs one job now, in the foreground, and records the run. The brand is\n"
                 "optional here even for job types that need one when queued.\n"
                 "  --json   print the run's outcome as JSON on stdout: run_id, job_id,\n"
                 "           status, seconds, result, error, recorded, job_status and then.\n"
                 "           recorded is false when the outcome was not recorded: the\n"
                 "           database refused it (the run is then recorded as failed), or\n"
                 "           the run was no longer running (its job was deleted, or its\n"
                 "           lease was lost and a rescue failed it); job_status is the\n"
                 "           job's status once recorded (active when a worker will retry\n"
                 "           it), else null; then says what became of the job of a run\n"
                 "           that failed or was cancelled, or was recorded as failed\n"
                 "           (\"retry attempt 2 of 4 at …\", \"job failed: permanent\n"
                 "           error\", …), else null\n\n"
                 "When the connection to the database breaks while the outcome is being\n"
                 "recorded, it connects once more: an outcome the database recorded\n"
                 "before the break (only its answer was lost) counts as recorded, and\n"
                 "one it did not is sent again.\n\n"
                 "A run that fails spends one attempt of its job, as any run does: while\n"
                 "the job type's retry policy allows more, a worker (sluice serve) runs it\n"
                 "again later; `sluice jobs cancel ID` stops that.\n\n"
                 "Cancelling the job while it runs stops the run (as cancelled) within a\n"
                 "third of the lease: the run renews its lease every lease/3 seconds and\n"
                 "learns of the cancel then.\n\n"
                 "SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal hung up) stop the\n"
                 "run: it is recorded as failed (\"interrupted\") and the exit status is\n"
                 "128 + the signal's number (130 for Ctrl-C). A signal ignored when sluice\n"
                 "started (SIGHUP under nohup) stays ignored.\n");
}

static void fg_done(sl_run *run, void *data)
{
    fg_run *f = data;
    (void)run;
    f->ended = 1;
    ev_break(f->ctx->loop, EVBREAK_ALL);
}

static void sig_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    fg_run *f = s->data;
    if (!f->run || f->ended) return;
    if (!f->signo) f->signo = s->signum;
    sl_run_cancel(f->run, SL_RUN_FAILED, "interrupted", 0);
}

/* The claim of run cl was answered `after` seconds after it was sent, past the
 * fence's share of its lease (sl_queue_lease_claimed): the lease may have run
 * out and a rescue may have failed the run already, so it does not start. It
 * goes back to its job as if never claimed (sluice.release_runs, as a worker
 * gives back the runs it claimed too late), and the job is then due: a worker
 * runs it. */
static void give_back_late(PGconn *c, const sl_claimed *cl, const char *type, const char *lease,
                           double after)
{
    char ids[64];
    snprintf(ids, sizeof ids, "{%s}", cl->spec.run_id);
    const char *p[] = {ids};
    PGresult *r = sl_cli_exec(c, "SELECT sluice.release_runs($1::uuid[])", 1, p);
    int answered = r != NULL, given = r && PQntuples(r) == 1 && atoi(PQgetvalue(r, 0, 0)) == 1;
    if (r) PQclear(r);
    char why[256];
    sl_queue_late_claim_why(why, sizeof why, after, lease);
    sl_cli_error("run %s (%s) not started: %s", cl->spec.run_id, type, why);
    if (given)
        fprintf(stderr,
                "the run was given back to its job, which is due now: a worker (sluice serve) "
                "runs it; `sluice jobs cancel %.8s` stops that\n",
                cl->spec.job_id);
    else if (answered)
        fprintf(stderr, "a rescue had already failed the run: its job follows its retry policy\n");
    else
        fprintf(stderr, "giving the run back failed (the error is above): its lease runs out, "
                        "then the rescue pass fails it and the retry policy applies\n");
}

/* The connection broke while the outcome (finish_runs JSON) was being
 * recorded: perhaps after the commit, only the answer lost, or before it was
 * sent (it sat idle through the run). Connected again, an outcome the run
 * holds already as sent, by this worker, is taken as recorded, with what
 * became of its job (sluice.outcomes_recorded_already); else it is sent once
 * more. A row as finish_runs gives it (run_id, job_status, outcome, decision),
 * or NULL when connecting again or the statement failed (the error is said). */
static PGresult *record_again(PGconn *c, const char *outcome, const char *worker)
{
    PQreset(c);
    if (PQstatus(c) != CONNECTION_OK) {
        sl_cli_error("could not connect again to record the run's outcome: %s", PQerrorMessage(c));
        return NULL;
    }
    fprintf(stderr, "connected again to record the run's outcome\n");
    const char *p[] = {outcome, worker};
    PGresult *r = sl_cli_exec(
        c,
        "SELECT k.run_id, j.status AS job_status, x.status AS outcome, k.decision "
        "FROM sluice.outcomes_recorded_already($1::jsonb, $2::uuid, "
        "ARRAY(SELECT (e ->> 'run_id')::uuid FROM jsonb_array_elements($1::jsonb) e)) k "
        "JOIN sluice.scheduled_job_runs x ON x.id = k.run_id "
        "JOIN sluice.scheduled_jobs j ON j.id = x.scheduled_job_id",
        2, p);
    if (!r || PQntuples(r) > 0) return r;
    PQclear(r);
    return sl_cli_exec(c, "SELECT * FROM sluice.finish_runs($1::jsonb)", 1, p);
}

/* Makes the job and starts its run (sluice.start_direct_run with p: worker,
 * brand, type, parameters, trigger source, lease). The connection may break
 * after the database committed that call, with only its answer lost: then,
 * connected again, the run this process holds is started afresh for it
 * (sluice.retake_direct_run: no attempt spent), or, when it holds none, the
 * call made nothing and is sent once more. The claim's row, or NULL (the
 * error said, *status set); *sent is when the call that answered was sent, by
 * the loop's clock. */
static PGresult *start_run(PGconn *c, const char *const p[6], struct ev_loop *loop, double *sent,
                           int *status)
{
    static const char start[] =
        "SELECT * FROM sluice.start_direct_run($1, $2, $3, $4::jsonb, $5, $6::float8)";
    ev_now_update(loop); /* the loop has not run: its clock is from before the boot */
    *sent = ev_now(loop);
    PGresult *r = sl_cli_exec_status(c, start, 6, p, status);
    if (r || PQstatus(c) != CONNECTION_BAD) return r;
    PQreset(c);
    if (PQstatus(c) != CONNECTION_OK) {
        sl_cli_error("could not connect again to start the run: %s", PQerrorMessage(c));
        return NULL;
    }
    fprintf(stderr, "connected again to start the run\n");
    const char *q[] = {p[0], p[5]};
    ev_now_update(loop);
    *sent = ev_now(loop);
    r = sl_cli_exec_status(c, "SELECT * FROM sluice.retake_direct_run($1::uuid, $2::float8)", 2, q,
                           status);
    if (!r || PQntuples(r) == 1) return r;
    PQclear(r);
    ev_now_update(loop);
    *sent = ev_now(loop);
    return sl_cli_exec_status(c, start, 6, p, status);
}

int sl_cmd_run(const sl_config *cfg, int argc, char **argv)
{
    const char *type = NULL, *brand = NULL, *params = "{}";
    int json = 0;
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--brand") == 0) {
            if (sl_cli_option_value(argc, argv, &i, "run", NO_BRAND_JOB, &brand) < 0) return 2;
        } else if (strcmp(a, "--params") == 0) {
            if (sl_cli_option_value(argc, argv, &i, "run", NULL, &params) < 0) return 2;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (a[0] == '-') {
            sl_cli_error("run: unknown option '%s' (see `sluice run --help`)", a);
            return 2;
        } else if (!type) {
            type = a;
        } else {
            sl_cli_error("run: unexpected argument '%s'", a);
            return 2;
        }
    }
    if (!type) {
        usage(stderr);
        return 2;
    }
    sl_ctx ctx;
    if (sl_queue_open(&ctx, cfg, json ? SL_ECHO_NONE : SL_ECHO_PLAIN) < 0) return 1;
    fg_run f = {.ctx = &ctx};
    int status = 1;
    char *normalized = NULL, *problem = NULL;
    PGconn *c = NULL;
    PGresult *claimed = NULL;
    sl_queue_connect_early(&ctx);
    sl_queue_load(&ctx, 0);
    problem = sl_runtime_validate(ctx.rt, type, params, &normalized, SL_VALIDATE_HERE);
    if (problem) {
        sl_cli_error("%s", problem);
        status = 2;
        goto out;
    }
    c = sl_queue_boot(&ctx, "run", f.worker, &status);
    if (!c) goto out;
    sl_config_fmt_number(cfg->lease_seconds, f.lease, sizeof f.lease);
    const char *p[] = {f.worker, brand, type, normalized, "manual", f.lease};
    double sent;
    claimed = start_run(c, p, ctx.loop, &sent, &status);
    if (!claimed) goto out;
    sl_claim_columns cols;
    sl_queue_claim_columns(claimed, &cols);
    sl_claimed cl;
    sl_queue_claimed(claimed, 0, &cols, &cl);
    f.renewal = (sl_queue_lease){.ctx = &ctx, .worker = f.worker, .lease = f.lease};
    ev_now_update(ctx.loop);
    if (sl_queue_lease_claimed(&f.renewal, sent) < 0) {
        give_back_late(c, &cl, type, f.lease, ev_now(ctx.loop) - sent);
        goto out;
    }
    char err[512];
    ctx.pg = sl_pg_new(ctx.loop, ctx.db_url, cfg->pool_size);
    sl_pg_reserve(ctx.pg); /* handlers cannot hold up lease renewals */
    if (!json) fprintf(stderr, "run %s (%s) started\n", cl.spec.run_id, type);
    f.run = sl_run_start(ctx.rt, &cl.spec, fg_done, &f, err, sizeof err);
    if (!f.run) {
        sl_cli_error("%s", err);
        sl_queue_lease_stop(&f.renewal);
        goto out;
    }
    /* Ctrl-C, a stop and a hung-up terminal stop the run, rather than killing
     * the process and leaving the run to its lease; a signal ignored when the
     * process started (nohup's SIGHUP, SIGINT of a job a script put in the
     * background) stays ignored, as in exec */
    sl_cli_watch_signal(ctx.loop, &f.sigint, sig_cb, SIGINT, &f);
    sl_cli_watch_signal(ctx.loop, &f.sigterm, sig_cb, SIGTERM, &f);
    sl_cli_watch_signal(ctx.loop, &f.sighup, sig_cb, SIGHUP, &f);
    if (!f.ended) ev_run(ctx.loop, 0);
    sl_queue_lease_stop(&f.renewal);
    if (ev_is_active(&f.sigint)) ev_signal_stop(ctx.loop, &f.sigint);
    if (ev_is_active(&f.sigterm)) ev_signal_stop(ctx.loop, &f.sigterm);
    if (ev_is_active(&f.sighup)) ev_signal_stop(ctx.loop, &f.sighup);

    /* record the outcome (blocking: the loop is done) */
    const sl_run_outcome *o = sl_run_outcome_of(f.run);
    sl_buf b = {0};
    sl_buf_puts(&b, "[");
    sl_queue_outcome_json(&b, f.run, NULL);
    sl_buf_puts(&b, "]");
    const char *fp[] = {sl_buf_str(&b)};
    PGresult *r = sl_cli_exec(c, "SELECT * FROM sluice.finish_runs($1::jsonb)", 1, fp);
    if (!r && PQstatus(c) == CONNECTION_BAD) r = record_again(c, fp[0], f.worker);
    int refused = r == NULL, recorded = 0, bare = 0;
    /* a failed run's job follows its retry policy: a worker may run it again.
     * No job status: finish_runs updated nothing, the run was no longer running
     * (its job was deleted, or a rescue failed it after its lease was lost). */
    char job_status[16] = "";
    /* what became of the job of a run that did not complete (finish_runs'
     * decision, the words the daemon's log uses) */
    char *then = NULL;
    if (r && PQntuples(r) == 1 && !PQgetisnull(r, 0, 1)) {
        recorded = 1;
        snprintf(job_status, sizeof job_status, "%s", PQgetvalue(r, 0, 1));
        int d = PQfnumber(r, "decision");
        if (!PQgetisnull(r, 0, d)) then = sl_xstrdup(PQgetvalue(r, 0, d));
    }
    if (r) PQclear(r);
    if (refused) { /* the error is above: once more as a bare failure */
        sl_buf_reset(&b);
        sl_buf_puts(&b, "[");
        sl_queue_bare_failure_json(&b, cl.spec.run_id, o,
                                   "the run's outcome could not be recorded");
        sl_buf_puts(&b, "]");
        fp[0] = sl_buf_str(&b);
        r = sl_cli_exec(c, "SELECT * FROM sluice.finish_runs($1::jsonb)", 1, fp);
        bare = r != NULL;
        /* what that failure made of the job, as for any failed run */
        int d = r ? PQfnumber(r, "decision") : -1;
        if (r && PQntuples(r) == 1 && !PQgetisnull(r, 0, d)) then = sl_xstrdup(PQgetvalue(r, 0, d));
        if (r) PQclear(r);
    }
    sl_buf_free(&b);
    double secs = o->finished - o->started;
    /* the run's own text, for a terminal: a control character shows as ^[ */
    char *error = o->error ? sl_text_visible(o->error, 1) : NULL;
    if (json) {
        sl_buf j = {0};
        sl_buf_puts(&j, "{\"run_id\":");
        sl_buf_json_string(&j, cl.spec.run_id);
        sl_buf_puts(&j, ",\"job_id\":");
        sl_buf_json_string(&j, cl.spec.job_id);
        sl_buf_printf(&j, ",\"status\":\"%s\",\"seconds\":%.3f,\"result\":%s,\"error\":",
                      sl_queue_status_name(o->status), secs,
                      o->result_json ? o->result_json : "null");
        sl_buf_json_string(&j, o->error);
        sl_buf_printf(&j, ",\"recorded\":%s,\"job_status\":", recorded ? "true" : "false");
        sl_buf_json_string(&j, *job_status ? job_status : NULL);
        sl_buf_puts(&j, ",\"then\":");
        sl_buf_json_string(&j, then);
        sl_buf_puts(&j, "}");
        printf("%s\n", sl_buf_str(&j));
        sl_buf_free(&j);
    } else if (!recorded && !refused) {
        fprintf(stderr,
                "run %s %s after %.2fs (%s), but its outcome was not recorded: the run was no "
                "longer running — its job was deleted, or its lease was lost and another "
                "worker's rescue failed it and retried the job\n",
                cl.spec.run_id, sl_queue_status_name(o->status), secs,
                error ? error : sl_queue_status_name(o->status));
    } else if (!recorded) {
        fprintf(stderr,
                "run %s %s after %.2fs, but its outcome could not be recorded (the error is "
                "above): %s%s%s\n",
                cl.spec.run_id, sl_queue_status_name(o->status), secs,
                bare ? "it is recorded as failed instead"
                     : "it stays running until its lease runs out; then the rescue pass fails it "
                       "and the retry policy applies",
                then ? "; then " : "", then ? then : "");
    } else if (o->status == SL_RUN_COMPLETED) {
        fprintf(stderr, "run %s completed in %.2fs\n", cl.spec.run_id, secs);
        printf("%s\n", o->result_json ? o->result_json : "null");
    } else {
        fprintf(stderr, "run %s %s after %.2fs: %s%s%s\n", cl.spec.run_id,
                sl_queue_status_name(o->status), secs, error ? error : "failed",
                then ? "; then " : "", then ? then : "");
        /* its job follows its retry policy, as any job does */
        if (strcmp(job_status, "active") == 0)
            fprintf(stderr,
                    "a worker (sluice serve) runs the job then; `sluice jobs cancel %.8s` stops "
                    "that\n",
                    cl.spec.job_id);
    }
    free(error);
    free(then);
    status = o->status == SL_RUN_COMPLETED                  ? 0
             : o->error && !strcmp(o->error, "interrupted") ? 128 + (f.signo ? f.signo : SIGINT)
                                                            : 1;
    if (!recorded) status = 1;
    sl_run_free(f.run);
out:
    if (claimed) PQclear(claimed);
    if (c) {
        const char *wp[] = {f.worker};
        if (f.worker[0]) {
            PGresult *r2 =
                sl_cli_exec(c, "UPDATE sluice.workers SET stopped_at = now() WHERE id = $1", 1, wp);
            if (r2) PQclear(r2);
        }
        PQfinish(c);
    }
    free(problem);
    free(normalized);
    sl_queue_close(&ctx);
    return status;
}
