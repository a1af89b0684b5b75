/*
 * bench_progress.c - what progress lines cost a worker (issue 18): one
 * mode=stream worker running bench/progress_handler.c, whose tasks each
 * take 100 ms; in half of the rounds every task also writes a progress
 * line every 10 ms (10 per task), in the other half none.  Rounds of the
 * two kinds alternate in one run, on one worker, so that both meet the
 * same machine; each kind's figures are the sum of its rounds.
 *
 *   worker.progress.none.throughput   tasks/s, beside its ceiling: the
 *                                     concurrency over the task's 100 ms
 *   worker.progress.10ms.throughput   tasks/s, beside the none figure
 *   worker.progress.*.cpu             the worker's own CPU per task
 *   redis.progress.*.xadd             XADDs per task (INFO commandstats):
 *                                     the result, and the output
 *                                     stream's writes once coalesced
 *
 * Environment (bench/run sets it): HIVE_TEST_REDIS_HOST/PORT,
 * HIVE_WORKER, HIVE_PROGRESS_HANDLER.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "benchutil.h"
#include "hive_proto.h"

#define TASK_MS  100                 /* progress_handler.c's */
#define BATCH    1000

struct kind {
	const char *name;
	int p;                       /* the payload's "p" */
	double secs, cpu;
	long long xadd;
	int tasks;
};

static void
encode_task(msgpack_sbuffer *sb, const char *tag, int i, int p)
{
	struct hive_task t;
	struct proto_err err;
	char id[64], why[256];
	msgpack_object payload;
	msgpack_object_kv kv;

	snprintf(id, sizeof(id), "%s%d", tag, i);
	memset(&t, 0, sizeof(t));
	t.v = HIVE_PROTO_VERSION;
	t.id = HIVE_STR(id);
	kv.key.type = MSGPACK_OBJECT_STR;
	kv.key.via.str.ptr = "p";
	kv.key.via.str.size = 1;
	kv.val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	kv.val.via.u64 = (uint64_t)p;
	payload.type = MSGPACK_OBJECT_MAP;
	payload.via.map.size = 1;
	payload.via.map.ptr = &kv;
	t.payload = payload;
	t.attempt = 1;
	msgpack_sbuffer_clear(sb);
	if (proto_encode_task(sb, &t, &err) == -1)
		bench_die("encode task: %s", proto_strerror(&err, why, sizeof(why)));
}

static void
submit(redisContext *c, const char *key, const char *tag, int n, int p)
{
	msgpack_sbuffer sb;
	redisReply *r;

	msgpack_sbuffer_init(&sb);
	for (int i = 0; i < n; i += BATCH) {
		int m = n - i < BATCH ? n - i : BATCH;
		for (int j = 0; j < m; j++) {
			encode_task(&sb, tag, i + j, p);
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
			bench_die("results: %s", "none for 30 s");
		entries = r->element[0]->element[1];
		got += (int)entries->elements;
		snprintf(last, 64, "%s",
		    entries->element[entries->elements - 1]->element[0]->str);
		freeReplyObject(r);
	}
}

/* XADD calls Redis has served so far. */
static long long
xadd_calls(redisContext *c)
{
	redisReply *r = redisCommand(c, "INFO commandstats");
	const char *p;
	long long n = 0;

	if (r == NULL || r->type != REDIS_REPLY_STRING)
		bench_die("INFO: %s", c->errstr);
	if ((p = strstr(r->str, "cmdstat_xadd:calls=")) != NULL)
		n = atoll(p + strlen("cmdstat_xadd:calls="));
	freeReplyObject(r);
	return n;
}

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
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	    &ut, &st) != 2)
		bench_die("parse: %s", path);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int
main(int argc, char **argv)
{
	const char *host = getenv("HIVE_TEST_REDIS_HOST");
	const char *port = getenv("HIVE_TEST_REDIS_PORT");
	const char *conc = "200";
	struct kind kinds[2] = { { "none", 0, 0, 0, 0, 0 },
		{ "10ms", 1, 0, 0, 0, 0 } };
	char prefix[64], redis[256], q[HIVE_KEY_MAX], res[HIVE_KEY_MAX];
	char last[64] = "0", tag[32];
	int n = 2000, rounds = 4, ch, st;
	redisContext *c;
	long long x0;
	double t0, cpu0;
	pid_t w;

	while ((ch = getopt(argc, argv, "n:r:c:")) != -1) {
		switch (ch) {
		case 'n': n = atoi(optarg); break;
		case 'r': rounds = atoi(optarg); break;
		case 'c': conc = optarg; break;
		default:
			fprintf(stderr, "usage: bench_progress [-n tasks per round] "
			    "[-r rounds of each kind] [-c concurrency]\n");
			return 2;
		}
	}
	if (!host || !port || !getenv("HIVE_WORKER") ||
	    !getenv("HIVE_PROGRESS_HANDLER") || n < 1 || rounds < 1)
		bench_die("environment: %s", "run it through bench/run");
	signal(SIGPIPE, SIG_IGN);
	if ((c = redisConnect(host, atoi(port))) == NULL || c->err)
		bench_die("connect to redis: %s", c ? c->errstr : "no memory");
	snprintf(prefix, sizeof(prefix), "bprog%ld", (long)getpid());
	snprintf(redis, sizeof(redis), "%s:%s", host, port);
	proto_key_queue(q, sizeof(q), prefix, "bench", 1);
	proto_key_named(res, sizeof(res), prefix, "results");
	if ((w = fork()) == -1)
		bench_die("fork: %s", strerror(errno));
	if (w == 0) {
		execl(getenv("HIVE_WORKER"), "hive-worker", "--agent", "bench",
		    "--capabilities", "bench", "--concurrency", conc,
		    "--prefix", prefix, "--redis", redis, "--",
		    getenv("HIVE_PROGRESS_HANDLER"), (char *)NULL);
		_exit(127);
	}
	submit(c, q, "warm", 1, 1);
	await_results(c, res, last, 1);
	for (int r = 0; r < 2 * rounds; r++) {
		struct kind *k = &kinds[r % 2];

		snprintf(tag, sizeof(tag), "r%d-", r);
		x0 = xadd_calls(c);
		cpu0 = proc_cpu(w);
		t0 = bench_mono_s();
		submit(c, q, tag, n, k->p);
		await_results(c, res, last, n);
		k->secs += bench_mono_s() - t0;
		k->cpu += proc_cpu(w) - cpu0;
		/* Less the submitter's own XADDs. */
		k->xadd += xadd_calls(c) - x0 - n;
		k->tasks += n;
	}
	kill(w, SIGTERM);
	waitpid(w, &st, 0);

	printf("worker.progress.none.throughput: %.0f tasks/s (ceiling %.0f "
	    "tasks/s: %s tasks at once of %d ms each; %d tasks in %d rounds "
	    "interleaved with the 10ms ones)\n",
	    kinds[0].tasks / kinds[0].secs, atoi(conc) * 1000.0 / TASK_MS,
	    conc, TASK_MS, kinds[0].tasks, rounds);
	printf("worker.progress.10ms.throughput: %.0f tasks/s (none, same "
	    "run: %.0f tasks/s, %.1f %%; a progress line every 10 ms per "
	    "task, %d per task)\n", kinds[1].tasks / kinds[1].secs,
	    kinds[0].tasks / kinds[0].secs,
	    100.0 * (kinds[1].tasks / kinds[1].secs) /
	    (kinds[0].tasks / kinds[0].secs), TASK_MS / 10 - 1);
	printf("worker.progress.none.cpu: %.1f us/task (the worker process "
	    "only)\n", 1e6 * kinds[0].cpu / kinds[0].tasks);
	printf("worker.progress.10ms.cpu: %.1f us/task (none, same run: %.1f "
	    "us/task; the worker process only)\n",
	    1e6 * kinds[1].cpu / kinds[1].tasks,
	    1e6 * kinds[0].cpu / kinds[0].tasks);
	printf("redis.progress.none.xadd: %.2f XADD/task (the result)\n",
	    (double)kinds[0].xadd / kinds[0].tasks);
	printf("redis.progress.10ms.xadd: %.2f XADD/task (the result, the "
	    "output stream's writes coalesced to one per 50 ms, its end)\n",
	    (double)kinds[1].xadd / kinds[1].tasks);
	fflush(stdout);
	bench_cmd(c, "EVAL %s 0 %s", "for _,k in ipairs(redis.call('KEYS', "
	    "ARGV[1]..'*')) do redis.call('DEL', k) end return 0", prefix);
	redisFree(c);
	return 0;
}
