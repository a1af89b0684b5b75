/*
 * test_ctl_logs.c - hivectl logs against a real hived whose agent's
 * handler (tests/worker/test_handler.c, "say") writes stderr lines:
 * the lines as TIME AGENT/N [TASK] TEXT, -n, --json one object per
 * line, -f printing a line written after it started (then Ctrl-C: exit
 * 0), an unknown agent.
 *
 * Waits are for log lines and for hivectl's output; deadlines are
 * failure guards only.
 */
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_run.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

TestSuite(ctl_logs, .fini = hp_cleanup, .timeout = 120);

/* hived with agent "talk" (test_handler in stream mode), ready. */
static struct hp *
start(const char *tag)
{
	struct hp *h = hp_new(tag);
	char agents[8192];
	size_t from = 0;

	snprintf(agents, sizeof(agents),
	    "[agent \"talk\"]\n"
	    "command = %s stream\n",
	    tu_build_path("tests/worker/test_handler"));
	hp_write_conf(h, tu_build_path("worker/hive-worker"), NULL, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=talk/1", "state=ready", NULL);
	return h;
}

/* Task id says text; returns once hived logged it. */
static void
say(struct hp *h, redisContext *c, const char *id, const char *text)
{
	char payload[256], needle[256], said[256];
	size_t from = hp_mark(h);

	snprintf(payload, sizeof(payload), "{\"op\": \"say\", \"text\": \"%s\"}",
	    text);
	hp_submit_direct(c, h->prefix, "talk", 1, id, payload);
	/* hived's line: agent=talk/1 task=ID trace=TRACE: text */
	snprintf(needle, sizeof(needle), "agent=talk/1 task=%s trace=", id);
	snprintf(said, sizeof(said), ": %s", text);
	hp_wait(h, &from, T_LONG, needle, said, NULL);
}

Test(ctl_logs, lines_n_and_json)
{
	struct hp *h = start("ctllogs");
	redisContext *c = tu_redis_connect();
	struct ctl_run r = { 0 };
	char *line, *save;
	json_t *j;
	int n = 0;

	say(h, c, "t1", "hello there");
	say(h, c, "t2", "second line");
	cr_assert_eq(ctl_run_h(&r, h, "logs", "talk", NULL), 0);
	/* "2026-12-07T11:00:00.123Z talk/1 [t1] hello there" */
	cr_assert_eq(strlen(r.out) > 25 ? r.out[10] : 0, 'T', "%s", r.out);
	cr_assert_not_null(strstr(r.out, "Z talk/1 [t1] hello there\n"), "%s",
	    r.out);
	cr_assert_not_null(strstr(r.out, "Z talk/1 [t2] second line\n"));
	cr_assert(strstr(r.out, "hello") < strstr(r.out, "second"),
	    "oldest first");

	cr_assert_eq(ctl_run_h(&r, h, "logs", "talk/1", "-n", "1", NULL), 0);
	cr_assert_null(strstr(r.out, "hello there"), "-n 1: %s", r.out);
	cr_assert_not_null(strstr(r.out, "[t2] second line"));

	cr_assert_eq(ctl_run_h(&r, h, "--json", "logs", "talk", NULL), 0);
	for (line = strtok_r(r.out, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save), n++) {
		cr_assert_not_null(j = json_loads(line, 0, NULL), "%s", line);
		cr_assert_str_eq(json_string_value(json_object_get(j, "agent")),
		    "talk");
		cr_assert_eq(json_integer_value(json_object_get(j, "instance")),
		    1);
		cr_assert_str_eq(json_string_value(json_object_get(j, "task")),
		    n == 0 ? "t1" : "t2");
		json_decref(j);
	}
	cr_assert_eq(n, 2, "one object per line");

	cr_assert_eq(ctl_run_h(&r, h, "logs", "nobody", NULL), 1);
	cr_assert_not_null(strstr(r.err, "not_found"), "%s", r.err);
	cr_assert_eq(ctl_run_h(&r, h, "logs", "talk/x", NULL), 2);
	cr_assert_eq(ctl_run_h(&r, h, "logs", "talk", "-n", "0", NULL), 2);
	ctl_run_free(&r);
	redisFree(c);
}

/* Read hivectl's stdout until it holds want (reading hived's log too). */
static void
read_until(struct hp *h, int fd, char *buf, size_t len, size_t *have,
    const char *want)
{
	long long end = tu_now_ms() + T_LONG;

	while (strstr(buf, want) == NULL) {
		struct pollfd p[2] = { { fd, POLLIN, 0 }, { h->logfd, POLLIN, 0 } };
		ssize_t n;

		cr_assert(tu_now_ms() < end, "hivectl logs -f never printed "
		    "\"%s\": %s", want, buf);
		if (poll(p, 2, 200) <= 0)
			continue;
		if (p[1].revents)
			hp_pump(h, 0);
		if (!p[0].revents)
			continue;
		n = read(fd, buf + *have, len - *have - 1);
		cr_assert(n > 0, "hivectl logs -f ended: %s", buf);
		*have += (size_t)n;
		buf[*have] = '\0';
	}
}

Test(ctl_logs, follow_prints_a_new_line_and_ends_on_ctrl_c)
{
	struct hp *h = start("ctlfollow");
	redisContext *c = tu_redis_connect();
	char url[64], tok[600], buf[8192] = "";
	size_t have = 0;
	int po[2], st;
	pid_t pid;

	say(h, c, "t1", "before");
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", h->port);
	snprintf(tok, sizeof(tok), "%s/token", h->dir);
	cr_assert_eq(pipe2(po, O_CLOEXEC), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		const char *argv[] = { tu_build_path("ctl/hivectl"), "--url", url,
		    "--token-file", tok, "logs", "talk", "-f", NULL };

		dup2(po[1], 1);
		tu_execv(argv);
	}
	close(po[1]);
	read_until(h, po[0], buf, sizeof(buf), &have, "[t1] before\n");
	say(h, c, "t2", "written after it started");
	read_until(h, po[0], buf, sizeof(buf), &have,
	    "talk/1 [t2] written after it started\n");
	cr_assert_null(strstr(strstr(buf, "[t1] before\n") + 1, "[t1] before"),
	    "the line before is printed once: %s", buf);
	kill(pid, SIGINT);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "Ctrl-C: exit 0, not %#x", st);
	close(po[0]);
	redisFree(c);
}
