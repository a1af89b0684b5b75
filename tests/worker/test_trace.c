/*
 * test_trace.c - trace context and usage through hive-worker: a task's
 * traceparent reaches the handler (stream: in its line; exec: the
 * environment's TRACEPARENT) and its result; a task without one gets a
 * valid new one; a handler's usage is copied into the result, and a bad
 * one fails the task with a reason.  A real worker against the private
 * Redis, with tests/worker/test_handler.c; results awaited with XREAD
 * BLOCK, never by time.
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
#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

struct tt {
	char prefix[64];
	redisContext *rc;
	char last[64];
	pid_t worker;
};

static const char *
env(const char *name)
{
	const char *v = getenv(name);

	cr_assert(v != NULL, "%s not set: run through meson test", name);
	return v;
}

static void
tt_start(struct tt *t, const char *tag, const char *mode)
{
	char redis[128];
	const char *argv[32];
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
	argv[n++] = "--capabilities";
	argv[n++] = "c";
	argv[n++] = "--mode";
	argv[n++] = mode;
	argv[n++] = "--";
	argv[n++] = env("HIVE_TEST_HANDLER");
	argv[n++] = mode;
	argv[n] = NULL;
	t->worker = fork();
	cr_assert(t->worker >= 0);
	if (t->worker == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		tu_execv(argv);
	}
}

static void
tt_stop(struct tt *t)
{
	redisReply *r, *k;
	int st;

	kill(t->worker, SIGTERM);
	cr_assert_eq(waitpid(t->worker, &st, 0), t->worker);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker status %#x",
	    st);
	r = redisCommand(t->rc, "KEYS %s:*", t->prefix);
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY &&
	    i < r->elements; i++) {
		k = redisCommand(t->rc, "DEL %s", r->element[i]->str);
		freeReplyObject(k);
	}
	freeReplyObject(r);
	redisFree(t->rc);
}

/* A task on <p>:q:c:1 with payload (JSON) and traceparent (may be NULL). */
static void
submit(struct tt *t, const char *id, const char *payload, const char *tp)
{
	struct hive_task task;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_loads(payload, JSON_DECODE_ANY, NULL);
	char key[HIVE_KEY_MAX];
	redisReply *r;

	cr_assert_not_null(j, "%s", payload);
	msgpack_zone_init(&z, 1024);
	memset(&task, 0, sizeof(task));
	task.id = HIVE_STR(id);
	task.parents.type = MSGPACK_OBJECT_NIL;
	cr_assert_eq(proto_json_to_obj(j, &z, &task.payload, &err), 0);
	if (tp != NULL)
		task.traceparent = HIVE_STR(tp);
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_task(&sb, &task, &err), 0, "%s", err.detail);
	cr_assert(proto_key_queue(key, sizeof(key), t->prefix, "c", 1) > 0);
	r = redisCommand(t->rc, "XADD %s * m %b", key, sb.data, sb.size);
	cr_assert(r && r->type == REDIS_REPLY_STRING);
	freeReplyObject(r);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(j);
}

struct res {
	int status;
	char error[HIVE_ERROR_MAX];
	json_t *result;
	char tp[HIVE_TRACEPARENT_LEN + 1];
	struct hive_usage usage;
	char model[HIVE_MODEL_MAX + 1];
};

static void
next_result(struct tt *t, struct res *out)
{
	struct hive_result hr;
	struct proto_err err;
	char key[HIVE_KEY_MAX];
	redisReply *r, *e;
	long long deadline = tu_now_ms() + GUARD_MS;

	cr_assert(proto_key_named(key, sizeof(key), t->prefix, "results") > 0);
	for (;;) {
		long long left = deadline - tu_now_ms();

		cr_assert(left > 0, "no result within %d ms", GUARD_MS);
		r = redisCommand(t->rc, "XREAD COUNT 1 BLOCK %lld STREAMS %s %s",
		    left, key, t->last);
		cr_assert_not_null(r);
		if (r->type == REDIS_REPLY_ARRAY)
			break;
		freeReplyObject(r);
	}
	e = r->element[0]->element[1]->element[0];
	snprintf(t->last, sizeof(t->last), "%s", e->element[0]->str);
	cr_assert_eq(proto_decode_result(e->element[1]->element[1]->str,
	    e->element[1]->element[1]->len, &hr, &err), 0, "%s", err.detail);
	memset(out, 0, sizeof(*out));
	out->status = hr.status;
	snprintf(out->error, sizeof(out->error), "%.*s", (int)hr.error.len,
	    hr.error.ptr);
	if (hr.result.type != MSGPACK_OBJECT_NIL)
		out->result = proto_obj_to_json(&hr.result, &err);
	snprintf(out->tp, sizeof(out->tp), "%.*s", (int)hr.traceparent.len,
	    hr.traceparent.ptr);
	out->usage = hr.usage;
	snprintf(out->model, sizeof(out->model), "%.*s",
	    (int)hr.usage.model.len, hr.usage.model.ptr);
	out->usage.model = HIVE_STR(out->model);
	proto_result_clear(&hr);
	freeReplyObject(r);
}

static const char *
jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* The handler sees the task's traceparent, and the result carries it;
 * a task without one gets a new valid one, the same in both places. */
static void
trace_case(const char *mode)
{
	struct tt t;
	struct res r;

	tt_start(&t, "trace", mode);
	submit(&t, "given", "{\"op\":\"trace\"}", TP);
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_str_eq(r.tp, TP);
	cr_assert_str_eq(jstr(r.result, "traceparent"), TP);
	if (strcmp(mode, "exec") == 0)
		cr_assert_str_eq(jstr(r.result, "env"), TP);
	json_decref(r.result);

	submit(&t, "made", "{\"op\":\"trace\"}", NULL);
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_eq(proto_valid_traceparent(r.tp, strlen(r.tp)), 0,
	    "made traceparent '%s' is not valid", r.tp);
	cr_assert(strncmp(r.tp + 3, TP + 3, 32) != 0);
	cr_assert_str_eq(jstr(r.result, "traceparent"), r.tp);
	if (strcmp(mode, "exec") == 0)
		cr_assert_str_eq(jstr(r.result, "env"), r.tp);
	json_decref(r.result);
	tt_stop(&t);
}

Test(worker_trace, stream_handler_sees_traceparent) { trace_case("stream"); }
Test(worker_trace, exec_handler_sees_traceparent) { trace_case("exec"); }

static void
usage_case(const char *mode)
{
	struct tt t;
	struct res r;

	tt_start(&t, "usage", mode);
	submit(&t, "u1", "{\"op\":\"echo\",\"usage\":{\"input_tokens\":1200,"
	    "\"output_tokens\":35,\"cost\":0.25,\"model\":\"m-1\","
	    "\"cache_read_tokens\":7}}", NULL);
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_eq(r.usage.has, HIVE_USAGE_INPUT | HIVE_USAGE_OUTPUT |
	    HIVE_USAGE_COST | HIVE_USAGE_MODEL);
	cr_assert_eq(r.usage.input_tokens, 1200);
	cr_assert_eq(r.usage.output_tokens, 35);
	cr_assert_eq(r.usage.cost, 0.25);
	cr_assert_str_eq(r.model, "m-1");
	json_decref(r.result);

	/* a bad usage fails the task, saying which member */
	submit(&t, "u2", "{\"op\":\"echo\",\"usage\":{\"cost\":\"lots\"}}",
	    NULL);
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_ERROR);
	cr_assert(strstr(r.error, "usage.cost") != NULL, "%s", r.error);
	cr_assert_eq(r.usage.has, 0);
	json_decref(r.result);

	/* no usage: none in the result */
	submit(&t, "u3", "{\"op\":\"echo\"}", NULL);
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_eq(r.usage.has, 0);
	json_decref(r.result);
	tt_stop(&t);
}

Test(worker_trace, stream_usage_copied) { usage_case("stream"); }
Test(worker_trace, exec_usage_copied) { usage_case("exec"); }

/* A task with a malformed traceparent is a dead letter naming it. */
Test(worker_trace, malformed_traceparent_is_dead)
{
	struct tt t;
	char key[HIVE_KEY_MAX];
	redisReply *r;
	struct hive_dead d;
	struct proto_err err;
	/* {"v":1,"id":"bad","traceparent":"00-abc"} */
	static const char m[] = "\x83\xa1v\x01\xa2id\xa3" "bad"
	    "\xabtraceparent\xa6" "00-abc";

	tt_start(&t, "tpdead", "stream");
	cr_assert(proto_key_queue(key, sizeof(key), t.prefix, "c", 1) > 0);
	r = redisCommand(t.rc, "XADD %s * m %b", key, m, sizeof(m) - 1);
	freeReplyObject(r);
	cr_assert(proto_key_named(key, sizeof(key), t.prefix, "dead") > 0);
	r = redisCommand(t.rc, "XREAD COUNT 1 BLOCK %d STREAMS %s 0",
	    GUARD_MS, key);
	cr_assert(r && r->type == REDIS_REPLY_ARRAY, "no dead letter");
	cr_assert_eq(proto_decode_dead(
	    r->element[0]->element[1]->element[0]->element[1]->element[1]->str,
	    r->element[0]->element[1]->element[0]->element[1]->element[1]->len,
	    &d, &err), 0);
	cr_assert_eq(d.code, HIVE_CODE_VALUE);
	cr_assert(d.id.len == 3 && memcmp(d.id.ptr, "bad", 3) == 0);
	cr_assert(memmem(d.reason.ptr, d.reason.len, "traceparent", 11),
	    "%.*s", (int)d.reason.len, d.reason.ptr);
	proto_dead_clear(&d);
	freeReplyObject(r);
	tt_stop(&t);
}
