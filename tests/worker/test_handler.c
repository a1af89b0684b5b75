/*
 * test_handler.c - a handler for the worker's tests, steered by the task's
 * payload {"op": ...}:
 *
 *   echo       result = payload
 *   fail       an error ("asked to fail"; exec: on stderr, exit 3)
 *   die-once   attempt 1: SIGKILL itself; later attempts: ok
 *   gate       {"started": fifo, "release": fifo[, "first": true]}: say
 *              "started" on one fifo, wait for a byte on the other (or
 *              stdin EOF: the worker died), then answer; with "first"
 *              only attempt 1 waits; with "count": true, answer as count
 *   barrier    {"n": N[, "dir": D]}: answer only once N barrier tasks are
 *              in flight (stream: held here; exec: files in D)
 *   garbage    stream: print a line that is not JSON instead of answering
 *   fds        result = the fds open in this process
 *   count      memory.n + 1 as memory and result
 *   hold       stream: attempt 1 is never answered (the handler goes on
 *              reading); later attempts: echo
 *   pid        result = this process' pid
 *   line       result = the task line as read (every key, in its order)
 *   exit       exit 1 without answering (on every task)
 *   say        {"text": T, "n": N, "long": L, "last": T2, "fail": bool}:
 *              write T N times (default once) to stderr, each a line,
 *              then, with "long", a line of L 'x', then T2 (a line;
 *              without its newline in exec mode), then answer (echo,
 *              or fail with "fail")
 *   trace      result = {"traceparent": the task line's, "env": the
 *              environment's TRACEPARENT or null}
 *
 * With any op, a payload's "usage" is the answer's "usage".
 *
 * Usage: test_handler stream | exec [FIFO]
 *
 * With FIFO, at start it forks a child that stays in its process group
 * (holding the handler's stdout, stdin and stderr on /dev/null, pausing
 * until killed) and writes "PID CHILDPID\n"
 * to FIFO: the tests see whether the group outlives the handler.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

static int exec_mode;

static void
answer(json_t *task, const char *status, json_t *result, const char *error,
    json_t *memory)
{
	json_t *a = json_object();
	char *s;

	json_object_set(a, "id", json_object_get(task, "id"));
	json_object_set_new(a, "status", json_string(status));
	if (result)
		json_object_set(a, "result", result);
	if (error)
		json_object_set_new(a, "error", json_string(error));
	if (memory)
		json_object_set(a, "memory", memory);
	if (json_object_get(json_object_get(task, "payload"), "usage"))
		json_object_set(a, "usage", json_object_get(
		    json_object_get(task, "payload"), "usage"));
	if (exec_mode) {
		if (strcmp(status, "error") == 0) {
			fprintf(stderr, "%s\n", error);
			exit(3);
		}
		json_object_del(a, "id");
		json_object_del(a, "status");
	}
	s = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
	printf("%s\n", s);
	fflush(stdout);
	free(s);
	json_decref(a);
}

static json_t *
fds(void)
{
	json_t *arr = json_array();
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		json_array_append_new(arr, json_integer(atoi(e->d_name)));
	}
	if (d)
		closedir(d);
	return arr;
}

static void
gate(json_t *p)
{
	const char *started = json_string_value(json_object_get(p, "started"));
	const char *release = json_string_value(json_object_get(p, "release"));
	struct pollfd pfd[2];
	char c = '1';
	int rfd, sfd;

	/* O_RDWR: opening never blocks and the byte cannot get lost. */
	if ((rfd = open(release, O_RDWR)) == -1 ||
	    (sfd = open(started, O_WRONLY)) == -1)
		exit(9);
	if (write(sfd, &c, 1) != 1)
		exit(9);
	close(sfd);
	pfd[0].fd = rfd;
	pfd[0].events = POLLIN;
	pfd[1].fd = STDIN_FILENO;
	pfd[1].events = POLLIN;
	for (;;) {
		if (poll(pfd, 2, -1) == -1 && errno == EINTR)
			continue;
		if (pfd[0].revents & POLLIN) {
			if (read(rfd, &c, 1) != 1)
				exit(9);
			break;
		}
		if (pfd[1].revents & POLLHUP)
			exit(0);  /* the worker is gone */
		if (pfd[1].revents & POLLIN) {
			/* stream mode: more input; only EOF matters here */
			char b;
			if (read(STDIN_FILENO, &b, 1) == 0)
				exit(0);
		}
	}
	close(rfd);
}

static void
say(json_t *p)
{
	const char *text = json_string_value(json_object_get(p, "text"));
	const char *last = json_string_value(json_object_get(p, "last"));
	json_int_t n = json_integer_value(json_object_get(p, "n"));
	json_int_t len = json_integer_value(json_object_get(p, "long"));

	for (json_int_t i = 0; text != NULL && i < (n > 0 ? n : 1); i++)
		fprintf(stderr, "%s\n", text);
	for (json_int_t i = 0; i < len; i++)
		fputc('x', stderr);
	if (len > 0)
		fputc('\n', stderr);
	if (last != NULL)
		fprintf(stderr, "%s%s", last, exec_mode ? "" : "\n");
	fflush(stderr);
}

static json_t *held[64];
static int nheld;

/* memory.n + 1 as memory and result. */
static void
count(json_t *task)
{
	json_t *m = json_object_get(task, "memory");
	json_int_t n = json_integer_value(json_object_get(m, "n")) + 1;
	json_t *nm = json_pack("{s:I}", "n", n);
	json_t *r = json_integer(n);

	answer(task, "ok", r, NULL, nm);
	json_decref(nm);
	json_decref(r);
}

static void
run(json_t *task)
{
	json_t *p = json_object_get(task, "payload");
	const char *op = json_string_value(json_object_get(p, "op"));
	int attempt = (int)json_integer_value(json_object_get(task, "attempt"));

	if (op == NULL || strcmp(op, "echo") == 0) {
		answer(task, "ok", p, NULL, NULL);
	} else if (strcmp(op, "fail") == 0) {
		answer(task, "error", NULL, "asked to fail", NULL);
	} else if (strcmp(op, "die-once") == 0) {
		if (attempt == 1)
			raise(SIGKILL);
		answer(task, "ok", p, NULL, NULL);
	} else if (strcmp(op, "gate") == 0) {
		if (!json_is_true(json_object_get(p, "first")) || attempt == 1)
			gate(p);
		if (json_is_true(json_object_get(p, "count")))
			count(task);
		else
			answer(task, "ok", p, NULL, NULL);
	} else if (strcmp(op, "barrier") == 0) {
		int n = (int)json_integer_value(json_object_get(p, "n"));
		if (exec_mode) {
			const char *dir = json_string_value(json_object_get(p, "dir"));
			char path[4096];
			struct timespec ts = { 0, 5 * 1000 * 1000 };
			snprintf(path, sizeof(path), "%s/%s", dir,
			    json_string_value(json_object_get(task, "id")));
			close(open(path, O_CREAT | O_WRONLY, 0600));
			/* The handler may poll; the test itself never waits
			 * by time.  60 s: a guard, not a timing. */
			for (int i = 0; i < 12000; i++) {
				DIR *d = opendir(dir);
				int c = 0;
				while (d && readdir(d))
					c++;
				if (d)
					closedir(d);
				if (c - 2 >= n)
					break;
				nanosleep(&ts, NULL);
			}
			answer(task, "ok", p, NULL, NULL);
			return;
		}
		held[nheld++] = json_incref(task);
		if (nheld >= n) {
			for (int i = 0; i < nheld; i++) {
				answer(held[i], "ok", json_object_get(held[i],
				    "payload"), NULL, NULL);
				json_decref(held[i]);
			}
			nheld = 0;
		}
	} else if (strcmp(op, "garbage") == 0) {
		printf("this is not json\n");
		fflush(stdout);
	} else if (strcmp(op, "fds") == 0) {
		json_t *f = fds();
		answer(task, "ok", f, NULL, NULL);
		json_decref(f);
	} else if (strcmp(op, "hold") == 0) {
		if (attempt > 1)
			answer(task, "ok", p, NULL, NULL);
	} else if (strcmp(op, "pid") == 0) {
		json_t *r = json_integer((json_int_t)getpid());
		answer(task, "ok", r, NULL, NULL);
		json_decref(r);
	} else if (strcmp(op, "count") == 0) {
		count(task);
	} else if (strcmp(op, "line") == 0) {
		answer(task, "ok", task, NULL, NULL);
	} else if (strcmp(op, "exit") == 0) {
		exit(1);
	} else if (strcmp(op, "say") == 0) {
		say(p);
		if (json_is_true(json_object_get(p, "fail")))
			answer(task, "error", NULL, "asked to fail", NULL);
		else
			answer(task, "ok", p, NULL, NULL);
	} else if (strcmp(op, "trace") == 0) {
		const char *e = getenv("TRACEPARENT");
		json_t *r = json_pack("{s:O?,s:o}", "traceparent",
		    json_object_get(task, "traceparent"), "env",
		    e ? json_string(e) : json_null());

		answer(task, "ok", r, NULL, NULL);
		json_decref(r);
	} else {
		answer(task, "error", NULL, "unknown op", NULL);
	}
}

/* See the top: a child in our group, and both pids on fifo. */
static void
fork_child(const char *fifo)
{
	char buf[64];
	pid_t child;
	int fd, n;

	if ((child = fork()) == -1)
		exit(9);
	if (child == 0) {
		if ((fd = open("/dev/null", O_RDWR)) == -1)
			_exit(9);
		/* stdout stays: the handler's death then shows the worker
		 * no EOF, only its exit.  Not stderr: an orphan holding the
		 * test's stderr would keep the test run waiting for it. */
		dup2(fd, 0);
		dup2(fd, 2);
		for (;;)
			pause();
	}
	n = snprintf(buf, sizeof(buf), "%ld %ld\n", (long)getpid(),
	    (long)child);
	if ((fd = open(fifo, O_WRONLY)) == -1 || write(fd, buf, (size_t)n) != n)
		exit(9);
	close(fd);
}

int
main(int argc, char **argv)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	exec_mode = argc > 1 && strcmp(argv[1], "exec") == 0;
	if (argc > 2)
		fork_child(argv[2]);
	while ((n = getline(&line, &cap, stdin)) > 0) {
		json_t *task = json_loads(line, 0, NULL);
		if (task == NULL)
			return 8;
		run(task);
		json_decref(task);
		if (exec_mode)
			break;
	}
	free(line);
	return 0;
}
