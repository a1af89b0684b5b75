/*
 * echo.c - the smallest stream-mode handler: answers every task with its
 * payload as the result.  Built for benchmarks, so it is written to be
 * fast rather than general:
 *
 *   - its own read buffer: whole lines are answered as they come, and the
 *     answers are written out only when nothing more is waiting in what
 *     was read (one write per batch of tasks, not per task);
 *   - no JSON library: a tiny scanner finds the top-level "id" and
 *     "payload" values and copies them through verbatim (they are JSON
 *     already).
 *
 * Works in exec mode too: one line in, one line out, exit 0 at EOF.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IN_CHUNK  (256 * 1024)
#define OUT_FLUSH (256 * 1024)

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
			out_cap = out_cap ? out_cap * 2 : OUT_FLUSH * 2;
		if ((out = realloc(out, out_cap)) == NULL)
			exit(1);
	}
	memcpy(out + out_len, s, n);
	out_len += n;
}

static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
		p++;
	return p;
}

/* End of the JSON value starting at p, or NULL. */
static const char *
skip_value(const char *p, const char *end)
{
	int depth = 0;

	do {
		if (p >= end)
			return NULL;
		if (*p == '"') {
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
			if (p >= end)
				return NULL;
			p++;
		} else if (*p == '{' || *p == '[') {
			depth++;
			p++;
		} else if (*p == '}' || *p == ']') {
			depth--;
			p++;
		} else if (depth > 0) {
			p++;            /* , : digits, literals inside */
		} else {
			while (p < end && *p != ',' && *p != '}' && *p != ']' &&
			    *p != ' ')
				p++;
		}
	} while (depth > 0);
	return p;
}

static void
answer(const char *line, const char *end)
{
	const char *p = skip_ws(line, end), *k, *ke, *v, *ve;
	const char *id = NULL, *id_end = NULL, *pl = "null", *pl_end = pl + 4;

	if (p >= end || *p != '{')
		return;
	for (p++;;) {
		p = skip_ws(p, end);
		if (p >= end || *p != '"')
			break;
		k = p;
		if ((ke = skip_value(p, end)) == NULL)
			return;
		p = skip_ws(ke, end);
		if (p >= end || *p != ':')
			return;
		v = skip_ws(p + 1, end);
		if ((ve = skip_value(v, end)) == NULL)
			return;
		if (ke - k == 4 && memcmp(k, "\"id\"", 4) == 0) {
			id = v;
			id_end = ve;
		} else if (ke - k == 9 && memcmp(k, "\"payload\"", 9) == 0) {
			pl = v;
			pl_end = ve;
		}
		p = skip_ws(ve, end);
		if (p < end && *p == ',')
			p++;
	}
	if (id == NULL)
		return;
	put("{\"id\":", 6);
	put(id, (size_t)(id_end - id));
	put(",\"status\":\"ok\",\"result\":", 24);
	put(pl, (size_t)(pl_end - pl));
	put("}\n", 2);
}

int
main(void)
{
	size_t cap = IN_CHUNK, len = 0, start;
	char *in = malloc(cap), *nl;
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
		len += (size_t)n;
		start = 0;
		while ((nl = memchr(in + start, '\n', len - start)) != NULL) {
			answer(in + start, nl);
			start = (size_t)(nl - in) + 1;
			if (out_len >= OUT_FLUSH)
				flush_out();
		}
		memmove(in, in + start, len - start);
		len -= start;
		/* Nothing more whole in what we read: answer now rather
		 * than wait for more input. */
		flush_out();
	}
	if (len > 0)
		answer(in, in + len);
	flush_out();
	free(in);
	free(out);
	return 0;
}
