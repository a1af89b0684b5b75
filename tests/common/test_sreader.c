/*
 * test_sreader.c - common/sreader.c against the private redis-server:
 * new entries, then the same as our pending ones; COUNT and BLOCK; an
 * entry deleted while pending; NOGROUP once the stream is gone; the
 * group made from the start of the stream, or from now on; our pending
 * entries a page at a time; keys read in priority order.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rconn.h"
#include "sreader.h"
#include "rtest.h"
#include "testutil.h"

struct env {
	struct ev_loop *loop;
	struct rconn *rc;
	redisContext *sync;
	char key[64], key2[64];
	/* the last reply */
	int got, failed, streams;
	size_t entries[2];
	char first_id[2][64];
	int nil_fields;
	char key_seen[2][64];
};

static void
env_init(struct env *e)
{
	memset(e, 0, sizeof(*e));
	log_init("test", 0);
	e->loop = ev_loop_new(0);
	e->rc = rtest_connect(e->loop);
	e->sync = tu_redis_connect();
	tu_unique(e->key, sizeof(e->key), "sreader");
	tu_unique(e->key2, sizeof(e->key2), "sreader2");
}

static void
env_fini(struct env *e)
{
	freeReplyObject(redisCommand(e->sync, "DEL %s %s", e->key, e->key2));
	rconn_free(e->rc);
	ev_loop_destroy(e->loop);
	redisFree(e->sync);
}

static void
xadd(struct env *e, const char *key, const char *m)
{
	redisReply *r = redisCommand(e->sync, "XADD %s * m %s", key, m);

	cr_assert(r != NULL && r->type == REDIS_REPLY_STRING);
	freeReplyObject(r);
}

static void
on_read(redisAsyncContext *ac, void *r, void *priv)
{
	struct env *e = priv;
	const redisReply *reply = r, *list;
	const char *key;

	e->got++;
	e->failed = sreader_failed(reply);
	e->streams = 0;
	memset(e->entries, 0, sizeof(e->entries));
	memset(e->first_id, 0, sizeof(e->first_id));
	e->nil_fields = 0;
	for (size_t i = 0; i < 2; i++) {
		if ((list = sreader_stream(reply, i, &key)) == NULL)
			continue;
		e->streams++;
		snprintf(e->key_seen[i], sizeof(e->key_seen[i]), "%s", key);
		e->entries[i] = list->elements;
		for (size_t k = 0; k < list->elements; k++) {
			const char *id = sreader_entry_id(list->element[k]);

			cr_assert_not_null(id);
			if (k == 0)
				snprintf(e->first_id[i], sizeof(e->first_id[i]),
				    "%s", id);
			if (list->element[k]->element[1]->type == REDIS_REPLY_NIL)
				e->nil_fields++;
		}
	}
}

static void
read_with(struct env *e, const struct sreader_read *rd)
{
	long long deadline = tu_now_ms() + 10000;
	int want = e->got + 1;

	cr_assert_eq(sreader_send(e->rc, rd, on_read, e), 0);
	while (e->got < want && tu_now_ms() < deadline)
		ev_run(e->loop, EVRUN_ONCE);
	cr_assert_eq(e->got, want);
}

static void
read_once(struct env *e, int pending, size_t count, unsigned block_ms)
{
	const char *keys[2] = { e->key, e->key2 };
	struct sreader_read rd = { .group = "g", .consumer = "me",
	    .count = count, .block_ms = block_ms, .pending = pending,
	    .nkeys = 2, .keys = keys };

	read_with(e, &rd);
}

/* The keys in order, COUNT over them all. */
static void
read_in_order(struct env *e, int pending, size_t count)
{
	const char *keys[2] = { e->key, e->key2 };
	struct sreader_read rd = { .group = "g", .consumer = "me",
	    .count = count, .pending = pending, .in_order = 1,
	    .nkeys = 2, .keys = keys };

	read_with(e, &rd);
}

/* The group's creation, its reply taken by the test. */
static int group_replies, group_failed;

static void
on_group(redisAsyncContext *ac, void *r, void *priv)
{
	group_replies++;
	group_failed = sreader_group_failed(r);
}

static void
group_send(struct env *e, const char *key, const char *start, int mkstream)
{
	long long deadline = tu_now_ms() + 10000;
	int want = group_replies + 1;

	cr_assert_eq(sreader_group_send(e->rc, key, "g", start, mkstream,
	    on_group, e), 0);
	while (group_replies < want && tu_now_ms() < deadline)
		ev_run(e->loop, EVRUN_ONCE);
	cr_assert_eq(group_replies, want);
}

static void
groups(struct env *e)
{
	long long deadline;
	redisReply *r;

	cr_assert_eq(sreader_group(e->rc, e->key, "g", 1, "test"), 0);
	cr_assert_eq(sreader_group(e->rc, e->key2, "g", 1, "test"), 0);
	cr_assert_eq(sreader_group(e->rc, e->key, "g", 1, "test"), 0,
	    "again: BUSYGROUP, quietly");
	/* the second has made its stream: the reads that follow go on the
	 * same connection, behind the third */
	deadline = tu_now_ms() + 10000;
	while (tu_now_ms() < deadline) {
		ev_run(e->loop, EVRUN_NOWAIT);
		r = redisCommand(e->sync, "EXISTS %s", e->key2);
		if (r != NULL && r->integer == 1) {
			freeReplyObject(r);
			break;
		}
		freeReplyObject(r);
	}
}

Test(sreader, new_then_pending_then_caught_up)
{
	struct env e;
	redisReply *r;

	env_init(&e);
	xadd(&e, e.key, "before");   /* before the group: read too (id 0) */
	groups(&e);
	xadd(&e, e.key, "a");
	xadd(&e, e.key2, "b");
	read_once(&e, 0, 10, 0);
	cr_assert_not(e.failed);
	cr_assert_eq(e.streams, 2);
	cr_assert_str_eq(e.key_seen[0], e.key);
	cr_assert_eq(e.entries[0], 2, "from the start of the stream");
	cr_assert_eq(e.entries[1], 1);
	/* not acknowledged: ours, pending */
	read_once(&e, 1, 10, 0);
	cr_assert_eq(e.entries[0], 2);
	cr_assert_eq(e.entries[1], 1);
	/* COUNT per stream */
	read_once(&e, 1, 1, 0);
	cr_assert_eq(e.entries[0], 1);
	/* acknowledged: nothing pending, the pending phase ends */
	r = redisCommand(e.sync, "XACK %s g %s", e.key, e.first_id[0]);
	freeReplyObject(r);
	read_once(&e, 1, 10, 0);
	cr_assert_eq(e.entries[0], 1);
	/* nothing new: BLOCK runs out, a nil reply, no stream */
	read_once(&e, 0, 10, 50);
	cr_assert_not(e.failed);
	cr_assert_eq(e.streams, 0);
	env_fini(&e);
}

Test(sreader, deleted_while_pending)
{
	struct env e;
	redisReply *r;

	env_init(&e);
	groups(&e);
	xadd(&e, e.key, "a");
	read_once(&e, 0, 10, 0);
	r = redisCommand(e.sync, "XDEL %s %s", e.key, e.first_id[0]);
	freeReplyObject(r);
	read_once(&e, 1, 10, 0);
	cr_assert_eq(e.entries[0], 1);
	cr_assert_eq(e.nil_fields, 1, "its fields are nil: only to ack");
	env_fini(&e);
}

Test(sreader, nogroup_once_the_stream_is_gone)
{
	struct env e;
	redisReply *r;

	env_init(&e);
	groups(&e);
	r = redisCommand(e.sync, "DEL %s", e.key);
	freeReplyObject(r);
	read_once(&e, 0, 10, 0);
	cr_assert(e.failed);
	/* made again, as an owner does after NOGROUP */
	xadd(&e, e.key, "x");
	groups(&e);
	read_once(&e, 0, 10, 0);
	cr_assert_not(e.failed);
	cr_assert_eq(e.entries[0], 1);
	env_fini(&e);
}

Test(sreader, refused_without_streams)
{
	struct env e;
	struct sreader_read rd = { .group = "g", .consumer = "me",
	    .count = 1 };

	env_init(&e);
	cr_assert_eq(sreader_send(e.rc, &rd, on_read, &e), -1);
	env_fini(&e);
}

Test(sreader, group_from_now_on_and_its_reply)
{
	struct env e;

	env_init(&e);
	xadd(&e, e.key, "before");
	group_send(&e, e.key, "$", 1);
	cr_assert_not(group_failed);
	group_send(&e, e.key, "$", 1);
	cr_assert_not(group_failed, "BUSYGROUP: the group is there");
	group_send(&e, e.key2, "0", 0);
	cr_assert(group_failed, "no stream, no MKSTREAM: an error");
	group_send(&e, e.key2, "0", 1);
	cr_assert_not(group_failed);
	xadd(&e, e.key, "after");
	read_once(&e, 0, 10, 0);
	cr_assert_eq(e.entries[0], 1, "only what was added since");
	env_fini(&e);
}

Test(sreader, pending_a_page_at_a_time)
{
	const char *keys[1];
	char last[64];
	struct sreader_read rd = { .group = "g", .consumer = "me",
	    .count = 2, .pending = 1, .nkeys = 1, .keys = keys };
	struct env e;

	env_init(&e);
	keys[0] = e.key;
	groups(&e);
	for (int i = 0; i < 5; i++)
		xadd(&e, e.key, "x");
	read_once(&e, 0, 10, 0);
	cr_assert_eq(e.entries[0], 5);
	read_with(&e, &rd);
	cr_assert_eq(e.entries[0], 2, "the first page");
	/* the next pages, after the last id of the one before */
	snprintf(last, sizeof(last), "%s", e.first_id[0]);
	rd.count = 1;
	rd.after = last;
	read_with(&e, &rd);
	cr_assert_eq(e.entries[0], 1);
	cr_assert_str_neq(e.first_id[0], last, "after %s", last);
	rd.count = 10;
	read_with(&e, &rd);
	cr_assert_eq(e.entries[0], 4, "all after the first");
	env_fini(&e);
}

Test(sreader, in_order_reads_a_key_only_when_those_before_are_empty)
{
	struct env e;
	redisReply *r;

	env_init(&e);
	groups(&e);
	xadd(&e, e.key, "high1");
	xadd(&e, e.key, "high2");
	xadd(&e, e.key2, "low1");
	xadd(&e, e.key2, "low2");
	/* room for 3: both of the first, one of the second */
	read_in_order(&e, 0, 3);
	cr_assert_not(e.failed);
	cr_assert_eq(e.streams, 2);
	cr_assert_str_eq(e.key_seen[0], e.key);
	cr_assert_eq(e.entries[0], 2);
	cr_assert_str_eq(e.key_seen[1], e.key2);
	cr_assert_eq(e.entries[1], 1);
	/* room for 1: the first is empty now, the second gives its next */
	xadd(&e, e.key2, "low3");
	read_in_order(&e, 0, 1);
	cr_assert_eq(e.streams, 1);
	cr_assert_str_eq(e.key_seen[0], e.key2);
	cr_assert_eq(e.entries[0], 1);
	/* a higher one filled again is served first */
	xadd(&e, e.key, "high3");
	read_in_order(&e, 0, 1);
	cr_assert_eq(e.streams, 1);
	cr_assert_str_eq(e.key_seen[0], e.key);
	read_in_order(&e, 0, 10);
	cr_assert_eq(e.streams, 1);
	cr_assert_str_eq(e.key_seen[0], e.key2, "low3");
	/* nothing new: an empty array, not nil, and not an error */
	read_in_order(&e, 0, 10);
	cr_assert_not(e.failed);
	cr_assert_eq(e.streams, 0);
	/* ours, pending, in the same order and room */
	read_in_order(&e, 1, 3);
	cr_assert_eq(e.streams, 1);
	cr_assert_eq(e.entries[0], 3);
	read_in_order(&e, 1, 5);
	cr_assert_eq(e.streams, 2);
	cr_assert_eq(e.entries[0], 3);
	cr_assert_eq(e.entries[1], 2);
	/* NOGROUP inside the script: an error reply */
	r = redisCommand(e.sync, "DEL %s", e.key2);
	freeReplyObject(r);
	read_in_order(&e, 0, 10);
	cr_assert(e.failed);
	env_fini(&e);
}

Test(sreader, in_order_does_not_block)
{
	const char *keys[1] = { "k" };
	struct sreader_read rd = { .group = "g", .consumer = "me",
	    .count = 1, .block_ms = 10, .in_order = 1, .nkeys = 1,
	    .keys = keys };
	struct env e;

	env_init(&e);
	cr_assert_eq(sreader_send(e.rc, &rd, on_read, &e), -1);
	env_fini(&e);
}
