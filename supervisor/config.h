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
 * docs/CONFIG.md documents every key and its default (test_config_doc.c
 * holds it to the key tables).
 *
 * The header of libhiveconf, two files and two passes:
 *
 *   config_read.c  files -> sections: the line reader (BOM, CR, comments,
 *                  [section] headers, "key = value", continuation lines),
 *                  agents.d/, and the error list every error goes to
 *   config.c       sections -> struct hive_conf: one key table per section
 *                  drives parsing, defaults and the reload hash; the value
 *                  parsers; what involves several keys
 *
 * The library touches no file but the configuration's: the default worker
 * path is given to it (conf_set_worker_default, from main.c).
 */
#ifndef HIVE_CONFIG_H
#define HIVE_CONFIG_H

#include <stdbool.h>
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
/* Bytes in one line: far above any real value, and low enough that a line
 * past it is more likely a broken file than a setting (config_read.c). */
#define CONF_LINE_MAX   65536

/*
 * Each member is set by the key its comment names; the key's default,
 * limits and spelling are in the key tables of config.c (and in
 * docs/CONFIG.md), nowhere else.
 */
struct hive_agent_conf {
	char name[HIVE_NAME_MAX + 1];
	char file[256];              /* where the section is, for messages */
	int line;
	char **argv;                 /* command: split like a shell would (quotes,
	                              * backslash) but never run by one; NULL-ended */
	enum hive_mode mode;         /* mode */
	char *caps[HIVE_CAPS_MAX];   /* capabilities (none: only its own agent
	                              * and direct queues) */
	int ncaps;
	unsigned instances;          /* instances */
	unsigned concurrency;        /* concurrency */
	enum hive_restart restart;   /* restart */
	unsigned backoff_ms;         /* backoff: the second restart's delay */
	unsigned backoff_max_ms;     /* backoff_max */
	unsigned restart_limit;      /* restart_limit: restarts ... */
	unsigned restart_window_ms;  /* restart_window: ... within this */
	unsigned cooldown_ms;        /* cooldown; 0: failed until an operator acts */
	unsigned heartbeat_deadline_ms; /* heartbeat_deadline */
	unsigned task_timeout_ms;    /* task_timeout; 0: none */
	unsigned max_attempts;       /* max_attempts */
	uint64_t max_tasks;          /* max_tasks; 0: never recycle */
	uint64_t max_rss_kb;         /* max_rss; 0: no limit */
	char *env[HIVE_ENV_MAX];     /* environment: KEY=value each */
	int nenv;
	char *directory;             /* directory; NULL: hived's */
	int autostart;               /* autostart; 0: starts asleep */
	unsigned output_lines;       /* output_lines; 0: [hive]'s */
	uint64_t hash;               /* of every setting: what changed on reload
	                              * (also of the [hive] settings its worker
	                              * gets, CF_WORKER; not of file/line) */
};

struct hive_conf {
	char file[256];              /* the main file */
	char redis[HIVE_KEY_MAX];    /* redis: host:port or /path/redis.sock */
	char prefix[HIVE_NAME_MAX + 1]; /* prefix */
	char host[HIVE_HOST_MAX + 1];   /* host */
	char *postgres;              /* postgres: libpq conninfo; "": none;
	                              * never NULL */
	char *worker_path;           /* worker */
	char http[64];               /* http; "": off */
	char *token_file;            /* token_file; NULL: none */
	int http_auth_reads;         /* http_auth_reads: GETs need the token */
	unsigned stop_timeout_ms;    /* stop_timeout */
	unsigned heartbeat_ms;       /* heartbeat_interval (workers beat) */
	unsigned snapshots_keep;     /* snapshots_keep */
	int allow_eviction;          /* allow_eviction */
	int task_events;             /* task_events: workers write task.* */
	unsigned events_window;      /* events_window: events kept to resume */
	uint64_t events_client_buffer_kb;   /* events_client_buffer */
	unsigned events_task_rate;   /* events_task_rate: per second */
	unsigned output_ttl_ms;      /* output_ttl: tasks' output streams */
	int verbose;                 /* log_level: 0 info, 1 debug */
	int log_format;              /* log_format: enum log_format (log.h) */
	int log_time;                /* log_time: enum log_time (log.h) */
	unsigned output_lines;       /* output_lines: kept per instance */
	uint64_t worker_hash;        /* of the [hive] settings every worker is
	                              * started with (CF_WORKER): a change
	                              * restarts every agent */
	struct hive_agent_conf *agents;
	size_t nagents;
};

/* ---- config.c ---- */

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

/*
 * The errors of a load as a list: each "file:line: message", exactly the
 * lines conf_load writes, for a caller that passes them on (POST /reload
 * answers them).  conf_load_list is conf_load that fills errs (zeroed
 * first; errs->n is 0 on success).  Out of memory while listing, the
 * list holds what fitted and the load still fails or succeeds as it
 * would.
 */
struct conf_errors {
	char **v;
	size_t n;
};

struct hive_conf *conf_load_list(const char *path, struct conf_errors *errs);
void conf_errors_free(struct conf_errors *);
const struct hive_agent_conf *conf_agent(const struct hive_conf *, const char *name);

/* "1500ms", "2s", "5m", "1h", bare number = seconds: 0 or -1. */
int conf_parse_duration(const char *s, unsigned *ms);
/* "512K", "64M", "2G", bare number = bytes: 0 or -1; result in KiB. */
int conf_parse_size_kb(const char *s, uint64_t *kb);

/*
 * The worker = default of every later load: hived finds the hive-worker
 * installed beside it once at start-up (main.c), so that the start and
 * each reload agree on it.  Until set, and after conf_set_worker_default
 * (NULL), the table's default (HIVE_LIBEXECDIR/hive/hive-worker).  path is copied;
 * -1 if it is too long.
 */
int conf_set_worker_default(const char *path);

/*
 * The key tables, one per section.  Everything about a key is here:
 * parsing, its default (written as in a file, and parsed like a value
 * from one), whether a change restarts workers, and what docs/CONFIG.md
 * must say (test_config_doc.c).
 */
enum conf_kind {
	CK_TEXT,        /* char[size], checked by valid()                   */
	CK_STRING,      /* char *, any text                                  */
	CK_PATH,        /* char *, an absolute path                          */
	CK_DURATION,    /* unsigned ms, min..max                             */
	CK_UINT,        /* unsigned, min..max                                */
	CK_U64,         /* uint64_t, min..max                                */
	CK_SIZE,        /* uint64_t KiB                                      */
	CK_BOOL,        /* int 0/1                                           */
	CK_ENUM,        /* an int-sized enum, value i written names[i]       */
	CK_COMMAND,     /* char **argv, NULL-ended; split like a shell       */
	CK_ENV,         /* char *[max] NAME=value, count at cnt              */
	CK_LIST,        /* char *[max] names, count at cnt                   */
};

#define CF_REQUIRED  0x1   /* a section without it is an error */
#define CF_WORKER    0x2   /* [hive]: on every worker's command line, so a
                            * change restarts every agent (the hash) */
#define CF_COMPUTED  0x4   /* the default is found at load time (host name,
                            * worker path); dflt is its fallback and the
                            * docs describe it in words */

struct conf_key {
	const char *name;
	enum conf_kind kind;
	size_t off;                  /* in struct hive_conf / hive_agent_conf */
	size_t size;                 /* of that member */
	size_t cnt;                  /* CK_ENV, CK_LIST: offset of the int count */
	uint64_t min, max;           /* CK_DURATION, CK_UINT, CK_U64: range;
	                              * CK_COMMAND, CK_ENV, CK_LIST: at most
	                              * this many words (the arrays' size) */
	const char *dflt;            /* as written in a file; NULL: none */
	unsigned flags;              /* CF_* */
	const char *const *names;    /* CK_ENUM: NULL-ended */
	int (*valid)(const char *);  /* CK_TEXT: 0 if the value is good */
	const char *what;            /* CK_TEXT: the error's "expected ..." */
};

enum conf_section { CONF_SECT_HIVE, CONF_SECT_AGENT };

/* The table of a section and its length. */
const struct conf_key *conf_keys(enum conf_section, size_t *n);

/* ---- config_read.c ---- */

/*
 * Between config_read.c and config.c: pass 1 leaves every file's sections
 * as raw key/value pairs with their lines in a struct conf_parser, and
 * every error of both passes goes to its list (conf_err), printed sorted
 * at the end.
 */
struct conf_kv {
	char *key;
	char *value;
	int line;
};

struct conf_sect {
	int file, line;
	bool hive;                       /* [hive], else an agent */
	char name[HIVE_NAME_MAX + 1];
	struct conf_kv *kv;
	size_t nkv, cap;
};

struct conf_err;

struct conf_parser {
	char **files;                    /* names for messages; [0] = main */
	size_t nfiles;
	struct conf_sect *sects;
	size_t nsects, capsects;
	struct conf_err *errs;
	size_t nerrs, caperrs, nerrs_total;
	bool oom;
};

#define CONF_TEXT_SHOWN 60           /* bytes of user text in a message */
#define CONF_SHOW_MAX   (CONF_TEXT_SHOWN + 8)

/* Read path into ps (file 0) and then its agents.d/. */
void conf_read(struct conf_parser *, const char *path);
/* The same for one text (len bytes, NULs allowed), without agents.d/. */
void conf_read_string(struct conf_parser *, const char *name,
    const char *text, size_t len);
/* Record an error at file:line (line 0: about the whole file). */
void conf_err(struct conf_parser *, int file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Write the errors sorted by file and line: "file:line: message". */
void conf_err_print(struct conf_parser *, FILE *errf);
void conf_parser_free(struct conf_parser *);
/* User text in a message: at most CONF_TEXT_SHOWN bytes, anything not
 * printable ASCII as '?'.  buf has CONF_SHOW_MAX bytes; returns it. */
const char *conf_show(char *buf, size_t len, const char *s);
/* The section [hive] (NULL if none) and the key k of a section (NULL). */
const struct conf_sect *conf_sect_hive(const struct conf_parser *);
const struct conf_kv *conf_sect_kv(const struct conf_sect *, const char *k);

#endif
