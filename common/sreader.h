/*
 * sreader.h - reading streams in a consumer group: our pending entries
 * first, then new ones; the group made again when Redis lost it.
 *
 *   XGROUP CREATE key group 0|$ [MKSTREAM]    before the first read on a
 *                                             connection (BUSYGROUP: there)
 *   XREADGROUP GROUP group consumer COUNT n [BLOCK ms] STREAMS k.. id..
 *       id "0": the entries delivered to us and not acknowledged (after a
 *               restart, a lost connection, or a claim: common/sclaim);
 *               a page of them after the last id of the page before
 *       id ">": new entries; a read of pending entries that gives none
 *               ends the owner's pending phase
 *   EVAL <the same, key by key, COUNT n over them all> k.. group consumer
 *        n id      the keys in priority order (sreader_read.in_order)
 *   -NOGROUP: a stream or its group is gone (FLUSHALL, DEL, a failover
 *             to a replica that had not seen it): create it again, and
 *             read pending entries first (there are none, but the owner
 *             may have read some it must not wait for)
 *
 * The owner keeps whether it reads pending entries (its loop knows when
 * that may change); these are the commands and the reply's shape.
 */
#ifndef HIVE_SREADER_H
#define HIVE_SREADER_H

#include <stddef.h>

#include "rconn.h"

struct sreader_read {
	const char *group;
	const char *consumer;
	size_t count;                /* COUNT, per stream (in_order: in all) */
	unsigned block_ms;           /* BLOCK; 0: does not block */
	int pending;                 /* id 0 (ours, pending), else ">" */
	const char *after;           /* pending: after this id, not from 0
	                              * (the next page); NULL: from 0 */
	/*
	 * The keys in priority order, COUNT being the room over them all: a
	 * key is read only if those before it gave fewer than count, so a
	 * lower one is read only when every higher one is empty at that
	 * instant.  One round trip however many keys: the reads run in one
	 * EVAL (XREADGROUP without BLOCK may run in a script), hence never
	 * with block_ms.  The reply has XREADGROUP's shape, but for an
	 * empty array rather than nil when nothing was read.
	 */
	int in_order;
	int nkeys;
	const char *const *keys;
};

/* Send the XREADGROUP: 0, or -1 (fn not called) when Redis is down, out
 * of memory, or the read is refused (no keys; in_order with block_ms). */
int sreader_send(struct rconn *rc, const struct sreader_read *r,
    redisCallbackFn *fn, void *priv);
/* XGROUP CREATE key group 0 [MKSTREAM]: from the start, so what was
 * written before the group existed is read too.  Its error is logged
 * after who ("recorder"), but for BUSYGROUP (the usual answer) and, at
 * debug, a missing stream without mkstream (the next read meets NOGROUP).
 * 0, or -1 when Redis is down. */
int sreader_group(struct rconn *rc, const char *key, const char *group,
    int mkstream, const char *who);
/* The same for an owner that takes the reply itself (fn, with
 * sreader_group_failed), from start: "0", the whole stream, or "$", what
 * is added from now on. */
int sreader_group_send(struct rconn *rc, const char *key, const char *group,
    const char *start, int mkstream, redisCallbackFn *fn, void *priv);
/* Did XGROUP CREATE fail (an error other than BUSYGROUP: the group is
 * there already)? */
int sreader_group_failed(const redisReply *reply);
/* Is this reply an error (NOGROUP or another)?  The owner makes its
 * groups again and reads its pending entries first. */
int sreader_failed(const redisReply *reply);
/* The i-th stream of a read's reply, [key, [[id, fields], ...]]: its
 * entries (an array), and its key in *key; NULL when the reply has no
 * such stream or it is malformed.  A nil reply (BLOCK ran out) has none. */
const redisReply *sreader_stream(const redisReply *reply, size_t i,
    const char **key);
/* Of an entry of those: its id, NULL when malformed.  Its fields are
 * entry->element[1] (nil for an entry deleted while pending). */
const char *sreader_entry_id(const redisReply *entry);

#endif
