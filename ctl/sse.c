/*
 * sse.c - hivectl's event-stream client (sse.h): libcurl's write
 * callback feeds a parser that hands each event over as soon as its
 * blank line comes, so a follower prints a line the moment hived sends
 * it.
 *
 * The format (WHATWG HTML, "Server-sent events"), as far as hived uses
 * it:
 *
 *   id: 1733569200123456\n          the event's id (kept for the next
 *   event: output\n                 ones that carry none)
 *   data: {"agent": "echo", ...}\n  data lines, joined by '\n'
 *   \n                              the end of the event
 *   : keepalive\n                   a comment, skipped
 *
 * Lines end with "\n", "\r\n" or "\r"; one space after the colon is not
 * part of the value; a line without a colon is a field without a value.
 */
#include "hivectl.h"
#include "sse.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

static volatile sig_atomic_t stop_sig;

void
ctl_sse_init(struct ctl_sse_parser *p, ctl_sse_fn *fn, void *arg)
{
	memset(p, 0, sizeof(*p));
	p->fn = fn;
	p->arg = arg;
}

void
ctl_sse_free(struct ctl_sse_parser *p)
{
	free(p->line);
	free(p->data);
	memset(p, 0, sizeof(*p));
}

/* Append n bytes to *buf (len, cap); -1 past CTL_SSE_EVENT_MAX or when
 * out of memory. */
static int
grow_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > CTL_SSE_EVENT_MAX)
		return -1;
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 256;
		char *b;

		while (c < *len + n + 1)
			c *= 2;
		if ((b = realloc(*buf, c)) == NULL)
			return -1;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

/* The end of an event: hand it over.  1: stop. */
static int
dispatch(struct ctl_sse_parser *p)
{
	int stop = 0;

	if (p->have_data) {
		if (p->dlen > 0 && p->data[p->dlen - 1] == '\n')
			p->data[--p->dlen] = '\0';
		stop = p->fn(p->id, p->event[0] ? p->event : "message",
		    p->data != NULL ? p->data : "", p->arg) != 0;
	}
	p->dlen = 0;
	if (p->data != NULL)
		p->data[0] = '\0';
	p->have_data = 0;
	p->event[0] = '\0';
	return stop;
}

/* One whole line (p->line, NUL-terminated).  1: stop, -1: too big. */
static int
field(struct ctl_sse_parser *p)
{
	char *name = p->line, *value = strchr(p->line, ':');

	if (p->len == 0)
		return dispatch(p);
	if (value == name)
		return 0;                       /* a comment */
	if (value != NULL) {
		*value++ = '\0';
		if (*value == ' ')
			value++;
	} else
		value = name + p->len;          /* "" */
	if (strcmp(name, "data") == 0) {
		p->have_data = 1;
		if (grow_add(&p->data, &p->dlen, &p->dcap, value,
		    strlen(value)) == -1 ||
		    grow_add(&p->data, &p->dlen, &p->dcap, "\n", 1) == -1)
			return -1;
	} else if (strcmp(name, "event") == 0)
		snprintf(p->event, sizeof(p->event), "%s", value);
	else if (strcmp(name, "id") == 0)
		snprintf(p->id, sizeof(p->id), "%s", value);
	/* "retry" and unknown fields: nothing to do. */
	return 0;
}

int
ctl_sse_feed(struct ctl_sse_parser *p, const char *s, size_t n)
{
	int r;

	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (ch == '\n' && p->cr) {      /* the "\n" of a "\r\n" */
			p->cr = 0;
			continue;
		}
		p->cr = ch == '\r';
		if (ch != '\n' && ch != '\r') {
			if (grow_add(&p->line, &p->len, &p->cap, &ch, 1) == -1)
				return -1;
			continue;
		}
		if (p->line == NULL && grow_add(&p->line, &p->len, &p->cap,
		    "", 0) == -1)
			return -1;
		r = field(p);
		p->len = 0;
		p->line[0] = '\0';
		if (r != 0)
			return r;
	}
	return 0;
}

/* ---- the transfer ---- */

struct sse_xfer {
	CURL *h;
	struct ctl_sse_parser p;
	long status;                  /* 0 until the first byte */
	struct ctl_resp err;          /* the body of an answer not 200 */
	int stopped;                  /* fn said stop (or Ctrl-C) */
	int failed;                   /* out of memory, an event too big */
};

static size_t
on_data(char *data, size_t size, size_t n, void *arg)
{
	struct sse_xfer *x = arg;
	size_t len = size * n;
	char *b;
	int r;

	if (x->status == 0)
		curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->status);
	if (x->status != 200) {
		/* An error document: kept whole, said after. */
		if (x->err.len + len > (1u << 20) ||
		    (b = realloc(x->err.raw, x->err.len + len + 1)) == NULL)
			return 0;
		memcpy(b + x->err.len, data, len);
		x->err.raw = b;
		x->err.len += len;
		b[x->err.len] = '\0';
		return len;
	}
	if (stop_sig)
		x->stopped = 1;
	else if ((r = ctl_sse_feed(&x->p, data, len)) == 1)
		x->stopped = 1;
	else if (r == -1)
		x->failed = 1;
	return x->stopped || x->failed ? 0 : len;     /* 0: curl stops */
}

/* Called by curl about once a second even when nothing comes: Ctrl-C
 * ends the transfer from here. */
static int
on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
    curl_off_t un)
{
	struct sse_xfer *x = arg;

	if (stop_sig)
		x->stopped = 1;
	return stop_sig != 0;
}

static void
on_signal(int sig)
{
	stop_sig = sig;
}

int
ctl_sse(struct ctl *c, const char *path, const char *last_id,
    ctl_sse_fn *fn, void *arg)
{
	struct sigaction sa, old_int, old_term;
	struct curl_slist *hdr = NULL;
	char errbuf[CURL_ERROR_SIZE] = "", *url = NULL, *h1 = NULL,
	    *auth = NULL;
	struct sse_xfer x;
	CURLcode cc;
	int rc = CTL_OK;

	memset(&x, 0, sizeof(x));
	ctl_sse_init(&x.p, fn, arg);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
	    (x.h = curl_easy_init()) == NULL ||
	    asprintf(&url, "%s%s", c->url, path) == -1) {
		fprintf(stderr, "hivectl: out of memory\n");
		return CTL_FAILED;
	}
	/* Ctrl-C ends the stream, not hivectl: its exit is 0. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	curl_easy_setopt(x.h, CURLOPT_URL, url);
	curl_easy_setopt(x.h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x.h, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
	curl_easy_setopt(x.h, CURLOPT_CONNECTTIMEOUT_MS, (long)CTL_CONNECT_MS);
	/* No bound on the whole transfer (it is a stream), but silence
	 * past the keepalives' period means hived is gone. */
	curl_easy_setopt(x.h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(x.h, CURLOPT_LOW_SPEED_TIME,
	    (long)(CTL_SSE_IDLE_MS / 1000));
	curl_easy_setopt(x.h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(x.h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(x.h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(x.h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(x.h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(x.h, CURLOPT_XFERINFODATA, &x);
	curl_easy_setopt(x.h, CURLOPT_USERAGENT, "hivectl");
	hdr = curl_slist_append(hdr, "Accept: text/event-stream");
	if (last_id != NULL && last_id[0] != '\0' &&
	    asprintf(&h1, "Last-Event-ID: %s", last_id) != -1)
		hdr = curl_slist_append(hdr, h1);
	if (c->token != NULL && asprintf(&auth, "Authorization: Bearer %s",
	    c->token) != -1)
		hdr = curl_slist_append(hdr, auth);
	curl_easy_setopt(x.h, CURLOPT_HTTPHEADER, hdr);
	cc = curl_easy_perform(x.h);
	if (x.status == 0)
		curl_easy_getinfo(x.h, CURLINFO_RESPONSE_CODE, &x.status);
	if (x.stopped || stop_sig) {
		rc = CTL_OK;
	} else if (x.failed) {
		fprintf(stderr, "hivectl: an event of the stream is over %u "
		    "bytes, or out of memory\n", CTL_SSE_EVENT_MAX);
		rc = CTL_FAILED;
	} else if (x.status != 0 && x.status != 200) {
		x.err.status = x.status;
		if (x.err.raw != NULL)
			x.err.body = json_loadb(x.err.raw, x.err.len, 0, NULL);
		rc = ctl_http_fail(c, &x.err);
	} else if (cc != CURLE_OK) {
		fprintf(stderr, "hivectl: the stream from hived at %s ended: "
		    "%s\n", c->url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
		rc = CTL_UNREACHABLE;
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(x.h);
	curl_global_cleanup();
	if (auth != NULL) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	free(h1);
	free(url);
	ctl_resp_free(&x.err);
	ctl_sse_free(&x.p);
	return rc;
}
