/*
 * test_codec.c - the messages of the Redis streams: a round trip of each
 * (every field set, and the minimum), and every malformed field rejected
 * with the right error code and field name.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "pbuild.h"
#include "proto_int.h"

/* A map {"k": "v", "n": [1, -2, 1.5, true, nil, bin "\x00\xff"]} built
 * by hand, to put in payload/result/memory. */
static void
sample_value(msgpack_sbuffer *sb)
{
	pb_hex(sb, "82 a1 6b a1 76 a1 6e 96 01 fe cb 3f f8 00 00 00 00 00 00"
	    " c3 c0 c4 02 00 ff");
}

static void
assert_sample(const msgpack_object *o)
{
	msgpack_sbuffer want, got;
	msgpack_packer pk;

	msgpack_sbuffer_init(&want);
	msgpack_sbuffer_init(&got);
	sample_value(&want);
	msgpack_packer_init(&pk, &got, msgpack_sbuffer_write);
	msgpack_pack_object(&pk, *o);
	cr_assert_eq(got.size, want.size, "value re-encodes to %zu bytes, "
	    "want %zu", got.size, want.size);
	cr_assert(memcmp(got.data, want.data, got.size) == 0,
	    "value changed in the round trip");
	msgpack_sbuffer_destroy(&want);
	msgpack_sbuffer_destroy(&got);
}

/* ---- round trips ---- */

Test(codec, task_round_trip_all_fields)
{
	msgpack_sbuffer sb, vb, sb2;
	msgpack_unpacked val;
	struct hive_task t = { 0 }, d;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&sb2);
	msgpack_sbuffer_init(&vb);
	sample_value(&vb);
	cr_assert_eq(proto_decode_value(vb.data, vb.size, &val, &err), 0);
	t.id = HIVE_STR("task-0001");
	t.payload = val.data;
	t.attempt = 3;
	t.max_attempts = 5;
	t.timeout_ms = 60000;
	t.created_ms = 1700000000123ull;
	t.reply_to = HIVE_STR("hive:reply:client-7");
	t.workflow = HIVE_STR("wf-9");
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0, "%s", err.detail);
	cr_assert_eq(proto_decode_task(sb.data, sb.size, &d, &err), 0,
	    "%s: %s", err.field, err.detail);
	cr_assert_eq(d.v, 1);
	pb_assert_str(d.id, "task-0001", "id");
	assert_sample(&d.payload);
	cr_assert_eq(d.attempt, 3);
	cr_assert_eq(d.max_attempts, 5);
	cr_assert_eq(d.timeout_ms, 60000);
	cr_assert_eq(d.created_ms, 1700000000123ull);
	pb_assert_str(d.reply_to, "hive:reply:client-7", "reply_to");
	pb_assert_str(d.workflow, "wf-9", "workflow");
	/* strings borrow from the input buffer */
	cr_assert(d.id.ptr >= sb.data && d.id.ptr < sb.data + sb.size);
	/* re-encoding what was decoded gives the same bytes */
	cr_assert_eq(proto_encode_task(&sb2, &d, &err), 0);
	cr_assert_eq(sb2.size, sb.size);
	cr_assert(memcmp(sb.data, sb2.data, sb.size) == 0);
	proto_task_clear(&d);
	proto_task_clear(&d);   /* twice is fine */
	msgpack_unpacked_destroy(&val);
	msgpack_sbuffer_destroy(&vb);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&sb2);
}

Test(codec, task_minimal_and_defaults)
{
	msgpack_sbuffer sb;
	struct hive_task t = { 0 }, d;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	t.id = HIVE_STR("x");
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	/* {"v": 1, "id": "x"}: nothing but the required fields */
	cr_assert_eq(sb.size, 9);
	cr_assert(memcmp(sb.data, "\x82\xa1v\x01\xa2id\xa1x", 9) == 0);
	cr_assert_eq(proto_decode_task(sb.data, sb.size, &d, &err), 0);
	pb_assert_str(d.id, "x", "id");
	cr_assert_eq(d.payload.type, MSGPACK_OBJECT_NIL);
	cr_assert_eq(d.attempt, 1, "attempt defaults to 1");
	cr_assert_eq(d.max_attempts, 0);
	cr_assert_eq(d.timeout_ms, 0);
	cr_assert_eq(d.created_ms, 0);
	cr_assert_eq(d.reply_to.len, 0);
	cr_assert_eq(d.workflow.len, 0);
	cr_assert_eq(d.parents.type, MSGPACK_OBJECT_NIL);
	proto_task_clear(&d);
	msgpack_sbuffer_destroy(&sb);
}

Test(codec, result_round_trip_all_fields)
{
	msgpack_sbuffer sb, vb, mb, sb2;
	msgpack_unpacked val, mem;
	struct hive_result r = { 0 }, d;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&sb2);
	msgpack_sbuffer_init(&vb);
	msgpack_sbuffer_init(&mb);
	sample_value(&vb);
	pb_json(&mb, "{\"seen\": 3, \"notes\": [\"a\", \"b\"]}");
	cr_assert_eq(proto_decode_value(vb.data, vb.size, &val, &err), 0);
	cr_assert_eq(proto_decode_value(mb.data, mb.size, &mem, &err), 0);
	r.id = HIVE_STR("task-0001");
	r.agent = HIVE_STR("reviewer/2");
	r.host = HIVE_STR("node-1.example.org");
	r.status = HIVE_STATUS_ERROR;
	r.result = val.data;
	r.error = HIVE_STR("handler exited 3: caf\xc3\xa9");
	r.attempt = 2;
	r.started_ms = 1700000000000ull;
	r.finished_ms = 1700000000456ull;
	r.memory = mem.data;
	r.memory_v = 42;
	r.workflow = HIVE_STR("wf-9");
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0, "%s %s",
	    err.field, err.detail);
	cr_assert_eq(proto_decode_result(sb.data, sb.size, &d, &err), 0,
	    "%s: %s", err.field, err.detail);
	pb_assert_str(d.id, "task-0001", "id");
	pb_assert_str(d.agent, "reviewer/2", "agent");
	pb_assert_str(d.host, "node-1.example.org", "host");
	cr_assert_eq(d.status, HIVE_STATUS_ERROR);
	assert_sample(&d.result);
	pb_assert_str(d.error, "handler exited 3: caf\xc3\xa9", "error");
	cr_assert_eq(d.attempt, 2);
	cr_assert_eq(d.started_ms, 1700000000000ull);
	cr_assert_eq(d.finished_ms, 1700000000456ull);
	cr_assert_eq(d.memory.type, MSGPACK_OBJECT_MAP);
	cr_assert_eq(d.memory.via.map.size, 2);
	cr_assert_eq(d.memory_v, 42);
	pb_assert_str(d.workflow, "wf-9", "workflow");
	cr_assert_eq(proto_encode_result(&sb2, &d, &err), 0);
	cr_assert_eq(sb2.size, sb.size);
	cr_assert(memcmp(sb.data, sb2.data, sb.size) == 0);
	proto_result_clear(&d);
	msgpack_unpacked_destroy(&val);
	msgpack_unpacked_destroy(&mem);
	msgpack_sbuffer_destroy(&vb);
	msgpack_sbuffer_destroy(&mb);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&sb2);
}

Test(codec, result_minimal)
{
	msgpack_sbuffer sb;
	struct hive_result r = { 0 }, d;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	r.id = HIVE_STR("t");
	r.agent = HIVE_STR("echo/1");
	r.host = HIVE_STR("h");
	r.status = HIVE_STATUS_OK;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0, "%s", err.detail);
	cr_assert_eq(proto_decode_result(sb.data, sb.size, &d, &err), 0);
	pb_assert_str(d.id, "t", "id");
	pb_assert_str(d.agent, "echo/1", "agent");
	cr_assert_eq(d.status, HIVE_STATUS_OK);
	cr_assert_eq(d.result.type, MSGPACK_OBJECT_NIL);
	cr_assert_eq(d.memory.type, MSGPACK_OBJECT_NIL);
	cr_assert_eq(d.memory_v, 0);
	cr_assert_eq(d.attempt, 1);
	cr_assert_eq(d.error.len, 0);
	proto_result_clear(&d);
	msgpack_sbuffer_destroy(&sb);
}

Test(codec, event_round_trip)
{
	msgpack_sbuffer sb;
	struct hive_event e = { 0 }, d;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	e.kind = HIVE_STR("agent.crashed");
	e.ts_ms = 1700000000999ull;
	e.host = HIVE_STR("node-1");
	e.agent = HIVE_STR("reviewer/2");
	e.task = HIVE_STR("task-7");
	e.pid = 4242;
	e.attempt = 2;
	e.reason = HIVE_STR("killed by signal 9");
	e.workflow = HIVE_STR("wf-3");
	cr_assert_eq(proto_encode_event(&sb, &e, &err), 0, "%s", err.detail);
	cr_assert_eq(proto_decode_event(sb.data, sb.size, &d, &err), 0);
	pb_assert_str(d.kind, "agent.crashed", "kind");
	cr_assert_eq(d.ts_ms, 1700000000999ull);
	pb_assert_str(d.host, "node-1", "host");
	pb_assert_str(d.agent, "reviewer/2", "agent");
	pb_assert_str(d.task, "task-7", "task");
	cr_assert_eq(d.pid, 4242);
	cr_assert_eq(d.attempt, 2);
	pb_assert_str(d.reason, "killed by signal 9", "reason");
	pb_assert_str(d.workflow, "wf-3", "workflow");
	proto_event_clear(&d);

	/* minimal: kind, ts_ms (even 0) and host */
	memset(&e, 0, sizeof(e));
	e.kind = HIVE_STR("hive.started");
	e.host = HIVE_STR("h");
	msgpack_sbuffer_clear(&sb);
	cr_assert_eq(proto_encode_event(&sb, &e, &err), 0);
	cr_assert_eq(proto_decode_event(sb.data, sb.size, &d, &err), 0);
	cr_assert_eq(d.ts_ms, 0);
	cr_assert_eq(d.pid, 0);
	cr_assert_eq(d.agent.len, 0);
	cr_assert_eq(d.workflow.len, 0);
	proto_event_clear(&d);
	msgpack_sbuffer_destroy(&sb);
}

Test(codec, dead_round_trip)
{
	msgpack_sbuffer sb;
	struct hive_dead m = { 0 }, d;
	struct proto_err err = { 0 };
	static const char raw[] = "\x81\xa1v\x02\x00\xff";

	msgpack_sbuffer_init(&sb);
	m.id = HIVE_STR("task-7");
	m.reason = HIVE_STR("field 'v': unsupported version (2)");
	m.stream = HIVE_STR("hive:q:echo:1");
	m.entry = HIVE_STR("1700000000000-0");
	m.agent = HIVE_STR("echo/1");
	m.attempt = 3;
	m.ts_ms = 1700000001000ull;
	m.raw = (struct hive_str){ raw, sizeof(raw) - 1 };
	cr_assert_eq(proto_encode_dead(&sb, &m, &err), 0, "%s", err.detail);
	cr_assert_eq(proto_decode_dead(sb.data, sb.size, &d, &err), 0);
	pb_assert_str(d.id, "task-7", "id");
	pb_assert_str(d.reason, "field 'v': unsupported version (2)", "reason");
	pb_assert_str(d.stream, "hive:q:echo:1", "stream");
	pb_assert_str(d.entry, "1700000000000-0", "entry");
	pb_assert_str(d.agent, "echo/1", "agent");
	cr_assert_eq(d.attempt, 3);
	cr_assert_eq(d.ts_ms, 1700000001000ull);
	cr_assert_eq(d.raw.len, sizeof(raw) - 1);
	cr_assert(memcmp(d.raw.ptr, raw, d.raw.len) == 0);
	proto_dead_clear(&d);

	memset(&m, 0, sizeof(m));
	m.reason = HIVE_STR("not msgpack");
	msgpack_sbuffer_clear(&sb);
	cr_assert_eq(proto_encode_dead(&sb, &m, &err), 0);
	cr_assert_eq(proto_decode_dead(sb.data, sb.size, &d, &err), 0);
	cr_assert_eq(d.id.len, 0);
	cr_assert_eq(d.raw.len, 0);
	proto_dead_clear(&d);
	msgpack_sbuffer_destroy(&sb);
}

/* The code and the workflow of a dead letter, and a failed result's
 * code, go out and come back; absent they stay absent. */
Test(codec, dead_and_result_codes_round_trip)
{
	msgpack_sbuffer sb;
	struct hive_dead m = { 0 }, d;
	struct hive_result r = { 0 }, rd;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	m.reason = HIVE_STR("workflow wf-1: task a exists already");
	m.code = HIVE_CODE_REFUSED;
	m.workflow = HIVE_STR("wf-1");
	m.ts_ms = 5;
	cr_assert_eq(proto_encode_dead(&sb, &m, &err), 0, "%s", err.detail);
	cr_assert_eq(proto_decode_dead(sb.data, sb.size, &d, &err), 0);
	cr_assert_eq(d.code, HIVE_CODE_REFUSED);
	pb_assert_str(d.workflow, "wf-1", "workflow");
	cr_assert_eq(d.id.len, 0);
	proto_dead_clear(&d);

	m.code = HIVE_CODE_NONE;
	m.workflow = HIVE_STR("");
	msgpack_sbuffer_clear(&sb);
	cr_assert_eq(proto_encode_dead(&sb, &m, &err), 0);
	cr_assert_eq(proto_decode_dead(sb.data, sb.size, &d, &err), 0);
	cr_assert_eq(d.code, HIVE_CODE_NONE);
	cr_assert_eq(d.workflow.len, 0);
	proto_dead_clear(&d);
	m.code = (enum hive_code)(HIVE_CODE_LAST + 1);
	cr_assert_eq(proto_encode_dead(&sb, &m, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.field, "code");

	r.id = HIVE_STR("t1");
	r.agent = HIVE_STR("echo/1");
	r.host = HIVE_STR("h");
	r.status = HIVE_STATUS_ERROR;
	r.error = HIVE_STR("timed out after 100 ms");
	r.code = HIVE_CODE_TIMEOUT;
	msgpack_sbuffer_clear(&sb);
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0, "%s", err.detail);
	cr_assert_eq(proto_decode_result(sb.data, sb.size, &rd, &err), 0);
	cr_assert_eq(rd.code, HIVE_CODE_TIMEOUT);
	proto_result_clear(&rd);
	r.status = HIVE_STATUS_OK;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), -1,
	    "a code with status ok");
	cr_assert_str_eq(err.field, "code");
	msgpack_sbuffer_destroy(&sb);
}

/* The codes' names: the decoder's first, then the outcomes. */
Test(codec, code_names)
{
	for (int c = PROTO_E_MALFORMED; c <= PROTO_E_DUPLICATE; c++)
		cr_assert_str_eq(proto_code_name((enum hive_code)c),
		    proto_errcode_name((enum proto_errcode)c));
	cr_assert_str_eq(proto_code_name(HIVE_CODE_ATTEMPTS), "attempts");
	cr_assert_str_eq(proto_code_name(HIVE_CODE_REFUSED), "refused");
	cr_assert_str_eq(proto_code_name(HIVE_CODE_NONE), "");
	cr_assert_str_eq(proto_code_name((enum hive_code)99), "");
}

/* A message that does not decode still names its id when that much is
 * sound; otherwise none. */
Test(codec, peek_id)
{
	static const struct {
		const char *json, *hex, *id;
	} cases[] = {
		{ "{\"v\": 2, \"id\": \"job-9\", \"payload\": 1}", NULL,
		  "job-9" },
		{ "{\"v\": 1, \"id\": \"job-9\", \"attempt\": 0}", NULL,
		  "job-9" },
		{ "{\"v\": 1, \"id\": \"wf-1\", \"tasks\": []}", NULL,
		  "wf-1" },
		{ NULL, "82 a2 69 64 a1 61 a2 69 64 a1 62", NULL }, /* twice */
		{ "{\"id\": \"a b\"}", NULL, NULL },
		{ "{\"id\": 7}", NULL, NULL },
		{ "{\"v\": 1}", NULL, NULL },
		{ "[\"id\", \"a\"]", NULL, NULL },
		{ NULL, "82 a2 69 64 a1 61", NULL },          /* truncated */
		{ NULL, "81 a2 69 64 a1 61 c0", NULL },       /* trailing */
		{ NULL, "82 01 02 a2 69 64 a1 61", "a" },     /* int key */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		msgpack_sbuffer sb;
		struct hive_str id = { "x", 1 };
		int rc;

		msgpack_sbuffer_init(&sb);
		if (cases[i].json != NULL)
			pb_json(&sb, cases[i].json);
		else
			pb_hex(&sb, cases[i].hex);
		rc = proto_peek_id(sb.data, sb.size, &id);
		if (cases[i].id == NULL) {
			cr_assert_eq(rc, -1, "case %zu", i);
			cr_assert_eq(id.len, 0, "case %zu", i);
		} else {
			cr_assert_eq(rc, 0, "case %zu", i);
			pb_assert_str(id, cases[i].id, "id");
		}
		msgpack_sbuffer_destroy(&sb);
	}
}

Test(codec, unknown_keys_ignored_nil_is_absent)
{
	msgpack_sbuffer sb;
	struct hive_task d;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	pb_json(&sb, "{\"v\": 1, \"id\": \"a\", \"future\": {\"x\": [1]}, "
	    "\"reply_to\": null, \"attempt\": null, \"payload\": null}");
	cr_assert_eq(proto_decode_task(sb.data, sb.size, &d, &err), 0,
	    "%s %s", err.field, err.detail);
	cr_assert_eq(d.reply_to.len, 0);
	cr_assert_eq(d.attempt, 1);
	proto_task_clear(&d);
	msgpack_sbuffer_destroy(&sb);
}

Test(codec, clear_accepts_zeroed)
{
	struct hive_task t = { 0 };
	struct hive_result r = { 0 };
	struct hive_event e = { 0 };
	struct hive_dead d = { 0 };
	struct hive_frame f = { 0 };
	struct hive_workflow w = { 0 };

	proto_workflow_clear(&w);
	proto_workflow_clear(NULL);
	proto_task_clear(&t);
	proto_result_clear(&r);
	proto_event_clear(&e);
	proto_dead_clear(&d);
	proto_frame_clear(&f);
	proto_task_clear(NULL);
}

/* ---- every malformed field ---- */

struct bad_case {
	enum pb_kind kind;
	const char *json;       /* the message, or NULL and hex */
	const char *hex;
	enum proto_errcode code;
	const char *field;
};

#define T_(j) "{\"v\": 1, \"id\": \"t1\"" j "}"
#define R_(j) "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", " \
	"\"host\": \"h\", \"status\": \"ok\"" j "}"
#define E_(j) "{\"v\": 1, \"kind\": \"task.started\", \"ts_ms\": 5, " \
	"\"host\": \"h\"" j "}"
#define D_(j) "{\"v\": 1, \"reason\": \"r\", \"ts_ms\": 5" j "}"
#define H_(j) "{\"v\": 1, \"t\": \"hello\", \"agent\": \"echo\", " \
	"\"instance\": 1, \"pid\": 42" j "}"
/* a workflow whose tasks are j; W1_ one task {"id": "a", "capability":
 * "c"} with more fields j */
#define W_(j) "{\"v\": 1, \"id\": \"w\", \"tasks\": [" j "]}"
#define W1_(j) W_("{\"id\": \"a\", \"capability\": \"c\"" j "}")

static const struct bad_case bad_cases[] = {
	/* the whole message */
	{ PB_TASK, NULL, "", PROTO_E_MALFORMED, "" },
	{ PB_TASK, "[1, 2]", NULL, PROTO_E_NOTMAP, "" },
	{ PB_TASK, "\"v\"", NULL, PROTO_E_NOTMAP, "" },
	{ PB_TASK, NULL, "82 a1 76 01 01 02", PROTO_E_NOTMAP, "" },
	{ PB_TASK, NULL, "83 a1 76 01 a2 69 64 a1 61 a2 69 64 a1 62",
	  PROTO_E_DUPLICATE, "id" },
	{ PB_TASK, NULL, "83 a1 76 01 a1 76 01 a2 69 64 a1 61",
	  PROTO_E_DUPLICATE, "v" },
	{ PB_TASK, NULL, "82 a1 76 01 a2 69 64", PROTO_E_MALFORMED, "" },
	{ PB_TASK, NULL, "82 a1 76 01 a2 69 64 a1 61 c0", PROTO_E_MALFORMED,
	  "" },
	{ PB_TASK, NULL, "c1", PROTO_E_MALFORMED, "" },
	{ PB_TASK, NULL, "dd ff ff ff ff", PROTO_E_MALFORMED, "" },
	{ PB_TASK, NULL, "df ff ff ff ff", PROTO_E_MALFORMED, "" },
	{ PB_TASK, NULL, "82 a1 76 01 a2 69 64 db ff ff ff ff",
	  PROTO_E_MALFORMED, "" },
	{ PB_TASK, NULL, "82 a1 76 01 a2 69 64 c9 ff ff ff ff 01",
	  PROTO_E_MALFORMED, "" },
	{ PB_TASK, NULL, "82 a1 76 01 a2 69 64 d8 01", PROTO_E_MALFORMED, "" },
	{ PB_TASK, NULL, "82 a1 76 cf 00 00", PROTO_E_MALFORMED, "" },
	/* v */
	{ PB_TASK, "{\"id\": \"a\"}", NULL, PROTO_E_MISSING, "v" },
	{ PB_TASK, "{\"v\": null, \"id\": \"a\"}", NULL, PROTO_E_MISSING, "v" },
	{ PB_TASK, "{\"v\": 2, \"id\": \"a\"}", NULL, PROTO_E_VERSION, "v" },
	{ PB_TASK, "{\"v\": 0, \"id\": \"a\"}", NULL, PROTO_E_VERSION, "v" },
	{ PB_TASK, "{\"v\": -1, \"id\": \"a\"}", NULL, PROTO_E_VERSION, "v" },
	{ PB_TASK, "{\"v\": \"1\", \"id\": \"a\"}", NULL, PROTO_E_TYPE, "v" },
	{ PB_TASK, "{\"v\": 2, \"id\": 5}", NULL, PROTO_E_VERSION, "v" },
	/* task */
	{ PB_TASK, "{\"v\": 1}", NULL, PROTO_E_MISSING, "id" },
	{ PB_TASK, "{\"v\": 1, \"id\": null}", NULL, PROTO_E_MISSING, "id" },
	{ PB_TASK, "{\"v\": 1, \"id\": 5}", NULL, PROTO_E_TYPE, "id" },
	{ PB_TASK, NULL, "82 a1 76 01 a2 69 64 c4 01 61", PROTO_E_TYPE, "id" },
	{ PB_TASK, "{\"v\": 1, \"id\": \"\"}", NULL, PROTO_E_SIZE, "id" },
	{ PB_TASK, "{\"v\": 1, \"id\": \"~129~\"}", NULL, PROTO_E_SIZE, "id" },
	{ PB_TASK, "{\"v\": 1, \"id\": \"~128~\"}", NULL, PROTO_OK, "" },
	{ PB_TASK, "{\"v\": 1, \"id\": \"a b\"}", NULL, PROTO_E_VALUE, "id" },
	{ PB_TASK, "{\"v\": 1, \"id\": \"caf\\u00e9\"}", NULL, PROTO_E_VALUE,
	  "id" },
	{ PB_TASK, "{\"v\": 1, \"id\": \"a\\u0000\"}", NULL, PROTO_E_VALUE,
	  "id" },
	{ PB_TASK, T_(", \"payload\": ~d31~"), NULL, PROTO_OK, "" },
	{ PB_TASK, T_(", \"attempt\": 0"), NULL, PROTO_E_SIZE, "attempt" },
	{ PB_TASK, T_(", \"attempt\": 1001"), NULL, PROTO_E_SIZE, "attempt" },
	{ PB_TASK, T_(", \"attempt\": 1000"), NULL, PROTO_OK, "" },
	{ PB_TASK, T_(", \"attempt\": -1"), NULL, PROTO_E_SIZE, "attempt" },
	{ PB_TASK, T_(", \"attempt\": 1.0"), NULL, PROTO_E_TYPE, "attempt" },
	{ PB_TASK, T_(", \"attempt\": \"1\""), NULL, PROTO_E_TYPE, "attempt" },
	{ PB_TASK, T_(", \"max_attempts\": 1001"), NULL, PROTO_E_SIZE,
	  "max_attempts" },
	{ PB_TASK, T_(", \"max_attempts\": []"), NULL, PROTO_E_TYPE,
	  "max_attempts" },
	{ PB_TASK, T_(", \"timeout_ms\": 604800001"), NULL, PROTO_E_SIZE,
	  "timeout_ms" },
	{ PB_TASK, T_(", \"timeout_ms\": 604800000"), NULL, PROTO_OK, "" },
	{ PB_TASK, T_(", \"created_ms\": -5"), NULL, PROTO_E_SIZE,
	  "created_ms" },
	{ PB_TASK, T_(", \"created_ms\": true"), NULL, PROTO_E_TYPE,
	  "created_ms" },
	{ PB_TASK, T_(", \"reply_to\": \"x:y\""), NULL, PROTO_E_VALUE,
	  "reply_to" },
	{ PB_TASK, T_(", \"reply_to\": \"hive:reply:\""), NULL, PROTO_E_VALUE,
	  "reply_to" },
	{ PB_TASK, T_(", \"reply_to\": \"hive:reply:a b\""), NULL,
	  PROTO_E_VALUE, "reply_to" },
	{ PB_TASK, T_(", \"reply_to\": \"hive:reply:~246~\""), NULL,
	  PROTO_E_SIZE, "reply_to" },
	{ PB_TASK, T_(", \"reply_to\": \"hive:reply:~245~\""), NULL,
	  PROTO_OK, "" },
	{ PB_TASK, T_(", \"reply_to\": \"\""), NULL, PROTO_E_SIZE,
	  "reply_to" },
	{ PB_TASK, T_(", \"reply_to\": 7"), NULL, PROTO_E_TYPE, "reply_to" },
	{ PB_TASK, T_(", \"workflow\": \"a\\tb\""), NULL, PROTO_E_VALUE,
	  "workflow" },
	{ PB_TASK, T_(", \"workflow\": \"~129~\""), NULL, PROTO_E_SIZE,
	  "workflow" },
	{ PB_TASK, T_(", \"payload\": \"~1048576~\""), NULL, PROTO_E_TOOBIG,
	  "" },
	/* task.parents */
	{ PB_TASK, T_(", \"parents\": {\"a\": 1, \"b\": null, \"c\": [1]}"),
	  NULL, PROTO_OK, "" },
	{ PB_TASK, T_(", \"parents\": {}"), NULL, PROTO_OK, "" },
	{ PB_TASK, T_(", \"parents\": null"), NULL, PROTO_OK, "" },
	{ PB_TASK, T_(", \"parents\": {\"~128~\": 1}"), NULL, PROTO_OK, "" },
	{ PB_TASK, T_(", \"parents\": [\"a\"]"), NULL, PROTO_E_TYPE,
	  "parents" },
	{ PB_TASK, T_(", \"parents\": \"a\""), NULL, PROTO_E_TYPE,
	  "parents" },
	{ PB_TASK, T_(", \"parents\": {\"a b\": 1}"), NULL, PROTO_E_VALUE,
	  "parents" },
	{ PB_TASK, T_(", \"parents\": {\"\": 1}"), NULL, PROTO_E_SIZE,
	  "parents" },
	{ PB_TASK, T_(", \"parents\": {\"~129~\": 1}"), NULL, PROTO_E_SIZE,
	  "parents" },
	{ PB_TASK, T_(", \"parents\": {\"caf\\u00e9\": 1}"), NULL,
	  PROTO_E_VALUE, "parents" },
	/* {"v":1,"id":"a","parents":{1: 2}}: a key that is no str */
	{ PB_TASK, NULL, "83 a1 76 01 a2 69 64 a1 61 a7 70 61 72 65 6e 74 73"
	  " 81 01 02", PROTO_E_TYPE, "parents" },
	/* {"v":1,"id":"a","parents":{"x": 1, "x": 2}} */
	{ PB_TASK, NULL, "83 a1 76 01 a2 69 64 a1 61 a7 70 61 72 65 6e 74 73"
	  " 82 a1 78 01 a1 78 02", PROTO_E_DUPLICATE, "parents" },
	/* result */
	{ PB_RESULT, R_(""), NULL, PROTO_OK, "" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"host\": \"h\", "
	  "\"status\": \"ok\"}", NULL, PROTO_E_MISSING, "agent" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"Echo Bot\", "
	  "\"host\": \"h\", \"status\": \"ok\"}", NULL, PROTO_E_VALUE, "agent" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/0\", "
	  "\"host\": \"h\", \"status\": \"ok\"}", NULL, PROTO_E_VALUE, "agent" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/10000\", "
	  "\"host\": \"h\", \"status\": \"ok\"}", NULL, PROTO_E_VALUE, "agent" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/01\", "
	  "\"host\": \"h\", \"status\": \"ok\"}", NULL, PROTO_E_VALUE, "agent" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/\", "
	  "\"host\": \"h\", \"status\": \"ok\"}", NULL, PROTO_E_VALUE, "agent" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"/1\", "
	  "\"host\": \"h\", \"status\": \"ok\"}", NULL, PROTO_E_VALUE, "agent" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"-x/1\", "
	  "\"host\": \"h\", \"status\": \"ok\"}", NULL, PROTO_E_VALUE, "agent" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"~81~\", "
	  "\"host\": \"h\", \"status\": \"ok\"}", NULL, PROTO_E_SIZE, "agent" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"~64~/9999\", "
	  "\"host\": \"h\", \"status\": \"ok\"}", NULL, PROTO_OK, "" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", "
	  "\"status\": \"ok\"}", NULL, PROTO_E_MISSING, "host" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", "
	  "\"host\": \"~256~\", \"status\": \"ok\"}", NULL, PROTO_E_SIZE, "host" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", "
	  "\"host\": \"a b\", \"status\": \"ok\"}", NULL, PROTO_E_VALUE, "host" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", "
	  "\"host\": \"h\"}", NULL, PROTO_E_MISSING, "status" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", "
	  "\"host\": \"h\", \"status\": \"maybe\"}", NULL, PROTO_E_VALUE,
	  "status" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", "
	  "\"host\": \"h\", \"status\": 0}", NULL, PROTO_E_TYPE, "status" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", "
	  "\"host\": \"h\", \"status\": \"error\"}", NULL, PROTO_E_MISSING,
	  "error" },
	{ PB_RESULT, R_(", \"error\": \"~4097~\""), NULL, PROTO_E_SIZE,
	  "error" },
	{ PB_RESULT, R_(", \"error\": \"~4096~\""), NULL, PROTO_OK, "" },
	{ PB_RESULT, R_(", \"error\": \"nul\\u0000\""), NULL, PROTO_E_VALUE,
	  "error" },
	{ PB_RESULT, NULL, "86 a1 76 01 a2 69 64 a1 74 a5 61 67 65 6e 74"
	  " a6 65 63 68 6f 2f 31 a4 68 6f 73 74 a1 68 a6 73 74 61 74 75 73"
	  " a2 6f 6b a5 65 72 72 6f 72 a2 c3 28", PROTO_E_VALUE, "error" },
	{ PB_RESULT, R_(", \"error\": 5"), NULL, PROTO_E_TYPE, "error" },
	{ PB_RESULT, R_(", \"memory\": [], \"memory_v\": 1"), NULL,
	  PROTO_E_TYPE, "memory" },
	{ PB_RESULT, R_(", \"memory\": {}"), NULL, PROTO_E_MISSING,
	  "memory_v" },
	{ PB_RESULT, R_(", \"memory_v\": 3"), NULL, PROTO_E_MISSING,
	  "memory" },
	{ PB_RESULT, R_(", \"memory\": {}, \"memory_v\": -1"), NULL,
	  PROTO_E_SIZE, "memory_v" },
	{ PB_RESULT, R_(", \"memory\": {\"k\": \"~1048576~\"}, \"memory_v\": 1"),
	  NULL, PROTO_E_SIZE, "memory" },
	{ PB_RESULT, R_(", \"memory\": {\"k\": \"~1048000~\"}, \"memory_v\": 1"),
	  NULL, PROTO_OK, "" },
	{ PB_RESULT, R_(", \"result\": \"~3145728~\""), NULL, PROTO_E_TOOBIG,
	  "" },
	{ PB_RESULT, R_(", \"attempt\": 0"), NULL, PROTO_E_SIZE, "attempt" },
	{ PB_RESULT, R_(", \"started_ms\": \"x\""), NULL, PROTO_E_TYPE,
	  "started_ms" },
	{ PB_RESULT, R_(", \"finished_ms\": -1"), NULL, PROTO_E_SIZE,
	  "finished_ms" },
	{ PB_RESULT, R_(", \"workflow\": 1"), NULL, PROTO_E_TYPE, "workflow" },
	{ PB_RESULT, R_(", \"code\": \"timeout\""), NULL, PROTO_E_VALUE,
	  "code" },              /* a code only on a failure */
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", "
	  "\"host\": \"h\", \"status\": \"error\", \"error\": \"e\", "
	  "\"code\": \"timeout\"}", NULL, PROTO_OK, "" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", "
	  "\"host\": \"h\", \"status\": \"error\", \"error\": \"e\", "
	  "\"code\": \"slow\"}", NULL, PROTO_E_VALUE, "code" },
	{ PB_RESULT, "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", "
	  "\"host\": \"h\", \"status\": \"error\", \"error\": \"e\", "
	  "\"code\": 3}", NULL, PROTO_E_TYPE, "code" },
	/* event */
	{ PB_EVENT, E_(""), NULL, PROTO_OK, "" },
	{ PB_EVENT, "{\"v\": 1, \"ts_ms\": 5, \"host\": \"h\"}", NULL,
	  PROTO_E_MISSING, "kind" },
	{ PB_EVENT, "{\"v\": 1, \"kind\": \"task started\", \"ts_ms\": 5, "
	  "\"host\": \"h\"}", NULL, PROTO_E_VALUE, "kind" },
	{ PB_EVENT, "{\"v\": 1, \"kind\": \"~65~\", \"ts_ms\": 5, "
	  "\"host\": \"h\"}", NULL, PROTO_E_SIZE, "kind" },
	{ PB_EVENT, "{\"v\": 1, \"kind\": \"k\", \"host\": \"h\"}", NULL,
	  PROTO_E_MISSING, "ts_ms" },
	{ PB_EVENT, "{\"v\": 1, \"kind\": \"k\", \"ts_ms\": -1, \"host\": "
	  "\"h\"}", NULL, PROTO_E_SIZE, "ts_ms" },
	{ PB_EVENT, "{\"v\": 1, \"kind\": \"k\", \"ts_ms\": 1}", NULL,
	  PROTO_E_MISSING, "host" },
	{ PB_EVENT, E_(", \"agent\": \"x/y\""), NULL, PROTO_E_VALUE, "agent" },
	{ PB_EVENT, E_(", \"agent\": \"echo\""), NULL, PROTO_OK, "" },
	{ PB_EVENT, E_(", \"task\": \"a b\""), NULL, PROTO_E_VALUE, "task" },
	{ PB_EVENT, E_(", \"pid\": -1"), NULL, PROTO_E_SIZE, "pid" },
	{ PB_EVENT, E_(", \"pid\": 2147483648"), NULL, PROTO_E_SIZE, "pid" },
	{ PB_EVENT, E_(", \"pid\": \"1\""), NULL, PROTO_E_TYPE, "pid" },
	{ PB_EVENT, E_(", \"attempt\": 1001"), NULL, PROTO_E_SIZE, "attempt" },
	{ PB_EVENT, E_(", \"reason\": \"~1025~\""), NULL, PROTO_E_SIZE,
	  "reason" },
	{ PB_EVENT, E_(", \"reason\": {}"), NULL, PROTO_E_TYPE, "reason" },
	{ PB_EVENT, E_(", \"workflow\": \"wf-1\""), NULL, PROTO_OK, "" },
	{ PB_EVENT, E_(", \"workflow\": \"\""), NULL, PROTO_E_SIZE,
	  "workflow" },
	{ PB_EVENT, E_(", \"workflow\": \"w f\""), NULL, PROTO_E_VALUE,
	  "workflow" },
	{ PB_EVENT, E_(", \"workflow\": \"~129~\""), NULL, PROTO_E_SIZE,
	  "workflow" },
	{ PB_EVENT, E_(", \"workflow\": 1"), NULL, PROTO_E_TYPE, "workflow" },
	/* workflow: the message */
	{ PB_WORKFLOW, W1_(""), NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, "{\"id\": \"w\", \"tasks\": [{\"id\": \"a\", "
	  "\"capability\": \"c\"}]}", NULL, PROTO_E_MISSING, "v" },
	{ PB_WORKFLOW, "{\"v\": 2, \"id\": \"w\", \"tasks\": 1}", NULL,
	  PROTO_E_VERSION, "v" },
	{ PB_WORKFLOW, "{\"v\": 1, \"tasks\": [{\"id\": \"a\", "
	  "\"capability\": \"c\"}]}", NULL, PROTO_E_MISSING, "id" },
	{ PB_WORKFLOW, "{\"v\": 1, \"id\": \"w w\", \"tasks\": [{\"id\": "
	  "\"a\", \"capability\": \"c\"}]}", NULL, PROTO_E_VALUE, "id" },
	{ PB_WORKFLOW, "{\"v\": 1, \"id\": \"w\"}", NULL, PROTO_E_MISSING,
	  "tasks" },
	{ PB_WORKFLOW, "{\"v\": 1, \"id\": \"w\", \"tasks\": null}", NULL,
	  PROTO_E_MISSING, "tasks" },
	{ PB_WORKFLOW, W_(""), NULL, PROTO_E_SIZE, "tasks" },
	{ PB_WORKFLOW, "{\"v\": 1, \"id\": \"w\", \"tasks\": {}}", NULL,
	  PROTO_E_TYPE, "tasks" },
	{ PB_WORKFLOW, W_("\"a\""), NULL, PROTO_E_TYPE, "tasks[0]" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"c\"}, null"),
	  NULL, PROTO_E_TYPE, "tasks[1]" },
	{ PB_WORKFLOW, "{\"v\": 1, \"id\": \"w\", \"name\": \"a b\", "
	  "\"tasks\": [{\"id\": \"a\", \"capability\": \"c\"}]}", NULL,
	  PROTO_E_VALUE, "name" },
	{ PB_WORKFLOW, "{\"v\": 1, \"id\": \"w\", \"name\": \"~65~\", "
	  "\"tasks\": [{\"id\": \"a\", \"capability\": \"c\"}]}", NULL,
	  PROTO_E_SIZE, "name" },
	{ PB_WORKFLOW, "{\"v\": 1, \"id\": \"w\", \"created_ms\": -1, "
	  "\"tasks\": [{\"id\": \"a\", \"capability\": \"c\"}]}", NULL,
	  PROTO_E_SIZE, "created_ms" },
	{ PB_WORKFLOW, "{\"v\": 1, \"id\": \"w\", \"future\": [1], "
	  "\"tasks\": [{\"id\": \"a\", \"capability\": \"c\", "
	  "\"future\": {}, \"prio\": null}]}", NULL, PROTO_OK, "" },
	/* workflow: a task's fields */
	{ PB_WORKFLOW, W_("{\"capability\": \"c\"}"), NULL, PROTO_E_MISSING,
	  "tasks[0].id" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\"}"), NULL, PROTO_E_MISSING,
	  "tasks[0].capability" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"c\"}, "
	  "{\"id\": \"b c\", \"capability\": \"c\"}"), NULL,
	  PROTO_E_VALUE, "tasks[1].id" },
	{ PB_WORKFLOW, W_("{\"id\": \"~129~\", \"capability\": \"c\"}"),
	  NULL, PROTO_E_SIZE, "tasks[0].id" },
	{ PB_WORKFLOW, W_("{\"id\": 7, \"capability\": \"c\"}"), NULL,
	  PROTO_E_TYPE, "tasks[0].id" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"@reviewer\"}"),
	  NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"~64~\"}"),
	  NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"@~64~\"}"),
	  NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"~65~\"}"),
	  NULL, PROTO_E_SIZE, "tasks[0].capability" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"@~65~\"}"),
	  NULL, PROTO_E_SIZE, "tasks[0].capability" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"\"}"), NULL,
	  PROTO_E_SIZE, "tasks[0].capability" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"@\"}"), NULL,
	  PROTO_E_VALUE, "tasks[0].capability" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"@@x\"}"), NULL,
	  PROTO_E_VALUE, "tasks[0].capability" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"code review\"}"),
	  NULL, PROTO_E_VALUE, "tasks[0].capability" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"-x\"}"), NULL,
	  PROTO_E_VALUE, "tasks[0].capability" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"x/1\"}"), NULL,
	  PROTO_E_VALUE, "tasks[0].capability" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": [\"c\"]}"), NULL,
	  PROTO_E_TYPE, "tasks[0].capability" },
	{ PB_WORKFLOW, W1_(", \"prio\": 0"), NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, W1_(", \"prio\": 2"), NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, W1_(", \"prio\": 3"), NULL, PROTO_E_SIZE,
	  "tasks[0].prio" },
	{ PB_WORKFLOW, W1_(", \"prio\": -1"), NULL, PROTO_E_SIZE,
	  "tasks[0].prio" },
	{ PB_WORKFLOW, W1_(", \"prio\": \"high\""), NULL, PROTO_E_TYPE,
	  "tasks[0].prio" },
	{ PB_WORKFLOW, W1_(", \"payload\": ~d29~"), NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, W1_(", \"payload\": \"~1048576~\""), NULL,
	  PROTO_E_SIZE, "tasks[0].payload" },
	{ PB_WORKFLOW, W1_(", \"max_attempts\": 1000"), NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, W1_(", \"max_attempts\": 1001"), NULL, PROTO_E_SIZE,
	  "tasks[0].max_attempts" },
	{ PB_WORKFLOW, W1_(", \"timeout_ms\": 604800000"), NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, W1_(", \"timeout_ms\": 604800001"), NULL, PROTO_E_SIZE,
	  "tasks[0].timeout_ms" },
	{ PB_WORKFLOW, W1_(", \"reply_to\": \"hive:reply:x\""), NULL, PROTO_OK,
	  "" },
	{ PB_WORKFLOW, W1_(", \"reply_to\": \"x:y\""), NULL, PROTO_E_VALUE,
	  "tasks[0].reply_to" },
	{ PB_WORKFLOW, W1_(", \"reply_to\": 1"), NULL, PROTO_E_TYPE,
	  "tasks[0].reply_to" },
	{ PB_WORKFLOW, W1_(", \"depends_on\": []"), NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, W1_(", \"depends_on\": null"), NULL, PROTO_OK, "" },
	{ PB_WORKFLOW, W1_(", \"depends_on\": \"b\""), NULL, PROTO_E_TYPE,
	  "tasks[0].depends_on" },
	{ PB_WORKFLOW, W1_(", \"depends_on\": {}"), NULL, PROTO_E_TYPE,
	  "tasks[0].depends_on" },
	{ PB_WORKFLOW, W1_(", \"depends_on\": [1]"), NULL, PROTO_E_TYPE,
	  "tasks[0].depends_on[0]" },
	{ PB_WORKFLOW, W1_(", \"depends_on\": [null]"), NULL, PROTO_E_TYPE,
	  "tasks[0].depends_on[0]" },
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"c\"}, "
	  "{\"id\": \"b\", \"capability\": \"c\", \"depends_on\": "
	  "[\"a\", \"\"]}"), NULL, PROTO_E_SIZE, "tasks[1].depends_on[1]" },
	{ PB_WORKFLOW, W1_(", \"depends_on\": [\"x y\"]"), NULL, PROTO_E_VALUE,
	  "tasks[0].depends_on[0]" },
	{ PB_WORKFLOW, W1_(", \"depends_on\": [\"~129~\"]"), NULL,
	  PROTO_E_SIZE, "tasks[0].depends_on[0]" },
	/* {"v":1,"id":"w","tasks":[{"id":"a","id":"b","capability":"c"}]} */
	{ PB_WORKFLOW, NULL, "83 a1 76 01 a2 69 64 a1 77 a5 74 61 73 6b 73 91"
	  " 83 a2 69 64 a1 61 a2 69 64 a1 62 aa 63 61 70 61 62 69 6c 69 74 79"
	  " a1 63", PROTO_E_DUPLICATE, "tasks[0].id" },
	/* {"v":1,"id":"w","tasks":[{"id":"a",1:2,"capability":"c"}]} */
	{ PB_WORKFLOW, NULL, "83 a1 76 01 a2 69 64 a1 77 a5 74 61 73 6b 73 91"
	  " 83 a2 69 64 a1 61 01 02 aa 63 61 70 61 62 69 6c 69 74 79 a1 63",
	  PROTO_E_NOTMAP, "tasks[0]" },
	/* {"v":1,"id":"w","tasks":[..],"tasks":[..]} */
	{ PB_WORKFLOW, NULL, "84 a1 76 01 a2 69 64 a1 77 a5 74 61 73 6b 73 90"
	  " a5 74 61 73 6b 73 90", PROTO_E_DUPLICATE, "tasks" },
	/* workflow: the graph */
	{ PB_WORKFLOW, W_("{\"id\": \"a\", \"capability\": \"c\"}, "
	  "{\"id\": \"a\", \"capability\": \"d\"}"), NULL, PROTO_E_VALUE,
	  "tasks" },
	{ PB_WORKFLOW, W1_(", \"depends_on\": [\"x\"]"), NULL, PROTO_E_VALUE,
	  "tasks" },
	{ PB_WORKFLOW, W1_(", \"depends_on\": [\"a\"]"), NULL, PROTO_E_VALUE,
	  "tasks" },
	/* dead */
	{ PB_DEAD, D_(""), NULL, PROTO_OK, "" },
	{ PB_DEAD, "{\"v\": 1, \"ts_ms\": 5}", NULL, PROTO_E_MISSING,
	  "reason" },
	{ PB_DEAD, "{\"v\": 1, \"reason\": \"\", \"ts_ms\": 5}", NULL,
	  PROTO_E_SIZE, "reason" },
	{ PB_DEAD, "{\"v\": 1, \"reason\": \"r\"}", NULL, PROTO_E_MISSING,
	  "ts_ms" },
	{ PB_DEAD, D_(", \"id\": \"a b\""), NULL, PROTO_E_VALUE, "id" },
	{ PB_DEAD, D_(", \"stream\": \"\""), NULL, PROTO_E_SIZE, "stream" },
	{ PB_DEAD, D_(", \"stream\": \"~257~\""), NULL, PROTO_E_SIZE,
	  "stream" },
	{ PB_DEAD, D_(", \"entry\": \"abc\""), NULL, PROTO_E_VALUE, "entry" },
	{ PB_DEAD, D_(", \"entry\": \"1-\""), NULL, PROTO_E_VALUE, "entry" },
	{ PB_DEAD, D_(", \"entry\": \"-1\""), NULL, PROTO_E_VALUE, "entry" },
	{ PB_DEAD, D_(", \"entry\": \"1-2-3\""), NULL, PROTO_E_VALUE, "entry" },
	{ PB_DEAD, D_(", \"entry\": \"~49~\""), NULL, PROTO_E_SIZE, "entry" },
	{ PB_DEAD, D_(", \"entry\": \"1700000000000-12\""), NULL, PROTO_OK,
	  "" },
	{ PB_DEAD, D_(", \"agent\": \"echo/1/2\""), NULL, PROTO_E_VALUE,
	  "agent" },
	{ PB_DEAD, D_(", \"attempt\": 1001"), NULL, PROTO_E_SIZE, "attempt" },
	{ PB_DEAD, D_(", \"raw\": 5"), NULL, PROTO_E_TYPE, "raw" },
	{ PB_DEAD, D_(", \"raw\": \"str is accepted\""), NULL, PROTO_OK, "" },
	{ PB_DEAD, D_(", \"code\": \"version\""), NULL, PROTO_OK, "" },
	{ PB_DEAD, D_(", \"code\": \"ok\""), NULL, PROTO_E_VALUE, "code" },
	{ PB_DEAD, D_(", \"code\": \"\""), NULL, PROTO_E_VALUE, "code" },
	{ PB_DEAD, D_(", \"workflow\": \"w 1\""), NULL, PROTO_E_VALUE,
	  "workflow" },
	/* frames */
	{ PB_FRAME, H_(""), NULL, PROTO_OK, "" },
	{ PB_FRAME, "{\"v\": 1, \"agent\": \"a\", \"instance\": 1, "
	  "\"pid\": 1}", NULL, PROTO_E_MISSING, "t" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"nope\"}", NULL, PROTO_E_VALUE, "t" },
	{ PB_FRAME, "{\"v\": 1, \"t\": 1}", NULL, PROTO_E_TYPE, "t" },
	{ PB_FRAME, "{\"v\": 2, \"t\": \"hello\"}", NULL, PROTO_E_VERSION,
	  "v" },
	{ PB_FRAME, "{\"t\": \"hello\"}", NULL, PROTO_E_MISSING, "v" },
	{ PB_FRAME, "[]", NULL, PROTO_E_NOTMAP, "" },
	{ PB_FRAME, NULL, "83 a1 76 01 a1 74 a5 68 65 6c 6c 6f a1 74 a5 68 65"
	  " 6c 6c 6f", PROTO_E_DUPLICATE, "t" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"hello\", \"instance\": 1, "
	  "\"pid\": 42}", NULL, PROTO_E_MISSING, "agent" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"hello\", \"agent\": \"echo/1\", "
	  "\"instance\": 1, \"pid\": 42}", NULL, PROTO_E_VALUE, "agent" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"hello\", \"agent\": \"~65~\", "
	  "\"instance\": 1, \"pid\": 42}", NULL, PROTO_E_SIZE, "agent" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"hello\", \"agent\": \"e\", "
	  "\"instance\": 0, \"pid\": 42}", NULL, PROTO_E_SIZE, "instance" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"hello\", \"agent\": \"e\", "
	  "\"instance\": 10000, \"pid\": 42}", NULL, PROTO_E_SIZE, "instance" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"hello\", \"agent\": \"e\", "
	  "\"instance\": 1}", NULL, PROTO_E_MISSING, "pid" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"hello\", \"agent\": \"e\", "
	  "\"instance\": 1, \"pid\": -3}", NULL, PROTO_E_SIZE, "pid" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"memory\", \"agent\": \"e\", "
	  "\"instance\": 1}", NULL, PROTO_E_MISSING, "memory_v" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"memory\", \"agent\": \"e\", "
	  "\"instance\": 1, \"memory_v\": 0}", NULL, PROTO_OK, "" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"memory\", \"agent\": \"e\", "
	  "\"instance\": 1, \"memory_v\": 0, \"memory\": {}}", NULL,
	  PROTO_E_VALUE, "memory_v" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"memory\", \"agent\": \"e\", "
	  "\"instance\": 1, \"memory_v\": 2}", NULL, PROTO_E_MISSING, "memory" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"memory\", \"agent\": \"e\", "
	  "\"instance\": 1, \"memory_v\": 2, \"memory\": [1]}", NULL,
	  PROTO_E_TYPE, "memory" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"memory\", \"agent\": \"e\", "
	  "\"instance\": 1, \"memory_v\": 2, \"memory\": {\"k\": "
	  "\"~1048576~\"}}", NULL, PROTO_E_SIZE, "memory" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"output\"}", NULL, PROTO_OK, "" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"output\", \"task\": \"job-1\", "
	  "\"text\": \"~4096~\", \"dropped\": 3}", NULL, PROTO_OK, "" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"output\", \"text\": \"~4097~\"}",
	  NULL, PROTO_E_SIZE, "text" },
	{ PB_FRAME, NULL, "83 a1 76 01 a1 74 a6 6f 75 74 70 75 74 a4 74 65 78 74"
	  " a2 61 ff", PROTO_E_VALUE, "text" },
	{ PB_FRAME, NULL, "83 a1 76 01 a1 74 a6 6f 75 74 70 75 74 a4 74 65 78 74"
	  " a2 61 00", PROTO_E_VALUE, "text" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"output\", \"text\": 1}", NULL,
	  PROTO_E_TYPE, "text" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"output\", \"task\": \"a b\"}",
	  NULL, PROTO_E_VALUE, "task" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"output\", \"dropped\": -1}", NULL,
	  PROTO_E_SIZE, "dropped" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"heartbeat\"}", NULL, PROTO_E_MISSING,
	  "state" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"heartbeat\", \"state\": \"ready\"}",
	  NULL, PROTO_OK, "" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"heartbeat\", \"state\": \"asleep\"}",
	  NULL, PROTO_E_VALUE, "state" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"heartbeat\", \"state\": \"busy\", "
	  "\"task\": \"\"}", NULL, PROTO_E_SIZE, "task" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"heartbeat\", \"state\": \"busy\", "
	  "\"inflight\": -1}", NULL, PROTO_E_SIZE, "inflight" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"heartbeat\", \"state\": \"busy\", "
	  "\"inflight\": 4294967296}", NULL, PROTO_E_SIZE, "inflight" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"heartbeat\", \"state\": \"busy\", "
	  "\"handler_pid\": \"x\"}", NULL, PROTO_E_TYPE, "handler_pid" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"heartbeat\", \"state\": \"busy\", "
	  "\"done\": 1.5}", NULL, PROTO_E_TYPE, "done" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"control\"}", NULL, PROTO_E_MISSING,
	  "cmd" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"control\", \"cmd\": \"explode\"}",
	  NULL, PROTO_E_VALUE, "cmd" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"control\", \"cmd\": \"drain\", "
	  "\"reason\": 5}", NULL, PROTO_E_TYPE, "reason" },
	{ PB_FRAME, "{\"v\": 1, \"t\": \"control\", \"cmd\": \"drain\", "
	  "\"reason\": \"~1025~\"}", NULL, PROTO_E_SIZE, "reason" },
	/* a bare value */
	{ PB_VALUE, "[1, {\"a\": null}]", NULL, PROTO_OK, "" },
	{ PB_VALUE, NULL, "91 c1", PROTO_E_MALFORMED, "" },
	{ PB_VALUE, NULL, "91 01 02", PROTO_E_MALFORMED, "" },
};

#define NBAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

/* Run every case of one kind; each failure names its case, and all are
 * reported (cr_expect), not only the first.  One test per kind rather
 * than per case: a test case is a process, and 150 of them under ASan
 * take seconds. */
static void
run_cases(enum pb_kind kind)
{
	msgpack_sbuffer sb;
	unsigned ran = 0;

	msgpack_sbuffer_init(&sb);
	for (size_t i = 0; i < NBAD; i++) {
		const struct bad_case *c = &bad_cases[i];
		const char *what = c->json ? c->json : c->hex;
		struct proto_err err;
		char buf[256];
		int rc;

		if (c->kind != kind)
			continue;
		ran++;
		msgpack_sbuffer_clear(&sb);
		if (c->json)
			pb_json(&sb, c->json);
		else
			pb_hex(&sb, c->hex);
		memset(&err, 0x55, sizeof(err));
		rc = pb_decode(c->kind, sb.data, sb.size, &err);
		if (c->code == PROTO_OK) {
			cr_expect_eq(rc, 0, "case %zu, %s %.80s: %s", i,
			    pb_kind_name(kind), what,
			    proto_strerror(&err, buf, sizeof(buf)));
			continue;
		}
		cr_expect_eq(rc, -1, "case %zu, %s %.80s: accepted", i,
		    pb_kind_name(kind), what);
		if (rc != -1)
			continue;
		cr_expect_eq(err.code, c->code, "case %zu, %s %.80s: got %s "
		    "(%s), want %s", i, pb_kind_name(kind), what,
		    proto_errcode_name(err.code),
		    proto_strerror(&err, buf, sizeof(buf)),
		    proto_errcode_name(c->code));
		cr_expect_str_eq(err.field, c->field, "case %zu, %s %.80s: "
		    "field '%s', want '%s'", i, pb_kind_name(kind), what,
		    err.field, c->field);
	}
	cr_assert_gt(ran, 0);
	msgpack_sbuffer_destroy(&sb);
}

Test(codec, rejects_malformed_task) { run_cases(PB_TASK); }
Test(codec, rejects_malformed_result) { run_cases(PB_RESULT); }
Test(codec, rejects_malformed_event) { run_cases(PB_EVENT); }
Test(codec, rejects_malformed_dead) { run_cases(PB_DEAD); }
Test(codec, rejects_malformed_frame) { run_cases(PB_FRAME); }
Test(codec, rejects_malformed_workflow) { run_cases(PB_WORKFLOW); }
Test(codec, rejects_malformed_value) { run_cases(PB_VALUE); }

/* ---- whole-message limits and structure ---- */

Test(codec, oversize_refused_before_parsing)
{
	size_t n = HIVE_TASK_MAX + 1;
	char *buf = calloc(1, n);       /* not even msgpack: size comes first */
	struct proto_err err;

	cr_assert_eq(pb_decode(PB_TASK, buf, n, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TOOBIG);
	n = HIVE_MSG_MAX + 1;
	buf = realloc(buf, n);
	cr_assert_eq(pb_decode(PB_DEAD, buf, n, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TOOBIG);
	cr_assert_eq(pb_decode(PB_EVENT, buf, n, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TOOBIG);
	cr_assert_eq(pb_decode(PB_FRAME, buf, n, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TOOBIG);
	cr_assert_eq(pb_decode(PB_VALUE, buf, n, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TOOBIG);
	free(buf);
}

/* {"v":1,"id":"a","payload": <depth nested arrays around 0>} */
static void
deep_task(msgpack_sbuffer *sb, unsigned depth)
{
	pb_hex(sb, "83 a1 76 01 a2 69 64 a1 61 a7 70 61 79 6c 6f 61 64");
	for (unsigned i = 0; i < depth; i++)
		pb_hex(sb, "91");
	pb_hex(sb, "00");
}

Test(codec, depth_limit_names_the_field)
{
	msgpack_sbuffer sb;
	struct proto_err err;
	struct hive_task d;

	msgpack_sbuffer_init(&sb);
	deep_task(&sb, HIVE_DEPTH_MAX);
	cr_assert_eq(proto_decode_task(sb.data, sb.size, &d, &err), 0,
	    "depth %d is allowed: %s", HIVE_DEPTH_MAX, err.detail);
	proto_task_clear(&d);
	for (unsigned depth = HIVE_DEPTH_MAX + 1; depth < 100000;
	    depth *= 10) {
		msgpack_sbuffer_clear(&sb);
		deep_task(&sb, depth);
		cr_assert_eq(proto_decode_task(sb.data, sb.size, &d, &err), -1);
		cr_assert_eq(err.code, PROTO_E_SIZE, "depth %u: %s", depth,
		    proto_errcode_name(err.code));
		cr_assert_str_eq(err.field, "payload");
	}
	/* a deep empty map counts too */
	msgpack_sbuffer_clear(&sb);
	pb_hex(&sb, "83 a1 76 01 a2 69 64 a1 61 a7 70 61 79 6c 6f 61 64");
	for (unsigned i = 0; i < HIVE_DEPTH_MAX; i++)
		pb_hex(&sb, "91");
	pb_hex(&sb, "80");
	cr_assert_eq(proto_decode_task(sb.data, sb.size, &d, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	msgpack_sbuffer_destroy(&sb);
}

/* Every strict prefix of a valid message is refused (and ASan sees no
 * read past it: each prefix is copied to a buffer of exactly its size). */
Test(codec, every_truncation_refused)
{
	msgpack_sbuffer sb;
	static const char *const msgs[] = {
		T_(", \"payload\": {\"a\": [1, 2.5, \"x\", null, true]}, "
		  "\"attempt\": 2, \"created_ms\": 1700000000000, "
		  "\"reply_to\": \"hive:reply:x\""),
		R_(", \"memory\": {\"k\": [1]}, \"memory_v\": 7"),
	};
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	for (size_t m = 0; m < 2; m++) {
		msgpack_sbuffer_clear(&sb);
		pb_json(&sb, msgs[m]);
		for (size_t n = 0; n < sb.size; n++) {
			char *cut = malloc(n ? n : 1);

			memcpy(cut, sb.data, n);
			cr_assert_eq(pb_decode(m ? PB_RESULT : PB_TASK, cut, n,
			    &err), -1, "prefix of %zu bytes accepted", n);
			cr_assert_eq(err.code, PROTO_E_MALFORMED);
			free(cut);
		}
		cr_assert_eq(pb_decode(m ? PB_RESULT : PB_TASK, sb.data,
		    sb.size, &err), 0);
	}
	msgpack_sbuffer_destroy(&sb);
}

/* The reader's view of numbers matches msgpack-c's: every integer
 * encoding, signed values >= 0 as POSITIVE_INTEGER. */
Test(codec, numbers_in_every_encoding)
{
	static const struct {
		const char *hex;
		int neg;
		long long v;
	} nums[] = {
		{ "7f", 0, 127 }, { "cc ff", 0, 255 }, { "cd ff ff", 0, 65535 },
		{ "ce ff ff ff ff", 0, 4294967295LL },
		{ "d0 05", 0, 5 }, { "d0 80", 1, -128 }, { "d1 80 00", 1, -32768 },
		{ "d2 80 00 00 00", 1, INT32_MIN },
		{ "d3 80 00 00 00 00 00 00 00", 1, INT64_MIN },
		{ "d3 00 00 00 00 00 00 00 07", 0, 7 },
		{ "e0", 1, -32 }, { "ff", 1, -1 },
	};
	msgpack_sbuffer sb;
	msgpack_unpacked up;
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		msgpack_sbuffer_clear(&sb);
		pb_hex(&sb, nums[i].hex);
		cr_assert_eq(proto_decode_value(sb.data, sb.size, &up, &err), 0);
		if (nums[i].neg) {
			cr_assert_eq(up.data.type,
			    MSGPACK_OBJECT_NEGATIVE_INTEGER, "%s", nums[i].hex);
			cr_assert_eq(up.data.via.i64, nums[i].v, "%s",
			    nums[i].hex);
		} else {
			cr_assert_eq(up.data.type,
			    MSGPACK_OBJECT_POSITIVE_INTEGER, "%s", nums[i].hex);
			cr_assert_eq(up.data.via.u64, (uint64_t)nums[i].v, "%s",
			    nums[i].hex);
		}
		msgpack_unpacked_destroy(&up);
	}
	msgpack_sbuffer_destroy(&sb);
}

/* The size the codec computes for a value (memory limit) is the size
 * msgpack-c packs it to, for every encoding length boundary. */
Test(codec, packed_size_matches_msgpack_c)
{
	static const int64_t ints[] = { 0, 1, 127, 128, 255, 256, 65535,
		65536, 4294967295LL, 4294967296LL, INT64_MAX, -1, -32, -33,
		-128, -129, -32768, -32769, INT32_MIN, (int64_t)INT32_MIN - 1,
		INT64_MIN };
	static const uint32_t lens[] = { 0, 1, 2, 3, 4, 8, 15, 16, 17, 31, 32,
		255, 256, 65535, 65536 };
	char *bytes = calloc(1, 70000);
	msgpack_zone *z = msgpack_zone_new(4096);
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]) + 2 +
	    4 * (sizeof(lens) / sizeof(lens[0])); i++) {
		msgpack_object o = { .type = MSGPACK_OBJECT_NIL };
		uint64_t size = 0;
		struct proto_err err;
		size_t k;

		if (i < sizeof(ints) / sizeof(ints[0])) {
			o.type = ints[i] >= 0 ? MSGPACK_OBJECT_POSITIVE_INTEGER :
			    MSGPACK_OBJECT_NEGATIVE_INTEGER;
			o.via.i64 = ints[i];
		} else if ((k = i - sizeof(ints) / sizeof(ints[0])) < 2) {
			o.type = k ? MSGPACK_OBJECT_FLOAT32 :
			    MSGPACK_OBJECT_FLOAT64;
			o.via.f64 = 1.5;
		} else {
			uint32_t n = lens[(k - 2) / 4];

			switch ((k - 2) % 4) {
			case 0:
				o.type = MSGPACK_OBJECT_STR;
				o.via.str.ptr = bytes;
				o.via.str.size = n;
				break;
			case 1:
				o.type = MSGPACK_OBJECT_BIN;
				o.via.bin.ptr = bytes;
				o.via.bin.size = n;
				break;
			case 2:
				o.type = MSGPACK_OBJECT_EXT;
				o.via.ext.ptr = bytes;
				o.via.ext.size = n;
				o.via.ext.type = 3;
				break;
			case 3:
				o.type = MSGPACK_OBJECT_ARRAY;
				o.via.array.size = n;
				o.via.array.ptr = n ? msgpack_zone_malloc(z,
				    n * sizeof(msgpack_object)) : NULL;
				for (uint32_t j = 0; j < n; j++)
					o.via.array.ptr[j].type =
					    MSGPACK_OBJECT_NIL;
				break;
			}
		}
		msgpack_sbuffer_clear(&sb);
		cr_assert_eq(msgpack_pack_object(&pk, o), 0);
		cr_assert_eq(proto_obj_check(&o, 1, &size, &err, "x"), 0);
		cr_assert_eq(size, sb.size, "case %zu (type %d): computed %llu, "
		    "msgpack-c packs %zu", i, (int)o.type,
		    (unsigned long long)size, sb.size);
	}
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_free(z);
	free(bytes);
}

/* ---- encoders validate like decoders ---- */

Test(codec, encoders_refuse_and_leave_buffer_unchanged)
{
	msgpack_sbuffer sb;
	struct proto_err err;
	struct hive_task t = { 0 };
	struct hive_result r = { 0 };
	struct hive_event e = { 0 };
	struct hive_dead d = { 0 };
	char *big;

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_write(&sb, "keep", 4);

	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_MISSING);
	cr_assert_str_eq(err.field, "id");
	t.id = HIVE_STR("a b");
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	t.id = HIVE_STR("ok");
	t.attempt = 1001;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	cr_assert_str_eq(err.field, "attempt");
	t.attempt = 0;
	t.reply_to = HIVE_STR("elsewhere");
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_str_eq(err.field, "reply_to");
	t.reply_to = (struct hive_str){ NULL, 0 };
	t.id = (struct hive_str){ NULL, 3 };
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	t.id = HIVE_STR("ok");
	/* payload one level too deep: built by hand, the reader would
	 * refuse it */
	{
		msgpack_object *o = calloc(HIVE_DEPTH_MAX + 2, sizeof(*o));

		for (unsigned i = 0; i <= HIVE_DEPTH_MAX; i++) {
			o[i].type = MSGPACK_OBJECT_ARRAY;
			o[i].via.array.size = 1;
			o[i].via.array.ptr = &o[i + 1];
		}
		o[HIVE_DEPTH_MAX + 1].type = MSGPACK_OBJECT_POSITIVE_INTEGER;
		t.payload = o[0];
		cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
		cr_assert_eq(err.code, PROTO_E_SIZE);
		cr_assert_str_eq(err.field, "payload");
		t.payload = o[1];       /* exactly HIVE_DEPTH_MAX */
		cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
		sb.size = 4;
		free(o);
	}
	t.payload.type = MSGPACK_OBJECT_STR;
	big = calloc(1, HIVE_TASK_MAX);
	t.payload.via.str.ptr = big;
	t.payload.via.str.size = HIVE_TASK_MAX;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TOOBIG);
	free(big);

	r.id = HIVE_STR("t");
	r.agent = HIVE_STR("echo/1");
	r.host = HIVE_STR("h");
	r.status = HIVE_STATUS_ERROR;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), -1);
	cr_assert_eq(err.code, PROTO_E_MISSING);
	cr_assert_str_eq(err.field, "error");
	r.status = 7;
	r.error = HIVE_STR("e");
	cr_assert_eq(proto_encode_result(&sb, &r, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.field, "status");
	r.status = HIVE_STATUS_OK;
	r.memory.type = MSGPACK_OBJECT_ARRAY;
	r.memory_v = 1;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TYPE);
	cr_assert_str_eq(err.field, "memory");
	r.memory.type = MSGPACK_OBJECT_MAP;
	r.memory_v = 0;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), -1);
	cr_assert_str_eq(err.field, "memory_v");
	r.error = HIVE_STR("bad \xff utf-8");
	r.memory_v = 1;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.field, "error");

	cr_assert_eq(proto_encode_event(&sb, &e, &err), -1);
	cr_assert_str_eq(err.field, "kind");
	e.kind = HIVE_STR("k");
	e.host = HIVE_STR("h");
	e.pid = -1;
	cr_assert_eq(proto_encode_event(&sb, &e, &err), -1);
	cr_assert_str_eq(err.field, "pid");

	cr_assert_eq(proto_encode_dead(&sb, &d, &err), -1);
	cr_assert_str_eq(err.field, "reason");
	d.reason = HIVE_STR("r");
	d.raw.ptr = "x";
	d.raw.len = HIVE_RAW_MAX + 1;
	cr_assert_eq(proto_encode_dead(&sb, &d, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	cr_assert_str_eq(err.field, "raw");

	cr_assert_eq(sb.size, 4, "a refused message left bytes behind");
	cr_assert(memcmp(sb.data, "keep", 4) == 0);
	msgpack_sbuffer_destroy(&sb);
}

Test(codec, strerror_names_field_and_code)
{
	struct proto_err err = { 0 };
	char buf[200];

	proto_fail(&err, PROTO_E_SIZE, "id", "200 bytes > 128");
	cr_assert_str_eq(proto_strerror(&err, buf, sizeof(buf)),
	    "field 'id': out of limits (200 bytes > 128)");
	proto_fail(&err, PROTO_E_TOOBIG, "", "5 bytes > 4");
	cr_assert_str_eq(proto_strerror(&err, buf, sizeof(buf)),
	    "message: too big (5 bytes > 4)");
	cr_assert_str_eq(proto_errcode_name(PROTO_E_DUPLICATE), "duplicate");
	cr_assert_str_eq(proto_errcode_name(PROTO_E_MALFORMED), "malformed");
	/* a long field name is cut, never overflowed */
	proto_fail(&err, PROTO_E_TYPE, "a_very_long_field_name_indeed_yes",
	    "x");
	cr_assert_eq(strlen(err.field), sizeof(err.field) - 1);
}
