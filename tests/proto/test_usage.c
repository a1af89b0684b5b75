/*
 * test_usage.c - trace context and usage in the codec: round trips of a
 * task, result and workflow carrying them, every malformed traceparent and
 * usage member rejected with its code and field, the encoder refusing
 * what the decoder would, usage read from a handler's JSON, and the
 * traceparents Hive makes.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>

#include "pbuild.h"
#include "proto_int.h"

#define TP  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

Test(usage, task_traceparent_round_trip)
{
	msgpack_sbuffer sb;
	struct hive_task t = { 0 }, d;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	t.id = HIVE_STR("t1");
	t.payload.type = MSGPACK_OBJECT_NIL;
	t.parents.type = MSGPACK_OBJECT_NIL;
	t.traceparent = HIVE_STR(TP);
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0, "%s", err.detail);
	cr_assert_eq(proto_decode_task(sb.data, sb.size, &d, &err), 0);
	pb_assert_str(d.traceparent, TP, "traceparent");
	proto_task_clear(&d);
	msgpack_sbuffer_destroy(&sb);
}

Test(usage, result_round_trip)
{
	msgpack_sbuffer sb, sb2;
	struct hive_result r = { 0 }, d;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&sb2);
	r.id = HIVE_STR("t1");
	r.agent = HIVE_STR("echo/1");
	r.host = HIVE_STR("h");
	r.status = HIVE_STATUS_OK;
	r.result.type = MSGPACK_OBJECT_NIL;
	r.memory.type = MSGPACK_OBJECT_NIL;
	r.usage.has = HIVE_USAGE_INPUT | HIVE_USAGE_OUTPUT | HIVE_USAGE_COST |
	    HIVE_USAGE_MODEL;
	r.usage.input_tokens = 1200;
	r.usage.output_tokens = HIVE_TOKENS_MAX;
	r.usage.cost = 0.0125;
	r.usage.model = HIVE_STR("claude-sonnet-4");
	r.traceparent = HIVE_STR(TP);
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0, "%s", err.detail);
	cr_assert_eq(proto_decode_result(sb.data, sb.size, &d, &err), 0,
	    "%s: %s", err.field, err.detail);
	cr_assert_eq(d.usage.has, r.usage.has);
	cr_assert_eq(d.usage.input_tokens, 1200);
	cr_assert_eq(d.usage.output_tokens, HIVE_TOKENS_MAX);
	cr_assert_eq(d.usage.cost, 0.0125);
	pb_assert_str(d.usage.model, "claude-sonnet-4", "usage.model");
	pb_assert_str(d.traceparent, TP, "traceparent");
	cr_assert_eq(proto_encode_result(&sb2, &d, &err), 0);
	cr_assert_eq(sb2.size, sb.size);
	cr_assert(memcmp(sb.data, sb2.data, sb.size) == 0);
	proto_result_clear(&d);

	/* one member only; a zero usage (has 0) is not written at all */
	msgpack_sbuffer_clear(&sb);
	r.usage.has = HIVE_USAGE_OUTPUT;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0);
	cr_assert_eq(proto_decode_result(sb.data, sb.size, &d, &err), 0);
	cr_assert_eq(d.usage.has, HIVE_USAGE_OUTPUT);
	cr_assert_eq(d.usage.input_tokens, 0);
	proto_result_clear(&d);
	msgpack_sbuffer_clear(&sb);
	r.usage.has = 0;
	r.traceparent = HIVE_STR("");
	cr_assert_eq(proto_encode_result(&sb, &r, &err), 0);
	cr_assert(memmem(sb.data, sb.size, "usage", 5) == NULL);
	cr_assert(memmem(sb.data, sb.size, "traceparent", 11) == NULL);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&sb2);
}

Test(usage, workflow_traceparent_round_trip)
{
	msgpack_sbuffer sb;
	struct hive_workflow d;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	pb_json(&sb, "{\"v\": 1, \"id\": \"w\", \"traceparent\": \"" TP "\", "
	    "\"tasks\": [{\"id\": \"a\", \"capability\": \"c\"}]}");
	cr_assert_eq(proto_decode_workflow(sb.data, sb.size, &d, &err), 0,
	    "%s: %s", err.field, err.detail);
	pb_assert_str(d.traceparent, TP, "traceparent");
	proto_workflow_clear(&d);
	msgpack_sbuffer_destroy(&sb);
}

struct ucase {
	enum pb_kind kind;
	const char *json;
	enum proto_errcode code;
	const char *field;
};

#define T_(j) "{\"v\": 1, \"id\": \"t1\"" j "}"
#define R_(j) "{\"v\": 1, \"id\": \"t1\", \"agent\": \"echo/1\", " \
	"\"host\": \"h\", \"status\": \"ok\"" j "}"
#define TPF(s) ", \"traceparent\": \"" s "\""

static const struct ucase ucases[] = {
	{ PB_TASK, T_(TPF(TP)), PROTO_OK, "" },
	{ PB_TASK, T_(TPF("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
	  PROTO_E_VALUE, "traceparent" },
	{ PB_TASK, T_(TPF("00-00000000000000000000000000000000-00f067aa0ba902b7-01")),
	  PROTO_E_VALUE, "traceparent" },
	{ PB_TASK, T_(TPF("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")),
	  PROTO_E_VALUE, "traceparent" },
	{ PB_TASK, T_(TPF("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")),
	  PROTO_E_VALUE, "traceparent" },
	{ PB_TASK, T_(TPF("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")),
	  PROTO_E_VALUE, "traceparent" },
	{ PB_TASK, T_(TPF("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7")),
	  PROTO_E_VALUE, "traceparent" },
	{ PB_TASK, T_(TPF("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
	  PROTO_E_VALUE, "traceparent" },
	{ PB_TASK, T_(TPF("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01")),
	  PROTO_E_VALUE, "traceparent" },
	{ PB_TASK, T_(TPF("")), PROTO_E_VALUE, "traceparent" },
	{ PB_TASK, T_(", \"traceparent\": 5"), PROTO_E_TYPE, "traceparent" },
	{ PB_TASK, T_(", \"traceparent\": null"), PROTO_OK, "" },
	{ PB_RESULT, R_(TPF("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0")),
	  PROTO_E_VALUE, "traceparent" },
	/* usage */
	{ PB_RESULT, R_(", \"usage\": {}"), PROTO_OK, "" },
	{ PB_RESULT, R_(", \"usage\": null"), PROTO_OK, "" },
	{ PB_RESULT, R_(", \"usage\": {\"input_tokens\": 0, \"cost\": 0, "
	  "\"model\": \"m\", \"cache_tokens\": \"x\", \"output_tokens\": null}"),
	  PROTO_OK, "" },
	{ PB_RESULT, R_(", \"usage\": [1]"), PROTO_E_TYPE, "usage" },
	{ PB_RESULT, R_(", \"usage\": \"a lot\""), PROTO_E_TYPE, "usage" },
	{ PB_RESULT, R_(", \"usage\": {\"input_tokens\": \"12\"}"),
	  PROTO_E_TYPE, "usage.input_tokens" },
	{ PB_RESULT, R_(", \"usage\": {\"input_tokens\": 1.5}"),
	  PROTO_E_TYPE, "usage.input_tokens" },
	{ PB_RESULT, R_(", \"usage\": {\"input_tokens\": -1}"),
	  PROTO_E_SIZE, "usage.input_tokens" },
	{ PB_RESULT, R_(", \"usage\": {\"output_tokens\": 9007199254740992}"),
	  PROTO_E_SIZE, "usage.output_tokens" },
	{ PB_RESULT, R_(", \"usage\": {\"output_tokens\": 9007199254740991}"),
	  PROTO_OK, "" },
	{ PB_RESULT, R_(", \"usage\": {\"output_tokens\": true}"),
	  PROTO_E_TYPE, "usage.output_tokens" },
	{ PB_RESULT, R_(", \"usage\": {\"cost\": \"1\"}"),
	  PROTO_E_TYPE, "usage.cost" },
	{ PB_RESULT, R_(", \"usage\": {\"cost\": -0.5}"),
	  PROTO_E_SIZE, "usage.cost" },
	{ PB_RESULT, R_(", \"usage\": {\"cost\": -2}"),
	  PROTO_E_SIZE, "usage.cost" },
	{ PB_RESULT, R_(", \"usage\": {\"cost\": 1e16}"),
	  PROTO_E_SIZE, "usage.cost" },
	{ PB_RESULT, R_(", \"usage\": {\"model\": 4}"),
	  PROTO_E_TYPE, "usage.model" },
	{ PB_RESULT, R_(", \"usage\": {\"model\": \"\"}"),
	  PROTO_E_SIZE, "usage.model" },
	{ PB_RESULT, R_(", \"usage\": {\"model\": \"~129~\"}"),
	  PROTO_E_SIZE, "usage.model" },
	{ PB_RESULT, R_(", \"usage\": {\"model\": \"~128~\"}"), PROTO_OK, "" },
	{ PB_RESULT, R_(", \"usage\": {\"model\": \"a\\u0000\"}"),
	  PROTO_E_VALUE, "usage.model" },
};

Test(usage, rejects_malformed)
{
	msgpack_sbuffer sb;
	struct proto_err err;
	char buf[PROTO_ERRBUF];

	msgpack_sbuffer_init(&sb);
	for (size_t i = 0; i < sizeof(ucases) / sizeof(ucases[0]); i++) {
		const struct ucase *c = &ucases[i];
		int rc;

		msgpack_sbuffer_clear(&sb);
		pb_json(&sb, c->json);
		memset(&err, 0, sizeof(err));
		rc = pb_decode(c->kind, sb.data, sb.size, &err);
		if (c->code == PROTO_OK) {
			cr_expect_eq(rc, 0, "case %zu %s: %s", i, c->json,
			    proto_strerror(&err, buf, sizeof(buf)));
			continue;
		}
		cr_expect_eq(rc, -1, "case %zu %s: accepted", i, c->json);
		cr_expect_eq(err.code, c->code, "case %zu %s: got %s (%s)", i,
		    c->json, proto_errcode_name(err.code),
		    proto_strerror(&err, buf, sizeof(buf)));
		cr_expect_str_eq(err.field, c->field, "case %zu %s: field %s",
		    i, c->json, err.field);
	}
	msgpack_sbuffer_destroy(&sb);
}

/* {"v":1,"id":"t1","agent":"echo/1","host":"h","status":"ok",
 *  "usage":{"cost":NaN}} and a usage key twice, which JSON cannot say */
Test(usage, rejects_nan_and_duplicate)
{
	msgpack_sbuffer sb;
	struct proto_err err;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	for (int twice = 0; twice < 2; twice++) {
		msgpack_sbuffer_clear(&sb);
		msgpack_pack_map(&pk, 6);
		msgpack_pack_str_with_body(&pk, "v", 1);
		msgpack_pack_uint8(&pk, 1);
		msgpack_pack_str_with_body(&pk, "id", 2);
		msgpack_pack_str_with_body(&pk, "t1", 2);
		msgpack_pack_str_with_body(&pk, "agent", 5);
		msgpack_pack_str_with_body(&pk, "echo/1", 6);
		msgpack_pack_str_with_body(&pk, "host", 4);
		msgpack_pack_str_with_body(&pk, "h", 1);
		msgpack_pack_str_with_body(&pk, "status", 6);
		msgpack_pack_str_with_body(&pk, "ok", 2);
		msgpack_pack_str_with_body(&pk, "usage", 5);
		msgpack_pack_map(&pk, twice ? 2 : 1);
		msgpack_pack_str_with_body(&pk, "cost", 4);
		msgpack_pack_double(&pk, twice ? 1.0 : NAN);
		if (twice) {
			msgpack_pack_str_with_body(&pk, "cost", 4);
			msgpack_pack_double(&pk, 2.0);
		}
		cr_assert_eq(pb_decode(PB_RESULT, sb.data, sb.size, &err), -1);
		cr_assert_eq(err.code, twice ? PROTO_E_DUPLICATE :
		    PROTO_E_VALUE);
		cr_assert_str_eq(err.field, "usage.cost");
	}
	msgpack_sbuffer_destroy(&sb);
}

Test(usage, encoder_refuses)
{
	msgpack_sbuffer sb;
	struct hive_result r = { 0 };
	struct hive_task t = { 0 };
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	r.id = HIVE_STR("t1");
	r.agent = HIVE_STR("echo/1");
	r.host = HIVE_STR("h");
	r.result.type = r.memory.type = MSGPACK_OBJECT_NIL;
	r.usage.has = HIVE_USAGE_COST;
	r.usage.cost = -1;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), -1);
	cr_assert_str_eq(err.field, "usage.cost");
	r.usage.has = HIVE_USAGE_INPUT;
	r.usage.input_tokens = HIVE_TOKENS_MAX + 1;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), -1);
	cr_assert_str_eq(err.field, "usage.input_tokens");
	r.usage.has = HIVE_USAGE_MODEL;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), -1);
	cr_assert_str_eq(err.field, "usage.model");
	r.usage.has = 0x10;
	cr_assert_eq(proto_encode_result(&sb, &r, &err), -1);
	cr_assert_str_eq(err.field, "usage");
	t.id = HIVE_STR("t1");
	t.payload.type = t.parents.type = MSGPACK_OBJECT_NIL;
	t.traceparent = HIVE_STR("00-abc");
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.field, "traceparent");
	cr_assert_eq(sb.size, 0);
	msgpack_sbuffer_destroy(&sb);
}

Test(usage, from_json)
{
	static const struct {
		const char *json;
		int rc;
		const char *field;
	} cases[] = {
		{ "{\"input_tokens\": 10, \"output_tokens\": 2, \"cost\": 0.5, "
		  "\"model\": \"gpt\", \"other\": [1]}", 0, "" },
		{ "{\"cost\": 3}", 0, "" },
		{ "{}", 0, "" },
		{ "[]", -1, "usage" },
		{ "{\"input_tokens\": \"10\"}", -1, "usage.input_tokens" },
		{ "{\"input_tokens\": 1.0}", -1, "usage.input_tokens" },
		{ "{\"output_tokens\": -3}", -1, "usage.output_tokens" },
		{ "{\"output_tokens\": 9007199254740992}", -1,
		  "usage.output_tokens" },
		{ "{\"cost\": \"cheap\"}", -1, "usage.cost" },
		{ "{\"cost\": -1.5}", -1, "usage.cost" },
		{ "{\"model\": {}}", -1, "usage.model" },
		{ "{\"model\": \"\"}", -1, "usage.model" },
	};
	struct hive_usage u;
	struct proto_err err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *j = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);

		cr_assert_not_null(j);
		memset(&err, 0, sizeof(err));
		cr_expect_eq(proto_usage_from_json(j, &u, &err), cases[i].rc,
		    "%s", cases[i].json);
		cr_expect_str_eq(err.field, cases[i].field, "%s: %s",
		    cases[i].json, err.field);
		if (i == 0) {
			cr_assert_eq(u.has, 15);
			cr_assert_eq(u.input_tokens, 10);
			cr_assert_eq(u.output_tokens, 2);
			cr_assert_eq(u.cost, 0.5);
			pb_assert_str(u.model, "gpt", "model");
		}
		if (i == 1)
			cr_assert(u.has == HIVE_USAGE_COST && u.cost == 3);
		if (cases[i].rc == -1)
			cr_assert_eq(u.has, 0);
		json_decref(j);
	}
}

Test(usage, traceparent_make)
{
	char a[HIVE_TRACEPARENT_LEN + 1], b[HIVE_TRACEPARENT_LEN + 1];

	proto_traceparent_make(a, NULL);
	proto_traceparent_make(b, NULL);
	cr_assert_eq(strlen(a), HIVE_TRACEPARENT_LEN);
	cr_assert_eq(proto_valid_traceparent(a, strlen(a)), 0, "%s", a);
	cr_assert_eq(proto_valid_traceparent(b, strlen(b)), 0, "%s", b);
	cr_assert(memcmp(PROTO_TRACE_ID(a), PROTO_TRACE_ID(b), 32) != 0,
	    "two new traces share an id: %s %s", a, b);
	cr_assert_str_eq(a + 52, "-01");
	/* a child: the same trace id, a span id of its own */
	proto_traceparent_make(b, PROTO_TRACE_ID(a));
	cr_assert_eq(proto_valid_traceparent(b, strlen(b)), 0);
	cr_assert(memcmp(PROTO_TRACE_ID(a), PROTO_TRACE_ID(b), 32) == 0);
	cr_assert(memcmp(a + 36, b + 36, 16) != 0);
}
