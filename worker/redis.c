/*
 * redis.c - the worker's three Redis connections, all on the loop:
 *
 *   cmd    setup (names, liveness key, groups, our pending entries),
 *          the non-blocking pull pass over the queue streams in priority
 *          order, MULTI/EXEC batches that publish results and acknowledge
 *          tasks, dead letters, the liveness key's refresh, CLIENT UNBLOCK
 *   pull   a BLOCKing read over every queue stream, when the pass found
 *          them all empty
 *   bcast  a BLOCKing read of the broadcast stream in this instance's own
 *          group (its group name differs, so it cannot share the read)
 *
 * A blocking read holds its connection, hence three.  The pass shares the
 * cmd connection with the results: when a task ends, the pass that fills
 * its slot and the MULTI/EXEC that publishes its result leave in one write
 * (wrk_redis_flush), and the next task comes back with the EXEC's reply.
 *
 * They go up and down together, one rconn_group (common/rconn.h): when
 * one is lost, or a reply says the setup or a read cannot go on, all are
 * dropped, and after a backoff (100 ms doubling to 5 s, reset once a
 * setup succeeds) all are opened again and set up anew.  Nothing is lost
 * meanwhile: tasks we hold stay pending in Redis, results wait in the out
 * queue and are published after the reconnect, and setup re-reads our
 * pending entries (skipping those we hold) in case a reply was lost.
 *
 * The liveness key <prefix>:alive:<consumer> = "<pid> <boot id>,<pid
 * namespace>", with a time to live of WRK_ALIVE_BEATS heartbeats (at
 * least WRK_ALIVE_MIN_MS), tells hived's reclaimer that this consumer's
 * pending entries are in hands (record/record.h), and a new worker
 * of the same name that its predecessor still runs them (below).  It is
 * taken at setup, before our pending entries are re-read, so that a
 * reclaimer never takes back what we are resuming; refreshed every
 * heartbeat from the housekeeping timer; deleted after a drain if it is
 * still ours.  A worker that is killed leaves it to expire.
 *
 * A predecessor of the same name.  When hived dies its workers drain and
 * exit; a new hived at once starts workers with the same consumer names,
 * whose pending entries are the very tasks the old ones are finishing.
 * So a worker takes the key only when it is missing or its own (one
 * EVAL), and until it has, reads nothing: no pending entries, no new
 * ones, no broadcasts (state WAITING, STARTING to hived).  It asks again
 * every WRK_ALIVE_POLL_MS, and takes the key once the predecessor has
 * deleted it at its exit or it expired (the predecessor was killed on
 * another host, or its pid cannot be checked).  A task is not run twice
 * for being slow: as long as the predecessor lives it refreshes the key,
 * and we wait.  But not forever: a predecessor whose handler hangs would
 * never finish (its hived, which would have killed it after stop_timeout,
 * is gone), and we would never be ready.  So after --stop-timeout (the
 * same stop_timeout) of waiting for one holder, a predecessor in our pid
 * space is stopped (alive_holder_stop) and we take over.  A predecessor
 * killed on this host (the common case: a worker crashed and hived
 * restarts it in milliseconds) would still hold the key for its time to
 * live, seconds; its value names its pid and this host's pid space, and
 * when the kernel has no such pid the worker takes the key over at once,
 * in the same EVAL that checks the value is still that one.  A pid
 * reused since only makes it wait for the expiry.
 *
 * The wait is for a worker's start.  A worker that held the key, lost
 * Redis and reconnects sets it again unconditionally: it holds tasks of
 * this consumer already (limit: if its key expired meanwhile and a
 * successor took over, both run those tasks; only an outage longer than
 * the time to live that overlaps a hived restart gets there).
 *
 * hiredis runs every outstanding callback with a NULL reply when its
 * context goes away; such callbacks only undo their bookkeeping, they
 * never send (the context is being freed), and they find the worker in
 * their priv, if at all: rconn_arg(ac) is NULL then.  Everything that
 * the whole connection held is undone once, in redis_went_down.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "rconn.h"
#include "sreader.h"
#include "worker.h"

static void redis_down(struct wrk *, const char *why);
static void alive_stamp(struct wrk *);

/* ---- connecting: an rconn_group ---- */

static void redis_setup(struct wrk *);

/* The worker of a reply's connection (never NULL but for a NULL reply). */
static struct wrk *
conn_wrk(const redisAsyncContext *ac)
{
	return rconn_arg(ac);
}

struct rconn *
wrk_redis_conn(const struct wrk *w, enum wrk_conn i)
{
	return rconn_group_member(w->redis.g, (int)i);
}

static struct rconn *
conn(const struct wrk *w, enum wrk_conn i)
{
	return wrk_redis_conn(w, i);
}

/*
 * Every connection is gone (their callbacks in flight have had their NULL
 * reply): forget what they held; rconn reconnects them all after its
 * backoff.
 */
static void
redis_went_down(struct wrk *w)
{
	struct wrk_redis *r = &w->redis;

	r->state = WRK_REDIS_DOWN;
	r->pull = WRK_PULL_IDLE;
	r->bcast_busy = false;
	if (r->alive == WRK_ALIVE_DELETING)
		r->alive = WRK_ALIVE_OURS;   /* or it expires by itself */
	wrk_schedule(w);
	wrk_state_changed(w);
}

static void
on_group(struct rconn_group *g, int up, void *arg)
{
	struct wrk *w = arg;

	if (up) {
		for (int i = 0; i < WRK_CONN_N; i++)
			w->redis.client_id[i] = 0;
		redis_setup(w);
	} else
		redis_went_down(w);
}

/*
 * Drop every connection and retry after the backoff (why: for the log).
 * Callable from any hiredis callback: redisAsyncFree of the context whose
 * callback runs is deferred by hiredis until that callback returns.
 */
static void
redis_down(struct wrk *w, const char *why)
{
	if (w->redis.state != WRK_REDIS_DOWN)
		rconn_group_down(w->redis.g, why);
}

void
wrk_redis_start(struct wrk *w)
{
	static const char *const conn_name[WRK_CONN_N] = {
		[WRK_CONN_CMD] = "cmd", [WRK_CONN_PULL] = "pull",
		[WRK_CONN_BCAST] = "bcast",
	};
	char name[HIVE_AGENT_MAX + 16], err[HIVE_KEY_MAX + 128];

	alive_stamp(w);
	snprintf(name, sizeof(name), "agent=%s redis", w->agent_inst);
	w->redis.state = WRK_REDIS_DOWN;
	if ((w->redis.g = rconn_group_new(w->loop, w->o.redis, name,
	    WRK_CONN_N, conn_name, on_group, w, err, sizeof(err))) == NULL)
		fatalx("agent=%s redis: %s", w->agent_inst, err);
}

void
wrk_redis_stop(struct wrk *w)
{
	w->redis.state = WRK_REDIS_DOWN;
	rconn_group_free(w->redis.g);
	w->redis.g = NULL;
}

/* ---- the liveness key ---- */

/*
 * Our value of the liveness key: our pid, then what tells this host's pid
 * space from any other's, the kernel's boot id and our pid namespace.  A
 * successor that finds the same second part may ask the kernel about the
 * pid.  When they cannot be read, the pid alone (alive_where ""): no
 * successor ever takes it for gone, the key expires.
 */
static void
alive_stamp(struct wrk *w)
{
	struct wrk_redis *r = &w->redis;
	char boot[64] = "", ns[64] = "";
	size_t left;
	ssize_t n;
	int fd, len;

	if ((fd = open("/proc/sys/kernel/random/boot_id",
	    O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, boot, sizeof(boot) - 1);
		boot[n > 0 ? n : 0] = '\0';
		boot[strcspn(boot, "\n ,")] = '\0';
		close(fd);
	}
	n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
	ns[n > 0 ? n : 0] = '\0';
	ns[strcspn(ns, " ")] = '\0';
	len = snprintf(r->alive_self, sizeof(r->alive_self), "%ld",
	    (long)getpid());
	left = sizeof(r->alive_self) - (size_t)len;
	r->alive_where = r->alive_self + len;
	if (boot[0] != '\0' && ns[0] != '\0' &&
	    (size_t)snprintf(r->alive_self + len, left, " %s,%s", boot, ns) < left)
		r->alive_where++;       /* past the space */
	else
		r->alive_self[len] = '\0';
}

/* The pid at the start of a liveness key's value, 0 if none. */
static long
alive_pid(const char *v)
{
	char *end;
	long pid;

	errno = 0;
	pid = strtol(v, &end, 10);
	if (errno || end == v || pid <= 0 || pid > INT_MAX ||
	    (*end != '\0' && *end != ' '))
		return 0;
	return pid;
}

/*
 * Whether the worker that wrote the value v is provably gone: it ran in
 * our pid space since this boot, and the kernel has no process of its pid
 * (a zombie still counts: hived reaps a worker before it restarts it).
 */
static bool
alive_holder_gone(const struct wrk *w, const char *v)
{
	const char *where = strchr(v, ' ');
	long pid = alive_pid(v);

	if (pid == 0 || where == NULL || w->redis.alive_where[0] == '\0' ||
	    strcmp(where + 1, w->redis.alive_where) != 0)
		return false;
	return kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

/*
 * Whether pid (checked through pidfd, which cannot be reused under us) is
 * a hive-worker of our agent and instance, by its command line as hived
 * writes it: a pid reused by another program is never signalled.
 */
static bool
alive_is_predecessor(const struct wrk *w, int pidfd, long pid)
{
	char path[64], buf[8192], want[HIVE_NAME_MAX + 64];
	size_t len = 0, wl;
	ssize_t n;
	bool agent, inst;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return false;
	while (len < sizeof(buf) - 1 &&
	    (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	/* Still the same process after the read: it was its command line. */
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == -1)
		return false;
	wl = (size_t)snprintf(want, sizeof(want), "%c--agent%c%s%c", 0, 0,
	    w->o.agent, 0);
	agent = memmem(buf, len, want, wl) != NULL;
	wl = (size_t)snprintf(want, sizeof(want), "%c--instance%c%u%c", 0, 0,
	    w->o.instance, 0);
	inst = memmem(buf, len, want, wl) != NULL ||
	    (w->o.instance == 1 && memmem(buf, len, "\0--instance\0", 12) == NULL);
	return agent && inst;
}

/*
 * The bound of the wait for a live holder of the key (value v): once we
 * have waited stop_timeout for it - what its own hived would have given
 * it to finish before SIGKILL - a predecessor in our pid space is asked
 * to leave with SIGTERM (draining already, it takes a signal as "now":
 * it kills its handlers and exits, its tasks stay pending for us), and
 * SIGKILLed with its process group WRK_STOP_GRACE_MS later if it is still
 * there.  Once its process is gone, the next ask takes the key over
 * (alive_holder_gone).  A holder beyond our reach (another host or pid
 * namespace) is waited for, and said so once.
 */
static void
alive_holder_stop(struct wrk *w, const char *v, uint64_t now)
{
	struct wrk_redis *r = &w->redis;
	const char *where = strchr(v, ' ');
	long pid = alive_pid(v);
	int pidfd, sig;

	if (now - r->held_since < w->o.stop_timeout_ms ||
	    (r->stop_sig == SIGTERM && now - r->stop_at < WRK_STOP_GRACE_MS) ||
	    r->stop_sig == SIGKILL)
		return;
	if (pid == 0 || where == NULL || r->alive_where[0] == '\0' ||
	    strcmp(where + 1, r->alive_where) != 0) {
		if (!r->stop_noted)
			log_warnx("agent=%s consumer=%s previous worker pid=%ld "
			    "still holds %s after stop_timeout, and it is not in "
			    "this pid space: waiting for its key to expire",
			    w->agent_inst, w->consumer, pid, w->alive_key);
		r->stop_noted = true;
		return;
	}
	if ((pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0)) == -1)
		return;         /* gone: the next ask takes over */
	if (!alive_is_predecessor(w, pidfd, pid)) {
		/* A pid reused since: the key's writer is gone, the key
		 * expires by itself. */
		if (!r->stop_noted)
			log_info("agent=%s consumer=%s pid=%ld of %s is not a "
			    "worker of %s: not signalled, waiting for the key to "
			    "expire", w->agent_inst, w->consumer, pid,
			    w->alive_key, w->agent_inst);
		r->stop_noted = true;
		close(pidfd);
		return;
	}
	sig = r->stop_sig == 0 ? SIGTERM : SIGKILL;
	log_warnx("agent=%s consumer=%s previous worker pid=%ld still runs "
	    "after %llu ms (stop_timeout %u ms): sending %s", w->agent_inst,
	    w->consumer, pid, (unsigned long long)(now - r->held_since),
	    w->o.stop_timeout_ms, sig == SIGTERM ? "TERM" : "KILL");
	/* The group first, while its leader (the worker: hived made it a
	 * session leader) is known to live, so the group is its. */
	if (sig == SIGKILL)
		kill(-(pid_t)pid, SIGKILL);
	if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == -1 &&
	    errno != ESRCH)
		log_warn("agent=%s signal pid=%ld", w->agent_inst, pid);
	close(pidfd);
	r->stop_sig = sig;
	r->stop_at = now;
}

/*
 * Take the key: SET it (with its time to live) if it is missing, ours, or
 * exactly ARGV[3] (a value whose worker is provably gone, "" = none), and
 * return 1; else return the value of the worker that holds it.
 */
static const char claim_script[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v and v ~= ARGV[1] and (ARGV[3] == '' or v ~= ARGV[3]) then "
    "  return v "
    "end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "return 1";

static void claim_reply(redisAsyncContext *, void *, void *);

static void
claim_send(struct wrk *w, const char *gone)
{
	char ttl[16];

	snprintf(ttl, sizeof(ttl), "%u", w->alive_ttl_ms);
	rconn_cmd(conn(w, WRK_CONN_CMD), claim_reply, NULL,
	    "EVAL %s 1 %s %s %s %s", claim_script, w->alive_key,
	    w->redis.alive_self, ttl, gone);
}

static void
alive_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wrk *w;
	redisReply *r = reply;

	if (r == NULL)
		return;
	w = conn_wrk(ac);
	if (r->type == REDIS_REPLY_ERROR) {
		/* Without it the reclaimer takes our tasks back: say so,
		 * once, and keep trying. */
		if (!w->redis.alive_warned)
			log_warnx("agent=%s redis SET %s: %s", w->agent_inst,
			    w->alive_key, r->str);
		w->redis.alive_warned = true;
		return;
	}
	if (w->redis.alive_warned)
		log_info("agent=%s liveness key %s set again", w->agent_inst,
		    w->alive_key);
	w->redis.alive_warned = false;
}

/* SET the liveness key; the reply goes to cb (setup) or alive_reply. */
static void
alive_set(struct wrk *w, redisCallbackFn *cb, void *priv)
{
	char ttl[16];

	snprintf(ttl, sizeof(ttl), "%u", w->alive_ttl_ms);
	rconn_cmd(conn(w, WRK_CONN_CMD), cb, priv,
	    "SET %s %s PX %s", w->alive_key, w->redis.alive_self, ttl);
	w->redis.alive_due = wrk_now() + w->o.heartbeat_ms;
	wrk_schedule(w);        /* after a reconnect nothing else may */
}

static void
alive_del_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wrk *w;
	redisReply *r = reply;

	if (r == NULL)
		return;         /* connection lost: the key expires by itself */
	w = conn_wrk(ac);
	if (r->type == REDIS_REPLY_ERROR)
		log_warnx("agent=%s redis DEL %s: %s", w->agent_inst,
		    w->alive_key, r->str);
	w->redis.alive = WRK_ALIVE_DELETED;
	wrk_check_drained(w);
}

bool
wrk_redis_forget(struct wrk *w)
{
	struct wrk_redis *r = &w->redis;

	if (r->alive == WRK_ALIVE_DELETED || r->alive == WRK_ALIVE_NOT_OURS ||
	    r->state != WRK_REDIS_UP)
		return true;
	if (r->alive == WRK_ALIVE_OURS) {
		r->alive = WRK_ALIVE_DELETING;
		r->alive_due = 0;
		/* Only if it is still ours: a new worker of the same name
		 * may have taken it since, had it expired (we lost Redis
		 * for longer than its time to live). */
		rconn_cmd(conn(w, WRK_CONN_CMD), alive_del_reply, NULL,
		    "EVAL %s 1 %s %s", "if redis.call('GET', KEYS[1]) == "
		    "ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
		    w->alive_key, r->alive_self);
	}
	return false;
}

void
wrk_redis_cron(struct wrk *w, uint64_t now)
{
	struct wrk_redis *r = &w->redis;

	if (r->retry_due && r->retry_due <= now)
		r->retry_due = 0;   /* wrk_publish runs at the next turn */
	if ((r->state == WRK_REDIS_UP || r->state == WRK_REDIS_SETUP) &&
	    r->alive_due && r->alive_due <= now &&
	    r->alive != WRK_ALIVE_DELETING && r->alive != WRK_ALIVE_DELETED)
		alive_set(w, alive_reply, NULL);
	if (r->state == WRK_REDIS_WAITING && r->claim_due &&
	    r->claim_due <= now && wrk_phase_takes_work(w->phase)) {
		r->claim_due = 0;
		claim_send(w, "");
	}
}

uint64_t
wrk_redis_next_due(const struct wrk *w)
{
	const struct wrk_redis *r = &w->redis;
	uint64_t due = 0;

	if (r->retry_due && (!due || r->retry_due < due))
		due = r->retry_due;
	if ((r->state == WRK_REDIS_UP || r->state == WRK_REDIS_SETUP) &&
	    r->alive_due && (!due || r->alive_due < due))
		due = r->alive_due;
	if (r->state == WRK_REDIS_WAITING && r->claim_due &&
	    wrk_phase_takes_work(w->phase) &&
	    (!due || r->claim_due < due))
		due = r->claim_due;
	return due;
}

/* ---- entries ---- */

/*
 * Take the entries of one stream out of an XREADGROUP reply
 * ([[id, [field, value, ...] | nil], ...]) onto the backlog.  counts, when
 * given (re-reading our pending list), are earlier deliveries by entry id
 * (from XPENDING).  Returns the
 * number of entries, or -1 when the reply has the wrong shape.
 */
static int
take_entries(struct wrk *w, int key, const redisReply *entries,
    const redisReply *pending)
{
	const redisReply *e, *f, *m;
	const char *id;
	struct wrk_task *t;
	uint32_t deliveries;
	size_t i, j;

	if (entries->type != REDIS_REPLY_ARRAY)
		return -1;
	for (i = 0; i < entries->elements; i++) {
		e = entries->element[i];
		if ((id = sreader_entry_id(e)) == NULL ||
		    e->element[0]->len > HIVE_ENTRY_ID_MAX)
			return -1;
		/* Re-reading our pending list after a reconnect shows what
		 * we hold already; a read of new entries (">") cannot. */
		if (pending != NULL && wrk_task_find(w, key, id) != NULL)
			continue;
		f = e->element[1];
		m = rconn_entry_field(f, "m");
		deliveries = 0;
		if (pending != NULL && pending->type == REDIS_REPLY_ARRAY)
			for (j = 0; j < pending->elements; j++) {
				const redisReply *p = pending->element[j];
				if (p->type == REDIS_REPLY_ARRAY &&
				    p->elements == 4 &&
				    p->element[0]->type == REDIS_REPLY_STRING &&
				    strcmp(p->element[0]->str, id) == 0 &&
				    p->element[3]->type == REDIS_REPLY_INTEGER) {
					deliveries = (uint32_t)p->element[3]->integer;
					break;
				}
			}
		if (f->type == REDIS_REPLY_ARRAY && m == NULL) {
			/* An entry without our field: say so in the dead
			 * letter, with its first value as the raw bytes. */
			t = wrk_task_new(w, key, id,
			    f->elements >= 2 ? f->element[1]->str : "",
			    f->elements >= 2 ? f->element[1]->len : 0);
			if (t == NULL)
				fatal("agent=%s stream=%s entry=%s taking a task",
				    w->agent_inst, w->keys[key].name, id);
			if (f->elements >= 2 && f->element[1]->str == NULL)
				t->rawlen = 0;
			log_warnx("agent=%s stream=%s entry=%s reason=\"entry "
			    "has no field 'm'\"", w->agent_inst,
			    w->keys[key].name, t->entry);
			wrk_task_dead(w, t, HIVE_CODE_MISSING,
			    "entry has no field 'm'");
			continue;
		}
		t = wrk_task_new(w, key, id, m ? m->str : NULL, m ? m->len : 0);
		if (t == NULL)
			fatal("agent=%s stream=%s entry=%s taking a task",
			    w->agent_inst, w->keys[key].name, id);
		wrk_task_accept(w, t, deliveries);
	}
	return (int)i;
}

/* A read's reply (common/sreader.h): [[key, entries], ...] or nil. */
static int
take_read(struct wrk *w, const redisReply *r, int only_key)
{
	const redisReply *entries;
	const char *name;
	int n = 0, got, k;

	if (r->type == REDIS_REPLY_NIL)
		return 0;
	if (r->type != REDIS_REPLY_ARRAY)
		return -1;
	for (size_t i = 0; i < r->elements; i++) {
		if ((entries = sreader_stream(r, i, &name)) == NULL)
			return -1;
		k = only_key;
		if (k < 0)
			for (k = 0; k < w->nkeys; k++)
				if (strcmp(w->keys[k].name, name) == 0)
					break;
		if (k >= w->nkeys)
			return -1;
		if ((got = take_entries(w, k, entries, NULL)) < 0)
			return -1;
		n += got;
	}
	return n;
}

/* ---- setup: names, groups, our pending entries ---- */

/*
 * The read loop, through common/sreader as the recorder and the
 * coordinator have it: our pending entries first (setup_resume ->
 * pending_page, a page at a time), then new ones (wrk_pull, once UP); an
 * error such as NOGROUP (the stream was deleted) takes the connections
 * down, and the next setup creates the groups again (XGROUP CREATE
 * MKSTREAM, the broadcast group from "$").  Ours alone: the XPENDING
 * before each page, for the times each entry was delivered (a task's
 * attempts), which no other reader wants.
 *
 * The worker takes nobody's pending entries (no XCLAIM): a dead worker's
 * go back to the queue by hived's reclaimer (record/reclaim.c, through
 * common/sclaim), and a successor of the same name reads them here as
 * its own.
 */

static void setup_reply(redisAsyncContext *, void *, void *);
static void pending_page(struct wrk *, int key);

static void
setup_done_one(struct wrk *w)
{
	struct wrk_redis *r = &w->redis;

	if (--r->setup_outstanding > 0 || r->state != WRK_REDIS_SETUP)
		return;
	rconn_group_ready(r->g);
	if (r->alive == WRK_ALIVE_NOT_OURS) {
		/* claim_reply set claim_due. */
		r->state = WRK_REDIS_WAITING;
		wrk_schedule(w);
		return;
	}
	r->state = WRK_REDIS_UP;
	log_info("agent=%s redis ready: %d streams, %d pending tasks resumed",
	    w->agent_inst, w->nkeys, w->nbacklog + w->nrunning);
	wrk_state_changed(w);
}

static void
setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wrk *w;
	redisReply *r = reply;
	const char *what = priv;

	if (r == NULL)
		return;
	w = conn_wrk(ac);
	/* Any error, but XGROUP CREATE's BUSYGROUP: the group is there. */
	if (sreader_group_failed(r)) {
		log_warnx("agent=%s redis %s: %s", w->agent_inst, what, r->str);
		redis_down(w, what);
		return;
	}
	if (strcmp(what, "CLIENT ID pull") == 0 && r->type == REDIS_REPLY_INTEGER)
		w->redis.client_id[WRK_CONN_PULL] = r->integer;
	if (strcmp(what, "CLIENT ID bcast") == 0 && r->type == REDIS_REPLY_INTEGER)
		w->redis.client_id[WRK_CONN_BCAST] = r->integer;
	setup_done_one(w);
}

/* The XPENDING reply of a page waits here for its XREADGROUP reply. */
struct pending_page {
	struct wrk *w;
	int key;
	redisReply *pending;
};

static void
pending_xpending(redisAsyncContext *ac, void *reply, void *priv)
{
	struct pending_page *pp = priv;
	redisReply *r = reply;

	if (r == NULL)
		return;
	if (r->type == REDIS_REPLY_ARRAY) {
		/* Kept past the callback: hiredis frees replies after their
		 * callback unless told otherwise, so take a deep copy. */
		pp->pending = calloc(1, sizeof(redisReply));
		if (pp->pending == NULL)
			fatal("agent=%s stream=%s keeping XPENDING's reply",
			    pp->w->agent_inst, pp->w->keys[pp->key].name);
		pp->pending->type = REDIS_REPLY_ARRAY;
		pp->pending->elements = r->elements;
		pp->pending->element = r->element;
		/* Steal the elements: hiredis frees r itself only. */
		r->element = NULL;
		r->elements = 0;
	} else if (r->type == REDIS_REPLY_ERROR) {
		log_warnx("agent=%s redis XPENDING %s: %s", pp->w->agent_inst,
		    pp->w->keys[pp->key].name, r->str);
	}
}

static void
pending_read(redisAsyncContext *ac, void *reply, void *priv)
{
	static const redisReply no_pending = { .type = REDIS_REPLY_NIL };
	struct pending_page *pp = priv;
	struct wrk *w = pp->w;
	struct wrk_key *k = &w->keys[pp->key];
	redisReply *r = reply;
	const redisReply *entries;
	const char *name;
	int n = -1;

	if (r == NULL)
		goto out;
	if (sreader_failed(r)) {
		log_warnx("agent=%s redis XREADGROUP %s 0: %s", w->agent_inst,
		    k->name, r->str);
		redis_down(w, "reading pending entries");
		goto out;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    (entries = sreader_stream(r, 0, &name)) != NULL) {
		n = take_entries(w, pp->key, entries, pp->pending ?
		    pp->pending : &no_pending);
		if (n == WRK_PENDING_PAGE) {
			snprintf(k->pending_after, sizeof(k->pending_after),
			    "%s", sreader_entry_id(entries->element[n - 1]));
			pending_page(w, pp->key);
		}
	} else if (r->type == REDIS_REPLY_NIL) {
		n = 0;
	}
	if (n < 0) {
		log_warnx("agent=%s redis XREADGROUP %s 0: unexpected reply",
		    w->agent_inst, k->name);
		redis_down(w, "reading pending entries");
		goto out;
	}
	setup_done_one(w);
out:
	if (pp->pending != NULL)
		freeReplyObject(pp->pending);
	free(pp);
}

static void
pending_page(struct wrk *w, int key)
{
	struct wrk_key *k = &w->keys[key];
	const char *keys[1] = { k->name };
	struct sreader_read rd = { .group = k->group,
	    .consumer = w->consumer, .count = WRK_PENDING_PAGE, .pending = 1,
	    .after = k->pending_after, .nkeys = 1, .keys = keys };
	struct pending_page *pp;
	char start[HIVE_ENTRY_ID_MAX + 2], count[16];

	if ((pp = calloc(1, sizeof(*pp))) == NULL)
		fatal("agent=%s stream=%s re-reading pending entries",
		    w->agent_inst, k->name);
	pp->w = w;
	pp->key = key;
	snprintf(start, sizeof(start), "(%s", k->pending_after);
	snprintf(count, sizeof(count), "%d", WRK_PENDING_PAGE);
	/* XPENDING first: delivery counts as they were before this read
	 * (reading our history counts as a delivery too). */
	rconn_cmd(conn(w, WRK_CONN_CMD), pending_xpending, pp,
	    "XPENDING %s %s %s + %s %s", k->name, k->group, start, count,
	    w->consumer);
	sreader_send(conn(w, WRK_CONN_CMD), &rd, pending_read, pp);
	w->redis.setup_outstanding++;
}

/*
 * HMGET <memory key> v m: adopt Redis' memory if it is newer than what we
 * have (hived's copy, when its frame came first).  A key that is missing
 * (first start, Redis lost data) leaves hived's copy in force.
 */
static void
memory_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wrk *w;
	redisReply *r = reply;
	msgpack_unpacked up;
	struct proto_err err;
	json_t *mem = NULL;
	uint64_t v;

	if (r == NULL)
		return;
	w = conn_wrk(ac);
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING)
		goto done;               /* no key (or not ours): nothing newer */
	v = strtoull(r->element[0]->str, NULL, 10);
	if (v <= w->memory_v)
		goto done;
	if (proto_decode_value(r->element[1]->str, r->element[1]->len, &up,
	    &err) == -1) {
		log_warnx("agent=%s %s: not a memory, ignored", w->agent_inst,
		    w->memory_key);
		goto done;
	}
	if (up.data.type == MSGPACK_OBJECT_MAP &&
	    (mem = proto_obj_to_json(&up.data, &err)) != NULL) {
		if (wrk_set_memory(w, mem, v) == -1)
			fatal("agent=%s keeping the memory from %s",
			    w->agent_inst, w->memory_key);
		log_info("agent=%s memory_v=%llu from redis", w->agent_inst,
		    (unsigned long long)v);
		if (w->have_memory)
			wrk_link_memory(w, w->memory, w->memory_v);
	}
	json_decref(mem);
	msgpack_unpacked_destroy(&up);
done:
	w->memory_checked = true;
	setup_done_one(w);
}

/*
 * Once the liveness key is ours: the memory (first time only), then our
 * pending entries, on the cmd connection in that order.
 */
static void
setup_resume(struct wrk *w)
{
	struct wrk_redis *r = &w->redis;

	if (!w->memory_checked) {
		rconn_cmd(conn(w, WRK_CONN_CMD), memory_reply, NULL,
		    "HMGET %s v m", w->memory_key);
		r->setup_outstanding++;
	}
	for (int k = 0; k < w->nkeys; k++) {
		snprintf(w->keys[k].pending_after,
		    sizeof(w->keys[k].pending_after), "0");
		pending_page(w, k);
	}
}

/*
 * The reply to claim_send (see "A predecessor of the same name" at the
 * top of this file): 1, the key is ours; or the value of the worker
 * holding it.  Sent during the setup (one of its outstanding replies) or
 * while WAITING (then the setup resumes from here).
 */
static void
claim_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wrk *w;
	struct wrk_redis *r;
	redisReply *rp = reply;
	uint64_t now = wrk_now();

	if (rp == NULL)
		return;
	w = conn_wrk(ac);
	r = &w->redis;
	if (rp->type == REDIS_REPLY_STRING) {
		if (!r->wait_since)
			r->wait_since = now;
		if (alive_holder_gone(w, rp->str)) {
			log_info("agent=%s consumer=%s previous worker pid=%ld "
			    "is gone (no such process): taking over",
			    w->agent_inst, w->consumer, alive_pid(rp->str));
			snprintf(r->alive_holder, sizeof(r->alive_holder), "%s",
			    rp->str);
			claim_send(w, rp->str);  /* stands for this reply */
			return;
		}
		if (strcmp(r->alive_holder, rp->str) != 0) {
			snprintf(r->alive_holder, sizeof(r->alive_holder), "%s",
			    rp->str);
			r->held_since = now;
			r->stop_sig = 0;
			r->stop_noted = false;
			log_info("agent=%s consumer=%s waiting for the previous "
			    "worker pid=%ld to finish: its liveness key %s is "
			    "set; resuming and pulling nothing until it is gone",
			    w->agent_inst, w->consumer, alive_pid(rp->str),
			    w->alive_key);
			r->wait_note_due = now + WRK_ALIVE_NOTE_MS;
		} else if (r->wait_note_due <= now) {
			log_info("agent=%s consumer=%s still waiting for the "
			    "previous worker pid=%ld (%llu s)", w->agent_inst,
			    w->consumer, alive_pid(rp->str),
			    (unsigned long long)(now - r->wait_since) / 1000);
			r->wait_note_due = now + WRK_ALIVE_NOTE_MS;
		}
		alive_holder_stop(w, rp->str, now);
		r->claim_due = now + WRK_ALIVE_POLL_MS;
		if (r->state == WRK_REDIS_SETUP)
			setup_done_one(w);   /* ends in WAITING */
		else
			wrk_schedule(w);
		return;
	}
	if (rp->type != REDIS_REPLY_INTEGER) {
		log_warnx("agent=%s redis EVAL (take %s): %s", w->agent_inst,
		    w->alive_key, rp->type == REDIS_REPLY_ERROR ? rp->str :
		    "unexpected reply");
		redis_down(w, "taking the liveness key");
		return;
	}
	if (r->alive_holder[0] != '\0')
		log_info("agent=%s consumer=%s took over from the previous "
		    "worker pid=%ld after %llu ms", w->agent_inst, w->consumer,
		    alive_pid(r->alive_holder),
		    (unsigned long long)(now - r->wait_since));
	r->alive = WRK_ALIVE_OURS;
	r->alive_holder[0] = '\0';
	r->claim_due = 0;
	r->alive_due = now + w->o.heartbeat_ms;
	if (r->state == WRK_REDIS_WAITING) {
		r->state = WRK_REDIS_SETUP;
		r->setup_outstanding = 1;   /* this reply */
	}
	setup_resume(w);
	setup_done_one(w);
	wrk_schedule(w);
}

static void
redis_setup(struct wrk *w)
{
	struct wrk_redis *r = &w->redis;
	static const char *const conn_name[WRK_CONN_N] = {
		[WRK_CONN_CMD] = "cmd", [WRK_CONN_PULL] = "pull",
		[WRK_CONN_BCAST] = "bcast",
	};
	char name[sizeof(w->consumer) + 32];

	r->state = WRK_REDIS_SETUP;
	/* Hold one count until everything is sent, so that a fast reply
	 * cannot finish the setup half-way. */
	r->setup_outstanding = 1;
	for (int i = 0; i < WRK_CONN_N; i++) {
		/* A name operators (and tests) can find in CLIENT LIST. */
		snprintf(name, sizeof(name), "hive-worker:%s:%s", w->consumer,
		    conn_name[i]);
		for (char *p = name; *p; p++)
			if (*p == ' ')
				*p = '_';
		rconn_cmd(conn(w, i), setup_reply, "CLIENT SETNAME",
		    "CLIENT SETNAME %s", name);
		r->setup_outstanding++;
	}
	rconn_cmd(conn(w, WRK_CONN_PULL), setup_reply, "CLIENT ID pull",
	    "CLIENT ID");
	rconn_cmd(conn(w, WRK_CONN_BCAST), setup_reply, "CLIENT ID bcast",
	    "CLIENT ID");
	r->setup_outstanding += 2;
	for (int k = 0; k < w->nkeys; k++) {
		/* Queues are read from their start; a new instance's own
		 * broadcast group sees what is broadcast from now on. */
		sreader_group_send(conn(w, WRK_CONN_CMD), w->keys[k].name,
		    w->keys[k].group, w->keys[k].broadcast ? "$" : "0", 1,
		    setup_reply, "XGROUP CREATE");
		r->setup_outstanding++;
	}
	/*
	 * The liveness key before anything is re-read: see the top of this
	 * file.  The memory after our last acknowledged task comes next,
	 * before any task is re-read or pulled (replies come in order on
	 * this connection), and after a predecessor's exit: its last tasks
	 * wrote it.
	 */
	if (r->alive == WRK_ALIVE_NOT_OURS) {
		claim_send(w, "");
		r->setup_outstanding++;
		setup_done_one(w);
		return;
	}
	/* A reconnect: ours already (not again once a drain deleted it). */
	if (r->alive != WRK_ALIVE_DELETED) {
		alive_set(w, setup_reply, "SET alive");
		r->setup_outstanding++;
	}
	setup_resume(w);
	setup_done_one(w);
}

/* ---- pulling ---- */

static void pull_reply(redisAsyncContext *, void *, void *);

static int
pull_room(const struct wrk *w)
{
	return (int)w->o.concurrency - w->nrunning - w->nbacklog;
}

/*
 * A pass (block false) or one BLOCKing read of every queue key.  The
 * pass reads the queue keys in serving order, COUNT = the room left,
 * stopping when the room is filled (sreader_read.in_order): strict
 * priority is then exact (a lower level is read only if every higher one
 * is empty at that instant) and costs one round trip however many keys
 * there are.
 */
static void
pull_send(struct wrk *w, int count, bool block)
{
	const char *keys[WRK_KEYS_MAX];
	struct sreader_read rd = { .group = HIVE_GROUP_WORKERS,
	    .consumer = w->consumer, .count = (size_t)count,
	    .block_ms = block ? WRK_BLOCK_MS : 0, .in_order = !block,
	    .keys = keys };

	for (int k = 0; k < w->nkeys; k++)
		if (!w->keys[k].broadcast)
			keys[rd.nkeys++] = w->keys[k].name;
	w->redis.pull = block ? WRK_PULL_BLOCK : WRK_PULL_PASS;
	sreader_send(conn(w, block ? WRK_CONN_PULL : WRK_CONN_CMD), &rd,
	    pull_reply, NULL);
}

/*
 * A pass that found nothing ends in one BLOCKing read over every queue
 * key; one that found something is followed by another pass at the next
 * loop turn if room is left (more may have come meanwhile).
 */
static void
pull_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wrk *w;
	struct wrk_redis *rd;
	redisReply *r = reply;
	bool was_block;
	int n, room;

	if (r == NULL)
		return;
	w = conn_wrk(ac);
	rd = &w->redis;
	was_block = rd->pull == WRK_PULL_BLOCK;
	rd->pull = WRK_PULL_IDLE;
	if (r->type == REDIS_REPLY_ERROR) {
		/* NOGROUP: the stream was deleted (or Redis lost it); the
		 * setup after a reconnect creates the groups again. */
		log_warnx("agent=%s redis XREADGROUP: %s", w->agent_inst, r->str);
		redis_down(w, "read failed");
		return;
	}
	if ((n = take_read(w, r, -1)) < 0) {
		log_warnx("agent=%s redis XREADGROUP: unexpected reply",
		    w->agent_inst);
		redis_down(w, "read failed");
		return;
	}
	if (was_block || n > 0)
		return;                 /* the next turn starts a new pass */
	room = pull_room(w);
	if (wrk_may_pull(w) && rd->state == WRK_REDIS_UP && room > 0)
		pull_send(w, room, true);
}

static void
bcast_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wrk *w;
	redisReply *r = reply;

	if (r == NULL)
		return;
	w = conn_wrk(ac);
	w->redis.bcast_busy = false;
	if (r->type == REDIS_REPLY_ERROR) {
		log_warnx("agent=%s redis XREADGROUP %s: %s", w->agent_inst,
		    w->keys[w->bcast_key].name, r->str);
		redis_down(w, "broadcast read failed");
		return;
	}
	if (take_read(w, r, w->bcast_key) < 0) {
		log_warnx("agent=%s redis XREADGROUP %s: unexpected reply",
		    w->agent_inst, w->keys[w->bcast_key].name);
		redis_down(w, "broadcast read failed");
	}
}

void
wrk_pull(struct wrk *w)
{
	struct wrk_redis *rd = &w->redis;
	const char *bkey[1] = { w->keys[w->bcast_key].name };
	struct sreader_read bread = { .group = w->keys[w->bcast_key].group,
	    .consumer = w->consumer, .block_ms = WRK_BLOCK_MS, .nkeys = 1,
	    .keys = bkey };
	int room;

	if (rd->state != WRK_REDIS_UP || !wrk_may_pull(w))
		return;
	room = pull_room(w);
	if (rd->pull == WRK_PULL_IDLE && room > 0)
		pull_send(w, room, false);
	/* Broadcasts: at most `concurrency` held at a time. */
	if (!rd->bcast_busy && w->nbcast < (int)w->o.concurrency) {
		bread.count = (size_t)((int)w->o.concurrency - w->nbcast);
		rd->bcast_busy = true;
		sreader_send(conn(w, WRK_CONN_BCAST), &bread, bcast_reply, NULL);
	}
}

static void
unblock_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	/* 1 or 0 (it was not blocked any more): either is fine. */
}

void
wrk_redis_unblock(struct wrk *w)
{
	struct wrk_redis *rd = &w->redis;
	char id[32];

	if (rd->state != WRK_REDIS_UP)
		return;
	if (rd->pull == WRK_PULL_BLOCK && rd->client_id[WRK_CONN_PULL]) {
		snprintf(id, sizeof(id), "%lld", rd->client_id[WRK_CONN_PULL]);
		rconn_cmd(conn(w, WRK_CONN_CMD), unblock_reply, NULL,
		    "CLIENT UNBLOCK %s", id);
	}
	if (rd->bcast_busy && rd->client_id[WRK_CONN_BCAST]) {
		snprintf(id, sizeof(id), "%lld", rd->client_id[WRK_CONN_BCAST]);
		rconn_cmd(conn(w, WRK_CONN_CMD), unblock_reply, NULL,
		    "CLIENT UNBLOCK %s", id);
	}
}

/*
 * Write what this loop turn queued, now: otherwise it waits for the next
 * turn, when the loop has seen the sockets writable.  hiredis starts a
 * connection's write watcher when a command is queued and stops it once
 * the buffer is written; both happen before libev tells the kernel, so
 * this costs no epoll_ctl either.  Only on connected contexts: on one
 * still connecting, the write event is what completes the connect.
 */
void
wrk_redis_flush(struct wrk *w)
{
	if (w->redis.state != WRK_REDIS_UP &&
	    w->redis.state != WRK_REDIS_SETUP &&
	    w->redis.state != WRK_REDIS_WAITING)
		return;
	/* A failed write drops every connection (the group goes down): the
	 * state is read again each time. */
	for (int i = 0; i < WRK_CONN_N && w->redis.state != WRK_REDIS_DOWN; i++)
		rconn_flush(conn(w, i));
}

bool
wrk_redis_idle(const struct wrk *w)
{
	return w->redis.pull == WRK_PULL_IDLE && !w->redis.bcast_busy &&
	    w->redis.state != WRK_REDIS_SETUP;
}
