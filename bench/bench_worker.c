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

#include "hive_proto.h"

#define BATCH 1000

static const char *redis_host, *redis_port, *redis_sock;
static int use_sock;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void __attribute__((noreturn))
die(const char *what, const char *why)
{
	fprintf(stderr, "bench_worker: %s: %s\n", what, why);
	exit(1);
}

static redisContext *
connect_redis(void)
{
	redisContext *c = use_sock ? redisConnectUnix(redis_sock) :
	    redisConnect(redis_host, atoi(redis_port));

	if (c == NULL || c->err)
		die("connect to redis", c ? c->errstr : "out of memory");
	return c;
}

static void
cmd(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	redisReply *r;

	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (r == NULL)
		die("redis", c->errstr);
	freeReplyObject(r);
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
		die("encode task", proto_strerror(&err, why, sizeof(why)));
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
				die("XADD", c->errstr);
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
			die("XREAD", c->errstr);
		if (r->type != REDIS_REPLY_ARRAY)
			die("results", "none for 30 s: is the worker running?");
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
	cmd(c, "XGROUP CREATE %s g 0 MKSTREAM", key);
	t0 = now_s();
	submit(c, key, "c", n);
	while (done < n) {
		r = redisCommand(c, "XREADGROUP GROUP g c COUNT 64 STREAMS %s >",
		    key);
		if (r == NULL || r->type != REDIS_REPLY_ARRAY)
			die("XREADGROUP", c->errstr);
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
	t1 = now_s();
	cmd(c, "DEL %s", key);
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
		die("fork", strerror(errno));
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

/* Tasks/s of one worker over n tasks, after one warm-up task. */
static double
worker_run(redisContext *c, const char *prefix, const char *mode,
    const char *conc, int n)
{
	char q[HIVE_KEY_MAX], results[HIVE_KEY_MAX], last[64] = "0";
	double t0, t1;
	pid_t w;

	proto_key_queue(q, sizeof(q), prefix, "bench", 1);
	proto_key_named(results, sizeof(results), prefix, "results");
	w = start_worker(prefix, mode, conc);
	submit(c, q, "w", 1);
	await_results(c, results, last, 1);
	t0 = now_s();
	submit(c, q, "t", n);
	await_results(c, results, last, n);
	t1 = now_s();
	stop_worker(w);
	return n / (t1 - t0);
}

/* fork + exec of the handler, its task on stdin, its answer read, waitpid. */
static double
fork_ceiling(int n)
{
	msgpack_sbuffer sb;
	char line[256], buf[4096];
	double t0, t1;
	int in[2], out[2], st, len;
	pid_t pid;

	msgpack_sbuffer_init(&sb);
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		len = snprintf(line, sizeof(line), "{\"id\":\"f%d\",\"attempt\":1,"
		    "\"agent\":\"bench/1\",\"payload\":{\"n\":%d},\"memory\":{}}\n",
		    i, i);
		if (pipe(in) == -1 || pipe(out) == -1)
			die("pipe", strerror(errno));
		if ((pid = fork()) == -1)
			die("fork", strerror(errno));
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
			die("write", strerror(errno));
		close(in[1]);
		while (read(out[0], buf, sizeof(buf)) > 0)
			;
		close(out[0]);
		waitpid(pid, &st, 0);
	}
	t1 = now_s();
	msgpack_sbuffer_destroy(&sb);
	return n / (t1 - t0);
}

int
main(int argc, char **argv)
{
	int n = 100000, ne = 2000, ch;
	const char *conc = "256";
	char prefix[64];
	redisContext *c;
	double ceil, ws, fk, we;

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
		die("environment", "run it through bench/worker.sh");
	signal(SIGPIPE, SIG_IGN);
	c = connect_redis();

	snprintf(prefix, sizeof(prefix), "bench%ld", (long)getpid());
	ceil = redis_ceiling(c, prefix, n);
	ws = worker_run(c, prefix, "stream", conc, n);
	printf("redis.ceiling: %.0f tasks/s (pipelined XADD, XREADGROUP COUNT 64, XACK)\n",
	    ceil);
	printf("worker.stream.throughput: %.0f tasks/s (ceiling %.0f tasks/s, %.0f %%; "
	    "%d tasks, concurrency %s)\n", ws, ceil, 100.0 * ws / ceil, n, conc);
	fflush(stdout);

	snprintf(prefix, sizeof(prefix), "bench%ld-exec", (long)getpid());
	fk = fork_ceiling(ne);
	we = worker_run(c, prefix, "exec", "1", ne);
	printf("fork.ceiling: %.0f tasks/s (fork+exec+wait of the echo handler)\n", fk);
	printf("worker.exec.throughput: %.0f tasks/s (fork+exec+wait %.0f tasks/s, "
	    "%.0f %%; %d tasks, concurrency 1)\n", we, fk, 100.0 * we / fk, ne);

	cmd(c, "EVAL %s 0 %s", "for _,k in ipairs(redis.call('KEYS', ARGV[1]..'*')) "
	    "do redis.call('DEL', k) end return 0", "bench");
	redisFree(c);
	return 0;
}
