/*
 * test_cancel.c - POST /tasks/ID/cancel and POST /workflows/ID/cancel
 * (supervisor/api_cancel.c) on a real hived with workers, Redis and
 * PostgreSQL: the record says cancelled, a second cancel is a 409, a
 * workflow's running task is stopped and its waiting ones never run.
 * Waits are on the record (polled while reading hived's log) and on
 * HTTP answers; deadlines are failure guards only.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_run.h"
#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

static struct hp *cur;

/* A sanitizer's report in hived's log is shown before the clean-up. */
static void
fini(void)
{
	if (cur != NULL && cur->log != NULL && (strstr(cur->log,
	    "Sanitizer") != NULL || strstr(cur->log, "runtime error") != NULL))
		fprintf(stderr, "hived's log:\n%s\n", cur->log);
	cur = NULL;
	hp_cleanup();
}

TestSuite(cancel_api, .fini = fini, .timeout = 120);

static char ci[512];
static char told_path[700];

/* Wait for the handler to have written line to told_path (polled while
 * reading hived's log, as wait_sql polls the record). */
static void
wait_told(struct hp *h, const char *line)
{
	long long end = tu_now_ms() + T_LONG;
	char buf[4096];

	while (tu_now_ms() < end) {
		FILE *f = fopen(told_path, "r");
		size_t n = 0;

		if (f != NULL) {
			n = fread(buf, 1, sizeof(buf) - 1, f);
			fclose(f);
		}
		buf[n] = '\0';
		if (strstr(buf, line) != NULL)
			return;
		hp_pump(h, 50);
	}
	cr_assert_fail("the handler never told \"%s\"", line);
}

static char *
sql_text(const char *sql)
{
	PGconn *c = PQconnectdb(ci);
	PGresult *res;
	char *v = NULL;

	if (PQstatus(c) == CONNECTION_OK) {
		res = PQexec(c, sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK &&
		    PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
			v = strdup(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	PQfinish(c);
	return v;
}

static void
wait_sql(struct hp *h, const char *sql, const char *want)
{
	long long end = tu_now_ms() + T_LONG;
	char *got = NULL;

	while (tu_now_ms() < end) {
		free(got);
		if ((got = sql_text(sql)) != NULL && strcmp(got, want) == 0) {
			free(got);
			return;
		}
		hp_pump(h, 50);
	}
	if (h->log != NULL)
		fprintf(stderr, "hived's log, the end:\n%s\n",
		    h->len > 6000 ? h->log + h->len - 6000 : h->log);
	cr_assert_fail("%s: %s, want %s", sql, got ? got : "(null)", want);
}

/* Start h on the database ci, as host. */
static void
start_on(struct hp *h, const char *host)
{
	char extra[1024], agents[1024];
	size_t from = 0;

	snprintf(extra, sizeof(extra), "postgres = %s\nhost = %s\n", ci, host);
	snprintf(told_path, sizeof(told_path), "%s/told", h->dir);
	snprintf(agents, sizeof(agents),
	    "[agent \"c\"]\n"
	    "command = /usr/bin/python3 %s/tests/worker/cancel_handler.py %s\n"
	    "capabilities = work\n"
	    "concurrency = 4\n"
	    "cancel_grace = 1s\n", getenv("HIVE_SOURCE_DIR"), told_path);
	hp_write_conf(h, tu_build_path("worker/hive-worker"), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "postgres: schema version", NULL);
}

static struct hp *
setup(const char *tag)
{
	struct hp *h = cur = hp_new(tag);
	char db[64];

	tu_pg_fresh_db(tag, db, sizeof(db), ci, sizeof(ci));
	start_on(h, "cancel-host");
	return h;
}

static json_t *
post(struct hp *h, const char *path, const char *body, int want)
{
	int code = 0;
	json_t *j = hp_http_body(h, "POST", path, HP_TOKEN, body, &code);

	cr_assert_eq(code, want, "POST %s: %d, want %d", path, code, want);
	return j;
}

Test(cancel_api, running_task_cancelled_then_409)
{
	struct hp *h = setup("cnapi");
	json_t *j;
	int code = 0;

	json_decref(post(h, "/tasks", "{\"id\": \"k-1\", \"capability\": "
	    "\"work\", \"payload\": {\"op\": \"hang\", \"obey\": true}, "
	    "\"reply_to\": \"hive:reply:k-1\"}", 201));
	wait_told(h, "start k-1\n");
	/* no token: refused */
	j = hp_http_body(h, "POST", "/tasks/k-1/cancel", NULL, "", &code);
	cr_assert_eq(code, 401);
	json_decref(j);
	j = post(h, "/tasks/k-1/cancel", "", 202);
	cr_assert_str_eq(json_string_value(json_object_get(j, "state")),
	    "cancelling");
	json_decref(j);
	wait_sql(h, "SELECT state || ' ' || error FROM tasks WHERE id = 'k-1'",
	    "cancelled cancelled");
	j = post(h, "/tasks/k-1/cancel", "", 409);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j,
	    "error"), "state")), "cancelled");
	json_decref(j);
	/* the client's reply stream got the cancelled result */
	{
		redisContext *c = tu_redis_connect();
		redisReply *r = redisCommand(c, "XLEN hive:reply:k-1");
		struct hive_result res;
		struct proto_err err;

		cr_assert_eq(r->integer, 1);
		freeReplyObject(r);
		r = redisCommand(c, "XRANGE hive:reply:k-1 - +");
		cr_assert_eq(proto_decode_result(
		    r->element[0]->element[1]->element[1]->str,
		    r->element[0]->element[1]->element[1]->len, &res, &err), 0);
		cr_assert_eq(res.status, HIVE_STATUS_CANCELLED);
		proto_result_clear(&res);
		freeReplyObject(r);
		freeReplyObject(redisCommand(c, "DEL hive:reply:k-1"));
		redisFree(c);
	}
	/* bad ids and unknown workflows */
	json_decref(post(h, "/workflows/nope/cancel", "", 404));
}

Test(cancel_api, workflow_cancel_stops_running_and_waiting_tasks)
{
	struct hp *h = setup("cnwf");
	json_t *j;

	json_decref(post(h, "/workflows", "{\"id\": \"wf-c\", \"tasks\": ["
	    "{\"id\": \"wa\", \"capability\": \"work\", \"payload\": "
	    "{\"op\": \"hang\"}},"
	    "{\"id\": \"wb\", \"capability\": \"work\", \"depends_on\": [\"wa\"],"
	    " \"reply_to\": \"hive:reply:wb-c\"},"
	    "{\"id\": \"wc\", \"capability\": \"work\", \"depends_on\": [\"wb\"]}"
	    "]}", 202));
	wait_told(h, "start wa\n");
	j = post(h, "/workflows/wf-c/cancel", "", 202);
	cr_assert_eq(json_integer_value(json_object_get(j, "cancelled")), 2);
	cr_assert_eq(json_integer_value(json_object_get(j, "cancelling")), 1);
	json_decref(j);
	/* wa ignores the cancel line: killed after the grace */
	wait_sql(h, "SELECT string_agg(id || '=' || state, ',' ORDER BY id) "
	    "FROM tasks WHERE workflow = 'wf-c'",
	    "wa=cancelled,wb=cancelled,wc=cancelled");
	wait_sql(h, "SELECT state FROM workflows WHERE id = 'wf-c'",
	    "cancelled");
	json_decref(post(h, "/workflows/wf-c/cancel", "", 409));
	{
		redisContext *c = tu_redis_connect();
		redisReply *r = redisCommand(c, "XLEN hive:reply:wb-c");

		cr_assert_eq(r->integer, 1, "wb's client got its result");
		freeReplyObject(r);
		freeReplyObject(redisCommand(c, "DEL hive:reply:wb-c"));
		redisFree(c);
	}
}

/* A task no agent pulls still expires (expire.c), and its client hears
 * of it; POST /tasks checks deadline and ttl. */
Test(cancel_api, queued_task_nobody_pulls_expires)
{
	struct hp *h = setup("cnexp");
	redisContext *c = tu_redis_connect();
	redisReply *r;
	struct hive_result res;
	struct proto_err err;

	freeReplyObject(redisCommand(c, "DEL hive:reply:x-1"));
	json_decref(post(h, "/tasks", "{\"id\": \"x-1\", \"capability\": "
	    "\"nobody\", \"ttl\": \"300ms\", \"reply_to\": "
	    "\"hive:reply:x-1\"}", 201));
	json_decref(post(h, "/tasks", "{\"id\": \"x-3\", \"capability\": "
	    "\"nobody\", \"ttl\": \"300ms\", \"unique_key\": \"ux\"}", 201));
	r = redisCommand(c, "EXISTS %s:unique:ux", h->prefix);
	cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER);
	cr_assert_eq(r->integer, 1, "x-3 holds its lock");
	freeReplyObject(r);
	json_decref(post(h, "/tasks", "{\"id\": \"x-2\", \"capability\": "
	    "\"nobody\", \"deadline\": \"2999-01-01T00:00:00Z\"}", 201));
	json_decref(post(h, "/tasks", "{\"capability\": \"nobody\", "
	    "\"deadline\": 1, \"ttl\": \"1s\"}", 400));
	json_decref(post(h, "/tasks", "{\"capability\": \"nobody\", "
	    "\"deadline\": \"tomorrow\"}", 400));
	json_decref(post(h, "/tasks", "{\"capability\": \"nobody\", "
	    "\"ttl\": \"soon\"}", 400));
	wait_sql(h, "SELECT state || ' ' || error FROM tasks WHERE id = 'x-1'",
	    "expired expired: deadline passed before it started");
	r = redisCommand(c, "XRANGE hive:reply:x-1 - +");
	cr_assert_eq(r->elements, 1);
	cr_assert_eq(proto_decode_result(
	    r->element[0]->element[1]->element[1]->str,
	    r->element[0]->element[1]->element[1]->len, &res, &err), 0);
	cr_assert_eq(res.status, HIVE_STATUS_EXPIRED);
	proto_result_clear(&res);
	freeReplyObject(r);
	freeReplyObject(redisCommand(c, "DEL hive:reply:x-1"));
	/* the expired unique task's lock is released with it */
	wait_sql(h, "SELECT state FROM tasks WHERE id = 'x-3'", "expired");
	r = redisCommand(c, "EXISTS %s:unique:ux", h->prefix);
	cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER);
	cr_assert_eq(r->integer, 0, "the lock of an expired task is released");
	freeReplyObject(r);
	redisFree(c);
	/* the one with a far deadline waits on */
	wait_sql(h, "SELECT state FROM tasks WHERE id = 'x-2'", "queued");
}

/* hivectl cancel, submit --ttl / --deadline, wait on the new states. */
Test(cancel_api, hivectl_cancel_and_ttl)
{
	struct hp *h = setup("cnctl");
	struct ctl_run r = { 0 };

	cr_assert_eq(ctl_run_h(&r, h, "submit", "nobody", "{}", "--id", "y-1",
	    "--ttl", "300ms", NULL), 0, "%s", r.err);
	cr_assert_eq(ctl_run_h(&r, h, "submit", "nobody", "{}", "--id", "y-2",
	    "--deadline", "2999-01-01T00:00:00Z", NULL), 0, "%s", r.err);
	cr_assert_eq(ctl_run_h(&r, h, "submit", "nobody", "{}", "--ttl",
	    "soon", NULL), 2);
	cr_assert_eq(ctl_run_h(&r, h, "wait", "y-1", "--timeout", "20s", NULL),
	    1);
	cr_assert(strstr(r.err, "y-1 expired") != NULL, "%s", r.err);
	cr_assert_eq(ctl_run_h(&r, h, "submit", "work",
	    "{\"op\": \"hang\", \"obey\": true}", "--id", "k-2", NULL), 0);
	wait_told(h, "start k-2\n");
	cr_assert_eq(ctl_run_h(&r, h, "cancel", "k-2", NULL), 0, "%s", r.err);
	cr_assert_str_eq(r.out, "task k-2 cancelling\n");
	cr_assert_eq(ctl_run_h(&r, h, "wait", "k-2", "--timeout", "20s", NULL),
	    1);
	cr_assert(strstr(r.err, "k-2 cancelled") != NULL, "%s", r.err);
	cr_assert_eq(ctl_run_h(&r, h, "cancel", "k-2", NULL), 1);
	cr_assert(strstr(r.err, "(conflict)") != NULL, "%s", r.err);
	cr_assert_eq(ctl_run_h(&r, h, "tasks", "--state", "cancelled", NULL),
	    0, "%s", r.err);
	cr_assert(strstr(r.out, "k-2") != NULL, "%s", r.out);
	cr_assert_eq(ctl_run_h(&r, h, "tasks", "--state", "expired", NULL),
	    0, "%s", r.err);
	cr_assert(strstr(r.out, "y-1") != NULL, "%s", r.out);
	cr_assert_eq(ctl_run_h(&r, h, "cancel", "--workflow", "nope", NULL), 1);
	cr_assert_eq(ctl_run_h(&r, h, "cancel", NULL), 2);
	ctl_run_free(&r);
}

/*
 * 1,000 cancels racing completion, through hived and its recorder: each
 * task has one final state in the record (completed or cancelled) and
 * one result in the results stream.
 */
#define RACES 1000
Test(cancel_api, cancel_racing_completion_one_final_state, .timeout = 120)
{
	struct hp *h = setup("cnrace");
	redisContext *c = tu_redis_connect();
	char q[HIVE_KEY_MAX], k[HIVE_KEY_MAX], id[32], want[16];
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	redisReply *r;

	cr_assert(proto_key_queue(q, sizeof(q), h->prefix, "work", 1) > 0);
	msgpack_sbuffer_init(&sb);
	for (int i = 0; i < RACES; i++) {
		memset(&t, 0, sizeof(t));
		snprintf(id, sizeof(id), "race-%d", i);
		t.id = HIVE_STR(id);
		t.attempt = 1;
		t.payload.type = MSGPACK_OBJECT_NIL;
		msgpack_sbuffer_clear(&sb);
		cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
		redisAppendCommand(c, "XADD %s * m %b", q, sb.data, sb.size);
		/* the cancel of this task, of one a little older, or none */
		if (i % 3 != 2) {
			snprintf(id, sizeof(id), "race-%d", i % 3 ? i - 4 : i);
			proto_key_cancel(k, sizeof(k), h->prefix, id);
			redisAppendCommand(c, "SET %s race PX 60000", k);
		}
	}
	for (int i = 0; i < RACES + (RACES * 2 + 2) / 3; i++) {
		cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
		freeReplyObject(r);
	}
	msgpack_sbuffer_destroy(&sb);
	snprintf(want, sizeof(want), "%d", RACES);
	wait_sql(h, "SELECT count(*) FROM tasks WHERE id LIKE 'race-%' AND "
	    "state IN ('completed', 'cancelled')", want);
	wait_sql(h, "SELECT count(*) FROM tasks WHERE id LIKE 'race-%'", want);
	proto_key_named(k, sizeof(k), h->prefix, "results");
	r = redisCommand(c, "XLEN %s", k);
	cr_assert_eq(r->integer, RACES, "one result per task: %lld",
	    r->integer);
	freeReplyObject(r);
	{
		char *n = sql_text("SELECT count(*) FILTER (WHERE state = "
		    "'cancelled') || ' cancelled' FROM tasks WHERE id LIKE "
		    "'race-%'");

		fprintf(stderr, "races: %s of %d\n", n ? n : "?", RACES);
		free(n);
	}
	redisFree(c);
}

/* Two hived sharing Redis and PostgreSQL both sweep: each expired task
 * has one result all the same. */
Test(cancel_api, two_hived_expire_each_task_once)
{
	struct hp *a = cur = hp_new("cnexa"), *b = hp_new("cnexb");
	char db[64], body[256], key[HIVE_KEY_MAX];
	redisContext *c;
	redisReply *r;
	enum { N = 50 };

	tu_pg_fresh_db("cnexab", db, sizeof(db), ci, sizeof(ci));
	memcpy(b->prefix, a->prefix, sizeof(b->prefix));
	start_on(a, "host-a");
	start_on(b, "host-b");
	for (int i = 0; i < N; i++) {
		snprintf(body, sizeof(body), "{\"id\": \"e-%d\", \"capability\": "
		    "\"nobody\", \"ttl\": 200}", i);
		json_decref(post(i % 2 ? b : a, "/tasks", body, 201));
	}
	wait_sql(a, "SELECT count(*) FROM tasks WHERE id LIKE 'e-%' AND "
	    "state = 'expired'", "50");
	c = tu_redis_connect();
	proto_key_named(key, sizeof(key), a->prefix, "results");
	r = redisCommand(c, "XLEN %s", key);
	cr_assert_eq(r->integer, N, "results: %lld, want %d", r->integer, N);
	freeReplyObject(r);
	redisFree(c);
	{
		char *n = sql_text("SELECT count(*) FROM tasks WHERE id LIKE "
		    "'e-%' AND agent = 'hived'");
		fprintf(stderr, "expired by hived: %s\n", n ? n : "?");
		free(n);
	}
}
