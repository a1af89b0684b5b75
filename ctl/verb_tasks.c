/*
 * verb_tasks.c - the verbs about tasks and workflows: submit (and
 * --wait), wait, task, tasks, workflow, workflows; and the list walker
 * every list verb uses (ctl_list: follows "next" up to --limit).
 */
#include "hivectl.h"
#include "sse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE_MAX       1000     /* the API's largest page */
#define POLL_FIRST_MS  50       /* wait: first interval, then x1.5 ... */
#define POLL_MAX_MS    1000     /* ... up to this */
#define UNKNOWN_MAX_MS 30000    /* wait: a task unknown this long is none */
#define PAYLOAD_MAX    (64u << 20)

static void
oom(void)
{
	fprintf(stderr, "hivectl: out of memory\n");
	exit(CTL_FAILED);
}

void
ctl_path_add(struct ctl *c, char **path, const char *name, const char *value)
{
	char *e, *p;

	if (value == NULL)
		return;
	e = ctl_escape(c, value);
	if (asprintf(&p, "%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?',
	    name, e) == -1)
		oom();
	free(e);
	free(*path);
	*path = p;
}

int
ctl_list(struct ctl *c, const char *path, const char *key, long limit,
    json_t **out)
{
	json_t *all = json_array(), *next = json_null(), *page, *items;
	char *cursor = NULL, num[24];
	int rc = CTL_OK;

	if (all == NULL)
		oom();
	while ((long)json_array_size(all) < limit) {
		char *p = strdup(path);
		long want = limit - (long)json_array_size(all);

		if (p == NULL)
			oom();
		snprintf(num, sizeof(num), "%ld", want < PAGE_MAX ? want :
		    PAGE_MAX);
		ctl_path_add(c, &p, "limit", num);
		ctl_path_add(c, &p, "cursor", cursor);
		rc = ctl_call(c, "GET", p, NULL, &page);
		free(p);
		if (rc != CTL_OK)
			break;
		items = json_object_get(page, key);
		json_array_extend(all, items);
		json_decref(next);
		next = json_incref(json_object_get(page, "next"));
		if (next == NULL)
			next = json_null();
		/*
		 * A page may be empty and still have a next one (a filtered
		 * scan is bounded per request: GET /dead); only a cursor that
		 * does not move would loop forever.
		 */
		if (!json_is_string(next) || (cursor != NULL &&
		    strcmp(cursor, json_string_value(next)) == 0)) {
			json_decref(page);
			break;
		}
		free(cursor);
		if ((cursor = strdup(json_string_value(next))) == NULL)
			oom();
		json_decref(page);
	}
	free(cursor);
	if (rc != CTL_OK) {
		json_decref(all);
		json_decref(next);
		*out = NULL;
		return rc;
	}
	if ((*out = json_object()) == NULL)
		oom();
	json_object_set_new(*out, key, all);
	json_object_set_new(*out, "next", next);
	return CTL_OK;
}

/* The payload argument: JSON text, or "-" for stdin. */
static int
payload_arg(struct ctl *c, const char *arg, json_t **out)
{
	json_error_t err;
	char *text = NULL;
	size_t n = 0;

	if (strcmp(arg, "-") == 0) {
		if ((text = malloc(PAYLOAD_MAX + 1)) == NULL)
			oom();
		n = fread(text, 1, PAYLOAD_MAX, stdin);
		text[n] = '\0';
		arg = text;
	}
	*out = json_loads(arg, JSON_DECODE_ANY, &err);
	free(text);
	if (*out == NULL)
		return ctl_usage(c, "the payload is not JSON: %s (at line %d, "
		    "column %d)", err.text, err.line, err.column);
	return CTL_OK;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
pause_ms(long long ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int
final_state(const char *s)
{
	return s != NULL && (strcmp(s, "completed") == 0 ||
	    strcmp(s, "failed") == 0 || strcmp(s, "dead") == 0);
}

/* A finished task's outcome: the result on stdout; exit 1 unless it
 * completed (the error on stderr). */
static int
task_outcome(struct ctl *c, const json_t *doc)
{
	const json_t *t = json_object_get(doc, "task");
	const json_t *res = json_object_get(t, "result");
	const char *state = json_string_value(json_object_get(t, "state"));
	const char *err = json_string_value(json_object_get(t, "error"));
	int ok = strcmp(state, "completed") == 0;

	if (c->json)
		ctl_json_print(doc);
	else if (res != NULL && !json_is_null(res))
		ctl_json_print(res);
	if (ok)
		return CTL_OK;
	fprintf(stderr, "hivectl: task %s %s%s%s\n", json_string_value(
	    json_object_get(t, "id")), state, err ? ": " : "", err ? err : "");
	return CTL_FAILED;
}

/*
 * Poll GET /tasks/ID until it is completed, failed or dead (or timeout_ms
 * passes; -1: no bound).  The interval starts short and grows, so a quick
 * task is seen quickly and a long one costs few requests.  A 404 is a
 * task the recorder has not written yet, up to UNKNOWN_MAX_MS.
 */
static int
wait_task(struct ctl *c, const char *id, long long timeout_ms)
{
	long long start = now_ms(), interval = POLL_FIRST_MS, left;
	char *eid = ctl_escape(c, id), *path;
	const char *state = "unknown";
	json_t *last = NULL;
	struct ctl_resp r;
	int rc;

	if (asprintf(&path, "/tasks/%s", eid) == -1)
		oom();
	free(eid);
	for (;;) {
		if ((rc = ctl_request(c, "GET", path, NULL, 0, &r)) != CTL_OK)
			break;
		if (r.status == 200) {
			json_decref(last);
			last = json_incref(r.body);
			state = json_string_value(json_object_get(
			    json_object_get(last, "task"), "state"));
			if (final_state(state)) {
				rc = task_outcome(c, last);
				ctl_resp_free(&r);
				break;
			}
		} else if (r.status != 404 || (last == NULL && timeout_ms < 0 &&
		    now_ms() - start > UNKNOWN_MAX_MS)) {
			rc = ctl_http_fail(c, &r);
			ctl_resp_free(&r);
			break;
		}
		ctl_resp_free(&r);
		left = timeout_ms < 0 ? interval : start + timeout_ms - now_ms();
		if (left <= 0) {
			if (c->json && last != NULL)
				ctl_json_print(last);
			fprintf(stderr, "hivectl: task %s is still %s after "
			    "%lld ms\n", id, state ? state : "unknown",
			    timeout_ms);
			rc = CTL_FAILED;
			break;
		}
		pause_ms(interval < left ? interval : left);
		interval = interval * 3 / 2 < POLL_MAX_MS ? interval * 3 / 2 :
		    POLL_MAX_MS;
	}
	json_decref(last);
	free(path);
	return rc;
}

int
verb_submit(struct ctl *c)
{
	json_t *payload, *body, *ans;
	const char *id;
	int rc;

	if (c->agent != NULL && c->nargs != 1)
		return ctl_usage(c, "with --agent, submit takes only the JSON "
		    "payload (capability or agent, not both)");
	if (c->agent == NULL && c->nargs != 2)
		return ctl_usage(c, "submit needs CAPABILITY and JSON");
	if ((rc = payload_arg(c, c->args[c->nargs - 1], &payload)) != CTL_OK)
		return rc;
	if ((body = json_object()) == NULL)
		oom();
	if (c->agent != NULL)
		json_object_set_new(body, "agent", json_string(c->agent));
	else
		json_object_set_new(body, "capability", json_string(c->args[0]));
	json_object_set_new(body, "payload", payload);
	if (c->id != NULL)
		json_object_set_new(body, "id", json_string(c->id));
	if (c->priority >= 0)
		json_object_set_new(body, "priority", json_integer(c->priority));
	rc = ctl_call(c, "POST", "/tasks", body, &ans);
	json_decref(body);
	if (rc != CTL_OK)
		return rc;
	if ((id = json_string_value(json_object_get(ans, "id"))) == NULL) {
		fprintf(stderr, "hivectl: hived's answer has no task id\n");
		rc = CTL_UNREACHABLE;
	} else if (c->wait) {
		rc = wait_task(c, id, c->timeout_ms);
	} else if (c->json) {
		ctl_json_print(ans);
	} else {
		printf("%s\n", id);
	}
	json_decref(ans);
	return rc;
}

/* What --follow has printed so far. */
struct follow {
	char last[256];               /* the last event's id */
	int ended;                    /* the end came */
	int status_line;              /* a progress line is on stderr (a
	                               * terminal), to be cleared */
	int tty;                      /* stderr is a terminal */
	int nl;                       /* the last chunk ended with '\n' */
};

static void
follow_clear(struct follow *f)
{
	if (f->status_line) {
		fputs("\r\033[K", stderr);
		f->status_line = 0;
	}
}

/*
 * One event of GET /tasks/ID/output: a chunk's text on stdout as it
 * comes; a progress as a status line on stderr when it is a terminal
 * (each one over the last), else a line "progress: {...}" per update;
 * the end stops the stream.
 */
static int
follow_event(const char *id, const char *event, const char *data, void *arg)
{
	struct follow *f = arg;
	json_t *d = json_loads(data, JSON_DECODE_ANY, NULL);
	const char *text;

	if (id[0] != '\0')
		snprintf(f->last, sizeof(f->last), "%s", id);
	if (strcmp(event, "chunk") == 0 && (text = json_string_value(d))) {
		follow_clear(f);
		fwrite(text, 1, json_string_length(d), stdout);
		fflush(stdout);
		if (json_string_length(d) > 0)
			f->nl = text[json_string_length(d) - 1] == '\n';
	} else if (strcmp(event, "progress") == 0) {
		if (f->tty) {
			fprintf(stderr, "\r\033[Kprogress: %s", data);
			f->status_line = 1;
		} else
			fprintf(stderr, "progress: %s\n", data);
		fflush(stderr);
	} else if (strcmp(event, "end") == 0)
		f->ended = 1;
	json_decref(d);
	return f->ended;
}

/*
 * Wait until the record knows task path (GET /tasks/ID is not a 404:
 * a task just submitted is recorded a moment later), for at most
 * UNKNOWN_MAX_MS.  CTL_OK also when there is no record to ask (a 503):
 * the output stream then waits by itself.
 */
static int
await_recorded(struct ctl *c, const char *path)
{
	long long start = now_ms(), interval = POLL_FIRST_MS;
	struct ctl_resp r;
	int rc;

	for (;;) {
		if ((rc = ctl_request(c, "GET", path, NULL, 0, &r)) != CTL_OK)
			return rc;
		if (r.status != 404 || now_ms() - start > UNKNOWN_MAX_MS) {
			rc = r.status == 404 ? ctl_http_fail(c, &r) : CTL_OK;
			ctl_resp_free(&r);
			return rc;
		}
		ctl_resp_free(&r);
		pause_ms(interval);
		interval = interval * 3 / 2 < POLL_MAX_MS ? interval * 3 / 2 :
		    POLL_MAX_MS;
	}
}

/*
 * wait --follow: the task's output (GET /tasks/ID/output) until its end,
 * then its result as wait prints it.  A stream that breaks off is taken
 * up again after the last event; one stopped by Ctrl-C ends hivectl
 * (exit 1, nothing more waited for).
 */
static int
follow_task(struct ctl *c, const char *id)
{
	struct follow f;
	char *eid = ctl_escape(c, id), *path, *opath;
	int rc, tries = 0;

	memset(&f, 0, sizeof(f));
	f.tty = isatty(2);
	f.nl = 1;
	if (asprintf(&path, "/tasks/%s", eid) == -1 ||
	    asprintf(&opath, "/tasks/%s/output", eid) == -1)
		oom();
	free(eid);
	if ((rc = await_recorded(c, path)) != CTL_OK)
		goto out;
	for (;;) {
		rc = ctl_sse(c, opath, f.last[0] ? f.last : NULL, follow_event,
		    &f);
		follow_clear(&f);
		if (rc != CTL_OK || f.ended)
			break;
		/* Ended by the server without an end (hived stopping), or
		 * by Ctrl-C: ctl_sse cannot say which; go on once. */
		if (++tries > 1 || f.last[0] == '\0') {
			fprintf(stderr, "hivectl: stopped following task %s "
			    "before its end\n", id);
			rc = CTL_FAILED;
			break;
		}
	}
	if (rc == CTL_OK) {
		/* The result starts on a line of its own. */
		if (!f.nl)
			putchar('\n');
		rc = wait_task(c, id, -1);
	}
out:
	free(path);
	free(opath);
	return rc;
}

int
verb_wait(struct ctl *c)
{
	if (c->follow) {
		if (c->given & OPT_TIMEOUT)
			return ctl_usage(c, "--follow and --timeout do not go "
			    "together");
		return follow_task(c, c->args[0]);
	}
	return wait_task(c, c->args[0], c->timeout_ms);
}

/* "/tasks/ID"-style: the path of one thing, its id escaped. */
static char *
one_path(struct ctl *c, const char *base, const char *id)
{
	char *e = ctl_escape(c, id), *p;

	if (asprintf(&p, "%s/%s", base, e) == -1)
		oom();
	free(e);
	return p;
}

/* A JSON value on one line, for a key/value table. */
static char *
compact(const json_t *v)
{
	char *s;

	if (v == NULL || json_is_null(v))
		return strdup("-");
	s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
	return s != NULL ? s : strdup("?");
}

static void
task_details(const json_t *t)
{
	static const char *const keys[] = { "id", "state", "capability",
	    "agent", "priority", "workflow", "attempts", "stream", "entry",
	    "reply_to", "memory_v", "created_at", "queued_at", "started_at",
	    "finished_at", "error", "trace_id", NULL };
	struct ctl_table kv, st;
	const json_t *s;
	char b[8][256], *payload = compact(json_object_get(t, "payload"));
	char *result = compact(json_object_get(t, "result"));
	char *usage = compact(json_object_get(t, "usage"));
	size_t i;

	ctl_table_init(&kv, 2, "id", ctl_str(t, "id", b[0], sizeof(b[0])));
	for (i = 1; keys[i] != NULL; i++)
		ctl_table_row(&kv, keys[i], ctl_str(t, keys[i], b[0],
		    sizeof(b[0])));
	ctl_table_row(&kv, "payload", payload);
	ctl_table_row(&kv, "result", result);
	ctl_table_row(&kv, "usage", usage);
	ctl_table_print(&kv, stdout);
	ctl_table_free(&kv);
	free(payload);
	free(result);
	free(usage);

	ctl_table_init(&st, 5, "STATE", "ATTEMPT", "AGENT", "AT", "DETAIL");
	json_array_foreach(json_object_get(t, "states"), i, s)
		ctl_table_row(&st, ctl_str(s, "state", b[0], sizeof(b[0])),
		    ctl_str(s, "attempt", b[1], sizeof(b[1])),
		    ctl_str(s, "agent", b[2], sizeof(b[2])),
		    ctl_str(s, "at", b[3], sizeof(b[3])),
		    ctl_str(s, "detail", b[4], sizeof(b[4])));
	if (st.nrows > 1) {
		printf("\n");
		ctl_table_print(&st, stdout);
	}
	ctl_table_free(&st);

	ctl_table_init(&st, 7, "ATTEMPT", "STATE", "AGENT", "QUEUED",
	    "STARTED", "FINISHED", "ERROR");
	json_array_foreach(json_object_get(t, "attempts_log"), i, s)
		ctl_table_row(&st, ctl_str(s, "attempt", b[0], sizeof(b[0])),
		    ctl_str(s, "state", b[1], sizeof(b[1])),
		    ctl_str(s, "agent", b[2], sizeof(b[2])),
		    ctl_str(s, "queued_at", b[3], sizeof(b[3])),
		    ctl_str(s, "started_at", b[4], sizeof(b[4])),
		    ctl_str(s, "finished_at", b[5], sizeof(b[5])),
		    ctl_str(s, "error", b[6], sizeof(b[6])));
	if (st.nrows > 1) {
		printf("\n");
		ctl_table_print(&st, stdout);
	}
	ctl_table_free(&st);
}

int
verb_task(struct ctl *c)
{
	char *path = one_path(c, "/tasks", c->args[0]);
	json_t *body;
	int rc = ctl_call(c, "GET", path, NULL, &body);

	free(path);
	if (rc != CTL_OK)
		return rc;
	if (c->json)
		ctl_json_print(body);
	else
		task_details(json_object_get(body, "task"));
	json_decref(body);
	return CTL_OK;
}

int
ctl_list_print(struct ctl *c, char *path, const char *key,
    const struct ctl_col *cols, size_t ncols)
{
	struct ctl_table tab;
	const char *heads[CTL_TABLE_COLS], *cells[CTL_TABLE_COLS];
	char b[CTL_TABLE_COLS][256];
	json_t *body, *item;
	size_t i, n = ncols < CTL_TABLE_COLS ? ncols : CTL_TABLE_COLS;
	int rc;

	rc = ctl_list(c, path, key, c->limit > 0 ? c->limit : 100, &body);
	free(path);
	if (rc != CTL_OK)
		return rc;
	if (c->json) {
		ctl_json_print(body);
		json_decref(body);
		return CTL_OK;
	}
	memset(&tab, 0, sizeof(tab));
	tab.ncols = n;
	for (size_t k = 0; k < n; k++)
		heads[k] = cols[k].header;
	ctl_table_rowv(&tab, heads);
	json_array_foreach(json_object_get(body, key), i, item) {
		for (size_t k = 0; k < n; k++) {
			size_t len = cols[k].width > 0 && cols[k].width <
			    sizeof(b[k]) ? cols[k].width : sizeof(b[k]);

			if (cols[k].fmt != NULL) {
				cols[k].fmt(item, b[k], len);
				cells[k] = b[k];
			} else
				cells[k] = ctl_str(item, cols[k].field, b[k], len);
		}
		ctl_table_rowv(&tab, cells);
	}
	ctl_table_print(&tab, stdout);
	ctl_table_free(&tab);
	json_decref(body);
	return CTL_OK;
}

int
verb_tasks(struct ctl *c)
{
	static const struct ctl_col cols[] = {
		{ "ID", "id", 0, NULL },
		{ "STATE", "state", 0, NULL },
		{ "CAPABILITY", "capability", 0, NULL },
		{ "AGENT", "agent", 0, NULL },
		{ "ATTEMPTS", "attempts", 0, NULL },
		{ "CREATED", "created_at", 0, NULL },
		{ "ERROR", "error", 64, NULL },
	};
	char *path = strdup("/tasks");

	if (path == NULL)
		oom();
	ctl_path_add(c, &path, "state", c->state);
	ctl_path_add(c, &path, "capability", c->capability);
	ctl_path_add(c, &path, "agent", c->agent);
	ctl_path_add(c, &path, "workflow", c->workflow);
	ctl_path_add(c, &path, "since", c->since);
	return ctl_list_print(c, path, "tasks", cols,
	    sizeof(cols) / sizeof(cols[0]));
}

/* A list of ids as "a,b,c" (or "-"). */
static void
id_list(const json_t *arr, char *buf, size_t len)
{
	const json_t *v;
	size_t i, off = 0;

	snprintf(buf, len, "-");
	json_array_foreach(arr, i, v)
		if (json_is_string(v) && off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%s",
			    i ? "," : "", json_string_value(v));
}

int
verb_workflow(struct ctl *c)
{
	char *path = one_path(c, "/workflows", c->args[0]);
	json_t *body, *w, *t;
	struct ctl_table tab;
	char b[8][256];
	size_t i;
	int rc = ctl_call(c, "GET", path, NULL, &body);

	free(path);
	if (rc != CTL_OK)
		return rc;
	if (c->json) {
		ctl_json_print(body);
		json_decref(body);
		return CTL_OK;
	}
	w = json_object_get(body, "workflow");
	ctl_table_init(&tab, 2, "id", ctl_str(w, "id", b[0], sizeof(b[0])));
	ctl_table_row(&tab, "name", ctl_str(w, "name", b[1], sizeof(b[1])));
	ctl_table_row(&tab, "state", ctl_str(w, "state", b[2], sizeof(b[2])));
	ctl_table_row(&tab, "created_at", ctl_str(w, "created_at", b[3],
	    sizeof(b[3])));
	ctl_table_row(&tab, "finished_at", ctl_str(w, "finished_at", b[4],
	    sizeof(b[4])));
	ctl_table_print(&tab, stdout);
	ctl_table_free(&tab);
	printf("\n");
	ctl_table_init(&tab, 7, "TASK", "STATE", "CAPABILITY", "AGENT",
	    "ATTEMPTS", "DEPENDS_ON", "ERROR");
	json_array_foreach(json_object_get(w, "tasks"), i, t) {
		id_list(json_object_get(t, "depends_on"), b[5], sizeof(b[5]));
		ctl_table_row(&tab, ctl_str(t, "id", b[0], sizeof(b[0])),
		    ctl_str(t, "state", b[1], sizeof(b[1])),
		    ctl_str(t, "capability", b[2], sizeof(b[2])),
		    ctl_str(t, "agent", b[3], sizeof(b[3])),
		    ctl_str(t, "attempts", b[4], sizeof(b[4])), b[5],
		    ctl_str(t, "error", b[6], 64));
	}
	ctl_table_print(&tab, stdout);
	ctl_table_free(&tab);
	json_decref(body);
	return CTL_OK;
}

/* A workflow's {"total": n, "<state>": n} as "5: completed 3, running 2". */
static void
task_counts(const json_t *w, char *buf, size_t len)
{
	json_t *counts = json_object_get(w, "tasks");
	const char *k;
	json_t *v;
	size_t off;

	off = (size_t)snprintf(buf, len, "%lld", (long long)
	    json_integer_value(json_object_get(counts, "total")));
	json_object_foreach(counts, k, v)
		if (strcmp(k, "total") != 0 && json_integer_value(v) > 0 &&
		    off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%s %lld",
			    off && strchr(buf, ':') ? ", " : ": ", k,
			    (long long)json_integer_value(v));
}

int
verb_workflows(struct ctl *c)
{
	static const struct ctl_col cols[] = {
		{ "ID", "id", 0, NULL },
		{ "NAME", "name", 0, NULL },
		{ "STATE", "state", 0, NULL },
		{ "CREATED", "created_at", 0, NULL },
		{ "FINISHED", "finished_at", 0, NULL },
		{ "TASKS", NULL, 0, task_counts },
	};
	char *path = strdup("/workflows");

	if (path == NULL)
		oom();
	ctl_path_add(c, &path, "state", c->state);
	ctl_path_add(c, &path, "since", c->since);
	return ctl_list_print(c, path, "workflows", cols,
	    sizeof(cols) / sizeof(cols[0]));
}
