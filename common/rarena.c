/*
 * rarena.c - hiredis replies from an arena (rarena.h).
 *
 * hiredis builds a reply with a malloc per object and per string (ten
 * for a stream entry) and frees them one by one after the callback.  Here
 * they come from blocks of our own: each object is carved from the
 * current block, and freeing the reply (the top object: hiredis frees
 * nothing else) makes the blocks free for the next one.  One reply is
 * alive at a time: hiredis frees each after its callback, before it
 * parses the next.
 */
#include "rarena.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define RA_POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define RA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define RA_POISON(p, n)   ((void)(p), (void)(n))
#define RA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define RA_BLOCK_MIN  (64u << 10)
#define RA_KEEP_MAX   (1u << 20)   /* larger and mostly idle: given back */
#define RA_ALIGN      16u

struct ra_block {
	struct ra_block *next;       /* filled before this one */
	size_t used, cap;
	_Alignas(RA_ALIGN) unsigned char data[];
};

struct rarena {
	struct ra_block *cur;
	size_t want;                 /* the size of the next block */
};

/* The top object of a reply: the arena its free resets. */
struct ra_top {
	struct rarena *arena;
	_Alignas(RA_ALIGN) redisReply r;
};

static void *
ra_alloc(struct rarena *a, size_t n)
{
	struct ra_block *b = a->cur;
	void *p;

	n = (n + RA_ALIGN - 1) & ~(size_t)(RA_ALIGN - 1);
	if (b == NULL || b->cap - b->used < n) {
		size_t cap = a->want > n ? a->want : n;

		if ((b = malloc(sizeof(*b) + cap)) == NULL)
			return NULL;
		b->next = a->cur;
		b->used = 0;
		b->cap = cap;
		RA_POISON(b->data, cap);
		a->cur = b;
	}
	p = b->data + b->used;
	b->used += n;
	RA_UNPOISON(p, n);
	return p;
}

/* Free every block; returns the bytes they had given out. */
static size_t
ra_drop(struct rarena *a)
{
	struct ra_block *b, *next;
	size_t total = 0;

	for (b = a->cur; b != NULL; b = next) {
		next = b->next;
		total += b->used;
		free(b);
	}
	a->cur = NULL;
	return total;
}

/* The reply is freed: its memory serves the next one.  It took more than
 * one block: one block of their total from now on; a large block that the
 * last reply hardly used is given back. */
static void
ra_reset(struct rarena *a)
{
	struct ra_block *b = a->cur;
	size_t total;

	if (b != NULL && b->next == NULL && (b->cap <= RA_KEEP_MAX ||
	    b->used >= b->cap / 4)) {
		b->used = 0;
		RA_POISON(b->data, b->cap);
		return;
	}
	total = ra_drop(a);
	a->want = total > RA_BLOCK_MIN ? total : RA_BLOCK_MIN;
}

/* A reply object of type, with room for extra bytes after it, linked to
 * its parent array. */
static redisReply *
ra_reply(const redisReadTask *task, int type, size_t extra)
{
	struct rarena *a = task->privdata;
	redisReply *r;

	if (task->parent == NULL) {
		struct ra_top *t = ra_alloc(a, sizeof(*t) + extra);

		if (t == NULL)
			return NULL;
		t->arena = a;
		r = &t->r;
	} else {
		redisReply *parent = task->parent->obj;

		if ((r = ra_alloc(a, sizeof(*r) + extra)) == NULL)
			return NULL;
		parent->element[task->idx] = r;
	}
	memset(r, 0, sizeof(*r));
	r->type = type;
	return r;
}

static void *
ra_string(const redisReadTask *task, char *str, size_t len)
{
	redisReply *r = ra_reply(task, task->type, len + 1);

	if (r == NULL)
		return NULL;
	r->str = (char *)(r + 1);
	memcpy(r->str, str, len);
	r->str[len] = '\0';
	r->len = len;
	return r;
}

static void *
ra_array(const redisReadTask *task, int elements)
{
	size_t n = elements > 0 ? (size_t)elements : 0;
	redisReply *r = ra_reply(task, REDIS_REPLY_ARRAY, n * sizeof(r));

	if (r == NULL)
		return NULL;
	r->elements = n;
	if (n > 0) {
		r->element = (redisReply **)(r + 1);
		memset(r->element, 0, n * sizeof(*r->element));
	}
	return r;
}

static void *
ra_integer(const redisReadTask *task, long long value)
{
	redisReply *r = ra_reply(task, REDIS_REPLY_INTEGER, 0);

	if (r != NULL)
		r->integer = value;
	return r;
}

static void *
ra_nil(const redisReadTask *task)
{
	return ra_reply(task, REDIS_REPLY_NIL, 0);
}

static void
ra_free(void *obj)
{
	struct ra_top *t = (struct ra_top *)(void *)((char *)obj -
	    offsetof(struct ra_top, r));

	ra_reset(t->arena);
}

/* After rarena_detach: a context hiredis frees later finds no arena. */
static void
ra_free_detached(void *obj)
{
	(void)obj;
}

static redisReplyObjectFunctions ra_fns = {
	ra_string, ra_array, ra_integer, ra_nil, ra_free
};
static redisReplyObjectFunctions ra_detached_fns = {
	ra_string, ra_array, ra_integer, ra_nil, ra_free_detached
};

struct rarena *
rarena_new(void)
{
	struct rarena *a = calloc(1, sizeof(*a));

	if (a != NULL)
		a->want = RA_BLOCK_MIN;
	return a;
}

void
rarena_free(struct rarena *a)
{
	if (a == NULL)
		return;
	(void)ra_drop(a);
	free(a);
}

void
rarena_attach(struct rarena *a, redisReader *reader)
{
	reader->fn = &ra_fns;
	reader->privdata = a;
}

void
rarena_detach(redisReader *reader)
{
	reader->fn = &ra_detached_fns;
}
