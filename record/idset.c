/*
 * idset.c - a set of 64-bit hashes (of ids) that forgets its oldest half
 * (rec.h).
 *
 * Two generations of open-addressing tables, each taking up to gen
 * hashes in 2 * gen slots (rounded up to a power of 2; 0 is an empty
 * slot, so a hash is never 0).  When the newer is full, the older is
 * emptied and becomes the newer.  Each generation keeps the stamp of the
 * last hash added to it (the recorder: how far the ends were read then);
 * idset_forgotten() is the newest stamp of a generation forgotten so far,
 * so a caller knows what it can no longer ask about.
 */
#include "rec.h"

#include <stdlib.h>
#include <string.h>

struct idset_gen {
	uint64_t *slot;
	size_t n;
	uint64_t stamp;
};

struct idset {
	struct idset_gen gen[2];
	int cur;
	size_t max;                  /* hashes per generation */
	size_t mask;                 /* slots - 1 */
	uint64_t forgotten;
};

struct idset *
idset_new(size_t max)
{
	struct idset *s = calloc(1, sizeof(*s));
	size_t slots = 2;

	if (s == NULL)
		return NULL;
	while (slots < 2 * max)
		slots *= 2;
	s->max = max;
	s->mask = slots - 1;
	for (int g = 0; g < 2; g++)
		if ((s->gen[g].slot = calloc(slots, sizeof(uint64_t))) == NULL) {
			idset_free(s);
			return NULL;
		}
	return s;
}

void
idset_free(struct idset *s)
{
	if (s == NULL)
		return;
	free(s->gen[0].slot);
	free(s->gen[1].slot);
	free(s);
}

static int
gen_has(const struct idset *s, const struct idset_gen *g, uint64_t h)
{
	for (size_t i = h & s->mask; g->slot[i] != 0; i = (i + 1) & s->mask)
		if (g->slot[i] == h)
			return 1;
	return 0;
}

int
idset_has(const struct idset *s, uint64_t h)
{
	return gen_has(s, &s->gen[0], h) || gen_has(s, &s->gen[1], h);
}

void
idset_add(struct idset *s, uint64_t h, uint64_t stamp)
{
	struct idset_gen *g = &s->gen[s->cur];
	size_t i;

	if (gen_has(s, g, h))
		return;
	if (g->n == s->max) {
		s->cur = 1 - s->cur;
		g = &s->gen[s->cur];
		if (g->stamp > s->forgotten)
			s->forgotten = g->stamp;
		memset(g->slot, 0, (s->mask + 1) * sizeof(*g->slot));
		g->n = 0;
		g->stamp = 0;
	}
	for (i = h & s->mask; g->slot[i] != 0; i = (i + 1) & s->mask)
		;
	g->slot[i] = h;
	g->n++;
	g->stamp = stamp;
}

uint64_t
idset_forgotten(const struct idset *s)
{
	return s->forgotten;
}
