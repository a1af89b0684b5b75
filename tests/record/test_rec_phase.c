/*
 * test_rec_phase.c - record/rec_phase.c: the recorder loop's phase table
 * as a pure function, every phase by every event.  No services.
 */
#include <criterion/criterion.h>

#include "rec.h"

static struct rec_fsm
at(enum rec_phase p)
{
	struct rec_fsm f = { p, 0, 0, 0 };

	return f;
}

Test(rec_phase, the_table)
{
	/* READ READ_END WRITE PREPARE COMMIT; X: no change */
	enum { X = REC_PHASES };
	static const int want[REC_PHASES][5] = {
		[REC_IDLE] = { REC_READING, X, REC_WRITING, X, X },
		[REC_READING] = { X, REC_IDLE, REC_WRITING_READING, X, X },
		[REC_WRITING] = { REC_WRITING_READING, X, X, REC_PREPARED,
		    REC_IDLE },
		[REC_WRITING_READING] = { X, REC_WRITING, X,
		    REC_PREPARED_READING, REC_READING },
		[REC_PREPARED] = { REC_PREPARED_READING, X, X, X, REC_WRITING },
		[REC_PREPARED_READING] = { X, REC_PREPARED, X, X,
		    REC_WRITING_READING },
	};
	static const enum rec_event ev[5] = { REC_EV_READ, REC_EV_READ_END,
	    REC_EV_WRITE, REC_EV_PREPARE, REC_EV_COMMIT };

	for (int p = 0; p < REC_PHASES; p++)
		for (int e = 0; e < 5; e++) {
			struct rec_fsm f = rec_fsm_step(at(p), ev[e]);
			int w = want[p][e] == X ? p : want[p][e];
			cr_expect_eq(f.phase, w, "%s by event %d: %s, want %s",
			    rec_phase_name(p), e, rec_phase_name(f.phase),
			    rec_phase_name(w));
		}
}

Test(rec_phase, the_questions)
{
	static const struct { int reading, writing, prepared; } want[] = {
		[REC_IDLE] = { 0, 0, 0 },
		[REC_READING] = { 1, 0, 0 },
		[REC_WRITING] = { 0, 1, 0 },
		[REC_WRITING_READING] = { 1, 1, 0 },
		[REC_PREPARED] = { 0, 1, 1 },
		[REC_PREPARED_READING] = { 1, 1, 1 },
	};

	for (int p = 0; p < REC_PHASES; p++) {
		cr_expect_eq(rec_fsm_reading(at(p)), want[p].reading, "%d", p);
		cr_expect_eq(rec_fsm_writing(at(p)), want[p].writing, "%d", p);
		cr_expect_eq(rec_fsm_prepared(at(p)), want[p].prepared, "%d", p);
	}
}

/* One batch written and one prepared at most; our pending entries are
 * not read while a batch is written. */
Test(rec_phase, may_read)
{
	struct rec_fsm f;

	for (int p = 0; p < REC_PHASES; p++) {
		f = at(p);
		cr_expect_eq(rec_fsm_may_read(f),
		    p == REC_IDLE || p == REC_WRITING, "%s", rec_phase_name(p));
		f.pending = 1;
		cr_expect_eq(rec_fsm_may_read(f), p == REC_IDLE, "%s pending",
		    rec_phase_name(p));
	}
}

Test(rec_phase, pending_wanted_once_nothing_is_in_flight)
{
	struct rec_fsm f = at(REC_WRITING_READING);

	f = rec_fsm_step(f, REC_EV_WANT_PENDING);
	cr_assert(f.want_pending && !f.pending);
	f = rec_fsm_step(f, REC_EV_MAY_READ);
	cr_assert(f.want_pending && !f.pending, "a batch is written");
	f = rec_fsm_step(f, REC_EV_READ_END);
	f = rec_fsm_step(f, REC_EV_MAY_READ);
	cr_assert(f.want_pending && !f.pending, "still written");
	f = rec_fsm_step(f, REC_EV_COMMIT);
	cr_assert_eq(f.phase, REC_IDLE);
	f = rec_fsm_step(f, REC_EV_MAY_READ);
	cr_assert(!f.want_pending && f.pending);
	cr_assert(rec_fsm_may_read(f));
	f = rec_fsm_step(f, REC_EV_READ);
	f = rec_fsm_step(f, REC_EV_WRITE);
	cr_assert_not(rec_fsm_may_read(f), "pending, and a batch written");
	f = rec_fsm_step(f, REC_EV_CAUGHT_UP);
	cr_assert_not(f.pending);
	f = rec_fsm_step(f, REC_EV_PENDING);
	cr_assert(f.pending);
}

Test(rec_phase, stale_only_while_reading_and_until_its_end)
{
	struct rec_fsm f = at(REC_WRITING);

	f = rec_fsm_step(f, REC_EV_STALE);
	cr_assert_not(f.stale, "no read in flight");
	f = rec_fsm_step(f, REC_EV_READ);
	f = rec_fsm_step(f, REC_EV_STALE);
	cr_assert(f.stale);
	f = rec_fsm_step(f, REC_EV_COMMIT);
	cr_assert(f.stale, "the read is still in flight");
	f = rec_fsm_step(f, REC_EV_READ_END);
	cr_assert_not(f.stale);
	cr_assert_eq(f.phase, REC_IDLE);
}

Test(rec_phase, out_of_range_changes_nothing)
{
	struct rec_fsm f = { REC_PHASES, 1, 0, 1 }, g;

	g = rec_fsm_step(f, REC_EV_READ);
	cr_assert_eq(g.phase, REC_PHASES);
	cr_assert(g.pending && g.stale);
	g = rec_fsm_step(at(REC_IDLE), REC_EV_COUNT);
	cr_assert_eq(g.phase, REC_IDLE);
	cr_assert_str_eq(rec_phase_name(REC_PHASES), "?");
}
