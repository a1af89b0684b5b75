/*
 * link.c - the socketpair to hived (docs/WORKER-CONTRACT.md).
 *
 *   hived  --MEMORY (first), CONTROL drain-->  worker
 *   worker --HELLO (first), HEARTBEAT, MEMORY, OUTPUT-->  hived
 *
 * Frames are proto_encode_frame's: a 4-byte big-endian length, then one
 * msgpack map.  Writes are queued and flushed without blocking, with the
 * write watcher on only while something is queued.  EOF means hived is
 * gone: the worker drains (workers never outlive hived).  A frame that
 * does not decode ends the worker with exit 1: hived restarts it.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

static void
link_write(struct wrk *w)
{
	struct wrk_link *l = &w->link;
	ssize_t n;

	while (hbuf_avail(&l->out) > 0) {
		n = write(l->fd, hbuf_data(&l->out), hbuf_avail(&l->out));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n == -1) {
			/* hived is gone (EPIPE): like EOF, drain and exit. */
			log_warn("agent=%s write to hived", w->agent_inst);
			hbuf_reset(&l->out);
			l->eof = true;
			wrk_drain(w, "hived is gone");
			break;
		}
		hbuf_consume(&l->out, (size_t)n);
	}
	if (hbuf_avail(&l->out) > 0)
		ev_io_start(w->loop, &l->wio);
	else
		ev_io_stop(w->loop, &l->wio);
	if (hbuf_avail(&l->out) == 0 && !wrk_phase_takes_work(w->phase))
		wrk_check_drained(w);
}

static void
link_wcb(struct ev_loop *loop, ev_io *io, int revents)
{
	link_write(io->data);
}

static void
link_send(struct wrk *w, const struct hive_frame *f)
{
	msgpack_sbuffer sb;
	struct proto_err err;
	char why[HIVE_REASON_MAX];

	if (w->link.fd < 0 || w->link.eof)
		return;
	msgpack_sbuffer_init(&sb);
	if (proto_encode_frame(&sb, f, &err) == -1) {
		/* Our own frame out of its limits: a broken invariant. */
		fatalx("agent=%s encode frame %d: %s", w->agent_inst, f->type,
		    proto_strerror(&err, why, sizeof(why)));
	}
	if (hbuf_add(&w->link.out, sb.data, sb.size) == -1)
		fatal("agent=%s frame", w->agent_inst);
	msgpack_sbuffer_destroy(&sb);
	link_write(w);
}

static void
link_frame(struct wrk *w, const char *body, size_t len)
{
	struct hive_frame f;
	struct proto_err err;
	char why[HIVE_REASON_MAX];
	json_t *mem = NULL;

	if (proto_decode_frame(body, len, &f, &err) == -1) {
		log_warnx("agent=%s bad frame from hived: %s", w->agent_inst,
		    proto_strerror(&err, why, sizeof(why)));
		wrk_fail(w, "bad frame from hived");
		return;
	}
	switch (f.type) {
	case HIVE_FRAME_MEMORY:
		if (w->have_memory) {
			log_debug("agent=%s MEMORY frame after the first: "
			    "ignored", w->agent_inst);
			break;
		}
		if (f.u.memory.memory.type != MSGPACK_OBJECT_NIL &&
		    (mem = proto_obj_to_json(&f.u.memory.memory, &err)) == NULL) {
			log_warnx("agent=%s memory from hived: %s",
			    w->agent_inst, proto_strerror(&err, why, sizeof(why)));
			wrk_fail(w, "bad memory from hived");
			break;
		}
		if (mem != NULL && !json_is_object(mem)) {
			log_warnx("agent=%s memory from hived is not a map",
			    w->agent_inst);
			json_decref(mem);
			wrk_fail(w, "bad memory from hived");
			break;
		}
		/* Redis' copy (read at start, redis.c) may be newer than
		 * hived's: hived hears of a memory only after the worker that
		 * made it acknowledged it, and that worker may have died in
		 * between.  The newer one wins, and hived learns of it. */
		if (f.u.memory.memory_v >= w->memory_v) {
			if (wrk_set_memory(w, mem, f.u.memory.memory_v) == -1)
				fatal("agent=%s keeping the memory from hived",
				    w->agent_inst);
			w->memory_sent_v = f.u.memory.memory_v;
		} else
			wrk_link_memory(w, w->memory, w->memory_v);
		json_decref(mem);
		w->have_memory = true;
		log_info("agent=%s memory_v=%llu from hived, using memory_v=%llu",
		    w->agent_inst, (unsigned long long)f.u.memory.memory_v,
		    (unsigned long long)w->memory_v);
		wrk_state_changed(w);
		break;
	case HIVE_FRAME_CONTROL:
		if (f.u.control.cmd == HIVE_CTL_DRAIN) {
			log_info("agent=%s drain requested by hived%s%.*s",
			    w->agent_inst, f.u.control.reason.len ? ": " : "",
			    (int)f.u.control.reason.len, f.u.control.reason.ptr);
			wrk_drain(w, "hived asked");
		}
		break;
	case HIVE_FRAME_HELLO:
	case HIVE_FRAME_HEARTBEAT:
	default:
		log_warnx("agent=%s unexpected frame type %d from hived",
		    w->agent_inst, (int)f.type);
		wrk_fail(w, "unexpected frame from hived");
		break;
	}
	proto_frame_clear(&f);
}

static void
link_rcb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct wrk *w = io->data;
	struct wrk_link *l = &w->link;
	struct proto_err err;
	char buf[65536], why[HIVE_REASON_MAX];
	const char *body;
	size_t blen;
	ssize_t n;
	int rc;

	n = read(l->fd, buf, sizeof(buf));
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		if (n == -1)
			log_warn("agent=%s read from hived", w->agent_inst);
		ev_io_stop(loop, &l->rio);
		l->eof = true;
		wrk_drain(w, "hived is gone");
		return;
	}
	if (proto_framer_feed(&l->fr, buf, (size_t)n) == -1)
		fatal("agent=%s frame buffer", w->agent_inst);
	while ((rc = proto_framer_next(&l->fr, &body, &blen, &err)) == 1) {
		link_frame(w, body, blen);
		if (w->phase == WRK_PH_EXITING)
			return;
	}
	if (rc == -1) {
		log_warnx("agent=%s bad frame from hived: %s", w->agent_inst,
		    proto_strerror(&err, why, sizeof(why)));
		ev_io_stop(loop, &l->rio);
		wrk_fail(w, "bad frame from hived");
	}
}

int
wrk_link_open(struct wrk *w, int fd)
{
	struct wrk_link *l = &w->link;

	l->fd = fd;
	if (fd < 0) {
		w->have_memory = true;    /* standalone: memory starts empty */
		return 0;
	}
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1)
		return -1;              /* errno says why */
	proto_framer_init(&l->fr);
	ev_io_init(&l->rio, link_rcb, fd, EV_READ);
	ev_io_init(&l->wio, link_wcb, fd, EV_WRITE);
	l->rio.data = l->wio.data = w;
	ev_io_start(w->loop, &l->rio);
	return 0;
}

void
wrk_link_close(struct wrk *w)
{
	struct wrk_link *l = &w->link;

	if (l->fd < 0)
		return;
	ev_io_stop(w->loop, &l->rio);
	ev_io_stop(w->loop, &l->wio);
	close(l->fd);
	l->fd = -1;
	proto_framer_free(&l->fr);
	hbuf_free(&l->out);
}

bool
wrk_link_flushed(const struct wrk *w)
{
	return w->link.fd < 0 || w->link.eof || hbuf_avail(&w->link.out) == 0;
}

void
wrk_link_hello(struct wrk *w)
{
	struct hive_frame f;

	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_HELLO;
	f.u.hello.agent = HIVE_STR(w->o.agent);
	f.u.hello.instance = w->o.instance;
	f.u.hello.pid = (int64_t)getpid();
	link_send(w, &f);
}

void
wrk_link_heartbeat(struct wrk *w)
{
	struct hive_frame f;
	struct wrk_task *t = TAILQ_FIRST(&w->running);
	pid_t hpid = 0;

	wrk_output_report(w);
	w->handler_restarts_sent = w->handler_restarts;
	if (w->link.fd < 0)
		return;
	if (w->o.mode == WRK_MODE_STREAM && w->h.state != WRK_H_NONE)
		hpid = w->h.pid;
	else if (w->o.mode == WRK_MODE_EXEC && t != NULL && t->proc != NULL)
		hpid = t->proc->pid;
	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_HEARTBEAT;
	f.u.heartbeat.state = w->wstate;
	if (t != NULL)
		f.u.heartbeat.task = HIVE_STR(t->id);
	f.u.heartbeat.inflight = (uint32_t)(w->nrunning + w->nbacklog);
	f.u.heartbeat.done = w->done;
	f.u.heartbeat.handler_pid = hpid;
	f.u.heartbeat.handler_rss_kb = wrk_rss_kb(hpid);
	f.u.heartbeat.handler_restarts = w->handler_restarts;
	link_send(w, &f);
}

void
wrk_link_memory(struct wrk *w, json_t *memory, uint64_t v)
{
	struct hive_frame f;
	struct proto_err err;
	char why[HIVE_REASON_MAX];
	msgpack_zone z;

	w->memory_sent_v = v;
	if (w->link.fd < 0)
		return;
	memset(&f, 0, sizeof(f));
	msgpack_zone_init(&z, 2048);
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_MEMORY;
	f.u.memory.agent = HIVE_STR(w->o.agent);
	f.u.memory.instance = w->o.instance;
	f.u.memory.memory_v = v;
	/* It was converted once already for the result: cannot fail. */
	if (proto_json_to_obj(memory, &z, &f.u.memory.memory, &err) == -1)
		fatalx("agent=%s memory frame: %s", w->agent_inst,
		    proto_strerror(&err, why, sizeof(why)));
	link_send(w, &f);
	msgpack_zone_destroy(&z);
}

void
wrk_link_output(struct wrk *w, const struct wrk_task *task,
    const char *text, size_t len, uint64_t dropped)
{
	struct hive_frame f;

	if (w->link.fd < 0)
		return;
	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_OUTPUT;
	if (task != NULL) {
		f.u.output.task = HIVE_STR(task->id);
		if (task->tp[0] != '\0')
			f.u.output.traceparent = HIVE_STR(task->tp);
	}
	if (text != NULL)
		f.u.output.text = (struct hive_str){ text, (uint32_t)len };
	f.u.output.dropped = dropped;
	link_send(w, &f);
}
