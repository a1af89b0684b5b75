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
 *                [-s (use the unix socket)]
 */
#include <errno.h>
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

/* The bare Redis loop: what a worker could do if it did nothing else. */
static double
redis_ceiling(redisContext *c, const char *prefix, int n)
{
	char key[128];
	redisReply *r, *entries;
	const char *argv[3 + 64];
	double t0, t1;
	int done = 0;

	snprintf(key, sizeof(key), "%s:ceiling", prefix);
	bench_cmd(c, "XGROUP CREATE %s g 0 MKSTREAM", key);
	t0 = bench_mono_s();
	submit(c, key, "c", n);
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
	t1 = bench_mono_s();
	bench_cmd(c, "DEL %s", key);
	return n / (t1 - t0);
}

static pid_t
start_worker(const char *prefix, const char *mode, const char *conc)
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
		execl(getenv("HIVE_WORKER"), "hive-worker", "--agent", "bench",
		    "--capabilities", "bench", "--mode", mode, "--concurrency",
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
	w = start_worker(prefix, mode, conc);
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

int
main(int argc, char **argv)
{
	int n = 100000, ne = 2000, ch;
	const char *conc = "256";
	char prefix[64];
	redisContext *c;
	double ceil;
	struct run rs, re;

	while ((ch = getopt(argc, argv, "n:e:c:s")) != -1) {
		switch (ch) {
		case 'n': n = atoi(optarg); break;
		case 'e': ne = atoi(optarg); break;
		case 'c': conc = optarg; break;
		case 's': use_sock = 1; break;
		default:
			fprintf(stderr, "usage: bench_worker [-n tasks] [-e exec_tasks] "
			    "[-c concurrency] [-s]\n");
			return 2;
		}
	}
	redis_host = getenv("HIVE_TEST_REDIS_HOST");
	redis_port = getenv("HIVE_TEST_REDIS_PORT");
	redis_sock = getenv("HIVE_TEST_REDIS_SOCK");
	if (!redis_host || !redis_port || !getenv("HIVE_WORKER") ||
	    !getenv("HIVE_ECHO") || (use_sock && !redis_sock))
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

	bench_cmd(c, "EVAL %s 0 %s", "for _,k in ipairs(redis.call('KEYS', ARGV[1]..'*')) "
	    "do redis.call('DEL', k) end return 0", "bench");
	redisFree(c);
	return 0;
}
