/*
 * hived_proc.c - see hived_proc.h.
 */
#include "hived_proc.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hive_proto.h"
#include "testutil.h"

#define HP_MAX 8
static struct hp *started[HP_MAX]; /* every one of the test, for hp_cleanup */
static int nstarted;

/* The newest: hp_wait_pid_gone reads its log meanwhile. */
static struct hp *
newest(void)
{
	return nstarted > 0 ? started[nstarted - 1] : NULL;
}

static int
pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

struct hp *
hp_new(const char *tag)
{
	struct hp *h = calloc(1, sizeof(*h));
	const char *base = getenv("HIVE_TEST_TMP");
	char path[600];
	FILE *f;

	cr_assert(h != NULL);
	cr_assert(nstarted < HP_MAX, "more than %d hived in one test", HP_MAX);
	started[nstarted++] = h;
	h->logfd = -1;
	/* Orphaned workers (hived killed) come to us: we reap them. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	signal(SIGPIPE, SIG_IGN);
	tu_unique(h->prefix, sizeof(h->prefix), tag);
	snprintf(h->dir, sizeof(h->dir), "%s/hived-%s-XXXXXX",
	    base != NULL && *base ? base : "/tmp", h->prefix);
	cr_assert(mkdtemp(h->dir) != NULL, "mkdtemp %s: %s", h->dir,
	    strerror(errno));
	snprintf(h->conf, sizeof(h->conf), "%s/hive.conf", h->dir);
	snprintf(path, sizeof(path), "%s/token", h->dir);
	cr_assert((f = fopen(path, "w")) != NULL);
	fprintf(f, "%s\n", HP_TOKEN);
	fclose(f);
	/* As an operator keeps it: hived warns of one others may read. */
	cr_assert(chmod(path, 0600) == 0);
	return h;
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

/* Children of this process (direct, and orphans adopted as subreaper). */
static void
kill_children(void)
{
	char path[64], buf[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%ld/children",
	    (long)getpid());
	if ((fd = open(path, O_RDONLY)) == -1)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (char *s = buf, *e; *s; s = e) {
		long pid = strtol(s, &e, 10);

		if (e == s)
			break;
		if (pid > 0) {
			kill((pid_t)pid, SIGKILL);
			waitpid((pid_t)pid, NULL, 0);
		}
	}
}

static void
hp_cleanup_one(struct hp *h)
{
	if (h->pid > 0) {
		/* Gracefully first, so its workers are stopped by it. */
		kill(h->pid, SIGTERM);
		if (hp_wait_pid_gone(h->pid, 8000) == -1)
			kill(h->pid, SIGKILL);
		waitpid(h->pid, NULL, 0);
		h->pid = 0;
	}
	kill_children();
	if (h->logfd >= 0)
		close(h->logfd);
	if (h->dir[0] && getenv("HIVE_TEST_KEEP") == NULL)
		nftw(h->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(h->log);
	free(h);
}

void
hp_cleanup(void)
{
	/* Newest first, each the newest while it goes. */
	for (; nstarted > 0; nstarted--)
		hp_cleanup_one(started[nstarted - 1]);
}

static unsigned
free_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port;

	cr_assert(s >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(getsockname(s, (struct sockaddr *)&sa, &sl) == 0);
	port = ntohs(sa.sin_port);
	close(s);
	return port;
}

void
hp_write_conf(struct hp *h, const char *worker, const char *hive_extra,
    const char *agents)
{
	char tmp[700];
	FILE *f;
	const char *rhost = getenv("HIVE_TEST_REDIS_HOST");
	const char *rport = getenv("HIVE_TEST_REDIS_PORT");

	if (h->port == 0)
		h->port = free_port();
	snprintf(tmp, sizeof(tmp), "%s.tmp", h->conf);
	cr_assert((f = fopen(tmp, "w")) != NULL);
	fprintf(f,
	    "[hive]\n"
	    "redis = %s:%s\n"
	    "prefix = %s\n"
	    "worker = %s\n"
	    "http = 127.0.0.1:%u\n"
	    "token_file = %s/token\n"
	    "%s\n"
	    "%s",
	    rhost ? rhost : "127.0.0.1", rport ? rport : "6379", h->prefix,
	    worker, h->port, h->dir, hive_extra ? hive_extra : "",
	    agents ? agents : "");
	cr_assert(fclose(f) == 0);
	cr_assert(rename(tmp, h->conf) == 0);
}

void
hp_pump(struct hp *h, int ms)
{
	struct pollfd p = { h->logfd, POLLIN, 0 };
	char buf[65536];
	ssize_t n;

	if (h->logfd < 0)
		return;
	if (poll(&p, 1, ms) <= 0)
		return;
	while ((n = read(h->logfd, buf, sizeof(buf))) > 0) {
		if (h->len + (size_t)n + 1 > h->cap) {
			h->cap = (h->len + (size_t)n + 1) * 2;
			h->log = realloc(h->log, h->cap);
			cr_assert(h->log != NULL);
		}
		memcpy(h->log + h->len, buf, (size_t)n);
		h->len += (size_t)n;
		h->log[h->len] = '\0';
		if (getenv("HIVE_TEST_ECHO"))
			fwrite(buf, 1, (size_t)n, stderr);
	}
	if (n == 0) {
		/* hived and every worker closed stderr. */
		close(h->logfd);
		h->logfd = -1;
	}
}

size_t
hp_mark(struct hp *h)
{
	hp_pump(h, 0);
	return h->len;
}

static const char *
wait_v(struct hp *h, size_t *from, int timeout_ms, va_list ap, int must)
{
	static char line[4096];
	const char *needles[8];
	long long end = tu_now_ms() + timeout_ms;
	int nn = 0;
	const char *s;

	while (nn < 8 && (s = va_arg(ap, const char *)) != NULL)
		needles[nn++] = s;
	for (;;) {
		size_t off = *from;

		/* Whole lines only: a line still being written waits. */
		while (h->log != NULL && off < h->len) {
			const char *nl = memchr(h->log + off, '\n', h->len - off);
			size_t ll;
			int ok = 1;

			if (nl == NULL)
				break;
			ll = (size_t)(nl - (h->log + off));
			if (ll >= sizeof(line))
				ll = sizeof(line) - 1;
			memcpy(line, h->log + off, ll);
			line[ll] = '\0';
			off = (size_t)(nl - h->log) + 1;
			for (int i = 0; i < nn && ok; i++)
				ok = strstr(line, needles[i]) != NULL;
			if (ok) {
				*from = off;
				return line;
			}
		}
		if (tu_now_ms() >= end)
			break;
		if (h->logfd < 0 && off >= h->len)
			break;     /* nothing more will come */
		hp_pump(h, (int)(end - tu_now_ms()) > 0 ?
		    (int)(end - tu_now_ms()) : 0);
	}
	if (must) {
		size_t tail = h->len > 6000 ? h->len - 6000 : 0;

		cr_log_error("log tail:\n%s", h->log ? h->log + tail : "(empty)");
		cr_assert_fail("no log line with '%s'%s%s%s%s within %d ms",
		    needles[0], nn > 1 ? " and '" : "", nn > 1 ? needles[1] : "",
		    nn > 1 ? "'" : "", nn > 2 ? " and more" : "", timeout_ms);
	}
	return NULL;
}

const char *
hp_wait(struct hp *h, size_t *from, int timeout_ms, ...)
{
	const char *r;
	va_list ap;

	va_start(ap, timeout_ms);
	r = wait_v(h, from, timeout_ms, ap, 1);
	va_end(ap);
	return r;
}

const char *
hp_wait_try(struct hp *h, size_t *from, int timeout_ms, ...)
{
	const char *r;
	va_list ap;

	va_start(ap, timeout_ms);
	r = wait_v(h, from, timeout_ms, ap, 0);
	va_end(ap);
	return r;
}

long long
hp_field(const char *line, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	if ((p = strstr(line, pat)) == NULL)
		return -1;
	return strtoll(p + strlen(pat), NULL, 10);
}

void
hp_spawn(struct hp *h)
{
	char portfile[600], vflag[] = "-v", rundir[600], *slash;
	int fds[2];

	snprintf(portfile, sizeof(portfile), "%s/port", h->dir);
	/* The single-instance lock (main.c) beside the configuration: a test
	 * leaves no lock file behind, and two hived of one config meet. */
	snprintf(rundir, sizeof(rundir), "%s", h->conf);
	if ((slash = strrchr(rundir, '/')) != NULL)
		*slash = '\0';
	cr_assert(pipe2(fds, O_CLOEXEC) == 0);
	/* Room for bursts while the test is busy elsewhere. */
	fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
	h->pid = fork();
	cr_assert(h->pid >= 0);
	if (h->pid == 0) {
		const char *argv[] = { tu_build_path("supervisor/hived"), vflag,
		    "--config", h->conf, "--port-file", portfile, NULL };

		setenv("RUNTIME_DIRECTORY", rundir, 1);
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		tu_execv(argv);
	}
	close(fds[1]);
	h->logfd = fds[0];
	fcntl(h->logfd, F_SETFL, O_NONBLOCK);
}

void
hp_start(struct hp *h)
{
	char portfile[600];
	size_t from = 0;
	FILE *f;
	unsigned port = 0;

	snprintf(portfile, sizeof(portfile), "%s/port", h->dir);
	hp_spawn(h);
	hp_wait(h, &from, 15000, "started pid=", NULL);
	cr_assert((f = fopen(portfile, "r")) != NULL, "no port file");
	cr_assert(fscanf(f, "%u", &port) == 1);
	fclose(f);
	cr_assert_eq(port, h->port, "port file says %u, config %u", port,
	    h->port);
}

/* A blocking loopback request, the log pumped meanwhile. */
json_t *
hp_http(struct hp *h, const char *method, const char *path,
    const char *token, int *code)
{
	return hp_http_body(h, method, path, token,
	    strcmp(method, "POST") == 0 ? "" : NULL, code);
}

json_t *
hp_http_body(struct hp *h, const char *method, const char *path,
    const char *token, const char *body_in, int *code)
{
	struct sockaddr_in sa;
	char req[1024], clen[64], *resp = NULL, *body;
	size_t rlen = 0, rcap = 0;
	long long end = tu_now_ms() + 10000;
	json_t *j;
	int s;

	*code = 0;
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(s >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)h->port);
	cr_assert(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	    "connect to hived :%u: %s", h->port, strerror(errno));
	clen[0] = '\0';
	if (body_in != NULL)
		snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n",
		    strlen(body_in));
	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n%s%s%s%s\r\n", method, path,
	    token ? "Authorization: Bearer " : "", token ? token : "",
	    token ? "\r\n" : "", clen);
	cr_assert(write(s, req, strlen(req)) == (ssize_t)strlen(req));
	for (size_t off = 0, n = body_in != NULL ? strlen(body_in) : 0;
	    off < n;) {
		ssize_t w = write(s, body_in + off, n - off);

		if (w <= 0)
			break;         /* hived answered early and closed */
		off += (size_t)w;
	}
	for (;;) {
		struct pollfd p[2] = { { s, POLLIN, 0 }, { h->logfd, POLLIN, 0 } };
		char buf[8192];
		ssize_t n;

		cr_assert(tu_now_ms() < end, "no HTTP answer to %s %s", method,
		    path);
		if (poll(p, h->logfd >= 0 ? 2 : 1, 200) <= 0)
			continue;
		if (p[1].revents)
			hp_pump(h, 0);
		if (!p[0].revents)
			continue;
		n = read(s, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (rlen + (size_t)n + 1 > rcap) {
			rcap = (rlen + (size_t)n + 1) * 2;
			resp = realloc(resp, rcap);
		}
		memcpy(resp + rlen, buf, (size_t)n);
		rlen += (size_t)n;
		resp[rlen] = '\0';
	}
	close(s);
	cr_assert(resp != NULL, "empty HTTP answer to %s %s", method, path);
	cr_assert(sscanf(resp, "HTTP/1.%*d %d", code) == 1, "bad answer: %s",
	    resp);
	body = strstr(resp, "\r\n\r\n");
	j = body ? json_loads(body + 4, 0, NULL) : NULL;
	free(resp);
	return j;
}

json_t *
hp_agent(struct hp *h, const char *label)
{
	int code;
	json_t *all = hp_http(h, "GET", "/agents", NULL, &code), *arr, *it;
	size_t i;

	cr_assert_eq(code, 200);
	arr = json_object_get(all, "agents");
	json_array_foreach(arr, i, it) {
		if (strcmp(json_string_value(json_object_get(it, "agent")),
		    label) == 0) {
			json_incref(it);
			json_decref(all);
			return it;
		}
	}
	json_decref(all);
	cr_assert_fail("no agent %s in /agents", label);
	return NULL;
}

pid_t
hp_agent_pid(struct hp *h, const char *label)
{
	json_t *a = hp_agent(h, label);
	pid_t pid = (pid_t)json_integer_value(json_object_get(a, "pid"));

	json_decref(a);
	return pid;
}

const char *
hp_agent_state(struct hp *h, const char *label, char *buf, size_t len)
{
	json_t *a = hp_agent(h, label);

	snprintf(buf, len, "%s", json_string_value(json_object_get(a, "state")));
	json_decref(a);
	return buf;
}

int
hp_post(struct hp *h, const char *path)
{
	int code;
	json_t *j = hp_http(h, "POST", path, HP_TOKEN, &code);

	json_decref(j);
	return code;
}

void
hp_signal(struct hp *h, int sig)
{
	cr_assert(h->pid > 0);
	cr_assert(kill(h->pid, sig) == 0);
}

int
hp_wait_pid_gone(pid_t pid, int timeout_ms)
{
	int fd = pidfd_open_(pid);
	long long end = tu_now_ms() + timeout_ms;
	struct hp *cur = newest();
	int r = -1;

	if (fd == -1)
		return errno == ESRCH ? 0 : -1;
	for (;;) {
		struct pollfd p[2] = { { fd, POLLIN, 0 },
		    { cur && cur->logfd >= 0 ? cur->logfd : -1,
		    POLLIN, 0 } };
		long long left = end - tu_now_ms();

		if (left <= 0)
			break;
		if (poll(p, 2, (int)left) > 0) {
			if (p[1].revents && cur)
				hp_pump(cur, 0);
			if (p[0].revents) {
				r = 0;
				break;
			}
		}
	}
	close(fd);
	return r;
}

int
hp_wait_exit(struct hp *h, int timeout_ms)
{
	cr_assert(hp_wait_pid_gone(h->pid, timeout_ms) == 0,
	    "hived did not exit within %d ms", timeout_ms);
	cr_assert_eq(waitpid(h->pid, &h->status, 0), h->pid);
	h->pid = 0;
	hp_pump(h, 0);
	return h->status;
}

/* A task from its JSON payload, XADDed to agent's direct queue for
 * instance (a stand-in for a client). */
void
hp_submit_direct(redisContext *c, const char *prefix, const char *agent,
    unsigned instance, const char *id, const char *payload)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_loads(payload, 0, NULL);
	char key[HIVE_KEY_MAX];

	cr_assert(j != NULL);
	msgpack_zone_init(&z, 1024);
	msgpack_sbuffer_init(&sb);
	memset(&t, 0, sizeof(t));
	t.v = HIVE_PROTO_VERSION;
	t.id = HIVE_STR(id);
	t.attempt = 1;
	cr_assert_eq(proto_json_to_obj(j, &z, &t.payload, &err), 0);
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	cr_assert(proto_key_direct(key, sizeof(key), prefix, agent, instance) > 0);
	tu_xadd(c, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(j);
}
