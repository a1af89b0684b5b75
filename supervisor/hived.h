/*
 * hived.h - the supervisor's private header: every type and every prototype
 * of hived, grouped by the file that defines them, so that this page is a
 * map of the program.
 *
 *   main.c     command line, start-up, exit
 *   hived.c    the daemon: loop, signals, housekeeping timer, reload,
 *              graceful stop, sd_notify
 *   agent.c    agents and their instances; the actions the lifecycle
 *              table's cells ask for
 *   agent_fsm.c  the lifecycle state table (a pure function)
 *   spawn.c    fork + exec of hive-worker, the exec-error pipe, reaping
 *              (and killing what a dead worker left behind)
 *   link.c     the socketpair to each worker: frames in and out, dispatch
 *   memory.c   the latest memory of each agent instance
 *   config.c   the configuration: INI files into struct hive_conf,
 *              validated whole, one key table per section (config.h; a
 *              library of its own so the tests and the fuzz target link
 *              it alone)
 *   config_read.c  its first pass: files -> sections of key = value
 *   http.c     the HTTP API's server (libmicrohttpd on the libev loop):
 *              requests to endpoints and answers back, suspended while an
 *              endpoint waits; http_route.c its pure router (http.h);
 *              api.h what an endpoint is given; sse.c its event streams
 *              (sse.h: a bounded buffer per client)
 *   events.c   the live events (events.h): sup_event, the resume window,
 *              GET /events, the metrics tick and GET /stats
 *   api_agents.c  the endpoints on agents: /health, /agents,
 *              /capabilities, actions
 *   api_dead.c the dead letters: /dead, retries (api_dead.h);
 *              api_submit.c POST /tasks, POST /workflows
 *   api_output_task.c  GET /tasks/ID/output: a task's output stream
 *              (Redis) as server-sent events, followed with one XREAD
 *              BLOCK on a connection of its own
 *   store.c    the bridge to the record (record/, record.h): start-up
 *              checks of Redis and PostgreSQL, memory snapshots, events,
 *              the agents table; it starts and feeds the recorder,
 *              reclaimer, workflow coordinator and recovery
 *   qstat.c    the queues' state sampled from Redis every second (and
 *              the workers' RSS), for /queues, /metrics, /health
 *   metrics.c  GET /metrics (Prometheus text) and GET /queues, from state
 *              hived keeps (api.h)
 *   output.c   agents' output: each instance's ring of its handlers'
 *              stderr lines, logged and published; api_output.c serves it
 *
 * Ownership, top down: struct sup owns the agents (a list), the memory
 * store, the HTTP server and the current configuration.  An agent owns its
 * instances; an instance owns its timer, its link (while a worker lives) and
 * its exec-error pipe (until the worker has exec'd).  Configurations are
 * reference counted (struct sup_cref) because an agent removed by a reload
 * still needs its old section while its workers drain.
 *
 * Lifecycle of one agent instance (the table in agent_fsm.c is the truth):
 *
 *    STOPPED --start--> STARTING --ready hb--> READY <--busy/ready hb--> BUSY
 *                          |                     |                        |
 *                          +---------------------+------ exit ------------+
 *                                                |
 *          policy says no: STOPPED (exit 0) or CRASHED (failure)
 *          rate limit hit: FAILED --reset/restart/cooldown--> STARTING
 *          otherwise:      RESTARTING --backoff timer--> STARTING
 *
 *    A spawn that forked nothing (spawn-fail) leaves STARTING the same way,
 *    as an exit with a failure status.
 *
 *    A handler that died or could not start (the worker restarts it and
 *    tells hived in a heartbeat) counts against the rate limit; the one
 *    past the limit is handled like a hung worker: SIGKILL -> STOPPING
 *    (after: crash), then FAILED when reaped.
 *
 *    Spawns are paced (spawn.c): STARTING begins with the spawn queued,
 *    no worker yet (pid 0); a restart or reload then changes nothing,
 *    sleep and stop leave STARTING at once, and the fork happens at the
 *    instance's turn.
 *
 *    sleep/restart/reload/recycle/stop on a live worker: CONTROL drain ->
 *    STOPPING (with what to do after the exit: restart, sleep, stop), and
 *    SIGKILL when stop_timeout ends.  A hung or broken worker: SIGKILL ->
 *    STOPPING (after: crash, i.e. handled like a crash when reaped).
 *
 *    Operators (the API; stop-all and start-all are these on every
 *    instance):
 *      op-stop   live worker: CONTROL drain -> STOPPING (after: hold),
 *                SIGKILL at stop_timeout (stop-all: its bound) -> STOPPED
 *      drain     live worker: CONTROL drain -> STOPPING (after: drain),
 *                no grace timer (the tasks' own timeouts bound it; the
 *                heartbeat deadline still applies) -> STOPPED
 *      either, no worker (sleeping, crashed, restarting, failed, stopped,
 *                a queued spawn): STOPPED at once
 *      op-start  STOPPED, CRASHED, SLEEPING, FAILED -> STARTING, history
 *                cleared (FAILED: as reset); STOPPING: back after the exit
 *    STOPPED by op-stop or drain is held (struct sup_inst held): the
 *    policy, the first start and a reload pass it by; only an operator
 *    (start, restart, sleep) moves it.
 */
#ifndef HIVE_HIVED_H
#define HIVE_HIVED_H

#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <ev.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "hive_proto.h"

#define SUP_HOUSEKEEPING_S  0.25     /* the one periodic timer */
#define SUP_STABLE_MS       1000     /* ready this long: backoff starts over */
#define SUP_TOKEN_MAX       256
#define SUP_TOKEN_MIN       16       /* shorter: warned at start */

struct sup;
struct sup_agent;
struct sup_inst;
struct sup_link;
struct sup_http;
struct sup_memstore;
struct sup_store;
struct sup_events;

/* ---- agent_fsm.c: the lifecycle state table ---- */

enum sup_state {
	SUP_ST_STARTING = 0,  /* spawn queued or forked; no ready heartbeat yet */
	SUP_ST_READY,         /* worker says ready (pulling work) */
	SUP_ST_BUSY,          /* worker says busy (tasks in flight) */
	SUP_ST_SLEEPING,      /* no worker, on purpose; wake starts one */
	SUP_ST_STOPPING,      /* drain sent or killed; waiting for the exit */
	SUP_ST_STOPPED,       /* no worker: exited cleanly, removed, shut down */
	SUP_ST_CRASHED,       /* no worker: failed and the policy says stay down */
	SUP_ST_RESTARTING,    /* no worker: backoff timer running */
	SUP_ST_FAILED,        /* no worker: restart-rate limit hit, quarantined */
	SUP_ST_COUNT
};

/* What a STOPPING instance does once its worker has exited. */
enum sup_after {
	SUP_AFTER_NONE = 0,
	SUP_AFTER_RESTART,    /* operator restart, reload, recycle: not counted */
	SUP_AFTER_SLEEP,
	SUP_AFTER_STOP,       /* shutdown or agent removed */
	SUP_AFTER_CRASH,      /* hived killed it (hung, bad frame): a crash */
	SUP_AFTER_HOLD,       /* operator stop: STOPPED and held (below) */
	SUP_AFTER_DRAIN,      /* operator drain: the same, but no grace timer:
	                       * the worker's tasks end by their own timeouts */
};

enum sup_event {
	SUP_EV_START = 0,     /* first start (hived start, agent added);
	                       * guard asleep: autostart = no */
	SUP_EV_READY,         /* heartbeat: ready */
	SUP_EV_BUSY,          /* heartbeat: busy */
	SUP_EV_EXIT,          /* the worker was reaped (guard: exit_ok) */
	SUP_EV_SPAWNFAIL,     /* the spawn a step asked for forked nothing */
	SUP_EV_TIMER,         /* the instance timer: backoff, cooldown, grace */
	SUP_EV_DEADLINE,      /* no heartbeat within heartbeat_deadline */
	SUP_EV_BADFRAME,      /* the worker broke the protocol */
	SUP_EV_RECYCLE,       /* max_tasks or max_rss reached */
	SUP_EV_RESTART,       /* operator */
	SUP_EV_SLEEP,         /* operator */
	SUP_EV_WAKE,          /* operator */
	SUP_EV_RESET,         /* operator: clear the failed state and history */
	SUP_EV_RELOAD,        /* SIGHUP changed this agent's section */
	SUP_EV_STOP,          /* shutdown, agent or instance removed */
	SUP_EV_HANDLER,       /* heartbeat: the worker's handler died unasked
	                       * or could not start (guard: limit_hit) */
	SUP_EV_OPSTART,       /* operator start (also start-all) */
	SUP_EV_OPSTOP,        /* operator stop (also stop-all): drain, kill
	                       * at the bound, STOPPED held */
	SUP_EV_DRAIN,         /* operator drain: drain, no kill, STOPPED held */
	SUP_EV_COUNT
};

/* Actions a cell asks for, done by sup_inst_event in this order. */
#define SUP_ACT_CLEAR       0x01  /* forget the restart history */
#define SUP_ACT_COUNT       0x02  /* record a restart against the limit */
#define SUP_ACT_BACKOFF     0x04  /* arm the timer with the backoff delay */
#define SUP_ACT_QUARANTINE  0x08  /* log; arm the cooldown timer if any */
#define SUP_ACT_SEND_DRAIN  0x10  /* CONTROL drain */
#define SUP_ACT_GRACE       0x80  /* arm the grace timer: SIGKILL at its end
                                   * (stop_timeout, or stop-all's bound) */
#define SUP_ACT_KILL        0x20  /* SIGKILL the worker's process group */
#define SUP_ACT_SPAWN       0x40  /* queue a fork + exec of a fresh worker */
#define SUP_ACT_HOLD        0x100 /* STOPPED by an operator: held there,
                                   * nothing but an operator starts it */
/* What every stop but the operator's drain does. */
#define SUP_ACT_DRAIN       (SUP_ACT_SEND_DRAIN | SUP_ACT_GRACE)

struct sup_fsm {
	enum sup_state state;
	enum sup_after after;         /* meaningful in STOPPING only */
};

/* Facts the table needs but does not own. */
struct sup_guard {
	int exit_ok;                  /* EXIT: exited with status 0 */
	enum hive_restart policy;
	int limit_hit;                /* one more restart would pass the limit */
	int asleep;                   /* START: autostart = no */
	int queued;                   /* STARTING: spawn queued, no worker yet */
	int held;                     /* STOPPED by an operator (SUP_ACT_HOLD) */
};

struct sup_step {
	struct sup_fsm next;
	unsigned act;                 /* SUP_ACT_* */
	int handled;                  /* 0: the event does not apply here */
};

struct sup_step sup_fsm_step(struct sup_fsm cur, enum sup_event ev,
    const struct sup_guard *g);
const char *sup_state_name(enum sup_state);
const char *sup_event_name(enum sup_event);
const char *sup_after_name(enum sup_after);

/* ---- agent.c: agents and instances ---- */

/* A loaded configuration, shared by the agents whose sections it holds. */
struct sup_cref {
	struct hive_conf *conf;
	unsigned refs;
};

struct sup_inst {
	struct sup_agent *agent;
	unsigned n;                   /* instance number, 1.. */
	char label[HIVE_AGENT_MAX + 1];   /* "name/n", for logs and the API */
	struct sup_fsm fsm;
	int retired;                  /* beyond the configured count: stopping */
	int held;                     /* STOPPED by an operator: only an
	                               * operator starts it (SUP_ACT_HOLD) */
	unsigned grace_ms;            /* set before an event: the grace timer
	                               * it arms, if any, lasts this long
	                               * (stop-all's bound); 0: stop_timeout */

	pid_t pid;                    /* 0: no worker (reaped, never forked,
	                               * or its spawn still queued) */
	struct sup_link *link;        /* NULL when pid is 0 */
	int exec_fd;                  /* exec-error pipe, -1 once read */
	ev_io exec_io;
	ev_timer timer;               /* backoff | cooldown | grace (by state) */
	TAILQ_ENTRY(sup_inst) spawnq; /* in sup->spawnq while queued */
	int queued;
	enum sup_state spawn_from;    /* the move that queued the spawn, */
	enum sup_event spawn_ev;      /* for the log line of the fork */

	ev_tstamp spawned_at;         /* ev_now of the fork */
	ev_tstamp last_hb;            /* of the last heartbeat (or the fork) */
	ev_tstamp ready_since;        /* 0: not ready since the fork */
	int hello;                    /* HELLO seen from this worker */
	int have_hb;                  /* a heartbeat seen from this worker */

	unsigned backoff_n;           /* restarts since it was last stable */
	uint64_t *hist;               /* ring of restart times (ms), grown
	                               * up to restart_limit */
	unsigned hist_cap, hist_len, hist_head;

	uint64_t restarts;            /* workers started after the first */
	uint64_t done_base;           /* tasks done by earlier workers */
	uint64_t done;                /* by this worker (from heartbeats) */
	uint32_t inflight;
	char task[HIVE_ID_MAX + 1];   /* a task in flight by the last
	                               * heartbeat, "" none */
	ev_tstamp task_since;         /* when a heartbeat first named it */
	int64_t handler_pid;
	uint64_t handler_rss_kb;
	uint64_t handler_restarts;    /* handler failures, all workers */
	uint64_t handler_seen;        /* this worker's count, as last heard */
	int last_status;              /* wait status of the last exit, -1 none */
	int store_dirty;             /* its agents-table row is out of date */
	struct sup_mem *mem;          /* this instance's memory (store owns it) */
	uint64_t rss_kb;              /* the worker's RSS (qstat.c samples it) */
	pid_t rss_pid;                /* ... of this worker: valid if == pid */
	struct sup_output *output;    /* its last output lines (output.c),
	                               * NULL before the first */
};

struct sup_agent {
	TAILQ_ENTRY(sup_agent) entry;
	struct sup *sup;
	char name[HIVE_NAME_MAX + 1];
	const struct hive_agent_conf *conf;   /* inside cref */
	struct sup_cref *cref;
	struct sup_inst **inst;       /* inst[i] is instance i + 1 */
	unsigned ninst;
	int removed;                  /* gone from the config: draining */
};

TAILQ_HEAD(sup_agents, sup_agent);

struct sup_cref *sup_cref_new(struct hive_conf *);    /* takes conf */
struct sup_cref *sup_cref_ref(struct sup_cref *);
void sup_cref_unref(struct sup_cref *);

struct sup_agent *sup_agent_new(struct sup *, struct sup_cref *,
    const struct hive_agent_conf *);
void sup_agent_free(struct sup_agent *);
struct sup_agent *sup_agent_find(struct sup *, const char *name);
/* Start (or put asleep, autostart = no) every configured instance. */
void sup_agent_start(struct sup_agent *);
/* Point the agent at a new section; restart it if changed. */
void sup_agent_reconfigure(struct sup_agent *, struct sup_cref *,
    const struct hive_agent_conf *, int changed);
/* Feed an event to every instance; returns how many handled it. */
int sup_agent_event(struct sup_agent *, enum sup_event);
/* Free retired instances and removed agents that have no worker left. */
void sup_agent_collect(struct sup_agent *);
int sup_agent_gone(const struct sup_agent *);

/* Feed one event through the table and do the actions; 1 if handled.
 * exit_ok matters for SUP_EV_EXIT only.  A spawn the actions ask for is
 * queued (spawn.c).  Never frees inst. */
int sup_inst_event(struct sup_inst *, enum sup_event, int exit_ok);
/* The queued spawn's turn (spawn.c calls this): fork it, or feed
 * SUP_EV_SPAWNFAIL when nothing was forked. */
void sup_inst_spawn(struct sup_inst *);
void sup_inst_hello(struct sup_inst *, const struct hive_hello *);
void sup_inst_heartbeat(struct sup_inst *, const struct hive_heartbeat *);
void sup_inst_memory(struct sup_inst *, const struct hive_memory *);
/* A worker was reaped (spawn.c calls this). */
void sup_inst_exited(struct sup_inst *, int status);
struct sup_inst *sup_inst_by_pid(struct sup *, pid_t);
/* One status line for SIGUSR1, the API's view, STATUS=. */
void sup_inst_log_status(const struct sup_inst *);

/* ---- spawn.c ---- */

/*
 * At most this many forks per loop turn.  A fork of hived costs about a
 * millisecond on an idle machine (1,000 instances took 1.2 s in one
 * turn), and several while hundreds of workers just forked exec and
 * connect on the same cores.  A turn's own cost (one poll without
 * sleeping) is microseconds, so small batches cost the start nothing:
 * bench_restart -s 1000 on 2 cores had every worker ready in 2.9-3.5 s
 * with batches of 4, 8 or 16 (3.5 s forking all in one turn), and GET
 * /health during that start took p99 56 ms with 4, 97-165 ms with 8,
 * 177 ms with 16 (3.4 s in one turn).  An HTTP request, a signal or a
 * heartbeat waits at most a batch, and the watchdog (pinged at least
 * every SUP_HOUSEKEEPING_S) never comes near its limit.
 */
#define SUP_SPAWN_BATCH 4

TAILQ_HEAD(sup_spawnq, sup_inst);

/* The spawn queue and its idle watcher (empty, stopped). */
void sup_spawn_init(struct sup *);
/* Queue inst's spawn (once); the idle watcher runs while any is queued. */
void sup_spawn_queue(struct sup_inst *);
/* Take inst off the queue if it is there. */
void sup_spawn_unqueue(struct sup_inst *);

/* Fork and exec a worker for inst; on success inst->pid and inst->link are
 * set and the MEMORY frame is queued.  -1 (logged) if nothing was forked. */
int sup_spawn(struct sup_inst *);
/* The one ev_child watcher (pid 0: every child): reap and dispatch. */
void sup_spawn_child_cb(struct ev_loop *, ev_child *, int);
/* Close the exec-error pipe if still open. */
void sup_spawn_close_exec(struct sup_inst *);
/* The worker (pid) was reaped: log its exec report if any, close. */
void sup_spawn_exec_reaped(struct sup_inst *, pid_t pid);

/* ---- link.c ---- */

struct sup_link *sup_link_new(struct sup_inst *, int fd);
void sup_link_free(struct sup_link *);
/* Queue a frame; the write watcher runs only while output is queued. */
int sup_link_send(struct sup_link *, const struct hive_frame *);
/* Queue bytes that already are one or more whole frames. */
int sup_link_send_raw(struct sup_link *, const char *buf, size_t len);
/* At exit: read and handle what the worker wrote before dying (its last
 * MEMORY frame may be there), ignoring everything else. */
void sup_link_final_read(struct sup_link *);

/* ---- memory.c ---- */

/*
 * The latest memory of each agent instance, the msgpack encoding of the
 * memory map and its version.  An entry lives as long as the store: an
 * agent removed and added again gets its memory back.  Part 2 fills the
 * store from PostgreSQL at start (sup_mem_put with each snapshot).
 */
struct sup_mem {
	char key[HIVE_AGENT_MAX + 1];    /* "name/instance" */
	uint64_t v;                      /* 0: none yet */
	char *buf;                       /* msgpack map, NULL when v is 0 */
	size_t len;
	struct sup_mem *next;
};

struct sup_memstore *sup_memstore_new(void);
void sup_memstore_free(struct sup_memstore *);
/* The entry for name/instance, created empty if needed; NULL: no memory. */
struct sup_mem *sup_mem_get(struct sup_memstore *, const char *name,
    unsigned instance);
/* Keep obj (a map) as version v if v is newer: 1 kept, 0 older, -1 error. */
int sup_mem_put(struct sup_mem *, uint64_t v, const msgpack_object *obj);
int sup_mem_put_raw(struct sup_mem *, uint64_t v, const char *buf,
    size_t len);
/* Append the MEMORY frame for this entry (v 0: nil) to sb. */
int sup_mem_encode_frame(const struct sup_mem *, const char *name,
    unsigned instance, msgpack_sbuffer *sb);
size_t sup_memstore_bytes(const struct sup_memstore *);

/* ---- http.c ---- */

/* Listen on addr ("host:port", port 0 = any free one).  NULL (logged) on
 * failure.  The bound port is sup_http_port(). */
struct sup_http *sup_http_new(struct sup *, const char *addr);
void sup_http_free(struct sup_http *);
unsigned sup_http_port(const struct sup_http *);

/* ---- store.c ---- */

/* Connect to Redis (refuse an evicting one) and PostgreSQL (migrate, load
 * the memory snapshots), then start the agents: when both are done, or
 * after a bounded wait.  -1 on a bad address. */
int sup_store_start(struct sup *);
void sup_store_free(struct sup *);
/* agent.c calls this after every change of an instance's state. */
void sup_store_transition(struct sup_inst *, enum sup_state was,
    enum sup_event ev);
/* agent.c: the handler of the instance's worker failed (an event). */
void sup_store_handler(struct sup_inst *, const char *reason);
/* The housekeeping timer calls this. */
void sup_store_tick(struct sup *);
/* The configuration changed: name its queues to the recorder. */
void sup_store_queues(struct sup *);
/* A reload put sup->cref in place of oc: the record side follows it
 * (postgres, snapshots_keep, heartbeat_interval; docs/CONFIG.md). */
void sup_store_reload(struct sup *, const struct hive_conf *oc);
/* Stopping, every child gone: end the loop once the recorder has written
 * what it read (bounded). */
void sup_store_stop(struct sup *);
/* SIGUSR1: one line on the record (recorder, PostgreSQL, reclaimer). */
void sup_store_log_status(struct sup *);
/*
 * For the HTTP API's endpoints (api_*.c), lent: hived's own Redis
 * connection (NULL before start), and the record's PostgreSQL connection
 * once its schema is migrated (NULL without postgres =, or before).
 * Their commands and queries answer later, in callbacks; nothing waits.
 */
struct rconn;
struct sup_pg;
struct rconn *sup_store_redis(struct sup *);
struct sup_pg *sup_store_pg(struct sup *);

/* A server as GET /health shows it. */
struct sup_health {
	int configured;               /* postgres: [hive] postgres is set */
	int up;                       /* connected and the last probe answered
	                               * without error, within SUP_PROBE_LATE */
	long long latency_ms;         /* the last probe's round trip (or how
	                               * long the one in flight waits, when
	                               * late); -1 none yet */
	char error[96];               /* why not up ("" when up) */
};

/* From what hived's probes (a PING and a SELECT 1 every second, on its
 * own connections, from the housekeeping timer) last found: no call. */
void sup_store_health(struct sup *, struct sup_health *redis,
    struct sup_health *pg);
/* Redis is connected (store.c's connection). */
int sup_store_redis_up(struct sup *);
/* PostgreSQL: -1 not configured, 0 down, 1 connected. */
int sup_store_pg_state(struct sup *);
/* The recorder's counters (record.h); -1 when there is no recorder. */
struct sup_recorder_stats;
int sup_store_recorder_stats(struct sup *, struct sup_recorder_stats *);
/* The task counters the recorder keeps (record.h); NULL without
 * PostgreSQL. */
struct sup_tstats;
const struct sup_tstats *sup_store_tstats(struct sup *);

/* ---- qstat.c ---- */

/* One queue stream as last sampled. */
struct sup_qstat_q {
	char name[HIVE_NAME_MAX + 2]; /* capability, or "@agent" */
	unsigned prio;
	char key[HIVE_KEY_MAX];
	int64_t length;               /* XLEN (entries kept, acknowledged or not) */
	int64_t pending;              /* delivered to a worker, not acknowledged */
	int64_t lag;                  /* not yet delivered; -1: Redis cannot tell */
	int64_t consumers;
	uint64_t oldest_ms;           /* entry time of the oldest task not
	                               * finished (queued or pending); 0 none */
	int has_group;                /* the workers group exists */
	char last_id[HIVE_ENTRY_ID_MAX + 1];  /* its last-delivered id */
};

struct sup_qstat_sample {
	struct sup_qstat_q *q;
	size_t n;
	uint64_t at_ms;               /* when it was taken (Unix ms) */
	int64_t dead;                 /* XLEN of <p>:dead; -1 unknown */
};

struct sup_qstat;
struct rconn;
/* Sample every second through rc (lent; freed after the poller, whose
 * round in flight its NULL replies end). */
struct sup_qstat *sup_qstat_new(struct sup *, struct rconn *rc);
void sup_qstat_free(struct sup_qstat *);
/* The configured queues changed (a reload): the next round follows. */
void sup_qstat_reconfigure(struct sup_qstat *);
/* The last complete sample, NULL before the first. */
const struct sup_qstat_sample *sup_qstat_last(const struct sup_qstat *);
/* RSS in kB of pid (0: hived itself) from /proc; 0 when unknown. */
uint64_t sup_rss_kb(pid_t pid);

/* ---- metrics.c ---- */

/* Append s to b as a Prometheus label value: \\, \" and \n escaped,
 * bytes that are not UTF-8 as U+FFFD.  -1: out of memory. */
struct hbuf;
int sup_metrics_label(struct hbuf *b, const char *s);
/* The whole of GET /metrics into b.  -1: out of memory. */
int sup_metrics_render(struct sup *, struct hbuf *b);

/* ---- output.c ---- */

/* One line of an instance's output, one allocation. */
struct sup_outline {
	uint64_t at_ms;               /* when hived got it, Unix ms */
	char *task;                   /* the task it is about, NULL: unknown */
	char *text;
	char buf[];                   /* task, then text, NUL-terminated */
};

/* An OUTPUT frame of in's worker: keep, log and publish its line (and
 * log what the worker dropped). */
void sup_output_add(struct sup_inst *, const struct hive_output *);
void sup_output_free(struct sup_output *);
/* Lines in's ring keeps: its agent's output_lines, else [hive]'s. */
unsigned sup_output_cap(const struct sup_inst *);
/* Lines kept now, and the i-th of them (0: the oldest; NULL past them). */
unsigned sup_output_len(const struct sup_inst *);
const struct sup_outline *sup_output_line(const struct sup_inst *,
    unsigned i);
/* {"agent","instance","task","text","at"}: the event's data, and a line
 * of GET /agents/NAME/output.  NULL: out of memory. */
struct json_t;
struct json_t *sup_output_json(const struct sup_inst *,
    const struct sup_outline *);

/* ---- hived.c ---- */

struct sup {
	struct ev_loop *loop;
	char *conf_path;
	struct sup_cref *cref;            /* the configuration in force */
	struct sup_agents agents;
	struct sup_memstore *mem;
	struct sup_http *http;
	struct sup_store *store;         /* Redis and PostgreSQL (store.c) */
	struct sup_qstat *qstat;          /* the queues' state (qstat.c) */
	struct sup_events *events;        /* live events (events.c) */
	int exit_code;                    /* of hived, once stopped */
	const char *port_file;            /* --port-file: write the HTTP port */
	char token[SUP_TOKEN_MAX];        /* "" : every POST is refused */

	ev_signal sig_term, sig_int, sig_hup, sig_usr1;
	ev_child child;
	ev_timer hk;
	ev_tstamp started;
	struct sup_spawnq spawnq;         /* instances waiting for their fork */
	unsigned nqueued;
	ev_idle spawn_idle;               /* on only while spawnq is not empty */

	int stopping;                     /* SIGTERM/SIGINT: draining to exit */
	int held_all;                     /* stop-all, until start-all */
	int ready_sent;                   /* READY=1 sent (start-up done) */
	int devnull;                      /* stdin of workers, CLOEXEC */
	struct rlimit nofile;             /* RLIMIT_NOFILE as hived got it:
	                                   * workers get it back (spawn.c) */
	unsigned nchildren;               /* workers forked and not reaped */
	uint64_t watchdog_usec;           /* 0: no systemd watchdog */
	ev_tstamp trimmed;                /* last malloc_trim (hived.c) */
	char status[160];                 /* last STATUS= sent */
	char http_started[64];            /* the http = the API listens on
	                                   * ("": off); reload cannot move it */
	int log_format_arg, log_time_arg; /* --log-format, --log-time (enum
	                                   * log_format, log_time): over the
	                                   * configuration's; -1: not given */
};

struct sup *sup_new(const char *conf_path, struct hive_conf *conf,
    const char *port_file);
void sup_free(struct sup *);
/* Run until a graceful stop has reaped every worker. */
int sup_run(struct sup *);
/* An instance changed state (agent.c calls this): READY=1 when due,
 * exit when stopping and no worker is left. */
void sup_state_changed(struct sup *);
/* What a reload did, for POST /reload's answer. */
enum sup_reload_status {
	SUP_RELOAD_OK = 0,            /* message: "added=.. changed=.. ..." */
	SUP_RELOAD_INVALID,           /* the file is bad: errors lists why */
	SUP_RELOAD_REFUSED,           /* a key only a restart can change */
	SUP_RELOAD_STOPPING,          /* hived is stopping */
};

struct sup_reload_res {
	enum sup_reload_status status;
	struct conf_errors errors;    /* INVALID: "file:line: message" each */
	char message[256];            /* the summary, or why nothing changed */
};

/* SIGHUP and POST /reload: 0 reloaded, -1 the old configuration is kept.
 * res may be NULL; else free it with sup_reload_res_free. */
int sup_reload(struct sup *, struct sup_reload_res *res);
void sup_reload_res_free(struct sup_reload_res *);
void sup_shutdown(struct sup *);
/* POST /stop-all, /start-all (who: for the log): the instances each
 * applied to.  bound_ms: drain this long before SIGKILL; 0: stop_timeout. */
unsigned sup_stop_all(struct sup *, unsigned bound_ms, const char *who);
unsigned sup_start_all(struct sup *, const char *who);
/* "3 agents: 2 ready, 1 busy, 0 failed" */
void sup_summary(struct sup *, char *buf, size_t len);
/* Counts of instances by state; returns the number of instances. */
unsigned sup_count_states(struct sup *, unsigned counts[SUP_ST_COUNT]);
/* The token: the first line of path, blanks around it removed, whole into
 * buf (len with its NUL); a longer one, an empty file, a directory: -1,
 * logged with the file's name. */
int sup_read_token(const char *path, char *buf, size_t len);

#endif /* HIVE_HIVED_H */
