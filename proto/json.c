/*
 * json.c - msgpack values <-> jansson values, and the rules of which
 * msgpack values have a JSON form.  Handlers speak JSON: the worker turns
 * a task's payload into JSON for them and their JSON result and memory
 * back into msgpack.  json_text.c writes JSON text straight from msgpack
 * by the same rules.
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

/* ---- what has a JSON form ---- */

/*
 * The rules are written once, here, as the errors they give; each walker
 * (to_json below, jt_value in json_text.c) applies them where it meets
 * the value, so either refuses the same values with the same words.
 */

int
proto_json_form(const msgpack_object *o, unsigned depth,
    struct proto_err *err)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
	case MSGPACK_OBJECT_BOOLEAN:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
	case MSGPACK_OBJECT_STR:
		return 0;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return proto_fail(err, PROTO_E_SIZE, "",
			    "integer %" PRIu64 " > %" PRId64 " has no JSON form",
			    o->via.u64, INT64_MAX);
		return 0;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!isfinite(o->via.f64))
			return proto_fail(err, PROTO_E_VALUE, "",
			    "non-finite float has no JSON form");
		return 0;
	case MSGPACK_OBJECT_BIN:
	case MSGPACK_OBJECT_EXT:
		return proto_fail(err, PROTO_E_TYPE, "", "%s has no JSON form",
		    o->type == MSGPACK_OBJECT_BIN ? "bin" : "ext");
	case MSGPACK_OBJECT_ARRAY:
	case MSGPACK_OBJECT_MAP:
		if (depth == 0)
			return proto_json_too_deep(err);
		return 0;
	}
	return proto_fail(err, PROTO_E_TYPE, "", "unknown msgpack type %d",
	    (int)o->type);
}

int
proto_json_key(const msgpack_object *k, struct proto_err *err)
{
	if (k->type != MSGPACK_OBJECT_STR)
		return proto_fail(err, PROTO_E_NOTMAP, "",
		    "map key is not a string");
	/* JSON allows "\u0000" in a key but jansson cannot read one back:
	 * refuse what Hive could not read from a handler either. */
	if (k->via.str.size > 0 &&
	    memchr(k->via.str.ptr, '\0', k->via.str.size) != NULL)
		return proto_fail(err, PROTO_E_VALUE, "", "map key contains NUL");
	return 0;
}

int
proto_json_key_twice(const msgpack_object *k, struct proto_err *err)
{
	return proto_fail(err, PROTO_E_DUPLICATE, "", "key \"%.*s\" twice",
	    (int)(k->via.str.size > 32 ? 32 : k->via.str.size),
	    k->via.str.ptr ? k->via.str.ptr : "");
}

int
proto_json_not_utf8(const char *what, struct proto_err *err)
{
	return proto_fail(err, PROTO_E_VALUE, "", "%s is not UTF-8", what);
}

int
proto_json_too_deep(struct proto_err *err)
{
	return proto_fail(err, PROTO_E_SIZE, "", "nesting deeper than %u",
	    HIVE_DEPTH_MAX);
}

/* ---- msgpack -> jansson ---- */

static json_t *to_json(const msgpack_object *, unsigned, struct proto_err *);

static json_t *
nomem(struct proto_err *err)
{
	proto_fail(err, PROTO_E_TOOBIG, "", "out of memory");
	return NULL;
}

static json_t *
array_to_json(const msgpack_object_array *a, unsigned depth,
    struct proto_err *err)
{
	json_t *j, *v;

	if ((j = json_array()) == NULL)
		return nomem(err);
	for (uint32_t i = 0; i < a->size; i++) {
		if ((v = to_json(&a->ptr[i], depth - 1, err)) == NULL)
			goto err;
		if (json_array_append_new(j, v) == -1) {
			nomem(err);
			goto err;
		}
	}
	return j;
err:
	json_decref(j);
	return NULL;
}

/* Each key is judged before its value is converted, so the first wrong
 * pair is the one reported; a key twice is found by the object itself. */
static json_t *
map_to_json(const msgpack_object_map *m, unsigned depth,
    struct proto_err *err)
{
	json_t *j, *v;

	if ((j = json_object()) == NULL)
		return nomem(err);
	for (uint32_t i = 0; i < m->size; i++) {
		const msgpack_object *k = &m->ptr[i].key;
		const char *kp;

		if (proto_json_key(k, err) == -1)
			goto err;
		kp = k->via.str.ptr ? k->via.str.ptr : "";
		if (json_object_getn(j, kp, k->via.str.size) != NULL) {
			proto_json_key_twice(k, err);
			goto err;
		}
		if ((v = to_json(&m->ptr[i].val, depth - 1, err)) == NULL)
			goto err;
		/* fails on a key that is not UTF-8 (v is freed) */
		if (json_object_setn_new(j, kp, k->via.str.size, v) == -1) {
			proto_json_not_utf8("map key", err);
			goto err;
		}
	}
	return j;
err:
	json_decref(j);
	return NULL;
}

static json_t *
to_json(const msgpack_object *o, unsigned depth, struct proto_err *err)
{
	json_t *j;

	if (proto_json_form(o, depth, err) == -1)
		return NULL;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		j = json_null();
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		j = json_boolean(o->via.boolean);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		j = json_integer((json_int_t)o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		j = json_integer((json_int_t)o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		j = json_real(o->via.f64);
		break;
	case MSGPACK_OBJECT_STR:
		/* jansson wants a pointer even for "" */
		if ((j = json_stringn(o->via.str.ptr ? o->via.str.ptr : "",
		    o->via.str.size)) == NULL) {
			proto_json_not_utf8("string", err);
			return NULL;
		}
		return j;
	case MSGPACK_OBJECT_ARRAY:
		return array_to_json(&o->via.array, depth, err);
	case MSGPACK_OBJECT_MAP:
		return map_to_json(&o->via.map, depth, err);
	default:
		return NULL;    /* proto_json_form refused it */
	}
	if (j == NULL)
		return nomem(err);
	return j;
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

/* ---- jansson -> msgpack ---- */

static int to_obj(json_t *, unsigned, msgpack_zone *, msgpack_object *,
    struct proto_err *);

/* n bytes at s copied into z (none for n == 0, the pointer stays
 * NULL); -1 when out of memory. */
static int
zone_copy(msgpack_zone *z, const char *s, size_t n, const char **out)
{
	char *p;

	*out = NULL;
	if (n == 0)
		return 0;
	if ((p = msgpack_zone_malloc_no_align(z, n)) == NULL)
		return -1;
	memcpy(p, s, n);
	*out = p;
	return 0;
}

static int
string_to_obj(json_t *j, msgpack_zone *z, msgpack_object *out,
    struct proto_err *err)
{
	size_t n = json_string_length(j);

	if (n > UINT32_MAX)
		return proto_fail(err, PROTO_E_SIZE, "", "string of %zu bytes", n);
	if (zone_copy(z, json_string_value(j), n, &out->via.str.ptr) == -1)
		return proto_fail(err, PROTO_E_TOOBIG, "", "out of memory");
	out->type = MSGPACK_OBJECT_STR;
	out->via.str.size = (uint32_t)n;
	return 0;
}

static int
array_to_obj(json_t *j, unsigned depth, msgpack_zone *z,
    msgpack_object *out, struct proto_err *err)
{
	size_t n = json_array_size(j);

	if (depth == 0)
		return proto_json_too_deep(err);
	if (n > UINT32_MAX)
		return proto_fail(err, PROTO_E_SIZE, "", "array too long");
	out->type = MSGPACK_OBJECT_ARRAY;
	if (n == 0)
		return 0;
	out->via.array.ptr = msgpack_zone_malloc(z, n * sizeof(msgpack_object));
	if (out->via.array.ptr == NULL)
		return proto_fail(err, PROTO_E_TOOBIG, "", "out of memory");
	out->via.array.size = (uint32_t)n;
	for (size_t i = 0; i < n; i++)
		if (to_obj(json_array_get(j, i), depth - 1, z,
		    &out->via.array.ptr[i], err) == -1)
			return -1;
	return 0;
}

static int
object_to_obj(json_t *j, unsigned depth, msgpack_zone *z,
    msgpack_object *out, struct proto_err *err)
{
	size_t n = json_object_size(j), i = 0;
	void *it;

	if (depth == 0)
		return proto_json_too_deep(err);
	if (n > UINT32_MAX)
		return proto_fail(err, PROTO_E_SIZE, "", "object too big");
	out->type = MSGPACK_OBJECT_MAP;
	if (n == 0)
		return 0;
	out->via.map.ptr = msgpack_zone_malloc(z, n * sizeof(msgpack_object_kv));
	if (out->via.map.ptr == NULL)
		return proto_fail(err, PROTO_E_TOOBIG, "", "out of memory");
	for (it = json_object_iter(j); it != NULL && i < n;
	    it = json_object_iter_next(j, it), i++) {
		msgpack_object_kv *kv = &out->via.map.ptr[i];
		size_t kl = json_object_iter_key_len(it);

		if (kl > UINT32_MAX)
			return proto_fail(err, PROTO_E_SIZE, "", "key too long");
		memset(&kv->key, 0, sizeof(kv->key));
		if (zone_copy(z, json_object_iter_key(it), kl,
		    &kv->key.via.str.ptr) == -1)
			return proto_fail(err, PROTO_E_TOOBIG, "",
			    "out of memory");
		kv->key.type = MSGPACK_OBJECT_STR;
		kv->key.via.str.size = (uint32_t)kl;
		if (to_obj(json_object_iter_value(it), depth - 1, z, &kv->val,
		    err) == -1)
			return -1;
	}
	out->via.map.size = (uint32_t)i;
	return 0;
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
	case JSON_STRING:
		return string_to_obj(j, z, out, err);
	case JSON_ARRAY:
		return array_to_obj(j, depth, z, out, err);
	case JSON_OBJECT:
		return object_to_obj(j, depth, z, out, err);
	}
	return proto_fail(err, PROTO_E_TYPE, "", "unknown JSON type");
}

/*
 * Build the msgpack form of j in zone z (strings are copied into it).  On
 * failure *out is undefined and what was allocated stays in z until the
 * zone is freed.  j is only read (it is not const because jansson's
 * object iteration takes a non-const object).
 */
int
proto_json_to_obj(struct json_t *j, msgpack_zone *z, msgpack_object *out,
    struct proto_err *err)
{
	if (j == NULL)
		return proto_fail(err, PROTO_E_MALFORMED, "", "no value");
	return to_obj(j, HIVE_DEPTH_MAX, z, out, err);
}
