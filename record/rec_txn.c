/*
 * rec_txn.c - the transaction of one batch (rec.h): its statements, in
 * the order they run, and the COPY data each COPY takes.
 *
 *   BEGIN;
 *   COPY tasks FROM STDIN                 new tasks' rows (task_is_new)
 *   COPY hive_rec_stage FROM STDIN        the other rows, 't' and 'a'
 *   COPY hive_rec_stage FROM STDIN        new tasks' rows, after a unique
 *                                         violation (instead of the first)
 *   SELECT hive_rec_attempts();           superseded attempts
 *   SELECT hive_rec_apply();              the staged rows upserted
 *   COPY hive_rec_stage FROM STDIN        events ('e'), then
 *   SELECT hive_rec_events();             inserted
 *   COPY hive_rec_stage FROM STDIN        memory snapshots ('m'), then
 *   SELECT hive_rec_snapshots(keep);      inserted, the old ones pruned
 *   COMMIT;
 *
 * Every statement is there only when it has rows.  The functions are
 * the schema's (migrate.c, version 4).  The stage is one temporary table
 * of the session, emptied at each COMMIT, created by rec_txn_prelude:
 * one, because PostgreSQL empties every such table of a session at the
 * COMMIT of a transaction that used any (three made a staged batch cost
 * half a millisecond more).  Its kind says what a row is; the columns a
 * kind does not use are NULL.  No value is ever written into SQL text:
 * rows go as COPY data.
 */
#include "rec.h"

#include <stdio.h>
#include <stdlib.h>

#define TASK_COLUMNS \
	"id, stream, entry, state, attempts, agent, workflow, message, " \
	"result, error, created_at, queued_at, started_at, finished_at, " \
	"trace_id, input_tokens, output_tokens, cost, model"
/* events (at, kind, host, agent, task_id, pid, reason, source, workflow) */
#define EVENT_COLUMNS \
	"kind, created_at, event, host, agent, id, pid, reason, source, workflow"
/* memory_snapshots (agent, version, memory, task_id, host, created_at) */
#define SNAP_COLUMNS \
	"kind, agent, version, memory, id, host, created_at"

/* The first statement of every session of the connection: the stage.
 * kind 't': a task's row, 'a': an attempt it superseded (TASK_COLUMNS);
 * 'e': an event (EVENT_COLUMNS), 'm': a memory snapshot (SNAP_COLUMNS).
 * (Quietly: "already exists" when it runs again on a session, after a
 * batch failed.) */
const char rec_txn_prelude[] =
	"SET client_min_messages = warning;"
	"CREATE TEMP TABLE IF NOT EXISTS hive_rec_stage ("
	"kind \"char\" NOT NULL DEFAULT 't', id text, stream text, "
	"entry text, state text, attempts int, agent text, workflow text, "
	"message bytea, result jsonb, error text, created_at timestamptz, "
	"queued_at timestamptz, started_at timestamptz, finished_at timestamptz, "
	"event text, host text, pid int, reason text, source text, "
	"version bigint, memory jsonb, trace_id text, input_tokens bigint, "
	"output_tokens bigint, cost double precision, model text"
	") ON COMMIT DELETE ROWS;"
	"RESET client_min_messages;";

/* A COPY statement, and c's data as the transaction's next COPY data.
 * -1: out of memory. */
static int
copy_in(struct rec_txn *tx, int *n, const char *data[], size_t len[],
    const char *sql, const struct pgcopy *c)
{
	data[*n] = c->b.p;
	len[(*n)++] = c->b.len;
	return hbuf_puts(&tx->sql, sql);
}

int
rec_txn_sql(struct rec_txn *tx, const char *data[REC_TXN_COPIES],
    size_t len[REC_TXN_COPIES])
{
	struct hbuf *b = &tx->sql;
	int n = 0, direct = tx->fresh.rows > 0 && !tx->restage, oom = 0;

	hbuf_reset(b);
	oom |= hbuf_puts(b, "BEGIN;");
	if (direct)
		oom |= copy_in(tx, &n, data, len, "COPY tasks (" TASK_COLUMNS ") FROM "
		    "STDIN (FORMAT binary);", &tx->fresh);
	if (tx->stage.rows > 0 || (tx->fresh.rows > 0 && !direct)) {
		if (tx->stage.rows > 0)
			oom |= copy_in(tx, &n, data, len, "COPY hive_rec_stage (kind, "
			    TASK_COLUMNS ") FROM STDIN (FORMAT binary);",
			    &tx->stage);
		if (tx->fresh.rows > 0 && !direct)
			oom |= copy_in(tx, &n, data, len, "COPY hive_rec_stage ("
			    TASK_COLUMNS ") FROM STDIN (FORMAT binary);",
			    &tx->fresh);
		if (tx->attempts)
			oom |= hbuf_puts(b, "SELECT hive_rec_attempts();");
		oom |= hbuf_puts(b, "SELECT hive_rec_apply();");
	}
	if (tx->events.rows > 0) {
		oom |= copy_in(tx, &n, data, len, "COPY hive_rec_stage ("
		    EVENT_COLUMNS ") FROM STDIN (FORMAT binary);", &tx->events);
		oom |= hbuf_puts(b, "SELECT hive_rec_events();");
	}
	if (tx->snaps.rows > 0) {
		oom |= copy_in(tx, &n, data, len, "COPY hive_rec_stage ("
		    SNAP_COLUMNS ") FROM STDIN (FORMAT binary);", &tx->snaps);
		oom |= hbuf_printf(b, "SELECT hive_rec_snapshots(%u);", tx->keep);
	}
	oom |= hbuf_puts(b, "COMMIT;");
	if (oom || hbuf_putc(b, '\0') < 0)
		return -1;
	return n;
}

/* A task the coordinator hears of after COMMIT (out of memory: its sweep
 * finds it). */
void
rec_txn_push_ended(struct rec_txn *tx, const char *id)
{
	char *c;

	if (tx->nended == tx->capended) {
		size_t cap = tx->capended ? tx->capended * 2 : 64;
		char **v = realloc(tx->ended, cap * sizeof(*v));
		if (v == NULL)
			return;
		tx->ended = v;
		tx->capended = cap;
	}
	if ((c = strdup(id)) != NULL)
		tx->ended[tx->nended++] = c;
}

void
rec_txn_clear_ended(struct rec_txn *tx)
{
	for (size_t i = 0; i < tx->nended; i++)
		free(tx->ended[i]);
	tx->nended = 0;
}

void
rec_txn_free(struct rec_txn *tx)
{
	hbuf_free(&tx->sql);
	pgcopy_free(&tx->stage);
	pgcopy_free(&tx->fresh);
	pgcopy_free(&tx->events);
	pgcopy_free(&tx->snaps);
	free(tx->acks);
	free(tx->ackids);
	hbuf_free(&tx->ackcmd);
	rec_txn_clear_ended(tx);
	free(tx->ended);
	free(tx->stats);
}
