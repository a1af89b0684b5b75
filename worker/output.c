/*
 * output.c - what handlers write to stderr, line by line, to hived.
 *
 *   handler stderr --pipe--> lines (<= HIVE_OUTPUT_MAX) --rate--> OUTPUT
 *                                                                 frame
 *
 * Each handler's stderr is a pipe the worker reads on its loop (stream
 * mode: struct wrk_errpipe here; exec mode: handler_exec.c reads it, for
 * its error text too, and feeds what it read here).  Every line becomes
 * one OUTPUT frame to hived, which keeps, logs and serves it (docs/
 * HANDLERS.md, "stderr").  A line is sent when its newline comes; one
 * longer than HIVE_OUTPUT_MAX is sent at that length, ending with
 * WRK_OUTPUT_CUT, and the rest of it up to the newline is dropped.  Bytes
 * that are not UTF-8, NUL and control characters other than tab become
 * '?'; a '\r' before the newline goes; blank lines are not sent.
 *
 * The rate is bounded per worker, whatever its handlers: a token bucket
 * of WRK_OUTPUT_BURST lines refilled at WRK_OUTPUT_RATE lines a second.
 * A line without a token is dropped and counted; the next OUTPUT frame
 * carries the count ("dropped"), and when no line follows, the next
 * heartbeat sends an OUTPUT frame with the count alone.  So a handler
 * printing in a loop costs hived at most WRK_OUTPUT_RATE frames a second.
 *
 * The task a line is about: in exec mode the process's own task; in
 * stream mode the task in flight when exactly one is (with several, a
 * line could be any one's, and none is named).
 *
 * Standalone (no hived), the lines go to the worker's own log.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "worker.h"

#define CUT_LEN (sizeof(WRK_OUTPUT_CUT) - 1)

void
wrk_output_init(struct wrk *w)
{
	w->out_tokens = WRK_OUTPUT_BURST;
	w->out_refill_ms = wrk_now();
	w->out_dropped = 0;
}

/* One token for a line, if the bucket has one. */
static bool
output_take(struct wrk *w)
{
	uint64_t now = wrk_now();

	if (now > w->out_refill_ms) {
		w->out_tokens += (double)(now - w->out_refill_ms) *
		    WRK_OUTPUT_RATE / 1000.0;
		if (w->out_tokens > WRK_OUTPUT_BURST)
			w->out_tokens = WRK_OUTPUT_BURST;
		w->out_refill_ms = now;
	}
	if (w->out_tokens < 1.0)
		return false;
	w->out_tokens -= 1.0;
	return true;
}

/*
 * Make s[0..n) text an OUTPUT frame can carry, in place: what is not
 * UTF-8, NUL and control characters but tab become '?'.
 */
static void
output_clean(char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n) {
		if (u[i] < 0x20 && u[i] != '\t') {
			s[i++] = '?';
			continue;
		}
		if (u[i] == 0x7f) {
			s[i++] = '?';
			continue;
		}
		if ((k = utf8_seq(u + i, n - i)) == 0) {
			s[i++] = '?';
			continue;
		}
		i += k;
	}
}

/* n, or less so that s[0..n) does not end inside a UTF-8 sequence. */
static size_t
utf8_whole(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = n, need;

	while (i > 0 && n - i < 4 && (u[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0 || (u[i - 1] & 0xc0) != 0xc0)
		return n;
	need = u[i - 1] >= 0xf0 ? 4 : u[i - 1] >= 0xe0 ? 3 : 2;
	return n - (i - 1) < need ? i - 1 : n;
}

static const struct wrk_task *
output_task(struct wrk *w, const struct wrk_task *task)
{
	if (w->o.mode != WRK_MODE_STREAM)
		return task;
	return w->nrunning == 1 ? TAILQ_FIRST(&w->running) : NULL;
}

/* One whole line (or a cut one), cleaned, to hived if the rate lets it. */
static void
output_line(struct wrk *w, const struct wrk_task *task, char *s, size_t n)
{
	if (n > 0 && s[n - 1] == '\r')
		n--;
	if (n == 0)
		return;
	if (!output_take(w)) {
		w->out_dropped++;
		return;
	}
	output_clean(s, n);
	task = output_task(w, task);
	if (w->link.fd < 0) {
		log_notice("agent=%s%s%s%s%.*s: %.*s", w->agent_inst,
		    task ? " task=" : "", task ? task->id : "",
		    task ? " trace=" : "", task ? HIVE_TRACE_ID_LEN : 0,
		    task ? WRK_TRACE(task) : "", (int)n, s);
		return;
	}
	wrk_link_output(w, task, s, n, w->out_dropped);
	w->out_dropped = 0;
}

void
wrk_output_feed(struct wrk *w, struct wrk_errlines *l,
    const struct wrk_task *task, const char *p, size_t n)
{
	const char *nl;
	size_t take, room;

	while (n > 0) {
		nl = memchr(p, '\n', n);
		take = nl != NULL ? (size_t)(nl - p) : n;
		if (l->skipping) {
			/* The rest of a line that was cut. */
			if (nl == NULL)
				return;
			l->skipping = false;
		} else {
			room = HIVE_OUTPUT_MAX - CUT_LEN - l->len;
			if (take > room) {
				memcpy(l->buf + l->len, p, room);
				l->len = utf8_whole(l->buf, l->len + room);
				memcpy(l->buf + l->len, WRK_OUTPUT_CUT, CUT_LEN);
				output_line(w, task, l->buf, l->len + CUT_LEN);
				l->len = 0;
				l->skipping = nl == NULL;
			} else {
				memcpy(l->buf + l->len, p, take);
				l->len += take;
				if (nl != NULL) {
					output_line(w, task, l->buf, l->len);
					l->len = 0;
				}
			}
		}
		if (nl == NULL)
			return;
		n -= take + 1;
		p = nl + 1;
	}
}

void
wrk_output_end(struct wrk *w, struct wrk_errlines *l,
    const struct wrk_task *task)
{
	if (l->len > 0)
		output_line(w, task, l->buf, l->len);
	l->len = 0;
	l->skipping = false;
}

void
wrk_output_report(struct wrk *w)
{
	if (w->out_dropped == 0)
		return;
	if (w->link.fd < 0)
		log_warnx("agent=%s %llu lines of handler stderr dropped "
		    "(over %u a second)", w->agent_inst,
		    (unsigned long long)w->out_dropped, WRK_OUTPUT_RATE);
	else
		wrk_link_output(w, NULL, NULL, 0, w->out_dropped);
	w->out_dropped = 0;
}

/* ---- stream mode: the handler's stderr pipe ---- */

/* Read what is there: 0 at EOF (or an error), 1 when it would block. */
static int
errpipe_read(struct wrk_errpipe *e)
{
	char buf[16384];
	ssize_t n;

	/* Bounded per turn, like stdout's reads: a handler flooding its
	 * stderr must not starve the rest of the loop. */
	for (int rounds = 0; e->fd >= 0 && rounds < 16; rounds++) {
		n = read(e->fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return 1;
		if (n <= 0)
			return 0;
		wrk_output_feed(e->w, &e->l, NULL, buf, (size_t)n);
	}
	return 1;
}

static void
errpipe_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct wrk_errpipe *e = io->data;

	if (errpipe_read(e) == 0)
		wrk_errpipe_close(e);
}

void
wrk_errpipe_init(struct wrk_errpipe *e, struct wrk *w)
{
	memset(e, 0, sizeof(*e));
	e->w = w;
	e->fd = -1;
}

void
wrk_errpipe_start(struct wrk_errpipe *e)
{
	e->l.len = 0;
	e->l.skipping = false;
	if (e->fd < 0)
		return;
	ev_io_init(&e->io, errpipe_cb, e->fd, EV_READ);
	e->io.data = e;
	ev_io_start(e->w->loop, &e->io);
}

void
wrk_errpipe_poll(struct wrk_errpipe *e)
{
	if (e->fd >= 0 && errpipe_read(e) == 0)
		wrk_errpipe_close(e);
}

/* What is left in the pipe (a grandchild may still hold it: read what is
 * there, not to EOF), the last line without its newline, then close. */
void
wrk_errpipe_close(struct wrk_errpipe *e)
{
	if (e->fd < 0)
		return;
	(void)errpipe_read(e);
	wrk_output_end(e->w, &e->l, NULL);
	ev_io_stop(e->w->loop, &e->io);
	close(e->fd);
	e->fd = -1;
}
