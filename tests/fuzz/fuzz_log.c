/*
 * fuzz_log.c - common/log.c's JSON line and field parser on any bytes.
 *
 * Invariants: the fields point into the message, within their bounds,
 * an instance is 1 to 9 digits; the JSON line is one line that jansson
 * parses, whose msg is the input itself when the input is UTF-8 (else
 * the same length or longer: U+FFFD for each bad byte); its agent and
 * task members are the parser's fields; the text line starts with the
 * priority and ends with its newline.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "log.h"

#define IN_MAX (64 * 1024)

static char out[6 * IN_MAX + 65536];

static void
check_field(const char *msg, size_t len, const char *f, size_t flen)
{
	if (f == NULL) {
		FZ_CHECK(flen == 0);
		return;
	}
	FZ_CHECK(f >= msg && f + flen <= msg + len && flen > 0 &&
	    flen <= 256);
}

/* The member k of j is the field (f, n), where both are UTF-8. */
static void
check_member(json_t *j, const char *k, const char *f, size_t n)
{
	json_t *v = json_object_get(j, k), *want;

	FZ_CHECK((f == NULL) == (v == NULL));
	if (f == NULL || (want = json_stringn(f, n)) == NULL)
		return;
	FZ_CHECK(json_equal(v, want));
	json_decref(want);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	struct log_fields f;
	json_error_t e;
	json_t *j, *in;
	size_t n;

	if (size > IN_MAX)
		return 0;
	log_parse_fields(msg, size, &f);
	check_field(msg, size, f.agent, f.agent_len);
	check_field(msg, size, f.instance, f.instance_len);
	check_field(msg, size, f.task, f.task_len);
	check_field(msg, size, f.trace, f.trace_len);
	FZ_CHECK(f.instance == NULL || (f.agent != NULL && f.instance_len <= 9));
	for (size_t i = 0; i < f.instance_len; i++)
		FZ_CHECK(f.instance[i] >= '0' && f.instance[i] <= '9');

	log_set_format(LOG_FORMAT_JSON);
	n = log_render(out, sizeof(out), (int)(size ? data[0] & 7 : 6), msg,
	    size);
	FZ_CHECK(n > 1 && out[n - 1] == '\n' && memchr(out, '\n', n) ==
	    out + n - 1 && out[n] == '\0');
	j = json_loadb(out, n, JSON_ALLOW_NUL, &e);
	if (j == NULL)
		fprintf(stderr, "%s: %s\n", e.text, out);
	FZ_CHECK(json_is_object(j));
	FZ_CHECK(json_is_string(json_object_get(j, "msg")));
	if ((in = json_stringn(msg, size)) != NULL) {
		FZ_CHECK(json_equal(in, json_object_get(j, "msg")));
		json_decref(in);
	} else {
		FZ_CHECK(json_string_length(json_object_get(j, "msg")) >= size);
	}
	check_member(j, "agent", f.agent, f.agent_len);
	check_member(j, "task", f.task, f.task_len);
	check_member(j, "trace", f.trace, f.trace_len);
	FZ_CHECK((f.instance == NULL) == (json_object_get(j, "instance") ==
	    NULL));
	json_decref(j);

	log_set_format(LOG_FORMAT_TEXT);
	n = log_render(out, sizeof(out), 6, msg, size);
	/* "<6>hive[PID]: " + the message + "\n" */
	FZ_CHECK(n == strcspn(out, "]") + 3 + size + 1 &&
	    strncmp(out, "<6>", 3) == 0 && out[n - 1] == '\n');
	return 0;
}
