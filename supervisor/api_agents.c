/*
 * api_agents.c - the HTTP API's endpoints on agents (api.h):
 *
 *   GET  /agents                       every instance: state, pid, ...
 *   GET  /capabilities                 each capability: queues, consumers
 *   POST /agents/NAME/restart          [?instance=N]  drain, start afresh
 *   POST /agents/NAME/sleep            drain, keep memory, stay down
 *   POST /agents/NAME/wake             start with the kept memory
 *   POST /agents/NAME/reset            clear failed and the restart count
 *   POST /agents/NAME/start            start what is stopped, crashed,
 *                                      asleep or failed
 *   POST /agents/NAME/stop             drain, SIGKILL at stop_timeout,
 *                                      stay stopped
 *   POST /agents/NAME/drain            drain without a SIGKILL: its tasks
 *                                      finish, then stay stopped
 *
 * All answered at once from hived's own state: no Redis or PostgreSQL
 * call.  docs/API.md documents them.
 */
#include "hived.h"
#include "api.h"

#include <sys/wait.h>

#include <string.h>

#include <jansson.h>

#include "log.h"

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
	json_object_set_new(o, "task", in->task[0] != '\0' && in->pid > 0 ?
	    json_string(in->task) : json_null());
	json_object_set_new(o, "task_ms", in->task[0] != '\0' && in->pid > 0 ?
	    json_integer((json_int_t)((now - in->task_since) * 1000.)) :
	    json_null());
	json_object_set_new(o, "memory_v", json_integer((json_int_t)in->mem->v));
	json_object_set_new(o, "heartbeat_age_ms", in->have_hb && in->pid > 0 ?
	    json_integer((json_int_t)((now - in->last_hb) * 1000.)) :
	    json_null());
	json_object_set_new(o, "handler_pid", in->handler_pid > 0 ?
	    json_integer(in->handler_pid) : json_null());
	json_object_set_new(o, "handler_rss_kb",
	    json_integer((json_int_t)in->handler_rss_kb));
	/* The worker's, sampled every few seconds (qstat.c). */
	json_object_set_new(o, "rss_kb", in->pid > 0 && in->rss_pid == in->pid ?
	    json_integer((json_int_t)in->rss_kb) : json_null());
	json_object_set_new(o, "uptime_ms", in->pid > 0 ?
	    json_integer((json_int_t)((now - in->spawned_at) * 1000.)) :
	    json_null());
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

static void
api_agents(struct api_req *req)
{
	struct sup *sup = api_sup(req);
	ev_tstamp now = ev_now(sup->loop);
	json_t *arr = json_array();
	struct sup_agent *a;

	if (arr == NULL) {
		api_reply(req, 500, NULL);
		return;
	}
	TAILQ_FOREACH(a, &sup->agents, entry)
		for (unsigned i = 0; i < a->ninst; i++)
			json_array_append_new(arr, inst_json(a->inst[i], now));
	api_reply(req, 200, json_pack("{s:o}", "agents", arr));
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
static void
api_capabilities(struct api_req *req)
{
	struct sup *sup = api_sup(req);
	const struct hive_conf *conf = sup->cref->conf;
	json_t *caps = json_object(), *arr = json_array(), *e, *v;
	struct sup_agent *a;
	const char *k;
	char consumer[HIVE_KEY_MAX];

	if (caps == NULL || arr == NULL) {
		json_decref(caps);
		json_decref(arr);
		api_reply(req, 500, NULL);
		return;
	}
	TAILQ_FOREACH(a, &sup->agents, entry) {
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
	api_reply(req, 200, json_pack("{s:o}", "capabilities", arr));
}

/* ---- actions ---- */

/* "1".."9999": digits only, no sign, blank or leading zero; or -1. */
static int
parse_instance(const char *s, unsigned *v)
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

/*
 * POST /agents/NAME/ACTION[?instance=N]: ev on the instances it names
 * (every configured one when the query names none).  Instances a reload
 * is removing are not addressed.
 */
struct sup_agent *
api_agent(struct api_req *req)
{
	const char *name = api_arg(req, 0);
	struct sup_agent *a;

	if (proto_valid_name(name, strlen(name)) != 0) {
		api_fail(req, 400, "bad_request", "bad agent name");
		return NULL;
	}
	if ((a = sup_agent_find(api_sup(req), name)) == NULL || a->removed) {
		api_fail(req, 404, "not_found", "no agent '%s'", name);
		return NULL;
	}
	return a;
}

static void
api_act(struct api_req *req, const char *action, enum sup_event ev)
{
	const char *name = api_arg(req, 0), *inst = api_query(req, "instance");
	struct sup_agent *a;
	unsigned lo = 1, hi, v, applied = 0;
	json_t *arr;

	if ((a = api_agent(req)) == NULL)
		return;
	hi = a->conf->instances < a->ninst ? a->conf->instances : a->ninst;
	if (inst != NULL) {
		if (parse_instance(inst, &v) == -1) {
			api_fail(req, 400, "bad_request",
			    "instance must be a number 1..%d", HIVE_INSTANCE_MAX);
			return;
		}
		if (v > hi) {
			api_fail(req, 404, "not_found", "agent '%s' has %u "
			    "instance%s", name, hi, hi == 1 ? "" : "s");
			return;
		}
		lo = hi = v;
	}
	log_info("http action=%s agent=%s instances=%u..%u", action, name, lo,
	    hi);
	if ((arr = json_array()) == NULL) {
		api_reply(req, 500, NULL);
		return;
	}
	for (unsigned i = lo; i <= hi; i++) {
		struct sup_inst *in = a->inst[i - 1];
		int done = sup_inst_event(in, ev, 0);

		applied += done;
		json_array_append_new(arr, json_pack("{s:i, s:s, s:b}",
		    "instance", (int)i, "state", sup_state_name(in->fsm.state),
		    "applied", done));
	}
	if (applied == 0) {
		api_fail_with(req, 409, "conflict", json_pack("{s:o}",
		    "instances", arr), "nothing to do: the action does not apply "
		    "in the current state");
		return;
	}
	api_reply(req, 200, json_pack("{s:s, s:s, s:o}", "agent", name,
	    "action", action, "instances", arr));
}

static void
api_restart(struct api_req *req)
{
	api_act(req, "restart", SUP_EV_RESTART);
}

static void
api_sleep(struct api_req *req)
{
	api_act(req, "sleep", SUP_EV_SLEEP);
}

static void
api_wake(struct api_req *req)
{
	api_act(req, "wake", SUP_EV_WAKE);
}

static void
api_reset(struct api_req *req)
{
	api_act(req, "reset", SUP_EV_RESET);
}

/* An operator's start, stop and drain (agent.c: op-start, op-stop,
 * drain): what they stop stays stopped until an operator starts it. */
static void
api_start(struct api_req *req)
{
	api_act(req, "start", SUP_EV_OPSTART);
}

static void
api_stop(struct api_req *req)
{
	api_act(req, "stop", SUP_EV_OPSTOP);
}

static void
api_drain(struct api_req *req)
{
	api_act(req, "drain", SUP_EV_DRAIN);
}

const struct api_route api_agents_routes[] = {
	{ "GET", "/agents", "", 0, api_agents },
	{ "GET", "/capabilities", "", 0, api_capabilities },
	{ "POST", "/agents/{}/restart", "instance", API_CHANGE, api_restart },
	{ "POST", "/agents/{}/sleep", "instance", API_CHANGE, api_sleep },
	{ "POST", "/agents/{}/wake", "instance", API_CHANGE, api_wake },
	{ "POST", "/agents/{}/reset", "instance", API_CHANGE, api_reset },
	{ "POST", "/agents/{}/start", "instance", API_CHANGE, api_start },
	{ "POST", "/agents/{}/stop", "instance", API_CHANGE, api_stop },
	{ "POST", "/agents/{}/drain", "instance", API_CHANGE, api_drain },
	{ NULL, NULL, NULL, 0, NULL },
};
