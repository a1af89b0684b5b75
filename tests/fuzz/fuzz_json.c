/*
 * fuzz_json.c - libFuzzer target for the msgpack <-> JSON conversion that
 * handlers see.  The input is read both ways:
 *
 *   as msgpack:  value --to_json--> j --to_obj--> value'   value == value'
 *                j --json_dumps--> text --json_loads--> j'  j == j'
 *                value --proto_obj_json_text--> text'       text == text'
 *                (and it refuses exactly what to_json refuses)
 *   as JSON:     j --to_obj--> value --pack--> bytes --proto_decode_value
 *                --to_json--> j'                            j == j'
 *
 * A value that converts one way must come back unchanged (float32 widens
 * to float64, which is exact), and what jansson parses always converts.
 * Seeds: tests/fuzz/corpus/json/ (tests/fuzz/gen_corpus.c).
 */
#include <jansson.h>

#include "fuzz_common.h"

/* Same value, where a float32 and a float64 of equal value are equal. */
static void
same_value(const msgpack_object *a, const msgpack_object *b, unsigned depth)
{
	FZ_CHECK(depth <= HIVE_DEPTH_MAX + 1);
	if (a->type == MSGPACK_OBJECT_FLOAT32 ||
	    a->type == MSGPACK_OBJECT_FLOAT64) {
		FZ_CHECK(b->type == MSGPACK_OBJECT_FLOAT64 ||
		    b->type == MSGPACK_OBJECT_FLOAT32);
		FZ_CHECK(a->via.f64 == b->via.f64);
		return;
	}
	FZ_CHECK(a->type == b->type);
	switch (a->type) {
	case MSGPACK_OBJECT_NIL:
		return;
	case MSGPACK_OBJECT_BOOLEAN:
		FZ_CHECK(a->via.boolean == b->via.boolean);
		return;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		FZ_CHECK(a->via.u64 == b->via.u64);
		return;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		FZ_CHECK(a->via.i64 == b->via.i64);
		return;
	case MSGPACK_OBJECT_STR:
		FZ_CHECK(a->via.str.size == b->via.str.size);
		FZ_CHECK(a->via.str.size == 0 || memcmp(a->via.str.ptr,
		    b->via.str.ptr, a->via.str.size) == 0);
		return;
	case MSGPACK_OBJECT_ARRAY:
		FZ_CHECK(a->via.array.size == b->via.array.size);
		for (uint32_t i = 0; i < a->via.array.size; i++)
			same_value(&a->via.array.ptr[i], &b->via.array.ptr[i],
			    depth + 1);
		return;
	case MSGPACK_OBJECT_MAP:
		/* jansson keeps insertion order, keys are unique */
		FZ_CHECK(a->via.map.size == b->via.map.size);
		for (uint32_t i = 0; i < a->via.map.size; i++) {
			same_value(&a->via.map.ptr[i].key,
			    &b->via.map.ptr[i].key, depth + 1);
			same_value(&a->via.map.ptr[i].val,
			    &b->via.map.ptr[i].val, depth + 1);
		}
		return;
	default:
		FZ_CHECK(!"a value with no JSON form was converted");
	}
}

static void
as_msgpack(const uint8_t *data, size_t size)
{
	msgpack_unpacked up;
	msgpack_object back;
	msgpack_zone *z;
	struct proto_err err, err2;
	json_t *j, *j2;
	char *text, *direct;
	size_t dlen;

	memset(&err, 0, sizeof(err));
	memset(&err2, 0, sizeof(err2));
	if (proto_decode_value((const char *)data, size, &up, &err) == -1) {
		fz_err_ok(&err);
		return;
	}
	direct = proto_obj_json_text(&up.data, &dlen, &err2);
	if ((j = proto_obj_to_json(&up.data, &err)) == NULL) {
		fz_err_ok(&err);
		/* the direct writer refuses what the tree refuses */
		FZ_CHECK(direct == NULL);
		fz_err_ok(&err2);
		msgpack_unpacked_destroy(&up);
		return;
	}
	FZ_CHECK(direct != NULL);
	FZ_CHECK((z = msgpack_zone_new(4096)) != NULL);
	FZ_CHECK(proto_json_to_obj(j, z, &back, &err) == 0);
	same_value(&up.data, &back, 0);
	text = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
	FZ_CHECK(text != NULL);
	/* and writes the same text */
	FZ_CHECK(dlen == strlen(text) && memcmp(direct, text, dlen) == 0);
	free(direct);
	j2 = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	FZ_CHECK(j2 != NULL);
	FZ_CHECK(json_equal(j, j2));
	json_decref(j2);
	free(text);
	json_decref(j);
	msgpack_zone_free(z);
	msgpack_unpacked_destroy(&up);
}

static void
as_json(const uint8_t *data, size_t size)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked up;
	msgpack_object o;
	msgpack_zone *z;
	struct proto_err err;
	json_t *j, *j2;

	j = json_loadb((const char *)data, size, JSON_DECODE_ANY |
	    JSON_ALLOW_NUL, NULL);
	if (j == NULL)
		return;
	FZ_CHECK((z = msgpack_zone_new(4096)) != NULL);
	memset(&err, 0, sizeof(err));
	if (proto_json_to_obj(j, z, &o, &err) == -1) {
		/* only depth can stop it */
		fz_err_ok(&err);
		FZ_CHECK(err.code == PROTO_E_SIZE);
		goto out;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	FZ_CHECK(msgpack_pack_object(&pk, o) == 0);
	FZ_CHECK(proto_decode_value(sb.data, sb.size, &up, &err) == 0);
	same_value(&o, &up.data, 0);
	j2 = proto_obj_to_json(&up.data, &err);
	FZ_CHECK(j2 != NULL);
	FZ_CHECK(json_equal(j, j2));
	json_decref(j2);
	msgpack_unpacked_destroy(&up);
	msgpack_sbuffer_destroy(&sb);
out:
	msgpack_zone_free(z);
	json_decref(j);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	as_msgpack(data, size);
	as_json(data, size);
	return 0;
}
