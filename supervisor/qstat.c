/*
 * qstat.c - the state of the queues, sampled for GET /queues and GET
 * /metrics, so that a request never waits on Redis (hived.h).
 *
 * Every SUP_QSTAT_EVERY seconds one round, on store.c's Redis connection,
 * for each queue stream of the configured capabilities and agents
 * (<p>:q:<cap>:<prio>, <p>:q:@<agent>:<prio>, prio 0..2) and the dead
 * letters:
 *
 *   phase 1 (pipelined)  XLEN <p>:dead
 *                        XLEN, XINFO GROUPS, XPENDING <key> workers
 *   phase 2 (pipelined)  XRANGE <key> (<last-delivered> + COUNT 1
 *                        where the workers group has undelivered entries
 *                        (XRANGE <key> - + COUNT 1 where it has no group)
 *
 * A round that lost a reply (Redis went away) is dropped: the last
 * complete sample stays, with its time.  Never more than one round is in
 * flight: a slow Redis makes rounds rarer, not a queue of them.
 *
 * The age of the oldest queued task: of the entries that the workers
 * have not finished, undelivered (after the group's last-delivered id) or
 * delivered and not acknowledged (the smallest id XPENDING names), the
 * oldest, by the time its entry was added (a task requeued by the
 * reclaimer or retried from the dead letters is as old as that).  What
 * is both queued and running is counted as waiting for an operator: a
 * task stuck with a hung worker ages too.
 *
 * The same timer samples each worker's RSS (/proc/PID/statm) every
 * SUP_QSTAT_RSS_EVERY ticks, a slice of the instances at each tick.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hived.h"
#include "log.h"
#include "rconn.h"

#define SUP_QSTAT_EVERY      1.0     /* s */
#define SUP_QSTAT_RSS_EVERY  5       /* ticks: each worker's RSS this often */

enum qs_what { QS_XLEN, QS_GROUPS, QS_PENDING, QS_NCMD };

struct qs_cb {
	struct qs_round *r;
	size_t i;                    /* queue index; SIZE_MAX: dead, ping */
	enum qs_what what;
};

/* One round: its own copy of the queue list, its answers. */
struct qs_round {
	struct sup_qstat *qs;
	struct sup_qstat_q *q;
	size_t n;
	struct qs_cb *cb;            /* QS_NCMD per queue */
	struct qs_cb dead_cb;
	int64_t dead;
	unsigned outstanding;
	int phase;
	int failed;                  /* a reply lost or refused: dropped */
	uint64_t at_ms;
};

struct sup_qstat {
	struct sup *sup;
	struct rconn *rc;
	ev_timer timer;
	unsigned tick;
	struct sup_qstat_q *tmpl;    /* the queues of the configuration */
	size_t ntmpl;
	int stale;                   /* the configuration changed */
	struct qs_round *round;      /* in flight, or NULL */
	struct sup_qstat_sample last;
};

/* ---- the queue list ---- */

static int
tmpl_add(struct sup_qstat *qs, size_t *cap, const char *name, int agent)
{
	const char *prefix = qs->sup->cref->conf->prefix;

	for (unsigned p = 0; p < HIVE_PRIO_LEVELS; p++) {
		struct sup_qstat_q *q;
		int k;

		if (qs->ntmpl == *cap) {
			size_t nc = *cap ? *cap * 2 : 32;
			if ((q = realloc(qs->tmpl, nc * sizeof(*q))) == NULL)
				return -1;
			qs->tmpl = q;
			*cap = nc;
		}
		q = &qs->tmpl[qs->ntmpl];
		memset(q, 0, sizeof(*q));
		k = agent ? proto_key_agent_queue(q->key, sizeof(q->key), prefix,
		    name, p) : proto_key_queue(q->key, sizeof(q->key), prefix,
		    name, p);
		if (k <= 0)
			continue;
		snprintf(q->name, sizeof(q->name), "%s%s", agent ? "@" : "", name);
		q->prio = p;
		qs->ntmpl++;
	}
	return 0;
}

/* Capabilities first (each once, in the order of the configuration),
 * then each agent's own queues. */
static void
tmpl_build(struct sup_qstat *qs)
{
	const struct hive_conf *c = qs->sup->cref->conf;
	size_t cap = 0;

	free(qs->tmpl);
	qs->tmpl = NULL;
	qs->ntmpl = 0;
	qs->stale = 0;
	for (size_t i = 0; i < c->nagents; i++)
		for (int k = 0; k < c->agents[i].ncaps; k++) {
			const char *name = c->agents[i].caps[k];
			int seen = 0;
			for (size_t j = 0; j < i && !seen; j++)
				for (int l = 0; l < c->agents[j].ncaps && !seen; l++)
					seen = strcmp(c->agents[j].caps[l], name) == 0;
			for (int l = 0; l < k && !seen; l++)
				seen = strcmp(c->agents[i].caps[l], name) == 0;
			if (!seen && tmpl_add(qs, &cap, name, 0) < 0)
				goto oom;
		}
	for (size_t i = 0; i < c->nagents; i++)
		if (tmpl_add(qs, &cap, c->agents[i].name, 1) < 0)
			goto oom;
	return;
oom:
	log_warnx("queue stats: out of memory; trying again");
	qs->stale = 1;
}

/* ---- a round ---- */

static void
round_free(struct qs_round *r)
{
	if (r == NULL)
		return;
	free(r->q);
	free(r->cb);
	free(r);
}

static uint64_t
entry_ms(const char *id)
{
	return strtoull(id, NULL, 10);
}

/* The round has all its answers: keep it as the last sample. */
static void
round_commit(struct sup_qstat *qs, struct qs_round *r)
{
	free(qs->last.q);
	qs->last.q = r->q;
	qs->last.n = r->n;
	qs->last.at_ms = r->at_ms;
	qs->last.dead = r->dead;
	r->q = NULL;
}

static void round_phase2(struct qs_round *);

/* One reply fewer to wait for; the round's end when none is left. */
static void
round_done_one(struct qs_round *r)
{
	struct sup_qstat *qs = r->qs;

	if (--r->outstanding > 0)
		return;
	if (qs == NULL) {            /* its owner is gone (sup_qstat_free) */
		round_free(r);
		return;
	}
	if (!r->failed && r->phase == 1) {
		round_phase2(r);
		if (r->outstanding > 0)
			return;
	}
	if (!r->failed)
		round_commit(qs, r);
	if (qs->round == r)
		qs->round = NULL;
	round_free(r);
}

static int64_t
reply_int(const redisReply *rp)
{
	return rp != NULL && rp->type == REDIS_REPLY_INTEGER ?
	    (int64_t)rp->integer : -1;
}

/* XINFO GROUPS: the workers group's pending, lag, consumers, last id. */
static void
groups_reply(struct sup_qstat_q *q, const redisReply *rp)
{
	if (rp->type != REDIS_REPLY_ARRAY)
		return;                  /* no such key: an empty queue */
	for (size_t i = 0; i < rp->elements; i++) {
		const redisReply *g = rp->element[i], *f;
		if ((f = rconn_map_field(g, "name", REDIS_REPLY_STRING)) == NULL ||
		    strcmp(f->str, HIVE_GROUP_WORKERS) != 0)
			continue;
		q->has_group = 1;
		q->pending = reply_int(rconn_map_field(g, "pending",
		    REDIS_REPLY_INTEGER));
		q->consumers = reply_int(rconn_map_field(g, "consumers",
		    REDIS_REPLY_INTEGER));
		/* Redis 7: lag; nil when it cannot tell (entries deleted). */
		q->lag = reply_int(rconn_map_field(g, "lag",
		    REDIS_REPLY_INTEGER));
		if ((f = rconn_map_field(g, "last-delivered-id",
		    REDIS_REPLY_STRING)) != NULL)
			snprintf(q->last_id, sizeof(q->last_id), "%s", f->str);
		if (q->pending < 0)
			q->pending = 0;
		if (q->consumers < 0)
			q->consumers = 0;
	}
}

static void
qs_reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct qs_cb *cb = priv;
	struct qs_round *r = cb->r;
	redisReply *rp = reply;
	struct sup_qstat_q *q = cb->i < r->n ? &r->q[cb->i] : NULL;

	if (rp == NULL || r->qs == NULL) {
		r->failed = 1;
		round_done_one(r);
		return;
	}
	if (cb == &r->dead_cb)
		r->dead = reply_int(rp);
	else if (r->phase == 2) {
		/* XRANGE: the first entry not delivered to the workers. */
		if (rp->type == REDIS_REPLY_ARRAY && rp->elements > 0 &&
		    rp->element[0]->type == REDIS_REPLY_ARRAY &&
		    rp->element[0]->elements > 0 &&
		    rp->element[0]->element[0]->type == REDIS_REPLY_STRING) {
			uint64_t ms = entry_ms(rp->element[0]->element[0]->str);
			if (q->oldest_ms == 0 || ms < q->oldest_ms)
				q->oldest_ms = ms;
		}
	} else if (cb->what == QS_XLEN) {
		q->length = reply_int(rp) < 0 ? 0 : reply_int(rp);
	} else if (cb->what == QS_GROUPS) {
		groups_reply(q, rp);
	} else if (cb->what == QS_PENDING) {
		/* [count, smallest id, greatest id, [[consumer, n]...]];
		 * NOGROUP when there is no group (or no stream). */
		if (rp->type == REDIS_REPLY_ARRAY && rp->elements >= 2 &&
		    rp->element[1]->type == REDIS_REPLY_STRING)
			q->oldest_ms = entry_ms(rp->element[1]->str);
	}
	round_done_one(r);
}

static void
round_send(struct qs_round *r, struct qs_cb *cb, int argc, const char **argv)
{
	if (r->failed)
		return;
	if (rconn_argv(r->qs->rc, qs_reply_cb, cb, argc, argv, NULL) < 0) {
		r->failed = 1;
		return;
	}
	r->outstanding++;
}

/* Where the workers have entries undelivered, the first of them. */
static void
round_phase2(struct qs_round *r)
{
	char from[HIVE_ENTRY_ID_MAX + 2];

	r->phase = 2;
	r->outstanding++;            /* until every command is sent */
	for (size_t i = 0; i < r->n; i++) {
		struct sup_qstat_q *q = &r->q[i];
		const char *argv[6] = { "XRANGE", q->key, from, "+", "COUNT", "1" };

		if (!q->has_group)       /* nobody reads it yet: all wait */
			q->lag = q->length;
		if (q->length <= 0 || (q->has_group && q->lag == 0))
			continue;
		if (!q->has_group)
			argv[2] = "-";
		else
			snprintf(from, sizeof(from), "(%s", q->last_id);
		round_send(r, &r->cb[i * QS_NCMD], 6, argv);
	}
	r->outstanding--;
}

static void
round_start(struct sup_qstat *qs)
{
	struct qs_round *r;
	char dead[HIVE_KEY_MAX];
	const char *argv[4];

	if (qs->stale)
		tmpl_build(qs);
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (qs->ntmpl > 0 && ((r->q = calloc(qs->ntmpl, sizeof(*r->q))) == NULL ||
	    (r->cb = calloc(qs->ntmpl * QS_NCMD, sizeof(*r->cb))) == NULL))) {
		round_free(r);
		return;
	}
	r->qs = qs;
	r->n = qs->ntmpl;
	r->phase = 1;
	r->dead = -1;
	if (r->n > 0)
		memcpy(r->q, qs->tmpl, r->n * sizeof(*r->q));
	r->dead_cb = (struct qs_cb){ r, SIZE_MAX, QS_XLEN };
	r->at_ms = (uint64_t)(ev_now(qs->sup->loop) * 1000.);
	qs->round = r;
	r->outstanding++;            /* until every command is sent */
	argv[0] = "XLEN";
	argv[1] = dead;
	if (proto_key_named(dead, sizeof(dead), qs->sup->cref->conf->prefix,
	    "dead") > 0)
		round_send(r, &r->dead_cb, 2, argv);
	for (size_t i = 0; i < r->n; i++) {
		struct qs_cb *cb = &r->cb[i * QS_NCMD];
		r->q[i].lag = -1;
		for (int w = 0; w < QS_NCMD; w++)
			cb[w] = (struct qs_cb){ r, i, (enum qs_what)w };
		argv[1] = r->q[i].key;
		argv[0] = "XLEN";
		round_send(r, &cb[QS_XLEN], 2, argv);
		argv[0] = "XINFO";
		argv[1] = "GROUPS";
		argv[2] = r->q[i].key;
		round_send(r, &cb[QS_GROUPS], 3, argv);
		argv[0] = "XPENDING";
		argv[1] = r->q[i].key;
		argv[2] = HIVE_GROUP_WORKERS;
		round_send(r, &cb[QS_PENDING], 3, argv);
	}
	round_done_one(r);
}

/* ---- workers' RSS ---- */

/* Resident set of pid in kB from /proc/PID/statm; 0 when unknown. */
uint64_t
sup_rss_kb(pid_t pid)
{
	char path[64], buf[128];
	unsigned long long size, res;
	ssize_t n;
	int fd;

	if (pid > 0)
		snprintf(path, sizeof(path), "/proc/%ld/statm", (long)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/statm");
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%llu %llu", &size, &res) != 2)
		return 0;
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

/* A slice of the instances each tick: each every SUP_QSTAT_RSS_EVERY. */
static void
rss_sample(struct sup_qstat *qs)
{
	struct sup_agent *a;
	unsigned k = 0;

	TAILQ_FOREACH(a, &qs->sup->agents, entry)
		for (unsigned i = 0; i < a->ninst; i++, k++) {
			struct sup_inst *in = a->inst[i];
			if (in->pid <= 0 || (in->rss_pid == in->pid &&
			    k % SUP_QSTAT_RSS_EVERY != qs->tick % SUP_QSTAT_RSS_EVERY))
				continue;
			in->rss_kb = sup_rss_kb(in->pid);
			in->rss_pid = in->pid;
		}
}

static void
qs_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup_qstat *qs = w->data;

	qs->tick++;
	rss_sample(qs);
	if (qs->round == NULL && rconn_is_up(qs->rc))
		round_start(qs);
}

/* ---- the API ---- */

struct sup_qstat *
sup_qstat_new(struct sup *sup, struct rconn *rc)
{
	struct sup_qstat *qs = calloc(1, sizeof(*qs));

	if (qs == NULL)
		return NULL;
	qs->sup = sup;
	qs->rc = rc;
	qs->stale = 1;
	ev_timer_init(&qs->timer, qs_timer_cb, 0.1, SUP_QSTAT_EVERY);
	qs->timer.data = qs;
	ev_timer_start(sup->loop, &qs->timer);
	return qs;
}

/* After the Redis connection is closed (store.c): a round in flight had
 * its NULL replies then, and is gone. */
void
sup_qstat_free(struct sup_qstat *qs)
{
	if (qs == NULL)
		return;
	ev_timer_stop(qs->sup->loop, &qs->timer);
	if (qs->round != NULL)       /* not expected (see above): it ends */
		qs->round->qs = NULL;    /* with its last reply, alone */
	free(qs->tmpl);
	free(qs->last.q);
	free(qs);
}

void
sup_qstat_reconfigure(struct sup_qstat *qs)
{
	if (qs != NULL)
		qs->stale = 1;
}

const struct sup_qstat_sample *
sup_qstat_last(const struct sup_qstat *qs)
{
	return qs != NULL && qs->last.at_ms != 0 ? &qs->last : NULL;
}

