/*
 * test_tstats.c - record/tstats.c: what the recorder counts of the
 * entries it records, once each, when their batch is done.  A recorder
 * struct with four streams stands in for the loop; no services.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "rec.h"

static struct sup_recorder rec;
static struct sup_tstats *ts;
static char *keys[] = { "p:q:work:1", "p:results", "p:events", "p:dead",
    "p:direct:echo/3", "p:q:@echo:2" };

enum { S_Q, S_RES, S_EV, S_DEAD, S_DIRECT, S_AGENTQ };

static void
setup(void)
{
	memset(&rec, 0, sizeof(rec));
	cr_assert_not_null(ts = sup_tstats_new());
	rec.tstats = ts;
	rec.prefix = "p";
	for (int i = 0; i < 6; i++)
		rec.streams[i].key = keys[i];
	rec.nstreams = 6;
	rec.fill = &rec.tx[0];
}

static void
teardown(void)
{
	rec_txn_free(&rec.tx[0]);
	sup_tstats_free(ts);
}

TestSuite(tstats, .init = setup, .fini = teardown);

static struct rec_stat *
push(int si, const char *entry, enum rec_sk kind, const char *task,
    uint32_t attempt, const char *agent)
{
	struct rec_stat *st = rec_stat_push(&rec, si, entry, kind);

	cr_assert_not_null(st);
	st->task = task ? rec_id_hash(task) : 0;
	st->attempt = attempt;
	snprintf(st->agent, sizeof(st->agent), "%s", agent ? agent : "");
	if (kind == REC_SK_QUEUED)
		rec_key_cap(rec.prefix, keys[si], strlen(keys[si]), st->cap,
		    sizeof(st->cap));
	return st;
}

static const struct sup_tstats_cap *
cap(const char *name)
{
	for (unsigned i = 0; i < ts->ncaps; i++)
		if (strcmp(ts->caps[i].name, name) == 0)
			return &ts->caps[i];
	cr_assert_fail("no capability \"%s\"", name);
	return NULL;
}

static const struct sup_tstats_pair *
pair(const char *c, const char *agent)
{
	for (unsigned i = 0; i < ts->npairs; i++)
		if (strcmp(ts->caps[ts->pairs[i].cap].name, c) == 0 &&
		    strcmp(ts->pairs[i].agent, agent) == 0)
			return &ts->pairs[i];
	cr_assert_fail("no pair %s/%s", c, agent);
	return NULL;
}

Test(tstats, key_capability)
{
	char c[HIVE_NAME_MAX + 2];

	rec_key_cap("p", "p:q:work:1", 10, c, sizeof(c));
	cr_assert_str_eq(c, "work");
	rec_key_cap("p", "p:q:@echo:2", 11, c, sizeof(c));
	cr_assert_str_eq(c, "@echo");
	rec_key_cap("p", "p:direct:echo/3", 15, c, sizeof(c));
	cr_assert_str_eq(c, "@echo");
	rec_key_cap("p", "p:q:a:b:c:0", 11, c, sizeof(c));
	cr_assert_str_eq(c, "a:b:c");
	rec_key_cap("p", "p:workflows", 11, c, sizeof(c));
	cr_assert_str_eq(c, "");
	rec_key_cap("p", "other:q:work:1", 14, c, sizeof(c));
	cr_assert_str_eq(c, "");
	rec_key_cap("p", "p:q:", 4, c, sizeof(c));
	cr_assert_str_eq(c, "");
	rec_key_cap("p", "p:q:nocolon", 11, c, sizeof(c));
	cr_assert_str_eq(c, "");
	rec_key_cap("p", "p:direct:nouslash", 17, c, sizeof(c));
	cr_assert_str_eq(c, "");
}

/* Queued, then a result: submitted, started, completed, the two times. */
Test(tstats, a_task_flows)
{
	struct rec_stat *st;

	push(S_Q, "1000-0", REC_SK_QUEUED, "t1", 1, NULL)->t0 = 1000;
	st = push(S_RES, "1500-0", REC_SK_OK, "t1", 1, "echo");
	st->t0 = 1250;
	st->t1 = 1500;
	/* counted only once the batch is done */
	cr_assert_eq(ts->ncaps, 0);
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(rec.fill->nstats, 0);
	cr_assert_eq(cap("work")->submitted, 1);
	cr_assert_eq(pair("work", "echo")->started, 1);
	cr_assert_eq(pair("work", "echo")->completed, 1);
	cr_assert_eq(pair("work", "echo")->failed, 0);
	cr_assert_eq(cap("work")->wait.count, 1);
	cr_assert_float_eq(cap("work")->wait.sum, 0.25, 1e-9);
	cr_assert_eq(cap("work")->wait.bucket[5], 1);   /* <= .25 */
	cr_assert_eq(cap("work")->run.count, 1);
	cr_assert_float_eq(cap("work")->run.sum, 0.25, 1e-9);
	cr_assert_eq(ts->counted, 2);
}

/* One read gives the results stream before the queues: a task that ran
 * at once has its result ahead of its queue entry, and still its
 * capability. */
Test(tstats, result_ahead_of_queue_entry)
{
	push(S_RES, "1500-0", REC_SK_OK, "t1", 1, "echo")->t0 = 1200;
	push(S_Q, "1000-0", REC_SK_QUEUED, "t1", 1, NULL)->t0 = 1000;
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(pair("work", "echo")->completed, 1);
	cr_assert_eq(cap("work")->wait.count, 1);
	cr_assert_eq(ts->ncaps, 1);
	cr_assert_eq(sup_tstats_tasks(ts), 0);
}

/* The same entries again (read again after a reconnect): no change. */
Test(tstats, an_entry_counts_once)
{
	for (int round = 0; round < 2; round++) {
		push(S_Q, "1000-0", REC_SK_QUEUED, "t1", 1, NULL)->t0 = 1000;
		push(S_RES, "1500-0", REC_SK_ERROR, "t1", 1, "echo")->t1 = 1500;
		push(S_DEAD, "1600-0", REC_SK_DEAD, "t2", 3, "echo");
		rec_stats_apply(&rec, rec.fill);
	}
	cr_assert_eq(cap("work")->submitted, 1);
	cr_assert_eq(pair("work", "echo")->failed, 1);
	cr_assert_eq(pair("", "echo")->dead, 1);
	cr_assert_eq(ts->counted, 3);
	/* the same entry id on another stream is another entry */
	push(S_DIRECT, "1000-0", REC_SK_QUEUED, "t3", 1, NULL);
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(cap("@echo")->submitted, 1);
}

/* task.started then the result of that attempt: started once; a second
 * attempt (requeued) starts again; only attempt 1 is submitted. */
Test(tstats, started_once_per_attempt)
{
	push(S_Q, "1000-0", REC_SK_QUEUED, "t1", 1, NULL)->t0 = 1000;
	push(S_EV, "1100-0", REC_SK_STARTED, "t1", 1, "echo")->t0 = 1100;
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(pair("work", "echo")->started, 1);
	cr_assert_eq(cap("work")->wait.count, 1);
	push(S_RES, "1200-0", REC_SK_ERROR, "t1", 1, "echo")->t0 = 1100;
	push(S_Q, "1300-0", REC_SK_QUEUED, "t1", 2, NULL)->t0 = 1300;
	push(S_RES, "1400-0", REC_SK_OK, "t1", 2, "echo")->t0 = 1350;
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(cap("work")->submitted, 1);
	cr_assert_eq(pair("work", "echo")->started, 2);
	cr_assert_eq(pair("work", "echo")->failed, 1);
	cr_assert_eq(pair("work", "echo")->completed, 1);
	cr_assert_eq(cap("work")->wait.count, 2);
	cr_assert_float_eq(cap("work")->wait.sum, 0.15, 1e-9);
}

/* A result whose queue entry was never seen counts under "". */
Test(tstats, unknown_queue)
{
	push(S_RES, "1-0", REC_SK_OK, "lost", 1, "echo")->t0 = 0;
	push(S_DEAD, "2-0", REC_SK_DEAD, "t9", 1, NULL);
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(pair("", "echo")->completed, 1);
	cr_assert_eq(pair("", "echo")->started, 1);
	cr_assert_eq(cap("")->dead, 1);
	cr_assert_eq(cap("")->run.count, 0);     /* no start time */
}

/* A dead letter names its queue; one of a queued task without it gets
 * the task's. */
Test(tstats, dead_capability)
{
	struct rec_stat *st = push(S_DEAD, "1-0", REC_SK_DEAD, "t1", 3, "echo");

	rec_key_cap("p", "p:q:work:0", 10, st->cap, sizeof(st->cap));
	push(S_AGENTQ, "2-0", REC_SK_QUEUED, "t2", 1, NULL);
	push(S_DEAD, "3-0", REC_SK_DEAD, "t2", 1, NULL);
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(pair("work", "echo")->dead, 1);
	cr_assert_eq(cap("@echo")->dead, 1);
}

/* Label sets are bounded: the counts beyond are dropped, and said. */
Test(tstats, bounded)
{
	char c[32];

	for (int i = 0; i < SUP_TSTATS_LABELS + 50; i++) {
		struct rec_stat *st;
		snprintf(c, sizeof(c), "%d-0", i + 1);
		st = push(S_Q, c, REC_SK_QUEUED, c, 1, NULL);
		snprintf(st->cap, sizeof(st->cap), "cap%d", i);
		rec_stats_apply(&rec, rec.fill);
	}
	cr_assert_eq(ts->ncaps, SUP_TSTATS_LABELS);
	cr_assert_eq(ts->dropped, 50);
}

/* Ended tasks leave the table; those left stay reachable (thousands,
 * so that runs of linear probing cross each other and the table grows
 * and takes deletions in the middle of runs). */
Test(tstats, ended_tasks_leave)
{
	char id[32], e[32];

	for (int i = 0; i < 5000; i++) {
		snprintf(id, sizeof(id), "t%d", i);
		snprintf(e, sizeof(e), "%d-1", i + 1);
		push(S_Q, e, REC_SK_QUEUED, id, 1, NULL)->t0 = 1000;
	}
	rec_stats_apply(&rec, rec.fill);
	for (int i = 0; i < 5000; i += 2) {
		snprintf(id, sizeof(id), "t%d", i);
		snprintf(e, sizeof(e), "%d-2", i + 1);
		push(S_RES, e, REC_SK_OK, id, 1, "echo");
	}
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(sup_tstats_tasks(ts), 2500);
	for (int i = 1; i < 5000; i += 2) {
		snprintf(id, sizeof(id), "t%d", i);
		snprintf(e, sizeof(e), "%d-3", i + 1);
		push(S_RES, e, REC_SK_ERROR, id, 1, "echo");
	}
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(sup_tstats_tasks(ts), 0);
	cr_assert_eq(pair("work", "echo")->completed, 2500);
	cr_assert_eq(pair("work", "echo")->failed, 2500);
	cr_assert_eq(pair("work", "echo")->started, 5000);
	cr_assert_eq(ts->npairs, 1, "every end found its queue");
}

/* The table is bounded: full, the tasks queued long before the newest
 * are dropped to make room; their ends count under "". */
Test(tstats, full_drops_stale)
{
	char id[32], e[32];

	for (int i = 0; i < SUP_TSTATS_TASKS; i++) {
		snprintf(id, sizeof(id), "t%d", i);
		snprintf(e, sizeof(e), "%d-1", i + 1);
		push(S_Q, e, REC_SK_QUEUED, id, 1, NULL)->t0 = 1000;
		if (i % 4096 == 0)
			rec_stats_apply(&rec, rec.fill);
	}
	push(S_Q, "9-1", REC_SK_QUEUED, "new", 1, NULL)->t0 = 1000 +
	    4000 * 1000;
	push(S_RES, "9-2", REC_SK_OK, "new", 1, "echo");
	push(S_RES, "9-3", REC_SK_OK, "t7", 1, "echo");
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(pair("work", "echo")->completed, 1);
	cr_assert_eq(pair("", "echo")->completed, 1);
	cr_assert_eq(cap("work")->submitted, SUP_TSTATS_TASKS + 1);
}

/* A task.started event read after the result of its attempt (the events
 * stream lags behind) does not count the start again. */
Test(tstats, late_start_event)
{
	push(S_Q, "1-0", REC_SK_QUEUED, "t1", 1, NULL)->t0 = 1000;
	push(S_RES, "2-0", REC_SK_OK, "t1", 1, "echo")->t0 = 1100;
	rec_stats_apply(&rec, rec.fill);
	push(S_EV, "1-5", REC_SK_STARTED, "t1", 1, "echo")->t0 = 1100;
	rec_stats_apply(&rec, rec.fill);
	cr_assert_eq(pair("work", "echo")->started, 1);
	cr_assert_eq(ts->npairs, 1);
}

Test(tstats, histogram_buckets)
{
	struct sup_hist h = { 0 };

	sup_hist_observe(&h, 0.005);     /* on the bound: in it */
	sup_hist_observe(&h, 0.0051);
	sup_hist_observe(&h, 300);
	sup_hist_observe(&h, 301);
	sup_hist_observe(&h, -1);        /* a clock step: 0 */
	cr_assert_eq(h.bucket[0], 2);
	cr_assert_eq(h.bucket[1], 1);
	cr_assert_eq(h.bucket[SUP_HIST_LE - 1], 1);
	cr_assert_eq(h.bucket[SUP_HIST_LE], 1);
	cr_assert_eq(h.count, 5);
}
