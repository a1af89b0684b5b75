/*
 * pbuild.h - building test messages for tests/proto: msgpack bytes from
 * JSON text (so a case reads like docs/PROTOCOL.md), raw bytes from hex,
 * and one decode entry point per message kind for table-driven cases.
 */
#ifndef HIVE_TEST_PBUILD_H
#define HIVE_TEST_PBUILD_H

#include "hive_proto.h"

enum pb_kind { PB_TASK, PB_RESULT, PB_EVENT, PB_DEAD, PB_FRAME, PB_WORKFLOW,
	PB_VALUE };

/*
 * JSON text with expansions, as a new string (free() it):
 *   ~N~    a string body of N 'a' characters (inside quotes in the JSON)
 *   ~dN~   N nested arrays around 0: [[...[0]...]]
 */
char *pb_expand(const char *json);
/* Append the msgpack form of the (expanded) JSON text to sb; the test
 * fails if the JSON does not parse. */
void pb_json(msgpack_sbuffer *sb, const char *json);
/* Append bytes given as hex ("81 a1 76 01"; spaces ignored). */
void pb_hex(msgpack_sbuffer *sb, const char *hex);
/* Decode buf as kind, clear the result; returns the decoder's result. */
int pb_decode(enum pb_kind kind, const char *buf, size_t len,
    struct proto_err *err);
const char *pb_kind_name(enum pb_kind kind);
/* The test fails unless s is want; what names it in the message. */
void pb_assert_str(struct hive_str s, const char *want, const char *what);

#endif
