/*
 * rconn.c - Redis connections that come back by themselves, alone or in a
 * group that goes down together (rconn.h).  Replies built in an arena are
 * rarena.c's.
 *
 * hiredis owns and frees its redisAsyncContext after the disconnect
 * callback, so the only pointer we keep (rc->ac) is cleared there and in
 * the failed-connect callback; everything else reaches the rconn through
 * ac->data.  A context we close ourselves (rconn_drop) first loses its
 * ac->data: its callbacks, run with NULL replies, and its disconnect
 * callback then find no rconn.
 */
#include "rconn.h"

#include <fcntl.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/sds.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rarena.h"
#include "util.h"

#define RCONN_CONNECT_TIMEOUT 5.0

struct rconn {
	struct ev_loop *loop;
	char name[160];
	char host[256];
	int port;
	int is_unix;
	redisAsyncContext *ac;
	int up;
	struct backoff bo;           /* alone; a member's is its group's */
	ev_timer retry;              /* reconnect after backoff (alone) */
	ev_timer connect_timeout;    /* hiredis 0.14 has none for async */
	rconn_state_cb *state_cb;
	void *arg;
	struct rarena *arena;        /* rconn_reply_arena */
	struct rconn_group *group;   /* NULL: alone */
};

struct rconn_group {
	struct ev_loop *loop;
	char name[128];
	int n;
	struct rconn **m;
	int up;                      /* every member connected, owner told */
	struct backoff bo;
	ev_timer retry;              /* reconnect them all after backoff */
	rconn_group_cb *cb;
	void *arg;
};

static void rconn_connect(struct rconn *);
static void group_down(struct rconn_group *, const char *who,
    const char *what, const char *err);

static uint64_t
loop_ms(struct ev_loop *loop)
{
	return (uint64_t)(ev_now(loop) * 1000.);
}

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
rconn_lost(struct rconn *rc, const char *what, const char *err)
{
	int was_up = rc->up, first;
	unsigned ms;

	rc->up = 0;
	rc->ac = NULL;
	ev_timer_stop(rc->loop, &rc->connect_timeout);
	if (err == NULL)
		err = "unknown error";
	if (rc->group != NULL) {
		group_down(rc->group, rc->name, what, err);
		return;
	}
	ms = backoff_fail(&rc->bo, loop_ms(rc->loop), &first);
	if (first)
		log_warnx("%s: %s: %s; reconnecting", rc->name, what, err);
	else
		log_debug("%s: %s: %s", rc->name, what, err);
	ev_timer_stop(rc->loop, &rc->retry);
	ev_timer_set(&rc->retry, ms / 1000.0, 0.);
	ev_timer_start(rc->loop, &rc->retry);
	if (was_up && rc->state_cb != NULL)
		rc->state_cb(rc, 0, rc->arg);
}

static void
rconn_on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn *rc = ac->data;
	struct rconn_group *g;
	uint64_t lasted;
	int down;

	if (rc == NULL)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees ac after this callback. */
		rconn_lost(rc, "connect", ac->errstr);
		return;
	}
	ev_timer_stop(rc->loop, &rc->connect_timeout);
	rc->up = 1;
	if ((g = rc->group) != NULL) {
		/* The outage ends when the owner says so (rconn_group_ready). */
		for (int i = 0; i < g->n; i++)
			if (!g->m[i]->up)
				return;
		g->up = 1;
		if (g->cb != NULL)
			g->cb(g, 1, g->arg);
		return;
	}
	down = rc->bo.down;
	lasted = backoff_ok(&rc->bo, loop_ms(rc->loop));
	if (down)
		log_info("%s: connected again after %.1fs", rc->name,
		    lasted / 1000.0);
	else
		log_debug("%s: connected", rc->name);
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

int
rconn_reply_arena(struct rconn *rc)
{
	if (rc->arena != NULL)
		return 0;
	if ((rc->arena = rarena_new()) == NULL)
		return -1;
	if (rc->ac != NULL)          /* connecting: nothing read yet */
		rarena_attach(rc->arena, rc->ac->c.reader);
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
	/* hiredis 0.14 opens its socket without close-on-exec: no child
	 * (a handler, anything hived spawns) may inherit it. */
	if (fcntl(ac->c.fd, F_SETFD, FD_CLOEXEC) == -1)
		log_warn("%s: close-on-exec on the redis socket", rc->name);
	ac->data = rc;
	if (rc->arena != NULL)
		rarena_attach(rc->arena, ac->c.reader);
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

/* An rconn not yet connecting, or NULL (why in errbuf). */
static struct rconn *
rconn_alloc(struct ev_loop *loop, const char *addr, const char *name,
    char *errbuf, size_t errlen)
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
	backoff_init(&rc->bo, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
	ev_init(&rc->retry, rconn_retry_cb);
	rc->retry.data = rc;
	ev_init(&rc->connect_timeout, rconn_timeout_cb);
	rc->connect_timeout.data = rc;
	return rc;
}

struct rconn *
rconn_new(struct ev_loop *loop, const char *addr, const char *name,
    rconn_state_cb *state_cb, void *arg, char *errbuf, size_t errlen)
{
	struct rconn *rc = rconn_alloc(loop, addr, name, errbuf, errlen);

	if (rc == NULL)
		return NULL;
	rc->state_cb = state_cb;
	rc->arg = arg;
	rconn_connect(rc);
	return rc;
}

/*
 * Close rc's context now, as if it had never connected: hiredis runs its
 * callbacks in flight with a NULL reply (they find no rconn), and neither
 * the disconnect callback nor a reply may reach us any more.
 */
static void
rconn_drop(struct rconn *rc)
{
	redisAsyncContext *ac = rc->ac;

	rc->up = 0;
	ev_timer_stop(rc->loop, &rc->connect_timeout);
	if (ac == NULL)
		return;
	rc->ac = NULL;
	ac->data = NULL;
	redisAsyncFree(ac);
}

void
rconn_free(struct rconn *rc)
{
	if (rc == NULL)
		return;
	ev_timer_stop(rc->loop, &rc->retry);
	if (rc->ac != NULL && rc->arena != NULL)
		/* Freed below; hiredis may free the context later. */
		rarena_detach(rc->ac->c.reader);
	rconn_drop(rc);
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
rconn_map_field(const redisReply *f, const char *name, int type)
{
	if (f == NULL || f->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < f->elements; i += 2)
		if (f->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(f->element[i]->str, name) == 0 &&
		    f->element[i + 1]->type == type)
			return f->element[i + 1];
	return NULL;
}

const redisReply *
rconn_entry_field(const redisReply *f, const char *name)
{
	return rconn_map_field(f, name, REDIS_REPLY_STRING);
}

void *
rconn_arg(const redisAsyncContext *ac)
{
	const struct rconn *rc = ac->data;

	return rc != NULL ? rc->arg : NULL;
}

void
rconn_flush(struct rconn *rc)
{
	redisAsyncContext *ac = rc->ac;

	/* Only on a connected context: on one still connecting, the write
	 * event is what completes the connect. */
	if (rc->up && ac != NULL && (ac->c.flags & REDIS_CONNECTED) &&
	    sdslen(ac->c.obuf) > 0)
		redisAsyncHandleWrite(ac);
}

/* ---- groups: connections that go down together ---- */

/*
 * A member was lost or failed to connect (who: its name), or the owner
 * gave up on the group (who: the group's name, err NULL).  Every member is
 * closed at once, the owner hears "down" if it had heard "up", and one
 * timer opens them all again after the backoff.  Re-entered while its
 * members close (their callbacks run), it finds the timer running.
 */
static void
group_down(struct rconn_group *g, const char *who, const char *what,
    const char *err)
{
	int was_up = g->up, first;
	unsigned ms;

	if (ev_is_active(&g->retry))
		return;
	g->up = 0;
	ms = backoff_fail(&g->bo, loop_ms(g->loop), &first);
	ev_timer_set(&g->retry, ms / 1000.0, 0.);
	ev_timer_start(g->loop, &g->retry);
	if (first)
		log_warnx("%s: %s%s%s; closing all %d connections of %s, "
		    "reconnecting", who, what, err ? ": " : "", err ? err : "",
		    g->n, g->name);
	else
		log_debug("%s: %s%s%s", who, what, err ? ": " : "",
		    err ? err : "");
	for (int i = 0; i < g->n; i++)
		rconn_drop(g->m[i]);
	if (was_up && g->cb != NULL)
		g->cb(g, 0, g->arg);
}

/* Open every member that is closed; one that fails at once takes the
 * group down, which ends the loop. */
static void
group_connect(struct rconn_group *g)
{
	for (int i = 0; i < g->n && !ev_is_active(&g->retry); i++)
		if (g->m[i]->ac == NULL)
			rconn_connect(g->m[i]);
}

static void
group_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	group_connect(w->data);
}

struct rconn_group *
rconn_group_new(struct ev_loop *loop, const char *addr, const char *name,
    int n, const char *const member_name[], rconn_group_cb *cb, void *arg,
    char *errbuf, size_t errlen)
{
	struct rconn_group *g = calloc(1, sizeof(*g));
	char mname[sizeof(g->name) + 32];

	if (g == NULL || (g->m = calloc((size_t)n, sizeof(*g->m))) == NULL) {
		free(g);
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	g->loop = loop;
	snprintf(g->name, sizeof(g->name), "%s", name);
	g->n = n;
	g->cb = cb;
	g->arg = arg;
	backoff_init(&g->bo, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
	ev_init(&g->retry, group_retry_cb);
	g->retry.data = g;
	for (int i = 0; i < n; i++) {
		snprintf(mname, sizeof(mname), "%s(%s)", name, member_name[i]);
		if ((g->m[i] = rconn_alloc(loop, addr, mname, errbuf,
		    errlen)) == NULL) {
			rconn_group_free(g);
			return NULL;
		}
		g->m[i]->group = g;
		g->m[i]->arg = arg;
	}
	group_connect(g);
	return g;
}

void
rconn_group_free(struct rconn_group *g)
{
	if (g == NULL)
		return;
	ev_timer_stop(g->loop, &g->retry);
	for (int i = 0; i < g->n; i++)
		rconn_free(g->m[i]);
	free(g->m);
	free(g);
}

struct rconn *
rconn_group_member(struct rconn_group *g, int i)
{
	return g->m[i];
}

int
rconn_group_is_up(const struct rconn_group *g)
{
	return g->up;
}

void
rconn_group_down(struct rconn_group *g, const char *why)
{
	group_down(g, g->name, why, NULL);
}

void
rconn_group_ready(struct rconn_group *g)
{
	int down = g->bo.down;
	uint64_t lasted = backoff_ok(&g->bo, loop_ms(g->loop));

	if (down)
		log_info("%s: connected again after %.1fs", g->name,
		    lasted / 1000.0);
}
