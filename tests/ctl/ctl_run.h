/*
 * ctl_run.h - run the built hivectl in a test: its exit status, stdout
 * and stderr, while hived's log is read (so hived never blocks on a full
 * pipe).  HIVE_URL and HIVE_TOKEN_FILE are cleared in the child unless
 * the test sets them (env: "NAME=VALUE" strings, NULL-ended).
 */
#ifndef HIVE_CTL_RUN_H
#define HIVE_CTL_RUN_H

#include <jansson.h>

struct hp;

struct ctl_run {
	int code;          /* exit status; -1 when killed by a signal */
	char *out, *err;   /* NUL-terminated */
};

/* hivectl ARGS... (NULL-ended); h may be NULL.  Fails the test if it
 * runs longer than 60 s.  The previous run's text is freed. */
int ctl_run(struct ctl_run *, struct hp *h, const char *const *env, ...)
    __attribute__((sentinel));
/* The same with --url and --token-file of h's hived first. */
int ctl_run_h(struct ctl_run *, struct hp *h, ...)
    __attribute__((sentinel));
/* The next run's stdin: text (NULL: the test's own). */
void ctl_run_stdin(const char *text);
/* stdout parsed as one JSON document (fails the test otherwise). */
json_t *ctl_json(const struct ctl_run *);
void ctl_run_free(struct ctl_run *);
/* Skip the test, naming the endpoint, unless hived has method path. */
void ctl_need(struct hp *h, const char *method, const char *path);
/* 1 when hived has method path (as ctl_need judges), else 0. */
int ctl_has(struct hp *h, const char *method, const char *path);

#endif
