/*
 * handler_stream.c - mode=stream: one long-lived handler process.
 *
 *   worker --{"id","attempt","agent","payload"[,"parents"],"memory"}\n--> stdin
 *   worker <--{"id","status","result","error","memory"}\n--  stdout
 *
 * Up to `concurrency` tasks are in flight, answers are matched by id and
 * may come in any order.  stderr goes to hived line by line (output.c).  The
 * handler runs in its own process group, and that group ends with it:
 * once the handler is reaped, whatever it left in its group is killed
 * (docs/HANDLERS.md, "Processes").
 *
 * When it dies, what it printed is read to the end first (answers it gave
 * before dying count), then each task still in flight goes back to the
 * front of the backlog with attempt + 1, and the handler is restarted: at
 * once the first time, then with a backoff that a good answer resets.  A
 * start that fails climbs the same backoff.  Each exit the worker did not
 * ask for, and each failed start, is told to hived (wrk_handler_failed),
 * which counts it against the agent's restart-rate limit.  The memory
 * lives in the worker, so a restarted handler gets it with its next
 * task.  A line that is not a valid answer (answer.c) fails the task it
 * belongs to when that can be known (one task in flight, or an "id" we
 * can read); otherwise it is logged and dropped.
 *
 * A task in flight past its timeout (its timeout_ms, else --task-timeout)
 * fails with "timed out after N ms", a final result like any other: a
 * handler stuck on it is not given it again.  The handler, which may be
 * stuck on it, is killed with its process group and restarted as after a
 * crash; the other tasks it had go to the new one with attempt + 1.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

static void stream_exited(struct wrk *, int status);
static void stream_restart_later(struct wrk *);

void
wrk_stream_init(struct wrk *w)
{
	w->h.state = WRK_H_NONE;
	w->h.in_fd = w->h.out_fd = -1;
	wrk_errpipe_init(&w->h.err, w);
}

bool
wrk_stream_ready(const struct wrk *w)
{
	return w->h.state == WRK_H_RUNNING;
}

bool
wrk_stream_gone(const struct wrk *w)
{
	return w->h.state == WRK_H_NONE;
}

static void
stream_close_in(struct wrk *w)
{
	ev_io_stop(w->loop, &w->h.in_w);
	if (w->h.in_fd >= 0)
		close(w->h.in_fd);
	w->h.in_fd = -1;
	hbuf_reset(&w->h.in);
}

void
wrk_stream_flush(struct wrk *w)
{
	struct wrk_handler *h = &w->h;
	ssize_t n;

	while (h->in_fd >= 0 && hbuf_avail(&h->in) > 0) {
		n = write(h->in_fd, hbuf_data(&h->in), hbuf_avail(&h->in));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n == -1) {
			/* EPIPE: it closed stdin or died; ev_child tells. */
			log_warn("agent=%s pid=%ld write to handler",
			    w->agent_inst, (long)h->pid);
			stream_close_in(w);
			return;
		}
		hbuf_consume(&h->in, (size_t)n);
	}
	if (h->in_fd >= 0 && hbuf_avail(&h->in) > 0)
		ev_io_start(w->loop, &h->in_w);
	else
		ev_io_stop(w->loop, &h->in_w);
}

static void
stream_wcb(struct ev_loop *loop, ev_io *io, int revents)
{
	wrk_stream_flush(io->data);
}

int
wrk_stream_send(struct wrk *w, struct wrk_task *t)
{
	struct wrk_handler *h = &w->h;
	char err[HIVE_ERROR_MAX];
	unsigned timeout;

	if (wrk_task_line(w, t, &h->in, err, sizeof(err)) == -1) {
		wrk_task_fail(w, t, "%s", err);
		return -1;
	}
	t->due = 0;
	if ((timeout = wrk_task_timeout(w, t)) > 0) {
		t->due = wrk_now() + timeout;
		if (!h->task_due || t->due < h->task_due) {
			h->task_due = t->due;
			wrk_schedule(w);
		}
	}
	/* Written by the flush at the end of this loop turn, together with
	 * whatever else is dispatched in it. */
	return 0;
}

static struct wrk_task *
running_by_id(struct wrk *w, const char *id)
{
	struct wrk_task *t;

	TAILQ_FOREACH(t, &w->running, q)
		if (strcmp(t->id, id) == 0)
			return t;
	return NULL;
}

/*
 * One line from the handler: the answer for the task it names, or a
 * failure for the task it seems to belong to (see answer.c).
 */
static void
stream_line(struct wrk *w, const char *line, size_t len)
{
	struct wrk_answer a;
	struct wrk_task *t;
	char why[HIVE_ERROR_MAX];
	int rc;

	if ((rc = wrk_answer_line(line, len, &a, why, sizeof(why))) == 1)
		return;
	t = a.id[0] != '\0' ? running_by_id(w, a.id) : NULL;
	if (rc == 2) {
		/* Progress or a chunk (publish.c): fails nothing. */
		if (t == NULL || why[0] != '\0')
			log_warnx("agent=%s pid=%ld task=%s output line %s, "
			    "dropped%s%s", w->agent_inst, (long)w->h.pid, a.id,
			    t == NULL ? "for no task in flight" : "in part",
			    why[0] != '\0' ? ": " : "", why);
		if (t != NULL)
			wrk_taskout_add(w, t, a.progress, a.chunk);
		wrk_answer_clear(&a);
		return;
	}
	/* Garbage while one task is in flight can only be its answer. */
	if (t == NULL && rc == -1 && !a.id_sure && w->nrunning == 1)
		t = TAILQ_FIRST(&w->running);
	if (t == NULL) {
		if (rc == 0)
			log_warnx("agent=%s pid=%ld task=%s answer for no task "
			    "in flight, dropped", w->agent_inst, (long)w->h.pid,
			    a.id);
		else
			log_warnx("agent=%s pid=%ld line for no task in flight, "
			    "dropped: %s", w->agent_inst, (long)w->h.pid, why);
	} else if (rc == -1) {
		wrk_task_fail(w, t, "%s", why);
	} else {
		w->h.answered = true;
		wrk_task_usage(t, a.usage);
		wrk_task_finish(w, t, a.status, a.result,
		    a.status == HIVE_STATUS_ERROR ? a.error : NULL, a.memory);
	}
	wrk_answer_clear(&a);
}

/* Split what was read into lines; an over-long line fails its task. */
static void
stream_lines(struct wrk *w)
{
	struct wrk_handler *h = &w->h;
	char *p, *nl;
	size_t len;

	for (;;) {
		p = hbuf_data(&h->out);
		len = hbuf_avail(&h->out);
		if (len == 0)
			break;
		nl = memchr(p, '\n', len);
		if (h->skipping) {
			if (nl == NULL) {
				hbuf_reset(&h->out);
				break;
			}
			h->skipping = false;
			hbuf_consume(&h->out, (size_t)(nl - p) + 1);
			continue;
		}
		if (nl == NULL) {
			if (len > WRK_LINE_MAX) {
				/* Fails as too long; the rest is skipped. */
				stream_line(w, p, len);
				h->skipping = true;
				hbuf_reset(&h->out);
			}
			break;
		}
		stream_line(w, p, (size_t)(nl - p));
		hbuf_consume(&h->out, (size_t)(nl - p) + 1);
	}
}

/* Read what is there: 0 at EOF, 1 when it would block, 2 when there may
 * be more. */
static int
stream_read(struct wrk *w)
{
	struct wrk_handler *h = &w->h;
	ssize_t n;
	int rounds = 0;

	/* A few reads per turn: enough to drain a busy pipe, bounded so
	 * that Redis replies are not starved. */
	while (h->out_fd >= 0 && rounds++ < 16) {
		if (hbuf_reserve(&h->out, 65536) == -1)
			fatal("agent=%s pid=%ld buffering the handler's stdout",
			    w->agent_inst, (long)h->pid);
		n = read(h->out_fd, h->out.p + h->out.len, h->out.cap - h->out.len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return 1;
		if (n <= 0) {
			if (n == -1)
				log_warn("agent=%s read from handler",
				    w->agent_inst);
			return 0;
		}
		h->out.len += (size_t)n;
		stream_lines(w);
	}
	return 2;
}

static void
stream_close_out(struct wrk *w)
{
	ev_io_stop(w->loop, &w->h.out_w);
	if (w->h.out_fd >= 0)
		close(w->h.out_fd);
	w->h.out_fd = -1;
}

static void
stream_rcb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct wrk *w = io->data;

	/* stderr first: what the handler wrote there before this answer is
	 * about the task the answer ends (output.c names it). */
	wrk_errpipe_poll(&w->h.err);
	if (stream_read(w) == 0) {
		/* It closed stdout: it can answer no more.  Make sure it is
		 * gone; ev_child then retries its tasks. */
		stream_close_out(w);
		if (w->h.state == WRK_H_RUNNING) {
			log_warnx("agent=%s pid=%ld handler closed its stdout "
			    "(exiting?), making sure it is gone",
			    w->agent_inst, (long)w->h.pid);
			kill(-w->h.pid, SIGKILL);
		}
	}
}

static void
stream_ccb(struct ev_loop *loop, ev_child *c, int revents)
{
	ev_child_stop(loop, c);
	stream_exited(c->data, c->rstatus);
}

int
wrk_stream_start(struct wrk *w)
{
	struct wrk_handler *h = &w->h;
	pid_t pid;

	h->restart_due = 0;
	if ((pid = wrk_spawn(w->o.argv, &h->in_fd, &h->out_fd,
	    &h->err.fd)) == -1) {
		/* wrk_spawn said why (ENOENT, EACCES...). */
		h->state = WRK_H_NONE;
		wrk_handler_failed(w);
		stream_restart_later(w);
		return -1;
	}
	h->pid = pid;
	h->state = WRK_H_RUNNING;
	h->answered = false;
	h->skipping = false;
	hbuf_reset(&h->out);
	hbuf_reset(&h->in);
	ev_io_init(&h->in_w, stream_wcb, h->in_fd, EV_WRITE);
	ev_io_init(&h->out_w, stream_rcb, h->out_fd, EV_READ);
	ev_child_init(&h->child_w, stream_ccb, pid, 0);
	h->in_w.data = h->out_w.data = h->child_w.data = w;
	ev_io_start(w->loop, &h->out_w);
	wrk_errpipe_start(&h->err);
	ev_child_start(w->loop, &h->child_w);
	log_info("agent=%s pid=%ld handler started: %s", w->agent_inst,
	    (long)pid, w->o.argv[0]);
	wrk_state_changed(w);
	return 0;
}

static void
stream_exited(struct wrk *w, int status)
{
	struct wrk_handler *h = &w->h;
	struct wrk_task *t, *prev;
	bool expected = h->state == WRK_H_STOPPING;

	/* Nothing it started outlives it: the rest of its group goes.  It
	 * is reaped, but the group's id stays taken while a member lives,
	 * so this reaches exactly what it left behind (or nothing). */
	if (h->pid > 0)
		kill(-h->pid, SIGKILL);
	/* Answers it gave before it died still count: read to EOF, or
	 * until a grandchild holding stdout has nothing more. */
	while (h->out_fd >= 0 && stream_read(w) == 2)
		;
	stream_close_out(w);
	stream_close_in(w);
	wrk_errpipe_close(&h->err);
	hbuf_reset(&h->out);
	if (WIFSIGNALED(status))
		log_info("agent=%s pid=%ld handler killed by signal %d",
		    w->agent_inst, (long)h->pid, WTERMSIG(status));
	else if (expected && WEXITSTATUS(status) == 0)
		log_info("agent=%s pid=%ld handler exited", w->agent_inst,
		    (long)h->pid);
	else
		log_warnx("agent=%s pid=%ld handler exited with status %d",
		    w->agent_inst, (long)h->pid, WEXITSTATUS(status));
	/* Whatever it was running goes back, oldest first. */
	for (t = TAILQ_LAST(&w->running, wrk_task_list); t != NULL; t = prev) {
		prev = TAILQ_PREV(t, wrk_task_list, q);
		log_warnx("agent=%s task=%s attempt=%u handler died running "
		    "it, retrying", w->agent_inst, t->id, t->attempt);
		wrk_task_retry(w, t);
	}
	h->state = WRK_H_NONE;
	h->pid = 0;
	h->term_due = h->kill_due = h->task_due = 0;
	/* Stopped (drain) or killed for a timeout: asked for.  Anything
	 * else, an exit 0 too, is a failure hived counts. */
	if (!expected)
		wrk_handler_failed(w);
	if (w->phase >= WRK_PH_CLOSING) {     /* no restart */
		wrk_state_changed(w);
		wrk_check_drained(w);
		return;
	}
	if (h->answered)
		h->backoff_ms = 0;
	stream_restart_later(w);
	wrk_state_changed(w);
}

/*
 * Arm the next start: the first restart, and the first after good
 * answers, at once; then after a delay doubling from
 * WRK_HANDLER_BACKOFF_MS to WRK_HANDLER_BACKOFF_MAX_MS.  Exits and failed
 * starts climb the same backoff, so a command that cannot be run is
 * tried less and less often until hived's restart-rate limit ends it.
 */
static void
stream_restart_later(struct wrk *w)
{
	struct wrk_handler *h = &w->h;
	unsigned delay = h->backoff_ms;

	h->backoff_ms = h->backoff_ms == 0 ? WRK_HANDLER_BACKOFF_MS :
	    h->backoff_ms * 2 > WRK_HANDLER_BACKOFF_MAX_MS ?
	    WRK_HANDLER_BACKOFF_MAX_MS : h->backoff_ms * 2;
	h->restart_due = wrk_now() + delay;
	log_info("agent=%s restarting handler delay_ms=%u", w->agent_inst,
	    delay);
	wrk_schedule(w);
}

/* Stop it: close stdin (a well-behaved handler exits at EOF), then TERM,
 * then KILL, each after a grace. */
void
wrk_stream_stop(struct wrk *w)
{
	struct wrk_handler *h = &w->h;

	h->restart_due = 0;
	if (h->state != WRK_H_RUNNING)
		return;
	h->state = WRK_H_STOPPING;
	stream_close_in(w);
	h->term_due = wrk_now() + WRK_STOP_GRACE_MS;
	h->kill_due = h->term_due + WRK_STOP_GRACE_MS;
	wrk_schedule(w);
}

/* At exit: nothing may outlive the worker.  Blocks in waitpid, which is
 * fine once the loop is done. */
void
wrk_stream_kill(struct wrk *w)
{
	struct wrk_handler *h = &w->h;

	if (h->state != WRK_H_NONE) {
		kill(-h->pid, SIGKILL);
		(void)waitpid(h->pid, NULL, 0);
		ev_child_stop(w->loop, &h->child_w);
		h->state = WRK_H_NONE;
	}
	stream_close_in(w);
	stream_close_out(w);
	wrk_errpipe_close(&h->err);
	hbuf_free(&h->in);
	hbuf_free(&h->out);
}

/*
 * Fail the tasks in flight past their timeout; if there were any, kill
 * the handler (see the top of this file).  Recomputes h->task_due.
 */
static void
stream_timeouts(struct wrk *w, uint64_t now)
{
	struct wrk_handler *h = &w->h;
	struct wrk_task *t, *next;
	int n = 0;

	h->task_due = 0;
	for (t = TAILQ_FIRST(&w->running); t != NULL; t = next) {
		next = TAILQ_NEXT(t, q);
		if (t->due == 0)
			continue;
		if (t->due > now) {
			if (!h->task_due || t->due < h->task_due)
				h->task_due = t->due;
			continue;
		}
		n++;
		wrk_task_fail(w, t, "timed out after %u ms",
		    wrk_task_timeout(w, t));
	}
	if (n == 0)
		return;
	log_warnx("agent=%s pid=%ld %d task%s timed out, killing the "
	    "handler's process group; %d other task%s in flight will be "
	    "retried", w->agent_inst, (long)h->pid, n, n == 1 ? "" : "s",
	    w->nrunning, w->nrunning == 1 ? "" : "s");
	/* STOPPING: nothing more is dispatched to it; stream_exited then
	 * retries the rest and restarts it. */
	h->state = WRK_H_STOPPING;
	h->term_due = h->kill_due = h->task_due = 0;
	kill(-h->pid, SIGKILL);
	wrk_state_changed(w);
}

void
wrk_stream_cron(struct wrk *w, uint64_t now)
{
	struct wrk_handler *h = &w->h;

	if (h->state == WRK_H_RUNNING && h->task_due && h->task_due <= now)
		stream_timeouts(w, now);

	if (h->state == WRK_H_NONE && h->restart_due && h->restart_due <= now &&
	    w->phase < WRK_PH_CLOSING)
		(void)wrk_stream_start(w);
	if (h->state == WRK_H_STOPPING && h->term_due && h->term_due <= now) {
		log_warnx("agent=%s pid=%ld handler still running after stdin "
		    "closed, sending TERM", w->agent_inst, (long)h->pid);
		kill(-h->pid, SIGTERM);
		h->term_due = 0;
	}
	if (h->state == WRK_H_STOPPING && h->kill_due && h->kill_due <= now) {
		log_warnx("agent=%s pid=%ld handler ignored TERM, sending KILL",
		    w->agent_inst, (long)h->pid);
		kill(-h->pid, SIGKILL);
		h->kill_due = 0;
	}
}

uint64_t
wrk_stream_next_due(const struct wrk *w)
{
	const struct wrk_handler *h = &w->h;
	uint64_t due = 0;

	if (h->state == WRK_H_NONE)
		due = h->restart_due;
	if (h->state == WRK_H_RUNNING)
		due = h->task_due;
	if (h->state == WRK_H_STOPPING)
		due = h->term_due ? h->term_due : h->kill_due;
	return due;
}
