/*
 * delay.c - delayed tasks: <p>:delayed's due members onto their queues
 * (hived.h; docs/PROTOCOL.md, delayed tasks).
 *
 *   <p>:delayed   ZSET  score: due unix ms   member: <queue key> \n <task>
 *
 *   EVAL promote_lua 1 <p>:delayed <now ms> <limit> <p>
 *     due = ZRANGEBYSCORE -inf now LIMIT 0 limit
 *     each: XADD <queue key> * m <task>; ZREM      (one script: atomic)
 *     -> { moved, the earliest score left (or nil) }
 *
 * Every hived sharing a Redis runs the promoter: the script runs alone
 * in Redis, so a member is moved by exactly one of them (a second finds
 * it gone).  The queue key must be one of the prefix's queues (<p>:q:...
 * or <p>:direct:...); a member that names another key, or has no
 * separator, is dropped (ZREM) and counted in the reply's third value,
 * so that a bad member can neither block the set nor write anywhere.
 *
 * When to run it.  A task must reach its queue within 50 ms of its due
 * time, without polling Redis in a loop.  Each run answers the earliest
 * score left, so a timer is armed for it; what this hived submits itself
 * arms the timer sooner (sup_delay_hint).  But another host, a worker (a
 * retry, a task it got too early) or any client may add a member that is
 * due earlier than the earliest we know: so the timer never waits longer
 * than DELAY_POLL_MS.  A task is thus late by at most DELAY_POLL_MS plus
 * a round trip; idle, a hived costs Redis 1000 / DELAY_POLL_MS cheap
 * commands a second (ZRANGEBYSCORE on the set's first member, ZRANGE
 * 0 0), which is what keyspace notifications would cost too without
 * their fragility (off by default, lost while disconnected).  A run
 * that moved DELAY_LIMIT members runs again at once.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config.h"
#include "hive_proto.h"
#include "hived.h"
#include "log.h"
#include "rconn.h"

#define DELAY_POLL_MS  20      /* the longest the timer waits */
#define DELAY_LIMIT    1000    /* members moved per run */

static const char promote_lua[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], "
    "'LIMIT', 0, tonumber(ARGV[2])) "
    "local q, d = ARGV[3] .. ':q:', ARGV[3] .. ':direct:' "
    "local bad = 0 "
    "for _, m in ipairs(due) do "
    "  local nl = string.find(m, '\\n', 1, true) "
    "  local k = nl and string.sub(m, 1, nl - 1) or '' "
    "  if nl and (string.sub(k, 1, #q) == q or string.sub(k, 1, #d) == d) "
    "  then redis.call('XADD', k, '*', 'm', string.sub(m, nl + 1)) "
    "  else bad = bad + 1 end "
    "  redis.call('ZREM', KEYS[1], m) "
    "end "
    "local nx = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES') "
    "return { #due - bad, nx[2] or '', bad }";

struct sup_delay {
	struct ev_loop *loop;
	struct rconn *rc;
	char key[HIVE_KEY_MAX];
	char prefix[HIVE_NAME_MAX + 1];
	ev_timer timer;
	int busy;                    /* a run in flight */
	int again;                   /* run again once it answers */
	uint64_t due_at;             /* unix ms the timer is armed for */
	uint64_t moved, dropped;
};

static void dl_run(struct sup_delay *);

/* Arm the timer for due (unix ms), at most DELAY_POLL_MS away. */
static void
dl_arm(struct sup_delay *d, uint64_t due)
{
	uint64_t now = proto_now_ms();
	uint64_t cap = now + DELAY_POLL_MS;

	if (due > cap)
		due = cap;
	if (due < now)
		due = now;
	if (ev_is_active(&d->timer) && d->due_at <= due)
		return;
	d->due_at = due;
	ev_timer_stop(d->loop, &d->timer);
	ev_timer_set(&d->timer, (double)(due - now) / 1000.0, 0.);
	ev_timer_start(d->loop, &d->timer);
}

static void
dl_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct sup_delay *d = priv;
	const redisReply *r = rp;
	uint64_t next = UINT64_MAX;
	long long n = 0, bad = 0;

	(void)ac;
	d->busy = 0;
	if (r == NULL)
		;                        /* lost Redis: again on the poll */
	else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER &&
	    r->element[2]->type == REDIS_REPLY_INTEGER) {
		n = r->element[0]->integer;
		bad = r->element[2]->integer;
		d->moved += (uint64_t)n;
		if (r->element[1]->type == REDIS_REPLY_STRING &&
		    r->element[1]->len > 0)
			next = (uint64_t)strtod(r->element[1]->str, NULL);
		if (bad > 0) {
			d->dropped += (uint64_t)bad;
			log_warnx("delay: %lld member(s) of %s dropped: not "
			    "\"<queue>\\n<task>\" on a queue of this prefix",
			    bad, d->key);
		}
	} else
		log_warnx("delay: %s: %s", d->key, r->type == REDIS_REPLY_ERROR ?
		    r->str : "unexpected reply");
	if (d->again || n + bad >= DELAY_LIMIT) {
		d->again = 0;
		dl_run(d);
		return;
	}
	dl_arm(d, next);
}

static void
dl_run(struct sup_delay *d)
{
	char now[24], lim[16];

	if (d->busy) {
		d->again = 1;
		return;
	}
	if (!rconn_is_up(d->rc)) {
		dl_arm(d, UINT64_MAX);
		return;
	}
	snprintf(now, sizeof(now), "%" PRIu64, proto_now_ms());
	snprintf(lim, sizeof(lim), "%d", DELAY_LIMIT);
	if (rconn_cmd(d->rc, dl_cb, d, "EVAL %s 1 %s %s %s %s", promote_lua,
	    d->key, now, lim, d->prefix) < 0) {
		dl_arm(d, UINT64_MAX);
		return;
	}
	d->busy = 1;
}

static void
dl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	dl_run(w->data);
}

struct sup_delay *
sup_delay_new(struct ev_loop *loop, struct rconn *rc, const char *prefix)
{
	struct sup_delay *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->loop = loop;
	d->rc = rc;
	snprintf(d->prefix, sizeof(d->prefix), "%s", prefix);
	if (proto_key_named(d->key, sizeof(d->key), prefix, "delayed") < 0) {
		free(d);
		return NULL;
	}
	ev_timer_init(&d->timer, dl_timer_cb, 0., 0.);
	d->timer.data = d;
	dl_arm(d, 0);
	return d;
}

/* A run in flight answers NULL into a freed d: the caller frees d only
 * with the connection (rconn_free first), as store.c does. */
void
sup_delay_free(struct sup_delay *d)
{
	if (d == NULL)
		return;
	ev_timer_stop(d->loop, &d->timer);
	free(d);
}

void
sup_delay_hint(struct sup_delay *d, uint64_t due_ms)
{
	if (d != NULL)
		dl_arm(d, due_ms);
}

void
sup_delay_stats(const struct sup_delay *d, uint64_t *moved,
    uint64_t *dropped)
{
	*moved = d != NULL ? d->moved : 0;
	*dropped = d != NULL ? d->dropped : 0;
}

/*
 * The commands that schedule a task (its queue's key, its message as
 * encoded) for due_ms: the member into <p>:delayed and, for the
 * recorder, onto <p>:scheduled (with r, the result of the attempt a
 * retry follows, when given); one script, so that neither goes without
 * the other.  fn answers the script's reply (the scheduled entry's id).
 */
static const char schedule_lua[] =
    "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]) "
    "if ARGV[3] ~= '' then "
    "return redis.call('XADD', KEYS[2], '*', 'm', ARGV[2], 'r', ARGV[3]) "
    "end "
    "return redis.call('XADD', KEYS[2], '*', 'm', ARGV[2])";

int
sup_delay_schedule(struct rconn *rc, const char *prefix, const char *queue,
    const char *msg, size_t msglen, uint64_t due_ms, redisCallbackFn *fn,
    void *priv)
{
	char kd[HIVE_KEY_MAX], ks[HIVE_KEY_MAX], due[24];
	size_t ql = strlen(queue);
	char *member;
	int rc_;

	if (proto_key_named(kd, sizeof(kd), prefix, "delayed") < 0 ||
	    proto_key_named(ks, sizeof(ks), prefix, "scheduled") < 0 ||
	    (member = malloc(ql + 1 + msglen)) == NULL)
		return -1;
	memcpy(member, queue, ql);
	member[ql] = HIVE_DELAYED_SEP;
	memcpy(member + ql + 1, msg, msglen);
	snprintf(due, sizeof(due), "%" PRIu64, due_ms);
	rc_ = rconn_cmd(rc, fn, priv, "EVAL %s 2 %s %s %s %b %s",
	    schedule_lua, kd, ks, due, member, ql + 1 + msglen, "");
	free(member);
	return rc_;
}

/* ---- the API's side: POST /tasks (api_submit.c) ---- */

#define DELAY_AHEAD_MAX  (366ull * 24 * 3600 * 1000)   /* a year ahead */

/* A delay: a JSON integer (ms), or a string, "250ms", "30s", "5m", "1h"
 * (digits alone: ms).  0 or -1. */
static int
delay_ms(const json_t *v, uint64_t *ms)
{
	const char *s;
	unsigned u;

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return -1;
		*ms = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v) || (s = json_string_value(v))[0] == '\0')
		return -1;
	if (strspn(s, "0123456789") == strlen(s)) {
		if (strlen(s) > 15)
			return -1;
		*ms = strtoull(s, NULL, 10);
		return 0;
	}
	if (conf_parse_duration(s, &u) < 0)
		return -1;
	*ms = u;
	return 0;
}

int
sup_delay_when(json_t *o, const char *in, uint64_t *not_before,
    uint64_t *due, char *err, size_t len)
{
	json_t *nb = json_object_get(o, "not_before");
	json_t *dl = json_object_get(o, "delay");
	uint64_t now = proto_now_ms(), at = 0, ms;
	long long t;

	if (nb != NULL && json_is_null(nb))
		nb = NULL;
	if (dl != NULL && json_is_null(dl))
		dl = NULL;
	*not_before = *due = 0;
	if (nb != NULL && dl != NULL) {
		snprintf(err, len, "%s%sgive not_before or delay, not both", in,
		    in[0] ? ": " : "");
		return -1;
	}
	if (nb != NULL) {
		if (json_is_integer(nb) && json_integer_value(nb) >= 0)
			at = (uint64_t)json_integer_value(nb);
		else if (json_is_string(nb) &&
		    api_parse_time(json_string_value(nb), &t) == 0 && t >= 0)
			at = (uint64_t)t;
		else {
			snprintf(err, len, "field '%s%snot_before': expected a "
			    "time, RFC 3339 (2026-12-07T08:00:00Z) or Unix ms",
			    in, in[0] ? "." : "");
			return -1;
		}
	} else if (dl != NULL) {
		if (delay_ms(dl, &ms) < 0 || ms > DELAY_AHEAD_MAX) {
			snprintf(err, len, "field '%s%sdelay': expected a "
			    "duration (250ms, 30s, 5m, 1h; a number: ms) of at "
			    "most a year", in, in[0] ? "." : "");
			return -1;
		}
		at = ms > 0 ? now + ms : 0;
	}
	if (at > now + DELAY_AHEAD_MAX) {
		snprintf(err, len, "field '%s%snot_before': more than a year "
		    "ahead", in, in[0] ? "." : "");
		return -1;
	}
	*not_before = at;
	*due = at > now ? at : 0;
	return 0;
}

json_t *
sup_delay_answer(const char *id, const char *queue, const char *entry,
    const char *tp, uint64_t due)
{
	json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "state",
	    "scheduled", "stream", queue, "scheduled_entry", entry,
	    "traceparent", tp);

	if (b != NULL)
		json_object_set_new(b, "not_before",
		    api_time_json((long long)due));
	log_info("api: task=%s trace=%.32s scheduled for %" PRIu64 " on %s",
	    id, PROTO_TRACE_ID(tp), due, queue);
	return b;
}
