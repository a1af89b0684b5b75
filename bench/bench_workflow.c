/*
 * bench_workflow.c - what a workflow edge costs: hived (with PostgreSQL,
 * so recorder and coordinator run) and one echo agent of 2 instances; the
 * same shapes of work driven once by the coordinator, once by a client
 * that submits each task itself as soon as what it depends on answered.
 *
 *   workflow.chain.client_step  a chain of N tasks driven by the client:
 *                               submit one (reply_to), wait for its reply,
 *                               submit the next: time per task
 *   workflow.chain.step         the same chain as one workflow (N tasks,
 *                               N-1 edges; the last one replies): from
 *                               the XADD of the workflow to that reply,
 *                               per task
 *   workflow.chain.edge_overhead  (workflow - client) / (N - 1): what one
 *                               edge adds to a chain (the coordinator's
 *                               path: the result recorded, the release
 *                               asked of PostgreSQL, the XADD)
 *   workflow.wide.edge_overhead   1 -> M -> 1 (2M edges): a root, M tasks
 *                               that depend on it, a sink that depends on
 *                               them all; the client does the same in
 *                               three steps (root; M pipelined; sink)
 *   workflow.wide.edges_per_s   2M / the workflow's time
 *
 * The chain and the fan run -r times (3), client and workflow one after
 * the other; figures are medians of the rounds.
 *
 *   bench_workflow [-n chain_tasks] [-m fan_width] [-r rounds]
 *
 * Environment (bench/run sets it): HIVE_TEST_REDIS_HOST/PORT,
 * HIVE_TEST_PG (a server where it may create a database), HIVED,
 * HIVE_WORKER, HIVE_ECHO.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "benchutil.h"
#include "hive_proto.h"

#define ROUNDS_MAX 9

static char prefix[32], dir[128], conf[192], logpath[192];
static pid_t hived = -1;
static unsigned seq;

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
pg_exec(const char *ci, const char *sql)
{
	PGconn *pc = PQconnectdb(ci);
	PGresult *res;

	if (PQstatus(pc) != CONNECTION_OK)
		bench_die("postgres: %s", PQerrorMessage(pc));
	res = PQexec(pc, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		bench_die("%s: %s", sql, PQerrorMessage(pc));
	PQclear(res);
	PQfinish(pc);
}

static void
start_hived(const char *postgres)
{
	FILE *f = fopen(conf, "w");

	if (f == NULL)
		bench_die("%s: %s", conf, strerror(errno));
	fprintf(f, "[hive]\nredis = %s:%s\nprefix = %s\nworker = %s\n"
	    "http =\npostgres = %s\n\n"
	    "[agent \"echo\"]\ncommand = %s\ncapabilities = work\n"
	    "instances = 2\n", getenv("HIVE_TEST_REDIS_HOST"),
	    getenv("HIVE_TEST_REDIS_PORT"), prefix, getenv("HIVE_WORKER"),
	    postgres, getenv("HIVE_ECHO"));
	fclose(f);
	if ((hived = fork()) == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		execl(getenv("HIVED"), "hived", "--config", conf, (char *)NULL);
		_exit(127);
	}
	if (hived < 0)
		bench_die("fork: %s", strerror(errno));
}

static void
stop_hived(void)
{
	if (hived > 0) {
		kill(hived, SIGTERM);
		waitpid(hived, NULL, 0);
		hived = -1;
	}
}

static void
die_cleanup(void)
{
	stop_hived();
}

/* A task of the client's own, with a reply stream. */
static void
submit_task(redisContext *c, const char *id, const char *reply)
{
	struct hive_task t = { 0 };
	struct proto_err err;
	msgpack_sbuffer sb;
	char key[HIVE_KEY_MAX];

	t.id = HIVE_STR(id);
	t.attempt = 1;
	t.reply_to = HIVE_STR(reply);
	msgpack_sbuffer_init(&sb);
	if (proto_encode_task(&sb, &t, &err) < 0)
		bench_die("encode task");
	proto_key_queue(key, sizeof(key), prefix, "work", HIVE_PRIO_DEFAULT);
	redisAppendCommand(c, "XADD %s * m %b", key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

static void
drain_replies(redisContext *c, int n)
{
	redisReply *r;

	for (int i = 0; i < n; i++) {
		if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL ||
		    r->type == REDIS_REPLY_ERROR)
			bench_die("XADD failed");
		freeReplyObject(r);
	}
}

/* Wait for n entries on reply (from its id *last on), moving *last. */
static void
wait_reply(redisContext *c, const char *reply, char *last, size_t lastlen,
    int n)
{
	while (n > 0) {
		redisReply *r = redisCommand(c, "XREAD COUNT %d BLOCK 60000 "
		    "STREAMS %s %s", n, reply, last);
		redisReply *l;
		if (r == NULL || r->type != REDIS_REPLY_ARRAY)
			bench_die("no reply on %s within 60 s (hived's log: %s)",
			    reply, logpath);
		l = r->element[0]->element[1];
		for (size_t i = 0; i < l->elements; i++) {
			if (memmem(l->element[i]->element[1]->element[1]->str,
			    l->element[i]->element[1]->element[1]->len,
			    "\"error\"", 7) != NULL)
				bench_die("a task failed (hived's log: %s)", logpath);
			snprintf(last, lastlen, "%s", l->element[i]->element[0]->str);
			n--;
		}
		freeReplyObject(r);
	}
}

static void
new_reply(char *buf, size_t len)
{
	snprintf(buf, len, "hive:reply:%s-%u", prefix, ++seq);
}

/* ---- the client's way ---- */

/* A wave: n tasks "<prefix>-<tag><seq>-<name><i>" submitted pipelined,
 * then their n replies awaited. */
static void
client_wave(redisContext *c, const char *reply, char *last, size_t lastlen,
    const char *name, int n)
{
	char id[128];

	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "%s-%u-%s%d", prefix, seq, name, i);
		submit_task(c, id, reply);
	}
	drain_replies(c, n);
	wait_reply(c, reply, last, lastlen, n);
}

/* kind 'c': a chain of n, one wave of 1 each; 'f': 1, n, 1. */
static double
client(redisContext *c, char kind, int n)
{
	char reply[128], last[64] = "0", name[32];
	double t0 = bench_mono_s();

	new_reply(reply, sizeof(reply));
	if (kind == 'c')
		for (int i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "c%d-", i);
			client_wave(c, reply, last, sizeof(last), name, 1);
		}
	else {
		client_wave(c, reply, last, sizeof(last), "root", 1);
		client_wave(c, reply, last, sizeof(last), "fan", n);
		client_wave(c, reply, last, sizeof(last), "sink", 1);
	}
	bench_cmd(c, "DEL %s", reply);
	return bench_mono_s() - t0;
}

/* ---- the coordinator's way ---- */

/* kind 'c': a chain of n; 'f': 1 -> n -> 1.  The last task replies. */
static double
workflow(redisContext *c, char kind, int n)
{
	struct hive_workflow w = { 0 };
	struct hive_wf_task *t;
	struct hive_str *deps;
	struct proto_err err;
	msgpack_sbuffer sb;
	char reply[128], last[64] = "0", wid[64], key[HIVE_KEY_MAX], eb[PROTO_ERRBUF];
	char (*ids)[96];
	int nt = kind == 'c' ? n : n + 2;
	double t0;

	new_reply(reply, sizeof(reply));
	snprintf(wid, sizeof(wid), "%s-w%c%u", prefix, kind, seq);
	t = calloc((size_t)nt, sizeof(*t));
	deps = calloc((size_t)nt + (size_t)n, sizeof(*deps));
	ids = calloc((size_t)nt, sizeof(*ids));
	if (t == NULL || deps == NULL || ids == NULL)
		bench_die("out of memory");
	for (int i = 0; i < nt; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%s-%d", wid, i);
		t[i].id = HIVE_STR(ids[i]);
		t[i].capability = HIVE_STR("work");
		t[i].prio = HIVE_PRIO_DEFAULT;
	}
	if (kind == 'c') {
		for (int i = 1; i < nt; i++) {
			deps[i] = t[i - 1].id;
			t[i].ndeps = 1;
			t[i].depends_on = &deps[i];
		}
	} else {
		/* 0 the root, 1..n the fan, n+1 the sink. */
		for (int i = 1; i <= n; i++) {
			deps[i] = t[0].id;
			t[i].ndeps = 1;
			t[i].depends_on = &deps[i];
		}
		for (int i = 1; i <= n; i++)
			deps[nt + i - 1] = t[i].id;
		t[n + 1].ndeps = (uint32_t)n;
		t[n + 1].depends_on = &deps[nt];
	}
	t[nt - 1].reply_to = HIVE_STR(reply);
	w.id = HIVE_STR(wid);
	w.ntasks = (uint32_t)nt;
	w.tasks = t;
	msgpack_sbuffer_init(&sb);
	if (proto_encode_workflow(&sb, &w, &err) < 0)
		bench_die("encode workflow: %s", proto_strerror(&err, eb,
		    sizeof(eb)));
	proto_key_named(key, sizeof(key), prefix, "workflows");
	t0 = bench_mono_s();
	bench_cmd(c, "XADD %s * m %b", key, sb.data, sb.size);
	wait_reply(c, reply, last, sizeof(last), 1);
	t0 = bench_mono_s() - t0;
	bench_cmd(c, "DEL %s", reply);
	msgpack_sbuffer_destroy(&sb);
	free(t);
	free(deps);
	free(ids);
	return t0;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int
main(int argc, char **argv)
{
	int n = 200, m = HIVE_WF_DEPS_MAX, rounds = 3, opt;
	double cc[ROUNDS_MAX], wc[ROUNDS_MAX], cf[ROUNDS_MAX], wf[ROUNDS_MAX];
	double over_c[ROUNDS_MAX], over_f[ROUNDS_MAX];
	char db[64], sql[128], ci[512];
	const char *pgbase = getenv("HIVE_TEST_PG");
	redisContext *c;

	while ((opt = getopt(argc, argv, "n:m:r:")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'm': m = atoi(optarg); break;
		case 'r': rounds = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bench_workflow [-n chain_tasks] "
			    "[-m fan_width] [-r rounds]\n");
			return 2;
		}
	}
	/* The sink depends on every task of the fan. */
	if (n < 2 || n > HIVE_WF_TASKS_MAX || m < 1 || m > HIVE_WF_DEPS_MAX ||
	    rounds < 1 || rounds > ROUNDS_MAX)
		bench_die("-n 2..%d, -m 1..%d, -r 1..%d", HIVE_WF_TASKS_MAX,
		    HIVE_WF_DEPS_MAX, ROUNDS_MAX);
	if (!getenv("HIVE_TEST_REDIS_HOST") || !getenv("HIVE_TEST_REDIS_PORT") ||
	    !pgbase || !getenv("HIVED") || !getenv("HIVE_WORKER") ||
	    !getenv("HIVE_ECHO"))
		bench_die("environment: run it through bench/run");
	signal(SIGPIPE, SIG_IGN);
	atexit(die_cleanup);
	snprintf(prefix, sizeof(prefix), "benchwf%ld", (long)getpid());
	snprintf(dir, sizeof(dir), "/tmp/hive-bench-wf-XXXXXX");
	if (mkdtemp(dir) == NULL)
		bench_die("mkdtemp: %s", strerror(errno));
	snprintf(conf, sizeof(conf), "%s/hive.conf", dir);
	snprintf(logpath, sizeof(logpath), "%s/hived.log", dir);
	snprintf(db, sizeof(db), "bench_wf_%ld", (long)getpid());
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
	pg_exec(pgbase, sql);
	snprintf(ci, sizeof(ci), "%s dbname=%s", pgbase, db);
	start_hived(ci);
	c = redis_connect();

	/* Warm up both ways: hived, its workers and the coordinator up. */
	client(c, 'c', 3);
	workflow(c, 'c', 3);
	for (int r = 0; r < rounds; r++) {
		cc[r] = client(c, 'c', n);
		wc[r] = workflow(c, 'c', n);
		cf[r] = client(c, 'f', m);
		wf[r] = workflow(c, 'f', m);
		over_c[r] = (wc[r] - cc[r]) / (n - 1);
		over_f[r] = (wf[r] - cf[r]) / (2.0 * m);
	}
	double mcc = median(cc, rounds), mwc = median(wc, rounds);
	double mwf = median(wf, rounds), mcf = median(cf, rounds);
	printf("workflow.chain.client_step: %.3f ms (a chain of %d tasks, "
	    "each submitted by the client when the one before replied; "
	    "median of %d rounds)\n", 1e3 * mcc / n, n, rounds);
	printf("workflow.chain.step: %.3f ms (the same chain as one workflow, "
	    "%d edges)\n", 1e3 * mwc / n, n - 1);
	printf("workflow.chain.edge_overhead: %.3f ms (per edge: (workflow - "
	    "client) / %d, median of the rounds')\n",
	    1e3 * median(over_c, rounds), n - 1);
	printf("workflow.wide.client: %.3f s (root, %d pipelined, sink)\n",
	    mcf, m);
	printf("workflow.wide.time: %.3f s (1 -> %d -> 1 as one workflow, "
	    "%d edges)\n", mwf, m, 2 * m);
	printf("workflow.wide.edge_overhead: %.3f ms (per edge: (workflow - "
	    "client) / %d, median of the rounds')\n",
	    1e3 * median(over_f, rounds), 2 * m);
	printf("workflow.wide.edges_per_s: %.0f edges/s\n", 2.0 * m / mwf);
	redisFree(c);
	stop_hived();
	/* HIVE_BENCH_KEEP: keep the database, to look at the record. */
	snprintf(sql, sizeof(sql), "DROP DATABASE %s", db);
	if (getenv("HIVE_BENCH_KEEP") == NULL)
		pg_exec(pgbase, sql);
	else
		fprintf(stderr, "bench_workflow: database %s kept\n", db);
	unlink(conf);
	if (getenv("HIVE_BENCH_KEEP") == NULL) {
		unlink(logpath);
		rmdir(dir);
	} else
		fprintf(stderr, "bench_workflow: hived's log kept: %s\n", logpath);
	return 0;
}
