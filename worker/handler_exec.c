/*
 * handler_exec.c - mode=exec: one handler process per task.
 *
 * The task's JSON line goes to its stdin, which is then closed; its stdout
 * is the result; its exit status decides: 0 is ok, anything else an error
 * whose text is the tail of its stderr (bounded), or the exit status when
 * it wrote none; each line of its stderr also goes to hived, with the
 * task's id (output.c).  stdout is read (answer.c) as:
 *
 *   a JSON object with "result" and/or "memory"   taken as such
 *   any other JSON value                          the result
 *   anything else (text)                          the result, as a string
 *   nothing                                       a null result
 *
 * Each process leads its own process group; a timeout (the task's
 * timeout_ms, else --task-timeout) kills the whole group with SIGKILL, so
 * whatever it started dies with it.  After it exits, what is left of its
 * group is killed too: a task leaves nothing behind.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

static void
proc_close(struct wrk *w, int *fd, ev_io *io)
{
	ev_io_stop(w->loop, io);
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void
proc_free(struct wrk_proc *p)
{
	struct wrk *w = p->w;

	proc_close(w, &p->in_fd, &p->in_w);
	proc_close(w, &p->out_fd, &p->out_w);
	proc_close(w, &p->err_fd, &p->err_w);
	ev_child_stop(w->loop, &p->child_w);
	ev_timer_stop(w->loop, &p->timeout_w);
	hbuf_free(&p->in);
	hbuf_free(&p->out);
	hbuf_free(&p->err);
	if (p->task != NULL)
		p->task->proc = NULL;
	w->nprocs--;
	free(p);
}

static void
proc_write(struct wrk_proc *p)
{
	struct wrk *w = p->w;
	ssize_t n;

	while (p->in_fd >= 0 && hbuf_avail(&p->in) > 0) {
		n = write(p->in_fd, hbuf_data(&p->in), hbuf_avail(&p->in));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			ev_io_start(w->loop, &p->in_w);
			return;
		}
		if (n == -1) {
			/* EPIPE: it did not want its input; its exit
			 * status tells the rest. */
			break;
		}
		hbuf_consume(&p->in, (size_t)n);
	}
	/* All written (or refused): EOF tells it the task is whole. */
	proc_close(w, &p->in_fd, &p->in_w);
}

static void
proc_wcb(struct ev_loop *loop, ev_io *io, int revents)
{
	proc_write(io->data);
}

/* Read stdout or stderr; 0 at EOF or when it would block. */
static int
proc_read(struct wrk_proc *p, bool err)
{
	struct wrk *w = p->w;
	struct hbuf *b = err ? &p->err : &p->out;
	int *fd = err ? &p->err_fd : &p->out_fd;
	ev_io *io = err ? &p->err_w : &p->out_w;
	ssize_t n;

	for (;;) {
		if (*fd < 0)
			return 0;
		if (hbuf_reserve(b, 16384) == -1)
			fatal("agent=%s task=%s buffering the handler's %s",
			    w->agent_inst, p->task != NULL ? p->task->id : "",
			    err ? "stderr" : "stdout");
		n = read(*fd, b->p + b->len, b->cap - b->len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return 0;
		if (n <= 0) {
			proc_close(w, fd, io);
			return 0;
		}
		if (err)
			wrk_output_feed(w, &p->errl, p->task, b->p + b->len,
			    (size_t)n);
		b->len += (size_t)n;
		if (err && b->len > 2 * HIVE_ERROR_MAX) {
			/* Keep the tail: the last lines say what failed. */
			memmove(b->p, b->p + b->len - HIVE_ERROR_MAX,
			    HIVE_ERROR_MAX);
			b->len = HIVE_ERROR_MAX;
		}
		if (!err && b->len > HIVE_RESULT_MAX && !p->overflow) {
			p->overflow = true;
			log_warnx("agent=%s task=%s pid=%ld output over %u "
			    "bytes, killing it", w->agent_inst, p->task->id,
			    (long)p->pid, HIVE_RESULT_MAX);
			kill(-p->pid, SIGKILL);
			proc_close(w, fd, io);
			return 0;
		}
	}
}

static void
proc_rcb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct wrk_proc *p = io->data;

	(void)proc_read(p, io == &p->err_w);
}

static void
proc_tcb(struct ev_loop *loop, ev_timer *tm, int revents)
{
	struct wrk_proc *p = tm->data;

	log_warnx("agent=%s task=%s pid=%ld timed out, killing its process "
	    "group", p->w->agent_inst, p->task->id, (long)p->pid);
	p->timed_out = true;
	kill(-p->pid, SIGKILL);
}

/* stderr's tail as an error text: trimmed, one paragraph. */
static void
err_text(struct wrk_proc *p, char *out, size_t len)
{
	size_t n = p->err.len, start = 0;

	while (n > 0 && (p->err.p[n - 1] == '\n' || p->err.p[n - 1] == ' ' ||
	    p->err.p[n - 1] == '\r'))
		n--;
	if (n >= len)
		start = n - (len - 1);
	/* Do not start inside a UTF-8 sequence. */
	while (start < n && ((unsigned char)p->err.p[start] & 0xc0) == 0x80)
		start++;
	snprintf(out, len, "%.*s", (int)(n - start), p->err.p + start);
}

static void
proc_finish(struct wrk_proc *p)
{
	struct wrk *w = p->w;
	struct wrk_task *t = p->task;
	struct wrk_answer a;
	char text[HIVE_ERROR_MAX];
	int st = p->status;

	/* What it wrote before exiting is in the pipes. */
	(void)proc_read(p, false);
	(void)proc_read(p, true);
	wrk_output_end(w, &p->errl, t);
	kill(-p->pid, SIGKILL);    /* leftovers of its group, if any */
	p->task = NULL;
	t->proc = NULL;
	if (p->timed_out) {
		err_text(p, text, sizeof(text) - 64);
		wrk_task_fail(w, t, "timed out after %u ms%s%s",
		    wrk_task_timeout(w, t), text[0] ? ": " : "", text);
	} else if (p->overflow) {
		wrk_task_fail(w, t, "handler output over %u bytes",
		    HIVE_RESULT_MAX);
	} else if (WIFSIGNALED(st)) {
		err_text(p, text, sizeof(text) - 64);
		wrk_task_fail(w, t, "handler killed by signal %d%s%s",
		    WTERMSIG(st), text[0] ? ": " : "", text);
	} else if (WEXITSTATUS(st) != 0) {
		err_text(p, text, sizeof(text));
		if (text[0] == '\0')
			snprintf(text, sizeof(text), "handler exited with "
			    "status %d", WEXITSTATUS(st));
		wrk_task_finish(w, t, HIVE_STATUS_ERROR, NULL, text, NULL);
	} else if (wrk_answer_exec(p->out.p, p->out.len, &a, text,
	    sizeof(text)) == -1) {
		wrk_task_fail(w, t, "%s", text);
		wrk_answer_clear(&a);
	} else {
		wrk_task_usage(t, a.usage);
		wrk_task_finish(w, t, HIVE_STATUS_OK, a.result, NULL, a.memory);
		wrk_answer_clear(&a);
	}
	proc_free(p);
}

static void
proc_ccb(struct ev_loop *loop, ev_child *c, int revents)
{
	struct wrk_proc *p = c->data;
	struct wrk *w = p->w;

	ev_child_stop(loop, c);
	p->exited = true;
	p->status = c->rstatus;
	proc_finish(p);         /* frees p */
	wrk_check_drained(w);
}

extern char **environ;

/*
 * The worker's environment with TRACEPARENT set to the task's: a new
 * array of the same strings (malloc'd; free() it, not the strings) whose
 * last entry is tpvar, which the caller keeps until the spawn returned.
 */
static char **
exec_env(const struct wrk_task *t, char *tpvar, size_t len)
{
	char **env;
	size_t n = 0, k = 0;

	snprintf(tpvar, len, "TRACEPARENT=%s", t->tp);
	while (environ[n] != NULL)
		n++;
	if ((env = calloc(n + 2, sizeof(*env))) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "TRACEPARENT=", 12) != 0)
			env[k++] = environ[i];
	env[k] = tpvar;
	return env;
}

int
wrk_exec_start(struct wrk *w, struct wrk_task *t)
{
	struct wrk_proc *p;
	char err[HIVE_ERROR_MAX];
	char tpvar[sizeof("TRACEPARENT=") + HIVE_TRACEPARENT_LEN];
	char **env;
	unsigned timeout;
	int e;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		fatal("agent=%s task=%s starting its handler", w->agent_inst,
		    t->id);
	p->w = w;
	p->task = t;
	p->in_fd = p->out_fd = p->err_fd = -1;
	w->nprocs++;
	if (wrk_task_line(w, t, &p->in, err, sizeof(err)) == -1) {
		p->task = NULL;
		proc_free(p);
		wrk_task_fail(w, t, "%s", err);
		return -1;
	}
	if ((env = exec_env(t, tpvar, sizeof(tpvar))) == NULL)
		fatal("agent=%s task=%s starting its handler", w->agent_inst,
		    t->id);
	p->pid = wrk_spawn_env(w->o.argv, env, &p->in_fd, &p->out_fd,
	    &p->err_fd);
	e = errno;
	free(env);
	errno = e;
	if (p->pid == -1) {
		/* The task fails; hived counts the failed start against the
		 * restart-rate limit, so a command that cannot run does not
		 * fail every task on the queue. */
		p->task = NULL;
		proc_free(p);
		wrk_task_fail(w, t, "cannot start handler %s: %s", w->o.argv[0],
		    strerror(errno));
		wrk_handler_failed(w);
		return -1;
	}
	t->proc = p;
	ev_io_init(&p->in_w, proc_wcb, p->in_fd, EV_WRITE);
	ev_io_init(&p->out_w, proc_rcb, p->out_fd, EV_READ);
	ev_io_init(&p->err_w, proc_rcb, p->err_fd, EV_READ);
	ev_child_init(&p->child_w, proc_ccb, p->pid, 0);
	p->in_w.data = p->out_w.data = p->err_w.data = p->child_w.data = p;
	ev_io_start(w->loop, &p->out_w);
	ev_io_start(w->loop, &p->err_w);
	ev_child_start(w->loop, &p->child_w);
	if ((timeout = wrk_task_timeout(w, t)) > 0) {
		ev_timer_init(&p->timeout_w, proc_tcb, timeout / 1000.0, 0.);
		p->timeout_w.data = p;
		ev_timer_start(w->loop, &p->timeout_w);
	}
	log_debug("agent=%s task=%s trace=%.32s pid=%ld started",
	    w->agent_inst, t->id, WRK_TRACE(t), (long)p->pid);
	proc_write(p);
	return 0;
}

/* At exit: kill and reap every task process (blocking is fine then). */
void
wrk_exec_kill_all(struct wrk *w)
{
	struct wrk_task *t;

	TAILQ_FOREACH(t, &w->running, q) {
		if (t->proc == NULL)
			continue;
		kill(-t->proc->pid, SIGKILL);
		(void)waitpid(t->proc->pid, NULL, 0);
		t->proc->task = NULL;
		proc_free(t->proc);
		t->proc = NULL;
	}
}
