/*
 * test_rconn.c - the self-healing Redis connection, against the private
 * redis-server: commands, a killed connection coming back, bad addresses.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rconn.h"
#include "testutil.h"

static int ups, downs, replies;
static char last[64];

static void
on_state(struct rconn *rc, int up, void *arg)
{
	if (up)
		ups++;
	else
		downs++;
}

static void
on_reply(redisAsyncContext *ac, void *r, void *priv)
{
	redisReply *reply = r;

	replies++;
	snprintf(last, sizeof(last), "%s", reply && reply->str ? reply->str :
	    reply ? "(non-string)" : "(null)");
}

static long long client_id;

static void
on_id(redisAsyncContext *ac, void *r, void *priv)
{
	redisReply *reply = r;

	replies++;
	client_id = reply ? reply->integer : -1;
}

static void
run_until(struct ev_loop *loop, int *counter, int want)
{
	long long deadline = tu_now_ms() + 20000;

	while (*counter < want && tu_now_ms() < deadline)
		ev_run(loop, EVRUN_ONCE);
	cr_assert_eq(*counter, want, "timed out (counter %d, want %d)",
	    *counter, want);
}

Test(rconn, command_and_reconnect)
{
	struct ev_loop *loop = ev_loop_new(0);
	char addr[128], err[128];
	struct rconn *rc;
	redisContext *admin;
	redisReply *r;

	log_init("test", 0);
	snprintf(addr, sizeof(addr), "%s:%s", getenv("HIVE_TEST_REDIS_HOST"),
	    getenv("HIVE_TEST_REDIS_PORT"));
	rc = rconn_new(loop, addr, "redis(test)", on_state, NULL, err, sizeof(err));
	cr_assert_not_null(rc, "%s", err);
	run_until(loop, &ups, 1);
	cr_assert_eq(rconn_cmd(rc, on_reply, NULL, "ECHO %s", "hello"), 0);
	run_until(loop, &replies, 1);
	cr_assert_str_eq(last, "hello");

	/* Kill our connection (only ours: other tests share this Redis)
	 * from outside. */
	cr_assert_eq(rconn_cmd(rc, on_id, NULL, "CLIENT ID"), 0);
	run_until(loop, &replies, 2);
	admin = tu_redis_connect();
	r = redisCommand(admin, "CLIENT KILL ID %lld", client_id);
	cr_assert_eq(r->integer, 1);
	freeReplyObject(r);
	redisFree(admin);
	run_until(loop, &downs, 1);
	cr_assert_eq(rconn_cmd(rc, on_reply, NULL, "PING"), -1, "refused while down");
	run_until(loop, &ups, 2);
	cr_assert_eq(rconn_cmd(rc, on_reply, NULL, "ECHO %s", "again"), 0);
	run_until(loop, &replies, 3);
	cr_assert_str_eq(last, "again");
	rconn_free(rc);
	ev_loop_destroy(loop);
}

Test(rconn, parse_addresses)
{
	char host[256];
	int port, is_unix;

	cr_assert_eq(rconn_parse_addr("127.0.0.1:6380", host, sizeof(host), &port, &is_unix), 0);
	cr_assert_str_eq(host, "127.0.0.1");
	cr_assert_eq(port, 6380);
	cr_assert_eq(is_unix, 0);
	cr_assert_eq(rconn_parse_addr("[::1]:7000", host, sizeof(host), &port, &is_unix), 0);
	cr_assert_str_eq(host, "::1");
	cr_assert_eq(port, 7000);
	cr_assert_eq(rconn_parse_addr("unix:/run/redis.sock", host, sizeof(host), &port, &is_unix), 0);
	cr_assert_str_eq(host, "/run/redis.sock");
	cr_assert_eq(is_unix, 1);
	cr_assert_eq(rconn_parse_addr("redis.local", host, sizeof(host), &port, &is_unix), 0);
	cr_assert_eq(port, 6379);
	cr_assert_eq(rconn_parse_addr("h:0", host, sizeof(host), &port, &is_unix), -1);
	cr_assert_eq(rconn_parse_addr("h:99999", host, sizeof(host), &port, &is_unix), -1);
	cr_assert_eq(rconn_parse_addr("h:12x", host, sizeof(host), &port, &is_unix), -1);
	cr_assert_eq(rconn_parse_addr(":1", host, sizeof(host), &port, &is_unix), -1);
	cr_assert_eq(rconn_parse_addr("[::1:1", host, sizeof(host), &port, &is_unix), -1);
	cr_assert_eq(rconn_parse_addr("", host, sizeof(host), &port, &is_unix), -1);
}

Test(rconn, refused_port_retries_quietly)
{
	struct ev_loop *loop = ev_loop_new(0);
	char err[128];
	struct rconn *rc;

	log_init("test", 0);
	/* Port 1 on loopback: nothing listens; connecting fails at once and
	 * is retried on the timer, never up, never a crash. */
	rc = rconn_new(loop, "127.0.0.1:1", "redis(test)", on_state, NULL, err, sizeof(err));
	cr_assert_not_null(rc);
	long long until = tu_now_ms() + 500;
	while (tu_now_ms() < until)
		ev_run(loop, EVRUN_ONCE);
	cr_assert_eq(rconn_is_up(rc), 0);
	cr_assert_null(rconn_ctx(rc));
	rconn_free(rc);
	ev_loop_destroy(loop);
}

/* ---- rconn_reply_arena: the same replies as hiredis builds ---- */

/* A reply written out whole: type, and string, integer or elements. */
static void
dump(FILE *f, const redisReply *r)
{
	if (r == NULL) {
		fputs("NULL", f);
		return;
	}
	fprintf(f, "(%d", r->type);
	switch (r->type) {
	case REDIS_REPLY_INTEGER:
		fprintf(f, " %lld", r->integer);
		break;
	case REDIS_REPLY_ARRAY:
		fprintf(f, " %zu", r->elements);
		for (size_t i = 0; i < r->elements; i++) {
			fputc(' ', f);
			dump(f, r->element[i]);
		}
		break;
	case REDIS_REPLY_NIL:
		break;
	default:
		fprintf(f, " %zu:", r->len);
		fwrite(r->str, 1, r->len, f);
		/* Terminated, as hiredis' strings are. */
		fputs(r->str[r->len] == '\0' ? "" : "<unterminated>", f);
	}
	fputc(')', f);
}

struct got {
	char *text[2][16];
	int n[2];
};

static struct got got;

static void
on_dump(redisAsyncContext *ac, void *r, void *priv)
{
	int which = (int)(intptr_t)priv;
	size_t len;
	FILE *f;

	cr_assert_lt(got.n[which], 16);
	f = open_memstream(&got.text[which][got.n[which]], &len);
	dump(f, r);
	fclose(f);
	got.n[which]++;
	replies++;
}

Test(rconn, reply_arena_builds_what_hiredis_builds)
{
	struct ev_loop *loop = ev_loop_new(0);
	char addr[128], err[128], key[64], big[80], val[2000];
	struct rconn *rc[2];
	redisContext *c = tu_redis_connect();
	redisReply *r;
	int sent = 0;

	log_init("test", 0);
	ups = replies = 0;
	memset(&got, 0, sizeof(got));
	snprintf(addr, sizeof(addr), "%s:%s", getenv("HIVE_TEST_REDIS_HOST"),
	    getenv("HIVE_TEST_REDIS_PORT"));
	tu_unique(key, sizeof(key), "arena");
	snprintf(big, sizeof(big), "%s-big", key);
	/* 3,000 entries of 2 kB: a reply of 6 MB, many blocks, then one
	 * block of their total, given back after a small reply. */
	memset(val, 'v', sizeof(val) - 1);
	val[sizeof(val) - 1] = '\0';
	for (int i = 0; i < 3000; i++)
		redisAppendCommand(c, "XADD %s * m %s n %d", big, val, i);
	for (int i = 0; i < 3000; i++) {
		cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
		freeReplyObject(r);
	}
	r = redisCommand(c, "XADD %s * m hello empty %b", key, "", (size_t)0);
	freeReplyObject(r);
	/* One connection builds replies in its arena, the other as hiredis
	 * does; the replies must be the same, object for object. */
	for (int i = 0; i < 2; i++) {
		rc[i] = rconn_new(loop, addr, "redis(test)", on_state, NULL, err,
		    sizeof(err));
		cr_assert_not_null(rc[i], "%s", err);
	}
	cr_assert_eq(rconn_reply_arena(rc[0]), 0);
	run_until(loop, &ups, 2);
	for (int i = 0; i < 2; i++) {
		void *w = (void *)(intptr_t)i;

		/* Pipelined: several replies in one read. */
		rconn_cmd(rc[i], on_dump, w, "PING");                 /* status */
		rconn_cmd(rc[i], on_dump, w, "ECHO %b", "a\0b", (size_t)3);
		rconn_cmd(rc[i], on_dump, w, "GET %s-none", key);    /* nil */
		rconn_cmd(rc[i], on_dump, w, "XLEN %s", key);        /* integer */
		rconn_cmd(rc[i], on_dump, w, "NOSUCHCOMMAND");       /* error */
		rconn_cmd(rc[i], on_dump, w, "LRANGE %s-none 0 -1", key); /* [] */
		rconn_cmd(rc[i], on_dump, w, "XRANGE %s - +", key);  /* nested */
		rconn_cmd(rc[i], on_dump, w, "XRANGE %s - +", big);  /* 6 MB */
		rconn_cmd(rc[i], on_dump, w, "XRANGE %s - + COUNT 10", big);
		rconn_cmd(rc[i], on_dump, w, "ECHO %s", "small after big");
		rconn_cmd(rc[i], on_dump, w, "XRANGE %s - +", big);  /* again */
		sent += 11;
	}
	run_until(loop, &replies, sent);
	cr_assert_eq(got.n[0], 11);
	cr_assert_eq(got.n[1], 11);
	for (int k = 0; k < 11; k++) {
		cr_assert_str_eq(got.text[0][k], got.text[1][k], "reply %d", k);
		free(got.text[0][k]);
		free(got.text[1][k]);
	}
	/* Killed with a large reply on its way (hiredis frees its context
	 * and the half-built reply), it comes back building in its arena. */
	downs = 0;
	client_id = 0;
	rconn_cmd(rc[0], on_id, NULL, "CLIENT ID");
	run_until(loop, &replies, ++sent);
	rconn_cmd(rc[0], on_reply, NULL, "XRANGE %s - +", big);
	ev_run(loop, EVRUN_NOWAIT);
	r = redisCommand(c, "CLIENT KILL ID %lld", client_id);
	cr_assert_eq(r->integer, 1);
	freeReplyObject(r);
	run_until(loop, &downs, 1);
	run_until(loop, &ups, 3);
	replies = sent = 0;
	memset(&got, 0, sizeof(got));
	for (int i = 0; i < 2; i++) {
		rconn_cmd(rc[i], on_dump, (void *)(intptr_t)i,
		    "XRANGE %s - + COUNT 100", big);
		sent++;
	}
	run_until(loop, &replies, sent);
	cr_assert_str_eq(got.text[0][0], got.text[1][0]);
	free(got.text[0][0]);
	free(got.text[1][0]);
	/* Freed with a large reply on its way: nothing leaks (LSan), and
	 * hiredis' later free of its half-built reply finds no arena. */
	rconn_cmd(rc[0], on_reply, NULL, "XRANGE %s - +", big);
	ev_run(loop, EVRUN_NOWAIT);
	for (int i = 0; i < 2; i++)
		rconn_free(rc[i]);
	r = redisCommand(c, "DEL %s %s", key, big);
	freeReplyObject(r);
	redisFree(c);
	ev_loop_destroy(loop);
}

/* ---- close-on-exec ---- */

static void
assert_cloexec(struct rconn *rc)
{
	redisAsyncContext *ac = rconn_ctx(rc);
	int fl;

	cr_assert_not_null(ac, "not connected");
	fl = fcntl(ac->c.fd, F_GETFD);
	cr_assert_neq(fl, -1);
	cr_assert(fl & FD_CLOEXEC, "the redis socket (fd %d) is inherited "
	    "by children: flags %#x", ac->c.fd, fl);
}

Test(rconn, socket_is_close_on_exec)
{
	struct ev_loop *loop = ev_loop_new(0);
	char addr[128], err[128];
	struct rconn *rc;

	log_init("test", 0);
	ups = 0;
	snprintf(addr, sizeof(addr), "%s:%s", getenv("HIVE_TEST_REDIS_HOST"),
	    getenv("HIVE_TEST_REDIS_PORT"));
	rc = rconn_new(loop, addr, "redis(test)", on_state, NULL, err, sizeof(err));
	cr_assert_not_null(rc, "%s", err);
	run_until(loop, &ups, 1);
	assert_cloexec(rc);
	rconn_free(rc);
	/* A unix socket too. */
	ups = 0;
	rc = rconn_new(loop, getenv("HIVE_TEST_REDIS_SOCK"), "redis(test)",
	    on_state, NULL, err, sizeof(err));
	cr_assert_not_null(rc, "%s", err);
	run_until(loop, &ups, 1);
	assert_cloexec(rc);
	rconn_free(rc);
	ev_loop_destroy(loop);
}

/* ---- groups: connections that go down together ---- */

static int gups, gdowns;

static void
on_group(struct rconn_group *g, int up, void *arg)
{
	cr_assert_eq(arg, (void *)&gups);
	if (up)
		gups++;
	else
		gdowns++;
}

/* CLIENT ID of a member, through its own connection. */
static long long
member_id(struct ev_loop *loop, struct rconn *rc)
{
	int want = replies + 1;

	cr_assert_eq(rconn_cmd(rc, on_id, NULL, "CLIENT ID"), 0);
	run_until(loop, &replies, want);
	return client_id;
}

static void
on_owner(redisAsyncContext *ac, void *r, void *priv)
{
	replies++;
	if (r != NULL)
		cr_assert_eq(rconn_arg(ac), priv, "rconn_arg finds the owner");
}

Test(rconn, group_goes_down_and_up_together)
{
	static const char *const names[] = { "a", "b", "c" };
	struct ev_loop *loop = ev_loop_new(0);
	char addr[128], err[128];
	struct rconn_group *g;
	redisContext *admin = tu_redis_connect();
	redisReply *r;
	long long id;

	log_init("test", 0);
	replies = gups = gdowns = 0;
	snprintf(addr, sizeof(addr), "%s:%s", getenv("HIVE_TEST_REDIS_HOST"),
	    getenv("HIVE_TEST_REDIS_PORT"));
	g = rconn_group_new(loop, addr, "redis(group)", 3, names, on_group,
	    &gups, err, sizeof(err));
	cr_assert_not_null(g, "%s", err);
	run_until(loop, &gups, 1);
	cr_assert(rconn_group_is_up(g));
	for (int i = 0; i < 3; i++) {
		cr_assert(rconn_is_up(rconn_group_member(g, i)));
		assert_cloexec(rconn_group_member(g, i));
	}
	rconn_group_ready(g);
	cr_assert_eq(rconn_cmd(rconn_group_member(g, 0), on_owner, &gups,
	    "PING"), 0);
	run_until(loop, &replies, 1);

	/* One member killed from outside: all three go down, "down" once,
	 * then all come back, "up" once. */
	id = member_id(loop, rconn_group_member(g, 1));
	r = redisCommand(admin, "CLIENT KILL ID %lld", id);
	cr_assert_eq(r->integer, 1);
	freeReplyObject(r);
	run_until(loop, &gdowns, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_not(rconn_is_up(rconn_group_member(g, i)),
		    "member %d still up", i);
	cr_assert_eq(rconn_cmd(rconn_group_member(g, 2), on_reply, NULL,
	    "PING"), -1, "refused while down");
	run_until(loop, &gups, 2);
	cr_assert_eq(gdowns, 1);
	for (int i = 0; i < 3; i++)
		cr_assert(rconn_is_up(rconn_group_member(g, i)));
	rconn_group_ready(g);

	/* The owner gives up: a command in flight gets a NULL reply (it
	 * finds no owner), and the group comes back by itself. */
	replies = 0;
	cr_assert_eq(rconn_cmd(rconn_group_member(g, 0), on_owner, &gups,
	    "PING"), 0);
	rconn_group_down(g, "testing");
	cr_assert_eq(replies, 1, "the command in flight got its NULL reply");
	cr_assert_eq(gdowns, 2);
	cr_assert_not(rconn_group_is_up(g));
	run_until(loop, &gups, 3);
	rconn_group_free(g);
	redisFree(admin);
	ev_loop_destroy(loop);
}

Test(rconn, group_with_nothing_listening_stays_down)
{
	static const char *const names[] = { "a", "b" };
	struct ev_loop *loop = ev_loop_new(0);
	char err[128];
	struct rconn_group *g;

	log_init("test", 0);
	gups = gdowns = 0;
	g = rconn_group_new(loop, "127.0.0.1:1", "redis(group)", 2, names,
	    on_group, &gups, err, sizeof(err));
	cr_assert_not_null(g);
	long long until = tu_now_ms() + 500;
	while (tu_now_ms() < until)
		ev_run(loop, EVRUN_ONCE);
	cr_assert_not(rconn_group_is_up(g));
	cr_assert_eq(gups, 0);
	cr_assert_eq(gdowns, 0, "never up, so never down");
	rconn_group_free(g);
	cr_assert_null(rconn_group_new(loop, "h:0", "redis(group)", 2, names,
	    on_group, &gups, err, sizeof(err)));
	cr_assert(strstr(err, "bad redis address") != NULL, "%s", err);
	ev_loop_destroy(loop);
}
