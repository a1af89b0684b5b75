/*
 * reclaim.c - dead consumers' tasks requeued, streams trimmed (record.h).
 *
 * One pass, every scan_ms:
 *
 *   SCAN queue streams --> XINFO CONSUMERS key workers      (per stream)
 *        --> consumer with pending > 0: EXISTS <p>:alive:<consumer>
 *        --> missing: reclaim(key, consumer, min idle = alive ttl)
 *
 *   reclaim (common/sclaim): XPENDING key workers IDLE t - + 100 consumer
 *        --> XCLAIM key workers hived@<host> t ids...   (atomic: ours now)
 *        --> per entry, one MULTI/EXEC:
 *              requeue: XADD key (attempt + 1), XACK key workers id
 *              or give up: XADD dead, XADD results (failed), XACK
 *
 * Every step is a callback carrying a small heap context; a lost
 * connection ends the pass (callbacks get NULL) and the next pass starts
 * over: everything it would have done is still pending in Redis.
 */
#include "record.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"
#include "log.h"
#include "rconn.h"
#include "sclaim.h"

#define RC_BATCH       100     /* entries claimed per XCLAIM */
#define RC_MAX_STREAMS 1024

struct sup_reclaim {
	struct ev_loop *loop;
	struct rconn *rc;
	struct sup_reclaim_opts o;
	char *prefix, *host;
	char me[HIVE_AGENT_MAX + HIVE_HOST_MAX + 8];   /* our claiming consumer */
	char *streams[RC_MAX_STREAMS];   /* queue streams seen by the last scan */
	int nstreams;
	int scanning;
	ev_timer beat;                   /* host key, and the pass schedule */
	ev_tstamp last_scan, last_trim;
	int want_trim;
	struct sup_reclaim_stats st;
};

/* One consumer on one stream being reclaimed (common/sclaim). */
struct rcl_job {
	struct sup_reclaim *r;
	char key[HIVE_KEY_MAX];
	char consumer[HIVE_AGENT_MAX + HIVE_HOST_MAX + 8];
};

/* "agent/3@host" -> "agent"; 0 or -1. */
static int
consumer_agent(const char *consumer, char *agent, size_t len)
{
	size_t n = strcspn(consumer, "/@");

	if (n == 0 || n >= len)
		return -1;
	memcpy(agent, consumer, n);
	agent[n] = '\0';
	return 0;
}

/* Where a requeued task goes: back to its queue, except that a direct
 * queue belongs to one instance, which is gone: its agent's queue. */
static void
requeue_key(struct sup_reclaim *r, const char *key, const char *consumer,
    char *out, size_t len)
{
	char direct[HIVE_KEY_MAX], agent[HIVE_NAME_MAX + 1];

	snprintf(direct, sizeof(direct), "%s:direct:", r->prefix);
	if (strncmp(key, direct, strlen(direct)) == 0 &&
	    consumer_agent(key + strlen(direct), agent, sizeof(agent)) == 0 &&
	    proto_key_agent_queue(out, len, r->prefix, agent, HIVE_PRIO_DEFAULT) > 0)
		return;
	snprintf(out, len, "%s", key);
}

static void
send_multi(struct sup_reclaim *r)
{
	rconn_cmd(r->rc, rconn_log_error, "reclaim", "MULTI");
}

static void
send_exec(struct sup_reclaim *r)
{
	rconn_cmd(r->rc, rconn_log_error, "reclaim", "EXEC");
}

/* Give up on an entry: dead letter with the code and reason, a failed
 * result so whoever waits for it learns, acknowledge.  t may be NULL
 * (malformed: the dead letter still names the task when its id can be
 * read).  attempt is the attempts made. */
static void
rcl_give_up(struct rcl_job *j, const char *id, const char *raw, size_t rawlen,
    const struct hive_task *t, unsigned attempt, enum hive_code code,
    const char *reason)
{
	struct sup_reclaim *r = j->r;
	struct hive_dead d = { 0 };
	struct hive_result res = { 0 };
	struct proto_err err;
	msgpack_sbuffer sb, sr;
	char key[HIVE_KEY_MAX], agent[HIVE_AGENT_MAX + 1];
	uint64_t now = proto_now_ms();

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&sr);
	snprintf(agent, sizeof(agent), "%.*s", (int)strcspn(j->consumer, "@"),
	    j->consumer);
	if (t != NULL) {
		d.id = t->id;
		d.workflow = t->workflow;
	} else {
		(void)proto_peek_id(raw, rawlen, &d.id);
	}
	d.reason = HIVE_STR(reason);
	d.code = code;
	d.stream = HIVE_STR(j->key);
	d.entry = HIVE_STR(id);
	d.agent = HIVE_STR(agent);
	/* deliveries without end could count past the limit */
	d.attempt = attempt > HIVE_ATTEMPTS_MAX ? HIVE_ATTEMPTS_MAX : attempt;
	d.ts_ms = now;
	d.raw.ptr = raw;
	d.raw.len = rawlen > HIVE_RAW_MAX ? HIVE_RAW_MAX : (uint32_t)rawlen;
	if (proto_encode_dead(&sb, &d, &err) < 0) {
		char eb[128];
		log_warnx("reclaim: dead letter for %s %s: %s", j->key, id,
		    proto_strerror(&err, eb, sizeof(eb)));
		goto out;
	}
	if (t != NULL) {
		res.id = t->id;
		res.agent = HIVE_STR(agent);
		res.host = HIVE_STR(r->host);
		res.status = HIVE_STATUS_ERROR;
		res.error = HIVE_STR(reason);
		res.code = code;
		res.attempt = d.attempt;
		res.started_ms = res.finished_ms = now;
		res.workflow = t->workflow;
		res.traceparent = t->traceparent;
		if (proto_encode_result(&sr, &res, &err) < 0)
			sr.size = 0;
	}
	send_multi(r);
	proto_key_named(key, sizeof(key), r->prefix, "dead");
	rconn_cmd(r->rc, rconn_log_error, "reclaim", "XADD %s * m %b", key,
	    sb.data, sb.size);
	if (sr.size > 0) {
		proto_key_named(key, sizeof(key), r->prefix, "results");
		rconn_cmd(r->rc, rconn_log_error, "reclaim",
		    "XADD %s * m %b", key, sr.data, sr.size);
		if (t->reply_to.len > 0)
			rconn_cmd(r->rc, rconn_log_error, "reclaim",
			    "XADD %b * m %b", t->reply_to.ptr,
			    (size_t)t->reply_to.len, sr.data, sr.size);
	}
	rconn_cmd(r->rc, rconn_log_error, "reclaim",
	    "XACK %s " HIVE_GROUP_WORKERS " %s", j->key, id);
	send_exec(r);
	r->st.dead++;
	log_warnx("reclaim: task=%.*s trace=%.32s stream=%s entry=%s dead "
	    "letter: %s", d.id.len > 0 ? (int)d.id.len : 1,
	    d.id.len > 0 ? d.id.ptr : "?", t != NULL && t->traceparent.len ?
	    PROTO_TRACE_ID(t->traceparent.ptr) : "-", j->key, id, reason);
out:
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&sr);
}

static void
rcl_requeue(struct rcl_job *j, const char *id, const char *val, size_t len,
    unsigned deliveries)
{
	struct sup_reclaim *r = j->r;
	struct hive_task t;
	struct proto_err err;
	char reason[HIVE_REASON_MAX], key[HIVE_KEY_MAX], agent[HIVE_NAME_MAX + 1];
	unsigned made, max = 0;
	msgpack_sbuffer sb;

	if (proto_decode_task(val, len, &t, &err) < 0) {
		char eb[PROTO_ERRBUF];
		snprintf(reason, sizeof(reason), "malformed task: %s",
		    proto_strerror(&err, eb, sizeof(eb)));
		rcl_give_up(j, id, val, len, NULL, 0, (enum hive_code)err.code,
		    reason);
		return;
	}
	/* Attempts made: the task's own count, plus one per delivery after
	 * the first (each was a worker that took it and did not finish). */
	made = t.attempt + (deliveries > 0 ? deliveries - 1 : 0);
	max = t.max_attempts;
	if (max == 0 && r->o.agent_max_attempts != NULL &&
	    consumer_agent(j->consumer, agent, sizeof(agent)) == 0)
		max = r->o.agent_max_attempts(agent, r->o.arg);
	if (max == 0)
		max = r->o.max_attempts;
	if (made >= max) {
		snprintf(reason, sizeof(reason), "gave up after %u attempts: "
		    "worker %s died with it", made, j->consumer);
		rcl_give_up(j, id, val, len, &t, made, HIVE_CODE_ATTEMPTS,
		    reason);
		proto_task_clear(&t);
		return;
	}
	t.attempt = made + 1;
	msgpack_sbuffer_init(&sb);
	if (proto_encode_task(&sb, &t, &err) < 0) {
		char eb[PROTO_ERRBUF];
		snprintf(reason, sizeof(reason), "cannot requeue: %s",
		    proto_strerror(&err, eb, sizeof(eb)));
		rcl_give_up(j, id, val, len, &t, made,
		    (enum hive_code)err.code, reason);
		goto out;
	}
	requeue_key(r, j->key, j->consumer, key, sizeof(key));
	send_multi(r);
	rconn_cmd(r->rc, rconn_log_error, "reclaim", "XADD %s * m %b", key,
	    sb.data, sb.size);
	rconn_cmd(r->rc, rconn_log_error, "reclaim",
	    "XACK %s " HIVE_GROUP_WORKERS " %s", j->key, id);
	send_exec(r);
	r->st.requeued++;
	log_notice("reclaim: task=%.*s trace=%.32s attempt=%u requeued to %s: "
	    "worker %s is gone", (int)t.id.len, t.id.ptr, t.traceparent.len ?
	    PROTO_TRACE_ID(t.traceparent.ptr) : "-", t.attempt, key,
	    j->consumer);
out:
	msgpack_sbuffer_destroy(&sb);
	proto_task_clear(&t);
}

/* A page of the consumer's entries, ours now: each requeued, or given
 * up on. */
static int
rcl_page_cb(struct sclaim *c, const redisReply *reply, void *arg)
{
	struct rcl_job *j = arg;

	for (size_t i = 0; i < reply->elements; i++) {
		redisReply *e = reply->element[i];
		const redisReply *f;

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		if ((f = rconn_entry_field(e->element[1], "m")) == NULL) {
			/* Deleted under us, or not a Hive entry: ack it. */
			rconn_cmd(j->r->rc, rconn_log_error, "reclaim",
			    "XACK %s " HIVE_GROUP_WORKERS " %s", j->key,
			    e->element[0]->str);
			continue;
		}
		rcl_requeue(j, e->element[0]->str, f->str, f->len,
		    sclaim_deliveries(c, e->element[0]->str));
	}
	return 0;
}

static void
rcl_done_cb(struct sclaim *c, const char *err, void *arg)
{
	/* NOGROUP: no worker ever read this stream; nothing pending. */
	if (err != NULL && !(strncmp(err, "XPENDING ", 9) == 0 &&
	    strstr(err, ": NOGROUP") != NULL))
		log_warnx("reclaim: %s", err);
	free(arg);
}

/* Entries idle for less than the consumer has been dead, measured when
 * each page is sent, were re-read since by a restarted worker of the
 * same name: they are its, not ours. */
static void
rcl_reclaim(struct sup_reclaim *r, const char *key, const char *consumer,
    unsigned long long min_idle)
{
	struct rcl_job *j = calloc(1, sizeof(*j));
	struct sclaim_opts o = { .group = HIVE_GROUP_WORKERS, .page = RC_BATCH,
	    .page_cb = rcl_page_cb, .done_cb = rcl_done_cb };

	if (j == NULL)
		return;
	j->r = r;
	snprintf(j->key, sizeof(j->key), "%s", key);
	snprintf(j->consumer, sizeof(j->consumer), "%s", consumer);
	o.key = j->key;
	o.from = j->consumer;
	o.to = r->me;
	o.dead_since_ms = proto_now_ms() - min_idle;
	o.arg = j;
	if (sclaim_start(r->rc, &o) < 0)
		free(j);
}

/* ---- finding dead consumers ---- */

struct rcl_check {
	struct sup_reclaim *r;
	char key[HIVE_KEY_MAX];
	char consumer[HIVE_AGENT_MAX + HIVE_HOST_MAX + 8];
};

static void
rcl_alive_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct rcl_check *c = priv;
	redisReply *reply = rp;

	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER &&
	    reply->integer == 0)
		rcl_reclaim(c->r, c->key, c->consumer, c->r->o.alive_ttl_ms);
	free(c);
}

static void
rcl_consumers_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct rcl_check *c0 = priv;
	struct sup_reclaim *r = c0->r;
	redisReply *reply = rp;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
		free(c0);
		return;
	}
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *m = reply->element[i];
		const redisReply *nm = rconn_map_field(m, "name",
		    REDIS_REPLY_STRING);
		const redisReply *pe = rconn_map_field(m, "pending",
		    REDIS_REPLY_INTEGER);
		const char *name = nm != NULL ? nm->str : NULL;
		long long pending = pe != NULL ? pe->integer : 0;
		struct rcl_check *c;

		/* Our own claiming consumer holds entries only between XCLAIM
		 * and EXEC; leave it to us. */
		if (name == NULL || pending == 0 || strcmp(name, r->me) == 0 ||
		    strlen(name) >= sizeof(c0->consumer))
			continue;
		if ((c = calloc(1, sizeof(*c))) == NULL)
			break;
		c->r = r;
		memcpy(c->key, c0->key, sizeof(c->key));
		snprintf(c->consumer, sizeof(c->consumer), "%s", name);
		if (rconn_cmd(r->rc, rcl_alive_cb, c, "EXISTS %s:alive:%s",
		    r->prefix, name) < 0)
			free(c);
	}
	free(c0);
}

/* ---- trimming ---- */

struct rcl_id { uint64_t ms, seq; };

static int
parse_id(const char *s, struct rcl_id *id)
{
	char *end;

	id->ms = strtoull(s, &end, 10);
	if (*end == '\0') {
		id->seq = 0;
		return 0;
	}
	if (*end != '-')
		return -1;
	id->seq = strtoull(end + 1, &end, 10);
	return *end == '\0' ? 0 : -1;
}

static int
id_less(struct rcl_id a, struct rcl_id b)
{
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq);
}

struct rcl_trim {
	struct sup_reclaim *r;
	char key[HIVE_KEY_MAX];
	struct rcl_id floor;          /* nothing at or above this is cut */
	int waiting;                 /* XPENDING replies still to come */
	int failed;
};

static void
rcl_trim_finish(struct rcl_trim *t)
{
	char minid[64];

	if (!t->failed && (t->floor.ms > 0 || t->floor.seq > 0)) {
		snprintf(minid, sizeof(minid), "%" PRIu64 "-%" PRIu64,
		    t->floor.ms, t->floor.seq);
		/* "~": whole macro nodes only, so it cuts less, never more.
		 * LIMIT 0: with "~" Redis stops after 100 nodes (10,000
		 * entries) by default, less than a pass every 30 s must cut
		 * from a stream that takes more than 333 entries/s. */
		rconn_cmd(t->r->rc, rconn_log_error, "reclaim",
		    "XTRIM %s MINID ~ %s LIMIT 0", t->key, minid);
		t->r->st.trimmed++;
	}
	free(t);
}

static void
rcl_lower(struct rcl_trim *t, const char *id)
{
	struct rcl_id v;

	if (parse_id(id, &v) < 0) {
		t->failed = 1;
		return;
	}
	if (id_less(v, t->floor))
		t->floor = v;
}

static void
rcl_trim_pending_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct rcl_trim *t = priv;
	redisReply *reply = rp;

	/* XPENDING summary: count, smallest id, greatest id, consumers. */
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements < 2 || reply->element[1]->type != REDIS_REPLY_STRING)
		t->failed = 1;
	else
		rcl_lower(t, reply->element[1]->str);
	if (--t->waiting == 0)
		rcl_trim_finish(t);
}

static void
rcl_groups_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct rcl_trim *t = priv;
	redisReply *reply = rp;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements == 0) {
		free(t);                 /* no group: nobody reads it, keep it */
		return;
	}
	t->waiting = 1;              /* held until every group is looked at */
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *g = reply->element[i];
		const redisReply *nm = rconn_map_field(g, "name",
		    REDIS_REPLY_STRING);
		const redisReply *pe = rconn_map_field(g, "pending",
		    REDIS_REPLY_INTEGER);
		const redisReply *ld = rconn_map_field(g, "last-delivered-id",
		    REDIS_REPLY_STRING);
		const char *name = nm != NULL ? nm->str : NULL;
		const char *last = ld != NULL ? ld->str : NULL;
		long long pending = pe != NULL ? pe->integer : -1;

		if (name == NULL || last == NULL || pending < 0) {
			t->failed = 1;
			continue;
		}
		/* Not yet read by this group: everything above its last
		 * delivered id.  Read but not acknowledged: its pending. */
		rcl_lower(t, last);
		if (pending > 0) {
			t->waiting++;
			if (rconn_cmd(t->r->rc, rcl_trim_pending_cb, t, "XPENDING %s %s",
			    t->key, name) < 0) {
				t->waiting--;
				t->failed = 1;
			}
		}
	}
	if (--t->waiting == 0)
		rcl_trim_finish(t);
}

static void
rcl_trim(struct sup_reclaim *r, const char *key, unsigned retain_ms)
{
	struct rcl_trim *t = calloc(1, sizeof(*t));
	uint64_t now = proto_now_ms();

	if (t == NULL)
		return;
	t->r = r;
	snprintf(t->key, sizeof(t->key), "%s", key);
	t->floor.ms = now > retain_ms ? now - retain_ms : 0;
	t->floor.seq = 0;
	if (rconn_cmd(r->rc, rcl_groups_cb, t, "XINFO GROUPS %s", key) < 0)
		free(t);
}

/* ---- the pass ---- */

static void
rcl_forget(struct sup_reclaim *r)
{
	for (int i = 0; i < r->nstreams; i++)
		free(r->streams[i]);
	r->nstreams = 0;
}

static void
rcl_scan_key(const char *key, void *arg)
{
	struct sup_reclaim *r = arg;

	for (int i = 0; i < r->nstreams; i++)
		if (strcmp(r->streams[i], key) == 0)
			return;
	if (r->nstreams < RC_MAX_STREAMS && (r->streams[r->nstreams] = strdup(key)))
		r->nstreams++;
}

static void
rcl_scan_done(int ok, void *arg)
{
	struct sup_reclaim *r = arg;
	static const char *const named[] = { "results", "events", "dead",
	    "broadcast" };
	char key[HIVE_KEY_MAX];

	r->scanning = 0;
	if (!ok)
		return;
	r->st.scans++;
	for (int i = 0; i < r->nstreams; i++) {
		struct rcl_check *c = calloc(1, sizeof(*c));
		if (c == NULL)
			break;
		c->r = r;
		snprintf(c->key, sizeof(c->key), "%s", r->streams[i]);
		if (rconn_cmd(r->rc, rcl_consumers_cb, c, "XINFO CONSUMERS %s "
		    HIVE_GROUP_WORKERS, r->streams[i]) < 0)
			free(c);
	}
	if (!r->want_trim)
		return;
	r->want_trim = 0;
	for (int i = 0; i < r->nstreams; i++)
		rcl_trim(r, r->streams[i], r->o.retain_ms);
	/* Dead letters stay longer: GET /dead lists them from there and a
	 * retry needs the entry (PostgreSQL keeps them for good). */
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		if (proto_key_named(key, sizeof(key), r->prefix, named[i]) > 0)
			rcl_trim(r, key, strcmp(named[i], "dead") == 0 ?
			    r->o.dead_retain_ms : r->o.retain_ms);
}

static void
rcl_pass(struct sup_reclaim *r)
{
	if (r->scanning || !rconn_is_up(r->rc))
		return;
	rcl_forget(r);                /* deleted streams drop out */
	r->scanning = sup_scan_queues(r->rc, r->prefix, rcl_scan_key,
	    rcl_scan_done, r) == 0;
}

static void
rcl_beat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup_reclaim *r = w->data;
	ev_tstamp now = ev_now(loop);

	if (!rconn_is_up(r->rc))
		return;
	rconn_cmd(r->rc, rconn_log_error, "reclaim",
	    "SET %s:host:%s %" PRIu64 " PX %u", r->prefix, r->host,
	    proto_now_ms(), r->o.alive_ttl_ms);
	if (now - r->last_trim >= r->o.trim_ms / 1000.0) {
		r->last_trim = now;
		r->want_trim = 1;
	}
	if (now - r->last_scan >= r->o.scan_ms / 1000.0) {
		r->last_scan = now;
		rcl_pass(r);
	}
}

static void
rcl_state(struct rconn *rc, int up, void *arg)
{
	struct sup_reclaim *r = arg;

	r->scanning = 0;
	if (up)
		rcl_beat_cb(r->loop, &r->beat, 0);
}

struct sup_reclaim *
sup_reclaim_new(struct ev_loop *loop, const struct sup_reclaim_opts *o)
{
	struct sup_reclaim *r = calloc(1, sizeof(*r));
	char err[256];

	if (r == NULL)
		return NULL;
	r->loop = loop;
	r->o = *o;
	if (r->o.alive_ttl_ms == 0)
		r->o.alive_ttl_ms = 5000;
	if (r->o.scan_ms == 0)
		r->o.scan_ms = 2000;
	if (r->o.trim_ms == 0)
		r->o.trim_ms = 30000;
	if (r->o.retain_ms == 0)
		r->o.retain_ms = 600000;
	if (r->o.dead_retain_ms == 0)
		r->o.dead_retain_ms = 604800000;
	if (r->o.max_attempts == 0)
		r->o.max_attempts = 3;
	r->prefix = strdup(o->prefix);
	r->host = strdup(o->host);
	if (r->prefix == NULL || r->host == NULL)
		goto err;
	r->o.prefix = r->prefix;
	r->o.host = r->host;
	r->o.redis = NULL;
	snprintf(r->me, sizeof(r->me), "hived@%s", r->host);
	ev_timer_init(&r->beat, rcl_beat_cb, 0.5, 0.5);
	r->beat.data = r;
	ev_timer_start(loop, &r->beat);
	r->rc = rconn_new(loop, o->redis, "redis(reclaim)", rcl_state, r, err,
	    sizeof(err));
	if (r->rc == NULL) {
		log_warnx("reclaim: %s", err);
		goto err;
	}
	return r;
err:
	sup_reclaim_free(r);
	return NULL;
}

void
sup_reclaim_free(struct sup_reclaim *r)
{
	if (r == NULL)
		return;
	ev_timer_stop(r->loop, &r->beat);
	rconn_free(r->rc);           /* pending callbacks run with NULL here */
	rcl_forget(r);
	free(r->prefix);
	free(r->host);
	free(r);
}

struct rcl_dead {
	struct sup_reclaim *r;
	char consumer[HIVE_AGENT_MAX + HIVE_HOST_MAX + 8];
	uint64_t dead_ms;
};

static void
rcl_dead_key(const char *key, void *arg)
{
	struct rcl_dead *d = arg;
	uint64_t now = proto_now_ms();

	rcl_reclaim(d->r, key, d->consumer, now > d->dead_ms ? now - d->dead_ms : 0);
}

static void
rcl_dead_done(int ok, void *arg)
{
	free(arg);
}

void
sup_reclaim_consumer(struct sup_reclaim *r, const char *consumer,
    uint64_t dead_ms)
{
	struct rcl_dead *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return;
	d->r = r;
	snprintf(d->consumer, sizeof(d->consumer), "%s", consumer);
	d->dead_ms = dead_ms;
	/* Its streams: every queue (the consumer is in the workers group of
	 * those its agent reads; XPENDING finds nothing on the others). */
	if (sup_scan_queues(r->rc, r->prefix, rcl_dead_key, rcl_dead_done, d) < 0)
		free(d);
}

void
sup_reclaim_kick(struct sup_reclaim *r)
{
	r->want_trim = 1;
	r->last_scan = ev_now(r->loop);
	rcl_pass(r);
}

void
sup_reclaim_stats(const struct sup_reclaim *r, struct sup_reclaim_stats *out)
{
	*out = r->st;
}
