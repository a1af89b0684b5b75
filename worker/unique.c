/*
 * unique.c - a unique task's lock released with its end (docs/PROTOCOL.md,
 * Unique tasks).  Called by publish.c inside the MULTI/EXEC that
 * publishes the task's result or dead letter, so the lock goes exactly
 * when the task is seen to end: a batch lost with the connection is sent
 * again, lock release and all; a retry (the handler died, another
 * attempt follows) publishes nothing and keeps the lock.
 *
 * The release is a compare-and-delete (proto_unique_release_lua): a lock
 * that names another task (this one's expired, and another took the
 * key) is left alone.  With a window (unique_ms) the lock is kept that
 * long instead of deleted.  A task that did not decode is read for its
 * unique_key alone (proto_peek_unique), so that a malformed unique task
 * does not hold its key until the safety TTL.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "rconn.h"
#include "worker.h"

void
wrk_unique_release(struct wrk *w, struct rconn *cmd, const struct wrk_task *t)
{
	char key[HIVE_ID_MAX + 1], lock[HIVE_KEY_MAX], ms[24];
	uint64_t window = 0;

	if (t->id[0] == '\0')
		return;                  /* no id: nothing can name it */
	if (t->decoded) {
		if (t->t.unique_key.len == 0)
			return;
		snprintf(key, sizeof(key), "%.*s", (int)t->t.unique_key.len,
		    t->t.unique_key.ptr);
		window = t->t.unique_ms;
	} else if (t->raw == NULL || proto_peek_unique(t->raw, t->rawlen, key,
	    sizeof(key), &window) < 0)
		return;
	if (proto_key_unique(lock, sizeof(lock), w->o.prefix, key) < 0)
		return;
	snprintf(ms, sizeof(ms), "%" PRIu64, window);
	rconn_cmd(cmd, NULL, NULL, "EVAL %s 1 %s %s %s",
	    proto_unique_release_lua, lock, t->id, ms);
}
