/*
 * fuzz_task.c - libFuzzer target for proto_decode_task: any bytes, and the
 * round trip of fuzz_common.h for what is accepted.
 * Seeds: tests/fuzz/corpus/task/ (tests/fuzz/gen_corpus.c).
 */
#include "fuzz_common.h"

static void
fz_same_task(const struct hive_task *a, const struct hive_task *b)
{
	FZ_CHECK(a->v == b->v && a->v == HIVE_PROTO_VERSION);
	fz_str_eq(a->id, b->id);
	FZ_CHECK(proto_valid_id(a->id.ptr, a->id.len) == 0);
	fz_obj_eq(&a->payload, &b->payload);
	FZ_CHECK(a->attempt == b->attempt);
	FZ_CHECK(a->attempt >= 1 && a->attempt <= HIVE_ATTEMPTS_MAX);
	FZ_CHECK(a->max_attempts == b->max_attempts);
	FZ_CHECK(a->timeout_ms == b->timeout_ms);
	FZ_CHECK(a->created_ms == b->created_ms);
	fz_str_eq(a->reply_to, b->reply_to);
	FZ_CHECK(a->reply_to.len == 0 || memcmp(a->reply_to.ptr,
	    HIVE_REPLY_PREFIX, strlen(HIVE_REPLY_PREFIX)) == 0);
	fz_str_eq(a->workflow, b->workflow);
	fz_obj_eq(&a->parents, &b->parents);
	FZ_CHECK(a->parents.type == MSGPACK_OBJECT_NIL ||
	    (a->parents.type == MSGPACK_OBJECT_MAP &&
	    a->parents.via.map.size <= HIVE_WF_DEPS_MAX));
}

FZ_MESSAGE_TARGET(task)
