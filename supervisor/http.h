/*
 * http.h - the HTTP API's routing, apart from libmicrohttpd.
 *
 * http_route (http.c) takes a request as plain strings and bytes, decides
 * which endpoint answers it and checks everything that can be checked
 * before acting: method, path, agent name, token, action, instance.  It
 * reads hived's state only through struct http_view, so the tests and
 * the libFuzzer target (tests/fuzz/fuzz_http.c) call it with any input.
 * The rest of http.c turns a request from MHD into this form and a
 * decision into an answer.
 */
#ifndef HIVE_HTTP_H
#define HIVE_HTTP_H

#include <stddef.h>

#include "hive_proto.h"

#define HTTP_BODY_MAX   4096      /* no endpoint takes a body: keep it small */
#define HTTP_ERROR_MAX  256       /* an error text, with its NUL */
#define HTTP_PATH_MAX   256       /* a path, decoded: longer is not found */

/*
 * A request, borrowed by http_route: NUL-terminated strings but body.
 * target is the request-target exactly as the client sent it (path and
 * query, percent-escapes left in): http_route decodes it itself, strictly,
 * so that an escaped '/' or NUL cannot change which path or instance a
 * request names.
 */
struct http_request {
	const char *method;          /* "GET", "POST", ... */
	const char *target;          /* "/agents/x/restart?instance=2" */
	const char *authorization;   /* the header's value, or NULL */
	const char *body;            /* body_len bytes; not read when larger */
	size_t body_len;             /* than HTTP_BODY_MAX (it is refused) */
};

/* What routing may know of hived. */
struct http_view {
	const char *token;           /* the control token, "" when none */
	int stopping;                /* hived is shutting down */
	/* How many instances agent `name` has now, -1 when there is no such
	 * agent (or it was removed by a reload). */
	int (*agent_instances)(void *arg, const char *name);
	void *arg;
};

enum http_endpoint {
	HTTP_EP_ERROR = 0,           /* answer status with {"error": error} */
	HTTP_EP_HEALTH,              /* GET /health */
	HTTP_EP_AGENTS,              /* GET /agents */
	HTTP_EP_CAPABILITIES,        /* GET /capabilities */
	HTTP_EP_ACTION,              /* POST /agents/NAME/ACTION */
};

enum http_action {
	HTTP_ACT_RESTART = 0,
	HTTP_ACT_SLEEP,
	HTTP_ACT_WAKE,
	HTTP_ACT_RESET,
};

struct http_decision {
	enum http_endpoint ep;
	unsigned status;             /* 200, or the error's 4xx/5xx */
	char error[HTTP_ERROR_MAX];  /* the error text (UTF-8), "" on 200 */
	/* HTTP_EP_ACTION: what to do to which instances (lo..hi, 1-based;
	 * hi < lo when the agent has none). */
	char agent[HIVE_NAME_MAX + 1];
	enum http_action action;
	unsigned lo, hi;
};

/*
 * Route rq against view into *out and return out->status.  Never fails:
 * every input gets a status in 200..599, and an error a text that is
 * valid UTF-8.  Reads nothing but rq and what view gives.
 */
unsigned http_route(const struct http_view *view,
    const struct http_request *rq, struct http_decision *out);
/* "restart", "sleep", "wake", "reset". */
const char *http_action_name(enum http_action);

#endif
