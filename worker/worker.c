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
#include <stddef.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hive_version.h"
#include "log.h"
#include "worker.h"

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
	    "           [--redis HOST:PORT|[V6ADDR]:PORT|/path/redis.sock]\n"
	    "           [--prefix P] [--host H]\n"
	    "           [--fd FD] [--task-timeout MS] [--max-attempts N]\n"
	    "           [--heartbeat-ms MS] [--stop-timeout MS] [--task-events]\n"
	    "           [--log-format text|json] [--log-time auto|yes|no]\n"
	    "           [--output-ttl MS]\n"
	    "           [-v|--verbose]\n"
	    "           -- HANDLER [ARG...]\n"
	    "       hive-worker --help | --version\n");
	exit(2);
}

/* ---- the command line: one table ---- */

enum opt_kind {
	OPT_NAME,       /* an agent name (proto_valid_name) */
	OPT_UINT,       /* unsigned, from min to max */
	OPT_FD,         /* int, from min to max; none: -1 (standalone) */
	OPT_TEXT,       /* 1 to size - 1 bytes */
	OPT_REDIS,      /* OPT_TEXT that rconn_parse_addr takes */
	OPT_MODE,       /* stream | exec */
	OPT_LOGFMT,     /* text | json (enum log_format) */
	OPT_LOGTIME,    /* auto | yes | no (enum log_time) */
	OPT_CAPS,       /* a,b,c: names, at most WRK_CAPS_MAX (the last
	                 * --capabilities counts) */
	OPT_COUNT,      /* no argument: counted (-v -v) */
	OPT_HELP,
	OPT_VERSION,
};

/* Where an option goes in struct wrk_opts, and how big that is. */
#define OPT_AT(f) \
	offsetof(struct wrk_opts, f), sizeof(((struct wrk_opts *)0)->f)

/*
 * Every option: its name (and short letter), what it takes, where it
 * goes, its limits and its default, given as the argument it stands for
 * (NULL: none; --host's is this machine's name, docs/WORKER-CONTRACT.md).
 */
static const struct wrk_optdef {
	const char *name;
	char letter;
	enum opt_kind kind;
	size_t off, size;
	unsigned long min, max;
	const char *def;
} optdefs[] = {
	{ "agent", 0, OPT_NAME, OPT_AT(agent), 0, 0, NULL },
	{ "instance", 0, OPT_UINT, OPT_AT(instance), 1, HIVE_INSTANCE_MAX, "1" },
	{ "mode", 0, OPT_MODE, OPT_AT(mode), 0, 0, "stream" },
	{ "capabilities", 0, OPT_CAPS, OPT_AT(caps), 0, 0, NULL },
	{ "concurrency", 0, OPT_UINT, OPT_AT(concurrency), 1,
	    WRK_CONCURRENCY_MAX, "1" },
	{ "redis", 0, OPT_REDIS, OPT_AT(redis), 0, 0, "127.0.0.1:6379" },
	{ "prefix", 0, OPT_TEXT, OPT_AT(prefix), 0, 0, "hive" },
	{ "host", 0, OPT_TEXT, OPT_AT(host), 0, 0, NULL },
	{ "fd", 0, OPT_FD, OPT_AT(fd), 0, INT_MAX, NULL },
	{ "task-timeout", 0, OPT_UINT, OPT_AT(task_timeout_ms), 0,
	    HIVE_TIMEOUT_MAX, "0" },
	{ "max-attempts", 0, OPT_UINT, OPT_AT(max_attempts), 1,
	    HIVE_ATTEMPTS_MAX, "3" },
	{ "heartbeat-ms", 0, OPT_UINT, OPT_AT(heartbeat_ms), 10, 3600 * 1000,
	    "1000" },
	{ "task-events", 0, OPT_COUNT, OPT_AT(task_events), 0, 0, NULL },
	{ "stop-timeout", 0, OPT_UINT, OPT_AT(stop_timeout_ms), 1,
	    HIVE_TIMEOUT_MAX, "30000" },
	{ "log-format", 0, OPT_LOGFMT, OPT_AT(log_format), 0, 0, "text" },
	{ "log-time", 0, OPT_LOGTIME, OPT_AT(log_time), 0, 0, "auto" },
	{ "output-ttl", 0, OPT_UINT, OPT_AT(output_ttl_ms), 1,
	    30u * 86400 * 1000, "3600000" },
	{ "verbose", 'v', OPT_COUNT, OPT_AT(verbose), 0, 0, NULL },
	{ "help", 'h', OPT_HELP, 0, 0, 0, 0, NULL },
	{ "version", 'V', OPT_VERSION, 0, 0, 0, 0, NULL },
};
#define NOPTS (sizeof(optdefs) / sizeof(optdefs[0]))

static unsigned long
num_arg(const struct wrk_optdef *d, const char *s)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end != '\0' || s[0] == '-' || v < d->min ||
	    v > d->max)
		usage("--%s %s: a number from %lu to %lu is expected", d->name,
		    s, d->min, d->max);
	return v;
}

/* --capabilities a,b: split in place (arg is argv's, it stays). */
static void
caps_arg(struct wrk_opts *o, char *arg)
{
	char *tok, *save;

	o->ncaps = 0;
	for (tok = strtok_r(arg, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (proto_valid_name(tok, strlen(tok)) != 0)
			usage("--capabilities: %s is not a valid name", tok);
		if (o->ncaps == WRK_CAPS_MAX)
			usage("--capabilities: more than %d", WRK_CAPS_MAX);
		o->caps[o->ncaps++] = tok;
	}
}

/* Store one option's argument where the table says; usage() when it is
 * not one the option takes. */
static void
opt_set(struct wrk_opts *o, const struct wrk_optdef *d, char *arg)
{
	char *at = (char *)o + d->off, host[256];
	int port, is_unix;

	switch (d->kind) {
	case OPT_NAME:
		if (proto_valid_name(arg, strlen(arg)) != 0)
			usage("--%s %s: not a valid agent name", d->name, arg);
		snprintf(at, d->size, "%s", arg);
		break;
	case OPT_UINT:
		*(unsigned *)(void *)at = (unsigned)num_arg(d, arg);
		break;
	case OPT_FD:
		*(int *)(void *)at = (int)num_arg(d, arg);
		break;
	case OPT_REDIS:
		if (rconn_parse_addr(arg, host, sizeof(host), &port,
		    &is_unix) == -1)
			usage("--%s %s: host:port, [v6addr]:port or "
			    "/path/to/redis.sock is expected", d->name, arg);
		/* FALLTHROUGH */
	case OPT_TEXT:
		if (strlen(arg) >= d->size || *arg == '\0')
			usage("--%s %s: 1 to %zu bytes", d->name, arg,
			    d->size - 1);
		snprintf(at, d->size, "%s", arg);
		break;
	case OPT_MODE:
		if (strcmp(arg, "stream") == 0)
			*(enum wrk_mode *)(void *)at = WRK_MODE_STREAM;
		else if (strcmp(arg, "exec") == 0)
			*(enum wrk_mode *)(void *)at = WRK_MODE_EXEC;
		else
			usage("--%s %s: stream or exec", d->name, arg);
		break;
	case OPT_LOGFMT:
		if ((*(int *)(void *)at = log_format_parse(arg)) == -1)
			usage("--%s %s: text or json", d->name, arg);
		break;
	case OPT_LOGTIME:
		if ((*(int *)(void *)at = log_time_parse(arg)) == -1)
			usage("--%s %s: auto, yes or no", d->name, arg);
		break;
	case OPT_CAPS:
		caps_arg(o, arg);
		break;
	case OPT_COUNT:
		(*(int *)(void *)at)++;
		break;
	case OPT_HELP:
		usage(NULL);
	case OPT_VERSION:
		/* At once: the version needs no --agent and no handler. */
		printf("hive-worker %s\n", HIVE_VERSION);
		exit(0);
	}
}

/* The defaults: each one's argument, set as if it had been given. */
static void
opt_defaults(struct wrk_opts *o)
{
	char arg[64];

	memset(o, 0, sizeof(*o));
	for (size_t i = 0; i < NOPTS; i++)
		if (optdefs[i].def != NULL) {
			snprintf(arg, sizeof(arg), "%s", optdefs[i].def);
			opt_set(o, &optdefs[i], arg);
		}
	o->fd = -1;
	if (gethostname(o->host, sizeof(o->host)) == -1)
		snprintf(o->host, sizeof(o->host), "localhost");
	o->host[sizeof(o->host) - 1] = '\0';
}

static void
parse_args(struct wrk_opts *o, int argc, char **argv)
{
	struct option longopts[NOPTS + 1];
	char shortopts[2 * NOPTS + 2] = "+";
	size_t ns = 1;
	int ch, idx;

	/* '+': stop at the first non-option, the handler's own flags are
	 * not ours.  A long option comes back as 256 + its index. */
	memset(longopts, 0, sizeof(longopts));
	for (size_t i = 0; i < NOPTS; i++) {
		longopts[i].name = optdefs[i].name;
		longopts[i].has_arg = optdefs[i].kind == OPT_COUNT ||
		    optdefs[i].kind == OPT_HELP ||
		    optdefs[i].kind == OPT_VERSION ? no_argument :
		    required_argument;
		longopts[i].val = 256 + (int)i;
		if (optdefs[i].letter != 0)
			shortopts[ns++] = optdefs[i].letter;
	}
	shortopts[ns] = '\0';
	opt_defaults(o);
	while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		idx = ch - 256;
		if (ch < 256)
			for (idx = 0; idx < (int)NOPTS; idx++)
				if (optdefs[idx].letter == ch)
					break;
		if (ch == '?' || idx < 0 || idx >= (int)NOPTS)
			usage(NULL);
		opt_set(o, &optdefs[idx], optarg);
	}
	if (o->agent[0] == '\0')
		usage("--agent is required");
	if (optind >= argc)
		usage("no handler: give it after --");
	o->argv = argv + optind;
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
	return w->have_memory && wrk_phase_takes_work(w->phase) &&
	    (w->o.mode == WRK_MODE_EXEC || wrk_stream_ready(w));
}

/* ---- the lifecycle (phase.h) ---- */

bool
wrk_phase_event(struct wrk *w, enum wrk_phase_ev ev)
{
	enum wrk_phase next;

	if (!wrk_phase_step(w->phase, ev, &next))
		return false;
	if (next != w->phase)
		log_debug("agent=%s %s -> %s", w->agent_inst,
		    wrk_phase_name(w->phase), wrk_phase_name(next));
	w->phase = next;
	return true;
}

void
wrk_state_changed(struct wrk *w)
{
	w->state_dirty = true;
}

/*
 * Why hived is told of every handler failure, and the worker does not
 * exit instead: the worker keeps what it holds (tasks the dead handler
 * answered are published, the others go to the restarted handler with
 * attempt + 1), and hived's own machinery decides as for a worker: the
 * failure counts against the agent's restart-rate limit, is an event,
 * shows in GET /agents, and the one past the limit ends the worker and
 * quarantines the instance (supervisor/agent.c, SUP_EV_HANDLER).  The
 * heartbeat that carries the count goes out at the end of the turn
 * (on_turn), after what the turn published.
 */
void
wrk_handler_failed(struct wrk *w)
{
	w->handler_restarts++;
}

/* What hived is told (starting, ready, busy, draining): from the phase
 * and what is held; at once when it changes. */
static void
update_state(struct wrk *w)
{
	enum hive_wstate s;

	w->state_dirty = false;
	if (!wrk_phase_takes_work(w->phase))
		s = HIVE_WSTATE_DRAINING;
	else if (w->nrunning + w->nbacklog + w->noutq > 0)
		s = HIVE_WSTATE_BUSY;
	else if (w->phase == WRK_PH_STARTING &&
	    (w->redis.state != WRK_REDIS_UP || !wrk_may_pull(w)))
		s = HIVE_WSTATE_STARTING;
	else
		s = HIVE_WSTATE_READY;
	if (s != HIVE_WSTATE_STARTING)
		(void)wrk_phase_event(w, WRK_PEV_STARTED);
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
	if ((d = wrk_taskout_next_due(w)) && (!due || d < due))
		due = d;
	ev_timer_stop(w->loop, &w->cron);
	if (!due)
		return;
	ev_timer_set(&w->cron, due > now ? (double)(due - now) / 1000.0 : 0., 0.);
	ev_timer_start(w->loop, &w->cron);
}

/* The memory is known (hived's first frame, or standalone): the stream
 * handler starts, unless it waits out a restart backoff. */
static void
wrk_begin(struct wrk *w)
{
	if (w->o.mode == WRK_MODE_STREAM && w->h.state == WRK_H_NONE &&
	    !w->h.restart_due && wrk_phase_takes_work(w->phase))
		(void)wrk_stream_start(w);
}

/* Once per loop turn, before the loop sleeps: see the top of this file. */
static void
on_turn(struct ev_loop *loop, ev_prepare *pr, int revents)
{
	struct wrk *w = pr->data;

	if (w->phase == WRK_PH_EXITING)
		return;
	/* hived's MEMORY frame may have come in the last turn. */
	if (w->have_memory)
		wrk_begin(w);
	wrk_dispatch(w);
	wrk_pull(w);
	if (w->o.mode == WRK_MODE_STREAM)
		wrk_stream_flush(w);
	wrk_publish(w);
	wrk_redis_flush(w);
	if (w->state_dirty)
		update_state(w);
	if (w->handler_restarts != w->handler_restarts_sent)
		wrk_link_heartbeat(w);
	if (w->phase == WRK_PH_DRAINING || w->phase == WRK_PH_CLOSING)
		wrk_check_drained(w);
}

void
wrk_drain(struct wrk *w, const char *why)
{
	if (!wrk_phase_event(w, WRK_PEV_DRAIN))
		return;
	log_info("agent=%s draining (%s): %d tasks in flight", w->agent_inst,
	    why, w->nrunning + w->nbacklog + w->noutq);
	wrk_redis_unblock(w);
	wrk_state_changed(w);
	wrk_check_drained(w);
}

/*
 * Draining: once nothing is held, CLOSING stops the handler for good
 * (no restart from here on); once it is gone, the liveness key deleted
 * and the link flushed, the worker exits 0.  Called again by whatever
 * may have been the last thing waited for.
 */
void
wrk_check_drained(struct wrk *w)
{
	if (w->phase != WRK_PH_DRAINING && w->phase != WRK_PH_CLOSING)
		return;
	if (w->nbacklog || w->nrunning || w->noutq || !wrk_redis_idle(w))
		return;
	if (wrk_phase_event(w, WRK_PEV_EMPTY) &&
	    w->o.mode == WRK_MODE_STREAM && !wrk_stream_gone(w))
		wrk_stream_stop(w);
	if (w->o.mode == WRK_MODE_STREAM && !wrk_stream_gone(w))
		return;                 /* stream_exited calls again */
	if (w->wstate != HIVE_WSTATE_DRAINING)
		update_state(w);
	if (!wrk_redis_forget(w))
		return;                 /* the DEL's reply calls again */
	if (!wrk_link_flushed(w))
		return;                 /* link_write calls again once done */
	log_info("agent=%s drained: %llu tasks done, exiting", w->agent_inst,
	    (unsigned long long)w->done);
	w->exit_code = 0;
	(void)wrk_phase_event(w, WRK_PEV_CLOSED);
	ev_break(w->loop, EVBREAK_ALL);
}

void
wrk_fail(struct wrk *w, const char *why)
{
	if (!wrk_phase_event(w, WRK_PEV_FAIL))
		return;
	log_warnx("agent=%s stopping now: %s", w->agent_inst, why);
	w->exit_code = 1;
	ev_break(w->loop, EVBREAK_ALL);
}

static void
on_signal(struct ev_loop *loop, ev_signal *sig, int revents)
{
	struct wrk *w = sig->data;

	if (!wrk_phase_takes_work(w->phase)) {
		/* A second signal: leave now; what is in flight stays
		 * pending in Redis for this consumer's next run. */
		wrk_fail(w, "second signal while draining");
		return;
	}
	wrk_drain(w, sig->signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- main, cut at its seams ---- */

/* The names the worker goes by in Redis: consumer, streams, keys. */
static void
wrk_names(struct wrk *w)
{
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
}

/* The loop and what lives on it for the worker's whole life. */
static void
wrk_loop_init(struct wrk *w)
{
	if ((w->loop = ev_default_loop(EVFLAG_AUTO)) == NULL)
		fatalx("agent=%s no event loop", w->agent_inst);
	TAILQ_INIT(&w->backlog);
	TAILQ_INIT(&w->running);
	TAILQ_INIT(&w->outq);
	w->link.fd = -1;
	wrk_stream_init(w);
	wrk_output_init(w);
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

/* Shut down in order: Redis first (its callbacks still see the task
 * lists), then processes, then the rest. */
static void
wrk_shutdown(struct wrk *w)
{
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
}

int
main(int argc, char **argv)
{
	struct wrk wrk, *w = &wrk;

	memset(w, 0, sizeof(*w));
	parse_args(&w->o, argc, argv);
	log_init("hive-worker", w->o.verbose);
	log_set_format((enum log_format)w->o.log_format);
	log_set_time((enum log_time)w->o.log_time);
	wrk_names(w);
	/* A handler that dies under a write must not kill us (as hived). */
	signal(SIGPIPE, SIG_IGN);
	wrk_loop_init(w);
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
	wrk_schedule(w);
	/* Until wrk_check_drained or wrk_fail breaks it. */
	ev_run(w->loop, 0);
	wrk_shutdown(w);
	return w->exit_code;
}
