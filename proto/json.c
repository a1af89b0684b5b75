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

/* ---- msgpack -> JSON text, without a tree ---- */

struct jtext {
	char *p;
	size_t len, cap;
	struct proto_err *err;
};

static int
jt_add(struct jtext *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL)
			return proto_fail(b->err, PROTO_E_TOOBIG, "",
			    "out of memory");
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

/* A JSON string: '"', '\' and control characters escaped as jansson
 * does, the rest as it is; -1 if s is not UTF-8. */
static int
jt_str(struct jtext *b, const char *str, size_t n, const char *what)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;

	if (jt_add(b, "\"", 1) == -1)
		return -1;
	while (i < n) {
		unsigned char c = s[i];
		char esc[8];
		size_t k;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0x80) {
			if ((k = utf8_seq(s + i, n - i)) == 0)
				return proto_fail(b->err, PROTO_E_VALUE, "",
				    "%s is not UTF-8", what);
			i += k;
			continue;
		}
		if (jt_add(b, str + run, i - run) == -1)
			return -1;
		switch (c) {
		case '"': memcpy(esc, "\\\"", 3); break;
		case '\\': memcpy(esc, "\\\\", 3); break;
		case '\b': memcpy(esc, "\\b", 3); break;
		case '\f': memcpy(esc, "\\f", 3); break;
		case '\n': memcpy(esc, "\\n", 3); break;
		case '\r': memcpy(esc, "\\r", 3); break;
		case '\t': memcpy(esc, "\\t", 3); break;
		default: snprintf(esc, sizeof(esc), "\\u%04X", c); break;
		}
		if (jt_add(b, esc, strlen(esc)) == -1)
			return -1;
		run = ++i;
	}
	if (jt_add(b, str + run, n - run) == -1)
		return -1;
	return jt_add(b, "\"", 1);
}

static int
jt_u64(struct jtext *b, uint64_t v, int neg)
{
	char d[24];
	size_t i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	if (neg)
		d[--i] = '-';
	return jt_add(b, d + i, sizeof(d) - i);
}

/* As jansson writes a real: %.17g, with ".0" when it would read back as
 * an integer, and the exponent without '+' or leading zeros. */
static int
jt_real(struct jtext *b, double v)
{
	char d[40], *e, *z;
	int n = snprintf(d, sizeof(d), "%.17g", v);

	if (n < 0 || (size_t)n >= sizeof(d) - 2)
		return proto_fail(b->err, PROTO_E_VALUE, "", "float");
	if (strpbrk(d, ".e") == NULL) {
		memcpy(d + n, ".0", 3);
		n += 2;
	}
	if ((e = strchr(d, 'e')) != NULL) {
		e++;
		if (*e == '-')
			e++;
		z = *e == '+' ? e + 1 : e;
		while (*z == '0' && z[1] != '\0')
			z++;
		memmove(e, z, strlen(z) + 1);
		n = (int)strlen(d);
	}
	return jt_add(b, d, (size_t)n);
}

static int
kcmp(const void *a, const void *b, void *keys)
{
	const msgpack_object *x = (const msgpack_object *)keys +
	    *(const uint32_t *)a;
	const msgpack_object *y = (const msgpack_object *)keys +
	    *(const uint32_t *)b;
	uint32_t n = x->via.str.size < y->via.str.size ? x->via.str.size :
	    y->via.str.size;
	int c = n ? memcmp(x->via.str.ptr, y->via.str.ptr, n) : 0;

	return c ? c : (x->via.str.size > y->via.str.size) -
	    (x->via.str.size < y->via.str.size);
}

/* Keys of map m: strings, without NUL, each once (for a large map, found
 * by sorting their indexes). */
static int
jt_keys(struct jtext *b, const msgpack_object_map *m)
{
	const msgpack_object *dup = NULL;

	for (uint32_t i = 0; i < m->size; i++) {
		const msgpack_object *k = &m->ptr[i].key;
		if (k->type != MSGPACK_OBJECT_STR)
			return proto_fail(b->err, PROTO_E_NOTMAP, "",
			    "map key is not a string");
		if (k->via.str.size > 0 &&
		    memchr(k->via.str.ptr, '\0', k->via.str.size) != NULL)
			return proto_fail(b->err, PROTO_E_VALUE, "",
			    "map key contains NUL");
	}
	if (m->size <= 8) {
		for (uint32_t i = 1; i < m->size && dup == NULL; i++)
			for (uint32_t j = 0; j < i; j++)
				if (m->ptr[i].key.via.str.size ==
				    m->ptr[j].key.via.str.size &&
				    (m->ptr[i].key.via.str.size == 0 ||
				    memcmp(m->ptr[i].key.via.str.ptr,
				    m->ptr[j].key.via.str.ptr,
				    m->ptr[i].key.via.str.size) == 0)) {
					dup = &m->ptr[i].key;
					break;
				}
	} else {
		msgpack_object *keys = malloc(m->size * sizeof(*keys));
		uint32_t *ix = malloc(m->size * sizeof(*ix));
		if (keys == NULL || ix == NULL) {
			free(keys);
			free(ix);
			return proto_fail(b->err, PROTO_E_TOOBIG, "",
			    "out of memory");
		}
		for (uint32_t i = 0; i < m->size; i++) {
			keys[i] = m->ptr[i].key;
			ix[i] = i;
		}
		qsort_r(ix, m->size, sizeof(*ix), kcmp, keys);
		for (uint32_t i = 1; i < m->size && dup == NULL; i++)
			if (kcmp(&ix[i - 1], &ix[i], keys) == 0)
				dup = &m->ptr[ix[i]].key;
		free(keys);
		free(ix);
	}
	if (dup != NULL)
		return proto_fail(b->err, PROTO_E_DUPLICATE, "",
		    "key \"%.*s\" twice", (int)(dup->via.str.size > 32 ? 32 :
		    dup->via.str.size), dup->via.str.ptr ? dup->via.str.ptr : "");
	return 0;
}

static int
jt_value(struct jtext *b, const msgpack_object *o, unsigned depth)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return jt_add(b, "null", 4);
	case MSGPACK_OBJECT_BOOLEAN:
		return o->via.boolean ? jt_add(b, "true", 4) :
		    jt_add(b, "false", 5);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return proto_fail(b->err, PROTO_E_SIZE, "",
			    "integer %" PRIu64 " > %" PRId64 " has no JSON form",
			    o->via.u64, INT64_MAX);
		return jt_u64(b, o->via.u64, 0);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return jt_u64(b, o->via.i64 == INT64_MIN ?
		    (uint64_t)INT64_MAX + 1 : (uint64_t)-o->via.i64, 1);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!isfinite(o->via.f64))
			return proto_fail(b->err, PROTO_E_VALUE, "",
			    "non-finite float has no JSON form");
		return jt_real(b, o->via.f64);
	case MSGPACK_OBJECT_STR:
		return jt_str(b, o->via.str.ptr, o->via.str.size, "string");
	case MSGPACK_OBJECT_BIN:
	case MSGPACK_OBJECT_EXT:
		return proto_fail(b->err, PROTO_E_TYPE, "", "%s has no JSON form",
		    o->type == MSGPACK_OBJECT_BIN ? "bin" : "ext");
	case MSGPACK_OBJECT_ARRAY:
		if (depth == 0)
			break;
		if (jt_add(b, "[", 1) == -1)
			return -1;
		for (uint32_t i = 0; i < o->via.array.size; i++)
			if ((i > 0 && jt_add(b, ",", 1) == -1) ||
			    jt_value(b, &o->via.array.ptr[i], depth - 1) == -1)
				return -1;
		return jt_add(b, "]", 1);
	case MSGPACK_OBJECT_MAP:
		if (depth == 0)
			break;
		if (jt_keys(b, &o->via.map) == -1 || jt_add(b, "{", 1) == -1)
			return -1;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			if ((i > 0 && jt_add(b, ",", 1) == -1) ||
			    jt_str(b, kv->key.via.str.ptr, kv->key.via.str.size,
			    "map key") == -1 || jt_add(b, ":", 1) == -1 ||
			    jt_value(b, &kv->val, depth - 1) == -1)
				return -1;
		}
		return jt_add(b, "}", 1);
	default:
		return proto_fail(b->err, PROTO_E_TYPE, "",
		    "unknown msgpack type %d", (int)o->type);
	}
	return proto_fail(b->err, PROTO_E_SIZE, "", "nesting deeper than %u",
	    HIVE_DEPTH_MAX);
}

char *
proto_obj_json_text(const msgpack_object *o, size_t *len,
    struct proto_err *err)
{
	struct jtext b = { NULL, 0, 0, err };

	if (jt_value(&b, o, HIVE_DEPTH_MAX) == -1) {
		free(b.p);
		return NULL;
	}
	if (jt_add(&b, "", 0) == -1) {   /* room for the NUL */
		free(b.p);
		return NULL;
	}
	b.p[b.len] = '\0';
	if (len != NULL)
		*len = b.len;
	return b.p;
}
