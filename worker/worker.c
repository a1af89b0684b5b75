/*
 * worker.c - hive-worker: main, command line, the loop, signals, the one
 * housekeeping timer, drain and exit.  docs/WORKER-CONTRACT.md is the
 * command line and the frames; worker.h is the map of the program.
 *
 * Everything runs on libev's default loop (it reaps children): hiredis
 * through its libev adapter, handler pipes with ev_io, handler exits with
 * ev_child, signals with ev_signal.  Callbacks only change state; once per
 * loop turn, before the loop sleeps, one ev_prepare does the work that
 * state calls for (dispatch to the handler, pull, write to the handler,
 * publish), so that whatever happened in one turn goes out in one write
 * and one MULTI/EXEC.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

static bool state_dirty;

uint64_t
wrk_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void __attribute__((noreturn))
usage(const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		fprintf(stderr, "hive-worker: ");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fprintf(stderr, "\n");
	}
	fprintf(stderr,
	    "usage: hive-worker --agent NAME [--instance N] [--mode stream|exec]\n"
	    "           [--capabilities a,b] [--concurrency N]\n"
	    "           [--redis HOST:PORT|/path/redis.sock] [--prefix P] [--host H]\n"
	    "           [--fd FD] [--task-timeout MS] [--max-attempts N]\n"
	    "           [--heartbeat-ms MS] [-v] -- HANDLER [ARG...]\n");
	exit(2);
}

static unsigned
num_arg(const char *opt, const char *s, unsigned long min, unsigned long max)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end != '\0' || s[0] == '-' || v < min ||
	    v > max)
		usage("--%s %s: a number from %lu to %lu is expected", opt, s,
		    min, max);
	return (unsigned)v;
}

static void
parse_args(struct wrk_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "agent", required_argument, NULL, 'a' },
		{ "instance", required_argument, NULL, 'i' },
		{ "mode", required_argument, NULL, 'm' },
		{ "capabilities", required_argument, NULL, 'c' },
		{ "concurrency", required_argument, NULL, 'n' },
		{ "redis", required_argument, NULL, 'r' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'H' },
		{ "fd", required_argument, NULL, 'f' },
		{ "task-timeout", required_argument, NULL, 't' },
		{ "max-attempts", required_argument, NULL, 'x' },
		{ "heartbeat-ms", required_argument, NULL, 'b' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *caps = NULL, *tok, *save;
	int ch;

	memset(o, 0, sizeof(*o));
	o->instance = 1;
	o->mode = WRK_MODE_STREAM;
	o->concurrency = 1;
	snprintf(o->redis, sizeof(o->redis), "127.0.0.1:6379");
	snprintf(o->prefix, sizeof(o->prefix), "hive");
	o->fd = -1;
	o->max_attempts = 3;
	o->heartbeat_ms = 1000;
	if (gethostname(o->host, sizeof(o->host)) == -1)
		snprintf(o->host, sizeof(o->host), "localhost");
	o->host[sizeof(o->host) - 1] = '\0';

	/* '+': stop at the first non-option, the handler's own flags are
	 * not ours. */
	while ((ch = getopt_long(argc, argv, "+vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (proto_valid_name(optarg, strlen(optarg)) != 0)
				usage("--agent %s: not a valid agent name", optarg);
			snprintf(o->agent, sizeof(o->agent), "%s", optarg);
			break;
		case 'i':
			o->instance = num_arg("instance", optarg, 1,
			    HIVE_INSTANCE_MAX);
			break;
		case 'm':
			if (strcmp(optarg, "stream") == 0)
				o->mode = WRK_MODE_STREAM;
			else if (strcmp(optarg, "exec") == 0)
				o->mode = WRK_MODE_EXEC;
			else
				usage("--mode %s: stream or exec", optarg);
			break;
		case 'c':
			caps = optarg;
			break;
		case 'n':
			o->concurrency = num_arg("concurrency", optarg, 1,
			    WRK_CONCURRENCY_MAX);
			break;
		case 'r':
			if (strlen(optarg) >= sizeof(o->redis) || !*optarg)
				usage("--redis %s: too long", optarg);
			snprintf(o->redis, sizeof(o->redis), "%s", optarg);
			break;
		case 'p':
			if (strlen(optarg) >= sizeof(o->prefix) || !*optarg)
				usage("--prefix %s: 1 to %d bytes", optarg,
				    HIVE_NAME_MAX);
			snprintf(o->prefix, sizeof(o->prefix), "%s", optarg);
			break;
		case 'H':
			if (strlen(optarg) >= sizeof(o->host) || !*optarg)
				usage("--host %s: 1 to %d bytes", optarg,
				    HIVE_HOST_MAX);
			snprintf(o->host, sizeof(o->host), "%s", optarg);
			break;
		case 'f':
			o->fd = (int)num_arg("fd", optarg, 0, INT_MAX);
			break;
		case 't':
			o->task_timeout_ms = num_arg("task-timeout", optarg, 0,
			    HIVE_TIMEOUT_MAX);
			break;
		case 'x':
			o->max_attempts = num_arg("max-attempts", optarg, 1,
			    HIVE_ATTEMPTS_MAX);
			break;
		case 'b':
			o->heartbeat_ms = num_arg("heartbeat-ms", optarg, 10,
			    3600 * 1000);
			break;
		case 'v':
			o->verbose++;
			break;
		case 'h':
			usage(NULL);
		default:
			usage(NULL);
		}
	}
	if (o->agent[0] == '\0')
		usage("--agent is required");
	if (optind >= argc)
		usage("no handler: give it after --");
	o->argv = argv + optind;
	if (caps != NULL && *caps != '\0') {
		for (tok = strtok_r(caps, ",", &save); tok != NULL;
		    tok = strtok_r(NULL, ",", &save)) {
			while (*tok == ' ')
				tok++;
			if (proto_valid_name(tok, strlen(tok)) != 0)
				usage("--capabilities: %s is not a valid name",
				    tok);
			if (o->ncaps == WRK_CAPS_MAX)
				usage("--capabilities: more than %d",
				    WRK_CAPS_MAX);
			o->caps[o->ncaps++] = tok;
		}
	}
}

/*
 * The streams, in the order they are served: broadcast, the direct queue,
 * then for each priority level from 2 down to 0 every capability's queue
 * and the agent's own queue.
 */
static int
make_keys(struct wrk *w)
{
	struct wrk_opts *o = &w->o;
	int n = 2 + HIVE_PRIO_LEVELS * (o->ncaps + 1), k = 0;

	if ((w->keys = calloc((size_t)n, sizeof(*w->keys))) == NULL)
		return -1;
	if (proto_key_named(w->keys[k].name, HIVE_KEY_MAX, o->prefix,
	    "broadcast") < 0)
		return -1;
	w->keys[k].group = w->consumer;
	w->keys[k].broadcast = true;
	w->bcast_key = k++;
	if (proto_key_direct(w->keys[k].name, HIVE_KEY_MAX, o->prefix,
	    o->agent, o->instance) < 0)
		return -1;
	w->keys[k++].group = HIVE_GROUP_WORKERS;
	for (int prio = HIVE_PRIO_LEVELS - 1; prio >= 0; prio--) {
		for (int c = 0; c < o->ncaps; c++) {
			if (proto_key_queue(w->keys[k].name, HIVE_KEY_MAX,
			    o->prefix, o->caps[c], (unsigned)prio) < 0)
				return -1;
			w->keys[k++].group = HIVE_GROUP_WORKERS;
		}
		if (proto_key_agent_queue(w->keys[k].name, HIVE_KEY_MAX,
		    o->prefix, o->agent, (unsigned)prio) < 0)
			return -1;
		w->keys[k++].group = HIVE_GROUP_WORKERS;
	}
	w->nkeys = k;
	if (proto_key_named(w->results_key, sizeof(w->results_key), o->prefix,
	    "results") < 0 ||
	    proto_key_named(w->dead_key, sizeof(w->dead_key), o->prefix,
	    "dead") < 0)
		return -1;
	return 0;
}

int
wrk_set_memory(struct wrk *w, json_t *memory, uint64_t v)
{
	json_t *m = memory ? json_incref(memory) : json_object();
	char *text;

	if (m == NULL)
		return -1;
	if ((text = json_dumps(m, JSON_COMPACT)) == NULL) {
		json_decref(m);
		return -1;
	}
	json_decref(w->memory);
	free(w->memory_text);
	w->memory = m;
	w->memory_text = text;
	w->memory_v = v;
	return 0;
}

bool
wrk_may_pull(const struct wrk *w)
{
	return w->have_memory && !w->draining && !w->forced &&
	    (w->o.mode == WRK_MODE_EXEC || wrk_stream_ready(w));
}

void
wrk_state_changed(struct wrk *w)
{
	state_dirty = true;
}

static void
update_state(struct wrk *w)
{
	enum hive_wstate s;

	state_dirty = false;
	if (w->draining)
		s = HIVE_WSTATE_DRAINING;
	else if (w->nrunning + w->nbacklog + w->noutq > 0)
		s = HIVE_WSTATE_BUSY;
	else if (w->wstate == HIVE_WSTATE_STARTING &&
	    (w->redis.state != WRK_REDIS_UP || !wrk_may_pull(w)))
		s = HIVE_WSTATE_STARTING;
	else
		s = HIVE_WSTATE_READY;
	if (s == w->wstate)
		return;
	w->wstate = s;
	wrk_link_heartbeat(w);
	w->heartbeat_due = wrk_now() + w->o.heartbeat_ms;
	wrk_schedule(w);
}

static void
on_cron(struct ev_loop *loop, ev_timer *tm, int revents)
{
	struct wrk *w = tm->data;
	uint64_t now = wrk_now();

	wrk_redis_cron(w, now);
	if (w->o.mode == WRK_MODE_STREAM)
		wrk_stream_cron(w, now);
	if (w->link.fd >= 0 && w->heartbeat_due <= now) {
		wrk_link_heartbeat(w);
		w->heartbeat_due = now + w->o.heartbeat_ms;
	}
	wrk_schedule(w);
}

void
wrk_schedule(struct wrk *w)
{
	uint64_t due = 0, d, now = wrk_now();

	if (w->link.fd >= 0 && !w->link.eof)
		due = w->heartbeat_due;
	if ((d = wrk_redis_next_due(w)) && (!due || d < due))
		due = d;
	if (w->o.mode == WRK_MODE_STREAM && (d = wrk_stream_next_due(w)) &&
	    (!due || d < due))
		due = d;
	ev_timer_stop(w->loop, &w->cron);
	if (!due)
		return;
	ev_timer_set(&w->cron, due > now ? (double)(due - now) / 1000.0 : 0., 0.);
	ev_timer_start(w->loop, &w->cron);
}

/* Once per loop turn, before the loop sleeps: see the top of this file. */
static void
on_turn(struct ev_loop *loop, ev_prepare *pr, int revents)
{
	struct wrk *w = pr->data;

	if (w->forced)
		return;
	wrk_dispatch(w);
	wrk_pull(w);
	if (w->o.mode == WRK_MODE_STREAM)
		wrk_stream_flush(w);
	wrk_publish(w);
	wrk_redis_flush(w);
	if (state_dirty)
		update_state(w);
	if (w->draining)
		wrk_check_drained(w);
}

/* The memory is known (hived's first frame, or standalone): begin. */
static void
wrk_begin(struct wrk *w)
{
	if (w->o.mode == WRK_MODE_STREAM && w->h.state == WRK_H_NONE &&
	    !w->h.restart_due && !w->draining)
		(void)wrk_stream_start(w);
}

void
wrk_drain(struct wrk *w, const char *why)
{
	if (w->draining)
		return;
	log_info("agent=%s draining (%s): %d tasks in flight", w->agent_inst,
	    why, w->nrunning + w->nbacklog + w->noutq);
	w->draining = true;
	wrk_redis_unblock(w);
	wrk_state_changed(w);
	wrk_check_drained(w);
}

void
wrk_check_drained(struct wrk *w)
{
	if (!w->draining || w->forced)
		return;
	if (w->nbacklog || w->nrunning || w->noutq || !wrk_redis_idle(w))
		return;
	if (w->o.mode == WRK_MODE_STREAM && !wrk_stream_gone(w)) {
		if (!w->stopping_handler) {
			w->stopping_handler = true;
			wrk_stream_stop(w);
		}
		return;
	}
	w->stopping_handler = true;     /* no restart from here on */
	if (w->wstate != HIVE_WSTATE_DRAINING)
		update_state(w);
	if (!wrk_redis_forget(w))
		return;                 /* the DEL's reply calls again */
	if (!wrk_link_flushed(w))
		return;                 /* link_write calls again once done */
	log_info("agent=%s drained: %llu tasks done, exiting", w->agent_inst,
	    (unsigned long long)w->done);
	w->exit_code = 0;
	w->forced = true;
	ev_break(w->loop, EVBREAK_ALL);
}

void
wrk_fail(struct wrk *w, const char *why)
{
	if (w->forced)
		return;
	log_warnx("agent=%s stopping now: %s", w->agent_inst, why);
	w->exit_code = 1;
	w->forced = true;
	ev_break(w->loop, EVBREAK_ALL);
}

static void
on_signal(struct ev_loop *loop, ev_signal *sig, int revents)
{
	struct wrk *w = sig->data;

	if (w->draining) {
		/* A second signal: leave now; what is in flight stays
		 * pending in Redis for this consumer's next run. */
		wrk_fail(w, "second signal while draining");
		return;
	}
	wrk_drain(w, sig->signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void
task_list_free(struct wrk_task_list *l)
{
	struct wrk_task *t;

	while ((t = TAILQ_FIRST(l)) != NULL) {
		TAILQ_REMOVE(l, t, q);
		wrk_task_free(t);
	}
}

int
main(int argc, char **argv)
{
	struct wrk wrk, *w = &wrk;

	memset(w, 0, sizeof(*w));
	parse_args(&w->o, argc, argv);
	log_init("hive-worker", w->o.verbose);
	snprintf(w->agent_inst, sizeof(w->agent_inst), "%.*s/%u",
	    HIVE_NAME_MAX, w->o.agent, w->o.instance);
	if (proto_consumer_name(w->consumer, sizeof(w->consumer), w->o.agent,
	    w->o.instance, w->o.host) < 0)
		usage("--host %s: not usable in a consumer name", w->o.host);
	if (make_keys(w) == -1)
		usage("--prefix %s: stream keys would be too long or invalid",
		    w->o.prefix);
	if (snprintf(w->alive_key, sizeof(w->alive_key), "%s:alive:%s",
	    w->o.prefix, w->consumer) >= (int)sizeof(w->alive_key))
		usage("--prefix %s: the liveness key would be too long",
		    w->o.prefix);
	if (snprintf(w->memory_key, sizeof(w->memory_key), "%s:memory:%s",
	    w->o.prefix, w->agent_inst) >= (int)sizeof(w->memory_key))
		usage("--prefix %s: the memory key would be too long",
		    w->o.prefix);
	w->alive_ttl_ms = w->o.heartbeat_ms > WRK_ALIVE_MIN_MS / WRK_ALIVE_BEATS ?
	    w->o.heartbeat_ms * WRK_ALIVE_BEATS : WRK_ALIVE_MIN_MS;

	/* A handler that dies under a write must not kill us (as hived). */
	signal(SIGPIPE, SIG_IGN);

	if ((w->loop = ev_default_loop(EVFLAG_AUTO)) == NULL)
		fatalx("agent=%s no event loop", w->agent_inst);
	TAILQ_INIT(&w->backlog);
	TAILQ_INIT(&w->running);
	TAILQ_INIT(&w->outq);
	w->link.fd = -1;
	wrk_stream_init(w);
	if (wrk_set_memory(w, NULL, 0) == -1)
		fatal("agent=%s an empty memory", w->agent_inst);
	ev_timer_init(&w->cron, on_cron, 0., 0.);
	w->cron.data = w;
	ev_prepare_init(&w->flush, on_turn);
	w->flush.data = w;
	ev_prepare_start(w->loop, &w->flush);
	ev_signal_init(&w->sigterm, on_signal, SIGTERM);
	ev_signal_init(&w->sigint, on_signal, SIGINT);
	w->sigterm.data = w->sigint.data = w;
	ev_signal_start(w->loop, &w->sigterm);
	ev_signal_start(w->loop, &w->sigint);

	if (wrk_link_open(w, w->o.fd) == -1)
		fatal("agent=%s --fd %d", w->agent_inst, w->o.fd);
	log_info("agent=%s consumer=%s mode=%s concurrency=%u handler=%s "
	    "starting", w->agent_inst, w->consumer,
	    w->o.mode == WRK_MODE_STREAM ? "stream" : "exec",
	    w->o.concurrency, w->o.argv[0]);
	wrk_link_hello(w);
	wrk_link_heartbeat(w);
	w->heartbeat_due = wrk_now() + w->o.heartbeat_ms;
	wrk_redis_start(w);
	if (w->have_memory)
		wrk_begin(w);
	wrk_schedule(w);

	while (!w->forced) {
		ev_run(w->loop, EVRUN_ONCE);
		/* hived's MEMORY frame may have come in this turn. */
		if (w->have_memory && !w->forced)
			wrk_begin(w);
	}

	/* Shut down in order: Redis first (its callbacks still see the
	 * task lists), then processes, then the rest. */
	wrk_redis_stop(w);
	if (w->o.mode == WRK_MODE_STREAM)
		wrk_stream_kill(w);
	else
		wrk_exec_kill_all(w);
	task_list_free(&w->backlog);
	task_list_free(&w->running);
	task_list_free(&w->outq);
	wrk_link_close(w);
	ev_timer_stop(w->loop, &w->cron);
	ev_prepare_stop(w->loop, &w->flush);
	ev_signal_stop(w->loop, &w->sigterm);
	ev_signal_stop(w->loop, &w->sigint);
	ev_loop_destroy(w->loop);
	json_decref(w->memory);
	free(w->memory_text);
	free(w->keys);
	return w->exit_code;
}
