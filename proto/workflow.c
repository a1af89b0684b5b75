/*
 * workflow.c - the rules of a workflow's graph, past what its field
 * tables (codec.c) check one field at a time:
 *
 *   - task ids are unique in the workflow;
 *   - each depends_on entry names another task of the workflow (not the
 *     task itself), and a list names a task at most once;
 *   - the depends_on edges make no cycle.
 *
 * In O(tasks + edges): the ids go into an open-addressing table of task
 * indices, each depends_on entry is looked up once, and Kahn's algorithm
 * takes away tasks whose dependencies are all taken; what is left lies on
 * a cycle or after one.  Walking from a task left back along dependencies
 * left, ntasks steps always end on a cycle: that task is the one the
 * error names.
 *
 * Errors are E_VALUE on the field "tasks", the detail naming the tasks:
 *
 *   task 'c' twice
 *   task 'b' depends on unknown 'x'
 *   task 'b' depends on itself
 *   task 'b' lists 'a' twice
 *   cycle through 'a'
 */
#include "proto_int.h"

#include <inttypes.h>
#include <stdlib.h>

/* Slots of the id table: a power of two, at least twice the most tasks,
 * so that probe sequences stay short. */
#define ID_SLOTS 2048
_Static_assert(ID_SLOTS >= 2 * HIVE_WF_TASKS_MAX, "id table too small");
_Static_assert(HIVE_WF_TASKS_MAX < UINT16_MAX, "task index in 16 bits");

/* An id in an error detail: ids are up to 128 bytes, the detail 96
 * holds two of 32. */
#define SHOW(s) (int)((s).len > 32 ? 32 : (s).len), (s).ptr

struct graph {
	uint16_t slot[ID_SLOTS];     /* task index + 1; 0 = empty */
	uint32_t *dstart;            /* ntasks + 1: task i's entries in dep */
	uint16_t *dep;               /* every depends_on entry, resolved */
	uint32_t *ostart;            /* ntasks + 1: task i's dependents */
	uint16_t *out;               /* dependents, grouped by dependency */
	uint32_t *indeg;             /* dependencies not yet taken away */
	uint32_t *mark;              /* task i + 1 that listed it last */
	uint16_t *queue;
	void *mem;
};

/* FNV-1a: ids are short and an adversary gains little from collisions
 * (at most HIVE_WF_TASKS_MAX probes per lookup). */
static uint32_t
id_hash(struct hive_str s)
{
	return (uint32_t)hash_fnv1a(s.ptr, s.len);
}

static bool
id_eq(struct hive_str a, struct hive_str b)
{
	return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* Index of the task named id, or -1; with add (task index), insert it
 * there unless taken, and return the index that holds it. */
static int
id_find(struct graph *g, const struct hive_workflow *m, struct hive_str id,
    int add)
{
	uint32_t i = id_hash(id) & (ID_SLOTS - 1);

	for (;;) {
		uint16_t s = g->slot[i];

		if (s == 0) {
			if (add < 0)
				return -1;
			g->slot[i] = (uint16_t)(add + 1);
			return add;
		}
		if (id_eq(m->tasks[s - 1].id, id))
			return s - 1;
		i = (i + 1) & (ID_SLOTS - 1);
	}
}

static int
graph_alloc(struct graph *g, uint32_t n, uint32_t edges)
{
	size_t u32 = (size_t)(n + 1) * 2 + (size_t)n * 2;
	size_t u16 = (size_t)edges * 2 + n;
	char *p;

	memset(g, 0, sizeof(*g));
	if ((g->mem = calloc(1, u32 * sizeof(uint32_t) +
	    u16 * sizeof(uint16_t) + 1)) == NULL)
		return -1;
	p = g->mem;
	g->dstart = (uint32_t *)p;
	g->ostart = g->dstart + n + 1;
	g->indeg = g->ostart + n + 1;
	g->mark = g->indeg + n;
	p = (char *)(g->mark + n);
	g->dep = (uint16_t *)p;
	g->out = g->dep + edges;
	g->queue = g->out + edges;
	return 0;
}

/* The id of a task on a cycle: from the first task Kahn's algorithm left,
 * step to a dependency also left, ntasks times. */
static uint32_t
on_cycle(const struct graph *g, uint32_t n)
{
	uint32_t v = 0;

	while (g->indeg[v] == 0)
		v++;
	for (uint32_t step = 0; step < n; step++)
		for (uint32_t k = g->dstart[v]; k < g->dstart[v + 1]; k++)
			if (g->indeg[g->dep[k]] > 0) {
				v = g->dep[k];
				break;
			}
	return v;
}

/* Every task id once: each goes into the id table. */
static int
graph_ids(struct graph *g, const struct hive_workflow *m,
    struct proto_err *err)
{
	for (uint32_t i = 0; i < m->ntasks; i++)
		if (id_find(g, m, m->tasks[i].id, (int)i) != (int)i)
			return proto_fail(err, PROTO_E_VALUE, "tasks",
			    "task '%.*s' twice", SHOW(m->tasks[i].id));
	return 0;
}

/* Resolve each depends_on entry to a task index (dep, by dstart); count
 * each task's dependents (ostart) and its dependencies (indeg). */
static int
graph_edges(struct graph *g, const struct hive_workflow *m, uint32_t edges,
    struct proto_err *err)
{
	uint32_t k = 0;

	for (uint32_t i = 0; i < m->ntasks; i++) {
		const struct hive_wf_task *t = &m->tasks[i];

		g->dstart[i] = k;
		for (uint32_t j = 0; j < t->ndeps; j++, k++) {
			int d = id_find(g, m, t->depends_on[j], -1);

			if (d < 0)
				return proto_fail(err, PROTO_E_VALUE, "tasks",
				    "task '%.*s' depends on unknown '%.*s'",
				    SHOW(t->id), SHOW(t->depends_on[j]));
			if ((uint32_t)d == i)
				return proto_fail(err, PROTO_E_VALUE, "tasks",
				    "task '%.*s' depends on itself",
				    SHOW(t->id));
			if (g->mark[d] == i + 1)
				return proto_fail(err, PROTO_E_VALUE, "tasks",
				    "task '%.*s' lists '%.*s' twice",
				    SHOW(t->id), SHOW(t->depends_on[j]));
			g->mark[d] = i + 1;
			g->dep[k] = (uint16_t)d;
			g->ostart[d + 1]++;
		}
		g->indeg[i] = t->ndeps;
	}
	g->dstart[m->ntasks] = edges;
	return 0;
}

/* Dependents, grouped by dependency (mark reused as fill cursor). */
static void
graph_dependents(struct graph *g, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		g->ostart[i + 1] += g->ostart[i];
		g->mark[i] = g->ostart[i];
	}
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t k = g->dstart[i]; k < g->dstart[i + 1]; k++)
			g->out[g->mark[g->dep[k]]++] = (uint16_t)i;
}

/* Kahn: take away what depends on nothing left; what stays is on a
 * cycle or after one. */
static int
graph_acyclic(struct graph *g, const struct hive_workflow *m,
    struct proto_err *err)
{
	uint32_t n = m->ntasks, head = 0, tail = 0;

	for (uint32_t i = 0; i < n; i++)
		if (g->indeg[i] == 0)
			g->queue[tail++] = (uint16_t)i;
	while (head < tail) {
		uint16_t u = g->queue[head++];

		for (uint32_t k = g->ostart[u]; k < g->ostart[u + 1]; k++)
			if (--g->indeg[g->out[k]] == 0)
				g->queue[tail++] = g->out[k];
	}
	if (tail < n)
		return proto_fail(err, PROTO_E_VALUE, "tasks",
		    "cycle through '%.*s'", SHOW(m->tasks[on_cycle(g, n)].id));
	return 0;
}

int
proto_workflow_rules(const struct hive_workflow *m, struct proto_err *err)
{
	struct graph *g;
	uint32_t n = m->ntasks, edges = 0;
	int rc;

	if (n == 0 || n > HIVE_WF_TASKS_MAX || m->tasks == NULL)
		return proto_fail(err, PROTO_E_SIZE, "tasks",
		    "%" PRIu32 " tasks, not 1..%d", n, HIVE_WF_TASKS_MAX);
	for (uint32_t i = 0; i < n; i++)
		edges += m->tasks[i].ndeps;     /* each <= HIVE_WF_DEPS_MAX */
	if ((g = malloc(sizeof(*g))) == NULL || graph_alloc(g, n, edges) == -1) {
		free(g);
		return proto_fail(err, PROTO_E_TOOBIG, "tasks", "out of memory");
	}
	rc = graph_ids(g, m, err);
	if (rc == 0)
		rc = graph_edges(g, m, edges, err);
	if (rc == 0) {
		graph_dependents(g, n);
		rc = graph_acyclic(g, m, err);
	}
	free(g->mem);
	free(g);
	return rc;
}
