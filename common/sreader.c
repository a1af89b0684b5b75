/*
 * sreader.c - reading streams in a consumer group (sreader.h): the
 * XREADGROUP command, the group's creation, the reply's shape.
 */
#include "sreader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int
sreader_send(struct rconn *rc, const struct sreader_read *r,
    redisCallbackFn *fn, void *priv)
{
	const char **argv;
	char count[24], block[24];
	int argc = 0, rv;

	if (r->nkeys <= 0 ||
	    (argv = calloc((size_t)(2 * r->nkeys + 10), sizeof(*argv))) == NULL)
		return -1;
	snprintf(count, sizeof(count), "%zu", r->count);
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
		argv[argc++] = r->pending ? "0" : ">";
	rv = rconn_argv(rc, fn, priv, argc, argv, NULL);
	free(argv);
	return rv;
}

static void
sreader_group_cb(redisAsyncContext *ac, void *r, void *priv)
{
	redisReply *reply = r;

	if (reply == NULL || reply->type != REDIS_REPLY_ERROR ||
	    strncmp(reply->str, "BUSYGROUP", 9) == 0)
		return;
	/* A stream that is gone (Redis lost it, or nobody wrote to it
	 * since): the next read meets NOGROUP and its owner starts over. */
	if (strstr(reply->str, "requires the key to exist") != NULL)
		log_debug("%s: XGROUP CREATE: %s", (const char *)priv, reply->str);
	else
		log_warnx("%s: XGROUP CREATE: %s", (const char *)priv, reply->str);
}

int
sreader_group(struct rconn *rc, const char *key, const char *group,
    int mkstream, const char *who)
{
	/* The callback only reads who: through a union, not a cast that
	 * drops const. */
	union { const char *c; void *v; } w = { who };

	return rconn_cmd(rc, sreader_group_cb, w.v, mkstream ?
	    "XGROUP CREATE %s %s 0 MKSTREAM" : "XGROUP CREATE %s %s 0", key,
	    group);
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
