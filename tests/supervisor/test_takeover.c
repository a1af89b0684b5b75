/*
 * test_takeover.c - a worker that outlived its hived (SIGKILLed while the
 * handler hangs in a task) does not keep the next hived's worker of the
 * same name waiting forever (worker/redis.c, "A predecessor of the same
 * name"): after stop_timeout the new worker stops the old one (and with
 * it its handler) and takes over.
 *
 * Ordered by events: the task's busy heartbeat, hived's exit, the new
 * worker's move out of starting, the old processes' exits (pidfd).
 */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hive_proto.h"
#include "hived_proc.h"
#include "testutil.h"

#define T_LONG 30000

TestSuite(takeover, .fini = hp_cleanup, .timeout = 120);

/* The line "agent=t/1 pid=P state=S from=starting" of a worker that left
 * starting; returns P (its state ready or busy, never a crash). */
static pid_t
left_starting(struct hp *h, size_t *from)
{
	const char *l = hp_wait(h, from, T_LONG, "agent=t/1 pid=",
	    " from=starting", NULL);

	cr_assert(strstr(l, "state=ready") != NULL ||
	    strstr(l, "state=busy") != NULL, "%s", l);
	return (pid_t)hp_field(l, "pid");
}

Test(takeover, worker_outliving_a_killed_hived_is_stopped_by_its_successor)
{
	struct hp *h = hp_new("takeover"), *h2;
	redisContext *c = tu_redis_connect();
	const char *src = getenv("HIVE_SOURCE_DIR");
	const char *extra = "heartbeat_interval = 100ms\nstop_timeout = 1s\n";
	char agents[1024], worker[4096];
	size_t from = 0, from2 = 0;
	pid_t w1, w2, handler = 0;
	int st;

	snprintf(worker, sizeof(worker), "%s", tu_build_path("worker/hive-worker"));
	snprintf(agents, sizeof(agents),
	    "[agent \"t\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n",
	    src ? src : ".");
	hp_write_conf(h, worker, extra, agents);
	hp_start(h);
	w1 = left_starting(h, &from);
	/* A handler that hangs: the task sleeps an hour. */
	hp_submit_direct(c, h->prefix, "t", 1, "hang", "{\"sleep_ms\": 3600000}");
	hp_wait(h, &from, T_LONG, "agent=t/1", "state=busy", NULL);
	while (handler <= 0) {
		json_t *a = hp_agent(h, "t/1");

		handler = (pid_t)json_integer_value(json_object_get(a,
		    "handler_pid"));
		json_decref(a);
		if (handler <= 0)
			hp_pump(h, 100);
	}

	hp_signal(h, SIGKILL);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	/* The old worker drains on EOF but its task never ends: it lives. */
	hp_wait(h, &from, T_LONG, "agent=t/1 draining (hived is gone)", NULL);
	cr_assert_eq(kill(w1, 0), 0, "worker %d exited by itself", (int)w1);

	/* A new hived on the same prefix and host: its t/1 is the same
	 * consumer, and finds the old one's liveness key. */
	h2 = hp_new("takeover2");
	snprintf(h2->prefix, sizeof(h2->prefix), "%s", h->prefix);
	hp_write_conf(h2, worker, extra, agents);
	hp_start(h2);
	hp_wait(h2, &from2, T_LONG, "agent=t/1", "waiting for the previous worker",
	    NULL);
	hp_wait(h2, &from2, T_LONG, "agent=t/1", "previous worker", "sending TERM",
	    NULL);
	/* The old worker and its handler end (ours to reap: subreaper). */
	cr_assert_eq(hp_wait_pid_gone(w1, T_LONG), 0, "worker %d lives on",
	    (int)w1);
	cr_assert_eq(waitpid(w1, &st, 0), w1);
	cr_assert_eq(hp_wait_pid_gone(handler, T_LONG), 0, "handler %d lives on",
	    (int)handler);
	waitpid(handler, NULL, WNOHANG);
	hp_wait(h2, &from2, T_LONG, "agent=t/1", "took over from the previous "
	    "worker", NULL);
	w2 = left_starting(h2, &from2);
	cr_assert_neq(w2, w1);
	redisFree(c);
	/* The hanging task came back to the new worker: stop kills it after
	 * stop_timeout, and hived still exits 0. */
	hp_signal(h2, SIGTERM);
	st = hp_wait_exit(h2, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}

/* This process's pid space as a worker writes it in its liveness key
 * ("<boot id>,<pid namespace>", worker/redis.c alive_stamp). */
static void
pid_space(char *buf, size_t len)
{
	char boot[64] = "", ns[64] = "";
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	ssize_t n;

	cr_assert(f != NULL);
	cr_assert(fgets(boot, sizeof(boot), f) != NULL);
	fclose(f);
	boot[strcspn(boot, "\n ,")] = '\0';
	n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
	cr_assert(n > 0);
	ns[n] = '\0';
	snprintf(buf, len, "%s,%s", boot, ns);
}

/*
 * A liveness key naming a live process of this pid space that is not a
 * worker of that instance (its pid reused since): after stop_timeout
 * the new worker says so and signals nothing; it takes over once the key
 * is gone.
 */
Test(takeover, a_reused_pid_is_never_signalled)
{
	struct hp *h = hp_new("reused");
	redisContext *c = tu_redis_connect();
	const char *src = getenv("HIVE_SOURCE_DIR");
	char agents[1024], space[160], value[200], key[600], host[256];
	size_t from = 0;
	redisReply *rr;
	pid_t other;
	int st;

	other = fork();
	cr_assert(other >= 0);
	if (other == 0) {
		pause();
		_exit(0);
	}
	pid_space(space, sizeof(space));
	cr_assert_eq(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	snprintf(key, sizeof(key), "%s:alive:t/1@%s", h->prefix, host);
	snprintf(value, sizeof(value), "%d %s", (int)other, space);
	rr = redisCommand(c, "SET %s %s PX 600000", key, value);
	cr_assert(rr != NULL && rr->type == REDIS_REPLY_STATUS);
	freeReplyObject(rr);

	snprintf(agents, sizeof(agents),
	    "[agent \"t\"]\n"
	    "command = /usr/bin/python3 %s/tests/supervisor/counter.py\n",
	    src ? src : ".");
	hp_write_conf(h, tu_build_path("worker/hive-worker"),
	    "heartbeat_interval = 100ms\nstop_timeout = 1s\n", agents);
	hp_start(h);
	hp_wait(h, &from, T_LONG, "agent=t/1", "waiting for the previous worker",
	    NULL);
	hp_wait(h, &from, T_LONG, "agent=t/1", "is not a worker of t/1",
	    "not signalled", NULL);
	cr_assert_eq(kill(other, 0), 0, "pid %d was signalled", (int)other);
	cr_assert_eq(waitpid(other, &st, WNOHANG), 0, "pid %d exited",
	    (int)other);
	/* Its key gone, the worker goes on. */
	rr = redisCommand(c, "DEL %s", key);
	cr_assert(rr != NULL && rr->type == REDIS_REPLY_INTEGER &&
	    rr->integer == 1);
	freeReplyObject(rr);
	hp_wait(h, &from, T_LONG, "agent=t/1", "took over from the previous "
	    "worker", NULL);
	left_starting(h, &from);
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
	redisFree(c);
	hp_signal(h, SIGTERM);
	st = hp_wait_exit(h, T_LONG);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hived status 0x%x", st);
}
