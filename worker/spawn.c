/*
 * spawn.c - start a handler process.
 *
 * Every fd the worker opens is close-on-exec, so a handler inherits only
 * the stdio it is given here.  The child gets its own process group (a
 * timeout or a stop then reaches its children too), an empty signal mask
 * and default dispositions: libev blocks the signals it watches and the
 * worker ignores SIGPIPE, and neither may leak into the agent's program.
 *
 * "exec-report pipe": a close-on-exec pipe whose write end the child holds
 * across execvp.  A successful exec closes it, so the parent reads EOF; a
 * failed one writes errno there before _exit.  The parent's read blocks
 * only until the child has exec'd or failed, which is bounded by exec
 * itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

static void
close_pair(int p[2])
{
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	p[0] = p[1] = -1;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void __attribute__((noreturn))
spawn_child(char *const argv[], int in[2], int out[2], int err[2], int rep)
{
	struct sigaction sa;
	sigset_t none;
	int e, sig;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &sa, NULL);   /* EINVAL for KILL/STOP: fine */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);
	/* dup2 clears close-on-exec on the copy: exactly stdio survive. */
	if ((in[0] >= 0 && dup2(in[0], STDIN_FILENO) == -1) ||
	    (out[1] >= 0 && dup2(out[1], STDOUT_FILENO) == -1) ||
	    (err[1] >= 0 && dup2(err[1], STDERR_FILENO) == -1))
		goto fail;
	/* Our own fds are all close-on-exec; this is for those we were
	 * started with and did not open (a careless parent's).  Marked,
	 * not closed: the exec-report pipe must live until exec. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == -1)
		for (int fd = 3; fd < 4096; fd++)
			(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	execvp(argv[0], argv);
fail:
	e = errno;
	if (write(rep, &e, sizeof(e)) < 0) {
		/* nowhere to report it */
	}
	_exit(127);
}

pid_t
wrk_spawn(char *const argv[], int *in_fd, int *out_fd, int *err_fd)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	int rep[2] = { -1, -1 };
	int e = 0;
	ssize_t n;
	pid_t pid;

	if ((in_fd && pipe2(in, O_CLOEXEC) == -1) ||
	    (out_fd && pipe2(out, O_CLOEXEC) == -1) ||
	    (err_fd && pipe2(err, O_CLOEXEC) == -1) ||
	    pipe2(rep, O_CLOEXEC) == -1) {
		log_warn("pipe for handler %s", argv[0]);
		goto err;
	}
	if ((pid = fork()) == -1) {
		log_warn("fork for handler %s", argv[0]);
		goto err;
	}
	if (pid == 0) {
		close(rep[0]);
		spawn_child(argv, in, out, err, rep[1]);
	}
	/* Also here: the group must exist before anyone signals it. */
	(void)setpgid(pid, pid);
	close(rep[1]);
	rep[1] = -1;
	do
		n = read(rep[0], &e, sizeof(e));
	while (n == -1 && errno == EINTR);
	close(rep[0]);
	rep[0] = -1;
	if (n == (ssize_t)sizeof(e)) {
		/* The child has exited (_exit(127)); ev_child reaps it. */
		errno = e;
		log_warn("exec handler %s", argv[0]);
		goto err;
	}
	if (in_fd) {
		close(in[0]);
		fcntl(in[1], F_SETFL, O_NONBLOCK);
		*in_fd = in[1];
	}
	if (out_fd) {
		close(out[1]);
		fcntl(out[0], F_SETFL, O_NONBLOCK);
		*out_fd = out[0];
	}
	if (err_fd) {
		close(err[1]);
		fcntl(err[0], F_SETFL, O_NONBLOCK);
		*err_fd = err[0];
	}
	return pid;
err:
	close_pair(in);
	close_pair(out);
	close_pair(err);
	close_pair(rep);
	return -1;
}

uint64_t
wrk_rss_kb(pid_t pid)
{
	char path[64];
	unsigned long size, rss;
	FILE *f;
	int n;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/statm", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	n = fscanf(f, "%lu %lu", &size, &rss);
	fclose(f);
	if (n != 2)
		return 0;
	return (uint64_t)rss * ((uint64_t)sysconf(_SC_PAGESIZE) / 1024);
}
