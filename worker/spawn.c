/*
 * spawn.c - start a handler process.
 *
 * Every fd the worker opens is close-on-exec, and the child closes every
 * fd above 2 before exec anyway (those of a careless parent too), so a
 * handler holds only the stdio it is given here.  The child gets its own
 * process group (a timeout or a stop then reaches its children too), an
 * empty signal mask and every signal at its default: libev blocks the
 * signals it watches and the worker ignores SIGPIPE, and neither may leak
 * into the agent's program.
 *
 * "posix_spawn, not fork": glibc's posix_spawnp starts the child with
 * clone(CLONE_VM | CLONE_VFORK): it runs in the worker's memory, on its
 * own stack, until exec, and the worker waits meanwhile.  So the worker's
 * address space is never copied (with fork, copying it and the
 * copy-on-write faults the worker then takes were a third of its time per
 * task in exec mode), and a failed exec comes back as posix_spawnp's
 * return value, which is what the close-on-exec "exec-report" pipe of a
 * fork+exec would tell (glibc reaps such a child itself).  The wait is
 * bounded by exec itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

extern char **environ;

static void
close_pair(int p[2])
{
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	p[0] = p[1] = -1;
}

/* Our end of a pipe: non-blocking; the child's end is closed here. */
static int
parent_end(int p[2], int ours)
{
	close(p[!ours]);
	p[!ours] = -1;
	(void)fcntl(p[ours], F_SETFL, O_NONBLOCK);
	return p[ours];
}

pid_t
wrk_spawn(char *const argv[], int *in_fd, int *out_fd, int *err_fd)
{
	return wrk_spawn_env(argv, environ, in_fd, out_fd, err_fd);
}

pid_t
wrk_spawn_env(char *const argv[], char *const envp[], int *in_fd,
    int *out_fd, int *err_fd)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t all, none;
	pid_t pid = -1;
	int e;

	if ((in_fd && pipe2(in, O_CLOEXEC) == -1) ||
	    (out_fd && pipe2(out, O_CLOEXEC) == -1) ||
	    (err_fd && pipe2(err, O_CLOEXEC) == -1)) {
		log_warn("pipe for handler %s", argv[0]);
		goto err;
	}
	if ((e = posix_spawn_file_actions_init(&fa)) != 0)
		goto err_e;
	if ((e = posix_spawnattr_init(&at)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		goto err_e;
	}
	sigfillset(&all);
	sigemptyset(&none);
	/* dup2 clears close-on-exec on the copy: exactly stdio survive. */
	if ((in_fd && (e = posix_spawn_file_actions_adddup2(&fa, in[0],
	    STDIN_FILENO)) != 0) ||
	    (out_fd && (e = posix_spawn_file_actions_adddup2(&fa, out[1],
	    STDOUT_FILENO)) != 0) ||
	    (err_fd && (e = posix_spawn_file_actions_adddup2(&fa, err[1],
	    STDERR_FILENO)) != 0) ||
	    (e = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) != 0 ||
	    (e = posix_spawnattr_setsigdefault(&at, &all)) != 0 ||
	    (e = posix_spawnattr_setsigmask(&at, &none)) != 0 ||
	    (e = posix_spawnattr_setpgroup(&at, 0)) != 0 ||
	    (e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)) != 0) {
		/* e says why */
	} else {
		/* Returns once the child has exec'd, or with why it could
		 * not (ENOENT, EACCES...). */
		e = posix_spawnp(&pid, argv[0], &fa, &at, argv, envp);
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (e != 0)
		goto err_e;
	if (in_fd)
		*in_fd = parent_end(in, 1);
	if (out_fd)
		*out_fd = parent_end(out, 0);
	if (err_fd)
		*err_fd = parent_end(err, 0);
	return pid;
err_e:
	errno = e;
	log_warn("start handler %s", argv[0]);    /* keeps errno */
err:
	e = errno;
	close_pair(in);
	close_pair(out);
	close_pair(err);
	errno = e;
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
