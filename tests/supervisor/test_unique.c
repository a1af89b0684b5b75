/*
 * test_unique.c - unique tasks (docs/PROTOCOL.md, Unique tasks; API.md
 * POST /tasks), end to end with real hived, hive-worker
 * (unique_handler.py) and Redis:
 *
 *   - a second submission while the first is queued, then running, gets
 *     the first's id and queues nothing; once the first completes a new
 *     one runs;
 *   - with unique_for, the key stays taken for the window after the end
 *     (not before it passes);
 *   - a failed task and a dead-lettered one release the key; while the
 *     handler's death is retried the key stays taken; a message that
 *     does not decode but names its unique_key releases it too;
 *   - two processes submitting the same keys at once, each to its own
 *     hived (two hosts sharing Redis): exactly one queued per key; the
 *     raw clients' script from two processes: the same;
 *   - a delayed unique task holds its key while scheduled (its TTL
 *     counted from its time), releases it when it ends; a handler's
 *     error retried after a backoff keeps it;
 *   - bad unique_key / unique_for: 400.
 *
 * Waits are for events: HTTP answers, log lines, a stream entry (XREAD
 * BLOCK on the reply stream, written in the same MULTI/EXEC as the
 * lock's release).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
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

TestSuite(unique, .fini = hp_cleanup, .timeout = 120);

static const char *
worker(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s", tu_build_path("worker/hive-worker"));
	return path;
}

/* Agent "u" (capability work) running unique_handler.py, or none (cap
 * "other": tasks for work stay queued). */
static void
start(struct hp *h, int with_agent)
{
	char agents[1024];

	snprintf(agents, sizeof(agents),
	    "[agent \"u\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/unique_handler.py\n"
	    "capabilities = %s\n"
	    "max_attempts = 2\n"
	    "retry_on_error = yes\n"
	    "retry_backoff = 100ms\n"
	    "restart_limit = 1000\n"
	    "restart_window = 1s\n", getenv("HIVE_SOURCE_DIR"),
	    with_agent ? "work" : "other");
	hp_write_conf(h, worker(), NULL, agents);
	hp_start(h);
	if (with_agent) {
		size_t f = 0;
		hp_wait(h, &f, T_LONG, "agent=u/1", "state=ready", NULL);
	}
}

/* POST /tasks with body (printf); the answer, its status in *code. */
static json_t *
post(struct hp *h, int *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static json_t *
post(struct hp *h, int *code, const char *fmt, ...)
{
	char body[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	return hp_http_body(h, "POST", "/tasks", HP_TOKEN, body, code);
}

/* POST, want 201: the new task's id (static buffer). */
static const char *
post_new(struct hp *h, const char *body)
{
	static char id[HIVE_ID_MAX + 1];
	int code;
	json_t *j = post(h, &code, "%s", body);

	cr_assert_eq(code, 201, "POST %s: %d", body, code);
	cr_assert(json_object_get(j, "duplicate") == NULL);
	snprintf(id, sizeof(id), "%s",
	    json_string_value(json_object_get(j, "id")));
	json_decref(j);
	return id;
}

/* POST, want 200 duplicate of want_id. */
static void
post_dup(struct hp *h, const char *body, const char *want_id)
{
	int code;
	json_t *j = post(h, &code, "%s", body);

	cr_assert_eq(code, 200, "POST %s: %d", body, code);
	cr_assert(json_is_true(json_object_get(j, "duplicate")));
	cr_assert_str_eq(json_string_value(json_object_get(j, "id")), want_id);
	json_decref(j);
}

static long long
rint_(redisContext *c, const char *fmt, const char *a1)
{
	redisReply *r = redisCommand(c, fmt, a1);
	long long v;

	cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER, "%s", fmt);
	v = r->integer;
	freeReplyObject(r);
	return v;
}

/* The holder of the lock key (static buffer), "" when none. */
static const char *
holder(redisContext *c, const struct hp *h, const char *key)
{
	static char id[HIVE_ID_MAX + 1];
	char lock[HIVE_KEY_MAX];
	redisReply *r;

	cr_assert(proto_key_unique(lock, sizeof(lock), h->prefix, key) > 0);
	r = redisCommand(c, "GET %s", lock);
	cr_assert(r != NULL);
	snprintf(id, sizeof(id), "%s", r->type == REDIS_REPLY_STRING ? r->str :
	    "");
	freeReplyObject(r);
	return id;
}

static long long
qlen(redisContext *c, const struct hp *h)
{
	char key[HIVE_KEY_MAX];

	proto_key_queue(key, sizeof(key), h->prefix, "work", 1);
	return rint_(c, "XLEN %s", key);
}

/* Wait for the next entry of stream key after *last (XREAD BLOCK). */
static void
wait_entry(redisContext *c, const char *key, char *last, size_t len)
{
	redisReply *r = redisCommand(c, "XREAD COUNT 1 BLOCK %d STREAMS %s %s",
	    T_LONG, key, last);

	cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY, "nothing on %s",
	    key);
	snprintf(last, len, "%s",
	    r->element[0]->element[1]->element[0]->element[0]->str);
	freeReplyObject(r);
}

Test(unique, queued_duplicate_and_bad_fields)
{
	struct hp *h = hp_new("uq");
	redisContext *c = tu_redis_connect();
	char first[HIVE_ID_MAX + 1];
	json_t *j;
	int code;

	start(h, 0);
	snprintf(first, sizeof(first), "%s", post_new(h, "{\"capability\": "
	    "\"work\", \"unique_key\": \"rep:1\"}"));
	cr_assert_str_eq(holder(c, h, "rep:1"), first);
	/* Another id, the same key: the first's id, nothing queued. */
	post_dup(h, "{\"capability\": \"work\", \"id\": \"other\", "
	    "\"unique_key\": \"rep:1\", \"unique_for\": \"10m\"}", first);
	post_dup(h, "{\"capability\": \"work\", \"unique_key\": \"rep:1\", "
	    "\"unique_for\": \"1500\"}", first);
	/* The same id again: the same answer (an id is idempotent anyway). */
	j = post(h, &code, "{\"capability\": \"work\", \"id\": \"%s\", "
	    "\"unique_key\": \"rep:1\"}", first);
	cr_assert_eq(code, 200);
	json_decref(j);
	cr_assert_eq(qlen(c, h), 1, "one task queued");
	/* Another key is another lock. */
	post_new(h, "{\"capability\": \"work\", \"unique_key\": \"rep:2\"}");
	cr_assert_eq(qlen(c, h), 2);
	/* The lock has its safety TTL. */
	{
		char lock[HIVE_KEY_MAX];
		long long ttl;

		proto_key_unique(lock, sizeof(lock), h->prefix, "rep:1");
		ttl = rint_(c, "PTTL %s", lock);
		cr_assert(ttl > 0 && ttl <= (long long)HIVE_UNIQUE_TTL_MS,
		    "PTTL %lld", ttl);
	}
	/* Bad fields: 400, nothing queued, no lock. */
	static const char *const bad[] = {
		"{\"capability\": \"work\", \"unique_key\": \"a b\"}",
		"{\"capability\": \"work\", \"unique_key\": \"\"}",
		"{\"capability\": \"work\", \"unique_key\": 5}",
		"{\"capability\": \"work\", \"unique_key\": \"k\", "
		    "\"unique_for\": \"ten\"}",
		"{\"capability\": \"work\", \"unique_key\": \"k\", "
		    "\"unique_for\": -1}",
		"{\"capability\": \"work\", \"unique_key\": \"k\", "
		    "\"unique_for\": \"366d\"}",
		"{\"capability\": \"work\", \"unique_for\": \"1s\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		j = post(h, &code, "%s", bad[i]);
		cr_assert_eq(code, 400, "%s: %d", bad[i], code);
		json_decref(j);
	}
	cr_assert_str_eq(holder(c, h, "k"), "");
	cr_assert_eq(qlen(c, h), 2);
	redisFree(c);
}

Test(unique, running_then_completed_then_window)
{
	struct hp *h = hp_new("ur");
	redisContext *c = tu_redis_connect();
	char hold[600], body[1024], first[HIVE_ID_MAX + 1], last[64] = "0";
	char reply[HIVE_KEY_MAX];
	size_t f = 0;
	FILE *fp;

	start(h, 1);
	snprintf(hold, sizeof(hold), "%s/hold", h->dir);
	cr_assert((fp = fopen(hold, "w")) != NULL);
	fclose(fp);
	snprintf(reply, sizeof(reply), "hive:reply:%s", h->prefix);
	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"unique_key\": "
	    "\"nightly\", \"reply_to\": \"%s\", \"payload\": {\"hold\": "
	    "\"%s\"}}", reply, hold);
	snprintf(first, sizeof(first), "%s", post_new(h, body));
	hp_wait(h, &f, T_LONG, "agent=u/1", "state=busy", NULL);
	/* Running: a duplicate, nothing queued. */
	post_dup(h, body, first);
	cr_assert_eq(qlen(c, h), 1, "only the first was ever queued");
	cr_assert_str_eq(holder(c, h, "nightly"), first);
	unlink(hold);
	wait_entry(c, reply, last, sizeof(last));
	/* Completed: the lock went with the result; a new one runs. */
	cr_assert_str_eq(holder(c, h, "nightly"), "");
	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"unique_key\": "
	    "\"nightly\", \"unique_for\": \"1h\", \"reply_to\": \"%s\"}", reply);
	snprintf(first, sizeof(first), "%s", post_new(h, body));
	wait_entry(c, reply, last, sizeof(last));
	/* With a window: still taken after the end, by the finished task,
	 * for at most the window. */
	cr_assert_str_eq(holder(c, h, "nightly"), first);
	{
		char lock[HIVE_KEY_MAX];
		long long ttl;

		proto_key_unique(lock, sizeof(lock), h->prefix, "nightly");
		ttl = rint_(c, "PTTL %s", lock);
		cr_assert(ttl > 0 && ttl <= 3600000, "PTTL %lld", ttl);
		post_dup(h, body, first);
		/* The window passes (made short here): free again. */
		freeReplyObject(redisCommand(c, "PEXPIRE %s 1", lock));
		while (holder(c, h, "nightly")[0] != '\0')
			hp_pump(h, 5);
	}
	post_new(h, body);
	wait_entry(c, reply, last, sizeof(last));
	redisFree(c);
}

Test(unique, failed_and_dead_lettered_release)
{
	struct hp *h = hp_new("uf");
	redisContext *c = tu_redis_connect();
	char die[600], body[1024], first[HIVE_ID_MAX + 1], last[64] = "0";
	char reply[HIVE_KEY_MAX], dead[HIVE_KEY_MAX], dlast[64] = "0";
	size_t f = 0;
	FILE *fp;

	start(h, 1);
	snprintf(reply, sizeof(reply), "hive:reply:%s", h->prefix);
	proto_key_named(dead, sizeof(dead), h->prefix, "dead");
	/* An error result is the task's end: released. */
	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"unique_key\": "
	    "\"f\", \"reply_to\": \"%s\", \"payload\": {\"fail\": true}}",
	    reply);
	post_new(h, body);
	wait_entry(c, reply, last, sizeof(last));
	cr_assert_str_eq(holder(c, h, "f"), "");
	/* The handler dies: retried (the key stays taken), then out of
	 * attempts: a dead letter, released. */
	snprintf(die, sizeof(die), "%s/die", h->dir);
	cr_assert((fp = fopen(die, "w")) != NULL);
	fclose(fp);
	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"unique_key\": "
	    "\"d\", \"payload\": {\"die\": \"%s\"}}", die);
	snprintf(first, sizeof(first), "%s", post_new(h, body));
	hp_wait(h, &f, T_LONG, "attempt=2", NULL);
	cr_assert_str_eq(holder(c, h, "d"), first, "kept across the retry");
	post_dup(h, body, first);
	wait_entry(c, dead, dlast, sizeof(dlast));
	cr_assert_str_eq(holder(c, h, "d"), "");
	unlink(die);
	post_new(h, body);
	/* A message the worker cannot decode (v 2) that names its id and
	 * unique_key: its dead letter releases the lock. */
	{
		static const char v2[] = "\x83\xa1v\x02\xa2id\xa4v2-7"
		    "\xaaunique_key\xa3" "bad";
		char lock[HIVE_KEY_MAX], q[HIVE_KEY_MAX];

		proto_key_unique(lock, sizeof(lock), h->prefix, "bad");
		proto_key_queue(q, sizeof(q), h->prefix, "work", 1);
		freeReplyObject(redisCommand(c, "SET %s v2-7 PX 3600000", lock));
		tu_xadd(c, q, v2, sizeof(v2) - 1);
		wait_entry(c, dead, dlast, sizeof(dlast));
		cr_assert_str_eq(holder(c, h, "bad"), "");
	}
	redisFree(c);
}

Test(unique, delayed_and_retried_keep_the_key)
{
	struct hp *h = hp_new("ud");
	redisContext *c = tu_redis_connect();
	char first[HIVE_ID_MAX + 1], body[1024], reply[HIVE_KEY_MAX];
	char delayed[HIVE_KEY_MAX], lock[HIVE_KEY_MAX], last[64] = "0";
	size_t f = 0;
	int code;
	json_t *j;

	start(h, 1);
	snprintf(reply, sizeof(reply), "hive:reply:%s", h->prefix);
	proto_key_named(delayed, sizeof(delayed), h->prefix, "delayed");
	/* Scheduled an hour ahead: it holds the key from now, for an hour
	 * more than the safety TTL; nothing is on the queue. */
	j = post(h, &code, "{\"capability\": \"work\", \"unique_key\": "
	    "\"later\", \"delay\": \"1h\"}");
	cr_assert_eq(code, 201);
	cr_assert_str_eq(json_string_value(json_object_get(j, "state")),
	    "scheduled");
	snprintf(first, sizeof(first), "%s",
	    json_string_value(json_object_get(j, "id")));
	json_decref(j);
	cr_assert_str_eq(holder(c, h, "later"), first);
	proto_key_unique(lock, sizeof(lock), h->prefix, "later");
	cr_assert(rint_(c, "PTTL %s", lock) > (long long)HIVE_UNIQUE_TTL_MS);
	post_dup(h, "{\"capability\": \"work\", \"unique_key\": \"later\"}",
	    first);
	cr_assert_eq(rint_(c, "ZCARD %s", delayed), 1);
	cr_assert_eq(qlen(c, h), 0);
	/* Due soon: a duplicate while scheduled; released when it ends. */
	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"unique_key\": "
	    "\"soon\", \"delay\": \"300ms\", \"reply_to\": \"%s\"}", reply);
	snprintf(first, sizeof(first), "%s", post_new(h, body));
	post_dup(h, body, first);
	wait_entry(c, reply, last, sizeof(last));
	cr_assert_str_eq(holder(c, h, "soon"), "");
	/* An error retried (after an hour, as the handler asks): the key
	 * stays taken while the task waits for its next attempt. */
	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"unique_key\": "
	    "\"r\", \"payload\": {\"fail\": true, \"retry_after\": 3600}}");
	snprintf(first, sizeof(first), "%s", post_new(h, body));
	hp_wait(h, &f, T_LONG, first, "failed, retry", NULL);
	cr_assert_str_eq(holder(c, h, "r"), first);
	post_dup(h, body, first);
	redisFree(c);
}

/* ---- two processes at once ---- */

/* A blocking POST /tasks to 127.0.0.1:port: the status (0: failed). */
static int
raw_post(unsigned port, const char *body, char *resp, size_t rlen)
{
	struct sockaddr_in sa;
	char req[2048];
	size_t off = 0;
	ssize_t n;
	int s, code = 0;

	if ((s = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto out;
	n = snprintf(req, sizeof(req), "POST /tasks HTTP/1.1\r\nHost: x\r\n"
	    "Connection: close\r\nAuthorization: Bearer " HP_TOKEN "\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	    strlen(body), body);
	if (write(s, req, (size_t)n) != n)
		goto out;
	while (off + 1 < rlen && (n = read(s, resp + off, rlen - off - 1)) > 0)
		off += (size_t)n;
	resp[off] = '\0';
	if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1)
		code = 0;
out:
	close(s);
	return code;
}

#define RACE_KEYS 20

/* Child: POST each key once to port, after the go pipe closes; exit
 * status: how many were queued (201), 255 on any other answer. */
static void
racer(unsigned port, int go[2], const char *tag)
{
	char body[512], resp[4096], c;
	int queued = 0, code;

	close(go[1]);
	(void)!read(go[0], &c, 1);          /* EOF: every writer closed it */
	for (int i = 0; i < RACE_KEYS; i++) {
		snprintf(body, sizeof(body), "{\"capability\": \"work\", "
		    "\"id\": \"%s-%d\", \"unique_key\": \"race-%d\"}", tag, i, i);
		code = raw_post(port, body, resp, sizeof(resp));
		if (code == 201)
			queued++;
		else if (code != 200 || strstr(resp, "\"duplicate\"") == NULL)
			_exit(255);
	}
	_exit(queued);
}

Test(unique, two_hosts_two_processes_at_once)
{
	struct hp *a = hp_new("ua"), *b = hp_new("ub");
	redisContext *c = tu_redis_connect();
	pid_t pa, pb;
	int go[2], sa, sb;

	memcpy(b->prefix, a->prefix, sizeof(b->prefix));
	start(a, 0);
	start(b, 0);
	cr_assert(pipe(go) == 0);
	if ((pa = fork()) == 0)
		racer(a->port, go, "a");
	if ((pb = fork()) == 0)
		racer(b->port, go, "b");
	close(go[0]);
	close(go[1]);                   /* both go */
	cr_assert(waitpid(pa, &sa, 0) == pa && waitpid(pb, &sb, 0) == pb);
	cr_assert(WIFEXITED(sa) && WIFEXITED(sb) && WEXITSTATUS(sa) != 255 &&
	    WEXITSTATUS(sb) != 255, "an answer neither 201 nor a duplicate");
	cr_assert_eq(WEXITSTATUS(sa) + WEXITSTATUS(sb), RACE_KEYS,
	    "exactly one queued per key (a %d, b %d)", WEXITSTATUS(sa),
	    WEXITSTATUS(sb));
	cr_assert_eq(qlen(c, a), RACE_KEYS);
	for (int i = 0; i < RACE_KEYS; i++) {
		char k[32];
		const char *id;

		snprintf(k, sizeof(k), "race-%d", i);
		id = holder(c, a, k);
		cr_assert(id[0] == 'a' || id[0] == 'b', "%s held by '%s'", k, id);
	}
	redisFree(c);
}

/* Raw clients (docs/PROTOCOL.md): the script from two processes at once,
 * 200 keys each: one winner per key, one entry per winner. */
Test(unique, raw_script_two_processes)
{
	char prefix[96], q[HIVE_KEY_MAX];
	redisContext *c = tu_redis_connect();
	pid_t p[2];
	int go[2], st, won = 0;

	tu_unique(prefix, sizeof(prefix), "uraw");
	proto_key_queue(q, sizeof(q), prefix, "work", 1);
	cr_assert(pipe(go) == 0);
	for (int k = 0; k < 2; k++) {
		if ((p[k] = fork()) != 0)
			continue;
		redisContext *rc = tu_redis_connect();
		char ch, lock[HIVE_KEY_MAX], id[32], key[32];
		int n = 0;

		close(go[1]);
		(void)!read(go[0], &ch, 1);
		for (int i = 0; i < 200; i++) {
			redisReply *r;

			snprintf(key, sizeof(key), "k%d", i);
			snprintf(id, sizeof(id), "p%d-%d", k, i);
			proto_key_unique(lock, sizeof(lock), prefix, key);
			r = redisCommand(rc, "EVAL %s 2 %s %s %s %s %s",
			    proto_unique_submit_lua, lock, q, id, "86400000",
			    "msg");
			if (r == NULL || r->type != REDIS_REPLY_ARRAY)
				_exit(255);
			n += r->element[0]->integer == 1;
			freeReplyObject(r);
		}
		_exit(n);
	}
	close(go[0]);
	close(go[1]);
	for (int k = 0; k < 2; k++) {
		cr_assert(waitpid(p[k], &st, 0) == p[k] && WIFEXITED(st) &&
		    WEXITSTATUS(st) != 255);
		won += WEXITSTATUS(st);
	}
	cr_assert_eq(won, 200);
	cr_assert_eq(rint_(c, "XLEN %s", q), 200);
	redisFree(c);
}
