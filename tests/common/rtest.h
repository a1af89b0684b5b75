/*
 * rtest.h - what the tests of common/'s Redis parts share: an rconn to
 * the private Redis (HIVE_TEST_REDIS_HOST/PORT) on a new loop, up before
 * it is returned.
 */
#ifndef HIVE_RTEST_H
#define HIVE_RTEST_H

#include <ev.h>

#include "rconn.h"

/* The test fails when it is not up within 10 s. */
struct rconn *rtest_connect(struct ev_loop *loop);

#endif
