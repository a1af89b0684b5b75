/*
 * test_rconn.c - the self-healing Redis connection, against the private
 * redis-server: commands, a killed connection coming back, bad addresses.
 */
#include <criterion/criterion.h>
#include <ev.h>
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
