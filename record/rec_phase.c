/*
 * rec_phase.c - what the recorder's loop has in flight, and the one
 * function that moves it (rec.h).
 *
 *   reading:        no                  yes
 *                 +------+   READ     +---------+
 *   nothing       | IDLE | ---------> | READING |
 *   written       +------+ <--------- +---------+
 *                  |  ^    READ_END     |    ^
 *            WRITE |  | COMMIT    WRITE |    | COMMIT
 *                  v  |                 v    |
 *                 +---------+  READ   +-----------------+
 *   a batch       | WRITING | ------> | WRITING_READING |
 *   written       +---------+ <------ +-----------------+
 *                  |  ^      READ_END   |    ^
 *          PREPARE |  | COMMIT  PREPARE |    | COMMIT
 *                  v  |                 v    |
 *                 +----------+  READ  +------------------+
 *   and the next  | PREPARED | -----> | PREPARED_READING |
 *   prepared      +----------+ <----- +------------------+
 *                            READ_END
 *
 * COMMIT in a PREPARED phase: the prepared batch is the one written now.
 * rec_fsm_step is a pure function of (state, event), so the tests walk
 * it alone; recorder.c feeds it every change and asks it what it may do
 * (rec_fsm_may_read).  Nothing else assigns the loop's phase.
 */
#include "rec.h"

#define X REC_PHASES                 /* the event does not apply */

/* Rows: phases; columns: READ READ_END WRITE PREPARE COMMIT. */
static const enum rec_phase rec_next[REC_PHASES][5] = {
	[REC_IDLE] =             { REC_READING, X, REC_WRITING, X, X },
	[REC_READING] =          { X, REC_IDLE, REC_WRITING_READING, X, X },
	[REC_WRITING] =          { REC_WRITING_READING, X, X, REC_PREPARED,
	                           REC_IDLE },
	[REC_WRITING_READING] =  { X, REC_WRITING, X, REC_PREPARED_READING,
	                           REC_READING },
	[REC_PREPARED] =         { REC_PREPARED_READING, X, X, X, REC_WRITING },
	[REC_PREPARED_READING] = { X, REC_PREPARED, X, X,
	                           REC_WRITING_READING },
};

int
rec_fsm_reading(struct rec_fsm f)
{
	return f.phase == REC_READING || f.phase == REC_WRITING_READING ||
	    f.phase == REC_PREPARED_READING;
}

int
rec_fsm_writing(struct rec_fsm f)
{
	return f.phase != REC_IDLE && f.phase != REC_READING;
}

int
rec_fsm_prepared(struct rec_fsm f)
{
	return f.phase == REC_PREPARED || f.phase == REC_PREPARED_READING;
}

int
rec_fsm_may_read(struct rec_fsm f)
{
	return f.phase == REC_IDLE || (f.phase == REC_WRITING && !f.pending);
}

struct rec_fsm
rec_fsm_step(struct rec_fsm f, enum rec_event ev)
{
	if ((unsigned)f.phase >= REC_PHASES)
		return f;
	switch (ev) {
	case REC_EV_READ:
	case REC_EV_READ_END:
	case REC_EV_WRITE:
	case REC_EV_PREPARE:
	case REC_EV_COMMIT:
		if (rec_next[f.phase][ev] != X)
			f.phase = rec_next[f.phase][ev];
		if (ev == REC_EV_READ_END)
			f.stale = 0;
		break;
	case REC_EV_PENDING:
		f.pending = 1;
		break;
	case REC_EV_WANT_PENDING:
		f.want_pending = 1;
		break;
	case REC_EV_MAY_READ:
		/* Entries were claimed: our pending entries are read once
		 * nothing is read or written (a batch in flight would be read
		 * again). */
		if (f.want_pending && f.phase == REC_IDLE) {
			f.want_pending = 0;
			f.pending = 1;
		}
		break;
	case REC_EV_CAUGHT_UP:
		f.pending = 0;
		break;
	case REC_EV_STALE:
		f.stale = rec_fsm_reading(f);
		break;
	case REC_EV_COUNT:
		break;
	}
	return f;
}

const char *
rec_phase_name(enum rec_phase p)
{
	static const char *const names[REC_PHASES] = {
		"idle", "reading", "writing", "writing+reading", "prepared",
		"prepared+reading",
	};

	return (unsigned)p < REC_PHASES ? names[p] : "?";
}
