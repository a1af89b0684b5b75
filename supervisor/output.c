/*
 * output.c - agents' output: the lines their handlers write to stderr,
 * as the workers send them (OUTPUT frames, worker/output.c).
 *
 * Each line is, at once and in this order:
 *
 *   - kept in its instance's ring, the last output_lines of them (the
 *     agent's own, else [hive]'s): in hived, so a restarted worker does
 *     not lose them; freed with the instance;
 *   - logged at notice level, "agent=NAME/N task=ID trace=TRACE: text"
 *     (task= and trace= left out when the worker could not tell it);
 *   - published as an "output" event (events.h), for /events clients.
 *
 * The ring's append and the event's publication happen in the same loop
 * turn, so GET /agents/NAME/output (api_output.c) can name the last event
 * id that its lines are older than: a client resumes /events from there
 * and misses no line and sees none twice.
 *
 * A line costs one allocation of its own size.  The ring is allocated at
 * the first line, and follows a new output_lines (a reload) at the next
 * line: a smaller ring drops the oldest lines.
 */
#include "hived.h"
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"

#include "events.h"

struct sup_output {
	struct sup_outline **v;       /* v[(head + i) % cap], i < len */
	unsigned cap, len, head;
};

unsigned
sup_output_cap(const struct sup_inst *in)
{
	const struct hive_agent_conf *a = in->agent->conf;

	if (a != NULL && a->output_lines > 0)
		return a->output_lines;
	return in->agent->sup->cref->conf->output_lines;
}

void
sup_output_free(struct sup_output *o)
{
	if (o == NULL)
		return;
	for (unsigned i = 0; i < o->len; i++)
		free(o->v[(o->head + i) % o->cap]);
	free(o->v);
	free(o);
}

/* Give o room for cap lines, keeping the newest.  -1: out of memory. */
static int
output_resize(struct sup_output *o, unsigned cap)
{
	struct sup_outline **v;
	unsigned keep = o->len < cap ? o->len : cap, drop = o->len - keep;

	if ((v = calloc(cap, sizeof(*v))) == NULL)
		return -1;
	for (unsigned i = 0; i < o->len; i++) {
		struct sup_outline *l = o->v[(o->head + i) % o->cap];

		if (i < drop)
			free(l);
		else
			v[i - drop] = l;
	}
	free(o->v);
	o->v = v;
	o->cap = cap;
	o->len = keep;
	o->head = 0;
	return 0;
}

/* Keep a copy of the line; the oldest goes when the ring is full. */
static struct sup_outline *
output_keep(struct sup_inst *in, const struct hive_output *f, uint64_t at)
{
	struct sup_output *o = in->output;
	struct sup_outline *l;
	unsigned cap = sup_output_cap(in);
	size_t tl = f->task.len, xl = f->text.len;

	if (o == NULL && (o = in->output = calloc(1, sizeof(*o))) == NULL)
		return NULL;
	if (o->cap != cap && output_resize(o, cap) == -1)
		return NULL;
	if ((l = malloc(sizeof(*l) + tl + 1 + xl + 1)) == NULL)
		return NULL;
	l->at_ms = at;
	l->task = tl > 0 ? l->buf : NULL;
	memcpy(l->buf, f->task.ptr, tl);
	l->buf[tl] = '\0';
	l->text = l->buf + tl + 1;
	memcpy(l->text, f->text.ptr, xl);
	l->text[xl] = '\0';
	if (o->len == o->cap) {
		free(o->v[o->head]);
		o->v[o->head] = l;
		o->head = (o->head + 1) % o->cap;
	} else
		o->v[(o->head + o->len++) % o->cap] = l;
	return l;
}

json_t *
sup_output_json(const struct sup_inst *in, const struct sup_outline *l)
{
	return json_pack("{s:s, s:I, s:s?, s:s, s:o}", "agent", in->agent->name,
	    "instance", (json_int_t)in->n, "task", l->task, "text", l->text,
	    "at", api_time_json((long long)l->at_ms));
}

void
sup_output_add(struct sup_inst *in, const struct hive_output *f)
{
	const struct sup_outline *l;
	json_t *ev;

	if (f->dropped > 0)
		log_notice("agent=%s %llu lines of output dropped by the "
		    "worker (over its rate)", in->label,
		    (unsigned long long)f->dropped);
	if (f->text.len == 0)
		return;
	/* task= and trace= only when the worker could tell them */
	log_notice("agent=%s%s%.*s%s%.*s: %.*s", in->label,
	    f->task.len ? " task=" : "", (int)f->task.len, f->task.ptr,
	    f->traceparent.len ? " trace=" : "", f->traceparent.len ?
	    HIVE_TRACE_ID_LEN : 0, f->traceparent.len ?
	    PROTO_TRACE_ID(f->traceparent.ptr) : "", (int)f->text.len,
	    f->text.ptr);
	if ((l = output_keep(in, f, proto_now_ms())) == NULL) {
		log_warnx("agent=%s output line: out of memory", in->label);
		return;
	}
	/* json_pack's "s?" leaves a NULL task as null (docs/API.md). */
	if ((ev = sup_output_json(in, l)) != NULL)
		sup_event(in->agent->sup, "output", ev);
}

unsigned
sup_output_len(const struct sup_inst *in)
{
	return in->output != NULL ? in->output->len : 0;
}

const struct sup_outline *
sup_output_line(const struct sup_inst *in, unsigned i)
{
	const struct sup_output *o = in->output;

	if (o == NULL || i >= o->len)
		return NULL;
	return o->v[(o->head + i) % o->cap];
}
