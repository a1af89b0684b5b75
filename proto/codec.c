/*
 * codec.c - the messages that live in Redis streams: task, result, event,
 * dead letter, workflow.  Each is one table of fields (the single
 * definition of its wire form: docs/PROTOCOL.md documents these tables
 * and tests/proto/test_protocol_doc.c checks it does) and four small
 * functions around the generic code of fields.c.  A workflow's table
 * nests the table of its tasks; the rules of its graph are workflow.c.
 */
#include "proto_int.h"

#include <stddef.h>

/* Table rows.  The type string is the msgpack type docs/PROTOCOL.md shows. */
#define F_V(st) \
	{ .name = "v", .kind = PF_VERSION, .required = true, \
	  .off = offsetof(st, v), .size = 4, .min = 1, \
	  .max = HIVE_PROTO_VERSION, .type = "uint" }
#define F_STR(nm, k, req, st, mem, mn, mx) \
	{ .name = nm, .kind = k, .required = req, .off = offsetof(st, mem), \
	  .min = mn, .max = mx, .type = "str" }
#define F_UINT(nm, req, st, mem, mn, mx, df) \
	{ .name = nm, .kind = PF_UINT, .required = req, \
	  .off = offsetof(st, mem), .size = sizeof(((st *)0)->mem), \
	  .min = mn, .max = mx, .dflt = df, .type = "uint" }
#define F_PIDF(nm, req, st, mem) \
	{ .name = nm, .kind = PF_PID, .required = req, \
	  .off = offsetof(st, mem), .size = 8, .min = 0, .max = INT32_MAX, \
	  .type = "uint" }
#define F_OBJ(nm, k, st, mem, mx, ty) \
	{ .name = nm, .kind = k, .required = false, .off = offsetof(st, mem), \
	  .max = mx, .type = ty }
#define F_ENUM(nm, st, mem, e) \
	{ .name = nm, .kind = PF_ENUM, .required = true, \
	  .off = offsetof(st, mem), .en = &e, .type = "str" }

/* The optional W3C trace context of a task, result or workflow. */
#define F_TRACE(st) \
	F_STR("traceparent", PF_TRACE, false, st, traceparent, \
	    HIVE_TRACEPARENT_LEN, HIVE_TRACEPARENT_LEN)

/* An optional enum: 0 (its first value is base 1) is absent. */
#define F_OPTENUM(nm, st, mem, e) \
	{ .name = nm, .kind = PF_ENUM, .required = false, \
	  .off = offsetof(st, mem), .en = &e, .type = "str" }

static const char *const status_names[] = { "ok", "error" };
static const struct proto_enum status_enum = { status_names, 2,
	HIVE_STATUS_OK };

/* enum hive_code from 1; the first nine are proto_errcode_name()'s. */
static const char *const code_names[] = { "malformed", "notmap", "toobig",
	"version", "missing", "type", "size", "value", "duplicate",
	"attempts", "failed", "handler", "timeout", "dependency", "refused" };
static const struct proto_enum code_enum = { code_names,
	sizeof(code_names) / sizeof(code_names[0]), HIVE_CODE_MALFORMED };
_Static_assert(sizeof(code_names) / sizeof(code_names[0]) ==
    HIVE_CODE_LAST, "a name for every code");
_Static_assert(HIVE_CODE_MALFORMED == 1, "codes start at 1, 0 is absent");

static const struct proto_field task_fields[] = {
	F_V(struct hive_task),
	F_STR("id", PF_ID, true, struct hive_task, id, 1, HIVE_ID_MAX),
	F_OBJ("payload", PF_ANY, struct hive_task, payload, 0, "any"),
	F_UINT("attempt", false, struct hive_task, attempt, 1,
	    HIVE_ATTEMPTS_MAX, 1),
	F_UINT("max_attempts", false, struct hive_task, max_attempts, 0,
	    HIVE_ATTEMPTS_MAX, 0),
	F_UINT("timeout_ms", false, struct hive_task, timeout_ms, 0,
	    HIVE_TIMEOUT_MAX, 0),
	F_UINT("created_ms", false, struct hive_task, created_ms, 0,
	    UINT64_MAX, 0),
	F_STR("reply_to", PF_REPLY, false, struct hive_task, reply_to, 1,
	    HIVE_KEY_MAX),
	F_STR("workflow", PF_ID, false, struct hive_task, workflow, 1,
	    HIVE_ID_MAX),
	{ .name = "parents", .kind = PF_IDMAP, .required = false,
	  .off = offsetof(struct hive_task, parents), .min = 0,
	  .max = HIVE_WF_DEPS_MAX, .type = "map" },
	F_TRACE(struct hive_task),
};

static const struct proto_field result_fields[] = {
	F_V(struct hive_result),
	F_STR("id", PF_ID, true, struct hive_result, id, 1, HIVE_ID_MAX),
	F_STR("agent", PF_AGENT, true, struct hive_result, agent, 1,
	    HIVE_AGENT_MAX),
	F_STR("host", PF_PRINT, true, struct hive_result, host, 1,
	    HIVE_HOST_MAX),
	F_ENUM("status", struct hive_result, status, status_enum),
	F_OBJ("result", PF_ANY, struct hive_result, result, 0, "any"),
	F_STR("error", PF_TEXT, false, struct hive_result, error, 0,
	    HIVE_ERROR_MAX),
	F_OPTENUM("code", struct hive_result, code, code_enum),
	F_UINT("attempt", false, struct hive_result, attempt, 1,
	    HIVE_ATTEMPTS_MAX, 1),
	F_UINT("started_ms", false, struct hive_result, started_ms, 0,
	    UINT64_MAX, 0),
	F_UINT("finished_ms", false, struct hive_result, finished_ms, 0,
	    UINT64_MAX, 0),
	F_OBJ("memory", PF_MAP, struct hive_result, memory, HIVE_MEMORY_MAX,
	    "map"),
	F_UINT("memory_v", false, struct hive_result, memory_v, 0,
	    UINT64_MAX, 0),
	F_STR("workflow", PF_ID, false, struct hive_result, workflow, 1,
	    HIVE_ID_MAX),
	{ .name = "usage", .kind = PF_USAGE, .required = false,
	  .off = offsetof(struct hive_result, usage), .type = "map" },
	F_TRACE(struct hive_result),
};

static const struct proto_field event_fields[] = {
	F_V(struct hive_event),
	F_STR("kind", PF_NAME, true, struct hive_event, kind, 1,
	    HIVE_KIND_MAX),
	F_UINT("ts_ms", true, struct hive_event, ts_ms, 0, UINT64_MAX, 0),
	F_STR("host", PF_PRINT, true, struct hive_event, host, 1,
	    HIVE_HOST_MAX),
	F_STR("agent", PF_AGENT, false, struct hive_event, agent, 1,
	    HIVE_AGENT_MAX),
	F_STR("task", PF_ID, false, struct hive_event, task, 1, HIVE_ID_MAX),
	F_PIDF("pid", false, struct hive_event, pid),
	F_UINT("attempt", false, struct hive_event, attempt, 0,
	    HIVE_ATTEMPTS_MAX, 0),
	F_STR("reason", PF_TEXT, false, struct hive_event, reason, 0,
	    HIVE_REASON_MAX),
	F_STR("workflow", PF_ID, false, struct hive_event, workflow, 1,
	    HIVE_ID_MAX),
};

static const struct proto_field dead_fields[] = {
	F_V(struct hive_dead),
	F_STR("id", PF_ID, false, struct hive_dead, id, 1, HIVE_ID_MAX),
	F_STR("reason", PF_TEXT, true, struct hive_dead, reason, 1,
	    HIVE_REASON_MAX),
	F_OPTENUM("code", struct hive_dead, code, code_enum),
	F_STR("stream", PF_PRINT, false, struct hive_dead, stream, 1,
	    HIVE_KEY_MAX),
	F_STR("entry", PF_ENTRY, false, struct hive_dead, entry, 1,
	    HIVE_ENTRY_ID_MAX),
	F_STR("agent", PF_AGENT, false, struct hive_dead, agent, 1,
	    HIVE_AGENT_MAX),
	F_UINT("attempt", false, struct hive_dead, attempt, 0,
	    HIVE_ATTEMPTS_MAX, 0),
	F_UINT("ts_ms", true, struct hive_dead, ts_ms, 0, UINT64_MAX, 0),
	F_STR("workflow", PF_ID, false, struct hive_dead, workflow, 1,
	    HIVE_ID_MAX),
	{ .name = "raw", .kind = PF_RAW, .required = false,
	  .off = offsetof(struct hive_dead, raw), .max = HIVE_RAW_MAX,
	  .type = "bin" },
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

/* An element of a depends_on list: an id, nameless (an error in it is
 * named by its path, "tasks[2].depends_on[0]"). */
static const struct proto_field wf_dep_field[] = {
	{ .name = "", .kind = PF_ID, .required = true, .off = 0, .min = 1,
	  .max = HIVE_ID_MAX, .type = "str" },
};

/* A map in a workflow's "tasks": what the coordinator turns into a task
 * on <p>:q:<capability>:<prio>.  The payload must fit in that task. */
static const struct proto_field wf_task_fields[] = {
	F_STR("id", PF_ID, true, struct hive_wf_task, id, 1, HIVE_ID_MAX),
	F_STR("capability", PF_CAP, true, struct hive_wf_task, capability, 1,
	    HIVE_NAME_MAX + 1),
	{ .name = "prio", .kind = PF_UINT, .required = false,
	  .off = offsetof(struct hive_wf_task, prio),
	  .size = sizeof(((struct hive_wf_task *)0)->prio), .min = 0,
	  .max = HIVE_PRIO_LEVELS - 1, .dflt = HIVE_PRIO_DEFAULT,
	  .zero_is_value = true, .type = "uint" },
	F_OBJ("payload", PF_ANY, struct hive_wf_task, payload, HIVE_TASK_MAX,
	    "any"),
	{ .name = "depends_on", .kind = PF_LIST, .required = false,
	  .off = offsetof(struct hive_wf_task, depends_on),
	  .cnt_off = offsetof(struct hive_wf_task, ndeps), .min = 0,
	  .max = HIVE_WF_DEPS_MAX, .sub = wf_dep_field, .nsub = 1,
	  .submap = false, .elsize = sizeof(struct hive_str),
	  .type = "array" },
	F_UINT("max_attempts", false, struct hive_wf_task, max_attempts, 0,
	    HIVE_ATTEMPTS_MAX, 0),
	F_UINT("timeout_ms", false, struct hive_wf_task, timeout_ms, 0,
	    HIVE_TIMEOUT_MAX, 0),
	F_STR("reply_to", PF_REPLY, false, struct hive_wf_task, reply_to, 1,
	    HIVE_KEY_MAX),
};

static const struct proto_field workflow_fields[] = {
	F_V(struct hive_workflow),
	F_STR("id", PF_ID, true, struct hive_workflow, id, 1, HIVE_ID_MAX),
	F_STR("name", PF_NAME, false, struct hive_workflow, name, 1,
	    HIVE_NAME_MAX),
	F_UINT("created_ms", false, struct hive_workflow, created_ms, 0,
	    UINT64_MAX, 0),
	{ .name = "tasks", .kind = PF_LIST, .required = true,
	  .off = offsetof(struct hive_workflow, tasks),
	  .cnt_off = offsetof(struct hive_workflow, ntasks), .min = 1,
	  .max = HIVE_WF_TASKS_MAX, .sub = wf_task_fields,
	  .nsub = NFIELDS(wf_task_fields), .submap = true,
	  .elsize = sizeof(struct hive_wf_task), .type = "array" },
	F_TRACE(struct hive_workflow),
};

_Static_assert(NFIELDS(result_fields) <= PROTO_FIELDS_MAX, "table too big");
_Static_assert(NFIELDS(workflow_fields) <= PROTO_FIELDS_MAX, "table too big");
_Static_assert(NFIELDS(wf_task_fields) <= PROTO_FIELDS_MAX, "table too big");
_Static_assert(NFIELDS(task_fields) <= PROTO_FIELDS_MAX, "table too big");
_Static_assert(NFIELDS(event_fields) <= PROTO_FIELDS_MAX, "table too big");
_Static_assert(NFIELDS(dead_fields) <= PROTO_FIELDS_MAX, "table too big");

/* ---- rules across fields ---- */

/* A failed task says why (a code only then); memory and its version come
 * together (the version of a memory is >= 1, 0 means "no memory"). */
static int
result_rules(const struct hive_result *m, struct proto_err *err)
{
	if (m->status == HIVE_STATUS_ERROR && m->error.len == 0)
		return proto_fail(err, PROTO_E_MISSING, "error",
		    "required when status is error");
	if (m->status != HIVE_STATUS_ERROR && m->code != HIVE_CODE_NONE)
		return proto_fail(err, PROTO_E_VALUE, "code",
		    "only when status is error");
	if (m->memory.type != MSGPACK_OBJECT_NIL && m->memory_v == 0)
		return proto_fail(err, PROTO_E_MISSING, "memory_v",
		    "required (>= 1) with memory");
	if (m->memory.type == MSGPACK_OBJECT_NIL && m->memory_v != 0)
		return proto_fail(err, PROTO_E_MISSING, "memory",
		    "required when memory_v is set");
	return 0;
}

/* ---- decoders ---- */

/* Decode buf into the struct at out whose msgpack_unpacked is *up (a
 * member of it); table t; out zeroed on failure. */
static int
decode_msg(const char *buf, size_t len, size_t max, unsigned depth,
    const struct proto_field *t, size_t n, void *out, size_t outsize,
    msgpack_unpacked *up, struct proto_err *err)
{
	msgpack_unpacked tmp;

	memset(out, 0, outsize);
	if (proto_unpack_msg(buf, len, max, depth, &tmp, err) == -1)
		return -1;
	if (proto_fields_decode(&tmp.data, t, n, out, tmp.zone, err) == -1) {
		msgpack_unpacked_destroy(&tmp);
		memset(out, 0, outsize);
		return -1;
	}
	*up = tmp;
	return 0;
}

int
proto_decode_task(const char *buf, size_t len, struct hive_task *out,
    struct proto_err *err)
{
	return decode_msg(buf, len, HIVE_TASK_MAX, PROTO_TREE_DEPTH,
	    task_fields, NFIELDS(task_fields), out, sizeof(*out), &out->up_,
	    err);
}

int
proto_decode_result(const char *buf, size_t len, struct hive_result *out,
    struct proto_err *err)
{
	if (decode_msg(buf, len, HIVE_RESULT_MAX, PROTO_TREE_DEPTH,
	    result_fields, NFIELDS(result_fields), out, sizeof(*out),
	    &out->up_, err) == -1)
		return -1;
	if (result_rules(out, err) == -1) {
		proto_result_clear(out);
		return -1;
	}
	return 0;
}

int
proto_decode_event(const char *buf, size_t len, struct hive_event *out,
    struct proto_err *err)
{
	return decode_msg(buf, len, HIVE_MSG_MAX, PROTO_TREE_DEPTH,
	    event_fields, NFIELDS(event_fields), out, sizeof(*out), &out->up_,
	    err);
}

int
proto_decode_dead(const char *buf, size_t len, struct hive_dead *out,
    struct proto_err *err)
{
	return decode_msg(buf, len, HIVE_MSG_MAX, PROTO_TREE_DEPTH,
	    dead_fields, NFIELDS(dead_fields), out, sizeof(*out), &out->up_,
	    err);
}

/*
 * A workflow: the table (the tasks and their depends_on lists are arrays
 * in the message's zone), then the rules of its graph.  Its tree is two
 * levels deeper than other messages' so that a task's payload may nest
 * HIVE_DEPTH_MAX deep like a task's own.
 */
int
proto_decode_workflow(const char *buf, size_t len, struct hive_workflow *out,
    struct proto_err *err)
{
	if (decode_msg(buf, len, HIVE_MSG_MAX, PROTO_WF_TREE_DEPTH,
	    workflow_fields, NFIELDS(workflow_fields), out, sizeof(*out),
	    &out->up_, err) == -1)
		return -1;
	if (proto_workflow_rules(out, err) == -1) {
		proto_workflow_clear(out);
		return -1;
	}
	return 0;
}

void
proto_workflow_clear(struct hive_workflow *m)
{
	if (m == NULL)
		return;
	msgpack_unpacked_destroy(&m->up_);
	memset(m, 0, sizeof(*m));
}

void
proto_task_clear(struct hive_task *m)
{
	if (m == NULL)
		return;
	msgpack_unpacked_destroy(&m->up_);
	memset(m, 0, sizeof(*m));
}

void
proto_result_clear(struct hive_result *m)
{
	if (m == NULL)
		return;
	msgpack_unpacked_destroy(&m->up_);
	memset(m, 0, sizeof(*m));
}

void
proto_event_clear(struct hive_event *m)
{
	if (m == NULL)
		return;
	msgpack_unpacked_destroy(&m->up_);
	memset(m, 0, sizeof(*m));
}

void
proto_dead_clear(struct hive_dead *m)
{
	if (m == NULL)
		return;
	msgpack_unpacked_destroy(&m->up_);
	memset(m, 0, sizeof(*m));
}

/* ---- encoders ---- */

int
proto_encode_task(msgpack_sbuffer *sb, const struct hive_task *m,
    struct proto_err *err)
{
	return proto_encode_tables(sb, HIVE_TASK_MAX, task_fields,
	    NFIELDS(task_fields), NULL, 0, m, err);
}

int
proto_encode_result(msgpack_sbuffer *sb, const struct hive_result *m,
    struct proto_err *err)
{
	if (result_rules(m, err) == -1)
		return -1;
	return proto_encode_tables(sb, HIVE_RESULT_MAX, result_fields,
	    NFIELDS(result_fields), NULL, 0, m, err);
}

int
proto_encode_event(msgpack_sbuffer *sb, const struct hive_event *m,
    struct proto_err *err)
{
	return proto_encode_tables(sb, HIVE_MSG_MAX, event_fields,
	    NFIELDS(event_fields), NULL, 0, m, err);
}

int
proto_encode_dead(msgpack_sbuffer *sb, const struct hive_dead *m,
    struct proto_err *err)
{
	return proto_encode_tables(sb, HIVE_MSG_MAX, dead_fields,
	    NFIELDS(dead_fields), NULL, 0, m, err);
}

/* The table's checks first: the rules walk the arrays, which must be
 * sound. */
int
proto_encode_workflow(msgpack_sbuffer *sb, const struct hive_workflow *m,
    struct proto_err *err)
{
	uint32_t count;

	if (proto_fields_check(workflow_fields, NFIELDS(workflow_fields), m,
	    &count, err) == -1 || proto_workflow_rules(m, err) == -1)
		return -1;
	return proto_encode_tables(sb, HIVE_MSG_MAX, workflow_fields,
	    NFIELDS(workflow_fields), NULL, 0, m, err);
}

const char *
proto_code_name(enum hive_code code)
{
	if (code < HIVE_CODE_MALFORMED || code > HIVE_CODE_LAST)
		return "";
	return code_names[code - HIVE_CODE_MALFORMED];
}

/*
 * The reader's limits are the largest message's: what decodes as a map
 * at all is looked into.  The value borrows from buf, so it outlives the
 * tree it was found in.
 */
int
proto_peek_id(const char *buf, size_t len, struct hive_str *id)
{
	msgpack_unpacked up;
	struct proto_err err;
	const msgpack_object *found = NULL;
	int rc = -1;

	id->ptr = NULL;
	id->len = 0;
	if (proto_unpack_msg(buf, len, HIVE_MSG_MAX, PROTO_UNPACK_DEPTH_MAX,
	    &up, &err) == -1)
		return -1;
	for (uint32_t i = 0; i < up.data.via.map.size; i++) {
		const msgpack_object *k = &up.data.via.map.ptr[i].key;

		if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != 2 ||
		    memcmp(k->via.str.ptr, "id", 2) != 0)
			continue;
		if (found != NULL) {     /* twice: which one is it? */
			found = NULL;
			break;
		}
		found = &up.data.via.map.ptr[i].val;
	}
	if (found != NULL && found->type == MSGPACK_OBJECT_STR &&
	    proto_valid_id(found->via.str.ptr, found->via.str.size) == 0) {
		id->ptr = found->via.str.ptr;
		id->len = found->via.str.size;
		rc = 0;
	}
	msgpack_unpacked_destroy(&up);
	return rc;
}

/* ---- the tables, for docs ---- */

static void
doc_rows(const struct proto_field *t, size_t n, struct proto_field_doc *out,
    size_t max, size_t *count)
{
	for (size_t i = 0; i < n; i++, (*count)++) {
		if (*count >= max)
			continue;
		out[*count].name = t[i].name;
		out[*count].type = t[i].type;
		out[*count].required = t[i].required;
	}
}

int
proto_field_docs(const char *message, struct proto_field_doc *out,
    size_t max)
{
	static const struct {
		const char *name;
		const struct proto_field *t;
		size_t n;
	} msgs[] = {
		{ "task", task_fields, NFIELDS(task_fields) },
		{ "result", result_fields, NFIELDS(result_fields) },
		{ "event", event_fields, NFIELDS(event_fields) },
		{ "dead", dead_fields, NFIELDS(dead_fields) },
		{ "workflow", workflow_fields, NFIELDS(workflow_fields) },
		{ "workflow task", wf_task_fields, NFIELDS(wf_task_fields) },
	};
	const struct proto_field *t;
	size_t count = 0, n;

	for (size_t i = 0; i < NFIELDS(msgs); i++)
		if (strcmp(message, msgs[i].name) == 0) {
			doc_rows(msgs[i].t, msgs[i].n, out, max, &count);
			return (int)count;
		}
	if ((t = proto_frame_table(message, &n)) == NULL)
		return -1;
	doc_rows(proto_frame_common, proto_frame_common_n, out, max, &count);
	doc_rows(t, n, out, max, &count);
	return (int)count;
}
