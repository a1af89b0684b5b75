/*
 * recorder.h - the record: Redis streams into PostgreSQL.
 *
 * The recorder reads the queue streams (<p>:q:*, <p>:direct:*), results,
 * events and dead letters in its own consumer group ("recorder"; one
 * consumer per host, so several hosts share the work) and writes each batch
 * in ONE transaction.  It acknowledges an entry only after the transaction
 * that holds it committed, so nothing read is lost when hived, Redis or
 * PostgreSQL dies in between; and every row it writes is keyed (a task by
 * its id, moving only forward; an event by the stream entry it came
 * from), so a batch recorded twice (COMMIT, then death before XACK)
 * changes nothing the second time.
 *
 * PostgreSQL down: the batch waits and is retried as it is; Redis keeps the
 * entries pending meanwhile.  Nothing is dropped.  A host that dies leaves
 * entries pending to its consumer: the recorders of the others claim them
 * once its heartbeat (<p>:host:<host>) has expired, and record them.
 */
#ifndef HIVE_RECORDER_H
#define HIVE_RECORDER_H

#include <ev.h>
#include <stdint.h>

#include "pg.h"

struct sup_recorder;

struct sup_recorder_opts {
	const char *redis;           /* address (rconn_new) */
	const char *prefix;          /* key prefix */
	const char *host;            /* this host: the consumer name */
	unsigned snapshots_keep;     /* memory snapshots kept per agent */
	unsigned batch;              /* entries per stream per read (256) */
	unsigned hold_ms;            /* a queue entry waits for its result (1000) */
	/* Called after each COMMIT with the tasks it moved to a final state
	 * that belong to a workflow, or are dead (a dead letter does not
	 * name the workflow): the coordinator's cue.  May be NULL. */
	void (*ended)(const char *const *ids, size_t n, void *arg);
	void *ended_arg;
};

struct sup_recorder_stats {
	uint64_t batches;            /* transactions committed */
	uint64_t entries;            /* stream entries recorded and acked */
	uint64_t retries;            /* batches sent again after a failure */
	uint64_t restaged;           /* ... after a row copied as new was not */
	uint64_t staged;             /* task rows upserted, not copied as new */
	uint64_t flushed;            /* held entries written as Redis went away */
	unsigned streams;            /* streams being read */
	int caught_up;               /* the last read gave no full batch */
	size_t held;                 /* queue entries waiting for their result */
	size_t count;                /* entries per stream of the last read */
	uint64_t resets;             /* streams vanished (Redis lost data?) */
	uint64_t adopted;            /* entries taken over from hosts gone */
};

/* Starts reading at once (its own Redis connection); pg is lent and must
 * outlive the recorder.  NULL on a bad address or out of memory. */
struct sup_recorder *sup_recorder_new(struct ev_loop *loop, struct sup_pg *pg,
    const struct sup_recorder_opts *opts);
void sup_recorder_free(struct sup_recorder *rec);
/* Record this queue stream (hived names its agents' queues at once, so
 * they do not wait for the periodic scan that finds the others); it is
 * created if missing, as its workers would. */
void sup_recorder_add_queue(struct sup_recorder *rec, const char *key);
/* hived stops: hold nothing more, write what is held and what a last read
 * (not blocking) finds, then call done(arg), once: when a read found
 * nothing and nothing is being written, or, Redis being down, once what
 * was held is written.  The recorder goes on until freed. */
void sup_recorder_finish(struct sup_recorder *rec, void (*done)(void *),
    void *arg);
void sup_recorder_stats(const struct sup_recorder *rec,
    struct sup_recorder_stats *out);

#endif
