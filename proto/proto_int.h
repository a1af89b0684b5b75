/*
 * proto_int.h - private to proto/: the msgpack reader, the field tables
 * that drive every encoder and decoder, and the small validators they
 * share.
 *
 * Every message is described once, as a table of struct proto_field (name,
 * kind, limits, where it lives in the C struct).  One generic routine
 * decodes a map against a table and one encodes a struct from it, so the
 * rules a decoder applies and the rules an encoder applies cannot drift
 * apart, and the field names docs/PROTOCOL.md lists can be checked against
 * the tables (proto_field_docs()).
 */
#ifndef HIVE_PROTO_INT_H
#define HIVE_PROTO_INT_H

#include "hive_proto.h"
#include "util.h"

#include <stdarg.h>
#include <stdbool.h>

/* What a field holds on the wire and how it is checked. */
enum proto_fkind {
	PF_VERSION,     /* "v": uint, 1..HIVE_PROTO_VERSION              */
	PF_ID,          /* str, 1..max of 0x21..0x7e (task/workflow id)  */
	PF_NAME,        /* str, agent or capability name                 */
	PF_AGENT,       /* str, "name" or "name/instance"                */
	PF_PRINT,       /* str, 1..max of 0x21..0x7e (host, stream key)  */
	PF_REPLY,       /* str, PF_PRINT starting with HIVE_REPLY_PREFIX */
	PF_ENTRY,       /* str, Redis entry id "ms-seq"                  */
	PF_TEXT,        /* str, 0..max bytes of UTF-8 without NUL        */
	PF_UINT,        /* uint32_t or uint64_t (size), min..max         */
	PF_PID,         /* int64_t, 0..INT32_MAX                         */
	PF_ANY,         /* msgpack_object, any value                     */
	PF_MAP,         /* msgpack_object, map (or nil = absent)         */
	PF_RAW,         /* bin (str accepted), bytes in a struct hive_str */
	PF_ENUM,        /* str naming one value of an enum               */
	PF_CAP,         /* str, a name or "@" and an agent name          */
	PF_IDMAP,       /* msgpack_object, map (or nil) whose keys are
	                 * ids, each once; min..max entries              */
	PF_TRACE,       /* str, a W3C traceparent (usage.c)              */
	PF_USAGE,       /* map, a struct hive_usage (usage.c)            */
	PF_LIST,        /* array of min..max elements, each checked by
	                 * sub (see struct proto_field); in C a uint32_t
	                 * count at cnt_off and a pointer at off to an
	                 * array of elsize-byte elements                 */
};

/* Names of an enum's values: names[i] is the value base + i. */
struct proto_enum {
	const char *const *names;
	unsigned count;
	int base;
};

struct proto_field {
	const char *name;
	enum proto_fkind kind;
	bool required;
	size_t off;                 /* offset in the message struct */
	unsigned size;              /* PF_UINT: 4 or 8 bytes */
	uint64_t min, max;          /* ints: range; strings: bytes;
	                             * PF_ANY/PF_MAP: encoded bytes (0: none) */
	uint64_t dflt;              /* PF_UINT: value when absent */
	const struct proto_enum *en;
	const char *type;           /* msgpack type for docs: "uint", "str"... */
	bool zero_is_value;         /* PF_UINT: 0 is a value of its own, not
	                             * "the default" (written unless dflt) */
	/* PF_LIST: with submap, each element is a map decoded against the
	 * table sub[0..nsub) into an elsize-byte struct; without, each
	 * element is one value checked as the field sub[0] (name "", off 0)
	 * into an elsize-byte member.  Decoded arrays live in the message's
	 * zone. */
	const struct proto_field *sub;
	unsigned nsub;
	bool submap;
	size_t elsize;
	size_t cnt_off;
};

/* Fields of one message table, at most this many (duplicate detection
 * keeps one slot per field). */
#define PROTO_FIELDS_MAX 20

/* Limits of the generic reader: a message map holds values of depth
 * HIVE_DEPTH_MAX, so the whole tree is one level deeper.  A workflow
 * holds its tasks' payloads two containers further down (the "tasks"
 * array, a task's map); that is the deepest any message goes. */
#define PROTO_TREE_DEPTH (HIVE_DEPTH_MAX + 1)
#define PROTO_WF_TREE_DEPTH (HIVE_DEPTH_MAX + 3)
#define PROTO_UNPACK_DEPTH_MAX PROTO_WF_TREE_DEPTH

/* ---- errors (unpack.c) ---- */

int proto_fail(struct proto_err *err, enum proto_errcode code,
    const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- reading msgpack (unpack.c) ---- */

/*
 * Parse exactly one value from buf/len into out (zone and data), nesting at
 * most maxdepth containers (scalars have depth 0, a container one more than
 * its deepest element).  Strings, bin and ext borrow from buf.  Never
 * allocates more than a small multiple of len.  0, or -1 with err set
 * (E_MALFORMED, or E_SIZE naming the top-level map key whose value is too
 * deep) and out left empty.
 */
int proto_unpack(const char *buf, size_t len, unsigned maxdepth,
    msgpack_unpacked *out, struct proto_err *err);

/*
 * proto_unpack() of a message: len <= max (else E_TOOBIG), a map at the
 * top (else E_NOTMAP), at most maxdepth containers deep (PROTO_TREE_DEPTH
 * for every message but the workflow).
 */
int proto_unpack_msg(const char *buf, size_t len, size_t max,
    unsigned maxdepth, msgpack_unpacked *out, struct proto_err *err);

/*
 * Check a value a caller built (encoders): depth <= maxdepth, types known,
 * no NULL pointer with a size, and add its packed size to *size.  Recursion
 * stops at maxdepth, so it is bounded.
 */
int proto_obj_check(const msgpack_object *o, unsigned maxdepth,
    uint64_t *size, struct proto_err *err, const char *field);

/* ---- what has a JSON form (json.c; json_text.c applies the same) ---- */

/*
 * 0 if o may have a JSON form as far as its own type and value go:
 * integers within int64, finite floats, no bin or ext, and a container
 * only with depth > 0 levels left.  Elements, keys and UTF-8 are judged
 * as the walker meets them.  Else -1 with err set (the field empty).
 */
int proto_json_form(const msgpack_object *o, unsigned depth,
    struct proto_err *err);
/* 0 if k may be an object key: a string without NUL. */
int proto_json_key(const msgpack_object *k, struct proto_err *err);
/* The errors for what a walker finds: key k twice; what ("string", "map
 * key") not UTF-8; more than HIVE_DEPTH_MAX containers.  Always -1. */
int proto_json_key_twice(const msgpack_object *k, struct proto_err *err);
int proto_json_not_utf8(const char *what, struct proto_err *err);
int proto_json_too_deep(struct proto_err *err);

/* ---- field tables (fields.c) ---- */

/*
 * Decode the fields of table t from the map (keys already known to be
 * strings or not: this checks).  Fields not in t are ignored; a field of t
 * twice is E_DUPLICATE; nil counts as absent.  Defaults are written for
 * absent fields.  Errors come in table order after the duplicate check;
 * an error inside an element of a PF_LIST names its path
 * ("tasks[2].prio").  The arrays of PF_LIST fields are allocated in z.
 */
int proto_fields_decode(const msgpack_object *map, const struct proto_field *t,
    size_t n, void *out, msgpack_zone *z, struct proto_err *err);

/* Validate the fields of table t in struct m as the decoder would and
 * count those that will be written (required ones and those not at their
 * default). */
int proto_fields_check(const struct proto_field *t, size_t n, const void *m,
    uint32_t *count, struct proto_err *err);
/* Pack them (after proto_fields_check). */
int proto_fields_pack(msgpack_packer *pk, const struct proto_field *t,
    size_t n, const void *m);

/* String validators shared by fields.c and keys.c: 0 or -1 and *why set
 * to an errcode (E_SIZE for length, E_VALUE for charset). */
int proto_check_print(const char *s, size_t len, size_t max,
    enum proto_errcode *why);
int proto_check_name(const char *s, size_t len, enum proto_errcode *why);
int proto_check_agent(const char *s, size_t len, enum proto_errcode *why);

/* ---- usage (usage.c) ---- */

/* PF_USAGE: decode the map o into *u (strings borrow from o), check a
 * struct the encoder is given, pack one (checked).  Errors name the
 * member: "usage.input_tokens". */
int proto_usage_decode(const msgpack_object *o, struct hive_usage *u,
    struct proto_err *err);
int proto_usage_check(const struct hive_usage *u, struct proto_err *err);
int proto_usage_pack(msgpack_packer *pk, const struct hive_usage *u);

/* ---- encoders (codec.c, frame.c) ---- */

/* Pack a whole message map from tables t1 (and t2 if not NULL) into sb,
 * checking the packed size against max; sb unchanged on failure. */
int proto_encode_tables(msgpack_sbuffer *sb, size_t max,
    const struct proto_field *t1, size_t n1,
    const struct proto_field *t2, size_t n2, const void *m,
    struct proto_err *err);

/* The rules of a workflow's graph (workflow.c): task ids unique, each
 * depends_on names another task of it, once, and no cycle.  Run on a
 * decoded workflow and on one about to be encoded; 0, or -1 with *err
 * (E_VALUE, field "tasks"; E_TOOBIG when out of memory). */
int proto_workflow_rules(const struct hive_workflow *m,
    struct proto_err *err);

/* Field tables of the frames, for proto_field_docs() (frame.c). */
const struct proto_field *proto_frame_table(const char *name, size_t *n);
extern const struct proto_field proto_frame_common[];
extern const size_t proto_frame_common_n;

#endif /* HIVE_PROTO_INT_H */
