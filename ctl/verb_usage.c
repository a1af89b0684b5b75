/*
 * verb_usage.c - hivectl usage: GET /usage (docs/API.md, "Usage") as a
 * table, or its JSON with --json.
 *
 *   KEY     TASKS  INPUT_TOKENS  OUTPUT_TOKENS  COST
 *   coder   12     120400        8812           1.8432
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hivectl.h"

/* The API's bound on limit (supervisor/api.h, API_LIMIT_MAX). */
#define USAGE_LIMIT_MAX 1000

int
verb_usage(struct ctl *c)
{
	json_t *body, *row;
	struct ctl_table t;
	char *path, num[24];
	size_t i;
	int rc;

	if (c->by != NULL && strcmp(c->by, "agent") != 0 &&
	    strcmp(c->by, "capability") != 0 && strcmp(c->by, "workflow") != 0)
		return ctl_usage(c, "--by: '%s' is not agent, capability or "
		    "workflow", c->by);
	if ((path = strdup("/usage")) == NULL) {
		fprintf(stderr, "hivectl: out of memory\n");
		exit(CTL_FAILED);
	}
	ctl_path_add(c, &path, "by", c->by);
	ctl_path_add(c, &path, "since", c->since);
	if (c->limit > 0) {
		snprintf(num, sizeof(num), "%ld", c->limit > USAGE_LIMIT_MAX ?
		    USAGE_LIMIT_MAX : c->limit);
		ctl_path_add(c, &path, "limit", num);
	}
	rc = ctl_call(c, "GET", path, NULL, &body);
	free(path);
	if (rc != CTL_OK)
		return rc;
	if (c->json) {
		ctl_json_print(body);
		json_decref(body);
		return CTL_OK;
	}
	ctl_table_init(&t, 5, "KEY", "TASKS", "INPUT_TOKENS", "OUTPUT_TOKENS",
	    "COST");
	json_array_foreach(json_object_get(body, "rows"), i, row) {
		char b[4][128], cost[64];

		snprintf(cost, sizeof(cost), "%.6g",
		    json_number_value(json_object_get(row, "cost")));
		ctl_table_row(&t, ctl_str(row, "key", b[0], sizeof(b[0])),
		    ctl_str(row, "tasks", b[1], sizeof(b[1])),
		    ctl_str(row, "input_tokens", b[2], sizeof(b[2])),
		    ctl_str(row, "output_tokens", b[3], sizeof(b[3])), cost);
	}
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	json_decref(body);
	return CTL_OK;
}
