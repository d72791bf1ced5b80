/*
 * pg_connect.c — opening Postgres connections, and telling why one could not
 * be opened (see pg.h).
 *
 * Every connection sluice opens, the pool's and the blocking ones of start-up
 * and one-shot commands, is started here with the same settings (sl_pg_open).
 * A blocking connection is driven with poll() within its connect_timeout,
 * moving on to the next address at each address's deadline as PQconnectdb
 * does; the pool drives its own on the loop with the same three helpers
 * (sl_pg_connect_timeout_ms, sl_pg_connect_break_off, sl_pg_connect_moved).
 * sl_pg_check_url judges a URL's options without reaching a server, and
 * sl_pg_connect_reason whether a failure is the settings' (no retry changes
 * it) or the server's state (an outage to wait out).
 */
#include "pg_int.h"
#include "buf.h"
#include "log.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* connect_timeout, in seconds, where the connection's settings give none */
#define SL_PG_CONNECT_TIMEOUT 10

const char *sl_pg_clean_error(const char *msg, char *buf, size_t len)
{
    if (strncmp(msg, "ERROR:  ", 8) == 0) msg += 8;
    snprintf(buf, len, "%s", msg);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

/* Connection failures: whose fault. Every connection sluice opens asks for
 * verbose errors while it opens (opening), so that an error
 * the server sent (a FATAL before the session began) carries its SQLSTATE;
 * connect_reason() takes the code and the LOCATION line back out of the text
 * shown. The server's messages may be in its own language, libpq's are in
 * English here (sluice never sets LC_MESSAGES), so the server's are judged by
 * their SQLSTATE and libpq's own by their text. */

/* libpq's own reasons that no retry can change: the URL's TLS, channel binding
 * or GSS settings that the server, or the files they name, cannot meet, and a
 * password the server wants and the URL does not give. */
static const char *const refused_settings[] = {
    "SSL was required",            /* sslmode require+ and a server without TLS */
    "root certificate file",       /* sslrootcert missing, unreadable, or none */
    "certificate file",            /* sslcert */
    "private key file",            /* sslkey */
    "certificate revocation list", /* sslcrl */
    "certificate verify failed",   /* verify-ca/full against another CA */
    "does not match host name",    /* verify-full */
    "alert unknown ca",            /* the server refuses the client's certificate */
    "alert bad certificate",
    "alert certificate required",
    "GSSAPI encryption required", /* gssencmode=require */
    "channel binding",            /* channel_binding=require */
    "no password supplied",       /* fe_sendauth */
    NULL,
};

/* Whether a server's SQLSTATE for a refused connection is about the settings
 * (the role, its password or pg_hba.conf entry: 28; the database: 3D000; the
 * privilege to connect: 42501) rather than the server's state (starting up or
 * shutting down 57P03, too many connections 53300, …). */
static int refused_sqlstate(const char *st)
{
    return strncmp(st, "28", 2) == 0 || strcmp(st, "3D000") == 0 || strcmp(st, "42501") == 0;
}

/* One attempt's reason (libpq's text for one host, from "connection to server"
 * on, or the whole message): whether it is the settings'. */
static int segment_refused(const char *seg, size_t len, const char *sqlstate)
{
    if (*sqlstate) return refused_sqlstate(sqlstate);
    if (len == 0) return 0; /* seg may be NULL then: memmem's arguments must not be */
    for (int i = 0; refused_settings[i]; i++)
        if (memmem(seg, len, refused_settings[i], strlen(refused_settings[i]))) return 1;
    return 0;
}

int sl_pg_connect_reason(const char *msg, char *out, size_t len)
{
    sl_buf b = {0};
    int segments = 0, refused = 0;
    char state[6] = "";
    size_t seg_start = 0;
    for (const char *p = msg; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (p != msg && strncmp(p, "connection to ", 14) == 0) { /* the next host's attempt */
            refused += segment_refused(b.data + seg_start, b.len - seg_start, state);
            segments++;
            seg_start = b.len;
            state[0] = '\0';
        }
        if (strncmp(p, "LOCATION:  ", 11) != 0) {
            /* "FATAL:  28000: role …" (verbose) is shown "FATAL:  role …" */
            const char *sev = NULL;
            for (const char *q = p; q + 10 <= p + n; q++)
                if (q[0] == ':' && q[1] == ' ' && q[2] == ' ' && q[8] == ':' && q[9] == ' ') {
                    int code = 1;
                    for (int k = 3; k < 8; k++)
                        code &= (q[k] >= '0' && q[k] <= '9') || (q[k] >= 'A' && q[k] <= 'Z');
                    if (code) {
                        sev = q;
                        break;
                    }
                }
            if (sev) {
                memcpy(state, sev + 3, 5);
                state[5] = '\0';
                sl_buf_printf(&b, "%.*s%.*s", (int)(sev + 3 - p), p, (int)(p + n - (sev + 10)),
                              sev + 10);
            } else {
                sl_buf_printf(&b, "%.*s", (int)n, p);
            }
            if (nl) sl_buf_puts(&b, "\n");
        }
        p = nl ? nl + 1 : p + n;
    }
    if (b.len > seg_start) {
        refused += segment_refused(b.data + seg_start, b.len - seg_start, state);
        segments++;
    }
    sl_pg_clean_error(b.len ? sl_buf_str(&b) : "connection failed", out, len);
    sl_buf_free(&b);
    return segments > 0 && refused == segments;
}

/* How every connection is opened (pool, LISTEN, start-up): url's settings, then
 * these (a URL may not override them). The session's time zone is UTC: a time
 * without a zone or offset (`sluice queue --at 2026-12-01`, the REPL's
 * queue{at = …}, a handler's query) is read as UTC, whatever zone the server
 * or the database defaults to, and times come back as text in UTC. */
static const char *const conn_keys[] = {"dbname", "options", "client_encoding", "application_name",
                                        NULL};
#define CONN_VALS(url)                                                                             \
    {                                                                                              \
        (url), "-c search_path=sluice,public -c TimeZone=UTC", "UTF8", "sluice", NULL              \
    }

/* What the server says outside a result while a blocking connection opens or
 * is used (a NOTICE or WARNING): a line of the log. */
static void log_notice(void *arg, const PGresult *res)
{
    (void)arg;
    sl_pg_log_notice(res);
}

void sl_pg_log_notice(const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    int level = !sev                                                     ? SL_WARN
                : strncmp(sev, "DEBUG", 5) == 0                          ? SL_DEBUG
                : strcmp(sev, "NOTICE") == 0 || strcmp(sev, "INFO") == 0 ? SL_INFO
                : strcmp(sev, "LOG") == 0                                ? SL_INFO
                                                                         : SL_WARN;
    sl_log(level, "the database says", "severity", sev ? sev : "?", "message",
           msg ? msg : PQresultErrorMessage(res), NULL);
}

PGconn *sl_pg_open(const char *url, PQnoticeReceiver receiver, void *arg)
{
    const char *const vals[] = CONN_VALS(url);
    PGconn *conn = PQconnectStartParams(conn_keys, vals, 1);
    if (conn) {
        PQsetNoticeReceiver(conn, receiver, arg);
        PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);
    }
    return conn;
}

/* The number of entries in a comma-separated host list (0: none given). */
static int host_count(const char *v)
{
    if (!v || !*v) return 0;
    int n = 1;
    for (; *v; v++)
        n += *v == ',';
    return n;
}

/* PQconninfoParse catches syntax and unknown keywords; the values (sslmode,
 * target_session_attrs, a service name, host/port counts, …) are checked only
 * when a connection starts. So one is started with every option as given but
 * the addresses, each replaced by one that cannot be parsed: libpq checks the
 * options, then gives up on the first address without DNS or a socket. Its
 * error names that address when the options passed; any other error is theirs. */
#define CHECK_ADDR "sluice.url.check"

int sl_pg_check_url(const char *url, char *err, size_t errlen)
{
    /* libpq reads a string as options only when it is a URI or has an '=' (as
     * PQconnectdbParams' expand_dbname does); otherwise it is a database name */
    int is_conninfo = strncmp(url, "postgresql://", 13) == 0 ||
                      strncmp(url, "postgres://", 11) == 0 || strchr(url, '=') != NULL;
    char *perr = NULL;
    PQconninfoOption *opts = NULL;
    if (is_conninfo && !(opts = PQconninfoParse(url, &perr))) {
        snprintf(err, errlen, "%s", perr ? perr : "out of memory");
        PQfreemem(perr);
        goto trim;
    }
    size_t n = 0;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        n++;
    const char **keys = sl_xcalloc(n + 4, sizeof *keys);
    const char **vals = sl_xcalloc(n + 4, sizeof *vals);
    size_t k = 0;
    int hosts = 0, addrs = 0;
    if (!is_conninfo) {
        keys[k] = "dbname";
        vals[k++] = url;
    }
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val) continue;
        if (strcmp(o->keyword, "host") == 0) {
            hosts = host_count(o->val);
        } else if (strcmp(o->keyword, "hostaddr") == 0) {
            addrs = host_count(o->val);
        } else {
            keys[k] = o->keyword;
            vals[k++] = o->val;
        }
    }
    /* as many hosts and addresses as given (libpq checks that they match, and
     * the ports with them); one when none is given (the environment's and the
     * default are replaced too, so none is reached) */
    int nh = hosts ? hosts : addrs ? addrs : 1, na = addrs ? addrs : nh;
    sl_buf hostv = {0}, addrv = {0};
    for (int i = 0; i < nh; i++)
        sl_buf_printf(&hostv, "%s/nonexistent", i ? "," : "");
    for (int i = 0; i < na; i++)
        sl_buf_printf(&addrv, "%s" CHECK_ADDR, i ? "," : "");
    keys[k] = "host";
    vals[k++] = sl_buf_str(&hostv);
    keys[k] = "hostaddr";
    vals[k++] = sl_buf_str(&addrv);
    PGconn *conn = PQconnectStartParams(keys, vals, 0);
    /* refused only for a reason libpq gives before any address: out of memory,
     * or a state this does not expect, is for the connection itself to report */
    const char *msg = conn ? PQerrorMessage(conn) : "";
    int ok = !conn || PQstatus(conn) != CONNECTION_BAD || !*msg || strstr(msg, CHECK_ADDR);
    if (!ok) snprintf(err, errlen, "%s", msg);
    PQfinish(conn);
    sl_buf_free(&hostv);
    sl_buf_free(&addrv);
    free(keys);
    free(vals);
    PQconninfoFree(opts);
    if (ok) return 0;
trim:
    for (size_t len = strlen(err); len > 0 && (err[len - 1] == '\n' || err[len - 1] == ' ');)
        err[--len] = '\0';
    return -1;
}

/* The connection's connect_timeout in milliseconds, SL_PG_CONNECT_TIMEOUT
 * seconds when its settings give none (libpq's default is to wait for ever):
 * PQconnectdb applies it itself, PQconnectPoll leaves it to its caller. */
int sl_pg_connect_timeout_ms(PGconn *conn)
{
    int ms = SL_PG_CONNECT_TIMEOUT * 1000;
    PQconninfoOption *opts = PQconninfo(conn);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "connect_timeout") != 0 || !o->val || !*o->val) continue;
        int s = atoi(o->val);
        ms = s <= 0 ? -1 : (s < 2 ? 2 : s) * 1000; /* 0: none; libpq's minimum is 2 s */
    }
    PQconninfoFree(opts);
    return ms;
}

/* The deadline of an address being connected to passed: a TCP connect still
 * waiting is broken off (shutdown), which libpq reads as that address's
 * failure and goes on to the next address or host, as PQconnectdb does at its
 * timeout; 1 then. 0 when the connection was made already (the server accepted
 * it and did not answer): libpq cannot be moved on from there, so the attempt
 * is given up. */
int sl_pg_connect_break_off(PGconn *conn)
{
    int fd = PQsocket(conn);
    return PQstatus(conn) == CONNECTION_STARTED && fd >= 0 && shutdown(fd, SHUT_RDWR) == 0;
}

/* Whether the address a connection is being opened to is another than where
 * says (where is then set to it): libpq moves to the next when one fails. */
int sl_pg_connect_moved(PGconn *conn, char *where, size_t len)
{
    char now[320];
    const char *host = PQhost(conn), *port = PQport(conn), *addr = PQhostaddr(conn);
    snprintf(now, sizeof now, "%s|%s|%s", host ? host : "", port ? port : "", addr ? addr : "");
    if (strcmp(now, where) == 0) return 0;
    snprintf(where, len, "%s", now);
    return 1;
}

/* Drives a connection being opened, waiting on its socket; stop_at_reading:
 * return once it waits for the server (the start-up message is out). NULL when
 * its connect_timeout expired (or out of memory). */
static PGconn *connect_drive(PGconn *conn, int stop_at_reading)
{
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    int timeout = conn ? sl_pg_connect_timeout_ms(conn) : -1, broke_off = 0;
    char where[320] = "";
    if (conn) sl_pg_connect_moved(conn, where, sizeof where);
    while (conn && PQstatus(conn) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
           st != PGRES_POLLING_FAILED) {
        if (st == PGRES_POLLING_READING && stop_at_reading) break;
        struct pollfd p = {.fd = PQsocket(conn),
                           .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        if (p.fd < 0) break;
        int n = poll(&p, 1, timeout);
        if (n == 0 && !broke_off && sl_pg_connect_break_off(conn)) { /* on to the next address */
            broke_off = 1;
            continue;
        }
        if (n == 0) { /* where PQconnectdb would have given up */
            PQfinish(conn);
            return NULL;
        }
        if (n < 0) continue; /* EINTR: wait again */
        st = PQconnectPoll(conn);
        if (st == PGRES_POLLING_FAILED && broke_off) { /* the last address, given up */
            PQfinish(conn);
            return NULL;
        }
        if (sl_pg_connect_moved(conn, where, sizeof where)) broke_off = 0;
    }
    if (conn && PQstatus(conn) == CONNECTION_OK) PQsetErrorVerbosity(conn, PQERRORS_DEFAULT);
    return conn;
}

PGconn *sl_pg_connect_start(const char *url)
{
    return connect_drive(sl_pg_open(url, log_notice, NULL), 1);
}

PGconn *sl_pg_connect_finish(PGconn *conn)
{
    return connect_drive(conn, 0);
}

PGconn *sl_pg_connect(const char *url)
{
    return sl_pg_connect_finish(sl_pg_connect_start(url));
}
