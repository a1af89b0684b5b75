/*
 * test_http.c - hived's HTTP API under load and at start-up, as a real
 * process (hived_proc.h): connection floods (the API must come back by
 * itself), the per-address cap's 503, the token file, the single-instance
 * lock and a port held by another program.  Loopback only; every flood is
 * a bounded number of connections that the test closes itself.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hived_proc.h"
#include "testutil.h"

TestSuite(http, .fini = hp_cleanup, .timeout = 60);

#define FLOOD 200          /* connections in a flood: past every cap */

static const char *
fake(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s",
	    tu_build_path("tests/supervisor/fake_worker"));
	return path;
}

/* A non-blocking connection to hived's port from 127.0.0.1 (the connect
 * may be under way). */
static int
open_conn_from(unsigned port, const char *from)
{
	struct sockaddr_in sa;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	cr_assert(s >= 0, "socket: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	cr_assert(inet_pton(AF_INET, from, &sa.sin_addr) == 1);
	cr_assert(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	    "bind %s: %s", from, strerror(errno));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == -1 &&
	    errno != EINPROGRESS)
		cr_assert_fail("connect: %s", strerror(errno));
	return s;
}

static int
open_conn(unsigned port)
{
	return open_conn_from(port, "127.0.0.1");
}

/*
 * Send req on s (waiting for the connect) and read the answer's status
 * line and headers (and with until_eof, up to EOF), pumping hived's log;
 * the HTTP status, or 0 when nothing came within ms.  buf gets the text.
 */
static int
exchange(struct hp *h, int s, const char *req, int ms, int until_eof,
    char *buf, size_t len)
{
	long long end = tu_now_ms() + ms;
	size_t sent = 0, got = 0;
	int code = 0;

	buf[0] = '\0';
	while (tu_now_ms() < end) {
		struct pollfd p[2] = {
			{ s, sent < strlen(req) ? POLLOUT : POLLIN, 0 },
			{ h->logfd, POLLIN, 0 },
		};
		ssize_t n;

		if (poll(p, h->logfd >= 0 ? 2 : 1, 100) <= 0)
			continue;
		if (p[1].revents)
			hp_pump(h, 0);
		if (!p[0].revents)
			continue;
		if (sent < strlen(req)) {
			n = write(s, req + sent, strlen(req) - sent);
			if (n < 0 && errno != EAGAIN)
				return 0;
			sent += n > 0 ? (size_t)n : 0;
			continue;
		}
		n = read(s, buf + got, len - 1 - got);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (!until_eof && strstr(buf, "\r\n\r\n") != NULL &&
		    strstr(buf, "}") != NULL)
			break;
	}
	if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
		code = 0;
	return code;
}

/*
 * GET /health on a new connection: its status, 0 if none within ms.  A
 * 503 (a cap still full of connections hived has not yet seen closed)
 * is retried on a new connection, as a client should.
 */
static int
health_from(struct hp *h, const char *from, int ms)
{
	long long end = tu_now_ms() + ms;
	char buf[4096];
	int code;

	do {
		int s = open_conn_from(h->port, from);

		code = exchange(h, s, "GET /health HTTP/1.1\r\nHost: x\r\n"
		    "Connection: close\r\n\r\n", (int)(end - tu_now_ms()), 1,
		    buf, sizeof(buf));
		close(s);
	} while (code == 503 && tu_now_ms() < end);
	return code;
}

static int
health_within(struct hp *h, int ms)
{
	return health_from(h, "127.0.0.1", ms);
}

static void
start_plain(struct hp *h)
{
	hp_write_conf(h, fake(), NULL, NULL);
	hp_start(h);
	cr_assert_eq(health_within(h, 5000), 200);
}

/*
 * A flood of connections that each send half a request and then all close
 * at once: once libmicrohttpd had reached its connection limit it used to
 * stop watching the listening socket until a later run of its own, which
 * nothing made any more; /health never answered again.  The flood comes
 * from 127.0.0.1, the checks from 127.0.0.2: another client is served as
 * soon as the flood ends, whatever the flooder's own connections still
 * hold of its per-address cap (some of the flood's connections, closed by
 * the client before the server accepted them, linger until a timeout).
 */
Test(http, recovers_after_a_flood_of_partial_requests)
{
	struct hp *h = hp_new("flood");
	size_t from;
	int fds[FLOOD];

	start_plain(h);
	for (int round = 0; round < 3; round++) {
		from = hp_mark(h);
		for (int i = 0; i < FLOOD; i++) {
			fds[i] = open_conn(h->port);
			/* Half a request; it may not go out while the connect
			 * is under way, which is a partial request too. */
			(void)!write(fds[i], "GET /health HTTP/1.1\r\nHo", 24);
		}
		/* hived took connections up to its limit: the ones past the
		 * caps are refused (hived -v says so). */
		for (int i = 0; i < 48; i++)
			if (hp_wait_try(h, &from, 5000, "http: connection refused",
			    NULL) == NULL)
				break;
		for (int i = 0; i < FLOOD; i++)
			close(fds[i]);
		cr_assert_eq(health_from(h, "127.0.0.2", 15000), 200,
		    "no answer to GET /health after flood %d", round + 1);
	}
	/* Connect and close at once. */
	for (int i = 0; i < FLOOD; i++)
		close(open_conn(h->port));
	cr_assert_eq(health_from(h, "127.0.0.2", 15000), 200);
}

/*
 * Past HTTP_CONN_PER_IP (16) connections from one address, the next gets a
 * 503 that says why, and is closed; once one closes, a new one is served.
 */
Test(http, per_address_cap_answers_503)
{
	struct hp *h = hp_new("cap");
	const char *keep = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	char buf[4096];
	int fds[16], s;

	start_plain(h);
	for (int i = 0; i < 16; i++) {
		fds[i] = open_conn(h->port);
		cr_assert_eq(exchange(h, fds[i], keep, 5000, 0, buf,
		    sizeof(buf)), 200, "connection %d: %s", i + 1, buf);
	}
	s = open_conn(h->port);
	cr_assert_eq(exchange(h, s, keep, 5000, 1, buf, sizeof(buf)), 503,
	    "%s", buf);
	cr_assert(strstr(buf, "too many connections from this address") != NULL,
	    "%s", buf);
	cr_assert(strstr(buf, "Connection: close") != NULL, "%s", buf);
	close(s);
	/* One of the 16 ends (hived closes it: read to EOF). */
	cr_assert_eq(exchange(h, fds[0], "GET /health HTTP/1.1\r\nHost: x\r\n"
	    "Connection: close\r\n\r\n", 5000, 1, buf, sizeof(buf)), 200);
	close(fds[0]);
	cr_assert_eq(health_within(h, 5000), 200);
	for (int i = 1; i < 16; i++)
		close(fds[i]);
}

/*
 * The request-target as sent, decoded strictly (test_http_route.c has the
 * cases): none of these may act on an instance.
 */
Test(http, strict_target_over_http)
{
	static const char *const bad[] = {
		"/agents/a/restart?instance",
		"/agents/a/restart?instance=+1",
		"/agents/a/restart?instance=%201",
		"/agents/a/restart?instance=1%00junk",
		"/agents/a/restart?instance=01",
		"/agents/a/restart?instance=0",
		"/agents/a/restart?instance=1x",
		"/agents/a/restart?instance=99999999999999999999",
		"/agents/a/restart?instanse=1",
		"/agents/a%2Fb/restart",
		"/agents/a/restart%00",
	};
	struct hp *h = hp_new("strict");
	int code;

	hp_write_conf(h, fake(), NULL,
	    "[agent \"a\"]\ncommand = ok\ninstances = 2\n");
	hp_start(h);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *j = hp_http(h, "POST", bad[i], HP_TOKEN, &code);

		cr_assert_eq(code, 400, "POST %s: %d", bad[i], code);
		cr_assert_str_eq(json_string_value(json_object_get(
		    json_object_get(j, "error"), "code")), "bad_request");
		json_decref(j);
	}
	/* An escaped '/' stays in its segment: no such path, not a/restart */
	json_decref(hp_http(h, "POST", "/agents/a%2frestart", HP_TOKEN, &code));
	cr_assert_eq(code, 404);
	json_decref(hp_http(h, "POST", "/agents/a/restart?instance=3", HP_TOKEN,
	    &code));
	cr_assert_eq(code, 404);
}

/* HEAD answers as GET without a body; a body where none is taken is
 * refused before it is read, with the error shape of every error. */
Test(http, head_and_bodies)
{
	struct hp *h = hp_new("head");
	char buf[4096];
	json_t *j, *e;
	int code, s;

	hp_write_conf(h, fake(), NULL, "[agent \"a\"]\ncommand = ok\n");
	hp_start(h);
	cr_assert_eq(health_within(h, 5000), 200);
	s = open_conn_from(h->port, "127.0.0.1");
	code = exchange(h, s, "HEAD /agents HTTP/1.1\r\nHost: x\r\n"
	    "Connection: close\r\n\r\n", 5000, 1, buf, sizeof(buf));
	close(s);
	cr_assert_eq(code, 200);
	cr_assert_not_null(strstr(buf, "application/json"), "%s", buf);
	cr_assert(strstr(buf, "\r\n\r\n") != NULL &&
	    strstr(buf, "\r\n\r\n")[4] == '\0', "HEAD sent a body: %s", buf);

	j = hp_http_body(h, "POST", "/agents/a/restart", HP_TOKEN, "{}", &code);
	cr_assert_eq(code, 413);
	e = json_object_get(j, "error");
	cr_assert_str_eq(json_string_value(json_object_get(e, "code")),
	    "too_large");
	cr_assert_str_eq(json_string_value(json_object_get(e, "message")),
	    "this endpoint takes no body");
	json_decref(j);
	j = hp_http(h, "DELETE", "/agents", NULL, &code);
	cr_assert_eq(code, 405);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j,
	    "error"), "code")), "method_not_allowed");
	json_decref(j);
	cr_assert_eq(health_within(h, 5000), 200);
}

/* The consumers of capability cap in a GET /capabilities answer, as
 * "consumer=state,..." in order; fails if the queues are not as given. */
static void
expect_cap(json_t *caps, const char *prefix, const char *cap,
    const char *consumers)
{
	json_t *it, *c;
	size_t i, j;
	char want[128], got[512] = "";

	json_array_foreach(caps, i, it) {
		if (strcmp(json_string_value(json_object_get(it, "name")), cap))
			continue;
		for (unsigned p = 0; p < 3; p++) {
			snprintf(want, sizeof(want), "%s:q:%s:%u", prefix, cap, p);
			cr_assert_str_eq(json_string_value(json_array_get(
			    json_object_get(it, "queues"), p)), want);
		}
		json_array_foreach(json_object_get(it, "consumers"), j, c) {
			cr_assert_eq(json_integer_value(json_object_get(c,
			    "inflight")), 0);
			snprintf(got + strlen(got), sizeof(got) - strlen(got),
			    "%s%s", j ? "," : "",
			    json_string_value(json_object_get(c, "consumer")));
		}
		cr_assert_str_eq(got, consumers, "capability %s", cap);
		return;
	}
	cr_assert_fail("no capability %s", cap);
}

/* GET /capabilities: each capability, its queues and consumers. */
Test(http, capabilities_list_their_consumers)
{
	struct hp *h = hp_new("caps");
	json_t *j, *caps;
	int code;

	hp_write_conf(h, fake(), "host = node-1\n",
	    "[agent \"a\"]\ncommand = ok\ninstances = 2\n"
	    "capabilities = x, y\n"
	    "[agent \"b\"]\ncommand = ok\ncapabilities = y\n"
	    "[agent \"c\"]\ncommand = ok\n");
	hp_start(h);
	j = hp_http(h, "GET", "/capabilities", NULL, &code);
	cr_assert_eq(code, 200);
	caps = json_object_get(j, "capabilities");
	cr_assert_eq(json_array_size(caps), 2);
	expect_cap(caps, h->prefix, "x", "a/1@node-1,a/2@node-1");
	expect_cap(caps, h->prefix, "y", "a/1@node-1,a/2@node-1,b/1@node-1");
	json_decref(j);
}

/* Start hived, expecting it to exit 1 with a line holding needle. */
static void
expect_start_fails(struct hp *h, const char *needle)
{
	size_t from = 0;
	int st;

	hp_spawn(h);
	st = hp_wait_exit(h, 10000);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1,
	    "hived exit status %#x", st);
	hp_wait(h, &from, 1000, needle, NULL);
}

static void
write_token(struct hp *h, size_t n)
{
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/token", h->dir);
	cr_assert((f = fopen(path, "w")) != NULL);
	for (size_t i = 0; i < n; i++)
		fputc('a' + (int)(i % 26), f);
	fputc('\n', f);
	cr_assert(fclose(f) == 0);
}

/* A token longer than the limit is refused at start, never cut. */
Test(http, token_too_long_is_refused)
{
	struct hp *h = hp_new("toklong");
	char want[700];

	write_token(h, 300);
	hp_write_conf(h, fake(), NULL, NULL);
	snprintf(want, sizeof(want), "token_file %s/token: the token is 300 "
	    "bytes long, more than the 255 allowed", h->dir);
	expect_start_fails(h, want);
}

/* 255 bytes: the whole token is the token, not a prefix of it. */
Test(http, token_of_255_bytes_is_read_whole)
{
	struct hp *h = hp_new("tok255");
	char tok[256], auth[300];
	int code;
	json_t *j;

	write_token(h, 255);
	for (size_t i = 0; i < 255; i++)
		tok[i] = (char)('a' + (int)(i % 26));
	tok[255] = '\0';
	hp_write_conf(h, fake(), NULL, "[agent \"a\"]\ncommand = ok\n");
	hp_start(h);
	j = hp_http(h, "POST", "/agents/a/reset", tok, &code);
	cr_assert(code == 200 || code == 409, "full token: %d", code);
	json_decref(j);
	snprintf(auth, sizeof(auth), "%.254s", tok);
	json_decref(hp_http(h, "POST", "/agents/a/reset", auth, &code));
	cr_assert_eq(code, 403);
}

Test(http, token_file_directory_is_named)
{
	struct hp *h = hp_new("tokdir");
	char path[600], want[700];

	snprintf(path, sizeof(path), "%s/token", h->dir);
	cr_assert(unlink(path) == 0);
	cr_assert(mkdir(path, 0700) == 0);
	hp_write_conf(h, fake(), NULL, NULL);
	snprintf(want, sizeof(want), "token_file %s: is a directory", path);
	expect_start_fails(h, want);
}

/*
 * A second hived with the same configuration (prefix and host) exits 1
 * with a message; the first keeps serving, alone on its port.
 */
Test(http, second_hived_is_refused)
{
	struct hp *h = hp_new("one"), *h2;
	char want[200];

	start_plain(h);
	h2 = hp_new("two");
	snprintf(h2->conf, sizeof(h2->conf), "%s", h->conf);
	h2->port = h->port;
	snprintf(want, sizeof(want), "another hived (pid %ld) runs with "
	    "prefix=%s", (long)h->pid, h->prefix);
	expect_start_fails(h2, want);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(health_within(h, 5000), 200);
}

/* A port held by another program: the error names the address. */
Test(http, port_in_use_names_the_address)
{
	struct hp *h = hp_new("busy");
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char want[200];
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(s >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(listen(s, 4) == 0);
	cr_assert(getsockname(s, (struct sockaddr *)&sa, &sl) == 0);
	h->port = ntohs(sa.sin_port);
	hp_write_conf(h, fake(), NULL, NULL);
	snprintf(want, sizeof(want), "http = 127.0.0.1:%u: cannot listen: "
	    "Address already in use", h->port);
	expect_start_fails(h, want);
	close(s);
}
