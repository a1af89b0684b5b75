/*
 * test_task_output.c - a task's output stream (<prefix>:output:<id>): what a
 * stream handler writes as progress and chunk lines, as the worker puts
 * it into Redis (docs/PROTOCOL.md, output stream).  A real worker against
 * the private Redis with tests/worker/output_handler.py.
 *
 * Nothing waits by time: results are awaited with XREAD BLOCK, the
 * stream's expiry with a keyspace notification.  Deadlines are failure
 * guards only.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "hive_proto.h"
#include "testutil.h"

#define GUARD_MS 30000      /* a failure guard, never a timing */

struct ot {
	char prefix[64];
	redisContext *rc;
	char last[64];              /* the last result read */
	pid_t worker;
};

/* One entry of an output stream. */
struct oentry {
	char id[64];
	char t[16];
	json_t *d;
};

static const char *
env(const char *name)
{
	const char *v = getenv(name);

	cr_assert(v != NULL, "%s not set: run through meson test", name);
	return v;
}

static void
ot_start(struct ot *t, const char *tag, const char *ttl_ms)
{
	const char *argv[32];
	char redis[128];
	int n = 0;

	memset(t, 0, sizeof(*t));
	tu_unique(t->prefix, sizeof(t->prefix), tag);
	t->rc = tu_redis_connect();
	snprintf(t->last, sizeof(t->last), "0");
	snprintf(redis, sizeof(redis), "%s:%s", env("HIVE_TEST_REDIS_HOST"),
	    env("HIVE_TEST_REDIS_PORT"));
	argv[n++] = env("HIVE_WORKER");
	argv[n++] = "--agent";
	argv[n++] = "a";
	argv[n++] = "--prefix";
	argv[n++] = t->prefix;
	argv[n++] = "--redis";
	argv[n++] = redis;
	argv[n++] = "--host";
	argv[n++] = t->prefix;
	argv[n++] = "--capabilities";
	argv[n++] = "c";
	argv[n++] = "--concurrency";
	argv[n++] = "4";
	if (ttl_ms != NULL) {
		argv[n++] = "--output-ttl";
		argv[n++] = ttl_ms;
	}
	argv[n++] = "--";
	argv[n++] = "python3";
	argv[n++] = env("HIVE_OUTPUT_HANDLER");
	argv[n] = NULL;
	t->worker = fork();
	cr_assert(t->worker >= 0);
	if (t->worker == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		tu_execv(argv);
	}
}

static void
ot_stop(struct ot *t)
{
	redisReply *r, *k;
	char pat[96];
	int st;

	kill(t->worker, SIGTERM);
	cr_assert_eq(waitpid(t->worker, &st, 0), t->worker);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "worker exit status %#x, want 0", st);
	snprintf(pat, sizeof(pat), "%s:*", t->prefix);
	r = redisCommand(t->rc, "KEYS %s", pat);
	if (r && r->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i < r->elements; i++) {
			k = redisCommand(t->rc, "DEL %s", r->element[i]->str);
			freeReplyObject(k);
		}
	freeReplyObject(r);
	redisFree(t->rc);
}

static void
submit(struct ot *t, const char *id, const char *payload)
{
	struct hive_task task;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_loads(payload, 0, NULL);
	char key[HIVE_KEY_MAX];

	cr_assert(j != NULL, "bad payload %s", payload);
	cr_assert(proto_key_queue(key, sizeof(key), t->prefix, "c", 1) > 0);
	msgpack_zone_init(&z, 1024);
	memset(&task, 0, sizeof(task));
	task.v = HIVE_PROTO_VERSION;
	task.id = HIVE_STR(id);
	cr_assert_eq(proto_json_to_obj(j, &z, &task.payload, &err), 0);
	task.attempt = 1;
	task.created_ms = proto_now_ms();
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_task(&sb, &task, &err), 0);
	tu_xadd(t->rc, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(j);
}

/* The next result (XREAD BLOCK); its task id into id, its status back. */
static int
next_result(struct ot *t, char *id, size_t idlen)
{
	struct hive_result hr;
	struct proto_err err;
	char key[HIVE_KEY_MAX];
	redisReply *r, *e;
	long long deadline = tu_now_ms() + GUARD_MS;
	int status;

	cr_assert(proto_key_named(key, sizeof(key), t->prefix, "results") > 0);
	for (;;) {
		long long left = deadline - tu_now_ms();
		cr_assert(left > 0, "no result within %d ms", GUARD_MS);
		r = redisCommand(t->rc, "XREAD COUNT 1 BLOCK %lld STREAMS %s %s",
		    left, key, t->last);
		cr_assert(r != NULL, "XREAD: %s", t->rc->errstr);
		if (r->type == REDIS_REPLY_ARRAY)
			break;
		freeReplyObject(r);
	}
	e = r->element[0]->element[1]->element[0];
	snprintf(t->last, sizeof(t->last), "%s", e->element[0]->str);
	cr_assert_eq(proto_decode_result(e->element[1]->element[1]->str,
	    e->element[1]->element[1]->len, &hr, &err), 0);
	snprintf(id, idlen, "%.*s", (int)hr.id.len, hr.id.ptr);
	status = hr.status;
	proto_result_clear(&hr);
	freeReplyObject(r);
	return status;
}

/* The whole output stream of task id: its entries into es (at most max),
 * their number back. */
static size_t
read_output(struct ot *t, const char *id, struct oentry *es, size_t max)
{
	char key[HIVE_KEY_MAX];
	redisReply *r, *e;
	size_t n = 0;

	cr_assert(proto_key_output(key, sizeof(key), t->prefix, id) > 0);
	r = redisCommand(t->rc, "XRANGE %s - +", key);
	cr_assert(r && r->type == REDIS_REPLY_ARRAY, "XRANGE %s", key);
	for (size_t i = 0; i < r->elements && n < max; i++, n++) {
		e = r->element[i];
		snprintf(es[n].id, sizeof(es[n].id), "%s", e->element[0]->str);
		cr_assert_eq(e->element[1]->elements, 4, "fields t and d");
		cr_assert_str_eq(e->element[1]->element[0]->str, "t");
		cr_assert_str_eq(e->element[1]->element[2]->str, "d");
		snprintf(es[n].t, sizeof(es[n].t), "%s",
		    e->element[1]->element[1]->str);
		es[n].d = json_loads(e->element[1]->element[3]->str,
		    JSON_DECODE_ANY, NULL);
		cr_assert(es[n].d != NULL, "d is not JSON: %s",
		    e->element[1]->element[3]->str);
	}
	freeReplyObject(r);
	return n;
}

static void
free_output(struct oentry *es, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_decref(es[i].d);
}

static long long
ms_of(const char *entry)
{
	return strtoll(entry, NULL, 10);
}

/* The chunks of a stream joined, and the last entry is its end. */
static void
check_joined(struct oentry *es, size_t n, const char *want,
    const char *status)
{
	char got[65536] = "";
	size_t len = 0;

	cr_assert(n >= 1, "no output");
	for (size_t i = 0; i + 1 < n; i++) {
		cr_assert_str_neq(es[i].t, "end", "end before the last entry");
		if (strcmp(es[i].t, "chunk") != 0)
			continue;
		cr_assert(json_is_string(es[i].d));
		len += (size_t)snprintf(got + len, sizeof(got) - len, "%s",
		    json_string_value(es[i].d));
	}
	cr_assert_str_eq(got, want);
	cr_assert_str_eq(es[n - 1].t, "end");
	cr_assert_str_eq(json_string_value(json_object_get(es[n - 1].d,
	    "status")), status);
}

Test(output, chunks_in_order_before_the_result)
{
	struct ot t;
	struct oentry es[64];
	char id[HIVE_ID_MAX + 1];
	size_t n;

	ot_start(&t, "ochunks", NULL);
	submit(&t, "t1", "{\"op\":\"chunks\",\"n\":5}");
	cr_assert_eq(next_result(&t, id, sizeof(id)), HIVE_STATUS_OK);
	cr_assert_str_eq(id, "t1");
	/* Read once the result is there: the chunks and the end are. */
	n = read_output(&t, "t1", es, 64);
	check_joined(es, n, "c0 c1 c2 c3 c4 ", "completed");
	free_output(es, n);

	submit(&t, "t2", "{\"op\":\"fail\"}");
	cr_assert_eq(next_result(&t, id, sizeof(id)), HIVE_STATUS_ERROR);
	n = read_output(&t, "t2", es, 64);
	check_joined(es, n, "before failing", "failed");
	cr_assert_str_eq(json_string_value(json_object_get(es[n - 1].d,
	    "code")), "failed");
	free_output(es, n);

	/* A task that wrote nothing has no stream at all. */
	submit(&t, "t3", "{\"op\":\"none\"}");
	cr_assert_eq(next_result(&t, id, sizeof(id)), HIVE_STATUS_OK);
	cr_assert_eq(read_output(&t, "t3", es, 64), 0);
	ot_stop(&t);
}

Test(output, a_flood_is_coalesced)
{
	struct ot t;
	static struct oentry es[4000];
	static char want[40000];
	char id[HIVE_ID_MAX + 1];
	size_t n, len = 0, chunks = 0;
	long long span;

	for (int i = 0; i < 2000; i++)
		len += (size_t)snprintf(want + len, sizeof(want) - len,
		    "c%d ", i);
	ot_start(&t, "oflood", NULL);
	submit(&t, "f", "{\"op\":\"chunks\",\"n\":2000}");
	cr_assert_eq(next_result(&t, id, sizeof(id)), HIVE_STATUS_OK);
	n = read_output(&t, "f", es, 4000);
	check_joined(es, n, want, "completed");
	for (size_t i = 0; i < n; i++)
		chunks += strcmp(es[i].t, "chunk") == 0;
	/* One chunk entry per write, a write per 50 ms at most, and the last
	 * with the end: never one entry per line. */
	span = ms_of(es[n - 1].id) - ms_of(es[0].id);
	cr_assert(chunks < 2000 && chunks <= (size_t)(span / 50) + 2,
	    "%zu chunk entries for 2000 lines over %lld ms", chunks, span);
	free_output(es, n);
	ot_stop(&t);
}

Test(output, progress_latest_wins)
{
	struct ot t;
	static struct oentry es[2000];
	char id[HIVE_ID_MAX + 1];
	size_t n, np = 0;
	long long prev = -1, i;

	ot_start(&t, "oprog", NULL);
	submit(&t, "p", "{\"op\":\"progress\",\"n\":1000}");
	cr_assert_eq(next_result(&t, id, sizeof(id)), HIVE_STATUS_OK);
	n = read_output(&t, "p", es, 2000);
	cr_assert(n >= 2);
	for (size_t k = 0; k + 1 < n; k++) {
		cr_assert_str_eq(es[k].t, "progress");
		i = json_integer_value(json_object_get(es[k].d, "i"));
		cr_assert_gt(i, prev, "progress went back: %lld after %lld",
		    i, prev);
		prev = i;
		np++;
	}
	cr_assert_eq(prev, 999, "the last progress written is the latest");
	cr_assert_lt(np, 1000, "%zu progress entries for 1000 lines", np);
	cr_assert_str_eq(es[n - 1].t, "end");
	free_output(es, n);

	/* Both in one line; a line with a progress of the wrong type keeps
	 * its chunk. */
	submit(&t, "b", "{\"op\":\"both\"}");
	cr_assert_eq(next_result(&t, id, sizeof(id)), HIVE_STATUS_OK);
	n = read_output(&t, "b", es, 2000);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(es[0].t, "chunk");
	cr_assert_str_eq(json_string_value(es[0].d), "x");
	cr_assert_str_eq(es[1].t, "progress");
	cr_assert_eq(json_integer_value(json_object_get(es[1].d, "step")), 1);
	free_output(es, n);
	submit(&t, "bad", "{\"op\":\"bad\"}");
	cr_assert_eq(next_result(&t, id, sizeof(id)), HIVE_STATUS_OK);
	n = read_output(&t, "bad", es, 2000);
	check_joined(es, n, "kept", "completed");
	free_output(es, n);
	ot_stop(&t);
}

Test(output, line_for_an_unknown_task_is_dropped)
{
	struct ot t;
	struct oentry es[8];
	char id[HIVE_ID_MAX + 1];

	ot_start(&t, "ounk", NULL);
	submit(&t, "u", "{\"op\":\"unknown\"}");
	cr_assert_eq(next_result(&t, id, sizeof(id)), HIVE_STATUS_OK);
	cr_assert_str_eq(id, "u");
	cr_assert_eq(read_output(&t, "nope-u", es, 8), 0);
	cr_assert_eq(read_output(&t, "u", es, 8), 0);
	ot_stop(&t);
}

Test(output, the_stream_expires)
{
	struct ot t;
	struct oentry es[8];
	char id[HIVE_ID_MAX + 1], key[HIVE_KEY_MAX];
	redisContext *sub = tu_redis_connect();
	redisReply *r;
	struct timeval tv = { GUARD_MS / 1000, 0 };
	size_t n;
	bool gone = false;

	/* Expired keys are announced: subscribe before the key exists. */
	r = redisCommand(sub, "CONFIG SET notify-keyspace-events Ex");
	cr_assert(r && r->type == REDIS_REPLY_STATUS, "CONFIG SET");
	freeReplyObject(r);
	r = redisCommand(sub, "SUBSCRIBE __keyevent@0__:expired");
	cr_assert(r != NULL);
	freeReplyObject(r);
	redisSetTimeout(sub, tv);

	ot_start(&t, "ottl", "1000");
	cr_assert(proto_key_output(key, sizeof(key), t.prefix, "e") > 0);
	submit(&t, "e", "{\"op\":\"chunks\",\"n\":1}");
	cr_assert_eq(next_result(&t, id, sizeof(id)), HIVE_STATUS_OK);
	n = read_output(&t, "e", es, 8);
	check_joined(es, n, "c0 ", "completed");
	free_output(es, n);
	r = redisCommand(t.rc, "PTTL %s", key);
	cr_assert(r && r->type == REDIS_REPLY_INTEGER);
	cr_assert(r->integer > 0 && r->integer <= 1000, "PTTL %lld",
	    r->integer);
	freeReplyObject(r);
	while (!gone) {
		cr_assert_eq(redisGetReply(sub, (void **)&r), REDIS_OK,
		    "%s not expired within %d ms", key, GUARD_MS);
		gone = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
		    strcmp(r->element[2]->str, key) == 0;
		freeReplyObject(r);
	}
	r = redisCommand(t.rc, "EXISTS %s", key);
	cr_assert_eq(r->integer, 0);
	freeReplyObject(r);
	redisFree(sub);
	ot_stop(&t);
}
