/*
 * test_live_events.c - GET /events and GET /stats (supervisor/events.c)
 * over the event streams of supervisor/sse.c, against a real hived:
 *
 *   - a SIGKILLed worker: its instance leaves ready on the kill, then is
 *     ready again, both seen on the stream (their latency printed;
 *     bench/ measures it);
 *   - Last-Event-ID (header or query) replays what was missed, nothing
 *     twice; an id outside the window gets `reset` first;
 *   - bad filters are a 400, HEAD a 405, past HTTP_SSE_MAX streams a
 *     503; a client that left is let go at once;
 *   - a client that never reads is dropped while GET /health keeps
 *     answering, and the dropped counter moves;
 *   - task events in order (queued, running, completed), dead letters
 *     added and retried, and GET /stats.
 *
 * Waits are for stream events, HTTP answers and log lines; the deadlines
 * are failure guards.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 20000
#define SSE_MAX 32                   /* supervisor/sse.h HTTP_SSE_MAX */

TestSuite(live_events, .fini = hp_cleanup, .timeout = 120);

/* ---- a small SSE client (HTTP/1.0: the body is the stream) ---- */

struct sc {
	int fd;
	int status;
	char buf[1 << 16];
	size_t len;
};

struct sev {
	char id[32];
	char event[32];
	char data[16384];
};

/* Connect from src (NULL: 127.0.0.1) and send the request; rcvbuf > 0:
 * the socket's receive buffer (a client that reads slowly). */
static void
sc_connect(struct sc *c, struct hp *h, const char *src, const char *path,
    const char *last_id, int rcvbuf, const char *method)
{
	struct sockaddr_in sa;
	char req[1024];
	int n;

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(c->fd >= 0);
	if (rcvbuf > 0)
		cr_assert(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf)) == 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (src != NULL) {
		cr_assert(inet_pton(AF_INET, src, &sa.sin_addr) == 1);
		cr_assert(bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
		    "bind %s: %s", src, strerror(errno));
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)h->port);
	cr_assert(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	    "connect: %s", strerror(errno));
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n"
	    "%s%s%s\r\n", method ? method : "GET", path,
	    last_id ? "Last-Event-ID: " : "", last_id ? last_id : "",
	    last_id ? "\r\n" : "");
	cr_assert(send(c->fd, req, (size_t)n, MSG_NOSIGNAL) == n);
}

/* Read into c->buf, waiting up to ms (pumping hived's log): bytes read,
 * 0 on a timeout, -1 at the end of the stream. */
static int
sc_fill(struct sc *c, struct hp *h, int ms)
{
	long long end = tu_now_ms() + ms;

	for (;;) {
		struct pollfd p[2] = { { c->fd, POLLIN, 0 },
		    { h->logfd, POLLIN, 0 } };
		long long left = end - tu_now_ms();
		ssize_t n;

		if (left <= 0)
			return 0;
		if (poll(p, h->logfd >= 0 ? 2 : 1, (int)left) <= 0)
			continue;
		if (p[1].revents)
			hp_pump(h, 0);
		if (!p[0].revents)
			continue;
		cr_assert(c->len < sizeof(c->buf) - 1, "stream buffer full");
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
		if (n <= 0)
			return -1;
		c->len += (size_t)n;
		c->buf[c->len] = '\0';
		return (int)n;
	}
}

/* Connect and read the status line and headers: the status. */
static int
sc_open(struct sc *c, struct hp *h, const char *src, const char *path,
    const char *last_id)
{
	char *end;

	sc_connect(c, h, src, path, last_id, 0, NULL);
	while ((end = strstr(c->buf, "\r\n\r\n")) == NULL)
		cr_assert(sc_fill(c, h, T_LONG) > 0, "no answer to GET %s", path);
	cr_assert(sscanf(c->buf, "HTTP/1.%*d %d", &c->status) == 1);
	if (c->status == 200)
		cr_assert(strstr(c->buf, "text/event-stream") != NULL, "%s",
		    c->buf);
	end += 4;
	c->len -= (size_t)(end - c->buf);
	memmove(c->buf, end, c->len + 1);
	return c->status;
}

static void
sc_close(struct sc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* The next event (comments skipped) within ms: 1, 0 on a timeout, -1
 * when the stream ended. */
static int
sc_next(struct sc *c, struct hp *h, struct sev *e, int ms)
{
	long long end = tu_now_ms() + ms;
	char *blk, *line, *save;

	for (;;) {
		while ((blk = strstr(c->buf, "\n\n")) == NULL) {
			long long left = end - tu_now_ms();
			int n = left > 0 ? sc_fill(c, h, (int)left) : 0;

			if (n <= 0)
				return n;
		}
		*blk = '\0';
		memset(e, 0, sizeof(*e));
		for (line = strtok_r(c->buf, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save)) {
			if (strncmp(line, "id: ", 4) == 0)
				snprintf(e->id, sizeof(e->id), "%s", line + 4);
			else if (strncmp(line, "event: ", 7) == 0)
				snprintf(e->event, sizeof(e->event), "%s",
				    line + 7);
			else if (strncmp(line, "data: ", 6) == 0)
				snprintf(e->data, sizeof(e->data), "%s",
				    line + 6);
		}
		c->len -= (size_t)(blk + 2 - c->buf);
		memmove(c->buf, blk + 2, c->len + 1);
		if (e->data[0] != '\0')
			return 1;
	}
}

/* The next event of type (others skipped), its data parsed. */
static json_t *
sc_expect(struct sc *c, struct hp *h, const char *type, struct sev *e)
{
	long long end = tu_now_ms() + T_LONG;
	json_t *j;

	for (;;) {
		int r = sc_next(c, h, e, (int)(end - tu_now_ms()));

		cr_assert_eq(r, 1, "no %s event (%s)", type, r == 0 ? "timeout" :
		    "the stream ended");
		if (strcmp(e->event, type) != 0)
			continue;
		j = json_loads(e->data, 0, NULL);
		cr_assert_not_null(j, "event data not JSON: %s", e->data);
		cr_assert(json_is_string(json_object_get(j, "at")), "%s",
		    e->data);
		return j;
	}
}

static const char *
jstr(json_t *j, const char *k)
{
	const char *s = json_string_value(json_object_get(j, k));

	return s != NULL ? s : "";
}

static const char *
worker(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s", tu_build_path("worker/hive-worker"));
	return path;
}

static void
start_counter(struct hp *h, const char *extra)
{
	char agents[1024];
	size_t from = 0;

	snprintf(agents, sizeof(agents), "[agent \"a\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n",
	    getenv("HIVE_SOURCE_DIR"));
	hp_write_conf(h, worker(), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=a/1", "state=ready", NULL);
}

/* ---- agents ---- */

Test(live_events, killed_worker_leaves_ready_then_is_ready_again)
{
	struct hp *h = hp_new("lv-kill");
	struct sc c;
	struct sev e;
	json_t *j;
	pid_t pid;
	long long t0, t1, t2;

	start_counter(h, NULL);
	cr_assert_eq(sc_open(&c, h, NULL, "/events?types=agent&agent=a",
	    NULL), 200);
	pid = hp_agent_pid(h, "a/1");
	cr_assert(pid > 0);
	t0 = tu_now_ms();
	cr_assert(kill(pid, SIGKILL) == 0);

	j = sc_expect(&c, h, "agent", &e);
	t1 = tu_now_ms();
	cr_assert_str_eq(jstr(j, "agent"), "a");
	cr_assert_eq(json_integer_value(json_object_get(j, "instance")), 1);
	cr_assert_str_eq(jstr(j, "previous"), "ready", "%s", e.data);
	cr_assert(strcmp(jstr(j, "state"), "ready") != 0, "%s", e.data);
	cr_assert(strstr(jstr(j, "reason"), "signal 9") != NULL, "%s", e.data);
	json_decref(j);
	do {
		j = sc_expect(&c, h, "agent", &e);
		if (strcmp(jstr(j, "state"), "ready") == 0)
			break;
		json_decref(j);
	} while (1);
	t2 = tu_now_ms();
	cr_assert(json_integer_value(json_object_get(j, "pid")) > 0);
	cr_assert_neq(json_integer_value(json_object_get(j, "pid")), pid);
	cr_assert(json_integer_value(json_object_get(j, "restarts")) >= 1);
	json_decref(j);
	fprintf(stderr, "live_events: kill -> left ready seen in %lld ms, "
	    "-> ready again seen in %lld ms\n", t1 - t0, t2 - t0);
	sc_close(&c);
}

/* Events of a's restart up to ready, read from c; the last id. */
static void
read_restart(struct sc *c, struct hp *h, char *last, size_t len)
{
	struct sev e;
	json_t *j;

	for (;;) {
		j = sc_expect(c, h, "agent", &e);
		snprintf(last, len, "%s", e.id);
		if (strcmp(jstr(j, "state"), "ready") == 0) {
			json_decref(j);
			return;
		}
		json_decref(j);
	}
}

static void
restart_a(struct hp *h)
{
	size_t from = hp_mark(h);

	cr_assert_eq(hp_post(h, "/agents/a/restart"), 200);
	hp_wait(h, &from, T_LONG, "agent=a/1", "state=ready", NULL);
}

Test(live_events, last_event_id_resumes_without_loss_or_repeat)
{
	struct hp *h = hp_new("lv-resume");
	struct sc c, d;
	struct sev e;
	char last[32], first[32] = "", prev[32];
	unsigned n = 0;
	json_t *j;

	start_counter(h, NULL);
	cr_assert_eq(sc_open(&c, h, NULL, "/events?types=agent", NULL), 200);
	cr_assert_eq(hp_post(h, "/agents/a/restart"), 200);
	read_restart(&c, h, last, sizeof(last));
	sc_close(&c);

	/* Missed while away: a whole restart. */
	restart_a(h);
	cr_assert_eq(sc_open(&c, h, NULL, "/events?types=agent", last), 200);
	snprintf(prev, sizeof(prev), "%s", last);
	for (;;) {
		j = sc_expect(&c, h, "agent", &e);
		cr_assert(strtoull(e.id, NULL, 10) > strtoull(prev, NULL, 10),
		    "id %s after %s: out of order or twice", e.id, prev);
		snprintf(prev, sizeof(prev), "%s", e.id);
		if (first[0] == '\0')
			snprintf(first, sizeof(first), "%s", e.id);
		n++;
		if (strcmp(jstr(j, "state"), "ready") == 0) {
			json_decref(j);
			break;
		}
		json_decref(j);
	}
	cr_assert(n >= 2, "%u events replayed", n);
	/* Nothing more: the replay was all of it. */
	cr_assert_eq(sc_next(&c, h, &e, 300), 0, "more: %s %s", e.event,
	    e.data);
	sc_close(&c);

	/* The query argument does the same (the header wins). */
	{
		char path[128];

		snprintf(path, sizeof(path), "/events?types=agent&"
		    "last_event_id=%s", last);
		cr_assert_eq(sc_open(&d, h, NULL, path, NULL), 200);
		json_decref(sc_expect(&d, h, "agent", &e));
		cr_assert_str_eq(e.id, first);
		sc_close(&d);
		snprintf(path, sizeof(path), "/events?types=agent&"
		    "last_event_id=1");
		cr_assert_eq(sc_open(&d, h, NULL, path, last), 200);
		json_decref(sc_expect(&d, h, "agent", &e));
		cr_assert_str_eq(e.id, first);
		sc_close(&d);
	}
}

Test(live_events, id_outside_the_window_gets_reset)
{
	struct hp *h = hp_new("lv-reset");
	struct sc c;
	struct sev e;
	char oldest[32], last[32];
	json_t *j;

	start_counter(h, "events_window = 3\n");
	cr_assert_eq(sc_open(&c, h, NULL, "/events?types=agent", NULL), 200);
	cr_assert_eq(hp_post(h, "/agents/a/restart"), 200);
	json_decref(sc_expect(&c, h, "agent", &e));
	snprintf(oldest, sizeof(oldest), "%s", e.id);
	read_restart(&c, h, last, sizeof(last));
	cr_assert_eq(hp_post(h, "/agents/a/restart"), 200);
	read_restart(&c, h, last, sizeof(last));
	sc_close(&c);

	/* Older than the window (metrics ticks and restarts pushed it
	 * out), and of an earlier run. */
	cr_assert_eq(sc_open(&c, h, NULL, "/events?types=agent", oldest), 200);
	j = sc_expect(&c, h, "reset", &e);
	cr_assert(strstr(jstr(j, "reason"), "window") != NULL, "%s", e.data);
	cr_assert(e.id[0] != '\0');
	json_decref(j);
	sc_close(&c);
	cr_assert_eq(sc_open(&c, h, NULL, "/events", "1"), 200);
	j = sc_expect(&c, h, "reset", &e);
	json_decref(j);
	sc_close(&c);
}

/* ---- requests refused, the cap, clients that leave ---- */

Test(live_events, bad_requests_and_the_stream_cap)
{
	struct hp *h = hp_new("lv-cap");
	static struct sc cs[SSE_MAX + 1];
	struct sc c;
	char src[32];
	int code;
	json_t *j;
	long long end;

	start_counter(h, NULL);
	cr_assert_eq(sc_open(&c, h, NULL, "/events?types=agent,bogus", NULL),
	    400);
	cr_assert(strstr(c.buf, "unknown type") != NULL, "%s", c.buf);
	sc_close(&c);
	cr_assert_eq(sc_open(&c, h, NULL, "/events?instance=0", NULL), 400);
	sc_close(&c);
	cr_assert_eq(sc_open(&c, h, NULL, "/events", "12x"), 400);
	sc_close(&c);
	cr_assert_eq(sc_open(&c, h, NULL, "/events?color=red", NULL), 400);
	sc_close(&c);
	sc_connect(&c, h, NULL, "/events", NULL, 0, "HEAD");
	while (strstr(c.buf, "\r\n\r\n") == NULL)
		cr_assert(sc_fill(&c, h, T_LONG) > 0);
	cr_assert(strncmp(c.buf, "HTTP/1.0 405", 12) == 0 ||
	    strncmp(c.buf, "HTTP/1.1 405", 12) == 0, "%s", c.buf);
	sc_close(&c);

	/* HTTP_SSE_MAX streams, from several addresses (the per-address
	 * connection cap is lower), then one more: 503. */
	for (int i = 0; i < SSE_MAX; i++) {
		snprintf(src, sizeof(src), "127.0.0.%d", 2 + i / 8);
		cr_assert_eq(sc_open(&cs[i], h, src, "/events?types=agent",
		    NULL), 200, "stream %d", i);
	}
	cr_assert_eq(sc_open(&c, h, "127.0.0.9", "/events", NULL), 503);
	cr_assert(strstr(c.buf, "unavailable") != NULL, "%s", c.buf);
	sc_close(&c);
	/* Other requests go on. */
	j = hp_http(h, "GET", "/health", NULL, &code);
	cr_assert_eq(code, 200);
	json_decref(j);
	/* One leaves a quiet stream: its slot is free at once. */
	sc_close(&cs[0]);
	end = tu_now_ms() + 5000;
	for (;;) {
		int st = sc_open(&c, h, "127.0.0.9", "/events?types=agent", NULL);

		sc_close(&c);
		if (st == 200)
			break;
		cr_assert_eq(st, 503);
		cr_assert(tu_now_ms() < end, "the slot of a client that left "
		    "stays taken");
		hp_pump(h, 50);
	}
	for (int i = 1; i < SSE_MAX; i++)
		sc_close(&cs[i]);
}

/* ---- slow clients, tasks, dead letters, /stats (PostgreSQL) ---- */

static unsigned long long
metric(struct hp *h, const char *name)
{
	unsigned long long v;
	struct sc c;
	char *p;

	sc_connect(&c, h, NULL, "/metrics", NULL, 0, NULL);
	while (sc_fill(&c, h, T_LONG) > 0)
		;
	cr_assert(strncmp(c.buf, "HTTP/1.", 7) == 0, "%s", c.buf);
	/* The sample's line, not the HELP and TYPE lines. */
	p = strstr(c.buf, name);
	while (p != NULL && (p[-1] != '\n' || p[strlen(name)] != ' '))
		p = strstr(p + 1, name);
	cr_assert_not_null(p, "no %s in /metrics", name);
	v = strtoull(p + strlen(name) + 1, NULL, 10);
	sc_close(&c);
	return v;
}

static void
start_pg(struct hp *h, const char *tag, const char *extra_keys,
    const char *agents)
{
	char db[64], ci[512], extra[1024];
	size_t from = 0;

	tu_pg_fresh_db(tag, db, sizeof(db), ci, sizeof(ci));
	snprintf(extra, sizeof(extra), "postgres = %s\n%s", ci,
	    extra_keys ? extra_keys : "");
	hp_write_conf(h, worker(), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "state=ready", NULL);
}

static void
counter_agents(char *buf, size_t len)
{
	snprintf(buf, len, "[agent \"a\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n",
	    getenv("HIVE_SOURCE_DIR"));
}

Test(live_events, task_events_in_order_and_stats)
{
	struct hp *h = hp_new("lv-tasks");
	redisContext *r = tu_redis_connect();
	char agents[1024], id[32];
	int seen[5] = { 0 }, done = 0, code;
	const char *order[] = { "queued", "running", "completed" };
	struct sc c;
	struct sev e;
	json_t *j, *s;
	unsigned long long sum = 0;
	size_t i;

	counter_agents(agents, sizeof(agents));
	start_pg(h, "lvtasks", NULL, agents);
	cr_assert_eq(sc_open(&c, h, NULL, "/events?types=task", NULL), 200);
	for (int k = 0; k < 5; k++) {
		snprintf(id, sizeof(id), "t-%d", k);
		hp_submit_direct(r, h->prefix, "a", 1, id, "{}");
	}
	while (done < 5) {
		int k;

		j = sc_expect(&c, h, "task", &e);
		cr_assert(sscanf(jstr(j, "id"), "t-%d", &k) == 1 && k >= 0 &&
		    k < 5, "%s", e.data);
		cr_assert(seen[k] < 3, "%s: after completed", e.data);
		cr_assert_str_eq(jstr(j, "state"), order[seen[k]], "%s: "
		    "expected %s", e.data, order[seen[k]]);
		if (seen[k] > 0) {
			cr_assert_str_eq(jstr(j, "agent"), "a", "%s", e.data);
			cr_assert_eq(json_integer_value(json_object_get(j,
			    "instance")), 1, "%s", e.data);
		}
		if (++seen[k] == 3)
			done++;
		json_decref(j);
	}
	sc_close(&c);

	/* The metrics ticks counted them: GET /stats. */
	for (long long end = tu_now_ms() + T_LONG; sum < 5;) {
		cr_assert(tu_now_ms() < end, "GET /stats: %llu completed", sum);
		hp_pump(h, 200);
		j = hp_http(h, "GET", "/stats", NULL, &code);
		cr_assert_eq(code, 200);
		cr_assert_eq(json_integer_value(json_object_get(j,
		    "interval_ms")), 1000);
		sum = 0;
		json_array_foreach(json_object_get(j, "samples"), i, s)
			sum += (unsigned long long)json_integer_value(
			    json_object_get(s, "completed"));
		json_decref(j);
	}
	cr_assert_eq(sum, 5);
	redisFree(r);
}

Test(live_events, slow_client_is_dropped_and_hived_answers)
{
	struct hp *h = hp_new("lv-slow");
	redisContext *r = tu_redis_connect();
	char agents[1024], id[64];
	struct sc stuck, good;
	struct sev e;
	int code, ngood = 0;
	long long end, worst = 0;
	json_t *j;

	counter_agents(agents, sizeof(agents));
	start_pg(h, "lvslow", "events_client_buffer = 16K\n"
	    "events_task_rate = 1000000\n", agents);
	/* One that never reads, with a small receive buffer. */
	sc_connect(&stuck, h, NULL, "/events?types=task", NULL, 2048, NULL);
	cr_assert_eq(sc_open(&good, h, NULL, "/events?types=metrics", NULL),
	    200);
	for (int k = 0; k < 3000; k++) {
		snprintf(id, sizeof(id), "slow-%04d-with-a-longer-id-to-fill", k);
		hp_submit_direct(r, h->prefix, "a", 1, id, "{}");
	}
	end = tu_now_ms() + 60000;
	while (metric(h, "hive_events_dropped_clients_total") == 0) {
		long long t = tu_now_ms();

		j = hp_http(h, "GET", "/health", NULL, &code);
		cr_assert_eq(code, 200);
		json_decref(j);
		if (tu_now_ms() - t > worst)
			worst = tu_now_ms() - t;
		cr_assert(tu_now_ms() < end, "the client that never reads is "
		    "not dropped");
		/* the good one keeps reading */
		while (sc_next(&good, h, &e, 50) == 1)
			ngood++;
	}
	fprintf(stderr, "live_events: GET /health took at most %lld ms while "
	    "a client's buffer filled\n", worst);
	/* The stuck one's connection is closed: what is left, then EOF. */
	end = tu_now_ms() + T_LONG;
	for (;;) {
		char buf[65536];
		ssize_t n = recv(stuck.fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
		cr_assert(tu_now_ms() < end, "the dropped client's connection "
		    "stays open");
		if (n < 0)
			hp_pump(h, 20);
	}
	sc_close(&stuck);
	/* The one that reads was not dropped. */
	cr_assert_eq(sc_next(&good, h, &e, T_LONG), 1);
	cr_assert_str_eq(e.event, "metrics");
	sc_close(&good);
	redisFree(r);
}

static void
touch(const char *path)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s", path);
	fclose(f);
}

Test(live_events, dead_letters_added_and_retried)
{
	struct hp *h = hp_new("lv-dead");
	char agents[1024], flag[600], body[1024], path[256], dead_id[64];
	struct sc c;
	struct sev e;
	json_t *j, *d;
	int code;

	snprintf(agents, sizeof(agents), "[agent \"d\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/dead_handler.py\n"
	    "capabilities = work\nmax_attempts = 1\nrestart_limit = 1000\n"
	    "restart_window = 1s\n", getenv("HIVE_SOURCE_DIR"));
	start_pg(h, "lvdead", NULL, agents);
	snprintf(flag, sizeof(flag), "%s/flag", h->dir);
	touch(flag);
	cr_assert_eq(sc_open(&c, h, NULL, "/events?types=dead", NULL), 200);
	snprintf(body, sizeof(body), "{\"capability\": \"work\", \"id\": "
	    "\"dl-1\", \"payload\": {\"flag\": \"%s\"}}", flag);
	j = hp_http_body(h, "POST", "/tasks", HP_TOKEN, body, &code);
	cr_assert_eq(code, 201);
	json_decref(j);

	j = sc_expect(&c, h, "dead", &e);
	cr_assert_str_eq(jstr(j, "id"), "dl-1", "%s", e.data);
	cr_assert_str_eq(jstr(j, "action"), "added", "%s", e.data);
	cr_assert_str_eq(jstr(j, "capability"), "work", "%s", e.data);
	cr_assert(jstr(j, "code")[0] != '\0', "%s", e.data);
	json_decref(j);

	unlink(flag);
	j = hp_http(h, "GET", "/dead", NULL, &code);
	cr_assert_eq(code, 200);
	d = json_array_get(json_object_get(j, "dead"), 0);
	cr_assert_not_null(d);
	snprintf(dead_id, sizeof(dead_id), "%s", jstr(d, "dead_id"));
	json_decref(j);
	snprintf(path, sizeof(path), "/dead/%s/retry", dead_id);
	cr_assert_eq(hp_post(h, path), 200);
	j = sc_expect(&c, h, "dead", &e);
	cr_assert_str_eq(jstr(j, "id"), "dl-1", "%s", e.data);
	cr_assert_str_eq(jstr(j, "action"), "retried", "%s", e.data);
	cr_assert_str_eq(jstr(j, "capability"), "work", "%s", e.data);
	json_decref(j);
	sc_close(&c);
}

Test(live_events, workflow_events_and_coalesced_tasks)
{
	struct hp *h = hp_new("lv-wf");
	redisContext *r = tu_redis_connect();
	char agents[1024], id[32];
	struct sc c;
	struct sev e;
	json_t *j, *counts;
	int code, sum = 0;

	counter_agents(agents, sizeof(agents));
	strncat(agents, "capabilities = work\n", sizeof(agents) -
	    strlen(agents) - 1);
	start_pg(h, "lvwf", "events_task_rate = 1\n", agents);
	cr_assert_eq(sc_open(&c, h, NULL, "/events?types=workflow,task",
	    NULL), 200);
	j = hp_http_body(h, "POST", "/workflows", HP_TOKEN, "{\"id\": \"wf-1\", "
	    "\"tasks\": [{\"id\": \"w-a\", \"capability\": \"work\"}, "
	    "{\"id\": \"w-b\", \"capability\": \"work\", \"depends_on\": "
	    "[\"w-a\"]}]}", &code);
	cr_assert_eq(code, 202);
	json_decref(j);
	j = sc_expect(&c, h, "workflow", &e);
	cr_assert_str_eq(jstr(j, "id"), "wf-1", "%s", e.data);
	cr_assert_str_eq(jstr(j, "state"), "running", "%s", e.data);
	cr_assert_eq(json_integer_value(json_object_get(j, "total")), 2);
	json_decref(j);
	j = sc_expect(&c, h, "workflow", &e);
	cr_assert_str_eq(jstr(j, "state"), "completed", "%s", e.data);
	cr_assert_eq(json_integer_value(json_object_get(j, "completed")), 2,
	    "%s", e.data);
	cr_assert_eq(json_integer_value(json_object_get(j, "failed")), 0);
	json_decref(j);
	sc_close(&c);

	/* Past events_task_rate (1/s), one `tasks` event a second. */
	cr_assert_eq(sc_open(&c, h, NULL, "/events?types=task", NULL), 200);
	for (int k = 0; k < 20; k++) {
		snprintf(id, sizeof(id), "co-%d", k);
		hp_submit_direct(r, h->prefix, "a", 1, id, "{}");
	}
	while (sum < 3 * 20 - 3) {
		int n = 0;

		j = sc_expect(&c, h, "tasks", &e);
		cr_assert_eq(json_integer_value(json_object_get(j,
		    "interval_ms")), 1000);
		counts = json_object_get(j, "counts");
		cr_assert(json_is_object(counts), "%s", e.data);
		n += (int)json_integer_value(json_object_get(counts, "queued"));
		n += (int)json_integer_value(json_object_get(counts, "running"));
		n += (int)json_integer_value(json_object_get(counts,
		    "completed"));
		cr_assert(n >= 2, "%s: the second's first goes alone", e.data);
		sum += n - 1;
		json_decref(j);
	}
	sc_close(&c);
	redisFree(r);
}

/* What a browser's EventSource speaks: HTTP/1.1, chunked. */
Test(live_events, http11_stream_is_chunked)
{
	struct hp *h = hp_new("lv-h11");
	struct sockaddr_in sa;
	static const char req[] = "GET /events?types=metrics HTTP/1.1\r\n"
	    "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
	struct sc c;

	start_counter(h, NULL);
	memset(&c, 0, sizeof(c));
	c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)h->port);
	cr_assert(connect(c.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(send(c.fd, req, sizeof(req) - 1, MSG_NOSIGNAL) ==
	    (ssize_t)sizeof(req) - 1);
	while (strstr(c.buf, "event: metrics\ndata: {") == NULL)
		cr_assert(sc_fill(&c, h, T_LONG) > 0, "%s", c.buf);
	cr_assert(strncmp(c.buf, "HTTP/1.1 200", 12) == 0, "%s", c.buf);
	cr_assert(strcasestr(c.buf, "Transfer-Encoding: chunked") != NULL,
	    "%s", c.buf);
	cr_assert(strcasestr(c.buf, "Cache-Control: no-store") != NULL);
	sc_close(&c);
}

/* hived stopping ends every stream (their closed_fn at once), and exits
 * 0: nothing left behind (under ASan, nothing leaked or used after). */
Test(live_events, stopping_hived_ends_the_streams)
{
	struct hp *h = hp_new("lv-stop");
	struct sc quiet, busy;
	struct sev e;
	int st;

	start_counter(h, NULL);
	cr_assert_eq(sc_open(&quiet, h, NULL, "/events?types=dead", NULL),
	    200);
	cr_assert_eq(sc_open(&busy, h, NULL, "/events", NULL), 200);
	json_decref(sc_expect(&busy, h, "metrics", &e));
	hp_signal(h, SIGTERM);
	/* The agent's stop reaches the one that takes every type, the
	 * last event too (queued in hived's last SSE_FLUSH_S: sent as hived
	 * stops). */
	for (;;) {
		json_t *j = sc_expect(&busy, h, "agent", &e);
		int stopped = strcmp(jstr(j, "state"), "stopped") == 0;

		json_decref(j);
		if (stopped)
			break;
	}
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x",
	    st);
	while ((st = sc_next(&busy, h, &e, T_LONG)) == 1)
		;
	cr_assert_eq(st, -1, "the stream did not end");
	cr_assert_eq(sc_next(&quiet, h, &e, T_LONG), -1);
	sc_close(&quiet);
	sc_close(&busy);
}
