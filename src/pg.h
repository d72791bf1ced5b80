/*
 * pg.h — nonblocking Postgres on the event loop: a small pool of libpq
 * connections driven by ev_io watchers, plus one LISTEN connection.
 *
 * Nothing here blocks: connections are opened with PQconnectStartParams/Poll,
 * queries sent with PQsendQueryParams and read with PQconsumeInput as the socket
 * becomes readable. Callbacks never touch a Lua stack.
 *
 * Every connection uses search_path sluice, public and UTF-8.
 */
#ifndef SL_PG_H
#define SL_PG_H

#include <libpq-fe.h>
#include <stddef.h>

struct ev_loop;
typedef struct sl_pg sl_pg;
typedef struct sl_pg_conn sl_pg_conn;
typedef struct sl_pg_req sl_pg_req;

/* A query finished. Exactly one of res / err is set. The callback owns res
 * (PQclear it). A result with an error status arrives as err, with the server's
 * message ("ERROR: …" stripped). */
typedef void (*sl_pg_cb)(PGresult *res, const char *err, void *data);

/* A connection was pinned for the caller (transactions), or err. */
typedef void (*sl_pg_acquire_cb)(sl_pg_conn *conn, const char *err, void *data);

/* A NOTIFY arrived on a channel passed to sl_pg_listen; or (channel NULL) the
 * LISTEN connection was (re-)established, its LISTENs answered, and
 * notifications may have been missed before. */
typedef void (*sl_pg_notify_cb)(const char *channel, const char *payload, void *data);

sl_pg *sl_pg_new(struct ev_loop *loop, const char *url, int size);

/* A blocking connection to url opened like the pool's (for start-up and one-shot
 * commands). The caller checks PQstatus and PQfinish()es it. */
PGconn *sl_pg_connect(const char *url);

/* Whether libpq takes url (a URI, a key=value string or a bare database name,
 * as sl_pg_connect reads it) and the options it sets, before any connection is
 * tried: 0, or -1 with libpq's own reason in err ("invalid sslmode value:
 * \"bogus\"", "invalid URI query parameter: \"foo\""). A URL it refuses fails
 * every connection the same way, so it is a configuration error to report, not
 * a database that is down to wait for. Reaches no server (no DNS either). */
int sl_pg_check_url(const char *url, char *err, size_t errlen);

/* Why a connection could not be opened (msg: PQerrorMessage of the failed
 * connection, opened by this module), as shown: libpq's text without the
 * SQLSTATE and LOCATION that it carries while a connection opens. Returns 1
 * when the failure is the connection's settings, which no retry changes: the
 * server refused the role, its password, its pg_hba.conf entry, the database
 * or the privilege to connect (SQLSTATE 28…, 3D000, 42501), or libpq could not
 * meet the URL's TLS, certificate, channel-binding or GSS settings, or had no
 * password to give. 0 for a server that does not answer, or is not ready
 * (starting, stopping, out of connection slots, not the kind of server
 * target_session_attrs asks for): an outage to wait out. With several hosts,
 * 1 only when every host refused for the settings. */
int sl_pg_connect_reason(const char *msg, char *out, size_t outlen);

/* The same connection in two halves, so that the server sets the session up
 * while the caller does other work: sl_pg_connect_start() sends the start-up
 * message (waiting only for the socket to be writable) and returns;
 * sl_pg_connect_finish() waits for the rest. Each returns the connection (check
 * PQstatus; the caller PQfinish()es it), or NULL when the URL's connect_timeout
 * expired (the connection is then closed) or memory ran out. */
PGconn *sl_pg_connect_start(const char *url);
PGconn *sl_pg_connect_finish(PGconn *conn);

/* Hands an open, idle blocking connection (from sl_pg_connect) to the pool, which
 * owns it from now on: the pool starts with one connection ready instead of
 * opening it. A connection that is not usable, or a pool with no free place, is
 * closed. */
void sl_pg_adopt(sl_pg *pg, PGconn *conn);

/* A statement the pool runs on each of its connections (not the LISTEN one) as
 * soon as it opens, before anything queued, and on those open already after
 * what they are running: the daemon has each backend compile and plan the queue
 * functions, which it otherwise does during the first claim that lands there
 * (≈ 3 ms). Its result and errors are dropped. */
void sl_pg_warmup(sl_pg *pg, const char *sql);

/* Closes every connection; pending callbacks are not called. */
void sl_pg_free(sl_pg *pg);

/* As sl_pg_query, for a statement sent over and over: each connection prepares
 * it as `name` (on first use, and as it opens from then on, before anything
 * else), and from then on only binds and executes it (no parse, no analysis of
 * the text). Where it is not prepared (yet, or its preparation failed) it is
 * sent whole. Where the session lost it (DEALLOCATE, DISCARD), the request that
 * finds it gone is sent again once it is prepared again. The same name must
 * always come with the same sql; at most 16. */
sl_pg_req *sl_pg_query_prepared(sl_pg *pg, const char *name, const char *sql, int nparams,
                                const char *const *params, sl_pg_cb cb, void *data);

/* Inside a query's callback that got an error: the server's SQLSTATE when the
 * statement failed there, "" when the connection failed (or was never made). */
const char *sl_pg_error_sqlstate(const sl_pg *pg);

/* Inside a query's callback that got an error: 1 when the statement failed for
 * want of a connection during an outage the pool logs itself — a line as it
 * starts (with the reason), reminders at growing intervals, a line when a
 * connection opens again, with how long it was out — so that the caller need
 * not log each failure (it may at debug level). */
int sl_pg_outage_error(const sl_pg *pg);

/* Whose fault a failed statement is, by its SQLSTATE (NULL or "" when no server
 * answered it). The one reading of SQLSTATEs: a command's exit status (2 for
 * bad input, else 1), the daemon's handling of a refused batch and its sweep
 * after a lost reply follow it. */
typedef enum sl_pg_fault {
    SL_PG_BAD_INPUT, /* the caller's data or request: data exceptions (22), constraints
                      * (23), the SQL functions' own RAISE (P0: no_data_found, …) */
    SL_PG_TRANSIENT, /* the connection, the server, the role or the moment: no answer,
                      * connection (08), resources (53), object state and locks (55),
                      * shutdown or cancel (57), serialization or deadlock (40), system
                      * (58); a read-only database or standby (25006, the only one of
                      * class 25: 25P02 is a statement's) and a privilege missing (42501,
                      * which a row-level security policy refusing one row answers too:
                      * the daemon bounds how long it takes it for the role's state) */
    SL_PG_REFUSED,   /* anything else: the statement itself, the same on every retry */
} sl_pg_fault;

sl_pg_fault sl_pg_sqlstate_fault(const char *sqlstate);

/* Queues a query on any free connection (one that is not inside a transaction:
 * one a statement left open is rolled back first). Params are text (NULL = SQL
 * NULL) and copied; cb may be NULL (the result is dropped). The returned handle
 * is valid until the callback runs or sl_pg_cancel. */
sl_pg_req *sl_pg_query(sl_pg *pg, const char *sql, int nparams, const char *const *params,
                       sl_pg_cb cb, void *data);

/* The callback will not be called; an in-flight query's result is discarded. */
void sl_pg_cancel(sl_pg_req *req);

/* sl_pg_cancel, and a statement already in flight is stopped in the server
 * too (a cancel request), its connection closed and opened again: for a
 * handler's statement whose run or command ended, which may hold a
 * connection, and the locks of its transaction, for as long as it would run.
 * Its transaction, if any, is rolled back. */
void sl_pg_interrupt(sl_pg_req *req);

/* For a process that is leaving: from now on the pool sends nothing more (what
 * is queued, or comes, stays queued, and is dropped by sl_pg_free), and the
 * server is asked to cancel every statement in flight on the pool's
 * connections (PQcancel, from a thread of its own: it blocks while the server
 * is out of reach). Their callbacks run as they are answered: a statement
 * cancelled fails with SQLSTATE 57014, "canceling statement due to user
 * request", having done nothing; one the server finished first has its own
 * answer. Returns how many statements were in flight. */
int sl_pg_cancel_in_flight(sl_pg *pg);

/* How many statements are in flight on the pool's connections (the LISTEN one
 * aside): sent, not answered yet. */
int sl_pg_in_flight(const sl_pg *pg);

/* When the oldest statement of the process's own still in flight was sent
 * (ev_now() then; handlers' statements aside), or 0 when none is. */
double sl_pg_waiting_since(const sl_pg *pg);

/* Pins a connection for a sequence of queries (BEGIN … COMMIT). */
sl_pg_req *sl_pg_acquire(sl_pg *pg, sl_pg_acquire_cb cb, void *data);

/* Keeps the pool's first connection for the process's own statements (claims,
 * lease renewals, outcomes) when the pool has more than one: what handlers'
 * code asks for (sl_pg_query_shared, sl_pg_acquire_shared) goes to the others.
 * So handlers holding every connection they may have (long queries,
 * transactions waiting on a lock) cannot hold up the renewal of their own
 * leases. The process's own statements still take any free connection, and go
 * before handlers' requests that wait for one. */
void sl_pg_reserve(sl_pg *pg);

/* sl_pg_query and sl_pg_acquire for handlers' code: never on the reserved
 * connection. Where nothing is reserved they are the same but for the bound
 * below. */
sl_pg_req *sl_pg_query_shared(sl_pg *pg, const char *sql, int nparams, const char *const *params,
                              sl_pg_cb cb, void *data);
sl_pg_req *sl_pg_acquire_shared(sl_pg *pg, sl_pg_acquire_cb cb, void *data);

/* Bounds what the result of a handler's query (sl_pg_query_shared, and any
 * query on a connection pinned by sl_pg_acquire_shared) may take: its rows are read one at a time
 * and counted (their values' bytes, and 16 for each value), and once they pass
 * `bytes` the connection is closed, which stops the query, and the request
 * fails with SQLSTATE 54000 and a message saying so. Without it libpq holds a
 * whole result in memory before anything sees it, so one query selecting more
 * than the machine has would end the process. 0 (the default): no bound. */
void sl_pg_limit_results(sl_pg *pg, size_t bytes);

/* A query on a pinned connection (queued behind its previous one). */
sl_pg_req *sl_pg_conn_query(sl_pg_conn *conn, const char *sql, int nparams,
                            const char *const *params, sl_pg_cb cb, void *data);

/* Unpins. If rollback, a ROLLBACK is sent first (its result ignored). */
void sl_pg_release(sl_pg_conn *conn, int rollback);

/* Listens on channel (one LISTEN connection per pool, reconnecting as needed). */
void sl_pg_listen(sl_pg *pg, const char *channel, sl_pg_notify_cb cb, void *data);

#endif
