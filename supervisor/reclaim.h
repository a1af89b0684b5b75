/*
 * reclaim.h - no task stays with a worker that is gone; no stream grows
 * without end.
 *
 * Liveness, not the clock, decides when a task is taken back from its
 * worker (a task that runs for an hour is not run twice for being slow):
 *
 *  - every worker keeps a key <p>:alive:<consumer> alive while it runs
 *    (refreshed every heartbeat, expires after a few seconds);
 *  - hived keeps <p>:host:<host> alive the same way;
 *  - a consumer with pending entries and no alive key is dead: its
 *    entries are claimed (XCLAIM, atomic: only one host gets each) and
 *    requeued with the attempt count, or dead-lettered past max attempts;
 *  - hived calls sup_reclaim_consumer() at once when it saw a worker die
 *    and will not start it again right away (backoff, quarantine, removed).
 *
 * The claim only takes entries idle for at least as long as the consumer
 * has been dead, so an entry that a freshly restarted worker of the same
 * name has just re-read is left with it.
 *
 * Trimming: a stream is cut (XTRIM MINID) below the oldest entry that some
 * consumer group has not acknowledged or not yet read, and never within
 * the retention time.
 */
#ifndef HIVE_RECLAIM_H
#define HIVE_RECLAIM_H

#include <ev.h>
#include <stdint.h>

struct sup_reclaim;

struct sup_reclaim_opts {
	const char *redis;
	const char *prefix;
	const char *host;
	unsigned alive_ttl_ms;       /* 5000: host key lifetime */
	unsigned scan_ms;            /* 2000: how often dead consumers are sought */
	unsigned trim_ms;            /* 30000: how often streams are trimmed */
	unsigned retain_ms;          /* 600000: entries younger are never trimmed */
	unsigned max_attempts;       /* 3: when neither task nor agent says */
	/* The max_attempts setting of an agent, 0 if unknown here. */
	unsigned (*agent_max_attempts)(const char *agent, void *arg);
	void *arg;
};

struct sup_reclaim_stats {
	uint64_t requeued;
	uint64_t dead;               /* past max attempts, or malformed */
	uint64_t trimmed;            /* XTRIM calls that removed something */
	uint64_t scans;
};

struct sup_reclaim *sup_reclaim_new(struct ev_loop *loop,
    const struct sup_reclaim_opts *opts);
void sup_reclaim_free(struct sup_reclaim *);
/* hived saw this worker ("agent/n@host") die at dead_ms (unix ms) and does
 * not restart it now: take its pending entries back. */
void sup_reclaim_consumer(struct sup_reclaim *, const char *consumer,
    uint64_t dead_ms);
/* Run one pass (dead consumers and trimming) now, e.g. from a test. */
void sup_reclaim_kick(struct sup_reclaim *);
void sup_reclaim_stats(const struct sup_reclaim *, struct sup_reclaim_stats *);

#endif
