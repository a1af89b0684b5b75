/*
 * sclaim.c - take the pending entries of a stream consumer that is gone
 * (sclaim.h): XPENDING ... IDLE then XCLAIM, a page at a time; or, of
 * any consumer, XAUTOCLAIM.  Each
 * step is a callback carrying the struct sclaim; a lost connection ends
 * it (callbacks get NULL) and everything left stays pending in Redis.
 */
#include "sclaim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

struct sclaim {
	struct rconn *rc;
	char *key, *group, *from, *to;
	unsigned page;
	uint64_t min_idle_ms, dead_since_ms;
	int justid;
	sclaim_page_cb *page_cb;
	sclaim_done_cb *done_cb;
	void *arg;
	unsigned n;                  /* ids of this page */
	char (*ids)[SCLAIM_ID_MAX + 1];
	unsigned *deliveries;
	char err[256];               /* the error done_cb is given */
	char cursor[SCLAIM_ID_MAX + 1];   /* XAUTOCLAIM's, from NULL */
};

static void sclaim_pending(struct sclaim *);
static void sclaim_auto(struct sclaim *);

/* The end: err NULL, or Redis' answer to cmd. */
static void
sclaim_end(struct sclaim *c, const char *cmd, const char *err)
{
	if (err != NULL) {
		snprintf(c->err, sizeof(c->err), "%s %s: %s", cmd, c->key, err);
		err = c->err;
	}
	if (c->done_cb != NULL)
		c->done_cb(c, err, c->arg);
	free(c->key);
	free(c->group);
	free(c->from);
	free(c->to);
	free(c->ids);
	free(c->deliveries);
	free(c);
}

/* t: the least idle time of an entry taken, now. */
static uint64_t
sclaim_idle(const struct sclaim *c)
{
	struct timespec ts;
	uint64_t now;

	if (c->dead_since_ms == 0)
		return c->min_idle_ms;
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	return now > c->dead_since_ms ? now - c->dead_since_ms : 0;
}

static void
sclaim_claim_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct sclaim *c = priv;
	redisReply *reply = r;
	int full = c->n == c->page;

	if (reply == NULL) {
		sclaim_end(c, NULL, NULL);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY) {
		sclaim_end(c, "XCLAIM", reply->type == REDIS_REPLY_ERROR ?
		    reply->str : "bad reply");
		return;
	}
	if (c->page_cb != NULL && c->page_cb(c, reply, c->arg) < 0) {
		sclaim_end(c, NULL, NULL);
		return;
	}
	if (full)                    /* more may be pending: the next page */
		sclaim_pending(c);
	else
		sclaim_end(c, NULL, NULL);
}

/* XPENDING's page: [[id, consumer, idle, deliveries], ...]; claim it. */
static void
sclaim_pending_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct sclaim *c = priv;
	redisReply *reply = r;
	const char **argv;
	char idle[24];
	int argc = 0;

	if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		sclaim_end(c, "XPENDING", reply != NULL ? reply->str : NULL);
		return;
	}
	c->n = 0;
	for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY &&
	    i < reply->elements && c->n < c->page; i++) {
		const redisReply *e = reply->element[i];

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 4 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[0]->len > SCLAIM_ID_MAX)
			continue;
		memcpy(c->ids[c->n], e->element[0]->str, e->element[0]->len + 1);
		c->deliveries[c->n] = e->element[3]->type == REDIS_REPLY_INTEGER ?
		    (unsigned)e->element[3]->integer : 1;
		c->n++;
	}
	if (c->n == 0 || (argv = calloc(c->n + 7, sizeof(*argv))) == NULL) {
		sclaim_end(c, NULL, NULL);
		return;
	}
	snprintf(idle, sizeof(idle), "%llu", (unsigned long long)sclaim_idle(c));
	argv[argc++] = "XCLAIM";
	argv[argc++] = c->key;
	argv[argc++] = c->group;
	argv[argc++] = c->to;
	argv[argc++] = idle;
	for (unsigned k = 0; k < c->n; k++)
		argv[argc++] = c->ids[k];
	if (c->justid)
		argv[argc++] = "JUSTID";
	if (rconn_argv(c->rc, sclaim_claim_cb, c, argc, argv, NULL) < 0)
		sclaim_end(c, NULL, NULL);
	free(argv);
}

/* XAUTOCLAIM's reply: [next cursor, [entries], ...]; on while the cursor
 * is not back at the start. */
static void
sclaim_auto_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct sclaim *c = priv;
	redisReply *reply = r;

	if (reply == NULL) {
		sclaim_end(c, NULL, NULL);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
	    reply->element[0]->type != REDIS_REPLY_STRING ||
	    reply->element[0]->len > SCLAIM_ID_MAX ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY) {
		sclaim_end(c, "XAUTOCLAIM", reply->type == REDIS_REPLY_ERROR ?
		    reply->str : "bad reply");
		return;
	}
	memcpy(c->cursor, reply->element[0]->str, reply->element[0]->len + 1);
	if (reply->element[1]->elements > 0 && c->page_cb != NULL &&
	    c->page_cb(c, reply->element[1], c->arg) < 0) {
		sclaim_end(c, NULL, NULL);
		return;
	}
	if (strcmp(c->cursor, "0-0") == 0)
		sclaim_end(c, NULL, NULL);
	else
		sclaim_auto(c);
}

static void
sclaim_auto(struct sclaim *c)
{
	if (rconn_cmd(c->rc, sclaim_auto_cb, c, "XAUTOCLAIM %s %s %s %llu %s "
	    "COUNT %u%s", c->key, c->group, c->to,
	    (unsigned long long)sclaim_idle(c), c->cursor, c->page,
	    c->justid ? " JUSTID" : "") < 0)
		sclaim_end(c, NULL, NULL);
}

static void
sclaim_pending(struct sclaim *c)
{
	if (rconn_cmd(c->rc, sclaim_pending_cb, c, "XPENDING %s %s IDLE %llu "
	    "- + %u %s", c->key, c->group,
	    (unsigned long long)sclaim_idle(c), c->page, c->from) < 0)
		sclaim_end(c, NULL, NULL);
}

int
sclaim_start(struct rconn *rc, const struct sclaim_opts *o)
{
	struct sclaim *c;

	if (o->page == 0 || o->page > SCLAIM_PAGE_MAX || !rconn_is_up(rc) ||
	    (c = calloc(1, sizeof(*c))) == NULL)
		return -1;
	c->rc = rc;
	c->page = o->page;
	c->min_idle_ms = o->min_idle_ms;
	c->dead_since_ms = o->dead_since_ms;
	c->justid = o->justid;
	c->page_cb = o->page_cb;
	c->done_cb = o->done_cb;
	c->arg = o->arg;
	c->key = strdup(o->key);
	c->group = strdup(o->group);
	c->from = strdup(o->from != NULL ? o->from : "");
	c->to = strdup(o->to);
	c->ids = calloc(o->page, sizeof(*c->ids));
	c->deliveries = calloc(o->page, sizeof(*c->deliveries));
	if (c->key == NULL || c->group == NULL || c->from == NULL ||
	    c->to == NULL || c->ids == NULL || c->deliveries == NULL) {
		c->done_cb = NULL;
		sclaim_end(c, NULL, NULL);
		return -1;
	}
	strcpy(c->cursor, "0-0");
	if (o->from == NULL ? rconn_cmd(rc, sclaim_auto_cb, c, "XAUTOCLAIM %s "
	    "%s %s %llu 0-0 COUNT %u%s", c->key, c->group, c->to,
	    (unsigned long long)sclaim_idle(c), c->page,
	    c->justid ? " JUSTID" : "") < 0 : rconn_cmd(rc, sclaim_pending_cb,
	    c, "XPENDING %s %s IDLE %llu - + %u %s", c->key, c->group,
	    (unsigned long long)sclaim_idle(c), c->page, c->from) < 0) {
		c->done_cb = NULL;
		sclaim_end(c, NULL, NULL);
		return -1;
	}
	return 0;
}

unsigned
sclaim_deliveries(const struct sclaim *c, const char *id)
{
	for (unsigned k = 0; k < c->n; k++)
		if (strcmp(c->ids[k], id) == 0)
			return c->deliveries[k];
	return 1;
}

const char *
sclaim_key(const struct sclaim *c)
{
	return c->key;
}

const char *
sclaim_from(const struct sclaim *c)
{
	return c->from;
}
