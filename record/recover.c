/*
 * recover.c - unfinished tasks absent from Redis put back (record.h).
 *
 *   SET <p>:lock:recover host NX PX 60000      one host at a time
 *   SELECT unfinished tasks with their message  (PostgreSQL)
 *   per task: XRANGE stream entry entry         still there?
 *   missing:  XADD stream * m message           put back as submitted
 *   DEL lock (if still ours: it expires anyway)
 */
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hive_proto.h"
#include "log.h"

#define RV_LIMIT "5000"

struct rv_task {
	char *stream;
	char *entry;
	char *id;
	unsigned char *msg;
	size_t msglen;
};

struct rv {
	struct sup_pg *pg;
	struct rconn *rc;
	char prefix[HIVE_NAME_MAX + 1];
	char host[HIVE_HOST_MAX + 1];
	struct rv_task *tasks;
	int ntasks;
	int waiting;                 /* XRANGE replies to come */
	unsigned requeued;
	int failed;
	sup_recover_cb *done;
	void *arg;
};

static void
rv_free(struct rv *v)
{
	for (int i = 0; i < v->ntasks; i++) {
		free(v->tasks[i].stream);
		free(v->tasks[i].entry);
		free(v->tasks[i].id);
		PQfreemem(v->tasks[i].msg);
	}
	free(v->tasks);
	free(v);
}

static void
rv_done(struct rv *v)
{
	sup_recover_cb *done = v->done;
	void *arg = v->arg;
	unsigned n = v->requeued;
	int ok = !v->failed;

	if (n > 0)
		log_notice("recover: %u unfinished tasks were missing from Redis "
		    "and are queued again", n);
	rv_free(v);
	done(n, ok, arg);
}

static void
rv_unlocked_cb(redisAsyncContext *ac, void *r, void *priv)
{
	rv_done(priv);
}

/* Release the lock (if it is still ours), then report. */
static void
rv_finish(struct rv *v)
{
	if (rconn_cmd(v->rc, rv_unlocked_cb, v, "EVAL %s 1 %s:lock:recover %s",
	    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
	    "return redis.call('DEL', KEYS[1]) end return 0", v->prefix,
	    v->host) < 0)
		rv_done(v);
}

static void
rv_added_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct rv *v = priv;
	redisReply *reply = r;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING)
		v->requeued++;
	else
		v->failed = 1;
	if (--v->waiting == 0)
		rv_finish(v);
}

struct rv_one {
	struct rv *v;
	int i;
};

static void
rv_range_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct rv_one *o = priv;
	struct rv *v = o->v;
	redisReply *reply = r;
	struct rv_task *t = &v->tasks[o->i];

	free(o);
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		v->failed = 1;
	else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 0) {
		/* Finished only once Redis has it: wait for the reply. */
		v->waiting++;
		if (rconn_cmd(v->rc, rv_added_cb, v, "XADD %s * m %b",
		    t->stream, t->msg, t->msglen) == 0)
			log_info("recover: task=%s was lost from %s (entry %s): "
			    "queued again", t->id, t->stream, t->entry);
		else {
			v->waiting--;
			v->failed = 1;
		}
	}
	if (--v->waiting == 0)
		rv_finish(v);
}

static void
rv_select_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct rv *v = arg;
	int n;

	if (res == NULL || err != NULL) {
		if (err != NULL)
			log_warnx("recover: %s", err);
		v->failed = 1;
		rv_finish(v);
		return;
	}
	n = PQntuples(res);
	if (n == 0) {
		rv_finish(v);
		return;
	}
	if ((v->tasks = calloc((size_t)n, sizeof(*v->tasks))) == NULL) {
		v->failed = 1;
		rv_finish(v);
		return;
	}
	for (int i = 0; i < n; i++) {
		struct rv_task *t = &v->tasks[v->ntasks];
		t->id = strdup(PQgetvalue(res, i, 0));
		t->stream = strdup(PQgetvalue(res, i, 1));
		t->entry = strdup(PQgetvalue(res, i, 2));
		t->msg = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, 3),
		    &t->msglen);
		v->ntasks++;
		if (t->id == NULL || t->stream == NULL || t->entry == NULL ||
		    t->msg == NULL) {
			v->failed = 1;
			break;
		}
	}
	/* One XRANGE per task, pipelined; the last reply finishes. */
	v->waiting = 1;
	for (int i = 0; i < v->ntasks && !v->failed; i++) {
		struct rv_one *o = malloc(sizeof(*o));
		if (o == NULL) {
			v->failed = 1;
			break;
		}
		o->v = v;
		o->i = i;
		v->waiting++;
		if (rconn_cmd(v->rc, rv_range_cb, o, "XRANGE %s %s %s",
		    v->tasks[i].stream, v->tasks[i].entry, v->tasks[i].entry) < 0) {
			free(o);
			v->waiting--;
			v->failed = 1;
		}
	}
	if (--v->waiting == 0)
		rv_finish(v);
}

static void
rv_lock_cb(redisAsyncContext *ac, void *r, void *priv)
{
	struct rv *v = priv;
	redisReply *reply = r;

	if (reply == NULL || reply->type != REDIS_REPLY_STATUS) {
		/* Another host is at it (nil), or Redis went away. */
		sup_recover_cb *done = v->done;
		void *arg = v->arg;
		int ok = reply != NULL && reply->type == REDIS_REPLY_NIL;
		rv_free(v);
		done(0, ok, arg);
		return;
	}
	/* Only tasks untouched for a while: one just submitted may not have
	 * its entry id recorded yet by a recorder on another host. */
	if (sup_pg_query(v->pg, "SELECT id, stream, entry, message FROM tasks "
	    "WHERE state IN ('queued', 'running') AND message IS NOT NULL "
	    "AND entry IS NOT NULL AND stream <> '' "
	    "AND updated_at < now() - interval '2 seconds' "
	    "ORDER BY created_at LIMIT " RV_LIMIT, 0, NULL, NULL, NULL,
	    rv_select_cb, v) < 0) {
		v->failed = 1;
		rv_finish(v);
	}
}

int
sup_recover(struct sup_pg *pg, struct rconn *rc, const char *prefix,
    const char *host, sup_recover_cb *done, void *arg)
{
	struct rv *v = calloc(1, sizeof(*v));

	if (v == NULL)
		return -1;
	v->pg = pg;
	v->rc = rc;
	snprintf(v->prefix, sizeof(v->prefix), "%s", prefix);
	snprintf(v->host, sizeof(v->host), "%s", host);
	v->done = done;
	v->arg = arg;
	if (rconn_cmd(rc, rv_lock_cb, v, "SET %s:lock:recover %s NX PX 60000",
	    prefix, host) < 0) {
		free(v);
		return -1;
	}
	return 0;
}
