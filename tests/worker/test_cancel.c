/*
 * test_cancel.c - cancels and deadlines in hive-worker (docs/PROTOCOL.md,
 * "Cancel and deadlines"): a real worker against the private Redis, with
 * tests/worker/cancel_handler.py (stream mode) and sh (exec mode).
 *
 * Handlers tell the test through a fifo when a task starts and when its
 * cancel line comes; results are awaited with XREAD BLOCK.  Nothing
 * waits by time: deadlines are failure guards only.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "hive_proto.h"
#include "testutil.h"

#define GUARD_MS 20000      /* a failure guard, never a timing */

struct ct {
	char prefix[64];
	redisContext *rc;
	char last[64];              /* results read up to */
	char fifo[256];
	int ffd;                    /* its read end */
	char fbuf[4096];
	size_t flen;
	pid_t pid;
};

static const char *
env(const char *name)
{
	const char *v = getenv(name);

	cr_assert(v != NULL, "%s not set: run through meson test", name);
	return v;
}

static void
ct_init(struct ct *c, const char *tag)
{
	memset(c, 0, sizeof(*c));
	tu_unique(c->prefix, sizeof(c->prefix), tag);
	c->rc = tu_redis_connect();
	snprintf(c->last, sizeof(c->last), "0");
	snprintf(c->fifo, sizeof(c->fifo), "%s/%s.fifo",
	    getenv("HIVE_TEST_TMP") ? getenv("HIVE_TEST_TMP") : "/tmp",
	    c->prefix);
	unlink(c->fifo);
	cr_assert_eq(mkfifo(c->fifo, 0600), 0, "mkfifo %s", c->fifo);
	/* Open for reading and writing (Linux): the handler's open for
	 * writing succeeds at once, and a read never sees EOF between two
	 * handlers. */
	c->ffd = open(c->fifo, O_RDWR | O_NONBLOCK);
	cr_assert(c->ffd >= 0);
}

static void
ct_fini(struct ct *c)
{
	int st;

	if (c->pid > 0) {
		kill(c->pid, SIGTERM);
		waitpid(c->pid, &st, 0);
		cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "worker exit status %#x", st);
	}
	close(c->ffd);
	unlink(c->fifo);
	redisFree(c->rc);
}

static void
ct_start(struct ct *c, const char *mode, const char *grace,
    const char *conc, const char *const *handler)
{
	const char *argv[40];
	char redis[128];
	int n = 0;

	snprintf(redis, sizeof(redis), "%s:%s", env("HIVE_TEST_REDIS_HOST"),
	    env("HIVE_TEST_REDIS_PORT"));
	argv[n++] = env("HIVE_WORKER");
	argv[n++] = "--agent";
	argv[n++] = "a";
	argv[n++] = "--capabilities";
	argv[n++] = "c";
	argv[n++] = "--prefix";
	argv[n++] = c->prefix;
	argv[n++] = "--redis";
	argv[n++] = redis;
	argv[n++] = "--host";
	argv[n++] = c->prefix;
	argv[n++] = "--mode";
	argv[n++] = mode;
	argv[n++] = "--cancel-grace";
	argv[n++] = grace;
	argv[n++] = "--concurrency";
	argv[n++] = conc;
	argv[n++] = "--";
	for (; *handler; handler++)
		argv[n++] = *handler;
	argv[n] = NULL;
	c->pid = fork();
	cr_assert(c->pid >= 0);
	if (c->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		tu_execv(argv);
	}
}

static void
ct_stream(struct ct *c, const char *grace)
{
	const char *h[] = { "/usr/bin/python3", NULL, c->fifo, NULL };
	char path[512];

	snprintf(path, sizeof(path), "%s/tests/worker/cancel_handler.py",
	    env("HIVE_SOURCE_DIR"));
	h[1] = path;
	ct_start(c, "stream", grace, "4", h);
}

static void
cancel_key(struct ct *c, const char *id)
{
	char k[HIVE_KEY_MAX];
	redisReply *r;

	cr_assert(proto_key_cancel(k, sizeof(k), c->prefix, id) > 0);
	r = redisCommand(c->rc, "SET %s test PX 60000", k);
	cr_assert(r && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
}

static void
submit(struct ct *c, const char *id, const char *payload,
    unsigned long long deadline, const char *reply_to)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_loads(payload, JSON_DECODE_ANY, NULL);
	char q[HIVE_KEY_MAX];
	redisReply *r;

	cr_assert(j != NULL);
	cr_assert(proto_key_queue(q, sizeof(q), c->prefix, "c", 1) > 0);
	msgpack_zone_init(&z, 1024);
	memset(&t, 0, sizeof(t));
	t.v = HIVE_PROTO_VERSION;
	t.id = HIVE_STR(id);
	cr_assert_eq(proto_json_to_obj(j, &z, &t.payload, &err), 0);
	t.attempt = 1;
	t.deadline = deadline;
	if (reply_to != NULL)
		t.reply_to = HIVE_STR(reply_to);
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	r = redisCommand(c->rc, "XADD %s * m %b", q, sb.data, sb.size);
	cr_assert(r && r->type == REDIS_REPLY_STRING);
	freeReplyObject(r);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(j);
}

struct res {
	char id[HIVE_ID_MAX + 1];
	int status;
	char error[HIVE_ERROR_MAX];
};

/* The next result on key (NULL: <p>:results) after *last. */
static void
next_on(struct ct *c, const char *key, char *last, size_t lastlen,
    struct res *out)
{
	char k[HIVE_KEY_MAX];
	long long end = tu_now_ms() + GUARD_MS;
	redisReply *r, *e;
	struct hive_result hr;
	struct proto_err err;

	if (key == NULL) {
		cr_assert(proto_key_named(k, sizeof(k), c->prefix,
		    "results") > 0);
		key = k;
	}
	for (;;) {
		long long left = end - tu_now_ms();
		cr_assert(left > 0, "no result on %s", key);
		r = redisCommand(c->rc, "XREAD COUNT 1 BLOCK %lld STREAMS %s %s",
		    left, key, last);
		cr_assert(r != NULL);
		if (r->type == REDIS_REPLY_ARRAY)
			break;
		freeReplyObject(r);
	}
	e = r->element[0]->element[1]->element[0];
	snprintf(last, lastlen, "%s", e->element[0]->str);
	cr_assert_eq(proto_decode_result(e->element[1]->element[1]->str,
	    e->element[1]->element[1]->len, &hr, &err), 0);
	snprintf(out->id, sizeof(out->id), "%.*s", (int)hr.id.len, hr.id.ptr);
	snprintf(out->error, sizeof(out->error), "%.*s", (int)hr.error.len,
	    hr.error.ptr);
	out->status = hr.status;
	proto_result_clear(&hr);
	freeReplyObject(r);
}

static void
next_result(struct ct *c, struct res *out)
{
	next_on(c, NULL, c->last, sizeof(c->last), out);
}

/* The next line the handler told, within the guard. */
static void
told(struct ct *c, char *line, size_t len)
{
	long long end = tu_now_ms() + GUARD_MS;
	char *nl;

	while ((nl = memchr(c->fbuf, '\n', c->flen)) == NULL) {
		struct pollfd p = { .fd = c->ffd, .events = POLLIN };
		long long left = end - tu_now_ms();
		ssize_t n;

		cr_assert(left > 0, "the handler told nothing");
		if (poll(&p, 1, (int)left) < 1)
			continue;
		n = read(c->ffd, c->fbuf + c->flen, sizeof(c->fbuf) - c->flen);
		if (n < 0 && errno == EAGAIN)
			continue;
		cr_assert(n > 0);
		c->flen += (size_t)n;
	}
	*nl = '\0';
	snprintf(line, len, "%.*s", (int)(len - 1), c->fbuf);
	c->flen -= (size_t)(nl + 1 - c->fbuf);
	memmove(c->fbuf, nl + 1, c->flen);
}

static void
told_is(struct ct *c, const char *want)
{
	char line[256];

	told(c, line, sizeof(line));
	cr_assert_str_eq(line, want);
}

static void
result_is(struct ct *c, const char *id, int status, const char *error)
{
	struct res r;

	next_result(c, &r);
	cr_assert_str_eq(r.id, id);
	cr_assert_eq(r.status, status, "%s: status %d (%s), want %d", id,
	    r.status, r.error, status);
	if (error != NULL)
		cr_assert_str_eq(r.error, error);
}

Test(cancel, queued_task_cancelled_never_starts)
{
	struct ct c;
	struct res r;
	char rlast[64] = "0";
	const char *reply = "hive:reply:cancel-q";

	ct_init(&c, "cq");
	freeReplyObject(redisCommand(c.rc, "DEL %s", reply));
	cancel_key(&c, "job-1");
	submit(&c, "job-1", "{\"op\":\"ok\"}", 0, reply);
	submit(&c, "job-2", "{\"op\":\"ok\"}", 0, NULL);
	ct_stream(&c, "5000");
	result_is(&c, "job-1", HIVE_STATUS_CANCELLED, "cancelled");
	result_is(&c, "job-2", HIVE_STATUS_OK, NULL);
	/* job-1 never reached the handler */
	told_is(&c, "start job-2");
	/* the client got the cancelled result too */
	next_on(&c, reply, rlast, sizeof(rlast), &r);
	cr_assert_str_eq(r.id, "job-1");
	cr_assert_eq(r.status, HIVE_STATUS_CANCELLED);
	freeReplyObject(redisCommand(c.rc, "DEL %s", reply));
	ct_fini(&c);
}

Test(cancel, running_stream_task_gets_the_cancel_line)
{
	struct ct c;

	ct_init(&c, "cs");
	ct_stream(&c, "5000");
	submit(&c, "job-1", "{\"op\":\"hang\",\"obey\":true}", 0, NULL);
	told_is(&c, "start job-1");
	cancel_key(&c, "job-1");
	told_is(&c, "cancel job-1");
	result_is(&c, "job-1", HIVE_STATUS_CANCELLED, "cancelled");
	/* the handler goes on */
	submit(&c, "job-2", "{\"op\":\"ok\"}", 0, NULL);
	told_is(&c, "start job-2");
	result_is(&c, "job-2", HIVE_STATUS_OK, NULL);
	ct_fini(&c);
}

Test(cancel, handler_ignoring_the_cancel_is_killed_after_the_grace)
{
	struct ct c;
	struct res r;

	ct_init(&c, "ck");
	ct_stream(&c, "200");
	submit(&c, "job-1", "{\"op\":\"hang\"}", 0, NULL);
	told_is(&c, "start job-1");
	submit(&c, "job-2", "{\"op\":\"hang\",\"obey\":false}", 0, NULL);
	told_is(&c, "start job-2");
	cancel_key(&c, "job-1");
	told_is(&c, "cancel job-1");
	result_is(&c, "job-1", HIVE_STATUS_CANCELLED, "cancelled");
	/* job-2 was in the killed handler: it runs again (attempt 2) in the
	 * restarted one; cancelled too, it ends cancelled */
	told_is(&c, "start job-2");
	cancel_key(&c, "job-2");
	told_is(&c, "cancel job-2");
	next_result(&c, &r);
	cr_assert_str_eq(r.id, "job-2");
	cr_assert_eq(r.status, HIVE_STATUS_CANCELLED);
	ct_fini(&c);
}

Test(cancel, exec_mode_kills_the_process_group)
{
	struct ct c;
	char script[512];
	const char *h[] = { "/bin/sh", "-c", script, NULL };

	ct_init(&c, "ce");
	/* the first ends at TERM; the second ignores it (KILL after the
	 * grace) */
	snprintf(script, sizeof(script), "read -r line; "
	    "case \"$line\" in *ignore*) trap '' TERM;; esac; "
	    "echo start >> %s; sleep 60 & wait; sleep 60", c.fifo);
	ct_start(&c, "exec", "300", "1", h);
	submit(&c, "job-1", "{}", 0, NULL);
	told_is(&c, "start");
	cancel_key(&c, "job-1");
	result_is(&c, "job-1", HIVE_STATUS_CANCELLED, "cancelled");
	submit(&c, "job-2", "\"ignore\"", 0, NULL);
	told_is(&c, "start");
	cancel_key(&c, "job-2");
	result_is(&c, "job-2", HIVE_STATUS_CANCELLED, "cancelled");
	ct_fini(&c);
}

Test(cancel, deadline_passed_while_queued_expires)
{
	struct ct c;
	char rlast[64] = "0";
	const char *reply = "hive:reply:cancel-exp";
	struct res r;

	ct_init(&c, "cx");
	freeReplyObject(redisCommand(c.rc, "DEL %s", reply));
	submit(&c, "job-1", "{\"op\":\"ok\"}", (unsigned long long)proto_now_ms()
	    - 1, reply);
	submit(&c, "job-2", "{\"op\":\"ok\"}", (unsigned long long)proto_now_ms()
	    + 600000, NULL);
	ct_stream(&c, "5000");
	result_is(&c, "job-1", HIVE_STATUS_EXPIRED, NULL);
	result_is(&c, "job-2", HIVE_STATUS_OK, NULL);
	told_is(&c, "start job-2");
	next_on(&c, reply, rlast, sizeof(rlast), &r);
	cr_assert_eq(r.status, HIVE_STATUS_EXPIRED);
	freeReplyObject(redisCommand(c.rc, "DEL %s", reply));
	ct_fini(&c);
}

Test(cancel, deadline_passed_while_running_cancels)
{
	struct ct c;

	ct_init(&c, "cd");
	ct_stream(&c, "100");
	submit(&c, "job-1", "{\"op\":\"hang\",\"obey\":true}",
	    (unsigned long long)proto_now_ms() + 300, NULL);
	told_is(&c, "start job-1");
	told_is(&c, "cancel job-1");
	result_is(&c, "job-1", HIVE_STATUS_CANCELLED, "deadline passed");
	ct_fini(&c);
}

/*
 * 1,000 races: tasks that end at once, and their cancels set while they
 * run.  Each ends with exactly one result, ok or cancelled.
 */
#define RACES 1000
Test(cancel, cancel_racing_completion_one_result_each)
{
	struct ct c;
	struct res r;
	static unsigned char seen[RACES];
	char id[32];
	int ncancelled = 0;

	ct_init(&c, "cr");
	memset(seen, 0, sizeof(seen));
	ct_stream(&c, "5000");
	for (int i = 0; i < RACES; i++) {
		snprintf(id, sizeof(id), "r%d", i);
		submit(&c, id, "{\"op\":\"ok\"}", 0, NULL);
		/* right after it, or after the next ones: the worker takes
		 * some first, others in flight, others done */
		if (i % 3 == 0)
			cancel_key(&c, id);
		else if (i >= 5) {
			snprintf(id, sizeof(id), "r%d", i - 5 + (i % 2));
			cancel_key(&c, id);
		}
	}
	for (int i = 0; i < RACES; i++) {
		int k;

		next_result(&c, &r);
		cr_assert_eq(sscanf(r.id, "r%d", &k), 1);
		cr_assert(k >= 0 && k < RACES);
		cr_assert_eq(seen[k], 0, "%s: a second result", r.id);
		seen[k] = 1;
		cr_assert(r.status == HIVE_STATUS_OK ||
		    r.status == HIVE_STATUS_CANCELLED);
		ncancelled += r.status == HIVE_STATUS_CANCELLED;
	}
	/* no more: the results stream holds exactly RACES entries */
	{
		char k[HIVE_KEY_MAX];
		redisReply *x;

		proto_key_named(k, sizeof(k), c.prefix, "results");
		x = redisCommand(c.rc, "XLEN %s", k);
		cr_assert_eq(x->integer, RACES);
		freeReplyObject(x);
	}
	fprintf(stderr, "races: %d of %d cancelled\n", ncancelled, RACES);
	ct_fini(&c);
}

/* A task submitted twice (the same id twice in the queue): both
 * cancelled, neither started. */
Test(cancel, same_id_twice_both_cancelled)
{
	struct ct c;

	ct_init(&c, "c2");
	cancel_key(&c, "dup");
	submit(&c, "dup", "{\"op\":\"ok\"}", 0, NULL);
	submit(&c, "dup", "{\"op\":\"ok\"}", 0, NULL);
	submit(&c, "after", "{\"op\":\"ok\"}", 0, NULL);
	ct_stream(&c, "5000");
	result_is(&c, "dup", HIVE_STATUS_CANCELLED, "cancelled");
	result_is(&c, "dup", HIVE_STATUS_CANCELLED, "cancelled");
	result_is(&c, "after", HIVE_STATUS_OK, NULL);
	told_is(&c, "start after");
	ct_fini(&c);
}
