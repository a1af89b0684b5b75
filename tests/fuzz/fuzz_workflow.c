/*
 * fuzz_workflow.c - libFuzzer target for proto_decode_workflow: any bytes,
 * and the round trip of fuzz_common.h for what is accepted.  Beyond equal
 * fields, an accepted workflow must keep the promises of its decoder:
 * every task's dependencies name other tasks of it, once each, and the
 * graph has no cycle (checked here the slow way, independently of
 * proto/workflow.c).
 * Seeds: tests/fuzz/corpus/workflow/ (tests/fuzz/gen_corpus.c).
 */
#include "fuzz_common.h"

static int
task_index(const struct hive_workflow *w, struct hive_str id)
{
	for (uint32_t i = 0; i < w->ntasks; i++)
		if (w->tasks[i].id.len == id.len &&
		    memcmp(w->tasks[i].id.ptr, id.ptr, id.len) == 0)
			return (int)i;
	return -1;
}

/* The graph as the decoder promised it: ids unique, each dependency
 * another task, once, and every task reachable by taking away tasks
 * whose dependencies are all taken (no cycle).  Quadratic: the fuzzer's
 * inputs are small. */
static void
fz_graph_ok(const struct hive_workflow *w)
{
	unsigned char *done = calloc(w->ntasks, 1);
	uint32_t ndone = 0, edges = 0;
	int progress = 1, *dep;

	for (uint32_t i = 0; i < w->ntasks; i++)
		edges += w->tasks[i].ndeps;
	dep = calloc(edges + 1, sizeof(*dep));
	FZ_CHECK(done != NULL && dep != NULL);
	for (uint32_t i = 0, e = 0; i < w->ntasks; i++) {
		const struct hive_wf_task *t = &w->tasks[i];

		FZ_CHECK(task_index(w, t->id) == (int)i);
		for (uint32_t j = 0; j < t->ndeps; j++, e++) {
			dep[e] = task_index(w, t->depends_on[j]);
			FZ_CHECK(dep[e] >= 0 && dep[e] != (int)i);
			for (uint32_t k = e - j; k < e; k++)
				FZ_CHECK(dep[k] != dep[e]);
		}
	}
	while (progress) {
		progress = 0;
		for (uint32_t i = 0, e = 0; i < w->ntasks; i++) {
			uint32_t n = w->tasks[i].ndeps, j;

			for (j = 0; j < n && done[dep[e + j]]; j++)
				;
			if (!done[i] && j == n) {
				done[i] = 1;
				ndone++;
				progress = 1;
			}
			e += n;
		}
	}
	FZ_CHECK(ndone == w->ntasks);
	free(dep);
	free(done);
}

static void
fz_same_workflow(const struct hive_workflow *a, const struct hive_workflow *b)
{
	FZ_CHECK(a->v == b->v && a->v == HIVE_PROTO_VERSION);
	fz_str_eq(a->id, b->id);
	FZ_CHECK(proto_valid_id(a->id.ptr, a->id.len) == 0);
	fz_str_eq(a->name, b->name);
	FZ_CHECK(a->name.len == 0 ||
	    proto_valid_name(a->name.ptr, a->name.len) == 0);
	FZ_CHECK(a->created_ms == b->created_ms);
	FZ_CHECK(a->ntasks == b->ntasks);
	FZ_CHECK(a->ntasks >= 1 && a->ntasks <= HIVE_WF_TASKS_MAX);
	for (uint32_t i = 0; i < a->ntasks; i++) {
		const struct hive_wf_task *x = &a->tasks[i], *y = &b->tasks[i];
		struct hive_str cap = x->capability;

		fz_str_eq(x->id, y->id);
		FZ_CHECK(proto_valid_id(x->id.ptr, x->id.len) == 0);
		fz_str_eq(x->capability, y->capability);
		if (cap.len > 0 && cap.ptr[0] == '@') {
			cap.ptr++;
			cap.len--;
		}
		FZ_CHECK(proto_valid_name(cap.ptr, cap.len) == 0);
		FZ_CHECK(x->prio == y->prio && x->prio < HIVE_PRIO_LEVELS);
		fz_obj_eq(&x->payload, &y->payload);
		FZ_CHECK(x->max_attempts == y->max_attempts);
		FZ_CHECK(x->timeout_ms == y->timeout_ms);
		fz_str_eq(x->reply_to, y->reply_to);
		FZ_CHECK(x->ndeps == y->ndeps && x->ndeps <= HIVE_WF_DEPS_MAX);
		for (uint32_t j = 0; j < x->ndeps; j++)
			fz_str_eq(x->depends_on[j], y->depends_on[j]);
	}
	fz_graph_ok(a);
}

FZ_MESSAGE_TARGET(workflow)
