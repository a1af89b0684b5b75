/*
 * bench_delay.c - delayed tasks (issue 19): what going through
 * <prefix>:delayed costs, and how late a task starts.
 *
 *   throughput   rounds of n plain tasks (XADD to the queue) alternated
 *                with rounds of n tasks due now (ZADD <p>:delayed and
 *                XADD <p>:scheduled, as POST /tasks does): each round
 *                until its n results are in; the plain rounds' rate is
 *                the ceiling of the delayed ones'
 *   lateness     tasks due at 10,000 a second (-r) for -d seconds, all
 *                added ahead of time: a task's lateness is its result's
 *                started_ms (the worker's dispatch) less its due time;
 *                p50 and p99 beside the design's bound, 50 ms
 *
 * The promoter is hived's own (supervisor/delay.c, linked in), run in a
 * child process on its own loop; one hive-worker with the echo handler
 * runs the tasks.  Run through bench/run.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "benchutil.h"
#include "hive_proto.h"
#include "hived.h"
#include "rconn.h"

#define BATCH 1000
#define LATE_BOUND_MS 50

static char prefix[64], queue[HIVE_KEY_MAX], results[HIVE_KEY_MAX];
static char delayed[HIVE_KEY_MAX], sched[HIVE_KEY_MAX];

static void
encode(msgpack_sbuffer *sb, const char *id, uint64_t not_before)
{
	struct hive_task t;
	struct proto_err err;
	char why[256];

	memset(&t, 0, sizeof(t));
	t.v = HIVE_PROTO_VERSION;
	t.id = HIVE_STR(id);
	t.payload.type = MSGPACK_OBJECT_NIL;
	t.attempt = 1;
	t.not_before = not_before;
	msgpack_sbuffer_clear(sb);
	if (proto_encode_task(sb, &t, &err) == -1)
		bench_die("encode: %s", proto_strerror(&err, why, sizeof(why)));
}

/* n tasks tag<i>: XADDed to the queue (due 0), or scheduled at
 * due(i) = due + i * step_us / 1000. */
static void
submit(redisContext *c, const char *tag, int n, uint64_t due,
    unsigned step_us)
{
	msgpack_sbuffer sb, m;
	redisReply *r;
	char id[64], score[24];
	int cmds;

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&m);
	for (int i = 0; i < n; i += BATCH) {
		int k = n - i < BATCH ? n - i : BATCH;
		cmds = 0;
		for (int j = 0; j < k; j++) {
			uint64_t at = due ? due + (uint64_t)(i + j) * step_us /
			    1000 : 0;
			snprintf(id, sizeof(id), "%s%d", tag, i + j);
			encode(&sb, id, at);
			if (at == 0) {
				redisAppendCommand(c, "XADD %s * m %b", queue,
				    sb.data, sb.size);
				cmds++;
				continue;
			}
			msgpack_sbuffer_clear(&m);
			msgpack_sbuffer_write(&m, queue, strlen(queue));
			msgpack_sbuffer_write(&m, "\n", 1);
			msgpack_sbuffer_write(&m, sb.data, sb.size);
			snprintf(score, sizeof(score), "%" PRIu64, at);
			redisAppendCommand(c, "ZADD %s %s %b", delayed, score,
			    m.data, m.size);
			redisAppendCommand(c, "XADD %s * m %b", sched, m.data,
			    m.size);
			cmds += 2;
		}
		for (int j = 0; j < cmds; j++) {
			if (redisGetReply(c, (void **)&r) != REDIS_OK)
				bench_die("submit: %s", c->errstr);
			if (r->type == REDIS_REPLY_ERROR)
				bench_die("submit: %s", r->str);
			freeReplyObject(r);
		}
	}
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&m);
}

/* Read n results after *last; each one's (id, started_ms) to fn. */
static void
await_results(redisContext *c, char *last, int n,
    void (*fn)(const struct hive_result *, void *), void *arg)
{
	redisReply *r, *entries, *v;
	struct hive_result res;
	struct proto_err err;
	int got = 0;

	while (got < n) {
		r = redisCommand(c, "XREAD COUNT 1000 BLOCK 30000 STREAMS %s %s",
		    results, last);
		if (r == NULL)
			bench_die("XREAD: %s", c->errstr);
		if (r->type != REDIS_REPLY_ARRAY)
			bench_die("results: %s", "none for 30 s");
		entries = r->element[0]->element[1];
		for (size_t i = 0; i < entries->elements; i++) {
			v = entries->element[i]->element[1]->element[1];
			if (fn != NULL && proto_decode_result(v->str, v->len,
			    &res, &err) == 0) {
				fn(&res, arg);
				proto_result_clear(&res);
			}
		}
		got += (int)entries->elements;
		snprintf(last, 64, "%s",
		    entries->element[entries->elements - 1]->element[0]->str);
		freeReplyObject(r);
	}
}

struct late {
	uint64_t due0;
	unsigned step_us;
	double *ms;
	int n;
};

static void
late_cb(const struct hive_result *res, void *arg)
{
	struct late *l = arg;
	long i;

	if (res->id.len < 3 || memcmp(res->id.ptr, "l-", 2) != 0)
		return;
	i = strtol(res->id.ptr + 2, NULL, 10);
	l->ms[l->n++] = (double)res->started_ms -
	    (double)(l->due0 + (uint64_t)i * l->step_us / 1000);
}

/* The child: hived's promoter on a loop of its own, until SIGTERM. */
static void
promoter(const char *redis)
{
	struct ev_loop *loop = ev_default_loop(0);
	struct sup_delay *d;
	struct rconn *rc;
	char err[256];

	if ((rc = rconn_new(loop, redis, "bench", NULL, NULL, err,
	    sizeof(err))) == NULL)
		bench_die("promoter: %s", err);
	if ((d = sup_delay_new(loop, rc, prefix)) == NULL)
		bench_die("promoter: %s", "sup_delay_new");
	ev_run(loop, 0);
	_exit(0);
}

static pid_t
spawn(const char *redis, int worker)
{
	pid_t p;

	if ((p = fork()) == -1)
		bench_die("fork: %s", strerror(errno));
	if (p > 0)
		return p;
	if (!worker)
		promoter(redis);
	execl(getenv("HIVE_WORKER"), "hive-worker", "--agent", "bench",
	    "--capabilities", "bench", "--concurrency", "64", "--prefix",
	    prefix, "--redis", redis, "--", getenv("HIVE_ECHO"), (char *)NULL);
	_exit(127);
}

int
main(int argc, char **argv)
{
	const char *host = getenv("HIVE_TEST_REDIS_HOST");
	const char *port = getenv("HIVE_TEST_REDIS_PORT");
	int n = 20000, rounds = 3, rate = 10000, secs = 3, ch, st;
	double plain = 0, now_s = 0, t0, *ms;
	char redis[256], last[64] = "0", tag[32];
	int tp = 0, tn = 0, nl;
	struct late l;
	redisContext *c;
	pid_t w, p;

	while ((ch = getopt(argc, argv, "n:k:r:d:")) != -1) {
		switch (ch) {
		case 'n': n = atoi(optarg); break;
		case 'k': rounds = atoi(optarg); break;
		case 'r': rate = atoi(optarg); break;
		case 'd': secs = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bench_delay [-n tasks per round] "
			    "[-k rounds] [-r due per second] [-d seconds]\n");
			return 2;
		}
	}
	if (!host || !port || !getenv("HIVE_WORKER") || !getenv("HIVE_ECHO") ||
	    n < 1 || rounds < 1 || rate < 1 || rate > 1000000 || secs < 1)
		bench_die("environment: %s", "run it through bench/run");
	signal(SIGPIPE, SIG_IGN);
	if ((c = redisConnect(host, atoi(port))) == NULL || c->err)
		bench_die("connect to redis: %s", c ? c->errstr : "no memory");
	snprintf(prefix, sizeof(prefix), "bdly%ld", (long)getpid());
	snprintf(redis, sizeof(redis), "%s:%s", host, port);
	proto_key_queue(queue, sizeof(queue), prefix, "bench", 1);
	proto_key_named(results, sizeof(results), prefix, "results");
	proto_key_named(delayed, sizeof(delayed), prefix, "delayed");
	proto_key_named(sched, sizeof(sched), prefix, "scheduled");
	w = spawn(redis, 1);
	p = spawn(redis, 0);
	submit(c, "warm", 1, 0, 0);
	await_results(c, last, 1, NULL, NULL);

	for (int r = 0; r < 2 * rounds; r++) {
		snprintf(tag, sizeof(tag), "r%d-", r);
		t0 = bench_mono_s();
		submit(c, tag, n, r % 2 ? proto_now_ms() : 0, 0);
		await_results(c, last, n, NULL, NULL);
		if (r % 2) {
			now_s += bench_mono_s() - t0;
			tn += n;
		} else {
			plain += bench_mono_s() - t0;
			tp += n;
		}
	}

	nl = rate * secs;
	if ((ms = calloc((size_t)nl, sizeof(*ms))) == NULL)
		bench_die("%s", "out of memory");
	l.due0 = proto_now_ms() + 1000 + (uint64_t)nl / 100;
	l.step_us = 1000000u / (unsigned)rate;
	l.ms = ms;
	l.n = 0;
	submit(c, "l-", nl, l.due0, l.step_us);
	if (proto_now_ms() >= l.due0)
		bench_die("%s", "adding the tasks took longer than planned");
	await_results(c, last, nl, late_cb, &l);
	qsort(ms, (size_t)l.n, sizeof(*ms), bench_cmp_double);
	kill(w, SIGTERM);
	kill(p, SIGTERM);
	waitpid(w, &st, 0);
	waitpid(p, &st, 0);

	printf("delay.plain.throughput: %.0f tasks/s (XADD to the queue, "
	    "%d tasks in %d rounds interleaved with the due-now ones; one "
	    "worker, echo, concurrency 64)\n", tp / plain, tp, rounds);
	printf("delay.due_now.throughput: %.0f tasks/s (ceiling %.0f "
	    "tasks/s: plain tasks, same run, %.0f %%; ZADD <p>:delayed + "
	    "XADD <p>:scheduled, moved by hived's promoter)\n", tn / now_s,
	    tp / plain, 100.0 * (tn / now_s) / (tp / plain));
	printf("delay.late.p50: %.1f ms (bound %d ms: the design's; %d due "
	    "per second for %d s, started_ms less the due time)\n",
	    ms[l.n / 2], LATE_BOUND_MS, rate, secs);
	printf("delay.late.p99: %.1f ms (bound %d ms; max %.1f ms, min %.1f "
	    "ms over %d tasks)\n", ms[(size_t)l.n * 99 / 100], LATE_BOUND_MS,
	    ms[l.n - 1], ms[0], l.n);
	fflush(stdout);
	free(ms);
	bench_cmd(c, "EVAL %s 0 %s", "for _,k in ipairs(redis.call('KEYS', "
	    "ARGV[1]..'*')) do redis.call('DEL', k) end return 0", prefix);
	redisFree(c);
	return 0;
}
