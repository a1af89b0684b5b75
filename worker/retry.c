/*
 * retry.c - a task back into <p>:delayed (worker.h; docs/PROTOCOL.md,
 * delayed tasks and retries):
 *
 *   too early   a task read before its not_before (a client that XADDed
 *               it straight to a queue) is not run: its message, as read,
 *               goes into <p>:delayed at its not_before
 *   retry       a handler's error with attempts left, when the agent
 *               retries on error: attempt + 1 goes into <p>:delayed after
 *               a backoff with full jitter, and the failed attempt's
 *               result rides along for the recorder (<p>:scheduled's r)
 *
 * Either way, in the MULTI/EXEC that acknowledges the entry (publish.c):
 *
 *   ZADD <p>:delayed <due ms> "<queue>\n<task>"
 *   XADD <p>:scheduled * m "<queue>\n<task>" [r <result>]
 *   XACK <queue> workers <entry>                 (batch_send)
 *
 * so the task is either still pending to this worker or scheduled, never
 * both and never neither.  hived's promoter (supervisor/delay.c) moves it
 * back to its queue when due.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "rconn.h"
#include "worker.h"

/*
 * Is t (decoded) not due yet?  Then it goes back into <p>:delayed as it
 * is, and true.  Not on the broadcast stream: every worker reads each of
 * its entries, so a task put back there would run again everywhere; a
 * broadcast's not_before is not honoured (docs/PROTOCOL.md).
 */
bool
wrk_delay_early(struct wrk *w, struct wrk_task *t)
{
	const char *key = w->keys[t->key].name;
	uint64_t now = proto_now_ms();
	char sep = HIVE_DELAYED_SEP;

	if (t->t.not_before <= now || w->keys[t->key].broadcast)
		return false;
	msgpack_sbuffer_clear(&t->out);
	t->evlen = 0;
	t->rlen = 0;
	if (msgpack_sbuffer_write(&t->out, key, strlen(key)) != 0 ||
	    msgpack_sbuffer_write(&t->out, &sep, 1) != 0 ||
	    msgpack_sbuffer_write(&t->out, t->raw, t->rawlen) != 0)
		fatal("agent=%s task=%s delaying it", w->agent_inst, t->id);
	t->delay_due = t->t.not_before;
	t->out_kind = WRK_OUT_DELAY;
	log_info("agent=%s task=%s trace=%.32s not due for %" PRIu64 " ms: "
	    "into the delayed set", w->agent_inst, t->id, WRK_TRACE(t),
	    t->t.not_before - now);
	return true;
}

void
wrk_retry_hints(struct wrk_task *t, const struct wrk_answer *a)
{
	t->no_retry = a->no_retry;
	t->has_retry_after = a->has_retry_after;
	t->retry_after_ms = a->retry_after_ms;
}

/* What an exec handler that failed printed: a JSON object may carry the
 * same hints as a stream handler's error answer. */
void
wrk_retry_hints_exec(struct wrk_task *t, const char *out, size_t len)
{
	json_t *j, *ra;
	double sec;

	if (len == 0 || (j = json_loadb(out, len, 0, NULL)) == NULL)
		return;
	if (json_is_object(j)) {
		t->no_retry = json_is_false(json_object_get(j, "retryable"));
		ra = json_object_get(j, "retry_after");
		if (json_is_number(ra) && (sec = json_number_value(ra)) >= 0 &&
		    sec <= HIVE_BACKOFF_MAX / 1000.0) {
			t->has_retry_after = true;
			t->retry_after_ms = (uint64_t)(sec * 1000.0);
		}
	}
	json_decref(j);
}

/* A uniform random number in [0, n]. */
static uint64_t
rand_upto(uint64_t n)
{
	static uint64_t s;
	uint64_t r;

	if (n == 0)
		return 0;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		/* No entropy yet: splitmix64 of the clock will do. */
		r = (s += 0x9e3779b97f4a7c15ull) ^ proto_now_ms();
		r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9ull;
		r = (r ^ (r >> 27)) * 0x94d049bb133111ebull;
		r ^= r >> 31;
	}
	return n == UINT64_MAX ? r : r % (n + 1);
}

/*
 * The wait before attempt + 1: "full jitter" (AWS Architecture Blog,
 * "Exponential Backoff And Jitter"), uniform in [0, min(cap, base *
 * 2^(attempt - 1))], so that tasks that failed together (a provider's
 * outage) do not come back together; base and cap the task's
 * (backoff_ms, backoff_max_ms) or the agent's (retry_backoff,
 * retry_backoff_max).  A handler's retry_after replaces it.
 */
static uint64_t
retry_wait(const struct wrk *w, const struct wrk_task *t)
{
	uint64_t base = t->t.backoff_ms ? t->t.backoff_ms :
	    w->o.retry_backoff_ms;
	uint64_t cap = t->t.backoff_max_ms ? t->t.backoff_max_ms :
	    w->o.retry_backoff_max_ms;
	uint64_t exp = base;

	if (t->has_retry_after)
		return t->retry_after_ms;
	for (uint32_t i = 1; i < t->attempt && exp < cap; i++)
		exp *= 2;
	return rand_upto(exp < cap ? exp : cap);
}

/* The failed attempt's result (status error, code failed), for the
 * recorder: encoded into t->out, its length t->rlen. */
static int
retry_result(struct wrk *w, struct wrk_task *t, const char *error,
    uint64_t now)
{
	struct hive_result r;
	struct proto_err err;
	char text[HIVE_ERROR_MAX];

	memset(&r, 0, sizeof(r));
	snprintf(text, sizeof(text), "%s", error != NULL && *error ? error :
	    "handler reported an error without a text");
	wrk_text_fit(text, sizeof(text));
	r.v = HIVE_PROTO_VERSION;
	r.id = t->t.id;
	r.agent = HIVE_STR(w->agent_inst);
	r.host = HIVE_STR(w->o.host);
	r.status = HIVE_STATUS_ERROR;
	r.code = HIVE_CODE_FAILED;
	r.error = HIVE_STR(text);
	r.result.type = MSGPACK_OBJECT_NIL;
	r.memory.type = MSGPACK_OBJECT_NIL;
	r.attempt = t->attempt;
	r.started_ms = t->started_ms;
	r.finished_ms = now;
	r.workflow = t->t.workflow;
	r.traceparent = HIVE_STR(t->tp);
	if (proto_encode_result(&t->out, &r, &err) < 0)
		return -1;
	t->rlen = t->out.size;
	return 0;
}

bool
wrk_retry(struct wrk *w, struct wrk_task *t, const char *error)
{
	const char *key = w->keys[t->key].name;
	char sep = HIVE_DELAYED_SEP;
	struct hive_task next;
	struct proto_err err;
	uint64_t now = proto_now_ms(), wait;
	msgpack_sbuffer sb;

	if (!w->o.retry_on_error || t->no_retry || !t->decoded ||
	    t->attempt >= t->max_attempts || w->keys[t->key].broadcast)
		return false;
	wait = retry_wait(w, t);
	next = t->t;                 /* borrows t->raw, as t->t does */
	next.attempt = t->attempt + 1;
	next.not_before = now + wait;
	next.traceparent = HIVE_STR(t->tp);
	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_clear(&t->out);
	t->evlen = t->rlen = 0;
	if (proto_encode_task(&sb, &next, &err) < 0 ||
	    retry_result(w, t, error, now) < 0) {
		msgpack_sbuffer_destroy(&sb);
		msgpack_sbuffer_clear(&t->out);
		t->rlen = 0;
		return false;            /* the failure is final, as before */
	}
	if (msgpack_sbuffer_write(&t->out, key, strlen(key)) != 0 ||
	    msgpack_sbuffer_write(&t->out, &sep, 1) != 0 ||
	    msgpack_sbuffer_write(&t->out, sb.data, sb.size) != 0)
		fatal("agent=%s task=%s scheduling its retry", w->agent_inst,
		    t->id);
	msgpack_sbuffer_destroy(&sb);
	t->delay_due = next.not_before;
	t->out_kind = WRK_OUT_DELAY;
	log_info("agent=%s task=%s trace=%.32s attempt=%u failed, retry "
	    "in %" PRIu64 " ms (attempt %u of %u): %s", w->agent_inst, t->id,
	    WRK_TRACE(t), t->attempt, wait, t->attempt + 1, t->max_attempts,
	    error != NULL ? error : "");
	return true;
}

/* t's commands in the MULTI/EXEC (publish.c): see the top. */
void
wrk_delay_send(struct wrk *w, struct rconn *cmd, struct wrk_task *t)
{
	char delayed[HIVE_KEY_MAX], sched[HIVE_KEY_MAX], due[24];
	const char *member = t->out.data + t->rlen;
	size_t mlen = t->out.size - t->rlen;

	if (proto_key_named(delayed, sizeof(delayed), w->o.prefix,
	    "delayed") < 0 || proto_key_named(sched, sizeof(sched),
	    w->o.prefix, "scheduled") < 0)
		return;                  /* cannot be: the prefix is checked */
	snprintf(due, sizeof(due), "%" PRIu64, t->delay_due);
	rconn_cmd(cmd, NULL, NULL, "ZADD %s %s %b", delayed, due, member,
	    mlen);
	if (t->rlen > 0)
		rconn_cmd(cmd, NULL, NULL, "XADD %s * m %b r %b", sched, member,
		    mlen, t->out.data, t->rlen);
	else
		rconn_cmd(cmd, NULL, NULL, "XADD %s * m %b", sched, member,
		    mlen);
}
