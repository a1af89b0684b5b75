/*
 * rconn.c - see rconn.h.
 *
 * hiredis owns and frees its redisAsyncContext after the disconnect
 * callback, so the only pointer we keep (rc->ac) is cleared there and in
 * the failed-connect callback; everything else reaches the rconn through
 * ac->data.
 */
#include "rconn.h"

#include <hiredis/adapters/libev.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define RA_POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define RA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define RA_POISON(p, n)   ((void)(p), (void)(n))
#define RA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#include "log.h"

#define RCONN_BACKOFF_MIN_MS 100
#define RCONN_BACKOFF_MAX_MS 5000
#define RCONN_CONNECT_TIMEOUT 5.0

struct rconn {
	struct ev_loop *loop;
	char name[64];
	char host[256];
	int port;
	int is_unix;
	redisAsyncContext *ac;
	int up;
	unsigned backoff_ms;
	int outage_logged;
	ev_tstamp down_since;
	ev_timer retry;              /* reconnect after backoff */
	ev_timer connect_timeout;    /* hiredis 0.14 has none for async */
	rconn_state_cb *state_cb;
	void *arg;
	struct rarena *arena;        /* rconn_reply_arena */
};

static void rconn_connect(struct rconn *);

int
rconn_parse_addr(const char *addr, char *host, size_t hostlen, int *port,
    int *is_unix)
{
	const char *colon;
	char *end;
	long p;

	if (strncmp(addr, "unix:", 5) == 0)
		addr += 5;
	if (addr[0] == '/') {
		if (strlen(addr) >= hostlen || strlen(addr) >= 108)
			return -1;
		snprintf(host, hostlen, "%s", addr);
		*port = 0;
		*is_unix = 1;
		return 0;
	}
	*is_unix = 0;
	if (addr[0] == '[') {
		const char *rb = strchr(addr, ']');
		if (rb == NULL || rb[1] != ':' || (size_t)(rb - addr - 1) >= hostlen)
			return -1;
		memcpy(host, addr + 1, (size_t)(rb - addr - 1));
		host[rb - addr - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL) {
			/* A bare host: the default port. */
			if (*addr == '\0' || strlen(addr) >= hostlen)
				return -1;
			snprintf(host, hostlen, "%s", addr);
			*port = 6379;
			return 0;
		}
		if (colon == addr || (size_t)(colon - addr) >= hostlen)
			return -1;
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
	}
	p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || p <= 0 || p > 65535)
		return -1;
	*port = (int)p;
	return 0;
}

static void
rconn_schedule(struct rconn *rc)
{
	ev_timer_stop(rc->loop, &rc->retry);
	ev_timer_set(&rc->retry, rc->backoff_ms / 1000.0, 0.);
	ev_timer_start(rc->loop, &rc->retry);
	rc->backoff_ms *= 2;
	if (rc->backoff_ms > RCONN_BACKOFF_MAX_MS)
		rc->backoff_ms = RCONN_BACKOFF_MAX_MS;
}

static void
rconn_lost(struct rconn *rc, const char *what, const char *err)
{
	int was_up = rc->up;

	rc->up = 0;
	rc->ac = NULL;
	ev_timer_stop(rc->loop, &rc->connect_timeout);
	if (!rc->outage_logged) {
		log_warnx("%s: %s: %s; reconnecting", rc->name, what,
		    err ? err : "unknown error");
		rc->outage_logged = 1;
		rc->down_since = ev_now(rc->loop);
	} else
		log_debug("%s: %s: %s", rc->name, what, err ? err : "?");
	rconn_schedule(rc);
	if (was_up && rc->state_cb != NULL)
		rc->state_cb(rc, 0, rc->arg);
}

static void
rconn_on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn *rc = ac->data;

	if (rc == NULL)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees ac after this callback. */
		rconn_lost(rc, "connect", ac->errstr);
		return;
	}
	ev_timer_stop(rc->loop, &rc->connect_timeout);
	rc->up = 1;
	rc->backoff_ms = RCONN_BACKOFF_MIN_MS;
	if (rc->outage_logged)
		log_info("%s: connected again after %.1fs", rc->name,
		    ev_now(rc->loop) - rc->down_since);
	else
		log_debug("%s: connected", rc->name);
	rc->outage_logged = 0;
	if (rc->state_cb != NULL)
		rc->state_cb(rc, 1, rc->arg);
}

static void
rconn_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rconn *rc = ac->data;

	if (rc == NULL)              /* rconn_free: nobody to tell */
		return;
	rconn_lost(rc, "connection lost",
	    status == REDIS_OK ? "closed" : ac->errstr);
}

/*
 * ---- replies from an arena (rconn_reply_arena) ----
 *
 * hiredis builds a reply with a malloc per object and per string (ten
 * for a stream entry) and frees them one by one after the callback.  Here
 * they come from blocks of our own: each object is carved from the
 * current block, and freeing the reply (the top object: hiredis frees
 * nothing else) makes the blocks free for the next one.  One reply is
 * alive at a time: hiredis frees each after its callback, before it
 * parses the next.
 */
#define RA_BLOCK_MIN  (64u << 10)
#define RA_KEEP_MAX   (1u << 20)   /* larger and mostly idle: given back */
#define RA_ALIGN      16u

struct ra_block {
	struct ra_block *next;       /* filled before this one */
	size_t used, cap;
	_Alignas(RA_ALIGN) unsigned char data[];
};

struct rarena {
	struct ra_block *cur;
	size_t want;                 /* the size of the next block */
};

/* The top object of a reply: the arena its free resets. */
struct ra_top {
	struct rarena *arena;
	_Alignas(RA_ALIGN) redisReply r;
};

static void *
ra_alloc(struct rarena *a, size_t n)
{
	struct ra_block *b = a->cur;
	void *p;

	n = (n + RA_ALIGN - 1) & ~(size_t)(RA_ALIGN - 1);
	if (b == NULL || b->cap - b->used < n) {
		size_t cap = a->want > n ? a->want : n;

		if ((b = malloc(sizeof(*b) + cap)) == NULL)
			return NULL;
		b->next = a->cur;
		b->used = 0;
		b->cap = cap;
		RA_POISON(b->data, cap);
		a->cur = b;
	}
	p = b->data + b->used;
	b->used += n;
	RA_UNPOISON(p, n);
	return p;
}

/* The reply is freed: its memory serves the next one.  It took more than
 * one block: one block of their total from now on; a large block that the
 * last reply hardly used is given back. */
/* Free every block; returns the bytes they had given out. */
static size_t
ra_drop(struct rarena *a)
{
	struct ra_block *b, *next;
	size_t total = 0;

	for (b = a->cur; b != NULL; b = next) {
		next = b->next;
		total += b->used;
		free(b);
	}
	a->cur = NULL;
	return total;
}

static void
ra_reset(struct rarena *a)
{
	struct ra_block *b = a->cur;
	size_t total;

	if (b != NULL && b->next == NULL && (b->cap <= RA_KEEP_MAX ||
	    b->used >= b->cap / 4)) {
		b->used = 0;
		RA_POISON(b->data, b->cap);
		return;
	}
	total = ra_drop(a);
	a->want = total > RA_BLOCK_MIN ? total : RA_BLOCK_MIN;
}

/* A reply object of type, with room for extra bytes after it, linked to
 * its parent array. */
static redisReply *
ra_reply(const redisReadTask *task, int type, size_t extra)
{
	struct rarena *a = task->privdata;
	redisReply *r;

	if (task->parent == NULL) {
		struct ra_top *t = ra_alloc(a, sizeof(*t) + extra);

		if (t == NULL)
			return NULL;
		t->arena = a;
		r = &t->r;
	} else {
		redisReply *parent = task->parent->obj;

		if ((r = ra_alloc(a, sizeof(*r) + extra)) == NULL)
			return NULL;
		parent->element[task->idx] = r;
	}
	memset(r, 0, sizeof(*r));
	r->type = type;
	return r;
}

static void *
ra_string(const redisReadTask *task, char *str, size_t len)
{
	redisReply *r = ra_reply(task, task->type, len + 1);

	if (r == NULL)
		return NULL;
	r->str = (char *)(r + 1);
	memcpy(r->str, str, len);
	r->str[len] = '\0';
	r->len = len;
	return r;
}

static void *
ra_array(const redisReadTask *task, int elements)
{
	size_t n = elements > 0 ? (size_t)elements : 0;
	redisReply *r = ra_reply(task, REDIS_REPLY_ARRAY, n * sizeof(r));

	if (r == NULL)
		return NULL;
	r->elements = n;
	if (n > 0) {
		r->element = (redisReply **)(r + 1);
		memset(r->element, 0, n * sizeof(*r->element));
	}
	return r;
}

static void *
ra_integer(const redisReadTask *task, long long value)
{
	redisReply *r = ra_reply(task, REDIS_REPLY_INTEGER, 0);

	if (r != NULL)
		r->integer = value;
	return r;
}

static void *
ra_nil(const redisReadTask *task)
{
	return ra_reply(task, REDIS_REPLY_NIL, 0);
}

static void
ra_free(void *obj)
{
	struct ra_top *t = (struct ra_top *)(void *)((char *)obj -
	    offsetof(struct ra_top, r));

	ra_reset(t->arena);
}

/* After rconn_free: a context hiredis frees later finds no arena. */
static void
ra_free_detached(void *obj)
{
	(void)obj;
}

static redisReplyObjectFunctions ra_fns = {
	ra_string, ra_array, ra_integer, ra_nil, ra_free
};
static redisReplyObjectFunctions ra_detached_fns = {
	ra_string, ra_array, ra_integer, ra_nil, ra_free_detached
};

static void
rarena_free(struct rarena *a)
{
	if (a == NULL)
		return;
	(void)ra_drop(a);
	free(a);
}

int
rconn_reply_arena(struct rconn *rc)
{
	if (rc->arena != NULL)
		return 0;
	if ((rc->arena = calloc(1, sizeof(*rc->arena))) == NULL)
		return -1;
	rc->arena->want = RA_BLOCK_MIN;
	if (rc->ac != NULL) {        /* connecting: nothing read yet */
		rc->ac->c.reader->fn = &ra_fns;
		rc->ac->c.reader->privdata = rc->arena;
	}
	return 0;
}

static void
rconn_connect(struct rconn *rc)
{
	redisAsyncContext *ac;

	ac = rc->is_unix ? redisAsyncConnectUnix(rc->host)
	    : redisAsyncConnect(rc->host, rc->port);
	if (ac == NULL) {
		rconn_lost(rc, "connect", "out of memory");
		return;
	}
	if (ac->err) {
		char err[128];
		snprintf(err, sizeof(err), "%s", ac->errstr);
		redisAsyncFree(ac);
		rconn_lost(rc, "connect", err);
		return;
	}
	ac->data = rc;
	if (rc->arena != NULL) {
		ac->c.reader->fn = &ra_fns;
		ac->c.reader->privdata = rc->arena;
	}
	if (redisLibevAttach(rc->loop, ac) != REDIS_OK) {
		redisAsyncFree(ac);
		rconn_lost(rc, "connect", "cannot attach to the event loop");
		return;
	}
	redisAsyncSetConnectCallback(ac, rconn_on_connect);
	redisAsyncSetDisconnectCallback(ac, rconn_on_disconnect);
	rc->ac = ac;
	ev_timer_set(&rc->connect_timeout, RCONN_CONNECT_TIMEOUT, 0.);
	ev_timer_start(rc->loop, &rc->connect_timeout);
}

static void
rconn_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rconn *rc = w->data;

	if (rc->ac == NULL)
		rconn_connect(rc);
}

static void
rconn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rconn *rc = w->data;

	redisAsyncContext *ac = rc->ac;

	/* Still not connected: give up on this attempt.  hiredis calls no
	 * callback for a context freed before it connected, so schedule the
	 * next attempt here. */
	if (ac == NULL || rc->up)
		return;
	ac->data = NULL;
	redisAsyncFree(ac);
	rconn_lost(rc, "connect", "timed out");
}

struct rconn *
rconn_new(struct ev_loop *loop, const char *addr, const char *name,
    rconn_state_cb *state_cb, void *arg, char *errbuf, size_t errlen)
{
	struct rconn *rc = calloc(1, sizeof(*rc));

	if (rc == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	if (rconn_parse_addr(addr, rc->host, sizeof(rc->host), &rc->port,
	    &rc->is_unix) < 0) {
		snprintf(errbuf, errlen, "bad redis address \"%s\" (want "
		    "host:port or /path/to/redis.sock)", addr);
		free(rc);
		return NULL;
	}
	rc->loop = loop;
	snprintf(rc->name, sizeof(rc->name), "%s", name);
	rc->state_cb = state_cb;
	rc->arg = arg;
	rc->backoff_ms = RCONN_BACKOFF_MIN_MS;
	ev_init(&rc->retry, rconn_retry_cb);
	rc->retry.data = rc;
	ev_init(&rc->connect_timeout, rconn_timeout_cb);
	rc->connect_timeout.data = rc;
	rconn_connect(rc);
	return rc;
}

void
rconn_free(struct rconn *rc)
{
	if (rc == NULL)
		return;
	ev_timer_stop(rc->loop, &rc->retry);
	ev_timer_stop(rc->loop, &rc->connect_timeout);
	if (rc->ac != NULL) {
		rc->ac->data = NULL;     /* its callbacks must not find us */
		if (rc->arena != NULL)   /* freed below, hiredis may free later */
			rc->ac->c.reader->fn = &ra_detached_fns;
		redisAsyncFree(rc->ac);
	}
	rarena_free(rc->arena);
	free(rc);
}

int
rconn_is_up(const struct rconn *rc)
{
	return rc->up;
}

redisAsyncContext *
rconn_ctx(struct rconn *rc)
{
	return rc->up ? rc->ac : NULL;
}

int
rconn_cmd(struct rconn *rc, redisCallbackFn *fn, void *priv,
    const char *fmt, ...)
{
	va_list ap;
	int r;

	if (!rc->up)
		return -1;
	va_start(ap, fmt);
	r = redisvAsyncCommand(rc->ac, fn, priv, fmt, ap);
	va_end(ap);
	return r == REDIS_OK ? 0 : -1;
}

int
rconn_argv(struct rconn *rc, redisCallbackFn *fn, void *priv, int argc,
    const char **argv, const size_t *argvlen)
{
	if (!rc->up)
		return -1;
	return redisAsyncCommandArgv(rc->ac, fn, priv, argc, argv, argvlen)
	    == REDIS_OK ? 0 : -1;
}

int
rconn_formatted(struct rconn *rc, redisCallbackFn *fn, void *priv,
    const char *cmd, size_t len)
{
	if (!rc->up)
		return -1;
	return redisAsyncFormattedCommand(rc->ac, fn, priv, cmd, len) ==
	    REDIS_OK ? 0 : -1;
}

void
rconn_log_error(redisAsyncContext *ac, void *reply, void *priv)
{
	const redisReply *r = reply;

	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		log_warnx("%s: %s", (const char *)priv, r->str);
}

const redisReply *
rconn_entry_field(const redisReply *f, const char *name)
{
	if (f == NULL || f->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < f->elements; i += 2)
		if (f->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(f->element[i]->str, name) == 0 &&
		    f->element[i + 1]->type == REDIS_REPLY_STRING)
			return f->element[i + 1];
	return NULL;
}
