/*
 * rtest.c - see rtest.h.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "rtest.h"
#include "testutil.h"

static void
on_state(struct rconn *rc, int up, void *arg)
{
	*(int *)arg = up;
}

struct rconn *
rtest_connect(struct ev_loop *loop)
{
	static int up;
	char addr[128], err[128];
	long long deadline = tu_now_ms() + 10000;
	struct rconn *rc;

	up = 0;
	snprintf(addr, sizeof(addr), "%s:%s", getenv("HIVE_TEST_REDIS_HOST"),
	    getenv("HIVE_TEST_REDIS_PORT"));
	rc = rconn_new(loop, addr, "redis(test)", on_state, &up, err,
	    sizeof(err));
	cr_assert_not_null(rc, "%s", err);
	while (!up && tu_now_ms() < deadline)
		ev_run(loop, EVRUN_ONCE);
	cr_assert(up, "no connection to %s within 10 s", addr);
	return rc;
}
