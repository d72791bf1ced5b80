/*
 * http.h — the process's HTTP client: libcurl's multi interface driven by the
 * libev loop, with per-host (or per-key) limits shared by every run.
 *
 * One sl_http per process (ctx->http, created on first use). A request is
 * started with a done callback; the callback runs from a loop callback once the
 * transfer has ended (never from inside sl_http_start), after which the caller
 * reads the result and frees the request:
 *
 *   sl_http_req *r = sl_http_start(h, &opts, on_done, data, err, sizeof err);
 *   ...
 *   on_done(r, data): sl_http_result_of(r) → status, headers, body | error;
 *                     sl_http_req_free(r)
 *
 * sl_http_cancel(r) stops a request that has not finished (waiting for a limit
 * or transferring) at once and frees it; its done callback never runs.
 *
 * A body too large for memory goes to a sink instead (opts.sink, e.g. a file
 * of the asset store): each piece is handed over as it arrives and only its
 * first keep_head bytes are kept, as the result's body; body_size counts all.
 *
 * Limits: a request passes through the limiter named by its limit_key, else the
 * one named "host:port" of its URL, else the one named "host" (if any). A
 * limiter has a token bucket (rate requests per `per` seconds, burst tokens at
 * most) and a cap on requests in flight; a request over either waits, in FIFO
 * order, until a token and a slot are free. A limiter has two settings: the
 * operator's (the config file's `http_limit = NAME RATE/PERIOD [burst=N]
 * [concurrency=N]`) and the code's (sluice.http.limit in Lua). The limit in
 * force is, part by part, the stricter of the two (sl_http_limit_merge), so
 * code can tighten the operator's limit but never loosen it.
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stddef.h>

struct ev_loop;
struct sl_config;
typedef struct sl_http sl_http;
typedef struct sl_http_req sl_http_req;

/* What a request asks for. Strings are copied by sl_http_start. */
typedef struct sl_http_opts {
    const char *method;  /* "GET", "POST", … (upper case) */
    const char *url;     /* http:// or https:// */
    const char *headers; /* "Name: value" lines separated by '\n', or NULL */
    const char *body;    /* request body, or NULL */
    size_t body_len;
    double timeout;        /* seconds for the whole transfer; <= 0: 30 */
    size_t max_bytes;      /* response body cap; 0: 50 MiB */
    int follow;            /* follow redirects */
    int max_redirects;     /* when following; < 0: 5 */
    const char *limit_key; /* limiter name instead of the URL's host, or NULL */
    /* With sink set, body bytes go to sink(sink_data, p, n) as they arrive; it
     * returns 0, or an errno value to stop the transfer ("cannot store the
     * response: <strerror>"). sink_data must outlive the request. */
    int (*sink)(void *sink_data, const char *p, size_t n);
    void *sink_data;
    size_t keep_head; /* with a sink: how many first bytes to keep as the body */
} sl_http_opts;

/* How a request ended. Valid until sl_http_req_free. */
typedef struct sl_http_result {
    const char *error;   /* NULL, or why no response came: short, lower case, redacted */
    long status;         /* the final response's status (after redirects) */
    const char *headers; /* its header lines, "Name: value\r\n" each */
    size_t headers_len;
    const char *body; /* with a sink: its first keep_head bytes at most */
    size_t body_len;
    size_t body_size; /* the whole body's size (with a sink, what it was given) */
    const char *url;  /* the URL that answered (after redirects) */
    double seconds;   /* from the transfer's start to its end */
} sl_http_result;

typedef void (*sl_http_done_fn)(sl_http_req *req, void *data);

/* A limiter's settings. All zero: no limit. */
typedef struct sl_http_limit {
    double rate;     /* requests per `per` seconds; 0: no rate limit */
    double per;      /* seconds (> 0 when rate is set) */
    double burst;    /* bucket size (requests allowed at once); 0: rate */
    int concurrency; /* requests in flight at once; 0: unlimited */
} sl_http_limit;

/* Creates the client on loop with the limits of cfg (may be NULL). NULL, with
 * an error logged, when libcurl cannot start (out of memory, a TLS library that
 * fails to initialise). */
sl_http *sl_http_new(struct ev_loop *loop, const struct sl_config *cfg);

/* Cancels every request still pending (no callbacks) and frees the client. */
void sl_http_free(sl_http *h);

/* Starts a request. NULL with a message in err when the options are unusable
 * (a malformed or non-http(s) URL; the message is redacted). */
sl_http_req *sl_http_start(sl_http *h, const sl_http_opts *o, sl_http_done_fn done, void *data,
                           char *err, size_t errlen);

/* Stops a request whose done callback has not run, and frees it. */
void sl_http_cancel(sl_http_req *req);

const sl_http_result *sl_http_result_of(const sl_http_req *req);

/* The sink_data a request was started with (NULL without a sink). */
void *sl_http_sink_data(const sl_http_req *req);

/* Frees a request after its done callback ran. */
void sl_http_req_free(sl_http_req *req);

/* Whose setting: the operator's (the config file) or the code's (Lua). */
typedef enum { SL_LIMIT_CONFIG, SL_LIMIT_CODE } sl_http_limit_source;

/* Where a part of the limit in force comes from: bits; 0 when no side sets it. */
enum { SL_FROM_CONFIG = 1, SL_FROM_CODE = 2 };

/* A limiter's two settings and the limit in force. */
typedef struct sl_http_limit_info {
    sl_http_limit config, code; /* each side's setting as given; all zero: none */
    sl_http_limit in_force;     /* part by part the stricter; burst always filled with a rate */
    int rate_from, burst_from, concurrency_from; /* SL_FROM_* (both: equal values) */
    int in_flight, waiting;                      /* the limiter's load (sl_http_get_limit) */
} sl_http_limit_info;

/* The limit in force from the two settings, part by part the stricter:
 *   rate: the lower rate / per (the pair is taken whole; equal: the config's);
 *   burst: the smaller bucket, a side's bucket being its burst, else its rate
 *          (a side without a rate has none); with no rate in force, 0;
 *   concurrency: the lower non-zero one.
 * A part only one side sets is that side's. Fills out's in_force and *_from,
 * and copies config and code into it (a rate's per defaulting to 1). */
void sl_http_limit_merge(const sl_http_limit *config, const sl_http_limit *code,
                         sl_http_limit_info *out);

/* Sets one side's setting of the limiter `name` (case-insensitive) and applies
 * the limit in force; all fields zero remove that side's setting (the limiter
 * stays, unlimited if the other side has none: requests may point at it). A
 * config setting replaces the config's, a code setting the code's. Requests
 * waiting on it are re-examined at once. When a code setting that differs from
 * the code's previous one is looser than the config's in some part, logs once
 * at INFO that the config's is kept. 0, or -1 when out of memory (nothing
 * changed). */
int sl_http_set_limit(sl_http *h, const char *name, sl_http_limit_source source,
                      const sl_http_limit *l);

/* Replaces the operator's settings with cfg's http_limit lines, as a reload
 * of the config file does: each line's limiter gets its setting (the later of
 * two lines for one name wins); a limiter whose line is gone loses the
 * operator's setting and keeps the code's (none: unlimited). The limit in force
 * is merged again for each, and requests waiting on it are re-examined. Logs
 * each limiter changed at INFO (its new setting and the limit in force) and
 * returns how many changed. */
int sl_http_config_limits(sl_http *h, const struct sl_config *cfg);

/* The limiter `name`: returns 1 and fills its settings, the limit in force and
 * its current load, or 0 when there is none. */
int sl_http_get_limit(sl_http *h, const char *name, sl_http_limit_info *info);

/* Parses a config-file limit, "NAME RATE/PERIOD [burst=N] [concurrency=N]" (the
 * rate or the concurrency may be left out, not both; PERIOD is a number with an
 * optional unit ms, s, m/min, h, e.g. 100/60s, 10/s, 1000/1h). Returns 0, or -1
 * with a message in err. */
int sl_http_limit_parse(const char *spec, char *name, size_t namelen, sl_http_limit *out, char *err,
                        size_t errlen);

#endif
