/*
 * testutil.h - helpers every test file may use: connections to the private
 * services that scripts/test started, unique key prefixes so that tests
 * running in parallel never share a stream, and waiting without sleep.
 */
#ifndef HIVE_TESTUTIL_H
#define HIVE_TESTUTIL_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stddef.h>

/* Connect to the private Redis (HIVE_TEST_REDIS_HOST/PORT); the test
 * fails with a clear message when the variables are not set. */
redisContext *tu_redis_connect(void);
/* XADD key * m <m>: the test fails unless Redis takes it. */
void tu_xadd(redisContext *c, const char *key, const void *m, size_t len);
/* Connect to the private PostgreSQL (HIVE_TEST_PG). */
PGconn *tu_pg_connect(void);
/* A new, empty database on the private PostgreSQL, named after tag (its
 * name in name, a libpq connection string to it in ci). */
void tu_pg_fresh_db(const char *tag, char *name, size_t nlen, char *ci,
    size_t cilen);
/* "t<pid>-<n>-<tag>": a prefix no other test in this run uses. */
void tu_unique(char *buf, size_t len, const char *tag);
/* Path of a built program, from HIVE_BUILD_DIR. */
const char *tu_build_path(const char *rel);
/* The whole of a file of the source tree (from HIVE_SOURCE_DIR), NUL
 * terminated, to free(); the test fails if it cannot be read. */
char *tu_read_source(const char *rel);
/* In a forked child: exec argv[0] with argv (copied, since execv's
 * argv is not const); _exit(127) if that fails. */
__attribute__((noreturn)) void tu_execv(const char *const *argv);
/* Monotonic milliseconds. */
long long tu_now_ms(void);

#endif
