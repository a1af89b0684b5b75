/*
 * verb_agents.c - the verbs about agents and hived itself: status, the
 * actions on an agent (start, stop, restart, sleep, wake, reset, drain),
 * reload, stop-all, start-all, health, queues.
 */
#include "hivectl.h"

#include <stdlib.h>
#include <string.h>

/* An agent's label ("echo/2") matches what (a name or NAME/N). */
static int
label_matches(const char *label, const char *what)
{
	size_t n = strlen(what);

	if (strchr(what, '/') != NULL)
		return strcmp(label, what) == 0;
	return strncmp(label, what, n) == 0 && label[n] == '/';
}

int
verb_status(struct ctl *c)
{
	const char *only = c->nargs > 0 ? c->args[0] : NULL;
	json_t *body, *agents, *a, *keep;
	struct ctl_table t;
	size_t i;
	int rc;

	if ((rc = ctl_call(c, "GET", "/agents", NULL, &body)) != CTL_OK)
		return rc;
	agents = json_object_get(body, "agents");
	if ((keep = json_array()) == NULL) {
		json_decref(body);
		return CTL_FAILED;
	}
	json_array_foreach(agents, i, a) {
		const char *label = json_string_value(json_object_get(a,
		    "agent"));

		if (only == NULL || (label != NULL && label_matches(label, only)))
			json_array_append(keep, a);
	}
	if (only != NULL && json_array_size(keep) == 0) {
		fprintf(stderr, "hivectl: no agent '%s' (not_found)\n", only);
		rc = CTL_FAILED;
	} else if (c->json) {
		json_object_set(body, "agents", keep);
		ctl_json_print(body);
	} else {
		ctl_table_init(&t, 7, "AGENT", "STATE", "PID", "UPTIME",
		    "RESTARTS", "MEMORY", "TASK");
		json_array_foreach(keep, i, a) {
			char b[8][128], state[160], task[300];
			const char *st = ctl_str(a, "state", b[1], sizeof(b[1]));

			snprintf(state, sizeof(state), "%s%s", st,
			    json_is_true(json_object_get(a, "removed")) ?
			    " (removed)" : "");
			/* The task, and for how long it has run. */
			snprintf(task, sizeof(task), "%s", ctl_str(a, "task",
			    b[6], sizeof(b[6])));
			if (json_is_integer(json_object_get(a, "task_ms")))
				snprintf(task + strlen(task), sizeof(task) -
				    strlen(task), " (%s)", ctl_dur(a, "task_ms",
				    b[7], sizeof(b[7])));
			ctl_table_row(&t, ctl_str(a, "agent", b[0], sizeof(b[0])),
			    state, ctl_str(a, "pid", b[2], sizeof(b[2])),
			    ctl_dur(a, "uptime_ms", b[3], sizeof(b[3])),
			    ctl_str(a, "restarts", b[4], sizeof(b[4])),
			    ctl_str(a, "memory_v", b[5], sizeof(b[5])), task);
		}
		ctl_table_print(&t, stdout);
		ctl_table_free(&t);
	}
	json_decref(keep);
	json_decref(body);
	return rc;
}

/* The instances of an action's answer, one line each. */
static void
print_instances(const char *agent, const json_t *arr, FILE *f)
{
	struct ctl_table t;
	const json_t *in;
	size_t i;

	if (json_array_size(arr) == 0)
		return;
	ctl_table_init(&t, 3, "AGENT", "STATE", "APPLIED");
	json_array_foreach(arr, i, in) {
		char label[160], b[2][64];

		snprintf(label, sizeof(label), "%s/%s", agent,
		    ctl_str(in, "instance", b[0], sizeof(b[0])));
		ctl_table_row(&t, label, ctl_str(in, "state", b[1],
		    sizeof(b[1])), json_is_true(json_object_get(in, "applied")) ?
		    "yes" : "no");
	}
	ctl_table_print(&t, f);
	ctl_table_free(&t);
}

/*
 * POST /agents/NAME/ACTION[?instance=N]: the verb is the action.  A 409
 * (the action applies to none of them) exits 1 after the instances'
 * states, so the operator sees why.
 */
int
verb_action(struct ctl *c)
{
	const char *arg = c->args[0], *slash = strrchr(arg, '/');
	char *name, *ename, *path = NULL;
	struct ctl_resp r;
	json_t *arr;
	int rc;

	if (slash != NULL && (slash[1] < '1' || slash[1] > '9' ||
	    strspn(slash + 1, "0123456789") != strlen(slash + 1)))
		return ctl_usage(c, "'%s' is not AGENT or AGENT/N", arg);
	if ((name = strndup(arg, slash ? (size_t)(slash - arg) :
	    strlen(arg))) == NULL || *name == '\0') {
		free(name);
		return ctl_usage(c, "'%s' is not AGENT or AGENT/N", arg);
	}
	ename = ctl_escape(c, name);
	if (asprintf(&path, "/agents/%s/%s%s%s", ename, c->verb,
	    slash ? "?instance=" : "", slash ? slash + 1 : "") == -1)
		path = NULL;
	free(ename);
	rc = path != NULL ? ctl_request(c, "POST", path, NULL, 0, &r) :
	    CTL_FAILED;
	free(path);
	if (rc != CTL_OK) {
		free(name);
		return rc;
	}
	arr = json_object_get(r.body, "instances");
	if (arr == NULL)   /* a 409's instances may sit in its error */
		arr = json_object_get(json_object_get(r.body, "error"),
		    "instances");
	if (r.status >= 200 && r.status < 300) {
		if (c->json)
			ctl_json_print(r.body);
		else
			print_instances(name, arr, stdout);
	} else {
		rc = ctl_http_fail(c, &r);
		if (!c->json)
			print_instances(name, arr, stderr);
	}
	ctl_resp_free(&r);
	free(name);
	return rc;
}

/* The "file:line: ..." errors of a refused reload, on stderr. */
static void
print_conf_errors(const json_t *body)
{
	const json_t *errs = json_object_get(json_object_get(body, "error"),
	    "errors"), *e;
	size_t i;

	if (errs == NULL)
		errs = json_object_get(body, "errors");
	json_array_foreach(errs, i, e)
		if (json_is_string(e))
			fprintf(stderr, "  %s\n", json_string_value(e));
}

int
verb_reload(struct ctl *c)
{
	struct ctl_resp r;
	int rc;

	if ((rc = ctl_request(c, "POST", "/reload", NULL, 0, &r)) != CTL_OK)
		return rc;
	if (r.status >= 200 && r.status < 300) {
		const char *sum = json_string_value(json_object_get(r.body,
		    "summary"));

		if (c->json)
			ctl_json_print(r.body);
		else
			printf("reloaded%s%s\n", sum ? ": " : "", sum ? sum : "");
	} else {
		rc = ctl_http_fail(c, &r);
		print_conf_errors(r.body);
		if (r.status == 422 || r.status == 409)
			fprintf(stderr, "hivectl: the configuration running "
			    "is unchanged\n");
	}
	ctl_resp_free(&r);
	return rc;
}

/* stop-all and start-all: one POST, one count. */
static int
all_verb(struct ctl *c, const char *path, const char *key,
    const char *what, long transfer_ms)
{
	struct ctl_resp r;
	int rc;

	if ((rc = ctl_request(c, "POST", path, NULL, transfer_ms, &r)) !=
	    CTL_OK)
		return rc;
	if (r.status < 200 || r.status >= 300)
		rc = ctl_http_fail(c, &r);
	else if (c->json)
		ctl_json_print(r.body);
	else
		printf("%s %lld instance%s\n", what, (long long)
		    json_integer_value(json_object_get(r.body, key)),
		    json_integer_value(json_object_get(r.body, key)) == 1 ?
		    "" : "s");
	ctl_resp_free(&r);
	return rc;
}

/* hived may answer stop-all once every instance stopped: the request's
 * bound is the stop's, and a margin. */
int
verb_stop_all(struct ctl *c)
{
	char path[64];
	long bound = 0;

	snprintf(path, sizeof(path), "/stop-all");
	if (c->timeout_ms >= 0) {
		snprintf(path, sizeof(path), "/stop-all?timeout_ms=%lld",
		    c->timeout_ms);
		bound = (long)c->timeout_ms + CTL_TRANSFER_MS;
	} else if (c->http_timeout_ms <= 0) {
		bound = 10 * 60 * 1000;   /* stop_timeout may be minutes */
	}
	if (c->http_timeout_ms > 0 && c->http_timeout_ms < bound)
		bound = (long)c->http_timeout_ms;
	return all_verb(c, path, "stopped", "stopped", bound);
}

int
verb_start_all(struct ctl *c)
{
	return all_verb(c, "/start-all", "started", "started", 0);
}

/* "redis  up, 0 ms" and the like, for health. */
static void
component(struct ctl_table *t, const char *name, const json_t *o)
{
	char line[512], b[64];
	const char *err = json_string_value(json_object_get(o, "error"));
	const json_t *conf = json_object_get(o, "configured");

	if (o == NULL)
		return;
	if (json_is_false(conf))
		snprintf(line, sizeof(line), "not configured");
	else
		snprintf(line, sizeof(line), "%s%s%s%s%s",
		    json_is_true(json_object_get(o, "up")) ? "up" : "DOWN",
		    json_is_integer(json_object_get(o, "latency_ms")) ?
		    ", latency " : "", json_is_integer(json_object_get(o,
		    "latency_ms")) ? ctl_dur(o, "latency_ms", b, sizeof(b)) :
		    "", err ? ": " : "", err ? err : "");
	ctl_table_row(t, name, line);
}

/* 200: healthy (0); 503 with a health answer: degraded or stopping (1). */
int
verb_health(struct ctl *c)
{
	struct ctl_resp r;
	struct ctl_table t;
	json_t *st, *comp;
	const char *k;
	json_t *v;
	char b[4][128], states[512] = "";
	size_t off = 0;
	int rc;

	if ((rc = ctl_request(c, "GET", "/health", NULL, 0, &r)) != CTL_OK)
		return rc;
	if (!json_is_string(json_object_get(r.body, "status"))) {
		rc = ctl_http_fail(c, &r);
		ctl_resp_free(&r);
		return rc;
	}
	rc = r.status == 200 ? CTL_OK : CTL_FAILED;
	if (c->json) {
		ctl_json_print(r.body);
		ctl_resp_free(&r);
		return rc;
	}
	st = json_object_get(r.body, "states");
	json_object_foreach(st, k, v)
		if (json_integer_value(v) > 0 && off < sizeof(states))
			off += (size_t)snprintf(states + off, sizeof(states) -
			    off, "%s%s %lld", off ? ", " : "", k,
			    (long long)json_integer_value(v));
	comp = json_object_get(r.body, "components");
	ctl_table_init(&t, 2, "status", ctl_str(r.body, "status", b[0],
	    sizeof(b[0])));
	ctl_table_row(&t, "pid", ctl_str(r.body, "pid", b[1], sizeof(b[1])));
	ctl_table_row(&t, "uptime", ctl_dur(r.body, "uptime_ms", b[2],
	    sizeof(b[2])));
	ctl_table_row(&t, "instances", ctl_str(r.body, "instances", b[3],
	    sizeof(b[3])));
	if (states[0] != '\0')
		ctl_table_row(&t, "states", states);
	component(&t, "redis", json_object_get(comp, "redis"));
	component(&t, "postgres", json_object_get(comp, "postgres"));
	if (json_object_get(r.body, "quarantined") != NULL)
		ctl_table_row(&t, "quarantined", ctl_str(r.body, "quarantined",
		    b[0], sizeof(b[0])));
	if (json_object_get(r.body, "summary") != NULL)
		ctl_table_row(&t, "summary", ctl_str(r.body, "summary", b[1],
		    sizeof(b[1])));
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	ctl_resp_free(&r);
	return rc;
}

int
verb_queues(struct ctl *c)
{
	json_t *body, *q;
	struct ctl_table t;
	size_t i;
	int rc;

	if ((rc = ctl_call(c, "GET", "/queues", NULL, &body)) != CTL_OK)
		return rc;
	if (c->json) {
		ctl_json_print(body);
		json_decref(body);
		return CTL_OK;
	}
	ctl_table_init(&t, 7, "QUEUE", "PRIORITY", "LENGTH", "PENDING", "LAG",
	    "OLDEST", "CONSUMERS");
	json_array_foreach(json_object_get(body, "queues"), i, q) {
		char b[7][128];

		ctl_table_row(&t, ctl_str(q, "capability", b[0], sizeof(b[0])),
		    ctl_str(q, "priority", b[1], sizeof(b[1])),
		    ctl_str(q, "length", b[2], sizeof(b[2])),
		    ctl_str(q, "pending", b[3], sizeof(b[3])),
		    ctl_str(q, "lag", b[4], sizeof(b[4])),
		    ctl_dur(q, "oldest_age_ms", b[5], sizeof(b[5])),
		    ctl_str(q, "consumers", b[6], sizeof(b[6])));
	}
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	json_decref(body);
	return CTL_OK;
}
