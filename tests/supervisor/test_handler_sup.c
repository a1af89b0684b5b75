/*
 * test_handler_sup.c - hived and the handlers of its workers: real hived,
 * real hive-worker, tests/worker/test_handler.c as the handler, the
 * private Redis.
 *
 *   - a handler that cannot start: its failures climb a backoff, count
 *     against the restart-rate limit, the instance ends failed, and
 *     start-up is over (READY=1) all the same;
 *   - a handler that exits on every task: its restarts show in GET
 *     /agents and the events, and the instance ends failed; in exec
 *     mode, a handler that cannot start the same;
 *   - a worker SIGKILLed, or killed at its heartbeat deadline: its
 *     handler and the handler's child are gone too.
 *
 * Every wait is for an event (a log line, an HTTP answer, a process
 * exit, a fifo); the timeouts are failure guards.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 20000     /* guard for anything involving a real worker */

TestSuite(handler_sup, .fini = hp_cleanup, .timeout = 90);

static const char *
worker(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s", tu_build_path("worker/hive-worker"));
	return path;
}

static const char *
handler(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s",
	    tu_build_path("tests/worker/test_handler"));
	return path;
}

static void
stop_ok(struct hp *h)
{
	int st;

	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}

static json_t *
health(struct hp *h, int want)
{
	int code;
	json_t *j = hp_http(h, "GET", "/health", NULL, &code);

	cr_assert_eq(code, want);
	cr_assert(j != NULL);
	return j;
}

Test(handler_sup, handler_that_cannot_start_ends_failed_and_ready_comes)
{
	struct hp *h = hp_new("hnostart");
	char agents[10000];
	size_t from = 0;
	const char *l;
	json_t *a, *j;

	snprintf(agents, sizeof(agents),
	    "[agent \"n\"]\n"
	    "command = /nonexistent/hive-handler\n"
	    "restart_limit = 3\n"
	    "restart_window = 60s\n"
	    "[agent \"ok\"]\n"
	    "command = %s stream\n", handler());
	hp_write_conf(h, worker(), NULL, agents);
	hp_start(h);
	/* The worker retries its handler on a growing backoff... */
	l = hp_wait(h, &from, T_LONG, "agent=n/1 restarting handler", NULL);
	cr_assert_eq(hp_field(l, "delay_ms"), 0);
	l = hp_wait(h, &from, T_LONG, "agent=n/1 restarting handler", NULL);
	cr_assert_eq(hp_field(l, "delay_ms"), 100);
	l = hp_wait(h, &from, T_LONG, "agent=n/1 restarting handler", NULL);
	cr_assert_eq(hp_field(l, "delay_ms"), 200);
	/* ...and hived counts each failure: the one past the limit ends
	 * the worker and quarantines the instance. */
	hp_wait(h, &from, T_LONG, "agent=n/1", "state=failed", NULL);
	hp_wait(h, &from, T_LONG, "agent=n/1 failed reason=restart-limit", NULL);
	/* Start-up is over: the healthy agent is ready, the bad one failed. */
	hp_wait(h, &from, T_LONG, "ready 2 agents: 1 ready, 0 busy, 1 failed",
	    NULL);
	/* Answered, 503 while an instance is failed (api_ctl.c). */
	j = health(h, 503);
	cr_assert(json_is_true(json_object_get(j, "ready")));
	json_decref(j);
	a = hp_agent(h, "n/1");
	cr_assert_str_eq(json_string_value(json_object_get(a, "state")),
	    "failed");
	cr_assert_geq(json_integer_value(json_object_get(a,
	    "handler_restarts")), 4);
	cr_assert_eq(json_integer_value(json_object_get(a, "restarts")), 0);
	json_decref(a);
	stop_ok(h);
}

/*
 * Wait until <prefix>:events holds want events of kind for agent (XREAD
 * BLOCK from the start: hived's XADD may still be on its way).
 */
static void
wait_events(struct hp *h, redisContext *c, const char *kind,
    const char *agent, int want)
{
	char key[HIVE_KEY_MAX], last[64] = "0-0";
	long long end = tu_now_ms() + T_LONG;
	int n = 0;

	cr_assert(proto_key_named(key, sizeof(key), h->prefix, "events") > 0);
	while (n < want && tu_now_ms() < end) {
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
			redisReply *fv = ents->element[i]->element[1];
			struct hive_event e;
			struct proto_err err;

			snprintf(last, sizeof(last), "%s",
			    ents->element[i]->element[0]->str);
			cr_assert_eq(proto_decode_event(fv->element[1]->str,
			    fv->element[1]->len, &e, &err), 0);
			if (e.kind.len == strlen(kind) &&
			    memcmp(e.kind.ptr, kind, e.kind.len) == 0 &&
			    e.agent.len == strlen(agent) &&
			    memcmp(e.agent.ptr, agent, e.agent.len) == 0)
				n++;
			proto_event_clear(&e);
		}
		freeReplyObject(r);
	}
	cr_assert_geq(n, want, "%d %s events for %s, want %d", n, kind, agent,
	    want);
}

Test(handler_sup, handler_exiting_on_every_task_counts_and_fails)
{
	struct hp *h = hp_new("hloop");
	redisContext *c = tu_redis_connect();
	char agents[10000];
	size_t from = 0;
	json_t *a;

	snprintf(agents, sizeof(agents),
	    "[agent \"x\"]\n"
	    "command = %s stream\n"
	    "restart_limit = 2\n"
	    "restart_window = 60s\n"
	    "max_attempts = 10\n", handler());
	hp_write_conf(h, worker(), NULL, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=x/1", "state=ready", NULL);
	hp_submit_direct(c, h->prefix, "x", 1, "t1", "{\"op\": \"exit\"}");
	/* Each exit is seen by hived... */
	hp_wait(h, &from, T_LONG, "agent=x/1", "handler failed",
	    "handler_restarts=1", NULL);
	hp_wait(h, &from, T_LONG, "agent=x/1", "handler failed",
	    "handler_restarts=2", NULL);
	/* ...and the third, past restart_limit = 2, ends it. */
	hp_wait(h, &from, T_LONG, "agent=x/1", "killing reason=handler", NULL);
	hp_wait(h, &from, T_LONG, "agent=x/1", "state=failed", NULL);
	a = hp_agent(h, "x/1");
	cr_assert_str_eq(json_string_value(json_object_get(a, "state")),
	    "failed");
	cr_assert_geq(json_integer_value(json_object_get(a,
	    "handler_restarts")), 3);
	json_decref(a);
	wait_events(h, c, "agent.handler_failed", "x/1", 3);
	stop_ok(h);
	redisFree(c);
}

/* mode = exec: each task whose handler cannot start fails, and counts;
 * the one past the limit ends the instance, not every task queued. */
Test(handler_sup, exec_handler_that_cannot_start_ends_failed)
{
	struct hp *h = hp_new("hexec");
	redisContext *c = tu_redis_connect();
	size_t from = 0;
	json_t *a;

	hp_write_conf(h, worker(), NULL,
	    "[agent \"e\"]\n"
	    "command = /nonexistent/hive-handler\n"
	    "mode = exec\n"
	    "restart_limit = 1\n");
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=e/1", "state=ready", NULL);
	hp_submit_direct(c, h->prefix, "e", 1, "t1", "{\"x\": 1}");
	hp_wait(h, &from, T_LONG, "agent=e/1", "handler failed",
	    "handler_restarts=1", NULL);
	hp_submit_direct(c, h->prefix, "e", 1, "t2", "{\"x\": 2}");
	hp_wait(h, &from, T_LONG, "agent=e/1", "killing reason=handler", NULL);
	hp_wait(h, &from, T_LONG, "agent=e/1", "state=failed", NULL);
	a = hp_agent(h, "e/1");
	cr_assert_eq(json_integer_value(json_object_get(a,
	    "handler_restarts")), 2);
	json_decref(a);
	stop_ok(h);
	redisFree(c);
}

/* The next "PID CHILDPID" line test_handler wrote on its fifo. */
static void
read_pids(struct hp *h, int fd, pid_t *handler, pid_t *child)
{
	long long end = tu_now_ms() + T_LONG;
	char line[64];
	size_t n = 0;
	long hp, cp;

	while (n < sizeof(line) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		cr_assert(tu_now_ms() < end, "no pids from the handler");
		hp_pump(h, 0);       /* hived must never block on its log */
		if (poll(&p, 1, 100) != 1 || read(fd, &line[n], 1) != 1)
			continue;
		if (line[n] == '\n')
			break;
		n++;
	}
	line[n] = '\0';
	cr_assert_eq(sscanf(line, "%ld %ld", &hp, &cp), 2, "%s", line);
	*handler = (pid_t)hp;
	*child = (pid_t)cp;
}

/*
 * The handler runs in a process group of its own, with a child.  A
 * SIGKILL of the worker, then a kill at the heartbeat deadline (the
 * worker stopped): each time the handler and its child are gone too.
 */
Test(handler_sup, handler_group_dies_with_a_killed_worker)
{
	struct hp *h = hp_new("hgroup");
	char agents[10000], fifo[700];
	size_t from = 0;
	pid_t w, hpid, cpid;
	int fd;

	snprintf(fifo, sizeof(fifo), "%s/pids", h->dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	/* O_RDWR: never blocks, and no EOF between two handlers. */
	cr_assert((fd = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC)) >= 0);
	snprintf(agents, sizeof(agents),
	    "[agent \"k\"]\n"
	    "command = %s stream %s\n"
	    "heartbeat_deadline = 1s\n"
	    "restart_limit = 10\n", handler(), fifo);
	hp_write_conf(h, worker(), "heartbeat_interval = 100ms\n", agents);
	hp_start(h);

	read_pids(h, fd, &hpid, &cpid);
	hp_wait(h, &from, T_LONG, "agent=k/1", "state=ready", NULL);
	w = hp_agent_pid(h, "k/1");
	cr_assert_gt(w, 0);
	cr_assert_eq(kill(w, SIGKILL), 0);
	cr_assert_eq(hp_wait_pid_gone(hpid, T_LONG), 0,
	    "handler %d outlived its SIGKILLed worker", (int)hpid);
	cr_assert_eq(hp_wait_pid_gone(cpid, T_LONG), 0,
	    "the handler's child %d outlived its SIGKILLed worker", (int)cpid);

	/* The restarted worker's handler: the worker hangs, hived kills it
	 * at its deadline. */
	read_pids(h, fd, &hpid, &cpid);
	hp_wait(h, &from, T_LONG, "agent=k/1", "state=ready from=", NULL);
	w = hp_agent_pid(h, "k/1");
	cr_assert_gt(w, 0);
	cr_assert_eq(kill(w, SIGSTOP), 0);
	hp_wait(h, &from, T_LONG, "agent=k/1", "heartbeat deadline missed",
	    NULL);
	cr_assert_eq(hp_wait_pid_gone(hpid, T_LONG), 0,
	    "handler %d outlived its worker killed at the deadline",
	    (int)hpid);
	cr_assert_eq(hp_wait_pid_gone(cpid, T_LONG), 0,
	    "the handler's child %d outlived its worker killed at the "
	    "deadline", (int)cpid);
	close(fd);
	stop_ok(h);
}

/*
 * A SIGKILLed worker leaves its handler to hived, which kills it when it
 * reaps the worker; the other workers of hived, found among its children
 * by a search of their sorted pids, are never taken for left behind.
 * Eight instances: every one but the killed one keeps its worker.
 */
Test(handler_sup, sweep_after_a_killed_worker_spares_the_others)
{
	struct hp *h = hp_new("hsweep");
	char agents[10000], label[32];
	pid_t pids[8], w;
	size_t from[8] = { 0 };   /* each instance's own place in the log */

	snprintf(agents, sizeof(agents),
	    "[agent \"s\"]\n"
	    "command = %s stream\n"
	    "instances = 8\n"
	    "restart_limit = 100\n", handler());
	hp_write_conf(h, worker(), NULL, agents);
	hp_start(h);
	/* "state=ready from=": the move to ready, not the exit line of a
	 * worker killed while ready ("exited signal=9 state=ready"). */
	for (int i = 0; i < 8; i++) {
		snprintf(label, sizeof(label), "agent=s/%d pid=", i + 1);
		hp_wait(h, &from[i], T_LONG, label, "state=ready from=", NULL);
	}
	for (int i = 0; i < 8; i++) {
		snprintf(label, sizeof(label), "s/%d", i + 1);
		pids[i] = hp_agent_pid(h, label);
		cr_assert_gt(pids[i], 0, "%s has no worker", label);
	}
	for (int k = 0; k < 8; k++) {
		/* kill s/k+1; it comes back with another worker */
		cr_assert_eq(kill(pids[k], SIGKILL), 0);
		snprintf(label, sizeof(label), "agent=s/%d pid=", k + 1);
		hp_wait(h, &from[k], T_LONG, label, "state=ready from=", NULL);
		snprintf(label, sizeof(label), "s/%d", k + 1);
		w = hp_agent_pid(h, label);
		cr_assert(w > 0 && w != pids[k], "%s: worker %d", label, (int)w);
		pids[k] = w;
		for (int i = 0; i < 8; i++) {
			snprintf(label, sizeof(label), "s/%d", i + 1);
			cr_assert_eq(hp_agent_pid(h, label), pids[i],
			    "%s's worker %d was killed after s/%d's", label,
			    (int)pids[i], k + 1);
			cr_assert_eq(kill(pids[i], 0), 0, "%s's worker %d is gone",
			    label, (int)pids[i]);
		}
	}
	stop_ok(h);
}

/* GET /agents names the task an instance runs, from its heartbeats, and
 * for how long; none once it is over. */
Test(handler_sup, agents_name_the_task_in_flight)
{
	struct hp *h = hp_new("curtask");
	redisContext *c = tu_redis_connect();
	char agents[10000];
	size_t from = 0;
	long long end;
	json_t *a = NULL;

	snprintf(agents, sizeof(agents),
	    "[agent \"x\"]\n"
	    "command = %s stream\n", handler());
	hp_write_conf(h, worker(), "heartbeat_interval = 100ms\n"
	    "stop_timeout = 1s\n", agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=x/1", "state=ready", NULL);
	a = hp_agent(h, "x/1");
	cr_assert(json_is_null(json_object_get(a, "task")));
	cr_assert(json_is_null(json_object_get(a, "task_ms")));
	json_decref(a);
	hp_submit_direct(c, h->prefix, "x", 1, "held-1", "{\"op\": \"hold\"}");
	for (end = tu_now_ms() + T_LONG;; ) {
		a = hp_agent(h, "x/1");
		if (json_is_string(json_object_get(a, "task")))
			break;
		json_decref(a);
		cr_assert(tu_now_ms() < end, "no task in GET /agents");
		poll(NULL, 0, 50);
	}
	cr_assert_str_eq(json_string_value(json_object_get(a, "task")),
	    "held-1");
	cr_assert(json_integer_value(json_object_get(a, "task_ms")) >= 0);
	json_decref(a);
	stop_ok(h);
	redisFree(c);
}

/* Every line of h's log (hived's and its workers' stderr) a JSON object
 * of log.c's members; returns how many came from each role. */
static void
json_log_lines(struct hp *h, int *nhived, int *nworker, int *task_seen,
    int *agent_seen)
{
	char *log = strdup(h->log), *save, *l;

	cr_assert_not_null(log);
	for (l = strtok_r(log, "\n", &save); l != NULL;
	    l = strtok_r(NULL, "\n", &save)) {
		json_error_t e;
		json_t *j = json_loads(l, 0, &e);
		const char *role, *time, *task;

		cr_assert(json_is_object(j), "not a JSON line (%s): %s", e.text,
		    l);
		role = json_string_value(json_object_get(j, "role"));
		time = json_string_value(json_object_get(j, "time"));
		cr_assert(role != NULL && time != NULL && strlen(time) == 24 &&
		    time[10] == 'T' && time[23] == 'Z', "%s", l);
		cr_assert(json_is_string(json_object_get(j, "msg")) &&
		    json_is_string(json_object_get(j, "level")) &&
		    json_is_integer(json_object_get(j, "priority")) &&
		    json_is_integer(json_object_get(j, "pid")), "%s", l);
		if (strcmp(role, "hived") == 0)
			(*nhived)++;
		else if (strcmp(role, "hive-worker") == 0)
			(*nworker)++;
		else
			cr_assert_fail("role %s: %s", role, l);
		task = json_string_value(json_object_get(j, "task"));
		if (strcmp(role, "hive-worker") == 0 && task != NULL &&
		    strcmp(task, "j\"1\\") == 0 &&
		    json_integer_value(json_object_get(j, "instance")) == 1)
			*task_seen = 1;
		if (strcmp(role, "hived") == 0 && json_is_string(json_object_get(j,
		    "agent")) && strcmp(json_string_value(json_object_get(j,
		    "agent")), "x") == 0 &&
		    json_integer_value(json_object_get(j, "instance")) == 1)
			*agent_seen = 1;
		json_decref(j);
	}
	free(log);
}

/*
 * log_format = json: the whole of hived's stderr, its workers' lines
 * with it, parses line by line through a start, a task (its id full of
 * what JSON escapes), a handler that dies on a task, and the stop; the
 * agent, instance and task are members of their own.
 */
Test(handler_sup, json_log_parses_line_by_line)
{
	struct hp *h = hp_new("jsonlog");
	redisContext *c = tu_redis_connect();
	char agents[10000];
	size_t from = 0;
	int nhived = 0, nworker = 0, task_seen = 0, agent_seen = 0;

	snprintf(agents, sizeof(agents),
	    "[agent \"x\"]\n"
	    "command = %s stream\n"
	    "max_attempts = 1\n", handler());
	hp_write_conf(h, worker(), "log_format = json\n", agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=x/1", "state=ready", NULL);
	hp_submit_direct(c, h->prefix, "x", 1, "j\"1\\", "{\"op\": \"echo\"}");
	/* the id as the JSON line has it: j\"1\\ */
	hp_wait(h, &from, T_LONG, "task=j\\\"1\\\\ ", "status=", NULL);
	hp_submit_direct(c, h->prefix, "x", 1, "j2", "{\"op\": \"exit\"}");
	hp_wait(h, &from, T_LONG, "agent=x/1", "handler failed", NULL);
	stop_ok(h);
	json_log_lines(h, &nhived, &nworker, &task_seen, &agent_seen);
	cr_assert(nhived > 5 && nworker > 2, "hived %d, worker %d lines",
	    nhived, nworker);
	cr_assert(task_seen, "no worker line with task j\"1\\ and instance 1");
	cr_assert(agent_seen, "no hived line with agent x and instance 1");
	redisFree(c);
}

/* The whole line of h's log that l (from hp_wait) points into. */
static json_t *
line_json(const char *l)
{
	char buf[16384];
	json_error_t e;
	json_t *j;

	snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(l, "\n"), l);
	j = json_loads(buf, 0, &e);
	cr_assert(json_is_object(j), "not JSON (%s): %s", e.text, buf);
	return j;
}

/*
 * A reload to log_format = json: hived's lines are JSON from the reload
 * on, and the agent restarts (log_format is a worker setting) so that its
 * new worker's are too.  Before it, text lines with the time.
 */
Test(handler_sup, reload_switches_the_log_format)
{
	struct hp *h = hp_new("logreload");
	char agents[10000];
	size_t from = 0;
	const char *l;
	json_t *j;

	snprintf(agents, sizeof(agents),
	    "[agent \"x\"]\n"
	    "command = %s stream\n", handler());
	hp_write_conf(h, worker(), NULL, agents);
	hp_start(h);
	l = hp_wait(h, &from, T_LONG, "agent=x/1", "state=ready", NULL);
	cr_assert(strncmp(l, "<6>20", 5) == 0 && l[13] == 'T' && l[26] == 'Z' &&
	    strncmp(l + 27, " hived[", 7) == 0, "%.80s", l);
	hp_write_conf(h, worker(), "log_format = json\nlog_time = no\n", agents);
	hp_signal(h, SIGHUP);
	l = hp_wait(h, &from, T_LONG, "reload done", "changed=1", NULL);
	j = line_json(l);
	cr_assert_str_eq(json_string_value(json_object_get(j, "role")), "hived");
	json_decref(j);
	l = hp_wait(h, &from, T_LONG, "\"role\":\"hive-worker\"", "agent=x/1",
	    "starting", NULL);
	j = line_json(l);
	cr_assert_eq(json_integer_value(json_object_get(j, "instance")), 1);
	json_decref(j);
	stop_ok(h);
}
