/*
 * test_valgrind.c - hived and its hive-workers under valgrind memcheck.
 *
 * One short scenario on real processes, against the private Redis and
 * PostgreSQL that scripts/test started:
 *
 *   valgrind hived  --trace-children-->  valgrind hive-worker  (2 agents)
 *                                           |
 *                                        handler (native: skipped)
 *
 *   1. start hived under memcheck with two agents: the C echo handler
 *      (examples/hive-echo) in stream mode, examples/shout.sh in exec mode;
 *   2. submit tasks to both and wait for every result, a failing task
 *      and a message that is no task (a dead letter) among them;
 *   3. walk the HTTP API, errors included;
 *   4. SIGHUP with a broken config (refused), then with a second shout
 *      instance (started); restart that one over HTTP; SIGUSR1;
 *   5. SIGKILL the echo worker, wait for its replacement, run a task on it
 *      and one on the new shout; wait for the recorder to have every task
 *      completed in PostgreSQL (hived's own database, when scripts/test
 *      runs PostgreSQL: HIVE_TEST_PG);
 *   6. SIGTERM hived: it must exit 0 (valgrind's --error-exitcode is 99);
 *   7. read every valgrind log (one per process, vg.<pid>.log): no error,
 *      nothing definitely or indirectly lost, in hived and in every worker.
 *
 * HIVE_TEST_KEEP=1 keeps the directory (the logs) in $HIVE_TEST_TMP.
 *
 * Handlers are not checked (--trace-children-skip): they are the agents'
 * programs, not Hive.  A worker killed with SIGKILL leaves a log without a
 * summary; it must still hold no error.
 *
 * Not Criterion: meson's "skip" is exit status 77, and this program is
 * one sequence anyway.  Every wait is for an event (a log line on hived's
 * stderr pipe, an XREAD BLOCK answer, a pidfd); the deadlines are failure
 * guards sized for valgrind on a loaded 2-core machine.  Whatever happens,
 * every process started here is killed by PID and reaped (this process is
 * a child subreaper, so orphaned workers come to it).
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

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
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "hive_proto.h"

#define VG_TOKEN     "vg-token-0123456789"
#define VG_NTASKS    25          /* per agent */
#define VG_T_START   30000       /* hived up, a worker ready (ms) */
#define VG_T_WORK    40000       /* every result in */
#define VG_T_EXIT    30000       /* hived gone after SIGTERM */

static struct {
	char dir[512];
	char prefix[64];
	pid_t pid;              /* hived (under valgrind); 0 once reaped */
	int logfd;              /* hived's stderr and its workers' */
	char *log;
	size_t len, cap;
	unsigned port;
	redisContext *rc;
	char db[64];            /* its own PostgreSQL database, "" when none */
	char pg[600];           /* hived's connection string to it */
	long long t0;
} vg = { .logfd = -1 };

static void vg_cleanup(void);

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "valgrind [%5.1fs] ", (now_ms() - vg.t0) / 1000.);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The test failed: say why, show hived's log tail, clean up, exit 1. */
static void __attribute__((format(printf, 1, 2), noreturn))
fail(const char *fmt, ...)
{
	va_list ap;
	size_t tail;

	fprintf(stderr, "valgrind: FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (vg.log != NULL) {
		tail = vg.len > 8000 ? vg.len - 8000 : 0;
		fprintf(stderr, "---- hived log (tail) ----\n%s\n----\n",
		    vg.log + tail);
	}
	vg_cleanup();
	exit(1);
}

#define CHECK(cond, ...) do {                                           \
	if (!(cond))                                                    \
		fail(__VA_ARGS__);                                      \
} while (0)

static const char *
need_env(const char *name)
{
	const char *v = getenv(name);

	CHECK(v != NULL && *v != '\0', "%s is not set: run the suite with "
	    "./scripts/test, which starts the private services", name);
	return v;
}

/* ---- hived's log: a pipe read as it fills, waited on by poll ---- */

static void
log_pump(int ms)
{
	struct pollfd p = { vg.logfd, POLLIN, 0 };
	char buf[65536];
	ssize_t n;

	if (vg.logfd < 0 || poll(&p, 1, ms) <= 0)
		return;
	while ((n = read(vg.logfd, buf, sizeof(buf))) > 0) {
		if (vg.len + (size_t)n + 1 > vg.cap) {
			vg.cap = (vg.len + (size_t)n + 1) * 2;
			CHECK((vg.log = realloc(vg.log, vg.cap)) != NULL, "oom");
		}
		memcpy(vg.log + vg.len, buf, (size_t)n);
		vg.len += (size_t)n;
		vg.log[vg.len] = '\0';
		if (getenv("HIVE_TEST_ECHO") != NULL)
			fwrite(buf, 1, (size_t)n, stderr);
	}
	if (n == 0) {            /* hived and every worker closed stderr */
		close(vg.logfd);
		vg.logfd = -1;
	}
}

/*
 * Wait for a whole log line after *from holding every needle (NULL-ended);
 * fails after timeout_ms.  *from moves past it; the line is returned in a
 * static buffer.
 */
static const char * __attribute__((sentinel))
log_wait(size_t *from, int timeout_ms, ...)
{
	static char line[4096];
	const char *needles[8], *s;
	long long end = now_ms() + timeout_ms;
	va_list ap;
	int nn = 0;

	va_start(ap, timeout_ms);
	while (nn < 8 && (s = va_arg(ap, const char *)) != NULL)
		needles[nn++] = s;
	va_end(ap);
	for (;;) {
		size_t off = *from;

		while (vg.log != NULL && off < vg.len) {
			const char *nl = memchr(vg.log + off, '\n', vg.len - off);
			size_t ll;
			int ok = 1;

			if (nl == NULL)
				break;
			ll = (size_t)(nl - (vg.log + off));
			if (ll >= sizeof(line))
				ll = sizeof(line) - 1;
			memcpy(line, vg.log + off, ll);
			line[ll] = '\0';
			off = (size_t)(nl - vg.log) + 1;
			for (int i = 0; i < nn && ok; i++)
				ok = strstr(line, needles[i]) != NULL;
			if (ok) {
				*from = off;
				return line;
			}
		}
		if (now_ms() >= end || (vg.logfd < 0 && off >= vg.len))
			break;
		log_pump((int)(end - now_ms()));
	}
	fail("no log line with '%s'%s%s within %d ms", needles[0],
	    nn > 1 ? " and " : "", nn > 1 ? needles[1] : "", timeout_ms);
}

static long long
field(const char *line, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	if ((p = strstr(line, pat)) == NULL)
		return -1;
	return strtoll(p + strlen(pat), NULL, 10);
}

/* "agent=LABEL pid=P ... state=ready" with P != not_pid: returns P. */
static pid_t
wait_ready(size_t *from, const char *label, pid_t not_pid)
{
	char needle[128];

	snprintf(needle, sizeof(needle), "agent=%s pid=", label);
	for (;;) {
		const char *l = log_wait(from, VG_T_START, needle, " state=ready",
		    NULL);
		pid_t pid = (pid_t)field(l, "pid");

		if (pid > 0 && pid != not_pid)
			return pid;
	}
}

/* ---- processes ---- */

static int
pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Wait for pid (any process) to end, reading the log meanwhile: 0 or -1. */
static int
wait_gone(pid_t pid, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;
	int fd = pidfd_open_(pid), r = -1;

	if (fd == -1)
		return errno == ESRCH ? 0 : -1;
	while (now_ms() < end) {
		struct pollfd p[2] = { { fd, POLLIN, 0 }, { vg.logfd, POLLIN, 0 } };

		if (poll(p, vg.logfd >= 0 ? 2 : 1, (int)(end - now_ms())) <= 0)
			continue;
		if (vg.logfd >= 0 && p[1].revents)
			log_pump(0);
		if (p[0].revents) {
			r = 0;
			break;
		}
	}
	close(fd);
	return r;
}

/* Kill and reap our children (direct ones and adopted orphans), by PID. */
static void
kill_children(void)
{
	char path[64], buf[8192];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%ld/children",
	    (long)getpid());
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
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

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

/* ---- PostgreSQL: hived's record ---- */

/* One statement on its own connection: the result (NULL if none). */
static PGresult *
sql_exec(const char *ci, const char *sql)
{
	PGconn *c;
	PGresult *res = NULL;

	if (ci == NULL || *ci == '\0')
		return NULL;
	c = PQconnectdb(ci);
	if (PQstatus(c) == CONNECTION_OK)
		res = PQexec(c, sql);
	PQfinish(c);
	return res;
}

/* A number from hived's database, -1 if it cannot be read (yet). */
static long
sql_scalar(const char *sql)
{
	PGresult *res = sql_exec(vg.pg, sql);
	long v = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		v = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

/*
 * Wait until sql says want.  The recorder writes in batches and tells
 * nobody, so this polls, with hived's log as the pause: it returns at
 * once when a line comes, which is when something happened.
 */
static void
sql_wait(const char *sql, long want)
{
	long long end = now_ms() + VG_T_WORK;
	long got = -1;

	while (now_ms() < end) {
		if ((got = sql_scalar(sql)) == want)
			return;
		log_pump(100);
	}
	fail("%s: %ld, want %ld", sql, got, want);
}

/* Its own database for hived when scripts/test runs PostgreSQL. */
static void
pg_setup(void)
{
	const char *admin = getenv("HIVE_TEST_PG");
	char sql[128];
	PGresult *res;

	if (admin == NULL || *admin == '\0')
		return;
	snprintf(vg.db, sizeof(vg.db), "vg_%ld", (long)getpid());
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", vg.db);
	res = sql_exec(admin, sql);
	CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql,
	    res != NULL ? PQresultErrorMessage(res) : "cannot connect");
	PQclear(res);
	snprintf(vg.pg, sizeof(vg.pg), "%s dbname=%s", admin, vg.db);
}

static void
vg_cleanup(void)
{
	if (vg.pid > 0) {
		kill(vg.pid, SIGKILL);
		waitpid(vg.pid, NULL, 0);
		vg.pid = 0;
	}
	/* Twice: killing a worker may orphan its handler to us meanwhile. */
	kill_children();
	kill_children();
	if (vg.rc != NULL) {
		redisFree(vg.rc);
		vg.rc = NULL;
	}
	if (vg.logfd >= 0) {
		close(vg.logfd);
		vg.logfd = -1;
	}
	if (vg.db[0] != '\0') {
		char sql[128];

		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", vg.db);
		vg.db[0] = '\0';
		PQclear(sql_exec(getenv("HIVE_TEST_PG"), sql));
	}
	if (vg.dir[0] != '\0' && getenv("HIVE_TEST_KEEP") == NULL)
		nftw(vg.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(vg.log);
	vg.log = NULL;
}

/* ---- set-up ---- */

/* Written to a temporary name, then renamed: hived never reads half. */
static void
write_file(const char *path, const char *text)
{
	char tmp[700];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	CHECK((f = fopen(tmp, "w")) != NULL, "%s: %s", tmp, strerror(errno));
	fputs(text, f);
	CHECK(fclose(f) == 0, "%s: %s", tmp, strerror(errno));
	CHECK(rename(tmp, path) == 0, "%s: %s", path, strerror(errno));
}

/* The config with shout_n instances of shout; "broken" repeats a key. */
static void
write_conf(const char *conf, unsigned shout_n, int broken)
{
	const char *build = need_env("HIVE_BUILD_DIR");
	const char *src = need_env("HIVE_SOURCE_DIR");
	char text[4096], path[600];

	snprintf(path, sizeof(path), "%s/token", vg.dir);
	write_file(path, VG_TOKEN "\n");
	/*
	 * Deadlines far above what valgrind's slowdown needs: a worker must
	 * never be killed for being slow here, only by the test.
	 */
	snprintf(text, sizeof(text),
	    "[hive]\n"
	    "redis = %s:%s\n"
	    "prefix = %s\n"
	    "worker = %s/worker/hive-worker\n"
	    "http = 127.0.0.1:0\n"
	    "token_file = %s/token\n"
	    "heartbeat_interval = 500ms\n"
	    "stop_timeout = 20s\n"
	    "postgres = %s\n"
	    "\n"
	    "[agent \"echo\"]\n"
	    "command = %s/examples/hive-echo\n"
	    "mode = stream\n"
	    "concurrency = 4\n"
	    "heartbeat_deadline = 60s\n"
	    "\n"
	    "[agent \"shout\"]\n"
	    "command = /bin/sh %s/examples/shout.sh\n"
	    "mode = exec\n"
	    "instances = %u\n"
	    "concurrency = 2\n"
	    "heartbeat_deadline = 60s\n"
	    "%s",
	    need_env("HIVE_TEST_REDIS_HOST"), need_env("HIVE_TEST_REDIS_PORT"),
	    vg.prefix, build, vg.dir, vg.pg, build, src, shout_n,
	    broken ? "instances = many\n" : "");
	write_file(conf, text);
}

/* Start valgrind hived; returns once it listens (the port is known). */
static void
start_hived(const char *valgrind, const char *conf)
{
	const char *build = need_env("HIVE_BUILD_DIR");
	char hived[600], logopt[600], portfile[600];
	size_t from = 0;
	int fds[2];
	FILE *f;

	snprintf(hived, sizeof(hived), "%s/supervisor/hived", build);
	snprintf(logopt, sizeof(logopt), "--log-file=%s/vg.%%p.log", vg.dir);
	snprintf(portfile, sizeof(portfile), "%s/port", vg.dir);
	CHECK(pipe2(fds, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
	fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
	CHECK((vg.pid = fork()) >= 0, "fork: %s", strerror(errno));
	if (vg.pid == 0) {
		/* Handlers are the agents' programs: not traced. */
		const char *argv[] = { valgrind, "--tool=memcheck",
		    "--leak-check=full",
		    "--show-leak-kinds=definite,indirect",
		    "--errors-for-leak-kinds=definite,indirect",
		    "--error-exitcode=99", "--trace-children=yes",
		    "--trace-children-skip=*python*,/bin/*,/usr/bin/*,"
		    "*/hive-echo",
		    "--child-silent-after-fork=no", logopt,
		    hived, "-v", "--config", conf, "--port-file", portfile,
		    NULL };

		/* Should this test die, hived goes too (its workers follow). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		/* execv's argv is char *const[] for history's sake; it
		 * writes nothing, so a const one goes through a union. */
		union { const char *const *c; char *const *v; } av = { argv };

		execv(argv[0], av.v);
		_exit(127);
	}
	close(fds[1]);
	vg.logfd = fds[0];
	fcntl(vg.logfd, F_SETFL, O_NONBLOCK);
	log_wait(&from, VG_T_START, "started pid=", NULL);
	CHECK((f = fopen(portfile, "r")) != NULL, "no port file %s", portfile);
	CHECK(fscanf(f, "%u", &vg.port) == 1, "bad port file");
	fclose(f);
}

/* ---- HTTP: one blocking loopback request, the log read meanwhile ---- */

/* A connected socket to hived's HTTP port. */
static int
http_connect(void)
{
	struct sockaddr_in sa;
	int s;

	CHECK((s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0,
	    "socket: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)vg.port);
	CHECK(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	    "connect to hived :%u: %s", vg.port, strerror(errno));
	return s;
}

/* Send req (len bytes, whole) and read the answer up to EOF. */
static json_t *
http_raw(const char *req, size_t len, int *code)
{
	char *resp = NULL, *body;
	size_t rlen = 0, rcap = 0;
	long long end = now_ms() + 20000;
	json_t *j;
	int s = http_connect();

	*code = 0;
	CHECK(write(s, req, len) == (ssize_t)len, "write: %s", strerror(errno));
	for (;;) {
		struct pollfd p[2] = { { s, POLLIN, 0 }, { vg.logfd, POLLIN, 0 } };
		char buf[8192];
		ssize_t n;

		CHECK(now_ms() < end, "no HTTP answer to %.40s", req);
		if (poll(p, vg.logfd >= 0 ? 2 : 1, (int)(end - now_ms())) <= 0)
			continue;
		if (vg.logfd >= 0 && p[1].revents)
			log_pump(0);
		if (!p[0].revents)
			continue;
		if ((n = read(s, buf, sizeof(buf))) <= 0)
			break;
		if (rlen + (size_t)n + 1 > rcap) {
			rcap = (rlen + (size_t)n + 1) * 2;
			CHECK((resp = realloc(resp, rcap)) != NULL, "oom");
		}
		memcpy(resp + rlen, buf, (size_t)n);
		rlen += (size_t)n;
		resp[rlen] = '\0';
	}
	close(s);
	CHECK(resp != NULL, "empty HTTP answer to %.40s", req);
	CHECK(sscanf(resp, "HTTP/1.%*d %d", code) == 1, "bad answer: %s", resp);
	body = strstr(resp, "\r\n\r\n");
	j = body != NULL ? json_loads(body + 4, 0, NULL) : NULL;
	free(resp);
	return j;
}

static json_t *
http(const char *method, const char *path, const char *token, int *code)
{
	char req[1024];

	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n%s%s%s%s\r\n", method, path,
	    token ? "Authorization: Bearer " : "", token ? token : "",
	    token ? "\r\n" : "",
	    strcmp(method, "POST") == 0 ? "Content-Length: 0\r\n" : "");
	return http_raw(req, strlen(req), code);
}

/* POST path with a body: by Content-Length, or chunked in 1000s; the status. */
static int
http_post_body(const char *path, size_t len, int chunked)
{
	size_t sent = len <= 4096 || chunked ? len : 0;
	char *req = malloc(sent + sent / 1000 * 16 + 1024), *p;
	int code;

	CHECK(req != NULL, "oom");
	p = req + sprintf(req, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\nAuthorization: Bearer " VG_TOKEN "\r\n", path);
	if (!chunked) {
		/* Over 4 KiB hived answers at once: sending the body anyway
		 * would make its close a reset, which may eat the answer. */
		p += sprintf(p, "Content-Length: %zu\r\n\r\n", len);
		if (len <= 4096) {
			memset(p, 'x', len);
			p += len;
		}
	} else {
		p += sprintf(p, "Transfer-Encoding: chunked\r\n\r\n");
		for (size_t left = len, n; left > 0; left -= n) {
			n = left < 1000 ? left : 1000;
			p += sprintf(p, "%zx\r\n", n);
			memset(p, 'x', n);
			p += n;
			p += sprintf(p, "\r\n");
		}
		p += sprintf(p, "0\r\n\r\n");
	}
	json_decref(http_raw(req, (size_t)(p - req), &code));
	free(req);
	return code;
}

static void
http_expect(const char *method, const char *path, const char *token,
    int want)
{
	int code;
	json_t *j = http(method, path, token, &code);

	CHECK(code == want, "%s %s: status %d, want %d", method, path, code,
	    want);
	CHECK(j != NULL && json_is_object(j), "%s %s: no JSON object", method,
	    path);
	if (code >= 400)
		CHECK(json_is_string(json_object_get(json_object_get(j,
		    "error"), "message")) && json_is_string(json_object_get(
		    json_object_get(j, "error"), "code")),
		    "%s %s: no error code and message", method, path);
	json_decref(j);
}

/* ---- Redis: tasks in, results out ---- */

static void
submit(const char *agent, unsigned instance, const char *id, const char *text)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	char key[HIVE_KEY_MAX];
	redisReply *r;

	memset(&t, 0, sizeof(t));
	t.v = HIVE_PROTO_VERSION;
	t.id = HIVE_STR(id);
	t.attempt = 1;
	t.payload.type = MSGPACK_OBJECT_STR;
	t.payload.via.str.ptr = text;
	t.payload.via.str.size = (uint32_t)strlen(text);
	msgpack_sbuffer_init(&sb);
	CHECK(proto_encode_task(&sb, &t, &err) == 0, "encode task %s", id);
	CHECK(proto_key_direct(key, sizeof(key), vg.prefix, agent, instance) > 0,
	    "key");
	r = redisCommand(vg.rc, "XADD %s * m %b", key, sb.data, sb.size);
	CHECK(r != NULL && r->type == REDIS_REPLY_STRING, "XADD %s: %s", key,
	    r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : vg.rc->errstr);
	freeReplyObject(r);
	msgpack_sbuffer_destroy(&sb);
}

/* Task "eN" / "sN" has the payload "task N"; shout answers in capitals. */
static void
expect_result(const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s", id[0] == 's' ? "TASK" : "task", id + 1);
}

/*
 * Read <prefix>:results from last on until n results came, each "ok" with
 * the result expect_result(id), but for ids "f...", which must have
 * failed.  last moves on.
 */
static void
collect(char *last, size_t lastlen, int n)
{
	char key[HIVE_KEY_MAX];
	long long end = now_ms() + VG_T_WORK;
	int got = 0;

	CHECK(proto_key_named(key, sizeof(key), vg.prefix, "results") > 0,
	    "key");
	while (got < n) {
		redisReply *r, *ents;

		CHECK(now_ms() < end, "%d of %d results within %d ms", got, n,
		    VG_T_WORK);
		r = redisCommand(vg.rc, "XREAD COUNT 100 BLOCK 500 STREAMS %s %s",
		    key, last);
		log_pump(0);
		CHECK(r != NULL, "XREAD: %s", vg.rc->errstr);
		if (r->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			continue;
		}
		ents = r->element[0]->element[1];
		for (size_t i = 0; i < ents->elements; i++) {
			redisReply *e = ents->element[i], *fv = e->element[1];
			struct hive_result res;
			struct proto_err err;
			char id[HIVE_ID_MAX + 1], want[HIVE_ID_MAX + 8];

			snprintf(last, lastlen, "%s", e->element[0]->str);
			CHECK(fv->elements == 2 && proto_decode_result(
			    fv->element[1]->str, fv->element[1]->len, &res,
			    &err) == 0, "undecodable result %s", last);
			snprintf(id, sizeof(id), "%.*s", (int)res.id.len,
			    res.id.ptr);
			if (id[0] == 'f') {      /* meant to fail */
				CHECK(res.status == HIVE_STATUS_ERROR &&
				    res.error.len > 0, "task %s did not fail", id);
				proto_result_clear(&res);
				got++;
				continue;
			}
			CHECK(res.status == HIVE_STATUS_OK, "task %s: %.*s", id,
			    (int)res.error.len, res.error.ptr);
			expect_result(id, want, sizeof(want));
			CHECK(res.result.type == MSGPACK_OBJECT_STR &&
			    res.result.via.str.size == strlen(want) &&
			    memcmp(res.result.via.str.ptr, want,
			    strlen(want)) == 0, "task %s: wrong result", id);
			proto_result_clear(&res);
			got++;
		}
		freeReplyObject(r);
	}
}

/* Bytes that are no task on agent's queue: they must reach <prefix>:dead. */
static void
submit_garbage_to_dead(const char *agent)
{
	char key[HIVE_KEY_MAX], dead[HIVE_KEY_MAX];
	long long end = now_ms() + VG_T_WORK;
	redisReply *r;

	CHECK(proto_key_direct(key, sizeof(key), vg.prefix, agent, 1) > 0 &&
	    proto_key_named(dead, sizeof(dead), vg.prefix, "dead") > 0, "key");
	r = redisCommand(vg.rc, "XADD %s * m %b", key, "\xc1garbage", (size_t)8);
	CHECK(r != NULL && r->type == REDIS_REPLY_STRING, "XADD %s", key);
	freeReplyObject(r);
	for (;;) {
		CHECK(now_ms() < end, "nothing in %s within %d ms", dead,
		    VG_T_WORK);
		r = redisCommand(vg.rc, "XREAD COUNT 1 BLOCK 500 STREAMS %s 0-0",
		    dead);
		log_pump(0);
		CHECK(r != NULL, "XREAD: %s", vg.rc->errstr);
		if (r->type == REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			return;
		}
		freeReplyObject(r);
	}
}

static void
submit_pair(int i, unsigned shout_instance)
{
	char id[16], text[32];

	snprintf(text, sizeof(text), "task %d", i);
	snprintf(id, sizeof(id), "e%d", i);
	submit("echo", 1, id, text);
	snprintf(id, sizeof(id), "s%d", i);
	submit("shout", shout_instance, id, text);
}

/* ---- valgrind's logs ---- */

struct vg_tally {
	int logs, summaries, hived, workers, bad;
};

static long long
after(const char *text, const char *needle)
{
	const char *p = strstr(text, needle);
	char digits[32];
	size_t n = 0;

	if (p == NULL)
		return -1;
	/* "definitely lost: 1,234 bytes": valgrind groups thousands. */
	for (p += strlen(needle); *p == ' '; p++)
		;
	for (; (*p >= '0' && *p <= '9') || *p == ','; p++)
		if (*p != ',' && n < sizeof(digits) - 1)
			digits[n++] = *p;
	digits[n] = '\0';
	return n > 0 ? strtoll(digits, NULL, 10) : -1;
}

/*
 * One log: a stack trace ("   at 0x", "   by 0x") is an error or a leak
 * record of a kind we count; a summary must say 0 errors and nothing
 * definitely or indirectly lost.  A log without a summary is a process
 * that exec'd a skipped handler or was killed.
 */
static void
check_log(const char *path, struct vg_tally *t)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t cap = 0, len;
	long long errs, def, ind;
	int bad = 0, is_hived, is_worker;

	CHECK(f != NULL, "%s: %s", path, strerror(errno));
	len = getdelim(&text, &cap, '\0', f) > 0 ? strlen(text) : 0;
	fclose(f);
	if (text == NULL)
		return;
	t->logs++;
	is_hived = strstr(text, "Command: ") != NULL &&
	    strstr(text, "/supervisor/hived ") != NULL;
	is_worker = strstr(text, "/worker/hive-worker ") != NULL;
	if (strstr(text, "   at 0x") != NULL || strstr(text, "   by 0x") != NULL)
		bad = 1;
	if ((errs = after(text, "ERROR SUMMARY:")) >= 0) {
		t->summaries++;
		t->hived += is_hived;
		t->workers += is_worker;
		if (errs != 0)
			bad = 1;
	}
	def = after(text, "definitely lost:");
	ind = after(text, "indirectly lost:");
	if (def > 0 || ind > 0)
		bad = 1;
	if (bad) {
		t->bad++;
		fprintf(stderr, "---- %s ----\n%.*s----\n", path, (int)len, text);
	}
	free(text);
}

static void
check_logs(struct vg_tally *t)
{
	DIR *d = opendir(vg.dir);
	struct dirent *e;
	char path[1024];

	CHECK(d != NULL, "%s: %s", vg.dir, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "vg.", 3) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", vg.dir, e->d_name);
		check_log(path, t);
	}
	closedir(d);
}

/* ---- the scenario ---- */

int
main(void)
{
	const char *valgrind = getenv("VALGRIND");
	const char *base = getenv("HIVE_TEST_TMP");
	char conf[600], last[64] = "0-0";
	size_t from = 0;
	pid_t echo_pid, shout_pid, echo2, shout2;
	struct vg_tally t = { 0 };
	int st, code, gone, pending;
	json_t *j;

	vg.t0 = now_ms();
	if (valgrind == NULL || *valgrind == '\0' || access(valgrind, X_OK) != 0) {
		printf("skip: valgrind is not installed (scripts/setup installs "
		    "it)\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Workers orphaned by a killed hived come to us: we reap them. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	snprintf(vg.prefix, sizeof(vg.prefix), "vg%ld", (long)getpid());
	snprintf(vg.dir, sizeof(vg.dir), "%s/valgrind-XXXXXX",
	    base != NULL && *base ? base : "/tmp");
	CHECK(mkdtemp(vg.dir) != NULL, "mkdtemp %s: %s", vg.dir,
	    strerror(errno));
	snprintf(conf, sizeof(conf), "%s/hive.conf", vg.dir);
	pg_setup();
	write_conf(conf, 1, 0);
	vg.rc = redisConnect(need_env("HIVE_TEST_REDIS_HOST"),
	    atoi(need_env("HIVE_TEST_REDIS_PORT")));
	CHECK(vg.rc != NULL && vg.rc->err == 0, "redis: %s",
	    vg.rc ? vg.rc->errstr : "out of memory");

	/* 1. hived and both workers up. */
	start_hived(valgrind, conf);
	echo_pid = wait_ready(&(size_t){ from }, "echo/1", 0);
	shout_pid = wait_ready(&(size_t){ from }, "shout/1", 0);
	say("hived pid=%ld on port %u, workers ready (echo %ld, shout %ld)",
	    (long)vg.pid, vg.port, (long)echo_pid, (long)shout_pid);

	/* 2. Work through both. */
	for (int i = 1; i <= VG_NTASKS; i++)
		submit_pair(i, 1);
	/* shout.sh fails on an empty payload: an error result. */
	submit("shout", 1, "f1", "");
	collect(last, sizeof(last), 2 * VG_NTASKS + 1);
	submit_garbage_to_dead("echo");
	say("%d results, one failed task, one dead letter", 2 * VG_NTASKS + 1);

	/* 3. The HTTP API, with its error paths. */
	http_expect("GET", "/health", NULL, 200);
	j = http("GET", "/agents", NULL, &code);
	CHECK(code == 200 && json_array_size(json_object_get(j, "agents")) == 2,
	    "GET /agents: %d", code);
	json_decref(j);
	http_expect("POST", "/agents/echo/restart", NULL, 401);
	http_expect("POST", "/agents/echo/restart", "wrong", 403);
	http_expect("POST", "/agents/nope/restart", VG_TOKEN, 404);
	http_expect("POST", "/agents/echo/explode", VG_TOKEN, 404);
	http_expect("POST", "/agents/echo/restart?instance=x", VG_TOKEN, 400);
	http_expect("POST", "/agents/echo/restart?instance=2", VG_TOKEN, 404);
	http_expect("POST", "/agents/echo/wake", VG_TOKEN, 409);
	http_expect("GET", "/agents/echo/restart", VG_TOKEN, 405);
	http_expect("POST", "/health", NULL, 405);
	http_expect("GET", "/nothing", NULL, 404);
	/* Bodies: refused where none is taken, at once when announced,
	 * once read when chunked; where one is taken (POST /tasks), read
	 * and parsed (not JSON: 400), refused past 4 MiB. */
	CHECK((code = http_post_body("/agents/echo/wake", 100, 0)) == 413,
	    "body where none is taken: %d", code);
	CHECK((code = http_post_body("/agents/echo/wake", 2500, 1)) == 413,
	    "chunked body where none is taken: %d", code);
	CHECK((code = http_post_body("/tasks", 100, 0)) == 400,
	    "small body: %d", code);
	CHECK((code = http_post_body("/tasks", 2500, 1)) == 400,
	    "small chunked body: %d", code);
	CHECK((code = http_post_body("/tasks", 5u << 20, 0)) == 413,
	    "large body: %d", code);
	/* A client gone mid-body, and one still sending when hived stops:
	 * both requests must be freed. */
	gone = http_connect();
	dprintf(gone, "POST /tasks HTTP/1.1\r\nHost: x\r\n"
	    "Authorization: Bearer " VG_TOKEN "\r\n"
	    "Content-Length: 100\r\n\r\n{\"x");
	close(gone);
	pending = http_connect();
	dprintf(pending, "POST /tasks HTTP/1.1\r\nHost: x\r\n"
	    "Authorization: Bearer " VG_TOKEN "\r\n"
	    "Content-Length: 100\r\n\r\n{\"x");
	http_expect("GET", "/health", NULL, 200);
	say("HTTP API: every answer as expected");

	/* 4. Reloads: a broken config is refused, a second shout starts. */
	write_conf(conf, 1, 1);
	CHECK(kill(vg.pid, SIGHUP) == 0, "kill hived: %s", strerror(errno));
	log_wait(&from, VG_T_START, "reload failed", NULL);
	write_conf(conf, 2, 0);
	CHECK(kill(vg.pid, SIGHUP) == 0, "kill hived: %s", strerror(errno));
	log_wait(&from, VG_T_START, "reload done", NULL);
	shout2 = wait_ready(&(size_t){ from }, "shout/2", 0);
	say("reloaded: bad config refused, shout/2 ready");

	/* An operator restart (a drained worker, a new one) and a status. */
	http_expect("POST", "/agents/shout/restart?instance=2", VG_TOKEN, 200);
	log_wait(&from, VG_T_START, "agent=shout/2", "exited status=0", NULL);
	shout2 = wait_ready(&from, "shout/2", shout2);
	CHECK(kill(vg.pid, SIGUSR1) == 0, "kill hived: %s", strerror(errno));
	log_wait(&from, VG_T_START, "agent=shout/2 state=ready pid=", NULL);

	/* 5. A worker killed: restarted, and it works; so does shout/2. */
	CHECK(kill(echo_pid, SIGKILL) == 0, "kill %ld: %s", (long)echo_pid,
	    strerror(errno));
	log_wait(&from, VG_T_START, "agent=echo/1", "exited signal=9", NULL);
	echo2 = wait_ready(&from, "echo/1", echo_pid);
	submit_pair(VG_NTASKS + 1, 2);
	collect(last, sizeof(last), 2);
	say("echo worker %ld killed, %ld took over", (long)echo_pid,
	    (long)echo2);
	if (vg.pg[0] != '\0') {
		sql_wait("SELECT count(*) FROM tasks WHERE state = 'completed'",
		    2 * VG_NTASKS + 2);
		sql_wait("SELECT count(*) FROM tasks WHERE state = 'failed'", 1);
		say("PostgreSQL has all %d tasks completed, 1 failed",
		    2 * VG_NTASKS + 2);
	}

	/* 6. A graceful stop, exit 0 (99 would be valgrind's errors). */
	CHECK(kill(vg.pid, SIGTERM) == 0, "kill hived: %s", strerror(errno));
	CHECK(wait_gone(vg.pid, VG_T_EXIT) == 0, "hived did not exit within "
	    "%d ms of SIGTERM", VG_T_EXIT);
	CHECK(waitpid(vg.pid, &st, 0) == vg.pid, "waitpid: %s",
	    strerror(errno));
	vg.pid = 0;
	close(pending);
	/* Every process that held the pipe is gone once it reads EOF. */
	for (long long end = now_ms() + 10000; vg.logfd >= 0 &&
	    now_ms() < end; )
		log_pump((int)(end - now_ms()));
	/*
	 * 7. Every log clean (printed when not).  Complete ones (with a
	 * summary): hived and 5 workers: both shouts drained by the reload,
	 * shout/2 again by the HTTP restart, and the last echo; the killed
	 * echo has none, nor have the fork children that exec'd a handler.
	 */
	check_logs(&t);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived: %s %d%s",
	    WIFEXITED(st) ? "exit status" : "signal",
	    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
	    WIFEXITED(st) && WEXITSTATUS(st) == 99 ? " (valgrind errors)" : "");
	CHECK(t.bad == 0, "%d of %d valgrind logs report errors or leaks "
	    "(printed above)", t.bad, t.logs);
	CHECK(strstr(vg.log, "exited status=99") == NULL,
	    "a worker exited with valgrind's error status");
	CHECK(t.hived == 1 && t.workers >= 5, "expected complete logs of hived "
	    "and 5 workers, got %d and %d", t.hived, t.workers);
	say("hived exited 0; %d valgrind logs, %d complete (hived, %d "
	    "hive-worker): 0 errors, 0 bytes definitely or indirectly lost",
	    t.logs, t.summaries, t.workers);
	vg_cleanup();
	return 0;
}
