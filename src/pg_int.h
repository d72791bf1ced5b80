/*
 * pg_int.h — what the pool (pg.c) and the opening of connections
 * (pg_connect.c) share; not for the rest of sluice, which uses pg.h.
 */
#ifndef SL_PG_INT_H
#define SL_PG_INT_H

#include "pg.h"

/* Strips "ERROR:  " and trailing newlines from a libpq message into buf;
 * returns buf. */
const char *sl_pg_clean_error(const char *msg, char *buf, size_t len);

/* Starts a connection to url with the settings every sluice connection has
 * (search_path sluice, public; UTF-8; time zone UTC; application_name sluice):
 * PQconnectStartParams, with receiver taking what the server says outside
 * results, and errors verbose until it is open so that a refusal carries its
 * SQLSTATE (sl_pg_connect_reason). NULL when memory ran out. */
PGconn *sl_pg_open(const char *url, PQnoticeReceiver receiver, void *arg);

/* A NOTICE, WARNING or other message outside a result, as a line of the log. */
void sl_pg_log_notice(const PGresult *res);

/* The connection's connect_timeout in milliseconds (10 s where its settings
 * give none; -1 for none at all). */
int sl_pg_connect_timeout_ms(PGconn *conn);

/* The deadline of the address being connected to passed: breaks off a TCP
 * connect still waiting, so that libpq moves on to the next address; 1 then,
 * 0 when the server accepted the connection already (the attempt is to be
 * given up). */
int sl_pg_connect_break_off(PGconn *conn);

/* Whether the address being connected to is another than where says (where
 * is then set to it). */
int sl_pg_connect_moved(PGconn *conn, char *where, size_t len);

#endif
