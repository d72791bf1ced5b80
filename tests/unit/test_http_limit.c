/*
 * test_http_limit.c — src/http.c's limiters with two settings, the operator's
 * (the config file's http_limit lines) and the code's (sluice.http.limit): the
 * limit in force is, part by part, the stricter of the two; removing the
 * code's leaves the config's; a looser code setting is logged once at INFO.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "config.h"
#include "http.h"
#include "log.h"

static sl_http_limit_info merge(sl_http_limit config, sl_http_limit code)
{
    sl_http_limit_info m;
    memset(&m, 0xff, sizeof m); /* every field must be written */
    sl_http_limit_merge(&config, &code, &m);
    return m;
}

static void test_merge_parts(void **state)
{
    (void)state;
    /* a looser code setting changes nothing: 100/s > 30/s, bucket 50 > 10, 10 > 4 */
    sl_http_limit_info m =
        merge((sl_http_limit){.rate = 30, .per = 1, .burst = 10, .concurrency = 4},
              (sl_http_limit){.rate = 100, .per = 1, .burst = 50, .concurrency = 10});
    assert_true(m.in_force.rate == 30 && m.in_force.per == 1 && m.in_force.burst == 10);
    assert_int_equal(m.in_force.concurrency, 4);
    assert_int_equal(m.rate_from, SL_FROM_CONFIG);
    assert_int_equal(m.burst_from, SL_FROM_CONFIG);
    assert_int_equal(m.concurrency_from, SL_FROM_CONFIG);

    /* a stricter one is in force: rates compared per second, the pair taken whole */
    m = merge((sl_http_limit){.rate = 200, .per = 3600, .concurrency = 10},
              (sl_http_limit){.rate = 100, .per = 3600, .concurrency = 2});
    assert_true(m.in_force.rate == 100 && m.in_force.per == 3600);
    assert_int_equal(m.rate_from, SL_FROM_CODE);
    assert_true(m.in_force.burst == 100); /* the code's bucket: its rate, given no burst */
    assert_int_equal(m.burst_from, SL_FROM_CODE);
    assert_int_equal(m.in_force.concurrency, 2);
    assert_int_equal(m.concurrency_from, SL_FROM_CODE);

    /* parts from different sides: 200/1h is the lower rate, bucket 10 the smaller */
    m = merge((sl_http_limit){.rate = 200, .per = 3600},
              (sl_http_limit){.rate = 10, .per = 1, .concurrency = 3});
    assert_true(m.in_force.rate == 200 && m.in_force.per == 3600 && m.in_force.burst == 10);
    assert_int_equal(m.rate_from, SL_FROM_CONFIG);
    assert_int_equal(m.burst_from, SL_FROM_CODE);
    assert_int_equal(m.in_force.concurrency, 3); /* set by the code only */
    assert_int_equal(m.concurrency_from, SL_FROM_CODE);

    /* equal rates per second in other words: the config's pair, from both */
    m = merge((sl_http_limit){.rate = 600, .per = 60, .burst = 5},
              (sl_http_limit){.rate = 10, .per = 1, .burst = 5});
    assert_true(m.in_force.rate == 600 && m.in_force.per == 60 && m.in_force.burst == 5);
    assert_int_equal(m.rate_from, SL_FROM_CONFIG | SL_FROM_CODE);
    assert_int_equal(m.burst_from, SL_FROM_CONFIG | SL_FROM_CODE);
    assert_int_equal(m.concurrency_from, 0);
    assert_int_equal(m.in_force.concurrency, 0);

    /* a burst alone has no rate to apply to; a per alone defaults nothing */
    m = merge((sl_http_limit){.concurrency = 1}, (sl_http_limit){.burst = 2, .per = 5});
    assert_true(m.in_force.rate == 0 && m.in_force.burst == 0);
    assert_int_equal(m.rate_from, 0);
    assert_int_equal(m.burst_from, 0);
    assert_int_equal(m.in_force.concurrency, 1);

    /* only the code's (no config line): as given, per defaulting to 1 */
    m = merge((sl_http_limit){0}, (sl_http_limit){.rate = 5, .burst = 2});
    assert_true(m.in_force.rate == 5 && m.in_force.per == 1 && m.in_force.burst == 2);
    assert_true(m.code.per == 1);
    assert_int_equal(m.rate_from, SL_FROM_CODE);
}

/* Runs fn with stderr going to a file; returns what was written (to free). */
static char *captured(void (*fn)(void *), void *data)
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    fn(data);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long n = ftell(tmp);
    if (n < 0) n = lseek(fileno(tmp), 0, SEEK_END);
    char *out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    rewind(tmp);
    if (n > 0) assert_int_equal(fread(out, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return out;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

typedef struct {
    sl_http *h;
} fixture;

static void set_loose_three_times(void *data)
{
    fixture *f = data;
    sl_http_limit loose = {.rate = 100, .per = 1, .concurrency = 10};
    for (int i = 0; i < 3; i++) /* e.g. a library loaded again, or a handler setting it per run */
        assert_int_equal(sl_http_set_limit(f->h, "API", SL_LIMIT_CODE, &loose), 0);
}

static void set_strict(void *data)
{
    fixture *f = data;
    sl_http_limit strict = {.rate = 1, .per = 1, .concurrency = 1};
    assert_int_equal(sl_http_set_limit(f->h, "api", SL_LIMIT_CODE, &strict), 0);
}

static void test_config_is_the_ceiling(void **state)
{
    (void)state;
    sl_log_setup(0, SL_INFO);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    sl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char line[] = "api 30/1s burst=10 concurrency=4";
    cfg.http_limits[0] = line;
    cfg.n_http_limits = 1;
    fixture f = {sl_http_new(loop, &cfg)};
    assert_non_null(f.h);
    sl_http_limit_info got;

    /* the code asks for more: the config's stays in force, logged once */
    char *log = captured(set_loose_three_times, &f);
    assert_int_equal(count(log, "the config file's is kept"), 1);
    assert_non_null(strstr(log, "limit=api"));
    assert_non_null(strstr(log, "kept=\"rate, burst, concurrency\""));
    free(log);
    assert_int_equal(sl_http_get_limit(f.h, "api", &got), 1);
    assert_true(got.in_force.rate == 30 && got.in_force.burst == 10);
    assert_int_equal(got.in_force.concurrency, 4);
    assert_true(got.code.rate == 100 && got.config.rate == 30);

    /* the code asks for less: in force, nothing logged */
    log = captured(set_strict, &f);
    assert_int_equal(count(log, "kept"), 0);
    free(log);
    assert_int_equal(sl_http_get_limit(f.h, "api", &got), 1);
    assert_true(got.in_force.rate == 1 && got.in_force.burst == 1);
    assert_int_equal(got.in_force.concurrency, 1);
    assert_int_equal(got.rate_from, SL_FROM_CODE);

    /* removing the code's setting leaves the config's */
    sl_http_limit none = {0};
    assert_int_equal(sl_http_set_limit(f.h, "api", SL_LIMIT_CODE, &none), 0);
    assert_int_equal(sl_http_get_limit(f.h, "api", &got), 1);
    assert_true(got.in_force.rate == 30 && got.in_force.per == 1 && got.in_force.burst == 10);
    assert_int_equal(got.in_force.concurrency, 4);
    assert_int_equal(got.rate_from, SL_FROM_CONFIG);
    assert_int_equal(got.concurrency_from, SL_FROM_CONFIG);

    /* a limiter only the code set goes when the code removes it */
    sl_http_limit two = {.concurrency = 2};
    assert_int_equal(sl_http_set_limit(f.h, "other", SL_LIMIT_CODE, &two), 0);
    assert_int_equal(sl_http_set_limit(f.h, "other", SL_LIMIT_CODE, &none), 0);
    assert_int_equal(sl_http_get_limit(f.h, "other", &got), 1);
    assert_int_equal(got.in_force.concurrency, 0);
    assert_true(got.in_force.rate == 0);

    sl_http_free(f.h);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_parts),
        cmocka_unit_test(test_config_is_the_ceiling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
