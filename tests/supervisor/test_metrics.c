/*
 * test_metrics.c - GET /metrics and GET /queues (supervisor/metrics.c,
 * qstat.c, record/tstats.c) against a real hived, hive-worker, Redis and
 * PostgreSQL: counters that move as tasks flow, a dead letter counted,
 * a queue filled with no worker seen in /queues and /metrics, label
 * values escaped, and every scrape clean under `promtool check metrics`
 * (skipped, saying so, only where promtool is not installed).
 *
 * Waits are for events: log lines, or a scrape polled (the log read
 * meanwhile) until it shows what is awaited, with a deadline as the
 * failure guard.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

TestSuite(metrics, .fini = hp_cleanup, .timeout = 120);

static const char *
real(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s", tu_build_path("worker/hive-worker"));
	return path;
}

/* GET path: the body (to free), the status and the Content-Type. */
static char *
http_get(struct hp *h, const char *path, int *code, char *ctype, size_t clen)
{
	struct sockaddr_in sa;
	char req[512], *resp = NULL, *body, *ct;
	size_t rlen = 0, rcap = 0;
	long long end = tu_now_ms() + 10000;
	int s;

	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(s >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)h->port);
	cr_assert(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	    "connect: %s", strerror(errno));
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n\r\n", path);
	cr_assert(write(s, req, strlen(req)) == (ssize_t)strlen(req));
	for (;;) {
		struct pollfd p[2] = { { s, POLLIN, 0 }, { h->logfd, POLLIN, 0 } };
		char buf[16384];
		ssize_t n;

		cr_assert(tu_now_ms() < end, "no answer to GET %s", path);
		if (poll(p, 2, 200) <= 0)
			continue;
		if (p[1].revents)
			hp_pump(h, 0);
		if (!p[0].revents)
			continue;
		if ((n = read(s, buf, sizeof(buf))) <= 0)
			break;
		if (rlen + (size_t)n + 1 > rcap) {
			rcap = (rlen + (size_t)n + 1) * 2;
			cr_assert_not_null(resp = realloc(resp, rcap));
		}
		memcpy(resp + rlen, buf, (size_t)n);
		rlen += (size_t)n;
		resp[rlen] = '\0';
	}
	close(s);
	cr_assert_not_null(resp);
	cr_assert(sscanf(resp, "HTTP/1.%*d %d", code) == 1);
	cr_assert_not_null(body = strstr(resp, "\r\n\r\n"));
	*body = '\0';
	ctype[0] = '\0';
	if ((ct = strcasestr(resp, "\r\nContent-Type: ")) != NULL)
		snprintf(ctype, clen, "%.*s", (int)strcspn(ct + 16, "\r"), ct + 16);
	body = strdup(body + 4);
	free(resp);
	return body;
}

static char *
scrape(struct hp *h)
{
	char ctype[128];
	int code;
	char *t = http_get(h, "/metrics", &code, ctype, sizeof(ctype));

	cr_assert_eq(code, 200, "GET /metrics: %d %s", code, t);
	cr_assert_str_eq(ctype, "text/plain; version=0.0.4; charset=utf-8");
	return t;
}

/* The value of the sample "series" (name and labels as rendered), -1
 * when the scrape has none. */
static double
sample(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p != NULL && *p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	}
	return -1;
}

/* Scrape until series is at least want; the last scrape is returned. */
static char *
wait_sample(struct hp *h, const char *series, double want)
{
	long long end = tu_now_ms() + T_LONG;
	char *t = NULL;

	for (;;) {
		free(t);
		t = scrape(h);
		if (sample(t, series) >= want)
			return t;
		if (tu_now_ms() > end) {
			fprintf(stderr, "last scrape:\n%s\nhived's log, the end:\n%s\n",
			    t, h->len > 4000 ? h->log + h->len - 4000 : h->log);
			cr_assert_fail("%s: %g, want %g", series, sample(t, series),
			    want);
		}
		hp_pump(h, 100);
	}
}

/* promtool check metrics on text: its complaints fail the test. */
static void
promtool(const char *text)
{
	char path[] = "/tmp/hive-metrics-XXXXXX", cmd[256], out[4096];
	FILE *f;
	size_t n;
	int fd, st;

	if (access("/usr/bin/promtool", X_OK) != 0 &&
	    system("command -v promtool >/dev/null 2>&1") != 0) {
		fprintf(stderr, "SKIP promtool check metrics: promtool is not "
		    "installed (Debian package prometheus)\n");
		return;
	}
	cr_assert((fd = mkstemp(path)) >= 0);
	cr_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
	cr_assert_not_null(f = popen(cmd, "r"));
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	st = pclose(f);
	unlink(path);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0 && n == 0,
	    "promtool check metrics: status 0x%x:\n%s\non:\n%s", st, out, text);
}

static void
submit(redisContext *c, const char *key, const char *id)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;

	msgpack_sbuffer_init(&sb);
	memset(&t, 0, sizeof(t));
	t.id = HIVE_STR(id);
	t.attempt = 1;
	t.payload.type = MSGPACK_OBJECT_NIL;
	t.parents.type = MSGPACK_OBJECT_NIL;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	tu_xadd(c, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/* A task whose payload is the JSON text payload. */
static void
submit_json(redisContext *c, const char *key, const char *id,
    const char *payload)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_loads(payload, 0, NULL);

	msgpack_zone_init(&z, 1024);
	msgpack_sbuffer_init(&sb);
	memset(&t, 0, sizeof(t));
	t.id = HIVE_STR(id);
	t.attempt = 1;
	t.parents.type = MSGPACK_OBJECT_NIL;
	cr_assert_eq(proto_json_to_obj(j, &z, &t.payload, &err), 0);
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	tu_xadd(c, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(j);
}

static void
stop_ok(struct hp *h)
{
	int st;

	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}

static void
agent_conf(char *buf, size_t len, const char *name, const char *cap,
    const char *extra)
{
	snprintf(buf, len,
	    "[agent \"%s\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n"
	    "capabilities = %s\n"
	    "%s\n", name, getenv("HIVE_SOURCE_DIR"), cap, extra ? extra : "");
}

#define N_TASKS 40

/*
 * Tasks flow through one worker: submitted, started, completed reach N
 * for the capability and the agent, the histograms count them, a
 * malformed entry counts as dead; a scrape taken while they flow passes
 * promtool; GET /agents has the worker's RSS and uptime.
 */
Test(metrics, tasks_flow)
{
	struct hp *h = hp_new("met");
	char ci[512], db[64], agents[1024], extra[700], key[HIVE_KEY_MAX], id[32];
	redisContext *c = tu_redis_connect();
	size_t from = 0;
	char *t;
	json_t *a;

	tu_pg_fresh_db("met", db, sizeof(db), ci, sizeof(ci));
	agent_conf(agents, sizeof(agents), "counter", "work", NULL);
	snprintf(extra, sizeof(extra), "postgres = %s\n", ci);
	hp_write_conf(h, real(), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "state=ready", NULL);
	proto_key_queue(key, sizeof(key), h->prefix, "work", 1);
	for (int i = 0; i < N_TASKS; i++) {
		snprintf(id, sizeof(id), "m-%d", i);
		submit(c, key, id);
	}
	/* one malformed entry: the worker dead-letters it */
	freeReplyObject(redisCommand(c, "XADD %s * m %s", key, "not-msgpack"));

	/* while they flow */
	t = scrape(h);
	promtool(t);
	free(t);

	t = wait_sample(h, "hive_tasks_completed_total{capability=\"work\","
	    "agent=\"counter\"}", N_TASKS);
	free(t);
	t = wait_sample(h, "hive_tasks_dead_total{capability=\"work\","
	    "agent=\"counter\"}", 1);
	cr_assert_eq(sample(t, "hive_tasks_completed_total{capability=\"work\","
	    "agent=\"counter\"}"), N_TASKS);
	cr_assert_eq(sample(t, "hive_tasks_submitted_total{capability="
	    "\"work\"}"), N_TASKS);
	cr_assert_eq(sample(t, "hive_tasks_started_total{capability=\"work\","
	    "agent=\"counter\"}"), N_TASKS);
	cr_assert_eq(sample(t, "hive_tasks_failed_total{capability=\"work\","
	    "agent=\"counter\"}"), 0);
	cr_assert_eq(sample(t, "hive_task_run_seconds_count{capability="
	    "\"work\"}"), N_TASKS);
	cr_assert_eq(sample(t, "hive_task_run_seconds_bucket{capability="
	    "\"work\",le=\"+Inf\"}"), N_TASKS);
	cr_assert_eq(sample(t, "hive_task_queue_wait_seconds_count{capability="
	    "\"work\"}"), N_TASKS);
	cr_assert_eq(sample(t, "hive_redis_up"), 1);
	cr_assert_eq(sample(t, "hive_postgres_up"), 1);
	cr_assert_eq(sample(t, "hive_agent_instances{agent=\"counter\","
	    "state=\"failed\"}"), 0);
	cr_assert_eq(sample(t, "hive_agent_instances_configured{agent="
	    "\"counter\"}"), 1);
	cr_assert_eq(sample(t, "hive_worker_restarts_total{agent=\"counter\"}"),
	    0);
	cr_assert(sample(t, "hive_hived_rss_bytes") > 0);
	cr_assert(sample(t, "hive_heartbeat_age_seconds{agent=\"counter\","
	    "agent_instance=\"1\"}") >= 0);
	cr_assert(sample(t, "hive_recorder_lag_seconds") >= 0);
	cr_assert(sample(t, "hive_recorder_backlog") >= 0);
	cr_assert(strstr(t, "hive_build_info{version=\"") != NULL);
	promtool(t);
	free(t);
	t = wait_sample(h, "hive_dead_letters", 1);
	free(t);
	t = wait_sample(h, "hive_worker_rss_bytes{agent=\"counter\","
	    "agent_instance=\"1\"}", 1);
	free(t);
	a = hp_agent(h, "counter/1");
	cr_assert(json_integer_value(json_object_get(a, "rss_kb")) > 0);
	cr_assert(json_is_integer(json_object_get(a, "uptime_ms")));
	json_decref(a);
	stop_ok(h);
	redisFree(c);
}

static json_t *
queue_of(json_t *qs, const char *cap, int prio)
{
	json_t *q;
	size_t i;

	json_array_foreach(json_object_get(qs, "queues"), i, q)
		if (strcmp(json_string_value(json_object_get(q, "capability")),
		    cap) == 0 && json_integer_value(json_object_get(q,
		    "priority")) == prio)
			return q;
	return NULL;
}

/* GET /queues until cap's queue at prio has want in field. */
static json_t *
wait_queue(struct hp *h, const char *cap, int prio, const char *field,
    json_int_t want)
{
	long long end = tu_now_ms() + T_LONG;
	json_t *j = NULL, *q;
	int code;

	for (;;) {
		json_decref(j);
		j = hp_http(h, "GET", "/queues", NULL, &code);
		cr_assert_eq(code, 200);
		q = queue_of(j, cap, prio);
		if (q != NULL && json_integer_value(json_object_get(q, field)) ==
		    want && json_is_integer(json_object_get(q, field)))
			return j;
		cr_assert(tu_now_ms() < end, "queue %s/%d: %s never %lld: %s",
		    cap, prio, field, (long long)want, json_dumps(j, 0));
		hp_pump(h, 100);
	}
}

/*
 * A queue filled while its agent sleeps (no worker, no group): its
 * length and lag in /queues and /metrics, the oldest task's age; woken,
 * the worker takes them (lag and pending 0, no oldest); a task it runs
 * is pending and ages; a reload's new agent has its queues sampled.
 * Without PostgreSQL: no task counters, no hive_postgres_up, promtool
 * clean.
 */
Test(metrics, queue_filled_without_worker)
{
	struct hp *h = hp_new("metq");
	char agents[1024], key[HIVE_KEY_MAX], id[32], series[256];
	redisContext *c = tu_redis_connect();
	size_t from = 0;
	json_t *j, *q;
	char *t;

	agent_conf(agents, sizeof(agents), "idle", "backlog", "autostart = no");
	hp_write_conf(h, real(), NULL, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=idle/1", "state=sleeping", NULL);
	proto_key_queue(key, sizeof(key), h->prefix, "backlog", 2);
	for (int i = 0; i < 7; i++) {
		snprintf(id, sizeof(id), "q-%d", i);
		submit(c, key, id);
	}
	j = wait_queue(h, "backlog", 2, "length", 7);
	q = queue_of(j, "backlog", 2);
	cr_assert_str_eq(json_string_value(json_object_get(q, "stream")), key);
	cr_assert_eq(json_integer_value(json_object_get(q, "lag")), 7);
	cr_assert_eq(json_integer_value(json_object_get(q, "pending")), 0);
	cr_assert_eq(json_integer_value(json_object_get(q, "consumers")), 0);
	cr_assert(json_integer_value(json_object_get(q, "oldest_age_ms")) >= 0 &&
	    json_is_integer(json_object_get(q, "oldest_age_ms")));
	cr_assert(json_is_string(json_object_get(j, "at")));
	/* every configured queue: backlog and @idle, priorities 0..2 */
	cr_assert_eq(json_array_size(json_object_get(j, "queues")), 6);
	cr_assert_not_null(queue_of(j, "@idle", 0));
	cr_assert(json_is_null(json_object_get(queue_of(j, "backlog", 0),
	    "oldest_age_ms")));
	json_decref(j);

	t = scrape(h);
	snprintf(series, sizeof(series), "hive_queue_length{capability="
	    "\"backlog\",priority=\"2\"}");
	cr_assert_eq(sample(t, series), 7);
	cr_assert_eq(sample(t, "hive_queue_lag{capability=\"backlog\","
	    "priority=\"2\"}"), 7);
	cr_assert(sample(t, "hive_queue_oldest_age_seconds{capability="
	    "\"backlog\",priority=\"2\"}") >= 0);
	cr_assert_eq(sample(t, "hive_agent_instances{agent=\"idle\","
	    "state=\"sleeping\"}"), 1);
	cr_assert_eq(sample(t, "hive_postgres_up"), -1);
	cr_assert_null(strstr(t, "hive_tasks_submitted_total"));
	cr_assert_null(strstr(t, "hive_recorder_lag_seconds"));
	promtool(t);
	free(t);

	cr_assert_eq(hp_post(h, "/agents/idle/wake"), 200);
	j = wait_queue(h, "backlog", 2, "consumers", 1);
	json_decref(j);
	j = wait_queue(h, "backlog", 2, "pending", 0);
	json_decref(j);
	j = wait_queue(h, "backlog", 2, "lag", 0);
	q = queue_of(j, "backlog", 2);
	if (json_integer_value(json_object_get(q, "pending")) == 0)
		cr_assert(json_is_null(json_object_get(q, "oldest_age_ms")),
		    "%s", json_dumps(q, 0));
	json_decref(j);

	/* A task the worker holds (running) is queued for an operator: it
	 * ages, and is pending, not lag. */
	submit_json(c, key, "slow-1", "{\"sleep_ms\": 2500}");
	j = wait_queue(h, "backlog", 2, "pending", 1);
	q = queue_of(j, "backlog", 2);
	cr_assert(json_is_integer(json_object_get(q, "oldest_age_ms")), "%s",
	    json_dumps(q, 0));
	cr_assert_eq(json_integer_value(json_object_get(q, "lag")), 0);
	json_decref(j);

	/* A reload that adds an agent: its queues are sampled next. */
	agent_conf(agents, sizeof(agents), "idle", "backlog", "autostart = no");
	{
		char more[1024], all[2048];
		agent_conf(more, sizeof(more), "other", "fresh", "autostart = no");
		snprintf(all, sizeof(all), "%s%s", agents, more);
		hp_write_conf(h, real(), NULL, all);
	}
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_LONG, "reload done", "added=1", NULL);
	j = wait_queue(h, "fresh", 0, "length", 0);
	cr_assert_not_null(queue_of(j, "@other", 2));
	cr_assert_eq(json_array_size(json_object_get(j, "queues")), 12);
	json_decref(j);
	stop_ok(h);
	redisFree(c);
}

/*
 * Names hived does not choose (a queue any client may write to, found
 * by the recorder's scan) are escaped in label values: quote, backslash,
 * newline, and bytes that are not UTF-8.
 */
Test(metrics, odd_names_escaped)
{
	struct hp *h = hp_new("metx");
	char ci[512], db[64], agents[1024], extra[700], key[HIVE_KEY_MAX];
	redisContext *c = tu_redis_connect();
	size_t from = 0;
	char *t;

	tu_pg_fresh_db("metx", db, sizeof(db), ci, sizeof(ci));
	agent_conf(agents, sizeof(agents), "counter", "work", NULL);
	snprintf(extra, sizeof(extra), "postgres = %s\n", ci);
	hp_write_conf(h, real(), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=counter/1", "state=ready", NULL);
	snprintf(key, sizeof(key), "%s:q:we\"ird\\na\nme\xff:1", h->prefix);
	submit(c, key, "odd-1");
	t = wait_sample(h, "hive_tasks_submitted_total{capability="
	    "\"we\\\"ird\\\\na\\nme\xef\xbf\xbd\"}", 1);
	promtool(t);
	free(t);
	stop_ok(h);
	redisFree(c);
}
