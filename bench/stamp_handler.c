/*
 * stamp_handler.c - a stream-mode handler for bench_latency: it answers
 * every task with the time it received it,
 *
 *   in:  {"id":"L-42","attempt":1,...}
 *   out: {"id":"L-42","status":"ok","result":{"recv_us":1718000000123456}}
 *
 * recv_us is CLOCK_REALTIME in microseconds, read once right after the
 * read() that brought the task's line in: every line of one read() was
 * received at that moment.  Answers of one read() go out in one write().
 *
 * No JSON library: the worker writes "id" first (docs/HANDLERS.md), and
 * the benchmark's ids are plain ASCII, so the id is copied through as the
 * JSON string it already is.  A line without a leading "id" is ignored.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IN_CHUNK (64 * 1024)
#define ID_PREFIX "{\"id\":\""

static char *out;
static size_t out_len, out_cap;

static void
flush_out(void)
{
	size_t off = 0;
	ssize_t n;

	while (off < out_len) {
		n = write(STDOUT_FILENO, out + off, out_len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			exit(1);
		off += (size_t)n;
	}
	out_len = 0;
}

static void
put(const char *s, size_t n)
{
	if (out_len + n > out_cap) {
		while (out_len + n > out_cap)
			out_cap = out_cap ? out_cap * 2 : 64 * 1024;
		if ((out = realloc(out, out_cap)) == NULL)
			exit(1);
	}
	memcpy(out + out_len, s, n);
	out_len += n;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Answer the line [p, end) (no newline) received at recv_us. */
static void
answer(const char *p, const char *end, int64_t recv_us)
{
	const char *id, *q;
	char tail[96];
	int n;

	if ((size_t)(end - p) < sizeof(ID_PREFIX) ||
	    memcmp(p, ID_PREFIX, sizeof(ID_PREFIX) - 1) != 0)
		return;
	id = p + sizeof(ID_PREFIX) - 1;
	for (q = id; q < end && *q != '"' && *q != '\\'; q++)
		;
	if (q >= end || *q != '"')
		return;
	put(ID_PREFIX, sizeof(ID_PREFIX) - 1);
	put(id, (size_t)(q - id));
	n = snprintf(tail, sizeof(tail), "\",\"status\":\"ok\",\"result\":"
	    "{\"recv_us\":%" PRId64 "}}\n", recv_us);
	put(tail, (size_t)n);
}

int
main(void)
{
	size_t cap = IN_CHUNK, len = 0, start;
	char *in = malloc(cap), *nl;
	int64_t t;
	ssize_t n;

	if (in == NULL)
		return 1;
	for (;;) {
		if (cap - len < IN_CHUNK / 2) {
			cap *= 2;
			if ((in = realloc(in, cap)) == NULL)
				return 1;
		}
		n = read(STDIN_FILENO, in + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		t = now_us();
		len += (size_t)n;
		start = 0;
		while ((nl = memchr(in + start, '\n', len - start)) != NULL) {
			answer(in + start, nl, t);
			start = (size_t)(nl - in) + 1;
		}
		memmove(in, in + start, len - start);
		len -= start;
		flush_out();
	}
	free(in);
	free(out);
	return 0;
}
