/*
 * sse.c - event streams (sse.h) on libmicrohttpd's connections.
 *
 * A stream is a response made with MHD_create_response_from_callback and
 * MHD_SIZE_UNKNOWN (chunked): MHD calls sse_read whenever the socket can
 * take more, and sse_read hands it what the stream's buffer holds.  With
 * nothing queued, returning 0 would have MHD call it again at once, for
 * ever (a busy loop under external polling: the connection stays "ready"
 * in MHD's eyes); so sse_read suspends the connection instead and
 * sse_send resumes it when there is something to send.  MHD does not
 * wake its epoll descriptor on a resume: http_kick has the loop run MHD
 * on its next turn (as http.c does for a late answer).
 *
 * Lifetime.  An sse is held by two owners: the endpoint (until its
 * closed_fn has run) and MHD (the response, until sse_free_cb).  It is
 * freed when both have let go.  closed_fn is called once, from the loop
 * (a zero timer), never from inside sse_send or sse_end:
 *
 *   sse_open --> open --(client gone: MHD frees the response)--> notify
 *                  \---(dropped: buffer full)--> shutdown(fd) --> notify
 *                   \--(sse_end: buffer flushed)--> notify
 *
 * A dropped client's socket is shut down so that MHD sees the end at
 * once (it is not waiting on us, but on a client that does not read).
 * Events queued on a suspended stream wait up to SSE_FLUSH_S for others:
 * one resume and one send() then carry them all.  Most of what a client
 * costs hived is that send() (on loopback it also delivers), and events
 * come in bursts (the recorder's batches, a reload's transitions).
 *
 * A suspended connection is not watched by MHD; sse.c watches its socket
 * meanwhile (gone_io), so that a client that leaves a quiet stream is
 * let go at once (its slot counts against HTTP_SSE_MAX).  Bytes from a
 * client that should only listen are left to MHD; the keepalive then
 * finds such a client gone, within SSE_KEEPALIVE_S.
 */
#include "hived.h"
#include "sse.h"

#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "log.h"

struct sse {
	struct sse_hub *hub;
	LIST_ENTRY(sse) entry;      /* hub->open until notified */
	LIST_ENTRY(sse) pend;       /* hub->pending while notify is due */
	struct MHD_Connection *c;   /* while MHD streams it */
	char *buf;                  /* bytes [off, off+len) to send */
	size_t off, len, cap, max;
	sse_closed_fn *fn;
	void *arg;
	int held;                   /* the request or MHD's response has it */
	int suspended;
	int due;                    /* on hub->due: queued, wake at the flush */
	LIST_ENTRY(sse) dentry;
	ev_io gone_io;              /* the socket, while suspended */
	int ending;                 /* sse_end: end once flushed */
	int dropped;                /* gone or too slow: end with an error */
	int slow;                   /* dropped for a full buffer */
	int pending;                /* on hub->pending */
	int notified;               /* closed_fn has run */
};

struct sse_hub {
	struct ev_loop *loop;
	struct sup_http *http;
	LIST_HEAD(, sse) open;
	LIST_HEAD(, sse) pending;
	LIST_HEAD(, sse) due;       /* suspended with something queued */
	unsigned n;                 /* on open */
	ev_timer flush;             /* SSE_FLUSH_S: wake the due ones */
	ev_timer keepalive;
	ev_timer reap;              /* zero timer: closed_fn of pending */
};

static void
sse_free(struct sse *s)
{
	if (s->due)
		LIST_REMOVE(s, dentry);
	if (s->hub != NULL)
		ev_io_stop(s->hub->loop, &s->gone_io);
	free(s->buf);
	free(s);
}

/* closed_fn is due: from the loop, soon. */
static void
sse_schedule(struct sse *s)
{
	struct sse_hub *hub = s->hub;

	if (s->notified || s->pending)
		return;
	s->pending = 1;
	LIST_INSERT_HEAD(&hub->pending, s, pend);
	if (!ev_is_active(&hub->reap)) {
		ev_timer_set(&hub->reap, 0., 0.);
		ev_timer_start(hub->loop, &hub->reap);
	}
}

/* Call closed_fn now; the stream no longer counts. */
static void
sse_notify(struct sse *s)
{
	if (s->pending) {
		LIST_REMOVE(s, pend);
		s->pending = 0;
	}
	if (s->notified)
		return;
	s->notified = 1;
	LIST_REMOVE(s, entry);
	s->hub->n--;
	if (s->hub->n == 0)
		ev_timer_stop(s->hub->loop, &s->hub->keepalive);
	s->fn(s->arg);
	if (!s->held)
		sse_free(s);
}

static void
sse_reap_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sse_hub *hub = w->data;
	struct sse *s;

	while ((s = LIST_FIRST(&hub->pending)) != NULL)
		sse_notify(s);
}

/* MHD must look at s again (it was suspended). */
static void
sse_wake(struct sse *s)
{
	if (s->due) {
		LIST_REMOVE(s, dentry);
		s->due = 0;
	}
	ev_io_stop(s->hub->loop, &s->gone_io);
	if (s->suspended && s->c != NULL) {
		s->suspended = 0;
		MHD_resume_connection(s->c);
		http_kick(s->hub->http);
	}
}

/* The client is dropped: its connection closed as soon as MHD runs. */
static void sse_drop(struct sse *, const char *);

/* Something was queued on s: sent at the next flush (see the top). */
static void
sse_later(struct sse *s)
{
	struct sse_hub *hub = s->hub;

	if (!s->suspended || s->due)
		return;
	s->due = 1;
	LIST_INSERT_HEAD(&hub->due, s, dentry);
	if (!ev_is_active(&hub->flush)) {
		ev_timer_set(&hub->flush, SSE_FLUSH_S, 0.);
		ev_timer_start(hub->loop, &hub->flush);
	}
}

static void
sse_flush_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sse_hub *hub = w->data;
	struct sse *s;

	while ((s = LIST_FIRST(&hub->due)) != NULL)
		sse_wake(s);
}

/* The socket of a suspended stream is readable: the client has gone
 * (EOF, reset), or it sent something, which MHD will see (see the top). */
static void
sse_gone_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sse *s = w->data;
	char b;
	ssize_t n = recv(w->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	ev_io_stop(loop, w);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		sse_drop(s, NULL);
}

static void
sse_drop(struct sse *s, const char *why)
{
	const union MHD_ConnectionInfo *ci;

	if (s->dropped)
		return;
	s->dropped = 1;
	free(s->buf);
	s->buf = NULL;
	s->off = s->len = s->cap = 0;
	if (why != NULL)
		log_info("http: event stream client dropped (%s)", why);
	if (s->c != NULL) {
		if (s->suspended)
			sse_wake(s);
		else if ((ci = MHD_get_connection_info(s->c,
		    MHD_CONNECTION_INFO_CONNECTION_FD)) != NULL)
			(void)shutdown(ci->connect_fd, SHUT_RDWR);
		http_kick(s->hub->http);
	}
	sse_schedule(s);
}

/* Append n bytes to s's buffer; -1 when it would pass s->max. */
static int
sse_append(struct sse *s, const char *p, size_t n)
{
	size_t cap;
	char *b;

	if (n > s->max - s->len)
		return -1;
	if (s->off > 0 && s->off + s->len + n > s->cap) {
		memmove(s->buf, s->buf + s->off, s->len);
		s->off = 0;
	}
	if (s->len + n > s->cap) {
		cap = s->cap > 0 ? s->cap : 4096;
		while (cap < s->len + n)
			cap *= 2;
		if (cap > s->max)
			cap = s->max;
		if ((b = realloc(s->buf, cap)) == NULL)
			return -1;
		s->buf = b;
		s->cap = cap;
	}
	memcpy(s->buf + s->off + s->len, p, n);
	s->len += n;
	return 0;
}

/* Queue raw text: the stream's lines, whole or not at all. */
static int
sse_queue(struct sse *s, const char *const parts[], const size_t lens[],
    unsigned nparts)
{
	size_t total = 0;

	if (s->notified || s->dropped || s->ending)
		return -1;
	for (unsigned i = 0; i < nparts; i++)
		total += lens[i];
	if (total > s->max - s->len) {
		s->slow = 1;
		sse_drop(s, "its buffer is full: it reads too slowly");
		return -1;
	}
	for (unsigned i = 0; i < nparts; i++)
		if (sse_append(s, parts[i], lens[i]) == -1) {
			sse_drop(s, "out of memory");
			return -1;
		}
	sse_later(s);
	return 0;
}

int
sse_send(struct sse *s, const char *id, const char *event,
    const char *data, size_t len)
{
	const char *parts[9];
	size_t lens[9];
	unsigned n = 0;

	if (memchr(data, '\n', len) != NULL || memchr(data, '\r', len) != NULL) {
		log_warnx("http: an event's data holds a line break (not sent)");
		return s->dropped || s->notified ? -1 : 0;
	}
#define PART(str, l) do { parts[n] = (str); lens[n++] = (l); } while (0)
	if (id != NULL) {
		PART("id: ", 4);
		PART(id, strcspn(id, "\r\n"));
		PART("\n", 1);
	}
	if (event != NULL) {
		PART("event: ", 7);
		PART(event, strcspn(event, "\r\n"));
		PART("\n", 1);
	}
	PART("data: ", 6);
	PART(data, len);
	PART("\n\n", 2);
#undef PART
	return sse_queue(s, parts, lens, n);
}

int
sse_slow(const struct sse *s)
{
	return s->slow;
}

void
sse_end(struct sse *s)
{
	if (s->notified || s->dropped || s->ending)
		return;
	s->ending = 1;
	if (s->c == NULL)
		return;
	/* A client that stops reading now is closed by the usual timeout. */
	MHD_set_connection_option(s->c, MHD_CONNECTION_OPTION_TIMEOUT,
	    (unsigned)10);
	sse_wake(s);
}

/*
 * MHD wants up to max bytes of the body.  Nothing queued: suspend (see
 * the top of the file) and return 0; MHD calls again once resumed.
 */
static ssize_t
sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct sse *s = cls;
	const union MHD_ConnectionInfo *ci;
	size_t n;

	if (s->dropped || s->notified)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	if (s->len > 0) {
		n = s->len < max ? s->len : max;
		memcpy(out, s->buf + s->off, n);
		s->off += n;
		s->len -= n;
		if (s->len == 0)
			s->off = 0;
		return (ssize_t)n;
	}
	if (s->ending)
		return MHD_CONTENT_READER_END_OF_STREAM;
	s->suspended = 1;
	MHD_suspend_connection(s->c);
	if ((ci = MHD_get_connection_info(s->c,
	    MHD_CONNECTION_INFO_CONNECTION_FD)) != NULL) {
		ev_io_set(&s->gone_io, ci->connect_fd, EV_READ);
		ev_io_start(s->hub->loop, &s->gone_io);
	}
	return 0;
}

/* MHD lets go of the response: the connection is done with it. */
static void
sse_free_cb(void *cls)
{
	sse_release(cls);
}

void
sse_release(struct sse *s)
{
	ev_io_stop(s->hub->loop, &s->gone_io);
	s->held = 0;
	s->c = NULL;
	s->suspended = 0;
	if (s->notified)
		sse_free(s);
	else
		sse_schedule(s);
}

struct MHD_Response *
sse_response(struct sse *s, struct MHD_Connection *c)
{
	struct MHD_Response *r;

	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
	    sse_read, s, sse_free_cb);
	if (r == NULL) {
		sse_release(s);
		return NULL;
	}
	s->held = 1;
	s->c = c;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
	    "text/event-stream");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	/* A proxy in front (nginx) must not hold events back. */
	MHD_add_response_header(r, "X-Accel-Buffering", "no");
	/* A stream is idle between events by design: no timeout (the
	 * keepalive finds the clients that left). */
	MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
	    (unsigned)(s->ending ? 10 : 0));
	/* Dropped before it started: sse_read ends it at once. */
	return r;
}

struct sse *
sse_open(struct api_req *req, size_t buf_max, sse_closed_fn *fn, void *arg)
{
	static const char hello[] = ": hive event stream\n\n";
	const char *parts[1] = { hello };
	size_t lens[1] = { sizeof(hello) - 1 };
	struct sse *s = calloc(1, sizeof(*s));
	struct sse_hub *hub;

	if (s == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return NULL;
	}
	if ((hub = http_stream_take(req, s)) == NULL) {
		free(s);
		return NULL;
	}
	s->hub = hub;
	ev_init(&s->gone_io, sse_gone_cb);
	s->gone_io.data = s;
	s->held = 1;                /* by the request, then by MHD */
	s->max = buf_max > sizeof(hello) ? buf_max : sizeof(hello);
	s->fn = fn;
	s->arg = arg;
	LIST_INSERT_HEAD(&hub->open, s, entry);
	if (hub->n++ == 0) {
		ev_timer_set(&hub->keepalive, SSE_KEEPALIVE_S, SSE_KEEPALIVE_S);
		ev_timer_start(hub->loop, &hub->keepalive);
	}
	/* Something at once, so that the client knows the stream is up
	 * before the first event. */
	(void)sse_queue(s, parts, lens, 1);
	return s;
}

/* Every SSE_KEEPALIVE_S: a comment on every stream.  A stream whose
 * client has gone fails its write and ends. */
static void
sse_keepalive_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	static const char ka[] = ": keepalive\n\n";
	const char *parts[1] = { ka };
	size_t lens[1] = { sizeof(ka) - 1 };
	struct sse_hub *hub = w->data;
	struct sse *s, *next;

	for (s = LIST_FIRST(&hub->open); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		if (!s->dropped && !s->ending)
			(void)sse_queue(s, parts, lens, 1);
	}
}

struct sse_hub *
sse_hub_new(struct ev_loop *loop, struct sup_http *http)
{
	struct sse_hub *hub = calloc(1, sizeof(*hub));

	if (hub == NULL)
		return NULL;
	hub->loop = loop;
	hub->http = http;
	LIST_INIT(&hub->open);
	LIST_INIT(&hub->pending);
	LIST_INIT(&hub->due);
	ev_init(&hub->flush, sse_flush_cb);
	hub->flush.data = hub;
	ev_init(&hub->keepalive, sse_keepalive_cb);
	hub->keepalive.data = hub;
	ev_init(&hub->reap, sse_reap_cb);
	hub->reap.data = hub;
	return hub;
}

void
sse_hub_flush(struct sse_hub *hub)
{
	struct sse *s;

	while ((s = LIST_FIRST(&hub->due)) != NULL)
		sse_wake(s);
	ev_timer_stop(hub->loop, &hub->flush);
}

unsigned
sse_hub_count(const struct sse_hub *hub)
{
	return hub->n;
}

/*
 * The server stops: every stream ends now, its closed_fn called here (the
 * loop may not turn again), its connection resumed so that MHD can close
 * it.  MHD frees the responses after this, when it stops.
 */
void
sse_hub_stop(struct sse_hub *hub)
{
	struct sse *s;

	while ((s = LIST_FIRST(&hub->open)) != NULL) {
		if (!s->dropped) {
			s->dropped = 1;
			free(s->buf);
			s->buf = NULL;
			s->off = s->len = s->cap = 0;
		}
		ev_io_stop(hub->loop, &s->gone_io);
		if (s->suspended && s->c != NULL) {
			s->suspended = 0;
			MHD_resume_connection(s->c);
		}
		sse_notify(s);
	}
	ev_timer_stop(hub->loop, &hub->keepalive);
	ev_timer_stop(hub->loop, &hub->reap);
	ev_timer_stop(hub->loop, &hub->flush);
}

/* After MHD has stopped (it freed every response it held). */
void
sse_hub_free(struct sse_hub *hub)
{
	if (hub == NULL)
		return;
	sse_hub_stop(hub);
	free(hub);
}
