/*
 * http.h - the HTTP API's routing, apart from libmicrohttpd.
 *
 * http_route (http_route.c) takes a request line and its Authorization
 * header as plain strings, finds the route (api.h) that answers it in the
 * tables it is given, and checks everything a route row says before its
 * endpoint runs: method, path and its {} segments, query arguments,
 * token, hived stopping.  It reads nothing else, so the tests and the
 * libFuzzer target (tests/fuzz/fuzz_http.c) call it with any input.  The
 * body is http.c's: its size, and JSON for the routes that take one.
 */
#ifndef HIVE_HTTP_H
#define HIVE_HTTP_H

#include <stddef.h>

#include "api.h"
#include "hive_proto.h"

#define HTTP_ERROR_MAX  256       /* an error text, with its NUL */
#define HTTP_PATH_MAX   512       /* a request-target's path, as sent */
#define HTTP_QNAME_MAX  24        /* a query argument's name, with its NUL */
#define HTTP_QVALUE_MAX 512       /* its value, decoded, with its NUL */

/*
 * A request, borrowed by http_route.  target is the request-target
 * exactly as the client sent it (path and query, percent-escapes left
 * in): http_route splits the path at '/' and then decodes each segment,
 * so that an escaped '/' stays inside a segment (a task id may hold one)
 * and an escaped NUL or control byte is refused.
 */
struct http_request {
	const char *method;          /* "GET", "HEAD", "POST", ... */
	const char *target;          /* "/agents/x/restart?instance=2" */
	const char *authorization;   /* the header's value, or NULL */
};

/* What routing may know of hived. */
struct http_view {
	const char *token;           /* the control token, "" when none */
	int stopping;                /* hived is shutting down */
	int auth_reads;              /* [hive] http_auth_reads: GETs too */
	/* The route tables, the list ending with NULL. */
	const struct api_route *const *tables;
};

struct http_qarg {
	char name[HTTP_QNAME_MAX];
	char value[HTTP_QVALUE_MAX];
};

struct http_decision {
	const struct api_route *route;   /* NULL: an error */
	unsigned status;             /* 200, or the error's 4xx/5xx */
	const char *code;            /* the error's code (api.h), "" on 200 */
	char error[HTTP_ERROR_MAX];  /* the error text (UTF-8), "" on 200 */
	char args[API_ARGS_MAX][HIVE_ID_MAX + 1];
	unsigned nargs;
	struct http_qarg query[API_QUERY_MAX];
	unsigned nquery;
};

/*
 * Route rq against view into *out and return out->status.  Never fails:
 * every input gets a status in 200..599, and an error a code and a text
 * that is valid UTF-8.  Reads nothing but rq and what view gives.
 */
unsigned http_route(const struct http_view *view,
    const struct http_request *rq, struct http_decision *out);
/* Constant time in the length of want: 1 when got equals it. */
int http_token_ok(const char *want, const char *got);

#endif
