/*
 * test_workflow.c - the workflow message and the parts of other messages
 * that workflows brought (task.parents, event.workflow): round trips, the
 * rules of the graph with the tasks each error names, the limits (1000
 * tasks, 100 dependencies), and encoders refusing what decoders refuse.
 * Malformed single fields are cases of test_codec.c's table.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "pbuild.h"
#include "proto_int.h"

/* The JSON text of a value, compact, for comparisons (free() it). */
static char *
jtext(const msgpack_object *o)
{
	struct proto_err err;
	json_t *j = proto_obj_to_json(o, &err);
	char *s;

	cr_assert_not_null(j, "%s", err.detail);
	s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	return s;
}

static void
assert_json(const msgpack_object *o, const char *want, const char *what)
{
	char *got = jtext(o);

	cr_assert_str_eq(got, want, "%s: %s, want %s", what, got, want);
	free(got);
}

/* Decode what sb holds as a workflow: -1 and *err, or 0 (cleared). */
static int
decode_wf(const msgpack_sbuffer *sb, struct proto_err *err)
{
	return pb_decode(PB_WORKFLOW, sb->data, sb->size, err);
}

/* ---- round trips ---- */

Test(workflow, round_trip_with_payloads_and_deps)
{
	msgpack_sbuffer sb, sb2, vb, vb2;
	msgpack_unpacked v1, v2;
	struct hive_wf_task t[4];
	struct hive_str lint_deps[] = { HIVE_STR("fetch") };
	struct hive_str review_deps[] = { HIVE_STR("lint"), HIVE_STR("test") };
	struct hive_str test_deps[] = { HIVE_STR("fetch") };
	struct hive_workflow w = { 0 }, d;
	struct proto_err err = { 0 };
	char why[256];

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&sb2);
	msgpack_sbuffer_init(&vb);
	msgpack_sbuffer_init(&vb2);
	/* values borrow from their buffers: one each */
	pb_json(&vb, "{\"repo\": \"hive\", \"n\": [1, -2, 2.5, true, null]}");
	cr_assert_eq(proto_decode_value(vb.data, vb.size, &v1, &err), 0);
	pb_json(&vb2, "[\"x\", {\"deep\": [[[]]]}]");
	cr_assert_eq(proto_decode_value(vb2.data, vb2.size, &v2, &err), 0);

	memset(t, 0, sizeof(t));
	t[0].id = HIVE_STR("fetch");
	t[0].capability = HIVE_STR("git");
	t[0].prio = 0;                  /* low: a value, not "the default" */
	t[0].payload = v1.data;
	t[0].max_attempts = 3;
	t[0].timeout_ms = 60000;
	t[1].id = HIVE_STR("lint");
	t[1].capability = HIVE_STR("lint");
	t[1].prio = HIVE_PRIO_DEFAULT;
	t[1].payload = v2.data;
	t[1].ndeps = 1;
	t[1].depends_on = lint_deps;
	t[2].id = HIVE_STR("test");
	t[2].capability = HIVE_STR("@tester");
	t[2].prio = 2;
	t[2].ndeps = 1;
	t[2].depends_on = test_deps;
	t[3].id = HIVE_STR("review");
	t[3].capability = HIVE_STR("@reviewer");
	t[3].prio = HIVE_PRIO_DEFAULT;
	t[3].ndeps = 2;
	t[3].depends_on = review_deps;
	t[3].reply_to = HIVE_STR("hive:reply:cli-7");
	w.id = HIVE_STR("wf-1");
	w.name = HIVE_STR("review");
	w.created_ms = 1700000000000ull;
	w.ntasks = 4;
	w.tasks = t;

	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), 0, "%s",
	    proto_strerror(&err, why, sizeof(why)));
	cr_assert_eq(proto_decode_workflow(sb.data, sb.size, &d, &err), 0,
	    "%s", proto_strerror(&err, why, sizeof(why)));
	cr_assert_eq(d.v, 1);
	pb_assert_str(d.id, "wf-1", "id");
	pb_assert_str(d.name, "review", "name");
	cr_assert_eq(d.created_ms, 1700000000000ull);
	cr_assert_eq(d.ntasks, 4);
	/* the arrays live in the message's zone, not in the input */
	cr_assert_not_null(d.tasks);
	cr_assert((const char *)d.tasks < sb.data ||
	    (const char *)d.tasks >= sb.data + sb.size);

	pb_assert_str(d.tasks[0].id, "fetch", "tasks[0].id");
	pb_assert_str(d.tasks[0].capability, "git", "tasks[0].capability");
	cr_assert_eq(d.tasks[0].prio, 0, "prio 0 survives the round trip");
	assert_json(&d.tasks[0].payload,
	    "{\"repo\":\"hive\",\"n\":[1,-2,2.5,true,null]}", "payload");
	cr_assert_eq(d.tasks[0].max_attempts, 3);
	cr_assert_eq(d.tasks[0].timeout_ms, 60000);
	cr_assert_eq(d.tasks[0].ndeps, 0);
	cr_assert_null(d.tasks[0].depends_on);
	cr_assert_eq(d.tasks[0].reply_to.len, 0);

	pb_assert_str(d.tasks[1].id, "lint", "tasks[1].id");
	cr_assert_eq(d.tasks[1].prio, 1);
	assert_json(&d.tasks[1].payload, "[\"x\",{\"deep\":[[[]]]}]",
	    "payload");
	cr_assert_eq(d.tasks[1].ndeps, 1);
	pb_assert_str(d.tasks[1].depends_on[0], "fetch", "depends_on[0]");

	pb_assert_str(d.tasks[2].capability, "@tester", "tasks[2].capability");
	cr_assert_eq(d.tasks[2].prio, 2);
	cr_assert_eq(d.tasks[2].payload.type, MSGPACK_OBJECT_NIL);

	pb_assert_str(d.tasks[3].capability, "@reviewer", "capability");
	cr_assert_eq(d.tasks[3].ndeps, 2);
	pb_assert_str(d.tasks[3].depends_on[0], "lint", "depends_on[0]");
	pb_assert_str(d.tasks[3].depends_on[1], "test", "depends_on[1]");
	pb_assert_str(d.tasks[3].reply_to, "hive:reply:cli-7", "reply_to");
	/* ids borrow from the input */
	cr_assert(d.tasks[3].depends_on[1].ptr >= sb.data &&
	    d.tasks[3].depends_on[1].ptr < sb.data + sb.size);

	cr_assert_eq(proto_encode_workflow(&sb2, &d, &err), 0);
	cr_assert_eq(sb2.size, sb.size);
	cr_assert(memcmp(sb.data, sb2.data, sb.size) == 0,
	    "re-encoding changed the bytes");
	proto_workflow_clear(&d);
	proto_workflow_clear(&d);
	msgpack_unpacked_destroy(&v1);
	msgpack_unpacked_destroy(&v2);
	msgpack_sbuffer_destroy(&vb);
	msgpack_sbuffer_destroy(&vb2);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&sb2);
}

Test(workflow, minimal_and_defaults)
{
	static const char json[] = "{\"v\": 1, \"id\": \"w\", \"tasks\": "
	    "[{\"id\": \"a\", \"capability\": \"c\"}]}";
	msgpack_sbuffer sb, sb2;
	struct hive_workflow d;
	struct proto_err err = { 0 };

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&sb2);
	pb_json(&sb, json);
	cr_assert_eq(proto_decode_workflow(sb.data, sb.size, &d, &err), 0,
	    "%s: %s", err.field, err.detail);
	cr_assert_eq(d.name.len, 0);
	cr_assert_eq(d.created_ms, 0);
	cr_assert_eq(d.ntasks, 1);
	cr_assert_eq(d.tasks[0].prio, HIVE_PRIO_DEFAULT);
	cr_assert_eq(d.tasks[0].payload.type, MSGPACK_OBJECT_NIL);
	cr_assert_eq(d.tasks[0].ndeps, 0);
	cr_assert_eq(d.tasks[0].max_attempts, 0);
	cr_assert_eq(d.tasks[0].timeout_ms, 0);
	cr_assert_eq(d.tasks[0].reply_to.len, 0);
	/* nothing but the required fields is written */
	cr_assert_eq(proto_encode_workflow(&sb2, &d, &err), 0);
	cr_assert_eq(sb2.size, sb.size);
	cr_assert(memcmp(sb.data, sb2.data, sb.size) == 0);
	proto_workflow_clear(&d);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&sb2);
}

/* ---- the graph ---- */

/* The JSON of a workflow whose tasks (all on capability "c") are given
 * as "id:dep,dep id:dep ..." ("a: b:a" is a, then b depending on a). */
static void
graph(msgpack_sbuffer *sb, const char *spec)
{
	char json[8192], *s = strdup(spec), *tok, *save = NULL;
	size_t len;
	int first = 1;

	len = (size_t)snprintf(json, sizeof(json),
	    "{\"v\": 1, \"id\": \"w\", \"tasks\": [");
	for (tok = strtok_r(s, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		char *colon = strchr(tok, ':'), *dep, *dsave = NULL;
		int dfirst = 1;

		cr_assert_not_null(colon, "spec \"%s\"", spec);
		*colon = '\0';
		len += (size_t)snprintf(json + len, sizeof(json) - len,
		    "%s{\"id\": \"%s\", \"capability\": \"c\", "
		    "\"depends_on\": [", first ? "" : ", ", tok);
		for (dep = strtok_r(colon + 1, ",", &dsave); dep != NULL;
		    dep = strtok_r(NULL, ",", &dsave)) {
			len += (size_t)snprintf(json + len, sizeof(json) - len,
			    "%s\"%s\"", dfirst ? "" : ", ", dep);
			dfirst = 0;
		}
		len += (size_t)snprintf(json + len, sizeof(json) - len, "]}");
		first = 0;
		cr_assert_lt(len, sizeof(json));
	}
	snprintf(json + len, sizeof(json) - len, "]}");
	free(s);
	pb_json(sb, json);
}

Test(workflow, graph_errors_name_the_tasks)
{
	static const struct {
		const char *spec;
		const char *detail;     /* NULL: valid */
	} cases[] = {
		{ "a:", NULL },
		{ "a: b:a c:a,b d:c,a", NULL },
		/* out of submission order is fine: only edges matter */
		{ "d:c c:b b:a a:", NULL },
		{ "a: b: a:", "task 'a' twice" },
		{ "a: b:a c:a c:b", "task 'c' twice" },
		{ "a: b:x", "task 'b' depends on unknown 'x'" },
		{ "a: b:a,x", "task 'b' depends on unknown 'x'" },
		{ "a:a", "task 'a' depends on itself" },
		{ "a: b:a,b", "task 'b' depends on itself" },
		{ "a: b:a,a", "task 'b' lists 'a' twice" },
		{ "a:b b:a", "cycle through 'a'" },
		{ "a: b:a,c c:b", "cycle through 'c'" },
		/* the first task left is only downstream of the cycle:
		 * the error still names one on it */
		{ "d:c a:c b:a c:b", "cycle through 'c'" },
		{ "x: a:x,c b:a c:b d:c", "cycle through 'b'" },
	};
	msgpack_sbuffer sb;

	msgpack_sbuffer_init(&sb);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proto_err err;
		int rc;

		msgpack_sbuffer_clear(&sb);
		graph(&sb, cases[i].spec);
		memset(&err, 0, sizeof(err));
		rc = decode_wf(&sb, &err);
		if (cases[i].detail == NULL) {
			cr_expect_eq(rc, 0, "\"%s\": %s %s", cases[i].spec,
			    err.field, err.detail);
			continue;
		}
		cr_expect_eq(rc, -1, "\"%s\" accepted", cases[i].spec);
		cr_expect_eq(err.code, PROTO_E_VALUE, "\"%s\": %s",
		    cases[i].spec, proto_errcode_name(err.code));
		cr_expect_str_eq(err.field, "tasks", "\"%s\"", cases[i].spec);
		cr_expect_str_eq(err.detail, cases[i].detail, "\"%s\"",
		    cases[i].spec);
	}
	msgpack_sbuffer_destroy(&sb);
}

/* Long ids are cut in the detail, never overflow it. */
Test(workflow, long_ids_in_errors)
{
	msgpack_sbuffer sb;
	struct proto_err err;
	char spec[600], a[129], b[129];

	memset(a, 'a', 128);
	a[128] = '\0';
	memset(b, 'b', 128);
	b[128] = '\0';
	snprintf(spec, sizeof(spec), "%s: %s:%s,x", a, b, a);
	msgpack_sbuffer_init(&sb);
	graph(&sb, spec);
	cr_assert_eq(decode_wf(&sb, &err), -1);
	cr_assert_str_eq(err.detail, "task 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' "
	    "depends on unknown 'x'");
	msgpack_sbuffer_destroy(&sb);
}

/* ---- limits ---- */

static void
pk_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/*
 * A workflow of n tasks "t0".."t<n-1>" on capability "c": task i depends
 * on the min(i, deps) tasks before it (t<i-1>, t<i-2>, ...), task at on
 * atdeps of them instead; with bad, the last entry of task at's list is
 * that instead; with cycle, t0 depends on the last task.
 */
struct big {
	unsigned n, deps, at, atdeps;
	const char *bad;
	int cycle;
};

static void
big_workflow(msgpack_sbuffer *sb, const struct big *b)
{
	msgpack_packer pk;
	char id[16];

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	pk_str(&pk, "v");
	msgpack_pack_uint32(&pk, 1);
	pk_str(&pk, "id");
	pk_str(&pk, "big");
	pk_str(&pk, "tasks");
	msgpack_pack_array(&pk, b->n);
	for (unsigned i = 0; i < b->n; i++) {
		unsigned k = i == b->at ? b->atdeps : i < b->deps ? i : b->deps;

		if (b->cycle && i == 0)
			k = 1;
		msgpack_pack_map(&pk, 3);
		pk_str(&pk, "id");
		snprintf(id, sizeof(id), "t%u", i);
		pk_str(&pk, id);
		pk_str(&pk, "capability");
		pk_str(&pk, "c");
		pk_str(&pk, "depends_on");
		msgpack_pack_array(&pk, k);
		for (unsigned j = 1; j <= k; j++) {
			if (b->cycle && i == 0)
				snprintf(id, sizeof(id), "t%u", b->n - 1);
			else
				snprintf(id, sizeof(id), "t%u", i - j);
			pk_str(&pk, i == b->at && j == k && b->bad ? b->bad : id);
		}
	}
}

static int
big_decode(const struct big *b, struct proto_err *err)
{
	msgpack_sbuffer sb;
	int rc;

	msgpack_sbuffer_init(&sb);
	big_workflow(&sb, b);
	memset(err, 0, sizeof(*err));
	rc = decode_wf(&sb, err);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

Test(workflow, limits_tasks_and_deps)
{
	struct proto_err err;
	char why[256];

	/* 1000 tasks, most with 100 dependencies: ~95000 edges */
	cr_assert_eq(big_decode(&(struct big){ .n = 1000, .deps = 100,
	    .at = ~0u }, &err), 0, "%s", proto_strerror(&err, why,
	    sizeof(why)));
	cr_assert_eq(big_decode(&(struct big){ .n = 1001, .at = ~0u }, &err),
	    -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	cr_assert_str_eq(err.field, "tasks");
	cr_assert_str_eq(err.detail, "1001 entries, not 1..1000");
	/* 100 dependencies ok, 101 not */
	cr_assert_eq(big_decode(&(struct big){ .n = 200, .at = 150,
	    .atdeps = 100 }, &err), 0, "%s", proto_strerror(&err, why,
	    sizeof(why)));
	cr_assert_eq(big_decode(&(struct big){ .n = 200, .at = 150,
	    .atdeps = 101 }, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	cr_assert_str_eq(err.field, "tasks[150].depends_on");
	cr_assert_str_eq(err.detail, "101 entries, not 0..100");
	/* the longest path an error names fits the field */
	cr_assert_eq(big_decode(&(struct big){ .n = 1000, .at = 999,
	    .atdeps = 100, .bad = "x y" }, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.field, "tasks[999].depends_on[99]");
	/* a cycle through all 1000 */
	cr_assert_eq(big_decode(&(struct big){ .n = 1000, .deps = 1,
	    .at = ~0u, .cycle = 1 }, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.field, "tasks");
	cr_assert(strncmp(err.detail, "cycle through 't", 16) == 0, "%s",
	    err.detail);
	/* an unknown dependency at the end of the largest graph */
	cr_assert_eq(big_decode(&(struct big){ .n = 1000, .deps = 100,
	    .at = 999, .atdeps = 100, .bad = "t1000" }, &err), -1);
	cr_assert_str_eq(err.detail, "task 't999' depends on unknown 't1000'");
}

/* {"v":1,"id":"w","tasks":[{"id":"a","capability":"c","payload": <depth
 * nested arrays around 0>}]} */
static void
deep_workflow(msgpack_sbuffer *sb, unsigned depth)
{
	pb_hex(sb, "83 a1 76 01 a2 69 64 a1 77 a5 74 61 73 6b 73 91 83 a2 69 64"
	    " a1 61 aa 63 61 70 61 62 69 6c 69 74 79 a1 63 a7 70 61 79 6c 6f"
	    " 61 64");
	for (unsigned i = 0; i < depth; i++)
		pb_hex(sb, "91");
	pb_hex(sb, "00");
}

/* A task's payload may nest as deep in a workflow as in a task. */
Test(workflow, payload_depth_as_in_a_task)
{
	msgpack_sbuffer sb;
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	deep_workflow(&sb, HIVE_DEPTH_MAX);
	cr_assert_eq(decode_wf(&sb, &err), 0, "depth %d: %s", HIVE_DEPTH_MAX,
	    err.detail);
	for (unsigned depth = HIVE_DEPTH_MAX + 1; depth < 10000; depth *= 7) {
		msgpack_sbuffer_clear(&sb);
		deep_workflow(&sb, depth);
		cr_assert_eq(decode_wf(&sb, &err), -1, "depth %u accepted",
		    depth);
		cr_assert_eq(err.code, PROTO_E_SIZE);
		cr_assert_str_eq(err.field, "tasks");
	}
	msgpack_sbuffer_destroy(&sb);
}

Test(workflow, every_truncation_refused)
{
	msgpack_sbuffer sb;
	struct proto_err err;

	msgpack_sbuffer_init(&sb);
	graph(&sb, "a: b:a c:a,b");
	for (size_t n = 0; n < sb.size; n++) {
		char *cut = malloc(n ? n : 1);

		memcpy(cut, sb.data, n);
		cr_assert_eq(pb_decode(PB_WORKFLOW, cut, n, &err), -1,
		    "prefix of %zu bytes accepted", n);
		cr_assert_eq(err.code, PROTO_E_MALFORMED);
		free(cut);
	}
	cr_assert_eq(decode_wf(&sb, &err), 0);
	msgpack_sbuffer_destroy(&sb);
}

Test(workflow, oversize_refused_before_parsing)
{
	size_t n = HIVE_MSG_MAX + 1;
	char *buf = calloc(1, n);
	struct proto_err err;

	cr_assert_eq(pb_decode(PB_WORKFLOW, buf, n, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TOOBIG);
	free(buf);
}

/* ---- the encoder validates like the decoder ---- */

Test(workflow, encoder_refuses_and_leaves_buffer_unchanged)
{
	msgpack_sbuffer sb;
	struct proto_err err;
	struct hive_wf_task t[2];
	struct hive_str deps[2] = { HIVE_STR("a"), HIVE_STR("a") };
	struct hive_workflow w = { 0 };

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_write(&sb, "keep", 4);
	memset(t, 0, sizeof(t));
	t[0].id = HIVE_STR("a");
	t[0].capability = HIVE_STR("c");
	t[1].id = HIVE_STR("b");
	t[1].capability = HIVE_STR("c");

	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_eq(err.code, PROTO_E_MISSING);
	cr_assert_str_eq(err.field, "id");
	w.id = HIVE_STR("w");
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_eq(err.code, PROTO_E_MISSING);
	cr_assert_str_eq(err.field, "tasks");
	w.ntasks = 2;
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE, "tasks NULL");
	cr_assert_str_eq(err.field, "tasks");
	w.tasks = t;
	w.ntasks = HIVE_WF_TASKS_MAX + 1;
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	w.ntasks = 2;
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), 0, "%s %s",
	    err.field, err.detail);
	sb.size = 4;

	t[1].capability = HIVE_STR("@");
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.field, "tasks[1].capability");
	t[1].capability = HIVE_STR("c");
	t[1].prio = 3;
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	cr_assert_str_eq(err.field, "tasks[1].prio");
	t[1].prio = 1;
	t[1].ndeps = 1;
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE, "depends_on NULL");
	cr_assert_str_eq(err.field, "tasks[1].depends_on");
	t[1].depends_on = deps;
	t[1].ndeps = HIVE_WF_DEPS_MAX + 1;
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	cr_assert_str_eq(err.field, "tasks[1].depends_on");
	t[1].ndeps = 2;
	deps[1] = (struct hive_str){ "x y", 3 };
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.field, "tasks[1].depends_on[1]");
	deps[1] = HIVE_STR("a");
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.field, "tasks");
	cr_assert_str_eq(err.detail, "task 'b' lists 'a' twice");
	t[1].ndeps = 1;
	t[0].ndeps = 1;
	deps[1] = HIVE_STR("b");
	t[0].depends_on = &deps[1];
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_str_eq(err.detail, "cycle through 'a'");
	t[0].ndeps = 0;
	t[1].id = HIVE_STR("a");
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), -1);
	cr_assert_str_eq(err.detail, "task 'a' twice");

	cr_assert_eq(sb.size, 4, "a refused workflow left bytes behind");
	cr_assert(memcmp(sb.data, "keep", 4) == 0);
	msgpack_sbuffer_destroy(&sb);
}

/* A zeroed task's prio is 0, written as such: prio 0 is a priority. */
Test(workflow, prio_zero_is_written)
{
	msgpack_sbuffer sb;
	struct proto_err err;
	struct hive_wf_task t = { 0 };
	struct hive_workflow w = { 0 }, d;

	msgpack_sbuffer_init(&sb);
	t.id = HIVE_STR("a");
	t.capability = HIVE_STR("c");
	w.id = HIVE_STR("w");
	w.ntasks = 1;
	w.tasks = &t;
	cr_assert_eq(proto_encode_workflow(&sb, &w, &err), 0);
	cr_assert_eq(proto_decode_workflow(sb.data, sb.size, &d, &err), 0);
	cr_assert_eq(d.tasks[0].prio, 0);
	proto_workflow_clear(&d);
	msgpack_sbuffer_destroy(&sb);
}

/* ---- task.parents ---- */

Test(workflow, parents_round_trip)
{
	msgpack_sbuffer sb, sb2, vb;
	msgpack_unpacked val;
	struct hive_task t = { 0 }, d;
	struct proto_err err = { 0 };
	char why[256];

	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_init(&sb2);
	msgpack_sbuffer_init(&vb);
	pb_json(&vb, "{\"fetch\": {\"files\": [\"a.c\", \"b.c\"], \"n\": 2}, "
	    "\"lint\": null, \"~128~\": [1.5, true]}");
	cr_assert_eq(proto_decode_value(vb.data, vb.size, &val, &err), 0);
	t.id = HIVE_STR("review");
	t.workflow = HIVE_STR("wf-1");
	t.created_ms = 1700000000000ull;
	t.parents = val.data;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0, "%s",
	    proto_strerror(&err, why, sizeof(why)));
	cr_assert_eq(proto_decode_task(sb.data, sb.size, &d, &err), 0, "%s",
	    proto_strerror(&err, why, sizeof(why)));
	cr_assert_eq(d.parents.type, MSGPACK_OBJECT_MAP);
	cr_assert_eq(d.parents.via.map.size, 3);
	{
		char *got = jtext(&d.parents), *want = jtext(&val.data);

		cr_assert_str_eq(got, want);
		free(got);
		free(want);
	}
	pb_assert_str(d.workflow, "wf-1", "workflow");
	cr_assert_eq(proto_encode_task(&sb2, &d, &err), 0);
	cr_assert_eq(sb2.size, sb.size);
	cr_assert(memcmp(sb.data, sb2.data, sb.size) == 0);
	proto_task_clear(&d);
	msgpack_unpacked_destroy(&val);
	msgpack_sbuffer_destroy(&vb);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&sb2);
}

Test(workflow, parents_refused_by_the_encoder)
{
	msgpack_sbuffer sb;
	struct proto_err err;
	struct hive_task t = { 0 };
	msgpack_object_kv kv[HIVE_WF_DEPS_MAX + 1];
	char ids[HIVE_WF_DEPS_MAX + 1][8];

	msgpack_sbuffer_init(&sb);
	t.id = HIVE_STR("t");
	for (int i = 0; i <= HIVE_WF_DEPS_MAX; i++) {
		snprintf(ids[i], sizeof(ids[i]), "p%d", i);
		kv[i].key.type = MSGPACK_OBJECT_STR;
		kv[i].key.via.str.ptr = ids[i];
		kv[i].key.via.str.size = (uint32_t)strlen(ids[i]);
		kv[i].val.type = MSGPACK_OBJECT_NIL;
	}
	t.parents.type = MSGPACK_OBJECT_MAP;
	t.parents.via.map.ptr = kv;
	t.parents.via.map.size = HIVE_WF_DEPS_MAX;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0, "%s", err.detail);
	msgpack_sbuffer_clear(&sb);
	t.parents.via.map.size = HIVE_WF_DEPS_MAX + 1;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_SIZE);
	cr_assert_str_eq(err.field, "parents");
	t.parents.via.map.size = 2;
	kv[1].key.via.str.ptr = "a b";
	kv[1].key.via.str.size = 3;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_VALUE);
	cr_assert_str_eq(err.field, "parents");
	kv[1].key.via.str.ptr = "p0";
	kv[1].key.via.str.size = 2;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_DUPLICATE);
	cr_assert_str_eq(err.detail, "key 'p0' appears twice");
	kv[1].key.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
	kv[1].key.via.u64 = 1;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TYPE);
	t.parents.type = MSGPACK_OBJECT_ARRAY;
	t.parents.via.array.size = 0;
	cr_assert_eq(proto_encode_task(&sb, &t, &err), -1);
	cr_assert_eq(err.code, PROTO_E_TYPE);
	cr_assert_str_eq(err.field, "parents");
	cr_assert_eq(sb.size, 0);
	msgpack_sbuffer_destroy(&sb);
}

Test(workflow, parents_duplicate_and_count_on_decode)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct proto_err err;
	char id[8];

	msgpack_sbuffer_init(&sb);
	for (unsigned n = HIVE_WF_DEPS_MAX; n <= HIVE_WF_DEPS_MAX + 1; n++) {
		msgpack_sbuffer_clear(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 3);
		pk_str(&pk, "v");
		msgpack_pack_uint32(&pk, 1);
		pk_str(&pk, "id");
		pk_str(&pk, "t");
		pk_str(&pk, "parents");
		msgpack_pack_map(&pk, n);
		for (unsigned i = 0; i < n; i++) {
			snprintf(id, sizeof(id), "p%u", i);
			pk_str(&pk, id);
			msgpack_pack_uint32(&pk, i);
		}
		if (n == HIVE_WF_DEPS_MAX) {
			cr_assert_eq(pb_decode(PB_TASK, sb.data, sb.size, &err),
			    0, "%s", err.detail);
		} else {
			cr_assert_eq(pb_decode(PB_TASK, sb.data, sb.size, &err),
			    -1);
			cr_assert_eq(err.code, PROTO_E_SIZE);
			cr_assert_str_eq(err.field, "parents");
		}
	}
	msgpack_sbuffer_destroy(&sb);
}

/* ---- docs ---- */

Test(workflow, field_docs)
{
	struct proto_field_doc rows[16];

	cr_assert_eq(proto_field_docs("workflow", rows, 16), 6);
	cr_assert_str_eq(rows[4].name, "tasks");
	cr_assert_str_eq(rows[4].type, "array");
	cr_assert(rows[4].required);
	cr_assert_eq(proto_field_docs("workflow task", rows, 16), 8);
	cr_assert_str_eq(rows[4].name, "depends_on");
	cr_assert_str_eq(rows[4].type, "array");
}
