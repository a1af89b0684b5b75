/*
 * test_events.c - docs/PROTOCOL.md's event kinds against what hived and
 * its workers write to <prefix>:events.
 *
 * One hived whose agents do each thing the page's kinds table names: a
 * real worker (counter.py) runs a task that completes and one that times
 * out, is killed, put to sleep and woken; a fake worker crashes until
 * the restart-rate limit quarantines it; another exits 0 and stays down.
 * Then every kind of the table is in the stream and every kind in the
 * stream is in the table.  The workflow.* kinds are the coordinator's,
 * which needs PostgreSQL: tests/supervisor/test_workflow.c reads those
 * from the stream.
 *
 * Waits are for log lines, results and stream entries (XREAD BLOCK);
 * the timeouts are failure guards.
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 20000

TestSuite(events, .fini = hp_cleanup, .timeout = 120);

/* The kinds of the page's table after "<!-- kinds: event -->". */
static int
page_kinds(char kinds[][HIVE_KIND_MAX + 1], int max)
{
	char *page = tu_read_source("docs/PROTOCOL.md");
	char *p = strstr(page, "<!-- kinds: event -->");
	int n = 0;

	cr_assert_not_null(p, "no kinds table on the page");
	p = strchr(p, '\n') + 1;
	for (int row = 0; *p == '|'; row++, p = strchr(p, '\n') + 1) {
		char *q;

		if (row < 2)
			continue;        /* header and |---| */
		cr_assert(strncmp(p, "| `", 3) == 0, "row %d of the kinds table",
		    row);
		q = strchr(p + 3, '`');
		cr_assert(q != NULL && q - (p + 3) <= HIVE_KIND_MAX && n < max);
		snprintf(kinds[n++], HIVE_KIND_MAX + 1, "%.*s", (int)(q - p - 3),
		    p + 3);
	}
	free(page);
	return n;
}

static void
submit(redisContext *c, const char *prefix, const char *id,
    const char *payload_json, unsigned timeout_ms)
{
	struct hive_task t;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	json_t *j = json_loads(payload_json, 0, NULL);
	char key[HIVE_KEY_MAX];

	cr_assert(j != NULL);
	msgpack_zone_init(&z, 1024);
	msgpack_sbuffer_init(&sb);
	memset(&t, 0, sizeof(t));
	t.id = HIVE_STR(id);
	t.timeout_ms = timeout_ms;
	cr_assert_eq(proto_json_to_obj(j, &z, &t.payload, &err), 0);
	cr_assert_eq(proto_encode_task(&sb, &t, &err), 0);
	cr_assert(proto_key_direct(key, sizeof(key), prefix, "e", 1) > 0);
	tu_xadd(c, key, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
	json_decref(j);
}

/* The next result on <prefix>:results after *last: its status. */
static int
next_status(struct hp *h, redisContext *c, char *last, size_t lastlen,
    const char *id)
{
	char key[HIVE_KEY_MAX];
	long long end = tu_now_ms() + T_LONG;

	cr_assert(proto_key_named(key, sizeof(key), h->prefix, "results") > 0);
	while (tu_now_ms() < end) {
		redisReply *r = redisCommand(c,
		    "XREAD COUNT 1 BLOCK 300 STREAMS %s %s", key, last);
		struct hive_result res;
		struct proto_err err;
		redisReply *e;
		int st;

		hp_pump(h, 0);
		cr_assert(r != NULL);
		if (r->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			continue;
		}
		e = r->element[0]->element[1]->element[0];
		snprintf(last, lastlen, "%s", e->element[0]->str);
		cr_assert_eq(proto_decode_result(e->element[1]->element[1]->str,
		    e->element[1]->element[1]->len, &res, &err), 0);
		cr_assert(res.id.len == strlen(id) &&
		    memcmp(res.id.ptr, id, res.id.len) == 0);
		st = res.status;
		proto_result_clear(&res);
		freeReplyObject(r);
		return st;
	}
	cr_assert_fail("no result for %s", id);
	return -1;
}

/* Wait for "agent=LABEL pid=P ... state=STATE"; returns P. */
static pid_t
wait_state(struct hp *h, size_t *from, const char *label, const char *state)
{
	char a[64], s[64];

	snprintf(a, sizeof(a), "agent=%s pid=", label);
	snprintf(s, sizeof(s), " state=%s", state);
	return (pid_t)hp_field(hp_wait(h, from, T_LONG, a, s, NULL), "pid");
}

/* Agent sections: e (limit 1 restart) and, if with_z, z. */
static void
conf(struct hp *h, bool with_z)
{
	const char *src = getenv("HIVE_SOURCE_DIR");
	char agents[1024];

	snprintf(agents, sizeof(agents),
	    "[agent \"e\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n"
	    "heartbeat_deadline = 10s\n"
	    "restart_limit = 1\n"
	    "%s%s%s",
	    src ? src : ".", with_z ? "[agent \"z\"]\n"
	    "command = /usr/bin/python3 " : "", with_z ? (src ? src : ".") : "",
	    with_z ? "/tests/supervisor/counter.py\n" : "");
	hp_write_conf(h, tu_build_path("worker/hive-worker"),
	    "task_events = yes\n", agents);
}

Test(events, every_documented_kind_is_written)
{
	struct hp *h = hp_new("events");
	char kinds[32][HIVE_KIND_MAX + 1], last[64] = "0";
	char evkey[HIVE_KEY_MAX], elast[64] = "0";
	bool seen[32] = { false };
	int n = page_kinds(kinds, 32), missing, st;
	redisContext *c = tu_redis_connect();
	size_t from = 0, zfrom = 0, hfrom = 0;
	pid_t pid, hpid;

	cr_assert_gt(n, 0);
	conf(h, true);
	hp_start(h);
	hpid = (pid_t)hp_field(hp_wait(h, &hfrom, T_LONG, "agent=z/1",
	    "handler started", NULL), "pid");
	wait_state(h, &zfrom, "z/1", "ready");
	pid = wait_state(h, &from, "e/1", "ready");

	/* z's handler dies unasked: agent.handler_failed (z, not e: its
	 * limit of one restart is for the crashes below) */
	cr_assert_eq(kill(hpid, SIGKILL), 0);
	hp_wait(h, &hfrom, T_LONG, "agent=z/1", "handler failed", NULL);

	/* task.started, task.completed; task.started, task.failed */
	submit(c, h->prefix, "ok-1", "{}", 0);
	cr_assert_eq(next_status(h, c, last, sizeof(last), "ok-1"),
	    HIVE_STATUS_OK);
	submit(c, h->prefix, "slow-1", "{\"sleep_ms\": 30000}", 200);
	cr_assert_eq(next_status(h, c, last, sizeof(last), "slow-1"),
	    HIVE_STATUS_ERROR);
	/* agent.stopping, agent.sleeping; woken: agent.starting */
	cr_assert_eq(hp_post(h, "/agents/e/sleep"), 200);
	hp_wait(h, &from, T_LONG, "agent=e/1", "state=sleeping", NULL);
	cr_assert_eq(hp_post(h, "/agents/e/wake"), 200);
	pid = wait_state(h, &from, "e/1", "ready");
	/* a reload removes z: agent.stopped */
	conf(h, false);
	hp_signal(h, SIGHUP);
	hp_wait(h, &zfrom, T_LONG, "agent=z/1", "state=stopped", NULL);
	/* agent.crashed, agent.restarted, agent.ready; the second crash
	 * is over the limit of one restart: agent.failed */
	kill(pid, SIGKILL);
	wait_state(h, &from, "e/1", "starting");
	pid = wait_state(h, &from, "e/1", "ready");
	kill(pid, SIGKILL);
	hp_wait(h, &from, T_LONG, "agent=e/1", "state=failed", NULL);

	/* Read the stream until every kind of the table came (hived's
	 * events are sent as the log lines are written, not before). */
	cr_assert(proto_key_named(evkey, sizeof(evkey), h->prefix, "events") > 0);
	for (long long end = tu_now_ms() + T_LONG;;) {
		redisReply *r = redisCommand(c,
		    "XREAD COUNT 100 BLOCK 300 STREAMS %s %s", evkey, elast);

		hp_pump(h, 0);
		cr_assert(r != NULL);
		if (r->type == REDIS_REPLY_ARRAY) {
			redisReply *ents = r->element[0]->element[1];

			for (size_t i = 0; i < ents->elements; i++) {
				redisReply *e = ents->element[i];
				redisReply *m = e->element[1]->element[1];
				struct hive_event ev;
				struct proto_err err;
				int k;

				snprintf(elast, sizeof(elast), "%s",
				    e->element[0]->str);
				cr_assert_eq(proto_decode_event(m->str, m->len,
				    &ev, &err), 0);
				for (k = 0; k < n; k++)
					if (strlen(kinds[k]) == ev.kind.len &&
					    memcmp(kinds[k], ev.kind.ptr,
					    ev.kind.len) == 0)
						break;
				cr_assert_lt(k, n, "kind \"%.*s\" is not on the "
				    "page", (int)ev.kind.len, ev.kind.ptr);
				seen[k] = true;
				proto_event_clear(&ev);
			}
		}
		freeReplyObject(r);
		missing = -1;
		for (int k = 0; k < n && missing < 0; k++)
			if (!seen[k] && strncmp(kinds[k], "workflow.", 9) != 0)
				missing = k;
		if (missing < 0)
			break;
		cr_assert_lt(tu_now_ms(), end, "no event \"%s\" in %s",
		    kinds[missing], evkey);
	}
	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x",
	    st);
	redisFree(c);
}
