/*
 * api.h - the HTTP API's endpoints, apart from the server (http.c).
 *
 * An endpoint is a row of a route table: a method, a path pattern and the
 * function that answers it.  http.c parses and checks everything a table
 * row says (method, path, query arguments, token, JSON body) before the
 * function runs, so an endpoint only reads what it was given:
 *
 *   http.c: MHD --> http_route (pure, fuzzed) --> api_fn(req) --> api_reply
 *                                                   |        (now or later)
 *                                       Redis, PostgreSQL, hived's state
 *
 * An api_fn answers with api_reply or api_fail, exactly once: at once, or
 * later from a Redis or PostgreSQL callback (http.c suspends the
 * connection until then and resumes it on the answer).  The request stays
 * valid until it is answered, also when the client has gone (api_gone):
 * the answer is then dropped.  Nothing here blocks the loop.
 *
 * Files:  api_agents.c   /agents, actions on agents, /capabilities
 *         api_ctl.c      /health, /reload, /stop-all, /start-all
 *         api_tasks.c    /tasks, /workflows (the record: PostgreSQL)
 *         api_dead.c     /dead and its retries (Redis; the record told)
 *         api_submit.c   POST /tasks, POST /workflows (Redis)
 *         metrics.c      /metrics, /queues (state hived keeps: qstat.c)
 *         events.c       /events (a stream: sse.h), /stats
 *         api_output_task.c  /tasks/ID/output (Redis, the record)
 *         api_output.c   /agents/NAME/output (output.c's rings)
 *         api_ui.c       /, /ui/{file}: the dashboard's files
 */
#ifndef HIVE_API_H
#define HIVE_API_H

#include <stddef.h>

#include <jansson.h>

struct sup;
struct api_req;

typedef void api_fn(struct api_req *);

/* Route flags. */
#define API_CHANGE   0x01  /* changes something: needs the bearer token,
                            * refused (503) while hived stops */
#define API_BODY     0x02  /* takes a JSON object body (optional unless
                            * API_BODY_NEEDED); bad JSON is a 400 */
#define API_BODY_NEEDED 0x04
#define API_TEXT     0x08  /* answers text (api_reply_text), not JSON */
#define API_PUBLIC   0x20  /* no token even with http_auth_reads: files
                            * that hold no data (the dashboard's) */

#define API_ARGS_MAX    2          /* {} segments in one path */
#define API_QUERY_MAX   8          /* distinct query arguments */
#define API_BODY_MAX    (4u << 20) /* bytes: a task may be 1 MiB of msgpack */
#define API_LIMIT_DEFAULT 100      /* rows of a list page */
#define API_LIMIT_MAX   1000

/*
 * A route.  path is literal but for "{}", which matches one path segment
 * (1..HIVE_ID_MAX bytes, percent-decoded, printable ASCII, no '/'); its
 * value is api_arg(req, 0), api_arg(req, 1).  query lists the query
 * arguments the route takes, separated by commas ("state,limit,cursor"):
 * any other one, or one given twice, is a 400 before fn runs.  A GET
 * route answers HEAD too (the body is left out).
 */
struct api_route {
	const char *method;          /* "GET" or "POST" */
	const char *path;            /* "/tasks/{}" */
	const char *query;           /* "" when it takes none */
	unsigned flags;              /* API_* */
	api_fn *fn;
};

/* The tables, each ending with a row whose method is NULL. */
extern const struct api_route api_agents_routes[];
extern const struct api_route api_ctl_routes[];
extern const struct api_route api_tasks_routes[];
extern const struct api_route api_dead_routes[];
extern const struct api_route api_metrics_routes[];
extern const struct api_route api_output_task_routes[];
extern const struct api_route api_output_routes[];
extern const struct api_route api_ui_routes[];

/* ---- what an endpoint is given (http.c) ---- */

struct sup *api_sup(const struct api_req *);
/* The i-th "{}" of the path, decoded; "" past the last. */
const char *api_arg(const struct api_req *, unsigned i);
/* A query argument, decoded; NULL when the request did not give it. */
const char *api_query(const struct api_req *, const char *name);
/* The body as a JSON object (API_BODY), NULL when there was none.
 * Borrowed: the request owns it. */
json_t *api_body(const struct api_req *);
/* The raw body bytes (API_TEXT endpoints that take one; rarely needed). */
const char *api_body_raw(const struct api_req *, size_t *len);
/* 1 once the client has gone: the answer will be dropped; an endpoint
 * waiting on something may stop early (it must still answer). */
int api_gone(const struct api_req *);

/*
 * Query helpers that answer a 400 themselves: 0, or -1 after api_fail
 * (the endpoint then returns).  api_limit: "limit" (1..API_LIMIT_MAX,
 * API_LIMIT_DEFAULT when absent).  api_uint: a decimal number in lo..hi,
 * def when absent.  api_time: "since"-style arguments, RFC 3339
 * ("2026-12-07T08:00:00Z", fraction and offset allowed) or Unix ms; *ms
 * is 0 when absent.
 */
int api_limit(struct api_req *, unsigned *limit);
int api_uint(struct api_req *, const char *name, unsigned long lo,
    unsigned long hi, unsigned long def, unsigned long *v);
int api_time(struct api_req *, const char *name, long long *ms);

/* ---- answering: exactly once per request ---- */

/* status (2xx) with body (a reference taken; NULL: out of memory, a 500). */
void api_reply(struct api_req *, unsigned status, json_t *body);
/* status with a text body (API_TEXT: /metrics), len bytes copied. */
void api_reply_text(struct api_req *, unsigned status,
    const char *content_type, const char *text, size_t len);
/* The same with headers: hdrs is name, value, ..., NULL (copied); the
 * answer's Cache-Control is then one of them, not no-store. */
void api_reply_hdrs(struct api_req *, unsigned status,
    const char *content_type, const char *text, size_t len,
    const char *const *hdrs);
/*
 * An error: {"error": {"code": code, "message": the text}} with status
 * (4xx/5xx).  code is one of the documented codes (docs/API.md):
 * bad_request, unauthorized, forbidden, not_found, method_not_allowed,
 * conflict, too_large, invalid (422), unavailable (503), internal (500),
 * and the few an endpoint documents.  api_fail_with adds extra's fields
 * (a reference taken) to the error object, e.g. "errors": [...].
 */
void api_fail(struct api_req *, unsigned status, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void api_fail_with(struct api_req *, unsigned status, const char *code,
    json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- helpers shared by the endpoints ---- */

/* The agent the path's first "{}" names (api_agents.c), or NULL after
 * answering 400 (not an agent name) or 404 (none, or a reload is
 * removing it). */
struct sup_agent *api_agent(struct api_req *);

/* ms since the epoch as RFC 3339 UTC with milliseconds
 * ("2026-12-07T08:00:00.123Z"); json null for 0. */
json_t *api_time_json(long long ms);

#endif /* HIVE_API_H */
