/*
 * fuzz_common.h - what the codec's libFuzzer targets share: an invariant
 * check that survives any build (abort(), which libFuzzer reports as a
 * crash and saves the input), comparisons of decoded fields, and the
 * round trip every decoder target runs:
 *
 *   bytes --decode--> m1 --encode--> b1 --decode--> m2 --encode--> b2
 *
 * A message the decoder accepts must encode (encoders check what decoders
 * check), the re-encoded bytes must decode to the same fields, and
 * encoding is stable (b1 == b2).  A refused input must come with a
 * well-formed error.
 */
#ifndef HIVE_FUZZ_COMMON_H
#define HIVE_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond) do {                                             \
	if (!(cond)) {                                                  \
		fprintf(stderr, "invariant broken: %s (%s:%d)\n", #cond, \
		    __FILE__, __LINE__);                                \
		abort();                                                \
	}                                                               \
} while (0)

static inline void
fz_str_eq(struct hive_str a, struct hive_str b)
{
	FZ_CHECK(a.len == b.len);
	FZ_CHECK(a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Values are equal when msgpack-c packs them to the same bytes. */
static inline void
fz_obj_eq(const msgpack_object *a, const msgpack_object *b)
{
	msgpack_sbuffer sa, sb;
	msgpack_packer pa, pb;

	FZ_CHECK(a->type == b->type);
	msgpack_sbuffer_init(&sa);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pa, &sa, msgpack_sbuffer_write);
	msgpack_packer_init(&pb, &sb, msgpack_sbuffer_write);
	FZ_CHECK(msgpack_pack_object(&pa, *a) == 0);
	FZ_CHECK(msgpack_pack_object(&pb, *b) == 0);
	FZ_CHECK(sa.size == sb.size);
	FZ_CHECK(sa.size == 0 || memcmp(sa.data, sb.data, sa.size) == 0);
	msgpack_sbuffer_destroy(&sa);
	msgpack_sbuffer_destroy(&sb);
}

/* A refusal names a real code, NUL-terminated texts, and formats. */
static inline void
fz_err_ok(const struct proto_err *e)
{
	char buf[256];

	FZ_CHECK(e->code > PROTO_OK && e->code <= PROTO_E_DUPLICATE);
	FZ_CHECK(memchr(e->field, '\0', sizeof(e->field)) != NULL);
	FZ_CHECK(memchr(e->detail, '\0', sizeof(e->detail)) != NULL);
	proto_strerror(e, buf, sizeof(buf));
	FZ_CHECK(strlen(proto_errcode_name(e->code)) > 0);
}

/*
 * The round trip above for one message type T with functions
 * proto_decode_T, proto_encode_T, proto_T_clear, and a function
 * fz_same_T(const struct hive_T *, const struct hive_T *) that compares
 * every field.
 */
#define FZ_MESSAGE_TARGET(T)                                            \
int                                                                     \
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)                \
{                                                                       \
	struct hive_##T m1, m2;                                         \
	struct proto_err err;                                           \
	msgpack_sbuffer b1, b2;                                         \
									\
	memset(&err, 0, sizeof(err));                                   \
	if (proto_decode_##T((const char *)data, size, &m1, &err) == -1) { \
		fz_err_ok(&err);                                        \
		return 0;                                               \
	}                                                               \
	msgpack_sbuffer_init(&b1);                                      \
	msgpack_sbuffer_init(&b2);                                      \
	if (proto_encode_##T(&b1, &m1, &err) == -1) {                   \
		fprintf(stderr, "decoded but refused by the encoder: "  \
		    "%s: %s\n", err.field, err.detail);                 \
		abort();                                                \
	}                                                               \
	FZ_CHECK(proto_decode_##T(b1.data, b1.size, &m2, &err) == 0);   \
	fz_same_##T(&m1, &m2);                                          \
	FZ_CHECK(proto_encode_##T(&b2, &m2, &err) == 0);                \
	FZ_CHECK(b1.size == b2.size);                                   \
	FZ_CHECK(memcmp(b1.data, b2.data, b1.size) == 0);               \
	proto_##T##_clear(&m2);                                         \
	proto_##T##_clear(&m1);                                         \
	msgpack_sbuffer_destroy(&b1);                                   \
	msgpack_sbuffer_destroy(&b2);                                   \
	return 0;                                                       \
}

#endif
