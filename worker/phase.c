/*
 * phase.c - the worker's lifecycle table (phase.h).
 */
#include "phase.h"

static const struct phase_cell {
	bool applies;
	enum wrk_phase next;
} phase_table[WRK_PH_COUNT][WRK_PEV_COUNT] = {
	[WRK_PH_STARTING] = {
		[WRK_PEV_STARTED] = { true, WRK_PH_RUNNING },
		[WRK_PEV_DRAIN]   = { true, WRK_PH_DRAINING },
		[WRK_PEV_FAIL]    = { true, WRK_PH_EXITING },
	},
	[WRK_PH_RUNNING] = {
		[WRK_PEV_DRAIN]   = { true, WRK_PH_DRAINING },
		[WRK_PEV_FAIL]    = { true, WRK_PH_EXITING },
	},
	[WRK_PH_DRAINING] = {
		[WRK_PEV_EMPTY]   = { true, WRK_PH_CLOSING },
		[WRK_PEV_FAIL]    = { true, WRK_PH_EXITING },
	},
	[WRK_PH_CLOSING] = {
		[WRK_PEV_CLOSED]  = { true, WRK_PH_EXITING },
		[WRK_PEV_FAIL]    = { true, WRK_PH_EXITING },
	},
	/* EXITING: nothing applies, the loop is ending. */
};

bool
wrk_phase_step(enum wrk_phase cur, enum wrk_phase_ev ev, enum wrk_phase *next)
{
	const struct phase_cell *c;

	if ((unsigned)cur >= WRK_PH_COUNT || (unsigned)ev >= WRK_PEV_COUNT)
		return false;
	c = &phase_table[cur][ev];
	if (c->applies)
		*next = c->next;
	return c->applies;
}

const char *
wrk_phase_name(enum wrk_phase p)
{
	static const char *const names[WRK_PH_COUNT] = {
		"starting", "running", "draining", "closing", "exiting",
	};

	return (unsigned)p < WRK_PH_COUNT ? names[p] : "?";
}
