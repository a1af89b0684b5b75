/*
 * record.h - hived's record: Redis streams into PostgreSQL, and what keeps
 * the streams honest.  The one header of record/ (a static library that
 * hived, the tests and the benchmarks link); it knows nothing of
 * supervision: supervisor/store.c is the bridge that starts these parts
 * for hived and feeds them its agents.
 *
 *   pg.c        one PostgreSQL connection on the libev loop (libpq
 *               non-blocking): a query queue, a session prelude, backoff
 *   migrate.c   the schema: versioned migrations under an advisory lock,
 *               and the SQL functions the other parts call
 *   scan.c      find the queue streams of an installation (SCAN, TYPE)
 *   pgcopy.c    rows in PostgreSQL's binary COPY format
 *   recorder.c  the recorder: every stream read in a consumer group and
 *               written to PostgreSQL, acknowledged only once committed;
 *               its parts (rec.h, private): rec_adopt.c rec_phase.c
 *               rec_entry.c rec_txn.c held.c idset.c
 *   reclaim.c   the reclaimer: tasks of workers that are gone taken back by
 *               liveness; streams trimmed below what every group has read
 *   coord.c     the workflow coordinator: depends_on, decided in PostgreSQL
 *   recover.c   recovery: tasks PostgreSQL accepted that Redis lost, put
 *               back on their queues
 *   tstats.c    task counters and histograms the recorder keeps as it
 *               records (hived's GET /metrics)
 *
 * Ownership: each part is a _new/_free pair on the caller's loop; a
 * struct sup_pg passed to one is lent and must outlive it.  Every part
 * that talks to Redis opens its own connection (common/rconn).
 */
#ifndef HIVE_RECORD_H
#define HIVE_RECORD_H

#include <ev.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "rconn.h"
#include "util.h"

/* ---- pg.c ---- */

/*
 * pg.c - one PostgreSQL connection driven by hived's libev loop.
 *
 * libpq in non-blocking mode: connecting (PQconnectStart/PQconnectPoll),
 * sending, flushing and reading all happen on ev_io readiness, so the loop
 * never waits for the server.  Queries are queued and run one at a time in
 * order.  When the connection is lost every queued query's callback gets
 * res == NULL (its caller decides whether to retry: the recorder does, it
 * acknowledged nothing) and the connection is retried on a timer with
 * backoff (100 ms doubling to 5 s), logged once per outage.
 *
 * Results are lent to the callback: it must not PQclear them.
 
 */
struct sup_pg;

/* res: the last result of the query (the first failing one if a statement
 * failed), or NULL when the connection was lost before it completed.
 * errmsg: NULL on success, else the server's or libpq's message. */
typedef void sup_pg_cb(struct sup_pg *pg, PGresult *res, const char *errmsg,
    void *arg);
/* up: 1 when the connection is established, 0 when it is lost. */
typedef void sup_pg_state_cb(struct sup_pg *pg, int up, void *arg);

struct sup_pg *sup_pg_new(struct ev_loop *loop, const char *conninfo,
    sup_pg_state_cb *state_cb, void *arg);
void sup_pg_free(struct sup_pg *pg);
int sup_pg_is_up(const struct sup_pg *pg);
/* Use conninfo from now on (a reload changed it): the connection there
 * is, if any, is closed (the query in flight fails as on a lost one, the
 * others wait) and a new one started at once.  -1: out of memory,
 * nothing changed. */
int sup_pg_reconnect(struct sup_pg *pg, const char *conninfo);

/*
 * Queue a query.  With nparams == 0 and no values it goes as a simple query
 * (several statements allowed); otherwise as PQsendQueryParams (values are
 * copied; lengths/formats may be NULL for text).  Returns 0, or -1 when the
 * query cannot even be queued (out of memory): cb is then not called.
 */
int sup_pg_query(struct sup_pg *pg, const char *sql, int nparams,
    const char *const *values, const int *lengths, const int *formats,
    sup_pg_cb *cb, void *arg);

/*
 * Queue a simple query holding n COPY ... FROM STDIN among its
 * statements, and the data to send for them (copied): data[i] (len[i]
 * bytes, text or binary as the statement says) is sent for the i-th.
 */
int sup_pg_query_copyv(struct sup_pg *pg, const char *sql, int n,
    const char *const *data, const size_t *len, sup_pg_cb *cb, void *arg);

/*
 * Statements that set up a session (temporary tables, prepared
 * statements): run first on every connection from now on, before the
 * queries that wait, and now if connected.  Their failure is logged; the
 * queries after them fail or not on their own.
 */
int sup_pg_prelude(struct sup_pg *pg, const char *sql);

/* The owner of arg is going away: its queued queries still run (a
 * transaction in flight must end) but their callbacks are not called. */
void sup_pg_forget(struct sup_pg *pg, void *arg);

/*
 * Schema migrations (migrate.c): bring the database to the newest schema
 * version under an advisory lock, so several hosts starting at once is
 * safe.  done(ok, arg) is called once: ok 1 on success, 0 on an SQL error
 * (logged).  A lost connection is retried.
 */
typedef void sup_migrate_cb(int ok, int version, void *arg);
int sup_migrate(struct sup_pg *pg, sup_migrate_cb *done, void *arg);
/* The same, up to a version (tests: a database as an older hived left
 * it). */
int sup_migrate_upto(struct sup_pg *pg, int version, sup_migrate_cb *done,
    void *arg);
/* The newest schema version this build knows. */
int sup_schema_version(void);

/* ---- pgcopy.c ---- */

/*
 * Rows for COPY ... FROM STDIN (FORMAT binary): the header before the
 * first row, pgcopy_end() the trailer.  A row is pgcopy_row(nfields)
 * and then exactly that many fields.  Out of memory is sticky in oom:
 * check it once when done.  Zero-initialised it is empty.
 */
struct pgcopy {
	struct hbuf b;               /* the data: b.p, b.len */
	size_t rows;
	int oom;
};

void pgcopy_reset(struct pgcopy *);       /* empty; keeps its memory */
void pgcopy_free(struct pgcopy *);
void pgcopy_row(struct pgcopy *, uint16_t nfields);
void pgcopy_end(struct pgcopy *);         /* the trailer, if it has rows */
void pgcopy_null(struct pgcopy *);
/* Text (s NULL: SQL NULL); NUL and invalid UTF-8 become U+FFFD. */
void pgcopy_text(struct pgcopy *, const char *s, size_t n);
void pgcopy_str(struct pgcopy *, const char *s);
/* jsonb from its text (NULL: SQL NULL), as pgcopy_text. */
void pgcopy_jsonb(struct pgcopy *, const char *s);
void pgcopy_bytes(struct pgcopy *, const void *s, size_t n);   /* bytea */
void pgcopy_char(struct pgcopy *, char v);                      /* "char" */
void pgcopy_int4(struct pgcopy *, uint32_t v);
void pgcopy_int8(struct pgcopy *, uint64_t v);
void pgcopy_float8(struct pgcopy *, double v);                  /* float8 */
/* Milliseconds since 1970 as a timestamptz; 0 is NULL. */
void pgcopy_time_ms(struct pgcopy *, uint64_t ms);

/* ---- scan.c ---- */

/*
 * scan.c - find the queue streams of an installation: every stream key
 * matching <p>:q:* or <p>:direct:* (SCAN ... TYPE stream, never KEYS, so
 * Redis is not blocked however many keys it holds).
 
 */
typedef void sup_scan_key_cb(const char *key, void *arg);
/* ok: 0 when the scan stopped early (connection lost or an error). */
typedef void sup_scan_done_cb(int ok, void *arg);

/* Calls key_cb once per key found (a key may be reported twice, as SCAN
 * does), then done_cb once.  -1 (no callback) when Redis is down. */
int sup_scan_queues(struct rconn *rc, const char *prefix,
    sup_scan_key_cb *key_cb, sup_scan_done_cb *done_cb, void *arg);

/* ---- live events: what the record tells hived ---- */

/*
 * A change the recorder or the coordinator made known (committed), for
 * hived's event bus (supervisor/events.c; store.c wires it to sup_event).
 * Strings are lent for the call; NULL or "" when unknown.
 *
 *   type "task":     id, state (queued, running, completed, failed,
 *                    dead), capability, agent, instance, workflow,
 *                    attempt, error
 *   type "dead":     id, state "added", capability, agent, code, error
 *                    (the reason)
 *   type "workflow": id, state (running, completed, failed), total,
 *                    completed, failed (-1 unknown)
 */
struct sup_rec_event {
	const char *type;
	const char *id;
	const char *state;
	const char *capability;
	const char *agent;
	unsigned instance;
	const char *workflow;
	unsigned attempt;
	const char *error;
	const char *code;
	long long total, completed, failed;
};
typedef void sup_rec_event_fn(const struct sup_rec_event *, void *arg);

/* ---- recorder.c ---- */

/*
 * recorder.c - the record: Redis streams into PostgreSQL.
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
	/* Counted into as entries are recorded (tstats.c); lent, outlives
	 * the recorder (a reload starts a new recorder, the counts go on).
	 * May be NULL. */
	struct sup_tstats *stats;
	/* Told each task state change and dead letter counted into stats
	 * (so only with stats), in the order tstats.c counts them.  May be
	 * NULL. */
	sup_rec_event_fn *event;
	void *event_arg;
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
	size_t backlog;              /* entries read, not yet written: held,
	                              * and in the batches in flight */
	uint64_t clock_ms;           /* the record is complete up to here:
	                              * results read up to it are committed
	                              * (Unix ms; now when caught up) */
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

/* ---- tstats.c ---- */

/*
 * tstats.c - what the recorder counts of the tasks it records, for
 * hived's GET /metrics (supervisor/metrics.c renders it).
 *
 * Each stream entry counts once, when the batch that holds it has
 * committed (or, holding only queue entries that wait for their result,
 * when it is done): a batch written again after a failure is counted at
 * its COMMIT, and an entry read again (Redis reconnected, the recorder
 * started again) is known by the hash of its stream and id.
 *
 *   queue entry, attempt 1     submitted{capability}
 *   task.started event         started{capability,agent}
 *   result                     started (if no task.started event of
 *                              that attempt was seen), then completed or
 *                              failed {capability,agent}; run time
 *                              (started -> finished) and queue wait
 *                              (queued -> started) by capability
 *   dead letter                dead{capability[,agent]}
 *   result with usage          its tokens and cost {capability,agent}
 *
 * The capability is the queue's: "<c>" for <p>:q:<c>:<prio>, "@<a>" for
 * <p>:q:@<a>:<prio> and <p>:direct:<a>/<n>; a result or an event gets it
 * from the queue entry of its task, remembered by task id until the
 * task ends (at most SUP_TSTATS_TASKS tasks at once; one beyond, or
 * queued before hived started, counts under "").  The agent is the
 * agent's name, without the instance.  At most SUP_TSTATS_LABELS label
 * sets (capabilities and capability/agent pairs) are kept: a count that
 * needs another is dropped and counted in dropped.
 */
#define SUP_TSTATS_LABELS  1000
#define SUP_TSTATS_TASKS   262144
#define SUP_HIST_LE        14       /* buckets with a bound; +Inf apart */

/* The buckets' upper bounds, seconds: .005 .01 ... 300. */
extern const double sup_hist_le[SUP_HIST_LE];

struct sup_hist {
	uint64_t bucket[SUP_HIST_LE + 1];  /* not cumulative; the last: +Inf */
	uint64_t count;
	double sum;                  /* seconds */
};

struct sup_tstats_cap {
	char *name;                  /* "" when unknown */
	uint64_t submitted;
	uint64_t dead;               /* dead letters that name no agent */
	struct sup_hist run, wait;
};

struct sup_tstats_pair {
	unsigned cap;                /* index in caps */
	char *agent;
	uint64_t started, completed, failed, dead;
	/* The usage results reported (docs/PROTOCOL.md, Usage): how many
	 * did, and the sums of what they said. */
	uint64_t usage_n, input_tokens, output_tokens;
	double cost;
};

struct tstats_priv;

struct sup_tstats {
	struct sup_tstats_cap *caps;     /* in the order first seen */
	unsigned ncaps;
	struct sup_tstats_pair *pairs;
	unsigned npairs;
	uint64_t dropped;            /* counts with no room for their labels */
	uint64_t counted;            /* entries counted */
	struct tstats_priv *p;
};

/* NULL when out of memory. */
struct sup_tstats *sup_tstats_new(void);
void sup_tstats_free(struct sup_tstats *);
/* Tasks remembered now (queued, not ended). */
size_t sup_tstats_tasks(const struct sup_tstats *);
/* Add v seconds to h. */
void sup_hist_observe(struct sup_hist *h, double v);

/* ---- reclaim.c ---- */

/*
 * reclaim.c - no task stays with a worker that is gone; no stream grows
 * without end.
 *
 * Liveness, not the clock, decides when a task is taken back from its
 * worker (a task that runs for an hour is not run twice for being slow):
 *
 *  - every worker keeps a key <p>:alive:<consumer> alive while it runs
 *    (refreshed every heartbeat, expires after a few seconds);
 *  - hived keeps <p>:host:<host> alive the same way;
 *  - a consumer with pending entries and no alive key is dead: its
 *    entries are claimed (XCLAIM, atomic: only one host gets each) and
 *    requeued with the attempt count, or dead-lettered past max attempts;
 *  - hived calls sup_reclaim_consumer() at once when it saw a worker die
 *    and will not start it again right away (backoff, quarantine, removed).
 *
 * The claim only takes entries idle for at least as long as the consumer
 * has been dead, so an entry that a freshly restarted worker of the same
 * name has just re-read is left with it.
 *
 * Trimming: a stream is cut (XTRIM MINID) below the oldest entry that some
 * consumer group has not acknowledged or not yet read, and never within
 * the retention time.
 
 */
struct sup_reclaim;

struct sup_reclaim_opts {
	const char *redis;
	const char *prefix;
	const char *host;
	unsigned alive_ttl_ms;       /* 5000: host key lifetime */
	unsigned scan_ms;            /* 2000: how often dead consumers are sought */
	unsigned trim_ms;            /* 30000: how often streams are trimmed */
	unsigned retain_ms;          /* 600000: entries younger are never trimmed */
	unsigned dead_retain_ms;     /* 604800000 (7 days): the same for
	                              * <prefix>:dead, where an operator looks
	                              * at dead letters and retries them */
	unsigned max_attempts;       /* 3: when neither task nor agent says */
	/* The max_attempts setting of an agent, 0 if unknown here. */
	unsigned (*agent_max_attempts)(const char *agent, void *arg);
	void *arg;
};

struct sup_reclaim_stats {
	uint64_t requeued;
	uint64_t dead;               /* past max attempts, or malformed */
	uint64_t trimmed;            /* XTRIM calls that removed something */
	uint64_t scans;
};

struct sup_reclaim *sup_reclaim_new(struct ev_loop *loop,
    const struct sup_reclaim_opts *opts);
void sup_reclaim_free(struct sup_reclaim *);
/* hived saw this worker ("agent/n@host") die at dead_ms (unix ms) and does
 * not restart it now: take its pending entries back. */
void sup_reclaim_consumer(struct sup_reclaim *, const char *consumer,
    uint64_t dead_ms);
/* Run one pass (dead consumers and trimming) now, e.g. from a test. */
void sup_reclaim_kick(struct sup_reclaim *);
void sup_reclaim_stats(const struct sup_reclaim *, struct sup_reclaim_stats *);

/* ---- coord.c ---- */

/*
 * coord.c - the workflow coordinator: tasks with depends_on.
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
struct sup_coord;

struct sup_coord_opts {
	const char *redis;           /* address (rconn_new) */
	const char *prefix;          /* key prefix */
	const char *host;            /* this host: consumer hived@<host> */
	/* Told each workflow recorded and ended; may be NULL. */
	sup_rec_event_fn *event;
	void *event_arg;
};

/* Starts at once (its own Redis connections); pg is lent and must outlive
 * it.  NULL on a bad address or out of memory. */
struct sup_coord *sup_coord_new(struct ev_loop *loop, struct sup_pg *pg,
    const struct sup_coord_opts *opts);
void sup_coord_free(struct sup_coord *co);
/* These workflow tasks reached a final state in PostgreSQL (committed). */
void sup_coord_ended(struct sup_coord *co, const char *const *ids, size_t n);

/* ---- recover.c ---- */

/*
 * recover.c - PostgreSQL rebuilds what Redis lost.
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
/* done(requeued, ok, arg): ok 0 when the pass could not finish. */
typedef void sup_recover_cb(unsigned requeued, int ok, void *arg);

/* Start a pass; -1 (done not called) when Redis is down or out of memory. */
int sup_recover(struct sup_pg *pg, struct rconn *rc, const char *prefix,
    const char *host, sup_recover_cb *done, void *arg);

#endif
