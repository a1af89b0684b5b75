/*
 * fuzz_result.c - libFuzzer target for proto_decode_result: any bytes,
 * and the round trip of fuzz_common.h for what is accepted.
 * Seeds: tests/fuzz/corpus/result/ (tests/fuzz/gen_corpus.c).
 */
#include "fuzz_common.h"

static void
fz_same_result(const struct hive_result *a, const struct hive_result *b)
{
	FZ_CHECK(a->v == b->v && a->v == HIVE_PROTO_VERSION);
	fz_str_eq(a->id, b->id);
	fz_str_eq(a->agent, b->agent);
	fz_str_eq(a->host, b->host);
	FZ_CHECK(a->status == b->status);
	FZ_CHECK(a->status == HIVE_STATUS_OK || a->error.len > 0);
	fz_obj_eq(&a->result, &b->result);
	fz_str_eq(a->error, b->error);
	FZ_CHECK(a->code == b->code && a->code <= HIVE_CODE_LAST);
	FZ_CHECK(a->code == HIVE_CODE_NONE || a->status == HIVE_STATUS_ERROR);
	FZ_CHECK(a->attempt == b->attempt);
	FZ_CHECK(a->started_ms == b->started_ms);
	FZ_CHECK(a->finished_ms == b->finished_ms);
	fz_obj_eq(&a->memory, &b->memory);
	FZ_CHECK(a->memory.type == MSGPACK_OBJECT_NIL ||
	    a->memory.type == MSGPACK_OBJECT_MAP);
	FZ_CHECK((a->memory.type == MSGPACK_OBJECT_NIL) == (a->memory_v == 0));
	FZ_CHECK(a->memory_v == b->memory_v);
	fz_str_eq(a->workflow, b->workflow);
}

FZ_MESSAGE_TARGET(result)
