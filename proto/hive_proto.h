/*
 * hive_proto.h - every message that crosses a process boundary in Hive.
 *
 * This header is the map of the protocol: the version, every limit, every
 * message type and its codec.  proto/ is the only code that speaks msgpack;
 * docs/PROTOCOL.md describes the same messages for other languages and a
 * test keeps the two in agreement.
 *
 * Every message is one msgpack map whose keys are strings.  Every map has a
 * version field "v" (currently 1).  Unknown keys are ignored so that a newer
 * sender can add optional fields; a message with a newer "v" is rejected.
 * A known key twice is an error; a field whose value is nil counts as
 * absent.  Nesting depth counts containers: a scalar has depth 0, a map or
 * array one more than its deepest element.
 *
 * Where messages live:
 *
 *   Redis streams      each entry has one field "m" whose value is the
 *                      encoded message (task, result, event, dead
 *                      letter, workflow)
 *   hived <-> worker   a SOCK_STREAM socketpair carrying frames:
 *
 *       +----------------+------------------------------+
 *       | length (u32 BE)| msgpack map, "t" names type  |
 *       +----------------+------------------------------+
 *         4 bytes          length bytes (1..HIVE_FRAME_MAX)
 *
 * Ownership: a decoded message borrows.  Strings (struct hive_str) point
 * into the caller's input buffer; values (msgpack_object) live in the
 * message's zone.  Both stay valid until the message is cleared with its
 * _clear function AND while the input buffer lives.  _clear accepts a
 * zeroed or already cleared message.
 *
 * Errors: every decoder returns 0, or -1 with *err naming the field that is
 * wrong and why (proto_strerror() formats it for a log or a dead letter).
 * On any input a decoder neither crashes, reads out of bounds nor leaks.
 */
#ifndef HIVE_PROTO_H
#define HIVE_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <msgpack.h>

#define HIVE_PROTO_VERSION 1

/* ---- limits: every size the protocol checks is here ---- */

#define HIVE_ID_MAX        128          /* task id, workflow id (bytes) */
#define HIVE_NAME_MAX      64           /* agent name, capability */
#define HIVE_AGENT_MAX     80           /* "name/instance" */
#define HIVE_INSTANCE_MAX  9999         /* instance numbers are 1..this */
#define HIVE_HOST_MAX      255          /* host name */
#define HIVE_KEY_MAX       256          /* a stream key (reply_to, dead letters) */
#define HIVE_ENTRY_ID_MAX  48           /* a Redis stream entry id "ms-seq" */
#define HIVE_KIND_MAX      64           /* event kind */
#define HIVE_ERROR_MAX     4096         /* error text of a failed task */
#define HIVE_REASON_MAX    1024         /* reason of an event or dead letter */
#define HIVE_DEPTH_MAX     32           /* nesting of payload/result/memory */
#define HIVE_ATTEMPTS_MAX  1000         /* attempt, max_attempts */
#define HIVE_TIMEOUT_MAX   (7u * 24 * 3600 * 1000)  /* timeout_ms: a week */
#define HIVE_PRIO_LEVELS   3            /* priority 0 (low) .. 2 (high) */
#define HIVE_PRIO_DEFAULT  1
#define HIVE_TASK_MAX      (1u << 20)   /* a whole encoded task: 1 MiB */
#define HIVE_MEMORY_MAX    (1u << 20)   /* an encoded memory map: 1 MiB */
#define HIVE_RESULT_MAX    (3u << 20)   /* a whole encoded result: 3 MiB */
#define HIVE_MSG_MAX       (4u << 20)   /* any message, dead letters too */
#define HIVE_RAW_MAX       (HIVE_MSG_MAX - 16 * 1024) /* raw bytes kept in
                                         * a dead letter: room is left for
                                         * its other fields; the producer
                                         * cuts longer input */
#define HIVE_FRAME_MAX     HIVE_MSG_MAX /* a socketpair frame body */
#define HIVE_WF_TASKS_MAX  1000         /* tasks in one workflow */
#define HIVE_WF_DEPS_MAX   100          /* depends_on entries of one task */
#define HIVE_FRAME_HDR     4
#define HIVE_OUTPUT_MAX    4096         /* one line of a handler's stderr
                                         * in an output frame (bytes) */
#define HIVE_TRACEPARENT_LEN 55         /* "00-<32 hex>-<16 hex>-<2 hex>" */
#define HIVE_TRACE_ID_LEN  32           /* its trace id: 32 hex digits */
#define HIVE_MODEL_MAX     128          /* usage.model (bytes) */
#define HIVE_TOKENS_MAX    ((1ull << 53) - 1) /* usage.*_tokens: exact in a
                                         * JSON number (a double) */
#define HIVE_COST_MAX      1e15         /* usage.cost */

/* The reply_to key of a task must start with this (after the key prefix
 * is NOT applied: clients name the whole key). */
#define HIVE_REPLY_PREFIX  "hive:reply:"

/* ---- errors ---- */

enum proto_errcode {
	PROTO_OK = 0,
	PROTO_E_MALFORMED,   /* not one complete msgpack value */
	PROTO_E_NOTMAP,      /* top level is not a map, or a key is not a string */
	PROTO_E_TOOBIG,      /* whole message over its limit */
	PROTO_E_VERSION,     /* "v" is not a version we speak */
	PROTO_E_MISSING,     /* a required field is absent */
	PROTO_E_TYPE,        /* a field has the wrong msgpack type */
	PROTO_E_SIZE,        /* a field is too long, too deep or out of range */
	PROTO_E_VALUE,       /* a field has a value outside its enumeration or charset */
	PROTO_E_DUPLICATE,   /* a key appears twice */
};

struct proto_err {
	enum proto_errcode code;
	char field[32];      /* "" when the error is about the whole message;
	                      * inside a workflow a path such as
	                      * "tasks[3].depends_on[0]" */
	char detail[96];     /* e.g. "200 bytes > 128" */
};

/*
 * Why a task ended without a result, or with a failed one: the "code" of a
 * dead letter and of a result whose status is error (docs/PROTOCOL.md,
 * Errors), beside the human "reason"/"error".  The first nine are the
 * decoder's (enum proto_errcode, same values): a message broke a rule of
 * the protocol.  The others are outcomes.
 */
enum hive_code {
	HIVE_CODE_NONE = 0,          /* absent (a result that is ok) */
	HIVE_CODE_MALFORMED = PROTO_E_MALFORMED,
	HIVE_CODE_NOTMAP = PROTO_E_NOTMAP,
	HIVE_CODE_TOOBIG = PROTO_E_TOOBIG,
	HIVE_CODE_VERSION = PROTO_E_VERSION,
	HIVE_CODE_MISSING = PROTO_E_MISSING,
	HIVE_CODE_TYPE = PROTO_E_TYPE,
	HIVE_CODE_SIZE = PROTO_E_SIZE,
	HIVE_CODE_VALUE = PROTO_E_VALUE,
	HIVE_CODE_DUPLICATE = PROTO_E_DUPLICATE,
	HIVE_CODE_ATTEMPTS,          /* out of attempts: workers or handlers
	                              * died running it max_attempts times */
	HIVE_CODE_FAILED,            /* the handler reported the failure */
	HIVE_CODE_HANDLER,           /* the handler did not answer as it must:
	                              * unreadable answer, output over the
	                              * limit, killed, not started */
	HIVE_CODE_TIMEOUT,           /* the attempt ran past its timeout */
	HIVE_CODE_DEPENDENCY,        /* a task its workflow task depends on
	                              * failed or is dead */
	HIVE_CODE_REFUSED,           /* a workflow hived cannot accept (a
	                              * task id exists already) */
};
#define HIVE_CODE_LAST HIVE_CODE_REFUSED

/* "version", "attempts", ...; "" for HIVE_CODE_NONE. */
const char *proto_code_name(enum hive_code code);

/* "field 'id': too long (200 bytes > 128)"; returns buf. */
/* Room for any proto_strerror text: "field: detail: what". */
#define PROTO_ERRBUF 160
const char *proto_strerror(const struct proto_err *err, char *buf, size_t len);
const char *proto_errcode_name(enum proto_errcode code);

/* ---- building blocks ---- */

struct hive_str {               /* borrowed, NOT NUL-terminated */
	const char *ptr;
	uint32_t len;
};

#define HIVE_STR(s) ((struct hive_str){ (s), (uint32_t)strlen(s) })

/* A field that holds any value (payload, result, memory) is a
 * msgpack_object; type MSGPACK_OBJECT_NIL means absent. */

/* ---- messages in Redis streams ---- */

/* A unit of work, put on a queue stream by a client (or the coordinator or
 * reclaimer) and read by workers. */
struct hive_task {
	uint32_t v;
	struct hive_str id;          /* required, 1..HIVE_ID_MAX printable ASCII,
	                              * no space: the idempotency key */
	msgpack_object payload;      /* any value, depth <= HIVE_DEPTH_MAX */
	uint32_t attempt;            /* 1.. (default 1) */
	uint32_t max_attempts;       /* 0 = the agent's setting */
	uint32_t timeout_ms;         /* 0 = the agent's setting */
	uint64_t created_ms;         /* 0 = unknown; unix ms by the submitter */
	struct hive_str reply_to;    /* optional; starts with HIVE_REPLY_PREFIX */
	struct hive_str workflow;    /* optional workflow id */
	msgpack_object parents;      /* map or nil: set by hived on a workflow
	                              * task, each task it depends on (its id)
	                              * -> that task's result (any; nil when
	                              * it returned none); at most
	                              * HIVE_WF_DEPS_MAX entries, keys unique */
	struct hive_str traceparent; /* optional W3C trace context
	                              * (proto_valid_traceparent) */
	msgpack_unpacked up_;        /* owns the decoded tree */
};

/*
 * What a task cost, as its handler reported it (names after
 * OpenTelemetry's GenAI conventions: gen_ai.usage.input_tokens, ...).  On
 * the wire a map of the members present; its other keys are ignored.
 * has says which are present; a usage with has 0 is absent.
 */
#define HIVE_USAGE_INPUT   0x1
#define HIVE_USAGE_OUTPUT  0x2
#define HIVE_USAGE_COST    0x4
#define HIVE_USAGE_MODEL   0x8
struct hive_usage {
	uint32_t has;                /* HIVE_USAGE_* bits */
	uint64_t input_tokens;       /* 0..HIVE_TOKENS_MAX */
	uint64_t output_tokens;      /* 0..HIVE_TOKENS_MAX */
	double cost;                 /* finite, 0..HIVE_COST_MAX (an int or
	                              * a float on the wire) */
	struct hive_str model;       /* 1..HIVE_MODEL_MAX bytes of UTF-8 */
};

enum hive_status { HIVE_STATUS_OK = 0, HIVE_STATUS_ERROR = 1 };

/* The outcome of a task, published by the worker to the results stream
 * (and the task's reply_to) in the same MULTI/EXEC that acknowledges it. */
struct hive_result {
	uint32_t v;
	struct hive_str id;          /* the task id */
	struct hive_str agent;       /* "name/instance" that ran it */
	struct hive_str host;        /* host of that worker */
	enum hive_status status;     /* "ok" | "error" */
	msgpack_object result;       /* any value (ok); nil when absent */
	struct hive_str error;       /* required when status is error */
	enum hive_code code;         /* only with status error: why, for
	                              * programs; NONE (absent) is allowed */
	uint32_t attempt;
	uint64_t started_ms;
	uint64_t finished_ms;
	msgpack_object memory;       /* map or nil: the agent's memory after */
	uint64_t memory_v;           /* version of that memory */
	struct hive_str workflow;    /* copied from the task */
	struct hive_usage usage;     /* optional: what the task cost */
	struct hive_str traceparent; /* the task's (or the one the worker
	                              * gave it), optional */
	msgpack_unpacked up_;
};

/* Something that happened (task started, agent crashed...), for the record
 * and the dashboard. */
struct hive_event {
	uint32_t v;
	struct hive_str kind;        /* "task.started", "agent.crashed", ... */
	uint64_t ts_ms;
	struct hive_str host;
	struct hive_str agent;       /* optional */
	struct hive_str task;        /* optional task id */
	int64_t pid;                 /* 0 = none */
	uint32_t attempt;            /* 0 = none */
	struct hive_str reason;      /* optional */
	struct hive_str workflow;    /* optional workflow id (workflow.*) */
	msgpack_unpacked up_;
};

/* A message that could not be handled, in the dead-letter stream. */
struct hive_dead {
	uint32_t v;
	struct hive_str id;          /* task id, empty if it could not be read
	                              * (proto_peek_id) or it is no task */
	struct hive_str reason;      /* required: why */
	enum hive_code code;         /* why, for programs (Hive always sets
	                              * it; NONE = absent) */
	struct hive_str stream;      /* the stream it came from */
	struct hive_str entry;       /* its entry id there */
	struct hive_str agent;       /* who gave up on it, optional */
	uint32_t attempt;            /* the attempts made */
	uint64_t ts_ms;
	struct hive_str workflow;    /* a refused workflow's id, or the
	                              * workflow of the task */
	struct hive_str raw;         /* the original bytes (bin), <= HIVE_RAW_MAX */
	msgpack_unpacked up_;
};

/* One task of a workflow: what the coordinator puts on a queue once every
 * task it depends on has completed. */
struct hive_wf_task {
	struct hive_str id;          /* the task id (unique in the workflow) */
	struct hive_str capability;  /* "name": <p>:q:<name>:<prio>, or
	                              * "@agent": <p>:q:@<agent>:<prio> */
	uint32_t prio;               /* 0..2, default HIVE_PRIO_DEFAULT; 0 is
	                              * a priority here, not "the default":
	                              * set it when building one by hand */
	msgpack_object payload;      /* any; nil when absent; encoded it fits
	                              * in a task (HIVE_TASK_MAX) */
	uint32_t max_attempts;       /* 0 = the agent's setting */
	uint32_t timeout_ms;         /* 0 = the agent's setting */
	struct hive_str reply_to;    /* optional */
	uint32_t ndeps;              /* 0..HIVE_WF_DEPS_MAX */
	struct hive_str *depends_on; /* ndeps ids of other tasks of this
	                              * workflow, each once; NULL when 0 */
};

/* A set of tasks with depends_on edges, submitted to <p>:workflows.  The
 * decoder checks that task ids are unique, that every depends_on names a
 * task of the workflow (not itself, not twice), and that there is no
 * cycle. */
struct hive_workflow {
	uint32_t v;
	struct hive_str id;          /* the workflow id */
	struct hive_str name;        /* optional, a name: what it is */
	uint64_t created_ms;         /* 0 = unknown */
	uint32_t ntasks;             /* 1..HIVE_WF_TASKS_MAX */
	struct hive_wf_task *tasks;  /* in the order submitted; decoded, the
	                              * arrays live in up_'s zone */
	struct hive_str traceparent; /* optional: its tasks share its trace
	                              * id (proto_traceparent_child) */
	msgpack_unpacked up_;        /* owns the tree and the arrays above */
};

/* ---- frames on the hived <-> worker socketpair ---- */

enum hive_frame_type {
	HIVE_FRAME_HELLO = 1,        /* worker -> hived, first frame */
	HIVE_FRAME_MEMORY,           /* both ways: hived's first frame to a
	                              * worker; worker -> hived after each
	                              * acknowledged task that changed it */
	HIVE_FRAME_HEARTBEAT,        /* worker -> hived */
	HIVE_FRAME_CONTROL,          /* hived -> worker */
	HIVE_FRAME_OUTPUT,           /* worker -> hived: a line of a
	                              * handler's stderr */
};

enum hive_wstate {
	HIVE_WSTATE_STARTING = 0,
	HIVE_WSTATE_READY,
	HIVE_WSTATE_BUSY,
	HIVE_WSTATE_DRAINING,
};

enum hive_ctl {
	HIVE_CTL_DRAIN = 1,          /* finish in-flight tasks, take no more, exit 0 */
};

struct hive_hello {
	struct hive_str agent;       /* agent name */
	uint32_t instance;           /* 1..HIVE_INSTANCE_MAX */
	int64_t pid;
};

struct hive_memory {
	struct hive_str agent;       /* agent name */
	uint32_t instance;
	uint64_t memory_v;           /* 0 = no memory yet */
	msgpack_object memory;       /* a map; nil only when memory_v is 0 */
};

struct hive_heartbeat {
	enum hive_wstate state;
	struct hive_str task;        /* a task in flight, optional */
	uint32_t inflight;
	uint64_t done;               /* tasks finished since the worker started */
	int64_t handler_pid;         /* 0 = none running */
	uint64_t handler_rss_kb;
	uint64_t handler_restarts;   /* since the worker started: handler
	                              * exits it did not ask for and handler
	                              * starts that failed */
};

struct hive_control {
	enum hive_ctl cmd;           /* "drain" */
	struct hive_str reason;      /* optional, for the worker's log */
};

/* A line a handler wrote to stderr (without its newline), or only a
 * count of lines the worker dropped (text absent).  Either way dropped
 * counts the lines dropped since the previous output frame. */
struct hive_output {
	struct hive_str task;        /* the task it is about, optional: set
	                              * when the worker can tell */
	struct hive_str traceparent; /* that task's, optional */
	struct hive_str text;        /* optional, UTF-8 without NUL,
	                              * <= HIVE_OUTPUT_MAX bytes */
	uint64_t dropped;            /* lines the worker dropped before it */
};

struct hive_frame {
	uint32_t v;
	enum hive_frame_type type;   /* "t": hello | memory | heartbeat |
	                              * control | output */
	union {
		struct hive_hello hello;
		struct hive_memory memory;
		struct hive_heartbeat heartbeat;
		struct hive_control control;
		struct hive_output output;
	} u;
	msgpack_unpacked up_;
};

/* ---- codec ---- */

/*
 * Decoders: buf/len hold exactly one encoded message (for frames: the body
 * after the length).  On success *out borrows from buf (see above) and must
 * be cleared.  On failure *out needs no clearing and *err says why.
 */
int proto_decode_task(const char *buf, size_t len, struct hive_task *out,
    struct proto_err *err);
int proto_decode_result(const char *buf, size_t len, struct hive_result *out,
    struct proto_err *err);
int proto_decode_event(const char *buf, size_t len, struct hive_event *out,
    struct proto_err *err);
int proto_decode_dead(const char *buf, size_t len, struct hive_dead *out,
    struct proto_err *err);
int proto_decode_frame(const char *buf, size_t len, struct hive_frame *out,
    struct proto_err *err);
int proto_decode_workflow(const char *buf, size_t len,
    struct hive_workflow *out, struct proto_err *err);

/*
 * One msgpack value of any type (not a message: no "v", no fields), for
 * callers that need a value from bytes: the same reader as the decoders
 * (exact length, depth <= HIVE_DEPTH_MAX, len <= HIVE_MSG_MAX, borrows
 * from buf).  Free with msgpack_unpacked_destroy().
 */
int proto_decode_value(const char *buf, size_t len, msgpack_unpacked *out,
    struct proto_err *err);

/*
 * The "id" of a message that did not decode, when it can still be read:
 * buf is one msgpack map (at most HIVE_MSG_MAX bytes) whose key "id"
 * appears once with a valid id (proto_valid_id).  0 and *id borrowing
 * from buf, else -1 and *id empty.  So that a dead letter names the task
 * (or workflow) a client submitted even when the rest is wrong.
 */
int proto_peek_id(const char *buf, size_t len, struct hive_str *id);

void proto_task_clear(struct hive_task *);
void proto_result_clear(struct hive_result *);
void proto_event_clear(struct hive_event *);
void proto_dead_clear(struct hive_dead *);
void proto_frame_clear(struct hive_frame *);
void proto_workflow_clear(struct hive_workflow *);

/*
 * Encoders append one message to sb (for frames: length header included).
 * They validate like the decoders do, so a message Hive writes is always
 * one Hive can read: -1 with *err when a field is out of its limits, sb
 * then unchanged.  "v" is always written as HIVE_PROTO_VERSION.
 */
int proto_encode_task(msgpack_sbuffer *sb, const struct hive_task *m,
    struct proto_err *err);
int proto_encode_result(msgpack_sbuffer *sb, const struct hive_result *m,
    struct proto_err *err);
int proto_encode_event(msgpack_sbuffer *sb, const struct hive_event *m,
    struct proto_err *err);
int proto_encode_dead(msgpack_sbuffer *sb, const struct hive_dead *m,
    struct proto_err *err);
int proto_encode_frame(msgpack_sbuffer *sb, const struct hive_frame *m,
    struct proto_err *err);
int proto_encode_workflow(msgpack_sbuffer *sb, const struct hive_workflow *m,
    struct proto_err *err);

/*
 * Frame reader: feed it bytes from the socketpair as they come, take whole
 * frame bodies out.  A length of 0 or over HIVE_FRAME_MAX is an error (the
 * peer is broken: the caller drops the connection).
 */
struct proto_framer {
	char *buf;
	size_t len, cap, off;
};

void proto_framer_init(struct proto_framer *);
void proto_framer_free(struct proto_framer *);
int proto_framer_feed(struct proto_framer *, const void *data, size_t len);
/* 1 and *body, *blen set (valid until the next feed/next call), 0 when no
 * whole frame is buffered, -1 on a bad length (err set). */
int proto_framer_next(struct proto_framer *, const char **body, size_t *blen,
    struct proto_err *err);

/* ---- names: stream keys and groups (see docs/PROTOCOL.md) ---- */

/*
 * All keys start with a prefix ("hive" unless configured), so that several
 * Hive installations or test cases can share one Redis.  Each function
 * writes a NUL-terminated key into buf and returns its length, or -1 if it
 * does not fit or a name is invalid.
 *
 *   <p>:q:<capability>:<prio>     queue of a capability, prio 0..2
 *   <p>:q:@<agent>:<prio>         queue of an agent (any of its instances)
 *   <p>:direct:<agent>/<inst>     direct queue of one agent instance
 *   <p>:broadcast                 every worker reads every entry
 *   <p>:results                   results of all tasks
 *   <p>:events                    events
 *   <p>:dead                      dead letters
 *   <p>:workflows                 workflows submitted to the coordinator
 *   <p>:output:<task id>          a task's progress and chunks
 *                                 (docs/PROTOCOL.md, output stream)
 */
int proto_key_queue(char *buf, size_t len, const char *prefix,
    const char *capability, unsigned prio);
int proto_key_agent_queue(char *buf, size_t len, const char *prefix,
    const char *agent, unsigned prio);
int proto_key_direct(char *buf, size_t len, const char *prefix,
    const char *agent, unsigned instance);
int proto_key_named(char *buf, size_t len, const char *prefix,
    const char *name);   /* "broadcast", "results", "events", "dead",
                          * "workflows" */
int proto_key_output(char *buf, size_t len, const char *prefix,
    const char *task_id);

/* The consumer group of workers on queue and direct streams. */
#define HIVE_GROUP_WORKERS   "workers"
/* The consumer group of the recorder on every stream it records. */
#define HIVE_GROUP_RECORDER  "recorder"
/* The consumer group of hived's workflow coordinators on <p>:workflows. */
#define HIVE_GROUP_COORD     "coordinator"
/* On the broadcast stream each worker instance has its own group, named
 * like its consumer, so every worker gets every entry. */

/* Consumer name of an agent instance: "<agent>/<instance>@<host>". */
int proto_consumer_name(char *buf, size_t len, const char *agent,
    unsigned instance, const char *host);

/* 0 if s (len bytes) is a valid agent or capability name:
 * 1..HIVE_NAME_MAX of [A-Za-z0-9_.-], not starting with '.' or '-'. */
int proto_valid_name(const char *s, size_t len);
/* 0 if s is a valid task id: 1..HIVE_ID_MAX bytes of 0x21..0x7e. */
int proto_valid_id(const char *s, size_t len);

/* ---- trace context and usage (usage.c) ---- */

/*
 * 0 if s is a W3C traceparent of version 00's form: exactly
 * "vv-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", lower-case
 * hex, version not "ff", neither id all zeros.  Later versions' longer
 * forms are refused.
 */
int proto_valid_traceparent(const char *s, size_t len);
/*
 * Write a new traceparent into buf (at least HIVE_TRACEPARENT_LEN + 1
 * bytes): version 00, flags 01 (sampled), a random span id (getrandom)
 * and the trace id trace_id (HIVE_TRACE_ID_LEN hex digits, not
 * NUL-terminated), or a random one when it is NULL.  Returns buf.
 */
char *proto_traceparent_make(char *buf, const char *trace_id);
/* The trace id of a valid traceparent (points into it, 32 bytes). */
#define PROTO_TRACE_ID(tp) ((tp) + 3)

/*
 * A usage from JSON (a handler's answer): an object whose known members
 * have the wire's types and limits; other members are ignored.  model
 * borrows from j.  0, or -1 with err naming the member ("usage.cost").
 */
struct json_t;
int proto_usage_from_json(struct json_t *j, struct hive_usage *u,
    struct proto_err *err);

/* ---- msgpack <-> JSON (handlers speak JSON) ---- */

/*
 * Convert a value to JSON / JSON to a value. Maps must have string
 * keys; bin and ext have no JSON form and are refused; floats must be
 * finite.  See proto/json.c.  proto_json_to_obj only reads j (not const:
 * jansson iterates objects through non-const pointers).
 */
struct json_t;
struct json_t *proto_obj_to_json(const msgpack_object *o, struct proto_err *err);
int proto_json_to_obj(struct json_t *j, msgpack_zone *z,
    msgpack_object *out, struct proto_err *err);
/*
 * The compact JSON text of o (malloc'd, NUL-terminated, its length in
 * *len if len is not NULL), written straight from o: the JSON value
 * proto_obj_to_json(o) gives, the same values refused, strings escaped
 * as jansson does, without building a tree (proto/json_text.c).
 */
char *proto_obj_json_text(const msgpack_object *o, size_t *len,
    struct proto_err *err);

uint64_t proto_now_ms(void);   /* wall clock, unix ms (clock.c) */

/* ---- the field tables, for docs/PROTOCOL.md and its test ---- */

struct proto_field_doc {
	const char *name;            /* key in the map */
	const char *type;            /* "uint", "str", "map", "bin", "any",
	                              * "array" */
	int required;
};

/*
 * The fields the codec knows for a message: "task", "result", "event",
 * "dead", "workflow", "workflow task" (a map in a workflow's "tasks"), or
 * a frame type "hello", "memory", "heartbeat", "control", "output" (its "v" and "t"
 * included).  Fills up to max rows in wire order; returns the
 * number of fields, or -1 for an unknown message.
 */
int proto_field_docs(const char *message, struct proto_field_doc *out,
    size_t max);

#endif /* HIVE_PROTO_H */
