/*
 * test_pace.c - hived forks many workers without holding its loop
 * (supervisor/spawn.c, "Spawns are paced"): while hundreds of instances
 * are still waiting for their fork, hived answers HTTP and signals.
 *
 * Ordered by events only: the first fork's log line, then a /health
 * answer, then the SIGUSR1 status dump, which must still show instances
 * whose spawn is queued (state starting, no pid).  Forked all in one
 * loop turn, as before, the dump could only come after the last fork.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 60000     /* 400 forks under ASan on a loaded machine */
#define NINST 400

TestSuite(pace, .fini = hp_cleanup, .timeout = 180);

static const char *
fake(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s",
	    tu_build_path("tests/supervisor/fake_worker"));
	return path;
}

/* The SIGUSR1 dump: one line per instance; counts those still queued
 * (starting, pid 0) and those forked. */
static void
status_dump(struct hp *h, size_t *from, unsigned *queued, unsigned *forked)
{
	*queued = *forked = 0;
	hp_wait(h, from, T_LONG, "status ", "agent", "children=", NULL);
	for (unsigned i = 0; i < NINST; i++) {
		const char *l = hp_wait(h, from, T_LONG, "agent=p/", " state=",
		    " restarts=", NULL);

		if (strstr(l, "state=starting pid=0 ") != NULL)
			(*queued)++;
		else if (hp_field(l, "pid") > 0)
			(*forked)++;
	}
}

Test(pace, hived_answers_while_instances_wait_for_their_fork)
{
	struct hp *h = hp_new("pace");
	char agents[256];
	size_t from = 0;
	unsigned queued, forked;
	json_t *j;
	int code, st;

	snprintf(agents, sizeof(agents),
	    "[agent \"p\"]\ncommand = ok\ninstances = %d\n"
	    "heartbeat_deadline = 60s\n", NINST);
	hp_write_conf(h, fake(), "heartbeat_interval = 5s\n", agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=p/1 pid=", "state=starting", NULL);

	j = hp_http(h, "GET", "/health", NULL, &code);
	cr_assert_eq(code, 200);
	json_decref(j);
	hp_signal(h, SIGUSR1);
	status_dump(h, &from, &queued, &forked);
	cr_assert_gt(queued, 0u, "every instance was forked before hived "
	    "answered (%u forked)", forked);
	cr_assert_gt(forked, 0u);

	/* The queue drains: the last instance is forked, and stop reaps
	 * every worker. */
	hp_wait(h, &(size_t){ 0 }, T_LONG, "agent=p/400 pid=", "state=starting",
	    NULL);
	hp_signal(h, SIGUSR1);
	status_dump(h, &from, &queued, &forked);
	cr_assert_eq(queued, 0u);
	cr_assert_eq(forked, (unsigned)NINST);
	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}

/*
 * Stopped while spawns are still queued: the queued instances go to
 * stopped at once (no worker to drain, no exit to wait for) and hived
 * exits 0 once the forked ones are reaped.
 */
Test(pace, stop_while_spawns_are_queued)
{
	struct hp *h = hp_new("pacestop");
	char agents[256];
	size_t from = 0;
	int st;

	snprintf(agents, sizeof(agents),
	    "[agent \"p\"]\ncommand = ok\ninstances = %d\n", NINST);
	hp_write_conf(h, fake(), "heartbeat_interval = 5s\n", agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=p/1 pid=", "state=starting", NULL);
	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
	cr_assert_not_null(strstr(h->log, "state=stopped from=starting"),
	    "no queued instance was stopped before its fork");
}

/*
 * SIGHUP while spawns are queued: the reload is done before the queue is
 * (the status dump after it still shows queued instances), queued
 * instances are not drained but forked with the new section when their
 * turn comes, and the forked ones restart with it.
 */
Test(pace, reload_while_spawns_are_queued)
{
	struct hp *h = hp_new("pacehup");
	char agents[256];
	size_t from = 0;
	unsigned queued, forked;
	int st, n400;

	snprintf(agents, sizeof(agents),
	    "[agent \"p\"]\ncommand = ok\ninstances = %d\n"
	    "environment = FAKE_TAG=old\nheartbeat_deadline = 60s\n", NINST);
	hp_write_conf(h, fake(), "heartbeat_interval = 5s\n", agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=p/1 pid=", "state=starting", NULL);
	snprintf(agents, sizeof(agents),
	    "[agent \"p\"]\ncommand = ok\ninstances = %d\n"
	    "environment = FAKE_TAG=new\nheartbeat_deadline = 60s\n", NINST);
	hp_write_conf(h, fake(), "heartbeat_interval = 5s\n", agents);
	hp_signal(h, SIGHUP);
	hp_wait(h, &from, T_LONG, "reload done", "changed=1", NULL);
	hp_signal(h, SIGUSR1);
	status_dump(h, &from, &queued, &forked);
	cr_assert_gt(queued, 0u, "the reload waited for every fork (%u forked)",
	    forked);
	/* The last instance is forked once, with the new section. */
	hp_wait(h, &(size_t){ 0 }, T_LONG, "fake agent=p/400 ", "tag=new", NULL);
	n400 = 0;
	for (const char *p = h->log; (p = strstr(p, "fake agent=p/400 ")) != NULL;
	    p++)
		n400++;
	cr_assert_eq(n400, 1, "p/400 started %d times", n400);
	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}
