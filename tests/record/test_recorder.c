/*
 * test_recorder.c - streams into PostgreSQL: every state of every task in
 * order, memory snapshots, duplicates recorded once, and an outage of
 * PostgreSQL that loses nothing.  Real Redis, real PostgreSQL.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"
#include "log.h"
#include "record.h"
#include "testutil.h"

struct env {
	struct ev_loop *loop;
	char conninfo[512];
	char dbname[64];
	char prefix[64];
	char redis[128];
	struct sup_pg *pg;
	struct sup_recorder *rec;
	redisContext *rc;
	PGconn *check;
};

static void
on_migrated(int ok, int version, void *arg)
{
	*(int *)arg = ok ? 1 : -1;
}

static void
env_init_hold(struct env *e, unsigned hold_ms)
{
	int migrated = 0;

	memset(e, 0, sizeof(*e));
	log_init("test", 0);
	e->loop = ev_loop_new(0);
	tu_pg_fresh_db("rec", e->dbname, sizeof(e->dbname), e->conninfo,
	    sizeof(e->conninfo));
	tu_unique(e->prefix, sizeof(e->prefix), "rec");
	snprintf(e->redis, sizeof(e->redis), "%s:%s",
	    getenv("HIVE_TEST_REDIS_HOST"), getenv("HIVE_TEST_REDIS_PORT"));
	e->pg = sup_pg_new(e->loop, e->conninfo, NULL, NULL);
	cr_assert_eq(sup_migrate(e->pg, on_migrated, &migrated), 0);
	while (migrated == 0)
		ev_run(e->loop, EVRUN_ONCE);
	cr_assert_eq(migrated, 1);
	struct sup_recorder_opts o = { .redis = e->redis, .prefix = e->prefix,
	    .host = "test-host", .snapshots_keep = 3, .batch = 64,
	    .hold_ms = hold_ms };
	e->rec = sup_recorder_new(e->loop, e->pg, &o);
	cr_assert_not_null(e->rec);
	e->rc = tu_redis_connect();
	e->check = PQconnectdb(e->conninfo);
	cr_assert_eq(PQstatus(e->check), CONNECTION_OK);
}

static void
env_init(struct env *e)
{
	env_init_hold(e, 0);
}

static void
env_fini(struct env *e)
{
	sup_recorder_free(e->rec);
	sup_pg_free(e->pg);
	ev_loop_destroy(e->loop);
	PQfinish(e->check);
	redisFree(e->rc);
}

static long
scalar(struct env *e, const char *sql)
{
	PGresult *res = PQexec(e->check, sql);
	long v;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql,
	    PQerrorMessage(e->check));
	v = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static int check_due;

static void
check_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	check_due = 1;
}

/* Run the loop until sql returns want, checking every 50 ms. */
static void
run_until_sql(struct env *e, const char *sql, long want)
{
	long long deadline = tu_now_ms() + 30000;
	ev_timer t;
	long got = -1;

	ev_timer_init(&t, check_cb, 0.05, 0.05);
	ev_timer_start(e->loop, &t);
	while (tu_now_ms() < deadline) {
		ev_run(e->loop, EVRUN_ONCE);
		if (check_due) {
			check_due = 0;
			if ((got = scalar(e, sql)) == want)
				break;
		}
	}
	ev_timer_stop(e->loop, &t);
	cr_assert_eq(got, want, "%s: got %ld, want %ld", sql, got, want);
}

static void
xadd(struct env *e, const char *name, const msgpack_sbuffer *sb)
{
	char key[HIVE_KEY_MAX];

	snprintf(key, sizeof(key), "%s:%s", e->prefix, name);
	tu_xadd(e->rc, key, sb->data, sb->size);
}

static void
submit(struct env *e, const char *id, unsigned attempt)
{
	msgpack_sbuffer sb;
	struct hive_task t = { 0 };
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	t.id = HIVE_STR(id);
	t.attempt = attempt;
	t.payload.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	t.payload.via.u64 = 7;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	xadd(e, "q:echo:1", &sb);
	msgpack_sbuffer_destroy(&sb);
}

static void
complete(struct env *e, const char *id, unsigned attempt, uint64_t memv,
    const char *memval)
{
	msgpack_sbuffer sb;
	msgpack_zone z;
	struct hive_result r = { 0 };
	struct proto_err err;
	uint64_t now = proto_now_ms();

	msgpack_sbuffer_init(&sb);
	msgpack_zone_init(&z, 1024);
	r.id = HIVE_STR(id);
	r.agent = HIVE_STR("echo/1");
	r.host = HIVE_STR("test-host");
	r.status = HIVE_STATUS_OK;
	r.result.type = MSGPACK_OBJECT_STR;
	r.result.via.str.ptr = "done";
	r.result.via.str.size = 4;
	r.attempt = attempt;
	r.started_ms = now;
	r.finished_ms = now;
	if (memv > 0) {
		json_t *j = json_pack("{s:s}", "note", memval);
		cr_assert_eq(proto_json_to_obj(j, &z, &r.memory, &err), 0);
		json_decref(j);
		r.memory_v = memv;
	}
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0, "%s",
	    proto_strerror(&err, (char[128]){0}, 128));
	xadd(e, "results", &sb);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
}

Test(recorder, states_in_order_and_memory)
{
	struct env e;
	char sql[256];

	env_init(&e);
	for (int i = 0; i < 20; i++) {
		snprintf(sql, sizeof(sql), "task-%d", i);
		submit(&e, sql, 1);
	}
	for (int i = 0; i < 20; i++) {
		char v[16];
		snprintf(sql, sizeof(sql), "task-%d", i);
		snprintf(v, sizeof(v), "v%d", i + 1);
		complete(&e, sql, 1, (uint64_t)i + 1, v);
	}
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE state = 'completed'", 20);
	/* queued -> running -> completed, in that order, for every task.
	 * Waited for: on a loaded machine the recorder can read a result
	 * before its queue entry, and then "queued" comes a batch later. */
	run_until_sql(&e, "SELECT count(*) FROM (SELECT task_id, "
	    "string_agg(state, ',' ORDER BY at, hive_state_rank(state)) s FROM "
	    "task_states GROUP BY task_id) x WHERE s = 'queued,running,completed'",
	    20);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM tasks WHERE message IS NOT "
	    "NULL AND result = '\"done\"'::jsonb AND attempts = 1 AND agent = 'echo/1'"),
	    20);
	/* Memory: the last 3 versions kept, the newest is the last result's. */
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM memory_snapshots"), 3);
	cr_assert_eq(scalar(&e, "SELECT max(version) FROM memory_snapshots "
	    "WHERE memory->>'note' = 'v20'"), 20);
	env_fini(&e);
}

Test(recorder, result_before_queue_entry_and_duplicates)
{
	struct env e;

	env_init(&e);
	/* The result is seen first, twice (at least once delivery), then a
	 * late queue entry: completed once, never back to queued. */
	complete(&e, "dup", 1, 0, NULL);
	complete(&e, "dup", 1, 0, NULL);
	run_until_sql(&e, "SELECT count(*) FROM task_states WHERE task_id = 'dup' "
	    "AND state = 'completed'", 1);
	submit(&e, "dup", 1);
	run_until_sql(&e, "SELECT count(*) FROM task_states WHERE task_id = 'dup' "
	    "AND state = 'queued'", 1);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM tasks WHERE id = 'dup' AND "
	    "state = 'completed' AND message IS NOT NULL"), 1);
	/* A requeued attempt 2 of an unfinished task moves it forward. */
	submit(&e, "again", 1);
	submit(&e, "again", 2);
	run_until_sql(&e, "SELECT attempts FROM tasks WHERE id = 'again' AND "
	    "state = 'queued'", 2);
	env_fini(&e);
}

static long
pending(struct env *e, const char *name)
{
	char key[128];
	redisReply *r;
	long n;

	snprintf(key, sizeof(key), "%s:%s", e->prefix, name);
	r = redisCommand(e->rc, "XPENDING %s recorder", key);
	cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY, "XPENDING %s", key);
	n = (long)r->element[0]->integer;
	freeReplyObject(r);
	return n;
}

static void
run_for_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ONE);
}

/* Run the loop for ms milliseconds. */
static void
run_for(struct env *e, long long ms)
{
	ev_timer t;

	ev_timer_init(&t, run_for_cb, ms / 1000., 0.);
	ev_timer_start(e->loop, &t);
	ev_run(e->loop, 0);
	ev_timer_stop(e->loop, &t);
}

/* Run the loop until the recorder group of stream name has want entries
 * pending. */
static void
run_until_pending(struct env *e, const char *name, long want)
{
	long long deadline = tu_now_ms() + 30000;

	while (pending(e, name) != want && tu_now_ms() < deadline)
		run_for(e, 20);
	cr_assert_eq(pending(e, name), want, "pending in %s", name);
}

Test(recorder, postgres_outage_loses_nothing)
{
	struct env e;
	char sql[256];
	PGconn *admin;
	PGresult *res;

	env_init(&e);
	for (int i = 0; i < 10; i++) {
		snprintf(sql, sizeof(sql), "a-%d", i);
		submit(&e, sql, 1);
	}
	run_until_sql(&e, "SELECT count(*) FROM tasks", 10);

	/* PostgreSQL "goes away" for the recorder: its database refuses
	 * connections and its backend is killed. */
	admin = tu_pg_connect();
	snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS false",
	    e.dbname);
	PQclear(PQexec(admin, sql));
	PQfinish(e.check);
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(pid) FROM "
	    "pg_stat_activity WHERE datname = '%s'", e.dbname);
	PQclear(PQexec(admin, sql));
	for (int i = 0; i < 50; i++) {
		snprintf(sql, sizeof(sql), "b-%d", i);
		submit(&e, sql, 1);
		complete(&e, sql, 1, 0, NULL);
	}
	/* Let the recorder try and fail for a while. */
	run_for(&e, 1500);
	struct sup_recorder_stats st;
	sup_recorder_stats(e.rec, &st);
	cr_assert(st.retries >= 1 || !sup_pg_is_up(e.pg), "the recorder noticed");

	snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS true",
	    e.dbname);
	res = PQexec(admin, sql);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	PQfinish(admin);
	e.check = PQconnectdb(e.conninfo);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE state = 'completed'", 50);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM tasks"), 60);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM task_states WHERE "
	    "state = 'completed'"), 50, "none twice");
	/* And Redis holds nothing unacknowledged for the recorder (the XACKs
	 * follow the COMMIT). */
	run_until_pending(&e, "results", 0);
	run_until_pending(&e, "q:echo:1", 0);
	env_fini(&e);
}


/* A queue entry waits a moment for its result, to be written in one row
 * with it; without a result it is written queued all the same, and only
 * then acknowledged. */
Test(recorder, queue_entry_without_result_is_written)
{
	struct env e;
	struct sup_recorder_stats st;

	env_init(&e);
	submit(&e, "alone", 1);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE id = 'alone' AND "
	    "state = 'queued' AND queued_at IS NOT NULL AND message IS NOT NULL", 1);
	/* Acknowledged after the COMMIT: let the XACK go out. */
	run_for(&e, 300);
	cr_assert_eq(pending(&e, "q:echo:1"), 0);
	sup_recorder_stats(e.rec, &st);
	cr_assert_eq(st.held, 0);

	/* Entry and result close together: one row, no update. */
	submit(&e, "quick", 1);
	complete(&e, "quick", 1, 0, NULL);
	run_until_sql(&e, "SELECT count(*) FROM task_states WHERE task_id = "
	    "'quick'", 3);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM tasks WHERE id = 'quick' "
	    "AND state = 'completed' AND message IS NOT NULL AND queued_at <= "
	    "started_at AND started_at <= finished_at"), 1);
	env_fini(&e);
}

/* Every attempt keeps its states: an attempt superseded by a requeued one
 * (in a later batch, or in the same batch) moves to task_attempts. */
Test(recorder, superseded_attempts_keep_their_states)
{
	struct env e;

	env_init(&e);
	submit(&e, "later", 1);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE id = 'later'", 1);
	submit(&e, "later", 2);
	complete(&e, "later", 2, 0, NULL);
	/* Both attempts of "same" arrive in one read. */
	submit(&e, "same", 1);
	submit(&e, "same", 2);
	complete(&e, "same", 2, 0, NULL);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE state = 'completed' "
	    "AND attempts = 2", 2);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM (SELECT task_id, "
	    "string_agg(state || attempt, ',' ORDER BY attempt, at, "
	    "hive_state_rank(state)) s FROM task_states GROUP BY task_id) x "
	    "WHERE s = 'queued1,queued2,running2,completed2'"), 2);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM task_attempts WHERE "
	    "attempt = 1 AND state = 'queued'"), 2);
	env_fini(&e);
}

/* Bytes that COPY's text format would escape, and SQL quotes (the
 * protocol refuses NUL and invalid UTF-8 before they get here), in a
 * result's error: recorded as they are. */
Test(recorder, odd_bytes_in_text_fields)
{
	/* Its multi-byte characters across the 8-byte steps in which the
	 * recorder looks for bytes to replace. */
	static const char odd[] = "a\tb\nc\\d\r\\N\xc3\xa9\xf0\x9f\x98\x80" "e'f\""
	    "0123456\xc3\xa9" "0123456\xf0\x9f\x98\x80" "x";
	struct env e;
	msgpack_sbuffer sb;
	struct hive_result r = { 0 };
	struct proto_err err;
	uint64_t now = proto_now_ms();

	env_init(&e);
	submit(&e, "odd", 1);
	msgpack_sbuffer_init(&sb);
	r.id = HIVE_STR("odd");
	r.agent = HIVE_STR("echo/1");
	r.host = HIVE_STR("test-host");
	r.status = HIVE_STATUS_ERROR;
	r.error.ptr = odd;
	r.error.len = sizeof(odd) - 1;
	r.attempt = 1;
	r.started_ms = now;
	r.finished_ms = now;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0);
	xadd(&e, "results", &sb);
	msgpack_sbuffer_destroy(&sb);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE id = 'odd' AND "
	    "state = 'failed'", 1);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM tasks WHERE id = 'odd' AND "
	    "error = E'a\\tb\\nc\\\\d\\r\\\\N\\u00e9\\U0001F600e''f\""
	    "0123456\\u00e90123456\\U0001F600x'"), 1);
	env_fini(&e);
}

static void
redeliver(struct env *e, const char *name)
{
	char key[128];
	redisReply *r;

	snprintf(key, sizeof(key), "%s:%s", e->prefix, name);
	r = redisCommand(e->rc, "XGROUP SETID %s recorder 0", key);
	cr_assert(r != NULL && r->type == REDIS_REPLY_STATUS, "SETID %s", key);
	freeReplyObject(r);
}

static void
restart_recorder(struct env *e)
{
	struct sup_recorder_opts o = { .redis = e->redis, .prefix = e->prefix,
	    .host = "test-host", .snapshots_keep = 3, .batch = 64 };

	sup_recorder_free(e->rec);
	e->rec = sup_recorder_new(e->loop, e->pg, &o);
	cr_assert_not_null(e->rec);
}

/* New tasks' rows are copied into tasks, not upserted.  A batch read
 * again (as after a recorder died between COMMIT and XACK) meets its own
 * rows there: it is rolled back and written again through the upsert,
 * which changes nothing, or moves a queued row forward; nothing is lost,
 * everything is acknowledged. */
Test(recorder, batch_recorded_twice)
{
	struct env e;
	struct sup_recorder_stats st;
	char id[32];

	env_init(&e);
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "t-%d", i);
		submit(&e, id, 1);
		complete(&e, id, 1, 0, NULL);
	}
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "late-%d", i);
		submit(&e, id, 1);
	}
	run_until_sql(&e, "SELECT count(*) FROM task_states", 65);
	run_for(&e, 300);            /* the XACKs */
	sup_recorder_stats(e.rec, &st);
	cr_assert_eq(st.restaged, 0, "new rows copied, no conflict");
	cr_assert_eq(pending(&e, "q:echo:1"), 0);

	/* Everything again, and the results of the queued ones. */
	redeliver(&e, "q:echo:1");
	redeliver(&e, "results");
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "late-%d", i);
		complete(&e, id, 1, 0, NULL);
	}
	restart_recorder(&e);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE state = 'completed'",
	    25);
	run_for(&e, 300);
	sup_recorder_stats(e.rec, &st);
	cr_assert_geq(st.restaged, 1, "the copy met the rows");
	cr_assert_eq(st.retries, 0, "no other failure");
	cr_assert_eq(pending(&e, "q:echo:1"), 0);
	cr_assert_eq(pending(&e, "results"), 0);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM tasks"), 25);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM (SELECT task_id, "
	    "string_agg(state, ',' ORDER BY at, hive_state_rank(state)) s FROM "
	    "task_states GROUP BY task_id) x WHERE s = 'queued,running,completed'"),
	    25);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM task_attempts"), 0);
	env_fini(&e);
}

/* A workflow's task: its row may be there before its queue entry (the
 * coordinator writes it), so it is upserted, never copied. */
Test(recorder, workflow_rows_are_upserted)
{
	struct env e;
	struct sup_recorder_stats st;
	msgpack_sbuffer sb;
	struct hive_task t = { 0 };
	struct proto_err err;

	env_init(&e);
	cr_assert_eq(scalar(&e, "WITH x AS (INSERT INTO tasks (id, stream, "
	    "state, workflow) VALUES ('wf-a', '', 'queued', 'wf') RETURNING 1) "
	    "SELECT count(*) FROM x"), 1);
	msgpack_sbuffer_init(&sb);
	t.id = HIVE_STR("wf-a");
	t.workflow = HIVE_STR("wf");
	t.attempt = 1;
	t.payload.type = MSGPACK_OBJECT_NIL;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	xadd(&e, "q:echo:1", &sb);
	msgpack_sbuffer_destroy(&sb);
	complete(&e, "wf-a", 1, 0, NULL);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE id = 'wf-a' AND "
	    "state = 'completed' AND message IS NOT NULL", 1);
	sup_recorder_stats(e.rec, &st);
	cr_assert_eq(st.restaged, 0);
	cr_assert_eq(st.retries, 0);
	env_fini(&e);
}

/* Large entries make smaller reads: once the recorder has seen 600 KB
 * tasks it reads fewer at a time (a batch of about 16 MB, not 64 of
 * them; with many queues, not gigabytes), and records them all. */
Test(recorder, large_entries_make_smaller_reads)
{
	static char big[600 * 1024];
	struct env e;
	struct sup_recorder_stats st;
	msgpack_sbuffer sb;
	struct proto_err err;
	char id[32];

	memset(big, 'x', sizeof(big));
	env_init(&e);
	submit(&e, "small", 1);
	run_until_sql(&e, "SELECT count(*) FROM tasks", 1);
	sup_recorder_stats(e.rec, &st);
	cr_assert_eq(st.count, 64, "the configured batch while entries are small");
	for (int i = 0; i < 40; i++) {
		struct hive_task t = { 0 };
		snprintf(id, sizeof(id), "big-%d", i);
		t.id = HIVE_STR(id);
		t.attempt = 1;
		t.payload.type = MSGPACK_OBJECT_STR;
		t.payload.via.str.ptr = big;
		t.payload.via.str.size = sizeof(big);
		msgpack_sbuffer_init(&sb);
		cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
		xadd(&e, "q:echo:1", &sb);
		msgpack_sbuffer_destroy(&sb);
	}
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE id LIKE 'big-%' AND "
	    "length(message) > 600000", 40);
	sup_recorder_stats(e.rec, &st);
	cr_assert(st.count >= 1 && st.count <= (16u << 20) / sizeof(big),
	    "entries per read after 600 KB ones: %zu", st.count);
	env_fini(&e);
}

/* Run the loop until the recorder holds want queue entries. */
static void
run_until_held(struct env *e, size_t want)
{
	long long deadline = tu_now_ms() + 30000;
	struct sup_recorder_stats st = { 0 };

	while (tu_now_ms() < deadline) {
		run_for(e, 20);
		sup_recorder_stats(e->rec, &st);
		if (st.held == want)
			break;
	}
	cr_assert_eq(st.held, want, "held %zu, want %zu", st.held, want);
}

/* Bursts of queue entries are held, each until its result comes, in any
 * order, while more come (enough to grow and compact the recorder's
 * index of them): every task is written once, in one row (copied, never
 * upserted), and only then acknowledged.  (A hold long enough that none
 * expires.) */
Test(recorder, held_entries_meet_results_in_any_order)
{
	struct env e;
	struct sup_recorder_stats st;
	char id[32];
	enum { ROUNDS = 8, BURST = 500, N = ROUNDS * BURST };

	env_init_hold(&e, 60000);
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < BURST; i++) {
			snprintf(id, sizeof(id), "burst-%d", r * BURST + i);
			submit(&e, id, 1);
		}
		run_until_held(&e, (size_t)(r * BURST / 2 + BURST));
		/* Half of this burst ends now, from its end backwards. */
		for (int i = BURST - 1; i >= 0; i -= 2) {
			snprintf(id, sizeof(id), "burst-%d", r * BURST + i);
			complete(&e, id, 1, 0, NULL);
		}
		run_until_held(&e, (size_t)((r + 1) * BURST / 2));
	}
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM tasks WHERE state = "
	    "'queued'"), 0, "held: not written");
	/* The held ones stay pending (the others once their XACKs are in). */
	run_until_pending(&e, "q:echo:1", N / 2);
	/* The other halves, from the first. */
	for (int i = 0; i < N; i += 2) {
		snprintf(id, sizeof(id), "burst-%d", i);
		complete(&e, id, 1, 0, NULL);
	}
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE state = 'completed' "
	    "AND message IS NOT NULL AND queued_at IS NOT NULL", N);
	run_until_pending(&e, "q:echo:1", 0);
	run_until_pending(&e, "results", 0);
	sup_recorder_stats(e.rec, &st);
	cr_assert_eq(st.held, 0);
	cr_assert_eq(st.staged, 0, "%" PRIu64 " rows upserted", st.staged);
	cr_assert_eq(st.restaged, 0);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM task_states"), 3 * N);
	env_fini(&e);
}

/* Redis loses the queue while entries are held: they are written at once
 * (queued, with their message: what recovery puts back), not when the
 * hold ends, and their results, when they come, complete the rows. */
Test(recorder, held_entries_written_when_redis_loses_them)
{
	struct env e;
	struct sup_recorder_stats st;
	char key[128];
	redisReply *r;

	env_init_hold(&e, 600000);
	submit(&e, "lost-1", 1);
	submit(&e, "lost-2", 1);
	submit(&e, "lost-3", 1);
	run_until_held(&e, 3);
	snprintf(key, sizeof(key), "%s:q:echo:1", e.prefix);
	r = redisCommand(e.rc, "DEL %s", key);
	cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
	freeReplyObject(r);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE id LIKE 'lost-%' "
	    "AND state = 'queued' AND message IS NOT NULL", 3);
	sup_recorder_stats(e.rec, &st);
	cr_assert_eq(st.flushed, 3);
	cr_assert_eq(st.held, 0);
	complete(&e, "lost-2", 1, 0, NULL);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE id = 'lost-2' AND "
	    "state = 'completed' AND message IS NOT NULL", 1);
	env_fini(&e);
}

static void
send_event(struct env *e, const char *kind, uint64_t ts_ms, struct hive_str host,
    const char *agent, const char *task, int64_t pid, struct hive_str reason,
    const char *workflow)
{
	msgpack_sbuffer sb;
	struct hive_event m = { 0 };
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	m.kind = HIVE_STR(kind);
	m.ts_ms = ts_ms;
	m.host = host;
	m.agent = HIVE_STR(agent);
	m.task = HIVE_STR(task);
	m.pid = pid;
	m.reason = reason;
	m.workflow = HIVE_STR(workflow);
	cr_assert_eq(proto_encode_event(&sb, &m, &err), 0, "%s",
	    proto_strerror(&err, (char[PROTO_ERRBUF]){ 0 }, PROTO_ERRBUF));
	xadd(e, "events", &sb);
	msgpack_sbuffer_destroy(&sb);
}

/* Events, dead letters and memory snapshots: every field as it was sent
 * (an empty one NULL; quotes, backslashes and tabs as they are, jsonb's
 * \u0000 as \ufffd; a time not given is the entry's), and an event read
 * twice recorded once. */
Test(recorder, events_dead_letters_and_memory_fields)
{
	static const char reason[] = "it's \\ \t b\xc3\xa9\"";
	struct env e;
	msgpack_sbuffer sb;
	msgpack_zone z;
	struct hive_dead d = { 0 };
	struct hive_result r = { 0 };
	struct proto_err err;
	struct sup_recorder_stats st;
	json_t *j;

	env_init(&e);
	send_event(&e, "task.started", UINT64_C(1700000000123),
	    HIVE_STR("host-1"), "echo/1", "ev-1", 42,
	    (struct hive_str){ reason, sizeof(reason) - 1 }, "wf-1");
	send_event(&e, "agent.crashed", 0, HIVE_STR("h"), "", "", 0,
	    HIVE_STR(""), "");
	msgpack_sbuffer_init(&sb);
	d.id = HIVE_STR("dead-1");
	d.reason = HIVE_STR("gave up");
	d.agent = HIVE_STR("echo/1");
	d.attempt = 3;
	d.ts_ms = UINT64_C(1700000000456);
	cr_assert_eq(proto_encode_dead(&sb, &d, &err), 0);
	xadd(&e, "dead", &sb);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_init(&sb);
	msgpack_zone_init(&z, 1024);
	r.id = HIVE_STR("mem-1");
	r.agent = HIVE_STR("echo/1");
	r.host = HIVE_STR("test-host");
	r.status = HIVE_STATUS_OK;
	r.attempt = 1;
	r.finished_ms = UINT64_C(1700000000789);
	j = json_pack("{s:s#}", "note", "a\0b'c", (size_t)5);
	cr_assert_eq(proto_json_to_obj(j, &z, &r.memory, &err), 0);
	json_decref(j);
	r.memory_v = 4;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0);
	xadd(&e, "results", &sb);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);

	run_until_sql(&e, "SELECT count(*) FROM events", 3);
	run_until_sql(&e, "SELECT count(*) FROM memory_snapshots", 1);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM events WHERE "
	    "kind = 'task.started' AND at = to_timestamp(1700000000.123) AND "
	    "host = 'host-1' AND agent = 'echo/1' AND task_id = 'ev-1' AND "
	    "pid = 42 AND reason = E'it''s \\\\ \\t b\\u00e9\"' AND "
	    "workflow = 'wf-1' "
	    "AND source LIKE '%:events/%-%'"), 1);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM events WHERE "
	    "kind = 'agent.crashed' AND at > now() - interval '1 minute' AND "
	    "host = 'h' AND agent IS NULL AND task_id IS NULL AND pid IS NULL "
	    "AND reason IS NULL AND workflow IS NULL"), 1);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM events WHERE "
	    "kind = 'task.dead' AND at = to_timestamp(1700000000.456) AND "
	    "host IS NULL AND agent = 'echo/1' AND task_id = 'dead-1' AND "
	    "pid IS NULL AND reason = 'gave up' AND workflow IS NULL AND "
	    "source LIKE '%:dead/%'"), 1);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE id = 'dead-1' AND "
	    "state = 'dead' AND attempts = 3 AND error = 'gave up'", 1);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM memory_snapshots WHERE "
	    "agent = 'echo/1' AND version = 4 AND memory = "
	    "'{\"note\": \"a\\ufffdb''c\"}'::jsonb AND task_id = 'mem-1' AND "
	    "host = 'test-host' AND created_at = to_timestamp(1700000000.789)"),
	    1);

	/* Read again: recorded once. */
	run_for(&e, 300);
	redeliver(&e, "events");
	sup_recorder_stats(e.rec, &st);
	{
		uint64_t before = st.entries;
		long long deadline = tu_now_ms() + 30000;

		while (st.entries < before + 2 && tu_now_ms() < deadline) {
			run_for(&e, 20);
			sup_recorder_stats(e.rec, &st);
		}
		cr_assert_geq(st.entries, before + 2, "read again");
	}
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM events"), 3);
	cr_assert_eq(st.retries, 0);
	env_fini(&e);
}

static void
stats_recorder(struct env *e, struct sup_tstats *ts)
{
	struct sup_recorder_opts o = { .redis = e->redis, .prefix = e->prefix,
	    .host = "test-host", .snapshots_keep = 3, .batch = 64,
	    .stats = ts };

	sup_recorder_free(e->rec);
	e->rec = sup_recorder_new(e->loop, e->pg, &o);
	cr_assert_not_null(e->rec);
}

static const struct sup_tstats_pair *
stats_pair(const struct sup_tstats *ts, const char *cap, const char *agent)
{
	for (unsigned i = 0; i < ts->npairs; i++)
		if (strcmp(ts->caps[ts->pairs[i].cap].name, cap) == 0 &&
		    strcmp(ts->pairs[i].agent, agent) == 0)
			return &ts->pairs[i];
	cr_assert_fail("no counts for %s/%s", cap, agent);
	return NULL;
}

static void
stats_check(const struct sup_tstats *ts)
{
	const struct sup_tstats_pair *p = stats_pair(ts, "echo", "echo");

	cr_assert_eq(ts->ncaps, 1, "one capability, no \"\"");
	cr_assert_eq(ts->caps[0].submitted, 11);
	cr_assert_eq(p->started, 10);
	cr_assert_eq(p->completed, 10);
	cr_assert_eq(p->failed, 0, "a task given up on is dead, not failed");
	cr_assert_eq(p->dead, 1);
	cr_assert_eq(ts->caps[0].run.count, 10);
	cr_assert_eq(ts->caps[0].wait.count, 10);
}

/* The task counters (tstats.c) as the recorder records: the capability
 * of the queue found for results and dead letters, a task given up on
 * (a result with code attempts and its dead letter) counted once as
 * dead; everything read again by a new recorder, with the same counters,
 * counts nothing more. */
Test(recorder, task_stats_once_per_entry)
{
	struct sup_tstats *ts = sup_tstats_new();
	struct env e;
	msgpack_sbuffer sb;
	struct hive_result r = { 0 };
	struct hive_dead d = { 0 };
	struct proto_err err;
	char id[32], qkey[HIVE_KEY_MAX];

	cr_assert_not_null(ts);
	env_init(&e);
	stats_recorder(&e, ts);
	/* as hived names its queues: read with the others from the start */
	snprintf(qkey, sizeof(qkey), "%s:q:echo:1", e.prefix);
	sup_recorder_add_queue(e.rec, qkey);
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "t-%d", i);
		submit(&e, id, 1);
		complete(&e, id, 1, 0, NULL);
	}
	submit(&e, "gone", 1);
	msgpack_sbuffer_init(&sb);
	r.id = HIVE_STR("gone");
	r.agent = HIVE_STR("echo/1");
	r.host = HIVE_STR("test-host");
	r.status = HIVE_STATUS_ERROR;
	r.error = HIVE_STR("out of attempts");
	r.code = HIVE_CODE_ATTEMPTS;
	r.attempt = 3;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0);
	xadd(&e, "results", &sb);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_init(&sb);
	snprintf(qkey, sizeof(qkey), "%s:q:echo:1", e.prefix);
	d.id = HIVE_STR("gone");
	d.reason = HIVE_STR("out of attempts");
	d.code = HIVE_CODE_ATTEMPTS;
	d.stream = HIVE_STR(qkey);
	d.entry = HIVE_STR("1-1");
	d.agent = HIVE_STR("echo/1");
	d.attempt = 3;
	cr_assert_eq(proto_encode_dead(&sb, &d, &err), 0);
	xadd(&e, "dead", &sb);
	msgpack_sbuffer_destroy(&sb);

	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE state IN "
	    "('completed', 'dead', 'failed')", 11);
	run_for(&e, 300);            /* the XACKs */
	stats_check(ts);
	cr_assert_eq(sup_tstats_tasks(ts), 0, "every task ended");

	/* Read again from the start, by a new recorder. */
	redeliver(&e, "q:echo:1");
	redeliver(&e, "results");
	redeliver(&e, "dead");
	stats_recorder(&e, ts);
	sup_recorder_add_queue(e.rec, qkey);
	run_for(&e, 1500);
	cr_assert_eq(pending(&e, "q:echo:1"), 0);
	cr_assert_eq(pending(&e, "results"), 0);
	stats_check(ts);
	env_fini(&e);
	sup_tstats_free(ts);
}
