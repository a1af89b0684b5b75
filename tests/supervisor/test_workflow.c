/*
 * test_workflow.c - workflows end to end: a client submits tasks with
 * depends_on to <p>:workflows; hived's coordinator runs each once all it
 * depends on completed, with their results as "parents"; a failed task's
 * dependents never run; a bad workflow goes to the dead letters; a
 * workflow submitted twice runs once; hived killed in the middle of one
 * finishes it after a restart.
 *
 * Real hived, hive-worker (handler tests/supervisor/wf_handler.py), Redis
 * and PostgreSQL; each test has its own database and key prefix.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
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

TestSuite(workflow, .fini = hp_cleanup, .timeout = 120);

/* One task of a test workflow: payload as JSON text, up to 4 deps. */
struct wt {
	const char *id;
	const char *payload;
	const char *deps[4];
};

static char ci[512];

static char *
sql_text(const char *sql)
{
	PGconn *c = PQconnectdb(ci);
	PGresult *res;
	char *v = NULL;

	if (PQstatus(c) == CONNECTION_OK) {
		res = PQexec(c, sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		    !PQgetisnull(res, 0, 0))
			v = strdup(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	PQfinish(c);
	return v;
}

/* Poll sql until its one value is want (reading hived's log meanwhile). */
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

static void
expect_sql(const char *sql, const char *want)
{
	char *got = sql_text(sql);

	cr_assert(got != NULL && strcmp(got, want) == 0, "%s: %s, want %s", sql,
	    got ? got : "(null)", want);
	free(got);
}

static void
submit_at(struct hp *h, const char *wid, const struct wt *ts, size_t n,
    uint64_t created_ms)
{
	struct hive_workflow w = { 0 };
	struct hive_wf_task tasks[16];
	struct hive_str deps[16][4];
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	redisContext *c = tu_redis_connect();
	char key[HIVE_KEY_MAX], eb[PROTO_ERRBUF];

	cr_assert(n <= 16);
	msgpack_zone_init(&z, 1024);
	memset(tasks, 0, sizeof(tasks));
	for (size_t i = 0; i < n; i++) {
		tasks[i].id = HIVE_STR(ts[i].id);
		tasks[i].capability = HIVE_STR("work");
		tasks[i].prio = HIVE_PRIO_DEFAULT;
		if (ts[i].payload != NULL) {
			json_t *j = json_loads(ts[i].payload, JSON_DECODE_ANY, NULL);
			cr_assert(j != NULL);
			cr_assert_eq(proto_json_to_obj(j, &z, &tasks[i].payload,
			    &err), 0);
			json_decref(j);
		}
		for (size_t k = 0; k < 4 && ts[i].deps[k] != NULL; k++) {
			deps[i][k] = HIVE_STR(ts[i].deps[k]);
			tasks[i].ndeps = (uint32_t)k + 1;
		}
		tasks[i].depends_on = deps[i];
	}
	w.id = HIVE_STR(wid);
	w.created_ms = created_ms;
	w.ntasks = (uint32_t)n;
	w.tasks = tasks;
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), 0, "%s",
	    proto_strerror(&err, eb, sizeof(eb)));
	proto_key_named(key, sizeof(key), h->prefix, "workflows");
	tu_xadd(c, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	redisFree(c);
}

static void
submit(struct hp *h, const char *wid, const struct wt *ts, size_t n)
{
	submit_at(h, wid, ts, n, 0);
}

/* XADD raw bytes to <p>:workflows. */
static void
submit_raw(struct hp *h, const char *bytes, size_t len)
{
	redisContext *c = tu_redis_connect();
	char key[HIVE_KEY_MAX];

	proto_key_named(key, sizeof(key), h->prefix, "workflows");
	tu_xadd(c, key, bytes, len);
	redisFree(c);
}

/* Entries of <p>:<name> whose message contains needle. */
static int
count_entries(struct hp *h, const char *name, const char *needle)
{
	redisContext *c = tu_redis_connect();
	redisReply *r;
	char key[HIVE_KEY_MAX];
	int n = 0;

	proto_key_named(key, sizeof(key), h->prefix, name);
	r = redisCommand(c, "XRANGE %s - +", key);
	cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY);
	for (size_t i = 0; i < r->elements; i++) {
		redisReply *f = r->element[i]->element[1];
		if (f->type == REDIS_REPLY_ARRAY && f->elements == 2 &&
		    memmem(f->element[1]->str, f->element[1]->len, needle,
		    strlen(needle)) != NULL)
			n++;
	}
	freeReplyObject(r);
	redisFree(c);
	return n;
}

static void
start(struct hp *h, const char *host)
{
	char extra[1024], agents[1024];

	snprintf(extra, sizeof(extra), "postgres = %s\nhost = %s\n", ci, host);
	snprintf(agents, sizeof(agents),
	    "[agent \"wf\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/wf_handler.py\n"
	    "capabilities = work\n"
	    "instances = 2\n", getenv("HIVE_SOURCE_DIR"));
	hp_write_conf(h, tu_build_path("worker/hive-worker"), extra, agents);
	hp_start(h);
}

static struct hp *
setup(const char *tag)
{
	struct hp *h = hp_new(tag);
	char db[64];
	size_t from = 0;

	tu_pg_fresh_db(tag, db, sizeof(db), ci, sizeof(ci));
	start(h, "wf-host");
	hp_wait(h, &from, T_LONG, "postgres: schema version", NULL);
	return h;
}

/*
 *      a
 *     / \
 *    b   c      d runs last, with b's and c's results, which carry a's
 *     \ /
 *      d
 */
Test(workflow, diamond_runs_in_order_with_parents)
{
	struct hp *h = setup("wfdia");
	static const struct wt ts[] = {
		{ "d", NULL, { "b", "c" } },
		{ "b", "{\"n\": 1}", { "a" } },
		{ "a", NULL, { NULL } },
		{ "c", NULL, { "a" } },
	};

	submit(h, "wf-1", ts, 4);
	wait_sql(h, "SELECT state FROM workflows WHERE id = 'wf-1'", "completed");
	expect_sql("SELECT count(*) FROM tasks WHERE workflow = 'wf-1' AND "
	    "state = 'completed' AND attempts = 1", "4");
	/* What d got: b's and c's results, each with a's. */
	expect_sql("SELECT result->'parents'->'b'->'parents'->'a'->>'id' FROM "
	    "tasks WHERE id = 'd'", "a");
	expect_sql("SELECT result->'parents'->'c'->>'id' FROM tasks WHERE "
	    "id = 'd'", "c");
	expect_sql("SELECT result->'parents' FROM tasks WHERE id = 'a'", "{}");
	/* Each started after all it depends on had finished. */
	expect_sql("SELECT count(*) FROM workflow_edges e JOIN tasks t ON "
	    "t.id = e.task_id JOIN tasks p ON p.id = e.depends_on WHERE "
	    "t.queued_at < p.finished_at", "0");
	expect_sql("SELECT count(*) FROM workflow_edges WHERE workflow_id = "
	    "'wf-1'", "4");
	/* The end is an event, recorded too. */
	wait_sql(h, "SELECT count(*) FROM events WHERE kind = "
	    "'workflow.completed'", "1");
	cr_assert_eq(count_entries(h, "events", "workflow.completed"), 1);
	cr_assert_eq(count_entries(h, "workflows", ""), 0,
	    "the submission is deleted once recorded");
}

Test(workflow, failed_task_stops_its_dependents)
{
	struct hp *h = setup("wffail");
	static const struct wt ts[] = {
		{ "a", "{\"fail\": true}", { NULL } },
		{ "b", NULL, { "a" } },
		{ "c", NULL, { "b" } },
		{ "x", NULL, { NULL } },
		{ "y", NULL, { "x", "c" } },
	};

	submit(h, "wf-2", ts, 5);
	wait_sql(h, "SELECT state FROM workflows WHERE id = 'wf-2'", "failed");
	expect_sql("SELECT string_agg(id || '=' || state, ',' ORDER BY id) FROM "
	    "tasks WHERE workflow = 'wf-2'",
	    "a=failed,b=dead,c=dead,x=completed,y=dead");
	expect_sql("SELECT error FROM tasks WHERE id = 'b'", "dependency a failed");
	expect_sql("SELECT error FROM tasks WHERE id = 'c'", "dependency b failed");
	expect_sql("SELECT count(*) FROM tasks WHERE workflow = 'wf-2' AND "
	    "started_at IS NOT NULL", "2");
	/* Whoever waits for them hears of it: dead letters, error results. */
	cr_assert_eq(count_entries(h, "dead", "dependency a failed"), 1);
	cr_assert_eq(count_entries(h, "dead", "dependency b failed"), 1);
	cr_assert_eq(count_entries(h, "results", "dependency c failed"), 1);
	wait_sql(h, "SELECT count(*) FROM events WHERE kind = 'workflow.failed'",
	    "1");
}

static void
pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* {"v":1,"id":id,"tasks":[{"id":"p",..,"depends_on":["q"]},{"id":"q",..
 * "depends_on":["p"]}]}: packed by hand, as a client could. */
static void
submit_cycle(struct hp *h, const char *id)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	static const char *const pq[2][2] = { { "p", "q" }, { "q", "p" } };

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	pack_str(&pk, "v");
	msgpack_pack_uint32(&pk, 1);
	pack_str(&pk, "id");
	pack_str(&pk, id);
	pack_str(&pk, "tasks");
	msgpack_pack_array(&pk, 2);
	for (int i = 0; i < 2; i++) {
		msgpack_pack_map(&pk, 3);
		pack_str(&pk, "id");
		pack_str(&pk, pq[i][0]);
		pack_str(&pk, "capability");
		pack_str(&pk, "work");
		pack_str(&pk, "depends_on");
		msgpack_pack_array(&pk, 1);
		pack_str(&pk, pq[i][1]);
	}
	submit_raw(h, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

Test(workflow, bad_workflow_is_dead_lettered_and_twice_runs_once)
{
	struct hp *h = setup("wfbad");
	static const struct wt one[] = { { "solo", NULL, { NULL } } };
	static const struct wt clash[] = {
		{ "other", NULL, { NULL } },
		{ "solo", NULL, { NULL } },
	};
	long long end;

	submit_cycle(h, "wf-cycle");
	submit_raw(h, "\x81\xa1v\x01", 4);            /* {"v": 1}: no id */
	submit(h, "wf-one", one, 1);
	submit(h, "wf-one", one, 1);                  /* again: a no-op */
	submit(h, "wf-clash", clash, 2);              /* solo exists already */
	submit_at(h, "wf-late", clash, 1, UINT64_MAX); /* no such time */
	wait_sql(h, "SELECT state FROM workflows WHERE id = 'wf-one'",
	    "completed");
	end = tu_now_ms() + T_LONG;
	/* One host handles submissions in order: the last one's dead
	 * letter comes last. */
	while (count_entries(h, "dead", "past the year") == 0 &&
	    tu_now_ms() < end)
		hp_pump(h, 50);
	cr_assert_eq(count_entries(h, "dead", "workflow: field 'id'"), 1,
	    "the workflow without id is a dead letter");
	cr_assert_eq(count_entries(h, "dead", "cycle"), 1,
	    "the workflow with a cycle is a dead letter");
	cr_assert_eq(count_entries(h, "dead", "workflow wf-clash: task solo "
	    "exists already"), 1);
	cr_assert_eq(count_entries(h, "dead", "workflow wf-late: created_ms "
	    "18446744073709551615 is past the year 9999"), 1);
	/* A refused workflow's letter names it in "workflow" (the id that
	 * could be read, also of one that does not decode), with a code. */
	cr_assert_eq(count_entries(h, "dead", "\xa8" "workflow\xa8" "wf-clash"),
	    1);
	cr_assert_eq(count_entries(h, "dead", "\xa4" "code\xa7" "refused"), 1);
	cr_assert_eq(count_entries(h, "dead", "\xa8" "workflow\xa8" "wf-cycle"),
	    1);
	cr_assert_eq(count_entries(h, "dead", "\xa4" "code\xa5" "value"), 1,
	    "the cycle");
	cr_assert_eq(count_entries(h, "dead", "\xa4" "code\xa7" "missing"), 1,
	    "the workflow without id");
	expect_sql("SELECT count(*) FROM workflows", "1");
	expect_sql("SELECT count(*) FROM tasks WHERE id = 'other'", "0");
	/* solo ran once: one result. */
	cr_assert_eq(count_entries(h, "results", "solo"), 1);
	cr_assert_eq(count_entries(h, "workflows", ""), 0);
}

/* hived SIGKILLed while a chain runs; the next one finishes it. */
Test(workflow, chain_survives_hived_kill)
{
	struct hp *h = setup("wfkill");
	static const struct wt ts[] = {
		{ "k1", NULL, { NULL } },
		{ "k2", "{\"sleep_ms\": 500}", { "k1" } },
		{ "k3", "{\"sleep_ms\": 200}", { "k2" } },
		{ "k4", NULL, { "k3" } },
	};
	size_t from;

	submit(h, "wf-kill", ts, 4);
	/* k2 is given out once k1's end is recorded: kill hived then. */
	wait_sql(h, "SELECT state FROM tasks WHERE id = 'k1'", "completed");
	hp_signal(h, SIGKILL);
	hp_wait_exit(h, T_LONG);
	start(h, "wf-host");
	from = 0;
	hp_wait(h, &from, T_LONG, "postgres: schema version", NULL);
	wait_sql(h, "SELECT state FROM workflows WHERE id = 'wf-kill'",
	    "completed");
	expect_sql("SELECT result->'parents'->'k3'->>'id' FROM tasks WHERE "
	    "id = 'k4'", "k3");
	expect_sql("SELECT count(*) FROM tasks WHERE workflow = 'wf-kill' AND "
	    "state = 'completed'", "4");
}

/* Two hosts on one Redis and one PostgreSQL, both coordinating: every
 * task of every workflow runs once, after what it depends on. */
Test(workflow, two_hosts_release_each_task_once)
{
	struct hp *a = hp_new("wfha"), *b = hp_new("wfhb");
	char db[64], wid[32], ids[4][32];
	size_t fa = 0, fb = 0;
	enum { NWF = 12 };

	tu_pg_fresh_db("wfhosts", db, sizeof(db), ci, sizeof(ci));
	memcpy(b->prefix, a->prefix, sizeof(b->prefix));
	start(a, "host-a");
	start(b, "host-b");
	hp_wait(a, &fa, T_LONG, "postgres: schema version", NULL);
	hp_wait(b, &fb, T_LONG, "postgres: schema version", NULL);
	for (int w = 0; w < NWF; w++) {
		struct wt ts[4];
		for (int i = 0; i < 4; i++)
			snprintf(ids[i], sizeof(ids[i]), "h%d-%c", w, 'a' + i);
		ts[0] = (struct wt){ ids[0], NULL, { NULL } };
		ts[1] = (struct wt){ ids[1], NULL, { ids[0] } };
		ts[2] = (struct wt){ ids[2], NULL, { ids[0] } };
		ts[3] = (struct wt){ ids[3], NULL, { ids[1], ids[2] } };
		snprintf(wid, sizeof(wid), "wfh-%d", w);
		submit(w % 2 ? b : a, wid, ts, 4);
	}
	wait_sql(b, "SELECT count(*) FROM workflows WHERE state = 'completed'",
	    "12");
	expect_sql("SELECT count(*) FROM tasks WHERE state = 'completed' AND "
	    "attempts = 1", "48");
	expect_sql("SELECT count(DISTINCT host) FROM workflows", "2");
	/* Once each: one result per task in the stream. */
	{
		redisContext *c = tu_redis_connect();
		char key[HIVE_KEY_MAX];
		redisReply *r;
		proto_key_named(key, sizeof(key), a->prefix, "results");
		r = redisCommand(c, "XLEN %s", key);
		cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER);
		cr_assert_eq(r->integer, 48, "results: %lld, want 48", r->integer);
		freeReplyObject(r);
		redisFree(c);
	}
	expect_sql("SELECT count(*) FROM workflow_edges e JOIN tasks t ON "
	    "t.id = e.task_id JOIN tasks p ON p.id = e.depends_on WHERE "
	    "t.queued_at < p.finished_at", "0");
	wait_sql(b, "SELECT count(*) FROM events WHERE kind = "
	    "'workflow.completed' AND workflow LIKE 'wfh-%'", "12");
}
