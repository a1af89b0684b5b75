/*
 * test_rec_usage.c - the recorder writes a task's trace id and usage
 * (migration 7's columns) from its queue entry and result, whichever
 * comes first and however they are batched (one row INSERTed, or the
 * queue entry written first and the result upserted through the stage),
 * and counts the usage per capability and agent (tstats.c, hived's
 * /metrics).  Real Redis, real PostgreSQL.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"
#include "log.h"
#include "record.h"
#include "testutil.h"

#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP(span) "00-" TRACE "-" span "-01"

struct env {
	struct ev_loop *loop;
	char conninfo[512];
	char dbname[64];
	char prefix[64];
	char redis[128];
	struct sup_pg *pg;
	struct sup_recorder *rec;
	struct sup_tstats *ts;
	redisContext *rc;
	PGconn *check;
};

static void
on_migrated(int ok, int version, void *arg)
{
	*(int *)arg = ok ? 1 : -1;
}

static void
env_init(struct env *e, unsigned hold_ms)
{
	int migrated = 0;
	char qkey[HIVE_KEY_MAX];

	memset(e, 0, sizeof(*e));
	log_init("test", 0);
	e->loop = ev_loop_new(0);
	tu_pg_fresh_db("ru", e->dbname, sizeof(e->dbname), e->conninfo,
	    sizeof(e->conninfo));
	tu_unique(e->prefix, sizeof(e->prefix), "ru");
	snprintf(e->redis, sizeof(e->redis), "%s:%s",
	    getenv("HIVE_TEST_REDIS_HOST"), getenv("HIVE_TEST_REDIS_PORT"));
	e->pg = sup_pg_new(e->loop, e->conninfo, NULL, NULL);
	cr_assert_eq(sup_migrate(e->pg, on_migrated, &migrated), 0);
	while (migrated == 0)
		ev_run(e->loop, EVRUN_ONCE);
	cr_assert_eq(migrated, 1);
	cr_assert_not_null(e->ts = sup_tstats_new());
	struct sup_recorder_opts o = { .redis = e->redis, .prefix = e->prefix,
	    .host = "test-host", .snapshots_keep = 3, .batch = 64,
	    .hold_ms = hold_ms, .stats = e->ts };
	cr_assert_not_null(e->rec = sup_recorder_new(e->loop, e->pg, &o));
	snprintf(qkey, sizeof(qkey), "%s:q:echo:1", e->prefix);
	sup_recorder_add_queue(e->rec, qkey);
	e->rc = tu_redis_connect();
	e->check = PQconnectdb(e->conninfo);
	cr_assert_eq(PQstatus(e->check), CONNECTION_OK);
}

static void
env_fini(struct env *e)
{
	sup_recorder_free(e->rec);
	sup_tstats_free(e->ts);
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

/* Run the loop until the recorder has counted n entries (tstats.c). */
static void
run_until_counted(struct env *e, uint64_t n)
{
	long long deadline = tu_now_ms() + 30000;
	ev_timer t;

	ev_timer_init(&t, check_cb, 0.05, 0.05);
	ev_timer_start(e->loop, &t);
	while (e->ts->counted < n && tu_now_ms() < deadline)
		ev_run(e->loop, EVRUN_ONCE);
	ev_timer_stop(e->loop, &t);
	cr_assert_eq(e->ts->counted, n, "entries counted");
}

static void
xadd(struct env *e, const char *name, const msgpack_sbuffer *sb)
{
	char key[HIVE_KEY_MAX];

	snprintf(key, sizeof(key), "%s:%s", e->prefix, name);
	tu_xadd(e->rc, key, sb->data, sb->size);
}

static void
submit(struct env *e, const char *id, const char *tp)
{
	msgpack_sbuffer sb;
	struct hive_task t = { 0 };
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	t.id = HIVE_STR(id);
	t.attempt = 1;
	if (tp != NULL)
		t.traceparent = HIVE_STR(tp);
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	xadd(e, "q:echo:1", &sb);
	msgpack_sbuffer_destroy(&sb);
}

/* A result with usage u (has 0: none) and traceparent tp (or none). */
static void
complete(struct env *e, const char *id, enum hive_status status,
    const struct hive_usage *u, const char *tp)
{
	msgpack_sbuffer sb;
	struct hive_result r = { 0 };
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	r.id = HIVE_STR(id);
	r.agent = HIVE_STR("echo/1");
	r.host = HIVE_STR("test-host");
	r.status = status;
	if (status == HIVE_STATUS_ERROR)
		r.error = HIVE_STR("no");
	r.attempt = 1;
	r.started_ms = r.finished_ms = proto_now_ms();
	if (u != NULL)
		r.usage = *u;
	if (tp != NULL)
		r.traceparent = HIVE_STR(tp);
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0, "%s", err.detail);
	xadd(e, "results", &sb);
	msgpack_sbuffer_destroy(&sb);
}

static const struct sup_tstats_pair *
pair(const struct sup_tstats *ts, const char *cap, const char *agent)
{
	for (unsigned i = 0; i < ts->npairs; i++)
		if (strcmp(ts->caps[ts->pairs[i].cap].name, cap) == 0 &&
		    strcmp(ts->pairs[i].agent, agent) == 0)
			return &ts->pairs[i];
	cr_assert_fail("no counts for %s/%s", cap, agent);
	return NULL;
}

static void
usage_case(unsigned hold_ms)
{
	struct env e;
	struct hive_usage u = { .has = HIVE_USAGE_INPUT | HIVE_USAGE_OUTPUT |
	    HIVE_USAGE_COST | HIVE_USAGE_MODEL, .input_tokens = 1000,
	    .output_tokens = 20, .cost = 0.25, .model = HIVE_STR("m-1") };
	struct hive_usage u2 = { .has = HIVE_USAGE_OUTPUT, .output_tokens = 5 };
	const struct sup_tstats_pair *p;

	env_init(&e, hold_ms);
	/* one batch, or the queue entry first and the result staged */
	submit(&e, "both", TP("00f067aa0ba902b7"));
	if (hold_ms == 0)
		run_until_sql(&e, "SELECT count(*) FROM tasks WHERE id = 'both' "
		    "AND trace_id = '" TRACE "'", 1);
	complete(&e, "both", HIVE_STATUS_OK, &u, TP("00f067aa0ba902b7"));
	/* a result alone: its trace id; a failed one keeps its usage */
	complete(&e, "alone", HIVE_STATUS_ERROR, &u2, TP("1111111111111111"));
	/* no trace, no usage: NULLs */
	submit(&e, "plain", NULL);
	complete(&e, "plain", HIVE_STATUS_OK, NULL, NULL);
	run_until_sql(&e, "SELECT count(*) FROM tasks WHERE state IN "
	    "('completed', 'failed')", 3);
	/* the counts follow the COMMIT: wait for the five entries */
	run_until_counted(&e, 5);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM tasks WHERE id = 'both' "
	    "AND trace_id = '" TRACE "' AND input_tokens = 1000 AND "
	    "output_tokens = 20 AND cost = 0.25 AND model = 'm-1'"), 1);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM tasks WHERE id = "
	    "'alone' AND state = 'failed' AND trace_id = '" TRACE "' AND "
	    "input_tokens IS NULL AND output_tokens = 5 AND cost IS NULL AND "
	    "model IS NULL"), 1);
	cr_assert_eq(scalar(&e, "SELECT count(*) FROM tasks WHERE id = "
	    "'plain' AND trace_id IS NULL AND input_tokens IS NULL AND "
	    "output_tokens IS NULL AND cost IS NULL AND model IS NULL"), 1);
	p = pair(e.ts, "echo", "echo");
	cr_assert_eq(p->usage_n, 1);
	cr_assert_eq(p->input_tokens, 1000);
	cr_assert_eq(p->output_tokens, 20);
	cr_assert_eq(p->cost, 0.25);
	p = pair(e.ts, "", "echo");     /* "alone" had no queue entry */
	cr_assert_eq(p->usage_n, 1);
	cr_assert_eq(p->output_tokens, 5);
	env_fini(&e);
}

Test(rec_usage, recorded_from_one_batch) { usage_case(1000); }
Test(rec_usage, recorded_through_the_stage) { usage_case(0); }
