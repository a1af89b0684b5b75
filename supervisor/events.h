/*
 * events.h - hived's live events: one bus, a resume window, the clients
 * of GET /events, the metrics tick and GET /stats (events.c;
 * docs/API.md, Events).
 *
 *   agent.c, store.c (record/), api_dead.c, ...
 *        |  sup_event(sup, "agent", {...})
 *        v
 *   id, "at", JSON text --> resume window (ring of [hive] events_window)
 *                      \--> each /events client whose filter takes it
 *                           (sse.h: a bounded buffer; slow ones dropped)
 */
#ifndef HIVE_EVENTS_H
#define HIVE_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api.h"
#include "hive_proto.h"
#include "hived.h"

struct sup_events;

/* Publish one event to every /events client whose filter takes it and
 * to the resume window.  type: one of the names below; data: a JSON
 * object, reference stolen; "at" (RFC 3339 ms) added when missing.
 * Never blocks; never fails the caller (out of memory: counted). */
void sup_event(struct sup *, const char *type, json_t *data);

/* agent.c: in moved from was on ev (its state is in->fsm.state): an
 * `agent` event. */
void sup_event_agent(struct sup_inst *in, enum sup_state was,
    enum sup_event ev);

/* api_dead.c: the dead letter of task id (its agent "name/n" or "", the
 * queue key its retry went to, code and reason) was retried. */
void sup_event_dead_retried(struct sup *, const char *id, const char *agent,
    const char *key, const char *code, const char *reason);

/* The types, in docs/API.md's order; EV_T_* index events_type_names. */
enum ev_type {
	EV_T_AGENT, EV_T_TASK, EV_T_TASKS, EV_T_WORKFLOW, EV_T_DEAD,
	EV_T_METRICS, EV_T_OUTPUT, EV_T_RESET, EV_T_COUNT
};
extern const char *const events_type_names[EV_T_COUNT];

#define EVENTS_STATS_MAX   900   /* ticks GET /stats keeps: 15 minutes */

/* A client's filter: GET /events's query, parsed (events_filter_parse). */
struct ev_filter {
	unsigned types;              /* bit per enum ev_type; all when none */
	char agent[HIVE_NAME_MAX + 1];  /* "" any */
	unsigned instance;           /* 0 any */
	int resume;                  /* a last event id was given */
	uint64_t last_id;
};

/*
 * GET /events's arguments (each NULL when absent; last_id: the header,
 * else the query's) into *f: 0, or -1 with why in err (a 400).  Pure:
 * the tests and the fuzz target call it with any input.
 */
int events_filter_parse(const char *types, const char *agent,
    const char *instance, const char *last_id, struct ev_filter *f,
    char *err, size_t errlen);

struct sup_events *sup_events_new(struct sup *);
void sup_events_free(struct sup_events *);

/* For /metrics: clients now, events published, clients dropped. */
struct sup_events_stats {
	unsigned clients;
	uint64_t published;
	uint64_t dropped;
};
void sup_events_stats(const struct sup *, struct sup_events_stats *);
/* The id of the newest event published (before any: the window's start,
 * which a client may resume from too); 0 without the bus.  For answers
 * that a client follows with GET /events: api_output.c. */
uint64_t sup_events_last_id(const struct sup *);

extern const struct api_route api_events_routes[];

#endif /* HIVE_EVENTS_H */
