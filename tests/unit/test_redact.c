/*
 * test_redact.c — src/log.c's sl_redact(): the credential forms it masks (URL
 * passwords, secret-looking query and logfmt names, Authorization and Cookie
 * headers, Bearer tokens), what it leaves alone, and that an input with many
 * masks never writes past its buffer (the ASan build checks that).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

static void check(const char *in, const char *want)
{
    char *got = sl_redact(in);
    assert_string_equal(got, want);
    free(got);
}

static void test_url_password(void **state)
{
    (void)state;
    check("http://user:hunter2@127.0.0.1:8080/path", "http://user:[redacted]@127.0.0.1:8080/path");
    check("postgres://u:secret@db/x?sslmode=disable",
          "postgres://u:[redacted]@db/x?sslmode=disable");
    check("invalid url 'ftp://user:hunter2@x/'", "invalid url 'ftp://user:[redacted]@x/'");
    check("url=\"https://a:b@h\" next", "url=\"https://a:[redacted]@h\" next");
    check("u:p@h and http://h/a@b", "u:p@h and http://h/a@b"); /* no scheme; '@' in the path */
    check("http://user@host/", "http://user@host/");           /* a user, no password */
    check("http://host:8080/", "http://host:8080/");           /* a port is no password */
}

static void test_names_and_headers(void **state)
{
    (void)state;
    check("http://h/?a=1&access_token=abc&sig=x#f",
          "http://h/?a=1&access_token=[redacted]&sig=[redacted]#f");
    check("api_key=k1 count=3", "api_key=[redacted] count=3");
    check("Authorization: Bearer abc.def\nX: 1", "Authorization: [redacted]\nX: 1");
    check("sent Bearer abc123 to h", "sent Bearer [redacted] to h");
    check("Cookie: a=b; c=d", "Cookie: [redacted]");
    check("nothing to hide=here", "nothing to hide=here");
}

static void test_many_marks_fit(void **state)
{
    (void)state;
    /* each short secret grows into a longer mark: the output outgrows the input */
    size_t n = 2000;
    size_t in_cap = n * 10 + 1, want_cap = n * 20 + 1, il = 0, wl = 0;
    char *in = malloc(in_cap), *want = malloc(want_cap);
    for (size_t i = 0; i < n; i++) {
        il += (size_t)snprintf(in + il, in_cap - il, "%s", i % 2 ? "sig=x&" : "ftp://a:b@");
        wl += (size_t)snprintf(want + wl, want_cap - wl, "%s",
                               i % 2 ? "sig=[redacted]&" : "ftp://a:[redacted]@");
    }
    check(in, want);
    free(in);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_password),
        cmocka_unit_test(test_names_and_headers),
        cmocka_unit_test(test_many_marks_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
