/*
 * http.c - the HTTP API's server: libmicrohttpd inside hived's libev
 * loop, the route tables (api.h) and what an endpoint is given.  The
 * endpoints are in api_*.c and metrics.c; docs/API.md documents them.
 *
 * Every answer is JSON (but /metrics); an error is {"error": {"code":
 * "...", "message": "..."}} with a 4xx or 5xx status.  Routes that change
 * something need "Authorization: Bearer TOKEN" (TOKEN: the first line of
 * [hive] token_file; without a token_file they are refused), and with
 * [hive] http_auth_reads = yes the others too.  The connections are
 * capped per client address and in total (a 503 past a cap), and one
 * idle or with an incomplete request is closed after HTTP_TIMEOUT_S.
 *
 * libmicrohttpd runs without threads: MHD_USE_EPOLL gives one epoll
 * descriptor that is readable whenever MHD has something to do; an ev_io
 * watches it and calls MHD_run, and a timer follows MHD_get_timeout
 * (connection timeouts, data MHD already buffered).
 *
 * A request goes through three steps:
 *
 *   MHD callbacks --(method, target, token)--> http_route --> api_fn(req)
 *   http_handler       at the headers            (pure,       at the end
 *                      the body, collected        http.h)     of the body
 *
 * http_route decides the route as soon as the headers are in, so a
 * request that will be refused is refused before its body is read.  The
 * endpoint answers at once (api_reply) or later, from a Redis or
 * PostgreSQL callback: the connection is then suspended
 * (MHD_suspend_connection) and resumed when the answer comes.  A request
 * lives in a struct api_req from the endpoint's call to its answer,
 * whatever happens to the connection meanwhile (api_gone).
 *
 * A route flagged API_STREAM answers with an event stream instead
 * (sse_open, sse.c): its answer is a response MHD reads from the
 * stream's buffer for as long as the connection lives (sse_response).
 */
#include "hived.h"
#include "api.h"
#include "http.h"
#include "sse.h"
#include "events.h"

#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "log.h"
#include "util.h"

/*
 * The API's connection limits (docs/OPERATIONS.md, HTTP control API).
 * Connections are counted by address as MHD opens and closes them
 * (http_notify).  One over a cap is still read, for a short while, so
 * that it can be told why: its request gets a 503 and the connection is
 * closed.  Past HTTP_CONN_MAX, MHD accepts nothing more until one closes
 * (new ones wait in the listen backlog).
 */
#define HTTP_CONN_TOTAL      48   /* served at once */
#define HTTP_CONN_PER_IP     16   /* served at once for one client address */
#define HTTP_CONN_MAX        64   /* open at once, the refused included */
#define HTTP_TIMEOUT_S       10   /* idle, or a request still incomplete */
#define HTTP_REFUSED_S        2   /* a refused one, until its 503 is sent */
#define HTTP_BACKLOG         64

/* A client address with connections being served: key is the family and
 * the address bytes (not the port). */
struct http_peer {
	unsigned char key[17];
	unsigned n;
};

struct api_req;

struct sup_http {
	struct sup *sup;
	struct MHD_Daemon *d;
	ev_io io;
	ev_timer tm;
	unsigned port;
	int closed;                  /* MHD closed connections in this run */
	unsigned served;             /* connections within the caps */
	struct http_peer peers[HTTP_CONN_TOTAL];
	/* A refused connection's socket context points at one of these. */
	char over_total, over_ip;
	int kick;                    /* a suspended request was answered */
	struct sse_hub *hub;         /* the event streams (sse.c) */
	LIST_HEAD(, api_req) reqs;   /* requests given to an endpoint and
	                              * not answered yet */
};

static void http_rearm(struct sup_http *);

/*
 * The route tables: one per file of endpoints (api.h).  A table is added
 * here with its file.
 */
static const struct api_route *const http_tables[] = {
	api_agents_routes,
	api_tasks_routes,
	api_ctl_routes,
	api_dead_routes,
	api_metrics_routes,
	api_events_routes,
	api_output_task_routes,
	api_output_routes,
	api_ui_routes,
	NULL
};

/* A body is kept up to this much (the route's limit decides). */
#define HTTP_SMALL_BODY  0           /* routes without API_BODY take none */

/*
 * One request in progress (MHD's *con_cls): made when its request line is
 * in (http_uri, which keeps the target as sent), freed by http_completed
 * whatever the request's end (answered, client gone, daemon stopped).
 */
struct http_conn {
	char *target;
	int headers;                 /* http_handler has seen the headers */
	struct http_decision *d;     /* the route, from the headers */
	char *body;                  /* up to the route's limit */
	size_t len, cap;
	int too_large;
	struct api_req *req;         /* given to the endpoint */
};

struct api_req {
	struct sup_http *h;          /* NULL once the server is gone */
	struct MHD_Connection *c;    /* NULL once gone */
	struct http_conn *hc;
	LIST_ENTRY(api_req) entry;   /* h->reqs, until answered */
	struct http_decision *d;     /* taken from hc */
	json_t *body;
	const char *raw;
	size_t rawlen;
	int suspended;
	int answered;
	struct sse *sse;             /* the answer is this stream (sse.c) */
	/* The answer, kept until MHD takes it. */
	unsigned status;
	char *text;
	size_t len;
	const char *ctype;
	char *hdrs;                  /* api_reply_hdrs: "name\0value\0...\0" */
};

static void
http_logger(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strcspn(line, "\n");
	line[n] = '\0';
	log_warnx("http: %s", line);
}

/* Queue text (len bytes, taken: freed by MHD) with code and its type;
 * close: then close the connection.  hdrs (api_reply_hdrs) replaces the
 * Cache-Control no-store. */
static enum MHD_Result
http_queue(struct MHD_Connection *c, unsigned code, char *text, size_t len,
    const char *ctype, int close, const char *hdrs)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (hdrs == NULL)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
		    "no-store");
	while (hdrs != NULL && *hdrs != '\0') {
		const char *v = hdrs + strlen(hdrs) + 1;

		MHD_add_response_header(r, hdrs, v);
		hdrs = v + strlen(v) + 1;
	}
	if (close) {
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	}
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

/* The error body {"error": {"code": code, "message": msg}} plus extra's
 * fields (a reference taken), as text; NULL when out of memory. */
static char *
error_text(const char *code, const char *msg, json_t *extra)
{
	json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg), *o;
	char *text;

	if (e != NULL && extra != NULL)
		json_object_update(e, extra);
	json_decref(extra);
	if (e == NULL || (o = json_pack("{s:o}", "error", e)) == NULL)
		return NULL;
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return text;
}

static enum MHD_Result
http_error(struct MHD_Connection *c, unsigned code, const char *ecode,
    const char *msg, int close)
{
	char *text = error_text(ecode, msg, NULL);

	if (text == NULL)
		return MHD_NO;    /* out of memory: MHD closes the connection */
	return http_queue(c, code, text, strlen(text), "application/json",
	    close, NULL);
}

/* ---- what an endpoint is given (api.h) ---- */

struct sup *
api_sup(const struct api_req *req)
{
	return req->h != NULL ? req->h->sup : NULL;
}

const char *
api_arg(const struct api_req *req, unsigned i)
{
	return i < req->d->nargs ? req->d->args[i] : "";
}

const char *
api_query(const struct api_req *req, const char *name)
{
	for (unsigned i = 0; i < req->d->nquery; i++)
		if (strcmp(req->d->query[i].name, name) == 0)
			return req->d->query[i].value;
	return NULL;
}

json_t *
api_body(const struct api_req *req)
{
	return req->body;
}

const char *
api_body_raw(const struct api_req *req, size_t *len)
{
	*len = req->rawlen;
	return req->raw;
}

int
api_gone(const struct api_req *req)
{
	return req->c == NULL;
}

const char *
api_header(const struct api_req *req, const char *name)
{
	if (req->c == NULL)
		return NULL;
	return MHD_lookup_connection_value(req->c, MHD_HEADER_KIND, name);
}

int
api_uint(struct api_req *req, const char *name, unsigned long lo,
    unsigned long hi, unsigned long def, unsigned long *v)
{
	const char *s = api_query(req, name);
	unsigned long n = 0;

	if (s == NULL) {
		*v = def;
		return 0;
	}
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || p - s >= 19)
			goto bad;
		n = n * 10 + (unsigned long)(*p - '0');
	}
	if (n < lo || n > hi || (s[0] == '0' && s[1] != '\0'))
		goto bad;
	*v = n;
	return 0;
bad:
	api_fail(req, 400, "bad_request", "%s must be a number %lu..%lu", name,
	    lo, hi);
	return -1;
}

int
api_limit(struct api_req *req, unsigned *limit)
{
	unsigned long v;

	if (api_uint(req, "limit", 1, API_LIMIT_MAX, API_LIMIT_DEFAULT, &v) ==
	    -1)
		return -1;
	*limit = (unsigned)v;
	return 0;
}

/* n digits of s as a number; -1 when one is not a digit. */
static int
digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/*
 * RFC 3339 ("2026-12-07T08:00:00Z", "...00.5+01:00"; 't', 'z' and a
 * space for the T accepted) or Unix ms (digits only) into *ms; -1 when
 * it is neither.
 */
static int
parse_time(const char *s, long long *ms)
{
	struct tm tm = { 0 };
	long long frac = 0, scale = 1000;
	int off = 0, y, mo, d, h, mi, se;
	size_t n = strlen(s);
	const char *p;

	if (n > 0 && n <= 15 && strspn(s, "0123456789") == n) {
		*ms = strtoll(s, NULL, 10);
		return 0;
	}
	if (n < 20 || (y = digits(s, 4)) < 1970 || s[4] != '-' ||
	    (mo = digits(s + 5, 2)) < 1 || mo > 12 || s[7] != '-' ||
	    (d = digits(s + 8, 2)) < 1 || d > 31 ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    (h = digits(s + 11, 2)) < 0 || h > 23 || s[13] != ':' ||
	    (mi = digits(s + 14, 2)) < 0 || mi > 59 || s[16] != ':' ||
	    (se = digits(s + 17, 2)) < 0 || se > 60)
		return -1;
	p = s + 19;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return -1;
		for (p++; *p >= '0' && *p <= '9'; p++)
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
	}
	if (*p == 'Z' || *p == 'z')
		p++;
	else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int oh = digits(p + 1, 2), om = digits(p + 4, 2);

		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return -1;
		off = (oh * 60 + om) * (*p == '-' ? -1 : 1);
		p += 6;
	} else
		return -1;
	if (*p != '\0')
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	*ms = ((long long)timegm(&tm) - off * 60LL) * 1000 + frac;
	return 0;
}

int
api_time(struct api_req *req, const char *name, long long *ms)
{
	const char *s = api_query(req, name);

	*ms = 0;
	if (s == NULL)
		return 0;
	if (parse_time(s, ms) == -1) {
		api_fail(req, 400, "bad_request", "%s: expected a time, RFC 3339 "
		    "(2026-12-07T08:00:00Z) or Unix ms", name);
		return -1;
	}
	return 0;
}

json_t *
api_time_json(long long ms)
{
	struct tm tm;
	time_t t;
	char buf[64];

	if (ms <= 0)
		return json_null();
	t = (time_t)(ms / 1000);
	if (gmtime_r(&t, &tm) == NULL)
		return json_null();
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (int)(ms % 1000));
	return json_string(buf);
}

/* ---- answering ---- */

static void
req_free(struct api_req *req)
{
	if (req->sse != NULL)        /* its stream never started */
		sse_release(req->sse);
	json_decref(req->body);
	free(req->text);
	free(req->hdrs);
	free(req->d);
	free(req);
}

/*
 * The endpoint's answer, as text (taken).  Kept for MHD when the request
 * is still connected; a suspended one is resumed, and the loop runs MHD
 * again on its next turn (http_rearm), which calls http_handler for it.
 */
static void
req_answer(struct api_req *req, unsigned status, char *text, size_t len,
    const char *ctype)
{
	if (req->answered) {
		log_warnx("http: %s answered twice (second dropped)",
		    req->d->route != NULL ? req->d->route->path : "?");
		free(text);
		return;
	}
	req->answered = 1;
	if (req->h == NULL || req->c == NULL) {
		free(text);
		if (req->h != NULL)
			LIST_REMOVE(req, entry);
		req_free(req);
		return;
	}
	LIST_REMOVE(req, entry);
	req->status = status;
	req->text = text;
	req->len = len;
	req->ctype = ctype;
	/* MHD_resume_connection alone does not make MHD's epoll descriptor
	 * readable here (seen with 0.9.75): without the kick the answer
	 * waited for the next request or timeout. */
	if (req->suspended) {
		req->suspended = 0;
		MHD_resume_connection(req->c);
		req->h->kick = 1;
		http_rearm(req->h);
	}
}

/*
 * The request is answered by the stream s (sse_open): like req_answer,
 * the stream's response is made when MHD comes back to the request
 * (req_send).  NULL when it was answered already or its client has gone.
 */
struct sse_hub *
http_stream_take(struct api_req *req, struct sse *s)
{
	if (req->answered) {
		log_warnx("http: %s answered twice (stream dropped)",
		    req->d->route != NULL ? req->d->route->path : "?");
		return NULL;
	}
	req->answered = 1;
	if (req->h == NULL || req->c == NULL) {
		if (req->h != NULL)
			LIST_REMOVE(req, entry);
		req_free(req);
		return NULL;
	}
	LIST_REMOVE(req, entry);
	req->sse = s;
	if (req->suspended) {
		req->suspended = 0;
		MHD_resume_connection(req->c);
		http_kick(req->h);
	}
	return req->h->hub;
}

void
http_kick(struct sup_http *h)
{
	h->kick = 1;
	http_rearm(h);
}

void
api_reply(struct api_req *req, unsigned status, json_t *body)
{
	char *text;

	if (body == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (text == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	req_answer(req, status, text, strlen(text), "application/json");
}

void
api_reply_text(struct api_req *req, unsigned status,
    const char *content_type, const char *text, size_t len)
{
	char *copy = malloc(len + 1);

	if (copy == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	req_answer(req, status, copy, len, content_type);
}

void
api_reply_hdrs(struct api_req *req, unsigned status,
    const char *content_type, const char *text, size_t len,
    const char *const *hdrs)
{
	size_t n = 1, at = 0;

	for (const char *const *h = hdrs; *h != NULL; h++)
		n += strlen(*h) + 1;
	if (req->answered || (req->hdrs = malloc(n)) == NULL) {
		api_reply_text(req, status, content_type, text, len);
		return;
	}
	for (const char *const *h = hdrs; *h != NULL; h++) {
		memcpy(req->hdrs + at, *h, strlen(*h) + 1);
		at += strlen(*h) + 1;
	}
	req->hdrs[at] = '\0';
	api_reply_text(req, status, content_type, text, len);
}

static void
api_vfail(struct api_req *req, unsigned status, const char *code,
    json_t *extra, const char *fmt, va_list ap)
{
	char msg[HTTP_ERROR_MAX * 2];
	char *text;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* jansson refuses a string that is not UTF-8: never lose the answer */
	if (utf8_valid(msg, strlen(msg)) != 0)
		snprintf(msg, sizeof(msg), "(an error whose text is not UTF-8)");
	if ((text = error_text(code, msg, extra)) == NULL) {
		/* Out of memory: still answer, with what needs no allocation */
		static const char oom[] = "{\"error\":{\"code\":\"internal\","
		    "\"message\":\"out of memory\"}}";

		text = strdup(oom);
		status = 500;
	}
	req_answer(req, status, text, text != NULL ? strlen(text) : 0,
	    "application/json");
}

void
api_fail(struct api_req *req, unsigned status, const char *code,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	api_vfail(req, status, code, NULL, fmt, ap);
	va_end(ap);
}

void
api_fail_with(struct api_req *req, unsigned status, const char *code,
    json_t *extra, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	api_vfail(req, status, code, extra, fmt, ap);
	va_end(ap);
}

/* The answer the endpoint gave, to MHD; the request is done. */
static enum MHD_Result
req_send(struct http_conn *hc)
{
	struct api_req *req = hc->req;
	struct MHD_Response *r;
	enum MHD_Result ret;

	hc->req = NULL;
	if (req->sse != NULL) {
		struct MHD_Connection *c = req->c;

		r = sse_response(req->sse, c);
		req->sse = NULL;        /* MHD's now (or released) */
		req_free(req);
		if (r == NULL)
			return MHD_NO;
		ret = MHD_queue_response(c, MHD_HTTP_OK, r);
		MHD_destroy_response(r);
		return ret;
	}
	ret = http_queue(req->c, req->status, req->text, req->len, req->ctype,
	    0, req->hdrs);
	req->text = NULL;           /* MHD has it (or freed it) */
	req_free(req);
	return ret;
}

/*
 * The body is in: check it against the route, make the request and run
 * the endpoint.  Answered at once: sent now; otherwise suspended.
 */
static enum MHD_Result
http_dispatch(struct sup_http *h, struct MHD_Connection *c,
    struct http_conn *hc)
{
	const struct api_route *r = hc->d->route;
	struct api_req *req;
	json_error_t jerr;
	char msg[HTTP_ERROR_MAX];

	if (hc->too_large)
		return http_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
		    (r->flags & API_BODY) ? "body too large" :
		    "this endpoint takes no body", 0);
	if ((r->flags & API_STREAM) && sse_hub_count(h->hub) >= HTTP_SSE_MAX)
		return http_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
		    "too many event streams open: retry later", 0);
	if ((req = calloc(1, sizeof(*req))) == NULL)
		return MHD_NO;
	req->h = h;
	req->c = c;
	req->hc = hc;
	req->d = hc->d;
	hc->d = NULL;
	req->raw = hc->body;
	req->rawlen = hc->len;
	if ((r->flags & API_BODY) && hc->len > 0) {
		req->body = json_loadb(hc->body, hc->len,
		    JSON_REJECT_DUPLICATES, &jerr);
		if (req->body == NULL || !json_is_object(req->body)) {
			if (req->body == NULL)
				snprintf(msg, sizeof(msg), "body: not JSON: %s "
				    "(line %d, column %d)", jerr.text, jerr.line,
				    jerr.column);
			else
				snprintf(msg, sizeof(msg), "body: expected a "
				    "JSON object");
			req_free(req);
			return http_error(c, MHD_HTTP_BAD_REQUEST,
			    "bad_request", msg, 0);
		}
	} else if ((r->flags & API_BODY_NEEDED) && hc->len == 0) {
		req_free(req);
		return http_error(c, MHD_HTTP_BAD_REQUEST, "bad_request",
		    "this endpoint needs a JSON object body", 0);
	}
	hc->req = req;
	LIST_INSERT_HEAD(&h->reqs, req, entry);
	r->fn(req);
	if (req->answered)
		return req_send(hc);
	req->suspended = 1;
	MHD_suspend_connection(c);
	return MHD_YES;
}

/*
 * MHD calls this with the request-target as the client sent it, before
 * unescaping it; what it returns becomes the request's *con_cls.  NULL
 * (out of memory) makes http_handler close the connection.
 */
static void *
http_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct http_conn *hc = calloc(1, sizeof(*hc));

	if (hc != NULL && (hc->target = strdup(uri)) == NULL) {
		free(hc);
		hc = NULL;
	}
	return hc;
}

/* The 503 for a connection over a cap (see http_notify). */
static enum MHD_Result
http_refuse(struct sup_http *h, struct MHD_Connection *c, const void *why)
{
	return http_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
	    why == &h->over_ip ? "too many connections from this address: "
	    "close one and retry" : "too many connections: retry later", 1);
}

/* The headers are in: route the request; an error is answered before
 * the body is read.  MHD_YES to go on reading. */
static enum MHD_Result
http_headers(struct sup_http *h, struct MHD_Connection *c,
    struct http_conn *hc, const char *method)
{
	const struct hive_conf *conf = h->sup->cref->conf;
	struct http_view view = { h->sup->token, h->sup->stopping,
	    conf->http_auth_reads, http_tables };
	struct http_request rq;
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_CONTENT_LENGTH);
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c,
	    MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	size_t max;

	hc->headers = 1;
	if (ci != NULL && (ci->socket_context == &h->over_total ||
	    ci->socket_context == &h->over_ip))
		return http_refuse(h, c, ci->socket_context);
	if ((hc->d = malloc(sizeof(*hc->d))) == NULL)
		return MHD_NO;
	rq.method = method;
	rq.target = hc->target;
	rq.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_AUTHORIZATION);
	if (http_route(&view, &rq, hc->d) != 200)
		return http_error(c, hc->d->status, hc->d->code, hc->d->error, 0);
	max = (hc->d->route->flags & API_BODY) ? API_BODY_MAX : HTTP_SMALL_BODY;
	/* Refused before it is read. */
	if (cl != NULL && strtoull(cl, NULL, 10) > max)
		return http_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
		    max > 0 ? "body too large" : "this endpoint takes no body",
		    0);
	return MHD_YES;
}

/* A piece of the body: kept up to the route's limit. */
static int
http_body(struct http_conn *hc, const char *data, size_t n)
{
	size_t max = (hc->d->route->flags & API_BODY) ? API_BODY_MAX :
	    HTTP_SMALL_BODY;

	if (hc->too_large || n > max - hc->len) {
		hc->too_large = 1;
		return 0;
	}
	if (hc->len + n > hc->cap) {
		size_t cap = hc->cap > 0 ? hc->cap : 1024;
		char *b;

		while (cap < hc->len + n)
			cap *= 2;
		if ((b = realloc(hc->body, cap)) == NULL)
			return -1;
		hc->body = b;
		hc->cap = cap;
	}
	memcpy(hc->body + hc->len, data, n);
	hc->len += n;
	return 0;
}

/*
 * MHD calls this for a request: first with its headers, then once per
 * piece of body, then with *upload_data_size 0 to answer; once more
 * after a suspended request is resumed.
 */
static enum MHD_Result
http_handler(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct sup_http *h = cls;
	struct http_conn *hc = *con_cls;

	if (hc == NULL)
		return MHD_NO;
	if (!hc->headers)
		return http_headers(h, c, hc, method);
	if (hc->req != NULL)          /* resumed: the answer is there */
		return hc->req->answered ? req_send(hc) : MHD_YES;
	if (*upload_data_size > 0) {
		if (http_body(hc, upload_data, *upload_data_size) == -1)
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	return http_dispatch(h, c, hc);
}

/* Every request http_uri saw ends here, however it ended.  A request an
 * endpoint still works on is left to it, marked gone. */
static void
http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct http_conn *hc = *con_cls;

	if (hc == NULL)
		return;
	if (hc->req != NULL) {
		if (hc->req->answered)
			req_free(hc->req);
		else {
			hc->req->c = NULL;
			hc->req->hc = NULL;
			hc->req->raw = NULL;
			hc->req->rawlen = 0;
		}
	}
	free(hc->target);
	free(hc->d);
	free(hc->body);
	free(hc);
	*con_cls = NULL;
}

/* The family and address bytes of sa, zero-filled, as a peer's key. */
static void
peer_key(const struct sockaddr *sa, unsigned char key[17])
{
	memset(key, 0, 17);
	if (sa == NULL)
		return;
	key[0] = (unsigned char)sa->sa_family;
	if (sa->sa_family == AF_INET)
		memcpy(key + 1, &((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(key + 1, &((const struct sockaddr_in6 *)(const void *)sa)->
		    sin6_addr, 16);
}

/*
 * A connection opened or closed (MHD_OPTION_NOTIFY_CONNECTION).  Opened:
 * counted against its address and the total, or, over a cap, marked
 * refused with a short timeout (http_handler answers 503).  Closed: the
 * count goes down, and h->closed asks http_run for another run.
 */
static void
http_notify(void *cls, struct MHD_Connection *c, void **sc,
    enum MHD_ConnectionNotificationCode code)
{
	struct sup_http *h = cls;
	const union MHD_ConnectionInfo *ci;
	struct http_peer *pr = NULL, *free_pr = NULL;
	unsigned char key[17];

	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		h->closed = 1;
		if (*sc != NULL && *sc != &h->over_total && *sc != &h->over_ip) {
			pr = *sc;
			pr->n--;
			h->served--;
		}
		*sc = NULL;
		return;
	}
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	peer_key(ci != NULL ? ci->client_addr : NULL, key);
	for (size_t i = 0; i < HTTP_CONN_TOTAL; i++) {
		if (h->peers[i].n == 0) {
			if (free_pr == NULL)
				free_pr = &h->peers[i];
		} else if (memcmp(h->peers[i].key, key, sizeof(key)) == 0)
			pr = &h->peers[i];
	}
	if (h->served >= HTTP_CONN_TOTAL)
		*sc = &h->over_total;
	else if (pr != NULL && pr->n >= HTTP_CONN_PER_IP)
		*sc = &h->over_ip;
	else {
		if (pr == NULL) {
			/* served < HTTP_CONN_TOTAL: a slot is free */
			pr = free_pr;
			memcpy(pr->key, key, sizeof(key));
		}
		pr->n++;
		h->served++;
		*sc = pr;
		return;
	}
	log_debug("http: connection refused (%s)", *sc == &h->over_ip ?
	    "per-address cap" : "total cap");
	MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
	    (unsigned)HTTP_REFUSED_S);
}

static void
http_rearm(struct sup_http *h)
{
	struct ev_loop *loop = h->sup->loop;
	MHD_UNSIGNED_LONG_LONG ms;

	ev_timer_stop(loop, &h->tm);
	if (h->closed || h->kick) {
		ev_timer_set(&h->tm, 0., 0.);
		ev_timer_start(loop, &h->tm);
	} else if (MHD_get_timeout(h->d, &ms) == MHD_YES) {
		ev_timer_set(&h->tm, ms / 1000., 0.);
		ev_timer_start(loop, &h->tm);
	}
}

/*
 * At its connection limit (or out of descriptors) MHD takes its listening
 * socket out of its epoll set, and puts it back only at the start of a
 * later MHD_run, once connections have closed.  Nothing else would call
 * MHD_run then: with no connection left there is no timeout, and the
 * epoll descriptor, no longer watching the listening socket, never
 * becomes readable; the API would stay deaf for good.  So a run in which
 * connections closed is followed by another, on the next turn of the
 * loop (http_rearm).
 */
static void
http_run(struct sup_http *h)
{
	h->closed = 0;
	h->kick = 0;
	MHD_run(h->d);
	http_rearm(h);
}

static void
http_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	http_run(w->data);
}

static void
http_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	http_run(w->data);
}

/*
 * The server goes: every request an endpoint still works on is detached
 * (resumed, so that MHD can stop; its answer, when it comes, is dropped).
 */
static void
http_orphan_all(struct sup_http *h)
{
	struct api_req *req;

	while ((req = LIST_FIRST(&h->reqs)) != NULL) {
		LIST_REMOVE(req, entry);
		if (req->suspended && req->c != NULL)
			MHD_resume_connection(req->c);
		req->suspended = 0;
		if (req->hc != NULL)
			req->hc->req = NULL;
		req->hc = NULL;
		req->h = NULL;
		req->c = NULL;
		req->raw = NULL;
		req->rawlen = 0;
	}
}

/* "host:port" or "[v6]:port" into a socket address: 0 or -1 (logged). */
static int
http_parse_addr(const char *addr, struct sockaddr_storage *ss)
{
	char host[64], *port;
	struct addrinfo hints, *res = NULL;
	int e;

	snprintf(host, sizeof(host), "%s", addr);
	if ((port = strrchr(host, ':')) == NULL) {
		log_warnx("http = %s: expected host:port", addr);
		return -1;
	}
	*port++ = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	/* At start-up only: a name may need /etc/hosts. */
	if ((e = getaddrinfo(host, port, &hints, &res)) != 0) {
		log_warnx("http = %s: %s", addr, gai_strerror(e));
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

/*
 * The listening socket for addr, made here rather than by MHD: its errors
 * name the address, and it gets SO_REUSEADDR (a restart binds while old
 * connections linger in TIME_WAIT) but never SO_REUSEPORT, under which a
 * second hived could bind the same address and the kernel would share the
 * connections between the two.  The descriptor, or -1 (logged).
 */
static int
http_listen(const char *addr, const struct sockaddr_storage *ss,
    unsigned *port)
{
	socklen_t sl = ss->ss_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	struct sockaddr_storage got;
	int fd, on = 1;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		log_warn("http = %s: socket", addr);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
	    bind(fd, (const struct sockaddr *)ss, sl) == -1 ||
	    listen(fd, HTTP_BACKLOG) == -1) {
		log_warn("http = %s: cannot listen", addr);
		close(fd);
		return -1;
	}
	sl = sizeof(got);
	if (getsockname(fd, (struct sockaddr *)&got, &sl) == -1) {
		log_warn("http = %s: getsockname", addr);
		close(fd);
		return -1;
	}
	*port = ntohs(got.ss_family == AF_INET6 ?
	    ((struct sockaddr_in6 *)&got)->sin6_port :
	    ((struct sockaddr_in *)&got)->sin_port);
	return fd;
}

struct sup_http *
sup_http_new(struct sup *sup, const char *addr)
{
	struct sup_http *h = calloc(1, sizeof(*h));
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	int fd;

	if (h == NULL)
		return NULL;
	h->sup = sup;
	LIST_INIT(&h->reqs);
	if ((h->hub = sse_hub_new(sup->loop, h)) == NULL)
		goto err;
	if (http_parse_addr(addr, &ss) == -1 ||
	    (fd = http_listen(addr, &ss, &h->port)) == -1)
		goto err;
	/* The logger first: MHD logs about options as it reads them. */
	h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
	    MHD_ALLOW_SUSPEND_RESUME, 0, NULL,
	    NULL, http_handler, h,
	    MHD_OPTION_EXTERNAL_LOGGER, http_logger, NULL,
	    MHD_OPTION_URI_LOG_CALLBACK, http_uri, NULL,
	    MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
	    MHD_OPTION_NOTIFY_CONNECTION, http_notify, h,
	    MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONN_MAX,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
	    MHD_OPTION_END);
	if (h->d == NULL) {
		/* Some of MHD's failure paths close it, some do not. */
		if (fcntl(fd, F_GETFD) != -1)
			close(fd);
		log_warnx("http = %s: cannot start the server", addr);
		goto err;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL) {
		log_warnx("http: no epoll descriptor");
		goto err;
	}
	ev_io_init(&h->io, http_io_cb, info->epoll_fd, EV_READ);
	h->io.data = h;
	ev_io_start(sup->loop, &h->io);
	ev_init(&h->tm, http_timer_cb);
	h->tm.data = h;
	http_rearm(h);
	log_info("http listening addr=%s port=%u", addr, h->port);
	return h;
err:
	sup_http_free(h);
	return NULL;
}

void
sup_http_free(struct sup_http *h)
{
	if (h == NULL)
		return;
	http_orphan_all(h);
	if (h->hub != NULL && h->d != NULL) {
		/* What the streams have queued: sent as far as their sockets
		 * take it now (MHD_run does not block). */
		sse_hub_flush(h->hub);
		MHD_run(h->d);
	}
	if (h->hub != NULL)
		sse_hub_stop(h->hub);
	if (h->d != NULL) {
		ev_io_stop(h->sup->loop, &h->io);
		ev_timer_stop(h->sup->loop, &h->tm);
		MHD_stop_daemon(h->d);
	}
	sse_hub_free(h->hub);
	free(h);
}

unsigned
sup_http_port(const struct sup_http *h)
{
	return h->port;
}
