/*
 * bench_recorder.c - the record's cost: how fast the recorder writes
 * streams into PostgreSQL, against a bare COPY of the same rows in the
 * same run, and what recording does to end-to-end throughput.
 *
 *   recorder.throughput     N tasks in a queue stream and their N results
 *                           in the results stream, written there before
 *                           the recorder starts (proto encoders, like a
 *                           client and a worker would); then sup_recorder
 *                           (record/recorder.c, built in) on a fresh,
 *                           migrated database, from its start until it has
 *                           committed and acknowledged all 2N entries.
 *                           A record is one stream entry: 2N records.
 *   recorder.copy.ceiling   the same rows (N tasks rows in their final
 *                           state, with the times of queued, running and
 *                           completed) sent with COPY FROM STDIN
 *                           (PQputCopyData) in one transaction into a
 *                           scratch table made LIKE tasks INCLUDING ALL
 *                           (same columns, indexes and constraints).
 *                           Rows are built before the clock starts; 2N
 *                           records over the time of the COPY.
 *   e2e.worker_only.throughput
 *                           one stream-mode hive-worker (echo handler), M
 *                           tasks submitted in pipelined batches, first
 *                           submit to last result (as bench_worker)
 *   e2e.recorded.throughput the same with a recorder running (in a child
 *                           process, as in hived), first submit to the
 *                           moment the recorder has committed (and
 *                           acknowledged) all 2M stream entries: it
 *                           stores its count in shared memory every
 *                           millisecond; the record is checked after the
 *                           clock stops.  Beside it the CPU per task of
 *                           the recorder, PostgreSQL, Redis (INFO cpu) and
 *                           the worker, with and without recording, of
 *                           the whole machine (/proc/stat: every
 *                           process), and the best ratio that CPU allows:
 *                           every core busy recording at worker-only's
 *                           rate, cores / (worker-only tasks/s * CPU per
 *                           task)
 *   e2e.recording.results_throughput
 *                           in that run, first submit to the last result:
 *                           what the worker does while being recorded
 *   e2e.group_read.throughput
 *                           the recording's ceiling: the same run with,
 *                           instead of the recorder, a reader that reads
 *                           the queue and results streams as it does (one
 *                           XREADGROUP of both, in a group of its own, its
 *                           COUNT), XACKs what it read and writes nothing;
 *                           first submit to all 2M entries acknowledged
 *   e2e.xread.throughput    the same reader without a group: XREAD from
 *                           the last ids seen, nothing to acknowledge
 *   e2e.append_read.throughput
 *                           the cheapest record that loses nothing: the
 *                           group reader, appending every entry it read
 *                           to a table keyed by (stream, entry id) in one
 *                           binary COPY per read before its XACKs
 *
 * The end-to-end runs go in -r rounds (5) of worker only, recorded, group
 * read, XREAD and append, one after the other; the figures are medians,
 * the ratios (to worker only) the medians of the rounds' ratios.
 *
 * The record is checked with count(*) after each run: every task
 * completed, every state there once.
 *
 *   bench_recorder [-n records_tasks] [-b batch] [-e e2e_tasks]
 *                  [-r rounds] [-c concurrency]
 *                                        (-e 0 skips the end-to-end part)
 *
 * Run it through bench/run: it needs HIVE_TEST_REDIS_HOST/PORT,
 * HIVE_TEST_PG (a libpq connection string to a server where it may create
 * a database), HIVE_WORKER and HIVE_ECHO.  HIVE_BENCH_STATS=1 also prints
 * to stderr, for each end-to-end run, Redis' INFO commandstats (reset
 * before it) and the recorder's counters (transactions, upserts).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "benchutil.h"
#include "hive_proto.h"
#include "log.h"
#include "record.h"

#define BATCH       1000     /* XADDs per pipelined batch */
#define POLL_S      0.005    /* recorder progress checks */
#define STALL_S     60.0     /* no progress for this long: give up */
#define COPY_CHUNK  (256 * 1024)
#define E2E_ROUNDS_MAX 16
#define AGENT       "bench/1"
#define HOST        "bench-host"

static const char *redis_host, *redis_port;
static char conninfo[1024];
/* Stream entries the recorder child has committed and acknowledged, and
 * the rows it upserted (tasks written before: queued, then finished), in
 * memory shared with it (it stores its counts every COMMITTED_S). */
static uint64_t *committed, *upserted;
#define COMMITTED_S 0.001

static double
tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* CPU seconds this process has used. */
static double
self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
}

/*
 * CPU seconds used so far by the PostgreSQL server bench/run started
 * (HIVE_TEST_PG_PID, its postmaster) and its live children, from
 * /proc/PID/stat; -1 when unknown.  Says where a recorder's time goes.
 */
static double
pg_cpu_s(void)
{
	const char *env = getenv("HIVE_TEST_PG_PID");
	long pm = env ? atol(env) : 0, hz = sysconf(_SC_CLK_TCK);
	unsigned long long ticks = 0;
	struct dirent *de;
	char path[300], buf[1024];
	DIR *d;

	if (pm <= 0 || hz <= 0 || (d = opendir("/proc")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		unsigned long long ut, st;
		long pid = atol(de->d_name), ppid;
		char *p;
		FILE *f;
		size_t n;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		/* pid (comm) state ppid ... utime stime: fields 4, 14, 15;
		 * comm may hold anything, so count from its last ')'. */
		if ((p = strrchr(buf, ')')) == NULL ||
		    sscanf(p + 1, " %*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u "
		    "%llu %llu", &ppid, &ut, &st) != 3)
			continue;
		if (pid == pm || ppid == pm)
			ticks += ut + st;
	}
	closedir(d);
	return (double)ticks / (double)hz;
}

/* ---- blocking Redis and PostgreSQL, for everything but the recorder ---- */

static redisContext *
redis_connect(void)
{
	redisContext *c = redisConnect(redis_host, atoi(redis_port));

	if (c == NULL || c->err)
		bench_die("connect to redis: %s", c ? c->errstr : "out of memory");
	return c;
}

static PGconn *
pg_connect(const char *ci)
{
	PGconn *pc = PQconnectdb(ci);

	if (PQstatus(pc) != CONNECTION_OK)
		bench_die("connect to postgres: %s", PQerrorMessage(pc));
	return pc;
}

static void
pexec(PGconn *pc, const char *sql)
{
	PGresult *res = PQexec(pc, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		bench_die("%s: %s", sql, PQerrorMessage(pc));
	PQclear(res);
}

static long
pscalar(PGconn *pc, const char *fmt, ...)
{
	char sql[512];
	PGresult *res;
	va_list ap;
	long v;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	res = PQexec(pc, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		bench_die("%s: %s", sql, PQerrorMessage(pc));
	v = PQgetisnull(res, 0, 0) ? -1 : atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

/* ---- messages ---- */

static void
map1(msgpack_object *o, msgpack_object_kv *kv, const char *key, uint64_t v)
{
	kv->key.type = MSGPACK_OBJECT_STR;
	kv->key.via.str.ptr = key;
	kv->key.via.str.size = (uint32_t)strlen(key);
	kv->val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	kv->val.via.u64 = v;
	o->type = MSGPACK_OBJECT_MAP;
	o->via.map.size = 1;
	o->via.map.ptr = kv;
}

/* Task "<tag>-<i>" with payload {"n": i}, appended to sb. */
static void
encode_task(msgpack_sbuffer *sb, const char *tag, int i, uint64_t ms)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_object_kv kv;
	char id[96], why[256];

	snprintf(id, sizeof(id), "%s-%d", tag, i);
	memset(&t, 0, sizeof(t));
	t.v = HIVE_PROTO_VERSION;
	t.id = HIVE_STR(id);
	map1(&t.payload, &kv, "n", (uint64_t)i);
	t.attempt = 1;
	t.created_ms = ms;
	if (proto_encode_task(sb, &t, &err) == -1)
		bench_die("encode task: %s", proto_strerror(&err, why, sizeof(why)));
}

/* Its result as a worker running the echo handler publishes it. */
static void
encode_result(msgpack_sbuffer *sb, const char *tag, int i, uint64_t ms)
{
	struct hive_result r;
	struct proto_err err;
	msgpack_object_kv kv;
	char id[96], why[256];

	snprintf(id, sizeof(id), "%s-%d", tag, i);
	memset(&r, 0, sizeof(r));
	r.v = HIVE_PROTO_VERSION;
	r.id = HIVE_STR(id);
	r.agent = HIVE_STR(AGENT);
	r.host = HIVE_STR(HOST);
	r.status = HIVE_STATUS_OK;
	map1(&r.result, &kv, "n", (uint64_t)i);
	r.memory.type = MSGPACK_OBJECT_NIL;
	r.attempt = 1;
	r.started_ms = ms;
	r.finished_ms = ms + 1;
	if (proto_encode_result(sb, &r, &err) == -1)
		bench_die("encode result: %s", proto_strerror(&err, why, sizeof(why)));
}

/* XADD n tasks (results: 0) or n results (1) to key, pipelined. */
static void
fill(redisContext *c, const char *key, const char *tag, int n, int results)
{
	msgpack_sbuffer sb;
	redisReply *r;
	uint64_t ms = proto_now_ms();

	msgpack_sbuffer_init(&sb);
	for (int i = 0; i < n; i += BATCH) {
		int m = n - i < BATCH ? n - i : BATCH;
		for (int j = 0; j < m; j++) {
			msgpack_sbuffer_clear(&sb);
			if (results)
				encode_result(&sb, tag, i + j, ms);
			else
				encode_task(&sb, tag, i + j, ms);
			redisAppendCommand(c, "XADD %s * m %b", key, sb.data,
			    sb.size);
		}
		for (int j = 0; j < m; j++) {
			if (redisGetReply(c, (void **)&r) != REDIS_OK)
				bench_die("XADD: %s", c->errstr);
			if (r->type == REDIS_REPLY_ERROR)
				bench_die("XADD: %s", r->str);
			freeReplyObject(r);
		}
	}
	msgpack_sbuffer_destroy(&sb);
}

/* ---- the recorder on a loop of its own ---- */

struct rec_wait {
	struct sup_recorder *rec;
	uint64_t want;               /* entries committed and acked */
	uint64_t last;
	double progress;
	int done;
};

static void
on_migrated(int ok, int version, void *arg)
{
	*(int *)arg = ok ? 1 : -1;
}

static void
migrate(void)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct sup_pg *pg;
	int migrated = 0;

	if (loop == NULL || (pg = sup_pg_new(loop, conninfo, NULL, NULL)) == NULL)
		bench_die("out of memory");
	if (sup_migrate(pg, on_migrated, &migrated) == -1)
		bench_die("migrate: out of memory");
	while (migrated == 0)
		ev_run(loop, EVRUN_ONCE);
	if (migrated != 1)
		bench_die("schema migration failed (see the log above)");
	sup_pg_free(pg);
	ev_loop_destroy(loop);
}

static void
poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rec_wait *rw = w->data;
	struct sup_recorder_stats st;
	double now = bench_mono_s();

	sup_recorder_stats(rw->rec, &st);
	if (st.entries != rw->last) {
		rw->last = st.entries;
		rw->progress = now;
	}
	if (st.entries >= rw->want) {
		rw->done = 1;
		ev_break(loop, EVBREAK_ONE);
	} else if (now - rw->progress > STALL_S)
		bench_die("recorder: no progress for %.0f s (%" PRIu64 " of %" PRIu64
		    " entries)", STALL_S, st.entries, rw->want);
}

/*
 * Start a recorder on prefix and run it until it has recorded want
 * entries.  Returns the seconds from its start to then; *batches gets the
 * transactions it committed, *cpu_rec and *cpu_pg the CPU seconds the
 * recorder (this process) and PostgreSQL used meanwhile.
 */
static double
record_all(const char *prefix, unsigned batch, uint64_t want,
    uint64_t *batches, double *cpu_rec, double *cpu_pg)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct sup_recorder_opts o;
	struct sup_recorder_stats st;
	struct rec_wait rw;
	struct sup_pg *pg;
	char redis[256];
	ev_timer poll;
	double t0, t1;

	if (loop == NULL)
		bench_die("out of memory");
	snprintf(redis, sizeof(redis), "%s:%s", redis_host, redis_port);
	memset(&o, 0, sizeof(o));
	o.redis = redis;
	o.prefix = prefix;
	o.host = HOST;
	o.batch = batch;
	memset(&rw, 0, sizeof(rw));
	rw.want = want;

	/* PostgreSQL connected before the clock starts: hived's is too. */
	if ((pg = sup_pg_new(loop, conninfo, NULL, NULL)) == NULL)
		bench_die("out of memory");
	while (!sup_pg_is_up(pg))
		ev_run(loop, EVRUN_ONCE);

	*cpu_rec = self_cpu_s();
	*cpu_pg = pg_cpu_s();
	t0 = rw.progress = bench_mono_s();
	if ((rw.rec = sup_recorder_new(loop, pg, &o)) == NULL)
		bench_die("sup_recorder_new failed");
	ev_timer_init(&poll, poll_cb, POLL_S, POLL_S);
	poll.data = &rw;
	ev_timer_start(loop, &poll);
	ev_run(loop, 0);
	t1 = bench_mono_s();
	*cpu_rec = self_cpu_s() - *cpu_rec;
	*cpu_pg = *cpu_pg < 0 ? -1 : pg_cpu_s() - *cpu_pg;
	ev_timer_stop(loop, &poll);
	sup_recorder_stats(rw.rec, &st);
	*batches = st.batches;
	sup_recorder_free(rw.rec);
	sup_pg_free(pg);
	ev_loop_destroy(loop);
	return t1 - t0;
}

/* The median of n values (sorts a copy). */
static double
median(const double *v, int n)
{
	double s[E2E_ROUNDS_MAX];

	memcpy(s, v, (size_t)n * sizeof(*s));
	qsort(s, (size_t)n, sizeof(*s), bench_cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The record holds n tasks of tag, completed, with 3 states each. */
static void
check_record(PGconn *pc, const char *tag, int n)
{
	long done, states;

	done = pscalar(pc, "SELECT count(*) FROM tasks WHERE id LIKE '%s-%%' "
	    "AND state = 'completed' AND attempts = 1", tag);
	states = pscalar(pc, "SELECT count(*) FROM task_states WHERE task_id "
	    "LIKE '%s-%%'", tag);
	if (done != n || states != 3L * n)
		bench_die("record of %s: %ld of %d tasks completed, %ld of %ld states",
		    tag, done, n, states, 3L * n);
}

/* ---- the ceiling: a bare COPY of the same rows ---- */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->len + n > b->cap) {
		while (b->len + n > b->cap)
			b->cap = b->cap ? b->cap * 2 : 1 << 20;
		if ((b->p = realloc(b->p, b->cap)) == NULL)
			bench_die("out of memory");
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void __attribute__((format(printf, 2, 3)))
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		bench_die("row too long");
	sb_add(b, tmp, (size_t)n);
}

/* A timestamptz in COPY text form. */
static void
ts_text(char *buf, size_t len, uint64_t ms)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&s, &tm);
	n = strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03u+00", (unsigned)(ms % 1000));
}

static void
copy_rows(PGconn *pc, const char *sql, const struct sbuf *rows)
{
	PGresult *res = PQexec(pc, sql);

	if (PQresultStatus(res) != PGRES_COPY_IN)
		bench_die("%s: %s", sql, PQerrorMessage(pc));
	PQclear(res);
	for (size_t off = 0; off < rows->len; off += COPY_CHUNK) {
		size_t n = rows->len - off < COPY_CHUNK ? rows->len - off : COPY_CHUNK;
		if (PQputCopyData(pc, rows->p + off, (int)n) != 1)
			bench_die("PQputCopyData: %s", PQerrorMessage(pc));
	}
	if (PQputCopyEnd(pc, NULL) != 1)
		bench_die("PQputCopyEnd: %s", PQerrorMessage(pc));
	while ((res = PQgetResult(pc)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			bench_die("COPY: %s", PQerrorMessage(pc));
		PQclear(res);
	}
}

/*
 * What the recorder writes for n tasks and their results, as COPY rows:
 * the tasks row in its final state (with the task message, the result as
 * JSON, the times of its three states).  Returns the seconds of the COPY,
 * and in *cpu_pg PostgreSQL's CPU seconds meanwhile (-1: unknown).
 */
static double
copy_ceiling(PGconn *pc, const char *qkey, const char *rkey, const char *tag,
    int n, double *cpu_pg)
{
	static const char hex[] = "0123456789abcdef";
	struct sbuf tasks = { 0 };
	msgpack_sbuffer sb;
	uint64_t ms = proto_now_ms();
	char t0s[48], t1s[48];
	double t0, t1;

	pexec(pc, "CREATE TABLE bench_copy_tasks (LIKE tasks INCLUDING ALL)");
	msgpack_sbuffer_init(&sb);
	ts_text(t0s, sizeof(t0s), ms);
	ts_text(t1s, sizeof(t1s), ms + 1);
	for (int i = 0; i < n; i++) {
		char entry[64];
		snprintf(entry, sizeof(entry), "%" PRIu64 "-%d", ms, i);
		msgpack_sbuffer_clear(&sb);
		encode_task(&sb, tag, i, ms);
		/* id stream entry state attempts agent workflow message result
		 * error created_at queued_at started_at updated_at finished_at */
		sb_printf(&tasks, "%s-%d\t%s\t%s\tcompleted\t1\t" AGENT "\t\\N\t\\\\x",
		    tag, i, qkey, entry);
		for (size_t k = 0; k < sb.size; k++) {
			char h[2] = { hex[(unsigned char)sb.data[k] >> 4],
			    hex[(unsigned char)sb.data[k] & 15] };
			sb_add(&tasks, h, 2);
		}
		sb_printf(&tasks, "\t{\"n\": %d}\t\\N\t%s\t%s\t%s\t%s\t%s\n", i,
		    t0s, t0s, t0s, t1s, t1s);
	}
	msgpack_sbuffer_destroy(&sb);

	t0 = bench_mono_s();
	*cpu_pg = pg_cpu_s();
	pexec(pc, "BEGIN");
	copy_rows(pc, "COPY bench_copy_tasks (id, stream, entry, state, attempts, "
	    "agent, workflow, message, result, error, created_at, queued_at, "
	    "started_at, updated_at, finished_at) FROM STDIN", &tasks);
	pexec(pc, "COMMIT");
	t1 = bench_mono_s();
	*cpu_pg = *cpu_pg < 0 ? -1 : pg_cpu_s() - *cpu_pg;

	if (pscalar(pc, "SELECT count(*) FROM bench_copy_tasks") != n)
		bench_die("COPY: rows missing");
	pexec(pc, "DROP TABLE bench_copy_tasks");
	free(tasks.p);
	return t1 - t0;
}

/* ---- end to end: a worker, with and without a recorder ---- */

static pid_t
start_worker(const char *prefix, const char *conc)
{
	char redis[256];
	pid_t pid;

	snprintf(redis, sizeof(redis), "%s:%s", redis_host, redis_port);
	if ((pid = fork()) == -1)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		execl(getenv("HIVE_WORKER"), "hive-worker", "--agent", "bench",
		    "--capabilities", "bench", "--mode", "stream", "--concurrency",
		    conc, "--prefix", prefix, "--redis", redis, "--host", HOST,
		    "--", getenv("HIVE_ECHO"), (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Stop a child we started and reap it; returns the CPU seconds it used. */
static double
stop_child(pid_t pid, const char *what)
{
	struct rusage ru;
	int st;

	kill(pid, SIGTERM);
	if (wait4(pid, &st, 0, &ru) == -1)
		bench_die("wait4: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "bench_recorder: %s exit status %#x\n", what, st);
	return tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
}

/* Wait for n entries on key after *last. */
static void
await_results(redisContext *c, const char *key, char *last, size_t lastlen,
    int n)
{
	redisReply *r, *entries;
	int got = 0;

	while (got < n) {
		r = redisCommand(c, "XREAD COUNT 1000 BLOCK 30000 STREAMS %s %s",
		    key, last);
		if (r == NULL)
			bench_die("XREAD: %s", c->errstr);
		if (r->type != REDIS_REPLY_ARRAY)
			bench_die("results: none for 30 s: is the worker running?");
		entries = r->element[0]->element[1];
		got += (int)entries->elements;
		snprintf(last, lastlen, "%s",
		    entries->element[entries->elements - 1]->element[0]->str);
		freeReplyObject(r);
	}
}

static void
child_term_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void
child_count_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup_recorder_stats st;

	sup_recorder_stats(w->data, &st);
	__atomic_store_n(upserted, st.staged, __ATOMIC_RELAXED);
	__atomic_store_n(committed, st.entries, __ATOMIC_RELEASE);
}

/* Fork a child of the end-to-end run: its pid in the parent, 0 in the
 * child, which holds none of the parent's connections: it closes their
 * fds (without a goodbye on them, which would end the parent's
 * sessions). */
static pid_t
fork_child(int close1, int close2)
{
	pid_t pid;

	fflush(NULL);
	if ((pid = fork()) == -1)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(close1);
		close(close2);
	}
	return pid;
}

/* The recorder as hived runs it: in its own process, on its own loop. */
static pid_t
start_recorder(const char *prefix, int close1, int close2)
{
	struct sup_recorder_opts o;
	struct sup_recorder *rec;
	struct ev_loop *loop;
	struct sup_pg *pg;
	char redis[256];
	ev_signal term;
	ev_timer count;
	pid_t pid;

	if ((pid = fork_child(close1, close2)) > 0)
		return pid;
	if ((loop = ev_loop_new(EVFLAG_AUTO)) == NULL)
		_exit(1);
	snprintf(redis, sizeof(redis), "%s:%s", redis_host, redis_port);
	memset(&o, 0, sizeof(o));
	o.redis = redis;
	o.prefix = prefix;
	o.host = HOST;
	if ((pg = sup_pg_new(loop, conninfo, NULL, NULL)) == NULL ||
	    (rec = sup_recorder_new(loop, pg, &o)) == NULL)
		_exit(1);
	ev_signal_init(&term, child_term_cb, SIGTERM);
	ev_signal_start(loop, &term);
	ev_timer_init(&count, child_count_cb, COMMITTED_S, COMMITTED_S);
	count.data = rec;
	ev_timer_start(loop, &count);
	ev_run(loop, 0);
	ev_timer_stop(loop, &count);
	ev_signal_stop(loop, &term);
	if (getenv("HIVE_BENCH_STATS")) {
		struct sup_recorder_stats st;

		sup_recorder_stats(rec, &st);
		fprintf(stderr, "bench_recorder: %s, recorder: %" PRIu64
		    " transactions, %" PRIu64 " entries, %" PRIu64 " rows "
		    "upserted, %" PRIu64 " retries\n", prefix, st.batches,
		    st.entries, st.staged, st.retries);
	}
	sup_recorder_free(rec);
	sup_pg_free(pg);
	ev_loop_destroy(loop);
	_exit(0);
}

static void
be16(struct sbuf *b, uint16_t v)
{
	unsigned char x[2] = { (unsigned char)(v >> 8), (unsigned char)v };

	sb_add(b, (const char *)x, 2);
}

static void
be32(struct sbuf *b, uint32_t v)
{
	unsigned char x[4] = { (unsigned char)(v >> 24),
	    (unsigned char)(v >> 16), (unsigned char)(v >> 8),
	    (unsigned char)v };

	sb_add(b, (const char *)x, 4);
}

/*
 * The cheapest record that loses nothing: every entry of an XREADGROUP
 * reply appended as a row (stream, entry id, its first value) to
 * bench_entries, keyed by (stream, entry) so that a reply written twice
 * would fail rather than count twice; one binary COPY, its own
 * transaction, before the XACKs.
 */
static void
append_entries(PGconn *pg, const redisReply *r, const char *q,
    struct sbuf *rows)
{
	size_t n = 0;

	/* Signature, flags 0, header extension length 0. */
	rows->len = 0;
	sb_add(rows, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *st = r->element[i]->element[1];
		uint16_t k = strcmp(r->element[i]->element[0]->str, q) ? 1 : 0;

		for (size_t j = 0; j < st->elements; j++) {
			const redisReply *e = st->element[j];
			const redisReply *f = e->element[1];
			const char *v = f->elements >= 2 ? f->element[1]->str : "";
			size_t vl = f->elements >= 2 ? f->element[1]->len : 0;

			be16(rows, 3);
			be32(rows, 2);
			be16(rows, k);
			be32(rows, (uint32_t)e->element[0]->len);
			sb_add(rows, e->element[0]->str, e->element[0]->len);
			be32(rows, (uint32_t)vl);
			sb_add(rows, v, vl);
			n++;
		}
	}
	if (n == 0)
		return;
	be16(rows, 0xffff);
	copy_rows(pg, "COPY bench_entries FROM STDIN (FORMAT binary)", rows);
}

/* Entries per stream per read: the appending reader reads more at a time,
 * fewer and larger transactions, as the recorder does (its reads are
 * bounded by bytes, REC_BATCH_BYTES). */
#define READER_COUNT         256
#define READER_COUNT_APPEND  4096
#define STR_(x)              #x
#define STR(x)               STR_(x)

static volatile sig_atomic_t reader_stop;

static void
reader_term(int sig)
{
	(void)sig;
	reader_stop = 1;
}

/*
 * What reading costs Redis without recording: a child that reads the
 * queue and results streams as the recorder does (one read of both, its
 * COUNT, from the start), writes nothing (append: append_entries) and counts what it read in
 * `committed`.  group: in a consumer group of its own, acknowledging
 * each read (XREADGROUP then XACK per stream, pipelined); otherwise with
 * XREAD from the last ids it saw.  A blocking client: the child does
 * nothing else.
 */
static pid_t
start_reader(const char *q, const char *res, int group, int append,
    int close1, int close2)
{
	const char *keys[2] = { q, res }, **argv;
	char last[2][64] = { "0", "0" }, count[16];
	size_t argc, *lens, cap = 2 * READER_COUNT_APPEND + 8;
	redisReply *r, *st;
	redisContext *c;
	PGconn *pg = NULL;
	struct sbuf rows = { 0 };
	pid_t pid;

	if ((pid = fork_child(close1, close2)) > 0)
		return pid;
	signal(SIGTERM, reader_term);
	c = redis_connect();
	if (append)
		pg = pg_connect(conninfo);
	argv = calloc(cap, sizeof(*argv));
	lens = calloc(cap, sizeof(*lens));
	if (argv == NULL || lens == NULL)
		_exit(1);
	for (int i = 0; group && i < 2; i++) {
		r = redisCommand(c, "XGROUP CREATE %s bench-read 0 MKSTREAM",
		    keys[i]);
		freeReplyObject(r);
	}
	snprintf(count, sizeof(count), "%d", append ? READER_COUNT_APPEND :
	    READER_COUNT);
	while (!reader_stop) {
		if (group)
			r = redisCommand(c, "XREADGROUP GROUP bench-read %s COUNT %s "
			    "BLOCK 100 STREAMS %s %s > >", HOST, count, q, res);
		else
			r = redisCommand(c, "XREAD COUNT %s BLOCK 100 STREAMS %s %s "
			    "%s %s", count, q, res, last[0], last[1]);
		if (r == NULL)
			_exit(1);
		if (pg != NULL && r->type == REDIS_REPLY_ARRAY)
			append_entries(pg, r, q, &rows);
		for (size_t i = 0; r->type == REDIS_REPLY_ARRAY &&
		    i < r->elements; i++) {
			int k = strcmp(r->element[i]->element[0]->str, q) ? 1 : 0;

			st = r->element[i]->element[1];
			if (st->elements == 0)
				continue;
			snprintf(last[k], sizeof(last[k]), "%s",
			    st->element[st->elements - 1]->element[0]->str);
			if (!group)
				continue;
			argc = 0;
			argv[argc++] = "XACK";
			argv[argc++] = keys[k];
			argv[argc++] = "bench-read";
			for (size_t j = 0; j < st->elements && argc < cap; j++)
				argv[argc++] = st->element[j]->element[0]->str;
			for (size_t j = 0; j < argc; j++)
				lens[j] = strlen(argv[j]);
			redisAppendCommandArgv(c, (int)argc, argv, lens);
		}
		for (size_t i = 0; group && r->type == REDIS_REPLY_ARRAY &&
		    i < r->elements; i++) {
			redisReply *a;

			if (r->element[i]->element[1]->elements == 0)
				continue;
			if (redisGetReply(c, (void **)&a) != REDIS_OK)
				_exit(1);
			freeReplyObject(a);
		}
		for (size_t i = 0; r->type == REDIS_REPLY_ARRAY &&
		    i < r->elements; i++)
			__atomic_add_fetch(committed,
			    r->element[i]->element[1]->elements, __ATOMIC_RELEASE);
		freeReplyObject(r);
	}
	redisFree(c);
	if (pg != NULL)
		PQfinish(pg);
	free(rows.p);
	_exit(0);
}

/* Poll (every POLL_S) until PostgreSQL holds n tasks of tag and their
 * states; the last task first, with a cheap lookup. */
static void
await_record(PGconn *pc, const char *tag, int n)
{
	struct timespec ts = { 0, (long)(POLL_S * 1e9) };
	double deadline = bench_mono_s() + 300;
	long v;

	while (bench_mono_s() < deadline) {
		v = pscalar(pc, "SELECT count(*) FROM tasks WHERE id = '%s-%d' "
		    "AND state = 'completed'", tag, n - 1);
		if (v == 1 &&
		    pscalar(pc, "SELECT count(*) FROM task_states WHERE task_id "
		    "LIKE '%s-%%'", tag) == 3L * n)
			return;
		nanosleep(&ts, NULL);
	}
	bench_die("record of %s: not complete after 300 s", tag);
}

/*
 * Wait until the recorder child has committed n entries more than base:
 * then they are in PostgreSQL (check_record reads them after the clock
 * stops; polling PostgreSQL here would add its own queries to what is
 * measured).
 */
static void
await_committed(uint64_t base, uint64_t n)
{
	struct timespec ts = { 0, (long)(COMMITTED_S * 1e9) };
	double deadline = bench_mono_s() + 300;

	while (__atomic_load_n(committed, __ATOMIC_ACQUIRE) < base + n) {
		if (bench_mono_s() > deadline)
			bench_die("recorder: %" PRIu64 " of %" PRIu64 " entries "
			    "committed after 300 s", __atomic_load_n(committed,
			    __ATOMIC_ACQUIRE) - base, n);
		nanosleep(&ts, NULL);
	}
}

/* CPU seconds the Redis server has used so far (INFO cpu); -1 unknown. */
static double
redis_cpu_s(redisContext *c)
{
	redisReply *r = redisCommand(c, "INFO cpu");
	double s = -1;
	char *p;

	if (r && r->type == REDIS_REPLY_STRING &&
	    (p = strstr(r->str, "used_cpu_sys:")) != NULL) {
		s = atof(p + 13);
		if ((p = strstr(r->str, "used_cpu_user:")) != NULL)
			s += atof(p + 14);
		else
			s = -1;
	}
	freeReplyObject(r);
	return s;
}

/* CPU seconds the whole machine has spent busy (every process, every
 * core: /proc/stat), -1 if unknown. */
static double
machine_busy_s(void)
{
	unsigned long long us, ni, sy, id, io, irq, sirq;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (f == NULL)
		return -1;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &us, &ni, &sy,
	    &id, &io, &irq, &sirq);
	fclose(f);
	return n == 7 && hz > 0 ? (double)(us + ni + sy + irq + sirq) / hz : -1;
}

/* One e2e_run: rates in tasks/s, CPU in seconds. */
struct e2e {
	double to_result;            /* first submit to the last result */
	double to_record;            /* ... to the last record committed */
	double busy;                 /* the machine's busy CPU meanwhile */
	double cpu_redis;            /* Redis' CPU meanwhile */
	double cpu_pg;               /* PostgreSQL's (recording only) */
	double cpu_rec;              /* the recorder's, its whole life */
	double cpu_worker;           /* the worker's, its whole life */
	double upserted;             /* rows the recorder upserted */
};

/* The median of one field of n runs, times scale. */
static double
e2e_median(const struct e2e *v, int n, size_t off, double scale)
{
	double x[E2E_ROUNDS_MAX];

	for (int k = 0; k < n; k++)
		memcpy(&x[k], (const char *)&v[k] + off, sizeof(double));
	return scale * median(x, n);
}

/*
 * n tasks through one worker: tasks/s from the first submit to the last
 * result (and, with a recorder, to the last record committed to
 * PostgreSQL), and the CPU that took.
 */
enum e2e_mode { E2E_WORKER, E2E_RECORDED, E2E_GROUP_READ, E2E_XREAD,
    E2E_APPEND };

static void
e2e_run(redisContext *c, PGconn *pc, const char *prefix, const char *conc,
    int n, enum e2e_mode mode, struct e2e *out)
{
	int record = mode != E2E_WORKER;

	char q[HIVE_KEY_MAX], res[HIVE_KEY_MAX], last[64] = "0";
	char tag[80], warm[80];         /* prefix (< 64) + "-t" */
	uint64_t base = 0, base_upserted = 0;
	pid_t w, r = -1;
	double t0;

	memset(out, 0, sizeof(*out));
	proto_key_queue(q, sizeof(q), prefix, "bench", HIVE_PRIO_DEFAULT);
	proto_key_named(res, sizeof(res), prefix, "results");
	snprintf(tag, sizeof(tag), "%s-t", prefix);
	snprintf(warm, sizeof(warm), "%s-w", prefix);
	w = start_worker(prefix, conc);
	fill(c, q, warm, 1, 0);
	await_results(c, res, last, sizeof(last), 1);
	if (record) {
		/* Caught up with the warm-up task: the recorder reads. */
		__atomic_store_n(committed, 0, __ATOMIC_RELEASE);
		__atomic_store_n(upserted, 0, __ATOMIC_RELAXED);
		if (mode == E2E_RECORDED) {
			r = start_recorder(prefix, c->fd, PQsocket(pc));
			await_record(pc, warm, 1);
		} else {
			if (mode == E2E_APPEND)
				pexec(pc, "TRUNCATE bench_entries");
			r = start_reader(q, res, mode != E2E_XREAD,
			    mode == E2E_APPEND, c->fd, PQsocket(pc));
		}
		await_committed(0, 2);
		base = __atomic_load_n(committed, __ATOMIC_ACQUIRE);
		base_upserted = __atomic_load_n(upserted, __ATOMIC_RELAXED);
	}
	if (getenv("HIVE_BENCH_STATS"))
		bench_cmd(c, "CONFIG RESETSTAT");
	out->cpu_pg = pg_cpu_s();
	out->cpu_redis = redis_cpu_s(c);
	out->busy = machine_busy_s();
	t0 = bench_mono_s();
	fill(c, q, tag, n, 0);
	await_results(c, res, last, sizeof(last), n);
	out->to_result = n / (bench_mono_s() - t0);
	if (record) {
		/* A queue entry and a result per task. */
		await_committed(base, 2 * (uint64_t)n);
		out->to_record = n / (bench_mono_s() - t0);
		out->upserted = (double)(__atomic_load_n(upserted,
		    __ATOMIC_RELAXED) - base_upserted);
		out->cpu_pg = out->cpu_pg < 0 || mode == E2E_GROUP_READ ||
		    mode == E2E_XREAD ? -1 : pg_cpu_s() - out->cpu_pg;
	}
	out->busy = out->busy < 0 ? -1 : machine_busy_s() - out->busy;
	out->cpu_redis = out->cpu_redis < 0 ? -1 :
	    redis_cpu_s(c) - out->cpu_redis;
	if (getenv("HIVE_BENCH_STATS")) {
		redisReply *x = redisCommand(c, "INFO commandstats");

		if (x != NULL && x->type == REDIS_REPLY_STRING)
			fprintf(stderr, "bench_recorder: %s, %s", prefix, x->str);
		freeReplyObject(x);
	}
	if (mode == E2E_RECORDED)
		check_record(pc, tag, n);
	if (record)
		out->cpu_rec = stop_child(r, mode == E2E_RECORDED ? "recorder" :
		    "reader");
	out->cpu_worker = stop_child(w, "worker");
}

int
main(int argc, char **argv)
{
	int n = 50000, ne = 50000, rounds = 5, ch;
	unsigned batch = 0;
	const char *conc = "256";
	char prefix[64], dbname[64], qkey[HIVE_KEY_MAX], rkey[HIVE_KEY_MAX];
	char sql[256], tag[64];
	const char *pgbase;
	double trec, tcopy, rec_rate, copy_rate;
	struct e2e wo[E2E_ROUNDS_MAX], re[E2E_ROUNDS_MAX];
	struct e2e gr[E2E_ROUNDS_MAX], xr[E2E_ROUNDS_MAX], ap[E2E_ROUNDS_MAX];
	double f_gr[E2E_ROUNDS_MAX], f_xr[E2E_ROUNDS_MAX], f_ap[E2E_ROUNDS_MAX];
	double f_rec[E2E_ROUNDS_MAX], f_res[E2E_ROUNDS_MAX];
	double cpu_rec, cpu_pg, cpu_copy, w_rate, busy;
	uint64_t batches;
	redisContext *c;
	PGconn *admin, *pc;

	while ((ch = getopt(argc, argv, "n:b:e:c:r:")) != -1) {
		switch (ch) {
		case 'n': n = atoi(optarg); break;
		case 'b': batch = (unsigned)atoi(optarg); break;
		case 'e': ne = atoi(optarg); break;
		case 'r': rounds = atoi(optarg); break;
		case 'c': conc = optarg; break;
		default:
			fprintf(stderr, "usage: bench_recorder [-n tasks] [-b batch] "
			    "[-e e2e_tasks] [-r rounds] [-c concurrency]\n");
			return 2;
		}
	}
	redis_host = getenv("HIVE_TEST_REDIS_HOST");
	redis_port = getenv("HIVE_TEST_REDIS_PORT");
	pgbase = getenv("HIVE_TEST_PG");
	if (!redis_host || !redis_port || !pgbase ||
	    (ne > 0 && (!getenv("HIVE_WORKER") || !getenv("HIVE_ECHO"))))
		bench_die("environment: run it through bench/run");
	if (n < 1 || ne < 0 || rounds < 1 || rounds > E2E_ROUNDS_MAX)
		bench_die("-n must be positive, -e not negative, -r 1..%d",
		    E2E_ROUNDS_MAX);
	signal(SIGPIPE, SIG_IGN);
	log_init("bench_recorder", 0);
	committed = mmap(NULL, 2 * sizeof(*committed), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (committed == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	upserted = committed + 1;

	/* A fresh database, migrated as hived does it. */
	snprintf(dbname, sizeof(dbname), "bench_rec_%ld", (long)getpid());
	admin = pg_connect(pgbase);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
	pexec(admin, sql);
	snprintf(conninfo, sizeof(conninfo), "%s dbname=%s", pgbase, dbname);
	migrate();
	pc = pg_connect(conninfo);
	c = redis_connect();

	/* Recorder throughput: everything is in Redis before it starts. */
	snprintf(prefix, sizeof(prefix), "benchrec%ld", (long)getpid());
	snprintf(tag, sizeof(tag), "r%ld", (long)getpid());
	proto_key_queue(qkey, sizeof(qkey), prefix, "bench", HIVE_PRIO_DEFAULT);
	proto_key_named(rkey, sizeof(rkey), prefix, "results");
	fill(c, qkey, tag, n, 0);
	fill(c, rkey, tag, n, 1);
	trec = record_all(prefix, batch, 2 * (uint64_t)n, &batches, &cpu_rec,
	    &cpu_pg);
	check_record(pc, tag, n);
	rec_rate = 2.0 * n / trec;

	/* The ceiling, on the same server, the same database. */
	tcopy = copy_ceiling(pc, qkey, rkey, tag, n, &cpu_copy);
	copy_rate = 2.0 * n / tcopy;
	bench_cmd(c, "DEL %s %s", qkey, rkey);

	printf("recorder.copy.ceiling: %.0f records/s (COPY of %d tasks rows, "
	    "each with the times of its 3 states, in one transaction; "
	    "postgres CPU %.2f s)\n", copy_rate, n, cpu_copy);
	printf("recorder.throughput: %.0f records/s (COPY ceiling %.0f records/s, "
	    "%.0f %%; %d tasks + %d results = %.0f tasks/s recorded, "
	    "%" PRIu64 " transactions; CPU in %.2f s: recorder %.2f s, "
	    "postgres %.2f s)\n", rec_rate, copy_rate,
	    100.0 * rec_rate / copy_rate, n, n, n / trec, batches, trec,
	    cpu_rec, cpu_pg);
	fflush(stdout);

	if (ne > 0) {
		/* Rounds of worker only, recorded, and the three readers
		 * (what reading alone costs, and the cheapest record: the
		 * recording's ceilings), one after the other: what the
		 * machine does meanwhile hits them alike, and the medians of
		 * the ratios are steadier than one set. */
		pexec(pc, "CREATE TABLE bench_entries (stream int2, entry text, "
		    "body bytea, PRIMARY KEY (stream, entry))");
		for (int k = 0; k < rounds; k++) {
			struct e2e *out[] = { &wo[k], &re[k], &gr[k], &xr[k],
			    &ap[k] };

			for (int m = E2E_WORKER; m <= E2E_APPEND; m++) {
				snprintf(prefix, sizeof(prefix), "benche2e%ld-%c%d",
				    (long)getpid(), "abcde"[m], k);
				e2e_run(c, pc, prefix, conc, ne, (enum e2e_mode)m,
				    out[m]);
			}
			f_rec[k] = re[k].to_record / wo[k].to_result;
			f_res[k] = re[k].to_result / wo[k].to_result;
			f_gr[k] = gr[k].to_record / wo[k].to_result;
			f_xr[k] = xr[k].to_record / wo[k].to_result;
			f_ap[k] = ap[k].to_record / wo[k].to_result;
		}
#define E2E_MEDIAN(v, field, scale) \
	e2e_median(v, rounds, offsetof(struct e2e, field), scale)
		w_rate = E2E_MEDIAN(wo, to_result, 1);
		busy = E2E_MEDIAN(re, busy, 1.0 / ne);
		printf("e2e.worker_only.throughput: %.0f tasks/s (one stream worker, "
		    "echo handler, %d tasks, concurrency %s; median of %d rounds, "
		    "each followed by the same recorded and read)\n",
		    w_rate, ne, conc, rounds);
		printf("e2e.recorded.throughput: %.0f tasks/s (worker only %.0f "
		    "tasks/s, %.0f %%: the median of the %d rounds' ratios, ",
		    E2E_MEDIAN(re, to_record, 1), w_rate,
		    100.0 * median(f_rec, rounds), rounds);
		for (int k = 0; k < rounds; k++)
			printf("%s%.0f", k ? " " : "", 100.0 * f_rec[k]);
		printf(" %%; first submit to all %d committed to PostgreSQL; "
		    "tasks written twice (queued, then finished: results more "
		    "than a second after their queue entry): %.0f; CPU "
		    "per task: recorder %.1f us, postgres %.1f us, redis %.1f us "
		    "(%.1f worker only), worker %.1f us (%.1f); the machine's "
		    "busy CPU per task: %.1f us (%.1f); on %ld cores the ratio "
		    "can be at most %.0f %%)\n", ne,
		    E2E_MEDIAN(re, upserted, 1),
		    E2E_MEDIAN(re, cpu_rec, 1e6 / ne),
		    E2E_MEDIAN(re, cpu_pg, 1e6 / ne),
		    E2E_MEDIAN(re, cpu_redis, 1e6 / ne),
		    E2E_MEDIAN(wo, cpu_redis, 1e6 / ne),
		    E2E_MEDIAN(re, cpu_worker, 1e6 / ne),
		    E2E_MEDIAN(wo, cpu_worker, 1e6 / ne),
		    1e6 * busy, E2E_MEDIAN(wo, busy, 1e6 / ne),
		    sysconf(_SC_NPROCESSORS_ONLN), 100.0 *
		    sysconf(_SC_NPROCESSORS_ONLN) / (w_rate * busy));
		printf("e2e.recording.results_throughput: %.0f tasks/s (worker only "
		    "%.0f tasks/s, %.0f %%: the median of the rounds' ratios, ",
		    E2E_MEDIAN(re, to_result, 1), w_rate,
		    100.0 * median(f_res, rounds));
		for (int k = 0; k < rounds; k++)
			printf("%s%.0f", k ? " " : "", 100.0 * f_res[k]);
		printf(" %%; first submit to last result, with the recorder "
		    "running)\n");
		for (int m = 0; m < 3; m++) {
			static const char *const name[] = { "group_read", "xread",
			    "append_read" };
			static const char *const what[] = {
			    "a reader that writes nothing, XREADGROUP of both "
			    "streams in a group of its own, then XACK",
			    "a reader that writes nothing, XREAD of both streams",
			    "the cheapest record: a reader that appends every "
			    "entry it reads in a group to a table keyed by stream "
			    "and entry id (one binary COPY per read of up to "
			    STR(READER_COUNT_APPEND) " entries a stream, its own "
			    "transaction), then XACKs" };
			const struct e2e *const vs[] = { gr, xr, ap };
			const double *const fs[] = { f_gr, f_xr, f_ap };
			const struct e2e *v = vs[m];
			const double *f = fs[m];

			printf("e2e.%s.throughput: %.0f tasks/s (worker only %.0f "
			    "tasks/s, %.0f %%: the median of the rounds' ratios, ",
			    name[m], e2e_median(v, rounds,
			    offsetof(struct e2e, to_record), 1), w_rate,
			    100.0 * median(f, rounds));
			for (int k = 0; k < rounds; k++)
				printf("%s%.0f", k ? " " : "", 100.0 * f[k]);
			printf(" %%; %s; CPU per task: reader %.1f us, ", what[m],
			    e2e_median(v, rounds, offsetof(struct e2e, cpu_rec),
			    1e6 / ne));
			if (m == 2)
				printf("postgres %.1f us, ", e2e_median(v, rounds,
				    offsetof(struct e2e, cpu_pg), 1e6 / ne));
			printf("redis %.1f us; the machine's busy CPU per task "
			    "%.1f us)\n", e2e_median(v, rounds,
			    offsetof(struct e2e, cpu_redis), 1e6 / ne),
			    e2e_median(v, rounds, offsetof(struct e2e, busy),
			    1e6 / ne));
		}
		fflush(stdout);
	}

	snprintf(prefix, sizeof(prefix), "benche2e%ld-", (long)getpid());
	bench_cmd(c, "EVAL %s 0 %s",
	    "for _,k in ipairs(redis.call('KEYS', ARGV[1]..'*')) "
	    "do redis.call('DEL', k) end return 0", prefix);
	redisFree(c);
	PQfinish(pc);
	snprintf(sql, sizeof(sql), "DROP DATABASE %s", dbname);
	pexec(admin, sql);
	PQfinish(admin);
	return 0;
}
