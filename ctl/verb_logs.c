/*
 * verb_logs.c - hivectl logs AGENT[/N] [-f] [-n N]: an agent's output
 * (its handlers' stderr lines, kept by hived), one line each:
 *
 *   2026-12-07T11:00:00.123Z echo/1 [job-7] loading the model
 *
 * time (UTC, as hived got the line), the instance, the task in brackets
 * when the worker could tell it, the text.  --json: each line as one
 * JSON object per line ({"agent","instance","task","text","at"}).
 *
 * The last lines come from GET /agents/NAME/output; with -f hivectl then
 * follows GET /events?types=output&agent=NAME[&instance=N] from the
 * last_event_id that answer gave, so no line is lost or printed twice
 * between the two, until Ctrl-C (exit 0) or hived ends the stream.
 */
#include "hivectl.h"
#include "sse.h"

#include <stdlib.h>
#include <string.h>

struct logs {
	struct ctl *c;
	const char *name;
	long inst;                    /* 0: every instance */
};

/* One line, as the top says. */
static void
print_line(struct logs *lg, json_t *l)
{
	const char *task = json_string_value(json_object_get(l, "task"));
	const char *text = json_string_value(json_object_get(l, "text"));
	const char *at = json_string_value(json_object_get(l, "at"));
	json_int_t inst = json_integer_value(json_object_get(l, "instance"));
	char *s;

	if (lg->c->json) {
		json_object_set_new(l, "agent", json_string(lg->name));
		if ((s = json_dumps(l, JSON_COMPACT | JSON_PRESERVE_ORDER)) !=
		    NULL)
			printf("%s\n", s);
		free(s);
	} else
		printf("%s %s/%lld %s%s%s%s\n", at != NULL ? at : "-", lg->name,
		    (long long)inst, task != NULL ? "[" : "",
		    task != NULL ? task : "", task != NULL ? "] " : "",
		    text != NULL ? text : "");
	fflush(stdout);
}

/* An event of the follow: an output line, or a reset (lines lost). */
static int
on_event(const char *id, const char *event, const char *data, void *arg)
{
	struct logs *lg = arg;
	json_t *j = json_loads(data, 0, NULL);

	if (strcmp(event, "output") == 0 && json_is_object(j)) {
		const char *agent = json_string_value(json_object_get(j,
		    "agent"));
		json_int_t inst = json_integer_value(json_object_get(j,
		    "instance"));

		/* hived filters; this only guards against a wider stream. */
		if (agent != NULL && strcmp(agent, lg->name) == 0 &&
		    (lg->inst == 0 || inst == lg->inst)) {
			json_object_del(j, "agent");
			print_line(lg, j);
		}
	} else if (strcmp(event, "reset") == 0) {
		fprintf(stderr, "hivectl: resumed too late, lines may be "
		    "missing (%s)\n", json_string_value(json_object_get(j,
		    "reason")) ? json_string_value(json_object_get(j,
		    "reason")) : "reset");
	}
	json_decref(j);
	return 0;
}

/* NAME or NAME/N into lg; CTL_OK or a usage error. */
static int
parse_agent(struct ctl *c, struct logs *lg, char *arg)
{
	char *slash = strrchr(arg, '/'), *end;

	lg->name = arg;
	lg->inst = 0;
	if (slash == NULL)
		return CTL_OK;
	*slash = '\0';
	lg->inst = strtol(slash + 1, &end, 10);
	if (slash[1] < '1' || slash[1] > '9' || *end != '\0' ||
	    lg->inst < 1 || lg->inst > 9999)
		return ctl_usage(c, "'%s/%s': the instance is a number 1..9999",
		    arg, slash + 1);
	return CTL_OK;
}

/* GET path, print its lines; *last_id: its last_event_id (or NULL). */
static int
logs_get(struct logs *lg, const char *path, char **last_id)
{
	json_t *body, *line;
	const char *last;
	size_t i;
	int rc;

	*last_id = NULL;
	if ((rc = ctl_call(lg->c, "GET", path, NULL, &body)) != CTL_OK)
		return rc;
	json_array_foreach(json_object_get(body, "lines"), i, line)
		print_line(lg, line);
	if ((last = json_string_value(json_object_get(body,
	    "last_event_id"))) != NULL)
		*last_id = strdup(last);
	json_decref(body);
	return CTL_OK;
}

int
verb_logs(struct ctl *c)
{
	struct logs lg = { .c = c };
	char num[32], *path = NULL, *name = NULL, *arg, *last = NULL;
	int rc;

	if ((arg = strdup(c->args[0])) == NULL)
		return CTL_FAILED;
	if ((rc = parse_agent(c, &lg, arg)) != CTL_OK)
		goto out;
	name = ctl_escape(c, lg.name);
	if (asprintf(&path, "/agents/%s/output", name) == -1) {
		path = NULL;
		rc = CTL_FAILED;
		goto out;
	}
	snprintf(num, sizeof(num), "%ld", lg.inst);
	ctl_path_add(c, &path, "instance", lg.inst ? num : NULL);
	snprintf(num, sizeof(num), "%ld", c->lines);
	ctl_path_add(c, &path, "n", (c->given & OPT_LINES) ? num : NULL);
	if ((rc = logs_get(&lg, path, &last)) != CTL_OK || !c->follow)
		goto out;
	free(path);
	if ((path = strdup("/events?types=output")) == NULL) {
		rc = CTL_FAILED;
		goto out;
	}
	ctl_path_add(c, &path, "agent", lg.name);
	snprintf(num, sizeof(num), "%ld", lg.inst);
	ctl_path_add(c, &path, "instance", lg.inst ? num : NULL);
	rc = ctl_sse(c, path, last, on_event, &lg);
out:
	free(last);
	free(path);
	free(name);
	free(arg);
	return rc;
}
