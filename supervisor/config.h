/*
 * config.h - hived's configuration: /etc/hive/hive.conf and agents.d/.
 *
 * INI, like systemd units and supervisord:
 *
 *   [hive]                      global settings
 *   redis = 127.0.0.1:6379
 *   [agent "reviewer"]   or   [agent:reviewer]    one section per agent
 *   command = /usr/bin/python3 /opt/agents/reviewer.py
 *
 * plus every *.conf file in the agents.d/ folder beside the main file (in
 * name order; they may hold only agent sections).  The whole configuration
 * is validated before any of it is used; every error names file:line.
 * docs/CONFIG.md documents every key and its default.
 */
#ifndef HIVE_CONFIG_H
#define HIVE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hive_proto.h"

enum hive_mode { HIVE_MODE_STREAM = 0, HIVE_MODE_EXEC };

enum hive_restart {
	HIVE_RESTART_ALWAYS = 0,     /* restart whatever the exit */
	HIVE_RESTART_ON_FAILURE,     /* restart unless it exited 0 */
	HIVE_RESTART_NEVER,
};

#define HIVE_CAPS_MAX   32
#define HIVE_ENV_MAX    64
#define HIVE_ARGV_MAX   64

struct hive_agent_conf {
	char name[HIVE_NAME_MAX + 1];
	char file[256];              /* where the section is, for messages */
	int line;
	char **argv;                 /* command, split like a shell would (quotes,
	                              * backslash) but never run by one; NULL-ended */
	enum hive_mode mode;         /* mode = stream | exec (stream) */
	char *caps[HIVE_CAPS_MAX];   /* capabilities = a, b (none: only its own
	                              * agent and direct queues) */
	int ncaps;
	unsigned instances;          /* 1 */
	unsigned concurrency;        /* 1 */
	enum hive_restart restart;   /* restart = always */
	unsigned backoff_ms;         /* backoff = 100ms: second restart's delay */
	unsigned backoff_max_ms;     /* backoff_max = 30s */
	unsigned restart_limit;      /* restart_limit = 5 restarts ... */
	unsigned restart_window_ms;  /* restart_window = 60s ... within this */
	unsigned cooldown_ms;        /* cooldown = 0: failed until an operator acts */
	unsigned heartbeat_deadline_ms; /* heartbeat_deadline = 10s */
	unsigned task_timeout_ms;    /* task_timeout = 0 (none) */
	unsigned max_attempts;       /* max_attempts = 3 */
	uint64_t max_tasks;          /* max_tasks = 0 (never recycle) */
	uint64_t max_rss_kb;         /* max_rss = 0 (no limit), e.g. 512M */
	char *env[HIVE_ENV_MAX];     /* environment = KEY=value KEY2="a b" */
	int nenv;
	char *directory;             /* directory = (hived's: NULL) */
	int autostart;               /* autostart = yes; no: starts asleep */
	uint64_t hash;               /* of every setting: what changed on reload
	                              * (also of the [hive] settings its worker
	                              * gets: redis, prefix, host, worker,
	                              * heartbeat_interval; not of file/line) */
};

struct hive_conf {
	char file[256];              /* the main file */
	char redis[HIVE_KEY_MAX];    /* redis = 127.0.0.1:6379 | /path/redis.sock */
	char prefix[HIVE_NAME_MAX + 1]; /* prefix = hive */
	char host[HIVE_HOST_MAX + 1];   /* host = gethostname() */
	char *postgres;              /* postgres = (libpq conninfo; "" = none;
	                              * never NULL) */
	char *worker_path;           /* worker = the hive-worker installed beside hived */
	char http[64];               /* http = 127.0.0.1:8420 ("" = off) */
	char *token_file;            /* token_file = (none: NULL) */
	unsigned stop_timeout_ms;    /* stop_timeout = 30s */
	unsigned heartbeat_ms;       /* heartbeat_interval = 1s (workers beat) */
	unsigned snapshots_keep;     /* snapshots_keep = 10 */
	int allow_eviction;          /* allow_eviction = no */
	int verbose;                 /* log_level = info | debug */
	struct hive_agent_conf *agents;
	size_t nagents;
};

/*
 * Load and validate path (and its agents.d/).  On success returns a new
 * config (free with conf_free).  On failure returns NULL after writing every
 * error it found, one per line as "file:line: message", to errf.
 */
struct hive_conf *conf_load(const char *path, FILE *errf);
/* The same for one file's text (len bytes, NULs allowed) named name in
 * messages, without agents.d/: for tests and the fuzz target. */
struct hive_conf *conf_load_string(const char *name, const char *text,
    size_t len, FILE *errf);
void conf_free(struct hive_conf *);
const struct hive_agent_conf *conf_agent(const struct hive_conf *, const char *name);

/* "1500ms", "2s", "5m", "1h", bare number = seconds: 0 or -1. */
int conf_parse_duration(const char *s, unsigned *ms);
/* "512K", "64M", "2G", bare number = bytes: 0 or -1; result in KiB. */
int conf_parse_size_kb(const char *s, uint64_t *kb);

#endif
