/*
 * test_record.c - hived with PostgreSQL, end to end: every task's states
 * recorded in order, memory snapshots that a restarted hived starts its
 * workers with, tasks Redis lost put back from PostgreSQL, an outage of
 * PostgreSQL that loses nothing, two hosts where one dies with its workers.
 *
 * Real hived, hive-worker, Redis and PostgreSQL.  Each test has its own
 * database and key prefix.  Waits are for events (log lines, results in
 * Redis, rows in PostgreSQL polled with a deadline as a failure guard).
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

TestSuite(record, .fini = hp_cleanup, .timeout = 120);

static const char *
real(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s", tu_build_path("worker/hive-worker"));
	return path;
}

static long
scalar(const char *ci, const char *sql)
{
	PGconn *c = PQconnectdb(ci);
	PGresult *res;
	long v = -1;

	if (PQstatus(c) == CONNECTION_OK) {
		res = PQexec(c, sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
			v = atol(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	PQfinish(c);
	return v;
}

/* Poll sql until it returns want (every 50 ms, reading hived's log). */
static void
wait_sql(struct hp *h, const char *ci, const char *sql, long want)
{
	long long end = tu_now_ms() + T_LONG;
	long got = -1;

	while (tu_now_ms() < end) {
		if ((got = scalar(ci, sql)) == want)
			return;
		if (h != NULL)
			hp_pump(h, 50);
		else
			usleep(50000);
	}
	if (h != NULL && h->log != NULL)
		fprintf(stderr, "hived's log, the end:\n%s\n",
		    h->len > 6000 ? h->log + h->len - 6000 : h->log);
	cr_assert_fail("%s: %ld, want %ld", sql, got, want);
}

static void
agent_conf(char *buf, size_t len, const char *name, const char *extra)
{
	snprintf(buf, len,
	    "[agent \"%s\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n"
	    "capabilities = work\n"
	    "%s\n", name, getenv("HIVE_SOURCE_DIR"), extra ? extra : "");
}

static void
submit(redisContext *c, const char *key, const char *id, const char *payload)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_loads(payload, 0, NULL);

	msgpack_zone_init(&z, 1024);
	msgpack_sbuffer_init(&sb);
	memset(&t, 0, sizeof(t));
	t.id = HIVE_STR(id);
	t.attempt = 1;
	cr_assert_eq(proto_json_to_obj(j, &z, &t.payload, &err), 0);
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	tu_xadd(c, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(j);
}

static void
stop_ok(struct hp *h)
{
	int st;

	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}

static void
start_hived(struct hp *h, const char *ci, const char *host, const char *agents)
{
	char extra[1024];

	snprintf(extra, sizeof(extra), "postgres = %s\nhost = %s\n", ci, host);
	hp_write_conf(h, real(), extra, agents);
	hp_start(h);
}

Test(record, states_memory_agents_events)
{
	struct hp *h = hp_new("rec");
	char ci[512], db[64], agents[1024], key[HIVE_KEY_MAX], id[32], sql[256];
	redisContext *c = tu_redis_connect();
	size_t from = 0;

	tu_pg_fresh_db("e2e", db, sizeof(db), ci, sizeof(ci));
	agent_conf(agents, sizeof(agents), "counter", NULL);
	start_hived(h, ci, "host-a", agents);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "state=ready", NULL);
	proto_key_queue(key, sizeof(key), h->prefix, "work", 1);
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "t-%d", i);
		submit(c, key, id, "{}");
	}
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE state = 'completed'", 5);
	wait_sql(h, ci, "SELECT count(*) FROM task_states WHERE state = 'queued'", 5);
	/* queued -> running -> completed, in that order, once each. */
	if (scalar(ci, "SELECT count(*) FROM (SELECT task_id, "
	    "string_agg(state, ',' ORDER BY at, hive_state_rank(state)) s FROM "
	    "task_states GROUP BY task_id) x WHERE s = 'queued,running,completed'")
	    != 5) {
		PGconn *pc = PQconnectdb(ci);
		PGresult *res = PQexec(pc, "SELECT task_id, state, "
		    "to_char(at, 'HH24:MI:SS.US'), attempt FROM task_states ORDER BY task_id, at");
		for (int i = 0; i < PQntuples(res); i++)
			fprintf(stderr, "%s %s %s %s\n", PQgetvalue(res, i, 0),
			    PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
			    PQgetvalue(res, i, 3));
		PQclear(res);
		PQfinish(pc);
		cr_assert_fail("states out of order (above)");
	}
	wait_sql(h, ci, "SELECT max(version) FROM memory_snapshots WHERE "
	    "agent = 'counter/1' AND (memory->>'count')::int = 5", 5);
	wait_sql(h, ci, "SELECT count(*) FROM agents WHERE host = 'host-a' AND "
	    "name = 'counter' AND instance = 1 AND state IN ('ready', 'busy') "
	    "AND pid IS NOT NULL AND tasks_done = 5", 1);
	snprintf(sql, sizeof(sql), "SELECT count(*) >= 1 FROM events WHERE "
	    "kind = 'agent.ready' AND agent = 'counter/1' AND host = 'host-a'");
	wait_sql(h, ci, "SELECT count(*) FROM events WHERE kind = 'agent.ready' "
	    "AND agent = 'counter/1' AND host = 'host-a'", 1);
	stop_ok(h);
	redisFree(c);
}

/* A restarted hived starts its workers with the snapshot from PostgreSQL,
 * also when Redis no longer has the memory. */
Test(record, restart_gets_snapshot)
{
	struct hp *h = hp_new("snap");
	char ci[512], db[64], agents[1024], key[HIVE_KEY_MAX], mkey[256];
	redisContext *c = tu_redis_connect();
	size_t from = 0;

	tu_pg_fresh_db("e2e", db, sizeof(db), ci, sizeof(ci));
	agent_conf(agents, sizeof(agents), "counter", NULL);
	start_hived(h, ci, "host-a", agents);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "state=ready", NULL);
	proto_key_queue(key, sizeof(key), h->prefix, "work", 1);
	submit(c, key, "a", "{}");
	submit(c, key, "b", "{}");
	submit(c, key, "c", "{}");
	wait_sql(h, ci, "SELECT max(version) FROM memory_snapshots WHERE "
	    "agent = 'counter/1'", 3);
	stop_ok(h);

	/* Redis forgets the memory; only PostgreSQL has it now. */
	snprintf(mkey, sizeof(mkey), "%s:memory:counter/1", h->prefix);
	freeReplyObject(redisCommand(c, "DEL %s", mkey));
	from = hp_mark(h);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "memory of 1 agent instances loaded", NULL);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "memory_v=3", NULL);
	submit(c, key, "d", "{}");
	wait_sql(h, ci, "SELECT (result->>'count')::int FROM tasks WHERE id = 'd' "
	    "AND state = 'completed'", 4);
	stop_ok(h);
	redisFree(c);
}

/* hived on a fresh database (its name in db, if not NULL) with one
 * counter agent asleep, so that what is submitted waits in its queue
 * (key). */
static void
start_asleep(struct hp *h, char *ci, size_t cilen, char *key, size_t *from,
    char *db, size_t dblen)
{
	char agents[1024], name[64];

	tu_pg_fresh_db("e2e", name, sizeof(name), ci, cilen);
	if (db != NULL)
		snprintf(db, dblen, "%s", name);
	agent_conf(agents, sizeof(agents), "counter", "autostart = no");
	start_hived(h, ci, "host-a", agents);
	hp_wait(h, from, T_LONG, "agent=counter/1", "state=sleeping", NULL);
	proto_key_queue(key, HIVE_KEY_MAX, h->prefix, "work", 1);
}

/* PostgreSQL refuses the connections to database db and drops those it
 * has (allow 0), or takes them again (allow 1). */
static void
pg_allow(const char *db, int allow)
{
	PGconn *admin = tu_pg_connect();
	char sql[256];

	snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS %s", db,
	    allow ? "true" : "false");
	PQclear(PQexec(admin, sql));
	if (!allow) {
		snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(pid) "
		    "FROM pg_stat_activity WHERE datname = '%s'", db);
		PQclear(PQexec(admin, sql));
	}
	PQfinish(admin);
}

/* Redis loses the queue (its keys deleted: FLUSHALL for one
 * installation): the tasks PostgreSQL holds as unfinished are put back
 * and run. */
Test(record, lost_queue_requeued_from_postgres)
{
	struct hp *h = hp_new("lost");
	char ci[512], key[HIVE_KEY_MAX], id[32];
	redisContext *c = tu_redis_connect();
	redisReply *r;
	size_t from = 0;

	start_asleep(h, ci, sizeof(ci), key, &from, NULL, 0);
	for (int i = 0; i < 6; i++) {
		snprintf(id, sizeof(id), "lost-%d", i);
		submit(c, key, id, "{}");
	}
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE state = 'queued'", 6);
	r = redisCommand(c, "DEL %s", key);
	cr_assert_eq(r->integer, 1);
	freeReplyObject(r);
	hp_wait(h, &from, T_LONG, "recover:", "queued again", NULL);
	cr_assert_eq(hp_post(h, "/agents/counter/wake"), 200);
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE state = 'completed'", 6);
	cr_assert_eq(scalar(ci, "SELECT count(*) FROM task_states WHERE "
	    "state = 'completed'"), 6);
	stop_ok(h);
	redisFree(c);
}

/* PostgreSQL refuses this database for a while; work goes on, and every
 * record arrives once it is back, none twice. */
Test(record, postgres_outage_loses_nothing)
{
	struct hp *h = hp_new("pgout");
	char ci[512], db[64], agents[1024], key[HIVE_KEY_MAX], id[32];
	redisContext *c = tu_redis_connect();
	size_t from = 0;

	tu_pg_fresh_db("e2e", db, sizeof(db), ci, sizeof(ci));
	agent_conf(agents, sizeof(agents), "counter", NULL);
	start_hived(h, ci, "host-a", agents);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "state=ready", NULL);
	proto_key_queue(key, sizeof(key), h->prefix, "work", 1);
	submit(c, key, "before", "{}");
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE state = 'completed'", 1);

	pg_allow(db, 0);
	hp_wait(h, &from, T_LONG, "postgres:", "retrying", NULL);
	for (int i = 0; i < 40; i++) {
		snprintf(id, sizeof(id), "during-%d", i);
		submit(c, key, id, "{}");
	}
	/* The work is done meanwhile: the last result is in Redis. */
	char rkey[HIVE_KEY_MAX];
	proto_key_named(rkey, sizeof(rkey), h->prefix, "results");
	long long end = tu_now_ms() + T_LONG;
	redisReply *r = NULL;
	while (tu_now_ms() < end) {
		r = redisCommand(c, "XLEN %s", rkey);
		if (r->integer >= 41)
			break;
		freeReplyObject(r);
		r = NULL;
		hp_pump(h, 50);
	}
	cr_assert_not_null(r, "the work went on without PostgreSQL");
	freeReplyObject(r);
	pg_allow(db, 1);
	hp_wait(h, &from, T_LONG, "postgres: connected again", NULL);
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE state = 'completed'", 41);
	cr_assert_eq(scalar(ci, "SELECT count(*) FROM task_states WHERE "
	    "state = 'completed'"), 41);
	stop_ok(h);
	redisFree(c);
}

/* Two hosts on one Redis and one PostgreSQL.  Host A dies with its
 * workers (SIGKILL, no goodbye) while it holds tasks; host B takes them
 * over once A's worker's liveness key has expired, and finishes all. */
Test(record, host_dies_other_finishes)
{
	struct hp *a = hp_new("hosta"), *b = hp_new("hostb");
	char ci[512], db[64], agents[1024], key[HIVE_KEY_MAX], id[32];
	redisContext *c = tu_redis_connect();
	size_t fa = 0, fb = 0;
	pid_t wa;

	tu_pg_fresh_db("e2e", db, sizeof(db), ci, sizeof(ci));
	/* One installation: the same prefix on both hosts. */
	memcpy(b->prefix, a->prefix, sizeof(b->prefix));
	agent_conf(agents, sizeof(agents), "wa", NULL);
	start_hived(a, ci, "host-a", agents);
	hp_wait(a, &fa, T_LONG, "agent=wa/1", "state=ready", NULL);
	proto_key_queue(key, sizeof(key), a->prefix, "work", 1);
	/* A takes the first task and holds it for a while. */
	submit(c, key, "held", "{\"sleep_ms\": 3000}");
	hp_wait(a, &fa, T_LONG, "agent=wa/1", "state=busy", NULL);
	agent_conf(agents, sizeof(agents), "wb", NULL);
	start_hived(b, ci, "host-b", agents);
	hp_wait(b, &fb, T_LONG, "agent=wb/1", "state=ready", NULL);
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "more-%d", i);
		submit(c, key, id, "{}");
	}
	/* Host A goes: its worker, then hived, both SIGKILLed. */
	wa = hp_agent_pid(a, "wa/1");
	cr_assert(wa > 0);
	kill(wa, SIGKILL);
	hp_signal(a, SIGKILL);
	hp_wait_exit(a, T_LONG);
	wait_sql(b, ci, "SELECT count(*) FROM tasks WHERE state = 'completed'", 6);
	cr_assert_eq(scalar(ci, "SELECT attempts FROM tasks WHERE id = 'held' "
	    "AND state = 'completed' AND agent = 'wb/1'"), 2,
	    "the task A held was finished by B, as attempt 2");
	cr_assert_eq(scalar(ci, "SELECT count(*) FROM task_states WHERE "
	    "state = 'completed'"), 6, "each completed once");
	hp_wait(b, &fb, T_LONG, "reclaim: task=held", "requeued", NULL);
	stop_ok(b);
	redisFree(c);
}

/* Entries pending to the recorder group of key (-1: no such group). */
static long
recorder_pending(redisContext *c, const char *key)
{
	redisReply *r = redisCommand(c, "XPENDING %s recorder", key);
	long n = -1;

	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 1)
		n = (long)r->element[0]->integer;
	freeReplyObject(r);
	return n;
}

/* Entries pending to the recorder group of key, for one consumer. */
static long
recorder_pending_to(redisContext *c, const char *key, const char *consumer)
{
	redisReply *r = redisCommand(c, "XPENDING %s recorder - + 1000 %s", key,
	    consumer);
	long n = r != NULL && r->type == REDIS_REPLY_ARRAY ?
	    (long)r->elements : -1;

	freeReplyObject(r);
	return n;
}

/* Host A's recorder has read tasks it cannot write (PostgreSQL refuses
 * the database) when A dies for good; host B, started later, records
 * them: they were pending to A's consumer, which nobody reads again. */
Test(record, dead_hosts_reads_recorded_by_another)
{
	struct hp *a = hp_new("reca"), *b = hp_new("recb");
	char ci[512], db[64], agents[1024], key[HIVE_KEY_MAX], id[32];
	redisContext *c = tu_redis_connect();
	long long end;
	size_t fa = 0, fb = 0;

	memcpy(b->prefix, a->prefix, sizeof(b->prefix));
	start_asleep(a, ci, sizeof(ci), key, &fa, db, sizeof(db));
	submit(c, key, "first", "{}");
	wait_sql(a, ci, "SELECT count(*) FROM tasks WHERE id = 'first'", 1);

	pg_allow(db, 0);
	hp_wait(a, &fa, T_LONG, "postgres:", "retrying", NULL);
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "orphan-%d", i);
		submit(c, key, id, "{}");
	}
	end = tu_now_ms() + T_LONG;
	while (recorder_pending_to(c, key, "host-a") != 5 && tu_now_ms() < end)
		hp_pump(a, 10);
	cr_assert_eq(recorder_pending_to(c, key, "host-a"), 5,
	    "read by A's recorder, not written");
	hp_signal(a, SIGKILL);
	hp_wait_exit(a, T_LONG);
	pg_allow(db, 1);

	agent_conf(agents, sizeof(agents), "counter", "autostart = no");
	start_hived(b, ci, "host-b", agents);
	hp_wait(b, &fb, T_LONG, "recorder:", "host host-a is gone; 5 entries",
	    NULL);
	wait_sql(b, ci, "SELECT count(*) FROM tasks WHERE id LIKE 'orphan-%' "
	    "AND state = 'queued' AND message IS NOT NULL", 5);
	end = tu_now_ms() + T_LONG;
	while (recorder_pending_to(c, key, "host-a") != 0 && tu_now_ms() < end)
		hp_pump(b, 10);
	cr_assert_eq(recorder_pending_to(c, key, "host-a"), 0);
	/* SIGUSR1 says so too. */
	hp_signal(b, SIGUSR1);
	hp_wait(b, &fb, T_LONG, "status record postgres=up", "claimed=5 ", NULL);
	/* And they are work like any other: B's agent runs them. */
	cr_assert_eq(hp_post(b, "/agents/counter/wake"), 200);
	wait_sql(b, ci, "SELECT count(*) FROM tasks WHERE state = 'completed'", 6);
	stop_ok(b);
	redisFree(c);
}

/* hived stops: before it exits, the recorder writes the queue entries it
 * holds (waiting for results that will not come) and the result of the
 * task the worker finished while draining.  Read after hived has exited,
 * with no hived running: PostgreSQL has them all. */
Test(record, term_records_everything_read_before_exit)
{
	struct hp *h = hp_new("fin");
	char ci[512], agents[1024], key[HIVE_KEY_MAX], id[32];
	redisContext *c = tu_redis_connect();
	long long end;
	long n;
	size_t from = 0;

	/* The tasks wait in the queue, held by the recorder. */
	start_asleep(h, ci, sizeof(ci), key, &from, NULL, 0);
	/* Once the recorder has recorded one task, it is surely reading the
	 * queue, and reads each entry as it comes. */
	submit(c, key, "first", "{}");
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE id = 'first'", 1);
	for (int i = 0; i < 3; i++) {
		snprintf(id, sizeof(id), "held-%d", i);
		submit(c, key, id, "{}");
	}
	/* One reading: a second one could come after the hold ended. */
	end = tu_now_ms() + T_LONG;
	while ((n = recorder_pending(c, key)) != 3 && tu_now_ms() < end)
		hp_pump(h, 5);
	cr_assert_eq(n, 3, "read by the recorder");
	stop_ok(h);
	cr_assert_eq(scalar(ci, "SELECT count(*) FROM tasks WHERE id LIKE "
	    "'held-%' AND state = 'queued' AND message IS NOT NULL"), 3);
	cr_assert_eq(recorder_pending(c, key), 0);

	/* Awake, one task in flight when SIGTERM comes: the worker finishes
	 * it (drain), and its result is recorded before hived exits. */
	agent_conf(agents, sizeof(agents), "counter", NULL);
	from = hp_mark(h);
	start_hived(h, ci, "host-a", agents);
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE id LIKE 'held-%' AND "
	    "state = 'completed'", 3);
	submit(c, key, "slow", "{\"sleep_ms\": 400}");
	/* Its worker has it (not "state=busy": the held tasks made the agent
	 * busy already, and SIGTERM before the worker read the task would
	 * leave it queued). */
	hp_wait(h, &from, T_LONG, "agent=counter/1", "task=slow", "started",
	    NULL);
	stop_ok(h);
	cr_assert_eq(scalar(ci, "SELECT count(*) FROM tasks WHERE id = 'slow' "
	    "AND state = 'completed' AND message IS NOT NULL"), 1);
	redisFree(c);
}
