/*
 * restart.c - how fast hived brings a killed worker back, and what hived
 * costs, measured from outside on real processes:
 *
 *   fork_exec_wait.*        the floor: fork + exec /bin/true + waitpid, in
 *                           a loop, in this run on this machine
 *   restart.kill_to_spawn.* SIGKILL of a worker to hived's log line for its
 *                           replacement (hived's own reaction)
 *   restart.kill_to_ready.* SIGKILL to the replacement's ready heartbeat,
 *                           logged by hived; the replacement got the agent's
 *                           memory (checked: memory_v on the start line)
 *   hived.rss.8_agents      VmRSS of hived with 8 agents running, each
 *                           after one task; no http, no postgres (hived
 *                           maps libpq and libmicrohttpd all the same)
 *   hived.rss.8_agents_full the same with http on loopback (two requests
 *                           answered) and postgres (HIVE_TEST_PG: schema,
 *                           recorder, snapshots; the tasks recorded)
 *   start.500_instances     hived start to 500 ready heartbeats
 *   hived.rss/cpu_idle.500_instances
 *                           with 500 workers heartbeating every second
 *   start.2000_instances.all_ready, health_during_start.*
 *                           hived (http on loopback) start to 2,000 ready
 *                           heartbeats, and GET /health, one after the
 *                           other, all the while: how long hived's loop
 *                           is held by the forks (spawn.c paces them)
 *   hived.pss.*, hived.rss_anon.*
 *                           beside each hived.rss.* figure, hived's Pss
 *                           and RssAnon read at the same moment
 *                           (benchutil.h: what each counts)
 *
 * Timestamps are taken when this program reads hived's log lines from a
 * pipe (-v: one line per event), so they include the pipe, a few µs.
 * Each kill hits an instance that has been ready for over a second, so
 * every restart is a "first" one (no backoff: docs/OPERATIONS.md).
 * Output lines are "name: value unit".  Run it through bench/run, which
 * starts a private Redis and PostgreSQL, or bench/restart.sh (Redis only:
 * hived.rss.8_agents_full is skipped unless HIVE_TEST_PG is set).
 *
 *   bench_restart [-k KILLS] [-n INSTANCES] [-s INSTANCES] [-m MEMORY_BYTES]
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "benchutil.h"
#include "hive_proto.h"

#define AGENTS8 8

struct run {
	pid_t pid;
	int logfd;
	char *buf;
	size_t len, cap, off;
	char dir[256];
	char conf[300];
	char port_file[300];         /* "" : no --port-file */
};

static const char *hived_path, *worker_path, *handler_path;
static char prefix[64];

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Nearest-rank percentile of n sorted values. */
static double
pct(const double *v, size_t n, double p)
{
	size_t i = (size_t)(p / 100. * (double)n + 0.999999);

	if (i < 1)
		i = 1;
	if (i > n)
		i = n;
	return v[i - 1];
}

static void
report(const char *name, double *v, size_t n)
{
	qsort(v, n, sizeof(*v), bench_cmp_double);
	printf("%s.median: %.2f ms\n", name, pct(v, n, 50));
	printf("%s.p99: %.2f ms\n", name, pct(v, n, 99));
	printf("%s.min: %.2f ms\n", name, v[0]);
	fflush(stdout);
}

/*
 * "hived.rss.<what>: X MB<note>" for hived (pid), then its Pss and RssAnon
 * as figures of their own (benchutil.h says what each counts).  A hived
 * that is gone reads as -1 kB.
 */
static void
print_mem(pid_t pid, const char *what, const char *note)
{
	struct bench_mem m;

	bench_proc_mem(pid, &m);
	printf("hived.rss.%s: %.2f MB%s\n", what, m.rss / 1024., note);
	bench_print_pss_anon("hived", what, &m);
	fflush(stdout);
}

/* utime + stime in clock ticks. */
static long long
cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) == NULL) {
		fclose(f);
		return -1;
	}
	fclose(f);
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	    &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

/* ---- the fork + exec floor ---- */

static void
bench_fork(int n)
{
	double *v = calloc((size_t)n, sizeof(*v));

	for (int i = 0; i < n; i++) {
		double t0 = now_ms();
		pid_t pid = fork();
		int st;

		if (pid == 0) {
			execl("/bin/true", "true", (char *)NULL);
			_exit(127);
		}
		if (pid < 0 || waitpid(pid, &st, 0) != pid)
			bench_die("fork: %s", strerror(errno));
		v[i] = now_ms() - t0;
	}
	report("fork_exec_wait", v, (size_t)n);
	free(v);
}

/* ---- hived ---- */

/* postgres: a libpq conninfo, or NULL for none; http on loopback (any
 * free port) when postgres or http is set, none otherwise. */
static void
write_conf(struct run *r, const char *agents, int nagents, int instances,
    const char *postgres, int http)
{
	const char *host = getenv("HIVE_TEST_REDIS_HOST");
	const char *port = getenv("HIVE_TEST_REDIS_PORT");
	FILE *f = fopen(r->conf, "w");

	if (f == NULL)
		bench_die("%s: %s", r->conf, strerror(errno));
	fprintf(f,
	    "[hive]\nredis = %s:%s\nprefix = %s\nworker = %s\n"
	    "heartbeat_interval = 1s\nstop_timeout = 30s\n",
	    host ? host : "127.0.0.1", port ? port : "6379", prefix,
	    worker_path);
	if (postgres != NULL)
		fprintf(f, "http = 127.0.0.1:0\npostgres = %s\n\n", postgres);
	else if (http)
		fprintf(f, "http = 127.0.0.1:0\n\n");
	else
		fprintf(f, "http =\n\n");
	for (int a = 0; a < nagents; a++)
		fprintf(f, "[agent \"%s%d\"]\ncommand = %s\ninstances = %d\n"
		    "restart_limit = 10000\nrestart_window = 60s\n"
		    "heartbeat_deadline = 60s\n\n", agents, a, handler_path,
		    instances);
	fclose(f);
}

static void
start(struct run *r, int verbose)
{
	int fds[2];

	if (pipe2(fds, O_CLOEXEC) == -1)
		bench_die("pipe: %s", strerror(errno));
	fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
	if ((r->pid = fork()) == 0) {
		/* Arrays of this block: a compound literal inside the ifs
		 * below would end with its if, before execv reads it. */
		char a0[] = "hived", av[] = "-v", ac[] = "--config",
		    ap[] = "--port-file";
		char *argv[8];
		int n = 0;

		dup2(fds[1], 2);
		argv[n++] = a0;
		if (verbose)
			argv[n++] = av;
		argv[n++] = ac;
		argv[n++] = r->conf;
		if (r->port_file[0] != '\0') {
			argv[n++] = ap;
			argv[n++] = r->port_file;
		}
		argv[n] = NULL;
		execv(hived_path, argv);
		_exit(127);
	}
	close(fds[1]);
	r->logfd = fds[0];
	r->len = r->off = 0;
}

/* Next whole log line, or NULL after timeout_ms. */
static const char *
next_line(struct run *r, int timeout_ms)
{
	static char line[4096];
	double end = now_ms() + timeout_ms;

	for (;;) {
		char *nl = r->buf ? memchr(r->buf + r->off, '\n', r->len - r->off)
		    : NULL;

		if (nl != NULL) {
			size_t l = (size_t)(nl - (r->buf + r->off));

			if (l >= sizeof(line))
				l = sizeof(line) - 1;
			memcpy(line, r->buf + r->off, l);
			line[l] = '\0';
			r->off = (size_t)(nl - r->buf) + 1;
			if (r->off == r->len)
				r->off = r->len = 0;
			return line;
		}
		double left = end - now_ms();
		struct pollfd p = { r->logfd, POLLIN, 0 };
		char chunk[65536];
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return NULL;
		if ((n = read(r->logfd, chunk, sizeof(chunk))) <= 0)
			return NULL;
		if (r->len + (size_t)n > r->cap) {
			r->cap = (r->len + (size_t)n) * 2;
			if ((r->buf = realloc(r->buf, r->cap)) == NULL)
				bench_die("out of memory");
		}
		memcpy(r->buf + r->len, chunk, (size_t)n);
		r->len += (size_t)n;
	}
}

/* Wait for a line with both needles; die after timeout_ms. */
static const char *
wait_line(struct run *r, const char *a, const char *b, int timeout_ms)
{
	double end = now_ms() + timeout_ms;
	const char *l;

	while ((l = next_line(r, (int)(end - now_ms()))) != NULL)
		if (strstr(l, a) && (b == NULL || strstr(l, b)))
			return l;
	bench_die("no log line with '%s' '%s' within %d ms", a, b ? b : "",
	    timeout_ms);
}

static long long
field(const char *line, const char *key)
{
	char pat[32];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	return (p = strstr(line, pat)) ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static void
stop(struct run *r, const char *name)
{
	double t0 = now_ms();
	int st;

	kill(r->pid, SIGTERM);
	/* Keep reading: hived must never block on a full pipe. */
	while (next_line(r, 100) != NULL || waitpid(r->pid, &st, WNOHANG) == 0)
		;
	if (name != NULL)
		printf("%s: %.2f s\n", name, (now_ms() - t0) / 1e3);
	close(r->logfd);
}

static void
submit(redisContext *c, const char *agent, const char *id)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	char key[HIVE_KEY_MAX];
	redisReply *rep;

	memset(&t, 0, sizeof(t));
	t.v = HIVE_PROTO_VERSION;
	t.id = HIVE_STR(id);
	t.attempt = 1;
	t.payload.type = MSGPACK_OBJECT_NIL;
	msgpack_sbuffer_init(&sb);
	if (proto_encode_task(&sb, &t, &err) == -1 ||
	    proto_key_direct(key, sizeof(key), prefix, agent, 1) < 0)
		bench_die("encode task");
	rep = redisCommand(c, "XADD %s * m %b", key, sb.data, sb.size);
	if (rep == NULL || rep->type != REDIS_REPLY_STRING)
		bench_die("XADD %s", key);
	freeReplyObject(rep);
	msgpack_sbuffer_destroy(&sb);
}

/*
 * hived with 8 agents NAME0..NAME7 (postgres: as write_conf): wait until
 * each is ready, give each a task (and so a memory), wait until hived kept
 * each memory.  pids and ready_at: each instance's, by agent number.
 */
static void
start8(struct run *r, const char *name, const char *postgres,
    pid_t pids[AGENTS8], double ready_at[AGENTS8])
{
	const char *host = getenv("HIVE_TEST_REDIS_HOST");
	const char *port = getenv("HIVE_TEST_REDIS_PORT");
	char label[64], id[32];
	redisContext *c;
	size_t nl = strlen(name);
	int got = 0;

	write_conf(r, name, AGENTS8, 1, postgres, 0);
	start(r, 1);
	snprintf(label, sizeof(label), "agent=%s", name);
	while (got < AGENTS8) {
		const char *l = wait_line(r, "state=ready", "from=starting", 60000);
		const char *p = strstr(l, label);
		int a;

		if (p == NULL || sscanf(p + 6 + nl, "%d", &a) != 1 ||
		    a < 0 || a >= AGENTS8)
			bench_die("bad line %s", l);
		pids[a] = (pid_t)field(l, "pid");
		ready_at[a] = now_ms();
		got++;
	}
	c = redisConnect(host ? host : "127.0.0.1", port ? atoi(port) : 6379);
	if (c == NULL || c->err)
		bench_die("redis: %s", c ? c->errstr : "oom");
	for (int a = 0; a < AGENTS8; a++) {
		snprintf(label, sizeof(label), "%s%d", name, a);
		snprintf(id, sizeof(id), "warm-%s%d", name, a);
		submit(c, label, id);
	}
	for (got = 0; got < AGENTS8; got++)
		wait_line(r, "memory_v=1 kept", NULL, 30000);
	redisFree(c);
}

/*
 * 8 agents; each gets a task (and so a memory), then KILLS SIGKILLs round
 * robin, each to an instance ready for over a second.
 */
static void
bench_kills(struct run *r, int kills)
{
	double ready_at[AGENTS8], *to_spawn, *to_ready;
	pid_t pids[AGENTS8];
	char label[64];

	start8(r, "a", NULL, pids, ready_at);
	print_mem(r->pid, "8_agents", " (no http, no postgres)");

	to_spawn = calloc((size_t)kills, sizeof(double));
	to_ready = calloc((size_t)kills, sizeof(double));
	for (int k = 0; k < kills; k++) {
		int a = k % AGENTS8;
		double t0, wait = ready_at[a] + 1100 - now_ms();
		const char *l;

		/* Let the instance be stable, reading the log meanwhile. */
		while (wait > 0) {
			next_line(r, (int)wait);
			wait = ready_at[a] + 1100 - now_ms();
		}
		snprintf(label, sizeof(label), "agent=a%d/1 pid=", a);
		t0 = now_ms();
		if (kill(pids[a], SIGKILL) == -1)
			bench_die("kill %ld: %s", (long)pids[a], strerror(errno));
		l = wait_line(r, label, "state=starting", 10000);
		to_spawn[k] = now_ms() - t0;
		if (field(l, "memory_v") < 1)
			bench_die("replacement without memory: %s", l);
		l = wait_line(r, label, "state=ready", 10000);
		to_ready[k] = now_ms() - t0;
		ready_at[a] = now_ms();
		pids[a] = (pid_t)field(l, "pid");
	}
	report("restart.kill_to_spawn", to_spawn, (size_t)kills);
	report("restart.kill_to_ready", to_ready, (size_t)kills);
	print_mem(r->pid, "8_agents_after_kills", "");
	free(to_spawn);
	free(to_ready);
	stop(r, NULL);
}

/* GET path from hived's HTTP API on 127.0.0.1:port; dies unless 200.
 * Returns how long the answer took, connect to close (ms). */
static double
http_get(unsigned port, const char *path)
{
	struct sockaddr_in sa;
	char buf[65536];
	size_t len = 0;
	ssize_t n;
	int fd, code = 0;
	double t0 = now_ms();

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1)
		bench_die("http 127.0.0.1:%u: %s", port, strerror(errno));
	n = snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n\r\n", path);
	if (write(fd, buf, (size_t)n) != n)
		bench_die("http write: %s", strerror(errno));
	/* hived's log pipe (1 MB) holds what it logs meanwhile. */
	while (len < sizeof(buf) - 1 &&
	    (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
	if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1 || code != 200)
		bench_die("GET %s: %.80s", path, buf);
	return now_ms() - t0;
}

/*
 * hived.rss.8_agents_full: as hived.rss.8_agents, with what a production
 * hived loads: http on loopback (libmicrohttpd, GnuTLS under it) with
 * /health and /agents answered, and postgres (libpq, OpenSSL, Kerberos and
 * LDAP under it): schema migrated, memory snapshots, the recorder with
 * the 8 tasks to record.  Measured after 2 s of settling, in which the
 * recorder commits its batch and the housekeeping timer runs 8 times.
 */
static void
bench_full(struct run *r)
{
	static const char *const measures[] = { "rss", "pss", "rss_anon" };
	const char *pg = getenv("HIVE_TEST_PG");
	double ready_at[AGENTS8];
	pid_t pids[AGENTS8];
	unsigned port = 0;
	FILE *f;

	if (pg == NULL || *pg == '\0') {
		for (size_t i = 0; i < sizeof(measures) / sizeof(*measures); i++)
			printf("hived.%s.8_agents_full: skipped (HIVE_TEST_PG not "
			    "set: no PostgreSQL)\n", measures[i]);
		return;
	}
	snprintf(r->port_file, sizeof(r->port_file), "%s/port", r->dir);
	start8(r, "f", pg, pids, ready_at);
	/* Written before any agent starts. */
	if ((f = fopen(r->port_file, "r")) == NULL || fscanf(f, "%u", &port) != 1)
		bench_die("%s: no port", r->port_file);
	fclose(f);
	http_get(port, "/health");
	http_get(port, "/agents");
	for (double end = now_ms() + 2000; now_ms() < end;)
		next_line(r, 100);
	print_mem(r->pid, "8_agents_full", " (http on loopback, postgres)");
	stop(r, NULL);
	unlink(r->port_file);
	r->port_file[0] = '\0';
}

static void
bench_many(struct run *r, int instances)
{
	int per = 50, nagents = (instances + per - 1) / per, got = 0;
	char name[64];
	double t0;
	long long c0, c1;
	long hz = sysconf(_SC_CLK_TCK);

	if (instances < per)
		per = instances, nagents = 1;
	write_conf(r, "m", nagents, per, NULL, 0);
	t0 = now_ms();
	start(r, 0);
	while (got < nagents * per) {
		wait_line(r, "state=ready", "from=starting", 300000);
		got++;
	}
	printf("start.%d_instances.all_ready: %.2f s\n", got,
	    (now_ms() - t0) / 1e3);
	/* Settle, then hived alone with every worker beating once a second. */
	for (double end = now_ms() + 2000; now_ms() < end;)
		next_line(r, 100);
	snprintf(name, sizeof(name), "%d_instances", got);
	print_mem(r->pid, name, "");
	c0 = cpu_ticks(r->pid);
	t0 = now_ms();
	for (double end = now_ms() + 10000; now_ms() < end;)
		next_line(r, 100);
	c1 = cpu_ticks(r->pid);
	printf("hived.cpu_idle.%d_instances: %.2f %%\n", got,
	    100. * (double)(c1 - c0) / (double)hz / ((now_ms() - t0) / 1e3));
	fflush(stdout);
	snprintf(name, sizeof(name), "stop.%d_instances", got);
	stop(r, name);
}

/*
 * start.N_instances.all_ready with http on loopback, and GET /health
 * answered all the while, one request after the other (the log read in
 * between without waiting): health_during_start.* are their times.  With
 * every fork in one loop turn, a request that came during the start
 * waited for all of them.
 */
static void
bench_start_health(struct run *r, int instances)
{
	int per = 50, nagents = (instances + per - 1) / per, got = 0;
	size_t nh = 0, caph = 1024;
	double t0, *h = malloc(caph * sizeof(*h));
	unsigned port = 0;
	const char *l;
	char name[64];
	FILE *f;

	if (h == NULL)
		bench_die("out of memory");
	if (instances < per)
		per = instances, nagents = 1;
	snprintf(r->port_file, sizeof(r->port_file), "%s/port", r->dir);
	unlink(r->port_file);
	write_conf(r, "s", nagents, per, NULL, 1);
	t0 = now_ms();
	start(r, 0);
	/* The port file is written before any agent starts. */
	while ((f = fopen(r->port_file, "r")) == NULL) {
		if (now_ms() - t0 > 30000)
			bench_die("%s: no port", r->port_file);
		next_line(r, 10);
	}
	if (fscanf(f, "%u", &port) != 1)
		bench_die("%s: no port", r->port_file);
	fclose(f);
	while (got < nagents * per) {
		if (nh == caph && (h = realloc(h, (caph *= 2) * sizeof(*h))) == NULL)
			bench_die("out of memory");
		h[nh++] = http_get(port, "/health");
		/* What the log has now (next_line waits at most 1 ms more). */
		while ((l = next_line(r, 1)) != NULL)
			if (strstr(l, "state=ready") && strstr(l, "from=starting"))
				got++;
		if (now_ms() - t0 > 600000)
			bench_die("%d of %d ready after 600 s", got, nagents * per);
	}
	printf("start.%d_instances.all_ready: %.2f s (http on loopback, "
	    "/health asked all the while)\n", got, (now_ms() - t0) / 1e3);
	snprintf(name, sizeof(name), "health_during_start.%d_instances", got);
	printf("%s.requests: %zu\n", name, nh);
	report(name, h, nh);
	printf("%s.max: %.2f ms\n", name, h[nh - 1]);
	free(h);
	snprintf(name, sizeof(name), "stop.%d_instances_http", got);
	stop(r, name);
	unlink(r->port_file);
	r->port_file[0] = '\0';
}

int
main(int argc, char *argv[])
{
	int kills = 50, instances = 500, paced = 2000, ch;
	struct run r;
	char mem[32];

	memset(&r, 0, sizeof(r));
	while ((ch = getopt(argc, argv, "k:n:s:m:")) != -1) {
		switch (ch) {
		case 'k':
			kills = atoi(optarg);
			break;
		case 'n':
			instances = atoi(optarg);
			break;
		case 's':
			paced = atoi(optarg);
			break;
		case 'm':
			snprintf(mem, sizeof(mem), "%s", optarg);
			setenv("RESTART_MEM_BYTES", mem, 1);
			break;
		default:
			fprintf(stderr, "usage: bench_restart [-k kills] "
			    "[-n instances] [-s instances] [-m memory_bytes]\n");
			return 2;
		}
	}
	if ((hived_path = getenv("HIVED")) == NULL ||
	    (worker_path = getenv("HIVE_WORKER")) == NULL ||
	    (handler_path = getenv("RESTART_HANDLER")) == NULL)
		bench_die("HIVED, HIVE_WORKER, RESTART_HANDLER must be set "
		    "(bench/restart.sh does)");
	signal(SIGPIPE, SIG_IGN);
	snprintf(prefix, sizeof(prefix), "bench%ld", (long)getpid());
	snprintf(r.dir, sizeof(r.dir), "/tmp/hive-bench-restart-XXXXXX");
	if (mkdtemp(r.dir) == NULL)
		bench_die("mkdtemp: %s", strerror(errno));
	snprintf(r.conf, sizeof(r.conf), "%s/hive.conf", r.dir);

	bench_fork(kills);
	if (kills > 0) {
		bench_kills(&r, kills);
		bench_full(&r);
	}
	if (instances > 0)
		bench_many(&r, instances);
	if (paced > 0)
		bench_start_health(&r, paced);
	unlink(r.conf);
	rmdir(r.dir);
	free(r.buf);
	return 0;
}
