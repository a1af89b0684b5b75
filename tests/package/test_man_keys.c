/*
 * test_man_keys.c - keeps man/hive.conf.5.scd true to the key tables of
 * supervisor/config.c (conf_keys()), as test_config_doc.c keeps
 * docs/CONFIG.md.
 *
 * Under "# [hive]" and "# [agent:NAME]" the page has one entry per key,
 * a line "*KEY* = ..." then its indented text, exactly the keys of the
 * section's table, in the table's order.  The text (lines joined) says
 * the default:
 * "Required." for a required key; "Default: *DFLT*." for a default
 * written in the table; "Default: empty" for ""; "Default: none" for no
 * default; a computed one (host, worker) in words, not checked.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "testutil.h"

#define MAX_ENTRIES 64

struct entry {
	char key[64];
	const char *text;       /* the entry's text, up to the next entry */
	size_t len;
};

/* The entries of the section under "\n# HEADING\n", up to the next
 * heading; returns their number. */
static int
entries(const char *page, const char *heading, struct entry *e, int max)
{
	char needle[64];
	const char *p, *end;
	int n = 0;

	snprintf(needle, sizeof(needle), "\n# %s\n", heading);
	p = strstr(page, needle);
	cr_assert_not_null(p, "no heading \"# %s\" in man/hive.conf.5.scd",
	    heading);
	p += strlen(needle);
	end = strstr(p, "\n# ");
	if (end == NULL)
		end = p + strlen(p);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *star;

		if (nl == NULL)
			nl = end;
		if (p[0] == '*' && (star = memchr(p + 1, '*',
		    (size_t)(nl - p - 1))) != NULL &&
		    strncmp(star, "* =", 3) == 0) {
			cr_assert_lt(n, max);
			cr_assert_lt((size_t)(star - p - 1), sizeof(e[n].key));
			memcpy(e[n].key, p + 1, (size_t)(star - p - 1));
			e[n].key[star - p - 1] = '\0';
			e[n].text = nl;
			if (n > 0)
				e[n - 1].len = (size_t)(p - e[n - 1].text);
			n++;
		}
		p = nl + 1;
	}
	if (n > 0)
		e[n - 1].len = (size_t)(end - e[n - 1].text);
	return n;
}

/* Whether the entry's text has s, every run of blanks and line ends in
 * the text read as one space (the page wraps its lines anywhere). */
static int
has(const struct entry *e, const char *s)
{
	char *flat = malloc(e->len + 1);
	size_t n = 0;
	int found;

	cr_assert_not_null(flat);
	for (size_t i = 0; i < e->len; i++) {
		char c = e->text[i];

		if (c == '\n' || c == '\t')
			c = ' ';
		if (c == ' ' && n > 0 && flat[n - 1] == ' ')
			continue;
		flat[n++] = c;
	}
	flat[n] = '\0';
	found = strstr(flat, s) != NULL;
	free(flat);
	return found;
}

static void
check_section(const char *page, enum conf_section sect, const char *heading)
{
	struct entry e[MAX_ENTRIES];
	const struct conf_key *t;
	size_t nt;
	int n = entries(page, heading, e, MAX_ENTRIES);
	char want[256];

	t = conf_keys(sect, &nt);
	for (size_t i = 0; i < nt || i < (size_t)n; i++) {
		cr_assert_lt(i, nt, "hive.conf.5: %s documents '%s', which "
		    "config.c does not have (or not there)", heading, e[i].key);
		cr_assert_lt(i, (size_t)n, "hive.conf.5: %s lacks '%s' "
		    "(config.c's key %zu)", heading, t[i].name, i + 1);
		cr_assert_str_eq(e[i].key, t[i].name, "hive.conf.5: %s entry "
		    "%zu is '%s', config.c's is '%s'", heading, i + 1,
		    e[i].key, t[i].name);
		if (t[i].flags & CF_REQUIRED)
			snprintf(want, sizeof(want), "Required.");
		else if (t[i].flags & CF_COMPUTED)
			continue;
		else if (t[i].dflt == NULL)
			snprintf(want, sizeof(want), "Default: none");
		else if (t[i].dflt[0] == '\0')
			snprintf(want, sizeof(want), "Default: empty");
		else
			snprintf(want, sizeof(want), "Default: *%s*.",
			    t[i].dflt);
		cr_assert(has(&e[i], want), "hive.conf.5: '%s' does not say "
		    "\"%s\"", t[i].name, want);
	}
}

Test(man, hive_conf_keys)
{
	char *page = tu_read_source("man/hive.conf.5.scd");

	check_section(page, CONF_SECT_HIVE, "[hive]");
	check_section(page, CONF_SECT_AGENT, "[agent:NAME]");
	free(page);
}
