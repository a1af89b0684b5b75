/*
 * conf.c - where hived is, and the token, in this order:
 *
 *   address: --url, HIVE_URL, the http key of [hive] in --config (or
 *            /etc/hive/hive.conf), hived's default 127.0.0.1:8420
 *   token:   --token-file, HIVE_TOKEN_FILE, the token_file key there
 *
 * The configuration file is read only for those two keys of [hive]: the
 * rest of it (agents, keys hivectl does not know, lines hived would
 * refuse) is skipped, so a hivectl never fails over what it does not use.
 * A token that cannot be read is not an error yet: reads need none
 * (unless http_auth_reads), and when hived refuses, http.c says why the
 * token was missing.
 */
#include "hivectl.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CONF_MAX  (1u << 20)   /* bytes: hived's own bound (config_read.c) */
#define TOKEN_MAX 4096

const char *ctl_default_conf = CTL_DEFAULT_CONF;

/* The whole of path, NUL-terminated (malloc'ed), or NULL with errno. */
static char *
read_file(const char *path, size_t max)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	if (f == NULL)
		return NULL;
	if ((buf = malloc(max + 1)) == NULL) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, max, f);
	if (ferror(f)) {
		int e = errno;

		fclose(f);
		free(buf);
		errno = e;
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* s[0..n) without the blanks around it, malloc'ed. */
static char *
trimmed(const char *s, size_t n)
{
	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	return strndup(s, n);
}

/*
 * The same line syntax as hived (config_read.c): comments start with ';'
 * or '#', "[section]" headers, "key = value" or "key: value", indented
 * lines continue the key above.  Only [hive]'s http and token_file are
 * kept; a second value of a key replaces the first (hived would refuse
 * the file; the operator then hears it from hived, not from here).
 */
int
ctl_conf_parse(const char *text, char **http, char **token_file)
{
	const char *p = text;
	int in_hive = 0;
	char **cont = NULL;   /* the key an indented line continues */

	*http = *token_file = NULL;
	if (strncmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	while (*p != '\0') {
		size_t len = strcspn(p, "\n");
		const char *line = p, *s = p, *sep;
		char *key, *val;

		p += len + (p[len] == '\n');
		while (s < line + len && isspace((unsigned char)*s))
			s++;
		if (s == line + len || *s == ';' || *s == '#')
			continue;
		if (s != line) {               /* indented: a continuation */
			if (cont != NULL && *cont != NULL) {
				char *more = trimmed(s, (size_t)(line + len - s));
				char *j = NULL;

				if (more == NULL || asprintf(&j, "%s %s", *cont,
				    more) == -1)
					j = NULL;
				free(more);
				if (j == NULL)
					return -1;
				free(*cont);
				*cont = j;
			}
			continue;
		}
		cont = NULL;
		if (*s == '[') {
			const char *close = memrchr(s, ']', (size_t)(line +
			    len - s));
			char *name = close != NULL ? trimmed(s + 1,
			    (size_t)(close - s - 1)) : strdup("");

			if (name == NULL)
				return -1;
			in_hive = strcmp(name, "hive") == 0;
			free(name);
			continue;
		}
		sep = s + strcspn(s, "=:");
		if (!in_hive || sep >= line + len)
			continue;
		if ((key = trimmed(s, (size_t)(sep - s))) == NULL)
			return -1;
		if (strcmp(key, "http") == 0)
			cont = http;
		else if (strcmp(key, "token_file") == 0)
			cont = token_file;
		free(key);
		if (cont == NULL)
			continue;
		if ((val = trimmed(sep + 1, (size_t)(line + len - sep - 1))) ==
		    NULL)
			return -1;
		free(*cont);
		*cont = val;
	}
	return 0;
}

char *
ctl_conf_http_url(const char *value, const char **why)
{
	const char *colon = strrchr(value, ':');
	const char *host;
	size_t hlen;
	char *url;

	if (*value == '\0') {
		*why = "the HTTP API is off (http is empty)";
		return NULL;
	}
	if (colon == NULL || colon == value || colon[1] == '\0') {
		*why = "http is not HOST:PORT";
		return NULL;
	}
	if (strcmp(colon + 1, "0") == 0) {
		*why = "http has port 0 (chosen at start): pass --url";
		return NULL;
	}
	host = value;
	hlen = (size_t)(colon - value);
	/* A wildcard bind is reached on loopback. */
	if (hlen == 7 && strncmp(host, "0.0.0.0", 7) == 0)
		host = "127.0.0.1", hlen = 9;
	else if (hlen == 4 && strncmp(host, "[::]", 4) == 0)
		host = "[::1]", hlen = 5;
	if (asprintf(&url, "http://%.*s%s", (int)hlen, host, colon) == -1)
		return NULL;
	return url;
}

/* --url or HIVE_URL as given: "http://host:port" or "host:port". */
static char *
url_from(const char *s)
{
	size_t n = strlen(s);
	char *url;

	while (n > 0 && s[n - 1] == '/')
		n--;
	if (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0)
		url = strndup(s, n);
	else if (asprintf(&url, "http://%.*s", (int)n, s) == -1)
		url = NULL;
	return url;
}

/* The token in path (its first line, without blanks at the ends). */
static void
read_token(struct ctl *c, const char *path)
{
	char *text = read_file(path, TOKEN_MAX);

	if (text == NULL) {
		if (asprintf(&c->token_err, "token file %s: %s", path,
		    strerror(errno)) == -1)
			c->token_err = NULL;
		return;
	}
	c->token = trimmed(text, strcspn(text, "\r\n"));
	free(text);
	if (c->token != NULL && c->token[0] == '\0') {
		free(c->token);
		c->token = NULL;
		if (asprintf(&c->token_err, "token file %s is empty",
		    path) == -1)
			c->token_err = NULL;
	}
}

int
ctl_conf_resolve(struct ctl *c)
{
	const char *env_url = getenv("HIVE_URL");
	const char *env_tok = getenv("HIVE_TOKEN_FILE");
	const char *conf = c->config_opt ? c->config_opt : ctl_default_conf;
	const char *why = NULL;
	char *text = NULL, *http = NULL, *token_file = NULL;
	int need_conf, r = CTL_OK;

	if (env_url != NULL && *env_url == '\0')
		env_url = NULL;
	if (env_tok != NULL && *env_tok == '\0')
		env_tok = NULL;
	/* An explicit --config is always read (a typo is said). */
	need_conf = c->config_opt != NULL ||
	    (c->url_opt == NULL && env_url == NULL) ||
	    (c->token_file_opt == NULL && env_tok == NULL);
	/*
	 * An explicit --config must be read.  The default may be absent, or
	 * closed to this user (/etc/hive is root:hive 0750): hived's
	 * defaults then, and the reason kept for when they do not work.
	 */
	if (need_conf && (text = read_file(conf, CONF_MAX)) == NULL) {
		if (c->config_opt != NULL) {
			fprintf(stderr, "hivectl: %s: %s\n", conf,
			    strerror(errno));
			return CTL_USAGE;
		}
		if (errno != ENOENT && asprintf(&c->conf_err, "%s: %s", conf,
		    strerror(errno)) == -1)
			c->conf_err = NULL;
	}
	if (text != NULL && ctl_conf_parse(text, &http, &token_file) == -1)
		goto oom;

	if (c->url_opt != NULL || env_url != NULL)
		c->url = url_from(c->url_opt ? c->url_opt : env_url);
	else if ((c->url = ctl_conf_http_url(http ? http : CTL_DEFAULT_HTTP,
	    &why)) == NULL && why != NULL) {
		fprintf(stderr, "hivectl: %s: %s\n", conf, why);
		r = CTL_UNREACHABLE;
		goto out;
	}
	if (c->url == NULL)
		goto oom;

	if (c->token_file_opt != NULL || env_tok != NULL)
		read_token(c, c->token_file_opt ? c->token_file_opt : env_tok);
	else if (token_file != NULL && *token_file != '\0')
		read_token(c, token_file);
	else if ((c->token_err = strdup(text != NULL ? "no token_file in "
	    "the [hive] section of the config" : c->conf_err != NULL ?
	    c->conf_err : "no token file: pass --token-file or set "
	    "HIVE_TOKEN_FILE")) == NULL)
		goto oom;
	goto out;
oom:
	fprintf(stderr, "hivectl: out of memory\n");
	r = CTL_FAILED;
out:
	free(text);
	free(http);
	free(token_file);
	return r;
}

void
ctl_conf_free(struct ctl *c)
{
	free(c->url);
	free(c->token);
	free(c->token_err);
	free(c->conf_err);
	c->url = c->token = c->token_err = c->conf_err = NULL;
}
