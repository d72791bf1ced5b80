/*
 * test_pg_fault.c — src/pg.c's reading of SQLSTATEs (sl_pg_sqlstate_fault): the
 * caller's bad input, a fault of the connection or the server that a retry may
 * clear, and a statement refused for good.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pg.h"

static void test_classes(void **state)
{
    (void)state;
    static const struct {
        const char *sqlstate;
        sl_pg_fault fault;
    } cases[] = {
        {"22023", SL_PG_BAD_INPUT}, /* invalid_parameter_value: the functions' checks */
        {"22P02", SL_PG_BAD_INPUT}, /* invalid_text_representation: '12x'::int */
        {"22007", SL_PG_BAD_INPUT}, /* invalid_datetime_format */
        {"23505", SL_PG_BAD_INPUT}, /* unique_violation */
        {"23514", SL_PG_BAD_INPUT}, /* check_violation */
        {"P0001", SL_PG_BAD_INPUT}, /* a plain RAISE EXCEPTION */
        {"P0002", SL_PG_BAD_INPUT}, /* no_data_found: "unknown brand" */
        {"08006", SL_PG_TRANSIENT}, /* connection_failure */
        {"53100", SL_PG_TRANSIENT}, /* disk_full */
        {"55P03", SL_PG_TRANSIENT}, /* lock_not_available */
        {"57P01", SL_PG_TRANSIENT}, /* admin_shutdown */
        {"57014", SL_PG_TRANSIENT}, /* query_canceled */
        {"40001", SL_PG_TRANSIENT}, /* serialization_failure */
        {"40P01", SL_PG_TRANSIENT}, /* deadlock_detected */
        {"58030", SL_PG_TRANSIENT}, /* io_error */
        {"", SL_PG_TRANSIENT},      /* no server answered: the connection */
        {NULL, SL_PG_TRANSIENT},    {"42883", SL_PG_REFUSED}, /* undefined_function */
        {"42501", SL_PG_REFUSED},                             /* insufficient_privilege */
        {"XX000", SL_PG_REFUSED},                             /* internal_error */
        {"25P02", SL_PG_REFUSED},                             /* in_failed_sql_transaction */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (sl_pg_sqlstate_fault(cases[i].sqlstate) != cases[i].fault)
            fail_msg("%s: %d, not %d", cases[i].sqlstate ? cases[i].sqlstate : "NULL",
                     (int)sl_pg_sqlstate_fault(cases[i].sqlstate), (int)cases[i].fault);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
