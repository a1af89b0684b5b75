/*
 * test_util.c - the helpers of common/util.h: the buffer, UTF-8, FNV-1a
 * and the backoff.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

Test(hbuf, appends_consumes_and_reclaims_space)
{
	struct hbuf b = { 0 };
	char big[1000];

	cr_assert_eq(hbuf_avail(&b), 0);
	cr_assert_eq(hbuf_puts(&b, "hello "), 0);
	cr_assert_eq(hbuf_printf(&b, "%s %d", "world", 42), 0);
	cr_assert_eq(hbuf_putc(&b, '!'), 0);
	cr_assert_eq(hbuf_avail(&b), strlen("hello world 42!"));
	cr_assert(memcmp(hbuf_data(&b), "hello world 42!", hbuf_avail(&b)) == 0);
	hbuf_consume(&b, 6);
	cr_assert(memcmp(hbuf_data(&b), "world", 5) == 0);
	/* growing moves the unread bytes to the front first */
	memset(big, 'x', sizeof(big));
	cr_assert_eq(hbuf_add(&b, big, sizeof(big)), 0);
	cr_assert_eq(b.off, 0);
	cr_assert_eq(hbuf_avail(&b), 9 + sizeof(big));
	cr_assert(memcmp(hbuf_data(&b), "world 42!x", 10) == 0);
	hbuf_consume(&b, hbuf_avail(&b));
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.off, 0);
	cr_assert_gt(b.cap, 0);
	hbuf_reset(&b);
	hbuf_free(&b);
	cr_assert_null(b.p);
	cr_assert_eq(b.cap, 0);
	hbuf_free(&b);               /* twice: harmless */
}

Test(hbuf, refuses_a_size_that_would_overflow)
{
	struct hbuf b = { 0 };

	cr_assert_eq(hbuf_puts(&b, "x"), 0);
	cr_assert_eq(hbuf_reserve(&b, SIZE_MAX - 1), -1);
	cr_assert_eq(hbuf_avail(&b), 1);
	hbuf_free(&b);
}

Test(utf8, accepts_valid_and_refuses_each_kind_of_invalid)
{
	static const struct { const char *s; size_t n; int ok; } cases[] = {
		{ "", 0, 0 },
		{ "plain ascii", 11, 0 },
		{ "caf\xc3\xa9", 5, 0 },                  /* U+00E9 */
		{ "\xe2\x82\xac", 3, 0 },                 /* U+20AC */
		{ "\xf0\x9f\x90\x9d", 4, 0 },             /* U+1F41D */
		{ "\xf4\x8f\xbf\xbf", 4, 0 },             /* U+10FFFF */
		{ "a\0b", 3, -1 },                        /* NUL */
		{ "\xc0\x80", 2, -1 },                    /* overlong NUL */
		{ "\xc1\xbf", 2, -1 },                    /* overlong */
		{ "\xe0\x80\xaf", 3, -1 },                /* overlong */
		{ "\xf0\x8f\xbf\xbf", 4, -1 },            /* overlong */
		{ "\xed\xa0\x80", 3, -1 },                /* surrogate D800 */
		{ "\xed\xbf\xbf", 3, -1 },                /* surrogate DFFF */
		{ "\xf4\x90\x80\x80", 4, -1 },            /* > U+10FFFF */
		{ "\xf5\x80\x80\x80", 4, -1 },
		{ "\xc3", 1, -1 },                        /* truncated */
		{ "\xe2\x82", 2, -1 },
		{ "\xc3\x28", 2, -1 },                    /* bad continuation */
		{ "\x80", 1, -1 },                        /* lone continuation */
		{ "\xff", 1, -1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(utf8_valid(cases[i].s, cases[i].n), cases[i].ok,
		    "case %zu: got %d, want %d", i,
		    utf8_valid(cases[i].s, cases[i].n), cases[i].ok);
	cr_assert_eq(utf8_seq((const unsigned char *)"\xe2\x82\xac!", 4), 3);
	cr_assert_eq(utf8_seq((const unsigned char *)"\0", 1), 1);
	cr_assert_eq(utf8_seq((const unsigned char *)"\xe2\x82", 2), 0);
}

Test(hash, fnv1a_matches_the_published_vectors)
{
	/* FNV-1a 64 test vectors (Fowler, Noll, Vo) */
	cr_assert_eq(hash_fnv1a("", 0), UINT64_C(0xcbf29ce484222325));
	cr_assert_eq(hash_fnv1a("a", 1), UINT64_C(0xaf63dc4c8601ec8c));
	cr_assert_eq(hash_fnv1a("foobar", 6), UINT64_C(0x85944171f73967e8));
	cr_assert_eq(hash_fnv1a_add(hash_fnv1a("foo", 3), "bar", 3),
	    hash_fnv1a("foobar", 6));
}

Test(backoff, doubles_to_the_cap_and_says_when_an_outage_starts)
{
	struct backoff bo;
	int first = -1;
	unsigned want[] = { 100, 200, 400, 800, 1600, 3200, 5000, 5000 };

	backoff_init(&bo, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
	cr_assert_eq(backoff_ok(&bo, 50), 0);  /* no outage: lasted 0 */
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		unsigned d = backoff_fail(&bo, 1000 + i, &first);
		cr_expect_eq(d, want[i], "failure %zu: %u ms, want %u", i, d,
		    want[i]);
		cr_expect_eq(first, i == 0, "failure %zu: first %d", i, first);
	}
	cr_assert_eq(backoff_ok(&bo, 4000), 3000);
	cr_assert_eq(backoff_fail(&bo, 5000, &first), 100);
	cr_assert_eq(first, 1);
	backoff_init(&bo, 300, 1000);
	cr_assert_eq(backoff_fail(&bo, 0, NULL), 300);
	cr_assert_eq(backoff_fail(&bo, 0, NULL), 600);
	cr_assert_eq(backoff_fail(&bo, 0, NULL), 1000);
	cr_assert_eq(backoff_fail(&bo, 0, NULL), 1000);
}
