/*
 * test_harness.c - proves the test harness itself: scripts/test started a
 * private redis-server and PostgreSQL, and the tests can use both.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

Test(harness, redis_streams_consumer_group)
{
	redisContext *c = tu_redis_connect();
	char key[128];
	redisReply *r;

	tu_unique(key, sizeof(key), "harness");
	r = redisCommand(c, "XGROUP CREATE %s g $ MKSTREAM", key);
	cr_assert_eq(r->type, REDIS_REPLY_STATUS, "XGROUP: %s", r->str);
	freeReplyObject(r);
	r = redisCommand(c, "XADD %s * m %b", key, "\x81\xa1v\x01", (size_t)4);
	cr_assert_eq(r->type, REDIS_REPLY_STRING);
	freeReplyObject(r);
	r = redisCommand(c, "XREADGROUP GROUP g c1 COUNT 1 STREAMS %s >", key);
	cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
	cr_assert_eq(r->element[0]->element[1]->elements, 1);
	freeReplyObject(r);
	r = redisCommand(c, "XPENDING %s g", key);
	cr_assert_eq(r->element[0]->integer, 1, "one entry pending");
	freeReplyObject(r);
	r = redisCommand(c, "CONFIG GET maxmemory-policy");
	cr_assert_str_eq(r->element[1]->str, "noeviction");
	freeReplyObject(r);
	r = redisCommand(c, "DEL %s", key);
	freeReplyObject(r);
	redisFree(c);
}

Test(harness, postgres_round_trip)
{
	PGconn *pg = tu_pg_connect();
	PGresult *res;
	char sql[256], table[64];

	tu_unique(table, sizeof(table), "harness");
	for (char *p = table; *p; p++)
		if (*p == ':' || *p == '-')
			*p = '_';
	snprintf(sql, sizeof(sql), "CREATE TABLE %s (id int, s text)", table);
	res = PQexec(pg, sql);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s",
	    PQerrorMessage(pg));
	PQclear(res);
	snprintf(sql, sizeof(sql), "INSERT INTO %s VALUES (1, 'hive')", table);
	res = PQexec(pg, sql);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	snprintf(sql, sizeof(sql), "SELECT s FROM %s WHERE id = 1", table);
	res = PQexec(pg, sql);
	cr_assert_eq(PQntuples(res), 1);
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "hive");
	PQclear(res);
	snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
	PQclear(PQexec(pg, sql));
	PQfinish(pg);
}

Test(harness, postgres_runs_unprivileged)
{
	PGconn *pg = tu_pg_connect();
	PGresult *res = PQexec(pg, "SELECT setting FROM pg_settings WHERE name = 'data_directory'");

	cr_assert_eq(PQntuples(res), 1);
	/* The server is the private one scripts/test started. */
	cr_assert(strstr(PQgetvalue(res, 0, 0), getenv("HIVE_TEST_PG_DIR")) != NULL,
	    "data_directory %s not under %s", PQgetvalue(res, 0, 0),
	    getenv("HIVE_TEST_PG_DIR"));
	PQclear(res);
	PQfinish(pg);
}
