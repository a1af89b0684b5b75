/*
 * link.c - hived's end of one worker's socketpair.
 *
 * Frames (proto/hive_proto.h) both ways (OUTPUT lines go to output.c); docs/WORKER-CONTRACT.md says who
 * sends what when.  Reading runs whenever the worker writes; the write
 * watcher runs only while output is queued.  Anything the worker sends that
 * is not a valid frame in its place (undecodable, a bad length, a frame
 * before HELLO, a CONTROL frame, a memory for another agent) breaks the
 * link: hived stops reading and kills that worker, which is then handled
 * like a crash.  Never hived's own end: a broken worker is not a reason.
 */
#include "hived.h"

#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct sup_link {
	struct sup_inst *inst;        /* owner */
	int fd;
	ev_io rio, wio;
	struct proto_framer in;
	msgpack_sbuffer out;
	size_t out_off;               /* bytes of out already written */
	int eof;                      /* read side finished */
	int broken;                   /* protocol violation: ignore the rest */
};

static void link_read_cb(struct ev_loop *, ev_io *, int);
static void link_write_cb(struct ev_loop *, ev_io *, int);

static struct ev_loop *
link_loop(const struct sup_link *l)
{
	return l->inst->agent->sup->loop;
}

struct sup_link *
sup_link_new(struct sup_inst *in, int fd)
{
	struct sup_link *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		close(fd);
		return NULL;
	}
	l->inst = in;
	l->fd = fd;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	proto_framer_init(&l->in);
	msgpack_sbuffer_init(&l->out);
	ev_io_init(&l->rio, link_read_cb, fd, EV_READ);
	ev_io_init(&l->wio, link_write_cb, fd, EV_WRITE);
	l->rio.data = l->wio.data = l;
	ev_io_start(link_loop(l), &l->rio);
	return l;
}

void
sup_link_free(struct sup_link *l)
{
	if (l == NULL)
		return;
	ev_io_stop(link_loop(l), &l->rio);
	ev_io_stop(link_loop(l), &l->wio);
	close(l->fd);
	proto_framer_free(&l->in);
	msgpack_sbuffer_destroy(&l->out);
	free(l);
}

static void
link_break(struct sup_link *l, const char *why)
{
	struct sup_inst *in = l->inst;

	log_warnx("agent=%s pid=%ld protocol error: %s", in->label,
	    (long)in->pid, why);
	l->broken = 1;
	ev_io_stop(link_loop(l), &l->rio);
	sup_inst_event(in, SUP_EV_BADFRAME, 0);
}

/* One frame body.  final: the worker is already reaped; only its last
 * memory matters. */
static void
link_dispatch(struct sup_link *l, const char *body, size_t len, int final)
{
	struct sup_inst *in = l->inst;
	struct hive_frame f;
	struct proto_err err;
	char ebuf[PROTO_ERRBUF];

	if (proto_decode_frame(body, len, &f, &err) == -1) {
		if (!final)
			link_break(l, proto_strerror(&err, ebuf, sizeof(ebuf)));
		return;
	}
	if (final) {
		/* Its last memory, and how many tasks it finished. */
		if (f.type == HIVE_FRAME_MEMORY)
			sup_inst_memory(in, &f.u.memory);
		else if (f.type == HIVE_FRAME_HEARTBEAT)
			in->done = f.u.heartbeat.done;
		else if (f.type == HIVE_FRAME_OUTPUT)
			sup_output_add(in, &f.u.output);   /* its last words */
		proto_frame_clear(&f);
		return;
	}
	if (!in->hello && f.type != HIVE_FRAME_HELLO) {
		link_break(l, "first frame is not hello");
		proto_frame_clear(&f);
		return;
	}
	switch (f.type) {
	case HIVE_FRAME_HELLO:
		sup_inst_hello(in, &f.u.hello);
		break;
	case HIVE_FRAME_HEARTBEAT:
		sup_inst_heartbeat(in, &f.u.heartbeat);
		break;
	case HIVE_FRAME_MEMORY:
		sup_inst_memory(in, &f.u.memory);
		break;
	case HIVE_FRAME_OUTPUT:
		sup_output_add(in, &f.u.output);
		break;
	case HIVE_FRAME_CONTROL:
	default:
		link_break(l, "unexpected frame type");
		break;
	}
	proto_frame_clear(&f);
}

/*
 * Read what is there and handle every whole frame.  Returns when the
 * socket has no more (EAGAIN), at EOF, or once the link broke.
 */
static void
link_read(struct sup_link *l, int final)
{
	char buf[65536];
	struct proto_err err;
	char ebuf[PROTO_ERRBUF];
	const char *body;
	size_t blen;
	ssize_t n;
	int r;

	while (!l->eof && !l->broken) {
		n = read(l->fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			/* EOF or ECONNRESET: the worker closed its end or died;
			 * the reaper (ev_child) does the rest. */
			if (n == -1 && !final)
				log_debug("agent=%s read: %s", l->inst->label,
				    strerror(errno));
			l->eof = 1;
			ev_io_stop(link_loop(l), &l->rio);
			return;
		}
		if (proto_framer_feed(&l->in, buf, (size_t)n) == -1) {
			log_warnx("agent=%s frame buffer: out of memory",
			    l->inst->label);
			if (!final)
				link_break(l, "out of memory");
			return;
		}
		while (!l->broken &&
		    (r = proto_framer_next(&l->in, &body, &blen, &err)) != 0) {
			if (r == -1) {
				if (!final)
					link_break(l, proto_strerror(&err, ebuf,
					    sizeof(ebuf)));
				l->broken = 1;
				return;
			}
			link_dispatch(l, body, blen, final);
		}
	}
}

static void
link_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	link_read(w->data, 0);
}

void
sup_link_final_read(struct sup_link *l)
{
	if (!l->broken)
		link_read(l, 1);
}

/* Write what is queued; 0 when all is out or it must wait, -1 when the
 * worker is gone (the output is dropped: the reaper will come). */
static int
link_flush(struct sup_link *l)
{
	ssize_t n;

	while (l->out_off < l->out.size) {
		n = send(l->fd, l->out.data + l->out_off,
		    l->out.size - l->out_off, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			ev_io_start(link_loop(l), &l->wio);
			return 0;
		}
		if (n == -1) {
			log_debug("agent=%s write: %s", l->inst->label,
			    strerror(errno));
			l->out.size = l->out_off = 0;
			ev_io_stop(link_loop(l), &l->wio);
			return -1;
		}
		l->out_off += (size_t)n;
	}
	l->out.size = l->out_off = 0;
	ev_io_stop(link_loop(l), &l->wio);
	return 0;
}

static void
link_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	link_flush(w->data);
}

int
sup_link_send(struct sup_link *l, const struct hive_frame *f)
{
	struct proto_err err;
	char ebuf[PROTO_ERRBUF];

	if (proto_encode_frame(&l->out, f, &err) == -1) {
		log_warnx("agent=%s encode frame: %s", l->inst->label,
		    proto_strerror(&err, ebuf, sizeof(ebuf)));
		return -1;
	}
	return link_flush(l);
}

int
sup_link_send_raw(struct sup_link *l, const char *buf, size_t len)
{
	if (msgpack_sbuffer_write(&l->out, buf, len) != 0)
		return -1;
	return link_flush(l);
}
