/*
 * test_api_tasks.c - the record, read through the API (api_tasks.c):
 * GET /tasks, /tasks/ID, /workflows, /workflows/ID.
 *
 * The cursor first, as a pure function (api_tasks.h).  Then real hived,
 * hive-worker, Redis and PostgreSQL, each test with its own database and
 * key prefix: tasks that ran, with their states and times; the filters;
 * paging that gives every row once, also rows with equal created_at; the
 * 400s of bad arguments; a workflow's graph; 503 no_record without the
 * record.  Waits are for events (log lines, rows polled with a deadline
 * as a failure guard).
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <criterion/criterion.h>
#include <poll.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api_tasks.h"
#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

TestSuite(api_tasks, .fini = hp_cleanup, .timeout = 120);

/* ---- the cursor ---- */

Test(api_tasks, cursor_round_trip)
{
	static const char *const ids[] = { "t-1", "a", "ab", "abc", "abcd",
		"~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", NULL };
	static const int64_t uss[] = { 0, 1, 1796630400123456, INT64_MAX };
	char buf[API_CURSOR_MAX], id[HIVE_ID_MAX + 1], big[HIVE_ID_MAX + 1];
	int64_t us;

	for (const char *const *p = ids; *p != NULL; p++)
		for (size_t k = 0; k < sizeof(uss) / sizeof(uss[0]); k++) {
			cr_assert_gt(api_cursor_encode(buf, sizeof(buf), uss[k], *p,
			    strlen(*p)), 0);
			cr_assert_eq(strspn(buf, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "abcdefghijklmnopqrstuvwxyz0123456789._~-"), strlen(buf),
			    "not URL-safe: %s", buf);
			cr_assert_eq(api_cursor_decode(buf, &us, id, sizeof(id)), 0,
			    "%s", buf);
			cr_assert_eq(us, uss[k]);
			cr_assert_str_eq(id, *p);
		}
	cr_assert_gt(api_cursor_encode(buf, sizeof(buf), 5, "t-1", 3), 0);
	cr_assert_str_eq(buf, "5.dC0x");
	/* The longest id fits API_CURSOR_MAX. */
	memset(big, '~', HIVE_ID_MAX);
	big[HIVE_ID_MAX] = '\0';
	cr_assert_gt(api_cursor_encode(buf, sizeof(buf), INT64_MAX, big,
	    HIVE_ID_MAX), 0);
	cr_assert_eq(api_cursor_decode(buf, &us, id, sizeof(id)), 0);
	cr_assert_str_eq(id, big);
	/* What cannot be a key is not encoded. */
	cr_assert_eq(api_cursor_encode(buf, sizeof(buf), -1, "a", 1), -1);
	cr_assert_eq(api_cursor_encode(buf, sizeof(buf), 1, "a b", 3), -1);
	cr_assert_eq(api_cursor_encode(buf, sizeof(buf), 1, "", 0), -1);
	cr_assert_eq(api_cursor_encode(buf, 4, 1, "abc", 3), -1);
}

Test(api_tasks, cursor_rejects)
{
	static const char *const bad[] = {
		"", ".", "5", "5.", ".dC0x", "05.dC0x", "-5.dC0x", "+5.dC0x",
		"5 .dC0x", "5.dC0x=", "5.dC1", "5.dC0*", "5.d", "5.dC0x.",
		"5.dC0x\n", "9223372036854775808.dC0x", "99999999999999999999.YQ",
		"5.IA", "5.YQ==", "5.dC/x", "5.dC+x", "garbage", "5,dC0x",
		"1.YQ%3D", NULL };
	char id[HIVE_ID_MAX + 1];
	int64_t us = 42;

	for (const char *const *p = bad; *p != NULL; p++) {
		cr_assert_eq(api_cursor_decode(*p, &us, id, sizeof(id)), -1,
		    "accepted \"%s\"", *p);
		cr_assert_eq(us, 42);
	}
	cr_assert_eq(api_cursor_decode("5.dC0x", &us, id, HIVE_ID_MAX), -1);
}

/* ---- hived ---- */

static char ci[512];

static PGresult *
sql_at(const char *where, const char *q)
{
	PGconn *c = PQconnectdb(where);
	PGresult *res;

	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	res = PQexec(c, q);
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK ||
	    PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", q,
	    PQresultErrorMessage(res));
	PQfinish(c);
	return res;
}

static PGresult *
sql(const char *q)
{
	return sql_at(ci, q);
}

static long
scalar(const char *q)
{
	PGresult *res = sql(q);
	long v = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) ?
	    atol(PQgetvalue(res, 0, 0)) : -1;

	PQclear(res);
	return v;
}

static void
wait_sql(struct hp *h, const char *q, long want)
{
	long long end = tu_now_ms() + T_LONG;
	long got = -1;

	while (tu_now_ms() < end) {
		if ((got = scalar(q)) == want)
			return;
		hp_pump(h, 50);
	}
	cr_assert_fail("%s: %ld, want %ld", q, got, want);
}

/* hived with the record (postgres NULL: without) and two agents: counter
 * (capability count, memory) and wf (capability work, workflows). */
static struct hp *
start(const char *tag, int record)
{
	struct hp *h = hp_new(tag);
	char db[64], extra[1024], agents[1024];
	size_t from = 0, from2 = 0;

	extra[0] = '\0';
	if (record) {
		tu_pg_fresh_db(tag, db, sizeof(db), ci, sizeof(ci));
		snprintf(extra, sizeof(extra), "postgres = %s\n", ci);
	}
	snprintf(agents, sizeof(agents),
	    "[agent \"counter\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n"
	    "capabilities = count\n"
	    "[agent \"wf\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/wf_handler.py\n"
	    "capabilities = work\n", getenv("HIVE_SOURCE_DIR"),
	    getenv("HIVE_SOURCE_DIR"));
	hp_write_conf(h, tu_build_path("worker/hive-worker"), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "state=ready", NULL);
	hp_wait(h, &from2, T_LONG, "agent=wf/1", "state=ready", NULL);
	return h;
}

static void submit_key(const char *key, const char *id,
    const char *payload, const char *reply_to);

static void
submit(struct hp *h, const char *cap, unsigned prio, const char *id,
    const char *payload, const char *reply_to)
{
	char key[HIVE_KEY_MAX];

	proto_key_queue(key, sizeof(key), h->prefix, cap, prio);
	submit_key(key, id, payload, reply_to);
}

static void
submit_key(const char *key, const char *id, const char *payload,
    const char *reply_to)
{
	redisContext *c = tu_redis_connect();
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_loads(payload, JSON_DECODE_ANY, NULL);

	cr_assert(j != NULL);
	msgpack_zone_init(&z, 1024);
	msgpack_sbuffer_init(&sb);
	memset(&t, 0, sizeof(t));
	t.id = HIVE_STR(id);
	t.attempt = 1;
	if (reply_to != NULL)
		t.reply_to = HIVE_STR(reply_to);
	cr_assert_eq(proto_json_to_obj(j, &z, &t.payload, &err), 0);
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	tu_xadd(c, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(j);
	redisFree(c);
}

/* GET path: the body, status want (failing otherwise). */
static json_t *
get(struct hp *h, const char *path, int want)
{
	int code = 0;
	json_t *j = hp_http(h, "GET", path, NULL, &code);

	cr_assert_eq(code, want, "GET %s: %d, want %d: %s", path, code, want,
	    j ? json_dumps(j, JSON_COMPACT) : "(no JSON)");
	cr_assert(j != NULL, "GET %s: no JSON body", path);
	return j;
}

/* GET path is an error: status and code. */
static void
get_err(struct hp *h, const char *path, int status, const char *code)
{
	json_t *j = get(h, path, status);
	json_t *e = json_object_get(j, "error");

	cr_assert(json_is_object(e), "GET %s: no error object", path);
	cr_assert_str_eq(json_string_value(json_object_get(e, "code")), code,
	    "GET %s", path);
	cr_assert(json_is_string(json_object_get(e, "message")));
	json_decref(j);
}

/* SIGTERM, and hived exits 0: under ASan, also nothing leaked (a leak
 * at exit is status 23). */
static void
stop_ok(struct hp *h)
{
	int st;

	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x; "
	    "its log, the end:\n%s", st, h->len > 4000 ? h->log + h->len - 4000 :
	    h->log);
}

static size_t
count_of(struct hp *h, const char *path)
{
	json_t *j = get(h, path, 200);
	size_t n = json_array_size(json_object_get(j, "tasks"));

	cr_assert(json_is_null(json_object_get(j, "next")), "GET %s", path);
	json_decref(j);
	return n;
}

static const char *
str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	cr_assert(s != NULL, "%s is not a string", k);
	return s;
}

Test(api_tasks, tasks_that_ran)
{
	struct hp *h = start("apit", 1);
	char reply[128];
	json_t *j, *t, *states, *log, *pay;

	snprintf(reply, sizeof(reply), "hive:reply:%s", h->prefix);
	submit(h, "count", 1, "c-1", "{\"n\": 1}", reply);
	submit(h, "count", 2, "c-2", "{\"n\": 2}", NULL);
	submit(h, "work", 0, "w-1", "[1, \"two\"]", NULL);
	wait_sql(h, "SELECT count(*) FROM tasks WHERE state = 'completed' "
	    "AND finished_at IS NOT NULL", 3);
	wait_sql(h, "SELECT count(*) FROM memory_snapshots WHERE task_id IN "
	    "('c-1', 'c-2')", 2);

	j = get(h, "/tasks", 200);
	cr_assert_eq(json_array_size(json_object_get(j, "tasks")), 3);
	cr_assert(json_is_null(json_object_get(j, "next")));
	for (size_t i = 0; i < 3; i++) {
		t = json_array_get(json_object_get(j, "tasks"), i);
		cr_assert_str_eq(str(t, "state"), "completed");
		cr_assert(json_is_integer(json_object_get(t, "attempts")));
		cr_assert_eq(json_integer_value(json_object_get(t, "attempts")), 1);
		cr_assert_eq(strlen(str(t, "created_at")), 24);
		cr_assert_eq(str(t, "created_at")[23], 'Z');
		cr_assert(strcmp(str(t, "finished_at"), str(t, "created_at")) >= 0);
		cr_assert(json_is_null(json_object_get(t, "error")));
		cr_assert(json_is_null(json_object_get(t, "workflow")));
	}
	/* Newest first: c-1, c-2 and w-1 were submitted in that order. */
	t = json_array_get(json_object_get(j, "tasks"), 0);
	cr_assert_str_eq(str(t, "id"), "w-1");
	cr_assert_str_eq(str(t, "capability"), "work");
	cr_assert_eq(json_integer_value(json_object_get(t, "priority")), 0);
	cr_assert_str_eq(str(t, "agent"), "wf/1");
	json_decref(j);

	j = get(h, "/tasks/c-1", 200);
	t = json_object_get(j, "task");
	cr_assert_str_eq(str(t, "id"), "c-1");
	cr_assert_str_eq(str(t, "capability"), "count");
	cr_assert_eq(json_integer_value(json_object_get(t, "priority")), 1);
	cr_assert_str_eq(str(t, "agent"), "counter/1");
	cr_assert_str_eq(str(t, "reply_to"), reply);
	pay = json_object_get(t, "payload");
	cr_assert_eq(json_integer_value(json_object_get(pay, "n")), 1);
	/* c-2 (priority 2) may have run first: the count and the memory
	 * version this task made are 1 or 2, and the same. */
	cr_assert_geq(json_integer_value(json_object_get(t, "memory_v")), 1);
	cr_assert_leq(json_integer_value(json_object_get(t, "memory_v")), 2);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(t,
	    "result"), "count")), json_integer_value(json_object_get(t,
	    "memory_v")));
	cr_assert(json_is_string(json_object_get(t, "entry")));
	cr_assert(strcmp(str(t, "queued_at"), str(t, "started_at")) <= 0);
	cr_assert(strcmp(str(t, "started_at"), str(t, "finished_at")) <= 0);
	states = json_object_get(t, "states");
	cr_assert_eq(json_array_size(states), 3);
	cr_assert_str_eq(str(json_array_get(states, 0), "state"), "queued");
	cr_assert_str_eq(str(json_array_get(states, 1), "state"), "running");
	cr_assert_str_eq(str(json_array_get(states, 2), "state"), "completed");
	cr_assert_str_eq(str(json_array_get(states, 1), "at"),
	    str(t, "started_at"));
	cr_assert_str_eq(str(json_array_get(states, 2), "agent"), "counter/1");
	log = json_object_get(t, "attempts_log");
	cr_assert_eq(json_array_size(log), 1);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(log, 0),
	    "attempt")), 1);
	cr_assert_str_eq(str(json_array_get(log, 0), "state"), "completed");
	cr_assert_str_eq(str(json_array_get(log, 0), "finished_at"),
	    str(t, "finished_at"));
	json_decref(j);

	j = get(h, "/tasks/w-1", 200);
	t = json_object_get(j, "task");
	cr_assert_eq(json_array_size(json_object_get(t, "payload")), 2);
	cr_assert(json_is_null(json_object_get(t, "reply_to")));
	cr_assert(json_is_null(json_object_get(t, "memory_v")));
	json_decref(j);

	/* The filters. */
	cr_assert_eq(count_of(h, "/tasks?state=completed"), 3);
	cr_assert_eq(count_of(h, "/tasks?state=queued"), 0);
	cr_assert_eq(count_of(h, "/tasks?capability=count"), 2);
	cr_assert_eq(count_of(h, "/tasks?capability=work"), 1);
	cr_assert_eq(count_of(h, "/tasks?capability=nothing"), 0);
	cr_assert_eq(count_of(h, "/tasks?agent=counter"), 2);
	cr_assert_eq(count_of(h, "/tasks?agent=counter/1"), 2);
	cr_assert_eq(count_of(h, "/tasks?agent=counter/2"), 0);
	cr_assert_eq(count_of(h, "/tasks?agent=wf&state=completed"), 1);
	cr_assert_eq(count_of(h, "/tasks?since=2000-01-01T00:00:00Z"), 3);
	cr_assert_eq(count_of(h, "/tasks?since=4102444800000"), 0);
	cr_assert_eq(count_of(h, "/tasks?workflow=none"), 0);

	get_err(h, "/tasks/nope", 404, "not_found");
	get_err(h, "/workflows/nope", 404, "not_found");
	stop_ok(h);
}

/* An agent's queue is the capability "@name"; a direct queue has none. */
Test(api_tasks, agent_and_direct_queues)
{
	struct hp *h = start("apiq2", 1);
	char key[HIVE_KEY_MAX];
	json_t *j, *t;

	proto_key_agent_queue(key, sizeof(key), h->prefix, "wf", 2);
	submit_key(key, "q-1", "{}", NULL);
	proto_key_direct(key, sizeof(key), h->prefix, "wf", 1);
	submit_key(key, "d-1", "{}", NULL);
	wait_sql(h, "SELECT count(*) FROM tasks WHERE state = 'completed'", 2);
	j = get(h, "/tasks/q-1", 200);
	t = json_object_get(j, "task");
	cr_assert_str_eq(str(t, "capability"), "@wf");
	cr_assert_eq(json_integer_value(json_object_get(t, "priority")), 2);
	json_decref(j);
	j = get(h, "/tasks/d-1", 200);
	t = json_object_get(j, "task");
	cr_assert(json_is_null(json_object_get(t, "capability")));
	cr_assert(json_is_null(json_object_get(t, "priority")));
	cr_assert_str_eq(str(t, "stream"), key);
	cr_assert_str_eq(str(t, "agent"), "wf/1");
	json_decref(j);
	cr_assert_eq(count_of(h, "/tasks?capability=@wf"), 1);
	cr_assert_eq(count_of(h, "/tasks?capability=wf"), 0);
	cr_assert_eq(count_of(h, "/tasks?agent=wf/1"), 2);
	stop_ok(h);
}

Test(api_tasks, bad_arguments)
{
	struct hp *h = start("apib", 1);
	static const char *const bad[] = {
		"/tasks?state=bogus", "/tasks?limit=0", "/tasks?limit=100000",
		"/tasks?limit=x", "/tasks?cursor=garbage", "/tasks?cursor=",
		"/tasks?since=garbage", "/tasks?unknown=1",
		"/tasks?capability=a%3Ab", "/tasks?agent=x/0",
		"/tasks?agent=x/y", "/tasks?agent=a/1/2", "/tasks?agent=",
		"/tasks?state=completed&state=failed",
		"/workflows?state=queued", "/workflows?cursor=1.%2F",
		"/workflows?capability=x", NULL };

	for (const char *const *p = bad; *p != NULL; p++)
		get_err(h, *p, 400, "bad_request");
	/* hived is none the worse. */
	cr_assert_eq(count_of(h, "/tasks?limit=1000"), 0);
	stop_ok(h);
}

/*
 * Pages of 7 walk 250 rows, in groups of 5 that share a created_at, in
 * order and each once; a filter pages the same way.
 */
Test(api_tasks, paging)
{
	struct hp *h = start("apip", 1);
	char path[512], prev[HIVE_ID_MAX + 64] = "";
	json_t *seen = json_object(), *j, *t;
	size_t total = 0, pages = 0, i;
	char *next = NULL;
	const char *n;

	PQclear(sql("INSERT INTO tasks (id, stream, state, attempts, "
	    "created_at) SELECT 'p-' || g, 'x:q:count:1', CASE WHEN g % 2 = 0 "
	    "THEN 'completed' ELSE 'failed' END, 1, timestamptz "
	    "'2026-01-01 00:00:00.123456+00' + (g / 5) * interval '1 ms' "
	    "FROM generate_series(1, 250) g"));
	do {
		if (next == NULL)
			snprintf(path, sizeof(path), "/tasks?limit=7");
		else
			snprintf(path, sizeof(path), "/tasks?limit=7&cursor=%s", next);
		j = get(h, path, 200);
		cr_assert_leq(json_array_size(json_object_get(j, "tasks")), 7);
		json_array_foreach(json_object_get(j, "tasks"), i, t) {
			/* (created_at, id) descending, each row once. */
			char key[HIVE_ID_MAX + 64];
			snprintf(key, sizeof(key), "%s %s", str(t, "created_at"),
			    str(t, "id"));
			cr_assert(prev[0] == '\0' || strcmp(key, prev) < 0,
			    "%s after %s", key, prev);
			snprintf(prev, sizeof(prev), "%s", key);
			cr_assert_null(json_object_get(seen, str(t, "id")));
			json_object_set_new(seen, str(t, "id"), json_true());
			total++;
		}
		free(next);
		n = json_string_value(json_object_get(j, "next"));
		next = n ? strdup(n) : NULL;
		pages++;
		json_decref(j);
	} while (next != NULL && pages < 100);
	cr_assert_eq(total, 250);
	cr_assert_eq(pages, 36);    /* 35 full pages and 5 rows */

	/* A filter with the same cursor: only its rows. */
	total = 0;
	next = NULL;
	do {
		snprintf(path, sizeof(path), "/tasks?state=failed&limit=10%s%s",
		    next ? "&cursor=" : "", next ? next : "");
		j = get(h, path, 200);
		json_array_foreach(json_object_get(j, "tasks"), i, t) {
			cr_assert_str_eq(str(t, "state"), "failed");
			total++;
		}
		free(next);
		n = json_string_value(json_object_get(j, "next"));
		next = n ? strdup(n) : NULL;
		json_decref(j);
	} while (next != NULL);
	cr_assert_eq(total, 125);

	/* Workflows page the same way: 30 of one created_at. */
	PQclear(sql("INSERT INTO workflows (id, state, created_at) SELECT "
	    "'w-' || g, 'completed', timestamptz '2026-01-01' FROM "
	    "generate_series(1, 30) g"));
	total = 0;
	next = NULL;
	do {
		snprintf(path, sizeof(path), "/workflows?limit=4%s%s",
		    next ? "&cursor=" : "", next ? next : "");
		j = get(h, path, 200);
		json_array_foreach(json_object_get(j, "workflows"), i, t) {
			cr_assert_null(json_object_get(seen, str(t, "id")));
			json_object_set_new(seen, str(t, "id"), json_true());
			cr_assert_eq(json_integer_value(json_object_get(
			    json_object_get(t, "tasks"), "total")), 0);
			total++;
		}
		free(next);
		n = json_string_value(json_object_get(j, "next"));
		next = n ? strdup(n) : NULL;
		json_decref(j);
	} while (next != NULL);
	cr_assert_eq(total, 30);
	json_decref(seen);
	stop_ok(h);
}

/* A workflow's graph: a -> b, a -> c, (b, c) -> d; and the lists. */
Test(api_tasks, workflow_graph)
{
	struct hp *h = start("apiw", 1);
	struct hive_workflow w = { 0 };
	struct hive_wf_task ts[4];
	struct hive_str da[1] = { HIVE_STR("a") }, dd[2] = { HIVE_STR("b"),
		HIVE_STR("c") };
	static const char *const ids[] = { "a", "b", "c", "d" };
	struct proto_err err;
	msgpack_sbuffer sb;
	redisContext *c = tu_redis_connect();
	char key[HIVE_KEY_MAX];
	json_t *j, *wf, *tasks, *edges, *t;
	size_t i;

	memset(ts, 0, sizeof(ts));
	for (i = 0; i < 4; i++) {
		ts[i].id = HIVE_STR(ids[i]);
		ts[i].capability = HIVE_STR("work");
		ts[i].prio = 1;
	}
	ts[1].ndeps = ts[2].ndeps = 1;
	ts[1].depends_on = ts[2].depends_on = da;
	ts[3].ndeps = 2;
	ts[3].depends_on = dd;
	w.id = HIVE_STR("wf-1");
	w.name = HIVE_STR("diamond");
	w.ntasks = 4;
	w.tasks = ts;
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), 0);
	proto_key_named(key, sizeof(key), h->prefix, "workflows");
	tu_xadd(c, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	redisFree(c);
	wait_sql(h, "SELECT count(*) FROM workflows WHERE state = 'completed'",
	    1);

	j = get(h, "/workflows/wf-1", 200);
	wf = json_object_get(j, "workflow");
	cr_assert_str_eq(str(wf, "id"), "wf-1");
	cr_assert_str_eq(str(wf, "name"), "diamond");
	cr_assert_str_eq(str(wf, "state"), "completed");
	cr_assert(json_is_string(json_object_get(wf, "finished_at")));
	tasks = json_object_get(wf, "tasks");
	cr_assert_eq(json_array_size(tasks), 4);
	json_array_foreach(tasks, i, t) {
		json_t *deps = json_object_get(t, "depends_on");
		cr_assert_str_eq(str(t, "id"), ids[i]);
		cr_assert_str_eq(str(t, "state"), "completed");
		cr_assert_str_eq(str(t, "capability"), "work");
		cr_assert_str_eq(str(t, "agent"), "wf/1");
		cr_assert_eq(json_array_size(deps), i == 0 ? 0 : i == 3 ? 2 : 1);
		if (i == 3) {
			cr_assert_str_eq(json_string_value(json_array_get(deps, 0)),
			    "b");
			cr_assert_str_eq(json_string_value(json_array_get(deps, 1)),
			    "c");
		}
	}
	edges = json_object_get(wf, "edges");
	cr_assert_eq(json_array_size(edges), 4);
	cr_assert_str_eq(str(json_array_get(edges, 0), "task"), "b");
	cr_assert_str_eq(str(json_array_get(edges, 0), "depends_on"), "a");
	cr_assert_str_eq(str(json_array_get(edges, 3), "task"), "d");
	cr_assert_str_eq(str(json_array_get(edges, 3), "depends_on"), "c");
	json_decref(j);

	j = get(h, "/workflows", 200);
	cr_assert_eq(json_array_size(json_object_get(j, "workflows")), 1);
	wf = json_array_get(json_object_get(j, "workflows"), 0);
	cr_assert_str_eq(str(wf, "id"), "wf-1");
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(wf,
	    "tasks"), "total")), 4);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(wf,
	    "tasks"), "completed")), 4);
	json_decref(j);
	j = get(h, "/workflows?state=running", 200);
	cr_assert_eq(json_array_size(json_object_get(j, "workflows")), 0);
	json_decref(j);
	cr_assert_eq(count_of(h, "/tasks?workflow=wf-1"), 4);
	cr_assert_eq(count_of(h, "/tasks?workflow=wf-1&capability=work"), 4);
	j = get(h, "/tasks/d", 200);
	cr_assert_str_eq(str(json_object_get(j, "task"), "workflow"), "wf-1");
	json_decref(j);
	stop_ok(h);
}

/* Without [hive] postgres, and with a PostgreSQL that is down. */
Test(api_tasks, no_record)
{
	struct hp *h = start("apin", 0);

	get_err(h, "/tasks", 503, "no_record");
	get_err(h, "/tasks/x", 503, "no_record");
	get_err(h, "/workflows", 503, "no_record");
	get_err(h, "/workflows/x", 503, "no_record");
	/* Arguments are checked first. */
	get_err(h, "/tasks?state=bogus", 400, "bad_request");
	stop_ok(h);
}

Test(api_tasks, record_down)
{
	struct hp *h = hp_new("apid");
	char extra[256];
	long long t0;

	/* Nothing listens there: the connection is refused at once. */
	snprintf(extra, sizeof(extra), "postgres = host=127.0.0.1 port=1 "
	    "user=hive dbname=none connect_timeout=2\n");
	hp_write_conf(h, tu_build_path("worker/hive-worker"), extra, "");
	hp_start(h);
	t0 = tu_now_ms();
	get_err(h, "/tasks", 503, "no_record");
	get_err(h, "/tasks/x", 503, "no_record");
	cr_assert_lt(tu_now_ms() - t0, 10000);
}

/* A reload that changes [hive] postgres: the API reads the new database. */
Test(api_tasks, reload_follows_postgres)
{
	struct hp *h = start("apir", 1);
	char ci2[512], db2[64], extra[1024], agents[1024];
	size_t from = hp_mark(h);
	json_t *j;
	long long end;

	PQclear(sql("INSERT INTO tasks (id, stream, state) VALUES ('in-a', "
	    "'s', 'queued')"));
	j = get(h, "/tasks", 200);
	cr_assert_str_eq(str(json_array_get(json_object_get(j, "tasks"), 0),
	    "id"), "in-a");
	json_decref(j);

	tu_pg_fresh_db("apir2", db2, sizeof(db2), ci2, sizeof(ci2));
	snprintf(extra, sizeof(extra), "postgres = %s\n", ci2);
	snprintf(agents, sizeof(agents),
	    "[agent \"counter\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n"
	    "capabilities = count\n"
	    "[agent \"wf\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/wf_handler.py\n"
	    "capabilities = work\n", getenv("HIVE_SOURCE_DIR"),
	    getenv("HIVE_SOURCE_DIR"));
	hp_write_conf(h, tu_build_path("worker/hive-worker"), extra, agents);
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_LONG, "postgres: schema version", NULL);
	PQclear(sql_at(ci2, "INSERT INTO tasks (id, stream, state) VALUES "
	    "('in-b', 's', 'queued')"));
	/* The next request opens the new connection; the one in flight
	 * when it changed may be refused (503), never answered from A. */
	end = tu_now_ms() + T_LONG;
	for (;;) {
		int code = 0;
		j = hp_http(h, "GET", "/tasks", NULL, &code);
		cr_assert(code == 200 || code == 503, "GET /tasks: %d", code);
		if (code == 200)
			break;
		json_decref(j);
		cr_assert_lt(tu_now_ms(), end);
		hp_pump(h, 50);
	}
	cr_assert_eq(json_array_size(json_object_get(j, "tasks")), 1);
	cr_assert_str_eq(str(json_array_get(json_object_get(j, "tasks"), 0),
	    "id"), "in-b");
	json_decref(j);
	hp_wait(h, &from, T_LONG, "api: the record: connecting with the new "
	    "settings", NULL);
	stop_ok(h);
}

/* A request on a socket of its own, not read yet. */
static int
send_get(struct hp *h, const char *path)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)h->port) };
	char req[256];
	int fd = socket(AF_INET, SOCK_STREAM, 0), n;

	cr_assert(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n\r\n", path);
	cr_assert_eq(write(fd, req, (size_t)n), n);
	return fd;
}

/* The status line's code of the answer on fd (closed), reading hived's
 * log meanwhile; fails after T_LONG. */
static int
read_status(struct hp *h, int fd, char *body, size_t blen)
{
	char buf[4096];
	size_t len = 0;
	long long end = tu_now_ms() + T_LONG;
	int code = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		cr_assert_lt(tu_now_ms(), end, "no answer");
		if (poll(&p, 1, 50) == 0) {
			hp_pump(h, 0);
			continue;
		}
		r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(fd);
	cr_assert_eq(sscanf(buf, "HTTP/1.1 %d", &code), 1, "%s", buf);
	snprintf(body, blen, "%s", strstr(buf, "\r\n\r\n") ?
	    strstr(buf, "\r\n\r\n") + 4 : "");
	return code;
}

/* The index of the first of fds to be readable (reading hived's log
 * meanwhile); fails after T_LONG. */
static int
first_answer(struct hp *h, const int *fds, int n)
{
	struct pollfd p[8];
	long long end = tu_now_ms() + T_LONG;

	cr_assert_leq(n, 8);
	for (int i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	for (;;) {
		cr_assert_lt(tu_now_ms(), end, "no answer");
		if (poll(p, (nfds_t)n, 50) > 0)
			for (int i = 0; i < n; i++)
				if (p[i].revents != 0)
					return i;
		hp_pump(h, 0);
	}
}

/*
 * PostgreSQL does not answer (the tasks table locked): a query stops at
 * the session's statement_timeout (503 unavailable), at most 8 wait at
 * once (the next is refused at once), and every request is answered.
 */
Test(api_tasks, record_busy)
{
	struct hp *h = start("apiq", 1);
	PGconn *lock = PQconnectdb(ci);
	size_t from = hp_mark(h);
	char body[4096];
	int fds[8], code, first;
	long long t0;

	cr_assert_eq(PQstatus(lock), CONNECTION_OK);
	PQclear(PQexec(lock, "BEGIN"));
	PQclear(PQexec(lock, "LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"));
	t0 = tu_now_ms();
	for (int i = 0; i < 8; i++)
		fds[i] = send_get(h, "/tasks?limit=1");
	hp_wait(h, &from, T_LONG, "api: record query queued", "inflight=8",
	    NULL);
	get_err(h, "/tasks", 503, "unavailable");
	/* The first answer is the query PostgreSQL ran, at its timeout. */
	first = first_answer(h, fds, 8);
	cr_assert_eq(read_status(h, fds[first], body, sizeof(body)), 503);
	cr_assert(strstr(body, "\"unavailable\"") && strstr(body, "5000 ms"),
	    "%s", body);
	cr_assert_geq(tu_now_ms() - t0, 4900);
	PQclear(PQexec(lock, "ROLLBACK"));
	PQfinish(lock);
	for (int i = 0; i < 8; i++) {
		if (i == first)
			continue;
		code = read_status(h, fds[i], body, sizeof(body));
		cr_assert(code == 200 || (code == 503 &&
		    strstr(body, "\"unavailable\"")), "%d %s", code, body);
	}
	cr_assert_eq(count_of(h, "/tasks"), 0);
	stop_ok(h);
}
