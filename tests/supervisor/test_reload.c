/*
 * test_reload.c - SIGHUP as an operator sees it: a [hive] key a running
 * hived cannot follow is refused whole (nothing moves), a new postgres
 * conninfo is taken by the record side, the http address is reported
 * against the one the API really listens on; what systemd hears (its
 * notify socket, played by the test: RELOADING=1 with a CLOCK_MONOTONIC
 * time, then READY=1); and PostgreSQL's notices in the log's own format.
 *
 * Real hived, hive-worker, Redis and PostgreSQL.  Waits are for events:
 * log lines, datagrams on the notify socket, rows polled with a deadline
 * as a failure guard.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

TestSuite(reload, .fini = hp_cleanup, .timeout = 120);

static const char *
real(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s", tu_build_path("worker/hive-worker"));
	return path;
}

static void
agent_conf(char *buf, size_t len, const char *name)
{
	snprintf(buf, len,
	    "[agent \"%s\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n"
	    "capabilities = work\n", name, getenv("HIVE_SOURCE_DIR"));
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
		hp_pump(h, 50);
	}
	fprintf(stderr, "hived's log, the end:\n%s\n",
	    h->len > 6000 ? h->log + h->len - 6000 : h->log);
	cr_assert_fail("%s: %ld, want %ld", sql, got, want);
}

static void
submit(redisContext *c, const char *key, const char *id)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_object();

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

/* Does the log after from hold a line with needle? */
static int
log_has(struct hp *h, size_t from, const char *needle)
{
	return h->log != NULL && from <= h->len &&
	    strstr(h->log + from, needle) != NULL;
}

/*
 * A changed prefix moves every key hived and its workers use: refused,
 * with a message that says a restart is needed, and nothing moves (the
 * worker keeps its pid and its queue).  Then the same file as before
 * reloads as "unchanged".
 */
Test(reload, prefix_change_is_refused)
{
	struct hp *h = hp_new("rpfx");
	char agents[1024], old[sizeof(h->prefix)], key[HIVE_KEY_MAX];
	redisContext *c = tu_redis_connect();
	redisReply *rp;
	size_t from = 0;
	pid_t pid;

	agent_conf(agents, sizeof(agents), "counter");
	hp_write_conf(h, real(), NULL, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "state=ready", NULL);
	pid = hp_agent_pid(h, "counter/1");
	cr_assert_gt(pid, 0);

	memcpy(old, h->prefix, sizeof(old));
	snprintf(h->prefix, sizeof(h->prefix), "%.60s-m", old);
	hp_write_conf(h, real(), NULL, agents);
	from = hp_mark(h);
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_LONG, "reload refused", "prefix",
	    "needs a restart of hived", NULL);
	cr_assert(!log_has(h, from, "reload done"), "a refused reload went on");
	cr_assert(!log_has(h, from, "changed: restarting"),
	    "a refused reload restarted an agent");
	cr_assert_eq(hp_agent_pid(h, "counter/1"), pid);

	/* The worker still serves the old prefix. */
	memcpy(h->prefix, old, sizeof(old));
	proto_key_queue(key, sizeof(key), h->prefix, "work", 1);
	submit(c, key, "after-refusal");
	proto_key_named(key, sizeof(key), h->prefix, "results");
	rp = redisCommand(c, "XREAD BLOCK 20000 STREAMS %s 0", key);
	cr_assert(rp != NULL && rp->type == REDIS_REPLY_ARRAY,
	    "no result under the old prefix");
	freeReplyObject(rp);

	hp_write_conf(h, real(), NULL, agents);
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_LONG, "reload done", "changed=0", "unchanged=1",
	    NULL);
	cr_assert_eq(hp_agent_pid(h, "counter/1"), pid);
	stop_ok(h);
	redisFree(c);
}

/*
 * A new postgres conninfo (here: another application_name, as a fixed
 * password would be) is taken at once: hived's connection is made again
 * with it, and the recorder goes on recording there.
 */
Test(reload, postgres_change_is_applied)
{
	struct hp *h = hp_new("rpg");
	char ci[512], db[64], extra[1024], agents[1024], key[HIVE_KEY_MAX];
	char sql[512];
	redisContext *c = tu_redis_connect();
	size_t from = 0;

	tu_pg_fresh_db("rpg", db, sizeof(db), ci, sizeof(ci));
	agent_conf(agents, sizeof(agents), "counter");
	snprintf(extra, sizeof(extra), "postgres = %s application_name=hive_a\n",
	    ci);
	hp_write_conf(h, real(), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "state=ready", NULL);
	proto_key_queue(key, sizeof(key), h->prefix, "work", 1);
	submit(c, key, "before");
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE id = 'before' AND "
	    "state = 'completed'", 1);

	snprintf(extra, sizeof(extra), "postgres = %s application_name=hive_b\n",
	    ci);
	hp_write_conf(h, real(), extra, agents);
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_LONG, "reload done", "unchanged=1", NULL);
	hp_wait(h, &from, T_LONG, "reload: postgres: connecting with the new "
	    "settings", NULL);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE "
	    "datname = '%s' AND application_name = 'hive_a'", db);
	wait_sql(h, ci, sql, 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE "
	    "datname = '%s' AND application_name = 'hive_b'", db);
	wait_sql(h, ci, sql, 1);
	submit(c, key, "after");
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE id = 'after' AND "
	    "state = 'completed'", 1);
	stop_ok(h);
	redisFree(c);
}

/*
 * hived started with a postgres it cannot reach (the wrong port here, a
 * wrong password alike): the record waits.  The fixed conninfo, reloaded,
 * is taken: the schema is made there and tasks are recorded, without a
 * restart.
 */
Test(reload, postgres_fixed_by_reload)
{
	struct hp *h = hp_new("rpgfix");
	char ci[512], db[64], extra[1024], agents[1024], key[HIVE_KEY_MAX];
	redisContext *c = tu_redis_connect();
	size_t from = 0;

	tu_pg_fresh_db("rpgfix", db, sizeof(db), ci, sizeof(ci));
	agent_conf(agents, sizeof(agents), "counter");
	/* libpq takes the last of a repeated keyword: nothing listens on
	 * port 1 of the test's socket directory. */
	snprintf(extra, sizeof(extra), "postgres = %s port=1\n", ci);
	hp_write_conf(h, real(), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "postgres: connect", "retrying", NULL);

	snprintf(extra, sizeof(extra), "postgres = %s\n", ci);
	hp_write_conf(h, real(), extra, agents);
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_LONG, "reload: postgres: connecting with the new "
	    "settings", NULL);
	hp_wait(h, &from, T_LONG, "postgres: schema version", NULL);
	proto_key_queue(key, sizeof(key), h->prefix, "work", 1);
	submit(c, key, "fixed");
	wait_sql(h, ci, "SELECT count(*) FROM tasks WHERE id = 'fixed' AND "
	    "state = 'completed'", 1);
	stop_ok(h);
	redisFree(c);
}

/*
 * A changed http address is not applied: every reload says so, naming
 * the address the API listens on (not the one the last reload asked
 * for), and the API answers there.
 */
Test(reload, http_change_names_the_address_listened_on)
{
	struct hp *h = hp_new("rhttp");
	char want[96];
	unsigned port;
	size_t from = 0;
	int code;
	json_t *j;

	hp_write_conf(h, real(), NULL, NULL);
	hp_start(h);
	port = h->port;
	snprintf(want, sizeof(want), "(listening on 127.0.0.1:%u)", port);
	for (unsigned i = 1; i <= 3; i++) {
		/* i = 3: the same file as i = 2 */
		h->port = port + (i < 3 ? i : 2);
		hp_write_conf(h, real(), NULL, NULL);
		h->port = port;
		hp_signal(h, SIGHUP);
		hp_wait(h, &from, T_LONG, "reload: http =", "needs a restart",
		    want, NULL);
		hp_wait(h, &from, T_LONG, "reload done", NULL);
	}
	j = hp_http(h, "GET", "/health", NULL, &code);
	cr_assert_eq(code, 200);
	json_decref(j);
	stop_ok(h);
}

/* ---- the notify socket ---- */

/* An abstract unix datagram socket for NOTIFY_SOCKET, named in name. */
static int
notify_open(char *name, size_t len)
{
	struct sockaddr_un sa;
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	size_t n;

	cr_assert(s >= 0, "socket: %s", strerror(errno));
	snprintf(name, len, "@hive-test-notify-%ld", (long)getpid());
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	n = strlen(name);
	memcpy(sa.sun_path + 1, name + 1, n - 1);
	cr_assert(bind(s, (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) == 0,
	    "bind %s: %s", name, strerror(errno));
	return s;
}

/* The next datagram that holds want (in buf); fails if one holding
 * forbid (if not NULL) comes first, or none in time. */
static void
notify_wait(struct hp *h, int s, const char *want, const char *forbid,
    char *buf, size_t len)
{
	long long end = tu_now_ms() + T_LONG;

	while (tu_now_ms() < end) {
		struct pollfd p = { s, POLLIN, 0 };
		ssize_t n;

		hp_pump(h, 0);
		if (poll(&p, 1, 50) <= 0)
			continue;
		if ((n = recv(s, buf, len - 1, 0)) <= 0)
			continue;
		buf[n] = '\0';
		if (strstr(buf, want) != NULL)
			return;
		cr_assert(forbid == NULL || strstr(buf, forbid) == NULL,
		    "'%s' before '%s'", buf, want);
	}
	cr_assert_fail("no %s from hived", want);
}

static unsigned long long
mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL;
}

/*
 * READY=1 at start; on SIGHUP, RELOADING=1 before any READY=1, with
 * MONOTONIC_USEC on CLOCK_MONOTONIC (sd_notify(3)); READY=1 after it,
 * also when the new file is bad and the reload refused.
 */
Test(reload, notify_reloading_then_ready)
{
	struct hp *h = hp_new("rnot");
	char name[108], buf[4096];
	unsigned long long before, after, at;
	const char *p;
	size_t from;
	FILE *f;
	int s = notify_open(name, sizeof(name));

	hp_write_conf(h, real(), NULL, NULL);
	setenv("NOTIFY_SOCKET", name, 1);
	hp_start(h);
	unsetenv("NOTIFY_SOCKET");
	notify_wait(h, s, "READY=1", "RELOADING=1", buf, sizeof(buf));

	before = mono_usec();
	hp_signal(h, SIGHUP);
	notify_wait(h, s, "RELOADING=1", "READY=1", buf, sizeof(buf));
	after = mono_usec();
	p = strstr(buf, "MONOTONIC_USEC=");
	cr_assert(p != NULL, "no MONOTONIC_USEC in '%s'", buf);
	at = strtoull(p + strlen("MONOTONIC_USEC="), NULL, 10);
	cr_assert(at >= before && at <= after, "MONOTONIC_USEC=%llu, not "
	    "within CLOCK_MONOTONIC %llu..%llu", at, before, after);
	notify_wait(h, s, "READY=1", "RELOADING=1", buf, sizeof(buf));

	/* A bad file: the same two, the reload refused in between. */
	cr_assert((f = fopen(h->conf, "w")) != NULL);
	fputs("[hive]\nredis = localhost\n", f);
	cr_assert_eq(fclose(f), 0);
	from = hp_mark(h);
	hp_signal(h, SIGHUP);
	notify_wait(h, s, "RELOADING=1", "READY=1", buf, sizeof(buf));
	notify_wait(h, s, "READY=1", "RELOADING=1", buf, sizeof(buf));
	hp_wait(h, &from, T_LONG, "reload failed: keeping the running "
	    "configuration", NULL);
	close(s);
	stop_ok(h);
}

/*
 * PostgreSQL's notices (the migration's CREATE TABLE IF NOT EXISTS on a
 * database that has the table, at every start but the first) are log
 * lines like any other, at debug: never libpq's raw "NOTICE:" on stderr.
 */
Test(reload, pg_notices_are_log_lines)
{
	struct hp *h = hp_new("rnote");
	char ci[512], db[64], extra[1024];
	size_t from = 0, mark;

	tu_pg_fresh_db("rnote", db, sizeof(db), ci, sizeof(ci));
	snprintf(extra, sizeof(extra), "postgres = %s\n", ci);
	hp_write_conf(h, real(), extra, NULL);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "postgres: schema version", NULL);
	stop_ok(h);
	mark = from = hp_mark(h);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "postgres: NOTICE:", "hive_schema", NULL);
	hp_wait(h, &from, T_LONG, "postgres: schema version", NULL);
	for (const char *l = h->log + mark; l != NULL && *l;) {
		cr_assert(strncmp(l, "NOTICE:", 7) != 0 &&
		    strncmp(l, "WARNING:", 8) != 0,
		    "a raw libpq line in the log: %.80s", l);
		l = strchr(l, '\n');
		l = l != NULL ? l + 1 : NULL;
	}
	stop_ok(h);
}
