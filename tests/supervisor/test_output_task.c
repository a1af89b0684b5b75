/*
 * test_output_task.c - GET /tasks/ID/output against a real hived, its
 * worker running tests/worker/output_handler.py, Redis and PostgreSQL:
 * a task's chunks as server-sent events in order, then its end; resuming
 * with Last-Event-ID; a client that goes away mid-stream; a task that
 * wrote nothing; a task nobody knows; without the record, followers of
 * tasks that do not exist yet.
 *
 * The handler holds a task on a fifo until the test writes a byte to it,
 * and the test waits for the task's first output with XREAD BLOCK: no
 * sleeps.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

TestSuite(output_task, .fini = hp_cleanup, .timeout = 120);

/* One client of an event stream: HTTP/1.0, so the body is not chunked
 * and ends with the connection. */
struct sc {
	int fd;
	char buf[65536];
	size_t len, off;             /* off: parsed up to here (the body) */
	int status;
	bool eof;
};

struct ev {
	char id[64], event[32];
	char data[8192];
};

static void
sc_open(struct sc *s, struct hp *h, const char *path, const char *last)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	char req[512];
	int n;

	memset(s, 0, sizeof(*s));
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_port = htons((uint16_t)h->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: t\r\n%s%s%s"
	    "\r\n", path, last ? "Last-Event-ID: " : "", last ? last : "",
	    last ? "\r\n" : "");
	cr_assert_eq(write(s->fd, req, (size_t)n), n);
}

/* Read more (the log pumped meanwhile); false at EOF. */
static bool
sc_more(struct sc *s, struct hp *h)
{
	struct pollfd p = { .fd = s->fd, .events = POLLIN };
	long long deadline = tu_now_ms() + T_LONG;
	ssize_t n;

	if (s->eof)
		return false;
	while (poll(&p, 1, 50) == 0) {
		hp_pump(h, 0);
		cr_assert(tu_now_ms() < deadline, "no event within %d ms",
		    T_LONG);
	}
	cr_assert(s->len < sizeof(s->buf) - 1, "stream too long for the test");
	n = read(s->fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len);
	if (n <= 0) {
		s->eof = true;
		return false;
	}
	s->len += (size_t)n;
	s->buf[s->len] = '\0';
	return true;
}

/* The status line and headers; the status back. */
static int
sc_head(struct sc *s, struct hp *h)
{
	char *end;

	while ((end = strstr(s->buf, "\r\n\r\n")) == NULL)
		cr_assert(sc_more(s, h), "no response head");
	s->status = atoi(s->buf + 9);
	s->off = (size_t)(end + 4 - s->buf);
	return s->status;
}

/* The next event (comments skipped); false once the stream ended. */
static bool
sc_event(struct sc *s, struct hp *h, struct ev *e)
{
	char *end, *line, *nl;

	for (;;) {
		while ((end = strstr(s->buf + s->off, "\n\n")) == NULL)
			if (!sc_more(s, h))
				return false;
		memset(e, 0, sizeof(*e));
		for (line = s->buf + s->off; line < end; line = nl + 1) {
			nl = strchr(line, '\n');
			*nl = '\0';
			if (strncmp(line, "id: ", 4) == 0)
				snprintf(e->id, sizeof(e->id), "%s", line + 4);
			else if (strncmp(line, "event: ", 7) == 0)
				snprintf(e->event, sizeof(e->event), "%s", line + 7);
			else if (strncmp(line, "data: ", 6) == 0)
				snprintf(e->data, sizeof(e->data), "%s", line + 6);
		}
		s->off = (size_t)(end + 2 - s->buf);
		if (e->event[0] != '\0')
			return true;
	}
}

static void
sc_close(struct sc *s)
{
	close(s->fd);
}

/* Read events up to the end: the chunks joined into text, the end's
 * status into status; the first event's id into first. */
static void
sc_until_end(struct sc *s, struct hp *h, char *text, size_t len,
    char *status, size_t slen, char *first, size_t flen)
{
	struct ev e;
	json_t *d;
	size_t n = 0;

	text[0] = '\0';
	for (;;) {
		cr_assert(sc_event(s, h, &e), "the stream ended without an end");
		if (first != NULL && first[0] == '\0')
			snprintf(first, flen, "%s", e.id);
		d = json_loads(e.data, JSON_DECODE_ANY, NULL);
		cr_assert(d != NULL, "data not JSON: %s", e.data);
		if (strcmp(e.event, "chunk") == 0)
			n += (size_t)snprintf(text + n, len - n, "%s",
			    json_string_value(d));
		if (strcmp(e.event, "end") == 0) {
			snprintf(status, slen, "%s", json_string_value(
			    json_object_get(d, "status")));
			json_decref(d);
			break;
		}
		json_decref(d);
	}
	/* After the end the server ends the stream. */
	cr_assert(!sc_event(s, h, &e), "an event after the end: %s", e.event);
}

/* hived (with the record unless record is 0) and agent o. */
static struct hp *
start_with(const char *tag, int record)
{
	struct hp *h = hp_new(tag);
	char db[64], ci[256], extra[512] = "", agents[1024];
	size_t from = 0;

	if (record) {
		tu_pg_fresh_db(tag, db, sizeof(db), ci, sizeof(ci));
		snprintf(extra, sizeof(extra), "postgres = %s\n", ci);
	}
	snprintf(agents, sizeof(agents),
	    "[agent \"o\"]\n"
	    "command = /usr/bin/python3 %s/tests/worker/output_handler.py\n"
	    "capabilities = c\nconcurrency = 4\n", getenv("HIVE_SOURCE_DIR"));
	hp_write_conf(h, tu_build_path("worker/hive-worker"), extra, agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=o/1", "state=ready", NULL);
	return h;
}

static struct hp *
start(const char *tag)
{
	return start_with(tag, 1);
}

static void
post_task(struct hp *h, const char *id, const char *payload)
{
	char body[1024];
	json_t *r;
	int code;

	snprintf(body, sizeof(body), "{\"capability\":\"c\",\"id\":\"%s\","
	    "\"payload\":%s}", id, payload);
	r = hp_http_body(h, "POST", "/tasks", HP_TOKEN, body, &code);
	cr_assert_eq(code, 201, "POST /tasks: %d", code);
	json_decref(r);
}

/* Wait for the first entry of id's output stream (XREAD BLOCK). */
static void
wait_output(struct hp *h, const char *id)
{
	redisContext *c = tu_redis_connect();
	char key[HIVE_KEY_MAX];
	redisReply *r;

	cr_assert(proto_key_output(key, sizeof(key), h->prefix, id) > 0);
	r = redisCommand(c, "XREAD BLOCK %d STREAMS %s 0", T_LONG, key);
	cr_assert(r && r->type == REDIS_REPLY_ARRAY, "no output for %s", id);
	freeReplyObject(r);
	redisFree(c);
}

static void
fifo_make(struct hp *h, const char *name, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", h->dir, name);
	cr_assert_eq(mkfifo(path, 0600), 0, "mkfifo %s: %s", path,
	    strerror(errno));
}

static void
fifo_release(const char *path)
{
	int fd = open(path, O_WRONLY);

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "x", 1), 1);
	close(fd);
}

Test(output_task, chunks_in_order_then_end_and_resume)
{
	struct hp *h = start("otask");
	struct sc s, s2;
	struct ev e;
	char fifo[600], payload[800], text[4096], st[32], first[64] = "";

	fifo_make(h, "g1", fifo, sizeof(fifo));
	snprintf(payload, sizeof(payload),
	    "{\"op\":\"gate\",\"n\":3,\"fifo\":\"%s\"}", fifo);
	post_task(h, "g1", payload);
	wait_output(h, "g1");
	sc_open(&s, h, "/tasks/g1/output", NULL);
	cr_assert_eq(sc_head(&s, h), 200);
	/* A second follower of the same task, gone before the end. */
	sc_open(&s2, h, "/tasks/g1/output", NULL);
	cr_assert_eq(sc_head(&s2, h), 200);
	cr_assert(sc_event(&s2, h, &e));
	cr_assert_str_eq(e.event, "chunk");
	sc_close(&s2);
	fifo_release(fifo);
	sc_until_end(&s, h, text, sizeof(text), st, sizeof(st), first,
	    sizeof(first));
	cr_assert_str_eq(text, "a0 a1 a2 b");
	cr_assert_str_eq(st, "completed");
	sc_close(&s);

	/* Replayed whole once it ended; resumed after the first event. */
	sc_open(&s, h, "/tasks/g1/output", NULL);
	cr_assert_eq(sc_head(&s, h), 200);
	sc_until_end(&s, h, text, sizeof(text), st, sizeof(st), NULL, 0);
	cr_assert_str_eq(text, "a0 a1 a2 b");
	sc_close(&s);
	sc_open(&s, h, "/tasks/g1/output", first);
	cr_assert_eq(sc_head(&s, h), 200);
	sc_until_end(&s, h, text, sizeof(text), st, sizeof(st), NULL, 0);
	cr_assert(strlen(text) < strlen("a0 a1 a2 b") &&
	    strstr("a0 a1 a2 b", text) != NULL && text[strlen(text) - 1] == 'b',
	    "after %s: \"%s\"", first, text);
	sc_close(&s);
	sc_open(&s, h, "/tasks/g1/output?last_event_id=nonsense", NULL);
	cr_assert_eq(sc_head(&s, h), 400);
	sc_close(&s);
}

Test(output_task, a_task_without_output_and_an_unknown_one)
{
	struct hp *h = start("otnone");
	struct sc s;
	char fifo[600], payload[800], text[64], st[32];
	json_t *r;
	int code;
	long long deadline = tu_now_ms() + T_LONG;

	sc_open(&s, h, "/tasks/nosuch/output", NULL);
	cr_assert_eq(sc_head(&s, h), 404);
	sc_close(&s);

	/* Followed while it runs (the record knows it), ended from the
	 * record: no end entry, no stream. */
	fifo_make(h, "q1", fifo, sizeof(fifo));
	snprintf(payload, sizeof(payload), "{\"op\":\"quiet\",\"fifo\":\"%s\"}",
	    fifo);
	post_task(h, "q1", payload);
	for (;;) {
		r = hp_http(h, "GET", "/tasks/q1", NULL, &code);
		json_decref(r);
		if (code == 200)
			break;
		cr_assert(tu_now_ms() < deadline, "q1 not recorded");
		hp_pump(h, 20);
	}
	sc_open(&s, h, "/tasks/q1/output", NULL);
	cr_assert_eq(sc_head(&s, h), 200);
	fifo_release(fifo);
	sc_until_end(&s, h, text, sizeof(text), st, sizeof(st), NULL, 0);
	cr_assert_str_eq(text, "");
	cr_assert_str_eq(st, "completed");
	sc_close(&s);
	/* hived is fine after all of it. */
	r = hp_http(h, "GET", "/health", NULL, &code);
	cr_assert_eq(code, 200);
	json_decref(r);
}

/* Without the record nothing says a task is unknown: its output is
 * waited for.  Two followers of two tasks, both there before either
 * task exists (the second joins the blocking read of the first). */
Test(output_task, without_the_record_tasks_are_waited_for)
{
	struct hp *h = start_with("otnorec", 0);
	struct sc s1, s2;
	char text[256], st[32];

	sc_open(&s1, h, "/tasks/w1/output", NULL);
	cr_assert_eq(sc_head(&s1, h), 200);
	sc_open(&s2, h, "/tasks/w2/output", NULL);
	cr_assert_eq(sc_head(&s2, h), 200);
	post_task(h, "w2", "{\"op\":\"chunks\",\"n\":2}");
	sc_until_end(&s2, h, text, sizeof(text), st, sizeof(st), NULL, 0);
	cr_assert_str_eq(text, "c0 c1 ");
	post_task(h, "w1", "{\"op\":\"chunks\",\"n\":3}");
	sc_until_end(&s1, h, text, sizeof(text), st, sizeof(st), NULL, 0);
	cr_assert_str_eq(text, "c0 c1 c2 ");
	cr_assert_str_eq(st, "completed");
	sc_close(&s1);
	sc_close(&s2);
}
