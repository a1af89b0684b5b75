/*
 * unique.c - unique tasks (docs/PROTOCOL.md, Unique tasks): the two Lua
 * scripts every writer of a unique task runs, word for word the ones the
 * page shows (tests/proto/test_protocol_doc.c holds them equal), and the
 * unique key of a message that does not decode.
 */
#include "proto_int.h"

#include <stdio.h>

/*
 * Take the lock and queue the task in one step, so that no other client
 * (another hived, another host) sees the lock without the task or the
 * task without the lock.  KEYS[1] the lock, KEYS[2] the queue stream;
 * ARGV[1] the task id, ARGV[2] the lock's safety TTL in ms, ARGV[3] the
 * message (last, so that redis-cli -x can pass it).  A delayed task:
 * KEYS[2] <p>:scheduled, KEYS[3] <p>:delayed, ARGV[3] the member
 * "<queue>\n<task>", ARGV[4] its due unix ms.  Returns {1, entry id}
 * (queued, or scheduled) or {0, holder's id}.
 */
const char proto_unique_submit_lua[] =
    "local h = redis.call('GET', KEYS[1])\n"
    "if h then return {0, h} end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "if KEYS[3] then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3]) end\n"
    "return {1, redis.call('XADD', KEYS[2], '*', 'm', ARGV[3])}\n";

/*
 * Release the lock when its task ends, only if it still names that task
 * (a lock lost to its TTL may have been taken by another): delete it, or
 * keep it for the window.  KEYS[1] the lock; ARGV[1] the task id, ARGV[2]
 * the window in ms (0: none).  Returns 1 if released (or kept for the
 * window), 0 if the lock named another task or none.
 */
const char proto_unique_release_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "if tonumber(ARGV[2]) > 0 then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return redis.call('DEL', KEYS[1])\n";

/*
 * Keep the lock of a requeued task for another TTL, only if it still
 * names it.  KEYS[1] the lock; ARGV[1] the task id, ARGV[2] the TTL ms.
 */
const char proto_unique_refresh_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n";

/* The value of the top-level str key name of a map (once only). */
static const msgpack_object *
peek_key(const msgpack_object *m, const char *name)
{
	const msgpack_object *found = NULL;
	size_t n = strlen(name);

	if (m->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;

		if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != n ||
		    memcmp(k->via.str.ptr, name, n) != 0)
			continue;
		if (found != NULL)       /* twice: which one is it? */
			return NULL;
		found = &m->via.map.ptr[i].val;
	}
	return found;
}

int
proto_peek_unique(const char *buf, size_t len, char *key, size_t keylen,
    uint64_t *ms)
{
	msgpack_unpacked up;
	struct proto_err err;
	const msgpack_object *k, *v;
	int rc = -1;

	*ms = 0;
	if (keylen > 0)
		key[0] = '\0';
	if (proto_unpack_msg(buf, len, HIVE_MSG_MAX, PROTO_UNPACK_DEPTH_MAX,
	    &up, &err) == -1)
		return -1;
	k = peek_key(&up.data, "unique_key");
	if (k != NULL && k->type == MSGPACK_OBJECT_STR &&
	    proto_valid_id(k->via.str.ptr, k->via.str.size) == 0 &&
	    k->via.str.size < keylen) {
		memcpy(key, k->via.str.ptr, k->via.str.size);
		key[k->via.str.size] = '\0';
		v = peek_key(&up.data, "unique_ms");
		if (v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		    v->via.u64 <= HIVE_UNIQUE_MS_MAX)
			*ms = v->via.u64;
		rc = 0;
	}
	msgpack_unpacked_destroy(&up);
	return rc;
}
