/*
 * pg.c — the nonblocking libpq pool (see pg.h).
 *
 * A connection is in one of these states:
 *   DOWN        no socket; reconnect timer may be armed
 *   CONNECTING  PQconnectPoll driven by the socket's readiness
 *   IDLE        free for the next queued request
 *   BUSY        a query in flight (req set)
 *   PINNED      owned by a caller between sl_pg_acquire and sl_pg_release;
 *               its own queue holds that caller's queries
 * The pool has two FIFOs of requests for "any connection": the process's own,
 * served first, and handlers' (the "shared" ones), which never go to the
 * reserved connection (sl_pg_reserve); a pinned connection has its own. A new
 * connection's own queue starts with the pool's named statements
 * (PQsendPrepare) and its warm-up, so they precede anything the pool hands it;
 * a request for a named statement is then only bound and executed there (and
 * sent whole, as any other, where its preparation failed). When a connection
 * attempt fails and no connection is usable, queued requests fail at once with
 * the error (callers retry with backoff) instead of waiting forever. An
 * outage, from the first connection that fails to the next that opens or
 * answers, is the pool's to log: once as it starts, with reminders at growing
 * intervals, and once as it ends (outage_note, outage_over); a FATAL the
 * server sends as it ends a session is that failure's reason, not a line.
 * How a connection is opened, and whose fault a failed one is, is
 * pg_connect.c's. A process that leaves has the server cancel the statements
 * in flight (sl_pg_cancel_in_flight), and so does a request whose owner is
 * gone (sl_pg_interrupt: a run that ended mid-query), from a thread that does
 * only that: PQcancel blocks while it reaches the server.
 * The pool's own bookkeeping (requests, statement names, channels) uses buf.h's
 * allocation that aborts when memory runs out: its callers do not expect a
 * request to fail before it is queued.
 */
#include "pg_int.h"
#include "buf.h"
#include "log.h"

#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

enum { R_QUERY, R_ACQUIRE };

#define MAX_STMTS 16

/* What a connection's session holds of its handlers' statements (dirty), and
 * which tidying request a reset is (resets). */
enum { S_CLEAN, S_USED, S_MAY_PREPARE };
enum { R_RESET = 1, R_DEALLOCATE };

struct sl_pg_req {
    int kind;
    int stmt;     /* 1 + the named statement it executes (sl_pg_query_prepared), or 0 */
    int prepares; /* 1 + the named statement it prepares on its connection, or 0 */
    char *sql;
    char **params;
    int nparams;
    sl_pg_cb cb;
    sl_pg_acquire_cb acb;
    void *data;
    int cancelled;
    int internal; /* ROLLBACK/LISTEN/the session's reset, sent by the pool itself */
    int resets;  /* R_RESET the session's reset (as text), R_DEALLOCATE a DEALLOCATE ALL it asked */
    int limited; /* a handler's query: rows read one at a time, bounded (sl_pg_limit_results) */
    const char *state; /* SQLSTATE of an error the pool made itself, or NULL */
    double sent;       /* ev_now() when it was sent to the server */
    sl_pg_conn *on;    /* the connection it was sent on (in flight while its req is this) */
    PGresult *res;
    PGresult *rows; /* limited: the rows read so far */
    size_t bytes;   /* and their size */
    sl_pg_req *next;
};

typedef struct {
    sl_pg_req *head, *tail;
} req_queue;

struct sl_pg_conn {
    sl_pg *pg;
    PGconn *conn;
    int state;
    int pinned;
    int unpin_after; /* release requested while a query is queued/in flight */
    int limited;     /* pinned by sl_pg_acquire_shared: its queries are bounded */
    int listen;      /* the LISTEN connection */
    int dirty;       /* S_USED: a handler's statement ran here since the session was last reset;
                        S_MAY_PREPARE: one that may have prepared a statement (may_prepare) */
    int deallocate;  /* the reset found statements prepared by SQL: DEALLOCATE ALL next */
    ev_io io;
    ev_timer retry;
    double backoff;
    sl_pg_req *req;    /* in flight */
    req_queue queue;   /* pinned: the owner's queries */
    unsigned prepared; /* bit i: the pool's statement i is prepared on this connection */
    unsigned queued;   /* bit i: its preparation was queued here (done, failed or to come) */
    char fatal[256];   /* what the server said as it ended the session (a FATAL), until used */
    char where[320];   /* connecting: the address being tried (sl_pg_connect_moved) */
    int broke_off;     /* connecting: that address was given up at its deadline */
};

struct sl_pg {
    struct ev_loop *loop;
    char *url;
    int size;
    sl_pg_conn *conns;
    req_queue queue;  /* the process's own requests */
    req_queue shared; /* handlers' requests: not for conns[0 .. reserved - 1] */
    int reserved;
    size_t result_limit; /* bytes a limited request's rows may take; 0: no bound */
    sl_pg_conn listener;
    char **channels;
    int nchannels;
    sl_pg_notify_cb notify_cb;
    void *notify_data;
    char *warmup; /* run first on each new pool connection, or NULL */
    char *stmt_name[MAX_STMTS], *stmt_sql[MAX_STMTS];
    int nstmts;
    char err_sqlstate[6]; /* of the error being delivered to a callback ("" if none) */
    char last_error[512];
    /* an outage: from the first connection that failed to the next that opens
     * or answers; logged once as it starts, then reminded of with growing
     * intervals, and once as it ends (outage_note, outage_over) */
    sl_log_repeat down;    /* its start (ev_time(), or 0) and reminders */
    int down_refused;      /* its last reason was the settings' (sl_pg_connect_reason) */
    int held;              /* sends nothing more (sl_pg_cancel_in_flight) */
    pthread_t *cancellers; /* the threads sending cancel requests, not joined yet */
    int ncancellers;
};

static void conn_start(sl_pg_conn *c);
static void join_cancellers(sl_pg *pg);
static void queue_prepare(sl_pg_conn *c, int i, int front);
static void dispatch(sl_pg *pg);
static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);

/* ------------------------------------------------------------------ requests */

static void q_push(req_queue *q, sl_pg_req *r)
{
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
}

static void q_push_front(req_queue *q, sl_pg_req *r)
{
    r->next = q->head;
    q->head = r;
    if (!q->tail) q->tail = r;
}

static sl_pg_req *q_pop(req_queue *q)
{
    sl_pg_req *r = q->head;
    if (r) {
        q->head = r->next;
        if (!q->head) q->tail = NULL;
        r->next = NULL;
    }
    return r;
}

static void req_free(sl_pg_req *r)
{
    if (!r) return;
    free(r->sql);
    for (int i = 0; i < r->nparams; i++)
        free(r->params[i]);
    free(r->params);
    if (r->res) PQclear(r->res);
    if (r->rows) PQclear(r->rows);
    free(r);
}

static sl_pg_req *req_new(const char *sql, int nparams, const char *const *params, sl_pg_cb cb,
                          void *data)
{
    sl_pg_req *r = sl_xcalloc(1, sizeof *r);
    r->kind = R_QUERY;
    r->sql = sl_xstrdup(sql);
    r->nparams = nparams;
    if (nparams > 0) {
        r->params = sl_xcalloc((size_t)nparams, sizeof *r->params);
        for (int i = 0; i < nparams; i++)
            r->params[i] = params[i] ? sl_xstrdup(params[i]) : NULL;
    }
    r->cb = cb;
    r->data = data;
    return r;
}

/* Delivers a finished request to its owner (unless cancelled) and frees it. The
 * error's SQLSTATE (sl_pg_error_sqlstate) is the one of this request's result
 * during its callback, "" without one, and what it was again afterwards: a
 * request that fails at once inside another's callback does not read the
 * outer one's. */
static void deliver(sl_pg *pg, sl_pg_req *r, PGresult *res, const char *err)
{
    char outer[sizeof pg->err_sqlstate];
    memcpy(outer, pg->err_sqlstate, sizeof outer);
    ExecStatusType rs = res ? PQresultStatus(res) : PGRES_COMMAND_OK; /* no result: err */
    const char *st = rs == PGRES_FATAL_ERROR ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : r->state;
    snprintf(pg->err_sqlstate, sizeof pg->err_sqlstate, "%s", st ? st : "");
    if (rs != PGRES_TUPLES_OK && rs != PGRES_COMMAND_OK) {
        char buf[1024];
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        if (rs == PGRES_EMPTY_QUERY) primary = "the query is empty";
        sl_pg_clean_error(primary ? primary : PQresultErrorMessage(res), buf, sizeof buf);
        PQclear(res);
        r->cb(NULL, buf, r->data);
    } else {
        r->cb(res, res ? NULL : err, r->data);
    }
    memcpy(pg->err_sqlstate, outer, sizeof outer);
}

static void req_finish(sl_pg *pg, sl_pg_req *r, PGresult *res, const char *err)
{
    if (r->cancelled || r->internal || (r->kind == R_QUERY && !r->cb)) {
        if (res) PQclear(res);
    } else if (r->kind == R_ACQUIRE) {
        r->acb(NULL, err, r->data);
    } else {
        deliver(pg, r, res, err);
    }
    req_free(r);
}

/* ------------------------------------------------------------------ connections */

static void watch(sl_pg_conn *c, int events)
{
    struct ev_loop *loop = c->pg->loop;
    int fd = PQsocket(c->conn);
    if (ev_is_active(&c->io)) ev_io_stop(loop, &c->io);
    if (fd < 0) return;
    ev_io_set(&c->io, fd, events);
    ev_io_start(loop, &c->io);
}

static void fail_queue(sl_pg *pg, req_queue *q, const char *err)
{
    sl_pg_req *r;
    while ((r = q_pop(q)))
        req_finish(pg, r, NULL, err);
}

/* Whether a connection from the from-th on is open (or busy). */
static int any_usable(const sl_pg *pg, int from)
{
    for (int i = from; i < pg->size; i++)
        if (pg->conns[i].state == C_IDLE || pg->conns[i].state == C_BUSY) return 1;
    return 0;
}

/* Whether requests wait for a connection (the i-th, or any when i < 0). */
static int waiting(const sl_pg *pg, int i)
{
    return pg->queue.head || (pg->shared.head && (i < 0 || i >= pg->reserved));
}

/* A connection broke or could not be made (why; refused: for its settings'
 * sake, see sl_pg_connect_reason): the first failure of an outage is logged
 * with its reason, and later ones only as reminders, 10 s after the start,
 * then at doubling intervals up to 5 minutes, or at once when the reason turns
 * from an unreachable server to one that refuses the settings (or back):
 * sl_log_repeat_due(), with lines of its own. */
static void outage_note(sl_pg *pg, const char *why, int refused, int was_up)
{
    double now = ev_time();
    static const char hint[] = "a configuration problem, not an outage: the server refuses this "
                               "connection's settings (the database URL, PG* environment "
                               "variables, the server's roles, databases or pg_hba.conf)";
    if (!pg->down.since) {
        sl_log_repeat_due(&pg->down, now); /* it starts */
        pg->down_refused = refused;
        sl_log(SL_WARN,
               was_up ? "database connection failed; retrying until it is back"
                      : "cannot connect to the database; retrying until it answers",
               "error", why, refused ? "cause" : NULL, hint, NULL);
        return;
    }
    /* a change of reason is news ("now"), not a reminder ("still"): told at
     * once, and the next reminder counts from it at the same interval */
    int changed = refused != pg->down_refused;
    if (changed)
        pg->down.told = now;
    else if (!sl_log_repeat_due(&pg->down, now))
        return;
    char down[32];
    snprintf(down, sizeof down, "%.0fs", now - pg->down.since);
    sl_log(SL_WARN,
           refused ? (changed ? "the database now refuses the connection; retrying"
                              : "the database still refuses the connection; retrying")
                   : (changed ? "the database is now unreachable; retrying"
                              : "the database is still unreachable; retrying"),
           "down_for", down, "error", why, refused ? "cause" : NULL, hint, NULL);
    pg->down_refused = refused;
}

/* A connection opened, or a statement was answered: an outage is over. */
static void outage_over(sl_pg *pg)
{
    if (!pg->down.since) return;
    char down[32];
    snprintf(down, sizeof down, "%.1fs", ev_time() - pg->down.since);
    sl_log(SL_INFO, "database connection back", "down_for", down, NULL);
    pg->down = (sl_log_repeat){0};
}

/* The connection broke or could not be made, or (dropped) the pool closed it:
 * fail what it held, schedule a retry. */
static void conn_lost(sl_pg_conn *c, const char *why, int dropped)
{
    sl_pg *pg = c->pg;
    char buf[512];
    int refused = 0;
    if (!dropped && c->fatal[0]) /* the server's reason, said before it closed the socket */
        snprintf(buf, sizeof buf, "%s", c->fatal);
    else
        refused = sl_pg_connect_reason(why && *why ? why : "connection lost", buf, sizeof buf);
    c->fatal[0] = '\0';
    if (ev_is_active(&c->io)) ev_io_stop(pg->loop, &c->io);
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    int was_up = c->state == C_IDLE || c->state == C_BUSY;
    if (c->state == C_CONNECTING) ev_timer_stop(pg->loop, &c->retry); /* its deadline */
    c->state = C_DOWN;
    c->dirty = S_CLEAN; /* the next session starts clean */
    c->deallocate = 0;
    snprintf(pg->last_error, sizeof pg->last_error, "%s", buf);
    /* before the requests fail: their owners see the outage (sl_pg_outage_error) */
    if (!dropped) outage_note(pg, buf, refused, was_up);
    if (c->req) {
        sl_pg_req *r = c->req;
        c->req = NULL;
        req_finish(pg, r, NULL, buf);
    }
    fail_queue(pg, &c->queue, buf);
    if (c->pinned && c->unpin_after) { /* its owner let it go already */
        c->pinned = 0;
        c->unpin_after = 0;
    }
    /* closed on purpose, the server is not in doubt: what waits for a
     * connection is not failed with this request's error, it waits for the
     * connection opened again below (and fails if that attempt does) */
    if (!dropped && !any_usable(pg, 0)) fail_queue(pg, &pg->queue, buf);
    if (!dropped && !any_usable(pg, pg->reserved)) fail_queue(pg, &pg->shared, buf);
    c->backoff = c->backoff < 0.1 || dropped ? 0.1 : c->backoff * 2;
    if (c->backoff > 5) c->backoff = 5;
    /* a pinned one stays down until released: reopened, it would run its
     * owner's next statements outside the transaction that was lost */
    if (c->listen || (!c->pinned && waiting(pg, (int)(c - pg->conns)))) {
        /* a release may have armed it already; libev sets only a stopped timer */
        ev_timer_stop(pg->loop, &c->retry);
        ev_timer_set(&c->retry, c->backoff, 0);
        ev_timer_start(pg->loop, &c->retry);
    }
}

static void conn_down(sl_pg_conn *c, const char *why)
{
    conn_lost(c, why, 0);
}

/* Gives the address being connected to its connect_timeout from now; none
 * when the settings wait for ever. */
static void arm_deadline(sl_pg_conn *c)
{
    int ms = sl_pg_connect_timeout_ms(c->conn);
    ev_timer_stop(c->pg->loop, &c->retry);
    if (ms < 0) return;
    ev_timer_set(&c->retry, ms / 1000.0, 0);
    ev_timer_start(c->pg->loop, &c->retry);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sl_pg_conn *c = w->data;
    if (c->state != C_CONNECTING) {
        if (c->state == C_DOWN && !c->pinned) conn_start(c);
        return;
    }
    /* the address's deadline (arm_deadline): libpq goes on to the next, or
     * fails, as the socket reports the break (on_connecting) */
    if (!c->broke_off && sl_pg_connect_break_off(c->conn)) {
        c->broke_off = 1;
        arm_deadline(c); /* should the socket not report the break */
    } else {
        conn_down(c, "timeout expired (connect_timeout)");
    }
}

/* Whether res is the server ending the session (a FATAL or PANIC): then its
 * primary message is kept in c->fatal, the reason of the failure that follows
 * (conn_lost), logged with it once, not once per connection as a server stops. */
static int session_ended(sl_pg_conn *c, const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!sev || (strcmp(sev, "FATAL") != 0 && strcmp(sev, "PANIC") != 0)) return 0;
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(c->fatal, sizeof c->fatal, "%s", msg ? msg : PQresultErrorMessage(res));
    return 1;
}

/* What the server says outside a result to a pool's connection (a NOTICE or
 * WARNING, the FATAL of a connection it ends while idle): a line of the log,
 * but for a FATAL, which is the reason of the failure that follows. libpq's
 * default receiver printed it as a bare "FATAL:  terminating connection …" on
 * stderr, amid the log lines. */
static void notice_to_log(void *arg, const PGresult *res)
{
    sl_pg_conn *c = arg;
    if (!session_ended(c, res)) sl_pg_log_notice(res);
}

static void conn_start(sl_pg_conn *c)
{
    sl_pg *pg = c->pg;
    c->conn = sl_pg_open(pg->url, notice_to_log, c);
    if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
        conn_down(c, c->conn ? PQerrorMessage(c->conn) : "out of memory");
        return;
    }
    PQsetnonblocking(c->conn, 1);
    c->state = C_CONNECTING;
    c->broke_off = 0;
    sl_pg_connect_moved(c->conn, c->where, sizeof c->where);
    watch(c, EV_WRITE);
    /* PQconnectPoll leaves connect_timeout to its caller: without a deadline an
     * attempt a server never answers (a hung server or proxy, packets dropped)
     * held the connection, and what waited for it, for good */
    arm_deadline(c);
}

/* A ROLLBACK for an unpinned connection that a statement left inside a
 * transaction (a handler's sluice.db.query("BEGIN")), or NULL: what the pool
 * hands it next would run inside that transaction, never committed, or fail
 * once it is aborted. */
static sl_pg_req *rollback_left_open(sl_pg_conn *c)
{
    PGTransactionStatusType ts = PQtransactionStatus(c->conn);
    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR) return NULL;
    sl_log(SL_WARN,
           "a statement left a transaction open on a shared connection; rolled back "
           "(sluice.db.transaction runs one)",
           NULL);
    sl_pg_req *r = req_new("ROLLBACK", 0, NULL, NULL, NULL);
    r->internal = 1;
    return r;
}

/* What a handler's statements may have changed in their session and left for
 * whatever the connection runs next (the pool's own statements, other runs'):
 * settings (SET, set_config(), a role), LISTENs, cursors WITH HOLD, session
 * advisory locks, temporary tables and sequences' cached values. Each is put
 * back as the connection opened (RESET restores the settings given at
 * connect). The pool's prepared statements stay unless a handler prepared
 * some of its own: after a statement that may have (may_prepare) the reset asks
 * whether any prepared by SQL remain (the pool prepares through the protocol),
 * and if so a DEALLOCATE ALL follows and the pool prepares its own again. The
 * question costs about as much as the rest of the reset, hence only then. */
#define SESSION_RESET                                                                              \
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; CLOSE ALL; "                        \
    "SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
#define PREPARED_BY_SQL                                                                            \
    "; SELECT EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql)"

/* Whether a handler's statement, answered res, may have left statements
 * prepared by SQL in its session: a PREPARE, a DO block or a CALL (which can
 * run one), or a statement that failed (it may have prepared one before; a
 * rollback does not undo a PREPARE). A function called by a SELECT that runs
 * PREPARE is not seen. */
static int may_prepare(const PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_FATAL_ERROR) return 1;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return 0;
    const char *cmd = PQcmdStatus((PGresult *)res);
    return strcmp(cmd, "PREPARE") == 0 || strcmp(cmd, "DO") == 0 || strcmp(cmd, "CALL") == 0;
}

/* What an unpinned connection runs before anything else: a ROLLBACK of a
 * transaction a statement left open, else the reset of a session a handler's
 * statements ran in (a request that goes as text, in one round trip), else the
 * DEALLOCATE ALL that reset found needed. */
static sl_pg_req *tidy_session(sl_pg_conn *c)
{
    sl_pg_req *r = rollback_left_open(c);
    if (r || !(c->dirty || c->deallocate)) return r;
    const char *sql = c->dirty == S_MAY_PREPARE ? SESSION_RESET PREPARED_BY_SQL : SESSION_RESET;
    r = req_new(c->dirty ? sql : "DEALLOCATE ALL", 0, NULL, NULL, NULL);
    r->internal = 1;
    r->resets = c->dirty ? R_RESET : R_DEALLOCATE;
    c->dirty = S_CLEAN;
    c->deallocate = 0;
    return r;
}

/* A session's reset (R_RESET) or DEALLOCATE ALL (R_DEALLOCATE) was answered: a failed one
 * closes the connection (what the handler left there is unknown, a new session
 * has none of it); a reset that found statements prepared by SQL (its last
 * result, PREPARED_BY_SQL's, says true) asks for the DEALLOCATE ALL, after which
 * the pool's statements are prepared again. 0 when closed. */
static int reset_answered(sl_pg_conn *c, int resets, const PGresult *res)
{
    if (!res || PQresultStatus(res) == PGRES_FATAL_ERROR) {
        char why[512];
        sl_pg_clean_error(res ? PQresultErrorMessage(res) : "no result", why, sizeof why);
        sl_log(SL_WARN, "cannot reset a session a handler used; its connection is opened again",
               "error", why, NULL);
        conn_lost(c, why, 1);
        return 0;
    }
    if (resets == R_RESET) {
        c->deallocate = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                        strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    } else { /* those prepared here are gone; those still queued come */
        unsigned lost = c->prepared;
        c->prepared = 0;
        for (int i = 0; i < c->pg->nstmts; i++)
            if (lost & 1u << i) queue_prepare(c, i, 1);
    }
    return 1;
}

/* Sends the connection's next request: from its own queue, or (unpinned) the pool's. */
static void conn_next(sl_pg_conn *c)
{
    sl_pg *pg = c->pg;
    sl_pg_req *r;
    for (;;) {
        if (c->state != C_IDLE || pg->held) return;
        /* an unpinned connection's own queue holds the pool's statements */
        r = c->pinned || c->listen ? NULL : tidy_session(c);
        if (!r) r = q_pop(&c->queue);
        if (!r && c->pinned && c->unpin_after) {
            c->pinned = 0;
            c->unpin_after = 0;
            r = tidy_session(c);
        }
        if (!r && !c->pinned && !c->listen) r = q_pop(&pg->queue);
        if (!r && !c->pinned && !c->listen && c - pg->conns >= pg->reserved) r = q_pop(&pg->shared);
        if (!r) return;
        if (r->kind == R_ACQUIRE) {
            c->pinned = 1;
            c->limited = r->limited;
            sl_pg_acquire_cb cb = r->acb;
            void *data = r->data;
            int cancelled = r->cancelled;
            req_free(r);
            if (cancelled)
                c->pinned = 0;
            else
                cb(c, NULL, data);
            continue;
        }
        if (r->cancelled) {
            req_finish(pg, r, NULL, NULL);
            continue;
        }
        const char *const *params = (const char *const *)r->params;
        int sent;
        if (r->limited && !c->dirty) c->dirty = S_USED;
        if (r->resets)
            sent = PQsendQuery(c->conn, r->sql);
        else if (r->prepares)
            sent = PQsendPrepare(c->conn, pg->stmt_name[r->prepares - 1], r->sql, 0, NULL);
        else if (r->stmt && (c->prepared & 1u << (r->stmt - 1)))
            sent = PQsendQueryPrepared(c->conn, pg->stmt_name[r->stmt - 1], r->nparams, params,
                                       NULL, NULL, 0);
        else
            sent = PQsendQueryParams(c->conn, r->sql, r->nparams, NULL, params, NULL, NULL, 0);
        if (!sent) {
            c->req = r; /* conn_down fails it with the error */
            conn_down(c, PQerrorMessage(c->conn));
            return;
        }
        c->req = r;
        c->state = C_BUSY;
        r->sent = ev_now(pg->loop);
        r->on = c;
        if (r->limited && pg->result_limit) PQsetSingleRowMode(c->conn);
        int f = PQflush(c->conn);
        watch(c, f == 1 ? EV_READ | EV_WRITE : EV_READ);
        return;
    }
}

static void listener_ready(sl_pg_conn *c)
{
    sl_pg *pg = c->pg;
    for (int i = 0; i < pg->nchannels; i++) {
        char sql[256];
        char *ident = PQescapeIdentifier(c->conn, pg->channels[i], strlen(pg->channels[i]));
        snprintf(sql, sizeof sql, "LISTEN %s", ident ? ident : pg->channels[i]);
        PQfreemem(ident);
        sl_pg_req *r = req_new(sql, 0, NULL, NULL, NULL);
        r->internal = 1;
        q_push(&c->queue, r);
    }
    /* the owner hears that notifications may have been missed while it was
     * down once these are answered (listener_answered), not now: a NOTIFY
     * from before the LISTENs take effect would be missed after that */
}

/* Queues the preparation of the pool's statement i on c: last, or (front)
 * before anything else c has queued. */
static void queue_prepare(sl_pg_conn *c, int i, int front)
{
    sl_pg_req *r = req_new(c->pg->stmt_sql[i], 0, NULL, NULL, NULL);
    r->internal = 1;
    r->prepares = i + 1;
    if (front)
        q_push_front(&c->queue, r);
    else
        q_push(&c->queue, r);
    c->queued |= 1u << i;
}

/* Queues the preparation of every statement of the pool on a connection that
 * has just opened (nothing is prepared there yet), before anything else. */
static void queue_prepares(sl_pg_conn *c)
{
    c->prepared = c->queued = 0;
    for (int i = 0; i < c->pg->nstmts; i++)
        queue_prepare(c, i, 0);
}

/* Queues the pool's warm-up statement (if any) on c, before anything else that
 * comes to c from now on. */
static void queue_warmup(sl_pg_conn *c)
{
    if (!c->pg->warmup) return;
    sl_pg_req *r = req_new(c->pg->warmup, 0, NULL, NULL, NULL);
    r->internal = 1;
    q_push(&c->queue, r);
}

static void read_notifies(sl_pg_conn *c)
{
    sl_pg *pg = c->pg;
    PGnotify *n;
    while ((n = PQnotifies(c->conn))) {
        if (pg->notify_cb) pg->notify_cb(n->relname, n->extra, pg->notify_data);
        PQfreemem(n);
    }
}

/* A LISTEN connection's statement was answered: the notifications read with
 * the answer are delivered (they came after the socket was last read, and no
 * more reading may come for them); after its last LISTEN, the owner is told
 * that notifications may have been missed while it was down. */
static void listener_answered(sl_pg_conn *c)
{
    sl_pg *pg = c->pg;
    read_notifies(c);
    if (!c->queue.head && pg->notify_cb) pg->notify_cb(NULL, NULL, pg->notify_data);
}

static void on_connecting(sl_pg_conn *c)
{
    int broke_off = c->broke_off;
    c->broke_off = 0;
    PostgresPollingStatusType st = PQconnectPoll(c->conn);
    if ((st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) &&
        sl_pg_connect_moved(c->conn, c->where, sizeof c->where))
        arm_deadline(c); /* another address: its own connect_timeout */
    switch (st) {
    case PGRES_POLLING_READING:
        watch(c, EV_READ);
        return;
    case PGRES_POLLING_WRITING:
        watch(c, EV_WRITE);
        return;
    case PGRES_POLLING_OK:
        ev_timer_stop(c->pg->loop, &c->retry); /* the deadline */
        PQsetErrorVerbosity(c->conn, PQERRORS_DEFAULT);
        c->state = C_IDLE;
        c->backoff = 0;
        c->pg->last_error[0] = '\0';
        outage_over(c->pg);
        watch(c, EV_READ);
        if (c->listen) {
            listener_ready(c);
        } else {
            queue_prepares(c);
            queue_warmup(c);
        }
        conn_next(c);
        dispatch(c->pg);
        return;
    default: /* the last address given up at its deadline: libpq read that as a reset */
        conn_down(c, broke_off ? "timeout expired (connect_timeout)" : PQerrorMessage(c->conn));
        return;
    }
}

/* A limited request's row, read alone: added to its rows so far. NULL, or why
 * it cannot be (the rows would pass the pool's bound). */
static const char *add_row(sl_pg *pg, sl_pg_req *r, const PGresult *row, char *why, size_t len)
{
    int n = r->rows ? PQntuples(r->rows) : 0, cols = PQnfields(row);
    if (cols == 0) /* libpq cannot add a row of no values to a result */
        return "sluice.db cannot return rows that have no columns: select at least one";
    for (int j = 0; j < cols; j++)
        r->bytes += (size_t)PQgetlength(row, 0, j) + 16; /* a value, and its place */
    if (r->bytes > pg->result_limit) {
        snprintf(why, len,
                 "the query's result passed %zu MB, the memory cap (memory_limit_mb), before its "
                 "end: select less, or fetch it in parts (LIMIT and OFFSET, or a cursor)",
                 pg->result_limit >> 20);
        return why;
    }
    if (!r->rows && !(r->rows = PQcopyResult(row, PG_COPYRES_ATTRS))) return "out of memory";
    for (int j = 0; j < cols; j++) {
        int null = PQgetisnull(row, 0, j);
        if (!PQsetvalue(r->rows, n, j, null ? NULL : PQgetvalue(row, 0, j),
                        null ? -1 : PQgetlength(row, 0, j)))
            return "out of memory";
    }
    return NULL;
}

static void on_busy(sl_pg_conn *c, int revents)
{
    if (revents & EV_WRITE) {
        int f = PQflush(c->conn);
        if (f < 0) {
            conn_down(c, PQerrorMessage(c->conn));
            return;
        }
        if (f == 0) watch(c, EV_READ);
    }
    if (!(revents & EV_READ)) return;
    if (!PQconsumeInput(c->conn)) {
        conn_down(c, PQerrorMessage(c->conn));
        return;
    }
    if (c->listen) read_notifies(c);
    while (!PQisBusy(c->conn)) {
        PGresult *res = PQgetResult(c->conn);
        if (!res) {
            sl_pg_req *r = c->req;
            c->req = NULL;
            c->state = C_IDLE;
            PGresult *keep = r->res;
            r->res = NULL;
            if (r->limited && may_prepare(keep))
                c->dirty = S_MAY_PREPARE; /* before keep is the rows read */
            if (r->rows && keep && PQresultStatus(keep) == PGRES_TUPLES_OK) {
                PQclear(keep); /* the end of the rows read one at a time */
                keep = r->rows;
                r->rows = NULL;
            }
            outage_over(c->pg); /* the server answered */
            const char *state = keep && PQresultStatus(keep) == PGRES_FATAL_ERROR
                                    ? PQresultErrorField(keep, PG_DIAG_SQLSTATE)
                                    : NULL;
            if (r->stmt && (c->prepared & 1u << (r->stmt - 1)) && state &&
                strcmp(state, "26000") == 0) {
                /* the session lost the statement (a handler's DEALLOCATE or
                 * DISCARD on this connection): it is prepared again, and this
                 * request, which did not run, sent again behind it */
                PQclear(keep);
                c->prepared &= ~(1u << (r->stmt - 1));
                q_push_front(&c->queue, r);
                queue_prepare(c, r->stmt - 1, 1);
                conn_next(c);
                dispatch(c->pg);
                return;
            }
            if (r->resets) {
                int open = reset_answered(c, r->resets, keep);
                req_finish(c->pg, r, keep, NULL);
                if (open) conn_next(c);
                dispatch(c->pg);
                return;
            }
            if (r->prepares) {
                int ok = keep && PQresultStatus(keep) == PGRES_COMMAND_OK;
                if (ok)
                    c->prepared |= 1u << (r->prepares - 1);
                else { /* its requests are sent whole here, and fail with the real error */
                    char why[512];
                    sl_pg_clean_error(keep ? PQresultErrorMessage(keep) : "no result", why,
                                      sizeof why);
                    sl_log(SL_WARN, "cannot prepare a statement", "name",
                           c->pg->stmt_name[r->prepares - 1], "error", why, NULL);
                }
            }
            req_finish(c->pg, r, keep, keep ? NULL : "no result");
            if (c->listen) listener_answered(c);
            conn_next(c);
            dispatch(c->pg);
            return;
        }
        if (PQresultStatus(res) == PGRES_SINGLE_TUPLE) {
            char buf[256];
            const char *why = add_row(c->pg, c->req, res, buf, sizeof buf);
            PQclear(res);
            if (why) {
                /* closing the connection stops the query wherever it is; 54000,
                 * program limit exceeded, says a retry would do the same */
                c->req->state = "54000";
                conn_lost(c, why, 1);
                return;
            }
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            /* libpq now hands out a COPY result on every PQgetResult and is
             * never busy again until the copy's data is sent or read, which
             * the pool does not do: closing the connection ends the COPY;
             * 0A000, feature not supported, says a retry would do the same */
            PQclear(res);
            c->req->state = "0A000";
            conn_lost(c,
                      "sluice.db does not run COPY FROM STDIN or TO STDOUT: use INSERT or "
                      "SELECT (COPY to or from a server file is not affected)",
                      1);
            return;
        }
        if (st == PGRES_FATAL_ERROR && session_ended(c, res)) {
            /* the server ends the session with a statement in flight (it was
             * terminated, the server stops): the statement fails as with any
             * connection lost, not as an error of its own, and the connection
             * is opened again */
            PQclear(res);
            conn_down(c, c->fatal);
            return;
        }
        /* Keep the first error, else the last result. */
        if (c->req->res && PQresultStatus(c->req->res) == PGRES_FATAL_ERROR) {
            PQclear(res);
        } else {
            if (c->req->res) PQclear(c->req->res);
            c->req->res = res;
        }
    }
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    sl_pg_conn *c = w->data;
    switch (c->state) {
    case C_CONNECTING:
        on_connecting(c);
        break;
    case C_BUSY:
        on_busy(c, revents);
        break;
    case C_IDLE:
        /* Idle sockets become readable on NOTIFY (listener) or when the server
         * closes the connection. */
        if (!PQconsumeInput(c->conn)) {
            conn_down(c, PQerrorMessage(c->conn));
            return;
        }
        read_notifies(c);
        break;
    default:
        break;
    }
}

static void conn_init(sl_pg *pg, sl_pg_conn *c, int listen)
{
    memset(c, 0, sizeof *c);
    c->pg = pg;
    c->listen = listen;
    c->state = C_DOWN;
    ev_init(&c->io, conn_io_cb);
    c->io.data = c;
    ev_init(&c->retry, retry_cb);
    c->retry.data = c;
}

/* Hands queued requests to idle connections, opening new ones up to the size. */
static void dispatch(sl_pg *pg)
{
    if (pg->held) return;
    for (int i = 0; i < pg->size && waiting(pg, -1); i++) {
        sl_pg_conn *c = &pg->conns[i];
        if (c->state == C_IDLE && !c->pinned) conn_next(c);
    }
    if (!waiting(pg, -1)) return;
    /* Still waiting: open one more connection if one is down and not backing off. */
    for (int i = 0; i < pg->size; i++) {
        sl_pg_conn *c = &pg->conns[i];
        if (c->state == C_CONNECTING) return; /* one attempt at a time */
    }
    for (int i = 0; i < pg->size; i++) {
        sl_pg_conn *c = &pg->conns[i];
        if (c->state == C_DOWN && !c->pinned && !ev_is_active(&c->retry) && waiting(pg, i)) {
            conn_start(c);
            return;
        }
    }
}

/* ------------------------------------------------------------------ public API */

sl_pg *sl_pg_new(struct ev_loop *loop, const char *url, int size)
{
    sl_pg *pg = sl_xcalloc(1, sizeof *pg);
    pg->loop = loop;
    pg->url = sl_xstrdup(url);
    pg->size = size < 1 ? 1 : size;
    pg->conns = sl_xcalloc((size_t)pg->size, sizeof *pg->conns);
    for (int i = 0; i < pg->size; i++)
        conn_init(pg, &pg->conns[i], 0);
    conn_init(pg, &pg->listener, 1);
    return pg;
}

void sl_pg_adopt(sl_pg *pg, PGconn *conn)
{
    for (int i = 0; i < pg->size; i++) {
        sl_pg_conn *c = &pg->conns[i];
        if (c->state != C_DOWN || c->pinned || ev_is_active(&c->retry)) continue;
        if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE ||
            PQsetnonblocking(conn, 1) != 0)
            break;
        c->conn = conn;
        c->state = C_IDLE;
        PQsetNoticeReceiver(conn, notice_to_log, c); /* as the pool's own (notice_to_log) */
        queue_prepares(c);
        watch(c, EV_READ);
        conn_next(c);
        return;
    }
    PQfinish(conn);
}

static void conn_close(sl_pg_conn *c)
{
    sl_pg *pg = c->pg;
    if (ev_is_active(&c->io)) ev_io_stop(pg->loop, &c->io);
    if (ev_is_active(&c->retry)) ev_timer_stop(pg->loop, &c->retry);
    if (c->conn) PQfinish(c->conn);
    c->conn = NULL;
    req_free(c->req);
    c->req = NULL;
    sl_pg_req *r;
    while ((r = q_pop(&c->queue)))
        req_free(r);
}

void sl_pg_free(sl_pg *pg)
{
    if (!pg) return;
    join_cancellers(pg);
    for (int i = 0; i < pg->size; i++)
        conn_close(&pg->conns[i]);
    conn_close(&pg->listener);
    sl_pg_req *r;
    while ((r = q_pop(&pg->queue)))
        req_free(r);
    while ((r = q_pop(&pg->shared)))
        req_free(r);
    for (int i = 0; i < pg->nchannels; i++)
        free(pg->channels[i]);
    free(pg->channels);
    free(pg->warmup);
    for (int i = 0; i < pg->nstmts; i++) {
        free(pg->stmt_name[i]);
        free(pg->stmt_sql[i]);
    }
    free(pg->conns);
    free(pg->url);
    free(pg);
}

static sl_pg_req *query(sl_pg *pg, req_queue *q, const char *sql, int nparams,
                        const char *const *params, sl_pg_cb cb, void *data)
{
    sl_pg_req *r = req_new(sql, nparams, params, cb, data);
    r->limited = q == &pg->shared;
    q_push(q, r);
    dispatch(pg);
    return r;
}

sl_pg_req *sl_pg_query(sl_pg *pg, const char *sql, int nparams, const char *const *params,
                       sl_pg_cb cb, void *data)
{
    return query(pg, &pg->queue, sql, nparams, params, cb, data);
}

sl_pg_req *sl_pg_query_shared(sl_pg *pg, const char *sql, int nparams, const char *const *params,
                              sl_pg_cb cb, void *data)
{
    return query(pg, &pg->shared, sql, nparams, params, cb, data);
}

void sl_pg_limit_results(sl_pg *pg, size_t bytes)
{
    pg->result_limit = bytes;
}

/* The index of the pool's statement name, registered (sql) on first use: queued
 * for preparation on the connections open now, behind what they hold. -1 when
 * the table is full. */
static int stmt_index(sl_pg *pg, const char *name, const char *sql)
{
    for (int i = 0; i < pg->nstmts; i++)
        if (strcmp(pg->stmt_name[i], name) == 0) return i;
    if (pg->nstmts == MAX_STMTS) return -1;
    int i = pg->nstmts++;
    pg->stmt_name[i] = sl_xstrdup(name);
    pg->stmt_sql[i] = sl_xstrdup(sql);
    for (int k = 0; k < pg->size; k++) { /* a pinned one prepares it when released */
        sl_pg_conn *c = &pg->conns[k];
        if ((c->state != C_IDLE && c->state != C_BUSY) || c->pinned) continue;
        queue_prepare(c, i, 0);
        conn_next(c);
    }
    return i;
}

sl_pg_req *sl_pg_query_prepared(sl_pg *pg, const char *name, const char *sql, int nparams,
                                const char *const *params, sl_pg_cb cb, void *data)
{
    int i = stmt_index(pg, name, sql);
    sl_pg_req *r = req_new(sql, nparams, params, cb, data);
    r->stmt = i + 1;
    q_push(&pg->queue, r);
    dispatch(pg);
    return r;
}

const char *sl_pg_error_sqlstate(const sl_pg *pg)
{
    return pg->err_sqlstate;
}

int sl_pg_outage_error(const sl_pg *pg)
{
    return pg->down.since && !pg->err_sqlstate[0];
}

sl_pg_fault sl_pg_sqlstate_fault(const char *sqlstate)
{
    static const char *const input[] = {"22", "23", "P0", NULL};
    static const char *const transient[] = {"08", "53", "55", "57", "40", "58", NULL};
    /* the server's or the role's state, in classes that are otherwise the
     * statement's: a read-only database or standby, a privilege missing */
    static const char *const state[] = {"25006", "42501", NULL};
    if (!sqlstate || !*sqlstate) return SL_PG_TRANSIENT;
    for (int i = 0; state[i]; i++)
        if (strcmp(sqlstate, state[i]) == 0) return SL_PG_TRANSIENT;
    for (int i = 0; input[i]; i++)
        if (strncmp(sqlstate, input[i], 2) == 0) return SL_PG_BAD_INPUT;
    for (int i = 0; transient[i]; i++)
        if (strncmp(sqlstate, transient[i], 2) == 0) return SL_PG_TRANSIENT;
    return SL_PG_REFUSED;
}

static sl_pg_req *acquire(sl_pg *pg, req_queue *q, sl_pg_acquire_cb cb, void *data)
{
    sl_pg_req *r = sl_xcalloc(1, sizeof *r);
    r->kind = R_ACQUIRE;
    r->acb = cb;
    r->data = data;
    r->limited = q == &pg->shared;
    q_push(q, r);
    dispatch(pg);
    return r;
}

sl_pg_req *sl_pg_acquire(sl_pg *pg, sl_pg_acquire_cb cb, void *data)
{
    return acquire(pg, &pg->queue, cb, data);
}

sl_pg_req *sl_pg_acquire_shared(sl_pg *pg, sl_pg_acquire_cb cb, void *data)
{
    return acquire(pg, &pg->shared, cb, data);
}

void sl_pg_reserve(sl_pg *pg)
{
    pg->reserved = pg->size > 1;
}

sl_pg_req *sl_pg_conn_query(sl_pg_conn *c, const char *sql, int nparams, const char *const *params,
                            sl_pg_cb cb, void *data)
{
    sl_pg_req *r = req_new(sql, nparams, params, cb, data);
    r->limited = c->limited; /* a handler's transaction */
    if (c->state == C_DOWN) {
        req_finish(c->pg, r, NULL, c->pg->last_error[0] ? c->pg->last_error : "connection lost");
        return NULL;
    }
    q_push(&c->queue, r);
    conn_next(c);
    return r;
}

void sl_pg_cancel(sl_pg_req *r)
{
    if (r) r->cancelled = 1;
}

/* Cancel requests (sl_pg_cancel_in_flight, sl_pg_interrupt), sent by a thread
 * of their own: PQcancel opens a connection to the server and waits until the
 * server has taken the request, which a server out of reach (a network that
 * drops its packets, not a server that is down) holds up for as long as the
 * system's connect timeout, minutes. */
typedef struct {
    int n;
    PGcancel *each[];
} cancels;

static void *send_cancels(void *arg)
{
    cancels *c = arg;
    for (int i = 0; i < c->n; i++) {
        char err[256]; /* the statement's answer says whether the cancel landed */
        PQcancel(c->each[i], err, sizeof err);
        PQfreeCancel(c->each[i]);
    }
    free(c);
    return NULL;
}

/* Sends c's requests from a thread of their own, which frees c; c->n > 0. The
 * pool keeps the thread to join, so that a process ending right after (exec,
 * run interrupted) still has its requests sent (join_cancellers). */
static void send_cancels_apart(sl_pg *pg, cancels *c)
{
    int kept = 0; /* those done already are joined now */
    for (int i = 0; i < pg->ncancellers; i++)
        if (pthread_tryjoin_np(pg->cancellers[i], NULL) != 0)
            pg->cancellers[kept++] = pg->cancellers[i];
    pg->ncancellers = kept;
    /* the loop's thread alone takes the signals */
    sigset_t all, was;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &was);
    pthread_t t;
    int made = pthread_create(&t, NULL, send_cancels, c) == 0;
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    if (!made) {
        send_cancels(c); /* no thread to be had: here, then */
        return;
    }
    pg->cancellers = sl_xrealloc(pg->cancellers, sizeof *pg->cancellers * (size_t)(kept + 1));
    pg->cancellers[pg->ncancellers++] = t;
}

/* As the pool is freed: waits for the threads still sending cancel requests,
 * CANCEL_WAIT seconds at most in all (a server out of reach holds them up for
 * minutes); those still at it then are left to end with the process. */
#define CANCEL_WAIT 2
static void join_cancellers(sl_pg *pg)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += CANCEL_WAIT;
    for (int i = 0; i < pg->ncancellers; i++)
        if (pthread_timedjoin_np(pg->cancellers[i], NULL, &until) != 0)
            pthread_detach(pg->cancellers[i]);
    free(pg->cancellers);
    pg->cancellers = NULL;
    pg->ncancellers = 0;
}

int sl_pg_cancel_in_flight(sl_pg *pg)
{
    pg->held = 1;
    cancels *c = sl_xcalloc(1, sizeof *c + sizeof(PGcancel *) * (size_t)pg->size);
    for (int i = 0; i < pg->size; i++)
        if (pg->conns[i].state == C_BUSY && (c->each[c->n] = PQgetCancel(pg->conns[i].conn)))
            c->n++;
    int n = c->n;
    if (n == 0)
        free(c);
    else
        send_cancels_apart(pg, c);
    return n;
}

/* The server is asked to cancel the statement, and the connection is closed
 * (and opened again when needed), in that order: a cancel request stops
 * whatever its session runs when it lands, so the session must run nothing
 * else of the pool's after it; and the server sees a client gone only when it
 * next writes to it, which a statement waiting on a lock or in pg_sleep() does
 * not. */
void sl_pg_interrupt(sl_pg_req *r)
{
    if (!r) return;
    r->cancelled = 1;
    sl_pg_conn *c = r->on;
    if (!c || c->req != r || c->state != C_BUSY) return; /* queued, or answered */
    cancels *one = sl_xcalloc(1, sizeof *one + sizeof(PGcancel *));
    if ((one->each[0] = PQgetCancel(c->conn))) {
        one->n = 1;
        send_cancels_apart(c->pg, one);
    } else {
        free(one);
    }
    conn_lost(c, "the statement was cancelled: its run or command ended first", 1);
}

int sl_pg_in_flight(const sl_pg *pg)
{
    int n = 0;
    for (int i = 0; i < pg->size; i++)
        n += pg->conns[i].state == C_BUSY;
    return n;
}

double sl_pg_waiting_since(const sl_pg *pg)
{
    double since = 0;
    for (int i = 0; i < pg->size; i++) {
        const sl_pg_req *r = pg->conns[i].req;
        if (pg->conns[i].state == C_BUSY && r && !r->limited && (!since || r->sent < since))
            since = r->sent;
    }
    return since;
}

void sl_pg_release(sl_pg_conn *c, int rollback)
{
    if (c->state == C_DOWN) {
        c->pinned = 0;
        if (waiting(c->pg, (int)(c - c->pg->conns)) && !ev_is_active(&c->retry)) {
            ev_timer_set(&c->retry, 0.05, 0);
            ev_timer_start(c->pg->loop, &c->retry);
        }
        return;
    }
    if (rollback) {
        sl_pg_req *r = req_new("ROLLBACK", 0, NULL, NULL, NULL);
        r->internal = 1;
        q_push(&c->queue, r);
    }
    /* statements first used while the caller held it, now outside its transaction */
    for (int i = 0; i < c->pg->nstmts; i++)
        if (!(c->queued & 1u << i)) queue_prepare(c, i, 0);
    c->unpin_after = 1;
    conn_next(c);
    if (c->state == C_IDLE && !c->queue.head) {
        c->pinned = 0;
        c->unpin_after = 0;
        conn_next(c);
    }
    dispatch(c->pg);
}

void sl_pg_warmup(sl_pg *pg, const char *sql)
{
    free(pg->warmup);
    pg->warmup = sql ? sl_xstrdup(sql) : NULL;
    for (int i = 0; i < pg->size; i++) { /* open already (adopted): after what it runs */
        sl_pg_conn *c = &pg->conns[i];
        if (c->state != C_IDLE && c->state != C_BUSY) continue;
        queue_warmup(c);
        conn_next(c);
    }
}

void sl_pg_listen(sl_pg *pg, const char *channel, sl_pg_notify_cb cb, void *data)
{
    pg->channels = sl_xrealloc(pg->channels, sizeof *pg->channels * (size_t)(pg->nchannels + 1));
    pg->channels[pg->nchannels++] = sl_xstrdup(channel);
    pg->notify_cb = cb;
    pg->notify_data = data;
    if (pg->listener.state == C_DOWN && !ev_is_active(&pg->listener.retry))
        conn_start(&pg->listener);
}
