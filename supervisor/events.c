/*
 * events.c - the live event bus (events.h), GET /events and GET /stats
 * (docs/API.md, Events).
 *
 * sup_event gives an event its id and "at", writes its JSON once, keeps
 * it in the resume window and queues it on every client whose filter
 * takes it.  Nothing waits: a client's queue is its stream's buffer
 * (sse.c), bounded by [hive] events_client_buffer; one that fills is
 * dropped, and the others, and hived, go on.
 *
 * Ids.  Decimal, increasing: each is the larger of the last one plus one
 * and the wall clock in microseconds, so the first of a run is about its
 * start time and any id of an earlier run is below every id of this one
 * (a clock stepped back by more than the run's rate aside).
 *
 * The window.  A ring of the last events_window events.  floor is the id
 * of the newest event that left it (or the run's first id minus one):
 * a Last-Event-ID L with floor <= L <= last can be resumed exactly (what
 * came after L is all still there); any other gets `reset` first.
 *
 * Task events beyond [hive] events_task_rate in one second are not sent
 * one by one: they are counted, and the tick at the end of the second
 * publishes one `tasks` event with the counts.  The tick (1 s) also
 * publishes `metrics` and keeps the last EVENTS_STATS_MAX of them for
 * GET /stats.
 */
#include "hived.h"
#include "events.h"
#include "sse.h"

#include <sys/queue.h>
#include <sys/wait.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "record.h"

const char *const events_type_names[EV_T_COUNT] = {
	[EV_T_AGENT] = "agent", [EV_T_TASK] = "task", [EV_T_TASKS] = "tasks",
	[EV_T_WORKFLOW] = "workflow", [EV_T_DEAD] = "dead",
	[EV_T_METRICS] = "metrics", [EV_T_OUTPUT] = "output",
	[EV_T_RESET] = "reset",
};

/* The task states a `tasks` event counts, in its order. */
static const char *const task_states[] = {
	"queued", "running", "completed", "failed", "dead",
};
#define NTASK_STATES (sizeof(task_states) / sizeof(task_states[0]))

struct ev_item {
	uint64_t id;
	unsigned type;
	unsigned instance;           /* 0: names none */
	char agent[HIVE_NAME_MAX + 1];   /* "": names none */
	char *text;                  /* the data, JSON */
	size_t len;
};

struct ev_client {
	LIST_ENTRY(ev_client) entry;
	struct sup_events *ev;
	struct sse *s;
	struct ev_filter f;
	int dead;                    /* sse_send failed: closed_fn comes */
};

/* One metrics tick, for GET /stats; a percentile < 0 is null. */
struct ev_sample {
	long long at;
	uint64_t submitted, completed, failed;
	double run50, run99, wait50, wait99;
};

struct sup_events {
	struct sup *sup;
	uint64_t last;               /* the newest id given */
	uint64_t floor;              /* the newest id no longer kept */
	struct ev_item *ring;
	size_t cap, head, n;         /* oldest at head */
	LIST_HEAD(, ev_client) clients;
	unsigned nclients;
	uint64_t published, dropped, oom;
	/* task events of the second running, for `tasks` */
	unsigned sec_tasks, sec_held;
	unsigned counts[NTASK_STATES];
	/* the tick */
	ev_timer tick;
	uint64_t prev_sub, prev_comp, prev_fail;
	struct sup_hist prev_run, prev_wait;
	struct ev_sample stats[EVENTS_STATS_MAX];
	size_t stats_head, stats_n;
};

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int
type_of(const char *name)
{
	for (int i = 0; i < EV_T_COUNT; i++)
		if (strcmp(events_type_names[i], name) == 0)
			return i;
	return -1;
}

/* A decimal number of at most 19 digits, nothing else: 0 or -1. */
static int
parse_u64(const char *s, uint64_t *v)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 19)
			return -1;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == 0)
		return -1;
	*v = n;
	return 0;
}

int
events_filter_parse(const char *types, const char *agent,
    const char *instance, const char *last_id, struct ev_filter *f,
    char *err, size_t errlen)
{
	uint64_t v;

	memset(f, 0, sizeof(*f));
	if (types != NULL && types[0] != '\0') {
		const char *p = types;

		while (*p != '\0') {
			size_t n = strcspn(p, ",");
			char name[16];
			int t;

			if (n == 0 || n >= sizeof(name)) {
				snprintf(err, errlen, "types: expected names "
				    "separated by commas");
				return -1;
			}
			memcpy(name, p, n);
			name[n] = '\0';
			if ((t = type_of(name)) == -1) {
				snprintf(err, errlen, "types: unknown type "
				    "\"%s\"", name);
				return -1;
			}
			f->types |= 1u << t;
			/* Coalesced task events stand for task events. */
			if (t == EV_T_TASK)
				f->types |= 1u << EV_T_TASKS;
			p += n;
			if (*p == ',' && *++p == '\0') {
				snprintf(err, errlen, "types: a name after the "
				    "last comma");
				return -1;
			}
		}
	} else
		f->types = (1u << EV_T_COUNT) - 1;
	if (agent != NULL) {
		size_t n = strlen(agent);

		if (n == 0 || n > HIVE_NAME_MAX) {
			snprintf(err, errlen, "agent: expected a name of 1..%d "
			    "bytes", HIVE_NAME_MAX);
			return -1;
		}
		memcpy(f->agent, agent, n + 1);
	}
	if (instance != NULL) {
		if (parse_u64(instance, &v) == -1 || v < 1 ||
		    v > HIVE_INSTANCE_MAX) {
			snprintf(err, errlen, "instance: expected a number "
			    "1..%d", HIVE_INSTANCE_MAX);
			return -1;
		}
		f->instance = (unsigned)v;
	}
	if (last_id != NULL) {
		if (parse_u64(last_id, &v) == -1) {
			snprintf(err, errlen, "last event id: expected a "
			    "decimal number");
			return -1;
		}
		f->resume = 1;
		f->last_id = v;
	}
	return 0;
}

static int
ev_match(const struct ev_filter *f, unsigned type, const char *agent,
    unsigned instance)
{
	if (type == EV_T_RESET)
		return 1;
	if (!(f->types & (1u << type)))
		return 0;
	if (f->agent[0] != '\0' && strcmp(f->agent, agent) != 0)
		return 0;
	if (f->instance != 0 && f->instance != instance)
		return 0;
	return 1;
}

/* ---- the window ---- */

static struct ev_item *
ring_at(struct sup_events *ev, size_t i)
{
	return &ev->ring[(ev->head + i) % ev->cap];
}

static void
ring_pop(struct sup_events *ev)
{
	struct ev_item *it = ring_at(ev, 0);

	ev->floor = it->id;
	free(it->text);
	it->text = NULL;
	ev->head = (ev->head + 1) % ev->cap;
	ev->n--;
}

/* The window to cap events (a reload changed events_window): the newest
 * kept.  -1 when out of memory (the old window stays). */
static int
ring_resize(struct sup_events *ev, size_t cap)
{
	struct ev_item *r;

	while (ev->n > cap)
		ring_pop(ev);
	if ((r = calloc(cap, sizeof(*r))) == NULL)
		return -1;
	for (size_t i = 0; i < ev->n; i++)
		r[i] = *ring_at(ev, i);
	free(ev->ring);
	ev->ring = r;
	ev->cap = cap;
	ev->head = 0;
	return 0;
}

/* ---- clients ---- */

static void
client_closed(void *arg)
{
	struct ev_client *c = arg;

	LIST_REMOVE(c, entry);
	c->ev->nclients--;
	free(c);
}

static void
client_send(struct ev_client *c, const char *id, const char *type,
    const char *text, size_t len)
{
	if (c->dead)
		return;
	if (sse_send(c->s, id, type, text, len) == -1) {
		c->dead = 1;
		if (sse_slow(c->s))
			c->ev->dropped++;
	}
}

/* ---- publishing ---- */

static void
publish(struct sup_events *ev, unsigned type, json_t *data)
{
	const struct hive_conf *conf = ev->sup->cref->conf;
	struct ev_item *it;
	struct ev_client *c;
	json_t *v;
	char id[24];
	uint64_t t = now_us();

	if (json_object_get(data, "at") == NULL)
		json_object_set_new(data, "at",
		    api_time_json((long long)(t / 1000)));
	if (conf->events_window != ev->cap &&
	    ring_resize(ev, conf->events_window) == -1)
		ev->oom++;
	if (ev->n == ev->cap)
		ring_pop(ev);
	it = ring_at(ev, ev->n);
	memset(it, 0, sizeof(*it));
	if ((it->text = json_dumps(data, JSON_COMPACT)) == NULL) {
		ev->oom++;
		json_decref(data);
		return;
	}
	ev->n++;
	it->len = strlen(it->text);
	it->type = type;
	it->id = ev->last = t > ev->last ? t : ev->last + 1;
	if ((v = json_object_get(data, "agent")) != NULL && json_is_string(v))
		snprintf(it->agent, sizeof(it->agent), "%s",
		    json_string_value(v));
	if ((v = json_object_get(data, "instance")) != NULL &&
	    json_is_integer(v) && json_integer_value(v) > 0)
		it->instance = (unsigned)json_integer_value(v);
	json_decref(data);
	ev->published++;
	snprintf(id, sizeof(id), "%llu", (unsigned long long)it->id);
	LIST_FOREACH(c, &ev->clients, entry)
		if (ev_match(&c->f, type, it->agent, it->instance))
			client_send(c, id, events_type_names[type], it->text,
			    it->len);
}

/* A task event past the second's rate: counted for `tasks`; 1 when it
 * is not to be sent one by one. */
static int
task_coalesced(struct sup_events *ev, json_t *data)
{
	const char *st = json_string_value(json_object_get(data, "state"));

	for (size_t i = 0; st != NULL && i < NTASK_STATES; i++)
		if (strcmp(st, task_states[i]) == 0)
			ev->counts[i]++;
	if (++ev->sec_tasks <= ev->sup->cref->conf->events_task_rate)
		return 0;
	ev->sec_held++;
	return 1;
}

void
sup_event(struct sup *sup, const char *type, json_t *data)
{
	struct sup_events *ev = sup->events;
	int t;

	if (ev == NULL || data == NULL || !json_is_object(data)) {
		if (ev != NULL)
			ev->oom++;
		json_decref(data);
		return;
	}
	if ((t = type_of(type)) == -1 || t == EV_T_RESET) {
		log_warnx("events: unknown type %s (not published)", type);
		json_decref(data);
		return;
	}
	if (t == EV_T_TASK && task_coalesced(ev, data)) {
		json_decref(data);
		return;
	}
	publish(ev, (unsigned)t, data);
}

void
sup_event_agent(struct sup_inst *in, enum sup_state was, enum sup_event ev)
{
	int st = in->last_status;
	char reason[96];

	if (in->agent->sup->events == NULL)
		return;
	if (ev == SUP_EV_EXIT && st != -1 && WIFSIGNALED(st))
		snprintf(reason, sizeof(reason), "%s, signal %d",
		    sup_event_name(ev), WTERMSIG(st));
	else if (ev == SUP_EV_EXIT && st != -1)
		snprintf(reason, sizeof(reason), "%s, status %d",
		    sup_event_name(ev), WEXITSTATUS(st));
	else
		snprintf(reason, sizeof(reason), "%s", sup_event_name(ev));
	sup_event(in->agent->sup, "agent", json_pack("{s:s, s:i, s:s, s:s, "
	    "s:o, s:I, s:s}", "agent", in->agent->name, "instance", (int)in->n,
	    "state", sup_state_name(in->fsm.state), "previous",
	    sup_state_name(was), "pid", in->pid > 0 ?
	    json_integer(in->pid) : json_null(), "restarts",
	    (json_int_t)in->restarts, "reason", reason));
}

void
sup_event_dead_retried(struct sup *sup, const char *id, const char *agent,
    const char *key, const char *code, const char *reason)
{
	const char *prefix = sup->cref->conf->prefix;
	size_t pl = strlen(prefix), n = strcspn(agent, "/");
	json_t *o;

	if ((o = json_pack("{s:s, s:s}", "id", id, "action", "retried")) ==
	    NULL)
		return;
	/* <prefix>:q:<capability>:<priority> */
	if (strncmp(key, prefix, pl) == 0 && strncmp(key + pl, ":q:", 3) == 0 &&
	    strrchr(key, ':') > key + pl + 3)
		json_object_set_new(o, "capability", json_stringn(key + pl + 3,
		    (size_t)(strrchr(key, ':') - (key + pl + 3))));
	if (n > 0)
		json_object_set_new(o, "agent", json_stringn(agent, n));
	if (code != NULL && code[0] != '\0')
		json_object_set_new(o, "code", json_string(code));
	if (reason[0] != '\0')
		json_object_set_new(o, "reason", json_string(reason));
	sup_event(sup, "dead", o);
}

/* ---- the tick ---- */

/* The q-quantile (0..1), in ms, of what h holds more than prev (the same
 * histogram a second ago), interpolated in its bucket; -1 when nothing. */
static double
quantile_ms(const struct sup_hist *h, const struct sup_hist *prev, double q)
{
	uint64_t d[SUP_HIST_LE + 1], total = 0, cum = 0;
	double rank, lo, hi;

	for (unsigned i = 0; i <= SUP_HIST_LE; i++) {
		d[i] = h->bucket[i] - prev->bucket[i];
		total += d[i];
	}
	if (total == 0)
		return -1;
	rank = q * (double)total;
	for (unsigned i = 0; i <= SUP_HIST_LE; i++) {
		if (d[i] == 0 || (double)(cum + d[i]) < rank) {
			cum += d[i];
			continue;
		}
		lo = i > 0 ? sup_hist_le[i - 1] : 0;
		hi = sup_hist_le[i < SUP_HIST_LE ? i : SUP_HIST_LE - 1];
		return 1000. * (lo + (hi - lo) * (rank - (double)cum) /
		    (double)d[i]);
	}
	return 1000. * sup_hist_le[SUP_HIST_LE - 1];
}

static void
hist_add(struct sup_hist *to, const struct sup_hist *h)
{
	for (unsigned i = 0; i <= SUP_HIST_LE; i++)
		to->bucket[i] += h->bucket[i];
	to->count += h->count;
}

/* This second's sample from the recorder's counters (zeros without). */
static void
tick_sample(struct sup_events *ev, struct ev_sample *s)
{
	const struct sup_tstats *ts = sup_store_tstats(ev->sup);
	uint64_t sub = 0, comp = 0, fail = 0;
	struct sup_hist run, wait;

	memset(&run, 0, sizeof(run));
	memset(&wait, 0, sizeof(wait));
	for (unsigned i = 0; ts != NULL && i < ts->ncaps; i++) {
		sub += ts->caps[i].submitted;
		hist_add(&run, &ts->caps[i].run);
		hist_add(&wait, &ts->caps[i].wait);
	}
	for (unsigned i = 0; ts != NULL && i < ts->npairs; i++) {
		comp += ts->pairs[i].completed;
		fail += ts->pairs[i].failed;
	}
	memset(s, 0, sizeof(*s));
	s->at = (long long)(now_us() / 1000);
	s->run50 = s->run99 = s->wait50 = s->wait99 = -1;
	/* The counters start at 0 with hived: what came before the first
	 * tick is its second's. */
	if (sub >= ev->prev_sub && comp >= ev->prev_comp &&
	    fail >= ev->prev_fail && run.count >= ev->prev_run.count &&
	    wait.count >= ev->prev_wait.count) {
		s->submitted = sub - ev->prev_sub;
		s->completed = comp - ev->prev_comp;
		s->failed = fail - ev->prev_fail;
		s->run50 = quantile_ms(&run, &ev->prev_run, .5);
		s->run99 = quantile_ms(&run, &ev->prev_run, .99);
		s->wait50 = quantile_ms(&wait, &ev->prev_wait, .5);
		s->wait99 = quantile_ms(&wait, &ev->prev_wait, .99);
	}
	ev->prev_sub = sub;
	ev->prev_comp = comp;
	ev->prev_fail = fail;
	ev->prev_run = run;
	ev->prev_wait = wait;
}

static json_t *
ms_json(double v)
{
	return v < 0 ? json_null() : json_real((double)(long long)(v * 10.) /
	    10.);
}

static json_t *
pair_json(double p50, double p99)
{
	if (p50 < 0)
		return json_null();
	return json_pack("{s:o, s:o}", "p50", ms_json(p50), "p99",
	    ms_json(p99));
}

static json_t *
sample_json(const struct ev_sample *s)
{
	return json_pack("{s:o, s:I, s:I, s:I, s:o, s:o}",
	    "at", api_time_json(s->at),
	    "submitted", (json_int_t)s->submitted,
	    "completed", (json_int_t)s->completed,
	    "failed", (json_int_t)s->failed,
	    "run_ms", pair_json(s->run50, s->run99),
	    "wait_ms", pair_json(s->wait50, s->wait99));
}

/* The queues of the last sample, one row per capability (its priority
 * streams summed; oldest_ms: the age of its oldest unfinished task). */
static json_t *
queues_json(struct sup *sup, uint64_t now_ms)
{
	const struct sup_qstat_sample *qs = sup_qstat_last(sup->qstat);
	json_t *arr = json_array(), *row = NULL, *v;

	for (size_t i = 0; arr != NULL && qs != NULL && i < qs->n; i++) {
		const struct sup_qstat_q *q = &qs->q[i];
		json_int_t age = q->oldest_ms == 0 ? -1 : now_ms > q->oldest_ms ?
		    (json_int_t)(now_ms - q->oldest_ms) : 0;
		size_t j;

		json_array_foreach(arr, j, row)
			if (strcmp(json_string_value(json_object_get(row,
			    "capability")), q->name) == 0)
				break;
		if (j == json_array_size(arr)) {
			row = json_pack("{s:s, s:I, s:o, s:o}", "capability",
			    q->name, "length", (json_int_t)0, "lag",
			    json_integer(0), "oldest_ms", json_null());
			if (row == NULL || json_array_append_new(arr, row) < 0)
				break;
		}
		json_object_set_new(row, "length", json_integer(
		    json_integer_value(json_object_get(row, "length")) +
		    q->length));
		v = json_object_get(row, "lag");
		if (q->lag < 0 || json_is_null(v))
			json_object_set_new(row, "lag", json_null());
		else
			json_object_set_new(row, "lag", json_integer(
			    json_integer_value(v) + q->lag));
		v = json_object_get(row, "oldest_ms");
		if (age >= 0 && (json_is_null(v) || json_integer_value(v) < age))
			json_object_set_new(row, "oldest_ms", json_integer(age));
	}
	return arr;
}

static json_t *
agents_json(struct sup *sup)
{
	unsigned counts[SUP_ST_COUNT];
	json_t *o = json_object();

	sup_count_states(sup, counts);
	for (unsigned i = 0; o != NULL && i < SUP_ST_COUNT; i++)
		json_object_set_new(o, sup_state_name((enum sup_state)i),
		    json_integer(counts[i]));
	return o;
}

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup_events *ev = w->data;
	struct ev_sample *s;
	json_t *d, *counts;

	if (ev->sec_held > 0 && (counts = json_object()) != NULL) {
		for (size_t i = 0; i < NTASK_STATES; i++)
			json_object_set_new(counts, task_states[i],
			    json_integer(ev->counts[i]));
		if ((d = json_pack("{s:i, s:o}", "interval_ms", 1000, "counts",
		    counts)) != NULL)
			publish(ev, EV_T_TASKS, d);
	}
	ev->sec_tasks = ev->sec_held = 0;
	memset(ev->counts, 0, sizeof(ev->counts));

	s = &ev->stats[(ev->stats_head + ev->stats_n) % EVENTS_STATS_MAX];
	if (ev->stats_n == EVENTS_STATS_MAX)
		ev->stats_head = (ev->stats_head + 1) % EVENTS_STATS_MAX;
	else
		ev->stats_n++;
	tick_sample(ev, s);
	if ((d = sample_json(s)) == NULL) {
		ev->oom++;
		return;
	}
	json_object_set_new(d, "queues", queues_json(ev->sup,
	    (uint64_t)s->at));
	json_object_set_new(d, "agents", agents_json(ev->sup));
	publish(ev, EV_T_METRICS, d);
}

/* ---- the endpoints ---- */

/* A resumed client: what followed its id, or `reset` when that is no
 * longer (or never was) in the window. */
static void
replay(struct sup_events *ev, struct ev_client *c)
{
	char id[24];
	json_t *d;
	char *text;
	uint64_t from = c->f.last_id;

	if (from >= ev->floor && from <= ev->last) {
		for (size_t i = 0; i < ev->n && !c->dead; i++) {
			const struct ev_item *it = ring_at(ev, i);

			if (it->id <= from || !ev_match(&c->f, it->type,
			    it->agent, it->instance))
				continue;
			snprintf(id, sizeof(id), "%llu",
			    (unsigned long long)it->id);
			client_send(c, id, events_type_names[it->type], it->text,
			    it->len);
		}
		return;
	}
	d = json_pack("{s:s, s:o}", "reason", from < ev->floor ?
	    "the last event id is older than the window: reload your state" :
	    "the last event id is not of this run: reload your state",
	    "at", api_time_json((long long)(now_us() / 1000)));
	if (d == NULL || (text = json_dumps(d, JSON_COMPACT)) == NULL) {
		json_decref(d);
		ev->oom++;
		return;
	}
	json_decref(d);
	snprintf(id, sizeof(id), "%llu", (unsigned long long)ev->last);
	client_send(c, id, "reset", text, strlen(text));
	free(text);
}

static void
events_get(struct api_req *req)
{
	struct sup *sup = api_sup(req);
	struct sup_events *ev = sup->events;
	const char *last = api_header(req, "Last-Event-ID");
	struct ev_filter f;
	struct ev_client *c;
	char err[128];

	if (last == NULL)
		last = api_query(req, "last_event_id");
	if (events_filter_parse(api_query(req, "types"),
	    api_query(req, "agent"), api_query(req, "instance"), last, &f, err,
	    sizeof(err)) == -1) {
		api_fail(req, 400, "bad_request", "%s", err);
		return;
	}
	if (ev == NULL || (c = calloc(1, sizeof(*c))) == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	c->ev = ev;
	c->f = f;
	c->s = sse_open(req, (size_t)sup->cref->conf->events_client_buffer_kb *
	    1024, client_closed, c);
	if (c->s == NULL) {
		free(c);
		return;
	}
	LIST_INSERT_HEAD(&ev->clients, c, entry);
	ev->nclients++;
	if (f.resume)
		replay(ev, c);
}

static void
stats_get(struct api_req *req)
{
	struct sup_events *ev = api_sup(req)->events;
	json_t *arr = json_array();

	for (size_t i = 0; arr != NULL && ev != NULL && i < ev->stats_n; i++)
		if (json_array_append_new(arr, sample_json(&ev->stats[
		    (ev->stats_head + i) % EVENTS_STATS_MAX])) < 0) {
			json_decref(arr);
			arr = NULL;
		}
	if (arr == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	api_reply(req, 200, json_pack("{s:i, s:o}", "interval_ms", 1000,
	    "samples", arr));
}

const struct api_route api_events_routes[] = {
	{ "GET", "/events", "types,agent,instance,last_event_id", API_STREAM,
	  events_get },
	{ "GET", "/stats", "", 0, stats_get },
	{ NULL, NULL, NULL, 0, NULL },
};

/* ---- life ---- */

struct sup_events *
sup_events_new(struct sup *sup)
{
	struct sup_events *ev = calloc(1, sizeof(*ev));

	if (ev == NULL)
		return NULL;
	ev->sup = sup;
	LIST_INIT(&ev->clients);
	ev->last = ev->floor = now_us() - 1;
	if (ring_resize(ev, sup->cref->conf->events_window) == -1) {
		free(ev);
		return NULL;
	}
	ev_timer_init(&ev->tick, tick_cb, 1., 1.);
	ev->tick.data = ev;
	ev_timer_start(sup->loop, &ev->tick);
	return ev;
}

/* After the HTTP server: its streams have ended (their clients gone). */
void
sup_events_free(struct sup_events *ev)
{
	struct ev_client *c;

	if (ev == NULL)
		return;
	ev_timer_stop(ev->sup->loop, &ev->tick);
	while ((c = LIST_FIRST(&ev->clients)) != NULL) {
		/* Not reached: the server ended them.  Keep no pointer. */
		LIST_REMOVE(c, entry);
		free(c);
	}
	while (ev->n > 0)
		ring_pop(ev);
	free(ev->ring);
	free(ev);
}

void
sup_events_stats(const struct sup *sup, struct sup_events_stats *out)
{
	const struct sup_events *ev = sup->events;

	memset(out, 0, sizeof(*out));
	if (ev == NULL)
		return;
	out->clients = ev->nclients;
	out->published = ev->published;
	out->dropped = ev->dropped;
}

uint64_t
sup_events_last_id(const struct sup *sup)
{
	return sup->events != NULL ? sup->events->last : 0;
}
