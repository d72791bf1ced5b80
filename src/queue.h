/*
 * queue.h — the job state machine's client side, shared by the daemon (worker.c)
 * and the foreground modes (`sluice run`, the REPL): start-up (migrate, sync the
 * registry, register the process as a worker), turning claimed rows into run
 * specs, and outcomes into finish_runs() entries. The rules themselves live in
 * SQL (schema/002_queue.sql).
 */
#ifndef SL_QUEUE_H
#define SL_QUEUE_H

#include "buf.h"
#include "log.h"
#include "runtime.h"

#include <ev.h>
#include <libpq-fe.h>

struct sl_ctx;
struct sl_config;

/* Loads the handlers into ctx->rt, printing problems (to the log, or with strict
 * as errors, which then make it return -1). */
int sl_queue_load(struct sl_ctx *ctx, int strict);

/* The statement that syncs the registry after the last load of rt's handlers,
 * only if it changed ($1: sl_runtime_registry_json): for a daemon in full (the
 * types it has no file for and no other live daemon serves are marked
 * unavailable), recording what it serves ($2: its worker id, $3:
 * sl_queue_type_array); in part for any other process (its one parameter $1)
 * or when a handler directory could not be read (sl_runtime_dirs_unread). */
const char *sl_queue_registry_sync_sql(const struct sl_runtime *rt, int daemon);

/* The job types rt has handlers for, as a text[] literal ("{a,b}"): what a
 * worker claims and waits for. Names are lower-case letters, digits and _ (the
 * loader refuses others), so none needs quoting. The caller frees it. */
char *sl_queue_type_array(struct sl_runtime *rt);

/* Starts opening the connection sl_queue_boot will use, so that the server sets
 * the session up while the handlers load (call it before sl_queue_load). */
void sl_queue_connect_early(struct sl_ctx *ctx);

/* Start-up with a blocking connection, before the loop runs: resolves the
 * database URL into ctx->db_url, migrates, syncs the registry of the loaded
 * handlers, and (worker_id given) registers a worker row of `kind`. Returns the
 * open connection (caller PQfinish()es), or NULL after printing the error, with
 * the exit status it calls for in *status (may be NULL): 2 when the database
 * refuses the connection's settings (sl_cli_connect), else 1. */
PGconn *sl_queue_boot(struct sl_ctx *ctx, const char *kind, char worker_id[40], int *status);

/* Sets up ctx for a command: a loop and a runtime echoing run logs as `echo`
 * (SL_ECHO_*). Returns 0, or -1 after printing the error. */
int sl_queue_open(struct sl_ctx *ctx, const struct sl_config *cfg, int echo);

/* Tears down what sl_queue_open and the command set up (runtime, pool, loop,
 * db_url, a connection started early and never used). */
void sl_queue_close(struct sl_ctx *ctx);

/* A claimed run: the row's fields (pointers into res). */
typedef struct sl_claimed {
    sl_run_spec spec;
    const char *schedule_type;
} sl_claimed;

/* The column numbers of a claim_jobs()/start_direct_run() result's fields
 * (-1: absent), looked up once per result rather than by name per row. */
typedef struct sl_claim_columns {
    int run_id, job_id, job_type, brand_id, parameters, checkpoint, trigger_source, attempt_number,
        timeout_seconds, schedule_type, cron_expression, timezone;
} sl_claim_columns;

void sl_queue_claim_columns(const PGresult *res, sl_claim_columns *out);

/* Reads row `row` of such a result, whose columns are cols. */
void sl_queue_claimed(const PGresult *res, int row, const sl_claim_columns *cols, sl_claimed *out);

/* A run status (SL_RUN_*) as the runs table spells it. */
const char *sl_queue_status_name(int status);

/* Appends run's finish_runs() entry (a JSON object) to b; next_cron is the next
 * slot of a recurring job as ISO 8601 UTC, or NULL. */
void sl_queue_outcome_json(sl_buf *b, sl_run *run, const char *next_cron);

/* The same for an outcome without a run (one that could not start). */
void sl_queue_outcome_json_of(sl_buf *b, const char *run_id, const sl_run_outcome *o,
                              const char *next_cron);

/* The same for outcome o reduced to a failure with message error, without its
 * result, log or dataset reports: what is left to record when the database
 * refused the outcome itself (a worker's batch, a foreground run). */
void sl_queue_bare_failure_json(sl_buf *b, const char *run_id, const sl_run_outcome *o,
                                const char *error);

/* A process's lease renewal: while the process holds runs, every lease/3 it
 * renews the leases of the runs it holds (sluice.renew_leases): those in
 * flight in ctx->rt and those `waiting` names. It stops the runs the answer
 * names: their job was cancelled (a cancel whose NOTIFY this process missed),
 * or the run is no longer its own (failed by a rescue after its lease
 * expired) or gone. And a fence: when no renewal has succeeded for 0.9 of a
 * lease (the database is out of reach), every run is stopped as "lease lost"
 * before other workers, by the database's clock, fail them and run their jobs
 * again. The caller owns the struct and fills in the fields above "kept by
 * queue.c"; both timers and the renewal in flight are the struct's own, and
 * sl_queue_lease_stop() ends them all, after which the struct may go. */
typedef struct sl_queue_lease {
    struct sl_ctx *ctx;
    const char *worker; /* the process's worker id */
    const char *lease;  /* lease seconds, as text */
    /* the runs held that are not in flight in ctx->rt (a daemon's claimed runs
     * waiting for a slot): appends each one's id followed by a comma to ids;
     * may be NULL */
    void (*waiting)(sl_buf *ids, void *data);
    /* a run named in the answer that is not in flight in ctx->rt (run_id NULL:
     * all of them, for the fence); may be NULL */
    void (*not_started)(const char *run_id, const char *reason, void *data);
    void *data; /* for both */
    /* kept by queue.c */
    double lease_seconds;
    /* every run held has had a lease from then at least: when the last renewal
     * that succeeded was sent, or an earlier claim answered since */
    double renewed_at;
    double sending_at; /* when the renewal in flight was sent; 0: none */
    /* renewed_at once that renewal succeeds: its sending, or an earlier claim
     * answered meanwhile (the renewal names none of that claim's runs) */
    double flight_base;
    struct sl_pg_req *req; /* that renewal, owned until answered or cancelled */
    int holding;           /* between starting (_start, _claimed) and _stop */
    sl_log_repeat failing; /* renewals refused in a row */
    ev_timer renew;        /* every lease/3 while holding */
    ev_timer fence;
} sl_queue_lease;

/* The process holds runs from now on (a daemon: from its start, whatever it
 * claims): renews them every lease/3 and arms the fence. sl_queue_lease_stop()
 * stops both and cancels a renewal in flight (no runs held, or the end); it
 * does nothing to a lease not held. */
void sl_queue_lease_start(sl_queue_lease *l);
void sl_queue_lease_stop(sl_queue_lease *l);

/* A claim sent at `sent` (the loop's time then) has been answered. Returns -1
 * when most of a lease has passed since (the fence's share): those leases may
 * have run out, a rescue may have failed the runs and their jobs may run
 * elsewhere already, so they must not start (the caller gives them back with
 * sluice.release_runs); the lease is left as it was. Else the leases of its
 * runs run from `sent` at the earliest and the fence guards them from now on;
 * a lease not held yet starts here (as sl_queue_lease_start, counting from
 * `sent`). The caller of a blocking claim updates the loop's time first. */
int sl_queue_lease_claimed(sl_queue_lease *l, double sent);

/* Before a held run starts: when the fence's time has passed but its timer has
 * not run yet (the loop was held up: the process stopped by a signal, a slow
 * machine), the fence runs now and 1 is returned: no run may start, as a
 * rescue may have failed them all by the database's clock. Else 0. */
int sl_queue_lease_fenced(sl_queue_lease *l);

/* Why a claim answered `after` seconds after it was sent is not started (after
 * sl_queue_lease_claimed said -1), for a lease of `lease` seconds (as text). */
void sl_queue_late_claim_why(char *buf, size_t len, double after, const char *lease);

/* Stops the run run_id for reason ("cancelled", "lost" or "deleted"; "paused"
 * leaves a run in flight alone) if it is in flight here, else hands it to
 * l->not_started. */
void sl_queue_stop(sl_queue_lease *l, const char *run_id, const char *reason);

struct sl_tz_cache;

/* The next fire time after now of recurring job `job_id`, as ISO 8601 UTC into
 * out; "" when it has none (one-time job, or a bad expression: logged with the
 * job). Zones come from `zones` (the daemon's: no zone file is read again on its
 * loop), or with NULL are read for this call. */
void sl_queue_next_cron(const char *job_id, const char *cron, const char *tz,
                        struct sl_tz_cache *zones, char out[40]);

/* The same, reporting a bad expression or zone in why: 0, or -1. */
int sl_queue_cron_slot(const char *cron, const char *tz, struct sl_tz_cache *zones, char out[40],
                       char *why, size_t whylen);

#endif
