/*
 * test_json.c - msgpack values <-> JSON for handlers: both directions,
 * and the values that have no JSON form refused with the right code.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "pbuild.h"
#include "proto_int.h"

/* JSON text of the msgpack value given as hex, or NULL and *err. */
static char *
hex_to_json(const char *hex, struct proto_err *err)
{
	msgpack_sbuffer sb;
	msgpack_unpacked up;
	json_t *j;
	char *s = NULL;

	msgpack_sbuffer_init(&sb);
	pb_hex(&sb, hex);
	cr_assert_eq(proto_decode_value(sb.data, sb.size, &up, err), 0,
	    "%s: %s", hex, err->detail);
	if ((j = proto_obj_to_json(&up.data, err)) != NULL) {
		s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY |
		    JSON_PRESERVE_ORDER);
		json_decref(j);
	}
	/* Written straight, without jansson's tree: the same text, the same
	 * refusals. */
	{
		struct proto_err e2;
		size_t len;
		char *t = proto_obj_json_text(&up.data, &len, &e2);
		if (s != NULL) {
			cr_assert_not_null(t, "%s: jansson wrote %s, the direct "
			    "writer refused: %s", hex, s, e2.detail);
			cr_assert_str_eq(t, s, "%s", hex);
			cr_assert_eq(len, strlen(t));
		} else {
			cr_assert_null(t, "%s: refused by jansson (%s), written "
			    "as %s", hex, err->detail, t);
			cr_assert_eq(e2.code, err->code, "%s: %s, jansson %s", hex,
			    proto_errcode_name(e2.code),
			    proto_errcode_name(err->code));
		}
		free(t);
	}
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
	return s;
}

Test(json, msgpack_to_json)
{
	static const struct {
		const char *hex, *json;
	} cases[] = {
		{ "c0", "null" },
		{ "c3", "true" },
		{ "c2", "false" },
		{ "05", "5" },
		{ "ff", "-1" },
		{ "cf 7f ff ff ff ff ff ff ff", "9223372036854775807" },
		{ "d3 80 00 00 00 00 00 00 00", "-9223372036854775808" },
		{ "cb 3f f8 00 00 00 00 00 00", "1.5" },
		{ "ca 3f c0 00 00", "1.5" },
		{ "a3 61 62 63", "\"abc\"" },
		{ "a2 c3 a9", "\"\xc3\xa9\"" },
		{ "90", "[]" },
		{ "80", "{}" },
		{ "82 a1 62 01 a1 61 92 c0 a0", "{\"b\":1,\"a\":[null,\"\"]}" },
		{ "a8 22 5c 2f 01 0a 09 1f 00", "\"\\\"\\\\/\\u0001\\n\\t\\u001F\\u0000\"" },
		{ "a4 f0 9f 90 9d", "\"\xf0\x9f\x90\x9d\"" },
		{ "cb 7e 37 e4 3c 88 00 75 9c", "1.0000000000000001e300" },
		{ "cb 00 01 00 00 00 00 00 00", "1.3906711615670009e-309" },
		{ "cb 44 30 00 00 00 00 00 00", "2.9514790517935283e20" },
		{ "cb c0 59 00 00 00 00 00 00", "-100.0" },
		{ "cb 00 00 00 00 00 00 00 00", "0.0" },
		{ "89 a1 61 01 a1 62 02 a1 63 03 a1 64 04 a1 65 05 a1 66 06 "
		  "a1 67 07 a1 68 08 a1 69 09",
		  "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,"
		  "\"g\":7,\"h\":8,\"i\":9}" },
	};
	struct proto_err err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = hex_to_json(cases[i].hex, &err);

		cr_assert_not_null(s, "%s: %s", cases[i].hex, err.detail);
		cr_assert_str_eq(s, cases[i].json, "%s", cases[i].hex);
		free(s);
	}
}

Test(json, refuses_what_json_cannot_hold)
{
	static const struct {
		const char *hex;
		enum proto_errcode code;
	} cases[] = {
		{ "c4 01 00", PROTO_E_TYPE },                   /* bin */
		{ "d4 01 00", PROTO_E_TYPE },                   /* ext */
		{ "91 c4 00", PROTO_E_TYPE },                   /* nested bin */
		{ "81 01 02", PROTO_E_NOTMAP },                 /* int key */
		{ "81 c4 01 61 02", PROTO_E_NOTMAP },           /* bin key */
		{ "82 a1 61 01 a1 61 02", PROTO_E_DUPLICATE },
		{ "cb 7f f8 00 00 00 00 00 00", PROTO_E_VALUE },   /* NaN */
		{ "cb 7f f0 00 00 00 00 00 00", PROTO_E_VALUE },   /* inf */
		{ "cb ff f0 00 00 00 00 00 00", PROTO_E_VALUE },   /* -inf */
		{ "ca 7f c0 00 00", PROTO_E_VALUE },            /* NaN f32 */
		{ "cf 80 00 00 00 00 00 00 00", PROTO_E_SIZE }, /* > INT64 */
		{ "a2 c3 28", PROTO_E_VALUE },                  /* bad UTF-8 */
		{ "81 a2 c3 28 01", PROTO_E_VALUE },            /* key too */
		{ "81 a2 61 00 01", PROTO_E_VALUE },            /* NUL in key */
		{ "89 a1 61 01 a1 62 02 a1 63 03 a1 64 04 a1 65 05 a1 66 06 "
		  "a1 67 07 a1 68 08 a1 64 09", PROTO_E_DUPLICATE }, /* 9 keys */
		{ "a3 ed a0 80", PROTO_E_VALUE },               /* surrogate */
		{ "a2 c0 80", PROTO_E_VALUE },                  /* overlong */
		{ "a4 f4 90 80 80", PROTO_E_VALUE },            /* > U+10FFFF */
		{ "a2 e2 82", PROTO_E_VALUE },                  /* cut short */
	};
	struct proto_err err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = hex_to_json(cases[i].hex, &err);

		cr_assert_null(s, "%s converted to %s", cases[i].hex, s);
		cr_assert_eq(err.code, cases[i].code, "%s: %s, want %s",
		    cases[i].hex, proto_errcode_name(err.code),
		    proto_errcode_name(cases[i].code));
	}
}

/* The one rule set both writers apply, with the words each refusal
 * gives (they reach dead letters and logs). */
Test(json, form_rules_and_their_words)
{
	msgpack_object o, k;
	struct proto_err err;

	memset(&o, 0, sizeof(o));
	o.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	o.via.u64 = INT64_MAX;
	cr_assert_eq(proto_json_form(&o, 0, &err), 0);
	o.via.u64 = (uint64_t)INT64_MAX + 1;
	cr_assert_eq(proto_json_form(&o, 0, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	cr_assert_str_eq(err.detail, "integer 9223372036854775808 > "
	    "9223372036854775807 has no JSON form");
	o.type = MSGPACK_OBJECT_FLOAT32;
	o.via.f64 = INFINITY;
	cr_assert_eq(proto_json_form(&o, 1, &err), -1);
	cr_assert_str_eq(err.detail, "non-finite float has no JSON form");
	o.via.f64 = 1.5;
	cr_assert_eq(proto_json_form(&o, 0, &err), 0);
	o.type = MSGPACK_OBJECT_EXT;
	cr_assert_eq(proto_json_form(&o, 1, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TYPE);
	cr_assert_str_eq(err.detail, "ext has no JSON form");
	/* A container needs a level left; what is in it is judged later. */
	memset(&o, 0, sizeof(o));
	o.type = MSGPACK_OBJECT_MAP;
	cr_assert_eq(proto_json_form(&o, 1, &err), 0);
	cr_assert_eq(proto_json_form(&o, 0, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	cr_assert_str_eq(err.detail, "nesting deeper than 32");
	o.type = (msgpack_object_type)99;
	cr_assert_eq(proto_json_form(&o, 1, &err), -1);
	cr_assert_str_eq(err.detail, "unknown msgpack type 99");

	memset(&k, 0, sizeof(k));
	k.type = MSGPACK_OBJECT_STR;
	cr_assert_eq(proto_json_key(&k, &err), 0);       /* "" is a key */
	k.via.str.ptr = "a\0b";
	k.via.str.size = 3;
	cr_assert_eq(proto_json_key(&k, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.detail, "map key contains NUL");
	k.via.str.size = 1;
	cr_assert_eq(proto_json_key(&k, &err), 0);
	cr_assert_eq(proto_json_key_twice(&k, &err), -1);
	cr_assert_eq(err.code, PROTO_E_DUPLICATE);
	cr_assert_str_eq(err.detail, "key \"a\" twice");
	k.type = MSGPACK_OBJECT_BOOLEAN;
	cr_assert_eq(proto_json_key(&k, &err), -1);
	cr_assert_eq(err.code, PROTO_E_NOTMAP);
	cr_assert_str_eq(err.detail, "map key is not a string");
	cr_assert_eq(proto_json_not_utf8("map key", &err), -1);
	cr_assert_str_eq(err.detail, "map key is not UTF-8");
}

/* Values built in memory (not from the reader) deeper than the limit. */
Test(json, depth_both_ways)
{
	msgpack_object o[HIVE_DEPTH_MAX + 2];
	msgpack_zone *z = msgpack_zone_new(4096);
	msgpack_object back;
	struct proto_err err;
	char *text;
	json_t *j;

	for (unsigned i = 0; i <= HIVE_DEPTH_MAX; i++) {
		o[i].type = MSGPACK_OBJECT_ARRAY;
		o[i].via.array.size = 1;
		o[i].via.array.ptr = &o[i + 1];
	}
	o[HIVE_DEPTH_MAX + 1].type = MSGPACK_OBJECT_NIL;
	cr_assert_null(proto_obj_to_json(&o[0], &err));
	cr_assert_eq(err.code, PROTO_E_SIZE);
	j = proto_obj_to_json(&o[1], &err);
	cr_assert_not_null(j, "depth %d is allowed", HIVE_DEPTH_MAX);
	cr_assert_eq(proto_json_to_obj(j, z, &back, &err), 0);
	json_decref(j);

	text = pb_expand("~d33~");
	j = json_loads(text, 0, NULL);
	cr_assert_not_null(j);
	cr_assert_eq(proto_json_to_obj(j, z, &back, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	json_decref(j);
	free(text);
	text = pb_expand("{\"a\": ~d32~}");
	j = json_loads(text, 0, NULL);
	cr_assert_eq(proto_json_to_obj(j, z, &back, &err), -1,
	    "an object around 32 arrays is 33 deep");
	json_decref(j);
	free(text);
	msgpack_zone_free(z);
}

Test(json, json_to_msgpack_and_back)
{
	static const char *const texts[] = {
		"null", "true", "false", "0", "-7", "9223372036854775807",
		"-9223372036854775808", "0.25", "-1e300", "\"\"",
		"\"caf\\u00e9 \\u0000 nul\"", "[]", "{}",
		"{\"b\":[1,{\"c\":null}],\"a\":\"x\",\"\":2}",
	};
	msgpack_zone *z = msgpack_zone_new(4096);

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		json_t *j = json_loads(texts[i], JSON_DECODE_ANY |
		    JSON_ALLOW_NUL, NULL), *j2;
		msgpack_object o;
		struct proto_err err;

		cr_assert_not_null(j, "%s", texts[i]);
		cr_assert_eq(proto_json_to_obj(j, z, &o, &err), 0, "%s: %s",
		    texts[i], err.detail);
		j2 = proto_obj_to_json(&o, &err);
		cr_assert_not_null(j2, "%s: %s", texts[i], err.detail);
		cr_assert(json_equal(j, j2), "%s changed", texts[i]);
		json_decref(j);
		json_decref(j2);
	}
	msgpack_zone_free(z);
}

Test(json, types_of_converted_values)
{
	msgpack_zone *z = msgpack_zone_new(4096);
	json_t *j = json_loads("[5, -5, 1.5, \"s\", {\"k\": true}]", 0, NULL);
	msgpack_object o;
	struct proto_err err;

	cr_assert_eq(proto_json_to_obj(j, z, &o, &err), 0);
	cr_assert_eq(o.type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(o.via.array.ptr[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	cr_assert_eq(o.via.array.ptr[1].type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
	cr_assert_eq(o.via.array.ptr[2].type, MSGPACK_OBJECT_FLOAT64);
	cr_assert_eq(o.via.array.ptr[3].type, MSGPACK_OBJECT_STR);
	cr_assert_eq(o.via.array.ptr[4].type, MSGPACK_OBJECT_MAP);
	cr_assert_eq(o.via.array.ptr[4].via.map.ptr[0].key.type,
	    MSGPACK_OBJECT_STR);
	cr_assert_eq(proto_json_to_obj(NULL, z, &o, &err), -1);
	json_decref(j);
	msgpack_zone_free(z);
}
