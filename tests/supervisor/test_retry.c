/*
 * test_retry.c - retries on error end to end (worker/retry.c, the
 * recorder's <p>:scheduled r, migration 9): each failed attempt recorded
 * with its error, the next after its backoff, the last one's failure the
 * result (one result, to reply_to too); "retryable": false final at once;
 * "retry_after" honoured; agents that do not opt in keep today's final
 * errors.
 *
 * Real hived, hive-worker, Redis and PostgreSQL; the handler is
 * retry_handler.py (fails attempts below the payload's fail_until).
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

TestSuite(retry, .fini = hp_cleanup, .timeout = 120);

static char *
sql_text(const char *ci, const char *sql)
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

static void
wait_sql(struct hp *h, const char *ci, const char *sql, const char *want)
{
	long long end = tu_now_ms() + T_LONG;
	char *v = NULL;

	while (tu_now_ms() < end) {
		free(v);
		if ((v = sql_text(ci, sql)) != NULL && strcmp(v, want) == 0) {
			free(v);
			return;
		}
		hp_pump(h, 20);
	}
	if (h->log != NULL)
		fprintf(stderr, "hived's log, the end:\n%s\n",
		    h->len > 6000 ? h->log + h->len - 6000 : h->log);
	cr_assert_fail("%s: %s, want %s", sql, v ? v : "(none)", want);
}

static void
start(struct hp *h, char *ci, size_t cilen, const char *extra)
{
	char hive[1024], agents[1024], db[64];

	tu_pg_fresh_db("rty", db, sizeof(db), ci, cilen);
	snprintf(hive, sizeof(hive), "postgres = %s\n", ci);
	snprintf(agents, sizeof(agents),
	    "[agent \"r\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/retry_handler.py\n"
	    "capabilities = work\n"
	    "max_attempts = 3\n%s", getenv("HIVE_SOURCE_DIR"), extra);
	hp_write_conf(h, tu_build_path("worker/hive-worker"), hive, agents);
	hp_start(h);
}

static void
post(struct hp *h, const char *id, const char *payload, const char *reply)
{
	char body[512];
	json_t *j;
	int code;

	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"id\": \"%s\", "
	    "\"payload\": %s%s%s%s}", id, payload, reply ? ", \"reply_to\": \""
	    : "", reply ? reply : "", reply ? "\"" : "");
	j = hp_http_body(h, "POST", "/tasks", HP_TOKEN, body, &code);
	cr_assert_eq(code, 201, "%s: %d", body, code);
	json_decref(j);
}

static long long
xlen(redisContext *c, const char *key)
{
	redisReply *r = redisCommand(c, "XLEN %s", key);
	long long n = r->integer;

	freeReplyObject(r);
	return n;
}

/* Two failures, then success: each failure an attempt of its own with
 * its error, one result (the success), to reply_to too. */
Test(retry, attempts_recorded_then_success)
{
	struct hp *h = hp_new("rty1");
	char ci[512], key[HIVE_KEY_MAX], reply[128];
	redisContext *c = tu_redis_connect();

	start(h, ci, sizeof(ci), "retry_on_error = yes\nretry_backoff = 50ms\n");
	snprintf(reply, sizeof(reply), "hive:reply:%s", h->prefix);
	post(h, "ok3", "{\"fail_until\": 3}", reply);
	wait_sql(h, ci, "SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'ok3'", "completed 3");
	wait_sql(h, ci, "SELECT string_agg(attempt || ':' || state || ':' || "
	    "detail, ',' ORDER BY attempt) FROM task_attempts WHERE "
	    "task_id = 'ok3'", "1:failed:boom 1,2:failed:boom 2");
	proto_key_named(key, sizeof(key), h->prefix, "results");
	cr_assert_eq(xlen(c, key), 1, "one result, the last attempt's");
	cr_assert_eq(xlen(c, reply), 1, "one reply");
	freeReplyObject(redisCommand(c, "DEL %s", reply));
	redisFree(c);
}

/* Out of attempts: the last failure is the result; not retryable: final
 * at once; an agent without retry_on_error: final at once. */
Test(retry, final_failure_and_not_retryable)
{
	struct hp *h = hp_new("rty2");
	char ci[512], key[HIVE_KEY_MAX];
	redisContext *c = tu_redis_connect();

	start(h, ci, sizeof(ci), "retry_on_error = yes\nretry_backoff = 20ms\n");
	post(h, "never", "{\"fail_until\": 99}", NULL);
	post(h, "nope", "{\"fail_until\": 99, \"retryable\": false}", NULL);
	wait_sql(h, ci, "SELECT state || ' ' || attempts || ' ' || error FROM "
	    "tasks WHERE id = 'never'", "failed 3 boom 3");
	wait_sql(h, ci, "SELECT count(*) FROM task_attempts WHERE "
	    "task_id = 'never' AND state = 'failed'", "2");
	wait_sql(h, ci, "SELECT state || ' ' || attempts || ' ' || error FROM "
	    "tasks WHERE id = 'nope'", "failed 1 boom 1");
	proto_key_named(key, sizeof(key), h->prefix, "results");
	cr_assert_eq(xlen(c, key), 2, "one result per task");
	redisFree(c);
}

Test(retry, off_by_default)
{
	struct hp *h = hp_new("rty3");
	char ci[512];

	start(h, ci, sizeof(ci), "");
	post(h, "once", "{\"fail_until\": 99}", NULL);
	wait_sql(h, ci, "SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'once'", "failed 1");
}

/* retry_after overrides a backoff of an hour. */
Test(retry, retry_after_honoured)
{
	struct hp *h = hp_new("rty4");
	char ci[512];
	char *gap;

	start(h, ci, sizeof(ci), "retry_on_error = yes\nretry_backoff = 1h\n"
	    "retry_backoff_max = 1h\n");
	post(h, "after", "{\"fail_until\": 2, \"retry_after\": 0.4}", NULL);
	wait_sql(h, ci, "SELECT state || ' ' || attempts FROM tasks WHERE "
	    "id = 'after'", "completed 2");
	gap = sql_text(ci, "SELECT (extract(epoch FROM t.started_at - "
	    "a.finished_at) * 1000)::bigint FROM tasks t JOIN task_attempts a "
	    "ON a.task_id = t.id AND a.attempt = 1 WHERE t.id = 'after'");
	cr_assert_not_null(gap);
	fprintf(stderr, "retry: attempt 2 started %s ms after attempt 1 "
	    "failed (retry_after 400 ms)\n", gap);
	cr_assert_geq(atoll(gap), 400);
	free(gap);
}
