/*
 * phase.h - the worker's own lifecycle as one phase and a table of
 * transitions (phase.c), in the manner of hived's agent table
 * (supervisor/agent.c): a pure function of (phase, event), tested on its
 * own (tests/worker/test_phase.c).  wrk_phase_event (worker.c) is the only
 * place that assigns struct wrk's phase; what a transition does is done
 * by its caller, once the table has said that it applies.
 *
 *   STARTING --started--> RUNNING --drain--> DRAINING --empty--> CLOSING
 *       |                                       ^                   |
 *       +-----------------drain-----------------+                closed
 *                                                                   v
 *   every phase but EXITING ------------------fail------------> EXITING
 *
 * Kept apart from worker.h so that its test needs nothing else.
 */
#ifndef HIVE_WORKER_PHASE_H
#define HIVE_WORKER_PHASE_H

#include <stdbool.h>

enum wrk_phase {
	WRK_PH_STARTING = 0,  /* hived hears "starting": Redis not yet set
	                       * up, or no handler ready yet */
	WRK_PH_RUNNING,       /* takes work (ready or busy) */
	WRK_PH_DRAINING,      /* takes no new work, finishes what it holds */
	WRK_PH_CLOSING,       /* holds nothing: the handler is stopped for
	                       * good, the liveness key deleted, the link
	                       * flushed */
	WRK_PH_EXITING,       /* leaving the loop with exit_code */
	WRK_PH_COUNT
};

enum wrk_phase_ev {
	WRK_PEV_STARTED = 0,  /* hived was told ready or busy */
	WRK_PEV_DRAIN,        /* a signal, hived asked, or hived is gone */
	WRK_PEV_EMPTY,        /* no task held, no read outstanding */
	WRK_PEV_CLOSED,       /* handler gone, key deleted, link flushed */
	WRK_PEV_FAIL,         /* leave now, exit 1 */
	WRK_PEV_COUNT
};

/* The phase after ev in cur: true with *next, or false when ev does not
 * apply in cur (nothing changes). */
bool wrk_phase_step(enum wrk_phase cur, enum wrk_phase_ev ev,
    enum wrk_phase *next);
const char *wrk_phase_name(enum wrk_phase);
/* Whether the phase pulls and starts work: STARTING and RUNNING. */
static inline bool wrk_phase_takes_work(enum wrk_phase p)
{
	return p <= WRK_PH_RUNNING;
}

#endif
