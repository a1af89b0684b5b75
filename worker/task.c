/*
 * task.c - a task's life in the worker (see the diagram in worker.h):
 * accepted from a Redis entry onto the backlog, dispatched to the handler,
 * finished into an encoded result (or dead letter) on the out queue, freed
 * once the MULTI/EXEC that publishes and acknowledges it succeeded.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker.h"

struct wrk_task *
wrk_task_new(struct wrk *w, int key, const char *entry, const char *raw,
    size_t rawlen)
{
	struct wrk_task *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->key = key;
	snprintf(t->entry, sizeof(t->entry), "%s", entry);
	msgpack_sbuffer_init(&t->out);
	if (raw != NULL) {
		/* +1: never malloc(0); the copy outlives the hiredis reply. */
		if ((t->raw = malloc(rawlen + 1)) == NULL) {
			free(t);
			return NULL;
		}
		memcpy(t->raw, raw, rawlen);
		t->rawlen = rawlen;
	}
	(void)w;
	return t;
}

void
wrk_task_free(struct wrk_task *t)
{
	if (t == NULL)
		return;
	if (t->decoded)
		proto_task_clear(&t->t);
	free(t->raw);
	msgpack_sbuffer_destroy(&t->out);
	free(t->reply_to);
	json_decref(t->memory);
	wrk_taskout_free(t->taskout);
	json_decref(t->usage);
	free(t);
}

/* Queue a finished task for publishing. */
static void
task_to_outq(struct wrk *w, struct wrk_task *t)
{
	TAILQ_INSERT_TAIL(&w->outq, t, q);
	w->noutq++;
}

struct wrk_task *
wrk_task_find(struct wrk *w, int key, const char *entry)
{
	struct wrk_task_list *lists[] = { &w->backlog, &w->running, &w->outq };
	struct wrk_task *t;

	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		TAILQ_FOREACH(t, lists[i], q)
			if (t->key == key && strcmp(t->entry, entry) == 0)
				return t;
	return NULL;
}

/*
 * Keys are numbered in the order they are served (broadcast first, then
 * the direct queue, then priority 2, 1, 0), so the backlog is kept sorted
 * by key: a later entry of a higher priority overtakes what waits.
 */
static void
backlog_insert(struct wrk *w, struct wrk_task *t, bool front)
{
	struct wrk_task *o;

	if (front) {
		TAILQ_FOREACH(o, &w->backlog, q)
			if (o->key >= t->key)
				break;
	} else {
		TAILQ_FOREACH_REVERSE(o, &w->backlog, wrk_task_list, q)
			if (o->key <= t->key)
				break;
		o = o ? TAILQ_NEXT(o, q) : TAILQ_FIRST(&w->backlog);
	}
	if (o != NULL)
		TAILQ_INSERT_BEFORE(o, t, q);
	else
		TAILQ_INSERT_TAIL(&w->backlog, t, q);
	w->nbacklog++;
}

void
wrk_task_accept(struct wrk *w, struct wrk_task *t, uint32_t deliveries)
{
	struct proto_err err;
	char why[HIVE_REASON_MAX];

	if (t->key == w->bcast_key)
		w->nbcast++;
	if (t->raw == NULL) {
		/* XREADGROUP of our pending list shows deleted entries with
		 * no fields: nothing to run, only to acknowledge. */
		log_warnx("agent=%s stream=%s entry=%s deleted while pending, "
		    "acknowledging", w->agent_inst, w->keys[t->key].name,
		    t->entry);
		if (t->key == w->bcast_key)
			w->nbcast--;
		t->out_kind = WRK_OUT_ACK;
		task_to_outq(w, t);
		return;
	}
	if (proto_decode_task(t->raw, t->rawlen, &t->t, &err) == -1) {
		struct hive_str id;
		char eb[PROTO_ERRBUF];

		/* A malformed traceparent is a dead letter too: a new trace
		 * for its log line. */
		proto_traceparent_make(t->tp, NULL);
		/* Its id, when that much can be read, names it in the dead
		 * letter: the client finds the task it submitted. */
		if (proto_peek_id(t->raw, t->rawlen, &id) == 0)
			snprintf(t->id, sizeof(t->id), "%.*s", (int)id.len,
			    id.ptr);
		snprintf(why, sizeof(why), "malformed task: %s",
		    proto_strerror(&err, eb, sizeof(eb)));
		log_warnx("agent=%s stream=%s entry=%s task=%s trace=%.32s "
		    "reason=\"%s\"", w->agent_inst, w->keys[t->key].name,
		    t->entry, t->id[0] ? t->id : "?", WRK_TRACE(t), why);
		if (t->key == w->bcast_key)
			w->nbcast--;
		wrk_task_dead(w, t, (enum hive_code)err.code, why);
		return;
	}
	t->decoded = true;
	snprintf(t->id, sizeof(t->id), "%.*s", (int)t->t.id.len, t->t.id.ptr);
	/* A task without a trace (a client writing to Redis) gets one
	 * here: its log lines, its handler and its result share it. */
	if (t->t.traceparent.len == HIVE_TRACEPARENT_LEN)   /* checked */
		memcpy(t->tp, t->t.traceparent.ptr, HIVE_TRACEPARENT_LEN);
	else
		proto_traceparent_make(t->tp, NULL);
	/* Each earlier delivery of this entry was a worker that took it and
	 * died (or lost it) before acknowledging it: those were attempts. */
	t->attempt = (t->t.attempt ? t->t.attempt : 1) + deliveries;
	t->max_attempts = t->t.max_attempts ? t->t.max_attempts :
	    w->o.max_attempts;
	if (t->attempt > t->max_attempts) {
		/* The dead letter counts the attempts made, not this one,
		 * which is not made. */
		t->attempt--;
		snprintf(why, sizeof(why), "gave up after %u attempts: "
		    "workers died %u times running it", t->attempt,
		    deliveries);
		log_warnx("agent=%s task=%s trace=%.32s reason=\"%s\"",
		    w->agent_inst, t->id, WRK_TRACE(t), why);
		if (t->key == w->bcast_key)
			w->nbcast--;
		wrk_task_dead(w, t, HIVE_CODE_ATTEMPTS, why);
		return;
	}
	if (t->t.reply_to.len > 0 &&
	    (t->reply_to = strndup(t->t.reply_to.ptr, t->t.reply_to.len)) == NULL)
		fatal("agent=%s task=%s keeping its reply_to", w->agent_inst,
		    t->id);
	if (deliveries > 0)
		log_info("agent=%s task=%s trace=%.32s attempt=%u resuming "
		    "pending task", w->agent_inst, t->id, WRK_TRACE(t),
		    t->attempt);
	else
		log_debug("agent=%s task=%s trace=%.32s entry=%s accepted",
		    w->agent_inst, t->id, WRK_TRACE(t), t->entry);
	backlog_insert(w, t, false);
}

/*
 * A task's event (docs/PROTOCOL.md, event): task.started, task.completed
 * or task.failed, appended to sb; -1 (sb unchanged) when it cannot be
 * encoded.  reason may be NULL; it is cut to HIVE_REASON_MAX.
 */
static int
task_event(struct wrk *w, const struct wrk_task *t, const char *kind,
    const char *reason, uint64_t ts_ms, msgpack_sbuffer *sb)
{
	struct hive_event e;
	struct proto_err perr;
	char text[HIVE_REASON_MAX + 1];

	memset(&e, 0, sizeof(e));
	e.kind = HIVE_STR(kind);
	e.ts_ms = ts_ms;
	e.host = HIVE_STR(w->o.host);
	e.agent = HIVE_STR(w->agent_inst);
	e.task = t->t.id;
	e.attempt = t->attempt;
	e.workflow = t->t.workflow;
	if (reason != NULL && *reason != '\0') {
		snprintf(text, sizeof(text), "%s", reason);
		wrk_text_fit(text, sizeof(text));
		e.reason = HIVE_STR(text);
	}
	return proto_encode_event(sb, &e, &perr);
}

/*
 * Hand backlog tasks to the handler while it has room.  With
 * --task-events each start is a task.started event, sent on the cmd
 * connection with whatever else this
 * loop turn writes (never inside a MULTI: wrk_publish writes its whole
 * transaction in one call).  Events are best effort: with Redis down it
 * is not sent.
 */
void
wrk_dispatch(struct wrk *w)
{
	struct wrk_task *t;
	bool changed = false;
	char key[HIVE_KEY_MAX] = "";
	msgpack_sbuffer ev;
	unsigned timeout;

	msgpack_sbuffer_init(&ev);
	while ((t = TAILQ_FIRST(&w->backlog)) != NULL &&
	    w->nrunning < (int)w->o.concurrency && w->phase != WRK_PH_EXITING) {
		if (w->o.mode == WRK_MODE_STREAM && !wrk_stream_ready(w))
			break;
		if (!changed && w->o.task_events &&
		    proto_key_named(key, sizeof(key), w->o.prefix, "events") < 0)
			key[0] = '\0';      /* cannot be: the prefix is checked */
		TAILQ_REMOVE(&w->backlog, t, q);
		w->nbacklog--;
		TAILQ_INSERT_TAIL(&w->running, t, q);
		w->nrunning++;
		t->started_ms = proto_now_ms();
		timeout = wrk_task_timeout(w, t);
		t->due = timeout > 0 ? wrk_now() + timeout : 0;
		t->code = HIVE_CODE_NONE;
		changed = true;
		log_debug("agent=%s task=%s trace=%.32s attempt=%u started",
		    w->agent_inst, t->id, WRK_TRACE(t), t->attempt);
		msgpack_sbuffer_clear(&ev);
		if (key[0] != '\0' && task_event(w, t, "task.started", NULL,
		    t->started_ms, &ev) == 0)
			rconn_cmd(wrk_redis_conn(w, WRK_CONN_CMD), NULL, NULL,
			    "XADD %s * m %b", key, ev.data, ev.size);
		if (w->o.mode == WRK_MODE_STREAM)
			(void)wrk_stream_send(w, t);   /* fails the task itself */
		else
			(void)wrk_exec_start(w, t);
	}
	msgpack_sbuffer_destroy(&ev);
	if (changed)
		wrk_state_changed(w);
}

unsigned
wrk_task_timeout(const struct wrk *w, const struct wrk_task *t)
{
	return t->t.timeout_ms ? t->t.timeout_ms : w->o.task_timeout_ms;
}

/*
 * The line a handler reads:
 *   {"id":"..","attempt":N,"agent":"name/1","payload":..,"memory":{..},
 *    "parents":{..},"traceparent":"00-.."}\n
 * "parents" (a workflow task's dependencies' results by task id) only
 * when the task has them; the fields added since come after the older
 * ones: a script that finds the fields it knows by their order keeps
 * working.  The traceparent is checked hex (no escaping).  Names and ids are checked by the codec
 * ([A-Za-z0-9_.-] and printable ASCII), so only '"' and '\' in an id
 * need escaping.  Payload and parents are written straight from msgpack
 * (proto_obj_json_text); one without a JSON form fails the task (-1, err
 * says why).
 */
int
wrk_task_line(struct wrk *w, struct wrk_task *t, struct hbuf *b,
    char *err, size_t errlen)
{
	struct proto_err perr;
	char *payload = NULL, *parents = NULL;
	size_t plen = 4, rlen = 0, mark = b->len;
	char num[32];
	int n;

	if (t->t.payload.type != MSGPACK_OBJECT_NIL &&
	    (payload = proto_obj_json_text(&t->t.payload, &plen,
	    &perr)) == NULL) {
		snprintf(err, errlen, "payload has no JSON form: %s",
		    proto_strerror(&perr, (char[HIVE_REASON_MAX]){ 0 },
		    HIVE_REASON_MAX));
		t->code = (enum hive_code)perr.code;   /* wrk_task_fail's */
		return -1;
	}
	if (t->t.parents.type != MSGPACK_OBJECT_NIL &&
	    (parents = proto_obj_json_text(&t->t.parents, &rlen,
	    &perr)) == NULL) {
		snprintf(err, errlen, "parents have no JSON form: %s",
		    proto_strerror(&perr, (char[HIVE_REASON_MAX]){ 0 },
		    HIVE_REASON_MAX));
		t->code = (enum hive_code)perr.code;
		free(payload);
		return -1;
	}
	if (hbuf_add(b, "{\"id\":\"", 7) == -1)
		goto nomem;
	for (size_t i = 0; t->id[i]; i++) {
		if ((t->id[i] == '"' || t->id[i] == '\\') &&
		    hbuf_add(b, "\\", 1) == -1)
			goto nomem;
		if (hbuf_add(b, &t->id[i], 1) == -1)
			goto nomem;
	}
	n = snprintf(num, sizeof(num), "\",\"attempt\":%u", t->attempt);
	if (hbuf_add(b, num, (size_t)n) == -1 ||
	    hbuf_add(b, ",\"agent\":\"", 10) == -1 ||
	    hbuf_add(b, w->agent_inst, strlen(w->agent_inst)) == -1 ||
	    hbuf_add(b, "\",\"payload\":", 12) == -1 ||
	    hbuf_add(b, payload ? payload : "null", plen) == -1 ||
	    hbuf_add(b, ",\"memory\":", 10) == -1 ||
	    hbuf_add(b, w->memory_text, strlen(w->memory_text)) == -1)
		goto nomem;
	if (parents != NULL && (hbuf_add(b, ",\"parents\":", 11) == -1 ||
	    hbuf_add(b, parents, rlen) == -1))
		goto nomem;
	if (hbuf_add(b, ",\"traceparent\":\"", 16) == -1 ||
	    hbuf_add(b, t->tp, HIVE_TRACEPARENT_LEN) == -1 ||
	    hbuf_add(b, "\"}\n", 3) == -1)
		goto nomem;
	free(payload);
	free(parents);
	return 0;
nomem:
	free(payload);
	free(parents);
	b->len = mark;
	snprintf(err, errlen, "out of memory building the handler's input");
	t->code = HIVE_CODE_TOOBIG;  /* the codec's name for out of memory */
	return -1;
}

static void
task_leave_running(struct wrk *w, struct wrk_task *t)
{
	TAILQ_REMOVE(&w->running, t, q);
	w->nrunning--;
	if (t->key == w->bcast_key)
		w->nbcast--;
}

/*
 * Encode t's result into t->out, and after it (--task-events) its event
 * (the last t->evlen bytes: task.completed or task.failed, published in
 * the same MULTI/EXEC as the result).  -1 with why, and t->code the codec's code,
 * when the result cannot be encoded.
 */
static int
task_encode(struct wrk *w, struct wrk_task *t, enum hive_status status,
    json_t *result, const char *error, json_t *memory, uint64_t memory_v,
    json_t *usage, char *why, size_t whylen)
{
	struct hive_result r;
	struct proto_err perr;
	msgpack_zone z;
	size_t mark;
	int rc = -1;

	memset(&r, 0, sizeof(r));
	msgpack_zone_init(&z, 2048);
	r.v = HIVE_PROTO_VERSION;
	r.id = t->t.id;
	r.agent = HIVE_STR(w->agent_inst);
	r.host = HIVE_STR(w->o.host);
	r.status = status;
	r.code = status == HIVE_STATUS_ERROR ? t->code : HIVE_CODE_NONE;
	r.result.type = MSGPACK_OBJECT_NIL;
	r.memory.type = MSGPACK_OBJECT_NIL;
	if (result != NULL && !json_is_null(result) &&
	    proto_json_to_obj(result, &z, &r.result, &perr) == -1) {
		snprintf(why, whylen, "result not publishable: %s",
		    proto_strerror(&perr, (char[HIVE_REASON_MAX]){ 0 },
		    HIVE_REASON_MAX));
		goto out;
	}
	if (error != NULL)
		r.error = HIVE_STR(error);
	r.attempt = t->attempt;
	r.started_ms = t->started_ms;
	r.finished_ms = proto_now_ms();
	if (memory != NULL) {
		if (proto_json_to_obj(memory, &z, &r.memory, &perr) == -1) {
			snprintf(why, whylen, "memory not publishable: %s",
			    proto_strerror(&perr, (char[HIVE_REASON_MAX]){ 0 },
			    HIVE_REASON_MAX));
			goto out;
		}
		r.memory_v = memory_v;
	}
	r.workflow = t->t.workflow;
	r.traceparent = HIVE_STR(t->tp);
	if (usage != NULL && proto_usage_from_json(usage, &r.usage,
	    &perr) == -1) {
		snprintf(why, whylen, "handler reported a bad usage: %s",
		    proto_strerror(&perr, (char[HIVE_REASON_MAX]){ 0 },
		    HIVE_REASON_MAX));
		goto out;
	}
	msgpack_sbuffer_clear(&t->out);
	t->evlen = 0;
	if (proto_encode_result(&t->out, &r, &perr) == -1) {
		snprintf(why, whylen, "result not publishable: %s",
		    proto_strerror(&perr, (char[HIVE_REASON_MAX]){ 0 },
		    HIVE_REASON_MAX));
		goto out;
	}
	mark = t->out.size;
	if (w->o.task_events && task_event(w, t, status == HIVE_STATUS_OK ? "task.completed" :
	    "task.failed", error, r.finished_ms, &t->out) == 0)
		t->evlen = t->out.size - mark;
	rc = 0;
out:
	if (rc == -1)
		t->code = (enum hive_code)perr.code;
	msgpack_zone_destroy(&z);
	return rc;
}

/* A result for t with this status and code (NONE when ok). */
static void
task_finish(struct wrk *w, struct wrk_task *t, enum hive_status status,
    enum hive_code code, json_t *result, const char *error, json_t *memory)
{
	char why[HIVE_ERROR_MAX];
	char *etext = NULL;
	uint64_t v = w->memory_v + 1;

	task_leave_running(w, t);
	t->code = code;
	if (error != NULL && strlen(error) >= HIVE_ERROR_MAX) {
		if ((etext = strdup(error)) == NULL)
			fatal("agent=%s task=%s keeping its error text",
			    w->agent_inst, t->id);
		wrk_text_fit(etext, HIVE_ERROR_MAX);
		error = etext;
	}
	if (status == HIVE_STATUS_ERROR && (error == NULL || *error == '\0'))
		error = "handler reported an error without a text";
	if (task_encode(w, t, status, result, error, memory, v, t->usage, why,
	    sizeof(why)) == -1) {
		/* t->code is now why it could not be encoded */
		log_warnx("agent=%s task=%s trace=%.32s reason=\"%s\"",
		    w->agent_inst, t->id, WRK_TRACE(t), why);
		memory = NULL;
		wrk_text_fit(why, sizeof(why));
		if (task_encode(w, t, HIVE_STATUS_ERROR, NULL, why, NULL, 0,
		    NULL, why, sizeof(why)) == -1)
			fatalx("agent=%s task=%s cannot encode an error result: "
			    "%s", w->agent_inst, t->id, why);
		status = HIVE_STATUS_ERROR;
	}
	if (memory != NULL) {
		t->memory = json_incref(memory);
		t->memory_v = v;
		if (wrk_set_memory(w, memory, v) == -1)
			fatal("agent=%s task=%s keeping its memory",
			    w->agent_inst, t->id);
	}
	free(etext);
	t->out_kind = WRK_OUT_RESULT;
	log_debug("agent=%s task=%s trace=%.32s attempt=%u status=%s",
	    w->agent_inst, t->id, WRK_TRACE(t), t->attempt,
	    status == HIVE_STATUS_OK ? "ok" : "error");
	task_to_outq(w, t);
	wrk_state_changed(w);
}

void
wrk_task_usage(struct wrk_task *t, json_t *usage)
{
	json_decref(t->usage);
	t->usage = usage != NULL ? json_incref(usage) : NULL;
}

/* The handler's answer: a failure it reports is code failed. */
void
wrk_task_finish(struct wrk *w, struct wrk_task *t, enum hive_status status,
    json_t *result, const char *error, json_t *memory)
{
	task_finish(w, t, status, status == HIVE_STATUS_ERROR ?
	    HIVE_CODE_FAILED : HIVE_CODE_NONE, result, error, memory);
}

/*
 * exec mode's timeout is an ev_timer, which counts from the loop's time:
 * that may be a little behind wrk_now() when the task was dispatched, so
 * the timer can fire up to that much before t->due.
 */
#define WRK_TIMEOUT_SLACK_MS 50

/*
 * Why the worker fails a task it handed to the handler: what it knew
 * before the handler saw it (t->code: a payload without a JSON form),
 * else a timeout when the attempt has run its time (stream mode's check
 * fails a task exactly at t->due; exec mode's timer, see above), else the
 * handler did not answer as it must.
 */
static enum hive_code
fail_code(const struct wrk_task *t)
{
	if (t->code != HIVE_CODE_NONE)
		return t->code;
	if (t->due != 0 && wrk_now() + WRK_TIMEOUT_SLACK_MS >= t->due)
		return HIVE_CODE_TIMEOUT;
	return HIVE_CODE_HANDLER;
}

void
wrk_task_fail(struct wrk *w, struct wrk_task *t, const char *fmt, ...)
{
	char text[HIVE_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_warnx("agent=%s task=%s trace=%.32s attempt=%u reason=\"%s\"",
	    w->agent_inst, t->id, WRK_TRACE(t), t->attempt, text);
	task_finish(w, t, HIVE_STATUS_ERROR, fail_code(t), NULL, text, NULL);
}

/* Dead letters keep the raw bytes, cut so that the whole letter fits. */
#define WRK_DEAD_RAW_MAX (HIVE_MSG_MAX - 16 * 1024)

/*
 * The dead letter names the entry (stream, entry), the task's id when it
 * could be read (a task that did not decode too: wrk_task_accept), and
 * in attempt the attempts made: the caller has t->attempt say so.
 */
void
wrk_task_dead(struct wrk *w, struct wrk_task *t, enum hive_code code,
    const char *reason)
{
	struct hive_dead d;
	struct proto_err perr;
	char why[HIVE_REASON_MAX];

	memset(&d, 0, sizeof(d));
	d.v = HIVE_PROTO_VERSION;
	d.id = HIVE_STR(t->id);
	snprintf(why, sizeof(why), "%s%s", reason,
	    t->rawlen > WRK_DEAD_RAW_MAX ? " (raw bytes cut)" : "");
	d.reason = HIVE_STR(why);
	d.code = code;
	d.stream = HIVE_STR(w->keys[t->key].name);
	d.entry = HIVE_STR(t->entry);
	d.agent = HIVE_STR(w->agent_inst);
	d.attempt = t->attempt;
	d.ts_ms = proto_now_ms();
	if (t->decoded)
		d.workflow = t->t.workflow;
	d.raw.ptr = t->raw ? t->raw : "";
	d.raw.len = (uint32_t)(t->rawlen > WRK_DEAD_RAW_MAX ? WRK_DEAD_RAW_MAX :
	    t->rawlen);
	msgpack_sbuffer_clear(&t->out);
	t->evlen = 0;
	if (proto_encode_dead(&t->out, &d, &perr) == -1) {
		/* The id may be what is wrong: leave it out and retry. */
		d.id = HIVE_STR("");
		if (proto_encode_dead(&t->out, &d, &perr) == -1)
			fatalx("agent=%s entry=%s cannot encode a dead letter: "
			    "%s", w->agent_inst, t->entry,
			    proto_strerror(&perr, why, sizeof(why)));
	}
	t->out_kind = WRK_OUT_DEAD;
	task_to_outq(w, t);
}

void
wrk_task_retry(struct wrk *w, struct wrk_task *t)
{
	char why[HIVE_REASON_MAX];

	task_leave_running(w, t);
	if (t->attempt >= t->max_attempts) {
		/* this was the last attempt: t->attempt were made */
		snprintf(why, sizeof(why), "gave up after %u attempts: the "
		    "handler died running it", t->attempt);
		log_warnx("agent=%s task=%s trace=%.32s reason=\"%s\"",
		    w->agent_inst, t->id, WRK_TRACE(t), why);
		wrk_task_dead(w, t, HIVE_CODE_ATTEMPTS, why);
		return;
	}
	t->attempt++;
	if (t->key == w->bcast_key)
		w->nbcast++;
	backlog_insert(w, t, true);
}

void
wrk_task_acked(struct wrk *w, struct wrk_task *t)
{
	if (t->out_kind == WRK_OUT_RESULT)
		w->done++;
	wrk_task_free(t);
}
