/*
 * test_api_dead.c - dead letters and submitting through the HTTP API
 * (supervisor/api_dead.c, api_submit.c), end to end:
 *
 *   - a task whose handler dies on every attempt shows in GET /dead;
 *     retried once the handler works, its result reaches the original
 *     reply_to, PostgreSQL shows it leave 'dead' (attempts going on, the
 *     dead attempt in task_attempts), GET /dead no longer lists it, and
 *     a second retry is refused;
 *   - the recorder behind: a dead letter of the earlier attempt recorded
 *     after the retry never ends the new attempt (hive_wins, migration 6);
 *     PostgreSQL down at the retry, or the retry never written there:
 *     the record catches up from the recorder alone;
 *   - the recorder meets a pending dead letter that a retry deleted;
 *   - dead letters that cannot be retried (409), retries without
 *     PostgreSQL, retries in bulk by filter, GET /dead's filters and its
 *     bound on the entries one request looks at;
 *   - POST /tasks and POST /workflows, and every bad body a 4xx that
 *     leaves hived serving; Redis down: 503.
 *
 * Real hived, hive-worker (handler tests/supervisor/dead_handler.py),
 * Redis and PostgreSQL; each test has its own key prefix (and database).
 * Waits are for events (HTTP answers, log lines, stream entries, rows
 * polled with a deadline as a failure guard).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

TestSuite(api_dead, .fini = hp_cleanup, .timeout = 120);

static const char *
worker(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s", tu_build_path("worker/hive-worker"));
	return path;
}

/* The agent "d" (capability work) running dead_handler.py; it gives up
 * on a task after two attempts, and its handler's deaths never end it. */
static void
agent_conf(char *buf, size_t len)
{
	snprintf(buf, len,
	    "[agent \"d\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/dead_handler.py\n"
	    "capabilities = work\n"
	    "max_attempts = 2\n"
	    "restart_limit = 1000\n"
	    "restart_window = 1s\n", getenv("HIVE_SOURCE_DIR"));
}

static void
stop_ok(struct hp *h)
{
	int st;

	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && h->log != NULL)
		fprintf(stderr, "hived's log, the end:\n%s\n",
		    h->len > 6000 ? h->log + h->len - 6000 : h->log);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}

/* ---- HTTP with a body ---- */

/*
 * One request (body NULL: none); the answer's JSON (NULL if none), its
 * status in *code.  The body is written as the server reads it, and a
 * server that answers before reading it all (413) is fine.
 */
static json_t *
http(struct hp *h, const char *method, const char *path, const char *token,
    const char *body, size_t blen, int *code)
{
	struct sockaddr_in sa;
	char head[1024], clen[96], *resp = NULL, *sep;
	size_t hlen, off = 0, rlen = 0, rcap = 0;
	long long end = tu_now_ms() + 20000;
	json_t *j;
	int s;

	*code = 0;
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	cr_assert(s >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)h->port);
	cr_assert(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
	    errno == EINPROGRESS, "connect: %s", strerror(errno));
	clen[0] = '\0';
	if (body != NULL || strcmp(method, "POST") == 0)
		snprintf(clen, sizeof(clen), "Content-Type: application/json\r\n"
		    "Content-Length: %zu\r\n", body ? blen : 0);
	hlen = (size_t)snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\n"
	    "Host: 127.0.0.1\r\nConnection: close\r\n%s%s%s%s\r\n",
	    method, path, token ? "Authorization: Bearer " : "",
	    token ? token : "", token ? "\r\n" : "", clen);
	for (;;) {
		size_t total = hlen + (body ? blen : 0);
		struct pollfd p[2] = { { s, POLLIN | (off < total ? POLLOUT : 0),
		    0 }, { h->logfd, POLLIN, 0 } };
		char buf[16384];
		ssize_t n;

		if (tu_now_ms() >= end && h->log != NULL)
			fprintf(stderr, "hived's log, the end:\n%s\n",
			    h->len > 6000 ? h->log + h->len - 6000 : h->log);
		cr_assert(tu_now_ms() < end, "no HTTP answer to %s %s", method,
		    path);
		if (poll(p, h->logfd >= 0 ? 2 : 1, 200) <= 0)
			continue;
		if (p[1].revents)
			hp_pump(h, 0);
		if ((p[0].revents & POLLOUT) && off < total) {
			n = off < hlen ? send(s, head + off, hlen - off,
			    MSG_NOSIGNAL) : send(s, body + (off - hlen),
			    total - off, MSG_NOSIGNAL);
			if (n > 0)
				off += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				off = total;     /* it stopped reading: answered */
		}
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(s, buf, sizeof(buf));
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n <= 0)
			break;
		if (rlen + (size_t)n + 1 > rcap) {
			rcap = (rlen + (size_t)n + 1) * 2;
			resp = realloc(resp, rcap);
		}
		memcpy(resp + rlen, buf, (size_t)n);
		rlen += (size_t)n;
		resp[rlen] = '\0';
	}
	close(s);
	if (resp == NULL && h->log != NULL) {
		hp_pump(h, 100);
		fprintf(stderr, "hived's log, the end:\n%s\n",
		    h->len > 6000 ? h->log + h->len - 6000 : h->log);
	}
	cr_assert(resp != NULL, "empty HTTP answer to %s %s (%s)", method,
	    path, strerror(errno));
	cr_assert(sscanf(resp, "HTTP/1.%*d %d", code) == 1, "bad answer: %s",
	    resp);
	sep = strstr(resp, "\r\n\r\n");
	j = sep ? json_loads(sep + 4, 0, NULL) : NULL;
	free(resp);
	return j;
}

static json_t *
post(struct hp *h, const char *path, const char *body, int *code)
{
	return http(h, "POST", path, HP_TOKEN, body, body ? strlen(body) : 0,
	    code);
}

static json_t *
get(struct hp *h, const char *path, int *code)
{
	return http(h, "GET", path, NULL, NULL, 0, code);
}

/* A 400 whose message names the field. */
static void
post_bad(struct hp *h, const char *path, const char *body, int want,
    const char *says)
{
	int code;
	json_t *j = post(h, path, body, &code);
	const char *msg = json_string_value(json_object_get(json_object_get(j,
	    "error"), "message"));

	cr_assert_eq(code, want, "%s %.200s: %d, want %d (%s)", path, body,
	    code, want, msg ? msg : "no message");
	if (says != NULL)
		cr_assert(msg != NULL && strstr(msg, says) != NULL,
		    "%s %.200s: message '%s' does not say '%s'", path, body,
		    msg ? msg : "", says);
	json_decref(j);
}

/* ---- Redis, PostgreSQL ---- */

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

/* The first result on stream key (a reply_to), waiting for it. */
static void
wait_result(struct hp *h, redisContext *c, const char *key,
    struct hive_result *out, char **raw)
{
	long long end = tu_now_ms() + T_LONG;
	struct proto_err err;

	while (tu_now_ms() < end) {
		redisReply *r = redisCommand(c, "XRANGE %s - + COUNT 1", key);
		if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
			redisReply *f = r->element[0]->element[1];
			*raw = malloc(f->element[1]->len);
			memcpy(*raw, f->element[1]->str, f->element[1]->len);
			cr_assert_eq(proto_decode_result(*raw, f->element[1]->len,
			    out, &err), 0);
			freeReplyObject(r);
			return;
		}
		freeReplyObject(r);
		hp_pump(h, 50);
	}
	cr_assert_fail("no result on %s", key);
}

/* A dead letter in <p>:dead, as a worker writes one; its entry id. */
static void
add_dead(struct hp *h, redisContext *c, const struct hive_dead *d,
    char *entry, size_t len)
{
	struct proto_err err;
	msgpack_sbuffer sb;
	char key[HIVE_KEY_MAX];
	redisReply *r;

	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_dead(&sb, d, &err), 0);
	proto_key_named(key, sizeof(key), h->prefix, "dead");
	r = redisCommand(c, "XADD %s * m %b", key, sb.data, sb.size);
	cr_assert(r != NULL && r->type == REDIS_REPLY_STRING);
	if (entry != NULL)
		snprintf(entry, len, "%s", r->str);
	freeReplyObject(r);
	msgpack_sbuffer_destroy(&sb);
}

/* A task's bytes (payload as JSON text) into sb. */
static void
task_bytes(msgpack_sbuffer *sb, const char *id, const char *payload,
    unsigned attempt, unsigned max, const char *reply_to,
    const char *workflow)
{
	struct hive_task t = { 0 };
	struct proto_err err;
	msgpack_zone z;
	json_t *j = json_loads(payload, JSON_DECODE_ANY, NULL);

	msgpack_zone_init(&z, 1024);
	t.id = HIVE_STR(id);
	t.attempt = attempt;
	t.max_attempts = max;
	if (reply_to != NULL)
		t.reply_to = HIVE_STR(reply_to);
	if (workflow != NULL)
		t.workflow = HIVE_STR(workflow);
	cr_assert_eq(proto_json_to_obj(j, &z, &t.payload, &err), 0);
	cr_assert_eq(proto_encode_task(sb, &t, &err), 0);
	msgpack_zone_destroy(&z);
	json_decref(j);
}

/* GET /dead's item for task id, waiting until it is there; a new
 * reference. */
static json_t *
wait_dead(struct hp *h, const char *id)
{
	long long end = tu_now_ms() + T_LONG;

	while (tu_now_ms() < end) {
		int code;
		json_t *j = get(h, "/dead", &code), *it;
		size_t i;

		cr_assert_eq(code, 200);
		json_array_foreach(json_object_get(j, "dead"), i, it) {
			const char *tid = json_string_value(json_object_get(it,
			    "id"));
			if (tid != NULL && strcmp(tid, id) == 0) {
				json_incref(it);
				json_decref(j);
				return it;
			}
		}
		json_decref(j);
		hp_pump(h, 100);
	}
	cr_assert_fail("no dead letter for task %s in GET /dead", id);
	return NULL;
}

static int
dead_listed(struct hp *h, const char *dead_id)
{
	int code, found = 0;
	json_t *j = get(h, "/dead?limit=1000", &code), *it;
	size_t i;

	cr_assert_eq(code, 200);
	json_array_foreach(json_object_get(j, "dead"), i, it)
		if (strcmp(json_string_value(json_object_get(it, "dead_id")),
		    dead_id) == 0)
			found = 1;
	json_decref(j);
	return found;
}

static void
touch(const char *path)
{
	FILE *f = fopen(path, "w");

	cr_assert(f != NULL, "%s: %s", path, strerror(errno));
	fclose(f);
}

static const char *
jget(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	cr_assert(s != NULL, "no string '%s'", k);
	return s;
}

/* hived with PostgreSQL and the agent d; the database in ci. */
static char db[64];

static void
start_with_pg(struct hp *h, size_t *from)
{
	char agents[1024], extra[1024];

	tu_pg_fresh_db("dead", db, sizeof(db), ci, sizeof(ci));
	agent_conf(agents, sizeof(agents));
	snprintf(extra, sizeof(extra), "postgres = %s\nhost = host-a\n", ci);
	hp_write_conf(h, worker(), extra, agents);
	hp_start(h);
	hp_wait(h, from, T_LONG, "agent=d/1", "state=ready", NULL);
}

/* POST /tasks a task that dies on every attempt while flag exists (and
 * then waits while hold does); its dead letter, once GET /dead has it. */
static json_t *
task_to_dead(struct hp *h, const char *id, const char *flag,
    const char *hold, const char *reply)
{
	char body[2048], stream[HIVE_KEY_MAX];
	json_t *j, *it;
	int code;

	touch(flag);
	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"id\": "
	    "\"%s\", \"payload\": {\"flag\": \"%s\", \"hold\": \"%s\"}, "
	    "\"reply_to\": \"%s\"}", id, flag, hold ? hold : "", reply);
	j = post(h, "/tasks", body, &code);
	cr_assert_eq(code, 201, "POST /tasks: %d", code);
	proto_key_queue(stream, sizeof(stream), h->prefix, "work", 1);
	cr_assert_str_eq(jget(j, "id"), id);
	cr_assert_str_eq(jget(j, "stream"), stream);
	json_decref(j);
	it = wait_dead(h, id);
	cr_assert_str_eq(jget(it, "code"), "attempts");
	cr_assert_eq(json_integer_value(json_object_get(it, "attempt")), 2);
	cr_assert(json_is_true(json_object_get(it, "retryable")));
	cr_assert_str_eq(jget(it, "stream"), stream);
	cr_assert_str_eq(jget(it, "agent"), "d/1");
	return it;
}

Test(api_dead, retried_dead_letter_is_a_new_attempt)
{
	struct hp *h = hp_new("dretry");
	redisContext *c = tu_redis_connect();
	char flag[600], reply[160], path[256], dead_id[64], stream[HIVE_KEY_MAX];
	struct hive_result res;
	json_t *it, *j, *task;
	size_t from = 0;
	char *raw;
	int code;

	start_with_pg(h, &from);
	snprintf(flag, sizeof(flag), "%s/flag", h->dir);
	snprintf(reply, sizeof(reply), "hive:reply:%s-1", h->prefix);
	it = task_to_dead(h, "job-1", flag, NULL, reply);
	snprintf(dead_id, sizeof(dead_id), "%s", jget(it, "dead_id"));
	json_decref(it);
	/* The recorder ahead: the task is recorded dead before the retry. */
	wait_sql(h, "SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'job-1'", "dead 2");

	/* GET /dead/ID: the original message, decoded. */
	snprintf(path, sizeof(path), "/dead/%s", dead_id);
	j = get(h, path, &code);
	cr_assert_eq(code, 200);
	task = json_object_get(json_object_get(j, "dead"), "task");
	cr_assert_str_eq(jget(task, "id"), "job-1");
	cr_assert_str_eq(jget(task, "reply_to"), reply);
	cr_assert_str_eq(jget(json_object_get(task, "payload"), "flag"), flag);
	cr_assert_null(json_object_get(json_object_get(j, "dead"), "raw_hex"));
	json_decref(j);

	/* No token, no retry. */
	snprintf(path, sizeof(path), "/dead/%s/retry", dead_id);
	json_decref(http(h, "POST", path, NULL, NULL, 0, &code));
	cr_assert_eq(code, 401);

	/* The handler works now: the retry is attempt 3 of job-1. */
	cr_assert_eq(unlink(flag), 0);
	j = post(h, path, NULL, &code);
	cr_assert_eq(code, 200, "retry: %d", code);
	proto_key_queue(stream, sizeof(stream), h->prefix, "work", 1);
	cr_assert_str_eq(jget(j, "dead_id"), dead_id);
	cr_assert_str_eq(jget(j, "id"), "job-1");
	cr_assert_eq(json_integer_value(json_object_get(j, "attempt")), 3);
	cr_assert_str_eq(jget(j, "stream"), stream);
	cr_assert_not_null(json_object_get(j, "entry"));
	json_decref(j);
	/* The answer came once PostgreSQL had it: 'dead' is left. */
	expect_sql("SELECT attempts || ' ' || (state <> 'dead') FROM tasks "
	    "WHERE id = 'job-1'", "3 true");
	/* Once: the dead letter is gone. */
	json_decref(post(h, path, NULL, &code));
	cr_assert_eq(code, 404, "second retry: %d", code);
	cr_assert(!dead_listed(h, dead_id), "GET /dead still lists it");

	/* The result reaches the original reply_to. */
	wait_result(h, c, reply, &res, &raw);
	cr_assert_eq(res.status, HIVE_STATUS_OK);
	cr_assert_eq(res.attempt, 3);
	proto_result_clear(&res);
	free(raw);
	wait_sql(h, "SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'job-1'", "completed 3");
	expect_sql("SELECT state FROM task_attempts WHERE task_id = 'job-1' "
	    "AND attempt = 2", "dead");
	expect_sql("SELECT count(*) FROM events WHERE task_id = 'job-1' AND "
	    "kind = 'task.dead'", "1");
	freeReplyObject(redisCommand(c, "DEL %s", reply));
	stop_ok(h);
	redisFree(c);
}

/* Wait until the recorder holds nothing pending on stream key. */
static void
wait_drained(struct hp *h, redisContext *c, const char *key)
{
	long long end = tu_now_ms() + T_LONG;

	for (;;) {
		redisReply *r = redisCommand(c, "XPENDING %s %s", key,
		    HIVE_GROUP_RECORDER);
		cr_assert(r != NULL, "XPENDING %s", key);
		/* (NOGROUP: the recorder has not found the stream yet) */
		if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
		    r->element[0]->integer == 0) {
			freeReplyObject(r);
			return;
		}
		freeReplyObject(r);
		cr_assert(tu_now_ms() < end, "%s stays pending to the recorder",
		    key);
		hp_pump(h, 50);
	}
}

/*
 * The recorder behind: a dead letter of attempt 2 that it records only
 * after the retry's attempt 3 was (a batch read before the retry and
 * written after it; the reclaimer's failed result of the same attempt
 * the same) must not end attempt 3.  Made certain here by adding the
 * dead letter again once attempt 3 runs.
 */
Test(api_dead, late_dead_letter_never_ends_the_retry)
{
	struct hp *h = hp_new("dlate");
	redisContext *c = tu_redis_connect();
	char flag[600], hold[600], reply[160], path[256], dead_id[64];
	char key[HIVE_KEY_MAX], qkey[HIVE_KEY_MAX], sql[512], late[64];
	struct hive_result res;
	redisReply *r;
	json_t *it, *j;
	size_t from = 0;
	char *raw;
	int code;

	start_with_pg(h, &from);
	snprintf(flag, sizeof(flag), "%s/flag", h->dir);
	snprintf(hold, sizeof(hold), "%s/hold", h->dir);
	snprintf(reply, sizeof(reply), "hive:reply:%s-2", h->prefix);
	touch(hold);
	it = task_to_dead(h, "job-2", flag, hold, reply);
	snprintf(dead_id, sizeof(dead_id), "%s", jget(it, "dead_id"));
	json_decref(it);
	wait_sql(h, "SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'job-2'", "dead 2");
	proto_key_named(key, sizeof(key), h->prefix, "dead");
	r = redisCommand(c, "XRANGE %s %s %s", key, dead_id, dead_id);
	cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1);

	cr_assert_eq(unlink(flag), 0);
	snprintf(path, sizeof(path), "/dead/%s/retry", dead_id);
	json_decref(j = post(h, path, NULL, &code));
	cr_assert_eq(code, 200);
	expect_sql("SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'job-2'", "queued 3");

	/* Attempt 2's dead letter reaches the recorder late, twice: at once,
	 * while it may still hold attempt 3's queue entry for its result
	 * (one second: then both are folded in one batch, and state_wins
	 * and hive_wins decide); then once that entry is written, where
	 * hive_wins in PostgreSQL alone decides (this one fails with
	 * migration 1's hive_wins). */
	proto_key_queue(qkey, sizeof(qkey), h->prefix, "work", 1);
	for (int k = 0; k < 2; k++) {
		redisReply *f = r->element[0]->element[1];
		redisReply *a;

		if (k == 1)
			wait_drained(h, c, qkey);
		a = redisCommand(c, "XADD %s * m %b", key, f->element[1]->str,
		    f->element[1]->len);
		cr_assert(a != NULL && a->type == REDIS_REPLY_STRING);
		snprintf(late, sizeof(late), "%s", a->str);
		freeReplyObject(a);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM events WHERE "
		    "source = '%s/%s'", key, late);
		wait_sql(h, sql, "1");
		expect_sql("SELECT state || ' ' || attempts FROM tasks WHERE "
		    "id = 'job-2'", "queued 3");
	}
	freeReplyObject(r);

	cr_assert_eq(unlink(hold), 0);
	wait_result(h, c, reply, &res, &raw);
	cr_assert_eq(res.status, HIVE_STATUS_OK);
	cr_assert_eq(res.attempt, 3);
	proto_result_clear(&res);
	free(raw);
	wait_sql(h, "SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'job-2'", "completed 3");
	freeReplyObject(redisCommand(c, "DEL %s", reply));
	stop_ok(h);
	redisFree(c);
}

/* A statement on the server's own database (not the test's). */
static void
admin(const char *sql)
{
	PGconn *c = tu_pg_connect();
	PGresult *res = PQexec(c, sql);

	cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK ||
	    PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
	    PQerrorMessage(c));
	PQclear(res);
	PQfinish(c);
}

/* PostgreSQL down at the retry: the answer does not wait for it, the
 * retry is made in Redis, and the record catches up once it is back. */
Test(api_dead, retry_while_postgres_is_down)
{
	struct hp *h = hp_new("dpgdown");
	redisContext *c = tu_redis_connect();
	char flag[600], reply[160], path[256], dead_id[64], sql[512];
	struct hive_result res;
	json_t *it;
	size_t from = 0;
	char *raw;
	int code;

	start_with_pg(h, &from);
	snprintf(flag, sizeof(flag), "%s/flag", h->dir);
	snprintf(reply, sizeof(reply), "hive:reply:%s-3", h->prefix);
	it = task_to_dead(h, "job-3", flag, NULL, reply);
	snprintf(dead_id, sizeof(dead_id), "%s", jget(it, "dead_id"));
	json_decref(it);
	wait_sql(h, "SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'job-3'", "dead 2");

	/* No connection to the record's database, hived's ended. */
	snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS false",
	    db);
	admin(sql);
	from = hp_mark(h);
	snprintf(sql, sizeof(sql), "SELECT count(pg_terminate_backend(pid)) "
	    "FROM pg_stat_activity WHERE datname = '%s'", db);
	admin(sql);
	hp_wait(h, &from, T_LONG, "postgres: connection lost", NULL);

	cr_assert_eq(unlink(flag), 0);
	snprintf(path, sizeof(path), "/dead/%s/retry", dead_id);
	json_decref(post(h, path, NULL, &code));
	cr_assert_eq(code, 200, "retry with the record down: %d", code);
	wait_result(h, c, reply, &res, &raw);
	cr_assert_eq(res.status, HIVE_STATUS_OK);
	cr_assert_eq(res.attempt, 3);
	proto_result_clear(&res);
	free(raw);

	snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS true",
	    db);
	admin(sql);
	wait_sql(h, "SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'job-3'", "completed 3");
	wait_sql(h, "SELECT state FROM task_attempts WHERE task_id = 'job-3' "
	    "AND attempt = 2", "dead");
	freeReplyObject(redisCommand(c, "DEL %s", reply));
	stop_ok(h);
	redisFree(c);
}

/*
 * The recorder alone moves a retried task on (its retry never reached
 * PostgreSQL: hived stopped while PostgreSQL was down): a task recorded
 * dead at attempt 2 whose attempt 3 is queued is queued, whichever of
 * the two it reads first or whether it folds them in one batch, and the
 * dead attempt is kept.  Fails with migration 1's rule (and state_wins'
 * before it), which kept 'dead'.
 */
Test(api_dead, recorder_moves_a_retried_task_on)
{
	struct hp *h = hp_new("dsolo");
	redisContext *c = tu_redis_connect();
	char key[HIVE_KEY_MAX], agents[1024], extra[1024];
	struct hive_dead d = { 0 };
	msgpack_sbuffer sb;
	size_t from = 0;

	msgpack_sbuffer_init(&sb);
	task_bytes(&sb, "solo-1", "{}", 3, 4, NULL, NULL);
	proto_key_queue(key, sizeof(key), h->prefix, "idle", 1);
	d.id = HIVE_STR("solo-1");
	d.reason = HIVE_STR("gave up after 2 attempts");
	d.code = HIVE_CODE_ATTEMPTS;
	d.stream = HIVE_STR(key);
	d.attempt = 2;
	d.ts_ms = proto_now_ms();
	d.raw.ptr = sb.data;
	d.raw.len = (uint32_t)sb.size;
	add_dead(h, c, &d, NULL, 0);
	tu_xadd(c, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);

	tu_pg_fresh_db("dead", db, sizeof(db), ci, sizeof(ci));
	agent_conf(agents, sizeof(agents));
	snprintf(extra, sizeof(extra), "postgres = %s\nhost = host-a\n", ci);
	hp_write_conf(h, worker(), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=d/1", "state=ready", NULL);
	wait_sql(h, "SELECT count(*) FROM events WHERE task_id = 'solo-1'", "1");
	wait_drained(h, c, key);
	expect_sql("SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'solo-1'", "queued 3");
	expect_sql("SELECT state FROM task_attempts WHERE task_id = 'solo-1' "
	    "AND attempt = 2", "dead");
	stop_ok(h);
	redisFree(c);
}

/* A dead letter deleted (by a retry) while pending to the recorder reads
 * as nil when the recorder reads its pending entries: it is
 * acknowledged, nothing is written for it, and the others are. */
Test(api_dead, recorder_acks_dead_letter_deleted_while_pending)
{
	struct hp *h = hp_new("dgone");
	redisContext *c = tu_redis_connect();
	struct hive_dead d = { 0 };
	char key[HIVE_KEY_MAX], e1[64], agents[1024], extra[1024];
	redisReply *r;

	proto_key_named(key, sizeof(key), h->prefix, "dead");
	freeReplyObject(redisCommand(c, "XGROUP CREATE %s %s 0 MKSTREAM", key,
	    HIVE_GROUP_RECORDER));
	d.id = HIVE_STR("gone-1");
	d.reason = HIVE_STR("gave up after 2 attempts");
	d.code = HIVE_CODE_ATTEMPTS;
	d.attempt = 2;
	d.ts_ms = proto_now_ms();
	add_dead(h, c, &d, e1, sizeof(e1));
	/* read by this host's recorder before it went down */
	r = redisCommand(c, "XREADGROUP GROUP %s host-a COUNT 10 STREAMS %s >",
	    HIVE_GROUP_RECORDER, key);
	cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY);
	freeReplyObject(r);
	freeReplyObject(redisCommand(c, "XDEL %s %s", key, e1));
	d.id = HIVE_STR("kept-1");
	add_dead(h, c, &d, NULL, 0);

	tu_pg_fresh_db("dead", db, sizeof(db), ci, sizeof(ci));
	agent_conf(agents, sizeof(agents));
	snprintf(extra, sizeof(extra), "postgres = %s\nhost = host-a\n", ci);
	hp_write_conf(h, worker(), extra, agents);
	hp_start(h);
	wait_sql(h, "SELECT count(*) FROM events WHERE task_id = 'kept-1'", "1");
	wait_drained(h, c, key);
	expect_sql("SELECT count(*) FROM events WHERE task_id = 'gone-1'", "0");
	expect_sql("SELECT state FROM tasks WHERE id = 'kept-1'", "dead");
	cr_assert_null(strstr(h->log, "bad dead letter"));
	stop_ok(h);
	redisFree(c);
}

/* hived without PostgreSQL, the agent d (capability work). */
static void
start_plain(struct hp *h)
{
	char agents[1024];
	size_t from = 0;

	agent_conf(agents, sizeof(agents));
	hp_write_conf(h, worker(), NULL, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=d/1", "state=ready", NULL);
}

/* A dead letter of task id from stream (NULL: <p>:q:<cap>:1), its
 * message a task (payload JSON, attempt, max_attempts) unless raw is
 * given; its entry id in entry. */
static void
dead_task(struct hp *h, redisContext *c, const char *id, const char *cap,
    enum hive_code code, unsigned made, const char *stream,
    const char *workflow, char *entry, size_t len)
{
	struct hive_dead d = { 0 };
	msgpack_sbuffer sb;
	char key[HIVE_KEY_MAX];

	msgpack_sbuffer_init(&sb);
	task_bytes(&sb, id, "{\"x\": 1}", 1, 0, "hive:reply:nobody", workflow);
	if (stream == NULL)
		proto_key_queue(key, sizeof(key), h->prefix, cap, 1);
	d.id = HIVE_STR(id);
	d.reason = HIVE_STR("gave up");
	d.code = code;
	d.stream = HIVE_STR(stream ? stream : key);
	d.entry = HIVE_STR("1700000000000-0");
	d.agent = HIVE_STR("d/1");
	d.attempt = made;
	d.ts_ms = proto_now_ms();
	d.workflow = workflow ? HIVE_STR(workflow) : (struct hive_str){ 0 };
	d.raw.ptr = sb.data;
	d.raw.len = (uint32_t)sb.size;
	add_dead(h, c, &d, entry, len);
	msgpack_sbuffer_destroy(&sb);
}

static void
retry_refused(struct hp *h, const char *entry, const char *says)
{
	char path[256];

	snprintf(path, sizeof(path), "/dead/%s/retry", entry);
	post_bad(h, path, NULL, 409, says);
}

/* Without PostgreSQL a retry is made in Redis alone; the ones that
 * cannot be retried are refused with why. */
Test(api_dead, retry_without_postgres_and_refusals)
{
	struct hp *h = hp_new("dplain");
	redisContext *c = tu_redis_connect();
	char e[64], path[256], key[HIVE_KEY_MAX], dkey[HIVE_KEY_MAX];
	struct hive_dead d = { 0 };
	struct hive_task t;
	struct proto_err err;
	redisReply *r;
	json_t *j;
	int code;

	start_plain(h);
	/* Out of attempts at 3 on agent d (max_attempts 2): attempt 4, and
	 * d's two attempts more. */
	dead_task(h, c, "r-1", "idle", HIVE_CODE_ATTEMPTS, 3, NULL, NULL, e,
	    sizeof(e));
	snprintf(path, sizeof(path), "/dead/%s/retry", e);
	j = post(h, path, NULL, &code);
	cr_assert_eq(code, 200, "retry: %d", code);
	proto_key_queue(key, sizeof(key), h->prefix, "idle", 1);
	cr_assert_str_eq(jget(j, "stream"), key);
	cr_assert_eq(json_integer_value(json_object_get(j, "attempt")), 4);
	r = redisCommand(c, "XRANGE %s %s %s", key, jget(j, "entry"),
	    jget(j, "entry"));
	cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
	cr_assert_eq(proto_decode_task(r->element[0]->element[1]->element[1]->str,
	    r->element[0]->element[1]->element[1]->len, &t, &err), 0);
	cr_assert(t.id.len == 3 && memcmp(t.id.ptr, "r-1", 3) == 0);
	cr_assert_eq(t.attempt, 4);
	cr_assert_eq(t.max_attempts, 5);
	cr_assert(t.reply_to.len == 17 &&
	    memcmp(t.reply_to.ptr, "hive:reply:nobody", 17) == 0);
	cr_assert_eq(t.payload.type, MSGPACK_OBJECT_MAP);
	proto_task_clear(&t);
	freeReplyObject(r);
	json_decref(j);
	cr_assert(!dead_listed(h, e));

	/* A direct queue's task goes to its agent's queue. */
	snprintf(key, sizeof(key), "%s:direct:d/1", h->prefix);
	dead_task(h, c, "r-2", NULL, HIVE_CODE_ATTEMPTS, 2, key, NULL, e,
	    sizeof(e));
	snprintf(path, sizeof(path), "/dead/%s/retry", e);
	j = post(h, path, NULL, &code);
	cr_assert_eq(code, 200);
	proto_key_agent_queue(key, sizeof(key), h->prefix, "d", 1);
	cr_assert_str_eq(jget(j, "stream"), key);
	json_decref(j);

	/* Not retryable: 409, and why. */
	proto_key_named(dkey, sizeof(dkey), h->prefix, "dead");
	d.id = HIVE_STR("bad-1");
	d.reason = HIVE_STR("malformed task");
	d.code = HIVE_CODE_MALFORMED;
	d.ts_ms = proto_now_ms();
	d.raw = HIVE_STR("\xc1 not msgpack");
	add_dead(h, c, &d, e, sizeof(e));
	retry_refused(h, e, "not a valid task");
	snprintf(path, sizeof(path), "/dead/%s", e);
	j = get(h, path, &code);
	cr_assert_eq(code, 200);
	cr_assert(json_is_null(json_object_get(json_object_get(j, "dead"),
	    "task")));
	cr_assert_str_eq(jget(json_object_get(j, "dead"), "raw_hex"),
	    "c1206e6f74206d73677061636b");
	cr_assert(json_is_false(json_object_get(json_object_get(j, "dead"),
	    "retryable")));
	json_decref(j);

	memset(&d, 0, sizeof(d));
	d.reason = HIVE_STR("workflow wf-x: task a exists already");
	d.code = HIVE_CODE_REFUSED;
	d.workflow = HIVE_STR("wf-x");
	d.ts_ms = proto_now_ms();
	d.raw = HIVE_STR("\x82\xa1v\x01\xa2id\xa4wf-x");
	add_dead(h, c, &d, e, sizeof(e));
	retry_refused(h, e, "refused workflow");

	memset(&d, 0, sizeof(d));
	d.id = HIVE_STR("noraw-1");
	d.reason = HIVE_STR("gave up");
	d.code = HIVE_CODE_ATTEMPTS;
	d.ts_ms = proto_now_ms();
	add_dead(h, c, &d, e, sizeof(e));
	retry_refused(h, e, "no message");

	dead_task(h, c, "wt-1", "idle", HIVE_CODE_ATTEMPTS, 2, NULL, "wf-2", e,
	    sizeof(e));
	retry_refused(h, e, "workflow wf-2");
	dead_task(h, c, "max-1", "idle", HIVE_CODE_ATTEMPTS, 1000, NULL, NULL,
	    e, sizeof(e));
	retry_refused(h, e, "1000 attempts");
	snprintf(key, sizeof(key), "%s:broadcast", h->prefix);
	dead_task(h, c, "bc-1", NULL, HIVE_CODE_ATTEMPTS, 1, key, NULL, e,
	    sizeof(e));
	retry_refused(h, e, "not come from a queue");

	post_bad(h, "/dead/1-1/retry", NULL, 404, "no dead letter");
	post_bad(h, "/dead/nonsense/retry", NULL, 404, "no dead letter");
	json_decref(get(h, "/dead/1-1", &code));
	cr_assert_eq(code, 404);
	stop_ok(h);
	redisFree(c);
}

static size_t
items(json_t *j)
{
	return json_array_size(json_object_get(j, "dead"));
}

/* GET /dead's pages and filters, and retries in bulk. */
Test(api_dead, list_filters_and_bulk_retry)
{
	struct hp *h = hp_new("dbulk");
	redisContext *c = tu_redis_connect();
	char a1[64], a2[64], b1[64], m1[64], path[256];
	struct hive_dead d = { 0 };
	json_t *j, *k;
	int code;

	start_plain(h);
	dead_task(h, c, "a-1", "a", HIVE_CODE_ATTEMPTS, 2, NULL, NULL, a1,
	    sizeof(a1));
	dead_task(h, c, "a-2", "a", HIVE_CODE_ATTEMPTS, 2, NULL, NULL, a2,
	    sizeof(a2));
	dead_task(h, c, "b-1", "b", HIVE_CODE_ATTEMPTS, 2, NULL, NULL, b1,
	    sizeof(b1));
	d.id = HIVE_STR("m-1");
	d.reason = HIVE_STR("malformed task");
	d.code = HIVE_CODE_MALFORMED;
	d.stream = HIVE_STR("x");
	d.ts_ms = proto_now_ms();
	d.raw = HIVE_STR("\xc1");
	add_dead(h, c, &d, m1, sizeof(m1));

	/* Newest first, two a page. */
	j = get(h, "/dead?limit=2", &code);
	cr_assert_eq(code, 200);
	cr_assert_eq(items(j), 2);
	k = json_array_get(json_object_get(j, "dead"), 0);
	cr_assert_str_eq(jget(k, "dead_id"), m1);
	cr_assert_str_eq(jget(k, "code"), "malformed");
	cr_assert(json_is_false(json_object_get(k, "retryable")));
	cr_assert_str_eq(jget(j, "next"), a2);
	snprintf(path, sizeof(path), "/dead?limit=2&cursor=%s", jget(j, "next"));
	json_decref(j);
	j = get(h, path, &code);
	cr_assert_eq(items(j), 2);
	cr_assert_str_eq(jget(json_array_get(json_object_get(j, "dead"), 1),
	    "dead_id"), a1);
	cr_assert(json_is_null(json_object_get(j, "next")));
	json_decref(j);
	/* Filters. */
	j = get(h, "/dead?capability=a", &code);
	cr_assert_eq(items(j), 2);
	json_decref(j);
	j = get(h, "/dead?code=malformed", &code);
	cr_assert_eq(items(j), 1);
	json_decref(j);
	json_decref(get(h, "/dead?code=nope", &code));
	cr_assert_eq(code, 400);
	json_decref(get(h, "/dead?capability=b%20c", &code));
	cr_assert_eq(code, 400);
	json_decref(get(h, "/dead?cursor=abc", &code));
	cr_assert_eq(code, 400);

	/* Bulk: a filter or all, nothing else. */
	post_bad(h, "/dead/retry", "{}", 400, "all");
	post_bad(h, "/dead/retry", "{\"all\": false}", 400, "all");
	post_bad(h, "/dead/retry", "{\"all\": 1}", 400, "all");
	post_bad(h, "/dead/retry", "{\"all\": true, \"bogus\": 1}", 400, "bogus");
	post_bad(h, "/dead/retry", "{\"code\": \"nope\"}", 400, "code");
	post_bad(h, "/dead/retry", "{\"all\": true, \"cursor\": \"x\"}", 400,
	    "cursor");
	j = post(h, "/dead/retry", "{\"code\": \"attempts\", \"capability\": "
	    "\"a\"}", &code);
	cr_assert_eq(code, 200);
	cr_assert_eq(json_integer_value(json_object_get(j, "retried")), 2);
	cr_assert_eq(json_integer_value(json_object_get(j, "skipped")), 0);
	cr_assert(json_is_null(json_object_get(j, "next")));
	json_decref(j);
	j = post(h, "/dead/retry", "{\"all\": true}", &code);
	cr_assert_eq(code, 200);
	cr_assert_eq(json_integer_value(json_object_get(j, "retried")), 1);
	cr_assert_eq(json_integer_value(json_object_get(j, "skipped")), 1);
	json_decref(j);
	cr_assert(!dead_listed(h, b1) && dead_listed(h, m1));
	stop_ok(h);
	redisFree(c);
}

/* One request looks at 1,000 dead letters at most, and says where to go
 * on: a filter that picks none of them cannot make it read them all. */
Test(api_dead, list_and_bulk_retry_are_bounded)
{
	struct hp *h = hp_new("dbound");
	redisContext *c = tu_redis_connect();
	char path[256], dkey[HIVE_KEY_MAX];
	struct hive_dead d = { 0 };
	msgpack_sbuffer sb;
	struct proto_err err;
	redisReply *r;
	json_t *j;
	int code;

	start_plain(h);
	d.id = HIVE_STR("m-1");
	d.reason = HIVE_STR("malformed task");
	d.code = HIVE_CODE_MALFORMED;
	d.stream = HIVE_STR("x");
	d.ts_ms = proto_now_ms();
	d.raw = HIVE_STR("\xc1");
	add_dead(h, c, &d, NULL, 0);
	/* 1,100 newer ones that no filter below picks */
	proto_key_named(dkey, sizeof(dkey), h->prefix, "dead");
	d.id = HIVE_STR("z-1");
	d.code = HIVE_CODE_TIMEOUT;
	d.raw = (struct hive_str){ 0 };
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_dead(&sb, &d, &err), 0);
	for (int i = 0; i < 1100; i++)
		redisAppendCommand(c, "XADD %s * m %b", dkey, sb.data, sb.size);
	for (int i = 0; i < 1100; i++) {
		cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
		freeReplyObject(r);
	}
	msgpack_sbuffer_destroy(&sb);
	j = get(h, "/dead?code=malformed", &code);
	cr_assert_eq(code, 200);
	cr_assert_eq(items(j), 0);
	cr_assert_not_null(json_string_value(json_object_get(j, "next")));
	snprintf(path, sizeof(path), "/dead?code=malformed&cursor=%s",
	    jget(j, "next"));
	json_decref(j);
	j = get(h, path, &code);
	cr_assert_eq(items(j), 1);
	cr_assert(json_is_null(json_object_get(j, "next")));
	json_decref(j);
	j = post(h, "/dead/retry", "{\"code\": \"dependency\"}", &code);
	cr_assert_eq(code, 200);
	cr_assert_eq(json_integer_value(json_object_get(j, "retried")), 0);
	cr_assert_eq(json_integer_value(json_object_get(j, "remaining")), 101);
	snprintf(path, sizeof(path), "{\"code\": \"dependency\", \"cursor\": "
	    "\"%s\"}", jget(j, "next"));
	json_decref(j);
	j = post(h, "/dead/retry", path, &code);
	cr_assert_eq(code, 200);
	cr_assert(json_is_null(json_object_get(j, "next")));
	cr_assert_eq(json_integer_value(json_object_get(j, "remaining")), 0);
	json_decref(j);
	stop_ok(h);
	redisFree(c);
}

/* A result on reply whose result's payload holds what the handler got. */
static json_t *
result_json(struct hp *h, redisContext *c, const char *reply)
{
	struct hive_result res;
	struct proto_err err;
	char *raw;
	json_t *j;

	wait_result(h, c, reply, &res, &raw);
	cr_assert_eq(res.status, HIVE_STATUS_OK);
	j = proto_obj_to_json(&res.result, &err);
	cr_assert_not_null(j);
	proto_result_clear(&res);
	free(raw);
	freeReplyObject(redisCommand(c, "DEL %s", reply));
	return j;
}

Test(api_dead, submit_tasks_and_workflows)
{
	struct hp *h = hp_new("dsub");
	redisContext *c = tu_redis_connect();
	char body[1024], r[4][160], key[HIVE_KEY_MAX];
	json_t *j, *res;
	size_t from = 0;
	int code;

	start_with_pg(h, &from);
	for (int i = 0; i < 4; i++)
		snprintf(r[i], sizeof(r[i]), "hive:reply:%s-s%d", h->prefix, i);

	/* A capability's queue; the id generated. */
	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"payload\": "
	    "{\"n\": 1}, \"reply_to\": \"%s\"}", r[0]);
	j = post(h, "/tasks", body, &code);
	cr_assert_eq(code, 201);
	cr_assert(strncmp(jget(j, "id"), "t-", 2) == 0 &&
	    strlen(jget(j, "id")) == 22, "generated id %s", jget(j, "id"));
	proto_key_queue(key, sizeof(key), h->prefix, "work", 1);
	cr_assert_str_eq(jget(j, "stream"), key);
	json_decref(j);
	res = result_json(h, c, r[0]);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(res,
	    "payload"), "n")), 1);
	json_decref(res);

	/* An agent's queue at a priority; one instance's direct queue. */
	snprintf(body, sizeof(body), "{\"agent\": \"d\", \"priority\": 2, "
	    "\"payload\": 2, \"reply_to\": \"%s\", \"max_attempts\": 5, "
	    "\"timeout_ms\": 60000}", r[1]);
	j = post(h, "/tasks", body, &code);
	cr_assert_eq(code, 201);
	proto_key_agent_queue(key, sizeof(key), h->prefix, "d", 2);
	cr_assert_str_eq(jget(j, "stream"), key);
	json_decref(j);
	json_decref(result_json(h, c, r[1]));
	snprintf(body, sizeof(body), "{\"agent\": \"d/1\", \"id\": \"direct-1\", "
	    "\"reply_to\": \"%s\"}", r[2]);
	j = post(h, "/tasks", body, &code);
	cr_assert_eq(code, 201);
	cr_assert_str_eq(jget(j, "id"), "direct-1");
	proto_key_direct(key, sizeof(key), h->prefix, "d", 1);
	cr_assert_str_eq(jget(j, "stream"), key);
	json_decref(j);
	json_decref(result_json(h, c, r[2]));

	/* A workflow: wb gets wa's result as its parent. */
	snprintf(body, sizeof(body), "{\"name\": \"pair\", \"tasks\": ["
	    "{\"id\": \"wa\", \"capability\": \"work\", \"payload\": {\"a\": 1}},"
	    "{\"id\": \"wb\", \"capability\": \"@d\", \"prio\": 2, "
	    "\"depends_on\": [\"wa\"], \"reply_to\": \"%s\"}]}", r[3]);
	j = post(h, "/workflows", body, &code);
	cr_assert_eq(code, 202, "POST /workflows: %d", code);
	cr_assert(strncmp(jget(j, "id"), "w-", 2) == 0);
	cr_assert_not_null(json_object_get(j, "entry"));
	json_decref(j);
	res = result_json(h, c, r[3]);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(
	    json_object_get(json_object_get(res, "parents"), "wa"), "payload"),
	    "a")), 1);
	json_decref(res);
	wait_sql(h, "SELECT state FROM workflows WHERE name = 'pair'",
	    "completed");
	stop_ok(h);
	redisFree(c);
}

/* Every bad body is a 4xx naming what is wrong, Redis is asked nothing,
 * and hived goes on serving. */
Test(api_dead, bad_bodies_are_refused)
{
	struct hp *h = hp_new("dbad");
	char deep[400], *big;
	size_t n = 0;
	int code;
	json_t *j;

	start_plain(h);
	post_bad(h, "/tasks", "not json", 400, NULL);
	post_bad(h, "/tasks", "[1, 2]", 400, NULL);
	post_bad(h, "/tasks", "{}", 400, "capability");
	post_bad(h, "/tasks", "{\"capability\": 5}", 400, "capability");
	post_bad(h, "/tasks", "{\"capability\": \"work\", \"bogus\": 1}", 400,
	    "bogus");
	post_bad(h, "/tasks", "{\"capability\": \"no space\"}", 400,
	    "capability");
	post_bad(h, "/tasks", "{\"capability\": \"work\", \"agent\": \"d\"}",
	    400, "agent");
	post_bad(h, "/tasks", "{\"agent\": \"d/0\"}", 400, "agent");
	post_bad(h, "/tasks", "{\"agent\": \"d/1\", \"priority\": 1}", 400,
	    "priority");
	post_bad(h, "/tasks", "{\"capability\": \"work\", \"id\": \"a b\"}",
	    400, "id");
	post_bad(h, "/tasks", "{\"capability\": \"work\", \"id\": 7}", 400, "id");
	post_bad(h, "/tasks", "{\"capability\": \"work\", \"priority\": 3}",
	    400, "priority");
	post_bad(h, "/tasks", "{\"capability\": \"work\", \"priority\": 1.5}",
	    400, "priority");
	post_bad(h, "/tasks", "{\"capability\": \"work\", \"max_attempts\": "
	    "1001}", 400, "max_attempts");
	post_bad(h, "/tasks", "{\"capability\": \"work\", \"timeout_ms\": -1}",
	    400, "timeout_ms");
	post_bad(h, "/tasks", "{\"capability\": \"work\", \"reply_to\": "
	    "\"elsewhere\"}", 400, "reply_to");
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "[");
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "]");
	big = malloc(1300000);
	n = (size_t)snprintf(big, 1300000, "{\"capability\": \"work\", "
	    "\"payload\": %s}", deep);
	post_bad(h, "/tasks", big, 400, "payload");
	n = (size_t)snprintf(big, 100, "{\"capability\": \"work\", "
	    "\"payload\": \"");
	memset(big + n, 'x', 1200000);
	snprintf(big + n + 1200000, 100, "\"}");
	post_bad(h, "/tasks", big, 400, "payload");
	free(big);
	/* Past the API's body limit (4 MiB). */
	big = malloc(5u << 20);
	memset(big, ' ', 5u << 20);
	big[0] = '{';
	big[(5u << 20) - 1] = '}';
	json_decref(http(h, "POST", "/tasks", HP_TOKEN, big, 5u << 20, &code));
	cr_assert(code == 413, "a 5 MiB body: %d", code);
	free(big);

	post_bad(h, "/workflows", "{}", 400, "tasks");
	post_bad(h, "/workflows", "{\"tasks\": []}", 400, "tasks");
	post_bad(h, "/workflows", "{\"tasks\": [{\"id\": \"a\"}]}", 400,
	    "tasks[0].capability");
	post_bad(h, "/workflows", "{\"tasks\": [{\"id\": \"a\", \"capability\": "
	    "\"w\", \"x\": 1}]}", 400, "tasks[0].x");
	post_bad(h, "/workflows", "{\"tasks\": [{\"id\": \"a\", \"capability\": "
	    "\"w\", \"depends_on\": [\"b\"]}, {\"id\": \"b\", \"capability\": "
	    "\"w\", \"depends_on\": [\"a\"]}]}", 400, "cycle");
	post_bad(h, "/workflows", "{\"tasks\": [{\"id\": \"a\", \"capability\": "
	    "\"w\", \"depends_on\": [\"zz\"]}]}", 400, "unknown");
	post_bad(h, "/workflows", "{\"tasks\": [{\"id\": \"a\", \"capability\": "
	    "\"w\", \"depends_on\": [1]}]}", 400, "tasks[0].depends_on[0]");
	json_decref(http(h, "POST", "/tasks", NULL, "{\"capability\": \"w\"}",
	    20, &code));
	cr_assert_eq(code, 401);

	/* Still serving. */
	j = post(h, "/tasks", "{\"capability\": \"elsewhere\"}", &code);
	cr_assert_eq(code, 201);
	json_decref(j);
	json_decref(get(h, "/agents", &code));
	cr_assert_eq(code, 200);
	stop_ok(h);
}

/* Redis down: every endpoint here answers 503 at once, and hived goes
 * on serving. */
Test(api_dead, redis_down_is_503)
{
	struct hp *h = hp_new("ddown");
	char agents[1024], *conf, *r, *nl, *out;
	size_t n;
	FILE *f;
	int code;

	agent_conf(agents, sizeof(agents));
	hp_write_conf(h, worker(), NULL, agents);
	/* nothing listens on port 1 */
	f = fopen(h->conf, "r");
	cr_assert(f != NULL);
	conf = calloc(1, 1 << 16);
	n = fread(conf, 1, (1 << 16) - 1, f);
	fclose(f);
	cr_assert(n > 0 && (r = strstr(conf, "redis = ")) != NULL);
	nl = strchr(r, '\n');
	out = calloc(1, 1 << 17);
	snprintf(out, 1 << 17, "%.*sredis = 127.0.0.1:1%s", (int)(r - conf),
	    conf, nl);
	f = fopen(h->conf, "w");
	cr_assert(f != NULL && fputs(out, f) >= 0 && fclose(f) == 0);
	free(conf);
	free(out);
	hp_start(h);

	json_decref(get(h, "/dead", &code));
	cr_assert_eq(code, 503);
	json_decref(get(h, "/dead/1-1", &code));
	cr_assert_eq(code, 503);
	post_bad(h, "/dead/1-1/retry", NULL, 503, "Redis");
	post_bad(h, "/dead/retry", "{\"all\": true}", 503, "Redis");
	post_bad(h, "/tasks", "{\"capability\": \"work\"}", 503, "Redis");
	post_bad(h, "/workflows", "{\"tasks\": [{\"id\": \"a\", \"capability\": "
	    "\"w\"}]}", 503, "Redis");
	/* a bad body is still a 400 */
	post_bad(h, "/tasks", "{\"capability\": 1}", 400, "capability");
	json_decref(get(h, "/agents", &code));
	cr_assert_eq(code, 200);
	stop_ok(h);
}
