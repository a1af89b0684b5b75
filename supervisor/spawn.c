/*
 * spawn.c - fork and exec one hive-worker, and reap every child.
 *
 * The child gets, and only gets:
 *
 *   fd 0   /dev/null
 *   fd 1,2 hived's stdout and stderr (journald under systemd)
 *   fd 3   its end of the socketpair (docs/WORKER-CONTRACT.md)
 *
 * Everything else hived holds is close-on-exec (sockets, pipes, libev's and
 * libmicrohttpd's descriptors); the child marks every fd above 3
 * close-on-exec once more before exec, as a belt for a library that forgot.
 *
 * Exec errors travel back on a close-on-exec pipe ("the exec pipe"): exec
 * succeeding closes it (EOF in hived), failing writes the stage and errno
 * first.  hived reads it from the loop (never blocking), only to log why;
 * the child's exit 127 is reaped and handled like any crash.
 *
 * Spawns are paced: an action SUP_ACT_SPAWN only queues the instance
 * (STARTING, no pid yet) and an idle watcher forks SUP_SPAWN_BATCH of
 * them per loop turn, in the order they were asked for (sup_spawn_queue
 * below).  A start of thousands of instances, a reload or a mass restart
 * so never holds signals, HTTP or the watchdog for longer than a batch.
 *
 * Why no PR_SET_PDEATHSIG: a worker must finish its task when hived dies,
 * and a signal would cut it short.  The worker treats EOF on fd 3 as "hived
 * is gone" (drain, then exit 0), and the kernel guarantees that EOF: hived's
 * end of the socketpair is close-on-exec, so no other process holds it.
 */
#include "hived.h"

#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

extern char **environ;

enum { EXEC_STAGE_CHDIR = 1, EXEC_STAGE_FD, EXEC_STAGE_EXEC };

struct exec_report {
	int stage;
	int err;
};

/*
 * Room in a worker's argv for what hived adds to the agent's command (at
 * most HIVE_ARGV_MAX words): the worker's path, fifteen options with
 * their values, "--task-events", "-v" and "--" (34 today), and the
 * closing NULL.
 */
#define WORKER_OWN_ARGS 40
#define SPAWN_ARGV_MAX (HIVE_ARGV_MAX + WORKER_OWN_ARGS)

/*
 * argv, built before fork so the child only calls what is
 * async-signal-safe.  Every string is copied into text, NUL-terminated
 * (execve wants them writable), and argv points into it once complete.
 */
struct spawn_args {
	char *argv[SPAWN_ARGV_MAX];
	size_t at[SPAWN_ARGV_MAX];   /* argv[i] starts at text.p + at[i] */
	int argc;
	enum { ARGS_OK, ARGS_TOO_LONG, ARGS_NOMEM } fail;
	struct hbuf text;
};

static void
spawn_args_free(struct spawn_args *sa)
{
	if (sa == NULL)
		return;
	hbuf_free(&sa->text);
	free(sa);
}

static const char *
worker_path(const struct hive_conf *c)
{
	return c->worker_path != NULL && *c->worker_path ? c->worker_path :
	    "hive-worker";
}

/* Start an argument: the bytes added until arg_end are it. */
static void
arg_begin(struct spawn_args *sa)
{
	if (sa->fail == ARGS_OK && sa->argc >= SPAWN_ARGV_MAX - 1)
		sa->fail = ARGS_TOO_LONG;
	if (sa->fail == ARGS_OK)
		sa->at[sa->argc++] = sa->text.len;
}

static void
arg_add(struct spawn_args *sa, const char *s)
{
	if (sa->fail == ARGS_OK && hbuf_puts(&sa->text, s) == -1)
		sa->fail = ARGS_NOMEM;
}

static void
arg_end(struct spawn_args *sa)
{
	if (sa->fail == ARGS_OK && hbuf_putc(&sa->text, '\0') == -1)
		sa->fail = ARGS_NOMEM;
}

static void
arg(struct spawn_args *sa, const char *s)
{
	arg_begin(sa);
	arg_add(sa, s);
	arg_end(sa);
}

static void
opt(struct spawn_args *sa, const char *name, const char *value)
{
	arg(sa, name);
	arg(sa, value);
}

static void
opt_uint(struct spawn_args *sa, const char *name, unsigned value)
{
	char d[sizeof("4294967295")];

	snprintf(d, sizeof(d), "%u", value);
	opt(sa, name, d);
}

/* The worker's command line (docs/WORKER-CONTRACT.md), then the
 * agent's command after "--".  -1 with sa->fail set when it cannot be
 * built. */
static int
build_args(struct sup_inst *in, struct spawn_args *sa)
{
	const struct hive_agent_conf *ac = in->agent->conf;
	const struct hive_conf *c = in->agent->sup->cref->conf;
	int i;

	arg(sa, worker_path(c));
	opt(sa, "--agent", ac->name);
	opt_uint(sa, "--instance", in->n);
	opt(sa, "--mode", ac->mode == HIVE_MODE_EXEC ? "exec" : "stream");
	if (ac->ncaps > 0) {
		arg(sa, "--capabilities");
		arg_begin(sa);
		for (i = 0; i < ac->ncaps; i++) {
			arg_add(sa, i ? "," : "");
			arg_add(sa, ac->caps[i]);
		}
		arg_end(sa);
	}
	opt_uint(sa, "--concurrency", ac->concurrency);
	opt(sa, "--redis", c->redis);
	opt(sa, "--prefix", c->prefix);
	opt(sa, "--host", c->host);
	opt(sa, "--fd", "3");
	opt_uint(sa, "--task-timeout", ac->task_timeout_ms);
	opt_uint(sa, "--max-attempts", ac->max_attempts);
	opt_uint(sa, "--heartbeat-ms", c->heartbeat_ms);
	opt_uint(sa, "--stop-timeout", c->stop_timeout_ms);
	opt_uint(sa, "--output-ttl", c->output_ttl_ms);
	if (c->task_events)
		arg(sa, "--task-events");
	/* hived's own, so that both write the same lines (the worker
	 * finds journald itself: its stderr is hived's). */
	opt(sa, "--log-format", log_format_name(log_get_format()));
	opt(sa, "--log-time", log_time_name(log_get_time()));
	if (log_verbose())
		arg(sa, "-v");
	arg(sa, "--");
	for (i = 0; ac->argv != NULL && ac->argv[i] != NULL; i++)
		arg(sa, ac->argv[i]);
	if (i == 0 && sa->fail == ARGS_OK)
		sa->fail = ARGS_TOO_LONG;       /* no command */
	if (sa->fail != ARGS_OK)
		return -1;
	for (i = 0; i < sa->argc; i++)
		sa->argv[i] = sa->text.p + sa->at[i];
	sa->argv[sa->argc] = NULL;
	return 0;
}

/*
 * What systemd hands hived alone: a worker (or its handler) that found
 * NOTIFY_SOCKET or WATCHDOG_USEC would believe it is the service.
 */
static int
env_is_hiveds(const char *e)
{
	static const char *const mine[] = {
		"NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=",
		"LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=",
	};

	for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++)
		if (strncmp(e, mine[i], strlen(mine[i])) == 0)
			return 1;
	return 0;
}

/* hived's environment (less env_is_hiveds) with the agent's KEY=value
 * entries on top. */
static char **
build_env(const struct hive_agent_conf *ac)
{
	size_t ne = 0, n = 0;
	char **env;

	while (environ != NULL && environ[ne] != NULL)
		ne++;
	env = calloc(ne + (size_t)ac->nenv + 1, sizeof(*env));
	if (env == NULL)
		return NULL;
	for (size_t i = 0; i < ne; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		int over = env_is_hiveds(environ[i]);

		for (int j = 0; j < ac->nenv && !over; j++)
			over = strncmp(ac->env[j], environ[i], klen) == 0 &&
			    ac->env[j][klen] == '=';
		if (!over)
			env[n++] = environ[i];
	}
	for (int j = 0; j < ac->nenv; j++)
		env[n++] = ac->env[j];
	env[n] = NULL;
	return env;
}

static void
report(int fd, int stage)
{
	struct exec_report r = { stage, errno };

	/* Nothing to do if this fails: the exit status still says 127. */
	if (write(fd, &r, sizeof(r)) < 0)
		return;
}

/* In the child: only async-signal-safe calls from here to exec. */
__attribute__((noreturn)) static void
child(int sock, int errw, int devnull, const struct rlimit *nofile,
    const char *dir, char *const argv[], char *const envp[])
{
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);    /* SIGPIPE was ignored; libev's go too */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Its own session: a ^C on hived's terminal is hived's to handle,
	 * and a kill of the group reaches the worker's handler too. */
	setsid();

	/* Order matters: /dev/null, the pipe or the socket may be fd 3
	 * (main.c makes sure 0-2 are taken, so none is below 3). */
	if (devnull >= 0 && dup2(devnull, 0) == -1)
		goto fail_fd;
	if (errw == 3 && (errw = fcntl(errw, F_DUPFD_CLOEXEC, 4)) == -1)
		goto fail_fd;
	if (sock == 3) {
		if (fcntl(3, F_SETFD, 0) == -1)
			goto fail_fd;
	} else if (dup2(sock, 3) == -1) {
		goto fail_fd;
	}
	/* Belt: nothing above fd 3 survives exec (errw included, which is
	 * what makes EOF mean success). */
	if (close_range(4u, ~0u, CLOSE_RANGE_CLOEXEC) == -1)
		for (int fd = 4; fd < 1024; fd++)
			if (fd != errw)
				fcntl(fd, F_SETFD, FD_CLOEXEC);

	if (nofile->rlim_cur != 0)
		setrlimit(RLIMIT_NOFILE, nofile);
	if (dir != NULL && *dir && chdir(dir) == -1) {
		report(errw, EXEC_STAGE_CHDIR);
		_exit(127);
	}
	execve(argv[0], argv, envp);
	report(errw, EXEC_STAGE_EXEC);
	_exit(127);
fail_fd:
	report(errw, EXEC_STAGE_FD);
	_exit(127);
}

/*
 * Read the exec pipe: 1 when it is finished (EOF: exec worked; or the
 * report, logged), 0 when nothing is there yet.  The child writes its
 * report before it exits, so once it is reaped the report is in the pipe.
 */
static int
exec_read(struct sup_inst *in, pid_t pid)
{
	struct exec_report r;
	ssize_t n;

	n = read(in->exec_fd, &r, sizeof(r));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n == (ssize_t)sizeof(r)) {
		errno = r.err;
		log_warn("agent=%s pid=%ld %s %s", in->label, (long)pid,
		    r.stage == EXEC_STAGE_CHDIR ? "chdir to" :
		    r.stage == EXEC_STAGE_FD ? "set up fds for" : "exec",
		    r.stage == EXEC_STAGE_CHDIR ? in->agent->conf->directory :
		    worker_path(in->agent->sup->cref->conf));
	}
	return 1;
}

static void
exec_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sup_inst *in = w->data;

	if (exec_read(in, in->pid))
		sup_spawn_close_exec(in);
}

void
sup_spawn_exec_reaped(struct sup_inst *in, pid_t pid)
{
	if (in->exec_fd >= 0)
		exec_read(in, pid);
	sup_spawn_close_exec(in);
}

void
sup_spawn_close_exec(struct sup_inst *in)
{
	if (in->exec_fd < 0)
		return;
	ev_io_stop(in->agent->sup->loop, &in->exec_io);
	close(in->exec_fd);
	in->exec_fd = -1;
}

/*
 * What the child needs, made before fork so that a failure costs no
 * process: its argv and environment, and the memory frame the link
 * queues right after.  0, or -1 (logged).
 */
static int
spawn_prepare(struct sup_inst *in, struct spawn_args *sa, char ***env,
    msgpack_sbuffer *sb)
{
	if ((*env = build_env(in->agent->conf)) == NULL) {
		log_warnx("agent=%s spawn: out of memory", in->label);
		return -1;
	}
	if (build_args(in, sa) == -1) {
		if (sa->fail == ARGS_NOMEM)
			log_warnx("agent=%s spawn: out of memory", in->label);
		else
			log_warnx("agent=%s spawn: command line too long",
			    in->label);
		return -1;
	}
	if (sup_mem_encode_frame(in->mem, in->agent->name, in->n, sb) == -1) {
		log_warnx("agent=%s spawn: cannot encode memory_v=%llu",
		    in->label, (unsigned long long)in->mem->v);
		return -1;
	}
	return 0;
}

/*
 * The worker pid was forked: the instance takes hived's ends of the exec
 * pipe (watched until EOF or a report) and of the socketpair (its link,
 * with the memory frame queued first).
 */
static void
spawn_started(struct sup_inst *in, pid_t pid, int exec_fd, int sock,
    const msgpack_sbuffer *sb)
{
	struct sup *sup = in->agent->sup;

	sup->nchildren++;
	in->pid = pid;
	in->spawned_at = in->last_hb = ev_now(sup->loop);
	in->ready_since = 0;
	in->hello = in->have_hb = 0;
	in->done = 0;

	fcntl(exec_fd, F_SETFL, O_NONBLOCK);
	in->exec_fd = exec_fd;
	ev_io_init(&in->exec_io, exec_io_cb, in->exec_fd, EV_READ);
	in->exec_io.data = in;
	ev_io_start(sup->loop, &in->exec_io);

	in->link = sup_link_new(in, sock);
	if (in->link == NULL ||
	    sup_link_send_raw(in->link, sb->data, sb->size) == -1) {
		/* The worker waits for its memory; without it, it is of no
		 * use: kill it, the reaper handles the rest like a crash. */
		log_warnx("agent=%s pid=%ld cannot queue the memory frame",
		    in->label, (long)pid);
		kill(pid, SIGKILL);
	}
}

int
sup_spawn(struct sup_inst *in)
{
	struct sup *sup = in->agent->sup;
	const struct hive_agent_conf *ac = in->agent->conf;
	struct spawn_args *sa = NULL;
	char **env = NULL;
	int sv[2] = { -1, -1 }, ep[2] = { -1, -1 }, rc = -1;
	sigset_t all, old;
	msgpack_sbuffer sb;
	pid_t pid;

	msgpack_sbuffer_init(&sb);
	if ((sa = calloc(1, sizeof(*sa))) == NULL) {
		log_warnx("agent=%s spawn: out of memory", in->label);
		goto out;
	}
	if (spawn_prepare(in, sa, &env, &sb) == -1)
		goto out;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("agent=%s socketpair", in->label);
		goto out;
	}
	if (pipe2(ep, O_CLOEXEC) == -1) {
		log_warn("agent=%s pipe", in->label);
		goto out;
	}
	/* Signals blocked across fork: the child must not run a handler of
	 * hived's before it has reset them. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		child(sv[1], ep[1], sup->devnull, &sup->nofile, ac->directory,
		    sa->argv, env);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid == -1) {
		log_warn("agent=%s fork", in->label);
		goto out;
	}
	close(sv[1]);
	close(ep[1]);
	sv[1] = ep[1] = -1;
	spawn_started(in, pid, ep[0], sv[0], &sb);
	ep[0] = sv[0] = -1;             /* the instance's now */
	rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		if (ep[i] >= 0)
			close(ep[i]);
	}
	msgpack_sbuffer_destroy(&sb);
	free(env);
	spawn_args_free(sa);
	return rc;
}

static int
pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return x < y ? -1 : x > y;
}

/* Append pid to *v (*n of *cap); -1 when out of memory. */
static int
pid_push(pid_t **v, size_t *n, size_t *cap, pid_t pid)
{
	pid_t *nv;

	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;

		if ((nv = reallocarray(*v, c, sizeof(**v))) == NULL)
			return -1;
		*v = nv;
		*cap = c;
	}
	(*v)[(*n)++] = pid;
	return 0;
}

/* hived's children, from /proc/self/task/<tid>/children ("12 34 "): a
 * malloc'd array of *n pids, or NULL (none, or it cannot be read). */
static pid_t *
spawn_children(size_t *n)
{
	char path[64], buf[4096];
	pid_t *v = NULL, pid = 0;
	size_t cap = 0;
	int fd, digits = 0;
	ssize_t r;

	*n = 0;
	snprintf(path, sizeof(path), "/proc/self/task/%ld/children",
	    (long)getpid());
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	while ((r = read(fd, buf, sizeof(buf))) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			break;
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] >= '0' && buf[i] <= '9') {
				pid = pid * 10 + (buf[i] - '0');
				digits = 1;
			} else if (digits) {
				if (pid_push(&v, n, &cap, pid) == -1)
					goto out;
				pid = 0;
				digits = 0;
			}
		}
	}
	if (digits)
		(void)pid_push(&v, n, &cap, pid);
out:
	close(fd);
	return v;
}

/*
 * Left behind.  A worker's handlers run in process groups of their own
 * (worker/spawn.c), so a kill of the worker's group (heartbeat deadline,
 * stop timeout, the restart-rate limit), or any other death of the
 * worker, leaves them running.  hived is a child subreaper (hived.c):
 * they become its children as the worker dies, before it is reaped.  So
 * once a worker is reaped, every child of hived that is not a worker was
 * left behind by one: it is killed with its process group (SIGKILL) and
 * reaped like any child.  Their pids cannot be reused meanwhile: they are
 * hived's unreaped children.  The list is searched only when it holds
 * more pids than hived has workers.
 */
static void
spawn_sweep(struct sup *sup)
{
	struct sup_agent *a;
	pid_t *v, *p;
	bool *worker = NULL;
	size_t n;

	if ((v = spawn_children(&n)) == NULL)
		return;
	/* Marked beside the sorted pids, not in them: a pid overwritten in
	 * place would unsort the array for the searches after it, and a
	 * worker not found would be killed as left behind. */
	if (n > sup->nchildren && (worker = calloc(n, sizeof(*worker))) != NULL) {
		qsort(v, n, sizeof(*v), pid_cmp);
		TAILQ_FOREACH(a, &sup->agents, entry)
			for (unsigned i = 0; i < a->ninst; i++)
				if (a->inst[i]->pid > 0 && (p = bsearch(
				    &a->inst[i]->pid, v, n, sizeof(*v),
				    pid_cmp)) != NULL)
					worker[p - v] = true;
		for (size_t i = 0; i < n; i++) {
			pid_t pg;

			if (v[i] <= 0 || worker[i])
				continue;
			log_info("pid=%ld left behind by a worker: killing it "
			    "with its process group", (long)v[i]);
			/* Its group, not just it: an orphan whose group
			 * leader (the handler) died first is a member, and
			 * members below it are not hived's children yet.
			 * Never hived's own group (none of a worker's is). */
			if ((pg = getpgid(v[i])) > 0 && pg != getpgrp())
				(void)kill(-pg, SIGKILL);
			(void)kill(v[i], SIGKILL);
		}
	}
	free(worker);
	free(v);
}

/*
 * The queue's turn: fork the next SUP_SPAWN_BATCH instances that still
 * want it.  One that left STARTING while it waited (put to sleep,
 * stopped) is dropped; if it comes back to STARTING it is queued anew.
 */
static void
spawn_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct sup *sup = w->data;
	struct sup_inst *in;
	unsigned n = 0;

	while (n < SUP_SPAWN_BATCH && (in = TAILQ_FIRST(&sup->spawnq)) != NULL) {
		sup_spawn_unqueue(in);
		if (in->fsm.state != SUP_ST_STARTING || in->pid != 0)
			continue;
		sup_inst_spawn(in);
		n++;
	}
}

/*
 * The idle watcher has the highest priority: libev runs an idle watcher
 * only in a turn where nothing of its priority or above is pending, and
 * at the default priority a steady flow of heartbeats from the workers
 * already started could starve the queue.  Every other event pending in
 * the turn is still served right after the batch.  While it is on, the
 * loop polls without sleeping, which is what a queue of forks wants.
 */
void
sup_spawn_init(struct sup *sup)
{
	TAILQ_INIT(&sup->spawnq);
	sup->nqueued = 0;
	ev_idle_init(&sup->spawn_idle, spawn_idle_cb);
	ev_set_priority(&sup->spawn_idle, EV_MAXPRI);
	sup->spawn_idle.data = sup;
}

void
sup_spawn_queue(struct sup_inst *in)
{
	struct sup *sup = in->agent->sup;

	if (in->queued)
		return;
	TAILQ_INSERT_TAIL(&sup->spawnq, in, spawnq);
	in->queued = 1;
	if (sup->nqueued++ == 0)
		ev_idle_start(sup->loop, &sup->spawn_idle);
}

void
sup_spawn_unqueue(struct sup_inst *in)
{
	struct sup *sup = in->agent->sup;

	if (!in->queued)
		return;
	TAILQ_REMOVE(&sup->spawnq, in, spawnq);
	in->queued = 0;
	if (--sup->nqueued == 0)
		ev_idle_stop(sup->loop, &sup->spawn_idle);
}

/*
 * The ev_child watcher for pid 0: libev reaps every child with waitpid(-1)
 * and hands each status here.  A pid that is not a worker (what a worker
 * left behind, see "Left behind") is logged and forgotten - reaped all
 * the same, so never a zombie.
 */
void
sup_spawn_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct sup *sup = w->data;
	struct sup_inst *in;

	if (!WIFEXITED(w->rstatus) && !WIFSIGNALED(w->rstatus))
		return;     /* stopped/continued: not an exit */
	in = sup_inst_by_pid(sup, w->rpid);
	if (in == NULL) {
		log_info("pid=%ld reaped status=0x%x (not a worker)",
		    (long)w->rpid, w->rstatus);
		return;
	}
	if (sup->nchildren > 0)
		sup->nchildren--;
	/* Before the exit is handled (it may start a new worker). */
	spawn_sweep(sup);
	sup_inst_exited(in, w->rstatus);
	sup_state_changed(sup);
}
