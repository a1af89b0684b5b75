/*
 * hived_proc.h - run hived as a real process in a test: its own directory
 * and config, its stderr (with its workers') on a pipe the test reads, its
 * HTTP API on a free loopback port.
 *
 * Waiting is on events only: a line appearing in the log (poll on the
 * pipe), an HTTP answer, a process exit (pidfd).  Deadlines are failure
 * guards, never the way to wait.  Every helper keeps reading the log while
 * it waits, so hived never blocks writing to a full pipe.
 *
 * The test process is made a child subreaper, so workers orphaned by a
 * killed hived become its children: hp_cleanup kills and reaps every child
 * that is left (by PID), also when an assertion failed.
 */
#ifndef HIVE_HIVED_PROC_H
#define HIVE_HIVED_PROC_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#define HP_TOKEN "test-token-0123456789"

struct hp {
	pid_t pid;              /* hived; 0 once reaped */
	int status;             /* its wait status once reaped */
	int logfd;
	char *log;              /* everything read so far, NUL-terminated */
	size_t len, cap;
	char dir[512];          /* private directory: hive.conf, token, port */
	char conf[600];
	char prefix[96];        /* unique Redis key prefix of this test */
	unsigned port;
};

/* New directory, token file, unique prefix; the test's hp (one per test). */
struct hp *hp_new(const char *tag);
/* Kill what is left (hived, orphaned workers), remove the directory. */
void hp_cleanup(void);

/*
 * The [hive] section every test uses (redis from the private server,
 * worker = the given program, the unique prefix, http on a free port, the
 * token), followed by agents (INI text).  Written atomically.
 */
void hp_write_conf(struct hp *, const char *worker, const char *hive_extra,
    const char *agents);
/* Start hived -v --config ... --port-file ...; returns once it listens. */
void hp_start(struct hp *);
/* The same without waiting: for a hived expected to fail at start (then
 * hp_wait_exit, hp_wait on its log). */
void hp_spawn(struct hp *);

/* Read what is there (waiting up to ms). */
void hp_pump(struct hp *, int ms);
/* Offset of the end of the log: wait for lines after this point. */
size_t hp_mark(struct hp *);
/*
 * Wait for a log line after *from that contains every needle (NULL-ended);
 * fails the test after timeout_ms.  *from moves past the line; returns the
 * line (valid until the next hp call).
 */
const char *hp_wait(struct hp *, size_t *from, int timeout_ms, ...)
    __attribute__((sentinel));
/* The same without failing: NULL on timeout. */
const char *hp_wait_try(struct hp *, size_t *from, int timeout_ms, ...)
    __attribute__((sentinel));
/* Number after "key=" in line, or -1. */
long long hp_field(const char *line, const char *key);

/* One HTTP request; returns the parsed JSON body (or NULL), *code set. */
json_t *hp_http(struct hp *, const char *method, const char *path,
    const char *token, int *code);
/* The same with a body (NULL: no Content-Length; "": an empty one). */
json_t *hp_http_body(struct hp *, const char *method, const char *path,
    const char *token, const char *body, int *code);
/* The /agents entry for "name/n" (a new reference), failing if absent. */
json_t *hp_agent(struct hp *, const char *label);
/* Its pid (0 when none) and state. */
pid_t hp_agent_pid(struct hp *, const char *label);
/* A task (id, JSON payload) XADDed to agent/instance's direct queue. */
struct redisContext;
void hp_submit_direct(struct redisContext *, const char *prefix,
    const char *agent, unsigned instance, const char *id,
    const char *payload);
const char *hp_agent_state(struct hp *, const char *label, char *buf,
    size_t len);
/* POST an action; returns the HTTP status. */
int hp_post(struct hp *, const char *path);

void hp_signal(struct hp *, int sig);
/* Wait for hived to exit (its status), failing after timeout_ms. */
int hp_wait_exit(struct hp *, int timeout_ms);
/* Wait for any process (not necessarily our child) to exit: 0 or -1. */
int hp_wait_pid_gone(pid_t pid, int timeout_ms);

#endif
