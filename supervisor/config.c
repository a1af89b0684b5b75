/*
 * config.c - the second pass of the configuration (config.h): the
 * sections config_read.c found, into struct hive_conf.
 *
 * One table per section (hive_keys, agent_keys) says everything about each
 * key: where it goes, its kind and range, its default, whether a change
 * restarts workers.  One setter per kind parses a value into place; the
 * defaults are set by the same setters from the table's text, as if
 * written in a file, so a default has exactly one spelling, the one
 * docs/CONFIG.md shows (test_config_doc.c checks the page against the
 * tables).  The reload hash of an agent runs over the same tables, so a new
 * key cannot be left out of it.  What involves several keys (backoff_max
 * against backoff, heartbeat_deadline against [hive] heartbeat_interval)
 * is checked after, in code.
 */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#ifndef HIVE_LIBEXECDIR
#define HIVE_LIBEXECDIR "/usr/local/libexec"
#endif

#define CONF_CONCURRENCY_MAX 1024
#define CONF_RESTART_LIMIT_MAX 1000000
#define CONF_SNAPSHOTS_MAX   1000
#define CONF_OUTPUT_LINES_MAX 100000  /* lines of output kept per instance */
#define CONF_HEARTBEAT_MIN   10          /* ms; a faster beat is a busy loop */
#define CONF_EVENTS_WINDOW_MAX 1000000   /* events kept to resume */

/* CK_ENUM members are read and written through an int. */
_Static_assert(sizeof(enum hive_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum hive_restart) == sizeof(int), "enum size");
/* log_format_names and log_time_names are indexed by log.h's enums. */
_Static_assert(LOG_FORMAT_TEXT == 0 && LOG_FORMAT_JSON == 1 &&
    LOG_TIME_AUTO == 0 && LOG_TIME_YES == 1 && LOG_TIME_NO == 2,
    "log enums");

/* ---- value parsers ---- */

/* Leading decimal digits of s into *n (no sign, no space); returns the
 * rest, or NULL on no digits or overflow. */
static const char *
conf_digits(const char *s, uint64_t *n)
{
	uint64_t v = 0;

	if (!isdigit((unsigned char)*s))
		return NULL;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return NULL;
		v = v * 10 + d;
	}
	*n = v;
	return s;
}

int
conf_parse_duration(const char *s, unsigned *ms)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 },
	};
	uint64_t n;

	if (s == NULL || (s = conf_digits(s, &n)) == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s, units[i].unit) != 0)
			continue;
		if (n > UINT_MAX / units[i].ms)
			return -1;
		*ms = (unsigned)(n * units[i].ms);
		return 0;
	}
	return -1;
}

int
conf_parse_size_kb(const char *s, uint64_t *kb)
{
	uint64_t n, mul;

	if (s == NULL || (s = conf_digits(s, &n)) == NULL)
		return -1;
	if (*s == '\0') {
		/* Bytes: round up, so that a small limit never becomes 0
		 * (which means no limit). */
		*kb = n / 1024 + (n % 1024 != 0);
		return 0;
	}
	switch (*s++) {
	case 'K': case 'k': mul = 1; break;
	case 'M': case 'm': mul = 1024; break;
	case 'G': case 'g': mul = 1024 * 1024; break;
	case 'T': case 't': mul = 1024 * 1024 * 1024; break;
	default: return -1;
	}
	/* "64M", "64MB" and "64MiB" all mean 64 MiB. */
	if (strcmp(s, "") != 0 && strcmp(s, "B") != 0 && strcmp(s, "iB") != 0)
		return -1;
	if (n > UINT64_MAX / mul)
		return -1;
	*kb = n * mul;
	return 0;
}

/* yes/no/true/false/on/off/1/0, any case: 0 or -1. */
static int
conf_parse_bool(const char *s, int *b)
{
	static const char *yes[] = { "yes", "true", "on", "1" };
	static const char *no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*b = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*b = 0;
			return 0;
		}
	}
	return -1;
}

/* Why conf_split refused a value. */
enum conf_split_err {
	SPLIT_NOMEM = 1,
	SPLIT_BACKSLASH,             /* a backslash ends the value */
	SPLIT_SQUOTE,                /* unterminated '...' */
	SPLIT_DQUOTE,                /* unterminated "..." */
	SPLIT_TOO_MANY,              /* more than max words */
};

static const char *const conf_split_msg[] = {
	[SPLIT_NOMEM] = "out of memory",
	[SPLIT_BACKSLASH] = "backslash at the end",
	[SPLIT_SQUOTE] = "unterminated single quote",
	[SPLIT_DQUOTE] = "unterminated double quote",
	[SPLIT_TOO_MANY] = "too many words",
};

/* One word of conf_split from *sp into w (room for strlen(*sp) bytes);
 * returns its length and moves *sp past it, or -1 with *why. */
static ssize_t
conf_word(const char **sp, char *w, enum conf_split_err *why)
{
	const char *s = *sp;
	size_t wl = 0;

	while (*s != '\0' && *s != ' ' && *s != '\t') {
		if (*s == '\\') {
			if (s[1] == '\0') {
				*why = SPLIT_BACKSLASH;
				return -1;
			}
			w[wl++] = s[1];
			s += 2;
		} else if (*s == '\'') {
			for (s++; *s != '\0' && *s != '\''; s++)
				w[wl++] = *s;
			if (*s == '\0') {
				*why = SPLIT_SQUOTE;
				return -1;
			}
			s++;
		} else if (*s == '"') {
			for (s++; *s != '\0' && *s != '"'; s++) {
				if (*s == '\\' && s[1] != '\0' &&
				    strchr("\\\"$`", s[1]) != NULL)
					s++;
				w[wl++] = *s;
			}
			if (*s == '\0') {
				*why = SPLIT_DQUOTE;
				return -1;
			}
			s++;
		} else {
			w[wl++] = *s++;
		}
	}
	*sp = s;
	return (ssize_t)wl;
}

/*
 * Split s into words like a POSIX shell, without any expansion: blanks
 * separate words; '...' keeps everything; "..." keeps everything but lets
 * a backslash escape \ " $ `; elsewhere a backslash escapes any character;
 * quoted and unquoted parts join ("a"'b'c is abc; "" is an empty word).
 * Stores up to max new strings in out; returns their number, or -1 with
 * *why set (nothing allocated then).
 */
static int
conf_split(const char *s, char **out, int max, enum conf_split_err *why)
{
	char *w = malloc(strlen(s) + 1);
	int n = 0;
	ssize_t wl;

	*why = SPLIT_NOMEM;
	if (w == NULL)
		return -1;
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			break;
		if ((wl = conf_word(&s, w, why)) < 0)
			goto err;
		if (n == max) {
			*why = SPLIT_TOO_MANY;
			goto err;
		}
		if ((out[n] = strndup(w, (size_t)wl)) == NULL) {
			*why = SPLIT_NOMEM;
			goto err;
		}
		n++;
	}
	free(w);
	return n;
err:
	while (n > 0)
		free(out[--n]);
	free(w);
	return -1;
}

/* host:port, [v6]:port, with a port 1..65535 (or 0): 0 or -1. */
static int
conf_valid_hostport(const char *s, int port0_ok)
{
	const char *colon = strrchr(s, ':');
	uint64_t port;
	const char *end;

	if (colon == NULL || colon == s)
		return -1;
	if ((end = conf_digits(colon + 1, &port)) == NULL || *end != '\0' ||
	    (port == 0 && !port0_ok) || port > 65535)
		return -1;
	if (*s == '[') {
		if (colon[-1] != ']' || colon - s < 3)
			return -1;
		for (const char *p = s + 1; p < colon - 1; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
				return -1;
		return 0;
	}
	for (const char *p = s; p < colon; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' &&
		    *p != '_')
			return -1;
	return 0;
}

/* The CK_TEXT checks of the tables. */

static int
conf_valid_redis(const char *s)
{
	return s[0] == '/' ? 0 : conf_valid_hostport(s, 0);
}

static int
conf_valid_http(const char *s)
{
	return s[0] == '\0' ? 0 : conf_valid_hostport(s, 1);
}

static int
conf_valid_prefix(const char *s)
{
	return proto_valid_name(s, strlen(s));
}

/* A host name for consumer names: 1..HIVE_HOST_MAX of [A-Za-z0-9._-]. */
static int
conf_valid_host(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > HIVE_HOST_MAX)
		return -1;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '-' &&
		    *s != '_')
			return -1;
	return 0;
}

/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*. */
static int
conf_valid_env_name(const char *s, size_t n)
{
	if (n == 0 || isdigit((unsigned char)*s))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return -1;
	return 0;
}

/* ---- the key tables ---- */

#define HK(nm, k, m) .name = nm, .kind = k, \
	.off = offsetof(struct hive_conf, m), \
	.size = sizeof(((struct hive_conf *)NULL)->m)
#define AK(nm, k, m) .name = nm, .kind = k, \
	.off = offsetof(struct hive_agent_conf, m), \
	.size = sizeof(((struct hive_agent_conf *)NULL)->m)

static const char *const log_level_names[] = { "info", "debug", NULL };
/* In the order of log.h's enum log_format and enum log_time. */
static const char *const log_format_names[] = { "text", "json", NULL };
static const char *const log_time_names[] = { "auto", "yes", "no", NULL };
static const char *const mode_names[] = {
	[HIVE_MODE_STREAM] = "stream", [HIVE_MODE_EXEC] = "exec", NULL,
};
static const char *const restart_names[] = {
	[HIVE_RESTART_ALWAYS] = "always", [HIVE_RESTART_ON_FAILURE] = "on-failure",
	[HIVE_RESTART_NEVER] = "never", NULL,
};

/* [hive], in docs/CONFIG.md's order.  The two CF_COMPUTED defaults are
 * found at each load (conf_hive_computed): host is gethostname()'s name
 * ("localhost" if it has none), worker the path main.c found, if any. */
static const struct conf_key hive_keys[] = {
	{ HK("redis", CK_TEXT, redis), .dflt = "127.0.0.1:6379",
	  .flags = CF_WORKER, .valid = conf_valid_redis,
	  .what = "expected HOST:PORT or the absolute path of a unix socket" },
	{ HK("prefix", CK_TEXT, prefix), .dflt = "hive", .flags = CF_WORKER,
	  .valid = conf_valid_prefix, .what = "expected a name of [A-Za-z0-9_.-]" },
	{ HK("host", CK_TEXT, host), .dflt = "localhost",
	  .flags = CF_WORKER | CF_COMPUTED, .valid = conf_valid_host,
	  .what = "expected a host name of [A-Za-z0-9_.-]" },
	{ HK("postgres", CK_STRING, postgres), .dflt = "" },
	{ HK("worker", CK_PATH, worker_path), .dflt = HIVE_LIBEXECDIR "/hive/hive-worker",
	  .flags = CF_WORKER | CF_COMPUTED },
	{ HK("http", CK_TEXT, http), .dflt = "127.0.0.1:8420",
	  .valid = conf_valid_http,
	  .what = "expected HOST:PORT, or nothing for no HTTP API" },
	{ HK("token_file", CK_PATH, token_file) },
	{ HK("http_auth_reads", CK_BOOL, http_auth_reads), .dflt = "no" },
	{ HK("stop_timeout", CK_DURATION, stop_timeout_ms), .min = 1,
	  .max = UINT_MAX, .dflt = "30s" },
	{ HK("heartbeat_interval", CK_DURATION, heartbeat_ms),
	  .min = CONF_HEARTBEAT_MIN, .max = 3600000, .dflt = "1s",
	  .flags = CF_WORKER },
	{ HK("snapshots_keep", CK_UINT, snapshots_keep), .min = 1,
	  .max = CONF_SNAPSHOTS_MAX, .dflt = "10" },
	{ HK("allow_eviction", CK_BOOL, allow_eviction), .dflt = "no" },
	{ HK("log_level", CK_ENUM, verbose), .dflt = "info",
	  .flags = CF_WORKER, .names = log_level_names },
	{ HK("log_format", CK_ENUM, log_format), .dflt = "text",
	  .flags = CF_WORKER, .names = log_format_names },
	{ HK("log_time", CK_ENUM, log_time), .dflt = "auto",
	  .flags = CF_WORKER, .names = log_time_names },
	{ HK("task_events", CK_BOOL, task_events), .dflt = "no",
	  .flags = CF_WORKER },
	{ HK("events_window", CK_UINT, events_window), .min = 1,
	  .max = CONF_EVENTS_WINDOW_MAX, .dflt = "10000" },
	{ HK("events_client_buffer", CK_SIZE, events_client_buffer_kb),
	  .min = 16, .max = 65536, .dflt = "1M",
	  .what = "expected a size from 16K to 64M" },
	{ HK("events_task_rate", CK_UINT, events_task_rate), .min = 1,
	  .max = 1000000, .dflt = "200" },
	{ HK("output_ttl", CK_DURATION, output_ttl_ms), .min = 1000,
	  .max = 30u * 86400 * 1000, .dflt = "1h", .flags = CF_WORKER },
	{ HK("output_lines", CK_UINT, output_lines), .min = 1,
	  .max = CONF_OUTPUT_LINES_MAX, .dflt = "1000" },
};

/* [agent:NAME], in docs/CONFIG.md's order. */
static const struct conf_key agent_keys[] = {
	{ AK("command", CK_COMMAND, argv), .max = HIVE_ARGV_MAX,
	  .flags = CF_REQUIRED },
	{ AK("mode", CK_ENUM, mode), .dflt = "stream", .names = mode_names },
	{ AK("capabilities", CK_LIST, caps), .max = HIVE_CAPS_MAX,
	  .cnt = offsetof(struct hive_agent_conf, ncaps) },
	{ AK("instances", CK_UINT, instances), .min = 1,
	  .max = HIVE_INSTANCE_MAX, .dflt = "1" },
	{ AK("concurrency", CK_UINT, concurrency), .min = 1,
	  .max = CONF_CONCURRENCY_MAX, .dflt = "1" },
	{ AK("restart", CK_ENUM, restart), .dflt = "always",
	  .names = restart_names },
	{ AK("backoff", CK_DURATION, backoff_ms), .max = HIVE_TIMEOUT_MAX,
	  .dflt = "100ms" },
	{ AK("backoff_max", CK_DURATION, backoff_max_ms),
	  .max = HIVE_TIMEOUT_MAX, .dflt = "30s" },
	{ AK("restart_limit", CK_UINT, restart_limit), .min = 1,
	  .max = CONF_RESTART_LIMIT_MAX, .dflt = "5" },
	{ AK("restart_window", CK_DURATION, restart_window_ms), .min = 1,
	  .max = UINT_MAX, .dflt = "60s" },
	{ AK("cooldown", CK_DURATION, cooldown_ms), .max = UINT_MAX,
	  .dflt = "0" },
	{ AK("heartbeat_deadline", CK_DURATION, heartbeat_deadline_ms),
	  .min = 1, .max = UINT_MAX, .dflt = "10s" },
	{ AK("task_timeout", CK_DURATION, task_timeout_ms),
	  .max = HIVE_TIMEOUT_MAX, .dflt = "0" },
	{ AK("max_attempts", CK_UINT, max_attempts), .min = 1,
	  .max = HIVE_ATTEMPTS_MAX, .dflt = "3" },
	{ AK("max_tasks", CK_U64, max_tasks), .max = UINT64_MAX, .dflt = "0" },
	{ AK("max_rss", CK_SIZE, max_rss_kb), .dflt = "0" },
	{ AK("environment", CK_ENV, env), .max = HIVE_ENV_MAX,
	  .cnt = offsetof(struct hive_agent_conf, nenv) },
	{ AK("directory", CK_PATH, directory) },
	{ AK("autostart", CK_BOOL, autostart), .dflt = "yes" },
	{ AK("output_lines", CK_UINT, output_lines),
	  .max = CONF_OUTPUT_LINES_MAX, .dflt = "0" },
};

#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))

const struct conf_key *
conf_keys(enum conf_section s, size_t *n)
{
	*n = s == CONF_SECT_HIVE ? NKEYS(hive_keys) : NKEYS(agent_keys);
	return s == CONF_SECT_HIVE ? hive_keys : agent_keys;
}

static const struct conf_key *
conf_key_find(const struct conf_key *t, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].name, name) == 0)
			return &t[i];
	return NULL;
}

/* ---- setters: one value into place, by kind ---- */

/*
 * Where a setter reports: the parser, the file, and the key being set (its
 * name, value and line).  A setter leaves the member as it was when the
 * value is refused, so that the rest of pass 2 still sees the default.
 */
struct conf_at {
	struct conf_parser *ps;
	int file, line;
	const char *key, *value;
};

static void
conf_kv_err(const struct conf_at *at, const char *what)
{
	char show[CONF_SHOW_MAX];

	conf_err(at->ps, at->file, at->line, "%s: %s, not '%s'",
	    at->key, what, conf_show(show, sizeof(show), at->value));
}

/* Replace the string at *dst by a copy of v. */
static void
set_strdup(const struct conf_at *at, char **dst, const char *v)
{
	char *s = strdup(v);

	if (s == NULL) {
		at->ps->oom = true;
		return;
	}
	free(*dst);
	*dst = s;
}

static void
set_number(const struct conf_at *at, const struct conf_key *k, void *dst)
{
	uint64_t v;
	const char *end = conf_digits(at->value, &v);
	char what[128];

	if (end == NULL || *end != '\0' || v < k->min || v > k->max) {
		snprintf(what, sizeof(what), "expected a whole number %llu..%llu",
		    (unsigned long long)k->min, (unsigned long long)k->max);
		conf_kv_err(at, what);
	} else if (k->kind == CK_UINT) {
		unsigned u = (unsigned)v;

		memcpy(dst, &u, sizeof(u));
	} else {
		memcpy(dst, &v, sizeof(v));
	}
}

static void
set_duration(const struct conf_at *at, const struct conf_key *k,
    unsigned *dst)
{
	unsigned v;
	char what[128];

	if (conf_parse_duration(at->value, &v) != 0) {
		conf_kv_err(at, "expected a duration such as 100ms, 2s, 5m, 1h "
		    "(a bare number is seconds)");
	} else if (v < k->min || v > k->max) {
		snprintf(what, sizeof(what), "must be %llums..%llums",
		    (unsigned long long)k->min, (unsigned long long)k->max);
		conf_kv_err(at, what);
	} else {
		*dst = v;
	}
}

/* "expected a, b or c". */
static void
set_enum(const struct conf_at *at, const struct conf_key *k, int *dst)
{
	char what[128];
	size_t off, n;

	for (n = 0; k->names[n] != NULL; n++) {
		if (strcmp(at->value, k->names[n]) == 0) {
			*dst = (int)n;
			return;
		}
	}
	off = (size_t)snprintf(what, sizeof(what), "expected");
	for (size_t i = 0; i < n && off < sizeof(what); i++)
		off += (size_t)snprintf(what + off, sizeof(what) - off, "%s %s",
		    i == 0 ? "" : i + 1 == n ? " or" : ",", k->names[i]);
	conf_kv_err(at, what);
}

static void
set_command(const struct conf_at *at, char ***dst)
{
	char *words[HIVE_ARGV_MAX];
	enum conf_split_err why;
	int n = conf_split(at->value, words, HIVE_ARGV_MAX, &why);

	if (n < 0) {
		if (why == SPLIT_TOO_MANY)
			conf_err(at->ps, at->file, at->line, "command: more than %d "
			    "words", HIVE_ARGV_MAX);
		else
			conf_err(at->ps, at->file, at->line, "command: %s",
			    conf_split_msg[why]);
		return;
	}
	if (n == 0 || words[0][0] == '\0') {
		conf_err(at->ps, at->file, at->line, "command: empty");
		goto err;
	}
	if ((*dst = calloc((size_t)n + 1, sizeof(**dst))) == NULL) {
		at->ps->oom = true;
		goto err;
	}
	memcpy(*dst, words, (size_t)n * sizeof(*words));
	return;
err:
	while (n > 0)
		free(words[--n]);
}

/* env has room for k->max (HIVE_ENV_MAX) entries. */
static void
set_env(const struct conf_at *at, const struct conf_key *k, char **env,
    int *nenv)
{
	char show[CONF_SHOW_MAX];
	enum conf_split_err why;
	int n = conf_split(at->value, env, (int)k->max, &why);

	if (n < 0) {
		if (why == SPLIT_TOO_MANY)
			conf_err(at->ps, at->file, at->line, "environment: more "
			    "than %d variables", (int)k->max);
		else
			conf_err(at->ps, at->file, at->line, "environment: %s",
			    conf_split_msg[why]);
		return;
	}
	*nenv = n;
	for (int i = 0; i < n; i++) {
		const char *eq = strchr(env[i], '=');
		size_t kl = eq ? (size_t)(eq - env[i]) : 0;

		if (eq == NULL || conf_valid_env_name(env[i], kl) != 0) {
			conf_err(at->ps, at->file, at->line, "environment: expected "
			    "NAME=value with NAME of [A-Za-z0-9_] not starting "
			    "with a digit, not '%s'",
			    conf_show(show, sizeof(show), env[i]));
			return;
		}
		for (int j = 0; j < i; j++) {
			if (strncmp(env[j], env[i], kl + 1) == 0) {
				conf_err(at->ps, at->file, at->line,
				    "environment: %.*s set twice", (int)kl, env[i]);
				return;
			}
		}
	}
}

/* Names separated by commas and/or blanks, each once; list has room for
 * k->max (HIVE_CAPS_MAX) of them. */
static void
set_list(const struct conf_at *at, const struct conf_key *k, char **list,
    int *count)
{
	const char *s = at->value;
	char show[CONF_SHOW_MAX], name[HIVE_NAME_MAX + 1];
	int line = at->line;

	for (;;) {
		size_t n;

		s += strspn(s, ", \t");
		if (*s == '\0')
			return;
		n = strcspn(s, ", \t");
		if (n > HIVE_NAME_MAX || proto_valid_name(s, n) != 0) {
			char *bad = strndup(s, n);

			conf_err(at->ps, at->file, line, "%s: bad name '%s': 1..%d "
			    "of [A-Za-z0-9_.-], not starting with '.' or '-'",
			    at->key, bad ? conf_show(show, sizeof(show), bad) :
			    "?", HIVE_NAME_MAX);
			free(bad);
			return;
		}
		snprintf(name, sizeof(name), "%.*s", (int)n, s);
		for (int i = 0; i < *count; i++) {
			if (strcmp(list[i], name) == 0) {
				conf_err(at->ps, at->file, line,
				    "%s: '%s' listed twice", at->key, name);
				return;
			}
		}
		if (*count == (int)k->max) {
			conf_err(at->ps, at->file, line, "%s: more than %d",
			    at->key, (int)k->max);
			return;
		}
		if ((list[*count] = strdup(name)) == NULL) {
			at->ps->oom = true;
			return;
		}
		(*count)++;
		s += n;
	}
}

/* Key k of the struct at base, from at->value. */
static void
conf_set(const struct conf_at *at, const struct conf_key *k, void *base)
{
	char *dst = (char *)base + k->off;
	const char *v = at->value;

	switch (k->kind) {
	case CK_TEXT:
		if (strlen(v) >= k->size || k->valid(v) != 0)
			conf_kv_err(at, k->what);
		else
			memcpy(dst, v, strlen(v) + 1);
		break;
	case CK_STRING:
		set_strdup(at, (char **)(void *)dst, v);
		break;
	case CK_PATH:
		if (v[0] != '/' || strlen(v) >= PATH_MAX)
			conf_kv_err(at, "expected an absolute path");
		else
			set_strdup(at, (char **)(void *)dst, v);
		break;
	case CK_DURATION:
		set_duration(at, k, (unsigned *)(void *)dst);
		break;
	case CK_UINT:
	case CK_U64:
		set_number(at, k, dst);
		break;
	case CK_SIZE:
		if (conf_parse_size_kb(v, (uint64_t *)(void *)dst) != 0)
			conf_kv_err(at, "expected a size such as 512K, 64M, 2G "
			    "(a bare number is bytes)");
		else if (k->max != 0 && (*(uint64_t *)(void *)dst < k->min ||
		    *(uint64_t *)(void *)dst > k->max))
			conf_kv_err(at, k->what);
		break;
	case CK_BOOL:
		if (conf_parse_bool(v, (int *)(void *)dst) != 0)
			conf_kv_err(at, "expected yes/no, true/false, on/off or 1/0");
		break;
	case CK_ENUM:
		set_enum(at, k, (int *)(void *)dst);
		break;
	case CK_COMMAND:
		set_command(at, (char ***)(void *)dst);
		break;
	case CK_ENV:
		set_env(at, k, (char **)(void *)dst,
		    (int *)(void *)((char *)base + k->cnt));
		break;
	case CK_LIST:
		set_list(at, k, (char **)(void *)dst,
		    (int *)(void *)((char *)base + k->cnt));
		break;
	}
}

/*
 * Every key of table t (n keys) with a default, from its text.  A default
 * the setter refuses is a broken table, which the tests catch
 * (test_config_doc.c parses each): abort rather than run with it.
 */
static void
conf_defaults(struct conf_parser *ps, const struct conf_key *t, size_t n,
    void *base)
{
	for (size_t i = 0; i < n; i++) {
		struct conf_at at = { ps, 0, 0, t[i].name, t[i].dflt };
		size_t before = ps->nerrs_total;

		if (t[i].dflt == NULL)
			continue;
		conf_set(&at, &t[i], base);
		if (ps->nerrs_total != before)
			abort();
	}
}

/* The worker = default main.c found (conf_set_worker_default). */
static char conf_worker_default[PATH_MAX];

int
conf_set_worker_default(const char *path)
{
	if (path == NULL) {
		conf_worker_default[0] = '\0';
		return 0;
	}
	if (strlen(path) >= sizeof(conf_worker_default))
		return -1;
	memcpy(conf_worker_default, path, strlen(path) + 1);
	return 0;
}

/* The defaults of [hive] that are found, not written (CF_COMPUTED). */
static void
conf_hive_computed(struct conf_parser *ps, struct hive_conf *c)
{
	char host[sizeof(c->host)];

	if (gethostname(host, sizeof(host)) == 0) {
		host[sizeof(host) - 1] = '\0';
		if (host[0] != '\0')
			snprintf(c->host, sizeof(c->host), "%s", host);
	}
	if (conf_worker_default[0] != '\0') {
		char *w = strdup(conf_worker_default);

		if (w == NULL) {
			ps->oom = true;
			return;
		}
		free(c->worker_path);
		c->worker_path = w;
	}
}

/* The keys of section sc (NULL: none) by table t. */
static void
conf_build_sect(struct conf_parser *ps, const struct conf_sect *sc,
    const struct conf_key *t, size_t n, void *base, const char *where)
{
	char show[CONF_SHOW_MAX];

	for (size_t i = 0; sc != NULL && i < sc->nkv; i++) {
		const struct conf_kv *kv = &sc->kv[i];
		const struct conf_key *k = conf_key_find(t, n, kv->key);
		struct conf_at at = { ps, sc->file, kv->line, kv->key,
		    kv->value };

		if (k == NULL)
			conf_err(ps, sc->file, kv->line, "unknown key '%s' in %s",
			    conf_show(show, sizeof(show), kv->key), where);
		else
			conf_set(&at, k, base);
	}
}

/* ---- the reload hash ---- */

static uint64_t
conf_hash_u64(uint64_t h, uint64_t v)
{
	return hash_fnv1a_add(h, &v, sizeof(v));
}

/* A string with its length first, so that "ab","c" and "a","bc" differ;
 * NULL differs from "". */
static uint64_t
conf_hash_str(uint64_t h, const char *s)
{
	if (s == NULL)
		return conf_hash_u64(h, UINT64_MAX);
	h = conf_hash_u64(h, strlen(s));
	return hash_fnv1a_add(h, s, strlen(s));
}

/* Strings and their number, so that a split in other places differs. */
static uint64_t
conf_hash_strs(uint64_t h, char *const *v, int n)
{
	int i;

	for (i = 0; (n < 0 && v != NULL && v[i] != NULL) || i < n; i++)
		h = conf_hash_str(h, v[i]);
	return conf_hash_u64(h, (uint64_t)i);
}

/* The parsed value of key k of the struct at base. */
static uint64_t
conf_hash_key(uint64_t h, const struct conf_key *k, const void *base)
{
	const char *p = (const char *)base + k->off;
	uint64_t u64;
	unsigned u;
	int i;

	switch (k->kind) {
	case CK_TEXT:
		return conf_hash_str(h, p);
	case CK_STRING:
	case CK_PATH:
		return conf_hash_str(h, *(char *const *)(const void *)p);
	case CK_DURATION:
	case CK_UINT:
		memcpy(&u, p, sizeof(u));
		return conf_hash_u64(h, u);
	case CK_U64:
	case CK_SIZE:
		memcpy(&u64, p, sizeof(u64));
		return conf_hash_u64(h, u64);
	case CK_BOOL:
	case CK_ENUM:
		memcpy(&i, p, sizeof(i));
		return conf_hash_u64(h, (uint64_t)i);
	case CK_COMMAND:
		return conf_hash_strs(h, *(char *const *const *)(const void *)p,
		    -1);
	case CK_ENV:
	case CK_LIST:
		memcpy(&i, (const char *)base + k->cnt, sizeof(i));
		return conf_hash_strs(h, (char *const *)(const void *)p, i);
	}
	return h;
}

/*
 * Everything a worker of this agent is started with: the agent's own
 * settings (parsed values, so "2s" and "2000ms" are the same) and the
 * [hive] settings on the worker's command line (CF_WORKER).  Not file and
 * line: moving a section restarts nothing.
 */
static uint64_t
conf_worker_hash(uint64_t h, const struct hive_conf *c)
{
	for (size_t i = 0; i < NKEYS(hive_keys); i++)
		if (hive_keys[i].flags & CF_WORKER)
			h = conf_hash_key(h, &hive_keys[i], c);
	return h;
}

static uint64_t
conf_agent_hash(const struct hive_conf *c, const struct hive_agent_conf *a)
{
	uint64_t h = conf_hash_str(HASH_FNV1A_INIT, a->name);

	for (size_t i = 0; i < NKEYS(agent_keys); i++)
		h = conf_hash_key(h, &agent_keys[i], a);
	return conf_worker_hash(h, c);
}

/* ---- sections into struct hive_conf ---- */

/* What involves several keys of an agent, or a key and [hive]. */
static void
conf_check_agent(struct conf_parser *ps, const struct conf_sect *sc,
    const struct hive_conf *c, const struct hive_agent_conf *a)
{
	const struct conf_kv *kb = conf_sect_kv(sc, "backoff"),
	    *kbm = conf_sect_kv(sc, "backoff_max"),
	    *khd = conf_sect_kv(sc, "heartbeat_deadline");
	int f = sc->file;

	for (size_t i = 0; i < NKEYS(agent_keys); i++)
		if ((agent_keys[i].flags & CF_REQUIRED) &&
		    conf_sect_kv(sc, agent_keys[i].name) == NULL)
			conf_err(ps, f, sc->line, "agent '%s': missing %s",
			    a->name, agent_keys[i].name);
	if (a->backoff_max_ms < a->backoff_ms)
		conf_err(ps, f, kbm ? kbm->line : kb ? kb->line : sc->line,
		    "backoff_max (%ums) is shorter than backoff (%ums)",
		    a->backoff_max_ms, a->backoff_ms);
	if (a->heartbeat_deadline_ms <= c->heartbeat_ms)
		conf_err(ps, f, khd ? khd->line : sc->line, "agent '%s': "
		    "heartbeat_deadline (%ums) must be longer than [hive] "
		    "heartbeat_interval (%ums)", a->name, a->heartbeat_deadline_ms,
		    c->heartbeat_ms);
}

static void
conf_build_agent(struct conf_parser *ps, const struct conf_sect *sc,
    const struct hive_conf *c, struct hive_agent_conf *a)
{
	char where[HIVE_NAME_MAX + 16];

	snprintf(a->name, sizeof(a->name), "%s", sc->name);
	snprintf(a->file, sizeof(a->file), "%s", ps->files[sc->file]);
	a->line = sc->line;
	snprintf(where, sizeof(where), "[agent:%s]", a->name);
	conf_defaults(ps, agent_keys, NKEYS(agent_keys), a);
	conf_build_sect(ps, sc, agent_keys, NKEYS(agent_keys), a, where);
	conf_check_agent(ps, sc, c, a);
	a->hash = conf_agent_hash(c, a);
}

/* Pass 2 over every section; c gets whatever parsed, errors go to ps. */
static void
conf_build(struct conf_parser *ps, struct hive_conf *c)
{
	const struct conf_sect *hive = conf_sect_hive(ps);
	size_t n = ps->nsects - (hive != NULL);

	snprintf(c->file, sizeof(c->file), "%s", ps->files[0]);
	conf_defaults(ps, hive_keys, NKEYS(hive_keys), c);
	conf_hive_computed(ps, c);
	if (ps->oom)
		return;
	conf_build_sect(ps, hive, hive_keys, NKEYS(hive_keys), c, "[hive]");
	c->worker_hash = conf_worker_hash(HASH_FNV1A_INIT, c);
	if (n == 0)
		return;
	if ((c->agents = calloc(n, sizeof(*c->agents))) == NULL) {
		ps->oom = true;
		return;
	}
	for (size_t i = 0; i < ps->nsects; i++)
		if (!ps->sects[i].hive)
			conf_build_agent(ps, &ps->sects[i], c,
			    &c->agents[c->nagents++]);
}

/*
 * Shared end of conf_load and conf_load_string: pass 2, then either the
 * config or NULL after the errors.
 */
static struct hive_conf *
conf_finish(struct conf_parser *ps, const char *name, FILE *errf)
{
	struct hive_conf *c = NULL;

	if (ps->nfiles == 0) {
		/* Not even the file's name could be kept. */
		if (errf != NULL)
			fprintf(errf, "%s: out of memory\n", name);
		goto out;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		ps->oom = true;
	else
		conf_build(ps, c);
	if (ps->nerrs_total > 0 || ps->oom) {
		conf_err_print(ps, errf);
		conf_free(c);
		c = NULL;
	}
out:
	conf_parser_free(ps);
	return c;
}

struct hive_conf *
conf_load(const char *path, FILE *errf)
{
	struct conf_parser ps = { 0 };

	conf_read(&ps, path);
	return conf_finish(&ps, path, errf);
}

/* Each line of text (len bytes) into errs; 0, or -1 out of memory. */
static int
conf_errors_split(struct conf_errors *errs, const char *text, size_t len)
{
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		char **v;

		if (n > 0) {
			if ((v = reallocarray(errs->v, errs->n + 1,
			    sizeof(*v))) == NULL)
				return -1;
			errs->v = v;
			if ((v[errs->n] = strndup(p, n)) == NULL)
				return -1;
			errs->n++;
		}
		p += n + 1;
	}
	return 0;
}

struct hive_conf *
conf_load_list(const char *path, struct conf_errors *errs)
{
	struct hive_conf *c;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	memset(errs, 0, sizeof(*errs));
	if ((f = open_memstream(&text, &len)) == NULL)
		return conf_load(path, NULL);
	c = conf_load(path, f);
	if (fclose(f) == 0 && text != NULL)
		(void)conf_errors_split(errs, text, len);
	free(text);
	return c;
}

void
conf_errors_free(struct conf_errors *errs)
{
	if (errs == NULL)
		return;
	for (size_t i = 0; i < errs->n; i++)
		free(errs->v[i]);
	free(errs->v);
	errs->v = NULL;
	errs->n = 0;
}

struct hive_conf *
conf_load_string(const char *name, const char *text, size_t len, FILE *errf)
{
	struct conf_parser ps = { 0 };

	conf_read_string(&ps, name, text, len);
	return conf_finish(&ps, name, errf);
}

static void
conf_agent_free(struct hive_agent_conf *a)
{
	for (int i = 0; a->argv != NULL && a->argv[i] != NULL; i++)
		free(a->argv[i]);
	free(a->argv);
	for (int i = 0; i < a->ncaps; i++)
		free(a->caps[i]);
	for (int i = 0; i < a->nenv; i++)
		free(a->env[i]);
	free(a->directory);
}

void
conf_free(struct hive_conf *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nagents; i++)
		conf_agent_free(&c->agents[i]);
	free(c->agents);
	free(c->postgres);
	free(c->worker_path);
	free(c->token_file);
	free(c);
}

const struct hive_agent_conf *
conf_agent(const struct hive_conf *c, const char *name)
{
	for (size_t i = 0; c != NULL && i < c->nagents; i++)
		if (strcmp(c->agents[i].name, name) == 0)
			return &c->agents[i];
	return NULL;
}
