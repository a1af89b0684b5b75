/*
 * sclaim.h - take the pending entries of a stream consumer that is gone.
 *
 *   XPENDING key group IDLE t - + page from   -> ids, times delivered
 *   XCLAIM key group to t id... [JUSTID]       -> ours now (atomic: one
 *                                                taker gets each)
 *   page_cb(the XCLAIM reply); again while XPENDING gave a full page
 *   done_cb
 *
 * t is the least idle time of an entry taken: one idle for less was read
 * since (by a consumer of the same name come back, or it was claimed by
 * another taker just now) and is left where it is.  It is either fixed,
 * or the time since the consumer is known dead (dead_since_ms), measured
 * as each page is sent.  XPENDING lists only entries idle that long, so a
 * page never lists one that XCLAIM would leave: the pages end.
 *
 * Finding out that a consumer is gone is the caller's (a heartbeat key,
 * a host key): this takes what it had.  Without one (from NULL), the
 * entries of any consumer idle t at least are taken, by XAUTOCLAIM, a
 * page at a time until its cursor comes back to the start.
 */
#ifndef HIVE_SCLAIM_H
#define HIVE_SCLAIM_H

#include <stdint.h>

#include "rconn.h"

#define SCLAIM_PAGE_MAX  1000
#define SCLAIM_ID_MAX    41      /* "<ms>-<seq>", two 64-bit numbers */

struct sclaim;

/* A page taken: claimed is XCLAIM's reply (entries [id, fields], or ids
 * with JUSTID), lent for the call.  Return 0 to go on, -1 to stop. */
typedef int sclaim_page_cb(struct sclaim *, const redisReply *claimed,
    void *arg);
/* The end, once: err NULL when all was taken, the caller stopped, or the
 * connection went (what is left stays pending: a later pass takes it);
 * else "<command> <key>: <Redis' error>" (NOGROUP: nobody ever read the
 * stream), lent for the call.  The struct sclaim is freed after it. */
typedef void sclaim_done_cb(struct sclaim *, const char *err, void *arg);

struct sclaim_opts {
	const char *key;             /* the stream */
	const char *group;
	const char *from;            /* the consumer that is gone, or NULL */
	const char *to;              /* the consumer that takes its entries */
	unsigned page;               /* entries per XCLAIM (1..SCLAIM_PAGE_MAX) */
	uint64_t min_idle_ms;        /* t, when dead_since_ms is 0 */
	uint64_t dead_since_ms;      /* unix ms: t is the time since */
	int justid;                  /* ids only, the entries stay unread */
	sclaim_page_cb *page_cb;     /* may be NULL */
	sclaim_done_cb *done_cb;     /* may be NULL */
	void *arg;
};

/* Start taking (the options are copied).  0, or -1 (no callback) when
 * Redis is down, an option is out of range, or out of memory. */
int sclaim_start(struct rconn *rc, const struct sclaim_opts *opts);
/* In page_cb: how many times entry id had been delivered before it was
 * taken (XPENDING's count), 1 if XPENDING did not list it (XAUTOCLAIM). */
unsigned sclaim_deliveries(const struct sclaim *, const char *id);
/* The key and consumer being taken from ("" for any), for log lines. */
const char *sclaim_key(const struct sclaim *);
const char *sclaim_from(const struct sclaim *);

#endif
