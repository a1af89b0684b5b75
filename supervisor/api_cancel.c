/*
 * api_cancel.c - POST /tasks/ID/cancel and POST /workflows/ID/cancel
 * (docs/API.md, docs/PROTOCOL.md "Cancel and deadlines").
 *
 *   request --> one statement on the record's connection (store.c):
 *               tasks waiting in PostgreSQL (a workflow's, never released)
 *               are made cancelled there; the states of the others read
 *               (a scheduled task, whose entry waits in Redis, is
 *               cancelled by key, as a queued one)
 *           --> a cancelled result for each task cancelled in the record
 *               (<p>:results and its reply_to: its client hears of it)
 *           --> SET <p>:cancel:<id> for each task that may be queued or
 *               running: the worker that holds it (or pulls it) ends it
 *           --> 202, or 409 with the final state of a task that ended
 *
 * The record's final states are never replaced, so whatever races the
 * cancel (the task completing, the coordinator releasing it) leaves one
 * final state.
 */
#include "hived.h"
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "hive_proto.h"
#include "log.h"
#include "rconn.h"
#include "record.h"

/* How long a cancel key lives: longer than a task waits in a queue. */
#define CANCEL_TTL_MS "604800000"

#define FINAL_STATES "('completed', 'failed', 'dead', 'cancelled', 'expired')"

/* $1 the task: its state before; it and the tasks that depend on it,
 * when waiting in the record, cancelled there (they come back, with
 * their messages, for their results).  A task that may be queued or
 * running is cancelled by key; its waiting dependents here, since they
 * can never run after it. */
static const char task_sql[] =
    "WITH RECURSIVE r AS (SELECT state FROM tasks WHERE id = $1),"
    " d(id) AS (SELECT $1::text UNION SELECT e.task_id FROM workflow_edges e"
    "  JOIN d ON e.depends_on = d.id),"
    " c AS (UPDATE tasks t SET state = 'cancelled', error = CASE"
    "  WHEN t.id = $1 THEN 'cancelled' ELSE 'dependency ' || $1 ||"
    "  ' cancelled' END, finished_at = now(), updated_at = now()"
    "  WHERE t.id IN (SELECT id FROM d) AND t.state = 'waiting'"
    "  AND coalesce((SELECT state FROM r), '') NOT IN " FINAL_STATES
    "  RETURNING t.id, t.workflow, t.message)"
    " SELECT 'task', state, NULL, NULL FROM r"
    " UNION ALL SELECT CASE WHEN c.id = $1 THEN 'self' ELSE 'cancelled'"
    "  END, c.id, c.workflow, c.message FROM c";

/* $1 the workflow: its state before; its tasks waiting, cancelled here;
 * those that may be queued or running, to be cancelled by key. */
static const char wf_sql[] =
    "WITH w AS (UPDATE workflows SET state = 'cancelled',"
    "  finished_at = now() WHERE id = $1 AND state = 'running'"
    "  RETURNING id),"
    " c AS (UPDATE tasks SET state = 'cancelled',"
    "  error = 'workflow cancelled', finished_at = now(), updated_at = now()"
    "  WHERE workflow = $1 AND state = 'waiting'"
    "  AND EXISTS (SELECT 1 FROM w) RETURNING id, workflow, message)"
    " SELECT 'workflow', x.state, (SELECT count(*) FROM w)::text, NULL"
    "  FROM workflows x WHERE x.id = $1"
    " UNION ALL SELECT 'cancelled', c.id, c.workflow, c.message FROM c"
    " UNION ALL SELECT 'key', t.id, NULL, NULL FROM tasks t"
    "  WHERE t.workflow = $1 AND t.state NOT IN " FINAL_STATES
    "  AND t.id NOT IN (SELECT id FROM c) AND EXISTS (SELECT 1 FROM w)";

struct ac {
	struct api_req *req;
	struct sup *sup;
	bool workflow;
	char id[HIVE_ID_MAX + 1];
	char prefix[HIVE_NAME_MAX + 1];
	char host[HIVE_HOST_MAX + 1];
};

static int
final_state(const char *s)
{
	static const char *const f[] = { "completed", "failed", "dead",
		"cancelled", "expired" };

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (strcmp(s, f[i]) == 0)
			return 1;
	return 0;
}

/* The result of a task cancelled in the record, for its client. */
static void
cancelled_result(struct ac *a, struct rconn *rc, const char *id,
    const char *workflow, const char *hexmsg)
{
	struct hive_result r = { 0 };
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	unsigned char *msg;
	size_t len = 0;
	int have_task = 0;
	char key[HIVE_KEY_MAX + 1];
	uint64_t now = proto_now_ms();

	msg = PQunescapeBytea((const unsigned char *)hexmsg, &len);
	if (msg != NULL)
		have_task = proto_decode_task((const char *)msg, len, &t,
		    &err) == 0;
	r.v = HIVE_PROTO_VERSION;
	r.id = HIVE_STR(id);
	r.agent = HIVE_STR("hived");
	r.host = HIVE_STR(a->host);
	r.status = HIVE_STATUS_CANCELLED;
	r.error = HIVE_STR(a->workflow ? "workflow cancelled" : "cancelled");
	r.attempt = 1;
	r.started_ms = r.finished_ms = now;
	r.workflow = HIVE_STR(workflow);
	r.result.type = r.memory.type = MSGPACK_OBJECT_NIL;
	msgpack_sbuffer_init(&sb);
	if (proto_encode_result(&sb, &r, &err) == 0) {
		if (proto_key_named(key, sizeof(key), a->prefix, "results") > 0)
			rconn_cmd(rc, rconn_log_error, "api: cancel",
			    "XADD %s * m %b", key, sb.data, sb.size);
		if (have_task && t.reply_to.len > 0) {
			snprintf(key, sizeof(key), "%.*s", (int)t.reply_to.len,
			    t.reply_to.ptr);
			rconn_cmd(rc, rconn_log_error, "api: cancel",
			    "XADD %s * m %b", key, sb.data, sb.size);
		}
	}
	msgpack_sbuffer_destroy(&sb);
	if (have_task)
		proto_task_clear(&t);
	PQfreemem(msg);
}

static int
set_key(struct ac *a, struct rconn *rc, const char *id)
{
	char key[HIVE_KEY_MAX];

	if (proto_key_cancel(key, sizeof(key), a->prefix, id) < 0)
		return -1;
	return rconn_cmd(rc, rconn_log_error, "api: cancel",
	    "SET %s %s PX " CANCEL_TTL_MS, key, a->workflow ? "workflow" :
	    "api");
}

/* The record's answer: results, keys, then the reply. */
static void
ac_answer(struct ac *a, PGresult *res)
{
	struct rconn *rc = sup_store_redis(a->sup);
	const char *state = NULL;
	int nwaiting = 0, nkeys = 0, changed = 0;  /* nwaiting: the task
	                                            * itself, or the
	                                            * workflow's tasks */
	json_t *o;                   /* api_reply, api_fail_with take it */

	for (int i = 0; i < PQntuples(res); i++) {
		const char *kind = PQgetvalue(res, i, 0);

		if (strcmp(kind, "task") == 0 || strcmp(kind, "workflow") == 0) {
			state = PQgetvalue(res, i, 1);
			changed = !PQgetisnull(res, i, 2) &&
			    strcmp(PQgetvalue(res, i, 2), "1") == 0;
		} else if (strcmp(kind, "cancelled") == 0 ||
		    strcmp(kind, "self") == 0) {
			nwaiting += kind[0] == 's' || a->workflow;
			cancelled_result(a, rc, PQgetvalue(res, i, 1),
			    PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
		} else if (strcmp(kind, "key") == 0) {
			if (set_key(a, rc, PQgetvalue(res, i, 1)) == 0)
				nkeys++;
		}
	}
	if (a->workflow && state == NULL) {
		api_fail(a->req, 404, "not_found", "no such workflow");
		return;
	}
	if (a->workflow && !changed) {
		o = json_pack("{s:s}", "state", state);
		api_fail_with(a->req, 409, "conflict", o, "the workflow has "
		    "ended already: %s", state);
		return;
	}
	if (!a->workflow && state != NULL && final_state(state) &&
	    nwaiting == 0) {
		o = json_pack("{s:s}", "state", state);
		api_fail_with(a->req, 409, "conflict", o, "the task has ended "
		    "already: %s", state);
		return;
	}
	/* A task not recorded (yet: the recorder may lag a fresh one) may
	 * be queued: its key is set too. */
	if (!a->workflow && nwaiting == 0 && set_key(a, rc, a->id) == -1) {
		api_fail(a->req, 503, "unavailable", "Redis is down");
		return;
	}
	if (a->workflow)
		o = json_pack("{s:s, s:s, s:i, s:i}", "id", a->id, "state",
		    "cancelled", "cancelled", nwaiting, "cancelling", nkeys);
	else
		o = json_pack("{s:s, s:s, s:o}", "id", a->id, "state",
		    nwaiting ? "cancelled" : "cancelling", "was",
		    state ? json_string(state) : json_null());
	api_reply(a->req, 202, o);
}

static void
ac_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct ac *a = arg;

	(void)pg;
	if (res == NULL)
		api_fail(a->req, 503, "no_record", "the connection to "
		    "PostgreSQL was lost");
	else if (err != NULL) {
		log_warnx("api: cancel %s: %s", a->id, err);
		api_fail(a->req, 500, "internal", "the record's statement "
		    "failed (see hived's log)");
	} else
		ac_answer(a, res);
	free(a);
}

static void
ac_start(struct api_req *req, bool workflow)
{
	struct sup *sup = api_sup(req);
	const struct hive_conf *c = sup->cref->conf;
	const char *id = api_arg(req, 0);
	struct sup_pg *pg = sup_store_pg(sup);
	const char *v[1] = { id };
	struct ac *a;

	if (proto_valid_id(id, strlen(id)) != 0) {
		api_fail(req, 404, "not_found", "no such %s (not an id)",
		    workflow ? "workflow" : "task");
		return;
	}
	if (pg == NULL || !sup_pg_is_up(pg)) {
		api_fail(req, 503, "no_record", "the record (PostgreSQL) is "
		    "off or down");
		return;
	}
	if (!sup_store_redis_up(sup)) {
		api_fail(req, 503, "unavailable", "Redis is down");
		return;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	a->req = req;
	a->sup = sup;
	a->workflow = workflow;
	snprintf(a->id, sizeof(a->id), "%s", id);
	snprintf(a->prefix, sizeof(a->prefix), "%s", c->prefix);
	snprintf(a->host, sizeof(a->host), "%s", c->host);
	if (sup_pg_query(pg, workflow ? wf_sql : task_sql, 1, v, NULL, NULL,
	    ac_cb, a) < 0) {
		free(a);
		api_fail(req, 500, "internal", "out of memory");
	}
}

static void
ac_task(struct api_req *req)
{
	ac_start(req, false);
}

static void
ac_workflow(struct api_req *req)
{
	ac_start(req, true);
}

int
api_task_deadline(json_t *b, uint64_t *deadline, char *err, size_t len)
{
	json_t *d = json_object_get(b, "deadline"), *t = json_object_get(b,
	    "ttl");
	long long ms = 0;
	unsigned ttl = 0;

	*deadline = 0;
	if (d != NULL && json_is_null(d))
		d = NULL;
	if (t != NULL && json_is_null(t))
		t = NULL;
	if (d != NULL && t != NULL) {
		snprintf(err, len, "fields 'deadline' and 'ttl': one or the "
		    "other");
		return -1;
	}
	if (d != NULL) {
		if (json_is_integer(d) && json_integer_value(d) > 0)
			ms = json_integer_value(d);
		else if (!json_is_string(d) ||
		    api_time_text(json_string_value(d), &ms) == -1 || ms <= 0) {
			snprintf(err, len, "field 'deadline': expected a time, "
			    "RFC 3339 (2026-12-07T08:00:00Z) or Unix ms");
			return -1;
		}
		*deadline = (uint64_t)ms;
	}
	if (t != NULL) {
		if (json_is_integer(t) && json_integer_value(t) > 0 &&
		    json_integer_value(t) <= HIVE_TIMEOUT_MAX)
			ttl = (unsigned)json_integer_value(t);
		else if (!json_is_string(t) || conf_parse_duration(
		    json_string_value(t), &ttl) == -1 || ttl == 0 ||
		    ttl > HIVE_TIMEOUT_MAX) {
			snprintf(err, len, "field 'ttl': expected a duration "
			    "(\"30s\", \"5m\") or ms, up to 7 days");
			return -1;
		}
		*deadline = proto_now_ms() + ttl;
	}
	return 0;
}

const struct api_route api_cancel_routes[] = {
	{ "POST", "/tasks/{}/cancel", "", API_CHANGE, ac_task },
	{ "POST", "/workflows/{}/cancel", "", API_CHANGE, ac_workflow },
	{ NULL, NULL, NULL, 0, NULL },
};
