/*
 * test_usage.c - usage and trace context through hived: POST /tasks and
 * POST /workflows give (or keep, or refuse) a traceparent; a workflow's
 * tasks share its trace id; GET /usage sums, by agent, capability and
 * workflow, exactly what the results of tasks with known usage said;
 * GET /tasks/ID and /workflows/ID show trace_id and usage; /metrics'
 * usage counters equal the same sums.  Real hived, workers, Redis and
 * PostgreSQL; waits are on the record and the log, never on time.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 60000        /* a failure guard, never a timing */
#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP "00-" TRACE "-00f067aa0ba902b7-01"

TestSuite(usage, .fini = hp_cleanup, .timeout = 120);

static char ci[512];

static long
scalar(const char *q)
{
	PGconn *c = PQconnectdb(ci);
	PGresult *res;
	long v;

	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	res = PQexec(c, q);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", q,
	    PQresultErrorMessage(res));
	v = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) ?
	    atol(PQgetvalue(res, 0, 0)) : -1;
	PQclear(res);
	PQfinish(c);
	return v;
}

static void
wait_sql(struct hp *h, const char *q, long want)
{
	long long end = tu_now_ms() + T_LONG;
	long got = -1;

	while (tu_now_ms() < end) {
		if ((got = scalar(q)) == want)
			return;
		hp_pump(h, 50);
	}
	cr_assert_fail("%s: %ld, want %ld", q, got, want);
}

/* hived with the record and two agents: ua (capability alpha) and ub
 * (beta), both usage_handler.py. */
static struct hp *
start(const char *tag)
{
	struct hp *h = hp_new(tag);
	char db[64], extra[1024], agents[1024];
	size_t from = 0, from2 = 0;

	tu_pg_fresh_db(tag, db, sizeof(db), ci, sizeof(ci));
	snprintf(extra, sizeof(extra), "postgres = %s\n", ci);
	snprintf(agents, sizeof(agents),
	    "[agent \"ua\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/usage_handler.py\n"
	    "capabilities = alpha\n"
	    "[agent \"ub\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/usage_handler.py\n"
	    "capabilities = beta\n", getenv("HIVE_SOURCE_DIR"),
	    getenv("HIVE_SOURCE_DIR"));
	hp_write_conf(h, tu_build_path("worker/hive-worker"), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=ua/1", "state=ready", NULL);
	hp_wait(h, &from2, T_LONG, "agent=ub/1", "state=ready", NULL);
	return h;
}

static json_t *
req(struct hp *h, const char *method, const char *path, const char *body,
    int want)
{
	int code = 0;
	json_t *j = body != NULL ? hp_http_body(h, method, path, HP_TOKEN,
	    body, &code) : hp_http(h, method, path, HP_TOKEN, &code);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	cr_assert_eq(code, want, "%s %s: %d, want %d: %s", method, path, code,
	    want, s ? s : "(no JSON)");
	free(s);
	cr_assert_not_null(j, "%s %s: no JSON", method, path);
	return j;
}

static const char *
str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	cr_assert_not_null(s, "%s is not a string", k);
	return s;
}

static long long
num(json_t *o, const char *k)
{
	cr_assert(json_is_integer(json_object_get(o, k)), "%s: no integer", k);
	return json_integer_value(json_object_get(o, k));
}

static double
real(json_t *o, const char *k)
{
	cr_assert(json_is_number(json_object_get(o, k)), "%s: no number", k);
	return json_number_value(json_object_get(o, k));
}

/* GET /metrics as text (to free). */
static char *
scrape(struct hp *h)
{
	struct sockaddr_in sa;
	char rq[256], *resp = NULL, *body;
	size_t rlen = 0;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(s >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)h->port);
	cr_assert(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	    "connect: %s", strerror(errno));
	snprintf(rq, sizeof(rq), "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1"
	    "\r\nConnection: close\r\n\r\n");
	cr_assert(write(s, rq, strlen(rq)) == (ssize_t)strlen(rq));
	for (;;) {
		struct pollfd p[2] = { { s, POLLIN, 0 }, { h->logfd, POLLIN, 0 } };
		char buf[16384];
		ssize_t n;

		if (poll(p, 2, 200) <= 0)
			continue;
		if (p[1].revents)
			hp_pump(h, 0);
		if (!p[0].revents)
			continue;
		if ((n = read(s, buf, sizeof(buf))) <= 0)
			break;
		cr_assert_not_null(resp = realloc(resp, rlen + (size_t)n + 1));
		memcpy(resp + rlen, buf, (size_t)n);
		rlen += (size_t)n;
		resp[rlen] = '\0';
	}
	close(s);
	cr_assert_not_null(resp);
	cr_assert_not_null(body = strstr(resp, "\r\n\r\n"));
	body = strdup(body + 4);
	free(resp);
	return body;
}

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

/* The tasks: cap, input, output, cost (binary fractions: sums exact). */
static const struct {
	const char *cap;
	long long in, out;
	double cost;
} tasks[] = {
	{ "alpha", 100, 10, 0.25 },
	{ "alpha", 200, 20, 0.5 },
	{ "alpha", 300, 30, 0.125 },
	{ "beta", 1000, 1, 2 },
	{ "beta", 2000, 2, 0.0625 },
};
#define NTASKS (sizeof(tasks) / sizeof(tasks[0]))

/* The row of key in a /usage answer; it has the sums given. */
static void
usage_row(json_t *j, const char *key, long long n, long long in,
    long long out, double cost)
{
	json_t *rows = json_object_get(j, "rows"), *r;
	size_t i;

	json_array_foreach(rows, i, r)
		if (strcmp(str(r, "key"), key) == 0) {
			cr_assert_eq(num(r, "tasks"), n, "%s tasks", key);
			cr_assert_eq(num(r, "input_tokens"), in, "%s in", key);
			cr_assert_eq(num(r, "output_tokens"), out, "%s out",
			    key);
			cr_assert_eq(real(r, "cost"), cost, "%s cost", key);
			return;
		}
	cr_assert_fail("no row %s", key);
}

/* hivectl usage prints the same rows: a table, and --json. */
static void
hivectl_usage(struct hp *h, double beta_cost)
{
	char cmd[1024], line[512], want[128];
	FILE *f;
	int found = 0, n = 0;
	json_t *j;

	snprintf(cmd, sizeof(cmd), "%s --url http://127.0.0.1:%u usage --by "
	    "capability", tu_build_path("ctl/hivectl"), h->port);
	cr_assert_not_null(f = popen(cmd, "r"));
	snprintf(want, sizeof(want), "%g", beta_cost);
	while (fgets(line, sizeof(line), f) != NULL) {
		n++;
		if (n == 1)
			cr_assert(strncmp(line, "KEY", 3) == 0, "%s", line);
		if (strncmp(line, "beta ", 5) == 0 && strstr(line, " 3000 ") &&
		    strstr(line, want))
			found = 1;
	}
	cr_assert_eq(pclose(f), 0, "%s", cmd);
	cr_assert_eq(n, 3, "a header and two rows");
	cr_assert(found, "no row beta 2 3000 3 %s", want);
	snprintf(cmd, sizeof(cmd), "%s --url http://127.0.0.1:%u usage --by "
	    "workflow --json", tu_build_path("ctl/hivectl"), h->port);
	cr_assert_not_null(f = popen(cmd, "r"));
	j = json_loadf(f, 0, NULL);
	cr_assert_eq(pclose(f), 0, "%s", cmd);
	cr_assert_not_null(j, "%s: no JSON", cmd);
	usage_row(j, "wf", 1, 7, 3, 1.5);
	json_decref(j);
	/* hivectl task shows a task's trace id and usage */
	snprintf(cmd, sizeof(cmd), "%s --url http://127.0.0.1:%u task t0",
	    tu_build_path("ctl/hivectl"), h->port);
	cr_assert_not_null(f = popen(cmd, "r"));
	found = 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if ((strncmp(line, "trace_id ", 9) == 0 && strstr(line, TRACE)) ||
		    (strncmp(line, "usage ", 6) == 0 &&
		    strstr(line, "\"input_tokens\":100")))
			found++;
	cr_assert_eq(pclose(f), 0, "%s", cmd);
	cr_assert_eq(found, 2, "%s: no trace_id or usage line", cmd);
}

Test(usage, sums_traces_and_metrics)
{
	struct hp *h = start("usage");
	json_t *j, *o, *u;
	char body[512], *m;
	const char *ctp;
	char wtp[HIVE_TRACEPARENT_LEN + 1];
	long long in[2] = { 0 }, out[2] = { 0 };
	double cost[2] = { 0 };

	for (size_t i = 0; i < NTASKS; i++) {
		int b = strcmp(tasks[i].cap, "beta") == 0;

		snprintf(body, sizeof(body), "{\"id\": \"t%zu\", \"capability\": "
		    "\"%s\", \"payload\": {\"usage\": {\"input_tokens\": %lld, "
		    "\"output_tokens\": %lld, \"cost\": %g, \"model\": \"m\"}}%s}",
		    i, tasks[i].cap, tasks[i].in, tasks[i].out, tasks[i].cost,
		    i == 0 ? ", \"traceparent\": \"" TP "\"" : "");
		j = req(h, "POST", "/tasks", body, 201);
		cr_assert_eq(proto_valid_traceparent(str(j, "traceparent"),
		    strlen(str(j, "traceparent"))), 0);
		if (i == 0)
			cr_assert_str_eq(str(j, "traceparent"), TP);
		json_decref(j);
		in[b] += tasks[i].in;
		out[b] += tasks[i].out;
		cost[b] += tasks[i].cost;
	}
	/* a workflow of two alpha tasks; one reports usage */
	j = req(h, "POST", "/workflows", "{\"id\": \"wf\", \"tasks\": ["
	    "{\"id\": \"wa\", \"capability\": \"alpha\", \"payload\": "
	    "{\"usage\": {\"input_tokens\": 7, \"output_tokens\": 3, "
	    "\"cost\": 1.5}}}, {\"id\": \"wb\", \"capability\": \"alpha\", "
	    "\"depends_on\": [\"wa\"]}]}", 202);
	snprintf(wtp, sizeof(wtp), "%s", str(j, "traceparent"));
	cr_assert_eq(proto_valid_traceparent(wtp, strlen(wtp)), 0);
	snprintf(body, sizeof(body), "%.32s", PROTO_TRACE_ID(wtp));
	json_decref(j);
	in[0] += 7;
	out[0] += 3;
	cost[0] += 1.5;
	wait_sql(h, "SELECT count(*) FROM tasks WHERE state = 'completed'",
	    NTASKS + 2);

	/* trace ids: the one given; the workflow's on both its tasks, each
	 * with a span id of its own (the handler's view of it) */
	j = req(h, "GET", "/tasks/t0", NULL, 200);
	o = json_object_get(j, "task");
	cr_assert_str_eq(str(o, "trace_id"), TRACE);
	u = json_object_get(o, "usage");
	cr_assert_eq(num(u, "input_tokens"), 100);
	cr_assert_eq(num(u, "output_tokens"), 10);
	cr_assert_eq(real(u, "cost"), 0.25);
	cr_assert_str_eq(str(u, "model"), "m");
	cr_assert_str_eq(str(json_object_get(o, "result"), "traceparent"), TP);
	json_decref(j);
	j = req(h, "GET", "/tasks/wa", NULL, 200);
	o = json_object_get(j, "task");
	cr_assert_str_eq(str(o, "trace_id"), body);
	ctp = str(json_object_get(o, "result"), "traceparent");
	cr_assert(strncmp(PROTO_TRACE_ID(ctp), body, 32) == 0, "%s", ctp);
	cr_assert(strncmp(ctp + 36, wtp + 36, 16) != 0, "child's span id is "
	    "the workflow's: %s", ctp);
	json_decref(j);
	j = req(h, "GET", "/tasks/wb", NULL, 200);
	o = json_object_get(j, "task");
	cr_assert_str_eq(str(o, "trace_id"), body);
	cr_assert(json_is_null(json_object_get(o, "usage")));
	json_decref(j);
	j = req(h, "GET", "/workflows/wf", NULL, 200);
	o = json_object_get(j, "workflow");
	cr_assert_str_eq(str(o, "trace_id"), body);
	u = json_object_get(o, "usage");
	cr_assert_eq(num(u, "tasks"), 1);
	cr_assert_eq(num(u, "input_tokens"), 7);
	cr_assert_eq(num(u, "output_tokens"), 3);
	cr_assert_eq(real(u, "cost"), 1.5);
	json_decref(j);

	/* GET /usage: the sums of what the results said */
	j = req(h, "GET", "/usage", NULL, 200);
	cr_assert_str_eq(str(j, "by"), "agent");
	cr_assert_eq(json_array_size(json_object_get(j, "rows")), 2);
	usage_row(j, "ua", 4, in[0], out[0], cost[0]);
	usage_row(j, "ub", 2, in[1], out[1], cost[1]);
	json_decref(j);
	j = req(h, "GET", "/usage?by=capability", NULL, 200);
	usage_row(j, "alpha", 4, in[0], out[0], cost[0]);
	usage_row(j, "beta", 2, in[1], out[1], cost[1]);
	json_decref(j);
	j = req(h, "GET", "/usage?by=workflow", NULL, 200);
	cr_assert_eq(json_array_size(json_object_get(j, "rows")), 1);
	usage_row(j, "wf", 1, 7, 3, 1.5);
	json_decref(j);
	j = req(h, "GET", "/usage?by=agent&limit=1", NULL, 200);
	cr_assert_eq(json_array_size(json_object_get(j, "rows")), 1);
	cr_assert_str_eq(str(json_array_get(json_object_get(j, "rows"), 0),
	    "key"), cost[0] > cost[1] ? "ua" : "ub");
	json_decref(j);
	j = req(h, "GET", "/usage?since=2999-01-01T00:00:00Z", NULL, 200);
	cr_assert_eq(json_array_size(json_object_get(j, "rows")), 0);
	json_decref(j);
	json_decref(req(h, "GET", "/usage?by=host", NULL, 400));

	hivectl_usage(h, cost[1]);

	/* /metrics: the same sums per capability and agent */
	m = scrape(h);
	cr_assert_eq(sample(m, "hive_usage_input_tokens_total{capability="
	    "\"alpha\",agent=\"ua\"}"), (double)in[0], "%s", m);
	cr_assert_eq(sample(m, "hive_usage_output_tokens_total{capability="
	    "\"alpha\",agent=\"ua\"}"), (double)out[0]);
	cr_assert_eq(sample(m, "hive_usage_cost_total{capability="
	    "\"alpha\",agent=\"ua\"}"), cost[0]);
	cr_assert_eq(sample(m, "hive_usage_input_tokens_total{capability="
	    "\"beta\",agent=\"ub\"}"), (double)in[1]);
	cr_assert_eq(sample(m, "hive_usage_cost_total{capability="
	    "\"beta\",agent=\"ub\"}"), cost[1]);
	free(m);
	hp_signal(h, SIGTERM);
	cr_assert_eq(hp_wait_exit(h, T_LONG) & 0xffff, 0);
}

/* A malformed traceparent is a 400 naming it, and nothing is queued. */
Test(usage, bad_traceparent_is_400)
{
	struct hp *h = start("usagebad");
	static const char *const bad[] = {
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
	};
	char body[256];
	json_t *j;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(body, sizeof(body), "{\"capability\": \"alpha\", "
		    "\"traceparent\": \"%s\"}", bad[i]);
		j = req(h, "POST", "/tasks", body, 400);
		cr_assert(strstr(str(json_object_get(j, "error"), "message"),
		    "traceparent") != NULL);
		json_decref(j);
	}
	j = req(h, "POST", "/tasks", "{\"capability\": \"alpha\", "
	    "\"traceparent\": 5}", 400);
	json_decref(j);
	j = req(h, "POST", "/workflows", "{\"traceparent\": \"x\", \"tasks\": "
	    "[{\"id\": \"a\", \"capability\": \"alpha\"}]}", 400);
	json_decref(j);
	cr_assert_eq(scalar("SELECT count(*) FROM tasks"), 0);
	hp_signal(h, SIGTERM);
	cr_assert_eq(hp_wait_exit(h, T_LONG) & 0xffff, 0);
}
