/*
 * http_route.c - the HTTP API's pure router (http.h): which route of the
 * tables answers a request, its path segments and query arguments
 * decoded, and the checks every route row asks for.  No MHD, no hived
 * structures: the tests and tests/fuzz/fuzz_http.c call it with anything.
 *
 * The checks, in the order a client sees them: the path (its escapes,
 * then which route), the method, the query, the token, hived stopping.
 */
#include "http.h"
#include "sse.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define HTTP_SEGS_MAX 8              /* a path of more is no route's */

int
http_token_ok(const char *want, const char *got)
{
	size_t wl = strlen(want), gl = strlen(got);
	unsigned char d = wl != gl;

	for (size_t i = 0; i < wl; i++)
		d |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? got[i] : 0);
	return d == 0;
}

static unsigned __attribute__((format(printf, 4, 5)))
route_fail(struct http_decision *out, unsigned status, const char *code,
    const char *fmt, ...)
{
	va_list ap;

	out->route = NULL;
	out->status = status;
	out->code = code;
	va_start(ap, fmt);
	vsnprintf(out->error, sizeof(out->error), fmt, ap);
	va_end(ap);
	return status;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decode the n bytes at s into out (outsz bytes with the NUL):
 * the decoded length; -1 when an escape is malformed or when a byte, as
 * sent or decoded, is not printable ASCII (a space, NUL or control byte
 * included); -2 when the result does not fit.  Nothing is decoded twice:
 * "%252f" is "%2f".  '+' is a '+', not a space.
 */
static int
pct_decode(const char *s, size_t n, char *out, size_t outsz)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			int hi, lo;

			if (n - i < 3 || (hi = hexval(s[i + 1])) < 0 ||
			    (lo = hexval(s[i + 2])) < 0)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c <= 0x20 || c > 0x7e)
			return -1;
		if (o + 1 >= outsz)
			return -2;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

/* The raw path split at '/': segs[i] points into path, lens[i] its
 * length.  The number of segments, or -1 when there are too many. */
static int
split_path(const char *path, size_t plen, const char *segs[],
    size_t lens[])
{
	int n = 0;
	size_t i = 1;

	while (i <= plen) {
		const char *s = path + i;
		const char *e = memchr(s, '/', plen - i);
		size_t len = e != NULL ? (size_t)(e - s) : plen - i;

		if (n == HTTP_SEGS_MAX)
			return -1;
		segs[n] = s;
		lens[n++] = len;
		i += len + 1;
	}
	return n;
}

/*
 * Whether route r's path matches the n decoded segments dec; its {}
 * values go to out->args.  A literal segment of the pattern is compared
 * decoded: "/t%61sks" is "/tasks".
 */
static int
path_matches(const struct api_route *r, char dec[][HIVE_ID_MAX + 1],
    const int declen[], int n, struct http_decision *out)
{
	const char *p = r->path;
	unsigned nargs = 0;

	for (int i = 0; i < n; i++) {
		const char *e;
		size_t len;

		if (*p != '/')
			return 0;
		p++;
		e = strchr(p, '/');
		len = e != NULL ? (size_t)(e - p) : strlen(p);
		if (len == 2 && memcmp(p, "{}", 2) == 0) {
			if (declen[i] < 1 || nargs == API_ARGS_MAX)
				return 0;
			nargs++;
		} else if (declen[i] < 0 || (size_t)declen[i] != len ||
		    memcmp(dec[i], p, len) != 0)
			return 0;
		p += len;
	}
	if (*p != '\0')
		return 0;
	out->nargs = 0;
	p = r->path;
	for (int i = 0; i < n; i++) {
		p = strchr(p, '/') + 1;
		if (strncmp(p, "{}", 2) == 0 && (p[2] == '/' || p[2] == '\0'))
			memcpy(out->args[out->nargs++], dec[i],
			    (size_t)declen[i] + 1);
	}
	return 1;
}

/* Whether name is one of the comma-separated names of list. */
static int
in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	while (*list != '\0') {
		const char *c = strchr(list, ',');
		size_t len = c != NULL ? (size_t)(c - list) : strlen(list);

		if (len == n && memcmp(list, name, n) == 0)
			return 1;
		list += len + (c != NULL);
	}
	return 0;
}

/* The query (after '?', NULL when none) into out->query, against the
 * names route r takes.  0, or -1 after route_fail. */
static int
route_query(const char *q, const struct api_route *r,
    struct http_decision *out)
{
	out->nquery = 0;
	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&');
		const char *end = amp != NULL ? amp : q + strlen(q);
		const char *eq = memchr(q, '=', (size_t)(end - q));
		const char *kend = eq != NULL ? eq : end;
		struct http_qarg *a = &out->query[out->nquery];

		if (end == q) {                  /* "&&": nothing */
			q = end + 1;
			continue;
		}
		if (pct_decode(q, (size_t)(kend - q), a->name, sizeof(a->name)) <
		    0 || !in_list(r->query, a->name)) {
			if (r->query[0] == '\0')
				return route_fail(out, 400, "bad_request",
				    "%s takes no query arguments", r->path), -1;
			return route_fail(out, 400, "bad_request",
			    "unknown query argument (%s takes: %s)", r->path,
			    r->query), -1;
		}
		for (unsigned i = 0; i < out->nquery; i++)
			if (strcmp(out->query[i].name, a->name) == 0)
				return route_fail(out, 400, "bad_request",
				    "%s given twice", a->name), -1;
		if (eq == NULL)
			return route_fail(out, 400, "bad_request",
			    "%s needs a value: %s=...", a->name, a->name), -1;
		switch (pct_decode(eq + 1, (size_t)(end - eq - 1), a->value,
		    sizeof(a->value))) {
		case -1:
			return route_fail(out, 400, "bad_request", "%s: a bad "
			    "%%-escape, or a byte that is not printable ASCII",
			    a->name), -1;
		case -2:
			return route_fail(out, 400, "bad_request",
			    "%s: longer than %d bytes", a->name,
			    HTTP_QVALUE_MAX - 1), -1;
		}
		if (a->value[0] == '\0')
			return route_fail(out, 400, "bad_request",
			    "%s needs a value: %s=...", a->name, a->name), -1;
		if (++out->nquery == API_QUERY_MAX && amp != NULL)
			return route_fail(out, 400, "bad_request",
			    "too many query arguments"), -1;
		q = amp != NULL ? amp + 1 : end;
	}
	return 0;
}

/* The route of the tables whose path matches, preferring one whose
 * method does; *path_only set when only the path did. */
static const struct api_route *
find_route(const struct http_view *view, const char *method,
    char dec[][HIVE_ID_MAX + 1], const int declen[], int n,
    struct http_decision *out, const struct api_route **path_only)
{
	int head = strcmp(method, "HEAD") == 0;

	*path_only = NULL;
	for (const struct api_route *const *t = view->tables; *t != NULL; t++)
		for (const struct api_route *r = *t; r->method != NULL; r++) {
			if (!path_matches(r, dec, declen, n, out))
				continue;
			/* A stream answers GET only: HEAD would end at
			 * once, with nothing to say. */
			if (strcmp(r->method, method) == 0 ||
			    (head && strcmp(r->method, "GET") == 0 &&
			    !(r->flags & API_STREAM)))
				return r;
			if (*path_only == NULL)
				*path_only = r;
		}
	return NULL;
}

unsigned
http_route(const struct http_view *view, const struct http_request *rq,
    struct http_decision *out)
{
	const char *q = strchr(rq->target, '?'), *segs[HTTP_SEGS_MAX], *auth;
	char dec[HTTP_SEGS_MAX][HIVE_ID_MAX + 1];
	int declen[HTTP_SEGS_MAX], n;
	size_t lens[HTTP_SEGS_MAX];
	size_t plen = q != NULL ? (size_t)(q - rq->target) : strlen(rq->target);
	const struct api_route *r, *other;

	memset(out, 0, sizeof(*out));
	out->status = 200;
	out->code = "";
	if (rq->target[0] != '/' || plen > HTTP_PATH_MAX ||
	    (n = split_path(rq->target, plen, segs, lens)) < 0)
		return route_fail(out, 404, "not_found", "no such path");
	for (int i = 0; i < n; i++) {
		declen[i] = pct_decode(segs[i], lens[i], dec[i], sizeof(dec[i]));
		if (declen[i] == -1)
			return route_fail(out, 400, "bad_request", "malformed "
			    "path: a bad %%-escape, or a byte that is not "
			    "printable ASCII");
	}
	if ((r = find_route(view, rq->method, dec, declen, n, out, &other)) ==
	    NULL) {
		if (other != NULL)
			return route_fail(out, 405, "method_not_allowed",
			    "%s needs %s", other->path, other->method);
		return route_fail(out, 404, "not_found", "no such path");
	}
	if (route_query(q != NULL ? q + 1 : NULL, r, out) == -1)
		return out->status;

	if ((r->flags & API_CHANGE) ||
	    (view->auth_reads && !(r->flags & API_PUBLIC))) {
		if (view->token[0] == '\0')
			return route_fail(out, 403, "forbidden", "%s",
			    r->flags & API_CHANGE ? "control is off: no "
			    "token_file in [hive]" : "reads need the token and "
			    "there is none: no token_file in [hive]");
		auth = rq->authorization;
		if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0)
			return route_fail(out, 401, "unauthorized",
			    "missing bearer token");
		if (!http_token_ok(view->token, auth + 7))
			return route_fail(out, 403, "forbidden", "wrong token");
	}
	if ((r->flags & API_CHANGE) && view->stopping)
		return route_fail(out, 503, "unavailable", "hived is stopping");
	out->route = r;
	return out->status;
}
