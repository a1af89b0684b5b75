/*
 * api_dead.c - dead letters, and work submitted through the API (api.h):
 *
 *   GET  /dead              <p>:dead newest first, filtered, paged
 *   GET  /dead/{}           one dead letter, its message decoded
 *   POST /dead/{}/retry     a new attempt of its task
 *   POST /dead/retry        the retryable ones, all or those a filter picks
 *   POST /tasks             a task from JSON onto its queue
 *   POST /workflows         a workflow from JSON onto <p>:workflows
 *
 * Everything goes through hived's own Redis connection (store.c), each
 * step a callback; a retry is then written to PostgreSQL (the record)
 * with hive_dead_retry (record/migrate.c, version 6).  docs/API.md says
 * what each endpoint takes and answers, docs/PROTOCOL.md what a retried
 * dead letter is.
 *
 * A retry, on Redis, is one script, so that it happens once however many
 * ask at once (two MULTI/EXECs would both queue the task: MULTI cannot
 * make the XADD depend on the entry being there):
 *
 *   XRANGE <p>:dead ID ID  --  gone: nil (404)
 *   XADD <queue> * m <task, attempt + 1>      (nothing changed if refused)
 *   XDEL <p>:dead ID                          (cannot fail)
 *
 * Scans are bounded: a request looks at DEAD_SCAN_MAX dead letters at
 * most, DEAD_CHUNK per read, and says where to go on ("next").
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "api_dead.h"
#include "events.h"
#include "hive_proto.h"
#include "hived.h"
#include "log.h"
#include "rconn.h"
#include "record.h"

#define DEAD_CHUNK     50      /* dead letters per read: each may be 4 MiB */
#define DEAD_SCAN_MAX  1000    /* looked at per request, at most */
#define ERRLEN         512

/* The retry: see the top. */
static const char retry_lua[] =
    "if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then "
    "return false end "
    "local e = redis.call('XADD', KEYS[2], '*', 'm', ARGV[2]) "
    "redis.call('XDEL', KEYS[1], ARGV[1]) "
    "return e";

static const char retry_sql[] =
    "SELECT hive_dead_retry($1, $2::int, $3::int, $4, $5, $6, $7::bigint, "
    "$8::bigint, $9::bigint, $10, $11, $12)";

/* ---- small things ---- */

/* A string of a message as JSON: null when absent (or not UTF-8, which
 * a text field that decoded never is). */
static json_t *
jstr(struct hive_str s)
{
	json_t *j;

	if (s.len == 0)
		return json_null();
	j = json_stringn(s.ptr, s.len);
	return j != NULL ? j : json_null();
}

/* "1700000000000-0": the form of a stream entry id (each part a number
 * of at most 20 digits), so that Redis is never asked about anything
 * else.  0 or -1. */
static int
entry_id_ok(const char *s, size_t len)
{
	size_t i = 0, n;

	if (len > HIVE_ENTRY_ID_MAX)
		return -1;
	for (n = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		n++;
	if (n == 0 || n > 20 || i == len || s[i++] != '-')
		return -1;
	for (n = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		n++;
	return n == 0 || n > 20 || i != len ? -1 : 0;
}

static int
code_known(const char *s)
{
	for (int c = HIVE_CODE_MALFORMED; c <= HIVE_CODE_LAST; c++)
		if (strcmp(proto_code_name((enum hive_code)c), s) == 0)
			return 1;
	return 0;
}

/*
 * The capability of the queue a dead letter came from, into buf:
 * <p>:q:<capability>:<prio> gives the capability ("@agent" for an
 * agent's queue), <p>:direct:<agent>/<n> "@agent"; "" for any other.
 */
static void
stream_capability(const char *prefix, struct hive_str s, char *buf,
    size_t len)
{
	size_t pl = strlen(prefix), n;
	const char *p, *end = s.ptr + s.len;

	buf[0] = '\0';
	if (s.len <= pl + 1 || memcmp(s.ptr, prefix, pl) != 0 || s.ptr[pl] != ':')
		return;
	p = s.ptr + pl + 1;
	if ((size_t)(end - p) > 2 && memcmp(p, "q:", 2) == 0) {
		p += 2;
		for (n = (size_t)(end - p); n > 0 && p[n - 1] != ':'; n--)
			;
		if (n > 1 && n - 1 < len)
			snprintf(buf, len, "%.*s", (int)(n - 1), p);
	} else if ((size_t)(end - p) > 7 && memcmp(p, "direct:", 7) == 0) {
		p += 7;
		for (n = 0; p + n < end && p[n] != '/'; n++)
			;
		if (p + n < end && n + 1 < len)
			snprintf(buf, len, "@%.*s", (int)n, p);
	}
}

/* ---- a dead letter, decoded ---- */

struct dl {
	const char *dead_id;           /* its entry id, borrowed */
	int ok;                        /* it decoded as a dead letter */
	struct hive_dead d;            /* borrows from the reply */
	int have_task;
	struct hive_task t;            /* its raw, when that is a task */
	char why[ERRLEN];              /* why its retry is refused; "": it
	                                * can be retried */
	char key[HIVE_KEY_MAX];        /* where its retry goes */
	uint32_t made, attempt, max;   /* attempts made; the retry's */
};

static void
dl_close(struct dl *l)
{
	proto_dead_clear(&l->d);
	if (l->have_task)
		proto_task_clear(&l->t);
}

/*
 * The queue a retry goes to: the one the task was on, but a direct
 * queue's task goes to its agent's queue (as the reclaimer requeues:
 * any instance may take it).  -1: not a queue of this installation.
 */
static int
dl_retry_key(struct dl *l, const char *prefix)
{
	struct hive_str s = l->d.stream;
	size_t pl = strlen(prefix), n;
	char agent[HIVE_NAME_MAX + 1];
	const char *p;

	if (s.len >= sizeof(l->key) || s.len <= pl + 1 ||
	    memcmp(s.ptr, prefix, pl) != 0 || s.ptr[pl] != ':')
		return -1;
	p = s.ptr + pl + 1;
	if (s.len - pl - 1 > 2 && memcmp(p, "q:", 2) == 0) {
		snprintf(l->key, sizeof(l->key), "%.*s", (int)s.len, s.ptr);
		return 0;
	}
	if (s.len - pl - 1 <= 7 || memcmp(p, "direct:", 7) != 0)
		return -1;
	p += 7;
	for (n = 0; p + n < s.ptr + s.len && p[n] != '/'; n++)
		;
	if (n == 0 || n >= sizeof(agent) || p + n == s.ptr + s.len)
		return -1;
	memcpy(agent, p, n);
	agent[n] = '\0';
	return proto_key_agent_queue(l->key, sizeof(l->key), prefix, agent,
	    HIVE_PRIO_DEFAULT) > 0 ? 0 : -1;
}

/*
 * Can it be retried, and how: a task out of attempts, whose message is
 * kept whole.  The retry is attempt made + 1, with as many attempts as
 * its message had left when it was queued (max_attempts - attempt + 1),
 * or as its agent's max_attempts gives when the task left that to the
 * agent: max_attempts made + that, within the protocol's 1000.
 */
static void
dl_retryable(struct dl *l, const struct hive_conf *c)
{
	const struct hive_agent_conf *a;
	char agent[HIVE_NAME_MAX + 1], eb[PROTO_ERRBUF];
	struct proto_err err;
	uint32_t budget;
	size_t n;

	if (l->d.id.len == 0) {
		snprintf(l->why, sizeof(l->why), "%s", l->d.workflow.len > 0 ?
		    "a refused workflow, not a task: submit it again" :
		    "its task id could not be read: not a task");
		return;
	}
	if (l->d.raw.len == 0) {
		snprintf(l->why, sizeof(l->why), "the dead letter keeps no "
		    "message to queue again");
		return;
	}
	if (proto_decode_task(l->d.raw.ptr, l->d.raw.len, &l->t, &err) < 0) {
		snprintf(l->why, sizeof(l->why), "its message is not a valid "
		    "task: %s", proto_strerror(&err, eb, sizeof(eb)));
		return;
	}
	l->have_task = 1;
	if (l->t.id.len != l->d.id.len ||
	    memcmp(l->t.id.ptr, l->d.id.ptr, l->d.id.len) != 0) {
		snprintf(l->why, sizeof(l->why), "its message is another "
		    "task's (%.*s)", (int)l->t.id.len, l->t.id.ptr);
		return;
	}
	if (l->t.workflow.len > 0 || l->d.workflow.len > 0) {
		snprintf(l->why, sizeof(l->why), "a task of workflow %.*s: "
		    "the tasks that depend on it were given up with it; "
		    "submit the workflow again", l->t.workflow.len > 0 ?
		    (int)l->t.workflow.len : (int)l->d.workflow.len,
		    l->t.workflow.len > 0 ? l->t.workflow.ptr :
		    l->d.workflow.ptr);
		return;
	}
	l->made = l->d.attempt > l->t.attempt ? l->d.attempt : l->t.attempt;
	if (l->made >= HIVE_ATTEMPTS_MAX) {
		snprintf(l->why, sizeof(l->why), "%u attempts made, the most a "
		    "task may have", l->made);
		return;
	}
	if (dl_retry_key(l, c->prefix) < 0) {
		snprintf(l->why, sizeof(l->why), "it did not come from a "
		    "queue of this installation (%.*s)", (int)l->d.stream.len,
		    l->d.stream.ptr);
		return;
	}
	if (l->t.max_attempts > 0)
		budget = l->t.max_attempts >= l->t.attempt ?
		    l->t.max_attempts - l->t.attempt + 1 : 1;
	else {
		for (n = 0; n < l->d.agent.len && l->d.agent.ptr[n] != '/'; n++)
			;
		snprintf(agent, sizeof(agent), "%.*s", (int)n,
		    n > 0 ? l->d.agent.ptr : "");
		a = conf_agent(c, agent);
		budget = a != NULL && a->max_attempts > 0 ? a->max_attempts : 3;
	}
	l->attempt = l->made + 1;
	l->max = l->made + budget > HIVE_ATTEMPTS_MAX ? HIVE_ATTEMPTS_MAX :
	    l->made + budget;
}

/* Entry dead_id (its fields as a reply gives them) decoded into l; l
 * must be closed (dl_close) however it went. */
static void
dl_open(struct dl *l, struct sup *sup, const char *dead_id,
    const redisReply *fields)
{
	const redisReply *f = rconn_entry_field(fields, "m");
	struct proto_err err;
	char eb[PROTO_ERRBUF];

	memset(l, 0, sizeof(*l));
	l->dead_id = dead_id;
	if (f == NULL) {
		snprintf(l->why, sizeof(l->why), "not a dead letter: the entry "
		    "has no field 'm'");
		return;
	}
	if (proto_decode_dead(f->str, f->len, &l->d, &err) < 0) {
		snprintf(l->why, sizeof(l->why), "not a dead letter: %s",
		    proto_strerror(&err, eb, sizeof(eb)));
		return;
	}
	l->ok = 1;
	dl_retryable(l, sup->cref->conf);
}

static int
dl_match(const struct dl *l, const char *prefix, const char *code,
    const char *cap)
{
	char c[HIVE_NAME_MAX + 2];

	if (code != NULL && (!l->ok ||
	    strcmp(proto_code_name(l->d.code), code) != 0))
		return 0;
	if (cap != NULL) {
		if (!l->ok)
			return 0;
		stream_capability(prefix, l->d.stream, c, sizeof(c));
		if (strcmp(c, cap) != 0)
			return 0;
	}
	return 1;
}

/* The list's item (docs/API.md); NULL when out of memory. */
static json_t *
dl_json(const struct dl *l)
{
	const char *code = l->ok ? proto_code_name(l->d.code) : "";

	if (!l->ok)
		return json_pack("{s:s, s:n, s:n, s:s, s:n, s:n, s:n, s:n, s:n, "
		    "s:n, s:b}", "dead_id", l->dead_id, "id", "code", "reason",
		    l->why, "stream", "entry", "agent", "attempt", "at",
		    "workflow", "retryable", 0);
	return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:o, "
	    "s:b}", "dead_id", l->dead_id, "id", jstr(l->d.id), "code",
	    code[0] ? json_string(code) : json_null(), "reason",
	    jstr(l->d.reason), "stream", jstr(l->d.stream), "entry",
	    jstr(l->d.entry), "agent", jstr(l->d.agent), "attempt",
	    (json_int_t)l->d.attempt, "at", api_time_json((long long)l->d.ts_ms),
	    "workflow", jstr(l->d.workflow), "retryable", l->why[0] == '\0');
}

/* ---- GET /dead ---- */

struct dlist {
	struct api_req *req;
	struct sup *sup;
	char key[HIVE_KEY_MAX];
	char from[HIVE_ENTRY_ID_MAX + 1];  /* the next read starts here */
	const char *code, *cap;            /* filters (the request's) */
	unsigned limit, looked, want;
	json_t *items;
};

static void dlist_read(struct dlist *);

static void
dlist_end(struct dlist *l, const char *next)
{
	json_t *body = json_pack("{s:O, s:o}", "dead", l->items, "next",
	    next != NULL ? json_string(next) : json_null());

	api_reply(l->req, 200, body);
	json_decref(l->items);
	free(l);
}

static void
dlist_fail(struct dlist *l, const redisReply *r)
{
	if (r == NULL)
		api_fail(l->req, 503, "unavailable", "Redis: connection lost");
	else
		api_fail(l->req, 500, "internal", "Redis: %s",
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	json_decref(l->items);
	free(l);
}

/* A page of entries: the first want are looked at; one more, if there
 * is one, is where the next read (or page) starts. */
static void
dlist_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct dlist *l = priv;
	const redisReply *r = rp, *e;
	const char *prefix = l->sup->cref->conf->prefix;
	size_t i;
	struct dl dl;

	(void)ac;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		dlist_fail(l, r);
		return;
	}
	for (i = 0; i < r->elements && i < l->want &&
	    json_array_size(l->items) < l->limit; i++) {
		e = r->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		l->looked++;
		dl_open(&dl, l->sup, e->element[0]->str, e->element[1]);
		if (dl_match(&dl, prefix, l->code, l->cap) &&
		    json_array_append_new(l->items, dl_json(&dl)) < 0) {
			dl_close(&dl);
			api_fail(l->req, 500, "internal", "out of memory");
			json_decref(l->items);
			free(l);
			return;
		}
		dl_close(&dl);
	}
	if (i >= r->elements || (e = r->element[i])->type !=
	    REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING) {
		dlist_end(l, NULL);      /* the oldest was looked at */
		return;
	}
	if (json_array_size(l->items) >= l->limit ||
	    l->looked >= DEAD_SCAN_MAX) {
		dlist_end(l, e->element[0]->str);
		return;
	}
	snprintf(l->from, sizeof(l->from), "%s", e->element[0]->str);
	dlist_read(l);
}

static void
dlist_read(struct dlist *l)
{
	char count[16];

	l->want = DEAD_CHUNK;
	if (l->want > DEAD_SCAN_MAX - l->looked)
		l->want = DEAD_SCAN_MAX - l->looked;
	if (l->code == NULL && l->cap == NULL &&
	    l->want > l->limit - json_array_size(l->items))
		l->want = l->limit - (unsigned)json_array_size(l->items);
	snprintf(count, sizeof(count), "%u", l->want + 1);
	if (rconn_cmd(sup_store_redis(l->sup), dlist_cb, l,
	    "XREVRANGE %s %s - COUNT %s", l->key, l->from, count) < 0) {
		api_fail(l->req, 503, "unavailable", "Redis is down");
		json_decref(l->items);
		free(l);
	}
}

static void
get_dead(struct api_req *req)
{
	struct sup *sup = api_sup(req);
	const char *code = api_query(req, "code");
	const char *cap = api_query(req, "capability");
	const char *cursor = api_query(req, "cursor");
	struct dlist *l;
	unsigned limit;

	if (api_limit(req, &limit) < 0)
		return;
	if (code != NULL && !code_known(code)) {
		api_fail(req, 400, "bad_request", "code: not a code of "
		    "docs/PROTOCOL.md, Errors: '%.64s'", code);
		return;
	}
	if (cap != NULL && !sub_capability_ok(cap)) {
		api_fail(req, 400, "bad_request", "capability: not a name "
		    "(or @agent): '%.80s'", cap);
		return;
	}
	if (cursor != NULL && entry_id_ok(cursor, strlen(cursor)) < 0) {
		api_fail(req, 400, "bad_request", "cursor: not one this API "
		    "gave");
		return;
	}
	if (sup_store_redis(sup) == NULL) {
		api_fail(req, 503, "unavailable", "Redis is not connected");
		return;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->items = json_array()) == NULL) {
		free(l);
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	l->req = req;
	l->sup = sup;
	l->code = code;
	l->cap = cap;
	l->limit = limit;
	proto_key_named(l->key, sizeof(l->key), sup->cref->conf->prefix, "dead");
	snprintf(l->from, sizeof(l->from), "%s", cursor != NULL ? cursor : "+");
	dlist_read(l);
}

/* ---- GET /dead/{} ---- */

struct done {
	struct api_req *req;
	struct sup *sup;
	char id[HIVE_ENTRY_ID_MAX + 1];
};

/* "task": the message as JSON when it has a JSON form, else its bytes
 * in "raw_hex" (when there are any). */
static int
dl_message_json(const struct dl *l, json_t *o)
{
	msgpack_unpacked up;
	struct proto_err err;
	json_t *task = NULL, *hex;
	char *h;

	if (l->ok && l->d.raw.len > 0 &&
	    proto_decode_value(l->d.raw.ptr, l->d.raw.len, &up, &err) == 0) {
		task = proto_obj_to_json(&up.data, &err);
		msgpack_unpacked_destroy(&up);
	}
	if (json_object_set_new(o, "task", task != NULL ? task : json_null()))
		return -1;
	if (task != NULL || !l->ok || l->d.raw.len == 0)
		return 0;
	if ((h = malloc((size_t)l->d.raw.len * 2 + 1)) == NULL)
		return -1;
	for (uint32_t i = 0; i < l->d.raw.len; i++)
		snprintf(h + 2 * i, 3, "%02x", (unsigned char)l->d.raw.ptr[i]);
	hex = json_stringn(h, (size_t)l->d.raw.len * 2);
	free(h);
	return json_object_set_new(o, "raw_hex", hex);
}

static void
one_dead_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct done *q = priv;
	const redisReply *r = rp, *e;
	struct dl dl;
	json_t *item, *body;

	(void)ac;
	if (r == NULL)
		api_fail(q->req, 503, "unavailable", "Redis: connection lost");
	else if (r->type != REDIS_REPLY_ARRAY)
		api_fail(q->req, 500, "internal", "Redis: %s",
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	else if (r->elements == 0 || (e = r->element[0])->type !=
	    REDIS_REPLY_ARRAY || e->elements != 2)
		api_fail(q->req, 404, "not_found", "no dead letter %s", q->id);
	else {
		dl_open(&dl, q->sup, q->id, e->element[1]);
		item = dl_json(&dl);
		if (item == NULL || dl_message_json(&dl, item) < 0 ||
		    (body = json_pack("{s:O}", "dead", item)) == NULL)
			api_fail(q->req, 500, "internal", "out of memory");
		else
			api_reply(q->req, 200, body);   /* takes body */
		json_decref(item);
		dl_close(&dl);
	}
	free(q);
}

/* The {} of the path as an entry id (404 when it is not one), and the
 * dead-letter stream's key. */
static struct done *
done_new(struct api_req *req)
{
	struct sup *sup = api_sup(req);
	const char *id = api_arg(req, 0);
	struct done *q;

	if (entry_id_ok(id, strlen(id)) < 0) {
		api_fail(req, 404, "not_found", "no dead letter %.60s: a dead "
		    "letter's id is its entry id, e.g. 1700000000000-0", id);
		return NULL;
	}
	if (sup_store_redis(sup) == NULL) {
		api_fail(req, 503, "unavailable", "Redis is not connected");
		return NULL;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return NULL;
	}
	q->req = req;
	q->sup = sup;
	snprintf(q->id, sizeof(q->id), "%s", id);
	return q;
}

static void
get_dead_one(struct api_req *req)
{
	struct done *q = done_new(req);
	char key[HIVE_KEY_MAX];

	if (q == NULL)
		return;
	proto_key_named(key, sizeof(key), q->sup->cref->conf->prefix, "dead");
	if (rconn_cmd(sup_store_redis(q->sup), one_dead_cb, q,
	    "XRANGE %s %s %s", key, q->id, q->id) < 0) {
		api_fail(req, 503, "unavailable", "Redis is down");
		free(q);
	}
}

/* ---- retries: POST /dead/{}/retry, POST /dead/retry ---- */

/*
 * A retry request: one dead letter, or many (bulk).  pending counts the
 * scripts and PostgreSQL calls it waits for; it answers once none is
 * left and nothing more is to be read.
 */
struct djob {
	struct api_req *req;
	struct sup *sup;
	char dkey[HIVE_KEY_MAX];           /* <p>:dead */
	int bulk;
	unsigned pending;
	int failed;                        /* Redis went away: 503 */
	/* one: the answer */
	unsigned status;
	const char *code;
	char msg[ERRLEN + 96];
	json_t *answer;
	/* bulk */
	const char *fcode, *fcap;          /* the filters (the body's) */
	char from[HIVE_ENTRY_ID_MAX + 1];  /* the next read starts here */
	int more;                          /* from is an entry not looked at */
	unsigned want, looked;
	unsigned kept;                     /* looked at and left there, with
	                                    * those the cursor says */
	unsigned retried, skipped;
};

/* One dead letter being retried. */
struct dretry {
	struct djob *job;
	char dead_id[HIVE_ENTRY_ID_MAX + 1];
	char id[HIVE_ID_MAX + 1];
	char key[HIVE_KEY_MAX];
	char agent[HIVE_AGENT_MAX + 1];
	char reason[HIVE_REASON_MAX];
	const char *code;              /* the dead letter's (proto_code_name) */
	uint32_t made, attempt;
	uint64_t created_ms, dead_ms;
	msgpack_sbuffer msg;
};

/* A PostgreSQL call of a retry: job is NULL when nothing waits for it. */
struct dpg {
	struct djob *job;
	char id[HIVE_ID_MAX + 1];
};

static void djob_settle(struct djob *);

static void
djob_free(struct djob *j)
{
	json_decref(j->answer);
	free(j);
}

static void
dpg_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct dpg *c = arg;

	(void)pg;
	if (res == NULL)
		log_warnx("api: dead letter retry of task=%s: the connection to "
		    "PostgreSQL was lost: the recorder records its new attempt "
		    "as it reads it", c->id);
	else if (err != NULL)
		log_warnx("api: dead letter retry of task=%s: postgres: %s",
		    c->id, err);
	else if (PQntuples(res) == 1)
		log_debug("api: dead letter retry of task=%s recorded: %s",
		    c->id, PQgetvalue(res, 0, 0));
	if (c->job != NULL) {
		c->job->pending--;
		djob_settle(c->job);
	}
	free(c);
}

/* The retry into the record (hive_dead_retry), waited for while
 * PostgreSQL is up; queued for when it is back otherwise. */
static void
dretry_record(struct dretry *r, const char *entry)
{
	struct sup_pg *pg = sup_store_pg(r->job->sup);
	struct dpg *c;
	char dead[16], att[16], q[24], cr[24], dm[24];
	char source[HIVE_KEY_MAX + HIVE_ENTRY_ID_MAX + 2];
	const char *v[12];
	int len[12] = { 0 }, fmt[12] = { 0 };

	if (pg == NULL || (c = calloc(1, sizeof(*c))) == NULL)
		return;
	snprintf(c->id, sizeof(c->id), "%s", r->id);
	snprintf(dead, sizeof(dead), "%u", r->made);
	snprintf(att, sizeof(att), "%u", r->attempt);
	snprintf(q, sizeof(q), "%llu", strtoull(entry, NULL, 10));
	snprintf(cr, sizeof(cr), "%" PRIu64, r->created_ms);
	snprintf(dm, sizeof(dm), "%" PRIu64, r->dead_ms);
	/* as the recorder keys the dead letter's event: stream/entry */
	snprintf(source, sizeof(source), "%s/%s", r->job->dkey, r->dead_id);
	v[0] = r->id;
	v[1] = dead;
	v[2] = att;
	v[3] = r->key;
	v[4] = entry;
	v[5] = r->msg.data;
	len[5] = (int)r->msg.size;
	fmt[5] = 1;
	v[6] = q;
	v[7] = cr;
	v[8] = dm;
	v[9] = r->agent[0] ? r->agent : NULL;
	v[10] = r->reason;
	v[11] = source;
	if (sup_pg_is_up(pg)) {
		c->job = r->job;
		r->job->pending++;
	}
	if (sup_pg_query(pg, retry_sql, 12, v, len, fmt, dpg_cb, c) < 0) {
		log_warnx("api: dead letter retry of task=%s: out of memory: "
		    "not recorded", r->id);
		if (c->job != NULL)
			r->job->pending--;
		free(c);
	}
}

static void
dretry_free(struct dretry *r)
{
	msgpack_sbuffer_destroy(&r->msg);
	free(r);
}

static void
dretry_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct dretry *r = priv;
	struct djob *j = r->job;
	const redisReply *rep = rp;

	(void)ac;
	j->pending--;
	if (rep == NULL) {
		j->failed = 1;
		if (j->bulk)
			j->kept++;
	} else if (rep->type == REDIS_REPLY_STRING) {
		log_notice("api: dead letter %s retried: task=%s attempt=%u "
		    "stream=%s entry=%s", r->dead_id, r->id, r->attempt, r->key,
		    rep->str);
		j->retried++;
		sup_event_dead_retried(j->sup, r->id, r->agent, r->key, r->code,
		    r->reason);
		if (!j->bulk) {
			j->status = 200;
			j->answer = json_pack("{s:s, s:s, s:I, s:s, s:s}",
			    "dead_id", r->dead_id, "id", r->id, "attempt",
			    (json_int_t)r->attempt, "stream", r->key, "entry",
			    rep->str);
		}
		dretry_record(r, rep->str);
	} else if (rep->type == REDIS_REPLY_NIL) {
		/* Another request retried it (or removed it) meanwhile. */
		j->skipped++;
		j->status = 404;
		j->code = "not_found";
		snprintf(j->msg, sizeof(j->msg), "no dead letter %s: retried "
		    "already, or removed", r->dead_id);
	} else {
		log_warnx("api: dead letter %s: retry: %s", r->dead_id,
		    rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		j->skipped++;
		j->kept++;
		j->status = 500;
		j->code = "internal";
		snprintf(j->msg, sizeof(j->msg), "Redis: %s",
		    rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
	}
	dretry_free(r);
	djob_settle(j);
}

/* Queue l's retry (l is retryable): the script of the top.  -1: Redis
 * is down or out of memory. */
static int
dretry_send(struct djob *j, const struct dl *l)
{
	struct dretry *r = calloc(1, sizeof(*r));
	struct hive_task m;
	struct proto_err err;
	char eb[PROTO_ERRBUF];
	const char *argv[7];
	size_t argl[7];

	if (r == NULL)
		return -1;
	msgpack_sbuffer_init(&r->msg);
	r->job = j;
	snprintf(r->dead_id, sizeof(r->dead_id), "%s", l->dead_id);
	snprintf(r->id, sizeof(r->id), "%.*s", (int)l->t.id.len, l->t.id.ptr);
	snprintf(r->key, sizeof(r->key), "%s", l->key);
	snprintf(r->agent, sizeof(r->agent), "%.*s", (int)l->d.agent.len,
	    l->d.agent.len > 0 ? l->d.agent.ptr : "");
	snprintf(r->reason, sizeof(r->reason), "%.*s", (int)l->d.reason.len,
	    l->d.reason.ptr);
	r->code = proto_code_name(l->d.code);
	r->made = l->made;
	r->attempt = l->attempt;
	r->created_ms = l->t.created_ms;
	r->dead_ms = l->d.ts_ms;
	/* The same task (id, payload, reply_to, timeout...), the next
	 * attempt, and attempts to make. */
	m = l->t;
	m.attempt = l->attempt;
	m.max_attempts = l->max;
	if (proto_encode_task(&r->msg, &m, &err) < 0) {
		log_warnx("api: dead letter %s: cannot encode its retry: %s",
		    l->dead_id, proto_strerror(&err, eb, sizeof(eb)));
		dretry_free(r);
		return -1;
	}
	argv[0] = "EVAL";
	argv[1] = retry_lua;
	argv[2] = "2";
	argv[3] = j->dkey;
	argv[4] = r->key;
	argv[5] = r->dead_id;
	argv[6] = r->msg.data;
	for (int i = 0; i < 6; i++)
		argl[i] = strlen(argv[i]);
	argl[6] = r->msg.size;
	if (rconn_argv(sup_store_redis(j->sup), dretry_cb, r, 7, argv,
	    argl) < 0) {
		dretry_free(r);
		return -1;
	}
	j->pending++;
	return 0;
}

static struct djob *
djob_new(struct api_req *req, int bulk)
{
	struct sup *sup = api_sup(req);
	struct djob *j;

	if (sup_store_redis(sup) == NULL) {
		api_fail(req, 503, "unavailable", "Redis is not connected");
		return NULL;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return NULL;
	}
	j->req = req;
	j->sup = sup;
	j->bulk = bulk;
	proto_key_named(j->dkey, sizeof(j->dkey), sup->cref->conf->prefix,
	    "dead");
	return j;
}

/* One dead letter: XRANGE gave it (or not). */
static void
retry_one_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct djob *j = priv;
	const redisReply *r = rp, *e;
	struct dl dl;

	(void)ac;
	j->pending--;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		j->failed = r == NULL;
		j->status = 500;
		j->code = "internal";
		snprintf(j->msg, sizeof(j->msg), "Redis: %s", r != NULL &&
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	} else if (r->elements == 0 || (e = r->element[0])->type !=
	    REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING) {
		j->status = 404;
		j->code = "not_found";
		snprintf(j->msg, sizeof(j->msg), "no dead letter %s", j->from);
	} else {
		dl_open(&dl, j->sup, e->element[0]->str, e->element[1]);
		if (dl.why[0] != '\0') {
			j->status = 409;
			j->code = "conflict";
			snprintf(j->msg, sizeof(j->msg), "dead letter %s cannot be "
			    "retried: %s", j->from, dl.why);
		} else if (dretry_send(j, &dl) < 0) {
			j->failed = 1;
		}
		dl_close(&dl);
	}
	djob_settle(j);
}

static void
post_dead_retry(struct api_req *req)
{
	const char *id = api_arg(req, 0);
	struct djob *j;

	if (entry_id_ok(id, strlen(id)) < 0) {
		api_fail(req, 404, "not_found", "no dead letter %.60s: a dead "
		    "letter's id is its entry id, e.g. 1700000000000-0", id);
		return;
	}
	if ((j = djob_new(req, 0)) == NULL)
		return;
	snprintf(j->from, sizeof(j->from), "%s", id);
	j->pending = 1;
	if (rconn_cmd(sup_store_redis(j->sup), retry_one_cb, j,
	    "XRANGE %s %s %s", j->dkey, id, id) < 0) {
		api_fail(req, 503, "unavailable", "Redis is down");
		free(j);
	}
}

static void bulk_read(struct djob *);

/* Bulk: the answer, with how many dead letters are left to look at
 * (XLEN less those before next that stay: skipped, or not picked). */
static void
bulk_len_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct djob *j = priv;
	const redisReply *r = rp;
	char next[HIVE_ENTRY_ID_MAX + 24];
	long long left = 0;
	json_t *body;

	(void)ac;
	if (j->more && r != NULL && r->type == REDIS_REPLY_INTEGER)
		left = r->integer - (long long)j->kept;
	snprintf(next, sizeof(next), "%s.%u", j->from, j->kept);
	body = json_pack("{s:I, s:I, s:o, s:I}", "retried",
	    (json_int_t)j->retried, "skipped", (json_int_t)j->skipped, "next",
	    j->more ? json_string(next) : json_null(), "remaining",
	    (json_int_t)(left > 0 ? left : 0));
	api_reply(j->req, 200, body);
	djob_free(j);
}

static void
bulk_end(struct djob *j)
{
	if (j->more && rconn_cmd(sup_store_redis(j->sup), bulk_len_cb, j,
	    "XLEN %s", j->dkey) == 0)
		return;
	bulk_len_cb(NULL, NULL, j);
}

/* Nothing in flight: answer, or read on. */
static void
djob_settle(struct djob *j)
{
	if (j->pending > 0)
		return;
	if (j->failed) {
		if (j->bulk)
			api_fail(j->req, 503, "unavailable", "Redis: connection "
			    "lost (%u retried before)", j->retried);
		else
			api_fail(j->req, 503, "unavailable", "Redis: connection "
			    "lost");
		djob_free(j);
		return;
	}
	if (j->bulk) {
		if (j->more && j->looked < DEAD_SCAN_MAX)
			bulk_read(j);
		else
			bulk_end(j);
		return;
	}
	if (j->answer != NULL) {
		api_reply(j->req, j->status, j->answer);   /* takes it */
		j->answer = NULL;
	} else
		api_fail(j->req, j->status ? j->status : 500,
		    j->code ? j->code : "internal", "%s", j->msg);
	djob_free(j);
}

/* A page of dead letters, oldest first: each one the filters pick is
 * retried, or skipped when it cannot be. */
static void
bulk_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct djob *j = priv;
	const redisReply *r = rp, *e;
	const char *prefix = j->sup->cref->conf->prefix;
	size_t i;
	struct dl dl;

	(void)ac;
	j->pending--;
	j->more = 0;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		j->failed = 1;
		djob_settle(j);
		return;
	}
	for (i = 0; i < r->elements && i < j->want && !j->failed; i++) {
		e = r->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		j->looked++;
		dl_open(&dl, j->sup, e->element[0]->str, e->element[1]);
		if (!dl_match(&dl, prefix, j->fcode, j->fcap))
			j->kept++;
		else if (dl.why[0] != '\0') {
			j->skipped++;
			j->kept++;
		} else if (dretry_send(j, &dl) < 0) {
			j->failed = 1;
		}
		dl_close(&dl);
	}
	if (i < r->elements && (e = r->element[i])->type == REDIS_REPLY_ARRAY &&
	    e->elements == 2 && e->element[0]->type == REDIS_REPLY_STRING) {
		snprintf(j->from, sizeof(j->from), "%s", e->element[0]->str);
		j->more = 1;
	}
	djob_settle(j);
}

static void
bulk_read(struct djob *j)
{
	char count[16];

	j->want = DEAD_CHUNK;
	if (j->want > DEAD_SCAN_MAX - j->looked)
		j->want = DEAD_SCAN_MAX - j->looked;
	snprintf(count, sizeof(count), "%u", j->want + 1);
	if (rconn_cmd(sup_store_redis(j->sup), bulk_cb, j,
	    "XRANGE %s %s + COUNT %s", j->dkey, j->from, count) < 0) {
		j->failed = 1;
		djob_settle(j);
		return;
	}
	j->pending++;
}

/* ---- POST /dead/retry ---- */

static void
post_dead_retry_all(struct api_req *req)
{
	static const char *const keys[] = { "code", "capability", "all",
	    "cursor", NULL };
	json_t *b = api_body(req), *all;
	const char *code, *cap, *cursor, *dot = NULL;
	char err[ERRLEN];
	struct djob *j;
	int everything;

	if (sub_body_keys(b, keys, "", err, sizeof(err)) < 0 ||
	    sub_opt_str(b, "code", "", &code, err, sizeof(err)) < 0 ||
	    sub_opt_str(b, "capability", "", &cap, err, sizeof(err)) < 0 ||
	    sub_opt_str(b, "cursor", "", &cursor, err, sizeof(err)) < 0) {
		api_fail(req, 400, "bad_request", "%s", err);
		return;
	}
	all = json_object_get(b, "all");
	if (all != NULL && !json_is_boolean(all)) {
		api_fail(req, 400, "bad_request", "field 'all': expected true "
		    "or false");
		return;
	}
	everything = all != NULL && json_is_true(all);
	if (code != NULL && !code_known(code)) {
		api_fail(req, 400, "bad_request", "field 'code': not a code of "
		    "docs/PROTOCOL.md, Errors: '%.64s'", code);
		return;
	}
	if (cap != NULL && !sub_capability_ok(cap)) {
		api_fail(req, 400, "bad_request", "field 'capability': not a "
		    "name (or @agent): '%.80s'", cap);
		return;
	}
	if (!everything && code == NULL && cap == NULL) {
		api_fail(req, 400, "bad_request", "give a filter (code, "
		    "capability), or \"all\": true");
		return;
	}
	/* The cursor: "<entry>.<n>", n the dead letters before entry that
	 * the requests before left in place. */
	if (cursor != NULL && ((dot = strchr(cursor, '.')) == NULL ||
	    entry_id_ok(cursor, (size_t)(dot - cursor)) < 0 ||
	    dot[1] == '\0' || strspn(dot + 1, "0123456789") != strlen(dot + 1) ||
	    strlen(dot + 1) > 9)) {
		api_fail(req, 400, "bad_request", "field 'cursor': not one this "
		    "API gave");
		return;
	}
	if ((j = djob_new(req, 1)) == NULL)
		return;
	j->fcode = code;
	j->fcap = cap;
	snprintf(j->from, sizeof(j->from), "-");
	if (cursor != NULL) {
		snprintf(j->from, sizeof(j->from), "%.*s",
		    (int)(dot - cursor), cursor);
		j->kept = (unsigned)strtoul(dot + 1, NULL, 10);
	}
	bulk_read(j);
}

const struct api_route api_dead_routes[] = {
	{ "GET", "/dead", "code,capability,limit,cursor", 0, get_dead },
	{ "GET", "/dead/{}", "", 0, get_dead_one },
	{ "POST", "/dead/{}/retry", "", API_CHANGE, post_dead_retry },
	{ "POST", "/dead/retry", "", API_CHANGE | API_BODY | API_BODY_NEEDED,
	    post_dead_retry_all },
	{ "POST", "/tasks", "", API_CHANGE | API_BODY | API_BODY_NEEDED,
	    sub_post_task },
	{ "POST", "/workflows", "", API_CHANGE | API_BODY | API_BODY_NEEDED,
	    sub_post_workflow },
	{ NULL, NULL, NULL, 0, NULL },
};
