/*
 * test_alloc_fail.c — what the C code does when an allocation fails. This test
 * is linked with malloc, calloc, realloc, strdup and strndup wrapped (see
 * tests/CMakeLists.txt), so that the one allocation it names returns NULL:
 *
 *   - sl_http_start, swept over each of its allocations in turn, fails with
 *     "out of memory" in err and frees what it had (the sanitizer build's leak
 *     check sees the rest), or starts the request once none fails;
 *   - sl_http_set_limit returns -1 and leaves no limiter; sl_http_limit_parse
 *     fails with "out of memory";
 *   - the helpers that cannot fail (sl_xmalloc …, a buffer's growth) stop the
 *     process with "sluice: out of memory" and SIGABRT (run in a child);
 *   - sluice.sleep and sluice.wait, called from a Lua chunk, raise "out of
 *     memory" when their op cannot be allocated, and the task goes on. Only
 *     calloc is made to fail there: the Lua state allocates with malloc and
 *     realloc (the runtime's allocator), which are left alone.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "buf.h"
#include "ctx.h"
#include "http.h"
#include "queue.h"
#include "runtime.h"

/* ------------------------------------------------------------------ the failing allocator */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

enum { K_MALLOC = 1, K_CALLOC = 2, K_REALLOC = 4, K_STRDUP = 8, K_ALL = 15 };

static long fail_at = -1; /* the allocation (counted from 0 since arm()) that fails; -1: none */
static long seen;         /* allocations since arm() */
static unsigned counted;  /* the functions (K_*) whose allocations are counted and may fail */

/* Allocation n (from 0) of the functions in kinds fails. */
static void arm_kinds(long n, unsigned kinds)
{
    seen = 0;
    counted = kinds;
    fail_at = n;
}

static void arm(long n)
{
    arm_kinds(n, K_ALL);
}

static void disarm(void)
{
    fail_at = -1;
}

static int failing(unsigned kind)
{
    if (fail_at < 0 || !(counted & kind)) return 0;
    return seen++ == fail_at;
}

void *__wrap_malloc(size_t n)
{
    return failing(K_MALLOC) ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return failing(K_CALLOC) ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return failing(K_REALLOC) ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return failing(K_STRDUP) ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return failing(K_STRDUP) ? NULL : __real_strndup(s, n);
}

/* ------------------------------------------------------------------ http */

static void never_done(sl_http_req *r, void *data)
{
    (void)r;
    (void)data;
    fail_msg("a cancelled request's done callback ran");
}

static void test_http_start(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sl_http *h = sl_http_new(loop, NULL);
    /* one request an hour: the first takes the token, the ones swept wait in
     * the limiter's queue, so no transfer (nor socket watcher) is made for them */
    sl_http_limit slow = {.rate = 1, .per = 3600};
    assert_int_equal(sl_http_set_limit(h, "slow", SL_LIMIT_CODE, &slow), 0);
    sl_http_opts o = {.method = "POST",
                      .url = "http://127.0.0.1:9/x",
                      .headers = "X-One: 1\nX-Two: 2",
                      .body = "{}",
                      .body_len = 2,
                      .limit_key = "slow"};
    char err[256] = "";
    sl_http_req *first = sl_http_start(h, &o, never_done, NULL, err, sizeof err);
    assert_non_null(first);
    int started = 0, failed = 0;
    for (long k = 0; k < 100 && !started; k++) {
        err[0] = '\0';
        arm(k);
        sl_http_req *r = sl_http_start(h, &o, never_done, NULL, err, sizeof err);
        long used = seen;
        disarm();
        if (r) {
            assert_true(used <= k); /* no allocation failed: it may start */
            sl_http_cancel(r);
            started = 1;
        } else {
            if (!strstr(err, "out of memory")) fail_msg("allocation %ld failed: '%s'", k, err);
            failed++;
        }
    }
    assert_true(started);
    /* the request, its method, URL and host, its two header lines */
    if (failed < 6) fail_msg("only %d allocations were made to fail", failed);
    sl_http_cancel(first);
    sl_http_free(h);
    ev_loop_destroy(loop);
}

static void test_http_set_limit(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sl_http *h = sl_http_new(loop, NULL);
    sl_http_limit l = {.rate = 10, .per = 1};
    sl_http_limit_info got;
    for (long k = 0; k < 2; k++) { /* its name, then the limiter */
        arm(k);
        int rc = sl_http_set_limit(h, "Example.COM", SL_LIMIT_CODE, &l);
        disarm();
        assert_int_equal(rc, -1);
        assert_int_equal(sl_http_get_limit(h, "example.com", &got), 0);
    }
    assert_int_equal(sl_http_set_limit(h, "Example.COM", SL_LIMIT_CODE, &l), 0);
    assert_int_equal(sl_http_get_limit(h, "example.com", &got), 1);
    sl_http_free(h);
    ev_loop_destroy(loop);
}

static void test_http_limit_parse(void **state)
{
    (void)state;
    char name[64], err[128] = "";
    sl_http_limit l;
    arm(0);
    int rc = sl_http_limit_parse("api.example.com 10/s", name, sizeof name, &l, err, sizeof err);
    disarm();
    assert_int_equal(rc, -1);
    assert_string_equal(err, "out of memory");
    assert_int_equal(
        sl_http_limit_parse("api.example.com 10/s", name, sizeof name, &l, err, sizeof err), 0);
    assert_string_equal(name, "api.example.com");
}

/* ------------------------------------------------------------------ helpers that abort */

/* Runs fn in a child with its allocation number `which` failing; returns what
 * the child wrote on stderr, and whether it died of SIGABRT. */
static int aborts(void (*fn)(void), long which, char *out, size_t outlen)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        arm(which);
        fn();
        disarm();
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t got;
    while (n + 1 < outlen && (got = read(fds[0], out + n, outlen - 1 - n)) > 0)
        n += (size_t)got;
    out[n] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void x_helpers(void)
{
    free(sl_xmalloc(16));
    free(sl_xcalloc(2, 8));
    free(sl_xrealloc(NULL, 16));
    free(sl_xstrdup("a"));
    free(sl_xstrndup("ab", 1));
}

static void buffer_growth(void)
{
    sl_buf b = {0};
    sl_buf_puts(&b, "a line");
    sl_buf_free(&b);
}

static void test_x_helpers(void **state)
{
    (void)state;
    char out[256];
    for (long k = 0; k < 5; k++) { /* each helper's allocation in turn */
        int aborted = aborts(x_helpers, k, out, sizeof out);
        if (!aborted || !strstr(out, "sluice: out of memory"))
            fail_msg("allocation %ld: aborted %d, stderr '%s'", k, aborted, out);
    }
    assert_false(aborts(x_helpers, 5, out, sizeof out)); /* none fails */
    assert_true(aborts(buffer_growth, 0, out, sizeof out));
    assert_non_null(strstr(out, "sluice: out of memory"));
}

/* ------------------------------------------------------------------ Lua functions */

typedef struct {
    struct ev_loop *loop;
    int ended, failed;
    char message[1024];
} chunk_end;

static void chunk_ended(int failed, const char *message, void *data)
{
    chunk_end *e = data;
    e->ended = 1;
    e->failed = failed;
    snprintf(e->message, sizeof e->message, "%s", message ? message : "");
    ev_break(e->loop, EVBREAK_ALL);
}

/* Runs src as a script with allocation `which` of calloc failing,
 * counted from when the chunk starts; fails the test unless it ends well. */
static void run_chunk(const char *src, long which)
{
    sl_ctx ctx;
    assert_int_equal(sl_queue_open(&ctx, NULL, SL_ECHO_NONE), 0);
    chunk_end e = {.loop = ctx.loop};
    char err[512];
    struct sl_task *chunk;
    if (sl_runtime_exec(ctx.rt, src, strlen(src), "=chunk", NULL, NULL, 0, chunk_ended, &e, &chunk,
                        err, sizeof err) != 0)
        fail_msg("%s", err);
    arm_kinds(which, K_CALLOC);
    ev_run(ctx.loop, 0);
    disarm();
    sl_queue_close(&ctx);
    assert_true(e.ended);
    if (e.failed) fail_msg("%s", e.message);
}

static void test_lua_sleep(void **state)
{
    (void)state;
    run_chunk("local ok, err = pcall(sluice.sleep, 0)\n"
              "assert(not ok and tostring(err):find('sluice.sleep: out of memory', 1, true),\n"
              "       tostring(err))\n"
              "sluice.sleep(0) -- the next one is allocated\n",
              0);
}

static void test_lua_wait(void **state)
{
    (void)state;
    /* allocation 0 is the child task, 1 the parked wait */
    run_chunk("local h = sluice.spawn(function() sluice.sleep(10) end)\n"
              "local ok, err = pcall(sluice.wait, h)\n"
              "assert(not ok and tostring(err):find('sluice.wait: out of memory', 1, true),\n"
              "       tostring(err))\n"
              "h:cancel()\n",
              1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_start),       cmocka_unit_test(test_http_set_limit),
        cmocka_unit_test(test_http_limit_parse), cmocka_unit_test(test_x_helpers),
        cmocka_unit_test(test_lua_sleep),        cmocka_unit_test(test_lua_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
