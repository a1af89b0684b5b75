/*
 * http.c - one request to hived's API (libcurl, blocking: hivectl does
 * nothing else meanwhile), and what its errors mean as exit codes:
 *
 *   no answer (refused, reset, timed out), 5xx   CTL_UNREACHABLE (3)
 *   401, 403 (no token, wrong token, control off) CTL_REFUSED (4)
 *   400 (hived refused the arguments)             CTL_USAGE (2)
 *   any other 4xx (404, 409, 422, ...)            CTL_FAILED (1)
 *
 * Every request is bounded: CTL_CONNECT_MS to connect, --http-timeout
 * (or the caller's bound) for the whole transfer, so a hived that
 * accepts and never answers is exit 3, not a hang.  An error is said in
 * one line on stderr: "hivectl: MESSAGE (CODE)", MESSAGE and CODE from
 * the API's {"error": {"code", "message"}}.
 */
#include "hivectl.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define BODY_MAX (256u << 20)   /* bytes of one answer */

/* The documented code of a status, for an answer that has none. */
static const char *
status_code_name(long status)
{
	switch (status) {
	case 400: return "bad_request";
	case 401: return "unauthorized";
	case 403: return "forbidden";
	case 404: return "not_found";
	case 405: return "method_not_allowed";
	case 409: return "conflict";
	case 413: return "too_large";
	case 422: return "invalid";
	case 503: return "unavailable";
	case 500: return "internal";
	default:  return "http_error";
	}
}

int
ctl_status_exit(long status)
{
	if (status >= 200 && status < 300)
		return CTL_OK;
	if (status == 401 || status == 403)
		return CTL_REFUSED;
	if (status == 400)
		return CTL_USAGE;
	if (status >= 400 && status < 500)
		return CTL_FAILED;
	return CTL_UNREACHABLE;
}

static size_t
on_data(char *data, size_t size, size_t n, void *arg)
{
	struct ctl_resp *r = arg;
	size_t len = size * n;
	char *p;

	if (r->len + len > BODY_MAX)
		return 0;                  /* curl: CURLE_WRITE_ERROR */
	if ((p = realloc(r->raw, r->len + len + 1)) == NULL)
		return 0;
	memcpy(p + r->len, data, len);
	r->raw = p;
	r->len += len;
	r->raw[r->len] = '\0';
	return len;
}

/* The handle, made once and reused (one connection kept alive). */
static CURL *
handle(struct ctl *c)
{
	if (c->curl == NULL) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
			return NULL;
		c->curl = curl_easy_init();
	}
	return c->curl;
}

int
ctl_request(struct ctl *c, const char *method, const char *path,
    json_t *body, long transfer_ms, struct ctl_resp *r)
{
	char errbuf[CURL_ERROR_SIZE] = "", *url = NULL, *auth = NULL;
	char *data = NULL;
	struct curl_slist *hdr = NULL;
	CURL *h = handle(c);
	CURLcode cc;

	memset(r, 0, sizeof(*r));
	if (transfer_ms <= 0)
		transfer_ms = c->http_timeout_ms > 0 ?
		    (long)c->http_timeout_ms : CTL_TRANSFER_MS;
	if (h == NULL || asprintf(&url, "%s%s", c->url, path) == -1) {
		fprintf(stderr, "hivectl: out of memory\n");
		return CTL_FAILED;
	}
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	/* A proxy from the environment is for remote hosts: a local hived
	 * is asked directly. */
	curl_easy_setopt(h, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CTL_CONNECT_MS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, transfer_ms);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "hivectl");
	hdr = curl_slist_append(hdr, "Accept: application/json");
	if (c->token != NULL && asprintf(&auth, "Authorization: Bearer %s",
	    c->token) != -1)
		hdr = curl_slist_append(hdr, auth);
	if (strcmp(method, "POST") == 0) {
		data = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
		/* No body: no Content-Type either (curl's default would be
		 * a form's). */
		hdr = curl_slist_append(hdr, data != NULL ?
		    "Content-Type: application/json" : "Content-Type:");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, data ? data : "");
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	cc = curl_easy_perform(h);
	if (cc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(hdr);
	free(data);
	if (auth != NULL) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	if (cc != CURLE_OK) {
		if (cc == CURLE_OPERATION_TIMEDOUT)
			fprintf(stderr, "hivectl: no answer from hived at %s "
			    "within %ld ms (%s)", c->url, transfer_ms,
			    errbuf[0] ? errbuf : curl_easy_strerror(cc));
		else
			fprintf(stderr, "hivectl: cannot reach hived at %s: %s",
			    c->url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
		if (c->conf_err != NULL)
			fprintf(stderr, " (hived's default address: %s)",
			    c->conf_err);
		fputc('\n', stderr);
		free(url);
		ctl_resp_free(r);
		return CTL_UNREACHABLE;
	}
	free(url);
	if (r->raw != NULL)
		r->body = json_loadb(r->raw, r->len, 0, NULL);
	return CTL_OK;
}

void
ctl_resp_free(struct ctl_resp *r)
{
	json_decref(r->body);
	free(r->raw);
	memset(r, 0, sizeof(*r));
}

int
ctl_http_fail(struct ctl *c, const struct ctl_resp *r)
{
	json_t *e = json_object_get(r->body, "error");
	const char *msg = NULL, *code = NULL;
	int rc = ctl_status_exit(r->status);
	char cut[300];

	if (json_is_object(e)) {
		msg = json_string_value(json_object_get(e, "message"));
		code = json_string_value(json_object_get(e, "code"));
	} else if (json_is_string(e)) {   /* the older {"error": "..."} */
		msg = json_string_value(e);
	}
	if (code == NULL)
		code = status_code_name(r->status);
	if (msg == NULL)
		msg = r->raw != NULL && r->body == NULL ?
		    ctl_cut(r->raw, 200, cut, sizeof(cut)) : "no message";
	if (c->json && r->body != NULL)
		ctl_json_print(r->body);
	fprintf(stderr, "hivectl: %s (%s)", msg, code);
	if (rc == CTL_REFUSED && c->token == NULL && c->token_err != NULL)
		fprintf(stderr, "; %s", c->token_err);
	fputc('\n', stderr);
	return rc;
}

int
ctl_call(struct ctl *c, const char *method, const char *path,
    json_t *body, json_t **out)
{
	struct ctl_resp r;
	int rc;

	*out = NULL;
	if ((rc = ctl_request(c, method, path, body, 0, &r)) != CTL_OK)
		return rc;
	if (r.status < 200 || r.status >= 300) {
		rc = ctl_http_fail(c, &r);
		ctl_resp_free(&r);
		return rc;
	}
	*out = r.body != NULL ? json_incref(r.body) : json_object();
	ctl_resp_free(&r);
	return CTL_OK;
}

char *
ctl_escape(struct ctl *c, const char *s)
{
	CURL *h = handle(c);
	char *e = h != NULL ? curl_easy_escape(h, s, 0) : NULL;
	char *copy = e != NULL ? strdup(e) : NULL;

	curl_free(e);
	if (copy == NULL) {
		fprintf(stderr, "hivectl: out of memory\n");
		exit(CTL_FAILED);
	}
	return copy;
}

void
ctl_http_free(struct ctl *c)
{
	if (c->curl != NULL) {
		curl_easy_cleanup(c->curl);
		curl_global_cleanup();
		c->curl = NULL;
	}
}
