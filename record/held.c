/*
 * held.c - the queue entries the recorder holds for their result (rec.h):
 * a FIFO of tasks in the order they were held, and an open-addressing
 * index over it by task id, with tombstones for the ones taken.
 *
 *   q:     [ head ............................. n )      cap
 *            t|hash  NULL  t|hash  t|hash ...
 *   slot:  index in q + 1 at hash & (nslots - 1), probing on;
 *          0 empty, HELD_TOMB taken (probing goes past it)
 *
 * The FIFO ends when its head is held long enough (held_to_batch); the
 * index finds a task whose result came.  Growing, compacting and indexing
 * again move the 16-byte q entries and read their hashes, never the
 * tasks, which are allocations of their own.
 */
#include "rec.h"

#include <stdlib.h>

void
held_init(struct rec_held *hd, size_t max, size_t max_bytes)
{
	memset(hd, 0, sizeof(*hd));
	hd->max = max;
	hd->max_bytes = max_bytes;
}

/* The slot of id, *found 1; or, *found 0, where it would go (the first
 * tombstone on its way, else the empty slot that ends it). */
static size_t
held_find(const struct rec_held *hd, const char *id, uint64_t hash,
    int *found)
{
	size_t mask = hd->nslots - 1, i, tomb = SIZE_MAX;

	*found = 0;
	for (i = hash & mask; hd->slot[i] != 0; i = (i + 1) & mask) {
		const struct rec_hq *e;

		if (hd->slot[i] == HELD_TOMB) {
			if (tomb == SIZE_MAX)
				tomb = i;
			continue;
		}
		e = &hd->q[hd->slot[i] - 1];
		if (e->hash == hash && strcmp(e->t->id, id) == 0) {
			*found = 1;
			return i;
		}
	}
	return tomb != SIZE_MAX ? tomb : i;
}

/* The index slot of q[k], a held one: no id to compare. */
static size_t
held_slot_of(const struct rec_held *hd, size_t k)
{
	size_t mask = hd->nslots - 1, i = hd->q[k].hash & mask;

	while (hd->slot[i] != k + 1)
		i = (i + 1) & mask;
	return i;
}

/* The index again, for the held ones of q[head..n) moved to q[0..) and
 * room for cap (at least).  -1: out of memory, nothing changed. */
static int
held_rebuild(struct rec_held *hd, size_t cap)
{
	size_t nslots = 1024, m = 0, mask;
	uint32_t *slot = hd->slot;
	struct rec_hq *q;

	if (cap < hd->cap)
		cap = hd->cap;
	while (nslots < 2 * cap)
		nslots *= 2;
	if (nslots != hd->nslots &&
	    (slot = malloc(nslots * sizeof(*slot))) == NULL)
		return -1;
	if (cap > hd->cap) {
		if ((q = realloc(hd->q, cap * sizeof(*q))) == NULL) {
			if (slot != hd->slot)
				free(slot);
			return -1;
		}
		hd->q = q;
		hd->cap = cap;
	}
	if (slot != hd->slot) {
		free(hd->slot);
		hd->slot = slot;
		hd->nslots = nslots;
	}
	memset(hd->slot, 0, hd->nslots * sizeof(*hd->slot));
	mask = hd->nslots - 1;
	for (size_t k = hd->head; k < hd->n; k++) {
		size_t i;

		if (hd->q[k].t == NULL)
			continue;
		hd->q[m] = hd->q[k];
		for (i = hd->q[m].hash & mask; hd->slot[i] != 0;
		    i = (i + 1) & mask)
			;
		hd->slot[i] = (uint32_t)++m;
	}
	hd->n = m;
	hd->head = 0;
	hd->tombs = 0;
	return 0;
}

int
held_put(struct rec_held *hd, struct rec_task *w)
{
	struct rec_task *h;
	uint64_t hash;
	size_t i;
	int found;
	/* Its own copy, unless the fold gave it another member's message. */
	char *msg = w->own_msg != NULL && w->msg == w->own_msg ?
	    w->own_msg : NULL;

	if (hd->live >= hd->max || hd->bytes + w->msglen > hd->max_bytes)
		return -1;
	if (hd->n == hd->cap) {
		/* Full: the taken ones out, and twice the room if that is
		 * not a quarter of it. */
		size_t cap = hd->cap == 0 ? 1024 : hd->live >= hd->cap / 4 * 3 &&
		    hd->cap < hd->max ? 2 * hd->cap : hd->cap;
		if (held_rebuild(hd, cap) < 0 || hd->n == hd->cap)
			return -1;
	} else if (hd->live + hd->tombs >= hd->nslots / 2 &&
	    held_rebuild(hd, 0) < 0)
		return -1;
	hash = rec_id_hash(w->id);
	i = held_find(hd, w->id, hash, &found);
	if (found)                   /* not after a fold: never */
		return -1;
	if ((h = malloc(sizeof(*h))) == NULL)
		return -1;
	if (msg == NULL) {
		if ((msg = malloc(w->msglen ? w->msglen : 1)) == NULL) {
			free(h);
			return -1;
		}
		memcpy(msg, w->msg, w->msglen);
	}
	if (hd->slot[i] == HELD_TOMB)
		hd->tombs--;
	hd->q[hd->n].t = h;
	hd->q[hd->n].hash = hash;
	hd->slot[i] = (uint32_t)++hd->n;
	hd->live++;
	hd->bytes += w->msglen;
	*h = *w;
	h->own_msg = msg;
	h->msg = msg;
	h->skip = 0;
	if (msg == w->own_msg)
		w->own_msg = NULL;
	w->agent = w->workflow = w->result = w->error = w->model = NULL;
	w->skip = 1;
	return 0;
}

/* Move the held one of index slot i into the batch.  -1: out of memory,
 * it stays held. */
static int
held_take(struct rec_held *hd, size_t i, struct rec_batch *bt)
{
	struct rec_task *t = rec_batch_task(bt);
	size_t k = hd->slot[i] - 1;

	if (t == NULL)
		return -1;
	hd->slot[i] = HELD_TOMB;
	hd->tombs++;
	*t = *hd->q[k].t;            /* what it owns goes with it */
	free(hd->q[k].t);
	hd->q[k].t = NULL;
	hd->live--;
	hd->bytes -= t->msglen;
	return 0;
}

void
held_to_batch(struct rec_held *hd, struct rec_batch *bt, int all,
    uint64_t hold_ms, uint64_t clock_ms)
{
	size_t nb = bt->ntasks, i;
	int found;

	if (hd->live == 0)
		return;
	for (size_t k = 0; !all && k < nb; k++) {
		i = held_find(hd, bt->tasks[k].id, rec_id_hash(bt->tasks[k].id),
		    &found);
		if (found && held_take(hd, i, bt) < 0)
			return;
	}
	while (hd->head < hd->n) {
		const struct rec_task *h = hd->q[hd->head].t;

		if (h != NULL) {
			if (!all && h->queued_ms + hold_ms > clock_ms)
				break;
			if (held_take(hd, held_slot_of(hd, hd->head), bt) < 0)
				return;
		}
		hd->head++;
	}
	if (hd->head == hd->n) {
		hd->head = hd->n = 0;
		if (hd->tombs > 0) {
			memset(hd->slot, 0, hd->nslots * sizeof(*hd->slot));
			hd->tombs = 0;
		}
	}
}

void
held_free(struct rec_held *hd)
{
	size_t max = hd->max, max_bytes = hd->max_bytes;

	for (size_t k = hd->head; k < hd->n; k++) {
		if (hd->q[k].t != NULL) {
			rec_task_free(hd->q[k].t);
			free(hd->q[k].t);
		}
	}
	free(hd->q);
	free(hd->slot);
	held_init(hd, max, max_bytes);
}
