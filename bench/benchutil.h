/*
 * benchutil.h - what every benchmark program needs: fail loudly, read a
 * monotonic clock, run a Redis command that must succeed, read what a
 * process costs in memory.
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
/*
 * What a process costs in memory, three ways, in kB (-1: not read):
 *   rss   VmRSS (/proc/PID/status): every resident page it maps, a shared
 *         library page counted in full in each process that maps it
 *   pss   Pss (/proc/PID/smaps_rollup): each page divided by the number
 *         of processes that map it, so the Pss of all processes adds up
 *         to the memory they use
 *   anon  RssAnon (/proc/PID/status): its anonymous pages (heap, stacks,
 *         and the pages of private maps it wrote, its libraries'
 *         relocations and data among them): its own, shared with none
 */
struct bench_mem {
	long rss;
	long pss;
	long anon;
};

/* Reads pid's memory; -1 when it is gone (no VmRSS).  pss stays -1 on a
 * kernel without smaps_rollup (before Linux 4.14). */
int bench_proc_mem(pid_t pid, struct bench_mem *m);
/* "<who>.pss.<what>: X MB (...)" and "<who>.rss_anon.<what>: X MB (...)",
 * the lines that go beside a "<who>.rss.<what>" one. */
void bench_print_pss_anon(const char *who, const char *what,
    const struct bench_mem *m);
/* qsort comparator of doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);

#endif
