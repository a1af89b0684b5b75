/*
 * test_http_route.c - http_route (supervisor/http.c), the HTTP API's pure
 * router: the request-target as the client sent it, decoded strictly.
 * Each case gives the exact status, endpoint, instances and error text.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "http.h"

#define TOKEN "s3cret"

/* Agents "echo" (3 instances) and "one" (1). */
static int
instances(void *arg, const char *name)
{
	if (strcmp(name, "echo") == 0)
		return 3;
	if (strcmp(name, "one") == 0)
		return 1;
	return -1;
}

static unsigned
route(const char *method, const char *target, const char *auth,
    struct http_decision *out)
{
	struct http_view view = { TOKEN, 0, instances, NULL };
	struct http_request rq = { method, target, auth, NULL, 0 };

	return http_route(&view, &rq, out);
}

static void
expect_error(const char *method, const char *target, unsigned status,
    const char *error)
{
	struct http_decision d;

	cr_assert_eq(route(method, target, "Bearer " TOKEN, &d), status,
	    "%s %s: %u, not %u (%s)", method, target, d.status, status, d.error);
	cr_assert_eq(d.ep, HTTP_EP_ERROR, "%s %s", method, target);
	cr_assert_str_eq(d.error, error, "%s %s", method, target);
}

static void
expect_action(const char *target, enum http_action a, unsigned lo,
    unsigned hi)
{
	struct http_decision d;

	cr_assert_eq(route("POST", target, "Bearer " TOKEN, &d), 200,
	    "%s: %u (%s)", target, d.status, d.error);
	cr_assert_eq(d.ep, HTTP_EP_ACTION, "%s", target);
	cr_assert_str_eq(d.agent, "echo");
	cr_assert_eq(d.action, a, "%s", target);
	cr_assert_eq(d.lo, lo, "%s: lo %u", target, d.lo);
	cr_assert_eq(d.hi, hi, "%s: hi %u", target, d.hi);
	cr_assert_str_eq(d.error, "");
}

#define BAD_PATH "malformed path: a bad %-escape, an escaped '/' or '?', " \
    "or a byte that is not printable ASCII"
#define BAD_INST "instance must be a number 1..9999"
#define UNKNOWN_ARG "unknown query argument (the only one is instance=N, " \
    "on actions)"

Test(http_route, actions_and_instances)
{
	expect_action("/agents/echo/restart", HTTP_ACT_RESTART, 1, 3);
	expect_action("/agents/echo/sleep?instance=2", HTTP_ACT_SLEEP, 2, 2);
	expect_action("/agents/echo/wake?instance=3", HTTP_ACT_WAKE, 3, 3);
	expect_action("/agents/echo/reset?", HTTP_ACT_RESET, 1, 3);
	expect_action("/agents/echo/reset?&", HTTP_ACT_RESET, 1, 3);
	/* Escapes of plain characters are decoded, once. */
	expect_action("/agents/%65cho/restart?instance=%31", HTTP_ACT_RESTART,
	    1, 1);
	expect_action("/agents/echo/restart?&instance=1&", HTTP_ACT_RESTART,
	    1, 1);
}

Test(http_route, instance_is_strict)
{
	/* Given without a value: never "every instance". */
	expect_error("POST", "/agents/echo/restart?instance", 400,
	    "instance needs a value: instance=N");
	expect_error("POST", "/agents/echo/restart?instance=", 400, BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=+1", 400, BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=%2b1", 400,
	    BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=%201", 400,
	    BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=1%20", 400,
	    BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=1%00junk", 400,
	    BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=1%00", 400,
	    BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=01", 400, BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=0", 400, BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=-1", 400, BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=1x", 400, BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=10000", 400,
	    BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=99999999999999999999",
	    400, BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=%zz", 400,
	    BAD_INST);
	expect_error("POST", "/agents/echo/restart?instance=1&instance=2", 400,
	    "instance given twice");
	expect_error("POST", "/agents/echo/restart?instance=4", 404,
	    "agent 'echo' has 3 instances");
	/* A misspelt argument must not mean every instance. */
	expect_error("POST", "/agents/echo/restart?instanse=1", 400,
	    UNKNOWN_ARG);
	expect_error("POST", "/agents/echo/restart?Instance=1", 400,
	    UNKNOWN_ARG);
	expect_error("POST", "/agents/echo/restart?instance%00=1", 400,
	    UNKNOWN_ARG);
	expect_error("GET", "/health?instance=1", 400,
	    "/health takes no query arguments");
	expect_error("GET", "/agents?x", 400, UNKNOWN_ARG);
}

Test(http_route, path_is_strict)
{
	/* An escaped '/' does not make a path of three parts. */
	expect_error("POST", "/agents/echo%2frestart", 400, BAD_PATH);
	expect_error("POST", "/agents/echo%2Frestart", 400, BAD_PATH);
	expect_error("POST", "/agents/echo/restart%00", 400, BAD_PATH);
	expect_error("POST", "/agents/echo/restart%3finstance=1", 400,
	    BAD_PATH);
	expect_error("POST", "/agents/echo/restart%", 400, BAD_PATH);
	expect_error("POST", "/agents/echo/restart%4", 400, BAD_PATH);
	expect_error("POST", "/agents/echo/res%20tart", 400, BAD_PATH);
	expect_error("POST", "/agents/echo/restart\x7f", 400, BAD_PATH);
	expect_error("POST", "/agents/echo/r\xc3\xa9start", 400, BAD_PATH);
	expect_error("GET", "/health%00", 400, BAD_PATH);
	/* Decoded once: %25 is a '%', not the start of another escape. */
	expect_error("POST", "/agents/echo%252frestart", 404,
	    "expected /agents/NAME/ACTION");
	expect_error("POST", "/agents/echo/restart/", 404,
	    "expected /agents/NAME/ACTION");
	expect_error("POST", "/agents//restart", 404,
	    "expected /agents/NAME/ACTION");
	expect_error("POST", "/agents/echo/explode", 404,
	    "unknown action 'explode' (restart, sleep, wake, reset)");
	expect_error("POST", "/agents/nope/restart", 404, "no agent 'nope'");
	expect_error("GET", "/nothing", 404, "no such path");
}

Test(http_route, methods_and_token)
{
	struct http_decision d;

	cr_assert_eq(route("GET", "/health", NULL, &d), 200);
	cr_assert_eq(d.ep, HTTP_EP_HEALTH);
	cr_assert_eq(route("GET", "/agents?", NULL, &d), 200);
	cr_assert_eq(d.ep, HTTP_EP_AGENTS);
	cr_assert_eq(route("GET", "/%61gents", NULL, &d), 200);
	cr_assert_eq(d.ep, HTTP_EP_AGENTS);
	cr_assert_eq(route("GET", "/capabilities", NULL, &d), 200);
	cr_assert_eq(d.ep, HTTP_EP_CAPABILITIES);
	expect_error("POST", "/capabilities", 405, "/capabilities needs GET");
	expect_error("GET", "/capabilities?instance=1", 400,
	    "/capabilities takes no query arguments");
	expect_error("POST", "/health", 405, "/health needs GET");
	expect_error("GET", "/agents/echo/restart", 405, "actions need POST");
	cr_assert_eq(route("POST", "/agents/echo/restart", NULL, &d), 401);
	cr_assert_str_eq(d.error, "missing bearer token");
	cr_assert_eq(route("POST", "/agents/echo/restart", "Bearer s3cre", &d),
	    403);
	cr_assert_str_eq(d.error, "wrong token");
}
