/*
 * coord.h - the workflow coordinator: tasks with depends_on.
 *
 * A client submits a workflow (proto: struct hive_workflow) to
 * <p>:workflows.  The coordinator of every hived that has PostgreSQL
 * reads that stream in one consumer group ("coordinator", a consumer per
 * host), records the workflow and all its tasks in one statement
 * (hive_wf_submit: tasks 'waiting', edges in workflow_edges), and then
 * asks PostgreSQL what may run (hive_wf_release):
 *
 *   run   every task it depends on completed: it goes on its queue with
 *         its parents' results (task.parents), state 'queued'
 *   dead  one of them failed or is dead: it never runs; a dead letter
 *         and an error result say why, and its own dependents follow
 *   end   every task of the workflow ended: event workflow.completed or
 *         workflow.failed
 *
 * It asks after each submission, after each recorder batch that ended
 * workflow tasks (sup_coord_ended, called once the batch committed), and
 * every SUP_COORD_SWEEP seconds for everything (what a crash between a
 * COMMIT and an XADD left behind; a submission entry claimed from a host
 * that died).  PostgreSQL decides, in statements that each see the other
 * hosts' commits: two hosts never both release one task.  The queue
 * entry of a released task is written to its row as soon as Redis gave
 * it; a task released 10 s ago without one (hived died between COMMIT and
 * XADD, or Redis was down) is sent again by the sweep: delivery stays at
 * least once, the task id is the idempotency key.
 */
#ifndef HIVE_COORD_H
#define HIVE_COORD_H

#include <ev.h>
#include <stddef.h>

#include "pg.h"

struct sup_coord;

struct sup_coord_opts {
	const char *redis;           /* address (rconn_new) */
	const char *prefix;          /* key prefix */
	const char *host;            /* this host: consumer hived@<host> */
};

/* Starts at once (its own Redis connections); pg is lent and must outlive
 * it.  NULL on a bad address or out of memory. */
struct sup_coord *sup_coord_new(struct ev_loop *loop, struct sup_pg *pg,
    const struct sup_coord_opts *opts);
void sup_coord_free(struct sup_coord *co);
/* These workflow tasks reached a final state in PostgreSQL (committed). */
void sup_coord_ended(struct sup_coord *co, const char *const *ids, size_t n);

#endif
