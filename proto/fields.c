/*
 * fields.c - the table-driven core of every encoder and decoder.
 *
 * A message is a msgpack map; its table (codec.c, frame.c) lists the
 * fields Hive knows.  Decoding: one pass over the map finds each known
 * field (a non-string key is E_NOTMAP, a known key twice E_DUPLICATE,
 * unknown keys are skipped so newer senders may add optional fields), then
 * the fields are checked in table order, "v" first, so a message from a
 * newer version is reported as such rather than as a field it got "wrong".
 * Encoding runs the same checks on the C struct before writing anything.
 *
 * Two kinds nest: PF_LIST (an array whose elements are maps decoded
 * against a table of their own, or values checked as one field: the tasks
 * of a workflow and their depends_on lists) and PF_IDMAP (a map keyed by
 * task ids: a task's parents).  An error inside a list names its path,
 * "tasks[2].depends_on[0]", so the one struct proto_err still says where.
 */
#include "proto_int.h"

#include <inttypes.h>
#include <stdio.h>

/* Enum fields are read and written through an int (memcpy): the enums of
 * hive_proto.h must be int-sized, which they are on every ABI Hive runs
 * on; this says so at build time. */
_Static_assert(sizeof(enum hive_status) == sizeof(int), "enum size");
_Static_assert(sizeof(enum hive_frame_type) == sizeof(int), "enum size");
_Static_assert(sizeof(enum hive_wstate) == sizeof(int), "enum size");
_Static_assert(sizeof(enum hive_ctl) == sizeof(int), "enum size");

static const char *
type_name(msgpack_object_type t)
{
	switch (t) {
	case MSGPACK_OBJECT_NIL:              return "nil";
	case MSGPACK_OBJECT_BOOLEAN:          return "bool";
	case MSGPACK_OBJECT_POSITIVE_INTEGER: return "uint";
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
	case MSGPACK_OBJECT_FLOAT32:          return "float32";
	case MSGPACK_OBJECT_FLOAT64:          return "float64";
	case MSGPACK_OBJECT_STR:              return "str";
	case MSGPACK_OBJECT_ARRAY:            return "array";
	case MSGPACK_OBJECT_MAP:              return "map";
	case MSGPACK_OBJECT_BIN:              return "bin";
	case MSGPACK_OBJECT_EXT:              return "ext";
	}
	return "unknown";
}

/* ---- string validators ---- */

int
proto_check_print(const char *s, size_t len, size_t max,
    enum proto_errcode *why)
{
	if (len == 0 || len > max) {
		*why = PROTO_E_SIZE;
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) {
			*why = PROTO_E_VALUE;
			return -1;
		}
	return 0;
}

static bool
name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

int
proto_check_name(const char *s, size_t len, enum proto_errcode *why)
{
	if (len == 0 || len > HIVE_NAME_MAX) {
		*why = PROTO_E_SIZE;
		return -1;
	}
	if (s[0] == '.' || s[0] == '-') {
		*why = PROTO_E_VALUE;
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		if (!name_char((unsigned char)s[i])) {
			*why = PROTO_E_VALUE;
			return -1;
		}
	return 0;
}

/* "name" or "name/instance", instance 1..HIVE_INSTANCE_MAX in plain
 * decimal (no sign, no leading zero). */
int
proto_check_agent(const char *s, size_t len, enum proto_errcode *why)
{
	const char *slash;
	size_t nlen, ilen;
	unsigned inst = 0;

	if (len == 0 || len > HIVE_AGENT_MAX) {
		*why = PROTO_E_SIZE;
		return -1;
	}
	slash = memchr(s, '/', len);
	nlen = slash ? (size_t)(slash - s) : len;
	if (proto_check_name(s, nlen, why) == -1) {
		*why = PROTO_E_VALUE;   /* the whole is within its limit */
		return -1;
	}
	if (slash == NULL)
		return 0;
	ilen = len - nlen - 1;
	*why = PROTO_E_VALUE;
	if (ilen == 0 || ilen > 4 || slash[1] == '0')
		return -1;
	for (size_t i = 0; i < ilen; i++) {
		if (slash[1 + i] < '0' || slash[1 + i] > '9')
			return -1;
		inst = inst * 10 + (unsigned)(slash[1 + i] - '0');
	}
	if (inst < 1 || inst > HIVE_INSTANCE_MAX)
		return -1;
	return 0;
}

/* Entry id of a Redis stream: "<ms>-<seq>", both decimal. */
static int
check_entry(const char *s, size_t len, enum proto_errcode *why)
{
	const char *dash;

	if (len == 0 || len > HIVE_ENTRY_ID_MAX) {
		*why = PROTO_E_SIZE;
		return -1;
	}
	*why = PROTO_E_VALUE;
	dash = memchr(s, '-', len);
	if (dash == NULL || dash == s || dash == s + len - 1)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (s + i != dash && (s[i] < '0' || s[i] > '9'))
			return -1;
	return 0;
}

static int
enum_find(const struct proto_enum *en, const char *s, size_t len)
{
	for (unsigned i = 0; i < en->count; i++)
		if (strlen(en->names[i]) == len &&
		    memcmp(en->names[i], s, len) == 0)
			return en->base + (int)i;
	return -1;
}

/* Check the string s of field f; shared by decoder and encoder. */
static int
check_str(const struct proto_field *f, const char *s, size_t len,
    struct proto_err *err)
{
	enum proto_errcode why = PROTO_E_SIZE;
	int rc = 0;

	switch (f->kind) {
	case PF_ID:
	case PF_PRINT:
		rc = proto_check_print(s, len, f->max, &why);
		break;
	case PF_REPLY:
		rc = proto_check_print(s, len, f->max, &why);
		if (rc == 0 && (len <= strlen(HIVE_REPLY_PREFIX) ||
		    memcmp(s, HIVE_REPLY_PREFIX, strlen(HIVE_REPLY_PREFIX)) != 0))
			return proto_fail(err, PROTO_E_VALUE, f->name,
			    "must start with \"%s\" and name something",
			    HIVE_REPLY_PREFIX);
		break;
	case PF_NAME:
		rc = proto_check_name(s, len, &why);
		if (rc == 0 && len > f->max) {
			why = PROTO_E_SIZE;
			rc = -1;
		}
		break;
	case PF_AGENT:
		rc = proto_check_agent(s, len, &why);
		break;
	case PF_ENTRY:
		rc = check_entry(s, len, &why);
		break;
	case PF_TRACE:
		if (proto_valid_traceparent(s, len) == 0)
			return 0;
		return proto_fail(err, PROTO_E_VALUE, f->name,
		    "not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)");
	case PF_TEXT:
		if (len < f->min || len > f->max)
			rc = -1;
		else if (utf8_valid(s, len) == -1)
			return proto_fail(err, PROTO_E_VALUE, f->name,
			    "not UTF-8 text without NUL");
		break;
	case PF_ENUM:
		if (enum_find(f->en, s, len) == -1)
			return proto_fail(err, PROTO_E_VALUE, f->name,
			    "\"%.*s\" is not a known value",
			    (int)(len > 32 ? 32 : len), s);
		break;
	case PF_CAP: {
		size_t at = len > 0 && s[0] == '@';

		if (proto_check_name(s + at, len - at, &why) == 0)
			return 0;
		if (len == 0)
			return proto_fail(err, PROTO_E_SIZE, f->name, "empty");
		if (len == at)
			return proto_fail(err, PROTO_E_VALUE, f->name,
			    "\"@\" names no agent");
		if (why == PROTO_E_SIZE)
			return proto_fail(err, PROTO_E_SIZE, f->name,
			    "%zu bytes > %zu", len, HIVE_NAME_MAX + at);
		return proto_fail(err, PROTO_E_VALUE, f->name,
		    "bad characters");
	}
	default:
		break;
	}
	if (rc == 0)
		return 0;
	if (why == PROTO_E_SIZE) {
		if (len == 0)
			return proto_fail(err, PROTO_E_SIZE, f->name, "empty");
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%zu bytes > %" PRIu64, len, f->max);
	}
	return proto_fail(err, PROTO_E_VALUE, f->name, "bad characters");
}

static int
check_uint(const struct proto_field *f, uint64_t u, struct proto_err *err)
{
	if (u < f->min)
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%" PRIu64 " < %" PRIu64, u, f->min);
	if (u > f->max)
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%" PRIu64 " > %" PRIu64, u, f->max);
	return 0;
}

static bool
is_str_kind(enum proto_fkind k)
{
	return k == PF_ID || k == PF_NAME || k == PF_AGENT || k == PF_PRINT ||
	    k == PF_REPLY || k == PF_ENTRY || k == PF_TEXT || k == PF_ENUM ||
	    k == PF_CAP || k == PF_TRACE;
}

/* Append s to the NUL-terminated dst of len bytes, cut to fit cap. */
static size_t
cat(char *dst, size_t len, size_t cap, const char *s)
{
	while (*s != '\0' && len + 1 < cap)
		dst[len++] = *s++;
	dst[len] = '\0';
	return len;
}

/* An error inside element i of the list f: put "name[i]" before the
 * field the error names, so "prio" becomes "tasks[2].prio" and the
 * nameless element of an id list "depends_on[0]".  The longest path the
 * tables make, "tasks[999].depends_on[99]", fits; were one longer, its
 * start would still say where. */
static int
fail_in(const struct proto_field *f, uint32_t i, struct proto_err *err)
{
	char inner[sizeof(err->field)], idx[16];
	size_t len;

	if (err == NULL)
		return -1;
	memcpy(inner, err->field, sizeof(inner));
	inner[sizeof(inner) - 1] = '\0';
	snprintf(idx, sizeof(idx), "[%" PRIu32 "]", i);
	len = cat(err->field, 0, sizeof(err->field), f->name);
	len = cat(err->field, len, sizeof(err->field), idx);
	if (inner[0] != '\0')
		len = cat(err->field, len, sizeof(err->field), ".");
	cat(err->field, len, sizeof(err->field), inner);
	return -1;
}

/*
 * A PF_IDMAP value, decoded or about to be encoded: a map of min..max
 * entries, nesting and pointers sound (proto_obj_check), every key an id
 * and none twice.  The duplicate search is quadratic: max is small
 * (HIVE_WF_DEPS_MAX) and checked first.
 */
static int
check_idmap(const struct proto_field *f, const msgpack_object *o,
    struct proto_err *err)
{
	enum proto_errcode why;
	uint64_t size = 0;
	uint32_t n;

	if (o->type != MSGPACK_OBJECT_MAP)
		return proto_fail(err, PROTO_E_TYPE, f->name,
		    "map expected, got %s", type_name(o->type));
	n = o->via.map.size;
	if (n < f->min || n > f->max)
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%" PRIu32 " entries, not %" PRIu64 "..%" PRIu64, n,
		    f->min, f->max);
	if (proto_obj_check(o, HIVE_DEPTH_MAX, &size, err, f->name) == -1)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key;

		if (k->type != MSGPACK_OBJECT_STR)
			return proto_fail(err, PROTO_E_TYPE, f->name,
			    "key %" PRIu32 " is a %s, not a str", i,
			    type_name(k->type));
		if (proto_check_print(k->via.str.ptr, k->via.str.size,
		    HIVE_ID_MAX, &why) == -1)
			return proto_fail(err, why, f->name,
			    "key %" PRIu32 " is no id (%s)", i,
			    why == PROTO_E_SIZE ? "length" : "characters");
		for (uint32_t j = 0; j < i; j++) {
			const msgpack_object *kj = &o->via.map.ptr[j].key;

			if (kj->via.str.size == k->via.str.size &&
			    memcmp(kj->via.str.ptr, k->via.str.ptr,
			    k->via.str.size) == 0)
				return proto_fail(err, PROTO_E_DUPLICATE,
				    f->name, "key '%.*s' appears twice",
				    (int)(k->via.str.size > 40 ? 40 :
				    k->via.str.size), k->via.str.ptr);
		}
	}
	return 0;
}

static uint32_t
list_count(const struct proto_field *f, const char *base)
{
	uint32_t n;

	memcpy(&n, base + f->cnt_off, sizeof(n));
	return n;
}

static char *
list_items(const struct proto_field *f, const char *base)
{
	void *items;

	memcpy(&items, base + f->off, sizeof(items));
	return items;
}

/* ---- decoding ---- */

/*
 * Each decode_* checks one present, non-nil value o against field f and
 * stores it at p, the field in the message (strings and values borrow
 * from o); decode_one picks the one for f's kind.
 */

static int decode_one(const struct proto_field *, const msgpack_object *,
    char *, msgpack_zone *, struct proto_err *);

static int
decode_version(const struct proto_field *f, const msgpack_object *o, void *p,
    struct proto_err *err)
{
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return proto_fail(err, PROTO_E_VERSION, f->name,
		    "%" PRId64 ", this side speaks %d", o->via.i64,
		    HIVE_PROTO_VERSION);
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return proto_fail(err, PROTO_E_TYPE, f->name,
		    "uint expected, got %s", type_name(o->type));
	if (o->via.u64 < 1 || o->via.u64 > HIVE_PROTO_VERSION)
		return proto_fail(err, PROTO_E_VERSION, f->name,
		    "%" PRIu64 ", this side speaks %d", o->via.u64,
		    HIVE_PROTO_VERSION);
	*(uint32_t *)p = (uint32_t)o->via.u64;
	return 0;
}

/* A str the rules of f's kind accept (check_str). */
static int
decode_checked_str(const struct proto_field *f, const msgpack_object *o,
    struct proto_err *err)
{
	if (o->type != MSGPACK_OBJECT_STR)
		return proto_fail(err, PROTO_E_TYPE, f->name,
		    "str expected, got %s", type_name(o->type));
	return check_str(f, o->via.str.ptr, o->via.str.size, err);
}

static int
decode_str(const struct proto_field *f, const msgpack_object *o, void *p,
    struct proto_err *err)
{
	struct hive_str *s = p;

	if (decode_checked_str(f, o, err) == -1)
		return -1;
	s->ptr = o->via.str.ptr;
	s->len = o->via.str.size;
	return 0;
}

static int
decode_enum(const struct proto_field *f, const msgpack_object *o, void *p,
    struct proto_err *err)
{
	int v;

	if (decode_checked_str(f, o, err) == -1)
		return -1;
	v = enum_find(f->en, o->via.str.ptr, o->via.str.size);
	memcpy(p, &v, sizeof(v));   /* enums are int-sized */
	return 0;
}

static int
decode_uint(const struct proto_field *f, const msgpack_object *o, void *p,
    struct proto_err *err)
{
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%" PRId64 " < %" PRIu64, o->via.i64, f->min);
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return proto_fail(err, PROTO_E_TYPE, f->name,
		    "uint expected, got %s", type_name(o->type));
	if (check_uint(f, o->via.u64, err) == -1)
		return -1;
	if (f->kind == PF_PID)
		*(int64_t *)p = (int64_t)o->via.u64;
	else if (f->size == 8)
		*(uint64_t *)p = o->via.u64;
	else
		*(uint32_t *)p = (uint32_t)o->via.u64;
	return 0;
}

/* PF_ANY, or PF_MAP: a value kept as it is, within f->max packed bytes
 * (0: no limit). */
static int
decode_any(const struct proto_field *f, const msgpack_object *o, void *p,
    struct proto_err *err)
{
	if (f->kind == PF_MAP && o->type != MSGPACK_OBJECT_MAP)
		return proto_fail(err, PROTO_E_TYPE, f->name,
		    "map expected, got %s", type_name(o->type));
	if (f->max > 0) {
		uint64_t size = 0;

		/* depth was bounded by the reader */
		if (proto_obj_check(o, HIVE_DEPTH_MAX, &size, err,
		    f->name) == -1)
			return -1;
		if (size > f->max)
			return proto_fail(err, PROTO_E_SIZE, f->name,
			    "%" PRIu64 " bytes > %" PRIu64, size, f->max);
	}
	*(msgpack_object *)p = *o;
	return 0;
}

static int
decode_idmap(const struct proto_field *f, const msgpack_object *o, void *p,
    struct proto_err *err)
{
	if (check_idmap(f, o, err) == -1)
		return -1;
	*(msgpack_object *)p = *o;
	return 0;
}

/* The elements go into an array allocated in z; the count and the
 * pointer into the message at base. */
static int
decode_list(const struct proto_field *f, const msgpack_object *o, char *base,
    msgpack_zone *z, struct proto_err *err)
{
	uint32_t n;
	char *items = NULL;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return proto_fail(err, PROTO_E_TYPE, f->name,
		    "array expected, got %s", type_name(o->type));
	n = o->via.array.size;
	if (n == 0 && f->min > 0)
		return proto_fail(err, PROTO_E_SIZE, f->name, "empty");
	if (n < f->min || n > f->max)
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%" PRIu32 " entries, not %" PRIu64 "..%" PRIu64, n,
		    f->min, f->max);
	/* n is at most max (HIVE_WF_TASKS_MAX): bounded whatever the
	 * input claims, and the reader saw n elements already. */
	if (n > 0) {
		if (z == NULL || (items = msgpack_zone_malloc(z,
		    (size_t)n * f->elsize)) == NULL)
			return proto_fail(err, PROTO_E_TOOBIG, f->name,
			    "out of memory");
		memset(items, 0, (size_t)n * f->elsize);
	}
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *e = &o->via.array.ptr[i];
		char *item = items + (size_t)i * f->elsize;

		if (f->submap && e->type != MSGPACK_OBJECT_MAP) {
			proto_fail(err, PROTO_E_TYPE, "",
			    "map expected, got %s", type_name(e->type));
			return fail_in(f, i, err);
		}
		if (f->submap ? proto_fields_decode(e, f->sub, f->nsub,
		    item, z, err) == -1 :
		    decode_one(&f->sub[0], e, item, z, err) == -1)
			return fail_in(f, i, err);
	}
	memcpy(base + f->off, &items, sizeof(items));
	memcpy(base + f->cnt_off, &n, sizeof(n));
	return 0;
}

/* bin, or str: the bytes are taken either way. */
static int
decode_raw(const struct proto_field *f, const msgpack_object *o, void *p,
    struct proto_err *err)
{
	struct hive_str *s = p;

	if (o->type == MSGPACK_OBJECT_BIN) {
		s->ptr = o->via.bin.ptr;
		s->len = o->via.bin.size;
	} else if (o->type == MSGPACK_OBJECT_STR) {
		s->ptr = o->via.str.ptr;
		s->len = o->via.str.size;
	} else {
		return proto_fail(err, PROTO_E_TYPE, f->name,
		    "bin expected, got %s", type_name(o->type));
	}
	if (s->len > f->max) {
		uint32_t n = s->len;

		s->ptr = NULL;
		s->len = 0;
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%" PRIu32 " bytes > %" PRIu64, n, f->max);
	}
	return 0;
}

static int
decode_one(const struct proto_field *f, const msgpack_object *o, char *base,
    msgpack_zone *z, struct proto_err *err)
{
	void *p = base + f->off;

	switch (f->kind) {
	case PF_VERSION:
		return decode_version(f, o, p, err);
	case PF_ID:
	case PF_NAME:
	case PF_AGENT:
	case PF_PRINT:
	case PF_REPLY:
	case PF_ENTRY:
	case PF_TEXT:
	case PF_CAP:
	case PF_TRACE:
		return decode_str(f, o, p, err);
	case PF_USAGE:
		return proto_usage_decode(o, p, err);
	case PF_ENUM:
		return decode_enum(f, o, p, err);
	case PF_UINT:
	case PF_PID:
		return decode_uint(f, o, p, err);
	case PF_MAP:
	case PF_ANY:
		return decode_any(f, o, p, err);
	case PF_IDMAP:
		return decode_idmap(f, o, p, err);
	case PF_LIST:
		return decode_list(f, o, base, z, err);
	case PF_RAW:
		return decode_raw(f, o, p, err);
	}
	return proto_fail(err, PROTO_E_TYPE, f->name, "no decoder");
}

int
proto_fields_decode(const msgpack_object *map, const struct proto_field *t,
    size_t n, void *out, msgpack_zone *z, struct proto_err *err)
{
	const msgpack_object *val[PROTO_FIELDS_MAX] = { 0 };
	size_t namelen[PROTO_FIELDS_MAX];

	if (map->type != MSGPACK_OBJECT_MAP)
		return proto_fail(err, PROTO_E_NOTMAP, "", "not a map");
	/* Each name's length once, not once per key. */
	for (size_t j = 0; j < n && j < PROTO_FIELDS_MAX; j++)
		namelen[j] = strlen(t[j].name);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;

		if (k->type != MSGPACK_OBJECT_STR)
			return proto_fail(err, PROTO_E_NOTMAP, "",
			    "key %" PRIu32 " is a %s, not a str", i,
			    type_name(k->type));
		for (size_t j = 0; j < n && j < PROTO_FIELDS_MAX; j++) {
			if (namelen[j] != k->via.str.size ||
			    memcmp(t[j].name, k->via.str.ptr,
			    k->via.str.size) != 0)
				continue;
			if (val[j] != NULL)
				return proto_fail(err, PROTO_E_DUPLICATE,
				    t[j].name, "key appears twice");
			val[j] = &map->via.map.ptr[i].val;
			break;
		}
	}
	for (size_t j = 0; j < n && j < PROTO_FIELDS_MAX; j++) {
		const struct proto_field *f = &t[j];

		if (val[j] == NULL || val[j]->type == MSGPACK_OBJECT_NIL) {
			if (f->required)
				return proto_fail(err, PROTO_E_MISSING, f->name,
				    "required");
			if (f->kind == PF_UINT && f->size == 8)
				*(uint64_t *)((char *)out + f->off) = f->dflt;
			else if (f->kind == PF_UINT)
				*(uint32_t *)((char *)out + f->off) =
				    (uint32_t)f->dflt;
			continue;
		}
		if (decode_one(f, val[j], out, z, err) == -1)
			return -1;
	}
	return 0;
}

/* ---- encoding ---- */

static uint64_t
get_uint(const struct proto_field *f, const char *base)
{
	if (f->kind == PF_PID) {
		int64_t i;

		memcpy(&i, base + f->off, sizeof(i));
		return (uint64_t)i;
	}
	if (f->size == 8) {
		uint64_t u;

		memcpy(&u, base + f->off, sizeof(u));
		return u;
	} else {
		uint32_t u;

		memcpy(&u, base + f->off, sizeof(u));
		return u;
	}
}

/* Will field f of m be written?  Absent optional fields are: empty
 * strings, nil values, empty lists, and integers that are 0 or their
 * default (0 in an optional integer means "the default", so a zeroed
 * struct is valid; unless 0 is a value of its own, zero_is_value), and
 * an optional enum at 0. */
static bool
present(const struct proto_field *f, const char *base)
{
	const void *p = base + f->off;

	if (f->required || f->kind == PF_VERSION)
		return true;
	if (f->kind == PF_ENUM) {
		int v;

		/* an optional enum's values start at 1: 0 is absent */
		memcpy(&v, p, sizeof(v));
		return v != 0;
	}
	if (is_str_kind(f->kind) || f->kind == PF_RAW)
		return ((const struct hive_str *)p)->len > 0;
	if (f->kind == PF_ANY || f->kind == PF_MAP || f->kind == PF_IDMAP)
		return ((const msgpack_object *)p)->type != MSGPACK_OBJECT_NIL;
	if (f->kind == PF_LIST)
		return list_count(f, base) > 0;
	if (f->kind == PF_USAGE)
		return ((const struct hive_usage *)p)->has != 0;
	if (f->kind == PF_PID) {
		int64_t i;

		memcpy(&i, p, sizeof(i));
		return i != 0;
	}
	if (f->zero_is_value)
		return get_uint(f, base) != f->dflt;
	return get_uint(f, base) != 0 && get_uint(f, base) != f->dflt;
}

static uint32_t
count_present(const struct proto_field *t, size_t n, const char *base)
{
	uint32_t c = 0;

	for (size_t j = 0; j < n; j++)
		c += present(&t[j], base);
	return c;
}

/*
 * The encoder's checks of one field that will be written: the rules of
 * the decode_* above, applied to the C value at p (the field in the
 * struct at base).  check_one picks the one for f's kind.
 */

static int check_one(const struct proto_field *, const char *,
    struct proto_err *);

static int
check_enum(const struct proto_field *f, const void *p, struct proto_err *err)
{
	int v;

	memcpy(&v, p, sizeof(v));
	if (v < f->en->base || v >= f->en->base + (int)f->en->count)
		return proto_fail(err, PROTO_E_VALUE, f->name,
		    "%d is not a known value", v);
	return 0;
}

/* A str or raw field is present (count_present) with bytes to point at. */
static int
check_bytes(const struct proto_field *f, const struct hive_str *s,
    struct proto_err *err)
{
	if (s->len == 0)
		return proto_fail(err, PROTO_E_MISSING, f->name, "required");
	if (s->ptr == NULL)
		return proto_fail(err, PROTO_E_VALUE, f->name, "NULL pointer");
	return 0;
}

static int
check_str_field(const struct proto_field *f, const struct hive_str *s,
    struct proto_err *err)
{
	if (check_bytes(f, s, err) == -1)
		return -1;
	return check_str(f, s->ptr, s->len, err);
}

static int
check_raw(const struct proto_field *f, const struct hive_str *s,
    struct proto_err *err)
{
	if (check_bytes(f, s, err) == -1)
		return -1;
	if (s->len > f->max)
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%" PRIu32 " bytes > %" PRIu64, s->len, f->max);
	return 0;
}

static int
check_uint_field(const struct proto_field *f, const char *base,
    struct proto_err *err)
{
	uint64_t u = get_uint(f, base);

	if (f->kind == PF_PID && (int64_t)u < 0)
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%" PRId64 " < 0", (int64_t)u);
	return check_uint(f, u, err);
}

/* PF_ANY or PF_MAP: a sound value within f->max packed bytes. */
static int
check_any(const struct proto_field *f, const msgpack_object *o,
    struct proto_err *err)
{
	uint64_t size = 0;

	if (o->type == MSGPACK_OBJECT_NIL)
		return proto_fail(err, PROTO_E_MISSING, f->name, "required");
	if (f->kind == PF_MAP && o->type != MSGPACK_OBJECT_MAP)
		return proto_fail(err, PROTO_E_TYPE, f->name,
		    "map expected, got %s", type_name(o->type));
	if (proto_obj_check(o, HIVE_DEPTH_MAX, &size, err, f->name) == -1)
		return -1;
	if (f->max > 0 && size > f->max)
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%" PRIu64 " bytes > %" PRIu64, size, f->max);
	return 0;
}

static int
check_list(const struct proto_field *f, const char *base,
    struct proto_err *err)
{
	uint32_t n = list_count(f, base), c;
	const char *items = list_items(f, base);

	if (n == 0 && f->min > 0)
		return proto_fail(err, PROTO_E_MISSING, f->name, "required");
	if (n < f->min || n > f->max)
		return proto_fail(err, PROTO_E_SIZE, f->name,
		    "%" PRIu32 " entries, not %" PRIu64 "..%" PRIu64, n,
		    f->min, f->max);
	if (items == NULL)
		return proto_fail(err, PROTO_E_VALUE, f->name, "NULL pointer");
	for (uint32_t i = 0; i < n; i++) {
		const char *item = items + (size_t)i * f->elsize;

		if (f->submap ? proto_fields_check(f->sub, f->nsub, item, &c,
		    err) == -1 : check_one(&f->sub[0], item, err) == -1)
			return fail_in(f, i, err);
	}
	return 0;
}

static int
check_one(const struct proto_field *f, const char *base,
    struct proto_err *err)
{
	const void *p = base + f->off;

	switch (f->kind) {
	case PF_VERSION:
		return 0;               /* always HIVE_PROTO_VERSION */
	case PF_ENUM:
		return check_enum(f, p, err);
	case PF_ID:
	case PF_NAME:
	case PF_AGENT:
	case PF_PRINT:
	case PF_REPLY:
	case PF_ENTRY:
	case PF_TEXT:
	case PF_CAP:
	case PF_TRACE:
		return check_str_field(f, p, err);
	case PF_USAGE:
		return proto_usage_check(p, err);
	case PF_RAW:
		return check_raw(f, p, err);
	case PF_UINT:
	case PF_PID:
		return check_uint_field(f, base, err);
	case PF_MAP:
	case PF_ANY:
		return check_any(f, p, err);
	case PF_IDMAP:
		return check_idmap(f, p, err);
	case PF_LIST:
		return check_list(f, base, err);
	}
	return proto_fail(err, PROTO_E_TYPE, f->name, "no encoder");
}

int
proto_fields_check(const struct proto_field *t, size_t n, const void *m,
    uint32_t *count, struct proto_err *err)
{
	*count = 0;
	for (size_t j = 0; j < n; j++) {
		if (!present(&t[j], m))
			continue;
		if (check_one(&t[j], m, err) == -1)
			return -1;
		(*count)++;
	}
	return 0;
}

static int
pack_cstr(msgpack_packer *pk, const char *s, size_t len)
{
	return msgpack_pack_str(pk, len) | msgpack_pack_str_body(pk, s, len);
}

/* Pack the value of field f of the struct at base (checked).  Lists
 * recurse through proto_fields_pack() (two levels: the tables nest no
 * deeper). */
static int
pack_value(msgpack_packer *pk, const struct proto_field *f, const char *base)
{
	const void *p = base + f->off;
	int rc = 0;

	if (f->kind == PF_VERSION) {
		rc |= msgpack_pack_uint32(pk, HIVE_PROTO_VERSION);
	} else if (f->kind == PF_ENUM) {
		int v;
		const char *name;

		memcpy(&v, p, sizeof(v));
		name = f->en->names[v - f->en->base];
		rc |= pack_cstr(pk, name, strlen(name));
	} else if (is_str_kind(f->kind)) {
		const struct hive_str *s = p;

		rc |= pack_cstr(pk, s->ptr, s->len);
	} else if (f->kind == PF_RAW) {
		const struct hive_str *s = p;

		rc |= msgpack_pack_bin(pk, s->len) |
		    msgpack_pack_bin_body(pk, s->ptr, s->len);
	} else if (f->kind == PF_UINT) {
		rc |= msgpack_pack_uint64(pk, get_uint(f, base));
	} else if (f->kind == PF_PID) {
		rc |= msgpack_pack_int64(pk, (int64_t)get_uint(f, base));
	} else if (f->kind == PF_USAGE) {
		rc |= proto_usage_pack(pk, p);
	} else if (f->kind == PF_LIST) {
		uint32_t n = list_count(f, base);
		const char *items = list_items(f, base);

		rc |= msgpack_pack_array(pk, n);
		for (uint32_t i = 0; i < n; i++) {
			const char *item = items + (size_t)i * f->elsize;

			if (f->submap)
				rc |= msgpack_pack_map(pk, count_present(f->sub,
				    f->nsub, item)) |
				    proto_fields_pack(pk, f->sub, f->nsub, item);
			else
				rc |= pack_value(pk, &f->sub[0], item);
		}
	} else {
		rc |= msgpack_pack_object(pk, *(const msgpack_object *)p);
	}
	return rc;
}

int
proto_fields_pack(msgpack_packer *pk, const struct proto_field *t, size_t n,
    const void *m)
{
	const char *base = m;
	int rc = 0;

	for (size_t j = 0; j < n; j++) {
		if (!present(&t[j], base))
			continue;
		rc |= pack_cstr(pk, t[j].name, strlen(t[j].name));
		rc |= pack_value(pk, &t[j], base);
	}
	return rc ? -1 : 0;
}

int
proto_encode_tables(msgpack_sbuffer *sb, size_t max,
    const struct proto_field *t1, size_t n1,
    const struct proto_field *t2, size_t n2, const void *m,
    struct proto_err *err)
{
	msgpack_packer pk;
	uint32_t c1 = 0, c2 = 0;
	size_t start = sb->size;

	if (proto_fields_check(t1, n1, m, &c1, err) == -1)
		return -1;
	if (t2 != NULL && proto_fields_check(t2, n2, m, &c2, err) == -1)
		return -1;
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	if (msgpack_pack_map(&pk, c1 + c2) != 0 ||
	    proto_fields_pack(&pk, t1, n1, m) == -1 ||
	    (t2 != NULL && proto_fields_pack(&pk, t2, n2, m) == -1)) {
		sb->size = start;
		return proto_fail(err, PROTO_E_TOOBIG, "", "out of memory");
	}
	if (sb->size - start > max) {
		size_t n = sb->size - start;

		sb->size = start;
		return proto_fail(err, PROTO_E_TOOBIG, "", "%zu bytes > %zu",
		    n, max);
	}
	return 0;
}
