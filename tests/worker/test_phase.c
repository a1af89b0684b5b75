/*
 * test_phase.c - the worker's lifecycle table (worker/phase.c) as a pure
 * function: every cell, the paths a worker takes, and nothing leaving
 * EXITING.
 */
#include <criterion/criterion.h>

#include "phase.h"

static enum wrk_phase
step(enum wrk_phase cur, enum wrk_phase_ev ev)
{
	enum wrk_phase next = WRK_PH_COUNT;

	if (!wrk_phase_step(cur, ev, &next))
		return cur;
	cr_assert_neq(next, WRK_PH_COUNT);
	return next;
}

Test(worker_phase, every_cell)
{
	/* want[phase][event]; -1: the event does not apply. */
	static const int want[WRK_PH_COUNT][WRK_PEV_COUNT] = {
		/*                 started          drain            empty           closed          fail */
		[WRK_PH_STARTING] = { WRK_PH_RUNNING, WRK_PH_DRAINING, -1,             -1,             WRK_PH_EXITING },
		[WRK_PH_RUNNING]  = { -1,             WRK_PH_DRAINING, -1,             -1,             WRK_PH_EXITING },
		[WRK_PH_DRAINING] = { -1,             -1,              WRK_PH_CLOSING, -1,             WRK_PH_EXITING },
		[WRK_PH_CLOSING]  = { -1,             -1,              -1,             WRK_PH_EXITING, WRK_PH_EXITING },
		[WRK_PH_EXITING]  = { -1,             -1,              -1,             -1,             -1 },
	};

	for (int p = 0; p < WRK_PH_COUNT; p++)
		for (int e = 0; e < WRK_PEV_COUNT; e++) {
			enum wrk_phase next = WRK_PH_COUNT;
			bool applies = wrk_phase_step((enum wrk_phase)p,
			    (enum wrk_phase_ev)e, &next);

			cr_assert_eq(applies, want[p][e] != -1,
			    "phase %s event %d: applies %d", wrk_phase_name(
			    (enum wrk_phase)p), e, applies);
			if (applies)
				cr_assert_eq(next, want[p][e], "phase %s event "
				    "%d: next %s", wrk_phase_name(
				    (enum wrk_phase)p), e, wrk_phase_name(next));
			else
				cr_assert_eq(next, WRK_PH_COUNT,
				    "not applied, yet *next written");
		}
}

Test(worker_phase, drain_to_exit)
{
	enum wrk_phase p = WRK_PH_STARTING;

	p = step(p, WRK_PEV_STARTED);
	cr_assert_eq(p, WRK_PH_RUNNING);
	cr_assert(wrk_phase_takes_work(p));
	p = step(p, WRK_PEV_DRAIN);
	cr_assert_eq(p, WRK_PH_DRAINING);
	cr_assert_not(wrk_phase_takes_work(p));
	/* A second drain (hived asks while a signal drains) changes nothing;
	 * the worker turns a second signal into a failure itself. */
	cr_assert_eq(step(p, WRK_PEV_DRAIN), WRK_PH_DRAINING);
	p = step(p, WRK_PEV_EMPTY);
	cr_assert_eq(p, WRK_PH_CLOSING);
	/* Empty again while the handler stops: still closing. */
	cr_assert_eq(step(p, WRK_PEV_EMPTY), WRK_PH_CLOSING);
	p = step(p, WRK_PEV_CLOSED);
	cr_assert_eq(p, WRK_PH_EXITING);
}

Test(worker_phase, drain_before_started_and_fail_anywhere)
{
	cr_assert_eq(step(WRK_PH_STARTING, WRK_PEV_DRAIN), WRK_PH_DRAINING);
	cr_assert(wrk_phase_takes_work(WRK_PH_STARTING));
	for (int p = 0; p < WRK_PH_EXITING; p++)
		cr_assert_eq(step((enum wrk_phase)p, WRK_PEV_FAIL),
		    WRK_PH_EXITING);
	for (int e = 0; e < WRK_PEV_COUNT; e++)
		cr_assert_eq(step(WRK_PH_EXITING, (enum wrk_phase_ev)e),
		    WRK_PH_EXITING);
	/* Out of range: nothing applies. */
	cr_assert_eq(step(WRK_PH_COUNT, WRK_PEV_FAIL), WRK_PH_COUNT);
	cr_assert_eq(step(WRK_PH_RUNNING, WRK_PEV_COUNT), WRK_PH_RUNNING);
	cr_assert_str_eq(wrk_phase_name(WRK_PH_CLOSING), "closing");
	cr_assert_str_eq(wrk_phase_name(WRK_PH_COUNT), "?");
}
