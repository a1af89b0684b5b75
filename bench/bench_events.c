/*
 * bench_events.c - what the live event stream (GET /events) costs hived,
 * and how soon an agent's state change reaches a client.
 *
 * hived (with PostgreSQL: the recorder publishes the task events) and one
 * echo agent (mode=stream, concurrency 64); a feeder process submits -r
 * tasks/s (500) for the whole run, every task making a `task` event for
 * queued, running and completed (events_task_rate is set above it, so
 * none is coalesced: the worst case).
 *
 *   events.hived_cpu.none        hived's CPU (utime + stime of
 *   events.hived_cpu.10_clients  /proc/PID/stat) per second of the flow,
 *                                over rounds of -d seconds (5) that
 *                                alternate without and with a process
 *                                holding -c (10) /events clients, each
 *                                reading everything (-s pairs, 3, in turn
 *                                off-on and on-off); medians.  The first
 *                                is the ceiling of the second: the ratio
 *                                is what the clients cost.
 *   events.kill_seen.p50/p99     a client on /events?types=agent; the
 *   events.ready_seen.p50/p99    echo worker SIGKILLed (-k times, 10):
 *                                ms from the kill to the event of its
 *                                instance leaving ready, and to the event
 *                                of it ready again (the first is
 *                                hived's reaping plus the delivery: the
 *                                target, 200 ms, is issue 18's; the
 *                                second adds the restart)
 *
 *   bench_events [-r rate] [-d seconds] [-s pairs] [-c clients] [-k kills]
 *
 * Environment (bench/run sets it): HIVE_TEST_REDIS_HOST/PORT,
 * HIVE_TEST_PG, HIVED, HIVE_WORKER, HIVE_ECHO.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "benchutil.h"
#include "hive_proto.h"

#define ROUNDS_MAX 9
#define KILLS_MAX  50

static char prefix[32], dir[128], conf[192], logpath[192], portpath[192];
static pid_t hived = -1, feeder = -1, readers = -1;
static unsigned port;

static void
kill_wait(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGTERM);
		waitpid(*pid, NULL, 0);
		*pid = -1;
	}
}

static void
die_cleanup(void)
{
	kill_wait(&feeder);
	kill_wait(&readers);
	kill_wait(&hived);
}

static redisContext *
redis_connect(void)
{
	redisContext *c = redisConnect(getenv("HIVE_TEST_REDIS_HOST"),
	    atoi(getenv("HIVE_TEST_REDIS_PORT")));

	if (c == NULL || c->err)
		bench_die("redis: %s", c ? c->errstr : "out of memory");
	return c;
}

static void
pg_exec(PGconn *pc, const char *sql)
{
	PGresult *res = PQexec(pc, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		bench_die("%s: %s", sql, PQerrorMessage(pc));
	PQclear(res);
}

static void
start_hived(const char *postgres, double rate)
{
	FILE *f = fopen(conf, "w");

	if (f == NULL)
		bench_die("%s: %s", conf, strerror(errno));
	fprintf(f, "[hive]\nredis = %s:%s\nprefix = %s\nworker = %s\n"
	    "http = 127.0.0.1:0\npostgres = %s\nevents_task_rate = %.0f\n\n"
	    "[agent \"echo\"]\ncommand = %s\ncapabilities = work\n"
	    "mode = stream\nconcurrency = 64\nbackoff = 0\n"
	    "restart_limit = 1000\n",
	    getenv("HIVE_TEST_REDIS_HOST"), getenv("HIVE_TEST_REDIS_PORT"),
	    prefix, getenv("HIVE_WORKER"), postgres, rate * 4 + 100,
	    getenv("HIVE_ECHO"));
	fclose(f);
	if ((hived = fork()) == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		execl(getenv("HIVED"), "hived", "--config", conf, "--port-file",
		    portpath, (char *)NULL);
		_exit(127);
	}
	if (hived < 0)
		bench_die("fork: %s", strerror(errno));
}

/* The whole of hived's log so far (malloc'd). */
static char *
read_log(void)
{
	FILE *f = fopen(logpath, "r");
	char *s = NULL;
	size_t cap = 0, len = 0, n;

	if (f == NULL)
		return strdup("");
	do {
		if (len + 65536 > cap && (s = realloc(s, cap = cap * 2 + 131072)) ==
		    NULL)
			bench_die("out of memory");
		n = fread(s + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	fclose(f);
	s[len] = '\0';
	return s;
}

/* Wait until hived's log has count lines with needle. */
static void
wait_log(const char *needle, int count)
{
	double t0 = bench_mono_s();
	struct timespec ms = { 0, 10000000 };

	for (;;) {
		char *s = read_log(), *p = s;
		int n = 0;

		while ((p = strstr(p, needle)) != NULL && ++n < count)
			p++;
		free(s);
		if (n >= count)
			return;
		if (bench_mono_s() - t0 > 60)
			bench_die("hived did not log '%s' (x%d) in 60 s; see %s",
			    needle, count, logpath);
		nanosleep(&ms, NULL);
	}
}

static int
connect_to(unsigned p)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)p) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		bench_die("connect to port %u: %s", p, strerror(errno));
	return fd;
}

static int
open_stream(const char *path)
{
	char req[256];
	int fd = connect_to(port), n;

	n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n"
	    "\r\n", path);
	if (write(fd, req, (size_t)n) != n)
		bench_die("write: %s", strerror(errno));
	return fd;
}

/* ---- the load ---- */

static size_t
encode_task(msgpack_sbuffer *sb, const char *id)
{
	struct hive_task t = { 0 };
	struct proto_err err;

	t.id = HIVE_STR(id);
	t.attempt = 1;
	msgpack_sbuffer_clear(sb);
	if (proto_encode_task(sb, &t, &err) < 0)
		bench_die("encode task");
	return sb->size;
}

/* The feeder: rate tasks/s, paced by the clock, until killed. */
static void
feed(double rate)
{
	redisContext *c = redis_connect();
	msgpack_sbuffer sb;
	char key[HIVE_KEY_MAX], id[64];
	double t0 = bench_mono_s();
	unsigned long sent = 0;
	struct timespec ms = { 0, 1000000 };

	msgpack_sbuffer_init(&sb);
	proto_key_queue(key, sizeof(key), prefix, "work", HIVE_PRIO_DEFAULT);
	for (;;) {
		unsigned long due = (unsigned long)((bench_mono_s() - t0) * rate);
		for (; sent < due; sent++) {
			snprintf(id, sizeof(id), "f-%lu", sent);
			encode_task(&sb, id);
			bench_cmd(c, "XADD %s * m %b", key, sb.data, sb.size);
		}
		nanosleep(&ms, NULL);
	}
}

/* n clients on /events, each read to the end, until killed. */
static void
read_streams(int n)
{
	struct pollfd p[64];
	char buf[65536];

	for (int i = 0; i < n; i++) {
		p[i].fd = open_stream("/events");
		p[i].events = POLLIN;
	}
	for (;;) {
		if (poll(p, (nfds_t)n, -1) <= 0)
			continue;
		for (int i = 0; i < n; i++)
			if ((p[i].revents & (POLLIN | POLLHUP)) &&
			    read(p[i].fd, buf, sizeof(buf)) <= 0)
				bench_die("an /events client was dropped or ended");
	}
}

/* hived's utime + stime, seconds. */
static double
hived_cpu_s(void)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)hived);
	if ((f = fopen(path, "r")) == NULL || fgets(buf, sizeof(buf), f) == NULL)
		bench_die("%s: %s", path, strerror(errno));
	fclose(f);
	/* After the command's closing parenthesis: state is field 3; utime
	 * and stime are 14 and 15. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	    &ut, &st) != 2)
		bench_die("%s: cannot read", path);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* One round of d seconds: hived's CPU ms per second. */
static double
round_cpu(double d)
{
	struct timespec ts = { (time_t)d, (long)((d - (time_t)d) * 1e9) };
	double c0 = hived_cpu_s(), t0 = bench_mono_s();

	nanosleep(&ts, NULL);
	return 1e3 * (hived_cpu_s() - c0) / (bench_mono_s() - t0);
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double
pct(double *v, int n, double p)
{
	int i = (int)ceil(p * n) - 1;

	qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* ---- the kill ---- */

/* Read fd until an agent event whose data has want; ms since t0. */
static double
await_event(int fd, char *buf, size_t *len, size_t cap, const char *want,
    double t0)
{
	for (;;) {
		char *blk;
		ssize_t r;

		while ((blk = strstr(buf, "\n\n")) != NULL) {
			int hit = strstr(buf, want) != NULL &&
			    strstr(buf, "event: agent") != NULL;
			size_t used = (size_t)(blk + 2 - buf);

			*blk = '\0';
			memmove(buf, blk + 2, *len - used + 1);
			*len -= used;
			if (hit)
				return 1e3 * (bench_mono_s() - t0);
		}
		if (bench_mono_s() - t0 > 30)
			bench_die("no agent event with %s in 30 s", want);
		if ((r = read(fd, buf + *len, cap - *len - 1)) <= 0)
			bench_die("the /events stream ended");
		*len += (size_t)r;
		buf[*len] = '\0';
	}
}

/* The echo worker's pid, from GET /agents's answer (a crude read). */
static long
echo_pid(void)
{
	int fd = connect_to(port);
	char buf[65536], *p;
	size_t len = 0;
	ssize_t r;
	static const char req[] = "GET /agents HTTP/1.0\r\n\r\n";

	if (write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
		bench_die("write: %s", strerror(errno));
	while ((r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	buf[len] = '\0';
	if ((p = strstr(buf, "\"pid\":")) == NULL)
		return -1;
	return strtol(p + 6, NULL, 10);
}

static void
kills(int k)
{
	static char buf[1 << 20];
	double left[KILLS_MAX], ready[KILLS_MAX];
	int fd = open_stream("/events?types=agent&agent=echo");
	size_t len = 0;

	buf[0] = '\0';
	for (int i = 0; i < k; i++) {
		long pid = echo_pid();
		double t0;

		if (pid <= 0)
			bench_die("no pid of the echo worker");
		t0 = bench_mono_s();
		kill((pid_t)pid, SIGKILL);
		left[i] = await_event(fd, buf, &len, sizeof(buf),
		    "\"previous\":\"ready\"", t0);
		ready[i] = await_event(fd, buf, &len, sizeof(buf),
		    "\"state\":\"ready\"", t0);
	}
	close(fd);
	printf("events.kill_seen.p50: %.1f ms (SIGKILL of the worker to the "
	    "event of its instance leaving ready, on /events; %d kills; "
	    "target 200 ms)\n", pct(left, k, .5), k);
	printf("events.kill_seen.p99: %.1f ms\n", pct(left, k, .99));
	printf("events.ready_seen.p50: %.1f ms (the kill to the event of it "
	    "ready again: restart, fork, handler start and delivery)\n",
	    pct(ready, k, .5));
	printf("events.ready_seen.p99: %.1f ms\n", pct(ready, k, .99));
}

int
main(int argc, char **argv)
{
	double rate = 500, d = 5, none[ROUNDS_MAX], some[ROUNDS_MAX],
	    ratio[ROUNDS_MAX];
	int pairs = 3, clients = 10, k = 10, opt;
	char db[64], ci[512], sql[128];
	PGconn *pc;
	FILE *f;

	while ((opt = getopt(argc, argv, "r:d:s:c:k:")) != -1)
		switch (opt) {
		case 'r': rate = atof(optarg); break;
		case 'd': d = atof(optarg); break;
		case 's': pairs = atoi(optarg); break;
		case 'c': clients = atoi(optarg); break;
		case 'k': k = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bench_events [-r rate] [-d s] "
			    "[-s pairs] [-c clients] [-k kills]\n");
			return 2;
		}
	if (pairs < 1 || pairs > ROUNDS_MAX || clients < 1 || clients > 64 ||
	    k < 1 || k > KILLS_MAX || rate <= 0 || d <= 0)
		bench_die("out of range");
	if (getenv("HIVED") == NULL || getenv("HIVE_TEST_PG") == NULL ||
	    getenv("HIVE_WORKER") == NULL || getenv("HIVE_ECHO") == NULL)
		bench_die("HIVED, HIVE_TEST_PG, HIVE_WORKER, HIVE_ECHO: run it "
		    "from bench/run");
	atexit(die_cleanup);
	snprintf(prefix, sizeof(prefix), "bev%ld", (long)getpid());
	snprintf(dir, sizeof(dir), "/tmp/hive-bench-events.%ld", (long)getpid());
	if (mkdir(dir, 0700) != 0)
		bench_die("%s: %s", dir, strerror(errno));
	snprintf(conf, sizeof(conf), "%s/hive.conf", dir);
	snprintf(logpath, sizeof(logpath), "%s/hived.log", dir);
	snprintf(portpath, sizeof(portpath), "%s/port", dir);

	/* A database of its own. */
	snprintf(db, sizeof(db), "bench_events_%ld", (long)getpid());
	pc = PQconnectdb(getenv("HIVE_TEST_PG"));
	if (PQstatus(pc) != CONNECTION_OK)
		bench_die("postgres: %s", PQerrorMessage(pc));
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
	pg_exec(pc, sql);
	snprintf(ci, sizeof(ci), "%s dbname=%s", getenv("HIVE_TEST_PG"), db);

	start_hived(ci, rate);
	wait_log("state=ready", 1);
	if ((f = fopen(portpath, "r")) == NULL || fscanf(f, "%u", &port) != 1)
		bench_die("no port in %s", portpath);
	fclose(f);

	if ((feeder = fork()) == 0) {
		feed(rate);
		_exit(0);
	}
	/* Warm up: the recorder and the worker at the flow's pace. */
	(void)round_cpu(2);
	for (int i = 0; i < pairs; i++) {
		for (int half = 0; half < 2; half++) {
			int on = (i % 2 == 0) == (half == 1);

			if (on && (readers = fork()) == 0) {
				read_streams(clients);
				_exit(0);
			}
			if (on)
				(void)round_cpu(.5);     /* connected */
			(on ? some : none)[i] = round_cpu(d);
			if (on)
				kill_wait(&readers);
		}
		ratio[i] = some[i] / none[i];
	}
	printf("events.hived_cpu.none: %.1f ms/s (hived's CPU per second of a "
	    "%.0f tasks/s flow, no /events client; median of %d rounds of "
	    "%.0f s)\n", median(none, pairs), rate, pairs, d);
	printf("events.hived_cpu.10_clients: %.1f ms/s (the same with %d "
	    "clients on /events reading every event, rounds interleaved; "
	    "ratio of the pairs' medians: %.2f)\n", median(some, pairs),
	    clients, median(ratio, pairs));
	kill_wait(&feeder);
	kills(k);
	kill_wait(&hived);
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", db);
	PQfinish(pc);
	if ((pc = PQconnectdb(getenv("HIVE_TEST_PG"))) != NULL &&
	    PQstatus(pc) == CONNECTION_OK)
		PQclear(PQexec(pc, sql));
	PQfinish(pc);
	return 0;
}
