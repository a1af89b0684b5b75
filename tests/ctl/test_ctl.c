/*
 * test_ctl.c - hivectl's command line and its exit codes, against a
 * real hived (no PostgreSQL needed): usage errors exit 2, a closed port
 * or a hived that never answers exit 3, a wrong or missing token exit 4,
 * where the address and token come from (flags, environment, config),
 * status as a table and as JSON, actions, health.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_run.h"
#include "hive_version.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

TestSuite(ctl, .fini = hp_cleanup, .timeout = 120);

/* hived with agent "counter" (2 instances), both ready. */
static struct hp *
start(const char *tag)
{
	struct hp *h = hp_new(tag);
	char agents[1024];
	size_t from = 0;

	snprintf(agents, sizeof(agents),
	    "[agent \"counter\"]\n"
	    "command = /usr/bin/python3 %s/tests/ctl/ctl_handler.py\n"
	    "capabilities = work\n"
	    "instances = 2\n", getenv("HIVE_SOURCE_DIR"));
	hp_write_conf(h, tu_build_path("worker/hive-worker"), NULL, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "state=ready", NULL);
	hp_wait(h, &(size_t){ 0 }, T_LONG, "agent=counter/2", "state=ready",
	    NULL);
	return h;
}

/* A loopback socket bound, with the port, not listening (or listening,
 * never accepting: the kernel completes the handshake, nobody answers). */
static int
socket_on_port(unsigned *port, int listening)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(s >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(getsockname(s, (struct sockaddr *)&sa, &sl) == 0);
	*port = ntohs(sa.sin_port);
	if (listening)
		cr_assert(listen(s, 8) == 0);
	return s;
}

static void
assert_one_line_error(const struct ctl_run *r)
{
	cr_assert(strncmp(r->err, "hivectl: ", 9) == 0, "stderr: %s", r->err);
}

Test(ctl, usage_errors_exit_2)
{
	struct ctl_run r = { 0 };
	const char *url[] = { "HIVE_URL=http://127.0.0.1:1", NULL };

	cr_assert_eq(ctl_run(&r, NULL, url, NULL), 2);
	cr_assert(strstr(r.err, "no verb") != NULL);
	cr_assert_eq(ctl_run(&r, NULL, url, "frobnicate", NULL), 2);
	cr_assert(strstr(r.err, "unknown verb 'frobnicate'") != NULL);
	cr_assert_eq(ctl_run(&r, NULL, url, "restart", NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "restart", "a", "b", NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "status", "--bogus", NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "status", "--wait", NULL), 2);
	cr_assert(strstr(r.err, "status takes no --wait") != NULL);
	cr_assert_eq(ctl_run(&r, NULL, url, "restart", "echo/x", NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "restart", "echo/0", NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "submit", "work", "{bad", NULL), 2);
	cr_assert(strstr(r.err, "not JSON") != NULL, "%s", r.err);
	ctl_run_stdin("{\"from\": stdin");
	cr_assert_eq(ctl_run(&r, NULL, url, "submit", "work", "-", NULL), 2);
	cr_assert(strstr(r.err, "not JSON") != NULL, "%s", r.err);
	cr_assert_eq(ctl_run(&r, NULL, url, "submit", "work", "1",
	    "--priority", "7", NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "submit", "work", "1",
	    "--timeout", "5s", NULL), 2);
	cr_assert(strstr(r.err, "--timeout needs --wait") != NULL);
	cr_assert_eq(ctl_run(&r, NULL, url, "submit", "work", "1", "--agent",
	    "counter", NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "wait", "t1", "--timeout", "soon",
	    NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "tasks", "--limit", "0", NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "dead", "retry", NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "dead", "retry", "1-0", "--all",
	    NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "dead", "bury", NULL), 2);
	cr_assert_eq(ctl_run(&r, NULL, url, "status", "--url", NULL), 2);
	cr_assert(strstr(r.err, "needs a value") != NULL);
	cr_assert_eq(ctl_run(&r, NULL, url, "status", "--config",
	    "/nonexistent/hive.conf", NULL), 2);
	assert_one_line_error(&r);
	ctl_run_free(&r);
}

Test(ctl, help_and_version)
{
	struct ctl_run r = { 0 };
	const char *verbs[] = { "status", "start", "stop", "restart", "sleep",
	    "wake", "reset", "drain", "reload", "stop-all", "start-all",
	    "health", "submit", "wait", "task", "tasks", "workflow",
	    "workflows", "queues", "dead", NULL };
	char want[64];

	cr_assert_eq(ctl_run(&r, NULL, NULL, "--version", NULL), 0);
	cr_assert_str_eq(r.out, "hivectl " HIVE_VERSION "\n");
	cr_assert_eq(ctl_run(&r, NULL, NULL, "--help", NULL), 0);
	for (int i = 0; verbs[i] != NULL; i++) {
		snprintf(want, sizeof(want), "\n  %s", verbs[i]);
		cr_assert(strstr(r.out, want) != NULL, "--help lacks %s",
		    verbs[i]);
	}
	for (int i = 0; verbs[i] != NULL; i++) {
		snprintf(want, sizeof(want), "usage: hivectl %s", verbs[i]);
		cr_assert_eq(ctl_run(&r, NULL, NULL, verbs[i], "--help", NULL), 0);
		cr_assert(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
		cr_assert_eq(ctl_run(&r, NULL, NULL, "help", verbs[i], NULL), 0);
		cr_assert(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
	}
	ctl_run_free(&r);
}

Test(ctl, unreachable_exit_3)
{
	struct ctl_run r = { 0 };
	unsigned port;
	char url[64];
	int s = socket_on_port(&port, 0);   /* bound, closed: refused */

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", port);
	cr_assert_eq(ctl_run(&r, NULL, NULL, "--url", url, "status", NULL), 3);
	assert_one_line_error(&r);
	cr_assert(strstr(r.err, "cannot reach hived") != NULL, "%s", r.err);
	cr_assert_str_eq(r.out, "");
	cr_assert_eq(ctl_run(&r, NULL, NULL, "--url", url, "restart", "x",
	    "--json", NULL), 3);
	cr_assert_str_eq(r.out, "");
	close(s);
	ctl_run_free(&r);
}

/* A hived that accepts and never answers: exit 3 at the bound. */
Test(ctl, hung_hived_exit_3)
{
	struct ctl_run r = { 0 };
	unsigned port;
	char url[64];
	int s = socket_on_port(&port, 1);

	snprintf(url, sizeof(url), "127.0.0.1:%u", port);
	cr_assert_eq(ctl_run(&r, NULL, NULL, "--url", url, "--http-timeout",
	    "300ms", "health", NULL), 3);
	cr_assert(strstr(r.err, "no answer from hived") != NULL, "%s", r.err);
	close(s);
	ctl_run_free(&r);
}

Test(ctl, status_table_and_json)
{
	struct hp *h = start("ctlst");
	struct ctl_run r = { 0 };
	json_t *j, *a;
	const char *l1, *l2;
	size_t i, n = 0;

	cr_assert_eq(ctl_run_h(&r, h, "status", NULL), 0);
	cr_assert(strncmp(r.out, "AGENT ", 6) == 0, "%s", r.out);
	cr_assert(strstr(r.out, "STATE") && strstr(r.out, "PID") &&
	    strstr(r.out, "UPTIME") && strstr(r.out, "RESTARTS") &&
	    strstr(r.out, "MEMORY") && strstr(r.out, "TASK"));
	cr_assert((l1 = strstr(r.out, "\ncounter/1 ")) != NULL, "%s", r.out);
	cr_assert((l2 = strstr(r.out, "\ncounter/2 ")) != NULL, "%s", r.out);
	/* Aligned: the state starts at the column of STATE. */
	cr_assert_eq(strstr(l1, "ready") - l1, strstr(r.out, "STATE") -
	    r.out + 1, "%s", r.out);
	cr_assert_eq(strstr(l2, "ready") - l2, strstr(l1, "ready") - l1);

	cr_assert_eq(ctl_run_h(&r, h, "status", "--json", NULL), 0);
	j = ctl_json(&r);
	json_array_foreach(json_object_get(j, "agents"), i, a) {
		cr_assert_str_eq(json_string_value(json_object_get(a, "name")),
		    "counter");
		cr_assert(json_integer_value(json_object_get(a, "pid")) > 0);
		n++;
	}
	cr_assert_eq(n, 2);
	json_decref(j);

	cr_assert_eq(ctl_run_h(&r, h, "status", "counter/2", "--json", NULL), 0);
	j = ctl_json(&r);
	cr_assert_eq(json_array_size(json_object_get(j, "agents")), 1);
	json_decref(j);
	cr_assert_eq(ctl_run_h(&r, h, "status", "nobody", NULL), 1);
	assert_one_line_error(&r);
	ctl_run_free(&r);
}

/* A task that runs shows in TASK, with how long it has run, once a
 * heartbeat named it. */
Test(ctl, status_shows_running_task)
{
	struct hp *h = start("ctltask");
	struct ctl_run r = { 0 };
	redisContext *c = tu_redis_connect();
	long long end = tu_now_ms() + T_LONG;
	const char *line;
	json_t *j;

	hp_submit_direct(c, h->prefix, "counter", 1, "slow-1",
	    "{\"sleep_ms\": 60000}");
	for (;;) {
		const char *task;

		cr_assert_eq(ctl_run_h(&r, h, "status", "counter/1", "--json",
		    NULL), 0);
		j = ctl_json(&r);
		task = json_string_value(json_object_get(json_array_get(
		    json_object_get(j, "agents"), 0), "task"));
		if (task != NULL && strcmp(task, "slow-1") == 0)
			break;
		json_decref(j);
		cr_assert(tu_now_ms() < end, "no heartbeat named slow-1");
		hp_pump(h, 100);
	}
	json_decref(j);
	cr_assert_eq(ctl_run_h(&r, h, "status", NULL), 0);
	cr_assert((line = strstr(r.out, "\ncounter/1 ")) != NULL, "%s", r.out);
	cr_assert(strstr(line, " slow-1 (") != NULL, "%s", r.out);
	redisFree(c);
	ctl_run_free(&r);
}

Test(ctl, restart_and_conflict)
{
	struct hp *h = start("ctlact");
	struct ctl_run r = { 0 };
	size_t from = hp_mark(h);
	pid_t before = hp_agent_pid(h, "counter/1");
	json_t *j;

	cr_assert_eq(ctl_run_h(&r, h, "restart", "counter/1", NULL), 0);
	cr_assert(strstr(r.out, "counter/1") != NULL, "%s", r.out);
	cr_assert(strstr(r.out, "counter/2") == NULL, "%s", r.out);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "state=ready", NULL);
	cr_assert_neq(hp_agent_pid(h, "counter/1"), before);

	from = hp_mark(h);
	cr_assert_eq(ctl_run_h(&r, h, "restart", "counter", "--json", NULL), 0);
	j = ctl_json(&r);
	cr_assert_str_eq(json_string_value(json_object_get(j, "action")),
	    "restart");
	cr_assert_eq(json_array_size(json_object_get(j, "instances")), 2);
	json_decref(j);
	hp_wait(h, &from, T_LONG, "agent=counter/", "state=ready", NULL);

	/* Waking a running instance applies to none: 409, exit 1. */
	cr_assert_eq(ctl_run_h(&r, h, "wake", "counter/2", NULL), 1);
	assert_one_line_error(&r);
	cr_assert(strstr(r.err, "(conflict)") != NULL, "%s", r.err);
	cr_assert_eq(ctl_run_h(&r, h, "restart", "nobody", NULL), 1);
	cr_assert(strstr(r.err, "(not_found)") != NULL, "%s", r.err);
	cr_assert_eq(ctl_run_h(&r, h, "restart", "counter/9", NULL), 1);
	ctl_run_free(&r);
}

Test(ctl, token_refused_exit_4)
{
	struct hp *h = start("ctltok");
	struct ctl_run r = { 0 };
	char url[64], bad[600];
	FILE *f;

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", h->port);
	snprintf(bad, sizeof(bad), "%s/bad-token", h->dir);
	cr_assert((f = fopen(bad, "w")) != NULL);
	fprintf(f, "not-the-token-at-all\n");
	fclose(f);
	cr_assert_eq(ctl_run(&r, h, NULL, "--url", url, "--token-file", bad,
	    "restart", "counter", NULL), 4);
	assert_one_line_error(&r);
	cr_assert(strstr(r.err, "(forbidden)") != NULL, "%s", r.err);
	/* No token at all: said why. */
	cr_assert_eq(ctl_run(&r, h, NULL, "--url", url, "--token-file",
	    "/nonexistent/token", "restart", "counter", NULL), 4);
	cr_assert(strstr(r.err, "(unauthorized)") != NULL, "%s", r.err);
	cr_assert(strstr(r.err, "/nonexistent/token") != NULL, "%s", r.err);
	/* Reads need none. */
	cr_assert_eq(ctl_run(&r, h, NULL, "--url", url, "--token-file",
	    "/nonexistent/token", "status", NULL), 0);
	ctl_run_free(&r);
}

/*
 * Where hived is: --url, then HIVE_URL, then the config's http (the rest
 * of the file is not hivectl's business); the token likewise.
 */
Test(ctl, address_and_token_lookup)
{
	struct hp *h = start("ctladdr");
	struct ctl_run r = { 0 };
	char good[96], wrong[96], tokenv[700], conf[700], envconf[800];
	unsigned closed;
	int s = socket_on_port(&closed, 0);
	const char *env_wrong[] = { wrong, NULL };
	const char *env_good[] = { good, tokenv, NULL };
	FILE *f;

	snprintf(good, sizeof(good), "HIVE_URL=http://127.0.0.1:%u", h->port);
	snprintf(wrong, sizeof(wrong), "HIVE_URL=127.0.0.1:%u", closed);
	snprintf(tokenv, sizeof(tokenv), "HIVE_TOKEN_FILE=%s/token", h->dir);

	/* The config alone: http and token_file of [hive]. */
	cr_assert_eq(ctl_run(&r, h, NULL, "--config", h->conf, "restart",
	    "counter/2", NULL), 0);
	/* HIVE_URL beats the config, --url beats HIVE_URL. */
	cr_assert_eq(ctl_run(&r, h, env_wrong, "--config", h->conf, "status",
	    NULL), 3);
	cr_assert_eq(ctl_run(&r, h, env_wrong, "--config", h->conf, "--url",
	    good + 9, "status", NULL), 0);
	/* The environment alone, config absent. */
	cr_assert_eq(ctl_run(&r, h, env_good, "--config", "/nonexistent",
	    "restart", "counter/2", NULL), 2);
	snprintf(conf, sizeof(conf), "%s/other.conf", h->dir);
	cr_assert((f = fopen(conf, "w")) != NULL);
	fprintf(f, "; not hived's: only http and token_file are read\n"
	    "[agent \"x\"]\nhttp = 127.0.0.1:1\n"
	    "[hive]\nredis = nowhere:1\nnonsense line\n"
	    "http = 127.0.0.1:%u\n"
	    "  \n[hive2]\ntoken_file = /nonexistent\n", closed);
	fclose(f);
	cr_assert_eq(ctl_run(&r, h, env_good, "--config", conf, "restart",
	    "counter/2", NULL), 0);
	cr_assert_eq(ctl_run(&r, h, NULL, "--config", conf, "status", NULL), 3);
	cr_assert(strstr(r.err, "cannot reach") != NULL, "%s", r.err);
	/* The API off (http empty): exit 3, said so. */
	cr_assert((f = fopen(conf, "w")) != NULL);
	fprintf(f, "[hive]\nhttp =\n");
	fclose(f);
	cr_assert_eq(ctl_run(&r, h, NULL, "--config", conf, "status", NULL), 3);
	cr_assert(strstr(r.err, "off") != NULL, "%s", r.err);
	/* A 0.0.0.0 bind is reached on loopback. */
	cr_assert((f = fopen(conf, "w")) != NULL);
	fprintf(f, "[hive]\nhttp = 0.0.0.0:%u\n", h->port);
	fclose(f);
	snprintf(envconf, sizeof(envconf), "%s", conf);
	cr_assert_eq(ctl_run(&r, h, NULL, "--config", envconf, "status", NULL),
	    0);
	/* A proxy in the environment is not used for a local hived. */
	snprintf(wrong, sizeof(wrong), "http_proxy=http://127.0.0.1:%u",
	    closed);
	cr_assert_eq(ctl_run(&r, h, env_wrong, "--url", good + 9, "status",
	    NULL), 0);
	close(s);
	ctl_run_free(&r);
}

Test(ctl, health)
{
	struct hp *h = start("ctlhealth");
	struct ctl_run r = { 0 };
	json_t *j;

	cr_assert_eq(ctl_run_h(&r, h, "health", NULL), 0);
	cr_assert(strncmp(r.out, "status ", 7) == 0 && strstr(r.out, " ok\n"),
	    "%s", r.out);
	cr_assert(strstr(r.out, "\nredis ") && strstr(r.out, " up, latency "),
	    "%s", r.out);
	cr_assert(strstr(r.out, "\npostgres ") && strstr(r.out, "not configured"),
	    "%s", r.out);
	cr_assert_eq(ctl_run_h(&r, h, "health", "--json", NULL), 0);
	j = ctl_json(&r);
	cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
	json_decref(j);
	ctl_run_free(&r);
}

/* What bash completes after words (the last one being completed). */
static void
complete(const char *words, char *out, size_t len)
{
	char cmd[4096];
	size_t n;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "bash -c 'source %s/ctl/hivectl.bash; "
	    "COMP_WORDS=(%s %s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "
	    "_hivectl; echo \"${COMPREPLY[*]}\"'", getenv("HIVE_SOURCE_DIR"),
	    tu_build_path("ctl/hivectl"), words);
	cr_assert((p = popen(cmd, "r")) != NULL);
	n = fread(out, 1, len - 1, p);
	out[n] = '\0';
	cr_assert_eq(pclose(p), 0, "%s", cmd);
}

/* Verbs, options, and the agents of the hived that HIVE_URL names. */
Test(ctl, bash_completion)
{
	struct hp *h = start("ctlcomp");
	char url[64], out[4096];

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", h->port);
	cr_assert_eq(setenv("HIVE_URL", url, 1), 0);
	complete("st", out, sizeof(out));
	cr_assert_str_eq(out, "status start stop stop-all start-all\n");
	complete("restart \"\"", out, sizeof(out));
	cr_assert_str_eq(out, "counter counter/1 counter/2\n");
	complete("--json stop counter/", out, sizeof(out));
	cr_assert_str_eq(out, "counter/1 counter/2\n");
	complete("submit --w", out, sizeof(out));
	cr_assert_str_eq(out, "--wait\n");
	complete("dead \"\"", out, sizeof(out));
	cr_assert_str_eq(out, "ls show retry\n");
	complete("tasks --state c", out, sizeof(out));
	cr_assert_str_eq(out, "completed\n");
	/* hived gone: no agent names, no error. */
	hp_cleanup();
	complete("restart \"\"", out, sizeof(out));
	cr_assert_str_eq(out, "\n");
}

/* A quarantined instance: hived answers degraded (503 with its health),
 * hivectl health says so and exits 1; status shows it failed. */
Test(ctl, health_degraded_exit_1)
{
	struct hp *h = hp_new("ctlsick");
	struct ctl_run r = { 0 };
	const char *line;
	json_t *j;

	hp_write_conf(h, tu_build_path("worker/hive-worker"), NULL,
	    "[agent \"bad\"]\ncommand = /bin/false\nrestart_limit = 2\n"
	    "restart_window = 60s\nbackoff = 20ms\nbackoff_max = 30ms\n");
	hp_start(h);
	hp_wait(h, &(size_t){ 0 }, T_LONG, "agent=bad/1", "state=failed", NULL);
	cr_assert_eq(ctl_run_h(&r, h, "health", NULL), 1);
	cr_assert(strstr(r.out, "degraded") != NULL, "%s", r.out);
	cr_assert((line = strstr(r.out, "\nquarantined ")) != NULL &&
	    strstr(line, " 1\n") != NULL, "%s", r.out);
	cr_assert_str_eq(r.err, "");
	cr_assert_eq(ctl_run_h(&r, h, "health", "--json", NULL), 1);
	j = ctl_json(&r);
	cr_assert_str_eq(json_string_value(json_object_get(j, "status")),
	    "degraded");
	json_decref(j);
	cr_assert_eq(ctl_run_h(&r, h, "status", NULL), 0);
	cr_assert((line = strstr(r.out, "\nbad/1 ")) != NULL &&
	    strstr(line, "failed") != NULL, "%s", r.out);
	ctl_run_free(&r);
}
