/*
 * publish.c - what the worker finished goes out: results (each with its
 * task.completed or task.failed event), dead letters and
 * acknowledgements, in one MULTI/EXEC per batch on the cmd connection
 * (redis.c).  A task is XACKed only by the transaction that publishes its
 * result (worker.h), and the newest memory its batch carries goes to the
 * memory key in that same transaction.  A batch whose connection is lost
 * goes back to the out queue and is published again after the reconnect;
 * one that Redis refused (EXECABORT) is tried again a second later.
 */
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
