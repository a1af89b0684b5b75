/*
 * fuzz_frame.c - libFuzzer target for proto_decode_frame (a frame body):
 * any bytes, and the round trip of fuzz_common.h, where the encoder's
 * output is a whole frame whose header must give the body's length.
 * Seeds: tests/fuzz/corpus/frame/ (tests/fuzz/gen_corpus.c).
 */
#include "fuzz_common.h"

static void
same_frame(const struct hive_frame *a, const struct hive_frame *b)
{
	FZ_CHECK(a->v == b->v && a->v == HIVE_PROTO_VERSION);
	FZ_CHECK(a->type == b->type);
	switch (a->type) {
	case HIVE_FRAME_HELLO:
		fz_str_eq(a->u.hello.agent, b->u.hello.agent);
		FZ_CHECK(a->u.hello.instance == b->u.hello.instance);
		FZ_CHECK(a->u.hello.instance >= 1 &&
		    a->u.hello.instance <= HIVE_INSTANCE_MAX);
		FZ_CHECK(a->u.hello.pid == b->u.hello.pid);
		break;
	case HIVE_FRAME_MEMORY:
		fz_str_eq(a->u.memory.agent, b->u.memory.agent);
		FZ_CHECK(a->u.memory.instance == b->u.memory.instance);
		FZ_CHECK(a->u.memory.memory_v == b->u.memory.memory_v);
		fz_obj_eq(&a->u.memory.memory, &b->u.memory.memory);
		FZ_CHECK((a->u.memory.memory_v == 0) ==
		    (a->u.memory.memory.type == MSGPACK_OBJECT_NIL));
		break;
	case HIVE_FRAME_HEARTBEAT:
		FZ_CHECK(a->u.heartbeat.state == b->u.heartbeat.state);
		fz_str_eq(a->u.heartbeat.task, b->u.heartbeat.task);
		FZ_CHECK(a->u.heartbeat.inflight == b->u.heartbeat.inflight);
		FZ_CHECK(a->u.heartbeat.done == b->u.heartbeat.done);
		FZ_CHECK(a->u.heartbeat.handler_pid ==
		    b->u.heartbeat.handler_pid);
		FZ_CHECK(a->u.heartbeat.handler_rss_kb ==
		    b->u.heartbeat.handler_rss_kb);
		break;
	case HIVE_FRAME_CONTROL:
		FZ_CHECK(a->u.control.cmd == b->u.control.cmd);
		fz_str_eq(a->u.control.reason, b->u.control.reason);
		break;
	case HIVE_FRAME_OUTPUT:
		fz_str_eq(a->u.output.task, b->u.output.task);
		fz_str_eq(a->u.output.text, b->u.output.text);
		FZ_CHECK(a->u.output.text.len <= HIVE_OUTPUT_MAX);
		FZ_CHECK(a->u.output.dropped == b->u.output.dropped);
		break;
	default:
		FZ_CHECK(!"decoded a frame of unknown type");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hive_frame m1, m2;
	struct proto_err err;
	msgpack_sbuffer b1, b2;
	size_t blen;
	const unsigned char *h;

	memset(&err, 0, sizeof(err));
	if (proto_decode_frame((const char *)data, size, &m1, &err) == -1) {
		fz_err_ok(&err);
		return 0;
	}
	msgpack_sbuffer_init(&b1);
	msgpack_sbuffer_init(&b2);
	if (proto_encode_frame(&b1, &m1, &err) == -1) {
		fprintf(stderr, "decoded but refused by the encoder: %s: %s\n",
		    err.field, err.detail);
		abort();
	}
	FZ_CHECK(b1.size > HIVE_FRAME_HDR);
	h = (const unsigned char *)b1.data;
	blen = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 |
	    h[3];
	FZ_CHECK(blen == b1.size - HIVE_FRAME_HDR);
	FZ_CHECK(proto_decode_frame(b1.data + HIVE_FRAME_HDR, blen, &m2,
	    &err) == 0);
	same_frame(&m1, &m2);
	FZ_CHECK(proto_encode_frame(&b2, &m2, &err) == 0);
	FZ_CHECK(b1.size == b2.size);
	FZ_CHECK(memcmp(b1.data, b2.data, b1.size) == 0);
	proto_frame_clear(&m2);
	proto_frame_clear(&m1);
	msgpack_sbuffer_destroy(&b1);
	msgpack_sbuffer_destroy(&b2);
	return 0;
}
