/*
 * hivectl.h - the map of hivectl, hived's command-line client: every
 * struct and every prototype, grouped by file.
 *
 *   main.c        the command line: options, the verb table, help
 *   conf.c        where hived is and the token (flags, environment,
 *                 the [hive] section of hive.conf)
 *   http.c        one request to the API (libcurl), errors, exit codes
 *   out.c         what is printed: aligned tables, --json, times
 *   verb_agents.c status, actions, reload, stop-all, start-all, health,
 *                 queues
 *   verb_tasks.c  submit, wait, task, tasks, workflow, workflows
 *   verb_dead.c   dead ls, show, retry
 *   verb_logs.c   logs: an agent's output, -f follows it
 *   sse.c/.h      event streams (text/event-stream) from hived
 *
 * hivectl is short-lived: it blocks on each request (with a bound on the
 * connection and the transfer, so a hung hived is exit 3, never a hang)
 * and exits.  Every verb returns an exit code (CTL_*), printed errors
 * already said why.
 */
#ifndef HIVE_HIVECTL_H
#define HIVE_HIVECTL_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

/* Exit codes (docs/HIVECTL.md). */
#define CTL_OK          0   /* done */
#define CTL_FAILED      1   /* the task or the action failed */
#define CTL_USAGE       2   /* bad command line (or a 400 from hived) */
#define CTL_UNREACHABLE 3   /* no answer from hived, or a 5xx */
#define CTL_REFUSED     4   /* the token: 401, 403 */

#define CTL_DEFAULT_CONF "/etc/hive/hive.conf"
#define CTL_DEFAULT_HTTP "127.0.0.1:8420"   /* hived's built-in default */
#define CTL_CONNECT_MS   5000               /* connection bound */
#define CTL_TRANSFER_MS  30000              /* request bound (default) */

/* Options, one bit each: what a verb accepts (struct ctl_verb). */
enum {
	OPT_PRIORITY   = 1 << 0,
	OPT_AGENT      = 1 << 1,
	OPT_ID         = 1 << 2,
	OPT_WAIT       = 1 << 3,
	OPT_TIMEOUT    = 1 << 4,
	OPT_STATE      = 1 << 5,
	OPT_CAPABILITY = 1 << 6,
	OPT_WORKFLOW   = 1 << 7,
	OPT_SINCE      = 1 << 8,
	OPT_LIMIT      = 1 << 9,
	OPT_CODE       = 1 << 10,
	OPT_ALL        = 1 << 11,
	OPT_FOLLOW     = 1 << 12,     /* -f, --follow */
	OPT_LINES      = 1 << 13,     /* -n, --lines N */
	OPT_BY         = 1 << 14,
};

/* The command line, parsed; what a verb reads. */
struct ctl {
	/* Global. */
	const char *url_opt;          /* --url */
	const char *token_file_opt;   /* --token-file */
	const char *config_opt;       /* --config */
	int json;                     /* --json: the API's JSON on stdout */
	long long http_timeout_ms;    /* --http-timeout */

	/* Verb options; given: the OPT_* bits seen. */
	unsigned given;
	long priority;
	const char *agent, *id, *state, *capability, *workflow, *since, *code;
	const char *by;               /* --by */
	long long timeout_ms;         /* --timeout; -1: none */
	long limit;
	int wait, all;
	int follow;                   /* -f */
	long lines;                   /* -n */

	const char *verb;
	char **args;                  /* positional arguments after the verb */
	int nargs;

	/* Resolved by conf.c. */
	char *url;                    /* "http://host:port", no '/' at the end */
	char *token;                  /* NULL: none could be read */
	char *token_err;              /* why not, said when hived refuses */
	char *conf_err;               /* the default config could not be
	                               * read: said when hived is not found
	                               * or refuses */
	void *curl;                   /* CURL *, reused between requests */
};

typedef int ctl_verb_fn(struct ctl *);

/* A row of the verb table (main.c). */
struct ctl_verb {
	const char *name;
	ctl_verb_fn *fn;
	int min_args, max_args;
	unsigned opts;                /* OPT_* it accepts */
	const char *synopsis;         /* after "hivectl " */
	const char *help;             /* what it does, its options */
};

/* ---- main.c ---- */
/* A usage error: "hivectl: ..." and the --help hint on stderr; CTL_USAGE. */
int ctl_usage(const struct ctl *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A duration: a number with ms, s, m or h (bare: milliseconds); -1. */
long long ctl_parse_duration(const char *);

/* ---- conf.c ---- */
/* CTL_DEFAULT_CONF (a variable: the tests point it elsewhere). */
extern const char *ctl_default_conf;
/*
 * c->url and c->token from the flags, the environment, then the config
 * file (CTL_DEFAULT_CONF unless --config).  CTL_OK, or an exit code
 * after saying why (a --config that cannot be read, the API off).
 */
int ctl_conf_resolve(struct ctl *);
/*
 * The [hive] keys http and token_file of the INI text (NUL-terminated),
 * each malloc'ed or NULL when absent; the rest of the file is ignored,
 * whatever it holds.  0, or -1 when out of memory.
 */
int ctl_conf_parse(const char *text, char **http, char **token_file);
/* "http://HOST:PORT" for an http key's value (0.0.0.0 and [::] become
 * loopback); NULL, with *why set, when it cannot be reached (off, port 0). */
char *ctl_conf_http_url(const char *value, const char **why);
void ctl_conf_free(struct ctl *);

/* ---- http.c ---- */
/* A request's outcome: status 0 when no HTTP answer came. */
struct ctl_resp {
	long status;
	json_t *body;                 /* parsed JSON, NULL if none or not JSON */
	char *raw;                    /* the body as received, NUL-terminated */
	size_t len;
};

/*
 * method path (with its query) and an optional JSON body (borrowed).
 * CTL_OK with *r filled whatever the status (the caller reads it), or
 * CTL_UNREACHABLE after saying why no answer came.  transfer_ms 0: the
 * default bound.  ctl_resp_free releases *r.
 */
int ctl_request(struct ctl *, const char *method, const char *path,
    json_t *body, long transfer_ms, struct ctl_resp *r);
void ctl_resp_free(struct ctl_resp *);
/*
 * The same, and a non-2xx answer is an error: said (ctl_http_fail) and
 * returned as an exit code.  On CTL_OK, *out is the body (a new
 * reference; an empty object when there was none).
 */
int ctl_call(struct ctl *, const char *method, const char *path,
    json_t *body, json_t **out);
/* Say what went wrong with r (one line, "hivectl: MESSAGE (CODE)"; with
 * --json also the error document on stdout); its exit code. */
int ctl_http_fail(struct ctl *, const struct ctl_resp *r);
/* The exit code of an HTTP status. */
int ctl_status_exit(long status);
/* s escaped for a path segment or a query value (malloc'ed). */
char *ctl_escape(struct ctl *, const char *s);
void ctl_http_free(struct ctl *);

/* ---- out.c ---- */
/* A table: rows of cells, printed with every column aligned. */
#define CTL_TABLE_COLS 16             /* columns at most */
struct ctl_table {
	size_t ncols, nrows, cap;
	char **cells;                 /* nrows * ncols, row-major, malloc'ed */
};

void ctl_table_init(struct ctl_table *, size_t ncols, ...);  /* headers */
/* One row of ncols strings (copied; NULL prints "-"). */
void ctl_table_row(struct ctl_table *, ...);
void ctl_table_rowv(struct ctl_table *, const char *const *cells);
void ctl_table_print(struct ctl_table *, FILE *);
void ctl_table_free(struct ctl_table *);
/* One JSON document on stdout (indented); CTL_OK. */
int ctl_json_print(const json_t *);
/* A field as text for a cell, in buf: strings as they are, numbers,
 * true/false, null or absent as "-". */
const char *ctl_str(const json_t *obj, const char *key, char *buf,
    size_t len);
/* A *_ms duration as "3d04h", "2h05m", "4m12s", "12s", "850ms"; "-". */
const char *ctl_dur(const json_t *obj, const char *key, char *buf,
    size_t len);
/* Up to n characters of s on one line (control characters as '?'),
 * "..." when cut. */
const char *ctl_cut(const char *s, size_t n, char *buf, size_t len);

/* ---- verb_agents.c ---- */
int verb_status(struct ctl *);
int verb_action(struct ctl *);          /* start, stop, restart, ... */
int verb_reload(struct ctl *);
int verb_stop_all(struct ctl *);
int verb_start_all(struct ctl *);
int verb_health(struct ctl *);
int verb_queues(struct ctl *);

/* ---- verb_tasks.c ---- */
int verb_submit(struct ctl *);
int verb_wait(struct ctl *);
int verb_task(struct ctl *);
int verb_tasks(struct ctl *);
int verb_workflow(struct ctl *);
int verb_workflows(struct ctl *);
/* path with "?name=value" (or "&...") added, value escaped; *path is
 * malloc'ed (NULL before the first call is not allowed: start from a
 * strdup'ed path).  value NULL: nothing added. */
void ctl_path_add(struct ctl *, char **path, const char *name,
    const char *value);
/*
 * GET a list endpoint (path with its filters, "?" or "&" ready for more),
 * following "next" until limit items of key are gathered: one document
 * {key: [...], "next": ...} in *out (a new reference).
 */
int ctl_list(struct ctl *, const char *path, const char *key, long limit,
    json_t **out);
/* A column of a list: its header, the item's field it shows (cut to
 * width characters; 0: whole), or what fmt makes of the item. */
struct ctl_col {
	const char *header;
	const char *field;
	size_t width;
	void (*fmt)(const json_t *item, char *buf, size_t len);
};
/* ctl_list (up to --limit, 100 by default), then --json's document or a
 * table of the ncols columns; frees path.  CTL_OK or the error's code. */
int ctl_list_print(struct ctl *, char *path, const char *key,
    const struct ctl_col *cols, size_t ncols);

/* ---- verb_dead.c ---- */
int verb_dead(struct ctl *);

/* ---- verb_logs.c ---- */
int verb_logs(struct ctl *);
/* ---- verb_usage.c ---- */
int verb_usage(struct ctl *);

#endif /* HIVE_HIVECTL_H */
