/*
 * test_agent_table.c - the lifecycle table (supervisor/agent_fsm.c) as a pure
 * function: no process, no loop, no clock.
 */
#include <criterion/criterion.h>

#include "hived.h"

static struct sup_fsm
S(enum sup_state s, enum sup_after a)
{
	struct sup_fsm f = { s, a };

	return f;
}

static struct sup_guard
G(enum hive_restart policy, int exit_ok, int limit_hit)
{
	struct sup_guard g = { exit_ok, policy, limit_hit, 0, 0, 0 };

	return g;
}

#define STEP_IS(st, want_state, want_act) do {                              \
	cr_assert_eq((st).next.state, (want_state), "state %s, want %s",     \
	    sup_state_name((st).next.state), sup_state_name(want_state));    \
	cr_assert_eq((st).act, (unsigned)(want_act), "actions 0x%x, want 0x%x", \
	    (st).act, (unsigned)(want_act));                                 \
} while (0)

static int
has_worker(enum sup_state s)
{
	return s == SUP_ST_STARTING || s == SUP_ST_READY || s == SUP_ST_BUSY ||
	    s == SUP_ST_STOPPING;
}

Test(agent_table, first_start_and_heartbeats)
{
	struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);
	struct sup_step st;

	st = sup_fsm_step(S(SUP_ST_STOPPED, 0), SUP_EV_START, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN);
	st = sup_fsm_step(st.next, SUP_EV_READY, &g);
	STEP_IS(st, SUP_ST_READY, 0);
	st = sup_fsm_step(st.next, SUP_EV_BUSY, &g);
	STEP_IS(st, SUP_ST_BUSY, 0);
	st = sup_fsm_step(st.next, SUP_EV_READY, &g);
	STEP_IS(st, SUP_ST_READY, 0);
	/* A worker may report busy before it ever said ready. */
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_BUSY, &g);
	STEP_IS(st, SUP_ST_BUSY, 0);
	/* autostart = no: the first start leaves it asleep. */
	g.asleep = 1;
	st = sup_fsm_step(S(SUP_ST_STOPPED, 0), SUP_EV_START, &g);
	STEP_IS(st, SUP_ST_SLEEPING, 0);
	g.asleep = 0;
	/* A start only applies to an instance that has nothing running. */
	st = sup_fsm_step(S(SUP_ST_READY, 0), SUP_EV_START, &g);
	cr_assert_not(st.handled);
}

Test(agent_table, crash_follows_policy_then_limit)
{
	struct sup_guard g;
	struct sup_step st;
	enum sup_state from[] = { SUP_ST_STARTING, SUP_ST_READY, SUP_ST_BUSY };

	for (size_t i = 0; i < 3; i++) {
		g = G(HIVE_RESTART_ALWAYS, 0, 0);
		st = sup_fsm_step(S(from[i], 0), SUP_EV_EXIT, &g);
		STEP_IS(st, SUP_ST_RESTARTING, SUP_ACT_COUNT | SUP_ACT_BACKOFF);
		g = G(HIVE_RESTART_ALWAYS, 1, 0);     /* exit 0 still restarts */
		st = sup_fsm_step(S(from[i], 0), SUP_EV_EXIT, &g);
		STEP_IS(st, SUP_ST_RESTARTING, SUP_ACT_COUNT | SUP_ACT_BACKOFF);
		g = G(HIVE_RESTART_ALWAYS, 0, 1);
		st = sup_fsm_step(S(from[i], 0), SUP_EV_EXIT, &g);
		STEP_IS(st, SUP_ST_FAILED, SUP_ACT_QUARANTINE);
		g = G(HIVE_RESTART_ON_FAILURE, 1, 0);
		st = sup_fsm_step(S(from[i], 0), SUP_EV_EXIT, &g);
		STEP_IS(st, SUP_ST_STOPPED, 0);
		g = G(HIVE_RESTART_ON_FAILURE, 0, 0);
		st = sup_fsm_step(S(from[i], 0), SUP_EV_EXIT, &g);
		STEP_IS(st, SUP_ST_RESTARTING, SUP_ACT_COUNT | SUP_ACT_BACKOFF);
		g = G(HIVE_RESTART_NEVER, 0, 0);
		st = sup_fsm_step(S(from[i], 0), SUP_EV_EXIT, &g);
		STEP_IS(st, SUP_ST_CRASHED, 0);
		g = G(HIVE_RESTART_NEVER, 1, 0);
		st = sup_fsm_step(S(from[i], 0), SUP_EV_EXIT, &g);
		STEP_IS(st, SUP_ST_STOPPED, 0);
	}
	/* The backoff timer brings it back; a quarantine ends by the
	 * cooldown timer (with a clean slate). */
	st = sup_fsm_step(S(SUP_ST_RESTARTING, 0), SUP_EV_TIMER, NULL);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN);
	st = sup_fsm_step(S(SUP_ST_FAILED, 0), SUP_EV_TIMER, NULL);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN | SUP_ACT_CLEAR);
}

/* A spawn that forked nothing is the crash of a worker that never ran:
 * the same cell as an exit with a failure status, whatever the guard's
 * exit_ok, and it never spawns again by itself (a timer does), so
 * sup_inst_event needs one follow-up step at most. */
Test(agent_table, spawn_failure_is_a_crash_governed_by_backoff_and_limit)
{
	struct sup_step st, ex;

	for (int p = 0; p < 3; p++)
	for (int ok = 0; ok < 2; ok++)
	for (int lim = 0; lim < 2; lim++) {
		struct sup_guard g = G((enum hive_restart)p, ok, lim);
		struct sup_guard crash = G((enum hive_restart)p, 0, lim);

		st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_SPAWNFAIL, &g);
		ex = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_EXIT, &crash);
		cr_assert(st.handled);
		STEP_IS(st, ex.next.state, ex.act);
		cr_assert_not(st.act & SUP_ACT_SPAWN);
	}
	{
		struct sup_guard g = G(HIVE_RESTART_ON_FAILURE, 1, 0);

		st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_SPAWNFAIL, &g);
		STEP_IS(st, SUP_ST_RESTARTING, SUP_ACT_COUNT | SUP_ACT_BACKOFF);
		g.limit_hit = 1;
		st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_SPAWNFAIL, &g);
		STEP_IS(st, SUP_ST_FAILED, SUP_ACT_QUARANTINE);
	}
	/* Only a spawn leaves an instance in STARTING without a worker. */
	for (int s = 0; s < SUP_ST_COUNT; s++)
	for (int a = 0; a <= SUP_AFTER_DRAIN; a++) {
		struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);

		if (s == SUP_ST_STARTING || ((s != SUP_ST_STOPPING) != (a == 0)))
			continue;
		cr_assert_not(sup_fsm_step(S((enum sup_state)s,
		    (enum sup_after)a), SUP_EV_SPAWNFAIL, &g).handled, "%s",
		    sup_state_name((enum sup_state)s));
	}
}

Test(agent_table, hung_or_broken_worker_is_killed_and_counted)
{
	struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);
	struct sup_step st;

	st = sup_fsm_step(S(SUP_ST_READY, 0), SUP_EV_DEADLINE, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_KILL);
	cr_assert_eq(st.next.after, SUP_AFTER_CRASH);
	/* Its exit is a crash, whatever the status: counted, backoff. */
	g = G(HIVE_RESTART_ALWAYS, 1, 0);
	st = sup_fsm_step(st.next, SUP_EV_EXIT, &g);
	STEP_IS(st, SUP_ST_RESTARTING, SUP_ACT_COUNT | SUP_ACT_BACKOFF);
	g = G(HIVE_RESTART_ON_FAILURE, 1, 0);
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_CRASH), SUP_EV_EXIT, &g);
	STEP_IS(st, SUP_ST_RESTARTING, SUP_ACT_COUNT | SUP_ACT_BACKOFF);
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_BADFRAME, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_KILL);
	/* A heartbeat deadline is not judged while it is stopping: the
	 * grace timer is. */
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_RESTART),
	    SUP_EV_DEADLINE, &g);
	cr_assert_not(st.handled);
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_RESTART), SUP_EV_TIMER,
	    &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_KILL);
	cr_assert_eq(st.next.after, SUP_AFTER_RESTART);
}

/* A handler failure (the worker's heartbeat says so) counts where a
 * worker runs and changes nothing else; past the limit it kills the
 * worker as a crash, whose exit then finds the limit: failed. */
Test(agent_table, handler_failure_counts_then_kills)
{
	enum sup_state from[] = { SUP_ST_STARTING, SUP_ST_READY, SUP_ST_BUSY };
	struct sup_guard g;
	struct sup_step st;

	for (size_t i = 0; i < 3; i++) {
		g = G(HIVE_RESTART_ALWAYS, 0, 0);
		st = sup_fsm_step(S(from[i], 0), SUP_EV_HANDLER, &g);
		STEP_IS(st, from[i], SUP_ACT_COUNT);
		g = G(HIVE_RESTART_ALWAYS, 0, 1);
		st = sup_fsm_step(S(from[i], 0), SUP_EV_HANDLER, &g);
		STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_KILL);
		cr_assert_eq(st.next.after, SUP_AFTER_CRASH);
		st = sup_fsm_step(st.next, SUP_EV_EXIT, &g);
		STEP_IS(st, SUP_ST_FAILED, SUP_ACT_QUARANTINE);
	}
	/* Without a live worker, or while one stops, there is nothing to
	 * count: its exit decides. */
	for (int s = 0; s < SUP_ST_COUNT; s++) {
		if (s == SUP_ST_STARTING || s == SUP_ST_READY ||
		    s == SUP_ST_BUSY)
			continue;
		g = G(HIVE_RESTART_ALWAYS, 0, 1);
		st = sup_fsm_step(S((enum sup_state)s, s == SUP_ST_STOPPING ?
		    SUP_AFTER_RESTART : SUP_AFTER_NONE), SUP_EV_HANDLER, &g);
		cr_assert_not(st.handled, "%s", sup_state_name(s));
	}
	cr_assert_str_eq(sup_event_name(SUP_EV_HANDLER), "handler");
}

Test(agent_table, operator_restart_is_never_counted)
{
	struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 1);
	struct sup_step st;

	for (int s = 0; s < SUP_ST_COUNT; s++) {
		for (int a = 0; a <= SUP_AFTER_DRAIN; a++) {
			st = sup_fsm_step(S((enum sup_state)s, a), SUP_EV_RESTART,
			    &g);
			cr_assert_not(st.act & SUP_ACT_COUNT, "%s",
			    sup_state_name((enum sup_state)s));
			cr_assert_neq(st.next.state, SUP_ST_FAILED);
		}
	}
	/* A live worker drains first; it comes back whatever its exit. */
	st = sup_fsm_step(S(SUP_ST_BUSY, 0), SUP_EV_RESTART, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_DRAIN);
	cr_assert_eq(st.next.after, SUP_AFTER_RESTART);
	st = sup_fsm_step(st.next, SUP_EV_EXIT, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN);
	/* Failed: restart and reset both lift the quarantine. */
	st = sup_fsm_step(S(SUP_ST_FAILED, 0), SUP_EV_RESTART, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN | SUP_ACT_CLEAR);
	st = sup_fsm_step(S(SUP_ST_FAILED, 0), SUP_EV_RESET, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN | SUP_ACT_CLEAR);
	/* Waiting out a backoff: an operator skips it. */
	st = sup_fsm_step(S(SUP_ST_RESTARTING, 0), SUP_EV_RESTART, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN);
	/* Reset elsewhere only clears the history. */
	st = sup_fsm_step(S(SUP_ST_READY, 0), SUP_EV_RESET, &g);
	STEP_IS(st, SUP_ST_READY, SUP_ACT_CLEAR);
}

Test(agent_table, sleep_and_wake)
{
	struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);
	struct sup_step st;

	st = sup_fsm_step(S(SUP_ST_BUSY, 0), SUP_EV_SLEEP, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_DRAIN);
	cr_assert_eq(st.next.after, SUP_AFTER_SLEEP);
	/* Whatever the exit status, it sleeps: not a crash. */
	st = sup_fsm_step(st.next, SUP_EV_EXIT, &g);
	STEP_IS(st, SUP_ST_SLEEPING, 0);
	/* Asleep, nothing but wake/restart/stop (and an operator's start,
	 * stop, drain) moves it. */
	for (int e = 0; e < SUP_EV_COUNT; e++) {
		if (e == SUP_EV_WAKE || e == SUP_EV_RESTART || e == SUP_EV_STOP ||
		    e == SUP_EV_RESET || e == SUP_EV_OPSTART ||
		    e == SUP_EV_OPSTOP || e == SUP_EV_DRAIN)
			continue;
		cr_assert_not(sup_fsm_step(st.next, (enum sup_event)e,
		    &g).handled, "%s", sup_event_name((enum sup_event)e));
	}
	st = sup_fsm_step(st.next, SUP_EV_WAKE, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN);
	/* Woken while still draining: it comes straight back. */
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_SLEEP), SUP_EV_WAKE, &g);
	STEP_IS(st, SUP_ST_STOPPING, 0);
	cr_assert_eq(st.next.after, SUP_AFTER_RESTART);
	/* Wake on a running worker does not apply (HTTP 409). */
	cr_assert_not(sup_fsm_step(S(SUP_ST_READY, 0), SUP_EV_WAKE, &g).handled);
	/* A failed or waiting instance can be put to sleep. */
	st = sup_fsm_step(S(SUP_ST_FAILED, 0), SUP_EV_SLEEP, &g);
	STEP_IS(st, SUP_ST_SLEEPING, SUP_ACT_CLEAR);
	st = sup_fsm_step(S(SUP_ST_RESTARTING, 0), SUP_EV_SLEEP, &g);
	STEP_IS(st, SUP_ST_SLEEPING, 0);
}

Test(agent_table, stop_wins_over_operators)
{
	struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);
	struct sup_step st;
	enum sup_event ops[] = { SUP_EV_RESTART, SUP_EV_SLEEP, SUP_EV_WAKE };

	st = sup_fsm_step(S(SUP_ST_READY, 0), SUP_EV_STOP, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_DRAIN);
	cr_assert_eq(st.next.after, SUP_AFTER_STOP);
	for (size_t i = 0; i < 3; i++)
		cr_assert_not(sup_fsm_step(st.next, ops[i], &g).handled);
	/* Stopping for a restart, then shut down: it stays down. */
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_RESTART), SUP_EV_STOP, &g);
	cr_assert_eq(st.next.after, SUP_AFTER_STOP);
	st = sup_fsm_step(st.next, SUP_EV_EXIT, &g);
	STEP_IS(st, SUP_ST_STOPPED, 0);
	/* Only a reload that brings a removed agent back revives it. */
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_STOP), SUP_EV_RELOAD, &g);
	cr_assert_eq(st.next.after, SUP_AFTER_RESTART);
	/* Everything without a worker stops at once. */
	enum sup_state idle[] = { SUP_ST_SLEEPING, SUP_ST_CRASHED,
	    SUP_ST_RESTARTING, SUP_ST_FAILED };
	for (size_t i = 0; i < 4; i++) {
		st = sup_fsm_step(S(idle[i], 0), SUP_EV_STOP, &g);
		STEP_IS(st, SUP_ST_STOPPED, 0);
	}
}

Test(agent_table, reload_and_recycle)
{
	struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);
	struct sup_step st;

	st = sup_fsm_step(S(SUP_ST_READY, 0), SUP_EV_RELOAD, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_DRAIN);
	cr_assert_eq(st.next.after, SUP_AFTER_RESTART);
	st = sup_fsm_step(S(SUP_ST_BUSY, 0), SUP_EV_RECYCLE, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_DRAIN);
	cr_assert_eq(st.next.after, SUP_AFTER_RESTART);
	/* Only a running worker is recycled. */
	cr_assert_not(sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_RECYCLE,
	    &g).handled);
	/* A sleeper stays asleep and wakes with the new section. */
	cr_assert_not(sup_fsm_step(S(SUP_ST_SLEEPING, 0), SUP_EV_RELOAD,
	    &g).handled);
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_SLEEP), SUP_EV_RELOAD, &g);
	cr_assert_eq(st.next.after, SUP_AFTER_SLEEP);
	/* A fixed section gives a failed or crashed agent a fresh start. */
	st = sup_fsm_step(S(SUP_ST_FAILED, 0), SUP_EV_RELOAD, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN | SUP_ACT_CLEAR);
	st = sup_fsm_step(S(SUP_ST_CRASHED, 0), SUP_EV_RELOAD, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN | SUP_ACT_CLEAR);
}

/* Whole-table invariants: every cell is consistent with whether a worker
 * process exists in its state. */
/*
 * STARTING with its spawn still queued (spawn.c paces forks): no worker to
 * drain or kill, so nothing may wait for an exit that never comes.
 */
Test(agent_table, queued_spawn_has_no_worker_to_stop)
{
	struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);
	struct sup_step st;

	g.queued = 1;
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_RESTART, &g);
	cr_assert(st.handled);
	STEP_IS(st, SUP_ST_STARTING, 0);
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_RELOAD, &g);
	cr_assert(st.handled);
	STEP_IS(st, SUP_ST_STARTING, 0);
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_SLEEP, &g);
	STEP_IS(st, SUP_ST_SLEEPING, 0);
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_STOP, &g);
	STEP_IS(st, SUP_ST_STOPPED, 0);
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_DEADLINE, &g);
	cr_assert_not(st.handled);
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_BADFRAME, &g);
	cr_assert_not(st.handled);
	/* Its fork failed: a crash, as before. */
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_SPAWNFAIL, &g);
	STEP_IS(st, SUP_ST_RESTARTING, SUP_ACT_COUNT | SUP_ACT_BACKOFF);
	/* Forked: the same events drain or kill the worker. */
	g.queued = 0;
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_STOP, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_DRAIN);
	cr_assert_eq(st.next.after, SUP_AFTER_STOP);
	st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_DEADLINE, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_KILL);
}

Test(agent_table, invariants_over_every_cell)
{
	for (int s = 0; s < SUP_ST_COUNT; s++)
	for (int a = 0; a <= SUP_AFTER_DRAIN; a++)
	for (int e = 0; e < SUP_EV_COUNT; e++)
	for (int p = 0; p < 3; p++)
	for (int ok = 0; ok < 2; ok++)
	for (int lim = 0; lim < 2; lim++) {
		struct sup_guard g = G((enum hive_restart)p, ok, lim);
		enum sup_state st0 = (enum sup_state)s;
		struct sup_fsm cur = S(st0, st0 == SUP_ST_STOPPING ?
		    (enum sup_after)a : SUP_AFTER_NONE);
		struct sup_step st = sup_fsm_step(cur, (enum sup_event)e, &g);
		const char *what = sup_event_name((enum sup_event)e);

		if ((st0 != SUP_ST_STOPPING) != (a == 0))
			continue;    /* only STOPPING has an intent */
		cr_assert_lt((unsigned)st.next.state, SUP_ST_COUNT);
		if (!st.handled) {
			cr_assert_eq(st.act, 0u);
			cr_assert_eq(st.next.state, cur.state);
			continue;
		}
		/* Exactly the STOPPING state carries an intent. */
		cr_assert_eq(st.next.after != SUP_AFTER_NONE,
		    st.next.state == SUP_ST_STOPPING, "%s in %s",
		    what, sup_state_name(st0));
		/* Spawning only where no worker lives, or as it exits. */
		if (st.act & SUP_ACT_SPAWN) {
			cr_assert(!has_worker(st0) || e == SUP_EV_EXIT, "%s in %s",
			    what, sup_state_name(st0));
			cr_assert_eq(st.next.state, SUP_ST_STARTING);
		}
		/* Drain and kill need a worker, and never after its exit. */
		if (st.act & (SUP_ACT_DRAIN | SUP_ACT_KILL))
			cr_assert(has_worker(st0) && e != SUP_EV_EXIT,
			    "%s in %s", what, sup_state_name(st0));
		/* An exit leaves no worker behind unless a new one spawns. */
		if (e == SUP_EV_EXIT && !(st.act & SUP_ACT_SPAWN))
			cr_assert_not(has_worker(st.next.state), "%s in %s",
			    what, sup_state_name(st0));
		/* An exit only applies where a worker lived. */
		if (e == SUP_EV_EXIT)
			cr_assert(has_worker(st0));
		/* A failed spawn leaves none, and starts none. */
		if (e == SUP_EV_SPAWNFAIL) {
			cr_assert_eq(st0, SUP_ST_STARTING);
			cr_assert_not(has_worker(st.next.state));
			cr_assert_not(st.act & (SUP_ACT_SPAWN | SUP_ACT_DRAIN |
			    SUP_ACT_KILL));
		}
		/* Without a worker the state cannot claim one. */
		if (!has_worker(st0) && !(st.act & SUP_ACT_SPAWN))
			cr_assert_not(has_worker(st.next.state), "%s in %s",
			    what, sup_state_name(st0));
		/* Failed only through the rate limit. */
		if (st.next.state == SUP_ST_FAILED && st0 != SUP_ST_FAILED)
			cr_assert(lim && (st.act & SUP_ACT_QUARANTINE));
		/* Restarting always has its timer. */
		if (st.next.state == SUP_ST_RESTARTING && st0 != SUP_ST_RESTARTING)
			cr_assert(st.act & SUP_ACT_BACKOFF);
		/* Only an operator's drain waits for a worker without a
		 * bound: into any other stopping, a grace timer is armed or
		 * the worker killed, or one was already (not then=drain). */
		if (st.next.state == SUP_ST_STOPPING &&
		    st.next.after != SUP_AFTER_DRAIN &&
		    !(st.act & (SUP_ACT_GRACE | SUP_ACT_KILL)))
			cr_assert(st0 == SUP_ST_STOPPING &&
			    cur.after != SUP_AFTER_DRAIN, "%s in %s then=%s", what,
			    sup_state_name(st0), sup_after_name(cur.after));
		/* A grace timer only where a worker is being stopped. */
		if (st.act & SUP_ACT_GRACE)
			cr_assert_eq(st.next.state, SUP_ST_STOPPING);
		/* Held only in stopped. */
		if (st.act & SUP_ACT_HOLD)
			cr_assert_eq(st.next.state, SUP_ST_STOPPED, "%s in %s",
			    what, sup_state_name(st0));
	}
	/* A queued spawn is STARTING without a worker: nothing drains or
	 * kills it, and nothing waits for its exit in STOPPING. */
	for (int e = 0; e < SUP_EV_COUNT; e++)
	for (int p = 0; p < 3; p++) {
		struct sup_guard g = G((enum hive_restart)p, 0, 0);
		struct sup_step st;

		g.queued = 1;
		st = sup_fsm_step(S(SUP_ST_STARTING, 0), (enum sup_event)e, &g);
		cr_assert_not(st.act & (SUP_ACT_DRAIN | SUP_ACT_KILL), "%s",
		    sup_event_name((enum sup_event)e));
		cr_assert_neq(st.next.state, SUP_ST_STOPPING, "%s",
		    sup_event_name((enum sup_event)e));
	}
}

/*
 * Operator stop: drain with the grace timer (SIGKILL at its end), then
 * stopped and held, whatever the exit and the policy.  Operator drain:
 * the same without the grace timer.  An instance without a worker is
 * held at once.
 */
Test(agent_table, operator_stop_and_drain)
{
	enum sup_state live[] = { SUP_ST_STARTING, SUP_ST_READY, SUP_ST_BUSY };
	enum sup_state idle[] = { SUP_ST_SLEEPING, SUP_ST_CRASHED,
	    SUP_ST_RESTARTING, SUP_ST_FAILED, SUP_ST_STOPPED };
	struct sup_step st;

	for (size_t i = 0; i < 3; i++)
	for (int ok = 0; ok < 2; ok++) {
		struct sup_guard g = G(HIVE_RESTART_ALWAYS, ok, 0);

		st = sup_fsm_step(S(live[i], 0), SUP_EV_OPSTOP, &g);
		STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_SEND_DRAIN | SUP_ACT_GRACE);
		cr_assert_eq(st.next.after, SUP_AFTER_HOLD);
		st = sup_fsm_step(st.next, SUP_EV_TIMER, &g);
		STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_KILL);
		cr_assert_eq(st.next.after, SUP_AFTER_HOLD);
		st = sup_fsm_step(st.next, SUP_EV_EXIT, &g);
		STEP_IS(st, SUP_ST_STOPPED, SUP_ACT_HOLD);

		st = sup_fsm_step(S(live[i], 0), SUP_EV_DRAIN, &g);
		STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_SEND_DRAIN);
		cr_assert_eq(st.next.after, SUP_AFTER_DRAIN);
		st = sup_fsm_step(st.next, SUP_EV_EXIT, &g);
		STEP_IS(st, SUP_ST_STOPPED, SUP_ACT_HOLD);
	}
	for (size_t i = 0; i < 5; i++) {
		struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);

		st = sup_fsm_step(S(idle[i], 0), SUP_EV_OPSTOP, &g);
		STEP_IS(st, SUP_ST_STOPPED, SUP_ACT_HOLD);
		st = sup_fsm_step(S(idle[i], 0), SUP_EV_DRAIN, &g);
		STEP_IS(st, SUP_ST_STOPPED, SUP_ACT_HOLD);
	}
	/* A queued spawn has nothing to drain. */
	{
		struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);

		g.queued = 1;
		st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_OPSTOP, &g);
		STEP_IS(st, SUP_ST_STOPPED, SUP_ACT_HOLD);
		st = sup_fsm_step(S(SUP_ST_STARTING, 0), SUP_EV_DRAIN, &g);
		STEP_IS(st, SUP_ST_STOPPED, SUP_ACT_HOLD);
	}
}

/* What an instance stopped by an operator still does and does not. */
Test(agent_table, held_instance_starts_only_by_an_operator)
{
	struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);
	struct sup_fsm held = S(SUP_ST_STOPPED, 0);
	struct sup_step st;

	g.held = 1;
	for (int e = 0; e < SUP_EV_COUNT; e++) {
		st = sup_fsm_step(held, (enum sup_event)e, &g);
		if (st.act & SUP_ACT_SPAWN)
			cr_assert(e == SUP_EV_OPSTART || e == SUP_EV_RESTART,
			    "%s starts a held instance",
			    sup_event_name((enum sup_event)e));
	}
	cr_assert_not(sup_fsm_step(held, SUP_EV_START, &g).handled);
	cr_assert_not(sup_fsm_step(held, SUP_EV_RELOAD, &g).handled);
	cr_assert_not(sup_fsm_step(held, SUP_EV_OPSTOP, &g).handled);
	cr_assert_not(sup_fsm_step(held, SUP_EV_DRAIN, &g).handled);
	st = sup_fsm_step(held, SUP_EV_OPSTART, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN | SUP_ACT_CLEAR);
	/* Not held (exited cleanly): the first start and a reload start
	 * it as before. */
	g.held = 0;
	st = sup_fsm_step(held, SUP_EV_START, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN);
	st = sup_fsm_step(held, SUP_EV_RELOAD, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN | SUP_ACT_CLEAR);
	/* Stopping on an operator's word: a reload leaves it so. */
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_HOLD), SUP_EV_RELOAD, &g);
	cr_assert_eq(st.next.after, SUP_AFTER_HOLD);
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_DRAIN), SUP_EV_RELOAD,
	    &g);
	cr_assert_eq(st.next.after, SUP_AFTER_DRAIN);
}

/* Operator start: what has no worker starts afresh (failed included,
 * as reset does); one stopping comes back after its exit. */
Test(agent_table, operator_start)
{
	struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 1);
	enum sup_state idle[] = { SUP_ST_STOPPED, SUP_ST_CRASHED,
	    SUP_ST_SLEEPING, SUP_ST_FAILED };
	enum sup_state busy[] = { SUP_ST_STARTING, SUP_ST_READY, SUP_ST_BUSY,
	    SUP_ST_RESTARTING };
	struct sup_step st;

	for (size_t i = 0; i < 4; i++) {
		st = sup_fsm_step(S(idle[i], 0), SUP_EV_OPSTART, &g);
		STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN | SUP_ACT_CLEAR);
		cr_assert_not(sup_fsm_step(S(busy[i], 0), SUP_EV_OPSTART,
		    &g).handled, "%s", sup_state_name(busy[i]));
	}
	/* autostart = no does not matter to an operator. */
	g.asleep = 1;
	st = sup_fsm_step(S(SUP_ST_STOPPED, 0), SUP_EV_OPSTART, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN | SUP_ACT_CLEAR);
	/* Stopping: back after the exit; from a drain, now bounded. */
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_HOLD), SUP_EV_OPSTART,
	    &g);
	STEP_IS(st, SUP_ST_STOPPING, 0);
	cr_assert_eq(st.next.after, SUP_AFTER_RESTART);
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_DRAIN), SUP_EV_OPSTART,
	    &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_GRACE);
	cr_assert_eq(st.next.after, SUP_AFTER_RESTART);
	st = sup_fsm_step(st.next, SUP_EV_EXIT, &g);
	STEP_IS(st, SUP_ST_STARTING, SUP_ACT_SPAWN);
	/* Shutdown and removal win. */
	cr_assert_not(sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_STOP),
	    SUP_EV_OPSTART, &g).handled);
}

/*
 * A drain has no grace timer: a stop, a shutdown, a restart given
 * meanwhile arm one; a drain given while a bound runs leaves it; the
 * heartbeat deadline is judged while draining (nothing else would end
 * a hung worker).
 */
Test(agent_table, drain_is_bounded_by_what_comes_after)
{
	struct sup_guard g = G(HIVE_RESTART_ALWAYS, 0, 0);
	struct sup_fsm dr = S(SUP_ST_STOPPING, SUP_AFTER_DRAIN);
	struct sup_step st;

	st = sup_fsm_step(dr, SUP_EV_OPSTOP, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_GRACE);
	cr_assert_eq(st.next.after, SUP_AFTER_HOLD);
	st = sup_fsm_step(dr, SUP_EV_STOP, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_GRACE);
	cr_assert_eq(st.next.after, SUP_AFTER_STOP);
	st = sup_fsm_step(dr, SUP_EV_RESTART, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_GRACE);
	cr_assert_eq(st.next.after, SUP_AFTER_RESTART);
	st = sup_fsm_step(dr, SUP_EV_DEADLINE, &g);
	STEP_IS(st, SUP_ST_STOPPING, SUP_ACT_KILL);
	cr_assert_eq(st.next.after, SUP_AFTER_DRAIN);
	cr_assert_not(sup_fsm_step(dr, SUP_EV_DRAIN, &g).handled);
	/* Stopping for a restart (its bound running): then drain. */
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_RESTART), SUP_EV_DRAIN,
	    &g);
	STEP_IS(st, SUP_ST_STOPPING, 0);
	cr_assert_eq(st.next.after, SUP_AFTER_DRAIN);
	st = sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_RESTART), SUP_EV_OPSTOP,
	    &g);
	STEP_IS(st, SUP_ST_STOPPING, 0);
	cr_assert_eq(st.next.after, SUP_AFTER_HOLD);
	/* Shutdown and an operator's stop win over a drain. */
	cr_assert_not(sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_STOP),
	    SUP_EV_DRAIN, &g).handled);
	cr_assert_not(sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_HOLD),
	    SUP_EV_DRAIN, &g).handled);
	cr_assert_not(sup_fsm_step(S(SUP_ST_STOPPING, SUP_AFTER_STOP),
	    SUP_EV_OPSTOP, &g).handled);
}

Test(agent_table, names)
{
	cr_assert_str_eq(sup_state_name(SUP_ST_RESTARTING), "restarting");
	cr_assert_str_eq(sup_state_name(SUP_ST_FAILED), "failed");
	cr_assert_str_eq(sup_event_name(SUP_EV_BADFRAME), "bad-frame");
	cr_assert_str_eq(sup_event_name(SUP_EV_SPAWNFAIL), "spawn-fail");
	cr_assert_str_eq(sup_event_name(SUP_EV_STOP), "stop");
	cr_assert_str_eq(sup_event_name(SUP_EV_DRAIN), "drain");
	cr_assert_str_eq(sup_after_name(SUP_AFTER_HOLD), "hold");
	cr_assert_str_eq(sup_after_name(SUP_AFTER_DRAIN), "drain");
	for (int e = 0; e < SUP_EV_COUNT; e++)
		cr_assert_str_neq(sup_event_name((enum sup_event)e), "?");
	for (int s = 0; s < SUP_ST_COUNT; s++)
		cr_assert_str_neq(sup_state_name((enum sup_state)s), "?");
	cr_assert_str_eq(sup_state_name((enum sup_state)99), "?");
	cr_assert_not(sup_fsm_step(S(SUP_ST_READY, 0), (enum sup_event)99,
	    NULL).handled);
}
