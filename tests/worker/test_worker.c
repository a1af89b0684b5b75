/*
 * test_worker.c - hive-worker end to end: a real worker process against
 * the private Redis, with real handlers (examples/echo.c, the Python and
 * shell examples, tests/worker/test_handler.c).
 *
 * Each test uses its own key prefix.  Nothing waits by time: results are
 * awaited with XREAD BLOCK on the results stream, processes with pidfds,
 * handlers signal through fifos.  Deadlines are failure guards only.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "hive_proto.h"
#include "testutil.h"

#define GUARD_MS 30000      /* a failure guard, never a timing */

struct tw {
	char prefix[64];
	char agent[32];
	char host[80];              /* unique too: CLIENT KILL finds ours */
	char redis[128];            /* --redis; "" = the test Redis on IPv4 */
	redisContext *rc;
	char last_result[64];
	char last_dead[64];
};

struct res {
	char id[HIVE_ID_MAX + 1];
	char agent[HIVE_AGENT_MAX + 1];
	int status;
	json_t *result;
	char error[HIVE_ERROR_MAX];
	enum hive_code code;
	unsigned attempt;
	json_t *memory;
	unsigned long long memory_v;
};

static void
res_clear(struct res *r)
{
	json_decref(r->result);
	json_decref(r->memory);
	memset(r, 0, sizeof(*r));
}

static const char *
env(const char *name)
{
	const char *v = getenv(name);

	cr_assert(v != NULL, "%s not set: run through meson test", name);
	return v;
}

static void
tw_init(struct tw *t, const char *tag)
{
	memset(t, 0, sizeof(*t));
	tu_unique(t->prefix, sizeof(t->prefix), tag);
	snprintf(t->agent, sizeof(t->agent), "a");
	snprintf(t->host, sizeof(t->host), "h%s", t->prefix);
	t->rc = tu_redis_connect();
	snprintf(t->last_result, sizeof(t->last_result), "0");
	snprintf(t->last_dead, sizeof(t->last_dead), "0");
}

static void
tw_fini(struct tw *t)
{
	redisReply *r, *k;
	char pat[96];

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

static pid_t
worker_start_io(struct tw *t, const char *const *extra,
    const char *const *handler, int fd3, int errfd)
{
	const char *argv[64];
	char redis[128];
	int n = 0;
	pid_t pid;

	if (t->redis[0] != '\0')
		snprintf(redis, sizeof(redis), "%s", t->redis);
	else
		snprintf(redis, sizeof(redis), "%s:%s",
		    env("HIVE_TEST_REDIS_HOST"), env("HIVE_TEST_REDIS_PORT"));
	argv[n++] = env("HIVE_WORKER");
	argv[n++] = "--agent";
	argv[n++] = t->agent;
	argv[n++] = "--prefix";
	argv[n++] = t->prefix;
	argv[n++] = "--redis";
	argv[n++] = redis;
	argv[n++] = "--host";
	argv[n++] = t->host;
	if (getenv("HIVE_TEST_VERBOSE")) argv[n++] = "-v";
	for (; extra && *extra; extra++)
		argv[n++] = *extra;
	argv[n++] = "--";
	for (; *handler; handler++)
		argv[n++] = *handler;
	argv[n] = NULL;
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		/* A failed assertion ends the test process: the worker must
		 * not outlive it (its stream handler then sees EOF). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (errfd >= 0)
			dup2(errfd, 2);
		if (fd3 >= 0) {
			dup2(fd3, 3);
			if (fd3 != 3)
				close(fd3);
		}
		tu_execv(argv);
	}
	return pid;
}

static pid_t
worker_start_fd(struct tw *t, const char *const *extra,
    const char *const *handler, int fd3)
{
	return worker_start_io(t, extra, handler, fd3, -1);
}

static pid_t
worker_start(struct tw *t, const char *const *extra, const char *const *handler)
{
	return worker_start_fd(t, extra, handler, -1);
}

/* Wait for a process (ours or not) to be gone: pidfd + poll. */
static int
wait_gone(pid_t pid, int ms)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p;
	int rc;

	if (fd == -1)
		return errno == ESRCH ? 0 : -1;
	p.fd = fd;
	p.events = POLLIN;
	rc = poll(&p, 1, ms);
	close(fd);
	return rc == 1 ? 0 : -1;
}

/* Exit status of our child worker, within the guard. */
static int
worker_wait(pid_t pid)
{
	int st;

	if (wait_gone(pid, GUARD_MS) == -1) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		cr_assert_fail("worker %d did not exit", (int)pid);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

/* SIGTERM: drain, exit 0 (and under ASan: no leaks). */
static void
worker_stop(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	st = worker_wait(pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "worker exit status %#x, want a clean exit 0", st);
}

static void
xadd_raw(struct tw *t, const char *key, const void *m, size_t len)
{
	redisReply *r = redisCommand(t->rc, "XADD %s * m %b", key, m, len);

	cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD %s: %s", key,
	    r ? r->str : t->rc->errstr);
	freeReplyObject(r);
}

static void
submit_to(struct tw *t, const char *key, const char *id, const char *payload,
    unsigned timeout_ms)
{
	struct hive_task task;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_loads(payload, JSON_DECODE_ANY, NULL);
	char why[256];

	cr_assert(j != NULL, "bad payload JSON %s", payload);
	msgpack_zone_init(&z, 1024);
	memset(&task, 0, sizeof(task));
	task.v = HIVE_PROTO_VERSION;
	task.id = HIVE_STR(id);
	cr_assert_eq(proto_json_to_obj(j, &z, &task.payload, &err), 0);
	task.attempt = 1;
	task.timeout_ms = timeout_ms;
	task.created_ms = proto_now_ms();
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_task(&sb, &task, &err), 0, "%s",
	    proto_strerror(&err, why, sizeof(why)));
	xadd_raw(t, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(j);
}

static const char *
qkey(struct tw *t, const char *cap, unsigned prio)
{
	static char k[4][HIVE_KEY_MAX];
	static int i;
	char *b = k[i++ % 4];

	cr_assert(proto_key_queue(b, HIVE_KEY_MAX, t->prefix, cap, prio) > 0);
	return b;
}

static const char *
nkey(struct tw *t, const char *name)
{
	static char k[4][HIVE_KEY_MAX];
	static int i;
	char *b = k[i++ % 4];

	cr_assert(proto_key_named(b, HIVE_KEY_MAX, t->prefix, name) > 0);
	return b;
}

static void
submit(struct tw *t, const char *id, const char *payload)
{
	submit_to(t, qkey(t, "c", 1), id, payload, 0);
}

/* Next entry of <p>:<stream> after *last, within the guard; its "m". */
static redisReply *
next_entry(struct tw *t, const char *stream, char *last, size_t lastlen,
    const char **m, size_t *mlen)
{
	redisReply *r, *e;
	long long deadline = tu_now_ms() + GUARD_MS;

	for (;;) {
		long long left = deadline - tu_now_ms();
		cr_assert(left > 0, "no entry on %s within %d ms", stream, GUARD_MS);
		r = redisCommand(t->rc, "XREAD COUNT 1 BLOCK %lld STREAMS %s %s",
		    left, nkey(t, stream), last);
		cr_assert(r != NULL, "XREAD: %s", t->rc->errstr);
		if (r->type == REDIS_REPLY_ARRAY)
			break;
		freeReplyObject(r);
	}
	e = r->element[0]->element[1]->element[0];
	snprintf(last, lastlen, "%s", e->element[0]->str);
	cr_assert_str_eq(e->element[1]->element[0]->str, "m");
	*m = e->element[1]->element[1]->str;
	*mlen = e->element[1]->element[1]->len;
	return r;
}

static void
next_result(struct tw *t, struct res *out)
{
	struct hive_result hr;
	struct proto_err err;
	const char *m;
	size_t len;
	char why[256];
	redisReply *r = next_entry(t, "results", t->last_result,
	    sizeof(t->last_result), &m, &len);

	cr_assert_eq(proto_decode_result(m, len, &hr, &err), 0, "result: %s",
	    proto_strerror(&err, why, sizeof(why)));
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%.*s", (int)hr.id.len, hr.id.ptr);
	snprintf(out->agent, sizeof(out->agent), "%.*s", (int)hr.agent.len,
	    hr.agent.ptr);
	out->status = hr.status;
	snprintf(out->error, sizeof(out->error), "%.*s", (int)hr.error.len,
	    hr.error.ptr);
	out->code = hr.code;
	out->attempt = hr.attempt;
	if (hr.result.type != MSGPACK_OBJECT_NIL)
		out->result = proto_obj_to_json(&hr.result, &err);
	if (hr.memory.type != MSGPACK_OBJECT_NIL)
		out->memory = proto_obj_to_json(&hr.memory, &err);
	out->memory_v = (unsigned long long)hr.memory_v;
	proto_result_clear(&hr);
	freeReplyObject(r);
}

/* The result as compact JSON text, for comparisons. */
static char *
jtext(json_t *j)
{
	static char buf[8][1024];
	static int i;
	char *b = buf[i++ % 8], *s;

	if (j == NULL)
		return strcpy(b, "(none)");
	s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
	snprintf(b, 1024, "%s", s);
	free(s);
	return b;
}

static long long
pending_count(struct tw *t, const char *key)
{
	redisReply *r = redisCommand(t->rc, "XPENDING %s workers", key);
	long long n;

	cr_assert(r && r->type == REDIS_REPLY_ARRAY, "XPENDING %s", key);
	n = r->element[0]->integer;
	freeReplyObject(r);
	return n;
}

static const char *const stream_args[] = { "--capabilities", "c", NULL };

static void
str_eq(struct hive_str s, const char *want)
{
	cr_assert(s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0,
	    "\"%.*s\", want \"%s\"", (int)s.len, s.ptr, want);
}

/* ---- round trips ---- */

Test(worker, stream_round_trip)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_ECHO"), NULL };
	const char *x[] = { "--capabilities", "c", "--concurrency", "4", NULL };
	pid_t w;
	char id[16];

	tw_init(&t, "stream");
	w = worker_start(&t, x, h);
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "t%d", i);
		submit(&t, id, "{\"n\":[1,2,{\"s\":\"x\\\"y\"}]}");
	}
	for (int i = 0; i < 20; i++) {
		next_result(&t, &r);
		cr_assert_eq(r.status, HIVE_STATUS_OK, "%s: %s", r.id, r.error);
		cr_assert_str_eq(jtext(r.result), "{\"n\":[1,2,{\"s\":\"x\\\"y\"}]}");
		cr_assert_str_eq(r.agent, "a/1");
		cr_assert_eq(r.attempt, 1);
		res_clear(&r);
	}
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	worker_stop(w);
	tw_fini(&t);
}

Test(worker, exec_round_trip)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "exec", NULL };
	const char *x[] = { "--capabilities", "c", "--mode", "exec",
	    "--concurrency", "2", NULL };
	pid_t w;

	tw_init(&t, "exec");
	w = worker_start(&t, x, h);
	submit(&t, "ok", "{\"op\":\"echo\",\"v\":1}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_str_eq(jtext(r.result), "{\"op\":\"echo\",\"v\":1}");
	res_clear(&r);
	submit(&t, "bad", "{\"op\":\"fail\"}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_ERROR);
	cr_assert_str_eq(r.error, "asked to fail");
	res_clear(&r);
	worker_stop(w);
	tw_fini(&t);
}

Test(worker, exec_shell_example_text_result)
{
	struct tw t;
	struct res r;
	char path[4096];
	const char *h[] = { "/bin/sh", path, NULL };
	const char *x[] = { "--capabilities", "c", "--mode", "exec", NULL };
	pid_t w;

	snprintf(path, sizeof(path), "%s/examples/shout.sh",
	    env("HIVE_SOURCE_DIR"));
	tw_init(&t, "shell");
	w = worker_start(&t, x, h);
	submit(&t, "s1", "\"hello hive\"");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_str_eq(jtext(r.result), "\"HELLO HIVE\"");
	res_clear(&r);
	submit(&t, "s2", "\"\"");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_ERROR);
	cr_assert(strstr(r.error, "nothing to shout") != NULL, "%s", r.error);
	res_clear(&r);
	worker_stop(w);
	tw_fini(&t);
}

/* ---- faults ---- */

Test(worker, exec_handler_that_cannot_start_fails_task)
{
	struct tw t;
	struct res r;
	const char *h[] = { "/nonexistent/hive-handler", NULL };
	const char *x[] = { "--capabilities", "c", "--mode", "exec", NULL };
	pid_t w;

	tw_init(&t, "noexec");
	w = worker_start(&t, x, h);
	submit(&t, "n1", "1");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_ERROR);
	cr_assert_str_eq(r.error, "cannot start handler "
	    "/nonexistent/hive-handler: No such file or directory");
	res_clear(&r);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	worker_stop(w);
	tw_fini(&t);
}

Test(worker, handler_killed_mid_task_is_retried)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	pid_t w;

	tw_init(&t, "hdie");
	w = worker_start(&t, stream_args, h);
	submit(&t, "d1", "{\"op\":\"die-once\"}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_str_eq(r.id, "d1");
	cr_assert_eq(r.attempt, 2, "attempt %u", r.attempt);
	res_clear(&r);
	/* The restarted handler goes on serving. */
	submit(&t, "d2", "{\"op\":\"echo\"}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK);
	res_clear(&r);
	worker_stop(w);
	tw_fini(&t);
}

/* The next "PID CHILDPID" line test_handler wrote on its fifo. */
static void
read_pids(int fd, pid_t *handler, pid_t *child)
{
	char line[64];
	size_t n = 0;
	long h, c;

	while (n < sizeof(line) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		cr_assert_eq(poll(&p, 1, GUARD_MS), 1, "no pids from the handler");
		if (read(fd, &line[n], 1) != 1)
			continue;
		if (line[n] == '\n')
			break;
		n++;
	}
	line[n] = '\0';
	cr_assert_eq(sscanf(line, "%ld %ld", &h, &c), 2, "%s", line);
	*handler = (pid_t)h;
	*child = (pid_t)c;
}

/*
 * A stream handler's process group ends with it: a child it forked is
 * killed when it dies (and the handler restarted), and when the worker
 * stops it at a drain.
 */
Test(worker, handler_group_dies_with_the_handler)
{
	struct tw t;
	struct res r;
	char fifo[256];
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", fifo, NULL };
	pid_t w, hp, cp, hp2, cp2;
	int fd;

	tw_init(&t, "hgroup");
	snprintf(fifo, sizeof(fifo), "/tmp/%s.pids", t.prefix);
	unlink(fifo);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	/* O_RDWR: never blocks, and no EOF between two handlers. */
	cr_assert((fd = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC)) >= 0);
	w = worker_start(&t, stream_args, h);
	read_pids(fd, &hp, &cp);
	submit(&t, "d1", "{\"op\":\"die-once\"}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_eq(r.attempt, 2);
	res_clear(&r);
	cr_assert_eq(wait_gone(hp, GUARD_MS), 0, "handler %d alive", (int)hp);
	cr_assert_eq(wait_gone(cp, GUARD_MS), 0, "the child %d of a dead "
	    "handler is alive", (int)cp);
	/* The restarted handler's child goes at the drain. */
	read_pids(fd, &hp2, &cp2);
	cr_assert_neq(hp2, hp);
	worker_stop(w);         /* drains, exits 0 */
	cr_assert_eq(wait_gone(cp2, GUARD_MS), 0, "the child %d of a stopped "
	    "handler is alive", (int)cp2);
	close(fd);
	unlink(fifo);
	tw_fini(&t);
}

struct gate {
	char started[256], release[256];
	int sfd;
};

static void
gate_init(struct gate *g, const char *prefix)
{
	snprintf(g->started, sizeof(g->started), "/tmp/%s.started", prefix);
	snprintf(g->release, sizeof(g->release), "/tmp/%s.release", prefix);
	unlink(g->started);
	unlink(g->release);
	cr_assert_eq(mkfifo(g->started, 0600), 0);
	cr_assert_eq(mkfifo(g->release, 0600), 0);
	g->sfd = open(g->started, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	cr_assert(g->sfd >= 0);
}

static void
gate_wait_started(struct gate *g)
{
	struct pollfd p = { .fd = g->sfd, .events = POLLIN };
	char c;

	cr_assert_eq(poll(&p, 1, GUARD_MS), 1, "handler never started");
	cr_assert_eq(read(g->sfd, &c, 1), 1);
}

static void
gate_release(struct gate *g)
{
	int fd = open(g->release, O_WRONLY | O_NONBLOCK | O_CLOEXEC);

	cr_assert(fd >= 0, "release: %s", strerror(errno));
	cr_assert_eq(write(fd, "1", 1), 1);
	close(fd);
}

static void
gate_fini(struct gate *g)
{
	close(g->sfd);
	unlink(g->started);
	unlink(g->release);
}

static char *
gate_payload(struct gate *g, bool first)
{
	static char p[700];

	snprintf(p, sizeof(p), "{\"op\":\"gate\",\"started\":\"%s\","
	    "\"release\":\"%s\",\"first\":%s}", g->started, g->release,
	    first ? "true" : "false");
	return p;
}

Test(worker, worker_killed_mid_task_is_resumed)
{
	struct tw t;
	struct res r;
	struct gate g;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	pid_t w;
	int st;

	tw_init(&t, "wkill");
	gate_init(&g, t.prefix);
	w = worker_start(&t, stream_args, h);
	submit(&t, "k1", gate_payload(&g, true));
	gate_wait_started(&g);
	kill(w, SIGKILL);
	waitpid(w, &st, 0);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 1);
	/* Same agent, instance and host: the same consumer. */
	w = worker_start(&t, stream_args, h);
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_str_eq(r.id, "k1");
	cr_assert_eq(r.attempt, 2, "attempt %u", r.attempt);
	res_clear(&r);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	worker_stop(w);
	gate_fini(&g);
	tw_fini(&t);
}

Test(worker, task_past_max_attempts_goes_dead)
{
	struct tw t;
	struct gate g;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	const char *x[] = { "--capabilities", "c", "--max-attempts", "1", NULL };
	struct hive_dead d;
	struct proto_err err;
	const char *m;
	size_t len;
	redisReply *e;
	pid_t w;
	int st;

	tw_init(&t, "poison");
	gate_init(&g, t.prefix);
	w = worker_start(&t, x, h);
	submit(&t, "p1", gate_payload(&g, true));
	gate_wait_started(&g);
	kill(w, SIGKILL);
	waitpid(w, &st, 0);
	w = worker_start(&t, x, h);
	e = next_entry(&t, "dead", t.last_dead, sizeof(t.last_dead), &m, &len);
	cr_assert_eq(proto_decode_dead(m, len, &d, &err), 0);
	/* One attempt made (the worker killed with it): the dead letter
	 * says 1, as docs/PROTOCOL.md's "the attempts made". */
	cr_assert_eq(d.attempt, 1, "attempt %u", d.attempt);
	cr_assert_str_eq(proto_code_name(d.code), "attempts");
	cr_assert(memmem(d.reason.ptr, d.reason.len, "after 1 attempts",
	    16) != NULL, "reason: %.*s", (int)d.reason.len, d.reason.ptr);
	cr_assert(d.id.len == 2 && memcmp(d.id.ptr, "p1", 2) == 0);
	proto_dead_clear(&d);
	freeReplyObject(e);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	worker_stop(w);
	gate_fini(&g);
	tw_fini(&t);
}

Test(worker, malformed_tasks_go_dead_with_reason)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_ECHO"), NULL };
	struct hive_dead d;
	struct proto_err err;
	const char *m;
	size_t len;
	redisReply *e, *x;
	pid_t w;
	char *big;

	tw_init(&t, "bad");
	w = worker_start(&t, stream_args, h);
	xadd_raw(&t, qkey(&t, "c", 1), "\xc1garbage", 8);
	x = redisCommand(t.rc, "XADD %s * other field", qkey(&t, "c", 1));
	freeReplyObject(x);
	big = calloc(1, HIVE_TASK_MAX + 16);
	big[0] = (char)0xdb;   /* str32 header claiming more than the limit */
	big[1] = 0x00; big[2] = 0x10; big[3] = 0x00; big[4] = 0x08;
	xadd_raw(&t, qkey(&t, "c", 1), big, HIVE_TASK_MAX + 16);
	free(big);
	submit(&t, "good", "1");
	for (int i = 0; i < 3; i++) {
		e = next_entry(&t, "dead", t.last_dead, sizeof(t.last_dead), &m,
		    &len);
		cr_assert_eq(proto_decode_dead(m, len, &d, &err), 0);
		cr_assert(d.reason.len > 0, "dead letter without a reason");
		cr_assert(d.stream.len > 0 && d.entry.len > 0);
		if (i == 0)
			cr_assert(d.raw.len == 8 &&
			    memcmp(d.raw.ptr, "\xc1garbage", 8) == 0);
		if (i == 1)
			cr_assert(memmem(d.reason.ptr, d.reason.len, "'m'", 3),
			    "%.*s", (int)d.reason.len, d.reason.ptr);
		cr_assert_str_eq(proto_code_name(d.code), i == 0 ? "malformed" :
		    i == 1 ? "missing" : "toobig");
		proto_dead_clear(&d);
		freeReplyObject(e);
	}
	next_result(&t, &r);
	cr_assert_str_eq(r.id, "good");
	cr_assert_eq(r.status, HIVE_STATUS_OK);
	res_clear(&r);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	worker_stop(w);
	tw_fini(&t);
}

Test(worker, stream_garbage_answer_fails_that_task)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	pid_t w;

	tw_init(&t, "garbage");
	w = worker_start(&t, stream_args, h);
	submit(&t, "g1", "{\"op\":\"garbage\"}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_ERROR);
	cr_assert(strstr(r.error, "invalid answer") != NULL, "%s", r.error);
	cr_assert_str_eq(proto_code_name(r.code), "handler");
	res_clear(&r);
	submit(&t, "g2", "{\"op\":\"echo\"}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK);
	cr_assert_eq(r.attempt, 1, "the handler was not restarted");
	res_clear(&r);
	worker_stop(w);
	tw_fini(&t);
}

/*
 * A stream handler that dies on every task: the worker retries it until
 * max_attempts runs were made, then the dead letter says that many
 * attempts (not one more: the attempt that would come is not made).
 */
Test(worker, dead_letter_counts_the_attempts_made)
{
	struct tw t;
	const char *h[] = { "/bin/sh", "-c", "read line; kill -9 $$", NULL };
	const char *x[] = { "--capabilities", "c", "--max-attempts", "2", NULL };
	struct hive_dead d;
	struct proto_err err;
	const char *m;
	size_t len;
	redisReply *e;
	pid_t w;

	tw_init(&t, "attempts");
	w = worker_start(&t, x, h);
	submit(&t, "k2", "0");
	e = next_entry(&t, "dead", t.last_dead, sizeof(t.last_dead), &m, &len);
	cr_assert_eq(proto_decode_dead(m, len, &d, &err), 0);
	str_eq(d.id, "k2");
	cr_assert_eq(d.attempt, 2, "max_attempts 2, two runs: attempt %u",
	    d.attempt);
	cr_assert_str_eq(proto_code_name(d.code), "attempts");
	cr_assert(memmem(d.reason.ptr, d.reason.len, "gave up after 2 attempts",
	    24) != NULL, "reason: %.*s", (int)d.reason.len, d.reason.ptr);
	proto_dead_clear(&d);
	freeReplyObject(e);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	worker_stop(w);
	tw_fini(&t);
}

/*
 * A task the worker cannot take still names itself when its id can be
 * read: a v of 2 goes to the dead letters with that id, the code
 * "version" and the stream and entry of the XADD that put it there.
 */
Test(worker, dead_letter_of_unreadable_task_names_its_id)
{
	struct tw t;
	const char *h[] = { env("HIVE_ECHO"), NULL };
	static const char v2[] = "\x83\xa1v\x02\xa2id\xa4v2-1\xa7payload\x01";
	struct hive_dead d;
	struct proto_err err;
	const char *m;
	size_t len;
	redisReply *e, *x;
	pid_t w;

	tw_init(&t, "v2");
	w = worker_start(&t, stream_args, h);
	x = redisCommand(t.rc, "XADD %s * m %b", qkey(&t, "c", 1), v2,
	    sizeof(v2) - 1);
	cr_assert(x && x->type == REDIS_REPLY_STRING);
	e = next_entry(&t, "dead", t.last_dead, sizeof(t.last_dead), &m, &len);
	cr_assert_eq(proto_decode_dead(m, len, &d, &err), 0);
	str_eq(d.id, "v2-1");
	cr_assert_str_eq(proto_code_name(d.code), "version");
	cr_assert(d.reason.len > 15 && memcmp(d.reason.ptr, "malformed task: ",
	    15) == 0, "reason: %.*s", (int)d.reason.len, d.reason.ptr);
	str_eq(d.stream, qkey(&t, "c", 1));
	str_eq(d.entry, x->str);
	cr_assert_eq(d.attempt, 0);
	proto_dead_clear(&d);
	freeReplyObject(e);
	freeReplyObject(x);
	worker_stop(w);
	tw_fini(&t);
}

/* Next event on <p>:events; its kind, task and attempt. */
static void
next_event(struct tw *t, char *last, size_t lastlen, char *kind,
    char *task, unsigned *attempt, char *reason, size_t rlen)
{
	struct hive_event ev;
	struct proto_err err;
	const char *m;
	size_t len;
	redisReply *e = next_entry(t, "events", last, lastlen, &m, &len);

	cr_assert_eq(proto_decode_event(m, len, &ev, &err), 0);
	snprintf(kind, 64, "%.*s", (int)ev.kind.len, ev.kind.ptr);
	snprintf(task, HIVE_ID_MAX + 1, "%.*s", (int)ev.task.len, ev.task.ptr);
	snprintf(reason, rlen, "%.*s", (int)ev.reason.len, ev.reason.ptr);
	*attempt = ev.attempt;
	cr_assert(ev.agent.len == 3 && memcmp(ev.agent.ptr, "a/1", 3) == 0,
	    "agent %.*s", (int)ev.agent.len, ev.agent.ptr);
	cr_assert(ev.host.len == strlen(t->host) &&
	    memcmp(ev.host.ptr, t->host, ev.host.len) == 0);
	proto_event_clear(&ev);
	freeReplyObject(e);
}

/*
 * With --task-events each task is a task.started event when the handler
 * gets it, and a task.completed or task.failed with its result; a failure
 * the handler reports has the code "failed".  (Without, none: see
 * nul_in_a_string_comes_back.)
 */
Test(worker, task_events_and_failure_code)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	const char *x[] = { "--capabilities", "c", "--task-events", NULL };
	char last[64] = "0", kind[64], task[HIVE_ID_MAX + 1], reason[256];
	unsigned attempt;
	pid_t w;

	tw_init(&t, "events");
	w = worker_start(&t, x, h);
	submit(&t, "e1", "{\"op\":\"echo\"}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK);
	cr_assert_eq(r.code, HIVE_CODE_NONE);
	res_clear(&r);
	submit(&t, "e2", "{\"op\":\"fail\"}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_ERROR);
	cr_assert_str_eq(proto_code_name(r.code), "failed");
	res_clear(&r);
	next_event(&t, last, sizeof(last), kind, task, &attempt, reason,
	    sizeof(reason));
	cr_assert_str_eq(kind, "task.started");
	cr_assert_str_eq(task, "e1");
	cr_assert_eq(attempt, 1);
	next_event(&t, last, sizeof(last), kind, task, &attempt, reason,
	    sizeof(reason));
	cr_assert_str_eq(kind, "task.completed");
	cr_assert_str_eq(task, "e1");
	next_event(&t, last, sizeof(last), kind, task, &attempt, reason,
	    sizeof(reason));
	cr_assert_str_eq(kind, "task.started");
	cr_assert_str_eq(task, "e2");
	next_event(&t, last, sizeof(last), kind, task, &attempt, reason,
	    sizeof(reason));
	cr_assert_str_eq(kind, "task.failed");
	cr_assert_str_eq(task, "e2");
	cr_assert_eq(attempt, 1);
	cr_assert_str_eq(reason, "asked to fail");
	worker_stop(w);
	tw_fini(&t);
}

/*
 * What the worker sends a handler it takes back: a payload string with a
 * NUL goes out as "\u0000" and comes back in the answer (here a stream
 * handler made of sed, which answers with the line's payload as it is).
 */
Test(worker, nul_in_a_string_comes_back)
{
	struct tw t;
	struct res r;
	const char *h[] = { "/bin/sed", "-u", "-e",
	    "s/^{\"id\":\"\\([^\"]*\\)\",.*\"payload\":\\(.*\\),\"memory\":.*$/"
	    "{\"id\":\"\\1\",\"status\":\"ok\",\"result\":\\2}/", NULL };
	redisReply *x;
	pid_t w;

	tw_init(&t, "nul");
	w = worker_start(&t, stream_args, h);
	/* {"v": 1, "id": "n1", "payload": "a\0b"} */
	xadd_raw(&t, qkey(&t, "c", 1), "\x83\xa1v\x01\xa2id\xa2n1\xa7payload"
	    "\xa3" "a\0b", 22);
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert(json_is_string(r.result) && json_string_length(r.result) == 3 &&
	    memcmp(json_string_value(r.result), "a\0b", 3) == 0, "%s",
	    jtext(r.result));
	res_clear(&r);
	/* no --task-events: the worker wrote no event */
	x = redisCommand(t.rc, "EXISTS %s", nkey(&t, "events"));
	cr_assert(x != NULL && x->type == REDIS_REPLY_INTEGER && x->integer == 0);
	freeReplyObject(x);
	worker_stop(w);
	tw_fini(&t);
}

/* ---- pulling ---- */

Test(worker, priorities_higher_first)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_ECHO"), NULL };
	char id[16];
	pid_t w;

	tw_init(&t, "prio");
	/* Queued before the worker starts, lowest level first. */
	for (int i = 0; i < 9; i++) {
		unsigned prio = (unsigned)(i % 3);
		snprintf(id, sizeof(id), "p%u-%d", prio, i);
		submit_to(&t, qkey(&t, "c", prio), id, "0", 0);
	}
	w = worker_start(&t, stream_args, h);
	for (int i = 0; i < 9; i++) {
		next_result(&t, &r);
		cr_assert_eq(r.id[1] - '0', 2 - i / 3, "result %d is %s", i, r.id);
		res_clear(&r);
	}
	worker_stop(w);
	tw_fini(&t);
}

Test(worker, broadcast_reaches_every_worker)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_ECHO"), NULL };
	const char *x1[] = { "--instance", "1", NULL };
	const char *x2[] = { "--instance", "2", NULL };
	char key[HIVE_KEY_MAX];
	pid_t w1, w2;
	int seen = 0;

	tw_init(&t, "bcast");
	w1 = worker_start(&t, x1, h);
	w2 = worker_start(&t, x2, h);
	/* A task through each direct queue: both are set up. */
	for (unsigned i = 1; i <= 2; i++) {
		cr_assert(proto_key_direct(key, sizeof(key), t.prefix, "a", i) > 0);
		submit_to(&t, key, "warm", "0", 0);
	}
	for (int i = 0; i < 2; i++) {
		next_result(&t, &r);
		res_clear(&r);
	}
	submit_to(&t, nkey(&t, "broadcast"), "all", "\"hi\"", 0);
	for (int i = 0; i < 2; i++) {
		next_result(&t, &r);
		cr_assert_str_eq(r.id, "all");
		cr_assert_eq(r.status, HIVE_STATUS_OK);
		seen |= strcmp(r.agent, "a/1") == 0 ? 1 : strcmp(r.agent, "a/2") == 0 ? 2 : 0;
		res_clear(&r);
	}
	cr_assert_eq(seen, 3, "broadcast seen by a/1 and a/2");
	worker_stop(w1);
	worker_stop(w2);
	tw_fini(&t);
}

Test(worker, stream_concurrency_runs_n_at_once)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	const char *x[] = { "--capabilities", "c", "--concurrency", "4", NULL };
	char id[16];
	pid_t w;

	tw_init(&t, "sconc");
	w = worker_start(&t, x, h);
	/* The handler answers none until it holds 4: only 4 in flight at
	 * once can finish these. */
	for (int i = 0; i < 4; i++) {
		snprintf(id, sizeof(id), "b%d", i);
		submit(&t, id, "{\"op\":\"barrier\",\"n\":4}");
	}
	for (int i = 0; i < 4; i++) {
		next_result(&t, &r);
		cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
		res_clear(&r);
	}
	worker_stop(w);
	tw_fini(&t);
}

Test(worker, exec_concurrency_runs_n_at_once)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "exec", NULL };
	const char *x[] = { "--capabilities", "c", "--mode", "exec",
	    "--concurrency", "3", NULL };
	char id[16], dir[128], payload[256];
	pid_t w;

	tw_init(&t, "econc");
	snprintf(dir, sizeof(dir), "/tmp/%s.d", t.prefix);
	cr_assert_eq(mkdir(dir, 0700), 0);
	w = worker_start(&t, x, h);
	snprintf(payload, sizeof(payload),
	    "{\"op\":\"barrier\",\"n\":3,\"dir\":\"%s\"}", dir);
	for (int i = 0; i < 3; i++) {
		snprintf(id, sizeof(id), "e%d", i);
		submit(&t, id, payload);
	}
	for (int i = 0; i < 3; i++) {
		next_result(&t, &r);
		cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
		res_clear(&r);
		snprintf(id, sizeof(id), "e%d", i);
	}
	for (int i = 0; i < 3; i++) {
		char f[256];
		snprintf(f, sizeof(f), "%s/e%d", dir, i);
		unlink(f);
	}
	rmdir(dir);
	worker_stop(w);
	tw_fini(&t);
}

Test(worker, exec_timeout_kills_process_group)
{
	struct tw t;
	struct res r;
	char pidfile[128], script[512];
	const char *h[] = { "/bin/sh", "-c", script, NULL };
	const char *x[] = { "--capabilities", "c", "--mode", "exec",
	    "--task-timeout", "1000", NULL };
	FILE *f;
	long gc = 0;
	pid_t w;

	tw_init(&t, "timeout");
	snprintf(pidfile, sizeof(pidfile), "/tmp/%s.pid", t.prefix);
	/* The grandchild writes its pid, then everything sleeps. */
	snprintf(script, sizeof(script),
	    "sleep 300 & echo $! > %s.tmp && mv %s.tmp %s; wait", pidfile,
	    pidfile, pidfile);
	w = worker_start(&t, x, h);
	submit(&t, "slow", "0");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_ERROR);
	cr_assert(strstr(r.error, "timed out") != NULL, "%s", r.error);
	cr_assert_str_eq(proto_code_name(r.code), "timeout");
	res_clear(&r);
	f = fopen(pidfile, "r");
	cr_assert(f != NULL, "the grandchild never wrote %s", pidfile);
	cr_assert_eq(fscanf(f, "%ld", &gc), 1);
	fclose(f);
	unlink(pidfile);
	cr_assert_eq(wait_gone((pid_t)gc, GUARD_MS), 0,
	    "grandchild %ld still alive", gc);
	worker_stop(w);
	tw_fini(&t);
}

Test(worker, stream_timeout_fails_task_and_restarts_handler)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	const char *x[] = { "--capabilities", "c", "--concurrency", "3",
	    "--task-timeout", "1000", NULL };
	bool slow = false, held = false;
	long long old_pid;
	pid_t w;

	tw_init(&t, "stimeout");
	w = worker_start(&t, x, h);
	submit(&t, "p0", "{\"op\":\"pid\"}");
	next_result(&t, &r);
	old_pid = json_integer_value(r.result);
	cr_assert(old_pid > 0, "%s", jtext(r.result));
	res_clear(&r);
	/* Both are held by the handler.  "held" has a timeout of its own,
	 * longer than --task-timeout; "slow" has --task-timeout's. */
	submit_to(&t, qkey(&t, "c", 1), "held", "{\"op\":\"hold\"}", 60000);
	submit(&t, "slow", "{\"op\":\"hold\"}");
	for (int i = 0; i < 2; i++) {
		next_result(&t, &r);
		if (strcmp(r.id, "slow") == 0) {
			cr_assert(!slow, "slow answered twice");
			slow = true;
			cr_assert_eq(r.status, HIVE_STATUS_ERROR);
			cr_assert_str_eq(r.error, "timed out after 1000 ms");
			cr_assert_str_eq(proto_code_name(r.code), "timeout");
			cr_assert_eq(r.attempt, 1);
		} else {
			cr_assert_str_eq(r.id, "held");
			held = true;
			/* Re-sent to the restarted handler, which answers. */
			cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
			cr_assert_eq(r.attempt, 2, "attempt %u", r.attempt);
		}
		res_clear(&r);
	}
	cr_assert(slow && held);
	/* The old handler was killed, a new one serves, and the timed-out
	 * task was not run again (its result would come before this). */
	cr_assert_eq(wait_gone((pid_t)old_pid, GUARD_MS), 0,
	    "handler %lld still alive", old_pid);
	submit(&t, "p1", "{\"op\":\"pid\"}");
	next_result(&t, &r);
	cr_assert_str_eq(r.id, "p1");
	cr_assert(json_integer_value(r.result) != old_pid);
	res_clear(&r);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	worker_stop(w);
	tw_fini(&t);
}

/* Kill every connection of the worker from the server side. */
static int
kill_worker_clients(struct tw *t)
{
	redisReply *r = redisCommand(t->rc, "CLIENT LIST");
	char *line, *save, *list, *name, want[128];
	int n = 0;

	cr_assert(r && r->type != REDIS_REPLY_ERROR);
	list = strdup(r->str);
	freeReplyObject(r);
	snprintf(want, sizeof(want), "name=hive-worker:a/1@%s:", t->host);
	for (line = strtok_r(list, "\n", &save); line;
	    line = strtok_r(NULL, "\n", &save)) {
		long long id;
		if ((name = strstr(line, want)) == NULL)
			continue;
		if (sscanf(line, "id=%lld", &id) != 1)
			continue;
		r = redisCommand(t->rc, "CLIENT KILL ID %lld", id);
		freeReplyObject(r);
		n++;
	}
	free(list);
	return n;
}

Test(worker, redis_connection_killed_worker_goes_on)
{
	struct tw t;
	struct res r;
	struct gate g;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	pid_t w;

	tw_init(&t, "rkill");
	gate_init(&g, t.prefix);
	w = worker_start(&t, stream_args, h);
	submit(&t, "r0", "{\"op\":\"echo\"}");
	next_result(&t, &r);
	res_clear(&r);
	submit(&t, "r1", gate_payload(&g, false));
	gate_wait_started(&g);
	cr_assert(kill_worker_clients(&t) >= 3, "worker connections not found");
	gate_release(&g);
	next_result(&t, &r);
	cr_assert_str_eq(r.id, "r1");
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_eq(r.attempt, 1);
	res_clear(&r);
	submit(&t, "r2", "{\"op\":\"echo\"}");
	next_result(&t, &r);
	cr_assert_str_eq(r.id, "r2");
	res_clear(&r);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	worker_stop(w);
	gate_fini(&g);
	tw_fini(&t);
}

/*
 * A queue deleted under a running worker (its group with it): its read
 * fails (NOGROUP; UNBLOCKED when it was blocked on it), it sets up again,
 * makes the group again, and serves what is queued since.
 */
Test(worker, queue_deleted_worker_makes_its_group_again)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_ECHO"), NULL };
	redisReply *x;
	pid_t w;

	tw_init(&t, "nogrp");
	w = worker_start(&t, stream_args, h);
	submit(&t, "g0", "0");
	next_result(&t, &r);
	res_clear(&r);
	x = redisCommand(t.rc, "DEL %s", qkey(&t, "c", 1));
	freeReplyObject(x);
	submit(&t, "g1", "1");
	next_result(&t, &r);
	cr_assert_str_eq(r.id, "g1");
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_eq(r.attempt, 1);
	res_clear(&r);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	worker_stop(w);
	tw_fini(&t);
}

/*
 * More entries pending for our consumer name than one page of the
 * re-read (WRK_PENDING_PAGE): a worker starting under that name resumes
 * them all, each once, with the delivery before counted as an attempt.
 */
Test(worker, resumes_more_pending_entries_than_a_page)
{
	enum { N = 300 };
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_ECHO"), NULL };
	static char seen[N];
	char id[16], consumer[128];
	redisReply *x;
	pid_t w;
	int i;

	tw_init(&t, "pages");
	memset(seen, 0, sizeof(seen));
	x = redisCommand(t.rc, "XGROUP CREATE %s workers 0 MKSTREAM",
	    qkey(&t, "c", 1));
	freeReplyObject(x);
	for (i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "q%d", i);
		submit(&t, id, "0");
	}
	/* Delivered to a worker of our name that is gone, key and all. */
	snprintf(consumer, sizeof(consumer), "a/1@%s", t.host);
	x = redisCommand(t.rc, "XREADGROUP GROUP workers %s COUNT %d "
	    "STREAMS %s >", consumer, N, qkey(&t, "c", 1));
	cr_assert(x && x->type == REDIS_REPLY_ARRAY &&
	    x->element[0]->element[1]->elements == N);
	freeReplyObject(x);
	w = worker_start(&t, stream_args, h);
	for (i = 0; i < N; i++) {
		next_result(&t, &r);
		cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
		cr_assert_eq(r.attempt, 2, "%s: attempt %u", r.id, r.attempt);
		cr_assert(r.id[0] == 'q' && atoi(r.id + 1) < N, "%s", r.id);
		cr_assert_not(seen[atoi(r.id + 1)], "%s twice", r.id);
		seen[atoi(r.id + 1)] = 1;
		res_clear(&r);
	}
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	worker_stop(w);
	tw_fini(&t);
}

/* Whether this machine has an IPv6 loopback: ::1 can be bound. */
static bool
has_ipv6_loopback(void)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6,
	    .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = fd != -1 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

	if (fd != -1)
		close(fd);
	return ok;
}

/* The address of the worker's connection named name, from CLIENT LIST
 * ("" if there is none). */
static void
worker_client_addr(struct tw *t, const char *conn, char *addr, size_t len)
{
	redisReply *r = redisCommand(t->rc, "CLIENT LIST");
	char want[128], *line, *save, *list, *a;

	cr_assert(r && r->type != REDIS_REPLY_ERROR);
	list = strdup(r->str);
	freeReplyObject(r);
	snprintf(want, sizeof(want), "name=hive-worker:a/1@%s:%s ", t->host,
	    conn);
	addr[0] = '\0';
	for (line = strtok_r(list, "\n", &save); line;
	    line = strtok_r(NULL, "\n", &save))
		if (strstr(line, want) != NULL &&
		    (a = strstr(line, " addr=")) != NULL)
			snprintf(addr, len, "%.*s", (int)strcspn(a + 6, " "),
			    a + 6);
	free(list);
}

/*
 * config.c takes redis = [::1]:6379 and hived passes it on as --redis:
 * the worker parses it as hived does (rconn) and connects over IPv6.
 */
Test(worker, redis_bracketed_ipv6_address)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	const char *host6 = getenv("HIVE_TEST_REDIS_HOST6");
	char addr[128];
	pid_t w;

	if (!has_ipv6_loopback())
		cr_skip_test("this machine has no IPv6 loopback (::1)");
	cr_assert(host6 != NULL, "the machine has ::1 but the test Redis does "
	    "not listen on it (scripts/lib/services.sh exports "
	    "HIVE_TEST_REDIS_HOST6 when it does)");
	tw_init(&t, "ipv6");
	snprintf(t.redis, sizeof(t.redis), "[%s]:%s", host6,
	    env("HIVE_TEST_REDIS_PORT"));
	w = worker_start(&t, stream_args, h);
	submit(&t, "v6", "{\"op\":\"echo\"}");
	next_result(&t, &r);
	cr_assert_str_eq(r.id, "v6");
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	res_clear(&r);
	worker_client_addr(&t, "cmd", addr, sizeof(addr));
	cr_assert(strncmp(addr, "[::1]:", 6) == 0 ||
	    strncmp(addr, "::1:", 4) == 0, "the worker's connection "
	    "comes from \"%s\", not ::1", addr);
	worker_stop(w);
	tw_fini(&t);
}

/* ---- memory, fds, the link to hived ---- */

Test(worker, memory_carried_across_tasks)
{
	struct tw t;
	struct res r;
	char path[4096];
	const char *h[] = { "python3", path, NULL };
	pid_t w;

	snprintf(path, sizeof(path), "%s/examples/wordcount.py",
	    env("HIVE_SOURCE_DIR"));
	tw_init(&t, "memory");
	w = worker_start(&t, stream_args, h);
	submit(&t, "m1", "{\"text\":\"the cat and the dog\"}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_eq(r.memory_v, 1);
	cr_assert_eq(json_integer_value(json_object_get(r.result, "words")), 5);
	res_clear(&r);
	submit(&t, "m2", "{\"text\":\"the end\"}");
	next_result(&t, &r);
	cr_assert_eq(r.memory_v, 2);
	cr_assert_eq(json_integer_value(json_object_get(r.result, "total")), 7,
	    "%s", jtext(r.result));
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(
	    r.memory, "seen"), "the")), 3, "%s", jtext(r.memory));
	res_clear(&r);
	/* SIGKILL right after the ack: the memory after m2 is in Redis (the
	 * memory key, written in the acknowledging MULTI/EXEC), and a new
	 * worker of the same instance starts from it, even standalone. */
	kill(w, SIGKILL);
	waitpid(w, NULL, 0);
	w = worker_start(&t, stream_args, h);
	submit(&t, "m3", "{\"text\":\"the\"}");
	next_result(&t, &r);
	cr_assert_eq(r.memory_v, 3);
	cr_assert_eq(json_integer_value(json_object_get(r.result, "total")), 8,
	    "%s", jtext(r.result));
	res_clear(&r);
	worker_stop(w);
	tw_fini(&t);
}

Test(worker, handlers_get_only_stdio)
{
	struct tw t;
	struct res r;
	const char *hs[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	const char *he[] = { env("HIVE_TEST_HANDLER"), "exec", NULL };
	const char *xe[] = { "--capabilities", "c", "--mode", "exec", NULL };
	pid_t w;

	tw_init(&t, "fds");
	w = worker_start(&t, stream_args, hs);
	submit(&t, "f1", "{\"op\":\"fds\"}");
	next_result(&t, &r);
	cr_assert_str_eq(jtext(r.result), "[0,1,2]");
	res_clear(&r);
	worker_stop(w);
	w = worker_start(&t, xe, he);
	submit(&t, "f2", "{\"op\":\"fds\"}");
	next_result(&t, &r);
	cr_assert_str_eq(jtext(r.result), "[0,1,2]");
	res_clear(&r);
	worker_stop(w);
	tw_fini(&t);
}

/*
 * A workflow task's "parents" reach the handler: last in its line, after
 * "memory", as JSON, in both modes; a task without parents has no such
 * key.  The handler (op "line") answers with the line it read.
 */
static void
submit_parents(struct tw *t, const char *id, const char *parents)
{
	struct hive_task task;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *p = json_loads("{\"op\":\"line\"}", 0, NULL);
	json_t *j = parents ? json_loads(parents, 0, NULL) : NULL;
	char why[256];

	cr_assert(parents == NULL || j != NULL, "bad JSON %s", parents);
	msgpack_zone_init(&z, 1024);
	memset(&task, 0, sizeof(task));
	task.id = HIVE_STR(id);
	task.workflow = HIVE_STR("wf-1");
	cr_assert_eq(proto_json_to_obj(p, &z, &task.payload, &err), 0);
	if (j != NULL)
		cr_assert_eq(proto_json_to_obj(j, &z, &task.parents, &err), 0);
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_task(&sb, &task, &err), 0, "%s",
	    proto_strerror(&err, why, sizeof(why)));
	xadd_raw(t, qkey(t, "c", 1), sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(p);
	json_decref(j);
}

/* The keys of the line the handler saw, in order, "a,b,c". */
static const char *
line_keys(json_t *line)
{
	static char buf[256];
	const char *k;
	json_t *v;
	size_t len = 0;

	cr_assert(json_is_object(line), "the handler saw no object");
	buf[0] = '\0';
	json_object_foreach(line, k, v)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s",
		    len ? "," : "", k);
	return buf;
}

static void
parents_seen(const char *const *x, const char *const *h, const char *tag)
{
	static const char parents[] = "{\"a\":{\"n\":1},\"b\":null,"
	    "\"c\":[\"x\",2.5]}";
	struct tw t;
	struct res r;
	json_t *want = json_loads(parents, 0, NULL);
	pid_t w;

	tw_init(&t, tag);
	w = worker_start(&t, x, h);
	submit_parents(&t, "p1", parents);
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_str_eq(line_keys(r.result),
	    "id,attempt,agent,payload,memory,parents,traceparent");
	cr_assert(json_equal(json_object_get(r.result, "parents"), want),
	    "parents seen: %s", jtext(json_object_get(r.result, "parents")));
	res_clear(&r);
	submit_parents(&t, "p2", NULL);
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_str_eq(line_keys(r.result),
	    "id,attempt,agent,payload,memory,traceparent");
	res_clear(&r);
	worker_stop(w);
	json_decref(want);
	tw_fini(&t);
}

Test(worker, stream_handler_sees_parents)
{
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };

	parents_seen(stream_args, h, "pars");
}

Test(worker, exec_handler_sees_parents)
{
	const char *h[] = { env("HIVE_TEST_HANDLER"), "exec", NULL };
	const char *x[] = { "--capabilities", "c", "--mode", "exec", NULL };

	parents_seen(x, h, "pare");
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

/* Read frames until one of type want; returns it decoded (clear it). */
static void
recv_frame(int fd, struct proto_framer *fr, enum hive_frame_type want,
    struct hive_frame *out)
{
	struct proto_err err;
	const char *body;
	size_t blen;
	char buf[4096];
	struct pollfd p = { .fd = fd, .events = POLLIN };

	for (;;) {
		while (proto_framer_next(fr, &body, &blen, &err) == 1) {
			cr_assert_eq(proto_decode_frame(body, blen, out, &err), 0);
			if (out->type == want)
				return;
			proto_frame_clear(out);
		}
		cr_assert_eq(poll(&p, 1, GUARD_MS), 1, "no frame %d", want);
		ssize_t n = read(fd, buf, sizeof(buf));
		cr_assert(n > 0, "hive-worker closed the socketpair");
		cr_assert_eq(proto_framer_feed(fr, buf, (size_t)n), 0);
	}
}

Test(worker, link_protocol_memory_and_drain)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	const char *x[] = { "--capabilities", "c", "--fd", "3",
	    "--heartbeat-ms", "50", NULL };
	struct hive_frame f;
	struct proto_framer fr;
	msgpack_zone z;
	json_t *mem = json_pack("{s:i}", "n", 5);
	struct proto_err err;
	int sp[2], st;
	pid_t w;

	tw_init(&t, "link");
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	w = worker_start_fd(&t, x, h, sp[1]);
	close(sp[1]);
	proto_framer_init(&fr);
	msgpack_zone_init(&z, 1024);
	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_MEMORY;
	f.u.memory.agent = HIVE_STR("a");
	f.u.memory.instance = 1;
	f.u.memory.memory_v = 7;
	cr_assert_eq(proto_json_to_obj(mem, &z, &f.u.memory.memory, &err), 0);
	send_frame(sp[0], &f);

	recv_frame(sp[0], &fr, HIVE_FRAME_HELLO, &f);
	cr_assert_eq(f.u.hello.instance, 1);
	cr_assert_eq(f.u.hello.pid, w);
	proto_frame_clear(&f);

	submit(&t, "c1", "{\"op\":\"count\"}");
	next_result(&t, &r);
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_str_eq(jtext(r.result), "6", "memory from hived reached the handler");
	cr_assert_eq(r.memory_v, 8);
	res_clear(&r);
	recv_frame(sp[0], &fr, HIVE_FRAME_MEMORY, &f);
	cr_assert_eq(f.u.memory.memory_v, 8);
	proto_frame_clear(&f);
	recv_frame(sp[0], &fr, HIVE_FRAME_HEARTBEAT, &f);
	cr_assert(f.u.heartbeat.done >= 1 || f.u.heartbeat.state != HIVE_WSTATE_STARTING);
	cr_assert(f.u.heartbeat.handler_pid > 0);
	proto_frame_clear(&f);

	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_CONTROL;
	f.u.control.cmd = HIVE_CTL_DRAIN;
	send_frame(sp[0], &f);
	st = worker_wait(w);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %#x", st);
	close(sp[0]);
	proto_framer_free(&fr);
	msgpack_zone_destroy(&z);
	json_decref(mem);
	tw_fini(&t);
}

/* ---- the liveness key (record/record.h) ---- */

static const char *
alive_key(struct tw *t)
{
	static char k[256];

	snprintf(k, sizeof(k), "%s:alive:a/1@%s", t->prefix, t->host);
	return k;
}

static long long
redis_int(struct tw *t, const char *cmd, const char *key)
{
	redisReply *r = redisCommand(t->rc, "%s %s", cmd, key);
	long long n;

	cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s %s", cmd, key);
	n = r->integer;
	freeReplyObject(r);
	return n;
}

static void
assert_alive_pid(struct tw *t, pid_t pid)
{
	redisReply *r = redisCommand(t->rc, "GET %s", alive_key(t));
	char want[24];

	/* "<pid>", or "<pid> <boot id>,<pid namespace>" */
	snprintf(want, sizeof(want), "%ld", (long)pid);
	cr_assert(r && r->type == REDIS_REPLY_STRING, "no key %s", alive_key(t));
	cr_assert(strncmp(r->str, want, strlen(want)) == 0 &&
	    (r->str[strlen(want)] == '\0' || r->str[strlen(want)] == ' '),
	    "key %s = \"%s\", want pid %s", alive_key(t), r->str, want);
	freeReplyObject(r);
}

Test(worker, alive_key_kept_while_running_deleted_after_drain)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_ECHO"), NULL };
	/* ttl = max(5000, 5 * 50) */
	const char *x[] = { "--capabilities", "c", "--fd", "3",
	    "--heartbeat-ms", "50", NULL };
	struct hive_frame f;
	struct proto_framer fr;
	long long ttl;
	int sp[2], st, beats;
	pid_t w;

	tw_init(&t, "alive");
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	w = worker_start_fd(&t, x, h, sp[1]);
	close(sp[1]);
	proto_framer_init(&fr);
	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_MEMORY;
	f.u.memory.agent = HIVE_STR("a");
	f.u.memory.instance = 1;
	send_frame(sp[0], &f);
	recv_frame(sp[0], &fr, HIVE_FRAME_HELLO, &f);
	proto_frame_clear(&f);
	/* A result: the setup, which sets the key, is done. */
	submit(&t, "a1", "1");
	next_result(&t, &r);
	res_clear(&r);
	assert_alive_pid(&t, w);
	ttl = redis_int(&t, "PTTL", alive_key(&t));
	cr_assert(ttl > 0 && ttl <= 5000, "PTTL %lld", ttl);
	/* Refreshed every heartbeat: gone, it comes back. */
	cr_assert_eq(redis_int(&t, "DEL", alive_key(&t)), 1);
	for (beats = 0; redis_int(&t, "EXISTS", alive_key(&t)) == 0; beats++) {
		cr_assert(beats < 400, "key not set again in 400 heartbeats");
		recv_frame(sp[0], &fr, HIVE_FRAME_HEARTBEAT, &f);
		proto_frame_clear(&f);
	}
	ttl = redis_int(&t, "PTTL", alive_key(&t));
	cr_assert(ttl > 0 && ttl <= 5000, "PTTL %lld", ttl);
	assert_alive_pid(&t, w);

	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_CONTROL;
	f.u.control.cmd = HIVE_CTL_DRAIN;
	send_frame(sp[0], &f);
	st = worker_wait(w);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %#x", st);
	cr_assert_eq(redis_int(&t, "EXISTS", alive_key(&t)), 0,
	    "a drained worker leaves no liveness key");
	close(sp[0]);
	proto_framer_free(&fr);
	tw_fini(&t);
}

Test(worker, alive_key_expires_after_sigkill)
{
	struct tw t;
	struct res r;
	const char *h[] = { env("HIVE_ECHO"), NULL };
	/* ttl = max(5000, 5 * 2000) */
	const char *x[] = { "--capabilities", "c", "--heartbeat-ms", "2000",
	    NULL };
	long long ttl;
	pid_t w;
	int st;

	tw_init(&t, "alivekill");
	w = worker_start(&t, x, h);
	submit(&t, "k1", "1");
	next_result(&t, &r);
	res_clear(&r);
	assert_alive_pid(&t, w);
	/* Set at most a heartbeat ago (a guard of 3 s for a slow machine). */
	ttl = redis_int(&t, "PTTL", alive_key(&t));
	cr_assert(ttl > 5000 && ttl <= 10000, "PTTL %lld", ttl);
	kill(w, SIGKILL);
	cr_assert_eq(waitpid(w, &st, 0), w);
	/* Nobody deletes it: it has a time to live and expires by itself. */
	ttl = redis_int(&t, "PTTL", alive_key(&t));
	cr_assert(ttl > 0 && ttl <= 10000, "PTTL %lld", ttl);
	assert_alive_pid(&t, w);
	tw_fini(&t);
}

/* ---- a successor of the same consumer name (docs/WORKER-CONTRACT.md) ---- */

/* A worker's stderr through a pipe, copied to ours as it is read. */
struct errlog {
	int fd;                     /* read end */
	char buf[32768];
	size_t len;
};

static int
errlog_open(struct errlog *e)
{
	int p[2];

	memset(e, 0, sizeof(*e));
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	e->fd = p[0];
	return p[1];                /* for the worker; close it after the fork */
}

/* Read until some line holds needle (a guard, never a timing). */
static void
errlog_wait(struct errlog *e, const char *needle)
{
	long long deadline = tu_now_ms() + GUARD_MS;
	struct pollfd p = { .fd = e->fd, .events = POLLIN };
	ssize_t n;

	for (;;) {
		e->buf[e->len] = '\0';
		if (strstr(e->buf, needle) != NULL)
			return;
		if (e->len > sizeof(e->buf) / 2) {
			/* Keep the last line (it may be incomplete). */
			char *nl = strrchr(e->buf, '\n');
			size_t keep = nl ? e->len - (size_t)(nl + 1 - e->buf) : 0;
			memmove(e->buf, e->buf + e->len - keep, keep);
			e->len = keep;
		}
		long long left = deadline - tu_now_ms();
		cr_assert(left > 0 && poll(&p, 1, (int)left) == 1,
		    "worker never logged \"%s\"", needle);
		n = read(e->fd, e->buf + e->len, sizeof(e->buf) - 1 - e->len);
		cr_assert(n > 0, "worker closed stderr before logging \"%s\"",
		    needle);
		fwrite(e->buf + e->len, 1, (size_t)n, stderr);
		e->len += (size_t)n;
	}
}

/* After the worker exited: the rest to our stderr. */
static void
errlog_close(struct errlog *e)
{
	char b[4096];
	ssize_t n;

	while ((n = read(e->fd, b, sizeof(b))) > 0)
		fwrite(b, 1, (size_t)n, stderr);
	close(e->fd);
}

/* How many results of task id the results stream holds, and how many
 * entries it holds in all. */
static int
results_of(struct tw *t, const char *id, int *total)
{
	redisReply *r = redisCommand(t->rc, "XRANGE %s - +",
	    nkey(t, "results"));
	struct hive_result hr;
	struct proto_err err;
	int n = 0;

	cr_assert(r && r->type == REDIS_REPLY_ARRAY);
	for (size_t i = 0; i < r->elements; i++) {
		redisReply *m = r->element[i]->element[1]->element[1];
		cr_assert_eq(proto_decode_result(m->str, m->len, &hr, &err), 0);
		if (hr.id.len == strlen(id) &&
		    memcmp(hr.id.ptr, id, hr.id.len) == 0)
			n++;
		proto_result_clear(&hr);
	}
	*total = (int)r->elements;
	freeReplyObject(r);
	return n;
}

/* Deliveries of the one entry pending on key, to consumer a/1@host. */
static long long
pending_deliveries(struct tw *t, const char *key)
{
	redisReply *r = redisCommand(t->rc, "XPENDING %s workers - + 10", key);
	char consumer[128];
	long long n;

	snprintf(consumer, sizeof(consumer), "a/1@%s", t->host);
	cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1,
	    "XPENDING %s: want one entry", key);
	cr_assert_str_eq(r->element[0]->element[1]->str, consumer);
	n = r->element[0]->element[3]->integer;
	freeReplyObject(r);
	return n;
}

/*
 * hived dies: its worker A drains on EOF and is still running a task when
 * the new hived starts B with the same consumer name.  B must wait for A
 * (resume nothing, pull nothing), A finishes and acknowledges its task,
 * B takes over as soon as A's exit deletes its liveness key (long before
 * that key would expire), with the memory A's last task left, and the
 * task ran once.
 */
Test(worker, successor_waits_for_draining_predecessor_of_same_name)
{
	struct tw t;
	struct res r;
	struct gate g;
	struct errlog e;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	/* The key lives 5 x 4000 ms: a takeover within that is A's DEL. */
	const char *xa[] = { "--capabilities", "c", "--fd", "3",
	    "--heartbeat-ms", "4000", NULL };
	char want[160], payload[800];
	struct hive_frame f;
	long long exited, took;
	int sp[2], errw, st, total;
	pid_t a, b;

	tw_init(&t, "succ");
	gate_init(&g, t.prefix);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	a = worker_start_fd(&t, xa, h, sp[1]);
	close(sp[1]);
	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_MEMORY;
	f.u.memory.agent = HIVE_STR("a");
	f.u.memory.instance = 1;
	send_frame(sp[0], &f);
	submit(&t, "m1", "{\"op\":\"count\"}");     /* memory n = 1 */
	next_result(&t, &r);
	cr_assert_str_eq(jtext(r.result), "1");
	res_clear(&r);
	/* The slow task; its answer makes the memory n = 2. */
	snprintf(payload, sizeof(payload), "{\"op\":\"gate\",\"started\":\"%s\","
	    "\"release\":\"%s\",\"first\":true,\"count\":true}", g.started,
	    g.release);
	submit(&t, "s1", payload);
	gate_wait_started(&g);

	/* hived dies; the new one starts B at once. */
	close(sp[0]);
	errw = errlog_open(&e);
	b = worker_start_io(&t, stream_args, h, -1, errw);
	close(errw);
	snprintf(want, sizeof(want), "waiting for the previous worker pid=%ld",
	    (long)a);
	errlog_wait(&e, want);
	/* B has not re-read s1 (that would count a delivery), nor run it. */
	cr_assert_eq(pending_deliveries(&t, qkey(&t, "c", 1)), 1);
	cr_assert_eq(results_of(&t, "s1", &total), 0);
	/* Queued meanwhile: B serves it once it has taken over. */
	submit(&t, "n1", "{\"op\":\"count\"}");

	gate_release(&g);
	next_result(&t, &r);
	cr_assert_str_eq(r.id, "s1");
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_eq(r.attempt, 1, "s1 ran by B: attempt %u", r.attempt);
	res_clear(&r);
	st = worker_wait(a);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "A exit %#x", st);
	exited = tu_now_ms();
	snprintf(want, sizeof(want), "took over from the previous worker pid=%ld",
	    (long)a);
	errlog_wait(&e, want);
	took = tu_now_ms() - exited;
	cr_assert(took < 10000, "took over %lld ms after A's exit: the key's "
	    "expiry, not A's DEL", took);
	cr_log_info("B took over %lld ms after A exited", took);

	/* n1, then: with the memory A's last task wrote (n = 2). */
	next_result(&t, &r);
	cr_assert_str_eq(r.id, "n1");
	cr_assert_str_eq(jtext(r.result), "3", "B did not start from A's "
	    "last memory");
	res_clear(&r);
	cr_assert_eq(results_of(&t, "s1", &total), 1, "s1 ran twice");
	cr_assert_eq(total, 3);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	assert_alive_pid(&t, b);
	worker_stop(b);
	errlog_close(&e);
	gate_fini(&g);
	tw_fini(&t);
}

/*
 * A worker killed on this host (hived restarts it in milliseconds): its
 * key would live seconds more, but its pid is gone, so the successor
 * takes over and resumes its task at once.
 */
Test(worker, successor_takes_over_from_killed_predecessor_at_once)
{
	struct tw t;
	struct res r;
	struct gate g;
	struct errlog e;
	const char *h[] = { env("HIVE_TEST_HANDLER"), "stream", NULL };
	/* The key lives 5 x 4000 ms. */
	const char *xa[] = { "--capabilities", "c", "--heartbeat-ms", "4000",
	    NULL };
	char want[160];
	long long ttl, t0, took;
	int errw, st, total;
	pid_t a, b;

	tw_init(&t, "succkill");
	gate_init(&g, t.prefix);
	a = worker_start(&t, xa, h);
	submit(&t, "k1", gate_payload(&g, true));
	gate_wait_started(&g);
	kill(a, SIGKILL);
	cr_assert_eq(waitpid(a, &st, 0), a);    /* reaped, as hived does */
	ttl = redis_int(&t, "PTTL", alive_key(&t));
	cr_assert(ttl > 0, "A's key is gone already (PTTL %lld)", ttl);

	t0 = tu_now_ms();
	errw = errlog_open(&e);
	b = worker_start_io(&t, stream_args, h, -1, errw);
	close(errw);
	next_result(&t, &r);
	took = tu_now_ms() - t0;
	cr_assert_str_eq(r.id, "k1");
	cr_assert_eq(r.status, HIVE_STATUS_OK, "%s", r.error);
	cr_assert_eq(r.attempt, 2, "attempt %u", r.attempt);
	res_clear(&r);
	cr_assert(took < ttl, "resumed after %lld ms, A's key had %lld ms to "
	    "live: B waited for it to expire", took, ttl);
	cr_log_info("B resumed A's task %lld ms after it started", took);
	snprintf(want, sizeof(want), "previous worker pid=%ld is gone",
	    (long)a);
	errlog_wait(&e, want);
	cr_assert_eq(results_of(&t, "k1", &total), 1);
	cr_assert_eq(total, 1);
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0);
	assert_alive_pid(&t, b);
	worker_stop(b);
	errlog_close(&e);
	gate_fini(&g);
	tw_fini(&t);
}

/*
 * A key whose worker cannot be checked from here (another host's value)
 * is waited for until it is gone, with nothing pulled meanwhile.
 */
Test(worker, worker_waits_for_a_liveness_key_it_cannot_check)
{
	struct tw t;
	struct res r;
	struct errlog e;
	const char *h[] = { env("HIVE_ECHO"), NULL };
	redisReply *rr;
	int errw, total;
	pid_t b;

	tw_init(&t, "succfar");
	rr = redisCommand(t.rc, "SET %s %s PX 60000", alive_key(&t),
	    "1 another-boot,pid:[1]");
	cr_assert(rr && rr->type == REDIS_REPLY_STATUS);
	freeReplyObject(rr);
	submit(&t, "f1", "1");
	errw = errlog_open(&e);
	b = worker_start_io(&t, stream_args, h, -1, errw);
	close(errw);
	errlog_wait(&e, "waiting for the previous worker pid=1");
	cr_assert_eq(pending_count(&t, qkey(&t, "c", 1)), 0, "pulled while "
	    "waiting");
	cr_assert_eq(results_of(&t, "f1", &total), 0);
	/* That worker exits (or its key expires): B goes on. */
	cr_assert_eq(redis_int(&t, "DEL", alive_key(&t)), 1);
	next_result(&t, &r);
	cr_assert_str_eq(r.id, "f1");
	cr_assert_eq(r.attempt, 1);
	res_clear(&r);
	errlog_wait(&e, "took over from the previous worker pid=1");
	assert_alive_pid(&t, b);
	worker_stop(b);
	errlog_close(&e);
	tw_fini(&t);
}

Test(worker, usage_error_exits_2)
{
	pid_t pid = fork();
	int st;

	cr_assert(pid >= 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 2);
		execl(env("HIVE_WORKER"), "hive-worker", "--mode", "bogus",
		    (char *)NULL);
		_exit(127);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid, "waitpid: %s", strerror(errno));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %#x", st);
}
