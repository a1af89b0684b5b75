/*
 * test_api_ctl.c - supervisor/api_ctl.c and the operator's actions on
 * agents, against a real hived, hive-worker, Redis and PostgreSQL:
 * POST /reload (applied, 422 with every file:line error and the old
 * configuration still serving, 409 refused), start/stop/drain (a drain
 * lets a slow task finish, a stop kills it at stop_timeout, neither is
 * undone by the restart policy or a reload), stop-all and start-all,
 * /health (503 while an instance is failed and while Redis is down, 200
 * again after), the token on every changing endpoint, and the warnings
 * at start.
 *
 * Waits are for events: log lines, HTTP answers, results in Redis;
 * /health is asked again (reading the log meanwhile) until it says what
 * is waited for, with a deadline as the failure guard.
 */
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <criterion/criterion.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hive_proto.h"
#include "api.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

TestSuite(api_ctl, .fini = hp_cleanup, .timeout = 120);

static const char *
fake(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s",
	    tu_build_path("tests/supervisor/fake_worker"));
	return path;
}

static const char *
real(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s", tu_build_path("worker/hive-worker"));
	return path;
}

/* An agent running counter.py ({"sleep_ms": N} makes a task slow). */
static void
counter_agent(char *buf, size_t len, const char *name, unsigned n,
    const char *extra)
{
	snprintf(buf, len,
	    "[agent \"%s\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n"
	    "capabilities = work-%s\n"
	    "instances = %u\n"
	    "%s", name, getenv("HIVE_SOURCE_DIR"), name, n,
	    extra != NULL ? extra : "");
}

/* A request that must answer want; its body (may be NULL). */
static json_t *
call(struct hp *h, const char *method, const char *path, int want)
{
	int code;
	json_t *j = hp_http(h, method, path, HP_TOKEN, &code);

	if (code != want) {
		char *t = j != NULL ? json_dumps(j, 0) : NULL;

		cr_assert_fail("%s %s: %d, want %d: %s", method, path, code, want,
		    t != NULL ? t : "(no body)");
	}
	return j;
}

static void
call_ok(struct hp *h, const char *method, const char *path, int want)
{
	json_decref(call(h, method, path, want));
}

static const char *
error_code(json_t *j)
{
	return json_string_value(json_object_get(json_object_get(j, "error"),
	    "code"));
}

/* GET /health until it answers want (reading the log meanwhile). */
static json_t *
health_until(struct hp *h, int want)
{
	long long end = tu_now_ms() + T_LONG;
	json_t *j = NULL;
	int code = 0;

	while (tu_now_ms() < end) {
		json_decref(j);
		j = hp_http(h, "GET", "/health", NULL, &code);
		if (code == want)
			return j;
		hp_pump(h, 100);
	}
	cr_assert_fail("/health answered %d, not %d, for %d ms", code, want,
	    T_LONG);
	return NULL;
}

/* The pid of a ready worker of label, after *from. */
static pid_t
wait_ready(struct hp *h, size_t *from, const char *label)
{
	char needle[128];
	const char *l;

	snprintf(needle, sizeof(needle), "agent=%s pid=", label);
	l = hp_wait(h, from, T_LONG, needle, " state=ready", NULL);
	return (pid_t)hp_field(l, "pid");
}

static void
wait_state(struct hp *h, size_t *from, const char *label, const char *state)
{
	char a[128], s[64];

	snprintf(a, sizeof(a), "agent=%s pid=", label);
	snprintf(s, sizeof(s), " state=%s", state);
	hp_wait(h, from, T_LONG, a, s, NULL);
}

static const char *
agent_state(struct hp *h, const char *label)
{
	static char buf[32];

	return hp_agent_state(h, label, buf, sizeof(buf));
}

/* Is there a result for task id in the results stream (now)? */
static int
has_result(redisContext *c, const char *prefix, const char *id)
{
	char key[HIVE_KEY_MAX];
	redisReply *rp;
	int found = 0;

	proto_key_named(key, sizeof(key), prefix, "results");
	rp = redisCommand(c, "XRANGE %s - +", key);
	cr_assert(rp != NULL && rp->type == REDIS_REPLY_ARRAY);
	for (size_t i = 0; i < rp->elements && !found; i++) {
		const redisReply *f = rp->element[i]->element[1];

		for (size_t k = 1; k < f->elements; k += 2)
			if (memmem(f->element[k]->str, f->element[k]->len, id,
			    strlen(id)) != NULL)
				found = 1;
	}
	freeReplyObject(rp);
	return found;
}

/* Wait (XREAD BLOCK, the log read between) for the result of id. */
static void
wait_result(struct hp *h, redisContext *c, const char *id)
{
	char key[HIVE_KEY_MAX];
	long long end = tu_now_ms() + T_LONG;

	proto_key_named(key, sizeof(key), h->prefix, "results");
	while (!has_result(c, h->prefix, id)) {
		redisReply *rp;

		cr_assert(tu_now_ms() < end, "no result for %s", id);
		rp = redisCommand(c, "XREAD BLOCK 200 STREAMS %s $", key);
		freeReplyObject(rp);
		hp_pump(h, 0);
	}
}

/* The one instance an action answered about. */
static json_t *
action_inst(json_t *j, const char *action)
{
	json_t *arr = json_object_get(j, "instances");

	cr_assert_str_eq(json_string_value(json_object_get(j, "action")),
	    action);
	cr_assert_eq(json_array_size(arr), 1);
	return json_array_get(arr, 0);
}

static void
stop_ok(struct hp *h)
{
	int st;

	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}

/* ---- reload ---- */

/*
 * A good file is applied (200 and its summary); a bad one answers 422
 * with every error as file:line, and the running configuration stays:
 * the same worker answers a task.
 */
Test(api_ctl, reload_applies_or_answers_every_error)
{
	struct hp *h = hp_new("creload");
	char a[1024], b[1024], both[2048], bad[3072], pfx[700];
	redisContext *c = tu_redis_connect();
	size_t from = 0, errs_n, i;
	json_t *j, *errs, *e;
	pid_t pid;
	int seen_key = 0, seen_val = 0;

	counter_agent(a, sizeof(a), "counter", 1, NULL);
	hp_write_conf(h, real(), NULL, a);
	hp_start(h);
	pid = wait_ready(h, &from, "counter/1");

	counter_agent(b, sizeof(b), "b", 1, NULL);
	snprintf(both, sizeof(both), "%s%s", a, b);
	hp_write_conf(h, real(), NULL, both);
	j = call(h, "POST", "/reload", 200);
	cr_assert(json_is_true(json_object_get(j, "reloaded")));
	cr_assert(strstr(json_string_value(json_object_get(j, "summary")),
	    "added=1") != NULL);
	json_decref(j);
	wait_ready(h, &from, "b/1");

	/* Two errors, on two lines. */
	snprintf(bad, sizeof(bad), "%s[agent \"c\"]\ncommand = x\n"
	    "instances = lots\nbogus = 1\n", both);
	hp_write_conf(h, real(), NULL, bad);
	from = hp_mark(h);
	j = call(h, "POST", "/reload", 422);
	cr_assert_str_eq(error_code(j), "invalid");
	errs = json_object_get(json_object_get(j, "error"), "errors");
	errs_n = json_array_size(errs);
	cr_assert_geq(errs_n, 2, "errors: %zu", errs_n);
	snprintf(pfx, sizeof(pfx), "%s:", h->conf);
	json_array_foreach(errs, i, e) {
		const char *s = json_string_value(e);

		cr_assert(s != NULL && strncmp(s, pfx, strlen(pfx)) == 0 &&
		    s[strlen(pfx)] >= '1' && s[strlen(pfx)] <= '9',
		    "not file:line: %s", s);
		seen_key |= strstr(s, "bogus") != NULL;
		seen_val |= strstr(s, "instances") != NULL;
	}
	cr_assert(seen_key && seen_val, "an error is missing");
	json_decref(j);
	/* The log has them too, as SIGHUP's. */
	hp_wait(h, &from, T_LONG, "reload: ", "bogus", NULL);
	hp_wait(h, &from, T_LONG, "reload failed: keeping the running", NULL);

	cr_assert_eq(hp_agent_pid(h, "counter/1"), pid);
	cr_assert_str_eq(agent_state(h, "b/1"), "ready");
	hp_submit_direct(c, h->prefix, "counter", 1, "after-bad", "{}");
	wait_result(h, c, "after-bad");
	stop_ok(h);
	redisFree(c);
}

/* A key only a restart can change: 409, nothing moves. */
Test(api_ctl, reload_refused_change_is_409)
{
	struct hp *h = hp_new("crefuse");
	char old[sizeof(h->prefix)];
	size_t from = 0;
	pid_t pid;
	json_t *j;

	hp_write_conf(h, fake(), NULL, "[agent \"a\"]\ncommand = ok\n");
	hp_start(h);
	pid = wait_ready(h, &from, "a/1");
	memcpy(old, h->prefix, sizeof(old));
	snprintf(h->prefix, sizeof(h->prefix), "%.60s-m", old);
	hp_write_conf(h, fake(), NULL, "[agent \"a\"]\ncommand = ok\n");
	memcpy(h->prefix, old, sizeof(old));
	j = call(h, "POST", "/reload", 409);
	cr_assert_str_eq(error_code(j), "conflict");
	cr_assert(strstr(json_string_value(json_object_get(json_object_get(j,
	    "error"), "message")), "prefix") != NULL);
	json_decref(j);
	cr_assert_eq(hp_agent_pid(h, "a/1"), pid);
	stop_ok(h);
}

/* ---- start, stop, drain ---- */

/*
 * stop_timeout 1 s, a task of 2.5 s.  drain: the task finishes, the
 * worker exits 0, the instance is stopped.  stop: the same task is cut
 * at stop_timeout (SIGKILL), no result.  Neither is undone by the
 * restart policy (always) or by a reload that changes the agent; start
 * brings it back.
 */
Test(api_ctl, drain_finishes_a_slow_task_stop_kills_it)
{
	struct hp *h = hp_new("cdrain");
	char a[1024], a2[1100];
	redisContext *c = tu_redis_connect();
	size_t from = 0;
	json_t *j, *in;

	counter_agent(a, sizeof(a), "counter", 1, NULL);
	hp_write_conf(h, real(), "stop_timeout = 1s\nheartbeat_interval = 200ms\n",
	    a);
	hp_start(h);
	wait_ready(h, &from, "counter/1");

	hp_submit_direct(c, h->prefix, "counter", 1, "slow-drain",
	    "{\"sleep_ms\": 2500}");
	wait_state(h, &from, "counter/1", "busy");
	j = call(h, "POST", "/agents/counter/drain", 200);
	in = action_inst(j, "drain");
	cr_assert_str_eq(json_string_value(json_object_get(in, "state")),
	    "stopping");
	cr_assert(json_is_true(json_object_get(in, "applied")));
	json_decref(j);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "then=drain", NULL);
	wait_result(h, c, "slow-drain");
	hp_wait(h, &from, T_LONG, "agent=counter/1", "exited status=0", NULL);
	wait_state(h, &from, "counter/1", "stopped");
	cr_assert_str_eq(agent_state(h, "counter/1"), "stopped");
	/* Applies to none now: 409. */
	j = call(h, "POST", "/agents/counter/drain", 409);
	cr_assert_str_eq(error_code(j), "conflict");
	json_decref(j);

	j = call(h, "POST", "/agents/counter/start", 200);
	cr_assert(json_is_true(json_object_get(action_inst(j, "start"),
	    "applied")));
	json_decref(j);
	wait_ready(h, &from, "counter/1");

	hp_submit_direct(c, h->prefix, "counter", 1, "slow-stop",
	    "{\"sleep_ms\": 5000}");
	wait_state(h, &from, "counter/1", "busy");
	j = call(h, "POST", "/agents/counter/stop?instance=1", 200);
	cr_assert_str_eq(json_string_value(json_object_get(action_inst(j,
	    "stop"), "state")), "stopping");
	json_decref(j);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "killing reason=timer",
	    NULL);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "exited signal=9", NULL);
	wait_state(h, &from, "counter/1", "stopped");
	cr_assert_not(has_result(c, h->prefix, "slow-stop"),
	    "the stopped task finished");

	/* restart = always, and a reload that changes the agent: it stays
	 * stopped. */
	counter_agent(a2, sizeof(a2), "counter", 1, "concurrency = 2\n");
	hp_write_conf(h, real(), "stop_timeout = 1s\nheartbeat_interval = 200ms\n",
	    a2);
	call_ok(h, "POST", "/reload", 200);
	hp_wait(h, &from, T_LONG, "reload done", "changed=1", NULL);
	cr_assert_str_eq(agent_state(h, "counter/1"), "stopped");

	call_ok(h, "POST", "/agents/counter/start", 200);
	wait_ready(h, &from, "counter/1");
	stop_ok(h);
	redisFree(c);
}

/*
 * A drain waits for the worker without stop_timeout, but not without
 * a bound: a worker that stops beating is killed at its heartbeat
 * deadline, and a stop given during a drain kills at stop_timeout.
 */
Test(api_ctl, drain_is_bounded_by_the_deadline_and_a_later_stop)
{
	struct hp *h = hp_new("cdrainb");
	size_t from = 0;
	json_t *j;

	hp_write_conf(h, fake(), "heartbeat_interval = 100ms\n"
	    "stop_timeout = 500ms\n",
	    "[agent \"h\"]\ncommand = hang\nheartbeat_deadline = 3s\n"
	    "[agent \"i\"]\ncommand = ignore-drain\n");
	hp_start(h);
	wait_ready(h, &(size_t){ 0 }, "i/1");
	wait_ready(h, &from, "h/1");
	call_ok(h, "POST", "/agents/h/drain", 200);
	hp_wait(h, &from, T_LONG, "agent=h/1", "then=drain", NULL);
	hp_wait(h, &from, T_LONG, "agent=h/1", "heartbeat deadline missed",
	    NULL);
	hp_wait(h, &from, T_LONG, "agent=h/1", "killing reason=deadline", NULL);
	wait_state(h, &from, "h/1", "stopped");
	cr_assert_str_eq(agent_state(h, "h/1"), "stopped");

	from = hp_mark(h);
	call_ok(h, "POST", "/agents/i/drain", 200);
	hp_wait(h, &from, T_LONG, "agent=i/1", "then=drain", NULL);
	j = hp_agent(h, "i/1");
	cr_assert_str_eq(json_string_value(json_object_get(j, "then")),
	    "drain");
	json_decref(j);
	call_ok(h, "POST", "/agents/i/stop", 200);
	hp_wait(h, &from, T_LONG, "agent=i/1", "killing reason=timer", NULL);
	wait_state(h, &from, "i/1", "stopped");
	stop_ok(h);
}

/* An abstract unix datagram socket for NOTIFY_SOCKET, named in name. */
static int
notify_open(char *name, size_t len)
{
	struct sockaddr_un sa;
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	size_t n;

	cr_assert(s >= 0);
	snprintf(name, len, "@hive-test-ctl-%ld", (long)getpid());
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	n = strlen(name);
	memcpy(sa.sun_path + 1, name + 1, n - 1);
	cr_assert(bind(s, (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) == 0);
	return s;
}

/* The next datagram from hived that holds want (the log read meanwhile). */
static void
notify_wait(struct hp *h, int s, const char *want)
{
	long long end = tu_now_ms() + T_LONG;
	char buf[4096];

	while (tu_now_ms() < end) {
		struct pollfd p = { s, POLLIN, 0 };
		ssize_t n;

		hp_pump(h, 0);
		if (poll(&p, 1, 50) <= 0 ||
		    (n = recv(s, buf, sizeof(buf) - 1, 0)) <= 0)
			continue;
		buf[n] = '\0';
		if (strstr(buf, want) != NULL)
			return;
	}
	cr_assert_fail("no %s from hived", want);
}

/*
 * stop-all with a bound shorter than stop_timeout: every instance
 * stopped, the slow task's worker killed at the bound; hived serves on,
 * systemd's STATUS= says stop-all; start-all brings back exactly those.
 */
Test(api_ctl, stop_all_then_start_all)
{
	struct hp *h = hp_new("cstopall");
	char a[1024], b[1024], both[2048];
	redisContext *c = tu_redis_connect();
	const char *labels[] = { "counter/1", "counter/2", "x/1" };
	size_t from = 0, mark;
	char name[108];
	int ns = notify_open(name, sizeof(name));
	json_t *j;

	counter_agent(a, sizeof(a), "counter", 2, NULL);
	counter_agent(b, sizeof(b), "x", 1, NULL);
	snprintf(both, sizeof(both), "%s%s", a, b);
	hp_write_conf(h, real(), "stop_timeout = 20s\n"
	    "heartbeat_interval = 200ms\n", both);
	setenv("NOTIFY_SOCKET", name, 1);
	hp_start(h);
	unsetenv("NOTIFY_SOCKET");
	for (size_t i = 0; i < 3; i++)
		wait_ready(h, &(size_t){ 0 }, labels[i]);
	hp_submit_direct(c, h->prefix, "counter", 1, "very-slow",
	    "{\"sleep_ms\": 8000}");
	wait_state(h, &from, "counter/1", "busy");

	call_ok(h, "POST", "/stop-all?timeout_ms=0", 400);
	call_ok(h, "POST", "/stop-all?timeout_ms=soon", 400);
	mark = hp_mark(h);
	j = call(h, "POST", "/stop-all?timeout_ms=300", 200);
	cr_assert_eq(json_integer_value(json_object_get(j, "stopped")), 3);
	json_decref(j);
	hp_wait(h, &(size_t){ mark }, T_LONG, "stop-all by the API",
	    "timeout_ms=300", NULL);
	hp_wait(h, &(size_t){ mark }, T_LONG, "agent=counter/1",
	    "killing reason=timer", NULL);
	for (size_t i = 0; i < 3; i++)
		wait_state(h, &(size_t){ mark }, labels[i], "stopped");
	notify_wait(h, ns, "STATUS=stop-all: 2 agents: 0 ready, 0 busy, "
	    "0 failed, 3 stopped");
	j = health_until(h, 200);
	cr_assert(strncmp(json_string_value(json_object_get(j, "summary")),
	    "stop-all: ", 10) == 0);
	json_decref(j);
	for (size_t i = 0; i < 3; i++)
		cr_assert_str_eq(agent_state(h, labels[i]), "stopped");

	mark = hp_mark(h);
	j = call(h, "POST", "/start-all", 200);
	cr_assert_eq(json_integer_value(json_object_get(j, "started")), 3);
	json_decref(j);
	hp_wait(h, &(size_t){ mark }, T_LONG, "start-all by the API", NULL);
	for (size_t i = 0; i < 3; i++)
		wait_ready(h, &(size_t){ mark }, labels[i]);
	notify_wait(h, ns, "STATUS=2 agents: 3 ready");
	close(ns);
	j = call(h, "POST", "/start-all", 200);
	cr_assert_eq(json_integer_value(json_object_get(j, "started")), 0);
	json_decref(j);
	stop_ok(h);
	redisFree(c);
}

/* ---- /health ---- */

static void
component_up(json_t *health, const char *name, int up)
{
	json_t *o = json_object_get(json_object_get(health, "components"),
	    name);

	cr_assert(o != NULL, "no component %s", name);
	cr_assert_eq(json_is_true(json_object_get(o, "up")), up, "%s up", name);
	if (up)
		cr_assert(json_is_integer(json_object_get(o, "latency_ms")) &&
		    json_integer_value(json_object_get(o, "latency_ms")) >= 0);
	else
		cr_assert(json_is_string(json_object_get(o, "error")));
}

/* A failed (quarantined) instance: 503 degraded, HEAD too; stopped by
 * the operator: 200 again.  PostgreSQL configured: shown up. */
Test(api_ctl, health_503_while_an_instance_is_failed)
{
	struct hp *h = hp_new("cfail");
	char ci[512], db[64], extra[1024];
	size_t from = 0;
	json_t *j;
	int code;

	tu_pg_fresh_db("cfail", db, sizeof(db), ci, sizeof(ci));
	snprintf(extra, sizeof(extra), "postgres = %s\n", ci);
	hp_write_conf(h, fake(), extra,
	    "[agent \"c\"]\ncommand = crash\nrestart_limit = 2\n"
	    "restart_window = 60s\nbackoff = 20ms\nbackoff_max = 30ms\n"
	    "[agent \"ok\"]\ncommand = ok\n");
	hp_start(h);
	wait_ready(h, &(size_t){ 0 }, "ok/1");
	wait_state(h, &from, "c/1", "failed");
	j = health_until(h, 503);
	cr_assert_str_eq(json_string_value(json_object_get(j, "status")),
	    "degraded");
	cr_assert_eq(json_integer_value(json_object_get(j, "quarantined")), 1);
	component_up(j, "redis", 1);
	component_up(j, "postgres", 1);
	cr_assert(json_is_true(json_object_get(json_object_get(json_object_get(j,
	    "components"), "postgres"), "configured")));
	json_decref(j);
	json_decref(hp_http(h, "HEAD", "/health", NULL, &code));
	cr_assert_eq(code, 503);

	call_ok(h, "POST", "/agents/c/stop", 200);
	j = health_until(h, 200);
	cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
	cr_assert_eq(json_integer_value(json_object_get(j, "quarantined")), 0);
	json_decref(j);
	json_decref(hp_http(h, "HEAD", "/health", NULL, &code));
	cr_assert_eq(code, 200);
	stop_ok(h);
}

static unsigned
free_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port;

	cr_assert(s >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(getsockname(s, (struct sockaddr *)&sa, &sl) == 0);
	port = ntohs(sa.sin_port);
	close(s);
	return port;
}

/* A redis-server of the test's own on port, in dir; returns once it
 * says it accepts connections. */
static pid_t
redis_start(const char *dir, unsigned port)
{
	char p[16], line[4096];
	size_t len = 0;
	long long end = tu_now_ms() + T_LONG;
	int fds[2];
	pid_t pid;

	snprintf(p, sizeof(p), "%u", port);
	cr_assert(pipe2(fds, O_CLOEXEC) == 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		const char *argv[] = { "redis-server", "--bind", "127.0.0.1",
		    "--port", p, "--dir", dir, "--save", "", "--appendonly",
		    "no", "--maxmemory-policy", "noeviction", NULL };

		dup2(fds[1], 1);
		execvp(argv[0], (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		struct pollfd pf = { fds[0], POLLIN, 0 };
		ssize_t n;

		cr_assert(tu_now_ms() < end, "redis-server did not start");
		if (poll(&pf, 1, 200) <= 0)
			continue;
		n = read(fds[0], line + len, sizeof(line) - 1 - len);
		cr_assert(n > 0, "redis-server exited");
		len += (size_t)n;
		line[len] = '\0';
		if (strstr(line, "Ready to accept connections") != NULL)
			break;
		if (len > sizeof(line) / 2) {  /* keep the tail */
			memmove(line, line + len - 64, 64);
			len = 64;
		}
	}
	close(fds[0]);
	return pid;
}

/*
 * From hived's start on, /health is 200 as soon as Redis is connected:
 * not 503 until the first PING of the probe has come back (which went at
 * the next housekeeping tick, up to 250 ms later, and made a check right
 * after a start fail).  /health is asked back to back from the start;
 * the first answer that has Redis connected must be 200.
 */
Test(api_ctl, health_200_from_the_start)
{
	struct hp *h = hp_new("cstart");
	long long end;
	json_t *j = NULL, *redis;
	const char *e;
	int code = 0;

	hp_write_conf(h, fake(), NULL, "[agent \"a\"]\ncommand = ok\n");
	hp_start(h);
	for (end = tu_now_ms() + T_LONG; tu_now_ms() < end; ) {
		json_decref(j);
		j = hp_http(h, "GET", "/health", NULL, &code);
		redis = json_object_get(json_object_get(j, "components"),
		    "redis");
		e = json_string_value(json_object_get(redis, "error"));
		if (e == NULL || strcmp(e, "not connected") != 0)
			break;
	}
	redis = json_object_get(json_object_get(j, "components"), "redis");
	cr_assert_eq(code, 200, "/health at the start: %d, redis %s", code,
	    json_string_value(json_object_get(redis, "error")));
	cr_assert(json_is_true(json_object_get(redis, "up")));
	json_decref(j);
	stop_ok(h);
}

/* Redis killed: 503, redis down with its error; back: 200. */
Test(api_ctl, health_503_while_redis_is_down)
{
	struct hp *h = hp_new("credis");
	unsigned port = free_port();
	char ports[16], *saved = getenv("HIVE_TEST_REDIS_PORT");
	json_t *j;
	pid_t rpid;

	saved = saved != NULL ? strdup(saved) : NULL;
	rpid = redis_start(h->dir, port);
	snprintf(ports, sizeof(ports), "%u", port);
	setenv("HIVE_TEST_REDIS_PORT", ports, 1);
	hp_write_conf(h, fake(), NULL, "[agent \"a\"]\ncommand = ok\n");
	if (saved != NULL)
		setenv("HIVE_TEST_REDIS_PORT", saved, 1);
	free(saved);
	hp_start(h);
	wait_ready(h, &(size_t){ 0 }, "a/1");
	j = health_until(h, 200);
	component_up(j, "redis", 1);
	cr_assert_not(json_is_true(json_object_get(json_object_get(
	    json_object_get(j, "components"), "postgres"), "configured")));
	json_decref(j);

	kill(rpid, SIGKILL);
	waitpid(rpid, NULL, 0);
	j = health_until(h, 503);
	cr_assert_str_eq(json_string_value(json_object_get(j, "status")),
	    "degraded");
	component_up(j, "redis", 0);
	json_decref(j);

	rpid = redis_start(h->dir, port);
	j = health_until(h, 200);
	component_up(j, "redis", 1);
	json_decref(j);
	stop_ok(h);
	kill(rpid, SIGKILL);
	waitpid(rpid, NULL, 0);
}

/* ---- the token ---- */

/*
 * Every route that changes something (API_CHANGE, from hived's own route
 * tables, so a new one is checked too) refuses a request without the
 * token (401) and with a wrong one (403), and nothing happens.
 */
Test(api_ctl, changing_endpoints_refuse_a_missing_or_wrong_token)
{
	static const struct api_route *const tables[] = { api_agents_routes,
	    api_ctl_routes, api_tasks_routes, api_dead_routes,
	    api_metrics_routes };
	struct hp *h = hp_new("ctoken");
	size_t from = 0, checked = 0;
	char path[256];
	pid_t pid;
	json_t *j;
	int code;

	hp_write_conf(h, fake(), NULL, "[agent \"a\"]\ncommand = ok\n");
	hp_start(h);
	pid = wait_ready(h, &from, "a/1");
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
	for (const struct api_route *r = tables[t]; r->method != NULL; r++) {
		size_t o = 0;

		if (!(r->flags & API_CHANGE))
			continue;
		for (const char *p = r->path; *p != '\0' && o < sizeof(path) - 2;
		    p++) {
			if (p[0] == '{' && p[1] == '}') {
				path[o++] = 'a';
				p++;
			} else
				path[o++] = *p;
		}
		path[o] = '\0';
		j = hp_http(h, r->method, path, NULL, &code);
		cr_assert_eq(code, 401, "%s without a token: %d", path, code);
		cr_assert_str_eq(error_code(j), "unauthorized");
		json_decref(j);
		j = hp_http(h, r->method, path, "not-the-token-0123456", &code);
		cr_assert_eq(code, 403, "%s, wrong token: %d", path, code);
		cr_assert_str_eq(error_code(j), "forbidden");
		json_decref(j);
		checked++;
	}
	/* restart sleep wake reset start stop drain, reload, stop-all,
	 * start-all, tasks, workflows, a dead letter's retry, dead retry */
	cr_assert_geq(checked, 14, "%zu changing routes", checked);
	j = hp_http(h, "POST", "/stop-all?timeout_ms=10", NULL, &code);
	cr_assert_eq(code, 401);
	json_decref(j);
	cr_assert_eq(hp_agent_pid(h, "a/1"), pid);
	cr_assert_str_eq(agent_state(h, "a/1"), "ready");
	cr_assert(strstr(h->log, "stop-all by") == NULL);
	cr_assert(strstr(h->log, "reload file=") == NULL);
	stop_ok(h);
}

/* ---- warnings at start ---- */

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/*
 * http on every address, a token file others may read, a 5-byte token:
 * one warning each, once.  The usual setup (loopback, 0600, 21 bytes):
 * none.
 */
Test(api_ctl, warnings_at_start)
{
	struct hp *h = hp_new("cwarn"), *quiet;
	char path[700], *text, *at;
	size_t from = 0;
	FILE *f;

	hp_write_conf(h, fake(), NULL, NULL);
	text = NULL;
	cr_assert((f = fopen(h->conf, "r")) != NULL);
	cr_assert(getdelim(&text, &(size_t){ 0 }, '\0', f) > 0);
	fclose(f);
	cr_assert((at = strstr(text, "http = 127.0.0.1:")) != NULL);
	cr_assert((f = fopen(h->conf, "w")) != NULL);
	fprintf(f, "%.*shttp = 0.0.0.0:%s", (int)(at - text), text,
	    at + strlen("http = 127.0.0.1:"));
	fclose(f);
	free(text);
	snprintf(path, sizeof(path), "%s/token", h->dir);
	cr_assert((f = fopen(path, "w")) != NULL);
	fputs("short\n", f);
	fclose(f);
	cr_assert(chmod(path, 0644) == 0);

	hp_start(h);
	hp_wait(h, &from, T_LONG, "started pid=", NULL);
	cr_assert_eq(count(h->log, "is not a loopback address"), 1,
	    "log:\n%s", h->log);
	cr_assert_eq(count(h->log, "http = 0.0.0.0:"), 1);
	cr_assert_eq(count(h->log, "is open to group or others (mode 0644)"),
	    1);
	cr_assert_eq(count(h->log, "the token is 5 bytes, fewer than 16"), 1);
	json_decref(health_until(h, 200));
	stop_ok(h);
	cr_assert_eq(count(h->log, "is not a loopback address"), 1);

	quiet = hp_new("cwarn2");
	from = 0;
	hp_write_conf(quiet, fake(), NULL, NULL);
	hp_start(quiet);
	hp_wait(quiet, &from, T_LONG, "started pid=", NULL);
	cr_assert_eq(count(quiet->log, "not a loopback"), 0);
	cr_assert_eq(count(quiet->log, "open to group or others"), 0);
	cr_assert_eq(count(quiet->log, "fewer than 16"), 0);
	stop_ok(quiet);
}
