/*
 * scan.h - find the queue streams of an installation: every stream key
 * matching <p>:q:* or <p>:direct:* (SCAN ... TYPE stream, never KEYS, so
 * Redis is not blocked however many keys it holds).
 */
#ifndef HIVE_SCAN_H
#define HIVE_SCAN_H

#include "rconn.h"

typedef void sup_scan_key_cb(const char *key, void *arg);
/* ok: 0 when the scan stopped early (connection lost or an error). */
typedef void sup_scan_done_cb(int ok, void *arg);

/* Calls key_cb once per key found (a key may be reported twice, as SCAN
 * does), then done_cb once.  -1 (no callback) when Redis is down. */
int sup_scan_queues(struct rconn *rc, const char *prefix,
    sup_scan_key_cb *key_cb, sup_scan_done_cb *done_cb, void *arg);

#endif
