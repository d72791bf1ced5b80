/*
 * worker.c — `sluice serve`: the daemon's scheduler on one libev loop.
 *
 *   LISTEN sluice_jobs ─┐
 *   next-due timer ─────┼─→ claim (claim_jobs, a batch up to the free slots)
 *   slow poll ──────────┘        │
 *                                ▼
 *                     one run per claimed row (runtime)
 *                                │ done
 *                                ▼
 *              finish batch → finish_runs() in one round trip
 *
 * Alongside: the lease renewal (sl_queue_lease) renewing the leases of this
 * worker's runs every lease/3, and a rescue pass failing runs whose lease
 * expired elsewhere.
 * Database errors never stop the daemon: each step retries with backoff and
 * logs; a completion stays in the batch until recorded. A batch the database
 * refuses (not a lost connection: its statement) is recorded one run at a time,
 * and a run refused alone as a bare failure (see refused()).
 *
 * Shutdown (SIGINT/SIGTERM): stop claiming, let runs finish for the grace
 * period, then cancel the rest as failed "shutdown" (retried later by policy),
 * record everything, exit 0 (or, if the database has not recorded it 10 s
 * after the grace period, or a lease if shorter, cancel the statements it has
 * not answered and leave without it: exit 1). A second signal exits at once;
 * leases then let other workers rescue what was in flight.
 *
 * Here: the runs, the cycle and shutdown. Elsewhere: the sweep after a
 * cycle's lost reply (worker_sweep.c); the rescue, retention and log flush
 * passes (worker_passes.c); the reload on SIGHUP or an edited handler file
 * (worker_reload.c); the options, start-up and the loop (worker_serve.c).
 * What the files share is in worker_int.h.
 */
#include "buf.h"
#include "config.h"
#include "ctx.h"
#include "daemon.h"
#include "log.h"
#include "pg.h"
#include "queue.h"
#include "runtime.h"
#include "worker_int.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Two cycles may overlap, so a NOTIFY need not wait behind the recording of the
 * last batch (on another connection of the pool). */
#define MAX_CYCLES 2
/* Claiming ahead (--prefetch): at most as many runs as this worker starts in
 * PREFETCH_HORIZON seconds at its current pace (concurrency / mean run time),
 * so short runs never wait on a round trip and long ones are never held here
 * while another worker could start them. (Shorter than a run, the horizon left
 * a few slots waiting on a round trip each time a burst of runs ended.) The
 * default allowance (worker_serve.c) matters for very short runs only, where
 * it sets the size of a cycle (docs/architecture.md, Prefetch). */
#define PREFETCH_HORIZON 0.5
/* Ended runs are recorded at once, unless every slot is busy and claimed runs
 * wait here to follow them: then the cycle may wait up to this long (and never
 * longer than a quarter of the time those queued runs last), so that one cycle
 * records many runs. Each cycle costs Postgres a fixed ~1 ms (starting its
 * statements) besides its rows; with a hundred runs ending at random moments,
 * one cycle per ended run kept half a core busy. */
#define RECORD_DELAY_MAX 0.02
/* Refusals for want of a privilege closer than this are one stretch
 * (sl_worker_note_denied): twice the longest backoff of a retry. */
#define DENIED_GAP 60.0

/* An ended run waiting to be recorded: a run, or its outcome already as
 * finish_runs JSON (a run that could not start, or one recorded as a bare
 * failure), with what its line in the log says once that is recorded (ended).
 * resent: it went with a cycle that got no answer, which may have recorded it
 * (the connection broke after the commit, before the reply came).
 * give_back: a claimed run of a type this worker has no handler for any more,
 * to give back to its job as if never claimed (unstartable()); its outcome, a
 * failure, is recorded instead only if the database refuses the give-back. */
typedef struct wrun {
    sl_run *run;
    char *outcome;
    int resent;
    int give_back;
    struct wrun *next;
    struct {
        int status; /* SL_RUN_*: what the outcome records */
        char *run_id, *type, *error;
        double seconds;
    } ended; /* for an outcome without its run; else the run says */
} wrun;

static void unstartable(sl_worker *w, const pending *p, const char *errbuf);
static void released(PGresult *res, const char *err, void *data);

/* The level of a periodic statement's failure, in its callback: debug when it
 * failed for want of a connection during an outage, which the pool logs once
 * (sl_pg_outage_error), or was cancelled as the process leaves, which it says
 * once (sl_worker_leave_cb); else a warning. */
int sl_worker_outage_level(const sl_worker *w)
{
    return w->leaving || sl_pg_outage_error(w->ctx->pg) ? SL_DEBUG : SL_WARN;
}

/* ------------------------------------------------------------------ runs */

static void wrun_free(wrun *r)
{
    if (r->run) sl_run_free(r->run);
    free(r->outcome);
    free(r->ended.run_id);
    free(r->ended.type);
    free(r->ended.error);
    free(r);
}

/* A wrun's run id (NULL for an outcome that has none). */
static const char *wrun_id(const wrun *r)
{
    return r->outcome || !r->run ? r->ended.run_id : sl_run_id(r->run);
}

/* Appends the run ids of the list from r on to ids, each followed by ",". */
void sl_worker_put_run_ids(sl_buf *ids, const wrun *r)
{
    for (; r; r = r->next) {
        const char *id = wrun_id(r);
        if (!id) continue;
        sl_buf_puts(ids, id);
        sl_buf_puts(ids, ",");
    }
}

/* What a wrun's outcome records: its status, run id, type, error, seconds. */
static void wrun_ended(const wrun *r, int *status, const char **id, const char **type,
                       const char **error, double *seconds)
{
    *id = wrun_id(r);
    if (r->outcome || !r->run) {
        *status = r->ended.status;
        *type = r->ended.type;
        *error = r->ended.error;
        *seconds = r->ended.seconds;
        return;
    }
    const sl_run_outcome *o = sl_run_outcome_of(r->run);
    *status = o->status;
    *type = sl_run_job_type(r->run);
    *error = o->error;
    *seconds = o->finished - o->started;
}

/* Logs how a run that did not complete ended, once its outcome is recorded:
 * then says what became of its job (finish_runs' decision: a retry and when,
 * the job failed or cancelled, a recurring job's next slot), or why the
 * outcome was not recorded. */
static void log_ended(const wrun *r, const char *then)
{
    int status;
    const char *id, *type, *error;
    double secs;
    wrun_ended(r, &status, &id, &type, &error, &secs);
    char dur[32];
    snprintf(dur, sizeof dur, "%.3f", secs);
    sl_log(SL_WARN, status == SL_RUN_CANCELLED ? "run cancelled" : "run failed", "run", id, "type",
           type, SL_NUM "seconds", dur, "error", error, "then", then, NULL);
}

/* An outcome found recorded already when its batch went again: the cycle that
 * recorded it got no answer (the connection broke after the commit). Logged as
 * one recorded now, with what became of its job (then: NULL for a completion,
 * whose line came when it ended), and a note of the lost reply. */
static void log_recorded_already(const wrun *r, const char *then)
{
    int status;
    const char *id, *type, *error;
    double secs;
    wrun_ended(r, &status, &id, &type, &error, &secs);
    if (then) log_ended(r, then);
    sl_log(SL_DEBUG,
           "run outcome recorded already: the reply to the cycle that recorded it was lost", "run",
           id, "type", type, NULL);
}

/* How long ended runs may wait to be recorded (RECORD_DELAY_MAX): no time at
 * all when a slot is free with nothing claimed to fill it, or when stopping. */
static double record_delay(const sl_worker *w)
{
    if (w->stopping || w->running + w->queued < w->concurrency) return 0;
    double lasts = w->queued * w->avg_run / w->concurrency;
    double d = lasts / 4 < RECORD_DELAY_MAX ? lasts / 4 : RECORD_DELAY_MAX;
    return d < 0.001 ? 0 : d;
}

/* Asks for a cycle to record the ended runs: at the end of this loop iteration,
 * or a little later while claimed work keeps every slot busy. */
static void schedule_record(sl_worker *w)
{
    double d = record_delay(w);
    if (ev_is_active(&w->soon)) {
        if (d > 0 || ev_timer_remaining(w->ctx->loop, &w->soon) <= 0) return;
        ev_timer_stop(w->ctx->loop, &w->soon); /* it became urgent */
    }
    ev_timer_set(&w->soon, d, 0);
    ev_timer_start(w->ctx->loop, &w->soon);
}

/* Queues an outcome for a coming cycle. */
static void queue_done(sl_worker *w, wrun *r)
{
    r->next = w->done;
    w->done = r;
    schedule_record(w);
}

/* Queues an ended run for a coming cycle. */
static void record_later(sl_worker *w, wrun *r)
{
    w->running--;
    queue_done(w, r);
}

/* Queues the outcome of a claimed run that never ran (status, error) for a
 * coming cycle, like an ended run's: its job moves on by the same rules. With
 * give_back, the cycle gives the run back to its job instead (wrun). */
static void record_unrun(sl_worker *w, const pending *p, int status, const char *error,
                         int give_back)
{
    char next[40];
    sl_queue_next_cron(p->spec.job_id, p->spec.cron_expression, p->spec.timezone, w->zones, next);
    double now = ev_time();
    sl_run_outcome o = {.status = status,
                        .error = error,
                        .retryable = status == SL_RUN_FAILED,
                        .started = now,
                        .finished = now};
    sl_buf b = {0};
    sl_queue_outcome_json_of(&b, p->spec.run_id, &o, next);
    wrun *r = sl_xcalloc(1, sizeof *r);
    r->outcome = sl_xstrdup(sl_buf_str(&b));
    r->ended.status = status;
    r->ended.run_id = sl_xstrdup(p->spec.run_id);
    r->ended.type = sl_xstrdup(p->spec.job_type);
    r->ended.error = sl_xstrdup(error);
    r->give_back = give_back;
    sl_buf_free(&b);
    queue_done(w, r);
}

static void run_done(sl_run *run, void *data)
{
    sl_worker *w = data;
    wrun *r = sl_xcalloc(1, sizeof *r);
    r->run = run;
    const sl_run_outcome *o = sl_run_outcome_of(run);
    double took = o->finished - o->started;
    /* the first run ended replaces the start-up guess: the first wave of short
     * runs must not wait on claims sized for one-second runs */
    w->avg_run = w->paced ? 0.8 * w->avg_run + 0.2 * took : took;
    w->paced = 1;
    record_later(w, r);
    sl_worker_start_queued(w); /* a claimed run takes the slot at once */
}

/* ------------------------------------------------------------------ the cycle */

/* One round trip does both halves of the queue's work: finish_and_claim() records
 * the runs that ended since the last cycle and claims as many due jobs as there
 * are free slots, in one transaction. At most one cycle is in flight; whatever
 * happens meanwhile (runs ending, NOTIFY) asks for another one. */

void sl_worker_arm_claim_timer(sl_worker *w, double after)
{
    if (after < 0) after = 0;
    if (ev_is_active(&w->claim_timer)) ev_timer_stop(w->ctx->loop, &w->claim_timer);
    ev_timer_set(&w->claim_timer, after, 0);
    ev_timer_start(w->ctx->loop, &w->claim_timer);
}

/* After a cycle (or a sweep) that failed: the next one comes after a backoff
 * doubled each time, from 0.2 s up to 30 s. */
void sl_worker_retry_later(sl_worker *w)
{
    w->backoff = w->backoff < 0.2 ? 0.2 : w->backoff * 2;
    if (w->backoff > 30) w->backoff = 30;
    sl_worker_arm_claim_timer(w, w->backoff);
}

int sl_worker_note_attempt(sl_worker *w, sl_log_repeat *r, const char *err, const char *failed,
                           const char *again)
{
    sl_log_attempt(r, sl_worker_outage_level(w), ev_now(w->ctx->loop), err, failed, again);
    return err != NULL;
}

/* A cycle answered (sl_worker_note_attempt). */
static void note_cycle(sl_worker *w, const char *err)
{
    sl_worker_note_attempt(w, &w->failing.cycle, err,
                           "claiming and recording runs failed, retrying",
                           "claiming and recording runs works again");
}

static void next_due_done(PGresult *res, const char *err, void *data)
{
    sl_worker *w = data;
    double wait = w->cfg->poll_seconds;
    if (!err && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
        double d = atof(PQgetvalue(res, 0, 0));
        if (d < wait) wait = d;
    }
    if (res) PQclear(res);
    /* a sooner wake-up stands: the retry of a cycle that failed meanwhile */
    if (ev_is_active(&w->claim_timer) && ev_timer_remaining(w->ctx->loop, &w->claim_timer) < wait)
        return;
    if (!w->stopping && !w->cycling) sl_worker_arm_claim_timer(w, wait);
}

/* The string fields of a run spec, in one order. */
#define SPEC_STRINGS(s)                                                                            \
    {                                                                                              \
        &(s)->run_id, &(s)->job_id, &(s)->job_type, &(s)->brand_id, &(s)->params_json,             \
            &(s)->checkpoint_json, &(s)->trigger_source, &(s)->cron_expression, &(s)->timezone     \
    }

/* Queues row `row` of a claim, to start when a slot is free. */
static void enqueue_claimed(sl_worker *w, const PGresult *res, int row,
                            const sl_claim_columns *cols)
{
    sl_claimed c;
    sl_queue_claimed(res, row, cols, &c);
    const char **from[] = SPEC_STRINGS(&c.spec);
    size_t len = sizeof(pending);
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++)
        len += *from[i] ? strlen(*from[i]) + 1 : 0;
    pending *p = sl_xcalloc(1, len);
    p->spec = c.spec; /* the numbers; the strings are copied below */
    const char **to[] = SPEC_STRINGS(&p->spec);
    char *at = (char *)(p + 1);
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
        if (!*from[i]) continue;
        size_t n = strlen(*from[i]) + 1;
        memcpy(at, *from[i], n);
        *to[i] = at;
        at += n;
    }
    if (w->queue_tail)
        w->queue_tail->next = p;
    else
        w->queue_head = p;
    w->queue_tail = p;
    w->queued++;
}

static void start_one(sl_worker *w, pending *p)
{
    char errbuf[512];
    w->running++;
    if (sl_run_start(w->ctx->rt, &p->spec, run_done, w, errbuf, sizeof errbuf)) return;
    unstartable(w, p, errbuf);
}

/* Starts queued runs while slots are free, unless their leases may have run
 * out meanwhile (sl_queue_lease_fenced: the fence then drops them all). */
void sl_worker_start_queued(sl_worker *w)
{
    if (w->queue_head && w->running < w->concurrency && !w->stopping &&
        sl_queue_lease_fenced(&w->renewal))
        return;
    while (w->queue_head && w->running < w->concurrency && !w->stopping) {
        pending *p = w->queue_head;
        w->queue_head = p->next;
        if (!w->queue_head) w->queue_tail = NULL;
        w->queued--;
        start_one(w, p);
        free(p);
    }
}

/* Gives claimed runs (ids: a Postgres array literal, "{a,b}") back to their
 * jobs as if never claimed (sluice.release_runs); done gets the answer. */
static void release_runs(sl_worker *w, const char *ids, sl_pg_cb done, void *data)
{
    const char *params[] = {ids};
    sl_pg_query(w->ctx->pg, "SELECT sluice.release_runs($1::uuid[])", 1, params, done, data);
}

/* Gives the runs claimed but not started back to the queue (shutdown). */
static void release_queued(sl_worker *w)
{
    if (!w->queue_head) return;
    sl_buf ids = {0}, b = {0};
    while (w->queue_head) {
        pending *p = w->queue_head;
        w->queue_head = p->next;
        sl_buf_puts(&ids, p->spec.run_id);
        sl_buf_puts(&ids, ",");
        free(p);
    }
    w->queue_tail = NULL;
    w->queued = 0;
    sl_buf_id_array(&b, sl_buf_str(&ids));
    sl_buf_free(&ids);
    w->releasing = 1;
    release_runs(w, sl_buf_str(&b), released, w);
    sl_buf_free(&b);
}

/* Whether type is among the types this worker claims (w->types, "{a,b}"). */
static int claims_type(const sl_worker *w, const char *type)
{
    size_t n = strlen(type);
    for (const char *at = w->types + 1; *at && *at != '}';) {
        size_t len = strcspn(at, ",}");
        if (len == n && memcmp(at, type, n) == 0) return 1;
        at += len + (at[len] == ',');
    }
    return 0;
}

/* A claimed run this worker cannot start. When it has no handler for the type
 * any more (the file was removed after the claim: a reload dropped the type
 * from those it claims), the run never ran and its job should not pay for it:
 * the next cycle gives it back as if never claimed, no attempt spent, and its
 * job is due again at once for a worker that has the handler. This worker
 * does not claim it again: it claims only the types it has. Otherwise (a type
 * it still claims: out of memory, say) the run is recorded as a failed attempt
 * with the next cycle, like any ended run, so it is retried by policy and a
 * recurring job keeps its next slot; giving it back would only have this
 * worker claim it again at once. */
static void unstartable(sl_worker *w, const pending *p, const char *errbuf)
{
    w->running--; /* start_one counted it */
    if (!claims_type(w, p->spec.job_type)) {
        sl_log(SL_DEBUG, "cannot start run: no handler for its type here; giving it back", "run",
               p->spec.run_id, "type", p->spec.job_type, "error", errbuf, NULL);
        record_unrun(w, p, SL_RUN_FAILED, errbuf, 1);
        return;
    }
    sl_log(SL_ERROR, "cannot start run", "run", p->spec.run_id, "type", p->spec.job_type, "error",
           errbuf, NULL);
    record_unrun(w, p, SL_RUN_FAILED, errbuf, 0);
}

/* Logs what became of a run given back (unstartable()), once a cycle answered
 * for it: decision, what its job is now; else unrecorded, why it was not
 * given back (the run's status, or "gone"). */
static void log_given_back(const wrun *r, const char *decision, const char *unrecorded)
{
    if (decision) {
        sl_log(SL_WARN, "no handler for its type here; run given back", "run", r->ended.run_id,
               "type", r->ended.type, "then", decision, NULL);
    } else if (r->resent && unrecorded && strcmp(unrecorded, "gone") == 0) {
        sl_log(SL_WARN, "no handler for its type here; run given back", "run", r->ended.run_id,
               "type", r->ended.type, "then",
               "given back by the cycle whose reply was lost (or its job was deleted)", NULL);
    } else {
        sl_log(SL_WARN,
               "no handler for its type here; run not given back: it was no longer running here "
               "(lost its lease, or its job was deleted)",
               "run", r->ended.run_id, "type", r->ended.type, "status", unrecorded, NULL);
    }
}

/* One finish_and_claim in flight: the completions it records and what it asked. */
typedef struct cycle_req {
    sl_worker *w;
    wrun *batch;
    int asked;
    int gave;    /* runs of the batch it gives back (wrun.give_back) */
    double sent; /* the loop's time when it was sent: its claims' leases run from later */
    struct cycle_req *next, **prev; /* in w->cycles */
} cycle_req;

void sl_worker_put_held_ids(sl_worker *w, sl_buf *ids)
{
    sl_runtime_run_ids(w->ctx->rt, ids);
    for (pending *p = w->queue_head; p; p = p->next) {
        sl_buf_puts(ids, p->spec.run_id);
        sl_buf_puts(ids, ",");
    }
    sl_worker_put_run_ids(ids, w->done);
    for (const cycle_req *c = w->cycles; c; c = c->next)
        sl_worker_put_run_ids(ids, c->batch);
}

/* Puts a batch back in front of the ended runs still to record; returns its size. */
static int requeue(sl_worker *w, wrun *batch)
{
    int n = 0;
    wrun *last = NULL;
    for (wrun *x = batch; x; x = x->next, n++)
        last = x;
    if (last) {
        last->next = w->done;
        w->done = batch;
    }
    return n;
}

/* A refusal for want of a privilege (42501) is the role's state
 * (sl_pg_sqlstate_fault): it refuses every outcome alike and takes them all once
 * granted, so a batch refused so waits whole, retried with the cycles' backoff,
 * as for an outage or a read-only database. But a row-level security policy
 * refusing one new row ("new row violates row-level security policy") answers
 * 42501 too, and that is one outcome's fault: the batch held whole would be
 * refused for ever, and the worker would record and claim nothing more. So
 * such refusals are the role's state for a lease (the time a run has to be
 * recorded) from the first of a stretch; after that, a batch refused so is
 * taken apart as any refused statement (refused()). A stretch ends when no
 * such refusal comes for DENIED_GAP. Each call with 42501 is noted as one of
 * the stretch; returns 1 when its stretch has lasted a lease. */
int sl_worker_note_denied(sl_worker *w, const char *sqlstate)
{
    if (!sqlstate || strcmp(sqlstate, "42501") != 0) return 0;
    double now = ev_now(w->ctx->loop);
    if (now - w->denied_last > DENIED_GAP) w->denied_since = now;
    w->denied_last = now;
    return now - w->denied_since >= w->cfg->lease_seconds;
}

/* A cycle failed. When Postgres refused its statement (a SQLSTATE that a retry
 * will not change: not a lost connection, a shutdown, a lack of resources or a
 * lock, a read-only database nor a privilege missing, unless for a lease:
 * sl_worker_note_denied), one ended run's outcome may be what it refused,
 * and a whole batch retried as it is would be refused for ever: the worker
 * would record and claim nothing more. Then the runs are recorded one a cycle,
 * with nothing claimed (isolate), and one refused alone is recorded again as a
 * plain failure without its result, log or dataset reports; if even that is
 * refused it is dropped here and its lease runs out, so the rescue pass fails
 * it and the retry policy applies: the job is not lost. Returns 1 when it took
 * the batch (*batch is then NULL), 0 for a retry of the whole batch as before. */
static int refused(sl_worker *w, wrun **batch, int asked, const char *err)
{
    const char *st = sl_pg_error_sqlstate(w->ctx->pg);
    if (!*batch || (sl_pg_sqlstate_fault(st) == SL_PG_TRANSIENT && !sl_worker_note_denied(w, st)))
        return 0;
    wrun *r = *batch;
    *batch = NULL;
    if (r->next || asked > 0) { /* which one (or the claim)? all back, then one a cycle */
        w->isolate += requeue(w, r);
        sl_log(SL_WARN, "the database refused a batch of run outcomes; recording them one by one",
               "error", err, "sqlstate", st, NULL);
        return 1;
    }
    const char *id = wrun_id(r);
    if (r->give_back) { /* refused alone: recorded as a failed attempt instead */
        sl_log(SL_ERROR, "the database refused to give back a run; recording it as failed", "run",
               id, "type", r->ended.type, "error", err, NULL);
        r->give_back = 0;
        requeue(w, r);
        if (w->isolate == 0) w->isolate = 1; /* else it is counted already */
        return 1;
    }
    if (r->run) { /* refused alone: once more as a bare failure */
        char msg[1024];
        snprintf(msg, sizeof msg, "the run's outcome could not be recorded: %s", err);
        sl_buf b = {0};
        const sl_run_outcome *o = sl_run_outcome_of(r->run);
        sl_queue_bare_failure_json(&b, id, o, msg);
        sl_log(SL_ERROR, "the database refused a run's outcome; recording it as failed", "run", id,
               "error", err, NULL);
        free(r->outcome);
        r->outcome = sl_xstrdup(sl_buf_str(&b));
        sl_buf_free(&b);
        /* the log line, once recorded, says what is recorded: this failure */
        free(r->ended.run_id);
        free(r->ended.type);
        free(r->ended.error);
        r->ended.status = SL_RUN_FAILED;
        r->ended.run_id = sl_xstrdup(id);
        r->ended.type = sl_xstrdup(sl_run_job_type(r->run));
        r->ended.error = sl_xstrdup(msg);
        r->ended.seconds = o->finished - o->started;
        sl_run_free(r->run);
        r->run = NULL;
        requeue(w, r);
        if (w->isolate == 0) w->isolate = 1; /* else it is counted already */
        return 1;
    }
    sl_log(SL_ERROR,
           "the database refused a run's outcome even as a bare failure; dropped here, its lease "
           "will run out and the rescue pass will fail it",
           "run", id, "error", err, NULL);
    sl_buf_puts(&w->abandoned, id);
    sl_buf_puts(&w->abandoned, ",");
    wrun_free(r);
    if (w->isolate > 0) w->isolate--;
    return 1;
}

/* The ended runs of a batch by run id: the rows of a cycle's answer that give
 * a decision (a run that did not complete) or say an outcome was not recorded
 * name their run by id. Made at the first such row: a batch of completions
 * recorded makes none. */
typedef struct ended_entry {
    const char *run_id;
    const wrun *r;
} ended_entry;

typedef struct ended_index {
    ended_entry *at;
    size_t n;
    int made;
} ended_index;

static int ended_cmp(const void *a, const void *b)
{
    return strcmp(((const ended_entry *)a)->run_id, ((const ended_entry *)b)->run_id);
}

static const wrun *ended_find(ended_index *ix, const wrun *batch, const char *run_id)
{
    if (!ix->made) {
        ix->made = 1;
        size_t n = 0;
        for (const wrun *r = batch; r; r = r->next)
            n++;
        ix->at = sl_xcalloc(n ? n : 1, sizeof *ix->at);
        for (const wrun *r = batch; r; r = r->next) {
            const char *id = wrun_id(r);
            if (id) ix->at[ix->n++] = (ended_entry){id, r};
        }
        qsort(ix->at, ix->n, sizeof *ix->at, ended_cmp);
    }
    const ended_entry key = {run_id, NULL};
    const ended_entry *e = bsearch(&key, ix->at, ix->n, sizeof *ix->at, ended_cmp);
    return e ? e->r : NULL;
}

/* Claimed runs (ids: "a,b,") whose claim was answered `after` seconds after
 * it was sent, too late to start them (sl_queue_lease_claimed): a rescue may
 * have failed them already and their jobs may run elsewhere. They go back to
 * their jobs as if never claimed, unless a rescue got there first. */
static void give_back_late(sl_worker *w, const char *ids, double after)
{
    char secs[32];
    snprintf(secs, sizeof secs, "%.1f", after);
    sl_buf runs = {0};
    sl_buf_id_array(&runs, ids);
    sl_log(SL_WARN,
           "not starting claimed runs: their claim was answered too late, their leases may have "
           "run out",
           "runs", sl_buf_str(&runs), SL_NUM "answered_after", secs, SL_NUM "lease", w->lease,
           NULL);
    release_runs(w, sl_buf_str(&runs), sl_worker_ignore_result,
                 "could not give back runs claimed too late; their leases will run out");
    sl_buf_free(&runs);
}

/* A cycle sent at `sent` recorded the outcomes of batch; durable: it claimed,
 * so it committed durably (113_durable_claims.sql). */
static void note_recorded(sl_worker *w, const wrun *batch, double sent, int durable)
{
    if (durable) {
        for (unflushed **u = &w->unflushed; *u;) {
            unflushed *f = *u;
            if (f->at < sent) {
                *u = f->next;
                sl_buf_free(&f->ids);
                free(f);
            } else {
                u = &f->next;
            }
        }
        return;
    }
    if (!batch) return;
    unflushed *f = sl_xcalloc(1, sizeof *f);
    f->at = ev_now(w->ctx->loop);
    sl_worker_put_run_ids(&f->ids, batch);
    f->next = w->unflushed;
    w->unflushed = f;
}

static void cycle_done(PGresult *res, const char *err, void *data)
{
    cycle_req *c = data;
    sl_worker *w = c->w;
    wrun *batch = c->batch;
    int asked = c->asked, gave = c->gave;
    double sent = c->sent;
    if (c->next) c->next->prev = c->prev;
    *c->prev = c->next;
    free(c);
    w->cycling--;
    w->asked -= asked;
    if (err && refused(w, &batch, asked, err)) {
        sl_worker_cycle(w); /* the rest of the batch, one at a time */
        return;
    }
    if (err) {
        for (wrun *r = batch; r; r = r->next)
            r->resent = 1; /* recorded, perhaps, and only the reply lost */
        requeue(w, batch); /* keep every completion: retry with backoff */
        /* and claimed, perhaps: the next cycle is a sweep first */
        if (asked > 0) w->orphans_possible = 1;
        if (w->leaving) return; /* cancelled as the process leaves: no retry */
        sl_worker_retry_later(w);
        note_cycle(w, err);
        return;
    }
    w->backoff = 0;
    note_cycle(w, NULL);
    /* the last of the runs recorded one a cycle: the cycles meanwhile claimed
     * nothing, though a NOTIFY, the poll or a retry may have asked for one */
    int isolated = 0;
    if (w->isolate > 0 && batch) isolated = --w->isolate == 0;
    /* the claimed runs, after a row for each outcome that was not recorded, one
     * for each failed or cancelled outcome recorded (its decision), and, in a
     * batch sent again, one for each outcome found recorded already (by the
     * cycle whose reply was lost; its decision, or none for a completion) */
    int rows = PQntuples(res), n = 0, unrecorded = PQfnumber(res, "unrecorded"), late = -1;
    int decision = PQfnumber(res, "decision"), already = PQfnumber(res, "recorded_already");
    sl_buf stale = {0};
    sl_claim_columns cols;
    sl_queue_claim_columns(res, &cols);
    ended_index ended = {0};
    for (int i = 0; i < rows; i++) {
        const char *st = PQgetisnull(res, i, unrecorded) ? NULL : PQgetvalue(res, i, unrecorded);
        if (gave > 0 && (st || !PQgetisnull(res, i, decision))) { /* a run given back? */
            const wrun *r = ended_find(&ended, batch, PQgetvalue(res, i, 0));
            if (r && r->give_back) {
                log_given_back(
                    r, PQgetisnull(res, i, decision) ? NULL : PQgetvalue(res, i, decision), st);
                continue;
            }
        }
        if (already >= 0 &&
            *PQgetvalue(res, i, already) == 't') { /* a cycle whose reply was lost recorded it */
            const wrun *r = ended_find(&ended, batch, PQgetvalue(res, i, 0));
            if (r)
                log_recorded_already(
                    r, PQgetisnull(res, i, decision) ? NULL : PQgetvalue(res, i, decision));
        } else if (!PQgetisnull(res, i, decision)) {
            const wrun *r = ended_find(&ended, batch, PQgetvalue(res, i, 0));
            if (r) log_ended(r, PQgetvalue(res, i, decision));
        } else if (!st) {
            if (late < 0) late = sl_queue_lease_claimed(&w->renewal, sent) < 0;
            if (late) {
                sl_buf_puts(&stale, PQgetvalue(res, i, 0));
                sl_buf_puts(&stale, ",");
                continue;
            }
            enqueue_claimed(w, res, i, &cols);
            n++;
        } else if (strcmp(st, "cancelled") != 0) { /* a deleted job's stopped run: logged then */
            const wrun *r = ended_find(&ended, batch, PQgetvalue(res, i, 0));
            int status;
            const char *id, *type = NULL, *error = NULL;
            double secs;
            if (r) wrun_ended(r, &status, &id, &type, &error, &secs);
            sl_log(SL_WARN,
                   "run outcome not recorded: the run was no longer running (lost its lease, or "
                   "its job was deleted)",
                   "run", PQgetvalue(res, i, 0), "type", type, "status", st, "error", error, NULL);
        }
    }
    PQclear(res);
    free(ended.at);
    /* a cycle that gave back runs committed durably too (192_give_back_unstartable_runs.sql) */
    note_recorded(w, batch, sent, n > 0 || stale.len > 0 || gave > 0);
    while (batch) {
        wrun *next = batch->next;
        wrun_free(batch);
        batch = next;
    }
    if (stale.len) give_back_late(w, sl_buf_str(&stale), ev_now(w->ctx->loop) - sent);
    sl_buf_free(&stale);
    if (w->stopping) {
        release_queued(w);
        if (w->done || w->orphans_possible)
            sl_worker_cycle(w);
        else
            sl_worker_maybe_exit(w);
        return;
    }
    sl_worker_start_queued(w);
    /* (a sweep waits for this: another cycle got no answer) */
    if (w->cycle_again || (n > 0 && n == asked) || w->orphans_possible || isolated) {
        w->cycle_again = 0;
        sl_worker_cycle(w);
    } else if (w->done) {
        schedule_record(w);
    } else if (n < asked && !w->cycling) {
        /* nothing more is due now: sleep until the next job is, or the poll */
        const char *params[] = {w->types};
        sl_pg_query_prepared(
            w->ctx->pg, "sl_next_due",
            "SELECT EXTRACT(EPOCH FROM min(next_run_at) - now()) FROM "
            "sluice.scheduled_jobs WHERE status = 'active' AND next_run_at IS NOT NULL "
            /* a job queued at +/-infinity before 097_finite_run_at.sql: no subtraction */
            "AND next_run_at > '-infinity' AND next_run_at < 'infinity' "
            "AND job_type = ANY ($1::text[])",
            1, params, next_due_done, w);
    }
}

void sl_worker_cycle(sl_worker *w)
{
    if (w->sweeping || (w->orphans_possible && w->cycling > 0)) {
        w->cycle_again = 1; /* after the sweep (sweep_done), which waits for no cycle in flight */
        return;
    }
    if (w->orphans_possible) {
        sl_worker_sweep(w);
        return;
    }
    if (w->cycling >= MAX_CYCLES) {
        w->cycle_again = 1;
        return;
    }
    /* Claiming ahead pays off for short runs; with long ones it would only keep
     * jobs waiting here that another worker could start. */
    double ahead = w->concurrency * PREFETCH_HORIZON / (w->avg_run > 1e-6 ? w->avg_run : 1e-6);
    int prefetch = ahead < w->prefetch ? (int)ahead : w->prefetch;
    int free_slots = w->concurrency - w->running - w->queued - w->asked;
    int want = w->stopping ? 0 : free_slots + prefetch;
    /* Free slots are filled at once; what is claimed ahead is split over both
     * cycles: one is in flight while the other's runs execute (two backends
     * at work, not one taking turns). */
    int per_cycle = (w->concurrency + prefetch) / MAX_CYCLES;
    if (want > per_cycle) want = free_slots > per_cycle ? free_slots : per_cycle;
    if (want > SL_WORKER_CLAIM_MAX) want = SL_WORKER_CLAIM_MAX;
    if (want < 0) want = 0;
    wrun *batch = w->done;
    if (w->isolate > 0 && batch) { /* one ended run a cycle, nothing claimed */
        w->done = batch->next;
        batch->next = NULL;
        want = 0;
    } else {
        w->done = NULL;
    }
    if (!batch && want == 0) return;
    sl_buf b = {0}, given = {0}; /* given: the runs given back, "a,b," */
    sl_buf_puts(&b, "[");
    int resent = 0, gave = 0, outcomes = 0;
    for (wrun *r = batch; r; r = r->next) {
        resent |= r->resent;
        if (r->give_back) {
            sl_buf_puts(&given, r->ended.run_id);
            sl_buf_puts(&given, ",");
            gave++;
            continue;
        }
        if (outcomes++) sl_buf_puts(&b, ",");
        if (r->outcome) {
            sl_buf_puts(&b, r->outcome);
            continue;
        }
        char next[40];
        sl_queue_next_cron(sl_run_job_id(r->run), sl_run_cron(r->run), sl_run_timezone(r->run),
                           w->zones, next);
        sl_queue_outcome_json(&b, r->run, next);
    }
    sl_buf_puts(&b, "]");
    sl_buf given_ids = {0};
    if (gave) sl_buf_id_array(&given_ids, sl_buf_str(&given));
    cycle_req *c = sl_xcalloc(1, sizeof *c);
    c->w = w;
    c->batch = batch;
    c->asked = want;
    c->gave = gave;
    c->sent = ev_now(w->ctx->loop);
    c->next = w->cycles;
    if (c->next) c->next->prev = &c->next;
    c->prev = &w->cycles;
    w->cycles = c;
    char limit[16];
    snprintf(limit, sizeof limit, "%d", want);
    const char *params[] = {sl_buf_str(&b),
                            w->id,
                            limit,
                            w->lease,
                            w->types,
                            resent ? "true" : "false",
                            gave ? sl_buf_str(&given_ids) : NULL};
    w->cycling++;
    w->asked += want;
    sl_pg_query_prepared(w->ctx->pg, "sl_cycle",
                         "SELECT * FROM sluice.finish_and_claim_runs($1::jsonb, $2, $3, $4, "
                         "$5::text[], true, $6, $7::uuid[])",
                         7, params, cycle_done, c);
    sl_buf_free(&b);
    sl_buf_free(&given);
    sl_buf_free(&given_ids);
}

void sl_worker_soon_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    sl_worker_cycle(t->data);
}

void sl_worker_claim_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    sl_worker_cycle(t->data);
}

/* A run to stop (sl_queue_stop) that is not in flight: if it is claimed and
 * waiting for a slot, it leaves the queue — a cancelled one recorded so, a
 * paused job's run given back to its job (it never started). A run whose lease
 * was lost or that is gone has nothing left to record. run_id NULL (the
 * fence): every waiting run, as lost. */
void sl_worker_stop_queued(const char *run_id, const char *reason, void *data)
{
    sl_worker *w = data;
    for (pending **at = &w->queue_head, *prev = NULL; *at;) {
        pending *p = *at;
        if (run_id && strcmp(p->spec.run_id, run_id) != 0) {
            prev = p;
            at = &p->next;
            continue;
        }
        *at = p->next;
        if (w->queue_tail == p) w->queue_tail = prev;
        w->queued--;
        sl_log(SL_INFO, "dropping a claimed run before its start", "run", p->spec.run_id, "type",
               p->spec.job_type, "reason", reason, NULL);
        if (strcmp(reason, "cancelled") == 0) record_unrun(w, p, SL_RUN_CANCELLED, "cancelled", 0);
        if (strcmp(reason, "paused") == 0) {
            char ids[64];
            snprintf(ids, sizeof ids, "{%s}", p->spec.run_id);
            release_runs(w, ids, sl_worker_ignore_result,
                         "could not give a paused job's claimed run back");
        }
        free(p);
        if (run_id) return;
    }
}

void sl_worker_on_notify(const char *channel, const char *payload, void *data)
{
    sl_worker *w = data;
    if (channel && strcmp(channel, "sluice_cancel") == 0) {
        /* sluice.cancel_job(): stop the run at once if it is ours */
        if (payload) sl_queue_stop(&w->renewal, payload, "cancelled");
        return;
    }
    sl_worker_cycle(w); /* also after the LISTEN connection came back (channel NULL) */
}

void sl_worker_ignore_result(PGresult *res, const char *err, void *data)
{
    const char *what = data;
    if (err) sl_log(SL_WARN, what, "error", err, NULL);
    if (res) PQclear(res);
}

/* The runs claimed and waiting for a slot, for the lease renewal. */
void sl_worker_queued_ids(sl_buf *ids, void *data)
{
    sl_worker *w = data;
    for (pending *p = w->queue_head; p; p = p->next) {
        sl_buf_puts(ids, p->spec.run_id);
        sl_buf_puts(ids, ",");
    }
}

/* ------------------------------------------------------------------ shutdown */

static void released(PGresult *res, const char *err, void *data)
{
    sl_worker *w = data;
    w->releasing = 0;
    if (err)
        sl_log(SL_WARN, "giving back claimed runs failed; their leases will expire", "error", err,
               NULL);
    if (res) PQclear(res);
    sl_worker_maybe_exit(w);
}

static void stopped_done(PGresult *res, const char *err, void *data)
{
    sl_worker *w = data;
    if (res) PQclear(res);
    (void)err;
    ev_break(w->ctx->loop, EVBREAK_ALL);
}

void sl_worker_maybe_exit(sl_worker *w)
{
    if (!w->stopping || w->running > 0 || w->done || w->cycling || w->sweeping || w->releasing ||
        w->flushing_logs)
        return;
    if (w->stopping == 2) return; /* already leaving */
    w->stopping = 2;
    const char *params[] = {w->id};
    sl_pg_query(w->ctx->pg, "UPDATE sluice.workers SET stopped_at = now() WHERE id = $1", 1, params,
                stopped_done, w);
}

/* After the grace period, the database has this long to record what the
 * process holds — its runs' outcomes, the claimed runs it gives back — or the
 * lease, if shorter: once that has passed, other workers' rescue takes the
 * runs anyway. Then the statements it has not answered (held up by a lock on
 * sluice's tables, or a server that stopped answering) are cancelled, and the
 * process leaves once they are answered, STOP_CANCEL_WAIT at most. So a stop
 * takes the grace period and 15 s at most: within examples/sluice.service's
 * TimeoutStopSec with the default grace. */
#define STOP_DB_WAIT 10.0
#define STOP_CANCEL_WAIT 5.0
/* While stopping, how often a statement the database has not answered for
 * that long is reported. */
#define STOP_REMIND 5.0

static double db_wait(const sl_worker *w)
{
    return w->cfg->lease_seconds < STOP_DB_WAIT ? w->cfg->lease_seconds : STOP_DB_WAIT;
}

/* How many ended runs the worker holds with their outcomes not recorded. */
static int unrecorded(const sl_worker *w)
{
    int n = 0;
    for (const wrun *r = w->done; r; r = r->next)
        n++;
    for (const cycle_req *c = w->cycles; c; c = c->next)
        for (const wrun *r = c->batch; r; r = r->next)
            n++;
    return n;
}

void sl_worker_grace_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    sl_worker *w = t->data;
    if (w->running > 0)
        sl_logf(SL_WARN, "grace period over: cancelling %d run%s", w->running,
                w->running == 1 ? "" : "s");
    sl_runtime_cancel_all_runs(w->ctx->rt, "shutdown");
    ev_timer_set(&w->leave, db_wait(w), 0);
    ev_timer_start(loop, &w->leave);
    sl_worker_maybe_exit(w);
}

/* Stopping: what the exit waits for when it is the database (every
 * STOP_REMIND, while a statement of the process's own has gone that long
 * without an answer): since when, what is not recorded yet, and when the
 * statements are cancelled. */
void sl_worker_remind_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    sl_worker *w = t->data;
    double since = sl_pg_waiting_since(w->ctx->pg), now = ev_now(loop);
    double in = ev_is_active(&w->grace) ? ev_timer_remaining(loop, &w->grace) + db_wait(w)
                                        : ev_timer_remaining(loop, &w->leave);
    if (!since || now - since < STOP_REMIND || in < 1) return; /* (then its own line) */
    char blocked[32], cancel[32], count[16];
    snprintf(blocked, sizeof blocked, "%.0fs", now - since);
    snprintf(cancel, sizeof cancel, "%.0fs", in);
    snprintf(count, sizeof count, "%d", unrecorded(w));
    sl_log(SL_WARN, "stopping: waiting for the database to answer a statement", "blocked_for",
           blocked, SL_NUM "unrecorded", count, "cancel_in", cancel, NULL);
}

/* The ended runs from r on, left unrecorded: each that did not complete
 * logged as such (a completed one was logged as it ended), and its id appended
 * to ids ("a,b,"). */
static void left_unrecorded(const wrun *r, sl_buf *ids)
{
    static const char lost[] = "not recorded: the database did not answer (another worker's "
                               "rescue pass fails the run once its lease runs out)";
    for (const wrun *e = r; e; e = e->next)
        if (e->outcome || sl_run_outcome_of(e->run)->status != SL_RUN_COMPLETED) log_ended(e, lost);
    sl_worker_put_run_ids(ids, r);
}

/* The exit without the database's answer (exit status 1), saying what is left
 * behind: each run whose outcome is not recorded (other workers' rescue fails
 * it once its lease runs out), and how many statements cancelled got no
 * answer (what they did is not known). */
static void leave(sl_worker *w)
{
    struct ev_loop *loop = w->ctx->loop;
    ev_prepare_stop(loop, &w->leaves);
    ev_timer_stop(loop, &w->leave);
    sl_buf ids = {0};
    left_unrecorded(w->done, &ids);
    for (cycle_req *c = w->cycles; c; c = c->next)
        left_unrecorded(c->batch, &ids);
    int n = unrecorded(w), open = sl_pg_in_flight(w->ctx->pg);
    char count[16], unanswered[16];
    snprintf(count, sizeof count, "%d", n);
    snprintf(unanswered, sizeof unanswered, "%d", open);
    if (n == 0) {
        sl_log(SL_WARN,
               "the database did not answer: stopping without its answer; no run's outcome is "
               "left unrecorded",
               open ? SL_NUM "unanswered" : NULL, unanswered, NULL);
    } else { /* the completed ones too: they will run again */
        sl_buf runs = {0};
        sl_buf_id_array(&runs, sl_buf_str(&ids));
        sl_log(SL_ERROR,
               "the database did not answer: stopping without recording every outcome; the "
               "leases hand the runs to other workers",
               SL_NUM "unrecorded", count, "runs", sl_buf_str(&runs),
               open ? SL_NUM "unanswered" : NULL, unanswered, NULL);
        sl_buf_free(&runs);
    }
    sl_buf_free(&ids);
    w->exit_status = 1;
    ev_break(loop, EVBREAK_ALL);
}

/* The database's time after the grace period has passed and the exit still
 * waits for it. Waiting longer serves nothing (the leases hand the runs to
 * other workers' rescue) and would outlast the time a service manager gives a
 * stop. The statements in flight are cancelled, so that none does its work
 * once the process is gone: a claim committed then would hold its jobs for no
 * one until their leases ran out, and spend an attempt of each. Once they are
 * answered (sl_worker_leaves_cb), or after STOP_CANCEL_WAIT, the process
 * leaves. */
void sl_worker_leave_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    sl_worker *w = t->data;
    if (!w->leaving) {
        w->leaving = 1;
        ev_timer_stop(loop, &w->remind);
        double since = sl_pg_waiting_since(w->ctx->pg);
        int n = sl_pg_cancel_in_flight(w->ctx->pg);
        if (n > 0) {
            char count[16], blocked[32];
            snprintf(count, sizeof count, "%d", n);
            snprintf(blocked, sizeof blocked, "%.0fs", ev_now(loop) - since);
            sl_log(SL_WARN,
                   "stopping: the database did not answer in time; cancelling the statements in "
                   "flight",
                   SL_NUM "statements", count, since ? "blocked_for" : NULL, blocked, NULL);
            ev_timer_set(&w->leave, STOP_CANCEL_WAIT, 0);
            ev_timer_start(loop, &w->leave);
            ev_prepare_start(loop, &w->leaves);
            return;
        }
    }
    leave(w);
}

/* Leaving: once no statement is in flight any more, the exit. */
void sl_worker_leaves_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    sl_worker *w = p->data;
    if (!sl_pg_in_flight(w->ctx->pg)) leave(w);
}

void sl_worker_signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)revents;
    sl_worker *w = s->data;
    if (++w->signals > 1) {
        sl_log(SL_WARN,
               "second signal: exiting at once; leases will hand unfinished runs to other workers",
               NULL);
        _exit(1);
    }
    char grace[32];
    sl_config_fmt_number(w->cfg->grace_seconds, grace, sizeof grace);
    sl_log(SL_INFO,
           w->running ? "stopping: no new claims; waiting for runs in flight"
                      : "stopping: no new claims; no run in flight",
           SL_BOOL "running", w->running ? "true" : "false", SL_NUM "grace_seconds", grace, NULL);
    w->stopping = 1;
    sl_notify("STOPPING=1");
    if (!w->cycling) release_queued(w); /* else cycle_done releases them with what it claimed */
    ev_timer_stop(loop, &w->claim_timer);
    ev_timer_stop(loop, &w->rescue);
    ev_timer_stop(loop, &w->retention);
    ev_timer_set(&w->grace, w->cfg->grace_seconds, 0);
    ev_timer_start(loop, &w->grace);
    ev_timer_set(&w->remind, STOP_REMIND, STOP_REMIND);
    ev_timer_start(loop, &w->remind);
    /* the sweep the stopped timer would have sent, and the recording after it */
    if (w->orphans_possible && !w->cycling && !w->sweeping) sl_worker_cycle(w);
    sl_worker_maybe_exit(w);
}

/* Frees what the worker still holds once its loop is over (serve, after the
 * runtime and the pool: no callback comes any more): the claimed runs waiting
 * for a slot, the ended runs waiting to be recorded, the cycles in flight, the
 * log flush in flight, the abandoned runs and the runs recorded lazily. */
void sl_worker_free_held(sl_worker *w)
{
    while (w->queue_head) {
        pending *p = w->queue_head;
        w->queue_head = p->next;
        free(p);
    }
    while (w->done) {
        wrun *n = w->done->next;
        wrun_free(w->done);
        w->done = n;
    }
    while (w->cycles) {
        cycle_req *c = w->cycles;
        w->cycles = c->next;
        while (c->batch) {
            wrun *n = c->batch->next;
            wrun_free(c->batch);
            c->batch = n;
        }
        free(c);
    }
    free(w->flush);
    sl_buf_free(&w->abandoned);
    while (w->unflushed) {
        unflushed *f = w->unflushed;
        w->unflushed = f->next;
        sl_buf_free(&f->ids);
        free(f);
    }
}
