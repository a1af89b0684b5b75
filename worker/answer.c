/*
 * answer.c - what a handler wrote, parsed into an answer: a stream
 * handler's output line, an exec handler's stdout.  No worker state is
 * involved (bytes in, a struct wrk_answer or a reason out), so that
 * tests/fuzz/fuzz_handler.c runs exactly this code on arbitrary bytes.
 *
 * Every text made here (an answer's error, a reason) can go into a
 * result's "error" as it is: fewer than HIVE_ERROR_MAX bytes of UTF-8
 * without NUL, cut on a character boundary.  jansson only ever hands out
 * such strings; what is quoted from the raw output goes through
 * wrk_excerpt().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "worker.h"

void
wrk_text_fit(char *s, size_t size)
{
	size_t n = strlen(s);

	if (size == 0 || n < size)
		return;
	n = size - 1;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	s[n] = '\0';
}

/*
 * Copy n bytes of UTF-8 text into dst, cut to fit.  A JSON string may hold
 * "\u0000" (the worker writes one when a payload has a NUL), an error text
 * may not: each NUL becomes U+FFFD, as the recorder writes it into jsonb.
 */
static void
text_copy(char *dst, size_t size, const char *src, size_t n)
{
	size_t i = 0, o = 0;

	while (i < n) {
		const char *c = src + i;
		size_t k = 1, clen;     /* bytes taken from src, put in dst */

		if (src[i] == '\0') {
			c = "\xef\xbf\xbd";
			clen = 3;
		} else {
			while (i + k < n &&
			    ((unsigned char)src[i + k] & 0xc0) == 0x80)
				k++;
			clen = k;
		}
		if (o + clen >= size)
			break;
		memcpy(dst + o, c, clen);
		o += clen;
		i += k;
	}
	dst[o] = '\0';
}

/* A JSON string equal to s (its whole length: "ok\u0000" is not "ok"). */
static bool
json_str_is(const json_t *j, const char *s)
{
	return json_is_string(j) && json_string_length(j) == strlen(s) &&
	    memcmp(json_string_value(j), s, strlen(s)) == 0;
}

/* Length of the well-formed UTF-8 character at p (at most len bytes)
 * that may be shown as it is, 0 if there is none: utf8_seq's, but no
 * control characters (C0, DEL, and C1: U+0080..U+009F, C2 80..C2 9F). */
static size_t
printable_seq(const unsigned char *p, size_t len)
{
	size_t n = utf8_seq(p, len);

	if ((n == 1 && (p[0] < 0x20 || p[0] == 0x7f)) ||
	    (n == 2 && p[0] == 0xc2 && p[1] < 0xa0))
		return 0;
	return n;
}

void
wrk_excerpt(const char *p, size_t len, char *out, size_t size)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t in = len > WRK_EXCERPT_MAX ? WRK_EXCERPT_MAX : len;
	size_t i = 0, o = 0, n;

	/* Room for "..." and the NUL at the end. */
	while (i < in && o + 4 + 4 <= size) {
		if ((n = printable_seq(s + i, in - i)) == 0) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, s + i, n);
		o += n;
		i += n;
	}
	if (i < len && o + 4 <= size) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o < size ? o : size - 1] = '\0';
}

static void
answer_init(struct wrk_answer *a)
{
	/* Not memset: error[] is 4 KiB and this runs for every answer. */
	a->id[0] = '\0';
	a->id_sure = false;
	a->status = HIVE_STATUS_OK;
	a->result = NULL;
	a->memory = NULL;
	a->progress = a->chunk = NULL;
	a->usage = NULL;
	a->error[0] = '\0';
}

void
wrk_answer_clear(struct wrk_answer *a)
{
	json_decref(a->result);
	json_decref(a->memory);
	json_decref(a->progress);
	json_decref(a->chunk);
	json_decref(a->usage);
	a->result = a->memory = a->progress = a->chunk = a->usage = NULL;
}

/* A line that is not valid JSON may still start the usual way,
 * {"id":"...": then the id tells which task it failed. */
static void
guess_id(const char *line, size_t len, struct wrk_answer *a)
{
	const char *p, *end = line + len;
	size_t n = 0;

	if (len < 8 || memcmp(line, "{\"id\":\"", 7) != 0)
		return;
	for (p = line + 7; p < end && *p != '"' && n < HIVE_ID_MAX; p++)
		n++;
	if (p >= end || *p != '"' || proto_valid_id(line + 7, n) != 0)
		return;
	memcpy(a->id, line + 7, n);
	a->id[n] = '\0';
}

/* why = prefix + ": " + an excerpt of the line. */
static void
why_line(char *why, size_t whylen, const char *prefix, const char *line,
    size_t len)
{
	char ex[WRK_EXCERPT_SIZE];

	wrk_excerpt(line, len, ex, sizeof(ex));
	snprintf(why, whylen, "handler wrote an invalid answer: %s: %s",
	    prefix, ex);
	wrk_text_fit(why, whylen);
}

/* The memory of an answer: absent or null is "unchanged". */
static int
answer_memory(json_t *j, struct wrk_answer *a, char *why, size_t whylen)
{
	json_t *mem = json_object_get(j, "memory");

	if (mem == NULL || json_is_null(mem))
		return 0;
	if (!json_is_object(mem)) {
		snprintf(why, whylen, "handler answered with a \"memory\" that "
		    "is not an object");
		return -1;
	}
	a->memory = json_incref(mem);
	return 0;
}

/* The usage of an answer (absent or null: none), checked later. */
static void
answer_usage(json_t *j, struct wrk_answer *a)
{
	json_t *u = json_object_get(j, "usage");

	if (u != NULL && !json_is_null(u))
		a->usage = json_incref(u);
}

/*
 * A line without "status" that has a "progress" and/or a "chunk": 2 with
 * what is of its type (a progress object, a chunk string); a value of
 * another type is left out and why says so.  0 when it is no such line.
 */
static int
answer_output(json_t *j, struct wrk_answer *a, char *why, size_t whylen)
{
	json_t *p = json_object_get(j, "progress");
	json_t *c = json_object_get(j, "chunk");

	if (json_object_get(j, "status") != NULL || (p == NULL && c == NULL))
		return 0;
	if (json_is_object(p))
		a->progress = json_incref(p);
	else if (p != NULL)
		snprintf(why, whylen, "\"progress\" is not an object");
	if (json_is_string(c))
		a->chunk = json_incref(c);
	else if (c != NULL)
		snprintf(why, whylen, "\"chunk\" is not a string");
	return 2;
}

/*
 *   {"id":"42","status":"ok","result":...,"memory":{...},"usage":{...}}
 *   {"id":"43","status":"error","error":"text" | any JSON value}
 *   {"id":"42","progress":{...},"chunk":"text"}     (output: no status)
 */
int
wrk_answer_line(const char *line, size_t len, struct wrk_answer *a,
    char *why, size_t whylen)
{
	json_t *j, *id, *er, *st;
	json_error_t jerr;
	const char *s;
	char *text;
	char ex[WRK_EXCERPT_SIZE], pre[WRK_EXCERPT_SIZE + 16];
	int rc = -1;

	answer_init(a);
	why[0] = '\0';
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' ||
	    line[len - 1] == '\t'))
		len--;
	if (len == 0)
		return 1;
	if (len > WRK_LINE_MAX) {
		guess_id(line, len, a);
		snprintf(why, whylen, "handler wrote an invalid answer: line "
		    "over %u bytes", WRK_LINE_MAX);
		return -1;
	}
	/* JSON_ALLOW_NUL: what the worker writes to a handler ("\u0000" in a
	 * payload's string) is taken back from it. */
	if ((j = json_loadb(line, len, JSON_ALLOW_NUL, &jerr)) == NULL) {
		guess_id(line, len, a);
		/* jansson's text may quote the input: made safe too. */
		wrk_excerpt(jerr.text, strnlen(jerr.text, sizeof(jerr.text)),
		    ex, sizeof(ex));
		snprintf(pre, sizeof(pre), "not JSON (%s)", ex);
		why_line(why, whylen, pre, line, len);
		return -1;
	}
	if (!json_is_object(j) || !json_is_string(id = json_object_get(j, "id"))) {
		guess_id(line, len, a);
		why_line(why, whylen, "not an object with a string \"id\"", line,
		    len);
		goto out;
	}
	s = json_string_value(id);
	if (proto_valid_id(s, json_string_length(id)) != 0) {
		why_line(why, whylen, "its \"id\" is not a task id", line, len);
		goto out;
	}
	memcpy(a->id, s, json_string_length(id) + 1);
	a->id_sure = true;
	if ((rc = answer_output(j, a, why, whylen)) == 2)
		goto out;
	rc = -1;
	st = json_object_get(j, "status");
	if (json_str_is(st, "ok")) {
		a->status = HIVE_STATUS_OK;
	} else if (json_str_is(st, "error")) {
		a->status = HIVE_STATUS_ERROR;
	} else {
		snprintf(why, whylen, "handler answered without \"status\": "
		    "\"ok\" or \"error\"");
		goto out;
	}
	if (answer_memory(j, a, why, whylen) == -1)
		goto out;
	answer_usage(j, a);
	if ((a->result = json_object_get(j, "result")) != NULL)
		json_incref(a->result);
	if (a->status == HIVE_STATUS_ERROR) {
		er = json_object_get(j, "error");
		if (json_is_string(er)) {
			text_copy(a->error, sizeof(a->error),
			    json_string_value(er), json_string_length(er));
		} else if (er != NULL && !json_is_null(er)) {
			/* Keep a structured error readable. */
			if ((text = json_dumps(er, JSON_COMPACT |
			    JSON_ENCODE_ANY)) != NULL) {
				text_copy(a->error, sizeof(a->error), text,
				    strlen(text));
				free(text);
			}
		}
		if (a->error[0] == '\0')
			snprintf(a->error, sizeof(a->error), "handler reported "
			    "an error without a text");
	}
	rc = 0;
out:
	if (rc == -1)
		wrk_answer_clear(a);
	json_decref(j);
	return rc;
}

/*
 *   a JSON object with "result" and/or "memory"   taken as such (and
 *                                                 its "usage")
 *   any other JSON value                          the result
 *   anything else (text)                          the result, as a string
 *   nothing                                       a null result
 */
int
wrk_answer_exec(const char *out, size_t len, struct wrk_answer *a,
    char *why, size_t whylen)
{
	json_t *j;
	json_error_t jerr;

	answer_init(a);
	why[0] = '\0';
	while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r' ||
	    out[len - 1] == ' '))
		len--;
	if (len == 0)
		return 0;
	if ((j = json_loadb(out, len, JSON_DECODE_ANY | JSON_ALLOW_NUL,
	    &jerr)) == NULL) {
		/* Plain text is a fine result for a CLI agent. */
		if ((a->result = json_stringn(out, len)) == NULL) {
			/* Not UTF-8: no JSON string can hold it. */
			snprintf(why, whylen, "handler output is neither JSON "
			    "nor UTF-8 text");
			return -1;
		}
		return 0;
	}
	if (json_is_object(j) && (json_object_get(j, "result") != NULL ||
	    json_object_get(j, "memory") != NULL)) {
		if (answer_memory(j, a, why, whylen) == -1) {
			json_decref(j);
			return -1;
		}
		answer_usage(j, a);
		if ((a->result = json_object_get(j, "result")) != NULL)
			json_incref(a->result);
		json_decref(j);
		return 0;
	}
	a->result = j;
	return 0;
}
