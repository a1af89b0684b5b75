/*
 * tstats.c - task counters and histograms the recorder keeps (record.h
 * says what counts and when).
 *
 * Three tables beside the counters, all bounded:
 *
 *   labels   capabilities and capability/agent pairs, each found by an
 *            open-addressing index of TS_SLOTS slots (at most
 *            SUP_TSTATS_LABELS of both kinds together)
 *   tasks    task id hash -> its capability, the attempt last queued and
 *            when, the last attempt counted as started: two generations
 *            of SUP_TSTATS_TASKS (the oldest half forgotten)
 *   seen     the entries counted (hash of stream and id): an idset of
 *            two generations of SUP_TSTATS_TASKS, so an entry read again
 *            soon after (a reconnect, a new recorder) counts once
 */
#include "rec.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define TS_SLOTS   2048          /* > 2 * SUP_TSTATS_LABELS, a power of 2 */
#define TS_NOCAP   UINT32_MAX

const double sup_hist_le[SUP_HIST_LE] = {
	.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300,
};

struct tmap_slot {
	uint64_t h;                  /* 0: empty */
	uint64_t queued_ms;          /* of attempt q_att */
	uint32_t cap;                /* TS_NOCAP: no room for it */
	uint16_t q_att;              /* the attempt last queued */
	uint16_t started;            /* the last attempt counted started */
};

struct tmap_gen {
	struct tmap_slot *slot;
	size_t n;
};

struct tstats_priv {
	uint32_t cap_slot[TS_SLOTS];     /* index in caps + 1; 0 empty */
	uint32_t pair_slot[TS_SLOTS];    /* index in pairs + 1 */
	unsigned capcaps, cappairs;
	struct tmap_gen gen[2];          /* allocated on first use */
	int cur;
	size_t mask;
	struct idset *seen;
};

struct sup_tstats *
sup_tstats_new(void)
{
	struct sup_tstats *s = calloc(1, sizeof(*s));

	if (s == NULL || (s->p = calloc(1, sizeof(*s->p))) == NULL ||
	    (s->p->seen = idset_new(SUP_TSTATS_TASKS)) == NULL) {
		sup_tstats_free(s);
		return NULL;
	}
	s->p->mask = 2 * SUP_TSTATS_TASKS - 1;
	return s;
}

void
sup_tstats_free(struct sup_tstats *s)
{
	if (s == NULL)
		return;
	for (unsigned i = 0; i < s->ncaps; i++)
		free(s->caps[i].name);
	for (unsigned i = 0; i < s->npairs; i++)
		free(s->pairs[i].agent);
	free(s->caps);
	free(s->pairs);
	if (s->p != NULL) {
		free(s->p->gen[0].slot);
		free(s->p->gen[1].slot);
		idset_free(s->p->seen);
		free(s->p);
	}
	free(s);
}

void
sup_hist_observe(struct sup_hist *h, double v)
{
	unsigned i = 0;

	if (v < 0)
		v = 0;
	while (i < SUP_HIST_LE && v > sup_hist_le[i])
		i++;
	h->bucket[i]++;
	h->count++;
	h->sum += v;
}

/* ---- labels ---- */

/* The capability's index, made if new; TS_NOCAP when there is no room. */
static uint32_t
cap_get(struct sup_tstats *s, const char *name)
{
	struct tstats_priv *p = s->p;
	size_t i = hash_fnv1a(name, strlen(name)) & (TS_SLOTS - 1);
	struct sup_tstats_cap *c;

	for (; p->cap_slot[i] != 0; i = (i + 1) & (TS_SLOTS - 1))
		if (strcmp(s->caps[p->cap_slot[i] - 1].name, name) == 0)
			return p->cap_slot[i] - 1;
	if (s->ncaps + s->npairs >= SUP_TSTATS_LABELS)
		return TS_NOCAP;
	if (s->ncaps == p->capcaps) {
		unsigned n = p->capcaps ? p->capcaps * 2 : 16;
		if ((c = realloc(s->caps, n * sizeof(*c))) == NULL)
			return TS_NOCAP;
		s->caps = c;
		p->capcaps = n;
	}
	c = &s->caps[s->ncaps];
	memset(c, 0, sizeof(*c));
	if ((c->name = strdup(name)) == NULL)
		return TS_NOCAP;
	p->cap_slot[i] = ++s->ncaps;
	return s->ncaps - 1;
}

static struct sup_tstats_pair *
pair_get(struct sup_tstats *s, uint32_t cap, const char *agent)
{
	struct tstats_priv *p = s->p;
	uint64_t h = hash_fnv1a_add(hash_fnv1a(&cap, sizeof(cap)), agent,
	    strlen(agent));
	size_t i = h & (TS_SLOTS - 1);
	struct sup_tstats_pair *q;

	if (cap == TS_NOCAP)
		return NULL;
	for (; p->pair_slot[i] != 0; i = (i + 1) & (TS_SLOTS - 1)) {
		q = &s->pairs[p->pair_slot[i] - 1];
		if (q->cap == cap && strcmp(q->agent, agent) == 0)
			return q;
	}
	if (s->ncaps + s->npairs >= SUP_TSTATS_LABELS)
		return NULL;
	if (s->npairs == p->cappairs) {
		unsigned n = p->cappairs ? p->cappairs * 2 : 16;
		if ((q = realloc(s->pairs, n * sizeof(*q))) == NULL)
			return NULL;
		s->pairs = q;
		p->cappairs = n;
	}
	q = &s->pairs[s->npairs];
	memset(q, 0, sizeof(*q));
	q->cap = cap;
	if ((q->agent = strdup(agent)) == NULL)
		return NULL;
	p->pair_slot[i] = ++s->npairs;
	return q;
}

/* ---- tasks ---- */

static struct tmap_slot *
gen_find(const struct tstats_priv *p, const struct tmap_gen *g, uint64_t h)
{
	if (g->slot == NULL)
		return NULL;
	for (size_t i = h & p->mask; g->slot[i].h != 0; i = (i + 1) & p->mask)
		if (g->slot[i].h == h)
			return &g->slot[i];
	return NULL;
}

static struct tmap_slot *
task_find(struct tstats_priv *p, uint64_t h)
{
	struct tmap_slot *t = gen_find(p, &p->gen[p->cur], h);

	return t != NULL ? t : gen_find(p, &p->gen[1 - p->cur], h);
}

/* The task's slot in the newer generation (copied there from the older
 * one, or made empty); NULL when out of memory. */
static struct tmap_slot *
task_put(struct tstats_priv *p, uint64_t h)
{
	struct tmap_gen *g = &p->gen[p->cur];
	struct tmap_slot *t, old = { .h = h, .cap = TS_NOCAP };
	size_t i;

	if ((t = gen_find(p, g, h)) != NULL)
		return t;
	if ((t = gen_find(p, &p->gen[1 - p->cur], h)) != NULL)
		old = *t;
	if (g->slot == NULL && (g->slot = calloc(p->mask + 1,
	    sizeof(*g->slot))) == NULL)
		return NULL;
	if (g->n == SUP_TSTATS_TASKS) {
		p->cur = 1 - p->cur;
		g = &p->gen[p->cur];
		if (g->slot == NULL && (g->slot = calloc(p->mask + 1,
		    sizeof(*g->slot))) == NULL)
			return NULL;
		memset(g->slot, 0, (p->mask + 1) * sizeof(*g->slot));
		g->n = 0;
	}
	for (i = h & p->mask; g->slot[i].h != 0; i = (i + 1) & p->mask)
		;
	g->slot[i] = old;
	g->n++;
	return &g->slot[i];
}

/* ---- counting ---- */

/* A start of attempt st->attempt of the task t (not NULL), counted once
 * per attempt: the queue wait is observed with it. */
static void
count_start(struct sup_tstats *s, struct tmap_slot *t,
    const struct rec_stat *st)
{
	struct sup_tstats_pair *q;

	if (st->attempt <= t->started)
		return;
	t->started = (uint16_t)st->attempt;
	if ((q = pair_get(s, t->cap, st->agent)) == NULL) {
		s->dropped++;
		return;
	}
	q->started++;
	if (t->q_att == st->attempt && t->queued_ms != 0 && st->t0 != 0 &&
	    st->t0 >= t->queued_ms)
		sup_hist_observe(&s->caps[t->cap].wait,
		    (double)(st->t0 - t->queued_ms) / 1000.);
}

static void
count_one(struct sup_tstats *s, const struct rec_stat *st)
{
	struct tstats_priv *p = s->p;
	struct sup_tstats_pair *q;
	struct tmap_slot *t;
	uint32_t cap;

	if (st->kind == REC_SK_DEAD) {
		cap = cap_get(s, st->cap);
		if (st->cap[0] == '\0' && st->task != 0 &&
		    (t = task_find(p, st->task)) != NULL && t->cap != TS_NOCAP)
			cap = t->cap;
		if (cap == TS_NOCAP)
			s->dropped++;
		else if (st->agent[0] == '\0')
			s->caps[cap].dead++;
		else if ((q = pair_get(s, cap, st->agent)) != NULL)
			q->dead++;
		else
			s->dropped++;
		return;
	}
	if (st->task == 0)
		return;
	if (st->kind == REC_SK_QUEUED) {
		if ((t = task_put(p, st->task)) == NULL)
			return;
		t->cap = cap_get(s, st->cap);
		t->q_att = (uint16_t)st->attempt;
		t->queued_ms = st->t0;
		if (st->attempt <= 1 && t->cap != TS_NOCAP)
			s->caps[t->cap].submitted++;
		else if (st->attempt <= 1)
			s->dropped++;
		return;
	}
	/* A start or an end whose queue entry is unknown: under "". */
	if ((t = task_find(p, st->task)) == NULL) {
		if ((t = task_put(p, st->task)) == NULL)
			return;
		t->cap = cap_get(s, "");
	}
	count_start(s, t, st);
	if (st->kind == REC_SK_STARTED)
		return;
	if (t->cap == TS_NOCAP || (q = pair_get(s, t->cap, st->agent)) == NULL) {
		s->dropped++;
		return;
	}
	if (st->kind == REC_SK_OK)
		q->completed++;
	else
		q->failed++;
	if (st->t0 != 0 && st->t1 >= st->t0)
		sup_hist_observe(&s->caps[t->cap].run,
		    (double)(st->t1 - st->t0) / 1000.);
}

void
rec_stats_apply(struct sup_recorder *rec, struct rec_txn *tx)
{
	struct sup_tstats *s = rec->tstats;

	for (size_t i = 0; s != NULL && i < tx->nstats; i++) {
		const struct rec_stat *st = &tx->stats[i];

		if (idset_has(s->p->seen, st->entry))
			continue;
		idset_add(s->p->seen, st->entry, 0);
		s->counted++;
		count_one(s, st);
	}
	tx->nstats = 0;
}

/* ---- what the decoder hands over ---- */

struct rec_stat *
rec_stat_push(struct sup_recorder *rec, int si, const char *entry,
    enum rec_sk kind)
{
	struct rec_txn *tx = rec->fill;
	const char *key = rec->streams[si].key;
	struct rec_stat *st;
	uint64_t h;

	if (rec->tstats == NULL)
		return NULL;
	if (tx->nstats == tx->capstats) {
		size_t cap = tx->capstats ? tx->capstats * 2 : 256;
		if ((st = realloc(tx->stats, cap * sizeof(*st))) == NULL)
			return NULL;
		tx->stats = st;
		tx->capstats = cap;
	}
	h = hash_fnv1a_add(hash_fnv1a(key, strlen(key) + 1), entry,
	    strlen(entry));
	st = &tx->stats[tx->nstats++];
	memset(st, 0, offsetof(struct rec_stat, cap));
	st->cap[0] = st->agent[0] = '\0';
	st->kind = kind;
	st->entry = h ? h : 1;
	return st;
}

void
rec_key_cap(const char *prefix, const char *key, size_t keylen, char *cap,
    size_t len)
{
	size_t pl = strlen(prefix), n;
	const char *s, *e;

	cap[0] = '\0';
	if (len < 2 || keylen <= pl + 1 || strncmp(key, prefix, pl) != 0 ||
	    key[pl] != ':')
		return;
	s = key + pl + 1;
	keylen -= pl + 1;
	if (keylen > 2 && strncmp(s, "q:", 2) == 0) {
		/* q:<cap>:<prio> (or q:@<agent>:<prio>) */
		s += 2;
		keylen -= 2;
		for (e = s + keylen; e > s && e[-1] != ':'; e--)
			;
		if (e == s)
			return;
		n = (size_t)(e - 1 - s);
	} else if (keylen > 7 && strncmp(s, "direct:", 7) == 0) {
		/* direct:<agent>/<n>: "@<agent>" */
		s += 7;
		keylen -= 7;
		for (e = s + keylen; e > s && e[-1] != '/'; e--)
			;
		if (e == s)
			return;
		cap[0] = '@';
		cap++;
		len--;
		n = (size_t)(e - 1 - s);
	} else
		return;
	if (n >= len)
		n = len - 1;
	memcpy(cap, s, n);
	cap[n] = '\0';
}
