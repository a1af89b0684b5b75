/*
 * http.c - the control API, on loopback by default.
 *
 *   GET  /health                       hived is up: counts, uptime
 *   GET  /agents                       every instance: state, pid, ...
 *   GET  /capabilities                 each capability: queues, consumers
 *   POST /agents/NAME/restart          [?instance=N]  drain, start afresh
 *   POST /agents/NAME/sleep            drain, keep memory, stay down
 *   POST /agents/NAME/wake             start with the kept memory
 *   POST /agents/NAME/reset            clear failed and the restart count
 *
 * Every POST needs "Authorization: Bearer TOKEN" (TOKEN: the first line of
 * [hive] token_file); without a token_file every POST is refused.  Answers
 * are JSON; errors are {"error": "..."} with a 4xx or 5xx status.  The
 * connections are capped per client address and in total (a 503 past a
 * cap), and one idle or with an incomplete request is closed after
 * HTTP_TIMEOUT_S.
 *
 * libmicrohttpd runs inside hived's libev loop, without threads: MHD_USE_EPOLL
 * gives one epoll descriptor that is readable whenever MHD has something
 * to do; an ev_io watches it and calls MHD_run, and a timer follows
 * MHD_get_timeout (connection timeouts, data MHD already buffered).
 * Requests are answered at once from hived's state: nothing is suspended.
 *
 * A request goes through three steps:
 *
 *   MHD callbacks --(strings, body bytes)--> http_route --> answer
 *   http_handler     struct http_request     (pure)        http_health,
 *                                                          http_agents,
 *                                                          http_act
 *
 * http_route (see http.h) decides the endpoint and validates the request
 * without MHD or hived's structures, so that it can be fuzzed.  It gets
 * the request-target as sent (http_uri keeps it) and decodes it itself:
 * MHD's unescaped URL would turn "echo%2frestart" into a path of three
 * parts and cut "1%00junk" to "1".
 */
#include "hived.h"
#include "http.h"

#include <sys/socket.h>

#include <netinet/in.h>

#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "log.h"

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
};

/*
 * One request in progress (MHD's *con_cls): made when its request line is
 * in (http_uri, which keeps the target as sent), freed by http_completed
 * whatever the request's end (answered, client gone, daemon stopped).
 * The body is kept up to HTTP_BODY_MAX; len counts all of it, so that a
 * larger one is refused.
 */
struct http_conn {
	char *target;
	int headers;                 /* http_handler has seen the headers */
	size_t len;
	char body[HTTP_BODY_MAX];
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

/* Send body (a reference taken) with code; close: then close the
 * connection. */
static enum MHD_Result
http_respond(struct MHD_Connection *c, unsigned code, json_t *body, int close)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char *text;

	text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (text == NULL)
		return MHD_NO;    /* out of memory: MHD closes the connection */
	r = MHD_create_response_from_buffer(strlen(text), text,
	    MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
	    "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (close) {
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	}
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
http_send(struct MHD_Connection *c, unsigned code, json_t *body)
{
	return http_respond(c, code, body, 0);
}

static enum MHD_Result
http_error(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return http_send(c, code, json_pack("{s:s}", "error", msg));
}

static json_t *
inst_json(const struct sup_inst *in, ev_tstamp now)
{
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	json_object_set_new(o, "agent", json_string(in->label));
	json_object_set_new(o, "name", json_string(in->agent->name));
	json_object_set_new(o, "instance", json_integer(in->n));
	json_object_set_new(o, "state", json_string(sup_state_name(in->fsm.state)));
	if (in->fsm.state == SUP_ST_STOPPING)
		json_object_set_new(o, "then",
		    json_string(sup_after_name(in->fsm.after)));
	json_object_set_new(o, "pid", in->pid > 0 ? json_integer(in->pid) :
	    json_null());
	json_object_set_new(o, "restarts", json_integer((json_int_t)in->restarts));
	json_object_set_new(o, "handler_restarts",
	    json_integer((json_int_t)in->handler_restarts));
	json_object_set_new(o, "tasks_done",
	    json_integer((json_int_t)(in->done_base + in->done)));
	json_object_set_new(o, "inflight", json_integer(in->inflight));
	json_object_set_new(o, "memory_v", json_integer((json_int_t)in->mem->v));
	json_object_set_new(o, "heartbeat_age_ms", in->have_hb && in->pid > 0 ?
	    json_integer((json_int_t)((now - in->last_hb) * 1000.)) :
	    json_null());
	json_object_set_new(o, "handler_pid", in->handler_pid > 0 ?
	    json_integer(in->handler_pid) : json_null());
	json_object_set_new(o, "handler_rss_kb",
	    json_integer((json_int_t)in->handler_rss_kb));
	if (in->last_status == -1)
		json_object_set_new(o, "last_exit", json_null());
	else if (WIFSIGNALED(in->last_status))
		json_object_set_new(o, "last_exit", json_pack("{s:i}", "signal",
		    WTERMSIG(in->last_status)));
	else
		json_object_set_new(o, "last_exit", json_pack("{s:i}", "status",
		    WEXITSTATUS(in->last_status)));
	if (in->agent->removed || in->retired)
		json_object_set_new(o, "removed", json_true());
	return o;
}

static enum MHD_Result
http_agents(struct sup_http *h, struct MHD_Connection *c)
{
	struct sup *sup = h->sup;
	ev_tstamp now = ev_now(sup->loop);
	json_t *arr = json_array();
	struct sup_agent *a;

	if (arr == NULL)
		return MHD_NO;
	TAILQ_FOREACH(a, &sup->agents, entry)
		for (unsigned i = 0; i < a->ninst; i++)
			json_array_append_new(arr, inst_json(a->inst[i], now));
	return http_send(c, MHD_HTTP_OK, json_pack("{s:o}", "agents", arr));
}

/* The capability's entry in caps (made with its queues if new). */
static json_t *
cap_entry(json_t *caps, const char *prefix, const char *cap)
{
	json_t *e = json_object_get(caps, cap), *queues;
	char key[HIVE_KEY_MAX];

	if (e != NULL)
		return e;
	if ((queues = json_array()) == NULL)
		return NULL;
	for (unsigned prio = 0; prio < 3; prio++)
		if (proto_key_queue(key, sizeof(key), prefix, cap, prio) > 0)
			json_array_append_new(queues, json_string(key));
	e = json_pack("{s:s, s:o, s:[]}", "name", cap, "queues", queues,
	    "consumers");
	if (e == NULL || json_object_set_new(caps, cap, e) == -1)
		return NULL;
	return e;
}

/*
 * Each capability of the agents configured now: its queue streams (one per
 * priority) and the worker instances that consume them (consumer name,
 * state, tasks in flight by the last heartbeat), from hived's own state:
 * no Redis call.
 */
static enum MHD_Result
http_capabilities(struct sup_http *h, struct MHD_Connection *c)
{
	const struct hive_conf *conf = h->sup->cref->conf;
	json_t *caps = json_object(), *arr = json_array(), *e, *v;
	struct sup_agent *a;
	const char *k;
	char consumer[HIVE_KEY_MAX];

	if (caps == NULL || arr == NULL) {
		json_decref(caps);
		json_decref(arr);
		return MHD_NO;
	}
	TAILQ_FOREACH(a, &h->sup->agents, entry) {
		if (a->removed)
			continue;
		for (int i = 0; i < a->conf->ncaps; i++) {
			if ((e = cap_entry(caps, conf->prefix, a->conf->caps[i])) ==
			    NULL)
				continue;
			for (unsigned n = 0; n < a->ninst; n++) {
				const struct sup_inst *in = a->inst[n];

				if (in->retired || proto_consumer_name(consumer,
				    sizeof(consumer), a->name, in->n, conf->host) < 0)
					continue;
				json_array_append_new(json_object_get(e, "consumers"),
				    json_pack("{s:s, s:s, s:s, s:i}", "consumer",
				    consumer, "agent", in->label, "state",
				    sup_state_name(in->fsm.state), "inflight",
				    (int)in->inflight));
			}
		}
	}
	json_object_foreach(caps, k, v)
		json_array_append(arr, v);
	json_decref(caps);
	return http_send(c, MHD_HTTP_OK, json_pack("{s:o}", "capabilities",
	    arr));
}

static enum MHD_Result
http_health(struct sup_http *h, struct MHD_Connection *c)
{
	struct sup *sup = h->sup;
	unsigned cnt[SUP_ST_COUNT], n;
	char line[sizeof(sup->status)];
	json_t *states = json_object();

	n = sup_count_states(sup, cnt);
	sup_summary(sup, line, sizeof(line));
	for (int s = 0; s < SUP_ST_COUNT; s++)
		json_object_set_new(states, sup_state_name((enum sup_state)s),
		    json_integer(cnt[s]));
	return http_send(c, MHD_HTTP_OK, json_pack(
	    "{s:s, s:I, s:I, s:b, s:I, s:o, s:s}",
	    "status", sup->stopping ? "stopping" : "ok",
	    "pid", (json_int_t)getpid(),
	    "uptime_ms", (json_int_t)((ev_now(sup->loop) - sup->started) * 1000.),
	    "ready", sup->ready_sent,
	    "instances", (json_int_t)n,
	    "states", states,
	    "summary", line));
}

/* ---- routing: no MHD, no hived structures (http.h) ---- */

/* Constant time in the length of the expected token. */
static int
token_ok(const char *want, const char *got)
{
	size_t wl = strlen(want), gl = strlen(got);
	unsigned char d = wl != gl;

	for (size_t i = 0; i < wl; i++)
		d |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? got[i] : 0);
	return d == 0;
}

static unsigned __attribute__((format(printf, 3, 4)))
route_fail(struct http_decision *out, unsigned status, const char *fmt, ...)
{
	va_list ap;

	out->ep = HTTP_EP_ERROR;
	out->status = status;
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
 * the decoded length; -1 when an escape is malformed, when a byte, as
 * sent or decoded, is not printable ASCII (a space, NUL or control byte
 * included), or when an escape decodes to a byte of forbid; -2 when the
 * result does not fit.  Nothing is decoded twice: "%252f" is "%2f".
 */
static int
pct_decode(const char *s, size_t n, char *out, size_t outsz,
    const char *forbid)
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
			if (c != 0 && strchr(forbid, c) != NULL)
				return -1;
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

/*
 * The query (after '?', NULL when none): the only argument any endpoint
 * takes is instance=N, once, with a value (checked as a number later).
 * Empty items ("?", "&&") are nothing.  0, or -1 after route_fail.
 */
static int
route_query(const char *q, char *inst, size_t len, int *has,
    struct http_decision *out)
{
	char key[16];

	*has = 0;
	inst[0] = '\0';
	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&');
		const char *end = amp != NULL ? amp : q + strlen(q);
		const char *eq = memchr(q, '=', (size_t)(end - q));
		const char *kend = eq != NULL ? eq : end;

		if (end == q) {
			q = end + 1;
			continue;
		}
		if (pct_decode(q, (size_t)(kend - q), key, sizeof(key), "") < 0 ||
		    strcmp(key, "instance") != 0)
			return route_fail(out, MHD_HTTP_BAD_REQUEST,
			    "unknown query argument (the only one is "
			    "instance=N, on actions)"), -1;
		if (*has)
			return route_fail(out, MHD_HTTP_BAD_REQUEST,
			    "instance given twice"), -1;
		if (eq == NULL)
			return route_fail(out, MHD_HTTP_BAD_REQUEST,
			    "instance needs a value: instance=N"), -1;
		if (pct_decode(eq + 1, (size_t)(end - eq - 1), inst, len,
		    "") < 0)
			inst[0] = '\0';    /* refused as a number below */
		*has = 1;
		q = amp != NULL ? amp + 1 : end;
	}
	return 0;
}

/* "1".."9999": digits only, no sign, blank or leading zero; or -1. */
static int
route_instance(const char *s, unsigned *v)
{
	unsigned long n = 0;

	if (*s < '1' || *s > '9')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		n = n * 10 + (unsigned long)(*s - '0');
		if (n > HIVE_INSTANCE_MAX)
			return -1;
	}
	*v = (unsigned)n;
	return 0;
}

static const char *const action_names[] = {
	[HTTP_ACT_RESTART] = "restart",
	[HTTP_ACT_SLEEP] = "sleep",
	[HTTP_ACT_WAKE] = "wake",
	[HTTP_ACT_RESET] = "reset",
};

const char *
http_action_name(enum http_action a)
{
	return (unsigned)a < sizeof(action_names) / sizeof(action_names[0]) ?
	    action_names[a] : "?";
}

/*
 * The checks, in the order a client sees them: body size, path (its
 * escapes, then which one) and method, agent name, query, token, action,
 * hived stopping, agent, instance.
 */
unsigned
http_route(const struct http_view *view, const struct http_request *rq,
    struct http_decision *out)
{
	const char *q = strchr(rq->target, '?'), *p, *slash, *auth;
	char path[HTTP_PATH_MAX], action[16], inst[8];
	int is_get = strcmp(rq->method, "GET") == 0;
	int is_post = strcmp(rq->method, "POST") == 0;
	int n, has_inst, r;
	size_t i, plen = q != NULL ? (size_t)(q - rq->target) :
	    strlen(rq->target);
	unsigned v;

	memset(out, 0, sizeof(*out));
	out->status = MHD_HTTP_OK;
	if (rq->body_len > HTTP_BODY_MAX)
		return route_fail(out, MHD_HTTP_CONTENT_TOO_LARGE,
		    "body too large");
	if ((r = pct_decode(rq->target, plen, path, sizeof(path), "/?")) == -2)
		return route_fail(out, MHD_HTTP_NOT_FOUND, "no such path");
	if (r == -1)
		return route_fail(out, MHD_HTTP_BAD_REQUEST, "malformed path: "
		    "a bad %%-escape, an escaped '/' or '?', or a byte that "
		    "is not printable ASCII");

	if (strcmp(path, "/health") == 0 || strcmp(path, "/agents") == 0 ||
	    strcmp(path, "/capabilities") == 0) {
		if (!is_get)
			return route_fail(out, MHD_HTTP_METHOD_NOT_ALLOWED,
			    "%s needs GET", path);
		if (route_query(q != NULL ? q + 1 : NULL, inst, sizeof(inst),
		    &has_inst, out) == -1)
			return out->status;
		if (has_inst)
			return route_fail(out, MHD_HTTP_BAD_REQUEST,
			    "%s takes no query arguments", path);
		out->ep = path[1] == 'h' ? HTTP_EP_HEALTH : path[1] == 'a' ?
		    HTTP_EP_AGENTS : HTTP_EP_CAPABILITIES;
		return out->status;
	}
	if (strncmp(path, "/agents/", 8) != 0)
		return route_fail(out, MHD_HTTP_NOT_FOUND, "no such path");
	p = path + 8;
	if ((slash = strchr(p, '/')) == NULL || slash == p ||
	    (size_t)(slash - p) > HIVE_NAME_MAX ||
	    strlen(slash + 1) >= sizeof(action) || strchr(slash + 1, '/'))
		return route_fail(out, MHD_HTTP_NOT_FOUND,
		    "expected /agents/NAME/ACTION");
	memcpy(out->agent, p, (size_t)(slash - p));
	out->agent[slash - p] = '\0';
	memcpy(action, slash + 1, strlen(slash + 1) + 1);
	if (proto_valid_name(out->agent, strlen(out->agent)) != 0)
		return route_fail(out, MHD_HTTP_BAD_REQUEST, "bad agent name");
	if (!is_post)
		return route_fail(out, MHD_HTTP_METHOD_NOT_ALLOWED,
		    "actions need POST");
	if (route_query(q != NULL ? q + 1 : NULL, inst, sizeof(inst),
	    &has_inst, out) == -1)
		return out->status;

	if (view->token[0] == '\0')
		return route_fail(out, MHD_HTTP_FORBIDDEN,
		    "control is off: no token_file in [hive]");
	auth = rq->authorization;
	if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0)
		return route_fail(out, MHD_HTTP_UNAUTHORIZED,
		    "missing bearer token");
	if (!token_ok(view->token, auth + 7))
		return route_fail(out, MHD_HTTP_FORBIDDEN, "wrong token");

	for (i = 0; i < sizeof(action_names) / sizeof(action_names[0]); i++)
		if (strcmp(action, action_names[i]) == 0)
			break;
	if (i == sizeof(action_names) / sizeof(action_names[0]))
		return route_fail(out, MHD_HTTP_NOT_FOUND, "unknown action '%s' "
		    "(restart, sleep, wake, reset)", action);
	out->action = (enum http_action)i;
	if (view->stopping)
		return route_fail(out, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "hived is stopping");
	if ((n = view->agent_instances(view->arg, out->agent)) < 0)
		return route_fail(out, MHD_HTTP_NOT_FOUND, "no agent '%s'",
		    out->agent);
	out->lo = 1;
	out->hi = (unsigned)n;
	if (has_inst) {
		if (route_instance(inst, &v) == -1)
			return route_fail(out, MHD_HTTP_BAD_REQUEST,
			    "instance must be a number 1..%d", HIVE_INSTANCE_MAX);
		if (v > out->hi)
			return route_fail(out, MHD_HTTP_NOT_FOUND,
			    "agent '%s' has %u instance%s", out->agent, out->hi,
			    out->hi == 1 ? "" : "s");
		out->lo = out->hi = v;
	}
	out->ep = HTTP_EP_ACTION;
	return out->status;
}

/* ---- answers ---- */

static const enum sup_event action_events[] = {
	[HTTP_ACT_RESTART] = SUP_EV_RESTART,
	[HTTP_ACT_SLEEP] = SUP_EV_SLEEP,
	[HTTP_ACT_WAKE] = SUP_EV_WAKE,
	[HTTP_ACT_RESET] = SUP_EV_RESET,
};

/* The action rt says, on instances rt->lo..hi of agent a. */
static enum MHD_Result
http_act(struct sup_http *h, struct MHD_Connection *c, struct sup_agent *a,
    const struct http_decision *rt)
{
	const char *action = http_action_name(rt->action);
	enum sup_event ev = action_events[rt->action];
	unsigned applied = 0;
	json_t *arr;

	log_info("http action=%s agent=%s instances=%u..%u", action, rt->agent,
	    rt->lo, rt->hi);
	if ((arr = json_array()) == NULL)
		return MHD_NO;
	for (unsigned i = rt->lo; i <= rt->hi; i++) {
		struct sup_inst *in = a->inst[i - 1];
		int done = sup_inst_event(in, ev, 0);

		applied += done;
		json_array_append_new(arr, json_pack("{s:i, s:s, s:b}",
		    "instance", (int)i, "state", sup_state_name(in->fsm.state),
		    "applied", done));
	}
	if (applied == 0) {
		json_t *err = json_pack("{s:s, s:o}", "error", "nothing to do: "
		    "the action does not apply in the current state",
		    "instances", arr);

		return http_send(c, MHD_HTTP_CONFLICT, err);
	}
	return http_send(c, MHD_HTTP_OK, json_pack("{s:s, s:s, s:o}",
	    "agent", rt->agent, "action", action, "instances", arr));
}

/* http_view's lookup: the agent found is kept for http_act. */
struct http_lookup {
	struct sup *sup;
	struct sup_agent *agent;
};

static int
lookup_instances(void *arg, const char *name)
{
	struct http_lookup *lk = arg;
	struct sup_agent *a = sup_agent_find(lk->sup, name);

	if (a == NULL || a->removed)
		return -1;
	lk->agent = a;
	/* Instances a reload is removing are not addressed. */
	return (int)(a->conf->instances < a->ninst ? a->conf->instances :
	    a->ninst);
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
	return http_respond(c, MHD_HTTP_SERVICE_UNAVAILABLE, json_pack("{s:s}",
	    "error", why == &h->over_ip ? "too many connections from this "
	    "address: close one and retry" : "too many connections: retry "
	    "later"), 1);
}

/*
 * MHD calls this for a request: first with its headers, then once per
 * piece of body, then with *upload_data_size 0 to answer.
 */
static enum MHD_Result
http_handler(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct sup_http *h = cls;
	struct http_conn *hc = *con_cls;
	struct http_lookup lk = { h->sup, NULL };
	struct http_view view = { h->sup->token, h->sup->stopping,
	    lookup_instances, &lk };
	struct http_request rq;
	struct http_decision rt;

	if (hc == NULL)
		return MHD_NO;
	if (!hc->headers) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_CONTENT_LENGTH);
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c,
		    MHD_CONNECTION_INFO_SOCKET_CONTEXT);

		hc->headers = 1;
		if (ci != NULL && (ci->socket_context == &h->over_total ||
		    ci->socket_context == &h->over_ip))
			return http_refuse(h, c, ci->socket_context);
		/* Refused before it is read. */
		if (cl != NULL && strtoull(cl, NULL, 10) > HTTP_BODY_MAX)
			return http_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
			    "body too large");
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		size_t room = hc->len < HTTP_BODY_MAX ? HTTP_BODY_MAX - hc->len : 0;

		if (room > 0)
			memcpy(hc->body + hc->len, upload_data, n < room ? n : room);
		/* Past the limit only "larger" matters: len stops there. */
		hc->len = n > room ? HTTP_BODY_MAX + 1 : hc->len + n;
		*upload_data_size = 0;
		return MHD_YES;
	}

	rq.method = method;
	rq.target = hc->target;
	rq.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_AUTHORIZATION);
	rq.body = hc->body;
	rq.body_len = hc->len;
	http_route(&view, &rq, &rt);

	switch (rt.ep) {
	case HTTP_EP_HEALTH:
		return http_health(h, c);
	case HTTP_EP_AGENTS:
		return http_agents(h, c);
	case HTTP_EP_CAPABILITIES:
		return http_capabilities(h, c);
	case HTTP_EP_ACTION:
		return http_act(h, c, lk.agent, &rt);
	case HTTP_EP_ERROR:
		break;
	}
	return http_send(c, rt.status, json_pack("{s:s}", "error", rt.error));
}

/* Every request http_uri saw ends here, however it ended. */
static void
http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct http_conn *hc = *con_cls;

	if (hc != NULL)
		free(hc->target);
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
	if (h->closed) {
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
	if (http_parse_addr(addr, &ss) == -1 ||
	    (fd = http_listen(addr, &ss, &h->port)) == -1)
		goto err;
	/* The logger first: MHD logs about options as it reads them. */
	h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL,
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
	if (h->d != NULL) {
		ev_io_stop(h->sup->loop, &h->io);
		ev_timer_stop(h->sup->loop, &h->tm);
		MHD_stop_daemon(h->d);
	}
	free(h);
}

unsigned
sup_http_port(const struct sup_http *h)
{
	return h->port;
}
