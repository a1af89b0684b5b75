/*
 * test_held.c - record/held.c: queue entries held for their result, in
 * the order held, found by task id; taken by id, by age, or all.  No
 * services.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "rec.h"

/* A queue entry's task as rec_entry.c makes it: its message borrowed. */
static struct rec_task
task(const char *id, uint64_t queued_ms, const char *msg)
{
	struct rec_task t;

	memset(&t, 0, sizeof(t));
	snprintf(t.id, sizeof(t.id), "%s", id);
	t.rank = 1;
	t.state = "queued";
	t.attempts = 1;
	t.queued_ms = t.created_ms = queued_ms;
	t.has_q = t.has_msg = 1;
	t.msg = msg;
	t.msglen = strlen(msg);
	t.workflow = strdup("wf");
	return t;
}

static void
batch_free(struct rec_batch *bt)
{
	for (size_t i = 0; i < bt->ntasks; i++)
		rec_task_free(&bt->tasks[i]);
	free(bt->tasks);
	memset(bt, 0, sizeof(*bt));
}

static int
in_batch(const struct rec_batch *bt, const char *id)
{
	for (size_t i = 0; i < bt->ntasks; i++)
		if (strcmp(bt->tasks[i].id, id) == 0)
			return 1;
	return 0;
}

Test(held, a_held_task_owns_a_copy_of_its_message)
{
	struct rec_held hd;
	struct rec_batch bt = { 0 };
	char msg[] = "message";
	struct rec_task w = task("t1", 1000, msg);

	held_init(&hd, 16, 1024);
	cr_assert_eq(held_put(&hd, &w), 0);
	cr_assert(w.skip, "the batch's copy is skipped");
	cr_assert_null(w.workflow, "what it owned went with it");
	cr_assert_eq(hd.live, 1);
	cr_assert_eq(hd.bytes, 7);
	memset(msg, 'x', 7);         /* the reply is freed */
	held_to_batch(&hd, &bt, 1, 0, 0);
	cr_assert_eq(hd.live, 0);
	cr_assert_eq(hd.bytes, 0);
	cr_assert_eq(bt.ntasks, 1);
	cr_assert_str_eq(bt.tasks[0].id, "t1");
	cr_assert(memcmp(bt.tasks[0].msg, "message", 7) == 0);
	cr_assert_eq(bt.tasks[0].msg, bt.tasks[0].own_msg);
	cr_assert_str_eq(bt.tasks[0].workflow, "wf");
	cr_assert_not(bt.tasks[0].skip);
	batch_free(&bt);
	held_free(&hd);
}

Test(held, taken_by_id_and_by_age_in_order)
{
	struct rec_held hd;
	struct rec_batch bt = { 0 };
	struct rec_task w;
	char id[32];

	held_init(&hd, 64, 1 << 20);
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "t%d", i);
		w = task(id, 1000 + (uint64_t)i * 100, "m");
		cr_assert_eq(held_put(&hd, &w), 0);
	}
	/* A result of t7 is in the batch: t7 joins it, whatever its age. */
	w = task("t7", 0, "");
	*rec_batch_task(&bt) = w;
	/* held 500 ms, clock 1750: t0 (1000), t1 (1100), t2 (1200) are due */
	held_to_batch(&hd, &bt, 0, 500, 1750);
	cr_assert_eq(bt.ntasks, 5, "%zu", bt.ntasks);
	cr_assert_str_eq(bt.tasks[1].id, "t7");
	cr_assert_str_eq(bt.tasks[2].id, "t0");
	cr_assert_str_eq(bt.tasks[3].id, "t1");
	cr_assert_str_eq(bt.tasks[4].id, "t2");
	cr_assert_eq(hd.live, 6);
	batch_free(&bt);
	/* by age again: the taken t7 does not stop the FIFO */
	held_to_batch(&hd, &bt, 0, 500, 2350);
	cr_assert_eq(bt.ntasks, 5, "%zu", bt.ntasks);
	cr_assert(in_batch(&bt, "t3") && in_batch(&bt, "t6") &&
	    in_batch(&bt, "t8") && !in_batch(&bt, "t7") && !in_batch(&bt, "t9"));
	cr_assert_eq(hd.live, 1);
	batch_free(&bt);
	held_to_batch(&hd, &bt, 1, 500, 0);
	cr_assert_eq(bt.ntasks, 1);
	cr_assert_eq(hd.live, 0);
	cr_assert_eq(hd.head, 0, "empty: the FIFO starts over");
	cr_assert_eq(hd.n, 0);
	batch_free(&bt);
	held_free(&hd);
}

Test(held, limits_and_duplicates_refused)
{
	struct rec_held hd;
	struct rec_task a = task("a", 1, "12345"), b = task("b", 1, "12345"),
	    c = task("c", 1, "1"), a2 = task("a", 2, "1");

	held_init(&hd, 2, 8);
	cr_assert_eq(held_put(&hd, &a), 0);
	cr_assert_eq(held_put(&hd, &b), -1, "over max_bytes");
	cr_assert_not(b.skip);
	cr_assert_eq(held_put(&hd, &a2), -1, "its id held already");
	cr_assert_eq(held_put(&hd, &c), 0);
	cr_assert_eq(held_put(&hd, &a2), -1, "over max");
	cr_assert_eq(hd.live, 2);
	rec_task_free(&b);
	rec_task_free(&a2);
	held_free(&hd);              /* frees what it holds (ASan: no leak) */
	cr_assert_eq(hd.live, 0);
	cr_assert_eq(hd.max, 2, "its limits stay");
}

/* Many held, most taken by id and held again: the index grows, its
 * tombstones are swept, and every held one is still found by id. */
Test(held, grows_and_sweeps_tombstones)
{
	struct rec_held hd;
	struct rec_batch bt = { 0 }, probe = { 0 };
	struct rec_task w;
	char id[32];
	int n = 20000;

	held_init(&hd, REC_HOLD_MAX, REC_HOLD_BYTES);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < n; i++) {
			snprintf(id, sizeof(id), "r%d-%d", round, i);
			w = task(id, 1000, "m");
			cr_assert_eq(held_put(&hd, &w), 0, "%s", id);
		}
		/* take every other one of this round by id */
		for (int i = 0; i < n; i += 2) {
			snprintf(id, sizeof(id), "r%d-%d", round, i);
			w = task(id, 0, "");
			*rec_batch_task(&probe) = w;
		}
		held_to_batch(&hd, &probe, 0, 1000, 0);
		cr_assert_eq(probe.ntasks, (size_t)n, "round %d: %zu", round,
		    probe.ntasks);
		batch_free(&probe);
	}
	cr_assert_eq(hd.live, (size_t)(3 * n / 2));
	cr_assert_leq(hd.nslots, 4 * (size_t)REC_HOLD_MAX);
	/* the others, each still found by id */
	for (int round = 0; round < 3; round++)
		for (int i = 1; i < n; i += 2) {
			snprintf(id, sizeof(id), "r%d-%d", round, i);
			w = task(id, 0, "");
			*rec_batch_task(&bt) = w;
		}
	held_to_batch(&hd, &bt, 0, 1000, 0);
	cr_assert_eq(bt.ntasks, (size_t)(3 * n), "%zu", bt.ntasks);
	cr_assert_eq(hd.live, 0);
	batch_free(&bt);
	held_free(&hd);
}
