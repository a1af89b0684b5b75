/*
 * coord.c - the workflow coordinator (record.h).
 *
 *   XREADGROUP coordinator hived@<host> BLOCK ... STREAMS <p>:workflows
 *         |   (first our own pending entries: id 0, then ">")
 *   decode + validate --bad--> <p>:dead (reason), XACK + XDEL
 *         |
 *   SELECT hive_wf_submit(json, host)  --conflict--> <p>:dead
 *         |  ok / duplicate
 *   XACK + XDEL; release(workflow)
 *
 *   release:  SELECT * FROM hive_wf_release(done ids, workflow ids)
 *             run  -> XADD queue (message + parents)
 *             dead -> XADD <p>:dead, an error result to <p>:results
 *                     (and the task's reply_to)
 *             end  -> XADD <p>:events workflow.completed | .failed
 *
 * One submission and one release at a time; ended task ids that come
 * meanwhile wait for the next release, which takes them all.  Reads block
 * on a connection of their own, so that writes never wait behind them.
 */
#include "record.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"
#include "log.h"
#include "rconn.h"
#include "sclaim.h"
#include "sreader.h"

#define SUP_COORD_SWEEP   10.0   /* s between sweeps of every workflow */
#define SUP_COORD_CLAIM   60000  /* ms: another host's submission, idle */
#define SUP_COORD_RETRY   2.0    /* s before a failed step is tried again */
#define SUP_COORD_COUNT   64     /* submissions per read */
#define SUP_COORD_BLOCK   1000   /* ms */
#define SUP_COORD_TRIES   3      /* SQL errors before a submission is refused */
/* created_ms beyond 9999-12-31 is no time PostgreSQL can hold. */
#define SUP_COORD_MS_MAX  253402300799999ull

struct co_entry {
	char id[HIVE_ENTRY_ID_MAX + 1];
	char *msg;                   /* NULL: deleted while pending */
	size_t len;
	int done;                    /* acknowledged (recorded or refused) */
	int sent;                    /* in the statement in flight */
	char wid[HIVE_ID_MAX + 1];   /* its workflow id, once decoded */
	unsigned ntasks;             /* its tasks, once decoded */
};

struct co_ids {
	char **v;
	size_t n, cap;
};

struct sup_coord {
	struct ev_loop *loop;
	struct sup_pg *pg;
	struct rconn *rd;            /* blocking reads of <p>:workflows */
	struct rconn *wr;            /* everything else */
	char prefix[HIVE_NAME_MAX + 1];
	char host[HIVE_HOST_MAX + 1];
	char consumer[HIVE_HOST_MAX + 8];
	char key[HIVE_KEY_MAX];      /* <p>:workflows */
	char kdead[HIVE_KEY_MAX], kresults[HIVE_KEY_MAX], kevents[HIVE_KEY_MAX];
	int group_ok;                /* XGROUP CREATE sent on this connection */
	int reading;
	int pending_phase;           /* re-reading our own pending entries */
	struct co_entry *q;          /* entries read, not yet handled */
	size_t nq, capq, iq;
	int submitting;              /* q[iq..iend) are in PostgreSQL */
	size_t iend;
	int one_by_one;              /* a batch failed: its entries alone */
	int sub_errors;              /* SQL errors of a lone entry so far */
	int releasing;
	json_t *entries;             /* released task id -> its queue entry */
	unsigned xadds;              /* released tasks' XADDs not answered */
	int closing;                 /* sup_coord_free: no more queries */
	sup_rec_event_fn *event;     /* opts.event */
	void *event_arg;
	struct co_ids done;          /* ended tasks, for the next release */
	struct co_ids wfs;           /* submitted workflows, likewise */
	int sweep_due;
	ev_timer read_timer;
	ev_timer sweep_timer;
	ev_timer retry_timer;        /* the submission at q[iq] again */
};

static void co_read(struct sup_coord *);
static void co_next(struct sup_coord *);
static void co_release(struct sup_coord *);

/* ---- small things ---- */

static int
ids_add(struct co_ids *l, const char *s, size_t len)
{
	char *c;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	if ((c = strndup(s, len)) == NULL)
		return -1;
	l->v[l->n++] = c;
	return 0;
}

static void
ids_clear(struct co_ids *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

/* The ids as a JSON array text (NULL when out of memory). */
static char *
ids_json(const struct co_ids *l)
{
	json_t *a = json_array();
	char *s;

	for (size_t i = 0; a != NULL && i < l->n; i++)
		if (json_array_append_new(a, json_string(l->v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	s = a != NULL ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	return s;
}

static void
co_xadd(struct sup_coord *co, const char *key, const msgpack_sbuffer *sb)
{
	if (rconn_cmd(co->wr, rconn_log_error, "coordinator", "XADD %s * m %b",
	    key, sb->data, sb->size) < 0)
		log_warnx("coordinator: Redis is down: an entry for %s is not "
		    "written", key);
}

/* A dead letter: a task's (id), or a refused workflow's (no id; its
 * workflow id when it could be read). */
static void
co_dead(struct sup_coord *co, struct hive_str id, struct hive_str workflow,
    enum hive_code code, const char *reason, const char *stream,
    const char *entry, const char *raw, size_t rawlen)
{
	struct hive_dead d = { 0 };
	struct proto_err err;
	msgpack_sbuffer sb;

	d.id = id;
	d.workflow = workflow;
	d.code = code;
	d.reason = HIVE_STR(reason);
	d.stream = HIVE_STR(stream);
	if (entry != NULL)
		d.entry = HIVE_STR(entry);
	d.ts_ms = proto_now_ms();
	d.raw.ptr = raw;
	d.raw.len = rawlen > HIVE_RAW_MAX ? HIVE_RAW_MAX : (uint32_t)rawlen;
	msgpack_sbuffer_init(&sb);
	if (proto_encode_dead(&sb, &d, &err) == 0)
		co_xadd(co, co->kdead, &sb);
	else {
		char eb[PROTO_ERRBUF];
		log_warnx("coordinator: dead letter: %s",
		    proto_strerror(&err, eb, sizeof(eb)));
	}
	msgpack_sbuffer_destroy(&sb);
}

/* ---- submissions ---- */

static void
co_entries_free(struct sup_coord *co)
{
	for (size_t i = 0; i < co->nq; i++)
		free(co->q[i].msg);
	co->nq = co->iq = co->iend = 0;
	co->one_by_one = 0;
}

/* A submission done with (recorded, or refused): acknowledge and delete
 * it, on the reading connection, so that the next read comes after. */
static void
co_ack(struct sup_coord *co, struct co_entry *e)
{
	rconn_cmd(co->rd, rconn_log_error, "coordinator",
	    "XACK %s " HIVE_GROUP_COORD " %s", co->key, e->id);
	rconn_cmd(co->rd, rconn_log_error, "coordinator", "XDEL %s %s", co->key,
	    e->id);
	e->done = 1;
}

static void
co_refuse(struct sup_coord *co, struct co_entry *e, enum hive_code code,
    const char *why)
{
	char reason[HIVE_REASON_MAX];
	struct hive_str wid = HIVE_STR(e->wid);

	/* One that did not decode is named by its id if that can be read. */
	if (wid.len == 0 && e->msg != NULL)
		(void)proto_peek_id(e->msg, e->len, &wid);
	if (wid.len > 0)
		snprintf(reason, sizeof(reason), "workflow %.*s: %s",
		    (int)wid.len, wid.ptr, why);
	else
		snprintf(reason, sizeof(reason), "workflow: %s", why);
	log_warnx("coordinator: %s %s: %s", co->key, e->id, reason);
	co_dead(co, (struct hive_str){ NULL, 0 }, wid, code, reason, co->key,
	    e->id, e->msg, e->len);
	co_ack(co, e);
}

static void
co_retry_later(struct sup_coord *co)
{
	co->submitting = 0;
	ev_timer_set(&co->retry_timer, SUP_COORD_RETRY, 0.);
	ev_timer_start(co->loop, &co->retry_timer);
}

/* A workflow's state to the owner (record.h, sup_rec_event). */
static void
co_tell(struct sup_coord *co, const char *id, const char *state,
    long long total, long long completed, long long failed)
{
	struct sup_rec_event e = { .type = "workflow", .id = id,
	    .state = state, .total = total, .completed = completed,
	    .failed = failed };

	if (co->event != NULL)
		co->event(&e, co->event_arg);
}

/* q[iq..iend) came back from PostgreSQL: one verdict per entry sent, in
 * order ('ok', 'duplicate', or why it cannot be recorded). */
static void
co_submit_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct sup_coord *co = arg;
	size_t sent = 0;
	int row = 0;

	for (size_t i = co->iq; i < co->iend; i++)
		sent += co->q[i].sent;
	if (err != NULL && sent > 1) {
		/* Whose error is it?  Each entry again, alone. */
		log_warnx("coordinator: %zu workflows not recorded, trying each "
		    "alone: %s", sent, err);
		co->one_by_one = 1;
		co->submitting = 0;
		co_next(co);
		return;
	}
	if (err != NULL && ++co->sub_errors >= SUP_COORD_TRIES) {
		/* The same error each time: it is the workflow's, not a
		 * passing one; it must not hold up those behind it. */
		char why[HIVE_REASON_MAX];
		snprintf(why, sizeof(why), "PostgreSQL refused it %d times: %s",
		    SUP_COORD_TRIES, err);
		for (size_t i = co->iq; i < co->iend; i++)
			if (co->q[i].sent)
				co_refuse(co, &co->q[i], HIVE_CODE_REFUSED,
				    why);
	} else if (res == NULL || err != NULL) {
		/* PostgreSQL is down or said no: the entries stay pending
		 * and are tried again (writing one twice is a no-op). */
		if (err != NULL)
			log_warnx("coordinator: workflow not recorded, retrying "
			    "in %.0fs: %s", SUP_COORD_RETRY, err);
		co_retry_later(co);
		return;
	}
	for (size_t i = co->iq; i < co->iend && err == NULL; i++) {
		struct co_entry *e = &co->q[i];
		const char *v;
		if (!e->sent)
			continue;
		v = row < PQntuples(res) ? PQgetvalue(res, row, 0) : "";
		row++;
		if (strcmp(v, "ok") != 0 && strcmp(v, "duplicate") != 0) {
			co_refuse(co, e, HIVE_CODE_REFUSED,
			    v[0] ? v : "not recorded");
			continue;
		}
		log_info("coordinator: workflow %s %s", e->wid, v[0] == 'o' ?
		    "recorded" : "was recorded before");
		if (v[0] == 'o')
			co_tell(co, e->wid, "running", e->ntasks, 0, 0);
		if (ids_add(&co->wfs, e->wid, strlen(e->wid)) < 0)
			co->sweep_due = 1;   /* the sweep finds its tasks */
		co_ack(co, e);
	}
	co->iq = co->iend;
	co->submitting = 0;
	co->sub_errors = 0;
	co_release(co);
	co_next(co);
}

/* Queue key of a workflow task into buf: 0, or -1 if it has none. */
static int
co_task_key(struct sup_coord *co, const struct hive_wf_task *t, char *buf,
    size_t len)
{
	char name[HIVE_NAME_MAX + 2];

	snprintf(name, sizeof(name), "%.*s", (int)t->capability.len,
	    t->capability.ptr);
	if (name[0] == '@')
		return proto_key_agent_queue(buf, len, co->prefix, name + 1,
		    t->prio) > 0 ? 0 : -1;
	return proto_key_queue(buf, len, co->prefix, name, t->prio) > 0 ? 0 : -1;
}

static char *
hex(const char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char *s = malloc(2 * n + 1);

	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = digits[(unsigned char)p[i] >> 4];
		s[2 * i + 1] = digits[(unsigned char)p[i] & 15];
	}
	s[2 * n] = '\0';
	return s;
}

/*
 * The workflow as hive_wf_submit takes it: {"id", "name", "created_ms",
 * "tasks": [{"id", "stream", "message" (hex), "deps"}]}.  NULL with why
 * set when a task cannot be encoded (why empty: out of memory).  Each
 * task carries the workflow's trace id (a new one when the workflow has
 * no traceparent) with a span id of its own.
 */
static json_t *
co_submission(struct sup_coord *co, const struct hive_workflow *w,
    char *why, size_t whylen, enum hive_code *code)
{
	json_t *doc, *tasks;
	uint64_t created = w->created_ms ? w->created_ms : proto_now_ms();
	char trace[HIVE_TRACE_ID_LEN], tp[HIVE_TRACEPARENT_LEN + 1];

	why[0] = '\0';
	if (w->traceparent.len != HIVE_TRACEPARENT_LEN)   /* else checked */
		proto_traceparent_make(tp, NULL);
	memcpy(trace, PROTO_TRACE_ID(w->traceparent.len ? w->traceparent.ptr :
	    tp), HIVE_TRACE_ID_LEN);
	*code = HIVE_CODE_VALUE;
	if (created > SUP_COORD_MS_MAX) {
		*code = HIVE_CODE_SIZE;
		snprintf(why, whylen, "created_ms %llu is past the year 9999",
		    (unsigned long long)created);
		return NULL;
	}
	doc = json_pack("{s:s%,s:I,s:[]}", "id", w->id.ptr, (size_t)w->id.len,
	    "created_ms", (json_int_t)created, "tasks");
	if (doc == NULL)
		return NULL;
	if (w->name.len > 0)
		json_object_set_new(doc, "name", json_stringn(w->name.ptr,
		    w->name.len));
	tasks = json_object_get(doc, "tasks");
	for (uint32_t i = 0; i < w->ntasks; i++) {
		const struct hive_wf_task *t = &w->tasks[i];
		struct hive_task m = { 0 };
		struct proto_err err;
		msgpack_sbuffer sb;
		char key[HIVE_KEY_MAX], *hx;
		json_t *jt, *deps;

		if (co_task_key(co, t, key, sizeof(key)) < 0) {
			snprintf(why, whylen, "task %.*s: no queue for '%.*s'",
			    (int)t->id.len, t->id.ptr, (int)t->capability.len,
			    t->capability.ptr);
			goto fail;
		}
		m.id = t->id;
		m.payload = t->payload;
		m.attempt = 1;
		m.max_attempts = t->max_attempts;
		m.timeout_ms = t->timeout_ms;
		m.created_ms = created;
		m.reply_to = t->reply_to;
		m.workflow = w->id;
		m.traceparent = HIVE_STR(proto_traceparent_make(tp, trace));
		msgpack_sbuffer_init(&sb);
		if (proto_encode_task(&sb, &m, &err) < 0) {
			char eb[PROTO_ERRBUF];
			snprintf(why, whylen, "task %.*s: %s", (int)t->id.len,
			    t->id.ptr, proto_strerror(&err, eb, sizeof(eb)));
			*code = (enum hive_code)err.code;
			msgpack_sbuffer_destroy(&sb);
			goto fail;
		}
		hx = hex(sb.data, sb.size);
		msgpack_sbuffer_destroy(&sb);
		deps = json_array();
		for (uint32_t k = 0; deps != NULL && k < t->ndeps; k++)
			json_array_append_new(deps, json_stringn(
			    t->depends_on[k].ptr, t->depends_on[k].len));
		jt = hx == NULL || deps == NULL ? NULL :
		    json_pack("{s:s%,s:s,s:s,s:o}", "id", t->id.ptr,
		    (size_t)t->id.len, "stream", key, "message", hx, "deps", deps);
		free(hx);
		if (jt == NULL || json_array_append_new(tasks, jt) < 0) {
			if (jt == NULL)
				json_decref(deps);
			goto fail;
		}
	}
	return doc;
fail:
	json_decref(doc);
	return NULL;
}

/* Send what is left of the read (one entry after a batch failed) in one
 * statement: hive_wf_submit for each, in order, each seeing the ones
 * before it; what does not decode is refused at once. */
static void
co_submit(struct sup_coord *co)
{
	json_t *all = json_array();
	struct proto_err err;
	char *text = NULL, why[512], eb[PROTO_ERRBUF];
	const char *params[2];
	size_t nsent = 0, max = co->one_by_one ? 1 : co->nq;
	size_t i;
	enum hive_code code;

	if (all == NULL) {
		co_retry_later(co);
		return;
	}
	co->submitting = 1;
	for (i = co->iq; i < co->nq && nsent < max; i++) {
		struct co_entry *e = &co->q[i];
		struct hive_workflow w;
		json_t *doc;

		e->sent = 0;
		if (e->done)
			continue;
		if (e->msg == NULL) {    /* deleted while it was pending */
			co_ack(co, e);
			continue;
		}
		if (proto_decode_workflow(e->msg, e->len, &w, &err) < 0) {
			co_refuse(co, e, (enum hive_code)err.code,
			    proto_strerror(&err, eb, sizeof(eb)));
			continue;
		}
		snprintf(e->wid, sizeof(e->wid), "%.*s", (int)w.id.len, w.id.ptr);
		e->ntasks = w.ntasks;
		doc = co_submission(co, &w, why, sizeof(why), &code);
		proto_workflow_clear(&w);
		if (doc == NULL && why[0] != '\0') {
			co_refuse(co, e, code, why);
			continue;
		}
		if (doc == NULL || json_array_append_new(all, doc) < 0)
			break;               /* out of memory: the rest later */
		e->sent = 1;
		nsent++;
	}
	co->iend = i;
	if (nsent == 0) {
		json_decref(all);
		co->iq = co->iend;
		co->submitting = 0;
		if (i < co->nq && !co->q[i].done)
			co_retry_later(co);  /* out of memory */
		else
			co_next(co);
		return;
	}
	text = json_dumps(all, JSON_COMPACT);
	json_decref(all);
	params[0] = text;
	params[1] = co->host;
	if (text == NULL || sup_pg_query(co->pg, "SELECT hive_wf_submit(x, $2) "
	    "FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS w(x, n) "
	    "ORDER BY n", 2, params, NULL, NULL, co_submit_cb, co) < 0)
		co_retry_later(co);
	free(text);
}

/* The next submissions read, or the next read. */
static void
co_next(struct sup_coord *co)
{
	if (co->submitting)
		return;
	while (co->iq < co->nq && co->q[co->iq].done)
		co->iq++;
	if (co->iq < co->nq) {
		co_submit(co);
		return;
	}
	co_entries_free(co);
	co_read(co);
}

static void
co_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup_coord *co = w->data;

	if (!co->submitting)
		co_next(co);
}

/* ---- reading <p>:workflows ---- */

static void
co_read_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct sup_coord *co = priv;
	redisReply *reply = r;
	const redisReply *list;
	const char *key;

	co->reading = 0;
	if (reply == NULL)           /* lost: the state callback reads again */
		return;
	if (sreader_failed(reply)) {
		/* NOGROUP: the stream is gone (Redis lost it); make it again. */
		log_warnx("coordinator: XREADGROUP: %s", reply->str);
		co->group_ok = 0;
		ev_timer_set(&co->read_timer, 1.0, 0.);
		ev_timer_start(co->loop, &co->read_timer);
		return;
	}
	if ((list = sreader_stream(reply, 0, &key)) == NULL ||
	    list->elements == 0) {
		co->pending_phase = 0;   /* nothing (more) of ours pending */
		co_read(co);
		return;
	}
	if (list->elements > co->capq) {
		struct co_entry *q = realloc(co->q, list->elements * sizeof(*q));
		if (q == NULL) {
			ev_timer_set(&co->read_timer, SUP_COORD_RETRY, 0.);
			ev_timer_start(co->loop, &co->read_timer);
			return;
		}
		co->q = q;
		co->capq = list->elements;
	}
	for (size_t k = 0; k < list->elements; k++) {
		redisReply *e = list->element[k], *f;
		struct co_entry *ce;
		if (sreader_entry_id(e) == NULL ||
		    e->element[0]->len > HIVE_ENTRY_ID_MAX)
			continue;
		ce = &co->q[co->nq];
		memset(ce, 0, sizeof(*ce));
		memcpy(ce->id, e->element[0]->str, e->element[0]->len + 1);
		f = e->element[1];
		ce->msg = NULL;
		ce->len = 0;
		if (f->type == REDIS_REPLY_ARRAY) {
			/* No field m: an empty message, which does not decode
			 * and goes to the dead letters like any bad one. */
			const redisReply *m = rconn_entry_field(f, "m");
			const char *v = m != NULL ? m->str : "";
			ce->len = m != NULL ? m->len : 0;
			if ((ce->msg = malloc(ce->len ? ce->len : 1)) == NULL)
				continue;    /* stays pending: read again later */
			memcpy(ce->msg, v, ce->len);
		}
		co->nq++;
	}
	co_next(co);
}

static void
co_read(struct sup_coord *co)
{
	const char *keys[1] = { co->key };
	struct sreader_read rd = { .group = HIVE_GROUP_COORD,
	    .consumer = co->consumer, .count = SUP_COORD_COUNT,
	    .block_ms = SUP_COORD_BLOCK, .nkeys = 1, .keys = keys };

	if (co->reading || co->submitting || co->iq < co->nq ||
	    !rconn_is_up(co->rd))
		return;
	if (!co->group_ok) {
		/* BUSYGROUP is the usual answer; the read says if not. */
		sreader_group(co->rd, co->key, HIVE_GROUP_COORD, 1,
		    "coordinator");
		co->group_ok = 1;
		co->pending_phase = 1;
	}
	rd.pending = co->pending_phase;
	if (sreader_send(co->rd, &rd, co_read_cb, co) == 0)
		co->reading = 1;
}

static void
co_read_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	co_read(w->data);
}

static void
co_rd_state(struct rconn *rc, int up, void *arg)
{
	struct sup_coord *co = arg;

	co->reading = 0;
	co->group_ok = 0;            /* Redis may have lost it: create again */
	if (up)
		co_read(co);
}

/* ---- releasing ---- */

static void
co_entries_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	if (err != NULL)
		log_warnx("coordinator: entries of released tasks: %s", err);
}

/* Once every released task's XADD answered: their entries in PostgreSQL
 * (the recorder writes the same when it reads them), so that recovery
 * can tell whether Redis still has them, and the sweep does not send
 * them again. */
static void
co_entries_flush(struct sup_coord *co)
{
	const char *params[1];
	char *text;

	if (co->closing || co->xadds > 0 || co->entries == NULL ||
	    json_object_size(co->entries) == 0)
		return;
	text = json_dumps(co->entries, JSON_COMPACT);
	json_object_clear(co->entries);
	if (text == NULL)
		return;
	params[0] = text;
	sup_pg_query(co->pg, "UPDATE tasks t SET entry = v.value FROM "
	    "jsonb_each_text($1::jsonb) v WHERE t.id = v.key AND "
	    "t.entry IS NULL", 1, params, NULL, NULL, co_entries_cb, co);
	free(text);
}

struct co_xadd {
	struct sup_coord *co;
	char id[HIVE_ID_MAX + 1];
};

static void
co_released_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct co_xadd *x = priv;
	struct sup_coord *co = x->co;
	redisReply *reply = r;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING) {
		if (co->entries != NULL)
			json_object_set_new(co->entries, x->id,
			    json_string(reply->str));
	} else if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		log_warnx("coordinator: task %s: %s", x->id, reply->str);
	free(x);
	co->xadds--;
	co_entries_flush(co);
}

/* A released task on its queue, with its parents' results. */
static void
co_run(struct sup_coord *co, const char *id, const char *workflow,
    const char *stream, const unsigned char *msg, size_t len,
    const char *parents)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = NULL;
	struct co_xadd *x;
	char eb[PROTO_ERRBUF], why[HIVE_REASON_MAX];
	char trace[HIVE_TRACE_ID_LEN + 1] = "-";   /* for its log lines */
	enum hive_code code;

	if (proto_decode_task((const char *)msg, len, &t, &err) < 0) {
		snprintf(why, sizeof(why), "recorded message unreadable: %s",
		    proto_strerror(&err, eb, sizeof(eb)));
		code = (enum hive_code)err.code;
		goto dead;
	}
	if (t.traceparent.len == HIVE_TRACEPARENT_LEN)
		snprintf(trace, sizeof(trace), "%.32s",
		    PROTO_TRACE_ID(t.traceparent.ptr));
	msgpack_zone_init(&z, 1024);
	msgpack_sbuffer_init(&sb);
	if (parents != NULL && parents[0] != '\0') {
		json_error_t je;
		if ((j = json_loads(parents, JSON_DECODE_ANY, &je)) == NULL ||
		    proto_json_to_obj(j, &z, &t.parents, &err) < 0) {
			snprintf(why, sizeof(why), "parents' results: %s", j == NULL ?
			    je.text : proto_strerror(&err, eb, sizeof(eb)));
			code = j == NULL ? HIVE_CODE_MALFORMED :
			    (enum hive_code)err.code;
			goto dead_clear;
		}
	}
	if (proto_encode_task(&sb, &t, &err) < 0) {
		snprintf(why, sizeof(why), "with its parents' results: %s",
		    proto_strerror(&err, eb, sizeof(eb)));
		code = (enum hive_code)err.code;
		goto dead_clear;
	}
	if ((x = malloc(sizeof(*x))) != NULL) {
		x->co = co;
		snprintf(x->id, sizeof(x->id), "%s", id);
		if (rconn_cmd(co->wr, co_released_cb, x, "XADD %s * m %b", stream,
		    sb.data, sb.size) == 0)
			co->xadds++;
		else {
			/* Redis down: the sweep sends it after 10 s. */
			log_warnx("coordinator: Redis is down: task=%s trace=%s "
			    "waits", id, trace);
			free(x);
		}
	}
	json_decref(j);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	proto_task_clear(&t);
	return;
dead_clear:
	json_decref(j);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	proto_task_clear(&t);
dead:
	/* The recorder records the dead letter: the task is dead, and its
	 * dependents follow at the next release. */
	log_warnx("coordinator: task=%s trace=%s cannot run: %s", id, trace,
	    why);
	co_dead(co, HIVE_STR(id), HIVE_STR(workflow), code, why, stream, NULL,
	    (const char *)msg, len);
}

/* A task that never runs: a dead letter, and an error result for whoever
 * waits for it. */
static void
co_cancel(struct sup_coord *co, const char *id, const char *workflow,
    const char *stream, const unsigned char *msg, size_t len,
    const char *reason)
{
	struct hive_result res = { 0 };
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	int have_task;
	uint64_t now = proto_now_ms();

	co_dead(co, HIVE_STR(id), HIVE_STR(workflow), HIVE_CODE_DEPENDENCY,
	    reason, stream, NULL, (const char *)msg, len);
	have_task = proto_decode_task((const char *)msg, len, &t, &err) == 0;
	res.id = HIVE_STR(id);
	res.agent = HIVE_STR("hived");
	res.host = HIVE_STR(co->host);
	res.status = HIVE_STATUS_ERROR;
	res.error = HIVE_STR(reason);
	res.code = HIVE_CODE_DEPENDENCY;
	res.attempt = 1;
	res.started_ms = res.finished_ms = now;
	res.workflow = HIVE_STR(workflow);
	msgpack_sbuffer_init(&sb);
	if (proto_encode_result(&sb, &res, &err) == 0) {
		co_xadd(co, co->kresults, &sb);
		if (have_task && t.reply_to.len > 0) {
			char key[HIVE_KEY_MAX + 1];
			snprintf(key, sizeof(key), "%.*s", (int)t.reply_to.len,
			    t.reply_to.ptr);
			co_xadd(co, key, &sb);
		}
	}
	msgpack_sbuffer_destroy(&sb);
	if (have_task)
		proto_task_clear(&t);
}

static void
co_end(struct sup_coord *co, const char *workflow, const char *reason)
{
	struct hive_event e = { 0 };
	struct proto_err err;
	msgpack_sbuffer sb;
	int ok = strncmp(reason, "completed", 9) == 0;
	long long nok = -1, nfail = -1;
	const char *p = strchr(reason, ' ');

	log_info("coordinator: workflow %s %s", workflow, reason);
	/* "completed: 3 completed, 0 failed" */
	if (p == NULL || sscanf(p, " %lld completed, %lld failed", &nok,
	    &nfail) != 2)
		nok = nfail = -1;
	co_tell(co, workflow, ok ? "completed" : "failed",
	    nok >= 0 ? nok + nfail : -1, nok, nfail);
	e.kind = HIVE_STR(ok ? "workflow.completed" : "workflow.failed");
	e.ts_ms = proto_now_ms();
	e.host = HIVE_STR(co->host);
	e.workflow = HIVE_STR(workflow);
	/* "completed: 3 completed, 0 failed" -> "3 completed, 0 failed" */
	e.reason = HIVE_STR(strchr(reason, ' ') ? strchr(reason, ' ') + 1 :
	    reason);
	msgpack_sbuffer_init(&sb);
	if (proto_encode_event(&sb, &e, &err) == 0)
		co_xadd(co, co->kevents, &sb);
	msgpack_sbuffer_destroy(&sb);
}

static void
co_release_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct sup_coord *co = arg;

	co->releasing = 0;
	if (res == NULL || err != NULL) {
		/* What it was asked is lost with it: the sweep asks about
		 * everything. */
		if (err != NULL)
			log_warnx("coordinator: release: %s", err);
		co->sweep_due = 1;
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *kind = PQgetvalue(res, i, 0);
		const char *id = PQgetvalue(res, i, 1);
		const char *wf = PQgetvalue(res, i, 2);
		const char *stream = PQgetvalue(res, i, 3);
		unsigned char *msg = NULL;
		size_t len = 0;

		if (strcmp(kind, "end") == 0) {
			co_end(co, wf, PQgetvalue(res, i, 6));
			continue;
		}
		msg = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, 4),
		    &len);
		if (msg == NULL)
			co->sweep_due = 1;
		else if (strcmp(kind, "run") == 0)
			co_run(co, id, wf, stream, msg, len,
			    PQgetvalue(res, i, 5));
		else if (strcmp(kind, "dead") == 0)
			co_cancel(co, id, wf, stream, msg, len, PQgetvalue(res, i, 6));
		PQfreemem(msg);
	}
	if (co->done.n > 0 || co->wfs.n > 0 || co->sweep_due)
		co_release(co);
}

/* Ask PostgreSQL what may run now: about the ended tasks and submitted
 * workflows gathered so far, or (sweep_due, nothing gathered) about
 * everything. */
static void
co_release(struct sup_coord *co)
{
	char *done = NULL, *wfs = NULL;
	const char *params[2];
	int rc;

	if (co->releasing || co->closing)
		return;
	if (co->done.n == 0 && co->wfs.n == 0) {
		if (!co->sweep_due)
			return;
		co->sweep_due = 0;
		rc = sup_pg_query(co->pg, "SELECT * FROM hive_wf_release(NULL, "
		    "NULL)", 0, NULL, NULL, NULL, co_release_cb, co);
	} else {
		if ((done = ids_json(&co->done)) == NULL ||
		    (wfs = ids_json(&co->wfs)) == NULL) {
			free(done);
			co->sweep_due = 1;   /* out of memory: sweep later */
			ids_clear(&co->done);
			ids_clear(&co->wfs);
			return;
		}
		ids_clear(&co->done);
		ids_clear(&co->wfs);
		params[0] = done;
		params[1] = wfs;
		rc = sup_pg_query(co->pg, "SELECT * FROM hive_wf_release("
		    "ARRAY(SELECT jsonb_array_elements_text($1::jsonb)), "
		    "ARRAY(SELECT jsonb_array_elements_text($2::jsonb)))", 2,
		    params, NULL, NULL, co_release_cb, co);
		free(done);
		free(wfs);
	}
	if (rc == 0)
		co->releasing = 1;
	else
		co->sweep_due = 1;
}

void
sup_coord_ended(struct sup_coord *co, const char *const *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ids_add(&co->done, ids[i], strlen(ids[i])) < 0) {
			co->sweep_due = 1;
			break;
		}
	co_release(co);
}

/* ---- the sweep ---- */

/* Entries now ours, read as our own pending ones; one page a sweep. */
static int
co_claim_page_cb(struct sclaim *c, const redisReply *claimed, void *arg)
{
	struct sup_coord *co = arg;

	log_notice("coordinator: %zu workflow submissions taken over from a "
	    "host that stopped", claimed->elements);
	co->pending_phase = 1;
	return -1;
}

static void
co_sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup_coord *co = w->data;

	co->sweep_due = 1;
	co_release(co);
	/* Submissions another host read and never finished.  Handling one
	 * takes milliseconds: a minute idle means that host is gone. */
	if (rconn_is_up(co->wr)) {
		struct sclaim_opts o = { .key = co->key,
		    .group = HIVE_GROUP_COORD, .from = NULL, .to = co->consumer,
		    .page = SUP_COORD_COUNT, .min_idle_ms = SUP_COORD_CLAIM,
		    .page_cb = co_claim_page_cb, .arg = co };
		sclaim_start(co->wr, &o);
	}
}

/* ---- life ---- */

struct sup_coord *
sup_coord_new(struct ev_loop *loop, struct sup_pg *pg,
    const struct sup_coord_opts *o)
{
	struct sup_coord *co = calloc(1, sizeof(*co));
	char err[256];

	if (co == NULL)
		return NULL;
	co->loop = loop;
	co->pg = pg;
	co->event = o->event;
	co->event_arg = o->event_arg;
	snprintf(co->prefix, sizeof(co->prefix), "%s", o->prefix);
	snprintf(co->host, sizeof(co->host), "%s", o->host);
	snprintf(co->consumer, sizeof(co->consumer), "hived@%s", o->host);
	if (proto_key_named(co->key, sizeof(co->key), o->prefix, "workflows") < 0 ||
	    proto_key_named(co->kdead, sizeof(co->kdead), o->prefix, "dead") < 0 ||
	    proto_key_named(co->kresults, sizeof(co->kresults), o->prefix,
	    "results") < 0 ||
	    proto_key_named(co->kevents, sizeof(co->kevents), o->prefix,
	    "events") < 0) {
		free(co);
		return NULL;
	}
	ev_timer_init(&co->read_timer, co_read_timer_cb, 0., 0.);
	co->read_timer.data = co;
	ev_timer_init(&co->retry_timer, co_retry_cb, SUP_COORD_RETRY, 0.);
	co->retry_timer.data = co;
	ev_timer_init(&co->sweep_timer, co_sweep_cb, SUP_COORD_SWEEP,
	    SUP_COORD_SWEEP);
	co->sweep_timer.data = co;
	ev_timer_start(loop, &co->sweep_timer);
	co->pending_phase = 1;
	co->sweep_due = 1;           /* what an earlier hived left */
	if ((co->entries = json_object()) == NULL) {
		free(co);
		return NULL;
	}
	if ((co->wr = rconn_new(loop, o->redis, "redis(coordinator)", NULL,
	    NULL, err, sizeof(err))) == NULL ||
	    (co->rd = rconn_new(loop, o->redis, "redis(workflows)", co_rd_state,
	    co, err, sizeof(err))) == NULL) {
		log_warnx("coordinator: %s", err);
		sup_coord_free(co);
		return NULL;
	}
	co_release(co);
	return co;
}

void
sup_coord_free(struct sup_coord *co)
{
	if (co == NULL)
		return;
	co->closing = 1;
	ev_timer_stop(co->loop, &co->read_timer);
	ev_timer_stop(co->loop, &co->retry_timer);
	ev_timer_stop(co->loop, &co->sweep_timer);
	sup_pg_forget(co->pg, co);
	rconn_free(co->rd);
	rconn_free(co->wr);          /* XADD callbacks: NULL replies, now */
	json_decref(co->entries);
	co_entries_free(co);
	free(co->q);
	ids_clear(&co->done);
	ids_clear(&co->wfs);
	free(co->done.v);
	free(co->wfs.v);
	free(co);
}
