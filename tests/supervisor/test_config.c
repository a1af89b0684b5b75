/*
 * test_config.c - supervisor/config.c: every key, the defaults, every kind
 * of error with its file:line, agents.d/, the reload hash, and the
 * duration, size and word parsers.
 *
 * Each test writes its files into its own temporary folder (under
 * HIVE_TEST_TMP when scripts/test runs us) and removes it at the end.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* ---- helpers ---- */

static char tdir[PATH_MAX];

static void
setup_dir(void)
{
	const char *base = getenv("HIVE_TEST_TMP");

	snprintf(tdir, sizeof(tdir), "%s/conf.XXXXXX",
	    base && *base ? base : "/tmp");
	cr_assert_not_null(mkdtemp(tdir), "mkdtemp %s", tdir);
}

static void
rm_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char sub[PATH_MAX * 2];

	if (d == NULL) {
		unlink(path);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		rm_tree(sub);
	}
	closedir(d);
	rmdir(path);
}

static void
teardown_dir(void)
{
	rm_tree(tdir);
}

TestSuite(config, .init = setup_dir, .fini = teardown_dir);

/* Write text to tdir/rel (creating agents.d/ if rel is in it); returns the
 * full path in a static buffer. */
static const char *
put(const char *rel, const char *text)
{
	static char path[PATH_MAX * 2];
	char dir[PATH_MAX * 2];
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/agents.d", tdir);
	if (strncmp(rel, "agents.d/", 9) == 0)
		mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/%s", tdir, rel);
	f = fopen(path, "w");
	cr_assert_not_null(f, "fopen %s", path);
	fputs(text, f);
	fclose(f);
	return path;
}

/* Load tdir/hive.conf written from text; *errs (caller frees) gets what
 * conf_load wrote to errf. */
static struct hive_conf *
load_text(const char *text, char **errs)
{
	char path[PATH_MAX * 2];
	char *buf = NULL;
	size_t len = 0;
	FILE *ef = open_memstream(&buf, &len);
	struct hive_conf *c;

	cr_assert_not_null(ef);
	snprintf(path, sizeof(path), "%s", put("hive.conf", text));
	c = conf_load(path, ef);
	fclose(ef);
	if (errs != NULL)
		*errs = buf;
	else
		free(buf);
	return c;
}

/* Must load; fails the test with the errors otherwise. */
static struct hive_conf *
load_ok(const char *text)
{
	char *errs;
	struct hive_conf *c = load_text(text, &errs);

	cr_assert_not_null(c, "config rejected:\n%s", errs);
	cr_assert_str_empty(errs, "errors on an accepted config: %s", errs);
	free(errs);
	return c;
}

/* Must be rejected with a line that is exactly "<tdir>/<rel>:<line>: msg"
 * (msg: that line starts with it). */
static void
expect_err_in(const char *errs, const char *rel, int line, const char *msg)
{
	char want[PATH_MAX * 2 + 256];

	if (line > 0)
		snprintf(want, sizeof(want), "%s/%s:%d: %s", tdir, rel, line, msg);
	else
		snprintf(want, sizeof(want), "%s/%s: %s", tdir, rel, msg);
	for (const char *p = errs; p != NULL && *p != '\0'; ) {
		const char *nl = strchr(p, '\n');

		if (strncmp(p, want, strlen(want)) == 0)
			return;
		p = nl ? nl + 1 : NULL;
	}
	cr_assert_fail("no error line starting with\n  %s\nin:\n%s", want, errs);
}

static void
expect_err(const char *text, int line, const char *msg)
{
	char *errs;
	struct hive_conf *c = load_text(text, &errs);

	cr_assert_null(c, "config accepted, expected %d: %s", line, msg);
	expect_err_in(errs, "hive.conf", line, msg);
	free(errs);
}

static int
count_lines(const char *s)
{
	int n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

/* ---- defaults and every key ---- */

Test(config, defaults)
{
	struct hive_conf *c = load_ok("[agent:a]\ncommand = /bin/true\n");
	const struct hive_agent_conf *a;
	char host[HIVE_HOST_MAX + 1] = "";

	cr_assert_str_eq(c->redis, "127.0.0.1:6379");
	cr_assert_str_eq(c->prefix, "hive");
	gethostname(host, sizeof(host) - 1);
	cr_assert_str_eq(c->host, host);
	cr_assert_not_null(c->postgres);
	cr_assert_str_eq(c->postgres, "");
	cr_assert_not_null(c->worker_path);
	cr_assert_eq(c->worker_path[0], '/', "worker %s", c->worker_path);
	cr_assert_not_null(strstr(c->worker_path, "hive-worker"));
	cr_assert_str_eq(c->http, "127.0.0.1:8420");
	cr_assert_null(c->token_file);
	cr_assert_eq(c->stop_timeout_ms, 30000);
	cr_assert_eq(c->heartbeat_ms, 1000);
	cr_assert_eq(c->snapshots_keep, 10);
	cr_assert_eq(c->output_lines, 1000);
	cr_assert_eq(c->agents[0].output_lines, 0, "0: [hive]'s");
	cr_assert_eq(c->allow_eviction, 0);
	cr_assert_eq(c->verbose, 0);
	cr_assert_eq(c->nagents, 1);

	a = conf_agent(c, "a");
	cr_assert_not_null(a);
	cr_assert_str_eq(a->name, "a");
	cr_assert_eq(a->line, 1);
	cr_assert_str_eq(a->argv[0], "/bin/true");
	cr_assert_null(a->argv[1]);
	cr_assert_eq(a->mode, HIVE_MODE_STREAM);
	cr_assert_eq(a->ncaps, 0);
	cr_assert_eq(a->instances, 1);
	cr_assert_eq(a->concurrency, 1);
	cr_assert_eq(a->restart, HIVE_RESTART_ALWAYS);
	cr_assert_eq(a->backoff_ms, 100);
	cr_assert_eq(a->backoff_max_ms, 30000);
	cr_assert_eq(a->restart_limit, 5);
	cr_assert_eq(a->restart_window_ms, 60000);
	cr_assert_eq(a->cooldown_ms, 0);
	cr_assert_eq(a->heartbeat_deadline_ms, 10000);
	cr_assert_eq(a->task_timeout_ms, 0);
	cr_assert_eq(a->max_attempts, 3);
	cr_assert_eq(a->max_tasks, 0);
	cr_assert_eq(a->max_rss_kb, 0);
	cr_assert_eq(a->nenv, 0);
	cr_assert_null(a->directory);
	cr_assert_eq(a->autostart, 1);
	cr_assert_null(conf_agent(c, "b"));
	conf_free(c);
}

Test(config, no_agents_is_valid)
{
	struct hive_conf *c = load_ok("# nothing but a comment\n");

	cr_assert_eq(c->nagents, 0);
	cr_assert_null(c->agents);
	conf_free(c);
}

Test(config, every_key)
{
	struct hive_conf *c = load_ok(
	    "[hive]\n"
	    "redis = /run/redis/redis.sock\n"
	    "prefix = prod\n"
	    "host = node-7.example\n"
	    "postgres = host=/run/postgresql dbname=hive\n"
	    "worker = /opt/hive/bin/hive-worker\n"
	    "http = 127.0.0.1:9000\n"
	    "token_file = /etc/hive/token\n"
	    "stop_timeout = 45s\n"
	    "heartbeat_interval = 500ms\n"
	    "snapshots_keep = 3\n"
	    "allow_eviction = yes\n"
	    "log_level = debug\n"
	    "\n"
	    "[agent \"reviewer\"]\n"
	    "command = /usr/bin/python3 -u /opt/agents/reviewer.py --name 'the reviewer'\n"
	    "mode = exec\n"
	    "capabilities = review, lint\n"
	    "instances = 4\n"
	    "concurrency = 2\n"
	    "restart = on-failure\n"
	    "backoff = 250ms\n"
	    "backoff_max = 1m\n"
	    "restart_limit = 9\n"
	    "restart_window = 2m\n"
	    "cooldown = 1h\n"
	    "heartbeat_deadline = 3s\n"
	    "task_timeout = 90\n"
	    "max_attempts = 7\n"
	    "max_tasks = 1000\n"
	    "max_rss = 512M\n"
	    "environment = LANG=C.UTF-8 GREETING=\"hello world\"\n"
	    "directory = /var/lib/hive/reviewer\n"
	    "autostart = off\n");
	const struct hive_agent_conf *a = conf_agent(c, "reviewer");

	cr_assert_str_eq(c->redis, "/run/redis/redis.sock");
	cr_assert_str_eq(c->prefix, "prod");
	cr_assert_str_eq(c->host, "node-7.example");
	cr_assert_str_eq(c->postgres, "host=/run/postgresql dbname=hive");
	cr_assert_str_eq(c->worker_path, "/opt/hive/bin/hive-worker");
	cr_assert_str_eq(c->http, "127.0.0.1:9000");
	cr_assert_str_eq(c->token_file, "/etc/hive/token");
	cr_assert_eq(c->stop_timeout_ms, 45000);
	cr_assert_eq(c->heartbeat_ms, 500);
	cr_assert_eq(c->snapshots_keep, 3);
	cr_assert_eq(c->allow_eviction, 1);
	cr_assert_eq(c->verbose, 1);

	cr_assert_not_null(a);
	cr_assert_eq(a->line, 15);
	cr_assert_str_eq(a->argv[0], "/usr/bin/python3");
	cr_assert_str_eq(a->argv[1], "-u");
	cr_assert_str_eq(a->argv[2], "/opt/agents/reviewer.py");
	cr_assert_str_eq(a->argv[3], "--name");
	cr_assert_str_eq(a->argv[4], "the reviewer");
	cr_assert_null(a->argv[5]);
	cr_assert_eq(a->mode, HIVE_MODE_EXEC);
	cr_assert_eq(a->ncaps, 2);
	cr_assert_str_eq(a->caps[0], "review");
	cr_assert_str_eq(a->caps[1], "lint");
	cr_assert_eq(a->instances, 4);
	cr_assert_eq(a->concurrency, 2);
	cr_assert_eq(a->restart, HIVE_RESTART_ON_FAILURE);
	cr_assert_eq(a->backoff_ms, 250);
	cr_assert_eq(a->backoff_max_ms, 60000);
	cr_assert_eq(a->restart_limit, 9);
	cr_assert_eq(a->restart_window_ms, 120000);
	cr_assert_eq(a->cooldown_ms, 3600000);
	cr_assert_eq(a->heartbeat_deadline_ms, 3000);
	cr_assert_eq(a->task_timeout_ms, 90000);
	cr_assert_eq(a->max_attempts, 7);
	cr_assert_eq(a->max_tasks, 1000);
	cr_assert_eq(a->max_rss_kb, 512 * 1024);
	cr_assert_eq(a->nenv, 2);
	cr_assert_str_eq(a->env[0], "LANG=C.UTF-8");
	cr_assert_str_eq(a->env[1], "GREETING=hello world");
	cr_assert_str_eq(a->directory, "/var/lib/hive/reviewer");
	cr_assert_eq(a->autostart, 0);
	conf_free(c);
}

Test(config, other_values)
{
	struct hive_conf *c = load_ok(
	    "[hive]\n"
	    "redis = [::1]:6380\n"
	    "http =\n"
	    "log_level = info\n"
	    "[agent:a]\ncommand = a\nrestart = never\nmode = stream\n"
	    "[agent:b]\ncommand = b\nrestart = always\n");

	cr_assert_str_eq(c->redis, "[::1]:6380");
	cr_assert_str_eq(c->http, "");
	cr_assert_eq(c->verbose, 0);
	cr_assert_eq(conf_agent(c, "a")->restart, HIVE_RESTART_NEVER);
	cr_assert_eq(conf_agent(c, "a")->mode, HIVE_MODE_STREAM);
	cr_assert_eq(conf_agent(c, "b")->restart, HIVE_RESTART_ALWAYS);
	conf_free(c);
}

Test(config, booleans)
{
	static const struct { const char *s; int v; } t[] = {
		{ "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 },
		{ "on", 1 }, { "off", 0 }, { "1", 1 }, { "0", 0 },
		{ "YES", 1 }, { "Off", 0 },
	};
	char text[256];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct hive_conf *c;

		snprintf(text, sizeof(text), "[hive]\nallow_eviction = %s\n"
		    "[agent:a]\ncommand = x\nautostart = %s\n", t[i].s, t[i].s);
		c = load_ok(text);
		cr_assert_eq(c->allow_eviction, t[i].v, "%s", t[i].s);
		cr_assert_eq(c->agents[0].autostart, t[i].v, "%s", t[i].s);
		conf_free(c);
	}
	expect_err("[agent:a]\ncommand = x\nautostart = maybe\n", 3,
	    "autostart: expected yes/no");
	expect_err("[agent:a]\ncommand = x\nautostart = \n", 3,
	    "autostart: expected yes/no");
}

Test(config, section_and_file_order)
{
	struct hive_conf *c = load_ok(
	    "[agent:z]\ncommand = z\n"
	    "[hive]\nprefix = p\n"
	    "[agent \"a\"]\ncommand = a\n"
	    "[ agent:m ]\ncommand = m\n");

	cr_assert_eq(c->nagents, 3);
	cr_assert_str_eq(c->agents[0].name, "z");
	cr_assert_str_eq(c->agents[1].name, "a");
	cr_assert_str_eq(c->agents[2].name, "m");
	cr_assert_eq(c->agents[2].line, 7);
	cr_assert_str_eq(c->prefix, "p");
	conf_free(c);
}

Test(config, comments_crlf_bom_and_continuations)
{
	struct hive_conf *c = load_ok(
	    "\xef\xbb\xbf; a comment\r\n"
	    "# another\r\n"
	    "[agent:a]\r\n"
	    "command = /bin/sh -c 'echo a; echo b'\r\n"
	    "  --long-option\r\n"
	    "\t'last word'\r\n"
	    "environment = A=1\n"
	    "    B=2\n"
	    "    # an indented comment is still a comment\n"
	    "    C=3\n");
	const struct hive_agent_conf *a = conf_agent(c, "a");

	cr_assert_str_eq(a->argv[0], "/bin/sh");
	cr_assert_str_eq(a->argv[1], "-c");
	cr_assert_str_eq(a->argv[2], "echo a; echo b", "a ';' is not a comment");
	cr_assert_str_eq(a->argv[3], "--long-option");
	cr_assert_str_eq(a->argv[4], "last word");
	cr_assert_null(a->argv[5]);
	cr_assert_eq(a->nenv, 3);
	cr_assert_str_eq(a->env[2], "C=3");
	conf_free(c);
}

/* ---- command and environment splitting ---- */

Test(config, command_split_like_a_shell)
{
	static const struct { const char *in; const char *out[6]; } t[] = {
		{ "a b\tc", { "a", "b", "c" } },
		{ "  a   b  ", { "a", "b" } },
		{ "'a b' \"c d\"", { "a b", "c d" } },
		{ "a\\ b c", { "a b", "c" } },
		{ "\"a\\\"b\" 'x\\y'", { "a\"b", "x\\y" } },
		{ "\"\\$HOME \\n\"", { "$HOME \\n" } },
		{ "a\"b c\"'d e'f", { "ab cd ef" } },
		{ "x \"\" ''", { "x", "", "" } },
		{ "$HOME *.c ~ |", { "$HOME", "*.c", "~", "|" } },
	};
	char text[512];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct hive_conf *c;
		int n;

		snprintf(text, sizeof(text), "[agent:a]\ncommand = %s\n", t[i].in);
		c = load_ok(text);
		for (n = 0; t[i].out[n] != NULL; n++) {
			cr_assert_not_null(c->agents[0].argv[n], "%s: word %d", t[i].in, n);
			cr_assert_str_eq(c->agents[0].argv[n], t[i].out[n], "%s", t[i].in);
		}
		cr_assert_null(c->agents[0].argv[n], "%s: extra words", t[i].in);
		conf_free(c);
	}
}

Test(config, command_errors)
{
	char text[2048];
	size_t off;

	expect_err("[agent:a]\ncommand = a 'b\n", 2,
	    "command: unterminated single quote");
	expect_err("[agent:a]\ncommand = a \"b\n", 2,
	    "command: unterminated double quote");
	expect_err("[agent:a]\ncommand = a b\\\n", 2,
	    "command: backslash at the end");
	expect_err("[agent:a]\ncommand = ''\n", 2, "command: empty");
	expect_err("[agent:a]\ncommand =\n", 2, "command: empty");
	expect_err("[agent:a]\nmode = exec\n", 1, "agent 'a': missing command");
	off = (size_t)snprintf(text, sizeof(text), "[agent:a]\ncommand = x\n");
	for (int i = 0; i < HIVE_ARGV_MAX; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "  w%d\n", i);
	expect_err(text, 2, "command: more than 64 words");
}

Test(config, environment)
{
	expect_err("[agent:a]\ncommand = x\nenvironment = 1A=b\n", 3,
	    "environment: expected NAME=value");
	expect_err("[agent:a]\ncommand = x\nenvironment = A\n", 3,
	    "environment: expected NAME=value");
	expect_err("[agent:a]\ncommand = x\nenvironment = =b\n", 3,
	    "environment: expected NAME=value");
	expect_err("[agent:a]\ncommand = x\nenvironment = A-B=1\n", 3,
	    "environment: expected NAME=value");
	expect_err("[agent:a]\ncommand = x\nenvironment = A=1 B=2 A=3\n", 3,
	    "environment: A set twice");
	expect_err("[agent:a]\ncommand = x\nenvironment = A=\"1\n", 3,
	    "environment: unterminated double quote");

	struct hive_conf *c = load_ok("[agent:a]\ncommand = x\n"
	    "environment = _X=  EMPTY= PATH=/bin:/usr/bin Q='a=b c'\n");
	const struct hive_agent_conf *a = &c->agents[0];

	cr_assert_eq(a->nenv, 4);
	cr_assert_str_eq(a->env[0], "_X=");
	cr_assert_str_eq(a->env[1], "EMPTY=");
	cr_assert_str_eq(a->env[2], "PATH=/bin:/usr/bin");
	cr_assert_str_eq(a->env[3], "Q=a=b c");
	conf_free(c);
}

Test(config, capabilities)
{
	struct hive_conf *c = load_ok("[agent:a]\ncommand = x\n"
	    "capabilities = a,b  c ,, d.e_f-1\n");

	cr_assert_eq(c->agents[0].ncaps, 4);
	cr_assert_str_eq(c->agents[0].caps[3], "d.e_f-1");
	conf_free(c);

	c = load_ok("[agent:a]\ncommand = x\ncapabilities =\n");
	cr_assert_eq(c->agents[0].ncaps, 0);
	conf_free(c);

	expect_err("[agent:a]\ncommand = x\ncapabilities = a, .b\n", 3,
	    "capabilities: bad name '.b'");
	expect_err("[agent:a]\ncommand = x\ncapabilities = a, b/c\n", 3,
	    "capabilities: bad name 'b/c'");
	expect_err("[agent:a]\ncommand = x\ncapabilities = a, b, a\n", 3,
	    "capabilities: 'a' listed twice");

	char text[1024];
	size_t off = (size_t)snprintf(text, sizeof(text),
	    "[agent:a]\ncommand = x\ncapabilities =");
	for (int i = 0; i <= HIVE_CAPS_MAX; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off,
		    "\n  c%d", i);
	snprintf(text + off, sizeof(text) - off, "\n");
	expect_err(text, 3, "capabilities: more than 32");
}

/* ---- errors, each with its file:line ---- */

Test(config, errors_syntax)
{
	expect_err("stray = 1\n[agent:a]\ncommand = x\n", 1,
	    "key 'stray' before any section");
	expect_err("[agent:a]\ncommand = x\nno equals sign\n", 3,
	    "expected 'key = value'");
	expect_err("[agent:a]\ncommand = x\n= value\n", 3,
	    "missing key before '='");
	expect_err("[agent:a\ncommand = x\n", 1,
	    "bad section header '[agent:a': it must end with ']'");
	expect_err("[hive] trailing\n", 1, "bad section header");
	expect_err("[agent:a]\ncommand = x\n[nope]\n", 3,
	    "unknown section [nope]");
	expect_err("[agent]\ncommand = x\n", 1, "unknown section [agent]");
	expect_err("[agent \"a\n", 1, "bad section header");
	expect_err("[agent a]\n", 1, "bad section [agent a]");
	expect_err("[agent:-a]\ncommand = x\n", 1, "bad agent name '-a'");
	expect_err("[agent:]\ncommand = x\n", 1, "bad agent name ''");
	expect_err("[agent:a/b]\ncommand = x\n", 1, "bad agent name 'a/b'");
	expect_err("[agent:a]\ncommand = x\n[agent \"a\"]\ncommand = y\n", 3,
	    "duplicate agent 'a' (first at line 1)");
	expect_err("[hive]\n[agent:a]\ncommand = x\n[hive]\n", 4,
	    "duplicate section [hive] (first at line 1)");
	expect_err("[agent:a]\ncommand = x\nmode = exec\nmode = stream\n", 4,
	    "duplicate key 'mode' (first at line 3)");
	expect_err("[agent:a]\ncommand = x\nfoo = 1\n", 3,
	    "unknown key 'foo' in [agent:a]");
	expect_err("[hive]\nfoo = 1\n", 2, "unknown key 'foo' in [hive]");
	expect_err("[hive]\ncommand = x\n", 2, "unknown key 'command' in [hive]");
	expect_err("[agent:a]\ncommand = x\nredis = y\n", 3,
	    "unknown key 'redis' in [agent:a]");
}

Test(config, errors_lines)
{
	char text[600], *big;
	size_t n = CONF_LINE_MAX + 64;

	/* No 200-byte limit any more (inih's buffer): a 300-byte value is
	 * kept whole; only a line over CONF_LINE_MAX is an error, not cut. */
	snprintf(text, sizeof(text), "[agent:a]\ncommand = %0300d\n", 0);
	struct hive_conf *c = load_ok(text);
	cr_assert_eq(strlen(c->agents[0].argv[0]), 300);
	conf_free(c);
	snprintf(text, sizeof(text), "[agent:a]\ncommand = %0187d\n", 0);
	c = load_ok(text);
	cr_assert_eq(strlen(c->agents[0].argv[0]), 187);
	conf_free(c);

	/* After a bad line its indented continuation is not reported again. */
	big = malloc(n + 64);
	cr_assert_not_null(big);
	snprintf(big, n + 64, "[agent:a]\ncommand = %0*d\n  more\n  more\n",
	    CONF_LINE_MAX, 0);
	char *errs;
	cr_assert_null(load_text(big, &errs));
	cr_assert_eq(count_lines(errs), 2, "%s", errs);  /* + missing command */
	expect_err_in(errs, "hive.conf", 1, "agent 'a': missing command");
	free(errs);
	free(big);

	cr_assert_null(load_text("[agent:a]\ncommand = x\x01y\n", &errs));
	expect_err_in(errs, "hive.conf", 2, "control character in value");
	free(errs);
}

Test(config, errors_nul_byte)
{
	static const char text[] = "[agent:a]\ncommand = x\nmode = e\0xec\n";
	char *buf = NULL;
	size_t len = 0;
	FILE *ef = open_memstream(&buf, &len);
	struct hive_conf *c = conf_load_string("mem.conf", text,
	    sizeof(text) - 1, ef);

	fclose(ef);
	cr_assert_null(c);
	cr_assert_str_eq(buf, "mem.conf:3: NUL byte in line\n");
	free(buf);
}

Test(config, errors_values)
{
	static const struct { const char *key, *value, *msg; } agent[] = {
		{ "mode", "fast", "mode: expected stream or exec, not 'fast'" },
		{ "instances", "0", "instances: expected a whole number 1..9999, not '0'" },
		{ "instances", "10000", "instances: expected a whole number 1..9999" },
		{ "instances", "-1", "instances: expected a whole number" },
		{ "instances", "1.5", "instances: expected a whole number" },
		{ "instances", "99999999999999999999999", "instances: expected" },
		{ "concurrency", "0", "concurrency: expected a whole number 1..1024" },
		{ "restart", "sometimes", "restart: expected always, on-failure or never" },
		{ "backoff", "fast", "backoff: expected a duration" },
		{ "backoff_max", "1x", "backoff_max: expected a duration" },
		{ "restart_limit", "0", "restart_limit: expected a whole number 1.." },
		{ "restart_window", "0", "restart_window: must be 1ms.." },
		{ "cooldown", "-1s", "cooldown: expected a duration" },
		{ "heartbeat_deadline", "0", "heartbeat_deadline: must be 1ms.." },
		{ "task_timeout", "8d", "task_timeout: expected a duration" },
		{ "task_timeout", "169h", "task_timeout: must be 0ms..604800000ms" },
		{ "max_attempts", "0", "max_attempts: expected a whole number 1..1000" },
		{ "max_attempts", "1001", "max_attempts: expected a whole number 1..1000" },
		{ "max_tasks", "many", "max_tasks: expected a whole number" },
		{ "max_rss", "12Q", "max_rss: expected a size" },
		{ "directory", "relative/dir", "directory: expected an absolute path" },
		{ "autostart", "2", "autostart: expected yes/no" },
		{ "output_lines", "100001", "output_lines: expected a whole number 0..100000" },
		{ "output_lines", "-1", "output_lines: expected a whole number" },
	};
	static const struct { const char *key, *value, *msg; } hive[] = {
		{ "redis", "nope", "redis: expected HOST:PORT or the absolute path" },
		{ "redis", "host:0", "redis: expected HOST:PORT" },
		{ "redis", "host:65536", "redis: expected HOST:PORT" },
		{ "redis", ":6379", "redis: expected HOST:PORT" },
		{ "redis", "a b:6379", "redis: expected HOST:PORT" },
		{ "prefix", "a:b", "prefix: expected a name" },
		{ "prefix", "", "prefix: expected a name" },
		{ "host", "a b", "host: expected a host name" },
		{ "worker", "hive-worker", "worker: expected an absolute path" },
		{ "http", "8420", "http: expected HOST:PORT, or nothing" },
		{ "token_file", "token", "token_file: expected an absolute path" },
		{ "stop_timeout", "0", "stop_timeout: must be 1ms.." },
		{ "heartbeat_interval", "5ms", "heartbeat_interval: must be 10ms..3600000ms" },
		{ "snapshots_keep", "0", "snapshots_keep: expected a whole number 1..1000" },
		{ "allow_eviction", "sure", "allow_eviction: expected yes/no" },
		{ "log_level", "trace", "log_level: expected info or debug" },
		{ "output_lines", "0", "output_lines: expected a whole number 1..100000" },
		{ "output_lines", "lots", "output_lines: expected a whole number" },
	};
	char text[512];

	for (size_t i = 0; i < sizeof(agent) / sizeof(agent[0]); i++) {
		snprintf(text, sizeof(text), "[agent:a]\ncommand = x\n%s = %s\n",
		    agent[i].key, agent[i].value);
		expect_err(text, 3, agent[i].msg);
	}
	for (size_t i = 0; i < sizeof(hive) / sizeof(hive[0]); i++) {
		snprintf(text, sizeof(text), "[hive]\n%s = %s\n", hive[i].key,
		    hive[i].value);
		expect_err(text, 2, hive[i].msg);
	}
}

Test(config, errors_between_keys)
{
	expect_err("[agent:a]\ncommand = x\nbackoff = 5s\nbackoff_max = 1s\n", 4,
	    "backoff_max (1000ms) is shorter than backoff (5000ms)");
	expect_err("[agent:a]\ncommand = x\nbackoff = 1m\n", 3,
	    "backoff_max (30000ms) is shorter than backoff (60000ms)");
	expect_err("[hive]\nheartbeat_interval = 2s\n"
	    "[agent:a]\ncommand = x\nheartbeat_deadline = 2s\n", 5,
	    "agent 'a': heartbeat_deadline (2000ms) must be longer than "
	    "[hive] heartbeat_interval (2000ms)");
	/* Without the key, the error is on the agent's section line. */
	expect_err("[hive]\nheartbeat_interval = 20s\n"
	    "[agent:a]\ncommand = x\n", 3, "agent 'a': heartbeat_deadline");
}

Test(config, all_errors_collected_in_order)
{
	char *errs;
	struct hive_conf *c = load_text(
	    "[hive]\n"                       /* 1 */
	    "redis = nope\n"                 /* 2 */
	    "bogus = 1\n"                    /* 3 */
	    "[agent:a]\n"                    /* 4 */
	    "instances = 0\n"                /* 5: and a is missing command */
	    "mode = x\n"                     /* 6 */
	    "junk\n"                         /* 7 */
	    "[agent:b]\n"                    /* 8 */
	    "command = 'x\n",                /* 9 */
	    &errs);

	cr_assert_null(c);
	cr_assert_eq(count_lines(errs), 7, "%s", errs);
	/* sorted by line, whichever pass found them */
	const char *p2 = strstr(errs, ":2: redis");
	const char *p4 = strstr(errs, ":4: agent 'a': missing command");
	const char *p7 = strstr(errs, ":7: expected");
	const char *p9 = strstr(errs, ":9: command");
	cr_assert(p2 && p4 && p7 && p9 && p2 < p4 && p4 < p7 && p7 < p9,
	    "%s", errs);
	expect_err_in(errs, "hive.conf", 3, "unknown key 'bogus'");
	expect_err_in(errs, "hive.conf", 5, "instances:");
	expect_err_in(errs, "hive.conf", 6, "mode:");
	free(errs);
}

Test(config, too_many_errors_are_counted)
{
	char *text = malloc(200 * 16 + 64), *errs;
	size_t off = (size_t)sprintf(text, "[hive]\n");

	for (int i = 0; i < 150; i++)
		off += (size_t)sprintf(text + off, "bad%d = 1\n", i);
	cr_assert_null(load_text(text, &errs));
	cr_assert_eq(count_lines(errs), 101, "%s", errs);
	cr_assert_not_null(strstr(errs, ": 50 more errors not shown\n"));
	free(errs);
	free(text);
}

Test(config, missing_file)
{
	char path[PATH_MAX * 2], *buf = NULL;
	size_t len = 0;
	FILE *ef = open_memstream(&buf, &len);

	snprintf(path, sizeof(path), "%s/absent.conf", tdir);
	cr_assert_null(conf_load(path, ef));
	fclose(ef);
	expect_err_in(buf, "absent.conf", 0, "cannot open: No such file");
	free(buf);

	ef = open_memstream(&buf, &len);
	cr_assert_null(conf_load(tdir, ef));   /* a folder */
	fclose(ef);
	cr_assert_not_null(strstr(buf, "not a regular file"), "%s", buf);
	free(buf);
}

Test(config, errf_may_be_null)
{
	char path[PATH_MAX * 2];

	snprintf(path, sizeof(path), "%s", put("hive.conf", "[x]\n"));
	cr_assert_null(conf_load(path, NULL));
	cr_assert_null(conf_load_string("s", "[x]\n", 4, NULL));
}

/* ---- agents.d ---- */

Test(config, agents_d_merged_in_name_order)
{
	struct hive_conf *c;

	put("agents.d/20-b.conf", "[agent:b]\ncommand = b\n");
	put("agents.d/10-a.conf", "# first\n[agent \"a\"]\ncommand = a\n"
	    "[agent:a2]\ncommand = a2\n");
	put("agents.d/30-c.conf.disabled", "[agent:c]\ncommand = c\n");
	put("agents.d/notes.txt", "not a config\n");
	put("agents.d/.hidden.conf", "[agent:h]\ncommand = h\n");
	c = load_ok("[agent:main]\ncommand = m\n");
	cr_assert_eq(c->nagents, 4);
	cr_assert_str_eq(c->agents[0].name, "main");
	cr_assert_str_eq(c->agents[1].name, "a");
	cr_assert_str_eq(c->agents[2].name, "a2");
	cr_assert_str_eq(c->agents[3].name, "b");
	cr_assert_eq(c->agents[1].line, 2);
	cr_assert_not_null(strstr(c->agents[1].file, "/agents.d/10-a.conf"));
	cr_assert_not_null(strstr(c->agents[0].file, "/hive.conf"));
	cr_assert_null(conf_agent(c, "c"));
	conf_free(c);
}

Test(config, agents_d_only_agents)
{
	char *errs;

	put("agents.d/a.conf", "[agent:a]\ncommand = a\n[hive]\nprefix = x\n");
	cr_assert_null(load_text("[hive]\n", &errs));
	expect_err_in(errs, "agents.d/a.conf", 3,
	    "[hive] belongs in the main file");
	cr_assert_eq(count_lines(errs), 1, "%s", errs);
	free(errs);
}

Test(config, errors_from_several_files)
{
	char *errs;

	put("agents.d/1.conf", "[agent:a]\ncommand = x\n[agent:b]\n"
	    "mode = wrong\n");
	put("agents.d/2.conf", "\n[agent:a]\ncommand = y\n[agent:c]\n"
	    "command = z\ninstances = 0\n");
	cr_assert_null(load_text("[hive]\nbogus = 1\n[agent:m]\n"
	    "command = m\n", &errs));
	cr_assert_eq(count_lines(errs), 5, "%s", errs);
	expect_err_in(errs, "hive.conf", 2, "unknown key 'bogus'");
	expect_err_in(errs, "agents.d/1.conf", 3, "agent 'b': missing command");
	expect_err_in(errs, "agents.d/1.conf", 4, "mode: expected");
	char want[PATH_MAX * 2];
	snprintf(want, sizeof(want), "duplicate agent 'a' (first at %s/"
	    "agents.d/1.conf:1)", tdir);
	expect_err_in(errs, "agents.d/2.conf", 2, want);
	expect_err_in(errs, "agents.d/2.conf", 6, "instances:");
	/* main file first, then agents.d in name order */
	cr_assert(strstr(errs, "hive.conf:2") < strstr(errs, "1.conf:3") &&
	    strstr(errs, "1.conf:4") < strstr(errs, "2.conf:2"), "%s", errs);
	free(errs);
}

/* conf_load_list: the lines conf_load writes, one item each, in the
 * same order, from every file; none on success. */
Test(config, errors_as_a_list)
{
	struct conf_errors el;
	struct hive_conf *c;
	char *errs, path[PATH_MAX * 2];
	size_t n = 0;

	put("agents.d/1.conf", "[agent:b]\nmode = wrong\n");
	cr_assert_null(load_text("[hive]\nbogus = 1\n[agent:m]\n"
	    "command = m\n", &errs));
	snprintf(path, sizeof(path), "%s/hive.conf", tdir);
	cr_assert_null(conf_load_list(path, &el));
	cr_assert_eq(el.n, (size_t)count_lines(errs), "%s", errs);
	cr_assert_geq(el.n, 3);
	for (const char *p = errs; *p != '\0'; n++) {
		const char *nl = strchr(p, '\n');

		cr_assert(nl != NULL);
		cr_assert_eq(strlen(el.v[n]), (size_t)(nl - p));
		cr_assert(strncmp(el.v[n], p, (size_t)(nl - p)) == 0,
		    "item %zu: %s", n, el.v[n]);
		p = nl + 1;
	}
	expect_err_in(el.v[el.n - 1], "agents.d/1.conf", 2, "mode: expected");
	conf_errors_free(&el);
	cr_assert_eq(el.n, 0u);
	conf_errors_free(&el);          /* twice: nothing left */
	free(errs);

	snprintf(path, sizeof(path), "%s/agents.d", tdir);
	rm_tree(path);
	snprintf(path, sizeof(path), "%s", put("hive.conf", "[hive]\n"));
	cr_assert_not_null(c = conf_load_list(path, &el));
	cr_assert_eq(el.n, 0u);
	cr_assert_null(el.v);
	conf_free(c);
}

Test(config, agents_d_not_a_folder_and_unreadable_file)
{
	char *errs;
	struct hive_conf *c;

	/* agents.d as a plain file: as if there were none */
	put("agents.d", "x\n");
	c = load_ok("[agent:a]\ncommand = x\n");
	cr_assert_eq(c->nagents, 1);
	conf_free(c);
	rm_tree(put("agents.d", ""));   /* the plain file */

	/* a folder named *.conf inside agents.d/ is reported */
	put("agents.d/a.conf", "[agent:b]\ncommand = b\n");
	char dir[PATH_MAX * 2];
	snprintf(dir, sizeof(dir), "%s/agents.d/sub.conf", tdir);
	cr_assert_eq(mkdir(dir, 0755), 0);
	cr_assert_null(load_text("[agent:a]\ncommand = x\n", &errs));
	expect_err_in(errs, "agents.d/sub.conf", 0, "not a regular file");
	free(errs);
}

/* ---- the reload hash ---- */

static uint64_t
hash_of(const char *text, const char *agent)
{
	struct hive_conf *c = load_ok(text);
	const struct hive_agent_conf *a = conf_agent(c, agent);
	uint64_t h;

	cr_assert_not_null(a, "no agent %s", agent);
	h = a->hash;
	conf_free(c);
	return h;
}

Test(config, hash_changes_iff_a_setting_changes)
{
	static const char *base_keys =
	    "command = /bin/x a b\nmode = stream\ncapabilities = c1, c2\n"
	    "instances = 2\nconcurrency = 1\nrestart = always\nbackoff = 100ms\n"
	    "backoff_max = 30s\nrestart_limit = 5\nrestart_window = 60s\n"
	    "cooldown = 0\nheartbeat_deadline = 10s\ntask_timeout = 0\n"
	    "max_attempts = 3\nmax_tasks = 0\nmax_rss = 0\n"
	    "environment = A=1 B=2\ndirectory = /tmp\nautostart = yes\n";
	/* one line changes; the agent's hash must change, b's must not */
	static const char *changed[] = {
	    "command = /bin/x a c\n", "command = /bin/x a b c\n",
	    "command = '/bin/x a' b\n", "mode = exec\n",
	    "capabilities = c1\n", "capabilities = c2, c1\n",
	    "instances = 3\n", "concurrency = 2\n", "restart = never\n",
	    "backoff = 101ms\n", "backoff_max = 31s\n", "restart_limit = 6\n",
	    "restart_window = 61s\n", "cooldown = 1s\n",
	    "heartbeat_deadline = 11s\n", "task_timeout = 1s\n",
	    "max_attempts = 4\n", "max_tasks = 5\n", "max_rss = 1K\n",
	    "environment = A=1 B=3\n", "environment = A=1\n",
	    "directory = /var\n", "autostart = no\n",
	};
	/* written differently, same settings: the hash stays */
	static const char *same[] = {
	    "command = \"/bin/x\" 'a' b\n", "command = /bin/x   a\n  b\n",
	    "capabilities = c1,c2\n", "backoff_max = 30000ms\n",
	    "restart_window = 1m\n", "heartbeat_deadline = 10\n",
	    "max_rss = 0K\n", "autostart = on\n", "environment = A=\"1\" B=2\n",
	};
	char text[4096], *keys = strdup(base_keys);
	uint64_t h0, hb0;

	cr_assert_not_null(keys);
	snprintf(text, sizeof(text), "[agent:a]\n%s[agent:b]\ncommand = b\n",
	    keys);
	h0 = hash_of(text, "a");
	hb0 = hash_of(text, "b");
	cr_assert_neq(h0, hb0);

	for (int pass = 0; pass < 2; pass++) {
		const char **list = pass ? same : changed;
		size_t n = pass ? sizeof(same) / sizeof(same[0]) :
		    sizeof(changed) / sizeof(changed[0]);

		for (size_t i = 0; i < n; i++) {
			size_t klen = strcspn(list[i], "=");
			char *line = keys, *end;
			char mod[4096];

			/* replace the line with the same key */
			while (strncmp(line, list[i], klen) != 0)
				line = strchr(line, '\n') + 1;
			end = strchr(line, '\n') + 1;
			snprintf(mod, sizeof(mod), "[agent:a]\n%.*s%s%s"
			    "[agent:b]\ncommand = b\n", (int)(line - keys), keys,
			    list[i], end);
			if (pass == 0)
				cr_assert_neq(hash_of(mod, "a"), h0, "%s", list[i]);
			else
				cr_assert_eq(hash_of(mod, "a"), h0, "%s", list[i]);
			cr_assert_eq(hash_of(mod, "b"), hb0, "%s", list[i]);
		}
	}

	/* moving the section, comments and blank lines change nothing */
	snprintf(text, sizeof(text), "# hello\n\n[agent:b]\ncommand = b\n\n"
	    "[agent:a]\n%s", keys);
	cr_assert_eq(hash_of(text, "a"), h0);
	cr_assert_eq(hash_of(text, "b"), hb0);
	free(keys);
}

Test(config, hash_and_hive_settings)
{
	static const char *agents = "[agent:a]\ncommand = a\n[agent:b]\n"
	    "command = b\n";
	/* what every worker is started with restarts every agent... */
	static const char *worker_keys[] = {
	    "redis = 127.0.0.1:6390\n", "prefix = other\n", "host = elsewhere\n",
	    "worker = /opt/hive-worker\n", "heartbeat_interval = 2s\n",
	    "log_level = debug\n",
	};
	/* ...what only hived uses restarts none */
	static const char *hived_keys[] = {
	    "postgres = dbname=x\n", "http = 127.0.0.1:1\n",
	    "token_file = /t\n", "stop_timeout = 5s\n", "snapshots_keep = 2\n",
	    "allow_eviction = yes\n",
	};
	char text[512];
	uint64_t ha, hb;

	snprintf(text, sizeof(text), "[hive]\nworker = /w\n%s", agents);
	ha = hash_of(text, "a");
	hb = hash_of(text, "b");
	for (size_t i = 0; i < sizeof(worker_keys) / sizeof(*worker_keys); i++) {
		snprintf(text, sizeof(text), "[hive]\n%s%s%s", worker_keys[i],
		    strncmp(worker_keys[i], "worker", 6) ? "worker = /w\n" : "",
		    agents);
		cr_assert_neq(hash_of(text, "a"), ha, "%s", worker_keys[i]);
		cr_assert_neq(hash_of(text, "b"), hb, "%s", worker_keys[i]);
	}
	for (size_t i = 0; i < sizeof(hived_keys) / sizeof(*hived_keys); i++) {
		snprintf(text, sizeof(text), "[hive]\nworker = /w\n%s%s",
		    hived_keys[i], agents);
		cr_assert_eq(hash_of(text, "a"), ha, "%s", hived_keys[i]);
		cr_assert_eq(hash_of(text, "b"), hb, "%s", hived_keys[i]);
	}
}

/* ---- parsers ---- */

Test(config, parse_duration)
{
	static const struct { const char *s; int rc; unsigned ms; } t[] = {
		{ "0", 0, 0 }, { "2", 0, 2000 }, { "100ms", 0, 100 },
		{ "2s", 0, 2000 }, { "5m", 0, 300000 }, { "1h", 0, 3600000 },
		{ "1500ms", 0, 1500 }, { "0ms", 0, 0 }, { "4294967295ms", 0, 4294967295u },
		{ "4294967296ms", -1, 0 }, { "4294968s", -1, 0 }, { "1194h", -1, 0 }, { "1193h", 0, 4294800000u },
		{ "", -1, 0 }, { "s", -1, 0 }, { "-1s", -1, 0 }, { "+1s", -1, 0 },
		{ " 1s", -1, 0 }, { "1s ", -1, 0 }, { "1 s", -1, 0 }, { "1.5s", -1, 0 },
		{ "1S", -1, 0 }, { "1d", -1, 0 }, { "1sec", -1, 0 }, { "1ms1", -1, 0 },
		{ "99999999999999999999999", -1, 0 }, { "0x10", -1, 0 },
	};
	unsigned ms;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ms = 12345;
		cr_assert_eq(conf_parse_duration(t[i].s, &ms), t[i].rc, "'%s'", t[i].s);
		if (t[i].rc == 0)
			cr_assert_eq(ms, t[i].ms, "'%s': %u", t[i].s, ms);
	}
	cr_assert_eq(conf_parse_duration(NULL, &ms), -1);
}

Test(config, parse_size)
{
	static const struct { const char *s; int rc; uint64_t kb; } t[] = {
		{ "0", 0, 0 }, { "1", 0, 1 }, { "1024", 0, 1 }, { "1025", 0, 2 },
		{ "512K", 0, 512 }, { "512k", 0, 512 }, { "64M", 0, 65536 },
		{ "2G", 0, 2097152 }, { "1T", 0, 1073741824 }, { "64MB", 0, 65536 },
		{ "64MiB", 0, 65536 }, { "0K", 0, 0 },
		{ "18446744073709551615", 0, 18014398509481984 },
		{ "18446744073709551615K", 0, UINT64_MAX },
		{ "18446744073709551615M", -1, 0 }, { "18446744073709551616", -1, 0 },
		{ "", -1, 0 }, { "K", -1, 0 }, { "-1K", -1, 0 }, { "1.5G", -1, 0 },
		{ "1 K", -1, 0 }, { "1Q", -1, 0 }, { "1KK", -1, 0 }, { "1Kb", -1, 0 },
		{ "1B", -1, 0 },
	};
	uint64_t kb;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		kb = 12345;
		cr_assert_eq(conf_parse_size_kb(t[i].s, &kb), t[i].rc, "'%s'", t[i].s);
		if (t[i].rc == 0)
			cr_assert_eq(kb, t[i].kb, "'%s': %llu", t[i].s,
			    (unsigned long long)kb);
	}
	cr_assert_eq(conf_parse_size_kb(NULL, &kb), -1);
}

Test(config, load_string)
{
	static const char text[] = "[agent:a]\ncommand = x\n";
	struct hive_conf *c = conf_load_string("mem", text, sizeof(text) - 1,
	    stderr);

	cr_assert_not_null(c);
	cr_assert_str_eq(c->file, "mem");
	cr_assert_str_eq(c->agents[0].file, "mem");
	conf_free(c);

	/* no final newline; an empty text */
	c = conf_load_string("mem", "[agent:a]\ncommand = x", 21, stderr);
	cr_assert_not_null(c);
	cr_assert_str_eq(c->agents[0].argv[0], "x");
	conf_free(c);
	c = conf_load_string("mem", "", 0, stderr);
	cr_assert_not_null(c);
	cr_assert_eq(c->nagents, 0);
	conf_free(c);
}

/* ---- the shipped example ---- */

Test(config, example_etc_hive_conf_is_valid)
{
	const char *src = getenv("HIVE_SOURCE_DIR");
	char path[PATH_MAX];
	struct hive_conf *c;
	const struct hive_agent_conf *a;

	cr_assert_not_null(src, "HIVE_SOURCE_DIR is not set (run with meson test)");
	snprintf(path, sizeof(path), "%s/etc/hive.conf", src);
	c = conf_load(path, stderr);
	cr_assert_not_null(c, "%s is rejected (errors above)", path);
	cr_assert_eq(c->nagents, 3);
	cr_assert_not_null(a = conf_agent(c, "echo"));
	cr_assert_eq(a->mode, HIVE_MODE_STREAM);
	cr_assert_not_null(a = conf_agent(c, "counter"));
	cr_assert_eq(a->mode, HIVE_MODE_STREAM);
	cr_assert_not_null(a = conf_agent(c, "shouter"));
	cr_assert_eq(a->mode, HIVE_MODE_EXEC);
	conf_free(c);
}
