/*
 * api_submit.c - work submitted through the HTTP API (api.h, api_dead.h):
 *
 *   POST /tasks       a task, from JSON, onto its queue (XADD)
 *   POST /workflows   a workflow, from JSON, onto <p>:workflows
 *
 * The JSON is read strictly: an unknown field, a wrong type, a bad name
 * or id, a payload too deep or too big is a 400 naming the field, and
 * Redis is asked nothing.  The message is then the protocol's
 * (docs/PROTOCOL.md, made by proto/'s encoders, which check every limit
 * once more), XADDed on hived's own Redis connection (store.c).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "api.h"
#include "api_dead.h"
#include "hive_proto.h"
#include "hived.h"
#include "log.h"
#include "rconn.h"
#include "util.h"

#define ID_RANDOM      20      /* random characters of a generated id */
#define ERRLEN         512

/* A generated id: tag ("t-") and ID_RANDOM URL-safe characters. */
static void
make_id(char *buf, size_t len, const char *tag)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	static uint64_t seq;
	unsigned char r[ID_RANDOM];
	size_t t = strlen(tag);

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		/* No entropy yet (early boot): unique is what an id needs. */
		uint64_t h = hash_fnv1a_add(proto_now_ms() ^ (uint64_t)getpid(),
		    &seq, sizeof(seq));
		seq++;
		for (size_t i = 0; i < sizeof(r); i++) {
			h = hash_fnv1a_add(h, &i, sizeof(i));
			r[i] = (unsigned char)h;
		}
	}
	snprintf(buf, len, "%s", tag);
	for (size_t i = 0; i < sizeof(r) && t + i + 1 < len; i++) {
		buf[t + i] = abc[r[i] & 63];
		buf[t + i + 1] = '\0';
	}
}

/* "name" or "@name". */
int
sub_capability_ok(const char *s)
{
	if (s[0] == '@')
		s++;
	return proto_valid_name(s, strlen(s)) == 0;
}

/* ---- JSON bodies, strictly ---- */

/* A field's place for error messages: "tasks[2].prio". */
struct where {
	char s[96];
};

static void
where_of(struct where *w, const char *in, const char *name)
{
	snprintf(w->s, sizeof(w->s), "%s%s%s", in, in[0] ? "." : "", name);
}

/* Every key of o is one of allowed (NULL-ended): else err names it. */
int
sub_body_keys(json_t *o, const char *const *allowed, const char *in, char *err,
    size_t len)
{
	const char *k;
	json_t *v;
	struct where w;

	json_object_foreach(o, k, v) {
		size_t i;
		for (i = 0; allowed[i] != NULL && strcmp(allowed[i], k) != 0; i++)
			;
		if (allowed[i] == NULL) {
			where_of(&w, in, k);
			snprintf(err, len, "field '%s': unknown field", w.s);
			return -1;
		}
	}
	return 0;
}

/* An optional string field (null counts as absent): *out NULL when
 * absent. */
int
sub_opt_str(json_t *o, const char *name, const char *in, const char **out,
    char *err, size_t len)
{
	json_t *v = json_object_get(o, name);
	struct where w;

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		where_of(&w, in, name);
		snprintf(err, len, "field '%s': expected a string", w.s);
		return -1;
	}
	*out = json_string_value(v);
	if (strlen(*out) != json_string_length(v)) {
		where_of(&w, in, name);
		snprintf(err, len, "field '%s': contains NUL", w.s);
		return -1;
	}
	return 0;
}

/* An optional whole number in lo..hi, def when absent. */
static int
opt_uint(json_t *o, const char *name, const char *in, uint64_t lo,
    uint64_t hi, uint64_t def, uint64_t *out, char *err, size_t len)
{
	json_t *v = json_object_get(o, name);
	struct where w;

	*out = def;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) < lo ||
	    (uint64_t)json_integer_value(v) > hi) {
		where_of(&w, in, name);
		snprintf(err, len, "field '%s': expected a whole number %" PRIu64
		    "..%" PRIu64, w.s, lo, hi);
		return -1;
	}
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* An id field: a generated one (tag) when absent. */
static int
opt_id(json_t *o, const char *name, const char *in, const char *tag,
    char *id, size_t idlen, char *err, size_t len)
{
	const char *s;
	struct where w;

	if (sub_opt_str(o, name, in, &s, err, len) < 0)
		return -1;
	if (s == NULL && tag != NULL) {
		make_id(id, idlen, tag);
		return 0;
	}
	if (s == NULL || proto_valid_id(s, strlen(s)) < 0) {
		where_of(&w, in, name);
		snprintf(err, len, "field '%s': %s", w.s, s == NULL ? "missing" :
		    "not an id (1..128 printable ASCII bytes, no space)");
		return -1;
	}
	snprintf(id, idlen, "%s", s);
	return 0;
}

/* The W3C traceparent of a body: the one given (checked), or a new
 * one (docs/PROTOCOL.md, Trace context). */
static int
opt_traceparent(json_t *o, char *tp, char *err, size_t len)
{
	const char *s;

	if (sub_opt_str(o, "traceparent", "", &s, err, len) < 0)
		return -1;
	if (s == NULL) {
		proto_traceparent_make(tp, NULL);
		return 0;
	}
	if (proto_valid_traceparent(s, strlen(s)) < 0) {
		snprintf(err, len, "field 'traceparent': not a W3C traceparent "
		    "(00-<32 hex>-<16 hex>-<2 hex>, lower case, ids not all "
		    "zeros)");
		return -1;
	}
	memcpy(tp, s, HIVE_TRACEPARENT_LEN + 1);
	return 0;
}

/* Any JSON value as msgpack, in z (nil when absent). */
static int
opt_any(json_t *o, const char *name, const char *in, msgpack_zone *z,
    msgpack_object *out, char *err, size_t len)
{
	json_t *v = json_object_get(o, name);
	struct proto_err pe;
	struct where w;

	out->type = MSGPACK_OBJECT_NIL;
	if (v == NULL)
		return 0;
	if (proto_json_to_obj(v, z, out, &pe) < 0) {
		where_of(&w, in, name);
		snprintf(err, len, "field '%s': %s%s%s%s", w.s,
		    proto_errcode_name(pe.code), pe.detail[0] ? " (" : "",
		    pe.detail, pe.detail[0] ? ")" : "");
		return -1;
	}
	return 0;
}

/* An encoder's refusal as a 400 naming the field (a message too big is
 * its payload's doing). */
static void
fail_encode(struct api_req *req, const struct proto_err *pe,
    const char *what)
{
	char eb[PROTO_ERRBUF];

	if (pe->field[0] == '\0' && pe->code == PROTO_E_TOOBIG)
		api_fail(req, 400, "bad_request", "field 'payload': the %s is "
		    "too big encoded (%s)", what, pe->detail);
	else
		api_fail(req, 400, "bad_request", "%s",
		    proto_strerror(pe, eb, sizeof(eb)));
}

/* ---- POST /tasks, POST /workflows ---- */

struct dsubmit {
	struct api_req *req;
	unsigned status;               /* 201: a task, 202: a workflow */
	char id[HIVE_ID_MAX + 1];
	char key[HIVE_KEY_MAX];
	char tp[HIVE_TRACEPARENT_LEN + 1];
};

static void
submit_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct dsubmit *s = priv;
	const redisReply *r = rp;
	json_t *body;

	(void)ac;
	if (r == NULL)
		api_fail(s->req, 503, "unavailable", "Redis: connection lost");
	else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "OOM", 3) == 0)
		api_fail(s->req, 503, "unavailable", "Redis: %s", r->str);
	else if (r->type != REDIS_REPLY_STRING)
		api_fail(s->req, 500, "internal", "Redis: %s",
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	else {
		if (s->status == 201)
			body = json_pack("{s:s, s:s, s:s, s:s}", "id", s->id,
			    "stream", s->key, "entry", r->str, "traceparent",
			    s->tp);
		else
			body = json_pack("{s:s, s:s, s:s}", "id", s->id, "entry",
			    r->str, "traceparent", s->tp);
		if (body != NULL)
			log_info("api: %s=%s trace=%.32s submitted to %s entry=%s",
			    s->status == 201 ? "task" : "workflow", s->id,
			    PROTO_TRACE_ID(s->tp), s->key, r->str);
		api_reply(s->req, s->status, body);
	}
	free(s);
}

/* XADD the message in sb on s->key; s is the callback's from then on. */
static void
submit_send(struct api_req *req, struct dsubmit *s, const msgpack_sbuffer *sb)
{
	struct rconn *rc = sup_store_redis(api_sup(req));

	if (rc == NULL || rconn_cmd(rc, submit_cb, s, "XADD %s * m %b", s->key,
	    sb->data, sb->size) < 0) {
		api_fail(req, 503, "unavailable", "Redis is down");
		free(s);
	}
}

/*
 * The queue of a task: capability C's at priority prio, or agent A's
 * ("A"), or the direct queue of one instance ("A/N", no priority).
 */
static int
task_queue(const char *prefix, const char *cap, const char *agent,
    uint64_t prio, int prio_given, char *key, size_t keylen, char *err,
    size_t len)
{
	char name[HIVE_NAME_MAX + 1];
	const char *slash;
	unsigned long n;
	size_t nl;

	if ((cap == NULL) == (agent == NULL)) {
		snprintf(err, len, cap == NULL ? "field 'capability': missing "
		    "(or give agent)" : "give capability or agent, not both");
		return -1;
	}
	if (cap != NULL) {
		if (proto_valid_name(cap, strlen(cap)) < 0 ||
		    proto_key_queue(key, keylen, prefix, cap, (unsigned)prio) < 0)
			goto badcap;
		return 0;
	}
	if ((slash = strchr(agent, '/')) == NULL) {
		if (proto_valid_name(agent, strlen(agent)) < 0 ||
		    proto_key_agent_queue(key, keylen, prefix, agent,
		    (unsigned)prio) < 0)
			goto badagent;
		return 0;
	}
	nl = (size_t)(slash - agent);
	if (nl == 0 || nl > HIVE_NAME_MAX || slash[1] < '1' || slash[1] > '9' ||
	    strspn(slash + 1, "0123456789") != strlen(slash + 1) ||
	    strlen(slash + 1) > 4 ||
	    (n = strtoul(slash + 1, NULL, 10)) > HIVE_INSTANCE_MAX)
		goto badagent;
	memcpy(name, agent, nl);
	name[nl] = '\0';
	if (proto_valid_name(name, nl) < 0 ||
	    proto_key_direct(key, keylen, prefix, name, (unsigned)n) < 0)
		goto badagent;
	if (prio_given) {
		snprintf(err, len, "field 'priority': a direct queue (agent "
		    "name/instance) has no priority");
		return -1;
	}
	return 0;
badcap:
	snprintf(err, len, "field 'capability': not a name (1..64 of "
	    "A-Z a-z 0-9 _ . -, not starting with . or -)");
	return -1;
badagent:
	snprintf(err, len, "field 'agent': not an agent (name) or an instance "
	    "(name/1..9999)");
	return -1;
}

void
sub_post_task(struct api_req *req)
{
	static const char *const keys[] = { "capability", "agent", "payload",
	    "id", "priority", "max_attempts", "timeout_ms", "reply_to",
	    "traceparent", NULL };
	json_t *b = api_body(req);
	const char *cap, *agent, *reply;
	uint64_t prio, maxa, tmo;
	struct hive_task t;
	struct proto_err pe;
	struct dsubmit *s;
	msgpack_zone z;
	msgpack_sbuffer sb;
	char err[ERRLEN];

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	s->req = req;
	s->status = 201;
	memset(&t, 0, sizeof(t));
	msgpack_zone_init(&z, 4096);
	msgpack_sbuffer_init(&sb);
	if (sub_body_keys(b, keys, "", err, sizeof(err)) < 0 ||
	    sub_opt_str(b, "capability", "", &cap, err, sizeof(err)) < 0 ||
	    sub_opt_str(b, "agent", "", &agent, err, sizeof(err)) < 0 ||
	    opt_id(b, "id", "", "t-", s->id, sizeof(s->id), err,
	    sizeof(err)) < 0 ||
	    opt_uint(b, "priority", "", 0, HIVE_PRIO_LEVELS - 1,
	    HIVE_PRIO_DEFAULT, &prio, err, sizeof(err)) < 0 ||
	    opt_uint(b, "max_attempts", "", 0, HIVE_ATTEMPTS_MAX, 0, &maxa, err,
	    sizeof(err)) < 0 ||
	    opt_uint(b, "timeout_ms", "", 0, HIVE_TIMEOUT_MAX, 0, &tmo, err,
	    sizeof(err)) < 0 ||
	    sub_opt_str(b, "reply_to", "", &reply, err, sizeof(err)) < 0 ||
	    task_queue(api_sup(req)->cref->conf->prefix, cap, agent, prio,
	    json_object_get(b, "priority") != NULL &&
	    !json_is_null(json_object_get(b, "priority")), s->key,
	    sizeof(s->key), err, sizeof(err)) < 0 ||
	    opt_any(b, "payload", "", &z, &t.payload, err, sizeof(err)) < 0 ||
	    opt_traceparent(b, s->tp, err, sizeof(err)) < 0) {
		api_fail(req, 400, "bad_request", "%s", err);
		free(s);
		goto out;
	}
	t.id = HIVE_STR(s->id);
	t.attempt = 1;
	t.max_attempts = (uint32_t)maxa;
	t.timeout_ms = (uint32_t)tmo;
	t.created_ms = proto_now_ms();
	if (reply != NULL)
		t.reply_to = HIVE_STR(reply);
	t.traceparent = HIVE_STR(s->tp);
	if (proto_encode_task(&sb, &t, &pe) < 0) {
		fail_encode(req, &pe, "task");
		free(s);
		goto out;
	}
	submit_send(req, s, &sb);
out:
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
}

/* tasks[i] of a workflow's JSON into t; its strings borrow from o, its
 * depends_on array is malloc'd (the caller frees it). */
static int
wf_task(json_t *o, size_t i, struct hive_wf_task *t, msgpack_zone *z,
    char *err, size_t len)
{
	static const char *const keys[] = { "id", "capability", "prio",
	    "payload", "depends_on", "max_attempts", "timeout_ms", "reply_to",
	    NULL };
	char in[32];
	const char *id, *cap, *reply;
	uint64_t prio, maxa, tmo;
	json_t *deps;

	snprintf(in, sizeof(in), "tasks[%zu]", i);
	if (!json_is_object(o)) {
		snprintf(err, len, "field '%s': expected an object", in);
		return -1;
	}
	if (sub_body_keys(o, keys, in, err, len) < 0 ||
	    sub_opt_str(o, "id", in, &id, err, len) < 0 ||
	    sub_opt_str(o, "capability", in, &cap, err, len) < 0 ||
	    opt_uint(o, "prio", in, 0, HIVE_PRIO_LEVELS - 1, HIVE_PRIO_DEFAULT,
	    &prio, err, len) < 0 ||
	    opt_uint(o, "max_attempts", in, 0, HIVE_ATTEMPTS_MAX, 0, &maxa, err,
	    len) < 0 ||
	    opt_uint(o, "timeout_ms", in, 0, HIVE_TIMEOUT_MAX, 0, &tmo, err,
	    len) < 0 ||
	    sub_opt_str(o, "reply_to", in, &reply, err, len) < 0 ||
	    opt_any(o, "payload", in, z, &t->payload, err, len) < 0)
		return -1;
	if (id == NULL || cap == NULL) {
		snprintf(err, len, "field '%s.%s': missing", in,
		    id == NULL ? "id" : "capability");
		return -1;
	}
	if (!sub_capability_ok(cap)) {
		snprintf(err, len, "field '%s.capability': not a name (or "
		    "@agent)", in);
		return -1;
	}
	t->id = HIVE_STR(id);
	t->capability = HIVE_STR(cap);
	t->prio = (uint32_t)prio;
	t->max_attempts = (uint32_t)maxa;
	t->timeout_ms = (uint32_t)tmo;
	if (reply != NULL)
		t->reply_to = HIVE_STR(reply);
	deps = json_object_get(o, "depends_on");
	if (deps == NULL || json_is_null(deps))
		return 0;
	if (!json_is_array(deps) || json_array_size(deps) > HIVE_WF_DEPS_MAX) {
		snprintf(err, len, "field '%s.depends_on': expected an array of "
		    "at most %d task ids", in, HIVE_WF_DEPS_MAX);
		return -1;
	}
	if (json_array_size(deps) == 0)
		return 0;
	if ((t->depends_on = calloc(json_array_size(deps),
	    sizeof(*t->depends_on))) == NULL) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	for (size_t k = 0; k < json_array_size(deps); k++) {
		json_t *d = json_array_get(deps, k);
		if (!json_is_string(d)) {
			snprintf(err, len, "field '%s.depends_on[%zu]': expected "
			    "a string", in, k);
			return -1;
		}
		t->depends_on[k] = (struct hive_str){ json_string_value(d),
		    (uint32_t)json_string_length(d) };
		t->ndeps++;
	}
	return 0;
}

void
sub_post_workflow(struct api_req *req)
{
	static const char *const keys[] = { "id", "name", "tasks",
	    "traceparent", NULL };
	json_t *b = api_body(req), *tasks;
	struct hive_workflow w;
	struct proto_err pe;
	struct dsubmit *s;
	msgpack_zone z;
	msgpack_sbuffer sb;
	const char *name;
	char err[ERRLEN];
	size_t n = 0;

	memset(&w, 0, sizeof(w));
	msgpack_zone_init(&z, 4096);
	msgpack_sbuffer_init(&sb);
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		goto out;
	}
	s->req = req;
	s->status = 202;
	tasks = json_object_get(b, "tasks");
	if (sub_body_keys(b, keys, "", err, sizeof(err)) < 0 ||
	    opt_id(b, "id", "", "w-", s->id, sizeof(s->id), err,
	    sizeof(err)) < 0 ||
	    sub_opt_str(b, "name", "", &name, err, sizeof(err)) < 0 ||
	    opt_traceparent(b, s->tp, err, sizeof(err)) < 0)
		goto bad;
	if (!json_is_array(tasks) || json_array_size(tasks) == 0 ||
	    json_array_size(tasks) > HIVE_WF_TASKS_MAX) {
		snprintf(err, sizeof(err), "field 'tasks': %s", tasks == NULL ?
		    "missing" : "expected an array of 1..1000 tasks");
		goto bad;
	}
	n = json_array_size(tasks);
	if ((w.tasks = calloc(n, sizeof(*w.tasks))) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto bad;
	}
	for (size_t i = 0; i < n; i++)
		if (wf_task(json_array_get(tasks, i), i, &w.tasks[i], &z, err,
		    sizeof(err)) < 0)
			goto bad;
	w.id = HIVE_STR(s->id);
	if (name != NULL)
		w.name = HIVE_STR(name);
	w.created_ms = proto_now_ms();
	w.ntasks = (uint32_t)n;
	w.traceparent = HIVE_STR(s->tp);
	if (proto_encode_workflow(&sb, &w, &pe) < 0) {
		fail_encode(req, &pe, "workflow");
		free(s);
		goto out;
	}
	proto_key_named(s->key, sizeof(s->key),
	    api_sup(req)->cref->conf->prefix, "workflows");
	submit_send(req, s, &sb);
	goto out;
bad:
	api_fail(req, 400, "bad_request", "%s", err);
	free(s);
out:
	for (size_t i = 0; w.tasks != NULL && i < n; i++)
		free(w.tasks[i].depends_on);
	free(w.tasks);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
}
