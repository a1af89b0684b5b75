/*
 * test_sclaim.c - common/sclaim.c against the private redis-server: a
 * gone consumer's entries taken a page at a time, with their delivery
 * counts; ids only; entries not idle long enough left; a stop; NOGROUP;
 * any consumer's (XAUTOCLAIM).
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "rconn.h"
#include "sclaim.h"
#include "rtest.h"
#include "testutil.h"

static uint64_t
unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct env {
	struct ev_loop *loop;
	struct rconn *rc;
	redisContext *sync;
	char key[64];
	/* what the callbacks saw */
	int pages, done, stop_after;
	size_t taken;
	unsigned deliveries;
	int justids;                 /* entries given as ids only */
	char err[256];
};

static void
env_init(struct env *e)
{
	memset(e, 0, sizeof(*e));
	log_init("test", 0);
	e->loop = ev_loop_new(0);
	e->rc = rtest_connect(e->loop);
	e->sync = tu_redis_connect();
	tu_unique(e->key, sizeof(e->key), "sclaim");
}

static void
env_fini(struct env *e)
{
	freeReplyObject(redisCommand(e->sync, "DEL %s", e->key));
	rconn_free(e->rc);
	ev_loop_destroy(e->loop);
	redisFree(e->sync);
}

static void
cmd(struct env *e, const char *fmt, const char *arg)
{
	redisReply *r = redisCommand(e->sync, fmt, e->key, arg);

	cr_assert(r != NULL && r->type != REDIS_REPLY_ERROR, "%s: %s", fmt,
	    r != NULL ? r->str : "no reply");
	freeReplyObject(r);
}

/* n entries in the stream, read (delivered) by consumer "gone" of group
 * g, reads times. */
static void
gone_reads(struct env *e, int n, int reads)
{
	char m[16];

	cmd(e, "XGROUP CREATE %s g $ MKSTREAM", NULL);
	for (int i = 0; i < n; i++) {
		snprintf(m, sizeof(m), "m%d", i);
		cmd(e, "XADD %s * m %s", m);
	}
	cmd(e, "XREADGROUP GROUP g gone STREAMS %s %s", ">");
	for (int i = 1; i < reads; i++)
		cmd(e, "XREADGROUP GROUP g gone STREAMS %s %s", "0");
}

static long long
pending_of(struct env *e, const char *consumer)
{
	redisReply *r = redisCommand(e->sync, "XPENDING %s g - + 1000 %s",
	    e->key, consumer);
	long long n;

	cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY);
	n = (long long)r->elements;
	freeReplyObject(r);
	return n;
}

static int
on_page(struct sclaim *c, const redisReply *claimed, void *arg)
{
	struct env *e = arg;

	e->pages++;
	for (size_t i = 0; i < claimed->elements; i++) {
		const redisReply *x = claimed->element[i];

		if (x->type == REDIS_REPLY_STRING) {
			e->justids++;
			e->deliveries += sclaim_deliveries(c, x->str);
		} else {
			cr_assert_eq(x->type, REDIS_REPLY_ARRAY);
			cr_assert_not_null(rconn_entry_field(x->element[1], "m"));
			e->deliveries += sclaim_deliveries(c, x->element[0]->str);
		}
		e->taken++;
	}
	cr_assert(strcmp(sclaim_from(c), "gone") == 0 ||
	    strcmp(sclaim_from(c), "") == 0);
	cr_assert_str_eq(sclaim_key(c), e->key);
	return e->stop_after && e->pages >= e->stop_after ? -1 : 0;
}

static void
on_done(struct sclaim *c, const char *err, void *arg)
{
	struct env *e = arg;

	e->done++;
	snprintf(e->err, sizeof(e->err), "%s", err != NULL ? err : "");
}

static void
take(struct env *e, unsigned page, uint64_t min_idle, int justid)
{
	struct sclaim_opts o = { .key = e->key, .group = "g", .from = "gone",
	    .to = "me", .page = page, .min_idle_ms = min_idle,
	    .justid = justid, .page_cb = on_page, .done_cb = on_done,
	    .arg = e };
	long long deadline = tu_now_ms() + 10000;

	cr_assert_eq(sclaim_start(e->rc, &o), 0);
	while (e->done == 0 && tu_now_ms() < deadline)
		ev_run(e->loop, EVRUN_ONCE);
	cr_assert_eq(e->done, 1);
}

Test(sclaim, takes_everything_a_page_at_a_time)
{
	struct env e;

	env_init(&e);
	gone_reads(&e, 5, 2);
	take(&e, 2, 0, 0);
	cr_assert_str_eq(e.err, "");
	cr_assert_eq(e.pages, 3, "pages of 2, 2 and 1: %d", e.pages);
	cr_assert_eq(e.taken, 5);
	cr_assert_eq(e.justids, 0);
	cr_assert_eq(e.deliveries, 10, "each delivered twice before: %u",
	    e.deliveries);
	cr_assert_eq(pending_of(&e, "gone"), 0);
	cr_assert_eq(pending_of(&e, "me"), 5);
	env_fini(&e);
}

Test(sclaim, ids_only)
{
	struct env e;

	env_init(&e);
	gone_reads(&e, 3, 1);
	take(&e, 1000, 0, 1);
	cr_assert_eq(e.pages, 1);
	cr_assert_eq(e.justids, 3);
	cr_assert_eq(e.deliveries, 3);
	cr_assert_eq(pending_of(&e, "me"), 3);
	env_fini(&e);
}

Test(sclaim, entries_not_idle_long_enough_are_left)
{
	struct env e;

	env_init(&e);
	gone_reads(&e, 3, 1);
	take(&e, 10, 60000, 0);
	cr_assert_str_eq(e.err, "");
	cr_assert_eq(e.pages, 0);
	cr_assert_eq(pending_of(&e, "gone"), 3);
	env_fini(&e);
}

Test(sclaim, idle_since_the_consumer_died)
{
	struct env e;
	struct sclaim_opts o = { 0 };
	long long deadline;

	env_init(&e);
	gone_reads(&e, 2, 1);
	/* dead for a minute: its entries, read just now, are not idle that
	 * long (a consumer of the same name read them since) */
	o.key = e.key;
	o.group = "g";
	o.from = "gone";
	o.to = "me";
	o.page = 10;
	o.dead_since_ms = unix_ms() - 60000;
	o.page_cb = on_page;
	o.done_cb = on_done;
	o.arg = &e;
	cr_assert_eq(sclaim_start(e.rc, &o), 0);
	deadline = tu_now_ms() + 10000;
	while (e.done == 0 && tu_now_ms() < deadline)
		ev_run(e.loop, EVRUN_ONCE);
	cr_assert_eq(e.done, 1);
	cr_assert_eq(e.pages, 0);
	/* dead since now: all of them */
	e.done = 0;
	o.dead_since_ms = unix_ms();
	cr_assert_eq(sclaim_start(e.rc, &o), 0);
	deadline = tu_now_ms() + 10000;
	while (e.done == 0 && tu_now_ms() < deadline)
		ev_run(e.loop, EVRUN_ONCE);
	cr_assert_eq(e.taken, 2);
	env_fini(&e);
}

Test(sclaim, the_caller_stops)
{
	struct env e;

	env_init(&e);
	gone_reads(&e, 5, 1);
	e.stop_after = 1;
	take(&e, 2, 0, 0);
	cr_assert_eq(e.pages, 1);
	cr_assert_eq(e.taken, 2);
	cr_assert_eq(pending_of(&e, "gone"), 3);
	env_fini(&e);
}

Test(sclaim, no_group)
{
	struct env e;

	env_init(&e);
	cmd(&e, "XADD %s * m %s", "x");
	take(&e, 10, 0, 0);
	cr_assert(strncmp(e.err, "XPENDING ", 9) == 0 &&
	    strstr(e.err, "NOGROUP") != NULL, "%s", e.err);
	env_fini(&e);
}

Test(sclaim, refused_without_a_callback)
{
	struct env e;
	struct sclaim_opts o = { .key = "k", .group = "g", .from = "a",
	    .to = "b", .page = 0 };

	env_init(&e);
	cr_assert_eq(sclaim_start(e.rc, &o), -1, "page 0");
	o.page = SCLAIM_PAGE_MAX + 1;
	cr_assert_eq(sclaim_start(e.rc, &o), -1, "page too large");
	env_fini(&e);
}

/* Without a consumer: the idle entries of any (XAUTOCLAIM), page by page
 * until its cursor comes back. */
Test(sclaim, any_consumer)
{
	struct env e;
	struct sclaim_opts o = { 0 };
	long long deadline = tu_now_ms() + 10000;

	env_init(&e);
	gone_reads(&e, 3, 1);
	cmd(&e, "XADD %s * m %s", "a");
	cmd(&e, "XADD %s * m %s", "b");
	cmd(&e, "XREADGROUP GROUP g other STREAMS %s %s", ">");
	o.key = e.key;
	o.group = "g";
	o.to = "me";
	o.page = 2;
	o.page_cb = on_page;
	o.done_cb = on_done;
	o.arg = &e;
	cr_assert_eq(sclaim_start(e.rc, &o), 0);
	while (e.done == 0 && tu_now_ms() < deadline)
		ev_run(e.loop, EVRUN_ONCE);
	cr_assert_eq(e.done, 1);
	cr_assert_str_eq(e.err, "");
	cr_assert_eq(e.taken, 5);
	cr_assert_eq(pending_of(&e, "me"), 5);
	cr_assert_eq(pending_of(&e, "gone"), 0);
	cr_assert_eq(pending_of(&e, "other"), 0);
	env_fini(&e);
}
