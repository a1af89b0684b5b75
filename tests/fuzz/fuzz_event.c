/*
 * fuzz_event.c - libFuzzer target for proto_decode_event: any bytes, and
 * the round trip of fuzz_common.h for what is accepted.
 * Seeds: tests/fuzz/corpus/event/ (tests/fuzz/gen_corpus.c).
 */
#include "fuzz_common.h"

static void
fz_same_event(const struct hive_event *a, const struct hive_event *b)
{
	FZ_CHECK(a->v == b->v && a->v == HIVE_PROTO_VERSION);
	fz_str_eq(a->kind, b->kind);
	FZ_CHECK(proto_valid_name(a->kind.ptr, a->kind.len) == 0);
	FZ_CHECK(a->ts_ms == b->ts_ms);
	fz_str_eq(a->host, b->host);
	fz_str_eq(a->agent, b->agent);
	fz_str_eq(a->task, b->task);
	FZ_CHECK(a->pid == b->pid && a->pid >= 0);
	FZ_CHECK(a->attempt == b->attempt);
	fz_str_eq(a->reason, b->reason);
	FZ_CHECK(memchr(a->reason.ptr ? a->reason.ptr : "", '\0',
	    a->reason.len) == NULL);
	fz_str_eq(a->workflow, b->workflow);
}

FZ_MESSAGE_TARGET(event)
