/*
 * fuzz_http.c - libFuzzer target for the HTTP API's routing (http_route,
 * supervisor/http.c): method, request-target (path and query, escapes
 * and all, as the client sent it), Authorization header and body, against
 * a hived of four agents.
 *
 * The input is cut at its first three NUL bytes:
 *
 *   +-------+--------+-----+--------+-----+------+-----+------+
 *   | flags | method | NUL | target | NUL | auth | NUL | body |
 *   +-------+--------+-----+--------+-----+------+-----+------+
 *     1 byte
 *
 *   flags  bit 0-1  method: 0 GET, 1 POST, 2 HEAD, 3 the bytes given
 *          bit 2    no Authorization header (auth is ignored)
 *          bit 3    hived has no token ("" : control off)
 *          bit 4    hived is stopping
 *          bit 5    auth is "Bearer " + the right token + the auth bytes
 *   body   everything after the third NUL, NULs included
 *
 * A missing part is empty.  Whatever the input, http_route must not
 * crash, read out of bounds or leak, must answer 200..599, must decide
 * the same twice, and:
 *   - an error has a status >= 400 and a text that is valid UTF-8 (it
 *     goes out as a JSON string: jansson refuses anything else, and the
 *     client would get no answer);
 *   - GET /health, /agents and /capabilities only by GET, for a path that
 *     decodes to exactly that;
 *   - an action only by POST with the right bearer token, on an agent
 *     that exists, with a known action and instances within its count,
 *     and never while hived stops; on every instance of an agent that
 *     has several only when the query names none (nothing but '&').
 *
 * Seeds: tests/fuzz/corpus/http/.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond) do {                                             \
	if (!(cond)) {                                                  \
		fprintf(stderr, "invariant broken: %s (%s:%d)\n", #cond, \
		    __FILE__, __LINE__);                                \
		abort();                                                \
	}                                                               \
} while (0)

#define FZ_TOKEN   "s3cret-token"

static const struct {
	const char *name;
	int instances;
} agents[] = {
	{ "a", 1 },
	{ "ok", 3 },
	{ "none", 0 },             /* an agent whose instances are all gone */
	{ "big", 9999 },
};

static int
fake_instances(void *arg, const char *name)
{
	int *calls = arg;

	(*calls)++;
	for (size_t i = 0; i < sizeof(agents) / sizeof(agents[0]); i++)
		if (strcmp(agents[i].name, name) == 0)
			return agents[i].instances;
	return -1;
}

/* The next part: up to the next NUL (or the end), as a new C string. */
static char *
part(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nul = memchr(*p, '\0', (size_t)(end - *p));
	size_t n = nul != NULL ? (size_t)(nul - *p) : (size_t)(end - *p);
	char *s = malloc(n + 1);

	FZ_CHECK(s != NULL);
	memcpy(s, *p, n);
	s[n] = '\0';
	*p = nul != NULL ? nul + 1 : end;
	return s;
}

/* The target's path, percent-decoded (any byte), into out. */
static void
decoded_path(const char *t, char *out, size_t len)
{
	size_t o = 0;

	for (; *t != '\0' && *t != '?' && o + 1 < len; t++) {
		unsigned v;

		if (*t == '%' && sscanf(t + 1, "%2x", &v) == 1 &&
		    t[1] != '\0' && t[2] != '\0') {
			out[o++] = (char)v;
			t += 2;
		} else
			out[o++] = *t;
	}
	out[o] = '\0';
}

static void
check_route(const struct http_view *view, const struct http_request *rq,
    const struct http_decision *rt, unsigned status)
{
	json_t *j;

	FZ_CHECK(status == rt->status);
	FZ_CHECK(status >= 200 && status <= 599);
	FZ_CHECK(memchr(rt->error, '\0', sizeof(rt->error)) != NULL);
	FZ_CHECK(memchr(rt->agent, '\0', sizeof(rt->agent)) != NULL);
	switch (rt->ep) {
	case HTTP_EP_ERROR:
		FZ_CHECK(status >= 400);
		FZ_CHECK(rt->error[0] != '\0');
		/* What http.c sends: it must exist for every error. */
		j = json_pack("{s:s}", "error", rt->error);
		FZ_CHECK(j != NULL);
		json_decref(j);
		return;
	case HTTP_EP_HEALTH:
	case HTTP_EP_AGENTS:
	case HTTP_EP_CAPABILITIES: {
		char path[64];

		FZ_CHECK(strcmp(rq->method, "GET") == 0);
		decoded_path(rq->target, path, sizeof(path));
		FZ_CHECK(strcmp(path, rt->ep == HTTP_EP_HEALTH ? "/health" :
		    rt->ep == HTTP_EP_AGENTS ? "/agents" : "/capabilities") == 0);
		break;
	}
	case HTTP_EP_ACTION: {
		const char *q = strchr(rq->target, '?');
		int calls = 0, n;

		FZ_CHECK(strcmp(rq->method, "POST") == 0);
		FZ_CHECK(!view->stopping);
		FZ_CHECK(view->token[0] != '\0');
		FZ_CHECK(rq->authorization != NULL &&
		    strncmp(rq->authorization, "Bearer ", 7) == 0 &&
		    strcmp(rq->authorization + 7, view->token) == 0);
		FZ_CHECK(proto_valid_name(rt->agent, strlen(rt->agent)) == 0);
		n = fake_instances(&calls, rt->agent);
		FZ_CHECK(n >= 0);
		FZ_CHECK(strcmp(http_action_name(rt->action), "?") != 0);
		FZ_CHECK(rt->lo >= 1 && rt->hi <= (unsigned)n);
		FZ_CHECK(rt->lo <= rt->hi || (rt->lo == 1 && rt->hi == 0));
		FZ_CHECK(rt->lo == rt->hi || (rt->lo == 1 &&
		    rt->hi == (unsigned)n));
		FZ_CHECK(rt->lo == rt->hi || q == NULL ||
		    strspn(q + 1, "&") == strlen(q + 1));
		break;
	}
	default:
		FZ_CHECK(0);    /* an endpoint nobody answers */
	}
	FZ_CHECK(status == 200);
	FZ_CHECK(rt->error[0] == '\0');
	FZ_CHECK(rq->body_len <= HTTP_BODY_MAX);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = { "GET", "POST", "HEAD" };
	const uint8_t *p = data, *end = data + size;
	struct http_request rq;
	struct http_decision r1, r2;
	struct http_view view;
	char *method, *target, *auth, *full = NULL, *body;
	unsigned flags, st1, st2;
	int calls = 0;

	if (size == 0)
		return 0;
	flags = *p++;
	method = part(&p, end);
	target = part(&p, end);
	auth = part(&p, end);

	if (flags & 0x20) {
		size_t al = strlen(auth);

		full = malloc(7 + strlen(FZ_TOKEN) + al + 1);
		FZ_CHECK(full != NULL);
		memcpy(full, "Bearer " FZ_TOKEN, 7 + strlen(FZ_TOKEN));
		memcpy(full + 7 + strlen(FZ_TOKEN), auth, al + 1);
	}
	rq.method = (flags & 3) == 3 ? method : methods[flags & 3];
	rq.target = target;
	rq.authorization = flags & 0x04 ? NULL : full != NULL ? full : auth;
	/* The body in its own allocation, so that ASan sees its end. */
	rq.body_len = (size_t)(end - p);
	body = NULL;
	if (rq.body_len > 0) {
		FZ_CHECK((body = malloc(rq.body_len)) != NULL);
		memcpy(body, p, rq.body_len);
	}
	rq.body = body;
	view.token = flags & 0x08 ? "" : FZ_TOKEN;
	view.stopping = (flags & 0x10) != 0;
	view.agent_instances = fake_instances;
	view.arg = &calls;

	st1 = http_route(&view, &rq, &r1);
	check_route(&view, &rq, &r1, st1);
	st2 = http_route(&view, &rq, &r2);
	FZ_CHECK(st1 == st2 && r1.ep == r2.ep);
	FZ_CHECK(strcmp(r1.error, r2.error) == 0);
	FZ_CHECK(strcmp(r1.agent, r2.agent) == 0);
	if (r1.ep == HTTP_EP_ACTION)
		FZ_CHECK(r1.action == r2.action && r1.lo == r2.lo &&
		    r1.hi == r2.hi);
	FZ_CHECK(calls <= 2);      /* one agent lookup a request at most */

	free(body);
	free(full);
	free(auth);
	free(target);
	free(method);
	return 0;
}
