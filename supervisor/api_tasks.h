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
 * Every character is one of [A-Za-z0-9._-] (SPEC: URL-safe).  The
 * decoder is strict: one spelling per key (no leading zero, no sign, no
 * padding, no stray bits), an id that proto_valid_id accepts; anything
 * else is a bad cursor (a 400), never a query.
 */
#ifndef HIVE_API_TASKS_H
#define HIVE_API_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "hive_proto.h"

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

#endif
