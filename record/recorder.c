/*
 * recorder.c - Redis streams into PostgreSQL, in batches (recorder.h).
 *
 *   +-> XREADGROUP recorder <host> ... STREAMS q.. results events dead
 *   |         |  (first the entries still pending to us: id 0, then ">")
 *   |   decode, fold each task's entries into one row (and the tasks
 *   |   held from the last batch); COPY the rows of new tasks into tasks,
 *   |   the others into a temporary table and upsert tasks from it: one
 *   |   transaction (binary COPY)
 *   |         |
 *   |   PostgreSQL  --fails--> same transaction again (pg queues it until
 *   |         |                the connection is back; Redis keeps the
 *   |      COMMIT              entries pending meanwhile)
 *   |         |
 *   +---- XACK what the transaction held
 *
 * One row per task: the tasks row carries the times of its attempt's
 * states (queued_at, started_at, finished_at), task_attempts those of the
 * attempts a requeued one superseded; the view task_states shows them all.
 * Writing a task costs one INSERT when its queue entry and its result are
 * in one batch, an INSERT and an UPDATE otherwise; so a queue entry whose
 * result may come soon is held (REC_HOLD_MS: not written, not
 * acknowledged, still pending in Redis) until its result is read, or the
 * hold ends; should Redis go away or lose our streams meanwhile, the held
 * entries are written at once (rec_flush).
 * A new task's row (task_is_new: its first attempt, its queue entry in
 * the batch, nothing written for it before) is copied straight into
 * tasks, the cheapest write there is.  Should it be there after all (a
 * batch written again after the recorder died between COMMIT and XACK),
 * the COPY fails on the primary key, and the same batch is rolled back
 * and written again with every row upserted: nothing is lost, nothing
 * acknowledged before it is written.
 *
 * Ordering: the streams are read in one command, so a task's queue entry
 * and its result may arrive in different batches in either order.  The
 * times are those of the events themselves (the stream entry's time, a
 * result's started/finished times), and the tasks row only moves forward:
 * a final state (completed, failed, dead) is never replaced; otherwise a
 * higher attempt wins, then a later state (queued < running < final).  The
 * same rule folds one batch in C (state_wins; hive_wins() in SQL).
 */
#include "record.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"
#include "log.h"
#include "rconn.h"

#define REC_GROUP        HIVE_GROUP_RECORDER
#define REC_MAX_STREAMS  1024
#define REC_SCAN_EVERY   2.0     /* seconds between looks for new queues */
#define REC_BLOCK_MS     1000
#define REC_ERR_RETRY    5.0     /* seconds before an SQL error is retried */
#define REC_BATCH_BYTES  (16u << 20)  /* stream entries' bytes per read */
#define REC_ADOPT_EVERY  5.0     /* seconds between looks for dead hosts' entries */
#define REC_ADOPT_PAGE   1000    /* entries claimed per XCLAIM */
#define REC_ADOPT_IDLE   "1000"  /* ms idle at least: not one another
                                  * recorder has just claimed */

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

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

/*
 * The tasks whose row was written from a result or a dead letter without
 * their queue entry (task_is_new): hashes of their ids, in two
 * generations of REC_ENDS_GEN; when the newer is full the older is
 * forgotten, and evicted_ms says how far: its ends were all read by then.
 */
#define REC_ENDS_GEN     16384
#define REC_ENDS_SLOTS   (2 * REC_ENDS_GEN)    /* a power of 2 */

struct rec_ends_gen {
	uint64_t slot[REC_ENDS_SLOTS];         /* 0: empty */
	size_t n;
	uint64_t read_ms;            /* its ends were read by then */
};

struct rec_ends {
	struct rec_ends_gen gen[2];
	int cur;
	uint64_t evicted_ms;
};

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
	uint64_t hash;               /* ends_hash(t->id) */
};

struct rec_held {
	struct rec_hq *q;
	size_t head, n, cap;
	uint32_t *slot;
	size_t nslots;               /* a power of 2, at least 2 * cap */
	size_t live;                 /* held, not taken */
	size_t tombs;                /* HELD_TOMB slots */
	size_t bytes;                /* their messages */
};

/* One transaction: its rows (COPY binary data), its other statements,
 * what to XACK after COMMIT.  Its SQL is made from them when it is sent
 * (rec_write). */
struct rec_txn {
	struct sbuf sql;
	struct sbuf stage;           /* rows for the staging table */
	struct sbuf fresh;           /* rows of new tasks, for tasks itself */
	struct sbuf rest;            /* events, memory snapshots */
	int attempts;                /* a staged row may supersede an attempt */
	int restage;                 /* the fresh rows go through the stage */
	struct rec_ack *acks;
	size_t nacks, capacks;
	const char **ackids;         /* rec_ack_all's, capacks of them */
	struct sbuf ackcmd;          /* ... and its XACK, in RESP */
	unsigned gen;                /* rec->gen when its acks were taken */
	char **ended;                /* final workflow (or dead) task ids */
	size_t nended, capended;
};

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
	int reading;                 /* an XREADGROUP is in flight */
	int writing;                 /* tx[wi] is in flight */
	int prepared;                /* tx[1 - wi] waits for it to end */
	int pending_phase;           /* reading our pending entries (id 0) */
	int want_pending;            /* ... once the read in flight is in */
	unsigned adopting;           /* adoption commands in flight */
	int scanning;
	/* The next batch is read and folded while one is being written. */
	struct rec_txn tx[2];
	int wi;                      /* the one written */
	struct rec_txn *fill;        /* the one a read fills */
	struct rec_held held;        /* queue entries waiting for their result */
	int flush;                   /* write the held ones now (Redis lost) */
	void (*finish)(void *);      /* sup_recorder_finish: stopping */
	void *finish_arg;
	int stale_read;              /* the read in flight began before it,
	                              * or before XACKs sent since */
	uint64_t results_clock;      /* ms: the results stream is read up to */
	uint64_t ends_seen;          /* ms: newest result or dead letter read */
	struct rec_ends *ends;
	size_t entry_bytes;          /* mean size of an entry, last read */
	size_t active;               /* streams that gave entries, last read */
	size_t read_count;           /* COUNT of the read in flight */
	/* The task array of the last batch, for the next (batch_begin):
	 * growing a new one for every batch made malloc work for it. */
	struct rec_task *spare;
	size_t nspare;
	ev_timer scan_timer;
	ev_timer adopt_timer;        /* dead hosts' entries (rec_adopt) */
	ev_timer retry_timer;        /* writing tx[wi] again */
	ev_timer read_timer;         /* reading again */
	struct sup_recorder_stats st;
};

static void rec_read(struct sup_recorder *);
static void rec_flush(struct sup_recorder *);
static void rec_read_later(struct sup_recorder *, double);
static int rec_push_ack(struct sup_recorder *, int, const char *);

/* sup_recorder_finish's end. */
static void
rec_finished(struct sup_recorder *rec)
{
	void (*done)(void *) = rec->finish;

	rec->finish = NULL;
	if (done != NULL)
		done(rec->finish_arg);
}

/* ---- a growing string, and SQL literals ---- */

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_puts(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3)))
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		sb_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void
sb_reset(struct sbuf *b)
{
	b->len = 0;
	b->oom = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t need;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		need = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		need = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		need = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (need > n)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800) ||
	    (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

/*
 * A text literal.  PostgreSQL text holds neither NUL nor invalid UTF-8,
 * and a value it refuses would stop the whole batch, so such bytes become
 * U+FFFD.  Quotes are doubled (standard_conforming_strings is on).
 */
static void
sb_lit(struct sbuf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, start = 0;

	sb_add(b, "'", 1);
	while (i < n) {
		size_t l = u[i] == 0 ? 0 : utf8_len(u + i, n - i);
		if (l == 1 && u[i] == '\'') {
			sb_add(b, s + start, i - start);
			sb_add(b, "''", 2);
			start = ++i;
		} else if (l == 0) {
			sb_add(b, s + start, i - start);
			sb_add(b, "\xef\xbf\xbd", 3);
			start = ++i;
		} else
			i += l;
	}
	sb_add(b, s + start, i - start);
	sb_add(b, "'", 1);
}

static void
sb_lit_or_null(struct sbuf *b, const char *s)
{
	if (s == NULL)
		sb_puts(b, "NULL");
	else
		sb_lit(b, s, strlen(s));
}

static void
sb_hstr(struct sbuf *b, struct hive_str s)
{
	if (s.ptr == NULL || s.len == 0)
		sb_puts(b, "NULL");
	else
		sb_lit(b, s.ptr, s.len);
}

static void
sb_time(struct sbuf *b, uint64_t ms)
{
	if (ms == 0)
		sb_puts(b, "now()");
	else
		sb_printf(b, "to_timestamp(%" PRIu64 "/1000.0)", ms);
}

/*
 * A value as JSON text for a jsonb column, or NULL when it has no JSON form
 * (it is then recorded as absent, with the reason in the log).  jsonb
 * refuses the escape \u0000, so it becomes \ufffd.
 */
static char *
json_text(const msgpack_object *o, const char *what, struct hive_str task)
{
	struct proto_err err;
	char *s, *p;

	if (o->type == MSGPACK_OBJECT_NIL)
		return NULL;
	if ((s = proto_obj_json_text(o, NULL, &err)) == NULL) {
		char eb[PROTO_ERRBUF];
		log_warnx("recorder: task=%.*s: %s has no JSON form, not "
		    "recorded: %s", (int)task.len, task.ptr, what,
		    proto_strerror(&err, eb, sizeof(eb)));
		return NULL;
	}
	for (p = s; (p = strchr(p, '\\')) != NULL; p += 2) {
		if (p[1] == 'u' && strncmp(p + 2, "0000", 4) == 0)
			memcpy(p + 2, "fffd", 4);
		if (p[1] == '\0')
			break;
	}
	return s;
}

static char *
hstrdup(struct hive_str s)
{
	char *p;

	if (s.ptr == NULL || s.len == 0)
		return NULL;
	if ((p = malloc(s.len + 1)) == NULL)
		return NULL;
	memcpy(p, s.ptr, s.len);
	p[s.len] = '\0';
	return p;
}

/* ---- the batch ---- */

struct rec_batch {
	struct rec_task *tasks;
	size_t ntasks, captasks;
	struct sbuf events;          /* VALUES rows of events */
	struct sbuf snaps;           /* VALUES rows of memory_snapshots */
	struct sbuf snap_agents;     /* 'a','b' for pruning */
};

/* Does a new state of a task replace the one recorded?  (hive_wins) */
static int
state_wins(int orank, uint32_t oatt, int nrank, uint32_t natt)
{
	if (orank == 3)
		return 0;
	if (nrank == 3)
		return 1;
	if (natt != oatt)
		return natt > oatt;
	return nrank >= orank;
}

static struct rec_task *
batch_task(struct rec_batch *bt)
{
	struct rec_task *t;

	if (bt->ntasks == bt->captasks) {
		size_t cap = bt->captasks ? bt->captasks * 2 : 64;
		t = realloc(bt->tasks, cap * sizeof(*t));
		if (t == NULL)
			return NULL;
		bt->tasks = t;
		bt->captasks = cap;
	}
	t = &bt->tasks[bt->ntasks++];
	memset(t, 0, sizeof(*t));
	return t;
}

static void
task_free(struct rec_task *t)
{
	free(t->agent);
	free(t->workflow);
	free(t->result);
	free(t->error);
	free(t->own_msg);
}

/* Most tasks a kept array holds (REC_TASK_SPARE * 376 bytes). */
#define REC_TASK_SPARE   8192

static void
batch_begin(struct sup_recorder *rec, struct rec_batch *bt)
{
	memset(bt, 0, sizeof(*bt));
	bt->tasks = rec->spare;
	bt->captasks = rec->nspare;
	rec->spare = NULL;
	rec->nspare = 0;
}

/* Frees what the batch holds; keeps its task array for the next. */
static void
batch_end(struct sup_recorder *rec, struct rec_batch *bt)
{
	for (size_t i = 0; i < bt->ntasks; i++)
		task_free(&bt->tasks[i]);
	if (rec->spare == NULL && bt->captasks <= REC_TASK_SPARE) {
		rec->spare = bt->tasks;
		rec->nspare = bt->captasks;
	} else {
		free(bt->tasks);
	}
	free(bt->events.p);
	free(bt->snaps.p);
	free(bt->snap_agents.p);
}

static void
add_event(struct rec_batch *bt, struct hive_str kind, uint64_t at_ms,
    struct hive_str host, struct hive_str agent, struct hive_str task,
    int64_t pid, struct hive_str reason, struct hive_str workflow,
    const char *stream, const char *entry)
{
	struct sbuf *b = &bt->events;
	char src[HIVE_KEY_MAX + HIVE_ENTRY_ID_MAX + 4];

	snprintf(src, sizeof(src), "%s/%s", stream, entry);
	sb_puts(b, b->len ? ",(" : "(");
	sb_time(b, at_ms);
	sb_puts(b, ",");
	sb_hstr(b, kind);
	sb_puts(b, ",");
	sb_hstr(b, host);
	sb_puts(b, ",");
	sb_hstr(b, agent);
	sb_puts(b, ",");
	sb_hstr(b, task);
	if (pid > 0 && pid <= INT32_MAX)
		sb_printf(b, ",%" PRId64 ",", pid);
	else
		sb_puts(b, ",NULL,");
	sb_hstr(b, reason);
	sb_puts(b, ",");
	sb_lit_or_null(b, src);
	sb_puts(b, ",");
	sb_hstr(b, workflow);
	sb_puts(b, ")");
}

static uint64_t
entry_ms(const char *id)
{
	return strtoull(id, NULL, 10);
}

/* An entry id into dst (size bytes), cut to fit (snprintf's "%s" in the
 * hot path, without the format). */
static void
entry_copy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int
set_id(struct rec_task *t, struct hive_str id)
{
	if (id.len == 0 || id.len > HIVE_ID_MAX)
		return -1;
	memcpy(t->id, id.ptr, id.len);
	t->id[id.len] = '\0';
	return 0;
}

static void
record_task(struct sup_recorder *rec, struct rec_batch *bt, int si,
    const char *entry, const char *buf, size_t len)
{
	struct hive_task m;
	struct proto_err err;
	struct rec_task *t;

	if (proto_decode_task(buf, len, &m, &err) < 0) {
		/* The worker that reads it dead-letters it with this reason;
		 * the dead-letter stream is what records it. */
		char eb[PROTO_ERRBUF];
		log_debug("recorder: %s %s: not a task (%s)", rec->streams[si].key,
		    entry, proto_strerror(&err, eb, sizeof(eb)));
		rec_push_ack(rec, si, entry);
		return;
	}
	if ((t = batch_task(bt)) == NULL) {
		proto_task_clear(&m);
		return;
	}
	t->has_q = 1;
	t->q_stream = si;
	entry_copy(t->q_entry, sizeof(t->q_entry), entry);
	if (set_id(t, m.id) < 0) {
		t->skip = 1;             /* acknowledged, nothing to write */
		goto out;
	}
	t->rank = 1;
	t->state = "queued";
	t->attempts = m.attempt;
	t->workflow = hstrdup(m.workflow);
	t->queued_ms = entry_ms(entry);
	t->reread = rec->pending_phase;
	t->created_ms = m.created_ms ? m.created_ms : t->queued_ms;
	t->has_msg = 1;
	t->msg_attempt = m.attempt;
	t->msg_stream = si;
	entry_copy(t->msg_entry, sizeof(t->msg_entry), entry);
	t->msg = buf;
	t->msglen = len;
out:
	proto_task_clear(&m);
}

static void
record_result(struct sup_recorder *rec, struct rec_batch *bt, int si,
    const char *entry, const char *buf, size_t len)
{
	struct hive_result m;
	struct proto_err err;
	struct rec_task *t;
	const char *key = rec->streams[si].key;

	if (proto_decode_result(buf, len, &m, &err) < 0) {
		char eb[PROTO_ERRBUF];
		log_warnx("recorder: %s %s: bad result, skipped: %s", key, entry,
		    proto_strerror(&err, eb, sizeof(eb)));
		return;
	}
	if ((t = batch_task(bt)) == NULL || set_id(t, m.id) < 0) {
		if (t != NULL)
			bt->ntasks--;
		goto out;
	}
	t->rank = 3;
	t->state = m.status == HIVE_STATUS_OK ? "completed" : "failed";
	t->attempts = m.attempt;
	t->agent = hstrdup(m.agent);
	t->workflow = hstrdup(m.workflow);
	t->result = json_text(&m.result, "result", m.id);
	t->error = hstrdup(m.error);
	t->finished_ms = m.finished_ms ? m.finished_ms : entry_ms(entry);
	t->started_ms = m.started_ms;
	t->created_ms = m.started_ms ? m.started_ms : t->finished_ms;
	if (m.memory_v > 0 && m.memory.type == MSGPACK_OBJECT_MAP) {
		char *mem = json_text(&m.memory, "memory", m.id);
		struct sbuf *b = &bt->snaps;
		if (mem != NULL) {
			sb_puts(b, b->len ? ",(" : "(");
			sb_hstr(b, m.agent);
			sb_printf(b, ",%" PRIu64 ",", m.memory_v);
			sb_lit(b, mem, strlen(mem));
			sb_puts(b, "::jsonb,");
			sb_hstr(b, m.id);
			sb_puts(b, ",");
			sb_hstr(b, m.host);
			sb_puts(b, ",");
			sb_time(b, t->finished_ms);
			sb_puts(b, ")");
			sb_puts(&bt->snap_agents, bt->snap_agents.len ? "," : "");
			sb_hstr(&bt->snap_agents, m.agent);
			free(mem);
		}
	}
out:
	proto_result_clear(&m);
}

static void
record_event(struct sup_recorder *rec, struct rec_batch *bt, int si,
    const char *entry, const char *buf, size_t len)
{
	struct hive_event m;
	struct proto_err err;

	if (proto_decode_event(buf, len, &m, &err) < 0) {
		char eb[PROTO_ERRBUF];
		log_warnx("recorder: %s %s: bad event, skipped: %s",
		    rec->streams[si].key, entry,
		    proto_strerror(&err, eb, sizeof(eb)));
		return;
	}
	add_event(bt, m.kind, m.ts_ms ? m.ts_ms : entry_ms(entry), m.host,
	    m.agent, m.task, m.pid, m.reason, m.workflow, rec->streams[si].key,
	    entry);
	proto_event_clear(&m);
}

static void
record_dead(struct sup_recorder *rec, struct rec_batch *bt, int si,
    const char *entry, const char *buf, size_t len)
{
	struct hive_dead m;
	struct proto_err err;
	struct rec_task *t;
	const char *key = rec->streams[si].key;
	uint64_t at;
	static const struct hive_str kind = { "task.dead", 9 };

	if (proto_decode_dead(buf, len, &m, &err) < 0) {
		char eb[PROTO_ERRBUF];
		log_warnx("recorder: %s %s: bad dead letter, skipped: %s", key,
		    entry, proto_strerror(&err, eb, sizeof(eb)));
		return;
	}
	at = m.ts_ms ? m.ts_ms : entry_ms(entry);
	add_event(bt, kind, at, (struct hive_str){ NULL, 0 }, m.agent, m.id, 0,
	    m.reason, (struct hive_str){ NULL, 0 }, key, entry);
	if (m.id.len > 0 && (t = batch_task(bt)) != NULL) {
		if (set_id(t, m.id) < 0) {
			bt->ntasks--;
			goto out;
		}
		t->rank = 3;
		t->state = "dead";
		t->attempts = m.attempt;
		t->agent = hstrdup(m.agent);
		t->error = hstrdup(m.reason);
		t->created_ms = t->finished_ms = at;
	}
out:
	proto_dead_clear(&m);
}

static int
task_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rec_task *)a)->id,
	    ((const struct rec_task *)b)->id);
}

/* ---- COPY binary format ----
 *
 *   "PGCOPY\n\377\r\n\0" | flags int32 0 | extension length int32 0
 *   per row:  field count int16 | per field: length int32 (-1: NULL), bytes
 *   trailer:  int16 -1
 *
 * All integers big-endian.  No escaping and no hex: a message goes as its
 * own bytes, a time as microseconds since 2000-01-01 (timestamptz).
 */

static void
bin_u16(struct sbuf *b, uint16_t v)
{
	unsigned char x[2] = { v >> 8, v & 0xff };

	sb_add(b, (char *)x, 2);
}

static void
bin_u32(struct sbuf *b, uint32_t v)
{
	unsigned char x[4] = { v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff,
	    v & 0xff };

	sb_add(b, (char *)x, 4);
}

static void
bin_header(struct sbuf *b)
{
	sb_add(b, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
}

static void
bin_trailer(struct sbuf *b)
{
	bin_u16(b, 0xffff);
}

static void
bin_null(struct sbuf *b)
{
	bin_u32(b, 0xffffffffu);
}

/* A text field.  PostgreSQL text holds neither NUL nor invalid UTF-8, and
 * a value it refuses would stop the whole batch, so such bytes become
 * U+FFFD.  pre: a byte before the text (jsonb's version), or -1. */
static void
bin_text_pre(struct sbuf *b, int pre, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, start = 0, at;

	if (s == NULL) {
		bin_null(b);
		return;
	}
	bin_u32(b, 0);               /* its length, once known */
	at = b->len;
	if (pre >= 0) {
		char c = (char)pre;
		sb_add(b, &c, 1);
	}
	while (i < n) {
		size_t l;
		uint64_t w;
		/* Eight bytes at a time while none is NUL or above 0x7f (a
		 * NUL borrows into its own top bit). */
		if (i + 8 <= n && (memcpy(&w, u + i, 8),
		    !(((w - UINT64_C(0x0101010101010101)) | w) &
		    UINT64_C(0x8080808080808080)))) {
			i += 8;
			continue;
		}
		if (u[i] >= 0x01 && u[i] < 0x80) {
			i++;
			continue;
		}
		if ((l = u[i] == 0 ? 0 : utf8_len(u + i, n - i)) > 0) {
			i += l;
			continue;
		}
		sb_add(b, s + start, i - start);
		sb_add(b, "\xef\xbf\xbd", 3);
		start = ++i;
	}
	sb_add(b, s + start, i - start);
	if (!b->oom) {
		uint32_t len = (uint32_t)(b->len - at);
		unsigned char *x = (unsigned char *)b->p + at - 4;
		x[0] = len >> 24;
		x[1] = (len >> 16) & 0xff;
		x[2] = (len >> 8) & 0xff;
		x[3] = len & 0xff;
	}
}

static void
bin_str(struct sbuf *b, const char *s)
{
	bin_text_pre(b, -1, s, s != NULL ? strlen(s) : 0);
}

static void
bin_int4(struct sbuf *b, uint32_t v)
{
	bin_u32(b, 4);
	bin_u32(b, v);
}

/* Milliseconds since 1970 as a timestamptz; 0 is NULL. */
static void
bin_time(struct sbuf *b, uint64_t ms)
{
	int64_t us;

	if (ms == 0) {
		bin_null(b);
		return;
	}
	us = ((int64_t)ms - INT64_C(946684800000)) * 1000;
	bin_u32(b, 8);
	bin_u32(b, (uint32_t)((uint64_t)us >> 32));
	bin_u32(b, (uint32_t)((uint64_t)us & 0xffffffffu));
}

/*
 * One row of tasks columns (TASK_COLUMNS), as COPY into tasks takes it,
 * or, with a kind first, one of the staging table's (STAGE_COLUMNS).
 * kind 't': the task's row; kind 'a': an attempt the batch itself saw
 * superseded, for task_attempts; 0: a tasks row (no kind).
 */
static void
bin_row(struct sup_recorder *rec, struct sbuf *b, char kind,
    const struct rec_task *t)
{
	int row = kind != 'a', msg = row && t->has_msg;

	bin_u16(b, kind ? 15 : 14);
	if (kind) {
		bin_u32(b, 1);
		sb_add(b, &kind, 1);
	}
	bin_str(b, t->id);
	bin_str(b, msg ? rec->streams[t->msg_stream].key : NULL);
	bin_str(b, msg ? t->msg_entry : NULL);
	bin_str(b, t->state);
	bin_int4(b, t->attempts);
	bin_str(b, t->agent);
	bin_str(b, row ? t->workflow : NULL);
	if (msg) {
		bin_u32(b, (uint32_t)t->msglen);
		sb_add(b, t->msg, t->msglen);
	} else
		bin_null(b);
	if (row && t->result != NULL)
		bin_text_pre(b, 1, t->result, strlen(t->result));
	else
		bin_null(b);
	bin_str(b, t->error);
	bin_time(b, t->created_ms);
	bin_time(b, t->queued_ms);
	bin_time(b, t->started_ms);
	bin_time(b, t->rank == 3 ? t->finished_ms : 0);
}

static void
stage_row(struct sup_recorder *rec, struct rec_txn *tx, char kind,
    const struct rec_task *t)
{
	if (tx->stage.len == 0)
		bin_header(&tx->stage);
	bin_row(rec, &tx->stage, kind, t);
}

#define STAGE "hive_rec_stage"
#define TASK_COLUMNS \
	"id, stream, entry, state, attempts, agent, workflow, message, " \
	"result, error, created_at, queued_at, started_at, finished_at"
#define STAGE_COLUMNS \
	"kind \"char\" NOT NULL DEFAULT 't', id text, stream text, " \
	"entry text, state text, attempts int, agent text, workflow text, " \
	"message bytea, result jsonb, error text, created_at timestamptz, " \
	"queued_at timestamptz, started_at timestamptz, finished_at timestamptz"

/* ---- folding a batch ---- */

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
/* Held entries are looked at again at least this often when idle. */
#define REC_HOLD_LOOK_MS 250

static uint64_t ends_hash(const char *);

static size_t
held_find(const struct rec_held *hd, const char *id, uint64_t hash,
    int *found)
{
	size_t mask = hd->nslots - 1, i, tomb = SIZE_MAX;

	*found = 0;
	for (i = hash & mask; hd->slot[i] != 0; i = (i + 1) & mask) {
		const struct rec_hq *e;

		if (hd->slot[i] == HELD_TOMB) {
			if (tomb == SIZE_MAX)
				tomb = i;
			continue;
		}
		e = &hd->q[hd->slot[i] - 1];
		if (e->hash == hash && strcmp(e->t->id, id) == 0) {
			*found = 1;
			return i;
		}
	}
	return tomb != SIZE_MAX ? tomb : i;
}

/* The index slot of q[k], a held one: no id to compare. */
static size_t
held_slot_of(const struct rec_held *hd, size_t k)
{
	size_t mask = hd->nslots - 1, i = hd->q[k].hash & mask;

	while (hd->slot[i] != k + 1)
		i = (i + 1) & mask;
	return i;
}

/* The index again, for the held ones of q[head..n) moved to q[0..) and
 * room for cap (at least).  -1: out of memory, nothing changed. */
static int
held_rebuild(struct rec_held *hd, size_t cap)
{
	size_t nslots = 1024, m = 0, mask;
	uint32_t *slot = hd->slot;
	struct rec_hq *q;

	if (cap < hd->cap)
		cap = hd->cap;
	while (nslots < 2 * cap)
		nslots *= 2;
	if (nslots != hd->nslots &&
	    (slot = malloc(nslots * sizeof(*slot))) == NULL)
		return -1;
	if (cap > hd->cap) {
		if ((q = realloc(hd->q, cap * sizeof(*q))) == NULL) {
			if (slot != hd->slot)
				free(slot);
			return -1;
		}
		hd->q = q;
		hd->cap = cap;
	}
	if (slot != hd->slot) {
		free(hd->slot);
		hd->slot = slot;
		hd->nslots = nslots;
	}
	memset(hd->slot, 0, hd->nslots * sizeof(*hd->slot));
	mask = hd->nslots - 1;
	for (size_t k = hd->head; k < hd->n; k++) {
		size_t i;

		if (hd->q[k].t == NULL)
			continue;
		hd->q[m] = hd->q[k];
		for (i = hd->q[m].hash & mask; hd->slot[i] != 0;
		    i = (i + 1) & mask)
			;
		hd->slot[i] = (uint32_t)++m;
	}
	hd->n = m;
	hd->head = 0;
	hd->tombs = 0;
	return 0;
}

/* Move w to the held ones; it keeps what it owns, and a message that
 * is only borrowed from this read's reply is copied.  -1: not held (too
 * many, out of memory): it is written now. */
static int
rec_hold(struct sup_recorder *rec, struct rec_task *w)
{
	struct rec_held *hd = &rec->held;
	struct rec_task *h;
	uint64_t hash;
	size_t i;
	int found;
	/* Its own copy, unless the fold gave it another member's message. */
	char *msg = w->own_msg != NULL && w->msg == w->own_msg ?
	    w->own_msg : NULL;

	if (hd->live >= REC_HOLD_MAX || hd->bytes + w->msglen > REC_HOLD_BYTES)
		return -1;
	if (hd->n == hd->cap) {
		/* Full: the taken ones out, and twice the room if that is
		 * not a quarter of it. */
		size_t cap = hd->cap == 0 ? 1024 : hd->live >= hd->cap / 4 * 3 &&
		    hd->cap < REC_HOLD_MAX ? 2 * hd->cap : hd->cap;
		if (held_rebuild(hd, cap) < 0 || hd->n == hd->cap)
			return -1;
	} else if (hd->live + hd->tombs >= hd->nslots / 2 &&
	    held_rebuild(hd, 0) < 0)
		return -1;
	hash = ends_hash(w->id);
	i = held_find(hd, w->id, hash, &found);
	if (found)                   /* not after a fold: never */
		return -1;
	if ((h = malloc(sizeof(*h))) == NULL)
		return -1;
	if (msg == NULL) {
		if ((msg = malloc(w->msglen ? w->msglen : 1)) == NULL) {
			free(h);
			return -1;
		}
		memcpy(msg, w->msg, w->msglen);
	}
	if (hd->slot[i] == HELD_TOMB)
		hd->tombs--;
	hd->q[hd->n].t = h;
	hd->q[hd->n].hash = hash;
	hd->slot[i] = (uint32_t)++hd->n;
	hd->live++;
	hd->bytes += w->msglen;
	*h = *w;
	h->own_msg = msg;
	h->msg = msg;
	h->skip = 0;
	if (msg == w->own_msg)
		w->own_msg = NULL;
	w->agent = w->workflow = w->result = w->error = NULL;
	w->skip = 1;
	return 0;
}

/* Move the held one of index slot i into the batch.  -1: out of memory,
 * it stays held. */
static int
held_take(struct rec_held *hd, size_t i, struct rec_batch *bt)
{
	struct rec_task *t = batch_task(bt);
	size_t k = hd->slot[i] - 1;

	if (t == NULL)
		return -1;
	hd->slot[i] = HELD_TOMB;
	hd->tombs++;
	*t = *hd->q[k].t;            /* what it owns goes with it */
	free(hd->q[k].t);
	hd->q[k].t = NULL;
	hd->live--;
	hd->bytes -= t->msglen;
	return 0;
}

/*
 * The held ones that join this batch: those whose task has entries in it,
 * those held long enough, and, when they may not be held (reading our
 * pending entries, or Redis gone), all of them.
 */
static void
held_to_batch(struct sup_recorder *rec, struct rec_batch *bt, int all)
{
	struct rec_held *hd = &rec->held;
	size_t nb = bt->ntasks, i;
	int found;

	if (hd->live == 0)
		return;
	for (size_t k = 0; !all && k < nb; k++) {
		i = held_find(hd, bt->tasks[k].id, ends_hash(bt->tasks[k].id),
		    &found);
		if (found && held_take(hd, i, bt) < 0)
			return;
	}
	while (hd->head < hd->n) {
		const struct rec_task *h = hd->q[hd->head].t;

		if (h != NULL) {
			if (!all && h->queued_ms + rec->hold_ms > rec->results_clock)
				break;
			if (held_take(hd, held_slot_of(hd, hd->head), bt) < 0)
				return;
		}
		hd->head++;
	}
	if (hd->head == hd->n) {
		hd->head = hd->n = 0;
		if (hd->tombs > 0) {
			memset(hd->slot, 0, hd->nslots * sizeof(*hd->slot));
			hd->tombs = 0;
		}
	}
}

static void
held_free(struct rec_held *hd)
{
	for (size_t k = hd->head; k < hd->n; k++) {
		if (hd->q[k].t != NULL) {
			task_free(hd->q[k].t);
			free(hd->q[k].t);
		}
	}
	free(hd->q);
	free(hd->slot);
	memset(hd, 0, sizeof(*hd));
}

/*
 * Fold run[0..n) (one task's entries) into run[0] by the rule of
 * hive_wins; the times (queued, started, finished) are those of the
 * winning attempt.  Entries of an attempt the fold supersedes go to copy
 * as 'a' rows.
 */
static void
fold_task(struct sup_recorder *rec, struct rec_task *run, size_t n,
    struct rec_txn *tx)
{
	struct rec_task *w = &run[0];
	int rank = w->rank;
	uint32_t att = w->attempts;

	for (size_t i = 1; i < n; i++)
		if (state_wins(rank, att, run[i].rank, run[i].attempts)) {
			rank = run[i].rank;
			if (run[i].attempts > att)
				att = run[i].attempts;
		}
	for (size_t i = 0; i < n; i++)
		if (run[i].attempts < att && run[i].rank > 0) {
			stage_row(rec, tx, 'a', &run[i]);
			tx->attempts = 1;
		}
	for (size_t i = 1; i < n; i++) {
		struct rec_task *t = &run[i];
		t->skip = 1;
		if (t->has_msg && (!w->has_msg || t->msg_attempt >= w->msg_attempt)) {
			w->has_msg = 1;
			w->msg_attempt = t->msg_attempt;
			w->msg_stream = t->msg_stream;
			memcpy(w->msg_entry, t->msg_entry, sizeof(w->msg_entry));
			w->msg = t->msg;
			w->msglen = t->msglen;
		}
		if (t->created_ms && (!w->created_ms || t->created_ms < w->created_ms))
			w->created_ms = t->created_ms;
		if (w->workflow == NULL) {
			w->workflow = t->workflow;
			t->workflow = NULL;
		}
		if (state_wins(w->rank, w->attempts, t->rank, t->attempts)) {
#define TAKE(f) do { free(w->f); w->f = t->f; t->f = NULL; } while (0)
			TAKE(agent);
			TAKE(result);
			TAKE(error);
#undef TAKE
			if (t->attempts > w->attempts) {
				w->queued_ms = t->queued_ms;
				w->started_ms = t->started_ms;
				w->attempts = t->attempts;
			}
			w->rank = t->rank;
			w->state = t->state;
			w->finished_ms = t->finished_ms;
		}
		if (t->attempts == w->attempts) {
			if (w->queued_ms == 0)
				w->queued_ms = t->queued_ms;
			if (w->started_ms == 0)
				w->started_ms = t->started_ms;
		}
	}
}

static uint64_t
ends_hash(const char *id)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (; *id != '\0'; id++)
		h = (h ^ (unsigned char)*id) * UINT64_C(1099511628211);
	return h ? h : 1;
}

static int
ends_gen_has(const struct rec_ends_gen *g, uint64_t h)
{
	for (size_t i = h & (REC_ENDS_SLOTS - 1); g->slot[i] != 0;
	    i = (i + 1) & (REC_ENDS_SLOTS - 1))
		if (g->slot[i] == h)
			return 1;
	return 0;
}

static int
ends_has(const struct rec_ends *e, const char *id)
{
	uint64_t h = ends_hash(id);

	return ends_gen_has(&e->gen[0], h) || ends_gen_has(&e->gen[1], h);
}

/* Remember a task written without its queue entry; the ends read so far
 * are up to ends_seen (ms). */
static void
ends_add(struct rec_ends *e, const char *id, uint64_t ends_seen)
{
	struct rec_ends_gen *g = &e->gen[e->cur];
	uint64_t h = ends_hash(id);
	size_t i;

	if (ends_gen_has(g, h))
		return;
	if (g->n == REC_ENDS_GEN) {
		e->cur = 1 - e->cur;
		g = &e->gen[e->cur];
		if (g->read_ms > e->evicted_ms)
			e->evicted_ms = g->read_ms;
		memset(g, 0, sizeof(*g));
	}
	for (i = h & (REC_ENDS_SLOTS - 1); g->slot[i] != 0;
	    i = (i + 1) & (REC_ENDS_SLOTS - 1))
		;
	g->slot[i] = h;
	g->n++;
	g->read_ms = ends_seen;
}

/*
 * Is the task of run[0..n) surely not in tasks yet, so that its row can be
 * copied there, not upserted through the stage?  Its first attempt, its
 * queue entry among them, not re-read from our pending entries, not a
 * workflow's task (a coordinator creates those rows beforehand), and no
 * row written for it before from a result or a dead letter alone (rec
 * ->ends; one forgotten since was read before evicted_ms, and a queue
 * entry is older than its result).  Wrong only when a batch is written
 * again (the recorder died between COMMIT and XACK), a task is put back
 * in a queue with the same attempt, or another recorder wrote the row:
 * the COPY then meets the row, and the batch is written again with every
 * row staged (rec_pg_cb).
 */
static int
task_is_new(const struct sup_recorder *rec, const struct rec_task *run,
    size_t n)
{
	int q = 0;

	for (size_t k = 0; k < n; k++) {
		if (run[k].attempts != 1 || run[k].workflow != NULL)
			return 0;
		if (run[k].has_q) {
			if (run[k].reread ||
			    run[k].queued_ms <= rec->ends->evicted_ms)
				return 0;
			q = 1;
		}
	}
	return q && !ends_has(rec->ends, run[0].id);
}

/* After the batch commits, acknowledge the queue entries of run[0..n). */
static void
ack_queue_entries(struct sup_recorder *rec, const struct rec_task *run,
    size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (run[k].has_q)
			rec_push_ack(rec, run[k].q_stream, run[k].q_entry);
}

/* A task the coordinator hears of after COMMIT (out of memory: its sweep
 * finds it). */
static void
push_ended(struct rec_txn *tx, const char *id)
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

static void
clear_ended(struct rec_txn *tx)
{
	for (size_t i = 0; i < tx->nended; i++)
		free(tx->ended[i]);
	tx->nended = 0;
}

/*
 * Fold the batch (and the tasks held from earlier ones) into one row per
 * task, in the COPY data; hold the queue entries that may soon meet their
 * result; queue the acknowledgements of the queue entries written.
 * Returns the number of rows written.
 */
static size_t
fold_batch(struct sup_recorder *rec, struct rec_batch *bt, struct rec_txn *tx)
{
	size_t i = 0, rows = 0;
	int may_hold = !rec->pending_phase && !rec->flush && rec->finish == NULL;

	held_to_batch(rec, bt, !may_hold);
	if (bt->ntasks > 1)
		qsort(bt->tasks, bt->ntasks, sizeof(*bt->tasks), task_cmp);
	while (i < bt->ntasks) {
		size_t j = i + 1, nq = 0;
		struct rec_task *w = &bt->tasks[i];
		int fresh;
		while (j < bt->ntasks && strcmp(bt->tasks[j].id, w->id) == 0)
			j++;
		if (w->skip) {           /* queue entries without a task id */
			ack_queue_entries(rec, w, j - i);
			i = j;
			continue;
		}
		fresh = task_is_new(rec, w, j - i);
		fold_task(rec, w, j - i, tx);
		for (size_t k = i; k < j; k++)
			nq += bt->tasks[k].has_q;
		if (nq == 0)
			ends_add(rec->ends, w->id, rec->ends_seen);
		if (may_hold && w->rank == 1 && nq == 1 && w->has_q &&
		    w->queued_ms + rec->hold_ms > rec->results_clock &&
		    rec_hold(rec, w) == 0) {
			i = j;
			continue;
		}
		if (fresh && w->created_ms != 0) {
			if (tx->fresh.len == 0)
				bin_header(&tx->fresh);
			bin_row(rec, &tx->fresh, 0, w);
		} else {
			stage_row(rec, tx, 't', w);
			rec->st.staged++;
			if (w->attempts > 1)
				tx->attempts = 1;
		}
		rows++;
		if (w->rank == 3 && rec->ended != NULL && (w->workflow != NULL ||
		    strcmp(w->state, "dead") == 0))
			push_ended(tx, w->id);
		ack_queue_entries(rec, w, j - i);
		i = j;
	}
	return rows;
}

/* "INSERT INTO <table> VALUES <rows> ON CONFLICT DO NOTHING;" when there
 * are rows: every row a batch writes is keyed, so writing it twice is a
 * no-op.  Returns 1 if it wrote a statement. */
static int
sql_rows(struct sbuf *b, const char *table, const struct sbuf *rows)
{
	if (rows->len == 0)
		return 0;
	sb_puts(b, "INSERT INTO ");
	sb_puts(b, table);
	sb_puts(b, " VALUES ");
	sb_add(b, rows->p, rows->len);
	sb_puts(b, " ON CONFLICT DO NOTHING;");
	return 1;
}

/* W: does the staged state replace the recorded one (see the top);
 * N: ... and is it a later attempt, whose times replace the row's;
 * M: does the staged message replace the recorded one. */
#define W "hive_wins(t.state, t.attempts, s.state, s.attempts)"
#define WX "hive_wins(t.state, t.attempts, EXCLUDED.state, EXCLUDED.attempts)"
#define NX "(" WX " AND EXCLUDED.attempts > t.attempts)"
#define SX "EXCLUDED.attempts = t.attempts"
#define MX "(EXCLUDED.message IS NOT NULL AND (t.message IS NULL OR " \
	  "EXCLUDED.attempts >= t.attempts))"

/* The attempt a later one supersedes keeps its states. */
static const char sql_attempts[] =
	"INSERT INTO task_attempts AS a (task_id, attempt, state, agent, "
	"queued_at, started_at, finished_at, detail) "
	"SELECT t.id, t.attempts, t.state, t.agent, t.queued_at, t.started_at, "
	"t.finished_at, t.error FROM " STAGE " s JOIN tasks t ON t.id = s.id "
	"WHERE s.kind = 't' AND s.attempts > 1 AND s.attempts > t.attempts "
	"AND " W " "
	"UNION ALL SELECT s.id, s.attempts, s.state, s.agent, s.queued_at, "
	"s.started_at, s.finished_at, s.error FROM " STAGE " s "
	"WHERE s.kind = 'a' ON CONFLICT DO NOTHING;";

static const char sql_upsert[] =
	"INSERT INTO tasks AS t (" TASK_COLUMNS ", updated_at) "
	"SELECT s.id, coalesce(s.stream, ''), s.entry, s.state, s.attempts, "
	"s.agent, s.workflow, s.message, s.result, s.error, "
	"coalesce(s.created_at, now()), s.queued_at, s.started_at, "
	"s.finished_at, now() "
	"FROM " STAGE " s WHERE s.kind = 't' "
	"ON CONFLICT (id) DO UPDATE SET "
	"stream = CASE WHEN " MX " THEN EXCLUDED.stream ELSE t.stream END, "
	"entry = CASE WHEN " MX " THEN EXCLUDED.entry ELSE t.entry END, "
	"message = CASE WHEN " MX " THEN EXCLUDED.message ELSE t.message END, "
	"state = CASE WHEN " WX " THEN EXCLUDED.state ELSE t.state END, "
	"agent = CASE WHEN " WX " AND EXCLUDED.agent IS NOT NULL "
	"THEN EXCLUDED.agent ELSE t.agent END, "
	"result = CASE WHEN " WX " THEN EXCLUDED.result ELSE t.result END, "
	"error = CASE WHEN " WX " THEN EXCLUDED.error ELSE t.error END, "
	"finished_at = CASE WHEN " WX " THEN EXCLUDED.finished_at "
	"ELSE t.finished_at END, "
	"queued_at = CASE WHEN " NX " THEN EXCLUDED.queued_at WHEN " SX
	" THEN coalesce(t.queued_at, EXCLUDED.queued_at) ELSE t.queued_at END, "
	"started_at = CASE WHEN " NX " THEN EXCLUDED.started_at WHEN " SX
	" THEN coalesce(EXCLUDED.started_at, t.started_at) "
	"ELSE t.started_at END, "
	"attempts = CASE WHEN " WX " THEN greatest(t.attempts, EXCLUDED.attempts) "
	"ELSE t.attempts END, "
	"workflow = coalesce(t.workflow, EXCLUDED.workflow), "
	"created_at = least(t.created_at, EXCLUDED.created_at), "
	"updated_at = now();";
#undef W
#undef WX
#undef NX
#undef SX
#undef MX

/* The first statements of every session of the connection: the stage,
 * and the two statements that read it, planned once per session rather
 * than once per batch.  DEALLOCATE ALL: it may run again on a session
 * (after a batch failed, or for a second recorder on one connection). */
static const char sql_prelude_head[] =
	"DEALLOCATE ALL;"
	"SET client_min_messages = warning;"
	"CREATE TEMP TABLE IF NOT EXISTS " STAGE " (" STAGE_COLUMNS ") "
	"ON COMMIT DELETE ROWS;"
	"RESET client_min_messages;"
	"PREPARE hive_rec_attempts AS ";

static char *
rec_prelude(void)
{
	size_t n = sizeof(sql_prelude_head) + sizeof(sql_attempts) +
	    sizeof(sql_upsert) + 64;
	char *p = malloc(n);

	if (p != NULL)
		snprintf(p, n, "%s%sPREPARE hive_rec_upsert AS %s",
		    sql_prelude_head, sql_attempts, sql_upsert);
	return p;
}

/*
 * Fold a batch into rec->fill: its rows, its other statements.  Returns
 * the number of statements besides BEGIN/COMMIT (0: nothing to write,
 * only to ack), -1 when out of memory.
 */
static int
build_txn(struct sup_recorder *rec, struct rec_batch *bt)
{
	struct rec_txn *tx = rec->fill;
	struct sbuf *b = &tx->rest;
	int n = 0;

	sb_reset(&tx->stage);
	sb_reset(&tx->fresh);
	sb_reset(b);
	tx->attempts = tx->restage = 0;
	if (fold_batch(rec, bt, tx) > 0 || tx->stage.len > 0)
		n++;
	if (tx->stage.len > 0)
		bin_trailer(&tx->stage);
	if (tx->fresh.len > 0)
		bin_trailer(&tx->fresh);
	n += sql_rows(b, "events (at, kind, host, agent, task_id, pid, reason, "
	    "source, workflow)", &bt->events);
	if (sql_rows(b, "memory_snapshots (agent, version, memory, task_id, "
	    "host, created_at)", &bt->snaps)) {
		sb_puts(b, "DELETE FROM memory_snapshots m USING (SELECT agent, "
		    "max(version) AS top FROM memory_snapshots WHERE agent IN (");
		sb_add(b, bt->snap_agents.p, bt->snap_agents.len);
		sb_printf(b, ") GROUP BY agent) x WHERE m.agent = x.agent AND "
		    "m.version <= x.top - %u;", rec->keep);
		n++;
	}
	return b->oom || tx->stage.oom || tx->fresh.oom ? -1 : n;
}

/*
 * The transaction of tx, in tx->sql, and its COPY data in data/len (in
 * the order of its COPY statements); returns how many, -1 when out of
 * memory.  New tasks' rows are copied into tasks; the others go through
 * the stage: copied there, then upserted by the rule of hive_wins.  After
 * a unique violation (tx->restage) the new rows are staged too.
 */
static int
txn_sql(struct rec_txn *tx, const char *data[2], size_t len[2])
{
	struct sbuf *b = &tx->sql;
	int n = 0, direct = tx->fresh.len > 0 && !tx->restage;

	sb_reset(b);
	sb_puts(b, "BEGIN;");
	if (direct) {
		sb_puts(b, "COPY tasks (" TASK_COLUMNS ") FROM STDIN "
		    "(FORMAT binary);");
		data[n] = tx->fresh.p;
		len[n++] = tx->fresh.len;
	}
	if (tx->stage.len > 0 || (tx->fresh.len > 0 && !direct)) {
		if (tx->stage.len > 0) {
			sb_puts(b, "COPY " STAGE " (kind, " TASK_COLUMNS ") FROM "
			    "STDIN (FORMAT binary);");
			data[n] = tx->stage.p;
			len[n++] = tx->stage.len;
		}
		if (tx->fresh.len > 0 && !direct) {
			sb_puts(b, "COPY " STAGE " (" TASK_COLUMNS ") FROM "
			    "STDIN (FORMAT binary);");
			data[n] = tx->fresh.p;
			len[n++] = tx->fresh.len;
		}
		if (tx->attempts)
			sb_puts(b, "EXECUTE hive_rec_attempts;");
		sb_puts(b, "EXECUTE hive_rec_upsert;");
	}
	if (tx->rest.len > 0)
		sb_add(b, tx->rest.p, tx->rest.len);
	sb_puts(b, "COMMIT;");
	return b->oom ? -1 : n;
}

/* ---- Redis side ---- */

static void
rec_group_cb(redisAsyncContext *ac, void *r, void *priv)
{
	redisReply *reply = r;

	if (reply == NULL || reply->type != REDIS_REPLY_ERROR ||
	    strncmp(reply->str, "BUSYGROUP", 9) == 0)
		return;
	/* A queue stream that is gone (Redis lost it, or nobody submitted
	 * to it since): the next read meets NOGROUP and starts over. */
	if (strstr(reply->str, "requires the key to exist") != NULL)
		log_debug("recorder: XGROUP CREATE: %s", reply->str);
	else
		log_warnx("recorder: XGROUP CREATE: %s", reply->str);
}

/* Group at 0: what was submitted before the recorder existed is recorded
 * too.  Sent before the next XREADGROUP on this connection, so that read
 * never meets NOGROUP.  The fixed streams and the configured agents'
 * queues are created if missing (as their workers create them); a queue
 * found by the scan that is gone since fails here and makes the next read
 * fail with NOGROUP, which starts discovery over. */
static void
rec_create_group(struct sup_recorder *rec, int i)
{
	rconn_cmd(rec->rc, rec_group_cb, NULL, rec->streams[i].make ?
	    "XGROUP CREATE %s " REC_GROUP " 0 MKSTREAM" :
	    "XGROUP CREATE %s " REC_GROUP " 0", rec->streams[i].key);
}

static int
rec_add_stream(struct sup_recorder *rec, const char *key, enum rec_kind kind,
    int make)
{
	for (int i = 0; i < rec->nstreams; i++)
		if (strcmp(rec->streams[i].key, key) == 0)
			return 0;
	if (rec->nstreams == REC_MAX_STREAMS) {
		log_warnx("recorder: more than %d streams; %s is not recorded",
		    REC_MAX_STREAMS, key);
		return -1;
	}
	if ((rec->streams[rec->nstreams].key = strdup(key)) == NULL)
		return -1;
	rec->streams[rec->nstreams].kind = kind;
	rec->streams[rec->nstreams].make = make;
	rec->nstreams++;
	rec->st.streams = (unsigned)rec->nstreams;
	rec_create_group(rec, rec->nstreams - 1);
	return 0;
}

static void
rec_fixed_streams(struct sup_recorder *rec)
{
	static const struct { const char *name; enum rec_kind kind; } fixed[] = {
		{ "results", REC_RESULTS }, { "events", REC_EVENTS },
		{ "dead", REC_DEAD },
	};
	char key[HIVE_KEY_MAX];

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (proto_key_named(key, sizeof(key), rec->prefix, fixed[i].name) > 0)
			rec_add_stream(rec, key, fixed[i].kind, 1);
}

static void
rec_forget_streams(struct sup_recorder *rec)
{
	for (int i = 0; i < rec->nstreams; i++)
		free(rec->streams[i].key);
	rec->nstreams = 0;
	rec->gen++;
}

/*
 * Entries read by the recorder of a host that is gone stay pending to its
 * consumer (the host's name) until it comes back, which it may never do:
 * the others take them over.  Every REC_ADOPT_EVERY, per stream:
 *
 *   XPENDING key recorder               -> consumers with entries pending
 *   EXISTS <p>:host:<consumer>           (each hived's heartbeat, reclaim.c)
 *   0: XPENDING key recorder - + n <consumer>  -> their ids
 *      XCLAIM key recorder <us> 1000 <ids> JUSTID
 *
 * then read our pending entries (id 0), which now hold them.  A host only
 * briefly stalled may still write what it read too: the record is keyed,
 * writing an entry twice changes nothing.
 */
struct rec_adopt {
	struct sup_recorder *rec;
	unsigned gen;                /* rec->gen when sent: streams still ours */
	int stream;
	char consumer[128];
};

static void rec_adopt_range(struct sup_recorder *, struct rec_adopt *);

/* Done with one command of a pass.  NULL reply: the connection is gone
 * (rec_redis_state counts the pass over) or rec is being freed. */
static int
adopt_done(struct rec_adopt *a, const redisReply *reply)
{
	if (reply == NULL) {
		free(a);
		return -1;
	}
	a->rec->adopting--;
	if (a->gen != a->rec->gen || reply->type == REDIS_REPLY_ERROR) {
		free(a);
		return -1;
	}
	return 0;
}

static void
rec_adopt_claim_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct rec_adopt *a = priv;
	redisReply *reply = r;
	struct sup_recorder *rec = a->rec;

	if (adopt_done(a, reply) < 0)
		return;
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
		log_warnx("recorder: %s: host %s is gone; %zu %s it had read "
		    "recorded here", rec->streams[a->stream].key, a->consumer,
		    reply->elements, reply->elements == 1 ? "entry" : "entries");
		rec->st.adopted += reply->elements;
		rec->want_pending = 1;
		rec_read(rec);
		if (reply->elements >= REC_ADOPT_PAGE) {
			rec_adopt_range(rec, a);     /* more of them */
			return;
		}
	}
	free(a);
}

static void
rec_adopt_range_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct rec_adopt *a = priv;
	redisReply *reply = r;
	struct sup_recorder *rec = a->rec;
	const char **argv;
	int argc = 0;

	if (adopt_done(a, reply) < 0)
		return;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0 ||
	    (argv = calloc(reply->elements + 8, sizeof(*argv))) == NULL) {
		free(a);
		return;
	}
	argv[argc++] = "XCLAIM";
	argv[argc++] = rec->streams[a->stream].key;
	argv[argc++] = REC_GROUP;
	argv[argc++] = rec->host;
	argv[argc++] = REC_ADOPT_IDLE;
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *e = reply->element[i];
		if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
		    e->element[0]->type == REDIS_REPLY_STRING)
			argv[argc++] = e->element[0]->str;
	}
	argv[argc++] = "JUSTID";
	if (rconn_argv(rec->rc, rec_adopt_claim_cb, a, argc, argv, NULL) == 0)
		rec->adopting++;
	else
		free(a);
	free(argv);
}

/* The next page of a's consumer's pending entries, to be claimed. */
static void
rec_adopt_range(struct sup_recorder *rec, struct rec_adopt *a)
{
	if (rconn_cmd(rec->rc, rec_adopt_range_cb, a, "XPENDING %s " REC_GROUP
	    " - + %d %s", rec->streams[a->stream].key, REC_ADOPT_PAGE,
	    a->consumer) == 0)
		rec->adopting++;
	else
		free(a);
}

static void
rec_adopt_alive_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct rec_adopt *a = priv;
	redisReply *reply = r;

	if (adopt_done(a, reply) < 0)
		return;
	if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
		rec_adopt_range(a->rec, a);  /* no heartbeat: gone */
	else
		free(a);
}

static void
rec_adopt_pending_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct rec_adopt *a = priv;
	redisReply *reply = r, *list;
	struct sup_recorder *rec = a->rec;

	if (adopt_done(a, reply) < 0)
		return;
	/* [count, first, last, [[consumer, count], ...]] */
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 4 &&
	    (list = reply->element[3])->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < list->elements; i++) {
			const redisReply *c = list->element[i];
			struct rec_adopt *b;

			if (c->type != REDIS_REPLY_ARRAY || c->elements < 1 ||
			    c->element[0]->type != REDIS_REPLY_STRING ||
			    strcmp(c->element[0]->str, rec->host) == 0 ||
			    c->element[0]->len >= sizeof(b->consumer) ||
			    (b = malloc(sizeof(*b))) == NULL)
				continue;
			*b = *a;
			memcpy(b->consumer, c->element[0]->str,
			    c->element[0]->len + 1);
			if (rconn_cmd(rec->rc, rec_adopt_alive_cb, b,
			    "EXISTS %s:host:%s", rec->prefix, b->consumer) == 0)
				rec->adopting++;
			else
				free(b);
		}
	}
	free(a);
}

static void
rec_adopt(struct sup_recorder *rec)
{
	/* Stopping: what we took now we would leave pending to us. */
	if (rec->adopting > 0 || rec->finish != NULL || !rconn_is_up(rec->rc))
		return;
	for (int i = 0; i < rec->nstreams; i++) {
		struct rec_adopt *a = calloc(1, sizeof(*a));

		if (a == NULL)
			return;
		a->rec = rec;
		a->gen = rec->gen;
		a->stream = i;
		if (rconn_cmd(rec->rc, rec_adopt_pending_cb, a, "XPENDING %s "
		    REC_GROUP, rec->streams[i].key) == 0)
			rec->adopting++;
		else
			free(a);
	}
}

static void
rec_adopt_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	rec_adopt(w->data);
}

static void
rec_scan_key(const char *key, void *arg)
{
	rec_add_stream(arg, key, REC_QUEUE, 0);
}

static void
rec_scan_done(int ok, void *arg)
{
	struct sup_recorder *rec = arg;

	rec->scanning = 0;
}

static void
rec_scan(struct sup_recorder *rec)
{
	rec->scanning = sup_scan_queues(rec->rc, rec->prefix, rec_scan_key,
	    rec_scan_done, rec) == 0;
}

static void
rec_scan_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup_recorder *rec = w->data;

	if (!rec->scanning)
		rec_scan(rec);
}

static void
rec_xack_cb(redisAsyncContext *ac, void *r, void *priv)
{
	redisReply *reply = r;

	/* A lost XACK only means the entry is read and recorded again, which
	 * changes nothing (see the top). */
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		log_warnx("recorder: XACK: %s", reply->str);
}

/* "<c><n>\r\n": a RESP array or bulk string header. */
static void
sb_resp_head(struct sbuf *b, char c, size_t n)
{
	char buf[24], *p = buf + sizeof(buf);

	*--p = '\n';
	*--p = '\r';
	do
		*--p = (char)('0' + n % 10);
	while ((n /= 10) > 0);
	*--p = c;
	sb_add(b, p, (size_t)(buf + sizeof(buf) - p));
}

static void
sb_resp_bulk(struct sbuf *b, const char *s, size_t n)
{
	sb_resp_head(b, '$', n);
	sb_add(b, s, n);
	sb_add(b, "\r\n", 2);
}

/*
 * One XACK for the entries of stream si: ids[0..n), written in Redis'
 * protocol into cmd (kept from batch to batch).  hiredis' own formatting
 * of an argv of hundreds of ids took a tenth of the recorder's time.
 */
static void
rec_xack(struct sup_recorder *rec, int si, const char **ids, size_t n,
    struct sbuf *cmd)
{
	const char *key = rec->streams[si].key;

	sb_reset(cmd);
	sb_resp_head(cmd, '*', n + 3);
	sb_resp_bulk(cmd, "XACK", 4);
	sb_resp_bulk(cmd, key, strlen(key));
	sb_resp_bulk(cmd, REC_GROUP, sizeof(REC_GROUP) - 1);
	for (size_t i = 0; i < n; i++)
		sb_resp_bulk(cmd, ids[i], strlen(ids[i]));
	/* Out of memory: not acknowledged, so read and recorded again,
	 * which changes nothing (see the top). */
	if (!cmd->oom)
		rconn_formatted(rec->rc, rec_xack_cb, NULL, cmd->p, cmd->len);
}

static void
rec_ack_all(struct sup_recorder *rec, struct rec_txn *tx)
{
	unsigned at[REC_MAX_STREAMS + 1];
	const char **ids;

	if (tx->nacks == 0)
		return;
	/* Its streams were forgotten since (Redis lost them): nothing to
	 * acknowledge; if they were not lost after all, their entries are
	 * read and recorded again, which changes nothing. */
	if (tx->gen != rec->gen) {
		tx->nacks = 0;
		return;
	}
	/* One XACK per stream: the ids by stream (a counting sort), each
	 * stream's in the order read.  (The arrays are kept: a large malloc
	 * per batch made malloc consolidate its free lists every time.) */
	if ((ids = realloc(tx->ackids, tx->capacks * sizeof(*ids))) == NULL) {
		tx->nacks = 0;       /* read and recorded again: no change */
		return;
	}
	tx->ackids = ids;
	memset(at, 0, sizeof(at));
	for (size_t i = 0; i < tx->nacks; i++)
		at[tx->acks[i].stream + 1]++;
	for (int s = 1; s <= rec->nstreams; s++)
		at[s] += at[s - 1];
	for (size_t i = 0; i < tx->nacks; i++)
		ids[at[tx->acks[i].stream]++] = tx->acks[i].id;
	/* at[s] is now where stream s ends, and so where s + 1 begins. */
	for (int s = 0; s < rec->nstreams; s++) {
		unsigned from = s ? at[s - 1] : 0;

		if (at[s] > from)
			rec_xack(rec, s, ids + from, at[s] - from, &tx->ackcmd);
	}
	rec->st.entries += tx->nacks;
	tx->nacks = 0;
	/* A read in flight is answered before these XACKs are done (they
	 * may not even have left us): stopping must not end on its reply,
	 * but on that of a read sent after them. */
	if (rec->reading)
		rec->stale_read = 1;
}

static void rec_write(struct sup_recorder *rec);

static void
rec_setup(struct sup_recorder *rec)
{
	char *sql = rec_prelude();

	if (sql == NULL || sup_pg_prelude(rec->pg, sql) < 0)
		log_warnx("recorder: out of memory setting up the session");
	free(sql);
}

static void
rec_rollback_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct sup_recorder *rec = arg;

	ev_timer_stop(rec->loop, &rec->retry_timer);
	ev_timer_set(&rec->retry_timer, REC_ERR_RETRY, 0.);
	ev_timer_start(rec->loop, &rec->retry_timer);
}

/* The batch is rolled back after a unique violation: write it again. */
static void
rec_restage_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	rec_write(arg);
}

static void
rec_pg_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct sup_recorder *rec = arg;
	struct rec_txn *tx = &rec->tx[rec->wi];
	const char *state;

	if (res == NULL) {
		/* The connection went in the middle: whether it committed is
		 * unknown, and it does not matter (writing twice is a no-op).
		 * Queue it again; pg runs it once it is connected. */
		rec->st.retries++;
		rec_write(rec);
		return;
	}
	if (err != NULL && tx->fresh.len > 0 && !tx->restage &&
	    (state = PQresultErrorField(res, PG_DIAG_SQLSTATE)) != NULL &&
	    strcmp(state, "23505") == 0) {
		/* A row copied as new was there (task_is_new): the same
		 * batch again, every row through the stage. */
		log_debug("recorder: %s; writing the batch again, staged", err);
		tx->restage = 1;
		rec->st.restaged++;
		if (sup_pg_query(rec->pg, "ROLLBACK", 0, NULL, NULL, NULL,
		    rec_restage_cb, rec) < 0)
			rec_rollback_cb(pg, NULL, NULL, rec);
		return;
	}
	if (err != NULL) {
		log_warnx("recorder: batch of %zu entries not recorded, retrying "
		    "in %.0fs: %s", rec->tx[rec->wi].nacks, REC_ERR_RETRY, err);
		rec->st.retries++;
		/* The failed transaction is still open on this connection.
		 * The session's set-up may be what failed: again after it. */
		if (sup_pg_query(rec->pg, "ROLLBACK", 0, NULL, NULL, NULL,
		    rec_rollback_cb, rec) < 0)
			rec_rollback_cb(pg, NULL, NULL, rec);
		rec_setup(rec);
		return;
	}
	rec->writing = 0;
	rec->st.batches++;
	rec_ack_all(rec, tx);
	if (tx->nended > 0) {
		rec->ended((const char *const *)tx->ended, tx->nended,
		    rec->ended_arg);
		clear_ended(tx);
	}
	if (rec->prepared) {
		rec->prepared = 0;
		rec->wi = 1 - rec->wi;
		rec_write(rec);
	}
	if (rec->flush)
		rec_flush(rec);
	if (rec->finish != NULL && !rec->writing && !rconn_is_up(rec->rc) &&
	    rec->held.live == 0)
		rec_finished(rec);
	else
		rec_read(rec);
}

static void
rec_write(struct sup_recorder *rec)
{
	struct rec_txn *tx = &rec->tx[rec->wi];
	const char *data[2];
	size_t len[2];
	int n;

	rec->writing = 1;
	if ((n = txn_sql(tx, data, len)) < 0 || (n > 0 ?
	    sup_pg_query_copyv(rec->pg, tx->sql.p, n, data, len, rec_pg_cb,
	    rec) : sup_pg_query(rec->pg, tx->sql.p, 0, NULL, NULL, NULL,
	    rec_pg_cb, rec)) < 0) {
		ev_timer_set(&rec->retry_timer, REC_ERR_RETRY, 0.);
		ev_timer_start(rec->loop, &rec->retry_timer);
	}
}

static int
rec_stream_index(struct sup_recorder *rec, const char *key)
{
	for (int i = 0; i < rec->nstreams; i++)
		if (strcmp(rec->streams[i].key, key) == 0)
			return i;
	return -1;
}

static int
rec_push_ack(struct sup_recorder *rec, int si, const char *id)
{
	struct rec_txn *tx = rec->fill;

	if (tx->nacks == tx->capacks) {
		size_t cap = tx->capacks ? tx->capacks * 2 : 256;
		struct rec_ack *a = realloc(tx->acks, cap * sizeof(*a));
		if (a == NULL)
			return -1;
		tx->acks = a;
		tx->capacks = cap;
	}
	tx->acks[tx->nacks].stream = si;
	entry_copy(tx->acks[tx->nacks].id, sizeof(tx->acks[0].id), id);
	tx->nacks++;
	return 0;
}

/* While tx[wi] is being written, the next batch is prepared in the
 * other one, and sent when that one has ended. */
static void
rec_fill_begin(struct sup_recorder *rec)
{
	rec->fill = &rec->tx[rec->writing ? 1 - rec->wi : rec->wi];
	rec->fill->nacks = 0;
	rec->fill->gen = rec->gen;
	clear_ended(rec->fill);
}

static void
rec_read_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct sup_recorder *rec = priv;
	redisReply *reply = r;
	struct rec_batch bt;
	size_t entries = 0, most = 0, nresults = 0, bytes = 0, active = 0;
	uint64_t results_ms = 0, ends_ms = 0;
	uint64_t now_ms = (uint64_t)(ev_now(rec->loop) * 1000.);
	int n, stale = rec->stale_read;

	rec->reading = 0;
	rec->stale_read = 0;
	if (reply == NULL)           /* connection lost: state_cb restarts us */
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		/* NOGROUP: a stream vanished (FLUSHALL, DEL).  Start over
		 * from the streams that must exist; the scan finds the rest. */
		log_warnx("recorder: XREADGROUP: %s; looking for streams again",
		    reply->str);
		rec->st.resets++;
		rec_flush(rec);
		rec_forget_streams(rec);
		rec_fixed_streams(rec);
		rec_read_later(rec, 1.0);
		return;
	}
	batch_begin(rec, &bt);
	rec_fill_begin(rec);
	for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
		redisReply *s = reply->element[i];
		int si;
		if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
		    s->element[0]->type != REDIS_REPLY_STRING ||
		    (si = rec_stream_index(rec, s->element[0]->str)) < 0)
			continue;
		if (s->element[1]->elements > 0)
			active++;
		if (s->element[1]->elements > most)
			most = s->element[1]->elements;
		for (size_t k = 0; k < s->element[1]->elements; k++) {
			redisReply *e = s->element[1]->element[k];
			const redisReply *f;
			const char *val = NULL;
			size_t vlen = 0;
			if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
			    e->element[0]->type != REDIS_REPLY_STRING)
				continue;
			entries++;
			/* A pending entry that was deleted reads as nil:
			 * nothing to record, only to acknowledge. */
			if ((f = rconn_entry_field(e->element[1], "m")) != NULL) {
				val = f->str;
				vlen = f->len;
				bytes += vlen;
			}
			/* A queue entry is acknowledged when its task is
			 * written, which may be a later batch (fold_batch). */
			if ((val == NULL || rec->streams[si].kind != REC_QUEUE) &&
			    rec_push_ack(rec, si, e->element[0]->str) < 0)
				goto oom;
			if (val == NULL)
				continue;
			if (rec->streams[si].kind == REC_RESULTS) {
				nresults++;
				results_ms = entry_ms(e->element[0]->str);
			}
			if ((rec->streams[si].kind == REC_RESULTS ||
			    rec->streams[si].kind == REC_DEAD) &&
			    entry_ms(e->element[0]->str) > ends_ms)
				ends_ms = entry_ms(e->element[0]->str);
			switch (rec->streams[si].kind) {
			case REC_QUEUE:
				record_task(rec, &bt, si, e->element[0]->str, val, vlen);
				break;
			case REC_RESULTS:
				record_result(rec, &bt, si, e->element[0]->str, val, vlen);
				break;
			case REC_EVENTS:
				record_event(rec, &bt, si, e->element[0]->str, val, vlen);
				break;
			case REC_DEAD:
				record_dead(rec, &bt, si, e->element[0]->str, val, vlen);
				break;
			}
		}
	}
	if (entries > 0) {
		rec->entry_bytes = bytes / entries + 1;
		rec->active = active;
	}
	/* How far the results are read: held queue entries older than
	 * that by REC_HOLD_MS will not meet their result in the next read. */
	if (ends_ms > rec->ends_seen)
		rec->ends_seen = ends_ms;
	if (nresults < rec->read_count)
		rec->results_clock = now_ms;
	else if (results_ms > rec->results_clock)
		rec->results_clock = results_ms;
	if (entries == 0 && rec->writing) {
		/* Nothing new while a batch is written: its end reads on. */
		batch_end(rec, &bt);
		return;
	}
	if (entries == 0 && rec->held.live == 0) {
		batch_end(rec, &bt);
		rec->st.caught_up = !rec->pending_phase;
		if (rec->finish != NULL && !rec->pending_phase && !stale) {
			rec_finished(rec);
			return;
		}
		rec->pending_phase = 0;
		rec_read(rec);
		return;
	}
	if (entries == 0)
		rec->pending_phase = 0;
	if ((n = build_txn(rec, &bt)) < 0)
		goto oom;
	batch_end(rec, &bt);
	/* No stream gave a full batch: nothing is waiting behind this one.
	 * (Held entries do not count: they are at the head, and not in
	 * PostgreSQL, so recovery, which waits for this, cannot meet them.) */
	rec->st.caught_up = !rec->pending_phase && most < rec->read_count;
	rec->st.held = rec->held.live;
	if (n == 0) {                /* nothing to write: only acks */
		rec_ack_all(rec, rec->fill);
		rec_read(rec);
		return;
	}
	if (rec->writing) {
		rec->prepared = 1;
		return;
	}
	rec_write(rec);
	rec_read(rec);
	return;
oom:
	batch_end(rec, &bt);
	rec->fill->nacks = 0;
	clear_ended(rec->fill);
	log_warnx("recorder: out of memory; reading again in %.0fs", REC_ERR_RETRY);
	rec->pending_phase = 1;      /* what we read stays pending: re-read it */
	rec_read_later(rec, REC_ERR_RETRY);
}

/* Entries per stream for the next read: the configured count, less when
 * entries are large, so that a batch holds about REC_BATCH_BYTES (its
 * SQL and COPY data about twice that) and not, with 1 MiB tasks on many
 * queues, gigabytes. */
static size_t
rec_count(const struct sup_recorder *rec)
{
	size_t per = REC_BATCH_BYTES / (rec->entry_bytes *
	    (rec->active > 0 ? rec->active : 1));

	return per < 1 ? 1 : per < rec->count ? per : rec->count;
}

static void
rec_read(struct sup_recorder *rec)
{
	const char **argv;
	int argc = 0, n = rec->nstreams;
	char count[16], block[16];

	/* Entries were claimed (rec_adopt): read our pending ones, once no
	 * batch is being written (that would read its entries again). */
	if (rec->want_pending && !rec->reading && !rec->writing) {
		rec->want_pending = 0;
		rec->pending_phase = 1;
	}
	/* One batch written and one prepared at most; reading our pending
	 * entries again while some are being written would read those. */
	if (rec->reading || (rec->writing && (rec->prepared ||
	    rec->pending_phase)) || ev_is_active(&rec->read_timer) ||
	    !rconn_is_up(rec->rc) || n == 0)
		return;
	if ((argv = calloc((size_t)(2 * n + 10), sizeof(*argv))) == NULL)
		return;
	rec->read_count = rec->st.count = rec_count(rec);
	snprintf(count, sizeof(count), "%zu", rec->read_count);
	argv[argc++] = "XREADGROUP";
	argv[argc++] = "GROUP";
	argv[argc++] = REC_GROUP;
	argv[argc++] = rec->host;
	argv[argc++] = "COUNT";
	argv[argc++] = count;
	/* While a batch is written, the read does not block: the XACKs
	 * after its COMMIT go on this connection, behind the read. */
	if (!rec->pending_phase && !rec->writing && rec->finish == NULL) {
		snprintf(block, sizeof(block), "%d",
		    rec->held.live > 0 ? REC_HOLD_LOOK_MS : REC_BLOCK_MS);
		argv[argc++] = "BLOCK";
		argv[argc++] = block;
	}
	argv[argc++] = "STREAMS";
	for (int i = 0; i < n; i++)
		argv[argc++] = rec->streams[i].key;
	for (int i = 0; i < n; i++)
		argv[argc++] = rec->pending_phase ? "0" : ">";
	if (rconn_argv(rec->rc, rec_read_cb, rec, argc, argv, NULL) == 0)
		rec->reading = 1;
	free(argv);
}

static void
rec_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	rec_write(w->data);
}

static void
rec_read_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	rec_read(w->data);
}

static void
rec_read_later(struct sup_recorder *rec, double after)
{
	ev_timer_stop(rec->loop, &rec->read_timer);
	ev_timer_set(&rec->read_timer, after, 0.);
	ev_timer_start(rec->loop, &rec->read_timer);
}

/*
 * Redis went away, or lost our streams: the held entries are written now
 * (as queued; their results, if any come, update the rows), for Redis may
 * have lost them, and recovery puts back only what PostgreSQL has.  If it
 * did not lose them, they are read again from our pending entries, and
 * writing them twice changes nothing.  With a batch in flight and another
 * prepared, this waits for the first (rec_pg_cb).
 */
static void
rec_flush(struct sup_recorder *rec)
{
	struct rec_batch bt;
	int n;

	if (rec->held.live == 0) {
		rec->flush = 0;
		return;
	}
	rec->flush = 1;
	if (rec->writing && rec->prepared)
		return;
	batch_begin(rec, &bt);
	rec_fill_begin(rec);
	n = build_txn(rec, &bt);
	batch_end(rec, &bt);
	rec->flush = rec->held.live > 0;     /* out of memory: later */
	rec->st.held = rec->held.live;
	if (n < 0) {
		rec->fill->nacks = 0;
		clear_ended(rec->fill);
		return;
	}
	rec->st.flushed += rec->fill->nacks;
	log_notice("recorder: Redis went away or lost streams: %zu held queue "
	    "entries written to PostgreSQL now", rec->fill->nacks);
	if (rec->writing)
		rec->prepared = 1;
	else
		rec_write(rec);
}

static void
rec_redis_state(struct rconn *rc, int up, void *arg)
{
	struct sup_recorder *rec = arg;

	rec->reading = 0;
	if (!up) {
		rec->adopting = 0;   /* theirs got NULL replies */
		rec_flush(rec);
		/* Stopping, and nothing more can be read: done once written. */
		if (rec->finish != NULL && !rec->writing && rec->held.live == 0)
			rec_finished(rec);
		return;
	}
	/* Whatever we read and did not acknowledge is pending to us: read
	 * that first.  A transaction in flight goes on: its acks are sent
	 * after COMMIT on this new connection. */
	rec->pending_phase = 1;
	for (int i = 0; i < rec->nstreams; i++)
		rec_create_group(rec, i);
	rec_fixed_streams(rec);
	if (!rec->scanning)
		rec_scan(rec);
	rec_read(rec);
}

void
sup_recorder_finish(struct sup_recorder *rec, void (*done)(void *),
    void *arg)
{
	rec->finish = done;
	rec->finish_arg = arg;
	/* A read already sent may have been answered before the last
	 * results came: only a later one that finds nothing ends it. */
	rec->stale_read = rec->reading;
	if (!rconn_is_up(rec->rc)) {
		rec_flush(rec);
		if (!rec->writing && rec->held.live == 0)
			rec_finished(rec);
		return;
	}
	/* A blocking read in flight ends within REC_BLOCK_MS; the next ones
	 * do not block. */
	ev_timer_stop(rec->loop, &rec->read_timer);
	rec_read(rec);
}

struct sup_recorder *
sup_recorder_new(struct ev_loop *loop, struct sup_pg *pg,
    const struct sup_recorder_opts *o)
{
	struct sup_recorder *rec = calloc(1, sizeof(*rec));
	char err[256];

	if (rec == NULL)
		return NULL;
	rec->loop = loop;
	rec->pg = pg;
	rec->keep = o->snapshots_keep ? o->snapshots_keep : 10;
	rec->count = o->batch ? o->batch : 256;
	rec->hold_ms = o->hold_ms ? o->hold_ms : REC_HOLD_MS;
	rec->ended = o->ended;
	rec->ended_arg = o->ended_arg;
	rec->entry_bytes = 4096;     /* until a read says otherwise */
	rec->active = 3;
	rec->prefix = strdup(o->prefix);
	rec->host = strdup(o->host);
	rec->ends = calloc(1, sizeof(*rec->ends));
	if (rec->prefix == NULL || rec->host == NULL || rec->ends == NULL)
		goto err;
	ev_timer_init(&rec->scan_timer, rec_scan_timer_cb, REC_SCAN_EVERY,
	    REC_SCAN_EVERY);
	rec->scan_timer.data = rec;
	ev_timer_start(loop, &rec->scan_timer);
	ev_timer_init(&rec->adopt_timer, rec_adopt_timer_cb, REC_ADOPT_EVERY,
	    REC_ADOPT_EVERY);
	rec->adopt_timer.data = rec;
	ev_timer_start(loop, &rec->adopt_timer);
	ev_init(&rec->retry_timer, rec_retry_cb);
	rec->retry_timer.data = rec;
	ev_init(&rec->read_timer, rec_read_timer_cb);
	rec->read_timer.data = rec;
	rec->fill = &rec->tx[0];
	rec_setup(rec);
	rec->rc = rconn_new(loop, o->redis, "redis(recorder)", rec_redis_state,
	    rec, err, sizeof(err));
	if (rec->rc == NULL) {
		log_warnx("recorder: %s", err);
		goto err;
	}
	/* Its reads are replies of thousands of objects: built in blocks
	 * reused from one to the next, not a malloc each (out of memory:
	 * built as usual). */
	(void)rconn_reply_arena(rec->rc);
	return rec;
err:
	sup_recorder_free(rec);
	return NULL;
}

void
sup_recorder_free(struct sup_recorder *rec)
{
	if (rec == NULL)
		return;
	ev_timer_stop(rec->loop, &rec->scan_timer);
	ev_timer_stop(rec->loop, &rec->adopt_timer);
	ev_timer_stop(rec->loop, &rec->retry_timer);
	ev_timer_stop(rec->loop, &rec->read_timer);
	if (rec->pg != NULL)
		sup_pg_forget(rec->pg, rec);
	rconn_free(rec->rc);
	rec_forget_streams(rec);
	held_free(&rec->held);
	free(rec->spare);
	for (int i = 0; i < 2; i++) {
		free(rec->tx[i].sql.p);
		free(rec->tx[i].stage.p);
		free(rec->tx[i].fresh.p);
		free(rec->tx[i].rest.p);
		free(rec->tx[i].acks);
		free(rec->tx[i].ackids);
		free(rec->tx[i].ackcmd.p);
		clear_ended(&rec->tx[i]);
		free(rec->tx[i].ended);
	}
	free(rec->ends);
	free(rec->prefix);
	free(rec->host);
	free(rec);
}

void
sup_recorder_add_queue(struct sup_recorder *rec, const char *key)
{
	rec_add_stream(rec, key, REC_QUEUE, 1);
}

void
sup_recorder_stats(const struct sup_recorder *rec, struct sup_recorder_stats *out)
{
	*out = rec->st;
}
