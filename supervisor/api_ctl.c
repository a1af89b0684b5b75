/*
 * api_ctl.c - hived as a whole: its health, reload, and the emergency
 * stop of every agent (docs/API.md, "Control").
 *
 *   GET  /health                   200 ok | 503 degraded/stopping: each
 *                                  server's state and latency, counts
 *   POST /reload                   SIGHUP's path: 200, 422 with every
 *                                  file:line error, 409 refused
 *   POST /stop-all[?timeout_ms=N]  every instance: drain, SIGKILL at the
 *                                  bound, stopped (held) until start-all
 *   POST /start-all                what an operator stopped starts again
 *
 * Everything is answered at once from hived's state: /health reads what
 * the probes of store.c last found (sup_store_health), never a call.
 */
#include "hived.h"
#include "api.h"

#include <unistd.h>

#include "log.h"

/* The bound a stop-all may be given: an hour is already far past any
 * stop_timeout an operator would wait for in an emergency. */
#define CTL_STOP_ALL_MAX_MS (3600u * 1000u)

/* One server of /health's "components". */
static json_t *
component_json(const struct sup_health *h, int with_configured)
{
	json_t *o = json_pack("{s:b, s:o}", "up", h->up, "latency_ms",
	    h->latency_ms >= 0 ? json_integer((json_int_t)h->latency_ms) :
	    json_null());

	if (o == NULL)
		return NULL;
	if (with_configured)
		json_object_set_new(o, "configured", json_boolean(h->configured));
	if (h->configured && !h->up && h->error[0] != '\0')
		json_object_set_new(o, "error", json_string(h->error));
	return o;
}

/*
 * 200 only when Redis answers, PostgreSQL answers where configured, and
 * no instance is quarantined (failed); otherwise 503 with the same body,
 * "status" degraded (or stopping while hived stops).
 */
static void
ctl_health(struct api_req *req)
{
	struct sup *sup = api_sup(req);
	struct sup_health rh, ph;
	unsigned cnt[SUP_ST_COUNT], n;
	char line[sizeof(sup->status)];
	json_t *states = json_object(), *body;
	int ok;

	n = sup_count_states(sup, cnt);
	sup_summary(sup, line, sizeof(line));
	sup_store_health(sup, &rh, &ph);
	for (int s = 0; s < SUP_ST_COUNT; s++)
		json_object_set_new(states, sup_state_name((enum sup_state)s),
		    json_integer(cnt[s]));
	ok = !sup->stopping && rh.up && (!ph.configured || ph.up) &&
	    cnt[SUP_ST_FAILED] == 0;
	body = json_pack("{s:s, s:I, s:I, s:b, s:I, s:o, s:s, s:{s:o, s:o}, "
	    "s:I}",
	    "status", sup->stopping ? "stopping" : ok ? "ok" : "degraded",
	    "pid", (json_int_t)getpid(),
	    "uptime_ms", (json_int_t)((ev_now(sup->loop) - sup->started) * 1000.),
	    "ready", sup->ready_sent,
	    "instances", (json_int_t)n,
	    "states", states,
	    "summary", line,
	    "components",
	    "redis", component_json(&rh, 0),
	    "postgres", component_json(&ph, 1),
	    "quarantined", (json_int_t)cnt[SUP_ST_FAILED]);
	api_reply(req, ok ? 200 : 503, body);
}

/* SIGHUP's path (sup_reload), answered with what it did. */
static void
ctl_reload(struct api_req *req)
{
	struct sup *sup = api_sup(req);
	struct sup_reload_res res;
	json_t *errs;

	log_info("reload asked by the API");
	if (sup_reload(sup, &res) == 0) {
		api_reply(req, 200, json_pack("{s:b, s:s}", "reloaded", 1,
		    "summary", res.message));
		sup_reload_res_free(&res);
		return;
	}
	switch (res.status) {
	case SUP_RELOAD_INVALID:
		if ((errs = json_array()) != NULL)
			for (size_t i = 0; i < res.errors.n; i++)
				json_array_append_new(errs,
				    json_string(res.errors.v[i]));
		api_fail_with(req, 422, "invalid", json_pack("{s:o}", "errors",
		    errs), "%s", res.message);
		break;
	case SUP_RELOAD_REFUSED:
		api_fail(req, 409, "conflict", "%s", res.message);
		break;
	case SUP_RELOAD_STOPPING:
	case SUP_RELOAD_OK:
		api_fail(req, 503, "unavailable", "%s", res.message);
		break;
	}
	sup_reload_res_free(&res);
}

static void
ctl_stop_all(struct api_req *req)
{
	unsigned long bound;
	unsigned n;

	if (api_uint(req, "timeout_ms", 1, CTL_STOP_ALL_MAX_MS, 0, &bound) == -1)
		return;
	n = sup_stop_all(api_sup(req), (unsigned)bound, "the API");
	api_reply(req, 200, json_pack("{s:I}", "stopped", (json_int_t)n));
}

static void
ctl_start_all(struct api_req *req)
{
	unsigned n = sup_start_all(api_sup(req), "the API");

	api_reply(req, 200, json_pack("{s:I}", "started", (json_int_t)n));
}

const struct api_route api_ctl_routes[] = {
	{ "GET", "/health", "", 0, ctl_health },
	{ "POST", "/reload", "", API_CHANGE, ctl_reload },
	{ "POST", "/stop-all", "timeout_ms", API_CHANGE, ctl_stop_all },
	{ "POST", "/start-all", "", API_CHANGE, ctl_start_all },
	{ NULL, NULL, NULL, 0, NULL },
};
