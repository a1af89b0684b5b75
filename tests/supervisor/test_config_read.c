/*
 * test_config_read.c - supervisor/config_read.c's own line reader and
 * "key = value" split (the syntax of its top comment, case by case), the
 * line limit that replaced inih's 200 bytes, the worker path main.c gives
 * the parser, and log_warnx_lines, which carries config errors to the log.
 *
 * Everything goes through conf_load_string: no file is written.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* Load text; *errs (caller frees) gets the errors, "mem.conf:LINE: ...". */
static struct hive_conf *
load(const char *text, size_t len, char **errs)
{
	char *buf = NULL;
	size_t blen = 0;
	FILE *ef = open_memstream(&buf, &blen);
	struct hive_conf *c;

	cr_assert_not_null(ef);
	c = conf_load_string("mem.conf", text, len, ef);
	fclose(ef);
	*errs = buf;
	return c;
}

static struct hive_conf *
load_ok(const char *text)
{
	char *errs;
	struct hive_conf *c = load(text, strlen(text), &errs);

	cr_assert_not_null(c, "rejected:\n%s\nfor:\n%s", errs, text);
	free(errs);
	return c;
}

/* Rejected with exactly these errors (each "mem.conf:..." line). */
static void
expect_errs(const char *text, const char *want)
{
	char *errs;
	struct hive_conf *c = load(text, strlen(text), &errs);

	cr_assert_null(c, "accepted:\n%s", text);
	cr_assert_str_eq(errs, want, "for:\n%s", text);
	free(errs);
}

/* argv of agent a of text, as "w1|w2|...". */
static void
expect_argv(const char *text, const char *want)
{
	struct hive_conf *c = load_ok(text);
	char got[4096] = "";
	const struct hive_agent_conf *a = conf_agent(c, "a");

	cr_assert_not_null(a);
	for (int i = 0; a->argv[i] != NULL; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s",
		    i ? "|" : "", a->argv[i]);
	cr_assert_str_eq(got, want, "for:\n%s", text);
	conf_free(c);
}

Test(config_read, long_lines)
{
	size_t n = 4000, off;
	char *text = malloc(CONF_LINE_MAX + 64);
	struct hive_conf *c;
	char *errs;

	/* A 4,000-byte command line: one long word, then 40 words. */
	cr_assert_not_null(text);
	off = (size_t)sprintf(text, "[agent:a]\ncommand = /");
	memset(text + off, 'x', n - 11);
	strcpy(text + off + n - 11, "\n");
	cr_assert_eq(strlen(text) - strlen("[agent:a]\n") - 1, n);
	c = load_ok(text);
	cr_assert_eq(strlen(c->agents[0].argv[0]), n - 10);
	conf_free(c);

	off = (size_t)sprintf(text, "[agent:a]\ncommand =");
	for (int i = 0; i < 40; i++)
		off += (size_t)sprintf(text + off, " %098d", i);
	strcpy(text + off, "\n");
	c = load_ok(text);
	cr_assert_eq(strlen(c->agents[0].argv[39]), 98);
	cr_assert_null(c->agents[0].argv[40]);
	conf_free(c);

	/* A line of exactly CONF_LINE_MAX bytes (and a CR) is read... */
	off = (size_t)sprintf(text, "[agent:a]\ncommand = /");
	memset(text + off, 'y', CONF_LINE_MAX - 11);
	strcpy(text + off + CONF_LINE_MAX - 11, "\r\n");
	c = load_ok(text);
	cr_assert_eq(strlen(c->agents[0].argv[0]), CONF_LINE_MAX - 10);
	conf_free(c);

	/* ...one byte more is an error at its line, not a cut. */
	off = (size_t)sprintf(text, "[agent:a]\ncommand = /");
	memset(text + off, 'y', CONF_LINE_MAX - 10);
	strcpy(text + off + CONF_LINE_MAX - 10, "\n");
	cr_assert_null(load(text, strlen(text), &errs));
	cr_assert_str_eq(errs, "mem.conf:1: agent 'a': missing command\n"
	    "mem.conf:2: line too long (65537 bytes, at most 65536): continue "
	    "a long value on indented lines\n");
	free(errs);
	free(text);
}

Test(config_read, key_value_split)
{
	/* the first '=' or ':' splits; the rest is the value */
	expect_argv("[agent:a]\ncommand = x = y\n", "x|=|y");
	expect_argv("[agent:a]\ncommand: a:b=c\n", "a:b=c");
	expect_argv("[agent:a]\ncommand=x\n", "x");
	expect_argv("[agent:a]\ncommand\t:\tx \t\n", "x");
	/* no comment at the end of a line */
	expect_argv("[agent:a]\ncommand = x ; y # z\n", "x|;|y|#|z");
	/* trimming drops \v, \f and \r too */
	expect_argv("[agent:a]\ncommand = x\v\f\r\r\n", "x");
	/* an indented key after a section header is a key */
	expect_argv("[agent:a]\n  command = x\n", "x");
	/* a key's separator may not come first, so ":x = y" is no key */
	expect_errs("[agent:a]\ncommand = x\n:x = y\n",
	    "mem.conf:3: missing key before ':'\n");
	expect_errs("[agent:a]\ncommand = x\nmy key = y\n",
	    "mem.conf:3: unknown key 'my key' in [agent:a]\n");
	expect_errs("[agent:a]\ncommand = x\nmode = e\vxec\n",
	    "mem.conf:3: control character in value\n");
}

Test(config_read, continuations)
{
	/* blank lines and comments do not end a continuation */
	expect_argv("[agent:a]\ncommand = a\n\n  b\n  # c\n\tc\n", "a|b|c");
	/* an empty key is continued without a leading space */
	expect_argv("[agent:a]\ncommand =\n  a\n", "a");
	/* an indented line after a key continues it, even one with '[' */
	expect_argv("[agent:a]\ncommand = a\n  [agent:b]\n  c\n",
	    "a|[agent:b]|c");
	/* a section header ends it */
	expect_errs("[agent:a]\ncommand = a\n[agent:b]\n  c\n",
	    "mem.conf:3: agent 'b': missing command\n"
	    "mem.conf:4: expected 'key = value', [section] or a comment, "
	    "not 'c'\n");
	/* lines under a bad line or a bad header's keys are not reported */
	expect_errs("[agent:a]\ncommand = a\njunk\n  more\n[nope]\nx = 1\n  y\n",
	    "mem.conf:3: expected 'key = value', [section] or a comment, "
	    "not 'junk'\n"
	    "mem.conf:5: unknown section [nope]: expected [hive] or "
	    "[agent:NAME]\n");
	/* a control character in a continuation is still reported */
	expect_errs("[agent:a]\ncommand = a\n  b\x01\n",
	    "mem.conf:3: control character in value\n");
	/* before any section: the key is reported, its continuation not */
	expect_errs("x = 1\n  y\n[agent:a]\ncommand = a\n",
	    "mem.conf:1: key 'x' before any section: put it under [hive] or "
	    "[agent:NAME]\n");
}

Test(config_read, headers)
{
	struct hive_conf *c = load_ok("[agent\t\"a\"]\ncommand = a\n"
	    "[ agent:  b ]  \ncommand = b\n[hive]\t\nprefix = p\n");

	cr_assert_not_null(conf_agent(c, "a"));
	cr_assert_not_null(conf_agent(c, "b"));
	cr_assert_str_eq(c->prefix, "p");
	conf_free(c);
	expect_errs("[agent:a]]\ncommand = a\n",
	    "mem.conf:1: bad agent name 'a]': 1..64 of [A-Za-z0-9_.-], not "
	    "starting with '.' or '-'\n");
	expect_errs("[agent:\"a\"]\ncommand = a\n",
	    "mem.conf:1: bad agent name '\"a\"': 1..64 of [A-Za-z0-9_.-], not "
	    "starting with '.' or '-'\n");
}

Test(config_read, worker_default)
{
	struct hive_conf *c;

	cr_assert_eq(conf_set_worker_default("/opt/found/hive-worker"), 0);
	c = load_ok("[agent:a]\ncommand = a\n");
	cr_assert_str_eq(c->worker_path, "/opt/found/hive-worker");
	conf_free(c);
	c = load_ok("[hive]\nworker = /w\n[agent:a]\ncommand = a\n");
	cr_assert_str_eq(c->worker_path, "/w");
	conf_free(c);

	/* unset: the table's default */
	cr_assert_eq(conf_set_worker_default(NULL), 0);
	c = load_ok("");
	cr_assert_eq(c->worker_path[0], '/');
	cr_assert_not_null(strstr(c->worker_path, "/hive-worker"));
	conf_free(c);

	char *big = malloc(PATH_MAX + 2);
	cr_assert_not_null(big);
	memset(big, 'a', PATH_MAX + 1);
	big[PATH_MAX + 1] = '\0';
	cr_assert_eq(conf_set_worker_default(big), -1);
	free(big);
}

/* Run log_warnx_lines with stderr into a pipe; returns what it wrote. */
static char *
logged(const char *prefix, const char *text)
{
	int p[2], saved = dup(STDERR_FILENO);
	static char buf[4096];
	ssize_t n;

	cr_assert_eq(pipe(p), 0);
	dup2(p[1], STDERR_FILENO);
	log_warnx_lines(prefix, text);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

Test(config_read, log_warnx_lines)
{
	char want[256];

	log_init("t", 0);
	/* The exact lines: without the time (test_log.c tests it). */
	log_set_time(LOG_TIME_NO);
	snprintf(want, sizeof(want), "<4>t[%ld]: reload: a.conf:1: x\n"
	    "<4>t[%ld]: reload: a.conf:2: y\n", (long)getpid(),
	    (long)getpid());
	cr_assert_str_eq(logged("reload", "a.conf:1: x\n\na.conf:2: y"), want);
	cr_assert_str_eq(logged("config", ""), "");
	cr_assert_str_eq(logged("config", NULL), "");
	cr_assert_str_eq(logged("config", "\n\n"), "");
}
