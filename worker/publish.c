/*
 * publish.c - what the worker finished goes out: results (each with its
 * task.completed or task.failed event), dead letters and
 * acknowledgements, in one MULTI/EXEC per batch on the cmd connection
 * (redis.c).  A task is XACKed only by the transaction that publishes its
 * result (worker.h), and the newest memory its batch carries goes to the
 * memory key in that same transaction.  A batch whose connection is lost
 * goes back to the out queue and is published again after the reconnect;
 * one that Redis refused (EXECABORT) is tried again a second later.
 *
 * A task's output (progress and chunks, docs/HANDLERS.md) goes to its
 * own stream, <prefix>:output:<id>, on the same cmd connection, so in
 * the order it is sent:
 *
 *   running   at most one write per task per WRK_TASKOUT_INTERVAL_MS:
 *             the chunks since the last write joined into one "chunk"
 *             entry, then the latest "progress" entry, then PEXPIRE
 *   finished  what is still held, then the "end" entry and PEXPIRE, in
 *             the MULTI/EXEC of its result, before the result's XADD:
 *             whoever reads the result finds every chunk and the end
 *             already there.
 *
 * A task that wrote nothing costs nothing here (t->taskout is NULL).
 * Output is best effort where the result is not: a write lost with the
 * connection is not sent again (only the end is, with its result).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "rconn.h"
#include "worker.h"

/* Per batch, so that one MULTI/EXEC stays a reasonable size. */
#define WRK_BATCH_TASKS  512
#define WRK_BATCH_BYTES  (8u << 20)

static void
batch_release(struct wrk *w, struct wrk_batch *b)
{
	struct wrk_task *t;

	TAILQ_FOREACH(t, &w->outq, q)
		if (t->batch == b)
			t->batch = NULL;
	w->redis.batches--;
	free(b);
}

static void
exec_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wrk_batch *b = priv;
	struct wrk *w = b->w;
	redisReply *r = reply;
	struct wrk_task *t, *next;
	json_t *mem = NULL;
	uint64_t mem_v = 0;
	int n = 0;

	if (r == NULL) {
		/* Connection gone: publish them again after the reconnect. */
		batch_release(w, b);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		/* EXECABORT (e.g. OOM while queueing) or nil: nothing was
		 * applied; try again a little later. */
		log_warnx("agent=%s redis MULTI/EXEC of %d results: %s",
		    w->agent_inst, b->n, r->type == REDIS_REPLY_ERROR ? r->str :
		    "aborted");
		batch_release(w, b);
		w->redis.retry_due = wrk_now() + 1000;
		wrk_schedule(w);
		return;
	}
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_ERROR)
			/* e.g. a reply_to key of another type: the rest of
			 * the transaction was applied all the same. */
			log_warnx("agent=%s redis in MULTI/EXEC: %s",
			    w->agent_inst, r->element[i]->str);
	for (t = TAILQ_FIRST(&w->outq); t != NULL && n < b->n; t = next) {
		next = TAILQ_NEXT(t, q);
		if (t->batch != b)
			continue;
		TAILQ_REMOVE(&w->outq, t, q);
		w->noutq--;
		n++;
		if (t->memory != NULL && t->memory_v > mem_v) {
			json_decref(mem);
			mem = json_incref(t->memory);
			mem_v = t->memory_v;
		}
		wrk_task_acked(w, t);
	}
	w->redis.batches--;
	free(b);
	/* Only the newest memory matters to hived; it is what the last
	 * acknowledged result carried. */
	if (mem != NULL && mem_v > w->memory_sent_v)
		wrk_link_memory(w, mem, mem_v);
	json_decref(mem);
	wrk_state_changed(w);
}

/*
 * The newest memory a batch's results carry goes to the memory key in the
 * same transaction: once a task is acknowledged, the memory after it is in
 * Redis, whatever happens to this worker next.
 */
static void
batch_memory(struct wrk *w, struct wrk_batch *b)
{
	struct wrk_task *t, *newest = NULL;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_zone z;
	msgpack_object o;
	char v[24];

	TAILQ_FOREACH(t, &w->outq, q)
		if (t->batch == b && t->memory != NULL &&
		    (newest == NULL || t->memory_v > newest->memory_v))
			newest = t;
	if (newest == NULL)
		return;
	msgpack_zone_init(&z, 2048);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	/* It was converted once already for the result: cannot fail. */
	if (proto_json_to_obj(newest->memory, &z, &o, &err) == 0 &&
	    msgpack_pack_object(&pk, o) == 0) {
		snprintf(v, sizeof(v), "%llu",
		    (unsigned long long)newest->memory_v);
		rconn_cmd(wrk_redis_conn(w, WRK_CONN_CMD), NULL, NULL,
		    "HSET %s v %s m %b", w->memory_key, v, sb.data, sb.size);
	}
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
}

/*
 * Close a batch: one XACK per stream for all its entries (fewer commands
 * than one per task), the memory key, then EXEC.
 */
static void
batch_send(struct wrk *w, struct wrk_batch *b)
{
	struct rconn *cmd = wrk_redis_conn(w, WRK_CONN_CMD);
	struct wrk_task *t;
	const char **argv;
	int argc;

	if ((argv = calloc((size_t)b->n + 3, sizeof(*argv))) == NULL)
		fatal("agent=%s acknowledging a batch of %d results",
		    w->agent_inst, b->n);
	for (int k = 0; k < w->nkeys; k++) {
		argc = 0;
		argv[argc++] = "XACK";
		argv[argc++] = w->keys[k].name;
		argv[argc++] = w->keys[k].group;
		TAILQ_FOREACH(t, &w->outq, q)
			if (t->batch == b && t->key == k)
				argv[argc++] = t->entry;
		if (argc > 3)
			rconn_argv(cmd, NULL, NULL, argc, argv, NULL);
	}
	free(argv);
	batch_memory(w, b);
	rconn_cmd(cmd, exec_reply, b, "EXEC");
	w->redis.batches++;
}

struct wrk_taskout {
	char key[HIVE_KEY_MAX];      /* <prefix>:output:<task id> */
	struct hbuf chunks;          /* chunk text since the last write */
	char *progress;              /* the latest progress not written, or
	                              * NULL */
	uint64_t due;                /* write then (monotonic ms), 0 = nothing
	                              * held */
	uint64_t last;               /* the last write */
	uint64_t dropped;            /* chunk bytes dropped: over the cap */
};

void
wrk_taskout_free(struct wrk_taskout *o)
{
	if (o == NULL)
		return;
	hbuf_free(&o->chunks);
	free(o->progress);
	free(o);
}

void
wrk_taskout_add(struct wrk *w, struct wrk_task *t, json_t *progress,
    json_t *chunk)
{
	struct wrk_taskout *o = t->taskout;
	uint64_t now = wrk_now();
	size_t n;

	if (progress == NULL && chunk == NULL)
		return;
	if (o == NULL) {
		if ((o = calloc(1, sizeof(*o))) == NULL)
			fatal("agent=%s task=%s keeping its output",
			    w->agent_inst, t->id);
		/* The id is a valid one: the handler named a task in flight. */
		if (proto_key_output(o->key, sizeof(o->key), w->o.prefix,
		    t->id) < 0) {
			free(o);
			return;
		}
		t->taskout = o;
	}
	if (chunk != NULL && (n = json_string_length(chunk)) > 0) {
		if (hbuf_avail(&o->chunks) + n > WRK_TASKOUT_HELD_MAX) {
			if (o->dropped == 0)
				log_warnx("agent=%s task=%s output over %u bytes "
				    "in %u ms: chunks dropped", w->agent_inst,
				    t->id, WRK_TASKOUT_HELD_MAX,
				    WRK_TASKOUT_INTERVAL_MS);
			o->dropped += n;
		} else if (hbuf_add(&o->chunks, json_string_value(chunk),
		    n) == -1)
			fatal("agent=%s task=%s keeping its output",
			    w->agent_inst, t->id);
	}
	if (progress != NULL) {
		free(o->progress);
		if ((o->progress = json_dumps(progress, JSON_COMPACT)) == NULL)
			fatal("agent=%s task=%s keeping its progress",
			    w->agent_inst, t->id);
	}
	if (o->due == 0)
		o->due = o->last + WRK_TASKOUT_INTERVAL_MS > now ?
		    o->last + WRK_TASKOUT_INTERVAL_MS : now;
	if (w->taskout_due == 0 || o->due < w->taskout_due) {
		w->taskout_due = o->due;
		/* Due now: this turn's wrk_publish writes it. */
		if (o->due > now)
			wrk_schedule(w);
	}
}

/* The cron need not wake for output while Redis is down: the turn that
 * finds it up again writes what is held. */
uint64_t
wrk_taskout_next_due(const struct wrk *w)
{
	return w->redis.state == WRK_REDIS_UP ? w->taskout_due : 0;
}

static void
output_xadd(struct rconn *cmd, const char *key, const char *t,
    const char *d, size_t dlen)
{
	rconn_cmd(cmd, NULL, NULL, "XADD %s MAXLEN ~ %d * t %s d %b", key,
	    WRK_TASKOUT_MAXLEN, t, d, dlen);
}

/* What o holds goes out: one chunk entry, one progress entry. */
static void
output_write(struct wrk *w, struct rconn *cmd, struct wrk_taskout *o)
{
	json_t *s;
	char *text;

	if (hbuf_avail(&o->chunks) > 0) {
		/* Whole JSON strings joined: valid UTF-8, may hold NULs. */
		s = json_stringn(hbuf_data(&o->chunks), hbuf_avail(&o->chunks));
		text = s != NULL ? json_dumps(s, JSON_COMPACT |
		    JSON_ENCODE_ANY) : NULL;
		if (text == NULL)
			fatal("agent=%s writing a task's output", w->agent_inst);
		output_xadd(cmd, o->key, "chunk", text, strlen(text));
		free(text);
		json_decref(s);
		hbuf_reset(&o->chunks);
	}
	if (o->progress != NULL) {
		output_xadd(cmd, o->key, "progress", o->progress,
		    strlen(o->progress));
		free(o->progress);
		o->progress = NULL;
	}
	o->due = 0;
}

static void
output_expire(struct wrk *w, struct rconn *cmd, struct wrk_taskout *o)
{
	rconn_cmd(cmd, NULL, NULL, "PEXPIRE %s %u", o->key, w->o.output_ttl_ms);
}

/* Running tasks whose output is due. */
static void
output_flush(struct wrk *w)
{
	struct rconn *cmd;
	struct wrk_task *t;
	struct wrk_taskout *o;
	uint64_t now, next = 0;

	if (w->taskout_due == 0 || w->redis.state != WRK_REDIS_UP ||
	    w->taskout_due > (now = wrk_now()))
		return;
	cmd = wrk_redis_conn(w, WRK_CONN_CMD);
	/* A task held back on the backlog (its handler died) keeps what it
	 * wrote, until it runs again or ends. */
	TAILQ_FOREACH(t, &w->running, q) {
		if ((o = t->taskout) == NULL || o->due == 0)
			continue;
		if (o->due > now) {
			if (next == 0 || o->due < next)
				next = o->due;
			continue;
		}
		output_write(w, cmd, o);
		output_expire(w, cmd, o);
		o->last = now;
	}
	w->taskout_due = next;
	if (next != 0)
		wrk_schedule(w);         /* the cron wakes for the next one */
}

/* In a batch, before t's result: what it still held, then its end. */
static void
output_end(struct wrk *w, struct rconn *cmd, struct wrk_task *t)
{
	struct wrk_taskout *o = t->taskout;
	char d[160];
	int n;

	output_write(w, cmd, o);
	if (t->out_kind == WRK_OUT_RESULT && t->code == HIVE_CODE_NONE)
		n = snprintf(d, sizeof(d), "{\"status\":\"completed\"");
	else
		n = snprintf(d, sizeof(d), "{\"status\":\"failed\","
		    "\"code\":\"%s\"", proto_code_name(t->code));
	if (o->dropped > 0)
		n += snprintf(d + n, sizeof(d) - (size_t)n, ",\"dropped\":%llu",
		    (unsigned long long)o->dropped);
	n += snprintf(d + n, sizeof(d) - (size_t)n, "}");
	output_xadd(cmd, o->key, "end", d, (size_t)n);
	output_expire(w, cmd, o);
}

void
wrk_publish(struct wrk *w)
{
	struct rconn *cmd;
	struct wrk_batch *b = NULL;
	struct wrk_task *t;
	size_t bytes = 0;
	const char *argv[5];
	size_t argvlen[5];
	char events[HIVE_KEY_MAX];

	output_flush(w);
	if (w->redis.state != WRK_REDIS_UP || w->redis.retry_due || w->noutq == 0)
		return;
	cmd = wrk_redis_conn(w, WRK_CONN_CMD);
	if (proto_key_named(events, sizeof(events), w->o.prefix, "events") < 0)
		events[0] = '\0';       /* cannot be: the prefix is checked */
	TAILQ_FOREACH(t, &w->outq, q) {
		if (t->batch != NULL)
			continue;
		if (b == NULL) {
			if ((b = calloc(1, sizeof(*b))) == NULL)
				fatal("agent=%s publishing results",
				    w->agent_inst);
			b->w = w;
			rconn_cmd(cmd, NULL, NULL, "MULTI");
		}
		if (t->taskout != NULL && t->out_kind != WRK_OUT_ACK)
			output_end(w, cmd, t);
		if (t->out_kind != WRK_OUT_ACK) {
			argv[0] = "XADD";
			argv[1] = t->out_kind == WRK_OUT_DEAD ? w->dead_key :
			    w->results_key;
			argv[2] = "*";
			argv[3] = "m";
			argv[4] = t->out.data;
			for (int i = 0; i < 4; i++)
				argvlen[i] = strlen(argv[i]);
			argvlen[4] = t->out.size - t->evlen;
			rconn_argv(cmd, NULL, NULL, 5, argv, argvlen);
			if (t->out_kind == WRK_OUT_RESULT && t->reply_to) {
				argv[1] = t->reply_to;
				argvlen[1] = strlen(t->reply_to);
				rconn_argv(cmd, NULL, NULL, 5, argv, argvlen);
			}
			/* Its task.completed or task.failed, after it. */
			if (t->evlen > 0 && events[0] != '\0') {
				argv[1] = events;
				argvlen[1] = strlen(events);
				argv[4] = t->out.data + argvlen[4];
				argvlen[4] = t->evlen;
				rconn_argv(cmd, NULL, NULL, 5, argv, argvlen);
			}
		}
		t->batch = b;
		b->n++;
		bytes += t->out.size;
		if (b->n >= WRK_BATCH_TASKS || bytes >= WRK_BATCH_BYTES) {
			batch_send(w, b);
			b = NULL;
			bytes = 0;
		}
	}
	if (b != NULL)
		batch_send(w, b);
}
