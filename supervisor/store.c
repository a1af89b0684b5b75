/*
 * store.c - hived's bridge to the record (record/, record.h): start-up
 * checks of Redis and PostgreSQL, the memory snapshots it starts workers
 * with, events, the agents table, and the recorder, reclaimer, workflow
 * coordinator and recovery, which it starts and feeds.
 *
 * Start-up, before any worker is forked:
 *
 *   Redis:      CONFIG GET maxmemory-policy   (refuse an evicting Redis)
 *   PostgreSQL: migrate -> latest snapshot of every agent instance
 *
 * Agents start once both are done, or after SUP_START_WAIT seconds with
 * what there is (logged): a Redis or PostgreSQL that is down at boot must
 * not keep every agent down.  The workers reconnect on their own, their
 * memory key in Redis covers a missing snapshot, and a Redis found to
 * evict later still stops hived.
 *
 * Steady state, from the housekeeping timer: the agents table is written
 * (changed rows each second, all rows every 10 s), and a recovery pass
 * runs every 30 s while the recorder is caught up, and soon after Redis
 * came back from an outage (it may have lost data).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "record.h"
#include "hived.h"
#include "events.h"
#include "log.h"
#include "rconn.h"

#define SUP_START_WAIT      10.0     /* s: at most this long before agents start */
#define SUP_RECOVER_EVERY   30.0     /* s */
#define SUP_AGENTS_ALL      10.0     /* s: every row of the agents table */
#define SUP_FINISH_WAIT     5.0      /* s: at exit, for the recorder */
#define SUP_PROBE_EVERY     1.0      /* s: PING and SELECT 1 for /health */
#define SUP_PROBE_LATE      2.0      /* s: a probe unanswered this long:
                                      * the server does not answer */

/*
 * A health probe (sup_store_health): one command in flight at most, sent
 * from the housekeeping timer, its round trip kept.  Nothing waits for
 * it: /health reads what the last one found.
 */
struct store_probe {
	int busy;                    /* a probe in flight */
	ev_tstamp sent, last;        /* when it went; when the last answered */
	double rtt_ms;               /* of the last answer, -1 none yet */
	char error[96];              /* of the last answer, "" when fine */
};

struct sup_store {
	struct sup *sup;
	struct rconn *rc;
	struct sup_pg *pg;
	struct sup_recorder *rec;
	struct sup_coord *coord;
	struct sup_reclaim *reclaim;
	int redis_checked;           /* eviction policy looked at */
	int pg_done;                 /* migrated and snapshots loaded (or no pg) */
	int migrated;                /* the schema is usable: rec, coord run */
	int started;                 /* agents started */
	ev_timer start_timer;
	int recovering;
	int redis_was_down;          /* recover soon after it is back */
	ev_tstamp next_recover;
	ev_tstamp last_all;
	uint64_t resets_seen;        /* recorder's count of vanished streams */
	int agents_busy;             /* an agents-table write in flight */
	int finishing;               /* sup_store_stop */
	ev_timer finish_timer;
	struct store_probe p_redis, p_pg;
	struct sup_tstats *tstats;   /* the recorder's task counters: kept
	                              * when a reload starts a new one */
};

static void store_try_start(struct sup_store *r);

/* ---- events: <p>:events, recorded in PostgreSQL by the recorder ---- */

static void
store_event(struct sup_store *r, const char *kind, const struct sup_inst *in,
    int64_t pid, const char *reason)
{
	const struct hive_conf *c = r->sup->cref->conf;
	struct hive_event e = { 0 };
	struct proto_err err;
	msgpack_sbuffer sb;
	char key[HIVE_KEY_MAX];

	if (r->rc == NULL || !rconn_is_up(r->rc))
		return;                  /* events are best effort; state is not */
	e.kind = HIVE_STR(kind);
	e.ts_ms = proto_now_ms();
	e.host = HIVE_STR(c->host);
	if (in != NULL)
		e.agent = HIVE_STR(in->label);
	e.pid = pid;
	if (reason != NULL)
		e.reason = HIVE_STR(reason);
	msgpack_sbuffer_init(&sb);
	if (proto_encode_event(&sb, &e, &err) == 0 &&
	    proto_key_named(key, sizeof(key), c->prefix, "events") > 0)
		rconn_cmd(r->rc, rconn_log_error, "redis(hived)",
		    "XADD %s * m %b", key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

/*
 * The kind of the event for a change of state (docs/PROTOCOL.md, event):
 * named after what happened, which the new state mostly says.  A worker
 * that died unasked (or that hived killed as hung) is agent.crashed
 * whether or not it is started again (restarting) or stays down
 * (crashed); a new worker for an instance that had one is
 * agent.restarted, its first (or one woken up) agent.starting; a worker
 * that comes up is agent.ready even when its first word is busy.
 */
static const char *
transition_kind(enum sup_state now, enum sup_event ev)
{
	switch (now) {
	case SUP_ST_STARTING:
		return ev == SUP_EV_START || ev == SUP_EV_WAKE ||
		    ev == SUP_EV_OPSTART ?
		    "agent.starting" : "agent.restarted";
	case SUP_ST_READY:
	case SUP_ST_BUSY:            /* from starting: ready<->busy is none */
		return "agent.ready";
	case SUP_ST_SLEEPING:
		return "agent.sleeping";
	case SUP_ST_STOPPING:
		return "agent.stopping";
	case SUP_ST_STOPPED:
		return "agent.stopped";
	case SUP_ST_CRASHED:
	case SUP_ST_RESTARTING:
		return "agent.crashed";
	case SUP_ST_FAILED:
		return "agent.failed";
	case SUP_ST_COUNT:
		break;
	}
	return "agent.unknown";
}

/*
 * An instance changed state (agent.c, after the table moved it).  Every
 * change but ready<->busy is an event (transition_kind); a worker that
 * died and is not started again at once has its tasks taken back now, not
 * when its liveness key runs out.
 */
void
sup_store_transition(struct sup_inst *in, enum sup_state was,
    enum sup_event ev)
{
	struct sup_store *r = in->agent->sup->store;
	enum sup_state now = in->fsm.state;
	char reason[96], consumer[HIVE_AGENT_MAX + HIVE_HOST_MAX + 8];
	int st = in->last_status;

	if (r == NULL)
		return;
	in->store_dirty = 1;
	if ((was == SUP_ST_READY && now == SUP_ST_BUSY) ||
	    (was == SUP_ST_BUSY && now == SUP_ST_READY))
		return;
	if (ev == SUP_EV_EXIT && st != -1 && WIFSIGNALED(st))
		snprintf(reason, sizeof(reason), "%s after %s, signal %d",
		    sup_event_name(ev), sup_state_name(was), WTERMSIG(st));
	else if (ev == SUP_EV_EXIT && st != -1)
		snprintf(reason, sizeof(reason), "%s after %s, status %d",
		    sup_event_name(ev), sup_state_name(was), WEXITSTATUS(st));
	else
		snprintf(reason, sizeof(reason), "%s after %s", sup_event_name(ev),
		    sup_state_name(was));
	store_event(r, transition_kind(now, ev), in, in->pid, reason);

	if (ev == SUP_EV_EXIT && now != SUP_ST_STARTING && r->reclaim != NULL &&
	    !(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) &&
	    proto_consumer_name(consumer, sizeof(consumer), in->agent->name,
	    in->n, r->sup->cref->conf->host) > 0)
		sup_reclaim_consumer(r->reclaim, consumer, proto_now_ms());
}

/*
 * The handler of in's worker died unasked or could not start (agent.c):
 * an event of its own, since the instance's state need not change.
 */
void
sup_store_handler(struct sup_inst *in, const char *reason)
{
	struct sup_store *r = in->agent->sup->store;

	if (r != NULL)
		store_event(r, "agent.handler_failed", in, in->pid, reason);
}

/* ---- the agents table ---- */

static void
agents_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct sup_store *r = arg;

	r->agents_busy = 0;
	if (err != NULL && res != NULL)
		log_warnx("postgres: agents table: %s", err);
}

/*
 * Write the rows of the instances that changed (all of them when all is
 * set) in one statement.  Agent and host names are [A-Za-z0-9_.-] (the
 * config checks them), state names are ours: nothing here needs quoting.
 */
static void
agents_flush(struct sup_store *r, int all)
{
	struct sup *sup = r->sup;
	const char *host = sup->cref->conf->host;
	ev_tstamp now = ev_now(sup->loop);
	struct sup_agent *a;
	char *sql = NULL, row[512];
	size_t len = 0, cap = 0;
	int n = 0;

	if (r->pg == NULL || !sup_pg_is_up(r->pg) || r->agents_busy)
		return;
	TAILQ_FOREACH(a, &sup->agents, entry)
		for (unsigned i = 0; i < a->ninst; i++) {
			struct sup_inst *in = a->inst[i];
			int k;
			if (!all && !in->store_dirty)
				continue;
			in->store_dirty = 0;
			char pid[24], hb[64];
			if (in->pid > 0)
				snprintf(pid, sizeof(pid), "%ld", (long)in->pid);
			else
				snprintf(pid, sizeof(pid), "NULL");
			if (in->have_hb)
				snprintf(hb, sizeof(hb), "now() - interval '%ld ms'",
				    (long)((now - in->last_hb) * 1000.));
			else
				snprintf(hb, sizeof(hb), "NULL");
			k = snprintf(row, sizeof(row), "%s('%s','%s',%u,'%s',%s,"
			    "%" PRIu64 ",%" PRIu64 ",%s)", n ? "," : "", host,
			    a->name, in->n, sup_state_name(in->fsm.state), pid,
			    in->restarts, in->done_base + in->done, hb);
			if (k < 0 || (size_t)k >= sizeof(row))
				continue;
			k = (int)strlen(row);
			if (len + (size_t)k + 512 > cap) {
				size_t ncap = cap ? cap * 2 : 4096;
				char *p;
				while (len + (size_t)k + 512 > ncap)
					ncap *= 2;
				if ((p = realloc(sql, ncap)) == NULL)
					goto out;
				sql = p;
				cap = ncap;
				if (len == 0)
					len = (size_t)snprintf(sql, cap, "INSERT INTO agents "
					    "(host, name, instance, state, pid, restarts, "
					    "tasks_done, last_heartbeat) VALUES ");
			}
			memcpy(sql + len, row, (size_t)k + 1);
			len += (size_t)k;
			n++;
		}
	if (n == 0)
		goto out;
	snprintf(sql + len, cap - len, " ON CONFLICT (host, name, instance) DO "
	    "UPDATE SET state = EXCLUDED.state, pid = EXCLUDED.pid, restarts = "
	    "EXCLUDED.restarts, tasks_done = EXCLUDED.tasks_done, "
	    "last_heartbeat = coalesce(EXCLUDED.last_heartbeat, "
	    "agents.last_heartbeat), updated_at = now()");
	if (sup_pg_query(r->pg, sql, 0, NULL, NULL, NULL, agents_cb, r) == 0)
		r->agents_busy = 1;
out:
	free(sql);
}

/* ---- recovery ---- */

#define SUP_RECOVER_LIMIT 5000   /* RV_LIMIT of recover.c: a full pass */

static void
recovered_cb(unsigned n, int ok, void *arg)
{
	struct sup_store *r = arg;

	r->recovering = 0;
	r->next_recover = ev_now(r->sup->loop) + (!ok ? 5.0 :
	    n >= SUP_RECOVER_LIMIT ? 1.0 : SUP_RECOVER_EVERY);
}

static void
maybe_recover(struct sup_store *r)
{
	struct sup_recorder_stats st;
	const struct hive_conf *c = r->sup->cref->conf;

	if (r->rec == NULL || r->recovering || !rconn_is_up(r->rc) ||
	    !sup_pg_is_up(r->pg))
		return;
	sup_recorder_stats(r->rec, &st);
	if (st.resets != r->resets_seen) {
		/* Streams vanished under the recorder: Redis lost data (or
		 * someone deleted keys).  Look as soon as it has caught up. */
		r->resets_seen = st.resets;
		r->next_recover = ev_now(r->sup->loop) + 3.0;
		return;
	}
	if (!st.caught_up || ev_now(r->sup->loop) < r->next_recover)
		return;
	if (sup_recover(r->pg, r->rc, c->prefix, c->host, recovered_cb, r) == 0)
		r->recovering = 1;
}

/* ---- health probes (GET /health) ---- */

static void
probe_done(struct sup_store *r, struct store_probe *p, const char *err)
{
	ev_tstamp now = ev_now(r->sup->loop);

	p->busy = 0;
	p->last = now;
	p->rtt_ms = (now - p->sent) * 1000.;
	snprintf(p->error, sizeof(p->error), "%s", err != NULL ? err : "");
}

static void
probe_redis_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sup_store *r = priv;
	redisReply *rp = reply;

	if (rp == NULL) {            /* lost: rconn says down */
		r->p_redis.busy = 0;
		return;
	}
	probe_done(r, &r->p_redis, rp->type == REDIS_REPLY_ERROR ? rp->str :
	    NULL);
}

static void
probe_pg_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct sup_store *r = arg;

	if (res == NULL) {           /* lost: sup_pg_is_up says so */
		r->p_pg.busy = 0;
		return;
	}
	probe_done(r, &r->p_pg, err);
}

/*
 * A PING and a SELECT 1 every SUP_PROBE_EVERY, one of each in flight at
 * most.  ev_now is the loop's time at the start of the iteration: the
 * round trip may count a few ms of hived's own work, never less.  The
 * SELECT waits behind queries queued before it (a recorder batch): that
 * is how long PostgreSQL takes to answer hived.
 */
static void
probes_send(struct sup_store *r, ev_tstamp now)
{
	if (!r->p_redis.busy && now - r->p_redis.sent >= SUP_PROBE_EVERY &&
	    r->rc != NULL && rconn_is_up(r->rc) &&
	    rconn_cmd(r->rc, probe_redis_cb, r, "PING") == 0) {
		r->p_redis.busy = 1;
		r->p_redis.sent = now;
	}
	if (!r->p_pg.busy && now - r->p_pg.sent >= SUP_PROBE_EVERY &&
	    r->pg != NULL && sup_pg_is_up(r->pg) &&
	    sup_pg_query(r->pg, "SELECT 1", 0, NULL, NULL, NULL, probe_pg_cb,
	    r) == 0) {
		r->p_pg.busy = 1;
		r->p_pg.sent = now;
	}
}

/*
 * What the probes of one server say now.  Connected and not yet probed
 * (the first PING goes at the next housekeeping tick) is up: connecting
 * was an answer, and a check right after hived's start must not fail
 * for want of a probe (its latency is null until one comes back).
 */
static void
probe_read(const struct store_probe *p, int connected, ev_tstamp now,
    struct sup_health *h)
{
	h->latency_ms = p->last > 0 ? (long long)(p->rtt_ms + 0.5) : -1;
	h->up = 0;
	if (!connected)
		snprintf(h->error, sizeof(h->error), "not connected");
	else if (p->busy && now - p->sent >= SUP_PROBE_LATE) {
		snprintf(h->error, sizeof(h->error), "no answer for %.0f ms",
		    (now - p->sent) * 1000.);
		h->latency_ms = (long long)((now - p->sent) * 1000.);
	} else if (p->error[0] != '\0')
		snprintf(h->error, sizeof(h->error), "%s", p->error);
	else {
		h->up = 1;
		h->error[0] = '\0';
	}
}

void
sup_store_health(struct sup *sup, struct sup_health *redis,
    struct sup_health *pg)
{
	struct sup_store *r = sup->store;
	ev_tstamp now = ev_now(sup->loop);
	static const struct store_probe none = { .rtt_ms = -1 };

	memset(redis, 0, sizeof(*redis));
	memset(pg, 0, sizeof(*pg));
	redis->configured = 1;
	pg->configured = sup->cref->conf->postgres[0] != '\0';
	probe_read(r != NULL ? &r->p_redis : &none, r != NULL &&
	    r->rc != NULL && rconn_is_up(r->rc), now, redis);
	if (pg->configured)
		probe_read(r != NULL ? &r->p_pg : &none, r != NULL &&
		    r->pg != NULL && sup_pg_is_up(r->pg), now, pg);
	else
		pg->latency_ms = -1;
}

/* From the housekeeping timer. */
void
sup_store_tick(struct sup *sup)
{
	struct sup_store *r = sup->store;
	ev_tstamp now = ev_now(sup->loop);
	int all;

	if (r != NULL)
		probes_send(r, now);
	if (r == NULL || !r->started)
		return;
	all = now - r->last_all >= SUP_AGENTS_ALL;
	if (all)
		r->last_all = now;
	agents_flush(r, all);
	maybe_recover(r);
}

/* ---- start-up ---- */

static void
start_agents(struct sup_store *r, const char *why)
{
	struct sup_agent *a;

	if (r->started)
		return;
	r->started = 1;
	ev_timer_stop(r->sup->loop, &r->start_timer);
	if (why != NULL)
		log_warnx("starting the agents without waiting longer: %s", why);
	TAILQ_FOREACH(a, &r->sup->agents, entry)
		sup_agent_start(a);
	sup_state_changed(r->sup);
}

static void
store_try_start(struct sup_store *r)
{
	if (r->redis_checked && r->pg_done)
		start_agents(r, NULL);
}

static void
start_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup_store *r = w->data;

	start_agents(r, !r->redis_checked ? "Redis is not reachable yet" :
	    "PostgreSQL is not ready yet (memory snapshots not loaded)");
}

static void
policy_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sup_store *r = priv;
	const struct hive_conf *c = r->sup->cref->conf;
	redisReply *rp = reply;

	if (rp == NULL)
		return;                  /* lost: asked again when it is back */
	if (rp->type == REDIS_REPLY_ARRAY && rp->elements == 2 &&
	    rp->element[1]->type == REDIS_REPLY_STRING) {
		const char *pol = rp->element[1]->str;
		if (strcmp(pol, "noeviction") != 0 && !c->allow_eviction) {
			log_crit("redis maxmemory-policy is %s: Redis may evict "
			    "queued tasks. Set it to noeviction (CONFIG SET "
			    "maxmemory-policy noeviction, and in redis.conf), or "
			    "allow_eviction = yes in [hive] to run anyway", pol);
			r->sup->exit_code = 1;
			sup_shutdown(r->sup);
			return;
		}
		if (strcmp(pol, "noeviction") != 0)
			log_warnx("redis maxmemory-policy is %s: queued tasks may "
			    "be evicted (allow_eviction = yes)", pol);
	} else
		log_warnx("redis: cannot read maxmemory-policy (%s): make sure it "
		    "is noeviction", rp->type == REDIS_REPLY_ERROR ? rp->str :
		    "unexpected reply");
	r->redis_checked = 1;
	store_try_start(r);
}

static void
redis_state_cb(struct rconn *rc, int up, void *arg)
{
	struct sup_store *r = arg;

	if (!up) {
		r->redis_was_down = 1;
		return;
	}
	/* A probe first: answered before the check below, which the
	 * agents' start waits for, /health knows Redis by then. */
	if (!r->p_redis.busy && rconn_cmd(rc, probe_redis_cb, r, "PING") == 0) {
		r->p_redis.busy = 1;
		r->p_redis.sent = ev_now(r->sup->loop);
	}
	if (!r->redis_checked || r->redis_was_down)
		rconn_cmd(rc, policy_cb, r, "CONFIG GET maxmemory-policy");
	if (r->redis_was_down) {
		/* Redis may have come back empty: look soon. */
		r->redis_was_down = 0;
		r->next_recover = ev_now(r->sup->loop) + 3.0;
	}
}

static void
snapshots_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct sup_store *r = arg;
	int n, loaded = 0;

	if (res == NULL) {           /* connection lost: ask again */
		sup_pg_query(pg, "SELECT DISTINCT ON (agent) agent, version, "
		    "memory::text FROM memory_snapshots ORDER BY agent, version DESC",
		    0, NULL, NULL, NULL, snapshots_cb, r);
		return;
	}
	if (err != NULL) {
		log_warnx("postgres: memory snapshots: %s", err);
		r->pg_done = 1;
		store_try_start(r);
		return;
	}
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		const char *agent = PQgetvalue(res, i, 0);
		uint64_t v = strtoull(PQgetvalue(res, i, 1), NULL, 10);
		const char *slash = strrchr(agent, '/');
		char name[HIVE_NAME_MAX + 1];
		unsigned inst;
		json_t *j;
		json_error_t je;
		msgpack_zone z;
		msgpack_object o;
		struct proto_err perr;
		struct sup_mem *m;

		if (slash == NULL || (size_t)(slash - agent) > HIVE_NAME_MAX ||
		    (inst = (unsigned)strtoul(slash + 1, NULL, 10)) == 0)
			continue;
		memcpy(name, agent, (size_t)(slash - agent));
		name[slash - agent] = '\0';
		if ((j = json_loads(PQgetvalue(res, i, 2), 0, &je)) == NULL)
			continue;
		msgpack_zone_init(&z, 4096);
		if (json_is_object(j) && proto_json_to_obj(j, &z, &o, &perr) == 0 &&
		    (m = sup_mem_get(r->sup->mem, name, inst)) != NULL &&
		    sup_mem_put(m, v, &o) == 1)
			loaded++;
		msgpack_zone_destroy(&z);
		json_decref(j);
	}
	log_info("postgres: memory of %d agent instances loaded from snapshots",
	    loaded);
	r->pg_done = 1;
	store_try_start(r);
}

static void
coord_ended(const char *const *ids, size_t n, void *arg)
{
	sup_coord_ended(arg, ids, n);
}

/* Set o[key] to s unless s is NULL or "". */
static void
set_str(json_t *o, const char *key, const char *s)
{
	if (o != NULL && s != NULL && s[0] != '\0')
		json_object_set_new(o, key, json_string(s));
}

static json_t *
count_json(long long n)
{
	return n >= 0 ? json_integer(n) : json_null();
}

/*
 * What the recorder and the coordinator made known, as a live event
 * (events.c; docs/API.md, Events).  Their strings are lent: copied here.
 */
static void
record_event(const struct sup_rec_event *e, void *arg)
{
	struct sup *sup = arg;
	json_t *o = json_object();

	if (o == NULL)
		return;
	set_str(o, "id", e->id);
	if (strcmp(e->type, "workflow") == 0) {
		set_str(o, "state", e->state);
		json_object_set_new(o, "total", count_json(e->total));
		json_object_set_new(o, "completed", count_json(e->completed));
		json_object_set_new(o, "failed", count_json(e->failed));
	} else if (strcmp(e->type, "dead") == 0) {
		set_str(o, "action", e->state);
		set_str(o, "capability", e->capability);
		set_str(o, "agent", e->agent);
		set_str(o, "code", e->code);
		set_str(o, "reason", e->error);
	} else {
		set_str(o, "state", e->state);
		set_str(o, "capability", e->capability);
		set_str(o, "agent", e->agent);
		if (e->instance > 0)
			json_object_set_new(o, "instance",
			    json_integer(e->instance));
		set_str(o, "workflow", e->workflow);
		if (e->attempt > 0)
			json_object_set_new(o, "attempt",
			    json_integer(e->attempt));
		set_str(o, "error", e->error);
	}
	sup_event(sup, e->type, o);
}

/* The coordinator and the recorder, on the configuration in force. */
static void
record_begin(struct sup_store *r)
{
	const struct hive_conf *c = r->sup->cref->conf;
	struct sup_recorder_opts o = { .redis = c->redis, .prefix = c->prefix,
	    .host = c->host, .snapshots_keep = c->snapshots_keep,
	    .stats = r->tstats, .event = record_event, .event_arg = r->sup };
	struct sup_coord_opts co = { .redis = c->redis, .prefix = c->prefix,
	    .host = c->host, .event = record_event, .event_arg = r->sup };

	if ((r->coord = sup_coord_new(r->sup->loop, r->pg, &co)) == NULL)
		log_crit("coordinator: cannot start: workflows wait");
	else {
		o.ended = coord_ended;
		o.ended_arg = r->coord;
	}
	if ((r->rec = sup_recorder_new(r->sup->loop, r->pg, &o)) == NULL)
		log_crit("recorder: cannot start: nothing is recorded");
	else
		sup_store_queues(r->sup);
}

static void
migrated_cb(int ok, int version, void *arg)
{
	struct sup_store *r = arg;

	if (!ok) {
		/* A schema we cannot use (newer, or a failed migration):
		 * recording into it would do harm.  Stop. */
		log_crit("postgres: schema not usable (see above); stopping");
		r->sup->exit_code = 1;
		sup_shutdown(r->sup);
		return;
	}
	log_info("postgres: schema version %d", version);
	r->migrated = 1;
	record_begin(r);
	/* The snapshots until they are loaded once (a reload may migrate
	 * again): from then on the memory store is newer than any. */
	if (!r->pg_done)
		sup_pg_query(r->pg, "SELECT DISTINCT ON (agent) agent, version, "
		    "memory::text FROM memory_snapshots ORDER BY agent, version "
		    "DESC", 0, NULL, NULL, NULL, snapshots_cb, r);
}

/*
 * Name every queue of the configured agents to the recorder (at start and
 * after a reload): capabilities and agent queues at each priority, direct
 * queues.  Queues nobody here serves are found by the recorder's scan.
 */
void
sup_store_queues(struct sup *sup)
{
	struct sup_store *r = sup->store;
	const struct hive_conf *c = sup->cref->conf;
	char key[HIVE_KEY_MAX];

	sup_qstat_reconfigure(sup->qstat);
	if (r == NULL || r->rec == NULL)
		return;
	for (size_t i = 0; i < c->nagents; i++) {
		const struct hive_agent_conf *a = &c->agents[i];
		for (unsigned p = 0; p < HIVE_PRIO_LEVELS; p++) {
			for (int k = 0; k < a->ncaps; k++)
				if (proto_key_queue(key, sizeof(key), c->prefix,
				    a->caps[k], p) > 0)
					sup_recorder_add_queue(r->rec, key);
			if (proto_key_agent_queue(key, sizeof(key), c->prefix,
			    a->name, p) > 0)
				sup_recorder_add_queue(r->rec, key);
		}
		for (unsigned n = 1; n <= a->instances; n++)
			if (proto_key_direct(key, sizeof(key), c->prefix, a->name,
			    n) > 0)
				sup_recorder_add_queue(r->rec, key);
	}
}

static unsigned
agent_max_attempts(const char *agent, void *arg)
{
	struct sup *sup = arg;
	const struct hive_agent_conf *a = conf_agent(sup->cref->conf, agent);

	return a != NULL ? a->max_attempts : 0;
}

/* The reclaimer, on the configuration in force; NULL (logged). */
static struct sup_reclaim *
reclaim_new(struct sup *sup)
{
	const struct hive_conf *c = sup->cref->conf;
	struct sup_reclaim_opts ro = { .redis = c->redis, .prefix = c->prefix,
	    .host = c->host, .alive_ttl_ms = 5 * c->heartbeat_ms > 5000 ?
	    5 * c->heartbeat_ms : 5000, .agent_max_attempts = agent_max_attempts,
	    .arg = sup };

	return sup_reclaim_new(sup->loop, &ro);
}

/*
 * Connect to Redis (and PostgreSQL when configured) and start the agents
 * once the checks are done.  -1 only on a broken configuration.
 */
int
sup_store_start(struct sup *sup)
{
	const struct hive_conf *c = sup->cref->conf;
	struct sup_store *r = calloc(1, sizeof(*r));
	char err[256];

	if (r == NULL)
		return -1;
	sup->store = r;
	r->sup = sup;
	r->next_recover = ev_now(sup->loop) + 5.0;
	r->last_all = ev_now(sup->loop);
	ev_timer_init(&r->start_timer, start_timeout_cb, SUP_START_WAIT, 0.);
	r->start_timer.data = r;
	ev_timer_start(sup->loop, &r->start_timer);
	if ((r->rc = rconn_new(sup->loop, c->redis, "redis(hived)",
	    redis_state_cb, r, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return -1;
	}
	if ((sup->qstat = sup_qstat_new(sup, r->rc)) == NULL)
		return -1;
	if ((r->reclaim = reclaim_new(sup)) == NULL)
		return -1;
	if (c->postgres == NULL || c->postgres[0] == '\0') {
		r->pg_done = 1;
		return 0;
	}
	if ((r->tstats = sup_tstats_new()) == NULL)
		goto oom;
	if ((r->pg = sup_pg_new(sup->loop, c->postgres, NULL, NULL)) == NULL)
		goto oom;
	/* Queued first, as for Redis: answered before the agents start
	 * (its first round trip counts the connection's set-up). */
	if (sup_pg_query(r->pg, "SELECT 1", 0, NULL, NULL, NULL, probe_pg_cb,
	    r) == 0) {
		r->p_pg.busy = 1;
		r->p_pg.sent = ev_now(sup->loop);
	}
	if (sup_migrate(r->pg, migrated_cb, r) < 0)
		goto oom;
	return 0;
oom:
	log_warnx("postgres: out of memory");
	return -1;
}

/*
 * A reload changed the configuration: sup->cref is the new one, oc the
 * one it replaced.  hived.c has refused the reload already when redis,
 * prefix or host changed, or postgres was turned on or off (they need a
 * restart); what is left, the record side takes at once:
 *
 *   postgres         the connection is made again with the new conninfo,
 *                    the schema brought up to date there, and the
 *                    recorder and coordinator start over on it
 *   snapshots_keep   the recorder starts over with it
 *   heartbeat_interval  the reclaimer starts over (its liveness TTL)
 *
 * A recorder that starts over first reads what its predecessor had not
 * acknowledged (its consumer is the host's name): nothing is lost, and a
 * batch written twice is written once (the upsert).  A query of the old
 * ones still queued runs (sup_pg_forget), as a whole.
 */
void
sup_store_reload(struct sup *sup, const struct hive_conf *oc)
{
	struct sup_store *r = sup->store;
	const struct hive_conf *c = sup->cref->conf;
	int newpg = strcmp(oc->postgres, c->postgres) != 0;

	if (r == NULL)
		return;
	if (oc->heartbeat_ms != c->heartbeat_ms && r->reclaim != NULL) {
		struct sup_reclaim *n = reclaim_new(sup);

		if (n == NULL)
			log_warnx("reload: reclaimer: cannot start a new one: the "
			    "old one goes on with the old heartbeat_interval");
		else {
			sup_reclaim_free(r->reclaim);
			r->reclaim = n;
			log_info("reload: reclaimer started again");
		}
	}
	if (r->pg == NULL || (!newpg && oc->snapshots_keep == c->snapshots_keep))
		return;
	/* Before the migration is done there is nothing to start over:
	 * migrated_cb starts them on the configuration in force. */
	if (r->migrated) {
		sup_recorder_free(r->rec);
		sup_coord_free(r->coord);
		r->rec = NULL;
		r->coord = NULL;
	}
	if (!newpg) {
		if (r->migrated) {
			record_begin(r);
			log_info("reload: recorder started again");
		}
		return;
	}
	if (sup_pg_reconnect(r->pg, c->postgres) == -1) {
		/* Only the copy of a string failed: the old conninfo stays. */
		log_warnx("reload: postgres: out of memory: the record stays on "
		    "the old connection settings");
		if (r->migrated)
			record_begin(r);
		return;
	}
	log_info("reload: postgres: connecting with the new settings");
	if (r->migrated) {
		r->migrated = 0;
		if (sup_migrate(r->pg, migrated_cb, r) < 0)
			log_crit("reload: postgres: out of memory: nothing is "
			    "recorded until hived restarts");
	}
}

static void
finish_done(void *arg)
{
	struct sup_store *r = arg;

	ev_timer_stop(r->sup->loop, &r->finish_timer);
	log_info("recorder: all read is recorded");
	ev_break(r->sup->loop, EVBREAK_ALL);
}

static void
finish_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	log_warnx("recorder: not done after %.0fs (Redis or PostgreSQL down?); "
	    "the rest stays pending in Redis and is recorded when hived starts "
	    "again", SUP_FINISH_WAIT);
	ev_break(loop, EVBREAK_ALL);
}

/*
 * hived stops and every child is gone: the recorder writes what it holds
 * and what the last workers sent (their results, the stop events), then
 * the loop ends; after SUP_FINISH_WAIT it ends anyway.
 */
void
sup_store_stop(struct sup *sup)
{
	struct sup_store *r = sup->store;

	if (r == NULL || r->rec == NULL) {
		ev_break(sup->loop, EVBREAK_ALL);
		return;
	}
	if (r->finishing)
		return;
	r->finishing = 1;
	ev_timer_init(&r->finish_timer, finish_timeout_cb, SUP_FINISH_WAIT, 0.);
	ev_timer_start(sup->loop, &r->finish_timer);
	sup_recorder_finish(r->rec, finish_done, r);
}

void
sup_store_log_status(struct sup *sup)
{
	struct sup_store *r = sup->store;
	struct sup_recorder_stats st;
	struct sup_reclaim_stats rs;

	if (r == NULL)
		return;
	memset(&rs, 0, sizeof(rs));
	if (r->reclaim != NULL)
		sup_reclaim_stats(r->reclaim, &rs);
	if (r->rec == NULL) {
		log_info("status record postgres=off requeued=%" PRIu64
		    " dead=%" PRIu64, rs.requeued, rs.dead);
		return;
	}
	sup_recorder_stats(r->rec, &st);
	log_info("status record postgres=%s caught_up=%s streams=%u held=%zu "
	    "transactions=%" PRIu64 " entries=%" PRIu64 " upserted=%" PRIu64
	    " retries=%" PRIu64 " flushed=%" PRIu64 " claimed=%" PRIu64
	    " resets=%" PRIu64 " requeued=%" PRIu64 " dead=%" PRIu64,
	    sup_pg_is_up(r->pg) ? "up" : "down", st.caught_up ? "yes" : "no",
	    st.streams, st.held, st.batches, st.entries, st.staged, st.retries,
	    st.flushed, st.adopted, st.resets, rs.requeued, rs.dead);
}

void
sup_store_free(struct sup *sup)
{
	struct sup_store *r = sup->store;

	if (r == NULL)
		return;
	ev_timer_stop(sup->loop, &r->start_timer);
	ev_timer_stop(sup->loop, &r->finish_timer);
	sup_recorder_free(r->rec);
	sup_coord_free(r->coord);
	sup_reclaim_free(r->reclaim);
	if (r->pg != NULL)
		sup_pg_forget(r->pg, r);
	sup_pg_free(r->pg);
	rconn_free(r->rc);
	sup_qstat_free(sup->qstat);  /* after: its round had its NULL replies */
	sup->qstat = NULL;
	sup_tstats_free(r->tstats);
	free(r);
	sup->store = NULL;
}

/* ---- what GET /metrics, /queues and /health read ---- */

int
sup_store_redis_up(struct sup *sup)
{
	return sup->store != NULL && sup->store->rc != NULL &&
	    rconn_is_up(sup->store->rc);
}

int
sup_store_pg_state(struct sup *sup)
{
	if (sup->store == NULL || sup->store->pg == NULL)
		return -1;
	return sup_pg_is_up(sup->store->pg);
}

int
sup_store_recorder_stats(struct sup *sup, struct sup_recorder_stats *st)
{
	if (sup->store == NULL || sup->store->rec == NULL)
		return -1;
	sup_recorder_stats(sup->store->rec, st);
	return 0;
}

const struct sup_tstats *
sup_store_tstats(struct sup *sup)
{
	return sup->store != NULL ? sup->store->tstats : NULL;
}

struct rconn *
sup_store_redis(struct sup *sup)
{
	return sup->store != NULL ? sup->store->rc : NULL;
}

struct sup_pg *
sup_store_pg(struct sup *sup)
{
	struct sup_store *r = sup->store;

	return r != NULL && r->migrated ? r->pg : NULL;
}
