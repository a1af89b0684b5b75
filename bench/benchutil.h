/*
 * benchutil.h - what every benchmark program needs: fail loudly, read a
 * monotonic clock, run a Redis command that must succeed.
 */
#ifndef HIVE_BENCHUTIL_H
#define HIVE_BENCHUTIL_H

#include <sys/types.h>

#include <hiredis/hiredis.h>

/* "<program>: <message>" on stderr, exit 1. */
void bench_die(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));
/* CLOCK_MONOTONIC in seconds. */
double bench_mono_s(void);
/* A command whose reply is not needed; a lost connection or an error
 * reply ends the benchmark. */
void bench_cmd(redisContext *c, const char *fmt, ...);
/* VmRSS and RssAnon of pid in kB (anon may be NULL); -1 when it is
 * gone. */
int bench_proc_rss(pid_t pid, long *rss, long *anon);
/* qsort comparator of doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

#endif
