/*
 * api_dead.h - what the endpoints of api_dead.c (dead letters) and
 * api_submit.c (POST /tasks, POST /workflows) share; api.h is the API's
 * interface to the server.
 */
#ifndef HIVE_API_DEAD_H
#define HIVE_API_DEAD_H

#include <stddef.h>

#include <jansson.h>

struct api_req;

/* ---- api_submit.c ---- */

void sub_post_task(struct api_req *);
void sub_post_workflow(struct api_req *);

/*
 * A JSON body, read strictly; each fails (-1) with err naming the field
 * ("field 'tasks[2].prio': ...") for a 400.  in is where o is ("" at
 * the top, "tasks[2]").  sub_body_keys: every key of o is one of allowed
 * (NULL-ended).  sub_opt_str: a string field without NUL, *out NULL when
 * absent or null; it borrows from o.
 */
int sub_body_keys(json_t *o, const char *const *allowed, const char *in,
    char *err, size_t len);
int sub_opt_str(json_t *o, const char *name, const char *in,
    const char **out, char *err, size_t len);
/* A capability a task may name: "name" or "@agent". */
int sub_capability_ok(const char *s);

#endif /* HIVE_API_DEAD_H */
