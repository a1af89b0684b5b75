/*
 * verb_cancel.c - hivectl cancel ID | cancel --workflow ID:
 * POST /tasks/ID/cancel, POST /workflows/ID/cancel (docs/API.md).
 */
#include <stdio.h>
#include <stdlib.h>

#include "hivectl.h"

int
verb_cancel(struct ctl *c)
{
	const char *id = c->nargs > 0 ? c->args[0] : c->workflow;
	int wf = (c->given & OPT_WORKFLOW) != 0;
	char *e, *path, b[3][64];
	json_t *body;
	int rc;

	if (id == NULL || (wf && c->nargs > 0)) {
		fprintf(stderr, "hivectl: cancel ID | cancel --workflow ID\n");
		return CTL_USAGE;
	}
	e = ctl_escape(c, id);
	if (asprintf(&path, "/%s/%s/cancel", wf ? "workflows" : "tasks",
	    e) == -1)
		path = NULL;
	free(e);
	if (path == NULL)
		return CTL_FAILED;
	rc = ctl_call(c, "POST", path, NULL, &body);
	free(path);
	if (rc != CTL_OK)
		return rc;
	if (c->json)
		ctl_json_print(body);
	else if (wf)
		printf("workflow %s cancelled: %s waiting tasks cancelled, %s "
		    "queued or running being cancelled\n", id,
		    ctl_str(body, "cancelled", b[0], sizeof(b[0])),
		    ctl_str(body, "cancelling", b[1], sizeof(b[1])));
	else
		printf("task %s %s\n", id,
		    ctl_str(body, "state", b[2], sizeof(b[2])));
	json_decref(body);
	return CTL_OK;
}
