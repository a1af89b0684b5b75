/*
 * test_pg.c - the non-blocking PostgreSQL connection and the migrations,
 * against the private PostgreSQL that scripts/test started.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "record.h"
#include "testutil.h"

/* A fresh database for one test: migrations start from nothing. */
static void
fresh_db(char *conninfo, size_t len)
{
	char name[64];

	tu_pg_fresh_db("db", name, sizeof(name), conninfo, len);
}

/* Run sql on a connection of its own; it must end in want.  The first
 * value of a result with rows, else 0. */
static int
run_sql(const char *conninfo, const char *sql, ExecStatusType want)
{
	PGconn *c = PQconnectdb(conninfo);
	PGresult *res = PQexec(c, sql);
	int v = 0;

	cr_assert_eq(PQresultStatus(res), want, "%s: %s", sql,
	    PQerrorMessage(c));
	if (PQntuples(res) > 0)
		v = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(c);
	return v;
}

static int
scalar_int(const char *conninfo, const char *sql)
{
	return run_sql(conninfo, sql, PGRES_TUPLES_OK);
}

static void
exec_ok(const char *conninfo, const char *sql)
{
	run_sql(conninfo, sql, PGRES_COMMAND_OK);
}

struct done { int n, ok, version; };

static void
on_migrated(int ok, int version, void *arg)
{
	struct done *d = arg;

	d->n++;
	d->ok += ok;
	d->version = version;
}

static void
run_until(struct ev_loop *loop, int *counter, int want)
{
	long long deadline = tu_now_ms() + 30000;

	while (*counter < want && tu_now_ms() < deadline)
		ev_run(loop, EVRUN_ONCE);
	cr_assert_eq(*counter, want, "timed out waiting for callbacks");
}

TestSuite(pg, .init = NULL);

Test(pg, migrate_fresh_database)
{
	struct ev_loop *loop = ev_loop_new(0);
	char ci[512];
	struct done d = { 0 };
	struct sup_pg *pg;

	log_init("test", 0);
	fresh_db(ci, sizeof(ci));
	pg = sup_pg_new(loop, ci, NULL, NULL);
	cr_assert_not_null(pg);
	cr_assert_eq(sup_migrate(pg, on_migrated, &d), 0);
	run_until(loop, &d.n, 1);
	cr_assert_eq(d.ok, 1);
	cr_assert_eq(d.version, sup_schema_version());
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM hive_schema"),
	    sup_schema_version());
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM information_schema.tables "
	    "WHERE table_name IN ('agents', 'tasks', 'task_states', 'workflows', "
	    "'workflow_edges', 'memory_snapshots', 'events', 'hosts')"), 8);

	/* Again: nothing to do, nothing added. */
	cr_assert_eq(sup_migrate(pg, on_migrated, &d), 0);
	run_until(loop, &d.n, 2);
	cr_assert_eq(d.ok, 2);
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM hive_schema"),
	    sup_schema_version());
	sup_pg_free(pg);
	ev_loop_destroy(loop);
}

Test(pg, two_hosts_migrate_at_once)
{
	struct ev_loop *loop = ev_loop_new(0);
	char ci[512];
	struct done d = { 0 };
	struct sup_pg *a, *b;

	log_init("test", 0);
	fresh_db(ci, sizeof(ci));
	a = sup_pg_new(loop, ci, NULL, NULL);
	b = sup_pg_new(loop, ci, NULL, NULL);
	cr_assert_eq(sup_migrate(a, on_migrated, &d), 0);
	cr_assert_eq(sup_migrate(b, on_migrated, &d), 0);
	run_until(loop, &d.n, 2);
	cr_assert_eq(d.ok, 2, "both migrations succeed");
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM hive_schema"),
	    sup_schema_version(), "each version applied once");
	sup_pg_free(a);
	sup_pg_free(b);
	ev_loop_destroy(loop);
}

struct q { int n, failed, ok; char val[64]; };

static void
on_query(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct q *q = arg;

	q->n++;
	if (res == NULL || err != NULL) {
		q->failed++;
		return;
	}
	q->ok++;
	if (PQntuples(res) > 0)
		snprintf(q->val, sizeof(q->val), "%s", PQgetvalue(res, 0, 0));
}

static int ups, downs;

static void
on_state(struct sup_pg *pg, int up, void *arg)
{
	if (up)
		ups++;
	else
		downs++;
}

Test(pg, params_errors_and_reconnect)
{
	struct ev_loop *loop = ev_loop_new(0);
	struct q q = { 0 };
	const char *vals[2] = { "21", NULL };
	struct sup_pg *pg;
	char pid[64];

	log_init("test", 0);
	pg = sup_pg_new(loop, getenv("HIVE_TEST_PG"), on_state, NULL);
	cr_assert_eq(sup_pg_query(pg, "SELECT $1::int * 2", 1, vals, NULL,
	    NULL, on_query, &q), 0);
	run_until(loop, &q.n, 1);
	cr_assert_eq(q.ok, 1);
	cr_assert_str_eq(q.val, "42");

	/* An SQL error is reported, and the connection goes on. */
	cr_assert_eq(sup_pg_query(pg, "SELECT nonsense FROM nowhere", 0, NULL,
	    NULL, NULL, on_query, &q), 0);
	cr_assert_eq(sup_pg_query(pg, "SELECT pg_backend_pid()", 0, NULL, NULL,
	    NULL, on_query, &q), 0);
	run_until(loop, &q.n, 3);
	cr_assert_eq(q.failed, 1);
	cr_assert_eq(q.ok, 2);
	snprintf(pid, sizeof(pid), "%s", q.val);

	/* Kill our backend from outside: the query in flight fails, the
	 * connection comes back by itself, and a later query runs. */
	PGconn *admin = tu_pg_connect();
	const char *p[1] = { pid };
	cr_assert_eq(sup_pg_query(pg, "SELECT pg_sleep(30)", 0, NULL, NULL, NULL,
	    on_query, &q), 0);
	cr_assert_eq(sup_pg_query(pg, "SELECT 'after'", 0, NULL, NULL, NULL,
	    on_query, &q), 0);
	/* Let the sleep reach the server before killing it. */
	ev_run(loop, EVRUN_NOWAIT);
	PGresult *r = PQexecParams(admin, "SELECT pg_terminate_backend($1::int)",
	    1, NULL, p, NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	PQfinish(admin);
	run_until(loop, &q.n, 5);
	cr_assert_eq(q.failed, 2, "the query in flight failed");
	cr_assert_str_eq(q.val, "after", "the queued query ran after reconnect");
	cr_assert_eq(downs, 1);
	cr_assert_eq(ups, 2);
	sup_pg_free(pg);
	ev_loop_destroy(loop);
}

/* A database that a hived of schema 1 filled (a task run twice: attempt
 * 1 lost with its worker, attempt 2 completed) keeps every state of it
 * through migration 2. */
Test(pg, migration_2_carries_the_states_over)
{
	struct ev_loop *loop = ev_loop_new(0);
	char ci[512];
	struct done d = { 0 };
	struct sup_pg *pg;

	log_init("test", 0);
	fresh_db(ci, sizeof(ci));
	pg = sup_pg_new(loop, ci, NULL, NULL);
	cr_assert_eq(sup_migrate_upto(pg, 1, on_migrated, &d), 0);
	run_until(loop, &d.n, 1);
	cr_assert_eq(d.version, 1);
	exec_ok(ci, "INSERT INTO tasks (id, stream, entry, state, attempts, "
	    "agent, message, created_at, finished_at) VALUES ('t1', 'q', '2-0', "
	    "'completed', 2, 'a/2', '\\x01', now() - interval '10 s', "
	    "now() - interval '3 s'), ('t2', 'q', '3-0', 'queued', 1, NULL, "
	    "'\\x02', now(), NULL)");
	exec_ok(ci, "INSERT INTO task_states (task_id, state, attempt, agent, "
	    "at) VALUES ('t1', 'queued', 1, NULL, now() - interval '10 s'), "
	    "('t1', 'running', 1, 'a/1', now() - interval '9 s'), "
	    "('t1', 'queued', 2, NULL, now() - interval '5 s'), "
	    "('t1', 'running', 2, 'a/2', now() - interval '4 s'), "
	    "('t1', 'completed', 2, 'a/2', now() - interval '3 s'), "
	    "('t2', 'queued', 1, NULL, now())");
	cr_assert_eq(sup_migrate(pg, on_migrated, &d), 0);
	run_until(loop, &d.n, 2);
	cr_assert_eq(d.ok, 2);
	cr_assert_eq(d.version, sup_schema_version());
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM (SELECT task_id, "
	    "string_agg(state || attempt || coalesce(agent, '-'), ',' ORDER BY "
	    "attempt, at, hive_state_rank(state)) s FROM task_states GROUP BY "
	    "task_id) x WHERE (task_id = 't1' AND s = 'queued1-,running1a/1,"
	    "queued2-,running2a/2,completed2a/2') OR (task_id = 't2' AND "
	    "s = 'queued1-')"), 2);
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM task_attempts"), 1);
	sup_pg_free(pg);
	ev_loop_destroy(loop);
}

/* Migration 7 on a database at version 6 keeps its tasks and adds the
 * usage and trace columns (NULL for the old rows), which the recorder's
 * upsert then writes; a fresh database gets them too. */
Test(pg, migration_7_adds_usage_columns)
{
	struct ev_loop *loop = ev_loop_new(0);
	char ci[512];
	struct done d = { 0 };
	struct sup_pg *pg;

	log_init("test", 0);
	fresh_db(ci, sizeof(ci));
	pg = sup_pg_new(loop, ci, NULL, NULL);
	cr_assert_eq(sup_migrate_upto(pg, 6, on_migrated, &d), 0);
	run_until(loop, &d.n, 1);
	cr_assert_eq(d.version, 6);
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM "
	    "information_schema.columns WHERE table_name = 'tasks' AND "
	    "column_name = 'trace_id'"), 0);
	exec_ok(ci, "INSERT INTO tasks (id, stream, state, attempts) "
	    "VALUES ('old', 'q', 'queued', 1)");
	cr_assert_eq(sup_migrate(pg, on_migrated, &d), 0);
	run_until(loop, &d.n, 2);
	cr_assert_eq(d.ok, 2);
	cr_assert_eq(d.version, sup_schema_version());
	cr_assert_geq(sup_schema_version(), 7);
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM "
	    "information_schema.columns WHERE table_name = 'tasks' AND "
	    "(column_name, data_type) IN (('trace_id', 'text'), "
	    "('input_tokens', 'bigint'), ('output_tokens', 'bigint'), "
	    "('cost', 'double precision'), ('model', 'text'))"), 5);
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM tasks WHERE id = "
	    "'old' AND trace_id IS NULL AND input_tokens IS NULL AND cost IS "
	    "NULL"), 1);
	/* the recorder's upsert writes them through the stage */
	run_sql(ci, "CREATE TEMP TABLE hive_rec_stage (kind \"char\", id text, "
	    "stream text, entry text, state text, attempts int, agent text, "
	    "workflow text, message bytea, result jsonb, error text, "
	    "created_at timestamptz, queued_at timestamptz, started_at "
	    "timestamptz, finished_at timestamptz, trace_id text, input_tokens "
	    "bigint, output_tokens bigint, cost double precision, model text);"
	    "INSERT INTO hive_rec_stage (kind, id, state, attempts, trace_id, "
	    "input_tokens, output_tokens, cost, model) VALUES ('t', 'old', "
	    "'completed', 1, 'abc', 5, 6, 0.5, 'm'), ('t', 'new', 'completed', "
	    "1, 'def', 7, 8, 1.5, 'n');"
	    "SELECT hive_rec_apply()", PGRES_TUPLES_OK);
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM tasks WHERE "
	    "(id, trace_id, input_tokens, output_tokens, cost, model) IN "
	    "(('old', 'abc', 5, 6, 0.5, 'm'), ('new', 'def', 7, 8, 1.5, 'n'))"),
	    2);
	sup_pg_free(pg);
	/* a fresh database: every migration, 7 with them */
	fresh_db(ci, sizeof(ci));
	pg = sup_pg_new(loop, ci, NULL, NULL);
	cr_assert_eq(sup_migrate(pg, on_migrated, &d), 0);
	run_until(loop, &d.n, 3);
	cr_assert_eq(d.version, sup_schema_version());
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM "
	    "information_schema.columns WHERE table_name = 'tasks' AND "
	    "column_name IN ('trace_id', 'input_tokens', 'output_tokens', "
	    "'cost', 'model')"), 5);
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM pg_indexes WHERE "
	    "indexname = 'tasks_usage'"), 1);
	sup_pg_free(pg);
	ev_loop_destroy(loop);
}

/* Migration 8 on a database at version 7: the task control states are
 * accepted (and nothing else), scheduled ranks with waiting (below
 * queued: the queue entry of the same attempt wins), cancelled and
 * expired are final like completed. */
Test(pg, migration_8_task_control_states)
{
	struct ev_loop *loop = ev_loop_new(0);
	char ci[512];
	struct done d = { 0 };
	struct sup_pg *pg;

	log_init("test", 0);
	fresh_db(ci, sizeof(ci));
	pg = sup_pg_new(loop, ci, NULL, NULL);
	cr_assert_eq(sup_migrate_upto(pg, 7, on_migrated, &d), 0);
	run_until(loop, &d.n, 1);
	cr_assert_eq(d.version, 7);
	exec_ok(ci, "INSERT INTO tasks (id, stream, state, attempts) "
	    "VALUES ('old', 'q', 'running', 1)");
	cr_assert_eq(sup_migrate(pg, on_migrated, &d), 0);
	run_until(loop, &d.n, 2);
	cr_assert_eq(d.ok, 2);
	cr_assert_geq(sup_schema_version(), 8);
	exec_ok(ci, "INSERT INTO tasks (id, stream, state, attempts) VALUES "
	    "('s', 'q', 'scheduled', 1), ('c', 'q', 'cancelled', 1), "
	    "('e', 'q', 'expired', 1)");
	run_sql(ci, "INSERT INTO tasks (id, stream, state) VALUES "
	    "('x', 'q', 'paused')", PGRES_FATAL_ERROR);
	cr_assert_eq(scalar_int(ci, "SELECT count(*) FROM (VALUES "
	    "(hive_wins('scheduled', 1, 'queued', 1)), "
	    "(NOT hive_wins('queued', 1, 'scheduled', 1)), "
	    "(hive_wins('failed', 1, 'scheduled', 2) IS NOT TRUE), "
	    "(hive_wins('running', 1, 'cancelled', 1)), "
	    "(NOT hive_wins('cancelled', 1, 'completed', 1)), "
	    "(NOT hive_wins('expired', 1, 'running', 1))) v(ok) WHERE ok"), 6);
	sup_pg_free(pg);
	ev_loop_destroy(loop);
}
