/*
 * http.c - the control API, on loopback by default.
 *
 *   GET  /health                       hived is up: counts, uptime
 *   GET  /agents                       every instance: state, pid, ...
 *   POST /agents/NAME/restart          [?instance=N]  drain, start afresh
 *   POST /agents/NAME/sleep            drain, keep memory, stay down
 *   POST /agents/NAME/wake             start with the kept memory
 *   POST /agents/NAME/reset            clear failed and the restart count
 *
 * Every POST needs "Authorization: Bearer TOKEN" (TOKEN: the first line of
 * [hive] token_file); without a token_file every POST is refused.  Answers
 * are JSON; errors are {"error": "..."} with a 4xx status.
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
 * without MHD or hived's structures, so that it can be fuzzed.
 */
#include "hived.h"
#include "http.h"

#include <sys/socket.h>

#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <microhttpd.h>

#include "log.h"

struct sup_http {
	struct sup *sup;
	struct MHD_Daemon *d;
	ev_io io;
	ev_timer tm;
	unsigned port;
};

/*
 * One request in progress (MHD's *con_cls): made when its headers are in,
 * freed by http_completed whatever the request's end (answered, client
 * gone, daemon stopped).  The body is kept up to HTTP_BODY_MAX; len
 * counts all of it, so that a larger one is refused.
 */
struct http_conn {
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

static enum MHD_Result
http_send(struct MHD_Connection *c, unsigned code, json_t *body)
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
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
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

/* Printable ASCII only: safe to quote back in an error (valid UTF-8). */
static int
printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

/*
 * The value of query argument key: the first one of that name, names
 * compared without case (as MHD_lookup_connection_value does); NULL when
 * absent or given without a value.
 */
static const char *
route_arg(const struct http_request *rq, const char *key)
{
	for (size_t i = 0; i < rq->nargs; i++)
		if (rq->args[i].key != NULL &&
		    strcasecmp(rq->args[i].key, key) == 0)
			return rq->args[i].value;
	return NULL;
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
 * The checks, in the order a client sees them: body size, path and
 * method, agent name, token, action, hived stopping, agent, instance.
 */
unsigned
http_route(const struct http_view *view, const struct http_request *rq,
    struct http_decision *out)
{
	const char *url = rq->url, *p, *slash, *auth, *qi;
	char action[16];
	int is_get = strcmp(rq->method, "GET") == 0;
	int is_post = strcmp(rq->method, "POST") == 0;
	int n;
	size_t i;

	memset(out, 0, sizeof(*out));
	out->status = MHD_HTTP_OK;
	if (rq->body_len > HTTP_BODY_MAX)
		return route_fail(out, MHD_HTTP_CONTENT_TOO_LARGE,
		    "body too large");

	if (strcmp(url, "/health") == 0 || strcmp(url, "/agents") == 0) {
		if (!is_get)
			return route_fail(out, MHD_HTTP_METHOD_NOT_ALLOWED,
			    "%s needs GET", url);
		out->ep = url[1] == 'h' ? HTTP_EP_HEALTH : HTTP_EP_AGENTS;
		return out->status;
	}
	if (strncmp(url, "/agents/", 8) != 0)
		return route_fail(out, MHD_HTTP_NOT_FOUND, "no such path");
	p = url + 8;
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
		return route_fail(out, MHD_HTTP_NOT_FOUND, "unknown action%s%s%s "
		    "(restart, sleep, wake, reset)", printable(action) ? " '" : "",
		    printable(action) ? action : "", printable(action) ? "'" : "");
	out->action = (enum http_action)i;
	if (view->stopping)
		return route_fail(out, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "hived is stopping");
	if ((n = view->agent_instances(view->arg, out->agent)) < 0)
		return route_fail(out, MHD_HTTP_NOT_FOUND, "no agent '%s'",
		    out->agent);
	out->lo = 1;
	out->hi = (unsigned)n;
	if ((qi = route_arg(rq, "instance")) != NULL) {
		char *end;
		unsigned long v = strtoul(qi, &end, 10);

		if (*qi == '\0' || *end != '\0' || v < 1 || v > HIVE_INSTANCE_MAX)
			return route_fail(out, MHD_HTTP_BAD_REQUEST,
			    "instance must be a number 1..%d", HIVE_INSTANCE_MAX);
		if (v > out->hi)
			return route_fail(out, MHD_HTTP_NOT_FOUND,
			    "agent '%s' has %u instance%s", out->agent, out->hi,
			    out->hi == 1 ? "" : "s");
		out->lo = out->hi = (unsigned)v;
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

/* The query arguments into an array: MHD_get_connection_values' callback. */
struct http_args {
	struct http_arg *v;
	size_t n, cap;
};

static enum MHD_Result
collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct http_args *as = cls;

	if (as->n == as->cap)
		return MHD_NO;
	as->v[as->n].key = key;
	as->v[as->n].value = value;
	as->n++;
	return MHD_YES;
}

/*
 * MHD calls this for a request: first with its headers (*con_cls NULL),
 * then once per piece of body, then with *upload_data_size 0 to answer.
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
	struct http_args as = { NULL, 0, 0 };
	struct http_decision rt;
	int nargs;

	if (hc == NULL) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_CONTENT_LENGTH);

		if ((hc = calloc(1, sizeof(*hc))) == NULL)
			return MHD_NO;
		*con_cls = hc;
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

	nargs = MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, NULL, NULL);
	if (nargs > 0) {
		if ((as.v = calloc((size_t)nargs, sizeof(*as.v))) == NULL)
			return MHD_NO;
		as.cap = (size_t)nargs;
		MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg,
		    &as);
	}
	rq.method = method;
	rq.url = url;
	rq.args = as.v;
	rq.nargs = as.n;
	rq.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_AUTHORIZATION);
	rq.body = hc->body;
	rq.body_len = hc->len;
	http_route(&view, &rq, &rt);
	free(as.v);

	switch (rt.ep) {
	case HTTP_EP_HEALTH:
		return http_health(h, c);
	case HTTP_EP_AGENTS:
		return http_agents(h, c);
	case HTTP_EP_ACTION:
		return http_act(h, c, lk.agent, &rt);
	case HTTP_EP_ERROR:
		break;
	}
	return http_send(c, rt.status, json_pack("{s:s}", "error", rt.error));
}

/* Every request that reached http_handler ends here, however it ended. */
static void
http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	free(*con_cls);
	*con_cls = NULL;
}

static void
http_rearm(struct sup_http *h)
{
	struct ev_loop *loop = h->sup->loop;
	MHD_UNSIGNED_LONG_LONG ms;

	ev_timer_stop(loop, &h->tm);
	if (MHD_get_timeout(h->d, &ms) == MHD_YES) {
		ev_timer_set(&h->tm, ms / 1000., 0.);
		ev_timer_start(loop, &h->tm);
	}
}

static void
http_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sup_http *h = w->data;

	MHD_run(h->d);
	http_rearm(h);
}

static void
http_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup_http *h = w->data;

	MHD_run(h->d);
	http_rearm(h);
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

struct sup_http *
sup_http_new(struct sup *sup, const char *addr)
{
	struct sup_http *h = calloc(1, sizeof(*h));
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

	if (h == NULL)
		return NULL;
	h->sup = sup;
	if (http_parse_addr(addr, &ss) == -1)
		goto err;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The logger first: MHD logs about options as it reads them. */
	h->d = MHD_start_daemon(flags, 0, NULL, NULL, http_handler, h,
	    MHD_OPTION_EXTERNAL_LOGGER, http_logger, NULL,
	    MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
	    MHD_OPTION_END);
	if (h->d == NULL) {
		log_warnx("http: cannot listen on %s", addr);
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
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info != NULL ? info->port : 0;
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
