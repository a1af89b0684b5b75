/*
 * test_protocol_doc.c - keeps docs/PROTOCOL.md true.
 *
 * The page is read from $HIVE_SOURCE_DIR/docs/PROTOCOL.md and checked
 * against the codec:
 *
 *   ```msgpack-hex KIND      every example decodes with KIND's decoder
 *   ```json KIND             (task, result, event, dead, frame, workflow)
 *                            and re-encodes to the same bytes; the JSON
 *                            block after it is what the bytes hold
 *   <!-- fields: NAME -->    the table after the marker lists exactly the
 *   | `field` | type | yes | fields of proto_field_docs(NAME), in order,
 *                            with their types and required flags
 *   printf '\x..' | ...      the redis-cli example's bytes are one of the
 *                            task examples
 *   ```python                the Python example runs against the private
 *                            Redis, with this test as the worker
 *
 * and the key names, group names and error codes it shows are the
 * codec's.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pbuild.h"
#include "testutil.h"

struct block {
	char info[64];
	char *text;
	int line;
};

struct page {
	char *text;
	struct block blocks[64];
	int nblocks;
};

/* Cut the page into its fenced blocks. */
static void
load(struct page *pg)
{
	char *p, *line;
	int lineno = 0;
	struct block *open = NULL;
	size_t len = 0;

	memset(pg, 0, sizeof(*pg));
	pg->text = tu_read_source("docs/PROTOCOL.md");
	p = strdup(pg->text);
	for (char *s = p; (line = strsep(&s, "\n")) != NULL; ) {
		lineno++;
		if (strncmp(line, "```", 3) == 0) {
			if (open == NULL) {
				cr_assert_lt(pg->nblocks, 64, "too many blocks");
				open = &pg->blocks[pg->nblocks++];
				snprintf(open->info, sizeof(open->info), "%s",
				    line + 3);
				open->text = calloc(1, strlen(pg->text) + 1);
				open->line = lineno;
				len = 0;
			} else {
				open = NULL;
			}
			continue;
		}
		if (open != NULL) {
			memcpy(open->text + len, line, strlen(line));
			len += strlen(line);
			open->text[len++] = '\n';
		}
	}
	cr_assert_null(open, "a fenced block is not closed");
	free(p);
}

static void
unload(struct page *pg)
{
	for (int i = 0; i < pg->nblocks; i++)
		free(pg->blocks[i].text);
	free(pg->text);
}

static enum pb_kind
kind_of(const char *name)
{
	static const char *const names[] = { "task", "result", "event", "dead",
		"frame", "workflow" };

	for (int k = 0; k <= PB_WORKFLOW; k++)
		if (strcmp(name, names[k]) == 0)
			return (enum pb_kind)k;
	cr_assert_fail("unknown example kind \"%s\"", name);
	return PB_VALUE;
}

/* Decode with the typed decoder and encode again: the page shows what
 * Hive itself writes.  Returns the frame type for frames, else 0. */
static int
round_trip(enum pb_kind kind, const msgpack_sbuffer *in, int line)
{
	msgpack_sbuffer out;
	struct proto_err err;
	char why[256];
	const char *body;
	int rc = -1, ftype = 0;

	msgpack_sbuffer_init(&out);
	switch (kind) {
	case PB_TASK: {
		struct hive_task m;

		cr_assert_eq(proto_decode_task(in->data, in->size, &m, &err), 0,
		    "line %d: %s", line, proto_strerror(&err, why, sizeof(why)));
		rc = proto_encode_task(&out, &m, &err);
		proto_task_clear(&m);
		break;
	}
	case PB_RESULT: {
		struct hive_result m;

		cr_assert_eq(proto_decode_result(in->data, in->size, &m, &err),
		    0, "line %d: %s", line,
		    proto_strerror(&err, why, sizeof(why)));
		rc = proto_encode_result(&out, &m, &err);
		proto_result_clear(&m);
		break;
	}
	case PB_EVENT: {
		struct hive_event m;

		cr_assert_eq(proto_decode_event(in->data, in->size, &m, &err), 0,
		    "line %d: %s", line, proto_strerror(&err, why, sizeof(why)));
		rc = proto_encode_event(&out, &m, &err);
		proto_event_clear(&m);
		break;
	}
	case PB_DEAD: {
		struct hive_dead m;

		cr_assert_eq(proto_decode_dead(in->data, in->size, &m, &err), 0,
		    "line %d: %s", line, proto_strerror(&err, why, sizeof(why)));
		rc = proto_encode_dead(&out, &m, &err);
		proto_dead_clear(&m);
		break;
	}
	case PB_FRAME: {
		struct hive_frame m;

		cr_assert_eq(proto_decode_frame(in->data, in->size, &m, &err), 0,
		    "line %d: %s", line, proto_strerror(&err, why, sizeof(why)));
		ftype = m.type;
		rc = proto_encode_frame(&out, &m, &err);
		proto_frame_clear(&m);
		break;
	}
	case PB_WORKFLOW: {
		struct hive_workflow m;

		cr_assert_eq(proto_decode_workflow(in->data, in->size, &m, &err),
		    0, "line %d: %s", line,
		    proto_strerror(&err, why, sizeof(why)));
		rc = proto_encode_workflow(&out, &m, &err);
		proto_workflow_clear(&m);
		break;
	}
	default:
		break;
	}
	cr_assert_eq(rc, 0, "line %d: the example does not encode again", line);
	body = out.data;
	if (kind == PB_FRAME)
		body += HIVE_FRAME_HDR;
	cr_assert_eq(out.size - (kind == PB_FRAME ? HIVE_FRAME_HDR : 0),
	    in->size, "line %d: Hive encodes this example in %zu bytes, the "
	    "page shows %zu", line, out.size, in->size);
	cr_assert(memcmp(body, in->data, in->size) == 0, "line %d: Hive "
	    "encodes this example differently", line);
	msgpack_sbuffer_destroy(&out);
	return ftype;
}

static void
check_json(const msgpack_sbuffer *in, const struct block *b)
{
	msgpack_unpacked up;
	struct proto_err err;
	json_error_t jerr;
	json_t *want, *got;
	char *gs;

	want = json_loads(b->text, 0, &jerr);
	cr_assert_not_null(want, "line %d: JSON block: %s (line %d)", b->line,
	    jerr.text, jerr.line);
	cr_assert_eq(proto_decode_value(in->data, in->size, &up, &err), 0);
	got = proto_obj_to_json(&up.data, &err);
	cr_assert_not_null(got, "line %d: %s", b->line, err.detail);
	gs = json_dumps(got, JSON_COMPACT);
	cr_assert(json_equal(want, got), "line %d: the JSON block is not what "
	    "the bytes before it hold: %s", b->line, gs);
	free(gs);
	json_decref(want);
	json_decref(got);
	msgpack_unpacked_destroy(&up);
}

Test(protocol_doc, examples_decode_and_match_their_json)
{
	struct page pg;
	int seen[PB_WORKFLOW + 1] = { 0 };
	int frames[HIVE_FRAME_OUTPUT + 1] = { 0 };

	load(&pg);
	for (int i = 0; i < pg.nblocks; i++) {
		struct block *b = &pg.blocks[i];
		msgpack_sbuffer sb;
		enum pb_kind kind;
		char view[80];
		int ft;

		if (strncmp(b->info, "msgpack-hex ", 12) != 0)
			continue;
		kind = kind_of(b->info + 12);
		seen[kind]++;
		msgpack_sbuffer_init(&sb);
		pb_hex(&sb, b->text);
		ft = round_trip(kind, &sb, b->line);
		if (kind == PB_FRAME)
			frames[ft]++;
		cr_assert_lt(i + 1, pg.nblocks, "line %d: no JSON view after "
		    "the example", b->line);
		snprintf(view, sizeof(view), "json %s", b->info + 12);
		cr_assert_str_eq(pg.blocks[i + 1].info, view, "line %d: the "
		    "block after an example is its JSON view, ```%s", b->line,
		    view);
		check_json(&sb, &pg.blocks[i + 1]);
		msgpack_sbuffer_destroy(&sb);
	}
	for (int k = 0; k <= PB_WORKFLOW; k++)
		cr_expect_gt(seen[k], 0, "no example of a %s",
		    pb_kind_name((enum pb_kind)k));
	for (int t = HIVE_FRAME_HELLO; t <= HIVE_FRAME_OUTPUT; t++)
		cr_expect_gt(frames[t], 0, "no example of frame type %d", t);
	unload(&pg);
}

/* The row's cells, trimmed: "| `id` | str | yes | ..." */
static int
cells(char *row, char **out, int max)
{
	int n = 0;
	char *c, *s = row;

	if (*s == '|')
		s++;
	while ((c = strsep(&s, "|")) != NULL && n < max) {
		char *e;

		while (*c == ' ')
			c++;
		e = c + strlen(c);
		while (e > c && (e[-1] == ' ' || e[-1] == '\n'))
			*--e = '\0';
		out[n++] = c;
	}
	return n;
}

Test(protocol_doc, field_tables_are_the_codec)
{
	static const char *const msgs[] = { "task", "result", "event", "dead",
		"workflow", "workflow task", "hello", "memory", "heartbeat",
		"control", "output" };
	struct page pg;

	load(&pg);
	for (size_t m = 0; m < sizeof(msgs) / sizeof(msgs[0]); m++) {
		struct proto_field_doc want[32];
		char marker[64], *at, *end, *table, *line, *s;
		int n, row = 0;

		n = proto_field_docs(msgs[m], want, 32);
		cr_assert_gt(n, 0, "the codec knows no message %s", msgs[m]);
		snprintf(marker, sizeof(marker), "<!-- fields: %s -->", msgs[m]);
		at = strstr(pg.text, marker);
		cr_assert_not_null(at, "no field table for %s (%s)", msgs[m],
		    marker);
		cr_assert_null(strstr(at + 1, marker), "two tables for %s",
		    msgs[m]);
		at = strchr(at, '\n') + 1;
		/* the table runs to the first line not starting with '|' */
		for (end = at; *end == '|'; end = strchr(end, '\n') + 1)
			;
		table = strndup(at, (size_t)(end - at));
		s = table;
		for (int l = 0; (line = strsep(&s, "\n")) != NULL; l++) {
			char *c[8], *name;
			int nc;

			if (l < 2 || *line == '\0')
				continue;       /* header and |---| */
			nc = cells(line, c, 8);
			cr_assert_geq(nc, 3, "%s table: short row \"%s\"",
			    msgs[m], line);
			name = c[0];
			cr_assert(name[0] == '`' && name[strlen(name) - 1] == '`',
			    "%s table: field %s not in backticks", msgs[m], name);
			name[strlen(name) - 1] = '\0';
			name++;
			cr_assert_lt(row, n, "%s table: field `%s` is not one the "
			    "codec knows", msgs[m], name);
			cr_expect_str_eq(name, want[row].name, "%s table row %d: "
			    "`%s`, the codec has `%s` there", msgs[m], row + 1,
			    name, want[row].name);
			cr_expect_str_eq(c[1], want[row].type, "%s.%s: type %s, "
			    "the codec says %s", msgs[m], name, c[1],
			    want[row].type);
			cr_expect_str_eq(c[2], want[row].required ? "yes" : "no",
			    "%s.%s: required \"%s\", the codec says %s", msgs[m],
			    name, c[2], want[row].required ? "yes" : "no");
			row++;
		}
		cr_expect_eq(row, n, "%s table: %d fields, the codec has %d "
		    "(missing: `%s`)", msgs[m], row, n,
		    row < n ? want[row].name : "");
		free(table);
	}
	cr_assert_eq(proto_field_docs("nonsense", NULL, 0), -1);
	unload(&pg);
}

/* The redis-cli example's printf bytes (bash: \xHH is one byte). */
Test(protocol_doc, redis_cli_example_is_a_task_example)
{
	struct page pg;
	int found = 0;

	load(&pg);
	for (int i = 0; i < pg.nblocks; i++) {
		char *p = pg.blocks[i].text, *q;

		if (strcmp(pg.blocks[i].info, "sh") != 0)
			continue;
		while ((p = strstr(p, "printf '")) != NULL) {
			msgpack_sbuffer sb;
			bool same = false;

			p += 8;
			q = strchr(p, '\'');
			cr_assert_not_null(q);
			msgpack_sbuffer_init(&sb);
			for (; p < q; p++) {
				char c = *p;
				unsigned v;

				if (c == '\\' && p[1] == 'x' &&
				    sscanf(p + 2, "%2x", &v) == 1) {
					c = (char)v;
					p += 3;
				} else {
					cr_assert(c != '\\' && c != '%', "printf "
					    "escapes other than \\xHH are not "
					    "checked here");
				}
				msgpack_sbuffer_write(&sb, &c, 1);
			}
			cr_assert_eq(pb_decode(PB_TASK, sb.data, sb.size, NULL),
			    0, "the printf bytes are no task");
			for (int j = 0; j < pg.nblocks; j++) {
				msgpack_sbuffer ex;

				if (strcmp(pg.blocks[j].info, "msgpack-hex task"))
					continue;
				msgpack_sbuffer_init(&ex);
				pb_hex(&ex, pg.blocks[j].text);
				same |= ex.size == sb.size &&
				    memcmp(ex.data, sb.data, sb.size) == 0;
				msgpack_sbuffer_destroy(&ex);
			}
			cr_expect(same, "the printf bytes are not one of the "
			    "task examples");
			msgpack_sbuffer_destroy(&sb);
			found++;
		}
	}
	cr_assert_gt(found, 0, "no printf ... | redis-cli example");
	unload(&pg);
}

Test(protocol_doc, names_and_codes_are_the_codec)
{
	struct page pg;
	char key[HIVE_KEY_MAX], want[HIVE_KEY_MAX + 8];
	int n;

	load(&pg);
	/* the key examples of the page, as the codec builds them */
	proto_key_queue(key, sizeof(key), "hive", "echo", 1);
	cr_expect_not_null(strstr(pg.text, "`hive:q:echo:1`"));
	cr_expect_str_eq(key, "hive:q:echo:1");
	proto_key_queue(key, sizeof(key), "hive", "code.review", 2);
	cr_expect_str_eq(key, "hive:q:code.review:2");
	cr_expect_not_null(strstr(pg.text, "`hive:q:code.review:2`"));
	proto_key_agent_queue(key, sizeof(key), "hive", "reviewer", 0);
	cr_expect_str_eq(key, "hive:q:@reviewer:0");
	cr_expect_not_null(strstr(pg.text, "`hive:q:@reviewer:0`"));
	proto_key_direct(key, sizeof(key), "hive", "reviewer", 2);
	cr_expect_str_eq(key, "hive:direct:reviewer/2");
	cr_expect_not_null(strstr(pg.text, "`hive:direct:reviewer/2`"));
	proto_consumer_name(key, sizeof(key), "reviewer", 2, "node-1");
	cr_expect_not_null(strstr(pg.text, "`reviewer/2@node-1`"));
	static const char *const named[] = { "broadcast", "results", "events",
		"dead", "workflows" };
	for (int i = 0; i < 5; i++) {
		cr_assert_gt(proto_key_named(key, sizeof(key), "hive", named[i]),
		    0);
		snprintf(want, sizeof(want), "`%s`", key);
		cr_expect_not_null(strstr(pg.text, want), "%s not on the page",
		    want);
	}
	cr_expect_not_null(strstr(pg.text, "`" HIVE_GROUP_WORKERS "`"));
	cr_expect_not_null(strstr(pg.text, "`" HIVE_GROUP_RECORDER "`"));
	cr_expect_not_null(strstr(pg.text, "`" HIVE_GROUP_COORD "`"));
	cr_expect_not_null(strstr(pg.text, "`" HIVE_REPLY_PREFIX));
	/* every code (the decoder's and the outcomes': the "code" of dead
	 * letters and failed results) in the Errors tables, and no other */
	for (int c = HIVE_CODE_MALFORMED; c <= HIVE_CODE_LAST; c++) {
		snprintf(want, sizeof(want), "\n| `%s` |",
		    proto_code_name((enum hive_code)c));
		cr_expect_not_null(strstr(strstr(pg.text, "## Errors"), want),
		    "code %s not in the Errors section", want + 1);
	}
	n = 0;
	for (const char *p = strstr(pg.text, "## Errors"); p != NULL &&
	    (p = strstr(p, "\n| `")) != NULL && p < strstr(pg.text,
	    "## Frames"); p++)
		n++;
	cr_expect_eq(n, HIVE_CODE_LAST, "the Errors tables have %d codes, "
	    "the codec %d", n, HIVE_CODE_LAST);
	unload(&pg);
}

/*
 * The Python example, run: the page's ```python block against the private
 * Redis (host and port put in, and the queue under this test's own
 * prefix), while this test plays the worker: it reads the task the
 * example submits, checks it with the decoder, and answers on its
 * reply_to.  The example must print the result and delete its reply
 * stream.
 */
Test(protocol_doc, python_example_runs)
{
	static const char *const py = "/usr/bin/python3";
	const char *host = getenv("HIVE_TEST_REDIS_HOST");
	const char *port = getenv("HIVE_TEST_REDIS_PORT");
	const char *tmpdir = getenv("HIVE_TEST_TMP");
	struct page pg;
	char prefix[64], qkey[128], path[256], cmd[320], out[256];
	char *code = NULL, *at;
	size_t outlen = 0;
	redisContext *c;
	redisReply *r, *m;
	struct hive_task t;
	struct hive_result res;
	struct proto_err err;
	msgpack_sbuffer sb;
	int fds[2], status;
	pid_t pid;
	FILE *f;
	ssize_t n;

	if (access(py, X_OK) != 0)
		cr_skip_test("%s is not installed (scripts/setup installs it)",
		    py);
	snprintf(cmd, sizeof(cmd), "%s -c 'import msgpack, redis' 2>/dev/null",
	    py);
	if (system(cmd) != 0)
		cr_skip_test("python3-msgpack or python3-redis is missing "
		    "(scripts/setup installs them)");
	c = tu_redis_connect();
	load(&pg);
	for (int i = 0; i < pg.nblocks; i++)
		if (strcmp(pg.blocks[i].info, "python") == 0)
			code = pg.blocks[i].text;
	cr_assert_not_null(code, "no ```python block on the page");

	/* put in where our Redis is and a queue no other test uses */
	tu_unique(prefix, sizeof(prefix), "pydoc");
	snprintf(path, sizeof(path), "%s/%s.py", tmpdir && *tmpdir ? tmpdir :
	    "/tmp", prefix);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	at = strstr(code, "redis.Redis(host=\"localhost\", port=6379)");
	cr_assert_not_null(at, "the example no longer connects as expected");
	fprintf(f, "%.*sredis.Redis(host=\"%s\", port=%s)", (int)(at - code),
	    code, host, port);
	code = at + strlen("redis.Redis(host=\"localhost\", port=6379)");
	at = strstr(code, "f\"hive:q:{capability}:{prio}\"");
	cr_assert_not_null(at, "the example no longer names the queue as "
	    "expected");
	fprintf(f, "%.*sf\"%s:q:{capability}:{prio}\"%s", (int)(at - code),
	    code, prefix, at + strlen("f\"hive:q:{capability}:{prio}\""));
	fclose(f);

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(py, "python3", path, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);

	/* the worker's part */
	snprintf(qkey, sizeof(qkey), "%s:q:echo:1", prefix);
	r = redisCommand(c, "XREAD COUNT 1 BLOCK 20000 STREAMS %s 0", qkey);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		cr_assert_fail("the example put no task on %s", qkey);
	}
	m = r->element[0]->element[1]->element[0]->element[1];
	cr_assert_eq(m->elements, 2, "an entry has exactly one field");
	cr_assert_str_eq(m->element[0]->str, "m");
	cr_assert_eq(proto_decode_task(m->element[1]->str, m->element[1]->len,
	    &t, &err), 0, "the example's task: %s %s", err.field, err.detail);
	cr_assert(t.id.len > 4 && memcmp(t.id.ptr, "job-", 4) == 0);
	cr_assert_eq(t.payload.type, MSGPACK_OBJECT_MAP);
	cr_assert_gt(t.created_ms, 1700000000000ull);
	cr_assert(t.reply_to.len > strlen(HIVE_REPLY_PREFIX));

	memset(&res, 0, sizeof(res));
	res.id = t.id;
	res.agent = HIVE_STR("echo/1");
	res.host = HIVE_STR("test");
	res.status = HIVE_STATUS_OK;
	res.result = t.payload;
	msgpack_sbuffer_init(&sb);
	cr_assert_eq(proto_encode_result(&sb, &res, &err), 0);
	freeReplyObject(redisCommand(c, "XADD %b * m %b", t.reply_to.ptr,
	    (size_t)t.reply_to.len, sb.data, sb.size));

	while ((n = read(fds[0], out + outlen, sizeof(out) - 1 - outlen)) > 0)
		outlen += (size_t)n;
	out[outlen] = '\0';
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "the example failed (status 0x%x)", status);
	cr_assert_str_eq(out, "{'text': 'hello'}\n");
	m = redisCommand(c, "EXISTS %b", t.reply_to.ptr, (size_t)t.reply_to.len);
	cr_assert_eq(m->integer, 0, "the example left its reply stream");
	freeReplyObject(m);

	freeReplyObject(r);
	freeReplyObject(redisCommand(c, "DEL %s", qkey));
	proto_task_clear(&t);
	msgpack_sbuffer_destroy(&sb);
	redisFree(c);
	unlink(path);
	unload(&pg);
}
