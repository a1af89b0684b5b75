/*
 * rec_entry.c - stream entries into rows, and a batch folded into one row
 * per task (rec.h).
 *
 * A read's entries are decoded into bt: a queue entry, a result or a
 * dead letter into a struct rec_task (the state it says the task is in),
 * an event or a dead letter into a row of events, a result's memory into
 * a row of memory_snapshots.  fold_batch then sorts the tasks by id and
 * folds each task's into one row by the rule of hive_wins (state_wins):
 * a final state (completed, failed, dead) is never replaced, but for a
 * dead attempt that ran, by a later one (a retried dead letter); an
 * earlier attempt's dead letter or failure never ends a later attempt;
 * otherwise a higher attempt wins, then a later state (queued < running
 * < final).
 * A row goes straight into tasks when the task is new (task_is_new),
 * else through the stage; a queue entry that may soon meet its result is
 * held instead (held.c).
 */
#include "rec.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

/* Most tasks a kept array holds (REC_TASK_SPARE * 376 bytes). */
#define REC_TASK_SPARE   8192

/* ---- the batch ---- */

struct rec_task *
rec_batch_task(struct rec_batch *bt)
{
	struct rec_task *t;

	if (bt->ntasks == bt->captasks) {
		size_t cap = bt->captasks ? bt->captasks * 2 : 64;
		t = realloc(bt->tasks, cap * sizeof(*t));
		if (t == NULL)
			return NULL;
		bt->tasks = t;
		bt->captasks = cap;
	}
	t = &bt->tasks[bt->ntasks++];
	memset(t, 0, sizeof(*t));
	return t;
}

void
rec_task_free(struct rec_task *t)
{
	free(t->agent);
	free(t->workflow);
	free(t->result);
	free(t->error);
	free(t->model);
	free(t->own_msg);
}

void
rec_batch_begin(struct sup_recorder *rec, struct rec_batch *bt)
{
	memset(bt, 0, sizeof(*bt));
	bt->tasks = rec->spare;
	bt->captasks = rec->nspare;
	rec->spare = NULL;
	rec->nspare = 0;
}

/* Frees what the batch holds; keeps its task array for the next. */
void
rec_batch_end(struct sup_recorder *rec, struct rec_batch *bt)
{
	for (size_t i = 0; i < bt->ntasks; i++)
		rec_task_free(&bt->tasks[i]);
	if (rec->spare == NULL && bt->captasks <= REC_TASK_SPARE) {
		rec->spare = bt->tasks;
		rec->nspare = bt->captasks;
	} else {
		free(bt->tasks);
	}
	pgcopy_free(&bt->events);
	pgcopy_free(&bt->snaps);
}

/* ---- decoding ---- */

/*
 * A value as JSON text for a jsonb column, or NULL when it has no JSON form
 * (it is then recorded as absent, with the reason in the log).  jsonb
 * refuses the escape \u0000, so it becomes \ufffd.
 */
static char *
json_text(const msgpack_object *o, const char *what, struct hive_str task)
{
	struct proto_err err;
	char *s, *p;

	if (o->type == MSGPACK_OBJECT_NIL)
		return NULL;
	if ((s = proto_obj_json_text(o, NULL, &err)) == NULL) {
		char eb[PROTO_ERRBUF];
		log_warnx("recorder: task=%.*s: %s has no JSON form, not "
		    "recorded: %s", (int)task.len, task.ptr, what,
		    proto_strerror(&err, eb, sizeof(eb)));
		return NULL;
	}
	for (p = s; (p = strchr(p, '\\')) != NULL; p += 2) {
		if (p[1] == 'u' && strncmp(p + 2, "0000", 4) == 0)
			memcpy(p + 2, "fffd", 4);
		if (p[1] == '\0')
			break;
	}
	return s;
}

static char *
hstrdup(struct hive_str s)
{
	char *p;

	if (s.ptr == NULL || s.len == 0)
		return NULL;
	if ((p = malloc(s.len + 1)) == NULL)
		return NULL;
	memcpy(p, s.ptr, s.len);
	p[s.len] = '\0';
	return p;
}

/* A text field from a message: empty is NULL. */
static void
copy_hstr(struct pgcopy *c, struct hive_str s)
{
	if (s.ptr == NULL || s.len == 0)
		pgcopy_null(c);
	else
		pgcopy_text(c, s.ptr, s.len);
}

uint64_t
rec_entry_ms(const char *id)
{
	return strtoull(id, NULL, 10);
}

/* An entry id into dst (size bytes), cut to fit (snprintf's "%s" in the
 * hot path, without the format). */
void
rec_entry_copy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int
set_id(struct rec_task *t, struct hive_str id)
{
	if (id.len == 0 || id.len > HIVE_ID_MAX)
		return -1;
	memcpy(t->id, id.ptr, id.len);
	t->id[id.len] = '\0';
	return 0;
}

/* The agent's name of "name/instance" into buf (HIVE_NAME_MAX + 1). */
static void
agent_name(char *buf, struct hive_str a)
{
	size_t n = 0;

	while (n < a.len && n < HIVE_NAME_MAX && a.ptr[n] != '/')
		n++;
	if (n > 0)                   /* an absent one has no pointer */
		memcpy(buf, a.ptr, n);
	buf[n] = '\0';
}

/* The instance of "name/instance", 0 when it names none. */
static unsigned
agent_instance(struct hive_str a)
{
	unsigned n = 0;
	size_t i = 0;

	while (i < a.len && a.ptr[i] != '/')
		i++;
	for (i++; i < a.len && a.ptr[i] >= '0' && a.ptr[i] <= '9' &&
	    n < 1000000; i++)
		n = n * 10 + (unsigned)(a.ptr[i] - '0');
	return n;
}

/* s as a C string into buf (cut to fit). */
static void
hstr_to(char *buf, size_t len, struct hive_str s)
{
	size_t n = s.len < len - 1 ? s.len : len - 1;

	if (n > 0)
		memcpy(buf, s.ptr, n);
	buf[n] = '\0';
}

/* What the entry counts (tstats.c): its task, attempt and agent. */
static struct rec_stat *
stat_push(struct sup_recorder *rec, int si, const char *entry,
    enum rec_sk kind, struct hive_str id, uint32_t attempt,
    struct hive_str agent)
{
	struct rec_stat *st = rec_stat_push(rec, si, entry, kind);

	if (st == NULL)
		return NULL;
	if (id.len > 0 && id.len <= HIVE_ID_MAX) {
		memcpy(st->id, id.ptr, id.len);
		st->id[id.len] = '\0';
		st->task = rec_id_hash(st->id);
	}
	st->attempt = attempt ? attempt : 1;
	agent_name(st->agent, agent);
	st->instance = agent_instance(agent);
	return st;
}

/* An event's row of the stage (kind 'e', rec_txn.c's EVENT_COLUMNS: at,
 * kind, host, agent, task_id, pid, reason, source, workflow): source is
 * the entry's "stream/id". */
static void
add_event(struct rec_batch *bt, struct hive_str kind, uint64_t at_ms,
    struct hive_str host, struct hive_str agent, struct hive_str task,
    int64_t pid, struct hive_str reason, struct hive_str workflow,
    const char *stream, const char *entry)
{
	struct pgcopy *c = &bt->events;
	char src[HIVE_KEY_MAX + HIVE_ENTRY_ID_MAX + 4];

	snprintf(src, sizeof(src), "%s/%s", stream, entry);
	pgcopy_row(c, 10);
	pgcopy_char(c, 'e');
	pgcopy_time_ms(c, at_ms);
	copy_hstr(c, kind);
	copy_hstr(c, host);
	copy_hstr(c, agent);
	copy_hstr(c, task);
	if (pid > 0 && pid <= INT32_MAX)
		pgcopy_int4(c, (uint32_t)pid);
	else
		pgcopy_null(c);
	copy_hstr(c, reason);
	pgcopy_str(c, src);
	copy_hstr(c, workflow);
}

/* The trace id of a traceparent (checked by the decoder), if any. */
static void
set_trace(struct rec_task *t, struct hive_str tp)
{
	if (tp.len == HIVE_TRACEPARENT_LEN) {
		memcpy(t->trace, PROTO_TRACE_ID(tp.ptr), HIVE_TRACE_ID_LEN);
		t->trace[HIVE_TRACE_ID_LEN] = '\0';
	}
}

/* A queue entry.  -1: not a task (the worker that reads it dead-letters
 * it with this reason; the dead-letter stream is what records it). */
static int
record_task(struct sup_recorder *rec, struct rec_batch *bt, int si,
    const char *entry, const char *buf, size_t len)
{
	struct hive_task m;
	struct proto_err err;
	struct rec_task *t;
	struct rec_stat *st;

	if (proto_decode_task(buf, len, &m, &err) < 0) {
		char eb[PROTO_ERRBUF];
		log_debug("recorder: %s %s: not a task (%s)", rec->streams[si].key,
		    entry, proto_strerror(&err, eb, sizeof(eb)));
		return -1;
	}
	if ((t = rec_batch_task(bt)) == NULL) {
		proto_task_clear(&m);
		return 0;
	}
	t->has_q = 1;
	t->q_stream = si;
	rec_entry_copy(t->q_entry, sizeof(t->q_entry), entry);
	if ((st = stat_push(rec, si, entry, REC_SK_QUEUED, m.id, m.attempt,
	    (struct hive_str){ NULL, 0 })) != NULL) {
		const char *key = rec->streams[si].key;
		st->t0 = rec_entry_ms(entry);
		rec_key_cap(rec->prefix, key, strlen(key), st->cap,
		    sizeof(st->cap));
		hstr_to(st->workflow, sizeof(st->workflow), m.workflow);
	}
	if (set_id(t, m.id) < 0) {
		t->skip = 1;             /* acknowledged, nothing to write */
		goto out;
	}
	t->rank = 1;
	t->state = "queued";
	t->attempts = m.attempt;
	t->workflow = hstrdup(m.workflow);
	set_trace(t, m.traceparent);
	t->queued_ms = rec_entry_ms(entry);
	t->reread = rec->fsm.pending;
	t->created_ms = m.created_ms ? m.created_ms : t->queued_ms;
	t->has_msg = 1;
	t->msg_attempt = m.attempt;
	t->msg_stream = si;
	rec_entry_copy(t->msg_entry, sizeof(t->msg_entry), entry);
	t->msg = buf;
	t->msglen = len;
out:
	proto_task_clear(&m);
	return 0;
}

/* A memory snapshot's row of the stage (kind 'm', SNAP_COLUMNS: agent,
 * version, memory, task_id, host, created_at), from a result that carries
 * memory. */
static void
add_snapshot(struct rec_batch *bt, const struct hive_result *m,
    uint64_t at_ms)
{
	char *mem = json_text(&m->memory, "memory", m->id);
	struct pgcopy *c = &bt->snaps;

	if (mem == NULL)
		return;
	pgcopy_row(c, 7);
	pgcopy_char(c, 'm');
	copy_hstr(c, m->agent);
	pgcopy_int8(c, m->memory_v);
	pgcopy_jsonb(c, mem);
	copy_hstr(c, m->id);
	copy_hstr(c, m->host);
	pgcopy_time_ms(c, at_ms);
	free(mem);
}

static void
record_result(struct sup_recorder *rec, struct rec_batch *bt, int si,
    const char *entry, const char *buf, size_t len)
{
	struct hive_result m;
	struct proto_err err;
	struct rec_task *t;
	struct rec_stat *st;
	const char *key = rec->streams[si].key;

	if (proto_decode_result(buf, len, &m, &err) < 0) {
		char eb[PROTO_ERRBUF];
		log_warnx("recorder: %s %s: bad result, skipped: %s", key, entry,
		    proto_strerror(&err, eb, sizeof(eb)));
		return;
	}
	if ((t = rec_batch_task(bt)) == NULL || set_id(t, m.id) < 0) {
		if (t != NULL)
			bt->ntasks--;
		goto out;
	}
	t->rank = 3;
	t->state = m.status == HIVE_STATUS_OK ? "completed" : "failed";
	t->attempts = m.attempt;
	t->agent = hstrdup(m.agent);
	t->workflow = hstrdup(m.workflow);
	t->result = json_text(&m.result, "result", m.id);
	t->error = hstrdup(m.error);
	set_trace(t, m.traceparent);
	t->usage = m.usage;
	t->usage.model = (struct hive_str){ NULL, 0 };
	t->model = hstrdup(m.usage.model);
	t->finished_ms = m.finished_ms ? m.finished_ms : rec_entry_ms(entry);
	t->started_ms = m.started_ms;
	/* A task given up on (out of attempts, or its workflow cannot go
	 * on) has a dead letter beside this result: it counts as dead. */
	if (m.code != HIVE_CODE_ATTEMPTS && m.code != HIVE_CODE_DEPENDENCY &&
	    (st = stat_push(rec, si, entry, m.status == HIVE_STATUS_OK ?
	    REC_SK_OK : REC_SK_ERROR, m.id, m.attempt, m.agent)) != NULL) {
		st->t0 = m.started_ms;
		st->t1 = t->finished_ms;
		hstr_to(st->workflow, sizeof(st->workflow), m.workflow);
		hstr_to(st->error, sizeof(st->error), m.error);
		st->usage = m.usage;
		st->usage.model = (struct hive_str){ NULL, 0 };
	}
	t->created_ms = m.started_ms ? m.started_ms : t->finished_ms;
	if (m.memory_v > 0 && m.memory.type == MSGPACK_OBJECT_MAP)
		add_snapshot(bt, &m, t->finished_ms);
out:
	proto_result_clear(&m);
}

static void
record_event(struct sup_recorder *rec, struct rec_batch *bt, int si,
    const char *entry, const char *buf, size_t len)
{
	struct hive_event m;
	struct proto_err err;
	struct rec_stat *st;

	if (proto_decode_event(buf, len, &m, &err) < 0) {
		char eb[PROTO_ERRBUF];
		log_warnx("recorder: %s %s: bad event, skipped: %s",
		    rec->streams[si].key, entry,
		    proto_strerror(&err, eb, sizeof(eb)));
		return;
	}
	add_event(bt, m.kind, m.ts_ms ? m.ts_ms : rec_entry_ms(entry), m.host,
	    m.agent, m.task, m.pid, m.reason, m.workflow, rec->streams[si].key,
	    entry);
	if (m.kind.len == 12 && memcmp(m.kind.ptr, "task.started", 12) == 0 &&
	    m.task.len > 0 && (st = stat_push(rec, si, entry, REC_SK_STARTED,
	    m.task, m.attempt, m.agent)) != NULL)
		st->t0 = m.ts_ms ? m.ts_ms : rec_entry_ms(entry);
	proto_event_clear(&m);
}

static void
record_dead(struct sup_recorder *rec, struct rec_batch *bt, int si,
    const char *entry, const char *buf, size_t len)
{
	struct hive_dead m;
	struct proto_err err;
	struct rec_task *t;
	struct rec_stat *st;
	const char *key = rec->streams[si].key;
	uint64_t at;
	static const struct hive_str kind = { "task.dead", 9 };

	if (proto_decode_dead(buf, len, &m, &err) < 0) {
		char eb[PROTO_ERRBUF];
		log_warnx("recorder: %s %s: bad dead letter, skipped: %s", key,
		    entry, proto_strerror(&err, eb, sizeof(eb)));
		return;
	}
	at = m.ts_ms ? m.ts_ms : rec_entry_ms(entry);
	if ((st = stat_push(rec, si, entry, REC_SK_DEAD, m.id, m.attempt,
	    m.agent)) != NULL) {
		rec_key_cap(rec->prefix, m.stream.ptr ? m.stream.ptr : "",
		    m.stream.len, st->cap, sizeof(st->cap));
		hstr_to(st->workflow, sizeof(st->workflow), m.workflow);
		hstr_to(st->error, sizeof(st->error), m.reason);
		st->code = m.code;
	}
	add_event(bt, kind, at, (struct hive_str){ NULL, 0 }, m.agent, m.id, 0,
	    m.reason, (struct hive_str){ NULL, 0 }, key, entry);
	if (m.id.len > 0 && (t = rec_batch_task(bt)) != NULL) {
		if (set_id(t, m.id) < 0) {
			bt->ntasks--;
			goto out;
		}
		t->rank = 3;
		t->state = "dead";
		t->attempts = m.attempt;
		t->agent = hstrdup(m.agent);
		t->error = hstrdup(m.reason);
		t->created_ms = t->finished_ms = at;
	}
out:
	proto_dead_clear(&m);
}

int
rec_decode(struct sup_recorder *rec, struct rec_batch *bt, int si,
    const char *entry, const char *buf, size_t len)
{
	switch (rec->streams[si].kind) {
	case REC_QUEUE:
		return record_task(rec, bt, si, entry, buf, len);
	case REC_RESULTS:
		record_result(rec, bt, si, entry, buf, len);
		break;
	case REC_EVENTS:
		record_event(rec, bt, si, entry, buf, len);
		break;
	case REC_DEAD:
		record_dead(rec, bt, si, entry, buf, len);
		break;
	}
	return 0;
}

/* ---- folding a batch ---- */

/* A dead letter or a failed result: an attempt given up on. */
static int
given_up(const char *state)
{
	return strcmp(state, "dead") == 0 || strcmp(state, "failed") == 0;
}

/*
 * Does a new state of a task replace the one recorded?  (hive_wins,
 * migration 6.)  A later attempt replaces a dead one that ran (attempts
 * > 0): a dead letter retried (POST /dead/ID/retry) is a new attempt of
 * the same task.  A dead letter or failed result of an earlier attempt
 * never ends a later one; any other final state is never replaced.
 */
static int
state_wins(const char *os, int orank, uint32_t oatt, const char *ns,
    int nrank, uint32_t natt)
{
	if (oatt > 0 && natt > oatt && strcmp(os, "dead") == 0)
		return 1;
	if (orank == 3)
		return 0;
	if (nrank == 3 && natt < oatt && given_up(ns))
		return 0;
	if (nrank == 3)
		return 1;
	if (natt != oatt)
		return natt > oatt;
	return nrank >= orank;
}

static int
task_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rec_task *)a)->id,
	    ((const struct rec_task *)b)->id);
}

/* The last columns of a task's row: trace_id, input_tokens,
 * output_tokens, cost, model (NULL where unknown). */
static void
task_usage_cols(struct pgcopy *c, const struct rec_task *t)
{
	const struct hive_usage *u = &t->usage;

	pgcopy_str(c, t->trace[0] ? t->trace : NULL);
	if (u->has & HIVE_USAGE_INPUT)
		pgcopy_int8(c, u->input_tokens);
	else
		pgcopy_null(c);
	if (u->has & HIVE_USAGE_OUTPUT)
		pgcopy_int8(c, u->output_tokens);
	else
		pgcopy_null(c);
	if (u->has & HIVE_USAGE_COST)
		pgcopy_float8(c, u->cost);
	else
		pgcopy_null(c);
	pgcopy_str(c, t->model);
}

/*
 * One row of tasks columns (rec_txn.c's TASK_COLUMNS), as COPY into tasks
 * takes it, or, with a kind first, one of the stage's.  kind 't': the
 * task's row; kind 'a': an attempt the batch itself saw superseded, for
 * task_attempts; 0: a tasks row (no kind).
 */
static void
task_row(struct sup_recorder *rec, struct pgcopy *c, char kind,
    const struct rec_task *t)
{
	int row = kind != 'a', msg = row && t->has_msg;

	pgcopy_row(c, kind ? 20 : 19);
	if (kind)
		pgcopy_char(c, kind);
	pgcopy_str(c, t->id);
	pgcopy_str(c, msg ? rec->streams[t->msg_stream].key : NULL);
	pgcopy_str(c, msg ? t->msg_entry : NULL);
	pgcopy_str(c, t->state);
	pgcopy_int4(c, t->attempts);
	pgcopy_str(c, t->agent);
	pgcopy_str(c, row ? t->workflow : NULL);
	if (msg)
		pgcopy_bytes(c, t->msg, t->msglen);
	else
		pgcopy_null(c);
	pgcopy_jsonb(c, row ? t->result : NULL);
	pgcopy_str(c, t->error);
	pgcopy_time_ms(c, t->created_ms);
	pgcopy_time_ms(c, t->queued_ms);
	pgcopy_time_ms(c, t->started_ms);
	pgcopy_time_ms(c, t->rank == 3 ? t->finished_ms : 0);
	task_usage_cols(c, t);
}

/*
 * Fold run[0..n) (one task's entries) into run[0] by the rule of
 * hive_wins; the times (queued, started, finished) are those of the
 * winning attempt.  Entries of an attempt the fold supersedes go to the
 * stage as 'a' rows.
 */
static void
fold_task(struct sup_recorder *rec, struct rec_task *run, size_t n,
    struct rec_txn *tx)
{
	struct rec_task *w = &run[0];
	int rank = w->rank;
	const char *state = w->state;
	uint32_t att = w->attempts;

	for (size_t i = 1; i < n; i++)
		if (state_wins(state, rank, att, run[i].state, run[i].rank,
		    run[i].attempts)) {
			rank = run[i].rank;
			state = run[i].state;
			if (run[i].attempts > att)
				att = run[i].attempts;
		}
	for (size_t i = 0; i < n; i++)
		if (run[i].attempts < att && run[i].rank > 0) {
			task_row(rec, &tx->stage, 'a', &run[i]);
			tx->attempts = 1;
		}
	for (size_t i = 1; i < n; i++) {
		struct rec_task *t = &run[i];
		t->skip = 1;
		if (t->has_msg && (!w->has_msg || t->msg_attempt >= w->msg_attempt)) {
			w->has_msg = 1;
			w->msg_attempt = t->msg_attempt;
			w->msg_stream = t->msg_stream;
			memcpy(w->msg_entry, t->msg_entry, sizeof(w->msg_entry));
			w->msg = t->msg;
			w->msglen = t->msglen;
		}
		if (t->created_ms && (!w->created_ms || t->created_ms < w->created_ms))
			w->created_ms = t->created_ms;
		if (w->workflow == NULL) {
			w->workflow = t->workflow;
			t->workflow = NULL;
		}
		if (w->trace[0] == '\0')
			memcpy(w->trace, t->trace, sizeof(w->trace));
		if (state_wins(w->state, w->rank, w->attempts, t->state,
		    t->rank, t->attempts)) {
#define TAKE(f) do { free(w->f); w->f = t->f; t->f = NULL; } while (0)
			TAKE(agent);
			TAKE(result);
			TAKE(error);
			TAKE(model);
#undef TAKE
			w->usage = t->usage;
			if (t->attempts > w->attempts) {
				w->queued_ms = t->queued_ms;
				w->started_ms = t->started_ms;
				w->attempts = t->attempts;
			}
			w->rank = t->rank;
			w->state = t->state;
			w->finished_ms = t->finished_ms;
		}
		if (t->attempts == w->attempts) {
			if (w->queued_ms == 0)
				w->queued_ms = t->queued_ms;
			if (w->started_ms == 0)
				w->started_ms = t->started_ms;
		}
	}
}

/*
 * Is the task of run[0..n) surely not in tasks yet, so that its row can be
 * copied there, not upserted through the stage?  Its first attempt, its
 * queue entry among them, not re-read from our pending entries, not a
 * workflow's task (a coordinator creates those rows beforehand), and no
 * row written for it before from a result or a dead letter alone (rec
 * ->ends; one forgotten since was read before idset_forgotten, and a
 * queue entry is older than its result).  Wrong only when a batch is
 * written again (the recorder died between COMMIT and XACK), a task is
 * put back in a queue with the same attempt, or another recorder wrote
 * the row: the COPY then meets the row, and the batch is written again
 * with every row staged (rec_pg_cb).
 */
static int
task_is_new(const struct sup_recorder *rec, const struct rec_task *run,
    size_t n)
{
	int q = 0;

	for (size_t k = 0; k < n; k++) {
		if (run[k].attempts != 1 || run[k].workflow != NULL)
			return 0;
		if (run[k].has_q) {
			if (run[k].reread ||
			    run[k].queued_ms <= idset_forgotten(rec->ends))
				return 0;
			q = 1;
		}
	}
	return q && !idset_has(rec->ends, rec_id_hash(run[0].id));
}

/* After the batch commits, acknowledge the queue entries of run[0..n). */
static void
ack_queue_entries(struct sup_recorder *rec, const struct rec_task *run,
    size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (run[k].has_q)
			rec_push_ack(rec, run[k].q_stream, run[k].q_entry);
}

/* One task's folded row w into the transaction: copied into tasks if
 * new (task_is_new), else staged; a final workflow or dead task is told
 * to the coordinator after COMMIT. */
static void
write_task(struct sup_recorder *rec, struct rec_txn *tx, struct rec_task *w,
    int fresh)
{
	if (fresh && w->created_ms != 0) {
		task_row(rec, &tx->fresh, 0, w);
	} else {
		task_row(rec, &tx->stage, 't', w);
		rec->st.staged++;
		if (w->attempts > 1)
			tx->attempts = 1;
	}
	if (w->rank == 3 && rec->ended != NULL && (w->workflow != NULL ||
	    strcmp(w->state, "dead") == 0))
		rec_txn_push_ended(tx, w->id);
}

/*
 * Fold the batch (and the tasks held from earlier ones) into one row per
 * task, in the COPY data; hold the queue entries that may soon meet their
 * result; queue the acknowledgements of the queue entries written.
 * Returns the number of rows written.
 */
static size_t
fold_batch(struct sup_recorder *rec, struct rec_batch *bt, struct rec_txn *tx)
{
	size_t i = 0, rows = 0;
	int may_hold = !rec->fsm.pending && !rec->flush && rec->finish == NULL;

	held_to_batch(&rec->held, bt, !may_hold, rec->hold_ms,
	    rec->results_clock);
	if (bt->ntasks > 1)
		qsort(bt->tasks, bt->ntasks, sizeof(*bt->tasks), task_cmp);
	while (i < bt->ntasks) {
		size_t j = i + 1, nq = 0;
		struct rec_task *w = &bt->tasks[i];
		int fresh;
		while (j < bt->ntasks && strcmp(bt->tasks[j].id, w->id) == 0)
			j++;
		if (w->skip) {           /* queue entries without a task id */
			ack_queue_entries(rec, w, j - i);
			i = j;
			continue;
		}
		fresh = task_is_new(rec, w, j - i);
		fold_task(rec, w, j - i, tx);
		for (size_t k = i; k < j; k++)
			nq += bt->tasks[k].has_q;
		if (nq == 0)
			idset_add(rec->ends, rec_id_hash(w->id), rec->ends_seen);
		if (may_hold && w->rank == 1 && nq == 1 && w->has_q &&
		    w->queued_ms + rec->hold_ms > rec->results_clock &&
		    held_put(&rec->held, w) == 0) {
			i = j;
			continue;
		}
		write_task(rec, tx, w, fresh);
		rows++;
		ack_queue_entries(rec, w, j - i);
		i = j;
	}
	return rows;
}

/* The batch's events and memory snapshots become the transaction's; the
 * transaction's old buffers are the batch's to free. */
static void
swap_copy(struct pgcopy *a, struct pgcopy *b)
{
	struct pgcopy t = *a;

	*a = *b;
	*b = t;
}

int
rec_build_txn(struct sup_recorder *rec, struct rec_batch *bt)
{
	struct rec_txn *tx = rec->fill;
	int n = 0;

	pgcopy_reset(&tx->stage);
	pgcopy_reset(&tx->fresh);
	pgcopy_reset(&tx->events);
	pgcopy_reset(&tx->snaps);
	tx->attempts = tx->restage = 0;
	tx->keep = rec->keep;
	if (fold_batch(rec, bt, tx) > 0 || tx->stage.rows > 0)
		n++;
	pgcopy_end(&tx->stage);
	pgcopy_end(&tx->fresh);
	pgcopy_end(&bt->events);
	pgcopy_end(&bt->snaps);
	swap_copy(&tx->events, &bt->events);
	swap_copy(&tx->snaps, &bt->snaps);
	n += tx->events.rows > 0;
	n += tx->snaps.rows > 0;
	return tx->stage.oom || tx->fresh.oom || tx->events.oom ||
	    tx->snaps.oom ? -1 : n;
}
