/* benchutil.c - see benchutil.h. */
#include "benchutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void
bench_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

double
bench_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
bench_cmd(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	redisReply *r;

	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (r == NULL)
		bench_die("redis: %s", c->errstr);
	if (r->type == REDIS_REPLY_ERROR)
		bench_die("redis: %s", r->str);
	freeReplyObject(r);
}

int
bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The "Key: N kB" line of a /proc file, -1 when it has none. */
static long
proc_kb(const char *path, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	long v = -1;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			if (sscanf(line + klen + 1, "%ld kB", &v) != 1)
				v = -1;
			break;
		}
	fclose(f);
	return v;
}

int
bench_proc_mem(pid_t pid, struct bench_mem *m)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	m->rss = proc_kb(path, "VmRSS");
	m->anon = proc_kb(path, "RssAnon");
	snprintf(path, sizeof(path), "/proc/%ld/smaps_rollup", (long)pid);
	m->pss = proc_kb(path, "Pss");
	return m->rss < 0 ? -1 : 0;
}

void
bench_print_pss_anon(const char *who, const char *what,
    const struct bench_mem *m)
{
	if (m->pss < 0)
		printf("%s.pss.%s: skipped (no Pss in /proc/PID/smaps_rollup)\n",
		    who, what);
	else
		printf("%s.pss.%s: %.2f MB (Pss: shared pages divided among the "
		    "processes that map them)\n", who, what, m->pss / 1024.);
	printf("%s.rss_anon.%s: %.2f MB (RssAnon: its own heap, stacks and "
	    "anonymous maps)\n", who, what, m->anon / 1024.);
}
