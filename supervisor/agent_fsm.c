/*
 * agent_fsm.c - the one table that decides what happens to an agent
 * instance on each event (hived.h draws it).
 *
 * The table (sup_fsm_step) is a pure function of (state, event, guard): no
 * clock, no process, no I/O, so tests walk it in isolation
 * (tests/supervisor/test_agent_table.c).  Each cell is a tiny function
 * that names the next state and the actions; agent.c (sup_inst_event)
 * feeds an event through it, logs the transition and performs the
 * actions.
 */
#include "hived.h"


typedef struct sup_step sup_cell(struct sup_fsm cur, const struct sup_guard *g);

static struct sup_step
to(enum sup_state s, enum sup_after a, unsigned act)
{
	struct sup_step st = { { s, a }, act, 1 };

	return st;
}

/* The event does not apply in this state: nothing changes. */
static struct sup_step
c_ign(struct sup_fsm cur, const struct sup_guard *g)
{
	struct sup_step st = { cur, 0, 0 };

	(void)g;
	return st;
}

/* Applies, but there is nothing to do (a ready heartbeat while ready). */
static struct sup_step
c_same(struct sup_fsm cur, const struct sup_guard *g)
{
	(void)g;
	return to(cur.state, cur.after, 0);
}

static struct sup_step
c_spawn(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_STARTING, SUP_AFTER_NONE, SUP_ACT_SPAWN);
}

/* The first start: autostart = no begins asleep, woken by an operator. */
static struct sup_step
c_start(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->asleep)
		return to(SUP_ST_SLEEPING, SUP_AFTER_NONE, 0);
	return c_spawn(cur, g);
}

/* An operator (or a fixed config) starts it afresh: the history goes. */
static struct sup_step
c_spawn_clear(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_STARTING, SUP_AFTER_NONE, SUP_ACT_SPAWN | SUP_ACT_CLEAR);
}

static struct sup_step
c_ready(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_READY, SUP_AFTER_NONE, 0);
}

static struct sup_step
c_busy(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_BUSY, SUP_AFTER_NONE, 0);
}

static struct sup_step
c_clear(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(cur.state, cur.after, SUP_ACT_CLEAR);
}

static struct sup_step
c_drain_restart(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_STOPPING, SUP_AFTER_RESTART, SUP_ACT_DRAIN);
}

static struct sup_step
c_drain_sleep(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_STOPPING, SUP_AFTER_SLEEP, SUP_ACT_DRAIN);
}

static struct sup_step
c_drain_stop(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_STOPPING, SUP_AFTER_STOP, SUP_ACT_DRAIN);
}

/*
 * STARTING with its spawn still queued (spawn.c paces forks): there is no
 * worker to drain or kill.  A restart or a reload changes nothing (the
 * fork, when its turn comes, reads the agent's section as it is then);
 * sleep and stop just leave STARTING, and the queue skips it.
 */
static struct sup_step
c_start_restart(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->queued)
		return c_same(cur, g);
	return c_drain_restart(cur, g);
}

static struct sup_step
c_start_sleep(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->queued)
		return to(SUP_ST_SLEEPING, SUP_AFTER_NONE, 0);
	return c_drain_sleep(cur, g);
}

static struct sup_step
c_start_stop(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->queued)
		return to(SUP_ST_STOPPED, SUP_AFTER_NONE, 0);
	return c_drain_stop(cur, g);
}

/* Hung or broken: no drain, it would not listen. */
static struct sup_step
c_kill_crash(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_STOPPING, SUP_AFTER_CRASH, SUP_ACT_KILL);
}

/* Nothing forked yet: nothing can be hung or broken. */
static struct sup_step
c_start_kill_crash(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->queued)
		return c_ign(cur, g);
	return c_kill_crash(cur, g);
}

/* Grace over, or broken while stopping: kill, keep the intent. */
static struct sup_step
c_kill(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(cur.state, cur.after, SUP_ACT_KILL);
}

static struct sup_step
c_to_sleeping(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_SLEEPING, SUP_AFTER_NONE, 0);
}

static struct sup_step
c_to_sleeping_clear(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_SLEEPING, SUP_AFTER_NONE, SUP_ACT_CLEAR);
}

static struct sup_step
c_to_stopped(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_STOPPED, SUP_AFTER_NONE, 0);
}

/*
 * A worker died that nobody asked to stop (or that hived killed as hung):
 * the restart policy, then the rate limit, decide.  The first restart
 * after a stable run has no delay; sup_inst_event computes the backoff.
 */
static struct sup_step
exit_crash(int exit_ok, const struct sup_guard *g)
{
	int again = g->policy == HIVE_RESTART_ALWAYS ||
	    (g->policy == HIVE_RESTART_ON_FAILURE && !exit_ok);

	if (!again)
		return to(exit_ok ? SUP_ST_STOPPED : SUP_ST_CRASHED,
		    SUP_AFTER_NONE, 0);
	if (g->limit_hit)
		return to(SUP_ST_FAILED, SUP_AFTER_NONE, SUP_ACT_QUARANTINE);
	return to(SUP_ST_RESTARTING, SUP_AFTER_NONE,
	    SUP_ACT_COUNT | SUP_ACT_BACKOFF);
}

static struct sup_step
c_exit_run(struct sup_fsm cur, const struct sup_guard *g)
{
	return exit_crash(g->exit_ok, g);
}

static struct sup_step
c_exit_stopping(struct sup_fsm cur, const struct sup_guard *g)
{
	switch (cur.after) {
	case SUP_AFTER_RESTART:
		return to(SUP_ST_STARTING, SUP_AFTER_NONE, SUP_ACT_SPAWN);
	case SUP_AFTER_SLEEP:
		return to(SUP_ST_SLEEPING, SUP_AFTER_NONE, 0);
	case SUP_AFTER_STOP:
		return to(SUP_ST_STOPPED, SUP_AFTER_NONE, 0);
	case SUP_AFTER_HOLD:
	case SUP_AFTER_DRAIN:
		return to(SUP_ST_STOPPED, SUP_AFTER_NONE, SUP_ACT_HOLD);
	case SUP_AFTER_CRASH:
	case SUP_AFTER_NONE:
		break;
	}
	/* Killed by hived: a failure whatever the status says. */
	return exit_crash(0, g);
}

/*
 * Changing what a STOPPING instance does next.  Shutdown and removal
 * (after = stop) win over operators; only a reload that brings the agent
 * back revives it.  An operator's drain is the one stop without a grace
 * timer: any other intent put in its place arms one, so that only
 * then=drain waits for the worker without a bound (its heartbeat
 * deadline still applies).
 */
static struct sup_step
want(struct sup_fsm cur, enum sup_after next)
{
	return to(SUP_ST_STOPPING, next, cur.after == SUP_AFTER_DRAIN &&
	    next != SUP_AFTER_DRAIN ? SUP_ACT_GRACE : 0);
}

static struct sup_step
c_want_restart(struct sup_fsm cur, const struct sup_guard *g)
{
	if (cur.after == SUP_AFTER_STOP)
		return c_ign(cur, g);
	return want(cur, SUP_AFTER_RESTART);
}

static struct sup_step
c_want_sleep(struct sup_fsm cur, const struct sup_guard *g)
{
	if (cur.after == SUP_AFTER_STOP)
		return c_ign(cur, g);
	return want(cur, SUP_AFTER_SLEEP);
}

static struct sup_step
c_want_wake(struct sup_fsm cur, const struct sup_guard *g)
{
	if (cur.after != SUP_AFTER_SLEEP)
		return c_ign(cur, g);
	return want(cur, SUP_AFTER_RESTART);
}

/* A sleeper stays asleep and wakes with the new section; what an
 * operator stopped stays stopped. */
static struct sup_step
c_want_reload(struct sup_fsm cur, const struct sup_guard *g)
{
	if (cur.after == SUP_AFTER_SLEEP || cur.after == SUP_AFTER_HOLD ||
	    cur.after == SUP_AFTER_DRAIN)
		return c_same(cur, g);
	return want(cur, SUP_AFTER_RESTART);
}

static struct sup_step
c_want_stop(struct sup_fsm cur, const struct sup_guard *g)
{
	return want(cur, SUP_AFTER_STOP);
}

/* Operator start while stopping: it comes back once its worker is gone
 * (already coming back: nothing to do). */
static struct sup_step
c_want_start(struct sup_fsm cur, const struct sup_guard *g)
{
	if (cur.after == SUP_AFTER_STOP || cur.after == SUP_AFTER_RESTART)
		return c_ign(cur, g);
	return want(cur, SUP_AFTER_RESTART);
}

static struct sup_step
c_want_opstop(struct sup_fsm cur, const struct sup_guard *g)
{
	if (cur.after == SUP_AFTER_STOP || cur.after == SUP_AFTER_HOLD)
		return c_ign(cur, g);
	return want(cur, SUP_AFTER_HOLD);
}

/* A drain does not lift a bound already running (a restart's, a
 * stop's): it only keeps the instance down afterwards. */
static struct sup_step
c_want_drain(struct sup_fsm cur, const struct sup_guard *g)
{
	if (cur.after == SUP_AFTER_STOP || cur.after == SUP_AFTER_HOLD ||
	    cur.after == SUP_AFTER_DRAIN)
		return c_ign(cur, g);
	return want(cur, SUP_AFTER_DRAIN);
}

/* No grace timer runs for then=drain: a worker that stops beating while
 * it drains is hung, and killed (the intent stays). */
static struct sup_step
c_deadline_stopping(struct sup_fsm cur, const struct sup_guard *g)
{
	if (cur.after != SUP_AFTER_DRAIN)
		return c_ign(cur, g);
	return to(cur.state, cur.after, SUP_ACT_KILL);
}

/*
 * Operator stop and drain (also stop-all).  Both end STOPPED and held
 * (SUP_ACT_HOLD): no restart policy, first start or reload starts a held
 * instance again, only an operator (start, restart, sleep).  stop drains
 * with the grace timer (SIGKILL at stop_timeout, or stop-all's bound);
 * drain sends the same CONTROL drain without one: the worker finishes
 * its tasks, each bounded by its own timeout.
 */
static struct sup_step
c_opstop(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_STOPPING, SUP_AFTER_HOLD, SUP_ACT_DRAIN);
}

static struct sup_step
c_opdrain(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_STOPPING, SUP_AFTER_DRAIN, SUP_ACT_SEND_DRAIN);
}

/* No worker: held at once. */
static struct sup_step
c_hold(struct sup_fsm cur, const struct sup_guard *g)
{
	return to(SUP_ST_STOPPED, SUP_AFTER_NONE, SUP_ACT_HOLD);
}

static struct sup_step
c_start_opstop(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->queued)
		return c_hold(cur, g);
	return c_opstop(cur, g);
}

static struct sup_step
c_start_opdrain(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->queued)
		return c_hold(cur, g);
	return c_opdrain(cur, g);
}

/* Stopped already (exited cleanly, say): held from now on. */
static struct sup_step
c_stopped_hold(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->held)
		return c_ign(cur, g);
	return c_hold(cur, g);
}

/* The first start and a reload pass a held instance by. */
static struct sup_step
c_stopped_start(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->held)
		return c_ign(cur, g);
	return c_start(cur, g);
}

static struct sup_step
c_stopped_reload(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->held)
		return c_ign(cur, g);
	return c_spawn_clear(cur, g);
}

/* Nothing was forked: a crash like an exit with a failure status, so
 * the policy, backoff and the rate limit apply and a timer retries. */
static struct sup_step
c_spawn_fail(struct sup_fsm cur, const struct sup_guard *g)
{
	return exit_crash(0, g);
}

/*
 * The worker's handler died unasked or could not start.  The worker
 * starts it again itself, on its own backoff; here the failure counts
 * against the restart-rate limit like a worker's crash, and the one past
 * the limit kills the worker, whose exit then finds the limit hit:
 * FAILED (CRASHED with restart = never).
 */
static struct sup_step
c_handler(struct sup_fsm cur, const struct sup_guard *g)
{
	if (g->limit_hit)
		return c_kill_crash(cur, g);
	return to(cur.state, cur.after, SUP_ACT_COUNT);
}

/*
 * Rows: states.  Columns: events, named, so the order of enum sup_event
 * cannot shift a cell.  A cell not named is c_ign: the event does not
 * apply in that state.
 */
static sup_cell *const sup_table[SUP_ST_COUNT][SUP_EV_COUNT] = {
	[SUP_ST_STARTING] = {
		[SUP_EV_HANDLER] = c_handler,
		[SUP_EV_READY] = c_ready,
		[SUP_EV_BUSY] = c_busy,
		[SUP_EV_EXIT] = c_exit_run,
		[SUP_EV_SPAWNFAIL] = c_spawn_fail,
		[SUP_EV_DEADLINE] = c_start_kill_crash,
		[SUP_EV_BADFRAME] = c_start_kill_crash,
		[SUP_EV_RESTART] = c_start_restart,
		[SUP_EV_SLEEP] = c_start_sleep,
		[SUP_EV_RESET] = c_clear,
		[SUP_EV_RELOAD] = c_start_restart,
		[SUP_EV_STOP] = c_start_stop,
		[SUP_EV_OPSTOP] = c_start_opstop,
		[SUP_EV_DRAIN] = c_start_opdrain,
	},
	[SUP_ST_READY] = {
		[SUP_EV_HANDLER] = c_handler,
		[SUP_EV_READY] = c_same,
		[SUP_EV_BUSY] = c_busy,
		[SUP_EV_EXIT] = c_exit_run,
		[SUP_EV_DEADLINE] = c_kill_crash,
		[SUP_EV_BADFRAME] = c_kill_crash,
		[SUP_EV_RECYCLE] = c_drain_restart,
		[SUP_EV_RESTART] = c_drain_restart,
		[SUP_EV_SLEEP] = c_drain_sleep,
		[SUP_EV_RESET] = c_clear,
		[SUP_EV_RELOAD] = c_drain_restart,
		[SUP_EV_STOP] = c_drain_stop,
		[SUP_EV_OPSTOP] = c_opstop,
		[SUP_EV_DRAIN] = c_opdrain,
	},
	[SUP_ST_BUSY] = {
		[SUP_EV_HANDLER] = c_handler,
		[SUP_EV_READY] = c_ready,
		[SUP_EV_BUSY] = c_same,
		[SUP_EV_EXIT] = c_exit_run,
		[SUP_EV_DEADLINE] = c_kill_crash,
		[SUP_EV_BADFRAME] = c_kill_crash,
		[SUP_EV_RECYCLE] = c_drain_restart,
		[SUP_EV_RESTART] = c_drain_restart,
		[SUP_EV_SLEEP] = c_drain_sleep,
		[SUP_EV_RESET] = c_clear,
		[SUP_EV_RELOAD] = c_drain_restart,
		[SUP_EV_STOP] = c_drain_stop,
		[SUP_EV_OPSTOP] = c_opstop,
		[SUP_EV_DRAIN] = c_opdrain,
	},
	[SUP_ST_SLEEPING] = {
		[SUP_EV_RESTART] = c_spawn,
		[SUP_EV_WAKE] = c_spawn,
		[SUP_EV_RESET] = c_clear,
		[SUP_EV_STOP] = c_to_stopped,
		[SUP_EV_OPSTART] = c_spawn_clear,
		[SUP_EV_OPSTOP] = c_hold,
		[SUP_EV_DRAIN] = c_hold,
	},
	[SUP_ST_STOPPING] = {
		[SUP_EV_EXIT] = c_exit_stopping,
		[SUP_EV_TIMER] = c_kill,
		[SUP_EV_DEADLINE] = c_deadline_stopping,
		[SUP_EV_BADFRAME] = c_kill,
		[SUP_EV_RESTART] = c_want_restart,
		[SUP_EV_SLEEP] = c_want_sleep,
		[SUP_EV_WAKE] = c_want_wake,
		[SUP_EV_RESET] = c_clear,
		[SUP_EV_RELOAD] = c_want_reload,
		[SUP_EV_STOP] = c_want_stop,
		[SUP_EV_OPSTART] = c_want_start,
		[SUP_EV_OPSTOP] = c_want_opstop,
		[SUP_EV_DRAIN] = c_want_drain,
	},
	[SUP_ST_STOPPED] = {
		[SUP_EV_START] = c_stopped_start,
		[SUP_EV_RESTART] = c_spawn_clear,
		[SUP_EV_SLEEP] = c_to_sleeping,
		[SUP_EV_RESET] = c_clear,
		[SUP_EV_RELOAD] = c_stopped_reload,
		[SUP_EV_OPSTART] = c_spawn_clear,
		[SUP_EV_OPSTOP] = c_stopped_hold,
		[SUP_EV_DRAIN] = c_stopped_hold,
	},
	[SUP_ST_CRASHED] = {
		[SUP_EV_START] = c_start,
		[SUP_EV_RESTART] = c_spawn_clear,
		[SUP_EV_SLEEP] = c_to_sleeping,
		[SUP_EV_RESET] = c_clear,
		[SUP_EV_RELOAD] = c_spawn_clear,
		[SUP_EV_STOP] = c_to_stopped,
		[SUP_EV_OPSTART] = c_spawn_clear,
		[SUP_EV_OPSTOP] = c_hold,
		[SUP_EV_DRAIN] = c_hold,
	},
	[SUP_ST_RESTARTING] = {
		[SUP_EV_TIMER] = c_spawn,
		[SUP_EV_RESTART] = c_spawn,
		[SUP_EV_SLEEP] = c_to_sleeping,
		[SUP_EV_RESET] = c_clear,
		[SUP_EV_STOP] = c_to_stopped,
		[SUP_EV_OPSTOP] = c_hold,
		[SUP_EV_DRAIN] = c_hold,
	},
	/* start lifts the quarantine as reset and restart do: an operator
	 * asked for the instance to run. */
	[SUP_ST_FAILED] = {
		[SUP_EV_TIMER] = c_spawn_clear,
		[SUP_EV_RESTART] = c_spawn_clear,
		[SUP_EV_SLEEP] = c_to_sleeping_clear,
		[SUP_EV_RESET] = c_spawn_clear,
		[SUP_EV_RELOAD] = c_spawn_clear,
		[SUP_EV_STOP] = c_to_stopped,
		[SUP_EV_OPSTART] = c_spawn_clear,
		[SUP_EV_OPSTOP] = c_hold,
		[SUP_EV_DRAIN] = c_hold,
	},
};

struct sup_step
sup_fsm_step(struct sup_fsm cur, enum sup_event ev, const struct sup_guard *g)
{
	static const struct sup_guard none;
	sup_cell *cell;

	if ((unsigned)cur.state >= SUP_ST_COUNT || (unsigned)ev >= SUP_EV_COUNT)
		return c_ign(cur, g);
	if ((cell = sup_table[cur.state][ev]) == NULL)
		return c_ign(cur, g);
	return cell(cur, g != NULL ? g : &none);
}

const char *
sup_state_name(enum sup_state s)
{
	static const char *const names[SUP_ST_COUNT] = {
		[SUP_ST_STARTING] = "starting",
		[SUP_ST_READY] = "ready",
		[SUP_ST_BUSY] = "busy",
		[SUP_ST_SLEEPING] = "sleeping",
		[SUP_ST_STOPPING] = "stopping",
		[SUP_ST_STOPPED] = "stopped",
		[SUP_ST_CRASHED] = "crashed",
		[SUP_ST_RESTARTING] = "restarting",
		[SUP_ST_FAILED] = "failed",
	};

	return (unsigned)s < SUP_ST_COUNT ? names[s] : "?";
}

const char *
sup_event_name(enum sup_event e)
{
	static const char *const names[SUP_EV_COUNT] = {
		[SUP_EV_START] = "start",
		[SUP_EV_READY] = "ready",
		[SUP_EV_BUSY] = "busy",
		[SUP_EV_EXIT] = "exit",
		[SUP_EV_SPAWNFAIL] = "spawn-fail",
		[SUP_EV_TIMER] = "timer",
		[SUP_EV_DEADLINE] = "deadline",
		[SUP_EV_BADFRAME] = "bad-frame",
		[SUP_EV_RECYCLE] = "recycle",
		[SUP_EV_RESTART] = "restart",
		[SUP_EV_SLEEP] = "sleep",
		[SUP_EV_WAKE] = "wake",
		[SUP_EV_RESET] = "reset",
		[SUP_EV_RELOAD] = "reload",
		[SUP_EV_STOP] = "stop",
		[SUP_EV_HANDLER] = "handler",
		[SUP_EV_OPSTART] = "op-start",
		[SUP_EV_OPSTOP] = "op-stop",
		[SUP_EV_DRAIN] = "drain",
	};

	return (unsigned)e < SUP_EV_COUNT && names[e] != NULL ? names[e] : "?";
}

const char *
sup_after_name(enum sup_after a)
{
	static const char *const names[] = {
		"none", "restart", "sleep", "stop", "crash", "hold", "drain",
	};

	return (unsigned)a <= SUP_AFTER_DRAIN ? names[a] : "?";
}
