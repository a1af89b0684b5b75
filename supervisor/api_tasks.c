/*
 * api_tasks.c - the record, read: GET /tasks, /tasks/ID, /workflows,
 * /workflows/ID (docs/API.md, "Tasks and workflows").
 *
 * Every answer is one PostgreSQL query (record/pg.c, non-blocking) on a
 * connection of the API's own: a recorder transaction never waits behind
 * a request, nor a request behind a recorder batch.
 *
 *   request --> at_query --> sup_pg_query --> at_pg_cb --> q->done --> reply
 *                 |  (503 no_record: not configured, down;       |
 *                 |   503 unavailable: AT_INFLIGHT_MAX busy)      |
 *                 +--> guard timer: 503 when no answer in time ---+
 *
 * The connection is opened at the first request with [hive] postgres, and
 * opened again with the new settings at the first request after a reload
 * changed them.  Its session is read-only and has a statement_timeout, and
 * a guard timer answers a request whose query has not returned a little
 * after it, so a request never waits for ever (a query still queued runs
 * later; its answer is dropped).  A request whose client has gone is
 * answered all the same: http.c drops the answer.
 *
 * SQL is made of the fragments here and in api_tasks.h only; what a
 * request gives goes in parameters ($1...).  Lists are keyset paged, newest first by
 * (created_at, id), with the cursor of api_tasks.h; the indexes they need
 * are schema migration 5 (record/migrate.c).
 */
#include "hived.h"
#include "api.h"
#include "api_tasks.h"

#include <sys/queue.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "record.h"

#define AT_INFLIGHT_MAX   8       /* queries at once; more: 503 */
#define AT_TIMEOUT_MS     "5000"  /* statement_timeout of the session (text:
                                   * it goes into SQL and messages) */
#define AT_GUARD_S        6.0     /* a request answered at the latest:
                                   * past the statement_timeout */
#define AT_CONNECT_S      2.0     /* a request waits for a new connection */

/* The columns of API_TASK_COLS (api_tasks.h), in order. */
enum { TC_ID, TC_STATE, TC_STREAM, TC_AGENT, TC_WORKFLOW, TC_ATTEMPTS,
	TC_CREATED, TC_UPDATED, TC_FINISHED, TC_ERROR, TC_CURSOR, TC_N };

struct at_q;
typedef void at_done_fn(struct at_q *, PGresult *);

/* The API's connection to the record: one per hived (one loop). */
struct at_db {
	struct ev_loop *loop;
	struct sup_pg *pg;
	char *conninfo;              /* what pg was opened with */
	int up;
	ev_tstamp opened;            /* a connection was asked for at this time */
	unsigned inflight;           /* queries whose callback is to come */
	TAILQ_HEAD(, at_q) qs;
	ev_cleanup cleanup;          /* the loop is destroyed: free all */
};

/* A query of a request.  It lives until its callback, also once the
 * request was answered (req NULL: the guard timer or an outage did). */
struct at_q {
	TAILQ_ENTRY(at_q) entry;
	struct at_db *db;
	struct api_req *req;
	ev_timer guard;
	at_done_fn *done;
	api_record_fn *rdone;        /* api_record_query's */
	unsigned limit;              /* lists: the rows of a page */
	char prefix[HIVE_KEY_MAX];   /* the key prefix, for capabilities */
};

static struct at_db *at_db;

static const char *const task_states[] = { "waiting", "queued", "running",
	"completed", "failed", "dead", NULL };
static const char *const wf_states[] = { "running", "completed", "failed",
	NULL };

/* ---- the cursor (api_tasks.h): pure ---- */

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int
b64url_val(char c)
{
	const char *p = c != '\0' ? strchr(b64url, c) : NULL;

	return p != NULL ? (int)(p - b64url) : -1;
}

int
api_cursor_encode(char *buf, size_t len, int64_t us, const char *id,
    size_t idlen)
{
	size_t o, i;
	int k;

	if (us < 0 || proto_valid_id(id, idlen) != 0)
		return -1;
	k = snprintf(buf, len, "%" PRId64 ".", us);
	if (k < 0 || (size_t)k >= len)
		return -1;
	o = (size_t)k;
	for (i = 0; i < idlen; i += 3) {
		const unsigned char *s = (const unsigned char *)id + i;
		size_t n = idlen - i < 3 ? idlen - i : 3;
		uint32_t v = (uint32_t)s[0] << 16 |
		    (n > 1 ? (uint32_t)s[1] << 8 : 0) | (n > 2 ? s[2] : 0);

		if (o + n + 2 > len)
			return -1;
		buf[o++] = b64url[v >> 18 & 63];
		buf[o++] = b64url[v >> 12 & 63];
		if (n > 1)
			buf[o++] = b64url[v >> 6 & 63];
		if (n > 2)
			buf[o++] = b64url[v & 63];
	}
	buf[o] = '\0';
	return (int)o;
}

int
api_cursor_decode(const char *s, int64_t *us, char *id, size_t idsize)
{
	const char *dot = strchr(s, '.'), *p;
	size_t nd, n, idlen = 0;
	int64_t v = 0;

	if (dot == NULL || idsize < HIVE_ID_MAX + 1)
		return -1;
	nd = (size_t)(dot - s);
	if (nd == 0 || nd > 19 || (s[0] == '0' && nd > 1))
		return -1;
	for (p = s; p < dot; p++) {
		if (*p < '0' || *p > '9' ||
		    v > (INT64_MAX - (*p - '0')) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	p = dot + 1;
	n = strlen(p);
	if (n == 0 || n % 4 == 1 || n > (HIVE_ID_MAX * 4 + 2) / 3)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		size_t m = n - i < 4 ? n - i : 4;
		uint32_t w = 0;

		for (size_t j = 0; j < 4; j++) {
			int c = j < m ? b64url_val(p[i + j]) : 0;
			if (c < 0)
				return -1;
			w = w << 6 | (uint32_t)c;
		}
		/* The bits past the last byte must be zero: one spelling. */
		if ((m == 2 && (w & 0xffff)) || (m == 3 && (w & 0xff)))
			return -1;
		id[idlen++] = (char)(w >> 16);
		if (m > 2)
			id[idlen++] = (char)(w >> 8 & 0xff);
		if (m > 3)
			id[idlen++] = (char)(w & 0xff);
	}
	id[idlen] = '\0';
	if (proto_valid_id(id, idlen) != 0)
		return -1;
	*us = v;
	return 0;
}

/* ---- the connection and its queries ---- */

static void
at_q_free(struct at_q *q)
{
	ev_timer_stop(q->db->loop, &q->guard);
	TAILQ_REMOVE(&q->db->qs, q, entry);
	q->db->inflight--;
	free(q);
}

/* Answer q's request with an error now (its query's callback is still
 * to come). */
static void
at_q_fail(struct at_q *q, unsigned status, const char *code, const char *msg)
{
	struct api_req *req = q->req;

	if (req == NULL)
		return;
	q->req = NULL;
	ev_timer_stop(q->db->loop, &q->guard);
	api_fail(req, status, code, "%s", msg);
}

static void
at_state_cb(struct sup_pg *pg, int up, void *arg)
{
	struct at_db *db = arg;
	struct at_q *q;

	db->up = up;
	if (up) {
		/* Connected: what waited for it may wait for its query. */
		TAILQ_FOREACH(q, &db->qs, entry)
			if (q->req != NULL) {
				ev_timer_stop(db->loop, &q->guard);
				ev_timer_set(&q->guard, AT_GUARD_S, 0.);
				ev_timer_start(db->loop, &q->guard);
			}
		return;
	}
	/* Lost: what waits would wait for the next connection, which may
	 * be long in coming.  Answer now; the callbacks still come. */
	db->opened = 0;
	TAILQ_FOREACH(q, &db->qs, entry)
		at_q_fail(q, 503, "no_record", "the connection to PostgreSQL "
		    "was lost");
}

static void
at_cleanup_cb(struct ev_loop *loop, ev_cleanup *w, int revents)
{
	struct at_db *db = w->data;
	struct at_q *q;

	/* hived is gone (http.c first: a request still waiting here is
	 * detached, and freed once answered).  No callback comes any more. */
	sup_pg_free(db->pg);
	while ((q = TAILQ_FIRST(&db->qs)) != NULL) {
		TAILQ_REMOVE(&db->qs, q, entry);
		ev_timer_stop(loop, &q->guard);
		if (q->req != NULL)
			api_fail(q->req, 503, "unavailable", "hived stops");
		free(q);
	}
	free(db->conninfo);
	free(db);
	if (at_db == db)
		at_db = NULL;
}

/*
 * The connection for conninfo: made at the first call, made again when
 * conninfo changed (a reload).  NULL (logged) when out of memory.
 */
static struct at_db *
at_db_get(struct sup *sup, const char *conninfo)
{
	struct at_db *db = at_db;
	char *c;

	if (db != NULL && strcmp(db->conninfo, conninfo) == 0)
		return db;
	if ((c = strdup(conninfo)) == NULL)
		goto nomem;
	if (db != NULL) {
		if (sup_pg_reconnect(db->pg, conninfo) < 0) {
			free(c);
			goto nomem;
		}
		free(db->conninfo);
		db->conninfo = c;
		db->up = 0;
		db->opened = ev_now(db->loop);
		log_info("api: the record: connecting with the new settings");
		return db;
	}
	if ((db = calloc(1, sizeof(*db))) == NULL) {
		free(c);
		goto nomem;
	}
	db->loop = sup->loop;
	db->conninfo = c;
	TAILQ_INIT(&db->qs);
	if ((db->pg = sup_pg_new(db->loop, conninfo, at_state_cb, db)) == NULL ||
	    sup_pg_prelude(db->pg, "SET application_name = 'hived api'; "
	    "SET default_transaction_read_only = on; SET statement_timeout = "
	    AT_TIMEOUT_MS) < 0) {
		sup_pg_free(db->pg);
		free(c);
		free(db);
		goto nomem;
	}
	db->opened = ev_now(db->loop);
	ev_cleanup_init(&db->cleanup, at_cleanup_cb);
	db->cleanup.data = db;
	ev_cleanup_start(db->loop, &db->cleanup);
	at_db = db;
	return db;
nomem:
	log_warnx("api: the record: out of memory");
	return NULL;
}

static void
at_guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct at_q *q = w->data;

	if (!q->db->up)
		at_q_fail(q, 503, "no_record", "PostgreSQL does not answer");
	else
		at_q_fail(q, 503, "unavailable", "the record did not answer in "
		    "time");
}

static void
at_pg_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct at_q *q = arg;
	const char *st;

	if (q->req != NULL && api_gone(q->req))
		at_q_fail(q, 503, "unavailable", "the client has gone");
	if (q->req == NULL) {
		/* Answered already (guard, outage, client gone). */
	} else if (res == NULL)
		at_q_fail(q, 503, "no_record", "the connection to PostgreSQL "
		    "was lost");
	else if (err != NULL) {
		st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (st != NULL && strcmp(st, "57014") == 0)
			at_q_fail(q, 503, "unavailable", "the query took longer "
			    "than " AT_TIMEOUT_MS " ms");
		else {
			log_warnx("api: the record: %s", err);
			at_q_fail(q, 500, "internal", "the record's query failed "
			    "(see hived's log)");
		}
	} else {
		ev_timer_stop(q->db->loop, &q->guard);
		q->done(q, res);         /* it answers q->req */
		q->req = NULL;
	}
	at_q_free(q);
}

/*
 * Run sql with its n parameters for req; done answers from the result.
 * The query (the caller may set its limit), or NULL when req has been
 * answered already: no [hive] postgres or PostgreSQL down (503
 * no_record), AT_INFLIGHT_MAX queries at once (503 unavailable), out of
 * memory (500).
 */
static struct at_q *
at_query(struct api_req *req, const char *sql, int n, const char *const *v,
    at_done_fn *done)
{
	struct sup *sup = api_sup(req);
	const struct hive_conf *c = sup->cref->conf;
	struct at_db *db;
	struct at_q *q;
	ev_tstamp now = ev_now(sup->loop);

	if (c->postgres == NULL || c->postgres[0] == '\0') {
		api_fail(req, 503, "no_record", "the record is off: [hive] "
		    "postgres is not set");
		return NULL;
	}
	if ((db = at_db_get(sup, c->postgres)) == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return NULL;
	}
	if (!db->up && db->opened == 0)
		db->opened = now;        /* pg.c is retrying: give it a while */
	if (!db->up && now - db->opened > AT_CONNECT_S) {
		api_fail(req, 503, "no_record", "PostgreSQL is down");
		return NULL;
	}
	if (db->inflight >= AT_INFLIGHT_MAX) {
		api_fail(req, 503, "unavailable", "too many queries of the "
		    "record at once; try again");
		return NULL;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL)
		goto nomem;
	q->db = db;
	q->req = req;
	q->done = done;
	snprintf(q->prefix, sizeof(q->prefix), "%s", c->prefix);
	if (sup_pg_query(db->pg, sql, n, v, NULL, NULL, at_pg_cb, q) < 0) {
		free(q);
		goto nomem;
	}
	TAILQ_INSERT_TAIL(&db->qs, q, entry);
	db->inflight++;
	log_debug("api: record query queued inflight=%u", db->inflight);
	ev_timer_init(&q->guard, at_guard_cb, db->up ? AT_GUARD_S :
	    AT_CONNECT_S, 0.);
	q->guard.data = q;
	ev_timer_start(db->loop, &q->guard);
	return q;
nomem:
	api_fail(req, 500, "internal", "out of memory");
	return NULL;
}

/* api_record_query's answer, from q's result. */
static void
record_done(struct at_q *q, PGresult *res)
{
	q->rdone(q->req, res);
}

int
api_record_query(struct api_req *req, const char *sql, int n,
    const char *const *v, api_record_fn *done)
{
	struct at_q *q = at_query(req, sql, n, v, record_done);

	if (q == NULL)
		return -1;
	q->rdone = done;
	return 0;
}

/* ---- rows into JSON ---- */

static json_t *
col_str(PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return json_null();
	return json_string(PQgetvalue(res, row, col));
}

static json_t *
col_int(PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return json_null();
	return json_integer(strtoll(PQgetvalue(res, row, col), NULL, 10));
}

static json_t *
col_time(PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return json_null();
	return api_time_json(strtoll(PQgetvalue(res, row, col), NULL, 10));
}

/* A column of JSON text (jsonb::text, json_agg); null when NULL or bad. */
static json_t *
col_json(PGresult *res, int row, int col)
{
	json_t *j;

	if (PQgetisnull(res, row, col) ||
	    (j = json_loads(PQgetvalue(res, row, col), JSON_DECODE_ANY |
	    JSON_ALLOW_NUL, NULL)) == NULL)
		return json_null();
	return j;
}

/* A column of a JSON array (json_agg: NULL when it had no rows): [] then. */
static json_t *
col_array(PGresult *res, int row, int col)
{
	json_t *j = col_json(res, row, col);

	if (json_is_array(j))
		return j;
	json_decref(j);
	return json_array();
}

/*
 * The capability and priority of a queue stream: "<prefix>:q:CAP:P" is
 * CAP (an agent's queue: "@name") at priority P; any other stream (a
 * direct queue) has neither: 0 with cap "" and *prio -1.
 */
static void
stream_cap(const char *prefix, const char *stream, char *cap, size_t len,
    int *prio)
{
	size_t pl = strlen(prefix);
	const char *p, *colon;

	cap[0] = '\0';
	*prio = -1;
	if (strncmp(stream, prefix, pl) != 0 || strncmp(stream + pl, ":q:", 3))
		return;
	p = stream + pl + 3;
	if ((colon = strrchr(p, ':')) == NULL || colon == p ||
	    (size_t)(colon - p) >= len || colon[1] < '0' ||
	    colon[1] >= '0' + HIVE_PRIO_LEVELS || colon[2] != '\0')
		return;
	memcpy(cap, p, (size_t)(colon - p));
	cap[colon - p] = '\0';
	*prio = colon[1] - '0';
}

/* Put "capability" and "priority" of stream into o. */
static void
set_cap(json_t *o, const char *prefix, const char *stream)
{
	char cap[HIVE_NAME_MAX + 2];
	int prio;

	stream_cap(prefix, stream, cap, sizeof(cap), &prio);
	json_object_set_new(o, "capability", cap[0] ? json_string(cap) :
	    json_null());
	json_object_set_new(o, "priority", prio >= 0 ? json_integer(prio) :
	    json_null());
}

/* A task of a list (the API_TASK_COLS of row). */
static json_t *
at_task_json(PGresult *res, int row, const char *prefix)
{
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	json_object_set_new(o, "id", col_str(res, row, TC_ID));
	json_object_set_new(o, "state", col_str(res, row, TC_STATE));
	set_cap(o, prefix, PQgetvalue(res, row, TC_STREAM));
	json_object_set_new(o, "stream", col_str(res, row, TC_STREAM));
	json_object_set_new(o, "agent", col_str(res, row, TC_AGENT));
	json_object_set_new(o, "workflow", col_str(res, row, TC_WORKFLOW));
	json_object_set_new(o, "attempts", col_int(res, row, TC_ATTEMPTS));
	json_object_set_new(o, "created_at", col_time(res, row, TC_CREATED));
	json_object_set_new(o, "updated_at", col_time(res, row, TC_UPDATED));
	json_object_set_new(o, "finished_at", col_time(res, row, TC_FINISHED));
	json_object_set_new(o, "error", col_str(res, row, TC_ERROR));
	return o;
}

/*
 * A page of a list: the first min(rows, limit) rows made by one(); the
 * query asked for limit + 1 rows, so a row past the page says there is a
 * next one, which starts below the page's last row (its id in column 0,
 * its cursor in column curcol).
 */
static void
at_page(struct at_q *q, PGresult *res, const char *name, int curcol,
    json_t *(*one)(PGresult *, int, const char *))
{
	int n = PQntuples(res), rows = n > (int)q->limit ? (int)q->limit : n;
	json_t *body = json_object(), *a = json_array(), *next = json_null();
	char cur[API_CURSOR_MAX];

	for (int i = 0; i < rows && a != NULL; i++)
		if (json_array_append_new(a, one(res, i, q->prefix)) < 0) {
			json_decref(a);
			a = NULL;
		}
	if (n > rows && api_cursor_encode(cur, sizeof(cur),
	    strtoll(PQgetvalue(res, rows - 1, curcol), NULL, 10),
	    PQgetvalue(res, rows - 1, 0),
	    (size_t)PQgetlength(res, rows - 1, 0)) < 0) {
		/* An id no cursor holds (not a task id: written by hand?)
		 * must not end the list there unsaid. */
		json_decref(body);
		json_decref(a);
		api_fail(q->req, 500, "internal", "the record holds an id that "
		    "cannot be paged past: %s", PQgetvalue(res, rows - 1, 0));
		return;
	}
	if (n > rows) {
		json_decref(next);
		next = json_string(cur);
	}
	if (body == NULL || a == NULL || next == NULL) {
		json_decref(body);
		json_decref(a);
		json_decref(next);
		api_reply(q->req, 200, NULL);
		return;
	}
	json_object_set_new(body, name, a);
	json_object_set_new(body, "next", next);
	api_reply(q->req, 200, body);
}

/* ---- the query arguments shared by the lists ---- */

/* Parameters of a query in making: $1, $2... in order. */
struct at_sql {
	char sql[3072];
	size_t len;
	const char *v[16];
	int n;
	int oom;
};

static void
sql_add(struct at_sql *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sql_add(struct at_sql *s, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(s->sql + s->len, sizeof(s->sql) - s->len, fmt, ap);
	va_end(ap);
	if (k < 0 || (size_t)k >= sizeof(s->sql) - s->len)
		s->oom = 1;
	else
		s->len += (size_t)k;
}

/* The next parameter's number, v its value (borrowed until the query is
 * queued: sup_pg_query copies it). */
static int
sql_param(struct at_sql *s, const char *v)
{
	if (s->n >= (int)(sizeof(s->v) / sizeof(s->v[0]))) {
		s->oom = 1;
		return 1;
	}
	s->v[s->n++] = v;
	return s->n;
}

static int
one_of(const char *s, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

/* Scratch strings of a list's parameters (they outlive the at_sql). */
struct at_args {
	char since[24], us[24], limit[16];
	char id[HIVE_ID_MAX + 1];
};

/*
 * The arguments every list takes: state (one of states), since, limit,
 * cursor, as WHERE conditions on alias t.  -1 after a 400.
 */
static int
list_args(struct api_req *req, struct at_sql *s, struct at_args *a,
    const char *const *states, unsigned *limit)
{
	const char *state = api_query(req, "state");
	const char *cursor = api_query(req, "cursor");
	long long since;
	int64_t us;

	if (api_limit(req, limit) < 0 || api_time(req, "since", &since) < 0)
		return -1;
	if (state != NULL && !one_of(state, states)) {
		char all[128] = "";

		for (const char *const *p = states; *p != NULL; p++)
			snprintf(all + strlen(all), sizeof(all) - strlen(all),
			    "%s%s", p == states ? "" : ", ", *p);
		api_fail(req, 400, "bad_request", "state: one of %s", all);
		return -1;
	}
	if (cursor != NULL && api_cursor_decode(cursor, &us, a->id,
	    sizeof(a->id)) < 0) {
		api_fail(req, 400, "bad_request", "cursor: not a cursor this "
		    "list gave (pass its \"next\" as it is)");
		return -1;
	}
	if (state != NULL)
		sql_add(s, " AND t.state = $%d", sql_param(s, state));
	if (since > 0) {
		snprintf(a->since, sizeof(a->since), "%lld", since);
		sql_add(s, " AND t.created_at >= " SQL_FROM_MS("$%d"),
		    sql_param(s, a->since));
	}
	if (cursor != NULL) {
		int p;

		snprintf(a->us, sizeof(a->us), "%" PRId64, us);
		p = sql_param(s, a->us);
		sql_add(s, " AND (t.created_at, t.id) < (" SQL_FROM_US("$%d") ", $%d)",
		    p, sql_param(s, a->id));
	}
	return 0;
}

/* ORDER BY and LIMIT (one row more than the page: is there a next?). */
static void
list_end(struct at_sql *s, struct at_args *a, unsigned limit)
{
	snprintf(a->limit, sizeof(a->limit), "%u", limit + 1);
	sql_add(s, API_LIST_ORDER, sql_param(s, a->limit));
}

/* ---- GET /tasks ---- */

static void
tasks_done(struct at_q *q, PGresult *res)
{
	at_page(q, res, "tasks", TC_CURSOR, at_task_json);
}

/*
 * capability: its three queues (<p>:q:CAP:0..2; "@agent" the agent's);
 * agent: "name" or "name/N", the agent that last ran the task.
 */
static void
at_tasks(struct api_req *req)
{
	const struct hive_conf *c = api_sup(req)->cref->conf;
	const char *cap = api_query(req, "capability");
	const char *agent = api_query(req, "agent");
	const char *wf = api_query(req, "workflow");
	char keys[HIVE_PRIO_LEVELS][HIVE_KEY_MAX], name[HIVE_NAME_MAX + 1];
	struct at_sql s = { .len = 0 };
	struct at_args a;
	struct at_q *q;
	unsigned limit;

	sql_add(&s, API_TASKS_SELECT);
	if (list_args(req, &s, &a, task_states, &limit) < 0)
		return;
	if (cap != NULL) {
		for (unsigned p = 0; p < HIVE_PRIO_LEVELS; p++)
			if ((cap[0] == '@' ? proto_key_agent_queue(keys[p],
			    sizeof(keys[p]), c->prefix, cap + 1, p) :
			    proto_key_queue(keys[p], sizeof(keys[p]), c->prefix,
			    cap, p)) < 0) {
				api_fail(req, 400, "bad_request", "capability: not "
				    "a capability name");
				return;
			}
		sql_add(&s, " AND t.stream IN ($%d", sql_param(&s, keys[0]));
		for (unsigned p = 1; p < HIVE_PRIO_LEVELS; p++)
			sql_add(&s, ", $%d", sql_param(&s, keys[p]));
		sql_add(&s, ")");
	}
	if (agent != NULL) {
		const char *slash = strchr(agent, '/');
		size_t nl = slash ? (size_t)(slash - agent) : strlen(agent);
		char *end;
		unsigned long n = 1;

		if (slash != NULL) {
			errno = 0;
			n = strtoul(slash + 1, &end, 10);
		}
		if (proto_valid_name(agent, nl) != 0 || (slash != NULL &&
		    (slash[1] < '1' || slash[1] > '9' || *end != '\0' ||
		    n > HIVE_INSTANCE_MAX))) {
			api_fail(req, 400, "bad_request", "agent: not NAME or "
			    "NAME/INSTANCE");
			return;
		}
		memcpy(name, agent, nl);
		name[nl] = '\0';
		/* The index is on the name: an instance is a filter on it. */
		sql_add(&s, " AND split_part(t.agent, '/', 1) = $%d",
		    sql_param(&s, name));
		if (slash != NULL)
			sql_add(&s, " AND t.agent = $%d", sql_param(&s, agent));
	}
	if (wf != NULL) {
		if (proto_valid_id(wf, strlen(wf)) != 0) {
			api_fail(req, 400, "bad_request", "workflow: not an id");
			return;
		}
		sql_add(&s, " AND t.workflow = $%d", sql_param(&s, wf));
	}
	list_end(&s, &a, limit);
	if (s.oom) {
		api_fail(req, 500, "internal", "query too long");
		return;
	}
	if ((q = at_query(req, s.sql, s.n, s.v, tasks_done)) != NULL)
		q->limit = limit;
}

/* ---- GET /tasks/ID ---- */

#define TASK_ONE "SELECT " API_TASK_COLS ", t.entry, " \
	SQL_MS("t.queued_at") ", " SQL_MS("t.started_at") ", " \
	"t.result::text, t.message, " \
	"(SELECT json_agg(json_build_object('state', s.state, 'attempt', " \
	"s.attempt, 'agent', s.agent, 'at', " SQL_MS("s.at") ", 'detail', " \
	"s.detail) ORDER BY s.attempt, s.at, hive_state_rank(s.state)) " \
	"FROM task_states s WHERE s.task_id = t.id)::text, " \
	"(SELECT json_agg(json_build_object('attempt', a.attempt, 'state', " \
	"a.state, 'agent', a.agent, 'queued_at', " SQL_MS("a.queued_at") ", " \
	"'started_at', " SQL_MS("a.started_at") ", 'finished_at', " \
	SQL_MS("a.finished_at") ", 'error', a.detail) ORDER BY a.attempt) " \
	"FROM (SELECT attempt, state, agent, queued_at, started_at, " \
	"finished_at, detail FROM task_attempts WHERE task_id = t.id " \
	"AND attempt < t.attempts UNION ALL SELECT t.attempts, t.state, " \
	"t.agent, t.queued_at, t.started_at, t.finished_at, t.error " \
	"WHERE t.attempts > 0) a)::text, " \
	"(SELECT max(m.version) FROM memory_snapshots m " \
	"WHERE m.task_id = t.id), t.trace_id, " API_USAGE_JSON("t") "::text " \
	"FROM tasks t WHERE t.id = $1"
enum { TC_ENTRY = TC_N, TC_QUEUED, TC_STARTED, TC_RESULT, TC_MESSAGE,
	TC_STATES, TC_ATTEMPTS_LOG, TC_MEMORY_V, TC_TRACE, TC_USAGE };

/* In the objects of array a, the ms numbers of the keys named turned
 * into times (RFC 3339). */
static void
times_in(json_t *a, const char *const *keys)
{
	size_t i;
	json_t *o;

	json_array_foreach(a, i, o)
		for (const char *const *k = keys; *k != NULL; k++) {
			json_t *v = json_object_get(o, *k);
			if (json_is_integer(v))
				json_object_set_new(o, *k,
				    api_time_json(json_integer_value(v)));
		}
}

/* payload and reply_to of the recorded message (bytea, as text). */
static void
task_message(json_t *o, PGresult *res, int row)
{
	unsigned char *raw = NULL;
	size_t len = 0;
	struct hive_task t;
	struct proto_err err;
	json_t *payload = NULL, *reply = NULL;

	if (!PQgetisnull(res, row, TC_MESSAGE) && (raw = PQunescapeBytea(
	    (const unsigned char *)PQgetvalue(res, row, TC_MESSAGE), &len))
	    != NULL && proto_decode_task((const char *)raw, len, &t, &err) == 0) {
		if (t.payload.type != MSGPACK_OBJECT_NIL)
			payload = proto_obj_to_json(&t.payload, &err);
		if (t.reply_to.len > 0)
			reply = json_stringn(t.reply_to.ptr, t.reply_to.len);
		proto_task_clear(&t);
	}
	PQfreemem(raw);
	json_object_set_new(o, "payload", payload ? payload : json_null());
	json_object_set_new(o, "reply_to", reply ? reply : json_null());
}

static void
task_done(struct at_q *q, PGresult *res)
{
	static const char *const st_keys[] = { "at", NULL };
	static const char *const at_keys[] = { "queued_at", "started_at",
		"finished_at", NULL };
	json_t *o, *states, *log;

	if (PQntuples(res) != 1) {
		api_fail(q->req, 404, "not_found", "no such task in the record");
		return;
	}
	if ((o = at_task_json(res, 0, q->prefix)) == NULL) {
		api_reply(q->req, 200, NULL);
		return;
	}
	json_object_set_new(o, "entry", col_str(res, 0, TC_ENTRY));
	json_object_set_new(o, "queued_at", col_time(res, 0, TC_QUEUED));
	json_object_set_new(o, "started_at", col_time(res, 0, TC_STARTED));
	json_object_set_new(o, "result", col_json(res, 0, TC_RESULT));
	task_message(o, res, 0);
	json_object_set_new(o, "memory_v", col_int(res, 0, TC_MEMORY_V));
	json_object_set_new(o, "trace_id", col_str(res, 0, TC_TRACE));
	json_object_set_new(o, "usage", col_json(res, 0, TC_USAGE));
	states = col_array(res, 0, TC_STATES);
	log = col_array(res, 0, TC_ATTEMPTS_LOG);
	times_in(states, st_keys);
	times_in(log, at_keys);
	json_object_set_new(o, "states", states);
	json_object_set_new(o, "attempts_log", log);
	api_reply(q->req, 200, json_pack("{s:o}", "task", o));
}

static void
at_task(struct api_req *req)
{
	const char *id = api_arg(req, 0);
	const char *v[1] = { id };

	if (proto_valid_id(id, strlen(id)) != 0) {
		api_fail(req, 404, "not_found", "no such task (not a task id)");
		return;
	}
	at_query(req, TASK_ONE, 1, v, task_done);
}

/* ---- GET /workflows ---- */

#define WF_COLS "t.id, t.name, t.state, t.host, " SQL_MS("t.created_at") ", " \
	SQL_MS("t.finished_at") ", " SQL_US("t.created_at") ", " \
	"(SELECT json_object_agg(x.state, x.n) FROM (SELECT k.state, " \
	"count(*) AS n FROM tasks k WHERE k.workflow = t.id " \
	"GROUP BY k.state) x)::text"
enum { WC_ID, WC_NAME, WC_STATE, WC_HOST, WC_CREATED, WC_FINISHED,
	WC_CURSOR, WC_COUNTS };

static json_t *
at_wf_json(PGresult *res, int row, const char *prefix)
{
	json_t *o = json_object(), *counts = col_json(res, row, WC_COUNTS), *v;
	json_int_t total = 0;
	const char *k;

	if (o == NULL) {
		json_decref(counts);
		return NULL;
	}
	if (!json_is_object(counts)) {
		json_decref(counts);
		counts = json_object();
	}
	json_object_foreach(counts, k, v)
		total += json_integer_value(v);
	json_object_set_new(counts, "total", json_integer(total));
	json_object_set_new(o, "id", col_str(res, row, WC_ID));
	json_object_set_new(o, "name", col_str(res, row, WC_NAME));
	json_object_set_new(o, "state", col_str(res, row, WC_STATE));
	json_object_set_new(o, "host", col_str(res, row, WC_HOST));
	json_object_set_new(o, "created_at", col_time(res, row, WC_CREATED));
	json_object_set_new(o, "finished_at", col_time(res, row, WC_FINISHED));
	json_object_set_new(o, "tasks", counts);
	return o;
}

static void
workflows_done(struct at_q *q, PGresult *res)
{
	at_page(q, res, "workflows", WC_CURSOR, at_wf_json);
}

static void
at_workflows(struct api_req *req)
{
	struct at_sql s = { .len = 0 };
	struct at_args a;
	struct at_q *q;
	unsigned limit;

	sql_add(&s, "SELECT " WF_COLS " FROM workflows t WHERE true");
	if (list_args(req, &s, &a, wf_states, &limit) < 0)
		return;
	list_end(&s, &a, limit);
	if (s.oom) {
		api_fail(req, 500, "internal", "query too long");
		return;
	}
	if ((q = at_query(req, s.sql, s.n, s.v, workflows_done)) != NULL)
		q->limit = limit;
}

/* ---- GET /workflows/ID ---- */

#define WF_ONE "SELECT w.id, w.name, w.state, " \
	SQL_MS("w.created_at") ", " SQL_MS("w.finished_at") ", " \
	"(SELECT json_agg(json_build_object('id', t.id, 'state', t.state, " \
	"'stream', t.stream, 'agent', t.agent, 'attempts', t.attempts, " \
	"'error', t.error, 'depends_on', coalesce((SELECT " \
	"json_agg(e.depends_on ORDER BY e.depends_on) FROM workflow_edges e " \
	"WHERE e.workflow_id = w.id AND e.task_id = t.id), '[]'::json)) " \
	"ORDER BY t.id) FROM tasks t WHERE t.workflow = w.id)::text, " \
	"(SELECT json_agg(json_build_object('task', e.task_id, 'depends_on', " \
	"e.depends_on) ORDER BY e.task_id, e.depends_on) " \
	"FROM workflow_edges e WHERE e.workflow_id = w.id)::text, " \
	"(SELECT min(t.trace_id) FROM tasks t WHERE t.workflow = w.id), " \
	"(SELECT " API_USAGE_SUMS " FROM tasks t WHERE t.workflow = w.id " \
	"AND " API_USAGE_HAS("t") ")::text " \
	"FROM workflows w WHERE w.id = $1"
enum { WO_ID, WO_NAME, WO_STATE, WO_CREATED, WO_FINISHED, WO_TASKS,
	WO_EDGES, WO_TRACE, WO_USAGE };

static void
workflow_done(struct at_q *q, PGresult *res)
{
	json_t *o, *tasks, *edges, *t;
	size_t i;

	if (PQntuples(res) != 1) {
		api_fail(q->req, 404, "not_found", "no such workflow in the "
		    "record");
		return;
	}
	tasks = col_array(res, 0, WO_TASKS);
	edges = col_array(res, 0, WO_EDGES);
	/* The stream says the capability (and is not part of the shape). */
	json_array_foreach(tasks, i, t) {
		const char *st = json_string_value(json_object_get(t, "stream"));
		set_cap(t, q->prefix, st != NULL ? st : "");
		json_object_del(t, "priority");
		json_object_del(t, "stream");
	}
	o = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
	    "id", col_str(res, 0, WO_ID), "name", col_str(res, 0, WO_NAME),
	    "state", col_str(res, 0, WO_STATE),
	    "created_at", col_time(res, 0, WO_CREATED),
	    "finished_at", col_time(res, 0, WO_FINISHED),
	    "tasks", tasks, "edges", edges,
	    "trace_id", col_str(res, 0, WO_TRACE),
	    "usage", col_json(res, 0, WO_USAGE));
	api_reply(q->req, 200, o != NULL ? json_pack("{s:o}", "workflow", o) :
	    NULL);
}

static void
at_workflow(struct api_req *req)
{
	const char *id = api_arg(req, 0);
	const char *v[1] = { id };

	if (proto_valid_id(id, strlen(id)) != 0) {
		api_fail(req, 404, "not_found", "no such workflow (not an id)");
		return;
	}
	at_query(req, WF_ONE, 1, v, workflow_done);
}

const struct api_route api_tasks_routes[] = {
	{ "GET", "/tasks", "state,capability,agent,workflow,since,limit,cursor",
	  0, at_tasks },
	{ "GET", "/tasks/{}", "", 0, at_task },
	{ "GET", "/workflows", "state,since,limit,cursor", 0, at_workflows },
	{ "GET", "/workflows/{}", "", 0, at_workflow },
	{ "GET", "/usage", "by,since,limit", 0, api_usage },
	{ NULL, NULL, NULL, 0, NULL },
};
