/*
 * config_read.c - the first pass of the configuration (config.h): files
 * into sections of raw "key = value" pairs, each with its line, and the
 * list every error of both passes goes to.
 *
 * The syntax, line by line (a line ends at '\n'; one '\r' before it and a
 * UTF-8 byte-order mark at the start of the file are dropped):
 *
 *   blank, or ';' / '#' first   nothing (also when indented: an indented
 *                               comment does not end a continuation)
 *   indented, after a key       continues that key's value: the line,
 *                               trimmed, is added with one space between
 *   [hive], [agent:NAME],       a section header; a line starting with
 *   [agent "NAME"]              '[' must end with ']' (blanks allowed
 *                               inside the brackets and after them)
 *   key = value, key: value     split at the first '=' or ':'; key and
 *                               value trimmed; no comment at the end of a
 *                               line ("sh -c 'a; b'" keeps its ';')
 *
 * Anything else is an error at its line, and so is a NUL byte, a line over
 * CONF_LINE_MAX bytes, a key before any section, a key twice in a section
 * and a control character (but tab) in a value.  After a bad line, the
 * indented lines under it (most likely its continuation) are skipped, not
 * reported one by one; after a bad section header, its keys are.  Trimming
 * drops isspace() characters: blank, tab, '\v', '\f', '\r'.
 *
 * Lines were once read by inih, whose fixed 200-byte buffer cut them; the
 * only limit now is CONF_LINE_MAX (a long value need not be split), and the
 * file's (CONF_FILE_MAX).
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#define CONF_FILE_MAX        (1u << 20)  /* bytes in one config file */
#define CONF_ERRORS_MAX      100         /* errors kept; the rest are counted */
#define CONF_SECTIONS_MAX    10000       /* sections over all files */

/* Current section of the reader: an index into sects, or one of these. */
#define CUR_NONE   (-1)   /* before any section: keys are errors */
#define CUR_IGNORE (-2)   /* a section already reported bad: keys skipped */

struct conf_err {
	int file;            /* index into files */
	int line;            /* 0: about the whole file */
	size_t seq;          /* keeps the order of errors on one line */
	char *msg;
};

/* The reader's state for the file being read. */
struct conf_reader {
	struct conf_parser *ps;
	int file;
	const char *p, *end;
	int line;
	bool agents_only;                /* agents.d/: no [hive] */
	int cur;                         /* section index or CUR_* */
	bool key_open;                   /* indented lines continue a key */
	bool swallow;                    /* indented lines follow a bad line */
	struct conf_kv *last;            /* what a continuation extends */
	struct hbuf buf;                 /* the current line, NUL-terminated */
};

/* ---- errors ---- */

void
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

void
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

/* Never a control character to a terminal or the journal. */
const char *
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

/* ---- sections ---- */

static struct conf_sect *
conf_sect_find(const struct conf_parser *ps, bool hive, const char *name)
{
	for (size_t i = 0; i < ps->nsects; i++) {
		struct conf_sect *sc = &ps->sects[i];

		if (sc->hive == hive && (hive || strcmp(sc->name, name) == 0))
			return sc;
	}
	return NULL;
}

const struct conf_sect *
conf_sect_hive(const struct conf_parser *ps)
{
	return conf_sect_find(ps, true, NULL);
}

const struct conf_kv *
conf_sect_kv(const struct conf_sect *sc, const char *k)
{
	for (size_t i = 0; sc != NULL && i < sc->nkv; i++)
		if (strcmp(sc->kv[i].key, k) == 0)
			return &sc->kv[i];
	return NULL;
}

/* Add a section; returns its index or CUR_IGNORE (error reported). */
static int
conf_sect_add(struct conf_reader *rd, bool hive, const char *name)
{
	struct conf_parser *ps = rd->ps;
	struct conf_sect *sc;

	if (ps->nsects == CONF_SECTIONS_MAX) {
		conf_err(ps, rd->file, rd->line, "too many sections (at most %d)",
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
	*sc = (struct conf_sect){ .file = rd->file, .line = rd->line,
	    .hive = hive };
	snprintf(sc->name, sizeof(sc->name), "%s", hive ? "hive" : name);
	return (int)ps->nsects++;
}

/* The NAME of [agent:NAME] or [agent "NAME"] in inner (cut in place), or
 * NULL after reporting why it is neither. */
static char *
conf_agent_name(struct conf_reader *rd, char *inner)
{
	char show[CONF_SHOW_MAX], *name, *e;

	if (strncmp(inner, "agent", 5) != 0 ||
	    (inner[5] != ':' && !isspace((unsigned char)inner[5]))) {
		conf_err(rd->ps, rd->file, rd->line,
		    "unknown section [%s]: expected [hive] or [agent:NAME]",
		    conf_show(show, sizeof(show), inner));
		return NULL;
	}
	for (name = inner + 6; isspace((unsigned char)*name); name++)
		;
	if (inner[5] == ':')
		return name;
	e = name + strlen(name);
	if (*name != '"' || e - name < 2 || e[-1] != '"') {
		conf_err(rd->ps, rd->file, rd->line,
		    "bad section [%s]: write [agent \"NAME\"] or [agent:NAME]",
		    conf_show(show, sizeof(show), inner));
		return NULL;
	}
	e[-1] = '\0';
	return name + 1;
}

/*
 * A section header: inner is the text between '[' and the last ']'.
 * Sets rd->cur.  [hive], [agent:NAME], [agent "NAME"].
 */
static void
conf_section(struct conf_reader *rd, char *inner)
{
	struct conf_parser *ps = rd->ps;
	char show[CONF_SHOW_MAX], *name, *e;
	struct conf_sect *dup;

	while (isspace((unsigned char)*inner))
		inner++;
	for (e = inner + strlen(inner); e > inner && isspace((unsigned char)e[-1]); )
		*--e = '\0';

	rd->cur = CUR_IGNORE;
	if (strcmp(inner, "hive") == 0) {
		if (rd->agents_only) {
			conf_err(ps, rd->file, rd->line,
			    "[hive] belongs in the main file; agents.d/ holds only agent sections");
			return;
		}
		if ((dup = conf_sect_find(ps, true, NULL)) != NULL) {
			conf_err(ps, rd->file, rd->line,
			    "duplicate section [hive] (first at line %d)", dup->line);
			return;
		}
		rd->cur = conf_sect_add(rd, true, NULL);
		return;
	}
	if ((name = conf_agent_name(rd, inner)) == NULL)
		return;
	if (proto_valid_name(name, strlen(name)) != 0) {
		conf_err(ps, rd->file, rd->line, "bad agent name '%s': 1..%d of "
		    "[A-Za-z0-9_.-], not starting with '.' or '-'",
		    conf_show(show, sizeof(show), name), HIVE_NAME_MAX);
		return;
	}
	if ((dup = conf_sect_find(ps, false, name)) != NULL) {
		if (dup->file == rd->file)
			conf_err(ps, rd->file, rd->line,
			    "duplicate agent '%s' (first at line %d)", name, dup->line);
		else
			conf_err(ps, rd->file, rd->line,
			    "duplicate agent '%s' (first at %s:%d)", name,
			    ps->files[dup->file], dup->line);
		return;
	}
	rd->cur = conf_sect_add(rd, false, name);
}

/* A line starting with '[' (t): the header, or an error. */
static void
conf_header(struct conf_reader *rd, char *t)
{
	char show[CONF_SHOW_MAX], *close = strrchr(t, ']');

	rd->key_open = false;
	rd->last = NULL;
	for (char *q = close ? close + 1 : NULL; q && *q; q++)
		if (!isspace((unsigned char)*q))
			close = NULL;
	if (close == NULL) {
		conf_err(rd->ps, rd->file, rd->line,
		    "bad section header '%s': it must end with ']'",
		    conf_show(show, sizeof(show), t));
		rd->cur = CUR_IGNORE;
		return;
	}
	*close = '\0';
	conf_section(rd, t + 1);
}

/* ---- keys and values ---- */

/* s without the isspace() characters at its end (cut in place). */
static char *
conf_rtrim(char *s)
{
	char *e = s + strlen(s);

	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
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

/* An indented line after a key: its trimmed text v joins the value. */
static void
conf_continue(struct conf_reader *rd, const char *v)
{
	struct conf_kv *kv = rd->last;
	size_t have, add = strlen(v);
	char *joined;

	if (conf_has_ctl(v)) {
		conf_err(rd->ps, rd->file, rd->line, "control character in value");
		rd->last = NULL;
		return;
	}
	if (kv == NULL || *v == '\0')
		return;
	have = strlen(kv->value);
	if ((joined = realloc(kv->value, have + 1 + add + 1)) == NULL) {
		rd->ps->oom = true;
		return;
	}
	if (have > 0)
		joined[have++] = ' ';
	memcpy(joined + have, v, add + 1);
	kv->value = joined;
}

/* "key = value" (t: the line from its first non-blank, with an '=' or ':'
 * after its first character): a new pair of the current section. */
static void
conf_key(struct conf_reader *rd, char *t)
{
	struct conf_parser *ps = rd->ps;
	char show[CONF_SHOW_MAX], *eq = t + strcspn(t, "=:"), *v;
	struct conf_sect *sc;
	struct conf_kv *kv;
	const struct conf_kv *dup;

	rd->key_open = true;
	rd->last = NULL;
	*eq = '\0';
	conf_rtrim(t);
	for (v = eq + 1; isspace((unsigned char)*v); v++)
		;
	conf_rtrim(v);
	if (conf_has_ctl(v)) {
		conf_err(ps, rd->file, rd->line, "control character in value");
		return;
	}
	if (rd->cur == CUR_IGNORE)
		return;
	if (rd->cur == CUR_NONE) {
		conf_err(ps, rd->file, rd->line,
		    "key '%s' before any section: put it under [hive] or "
		    "[agent:NAME]", conf_show(show, sizeof(show), t));
		return;
	}
	sc = &ps->sects[rd->cur];
	if ((dup = conf_sect_kv(sc, t)) != NULL) {
		conf_err(ps, rd->file, rd->line,
		    "duplicate key '%s' (first at line %d)",
		    conf_show(show, sizeof(show), t), dup->line);
		return;
	}
	if (sc->nkv == sc->cap) {
		size_t cap = sc->cap ? sc->cap * 2 : 8;

		if ((kv = realloc(sc->kv, cap * sizeof(*kv))) == NULL) {
			ps->oom = true;
			return;
		}
		sc->kv = kv;
		sc->cap = cap;
	}
	kv = &sc->kv[sc->nkv];
	*kv = (struct conf_kv){ strdup(t), strdup(v), rd->line };
	if (kv->key == NULL || kv->value == NULL) {
		free(kv->key);
		free(kv->value);
		ps->oom = true;
		return;
	}
	sc->nkv++;
	rd->last = kv;
}

/* A bad line (already reported): the indented lines after it, which
 * probably continue it, are skipped rather than reported one by one. */
static void
conf_bad(struct conf_reader *rd)
{
	rd->key_open = false;
	rd->swallow = true;
	rd->last = NULL;
}

/* One line s (NUL-terminated, without its line end): see the top. */
static void
conf_line(struct conf_reader *rd, char *s)
{
	char show[CONF_SHOW_MAX], *t = s;

	while (isspace((unsigned char)*t))
		t++;
	if (*t == '\0' || *t == ';' || *t == '#')
		return;
	if (t > s && (rd->key_open || rd->swallow)) {
		if (!rd->swallow)
			conf_continue(rd, conf_rtrim(t));
		return;
	}
	rd->swallow = false;
	if (*t == '[') {
		conf_header(rd, t);
	} else if (strpbrk(t, "=:") == NULL) {
		conf_err(rd->ps, rd->file, rd->line, "expected 'key = value', "
		    "[section] or a comment, not '%s'",
		    conf_show(show, sizeof(show), t));
		conf_bad(rd);
	} else if (*t == '=' || *t == ':') {
		conf_err(rd->ps, rd->file, rd->line, "missing key before '%c'", *t);
		conf_bad(rd);
	} else {
		conf_key(rd, t);
	}
}

/* Parse one file's text (len bytes, may hold NULs) into ps's sections. */
static void
conf_parse_text(struct conf_parser *ps, int file, const char *text,
    size_t len, bool agents_only)
{
	struct conf_reader rd = { .ps = ps, .file = file, .p = text,
	    .end = text + len, .agents_only = agents_only, .cur = CUR_NONE };

	while (rd.p < rd.end) {
		const char *line = rd.p, *nl = memchr(line, '\n',
		    (size_t)(rd.end - line));
		size_t n = nl ? (size_t)(nl - line) : (size_t)(rd.end - line);

		rd.p = line + n + (nl != NULL);
		rd.line++;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (rd.line == 1 && n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0)
			line += 3, n -= 3;
		if (memchr(line, '\0', n) != NULL) {
			conf_err(ps, file, rd.line, "NUL byte in line");
			conf_bad(&rd);
			continue;
		}
		if (n > CONF_LINE_MAX) {
			conf_err(ps, file, rd.line, "line too long (%zu bytes, at "
			    "most %d): continue a long value on indented lines", n,
			    CONF_LINE_MAX);
			conf_bad(&rd);
			continue;
		}
		hbuf_reset(&rd.buf);
		if (hbuf_add(&rd.buf, line, n) == -1 ||
		    hbuf_putc(&rd.buf, '\0') == -1) {
			ps->oom = true;
			break;
		}
		conf_line(&rd, hbuf_data(&rd.buf));
	}
	hbuf_free(&rd.buf);
}

/* ---- files ---- */

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

/* Add path as a file of ps and parse it. */
static void
conf_parse_file(struct conf_parser *ps, const char *path, bool agents_only)
{
	int fi = conf_add_file(ps, path);
	char *text;
	size_t len;

	if (fi < 0) {
		ps->oom = true;
		return;
	}
	if (conf_read_file(ps, fi, &text, &len) == 0) {
		conf_parse_text(ps, fi, text, len, agents_only);
		free(text);
	}
}

static int
conf_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of dir's *.conf files (not hidden), sorted; NULL-ended, or
 * NULL when out of memory. */
static char **
conf_dir_names(DIR *d)
{
	char **names = calloc(1, sizeof(*names)), **nn;
	size_t n = 0;
	struct dirent *de;

	if (names == NULL)
		return NULL;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (de->d_name[0] == '.' || l <= 5 ||
		    strcmp(de->d_name + l - 5, ".conf") != 0)
			continue;
		if ((nn = realloc(names, (n + 2) * sizeof(*nn))) == NULL)
			goto oom;
		names = nn;
		if ((names[n] = strdup(de->d_name)) == NULL)
			goto oom;
		names[++n] = NULL;
	}
	qsort(names, n, sizeof(*names), conf_strcmp);
	return names;
oom:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return NULL;
}

/* Every *.conf in DIR/agents.d, where DIR holds the main file, in name
 * order.  No agents.d/ is fine. */
static void
conf_parse_agents_d(struct conf_parser *ps, const char *main_path)
{
	const char *slash = strrchr(main_path, '/');
	char *dir = NULL, **names = NULL, *path;
	DIR *d;

	if (asprintf(&dir, "%.*sagents.d", slash ? (int)(slash - main_path + 1)
	    : 0, main_path) < 0) {
		ps->oom = true;
		return;
	}
	if ((d = opendir(dir)) == NULL) {
		if (errno != ENOENT && errno != ENOTDIR) {
			int fi = conf_add_file(ps, dir);

			if (fi < 0)
				ps->oom = true;
			else
				conf_err(ps, fi, 0, "cannot open: %s", strerror(errno));
		}
		free(dir);
		return;
	}
	if ((names = conf_dir_names(d)) == NULL)
		ps->oom = true;
	for (size_t i = 0; names != NULL && names[i] != NULL; i++) {
		if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
			ps->oom = true;
			break;
		}
		conf_parse_file(ps, path, true);
		free(path);
	}
	for (size_t i = 0; names != NULL && names[i] != NULL; i++)
		free(names[i]);
	free(names);
	closedir(d);
	free(dir);
}

void
conf_read(struct conf_parser *ps, const char *path)
{
	conf_parse_file(ps, path, false);
	conf_parse_agents_d(ps, path);
}

void
conf_read_string(struct conf_parser *ps, const char *name, const char *text,
    size_t len)
{
	int fi = conf_add_file(ps, name);

	if (fi < 0)
		ps->oom = true;
	else if (len > CONF_FILE_MAX)
		conf_err(ps, fi, 0, "larger than %u bytes", CONF_FILE_MAX);
	else
		conf_parse_text(ps, fi, text, len, false);
}

void
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
