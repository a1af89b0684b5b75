/*
 * test_hived.c - hived as a real process.
 *
 * Two kinds of worker:
 *   - fake_worker (tests/supervisor/fake_worker.c) for what a real worker
 *     should never do: crash in a loop, hang, break the protocol, ignore a
 *     drain.  No Redis.
 *   - the real hive-worker with tests/supervisor/counter.py as handler,
 *     against the private Redis, wherever memory or tasks matter.
 *
 * Every wait is for an event (a log line, an HTTP answer, an exit, a
 * result in Redis); the timeouts are failure guards sized for ASan on a
 * loaded machine.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 20000     /* guard for anything involving a real worker */
#define T_SHORT 10000

TestSuite(hived, .fini = hp_cleanup, .timeout = 90);

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

/* An agent section running counter.py under the real worker. */
static void
counter_agent(char *buf, size_t len, const char *name, unsigned instances,
    const char *extra)
{
	const char *src = getenv("HIVE_SOURCE_DIR");

	snprintf(buf, len,
	    "[agent \"%s\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n"
	    "instances = %u\n"
	    "heartbeat_deadline = 10s\n"
	    "%s\n",
	    name, src ? src : ".", instances, extra ? extra : "");
}

/* Wait for "agent=LABEL pid=P state=ready" with P != not_pid; returns P. */
static pid_t
wait_ready(struct hp *h, size_t *from, const char *label, pid_t not_pid,
    int timeout)
{
	char needle[128];

	snprintf(needle, sizeof(needle), "agent=%s pid=", label);
	for (;;) {
		const char *l = hp_wait(h, from, timeout, needle, " state=ready",
		    NULL);
		pid_t pid = (pid_t)hp_field(l, "pid");

		if (pid > 0 && pid != not_pid)
			return pid;
	}
}

/* SIGTERM, and hived must exit 0: under ASan that also says "no leak". */
static void
stop_ok(struct hp *h)
{
	int st;

	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}

/* ---- Redis: tasks in, results out ---- */

/*
 * The result of task id from <prefix>:results (XREAD BLOCK from the
 * start); returns result.count and sets *memory_v.
 */
static long long
result_count(struct hp *h, redisContext *c, const char *id,
    uint64_t *memory_v)
{
	char key[HIVE_KEY_MAX], last[64] = "0-0";
	long long end = tu_now_ms() + T_LONG;

	cr_assert(proto_key_named(key, sizeof(key), h->prefix, "results") > 0);
	while (tu_now_ms() < end) {
		redisReply *r = redisCommand(c,
		    "XREAD COUNT 100 BLOCK 300 STREAMS %s %s", key, last);

		hp_pump(h, 0);
		cr_assert(r != NULL);
		if (r->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			continue;
		}
		redisReply *ents = r->element[0]->element[1];

		for (size_t i = 0; i < ents->elements; i++) {
			redisReply *e = ents->element[i];
			redisReply *fv = e->element[1];
			struct hive_result res;
			struct proto_err err;

			snprintf(last, sizeof(last), "%s", e->element[0]->str);
			cr_assert_eq(proto_decode_result(fv->element[1]->str,
			    fv->element[1]->len, &res, &err), 0);
			if (res.id.len == strlen(id) &&
			    memcmp(res.id.ptr, id, res.id.len) == 0) {
				long long n = -1;

				cr_assert_eq(res.status, HIVE_STATUS_OK);
				if (res.result.type == MSGPACK_OBJECT_MAP)
					for (uint32_t k = 0; k < res.result.via.map.size; k++)
						if (res.result.via.map.ptr[k].key.via.str.size == 5)
							n = res.result.via.map.ptr[k].val.via.i64;
				*memory_v = res.memory_v;
				proto_result_clear(&res);
				freeReplyObject(r);
				return n;
			}
			proto_result_clear(&res);
		}
		freeReplyObject(r);
	}
	cr_assert_fail("no result for task %s", id);
	return -1;
}

/* ---- fake workers ---- */

Test(hived, crash_loop_fails_then_reset)
{
	struct hp *h = hp_new("crash");
	size_t from = 0;
	const char *l;
	json_t *a;
	char st[32];
	int code;

	hp_write_conf(h, fake(), NULL,
	    "[agent \"c\"]\n"
	    "command = crash\n"
	    "restart_limit = 3\n"
	    "restart_window = 60s\n"
	    "backoff = 20ms\n"
	    "backoff_max = 30ms\n");
	hp_start(h);
	/* First restart immediate, then backoff doubling to its cap. */
	l = hp_wait(h, &from, T_SHORT, "agent=c/1 restarting", NULL);
	cr_assert_eq(hp_field(l, "delay_ms"), 0);
	l = hp_wait(h, &from, T_SHORT, "agent=c/1 restarting", NULL);
	cr_assert_eq(hp_field(l, "delay_ms"), 20);
	l = hp_wait(h, &from, T_SHORT, "agent=c/1 restarting", NULL);
	cr_assert_eq(hp_field(l, "delay_ms"), 30);
	hp_wait(h, &from, T_SHORT, "agent=c/1", "state=failed", NULL);
	hp_wait(h, &from, T_SHORT, "agent=c/1 failed reason=restart-limit", NULL);

	a = hp_agent(h, "c/1");
	cr_assert_str_eq(json_string_value(json_object_get(a, "state")), "failed");
	cr_assert(json_is_null(json_object_get(a, "pid")));
	cr_assert_eq(json_integer_value(json_object_get(a, "restarts")), 3);
	json_decref(a);
	/* Quarantined: nothing restarts it on its own. */
	cr_assert_null(hp_wait_try(h, &from, 300, "agent=c/1", "state=starting", NULL));
	cr_assert_str_eq(hp_agent_state(h, "c/1", st, sizeof(st)), "failed");

	/* The operator lifts it; it fails again after the same count. */
	cr_assert_eq(hp_post(h, "/agents/c/reset"), 200);
	hp_wait(h, &from, T_SHORT, "agent=c/1", "state=starting", "event=reset",
	    NULL);
	hp_wait(h, &from, T_SHORT, "agent=c/1", "state=failed", NULL);

	/* hived answers; a quarantined instance makes it 503 (api_ctl.c). */
	json_decref(hp_http(h, "GET", "/health", NULL, &code));
	cr_assert_eq(code, 503);
	stop_ok(h);
}

Test(hived, control_api_errors_and_operator_restarts)
{
	struct hp *h = hp_new("api");
	size_t from = 0;
	pid_t pid, p2;
	json_t *j;
	int code;

	hp_write_conf(h, fake(), "heartbeat_interval = 100ms\n",
	    "[agent \"ok\"]\n"
	    "command = ok\n"
	    "instances = 2\n"
	    "restart_limit = 1\n");
	hp_start(h);
	pid = wait_ready(h, &from, "ok/1", 0, T_SHORT);
	wait_ready(h, &(size_t){ 0 }, "ok/2", 0, T_SHORT);

	j = hp_http(h, "POST", "/agents/ok/restart", NULL, &code);
	cr_assert_eq(code, 401);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j,
	    "error"), "code")), "unauthorized");
	cr_assert(json_is_string(json_object_get(json_object_get(j, "error"),
	    "message")));
	json_decref(j);
	json_decref(hp_http(h, "POST", "/agents/ok/restart", "wrong", &code));
	cr_assert_eq(code, 403);
	json_decref(hp_http(h, "POST", "/agents/nope/restart", HP_TOKEN, &code));
	cr_assert_eq(code, 404);
	json_decref(hp_http(h, "POST", "/agents/ok/restart?instance=3", HP_TOKEN,
	    &code));
	cr_assert_eq(code, 404);
	json_decref(hp_http(h, "POST", "/agents/ok/restart?instance=x", HP_TOKEN,
	    &code));
	cr_assert_eq(code, 400);
	json_decref(hp_http(h, "POST", "/agents/ok/explode", HP_TOKEN, &code));
	cr_assert_eq(code, 404);
	json_decref(hp_http(h, "GET", "/agents/ok/restart", HP_TOKEN, &code));
	cr_assert_eq(code, 405);
	json_decref(hp_http(h, "POST", "/health", HP_TOKEN, &code));
	cr_assert_eq(code, 405);
	json_decref(hp_http(h, "GET", "/nothing", NULL, &code));
	cr_assert_eq(code, 404);
	/* Wake on a running worker: nothing to do. */
	j = hp_http(h, "POST", "/agents/ok/wake?instance=1", HP_TOKEN, &code);
	cr_assert_eq(code, 409);
	json_decref(j);

	/* Restarts an operator asks for never count (limit is 1). */
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(hp_post(h, "/agents/ok/restart?instance=1"), 200);
		p2 = wait_ready(h, &from, "ok/1", pid, T_SHORT);
		cr_assert_neq(p2, pid);
		pid = p2;
	}
	j = hp_agent(h, "ok/1");
	cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "ready");
	cr_assert_eq(json_integer_value(json_object_get(j, "restarts")), 3);
	cr_assert_eq(json_integer_value(json_object_get(j, "pid")), pid);
	json_decref(j);
	/* ok/2 was not touched. */
	cr_assert_eq(json_integer_value(json_object_get(j = hp_agent(h, "ok/2"),
	    "restarts")), 0);
	json_decref(j);
	stop_ok(h);
}

Test(hived, heartbeat_deadline_kills_hung_worker)
{
	struct hp *h = hp_new("hung");
	size_t from = 0;
	pid_t pid, p2;

	hp_write_conf(h, fake(), "heartbeat_interval = 100ms\n",
	    "[agent \"h\"]\n"
	    "command = ok\n"
	    "heartbeat_deadline = 700ms\n");
	hp_start(h);
	pid = wait_ready(h, &from, "h/1", 0, T_SHORT);
	cr_assert_eq(kill(pid, SIGSTOP), 0);
	hp_wait(h, &from, T_SHORT, "agent=h/1", "heartbeat deadline missed",
	    NULL);
	hp_wait(h, &from, T_SHORT, "agent=h/1", "exited signal=9", NULL);
	p2 = wait_ready(h, &from, "h/1", pid, T_SHORT);
	cr_assert_neq(p2, pid);
	cr_assert_eq(hp_agent_pid(h, "h/1"), p2);
	stop_ok(h);
}

Test(hived, bad_frame_restarts_only_that_worker)
{
	struct hp *h = hp_new("frame");
	size_t from = 0;
	pid_t good;
	int code;

	hp_write_conf(h, fake(), NULL,
	    "[agent \"b\"]\n"
	    "command = badframe\n"
	    "restart_limit = 50\n"
	    "backoff = 50ms\n"
	    "[agent \"g\"]\n"
	    "command = ok\n");
	hp_start(h);
	good = wait_ready(h, &(size_t){ 0 }, "g/1", 0, T_SHORT);
	hp_wait(h, &from, T_SHORT, "agent=b/1", "protocol error", NULL);
	hp_wait(h, &from, T_SHORT, "agent=b/1", "exited signal=9", NULL);
	hp_wait(h, &from, T_SHORT, "agent=b/1", "state=restarting", NULL);
	hp_wait(h, &from, T_SHORT, "agent=b/1", "protocol error", NULL);
	json_decref(hp_http(h, "GET", "/health", NULL, &code));
	cr_assert_eq(code, 200);
	cr_assert_eq(hp_agent_pid(h, "g/1"), good);
	stop_ok(h);
}

Test(hived, reload_bad_config_keeps_the_old)
{
	struct hp *h = hp_new("badhup");
	size_t from = 0;
	pid_t pid;
	FILE *f;
	int code;

	hp_write_conf(h, fake(), NULL, "[agent \"a\"]\ncommand = ok\n");
	hp_start(h);
	pid = wait_ready(h, &from, "a/1", 0, T_SHORT);

	cr_assert((f = fopen(h->conf, "a")) != NULL);
	fprintf(f, "[agent \"b\"]\ninstances = lots\n");
	fclose(f);
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_SHORT, "reload: ", "hive.conf:", NULL);
	hp_wait(h, &from, T_SHORT, "reload failed", NULL);
	json_decref(hp_http(h, "GET", "/health", NULL, &code));
	cr_assert_eq(code, 200);
	cr_assert_eq(hp_agent_pid(h, "a/1"), pid);

	/* A good file afterwards is taken. */
	hp_write_conf(h, fake(), NULL,
	    "[agent \"a\"]\ncommand = ok\n[agent \"b\"]\ncommand = ok\n");
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_SHORT, "reload done", "added=1", "unchanged=1", NULL);
	wait_ready(h, &from, "b/1", 0, T_SHORT);
	cr_assert_eq(hp_agent_pid(h, "a/1"), pid);
	stop_ok(h);
}

Test(hived, reload_restarts_only_changed_agents)
{
	struct hp *h = hp_new("hup");
	size_t from = 0, f2;
	pid_t a1, b1, b2, c1, e1, nb1, nb2;
	json_t *all;
	int code;

	hp_write_conf(h, fake(), "heartbeat_interval = 200ms\n",
	    "[agent \"a\"]\ncommand = ok\n"
	    "[agent \"b\"]\ncommand = ok\ninstances = 2\n"
	    "[agent \"c\"]\ncommand = ok\n"
	    "[agent \"e\"]\ncommand = ok\ninstances = 2\n");
	hp_start(h);
	hp_wait(h, &from, T_SHORT, "ready ", "agents:", NULL);
	a1 = wait_ready(h, &(size_t){ 0 }, "a/1", 0, T_SHORT);
	b1 = wait_ready(h, &(size_t){ 0 }, "b/1", 0, T_SHORT);
	b2 = wait_ready(h, &(size_t){ 0 }, "b/2", 0, T_SHORT);
	c1 = wait_ready(h, &(size_t){ 0 }, "c/1", 0, T_SHORT);
	e1 = wait_ready(h, &(size_t){ 0 }, "e/1", 0, T_SHORT);
	wait_ready(h, &(size_t){ 0 }, "e/2", 0, T_SHORT);

	/* b: changed command; c: removed; d: added; e: fewer instances. */
	hp_write_conf(h, fake(), "heartbeat_interval = 200ms\n",
	    "[agent \"a\"]\ncommand = ok\n"
	    "[agent \"b\"]\ncommand = ok done=0\ninstances = 2\n"
	    "[agent \"d\"]\ncommand = ok\n"
	    "[agent \"e\"]\ncommand = ok\ninstances = 1\n");
	from = hp_mark(h);
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_SHORT, "reload done", "added=1", "changed=2",
	    "removed=1", "unchanged=1", NULL);
	f2 = from;
	nb1 = wait_ready(h, &f2, "b/1", b1, T_SHORT);
	f2 = from;
	nb2 = wait_ready(h, &f2, "b/2", b2, T_SHORT);
	f2 = from;
	wait_ready(h, &f2, "d/1", 0, T_SHORT);
	f2 = from;
	wait_ready(h, &f2, "e/1", e1, T_SHORT);
	f2 = from;
	hp_wait(h, &f2, T_SHORT, "agent=c gone", NULL);
	f2 = from;
	hp_wait(h, &f2, T_SHORT, "agent=e/2 removed", NULL);

	cr_assert_eq(hp_agent_pid(h, "a/1"), a1, "unchanged agent restarted");
	cr_assert_neq(nb1, b1);
	cr_assert_neq(nb2, b2);
	cr_assert_eq(hp_wait_pid_gone(c1, T_SHORT), 0);
	all = hp_http(h, "GET", "/agents", NULL, &code);
	cr_assert_eq(json_array_size(json_object_get(all, "agents")), 5,
	    "a/1 b/1 b/2 d/1 e/1");
	json_decref(all);
	stop_ok(h);
}

Test(hived, term_kills_what_ignores_the_drain_and_exits_0)
{
	struct hp *h = hp_new("grace");
	size_t from = 0;
	int st;

	hp_write_conf(h, fake(), "stop_timeout = 400ms\n",
	    "[agent \"g\"]\ncommand = ignore-drain\n"
	    "[agent \"o\"]\ncommand = ok\n");
	hp_start(h);
	hp_wait(h, &from, T_SHORT, "ready ", "agents:", NULL);
	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_SHORT);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
	hp_wait(h, &from, 0, "fake agent=o/1", "drained", NULL);
	hp_wait(h, &(size_t){ 0 }, 0, "agent=g/1", "killing reason=timer", NULL);
	hp_wait(h, &(size_t){ 0 }, 0, "agent=g/1", "exited signal=9", NULL);
	hp_wait(h, &(size_t){ 0 }, 0, "stopped", NULL);
}

Test(hived, recycle_after_max_tasks_keeps_memory)
{
	struct hp *h = hp_new("recycle");
	size_t from = 0;

	/* Each fake worker reports done=5 at once and bumps the memory. */
	hp_write_conf(h, fake(), NULL,
	    "[agent \"r\"]\ncommand = ok bump done=5\nmax_tasks = 5\n"
	    "restart_limit = 1\n");
	hp_start(h);
	hp_wait(h, &from, T_SHORT, "fake agent=r/1", "memory_v=0 n=0 ", NULL);
	hp_wait(h, &from, T_SHORT, "agent=r/1", "recycle reason=max_tasks", NULL);
	hp_wait(h, &from, T_SHORT, "fake agent=r/1", "drained", NULL);
	hp_wait(h, &from, T_SHORT, "fake agent=r/1", "memory_v=1 n=1 ", NULL);
	hp_wait(h, &from, T_SHORT, "agent=r/1", "recycle reason=max_tasks", NULL);
	/* Recycling is not a crash: past the limit of 1, never failed. */
	hp_wait(h, &from, T_SHORT, "fake agent=r/1", "memory_v=2 n=2 ", NULL);
	hp_wait(h, &from, T_SHORT, "fake agent=r/1", "memory_v=3 n=3 ", NULL);
	cr_assert_null(strstr(h->log, "state=failed"));
	stop_ok(h);
}

Test(hived, cooldown_ends_quarantine)
{
	struct hp *h = hp_new("cool");
	size_t from = 0;

	hp_write_conf(h, fake(), NULL,
	    "[agent \"c\"]\ncommand = crash-early\nrestart_limit = 1\n"
	    "backoff = 10ms\ncooldown = 300ms\n");
	hp_start(h);
	hp_wait(h, &from, T_SHORT, "agent=c/1", "state=failed", NULL);
	hp_wait(h, &from, T_SHORT, "agent=c/1", "state=starting", "from=failed",
	    "event=timer", NULL);
	hp_wait(h, &from, T_SHORT, "agent=c/1", "state=failed", NULL);
	stop_ok(h);
}

Test(hived, usr1_logs_one_line_per_instance)
{
	struct hp *h = hp_new("usr1");
	size_t from = 0;

	hp_write_conf(h, fake(), NULL,
	    "[agent \"a\"]\ncommand = ok\ninstances = 2\n"
	    "[agent \"s\"]\ncommand = ok\nautostart = no\n");
	hp_start(h);
	wait_ready(h, &(size_t){ 0 }, "a/1", 0, T_SHORT);
	wait_ready(h, &(size_t){ 0 }, "a/2", 0, T_SHORT);
	from = hp_mark(h);
	hp_signal(h, SIGUSR1);
	hp_wait(h, &from, T_SHORT, "status 2 agents: 2 ready, 0 busy, 0 failed, "
	    "1 sleeping", NULL);
	hp_wait(h, &from, T_SHORT, "status record postgres=off requeued=0 dead=0",
	    NULL);
	hp_wait(h, &from, T_SHORT, "agent=a/1 state=ready pid=", NULL);
	hp_wait(h, &from, T_SHORT, "agent=a/2 state=ready pid=", NULL);
	hp_wait(h, &from, T_SHORT, "agent=s/1 state=sleeping pid=0", NULL);
	stop_ok(h);
}

Test(hived, worker_gets_fd3_environment_and_directory_only)
{
	struct hp *h = hp_new("spawn");
	char agents[2048], want[700];
	size_t from = 0;

	/* Open descriptors in hived (HTTP, links, libev) must not leak. */
	snprintf(agents, sizeof(agents),
	    "[agent \"e\"]\ncommand = ok\ninstances = 3\n"
	    "environment = FAKE_TAG=hello\ndirectory = %s\n", h->dir);
	hp_write_conf(h, fake(), NULL, agents);
	hp_start(h);
	snprintf(want, sizeof(want), "cwd=%s", h->dir);
	for (int i = 0; i < 3; i++)
		hp_wait(h, &from, T_SHORT, "fake agent=e/",
		    " tag=hello fds=0,1,2,3 cwd=", want, NULL);
	stop_ok(h);
}

Test(hived, exec_failure_is_a_crash_not_a_storm)
{
	struct hp *h = hp_new("exec");
	size_t from = 0;

	hp_write_conf(h, "/nonexistent/hive-worker", NULL,
	    "[agent \"x\"]\ncommand = ok\nrestart_limit = 2\nbackoff = 10ms\n");
	hp_start(h);
	hp_wait(h, &from, T_SHORT, "agent=x/1", "exec /nonexistent/hive-worker",
	    "No such file", NULL);
	hp_wait(h, &from, T_SHORT, "agent=x/1", "exited status=127", NULL);
	hp_wait(h, &from, T_SHORT, "agent=x/1", "state=failed", NULL);
	stop_ok(h);
}

/* The next sd_notify datagram containing want (others are skipped). */
static void
notify_wait(struct hp *h, int sock, const char *want, char *got, size_t len)
{
	long long end = tu_now_ms() + T_SHORT;

	while (tu_now_ms() < end) {
		struct pollfd p = { sock, POLLIN, 0 };
		ssize_t n;

		hp_pump(h, 0);
		if (poll(&p, 1, 100) <= 0)
			continue;
		if ((n = recv(sock, got, len - 1, 0)) <= 0)
			continue;
		got[n] = '\0';
		if (strstr(got, want) != NULL)
			return;
	}
	cr_assert_fail("no sd_notify message with %s", want);
}

Test(hived, systemd_notify_sequence)
{
	struct hp *h = hp_new("notify");
	struct sockaddr_un sa;
	char path[600], msg[512];
	size_t from = 0;
	int s;

	snprintf(path, sizeof(path), "%s/notify", h->dir);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	cr_assert(strlen(path) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, path);
	cr_assert((s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) >= 0);
	cr_assert(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	setenv("NOTIFY_SOCKET", path, 1);
	setenv("WATCHDOG_USEC", "400000", 1);
	hp_write_conf(h, fake(), NULL,
	    "[agent \"a\"]\ncommand = ok\n"
	    "[agent \"s\"]\ncommand = ok\nautostart = no\n");
	hp_start(h);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");

	notify_wait(h, s, "READY=1", msg, sizeof(msg));
	cr_assert(strstr(msg, "STATUS=2 agents: 1 ready, 0 busy, 0 failed, "
	    "1 sleeping") != NULL, "%s", msg);
	notify_wait(h, s, "WATCHDOG=1", msg, sizeof(msg));
	notify_wait(h, s, "WATCHDOG=1", msg, sizeof(msg));
	/* hived's systemd variables stay hived's. */
	hp_wait(h, &from, T_SHORT, "fake agent=a/1", "notify=0", NULL);

	hp_signal(h, SIGHUP);
	notify_wait(h, s, "RELOADING=1", msg, sizeof(msg));
	notify_wait(h, s, "READY=1", msg, sizeof(msg));
	hp_signal(h, SIGTERM);
	notify_wait(h, s, "STOPPING=1", msg, sizeof(msg));
	cr_assert_eq(hp_wait_exit(h, T_SHORT), 0);
	close(s);
}

/* ---- the real hive-worker ---- */

Test(hived, killed_worker_restarts_with_its_memory)
{
	struct hp *h = hp_new("memkill");
	redisContext *c = tu_redis_connect();
	char agents[1024], st[32];
	size_t from = 0;
	uint64_t mv = 0;
	pid_t pid, p2;
	json_t *a;

	counter_agent(agents, sizeof(agents), "m", 1, NULL);
	hp_write_conf(h, real(), "heartbeat_interval = 200ms\n", agents);
	hp_start(h);
	pid = wait_ready(h, &from, "m/1", 0, T_LONG);

	hp_submit_direct(c, h->prefix, "m", 1, "t1", "{\"x\": 1}");
	cr_assert_eq(result_count(h, c, "t1", &mv), 1);
	cr_assert_eq(mv, 1);
	hp_wait(h, &from, T_LONG, "agent=m/1 memory_v=1 kept", NULL);

	cr_assert_eq(kill(pid, SIGKILL), 0);
	hp_wait(h, &from, T_LONG, "agent=m/1", "exited signal=9", NULL);
	hp_wait(h, &from, T_LONG, "agent=m/1", "state=starting", "memory_v=1", NULL);
	p2 = wait_ready(h, &from, "m/1", pid, T_LONG);

	hp_submit_direct(c, h->prefix, "m", 1, "t2", "{\"x\": 2}");
	cr_assert_eq(result_count(h, c, "t2", &mv), 2, "memory lost");
	cr_assert_eq(mv, 2);
	hp_wait(h, &from, T_LONG, "agent=m/1 memory_v=2 kept", NULL);
	a = hp_agent(h, "m/1");
	cr_assert_eq(json_integer_value(json_object_get(a, "memory_v")), 2);
	cr_assert_eq(json_integer_value(json_object_get(a, "restarts")), 1);
	cr_assert_eq(json_integer_value(json_object_get(a, "pid")), p2);
	json_decref(a);
	hp_agent_state(h, "m/1", st, sizeof(st));
	cr_assert(strcmp(st, "ready") == 0 || strcmp(st, "busy") == 0, "%s", st);
	stop_ok(h);
	redisFree(c);
}

Test(hived, sleep_and_wake_keep_memory)
{
	struct hp *h = hp_new("sleep");
	redisContext *c = tu_redis_connect();
	char agents[1024];
	size_t from = 0;
	uint64_t mv = 0;
	pid_t pid;
	json_t *a;

	counter_agent(agents, sizeof(agents), "s", 1, NULL);
	hp_write_conf(h, real(), "heartbeat_interval = 200ms\n", agents);
	hp_start(h);
	pid = wait_ready(h, &from, "s/1", 0, T_LONG);
	hp_submit_direct(c, h->prefix, "s", 1, "t1", "{}");
	cr_assert_eq(result_count(h, c, "t1", &mv), 1);
	hp_wait(h, &from, T_LONG, "agent=s/1 memory_v=1 kept", NULL);

	cr_assert_eq(hp_post(h, "/agents/s/sleep"), 200);
	hp_wait(h, &from, T_LONG, "agent=s/1", "state=sleeping", NULL);
	cr_assert_eq(hp_wait_pid_gone(pid, T_LONG), 0);
	a = hp_agent(h, "s/1");
	cr_assert_str_eq(json_string_value(json_object_get(a, "state")),
	    "sleeping");
	cr_assert(json_is_null(json_object_get(a, "pid")));
	cr_assert_eq(json_integer_value(json_object_get(a, "memory_v")), 1);
	json_decref(a);
	/* Asleep: not restarted by anything but wake. */
	cr_assert_null(hp_wait_try(h, &from, 300, "agent=s/1", "state=starting", NULL));

	cr_assert_eq(hp_post(h, "/agents/s/wake"), 200);
	hp_wait(h, &from, T_LONG, "agent=s/1", "state=starting", "memory_v=1", NULL);
	wait_ready(h, &from, "s/1", pid, T_LONG);
	hp_submit_direct(c, h->prefix, "s", 1, "t2", "{}");
	cr_assert_eq(result_count(h, c, "t2", &mv), 2, "memory lost in sleep");
	cr_assert_eq(mv, 2);
	stop_ok(h);
	redisFree(c);
}

Test(hived, term_drains_task_in_flight_and_exits_0)
{
	struct hp *h = hp_new("term");
	redisContext *c = tu_redis_connect();
	char agents[1024];
	size_t from = 0;
	uint64_t mv = 0;
	int st;

	counter_agent(agents, sizeof(agents), "t", 1, NULL);
	hp_write_conf(h, real(), "heartbeat_interval = 200ms\nstop_timeout = 15s\n",
	    agents);
	hp_start(h);
	wait_ready(h, &from, "t/1", 0, T_LONG);
	hp_submit_direct(c, h->prefix, "t", 1, "slow", "{\"sleep_ms\": 800}");
	hp_wait(h, &from, T_LONG, "agent=t/1", "state=busy", NULL);
	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
	hp_wait(h, &from, 0, "agent=t/1", "exited status=0", NULL);
	/* The task finished: its result is there, nothing was cut. */
	cr_assert_eq(result_count(h, c, "slow", &mv), 1);
	cr_assert_null(strstr(h->log, "killing reason=timer"));
	redisFree(c);
}

Test(hived, killed_hived_leaves_no_worker)
{
	struct hp *h = hp_new("orphan");
	char agents[1024];
	size_t from = 0;
	pid_t w1, w2;
	int st;

	counter_agent(agents, sizeof(agents), "o", 2, NULL);
	hp_write_conf(h, real(), "heartbeat_interval = 200ms\n", agents);
	hp_start(h);
	w1 = wait_ready(h, &(size_t){ 0 }, "o/1", 0, T_LONG);
	w2 = wait_ready(h, &(size_t){ 0 }, "o/2", 0, T_LONG);
	(void)from;

	hp_signal(h, SIGKILL);
	st = hp_wait_exit(h, T_SHORT);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	/* Orphans are ours (subreaper): they see EOF, drain and exit 0. */
	cr_assert_eq(hp_wait_pid_gone(w1, T_LONG), 0, "worker %d outlived hived",
	    (int)w1);
	cr_assert_eq(hp_wait_pid_gone(w2, T_LONG), 0, "worker %d outlived hived",
	    (int)w2);
	cr_assert_eq(waitpid(w1, &st, 0), w1);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker status 0x%x", st);
	cr_assert_eq(waitpid(w2, &st, 0), w2);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker status 0x%x", st);
}

Test(hived, check_config_exit_status)
{
	struct hp *h = hp_new("check");
	char cmd[2048];
	FILE *f;
	int st;

	hp_write_conf(h, fake(), NULL, "[agent \"a\"]\ncommand = ok\n");
	snprintf(cmd, sizeof(cmd), "%s --check-config %s >/dev/null 2>&1",
	    tu_build_path("supervisor/hived"), h->conf);
	st = system(cmd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
	cr_assert((f = fopen(h->conf, "a")) != NULL);
	fprintf(f, "[agent \"b\"]\nrestart = sometimes\n");
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s --check-config %s 2>&1 | grep -q 'hive.conf:[0-9]'",
	    tu_build_path("supervisor/hived"), h->conf);
	cr_assert_eq(system(cmd), 0, "no file:line error");
	snprintf(cmd, sizeof(cmd), "%s --check-config %s >/dev/null 2>&1",
	    tu_build_path("supervisor/hived"), h->conf);
	st = system(cmd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "status 0x%x", st);
}

/* A restart history that grows as restarts come (4, 8, then the limit)
 * counts them all: failed after exactly restart_limit restarts. */
Test(hived, crash_loop_longer_than_the_first_ring)
{
	struct hp *h = hp_new("ring");
	size_t from = 0;
	json_t *a;

	hp_write_conf(h, fake(), NULL,
	    "[agent \"c\"]\n"
	    "command = crash\n"
	    "restart_limit = 9\n"
	    "restart_window = 60s\n"
	    "backoff = 1ms\n"
	    "backoff_max = 2ms\n");
	hp_start(h);
	hp_wait(h, &from, T_SHORT, "agent=c/1 failed reason=restart-limit", NULL);
	a = hp_agent(h, "c/1");
	cr_assert_str_eq(json_string_value(json_object_get(a, "state")), "failed");
	cr_assert_eq(json_integer_value(json_object_get(a, "restarts")), 9);
	json_decref(a);
	stop_ok(h);
}
