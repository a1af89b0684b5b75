/*
 * slow_echo.c - a stream-mode handler for the chaos tests (docs/CHAOS.md)
 * that answers every task DELAY ms after it arrived (argv[1], default 20),
 * many at once: with `concurrency = N` up to N tasks wait in it together.
 * So a worker killed at a random moment almost always has tasks in flight,
 * which is what the chaos scenarios are about; the C echo handler answers
 * in microseconds and is rarely caught with one.
 *
 * Answer: {"id":ID,"status":"ok","result":{"attempt":A}}.  Task lines come
 * from hive-worker (docs/HANDLERS.md): "id" is the first field and
 * "attempt" the second, so a small scan is enough.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXQ 65536
#define IDMAX 160

struct pend {
	long long due_ms;
	char id[IDMAX];
	unsigned attempt;
};

static struct pend q[MAXQ];
static size_t qhead, qlen;

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDOUT_FILENO, p, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			exit(1);
		p += w;
		n -= (size_t)w;
	}
}

/* Answer every task that is due (all of them when all is set). */
static void
answer_due(int all)
{
	static char out[1 << 16];
	size_t len = 0;
	long long now = now_ms();

	while (qlen > 0 && (all || q[qhead].due_ms <= now)) {
		struct pend *p = &q[qhead];
		if (len + IDMAX + 64 > sizeof(out)) {
			write_all(out, len);
			len = 0;
		}
		len += (size_t)snprintf(out + len, sizeof(out) - len,
		    "{\"id\":\"%s\",\"status\":\"ok\",\"result\":{\"attempt\":%u}}\n",
		    p->id, p->attempt);
		qhead = (qhead + 1) % MAXQ;
		qlen--;
	}
	if (len > 0)
		write_all(out, len);
}

static void
take(const char *line, const char *end, long long delay)
{
	const char *id = memmem(line, (size_t)(end - line), "\"id\":\"", 6), *e, *a;
	struct pend *p;

	if (id == NULL || qlen == MAXQ)
		return;
	id += 6;
	for (e = id; e < end && *e != '"'; e++)
		;
	if (e >= end || e - id >= IDMAX)
		return;
	p = &q[(qhead + qlen) % MAXQ];
	memcpy(p->id, id, (size_t)(e - id));
	p->id[e - id] = '\0';
	a = memmem(e, (size_t)(end - e), "\"attempt\":", 10);
	p->attempt = a ? (unsigned)strtoul(a + 10, NULL, 10) : 0;
	p->due_ms = now_ms() + delay;
	qlen++;
}

int
main(int argc, char **argv)
{
	long long delay = argc > 1 ? atoll(argv[1]) : 20;
	static char in[1 << 20];
	size_t len = 0;

	for (;;) {
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		int timeout = -1;
		if (qlen > 0) {
			long long d = q[qhead].due_ms - now_ms();
			timeout = d < 0 ? 0 : (int)d;
		}
		int n = poll(&pfd, 1, timeout);
		if (n == -1 && errno != EINTR)
			return 1;
		if (n > 0) {
			ssize_t r = read(STDIN_FILENO, in + len, sizeof(in) - len);
			if (r == -1 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			len += (size_t)r;
			char *start = in, *nl;
			while ((nl = memchr(start, '\n', len - (size_t)(start - in))) != NULL) {
				take(start, nl, delay);
				start = nl + 1;
			}
			len -= (size_t)(start - in);
			memmove(in, start, len);
			if (len == sizeof(in))
				len = 0;        /* a line longer than we keep: dropped */
		}
		answer_due(0);
	}
	/* EOF: the worker is stopping; answer what we hold. */
	answer_due(1);
	return 0;
}
