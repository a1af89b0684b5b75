/*
 * config.c - load and validate hive.conf and agents.d/ (see config.h and
 * docs/CONFIG.md).
 *
 * Two passes.  The first reads every file into sections of raw key/value
 * pairs, each with its line; the second interprets them into struct
 * hive_conf and checks what involves several keys.  Every error of both
 * passes is collected with its file and line, sorted, and written at the
 * end; one error anywhere rejects the whole configuration.
 *
 * How inih is used, and why our reader does more than read.  Debian's inih
 * 55 is built without INI_HANDLER_LINENO, reports only the FIRST bad line,
 * reads lines into a fixed 200-byte buffer (a longer line is silently cut
 * in two), truncates section names to 49 bytes and calls the handler only
 * for key lines.  So inih reads through conf_reader(), which hands it one
 * line at a time and, before it does, looks at the line itself:
 *
 *   - it counts lines, so the handler knows the line of each key;
 *   - it parses [section] lines itself (full length, both spellings of an
 *     agent section) and hands inih a neutral "[s]" instead;
 *   - a line inih would reject or mangle (no '=', too long, NUL byte,
 *     broken section header) is reported here and replaced by "[s]", which
 *     also ends any continuation in inih exactly as in our own state, so
 *     that every bad line is reported, not only the first.
 *
 * inih still does what it is for: splitting "key = value", trimming, and
 * Python-style continuation lines (an indented line continues the value
 * of the key above it; we join the parts with one space).
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#ifndef HIVE_BINDIR
#define HIVE_BINDIR "/usr/local/bin"
#endif
#ifndef HIVE_LIBEXECDIR
#define HIVE_LIBEXECDIR "/usr/local/libexec"
#endif

#define CONF_PRINTF(a, b) __attribute__((format(printf, a, b)))

#define CONF_FILE_MAX        (1u << 20)  /* bytes in one config file */
#define CONF_ERRORS_MAX      100         /* errors kept; the rest are counted */
#define CONF_SECTIONS_MAX    10000       /* sections over all files */
#define CONF_CONCURRENCY_MAX 1024
#define CONF_RESTART_LIMIT_MAX 1000000
#define CONF_SNAPSHOTS_MAX   1000
#define CONF_HEARTBEAT_MIN   10          /* ms; a faster beat is a busy loop */
#define CONF_TEXT_SHOWN      60          /* bytes of user text in a message */

/* Where the current key of the handler came from (set by the reader). */
enum conf_linekind { LK_OTHER = 0, LK_KEY, LK_CONT };

/* Current section of the reader: an index into sects, or one of these. */
#define CUR_NONE   (-1)   /* before any section: keys are errors */
#define CUR_IGNORE (-2)   /* a section already reported bad: keys skipped */

struct conf_err {
	int file;            /* index into files */
	int line;            /* 0: about the whole file */
	size_t seq;          /* keeps the order of errors on one line */
	char *msg;
};

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

struct conf_parser {
	char **files;                    /* names for messages; [0] = main */
	size_t nfiles;
	struct conf_sect *sects;
	size_t nsects, capsects;
	struct conf_err *errs;
	size_t nerrs, caperrs, nerrs_total;
	bool oom;

	/* reader state, for the file being parsed */
	int file;
	const char *p, *end;
	int line;
	bool agents_only;                /* agents.d/: no [hive] */
	int cur;                         /* section index or CUR_* */
	bool key_open;                   /* indented lines continue a key */
	bool swallow;                    /* indented lines follow a bad line */
	enum conf_linekind kind;         /* of the line inih is handling */
	struct conf_kv *last;            /* what a continuation extends */
};

/* ---- errors ---- */

static void conf_err(struct conf_parser *, int file, int line,
    const char *fmt, ...) CONF_PRINTF(4, 5);

static void
conf_err(struct conf_parser *ps, int file, int line, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	ps->nerrs_total++;
	if (ps->nerrs == CONF_ERRORS_MAX)
		return;
	if (ps->nerrs == ps->caperrs) {
		size_t cap = ps->caperrs ? ps->caperrs * 2 : 16;
		struct conf_err *e = realloc(ps->errs, cap * sizeof(*e));

		if (e == NULL) {
			ps->oom = true;
			return;
		}
		ps->errs = e;
		ps->caperrs = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0) {
		ps->oom = true;
		va_end(ap);
		return;
	}
	va_end(ap);
	ps->errs[ps->nerrs++] = (struct conf_err){ file, line, ps->nerrs_total,
	    msg };
}

static int
conf_err_cmp(const void *a, const void *b)
{
	const struct conf_err *x = a, *y = b;

	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Write the errors sorted by file and line: "file:line: message". */
static void
conf_err_print(struct conf_parser *ps, FILE *errf)
{
	qsort(ps->errs, ps->nerrs, sizeof(*ps->errs), conf_err_cmp);
	if (errf == NULL)
		return;
	for (size_t i = 0; i < ps->nerrs; i++) {
		const struct conf_err *e = &ps->errs[i];

		if (e->line > 0)
			fprintf(errf, "%s:%d: %s\n", ps->files[e->file], e->line,
			    e->msg);
		else
			fprintf(errf, "%s: %s\n", ps->files[e->file], e->msg);
	}
	if (ps->nerrs_total > ps->nerrs)
		fprintf(errf, "%s: %zu more errors not shown\n", ps->files[0],
		    ps->nerrs_total - ps->nerrs);
	if (ps->oom)
		fprintf(errf, "%s: out of memory while reading the configuration\n",
		    ps->files[0]);
}

/*
 * User text in a message: at most CONF_TEXT_SHOWN bytes, anything not
 * printable ASCII as '?', so that a message never carries control
 * characters to a terminal or the journal.  Returns buf.
 */
static const char *
conf_show(char *buf, size_t len, const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 4 < len && i < CONF_TEXT_SHOWN; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i] != '\0')
		buf[i++] = '.', buf[i++] = '.', buf[i++] = '.';
	buf[i] = '\0';
	return buf;
}

#define SHOW_MAX (CONF_TEXT_SHOWN + 8)

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

/*
 * Split s into words like a POSIX shell, without any expansion: blanks
 * separate words; '...' keeps everything; "..." keeps everything but lets
 * a backslash escape \ " $ `; elsewhere a backslash escapes any character;
 * quoted and unquoted parts join ("a"'b'c is abc; "" is an empty word).
 * Stores up to max new strings in out; returns their number, or -1 with
 * *why set (nothing allocated then).
 */
static int
conf_split(const char *s, char **out, int max, const char **why)
{
	char *w = malloc(strlen(s) + 1);
	int n = 0;

	*why = "out of memory";
	if (w == NULL)
		return -1;
	for (;;) {
		size_t wl = 0;

		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			break;
		while (*s != '\0' && *s != ' ' && *s != '\t') {
			if (*s == '\\') {
				if (s[1] == '\0') {
					*why = "backslash at the end";
					goto err;
				}
				w[wl++] = s[1];
				s += 2;
			} else if (*s == '\'') {
				for (s++; *s != '\0' && *s != '\''; s++)
					w[wl++] = *s;
				if (*s == '\0') {
					*why = "unterminated single quote";
					goto err;
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
					*why = "unterminated double quote";
					goto err;
				}
				s++;
			} else {
				w[wl++] = *s++;
			}
		}
		if (n == max) {
			*why = "too many words";
			goto err;
		}
		if ((out[n] = strndup(w, wl)) == NULL) {
			*why = "out of memory";
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

/* host:port, [v6]:port, with a port 1..65535: 0 or -1. */
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

/* ---- pass 1: reading files into sections ---- */

static struct conf_sect *
conf_sect_find(struct conf_parser *ps, bool hive, const char *name)
{
	for (size_t i = 0; i < ps->nsects; i++) {
		struct conf_sect *sc = &ps->sects[i];

		if (sc->hive == hive && (hive || strcmp(sc->name, name) == 0))
			return sc;
	}
	return NULL;
}

/* Add a section; returns its index or CUR_IGNORE (error reported). */
static int
conf_sect_add(struct conf_parser *ps, bool hive, const char *name)
{
	struct conf_sect *sc;

	if (ps->nsects == CONF_SECTIONS_MAX) {
		conf_err(ps, ps->file, ps->line, "too many sections (at most %d)",
		    CONF_SECTIONS_MAX);
		return CUR_IGNORE;
	}
	if (ps->nsects == ps->capsects) {
		size_t cap = ps->capsects ? ps->capsects * 2 : 8;

		sc = realloc(ps->sects, cap * sizeof(*sc));
		if (sc == NULL) {
			ps->oom = true;
			return CUR_IGNORE;
		}
		ps->sects = sc;
		ps->capsects = cap;
	}
	sc = &ps->sects[ps->nsects];
	*sc = (struct conf_sect){ .file = ps->file, .line = ps->line,
	    .hive = hive };
	snprintf(sc->name, sizeof(sc->name), "%s", hive ? "hive" : name);
	return (int)ps->nsects++;
}

/*
 * A section header: inner is the text between '[' and the last ']'.
 * Sets ps->cur.  [hive], [agent:NAME], [agent "NAME"].
 */
static void
conf_section(struct conf_parser *ps, char *inner)
{
	char show[SHOW_MAX], *name = NULL, *e;
	struct conf_sect *dup;

	while (isspace((unsigned char)*inner))
		inner++;
	for (e = inner + strlen(inner); e > inner && isspace((unsigned char)e[-1]); )
		*--e = '\0';

	ps->cur = CUR_IGNORE;
	if (strcmp(inner, "hive") == 0) {
		if (ps->agents_only) {
			conf_err(ps, ps->file, ps->line,
			    "[hive] belongs in the main file; agents.d/ holds only agent sections");
			return;
		}
		if ((dup = conf_sect_find(ps, true, NULL)) != NULL) {
			conf_err(ps, ps->file, ps->line,
			    "duplicate section [hive] (first at line %d)", dup->line);
			return;
		}
		ps->cur = conf_sect_add(ps, true, NULL);
		return;
	}
	if (strncmp(inner, "agent", 5) == 0 && inner[5] == ':') {
		name = inner + 6;
		while (isspace((unsigned char)*name))
			name++;
	} else if (strncmp(inner, "agent", 5) == 0 &&
	    isspace((unsigned char)inner[5])) {
		name = inner + 6;
		while (isspace((unsigned char)*name))
			name++;
		e = name + strlen(name);
		if (*name != '"' || e - name < 2 || e[-1] != '"') {
			conf_err(ps, ps->file, ps->line,
			    "bad section [%s]: write [agent \"NAME\"] or [agent:NAME]",
			    conf_show(show, sizeof(show), inner));
			return;
		}
		e[-1] = '\0';
		name++;
	}
	if (name == NULL) {
		conf_err(ps, ps->file, ps->line,
		    "unknown section [%s]: expected [hive] or [agent:NAME]",
		    conf_show(show, sizeof(show), inner));
		return;
	}
	if (proto_valid_name(name, strlen(name)) != 0) {
		conf_err(ps, ps->file, ps->line, "bad agent name '%s': 1..%d of "
		    "[A-Za-z0-9_.-], not starting with '.' or '-'",
		    conf_show(show, sizeof(show), name), HIVE_NAME_MAX);
		return;
	}
	if ((dup = conf_sect_find(ps, false, name)) != NULL) {
		if (dup->file == ps->file)
			conf_err(ps, ps->file, ps->line,
			    "duplicate agent '%s' (first at line %d)", name, dup->line);
		else
			conf_err(ps, ps->file, ps->line,
			    "duplicate agent '%s' (first at %s:%d)", name,
			    ps->files[dup->file], dup->line);
		return;
	}
	ps->cur = conf_sect_add(ps, false, name);
}

/* The neutral line handed to inih instead of anything we handle or reject:
 * a section header, so that inih also forgets the key a following indented
 * line would continue. */
static char *
conf_reader_neutral(char *buf)
{
	strcpy(buf, "[s]\n");
	return buf;
}

/* A bad line (already reported): inih gets the neutral line, and the
 * indented lines after it, which probably continue it, are skipped rather
 * than reported one by one. */
static char *
conf_reader_bad(struct conf_parser *ps, char *buf)
{
	ps->key_open = false;
	ps->swallow = true;
	ps->last = NULL;
	return conf_reader_neutral(buf);
}

/* A line inih gets as it is (len bytes already in buf). */
static char *
conf_reader_pass(char *buf, size_t len)
{
	buf[len] = '\n';
	buf[len + 1] = '\0';
	return buf;
}

/*
 * inih's ini_reader: the next line of the file being parsed, as fgets
 * would give it (num is inih's buffer size).  See the comment at the top.
 */
static char *
conf_reader(char *buf, int num, void *arg)
{
	struct conf_parser *ps = arg;
	const char *line, *nl;
	char *t;
	size_t len;
	char show[SHOW_MAX];

	/* inih's buffer is 200 bytes; a tiny one could not even hold the
	 * neutral line. */
	if (ps->p >= ps->end || num < 8)
		return NULL;
	line = ps->p;
	nl = memchr(line, '\n', (size_t)(ps->end - line));
	len = nl ? (size_t)(nl - line) : (size_t)(ps->end - line);
	ps->p = line + len + (nl != NULL);
	ps->line++;
	ps->kind = LK_OTHER;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (ps->line == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0)
		line += 3, len -= 3;

	if (memchr(line, '\0', len) != NULL) {
		conf_err(ps, ps->file, ps->line, "NUL byte in line");
		return conf_reader_bad(ps, buf);
	}
	/* Room for the line, '\n' and '\0', and one byte more: inih treats a
	 * full buffer as a line cut short. */
	if (len + 3 > (size_t)num) {
		conf_err(ps, ps->file, ps->line, "line too long (%zu bytes, at most"
		    " %d): continue a long value on indented lines", len, num - 3);
		return conf_reader_bad(ps, buf);
	}
	memcpy(buf, line, len);
	buf[len] = '\0';

	for (t = buf; isspace((unsigned char)*t); t++)
		;
	if (*t == '\0' || *t == ';' || *t == '#')
		return conf_reader_pass(buf, len);   /* blank or comment */
	if (t > buf && (ps->key_open || ps->swallow)) {
		if (ps->swallow)
			return conf_reader_neutral(buf);
		ps->kind = LK_CONT;
		return conf_reader_pass(buf, len);
	}
	ps->swallow = false;
	if (*t == '[') {
		char *close = strrchr(buf, ']');

		ps->key_open = false;
		ps->last = NULL;
		for (char *q = close ? close + 1 : NULL; q && *q; q++)
			if (!isspace((unsigned char)*q))
				close = NULL;
		if (close == NULL) {
			conf_err(ps, ps->file, ps->line,
			    "bad section header '%s': it must end with ']'",
			    conf_show(show, sizeof(show), t));
			ps->cur = CUR_IGNORE;
			return conf_reader_neutral(buf);
		}
		*close = '\0';
		conf_section(ps, t + 1);
		return conf_reader_neutral(buf);
	}
	if (strpbrk(t, "=:") == NULL) {
		conf_err(ps, ps->file, ps->line, "expected 'key = value', "
		    "[section] or a comment, not '%s'",
		    conf_show(show, sizeof(show), t));
		return conf_reader_bad(ps, buf);
	}
	if (*t == '=' || *t == ':') {
		conf_err(ps, ps->file, ps->line, "missing key before '%c'", *t);
		return conf_reader_bad(ps, buf);
	}
	ps->kind = LK_KEY;
	ps->key_open = true;
	return conf_reader_pass(buf, len);
}

/* Control characters but tab in a value are refused (they would end up in
 * argv, the environment or a path). */
static bool
conf_has_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return true;
	return false;
}

/* inih's handler: one "key = value" (or a continuation of the last one). */
static int
conf_handler(void *arg, const char *section, const char *name,
    const char *value)
{
	struct conf_parser *ps = arg;
	struct conf_sect *sc;
	struct conf_kv *kv;
	char show[SHOW_MAX];

	(void)section;                       /* ours is ps->cur: see the top */
	if (value == NULL || name == NULL)
		return 1;
	if (conf_has_ctl(value)) {
		conf_err(ps, ps->file, ps->line, "control character in value");
		ps->last = NULL;
		return 1;
	}
	if (ps->kind == LK_CONT) {
		char *joined;

		if (ps->last == NULL || *value == '\0')
			return 1;
		if (asprintf(&joined, "%s%s%s", ps->last->value,
		    *ps->last->value ? " " : "", value) < 0) {
			ps->oom = true;
			return 1;
		}
		free(ps->last->value);
		ps->last->value = joined;
		return 1;
	}
	ps->last = NULL;
	if (ps->kind != LK_KEY) {
		/* Only if our reader and inih disagree on a line. */
		conf_err(ps, ps->file, ps->line, "cannot parse this line");
		return 1;
	}
	if (ps->cur == CUR_IGNORE)
		return 1;
	if (ps->cur == CUR_NONE) {
		conf_err(ps, ps->file, ps->line,
		    "key '%s' before any section: put it under [hive] or "
		    "[agent:NAME]", conf_show(show, sizeof(show), name));
		return 1;
	}
	sc = &ps->sects[ps->cur];
	for (size_t i = 0; i < sc->nkv; i++) {
		if (strcmp(sc->kv[i].key, name) == 0) {
			conf_err(ps, ps->file, ps->line,
			    "duplicate key '%s' (first at line %d)",
			    conf_show(show, sizeof(show), name), sc->kv[i].line);
			return 1;
		}
	}
	if (sc->nkv == sc->cap) {
		size_t cap = sc->cap ? sc->cap * 2 : 8;

		kv = realloc(sc->kv, cap * sizeof(*kv));
		if (kv == NULL) {
			ps->oom = true;
			return 1;
		}
		sc->kv = kv;
		sc->cap = cap;
	}
	kv = &sc->kv[sc->nkv];
	kv->key = strdup(name);
	kv->value = strdup(value);
	kv->line = ps->line;
	if (kv->key == NULL || kv->value == NULL) {
		free(kv->key);
		free(kv->value);
		ps->oom = true;
		return 1;
	}
	sc->nkv++;
	ps->last = kv;
	return 1;
}

/* Parse one file's text (len bytes, may hold NULs) into ps's sections. */
static void
conf_parse_text(struct conf_parser *ps, int file, const char *text,
    size_t len, bool agents_only)
{
	int rc;

	ps->file = file;
	ps->p = text;
	ps->end = text + len;
	ps->line = 0;
	ps->agents_only = agents_only;
	ps->cur = CUR_NONE;
	ps->key_open = false;
	ps->swallow = false;
	ps->last = NULL;
#ifdef HIVE_INIH_RUNTIME
	/* Debian builds inih with these as variables; the defaults would cut
	 * values at " ;" and skip a BOM we already skip.  Set every time: they
	 * are process-wide, and hived is single-threaded. */
	ini_allow_multiline = true;
	ini_allow_inline_comments = false;
	ini_allow_no_value = false;
	ini_stop_on_first_error = false;
	ini_allow_bom = false;
#endif
	rc = ini_parse_stream(conf_reader, ps, conf_handler, ps);
	if (rc == -2)
		ps->oom = true;
	else if (rc > 0)
		conf_err(ps, file, rc, "cannot parse this line");
}

/* Read a whole file (at most CONF_FILE_MAX bytes).  Returns 0, or -1 after
 * reporting why. */
static int
conf_read_file(struct conf_parser *ps, int file, char **text, size_t *len)
{
	const char *path = ps->files[file];
	FILE *f = fopen(path, "re");
	struct stat st;
	char *buf = NULL;
	size_t n;

	*text = NULL;
	if (f == NULL) {
		conf_err(ps, file, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == -1 || !S_ISREG(st.st_mode)) {
		conf_err(ps, file, 0, "not a regular file");
		goto err;
	}
	if ((buf = malloc(CONF_FILE_MAX + 1)) == NULL) {
		ps->oom = true;
		goto err;
	}
	n = fread(buf, 1, CONF_FILE_MAX + 1, f);
	if (ferror(f)) {
		conf_err(ps, file, 0, "cannot read: %s", strerror(errno));
		goto err;
	}
	if (n > CONF_FILE_MAX) {
		conf_err(ps, file, 0, "larger than %u bytes", CONF_FILE_MAX);
		goto err;
	}
	fclose(f);
	*text = buf;
	*len = n;
	return 0;
err:
	free(buf);
	fclose(f);
	return -1;
}

static int
conf_add_file(struct conf_parser *ps, const char *name)
{
	char **f = realloc(ps->files, (ps->nfiles + 1) * sizeof(*f));

	if (f == NULL)
		return -1;
	ps->files = f;
	if ((f[ps->nfiles] = strdup(name)) == NULL)
		return -1;
	return (int)ps->nfiles++;
}

static int
conf_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.conf in DIR/agents.d, where DIR holds the main file, in name
 * order.  No agents.d/ is fine. */
static void
conf_parse_agents_d(struct conf_parser *ps, const char *main_path)
{
	const char *slash = strrchr(main_path, '/');
	char *dir = NULL, **names = NULL;
	size_t n = 0, cap = 0;
	DIR *d = NULL;
	struct dirent *de;

	if (asprintf(&dir, "%.*sagents.d", slash ? (int)(slash - main_path + 1)
	    : 0, main_path) < 0) {
		dir = NULL;
		ps->oom = true;
		goto out;
	}
	if ((d = opendir(dir)) == NULL) {
		if (errno != ENOENT && errno != ENOTDIR) {
			int fi = conf_add_file(ps, dir);

			if (fi < 0)
				ps->oom = true;
			else
				conf_err(ps, fi, 0, "cannot open: %s", strerror(errno));
		}
		goto out;
	}
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (de->d_name[0] == '.' || l <= 5 ||
		    strcmp(de->d_name + l - 5, ".conf") != 0)
			continue;
		if (n == cap) {
			char **nn;

			cap = cap ? cap * 2 : 8;
			if ((nn = realloc(names, cap * sizeof(*nn))) == NULL) {
				ps->oom = true;
				goto out;
			}
			names = nn;
		}
		if ((names[n] = strdup(de->d_name)) == NULL) {
			ps->oom = true;
			goto out;
		}
		n++;
	}
	qsort(names, n, sizeof(*names), conf_strcmp);
	for (size_t i = 0; i < n; i++) {
		char *path, *text;
		size_t len;
		int fi;

		if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
			ps->oom = true;
			goto out;
		}
		fi = conf_add_file(ps, path);
		free(path);
		if (fi < 0) {
			ps->oom = true;
			goto out;
		}
		if (conf_read_file(ps, fi, &text, &len) == 0) {
			conf_parse_text(ps, fi, text, len, true);
			free(text);
		}
	}
out:
	if (d != NULL)
		closedir(d);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(dir);
}

/* ---- pass 2: interpreting sections ---- */

/* The value of one key as the type its setter wants; each reports its
 * own error as "key: ..." at the key's line. */

static void
conf_kv_err(struct conf_parser *ps, int file, const struct conf_kv *kv,
    const char *what)
{
	char show[SHOW_MAX];

	conf_err(ps, file, kv->line, "%s: %s, not '%s'", kv->key, what,
	    conf_show(show, sizeof(show), kv->value));
}

static void
kv_duration(struct conf_parser *ps, int file, const struct conf_kv *kv,
    unsigned *dst, unsigned min, unsigned max)
{
	unsigned v;
	char what[128];

	if (conf_parse_duration(kv->value, &v) != 0) {
		conf_kv_err(ps, file, kv, "expected a duration such as 100ms, 2s, "
		    "5m, 1h (a bare number is seconds)");
		return;
	}
	if (v < min || v > max) {
		snprintf(what, sizeof(what), "must be %ums..%ums", min, max);
		conf_kv_err(ps, file, kv, what);
		return;
	}
	*dst = v;
}

static void
kv_uint(struct conf_parser *ps, int file, const struct conf_kv *kv,
    uint64_t *dst, uint64_t min, uint64_t max)
{
	uint64_t v;
	const char *end = conf_digits(kv->value, &v);
	char what[128];

	if (end == NULL || *end != '\0' || v < min || v > max) {
		snprintf(what, sizeof(what), "expected a whole number %llu..%llu",
		    (unsigned long long)min, (unsigned long long)max);
		conf_kv_err(ps, file, kv, what);
		return;
	}
	*dst = v;
}

static void
kv_unsigned(struct conf_parser *ps, int file, const struct conf_kv *kv,
    unsigned *dst, unsigned min, unsigned max)
{
	uint64_t v = *dst;

	kv_uint(ps, file, kv, &v, min, max);
	*dst = (unsigned)v;
}

static void
kv_bool(struct conf_parser *ps, int file, const struct conf_kv *kv, int *dst)
{
	if (conf_parse_bool(kv->value, dst) != 0)
		conf_kv_err(ps, file, kv,
		    "expected yes/no, true/false, on/off or 1/0");
}

/* An absolute path, strdup'd into *dst (replacing what was there). */
static void
kv_path(struct conf_parser *ps, int file, const struct conf_kv *kv,
    char **dst)
{
	char *v;

	if (kv->value[0] != '/' || strlen(kv->value) >= PATH_MAX) {
		conf_kv_err(ps, file, kv, "expected an absolute path");
		return;
	}
	if ((v = strdup(kv->value)) == NULL) {
		ps->oom = true;
		return;
	}
	free(*dst);
	*dst = v;
}

static void
kv_string(struct conf_parser *ps, const struct conf_kv *kv, char **dst)
{
	char *v = strdup(kv->value);

	if (v == NULL) {
		ps->oom = true;
		return;
	}
	free(*dst);
	*dst = v;
}

static char *
conf_default_worker(void)
{
	char exe[PATH_MAX], *cand[4] = { NULL }, *ret = NULL;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	size_t i;

	/* Beside hived (installed), then the build tree's layout (so that
	 * build/supervisor/hived finds build/worker/hive-worker), then where
	 * `meson install` puts it. */
	if (n > 0) {
		char *slash;

		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL)
			*slash = '\0';
		if (asprintf(&cand[0], "%s/hive-worker", exe) < 0)
			cand[0] = NULL;
		if (asprintf(&cand[1], "%s/../worker/hive-worker", exe) < 0)
			cand[1] = NULL;
	}
	cand[2] = strdup(HIVE_BINDIR "/hive-worker");
	cand[3] = strdup(HIVE_LIBEXECDIR "/hive/hive-worker");
	for (i = 0; i < 4 && ret == NULL; i++)
		if (cand[i] != NULL && access(cand[i], X_OK) == 0)
			ret = realpath(cand[i], NULL);
	if (ret == NULL)
		ret = strdup(HIVE_BINDIR "/hive-worker");
	for (i = 0; i < 4; i++)
		free(cand[i]);
	return ret;
}

/* Defaults of [hive] (config.h). */
static int
conf_hive_defaults(struct hive_conf *c)
{
	snprintf(c->redis, sizeof(c->redis), "127.0.0.1:6379");
	snprintf(c->prefix, sizeof(c->prefix), "hive");
	if (gethostname(c->host, sizeof(c->host)) != 0 || c->host[0] == '\0')
		snprintf(c->host, sizeof(c->host), "localhost");
	c->host[sizeof(c->host) - 1] = '\0';
	snprintf(c->http, sizeof(c->http), "127.0.0.1:8420");
	c->stop_timeout_ms = 30000;
	c->heartbeat_ms = 1000;
	c->snapshots_keep = 10;
	c->allow_eviction = 0;
	c->verbose = 0;
	c->postgres = strdup("");
	c->worker_path = conf_default_worker();
	return c->postgres && c->worker_path ? 0 : -1;
}

static void
conf_build_hive(struct conf_parser *ps, const struct conf_sect *sc,
    struct hive_conf *c)
{
	char show[SHOW_MAX];
	unsigned u;

	for (size_t i = 0; sc != NULL && i < sc->nkv; i++) {
		const struct conf_kv *kv = &sc->kv[i];
		const char *k = kv->key, *v = kv->value;
		int f = sc->file;

		if (strcmp(k, "redis") == 0) {
			if (strlen(v) >= sizeof(c->redis) ||
			    (v[0] != '/' && conf_valid_hostport(v, 0) != 0))
				conf_kv_err(ps, f, kv, "expected HOST:PORT or the "
				    "absolute path of a unix socket");
			else
				snprintf(c->redis, sizeof(c->redis), "%s", v);
		} else if (strcmp(k, "prefix") == 0) {
			if (proto_valid_name(v, strlen(v)) != 0)
				conf_kv_err(ps, f, kv, "expected a name of [A-Za-z0-9_.-]");
			else
				snprintf(c->prefix, sizeof(c->prefix), "%s", v);
		} else if (strcmp(k, "host") == 0) {
			if (conf_valid_host(v) != 0)
				conf_kv_err(ps, f, kv, "expected a host name of [A-Za-z0-9_.-]");
			else
				snprintf(c->host, sizeof(c->host), "%s", v);
		} else if (strcmp(k, "postgres") == 0) {
			kv_string(ps, kv, &c->postgres);
		} else if (strcmp(k, "worker") == 0) {
			kv_path(ps, f, kv, &c->worker_path);
		} else if (strcmp(k, "http") == 0) {
			if (strlen(v) >= sizeof(c->http) ||
			    (v[0] != '\0' && conf_valid_hostport(v, 1) != 0))
				conf_kv_err(ps, f, kv, "expected HOST:PORT, or nothing "
				    "for no HTTP API");
			else
				snprintf(c->http, sizeof(c->http), "%s", v);
		} else if (strcmp(k, "token_file") == 0) {
			kv_path(ps, f, kv, &c->token_file);
		} else if (strcmp(k, "stop_timeout") == 0) {
			kv_duration(ps, f, kv, &c->stop_timeout_ms, 1, UINT_MAX);
		} else if (strcmp(k, "heartbeat_interval") == 0) {
			kv_duration(ps, f, kv, &c->heartbeat_ms, CONF_HEARTBEAT_MIN,
			    3600000);
		} else if (strcmp(k, "snapshots_keep") == 0) {
			u = c->snapshots_keep;
			kv_unsigned(ps, f, kv, &u, 1, CONF_SNAPSHOTS_MAX);
			c->snapshots_keep = u;
		} else if (strcmp(k, "allow_eviction") == 0) {
			kv_bool(ps, f, kv, &c->allow_eviction);
		} else if (strcmp(k, "log_level") == 0) {
			if (strcmp(v, "info") == 0)
				c->verbose = 0;
			else if (strcmp(v, "debug") == 0)
				c->verbose = 1;
			else
				conf_kv_err(ps, f, kv, "expected info or debug");
		} else {
			conf_err(ps, f, kv->line, "unknown key '%s' in [hive]",
			    conf_show(show, sizeof(show), k));
		}
	}
}

static void
conf_agent_caps(struct conf_parser *ps, int f, const struct conf_kv *kv,
    struct hive_agent_conf *a)
{
	const char *s = kv->value;
	char show[SHOW_MAX], cap[HIVE_NAME_MAX + 1];

	for (;;) {
		size_t n;

		s += strspn(s, ", \t");
		if (*s == '\0')
			return;
		n = strcspn(s, ", \t");
		if (n > HIVE_NAME_MAX || proto_valid_name(s, n) != 0) {
			char *bad = strndup(s, n);

			conf_err(ps, f, kv->line, "capabilities: bad name '%s': 1..%d "
			    "of [A-Za-z0-9_.-], not starting with '.' or '-'",
			    bad ? conf_show(show, sizeof(show), bad) : "?",
			    HIVE_NAME_MAX);
			free(bad);
			return;
		}
		snprintf(cap, sizeof(cap), "%.*s", (int)n, s);
		for (int i = 0; i < a->ncaps; i++) {
			if (strcmp(a->caps[i], cap) == 0) {
				conf_err(ps, f, kv->line,
				    "capabilities: '%s' listed twice", cap);
				return;
			}
		}
		if (a->ncaps == HIVE_CAPS_MAX) {
			conf_err(ps, f, kv->line, "capabilities: more than %d",
			    HIVE_CAPS_MAX);
			return;
		}
		if ((a->caps[a->ncaps] = strdup(cap)) == NULL) {
			ps->oom = true;
			return;
		}
		a->ncaps++;
		s += n;
	}
}

static void
conf_agent_env(struct conf_parser *ps, int f, const struct conf_kv *kv,
    struct hive_agent_conf *a)
{
	char show[SHOW_MAX];
	const char *why;
	int n = conf_split(kv->value, a->env, HIVE_ENV_MAX, &why);

	if (n < 0) {
		if (strcmp(why, "too many words") == 0)
			conf_err(ps, f, kv->line, "environment: more than %d "
			    "variables", HIVE_ENV_MAX);
		else
			conf_err(ps, f, kv->line, "environment: %s", why);
		return;
	}
	a->nenv = n;
	for (int i = 0; i < n; i++) {
		const char *eq = strchr(a->env[i], '=');
		size_t kl = eq ? (size_t)(eq - a->env[i]) : 0;

		if (eq == NULL || conf_valid_env_name(a->env[i], kl) != 0) {
			conf_err(ps, f, kv->line, "environment: expected NAME=value "
			    "with NAME of [A-Za-z0-9_] not starting with a digit, "
			    "not '%s'", conf_show(show, sizeof(show), a->env[i]));
			return;
		}
		for (int j = 0; j < i; j++) {
			if (strncmp(a->env[j], a->env[i], kl + 1) == 0) {
				conf_err(ps, f, kv->line, "environment: %.*s set twice",
				    (int)kl, a->env[i]);
				return;
			}
		}
	}
}

static void
conf_agent_command(struct conf_parser *ps, int f, const struct conf_kv *kv,
    struct hive_agent_conf *a)
{
	char *words[HIVE_ARGV_MAX];
	const char *why;
	int n = conf_split(kv->value, words, HIVE_ARGV_MAX, &why);

	if (n < 0) {
		if (strcmp(why, "too many words") == 0)
			conf_err(ps, f, kv->line, "command: more than %d words",
			    HIVE_ARGV_MAX);
		else
			conf_err(ps, f, kv->line, "command: %s", why);
		return;
	}
	if (n == 0 || words[0][0] == '\0') {
		conf_err(ps, f, kv->line, "command: empty");
		goto err;
	}
	if ((a->argv = calloc((size_t)n + 1, sizeof(*a->argv))) == NULL) {
		ps->oom = true;
		goto err;
	}
	memcpy(a->argv, words, (size_t)n * sizeof(*words));
	return;
err:
	while (n > 0)
		free(words[--n]);
}

/* FNV-1a, 64 bits: stable across runs and hosts, which a reload needs. */
static uint64_t
conf_hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t
conf_hash_u64(uint64_t h, uint64_t v)
{
	return conf_hash_bytes(h, &v, sizeof(v));
}

/* A string with its length first, so that "ab","c" and "a","bc" differ;
 * NULL differs from "". */
static uint64_t
conf_hash_str(uint64_t h, const char *s)
{
	if (s == NULL)
		return conf_hash_u64(h, UINT64_MAX);
	h = conf_hash_u64(h, strlen(s));
	return conf_hash_bytes(h, s, strlen(s));
}

/*
 * Everything a worker of this agent is started with: the agent's own
 * settings (parsed values, so "2s" and "2000ms" are the same) and the
 * [hive] settings on the worker's command line.  Not file and line:
 * moving a section restarts nothing.
 */
static uint64_t
conf_agent_hash(const struct hive_conf *c, const struct hive_agent_conf *a)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	int i;

	h = conf_hash_str(h, a->name);
	for (i = 0; a->argv != NULL && a->argv[i] != NULL; i++)
		h = conf_hash_str(h, a->argv[i]);
	h = conf_hash_u64(h, (uint64_t)i);
	h = conf_hash_u64(h, a->mode);
	for (i = 0; i < a->ncaps; i++)
		h = conf_hash_str(h, a->caps[i]);
	h = conf_hash_u64(h, (uint64_t)a->ncaps);
	h = conf_hash_u64(h, a->instances);
	h = conf_hash_u64(h, a->concurrency);
	h = conf_hash_u64(h, a->restart);
	h = conf_hash_u64(h, a->backoff_ms);
	h = conf_hash_u64(h, a->backoff_max_ms);
	h = conf_hash_u64(h, a->restart_limit);
	h = conf_hash_u64(h, a->restart_window_ms);
	h = conf_hash_u64(h, a->cooldown_ms);
	h = conf_hash_u64(h, a->heartbeat_deadline_ms);
	h = conf_hash_u64(h, a->task_timeout_ms);
	h = conf_hash_u64(h, a->max_attempts);
	h = conf_hash_u64(h, a->max_tasks);
	h = conf_hash_u64(h, a->max_rss_kb);
	for (i = 0; i < a->nenv; i++)
		h = conf_hash_str(h, a->env[i]);
	h = conf_hash_u64(h, (uint64_t)a->nenv);
	h = conf_hash_str(h, a->directory);
	h = conf_hash_u64(h, (uint64_t)a->autostart);
	h = conf_hash_str(h, c->redis);
	h = conf_hash_str(h, c->prefix);
	h = conf_hash_str(h, c->host);
	h = conf_hash_str(h, c->worker_path);
	h = conf_hash_u64(h, c->heartbeat_ms);
	return h;
}

static void
conf_build_agent(struct conf_parser *ps, const struct conf_sect *sc,
    const struct hive_conf *c, struct hive_agent_conf *a)
{
	const struct conf_kv *cmd = NULL, *kb = NULL, *kbm = NULL, *khd = NULL;
	char show[SHOW_MAX];
	int f = sc->file;

	snprintf(a->name, sizeof(a->name), "%s", sc->name);
	snprintf(a->file, sizeof(a->file), "%s", ps->files[sc->file]);
	a->line = sc->line;
	a->mode = HIVE_MODE_STREAM;
	a->instances = 1;
	a->concurrency = 1;
	a->restart = HIVE_RESTART_ALWAYS;
	a->backoff_ms = 100;
	a->backoff_max_ms = 30000;
	a->restart_limit = 5;
	a->restart_window_ms = 60000;
	a->cooldown_ms = 0;
	a->heartbeat_deadline_ms = 10000;
	a->task_timeout_ms = 0;
	a->max_attempts = 3;
	a->max_tasks = 0;
	a->max_rss_kb = 0;
	a->autostart = 1;

	for (size_t i = 0; i < sc->nkv; i++) {
		const struct conf_kv *kv = &sc->kv[i];
		const char *k = kv->key, *v = kv->value;

		if (strcmp(k, "command") == 0) {
			cmd = kv;
			conf_agent_command(ps, f, kv, a);
		} else if (strcmp(k, "mode") == 0) {
			if (strcmp(v, "stream") == 0)
				a->mode = HIVE_MODE_STREAM;
			else if (strcmp(v, "exec") == 0)
				a->mode = HIVE_MODE_EXEC;
			else
				conf_kv_err(ps, f, kv, "expected stream or exec");
		} else if (strcmp(k, "capabilities") == 0) {
			conf_agent_caps(ps, f, kv, a);
		} else if (strcmp(k, "instances") == 0) {
			kv_unsigned(ps, f, kv, &a->instances, 1, HIVE_INSTANCE_MAX);
		} else if (strcmp(k, "concurrency") == 0) {
			kv_unsigned(ps, f, kv, &a->concurrency, 1,
			    CONF_CONCURRENCY_MAX);
		} else if (strcmp(k, "restart") == 0) {
			if (strcmp(v, "always") == 0)
				a->restart = HIVE_RESTART_ALWAYS;
			else if (strcmp(v, "on-failure") == 0)
				a->restart = HIVE_RESTART_ON_FAILURE;
			else if (strcmp(v, "never") == 0)
				a->restart = HIVE_RESTART_NEVER;
			else
				conf_kv_err(ps, f, kv,
				    "expected always, on-failure or never");
		} else if (strcmp(k, "backoff") == 0) {
			kb = kv;
			kv_duration(ps, f, kv, &a->backoff_ms, 0, HIVE_TIMEOUT_MAX);
		} else if (strcmp(k, "backoff_max") == 0) {
			kbm = kv;
			kv_duration(ps, f, kv, &a->backoff_max_ms, 0,
			    HIVE_TIMEOUT_MAX);
		} else if (strcmp(k, "restart_limit") == 0) {
			kv_unsigned(ps, f, kv, &a->restart_limit, 1,
			    CONF_RESTART_LIMIT_MAX);
		} else if (strcmp(k, "restart_window") == 0) {
			kv_duration(ps, f, kv, &a->restart_window_ms, 1, UINT_MAX);
		} else if (strcmp(k, "cooldown") == 0) {
			kv_duration(ps, f, kv, &a->cooldown_ms, 0, UINT_MAX);
		} else if (strcmp(k, "heartbeat_deadline") == 0) {
			khd = kv;
			kv_duration(ps, f, kv, &a->heartbeat_deadline_ms, 1,
			    UINT_MAX);
		} else if (strcmp(k, "task_timeout") == 0) {
			kv_duration(ps, f, kv, &a->task_timeout_ms, 0,
			    HIVE_TIMEOUT_MAX);
		} else if (strcmp(k, "max_attempts") == 0) {
			kv_unsigned(ps, f, kv, &a->max_attempts, 1,
			    HIVE_ATTEMPTS_MAX);
		} else if (strcmp(k, "max_tasks") == 0) {
			kv_uint(ps, f, kv, &a->max_tasks, 0, UINT64_MAX);
		} else if (strcmp(k, "max_rss") == 0) {
			if (conf_parse_size_kb(v, &a->max_rss_kb) != 0)
				conf_kv_err(ps, f, kv, "expected a size such as 512K, "
				    "64M, 2G (a bare number is bytes)");
		} else if (strcmp(k, "environment") == 0) {
			conf_agent_env(ps, f, kv, a);
		} else if (strcmp(k, "directory") == 0) {
			kv_path(ps, f, kv, &a->directory);
		} else if (strcmp(k, "autostart") == 0) {
			kv_bool(ps, f, kv, &a->autostart);
		} else {
			conf_err(ps, f, kv->line, "unknown key '%s' in [agent:%s]",
			    conf_show(show, sizeof(show), k), a->name);
		}
	}

	if (cmd == NULL)
		conf_err(ps, f, sc->line, "agent '%s': missing command", a->name);
	if (a->backoff_max_ms < a->backoff_ms)
		conf_err(ps, f, kbm ? kbm->line : kb ? kb->line : sc->line, "backoff_max (%ums) "
		    "is shorter than backoff (%ums)", a->backoff_max_ms,
		    a->backoff_ms);
	if (a->heartbeat_deadline_ms <= c->heartbeat_ms)
		conf_err(ps, f, khd ? khd->line : sc->line, "agent '%s': "
		    "heartbeat_deadline (%ums) must be longer than [hive] "
		    "heartbeat_interval (%ums)", a->name, a->heartbeat_deadline_ms,
		    c->heartbeat_ms);
	a->hash = conf_agent_hash(c, a);
}

/* Pass 2 over every section; c gets whatever parsed, errors go to ps. */
static void
conf_build(struct conf_parser *ps, struct hive_conf *c)
{
	const struct conf_sect *hive = conf_sect_find(ps, true, NULL);
	size_t n = ps->nsects - (hive != NULL);

	snprintf(c->file, sizeof(c->file), "%s", ps->files[0]);
	if (conf_hive_defaults(c) != 0) {
		ps->oom = true;
		return;
	}
	conf_build_hive(ps, hive, c);
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

static void
conf_parser_free(struct conf_parser *ps)
{
	for (size_t i = 0; i < ps->nsects; i++) {
		for (size_t j = 0; j < ps->sects[i].nkv; j++) {
			free(ps->sects[i].kv[j].key);
			free(ps->sects[i].kv[j].value);
		}
		free(ps->sects[i].kv);
	}
	free(ps->sects);
	for (size_t i = 0; i < ps->nerrs; i++)
		free(ps->errs[i].msg);
	free(ps->errs);
	for (size_t i = 0; i < ps->nfiles; i++)
		free(ps->files[i]);
	free(ps->files);
}

/*
 * Shared end of conf_load and conf_load_string: pass 2, then either the
 * config or NULL after the errors.
 */
static struct hive_conf *
conf_finish(struct conf_parser *ps, FILE *errf)
{
	struct hive_conf *c = calloc(1, sizeof(*c));

	if (c == NULL)
		ps->oom = true;
	else
		conf_build(ps, c);
	if (ps->nerrs_total > 0 || ps->oom)
		goto err;
	conf_parser_free(ps);
	return c;
err:
	conf_err_print(ps, errf);
	conf_parser_free(ps);
	conf_free(c);
	return NULL;
}

struct hive_conf *
conf_load(const char *path, FILE *errf)
{
	struct conf_parser ps = { 0 };
	char *text;
	size_t len;

	if (conf_add_file(&ps, path) < 0) {
		if (errf != NULL)
			fprintf(errf, "%s: out of memory\n", path);
		conf_parser_free(&ps);
		return NULL;
	}
	if (conf_read_file(&ps, 0, &text, &len) == 0) {
		conf_parse_text(&ps, 0, text, len, false);
		free(text);
	}
	conf_parse_agents_d(&ps, path);
	return conf_finish(&ps, errf);
}

struct hive_conf *
conf_load_string(const char *name, const char *text, size_t len, FILE *errf)
{
	struct conf_parser ps = { 0 };

	if (conf_add_file(&ps, name) < 0) {
		if (errf != NULL)
			fprintf(errf, "%s: out of memory\n", name);
		conf_parser_free(&ps);
		return NULL;
	}
	if (len > CONF_FILE_MAX)
		conf_err(&ps, 0, 0, "larger than %u bytes", CONF_FILE_MAX);
	else
		conf_parse_text(&ps, 0, text, len, false);
	return conf_finish(&ps, errf);
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
