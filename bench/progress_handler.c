/*
 * progress_handler.c - a mode=stream handler for bench_progress.c: each
 * task runs PROGRESS_TASK_MS (its answer comes then, whatever the
 * others do), and a task whose payload has "p": 1 writes a progress
 * line every PROGRESS_EVERY_MS meanwhile: {"id":ID,"progress":{"i":k}}.
 *
 * One poll loop, no threads: stdin is read as it comes, the timers are
 * the tasks' next due times.  Lines are written with one write each.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define PROGRESS_TASK_MS  100
#define PROGRESS_EVERY_MS 10
#define TASKS_MAX         1024

struct task {
	char id[160];
	int progress;
	long long start, next;
	int k;
};

static struct task tasks[TASKS_MAX];
static int ntasks;

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
put(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(1, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			exit(1);
		s += w;
		n -= (size_t)w;
	}
}

static void
take(const char *line, size_t len)
{
	json_t *j = json_loadb(line, len, 0, NULL);
	struct task *t;

	if (j == NULL || ntasks == TASKS_MAX) {
		json_decref(j);
		return;
	}
	t = &tasks[ntasks++];
	snprintf(t->id, sizeof(t->id), "%s",
	    json_string_value(json_object_get(j, "id")));
	t->progress = json_integer_value(json_object_get(json_object_get(j,
	    "payload"), "p")) == 1;
	t->start = now_ms();
	t->next = t->start + PROGRESS_EVERY_MS;
	t->k = 0;
	json_decref(j);
}

/* Progress lines and answers that are due; the next due time back. */
static long long
tick(void)
{
	long long now = now_ms(), next = 0, end;
	char line[256];
	int n;

	for (int i = 0; i < ntasks; i++) {
		struct task *t = &tasks[i];

		end = t->start + PROGRESS_TASK_MS;
		if (now >= end) {
			n = snprintf(line, sizeof(line), "{\"id\":\"%s\","
			    "\"status\":\"ok\",\"result\":null}\n", t->id);
			put(line, (size_t)n);
			tasks[i--] = tasks[--ntasks];
			continue;
		}
		if (t->progress && now >= t->next) {
			n = snprintf(line, sizeof(line), "{\"id\":\"%s\","
			    "\"progress\":{\"i\":%d}}\n", t->id, ++t->k);
			put(line, (size_t)n);
			t->next += PROGRESS_EVERY_MS;
		}
		if (t->progress && (next == 0 || t->next < next))
			next = t->next;
		if (next == 0 || end < next)
			next = end;
	}
	return next;
}

int
main(void)
{
	static char buf[1 << 20];
	size_t len = 0;
	struct pollfd p = { .fd = 0, .events = POLLIN };
	long long next;
	char *nl;
	ssize_t n;
	int ms;

	for (;;) {
		next = tick();
		ms = next == 0 ? -1 : (int)(next - now_ms());
		if (next != 0 && ms < 0)
			ms = 0;
		if (poll(&p, 1, ms) < 0 && errno != EINTR)
			return 1;
		if (!(p.revents & (POLLIN | POLLHUP)))
			continue;
		if ((n = read(0, buf + len, sizeof(buf) - len)) <= 0)
			return n == 0 ? 0 : 1;
		len += (size_t)n;
		while ((nl = memchr(buf, '\n', len)) != NULL) {
			take(buf, (size_t)(nl - buf));
			len -= (size_t)(nl - buf) + 1;
			memmove(buf, nl + 1, len);
		}
		if (len == sizeof(buf))
			len = 0;         /* a line too long: not ours */
	}
}
