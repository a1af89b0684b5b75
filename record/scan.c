/*
 * scan.c - see record.h.  Two SCAN walks, one per pattern, one after the
 * other; the walk's state travels with the command.
 */
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"

struct scan {
	struct rconn *rc;
	char pattern[2][HIVE_KEY_MAX];
	int phase;
	sup_scan_key_cb *key_cb;
	sup_scan_done_cb *done_cb;
	void *arg;
};

static int scan_next(struct scan *, const char *cursor);

static void
scan_finish(struct scan *s, int ok)
{
	sup_scan_done_cb *done = s->done_cb;
	void *arg = s->arg;

	free(s);
	done(ok, arg);
}

static void
scan_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct scan *s = priv;
	redisReply *reply = r;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY) {
		scan_finish(s, 0);
		return;
	}
	for (size_t i = 0; i < reply->element[1]->elements; i++) {
		redisReply *k = reply->element[1]->element[i];
		if (k->type == REDIS_REPLY_STRING)
			s->key_cb(k->str, s->arg);
	}
	if (strcmp(reply->element[0]->str, "0") != 0) {
		if (scan_next(s, reply->element[0]->str) < 0)
			scan_finish(s, 0);
		return;
	}
	if (++s->phase < 2 && scan_next(s, "0") == 0)
		return;
	scan_finish(s, s->phase >= 2);
}

static int
scan_next(struct scan *s, const char *cursor)
{
	return rconn_cmd(s->rc, scan_cb, s, "SCAN %s MATCH %s COUNT 1000 "
	    "TYPE stream", cursor, s->pattern[s->phase]);
}

int
sup_scan_queues(struct rconn *rc, const char *prefix,
    sup_scan_key_cb *key_cb, sup_scan_done_cb *done_cb, void *arg)
{
	struct scan *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -1;
	s->rc = rc;
	snprintf(s->pattern[0], sizeof(s->pattern[0]), "%s:q:*", prefix);
	snprintf(s->pattern[1], sizeof(s->pattern[1]), "%s:direct:*", prefix);
	s->key_cb = key_cb;
	s->done_cb = done_cb;
	s->arg = arg;
	if (scan_next(s, "0") < 0) {
		free(s);
		return -1;
	}
	return 0;
}
