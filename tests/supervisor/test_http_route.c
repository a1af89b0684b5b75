/*
 * test_http_route.c - http_route (supervisor/http_route.c), the HTTP
 * API's pure router, on a table of its own: the request-target as the
 * client sent it, split at '/' and then decoded strictly, the query
 * against the names a route takes, the token and hived stopping.  Each
 * case gives the exact status, code and error text.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "http.h"
#include "sse.h"

#define TOKEN "s3cret"

static void
nop(struct api_req *req)
{
	(void)req;
}

static const struct api_route test_routes[] = {
	{ "GET", "/health", "", 0, nop },
	{ "GET", "/agents", "", 0, nop },
	{ "POST", "/agents/{}/restart", "instance", API_CHANGE, nop },
	{ "GET", "/tasks", "state,limit,cursor", 0, nop },
	{ "POST", "/tasks", "", API_CHANGE | API_BODY, nop },
	{ "GET", "/tasks/{}", "", 0, nop },
	{ "POST", "/dead/{}/retry", "", API_CHANGE, nop },
	{ "GET", "/a/{}/b/{}", "", 0, nop },
	{ "GET", "/events", "types,last_event_id", API_STREAM, nop },
	{ "GET", "/", "", API_TEXT | API_PUBLIC, nop },
	{ "GET", "/ui/{}", "", API_TEXT | API_PUBLIC, nop },
	{ NULL, NULL, NULL, 0, NULL },
};

static const struct api_route *const test_tables[] = { test_routes, NULL };

static unsigned
route_as(int stopping, int auth_reads, const char *token, const char *method,
    const char *target, const char *auth, struct http_decision *out)
{
	struct http_view view = { token, stopping, auth_reads, test_tables };
	struct http_request rq = { method, target, auth };

	return http_route(&view, &rq, out);
}

static unsigned
route(const char *method, const char *target, const char *auth,
    struct http_decision *out)
{
	return route_as(0, 0, TOKEN, method, target, auth, out);
}

static void
expect_error(const char *method, const char *target, unsigned status,
    const char *code, const char *error)
{
	struct http_decision d;

	cr_assert_eq(route(method, target, "Bearer " TOKEN, &d), status,
	    "%s %s: %u, not %u (%s)", method, target, d.status, status, d.error);
	cr_assert_null(d.route, "%s %s", method, target);
	cr_assert_str_eq(d.code, code, "%s %s", method, target);
	cr_assert_str_eq(d.error, error, "%s %s", method, target);
}

/* target routes to the row whose path is path; returns the decision. */
static struct http_decision
expect_route(const char *method, const char *target, const char *path)
{
	struct http_decision d;

	cr_assert_eq(route(method, target, "Bearer " TOKEN, &d), 200,
	    "%s %s: %u (%s)", method, target, d.status, d.error);
	cr_assert_not_null(d.route);
	cr_assert_str_eq(d.route->path, path, "%s %s", method, target);
	cr_assert_str_eq(d.code, "");
	cr_assert_str_eq(d.error, "");
	return d;
}

#define BAD_PATH "malformed path: a bad %-escape, or a byte that is not " \
    "printable ASCII"

Test(http_route, segments_are_decoded_one_by_one)
{
	struct http_decision d;

	d = expect_route("POST", "/agents/echo/restart", "/agents/{}/restart");
	cr_assert_eq(d.nargs, 1);
	cr_assert_str_eq(d.args[0], "echo");
	/* Escapes of plain characters are decoded, once. */
	d = expect_route("POST", "/agents/%65cho/restart", "/agents/{}/restart");
	cr_assert_str_eq(d.args[0], "echo");
	expect_route("GET", "/%61gents", "/agents");
	/* An escaped '/' stays inside its segment: a task id may hold one. */
	d = expect_route("GET", "/tasks/a%2Fb", "/tasks/{}");
	cr_assert_str_eq(d.args[0], "a/b");
	d = expect_route("GET", "/tasks/job%3f1", "/tasks/{}");
	cr_assert_str_eq(d.args[0], "job?1");
	d = expect_route("GET", "/tasks/%252f", "/tasks/{}");
	cr_assert_str_eq(d.args[0], "%2f");
	d = expect_route("GET", "/a/x/b/y", "/a/{}/b/{}");
	cr_assert_eq(d.nargs, 2);
	cr_assert_str_eq(d.args[0], "x");
	cr_assert_str_eq(d.args[1], "y");
	/* 128 bytes is an id; 129 is none: no such task can exist. */
	{
		char t[300];

		memset(t, 0, sizeof(t));
		memcpy(t, "/tasks/", 7);
		memset(t + 7, 'x', 128);
		d = expect_route("GET", t, "/tasks/{}");
		cr_assert_eq(strlen(d.args[0]), 128);
		t[7 + 128] = 'x';
		expect_error("GET", t, 404, "not_found", "no such path");
	}
}

Test(http_route, path_is_strict)
{
	expect_error("POST", "/agents/echo%2frestart", 404, "not_found",
	    "no such path");
	expect_error("POST", "/agents/echo/restart%00", 400, "bad_request",
	    BAD_PATH);
	expect_error("GET", "/tasks/a%00b", 400, "bad_request", BAD_PATH);
	expect_error("GET", "/tasks/a%0ab", 400, "bad_request", BAD_PATH);
	expect_error("POST", "/agents/echo/restart%", 400, "bad_request",
	    BAD_PATH);
	expect_error("POST", "/agents/echo/restart%4", 400, "bad_request",
	    BAD_PATH);
	expect_error("POST", "/agents/echo/res%20tart", 400, "bad_request",
	    BAD_PATH);
	expect_error("POST", "/agents/echo/restart\x7f", 400, "bad_request",
	    BAD_PATH);
	expect_error("POST", "/agents/echo/r\xc3\xa9start", 400, "bad_request",
	    BAD_PATH);
	expect_error("POST", "/agents/echo/restart/", 404, "not_found",
	    "no such path");
	expect_error("POST", "/agents//restart", 404, "not_found",
	    "no such path");
	expect_error("GET", "/tasks/", 404, "not_found", "no such path");
	expect_error("GET", "//tasks", 404, "not_found", "no such path");
	expect_error("GET", "/nothing", 404, "not_found", "no such path");
	expect_error("GET", "nothing", 404, "not_found", "no such path");
	expect_error("GET", "", 404, "not_found", "no such path");
	expect_error("GET", "/1/2/3/4/5/6/7/8/9", 404, "not_found",
	    "no such path");
}

Test(http_route, methods)
{
	struct http_decision d;

	expect_route("HEAD", "/health", "/health");
	expect_route("HEAD", "/tasks/x", "/tasks/{}");
	d = expect_route("POST", "/tasks", "/tasks");
	cr_assert_str_eq(d.route->method, "POST");
	d = expect_route("GET", "/tasks", "/tasks");
	cr_assert_str_eq(d.route->method, "GET");
	expect_error("POST", "/health", 405, "method_not_allowed",
	    "/health needs GET");
	expect_error("GET", "/agents/echo/restart", 405, "method_not_allowed",
	    "/agents/{}/restart needs POST");
	expect_error("HEAD", "/agents/echo/restart", 405, "method_not_allowed",
	    "/agents/{}/restart needs POST");
	expect_error("DELETE", "/tasks/x", 405, "method_not_allowed",
	    "/tasks/{} needs GET");
}

/* An event stream answers GET only: HEAD would end it at once. */
Test(http_route, streams_are_get_only)
{
	struct http_decision d;

	d = expect_route("GET", "/events?types=agent", "/events");
	cr_assert(d.route->flags & API_STREAM);
	expect_error("HEAD", "/events", 405, "method_not_allowed",
	    "/events needs GET");
	expect_error("POST", "/events", 405, "method_not_allowed",
	    "/events needs GET");
}

Test(http_route, query_is_strict)
{
	struct http_decision d;

	d = expect_route("POST", "/agents/echo/restart?instance=2",
	    "/agents/{}/restart");
	cr_assert_eq(d.nquery, 1);
	cr_assert_str_eq(d.query[0].name, "instance");
	cr_assert_str_eq(d.query[0].value, "2");
	d = expect_route("GET", "/tasks?&state=queued&&limit=%31&", "/tasks");
	cr_assert_eq(d.nquery, 2);
	cr_assert_str_eq(d.query[1].value, "1");
	d = expect_route("GET", "/tasks?cursor=a%2Bb+c", "/tasks");
	cr_assert_str_eq(d.query[0].value, "a+b+c");
	expect_route("GET", "/tasks?", "/tasks");

	/* Given without a value: never "every instance". */
	expect_error("POST", "/agents/echo/restart?instance", 400,
	    "bad_request", "instance needs a value: instance=...");
	expect_error("POST", "/agents/echo/restart?instance=", 400,
	    "bad_request", "instance needs a value: instance=...");
	expect_error("POST", "/agents/echo/restart?instance=1&instance=2", 400,
	    "bad_request", "instance given twice");
	expect_error("POST", "/agents/echo/restart?instance=1%00junk", 400,
	    "bad_request", "instance: a bad %-escape, or a byte that is not "
	    "printable ASCII");
	expect_error("POST", "/agents/echo/restart?instance=%zz", 400,
	    "bad_request", "instance: a bad %-escape, or a byte that is not "
	    "printable ASCII");
	/* A misspelt argument must not mean every instance. */
	expect_error("POST", "/agents/echo/restart?instanse=1", 400,
	    "bad_request", "unknown query argument (/agents/{}/restart takes: "
	    "instance)");
	expect_error("POST", "/agents/echo/restart?Instance=1", 400,
	    "bad_request", "unknown query argument (/agents/{}/restart takes: "
	    "instance)");
	expect_error("POST", "/agents/echo/restart?instance%00=1", 400,
	    "bad_request", "unknown query argument (/agents/{}/restart takes: "
	    "instance)");
	expect_error("GET", "/health?instance=1", 400, "bad_request",
	    "/health takes no query arguments");
	expect_error("GET", "/tasks?stat=x", 400, "bad_request",
	    "unknown query argument (/tasks takes: state,limit,cursor)");
	/* "state" is not "state,limit" nor "stat" */
	expect_error("GET", "/tasks?state%2Climit=1", 400, "bad_request",
	    "unknown query argument (/tasks takes: state,limit,cursor)");
	{
		char t[1200];

		snprintf(t, sizeof(t), "/tasks?cursor=%0600d", 0);
		expect_error("GET", t, 400, "bad_request",
		    "cursor: longer than 511 bytes");
	}
}

Test(http_route, token)
{
	struct http_decision d;

	/* Reads need none; changes need it. */
	cr_assert_eq(route("GET", "/tasks", NULL, &d), 200);
	cr_assert_eq(route("POST", "/agents/echo/restart", NULL, &d), 401);
	cr_assert_str_eq(d.code, "unauthorized");
	cr_assert_str_eq(d.error, "missing bearer token");
	cr_assert_eq(route("POST", "/agents/echo/restart", "Basic s3cret", &d),
	    401);
	cr_assert_eq(route("POST", "/agents/echo/restart", "Bearer s3cre", &d),
	    403);
	cr_assert_str_eq(d.code, "forbidden");
	cr_assert_str_eq(d.error, "wrong token");
	cr_assert_eq(route("POST", "/agents/echo/restart", "Bearer s3cret2",
	    &d), 403);
	cr_assert_eq(route("POST", "/agents/echo/restart", "Bearer ", &d), 403);
	/* No token at all: control is off. */
	cr_assert_eq(route_as(0, 0, "", "POST", "/tasks", "Bearer x", &d), 403);
	cr_assert_str_eq(d.error, "control is off: no token_file in [hive]");
	cr_assert_eq(route_as(0, 0, "", "GET", "/tasks", NULL, &d), 200);
	/* http_auth_reads: the GETs too. */
	cr_assert_eq(route_as(0, 1, TOKEN, "GET", "/tasks", NULL, &d), 401);
	cr_assert_eq(route_as(0, 1, TOKEN, "HEAD", "/health", "Bearer x", &d),
	    403);
	cr_assert_eq(route_as(0, 1, TOKEN, "GET", "/tasks", "Bearer " TOKEN,
	    &d), 200);
	cr_assert_eq(route_as(0, 1, "", "GET", "/tasks", NULL, &d), 403);
	/* Path and method come before the token: an unknown path is a 404
	 * whoever asks. */
	cr_assert_eq(route("POST", "/nope", NULL, &d), 404);
}

/* The dashboard's files (API_PUBLIC) need no token, even with
 * http_auth_reads or without a token_file; "/" is a path of its own. */
Test(http_route, public_routes_need_no_token)
{
	struct http_decision d;

	d = expect_route("GET", "/", "/");
	cr_assert_eq(d.nargs, 0);
	d = expect_route("GET", "/ui/app.js", "/ui/{}");
	cr_assert_str_eq(d.args[0], "app.js");
	cr_assert_eq(route_as(0, 1, TOKEN, "GET", "/", NULL, &d), 200);
	cr_assert_eq(route_as(0, 1, TOKEN, "HEAD", "/ui/app.css", NULL, &d),
	    200);
	cr_assert_eq(route_as(0, 1, "", "GET", "/ui/app.js", NULL, &d), 200);
	cr_assert_eq(route_as(0, 1, TOKEN, "GET", "/agents", NULL, &d), 401);
	cr_assert_eq(route("POST", "/", NULL, &d), 405);
	cr_assert_eq(route("GET", "/ui", NULL, &d), 404);
	cr_assert_eq(route("GET", "/ui/a/b", NULL, &d), 404);
}

Test(http_route, stopping_refuses_changes_only)
{
	struct http_decision d;

	cr_assert_eq(route_as(1, 0, TOKEN, "POST", "/agents/echo/restart",
	    "Bearer " TOKEN, &d), 503);
	cr_assert_str_eq(d.code, "unavailable");
	cr_assert_str_eq(d.error, "hived is stopping");
	/* The token is checked first: no information without it. */
	cr_assert_eq(route_as(1, 0, TOKEN, "POST", "/agents/echo/restart",
	    NULL, &d), 401);
	cr_assert_eq(route_as(1, 0, TOKEN, "GET", "/health", NULL, &d), 200);
}
