/*
 * test_output.c - a handler's stderr, line by line, in OUTPUT frames
 * (worker/output.c): a real hive-worker on a socketpair standing for
 * hived, against the private Redis, with tests/worker/test_handler.c's
 * "say" op writing the lines.
 *
 * Nothing waits by time: frames are awaited with poll on the socketpair,
 * results with XREAD BLOCK.  Deadlines are failure guards only.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "hive_proto.h"
#include "testutil.h"

#define GUARD_MS 30000      /* a failure guard, never a timing */

/* The worker's rate bound (worker/worker.h), for the flood's check. */
#define OUTPUT_BURST 200

struct to {
	char prefix[64];
	redisContext *rc;
	int sp;                     /* our end of the socketpair */
	pid_t pid;
	struct proto_framer fr;
	char last[64];              /* the results stream's last id */
	char tp[HIVE_TRACEPARENT_LEN + 1];  /* the last frame's traceparent */
};

/* Every task's trace context: the frames about a task carry it. */
#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

static const char *
env(const char *name)
{
	const char *v = getenv(name);

	cr_assert(v != NULL, "%s not set: run through meson test", name);
	return v;
}

static void
send_frame(int fd, const struct hive_frame *f)
{
	msgpack_sbuffer sb;
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_frame(&sb, f, &err), 0);
	cr_assert_eq(write(fd, sb.data, sb.size), (ssize_t)sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/* A worker of agent "a" on capability "c" in mode, with hived's first
 * frame sent. */
static void
to_start_n(struct to *t, const char *tag, const char *mode,
    const char *concurrency)
{
	const char *argv[32];
	char redis[128], host[80];
	struct hive_frame f;
	int sp[2], n = 0;

	memset(t, 0, sizeof(*t));
	tu_unique(t->prefix, sizeof(t->prefix), tag);
	snprintf(host, sizeof(host), "h%s", t->prefix);
	snprintf(t->last, sizeof(t->last), "0");
	snprintf(redis, sizeof(redis), "%s:%s", env("HIVE_TEST_REDIS_HOST"),
	    env("HIVE_TEST_REDIS_PORT"));
	t->rc = tu_redis_connect();
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	argv[n++] = env("HIVE_WORKER");
	argv[n++] = "--agent";
	argv[n++] = "a";
	argv[n++] = "--prefix";
	argv[n++] = t->prefix;
	argv[n++] = "--redis";
	argv[n++] = redis;
	argv[n++] = "--host";
	argv[n++] = host;
	argv[n++] = "--capabilities";
	argv[n++] = "c";
	argv[n++] = "--fd";
	argv[n++] = "3";
	argv[n++] = "--heartbeat-ms";
	argv[n++] = "50";
	argv[n++] = "--mode";
	argv[n++] = mode;
	argv[n++] = "--concurrency";
	argv[n++] = concurrency;
	argv[n++] = "--";
	argv[n++] = env("HIVE_TEST_HANDLER");
	argv[n++] = mode;
	argv[n] = NULL;
	t->pid = fork();
	cr_assert(t->pid >= 0);
	if (t->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(sp[1], 3);
		tu_execv(argv);
	}
	close(sp[1]);
	t->sp = sp[0];
	proto_framer_init(&t->fr);
	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_MEMORY;
	f.u.memory.agent = HIVE_STR("a");
	f.u.memory.instance = 1;
	send_frame(t->sp, &f);
}

static void
to_start(struct to *t, const char *tag, const char *mode)
{
	to_start_n(t, tag, mode, "1");
}

/* SIGTERM: the worker drains and exits 0; with kill, SIGKILL (a task
 * held in flight would keep a drain waiting). */
static void
to_end(struct to *t, bool kill_it)
{
	redisReply *r, *k;
	char pat[96];
	int st;

	kill(t->pid, kill_it ? SIGKILL : SIGTERM);
	cr_assert_eq(waitpid(t->pid, &st, 0), t->pid);
	if (!kill_it)
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "worker exit %#x", st);
	close(t->sp);
	proto_framer_free(&t->fr);
	snprintf(pat, sizeof(pat), "%s:*", t->prefix);
	r = redisCommand(t->rc, "KEYS %s", pat);
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY &&
	    i < r->elements; i++) {
		k = redisCommand(t->rc, "DEL %s", r->element[i]->str);
		freeReplyObject(k);
	}
	freeReplyObject(r);
	redisFree(t->rc);
}

static void
to_stop(struct to *t)
{
	to_end(t, false);
}

static void
submit(struct to *t, const char *id, const char *payload)
{
	struct hive_task task;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_loads(payload, 0, NULL);
	char key[HIVE_KEY_MAX];
	redisReply *r;

	cr_assert(j != NULL, "bad payload %s", payload);
	msgpack_zone_init(&z, 1024);
	memset(&task, 0, sizeof(task));
	task.v = HIVE_PROTO_VERSION;
	task.id = HIVE_STR(id);
	cr_assert_eq(proto_json_to_obj(j, &z, &task.payload, &err), 0);
	task.attempt = 1;
	task.traceparent = HIVE_STR(TP);
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_task(&sb, &task, &err), 0);
	cr_assert(proto_key_queue(key, sizeof(key), t->prefix, "c", 1) > 0);
	r = redisCommand(t->rc, "XADD %s * m %b", key, sb.data, sb.size);
	cr_assert(r && r->type == REDIS_REPLY_STRING);
	freeReplyObject(r);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(j);
}

/* The next result's error text ("" when ok) into err. */
static void
next_result(struct to *t, char *err, size_t len)
{
	char key[HIVE_KEY_MAX];
	struct hive_result hr;
	struct proto_err perr;
	redisReply *r, *e;

	cr_assert(proto_key_named(key, sizeof(key), t->prefix, "results") > 0);
	r = redisCommand(t->rc, "XREAD COUNT 1 BLOCK %d STREAMS %s %s",
	    GUARD_MS, key, t->last);
	cr_assert(r && r->type == REDIS_REPLY_ARRAY, "no result");
	e = r->element[0]->element[1]->element[0];
	snprintf(t->last, sizeof(t->last), "%s", e->element[0]->str);
	cr_assert_eq(proto_decode_result(e->element[1]->element[1]->str,
	    e->element[1]->element[1]->len, &hr, &perr), 0);
	snprintf(err, len, "%.*s", (int)hr.error.len, hr.error.ptr);
	proto_result_clear(&hr);
	freeReplyObject(r);
}

/* The next OUTPUT frame: its text (NUL-terminated, "" when none) and
 * task into the buffers, returns its dropped count. */
static unsigned long long
next_output(struct to *t, char *text, size_t tlen, char *task, size_t klen)
{
	struct pollfd p = { .fd = t->sp, .events = POLLIN };
	struct hive_frame f;
	struct proto_err err;
	const char *body;
	size_t blen;
	char buf[65536];
	unsigned long long dropped;

	for (;;) {
		while (proto_framer_next(&t->fr, &body, &blen, &err) == 1) {
			cr_assert_eq(proto_decode_frame(body, blen, &f, &err), 0);
			if (f.type != HIVE_FRAME_OUTPUT) {
				proto_frame_clear(&f);
				continue;
			}
			snprintf(text, tlen, "%.*s", (int)f.u.output.text.len,
			    f.u.output.text.ptr);
			snprintf(task, klen, "%.*s", (int)f.u.output.task.len,
			    f.u.output.task.ptr);
			snprintf(t->tp, sizeof(t->tp), "%.*s",
			    (int)f.u.output.traceparent.len,
			    f.u.output.traceparent.ptr);
			dropped = f.u.output.dropped;
			proto_frame_clear(&f);
			return dropped;
		}
		cr_assert_eq(poll(&p, 1, GUARD_MS), 1, "no OUTPUT frame");
		ssize_t n = read(t->sp, buf, sizeof(buf));
		cr_assert(n > 0, "hive-worker closed the socketpair");
		cr_assert_eq(proto_framer_feed(&t->fr, buf, (size_t)n), 0);
	}
}

Test(output, stream_lines_with_the_task_in_flight)
{
	char text[HIVE_OUTPUT_MAX + 1], task[HIVE_ID_MAX + 1], err[256];
	struct to t;

	to_start(&t, "outs", "stream");
	submit(&t, "o1", "{\"op\":\"say\",\"text\":\"loading \\u00e9\","
	    "\"n\":2,\"last\":\"bad \\u0001 byte\\r\"}");
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(next_output(&t, text, sizeof(text), task,
		    sizeof(task)), 0);
		cr_assert_str_eq(text, "loading \xc3\xa9");
		cr_assert_str_eq(task, "o1", "one task in flight: named");
		cr_assert_str_eq(t.tp, TP, "and its trace context");
	}
	cr_assert_eq(next_output(&t, text, sizeof(text), task, sizeof(task)), 0);
	cr_assert_str_eq(text, "bad ? byte", "control characters and the CR");
	next_result(&t, err, sizeof(err));
	cr_assert_str_eq(err, "");
	to_stop(&t);
}

Test(output, long_line_cut_and_marked)
{
	char text[HIVE_OUTPUT_MAX + 1], task[HIVE_ID_MAX + 1], err[256];
	size_t n;
	struct to t;

	to_start(&t, "outl", "stream");
	submit(&t, "l1", "{\"op\":\"say\",\"long\":10000,\"last\":\"after\"}");
	next_output(&t, text, sizeof(text), task, sizeof(task));
	n = strlen(text);
	cr_assert_eq(n, HIVE_OUTPUT_MAX, "a cut line is %zu bytes", n);
	cr_assert_str_eq(text + n - 6, " [cut]");
	cr_assert_eq(strspn(text, "x"), n - 6);
	next_output(&t, text, sizeof(text), task, sizeof(task));
	cr_assert_str_eq(text, "after", "the rest of the long line is gone");
	next_result(&t, err, sizeof(err));
	to_stop(&t);
}

Test(output, flood_is_bounded_and_drops_counted)
{
	char text[HIVE_OUTPUT_MAX + 1], task[HIVE_ID_MAX + 1], err[256];
	unsigned long long lines = 0, dropped = 0;
	struct to t;

	to_start(&t, "outf", "stream");
	submit(&t, "f1", "{\"op\":\"say\",\"text\":\"spam\",\"n\":5000}");
	/* Every line is either sent or counted: lines that find no token
	 * are told with the next line, or at the next heartbeat. */
	while (lines + dropped < 5000) {
		dropped += next_output(&t, text, sizeof(text), task,
		    sizeof(task));
		if (text[0] != '\0') {
			cr_assert_str_eq(text, "spam");
			lines++;
		}
	}
	cr_assert_eq(lines + dropped, 5000);
	cr_assert_geq(lines, OUTPUT_BURST, "the burst passes: %llu", lines);
	cr_assert_gt(dropped, 0, "5000 lines at once are over the rate");
	next_result(&t, err, sizeof(err));
	to_stop(&t);
}

Test(output, exec_error_text_and_lines)
{
	char text[HIVE_OUTPUT_MAX + 1], task[HIVE_ID_MAX + 1], err[256];
	struct to t;

	to_start(&t, "oute", "exec");
	submit(&t, "e1", "{\"op\":\"say\",\"text\":\"step 1\","
	    "\"last\":\"no newline\"}");
	next_output(&t, text, sizeof(text), task, sizeof(task));
	cr_assert_str_eq(text, "step 1");
	cr_assert_str_eq(task, "e1");
	cr_assert_str_eq(t.tp, TP, "the task's trace context");
	next_output(&t, text, sizeof(text), task, sizeof(task));
	cr_assert_str_eq(text, "no newline", "the last line, at exit");
	cr_assert_str_eq(task, "e1");
	next_result(&t, err, sizeof(err));
	cr_assert_str_eq(err, "");

	submit(&t, "e2", "{\"op\":\"say\",\"text\":\"step 1\",\"fail\":true}");
	next_output(&t, text, sizeof(text), task, sizeof(task));
	cr_assert_str_eq(text, "step 1");
	next_output(&t, text, sizeof(text), task, sizeof(task));
	cr_assert_str_eq(text, "asked to fail");
	cr_assert_str_eq(task, "e2");
	next_result(&t, err, sizeof(err));
	cr_assert_str_eq(err, "step 1\nasked to fail",
	    "the error text is still stderr's tail");
	to_stop(&t);
}

Test(output, stream_line_names_no_task_with_two_in_flight)
{
	char text[HIVE_OUTPUT_MAX + 1], task[HIVE_ID_MAX + 1], err[256];
	struct to t;

	to_start_n(&t, "out2", "stream", "2");
	/* h1 stays in flight (never answered); s1 runs beside it. */
	submit(&t, "h1", "{\"op\":\"hold\"}");
	submit(&t, "s1", "{\"op\":\"say\",\"text\":\"whose?\"}");
	next_output(&t, text, sizeof(text), task, sizeof(task));
	cr_assert_str_eq(text, "whose?");
	cr_assert_str_eq(task, "", "two tasks in flight: none named");
	next_result(&t, err, sizeof(err));
	cr_assert_str_eq(err, "");
	to_end(&t, true);
}
