/*
 * verb_dead.c - dead letters (hive:dead):
 *
 *   hivectl dead [ls] [--code C] [--capability C] [--limit N]
 *   hivectl dead show DEAD_ID
 *   hivectl dead retry DEAD_ID
 *   hivectl dead retry --all | --code C [--capability C]
 *
 * A retried dead letter is a new attempt of the same task (hived puts it
 * back on its stream and takes it out of hive:dead).
 */
#include "hivectl.h"

#include <stdlib.h>
#include <string.h>

static int
dead_ls(struct ctl *c)
{
	static const struct ctl_col cols[] = {
		{ "DEAD_ID", "dead_id", 0, NULL },
		{ "TASK", "id", 0, NULL },
		{ "CODE", "code", 0, NULL },
		{ "AGENT", "agent", 0, NULL },
		{ "ATTEMPT", "attempt", 0, NULL },
		{ "AT", "at", 0, NULL },
		{ "RETRYABLE", "retryable", 0, NULL },
		{ "REASON", "reason", 64, NULL },
	};
	char *path = strdup("/dead");

	if (path == NULL)
		return CTL_FAILED;
	ctl_path_add(c, &path, "code", c->code);
	ctl_path_add(c, &path, "capability", c->capability);
	return ctl_list_print(c, path, "dead", cols,
	    sizeof(cols) / sizeof(cols[0]));
}

static char *
dead_path(struct ctl *c, const char *id, const char *tail)
{
	char *e = ctl_escape(c, id), *p;

	if (asprintf(&p, "/dead/%s%s", e, tail) == -1)
		p = NULL;
	free(e);
	return p;
}

static int
dead_show(struct ctl *c, const char *id)
{
	static const char *const keys[] = { "dead_id", "id", "code", "reason",
	    "stream", "entry", "agent", "attempt", "at", "workflow",
	    "retryable", "raw_hex", NULL };
	char *path = dead_path(c, id, ""), b[512], *task;
	json_t *body, *d;
	struct ctl_table t;
	int rc;

	if (path == NULL)
		return CTL_FAILED;
	rc = ctl_call(c, "GET", path, NULL, &body);
	free(path);
	if (rc != CTL_OK)
		return rc;
	if (c->json) {
		ctl_json_print(body);
		json_decref(body);
		return CTL_OK;
	}
	d = json_object_get(body, "dead");
	ctl_table_init(&t, 2, keys[0], ctl_str(d, keys[0], b, sizeof(b)));
	for (size_t i = 1; keys[i] != NULL; i++)
		if (json_object_get(d, keys[i]) != NULL)
			ctl_table_row(&t, keys[i], ctl_str(d, keys[i], b,
			    sizeof(b)));
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	if (json_object_get(d, "task") != NULL) {
		task = json_dumps(json_object_get(d, "task"), JSON_INDENT(2) |
		    JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
		printf("task:\n%s\n", task != NULL ? task : "?");
		free(task);
	}
	json_decref(body);
	return CTL_OK;
}

static int
dead_retry_one(struct ctl *c, const char *id)
{
	char *path = dead_path(c, id, "/retry"), b[3][256];
	json_t *body;
	int rc;

	if (path == NULL)
		return CTL_FAILED;
	rc = ctl_call(c, "POST", path, NULL, &body);
	free(path);
	if (rc != CTL_OK)
		return rc;
	if (c->json)
		ctl_json_print(body);
	else
		printf("retried task %s: attempt %s on %s\n",
		    ctl_str(body, "id", b[0], sizeof(b[0])),
		    ctl_str(body, "attempt", b[1], sizeof(b[1])),
		    ctl_str(body, "stream", b[2], sizeof(b[2])));
	json_decref(body);
	return CTL_OK;
}

/*
 * POST /dead/retry with the filters; hived retries a batch at a time and
 * answers "next" while more is left: asked again with that cursor until
 * it is null, the counts added up (one document for --json).
 */
static int
dead_retry_many(struct ctl *c)
{
	json_t *req = json_object(), *body = NULL;
	long long retried = 0, skipped = 0;
	char *cursor = NULL;
	int rc;

	if (req == NULL)
		return CTL_FAILED;
	if (c->code != NULL)
		json_object_set_new(req, "code", json_string(c->code));
	if (c->capability != NULL)
		json_object_set_new(req, "capability",
		    json_string(c->capability));
	if (c->all)
		json_object_set_new(req, "all", json_true());
	for (;;) {
		const char *next;

		json_decref(body);
		if ((rc = ctl_call(c, "POST", "/dead/retry", req, &body)) !=
		    CTL_OK)
			break;
		retried += json_integer_value(json_object_get(body, "retried"));
		skipped += json_integer_value(json_object_get(body, "skipped"));
		next = json_string_value(json_object_get(body, "next"));
		/* A cursor that does not move would never end. */
		if (next == NULL || (cursor != NULL && strcmp(next, cursor) == 0))
			break;
		free(cursor);
		if ((cursor = strdup(next)) == NULL)
			break;
		json_object_set_new(req, "cursor", json_string(cursor));
	}
	free(cursor);
	json_decref(req);
	if (rc != CTL_OK)
		return rc;
	json_object_set_new(body, "retried", json_integer(retried));
	json_object_set_new(body, "skipped", json_integer(skipped));
	if (c->json)
		ctl_json_print(body);
	else
		printf("retried %lld, skipped %lld\n", retried, skipped);
	json_decref(body);
	return CTL_OK;
}

int
verb_dead(struct ctl *c)
{
	const char *sub = c->nargs > 0 ? c->args[0] : "ls";
	int filter = c->code != NULL || c->capability != NULL;

	if (strcmp(sub, "ls") == 0) {
		if (c->nargs > 1)
			return ctl_usage(c, "dead ls: unexpected argument '%s'",
			    c->args[1]);
		if (c->all)
			return ctl_usage(c, "--all is for dead retry");
		return dead_ls(c);
	}
	if (strcmp(sub, "show") == 0) {
		if (c->nargs != 2)
			return ctl_usage(c, "dead show needs a DEAD_ID");
		if (c->all || filter || c->limit > 0)
			return ctl_usage(c, "dead show takes no options");
		return dead_show(c, c->args[1]);
	}
	if (strcmp(sub, "retry") == 0) {
		if (c->limit > 0)
			return ctl_usage(c, "dead retry takes no --limit");
		if (c->nargs == 2 && !c->all && !filter)
			return dead_retry_one(c, c->args[1]);
		if (c->nargs == 2)
			return ctl_usage(c, "dead retry: a DEAD_ID or a filter "
			    "(--all, --code, --capability), not both");
		if (!c->all && !filter)
			return ctl_usage(c, "dead retry needs a DEAD_ID, --all, "
			    "--code C or --capability C");
		return dead_retry_many(c);
	}
	return ctl_usage(c, "unknown dead command '%s' (ls, show, retry)",
	    sub);
}
