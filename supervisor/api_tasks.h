/*
 * api_tasks.h - the list cursor of GET /tasks and GET /workflows, apart
 * from the endpoints (api_tasks.c), so that the tests and the fuzz target
 * (tests/fuzz/fuzz_cursor.c) call it alone.
 *
 * A page ends at a row, newest first by (created_at, id); the cursor is
 * that row's key, and the next page is the rows strictly below it:
 *
 *   <created_at in µs since 1970, decimal>.<id in base64url, no padding>
 *   "1796630400123456.dC0x"                               (id "t-1")
 *
 * Every character is one of [A-Za-z0-9._-] (URL-safe).  The
 * decoder is strict: one spelling per key (no leading zero, no sign, no
 * padding, no stray bits), an id that proto_valid_id accepts; anything
 * else is a bad cursor (a 400), never a query.
 */
#ifndef HIVE_API_TASKS_H
#define HIVE_API_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "hive_proto.h"

struct api_req;

/*
 * A query of the record for req on the API's own connection, as every
 * endpoint of api_tasks.c makes (non-blocking, bounded in time and in
 * number, read-only): done answers req from the result; errors (no
 * record, PostgreSQL down or slow, the query failed) are answered
 * without it.  0, or -1 when req was answered already.
 */
typedef void api_record_fn(struct api_req *, PGresult *);
int api_record_query(struct api_req *req, const char *sql, int n,
    const char *const *v, api_record_fn *done);

/* GET /usage (api_usage.c; its route is in api_tasks.c's table). */
void api_usage(struct api_req *);

/* The longest cursor, with its NUL: 19 digits, '.', the id in base64. */
#define API_CURSOR_MAX (19 + 1 + (HIVE_ID_MAX * 4 + 2) / 3 + 1)

/* Write the cursor of (us, id) into buf (len bytes, API_CURSOR_MAX is
 * enough): its length, or -1 when us < 0, the id is not valid or it does
 * not fit. */
int api_cursor_encode(char *buf, size_t len, int64_t us, const char *id,
    size_t idlen);
/* Read a cursor: 0 with *us and id (NUL-terminated, idsize bytes at least
 * HIVE_ID_MAX + 1) set, or -1 when s is not one api_cursor_encode
 * writes. */
int api_cursor_decode(const char *s, int64_t *us, char *id, size_t idsize);

/*
 * The SQL of GET /tasks (api_tasks.c), here so that the benchmark
 * (bench/bench_api.c) runs the same SELECT as its ceiling:
 *
 *   API_TASKS_SELECT [ AND condition ...] API_LIST_ORDER
 *
 * the conditions being the filters', each on parameters; API_LIST_ORDER's
 * %d is the number of the parameter that holds the LIMIT (the page and
 * one row more).
 */
/* A timestamptz column as ms and µs since 1970 (NULL stays NULL). */
#define SQL_MS(c) "floor(extract(epoch FROM " c ") * 1000)::int8"
#define SQL_US(c) "(extract(epoch FROM " c ") * 1000000)::int8"
/* From a parameter: ms or µs since 1970 to a timestamptz. */
#define SQL_FROM_MS(p) \
	"('epoch'::timestamptz + " p "::int8 * interval '1 ms')"
#define SQL_FROM_US(p) \
	"('epoch'::timestamptz + " p "::int8 * interval '1 us')"

/* The columns of a task in a list (at_task_json reads them so). */
#define API_TASK_COLS "t.id, t.state, t.stream, t.agent, t.workflow, " \
	"t.attempts, " SQL_MS("t.created_at") ", " SQL_MS("t.updated_at") ", " \
	SQL_MS("t.finished_at") ", t.error, " SQL_US("t.created_at")
#define API_TASKS_SELECT \
	"SELECT " API_TASK_COLS " FROM tasks t WHERE true"
#define API_LIST_ORDER " ORDER BY t.created_at DESC, t.id DESC LIMIT $%d"

/*
 * Usage (record/migrate.c, version 7): a task reported some when any of
 * its columns is set (the partial index tasks_usage holds those);
 * API_USAGE_JSON is a task's as JSON, null when it reported none;
 * API_USAGE_SUMS the sums over tasks t (each reported usage) as a JSON
 * object, the same keys as a row of GET /usage.
 */
#define API_USAGE_HAS(t) "(" t ".input_tokens IS NOT NULL OR " t \
	".output_tokens IS NOT NULL OR " t ".cost IS NOT NULL OR " t \
	".model IS NOT NULL)"
#define API_USAGE_JSON(t) "(CASE WHEN " API_USAGE_HAS(t) " THEN " \
	"json_build_object('input_tokens', " t ".input_tokens, " \
	"'output_tokens', " t ".output_tokens, 'cost', " t ".cost, " \
	"'model', " t ".model) END)"
#define API_USAGE_SUMS "json_build_object('tasks', count(*), " \
	"'input_tokens', coalesce(sum(t.input_tokens), 0), " \
	"'output_tokens', coalesce(sum(t.output_tokens), 0), " \
	"'cost', coalesce(sum(t.cost), 0))"

#endif
