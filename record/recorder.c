/*
 * recorder.c - Redis streams into PostgreSQL, in batches (record.h): the
 * loop, read -> fold -> write -> acknowledge, and its Redis side (streams,
 * groups, XACK).  Its parts are listed in rec.h.
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
 * a final state (completed, failed, dead) is never replaced, but for a
 * dead attempt that ran, by a later one (a retried dead letter), and an
 * earlier attempt's dead letter or failure never ends a later attempt;
 * otherwise a higher attempt wins, then a later state (queued < running
 * < final).
 * The same rule folds one batch in C (state_wins; hive_wins() in SQL).
 */
#include "rec.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "sreader.h"

#define REC_SCAN_EVERY   2.0     /* seconds between looks for new queues */
#define REC_BLOCK_MS     1000
#define REC_BATCH_BYTES  (16u << 20)  /* stream entries' bytes per read */
#define REC_ADOPT_EVERY  5.0     /* seconds between looks for dead hosts' entries */
/* Held entries are looked at again at least this often when idle. */
#define REC_HOLD_LOOK_MS 250
/* Ids per generation of rec->ends. */
#define REC_ENDS_GEN     16384

static void rec_flush(struct sup_recorder *);
static void rec_read_later(struct sup_recorder *, double);
static void rec_write(struct sup_recorder *);

/* sup_recorder_finish's end. */
static void
rec_finished(struct sup_recorder *rec)
{
	void (*done)(void *) = rec->finish;

	rec->finish = NULL;
	if (done != NULL)
		done(rec->finish_arg);
}

/* ---- Redis side ---- */

/* Group at 0: what was submitted before the recorder existed is recorded
 * too.  Sent before the next XREADGROUP on this connection, so that read
 * never meets NOGROUP.  The fixed streams and the configured agents'
 * queues are created if missing (as their workers create them); a queue
 * found by the scan that is gone since fails here and makes the next read
 * fail with NOGROUP, which starts discovery over. */
static void
rec_create_group(struct sup_recorder *rec, int i)
{
	sreader_group(rec->rc, rec->streams[i].key, REC_GROUP,
	    rec->streams[i].make, "recorder");
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

/* "<c><n>\r\n": a RESP array or bulk string header.  -1: out of memory. */
static int
resp_head(struct hbuf *b, char c, size_t n)
{
	char buf[24], *p = buf + sizeof(buf);

	*--p = '\n';
	*--p = '\r';
	do
		*--p = (char)('0' + n % 10);
	while ((n /= 10) > 0);
	*--p = c;
	return hbuf_add(b, p, (size_t)(buf + sizeof(buf) - p));
}

static int
resp_bulk(struct hbuf *b, const char *s, size_t n)
{
	return resp_head(b, '$', n) | hbuf_add(b, s, n) |
	    hbuf_add(b, "\r\n", 2);
}

/*
 * One XACK for the entries of stream si: ids[0..n), written in Redis'
 * protocol into cmd (kept from batch to batch).  hiredis' own formatting
 * of an argv of hundreds of ids took a tenth of the recorder's time.
 */
static void
rec_xack(struct sup_recorder *rec, int si, const char **ids, size_t n,
    struct hbuf *cmd)
{
	const char *key = rec->streams[si].key;
	int oom;

	hbuf_reset(cmd);
	oom = resp_head(cmd, '*', n + 3) | resp_bulk(cmd, "XACK", 4) |
	    resp_bulk(cmd, key, strlen(key)) |
	    resp_bulk(cmd, REC_GROUP, sizeof(REC_GROUP) - 1);
	for (size_t i = 0; i < n; i++)
		oom |= resp_bulk(cmd, ids[i], strlen(ids[i]));
	/* Out of memory: not acknowledged, so read and recorded again,
	 * which changes nothing (see the top). */
	if (!oom)
		rconn_formatted(rec->rc, rec_xack_cb, NULL, cmd->p, cmd->len);
}

static void
rec_ack_all(struct sup_recorder *rec, struct rec_txn *tx)
{
	unsigned at[REC_MAX_STREAMS + 1];
	const char **ids;

	rec_stats_apply(rec, tx);
	/* Not the other one's, done while this one is written: the results
	 * read up to its clock are not all committed yet. */
	if (tx == &rec->tx[rec->wi] && tx->clock > rec->done_clock)
		rec->done_clock = tx->clock;
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
	rec->fsm = rec_fsm_step(rec->fsm, REC_EV_STALE);
}

static void
rec_setup(struct sup_recorder *rec)
{
	if (sup_pg_prelude(rec->pg, rec_txn_prelude) < 0)
		log_warnx("recorder: out of memory setting up the session");
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
	int next;

	if (res == NULL) {
		/* The connection went in the middle: whether it committed is
		 * unknown, and it does not matter (writing twice is a no-op).
		 * Queue it again; pg runs it once it is connected. */
		rec->st.retries++;
		rec_write(rec);
		return;
	}
	if (err != NULL && tx->fresh.rows > 0 && !tx->restage &&
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
	next = rec_fsm_prepared(rec->fsm);
	rec->fsm = rec_fsm_step(rec->fsm, REC_EV_COMMIT);
	rec->st.batches++;
	rec_ack_all(rec, tx);
	if (tx->nended > 0) {
		rec->ended((const char *const *)tx->ended, tx->nended,
		    rec->ended_arg);
		rec_txn_clear_ended(tx);
	}
	if (next) {                  /* the prepared one is written now */
		rec->wi = 1 - rec->wi;
		rec_write(rec);
	}
	if (rec->flush)
		rec_flush(rec);
	if (rec->finish != NULL && !rec_fsm_writing(rec->fsm) &&
	    !rconn_is_up(rec->rc) && rec->held.live == 0)
		rec_finished(rec);
	else
		rec_read(rec);
}

static void
rec_write(struct sup_recorder *rec)
{
	struct rec_txn *tx = &rec->tx[rec->wi];
	const char *data[REC_TXN_COPIES];
	size_t len[REC_TXN_COPIES];
	int n;

	rec->fsm = rec_fsm_step(rec->fsm, REC_EV_WRITE);
	if ((n = rec_txn_sql(tx, data, len)) < 0 || (n > 0 ?
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

int
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
	rec_entry_copy(tx->acks[tx->nacks].id, sizeof(tx->acks[0].id), id);
	tx->nacks++;
	return 0;
}

/* While tx[wi] is being written, the next batch is prepared in the
 * other one, and sent when that one has ended. */
static void
rec_fill_begin(struct sup_recorder *rec)
{
	rec->fill = &rec->tx[rec_fsm_writing(rec->fsm) ? 1 - rec->wi : rec->wi];
	rec->fill->nacks = 0;
	rec->fill->nstats = 0;
	rec->fill->clock = 0;
	rec->fill->gen = rec->gen;
	rec_txn_clear_ended(rec->fill);
}

/* What a read gave, beside its entries. */
struct rec_read_sum {
	size_t entries;              /* entries read (deleted ones too) */
	size_t most;                 /* of one stream, at most */
	size_t active;               /* streams that gave some */
	size_t bytes;                /* of their messages */
	size_t nresults;             /* results read */
	uint64_t results_ms;         /* the last result's time */
	uint64_t ends_ms;            /* the newest result's or dead letter's */
};

/* One entry e of stream si into bt (and the acks of rec->fill).  -1:
 * out of memory. */
static int
rec_read_entry(struct sup_recorder *rec, struct rec_batch *bt, int si,
    const redisReply *e, struct rec_read_sum *sum)
{
	enum rec_kind kind = rec->streams[si].kind;
	const char *id = e->element[0]->str;
	const redisReply *f;

	sum->entries++;
	/* A pending entry that was deleted reads as nil: nothing to
	 * record, only to acknowledge. */
	if ((f = rconn_entry_field(e->element[1], "m")) == NULL)
		return rec_push_ack(rec, si, id);
	sum->bytes += f->len;
	/* A queue entry is acknowledged when its task is written, which
	 * may be a later batch (fold_batch); a bad one now. */
	if (kind != REC_QUEUE && rec_push_ack(rec, si, id) < 0)
		return -1;
	if (kind == REC_RESULTS) {
		sum->nresults++;
		sum->results_ms = rec_entry_ms(id);
	}
	if ((kind == REC_RESULTS || kind == REC_DEAD) &&
	    rec_entry_ms(id) > sum->ends_ms)
		sum->ends_ms = rec_entry_ms(id);
	if (rec_decode(rec, bt, si, id, f->str, f->len) < 0)
		rec_push_ack(rec, si, id);
	return 0;
}

/*
 * An XREADGROUP reply, [[key, [[id, [field, value, ...]], ...]], ...],
 * into bt.  Streams that are not ours (forgotten since the read was sent)
 * and malformed parts are passed over.  -1: out of memory.
 */
static int
rec_read_reply(struct sup_recorder *rec, const redisReply *reply,
    struct rec_batch *bt, struct rec_read_sum *sum)
{
	for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY &&
	    i < reply->elements; i++) {
		const redisReply *list;
		const char *key;
		int si;

		if ((list = sreader_stream(reply, i, &key)) == NULL ||
		    (si = rec_stream_index(rec, key)) < 0)
			continue;
		if (list->elements > 0)
			sum->active++;
		if (list->elements > sum->most)
			sum->most = list->elements;
		for (size_t k = 0; k < list->elements; k++) {
			const redisReply *e = list->element[k];

			if (sreader_entry_id(e) == NULL)
				continue;
			if (rec_read_entry(rec, bt, si, e, sum) < 0)
				return -1;
		}
	}
	return 0;
}

/* The clocks a read moves: the mean entry size, how far the results
 * are read (held queue entries older than that by REC_HOLD_MS will not
 * meet their result in the next read). */
static void
rec_read_clocks(struct sup_recorder *rec, const struct rec_read_sum *sum)
{
	uint64_t now_ms = (uint64_t)(ev_now(rec->loop) * 1000.);

	if (sum->entries > 0) {
		rec->entry_bytes = sum->bytes / sum->entries + 1;
		rec->active = sum->active;
	}
	if (sum->ends_ms > rec->ends_seen)
		rec->ends_seen = sum->ends_ms;
	if (sum->nresults < rec->read_count)
		rec->results_clock = now_ms;
	else if (sum->results_ms > rec->results_clock)
		rec->results_clock = sum->results_ms;
}

/* XREADGROUP failed (NOGROUP: a stream vanished, FLUSHALL, DEL).  Start
 * over from the streams that must exist; the scan finds the rest. */
static void
rec_read_failed(struct sup_recorder *rec, const char *err)
{
	log_warnx("recorder: XREADGROUP: %s; looking for streams again", err);
	rec->st.resets++;
	rec_flush(rec);
	rec_forget_streams(rec);
	rec_fixed_streams(rec);
	rec_read_later(rec, 1.0);
}

/*
 * A read found nothing.  Stopping, and the read began after everything
 * it had to see: done.  Otherwise read on (new entries, if these were
 * our pending ones).
 */
static void
rec_read_none(struct sup_recorder *rec, int stale)
{
	rec->st.caught_up = !rec->fsm.pending;
	/* Nothing read, nothing held, nothing written: all is recorded. */
	if (!rec->fsm.pending)
		rec->done_clock = (uint64_t)(ev_now(rec->loop) * 1000.);
	if (rec->finish != NULL && !rec->fsm.pending && !stale) {
		rec_finished(rec);
		return;
	}
	rec->fsm = rec_fsm_step(rec->fsm, REC_EV_CAUGHT_UP);
	rec_read(rec);
}

/* A batch is folded into rec->fill: write it, or only acknowledge it, or
 * prepare it behind the one being written; and read on. */
static void
rec_read_send(struct sup_recorder *rec, int n)
{
	if (n == 0) {                /* nothing to write: only acks */
		rec_ack_all(rec, rec->fill);
		rec_read(rec);
		return;
	}
	if (rec_fsm_writing(rec->fsm)) {
		rec->fsm = rec_fsm_step(rec->fsm, REC_EV_PREPARE);
		return;
	}
	rec_write(rec);
	rec_read(rec);
}

static void
rec_read_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct sup_recorder *rec = priv;
	redisReply *reply = r;
	struct rec_batch bt;
	struct rec_read_sum sum = { 0 };
	int n, stale = rec->fsm.stale;

	rec->fsm = rec_fsm_step(rec->fsm, REC_EV_READ_END);
	if (reply == NULL)           /* connection lost: state_cb restarts us */
		return;
	if (sreader_failed(reply)) {
		rec_read_failed(rec, reply->str);
		return;
	}
	rec_batch_begin(rec, &bt);
	rec_fill_begin(rec);
	if (rec_read_reply(rec, reply, &bt, &sum) < 0)
		goto oom;
	rec_read_clocks(rec, &sum);
	rec->fill->clock = rec->results_clock;
	if (sum.entries == 0 &&
	    (rec_fsm_writing(rec->fsm) || rec->held.live == 0)) {
		rec_batch_end(rec, &bt);
		/* Nothing new while a batch is written: its end reads on. */
		if (!rec_fsm_writing(rec->fsm))
			rec_read_none(rec, stale);
		return;
	}
	if (sum.entries == 0)
		rec->fsm = rec_fsm_step(rec->fsm, REC_EV_CAUGHT_UP);
	if ((n = rec_build_txn(rec, &bt)) < 0)
		goto oom;
	rec_batch_end(rec, &bt);
	/* No stream gave a full batch: nothing is waiting behind this one.
	 * (Held entries do not count: they are at the head, and not in
	 * PostgreSQL, so recovery, which waits for this, cannot meet them.) */
	rec->st.caught_up = !rec->fsm.pending && sum.most < rec->read_count;
	rec->st.held = rec->held.live;
	rec_read_send(rec, n);
	return;
oom:
	rec_batch_end(rec, &bt);
	rec->fill->nacks = 0;
	rec->fill->nstats = 0;
	rec_txn_clear_ended(rec->fill);
	log_warnx("recorder: out of memory; reading again in %.0fs", REC_ERR_RETRY);
	/* What we read stays pending: re-read it. */
	rec->fsm = rec_fsm_step(rec->fsm, REC_EV_PENDING);
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

void
rec_read(struct sup_recorder *rec)
{
	const char *keys[REC_MAX_STREAMS];
	struct sreader_read rd = { .group = REC_GROUP, .consumer = rec->host,
	    .keys = keys };

	/* Entries were claimed (rec_adopt): read our pending ones, once no
	 * batch is being written (that would read its entries again). */
	rec->fsm = rec_fsm_step(rec->fsm, REC_EV_MAY_READ);
	if (!rec_fsm_may_read(rec->fsm) || ev_is_active(&rec->read_timer) ||
	    !rconn_is_up(rec->rc) || rec->nstreams == 0)
		return;
	rec->read_count = rec->st.count = rec_count(rec);
	rd.count = rec->read_count;
	rd.pending = rec->fsm.pending;
	/* While a batch is written, the read does not block: the XACKs
	 * after its COMMIT go on this connection, behind the read. */
	if (!rec->fsm.pending && !rec_fsm_writing(rec->fsm) &&
	    rec->finish == NULL)
		rd.block_ms = rec->held.live > 0 ? REC_HOLD_LOOK_MS : REC_BLOCK_MS;
	for (int i = 0; i < rec->nstreams; i++)
		keys[i] = rec->streams[i].key;
	rd.nkeys = rec->nstreams;
	if (sreader_send(rec->rc, &rd, rec_read_cb, rec) == 0)
		rec->fsm = rec_fsm_step(rec->fsm, REC_EV_READ);
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
	if (rec_fsm_prepared(rec->fsm))
		return;
	rec_batch_begin(rec, &bt);
	rec_fill_begin(rec);
	n = rec_build_txn(rec, &bt);
	rec_batch_end(rec, &bt);
	rec->flush = rec->held.live > 0;     /* out of memory: later */
	rec->st.held = rec->held.live;
	if (n < 0) {
		rec->fill->nacks = 0;
		rec->fill->nstats = 0;
		rec_txn_clear_ended(rec->fill);
		return;
	}
	rec->st.flushed += rec->fill->nacks;
	log_notice("recorder: Redis went away or lost streams: %zu held queue "
	    "entries written to PostgreSQL now", rec->fill->nacks);
	if (rec_fsm_writing(rec->fsm))
		rec->fsm = rec_fsm_step(rec->fsm, REC_EV_PREPARE);
	else
		rec_write(rec);
}

static void
rec_redis_state(struct rconn *rc, int up, void *arg)
{
	struct sup_recorder *rec = arg;

	/* No read is in flight on a new connection, nor on a lost one (its
	 * callback had its NULL reply). */
	rec->fsm = rec_fsm_step(rec->fsm, REC_EV_READ_END);
	if (!up) {
		rec->adopting = 0;   /* theirs got NULL replies */
		rec_flush(rec);
		/* Stopping, and nothing more can be read: done once written. */
		if (rec->finish != NULL && !rec_fsm_writing(rec->fsm) &&
		    rec->held.live == 0)
			rec_finished(rec);
		return;
	}
	/* Whatever we read and did not acknowledge is pending to us: read
	 * that first.  A transaction in flight goes on: its acks are sent
	 * after COMMIT on this new connection. */
	rec->fsm = rec_fsm_step(rec->fsm, REC_EV_PENDING);
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
	rec->fsm = rec_fsm_step(rec->fsm, REC_EV_STALE);
	if (!rconn_is_up(rec->rc)) {
		rec_flush(rec);
		if (!rec_fsm_writing(rec->fsm) && rec->held.live == 0)
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
	rec->tstats = o->stats;
	rec->event = o->event;
	rec->event_arg = o->event_arg;
	rec->done_clock = (uint64_t)(ev_now(loop) * 1000.);
	rec->entry_bytes = 4096;     /* until a read says otherwise */
	rec->active = 3;
	rec->prefix = strdup(o->prefix);
	rec->host = strdup(o->host);
	held_init(&rec->held, REC_HOLD_MAX, REC_HOLD_BYTES);
	rec->ends = idset_new(REC_ENDS_GEN);
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
	for (int i = 0; i < 2; i++)
		rec_txn_free(&rec->tx[i]);
	idset_free(rec->ends);
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
	out->backlog = rec->held.live;
	if (rec_fsm_writing(rec->fsm))
		out->backlog += rec->tx[rec->wi].nacks;
	if (rec_fsm_prepared(rec->fsm))
		out->backlog += rec->tx[1 - rec->wi].nacks;
	out->clock_ms = rec->done_clock;
}
