/*
 * unpack.c - reading msgpack safely, and the codec's error reporting.
 *
 * Why not msgpack_unpack_next()?  msgpack-c trusts the counts in container
 * headers: the five bytes "dd ff ff ff ff" (an array of 4G elements) make
 * it ask for 96 GiB before it notices the input ended, and its fixed stack
 * of 32 open containers is one short of a message map holding a value
 * nested HIVE_DEPTH_MAX deep.  This reader builds the same msgpack_object
 * tree, in a msgpack_zone owned by a msgpack_unpacked, but:
 *
 *   - a container of n elements is only allocated when at least n (array)
 *     or 2n (map) bytes are left, so memory stays under ~24 bytes per input
 *     byte whatever the headers claim;
 *   - it is iterative with an explicit stack bounded by the depth limit;
 *   - one value must span the input exactly: trailing bytes are an error;
 *   - str, bin and ext point into the caller's buffer (borrowed).
 *
 * The wire format, as far as this reader cares (first byte):
 *
 *   0x00-0x7f positive fixint      0x80-0x8f fixmap     0x90-0x9f fixarray
 *   0xa0-0xbf fixstr               0xc0 nil             0xc1 (never used)
 *   0xc2 false  0xc3 true          0xc4-0xc6 bin 8/16/32
 *   0xc7-0xc9 ext 8/16/32          0xca float 32        0xcb float 64
 *   0xcc-0xcf uint 8/16/32/64      0xd0-0xd3 int 8/16/32/64
 *   0xd4-0xd8 fixext 1/2/4/8/16    0xd9-0xdb str 8/16/32
 *   0xdc-0xdd array 16/32          0xde-0xdf map 16/32  0xe0-0xff negative fixint
 *
 * All multi-byte lengths and numbers are big endian.
 */
#include "proto_int.h"

#include <stdio.h>

/* ---- errors ---- */

int
proto_fail(struct proto_err *err, enum proto_errcode code, const char *field,
    const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	err->code = code;
	snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
	return -1;
}

const char *
proto_errcode_name(enum proto_errcode code)
{
	switch (code) {
	case PROTO_OK:          return "ok";
	case PROTO_E_MALFORMED: return "malformed";
	case PROTO_E_NOTMAP:    return "notmap";
	case PROTO_E_TOOBIG:    return "toobig";
	case PROTO_E_VERSION:   return "version";
	case PROTO_E_MISSING:   return "missing";
	case PROTO_E_TYPE:      return "type";
	case PROTO_E_SIZE:      return "size";
	case PROTO_E_VALUE:     return "value";
	case PROTO_E_DUPLICATE: return "duplicate";
	}
	return "unknown";
}

static const char *
errcode_text(enum proto_errcode code)
{
	switch (code) {
	case PROTO_OK:          return "no error";
	case PROTO_E_MALFORMED: return "not one msgpack value";
	case PROTO_E_NOTMAP:    return "not a map with string keys";
	case PROTO_E_TOOBIG:    return "too big";
	case PROTO_E_VERSION:   return "unsupported version";
	case PROTO_E_MISSING:   return "missing";
	case PROTO_E_TYPE:      return "wrong type";
	case PROTO_E_SIZE:      return "out of limits";
	case PROTO_E_VALUE:     return "bad value";
	case PROTO_E_DUPLICATE: return "duplicate key";
	}
	return "unknown error";
}

const char *
proto_strerror(const struct proto_err *err, char *buf, size_t len)
{
	if (len == 0)
		return buf;
	if (err->field[0] != '\0')
		snprintf(buf, len, "field '%s': %s%s%s%s", err->field,
		    errcode_text(err->code), err->detail[0] ? " (" : "",
		    err->detail, err->detail[0] ? ")" : "");
	else
		snprintf(buf, len, "message: %s%s%s%s", errcode_text(err->code),
		    err->detail[0] ? " (" : "", err->detail,
		    err->detail[0] ? ")" : "");
	return buf;
}

/* ---- the reader ---- */

static uint64_t
be(const unsigned char *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

struct open_container {
	msgpack_object *o;
	uint64_t next, slots;        /* slots: n (array) or 2n (map) */
};

/* One proto_unpack: the input, where it is, and the open containers
 * (st[0] the outermost). */
struct reader {
	const char *buf;
	const unsigned char *p;      /* buf, as bytes */
	size_t len, off;             /* off: the next byte to read */
	msgpack_zone *z;
	struct open_container st[PROTO_UNPACK_DEPTH_MAX + 1];
	unsigned top, maxdepth;      /* top: how many are open */
	struct proto_err *err;
};

/* The slot (element, key or value) the next value goes into. */
static msgpack_object *
slot(struct open_container *c)
{
	uint64_t i = c->next++;

	if (c->o->type == MSGPACK_OBJECT_ARRAY)
		return &c->o->via.array.ptr[i];
	return i % 2 ? &c->o->via.map.ptr[i / 2].val
	    : &c->o->via.map.ptr[i / 2].key;
}

/* Name the top-level field whose value is being read (for a depth
 * error): the key of the open slot of the outermost map, if a string. */
static void
top_field(const struct open_container *st, unsigned top, char *buf,
    size_t len)
{
	const msgpack_object *k;

	buf[0] = '\0';
	if (top == 0 || st[0].o->type != MSGPACK_OBJECT_MAP ||
	    st[0].next % 2 != 0)
		return;
	k = &st[0].o->via.map.ptr[(st[0].next - 1) / 2].key;
	if (k->type != MSGPACK_OBJECT_STR)
		return;
	snprintf(buf, len, "%.*s", (int)(k->via.str.size < len ?
	    k->via.str.size : len - 1), k->via.str.ptr);
}

/* The input ends inside a value (at r->off, where it was found out). */
static int
truncated(struct reader *r)
{
	return proto_fail(r->err, PROTO_E_MALFORMED, "",
	    "truncated at offset %zu", r->off);
}

/* The big-endian number of n bytes at r->off, read past; 0 in *v when
 * the input ends first. */
static int
take(struct reader *r, unsigned n, uint64_t *v)
{
	*v = 0;
	if (n > r->len - r->off)
		return truncated(r);
	*v = be(r->p + r->off, n);
	r->off += n;
	return 0;
}

/* str or bin of n bytes, or of a length of hdr bytes read first (hdr >
 * 0); the bytes are borrowed from the input. */
static int
read_bytes(struct reader *r, msgpack_object *dst, msgpack_object_type type,
    unsigned hdr, uint64_t n)
{
	if (hdr > 0 && take(r, hdr, &n) == -1)
		return -1;
	if (n > r->len - r->off)
		return truncated(r);
	dst->type = type;
	if (type == MSGPACK_OBJECT_BIN) {
		dst->via.bin.size = (uint32_t)n;
		dst->via.bin.ptr = r->buf + r->off;
	} else {
		dst->via.str.size = (uint32_t)n;
		dst->via.str.ptr = r->buf + r->off;
	}
	r->off += n;
	return 0;
}

/* ext 8/16/32 (0xc7-0xc9) or fixext 1..16 (0xd4-0xd8): a length, the
 * type byte, the data (borrowed). */
static int
read_ext(struct reader *r, msgpack_object *dst, unsigned c)
{
	uint64_t n;

	if (c >= 0xd4)
		n = 1u << (c - 0xd4);
	else if (take(r, 1u << (c - 0xc7), &n) == -1)
		return -1;
	if (r->off >= r->len || n > r->len - r->off - 1)
		return truncated(r);
	dst->type = MSGPACK_OBJECT_EXT;
	dst->via.ext.type = (int8_t)r->p[r->off++];
	dst->via.ext.size = (uint32_t)n;
	dst->via.ext.ptr = r->buf + r->off;
	r->off += n;
	return 0;
}

/* float 32 (0xca) or 64 (0xcb); a float 32 is kept widened, as
 * msgpack-c does. */
static int
read_float(struct reader *r, msgpack_object *dst, unsigned c)
{
	uint64_t bits;

	if (take(r, c == 0xca ? 4 : 8, &bits) == -1)
		return -1;
	if (c == 0xca) {
		uint32_t b32 = (uint32_t)bits;
		float f;

		memcpy(&f, &b32, sizeof(f));
		dst->type = MSGPACK_OBJECT_FLOAT32;
		dst->via.f64 = f;
	} else {
		double d;

		memcpy(&d, &bits, sizeof(d));
		dst->type = MSGPACK_OBJECT_FLOAT64;
		dst->via.f64 = d;
	}
	return 0;
}

/* int 8/16/32/64 (0xd0-0xd3). */
static int
read_int(struct reader *r, msgpack_object *dst, unsigned c)
{
	unsigned n = 1u << (c - 0xd0);
	uint64_t u;
	int64_t i;

	if (take(r, n, &u) == -1)
		return -1;
	/* sign-extend from n bytes */
	if (n < 8 && (u >> (n * 8 - 1)) & 1)
		u |= ~(uint64_t)0 << (n * 8);
	memcpy(&i, &u, sizeof(i));
	/* msgpack-c's convention: non-negative values are POSITIVE_INTEGER
	 * however encoded. */
	if (i >= 0) {
		dst->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
		dst->via.u64 = (uint64_t)i;
	} else {
		dst->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
		dst->via.i64 = i;
	}
	return 0;
}

/* What read_header found. */
enum header {
	HDR_ERROR = -1,              /* err set (the read_* return -1) */
	HDR_VALUE = 0,               /* a whole scalar, in dst (they return 0) */
	HDR_MAP,                     /* a map of *n pairs follows */
	HDR_ARRAY,                   /* an array of *n elements follows */
};

/*
 * Read the value at r->off: a scalar whole into dst, or the header of a
 * container (its count in *n; its elements are the next values).  See
 * the first-byte table at the top of this file.
 */
static enum header
read_header(struct reader *r, msgpack_object *dst, uint64_t *n)
{
	unsigned c;
	int rc = 0;

	if (r->off >= r->len)
		return truncated(r);
	c = r->p[r->off++];
	memset(dst, 0, sizeof(*dst));
	if (c <= 0x7f) {
		dst->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
		dst->via.u64 = c;
		return HDR_VALUE;
	}
	if (c >= 0xe0) {
		dst->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
		dst->via.i64 = (int8_t)c;
		return HDR_VALUE;
	}
	if (c <= 0x9f) {
		*n = c & 0x0f;
		return c <= 0x8f ? HDR_MAP : HDR_ARRAY;
	}
	if (c <= 0xbf)
		return read_bytes(r, dst, MSGPACK_OBJECT_STR, 0, c & 0x1f);
	switch (c) {
	case 0xc0:
		dst->type = MSGPACK_OBJECT_NIL;
		break;
	case 0xc2: case 0xc3:
		dst->type = MSGPACK_OBJECT_BOOLEAN;
		dst->via.boolean = c == 0xc3;
		break;
	case 0xc4: case 0xc5: case 0xc6:
		rc = read_bytes(r, dst, MSGPACK_OBJECT_BIN, 1u << (c - 0xc4), 0);
		break;
	case 0xd9: case 0xda: case 0xdb:
		rc = read_bytes(r, dst, MSGPACK_OBJECT_STR, 1u << (c - 0xd9), 0);
		break;
	case 0xc7: case 0xc8: case 0xc9:
	case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
		rc = read_ext(r, dst, c);
		break;
	case 0xca: case 0xcb:
		rc = read_float(r, dst, c);
		break;
	case 0xcc: case 0xcd: case 0xce: case 0xcf:
		dst->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
		rc = take(r, 1u << (c - 0xcc), &dst->via.u64);
		break;
	case 0xd0: case 0xd1: case 0xd2: case 0xd3:
		rc = read_int(r, dst, c);
		break;
	case 0xdc: case 0xdd: case 0xde: case 0xdf:
		if (take(r, (c & 1) ? 4 : 2, n) == -1)
			return HDR_ERROR;
		return c >= 0xde ? HDR_MAP : HDR_ARRAY;
	default:                                    /* 0xc1 */
		return proto_fail(r->err, PROTO_E_MALFORMED, "",
		    "byte 0x%02x at offset %zu", c, r->off - 1);
	}
	return rc == -1 ? HDR_ERROR : HDR_VALUE;
}

/*
 * dst becomes a map or array of n, its elements to be read into it: it
 * is pushed as the innermost open container (unless empty).  Refused
 * when too deep, or when the rest of the input cannot hold n elements.
 */
static int
push(struct reader *r, msgpack_object *dst, bool is_map, uint64_t n)
{
	uint64_t slots = is_map ? 2 * n : n;
	size_t sz = is_map ? sizeof(msgpack_object_kv) : sizeof(msgpack_object);
	void *mem;

	if (r->top + 1 > r->maxdepth) {
		char f[sizeof(r->err->field)];

		top_field(r->st, r->top, f, sizeof(f));
		return proto_fail(r->err, PROTO_E_SIZE, f,
		    "nesting deeper than %u", HIVE_DEPTH_MAX);
	}
	/* Every element takes at least one byte: a count the rest of the
	 * input cannot hold is a lie, refuse it before allocating for it. */
	if (slots > r->len - r->off)
		return truncated(r);
	dst->type = is_map ? MSGPACK_OBJECT_MAP : MSGPACK_OBJECT_ARRAY;
	if (is_map)
		dst->via.map.size = (uint32_t)n;
	else
		dst->via.array.size = (uint32_t)n;
	if (n == 0)
		return 0;
	if ((mem = msgpack_zone_malloc(r->z, (size_t)n * sz)) == NULL)
		return proto_fail(r->err, PROTO_E_TOOBIG, "", "out of memory");
	if (is_map)
		dst->via.map.ptr = mem;
	else
		dst->via.array.ptr = mem;
	r->st[r->top].o = dst;
	r->st[r->top].next = 0;
	r->st[r->top].slots = slots;
	r->top++;
	return 0;
}

/* Close the containers that are full; the slot the next value goes
 * into, or NULL when the outermost value is complete. */
static msgpack_object *
pop(struct reader *r)
{
	while (r->top > 0 && r->st[r->top - 1].next == r->st[r->top - 1].slots)
		r->top--;
	return r->top > 0 ? slot(&r->st[r->top - 1]) : NULL;
}

int
proto_unpack(const char *buf, size_t len, unsigned maxdepth,
    msgpack_unpacked *out, struct proto_err *err)
{
	struct reader r;
	msgpack_object root, *dst = &root;

	memset(out, 0, sizeof(*out));
	r.buf = buf;
	r.p = (const unsigned char *)buf;
	r.len = len;
	r.off = 0;
	r.top = 0;
	r.maxdepth = maxdepth > PROTO_UNPACK_DEPTH_MAX ?
	    PROTO_UNPACK_DEPTH_MAX : maxdepth;
	r.err = err;
	if (len == 0)
		return proto_fail(err, PROTO_E_MALFORMED, "", "empty");
	if ((r.z = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE)) == NULL)
		return proto_fail(err, PROTO_E_TOOBIG, "", "out of memory");

	do {
		uint64_t n = 0;
		enum header h = read_header(&r, dst, &n);

		if (h == HDR_ERROR || (h != HDR_VALUE &&
		    push(&r, dst, h == HDR_MAP, n) == -1))
			goto err;
	} while ((dst = pop(&r)) != NULL);

	if (r.off != len) {
		proto_fail(err, PROTO_E_MALFORMED, "",
		    "%zu trailing bytes", len - r.off);
		goto err;
	}
	out->zone = r.z;
	out->data = root;
	return 0;
err:
	msgpack_zone_free(r.z);
	memset(out, 0, sizeof(*out));
	return -1;
}

int
proto_unpack_msg(const char *buf, size_t len, size_t max, unsigned maxdepth,
    msgpack_unpacked *out, struct proto_err *err)
{
	memset(out, 0, sizeof(*out));
	if (buf == NULL && len > 0)
		return proto_fail(err, PROTO_E_MALFORMED, "", "no buffer");
	if (len > max)
		return proto_fail(err, PROTO_E_TOOBIG, "", "%zu bytes > %zu",
		    len, max);
	if (proto_unpack(buf, len, maxdepth, out, err) == -1)
		return -1;
	if (out->data.type != MSGPACK_OBJECT_MAP) {
		msgpack_unpacked_destroy(out);
		memset(out, 0, sizeof(*out));
		return proto_fail(err, PROTO_E_NOTMAP, "", "top level is not a map");
	}
	return 0;
}

int
proto_decode_value(const char *buf, size_t len, msgpack_unpacked *out,
    struct proto_err *err)
{
	memset(out, 0, sizeof(*out));
	if (buf == NULL && len > 0)
		return proto_fail(err, PROTO_E_MALFORMED, "", "no buffer");
	if (len > HIVE_MSG_MAX)
		return proto_fail(err, PROTO_E_TOOBIG, "", "%zu bytes > %u",
		    len, HIVE_MSG_MAX);
	if (proto_unpack(buf, len, HIVE_DEPTH_MAX, out, err) == -1) {
		/* the root is the value itself: a key of it is no field */
		if (err != NULL)
			err->field[0] = '\0';
		return -1;
	}
	return 0;
}

/* ---- checking a value built by a caller ---- */

/* Packed size of a length header for str/bin (first) or array/map. */
static unsigned
hdr_size(uint32_t n, unsigned fix)
{
	if (n < fix)
		return 1;
	if (n <= 0xff && fix == 32)
		return 2;               /* str 8 / bin 8 */
	if (n <= 0xffff)
		return 3;
	return 5;
}

/* Packed size of an integer (msgpack-c packs a non-negative one as
 * unsigned, in the fewest bytes). */
static unsigned
uint_size(uint64_t u)
{
	return u < 128 ? 1 : u <= 0xff ? 2 : u <= 0xffff ? 3 :
	    u <= 0xffffffff ? 5 : 9;
}

static unsigned
int_size(int64_t i)
{
	if (i >= 0)
		return uint_size((uint64_t)i);
	return i >= -32 ? 1 : i >= INT8_MIN ? 2 : i >= INT16_MIN ? 3 :
	    i >= INT32_MIN ? 5 : 9;
}

/* Packed size of an ext header: fixext for 1, 2, 4, 8 and 16 bytes. */
static unsigned
ext_hdr_size(uint32_t n)
{
	return (n == 1 || n == 2 || n == 4 || n == 8 || n == 16) ? 2 :
	    n <= 0xff ? 3 : n <= 0xffff ? 4 : 6;
}

/* proto_obj_check of an array or a map: its header, then each element
 * (key and value) one level deeper. */
static int
check_container(const msgpack_object *o, unsigned maxdepth, uint64_t *size,
    struct proto_err *err, const char *field)
{
	bool map = o->type == MSGPACK_OBJECT_MAP;
	uint32_t n = map ? o->via.map.size : o->via.array.size;
	const void *ptr = map ? (const void *)o->via.map.ptr :
	    (const void *)o->via.array.ptr;

	if (maxdepth == 0)
		return proto_fail(err, PROTO_E_SIZE, field,
		    "nesting deeper than %u", HIVE_DEPTH_MAX);
	if (n > 0 && ptr == NULL)
		return proto_fail(err, PROTO_E_VALUE, field,
		    "container without pointer");
	*size += hdr_size(n, 16);
	for (uint32_t i = 0; i < n; i++) {
		if (map) {
			if (proto_obj_check(&o->via.map.ptr[i].key,
			    maxdepth - 1, size, err, field) == -1 ||
			    proto_obj_check(&o->via.map.ptr[i].val,
			    maxdepth - 1, size, err, field) == -1)
				return -1;
		} else if (proto_obj_check(&o->via.array.ptr[i], maxdepth - 1,
		    size, err, field) == -1) {
			return -1;
		}
	}
	return 0;
}

int
proto_obj_check(const msgpack_object *o, unsigned maxdepth, uint64_t *size,
    struct proto_err *err, const char *field)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
	case MSGPACK_OBJECT_BOOLEAN:
		*size += 1;
		return 0;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		*size += uint_size(o->via.u64);
		return 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		*size += int_size(o->via.i64);
		return 0;
	case MSGPACK_OBJECT_FLOAT32:
		*size += 5;
		return 0;
	case MSGPACK_OBJECT_FLOAT64:
		*size += 9;
		return 0;
	case MSGPACK_OBJECT_STR:
		if (o->via.str.ptr == NULL && o->via.str.size > 0)
			return proto_fail(err, PROTO_E_VALUE, field,
			    "string without pointer");
		*size += hdr_size(o->via.str.size, 32) + o->via.str.size;
		return 0;
	case MSGPACK_OBJECT_BIN:
		if (o->via.bin.ptr == NULL && o->via.bin.size > 0)
			return proto_fail(err, PROTO_E_VALUE, field,
			    "bin without pointer");
		/* bin has no "fix" form: 8-bit length up to 255 */
		*size += (o->via.bin.size <= 0xff ? 2 :
		    o->via.bin.size <= 0xffff ? 3 : 5) + o->via.bin.size;
		return 0;
	case MSGPACK_OBJECT_EXT:
		if (o->via.ext.ptr == NULL && o->via.ext.size > 0)
			return proto_fail(err, PROTO_E_VALUE, field,
			    "ext without pointer");
		*size += ext_hdr_size(o->via.ext.size) + o->via.ext.size;
		return 0;
	case MSGPACK_OBJECT_ARRAY:
	case MSGPACK_OBJECT_MAP:
		return check_container(o, maxdepth, size, err, field);
	}
	return proto_fail(err, PROTO_E_TYPE, field, "unknown msgpack type %d",
	    (int)o->type);
}
