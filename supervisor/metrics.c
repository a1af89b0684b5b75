/*
 * metrics.c - GET /metrics (the Prometheus text format, version 0.0.4)
 * and GET /queues (JSON), both from state hived keeps: the agents'
 * instances, the queues' last sample (qstat.c), the recorder's counters
 * (record.h, tstats.c).  Nothing here waits on Redis or PostgreSQL.
 *
 * The text is written straight into one buffer (util.h's hbuf), no JSON
 * and no printf for the common cases: 2,000 instances are a few thousand
 * lines.  Every family has its HELP and TYPE lines, label values are
 * escaped (sup_metrics_label); docs/OPERATIONS.md "Metrics" lists them.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "hive_version.h"
#include "hived.h"
#include "events.h"
#include "record.h"
#include "util.h"

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A writer: oom is sticky, checked once at the end. */
struct mw {
	struct hbuf *b;
	int labels;                  /* labels written on this line */
	int oom;
};

static void
put(struct mw *w, const char *s)
{
	w->oom |= hbuf_puts(w->b, s);
}

static void
put_u64(struct mw *w, uint64_t v)
{
	char buf[24], *p = buf + sizeof(buf);

	do
		*--p = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	w->oom |= hbuf_add(w->b, p, (size_t)(buf + sizeof(buf) - p));
}

static void
put_f(struct mw *w, double v)
{
	char buf[40];

	if (v == (double)(int64_t)v && v >= 0 && v < 1e15) {
		put_u64(w, (uint64_t)v);
		return;
	}
	snprintf(buf, sizeof(buf), "%.6g", v);
	put(w, buf);
}

int
sup_metrics_label(struct hbuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), k;
	int oom = 0;

	while (n > 0) {
		if (*p == '\\' || *p == '"' || *p == '\n') {
			oom |= hbuf_putc(b, '\\');
			oom |= hbuf_putc(b, *p == '\n' ? 'n' : (char)*p);
			k = 1;
		} else if ((k = utf8_seq(p, n)) == 0 || *p == '\0') {
			oom |= hbuf_add(b, "\xef\xbf\xbd", 3);    /* U+FFFD */
			k = 1;
		} else
			oom |= hbuf_add(b, p, k);
		p += k;
		n -= k;
	}
	return oom;
}

static void
head(struct mw *w, const char *name, const char *type, const char *help)
{
	put(w, "# HELP ");
	put(w, name);
	put(w, " ");
	put(w, help);
	put(w, "\n# TYPE ");
	put(w, name);
	put(w, " ");
	put(w, type);
	put(w, "\n");
}

static void
line(struct mw *w, const char *name)
{
	put(w, name);
	w->labels = 0;
}

static void
label(struct mw *w, const char *k, const char *v)
{
	put(w, w->labels++ ? ",": "{");
	put(w, k);
	put(w, "=\"");
	w->oom |= sup_metrics_label(w->b, v);
	put(w, "\"");
}

static void
label_u(struct mw *w, const char *k, uint64_t v)
{
	put(w, w->labels++ ? ",": "{");
	put(w, k);
	put(w, "=\"");
	put_u64(w, v);
	put(w, "\"");
}

static void
end_u64(struct mw *w, uint64_t v)
{
	put(w, w->labels ? "} " : " ");
	put_u64(w, v);
	put(w, "\n");
}

static void
end_f(struct mw *w, double v)
{
	put(w, w->labels ? "} " : " ");
	put_f(w, v);
	put(w, "\n");
}

/* ---- hived and its agents ---- */

static void
render_up(struct mw *w, struct sup *sup)
{
	int pg = sup_store_pg_state(sup);

	head(w, "hive_build_info", "gauge", "The version of hived: always 1.");
	line(w, "hive_build_info");
	label(w, "version", HIVE_VERSION);
	end_u64(w, 1);
	head(w, "hive_redis_up", "gauge",
	    "1 when hived's connection to Redis is up.");
	line(w, "hive_redis_up");
	end_u64(w, (uint64_t)sup_store_redis_up(sup));
	if (pg >= 0) {
		head(w, "hive_postgres_up", "gauge",
		    "1 when hived's connection to PostgreSQL is up.");
		line(w, "hive_postgres_up");
		end_u64(w, (uint64_t)pg);
	}
	head(w, "hive_hived_rss_bytes", "gauge",
	    "Resident memory of hived, bytes.");
	line(w, "hive_hived_rss_bytes");
	end_u64(w, sup_rss_kb(0) * 1024);
}

/* The per-agent families: one pass over the agents each. */
static void
render_agents(struct mw *w, struct sup *sup)
{
	struct sup_agent *a;

	head(w, "hive_agent_instances", "gauge",
	    "Instances of the agent in each state.");
	TAILQ_FOREACH(a, &sup->agents, entry) {
		unsigned n[SUP_ST_COUNT] = { 0 };
		for (unsigned i = 0; i < a->ninst; i++)
			n[a->inst[i]->fsm.state]++;
		for (unsigned s = 0; s < SUP_ST_COUNT; s++) {
			line(w, "hive_agent_instances");
			label(w, "agent", a->name);
			label(w, "state", sup_state_name((enum sup_state)s));
			end_u64(w, n[s]);
		}
	}
	head(w, "hive_agent_instances_configured", "gauge",
	    "Instances the configuration asks for (0: removed, draining).");
	TAILQ_FOREACH(a, &sup->agents, entry) {
		line(w, "hive_agent_instances_configured");
		label(w, "agent", a->name);
		end_u64(w, a->removed ? 0 : a->conf->instances);
	}
	head(w, "hive_worker_restarts_total", "counter",
	    "Workers started again for an instance after its first.");
	TAILQ_FOREACH(a, &sup->agents, entry) {
		uint64_t n = 0;
		for (unsigned i = 0; i < a->ninst; i++)
			n += a->inst[i]->restarts;
		line(w, "hive_worker_restarts_total");
		label(w, "agent", a->name);
		end_u64(w, n);
	}
	head(w, "hive_handler_restarts_total", "counter",
	    "Handlers that died unasked or could not start, restarted by "
	    "their worker.");
	TAILQ_FOREACH(a, &sup->agents, entry) {
		uint64_t n = 0;
		for (unsigned i = 0; i < a->ninst; i++)
			n += a->inst[i]->handler_restarts;
		line(w, "hive_handler_restarts_total");
		label(w, "agent", a->name);
		end_u64(w, n);
	}
}

/* The families of live workers, by instance. */
static void
render_workers(struct mw *w, struct sup *sup)
{
	ev_tstamp now = ev_now(sup->loop);
	struct sup_agent *a;

	head(w, "hive_heartbeat_age_seconds", "gauge",
	    "Seconds since the worker's last heartbeat (live workers).");
	TAILQ_FOREACH(a, &sup->agents, entry)
		for (unsigned i = 0; i < a->ninst; i++) {
			const struct sup_inst *in = a->inst[i];
			if (in->pid <= 0 || !in->have_hb)
				continue;
			line(w, "hive_heartbeat_age_seconds");
			label(w, "agent", a->name);
			label_u(w, "agent_instance", in->n);
			end_f(w, now > in->last_hb ? now - in->last_hb : 0);
		}
	head(w, "hive_worker_rss_bytes", "gauge",
	    "Resident memory of the worker process, bytes (sampled every "
	    "5 s).");
	TAILQ_FOREACH(a, &sup->agents, entry)
		for (unsigned i = 0; i < a->ninst; i++) {
			const struct sup_inst *in = a->inst[i];
			if (in->pid <= 0 || in->rss_pid != in->pid || in->rss_kb == 0)
				continue;
			line(w, "hive_worker_rss_bytes");
			label(w, "agent", a->name);
			label_u(w, "agent_instance", in->n);
			end_u64(w, in->rss_kb * 1024);
		}
}

/* ---- tasks (the recorder) ---- */

static void
pair_family(struct mw *w, const struct sup_tstats *ts, const char *name,
    const char *help, size_t off)
{
	head(w, name, "counter", help);
	for (unsigned i = 0; i < ts->npairs; i++) {
		const struct sup_tstats_pair *p = &ts->pairs[i];
		line(w, name);
		label(w, "capability", ts->caps[p->cap].name);
		label(w, "agent", p->agent);
		end_u64(w, *(const uint64_t *)(const void *)((const char *)p + off));
	}
}

/* The usage results reported, of the pairs that had any: a family of
 * tokens (a uint64_t at off) or, with off 0, of cost. */
static void
usage_family(struct mw *w, const struct sup_tstats *ts, const char *name,
    const char *help, size_t off)
{
	head(w, name, "counter", help);
	for (unsigned i = 0; i < ts->npairs; i++) {
		const struct sup_tstats_pair *p = &ts->pairs[i];

		if (p->usage_n == 0)
			continue;
		line(w, name);
		label(w, "capability", ts->caps[p->cap].name);
		label(w, "agent", p->agent);
		if (off == 0) {
			/* 15 digits, not end_f's 6: a sum of many small
			 * costs must not round away cents. */
			char buf[40];

			snprintf(buf, sizeof(buf), "%.15g", p->cost);
			put(w, "} ");
			put(w, buf);
			put(w, "\n");
		} else
			end_u64(w, *(const uint64_t *)(const void *)
			    ((const char *)p + off));
	}
}

static void
hist_family(struct mw *w, const struct sup_tstats *ts, const char *name,
    const char *help, int run)
{
	char bname[96], sname[96], cname[96];

	snprintf(bname, sizeof(bname), "%s_bucket", name);
	snprintf(sname, sizeof(sname), "%s_sum", name);
	snprintf(cname, sizeof(cname), "%s_count", name);
	head(w, name, "histogram", help);
	for (unsigned i = 0; i < ts->ncaps; i++) {
		const struct sup_tstats_cap *c = &ts->caps[i];
		const struct sup_hist *h = run ? &c->run : &c->wait;
		uint64_t cum = 0;
		char le[16];

		for (unsigned k = 0; k <= SUP_HIST_LE; k++) {
			cum += h->bucket[k];
			if (k < SUP_HIST_LE)
				snprintf(le, sizeof(le), "%g", sup_hist_le[k]);
			line(w, bname);
			label(w, "capability", c->name);
			label(w, "le", k < SUP_HIST_LE ? le : "+Inf");
			end_u64(w, cum);
		}
		line(w, sname);
		label(w, "capability", c->name);
		end_f(w, h->sum);
		line(w, cname);
		label(w, "capability", c->name);
		end_u64(w, h->count);
	}
}

static void
render_tasks(struct mw *w, struct sup *sup)
{
	const struct sup_tstats *ts = sup_store_tstats(sup);
	struct sup_recorder_stats st;

	if (ts == NULL)
		return;
	head(w, "hive_tasks_submitted_total", "counter",
	    "Tasks queued (first attempts), by the capability of their queue.");
	for (unsigned i = 0; i < ts->ncaps; i++) {
		line(w, "hive_tasks_submitted_total");
		label(w, "capability", ts->caps[i].name);
		end_u64(w, ts->caps[i].submitted);
	}
	pair_family(w, ts, "hive_tasks_started_total", "Task attempts started.",
	    offsetof(struct sup_tstats_pair, started));
	pair_family(w, ts, "hive_tasks_completed_total",
	    "Task attempts that ended with status ok.",
	    offsetof(struct sup_tstats_pair, completed));
	pair_family(w, ts, "hive_tasks_failed_total",
	    "Task attempts that ended with status error.",
	    offsetof(struct sup_tstats_pair, failed));
	head(w, "hive_tasks_dead_total", "counter",
	    "Dead letters (agent: who gave up on the task, when known).");
	for (unsigned i = 0; i < ts->npairs; i++) {
		const struct sup_tstats_pair *p = &ts->pairs[i];
		if (p->dead == 0)
			continue;
		line(w, "hive_tasks_dead_total");
		label(w, "capability", ts->caps[p->cap].name);
		label(w, "agent", p->agent);
		end_u64(w, p->dead);
	}
	for (unsigned i = 0; i < ts->ncaps; i++) {
		if (ts->caps[i].dead == 0)
			continue;
		line(w, "hive_tasks_dead_total");
		label(w, "capability", ts->caps[i].name);
		end_u64(w, ts->caps[i].dead);
	}
	usage_family(w, ts, "hive_usage_input_tokens_total",
	    "Input tokens the results of task attempts reported (usage).",
	    offsetof(struct sup_tstats_pair, input_tokens));
	usage_family(w, ts, "hive_usage_output_tokens_total",
	    "Output tokens the results of task attempts reported (usage).",
	    offsetof(struct sup_tstats_pair, output_tokens));
	usage_family(w, ts, "hive_usage_cost_total",
	    "Cost the results of task attempts reported (usage), in the "
	    "unit the handlers use.", 0);
	hist_family(w, ts, "hive_task_run_seconds",
	    "Run time of task attempts (started to finished), seconds.", 1);
	hist_family(w, ts, "hive_task_queue_wait_seconds",
	    "Time task attempts waited in their queue (queued to started), "
	    "seconds.", 0);
	head(w, "hive_task_stats_dropped_total", "counter",
	    "Task counts dropped: no room for another label set.");
	line(w, "hive_task_stats_dropped_total");
	end_u64(w, ts->dropped);
	if (sup_store_recorder_stats(sup, &st) < 0)
		return;
	head(w, "hive_recorder_backlog", "gauge",
	    "Stream entries the recorder has read and not yet written.");
	line(w, "hive_recorder_backlog");
	end_u64(w, st.backlog);
	head(w, "hive_recorder_lag_seconds", "gauge",
	    "How far behind the record is: seconds since the time up to which "
	    "results are committed to PostgreSQL.");
	line(w, "hive_recorder_lag_seconds");
	{
		double now = ev_now(sup->loop) * 1000.;
		end_f(w, now > (double)st.clock_ms ?
		    (now - (double)st.clock_ms) / 1000. : 0);
	}
}

/* ---- queues ---- */

static void
queue_family(struct mw *w, const struct sup_qstat_sample *s, int which,
    const char *name, const char *help, uint64_t now_ms)
{
	head(w, name, "gauge", help);
	for (size_t i = 0; i < s->n; i++) {
		const struct sup_qstat_q *q = &s->q[i];
		double v;

		switch (which) {
		case 0: v = (double)q->length; break;
		case 1: v = (double)q->pending; break;
		case 2: v = (double)q->lag; break;
		case 3: v = q->oldest_ms == 0 || now_ms < q->oldest_ms ? 0 :
		    (double)(now_ms - q->oldest_ms) / 1000.; break;
		default: v = (double)q->consumers; break;
		}
		if (v < 0)               /* unknown (lag): no sample */
			continue;
		line(w, name);
		label(w, "capability", q->name);
		label_u(w, "priority", q->prio);
		end_f(w, v);
	}
}

static void
render_queues(struct mw *w, struct sup *sup)
{
	const struct sup_qstat_sample *s = sup_qstat_last(sup->qstat);
	uint64_t now_ms = (uint64_t)(ev_now(sup->loop) * 1000.);
	static const struct sup_qstat_sample none;

	if (s == NULL)
		s = &none;
	queue_family(w, s, 0, "hive_queue_length",
	    "Entries in the queue stream (XLEN), acknowledged ones not yet "
	    "trimmed included.", now_ms);
	queue_family(w, s, 1, "hive_queue_pending",
	    "Tasks delivered to a worker and not yet acknowledged.", now_ms);
	queue_family(w, s, 2, "hive_queue_lag",
	    "Tasks not yet delivered to any worker.", now_ms);
	queue_family(w, s, 3, "hive_queue_oldest_age_seconds",
	    "Age of the oldest task queued or pending (0: none).", now_ms);
	queue_family(w, s, 4, "hive_queue_consumers",
	    "Consumers in the queue's workers group.", now_ms);
	if (s->dead >= 0) {
		head(w, "hive_dead_letters", "gauge",
		    "Entries in the dead-letter stream.");
		line(w, "hive_dead_letters");
		end_u64(w, (uint64_t)s->dead);
	}
}

/* GET /events (events.c). */
static void
render_events(struct mw *w, struct sup *sup)
{
	struct sup_events_stats st;

	sup_events_stats(sup, &st);
	head(w, "hive_events_clients", "gauge",
	    "Clients of GET /events connected now.");
	line(w, "hive_events_clients");
	end_u64(w, st.clients);
	head(w, "hive_events_published_total", "counter",
	    "Live events published (GET /events).");
	line(w, "hive_events_published_total");
	end_u64(w, st.published);
	head(w, "hive_events_dropped_clients_total", "counter",
	    "Clients of GET /events dropped for not reading fast enough.");
	line(w, "hive_events_dropped_clients_total");
	end_u64(w, st.dropped);
}

int
sup_metrics_render(struct sup *sup, struct hbuf *b)
{
	struct mw w = { .b = b };

	render_up(&w, sup);
	render_agents(&w, sup);
	render_workers(&w, sup);
	render_tasks(&w, sup);
	render_queues(&w, sup);
	render_events(&w, sup);
	return w.oom ? -1 : 0;
}

/* ---- the endpoints ---- */

static void
metrics_get(struct api_req *req)
{
	struct hbuf b = { 0 };

	if (sup_metrics_render(api_sup(req), &b) < 0) {
		hbuf_free(&b);
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	api_reply_text(req, 200, METRICS_TYPE, b.p, b.len);
	hbuf_free(&b);
}

static json_t *
queue_json(const struct sup_qstat_q *q, uint64_t now_ms)
{
	return json_pack("{s:s, s:I, s:s, s:I, s:I, s:o, s:o, s:I}",
	    "capability", q->name, "priority", (json_int_t)q->prio,
	    "stream", q->key, "length", (json_int_t)q->length,
	    "pending", (json_int_t)q->pending,
	    "lag", q->lag < 0 ? json_null() : json_integer(q->lag),
	    "oldest_age_ms", q->oldest_ms == 0 ? json_null() :
	    json_integer(now_ms > q->oldest_ms ?
	    (json_int_t)(now_ms - q->oldest_ms) : 0),
	    "consumers", (json_int_t)q->consumers);
}

static void
queues_get(struct api_req *req)
{
	struct sup *sup = api_sup(req);
	const struct sup_qstat_sample *s = sup_qstat_last(sup->qstat);
	uint64_t now_ms = (uint64_t)(ev_now(sup->loop) * 1000.);
	json_t *arr = json_array();

	for (size_t i = 0; arr != NULL && s != NULL && i < s->n; i++)
		if (json_array_append_new(arr, queue_json(&s->q[i], now_ms)) < 0) {
			json_decref(arr);
			arr = NULL;
		}
	if (arr == NULL) {
		api_fail(req, 500, "internal", "out of memory");
		return;
	}
	api_reply(req, 200, json_pack("{s:o, s:o}", "queues", arr, "at",
	    api_time_json(s != NULL ? (long long)s->at_ms : 0)));
}

const struct api_route api_metrics_routes[] = {
	{ "GET", "/metrics", "", API_TEXT, metrics_get },
	{ "GET", "/queues", "", 0, queues_get },
	{ NULL, NULL, NULL, 0, NULL },
};
