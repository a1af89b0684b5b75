/*
 * tstats.c - task counters and histograms the recorder keeps (record.h
 * says what counts and when).
 *
 * Beside the counters, three tables, all bounded:
 *
 *   labels   capabilities and capability/agent pairs, each found by an
 *            open-addressing index of TS_SLOTS slots (at most
 *            SUP_TSTATS_LABELS of both kinds together)
 *   tasks    the tasks queued and not ended: id hash -> capability, the
 *            attempt last queued and when.  Linear probing, grown by
 *            doubling up to SUP_TSTATS_TASKS; an end (result, dead
 *            letter) takes its task out (backward-shift deletion, no
 *            tombstones).  Full, the entries queued over TS_STALE_MS
 *            before the newest go (tasks Redis lost, or that never end);
 *            if none does, a new task is not remembered (its end counts
 *            under "").
 *   seen     the entries counted (hash of stream and id), and the starts
 *            counted (hash of task and attempt): idsets of two
 *            generations of TS_SEEN, so an entry read again soon after (a
 *            reconnect, a new recorder) counts once, and a task.started
 *            event read after the result of its attempt (the events
 *            stream, twice as long, lags behind) does not count again
 */
#include "rec.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define TS_SLOTS     2048        /* > 2 * SUP_TSTATS_LABELS, a power of 2 */
#define TS_NOCAP     UINT32_MAX
#define TS_SEEN      32768
#define TS_MINSLOTS  1024
#define TS_STALE_MS  (3600 * 1000)

const double sup_hist_le[SUP_HIST_LE] = {
	.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300,
};

struct tmap_slot {
	uint64_t h;                  /* 0: empty */
	uint64_t queued_ms;          /* of attempt q_att */
	uint32_t cap;                /* TS_NOCAP: no room for it */
	uint32_t q_att;              /* the attempt last queued */
};

struct tstats_priv {
	uint32_t cap_slot[TS_SLOTS];     /* index in caps + 1; 0 empty */
	uint32_t pair_slot[TS_SLOTS];    /* index in pairs + 1 */
	unsigned capcaps, cappairs;
	struct tmap_slot *slot;          /* the tasks; NULL until the first */
	size_t mask, n;
	uint64_t newest_ms;              /* the newest queued_ms put */
	struct idset *seen, *starts;
};

struct sup_tstats *
sup_tstats_new(void)
{
	struct sup_tstats *s = calloc(1, sizeof(*s));

	if (s == NULL || (s->p = calloc(1, sizeof(*s->p))) == NULL ||
	    (s->p->seen = idset_new(TS_SEEN)) == NULL ||
	    (s->p->starts = idset_new(TS_SEEN)) == NULL) {
		sup_tstats_free(s);
		return NULL;
	}
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
		free(s->p->slot);
		idset_free(s->p->seen);
		idset_free(s->p->starts);
		free(s->p);
	}
	free(s);
}

size_t
sup_tstats_tasks(const struct sup_tstats *s)
{
	return s->p->n;
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
task_find(const struct tstats_priv *p, uint64_t h)
{
	if (p->slot == NULL)
		return NULL;
	for (size_t i = h & p->mask; p->slot[i].h != 0; i = (i + 1) & p->mask)
		if (p->slot[i].h == h)
			return &p->slot[i];
	return NULL;
}

/* Take t out; the entries after it in its run move back (linear
 * probing's deletion: every entry stays reachable from its home). */
static void
task_del(struct tstats_priv *p, struct tmap_slot *t)
{
	size_t i = (size_t)(t - p->slot), j = i, k;

	for (;;) {
		j = (j + 1) & p->mask;
		if (p->slot[j].h == 0)
			break;
		k = p->slot[j].h & p->mask;
		/* j's entry stays unless its home is cyclically in (i, j] */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		p->slot[i] = p->slot[j];
		i = j;
	}
	p->slot[i].h = 0;
	p->n--;
}

static void
task_insert(struct tstats_priv *p, const struct tmap_slot *v)
{
	size_t i;

	for (i = v->h & p->mask; p->slot[i].h != 0; i = (i + 1) & p->mask)
		;
	p->slot[i] = *v;
	p->n++;
}

/* Room for one more: grown, or the stale ones dropped.  -1: none. */
static int
task_room(struct tstats_priv *p)
{
	struct tmap_slot *old = p->slot, *ns;
	size_t oslots = p->slot ? p->mask + 1 : 0, slots;

	if (p->slot != NULL && (p->n + 1) * 2 <= p->mask + 1)
		return 0;
	if (p->n >= SUP_TSTATS_TASKS) {
		for (size_t i = 0; i <= p->mask; i++)
			while (p->slot[i].h != 0 &&
			    p->slot[i].queued_ms + TS_STALE_MS < p->newest_ms)
				task_del(p, &p->slot[i]);
		return p->n < SUP_TSTATS_TASKS ? 0 : -1;
	}
	slots = oslots ? oslots * 2 : TS_MINSLOTS;
	if ((ns = calloc(slots, sizeof(*ns))) == NULL)
		return -1;
	p->slot = ns;
	p->mask = slots - 1;
	p->n = 0;
	for (size_t i = 0; i < oslots; i++)
		if (old[i].h != 0)
			task_insert(p, &old[i]);
	free(old);
	return 0;
}

/* The task's entry, made (cap TS_NOCAP) if new; NULL when there is no
 * room for it. */
static struct tmap_slot *
task_put(struct tstats_priv *p, uint64_t h)
{
	struct tmap_slot *t = task_find(p, h), v = { .h = h, .cap = TS_NOCAP };

	if (t != NULL)
		return t;
	if (task_room(p) < 0)
		return NULL;
	task_insert(p, &v);
	return task_find(p, h);
}

/* ---- counting ---- */

/* Tell the recorder's owner (record.h, sup_rec_event) that st's task is
 * now in state; cap: its capability's index, TS_NOCAP unknown. */
static void
tell(struct sup_recorder *rec, const struct rec_stat *st, const char *state,
    uint32_t cap)
{
	struct sup_tstats *s = rec->tstats;
	struct sup_rec_event e = { .type = "task", .id = st->id,
	    .state = state, .agent = st->agent, .instance = st->instance,
	    .workflow = st->workflow, .attempt = st->attempt,
	    .total = -1, .completed = -1, .failed = -1 };

	if (rec->event == NULL || st->id[0] == '\0')
		return;
	if (cap != TS_NOCAP)
		e.capability = s->caps[cap].name;
	else if (st->cap[0] != '\0')
		e.capability = st->cap;
	if (strcmp(state, "failed") == 0 || strcmp(state, "dead") == 0)
		e.error = st->error;
	rec->event(&e, rec->event_arg);
	if (st->kind != REC_SK_DEAD)
		return;
	e.type = "dead";
	e.state = "added";
	e.code = proto_code_name(st->code);
	rec->event(&e, rec->event_arg);
}

/* A start of attempt st->attempt of the task (t its entry, NULL when
 * not known: its capability is then ""), counted once per attempt; the
 * queue wait is observed with it. */
static void
count_start(struct sup_recorder *rec, const struct tmap_slot *t,
    const struct rec_stat *st)
{
	struct sup_tstats *s = rec->tstats;
	struct sup_tstats_pair *q;
	uint64_t h = hash_fnv1a_add(st->task, &st->attempt, sizeof(st->attempt));
	uint32_t cap = t != NULL ? t->cap : cap_get(s, "");

	h = h ? h : 1;
	if (idset_has(s->p->starts, h))
		return;
	idset_add(s->p->starts, h, 0);
	tell(rec, st, "running", cap);
	if ((q = pair_get(s, cap, st->agent)) == NULL) {
		s->dropped++;
		return;
	}
	q->started++;
	if (t != NULL && t->q_att == st->attempt && t->queued_ms != 0 &&
	    st->t0 != 0 && st->t0 >= t->queued_ms)
		sup_hist_observe(&s->caps[cap].wait,
		    (double)(st->t0 - t->queued_ms) / 1000.);
}

static void
count_dead(struct sup_recorder *rec, const struct rec_stat *st)
{
	struct sup_tstats *s = rec->tstats;
	struct tstats_priv *p = s->p;
	struct sup_tstats_pair *q;
	struct tmap_slot *t = st->task ? task_find(p, st->task) : NULL;
	uint32_t cap = cap_get(s, st->cap);

	if (st->cap[0] == '\0' && t != NULL && t->cap != TS_NOCAP)
		cap = t->cap;
	if (t != NULL && t->q_att <= st->attempt)  /* not retried since */
		task_del(p, t);
	tell(rec, st, "dead", cap);
	if (cap == TS_NOCAP)
		s->dropped++;
	else if (st->agent[0] == '\0')
		s->caps[cap].dead++;
	else if ((q = pair_get(s, cap, st->agent)) != NULL)
		q->dead++;
	else
		s->dropped++;
}

static void
count_one(struct sup_recorder *rec, const struct rec_stat *st)
{
	struct sup_tstats *s = rec->tstats;
	struct tstats_priv *p = s->p;
	struct sup_tstats_pair *q;
	struct tmap_slot *t;
	uint32_t cap;

	if (st->kind == REC_SK_DEAD) {
		count_dead(rec, st);
		return;
	}
	if (st->task == 0)
		return;
	if (st->kind == REC_SK_QUEUED) {
		cap = cap_get(s, st->cap);
		if (st->attempt <= 1 && cap != TS_NOCAP)
			s->caps[cap].submitted++;
		else if (st->attempt <= 1)
			s->dropped++;
		tell(rec, st, "queued", cap);
		if ((t = task_put(p, st->task)) == NULL)
			return;
		t->cap = cap;
		t->q_att = st->attempt;
		t->queued_ms = st->t0;
		if (st->t0 > p->newest_ms)
			p->newest_ms = st->t0;
		return;
	}
	t = task_find(p, st->task);
	count_start(rec, t, st);
	if (st->kind == REC_SK_STARTED)
		return;
	/* The attempt ended; a retry queued since (in this batch: queue
	 * entries count first) keeps the task. */
	cap = t != NULL ? t->cap : cap_get(s, "");
	if (t != NULL && t->q_att <= st->attempt)
		task_del(p, t);
	tell(rec, st, st->kind == REC_SK_OK ? "completed" : "failed", cap);
	if ((q = pair_get(s, cap, st->agent)) == NULL) {
		s->dropped++;
		return;
	}
	if (st->kind == REC_SK_OK)
		q->completed++;
	else
		q->failed++;
	if (st->usage.has != 0) {
		q->usage_n++;
		q->input_tokens += st->usage.input_tokens;
		q->output_tokens += st->usage.output_tokens;
		q->cost += st->usage.cost;
	}
	if (st->t0 != 0 && st->t1 >= st->t0)
		sup_hist_observe(&s->caps[cap].run,
		    (double)(st->t1 - st->t0) / 1000.);
}

/*
 * In three passes: queue entries, then starts, then ends.  One read
 * takes the results and events streams before the queues, so a task
 * that ran at once has its result ahead of its queue entry in the batch;
 * counted in that order it would not find its capability.
 */
void
rec_stats_apply(struct sup_recorder *rec, struct rec_txn *tx)
{
	struct sup_tstats *s = rec->tstats;

	for (int pass = 0; s != NULL && pass < 3; pass++)
		for (size_t i = 0; i < tx->nstats; i++) {
			const struct rec_stat *st = &tx->stats[i];
			int p = st->kind == REC_SK_QUEUED ? 0 :
			    st->kind == REC_SK_STARTED ? 1 : 2;

			if (p != pass || idset_has(s->p->seen, st->entry))
				continue;
			idset_add(s->p->seen, st->entry, 0);
			s->counted++;
			count_one(rec, st);
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
	st->instance = 0;
	st->code = HIVE_CODE_NONE;
	st->id[0] = st->workflow[0] = st->error[0] = '\0';
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
