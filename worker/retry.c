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
