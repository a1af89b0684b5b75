/*
 * test_delay.c - delayed tasks end to end (supervisor/delay.c,
 * worker/retry.c, the recorder's <p>:scheduled, recovery): a task
 * submitted with not_before or delay is recorded scheduled at once, runs
 * at its time and not before, survives a hived restart and the loss of
 * Redis' keys, and is promoted exactly once by two hived sharing Redis
 * and PostgreSQL; a task XADDed straight to a queue before its time is
 * put into the delayed set by the worker.
 *
 * Real hived, hive-worker, Redis and PostgreSQL; waits are for events
 * (rows polled with a deadline as a failure guard).  How late a task
 * starts is printed, only a loose bound asserted (speed is bench/'s).
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000
/* A loose bound on how late a task may start (the design's is 50 ms;
 * a loaded test machine with sanitizers is slower). */
#define LATE_MAX_MS 2000

TestSuite(delay, .fini = hp_cleanup, .timeout = 120);

/* Wall time, Unix ms: what not_before is in (tu_now_ms is monotonic). */
static long long
wall_ms(void)
{
	return (long long)proto_now_ms();
}

static const char *
real(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s", tu_build_path("worker/hive-worker"));
	return path;
}

static long long
scalar(const char *ci, const char *sql)
{
	PGconn *c = PQconnectdb(ci);
	PGresult *res;
	long long v = -1;

	if (PQstatus(c) == CONNECTION_OK) {
		res = PQexec(c, sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		    !PQgetisnull(res, 0, 0))
			v = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	PQfinish(c);
	return v;
}

static void
wait_sql(struct hp *h, const char *ci, const char *sql, long long want)
{
	long long end = tu_now_ms() + T_LONG, got = -1;

	while (tu_now_ms() < end) {
		if ((got = scalar(ci, sql)) == want)
			return;
		hp_pump(h, 20);
	}
	if (h->log != NULL)
		fprintf(stderr, "hived's log, the end:\n%s\n",
		    h->len > 6000 ? h->log + h->len - 6000 : h->log);
	cr_assert_fail("%s: %lld, want %lld", sql, got, want);
}

static void
start_hived(struct hp *h, const char *ci, const char *host, const char *name)
{
	char extra[1024], agents[1024];

	snprintf(extra, sizeof(extra), "postgres = %s\nhost = %s\n", ci, host);
	snprintf(agents, sizeof(agents),
	    "[agent \"%s\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n"
	    "capabilities = work\n", name, getenv("HIVE_SOURCE_DIR"));
	hp_write_conf(h, real(), extra, agents);
	hp_start(h);
}

static void
stop_ok(struct hp *h)
{
	int st;

	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}

/* POST /tasks {"capability": "work", "id": id, <when>}: 201, scheduled. */
static void
post_delayed(struct hp *h, const char *id, const char *when)
{
	char body[512];
	json_t *j;
	int code;

	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"id\": \"%s\", "
	    "%s}", id, when);
	j = hp_http_body(h, "POST", "/tasks", HP_TOKEN, body, &code);
	cr_assert_eq(code, 201, "POST /tasks %s: %d", body, code);
	cr_assert_str_eq(json_string_value(json_object_get(j, "state")),
	    "scheduled");
	cr_assert(json_is_string(json_object_get(j, "not_before")));
	json_decref(j);
}

/* started_at - not_before of task id, in ms. */
static long long
lateness(const char *ci, const char *id, long long nb)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT (extract(epoch FROM started_at) * "
	    "1000)::bigint - %lld FROM tasks WHERE id = '%s'", nb, id);
	return scalar(ci, sql);
}

/* A task with not_before (Unix ms) and one with delay: scheduled in the
 * record at once, then run at their time, not before. */
Test(delay, runs_at_its_time_recorded_scheduled)
{
	struct hp *h = hp_new("dly");
	char ci[512], db[64], when[128];
	long long nb, late;

	tu_pg_fresh_db("dly", db, sizeof(db), ci, sizeof(ci));
	start_hived(h, ci, "host-a", "w");
	nb = wall_ms() + 2500;
	snprintf(when, sizeof(when), "\"not_before\": %lld", nb);
	post_delayed(h, "at", when);
	post_delayed(h, "in", "\"delay\": \"2500ms\"");
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE state = 'scheduled'",
	    2);
	cr_assert_lt(wall_ms(), nb, "recorded scheduled before its time");
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE state = 'completed'",
	    2);
	late = lateness(ci, "at", nb);
	fprintf(stderr, "delay: a task started %lld ms after its not_before\n",
	    late);
	cr_assert(late >= 0 && late < LATE_MAX_MS, "started %lld ms late", late);
	cr_assert_eq(scalar(ci, "SELECT count(*) FROM tasks WHERE "
	    "state = 'completed' AND queued_at IS NOT NULL"), 2);
	stop_ok(h);
}

/* Bad not_before / delay: 400, nothing scheduled. */
Test(delay, bad_input_400)
{
	struct hp *h = hp_new("dlybad");
	static const char *const bad[] = {
		"\"not_before\": \"tomorrow\"", "\"delay\": \"5 parsecs\"",
		"\"delay\": -1", "\"delay\": \"1s\", \"not_before\": 1",
		"\"not_before\": 99999999999999", "\"delay\": true",
	};
	char body[256];
	json_t *j;
	int code;

	hp_write_conf(h, real(), NULL, "");
	hp_start(h);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(body, sizeof(body), "{\"capability\": \"work\", %s}",
		    bad[i]);
		j = hp_http_body(h, "POST", "/tasks", HP_TOKEN, body, &code);
		cr_assert_eq(code, 400, "%s: %d", body, code);
		json_decref(j);
	}
	/* Due already: queued as usual. */
	j = hp_http_body(h, "POST", "/tasks", HP_TOKEN, "{\"capability\": "
	    "\"work\", \"not_before\": \"2020-01-01T00:00:00Z\"}", &code);
	cr_assert_eq(code, 201);
	cr_assert_null(json_object_get(j, "state"));
	json_decref(j);
	stop_ok(h);
}

/* A client XADDs a task with a future not_before straight to a queue:
 * the worker does not run it before then. */
Test(delay, worker_never_runs_early)
{
	struct hp *h = hp_new("dlyw");
	char ci[512], db[64], key[HIVE_KEY_MAX];
	redisContext *c = tu_redis_connect();
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	long long nb, late;
	size_t from = 0;

	tu_pg_fresh_db("dlyw", db, sizeof(db), ci, sizeof(ci));
	start_hived(h, ci, "host-a", "w");
	hp_wait(h, &from, T_LONG, "agent=w/1", "state=ready", NULL);
	proto_key_queue(key, sizeof(key), h->prefix, "work", 1);
	memset(&t, 0, sizeof(t));
	t.id = HIVE_STR("raw");
	t.attempt = 1;
	t.payload.type = MSGPACK_OBJECT_NIL;
	nb = wall_ms() + 1500;
	t.not_before = (uint64_t)nb;
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	tu_xadd(c, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	hp_wait(h, &from, T_LONG, "task=raw", "into the delayed set", NULL);
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE id = 'raw' AND "
	    "state = 'completed'", 1);
	late = lateness(ci, "raw", nb);
	fprintf(stderr, "delay: a raw task started %lld ms after its "
	    "not_before\n", late);
	cr_assert(late >= 0 && late < LATE_MAX_MS, "started %lld ms late", late);
	stop_ok(h);
	redisFree(c);
}

/* Every key of prefix gone (FLUSHALL for one installation). */
static void
flush_prefix(redisContext *c, const char *prefix)
{
	redisReply *r;
	char cur[32] = "0";

	do {
		r = redisCommand(c, "SCAN %s MATCH %s:* COUNT 1000", cur, prefix);
		cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY);
		snprintf(cur, sizeof(cur), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements; i++)
			freeReplyObject(redisCommand(c, "DEL %s",
			    r->element[1]->element[i]->str));
		freeReplyObject(r);
	} while (strcmp(cur, "0") != 0);
}

/* hived stops, Redis loses every key, hived starts again: the scheduled
 * task is put back from PostgreSQL and runs, not before its time. */
Test(delay, survives_restart_and_redis_loss)
{
	struct hp *h = hp_new("dlyr");
	char ci[512], db[64], when[128], dkey[HIVE_KEY_MAX];
	redisContext *c = tu_redis_connect();
	redisReply *r;
	long long nb, late;
	size_t from;

	tu_pg_fresh_db("dlyr", db, sizeof(db), ci, sizeof(ci));
	start_hived(h, ci, "host-a", "w");
	nb = wall_ms() + 6000;
	snprintf(when, sizeof(when), "\"not_before\": %lld", nb);
	post_delayed(h, "lost", when);
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE state = 'scheduled'",
	    1);
	stop_ok(h);
	proto_key_named(dkey, sizeof(dkey), h->prefix, "delayed");
	r = redisCommand(c, "ZCARD %s", dkey);
	cr_assert_eq(r->integer, 1, "still delayed after hived stopped");
	freeReplyObject(r);
	flush_prefix(c, h->prefix);
	from = hp_mark(h);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "recover:", NULL);
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE id = 'lost' AND "
	    "state = 'completed'", 1);
	late = lateness(ci, "lost", nb);
	fprintf(stderr, "delay: a recovered task started %lld ms after its "
	    "not_before\n", late);
	cr_assert_geq(late, 0);
	stop_ok(h);
	redisFree(c);
}

/* Two hived on one Redis and PostgreSQL: each of 200 delayed tasks is
 * promoted, and run, exactly once. */
Test(delay, two_hived_promote_once)
{
	struct hp *a = hp_new("dlya"), *b = hp_new("dlyb");
	char ci[512], db[64], id[32], body[256], rkey[HIVE_KEY_MAX];
	redisContext *c = tu_redis_connect();
	redisReply *r;
	long long nb;
	json_t *j;
	int code;

	tu_pg_fresh_db("dly2", db, sizeof(db), ci, sizeof(ci));
	memcpy(b->prefix, a->prefix, sizeof(b->prefix));
	start_hived(a, ci, "host-a", "wa");
	start_hived(b, ci, "host-b", "wb");
	nb = wall_ms() + 1500;
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "two-%d", i);
		snprintf(body, sizeof(body), "{\"capability\": \"work\", "
		    "\"id\": \"%s\", \"not_before\": %lld}", id, nb + i % 10);
		j = hp_http_body(i % 2 ? a : b, "POST", "/tasks", HP_TOKEN, body,
		    &code);
		cr_assert_eq(code, 201);
		json_decref(j);
	}
	wait_sql(a, ci, "SELECT count(*) FROM tasks WHERE state = 'completed'",
	    200);
	proto_key_named(rkey, sizeof(rkey), a->prefix, "results");
	r = redisCommand(c, "XLEN %s", rkey);
	cr_assert_eq(r->integer, 200, "one result per task: %lld", r->integer);
	freeReplyObject(r);
	cr_assert_eq(scalar(ci, "SELECT count(*) FROM tasks WHERE attempts = 1"),
	    200);
	snprintf(body, sizeof(body), "SELECT count(*) FROM tasks WHERE "
	    "started_at < to_timestamp(%lld / 1000.0)", nb);
	cr_assert_eq(scalar(ci, body), 0, "none started before its time");
	stop_ok(a);
	stop_ok(b);
	redisFree(c);
}
