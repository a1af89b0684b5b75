/*
 * test_frame.c - socketpair frames: a round trip of each type through the
 * encoder, the framer and the decoder; the framer on split and merged
 * input and on bad lengths.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "pbuild.h"

/* Encode f, cut it with a framer fed byte by byte, decode into d. */
static void
through_the_pipe(const struct hive_frame *f, struct hive_frame *d,
    msgpack_sbuffer *sb, struct proto_framer *fr)
{
	struct proto_err err = { 0 };
	const char *body = NULL;
	size_t blen = 0;
	int got = 0;

	msgpack_sbuffer_clear(sb);
	cr_assert_eq(proto_encode_frame(sb, f, &err), 0, "%s: %s", err.field,
	    err.detail);
	cr_assert_gt(sb->size, HIVE_FRAME_HDR);
	for (size_t i = 0; i < sb->size; i++) {
		cr_assert_eq(proto_framer_feed(fr, sb->data + i, 1), 0);
		got = proto_framer_next(fr, &body, &blen, &err);
		cr_assert_eq(got, i + 1 == sb->size ? 1 : 0,
		    "framer after %zu of %zu bytes: %d", i + 1, sb->size, got);
	}
	cr_assert_eq(blen, sb->size - HIVE_FRAME_HDR);
	cr_assert_eq(proto_decode_frame(body, blen, d, &err), 0, "%s: %s",
	    err.field, err.detail);
	cr_assert_eq(d->v, HIVE_PROTO_VERSION);
	cr_assert_eq(d->type, f->type);
}

Test(frame, round_trip_every_type)
{
	msgpack_sbuffer sb, mb;
	msgpack_unpacked mem;
	struct proto_framer fr;
	struct hive_frame f, d;
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&mb);
	proto_framer_init(&fr);

	memset(&f, 0, sizeof(f));
	f.type = HIVE_FRAME_HELLO;
	f.u.hello.agent = HIVE_STR("reviewer");
	f.u.hello.instance = 9999;
	f.u.hello.pid = 2147483647;
	through_the_pipe(&f, &d, &sb, &fr);
	pb_assert_str(d.u.hello.agent, "reviewer", "hello.agent");
	cr_assert_eq(d.u.hello.instance, 9999);
	cr_assert_eq(d.u.hello.pid, 2147483647);
	proto_frame_clear(&d);

	/* memory, with a map */
	pb_json(&mb, "{\"notes\": [\"x\"], \"n\": 3}");
	cr_assert_eq(proto_decode_value(mb.data, mb.size, &mem, &err), 0);
	memset(&f, 0, sizeof(f));
	f.type = HIVE_FRAME_MEMORY;
	f.u.memory.agent = HIVE_STR("reviewer");
	f.u.memory.instance = 2;
	f.u.memory.memory_v = 17;
	f.u.memory.memory = mem.data;
	through_the_pipe(&f, &d, &sb, &fr);
	pb_assert_str(d.u.memory.agent, "reviewer", "memory.agent");
	cr_assert_eq(d.u.memory.instance, 2);
	cr_assert_eq(d.u.memory.memory_v, 17);
	cr_assert_eq(d.u.memory.memory.type, MSGPACK_OBJECT_MAP);
	cr_assert_eq(d.u.memory.memory.via.map.size, 2);
	proto_frame_clear(&d);
	msgpack_unpacked_destroy(&mem);

	/* memory, none yet (hived's first frame to a new agent) */
	memset(&f, 0, sizeof(f));
	f.type = HIVE_FRAME_MEMORY;
	f.u.memory.agent = HIVE_STR("a");
	f.u.memory.instance = 1;
	through_the_pipe(&f, &d, &sb, &fr);
	cr_assert_eq(d.u.memory.memory_v, 0);
	cr_assert_eq(d.u.memory.memory.type, MSGPACK_OBJECT_NIL);
	proto_frame_clear(&d);

	memset(&f, 0, sizeof(f));
	f.type = HIVE_FRAME_HEARTBEAT;
	f.u.heartbeat.state = HIVE_WSTATE_BUSY;
	f.u.heartbeat.task = HIVE_STR("task-1");
	f.u.heartbeat.inflight = 3;
	f.u.heartbeat.done = 1ull << 40;
	f.u.heartbeat.handler_pid = 777;
	f.u.heartbeat.handler_rss_kb = 12345;
	f.u.heartbeat.handler_restarts = 6;
	through_the_pipe(&f, &d, &sb, &fr);
	cr_assert_eq(d.u.heartbeat.state, HIVE_WSTATE_BUSY);
	pb_assert_str(d.u.heartbeat.task, "task-1", "heartbeat.task");
	cr_assert_eq(d.u.heartbeat.inflight, 3);
	cr_assert_eq(d.u.heartbeat.done, 1ull << 40);
	cr_assert_eq(d.u.heartbeat.handler_pid, 777);
	cr_assert_eq(d.u.heartbeat.handler_rss_kb, 12345);
	cr_assert_eq(d.u.heartbeat.handler_restarts, 6);
	proto_frame_clear(&d);

	/* minimal heartbeat: STARTING is 0 and still written */
	memset(&f, 0, sizeof(f));
	f.type = HIVE_FRAME_HEARTBEAT;
	through_the_pipe(&f, &d, &sb, &fr);
	cr_assert_eq(d.u.heartbeat.state, HIVE_WSTATE_STARTING);
	cr_assert_eq(d.u.heartbeat.task.len, 0);
	proto_frame_clear(&d);
	for (int s = HIVE_WSTATE_STARTING; s <= HIVE_WSTATE_DRAINING; s++) {
		f.u.heartbeat.state = s;
		through_the_pipe(&f, &d, &sb, &fr);
		cr_assert_eq(d.u.heartbeat.state, s);
		proto_frame_clear(&d);
	}

	memset(&f, 0, sizeof(f));
	f.type = HIVE_FRAME_CONTROL;
	f.u.control.cmd = HIVE_CTL_DRAIN;
	f.u.control.reason = HIVE_STR("hived stopping");
	through_the_pipe(&f, &d, &sb, &fr);
	cr_assert_eq(d.u.control.cmd, HIVE_CTL_DRAIN);
	pb_assert_str(d.u.control.reason, "hived stopping", "control.reason");
	proto_frame_clear(&d);
	f.u.control.reason = (struct hive_str){ NULL, 0 };
	through_the_pipe(&f, &d, &sb, &fr);
	cr_assert_eq(d.u.control.reason.len, 0);
	proto_frame_clear(&d);

	memset(&f, 0, sizeof(f));
	f.type = HIVE_FRAME_OUTPUT;
	f.u.output.task = HIVE_STR("job-5");
	f.u.output.text = HIVE_STR("loading model \xc3\xa9");
	f.u.output.dropped = 7;
	through_the_pipe(&f, &d, &sb, &fr);
	pb_assert_str(d.u.output.task, "job-5", "output.task");
	pb_assert_str(d.u.output.text, "loading model \xc3\xa9", "output.text");
	cr_assert_eq(d.u.output.dropped, 7);
	proto_frame_clear(&d);
	f.u.output.task = (struct hive_str){ NULL, 0 };
	f.u.output.text = (struct hive_str){ NULL, 0 };
	through_the_pipe(&f, &d, &sb, &fr);
	cr_assert_eq(d.u.output.task.len, 0);
	cr_assert_eq(d.u.output.text.len, 0);
	cr_assert_eq(d.u.output.dropped, 7);
	proto_frame_clear(&d);

	proto_framer_free(&fr);
	msgpack_sbuffer_destroy(&mb);
	msgpack_sbuffer_destroy(&sb);
}

Test(frame, encoder_refuses)
{
	msgpack_sbuffer sb;
	struct hive_frame f;
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	memset(&f, 0, sizeof(f));
	cr_assert_eq(proto_encode_frame(&sb, &f, &err), -1, "type 0");
	cr_assert_str_eq(err.field, "t");
	f.type = HIVE_FRAME_HELLO;
	f.u.hello.agent = HIVE_STR("a");
	cr_assert_eq(proto_encode_frame(&sb, &f, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	cr_assert_str_eq(err.field, "instance");
	f.type = HIVE_FRAME_MEMORY;
	f.u.memory.agent = HIVE_STR("a");
	f.u.memory.instance = 1;
	f.u.memory.memory_v = 3;
	cr_assert_eq(proto_encode_frame(&sb, &f, &err), -1);
	cr_assert_str_eq(err.field, "memory");
	f.type = HIVE_FRAME_CONTROL;
	f.u.control.cmd = 0;
	cr_assert_eq(proto_encode_frame(&sb, &f, &err), -1);
	cr_assert_str_eq(err.field, "cmd");
	memset(&f, 0, sizeof(f));
	f.type = HIVE_FRAME_OUTPUT;
	f.u.output.text = (struct hive_str){ "bad \xff", 5 };
	cr_assert_eq(proto_encode_frame(&sb, &f, &err), -1, "not UTF-8");
	cr_assert_str_eq(err.field, "text");
	cr_assert_eq(sb.size, 0, "refused frames leave nothing behind");
	msgpack_sbuffer_destroy(&sb);
}

Test(frame, framer_several_frames_in_one_feed)
{
	msgpack_sbuffer sb;
	struct proto_framer fr;
	struct hive_frame f, d;
	struct proto_err err;
	const char *body;
	size_t blen;

	msgpack_sbuffer_init(&sb);
	proto_framer_init(&fr);
	memset(&f, 0, sizeof(f));
	f.type = HIVE_FRAME_HEARTBEAT;
	for (unsigned i = 0; i < 5; i++) {
		f.u.heartbeat.done = i;
		cr_assert_eq(proto_encode_frame(&sb, &f, &err), 0);
	}
	/* five frames and half of a sixth */
	cr_assert_eq(proto_encode_frame(&sb, &f, &err), 0);
	cr_assert_eq(proto_framer_feed(&fr, sb.data, sb.size - 3), 0);
	for (unsigned i = 0; i < 5; i++) {
		cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), 1);
		cr_assert_eq(proto_decode_frame(body, blen, &d, &err), 0);
		cr_assert_eq(d.u.heartbeat.done, i);
		proto_frame_clear(&d);
	}
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), 0);
	cr_assert_eq(proto_framer_feed(&fr, sb.data + sb.size - 3, 3), 0);
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), 1);
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), 0);
	cr_assert_eq(proto_framer_feed(&fr, "", 0), 0);
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), 0);
	proto_framer_free(&fr);
	proto_framer_free(&fr);         /* twice is fine */
	msgpack_sbuffer_destroy(&sb);
}

Test(frame, framer_bad_lengths)
{
	struct proto_framer fr;
	struct proto_err err;
	const char *body;
	size_t blen;
	unsigned char big[4] = { (HIVE_FRAME_MAX + 1) >> 24,
		((HIVE_FRAME_MAX + 1) >> 16) & 0xff,
		((HIVE_FRAME_MAX + 1) >> 8) & 0xff, (HIVE_FRAME_MAX + 1) & 0xff };

	proto_framer_init(&fr);
	cr_assert_eq(proto_framer_feed(&fr, "\0\0", 2), 0);
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), 0,
	    "half a header is no frame yet");
	cr_assert_eq(proto_framer_feed(&fr, "\0\0", 2), 0);
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), -1);
	cr_assert_eq(err.code, PROTO_E_MALFORMED);
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), -1,
	    "the error stays");
	proto_framer_free(&fr);

	proto_framer_init(&fr);
	cr_assert_eq(proto_framer_feed(&fr, big, 4), 0);
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TOOBIG);
	proto_framer_free(&fr);

	proto_framer_init(&fr);
	cr_assert_eq(proto_framer_feed(&fr, "\xff\xff\xff\xff", 4), 0);
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TOOBIG);
	proto_framer_free(&fr);
}

/* A body of exactly HIVE_FRAME_MAX is a frame; the decoder takes a body
 * that size too (it is not a valid message, but not too big). */
Test(frame, framer_max_length)
{
	struct proto_framer fr;
	struct proto_err err;
	const char *body;
	size_t blen;
	unsigned char hdr[4] = { HIVE_FRAME_MAX >> 24,
		(HIVE_FRAME_MAX >> 16) & 0xff, (HIVE_FRAME_MAX >> 8) & 0xff,
		HIVE_FRAME_MAX & 0xff };
	char *zeros = calloc(1, HIVE_FRAME_MAX);

	proto_framer_init(&fr);
	cr_assert_eq(proto_framer_feed(&fr, hdr, 4), 0);
	cr_assert_eq(proto_framer_feed(&fr, zeros, HIVE_FRAME_MAX - 1), 0);
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), 0);
	cr_assert_eq(proto_framer_feed(&fr, zeros, 1), 0);
	cr_assert_eq(proto_framer_next(&fr, &body, &blen, &err), 1);
	cr_assert_eq(blen, HIVE_FRAME_MAX);
	cr_assert_eq(pb_decode(PB_FRAME, body, blen, &err), -1);
	cr_assert_eq(err.code, PROTO_E_MALFORMED, "trailing bytes, not size");
	proto_framer_free(&fr);
	free(zeros);
}

Test(frame, frame_body_too_big)
{
	size_t n = HIVE_FRAME_MAX + 1;
	char *buf = calloc(1, n);
	struct proto_err err;

	cr_assert_eq(pb_decode(PB_FRAME, buf, n, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TOOBIG);
	free(buf);
}

Test(frame, hello_in_known_bytes)
{
	/* the exact bytes, so that a change of the wire form is noticed */
	static const char want[] =
	    "\x00\x00\x00\x26"
	    "\x85\xa1v\x01\xa1t\xa5hello\xa5" "agent\xa4" "echo"
	    "\xa8instance\x01\xa3pid\x2a";
	msgpack_sbuffer sb;
	struct hive_frame f;
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	memset(&f, 0, sizeof(f));
	f.type = HIVE_FRAME_HELLO;
	f.u.hello.agent = HIVE_STR("echo");
	f.u.hello.instance = 1;
	f.u.hello.pid = 42;
	cr_assert_eq(proto_encode_frame(&sb, &f, &err), 0);
	cr_assert_eq(sb.size, sizeof(want) - 1, "size %zu", sb.size);
	cr_assert(memcmp(sb.data, want, sb.size) == 0);
	msgpack_sbuffer_destroy(&sb);
}
