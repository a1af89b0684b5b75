/*
 * recover.h - PostgreSQL rebuilds what Redis lost.
 *
 * After Redis restarted without persistence, or failed over to a replica
 * that had not seen the last writes, tasks that PostgreSQL accepted may be
 * gone from their queues.  A recovery pass lists the tasks PostgreSQL
 * holds as unfinished, checks that each one's queue entry still exists, and
 * puts back (XADD, the message as it was submitted) those that are gone.
 *
 * It must only run while the recorder is caught up: then every result that
 * Redis still holds is in PostgreSQL, and an unfinished task whose entry is
 * missing was lost, not finished.  Entries are trimmed only after they are
 * acknowledged by every group and older than the retention time, so a
 * missing entry of an unfinished task means data loss.  One host at a time
 * runs it (a lock key in Redis).
 */
#ifndef HIVE_RECOVER_H
#define HIVE_RECOVER_H

#include "pg.h"
#include "rconn.h"

/* done(requeued, ok, arg): ok 0 when the pass could not finish. */
typedef void sup_recover_cb(unsigned requeued, int ok, void *arg);

/* Start a pass; -1 (done not called) when Redis is down or out of memory. */
int sup_recover(struct sup_pg *pg, struct rconn *rc, const char *prefix,
    const char *host, sup_recover_cb *done, void *arg);

#endif
