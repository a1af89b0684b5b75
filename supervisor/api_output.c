/*
 * api_output.c - agents' output on the HTTP API (api.h):
 *
 *   GET /agents/NAME/output[?instance=N][&n=N]
 *
 *   {"agent": "NAME",
 *    "lines": [{"instance": 1, "task": "ID" | null, "text": "...",
 *               "at": "2026-12-07T11:00:00.123Z"}, ...],   oldest first
 *    "last_event_id": "ID" | null}
 *
 * The last n lines (default 100, at most the agent's output_lines) of
 * one instance, or of every instance merged by time, from the rings
 * output.c keeps: answered at once from hived's memory.  last_event_id
 * is the id of the last event published before the answer (null when
 * there is none yet): every line above is older, every later line comes
 * after it on GET /events?types=output&agent=NAME&last_event_id=ID, so
 * a follower neither misses a line nor sees one twice.  docs/API.md.
 */
#include "hived.h"
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"

#include "events.h"

#define OUTPUT_N_DEFAULT 100

/* A line and its instance, for the merge. */
struct pick {
	const struct sup_inst *in;
	const struct sup_outline *l;
	unsigned seq;                 /* its place in its ring */
};

static int
pick_cmp(const void *a, const void *b)
{
	const struct pick *x = a, *y = b;

	if (x->l->at_ms != y->l->at_ms)
		return x->l->at_ms < y->l->at_ms ? -1 : 1;
	if (x->in->n != y->in->n)
		return x->in->n < y->in->n ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The id of the last event published, as GET /events names it. */
static json_t *
last_event_id(struct sup *sup)
{
	uint64_t id = sup_events_last_id(sup);
	char buf[24];

	if (id == 0)
		return json_null();
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)id);
	return json_string(buf);
}

/* The last n lines of instances lo..hi, oldest first, into arr. */
static int
output_lines(json_t *arr, struct sup_agent *a, unsigned lo, unsigned hi,
    unsigned n)
{
	struct pick *v;
	size_t nv = 0, cap = 0, from;

	/* Only each ring's last n can be among the last n of all. */
	for (unsigned i = lo; i <= hi; i++) {
		unsigned len = sup_output_len(a->inst[i - 1]);

		cap += len < n ? len : n;
	}
	if (cap == 0)
		return 0;
	if ((v = calloc(cap, sizeof(*v))) == NULL)
		return -1;
	for (unsigned i = lo; i <= hi; i++) {
		const struct sup_inst *in = a->inst[i - 1];
		unsigned len = sup_output_len(in);

		for (unsigned k = len > n ? len - n : 0; k < len; k++) {
			v[nv].in = in;
			v[nv].l = sup_output_line(in, k);
			v[nv++].seq = k;
		}
	}
	if (lo != hi)
		qsort(v, nv, sizeof(*v), pick_cmp);
	from = nv > n ? nv - n : 0;
	for (size_t k = from; k < nv; k++) {
		json_t *o = sup_output_json(v[k].in, v[k].l);

		if (o == NULL || json_array_append_new(arr, o) == -1) {
			free(v);
			return -1;
		}
		json_object_del(o, "agent");
	}
	free(v);
	return 0;
}

static void
api_output(struct api_req *req)
{
	struct sup *sup = api_sup(req);
	const char *name = api_arg(req, 0);
	struct sup_agent *a;
	unsigned long inst, n;
	unsigned lo, hi, max = 0;
	json_t *arr;

	if ((a = api_agent(req)) == NULL)
		return;
	if (api_uint(req, "instance", 1, HIVE_INSTANCE_MAX, 0, &inst) == -1)
		return;
	if (inst > a->ninst) {
		api_fail(req, 404, "not_found", "agent '%s' has no instance %lu",
		    name, inst);
		return;
	}
	lo = inst ? (unsigned)inst : 1;
	hi = inst ? (unsigned)inst : a->ninst;
	for (unsigned i = lo; i <= hi; i++)
		if (sup_output_cap(a->inst[i - 1]) > max)
			max = sup_output_cap(a->inst[i - 1]);
	if (max == 0)
		max = sup->cref->conf->output_lines;
	if (api_uint(req, "n", 1, max, OUTPUT_N_DEFAULT < max ?
	    OUTPUT_N_DEFAULT : max, &n) == -1)
		return;
	if ((arr = json_array()) == NULL ||
	    output_lines(arr, a, lo, hi, (unsigned)n) == -1) {
		json_decref(arr);
		api_reply(req, 500, NULL);
		return;
	}
	api_reply(req, 200, json_pack("{s:s, s:o, s:o}", "agent", a->name,
	    "lines", arr, "last_event_id", last_event_id(sup)));
}

const struct api_route api_output_routes[] = {
	{ "GET", "/agents/{}/output", "instance,n", 0, api_output },
	{ NULL, NULL, NULL, 0, NULL },
};
