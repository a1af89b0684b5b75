/*
 * api_usage.c - GET /usage: what tasks cost (docs/API.md, "Usage"), the
 * usage their results reported (docs/PROTOCOL.md, Usage) summed by agent,
 * capability or workflow, from the record (one query on the API's
 * connection: api_tasks.h's api_record_query).
 *
 *   GET /usage?by=agent|capability|workflow&since=TIME&limit=N
 *   -> {"by": "agent", "since": TIME|null,
 *       "rows": [{"key", "tasks", "input_tokens", "output_tokens",
 *                 "cost"}, ...]}
 *
 * Rows are the tasks that reported usage (and, with since, finished at
 * or after it; the partial index tasks_usage of migration 7 holds just
 * those), most expensive first (cost, then tokens, then key).  The key
 * of agent is the agent's name (not the instance), of capability the
 * queue's (as /metrics names it: "@name" for an agent's queue and its
 * instances' direct queues), of workflow its id (tasks of no workflow
 * left out).
 */
#include "hived.h"
#include "api.h"
#include "api_tasks.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* The key of each grouping; $1 is the key prefix (capability only). */
static const struct {
	const char *by;
	const char *key;
	const char *where;
} usage_by[] = {
	{ "agent", "split_part(t.agent, '/', 1)", "t.agent IS NOT NULL" },
	{ "capability",
	  "CASE WHEN left(t.stream, length($1) + 3) = $1 || ':q:' THEN "
	  "regexp_replace(substr(t.stream, length($1) + 4), ':[0-9]+$', '') "
	  "WHEN left(t.stream, length($1) + 8) = $1 || ':direct:' THEN "
	  "'@' || split_part(substr(t.stream, length($1) + 9), '/', 1) "
	  "ELSE '' END", "true" },
	{ "workflow", "t.workflow", "t.workflow IS NOT NULL" },
};

/* Columns: key, tasks, input_tokens, output_tokens (sums as text: they
 * may pass int8), cost. */
static void
usage_done(struct api_req *req, PGresult *res)
{
	json_t *rows = json_array(), *o;
	const char *by = api_query(req, "by");
	long long since = 0;

	(void)api_time(req, "since", &since);   /* checked before */
	for (int i = 0; rows != NULL && i < PQntuples(res); i++) {
		o = json_pack("{s:s, s:I, s:I, s:I, s:f}",
		    "key", PQgetvalue(res, i, 0),
		    "tasks", (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10),
		    "input_tokens",
		    (json_int_t)strtoll(PQgetvalue(res, i, 2), NULL, 10),
		    "output_tokens",
		    (json_int_t)strtoll(PQgetvalue(res, i, 3), NULL, 10),
		    "cost", strtod(PQgetvalue(res, i, 4), NULL));
		if (o == NULL || json_array_append_new(rows, o) < 0) {
			json_decref(rows);
			rows = NULL;
		}
	}
	api_reply(req, 200, rows == NULL ? NULL : json_pack("{s:s, s:o, s:o}",
	    "by", by != NULL ? by : "agent", "since", api_time_json(since),
	    "rows", rows));
}

void
api_usage(struct api_req *req)
{
	const char *by = api_query(req, "by");
	long long since;
	unsigned limit;
	size_t k;
	char sql[1024], sincebuf[24], limitbuf[16];
	const char *v[3];

	if (by == NULL)
		by = "agent";
	for (k = 0; k < sizeof(usage_by) / sizeof(usage_by[0]); k++)
		if (strcmp(usage_by[k].by, by) == 0)
			break;
	if (k == sizeof(usage_by) / sizeof(usage_by[0])) {
		api_fail(req, 400, "bad_request", "by: one of agent, "
		    "capability, workflow");
		return;
	}
	if (api_limit(req, &limit) < 0 || api_time(req, "since", &since) < 0)
		return;
	/* $1 the prefix, $2 since (ms, 0: all), $3 the limit.  $1 is
	 * named in every query ("IS NOT NULL") so that PostgreSQL knows
	 * its type when the key does not use it. */
	snprintf(sql, sizeof(sql), "SELECT %s AS k, count(*), "
	    "coalesce(sum(t.input_tokens), 0)::text, "
	    "coalesce(sum(t.output_tokens), 0)::text, "
	    "coalesce(sum(t.cost), 0) FROM tasks t WHERE %s AND %s AND "
	    "($2::int8 = 0 OR t.finished_at >= " SQL_FROM_MS("$2") ") "
	    "AND $1::text IS NOT NULL GROUP BY k "
	    "ORDER BY 5 DESC, coalesce(sum(t.input_tokens), 0) + "
	    "coalesce(sum(t.output_tokens), 0) DESC, k LIMIT $3", usage_by[k].key, usage_by[k].where,
	    API_USAGE_HAS("t"));
	snprintf(sincebuf, sizeof(sincebuf), "%lld", since);
	snprintf(limitbuf, sizeof(limitbuf), "%u", limit);
	v[0] = api_sup(req)->cref->conf->prefix;
	v[1] = sincebuf;
	v[2] = limitbuf;
	(void)api_record_query(req, sql, 3, v, usage_done);
}
