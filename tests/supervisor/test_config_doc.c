/*
 * test_config_doc.c - keeps docs/CONFIG.md true to the key tables of
 * supervisor/config.c (conf_keys()).
 *
 * The page is read from $HIVE_SOURCE_DIR/docs/CONFIG.md:
 *
 *   ## [hive], ## [agent:NAME]   the table under each lists exactly the
 *   | `key` | type | default |    keys of the section's table, in order;
 *                                the default is the table's text in
 *                                backquotes (optionally followed by a
 *                                remark), "empty" for "", words (no
 *                                backquote first) for none or a computed
 *                                one, **required** for a required key; the
 *                                type names the kind, an enum's values and
 *                                a number's range
 *   A line is at most N bytes    N is CONF_LINE_MAX
 *   ## Reload                    the [hive] keys that restart every
 *                                agent are the CF_WORKER ones
 *
 * It also checks that each default, written out, is what a section
 * without the key gets.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "testutil.h"

struct row {
	char key[64];
	char type[512];
	char dflt[512];
	int line;
};

static void
trim_into(char *dst, size_t size, const char *s, size_t n)
{
	while (n > 0 && *s == ' ')
		s++, n--;
	while (n > 0 && s[n - 1] == ' ')
		n--;
	cr_assert_lt(n, size, "cell too long: %.*s", (int)n, s);
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* The rows of the table under the heading (a line of its own); returns
 * their number. */
static int
table_rows(const char *page, const char *heading, struct row *rows, int max)
{
	char needle[64];
	const char *p, *line;
	int n = 0, lineno = 1;

	snprintf(needle, sizeof(needle), "\n%s\n", heading);
	p = strstr(page, needle);
	cr_assert_not_null(p, "no heading \"%s\" in docs/CONFIG.md", heading);
	p++;
	for (const char *q = page; q < p; q++)
		lineno += *q == '\n';
	for (line = p; line != NULL && *line != '\0'; ) {
		const char *nl = strchr(line, '\n'), *cell[5];
		size_t len = nl ? (size_t)(nl - line) : strlen(line);

		if (line != p && strncmp(line, "## ", 3) == 0)
			break;
		if (strncmp(line, "| `", 3) == 0) {
			/* | `key` | type | default | meaning | */
			cell[0] = line + 1;
			for (int i = 1; i < 5; i++) {
				cell[i] = memchr(cell[i - 1], '|',
				    (size_t)(line + len - cell[i - 1]));
				cr_assert_not_null(cell[i], "CONFIG.md:%d: a row "
				    "needs 4 cells", lineno);
				cell[i]++;
			}
			cr_assert_lt(n, max);
			trim_into(rows[n].key, sizeof(rows[n].key), cell[0] + 2,
			    (size_t)(strchr(cell[0] + 2, '`') - cell[0] - 2));
			trim_into(rows[n].type, sizeof(rows[n].type), cell[1],
			    (size_t)(cell[2] - cell[1] - 1));
			trim_into(rows[n].dflt, sizeof(rows[n].dflt), cell[2],
			    (size_t)(cell[3] - cell[2] - 1));
			rows[n].line = lineno;
			n++;
		}
		line = nl ? nl + 1 : NULL;
		lineno++;
	}
	return n;
}

/* The default cell of a key (see the top). */
static void
check_default(const struct conf_key *k, const struct row *r)
{
	char want[256];

	if (k->flags & CF_REQUIRED) {
		cr_assert_str_eq(r->dflt, "**required**", "CONFIG.md:%d: %s is "
		    "required", r->line, k->name);
		return;
	}
	if (k->dflt == NULL || (k->flags & CF_COMPUTED)) {
		cr_assert_neq(r->dflt[0], '`', "CONFIG.md:%d: %s has no default "
		    "to write (none, or computed): say it in words, not '%s'",
		    r->line, k->name, r->dflt);
		cr_assert(r->dflt[0] != '\0' && strcmp(r->dflt, "empty") != 0,
		    "CONFIG.md:%d: %s: '%s'", r->line, k->name, r->dflt);
		return;
	}
	if (k->dflt[0] == '\0') {
		cr_assert_str_eq(r->dflt, "empty", "CONFIG.md:%d: %s's default "
		    "is empty", r->line, k->name);
		return;
	}
	snprintf(want, sizeof(want), "`%s`", k->dflt);
	cr_assert(strncmp(r->dflt, want, strlen(want)) == 0 &&
	    (r->dflt[strlen(want)] == '\0' || r->dflt[strlen(want)] == ' '),
	    "CONFIG.md:%d: %s's default is %s, not '%s'", r->line, k->name,
	    want, r->dflt);
}

/* The type cell names the kind, an enum's values, a number's range. */
static void
check_type(const struct conf_key *k, const struct row *r)
{
	static const char *const word[] = {
		[CK_DURATION] = "duration", [CK_UINT] = "number",
		[CK_U64] = "number", [CK_SIZE] = "size", [CK_BOOL] = "boolean",
		[CK_PATH] = "path", [CK_COMMAND] = "command",
		[CK_ENV] = "environment", [CK_LIST] = "list",
	};
	char want[128];

	if (k->kind < sizeof(word) / sizeof(word[0]) && word[k->kind] != NULL)
		cr_assert(strncmp(r->type, word[k->kind],
		    strlen(word[k->kind])) == 0, "CONFIG.md:%d: %s is a %s, not "
		    "'%s'", r->line, k->name, word[k->kind], r->type);
	for (size_t i = 0; k->kind == CK_ENUM && k->names[i] != NULL; i++) {
		snprintf(want, sizeof(want), "`%s`", k->names[i]);
		cr_assert_not_null(strstr(r->type, want), "CONFIG.md:%d: %s "
		    "takes %s", r->line, k->name, want);
	}
	if ((k->kind == CK_UINT && (k->min != 0 || k->max != UINT_MAX)) ||
	    (k->kind == CK_U64 && (k->min != 0 || k->max != UINT64_MAX))) {
		snprintf(want, sizeof(want), "%" PRIu64 "..%" PRIu64, k->min,
		    k->max);
		cr_assert_not_null(strstr(r->type, want), "CONFIG.md:%d: %s is "
		    "%s", r->line, k->name, want);
	}
	if (k->kind == CK_U64 && k->min == 0 && k->max == UINT64_MAX)
		cr_assert_str_eq(r->type, "number", "CONFIG.md:%d", r->line);
}

static void
check_section(const char *page, const char *heading, enum conf_section s)
{
	struct row rows[64];
	size_t nk;
	const struct conf_key *t = conf_keys(s, &nk);
	int n = table_rows(page, heading, rows, 64);

	for (int i = 0; i < n; i++) {
		const struct conf_key *k = NULL;

		for (size_t j = 0; j < nk && k == NULL; j++)
			if (strcmp(t[j].name, rows[i].key) == 0)
				k = &t[j];
		cr_assert_not_null(k, "CONFIG.md:%d: `%s` is no key of %s",
		    rows[i].line, rows[i].key, heading + 3);
		cr_assert_eq((size_t)i < nk ? &t[i] : NULL, k, "CONFIG.md:%d: "
		    "`%s` out of the table's order (expected `%s`)",
		    rows[i].line, rows[i].key, (size_t)i < nk ? t[i].name : "");
		check_default(k, &rows[i]);
		check_type(k, &rows[i]);
	}
	cr_assert_eq((size_t)n, nk, "%s documents %d keys, the table has %zu "
	    "(%s is missing)", heading + 3, n, nk, t[n < (int)nk ? n : 0].name);
}

Test(config_doc, every_key_documented_with_its_default)
{
	char *page = tu_read_source("docs/CONFIG.md");

	check_section(page, "## [hive]", CONF_SECT_HIVE);
	check_section(page, "## [agent:NAME]", CONF_SECT_AGENT);
	free(page);
}

Test(config_doc, line_limit)
{
	char *page = tu_read_source("docs/CONFIG.md"), want[64];

	snprintf(want, sizeof(want), "A line is at most %d bytes",
	    CONF_LINE_MAX);
	cr_assert_not_null(strstr(page, want), "CONFIG.md must say \"%s\"",
	    want);
	free(page);
}

/* The backquoted names in page between the markers a and b, as " x y ". */
static void
names_between(const char *page, const char *a, const char *b, char *out,
    size_t size)
{
	const char *p = strstr(page, a), *end;

	cr_assert_not_null(p, "CONFIG.md has no \"%s\"", a);
	p += strlen(a);
	end = strstr(p, b);
	cr_assert_not_null(end, "CONFIG.md has no \"%s\" after \"%s\"", b, a);
	snprintf(out, size, " ");
	while ((p = strchr(p, '`')) != NULL && p < end) {
		const char *q = strchr(p + 1, '`');

		cr_assert(q != NULL && q < end);
		snprintf(out + strlen(out), size - strlen(out), "%.*s ",
		    (int)(q - p - 1), p + 1);
		p = q + 1;
	}
}

Test(config_doc, reload_names_the_worker_keys)
{
	char *page = tu_read_source("docs/CONFIG.md");
	char worker[512], other[512], want[64];
	size_t nk;
	const struct conf_key *t = conf_keys(CONF_SECT_HIVE, &nk);

	names_between(page, "count as a change for every agent:", ".",
	    worker, sizeof(worker));
	names_between(page, "The other `[hive]` settings", "restart no worker",
	    other, sizeof(other));
	for (size_t i = 0; i < nk; i++) {
		snprintf(want, sizeof(want), " %s ", t[i].name);
		if (t[i].flags & CF_WORKER)
			cr_assert_not_null(strstr(worker, want), "Reload: %s "
			    "restarts every agent (listed:%s)", t[i].name, worker);
		else
			cr_assert_not_null(strstr(other, want), "Reload: %s "
			    "restarts no worker (listed:%s)", t[i].name, other);
	}
	free(page);
}

/* Keys of table t written with their defaults: text to load. */
static void
write_defaults(char *buf, size_t size, enum conf_section s)
{
	size_t nk;
	const struct conf_key *t = conf_keys(s, &nk);

	for (size_t i = 0; i < nk; i++)
		if (t[i].dflt != NULL && !(t[i].flags & CF_COMPUTED))
			snprintf(buf + strlen(buf), size - strlen(buf),
			    "%s = %s\n", t[i].name, t[i].dflt);
}

Test(config_doc, defaults_written_out_change_nothing)
{
	char text[4096] = "[hive]\n";
	struct hive_conf *a, *b;
	char *errs = NULL;
	size_t len = 0, nk;
	FILE *ef = open_memstream(&errs, &len);
	const struct conf_key *t = conf_keys(CONF_SECT_HIVE, &nk);

	write_defaults(text, sizeof(text), CONF_SECT_HIVE);
	strcat(text, "[agent:x]\ncommand = x\n");
	write_defaults(text, sizeof(text), CONF_SECT_AGENT);
	a = conf_load_string("mem", text, strlen(text), ef);
	fclose(ef);
	cr_assert_not_null(a, "%s\n%s", text, errs);
	free(errs);
	b = conf_load_string("mem", "[agent:x]\ncommand = x\n", 22, stderr);
	cr_assert_not_null(b);
	/* every agent key and every CF_WORKER [hive] key is in the hash */
	cr_assert_eq(a->agents[0].hash, b->agents[0].hash, "%s", text);
	/* the others, one by one */
	for (size_t i = 0; i < nk; i++) {
		const char *pa = (const char *)a + t[i].off;
		const char *pb = (const char *)b + t[i].off;

		if (t[i].kind == CK_STRING || t[i].kind == CK_PATH) {
			const char *sa = *(char *const *)(const void *)pa;
			const char *sb = *(char *const *)(const void *)pb;

			cr_assert((sa == NULL && sb == NULL) ||
			    (sa && sb && strcmp(sa, sb) == 0), "%s", t[i].name);
		} else {
			cr_assert_eq(memcmp(pa, pb, t[i].size), 0, "%s",
			    t[i].name);
		}
	}
	conf_free(a);
	conf_free(b);
}
