/*
 * pgcopy.c - rows in PostgreSQL's binary COPY format (record.h), for
 * COPY ... FROM STDIN (FORMAT binary):
 *
 *   "PGCOPY\n\377\r\n\0" | flags int32 0 | extension length int32 0
 *   per row:  field count int16 | per field: length int32 (-1: NULL), bytes
 *   trailer:  int16 -1
 *
 * All integers big-endian.  No escaping and no hex: a message goes as its
 * own bytes, a time as microseconds since 2000-01-01 (timestamptz), jsonb
 * as a version byte (1) and its text.
 *
 * Out of memory is sticky (c->oom): the writer goes on calling, checks
 * once at the end, and drops the data.  The recorder writes tens of
 * thousands of fields per batch here, so the appends are inline.
 */
#include "record.h"

#include <string.h>

/* Append n bytes; the fast path is a copy into room already there. */
static inline void
put(struct pgcopy *c, const void *s, size_t n)
{
	struct hbuf *b = &c->b;

	if (n == 0)
		return;
	if (b->cap - b->len >= n) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	} else if (hbuf_add(b, s, n) < 0)
		c->oom = 1;
}

static inline void
put_u16(struct pgcopy *c, uint16_t v)
{
	unsigned char x[2] = { v >> 8, v & 0xff };

	put(c, x, 2);
}

static inline void
put_u32(struct pgcopy *c, uint32_t v)
{
	unsigned char x[4] = { v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff,
	    v & 0xff };

	put(c, x, 4);
}

void
pgcopy_reset(struct pgcopy *c)
{
	hbuf_reset(&c->b);
	c->oom = 0;
	c->rows = 0;
}

void
pgcopy_free(struct pgcopy *c)
{
	hbuf_free(&c->b);
	c->oom = 0;
	c->rows = 0;
}

void
pgcopy_row(struct pgcopy *c, uint16_t nfields)
{
	if (c->rows++ == 0)
		put(c, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
	put_u16(c, nfields);
}

void
pgcopy_end(struct pgcopy *c)
{
	if (c->rows > 0)
		put_u16(c, 0xffff);
}

void
pgcopy_null(struct pgcopy *c)
{
	put_u32(c, 0xffffffffu);
}

void
pgcopy_bytes(struct pgcopy *c, const void *s, size_t n)
{
	put_u32(c, (uint32_t)n);
	put(c, s, n);
}

/* Text with a byte before it (jsonb's version), or none (pre -1).
 * PostgreSQL text holds neither NUL nor invalid UTF-8, and a value it
 * refuses would stop the whole COPY, so such bytes become U+FFFD. */
static void
text_pre(struct pgcopy *c, int pre, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, start = 0, at;

	if (s == NULL) {
		pgcopy_null(c);
		return;
	}
	put_u32(c, 0);               /* its length, once known */
	at = c->b.len;
	if (pre >= 0) {
		char x = (char)pre;
		put(c, &x, 1);
	}
	while (i < n) {
		size_t l;
		uint64_t w;
		/* Eight bytes at a time while none is NUL or above 0x7f (a
		 * NUL borrows into its own top bit). */
		if (i + 8 <= n && (memcpy(&w, u + i, 8),
		    !(((w - UINT64_C(0x0101010101010101)) | w) &
		    UINT64_C(0x8080808080808080)))) {
			i += 8;
			continue;
		}
		if (u[i] >= 0x01 && u[i] < 0x80) {
			i++;
			continue;
		}
		if ((l = u[i] == 0 ? 0 : utf8_seq(u + i, n - i)) > 0) {
			i += l;
			continue;
		}
		put(c, s + start, i - start);
		put(c, "\xef\xbf\xbd", 3);
		start = ++i;
	}
	put(c, s + start, i - start);
	if (!c->oom) {
		uint32_t len = (uint32_t)(c->b.len - at);
		unsigned char *x = (unsigned char *)c->b.p + at - 4;
		x[0] = len >> 24;
		x[1] = (len >> 16) & 0xff;
		x[2] = (len >> 8) & 0xff;
		x[3] = len & 0xff;
	}
}

void
pgcopy_text(struct pgcopy *c, const char *s, size_t n)
{
	text_pre(c, -1, s, n);
}

void
pgcopy_str(struct pgcopy *c, const char *s)
{
	text_pre(c, -1, s, s != NULL ? strlen(s) : 0);
}

void
pgcopy_jsonb(struct pgcopy *c, const char *s)
{
	text_pre(c, 1, s, s != NULL ? strlen(s) : 0);
}

void
pgcopy_char(struct pgcopy *c, char v)
{
	put_u32(c, 1);
	put(c, &v, 1);
}

void
pgcopy_int4(struct pgcopy *c, uint32_t v)
{
	put_u32(c, 4);
	put_u32(c, v);
}

void
pgcopy_int8(struct pgcopy *c, uint64_t v)
{
	put_u32(c, 8);
	put_u32(c, (uint32_t)(v >> 32));
	put_u32(c, (uint32_t)(v & 0xffffffffu));
}

void
pgcopy_float8(struct pgcopy *c, double v)
{
	uint64_t u;

	memcpy(&u, &v, sizeof(u));   /* IEEE 754, sent big-endian */
	pgcopy_int8(c, u);
}

void
pgcopy_time_ms(struct pgcopy *c, uint64_t ms)
{
	int64_t us;

	if (ms == 0) {
		pgcopy_null(c);
		return;
	}
	us = ((int64_t)ms - INT64_C(946684800000)) * 1000;
	pgcopy_int8(c, (uint64_t)us);
}
