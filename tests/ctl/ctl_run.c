/*
 * ctl_run.c - see ctl_run.h.
 */
#include "ctl_run.h"

#include <sys/wait.h>

#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hived_proc.h"
#include "testutil.h"

#define ARGS_MAX 32

static char *next_stdin;   /* ctl_run_stdin */

void
ctl_run_stdin(const char *text)
{
	free(next_stdin);
	next_stdin = text != NULL ? strdup(text) : NULL;
}

/* A file holding the text, open for reading (unlinked), or -1. */
static int
stdin_fd(void)
{
	char path[] = "/tmp/ctl-stdin-XXXXXX";
	int fd;

	if (next_stdin == NULL)
		return -1;
	cr_assert((fd = mkstemp(path)) >= 0);
	unlink(path);
	cr_assert(write(fd, next_stdin, strlen(next_stdin)) ==
	    (ssize_t)strlen(next_stdin));
	cr_assert(lseek(fd, 0, SEEK_SET) == 0);
	ctl_run_stdin(NULL);
	return fd;
}

struct sink {
	int fd;
	char *buf;
	size_t len;
};

/* Read what fd has; 0 at its end. */
static int
drain(struct sink *s)
{
	char tmp[8192];
	ssize_t n = read(s->fd, tmp, sizeof(tmp));

	if (n <= 0)
		return n == 0 ? 0 : 1;
	s->buf = realloc(s->buf, s->len + (size_t)n + 1);
	cr_assert(s->buf != NULL);
	memcpy(s->buf + s->len, tmp, (size_t)n);
	s->len += (size_t)n;
	s->buf[s->len] = '\0';
	return 1;
}

static int
run_v(struct ctl_run *r, struct hp *h, const char *const *env,
    const char *const *pre, va_list ap)
{
	const char *argv[ARGS_MAX];
	struct sink out = { -1, NULL, 0 }, err = { -1, NULL, 0 };
	long long end = tu_now_ms() + 60000;
	int po[2], pe[2], n = 0, st, in;
	const char *a;
	pid_t pid;

	ctl_run_free(r);
	argv[n++] = tu_build_path("ctl/hivectl");
	for (; pre != NULL && *pre != NULL; pre++)
		argv[n++] = *pre;
	while ((a = va_arg(ap, const char *)) != NULL) {
		cr_assert(n < ARGS_MAX - 1);
		argv[n++] = a;
	}
	argv[n] = NULL;
	cr_assert(pipe2(po, O_CLOEXEC) == 0 && pipe2(pe, O_CLOEXEC) == 0);
	in = stdin_fd();
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		unsetenv("HIVE_URL");
		unsetenv("HIVE_TOKEN_FILE");
		for (; env != NULL && *env != NULL; env++)
			putenv((char *)(uintptr_t)*env);
		if (in >= 0)
			dup2(in, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		tu_execv(argv);
	}
	if (in >= 0)
		close(in);
	close(po[1]);
	close(pe[1]);
	out.fd = po[0];
	err.fd = pe[0];
	while (out.fd >= 0 || err.fd >= 0) {
		struct pollfd p[3] = { { out.fd, POLLIN, 0 }, { err.fd, POLLIN, 0 },
		    { h != NULL ? h->logfd : -1, POLLIN, 0 } };

		cr_assert(tu_now_ms() < end, "hivectl %s ran past 60 s",
		    argv[1] ? argv[1] : "");
		if (poll(p, 3, 200) <= 0)
			continue;
		if (p[2].revents && h != NULL)
			hp_pump(h, 0);
		if (p[0].revents && drain(&out) == 0) {
			close(out.fd);
			out.fd = -1;
		}
		if (p[1].revents && drain(&err) == 0) {
			close(err.fd);
			err.fd = -1;
		}
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	r->out = out.buf ? out.buf : strdup("");
	r->err = err.buf ? err.buf : strdup("");
	r->code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	fprintf(stderr, "hivectl %s -> %d\nstdout: %s\nstderr: %s\n",
	    argv[1] ? argv[1] : "", r->code, r->out, r->err);
	return r->code;
}

int
ctl_run(struct ctl_run *r, struct hp *h, const char *const *env, ...)
{
	va_list ap;
	int rc;

	va_start(ap, env);
	rc = run_v(r, h, env, NULL, ap);
	va_end(ap);
	return rc;
}

int
ctl_run_h(struct ctl_run *r, struct hp *h, ...)
{
	static char url[64], tok[600];
	const char *pre[] = { "--url", url, "--token-file", tok, NULL };
	va_list ap;
	int rc;

	snprintf(url, sizeof(url), "http://127.0.0.1:%u", h->port);
	snprintf(tok, sizeof(tok), "%s/token", h->dir);
	va_start(ap, h);
	rc = run_v(r, h, NULL, pre, ap);
	va_end(ap);
	return rc;
}

json_t *
ctl_json(const struct ctl_run *r)
{
	json_error_t e;
	json_t *j = json_loads(r->out, 0, &e);

	cr_assert(j != NULL, "stdout is not one JSON document: %s (line %d)"
	    "\n%s", e.text, e.line, r->out);
	return j;
}

void
ctl_run_free(struct ctl_run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

/*
 * A GET is asked as it is: 404 or 405 (the path is another method's) mean
 * hived lacks it.  A POST is never made (it would act): its path is asked
 * with GET, and only a 404 means no route has that path.
 */
static int
probe(struct hp *h, const char *method, const char *path, int *code)
{
	json_t *j = hp_http(h, "GET", path, HP_TOKEN, code);

	json_decref(j);
	return !(*code == 404 || (strcmp(method, "GET") == 0 && *code == 405));
}

int
ctl_has(struct hp *h, const char *method, const char *path)
{
	int code;

	return probe(h, method, path, &code);
}

void
ctl_need(struct hp *h, const char *method, const char *path)
{
	int code;

	if (!probe(h, method, path, &code)) {
		/* A skipped test's .fini does not run: hived goes now. */
		hp_cleanup();
		cr_skip_test("%s %s is not in this hived yet (%d): its test "
		    "waits for the endpoint", method, path, code);
	}
}
