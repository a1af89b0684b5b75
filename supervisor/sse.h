/*
 * sse.h - server-sent event streams on the HTTP API (sse.c).
 *
 * A route flagged API_STREAM answers with sse_open instead of api_reply:
 * the connection stays open and the endpoint queues events on it with
 * sse_send until the client goes, is dropped, or sse_end ends it.
 *
 *   endpoint --sse_send--> per-client buffer (bounded) --MHD reads--> socket
 *
 * Nothing here blocks or grows without bound: each stream has a buffer of
 * at most buf_max bytes, and a client that does not read fast enough for
 * what is queued is dropped (its connection closed) rather than slowing
 * hived or costing memory.  Every stream gets a comment line
 * (": keepalive") every SSE_KEEPALIVE_S, which also finds the clients
 * that went away while nothing was sent to them.
 */
#ifndef HIVE_SSE_H
#define HIVE_SSE_H

#include <stddef.h>

#include "api.h"

/* Route flag: the route answers with an event stream (sse_open): GET
 * only; no idle timeout on the connection; counted against HTTP_SSE_MAX
 * streams at once (past it: 503 unavailable). */
#define API_STREAM 0x10

#define HTTP_SSE_MAX     32      /* streams open at once */
#define SSE_KEEPALIVE_S  15.     /* a comment line at least this often */
#define SSE_FLUSH_S      .01     /* events wait this long for others */

struct sse;
/* The stream ended (client gone, dropped for being slow, hived
 * stopping); called once; the sse is freed right after: drop pointers. */
typedef void sse_closed_fn(void *arg);

/* Answer req with 200 text/event-stream and keep the connection open.
 * buf_max bounds the bytes queued for this client: sse_send past it
 * drops the client.  NULL when it could not (req answered already). */
struct sse *sse_open(struct api_req *, size_t buf_max,
    sse_closed_fn *, void *arg);
/* Queue one event.  id and event may be NULL; data is one JSON text
 * (no newlines in it).  0, or -1 when the client is dropped (its
 * buffer is full, or it is gone): closed_fn runs from the loop later,
 * not inside sse_send. */
int sse_send(struct sse *, const char *id, const char *event,
    const char *data, size_t len);
/* The server ends the stream once what is queued is sent; closed_fn is
 * still called. */
void sse_end(struct sse *);
/* 1 once s was dropped for a full buffer (not for its client leaving):
 * for the caller's counters, until its closed_fn. */
int sse_slow(const struct sse *);
/* A request header (e.g. "Last-Event-ID"), NULL when absent. */
const char *api_header(const struct api_req *, const char *name);

/* ---- between http.c and sse.c (nothing else calls these) ---- */

struct ev_loop;
struct sup_http;
struct sse_hub;
struct MHD_Connection;
struct MHD_Response;

/* sse.c: the streams of one server; sse_hub_free ends them all (their
 * closed_fn called at once). */
struct sse_hub *sse_hub_new(struct ev_loop *, struct sup_http *);
/* Wake every stream with something queued now (hived stops: what is
 * queued goes out with the next MHD_run, not SSE_FLUSH_S later). */
void sse_hub_flush(struct sse_hub *);
void sse_hub_stop(struct sse_hub *);
void sse_hub_free(struct sse_hub *);
unsigned sse_hub_count(const struct sse_hub *);
/* The response that streams s on c (http.c queues it, 200); NULL when
 * out of memory (s is then released). */
struct MHD_Response *sse_response(struct sse *, struct MHD_Connection *);
/* MHD will never stream s (its request ended before the answer went). */
void sse_release(struct sse *);

/* http.c: req is answered by the stream s: its hub, or NULL when req
 * was answered already or its client has gone (req is then finished). */
struct sse_hub *http_stream_take(struct api_req *, struct sse *);
/* MHD must run again soon: a stream was resumed. */
void http_kick(struct sup_http *);

#endif /* HIVE_SSE_H */
