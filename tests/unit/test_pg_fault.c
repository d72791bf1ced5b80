/*
 * test_pg_fault.c — src/pg.c's reading of SQLSTATEs (sl_pg_sqlstate_fault): the
 * caller's bad input, a fault of the connection, the server or the role that a
 * retry may clear, and a statement refused for good; and of a connection that
 * could not be opened (sl_pg_connect_reason): its settings refused, or an outage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
        {NULL, SL_PG_TRANSIENT},
        /* the server's or the role's state, whatever the statement */
        {"25006", SL_PG_TRANSIENT}, /* read_only_sql_transaction: a read-only database */
        {"42501", SL_PG_TRANSIENT}, /* insufficient_privilege: a grant revoked */
        /* the rest of their classes is the statement's */
        {"25P02", SL_PG_REFUSED}, /* in_failed_sql_transaction */
        {"25001", SL_PG_REFUSED}, /* active_sql_transaction */
        {"42883", SL_PG_REFUSED}, /* undefined_function */
        {"42P01", SL_PG_REFUSED}, /* undefined_table */
        {"XX000", SL_PG_REFUSED}, /* internal_error */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (sl_pg_sqlstate_fault(cases[i].sqlstate) != cases[i].fault)
            fail_msg("%s: %d, not %d", cases[i].sqlstate ? cases[i].sqlstate : "NULL",
                     (int)sl_pg_sqlstate_fault(cases[i].sqlstate), (int)cases[i].fault);
}

/* libpq's messages as a connection opened with verbose errors gives them */
static void test_connect_reasons(void **state)
{
    (void)state;
    static const struct {
        const char *msg, *shown;
        int refused;
    } cases[] = {
        /* the server refuses: the code read and taken out, with LOCATION */
        {"connection to server at \"db\" (10.0.0.5), port 5432 failed: FATAL:  28P01: password "
         "authentication failed for user \"app\"\nLOCATION:  auth_failed, auth.c:326\n",
         "connection to server at \"db\" (10.0.0.5), port 5432 failed: FATAL:  password "
         "authentication failed for user \"app\"",
         1},
        {"connection to server on socket \"/run/.s.PGSQL.5432\" failed: FATAL:  3D000: database "
         "\"nodb\" does not exist\nLOCATION:  InitPostgres, postinit.c:948\n",
         "connection to server on socket \"/run/.s.PGSQL.5432\" failed: FATAL:  database \"nodb\" "
         "does not exist",
         1},
        /* a server in another language (libpq's own words stay English): its code decides */
        {"connection to server at \"db\", port 5432 failed: FATAL:  28000: Rolle \"x\" existiert "
         "nicht\nLOCATION:  InitializeSessionUserId, miscinit.c:768\n",
         NULL, 1},
        /* the server's state: an outage */
        {"connection to server at \"db\", port 5432 failed: FATAL:  57P03: the database system is "
         "starting up\nLOCATION:  ProcessStartupPacket, postmaster.c:2356\n",
         "connection to server at \"db\", port 5432 failed: FATAL:  the database system is "
         "starting up",
         0},
        {"connection to server at \"db\", port 5432 failed: FATAL:  53300: sorry, too many clients "
         "already\n",
         NULL, 0},
        {"connection to server at \"127.0.0.1\", port 5432 failed: Connection refused\n\tIs the "
         "server running on that host and accepting TCP/IP connections?\n",
         "connection to server at \"127.0.0.1\", port 5432 failed: Connection refused\n\tIs the "
         "server running on that host and accepting TCP/IP connections?",
         0},
        {"could not translate host name \"db.internal\" to address: Name or service not known\n",
         NULL, 0},
        {"connection to server at \"db\", port 5432 failed: server is not in hot standby mode\n",
         NULL, 0},
        /* libpq cannot meet the settings */
        {"connection to server at \"db\", port 5432 failed: server does not support SSL, but SSL "
         "was required\n",
         NULL, 1},
        {"connection to server at \"db\", port 5432 failed: root certificate file \"/x\" does not "
         "exist\nEither provide the file or change sslmode to disable server certificate "
         "verification.\n",
         NULL, 1},
        {"connection to server at \"db\", port 5432 failed: fe_sendauth: no password supplied\n",
         NULL, 1},
        /* several hosts: the settings' fault only when every one refused */
        {"connection to server at \"a\", port 5432 failed: Connection refused\n\tIs the server "
         "running on that host and accepting TCP/IP connections?\nconnection to server at \"b\", "
         "port 5432 failed: FATAL:  28P01: password authentication failed for user \"app\"\n",
         NULL, 0},
        {"connection to server at \"a\", port 5432 failed: FATAL:  28P01: password authentication "
         "failed for user \"app\"\nLOCATION:  auth_failed, auth.c:326\nconnection to server at "
         "\"b\", port 5432 failed: FATAL:  28P01: password authentication failed for user "
         "\"app\"\nLOCATION:  auth_failed, auth.c:326\n",
         "connection to server at \"a\", port 5432 failed: FATAL:  password authentication failed "
         "for user \"app\"\nconnection to server at \"b\", port 5432 failed: FATAL:  password "
         "authentication failed for user \"app\"",
         1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[1024];
        int refused = sl_pg_connect_reason(cases[i].msg, out, sizeof out);
        if (refused != cases[i].refused)
            fail_msg("case %zu: refused %d, not %d: %s", i, refused, cases[i].refused,
                     cases[i].msg);
        if (cases[i].shown && strcmp(out, cases[i].shown) != 0)
            fail_msg("case %zu: shown\n%s\nnot\n%s", i, out, cases[i].shown);
        if (strstr(out, "LOCATION") || strstr(out, "28P01"))
            fail_msg("case %zu: the code or location is shown: %s", i, out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_connect_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
