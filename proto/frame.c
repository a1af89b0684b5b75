/*
 * frame.c - frames on the hived <-> hive-worker socketpair, and the reader
 * that cuts a byte stream into them.
 *
 *   +----------------+-------------------------------------------+
 *   | length (u32 BE)| msgpack map: "v", "t", then t's fields     |
 *   +----------------+-------------------------------------------+
 *     4 bytes          length bytes, 1..HIVE_FRAME_MAX
 *
 * The order frames come in is docs/WORKER-CONTRACT.md; their fields are
 * docs/PROTOCOL.md ("Frames").
 */
#include "proto_int.h"

#include <errno.h>
#include <stdlib.h>

static const char *const type_names[] = { "hello", "memory", "heartbeat",
	"control", "output" };
static const struct proto_enum type_enum = { type_names, 5,
	HIVE_FRAME_HELLO };
static const char *const wstate_names[] = { "starting", "ready", "busy",
	"draining" };
static const struct proto_enum wstate_enum = { wstate_names, 4,
	HIVE_WSTATE_STARTING };
static const char *const ctl_names[] = { "drain" };
static const struct proto_enum ctl_enum = { ctl_names, 1, HIVE_CTL_DRAIN };

#define OFF(mem) offsetof(struct hive_frame, mem)
#define SZ(mem) sizeof(((struct hive_frame *)0)->mem)

const struct proto_field proto_frame_common[] = {
	{ .name = "v", .kind = PF_VERSION, .required = true, .off = OFF(v),
	  .size = 4, .min = 1, .max = HIVE_PROTO_VERSION, .type = "uint" },
	{ .name = "t", .kind = PF_ENUM, .required = true, .off = OFF(type),
	  .en = &type_enum, .type = "str" },
};
const size_t proto_frame_common_n = 2;

static const struct proto_field hello_fields[] = {
	{ .name = "agent", .kind = PF_NAME, .required = true,
	  .off = OFF(u.hello.agent), .min = 1, .max = HIVE_NAME_MAX,
	  .type = "str" },
	{ .name = "instance", .kind = PF_UINT, .required = true,
	  .off = OFF(u.hello.instance), .size = SZ(u.hello.instance),
	  .min = 1, .max = HIVE_INSTANCE_MAX, .type = "uint" },
	{ .name = "pid", .kind = PF_PID, .required = true,
	  .off = OFF(u.hello.pid), .size = 8, .max = INT32_MAX,
	  .type = "uint" },
};

static const struct proto_field memory_fields[] = {
	{ .name = "agent", .kind = PF_NAME, .required = true,
	  .off = OFF(u.memory.agent), .min = 1, .max = HIVE_NAME_MAX,
	  .type = "str" },
	{ .name = "instance", .kind = PF_UINT, .required = true,
	  .off = OFF(u.memory.instance), .size = SZ(u.memory.instance),
	  .min = 1, .max = HIVE_INSTANCE_MAX, .type = "uint" },
	{ .name = "memory_v", .kind = PF_UINT, .required = true,
	  .off = OFF(u.memory.memory_v), .size = SZ(u.memory.memory_v),
	  .max = UINT64_MAX, .type = "uint" },
	{ .name = "memory", .kind = PF_MAP, .off = OFF(u.memory.memory),
	  .max = HIVE_MEMORY_MAX, .type = "map" },
};

static const struct proto_field heartbeat_fields[] = {
	{ .name = "state", .kind = PF_ENUM, .required = true,
	  .off = OFF(u.heartbeat.state), .en = &wstate_enum, .type = "str" },
	{ .name = "task", .kind = PF_ID, .off = OFF(u.heartbeat.task),
	  .min = 1, .max = HIVE_ID_MAX, .type = "str" },
	{ .name = "inflight", .kind = PF_UINT,
	  .off = OFF(u.heartbeat.inflight), .size = SZ(u.heartbeat.inflight),
	  .max = UINT32_MAX, .type = "uint" },
	{ .name = "done", .kind = PF_UINT, .off = OFF(u.heartbeat.done),
	  .size = SZ(u.heartbeat.done), .max = UINT64_MAX, .type = "uint" },
	{ .name = "handler_pid", .kind = PF_PID,
	  .off = OFF(u.heartbeat.handler_pid), .size = 8, .max = INT32_MAX,
	  .type = "uint" },
	{ .name = "handler_rss_kb", .kind = PF_UINT,
	  .off = OFF(u.heartbeat.handler_rss_kb),
	  .size = SZ(u.heartbeat.handler_rss_kb), .max = UINT64_MAX,
	  .type = "uint" },
	{ .name = "handler_restarts", .kind = PF_UINT,
	  .off = OFF(u.heartbeat.handler_restarts),
	  .size = SZ(u.heartbeat.handler_restarts), .max = UINT64_MAX,
	  .type = "uint" },
};

static const struct proto_field control_fields[] = {
	{ .name = "cmd", .kind = PF_ENUM, .required = true,
	  .off = OFF(u.control.cmd), .en = &ctl_enum, .type = "str" },
	{ .name = "reason", .kind = PF_TEXT, .off = OFF(u.control.reason),
	  .min = 0, .max = HIVE_REASON_MAX, .type = "str" },
};

static const struct proto_field output_fields[] = {
	{ .name = "task", .kind = PF_ID, .off = OFF(u.output.task),
	  .min = 1, .max = HIVE_ID_MAX, .type = "str" },
	{ .name = "traceparent", .kind = PF_TRACE,
	  .off = OFF(u.output.traceparent), .min = HIVE_TRACEPARENT_LEN,
	  .max = HIVE_TRACEPARENT_LEN, .type = "str" },
	{ .name = "text", .kind = PF_TEXT, .off = OFF(u.output.text),
	  .min = 0, .max = HIVE_OUTPUT_MAX, .type = "str" },
	{ .name = "dropped", .kind = PF_UINT, .off = OFF(u.output.dropped),
	  .size = SZ(u.output.dropped), .max = UINT64_MAX, .type = "uint" },
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

static const struct {
	enum hive_frame_type type;
	const char *name;
	const struct proto_field *t;
	size_t n;
} frame_types[] = {
	{ HIVE_FRAME_HELLO, "hello", hello_fields, NFIELDS(hello_fields) },
	{ HIVE_FRAME_MEMORY, "memory", memory_fields, NFIELDS(memory_fields) },
	{ HIVE_FRAME_HEARTBEAT, "heartbeat", heartbeat_fields,
	  NFIELDS(heartbeat_fields) },
	{ HIVE_FRAME_CONTROL, "control", control_fields,
	  NFIELDS(control_fields) },
	{ HIVE_FRAME_OUTPUT, "output", output_fields, NFIELDS(output_fields) },
};

const struct proto_field *
proto_frame_table(const char *name, size_t *n)
{
	for (size_t i = 0; i < NFIELDS(frame_types); i++)
		if (strcmp(name, frame_types[i].name) == 0) {
			*n = frame_types[i].n;
			return frame_types[i].t;
		}
	return NULL;
}

static const struct proto_field *
table_of(enum hive_frame_type type, size_t *n)
{
	for (size_t i = 0; i < NFIELDS(frame_types); i++)
		if (frame_types[i].type == type) {
			*n = frame_types[i].n;
			return frame_types[i].t;
		}
	return NULL;
}

/* A memory frame carries a map exactly when memory_v is not 0. */
static int
memory_rules(const struct hive_frame *m, struct proto_err *err)
{
	const struct hive_memory *mem = &m->u.memory;

	if (m->type != HIVE_FRAME_MEMORY)
		return 0;
	if (mem->memory_v != 0 && mem->memory.type == MSGPACK_OBJECT_NIL)
		return proto_fail(err, PROTO_E_MISSING, "memory",
		    "required when memory_v is not 0");
	if (mem->memory_v == 0 && mem->memory.type != MSGPACK_OBJECT_NIL)
		return proto_fail(err, PROTO_E_VALUE, "memory_v",
		    "0 with a memory map");
	return 0;
}

int
proto_decode_frame(const char *buf, size_t len, struct hive_frame *out,
    struct proto_err *err)
{
	const struct proto_field *t;
	msgpack_unpacked up;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (proto_unpack_msg(buf, len, HIVE_FRAME_MAX, PROTO_TREE_DEPTH, &up,
	    err) == -1)
		return -1;
	if (proto_fields_decode(&up.data, proto_frame_common,
	    proto_frame_common_n, out, up.zone, err) == -1)
		goto err;
	t = table_of(out->type, &n);        /* known: "t" was checked */
	if (t == NULL || proto_fields_decode(&up.data, t, n, out, up.zone,
	    err) == -1)
		goto err;
	if (memory_rules(out, err) == -1)
		goto err;
	out->up_ = up;
	return 0;
err:
	msgpack_unpacked_destroy(&up);
	memset(out, 0, sizeof(*out));
	return -1;
}

void
proto_frame_clear(struct hive_frame *m)
{
	if (m == NULL)
		return;
	msgpack_unpacked_destroy(&m->up_);
	memset(m, 0, sizeof(*m));
}

int
proto_encode_frame(msgpack_sbuffer *sb, const struct hive_frame *m,
    struct proto_err *err)
{
	static const char zero[HIVE_FRAME_HDR];
	const struct proto_field *t;
	size_t start = sb->size, n, blen;
	unsigned char *h;

	if ((t = table_of(m->type, &n)) == NULL)
		return proto_fail(err, PROTO_E_VALUE, "t",
		    "%d is not a frame type", (int)m->type);
	if (memory_rules(m, err) == -1)
		return -1;
	if (msgpack_sbuffer_write(sb, zero, sizeof(zero)) != 0) {
		sb->size = start;
		return proto_fail(err, PROTO_E_TOOBIG, "", "out of memory");
	}
	if (proto_encode_tables(sb, HIVE_FRAME_MAX, proto_frame_common,
	    proto_frame_common_n, t, n, m, err) == -1) {
		sb->size = start;
		return -1;
	}
	blen = sb->size - start - HIVE_FRAME_HDR;
	h = (unsigned char *)sb->data + start;
	h[0] = (unsigned char)(blen >> 24);
	h[1] = (unsigned char)(blen >> 16);
	h[2] = (unsigned char)(blen >> 8);
	h[3] = (unsigned char)blen;
	return 0;
}

/* ---- the framer ---- */

void
proto_framer_init(struct proto_framer *fr)
{
	memset(fr, 0, sizeof(*fr));
}

void
proto_framer_free(struct proto_framer *fr)
{
	if (fr == NULL)
		return;
	free(fr->buf);
	memset(fr, 0, sizeof(*fr));
}

/*
 * Append bytes.  Consumed frames are dropped first (the bodies handed out
 * by proto_framer_next() die here), so the buffer holds at most one
 * partial frame plus what is fed.  -1 with errno ENOMEM.
 */
int
proto_framer_feed(struct proto_framer *fr, const void *data, size_t len)
{
	if (fr->off > 0) {
		memmove(fr->buf, fr->buf + fr->off, fr->len - fr->off);
		fr->len -= fr->off;
		fr->off = 0;
	}
	if (len == 0)
		return 0;
	if (len > SIZE_MAX / 2 - fr->len) {
		errno = ENOMEM;
		return -1;
	}
	if (fr->len + len > fr->cap) {
		size_t cap = fr->cap ? fr->cap : 4096;
		char *nb;

		while (cap < fr->len + len)
			cap *= 2;
		if ((nb = realloc(fr->buf, cap)) == NULL)
			return -1;
		fr->buf = nb;
		fr->cap = cap;
	}
	memcpy(fr->buf + fr->len, data, len);
	fr->len += len;
	return 0;
}

int
proto_framer_next(struct proto_framer *fr, const char **body, size_t *blen,
    struct proto_err *err)
{
	const unsigned char *h;
	size_t avail = fr->len - fr->off;
	uint32_t n;

	if (avail < HIVE_FRAME_HDR)
		return 0;
	h = (const unsigned char *)fr->buf + fr->off;
	n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
	    (uint32_t)h[2] << 8 | h[3];
	if (n == 0)
		return proto_fail(err, PROTO_E_MALFORMED, "",
		    "frame length 0");
	if (n > HIVE_FRAME_MAX)
		return proto_fail(err, PROTO_E_TOOBIG, "",
		    "frame length %u > %u", n, HIVE_FRAME_MAX);
	if (avail - HIVE_FRAME_HDR < n)
		return 0;
	*body = fr->buf + fr->off + HIVE_FRAME_HDR;
	*blen = n;
	fr->off += HIVE_FRAME_HDR + n;
	return 1;
}
