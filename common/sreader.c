/*
 * sreader.c - reading streams in a consumer group (sreader.h): the
 * XREADGROUP command, the group's creation, the reply's shape.
 */
#include "sreader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/*
 * An in_order read: KEYS in order; ARGV group, consumer, the room, the
 * id.  A key read empty gives nil (">") or [[key, []]] ("0"): skipped.
 */
static const char in_order_script[] =
    "local room = tonumber(ARGV[3]) "
    "local out = {} "
    "for _, k in ipairs(KEYS) do "
    "  if room <= 0 then break end "
    "  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], "
    "      'COUNT', room, 'STREAMS', k, ARGV[4]) "
    "  if r and #r[1][2] > 0 then "
    "    out[#out + 1] = r[1] "
    "    room = room - #r[1][2] "
    "  end "
    "end "
    "return out";

int
sreader_send(struct rconn *rc, const struct sreader_read *r,
    redisCallbackFn *fn, void *priv)
{
	const char **argv, *id;
	char count[24], block[24], nkeys[24];
	int argc = 0, rv;

	if (r->nkeys <= 0 || (r->in_order && r->block_ms > 0) ||
	    (argv = calloc((size_t)(2 * r->nkeys + 10), sizeof(*argv))) == NULL)
		return -1;
	id = !r->pending ? ">" : r->after != NULL ? r->after : "0";
	snprintf(count, sizeof(count), "%zu", r->count);
	if (r->in_order) {
		snprintf(nkeys, sizeof(nkeys), "%d", r->nkeys);
		argv[argc++] = "EVAL";
		argv[argc++] = in_order_script;
		argv[argc++] = nkeys;
		for (int i = 0; i < r->nkeys; i++)
			argv[argc++] = r->keys[i];
		argv[argc++] = r->group;
		argv[argc++] = r->consumer;
		argv[argc++] = count;
		argv[argc++] = id;
	} else {
		argv[argc++] = "XREADGROUP";
		argv[argc++] = "GROUP";
		argv[argc++] = r->group;
		argv[argc++] = r->consumer;
		argv[argc++] = "COUNT";
		argv[argc++] = count;
		if (r->block_ms > 0) {
			snprintf(block, sizeof(block), "%u", r->block_ms);
			argv[argc++] = "BLOCK";
			argv[argc++] = block;
		}
		argv[argc++] = "STREAMS";
		for (int i = 0; i < r->nkeys; i++)
			argv[argc++] = r->keys[i];
		for (int i = 0; i < r->nkeys; i++)
			argv[argc++] = id;
	}
	rv = rconn_argv(rc, fn, priv, argc, argv, NULL);
	free(argv);
	return rv;
}

int
sreader_group_failed(const redisReply *reply)
{
	return reply != NULL && reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "BUSYGROUP", 9) != 0;
}

static void
sreader_group_cb(redisAsyncContext *ac, void *r, void *priv)
{
	redisReply *reply = r;

	if (!sreader_group_failed(reply))
		return;
	/* A stream that is gone (Redis lost it, or nobody wrote to it
	 * since): the next read meets NOGROUP and its owner starts over. */
	if (strstr(reply->str, "requires the key to exist") != NULL)
		log_debug("%s: XGROUP CREATE: %s", (const char *)priv, reply->str);
	else
		log_warnx("%s: XGROUP CREATE: %s", (const char *)priv, reply->str);
}

int
sreader_group_send(struct rconn *rc, const char *key, const char *group,
    const char *start, int mkstream, redisCallbackFn *fn, void *priv)
{
	return rconn_cmd(rc, fn, priv, mkstream ?
	    "XGROUP CREATE %s %s %s MKSTREAM" : "XGROUP CREATE %s %s %s", key,
	    group, start);
}

int
sreader_group(struct rconn *rc, const char *key, const char *group,
    int mkstream, const char *who)
{
	/* The callback only reads who: through a union, not a cast that
	 * drops const. */
	union { const char *c; void *v; } w = { who };

	return sreader_group_send(rc, key, group, "0", mkstream,
	    sreader_group_cb, w.v);
}

int
sreader_failed(const redisReply *reply)
{
	return reply != NULL && reply->type == REDIS_REPLY_ERROR;
}

const redisReply *
sreader_stream(const redisReply *reply, size_t i, const char **key)
{
	const redisReply *s;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    i >= reply->elements)
		return NULL;
	s = reply->element[i];
	if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
	    s->element[0]->type != REDIS_REPLY_STRING ||
	    s->element[1]->type != REDIS_REPLY_ARRAY)
		return NULL;
	*key = s->element[0]->str;
	return s->element[1];
}

const char *
sreader_entry_id(const redisReply *e)
{
	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING)
		return NULL;
	return e->element[0]->str;
}
