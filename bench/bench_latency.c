/*
 * bench_latency.c - how long a task waits, at a steady rate, against the
 * same paced loop through bare Redis in the same run.
 *
 *   latency.start.*    enqueue -> the handler received the task
 *   latency.result.*   enqueue -> the client read the result
 *
 * Each figure is p50, p99 and max over N tasks submitted at a paced rate
 * (default 10,000 tasks at 1,000/s: an ev_timer every millisecond submits
 * what the schedule says is due, so a late tick never lowers the rate).
 *
 *   worker run  one stream-mode hive-worker (standalone, its own --prefix)
 *               running bench/stamp_handler, which puts CLOCK_REALTIME
 *               (us) of the moment it read the task into its result.  The
 *               task carries reply_to; the client reads the results with
 *               XREAD BLOCK on that key.
 *   raw run     the ceiling: the same submitter and reader, and in place
 *               of the worker a second connection doing what a worker does
 *               at the least: XREADGROUP BLOCK (its reply time is "start"),
 *               then MULTI, XADD results, XADD reply, XACK, EXEC.
 *
 * Enqueue time is CLOCK_REALTIME (us) just before the XADD is written to
 * the socket (it is flushed at once, not on the next loop iteration); it
 * is also in the task (created_ms, and payload.sent_us).  All the clocks
 * are one machine's.
 *
 *   bench_latency [-n tasks] [-r tasks_per_s] [-c concurrency] [-s]
 *
 * Output lines are "name: value unit (...)".  Run it through bench/run,
 * which starts a private Redis and sets HIVE_TEST_REDIS_HOST/PORT/SOCK,
 * HIVE_WORKER and HIVE_STAMP (the handler).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>

#include "benchutil.h"
#include "hive_proto.h"

#define PACE_S      0.001    /* the pacing timer's period */
#define READ_COUNT  "1000"   /* entries per XREAD of the results */
#define CONS_COUNT  "100"    /* entries per XREADGROUP of the raw consumer */
#define BLOCK_MS    "1000"
#define STALL_S     30.0     /* no result for this long: give up */
#define WARMUP      20       /* tasks through the worker before measuring */

enum lat_kind { LAT_RAW, LAT_WORKER };

struct lat_run {
	enum lat_kind kind;
	struct ev_loop *loop;
	int n, rate;
	int sent, got, ready;
	int closing;
	int64_t *sent_us, *start_us, *done_us;
	double t0, t_last_sent, progress;
	char tag[48];
	char queue[HIVE_KEY_MAX], results[HIVE_KEY_MAX], reply[HIVE_KEY_MAX];
	char last[HIVE_ENTRY_ID_MAX + 1];
	redisAsyncContext *sub;      /* XADD of the tasks */
	redisAsyncContext *rd;       /* XREAD BLOCK of the replies */
	redisAsyncContext *cons;     /* raw run: the consumer */
	ev_timer pace, watchdog;
	msgpack_sbuffer sb;
};

struct lat_stats {
	double p50, p99, max;        /* ms */
};

static const char *redis_host, *redis_port, *redis_sock;
static int use_sock;

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- blocking Redis, for setup and cleanup ---- */

static redisContext *
connect_sync(void)
{
	redisContext *c = use_sock ? redisConnectUnix(redis_sock) :
	    redisConnect(redis_host, atoi(redis_port));

	if (c == NULL || c->err)
		bench_die("connect to redis: %s", c ? c->errstr : "out of memory");
	return c;
}

static redisAsyncContext *
connect_async(struct ev_loop *loop)
{
	redisAsyncContext *ac = use_sock ? redisAsyncConnectUnix(redis_sock) :
	    redisAsyncConnect(redis_host, atoi(redis_port));

	if (ac == NULL || ac->err)
		bench_die("connect to redis: %s", ac ? ac->errstr : "out of memory");
	redisLibevAttach(loop, ac);
	return ac;
}

/* ---- messages ---- */

/* The task of index i: id "<tag>-<i>", payload {"i": i, "sent_us": t}. */
static void
encode_task(struct lat_run *r, int i, int64_t t)
{
	struct hive_task m;
	struct proto_err err;
	msgpack_object_kv kv[2];
	char id[96], why[256];

	snprintf(id, sizeof(id), "%s-%d", r->tag, i);
	memset(&m, 0, sizeof(m));
	m.v = HIVE_PROTO_VERSION;
	m.id = HIVE_STR(id);
	kv[0].key.type = MSGPACK_OBJECT_STR;
	kv[0].key.via.str.ptr = "i";
	kv[0].key.via.str.size = 1;
	kv[0].val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	kv[0].val.via.u64 = (uint64_t)i;
	kv[1].key.type = MSGPACK_OBJECT_STR;
	kv[1].key.via.str.ptr = "sent_us";
	kv[1].key.via.str.size = 7;
	kv[1].val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	kv[1].val.via.u64 = (uint64_t)t;
	m.payload.type = MSGPACK_OBJECT_MAP;
	m.payload.via.map.size = 2;
	m.payload.via.map.ptr = kv;
	m.attempt = 1;
	m.created_ms = (uint64_t)t / 1000;
	m.reply_to = HIVE_STR(r->reply);
	msgpack_sbuffer_clear(&r->sb);
	if (proto_encode_task(&r->sb, &m, &err) == -1)
		bench_die("encode task: %s", proto_strerror(&err, why, sizeof(why)));
}

/* What the raw consumer publishes: a result like a worker's, with
 * {"recv_us": t} as stamp_handler would answer. */
static void
encode_result(msgpack_sbuffer *sb, struct hive_str id, int64_t t)
{
	struct hive_result m;
	struct proto_err err;
	msgpack_object_kv kv;
	char why[256];

	memset(&m, 0, sizeof(m));
	m.v = HIVE_PROTO_VERSION;
	m.id = id;
	m.agent = HIVE_STR("raw/1");
	m.host = HIVE_STR("bench");
	m.status = HIVE_STATUS_OK;
	kv.key.type = MSGPACK_OBJECT_STR;
	kv.key.via.str.ptr = "recv_us";
	kv.key.via.str.size = 7;
	kv.val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	kv.val.via.u64 = (uint64_t)t;
	m.result.type = MSGPACK_OBJECT_MAP;
	m.result.via.map.size = 1;
	m.result.via.map.ptr = &kv;
	m.memory.type = MSGPACK_OBJECT_NIL;
	m.attempt = 1;
	m.started_ms = m.finished_ms = (uint64_t)t / 1000;
	msgpack_sbuffer_clear(sb);
	if (proto_encode_result(sb, &m, &err) == -1)
		bench_die("encode result: %s", proto_strerror(&err, why, sizeof(why)));
}

/* Index of a task id "<tag>-<i>" of this run, or -1. */
static int
task_index(const struct lat_run *r, struct hive_str id)
{
	size_t tl = strlen(r->tag);
	char num[16];
	char *end;
	long i;

	if (id.len <= tl + 1 || id.len - tl - 1 >= sizeof(num) ||
	    memcmp(id.ptr, r->tag, tl) != 0 || id.ptr[tl] != '-')
		return -1;
	memcpy(num, id.ptr + tl + 1, id.len - tl - 1);
	num[id.len - tl - 1] = '\0';
	i = strtol(num, &end, 10);
	if (*end != '\0' || i < 0 || i >= r->n)
		return -1;
	return (int)i;
}

/* The "m" field of a stream entry [id, [field, value, ...]], or NULL. */
static const redisReply *
entry_msg(const redisReply *e)
{
	const redisReply *f;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING)
		return NULL;
	f = e->element[1];
	for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements;
	    k += 2)
		if (f->element[k]->type == REDIS_REPLY_STRING &&
		    strcmp(f->element[k]->str, "m") == 0 &&
		    f->element[k + 1]->type == REDIS_REPLY_STRING)
			return f->element[k + 1];
	return NULL;
}

/* The entries of the first stream of an XREAD/XREADGROUP reply. */
static const redisReply *
reply_entries(const redisReply *rep)
{
	const redisReply *s;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1)
		return NULL;
	s = rep->element[0];
	if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
	    s->element[1]->type != REDIS_REPLY_ARRAY)
		return NULL;
	return s->element[1];
}

/* ---- the loop ---- */

static void issue_read(struct lat_run *r);
static void issue_consume(struct lat_run *r);

static void
check_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct lat_run *r = priv;
	redisReply *rep = reply;

	if (rep == NULL) {
		if (!r->closing)
			bench_die("redis: connection lost: %s", ac->errstr);
		return;
	}
	if (rep->type == REDIS_REPLY_ERROR)
		bench_die("redis: %s", rep->str);
}

static void
ping_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct lat_run *r = priv;

	check_cb(ac, reply, priv);
	r->ready++;
}

static void
submit_one(struct lat_run *r, int i)
{
	int64_t t = now_us();

	encode_task(r, i, t);
	r->sent_us[i] = t;
	redisAsyncCommand(r->sub, check_cb, r, "XADD %s * m %b", r->queue,
	    r->sb.data, r->sb.size);
}

/* Submit what the schedule says is due by now, and write it out at once:
 * hiredis would otherwise wait for the next loop iteration. */
static void
pace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lat_run *r = w->data;
	double now = bench_mono_s();
	long due = (long)((now - r->t0) * r->rate) + 1;

	if (due > r->n)
		due = r->n;
	if (r->sent >= due)
		return;
	while (r->sent < due)
		submit_one(r, r->sent++);
	redisAsyncHandleWrite(r->sub);
	if (r->sent == r->n) {
		r->t_last_sent = now;
		ev_timer_stop(loop, w);
	}
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lat_run *r = w->data;

	if (bench_mono_s() - r->progress > STALL_S)
		bench_die("%s run: no result for %.0f s (%d of %d; sent %d): is the "
		    "worker running?", r->kind == LAT_RAW ? "raw" : "worker",
		    STALL_S, r->got, r->n, r->sent);
}

static void
read_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct lat_run *r = priv;
	redisReply *rep = reply;
	const redisReply *entries, *m;
	int64_t t = now_us();
	struct hive_result res;
	struct proto_err err;
	char why[256];
	int i;

	if (rep == NULL) {
		if (!r->closing)
			bench_die("redis: XREAD: connection lost: %s", ac->errstr);
		return;
	}
	if (rep->type == REDIS_REPLY_ERROR)
		bench_die("redis: XREAD: %s", rep->str);
	if ((entries = reply_entries(rep)) != NULL) {
		for (size_t k = 0; k < entries->elements; k++) {
			const redisReply *e = entries->element[k];
			if ((m = entry_msg(e)) == NULL)
				continue;
			snprintf(r->last, sizeof(r->last), "%s",
			    e->element[0]->str);
			if (proto_decode_result(m->str, m->len, &res, &err) == -1)
				bench_die("result %s: %s", r->last,
				    proto_strerror(&err, why, sizeof(why)));
			if (res.status != HIVE_STATUS_OK)
				bench_die("task %.*s failed: %.*s", (int)res.id.len,
				    res.id.ptr, (int)res.error.len, res.error.ptr);
			if ((i = task_index(r, res.id)) >= 0 && r->done_us[i] == 0) {
				const msgpack_object *o = &res.result;
				r->done_us[i] = t;
				for (uint32_t x = 0; o->type == MSGPACK_OBJECT_MAP &&
				    x < o->via.map.size; x++) {
					const msgpack_object_kv *kv = &o->via.map.ptr[x];
					if (kv->key.type == MSGPACK_OBJECT_STR &&
					    kv->key.via.str.size == 7 &&
					    memcmp(kv->key.via.str.ptr, "recv_us", 7) == 0 &&
					    kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
						r->start_us[i] = (int64_t)kv->val.via.u64;
				}
				if (r->start_us[i] == 0)
					bench_die("result of %.*s has no recv_us",
					    (int)res.id.len, res.id.ptr);
				r->got++;
				r->progress = bench_mono_s();
			}
			proto_result_clear(&res);
		}
	}
	if (r->got < r->n)
		issue_read(r);
	else
		ev_break(r->loop, EVBREAK_ONE);
}

static void
issue_read(struct lat_run *r)
{
	redisAsyncCommand(r->rd, read_cb, r, "XREAD COUNT " READ_COUNT
	    " BLOCK " BLOCK_MS " STREAMS %s %s", r->reply, r->last);
}

/* The raw consumer: each entry read is "started" now; its result goes out
 * as a worker's would (results + reply, acknowledged in one MULTI/EXEC). */
static void
consume_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct lat_run *r = priv;
	redisReply *rep = reply;
	const redisReply *entries, *m;
	int64_t t = now_us();
	msgpack_sbuffer out;
	struct hive_task task;
	struct proto_err err;
	char why[256];

	if (rep == NULL) {
		if (!r->closing)
			bench_die("redis: XREADGROUP: connection lost: %s", ac->errstr);
		return;
	}
	if (rep->type == REDIS_REPLY_ERROR)
		bench_die("redis: XREADGROUP: %s", rep->str);
	msgpack_sbuffer_init(&out);
	if ((entries = reply_entries(rep)) != NULL) {
		for (size_t k = 0; k < entries->elements; k++) {
			const redisReply *e = entries->element[k];
			if ((m = entry_msg(e)) == NULL)
				continue;
			if (proto_decode_task(m->str, m->len, &task, &err) == -1)
				bench_die("task %s: %s", e->element[0]->str,
				    proto_strerror(&err, why, sizeof(why)));
			encode_result(&out, task.id, t);
			redisAsyncCommand(ac, check_cb, r, "MULTI");
			redisAsyncCommand(ac, check_cb, r, "XADD %s * m %b",
			    r->results, out.data, out.size);
			redisAsyncCommand(ac, check_cb, r, "XADD %s * m %b",
			    r->reply, out.data, out.size);
			redisAsyncCommand(ac, check_cb, r, "XACK %s g %s",
			    r->queue, e->element[0]->str);
			redisAsyncCommand(ac, check_cb, r, "EXEC");
			proto_task_clear(&task);
		}
	}
	msgpack_sbuffer_destroy(&out);
	if (!r->closing)
		issue_consume(r);
}

static void
issue_consume(struct lat_run *r)
{
	redisAsyncCommand(r->cons, consume_cb, r, "XREADGROUP GROUP g c COUNT "
	    CONS_COUNT " BLOCK " BLOCK_MS " STREAMS %s >", r->queue);
}

/* ---- a run ---- */

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* p50/p99/max of to[i] - from[i], in ms; nearest rank. */
static struct lat_stats
stats(const int64_t *from, const int64_t *to, int n)
{
	struct lat_stats s;
	int64_t *d = malloc((size_t)n * sizeof(*d));
	int i50, i99;

	if (d == NULL)
		bench_die("out of memory");
	for (int i = 0; i < n; i++)
		d[i] = to[i] - from[i];
	qsort(d, (size_t)n, sizeof(*d), cmp_i64);
	i50 = (n * 50 + 99) / 100;
	i99 = (n * 99 + 99) / 100;
	s.p50 = (double)d[(i50 > 0 ? i50 : 1) - 1] / 1e3;
	s.p99 = (double)d[(i99 > 0 ? i99 : 1) - 1] / 1e3;
	s.max = (double)d[n - 1] / 1e3;
	free(d);
	return s;
}

/*
 * One paced run of n tasks on queue, results read from reply.  For the raw
 * run the consumer group "g" must exist.  Fills start/result statistics and
 * returns the achieved submit rate (tasks/s).
 */
static double
run_paced(struct lat_run *r, struct lat_stats *start, struct lat_stats *result)
{
	double rate;

	r->loop = ev_loop_new(EVFLAG_AUTO);
	r->sent_us = calloc((size_t)r->n, sizeof(int64_t));
	r->start_us = calloc((size_t)r->n, sizeof(int64_t));
	r->done_us = calloc((size_t)r->n, sizeof(int64_t));
	if (r->loop == NULL || !r->sent_us || !r->start_us || !r->done_us)
		bench_die("out of memory");
	msgpack_sbuffer_init(&r->sb);
	snprintf(r->last, sizeof(r->last), "0-0");
	r->sub = connect_async(r->loop);
	r->rd = connect_async(r->loop);
	redisAsyncCommand(r->sub, ping_cb, r, "PING");
	redisAsyncCommand(r->rd, ping_cb, r, "PING");
	if (r->kind == LAT_RAW) {
		r->cons = connect_async(r->loop);
		redisAsyncCommand(r->cons, ping_cb, r, "PING");
	}
	/* Connected, all of them, before the clock starts. */
	while (r->ready < (r->kind == LAT_RAW ? 3 : 2))
		ev_run(r->loop, EVRUN_ONCE);

	issue_read(r);
	if (r->kind == LAT_RAW)
		issue_consume(r);
	ev_timer_init(&r->pace, pace_cb, PACE_S, PACE_S);
	r->pace.data = r;
	ev_timer_init(&r->watchdog, watchdog_cb, 1., 1.);
	r->watchdog.data = r;
	ev_now_update(r->loop);
	r->t0 = r->progress = bench_mono_s();
	ev_timer_start(r->loop, &r->pace);
	ev_timer_start(r->loop, &r->watchdog);
	pace_cb(r->loop, &r->pace, 0);      /* task 0 at t0 */
	ev_run(r->loop, 0);

	ev_timer_stop(r->loop, &r->pace);
	ev_timer_stop(r->loop, &r->watchdog);
	r->closing = 1;
	redisAsyncFree(r->sub);
	redisAsyncFree(r->rd);
	if (r->cons != NULL)
		redisAsyncFree(r->cons);
	ev_loop_destroy(r->loop);
	msgpack_sbuffer_destroy(&r->sb);

	*start = stats(r->sent_us, r->start_us, r->n);
	*result = stats(r->sent_us, r->done_us, r->n);
	rate = r->n > 1 && r->t_last_sent > r->t0 ?
	    (r->n - 1) / (r->t_last_sent - r->t0) : 0;
	free(r->sent_us);
	free(r->start_us);
	free(r->done_us);
	return rate;
}

/* ---- the worker ---- */

static pid_t
start_worker(const char *prefix, const char *conc)
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
		execl(getenv("HIVE_WORKER"), "hive-worker", "--agent", "lat",
		    "--capabilities", "lat", "--mode", "stream", "--concurrency",
		    conc, "--prefix", prefix, "--redis", redis, "--",
		    getenv("HIVE_STAMP"), (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void
stop_worker(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	if (waitpid(pid, &st, 0) == -1)
		bench_die("waitpid: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "bench_latency: worker exit status %#x\n", st);
}

/* A few tasks one by one through the worker: it is up, its handler too. */
static void
warm_up(redisContext *c, struct lat_run *r)
{
	redisReply *rep;
	const redisReply *entries;
	char last[HIVE_ENTRY_ID_MAX + 1] = "0-0";

	msgpack_sbuffer_init(&r->sb);
	for (int i = 0; i < WARMUP; i++) {
		encode_task(r, i, now_us());
		bench_cmd(c, "XADD %s * m %b", r->queue, r->sb.data, r->sb.size);
		rep = redisCommand(c, "XREAD COUNT 1 BLOCK 30000 STREAMS %s %s",
		    r->reply, last);
		if (rep == NULL)
			bench_die("XREAD: %s", c->errstr);
		if ((entries = reply_entries(rep)) == NULL ||
		    entries->elements != 1)
			bench_die("warm-up: no result for 30 s: is the worker running?");
		snprintf(last, sizeof(last), "%s",
		    entries->element[0]->element[0]->str);
		freeReplyObject(rep);
	}
	msgpack_sbuffer_destroy(&r->sb);
	bench_cmd(c, "DEL %s", r->reply);
}

int
main(int argc, char **argv)
{
	int n = 10000, rate = 1000, ch;
	const char *conc = "1";
	char prefix[64];
	struct lat_run raw, wk;
	struct lat_stats rs, rr, ws, wr;
	double raw_rate, wk_rate;
	redisContext *c;
	pid_t w;

	while ((ch = getopt(argc, argv, "n:r:c:s")) != -1) {
		switch (ch) {
		case 'n': n = atoi(optarg); break;
		case 'r': rate = atoi(optarg); break;
		case 'c': conc = optarg; break;
		case 's': use_sock = 1; break;
		default:
			fprintf(stderr, "usage: bench_latency [-n tasks] "
			    "[-r tasks_per_s] [-c concurrency] [-s]\n");
			return 2;
		}
	}
	if (n < 1 || rate < 1 || rate > 1000000)
		bench_die("-n and -r must be positive (-r at most 1000000)");
	redis_host = getenv("HIVE_TEST_REDIS_HOST");
	redis_port = getenv("HIVE_TEST_REDIS_PORT");
	redis_sock = getenv("HIVE_TEST_REDIS_SOCK");
	if (!redis_host || !redis_port || !getenv("HIVE_WORKER") ||
	    !getenv("HIVE_STAMP") || (use_sock && !redis_sock))
		bench_die("environment: run it through bench/run");
	signal(SIGPIPE, SIG_IGN);
	c = connect_sync();
	snprintf(prefix, sizeof(prefix), "benchlat%ld", (long)getpid());

	/* The ceiling first: bare Redis, same pacing, same reader. */
	memset(&raw, 0, sizeof(raw));
	raw.kind = LAT_RAW;
	raw.n = n;
	raw.rate = rate;
	snprintf(raw.tag, sizeof(raw.tag), "raw%ld", (long)getpid());
	snprintf(raw.queue, sizeof(raw.queue), "%s:rawq", prefix);
	snprintf(raw.results, sizeof(raw.results), "%s:rawresults", prefix);
	snprintf(raw.reply, sizeof(raw.reply), HIVE_REPLY_PREFIX "%s-raw", prefix);
	bench_cmd(c, "XGROUP CREATE %s g $ MKSTREAM", raw.queue);
	raw_rate = run_paced(&raw, &rs, &rr);
	bench_cmd(c, "DEL %s %s %s", raw.queue, raw.results, raw.reply);

	/* The worker. */
	memset(&wk, 0, sizeof(wk));
	wk.kind = LAT_WORKER;
	wk.n = n;
	wk.rate = rate;
	proto_key_queue(wk.queue, sizeof(wk.queue), prefix, "lat", HIVE_PRIO_DEFAULT);
	proto_key_named(wk.results, sizeof(wk.results), prefix, "results");
	snprintf(wk.reply, sizeof(wk.reply), HIVE_REPLY_PREFIX "%s-worker", prefix);
	w = start_worker(prefix, conc);
	snprintf(wk.tag, sizeof(wk.tag), "warm%ld", (long)getpid());
	warm_up(c, &wk);
	snprintf(wk.tag, sizeof(wk.tag), "lat%ld", (long)getpid());
	wk_rate = run_paced(&wk, &ws, &wr);
	stop_worker(w);

	printf("redis.latency.start.p50: %.3f ms (XADD -> XREADGROUP BLOCK on a "
	    "second connection; %d tasks at %.0f/s)\n", rs.p50, n, raw_rate);
	printf("redis.latency.start.p99: %.3f ms\n", rs.p99);
	printf("redis.latency.start.max: %.3f ms\n", rs.max);
	printf("redis.latency.result.p50: %.3f ms (... MULTI XADD results, XADD "
	    "reply, XACK, EXEC -> XREAD BLOCK)\n", rr.p50);
	printf("redis.latency.result.p99: %.3f ms\n", rr.p99);
	printf("redis.latency.result.max: %.3f ms\n", rr.max);
	printf("latency.start.p50: %.3f ms (raw redis %.3f ms; %d tasks at "
	    "%.0f/s, one stream worker, concurrency %s)\n", ws.p50, rs.p50, n,
	    wk_rate, conc);
	printf("latency.start.p99: %.3f ms (raw redis %.3f ms)\n", ws.p99, rs.p99);
	printf("latency.start.max: %.3f ms (raw redis %.3f ms)\n", ws.max, rs.max);
	printf("latency.result.p50: %.3f ms (raw redis %.3f ms)\n", wr.p50, rr.p50);
	printf("latency.result.p99: %.3f ms (raw redis %.3f ms)\n", wr.p99, rr.p99);
	printf("latency.result.max: %.3f ms (raw redis %.3f ms)\n", wr.max, rr.max);
	fflush(stdout);

	bench_cmd(c, "EVAL %s 0 %s", "for _,k in ipairs(redis.call('KEYS', ARGV[1]..'*')) "
	    "do redis.call('DEL', k) end return 0", prefix);
	bench_cmd(c, "DEL %s", wk.reply);
	redisFree(c);
	return 0;
}
