/*
 * http.c — libcurl's multi interface on the libev loop, and the limiters every
 * request of the process passes through.
 *
 * The driver follows libcurl's "multi_socket" design (Tarantool's src/curl.c is
 * the model): libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION;
 * the ev_io is kept on the socket with curl_multi_assign) and when to call back
 * (CURLMOPT_TIMERFUNCTION, one ev_timer); our watchers call
 * curl_multi_socket_action(), and finished transfers are read with
 * curl_multi_info_read() and found again through CURLINFO_PRIVATE. One multi
 * handle means one connection cache (keep-alive) and one DNS/TLS-session cache
 * (a share handle) for the whole process.
 *
 * Nothing here touches Lua: a request's done callback (lua_http.c) only wakes
 * its task. Everything a request holds (easy handle, header list, buffers, its
 * place in a limiter's queue) is freed by req_free on every path.
 */
#include "http.h"
#include "buf.h"
#include "config.h"
#include "log.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_TIMEOUT 30.0
#define DEFAULT_MAX_BYTES ((size_t)50 << 20)
#define DEFAULT_MAX_REDIRECTS 5
#define MAX_IDLE_CONNECTIONS 256
/* Finished transfers' handles kept for the next requests (curl_easy_reset):
 * creating and freeing a handle per request was a good part of a request's cost. */
#define SPARE_EASY 128

typedef struct sock_watch {
    ev_io io;
    sl_http *h;
    struct sock_watch *prev, *next;
} sock_watch;

typedef struct limiter {
    sl_http *h;
    char *name;                 /* lower case */
    sl_http_limit config, code; /* the operator's and the code's settings */
    sl_http_limit spec;         /* in force: the stricter of the two (sl_http_limit_merge) */
    double tokens;
    ev_tstamp stamp; /* when tokens was last brought up to date */
    int in_flight;
    sl_http_req *wait_head, *wait_tail;
    int waiting;
    ev_timer timer; /* armed while the head of the queue waits for a token */
    struct limiter *next;
} limiter;

struct sl_http {
    struct ev_loop *loop;
    CURLM *multi;
    CURLSH *share;
    ev_timer timer;    /* libcurl's single timeout */
    sock_watch *socks; /* every socket watcher libcurl asked for */
    limiter *limits;
    sl_http_req *reqs; /* every request not yet finished */
    CURL *spare[SPARE_EASY];
    int n_spare;
    int n_active; /* transfers added to the multi handle */
    int closing;  /* sl_http_free is running: start nothing */
};

enum { R_QUEUED, R_ACTIVE, R_DONE };

struct sl_http_req {
    sl_http *h;
    int state;
    CURL *easy;
    struct curl_slist *headers;
    limiter *lim;
    int holds_slot;           /* counted in lim->in_flight */
    sl_http_req *prev, *next; /* h->reqs */
    sl_http_req *next_wait;   /* lim's queue */
    sl_http_done_fn done;
    void *data;
    char *method, *url, *host;
    double timeout;
    size_t max_bytes;
    int too_large;
    int (*sink)(void *, const char *, size_t);
    void *sink_data;
    size_t keep_head, body_size;
    int sink_errno; /* why the sink refused a piece */
    sl_buf body, head;
    char errbuf[CURL_ERROR_SIZE];
    char *error, *final_url;
    ev_tstamp started;
    sl_http_result res;
};

static void limiter_pump(limiter *l);
static int apply_config_limits(sl_http *h, const struct sl_config *cfg, int logged);

/* ------------------------------------------------------------------ helpers */

/* NULL when out of memory. */
static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    if (!d) return NULL;
    for (char *p = d; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

/* A message for Lua and logs: redacted, first letter in lower case. */
static char *clean_message(const char *s)
{
    char *r = sl_redact(s);
    size_t n = strlen(r);
    while (n > 0 && (r[n - 1] == '\n' || r[n - 1] == '.' || r[n - 1] == ' '))
        r[--n] = '\0';
    if (r[0] && isupper((unsigned char)r[0]) && !isupper((unsigned char)r[1]))
        r[0] = (char)tolower((unsigned char)r[0]);
    return r;
}

/* ------------------------------------------------------------------ limiters */

static limiter *limiter_find(sl_http *h, const char *name)
{
    for (limiter *l = h->limits; l; l = l->next)
        if (strcasecmp(l->name, name) == 0) return l;
    return NULL;
}

/* The bucket's size: burst, else rate; never under one request. */
static double limiter_cap(const limiter *l)
{
    double cap = l->spec.burst > 0 ? l->spec.burst : l->spec.rate;
    return cap < 1 ? 1 : cap;
}

static void limiter_refill(limiter *l, ev_tstamp now)
{
    if (l->spec.rate > 0) {
        l->tokens += (now - l->stamp) * l->spec.rate / l->spec.per;
        if (l->tokens > limiter_cap(l)) l->tokens = limiter_cap(l);
    }
    l->stamp = now;
}

static void limiter_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    limiter_pump(w->data);
}

static void activate(sl_http_req *r);

/* Starts queued requests while the limiter allows; arms its timer for the next
 * token when the queue's head waits for one. A request waiting for a slot is
 * started when a request in flight releases it (limiter_release). */
static void limiter_pump(limiter *l)
{
    sl_http *h = l->h;
    if (h->closing) return;
    limiter_refill(l, ev_now(h->loop));
    if (ev_is_active(&l->timer)) ev_timer_stop(h->loop, &l->timer);
    while (l->wait_head) {
        if (l->spec.concurrency > 0 && l->in_flight >= l->spec.concurrency) break;
        if (l->spec.rate > 0 && l->tokens < 1 - 1e-9) {
            double wait = (1 - l->tokens) * l->spec.per / l->spec.rate;
            ev_timer_stop(h->loop, &l->timer); /* a nested pump (via finish) may have started it */
            ev_timer_set(&l->timer, wait > 0.001 ? wait : 0.001, 0);
            ev_timer_start(h->loop, &l->timer);
            break;
        }
        sl_http_req *r = l->wait_head;
        l->wait_head = r->next_wait;
        if (!l->wait_head) l->wait_tail = NULL;
        r->next_wait = NULL;
        l->waiting--;
        if (l->spec.rate > 0) l->tokens -= 1;
        l->in_flight++;
        r->holds_slot = 1;
        activate(r);
    }
}

static void limiter_release(sl_http_req *r)
{
    if (r->lim && r->holds_slot) {
        r->holds_slot = 0;
        r->lim->in_flight--;
        limiter_pump(r->lim);
    }
}

static void limiter_unqueue(sl_http_req *r)
{
    limiter *l = r->lim;
    sl_http_req **pp = &l->wait_head, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->next_wait;
    }
    if (!*pp) return;
    *pp = r->next_wait;
    if (l->wait_tail == r) l->wait_tail = prev;
    r->next_wait = NULL;
    l->waiting--;
    if (!l->wait_head && ev_is_active(&l->timer)) ev_timer_stop(l->h->loop, &l->timer);
}

/* A side's rate in requests per second; 0: none. */
static double per_second(const sl_http_limit *l)
{
    return l->rate > 0 ? l->rate / l->per : 0;
}

/* A side's bucket: its burst, else its rate; 0 without a rate (a burst alone
 * has nothing to apply to). */
static double bucket(const sl_http_limit *l)
{
    return l->rate <= 0 ? 0 : l->burst > 0 ? l->burst : l->rate;
}

/* Which side's value of a part is in force: the lower non-zero one (a, the
 * config's, on a tie). 0 when neither sets it. */
static int stricter(double a, double b)
{
    if (a > 0 && b > 0)
        return a < b ? SL_FROM_CONFIG : b < a ? SL_FROM_CODE : SL_FROM_CONFIG | SL_FROM_CODE;
    return a > 0 ? SL_FROM_CONFIG : b > 0 ? SL_FROM_CODE : 0;
}

void sl_http_limit_merge(const sl_http_limit *config, const sl_http_limit *code,
                         sl_http_limit_info *out)
{
    out->config = *config;
    out->code = *code;
    if (out->config.rate > 0 && out->config.per <= 0) out->config.per = 1;
    if (out->code.rate > 0 && out->code.per <= 0) out->code.per = 1;
    const sl_http_limit *c = &out->config, *k = &out->code;
    memset(&out->in_force, 0, sizeof out->in_force);

    out->rate_from = stricter(per_second(c), per_second(k));
    const sl_http_limit *r = out->rate_from & SL_FROM_CONFIG ? c : k;
    if (out->rate_from) {
        out->in_force.rate = r->rate;
        out->in_force.per = r->per;
    }
    out->burst_from = out->rate_from ? stricter(bucket(c), bucket(k)) : 0;
    if (out->burst_from) out->in_force.burst = bucket(out->burst_from & SL_FROM_CONFIG ? c : k);
    out->concurrency_from = stricter(c->concurrency, k->concurrency);
    if (out->concurrency_from)
        out->in_force.concurrency =
            out->concurrency_from & SL_FROM_CONFIG ? c->concurrency : k->concurrency;
}

/* "30/1s burst=10 concurrency=4" (the config file's syntax), or "none". */
static void limit_text(const sl_http_limit *l, char *out, size_t len)
{
    int n = 0;
    out[0] = '\0';
    if (l->rate > 0) n += snprintf(out + n, len - (size_t)n, "%g/%gs", l->rate, l->per);
    if (l->burst > 0 && (size_t)n < len)
        n += snprintf(out + n, len - (size_t)n, "%sburst=%g", n ? " " : "", l->burst);
    if (l->concurrency > 0 && (size_t)n < len)
        n += snprintf(out + n, len - (size_t)n, "%sconcurrency=%d", n ? " " : "", l->concurrency);
    if (n == 0) snprintf(out, len, "none");
}

/* Logs, at INFO, the parts in which the code's setting is looser than the
 * config's: the config's are kept. */
static void log_kept(const limiter *l, const sl_http_limit_info *m)
{
    int rate = m->rate_from == SL_FROM_CONFIG && per_second(&m->code) > 0;
    int burst = m->burst_from == SL_FROM_CONFIG && bucket(&m->code) > 0;
    int conc = m->concurrency_from == SL_FROM_CONFIG && m->code.concurrency > 0;
    char kept[64], config[128], code[128];
    snprintf(kept, sizeof kept, "%s%s%s%s%s", rate ? "rate" : "", rate && burst ? ", " : "",
             burst ? "burst" : "", (rate || burst) && conc ? ", " : "", conc ? "concurrency" : "");
    if (!kept[0]) return;
    limit_text(&m->config, config, sizeof config);
    limit_text(&m->code, code, sizeof code);
    sl_log(SL_INFO, "http limit: the code asked for a looser limit; the config file's is kept",
           "limit", l->name, "kept", kept, "config", config, "code", code, NULL);
}

static int same_limit(const sl_http_limit *a, const sl_http_limit *b)
{
    return a->rate == b->rate && a->per == b->per && a->burst == b->burst &&
           a->concurrency == b->concurrency;
}

int sl_http_set_limit(sl_http *h, const char *name, sl_http_limit_source source,
                      const sl_http_limit *spec)
{
    limiter *l = limiter_find(h, name);
    int created = 0;
    if (!l) {
        char *lname = lower_dup(name);
        l = lname ? calloc(1, sizeof *l) : NULL;
        if (!l) {
            free(lname);
            return -1;
        }
        l->h = h;
        l->name = lname;
        l->stamp = ev_now(h->loop);
        ev_init(&l->timer, limiter_timer_cb);
        l->timer.data = l;
        l->next = h->limits;
        h->limits = l;
        created = 1;
    }
    int changed_code = source == SL_LIMIT_CODE && !same_limit(&l->code, spec);
    if (source == SL_LIMIT_CONFIG)
        l->config = *spec;
    else
        l->code = *spec;
    sl_http_limit_info m;
    sl_http_limit_merge(&l->config, &l->code, &m);
    if (changed_code) log_kept(l, &m);
    if (created) {
        l->spec = m.in_force;
        l->tokens = limiter_cap(l); /* a new bucket starts full */
    } else {
        int had_rate = l->spec.rate > 0;
        limiter_refill(l, ev_now(h->loop));
        l->spec = m.in_force;
        if (!had_rate || l->tokens > limiter_cap(l))
            l->tokens = limiter_cap(l); /* a rate where there was none starts full */
    }
    limiter_pump(l);
    return 0;
}

int sl_http_get_limit(sl_http *h, const char *name, sl_http_limit_info *info)
{
    limiter *l = limiter_find(h, name);
    if (!l) return 0;
    sl_http_limit_merge(&l->config, &l->code, info);
    info->in_flight = l->in_flight;
    info->waiting = l->waiting;
    return 1;
}

/* "60s", "1m", "500ms", "s", "2.5" → seconds; -1 when unreadable. */
static double parse_period(const char *s)
{
    char *end;
    double n = 1;
    if (isdigit((unsigned char)*s) || *s == '.') {
        errno = 0;
        n = strtod(s, &end);
        if (errno || end == s || n < 0) return -1; /* 0 reads: "at least 1ms" says why not */
        s = end;
    }
    if (*s == '\0' || strcmp(s, "s") == 0 || strcmp(s, "sec") == 0) return n;
    if (strcmp(s, "ms") == 0) return n / 1000;
    if (strcmp(s, "m") == 0 || strcmp(s, "min") == 0) return n * 60;
    if (strcmp(s, "h") == 0) return n * 3600;
    return -1;
}

int sl_http_limit_parse(const char *spec, char *name, size_t namelen, sl_http_limit *out, char *err,
                        size_t errlen)
{
    char *copy = strdup(spec), *save = NULL;
    int rc = -1, have_name = 0;
    memset(out, 0, sizeof *out);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        char *end;
        if (!have_name) {
            if (strlen(tok) >= namelen || strchr(tok, '=') || strchr(tok, '/')) {
                snprintf(err, errlen, "'%s' is not a host name or limit key", tok);
                goto out;
            }
            snprintf(name, namelen, "%s", tok);
            have_name = 1;
            continue;
        }
        if (strncmp(tok, "rate=", 5) == 0) tok += 5;
        if (strncmp(tok, "concurrency=", 12) == 0) {
            long c = strtol(tok + 12, &end, 10);
            if (*end || end == tok + 12 || c < 1 || c > 100000) {
                snprintf(err, errlen, "concurrency must be a whole number from 1 to 100000");
                goto out;
            }
            out->concurrency = (int)c;
        } else if (strncmp(tok, "burst=", 6) == 0) {
            /* strtod reads "nan" and "inf" too: an infinite burst is no rate limit */
            double b = strtod(tok + 6, &end);
            if (*end || end == tok + 6 || !(b >= 1 && isfinite(b))) {
                snprintf(err, errlen, "burst must be a finite number ≥ 1");
                goto out;
            }
            out->burst = b;
        } else if (isdigit((unsigned char)tok[0]) && strchr(tok, '/')) {
            double r = strtod(tok, &end);
            if (*end != '/' || !(r > 0 && isfinite(r))) {
                snprintf(err, errlen, "'%s': the rate must read like 100/60s", tok);
                goto out;
            }
            double per = parse_period(end + 1);
            if (per < 0) {
                snprintf(err, errlen, "'%s': the period must read like 60s, 1m, 500ms or 1h", tok);
                goto out;
            }
            if (per < 0.001) { /* as sluice.http.limit's per */
                snprintf(err, errlen, "'%s': the period must be at least 1ms", tok);
                goto out;
            }
            out->rate = r;
            out->per = per;
        } else {
            snprintf(err, errlen,
                     "unexpected '%s' (expected RATE/PERIOD, burst=N or concurrency=N)", tok);
            goto out;
        }
    }
    if (!have_name) {
        snprintf(err, errlen, "expected NAME RATE/PERIOD [burst=N] [concurrency=N]");
    } else if (out->rate <= 0 && out->concurrency <= 0) {
        snprintf(err, errlen, "give a rate (e.g. 100/60s), a concurrency=N, or both");
    } else {
        rc = 0;
    }
out:
    free(copy);
    return rc;
}

/* ------------------------------------------------------------------ requests */

static void req_unlink(sl_http_req *r)
{
    sl_http *h = r->h;
    if (r->prev)
        r->prev->next = r->next;
    else if (h->reqs == r)
        h->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Detaches the request from libcurl and frees what the transfer used; the
 * result fields stay. */
static void req_release_transfer(sl_http_req *r)
{
    if (r->easy) {
        sl_http *h = r->h;
        if (r->state == R_ACTIVE) {
            curl_multi_remove_handle(h->multi, r->easy);
            h->n_active--;
        }
        if (!h->closing && h->n_spare < SPARE_EASY) {
            curl_easy_reset(r->easy); /* keeps the share; the connection is the multi's */
            h->spare[h->n_spare++] = r->easy;
        } else {
            curl_easy_cleanup(r->easy);
        }
        r->easy = NULL;
    }
    curl_slist_free_all(r->headers);
    r->headers = NULL;
}

void sl_http_req_free(sl_http_req *r)
{
    if (!r) return;
    req_release_transfer(r);
    sl_buf_free(&r->body);
    sl_buf_free(&r->head);
    free(r->method);
    free(r->url);
    free(r->host);
    free(r->error);
    free(r->final_url);
    free(r);
}

void sl_http_cancel(sl_http_req *r)
{
    if (r->state == R_QUEUED && r->lim) limiter_unqueue(r);
    req_release_transfer(r); /* an unfinished transfer's connection is closed */
    req_unlink(r);
    r->state = R_DONE;
    limiter_release(r);
    sl_http_req_free(r);
}

const sl_http_result *sl_http_result_of(const sl_http_req *r)
{
    return &r->res;
}

void *sl_http_sink_data(const sl_http_req *r)
{
    return r->sink ? r->sink_data : NULL;
}

/* CURLOPT_WRITEFUNCTION: appends body bytes (or hands them to the sink, keeping
 * the first keep_head), refusing more than max_bytes. */
static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sl_http_req *r = userdata;
    size_t n = size * nmemb;
    if (r->body_size + n > r->max_bytes) {
        r->too_large = 1;
        return 0; /* anything but n aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (n == 0) return 0;
    if (r->sink) {
        if (r->body.len < r->keep_head) {
            size_t take = r->keep_head - r->body.len;
            sl_buf_add(&r->body, ptr, take < n ? take : n);
        }
        r->sink_errno = r->sink(r->sink_data, ptr, n);
        if (r->sink_errno) return 0;
    } else {
        sl_buf_add(&r->body, ptr, n);
    }
    r->body_size += n;
    return n;
}

/* CURLOPT_HEADERFUNCTION: keeps the header lines of the last response only (a
 * redirect or a 100 Continue starts a new one with its status line). */
static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    sl_http_req *r = userdata;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0)
        sl_buf_reset(&r->head);
    else if (n > 2 && r->head.len < (1 << 20))
        sl_buf_add(&r->head, buf, n);
    return n;
}

/* Why a transfer failed, as a short lower-case message. */
static char *describe(sl_http_req *r, CURLcode code)
{
    char msg[CURL_ERROR_SIZE + 128];
    long oserr = 0;
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT: {
        char secs[48]; /* no exponent: "timed out after 1000000s" */
        sl_config_fmt_number(r->timeout, secs, sizeof secs);
        snprintf(msg, sizeof msg, "timed out after %ss", secs);
        break;
    }
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &oserr);
        if (oserr == ECONNREFUSED) {
            snprintf(msg, sizeof msg, "connection refused");
        } else if (oserr == 0) {
            snprintf(msg, sizeof msg, "cannot connect to %s", r->host);
        } else {
            snprintf(msg, sizeof msg, "cannot connect to %s: %s", r->host, strerror((int)oserr));
            char *colon = strrchr(msg, ':');
            if (colon && colon[1] == ' ') colon[2] = (char)tolower((unsigned char)colon[2]);
        }
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(msg, sizeof msg, "cannot resolve host %s", r->host);
        break;
    case CURLE_COULDNT_RESOLVE_PROXY:
        snprintf(msg, sizeof msg, "cannot resolve the proxy");
        break;
    case CURLE_TOO_MANY_REDIRECTS:
        snprintf(msg, sizeof msg, "too many redirects");
        break;
    case CURLE_FILESIZE_EXCEEDED:
        snprintf(msg, sizeof msg, "response larger than %zu bytes", r->max_bytes);
        break;
    case CURLE_WRITE_ERROR:
        if (r->too_large)
            snprintf(msg, sizeof msg, "response larger than %zu bytes", r->max_bytes);
        else if (r->sink_errno)
            snprintf(msg, sizeof msg, "cannot store the response: %s", strerror(r->sink_errno));
        else
            snprintf(msg, sizeof msg, "cannot store the response");
        break;
    case CURLE_GOT_NOTHING:
        snprintf(msg, sizeof msg, "empty reply from server");
        break;
    case CURLE_PARTIAL_FILE:
        snprintf(msg, sizeof msg, "connection closed before the whole response arrived");
        break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        snprintf(msg, sizeof msg, "connection error: %s",
                 r->errbuf[0] ? r->errbuf : curl_easy_strerror(code));
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
        snprintf(msg, sizeof msg, "unsupported protocol (only http and https are allowed)");
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        snprintf(msg, sizeof msg, "tls error: %s",
                 r->errbuf[0] ? r->errbuf : curl_easy_strerror(code));
        break;
    default:
        snprintf(msg, sizeof msg, "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(code));
        break;
    }
    return clean_message(msg);
}

/* A transfer ended (curl_multi_info_read said so): record the outcome, give the
 * connection back, let the limiter start the next request, call done. */
static void finish(sl_http_req *r, CURLcode code)
{
    long status = 0;
    char *eff = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &eff);
    r->final_url = strdup(eff ? eff : r->url); /* NULL (out of memory): the url asked for */
    if (code != CURLE_OK) r->error = describe(r, code);
    req_release_transfer(r);
    req_unlink(r);
    r->state = R_DONE;
    r->res.error = r->error;
    r->res.status = status;
    r->res.headers = sl_buf_str(&r->head);
    r->res.headers_len = r->head.len;
    r->res.body = sl_buf_str(&r->body);
    r->res.body_len = r->body.len;
    r->res.body_size = r->body_size;
    r->res.url = r->final_url ? r->final_url : r->url;
    r->res.seconds = ev_time() - r->started;
    if (sl_log_enabled(SL_DEBUG)) {
        char st[16], secs[32];
        snprintf(st, sizeof st, "%ld", status);
        snprintf(secs, sizeof secs, "%.3f", r->res.seconds);
        sl_log(SL_DEBUG, "http request", "method", r->method, "url", r->url, SL_NUM "status",
               r->error ? NULL : st, SL_NUM "seconds", secs, "error", r->error, NULL);
    }
    limiter_release(r);
    r->done(r, r->data);
}

/* Reads every finished transfer libcurl reports. */
static void check_done(sl_http *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        sl_http_req *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r) finish(r, msg->data.result);
    }
}

/* Hands the request to libcurl (its limiter, if any, has let it through). */
static void activate(sl_http_req *r)
{
    sl_http *h = r->h;
    r->started = ev_time();
    CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
    if (mc == CURLM_OK) {
        r->state = R_ACTIVE;
        h->n_active++;
        /* Send it now rather than at the next loop iteration: when a burst of
         * responses ends many runs in one iteration, each run's next request
         * would otherwise wait for all of them to be handled. (Never reached
         * from inside libcurl: requests start from Lua, timers and finish().)
         * Transfers the call ended are collected by the timer, at once. */
        int running = 0; /* a call that fails early does not set it: collect at once */
        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        if (running < h->n_active) {
            ev_timer_stop(h->loop, &h->timer);
            ev_timer_set(&h->timer, 0, 0);
            ev_timer_start(h->loop, &h->timer);
        }
        return;
    }
    /* Never expected (out of memory): end the request through the usual path. */
    snprintf(r->errbuf, sizeof r->errbuf, "cannot start the request: %s", curl_multi_strerror(mc));
    finish(r, CURLE_FAILED_INIT);
}

/* Appends a header line to *list; -1 (the list as it was) when out of memory,
 * where curl_slist_append returns NULL and the list would be lost. */
static int add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l) return -1;
    *list = l;
    return 0;
}

/* Builds the easy handle for o; NULL with err when the URL is unusable. */
static CURL *make_easy(sl_http_req *r, const sl_http_opts *o, char *err, size_t errlen)
{
    sl_http *h = r->h;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, o->url, 0);
    if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (uc != CURLUE_OK || !scheme ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        char *safe = sl_redact(o->url);
        if (uc != CURLUE_OK)
            snprintf(err, errlen, "invalid url '%s': %s", safe, curl_url_strerror(uc));
        else
            snprintf(err, errlen, "invalid url '%s': only http:// and https:// are supported",
                     safe);
        free(safe);
        curl_free(scheme);
        curl_free(host);
        curl_url_cleanup(u);
        return NULL;
    }
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    /* the limiter: by key, else host:port, else host */
    r->host = lower_dup(host);
    if (!r->host) {
        /* out of memory: no limiter; failed below, after the URL's parts are freed */
    } else if (o->limit_key && *o->limit_key) {
        r->lim = limiter_find(h, o->limit_key);
    } else {
        if (port) {
            char hp[512];
            snprintf(hp, sizeof hp, "%s:%s", r->host, port);
            r->lim = limiter_find(h, hp);
        }
        if (!r->lim) r->lim = limiter_find(h, r->host);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    if (!r->host) {
        snprintf(err, errlen, "cannot create a transfer (out of memory)");
        return NULL;
    }

    CURL *e = h->n_spare > 0 ? h->spare[--h->n_spare] : curl_easy_init();
    if (!e) {
        snprintf(err, errlen, "cannot create a transfer (out of memory)");
        return NULL;
    }
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SHARE, h->share);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->timeout * 1000 + 0.5));
    /* the timeout is the whole request's: libcurl's own 300 s cap on connecting
     * would end a longer one's connect early, reported as the whole timeout */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->timeout * 1000 + 0.5));
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, o->follow ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS,
                     (long)(o->max_redirects >= 0 ? o->max_redirects : DEFAULT_MAX_REDIRECTS));
    /* checked against Content-Length before the body comes: a HEAD's is the size
     * of a body it never gets, so only write_cb's count applies to it */
    if (strcmp(r->method, "HEAD") != 0)
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_bytes);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* whatever libcurl can decode */
    curl_easy_setopt(e, CURLOPT_USERAGENT, "sluice/" SLUICE_VERSION);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);

    /* the request's own headers, then "Expect:" (no 100-continue round trip) */
    int oom = 0;
    for (const char *p = o->headers; p && *p && !oom;) {
        size_t n = strcspn(p, "\n");
        if (n > 0) {
            char *line = strndup(p, n);
            oom = !line || add_header(&r->headers, line) < 0;
            free(line);
        }
        p += n + (p[n] == '\n');
    }
    if (oom || add_header(&r->headers, "Expect:") < 0) {
        snprintf(err, errlen, "cannot build the request headers (out of memory)");
        curl_easy_cleanup(e);
        return NULL;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);

    if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (o->body || strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(o->body ? o->body_len : 0));
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body ? o->body : "");
        if (strcmp(r->method, "POST") != 0) {
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
            /* libcurl turns a body's request into a GET after a 301, 302 or 303
             * but keeps sending the custom method: a PUT went again without its
             * body. Another method than POST is sent again as it was. */
            curl_easy_setopt(e, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL);
        }
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    return e;
}

sl_http_req *sl_http_start(sl_http *h, const sl_http_opts *o, sl_http_done_fn done, void *data,
                           char *err, size_t errlen)
{
    sl_http_req *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "cannot create a transfer (out of memory)");
        return NULL;
    }
    r->h = h;
    r->done = done;
    r->data = data;
    r->method = strdup(o->method && *o->method ? o->method : "GET");
    r->url = strdup(o->url);
    if (!r->method || !r->url) {
        snprintf(err, errlen, "cannot create a transfer (out of memory)");
        sl_http_req_free(r);
        return NULL;
    }
    r->timeout = o->timeout > 0 ? o->timeout : DEFAULT_TIMEOUT;
    r->max_bytes = o->max_bytes > 0 ? o->max_bytes : DEFAULT_MAX_BYTES;
    r->sink = o->sink;
    r->sink_data = o->sink_data;
    r->keep_head = o->keep_head;
    r->easy = make_easy(r, o, err, errlen);
    if (!r->easy) {
        sl_http_req_free(r);
        return NULL;
    }
    r->next = h->reqs;
    if (h->reqs) h->reqs->prev = r;
    h->reqs = r;
    r->state = R_QUEUED;
    if (!r->lim) {
        activate(r);
        return r;
    }
    if (r->lim->wait_tail)
        r->lim->wait_tail->next_wait = r;
    else
        r->lim->wait_head = r;
    r->lim->wait_tail = r;
    r->lim->waiting++;
    limiter_pump(r->lim);
    return r;
}

/* ------------------------------------------------------------------ the loop */

/* ev_timer callback: libcurl's timeout expired. */
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sl_http *h = w->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

/* ev_io callback: a socket libcurl watches is ready. */
static void sock_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    sl_http *h = ((sock_watch *)w)->h;
    int fd = w->fd, running;
    int action =
        (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    /* w may be freed inside (CURL_POLL_REMOVE): not used after this call */
    curl_multi_socket_action(h->multi, fd, action, &running);
    check_done(h);
}

/* CURLMOPT_TIMERFUNCTION: (re)arms or stops our one timer. */
static int multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    sl_http *h = userp;
    ev_timer_stop(h->loop, &h->timer);
    if (timeout_ms >= 0) {
        /* 0 means "now": the next loop iteration, never from inside libcurl */
        ev_timer_set(&h->timer, (double)timeout_ms / 1000.0, 0);
        ev_timer_start(h->loop, &h->timer);
    }
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: watch, re-watch or forget a socket; its sock_watch
 * rides on the socket through curl_multi_assign. */
static int multi_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    sl_http *h = userp;
    sock_watch *sw = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sw) {
            ev_io_stop(h->loop, &sw->io);
            if (sw->prev)
                sw->prev->next = sw->next;
            else
                h->socks = sw->next;
            if (sw->next) sw->next->prev = sw->prev;
            free(sw);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    if (!sw) {
        /* aborts when out of memory: libcurl would fail every transfer in flight */
        sw = sl_xcalloc(1, sizeof *sw);
        sw->h = h;
        ev_io_init(&sw->io, sock_cb, s, 0);
        sw->next = h->socks;
        if (h->socks) h->socks->prev = sw;
        h->socks = sw;
        curl_multi_assign(h->multi, s, sw);
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (events == (sw->io.events & (EV_READ | EV_WRITE)) && ev_is_active(&sw->io)) return 0;
    ev_io_stop(h->loop, &sw->io);
    ev_io_set(&sw->io, s, events);
    if (events) ev_io_start(h->loop, &sw->io);
    return 0;
}

/* ------------------------------------------------------------------ config */

static int no_limit(const sl_http_limit *l)
{
    return l->rate == 0 && l->per == 0 && l->burst == 0 && l->concurrency == 0;
}

/* Logs, at INFO, a limiter whose operator's setting a reload changed: the new
 * setting ("none" when its line is gone) and the limit now in force. */
static void log_config_change(sl_http *h, const char *name)
{
    sl_http_limit_info m;
    char config[128], in_force[128];
    if (!sl_http_get_limit(h, name, &m)) return;
    limit_text(&m.config, config, sizeof config);
    limit_text(&m.in_force, in_force, sizeof in_force);
    sl_log(SL_INFO, "http limit changed by the config file", "limit", name, "config", config,
           "in_force", in_force, NULL);
}

/* Sets the operator's setting of a limiter (see sl_http_config_limits). */
static void set_config_limit(sl_http *h, const char *name, const sl_http_limit *l, int logged)
{
    if (sl_http_set_limit(h, name, SL_LIMIT_CONFIG, l) != 0)
        sl_log(SL_ERROR, "cannot set an http limit", "limit", name, "error", "out of memory", NULL);
    else if (logged)
        log_config_change(h, name);
}

/* The operator's settings from cfg's http_limit lines (the later of two lines
 * for one name wins); a limiter that had one and that no line names any more
 * loses it, and keeps the code's. Lines that do not parse are skipped (config.c
 * refused them already). Returns how many limiters changed; logged: each is
 * logged. */
static int apply_config_limits(sl_http *h, const sl_config *cfg, int logged)
{
    typedef struct {
        char name[256];
        sl_http_limit l;
    } line;
    line *lines = sl_xcalloc((size_t)cfg->n_http_limits + 1, sizeof *lines);
    int n = 0, changed = 0;
    for (int i = 0; i < cfg->n_http_limits; i++) {
        char err[256];
        line *at = &lines[n];
        if (sl_http_limit_parse(cfg->http_limits[i], at->name, sizeof at->name, &at->l, err,
                                sizeof err) < 0)
            continue;
        int j = 0;
        while (j < n && strcasecmp(lines[j].name, at->name) != 0)
            j++;
        if (j < n)
            lines[j].l = at->l;
        else
            n++;
    }
    static const sl_http_limit none = {0};
    for (limiter *l = h->limits; l; l = l->next) {
        if (no_limit(&l->config)) continue;
        int j = 0;
        while (j < n && strcasecmp(lines[j].name, l->name) != 0)
            j++;
        if (j < n) continue;
        set_config_limit(h, l->name, &none, logged); /* finds l: the list stays as it is */
        changed++;
    }
    for (int j = 0; j < n; j++) {
        limiter *l = limiter_find(h, lines[j].name);
        if (l && same_limit(&l->config, &lines[j].l)) continue;
        set_config_limit(h, lines[j].name, &lines[j].l, logged);
        changed++;
    }
    free(lines);
    return changed;
}

int sl_http_config_limits(sl_http *h, const sl_config *cfg)
{
    return apply_config_limits(h, cfg, 1);
}

/* ------------------------------------------------------------------ life */

sl_http *sl_http_new(struct ev_loop *loop, const struct sl_config *cfg)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        sl_log(SL_ERROR, "cannot start the HTTP client", "error", curl_easy_strerror(rc), NULL);
        return NULL;
    }
    sl_http *h = sl_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->multi = curl_multi_init();
    h->share = curl_share_init();
    if (!h->multi || !h->share) {
        sl_log(SL_ERROR, "cannot start the HTTP client", "error", "out of memory", NULL);
        if (h->share) curl_share_cleanup(h->share);
        if (h->multi) curl_multi_cleanup(h->multi);
        free(h);
        curl_global_cleanup();
        return NULL;
    }
    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    ev_init(&h->timer, timer_cb);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, multi_socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    /* a fixed keep-alive cache: libcurl's default follows the number of transfers
     * in flight and closes idle connections as a burst of requests winds down */
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)MAX_IDLE_CONNECTIONS);
    if (cfg) apply_config_limits(h, cfg, 0);
    return h;
}

void sl_http_free(sl_http *h)
{
    if (!h) return;
    h->closing = 1;
    while (h->reqs)
        sl_http_cancel(h->reqs);
    while (h->limits) {
        limiter *l = h->limits;
        h->limits = l->next;
        ev_timer_stop(h->loop, &l->timer);
        free(l->name);
        free(l);
    }
    while (h->n_spare > 0)
        curl_easy_cleanup(h->spare[--h->n_spare]);
    curl_multi_cleanup(h->multi); /* closes cached connections */
    curl_share_cleanup(h->share);
    ev_timer_stop(h->loop, &h->timer);
    while (h->socks) { /* watchers libcurl did not remove itself */
        sock_watch *sw = h->socks;
        h->socks = sw->next;
        ev_io_stop(h->loop, &sw->io);
        free(sw);
    }
    free(h);
    curl_global_cleanup();
}
