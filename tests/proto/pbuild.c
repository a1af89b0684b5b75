/*
 * pbuild.c - see pbuild.h.
 */
#include "pbuild.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

char *
pb_expand(const char *json)
{
	size_t cap = strlen(json) + 1, len = 0;
	char *out = malloc(cap);

	cr_assert_not_null(out);
	for (const char *p = json; *p != '\0'; ) {
		const char *end;
		size_t n = 0, need;
		int deep = 0;

		if (*p != '~' || (end = strchr(p + 1, '~')) == NULL) {
			out[len++] = *p++;
			continue;
		}
		if (p[1] == 'd') {
			deep = 1;
			n = strtoul(p + 2, NULL, 10);
		} else {
			n = strtoul(p + 1, NULL, 10);
		}
		need = deep ? 2 * n + 1 : n;
		cap += need;
		out = realloc(out, cap);
		cr_assert_not_null(out);
		if (deep) {
			memset(out + len, '[', n);
			out[len + n] = '0';
			memset(out + len + n + 1, ']', n);
		} else {
			memset(out + len, 'a', n);
		}
		len += need;
		p = end + 1;
	}
	out[len] = '\0';
	return out;
}

void
pb_json(msgpack_sbuffer *sb, const char *json)
{
	char *text = pb_expand(json);
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	msgpack_zone *z = msgpack_zone_new(4096);
	msgpack_packer pk;
	msgpack_object o;
	struct proto_err err = { 0 };

	cr_assert_not_null(j, "test JSON does not parse: %s: %.60s",
	    jerr.text, text);
	/* proto_json_to_obj refuses depth > HIVE_DEPTH_MAX: build deeper
	 * values by hand with pb_hex. */
	cr_assert_eq(proto_json_to_obj(j, z, &o, &err), 0,
	    "json_to_obj: %s", err.detail);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	cr_assert_eq(msgpack_pack_object(&pk, o), 0);
	msgpack_zone_free(z);
	json_decref(j);
	free(text);
}

void
pb_hex(msgpack_sbuffer *sb, const char *hex)
{
	for (const char *p = hex; *p != '\0'; ) {
		unsigned v;
		char b;

		if (*p == ' ' || *p == '\n') {
			p++;
			continue;
		}
		cr_assert(sscanf(p, "%2x", &v) == 1, "bad hex at %.8s", p);
		b = (char)v;
		msgpack_sbuffer_write(sb, &b, 1);
		p += 2;
	}
}

int
pb_decode(enum pb_kind kind, const char *buf, size_t len,
    struct proto_err *err)
{
	int rc = -1;

	switch (kind) {
	case PB_TASK: {
		struct hive_task m;

		rc = proto_decode_task(buf, len, &m, err);
		if (rc == 0)
			proto_task_clear(&m);
		break;
	}
	case PB_RESULT: {
		struct hive_result m;

		rc = proto_decode_result(buf, len, &m, err);
		if (rc == 0)
			proto_result_clear(&m);
		break;
	}
	case PB_EVENT: {
		struct hive_event m;

		rc = proto_decode_event(buf, len, &m, err);
		if (rc == 0)
			proto_event_clear(&m);
		break;
	}
	case PB_DEAD: {
		struct hive_dead m;

		rc = proto_decode_dead(buf, len, &m, err);
		if (rc == 0)
			proto_dead_clear(&m);
		break;
	}
	case PB_FRAME: {
		struct hive_frame m;

		rc = proto_decode_frame(buf, len, &m, err);
		if (rc == 0)
			proto_frame_clear(&m);
		break;
	}
	case PB_WORKFLOW: {
		struct hive_workflow m;

		rc = proto_decode_workflow(buf, len, &m, err);
		if (rc == 0)
			proto_workflow_clear(&m);
		break;
	}
	case PB_VALUE: {
		msgpack_unpacked up;

		rc = proto_decode_value(buf, len, &up, err);
		if (rc == 0)
			msgpack_unpacked_destroy(&up);
		break;
	}
	}
	return rc;
}

const char *
pb_kind_name(enum pb_kind kind)
{
	static const char *const names[] = { "task", "result", "event",
		"dead", "frame", "workflow", "value" };

	return names[kind];
}

void
pb_assert_str(struct hive_str s, const char *want, const char *what)
{
	cr_assert_eq(s.len, strlen(want), "%s: length %u, want %zu (\"%s\")",
	    what, s.len, strlen(want), want);
	cr_assert(memcmp(s.ptr, want, s.len) == 0, "%s: \"%.*s\" != \"%s\"",
	    what, (int)s.len, s.ptr, want);
}
