/*
 * json.c - msgpack values <-> jansson values.  Handlers speak JSON: the
 * worker turns a task's payload into JSON for them and their JSON result
 * and memory back into msgpack.
 *
 * Not every msgpack value has a JSON form: bin and ext have none, maps
 * must have string keys (each once), floats must be finite, integers must
 * fit jansson's json_int_t (int64), strings must be UTF-8, and keys must
 * not hold NUL (JSON allows it, jansson cannot read it back).  Those are
 * refused, never mangled.  Both directions nest at most HIVE_DEPTH_MAX
 * containers, so the recursion here is bounded.
 */
#include "proto_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>

static json_t *
to_json(const msgpack_object *o, unsigned depth, struct proto_err *err)
{
	json_t *j = NULL, *v = NULL;

	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		j = json_null();
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		j = json_boolean(o->via.boolean);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX) {
			proto_fail(err, PROTO_E_SIZE, "",
			    "integer %" PRIu64 " > %" PRId64 " has no JSON form",
			    o->via.u64, INT64_MAX);
			return NULL;
		}
		j = json_integer((json_int_t)o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		j = json_integer((json_int_t)o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!isfinite(o->via.f64)) {
			proto_fail(err, PROTO_E_VALUE, "",
			    "non-finite float has no JSON form");
			return NULL;
		}
		j = json_real(o->via.f64);
		break;
	case MSGPACK_OBJECT_STR:
		/* jansson wants a pointer even for "" */
		if ((j = json_stringn(o->via.str.ptr ? o->via.str.ptr : "",
		    o->via.str.size)) == NULL) {
			proto_fail(err, PROTO_E_VALUE, "", "string is not UTF-8");
			return NULL;
		}
		break;
	case MSGPACK_OBJECT_BIN:
	case MSGPACK_OBJECT_EXT:
		proto_fail(err, PROTO_E_TYPE, "", "%s has no JSON form",
		    o->type == MSGPACK_OBJECT_BIN ? "bin" : "ext");
		return NULL;
	case MSGPACK_OBJECT_ARRAY:
		if (depth == 0)
			goto deep;
		if ((j = json_array()) == NULL)
			goto nomem;
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if ((v = to_json(&o->via.array.ptr[i], depth - 1,
			    err)) == NULL)
				goto err;
			if (json_array_append_new(j, v) == -1)
				goto nomem;
		}
		return j;
	case MSGPACK_OBJECT_MAP:
		if (depth == 0)
			goto deep;
		if ((j = json_object()) == NULL)
			goto nomem;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			const char *kp;

			if (k->type != MSGPACK_OBJECT_STR) {
				proto_fail(err, PROTO_E_NOTMAP, "",
				    "map key is not a string");
				goto err;
			}
			kp = k->via.str.ptr ? k->via.str.ptr : "";
			/* JSON allows "\u0000" in a key but jansson cannot
			 * read one back: refuse what Hive could not read from
			 * a handler either. */
			if (memchr(kp, '\0', k->via.str.size) != NULL) {
				proto_fail(err, PROTO_E_VALUE, "",
				    "map key contains NUL");
				goto err;
			}
			if (json_object_getn(j, kp, k->via.str.size) != NULL) {
				proto_fail(err, PROTO_E_DUPLICATE, "",
				    "key \"%.*s\" twice", (int)(k->via.str.size
				    > 32 ? 32 : k->via.str.size), kp);
				goto err;
			}
			if ((v = to_json(&o->via.map.ptr[i].val, depth - 1,
			    err)) == NULL)
				goto err;
			/* fails on a key that is not UTF-8 (v is freed) */
			if (json_object_setn_new(j, kp, k->via.str.size,
			    v) == -1) {
				proto_fail(err, PROTO_E_VALUE, "",
				    "map key is not UTF-8");
				goto err;
			}
		}
		return j;
	default:
		proto_fail(err, PROTO_E_TYPE, "", "unknown msgpack type %d",
		    (int)o->type);
		return NULL;
	}
	if (j == NULL)
		goto nomem;
	return j;

deep:
	proto_fail(err, PROTO_E_SIZE, "", "nesting deeper than %u",
	    HIVE_DEPTH_MAX);
	return NULL;
nomem:
	proto_fail(err, PROTO_E_TOOBIG, "", "out of memory");
err:
	json_decref(j);
	return NULL;
}

/*
 * A new JSON value (the caller json_decref()s it) for o, or NULL with err
 * set.  The error's field is empty: the caller knows which field it
 * converted and may fill it in.
 */
json_t *
proto_obj_to_json(const msgpack_object *o, struct proto_err *err)
{
	return to_json(o, HIVE_DEPTH_MAX, err);
}

static int
to_obj(json_t *j, unsigned depth, msgpack_zone *z, msgpack_object *out,
    struct proto_err *err)
{
	memset(out, 0, sizeof(*out));
	switch (json_typeof(j)) {
	case JSON_NULL:
		out->type = MSGPACK_OBJECT_NIL;
		return 0;
	case JSON_TRUE:
	case JSON_FALSE:
		out->type = MSGPACK_OBJECT_BOOLEAN;
		out->via.boolean = json_is_true(j);
		return 0;
	case JSON_INTEGER: {
		json_int_t i = json_integer_value(j);

		if (i >= 0) {
			out->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
			out->via.u64 = (uint64_t)i;
		} else {
			out->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
			out->via.i64 = i;
		}
		return 0;
	}
	case JSON_REAL:
		if (!isfinite(json_real_value(j)))
			return proto_fail(err, PROTO_E_VALUE, "",
			    "non-finite float");
		out->type = MSGPACK_OBJECT_FLOAT64;
		out->via.f64 = json_real_value(j);
		return 0;
	case JSON_STRING: {
		size_t n = json_string_length(j);
		char *s;

		if (n > UINT32_MAX)
			return proto_fail(err, PROTO_E_SIZE, "",
			    "string of %zu bytes", n);
		if (n > 0 && (s = msgpack_zone_malloc_no_align(z, n)) == NULL)
			goto nomem;
		out->type = MSGPACK_OBJECT_STR;
		if (n > 0) {
			memcpy(s, json_string_value(j), n);
			out->via.str.ptr = s;
		}
		out->via.str.size = (uint32_t)n;
		return 0;
	}
	case JSON_ARRAY: {
		size_t n = json_array_size(j);

		if (depth == 0)
			goto deep;
		if (n > UINT32_MAX)
			return proto_fail(err, PROTO_E_SIZE, "", "array too long");
		out->type = MSGPACK_OBJECT_ARRAY;
		if (n == 0)
			return 0;
		out->via.array.ptr = msgpack_zone_malloc(z,
		    n * sizeof(msgpack_object));
		if (out->via.array.ptr == NULL)
			goto nomem;
		out->via.array.size = (uint32_t)n;
		for (size_t i = 0; i < n; i++)
			if (to_obj(json_array_get(j, i), depth - 1, z,
			    &out->via.array.ptr[i], err) == -1)
				return -1;
		return 0;
	}
	case JSON_OBJECT: {
		size_t n = json_object_size(j), i = 0;
		void *it;

		if (depth == 0)
			goto deep;
		if (n > UINT32_MAX)
			return proto_fail(err, PROTO_E_SIZE, "", "object too big");
		out->type = MSGPACK_OBJECT_MAP;
		if (n == 0)
			return 0;
		out->via.map.ptr = msgpack_zone_malloc(z,
		    n * sizeof(msgpack_object_kv));
		if (out->via.map.ptr == NULL)
			goto nomem;
		for (it = json_object_iter(j); it != NULL && i < n;
		    it = json_object_iter_next(j, it), i++) {
			msgpack_object_kv *kv = &out->via.map.ptr[i];
			size_t kl = json_object_iter_key_len(it);
			char *k = NULL;

			if (kl > UINT32_MAX)
				return proto_fail(err, PROTO_E_SIZE, "",
				    "key too long");
			if (kl > 0 && (k = msgpack_zone_malloc_no_align(z,
			    kl)) == NULL)
				goto nomem;
			if (kl > 0)
				memcpy(k, json_object_iter_key(it), kl);
			kv->key.type = MSGPACK_OBJECT_STR;
			kv->key.via.str.ptr = k;
			kv->key.via.str.size = (uint32_t)kl;
			if (to_obj(json_object_iter_value(it), depth - 1, z,
			    &kv->val, err) == -1)
				return -1;
		}
		out->via.map.size = (uint32_t)i;
		return 0;
	}
	}
	return proto_fail(err, PROTO_E_TYPE, "", "unknown JSON type");
deep:
	return proto_fail(err, PROTO_E_SIZE, "", "nesting deeper than %u",
	    HIVE_DEPTH_MAX);
nomem:
	return proto_fail(err, PROTO_E_TOOBIG, "", "out of memory");
}

/*
 * Build the msgpack form of j in zone z (strings are copied into it).  On
 * failure *out is undefined and what was allocated stays in z until the
 * zone is freed.
 */
int
proto_json_to_obj(const struct json_t *j, msgpack_zone *z,
    msgpack_object *out, struct proto_err *err)
{
	if (j == NULL)
		return proto_fail(err, PROTO_E_MALFORMED, "", "no value");
	/* jansson's read accessors take non-const pointers; nothing here
	 * changes j. */
	return to_obj((json_t *)j, HIVE_DEPTH_MAX, z, out, err);
}
