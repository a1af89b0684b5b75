/*
 * rec.h - the recorder's parts, private to record/ (record.h has the
 * map and the recorder's API).  The recorder is one loop, read -> fold
 * -> write -> acknowledge, over these:
 *
 *   recorder.c   the loop, its Redis side (streams, groups, XACK in RESP)
 *   rec_adopt.c  entries pending to the recorder of a host that is gone,
 *                taken over
 *   rec_phase.c  what the loop has in flight, and its transitions (pure)
 *   rec_entry.c  stream entries decoded into rows; a batch folded into
 *                one row per task (fold_task, state_wins, task_is_new)
 *   rec_txn.c    a batch's transaction: its COPY data and statements
 *   held.c       queue entries held for their result: a FIFO with an
 *                open-addressing index
 *   idset.c      a set of id hashes in two generations
 *   tstats.c     what each entry counts (record.h), once its batch is done
 */
#ifndef HIVE_REC_H
#define HIVE_REC_H

#include <string.h>

#include "hive_proto.h"
#include "record.h"

#define REC_GROUP        HIVE_GROUP_RECORDER
#define REC_MAX_STREAMS  1024
#define REC_ERR_RETRY    5.0     /* seconds before an SQL error is retried */

/* Queue entries younger than this (behind what the results stream has
 * been read up to) wait for their result, to be written in one row with
 * it: a task that ends within it costs one INSERT, not an INSERT and an
 * UPDATE, which costs PostgreSQL twice to three times as much.  Its entry
 * stays pending in Redis meanwhile, and should Redis go away, the held
 * ones are written at once (rec_flush).  A second: what Redis with
 * appendfsync everysec may lose anyway. */
#define REC_HOLD_MS      1000          /* sup_recorder_opts.hold_ms */
#define REC_HOLD_MAX     65536         /* entries (a power of 2) */
#define REC_HOLD_BYTES   (64u << 20)   /* their messages */

enum rec_kind { REC_QUEUE, REC_RESULTS, REC_EVENTS, REC_DEAD };

struct rec_stream {
	char *key;
	enum rec_kind kind;
	int make;                    /* created if missing (not a scanned queue) */
};

/* One stream entry in the batch: what to XACK after COMMIT. */
struct rec_ack {
	int stream;
	char id[HIVE_ENTRY_ID_MAX + 1];
};

/* The state of one task that a batch writes to its tasks row. */
struct rec_task {
	char id[HIVE_ID_MAX + 1];
	int rank;                    /* 1 queued, 2 running, 3 final */
	const char *state;
	uint32_t attempts;
	char *agent;
	char *workflow;
	char *result;                /* JSON text or NULL */
	char *error;
	char trace[HIVE_TRACE_ID_LEN + 1];  /* its trace id, "" unknown */
	struct hive_usage usage;     /* a result's (model unused: below) */
	char *model;                 /* usage.model, NUL-terminated, or NULL */
	uint64_t created_ms, queued_ms, started_ms, finished_ms;
	/* This one's own queue entry: acknowledged once it is written. */
	int has_q;
	int q_stream;
	char q_entry[HIVE_ENTRY_ID_MAX + 1];
	int reread;                  /* read again from our pending entries */
	char *own_msg;               /* a held task's copy of its message */
	int skip;                    /* folded into another, or held */
	/* From the newest queue entry: what recovery puts back. */
	int has_msg;
	uint32_t msg_attempt;
	int msg_stream;
	char msg_entry[HIVE_ENTRY_ID_MAX + 1];
	const char *msg;             /* borrowed from the reply */
	size_t msglen;
};

/* What one entry counts (tstats.c), kept with its batch until the
 * batch is done (rec_ack_all). */
enum rec_sk { REC_SK_QUEUED, REC_SK_STARTED, REC_SK_OK, REC_SK_ERROR,
    REC_SK_DEAD };

struct rec_stat {
	enum rec_sk kind;
	uint32_t attempt;
	uint64_t entry;              /* hash of the stream's key and entry id */
	uint64_t task;               /* rec_id_hash of the task id; 0: none */
	uint64_t t0;                 /* QUEUED: queued; STARTED, OK, ERROR:
	                              * started (0: unknown) */
	uint64_t t1;                 /* OK, ERROR: finished */
	char cap[HIVE_NAME_MAX + 2]; /* QUEUED, DEAD: the queue's capability
	                              * ("" unknown; cut to fit) */
	char agent[HIVE_NAME_MAX + 1];   /* the agent's name, "" unknown */
	/* For the live events (record.h, sup_rec_event); "" unknown. */
	unsigned instance;           /* of the agent, 0 unknown */
	enum hive_code code;         /* DEAD */
	char id[HIVE_ID_MAX + 1];    /* the task id */
	char workflow[HIVE_ID_MAX + 1];
	char error[160];             /* ERROR: its error; DEAD: the reason
	                              * (cut to fit) */
	struct hive_usage usage;     /* OK, ERROR: the result's (no model) */
};

/* One read's entries, decoded (rec_entry.c). */
struct rec_batch {
	struct rec_task *tasks;
	size_t ntasks, captasks;
	struct pgcopy events;        /* the stage's rows of events */
	struct pgcopy snaps;         /* ... and of memory snapshots */
};

/* The hash of a task id: FNV-1a, never 0 (idset.c's empty slot). */
static inline uint64_t
rec_id_hash(const char *id)
{
	uint64_t h = hash_fnv1a(id, strlen(id));

	return h ? h : 1;
}

/* ---- idset.c ---- */

/* A set of hashes (not 0) that holds at least the last max added: when
 * a generation of max is full, the older one is forgotten.  stamp: the
 * caller's mark of when it added (the newest of a generation is kept);
 * idset_forgotten() is the newest stamp of those forgotten so far. */
struct idset;
struct idset *idset_new(size_t max);
void idset_free(struct idset *);
int idset_has(const struct idset *, uint64_t h);
void idset_add(struct idset *, uint64_t h, uint64_t stamp);
uint64_t idset_forgotten(const struct idset *);

/* ---- held.c ---- */

/*
 * Queue entries waiting for their result (REC_HOLD_MS): q[head..n) in the
 * order they were held (t NULL: taken), each task in an allocation of its
 * own beside its id's hash, and an open-addressing index of them (index
 * in q + 1; 0 empty, HELD_TOMB taken).  Growing, compacting and indexing
 * again move the 16-byte q entries and read their hashes, never the
 * tasks: a burst holds tens of thousands.
 */
#define HELD_TOMB        UINT32_MAX

struct rec_hq {
	struct rec_task *t;          /* NULL: taken */
	uint64_t hash;               /* rec_id_hash(t->id) */
};

struct rec_held {
	struct rec_hq *q;
	size_t head, n, cap;
	uint32_t *slot;
	size_t nslots;               /* a power of 2, at least 2 * cap */
	size_t live;                 /* held, not taken */
	size_t tombs;                /* HELD_TOMB slots */
	size_t bytes;                /* their messages */
	size_t max, max_bytes;       /* held at most (REC_HOLD_MAX, _BYTES) */
};

void held_init(struct rec_held *, size_t max, size_t max_bytes);
/* Move w to the held ones; it keeps what it owns, and a message that is
 * only borrowed (from a read's reply) is copied; w is left skipped.
 * -1: not held (too many, out of memory, its id held already). */
int held_put(struct rec_held *, struct rec_task *w);
/* The held ones that join batch bt: those whose id is among its tasks,
 * and those held since queued_ms + hold_ms <= clock_ms; all of them if
 * all.  Out of memory: the rest stay held. */
void held_to_batch(struct rec_held *, struct rec_batch *bt, int all,
    uint64_t hold_ms, uint64_t clock_ms);
void held_free(struct rec_held *);

/* ---- rec_phase.c ---- */

/*
 * What the loop has in flight: one read of Redis at most, one batch
 * written to PostgreSQL at most, and at most one batch prepared behind
 * it (folded while the first is written, sent when it committed).
 */
enum rec_phase {
	REC_IDLE,                    /* nothing */
	REC_READING,                 /* a read */
	REC_WRITING,                 /* a batch written */
	REC_WRITING_READING,         /* ... and the next one read */
	REC_PREPARED,                /* a batch written, the next waits */
	REC_PREPARED_READING,        /* ... and a read (rec_flush) */
	REC_PHASES
};

enum rec_event {
	REC_EV_READ,                 /* a read was sent */
	REC_EV_READ_END,             /* it was answered, or the connection went */
	REC_EV_WRITE,                /* a batch was sent (again: no change) */
	REC_EV_PREPARE,              /* the next batch is ready behind it */
	REC_EV_COMMIT,               /* the batch written committed: the
	                              * prepared one, if any, is written next */
	REC_EV_PENDING,              /* read our pending entries (id 0) now */
	REC_EV_WANT_PENDING,         /* ... once nothing is read or written */
	REC_EV_MAY_READ,             /* a read is about to be decided */
	REC_EV_CAUGHT_UP,            /* a read found nothing: new ones (">") */
	REC_EV_STALE,                /* stopping, or XACKs sent: the read in
	                              * flight cannot tell that all is read */
	REC_EV_COUNT
};

/*
 * The loop's state.  pending, want_pending and stale qualify the reads:
 * which entries they ask for, and whether the one in flight began before
 * what it must see.  (Not in here, because they are independent of it:
 * a scan for new queues and adoption commands run beside any phase;
 * stopping (sup_recorder_finish) and a flush of the held entries are
 * requests that wait for a phase in which they can be done.)
 */
struct rec_fsm {
	enum rec_phase phase;
	unsigned pending : 1;        /* reads are of our pending entries */
	unsigned want_pending : 1;   /* ... from the next that may */
	unsigned stale : 1;          /* the read in flight began too early */
};

/* The pure transition: no I/O, no clock.  An event that does not apply
 * in a phase changes nothing. */
struct rec_fsm rec_fsm_step(struct rec_fsm, enum rec_event);
/* The questions the loop asks of it. */
int rec_fsm_reading(struct rec_fsm);
int rec_fsm_writing(struct rec_fsm);
int rec_fsm_prepared(struct rec_fsm);
/* May a read be sent now?  One batch written and one prepared at most;
 * and our pending entries are not read while a batch is written (that
 * would read its entries again). */
int rec_fsm_may_read(struct rec_fsm);
const char *rec_phase_name(enum rec_phase);

/* ---- rec_txn.c: one transaction ---- */

/* One transaction: its rows (COPY binary data), what to XACK after
 * COMMIT.  Its SQL is made from them when it is sent (rec_txn_sql). */
struct rec_txn {
	struct hbuf sql;
	struct pgcopy stage;         /* rows for the staging table */
	struct pgcopy fresh;         /* rows of new tasks, for tasks itself */
	struct pgcopy events;        /* events, memory snapshots: taken */
	struct pgcopy snaps;         /* from the batch (rec_txn_build) */
	unsigned keep;               /* memory snapshots kept per agent */
	int attempts;                /* a staged row may supersede an attempt */
	int restage;                 /* the fresh rows go through the stage */
	struct rec_ack *acks;
	size_t nacks, capacks;
	const char **ackids;         /* rec_ack_all's, capacks of them */
	struct hbuf ackcmd;          /* ... and its XACK, in RESP */
	unsigned gen;                /* rec->gen when its acks were taken */
	char **ended;                /* final workflow (or dead) task ids */
	size_t nended, capended;
	struct rec_stat *stats;      /* what its entries count (tstats.c) */
	size_t nstats, capstats;
	uint64_t clock;              /* rec->results_clock when filled */
};

#define REC_TXN_COPIES   4       /* COPY statements in one at most */

/* The first statements of every session (sup_pg_prelude). */
extern const char rec_txn_prelude[];
/* The transaction of tx in tx->sql, and its COPY data in data/len (in
 * the order of its COPY statements); returns how many, -1 when out of
 * memory. */
int rec_txn_sql(struct rec_txn *, const char *data[REC_TXN_COPIES],
    size_t len[REC_TXN_COPIES]);
void rec_txn_push_ended(struct rec_txn *, const char *id);
void rec_txn_clear_ended(struct rec_txn *);
void rec_txn_free(struct rec_txn *);

/* ---- the recorder ---- */

struct sup_recorder {
	struct ev_loop *loop;
	struct sup_pg *pg;
	struct rconn *rc;
	char *prefix, *host;
	unsigned keep, count, hold_ms;
	void (*ended)(const char *const *, size_t, void *);
	void *ended_arg;
	struct rec_stream streams[REC_MAX_STREAMS];
	int nstreams;
	unsigned gen;                /* streams forgotten this many times */
	struct rec_fsm fsm;          /* what is in flight (rec_phase.c) */
	/* Beside the phase (see struct rec_fsm): */
	unsigned adopting;           /* adoption commands in flight */
	int scanning;                /* a scan for queues in flight */
	int flush;                   /* write the held ones now (Redis lost) */
	void (*finish)(void *);      /* sup_recorder_finish: stopping */
	void *finish_arg;
	/* The next batch is read and folded while one is being written. */
	struct rec_txn tx[2];
	int wi;                      /* the one written */
	struct rec_txn *fill;        /* the one a read fills */
	struct rec_held held;        /* queue entries waiting for their result */
	uint64_t results_clock;      /* ms: the results stream is read up to */
	uint64_t ends_seen;          /* ms: newest result or dead letter read */
	/* The tasks whose row was written from a result or a dead letter
	 * without their queue entry (task_is_new), and when they were read
	 * (ends_seen): the oldest are forgotten. */
	struct idset *ends;
	size_t entry_bytes;          /* mean size of an entry, last read */
	size_t active;               /* streams that gave entries, last read */
	size_t read_count;           /* COUNT of the read in flight */
	/* The task array of the last batch, for the next (rec_batch_begin):
	 * growing a new one for every batch made malloc work for it. */
	struct rec_task *spare;
	size_t nspare;
	ev_timer scan_timer;
	ev_timer adopt_timer;        /* dead hosts' entries (rec_adopt) */
	ev_timer retry_timer;        /* writing tx[wi] again */
	ev_timer read_timer;         /* reading again */
	struct sup_recorder_stats st;
	struct sup_tstats *tstats;   /* lent (opts.stats); may be NULL */
	sup_rec_event_fn *event;     /* opts.event: told what tstats counts */
	void *event_arg;
	uint64_t done_clock;         /* ms: results committed up to here */
};

/* recorder.c */
void rec_read(struct sup_recorder *);
int rec_push_ack(struct sup_recorder *, int stream, const char *id);

/* tstats.c */
/* A new rec_stat for the entry (stream si, entry id) in rec->fill; NULL
 * when nothing is counted (no stats, out of memory). */
struct rec_stat *rec_stat_push(struct sup_recorder *, int si,
    const char *entry, enum rec_sk kind);
/* The capability of a queue stream's key (record.h, tstats.c) into cap;
 * "" when key is not a queue of prefix. */
void rec_key_cap(const char *prefix, const char *key, size_t keylen,
    char *cap, size_t len);
/* tx is done (committed, or nothing to write): count what it read. */
void rec_stats_apply(struct sup_recorder *, struct rec_txn *);

/* rec_adopt.c */
void rec_adopt(struct sup_recorder *);

/* rec_entry.c */
void rec_batch_begin(struct sup_recorder *, struct rec_batch *);
void rec_batch_end(struct sup_recorder *, struct rec_batch *);
struct rec_task *rec_batch_task(struct rec_batch *);
void rec_task_free(struct rec_task *);
/* One entry of stream si (its "m" field, len bytes) into bt.  -1: a
 * queue entry that is no task, to be acknowledged now. */
int rec_decode(struct sup_recorder *, struct rec_batch *, int si,
    const char *entry, const char *buf, size_t len);
uint64_t rec_entry_ms(const char *id);
void rec_entry_copy(char *dst, size_t size, const char *src);
/* Fold bt (and the held ones that join it) into rec->fill; returns the
 * number of statements besides BEGIN/COMMIT (0: only acks), -1 when out
 * of memory. */
int rec_build_txn(struct sup_recorder *, struct rec_batch *);

#endif
