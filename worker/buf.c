/*
 * buf.c - a growable byte buffer with a read offset: writers append at the
 * end, readers consume from the front.  Consumed space is reclaimed when
 * the buffer empties or before it would have to grow.
 */
#include <stdlib.h>
#include <string.h>

#include "worker.h"

int
wrk_buf_reserve(struct wrk_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->off > 0 && b->cap - b->len < more) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->cap - b->len >= more)
		return 0;
	cap = b->cap ? b->cap : 4096;
	while (cap - b->len < more)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

int
wrk_buf_append(struct wrk_buf *b, const void *data, size_t len)
{
	if (wrk_buf_reserve(b, len) == -1)
		return -1;
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

void
wrk_buf_consume(struct wrk_buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

void
wrk_buf_reset(struct wrk_buf *b)
{
	b->off = b->len = 0;
}

void
wrk_buf_free(struct wrk_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}
