/*
 * util.h - the small things every part of Hive needs, written once:
 *
 *   struct hbuf      a growable byte buffer with a read offset
 *   utf8_seq()       one strict UTF-8 sequence; utf8_valid() a whole text
 *   hash_fnv1a()     FNV-1a, 64 bits: stable across runs and hosts
 *   struct backoff   "100 ms doubling to a cap, logged once per outage"
 *
 * None of them allocates but struct hbuf, and none of them logs: the
 * caller owns the words (a backoff only says whether this failure is the
 * first of an outage, i.e. the one to log).
 */
#ifndef HIVE_UTIL_H
#define HIVE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"              /* HIVE_PRINTF */

/*
 * A growable byte buffer.  Writers append at the end (len), readers
 * consume from the front (off); consumed space is reclaimed when the
 * buffer empties or before it would have to grow.  Zero-initialised it
 * is empty and owns nothing; hbuf_free releases it and leaves it so.
 * Every function that may allocate returns 0, or -1 when out of memory
 * (the buffer is then as it was).
 */
struct hbuf {
	char *p;
	size_t off;                  /* first byte not yet consumed */
	size_t len;                  /* end of the data */
	size_t cap;
};

int hbuf_reserve(struct hbuf *, size_t more);
int hbuf_add(struct hbuf *, const void *data, size_t len);
int hbuf_puts(struct hbuf *, const char *s);
int hbuf_putc(struct hbuf *, char c);
int hbuf_printf(struct hbuf *, const char *fmt, ...) HIVE_PRINTF(2, 3);
void hbuf_consume(struct hbuf *, size_t n);
void hbuf_reset(struct hbuf *);   /* empty; keeps its memory */
void hbuf_free(struct hbuf *);
static inline size_t hbuf_avail(const struct hbuf *b) { return b->len - b->off; }
static inline char *hbuf_data(const struct hbuf *b) { return b->p + b->off; }

/*
 * Length of the UTF-8 sequence at s (n > 0 bytes left), or 0 when it is
 * not a valid one: no overlong forms, no surrogates, nothing past
 * U+10FFFF (the rules of jansson and PostgreSQL).  NUL is a valid
 * sequence of length 1; callers that refuse it check for it.
 */
size_t utf8_seq(const unsigned char *s, size_t n);
/* 0 when all of s[0..n) is valid UTF-8 without NUL, else -1. */
int utf8_valid(const char *s, size_t n);

/* FNV-1a, 64 bits.  hash_fnv1a_add continues a hash (start from
 * HASH_FNV1A_INIT), so several fields hash as one. */
#define HASH_FNV1A_INIT UINT64_C(14695981039346656037)
uint64_t hash_fnv1a_add(uint64_t h, const void *data, size_t len);
static inline uint64_t hash_fnv1a(const void *data, size_t len)
{
	return hash_fnv1a_add(HASH_FNV1A_INIT, data, len);
}

/*
 * Reconnect backoff: the first retry after min_ms, each next one twice as
 * late, up to max_ms.  backoff_fail() returns the delay to wait now (ms)
 * and sets *first to 1 when this failure starts an outage (log it) and 0
 * when the outage goes on (log at debug at most); backoff_ok() ends the
 * outage and returns how long it lasted (ms, 0 if there was none).
 */
struct backoff {
	unsigned min_ms, max_ms;
	unsigned next_ms;            /* the delay of the next failure */
	int down;                    /* an outage is going on */
	uint64_t down_since_ms;
};

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

void backoff_init(struct backoff *, unsigned min_ms, unsigned max_ms);
unsigned backoff_fail(struct backoff *, uint64_t now_ms, int *first);
uint64_t backoff_ok(struct backoff *, uint64_t now_ms);

#endif
