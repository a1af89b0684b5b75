/*
 * bench_api.c - the HTTP API under load: what a request costs while tasks
 * flow, and what a Prometheus scraper costs the workers.
 *
 * hived (with PostgreSQL: recorder and coordinator run) and one echo
 * agent (mode=stream, concurrency 64), in a database of the benchmark's
 * own whose tasks table is first filled with -n rows (1,000,000) by one
 * INSERT ... generate_series, then ANALYZEd.  This process is the client,
 * a second process beside hived.
 *
 *   api.agents.p50/p99    GET /agents             while a feeder process
 *   api.tasks.p50/p99     GET /tasks?limit=100    submits -r tasks/s
 *   api.metrics.p50/p99   GET /metrics            (-k requests each,
 *                                                 interleaved)
 *   ceilings, measured in the same run, -k times each, interleaved too:
 *   http.static.p50/p99   the same client against a loopback server of
 *                         this program that answers every request with
 *                         GET /agents's body, read once: a connection, a
 *                         request and an answer, nothing else
 *   pg.tasks.p50/p99      the SELECT of GET /tasks?limit=100 (api_tasks.h)
 *                         on a libpq connection of its own, result read
 *
 *   worker.throughput.unscraped  the echo worker, saturated: -b tasks
 *   worker.throughput.scraped    pipelined, tasks/s until the last result;
 *                         rounds alternate without and with a process
 *                         that GETs /metrics (-p another path) once a
 *                         second (-s pairs, in turn off-on and on-off);
 *                         medians, and the median of the pairs' ratios
 *                         (target: under 5 % lower scraped)
 *
 * Each request is a new connection (as curl or a scraper makes), read to
 * its end.  A GET /metrics that answers 404 (an API without it) prints
 * that it is absent instead of its figures.
 *
 *   bench_api [-n record_rows] [-r rate] [-k requests] [-b tasks]
 *             [-s rounds] [-p scrape_path]
 *
 * Environment (bench/run sets it): HIVE_TEST_REDIS_HOST/PORT,
 * HIVE_TEST_PG (a server where it may create a database), HIVED,
 * HIVE_WORKER, HIVE_ECHO.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "api_tasks.h"
#include "benchutil.h"
#include "hive_proto.h"

#define ROUNDS_MAX 9

static char prefix[32], dir[128], conf[192], logpath[192], portpath[192];
static pid_t hived = -1, feeder = -1, scraper = -1, server = -1;
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
	kill_wait(&scraper);
	kill_wait(&server);
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

	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		bench_die("%s: %s", sql, PQerrorMessage(pc));
	PQclear(res);
}

static PGconn *
pg_connect(const char *ci)
{
	PGconn *pc = PQconnectdb(ci);

	if (PQstatus(pc) != CONNECTION_OK)
		bench_die("postgres: %s", PQerrorMessage(pc));
	return pc;
}

static void
start_hived(const char *postgres)
{
	FILE *f = fopen(conf, "w");

	if (f == NULL)
		bench_die("%s: %s", conf, strerror(errno));
	fprintf(f, "[hive]\nredis = %s:%s\nprefix = %s\nworker = %s\n"
	    "http = 127.0.0.1:0\npostgres = %s\n\n"
	    "[agent \"echo\"]\ncommand = %s\ncapabilities = work\n"
	    "mode = stream\nconcurrency = 64\n", getenv("HIVE_TEST_REDIS_HOST"),
	    getenv("HIVE_TEST_REDIS_PORT"), prefix, getenv("HIVE_WORKER"),
	    postgres, getenv("HIVE_ECHO"));
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

/* ---- a client: one GET on a new connection, read to its end ---- */

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

/* GET path on port p: its status; the seconds it took in *s, the body
 * (malloc'd) in *body if body is not NULL. */
static int
http_get(unsigned p, const char *path, double *s, char **body)
{
	char req[256], *buf = NULL, *b;
	size_t len = 0, cap = 0;
	double t0 = bench_mono_s();
	int fd, n, status = 0;
	ssize_t r;

	fd = connect_to(p);
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n)
		bench_die("write: %s", strerror(errno));
	for (;;) {
		if (len + 65536 > cap) {
			cap = cap ? cap * 2 : 131072;
			if ((buf = realloc(buf, cap)) == NULL)
				bench_die("out of memory");
		}
		if ((r = read(fd, buf + len, cap - len - 1)) < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	*s = bench_mono_s() - t0;
	if (buf == NULL || (buf[len] = '\0', sscanf(buf, "HTTP/1.1 %d",
	    &status)) != 1)
		bench_die("GET %s: no answer", path);
	if (body != NULL) {
		b = strstr(buf, "\r\n\r\n");
		*body = strdup(b != NULL ? b + 4 : "");
	}
	free(buf);
	return status;
}

/* ---- the ceiling of a request: a static answer on loopback ---- */

static void
serve_static(int lfd, const char *body)
{
	char head[256], req[4096];
	size_t blen = strlen(body);
	int hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n", blen);

	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		size_t got = 0;
		ssize_t r;

		if (fd < 0)
			continue;
		while (got < sizeof(req) - 1 && (r = read(fd, req + got,
		    sizeof(req) - 1 - got)) > 0) {
			got += (size_t)r;
			req[got] = '\0';
			if (strstr(req, "\r\n\r\n") != NULL)
				break;
		}
		/* A client that went is no matter: the next one. */
		if (write(fd, head, (size_t)hl) == hl)
			(void)!write(fd, body, blen);
		close(fd);
	}
}

/* A child answering every request with body; its port. */
static unsigned
start_static(const char *body)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 64) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0)
		bench_die("static server: %s", strerror(errno));
	if ((server = fork()) == 0) {
		serve_static(lfd, body);
		_exit(0);
	}
	if (server < 0)
		bench_die("fork: %s", strerror(errno));
	close(lfd);
	return ntohs(sa.sin_port);
}

/* ---- tasks ---- */

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

/* The feeder: rate tasks/s on the queue, paced by the clock (a late
 * turn catches up), until killed. */
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

/* The scraper: GET path once a second, until killed. */
static void
scrape(const char *path)
{
	struct timespec one = { 1, 0 };
	double s;

	for (;;) {
		http_get(port, path, &s, NULL);
		nanosleep(&one, NULL);
	}
}

static pid_t
spawn(void (*fn)(void))
{
	pid_t pid = fork();

	if (pid == 0) {
		fn();
		_exit(0);
	}
	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	return pid;
}

static double feed_rate;
static const char *scrape_path = "/metrics";
static void feed_main(void) { feed(feed_rate); }
static void scrape_main(void) { scrape(scrape_path); }

/* Results on <p>:results so far. */
static long long
results(redisContext *c)
{
	char key[HIVE_KEY_MAX];
	redisReply *r;
	long long n;

	proto_key_named(key, sizeof(key), prefix, "results");
	r = redisCommand(c, "XLEN %s", key);
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		bench_die("XLEN %s", key);
	n = r->integer;
	freeReplyObject(r);
	return n;
}

/* n tasks pipelined (batches of 1,000); tasks/s until the last result. */
static double
burst(redisContext *c, int n, unsigned round)
{
	msgpack_sbuffer sb;
	char key[HIVE_KEY_MAX], id[64];
	long long want = results(c) + n;
	double t0 = bench_mono_s();
	struct timespec tick = { 0, 2000000 };

	msgpack_sbuffer_init(&sb);
	proto_key_queue(key, sizeof(key), prefix, "work", HIVE_PRIO_DEFAULT);
	for (int i = 0; i < n; i += 1000) {
		int k = n - i < 1000 ? n - i : 1000;
		for (int j = 0; j < k; j++) {
			snprintf(id, sizeof(id), "b%u-%d", round, i + j);
			encode_task(&sb, id);
			redisAppendCommand(c, "XADD %s * m %b", key, sb.data, sb.size);
		}
		for (int j = 0; j < k; j++) {
			redisReply *r;
			if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL ||
			    r->type == REDIS_REPLY_ERROR)
				bench_die("XADD failed");
			freeReplyObject(r);
		}
	}
	msgpack_sbuffer_destroy(&sb);
	while (results(c) < want) {
		if (bench_mono_s() - t0 > 120)
			bench_die("the worker did not answer %d tasks in 120 s", n);
		nanosleep(&tick, NULL);
	}
	return n / (bench_mono_s() - t0);
}

/* ---- figures ---- */

static double
pct(double *v, int n, double p)
{
	int i = (int)ceil(p * n) - 1;

	qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void
print_lat(const char *name, double *v, int n, const char *what)
{
	double p50 = pct(v, n, .50), p99 = pct(v, n, .99);

	printf("%s.p50: %.3f ms (%s; %d requests)\n", name, 1e3 * p50, what, n);
	printf("%s.p99: %.3f ms\n", name, 1e3 * p99);
}

/* The page GET /tasks?limit=100 reads, straight from PostgreSQL. */
static double
pg_page(PGconn *pc)
{
	static const char *const v[1] = { "101" };
	char sql[2048];
	double t0 = bench_mono_s();
	PGresult *res;

	snprintf(sql, sizeof(sql), API_TASKS_SELECT API_LIST_ORDER, 1);
	res = PQexecParams(pc, sql, 1, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 101)
		bench_die("%s: %s", sql, PQerrorMessage(pc));
	PQclear(res);
	return bench_mono_s() - t0;
}

/* hived up: its port, its schema migrated (5: the API's indexes). */
static void
wait_ready(const char *ci)
{
	double t0 = bench_mono_s(), s;
	struct timespec tick = { 0, 20000000 };
	FILE *f;

	for (;;) {
		if (port == 0 && (f = fopen(portpath, "r")) != NULL) {
			if (fscanf(f, "%u", &port) != 1)
				port = 0;
			fclose(f);
		}
		if (port != 0 && http_get(port, "/health", &s, NULL) == 200) {
			PGconn *pc = pg_connect(ci);
			PGresult *res = PQexec(pc, "SELECT max(version) FROM "
			    "hive_schema");
			int ok = PQresultStatus(res) == PGRES_TUPLES_OK &&
			    atoi(PQgetvalue(res, 0, 0)) >= 5;
			PQclear(res);
			PQfinish(pc);
			if (ok)
				return;
		}
		if (bench_mono_s() - t0 > 60)
			bench_die("hived not ready in 60 s (its log: %s)", logpath);
		nanosleep(&tick, NULL);
	}
}

static void
fill(const char *ci, long rows)
{
	PGconn *pc = pg_connect(ci);
	char sql[1024];
	double t0 = bench_mono_s();

	/* 20 capabilities, 10 agents of 4 instances, a workflow task in 100,
	 * mostly completed, one every 10 ms back from now. */
	snprintf(sql, sizeof(sql), "INSERT INTO tasks (id, stream, entry, "
	    "state, attempts, agent, workflow, result, created_at, updated_at, "
	    "queued_at, started_at, finished_at) SELECT 'r-' || g, "
	    "'%s:q:cap' || (g %% 20) || ':1', g || '-0', CASE WHEN g %% 100 = 0 "
	    "THEN 'failed' ELSE 'completed' END, 1, 'a' || (g %% 10) || '/' || "
	    "(g %% 4 + 1), CASE WHEN g %% 100 = 5 THEN 'wf-' || (g / 1000) END, "
	    "'{\"ok\": true}', now() - (%ld - g) * interval '10 ms', now(), "
	    "now(), now(), now() FROM generate_series(1, %ld) g", prefix, rows,
	    rows);
	pg_exec(pc, sql);
	pg_exec(pc, "ANALYZE tasks");
	PQfinish(pc);
	fprintf(stderr, "bench_api: %ld rows in the record in %.1f s\n", rows,
	    bench_mono_s() - t0);
}

int
main(int argc, char **argv)
{
	long rows = 1000000;
	int k = 300, batch = 60000, rounds = 3, opt, metrics, scrapable;
	double rate = 200, *ag, *ta, *me, *st, *pq, off[ROUNDS_MAX],
	    on[ROUNDS_MAX], ratio[ROUNDS_MAX], s;
	char db[64], sql[128], ci[512], *body = NULL;
	const char *pgbase = getenv("HIVE_TEST_PG");
	unsigned sport;
	redisContext *c;
	PGconn *pc;

	while ((opt = getopt(argc, argv, "n:r:k:b:s:p:")) != -1) {
		switch (opt) {
		case 'n': rows = atol(optarg); break;
		case 'r': rate = atof(optarg); break;
		case 'k': k = atoi(optarg); break;
		case 'b': batch = atoi(optarg); break;
		case 's': rounds = atoi(optarg); break;
		case 'p': scrape_path = optarg; break;
		default:
			fprintf(stderr, "usage: bench_api [-n record_rows] [-r rate] "
			    "[-k requests] [-b tasks] [-s rounds] [-p path]\n");
			return 2;
		}
	}
	if (rows < 200 || rate <= 0 || k < 10 || batch < 100 || rounds < 1 ||
	    rounds > ROUNDS_MAX)
		bench_die("-n >= 200, -r > 0, -k >= 10, -b >= 100, -s 1..%d",
		    ROUNDS_MAX);
	if (!getenv("HIVE_TEST_REDIS_HOST") || !getenv("HIVE_TEST_REDIS_PORT") ||
	    !pgbase || !getenv("HIVED") || !getenv("HIVE_WORKER") ||
	    !getenv("HIVE_ECHO"))
		bench_die("environment: run it through bench/run");
	signal(SIGPIPE, SIG_IGN);
	atexit(die_cleanup);
	snprintf(prefix, sizeof(prefix), "benchapi%ld", (long)getpid());
	snprintf(dir, sizeof(dir), "/tmp/hive-bench-api-XXXXXX");
	if (mkdtemp(dir) == NULL)
		bench_die("mkdtemp: %s", strerror(errno));
	snprintf(conf, sizeof(conf), "%s/hive.conf", dir);
	snprintf(logpath, sizeof(logpath), "%s/hived.log", dir);
	snprintf(portpath, sizeof(portpath), "%s/port", dir);
	snprintf(db, sizeof(db), "bench_api_%ld", (long)getpid());
	pc = pg_connect(pgbase);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
	pg_exec(pc, sql);
	PQfinish(pc);
	snprintf(ci, sizeof(ci), "%s dbname=%s", pgbase, db);
	start_hived(ci);
	wait_ready(ci);
	fill(ci, rows);
	c = redis_connect();
	burst(c, 1000, 0);           /* warm: worker, recorder, connections */

	/* 1. Requests while tasks flow, each beside its ceiling. */
	feed_rate = rate;
	feeder = spawn(feed_main);
	if (http_get(port, "/agents", &s, &body) != 200)
		bench_die("GET /agents: not 200");
	sport = start_static(body);
	free(body);
	metrics = http_get(port, "/metrics", &s, NULL);
	scrapable = http_get(port, scrape_path, &s, NULL);
	if (http_get(port, "/tasks?limit=100", &s, NULL) != 200)
		bench_die("GET /tasks?limit=100: not 200 (hived's log: %s)",
		    logpath);
	pc = pg_connect(ci);
	ag = calloc((size_t)k, sizeof(double));
	ta = calloc((size_t)k, sizeof(double));
	me = calloc((size_t)k, sizeof(double));
	st = calloc((size_t)k, sizeof(double));
	pq = calloc((size_t)k, sizeof(double));
	if (!ag || !ta || !me || !st || !pq)
		bench_die("out of memory");
	for (int i = 0; i < k; i++) {
		if (http_get(port, "/agents", &ag[i], NULL) != 200 ||
		    http_get(port, "/tasks?limit=100", &ta[i], NULL) != 200)
			bench_die("a GET failed (hived's log: %s)", logpath);
		if (metrics == 200 && http_get(port, "/metrics", &me[i], NULL) !=
		    200)
			bench_die("GET /metrics failed");
		http_get(sport, "/agents", &st[i], NULL);
		pq[i] = pg_page(pc);
	}
	kill_wait(&feeder);
	kill_wait(&server);
	PQfinish(pc);
	printf("api.record_rows: %ld rows (tasks in the record while "
	    "measured; %.0f tasks/s submitted meanwhile)\n", rows, rate);
	print_lat("api.agents", ag, k, "GET /agents, one echo instance");
	print_lat("api.tasks", ta, k, "GET /tasks?limit=100");
	if (metrics == 200)
		print_lat("api.metrics", me, k, "GET /metrics");
	else
		printf("api.metrics: absent (GET /metrics answered %d)\n",
		    metrics);
	print_lat("http.static", st, k, "ceiling: the same client, a static "
	    "answer of the same size on loopback");
	print_lat("pg.tasks", pq, k, "ceiling: the SELECT of GET /tasks"
	    "?limit=100 over libpq, one connection");

	/* 2. The worker saturated, rounds without and with a scraper. */
	if (scrapable != 200) {
		printf("worker.throughput.scraped: skipped (GET %s answered "
		    "%d)\n", scrape_path, scrapable);
	} else {
		/* Pairs in turn off-on, on-off: a trend over the run (the
		 * recorder's backlog grows) weighs on both alike. */
		for (int r = 0; r < rounds; r++) {
			if (r % 2 == 0)
				off[r] = burst(c, batch, 2 * (unsigned)r + 1);
			scraper = spawn(scrape_main);
			on[r] = burst(c, batch, 2 * (unsigned)r + 2);
			kill_wait(&scraper);
			if (r % 2 == 1)
				off[r] = burst(c, batch, 2 * (unsigned)r + 1);
			ratio[r] = on[r] / off[r];
		}
		double moff = median(off, rounds), mon = median(on, rounds);
		printf("worker.throughput.unscraped: %.0f tasks/s (one echo "
		    "worker, concurrency 64, %d tasks pipelined; median of %d "
		    "rounds)\n", moff, batch, rounds);
		printf("worker.throughput.scraped: %.0f tasks/s (the same, GET "
		    "%s once a second meanwhile; %.1f %%: the median of the "
		    "rounds' ratios)\n", mon, scrape_path,
		    100 * median(ratio, rounds));
	}
	redisFree(c);
	kill_wait(&hived);
	free(ag);
	free(ta);
	free(me);
	free(st);
	free(pq);
	/* HIVE_BENCH_KEEP: keep the database and hived's log. */
	if (getenv("HIVE_BENCH_KEEP") == NULL) {
		pc = pg_connect(pgbase);
		snprintf(sql, sizeof(sql), "DROP DATABASE %s", db);
		pg_exec(pc, sql);
		PQfinish(pc);
		unlink(conf);
		unlink(logpath);
		unlink(portpath);
		rmdir(dir);
	} else
		fprintf(stderr, "bench_api: kept database %s and %s\n", db,
		    logpath);
	return 0;
}
