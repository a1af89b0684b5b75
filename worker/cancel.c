/*
 * cancel.c - cancels and deadlines in the worker (docs/PROTOCOL.md,
 * "Cancel and deadlines").
 *
 * A cancel is a key, <p>:cancel:<task id>, that any client SETs (with a
 * TTL).  The worker reads those keys with one MGET, never one command
 * per task:
 *
 *   - the gate: tasks pulled (or re-read from the pending list) are not
 *     started before one MGET for all of them has answered.  The backlog
 *     waits one round trip per batch, not per task; a task whose key
 *     exists ends cancelled without running.
 *   - the poll: every WRK_CANCEL_POLL_MS while tasks are held, one MGET
 *     for every task held (waiting or running) that is not being
 *     cancelled already; the same pass ends tasks past their deadline.
 *
 * A running task that is cancelled: stream mode writes {"cancel":"ID"}
 * to the handler; exec mode sends TERM to the task's process group.
 * After cancel_grace, if it has not ended, exec mode KILLs the group and
 * stream mode the handler's group (its other tasks are retried, as after
 * a timeout).  Whatever ends it then, except an ok answer, is published
 * as cancelled: the worker decides in one place (wrk_cancel_status,
 * called by task.c's finish), so one attempt has one result.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker.h"

#define WHY_CANCEL   "cancelled"
#define WHY_DEADLINE "deadline passed"
#define WHY_EXPIRED  "expired: deadline passed before it started"

/* An MGET in flight: the ids of the tasks it asked about, in order. */
struct cancel_req {
	struct wrk *w;
	uint32_t seq;                /* gate: the tasks' cancel_seq, else 0 */
	int n;
	char (*ids)[HIVE_ID_MAX + 1];
};

/* End a task of the backlog without running it. */
static void
end_waiting(struct wrk *w, struct wrk_task *t, enum hive_status s,
    const char *why)
{
	TAILQ_REMOVE(&w->backlog, t, q);
	w->nbacklog--;
	TAILQ_INSERT_TAIL(&w->running, t, q);
	w->nrunning++;
	log_info("agent=%s task=%s trace=%.32s %s without running",
	    w->agent_inst, t->id, WRK_TRACE(t), s == HIVE_STATUS_EXPIRED ?
	    "expired" : "cancelled");
	wrk_task_finish(w, t, s, NULL, why, NULL);
}

/* Tell a running task to stop; the kill follows after the grace. */
static void
cancel_running(struct wrk *w, struct wrk_task *t, const char *why)
{
	if (t->cancel != WRK_CANCEL_NONE)
		return;
	t->cancel = WRK_CANCEL_ASKED;
	t->cancel_why = why;
	t->cancel_kill_due = wrk_now() + w->o.cancel_grace_ms;
	log_info("agent=%s task=%s trace=%.32s %s, stopping it",
	    w->agent_inst, t->id, WRK_TRACE(t), why);
	if (w->o.mode == WRK_MODE_STREAM)
		wrk_stream_cancel(w, t);
	else if (t->proc != NULL)
		kill(-t->proc->pid, SIGTERM);
	wrk_schedule(w);
}

/* Every task held with this id (the same id may be held twice: a task
 * submitted twice, or on a queue and the broadcast stream). */
static void
cancel_id(struct wrk *w, const char *id)
{
	struct wrk_task *t, *next;

	for (t = TAILQ_FIRST(&w->backlog); t != NULL; t = next) {
		next = TAILQ_NEXT(t, q);
		if (strcmp(t->id, id) == 0)
			end_waiting(w, t, HIVE_STATUS_CANCELLED, WHY_CANCEL);
	}
	TAILQ_FOREACH(t, &w->running, q)
		if (strcmp(t->id, id) == 0)
			cancel_running(w, t, WHY_CANCEL);
}

static void
cancel_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct cancel_req *rq = priv;
	struct wrk *w = rq->w;
	redisReply *r = reply;
	struct wrk_task *t, *next;
	bool ok;

	(void)ac;
	ok = r != NULL && r->type == REDIS_REPLY_ARRAY &&
	    r->elements == (size_t)rq->n;
	if (r != NULL && !ok)
		log_warnx("agent=%s reading cancel keys: %s", w->agent_inst,
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	for (int i = 0; ok && i < rq->n; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			cancel_id(w, rq->ids[i]);
	if (rq->seq != 0) {
		/* The gate: checked now, or asked again (Redis lost). */
		for (t = TAILQ_FIRST(&w->backlog); t != NULL; t = next) {
			next = TAILQ_NEXT(t, q);
			if (t->cancel_seq != rq->seq)
				continue;
			t->cancel_seq = 0;
			t->cancel_checked = ok;
		}
		w->cancel.gate_busy = false;
	} else
		w->cancel.poll_busy = false;
	free(rq->ids);
	free(rq);
	if (r != NULL)
		wrk_dispatch(w);
	wrk_schedule(w);
}

/* One MGET of the cancel keys of n tasks; their ids are in rq. */
static int
cancel_send(struct wrk *w, struct cancel_req *rq)
{
	const char **argv;
	size_t *lens;
	char *keys;
	int rc = -1;

	argv = calloc((size_t)rq->n + 1, sizeof(*argv));
	lens = calloc((size_t)rq->n + 1, sizeof(*lens));
	keys = malloc((size_t)rq->n * HIVE_KEY_MAX);
	if (argv == NULL || lens == NULL || keys == NULL)
		fatal("agent=%s asking for cancels", w->agent_inst);
	argv[0] = "MGET";
	lens[0] = 4;
	for (int i = 0; i < rq->n; i++) {
		char *k = keys + (size_t)i * HIVE_KEY_MAX;
		int n = proto_key_cancel(k, HIVE_KEY_MAX, w->o.prefix,
		    rq->ids[i]);

		if (n < 0)      /* an id the codec took: cannot be */
			n = snprintf(k, HIVE_KEY_MAX, "%s:cancel:?",
			    w->o.prefix);
		argv[i + 1] = k;
		lens[i + 1] = (size_t)n;
	}
	rc = rconn_argv(wrk_redis_conn(w, WRK_CONN_CMD), cancel_reply, rq,
	    rq->n + 1, argv, lens);
	free(argv);
	free(lens);
	free(keys);
	return rc;
}

static struct cancel_req *
req_new(struct wrk *w, int max)
{
	struct cancel_req *rq;

	if ((rq = calloc(1, sizeof(*rq))) == NULL ||
	    (rq->ids = calloc((size_t)(max > 0 ? max : 1),
	    sizeof(*rq->ids))) == NULL)
		fatal("agent=%s asking for cancels", w->agent_inst);
	rq->w = w;
	return rq;
}

static void
req_free(struct cancel_req *rq)
{
	free(rq->ids);
	free(rq);
}

/* Ask about every unchecked task of the backlog, in one MGET. */
static void
gate_send(struct wrk *w)
{
	struct cancel_req *rq;
	struct wrk_task *t;

	if (w->cancel.gate_busy || w->redis.state != WRK_REDIS_UP)
		return;
	rq = req_new(w, w->nbacklog);
	if (++w->cancel.seq == 0)
		w->cancel.seq = 1;
	rq->seq = w->cancel.seq;
	TAILQ_FOREACH(t, &w->backlog, q) {
		if (t->cancel_checked || t->cancel_seq != 0 ||
		    rq->n >= w->nbacklog)
			continue;
		t->cancel_seq = rq->seq;
		snprintf(rq->ids[rq->n++], HIVE_ID_MAX + 1, "%s", t->id);
	}
	if (rq->n == 0) {
		req_free(rq);
		return;
	}
	if (cancel_send(w, rq) == -1) {
		TAILQ_FOREACH(t, &w->backlog, q)
			if (t->cancel_seq == rq->seq)
				t->cancel_seq = 0;
		req_free(rq);
		return;
	}
	w->cancel.gate_busy = true;
	/* This check is fresh: the next poll is a period away. */
	if (w->cancel.poll_due == 0)
		w->cancel.poll_due = wrk_now() + WRK_CANCEL_POLL_MS;
}

static bool
past_deadline(const struct wrk_task *t, uint64_t now_ms)
{
	return t->decoded && t->t.deadline != 0 && now_ms >= t->t.deadline;
}

int
wrk_cancel_gate(struct wrk *w, struct wrk_task *t)
{
	if (!t->decoded)
		return WRK_GATE_GO;
	if (t->t.deadline != 0 && past_deadline(t, proto_now_ms())) {
		end_waiting(w, t, HIVE_STATUS_EXPIRED, WHY_EXPIRED);
		return WRK_GATE_ENDED;
	}
	if (t->cancel_checked)
		return WRK_GATE_GO;
	gate_send(w);
	return WRK_GATE_WAIT;
}

/* The poll: cancel keys of every task held, deadlines, kills due. */
void
wrk_cancel_cron(struct wrk *w, uint64_t now)
{
	struct wrk_task_list *lists[] = { &w->backlog, &w->running };
	struct wrk_task *t, *next;
	struct cancel_req *rq;
	uint64_t ms = proto_now_ms();

	for (t = TAILQ_FIRST(&w->running); t != NULL; t = next) {
		next = TAILQ_NEXT(t, q);
		if (t->cancel == WRK_CANCEL_NONE && past_deadline(t, ms))
			cancel_running(w, t, WHY_DEADLINE);
		if (t->cancel != WRK_CANCEL_ASKED || t->cancel_kill_due > now)
			continue;
		t->cancel = WRK_CANCEL_KILLED;
		log_warnx("agent=%s task=%s trace=%.32s still running %u ms "
		    "after its cancel, killing it", w->agent_inst, t->id,
		    WRK_TRACE(t), w->o.cancel_grace_ms);
		if (w->o.mode == WRK_MODE_STREAM)
			wrk_stream_abort(w);
		else if (t->proc != NULL)
			kill(-t->proc->pid, SIGKILL);
	}
	for (t = TAILQ_FIRST(&w->backlog); t != NULL; t = next) {
		next = TAILQ_NEXT(t, q);
		if (t->cancel_checked && past_deadline(t, ms))
			end_waiting(w, t, HIVE_STATUS_EXPIRED, WHY_EXPIRED);
	}
	gate_send(w);
	if (w->cancel.poll_due > now)
		return;
	w->cancel.poll_due = now + WRK_CANCEL_POLL_MS;
	if (w->nbacklog + w->nrunning == 0)
		w->cancel.poll_due = 0;
	if (w->cancel.poll_busy || w->redis.state != WRK_REDIS_UP ||
	    w->nbacklog + w->nrunning == 0)
		return;
	rq = req_new(w, w->nbacklog + w->nrunning);
	for (size_t l = 0; l < 2; l++)
		TAILQ_FOREACH(t, lists[l], q)
			if (t->decoded && t->cancel == WRK_CANCEL_NONE &&
			    t->cancel_checked &&
			    rq->n < w->nbacklog + w->nrunning)
				snprintf(rq->ids[rq->n++], HIVE_ID_MAX + 1,
				    "%s", t->id);
	if (rq->n == 0 || cancel_send(w, rq) == -1) {
		req_free(rq);
		return;
	}
	w->cancel.poll_busy = true;
}

uint64_t
wrk_cancel_next_due(const struct wrk *w)
{
	const struct wrk_task *t;
	uint64_t due = 0;

	if (w->nbacklog + w->nrunning > 0 && w->redis.state == WRK_REDIS_UP)
		due = w->cancel.poll_due ? w->cancel.poll_due : wrk_now();
	TAILQ_FOREACH(t, &w->running, q)
		if (t->cancel == WRK_CANCEL_ASKED &&
		    (!due || t->cancel_kill_due < due))
			due = t->cancel_kill_due;
	return due;
}

void
wrk_cancel_status(const struct wrk_task *t, enum hive_status *status,
    enum hive_code *code, const char **error)
{
	/* An ok answer after the cancel: the task was done first. */
	if (t->cancel == WRK_CANCEL_NONE || *status == HIVE_STATUS_OK)
		return;
	*status = HIVE_STATUS_CANCELLED;
	*code = HIVE_CODE_NONE;
	*error = t->cancel_why != NULL ? t->cancel_why : WHY_CANCEL;
}

bool
wrk_cancel_retry(struct wrk *w, struct wrk_task *t)
{
	if (t->cancel == WRK_CANCEL_NONE)
		return false;
	wrk_task_finish(w, t, HIVE_STATUS_CANCELLED, NULL, t->cancel_why,
	    NULL);
	return true;
}
