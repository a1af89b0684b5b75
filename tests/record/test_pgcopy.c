/*
 * test_pgcopy.c - record/pgcopy.c: the bytes of PostgreSQL's binary COPY
 * format, field by field.  No services.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "record.h"

#define HEADER "PGCOPY\n\377\r\n\0" "\0\0\0\0" "\0\0\0\0"
#define HEADER_LEN 19

static void
expect_bytes(const struct pgcopy *c, const char *want, size_t n)
{
	cr_assert_eq(c->oom, 0);
	cr_assert_eq(c->b.len, n, "length %zu, want %zu", c->b.len, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq((unsigned char)c->b.p[i], (unsigned char)want[i],
		    "byte %zu: %02x, want %02x", i, (unsigned char)c->b.p[i],
		    (unsigned char)want[i]);
}

/* The bytes after the header and the row's field count. */
static void
expect_field(void (*put)(struct pgcopy *, const void *), const void *arg,
    const char *want, size_t n)
{
	struct pgcopy c = { 0 };
	char buf[256];

	pgcopy_row(&c, 1);
	put(&c, arg);
	memcpy(buf, HEADER "\0\1", HEADER_LEN + 2);
	memcpy(buf + HEADER_LEN + 2, want, n);
	expect_bytes(&c, buf, HEADER_LEN + 2 + n);
	pgcopy_free(&c);
}

Test(pgcopy, nothing_without_rows)
{
	struct pgcopy c = { 0 };

	pgcopy_end(&c);
	cr_assert_eq(c.b.len, 0);
	cr_assert_eq(c.rows, 0);
	pgcopy_free(&c);
}

Test(pgcopy, header_row_and_trailer)
{
	static const char want[] = HEADER
	    "\0\3"                          /* three fields */
	    "\0\0\0\4" "\0\0\0\7"           /* int4 7 */
	    "\377\377\377\377"              /* NULL */
	    "\0\0\0\2" "ab"                 /* text */
	    "\0\2"                          /* a second row, two fields */
	    "\0\0\0\1" "t"                  /* "char" */
	    "\0\0\0\3" "x\0y"               /* bytea: its bytes as they are */
	    "\377\377";                     /* trailer */
	struct pgcopy c = { 0 };

	pgcopy_row(&c, 3);
	pgcopy_int4(&c, 7);
	pgcopy_null(&c);
	pgcopy_str(&c, "ab");
	pgcopy_row(&c, 2);
	pgcopy_char(&c, 't');
	pgcopy_bytes(&c, "x\0y", 3);
	pgcopy_end(&c);
	cr_assert_eq(c.rows, 2);
	expect_bytes(&c, want, sizeof(want) - 1);
	/* reset: empty, and the next row starts with the header again */
	pgcopy_reset(&c);
	cr_assert_eq(c.b.len, 0);
	pgcopy_row(&c, 3);
	pgcopy_int4(&c, 7);
	pgcopy_null(&c);
	pgcopy_str(&c, "ab");
	cr_assert_eq(c.b.len, HEADER_LEN + 2 + 8 + 4 + 6);
	cr_assert(memcmp(c.b.p, want, c.b.len) == 0);
	pgcopy_free(&c);
	cr_assert_null(c.b.p);
}

static void
put_str(struct pgcopy *c, const void *s)
{
	pgcopy_str(c, s);
}

static void
put_jsonb(struct pgcopy *c, const void *s)
{
	pgcopy_jsonb(c, s);
}

Test(pgcopy, text_null_and_empty)
{
	expect_field(put_str, NULL, "\377\377\377\377", 4);
	expect_field(put_str, "", "\0\0\0\0", 4);
	expect_field(put_jsonb, NULL, "\377\377\377\377", 4);
}

Test(pgcopy, text_keeps_valid_utf8)
{
	/* two- and four-byte characters across the 8-byte steps */
	static const char s[] = "0123456\xc3\xa9" "0123456\xf0\x9f\x98\x80x'\"\\";

	expect_field(put_str, s, "\0\0\0\x18" "0123456\xc3\xa9"
	    "0123456\xf0\x9f\x98\x80x'\"\\", 4 + 24);
}

Test(pgcopy, text_replaces_nul_and_invalid_utf8)
{
	struct pgcopy c = { 0 };
	static const char in[] = "a\0b\xff" "c\xc3(" "0123456789\xed\xa0\x80z";
	static const char want[] = "\0\0\0\x21"
	    "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd("
	    "0123456789\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz";

	pgcopy_row(&c, 1);
	pgcopy_text(&c, in, sizeof(in) - 1);
	cr_assert_eq(c.b.len, HEADER_LEN + 2 + sizeof(want) - 1);
	cr_assert(memcmp(c.b.p + HEADER_LEN + 2, want, sizeof(want) - 1) == 0);
	pgcopy_free(&c);
}

Test(pgcopy, jsonb_has_its_version_byte)
{
	expect_field(put_jsonb, "{\"a\":1}", "\0\0\0\x08" "\1{\"a\":1}", 12);
}

Test(pgcopy, integers_and_times_big_endian)
{
	struct pgcopy c = { 0 };
	static const char want[] =
	    "\0\0\0\x08" "\x01\x02\x03\x04\x05\x06\x07\x08"  /* int8 */
	    "\0\0\0\x04" "\xde\xad\xbe\xef"                  /* int4 */
	    "\377\377\377\377"                               /* time 0: NULL */
	    "\0\0\0\x08" "\0\0\0\0\0\0\0\0"                  /* 2000-01-01 */
	    "\0\0\0\x08" "\0\0\0\0\0\0\x03\xe8"              /* + 1 ms */
	    "\0\0\0\x08" "\xff\xff\xff\xff\xff\xff\xfc\x18"; /* - 1 ms */

	pgcopy_row(&c, 6);
	pgcopy_int8(&c, UINT64_C(0x0102030405060708));
	pgcopy_int4(&c, 0xdeadbeef);
	pgcopy_time_ms(&c, 0);
	pgcopy_time_ms(&c, UINT64_C(946684800000));
	pgcopy_time_ms(&c, UINT64_C(946684800001));
	pgcopy_time_ms(&c, UINT64_C(946684799999));
	cr_assert_eq(c.b.len, HEADER_LEN + 2 + sizeof(want) - 1);
	cr_assert(memcmp(c.b.p + HEADER_LEN + 2, want, sizeof(want) - 1) == 0);
	pgcopy_free(&c);
}

Test(pgcopy, long_text_grows_the_buffer)
{
	struct pgcopy c = { 0 };
	static char s[100000];

	memset(s, 'x', sizeof(s));
	s[50000] = '\0';             /* replaced, not an end */
	pgcopy_row(&c, 1);
	pgcopy_text(&c, s, sizeof(s));
	cr_assert_eq(c.oom, 0);
	cr_assert_eq(c.b.len, HEADER_LEN + 2 + 4 + sizeof(s) + 2);
	cr_assert_eq((unsigned char)c.b.p[HEADER_LEN + 2 + 1], 0x01);
	cr_assert(memcmp(c.b.p + HEADER_LEN + 6 + 50000, "\xef\xbf\xbd", 3) == 0);
	pgcopy_free(&c);
}
