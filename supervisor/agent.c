/*
 * agent.c - agents and their instances.
 *
 * The table that decides what happens to an instance on each event is
 * agent_fsm.c (sup_fsm_step, a pure function); sup_inst_event feeds an
 * event through it, logs the transition and performs the actions (a
 * spawn that forks nothing comes back through the table as the event
 * SUP_EV_SPAWNFAIL).  Nothing else in hived assigns an instance's state.
 */
#include "hived.h"
#include "events.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* ---- configurations ---- */

struct sup_cref *
sup_cref_new(struct hive_conf *conf)
{
	struct sup_cref *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->conf = conf;
	c->refs = 1;
	return c;
}

struct sup_cref *
sup_cref_ref(struct sup_cref *c)
{
	c->refs++;
	return c;
}

void
sup_cref_unref(struct sup_cref *c)
{
	if (c == NULL || --c->refs > 0)
		return;
	conf_free(c->conf);
	free(c);
}

/* ---- instances ---- */

static void inst_timer_cb(struct ev_loop *, ev_timer *, int);

static struct sup_inst *
inst_new(struct sup_agent *a, unsigned n)
{
	struct sup_inst *in = calloc(1, sizeof(*in));

	if (in == NULL)
		return NULL;
	in->agent = a;
	in->n = n;
	snprintf(in->label, sizeof(in->label), "%s/%u", a->name, n);
	in->fsm.state = SUP_ST_STOPPED;
	in->exec_fd = -1;
	in->last_status = -1;
	ev_timer_init(&in->timer, inst_timer_cb, 0., 0.);
	in->timer.data = in;
	in->mem = sup_mem_get(a->sup->mem, a->name, n);
	if (in->mem == NULL) {
		free(in);
		return NULL;
	}
	return in;
}

/*
 * Only for an instance without a worker (pid 0), or at hived's exit
 * where the process is left to the EOF rule (see sup_free).
 */
static void
inst_free(struct sup_inst *in)
{
	if (in == NULL)
		return;
	ev_timer_stop(in->agent->sup->loop, &in->timer);
	sup_spawn_unqueue(in);
	sup_spawn_close_exec(in);
	sup_link_free(in->link);
	sup_output_free(in->output);
	free(in->hist);
	free(in);
}

static void
inst_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	sup_inst_event(w->data, SUP_EV_TIMER, 0);
}

static uint64_t
now_ms(struct sup *sup)
{
	return (uint64_t)(ev_now(sup->loop) * 1000.);
}

/* Restarts counted within the window, after dropping the old ones. */
static unsigned
hist_count(struct sup_inst *in)
{
	const struct hive_agent_conf *c = in->agent->conf;
	uint64_t now = now_ms(in->agent->sup);

	while (in->hist_len > 0) {
		unsigned oldest = (in->hist_head + in->hist_cap - in->hist_len) %
		    in->hist_cap;

		if (now - in->hist[oldest] < c->restart_window_ms)
			break;
		in->hist_len--;
	}
	return in->hist_len;
}

/* restart_limit 0 means no limit (docs/CONFIG.md). */
static int
limit_hit(struct sup_inst *in)
{
	const struct hive_agent_conf *c = in->agent->conf;

	if (c == NULL || c->restart_limit == 0)
		return 0;
	return hist_count(in) >= c->restart_limit;
}

static void
hist_add(struct sup_inst *in)
{
	const struct hive_agent_conf *c = in->agent->conf;

	if (c->restart_limit == 0)
		return;
	/* The ring grows as restarts come, up to the limit (a limit of
	 * thousands must not cost every instance its ring at once).  A
	 * ring larger than a lowered limit still counts right. */
	if (in->hist_len == in->hist_cap && in->hist_cap < c->restart_limit) {
		unsigned cap = in->hist_cap ? in->hist_cap * 2 : 4;
		uint64_t *h;

		if (cap > c->restart_limit)
			cap = c->restart_limit;
		if ((h = malloc(cap * sizeof(*h))) == NULL) {
			if (in->hist_cap == 0)
				return;  /* the limit is not enforced this time */
		} else {
			/* Full: the oldest is at head. */
			for (unsigned i = 0; i < in->hist_len; i++)
				h[i] = in->hist[(in->hist_head + i) % in->hist_cap];
			free(in->hist);
			in->hist = h;
			in->hist_cap = cap;
			in->hist_head = in->hist_len;
		}
	}
	in->hist[in->hist_head] = now_ms(in->agent->sup);
	in->hist_head = (in->hist_head + 1) % in->hist_cap;
	if (in->hist_len < in->hist_cap)
		in->hist_len++;
}

/* 0 for the first restart after a stable run, then backoff doubling. */
static unsigned
backoff_delay_ms(struct sup_inst *in)
{
	const struct hive_agent_conf *c = in->agent->conf;
	uint64_t d;

	if (in->backoff_n == 0)
		return 0;
	d = c->backoff_ms;
	for (unsigned i = 1; i < in->backoff_n && d < c->backoff_max_ms; i++)
		d *= 2;
	if (d > c->backoff_max_ms)
		d = c->backoff_max_ms;
	return (unsigned)d;
}

static void
inst_arm(struct sup_inst *in, unsigned ms)
{
	struct ev_loop *loop = in->agent->sup->loop;

	ev_timer_stop(loop, &in->timer);
	ev_timer_set(&in->timer, ms / 1000., 0.);
	ev_timer_start(loop, &in->timer);
}

static void
inst_send_drain(struct sup_inst *in, enum sup_event why)
{
	struct hive_frame f;

	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_CONTROL;
	f.u.control.cmd = HIVE_CTL_DRAIN;
	f.u.control.reason = HIVE_STR(sup_event_name(why));
	if (in->link != NULL && sup_link_send(in->link, &f) == -1)
		log_warnx("agent=%s pid=%ld cannot send drain (worker gone?)",
		    in->label, (long)in->pid);
}

/* The grace timer (SIGKILL at its end) covers a lost or ignored drain
 * too: stop_timeout, or the bound stop-all was given (in->grace_ms). */
static void
inst_grace(struct sup_inst *in)
{
	inst_arm(in, in->grace_ms > 0 ? in->grace_ms :
	    in->agent->sup->cref->conf->stop_timeout_ms);
}

/*
 * The worker is its process group's leader (setsid in spawn.c).  Its
 * handlers run in groups of their own (the worker kills those itself):
 * killed with the worker, they are adopted by hived, a child subreaper,
 * and killed with their groups when the worker is reaped (spawn.c,
 * "Left behind").  Only while the worker is not yet reaped: until then
 * its pid cannot be reused.
 */
static void
inst_kill(struct sup_inst *in)
{
	if (in->pid <= 0)
		return;
	if (kill(-in->pid, SIGKILL) == -1 && kill(in->pid, SIGKILL) == -1 &&
	    errno != ESRCH)
		log_warn("agent=%s pid=%ld kill", in->label, (long)in->pid);
}

/* The facts the table needs about in, as they are now. */
static struct sup_guard
inst_guard(struct sup_inst *in, int exit_ok)
{
	struct sup_agent *a = in->agent;
	struct sup_guard g;

	memset(&g, 0, sizeof(g));
	g.exit_ok = exit_ok;
	/* A removed agent, or any agent while hived stops, never restarts. */
	g.policy = (a->conf == NULL || a->removed || in->retired ||
	    a->sup->stopping) ? HIVE_RESTART_NEVER : a->conf->restart;
	g.limit_hit = limit_hit(in);
	g.asleep = a->conf != NULL && !a->conf->autostart;
	g.queued = in->fsm.state == SUP_ST_STARTING && in->pid == 0;
	g.held = in->held;
	return g;
}

/*
 * The event an operator reads in the log and the store's events: a spawn
 * failure is reported as the exit it stands for, the words these lines
 * have always had.
 */
static enum sup_event
reported(enum sup_event ev)
{
	return ev == SUP_EV_SPAWNFAIL ? SUP_EV_EXIT : ev;
}

/*
 * The instance left state was for in->fsm: stop the old state's timer,
 * log the move (a spawn is logged with its pid by inst_apply_actions;
 * ready <-> busy only at debug, it is the worker's heartbeat) and note
 * when it began to run.
 */
static void
inst_log_transition(struct sup_inst *in, enum sup_state was,
    enum sup_event ev, const struct sup_step *st)
{
	struct sup *sup = in->agent->sup;

	/* Each timer belongs to one state; leaving it stops it. */
	ev_timer_stop(sup->loop, &in->timer);
	if (st->act & SUP_ACT_SPAWN)
		;    /* logged with the new pid */
	else if ((was == SUP_ST_READY && st->next.state == SUP_ST_BUSY) ||
	    (was == SUP_ST_BUSY && st->next.state == SUP_ST_READY))
		log_debug("agent=%s pid=%ld state=%s", in->label,
		    (long)in->pid, sup_state_name(st->next.state));
	else
		log_info("agent=%s pid=%ld state=%s from=%s event=%s%s%s",
		    in->label, (long)in->pid,
		    sup_state_name(st->next.state), sup_state_name(was),
		    sup_event_name(reported(ev)),
		    st->next.state == SUP_ST_STOPPING ? " then=" : "",
		    st->next.state == SUP_ST_STOPPING ?
		    sup_after_name(st->next.after) : "");
	if ((st->next.state == SUP_ST_READY ||
	    st->next.state == SUP_ST_BUSY) && in->ready_since == 0)
		in->ready_since = ev_now(sup->loop);
}

/*
 * Carry out the actions act of a step that took in from was on ev, in
 * the order of SUP_ACT_*.  A spawn is only queued: spawn.c forks it at
 * its turn (sup_inst_spawn), and a fork that fails comes back then as
 * SUP_EV_SPAWNFAIL.
 */
static void
inst_apply_actions(struct sup_inst *in, enum sup_state was,
    enum sup_event ev, unsigned act)
{
	const struct hive_agent_conf *c = in->agent->conf;

	if (act & SUP_ACT_CLEAR) {
		in->hist_len = in->hist_head = 0;
		in->backoff_n = 0;
	}
	if (act & SUP_ACT_COUNT)
		hist_add(in);
	if (act & SUP_ACT_BACKOFF) {
		unsigned d = backoff_delay_ms(in);

		in->backoff_n++;
		log_info("agent=%s restarting delay_ms=%u restarts=%llu", in->label,
		    d, (unsigned long long)in->restarts + 1);
		inst_arm(in, d);
	}
	if (act & SUP_ACT_QUARANTINE) {
		log_crit("agent=%s failed reason=restart-limit limit=%u "
		    "window_ms=%u cooldown_ms=%u", in->label,
		    c->restart_limit, c->restart_window_ms, c->cooldown_ms);
		if (c->cooldown_ms > 0)
			inst_arm(in, c->cooldown_ms);
	}
	if (act & SUP_ACT_SEND_DRAIN)
		inst_send_drain(in, ev);
	if (act & SUP_ACT_GRACE)
		inst_grace(in);
	if (act & SUP_ACT_KILL) {
		log_warnx("agent=%s pid=%ld killing reason=%s", in->label,
		    (long)in->pid, sup_event_name(ev));
		inst_kill(in);
	}
	if (act & SUP_ACT_SPAWN) {
		in->spawn_from = was;
		in->spawn_ev = ev;
		sup_spawn_queue(in);
		log_debug("agent=%s spawn queued from=%s event=%s ahead=%u",
		    in->label, sup_state_name(was), sup_event_name(ev),
		    in->agent->sup->nqueued - 1);
	}
	/* Held only in STOPPED, from the step that put it there on. */
	if (act & SUP_ACT_HOLD)
		in->held = 1;
	else if (in->fsm.state != SUP_ST_STOPPED)
		in->held = 0;
}

int
sup_inst_event(struct sup_inst *in, enum sup_event ev, int exit_ok)
{
	struct sup_guard g = inst_guard(in, exit_ok);
	enum sup_state was = in->fsm.state;
	struct sup_step st = sup_fsm_step(in->fsm, ev, &g);

	if (!st.handled) {
		in->grace_ms = 0;
		return 0;
	}
	in->fsm = st.next;
	if (st.next.state != was)
		inst_log_transition(in, was, ev, &st);
	inst_apply_actions(in, was, ev, st.act);
	in->grace_ms = 0;           /* for this event only */
	if (in->fsm.state != was) {
		sup_store_transition(in, was, reported(ev));
		sup_event_agent(in, was, reported(ev));
		sup_state_changed(in->agent->sup);
	}
	return 1;
}

void
sup_inst_spawn(struct sup_inst *in)
{
	if (in->spawned_at > 0)
		in->restarts++;
	if (sup_spawn(in) == -1) {
		log_warnx("agent=%s state=starting from=%s event=%s "
		    "spawn failed", in->label, sup_state_name(in->spawn_from),
		    sup_event_name(in->spawn_ev));
		/* Nothing forked: the table makes it a crash.  Its
		 * SPAWNFAIL cells never spawn (test_agent_table.c). */
		sup_inst_event(in, SUP_EV_SPAWNFAIL, 0);
		return;
	}
	in->store_dirty = 1;            /* its row gets the pid */
	log_info("agent=%s pid=%ld state=starting from=%s event=%s "
	    "memory_v=%llu", in->label, (long)in->pid,
	    sup_state_name(in->spawn_from), sup_event_name(in->spawn_ev),
	    (unsigned long long)in->mem->v);
}

void
sup_inst_hello(struct sup_inst *in, const struct hive_hello *h)
{
	if (in->hello || h->instance != in->n ||
	    h->agent.len != strlen(in->agent->name) ||
	    memcmp(h->agent.ptr, in->agent->name, h->agent.len) != 0 ||
	    h->pid != (int64_t)in->pid) {
		log_warnx("agent=%s pid=%ld bad hello (agent %.*s/%u pid %lld)",
		    in->label, (long)in->pid, (int)h->agent.len, h->agent.ptr,
		    h->instance, (long long)h->pid);
		sup_inst_event(in, SUP_EV_BADFRAME, 0);
		return;
	}
	in->hello = 1;
	log_debug("agent=%s pid=%ld hello", in->label, (long)in->pid);
}

/*
 * The worker's count of handler failures grew by n: each is logged,
 * recorded as an event and fed to the table (SUP_EV_HANDLER), which
 * counts it against the restart-rate limit or, past the limit, kills the
 * worker.  Why the worker reports and hived decides: worker/worker.c,
 * wrk_handler_failed.
 */
static void
inst_handler_failed(struct sup_inst *in, uint64_t n)
{
	char reason[96];

	in->handler_restarts += n;
	log_warnx("agent=%s pid=%ld handler failed handler_restarts=%llu",
	    in->label, (long)in->pid, (unsigned long long)in->handler_restarts);
	snprintf(reason, sizeof(reason), "handler exited or could not start "
	    "(%llu so far)", (unsigned long long)in->handler_restarts);
	sup_store_handler(in, reason);
	while (n-- > 0 && sup_inst_event(in, SUP_EV_HANDLER, 0) &&
	    in->fsm.state != SUP_ST_STOPPING)
		;
}

/* The task a heartbeat names (the oldest the worker runs), and since
 * when, as far as heartbeats tell: for GET /agents. */
static void
inst_task(struct sup_inst *in, const struct hive_heartbeat *hb)
{
	size_t n = hb->task.len < HIVE_ID_MAX ? hb->task.len : HIVE_ID_MAX;

	if (n == 0) {
		in->task[0] = '\0';
		return;
	}
	if (strlen(in->task) == n && memcmp(in->task, hb->task.ptr, n) == 0)
		return;
	memcpy(in->task, hb->task.ptr, n);
	in->task[n] = '\0';
	in->task_since = in->last_hb;
}

void
sup_inst_heartbeat(struct sup_inst *in, const struct hive_heartbeat *hb)
{
	const struct hive_agent_conf *c = in->agent->conf;

	in->last_hb = ev_now(in->agent->sup->loop);
	in->have_hb = 1;
	in->done = hb->done;
	in->inflight = hb->inflight;
	inst_task(in, hb);
	in->handler_pid = hb->handler_pid;
	in->handler_rss_kb = hb->handler_rss_kb;
	if (hb->handler_restarts > in->handler_seen) {
		uint64_t n = hb->handler_restarts - in->handler_seen;

		in->handler_seen = hb->handler_restarts;
		inst_handler_failed(in, n);
		if (in->fsm.state == SUP_ST_STOPPING)
			return;         /* killed: past the limit */
	}
	switch (hb->state) {
	case HIVE_WSTATE_READY:
		sup_inst_event(in, SUP_EV_READY, 0);
		break;
	case HIVE_WSTATE_BUSY:
		sup_inst_event(in, SUP_EV_BUSY, 0);
		break;
	case HIVE_WSTATE_STARTING:
	case HIVE_WSTATE_DRAINING:
		return;
	}
	if (c == NULL || (in->fsm.state != SUP_ST_READY &&
	    in->fsm.state != SUP_ST_BUSY))
		return;
	/* Recycling: the drain lets the task in flight finish first. */
	if (c->max_tasks > 0 && hb->done >= c->max_tasks) {
		log_info("agent=%s pid=%ld recycle reason=max_tasks done=%llu",
		    in->label, (long)in->pid, (unsigned long long)hb->done);
		sup_inst_event(in, SUP_EV_RECYCLE, 0);
	} else if (c->max_rss_kb > 0 && hb->handler_rss_kb > c->max_rss_kb) {
		log_info("agent=%s pid=%ld recycle reason=max_rss rss_kb=%llu "
		    "max_kb=%llu", in->label, (long)in->pid,
		    (unsigned long long)hb->handler_rss_kb,
		    (unsigned long long)c->max_rss_kb);
		sup_inst_event(in, SUP_EV_RECYCLE, 0);
	}
}

void
sup_inst_memory(struct sup_inst *in, const struct hive_memory *m)
{
	int r;

	if (m->instance != in->n || m->agent.len != strlen(in->agent->name) ||
	    memcmp(m->agent.ptr, in->agent->name, m->agent.len) != 0) {
		log_warnx("agent=%s pid=%ld memory for another agent (%.*s/%u)",
		    in->label, (long)in->pid, (int)m->agent.len, m->agent.ptr,
		    m->instance);
		sup_inst_event(in, SUP_EV_BADFRAME, 0);
		return;
	}
	if (m->memory_v == 0)
		return;
	r = sup_mem_put(in->mem, m->memory_v, &m->memory);
	if (r == -1)
		log_warnx("agent=%s memory_v=%llu not kept: out of memory",
		    in->label, (unsigned long long)m->memory_v);
	else
		log_debug("agent=%s memory_v=%llu %s", in->label,
		    (unsigned long long)m->memory_v, r ? "kept" : "older, ignored");
}

void
sup_inst_exited(struct sup_inst *in, int status)
{
	struct sup *sup = in->agent->sup;
	ev_tstamp now = ev_now(sup->loop);
	pid_t pid = in->pid;
	int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;

	/* pid 0 first: from here on a kill must not reach a reused pid. */
	in->pid = 0;
	in->last_status = status;
	if (in->link != NULL) {
		sup_link_final_read(in->link);
		sup_link_free(in->link);
		in->link = NULL;
	}
	sup_spawn_exec_reaped(in, pid);
	in->done_base += in->done;
	in->done = 0;
	in->inflight = 0;
	in->task[0] = '\0';
	in->handler_pid = 0;
	in->handler_rss_kb = 0;
	in->handler_seen = 0;
	/* A worker that stayed ready long enough earns an immediate restart
	 * next time; one that dies young climbs the backoff. */
	if (in->ready_since > 0 && now - in->ready_since >= SUP_STABLE_MS / 1000.)
		in->backoff_n = 0;
	in->ready_since = 0;
	in->hello = in->have_hb = 0;
	if (WIFSIGNALED(status))
		log_info("agent=%s pid=%ld exited signal=%d state=%s", in->label,
		    (long)pid, WTERMSIG(status), sup_state_name(in->fsm.state));
	else
		log_info("agent=%s pid=%ld exited status=%d state=%s", in->label,
		    (long)pid, WEXITSTATUS(status), sup_state_name(in->fsm.state));
	sup_inst_event(in, SUP_EV_EXIT, ok);
}

struct sup_inst *
sup_inst_by_pid(struct sup *sup, pid_t pid)
{
	struct sup_agent *a;

	/* Linear: exits are rare next to everything else; 500 instances
	 * cost microseconds. */
	TAILQ_FOREACH(a, &sup->agents, entry)
		for (unsigned i = 0; i < a->ninst; i++)
			if (a->inst[i] != NULL && a->inst[i]->pid == pid)
				return a->inst[i];
	return NULL;
}

void
sup_inst_log_status(const struct sup_inst *in)
{
	struct sup *sup = in->agent->sup;
	ev_tstamp now = ev_now(sup->loop);

	if (in->have_hb)
		log_info("agent=%s state=%s pid=%ld restarts=%llu "
		    "handler_restarts=%llu done=%llu "
		    "inflight=%u memory_v=%llu heartbeat_age_ms=%lld rss_kb=%llu",
		    in->label, sup_state_name(in->fsm.state), (long)in->pid,
		    (unsigned long long)in->restarts,
		    (unsigned long long)in->handler_restarts,
		    (unsigned long long)(in->done_base + in->done), in->inflight,
		    (unsigned long long)in->mem->v,
		    (long long)((now - in->last_hb) * 1000.),
		    (unsigned long long)in->handler_rss_kb);
	else
		log_info("agent=%s state=%s pid=%ld restarts=%llu "
		    "handler_restarts=%llu done=%llu memory_v=%llu", in->label,
		    sup_state_name(in->fsm.state), (long)in->pid,
		    (unsigned long long)in->restarts,
		    (unsigned long long)in->handler_restarts,
		    (unsigned long long)(in->done_base + in->done),
		    (unsigned long long)in->mem->v);
}

/* ---- agents ---- */

static int
agent_grow(struct sup_agent *a, unsigned n)
{
	struct sup_inst **v;

	if (n <= a->ninst)
		return 0;
	v = reallocarray(a->inst, n, sizeof(*v));
	if (v == NULL)
		return -1;
	for (unsigned i = a->ninst; i < n; i++)
		v[i] = NULL;
	a->inst = v;
	for (unsigned i = a->ninst; i < n; i++) {
		if ((v[i] = inst_new(a, i + 1)) == NULL) {
			a->ninst = i;
			return -1;
		}
	}
	a->ninst = n;
	return 0;
}

struct sup_agent *
sup_agent_new(struct sup *sup, struct sup_cref *cref,
    const struct hive_agent_conf *conf)
{
	struct sup_agent *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->sup = sup;
	snprintf(a->name, sizeof(a->name), "%s", conf->name);
	a->conf = conf;
	a->cref = sup_cref_ref(cref);
	if (agent_grow(a, conf->instances) == -1) {
		sup_agent_free(a);
		return NULL;
	}
	return a;
}

/* Instances and the config reference; a live worker is not waited for
 * (only hived's own exit frees agents that still have one). */
void
sup_agent_free(struct sup_agent *a)
{
	if (a == NULL)
		return;
	for (unsigned i = 0; i < a->ninst; i++)
		inst_free(a->inst[i]);
	free(a->inst);
	sup_cref_unref(a->cref);
	free(a);
}

struct sup_agent *
sup_agent_find(struct sup *sup, const char *name)
{
	struct sup_agent *a;

	TAILQ_FOREACH(a, &sup->agents, entry)
		if (strcmp(a->name, name) == 0)
			return a;
	return NULL;
}

void
sup_agent_start(struct sup_agent *a)
{
	for (unsigned i = 0; i < a->ninst; i++)
		if (a->inst[i]->fsm.state == SUP_ST_STOPPED)
			sup_inst_event(a->inst[i], SUP_EV_START, 0);
}

/*
 * Reload.  Unchanged agents only move to the new section (same content).
 * Changed ones (or one that comes back after being removed) restart every
 * instance with its memory; instances past the new count drain and stop;
 * new instances start.
 */
void
sup_agent_reconfigure(struct sup_agent *a, struct sup_cref *cref,
    const struct hive_agent_conf *conf, int changed)
{
	unsigned old_n = a->ninst, want = conf->instances;

	sup_cref_ref(cref);
	sup_cref_unref(a->cref);
	a->cref = cref;
	a->conf = conf;
	a->removed = 0;
	if (!changed)
		return;
	if (agent_grow(a, want) == -1)
		log_warnx("agent=%s cannot grow to %u instances: out of memory",
		    a->name, want);
	for (unsigned i = 0; i < a->ninst; i++) {
		struct sup_inst *in = a->inst[i];

		if (i >= want) {
			in->retired = 1;
			sup_inst_event(in, SUP_EV_STOP, 0);
		} else if (i >= old_n) {
			sup_inst_event(in, SUP_EV_START, 0);
		} else {
			in->retired = 0;
			in->hist_len = in->hist_head = 0;  /* new limits, new count */
			sup_inst_event(in, SUP_EV_RELOAD, 0);
		}
	}
}

int
sup_agent_event(struct sup_agent *a, enum sup_event ev)
{
	int n = 0;

	for (unsigned i = 0; i < a->ninst; i++)
		n += sup_inst_event(a->inst[i], ev, 0);
	return n;
}

static int
inst_idle(const struct sup_inst *in)
{
	return in->pid == 0 && (in->fsm.state == SUP_ST_STOPPED ||
	    in->fsm.state == SUP_ST_CRASHED);
}

void
sup_agent_collect(struct sup_agent *a)
{
	while (a->ninst > 0 && (a->removed || a->inst[a->ninst - 1]->retired) &&
	    inst_idle(a->inst[a->ninst - 1])) {
		log_debug("agent=%s removed", a->inst[a->ninst - 1]->label);
		inst_free(a->inst[--a->ninst]);
	}
}

int
sup_agent_gone(const struct sup_agent *a)
{
	return a->removed && a->ninst == 0;
}
