/*
 * test_output.c - agents' output in hived (supervisor/output.c,
 * api_output.c): real hived, real hive-worker, tests/worker/test_handler.c
 * writing stderr lines ("say"), the private Redis.
 *
 * A line shows in hived's log as "agent=NAME/N task=ID trace=TRACE:
 * text"; GET /agents/NAME/output returns the lines with their task; the ring keeps
 * only output_lines (the agent's, else [hive]'s, which a reload changes
 * without a restart) and outlives a SIGKILLed worker; unknown agents and
 * instances are 404, a bad n 400.
 *
 * Waits are for log lines; deadlines are failure guards only.
 */
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 20000     /* guard for anything involving a real worker */

TestSuite(output, .fini = hp_cleanup, .timeout = 90);

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

/* GET path, which must answer want; its body. */
static json_t *
get(struct hp *h, const char *path, int want)
{
	int code;
	json_t *j = hp_http(h, "GET", path, NULL, &code);

	cr_assert_eq(code, want, "GET %s: %d, want %d", path, code, want);
	cr_assert(j != NULL, "GET %s: no JSON body", path);
	return j;
}

static void
get_fails(struct hp *h, const char *path, int want, const char *code)
{
	json_t *j = get(h, path, want);

	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j,
	    "error"), "code")), code, "GET %s", path);
	json_decref(j);
}

/* Task id says text (one line, its own task); wait for hived's line. */
static void
say(struct hp *h, redisContext *c, size_t *from, const char *id,
    const char *text)
{
	char payload[256], needle[256], said[256];
	const char *line;

	snprintf(payload, sizeof(payload), "{\"op\": \"say\", \"text\": \"%s\"}",
	    text);
	hp_submit_direct(c, h->prefix, "talk", 1, id, payload);
	/* The task's trace id too: the worker made its traceparent. */
	snprintf(needle, sizeof(needle), "agent=talk/1 task=%s trace=", id);
	snprintf(said, sizeof(said), ": %s", text);
	line = hp_wait(h, from, T_LONG, needle, said, NULL);
	line = strstr(line, " trace=") + 7;
	cr_assert_eq(strspn(line, "0123456789abcdef"), 32, "trace id: %s",
	    line);
}

static void
line_is(json_t *lines, size_t i, const char *task, const char *text)
{
	json_t *l = json_array_get(lines, i);

	cr_assert(l != NULL, "no line %zu", i);
	cr_assert_eq(json_integer_value(json_object_get(l, "instance")), 1);
	cr_assert_str_eq(json_string_value(json_object_get(l, "task")), task);
	cr_assert_str_eq(json_string_value(json_object_get(l, "text")), text);
	cr_assert(json_is_string(json_object_get(l, "at")), "line %zu: at", i);
}

Test(output, lines_kept_attributed_bounded_and_survive_a_kill)
{
	struct hp *h = hp_new("output");
	redisContext *c = tu_redis_connect();
	char agents[8192];
	size_t from = 0;
	json_t *j, *lines;
	pid_t pid;

	snprintf(agents, sizeof(agents),
	    "[agent \"talk\"]\n"
	    "command = %s stream\n"
	    "output_lines = 3\n", handler());
	hp_write_conf(h, worker(), NULL, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=talk/1", "state=ready", NULL);

	j = get(h, "/agents/talk/output", 200);
	cr_assert_str_eq(json_string_value(json_object_get(j, "agent")), "talk");
	cr_assert_eq(json_array_size(json_object_get(j, "lines")), 0);
	cr_assert(json_object_get(j, "last_event_id") != NULL);
	json_decref(j);

	say(h, c, &from, "t1", "first line");
	j = get(h, "/agents/talk/output", 200);
	lines = json_object_get(j, "lines");
	cr_assert_eq(json_array_size(lines), 1);
	line_is(lines, 0, "t1", "first line");
	json_decref(j);

	/* The ring keeps output_lines = 3: the oldest goes. */
	say(h, c, &from, "t2", "second");
	say(h, c, &from, "t3", "third");
	say(h, c, &from, "t4", "fourth");
	j = get(h, "/agents/talk/output?instance=1", 200);
	lines = json_object_get(j, "lines");
	cr_assert_eq(json_array_size(lines), 3);
	line_is(lines, 0, "t2", "second");
	line_is(lines, 2, "t4", "fourth");
	json_decref(j);
	j = get(h, "/agents/talk/output?n=2", 200);
	lines = json_object_get(j, "lines");
	cr_assert_eq(json_array_size(lines), 2, "n = 2: the last two");
	line_is(lines, 0, "t3", "third");
	json_decref(j);

	/* The ring is hived's: a SIGKILLed worker takes nothing with it. */
	pid = hp_agent_pid(h, "talk/1");
	cr_assert_gt(pid, 0);
	kill(pid, SIGKILL);
	hp_wait(h, &from, T_LONG, "agent=talk/1", "state=starting", NULL);
	hp_wait(h, &from, T_LONG, "agent=talk/1", "state=ready", NULL);
	cr_assert_neq(hp_agent_pid(h, "talk/1"), pid);
	j = get(h, "/agents/talk/output", 200);
	lines = json_object_get(j, "lines");
	cr_assert_eq(json_array_size(lines), 3);
	line_is(lines, 2, "t4", "fourth");
	json_decref(j);
	say(h, c, &from, "t5", "after the kill");
	j = get(h, "/agents/talk/output", 200);
	line_is(json_object_get(j, "lines"), 2, "t5", "after the kill");
	json_decref(j);

	get_fails(h, "/agents/nobody/output", 404, "not_found");
	get_fails(h, "/agents/talk/output?instance=2", 404, "not_found");
	get_fails(h, "/agents/talk/output?instance=0", 400, "bad_request");
	get_fails(h, "/agents/talk/output?n=0", 400, "bad_request");
	get_fails(h, "/agents/talk/output?n=4", 400, "bad_request");
	get_fails(h, "/agents/talk/output?n=x", 400, "bad_request");
	get_fails(h, "/agents/talk/output?lines=2", 400, "bad_request");
	stop_ok(h);
	redisFree(c);
}

/* [hive] output_lines applies to every ring at its next line, on reload,
 * without restarting the agent. */
Test(output, hive_output_lines_and_reload)
{
	struct hp *h = hp_new("outreload");
	redisContext *c = tu_redis_connect();
	char agents[8192];
	size_t from = 0;
	json_t *j, *lines;
	pid_t pid;

	snprintf(agents, sizeof(agents),
	    "[agent \"talk\"]\n"
	    "command = %s stream\n", handler());
	hp_write_conf(h, worker(), "output_lines = 2\n", agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=talk/1", "state=ready", NULL);
	pid = hp_agent_pid(h, "talk/1");
	say(h, c, &from, "t1", "one");
	say(h, c, &from, "t2", "two");
	say(h, c, &from, "t3", "three");
	j = get(h, "/agents/talk/output", 200);
	lines = json_object_get(j, "lines");
	cr_assert_eq(json_array_size(lines), 2, "[hive] output_lines = 2");
	line_is(lines, 0, "t2", "two");
	json_decref(j);
	get_fails(h, "/agents/talk/output?n=3", 400, "bad_request");

	hp_write_conf(h, worker(), "output_lines = 5\n", agents);
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_LONG, "reload done", NULL);
	say(h, c, &from, "t4", "four");
	say(h, c, &from, "t5", "five");
	j = get(h, "/agents/talk/output?n=5", 200);
	lines = json_object_get(j, "lines");
	cr_assert_eq(json_array_size(lines), 4, "the ring grew, kept its lines");
	line_is(lines, 0, "t2", "two");
	line_is(lines, 3, "t5", "five");
	json_decref(j);
	cr_assert_eq(hp_agent_pid(h, "talk/1"), pid, "no restart for it");
	stop_ok(h);
	redisFree(c);
}
