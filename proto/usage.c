/*
 * usage.c - trace context and usage: the W3C traceparent a task carries
 * (checked, and made for a task that has none) and the usage map of a
 * result (what the task cost: tokens, cost, model), on the wire and from
 * a handler's JSON.
 *
 *   traceparent   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
 *                  vv trace id (16 bytes)               parent id     flags
 *
 *   usage         {"input_tokens": 1200, "output_tokens": 350,
 *                  "cost": 0.0123, "model": "claude-sonnet-4"}
 *
 * A usage's members are each optional; keys it does not know are skipped
 * (a newer sender may add some), as in a message.
 */
#include "proto_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>

/* ---- traceparent ---- */

/* n lower-case hex digits at s; *zero set when all are '0'. */
static int
hex_run(const char *s, size_t n, bool *zero)
{
	*zero = true;
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return -1;
		if (s[i] != '0')
			*zero = false;
	}
	return 0;
}

int
proto_valid_traceparent(const char *s, size_t len)
{
	bool zero;

	if (s == NULL || len != HIVE_TRACEPARENT_LEN)
		return -1;
	if (s[2] != '-' || s[35] != '-' || s[52] != '-')
		return -1;
	if (hex_run(s, 2, &zero) == -1 || memcmp(s, "ff", 2) == 0)
		return -1;
	if (hex_run(s + 3, 32, &zero) == -1 || zero)
		return -1;
	if (hex_run(s + 36, 16, &zero) == -1 || zero)
		return -1;
	return hex_run(s + 53, 2, &zero);
}

/*
 * n random bytes: getrandom, else (no entropy yet, early boot) a hash of
 * the clock, the pid and a counter, which is unique enough for an id
 * that only has to tell traces apart.
 */
static void
random_bytes(unsigned char *r, size_t n)
{
	static uint64_t seq;
	uint64_t h;

	if (getrandom(r, n, GRND_NONBLOCK) == (ssize_t)n)
		return;
	h = hash_fnv1a_add(proto_now_ms() ^ (uint64_t)getpid(), &seq,
	    sizeof(seq));
	seq++;
	for (size_t i = 0; i < n; i++) {
		h = hash_fnv1a_add(h, &i, sizeof(i));
		r[i] = (unsigned char)(h >> 24);
	}
}

static void
hex_out(char *dst, const unsigned char *r, size_t n)
{
	static const char hx[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		dst[2 * i] = hx[r[i] >> 4];
		dst[2 * i + 1] = hx[r[i] & 15];
	}
}

char *
proto_traceparent_make(char *buf, const char *trace_id)
{
	static const unsigned char zeros[16];
	unsigned char r[16 + 8];

	do      /* an id of all zeros is invalid: draw again */
		random_bytes(r, sizeof(r));
	while (memcmp(r, zeros, 16) == 0 || memcmp(r + 16, zeros, 8) == 0);
	memcpy(buf, "00-", 3);
	if (trace_id != NULL)
		memcpy(buf + 3, trace_id, HIVE_TRACE_ID_LEN);
	else
		hex_out(buf + 3, r, 16);
	buf[35] = '-';
	hex_out(buf + 36, r + 16, 8);
	memcpy(buf + 52, "-01", 4);
	return buf;
}

/* ---- usage on the wire ---- */

enum { U_INPUT, U_OUTPUT, U_COST, U_MODEL, U_N };
static const char *const u_names[U_N] = { "input_tokens", "output_tokens",
	"cost", "model" };
static const char *const u_fields[U_N] = { "usage.input_tokens",
	"usage.output_tokens", "usage.cost", "usage.model" };

static int
u_tokens(int i, const msgpack_object *o, uint64_t *out, struct proto_err *err)
{
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return proto_fail(err, PROTO_E_SIZE, u_fields[i],
		    "%" PRId64 " < 0", o->via.i64);
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return proto_fail(err, PROTO_E_TYPE, u_fields[i],
		    "uint expected");
	if (o->via.u64 > HIVE_TOKENS_MAX)
		return proto_fail(err, PROTO_E_SIZE, u_fields[i],
		    "%" PRIu64 " > %llu", o->via.u64, HIVE_TOKENS_MAX);
	*out = o->via.u64;
	return 0;
}

static int
check_cost(double c, struct proto_err *err)
{
	if (!isfinite(c))
		return proto_fail(err, PROTO_E_VALUE, u_fields[U_COST],
		    "not a finite number");
	if (c < 0 || c > HIVE_COST_MAX)
		return proto_fail(err, PROTO_E_SIZE, u_fields[U_COST],
		    "%g not in 0..%g", c, HIVE_COST_MAX);
	return 0;
}

static int
u_cost(const msgpack_object *o, double *out, struct proto_err *err)
{
	double c;

	if (o->type == MSGPACK_OBJECT_FLOAT32 ||
	    o->type == MSGPACK_OBJECT_FLOAT64)
		c = o->via.f64;
	else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		c = (double)o->via.u64;
	else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		c = (double)o->via.i64;
	else
		return proto_fail(err, PROTO_E_TYPE, u_fields[U_COST],
		    "number expected");
	if (check_cost(c, err) == -1)
		return -1;
	*out = c;
	return 0;
}

static int
check_model(const char *s, size_t len, struct proto_err *err)
{
	if (len == 0)
		return proto_fail(err, PROTO_E_SIZE, u_fields[U_MODEL], "empty");
	if (len > HIVE_MODEL_MAX)
		return proto_fail(err, PROTO_E_SIZE, u_fields[U_MODEL],
		    "%zu bytes > %d", len, HIVE_MODEL_MAX);
	if (utf8_valid(s, len) == -1)
		return proto_fail(err, PROTO_E_VALUE, u_fields[U_MODEL],
		    "not UTF-8 text without NUL");
	return 0;
}

/* Member i, present and not nil, into *u. */
static int
u_member(int i, const msgpack_object *v, struct hive_usage *u,
    struct proto_err *err)
{
	switch (i) {
	case U_INPUT:
		return u_tokens(i, v, &u->input_tokens, err);
	case U_OUTPUT:
		return u_tokens(i, v, &u->output_tokens, err);
	case U_COST:
		return u_cost(v, &u->cost, err);
	default:
		if (v->type != MSGPACK_OBJECT_STR)
			return proto_fail(err, PROTO_E_TYPE, u_fields[i],
			    "str expected");
		if (check_model(v->via.str.ptr, v->via.str.size, err) == -1)
			return -1;
		u->model.ptr = v->via.str.ptr;
		u->model.len = v->via.str.size;
		return 0;
	}
}

int
proto_usage_decode(const msgpack_object *o, struct hive_usage *u,
    struct proto_err *err)
{
	memset(u, 0, sizeof(*u));
	if (o->type != MSGPACK_OBJECT_MAP)
		return proto_fail(err, PROTO_E_TYPE, "usage",
		    "map expected");
	for (uint32_t k = 0; k < o->via.map.size; k++) {
		const msgpack_object *key = &o->via.map.ptr[k].key;
		const msgpack_object *v = &o->via.map.ptr[k].val;
		int i;

		if (key->type != MSGPACK_OBJECT_STR)
			return proto_fail(err, PROTO_E_TYPE, "usage",
			    "key %" PRIu32 " is not a str", k);
		for (i = 0; i < U_N; i++)
			if (strlen(u_names[i]) == key->via.str.size &&
			    memcmp(u_names[i], key->via.str.ptr,
			    key->via.str.size) == 0)
				break;
		if (i == U_N)
			continue;
		if (u->has & (1u << i))
			return proto_fail(err, PROTO_E_DUPLICATE, u_fields[i],
			    "key appears twice");
		if (v->type == MSGPACK_OBJECT_NIL)
			continue;
		if (u_member(i, v, u, err) == -1) {
			memset(u, 0, sizeof(*u));
			return -1;
		}
		u->has |= 1u << i;
	}
	return 0;
}

int
proto_usage_check(const struct hive_usage *u, struct proto_err *err)
{
	if (u->has & ~(uint32_t)(HIVE_USAGE_INPUT | HIVE_USAGE_OUTPUT |
	    HIVE_USAGE_COST | HIVE_USAGE_MODEL))
		return proto_fail(err, PROTO_E_VALUE, "usage",
		    "unknown bits in has");
	if ((u->has & HIVE_USAGE_INPUT) && u->input_tokens > HIVE_TOKENS_MAX)
		return proto_fail(err, PROTO_E_SIZE, u_fields[U_INPUT],
		    "%" PRIu64 " > %llu", u->input_tokens, HIVE_TOKENS_MAX);
	if ((u->has & HIVE_USAGE_OUTPUT) && u->output_tokens > HIVE_TOKENS_MAX)
		return proto_fail(err, PROTO_E_SIZE, u_fields[U_OUTPUT],
		    "%" PRIu64 " > %llu", u->output_tokens, HIVE_TOKENS_MAX);
	if ((u->has & HIVE_USAGE_COST) && check_cost(u->cost, err) == -1)
		return -1;
	if (u->has & HIVE_USAGE_MODEL) {
		if (u->model.ptr == NULL)
			return proto_fail(err, PROTO_E_VALUE, u_fields[U_MODEL],
			    "NULL pointer");
		return check_model(u->model.ptr, u->model.len, err);
	}
	return 0;
}

static int
pack_key(msgpack_packer *pk, int i)
{
	size_t n = strlen(u_names[i]);

	return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, u_names[i], n);
}

int
proto_usage_pack(msgpack_packer *pk, const struct hive_usage *u)
{
	int rc = msgpack_pack_map(pk, (size_t)__builtin_popcount(u->has));

	if (u->has & HIVE_USAGE_INPUT)
		rc |= pack_key(pk, U_INPUT) |
		    msgpack_pack_uint64(pk, u->input_tokens);
	if (u->has & HIVE_USAGE_OUTPUT)
		rc |= pack_key(pk, U_OUTPUT) |
		    msgpack_pack_uint64(pk, u->output_tokens);
	if (u->has & HIVE_USAGE_COST)
		rc |= pack_key(pk, U_COST) | msgpack_pack_double(pk, u->cost);
	if (u->has & HIVE_USAGE_MODEL)
		rc |= pack_key(pk, U_MODEL) |
		    msgpack_pack_str(pk, u->model.len) |
		    msgpack_pack_str_body(pk, u->model.ptr, u->model.len);
	return rc ? -1 : 0;
}

/* ---- usage from a handler's JSON ---- */

static int
j_tokens(int i, json_t *v, uint64_t *out, struct proto_err *err)
{
	if (!json_is_integer(v))
		return proto_fail(err, PROTO_E_TYPE, u_fields[i],
		    "a whole number expected");
	if (json_integer_value(v) < 0)
		return proto_fail(err, PROTO_E_SIZE, u_fields[i],
		    "%" JSON_INTEGER_FORMAT " < 0", json_integer_value(v));
	if ((uint64_t)json_integer_value(v) > HIVE_TOKENS_MAX)
		return proto_fail(err, PROTO_E_SIZE, u_fields[i],
		    "%" JSON_INTEGER_FORMAT " > %llu", json_integer_value(v),
		    HIVE_TOKENS_MAX);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int
proto_usage_from_json(json_t *j, struct hive_usage *u, struct proto_err *err)
{
	json_t *v;

	memset(u, 0, sizeof(*u));
	if (!json_is_object(j))
		return proto_fail(err, PROTO_E_TYPE, "usage",
		    "an object expected");
	for (int i = 0; i < U_N; i++) {
		if ((v = json_object_get(j, u_names[i])) == NULL ||
		    json_is_null(v))
			continue;
		if (i == U_INPUT && j_tokens(i, v, &u->input_tokens, err) == -1)
			goto err;
		if (i == U_OUTPUT &&
		    j_tokens(i, v, &u->output_tokens, err) == -1)
			goto err;
		if (i == U_COST) {
			if (!json_is_number(v)) {
				proto_fail(err, PROTO_E_TYPE, u_fields[i],
				    "a number expected");
				goto err;
			}
			u->cost = json_number_value(v);
			if (check_cost(u->cost, err) == -1)
				goto err;
		}
		if (i == U_MODEL) {
			if (!json_is_string(v)) {
				proto_fail(err, PROTO_E_TYPE, u_fields[i],
				    "a string expected");
				goto err;
			}
			if (check_model(json_string_value(v),
			    json_string_length(v), err) == -1)
				goto err;
			u->model.ptr = json_string_value(v);
			u->model.len = (uint32_t)json_string_length(v);
		}
		u->has |= 1u << i;
	}
	return 0;
err:
	memset(u, 0, sizeof(*u));
	return -1;
}
