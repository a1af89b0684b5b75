/*
 * fuzz_dead.c - libFuzzer target for proto_decode_dead: any bytes, and the
 * round trip of fuzz_common.h for what is accepted.
 * Seeds: tests/fuzz/corpus/dead/ (tests/fuzz/gen_corpus.c).
 */
#include "fuzz_common.h"

static void
fz_same_dead(const struct hive_dead *a, const struct hive_dead *b)
{
	FZ_CHECK(a->v == b->v && a->v == HIVE_PROTO_VERSION);
	fz_str_eq(a->id, b->id);
	fz_str_eq(a->reason, b->reason);
	FZ_CHECK(a->reason.len > 0);
	FZ_CHECK(a->code == b->code && a->code <= HIVE_CODE_LAST);
	fz_str_eq(a->workflow, b->workflow);
	fz_str_eq(a->stream, b->stream);
	fz_str_eq(a->entry, b->entry);
	fz_str_eq(a->agent, b->agent);
	FZ_CHECK(a->attempt == b->attempt);
	FZ_CHECK(a->ts_ms == b->ts_ms);
	fz_str_eq(a->raw, b->raw);
	FZ_CHECK(a->raw.len <= HIVE_RAW_MAX);
}

FZ_MESSAGE_TARGET(dead)
