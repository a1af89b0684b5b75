/*
 * api_output_task.c - GET /tasks/{id}/output: a task's output stream
 * (<prefix>:output:<id>, written by the worker: docs/PROTOCOL.md) as
 * server-sent events (docs/API.md, "Task output").
 *
 *   request --record: state?--> XRANGE after Last-Event-ID --> sse_open
 *                                                   |
 *        end among them: sse_end <------------------+--> following
 *
 *   following: one connection of its own, one XREAD BLOCK over the keys
 *   of every follower (CLIENT UNBLOCK'ed and sent again when one comes);
 *   once a second the record is asked for the followed tasks' states,
 *   and a task that ended without an end entry (it wrote nothing, went
 *   dead, its stream expired) gets the end made from the record.
 *
 * A task is unknown (404) when the record has no row for it and Redis
 * no stream; without a record (no [hive] postgres, or PostgreSQL down)
 * a task with no stream yet is waited for.  Nothing blocks the loop:
 * Redis through rconn (async), PostgreSQL through sup_pg_query on the
 * record's connection (sup_store_pg: one lookup by primary key per
 * request, one query a second for all followers, so it is not worth a
 * connection of its own).
 *
 * Lifetimes: a follower lives until its stream closed (sse closed_fn)
 * and none of its own callbacks is still to come (pending).  The XREAD
 * reply finds followers through the list only, so a follower that left
 * it is never seen there.
 */
#include "hived.h"
#include "api.h"
#include "sse.h"

#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "log.h"
#include "rconn.h"
#include "record.h"

#define OT_BLOCK_MS     5000        /* an XREAD BLOCK, then sent again */
#define OT_PAGE         500         /* entries per XRANGE / XREAD key */
#define OT_TICK_S       1.0         /* the record asked this often */
#define OT_BUF_MAX      (4u << 20)  /* bytes queued per client */
#define OT_ENTRY_MAX    (HIVE_ENTRY_ID_MAX + 1)

enum ot_state {
	OT_LOOKUP = 0,                   /* the record, then XRANGE: req set */
	OT_FOLLOW,                       /* on the list, sse set */
	OT_DONE,                         /* closed, or ending: off the list */
};

struct ot_hub;

struct ot_follower {
	TAILQ_ENTRY(ot_follower) entry;
	struct ot_hub *hub;
	enum ot_state state;
	struct api_req *req;             /* OT_LOOKUP */
	struct sse *sse;                 /* once open, until closed */
	int pending;                     /* callbacks of its own to come */
	bool asked;                      /* the record answered the lookup */
	bool final;                      /* the record says it ended */
	char state_text[16];             /* its record state, "" unknown */
	char *error;                     /* the record's error, or NULL */
	char id[HIVE_ID_MAX + 1];
	char key[HIVE_KEY_MAX];
	char last[OT_ENTRY_MAX];         /* the last entry sent ("0-0") */
};

TAILQ_HEAD(ot_list, ot_follower);

/* The followers of one hived (one loop), and the connection reading
 * their streams. */
struct ot_hub {
	struct sup *sup;
	struct rconn *rc;                /* XREAD BLOCK only */
	long long client_id;             /* rc's, for CLIENT UNBLOCK; 0 unknown */
	bool reading;                    /* an XREAD in flight */
	bool unblocking;                 /* CLIENT UNBLOCK sent for it */
	bool stale;                      /* the keys changed since it was sent */
	bool checking;                   /* the record's query in flight */
	struct ot_list follow;
	unsigned nfollow;
	ev_timer tick;
	ev_cleanup cleanup;
};

static struct ot_hub *ot_hub;

static void ot_read(struct ot_hub *);
static struct ot_hub *ot_hub_get(struct sup *);

static bool
final_state(const char *s)
{
	return strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
	    strcmp(s, "dead") == 0;
}

/* A stream entry id "MS-SEQ" (what Last-Event-ID may give). */
static bool
valid_entry(const char *s)
{
	size_t n = strspn(s, "0123456789");

	return n > 0 && n <= 20 && s[n] == '-' && strspn(s + n + 1,
	    "0123456789") == strlen(s + n + 1) && s[n + 1] != '\0' &&
	    strlen(s + n + 1) <= 20;
}

/* a > b as stream entry ids. */
static bool
entry_after(const char *a, const char *b)
{
	unsigned long long am = strtoull(a, NULL, 10), bm = strtoull(b, NULL, 10);
	const char *as = strchr(a, '-'), *bs = strchr(b, '-');

	if (am != bm)
		return am > bm;
	return strtoull(as ? as + 1 : "0", NULL, 10) >
	    strtoull(bs ? bs + 1 : "0", NULL, 10);
}

static void
follower_free(struct ot_follower *f)
{
	free(f->error);
	free(f);
}

/* Off the list; freed now unless a callback of its own is to come. */
static void
follower_drop(struct ot_follower *f)
{
	if (f->state == OT_FOLLOW) {
		TAILQ_REMOVE(&f->hub->follow, f, entry);
		if (--f->hub->nfollow == 0)
			ev_timer_stop(f->hub->sup->loop, &f->hub->tick);
	}
	f->state = OT_DONE;
	if (f->sse == NULL && f->req == NULL && f->pending == 0)
		follower_free(f);
}

/* sse_closed_fn: the client went, was dropped, or hived stops. */
static void
follower_closed(void *arg)
{
	struct ot_follower *f = arg;

	f->sse = NULL;
	follower_drop(f);
}

/* The end made from the record, then the stream ends. */
static void
follower_end_from_record(struct ot_follower *f)
{
	json_t *d = json_pack("{s:s}", "status", f->state_text);
	char *text;

	if (d != NULL && f->error != NULL)
		json_object_set_new(d, "error", json_string(f->error));
	if (d != NULL && (text = json_dumps(d, JSON_COMPACT)) != NULL) {
		(void)sse_send(f->sse, NULL, "end", text, strlen(text));
		free(text);
	}
	json_decref(d);
	sse_end(f->sse);
	follower_drop(f);
}

/*
 * Send the entries of an XRANGE/XREAD array that come after f->last.
 * Returns 1 when an end was among them (the stream is then ended), -1
 * when the client was dropped, else 0.
 */
static int
follower_entries(struct ot_follower *f, const redisReply *arr)
{
	const redisReply *e, *t, *d;

	for (size_t i = 0; arr != NULL && i < arr->elements; i++) {
		e = arr->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[0]->len >= OT_ENTRY_MAX ||
		    !entry_after(e->element[0]->str, f->last))
			continue;
		snprintf(f->last, sizeof(f->last), "%s", e->element[0]->str);
		t = rconn_entry_field(e->element[1], "t");
		d = rconn_entry_field(e->element[1], "d");
		if (t == NULL || d == NULL)
			continue;
		if (sse_send(f->sse, f->last, t->str, d->str, d->len) == -1)
			return -1;
		if (strcmp(t->str, "end") == 0) {
			sse_end(f->sse);
			follower_drop(f);
			return 1;
		}
	}
	return 0;
}

static void
unblock_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct ot_hub *h = priv;
	redisReply *r = reply;

	(void)ac;
	/* 0: nothing was blocked, the XREAD may not have reached Redis yet
	 * (it goes on another connection): the tick sends it again while
	 * the read in flight is stale. */
	if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer == 0)
		h->unblocking = false;
}

/* End the XREAD in flight (it returns nil) so that it is sent again with
 * the keys as they are now. */
static void
ot_unblock(struct ot_hub *h)
{
	if (h->reading && h->stale && !h->unblocking && h->client_id > 0 &&
	    rconn_cmd(sup_store_redis(h->sup), unblock_cb, h,
	    "CLIENT UNBLOCK %lld", h->client_id) == 0)
		h->unblocking = true;
}

/* Follow f: on the list, the XREAD sent again with its key. */
static void
follower_follow(struct ot_follower *f)
{
	struct ot_hub *h = f->hub;

	f->state = OT_FOLLOW;
	TAILQ_INSERT_TAIL(&h->follow, f, entry);
	if (h->nfollow++ == 0)
		ev_timer_start(h->sup->loop, &h->tick);
	h->stale = true;
	ot_unblock(h);
	ot_read(h);
}

/* ---- the first answer: record, XRANGE, open ---- */

/* XRANGE after f->last: what the stream holds so far. */
static void
range_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct ot_follower *f = priv;
	redisReply *r = reply;
	struct api_req *req = f->req;
	int rc;

	(void)ac;
	f->pending--;
	if (f->state == OT_DONE && req == NULL) {
		follower_drop(f);
		return;
	}
	if (req != NULL) {
		f->req = NULL;
		if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
			api_fail(req, 503, "unavailable", "Redis: %s", r != NULL &&
			    r->type == REDIS_REPLY_ERROR ? r->str : "lost");
			follower_drop(f);
			return;
		}
		if (r->elements == 0 && strcmp(f->last, "0-0") == 0 &&
		    f->asked && f->state_text[0] == '\0') {
			/* Neither the record nor Redis knows it. */
			api_fail(req, 404, "not_found", "no task %s", f->id);
			follower_drop(f);
			return;
		}
		if ((f->sse = sse_open(req, OT_BUF_MAX, follower_closed,
		    f)) == NULL) {
			follower_drop(f);
			return;
		}
	} else if (f->sse == NULL) {
		follower_drop(f);
		return;
	}
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return;                  /* following: the tick asks again */
	if ((rc = follower_entries(f, r)) != 0)
		return;
	if (r->elements >= OT_PAGE) {
		/* More: the next page. */
		if (rconn_cmd(sup_store_redis(f->hub->sup), range_cb, f,
		    "XRANGE %s (%s + COUNT %d", f->key, f->last, OT_PAGE) == 0)
			f->pending++;
		else if (f->state != OT_FOLLOW)
			follower_follow(f);
		return;
	}
	if (f->final) {
		follower_end_from_record(f);
		return;
	}
	if (f->state != OT_FOLLOW)
		follower_follow(f);
}

static void
follower_range(struct ot_follower *f)
{
	struct api_req *req = f->req;

	if (rconn_cmd(sup_store_redis(f->hub->sup), range_cb, f,
	    "XRANGE %s (%s + COUNT %d", f->key, f->last, OT_PAGE) == 0) {
		f->pending++;
		return;
	}
	if (req != NULL) {
		f->req = NULL;
		api_fail(req, 503, "unavailable", "Redis is down");
		follower_drop(f);
	}
}

/* The record's state of one task (the first answer). */
static void
lookup_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct ot_follower *f = arg;

	(void)pg;
	f->pending--;
	f->asked = res != NULL && err == NULL;
	if (f->asked && PQntuples(res) == 1) {
		snprintf(f->state_text, sizeof(f->state_text), "%s",
		    PQgetvalue(res, 0, 0));
		f->final = final_state(f->state_text);
		if (!PQgetisnull(res, 0, 1))
			f->error = strdup(PQgetvalue(res, 0, 1));
	} else if (err != NULL)
		log_warnx("api: output of task=%s: the record: %s", f->id, err);
	if (f->req != NULL && api_gone(f->req)) {
		api_fail(f->req, 503, "unavailable", "the client has gone");
		f->req = NULL;
	}
	if (f->req == NULL) {
		follower_drop(f);
		return;
	}
	/* Read after the record: an end written before the result is in
	 * the stream once the record says the task ended. */
	follower_range(f);
}

static const char ot_sql[] =
    "SELECT state, error FROM tasks WHERE id = $1";

static void
ot_output(struct api_req *req)
{
	struct sup *sup = api_sup(req);
	struct ot_hub *h = ot_hub_get(sup);
	struct ot_follower *f;
	struct sup_pg *pg = sup_store_pg(sup);
	const char *id = api_arg(req, 0), *last, *v[1];

	if (h == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	if ((last = api_header(req, "Last-Event-ID")) == NULL)
		last = api_query(req, "last_event_id");
	if (last != NULL && !valid_entry(last)) {
		api_fail(req, 400, "bad_request", "Last-Event-ID: a stream "
		    "entry id (MS-SEQ) of this task's output");
		return;
	}
	if ((f = calloc(1, sizeof(*f))) == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	f->hub = h;
	f->req = req;
	snprintf(f->id, sizeof(f->id), "%s", id);
	snprintf(f->last, sizeof(f->last), "%s", last != NULL ? last : "0-0");
	if (proto_key_output(f->key, sizeof(f->key),
	    sup->cref->conf->prefix, id) < 0) {
		free(f);
		api_fail(req, 400, "bad_request", "not a task id");
		return;
	}
	v[0] = f->id;
	if (pg != NULL && sup_pg_is_up(pg) &&
	    sup_pg_query(pg, ot_sql, 1, v, NULL, NULL, lookup_cb, f) == 0) {
		f->pending++;
		return;
	}
	follower_range(f);
}

/* ---- following ---- */

static void
read_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct ot_hub *h = priv;
	redisReply *r = reply, *s;
	struct ot_follower *f, *next;

	(void)ac;
	h->reading = false;
	h->unblocking = false;
	if (r == NULL)
		return;                  /* lost: ot_state_cb reads again */
	if (r->type == REDIS_REPLY_ERROR)
		log_warnx("api: output: XREAD: %s", r->str);
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements;
	    i++) {
		s = r->element[i];
		if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
		    s->element[0]->type != REDIS_REPLY_STRING)
			continue;
		for (f = TAILQ_FIRST(&h->follow); f != NULL; f = next) {
			next = TAILQ_NEXT(f, entry);
			if (strcmp(f->key, s->element[0]->str) == 0)
				(void)follower_entries(f, s->element[1]);
		}
	}
	ot_read(h);
}

/*
 * One XREAD BLOCK over the followed keys, each once, from the oldest
 * entry any of its followers has seen.
 */
static void
ot_read(struct ot_hub *h)
{
	struct ot_follower *f, *g;
	const char **argv;
	int argc = 0, nkeys = 0, i;
	char block[16], count[16];

	if (h->reading || h->nfollow == 0 || !rconn_is_up(h->rc))
		return;
	if ((argv = calloc(6 + 2 * (size_t)h->nfollow, sizeof(*argv))) == NULL)
		return;                  /* the tick tries again */
	snprintf(block, sizeof(block), "%d", OT_BLOCK_MS);
	snprintf(count, sizeof(count), "%d", OT_PAGE);
	argv[argc++] = "XREAD";
	argv[argc++] = "COUNT";
	argv[argc++] = count;
	argv[argc++] = "BLOCK";
	argv[argc++] = block;
	argv[argc++] = "STREAMS";
	TAILQ_FOREACH(f, &h->follow, entry) {
		for (i = 0; i < nkeys; i++)
			if (strcmp(argv[argc + i], f->key) == 0)
				break;
		if (i == nkeys)
			argv[argc + nkeys++] = f->key;
	}
	for (i = 0; i < nkeys; i++) {
		const char *oldest = NULL;

		TAILQ_FOREACH(g, &h->follow, entry)
			if (strcmp(g->key, argv[argc + i]) == 0 &&
			    (oldest == NULL || entry_after(oldest, g->last)))
				oldest = g->last;
		argv[argc + nkeys + i] = oldest;
	}
	if (rconn_argv(h->rc, read_cb, h, argc + 2 * nkeys, argv, NULL) == 0) {
		h->reading = true;
		h->stale = false;
	}
	free(argv);
}

/* The record's states of the followed tasks: those that ended are read
 * once more and ended (from the record when no end entry comes). */
static void
check_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	struct ot_hub *h = arg;
	struct ot_follower *f, *next;
	const char *id, *st;

	(void)pg;
	h->checking = false;
	if (res == NULL || err != NULL)
		return;
	for (int row = 0; row < PQntuples(res); row++) {
		id = PQgetvalue(res, row, 0);
		st = PQgetvalue(res, row, 1);
		if (!final_state(st))
			continue;
		for (f = TAILQ_FIRST(&h->follow); f != NULL; f = next) {
			next = TAILQ_NEXT(f, entry);
			if (f->final || strcmp(f->id, id) != 0)
				continue;
			f->final = true;
			snprintf(f->state_text, sizeof(f->state_text), "%s", st);
			free(f->error);
			f->error = PQgetisnull(res, row, 2) ? NULL :
			    strdup(PQgetvalue(res, row, 2));
			follower_range(f);
		}
	}
}

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ot_hub *h = w->data;
	struct sup_pg *pg = sup_store_pg(h->sup);
	struct ot_follower *f;
	struct hbuf b = { 0 };
	const char *v[1];
	int n = 0;

	(void)loop;
	(void)revents;
	ot_read(h);                      /* after an outage */
	ot_unblock(h);
	if (h->checking || h->nfollow == 0 || pg == NULL || !sup_pg_is_up(pg))
		return;
	/* A text[] literal of the ids: "{"a","b"}" (ids have no '"', '\\'
	 * nor blanks: printable ASCII, but quoted all the same). */
	hbuf_putc(&b, '{');
	TAILQ_FOREACH(f, &h->follow, entry) {
		if (f->final)
			continue;
		hbuf_printf(&b, "%s\"", n++ ? "," : "");
		for (const char *p = f->id; *p; p++) {
			if (*p == '"' || *p == '\\')
				hbuf_putc(&b, '\\');
			hbuf_putc(&b, *p);
		}
		hbuf_putc(&b, '"');
	}
	if (hbuf_putc(&b, '}') == 0 && hbuf_putc(&b, '\0') == 0 && n > 0) {
		v[0] = hbuf_data(&b);
		if (sup_pg_query(pg, "SELECT id, state, error FROM tasks "
		    "WHERE id = ANY($1::text[])", 1, v, NULL, NULL, check_cb,
		    h) == 0)
			h->checking = true;
	}
	hbuf_free(&b);
}

/* ---- the hub ---- */

static void
ot_id_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct ot_hub *h = priv;
	redisReply *r = reply;

	(void)ac;
	if (r != NULL && r->type == REDIS_REPLY_INTEGER)
		h->client_id = r->integer;
}

static void
ot_state_cb(struct rconn *rc, int up, void *arg)
{
	struct ot_hub *h = arg;

	h->client_id = 0;
	if (!up)
		return;
	(void)rconn_cmd(rc, ot_id_cb, h, "CLIENT ID");
	ot_read(h);
}

static void
ot_cleanup_cb(struct ev_loop *loop, ev_cleanup *w, int revents)
{
	struct ot_hub *h = w->data;

	(void)revents;
	/* The record's callbacks come no more (the loop ends).  The streams are closed by now (http.c first). */
	ev_timer_stop(loop, &h->tick);
	rconn_free(h->rc);
	free(h);
	if (ot_hub == h)
		ot_hub = NULL;
}

/*
 * The hub of this hived, made at the first request: its connection to
 * Redis (for the XREAD BLOCK, which holds it) and its tick (running
 * while someone follows).  NULL (logged) when it cannot be made.
 */
static struct ot_hub *
ot_hub_get(struct sup *sup)
{
	struct ot_hub *h;
	char err[128];

	if (ot_hub != NULL)
		return ot_hub;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->sup = sup;
	TAILQ_INIT(&h->follow);
	if ((h->rc = rconn_new(sup->loop, sup->cref->conf->redis,
	    "redis(output)", ot_state_cb, h, err, sizeof(err))) == NULL) {
		log_warnx("api: output: %s", err);
		free(h);
		return NULL;
	}
	ev_timer_init(&h->tick, tick_cb, OT_TICK_S, OT_TICK_S);
	h->tick.data = h;
	ev_cleanup_init(&h->cleanup, ot_cleanup_cb);
	h->cleanup.data = h;
	ev_cleanup_start(sup->loop, &h->cleanup);
	ot_hub = h;
	return h;
}

const struct api_route api_output_task_routes[] = {
	{ "GET", "/tasks/{}/output", "last_event_id", API_STREAM, ot_output },
	{ NULL, NULL, NULL, 0, NULL },
};
