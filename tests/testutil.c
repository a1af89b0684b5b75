#include "testutil.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *
need_env(const char *name)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0')
		cr_assert_fail("%s is not set: run the suite with ./scripts/test, "
		    "which starts the private services", name);
	return v;
}

redisContext *
tu_redis_connect(void)
{
	const char *host = need_env("HIVE_TEST_REDIS_HOST");
	int port = atoi(need_env("HIVE_TEST_REDIS_PORT"));
	redisContext *c = redisConnect(host, port);

	if (c == NULL || c->err)
		cr_assert_fail("connect to redis %s:%d: %s", host, port,
		    c ? c->errstr : "out of memory");
	return c;
}

void
tu_xadd(redisContext *c, const char *key, const void *m, size_t len)
{
	redisReply *r = redisCommand(c, "XADD %s * m %b", key, m, len);

	cr_assert(r != NULL && r->type == REDIS_REPLY_STRING, "XADD %s: %s",
	    key, r == NULL ? c->errstr : r->type == REDIS_REPLY_ERROR ? r->str :
	    "not an entry id");
	freeReplyObject(r);
}

PGconn *
tu_pg_connect(void)
{
	PGconn *pg = PQconnectdb(need_env("HIVE_TEST_PG"));

	if (PQstatus(pg) != CONNECTION_OK)
		cr_assert_fail("connect to postgres: %s", PQerrorMessage(pg));
	return pg;
}

void
tu_pg_fresh_db(const char *tag, char *name, size_t nlen, char *ci,
    size_t cilen)
{
	PGconn *admin = tu_pg_connect();
	char sql[160];
	PGresult *res;

	tu_unique(name, nlen, tag);
	for (char *p = name; *p; p++)
		if (*p == '-')
			*p = '_';
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	res = PQexec(admin, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		cr_assert_fail("%s: %s", sql, PQerrorMessage(admin));
	PQclear(res);
	PQfinish(admin);
	snprintf(ci, cilen, "%s dbname=%s", need_env("HIVE_TEST_PG"), name);
}

void
tu_unique(char *buf, size_t len, const char *tag)
{
	static int n;

	snprintf(buf, len, "t%ld-%d-%s", (long)getpid(), ++n, tag);
}

const char *
tu_build_path(const char *rel)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/%s", need_env("HIVE_BUILD_DIR"), rel);
	return path;
}

char *
tu_read_source(const char *rel)
{
	char path[4096];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", need_env("HIVE_SOURCE_DIR"), rel);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot open %s", path);
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	cr_assert_geq(n, 0, "cannot size %s", path);
	cr_assert_eq(fseek(f, 0, SEEK_SET), 0);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n, "short read of %s",
	    path);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

void
tu_execv(const char *const *argv)
{
	size_t n = 0;
	char **v;

	while (argv[n] != NULL)
		n++;
	if ((v = calloc(n + 1, sizeof(*v))) == NULL)
		_exit(127);
	for (size_t i = 0; i < n; i++)
		if ((v[i] = strdup(argv[i])) == NULL)
			_exit(127);
	execv(v[0], v);
	_exit(127);
}

long long
tu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
