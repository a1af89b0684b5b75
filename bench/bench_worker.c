/*
 * bench_worker.c - how fast hive-worker moves tasks, against ceilings
 * measured in the same run on the same machine and Redis.
 *
 *   worker.stream.throughput   one worker, mode=stream, the C echo handler:
 *                              N tasks submitted in pipelined batches,
 *                              from the first submit to the last result
 *   redis.ceiling              a bare hiredis loop over the same Redis:
 *                              pipelined XADD, XREADGROUP COUNT 64, XACK
 *   worker.exec.throughput     one worker, mode=exec, concurrency 1
 *   fork.ceiling               fork + exec + pipe I/O + waitpid of the same
 *                              handler in a loop
 *   worker.*.cpu               the worker process' own CPU time per task
 *                              (user + system, its handlers excluded)
 *   worker.stream.2_agents.throughput
 *                              two workers of two agents, each with its own
 *                              queue, loaded at once by two submitters: all
 *                              tasks over the time to the last result
 *   redis.ceiling.2_loops      two bare loops as above, on two streams, at
 *                              once (two threads, two connections)
 *   worker.rss.<N>_agents.*    VmRSS of the hive-worker processes of hived
 *                              running N agents of one instance (median,
 *                              max, total)
 *   worker.pss.<N>_agents.*, worker.rss_anon.<N>_agents.*
 *                              their Pss and RssAnon, read at the same
 *                              moment (benchutil.h: what each counts)
 *   rss.ceiling.sleep          VmRSS of sleep(1), started and read the same
 *                              way: the least a process costs
 *   pss.ceiling.sleep, rss_anon.ceiling.sleep
 *                              its Pss and RssAnon, read the same way
 *
 * The exec figures are taken in EXEC_ROUNDS rounds, each a slice of the
 * ceiling loop then a slice of the worker's tasks, so that both see the
 * same load on a machine that is not quiet; the CPU time per task is the
 * figure that load disturbs least.
 *
 * Output lines are "name: value unit (...)".  Run it through
 * bench/worker.sh, which starts a private Redis.
 *
 *   bench_worker [-n stream_tasks] [-e exec_tasks] [-c concurrency]
 *                [-a agents,agents... (RSS runs; "" for none)]
 *                [-s (use the unix socket)]
 *
 * -n is per agent: the 2-agent run moves twice as many tasks.  The RSS
 * runs need HIVED (the hived binary) in the environment.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "benchutil.h"
#include "hive_proto.h"

#define BATCH 1000
#define EXEC_ROUNDS 10

static const char *redis_host, *redis_port, *redis_sock;
static int use_sock;

static redisContext *
connect_redis(void)
{
	redisContext *c = use_sock ? redisConnectUnix(redis_sock) :
	    redisConnect(redis_host, atoi(redis_port));

	if (c == NULL || c->err)
		bench_die("connect to redis: %s", c ? c->errstr : "out of memory");
	return c;
}

/* One encoded task, id "<tag><i>", payload {"n": i}. */
static void
encode_task(msgpack_sbuffer *sb, const char *tag, int i)
{
	struct hive_task t;
	struct proto_err err;
	char id[64], why[256];
	msgpack_object payload[2];
	msgpack_object_kv kv;

	snprintf(id, sizeof(id), "%s%d", tag, i);
	memset(&t, 0, sizeof(t));
	t.v = HIVE_PROTO_VERSION;
	t.id = HIVE_STR(id);
	kv.key.type = MSGPACK_OBJECT_STR;
	kv.key.via.str.ptr = "n";
	kv.key.via.str.size = 1;
	kv.val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	kv.val.via.u64 = (uint64_t)i;
	payload[0].type = MSGPACK_OBJECT_MAP;
	payload[0].via.map.size = 1;
	payload[0].via.map.ptr = &kv;
	(void)payload[1];
	t.payload = payload[0];
	t.attempt = 1;
	msgpack_sbuffer_clear(sb);
	if (proto_encode_task(sb, &t, &err) == -1)
		bench_die("encode task: %s", proto_strerror(&err, why, sizeof(why)));
}

/* XADD n tasks to key in pipelined batches. */
static void
submit(redisContext *c, const char *key, const char *tag, int n)
{
	msgpack_sbuffer sb;
	redisReply *r;

	msgpack_sbuffer_init(&sb);
	for (int i = 0; i < n; i += BATCH) {
		int m = n - i < BATCH ? n - i : BATCH;
		for (int j = 0; j < m; j++) {
			encode_task(&sb, tag, i + j);
			redisAppendCommand(c, "XADD %s * m %b", key, sb.data,
			    sb.size);
		}
		for (int j = 0; j < m; j++) {
			if (redisGetReply(c, (void **)&r) != REDIS_OK)
				bench_die("XADD: %s", c->errstr);
			freeReplyObject(r);
		}
	}
	msgpack_sbuffer_destroy(&sb);
}

/* Wait for n entries on key after *last; returns when all came. */
static void
await_results(redisContext *c, const char *key, char *last, int n)
{
	redisReply *r, *entries;
	int got = 0;

	while (got < n) {
		r = redisCommand(c, "XREAD COUNT 1000 BLOCK 30000 STREAMS %s %s",
		    key, last);
		if (r == NULL)
			bench_die("XREAD: %s", c->errstr);
		if (r->type != REDIS_REPLY_ARRAY)
			bench_die("results: %s", "none for 30 s: is the worker running?");
		entries = r->element[0]->element[1];
		got += (int)entries->elements;
		snprintf(last, 64, "%s",
		    entries->element[entries->elements - 1]->element[0]->str);
		freeReplyObject(r);
	}
}

/*
 * The bare Redis loop: what a worker could do if it did nothing else.
 * n tasks XADDed to key (its group g made), then read with XREADGROUP
 * COUNT 64 and XACKed until all are done.
 */
static void
ceiling_loop(redisContext *c, const char *key, const char *tag, int n)
{
	redisReply *r, *entries;
	const char *argv[3 + 64];
	int done = 0;

	submit(c, key, tag, n);
	while (done < n) {
		r = redisCommand(c, "XREADGROUP GROUP g c COUNT 64 STREAMS %s >",
		    key);
		if (r == NULL || r->type != REDIS_REPLY_ARRAY)
			bench_die("XREADGROUP: %s", c->errstr);
		entries = r->element[0]->element[1];
		argv[0] = "XACK";
		argv[1] = key;
		argv[2] = "g";
		for (size_t i = 0; i < entries->elements; i++)
			argv[3 + i] = entries->element[i]->element[0]->str;
		done += (int)entries->elements;
		freeReplyObject(redisCommandArgv(c, 3 + (int)entries->elements,
		    argv, NULL));
		freeReplyObject(r);
	}
}

static double
redis_ceiling(redisContext *c, const char *prefix, int n)
{
	char key[128];
	double t0, t1;

	snprintf(key, sizeof(key), "%s:ceiling", prefix);
	bench_cmd(c, "XGROUP CREATE %s g 0 MKSTREAM", key);
	t0 = bench_mono_s();
	ceiling_loop(c, key, "c", n);
	t1 = bench_mono_s();
	bench_cmd(c, "DEL %s", key);
	return n / (t1 - t0);
}

/*
 * One client thread of the 2-agent runs: its own connection, set up before
 * the barrier, then either the bare loop over `key` (ceiling) or the
 * submission of n tasks to the queue `key` (a worker reads them).
 */
struct client {
	pthread_t tid;
	pthread_barrier_t *go;
	char key[HIVE_KEY_MAX];
	char tag[16];
	int n;
	int ceiling;
	double end;                  /* ceiling: when its loop was done */
};

static void *
client_main(void *arg)
{
	struct client *cl = arg;
	redisContext *c = connect_redis();

	if (cl->ceiling)
		bench_cmd(c, "XGROUP CREATE %s g 0 MKSTREAM", cl->key);
	pthread_barrier_wait(cl->go);
	if (cl->ceiling) {
		ceiling_loop(c, cl->key, cl->tag, cl->n);
		cl->end = bench_mono_s();
		bench_cmd(c, "DEL %s", cl->key);
	} else
		submit(c, cl->key, cl->tag, cl->n);
	redisFree(c);
	return NULL;
}

/* Starts the clients (keys and counts filled in) held at a barrier; once
 * they are connected, lets them go and returns the time they went. */
static double
clients_start(struct client *cl, int ncl, pthread_barrier_t *go)
{
	double t0;
	int e;

	if ((e = pthread_barrier_init(go, NULL, (unsigned)ncl + 1)) != 0)
		bench_die("pthread_barrier_init: %s", strerror(e));
	for (int i = 0; i < ncl; i++) {
		cl[i].go = go;
		if ((e = pthread_create(&cl[i].tid, NULL, client_main, &cl[i])) != 0)
			bench_die("pthread_create: %s", strerror(e));
	}
	pthread_barrier_wait(go);
	t0 = bench_mono_s();
	return t0;
}

static void
clients_join(struct client *cl, int ncl, pthread_barrier_t *go)
{
	for (int i = 0; i < ncl; i++)
		pthread_join(cl[i].tid, NULL);
	pthread_barrier_destroy(go);
}

/* Two bare loops at once, each on its own stream: tasks/s of both. */
static double
redis_ceiling2(const char *prefix, int n)
{
	struct client cl[2];
	pthread_barrier_t go;
	double t0, t1;

	memset(cl, 0, sizeof(cl));
	for (int i = 0; i < 2; i++) {
		snprintf(cl[i].key, sizeof(cl[i].key), "%s:ceiling%d", prefix, i);
		snprintf(cl[i].tag, sizeof(cl[i].tag), "c%d-", i);
		cl[i].n = n;
		cl[i].ceiling = 1;
	}
	t0 = clients_start(cl, 2, &go);
	clients_join(cl, 2, &go);
	t1 = cl[0].end > cl[1].end ? cl[0].end : cl[1].end;
	return 2.0 * n / (t1 - t0);
}

/* A worker of agent `agent` whose one capability has the same name. */
static pid_t
start_worker(const char *prefix, const char *agent, const char *mode,
    const char *conc)
{
	char redis[256];
	pid_t pid;

	if (use_sock)
		snprintf(redis, sizeof(redis), "%s", redis_sock);
	else
		snprintf(redis, sizeof(redis), "%s:%s", redis_host, redis_port);
	if ((pid = fork()) == -1)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		execl(getenv("HIVE_WORKER"), "hive-worker", "--agent", agent,
		    "--capabilities", agent, "--mode", mode, "--concurrency",
		    conc, "--prefix", prefix, "--redis", redis, "--",
		    getenv("HIVE_ECHO"), (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void
stop_worker(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "bench_worker: worker exit status %#x\n", st);
}

/* CPU time (user + system) of pid itself, without its children, in s. */
static double
proc_cpu(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		bench_die("open: %s", path);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After "pid (comm)": state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime ... */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	    &ut, &st) != 2)
		bench_die("parse: %s", path);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* fork + exec of the handler, its task on stdin, its answer read, waitpid:
 * seconds for n of them. */
static double
fork_loop(int n)
{
	char line[256], buf[4096];
	double t0;
	int in[2], out[2], st, len;
	pid_t pid;

	t0 = bench_mono_s();
	for (int i = 0; i < n; i++) {
		len = snprintf(line, sizeof(line), "{\"id\":\"f%d\",\"attempt\":1,"
		    "\"agent\":\"bench/1\",\"payload\":{\"n\":%d},\"memory\":{}}\n",
		    i, i);
		if (pipe(in) == -1 || pipe(out) == -1)
			bench_die("pipe: %s", strerror(errno));
		if ((pid = fork()) == -1)
			bench_die("fork: %s", strerror(errno));
		if (pid == 0) {
			dup2(in[0], 0);
			dup2(out[1], 1);
			close(in[0]); close(in[1]); close(out[0]); close(out[1]);
			execl(getenv("HIVE_ECHO"), "hive-echo", (char *)NULL);
			_exit(127);
		}
		close(in[0]);
		close(out[1]);
		if (write(in[1], line, (size_t)len) != len)
			bench_die("write: %s", strerror(errno));
		close(in[1]);
		while (read(out[0], buf, sizeof(buf)) > 0)
			;
		close(out[0]);
		waitpid(pid, &st, 0);
	}
	return bench_mono_s() - t0;
}

struct run {
	double secs;                 /* the worker's time over its tasks */
	double cpu;                  /* its own CPU time meanwhile */
	double fork_secs;            /* rounds > 1: the ceiling's time */
};

/*
 * One worker over n tasks, after one warm-up task, in `rounds` slices;
 * with rounds > 1 the ceiling loop runs as many tasks before each slice.
 */
static void
worker_run(redisContext *c, const char *prefix, const char *mode,
    const char *conc, int n, int rounds, struct run *out)
{
	char q[HIVE_KEY_MAX], results[HIVE_KEY_MAX], last[64] = "0", tag[16];
	double t0, cpu0;
	pid_t w;
	int m;

	memset(out, 0, sizeof(*out));
	proto_key_queue(q, sizeof(q), prefix, "bench", 1);
	proto_key_named(results, sizeof(results), prefix, "results");
	w = start_worker(prefix, "bench", mode, conc);
	submit(c, q, "w", 1);
	await_results(c, results, last, 1);
	for (int r = 0; r < rounds; r++) {
		m = n / rounds + (r == rounds - 1 ? n % rounds : 0);
		if (rounds > 1)
			out->fork_secs += fork_loop(m);
		snprintf(tag, sizeof(tag), "t%d-", r);
		cpu0 = proc_cpu(w);
		t0 = bench_mono_s();
		submit(c, q, tag, m);
		await_results(c, results, last, m);
		out->secs += bench_mono_s() - t0;
		out->cpu += proc_cpu(w) - cpu0;
	}
	stop_worker(w);
}

/*
 * Two workers of two agents (bench-a, bench-b), each fed by its own
 * submitter thread on its own queue, n tasks each, loaded at once; this
 * thread reads the shared results stream.  Seconds from the submitters'
 * start to the last of the 2n results; *cpu: both workers' CPU time.
 */
static double
worker_run2(redisContext *c, const char *prefix, const char *conc, int n,
    double *cpu)
{
	static const char *agents[2] = { "bench-a", "bench-b" };
	char results[HIVE_KEY_MAX], last[64] = "0";
	struct client cl[2];
	pthread_barrier_t go;
	double t0, secs, cpu0 = 0;
	pid_t w[2];

	memset(cl, 0, sizeof(cl));
	proto_key_named(results, sizeof(results), prefix, "results");
	for (int i = 0; i < 2; i++) {
		proto_key_queue(cl[i].key, sizeof(cl[i].key), prefix, agents[i], 1);
		snprintf(cl[i].tag, sizeof(cl[i].tag), "%c", 'a' + i);
		cl[i].n = n;
		w[i] = start_worker(prefix, agents[i], "stream", conc);
		submit(c, cl[i].key, "warm", 1);
	}
	await_results(c, results, last, 2);
	for (int i = 0; i < 2; i++)
		cpu0 += proc_cpu(w[i]);
	t0 = clients_start(cl, 2, &go);
	await_results(c, results, last, 2 * n);
	secs = bench_mono_s() - t0;
	clients_join(cl, 2, &go);
	*cpu = -cpu0;
	for (int i = 0; i < 2; i++) {
		*cpu += proc_cpu(w[i]);
		stop_worker(w[i]);
	}
	return secs;
}

/* ---- worker RSS under hived ---- */

/* State letter, parent and command name of pid from /proc/pid/stat; -1
 * when it is gone. */
static int
proc_stat(pid_t pid, char *state, pid_t *ppid, char *comm, size_t commlen)
{
	char path[64], buf[1024], *l, *r;
	long pp;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((l = strchr(buf, '(')) == NULL || (r = strrchr(buf, ')')) == NULL ||
	    sscanf(r + 1, " %c %ld", state, &pp) != 2)
		return -1;
	*r = '\0';
	snprintf(comm, commlen, "%s", l + 1);
	*ppid = (pid_t)pp;
	return 0;
}

static int
cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

/*
 * The ceiling: VmRSS, Pss and RssAnon (kB) of `sleep 60` started with
 * fork + exec, read once it sleeps; the median of 5 of each.
 */
static struct bench_mem
sleep_mem(void)
{
	long rss[5], pss[5], anon[5];
	struct bench_mem m;
	char st, comm[64];
	pid_t pid, pp;
	double end;

	for (int i = 0; i < 5; i++) {
		fflush(stdout);
		if ((pid = fork()) == -1)
			bench_die("fork: %s", strerror(errno));
		if (pid == 0) {
			execlp("sleep", "sleep", "60", (char *)NULL);
			_exit(127);
		}
		end = bench_mono_s() + 5;
		while (proc_stat(pid, &st, &pp, comm, sizeof(comm)) == -1 ||
		    strcmp(comm, "sleep") != 0 || st != 'S') {
			if (bench_mono_s() > end)
				bench_die("sleep did not start");
			usleep(1000);
		}
		usleep(50000);
		if (bench_proc_mem(pid, &m) == -1)
			bench_die("no VmRSS for sleep");
		rss[i] = m.rss;
		pss[i] = m.pss;
		anon[i] = m.anon;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	qsort(rss, 5, sizeof(rss[0]), cmp_long);
	qsort(pss, 5, sizeof(pss[0]), cmp_long);
	qsort(anon, 5, sizeof(anon[0]), cmp_long);
	return (struct bench_mem){ .rss = rss[2], .pss = pss[2], .anon = anon[2] };
}

/*
 * worker.<measure>.<agents>_agents.median, .max and .total of the n
 * workers' values v (kB, sorted here), the first two beside the same
 * measure of a sleep (ceil_kb).  The RSS lines are printed by the caller.
 */
static void
print_measure(const char *measure, const char *what, int agents, long *v,
    int n, long ceil_kb)
{
	long total = 0;

	qsort(v, (size_t)n, sizeof(*v), cmp_long);
	if (v[0] < 0 || ceil_kb <= 0) {
		printf("worker.%s.%d_agents: skipped (no %s in /proc)\n", measure,
		    agents, what);
		return;
	}
	for (int i = 0; i < n; i++)
		total += v[i];
	printf("worker.%s.%d_agents.median: %.2f MB (ceiling sleep %.2f MB, "
	    "%.1fx; %s of the %d hive-worker processes of hived, median)\n",
	    measure, agents, v[n / 2] / 1024., ceil_kb / 1024.,
	    (double)v[n / 2] / ceil_kb, what, n);
	printf("worker.%s.%d_agents.max: %.2f MB (ceiling sleep %.2f MB, "
	    "%.1fx)\n", measure, agents, v[n - 1] / 1024., ceil_kb / 1024.,
	    (double)v[n - 1] / ceil_kb);
	printf("worker.%s.%d_agents.total: %.2f MB (%s summed over the %d "
	    "workers)\n", measure, agents, total / 1024., what, n);
}

/* hived started with its log on a pipe, which is read for ready lines. */
struct hived {
	pid_t pid;
	int logfd;
	char buf[8192];
	size_t len;
	int ready;                   /* "state=ready from=starting" lines */
};

/* Reads hived's log for up to ms; counts ready lines.  -1 at EOF. */
static int
hived_read(struct hived *h, int ms)
{
	struct pollfd p = { h->logfd, POLLIN, 0 };
	char *nl, *line;
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return 0;
	if ((n = read(h->logfd, h->buf + h->len, sizeof(h->buf) - 1 - h->len)) <= 0)
		return -1;
	h->len += (size_t)n;
	h->buf[h->len] = '\0';
	line = h->buf;
	while ((nl = strchr(line, '\n')) != NULL) {
		*nl = '\0';
		if (strstr(line, "state=ready") && strstr(line, "from=starting"))
			h->ready++;
		line = nl + 1;
	}
	h->len -= (size_t)(line - h->buf);
	memmove(h->buf, line, h->len);
	if (h->len == sizeof(h->buf) - 1)
		h->len = 0;          /* a line longer than the buffer: drop it */
	return 0;
}

/*
 * hived with `agents` agents of one stream-mode instance each (the echo
 * handler), all ready, then 2 s to settle: VmRSS, Pss and RssAnon of each
 * hive-worker whose parent is hived, and of hived.  Prints median, max and
 * total beside the ceiling (sleep for one process, times the count for
 * the total of VmRSS).
 */
static void
rss_run(const char *prefix, int agents, struct bench_mem sleep)
{
	char dir[] = "/tmp/hive-bench-rss-XXXXXX", conf[64], st, comm[64];
	char what[32];
	long *rss, *pss, *anon, sleep_kb = sleep.rss, total = 0;
	struct bench_mem m, hm;
	struct hived h;
	struct dirent *de;
	double end;
	int fds[2], n = 0, stw;
	pid_t pp;
	DIR *d;
	FILE *f;

	if (mkdtemp(dir) == NULL)
		bench_die("mkdtemp: %s", strerror(errno));
	snprintf(conf, sizeof(conf), "%s/hive.conf", dir);
	if ((f = fopen(conf, "we")) == NULL)
		bench_die("%s: %s", conf, strerror(errno));
	fprintf(f, "[hive]\nredis = %s:%s\nprefix = %s-rss%d\nworker = %s\n"
	    "http =\nheartbeat_interval = 1s\nstop_timeout = 30s\n\n",
	    redis_host, redis_port, prefix, agents, getenv("HIVE_WORKER"));
	for (int a = 0; a < agents; a++)
		fprintf(f, "[agent \"r%d\"]\ncommand = %s\nmode = stream\n"
		    "heartbeat_deadline = 60s\n\n", a, getenv("HIVE_ECHO"));
	if (fclose(f) == EOF)
		bench_die("%s: %s", conf, strerror(errno));

	memset(&h, 0, sizeof(h));
	if (pipe2(fds, O_CLOEXEC) == -1)
		bench_die("pipe: %s", strerror(errno));
	fflush(stdout);
	if ((h.pid = fork()) == -1)
		bench_die("fork: %s", strerror(errno));
	if (h.pid == 0) {
		dup2(fds[1], 2);
		execl(getenv("HIVED"), "hived", "--config", conf, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	h.logfd = fds[0];
	end = bench_mono_s() + 120;
	while (h.ready < agents) {
		if (hived_read(&h, 100) == -1 || bench_mono_s() > end)
			bench_die("hived: %d of %d workers ready", h.ready, agents);
	}
	for (end = bench_mono_s() + 2; bench_mono_s() < end;)
		hived_read(&h, 100);

	if ((rss = calloc((size_t)agents, sizeof(*rss))) == NULL ||
	    (pss = calloc((size_t)agents, sizeof(*pss))) == NULL ||
	    (anon = calloc((size_t)agents, sizeof(*anon))) == NULL)
		bench_die("out of memory");
	if ((d = opendir("/proc")) == NULL)
		bench_die("/proc: %s", strerror(errno));
	while ((de = readdir(d)) != NULL && n < agents) {
		pid_t pid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atol(de->d_name);
		if (proc_stat(pid, &st, &pp, comm, sizeof(comm)) == 0 &&
		    pp == h.pid && strcmp(comm, "hive-worker") == 0 &&
		    bench_proc_mem(pid, &m) == 0) {
			rss[n] = m.rss;
			pss[n] = m.pss;
			anon[n] = m.anon;
			total += rss[n];
			n++;
		}
	}
	closedir(d);
	if (n != agents)
		bench_die("%d hive-worker processes under hived, %d expected", n,
		    agents);
	if (bench_proc_mem(h.pid, &hm) == -1)
		bench_die("hived is gone");
	qsort(rss, (size_t)n, sizeof(*rss), cmp_long);
	qsort(anon, (size_t)n, sizeof(*anon), cmp_long);

	printf("rss.ceiling.sleep_x%d: %.2f MB (%d x rss.ceiling.sleep)\n",
	    agents, agents * sleep_kb / 1024., agents);
	printf("worker.rss.%d_agents.median: %.2f MB (ceiling sleep %.2f MB, "
	    "%.1fx; VmRSS of the %d hive-worker processes of hived, median; "
	    "RssAnon median %.2f MB)\n", agents, rss[n / 2] / 1024.,
	    sleep_kb / 1024., (double)rss[n / 2] / sleep_kb, n,
	    anon[n / 2] / 1024.);
	printf("worker.rss.%d_agents.max: %.2f MB (ceiling sleep %.2f MB, %.1fx)\n",
	    agents, rss[n - 1] / 1024., sleep_kb / 1024.,
	    (double)rss[n - 1] / sleep_kb);
	printf("worker.rss.%d_agents.total: %.2f MB (ceiling %d x sleep %.2f MB, "
	    "%.1fx)\n", agents, total / 1024., agents,
	    agents * sleep_kb / 1024., (double)total / (agents * sleep_kb));
	print_measure("pss", "Pss", agents, pss, n, sleep.pss);
	print_measure("rss_anon", "RssAnon", agents, anon, n, sleep.anon);
	printf("hived.rss.%d_agents_of_1: %.2f MB (hived itself, beside the "
	    "workers above)\n", agents, hm.rss / 1024.);
	snprintf(what, sizeof(what), "%d_agents_of_1", agents);
	bench_print_pss_anon("hived", what, &hm);
	fflush(stdout);
	free(rss);
	free(pss);
	free(anon);

	/* Keep reading: hived must never block on a full pipe. */
	kill(h.pid, SIGTERM);
	while (waitpid(h.pid, &stw, WNOHANG) == 0)
		if (hived_read(&h, 100) == -1)
			usleep(10000);   /* EOF: hived is on its way out */
	if (!WIFEXITED(stw) || WEXITSTATUS(stw) != 0)
		fprintf(stderr, "bench_worker: hived exit status %#x\n", stw);
	close(h.logfd);
	unlink(conf);
	rmdir(dir);
}

int
main(int argc, char **argv)
{
	int n = 100000, ne = 2000, ch;
	const char *conc = "256", *agents = "8,500";
	char prefix[64], *list, *tok, *save;
	redisContext *c;
	double ceil, ceil2, secs2, cpu2;
	struct bench_mem sleep;
	struct run rs, re;

	while ((ch = getopt(argc, argv, "n:e:c:a:s")) != -1) {
		switch (ch) {
		case 'n': n = atoi(optarg); break;
		case 'e': ne = atoi(optarg); break;
		case 'c': conc = optarg; break;
		case 'a': agents = optarg; break;
		case 's': use_sock = 1; break;
		default:
			fprintf(stderr, "usage: bench_worker [-n tasks] [-e exec_tasks] "
			    "[-c concurrency] [-a agents,...] [-s]\n");
			return 2;
		}
	}
	redis_host = getenv("HIVE_TEST_REDIS_HOST");
	redis_port = getenv("HIVE_TEST_REDIS_PORT");
	redis_sock = getenv("HIVE_TEST_REDIS_SOCK");
	if (!redis_host || !redis_port || !getenv("HIVE_WORKER") ||
	    !getenv("HIVE_ECHO") || (use_sock && !redis_sock) ||
	    (*agents != '\0' && !getenv("HIVED")))
		bench_die("environment: %s", "run it through bench/worker.sh");
	signal(SIGPIPE, SIG_IGN);
	c = connect_redis();

	snprintf(prefix, sizeof(prefix), "bench%ld", (long)getpid());
	ceil = redis_ceiling(c, prefix, n);
	worker_run(c, prefix, "stream", conc, n, 1, &rs);
	printf("redis.ceiling: %.0f tasks/s (pipelined XADD, XREADGROUP COUNT 64, XACK)\n",
	    ceil);
	printf("worker.stream.throughput: %.0f tasks/s (ceiling %.0f tasks/s, %.0f %%; "
	    "%d tasks, concurrency %s)\n", n / rs.secs, ceil,
	    100.0 * n / rs.secs / ceil, n, conc);
	printf("worker.stream.cpu: %.1f us/task (the worker process only)\n",
	    1e6 * rs.cpu / n);
	fflush(stdout);

	snprintf(prefix, sizeof(prefix), "bench%ld-2", (long)getpid());
	ceil2 = redis_ceiling2(prefix, n);
	secs2 = worker_run2(c, prefix, conc, n, &cpu2);
	printf("redis.ceiling.2_loops: %.0f tasks/s (two bare loops at once, "
	    "each on its own stream and connection: pipelined XADD, XREADGROUP "
	    "COUNT 64, XACK; 2 x %d tasks)\n", ceil2, n);
	printf("worker.stream.2_agents.throughput: %.0f tasks/s (ceiling %.0f "
	    "tasks/s, %.0f %%; two stream workers of two agents, each its own "
	    "queue and submitter, at once; 2 x %d tasks, concurrency %s; 1 agent: "
	    "%.0f tasks/s)\n", 2.0 * n / secs2, ceil2,
	    100.0 * 2.0 * n / secs2 / ceil2, n, conc, n / rs.secs);
	printf("worker.stream.2_agents.cpu: %.1f us/task (both worker processes "
	    "only)\n", 1e6 * cpu2 / (2.0 * n));
	fflush(stdout);

	snprintf(prefix, sizeof(prefix), "bench%ld-exec", (long)getpid());
	if (ne < EXEC_ROUNDS)
		ne = EXEC_ROUNDS;
	worker_run(c, prefix, "exec", "1", ne, EXEC_ROUNDS, &re);
	printf("fork.ceiling: %.0f tasks/s (fork+exec+wait of the echo handler)\n",
	    ne / re.fork_secs);
	printf("worker.exec.throughput: %.0f tasks/s (fork+exec+wait %.0f tasks/s, "
	    "%.0f %%; %d tasks, concurrency 1, %d rounds interleaved with the "
	    "ceiling)\n", ne / re.secs, ne / re.fork_secs,
	    100.0 * re.fork_secs / re.secs, ne, EXEC_ROUNDS);
	printf("worker.exec.cpu: %.0f us/task (the worker process only, its "
	    "handlers excluded)\n", 1e6 * re.cpu / ne);
	fflush(stdout);

	if (*agents != '\0') {
		sleep = sleep_mem();
		printf("rss.ceiling.sleep: %.2f MB (VmRSS of sleep(1), started and "
		    "read the same way, median of 5)\n", sleep.rss / 1024.);
		if (sleep.pss >= 0)
			printf("pss.ceiling.sleep: %.2f MB (Pss of the same, median "
			    "of 5)\n", sleep.pss / 1024.);
		printf("rss_anon.ceiling.sleep: %.2f MB (RssAnon of the same, "
		    "median of 5)\n", sleep.anon / 1024.);
		snprintf(prefix, sizeof(prefix), "bench%ld", (long)getpid());
		if ((list = strdup(agents)) == NULL)
			bench_die("out of memory");
		for (tok = strtok_r(list, ",", &save); tok != NULL;
		    tok = strtok_r(NULL, ",", &save))
			if (atoi(tok) > 0)
				rss_run(prefix, atoi(tok), sleep);
		free(list);
	}

	bench_cmd(c, "EVAL %s 0 %s", "for _,k in ipairs(redis.call('KEYS', ARGV[1]..'*')) "
	    "do redis.call('DEL', k) end return 0", "bench");
	redisFree(c);
	return 0;
}
