/*
 * expire.c - the deadline sweeper (docs/PROTOCOL.md, "Cancel and
 * deadlines"): a queued task that no worker pulls still expires.
 *
 * Every SUP_EXPIRE_S (from the housekeeping timer), one page of the
 * record's queued tasks (oldest first, SUP_EXPIRE_PAGE at a time, a
 * cursor going round them all), their messages decoded here: the
 * deadline is in the message, not in a column.  Each one past its
 * deadline gets one Lua script in Redis, atomic against the workers'
 * XREADGROUP: if its entry was never delivered to the group "workers"
 * (after the group's last-delivered-id, or no group yet), XDEL it and
 * XADD its result, status expired, to <p>:results and its reply_to.  An
 * entry delivered already is the worker's to expire (its gate checks the
 * deadline before it starts a task), as are broadcast entries (a group
 * per worker).  Several hived may sweep at once:
 * the script lets one of them win.  A unique task's lock is released by
 * the same script, as the worker does with a result (proto/unique.c).
 */
#include "hived.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "hive_proto.h"
#include "log.h"
#include "rconn.h"
#include "record.h"

#define SUP_EXPIRE_S    2.0
#define SUP_EXPIRE_PAGE "500"

static const char expire_sql[] =
    "SELECT id, stream, entry, message, "
    "  (extract(epoch FROM created_at) * 1000000)::int8 FROM tasks"
    " WHERE state = 'queued' AND entry IS NOT NULL AND message IS NOT NULL"
    "  AND (extract(epoch FROM created_at) * 1000000)::int8 >= $1::int8"
    " ORDER BY created_at LIMIT " SUP_EXPIRE_PAGE;

/* KEYS: the stream, <p>:results, the reply_to (or <p>:results again),
 * the unique lock (or <p>:results again); ARGV: the entry, the group, the
 * result, the task id when it holds a lock (else ""), its window ms. */
static const char expire_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "local a1, a2 = string.match(ARGV[1], '^(%d+)-(%d+)$') "
    "if not a1 then return 0 end "
    "a1, a2 = tonumber(a1), tonumber(a2) "
    "for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do "
    "  local name, last "
    "  for i = 1, #g, 2 do "
    "    if g[i] == 'name' then name = g[i + 1] end "
    "    if g[i] == 'last-delivered-id' then last = g[i + 1] end "
    "  end "
    "  if name == ARGV[2] and last then "
    "    local b1, b2 = string.match(last, '^(%d+)-(%d+)$') "
    "    b1, b2 = tonumber(b1), tonumber(b2) "
    "    if a1 < b1 or (a1 == b1 and a2 <= b2) then return 0 end "
    "  end "
    "end "
    "if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end "
    "redis.call('XADD', KEYS[2], '*', 'm', ARGV[3]) "
    "if KEYS[3] ~= KEYS[2] then "
    "  redis.call('XADD', KEYS[3], '*', 'm', ARGV[3]) end "
    "if ARGV[4] ~= '' and redis.call('GET', KEYS[4]) == ARGV[4] then "
    "  if tonumber(ARGV[5]) > 0 then "
    "    redis.call('PEXPIRE', KEYS[4], ARGV[5]) "
    "  else redis.call('DEL', KEYS[4]) end "
    "end "
    "return 1";

static struct {
	bool busy;
	ev_tstamp due;
	char after[24];              /* created_at in µs of the cursor */
} ex = { .after = "0" };

struct ex_one {
	char id[HIVE_ID_MAX + 1];
};

static void
ex_done_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	struct ex_one *o = priv;

	(void)ac;
	if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
		log_info("task=%s expired while queued: its deadline passed",
		    o->id);
	else if (r != NULL && r->type == REDIS_REPLY_ERROR)
		log_warnx("expire: task=%s: %s", o->id, r->str);
	free(o);
}

/* One queued task: expire it when its deadline has passed. */
static void
ex_task(struct sup *sup, const char *id, const char *stream,
    const char *entry, const char *hexmsg, uint64_t now)
{
	const struct hive_conf *c = sup->cref->conf;
	struct hive_task t;
	struct hive_result r = { 0 };
	struct proto_err err;
	msgpack_sbuffer sb;
	unsigned char *msg;
	size_t len = 0;
	char results[HIVE_KEY_MAX], reply[HIVE_KEY_MAX + 1];
	char bcast[HIVE_KEY_MAX], lock[HIVE_KEY_MAX], key[HIVE_ID_MAX + 1];
	char ums[24];
	struct ex_one *o;

	/* Broadcast entries are read by a group per worker: not ours to
	 * judge (each worker's gate expires them). */
	if (proto_key_named(bcast, sizeof(bcast), c->prefix, "broadcast") < 0 ||
	    strcmp(stream, bcast) == 0)
		return;
	if ((msg = PQunescapeBytea((const unsigned char *)hexmsg,
	    &len)) == NULL)
		return;
	if (proto_decode_task((const char *)msg, len, &t, &err) < 0) {
		PQfreemem(msg);
		return;
	}
	if (t.deadline == 0 || t.deadline > now ||
	    proto_key_named(results, sizeof(results), c->prefix,
	    "results") < 0)
		goto out;
	snprintf(reply, sizeof(reply), "%.*s", (int)t.reply_to.len,
	    t.reply_to.ptr ? t.reply_to.ptr : "");
	snprintf(key, sizeof(key), "%.*s", (int)t.unique_key.len,
	    t.unique_key.ptr ? t.unique_key.ptr : "");
	if (key[0] == '\0' || proto_key_unique(lock, sizeof(lock), c->prefix,
	    key) < 0)
		key[0] = '\0';
	snprintf(ums, sizeof(ums), "%llu", (unsigned long long)t.unique_ms);
	r.v = HIVE_PROTO_VERSION;
	r.id = HIVE_STR(id);
	r.agent = HIVE_STR("hived");
	r.host = HIVE_STR(c->host);
	r.status = HIVE_STATUS_EXPIRED;
	r.error = HIVE_STR("expired: deadline passed before it started");
	r.attempt = t.attempt ? t.attempt : 1;
	r.started_ms = r.finished_ms = now;
	r.workflow = t.workflow;
	r.traceparent = t.traceparent;
	r.result.type = r.memory.type = MSGPACK_OBJECT_NIL;
	msgpack_sbuffer_init(&sb);
	if (proto_encode_result(&sb, &r, &err) == 0 &&
	    (o = calloc(1, sizeof(*o))) != NULL) {
		snprintf(o->id, sizeof(o->id), "%s", id);
		if (rconn_cmd(sup_store_redis(sup), ex_done_cb, o,
		    "EVAL %s 4 %s %s %s %s %s %s %b %s %s", expire_lua, stream,
		    results, reply[0] ? reply : results,
		    key[0] ? lock : results, entry, HIVE_GROUP_WORKERS,
		    sb.data, sb.size, key[0] ? id : "", ums) < 0)
			free(o);
	}
	msgpack_sbuffer_destroy(&sb);
out:
	proto_task_clear(&t);
	PQfreemem(msg);
}

static void
ex_pg_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct sup *sup = arg;
	uint64_t now = proto_now_ms();
	int n;

	(void)pg;
	ex.busy = false;
	if (res == NULL || err != NULL) {
		if (err != NULL)
			log_warnx("expire: %s", err);
		return;
	}
	n = PQntuples(res);
	for (int i = 0; i < n; i++)
		ex_task(sup, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
		    PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), now);
	/* A full page: the next sweep goes on after it; else round again. */
	if (n == atoi(SUP_EXPIRE_PAGE))
		snprintf(ex.after, sizeof(ex.after), "%s",
		    PQgetvalue(res, n - 1, 4));
	else
		snprintf(ex.after, sizeof(ex.after), "0");
}

void
sup_expire_tick(struct sup *sup)
{
	struct sup_pg *pg = sup_store_pg(sup);
	ev_tstamp now = ev_now(sup->loop);
	const char *v[1] = { ex.after };

	if (ex.busy || now < ex.due || pg == NULL || !sup_pg_is_up(pg) ||
	    !sup_store_redis_up(sup) || sup->stopping)
		return;
	ex.due = now + SUP_EXPIRE_S;
	if (sup_pg_query(pg, expire_sql, 1, v, NULL, NULL, ex_pg_cb, sup) == 0)
		ex.busy = true;
}
