/*
 * worker_int.h — what the parts of `sluice serve` share: the worker's state
 * (one per daemon, owned by serve()'s stack frame and reached through the
 * loop's callbacks) and the functions one part calls in another.
 * worker.c holds the runs, the cycle and shutdown; worker_sweep.c the sweep
 * after a claim's lost reply; worker_passes.c the periodic passes (rescue,
 * retention, log flush); worker_reload.c the reload (SIGHUP, edited handler
 * files); worker_serve.c the options, start-up and the loop. Not for other
 * subsystems: they know sl_cmd_serve (cli.h) and an opaque struct sl_worker.
 */
#ifndef SLUICE_WORKER_INT_H
#define SLUICE_WORKER_INT_H

#include "buf.h"
#include "config.h"
#include "ctx.h"
#include "queue.h"
#include "reload.h"
#include "runtime.h"
#include "tz.h"

#include <ev.h>
#include <libpq-fe.h>

/* The most runs one cycle claims (and the most --prefetch allows). */
#define SL_WORKER_CLAIM_MAX 500

struct cycle_req;
struct wrun;

/* A claimed run waiting for a free slot: its spec, whose strings (copied from
 * the claim) live in the same allocation, after the struct. */
typedef struct pending {
    sl_run_spec spec;
    struct pending *next;
} pending;

/* The ids of runs ("a,b,") whose outcomes a cycle answered at `at` recorded
 * with synchronous_commit off: a crash of the database may still lose them,
 * leaving the runs running under this worker. A cycle that claimed commits
 * durably, and with it every commit before it, so it drops the ones answered
 * before it was sent (note_recorded). At most the runs that ended between two
 * claims, so at most the concurrency and the prefetch. Also the abandoned runs
 * seen at `at` no longer running here (check_abandoned): the rescue that
 * failed one commits lazily too. */
typedef struct unflushed {
    struct unflushed *next;
    double at;
    sl_buf ids;
} unflushed;

typedef struct sl_worker {
    sl_ctx *ctx;
    sl_config *cfg; /* the settings in force: serve's own copy; a reload updates it */
    int argc;       /* serve's arguments, for a reload to apply its flags again */
    char **argv;
    char id[40];
    char lease[32];
    int concurrency;
    int prefetch;   /* at most this many claimed runs wait here for a free slot */
    double avg_run; /* moving average of run durations (s): the pace of prefetch */
    int paced;      /* a run has ended: avg_run is measured, no longer the guess */
    int running;    /* runs started, not yet ended */
    struct pending *queue_head, *queue_tail; /* claimed, not started yet */
    int queued;
    int cycling;            /* finish_and_claim calls in flight (at most MAX_CYCLES) */
    int cycle_again;        /* something happened while the maximum was in flight */
    int asked;              /* jobs those calls asked for */
    double backoff;         /* after a failed cycle */
    int isolate;            /* ended runs to record one a cycle: a batch was refused */
    double denied_since;    /* refusals for want of a privilege: the first of the */
    double denied_last;     /* stretch, the last (sl_worker_note_denied) */
    ev_timer claim_timer;   /* next due job / poll / retry after an error */
    sl_queue_lease renewal; /* renews the leases of the runs held, and the fence */
    ev_timer rescue;
    ev_timer retention;
    ev_timer logflush; /* records log lines of long runs as they come */
    int flushing_logs;
    void *flush;   /* that flush's request (a logflush_req), while in flight */
    ev_timer soon; /* the next cycle recording ended runs (record_delay) */
    ev_signal sigint, sigterm, sighup;
    sl_watch *watch;
    ev_timer grace;
    ev_timer leave;           /* after the grace period: how long to wait for the database, then
                                 for the answers to the statements cancelled (leaving) */
    ev_timer remind;          /* stopping: says so while the database holds up a statement */
    ev_prepare leaves;        /* leaving: the exit once no statement is in flight */
    struct cycle_req *cycles; /* finish_and_claim calls in flight */
    int stopping;
    int leaving; /* the statements in flight cancelled: nothing more is sent, the exit comes */
    int signals;
    struct wrun *done; /* ended runs waiting to be recorded */
    int releasing;     /* release_runs() in flight */
    /* a cycle that claimed got no answer: the database may hold runs it claimed
     * for this worker that the worker never heard of (see sl_worker_sweep()) */
    int orphans_possible;
    int sweeping; /* release_unheld_runs() in flight: no cycle is sent meanwhile */
    /* runs whose outcomes the database refused even as bare failures, left to
     * their leases ("a,b,"): they ran, so a sweep must not give them back;
     * each goes once it is seen no longer running here (check_abandoned) */
    sl_buf abandoned;
    int checking_abandoned; /* check_abandoned() in flight */
    int rescuing; /* statements of the last rescue pass not answered yet: none sent meanwhile */
    struct {      /* the periodic statements' failures in a row (sl_log_attempt) */
        sl_log_repeat rescue, unscheduled, abandoned, retention, log_flush, cycle, sweep, served;
    } failing;
    struct unflushed *unflushed; /* runs ended lazily, perhaps not yet on disk */
    int exit_status;
    sl_tz_cache *zones; /* time zones of recurring jobs, read once */
    char *types;        /* the job types it has handlers for, a text[] literal: all it claims */
} sl_worker;

/* serve's own options (sl_worker_serve_options). */
typedef struct serve_opts {
    const char *pidfile;
    int watch;    /* reload handlers when their files change */
    int prefetch; /* -1: the default */
} serve_opts;

/* worker.c */

/* Sends a cycle (records ended runs, claims due ones) unless one may not go. */
void sl_worker_cycle(sl_worker *w);
/* Starts claimed runs while slots are free. */
void sl_worker_start_queued(sl_worker *w);
/* (Re)arms the claim timer: the next cycle in `after` seconds. */
void sl_worker_arm_claim_timer(sl_worker *w, double after);
/* A pg callback that logs a failure (data: what failed) and drops the result. */
void sl_worker_ignore_result(PGresult *res, const char *err, void *data);
/* The log level of a periodic statement's failure: debug during an outage. */
int sl_worker_outage_level(const sl_worker *w);
/* A statement the worker repeats answered (a cycle, a sweep, a periodic pass):
 * its failure (err) logged as the first of a stretch, a reminder or at debug,
 * at the level an outage calls for, or its working again (sl_log_attempt, with
 * r that statement's). 1 when it failed. */
int sl_worker_note_attempt(sl_worker *w, sl_log_repeat *r, const char *err, const char *failed,
                           const char *again);
/* After a failed cycle or sweep: the next one armed after a backoff. */
void sl_worker_retry_later(sl_worker *w);
/* Notes a refusal for want of a privilege (sqlstate 42501; any other changes
 * nothing and gives 0): 1 when such refusals have gone on for a lease, then
 * taken for the statement's fault, not the role's. */
int sl_worker_note_denied(sl_worker *w, const char *sqlstate);
/* Appends the run ids of the ended runs from r on to ids ("a,b,"). */
void sl_worker_put_run_ids(sl_buf *ids, const struct wrun *r);
/* Appends to ids ("a,b,") every run whose outcome the worker is still to
 * record: in flight, claimed and waiting for a slot, ended and not recorded
 * yet (waiting for a cycle, or in one in flight). */
void sl_worker_put_held_ids(sl_worker *w, sl_buf *ids);
/* Stopping, once nothing is in flight: the exit begins. */
void sl_worker_maybe_exit(sl_worker *w);
/* Timer callbacks (data: the worker): the next cycle, a claim or a retry. */
void sl_worker_soon_cb(struct ev_loop *loop, ev_timer *t, int revents);
void sl_worker_claim_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
/* For the lease renewal: the runs waiting for a slot; a waiting run to stop. */
void sl_worker_queued_ids(sl_buf *ids, void *data);
void sl_worker_stop_queued(const char *run_id, const char *reason, void *data);
/* LISTEN sluice_jobs and sluice_cancel (data: the worker). */
void sl_worker_on_notify(const char *channel, const char *payload, void *data);
/* Shutdown: SIGINT/SIGTERM, the grace period over, the wait for the database
 * after it, the reminders of a statement the database holds up meanwhile, and
 * the exit once the statements cancelled are answered. */
void sl_worker_signal_cb(struct ev_loop *loop, ev_signal *s, int revents);
void sl_worker_grace_cb(struct ev_loop *loop, ev_timer *t, int revents);
void sl_worker_leave_cb(struct ev_loop *loop, ev_timer *t, int revents);
void sl_worker_remind_cb(struct ev_loop *loop, ev_timer *t, int revents);
void sl_worker_leaves_cb(struct ev_loop *loop, ev_prepare *p, int revents);
/* Frees what the worker still holds once the loop and the pool are gone. */
void sl_worker_free_held(sl_worker *w);

/* worker_sweep.c */

/* Gives back the runs a cycle with a lost reply may have claimed, unheld. */
void sl_worker_sweep(sl_worker *w);

/* worker_passes.c */

/* Timer callbacks (data: the worker): the rescue pass (with the unscheduled
 * recurring jobs and the abandoned runs), retention, the log flush. */
void sl_worker_rescue_cb(struct ev_loop *loop, ev_timer *t, int revents);
void sl_worker_retention_cb(struct ev_loop *loop, ev_timer *t, int revents);
void sl_worker_logflush_cb(struct ev_loop *loop, ev_timer *t, int revents);

/* worker_serve.c */

/* serve's own options (argv as serve got it): into o, and the numeric settings
 * into cfg, on top of the file, the environment and the global flags (they
 * win). 0; 1 after --help, the usage printed; -1 after saying what is wrong. */
int sl_worker_serve_options(sl_config *cfg, int argc, char **argv, serve_opts *o);

/* worker_reload.c */

/* Reloads every handler file (an sl_watch callback; data: the worker). */
void sl_worker_reload_handlers(void *data);
/* SIGHUP: the config file read again, then the handlers. */
void sl_worker_sighup_cb(struct ev_loop *loop, ev_signal *s, int revents);

#endif
