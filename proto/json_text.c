/*
 * json_text.c - msgpack written straight as compact JSON text, without
 * building a jansson tree: the bytes json_dumps(proto_obj_to_json(o),
 * JSON_ENCODE_ANY | JSON_COMPACT) would give, for a quarter less CPU in
 * the recorder (0.44 -> 0.34 s per 50k tasks in bench_recorder).
 *
 * To give the same bytes it copies jansson's choices: its string escapes
 * ('"', '\\' and control characters; the rest as it is), and reals as
 * %.17g with ".0" when they would read back as integers and the exponent
 * without '+' or leading zeros.  What has a JSON form is json.c's rules
 * (proto_json_form and the key rules), and UTF-8 is common/util.c's
 * utf8_seq, the rules jansson applies.  tests/fuzz/fuzz_json.c checks
 * both ways agree, on the text and on what they refuse.
 */
#include "proto_int.h"

#include <stdio.h>
#include <stdlib.h>

/* The text being written, and where its first error goes. */
struct jtext {
	struct hbuf b;
	struct proto_err *err;
};

/*
 * Append n bytes, always leaving room for the closing NUL.  This runs
 * once per token, so the case with room is here in line: through
 * hbuf_add the writer took twice as long (1.05 s against 0.51 s for a
 * million 200-byte payloads).
 */
static inline int
jt_add(struct jtext *b, const char *s, size_t n)
{
	if (n == 0)
		return 0;
	if (b->b.cap - b->b.len <= n && hbuf_reserve(&b->b, n + 1) == -1)
		return proto_fail(b->err, PROTO_E_TOOBIG, "", "out of memory");
	memcpy(b->b.p + b->b.len, s, n);
	b->b.len += n;
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
				return proto_json_not_utf8(what, b->err);
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

	for (uint32_t i = 0; i < m->size; i++)
		if (proto_json_key(&m->ptr[i].key, b->err) == -1)
			return -1;
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
		return proto_json_key_twice(dup, b->err);
	return 0;
}

static int
jt_value(struct jtext *b, const msgpack_object *o, unsigned depth)
{
	if (proto_json_form(o, depth, b->err) == -1)
		return -1;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return jt_add(b, "null", 4);
	case MSGPACK_OBJECT_BOOLEAN:
		return o->via.boolean ? jt_add(b, "true", 4) :
		    jt_add(b, "false", 5);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return jt_u64(b, o->via.u64, 0);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return jt_u64(b, o->via.i64 == INT64_MIN ?
		    (uint64_t)INT64_MAX + 1 : (uint64_t)-o->via.i64, 1);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return jt_real(b, o->via.f64);
	case MSGPACK_OBJECT_STR:
		return jt_str(b, o->via.str.ptr, o->via.str.size, "string");
	case MSGPACK_OBJECT_ARRAY:
		if (jt_add(b, "[", 1) == -1)
			return -1;
		for (uint32_t i = 0; i < o->via.array.size; i++)
			if ((i > 0 && jt_add(b, ",", 1) == -1) ||
			    jt_value(b, &o->via.array.ptr[i], depth - 1) == -1)
				return -1;
		return jt_add(b, "]", 1);
	case MSGPACK_OBJECT_MAP:
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
		return -1;      /* proto_json_form refused it */
	}
}

char *
proto_obj_json_text(const msgpack_object *o, size_t *len,
    struct proto_err *err)
{
	struct jtext t = { { NULL, 0, 0, 0 }, err };

	if (jt_value(&t, o, HIVE_DEPTH_MAX) == -1)
		goto fail;
	if (hbuf_reserve(&t.b, 1) == -1) {     /* room for the NUL */
		proto_fail(err, PROTO_E_TOOBIG, "", "out of memory");
		goto fail;
	}
	t.b.p[t.b.len] = '\0';
	if (len != NULL)
		*len = t.b.len;
	return t.b.p;
fail:
	hbuf_free(&t.b);
	return NULL;
}
