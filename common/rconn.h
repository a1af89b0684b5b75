/*
 * rconn.h - a Redis connection that comes back by itself.
 *
 * hiredis async on the libev loop.  When the connection fails or is lost,
 * commands in flight get a NULL reply (their owners keep whatever they had
 * not seen acknowledged and try again), state_cb says "down", and a timer
 * reconnects with backoff (100 ms doubling to 5 s, util.h's struct
 * backoff), logged once per outage.  While down, rconn_cmd refuses
 * commands (-1): callers retry on their own schedule, nothing queues up
 * unbounded.  Its socket is close-on-exec.
 *
 * A group (rconn_group_new) is several connections to one address that go
 * down together, for a client whose connections only make sense together
 * (hive-worker: a blocking read holds its connection, so it has three, and
 * one setup spans them).
 */
#ifndef HIVE_RCONN_H
#define HIVE_RCONN_H

#include <ev.h>
#include <hiredis/async.h>
#include <stddef.h>

struct rconn;

/* up: 1 connected (commands may be sent), 0 lost. */
typedef void rconn_state_cb(struct rconn *rc, int up, void *arg);

/*
 * addr: "host:port", "[v6addr]:port", "/path/to.sock" or "unix:/path".
 * name: for log lines ("redis(recorder)").  Connecting starts at once.
 * Returns NULL on a bad address (message in errbuf) or out of memory.
 */
struct rconn *rconn_new(struct ev_loop *loop, const char *addr,
    const char *name, rconn_state_cb *state_cb, void *arg,
    char *errbuf, size_t errlen);
/* Closes the connection: callbacks in flight get a NULL reply. */
void rconn_free(struct rconn *rc);
int rconn_is_up(const struct rconn *rc);
/* The live context, or NULL while down. */
redisAsyncContext *rconn_ctx(struct rconn *rc);

/* Send a command (redisAsyncCommand / redisAsyncCommandArgv): 0, or -1
 * when down (fn is then not called). */
int rconn_cmd(struct rconn *rc, redisCallbackFn *fn, void *priv,
    const char *fmt, ...);
int rconn_argv(struct rconn *rc, redisCallbackFn *fn, void *priv, int argc,
    const char **argv, const size_t *argvlen);
/* ... a command already in Redis' protocol (cmd, len bytes; copied). */
int rconn_formatted(struct rconn *rc, redisCallbackFn *fn, void *priv,
    const char *cmd, size_t len);
/*
 * Build this connection's replies in blocks of its own, reused from one
 * reply to the next, rather than with a malloc per object and string:
 * for a connection that reads many stream entries.  Call it right after
 * rconn_new, before any command.  As with hiredis' own replies, a reply
 * is gone when its callback returns: keep nothing of it.  0, or -1 when
 * out of memory (replies are then built as usual).
 */
int rconn_reply_arena(struct rconn *rc);
/* A callback for replies nothing waits for: an error reply is logged,
 * after priv (a string that outlives the command: who sent it). */
void rconn_log_error(redisAsyncContext *ac, void *reply, void *priv);

/*
 * The value of field name in a flat array of name, value, ... (a stream
 * entry's fields as XREADGROUP, XRANGE and XCLAIM give them, nil for an
 * entry deleted while pending; what XINFO gives of a group or a
 * consumer in RESP2): its reply if it has type (REDIS_REPLY_*), else
 * NULL.  rconn_entry_field asks for a string.
 */
const redisReply *rconn_map_field(const redisReply *fields, const char *name,
    int type);
const redisReply *rconn_entry_field(const redisReply *fields,
    const char *name);

/* The arg of the rconn (or group) whose context ac is; NULL in a callback
 * run with a NULL reply because the connection was closed. */
void *rconn_arg(const redisAsyncContext *ac);
/*
 * Write what is queued now rather than when the loop next sees the socket
 * writable: what a loop turn queued then leaves in one write, before the
 * loop sleeps (libev has not been told of the write watcher yet, so this
 * costs no epoll_ctl either).  Nothing while not connected.
 */
void rconn_flush(struct rconn *rc);

/*
 * ---- a group of connections that go down together ----
 *
 * n connections to addr, named "<name>(<member_name[i]>)" in log lines.
 * When one fails to connect or is lost, or the owner calls
 * rconn_group_down, every member is closed at once (their commands in
 * flight get NULL replies), cb says "down" (if it had said "up"), and
 * after one backoff all are opened again; cb says "up" once every member
 * is connected.  The backoff restarts from its minimum, and the outage
 * ends ("connected again after"), only when the owner calls
 * rconn_group_ready: its setup on the fresh connections worked.  A setup
 * that fails over and over thus backs off as a lost connection does.
 * Members' commands go through rconn_cmd & co on rconn_group_member(g, i);
 * a reply callback finds the owner with rconn_arg.
 */
struct rconn_group;
typedef void rconn_group_cb(struct rconn_group *g, int up, void *arg);

struct rconn_group *rconn_group_new(struct ev_loop *loop, const char *addr,
    const char *name, int n, const char *const member_name[],
    rconn_group_cb *cb, void *arg, char *errbuf, size_t errlen);
void rconn_group_free(struct rconn_group *g);
struct rconn *rconn_group_member(struct rconn_group *g, int i);
int rconn_group_is_up(const struct rconn_group *g);
/* The owner cannot go on (an error reply): close every member now and
 * reconnect after the backoff; why goes in the log line. */
void rconn_group_down(struct rconn_group *g, const char *why);
void rconn_group_ready(struct rconn_group *g);

/* Parse addr into host/port or path: 0 or -1. */
int rconn_parse_addr(const char *addr, char *host, size_t hostlen, int *port,
    int *is_unix);

#endif
