/*
 * fuzz_http.c - libFuzzer target for the HTTP API's router (http_route,
 * supervisor/http_route.c): method, request-target (path and query,
 * escapes and all, as the client sent it) and Authorization header,
 * against hived's route table for agents (api_agents.c) and one of its
 * own with two {} segments and query arguments.
 *
 * The input is cut at its first three NUL bytes:
 *
 *   +-------+--------+-----+--------+-----+------+-----+--------+
 *   | flags | method | NUL | target | NUL | auth | NUL | unused |
 *   +-------+--------+-----+--------+-----+------+-----+--------+
 *     1 byte
 *
 *   flags  bit 0-1  method: 0 GET, 1 POST, 2 HEAD, 3 the bytes given
 *          bit 2    no Authorization header (auth is ignored)
 *          bit 3    hived has no token ("" : control off)
 *          bit 4    hived is stopping
 *          bit 5    auth is "Bearer " + the right token + the auth bytes
 *          bit 6    http_auth_reads: the GETs need the token too
 *
 * A missing part is empty.  Whatever the input, http_route must not
 * crash, read out of bounds or leak, must answer 200..599, must decide
 * the same twice, and:
 *   - an error has a status >= 400, a code, and a text that is valid
 *     UTF-8 (it goes out as a JSON string: jansson refuses anything else,
 *     and the client would get no answer);
 *   - a route is chosen only for its method (GET for HEAD too), with as
 *     many {} values as its path has, each 1..128 printable bytes, and
 *     query arguments it names, each once, with a value;
 *   - a route that changes something only with the right bearer token
 *     and never while hived stops; a read with the token when
 *     http_auth_reads says so.
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

static void
nop(struct api_req *req)
{
	(void)req;
}

static const struct api_route fz_routes[] = {
	{ "GET", "/tasks", "state,capability,agent,limit,cursor", 0, nop },
	{ "GET", "/tasks/{}", "", 0, nop },
	{ "POST", "/dead/{}/retry", "", API_CHANGE, nop },
	{ "GET", "/a/{}/b/{}", "x", 0, nop },
	{ NULL, NULL, NULL, 0, NULL },
};

static const struct api_route *const fz_tables[] = {
	api_agents_routes, fz_routes, NULL
};

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

static int
count_args(const char *path)
{
	int n = 0;

	for (const char *p = path; (p = strstr(p, "{}")) != NULL; p += 2)
		n++;
	return n;
}

static int
in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; *p != '\0';) {
		size_t len = strcspn(p, ",");

		if (len == n && memcmp(p, name, n) == 0)
			return 1;
		p += len + (p[len] == ',');
	}
	return 0;
}

static void
check_route(const struct http_view *view, const struct http_request *rq,
    const struct http_decision *rt, unsigned status)
{
	const struct api_route *r = rt->route;
	json_t *j;

	FZ_CHECK(status == rt->status);
	FZ_CHECK(status >= 200 && status <= 599);
	FZ_CHECK(memchr(rt->error, '\0', sizeof(rt->error)) != NULL);
	if (r == NULL) {
		FZ_CHECK(status >= 400);
		FZ_CHECK(rt->error[0] != '\0' && rt->code[0] != '\0');
		/* What http.c sends: it must exist for every error. */
		j = json_pack("{s:{s:s, s:s}}", "error", "code", rt->code,
		    "message", rt->error);
		FZ_CHECK(j != NULL);
		json_decref(j);
		return;
	}
	FZ_CHECK(status == 200);
	FZ_CHECK(rt->error[0] == '\0');
	FZ_CHECK(strcmp(r->method, rq->method) == 0 ||
	    (strcmp(rq->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0));
	FZ_CHECK((int)rt->nargs == count_args(r->path));
	for (unsigned i = 0; i < rt->nargs; i++) {
		size_t n = strlen(rt->args[i]);

		FZ_CHECK(n >= 1 && n <= HIVE_ID_MAX);
		for (size_t k = 0; k < n; k++)
			FZ_CHECK(rt->args[i][k] > 0x20 && rt->args[i][k] < 0x7f);
	}
	for (unsigned i = 0; i < rt->nquery; i++) {
		FZ_CHECK(in_list(r->query, rt->query[i].name));
		FZ_CHECK(rt->query[i].value[0] != '\0');
		for (unsigned k = 0; k < i; k++)
			FZ_CHECK(strcmp(rt->query[k].name,
			    rt->query[i].name) != 0);
	}
	if ((r->flags & API_CHANGE) || view->auth_reads) {
		FZ_CHECK(view->token[0] != '\0');
		FZ_CHECK(rq->authorization != NULL &&
		    strncmp(rq->authorization, "Bearer ", 7) == 0 &&
		    strcmp(rq->authorization + 7, view->token) == 0);
	}
	if (r->flags & API_CHANGE)
		FZ_CHECK(!view->stopping);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = { "GET", "POST", "HEAD" };
	const uint8_t *p = data, *end = data + size;
	struct http_request rq;
	struct http_decision r1, r2;
	struct http_view view;
	char *method, *target, *auth, *full = NULL;
	unsigned flags, st1, st2;

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
	view.token = flags & 0x08 ? "" : FZ_TOKEN;
	view.stopping = (flags & 0x10) != 0;
	view.auth_reads = (flags & 0x40) != 0;
	view.tables = fz_tables;

	st1 = http_route(&view, &rq, &r1);
	check_route(&view, &rq, &r1, st1);
	st2 = http_route(&view, &rq, &r2);
	FZ_CHECK(st1 == st2 && r1.route == r2.route);
	FZ_CHECK(strcmp(r1.error, r2.error) == 0);
	FZ_CHECK(r1.nargs == r2.nargs && r1.nquery == r2.nquery);

	free(full);
	free(auth);
	free(target);
	free(method);
	return 0;
}
