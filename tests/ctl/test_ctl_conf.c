/*
 * test_ctl_conf.c - hivectl's reading of hive.conf (ctl/conf.c): the
 * http and token_file keys of [hive] out of any INI text, whatever else
 * it holds, with hived's line syntax; the http value as a URL.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "hivectl.h"

static void
parse(const char *text, const char *http, const char *token)
{
	char *h = NULL, *t = NULL;

	cr_assert_eq(ctl_conf_parse(text, &h, &t), 0);
	if (http == NULL)
		cr_assert_null(h, "http: %s", h);
	else
		cr_assert(h != NULL && strcmp(h, http) == 0, "http: %s, want %s",
		    h ? h : "(none)", http);
	if (token == NULL)
		cr_assert_null(t, "token_file: %s", t);
	else
		cr_assert(t != NULL && strcmp(t, token) == 0,
		    "token_file: %s, want %s", t ? t : "(none)", token);
	free(h);
	free(t);
}

Test(ctl_conf, keys_of_hive_only)
{
	parse("[hive]\nhttp = 127.0.0.1:8420\ntoken_file = /etc/hive/token\n",
	    "127.0.0.1:8420", "/etc/hive/token");
	/* Other sections' keys of the same name are not [hive]'s. */
	parse("[agent \"a\"]\nhttp = 1.2.3.4:1\n[hive]\nredis = x:1\n"
	    "[agent:b]\ntoken_file = /x\n", NULL, NULL);
	/* "key: value", blanks inside the brackets, a BOM, CRLF. */
	parse("\xef\xbb\xbf[ hive ]\r\nhttp: [::1]:9000\r\n", "[::1]:9000",
	    NULL);
	/* What hived would refuse is skipped, not an error here. */
	parse("garbage\n[hive]\nno separator here\nhttp=h:1\n[unclosed\n"
	    "token_file = /t\n", "h:1", NULL);
	/* Comments, indented comments, continuation lines. */
	parse("# c\n[hive]\n ; indented\ntoken_file = /a\n  b\nhttp = x:2\n",
	    "x:2", "/a b");
	/* A continuation of another key continues nothing of ours. */
	parse("[hive]\nredis = a\n  http = y:3\nhttp = z:4\n", "z:4", NULL);
	/* Empty: the API off. */
	parse("[hive]\nhttp =\n", "", NULL);
	parse("", NULL, NULL);
}

static void
url(const char *value, const char *want)
{
	const char *why = NULL;
	char *u = ctl_conf_http_url(value, &why);

	if (want == NULL) {
		cr_assert_null(u, "%s -> %s", value, u);
		cr_assert_not_null(why);
	} else {
		cr_assert(u != NULL && strcmp(u, want) == 0, "%s -> %s, want %s",
		    value, u ? u : why, want);
	}
	free(u);
}

Test(ctl_conf, http_as_url)
{
	url("127.0.0.1:8420", "http://127.0.0.1:8420");
	url("localhost:1", "http://localhost:1");
	url("0.0.0.0:8420", "http://127.0.0.1:8420");
	url("[::]:8420", "http://[::1]:8420");
	url("[::1]:8420", "http://[::1]:8420");
	url("", NULL);
	url("127.0.0.1:0", NULL);
	url("nocolon", NULL);
}

/* The default configuration closed to this user (here: not a file):
 * hived's default address, and the reason kept for when it fails. */
Test(ctl_conf, default_config_unreadable)
{
	struct ctl c;

	memset(&c, 0, sizeof(c));
	ctl_default_conf = "/";
	unsetenv("HIVE_URL");
	unsetenv("HIVE_TOKEN_FILE");
	cr_assert_eq(ctl_conf_resolve(&c), CTL_OK);
	cr_assert_str_eq(c.url, "http://127.0.0.1:8420");
	cr_assert_null(c.token);
	cr_assert(c.conf_err != NULL && strstr(c.conf_err, "/: ") != NULL,
	    "%s", c.conf_err ? c.conf_err : "(none)");
	cr_assert(c.token_err != NULL && strcmp(c.token_err, c.conf_err) == 0);
	ctl_conf_free(&c);

	/* Absent: the defaults, nothing to say about the file. */
	memset(&c, 0, sizeof(c));
	ctl_default_conf = "/nonexistent/hive.conf";
	cr_assert_eq(ctl_conf_resolve(&c), CTL_OK);
	cr_assert_str_eq(c.url, "http://127.0.0.1:8420");
	cr_assert_null(c.conf_err);
	ctl_conf_free(&c);

	/* An explicit --config is a usage error. */
	memset(&c, 0, sizeof(c));
	c.config_opt = "/";
	cr_assert_eq(ctl_conf_resolve(&c), CTL_USAGE);
	ctl_conf_free(&c);
}
