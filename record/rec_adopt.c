/*
 * rec_adopt.c - the entries a gone host's recorder had read, taken over
 * (rec.h).
 *
 * Entries read by the recorder of a host that is gone stay pending to its
 * consumer (the host's name) until it comes back, which it may never do:
 * the others take them over.  Every REC_ADOPT_EVERY, per stream:
 *
 *   XPENDING key recorder               -> consumers with entries pending
 *   EXISTS <p>:host:<consumer>           (each hived's heartbeat, reclaim.c)
 *   0: take its entries (common/sclaim), ids only, idle 1000 ms at least:
 *      XPENDING key recorder IDLE 1000 - + n <consumer>  -> their ids
 *      XCLAIM key recorder <us> 1000 <ids> JUSTID
 *
 * then read our pending entries (id 0), which now hold them.  A host only
 * briefly stalled may still write what it read too: the record is keyed,
 * writing an entry twice changes nothing.
 */
#include "rec.h"

#include <stdlib.h>

#include "log.h"
#include "sclaim.h"

#define REC_ADOPT_PAGE   1000    /* entries claimed per XCLAIM */
#define REC_ADOPT_IDLE   1000    /* ms idle at least: not one another
                                  * recorder has just claimed */

struct rec_adopt {
	struct sup_recorder *rec;
	unsigned gen;                /* rec->gen when sent: streams still ours */
	int stream;
	char consumer[128];
};

/* Done with one command of a pass.  NULL reply: the connection is gone
 * (rec_redis_state counts the pass over) or rec is being freed. */
static int
adopt_done(struct rec_adopt *a, const redisReply *reply)
{
	if (reply == NULL) {
		free(a);
		return -1;
	}
	a->rec->adopting--;
	if (a->gen != a->rec->gen || reply->type == REDIS_REPLY_ERROR) {
		free(a);
		return -1;
	}
	return 0;
}

/* A page of a's consumer's entries, ours now (ids only): read them as
 * our own pending ones. */
static int
rec_adopt_page_cb(struct sclaim *c, const redisReply *claimed, void *arg)
{
	struct rec_adopt *a = arg;
	struct sup_recorder *rec = a->rec;

	if (a->gen != rec->gen)      /* its streams are forgotten: stop */
		return -1;
	if (claimed->elements > 0) {
		log_warnx("recorder: %s: host %s is gone; %zu %s it had read "
		    "recorded here", rec->streams[a->stream].key, a->consumer,
		    claimed->elements, claimed->elements == 1 ? "entry" :
		    "entries");
		rec->st.adopted += claimed->elements;
		rec->fsm = rec_fsm_step(rec->fsm, REC_EV_WANT_PENDING);
		rec_read(rec);
	}
	return 0;
}

/* The claim ended (connection lost too: rec_redis_state may have counted
 * the pass over already). */
static void
rec_adopt_done_cb(struct sclaim *c, const char *err, void *arg)
{
	struct rec_adopt *a = arg;

	if (a->rec->adopting > 0)
		a->rec->adopting--;
	free(a);
}

/* The consumer of a is gone: take its entries (common/sclaim). */
static void
rec_adopt_claim(struct sup_recorder *rec, struct rec_adopt *a)
{
	struct sclaim_opts o = { .key = rec->streams[a->stream].key,
	    .group = REC_GROUP, .from = a->consumer, .to = rec->host,
	    .page = REC_ADOPT_PAGE, .min_idle_ms = REC_ADOPT_IDLE,
	    .justid = 1, .page_cb = rec_adopt_page_cb,
	    .done_cb = rec_adopt_done_cb, .arg = a };

	if (sclaim_start(rec->rc, &o) == 0)
		rec->adopting++;
	else
		free(a);
}

static void
rec_adopt_alive_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct rec_adopt *a = priv;
	redisReply *reply = r;

	if (adopt_done(a, reply) < 0)
		return;
	if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
		rec_adopt_claim(a->rec, a);  /* no heartbeat: gone */
	else
		free(a);
}

static void
rec_adopt_pending_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct rec_adopt *a = priv;
	redisReply *reply = r, *list;
	struct sup_recorder *rec = a->rec;

	if (adopt_done(a, reply) < 0)
		return;
	/* [count, first, last, [[consumer, count], ...]] */
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 4 &&
	    (list = reply->element[3])->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < list->elements; i++) {
			const redisReply *c = list->element[i];
			struct rec_adopt *b;

			if (c->type != REDIS_REPLY_ARRAY || c->elements < 1 ||
			    c->element[0]->type != REDIS_REPLY_STRING ||
			    strcmp(c->element[0]->str, rec->host) == 0 ||
			    c->element[0]->len >= sizeof(b->consumer) ||
			    (b = malloc(sizeof(*b))) == NULL)
				continue;
			*b = *a;
			memcpy(b->consumer, c->element[0]->str,
			    c->element[0]->len + 1);
			if (rconn_cmd(rec->rc, rec_adopt_alive_cb, b,
			    "EXISTS %s:host:%s", rec->prefix, b->consumer) == 0)
				rec->adopting++;
			else
				free(b);
		}
	}
	free(a);
}

void
rec_adopt(struct sup_recorder *rec)
{
	/* Stopping: what we took now we would leave pending to us. */
	if (rec->adopting > 0 || rec->finish != NULL || !rconn_is_up(rec->rc))
		return;
	for (int i = 0; i < rec->nstreams; i++) {
		struct rec_adopt *a = calloc(1, sizeof(*a));

		if (a == NULL)
			return;
		a->rec = rec;
		a->gen = rec->gen;
		a->stream = i;
		if (rconn_cmd(rec->rc, rec_adopt_pending_cb, a, "XPENDING %s "
		    REC_GROUP, rec->streams[i].key) == 0)
			rec->adopting++;
		else
			free(a);
	}
}

