/*
 * test_recover.c - tasks PostgreSQL holds as unfinished and Redis lost are
 * queued again, exactly those.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"
#include "log.h"
#include "record.h"
#include "rconn.h"
#include "testutil.h"

static void
on_migrated(int ok, int version, void *arg)
{
	*(int *)arg = ok ? 1 : -1;
}

static int up;

static void
on_up(struct rconn *rc, int u, void *arg)
{
	up = u;
}

struct outcome { int done; unsigned n; int ok; };

static void
on_recovered(unsigned n, int ok, void *arg)
{
	struct outcome *o = arg;

	o->done = 1;
	o->n = n;
	o->ok = ok;
}

static void
exec_ok(PGconn *c, const char *sql, int n, const char *const *vals,
    const int *lens, const int *fmts)
{
	PGresult *res = PQexecParams(c, sql, n, NULL, vals, lens, fmts, 0);

	cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK ||
	    PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
	    PQerrorMessage(c));
	PQclear(res);
}

Test(recover, requeues_exactly_the_lost)
{
	struct ev_loop *loop = ev_loop_new(0);
	char dbname[64], ci[512], prefix[64], queue[128], addr[128], err[128];
	PGconn *c;
	struct sup_pg *pg;
	struct rconn *rc;
	redisContext *r;
	redisReply *rep;
	int migrated = 0;
	struct outcome out = { 0 };

	log_init("test", 0);
	tu_pg_fresh_db("rv", dbname, sizeof(dbname), ci, sizeof(ci));
	pg = sup_pg_new(loop, ci, NULL, NULL);
	sup_migrate(pg, on_migrated, &migrated);
	while (migrated == 0)
		ev_run(loop, EVRUN_ONCE);
	cr_assert_eq(migrated, 1);

	tu_unique(prefix, sizeof(prefix), "rv");
	proto_key_queue(queue, sizeof(queue), prefix, "echo", 1);
	r = tu_redis_connect();
	/* One entry that Redis still has. */
	rep = redisCommand(r, "XADD %s * m kept", queue);
	char kept_id[64];
	snprintf(kept_id, sizeof(kept_id), "%s", rep->str);
	freeReplyObject(rep);

	msgpack_sbuffer sb;
	struct hive_task t = { 0 };
	struct proto_err perr;
	msgpack_sbuffer_init(&sb);
	t.id = HIVE_STR("lost-1");
	t.attempt = 1;
	cr_assert_eq(proto_encode_task(&sb, &t, &perr), 0);

	c = PQconnectdb(ci);
	const char *v1[] = { "lost-1", queue, "1-1", sb.data };
	const int l1[] = { 0, 0, 0, (int)sb.size }, f1[] = { 0, 0, 0, 1 };
	const char *ins = "INSERT INTO tasks (id, stream, entry, state, attempts, "
	    "message, updated_at) VALUES ($1, $2, $3, $5, 1, $4, now() - "
	    "interval '1 minute')";
	const char *v[5];
	int l[5], f[5];
	memcpy(v, v1, sizeof(v1));
	memcpy(l, l1, sizeof(l1));
	memcpy(f, f1, sizeof(f1));
	v[4] = "queued"; l[4] = 0; f[4] = 0;
	exec_ok(c, ins, 5, v, l, f);
	/* Unfinished but its entry is still there: left alone. */
	v[0] = "kept-1"; v[2] = kept_id;
	exec_ok(c, ins, 5, v, l, f);
	/* Lost but finished: left alone. */
	v[0] = "done-1"; v[2] = "1-2"; v[4] = "completed";
	exec_ok(c, ins, 5, v, l, f);
	PQfinish(c);

	snprintf(addr, sizeof(addr), "%s:%s", getenv("HIVE_TEST_REDIS_HOST"),
	    getenv("HIVE_TEST_REDIS_PORT"));
	rc = rconn_new(loop, addr, "redis(test)", on_up, NULL, err, sizeof(err));
	while (!up)
		ev_run(loop, EVRUN_ONCE);
	cr_assert_eq(sup_recover(pg, rc, prefix, "host-a", on_recovered, &out), 0);
	long long deadline = tu_now_ms() + 20000;
	while (!out.done && tu_now_ms() < deadline)
		ev_run(loop, EVRUN_ONCE);
	cr_assert(out.done);
	cr_assert_eq(out.ok, 1);
	cr_assert_eq(out.n, 1);

	rep = redisCommand(r, "XRANGE %s - +", queue);
	cr_assert_eq(rep->elements, 2);
	redisReply *val = rep->element[1]->element[1]->element[1];
	struct hive_task back;
	cr_assert_eq(proto_decode_task(val->str, val->len, &back, &perr), 0);
	cr_assert_eq(back.id.len, 6);
	cr_assert(memcmp(back.id.ptr, "lost-1", 6) == 0);
	proto_task_clear(&back);
	freeReplyObject(rep);
	/* The lock is released. */
	rep = redisCommand(r, "EXISTS %s:lock:recover", prefix);
	cr_assert_eq(rep->integer, 0);
	freeReplyObject(rep);

	msgpack_sbuffer_destroy(&sb);
	redisFree(r);
	rconn_free(rc);
	sup_pg_free(pg);
	ev_loop_destroy(loop);
}
