/*
 * test_reclaim.c - a dead consumer's tasks requeued with their attempt
 * count, dead-lettered past max attempts; a live one's left alone however
 * long it runs; trimming never cuts what a group has not acknowledged.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"
#include "log.h"
#include "record.h"
#include "testutil.h"

struct env {
	struct ev_loop *loop;
	char prefix[64], redis[128], queue[128];
	struct sup_reclaim *r;
	redisContext *rc;
};

static void
env_init_dead(struct env *e, unsigned retain_ms, unsigned dead_retain_ms)
{
	memset(e, 0, sizeof(*e));
	log_init("test", 0);
	e->loop = ev_loop_new(0);
	tu_unique(e->prefix, sizeof(e->prefix), "recl");
	snprintf(e->redis, sizeof(e->redis), "%s:%s",
	    getenv("HIVE_TEST_REDIS_HOST"), getenv("HIVE_TEST_REDIS_PORT"));
	proto_key_queue(e->queue, sizeof(e->queue), e->prefix, "echo", 1);
	struct sup_reclaim_opts o = { .redis = e->redis, .prefix = e->prefix,
	    .host = "host-a", .alive_ttl_ms = 100, .scan_ms = 100,
	    .trim_ms = 100, .retain_ms = retain_ms,
	    .dead_retain_ms = dead_retain_ms, .max_attempts = 3 };
	e->r = sup_reclaim_new(e->loop, &o);
	cr_assert_not_null(e->r);
	e->rc = tu_redis_connect();
	freeReplyObject(redisCommand(e->rc, "XGROUP CREATE %s workers 0 MKSTREAM",
	    e->queue));
}

static void
env_init(struct env *e, unsigned retain_ms)
{
	env_init_dead(e, retain_ms, 0);
}

static void
env_fini(struct env *e)
{
	sup_reclaim_free(e->r);
	ev_loop_destroy(e->loop);
	redisFree(e->rc);
}

static void
submit(struct env *e, const char *id, unsigned attempt, unsigned max)
{
	msgpack_sbuffer sb;
	struct hive_task t = { 0 };
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	t.id = HIVE_STR(id);
	t.attempt = attempt;
	t.max_attempts = max;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	freeReplyObject(redisCommand(e->rc, "XADD %s * m %b", e->queue, sb.data,
	    sb.size));
	msgpack_sbuffer_destroy(&sb);
}

/* Read one entry as consumer; returns its task's attempt (0: none). */
static unsigned
take(struct env *e, const char *consumer)
{
	redisReply *r = redisCommand(e->rc, "XREADGROUP GROUP workers %s COUNT 1 "
	    "STREAMS %s >", consumer, e->queue);
	unsigned attempt = 0;

	if (r->type == REDIS_REPLY_ARRAY) {
		redisReply *ent = r->element[0]->element[1]->element[0];
		redisReply *val = ent->element[1]->element[1];
		struct hive_task t;
		struct proto_err err;
		cr_assert_eq(proto_decode_task(val->str, val->len, &t, &err), 0);
		attempt = t.attempt;
		proto_task_clear(&t);
	}
	freeReplyObject(r);
	return attempt;
}

static long long
count(struct env *e, const char *fmt, const char *key)
{
	redisReply *r = redisCommand(e->rc, fmt, key);
	long long n = r->type == REDIS_REPLY_INTEGER ? r->integer :
	    r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER ? r->element[0]->integer : -1;

	freeReplyObject(r);
	return n;
}

static int tick;

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	tick = 1;
}

/* Run the loop until XLEN key reaches want (checked every 20 ms). */
static void
run_until_len(struct env *e, const char *key, long long want)
{
	long long deadline = tu_now_ms() + 20000, n = -1;
	ev_timer t;

	ev_timer_init(&t, tick_cb, 0.02, 0.02);
	ev_timer_start(e->loop, &t);
	while (tu_now_ms() < deadline) {
		ev_run(e->loop, EVRUN_ONCE);
		if (tick) {
			tick = 0;
			if ((n = count(e, "XLEN %s", key)) == want)
				break;
		}
	}
	ev_timer_stop(e->loop, &t);
	cr_assert_eq(n, want, "XLEN %s: %lld, want %lld", key, n, want);
}

Test(reclaim, dead_consumer_requeued_then_dead_letter)
{
	struct env e;
	char dead[128], results[128];

	env_init(&e, 600000);
	proto_key_named(dead, sizeof(dead), e.prefix, "dead");
	proto_key_named(results, sizeof(results), e.prefix, "results");
	submit(&e, "t1", 1, 2);
	cr_assert_eq(take(&e, "echo/1@gone-host"), 1);
	/* No alive key for echo/1@gone-host: requeued as attempt 2. */
	run_until_len(&e, e.queue, 2);
	cr_assert_eq(count(&e, "XPENDING %s workers", e.queue), 0, "old entry acked");
	cr_assert_eq(take(&e, "echo/2@gone-host"), 2);
	/* Attempt 2 of 2 dies too: dead letter, and a failed result. */
	run_until_len(&e, dead, 1);
	run_until_len(&e, results, 1);
	cr_assert_eq(count(&e, "XPENDING %s workers", e.queue), 0);
	redisReply *r = redisCommand(e.rc, "XRANGE %s - +", dead);
	struct hive_dead d;
	struct proto_err err;
	redisReply *v = r->element[0]->element[1]->element[1];
	cr_assert_eq(proto_decode_dead(v->str, v->len, &d, &err), 0);
	cr_assert(d.reason.len > 0 && memmem(d.reason.ptr, d.reason.len,
	    "gave up after 2 attempts", 24) != NULL, "reason: %.*s",
	    (int)d.reason.len, d.reason.ptr);
	cr_assert_eq(d.id.len, 2);
	/* two attempts made, as its reason says; and why, for programs */
	cr_assert_eq(d.attempt, 2, "attempt %u", d.attempt);
	cr_assert_str_eq(proto_code_name(d.code), "attempts");
	proto_dead_clear(&d);
	freeReplyObject(r);
	r = redisCommand(e.rc, "XRANGE %s - +", results);
	struct hive_result res;
	v = r->element[0]->element[1]->element[1];
	cr_assert_eq(proto_decode_result(v->str, v->len, &res, &err), 0);
	cr_assert_eq(res.status, HIVE_STATUS_ERROR);
	cr_assert_str_eq(proto_code_name(res.code), "attempts");
	cr_assert_eq(res.attempt, 2);
	proto_result_clear(&res);
	freeReplyObject(r);
	env_fini(&e);
}

/* A dead consumer's entry that is no task (a v of 2) goes to the dead
 * letters at once, with its code and the id it names. */
Test(reclaim, unreadable_task_dead_letter_names_its_id)
{
	struct env e;
	char dead[128];
	static const char v2[] = "\x82\xa1v\x02\xa2id\xa4v2-7";
	struct hive_dead d;
	struct proto_err err;
	redisReply *r, *v;

	env_init(&e, 600000);
	proto_key_named(dead, sizeof(dead), e.prefix, "dead");
	freeReplyObject(redisCommand(e.rc, "XADD %s * m %b", e.queue, v2,
	    sizeof(v2) - 1));
	freeReplyObject(redisCommand(e.rc, "XREADGROUP GROUP workers "
	    "echo/1@gone-host COUNT 1 STREAMS %s >", e.queue));
	run_until_len(&e, dead, 1);
	cr_assert_eq(count(&e, "XPENDING %s workers", e.queue), 0);
	r = redisCommand(e.rc, "XRANGE %s - +", dead);
	v = r->element[0]->element[1]->element[1];
	cr_assert_eq(proto_decode_dead(v->str, v->len, &d, &err), 0);
	cr_assert(d.id.len == 4 && memcmp(d.id.ptr, "v2-7", 4) == 0,
	    "id \"%.*s\"", (int)d.id.len, d.id.ptr);
	cr_assert_str_eq(proto_code_name(d.code), "version");
	proto_dead_clear(&d);
	freeReplyObject(r);
	env_fini(&e);
}

Test(reclaim, live_consumer_keeps_its_task)
{
	struct env e;
	char alive[192];
	struct sup_reclaim_stats st;

	env_init(&e, 600000);
	snprintf(alive, sizeof(alive), "%s:alive:echo/1@host-a", e.prefix);
	freeReplyObject(redisCommand(e.rc, "SET %s 1 PX 60000", alive));
	submit(&e, "slow", 1, 0);
	cr_assert_eq(take(&e, "echo/1@host-a"), 1);
	uint64_t died = proto_now_ms();   /* "dies" after taking it */
	/* Several passes, each long after the entry went idle. */
	long long until = tu_now_ms() + 800;
	while (tu_now_ms() < until)
		ev_run(e.loop, EVRUN_ONCE);
	sup_reclaim_stats(e.r, &st);
	cr_assert_geq(st.scans, 2);
	cr_assert_eq(st.requeued, 0);
	cr_assert_eq(count(&e, "XLEN %s", e.queue), 1);
	cr_assert_eq(count(&e, "XPENDING %s workers", e.queue), 1);
	/* hived saw it die: taken back at once. */
	sup_reclaim_consumer(e.r, "echo/1@host-a", died);
	run_until_len(&e, e.queue, 2);
	env_fini(&e);
}

Test(reclaim, trim_keeps_unacknowledged)
{
	struct env e;

	env_init(&e, 1);             /* retention 1 ms: only groups protect */
	for (int i = 0; i < 300; i++)
		submit(&e, "x", 1, 0);
	/* A live consumer reads 10 and acks none, a second group read none:
	 * nothing may go. */
	char alive[192];
	snprintf(alive, sizeof(alive), "%s:alive:echo/1@host-a", e.prefix);
	freeReplyObject(redisCommand(e.rc, "SET %s 1 PX 60000", alive));
	freeReplyObject(redisCommand(e.rc, "XGROUP CREATE %s other 0", e.queue));
	for (int i = 0; i < 10; i++)
		take(&e, "echo/1@host-a");
	sup_reclaim_kick(e.r);
	long long until = tu_now_ms() + 500;
	while (tu_now_ms() < until)
		ev_run(e.loop, EVRUN_ONCE);
	cr_assert_eq(count(&e, "XLEN %s", e.queue), 300);
	/* The other group goes away; workers read 250 in all and ack them:
	 * what lies below the 250th may go, the 50 unread stay. */
	freeReplyObject(redisCommand(e.rc, "XGROUP DESTROY %s other", e.queue));
	for (int i = 0; i < 240; i++)
		take(&e, "echo/1@host-a");
	redisReply *r = redisCommand(e.rc, "XPENDING %s workers - + 1000", e.queue);
	for (size_t i = 0; i < r->elements; i++)
		freeReplyObject(redisCommand(e.rc, "XACK %s workers %s", e.queue,
		    r->element[i]->element[0]->str));
	freeReplyObject(r);
	long long len = 300;
	until = tu_now_ms() + 20000;
	while (tu_now_ms() < until && len == 300) {
		sup_reclaim_kick(e.r);
		long long t2 = tu_now_ms() + 50;
		while (tu_now_ms() < t2)
			ev_run(e.loop, EVRUN_ONCE);
		len = count(&e, "XLEN %s", e.queue);
	}
	/* "~" cuts whole nodes (100 entries by default): 200 go. */
	cr_assert_lt(len, 300, "trimmed");
	cr_assert_geq(len, 50, "unread entries kept (len %lld)", len);
	env_fini(&e);
}

/* More than one approximate XTRIM cuts by default (10,000 entries):
 * 30,000 acknowledged entries older than the retention all go in one
 * pass (a reclaimer that trims once an hour, started after them), but
 * the last node. */
Test(reclaim, one_trim_cuts_more_than_ten_thousand)
{
	struct env e;
	redisReply *r;
	long long until;

	env_init(&e, 1);
	sup_reclaim_free(e.r);
	for (int k = 0; k < 30; k++) {
		for (int i = 0; i < 1000; i++)
			redisAppendCommand(e.rc, "XADD %s * m x", e.queue);
		for (int i = 0; i < 1000; i++) {
			cr_assert_eq(redisGetReply(e.rc, (void **)&r), REDIS_OK);
			freeReplyObject(r);
		}
	}
	/* All read and acknowledged by the only group. */
	freeReplyObject(redisCommand(e.rc, "XGROUP SETID %s workers $",
	    e.queue));
	struct sup_reclaim_opts o = { .redis = e.redis, .prefix = e.prefix,
	    .host = "host-a", .alive_ttl_ms = 100, .scan_ms = 100,
	    .trim_ms = 3600 * 1000, .retain_ms = 1, .max_attempts = 3 };
	e.r = sup_reclaim_new(e.loop, &o);
	cr_assert_not_null(e.r);
	/* Its one pass (the next is an hour away), however long the busy
	 * machine takes to come to it. */
	until = tu_now_ms() + 15000;
	while (tu_now_ms() < until && count(&e, "XLEN %s", e.queue) > 1000) {
		long long t2 = tu_now_ms() + 50;

		while (tu_now_ms() < t2)
			ev_run(e.loop, EVRUN_ONCE);
	}
	cr_assert_leq(count(&e, "XLEN %s", e.queue), 1000,
	    "one pass trims to the last node");
	env_fini(&e);
}

/*
 * Dead letters are kept for dead_retain_ms, not retain_ms: an operator
 * lists and retries them (GET /dead) long after the 10 minutes the other
 * streams keep.  300 acknowledged dead letters two minutes old, with
 * dead_retain_ms one minute, are cut; 300 new ones stay, though
 * retain_ms is 1 ms and the results stream beside them is cut.
 */
Test(reclaim, dead_letters_kept_longer)
{
	struct env e;
	char dead[128], results[128];
	long long old = tu_now_ms() - 120000, len, rlen;

	env_init_dead(&e, 1, 60000);
	snprintf(dead, sizeof(dead), "%s:dead", e.prefix);
	snprintf(results, sizeof(results), "%s:results", e.prefix);
	for (int i = 0; i < 300; i++)
		freeReplyObject(redisCommand(e.rc, "XADD %s %lld-%d m x", dead,
		    old, i + 1));
	for (int i = 0; i < 300; i++) {
		freeReplyObject(redisCommand(e.rc, "XADD %s * m x", dead));
		freeReplyObject(redisCommand(e.rc, "XADD %s * m x", results));
	}
	/* Read and acknowledged by the recorder: a group at the end. */
	freeReplyObject(redisCommand(e.rc, "XGROUP CREATE %s recorder $", dead));
	freeReplyObject(redisCommand(e.rc, "XGROUP CREATE %s recorder $",
	    results));
	len = 600;
	rlen = 300;
	for (long long until = tu_now_ms() + 20000;
	    tu_now_ms() < until && (len == 600 || rlen == 300);) {
		sup_reclaim_kick(e.r);
		long long t2 = tu_now_ms() + 50;
		while (tu_now_ms() < t2)
			ev_run(e.loop, EVRUN_ONCE);
		len = count(&e, "XLEN %s", dead);
		rlen = count(&e, "XLEN %s", results);
	}
	cr_assert_lt(rlen, 300, "results trimmed after retain_ms");
	/* "~" cuts whole nodes: of the old 300, at least 200 go. */
	cr_assert_leq(len, 400, "old dead letters trimmed (len %lld)", len);
	cr_assert_geq(len, 300, "new dead letters kept (len %lld)", len);
	env_fini(&e);
}
