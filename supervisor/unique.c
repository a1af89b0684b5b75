/*
 * unique.c - unique tasks in POST /tasks (unique.h).  The lock
 * <prefix>:unique:<key> and the XADD are one Lua script
 * (proto_unique_submit_lua), so every hived and every client that shares
 * the Redis agrees on which task holds a key; the worker and the
 * reclaimer release it when the task ends (docs/PROTOCOL.md).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_dead.h"
#include "hived.h"
#include "log.h"
#include "rconn.h"
#include "unique.h"

struct dunique {
	struct api_req *req;
	char id[HIVE_ID_MAX + 1];
	char key[HIVE_ID_MAX + 1];
	char stream[HIVE_KEY_MAX];
	char tp[HIVE_TRACEPARENT_LEN + 1];
	uint64_t due;                  /* scheduled for (unix ms); 0: queued */
};

int
sub_unique_duration(json_t *v, uint64_t *ms)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 },
	};
	const char *s;
	uint64_t n = 0;

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return -1;
		*ms = (uint64_t)json_integer_value(v);
		return *ms <= HIVE_UNIQUE_MS_MAX ? 0 : -1;
	}
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > HIVE_UNIQUE_MS_MAX)
			return -1;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s, units[i].unit) != 0)
			continue;
		if (n > HIVE_UNIQUE_MS_MAX / units[i].ms)
			return -1;
		*ms = n * units[i].ms;
		return 0;
	}
	return -1;
}

int
sub_unique_opts(json_t *b, struct hive_task *t, char *err, size_t len)
{
	json_t *v = json_object_get(b, "unique_for");
	const char *key;

	if (sub_opt_str(b, "unique_key", "", &key, err, len) < 0)
		return -1;
	if (key != NULL && proto_valid_id(key, strlen(key)) < 0) {
		snprintf(err, len, "field 'unique_key': not an id (1..128 "
		    "printable ASCII bytes, no space)");
		return -1;
	}
	if (v != NULL && !json_is_null(v) &&
	    sub_unique_duration(v, &t->unique_ms) < 0) {
		snprintf(err, len, "field 'unique_for': expected a duration "
		    "(whole ms, or text such as 30s, 10m, 2h, 1d) of at most "
		    "a year");
		return -1;
	}
	if (key == NULL && t->unique_ms > 0) {
		snprintf(err, len, "field 'unique_for': needs unique_key");
		return -1;
	}
	if (key != NULL)
		t->unique_key = HIVE_STR(key);
	return 0;
}

static void
unique_cb(redisAsyncContext *ac, void *rp, void *priv)
{
	struct dunique *u = priv;
	const redisReply *r = rp;
	json_t *body;

	(void)ac;
	if (r == NULL)
		api_fail(u->req, 503, "unavailable", "Redis: connection lost");
	else if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "OOM") != NULL)
		api_fail(u->req, 503, "unavailable", "Redis: %s", r->str);
	else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_STRING)
		api_fail(u->req, 500, "internal", "Redis: %s",
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	else if (r->element[0]->integer == 1) {
		if (u->due != 0)
			body = sup_delay_answer(u->id, u->stream,
			    r->element[1]->str, u->tp, u->due);
		else
			body = json_pack("{s:s, s:s, s:s, s:s}", "id", u->id,
			    "stream", u->stream, "entry", r->element[1]->str,
			    "traceparent", u->tp);
		log_info("api: task=%s trace=%.32s unique=%s submitted to %s "
		    "entry=%s", u->id, PROTO_TRACE_ID(u->tp), u->key,
		    u->stream, r->element[1]->str);
		api_reply(u->req, 201, body);
	} else {
		body = json_pack("{s:s, s:b}", "id", r->element[1]->str,
		    "duplicate", 1);
		log_info("api: task=%s unique=%s duplicate of task=%s, not "
		    "queued", u->id, u->key, r->element[1]->str);
		api_reply(u->req, 200, body);
	}
	free(u);
}

/* A task not due yet: into <p>:delayed as "<queue>\n<task>" (and
 * <p>:scheduled, for the recorder), as delay.c's sup_delay_schedule
 * does, with the lock in the same script. */
static int
unique_schedule(struct rconn *rc, struct dunique *u, const char *prefix,
    const char *lock, const msgpack_sbuffer *sb)
{
	char kd[HIVE_KEY_MAX], ks[HIVE_KEY_MAX], ttl[24], due[24];
	size_t ql = strlen(u->stream);
	char *member;
	int rv;

	if (proto_key_named(kd, sizeof(kd), prefix, "delayed") < 0 ||
	    proto_key_named(ks, sizeof(ks), prefix, "scheduled") < 0 ||
	    (member = malloc(ql + 1 + sb->size)) == NULL)
		return -1;
	memcpy(member, u->stream, ql);
	member[ql] = HIVE_DELAYED_SEP;
	memcpy(member + ql + 1, sb->data, sb->size);
	snprintf(due, sizeof(due), "%" PRIu64, u->due);
	/* The safety TTL counts from the due time, not from now. */
	snprintf(ttl, sizeof(ttl), "%" PRIu64, (uint64_t)HIVE_UNIQUE_TTL_MS +
	    (u->due > proto_now_ms() ? u->due - proto_now_ms() : 0));
	rv = rconn_cmd(rc, unique_cb, u, "EVAL %s 3 %s %s %s %s %s %b %s",
	    proto_unique_submit_lua, lock, ks, kd, u->id, ttl, member,
	    ql + 1 + sb->size, due);
	free(member);
	return rv;
}

void
sub_unique_send(struct api_req *req, const struct hive_task *t,
    const char *stream, const char *tp, const msgpack_sbuffer *sb,
    uint64_t due)
{
	struct sup *sup = api_sup(req);
	struct rconn *rc = sup_store_redis(sup);
	struct dunique *u;
	char lock[HIVE_KEY_MAX], ttl[24];

	if ((u = calloc(1, sizeof(*u))) == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	u->req = req;
	snprintf(u->id, sizeof(u->id), "%.*s", (int)t->id.len, t->id.ptr);
	snprintf(u->key, sizeof(u->key), "%.*s", (int)t->unique_key.len,
	    t->unique_key.ptr);
	snprintf(u->stream, sizeof(u->stream), "%s", stream);
	snprintf(u->tp, sizeof(u->tp), "%s", tp);
	u->due = due;
	snprintf(ttl, sizeof(ttl), "%" PRIu64, (uint64_t)HIVE_UNIQUE_TTL_MS);
	if (proto_key_unique(lock, sizeof(lock), sup->cref->conf->prefix,
	    u->key) < 0) {
		api_fail(req, 400, "bad_request", "field 'unique_key': too "
		    "long for a key");
		free(u);
		return;
	}
	if (rc != NULL && due != 0) {
		if (unique_schedule(rc, u, sup->cref->conf->prefix, lock,
		    sb) == 0) {
			sup_delay_hint(sup_store_delay(sup), due);
			return;
		}
		rc = NULL;
	}
	if (rc == NULL || rconn_cmd(rc, unique_cb, u, "EVAL %s 2 %s %s %s %s %b",
	    proto_unique_submit_lua, lock, stream, u->id, ttl, sb->data,
	    sb->size) < 0) {
		api_fail(req, 503, "unavailable", "Redis is down");
		free(u);
	}
}
