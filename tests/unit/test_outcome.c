/*
 * test_outcome.c — the outcome of an ended run as the worker sends it to
 * sluice.finish_runs() (sl_queue_outcome_json_of, queue.c): a bare completion
 * carries only its id, status, handler version, times and log offset (every
 * other field reads as its default there), an outcome that is not bare carries
 * every field it has, and the times are written to the microsecond, rounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "buf.h"
#include "queue.h"
#include "runtime.h"

static char *outcome(const char *run_id, const sl_run_outcome *o, const char *next_cron)
{
    sl_buf b = {0};
    sl_queue_outcome_json_of(&b, run_id, o, next_cron);
    return (char *)sl_buf_str(&b);
}

static void test_bare_completion(void **state)
{
    (void)state;
    sl_run_outcome o = {.status = SL_RUN_COMPLETED,
                        .result_json = "null",
                        .logs = "",
                        .handler_version = "abc",
                        .retryable = 1,
                        .started = 1764396000.5,
                        .finished = 1764396000.0000017};
    char *s = outcome("r1", &o, "");
    assert_string_equal(s,
                        "{\"run_id\":\"r1\",\"status\":\"completed\",\"handler_version\":\"abc\","
                        "\"started_at\":1764396000.500000,\"finished_at\":1764396000.000002,"
                        "\"log_from\":0}");
    free(s);
    o.result_json = NULL; /* no result at all: the same */
    o.logs = NULL;
    o.handler_version = NULL;
    s = outcome("r1", &o, NULL);
    assert_string_equal(
        s, "{\"run_id\":\"r1\",\"status\":\"completed\",\"started_at\":1764396000.500000,"
           "\"finished_at\":1764396000.000002,\"log_from\":0}");
    free(s);
}

static void test_every_field(void **state)
{
    (void)state;
    sl_run_outcome o = {.status = SL_RUN_FAILED,
                        .result_json = "{\"records\":3}",
                        .error = "it \"broke\"",
                        .logs = "a\nb",
                        .log_from = 123456789,
                        .datasets_json = "{\"meta_ads\":{\"status\":\"skipped\"}}",
                        .handler_version = "v2",
                        .retryable = 0,
                        .started = 12.25,
                        .finished = 13};
    char *s = outcome("r2", &o, "2026-12-01T00:00:00Z");
    assert_string_equal(s, "{\"run_id\":\"r2\",\"status\":\"failed\",\"result\":{\"records\":3},"
                           "\"error\":\"it \\\"broke\\\"\",\"logs\":\"a\\nb\",\"retryable\":false,"
                           "\"next_cron\":\"2026-12-01T00:00:00Z\","
                           "\"datasets\":{\"meta_ads\":{\"status\":\"skipped\"}},"
                           "\"handler_version\":\"v2\",\"started_at\":12.250000,"
                           "\"finished_at\":13.000000,\"log_from\":123456789}");
    free(s);
}

static void test_times(void **state)
{
    (void)state;
    static const struct {
        double t;
        const char *want;
    } cases[] = {
        {0, "0.000000"},          {0.0000004, "0.000000"}, {0.0000006, "0.000001"},
        {9.9999996, "10.000000"}, {-1.5, "-1.500000"},     {1e9 + 0.000001, "1000000000.000001"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sl_run_outcome o = {.status = SL_RUN_CANCELLED,
                            .retryable = 1,
                            .started = cases[i].t,
                            .finished = cases[i].t};
        char *s = outcome("r", &o, NULL);
        sl_buf want = {0};
        sl_buf_printf(&want,
                      "{\"run_id\":\"r\",\"status\":\"cancelled\",\"started_at\":%s,"
                      "\"finished_at\":%s,\"log_from\":0}",
                      cases[i].want, cases[i].want);
        assert_string_equal(s, sl_buf_str(&want));
        sl_buf_free(&want);
        free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bare_completion),
        cmocka_unit_test(test_every_field),
        cmocka_unit_test(test_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
