/*
 * test_ctl_follow.c - hivectl wait ID --follow against a real hived,
 * its worker running tests/worker/output_handler.py, Redis and
 * PostgreSQL: the task's chunks on stdout in order, then its result;
 * progress on stderr (a line per update: not a terminal); the exit
 * status of wait (1 for a failed task); a task that wrote nothing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_run.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

TestSuite(ctl_follow, .fini = hp_cleanup, .timeout = 120);

static struct hp *
start(const char *tag)
{
	struct hp *h = hp_new(tag);
	char db[64], ci[512], extra[700], agents[1024];

	tu_pg_fresh_db(tag, db, sizeof(db), ci, sizeof(ci));
	snprintf(extra, sizeof(extra), "postgres = %s\n", ci);
	snprintf(agents, sizeof(agents),
	    "[agent \"o\"]\n"
	    "command = /usr/bin/python3 %s/tests/worker/output_handler.py\n"
	    "capabilities = c\nconcurrency = 4\n", getenv("HIVE_SOURCE_DIR"));
	hp_write_conf(h, tu_build_path("worker/hive-worker"), extra, agents);
	hp_start(h);
	hp_wait(h, &(size_t){ 0 }, T_LONG, "agent=o/1", "state=ready", NULL);
	return h;
}

Test(ctl_follow, chunks_then_the_result)
{
	struct hp *h = start("ctlfol");
	struct ctl_run r = { 0 };
	const char *res;

	cr_assert_eq(ctl_run_h(&r, h, "submit", "c", "{\"op\":\"paced\","
	    "\"n\":10}", "--id", "f1", NULL), 0);
	cr_assert_eq(ctl_run_h(&r, h, "wait", "f1", "--follow", NULL), 0,
	    "%s", r.err);
	cr_assert(strncmp(r.out, "p0 p1 p2 p3 p4 p5 p6 p7 p8 p9 \n", 31) == 0,
	    "stdout: %s", r.out);
	res = r.out + 31;
	cr_assert(strstr(res, "\"done\"") != NULL, "no result after the "
	    "chunks: %s", r.out);

	/* Progress: a line per update on stderr (not a terminal). */
	cr_assert_eq(ctl_run_h(&r, h, "submit", "c", "{\"op\":\"both\"}",
	    "--id", "f2", NULL), 0);
	cr_assert_eq(ctl_run_h(&r, h, "wait", "f2", "-f", NULL), 0, "%s",
	    r.err);
	cr_assert(strstr(r.err, "progress: {\"step\":1}") != NULL, "stderr: %s",
	    r.err);
	cr_assert(strncmp(r.out, "x\n", 2) == 0, "stdout: %s", r.out);
	ctl_run_free(&r);
}

Test(ctl_follow, a_failed_task_and_one_without_output)
{
	struct hp *h = start("ctlfol2");
	struct ctl_run r = { 0 };

	cr_assert_eq(ctl_run_h(&r, h, "submit", "c", "{\"op\":\"fail\"}",
	    "--id", "f3", NULL), 0);
	cr_assert_eq(ctl_run_h(&r, h, "wait", "f3", "--follow", NULL), 1);
	cr_assert(strncmp(r.out, "before failing", 14) == 0, "stdout: %s",
	    r.out);
	cr_assert(strstr(r.err, "failed") && strstr(r.err, "asked to"),
	    "stderr: %s", r.err);

	cr_assert_eq(ctl_run_h(&r, h, "submit", "c", "{\"op\":\"none\"}",
	    "--id", "f4", NULL), 0);
	cr_assert_eq(ctl_run_h(&r, h, "wait", "f4", "--follow", NULL), 0,
	    "%s", r.err);
	cr_assert(strstr(r.out, "\"done\"") != NULL, "stdout: %s", r.out);

	cr_assert_eq(ctl_run_h(&r, h, "wait", "f4", "--follow", "--timeout",
	    "1s", NULL), 2);
	ctl_run_free(&r);
}
