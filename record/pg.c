/*
 * pg.c - one non-blocking PostgreSQL connection on the libev loop (record.h).
 *
 *   DOWN --connect--> CONNECTING --PQconnectPoll OK--> UP
 *     ^                    |                            |
 *     +---- retry timer <--+---- failure / lost <-------+
 *
 * Queries form a FIFO; the head is the one sent.  When the connection is
 * lost, the query in flight fails (res NULL: nobody knows whether it
 * committed, so its owner must not assume either way) and the ones not yet
 * sent stay queued for the next connection.
 */
#include "record.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

enum pg_state { PG_DOWN, PG_CONNECTING, PG_UP };

struct pg_query {
	struct pg_query *next;
	char *sql;
	int nparams;
	char **values;
	int *lengths;
	int *formats;
	char *copy;                  /* data of its COPY FROM STDIN, in turn */
	size_t *copylen;             /* each one's length */
	int ncopy, copied;
	sup_pg_cb *cb;
	void *arg;
};

struct sup_pg {
	struct ev_loop *loop;
	char *conninfo;
	PGconn *conn;
	enum pg_state st;
	ev_io io;
	int io_fd;
	ev_timer retry;
	struct backoff backoff;      /* 100 ms doubling to 5 s */
	struct pg_query *head, *tail;
	unsigned nqueued;
	int sent;                    /* head has been sent */
	PGresult *res;               /* result kept for the head query */
	int res_failed;              /* res is an error: keep it, drop later ones */
	sup_pg_state_cb *state_cb;
	void *arg;
	char *prelude;               /* first on every session (sup_pg_prelude) */
};

static void pg_connect(struct sup_pg *);
static void pg_send_next(struct sup_pg *);

static void
pg_query_free(struct pg_query *q)
{
	if (q == NULL)
		return;
	free(q->sql);
	if (q->values != NULL)
		for (int i = 0; i < q->nparams; i++)
			free(q->values[i]);
	free(q->values);
	free(q->lengths);
	free(q->formats);
	free(q->copy);
	free(q->copylen);
	free(q);
}

/* Watch the connection's socket for ev (EV_READ and/or EV_WRITE). libpq
 * may change the socket while connecting (several hosts), so re-set it. */
static void
pg_watch(struct sup_pg *pg, int events)
{
	int fd = PQsocket(pg->conn);

	if (ev_is_active(&pg->io) && fd == pg->io_fd &&
	    (pg->io.events & (EV_READ | EV_WRITE)) == events)
		return;
	ev_io_stop(pg->loop, &pg->io);
	if (fd < 0)
		return;
	ev_io_set(&pg->io, fd, events);
	pg->io_fd = fd;
	ev_io_start(pg->loop, &pg->io);
}

static uint64_t
pg_now_ms(struct sup_pg *pg)
{
	return (uint64_t)(ev_now(pg->loop) * 1000.);
}

static void
pg_clear_result(struct sup_pg *pg)
{
	if (pg->res != NULL)
		PQclear(pg->res);
	pg->res = NULL;
	pg->res_failed = 0;
}

/* Close the connection; the query in flight, if any, is returned (taken
 * off the queue: its owner is told it failed), the rest stay queued. */
static struct pg_query *
pg_close(struct sup_pg *pg)
{
	struct pg_query *q = NULL;

	ev_io_stop(pg->loop, &pg->io);
	ev_timer_stop(pg->loop, &pg->retry);
	if (pg->conn != NULL)
		PQfinish(pg->conn);
	pg->conn = NULL;
	pg->st = PG_DOWN;
	pg_clear_result(pg);
	if (pg->sent && pg->head != NULL) {
		q = pg->head;
		pg->head = q->next;
		if (pg->head == NULL)
			pg->tail = NULL;
		pg->nqueued--;
	}
	pg->sent = 0;
	return q;
}

/* After pg_close: tell who must know (the state callback if it was up,
 * the owner of the query in flight). */
static void
pg_closed(struct sup_pg *pg, int was_up, struct pg_query *q, const char *msg)
{
	if (was_up && pg->state_cb != NULL)
		pg->state_cb(pg, 0, pg->arg);
	if (q != NULL) {
		q->cb(pg, NULL, msg, q->arg);
		pg_query_free(q);
	}
}

/* Connection failed or lost: fail the query in flight, keep the rest. */
static void
pg_down(struct sup_pg *pg, const char *what)
{
	struct pg_query *q;
	int was_up = pg->st == PG_UP, first;
	unsigned delay;
	char msg[512];

	snprintf(msg, sizeof(msg), "%s", pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
	msg[strcspn(msg, "\n")] = '\0';
	q = pg_close(pg);
	delay = backoff_fail(&pg->backoff, pg_now_ms(pg), &first);
	if (first)
		log_warnx("postgres: %s: %s; retrying, queries wait (%u queued)",
		    what, msg, pg->nqueued);
	else
		log_debug("postgres: %s: %s", what, msg);
	ev_timer_set(&pg->retry, delay / 1000.0, 0.);
	ev_timer_start(pg->loop, &pg->retry);
	pg_closed(pg, was_up, q, msg);
}

/* Queue q last, or first (before any query not yet sent). */
static void
pg_enqueue(struct sup_pg *pg, struct pg_query *q, int first)
{
	if (first && pg->head != NULL && !pg->sent) {
		q->next = pg->head;
		pg->head = q;
	} else if (first && pg->head != NULL) {
		q->next = pg->head->next;
		pg->head->next = q;
		if (pg->tail == pg->head)
			pg->tail = q;
	} else {
		if (pg->tail != NULL)
			pg->tail->next = q;
		else
			pg->head = q;
		pg->tail = q;
	}
	pg->nqueued++;
	pg_send_next(pg);
}

static void
pg_prelude_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
	if (err != NULL && res != NULL)
		log_warnx("postgres: the session's first statements failed: %s",
		    err);
}

/* The prelude, first in the queue (a new session: nothing was sent). */
static void
pg_queue_prelude(struct sup_pg *pg)
{
	struct pg_query *q;

	if (pg->prelude == NULL || (q = calloc(1, sizeof(*q))) == NULL)
		return;
	if ((q->sql = strdup(pg->prelude)) == NULL) {
		free(q);
		return;
	}
	q->cb = pg_prelude_cb;
	pg_enqueue(pg, q, 1);
}

static void
pg_up(struct sup_pg *pg)
{
	int was_down = pg->backoff.down;
	uint64_t lasted;

	if (PQsetnonblocking(pg->conn, 1) != 0) {
		pg_down(pg, "set non-blocking");
		return;
	}
	pg->st = PG_UP;
	lasted = backoff_ok(&pg->backoff, pg_now_ms(pg));
	if (was_down)
		log_info("postgres: connected again after %.1fs; %u queries queued",
		    lasted / 1000.0, pg->nqueued);
	else
		log_debug("postgres: connected");
	pg_watch(pg, EV_READ);
	pg_queue_prelude(pg);
	if (pg->state_cb != NULL)
		pg->state_cb(pg, 1, pg->arg);
	if (pg->st == PG_UP)
		pg_send_next(pg);
}

static void
pg_connect_poll(struct sup_pg *pg)
{
	switch (PQconnectPoll(pg->conn)) {
	case PGRES_POLLING_READING:
		pg_watch(pg, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		pg_watch(pg, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		pg_up(pg);
		break;
	default:
		pg_down(pg, "connect");
		break;
	}
}

/*
 * The server's notices (NOTICE, WARNING below an error: "relation ...
 * already exists, skipping" from a migration run again) are libpq's to
 * print, and it prints them raw on stderr, outside the log's format.
 * They go through the logger instead, one line each, at debug: nothing
 * in them needs an operator, and the same ones come at every start.
 */
static void
pg_notice(void *arg, const char *msg)
{
	/* A notice may have more lines (DETAIL:, HINT:): one log line each. */
	while (*msg != '\0') {
		size_t n = strcspn(msg, "\r\n");

		if (n > 0)
			log_debug("postgres: %.*s", n > INT_MAX ? INT_MAX : (int)n,
			    msg);
		msg += n;
		msg += strspn(msg, "\r\n");
	}
}

static void
pg_connect(struct sup_pg *pg)
{
	pg->conn = PQconnectStart(pg->conninfo);
	if (pg->conn == NULL || PQstatus(pg->conn) == CONNECTION_BAD) {
		pg_down(pg, "connect");
		return;
	}
	PQsetNoticeProcessor(pg->conn, pg_notice, pg);
	pg->st = PG_CONNECTING;
	pg_watch(pg, EV_WRITE);
}

static void
pg_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup_pg *pg = w->data;

	if (pg->st == PG_DOWN)
		pg_connect(pg);
}

/* Flush what libpq buffered; watch for writability only while it has more. */
static int
pg_flush(struct sup_pg *pg)
{
	int r = PQflush(pg->conn);

	if (r < 0) {
		pg_down(pg, "send");
		return -1;
	}
	pg_watch(pg, r == 1 ? EV_READ | EV_WRITE : EV_READ);
	return 0;
}

static void
pg_send_next(struct sup_pg *pg)
{
	struct pg_query *q = pg->head;
	int ok;

	if (pg->st != PG_UP || pg->sent || q == NULL)
		return;
	if (q->values == NULL)
		ok = PQsendQuery(pg->conn, q->sql);
	else
		ok = PQsendQueryParams(pg->conn, q->sql, q->nparams, NULL,
		    (const char *const *)q->values, q->lengths, q->formats, 0);
	if (!ok) {
		pg_down(pg, "send query");
		return;
	}
	pg->sent = 1;
	pg_flush(pg);
}

/* The head query has returned all its results: hand it to its owner. */
static void
pg_complete(struct sup_pg *pg)
{
	struct pg_query *q = pg->head;
	PGresult *res = pg->res;
	const char *err = NULL;

	pg->head = q->next;
	if (pg->head == NULL)
		pg->tail = NULL;
	pg->nqueued--;
	pg->sent = 0;
	pg->res = NULL;
	pg->res_failed = 0;
	if (res == NULL)
		err = "no result";
	else {
		ExecStatusType st = PQresultStatus(res);
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
		    st != PGRES_COPY_IN && st != PGRES_EMPTY_QUERY)
			err = PQresultErrorMessage(res);
	}
	q->cb(pg, res, err, q->arg);
	if (res != NULL)
		PQclear(res);
	pg_query_free(q);
}

/*
 * The server waits for the data of a COPY FROM STDIN: send the query's
 * next piece (a query without data, or with fewer pieces than COPYs,
 * ends it with an error).  libpq buffers it all (its buffer grows), so
 * this does not wait; the flush goes on from the write watcher.
 */
static int
pg_copy_in(struct sup_pg *pg)
{
	struct pg_query *q = pg->head;
	int r;

	if (q->copied < q->ncopy) {
		size_t off = 0;
		for (int i = 0; i < q->copied; i++)
			off += q->copylen[i];
		r = PQputCopyData(pg->conn, q->copy + off,
		    (int)q->copylen[q->copied]);
		if (r == 1)
			r = PQputCopyEnd(pg->conn, NULL);
		if (++q->copied == q->ncopy) {
			free(q->copy);
			q->copy = NULL;
		}
	} else
		r = PQputCopyEnd(pg->conn, "no COPY data for this query");
	if (r != 1) {
		pg_down(pg, "send COPY data");
		return -1;
	}
	return pg_flush(pg);
}

static void
pg_read(struct sup_pg *pg)
{
	PGnotify *n;

	if (!PQconsumeInput(pg->conn)) {
		pg_down(pg, "connection lost");
		return;
	}
	while ((n = PQnotifies(pg->conn)) != NULL)
		PQfreemem(n);
	while (pg->st == PG_UP && pg->sent && !PQisBusy(pg->conn)) {
		PGresult *r = PQgetResult(pg->conn);
		if (r == NULL) {
			pg_complete(pg);
			if (pg->st == PG_UP)
				pg_send_next(pg);
			continue;
		}
		/* Keep the first failing result, else the last one. */
		if (pg->res_failed) {
			PQclear(r);
			continue;
		}
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_COPY_IN) {
			PQclear(r);
			if (pg_copy_in(pg) < 0)
				return;
			continue;
		}
		pg_clear_result(pg);
		pg->res = r;
		pg->res_failed = st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE;
	}
	if (pg->st == PG_UP && PQstatus(pg->conn) == CONNECTION_BAD)
		pg_down(pg, "connection lost");
}

static void
pg_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct sup_pg *pg = w->data;

	if (pg->st == PG_CONNECTING) {
		pg_connect_poll(pg);
		return;
	}
	if (pg->st != PG_UP)
		return;
	if (revents & EV_WRITE) {
		if (pg_flush(pg) < 0)
			return;
	}
	if (revents & EV_READ)
		pg_read(pg);
}

struct sup_pg *
sup_pg_new(struct ev_loop *loop, const char *conninfo,
    sup_pg_state_cb *state_cb, void *arg)
{
	struct sup_pg *pg = calloc(1, sizeof(*pg));

	if (pg == NULL)
		return NULL;
	pg->conninfo = strdup(conninfo);
	if (pg->conninfo == NULL) {
		free(pg);
		return NULL;
	}
	pg->loop = loop;
	pg->state_cb = state_cb;
	pg->arg = arg;
	backoff_init(&pg->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
	pg->io_fd = -1;
	ev_init(&pg->io, pg_io_cb);
	pg->io.data = pg;
	ev_init(&pg->retry, pg_retry_cb);
	pg->retry.data = pg;
	pg_connect(pg);
	return pg;
}

void
sup_pg_free(struct sup_pg *pg)
{
	struct pg_query *q, *next;

	if (pg == NULL)
		return;
	ev_io_stop(pg->loop, &pg->io);
	ev_timer_stop(pg->loop, &pg->retry);
	pg_clear_result(pg);
	if (pg->conn != NULL)
		PQfinish(pg->conn);
	for (q = pg->head; q != NULL; q = next) {
		next = q->next;
		pg_query_free(q);
	}
	free(pg->conninfo);
	free(pg->prelude);
	free(pg);
}

int
sup_pg_prelude(struct sup_pg *pg, const char *sql)
{
	char *c = strdup(sql);

	if (c == NULL)
		return -1;
	free(pg->prelude);
	pg->prelude = c;
	if (pg->st == PG_UP)
		pg_queue_prelude(pg);
	return 0;
}

int
sup_pg_reconnect(struct sup_pg *pg, const char *conninfo)
{
	char *c = strdup(conninfo);
	struct pg_query *q;
	int was_up = pg->st == PG_UP;

	if (c == NULL)
		return -1;
	free(pg->conninfo);
	pg->conninfo = c;
	q = pg_close(pg);
	/* A new server, or the same one with new credentials: an outage of
	 * the old one says nothing about it. */
	backoff_init(&pg->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
	pg_connect(pg);
	pg_closed(pg, was_up, q, "reconnecting with new settings");
	return 0;
}

int
sup_pg_is_up(const struct sup_pg *pg)
{
	return pg->st == PG_UP;
}

int
sup_pg_query(struct sup_pg *pg, const char *sql, int nparams,
    const char *const *values, const int *lengths, const int *formats,
    sup_pg_cb *cb, void *arg)
{
	struct pg_query *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return -1;
	q->cb = cb;
	q->arg = arg;
	q->nparams = nparams;
	if ((q->sql = strdup(sql)) == NULL)
		goto err;
	if (nparams > 0 || values != NULL) {
		q->values = calloc((size_t)nparams + 1, sizeof(char *));
		q->lengths = calloc((size_t)nparams + 1, sizeof(int));
		q->formats = calloc((size_t)nparams + 1, sizeof(int));
		if (q->values == NULL || q->lengths == NULL || q->formats == NULL)
			goto err;
		for (int i = 0; i < nparams; i++) {
			size_t len;
			if (values[i] == NULL)
				continue;        /* SQL NULL */
			q->formats[i] = formats ? formats[i] : 0;
			len = q->formats[i] ? (size_t)lengths[i] : strlen(values[i]);
			q->lengths[i] = (int)len;
			if ((q->values[i] = malloc(len + 1)) == NULL)
				goto err;
			memcpy(q->values[i], values[i], len);
			q->values[i][len] = '\0';
		}
	}
	pg_enqueue(pg, q, 0);
	return 0;
err:
	pg_query_free(q);
	return -1;
}

int
sup_pg_query_copyv(struct sup_pg *pg, const char *sql, int n,
    const char *const *data, const size_t *len, sup_pg_cb *cb, void *arg)
{
	size_t total = 0, off = 0;
	size_t *lens;
	char *copy;

	for (int i = 0; i < n; i++) {
		if (len[i] > INT_MAX)
			return -1;
		total += len[i];
	}
	if (n < 1 || (copy = malloc(total ? total : 1)) == NULL)
		return -1;
	if ((lens = calloc((size_t)n, sizeof(*lens))) == NULL) {
		free(copy);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		memcpy(copy + off, data[i], len[i]);
		off += len[i];
		lens[i] = len[i];
	}
	if (sup_pg_query(pg, sql, 0, NULL, NULL, NULL, cb, arg) < 0) {
		free(copy);
		free(lens);
		return -1;
	}
	pg->tail->copy = copy;
	pg->tail->copylen = lens;
	pg->tail->ncopy = n;
	return 0;
}

static void
pg_forgotten_cb(struct sup_pg *pg, PGresult *res, const char *err, void *arg)
{
}

void
sup_pg_forget(struct sup_pg *pg, void *arg)
{
	for (struct pg_query *q = pg->head; q != NULL; q = q->next)
		if (q->arg == arg) {
			q->cb = pg_forgotten_cb;
			q->arg = NULL;
		}
}
