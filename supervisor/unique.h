/*
 * unique.h - unique tasks in POST /tasks (unique.c; docs/API.md,
 * docs/PROTOCOL.md Unique tasks).
 *
 * sub_unique_opts reads the body's unique_key and unique_for into t (its
 * key borrows from b): 0, or -1 with err set (a 400).
 * sub_unique_send takes the lock and queues the task's message sb on
 * stream in one Lua script, then answers req: 201 as a plain submission,
 * or 200 {"id": HOLDER, "duplicate": true} with nothing queued.  due
 * (unix ms, 0: now): a task not due yet goes into <p>:delayed (and
 * <p>:scheduled) instead of stream, in the same script, and its lock's
 * safety TTL counts from its due time.
 */
#ifndef HIVE_SUP_UNIQUE_H
#define HIVE_SUP_UNIQUE_H

#include <jansson.h>
#include <msgpack.h>

#include "api.h"
#include "hive_proto.h"

int sub_unique_opts(json_t *b, struct hive_task *t, char *err, size_t len);
void sub_unique_send(struct api_req *req, const struct hive_task *t,
    const char *stream, const char *tp, const msgpack_sbuffer *sb,
    uint64_t due);
/* A duration: whole ms (a number) or text "<n>[ms|s|m|h|d]" (digits
 * alone: ms, as the API's delay): 0, or -1. */
int sub_unique_duration(json_t *v, uint64_t *ms);

#endif
