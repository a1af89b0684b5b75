/*
 * sse.h - hivectl's client of hived's event streams (text/event-stream,
 * docs/API.md "Event streams"): GET /events, GET /tasks/ID/output.
 *
 * The stream is read with libcurl and parsed as it comes: each event
 * (its "id:", "event:" and "data:" lines up to a blank line; comment
 * lines such as ": keepalive" skipped) is handed to the caller's
 * function at once.  It blocks until the function says stop, the server
 * ends the stream, no byte came for CTL_SSE_IDLE_MS (a keepalive comes
 * every 15 s), or SIGINT/SIGTERM (Ctrl-C): then it returns CTL_OK.
 */
#ifndef HIVE_CTL_SSE_H
#define HIVE_CTL_SSE_H

struct ctl;

/* Nothing at all, keepalives included, for this long: hived is gone. */
#define CTL_SSE_IDLE_MS 45000

/* One event from a stream; return non-zero to stop reading.  id and
 * event are "" when the event had none; data is its data lines joined
 * by '\n'.  All are borrowed for the call. */
typedef int ctl_sse_fn(const char *id, const char *event, const char *data,
    void *arg);

/*
 * GET path as an event stream until fn says stop or the server ends it;
 * last_id may be NULL (else sent as Last-Event-ID).  Returns hivectl's
 * exit code (0 ok): an answer that is not 200 is said like any failed
 * request (ctl_http_fail), no connection is CTL_UNREACHABLE.
 */
int ctl_sse(struct ctl *, const char *path, const char *last_id,
    ctl_sse_fn *fn, void *arg);

/*
 * The parser alone, for the tests: feed bytes as they come; each whole
 * event goes to fn.  ctl_sse_feed returns 1 once fn asked to stop (the
 * rest is not parsed), 0 otherwise, -1 when out of memory or an event
 * grows past CTL_SSE_EVENT_MAX bytes.
 */
#define CTL_SSE_EVENT_MAX (16u << 20)
struct ctl_sse_parser {
	char *line;                   /* the line being read */
	size_t len, cap;
	char *data;                   /* data lines of the event so far */
	size_t dlen, dcap;
	int have_data;
	char id[256], event[64];
	int cr;                       /* the last byte was '\r' */
	ctl_sse_fn *fn;
	void *arg;
};

void ctl_sse_init(struct ctl_sse_parser *, ctl_sse_fn *, void *arg);
int ctl_sse_feed(struct ctl_sse_parser *, const char *p, size_t n);
void ctl_sse_free(struct ctl_sse_parser *);

#endif
