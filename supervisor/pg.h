/*
 * pg.h - one PostgreSQL connection driven by hived's libev loop.
 *
 * libpq in non-blocking mode: connecting (PQconnectStart/PQconnectPoll),
 * sending, flushing and reading all happen on ev_io readiness, so the loop
 * never waits for the server.  Queries are queued and run one at a time in
 * order.  When the connection is lost every queued query's callback gets
 * res == NULL (its caller decides whether to retry: the recorder does, it
 * acknowledged nothing) and the connection is retried on a timer with
 * backoff (100 ms doubling to 5 s), logged once per outage.
 *
 * Results are lent to the callback: it must not PQclear them.
 */
#ifndef HIVE_PG_H
#define HIVE_PG_H

#include <ev.h>
#include <libpq-fe.h>

struct sup_pg;

/* res: the last result of the query (the first failing one if a statement
 * failed), or NULL when the connection was lost before it completed.
 * errmsg: NULL on success, else the server's or libpq's message. */
typedef void sup_pg_cb(struct sup_pg *pg, PGresult *res, const char *errmsg,
    void *arg);
/* up: 1 when the connection is established, 0 when it is lost. */
typedef void sup_pg_state_cb(struct sup_pg *pg, int up, void *arg);

struct sup_pg *sup_pg_new(struct ev_loop *loop, const char *conninfo,
    sup_pg_state_cb *state_cb, void *arg);
void sup_pg_free(struct sup_pg *pg);
int sup_pg_is_up(const struct sup_pg *pg);
/* Queries queued or running. */
unsigned sup_pg_pending(const struct sup_pg *pg);

/*
 * Queue a query.  With nparams == 0 and no values it goes as a simple query
 * (several statements allowed); otherwise as PQsendQueryParams (values are
 * copied; lengths/formats may be NULL for text).  Returns 0, or -1 when the
 * query cannot even be queued (out of memory): cb is then not called.
 */
int sup_pg_query(struct sup_pg *pg, const char *sql, int nparams,
    const char *const *values, const int *lengths, const int *formats,
    sup_pg_cb *cb, void *arg);

/*
 * Queue a simple query holding one COPY ... FROM STDIN among its
 * statements, and the data to send for it (copied).
 */
int sup_pg_query_copy(struct sup_pg *pg, const char *sql, const char *data,
    size_t len, sup_pg_cb *cb, void *arg);
/* The same with n COPY FROM STDIN among its statements: data[i] (len[i]
 * bytes, text or binary as the statement says) is sent for the i-th. */
int sup_pg_query_copyv(struct sup_pg *pg, const char *sql, int n,
    const char *const *data, const size_t *len, sup_pg_cb *cb, void *arg);

/*
 * Statements that set up a session (temporary tables, prepared
 * statements): run first on every connection from now on, before the
 * queries that wait, and now if connected.  Their failure is logged; the
 * queries after them fail or not on their own.
 */
int sup_pg_prelude(struct sup_pg *pg, const char *sql);

/* The owner of arg is going away: its queued queries still run (a
 * transaction in flight must end) but their callbacks are not called. */
void sup_pg_forget(struct sup_pg *pg, void *arg);

/*
 * Schema migrations (migrate.c): bring the database to the newest schema
 * version under an advisory lock, so several hosts starting at once is
 * safe.  done(ok, arg) is called once: ok 1 on success, 0 on an SQL error
 * (logged).  A lost connection is retried.
 */
typedef void sup_migrate_cb(int ok, int version, void *arg);
int sup_migrate(struct sup_pg *pg, sup_migrate_cb *done, void *arg);
/* The same, up to a version (tests: a database as an older hived left
 * it). */
int sup_migrate_upto(struct sup_pg *pg, int version, sup_migrate_cb *done,
    void *arg);
/* The newest schema version this build knows. */
int sup_schema_version(void);

#endif
