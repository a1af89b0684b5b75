/*
 * worker.h - hive-worker's private header: every type and every function
 * of the worker, grouped by the file that defines them.  Read it as the
 * map of the program:
 *
 *   worker.c          main, command line (one option table), the loop,
 *                     signals, the one housekeeping timer, drain and exit
 *   phase.c/.h        the worker's lifecycle: phases and their table
 *   task.c            a task's life: backlog -> running -> out queue,
 *                     the JSON line a handler gets, turning a handler's
 *                     answer into an encoded result
 *   redis.c           three Redis connections (one rconn_group): setup,
 *                     the liveness key, our pending entries, pulls,
 *                     broadcasts
 *   publish.c         results, dead letters and acks, one MULTI/EXEC per
 *                     batch; a task's progress and chunks to its output
 *                     stream, coalesced
 *   link.c            the socketpair to hived (frames, heartbeats)
 *   spawn.c           fork+exec of handlers, careful about fds and signals
 *   handler_stream.c  mode=stream: one long-lived handler, JSON lines
 *   handler_exec.c    mode=exec: one process per task
 *   answer.c          what a handler wrote, parsed into an answer (no
 *                     worker state: tests/fuzz/fuzz_handler.c runs it)
 *   output.c          handlers' stderr: lines, rate-bounded, to hived
 *
 * From common/: struct hbuf and utf8_seq (util.h), the Redis connections
 * (rconn.h), the group reads of the streams (sreader.h), the log (log.h).
 *
 * A task lives on exactly one of three lists:
 *
 *   backlog --dispatch--> running --result--> outq --EXEC ok--> freed
 *      ^                     |                 |
 *      +--handler died-------+                 +--(a MULTI batch in flight;
 *         (attempt + 1)                            back to outq when the
 *                                                  connection is lost)
 *
 * It is XACKed only by the MULTI/EXEC that publishes its result, so until
 * then it stays in Redis' pending list of this consumer: a worker that dies
 * loses nothing, its successor (same consumer name) re-reads and resumes,
 * once the predecessor is gone (redis.c, "A predecessor of the same
 * name").
 *
 * Errors come in two tiers, and they are not hived's:
 *
 *   - Whatever the outside world does is survived: Redis lost (every
 *     connection dropped, reconnected after a backoff, set up anew), a
 *     handler that dies, hangs or writes garbage (its task fails or is
 *     retried, the handler restarted with a backoff), a task that does
 *     not decode (dead letter).  log_warn/log_warnx, then go on.
 *   - Out of memory, and a broken invariant (our own frame or result out
 *     of its limits), end the worker: fatal/fatalx, exit 1, also in the
 *     steady state.  hived restarts it, and the restart is the recovery:
 *     nothing was acknowledged that was not published, so the new worker
 *     re-reads its pending entries and resumes them.  Every fatal names
 *     the agent and the operation that failed.
 *
 * hived never dies in the steady state (it supervises everything else);
 * a worker may, because hived is there to start it again.
 */
#ifndef HIVE_WORKER_H
#define HIVE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <ev.h>
#include <hiredis/async.h>
#include <jansson.h>
#include <msgpack.h>

#include "hive_proto.h"
#include "phase.h"
#include "rconn.h"
#include "util.h"

/* ---- worker.c: options and the worker ---- */

enum wrk_mode { WRK_MODE_STREAM = 0, WRK_MODE_EXEC };

#define WRK_CAPS_MAX        32
/* The streams read at most: broadcast, the direct queue, and at each
 * priority level every capability's queue and the agent's own. */
#define WRK_KEYS_MAX        (2 + HIVE_PRIO_LEVELS * (WRK_CAPS_MAX + 1))
#define WRK_CONCURRENCY_MAX 1024
/* A stream handler that died is restarted at once the first time, then
 * after this, doubling to the cap; a result from it resets the backoff. */
#define WRK_HANDLER_BACKOFF_MS     100
#define WRK_HANDLER_BACKOFF_MAX_MS 5000
/* Stopping a handler: close stdin, TERM after this grace, KILL after it
 * again. */
#define WRK_STOP_GRACE_MS   2000
/* How long a blocking XREADGROUP waits before it is re-issued. */
#define WRK_BLOCK_MS        5000
/* Entries asked for per page when re-reading the pending list. */
#define WRK_PENDING_PAGE    256
/* The liveness key <prefix>:alive:<consumer> (record/record.h) lives
 * this many heartbeats, and never less than the minimum. */
#define WRK_ALIVE_BEATS     5
#define WRK_ALIVE_MIN_MS    5000
/* A worker that finds the liveness key held by a live predecessor of its
 * name asks again this often, and says it still waits this often. */
#define WRK_ALIVE_POLL_MS   100
#define WRK_ALIVE_NOTE_MS   60000
/* The key's value: "<pid> <boot id>,<pid namespace>" (redis.c). */
#define WRK_ALIVE_VALUE_MAX 128

struct wrk_opts {
	char agent[HIVE_NAME_MAX + 1];
	unsigned instance;
	enum wrk_mode mode;
	char *caps[WRK_CAPS_MAX];
	int ncaps;
	unsigned concurrency;
	char redis[HIVE_KEY_MAX];    /* host:port or /path/to.sock */
	char prefix[HIVE_NAME_MAX + 1];
	char host[HIVE_HOST_MAX + 1];
	int fd;                      /* socketpair to hived, -1 = standalone */
	unsigned task_timeout_ms;    /* 0 = none */
	unsigned max_attempts;
	unsigned heartbeat_ms;
	int task_events;             /* --task-events: write task.* events */
	unsigned stop_timeout_ms;    /* hived's stop_timeout: how long a
	                              * predecessor of our name may take to
	                              * finish (redis.c) */
	int log_format;              /* --log-format: enum log_format */
	int log_time;                /* --log-time: enum log_time */
	unsigned output_ttl_ms;      /* [hive] output_ttl: PEXPIRE of a
	                              * task's output stream */
	int verbose;
	char **argv;                 /* the handler, NULL-terminated, borrowed */
};

/* One stream the worker reads, in the order it serves them. */
struct wrk_key {
	char name[HIVE_KEY_MAX];
	const char *group;           /* HIVE_GROUP_WORKERS or the consumer name */
	bool broadcast;
	/* Re-reading our pending entries, one page at a time. */
	char pending_after[HIVE_ENTRY_ID_MAX + 1];
};

enum wrk_out_kind {
	WRK_OUT_NONE = 0,
	WRK_OUT_RESULT,              /* XADD results (+ reply_to), XACK */
	WRK_OUT_DEAD,                /* XADD dead, XACK */
	WRK_OUT_ACK,                 /* XACK only (entry deleted from its stream) */
};

struct wrk_proc;
struct wrk;
struct wrk_taskout;

struct wrk_task {
	TAILQ_ENTRY(wrk_task) q;
	int key;                     /* index into w->keys */
	char entry[HIVE_ENTRY_ID_MAX + 1];
	char *raw;                   /* owned copy of the entry's "m" */
	size_t rawlen;
	bool decoded;                /* t is valid (and borrows raw) */
	struct hive_task t;
	char id[HIVE_ID_MAX + 1];    /* t.id, NUL-terminated ("" if unknown) */
	/* The task's traceparent, or one made for it (a task without one,
	 * or one that did not decode); its trace id is WRK_TRACE(t). */
	char tp[HIVE_TRACEPARENT_LEN + 1];
	json_t *usage;               /* the handler's answer's, or NULL */
	uint32_t attempt;            /* this run's attempt */
	uint32_t max_attempts;
	uint64_t started_ms;
	uint64_t due;                /* monotonic ms at which it times out,
	                              * 0 = never (stream mode's check reads
	                              * it; a failure's code too) */
	struct wrk_proc *proc;       /* exec mode, while running */
	/* Once finished: what to publish. */
	enum wrk_out_kind out_kind;
	enum hive_code code;         /* its result's code (NONE: ok); set
	                              * before when the worker knows early
	                              * why it fails (a payload without JSON) */
	msgpack_sbuffer out;         /* RESULT: the result, then its event
	                              * (the last evlen bytes) */
	size_t evlen;
	char *reply_to;              /* NUL-terminated copy, or NULL */
	json_t *memory;              /* memory published with it, or NULL */
	uint64_t memory_v;
	struct wrk_batch *batch;     /* the MULTI/EXEC publishing it, or NULL */
	struct wrk_taskout *taskout; /* progress/chunks it wrote, NULL = none
	                              * (publish.c) */
};

TAILQ_HEAD(wrk_task_list, wrk_task);

/* The trace id of a task for a log line: "trace=%.32s", WRK_TRACE(t). */
#define WRK_TRACE(t) PROTO_TRACE_ID((t)->tp)

/* A MULTI/EXEC in flight: its tasks stay on the out queue, marked with
 * the batch, until its reply comes. */
struct wrk_batch {
	struct wrk *w;
	int n;
};

enum wrk_conn { WRK_CONN_CMD = 0, WRK_CONN_PULL, WRK_CONN_BCAST, WRK_CONN_N };

enum wrk_redis_state {
	WRK_REDIS_DOWN = 0,          /* connections being opened, or
	                              * waiting out the group's backoff */
	WRK_REDIS_SETUP,             /* groups, liveness key, pending entries */
	WRK_REDIS_WAITING,           /* the liveness key is a live predecessor's
	                              * (same consumer name): asked again every
	                              * WRK_ALIVE_POLL_MS, nothing read */
	WRK_REDIS_UP,
};

/* The queue read in flight, on the cmd connection or the pull one. */
enum wrk_pull {
	WRK_PULL_IDLE = 0,
	WRK_PULL_PASS,               /* the non-blocking pass (cmd) */
	WRK_PULL_BLOCK,              /* the BLOCKing read (pull) */
};

/*
 * The liveness key, as far as this worker goes (redis.c): not ours until
 * the claim at the first setup succeeds (a predecessor of the same name
 * may hold it), then ours, SET at each setup and every heartbeat, until
 * the DEL after a drain.  A connection lost with the DEL in flight makes
 * it ours again: the next setup, or its expiry, settles it.
 */
enum wrk_alive {
	WRK_ALIVE_NOT_OURS = 0,
	WRK_ALIVE_OURS,
	WRK_ALIVE_DELETING,          /* DEL in flight: no more SET */
	WRK_ALIVE_DELETED,
};

/*
 * The connections' state, a phase of their own (state); what reads and
 * the liveness key are in (pull, alive).  The two bools left are facts:
 * bcast_busy, a broadcast read is outstanding (on its own connection,
 * beside any pull), and alive_warned, a failed SET was said once.
 */
struct wrk_redis {
	struct rconn_group *g;       /* the WRK_CONN_N connections */
	enum wrk_redis_state state;
	long long client_id[WRK_CONN_N];
	int setup_outstanding;       /* replies still expected during setup */
	enum wrk_pull pull;
	bool bcast_busy;
	int batches;                 /* MULTI/EXEC in flight */
	uint64_t retry_due;          /* an EXEC failed: publish again then */
	/* The liveness key: SET at setup, then every heartbeat; DEL once
	 * drained. */
	uint64_t alive_due;          /* next SET, 0 = none */
	bool alive_warned;           /* a SET failed: said once */
	/* Taking the key over from a predecessor of the same name (redis.c):
	 * nothing is re-read or pulled before it is ours. */
	enum wrk_alive alive;
	char alive_self[WRK_ALIVE_VALUE_MAX];   /* our value */
	const char *alive_where;     /* in alive_self, after the pid; "" when
	                              * this host cannot be told */
	char alive_holder[WRK_ALIVE_VALUE_MAX]; /* the predecessor's value */
	uint64_t claim_due;          /* WAITING: ask again then */
	uint64_t wait_since;         /* first found held, 0 = never */
	uint64_t wait_note_due;      /* next "still waiting" line */
	uint64_t held_since;         /* alive_holder first seen */
	int stop_sig;                /* sent to alive_holder: 0, TERM, KILL */
	uint64_t stop_at;            /* when it was sent */
	bool stop_noted;             /* "not stopped: ..." said once */
};

struct wrk_link {
	int fd;                      /* -1 = standalone */
	ev_io rio, wio;
	struct proto_framer fr;
	struct hbuf out;
	bool eof;
};

/* output.c: one handler's stderr, cut into lines. */
struct wrk_errlines {
	char buf[HIVE_OUTPUT_MAX + 1];
	size_t len;
	bool skipping;               /* dropping the rest of a cut line */
};

/* output.c: stream mode's stderr pipe (exec mode reads its own). */
struct wrk_errpipe {
	struct wrk *w;
	int fd;                      /* -1: none */
	ev_io io;
	struct wrk_errlines l;
};

enum wrk_hstate {
	WRK_H_NONE = 0,              /* not started / dead, restart_due may be set */
	WRK_H_RUNNING,
	WRK_H_STOPPING,              /* stdin closed, waiting for it to exit */
};

/* The stream-mode handler (one process). */
struct wrk_handler {
	enum wrk_hstate state;
	pid_t pid;
	int in_fd, out_fd;
	ev_io in_w, out_w;
	ev_child child_w;
	struct hbuf in;           /* lines to write to its stdin */
	struct hbuf out;          /* what it printed, not yet a whole line */
	bool skipping;               /* dropping the rest of an over-long line */
	char skip_id[HIVE_ID_MAX + 1];
	unsigned backoff_ms;
	uint64_t restart_due;        /* monotonic ms, 0 = none */
	uint64_t term_due, kill_due; /* stopping */
	/* The earliest timeout of a task in flight, 0 = none.  It may be
	 * early (that task answered since): the check then finds nothing
	 * and looks again. */
	uint64_t task_due;
	bool answered;               /* gave a result since it started */
	struct wrk_errpipe err;      /* its stderr (output.c) */
};

/* An exec-mode handler process, one per task. */
struct wrk_proc {
	struct wrk *w;
	struct wrk_task *task;
	pid_t pid;
	int in_fd, out_fd, err_fd;
	ev_io in_w, out_w, err_w;
	ev_child child_w;
	ev_timer timeout_w;
	struct hbuf in, out, err;
	struct wrk_errlines errl;    /* stderr's lines, to hived (output.c) */
	bool exited, timed_out, overflow;
	int status;
};

struct wrk {
	struct ev_loop *loop;
	struct wrk_opts o;
	char agent_inst[HIVE_AGENT_MAX + 1];   /* "name/instance" */
	char consumer[HIVE_AGENT_MAX + HIVE_HOST_MAX + 4];
	struct wrk_key *keys;
	int nkeys;
	int bcast_key;               /* index of the broadcast key */
	char results_key[HIVE_KEY_MAX];
	char dead_key[HIVE_KEY_MAX];
	char alive_key[HIVE_NAME_MAX + HIVE_AGENT_MAX + HIVE_HOST_MAX + 16];  /* <prefix>:alive:<consumer> */
	/* <prefix>:memory:<agent>/<instance>: a hash (v, m) with the memory
	 * after the last acknowledged task, written in the MULTI/EXEC that
	 * acknowledges it, read once at start (see redis.c). */
	char memory_key[HIVE_NAME_MAX + HIVE_AGENT_MAX + 16];
	bool memory_checked;         /* the memory key has been read */
	unsigned alive_ttl_ms;

	struct wrk_task_list backlog, running, outq;
	int nbacklog, nrunning, noutq, nbcast;  /* nbcast: broadcast tasks held */

	json_t *memory;              /* the agent's memory (an object) */
	char *memory_text;           /* its compact JSON, for handler lines */
	uint64_t memory_v;           /* version of the latest memory */
	uint64_t memory_sent_v;      /* last version sent to hived */
	bool have_memory;            /* hived's first MEMORY frame came (or
	                              * standalone: none comes) */

	/*
	 * The lifecycle is the phase (phase.h), changed by wrk_phase_event
	 * only.  The flags left are facts, not phases: have_memory (above:
	 * a drain may come before hived's first frame), state_dirty (hived
	 * is due a new state), wstate (the state hived was last told, which
	 * the phase and what is held decide: update_state).
	 */
	enum wrk_phase phase;
	enum hive_wstate wstate;
	bool state_dirty;
	uint64_t done;
	int exit_code;
	/* Handler exits the worker did not ask for and handler starts that
	 * failed (wrk_handler_failed), and how many of them hived was told
	 * of: hived counts each against the restart-rate limit. */
	uint64_t handler_restarts, handler_restarts_sent;

	struct wrk_redis redis;
	struct wrk_link link;
	struct wrk_handler h;        /* mode=stream */
	int nprocs;                  /* mode=exec: processes running */

	uint64_t taskout_due;        /* the earliest output flush due (a
	                              * lower bound), 0 = none (publish.c) */
	/* output.c: the rate bound of stderr lines (a token bucket) and
	 * the lines dropped that hived was not told of yet. */
	double out_tokens;
	uint64_t out_refill_ms;
	uint64_t out_dropped;

	ev_timer cron;               /* the one housekeeping timer */
	ev_prepare flush;            /* batches writes once per loop turn */
	ev_signal sigterm, sigint;
	uint64_t heartbeat_due;
};

uint64_t wrk_now(void);          /* monotonic ms */
void wrk_schedule(struct wrk *);  /* re-arm the housekeeping timer */
void wrk_state_changed(struct wrk *);
void wrk_drain(struct wrk *, const char *why);
void wrk_check_drained(struct wrk *);
void wrk_fail(struct wrk *, const char *why);  /* exit 1 from the loop */
/* The handler died without being asked to, or could not be started:
 * hived hears of it in a heartbeat at the end of this loop turn. */
void wrk_handler_failed(struct wrk *);
/* Feed ev to the lifecycle table: true when it applied (w->phase is the
 * next phase), false when it does not apply in this phase. */
bool wrk_phase_event(struct wrk *, enum wrk_phase_ev);
bool wrk_may_pull(const struct wrk *);
int wrk_set_memory(struct wrk *, json_t *memory, uint64_t v);

/* ---- task.c ---- */

struct wrk_task *wrk_task_new(struct wrk *, int key, const char *entry,
    const char *raw, size_t rawlen);
void wrk_task_free(struct wrk_task *);
/* Put a new task on the backlog (in key order), or straight on the out
 * queue if it cannot be run (malformed, deleted, out of attempts). */
void wrk_task_accept(struct wrk *, struct wrk_task *, uint32_t deliveries);
struct wrk_task *wrk_task_find(struct wrk *, int key, const char *entry);
void wrk_dispatch(struct wrk *);
/* The timeout of a task in ms: its own timeout_ms, else --task-timeout;
 * 0 = none. */
unsigned wrk_task_timeout(const struct wrk *, const struct wrk_task *);
/* The JSON line for a handler, with '\n'; appended to b. */
int wrk_task_line(struct wrk *, struct wrk_task *, struct hbuf *b,
    char *err, size_t errlen);
/* Finish a running task: status, result (borrowed, may be NULL), error
 * text (NULL when ok), memory (borrowed, NULL = unchanged).  Moves it to
 * the out queue. */
void wrk_task_finish(struct wrk *, struct wrk_task *, enum hive_status,
    json_t *result, const char *error, json_t *memory);
/* The usage the handler reported for t (borrowed, NULL = none), put in
 * its result by the wrk_task_finish that follows. */
void wrk_task_usage(struct wrk_task *, json_t *usage);
/* Finish with an error text built like printf. */
void wrk_task_fail(struct wrk *, struct wrk_task *, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Give up on a task: dead letter with code and reason, then XACK. */
void wrk_task_dead(struct wrk *, struct wrk_task *, enum hive_code,
    const char *reason);
/* A running task goes back to the head of the backlog (handler died). */
void wrk_task_retry(struct wrk *, struct wrk_task *);
/* The EXEC that published it succeeded. */
void wrk_task_acked(struct wrk *, struct wrk_task *);

/* ---- redis.c ---- */

void wrk_redis_start(struct wrk *);
void wrk_redis_stop(struct wrk *);
void wrk_redis_cron(struct wrk *, uint64_t now);
uint64_t wrk_redis_next_due(const struct wrk *);
void wrk_pull(struct wrk *);
/* One of the connections (rconn_cmd & co refuse while it is down). */
struct rconn *wrk_redis_conn(const struct wrk *, enum wrk_conn);
void wrk_redis_flush(struct wrk *);  /* write what this turn queued, now */
void wrk_redis_unblock(struct wrk *);  /* end blocking reads (drain) */
bool wrk_redis_idle(const struct wrk *);
/* Drained: DEL the liveness key.  true once it is gone (or Redis is down
 * and it will expire by itself); false while the DEL is in flight, whose
 * reply calls wrk_check_drained again. */
bool wrk_redis_forget(struct wrk *);

/* ---- publish.c ---- */

void wrk_publish(struct wrk *);  /* send the out queue in one MULTI/EXEC */

/*
 * A task's output stream <prefix>:output:<id> (docs/PROTOCOL.md): what a
 * stream handler writes for a task in flight is held per task and
 * written at most once per WRK_TASKOUT_INTERVAL_MS (chunks joined in
 * order, the latest progress only), its end in the MULTI/EXEC of the
 * result, before the result.  Chunk text held past WRK_TASKOUT_HELD_MAX
 * bytes between two writes is dropped (counted in the end entry).
 */
#define WRK_TASKOUT_INTERVAL_MS 50
#define WRK_TASKOUT_HELD_MAX    (64u << 10)
#define WRK_TASKOUT_MAXLEN      1000      /* XADD MAXLEN ~ */
/* A progress object (borrowed, may be NULL) and/or a chunk (a JSON
 * string, borrowed, may be NULL) for t. */
void wrk_taskout_add(struct wrk *, struct wrk_task *, json_t *progress,
    json_t *chunk);
void wrk_taskout_free(struct wrk_taskout *);
uint64_t wrk_taskout_next_due(const struct wrk *);

/* ---- link.c ---- */

/* 0, or -1 with errno when fd is not a usable socket. */
int wrk_link_open(struct wrk *, int fd);
void wrk_link_close(struct wrk *);
void wrk_link_hello(struct wrk *);
void wrk_link_heartbeat(struct wrk *);
void wrk_link_memory(struct wrk *, json_t *memory, uint64_t v);
/* An OUTPUT frame: task NULL for none, text NULL for a count alone. */
void wrk_link_output(struct wrk *, const struct wrk_task *task,
    const char *text, size_t len, uint64_t dropped);
bool wrk_link_flushed(const struct wrk *);

/* ---- spawn.c ---- */

/*
 * Run argv in a new process group with pipes for the fds asked for (NULL:
 * the child inherits ours).  The parent's ends are non-blocking and
 * close-on-exec.  Returns the pid once the child has exec'd, or -1 with
 * errno (and the reason logged) when the pipes or the exec failed.
 */
pid_t wrk_spawn(char *const argv[], int *in_fd, int *out_fd, int *err_fd);
/* The same with the environment envp instead of the worker's. */
pid_t wrk_spawn_env(char *const argv[], char *const envp[], int *in_fd,
    int *out_fd, int *err_fd);
/* Resident set size of pid in KiB, 0 if unknown. */
uint64_t wrk_rss_kb(pid_t pid);

/* ---- handler_stream.c ---- */

void wrk_stream_init(struct wrk *);
int wrk_stream_start(struct wrk *);
bool wrk_stream_ready(const struct wrk *);
int wrk_stream_send(struct wrk *, struct wrk_task *);
void wrk_stream_flush(struct wrk *);
void wrk_stream_stop(struct wrk *);
void wrk_stream_kill(struct wrk *);
void wrk_stream_cron(struct wrk *, uint64_t now);
uint64_t wrk_stream_next_due(const struct wrk *);
bool wrk_stream_gone(const struct wrk *);

/* ---- handler_exec.c ---- */

int wrk_exec_start(struct wrk *, struct wrk_task *);
void wrk_exec_kill_all(struct wrk *);

/* ---- output.c ---- */

/* Handlers' stderr lines to hived: at most WRK_OUTPUT_RATE a second per
 * worker on average, WRK_OUTPUT_BURST at once (docs/HANDLERS.md). */
#define WRK_OUTPUT_RATE  100
#define WRK_OUTPUT_BURST 200
/* The end of a line cut at HIVE_OUTPUT_MAX bytes. */
#define WRK_OUTPUT_CUT   " [cut]"

void wrk_output_init(struct wrk *);
/* n bytes of a handler's stderr.  task: in exec mode the task of the
 * process that wrote them (NULL: none); stream mode passes NULL and the
 * rule is its own (the one task in flight, if only one is). */
void wrk_output_feed(struct wrk *, struct wrk_errlines *,
    const struct wrk_task *task, const char *p, size_t n);
/* The handler is gone: its last line, even without a newline. */
void wrk_output_end(struct wrk *, struct wrk_errlines *,
    const struct wrk_task *task);
/* Tell hived of lines dropped since the last frame (the heartbeat). */
void wrk_output_report(struct wrk *);
void wrk_errpipe_init(struct wrk_errpipe *, struct wrk *);
/* Watch e->fd (set by wrk_spawn), if any. */
void wrk_errpipe_start(struct wrk_errpipe *);
/* Read what is in the pipe now (before an answer on stdout is taken). */
void wrk_errpipe_poll(struct wrk_errpipe *);
/* Read what is left, send the last line, close; nothing when closed. */
void wrk_errpipe_close(struct wrk_errpipe *);

/* ---- answer.c ---- */

/* A stream handler's line is at most as long as the biggest result. */
#define WRK_LINE_MAX     HIVE_RESULT_MAX
/* Bytes of a handler's output quoted in an error text or a log line, and
 * the size of a buffer that holds such an excerpt whole. */
#define WRK_EXCERPT_MAX  120
#define WRK_EXCERPT_SIZE (WRK_EXCERPT_MAX + 8)

/* A handler's answer to one task. */
struct wrk_answer {
	char id[HIVE_ID_MAX + 1];    /* the task answered, "" if unknown */
	bool id_sure;                /* id is a valid task id read from a
	                              * JSON object, not a guess */
	enum hive_status status;
	json_t *result;              /* owned, NULL = none */
	json_t *memory;              /* owned, an object; NULL = unchanged */
	json_t *usage;               /* owned, NULL = none (checked when
	                              * the result is made: task.c) */
	char error[HIVE_ERROR_MAX];  /* status error: why (never ""), else "" */
	/* An output line (no "status"): owned, NULL = none. */
	json_t *progress;            /* an object */
	json_t *chunk;               /* a string */
};

/*
 * A stream handler's output line (without its '\n').  Returns 0 with *a
 * the answer; 1 for a blank line (nothing in *a); 2 for an output line
 * (an "id", no "status", a "progress" and/or a "chunk": a->progress and
 * a->chunk, either NULL when absent or not of its type, and then why
 * says so: the rest is kept, the line fails no task); -1 when it is not
 * a valid answer: why is the error text for the task it belongs to, and
 * a->id that task when it can be told (read from the JSON, or guessed
 * from a line that starts {"id":"...").  Clear *a in every case.
 */
int wrk_answer_line(const char *line, size_t len, struct wrk_answer *a,
    char *why, size_t whylen);
/*
 * An exec handler's whole stdout, after it exited 0 (see handler_exec.c
 * for the forms it may take).  0 with *a (status ok, no id), or -1 with
 * why.  Clear *a in every case.
 */
int wrk_answer_exec(const char *out, size_t len, struct wrk_answer *a,
    char *why, size_t whylen);
void wrk_answer_clear(struct wrk_answer *);
/* Cut the text s so that strlen(s) < size, on a UTF-8 character
 * boundary. */
void wrk_text_fit(char *s, size_t size);
/*
 * Up to WRK_EXCERPT_MAX bytes of what a handler wrote, made safe for an
 * error text or a log line: UTF-8 characters are kept, control
 * characters and bytes that are not UTF-8 become '?', and "..." marks a
 * cut.  out is always NUL-terminated; size WRK_EXCERPT_SIZE holds it all.
 */
void wrk_excerpt(const char *p, size_t len, char *out, size_t size);

#endif /* HIVE_WORKER_H */
