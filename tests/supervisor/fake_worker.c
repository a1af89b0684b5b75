/*
 * fake_worker.c - a stand-in for hive-worker that speaks only the
 * socketpair side of docs/WORKER-CONTRACT.md, for hived's tests of what a
 * real worker should never do (crash in a loop, hang, break the protocol,
 * ignore a drain).  No Redis, no handler.
 *
 * It takes hive-worker's command line; the "handler" words after "--" say
 * how to misbehave:
 *
 *   ok            heartbeats; exit 0 on drain or EOF
 *   crash         exit 1 right after the first ready heartbeat
 *   crash-early   exit 3 before HELLO
 *   exit0         exit 0 right after the first ready heartbeat
 *   hang          stop beating after ready (and never read again)
 *   badframe      send an undecodable frame after HELLO
 *   ignore-drain  ignore CONTROL drain (hived must SIGKILL after the grace)
 *   bump          report memory {"n": n + 1} at version v + 1 at start
 *   done=N        report N tasks done in heartbeats
 *   rss=N         report a handler RSS of N KiB
 *
 * Every worker logs on start
 *
 *   fake agent=NAME/N pid=P memory_v=V n=N notify=0|1 tag=T fds=0,1,2,3 cwd=D
 *
 * notify: whether NOTIFY_SOCKET leaked into its environment; tag: the
 * FAKE_TAG variable; fds: every descriptor it inherited; cwd: its working
 * directory.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hive_proto.h"

static int fd = -1;
static const char *agent = "";
static unsigned instance = 1;

static void
die(const char *what)
{
	fprintf(stderr, "fake %s/%u: %s\n", agent, instance, what);
	_exit(1);
}

static void
send_frame(const struct hive_frame *f)
{
	msgpack_sbuffer sb;
	struct proto_err err;
	size_t off = 0;

	msgpack_sbuffer_init(&sb);
	if (proto_encode_frame(&sb, f, &err) == -1)
		die("encode");
	while (off < sb.size) {
		ssize_t n = write(fd, sb.data + off, sb.size - off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);    /* hived gone */
		off += (size_t)n;
	}
	msgpack_sbuffer_destroy(&sb);
}

/* Read one frame body; NULL at EOF. */
static char *
read_frame(size_t *len)
{
	unsigned char hdr[4];
	size_t got = 0;
	char *body;

	while (got < 4) {
		ssize_t n = read(fd, hdr + got, 4 - got);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		got += (size_t)n;
	}
	*len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 |
	    (size_t)hdr[2] << 8 | hdr[3];
	if (*len == 0 || *len > HIVE_FRAME_MAX || (body = malloc(*len)) == NULL)
		die("bad frame length");
	for (got = 0; got < *len;) {
		ssize_t n = read(fd, body + got, *len - got);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(body);
			return NULL;
		}
		got += (size_t)n;
	}
	return body;
}

/* "0,1,2,3": the descriptors open in this process (but the listing's). */
static void
list_fds(char *buf, size_t len)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	size_t off = 0;
	int fds[64], n = 0;

	buf[0] = '\0';
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL && n < 64)
		if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
			fds[n++] = atoi(e->d_name);
	closedir(d);
	for (int i = 0; i < n; i++)          /* readdir order is not sorted */
		for (int j = i + 1; j < n; j++)
			if (fds[j] < fds[i]) {
				int t = fds[i];

				fds[i] = fds[j];
				fds[j] = t;
			}
	for (int i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%d", i ? "," : "",
		    fds[i]);
}

static void
heartbeat(enum hive_wstate st, uint64_t done, uint64_t rss)
{
	struct hive_frame f;

	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_HEARTBEAT;
	f.u.heartbeat.state = st;
	f.u.heartbeat.done = done;
	f.u.heartbeat.handler_rss_kb = rss;
	f.u.heartbeat.handler_pid = rss ? getpid() : 0;
	send_frame(&f);
}

static void
send_memory(uint64_t v, int64_t n)
{
	struct hive_frame f;
	msgpack_zone z;
	msgpack_object_kv kv;

	msgpack_zone_init(&z, 256);
	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_MEMORY;
	f.u.memory.agent = HIVE_STR(agent);
	f.u.memory.instance = instance;
	f.u.memory.memory_v = v;
	kv.key.type = MSGPACK_OBJECT_STR;
	kv.key.via.str.ptr = "n";
	kv.key.via.str.size = 1;
	kv.val.type = n >= 0 ? MSGPACK_OBJECT_POSITIVE_INTEGER :
	    MSGPACK_OBJECT_NEGATIVE_INTEGER;
	kv.val.via.i64 = n;
	f.u.memory.memory.type = MSGPACK_OBJECT_MAP;
	f.u.memory.memory.via.map.size = 1;
	f.u.memory.memory.via.map.ptr = &kv;
	send_frame(&f);
	msgpack_zone_destroy(&z);
}

int
main(int argc, char *argv[])
{
	int crash = 0, crash_early = 0, exit0 = 0, hang = 0, badframe = 0;
	int ignore_drain = 0, bump = 0, hb_ms = 1000;
	uint64_t done = 0, rss = 0, mem_v = 0;
	int64_t n = 0;
	struct hive_frame f;
	struct proto_err err;
	char *body;
	size_t len;
	int i;

	signal(SIGPIPE, SIG_IGN);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (i + 1 >= argc)
			continue;
		if (strcmp(argv[i], "--agent") == 0)
			agent = argv[++i];
		else if (strcmp(argv[i], "--instance") == 0)
			instance = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--fd") == 0)
			fd = atoi(argv[++i]);
		else if (strcmp(argv[i], "--heartbeat-ms") == 0)
			hb_ms = atoi(argv[++i]);
	}
	for (; i < argc; i++) {
		const char *w = argv[i];

		crash |= strcmp(w, "crash") == 0;
		crash_early |= strcmp(w, "crash-early") == 0;
		exit0 |= strcmp(w, "exit0") == 0;
		hang |= strcmp(w, "hang") == 0;
		badframe |= strcmp(w, "badframe") == 0;
		ignore_drain |= strcmp(w, "ignore-drain") == 0;
		bump |= strcmp(w, "bump") == 0;
		if (strncmp(w, "done=", 5) == 0)
			done = strtoull(w + 5, NULL, 10);
		if (strncmp(w, "rss=", 4) == 0)
			rss = strtoull(w + 4, NULL, 10);
	}
	if (fd < 0)
		die("no --fd");

	/* hived's first frame: the memory. */
	if ((body = read_frame(&len)) == NULL)
		die("EOF before memory");
	if (proto_decode_frame(body, len, &f, &err) == -1 ||
	    f.type != HIVE_FRAME_MEMORY)
		die("first frame is not a memory");
	mem_v = f.u.memory.memory_v;
	if (f.u.memory.memory.type == MSGPACK_OBJECT_MAP)
		for (uint32_t k = 0; k < f.u.memory.memory.via.map.size; k++) {
			msgpack_object_kv *kv = &f.u.memory.memory.via.map.ptr[k];

			if (kv->key.type == MSGPACK_OBJECT_STR &&
			    kv->key.via.str.size == 1 && kv->key.via.str.ptr[0] == 'n')
				n = kv->val.via.i64;
		}
	proto_frame_clear(&f);
	free(body);
	{
		char fds[256], cwd[1024];
		const char *tag = getenv("FAKE_TAG");

		list_fds(fds, sizeof(fds));
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			snprintf(cwd, sizeof(cwd), "?");
		fprintf(stderr, "fake agent=%s/%u pid=%ld memory_v=%llu n=%lld "
		    "notify=%d tag=%s fds=%s cwd=%s\n", agent, instance,
		    (long)getpid(), (unsigned long long)mem_v, (long long)n,
		    getenv("NOTIFY_SOCKET") != NULL, tag ? tag : "", fds, cwd);
	}
	if (crash_early)
		_exit(3);

	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_HELLO;
	f.u.hello.agent = HIVE_STR(agent);
	f.u.hello.instance = instance;
	f.u.hello.pid = getpid();
	send_frame(&f);
	if (badframe) {
		static const char junk[] = "\0\0\0\3abc";

		if (write(fd, junk, 7) < 0)
			_exit(0);
	}
	if (bump)
		send_memory(mem_v + 1, n + 1);
	heartbeat(HIVE_WSTATE_READY, done, rss);
	if (crash)
		_exit(1);
	if (exit0)
		_exit(0);
	if (hang)
		for (;;)
			pause();

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		int r = poll(&p, 1, hb_ms);

		if (r == -1 && errno == EINTR)
			continue;
		if (r == 0) {
			heartbeat(HIVE_WSTATE_READY, done, rss);
			continue;
		}
		if ((body = read_frame(&len)) == NULL)
			_exit(0);     /* EOF: hived is gone */
		if (proto_decode_frame(body, len, &f, &err) == -1)
			die("undecodable frame from hived");
		if (f.type == HIVE_FRAME_CONTROL && !ignore_drain) {
			fprintf(stderr, "fake agent=%s/%u pid=%ld drained\n", agent,
			    instance, (long)getpid());
			heartbeat(HIVE_WSTATE_DRAINING, done, rss);
			_exit(0);
		}
		proto_frame_clear(&f);
		free(body);
	}
}
