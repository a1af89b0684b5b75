/*
 * util.c - the helpers of util.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- struct hbuf ---- */

int
hbuf_reserve(struct hbuf *b, size_t more)
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
	if (more > SIZE_MAX / 2 - b->len)
		return -1;
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < more)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

int
hbuf_add(struct hbuf *b, const void *data, size_t len)
{
	if (len == 0)
		return 0;
	if (hbuf_reserve(b, len) == -1)
		return -1;
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

int
hbuf_puts(struct hbuf *b, const char *s)
{
	return hbuf_add(b, s, strlen(s));
}

int
hbuf_putc(struct hbuf *b, char c)
{
	return hbuf_add(b, &c, 1);
}

int
hbuf_printf(struct hbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || hbuf_reserve(b, (size_t)n + 1) == -1)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void
hbuf_consume(struct hbuf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

void
hbuf_reset(struct hbuf *b)
{
	b->off = b->len = 0;
}

void
hbuf_free(struct hbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- UTF-8 ---- */

size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	uint32_t cp;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c < 0xc2 || c > 0xf4)
		return 0;
	len = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	cp = c & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

int
utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, k;

	while (i < n) {
		if (s[i] >= 0x01 && s[i] < 0x80) {
			i++;
			continue;
		}
		if (s[i] == 0 || (k = utf8_seq(s + i, n - i)) == 0)
			return -1;
		i += k;
	}
	return 0;
}

/* ---- FNV-1a ---- */

uint64_t
hash_fnv1a_add(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * UINT64_C(1099511628211);
	return h;
}

/* ---- backoff ---- */

void
backoff_init(struct backoff *bo, unsigned min_ms, unsigned max_ms)
{
	memset(bo, 0, sizeof(*bo));
	bo->min_ms = min_ms ? min_ms : 1;
	bo->max_ms = max_ms < bo->min_ms ? bo->min_ms : max_ms;
	bo->next_ms = bo->min_ms;
}

unsigned
backoff_fail(struct backoff *bo, uint64_t now_ms, int *first)
{
	unsigned d = bo->next_ms;

	if (first != NULL)
		*first = !bo->down;
	if (!bo->down) {
		bo->down = 1;
		bo->down_since_ms = now_ms;
	}
	bo->next_ms = d > bo->max_ms / 2 ? bo->max_ms : d * 2;
	return d;
}

uint64_t
backoff_ok(struct backoff *bo, uint64_t now_ms)
{
	uint64_t lasted = 0;

	if (bo->down && now_ms >= bo->down_since_ms)
		lasted = now_ms - bo->down_since_ms;
	bo->down = 0;
	bo->next_ms = bo->min_ms;
	return lasted;
}
