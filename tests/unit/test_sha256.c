/*
 * test_sha256.c — src/sha256.c: the FIPS 180-4 test vectors, and that feeding
 * the same bytes in pieces of every size (as a download arrives) gives the
 * digest of feeding them at once, across the 55/56/64-byte padding edges.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sha256.h"

static void digest(const void *p, size_t n, char out[65])
{
    sl_sha256 s;
    sl_sha256_init(&s);
    sl_sha256_update(&s, p, n);
    sl_sha256_hex(&s, out);
}

static void test_vectors(void **state)
{
    (void)state;
    char hex[65];
    digest("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    digest("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    digest(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_million_a_in_pieces(void **state)
{
    (void)state;
    static char a[1000];
    memset(a, 'a', sizeof a);
    sl_sha256 s;
    sl_sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        sl_sha256_update(&s, a, sizeof a);
    char hex[65];
    sl_sha256_hex(&s, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_pieces_match_whole(void **state)
{
    (void)state;
    unsigned char buf[300];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    size_t lens[] = {0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 300};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        char whole[65];
        digest(buf, n, whole);
        for (size_t piece = 1; piece <= 70; piece++) {
            sl_sha256 s;
            sl_sha256_init(&s);
            for (size_t off = 0; off < n; off += piece)
                sl_sha256_update(&s, buf + off, n - off < piece ? n - off : piece);
            char hex[65];
            sl_sha256_hex(&s, hex);
            assert_string_equal(hex, whole);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_million_a_in_pieces),
        cmocka_unit_test(test_pieces_match_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
