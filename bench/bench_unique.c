/*
 * bench_unique.c - what a unique_key costs a submission (issue 19),
 * measured against a plain one in the same run, interleaved:
 *
 *   raw Redis, one client, one command at a time (its round trip):
 *     unique.raw.xadd            XADD of a task message (the ceiling)
 *     unique.raw.lua             the submit script (proto_unique_submit_lua,
 *                                EVALSHA), a new key each time: lock + XADD
 *     unique.raw.lua_duplicate   the same on a key already taken: no XADD
 *   hived's POST /tasks, a new connection per request (as bench_api):
 *     unique.api.plain           without unique_key (the ceiling)
 *     unique.api.unique          with a new unique_key each time
 *     unique.api.duplicate       with a key already taken (answer 200)
 *
 * Each figure is the median of R rounds of N submissions; within a round
 * the kinds take turns in blocks of 50, so that a drift of the machine
 * touches all alike.  Prints "name: value unit (ceiling ...)" lines.
 *
 *   bench_unique [-n N] [-r R]
 *
 * Environment: HIVE_TEST_REDIS_HOST/PORT, HIVED, HIVE_ECHO (bench/run).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"
#include "hive_proto.h"

#define ROUNDS_MAX 15
#define BLOCK      50
#define TOKEN      "bench-unique-token-0123456789"

static char prefix[48], dir[128];
static pid_t hived = -1;
static unsigned port;

static void
stop_hived(void)
{
	if (hived > 0) {
		kill(hived, SIGTERM);
		waitpid(hived, NULL, 0);
		hived = -1;
	}
}

static void
start_hived(void)
{
	char conf[256], tok[256], portpath[256], logpath[256];
	FILE *f;

	snprintf(conf, sizeof(conf), "%s/hive.conf", dir);
	snprintf(tok, sizeof(tok), "%s/token", dir);
	snprintf(portpath, sizeof(portpath), "%s/port", dir);
	snprintf(logpath, sizeof(logpath), "%s/hived.log", dir);
	if ((f = fopen(tok, "w")) == NULL)
		bench_die("%s: %s", tok, strerror(errno));
	fprintf(f, "%s\n", TOKEN);
	fclose(f);
	chmod(tok, 0600);
	if ((f = fopen(conf, "w")) == NULL)
		bench_die("%s: %s", conf, strerror(errno));
	/* No agent for "work": what is submitted stays queued. */
	fprintf(f, "[hive]\nredis = %s:%s\nprefix = %s\nworker = %s\n"
	    "http = 127.0.0.1:0\ntoken_file = %s\n\n"
	    "[agent \"echo\"]\ncommand = %s\ncapabilities = other\n",
	    getenv("HIVE_TEST_REDIS_HOST"), getenv("HIVE_TEST_REDIS_PORT"),
	    prefix, getenv("HIVE_WORKER"), tok, getenv("HIVE_ECHO"));
	fclose(f);
	if ((hived = fork()) == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		execl(getenv("HIVED"), "hived", "--config", conf, "--port-file",
		    portpath, (char *)NULL);
		_exit(127);
	}
	if (hived < 0)
		bench_die("fork: %s", strerror(errno));
	for (int i = 0; i < 1000 && port == 0; i++) {
		if ((f = fopen(portpath, "r")) != NULL) {
			if (fscanf(f, "%u", &port) != 1)
				port = 0;
			fclose(f);
		}
		if (port == 0)
			usleep(10000);
	}
	if (port == 0)
		bench_die("hived did not listen (see %s)", logpath);
}

/* POST /tasks body on a new connection: the status. */
static int
post(const char *body)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)port) };
	char req[1024], resp[2048];
	size_t off = 0;
	ssize_t r;
	int fd = socket(AF_INET, SOCK_STREAM, 0), n, status = 0;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		bench_die("connect: %s", strerror(errno));
	n = snprintf(req, sizeof(req), "POST /tasks HTTP/1.1\r\nHost: x\r\n"
	    "Connection: close\r\nAuthorization: Bearer " TOKEN "\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	    strlen(body), body);
	if (write(fd, req, (size_t)n) != n)
		bench_die("write: %s", strerror(errno));
	while (off + 1 < sizeof(resp) &&
	    (r = read(fd, resp + off, sizeof(resp) - off - 1)) > 0)
		off += (size_t)r;
	resp[off] = '\0';
	close(fd);
	if (sscanf(resp, "HTTP/1.1 %d", &status) != 1)
		bench_die("POST /tasks: no answer");
	return status;
}

enum kind { RAW_XADD, RAW_LUA, RAW_DUP, API_PLAIN, API_UNIQUE, API_DUP,
	KINDS };
static const char *const names[KINDS] = { "unique.raw.xadd",
	"unique.raw.lua", "unique.raw.lua_duplicate", "unique.api.plain",
	"unique.api.unique", "unique.api.duplicate" };

static redisContext *rc;
static char sha[64], queue[HIVE_KEY_MAX];
static msgpack_sbuffer msg;
static unsigned long seq;

/* One submission of kind k; the seconds it took. */
static double
one(enum kind k)
{
	char lock[HIVE_KEY_MAX], key[64], id[64], body[512];
	double t0;
	redisReply *r;
	int st, want;

	snprintf(key, sizeof(key), "%s-%lu", k == RAW_DUP || k == API_DUP ?
	    "dup" : "k", k == RAW_DUP || k == API_DUP ? 0ul : seq);
	snprintf(id, sizeof(id), "t-%lu", seq++);
	proto_key_unique(lock, sizeof(lock), prefix, key);
	t0 = bench_mono_s();
	switch (k) {
	case RAW_XADD:
		r = redisCommand(rc, "XADD %s * m %b", queue, msg.data,
		    msg.size);
		break;
	case RAW_LUA:
	case RAW_DUP:
		r = redisCommand(rc, "EVALSHA %s 2 %s %s %s 86400000 %b", sha,
		    lock, queue, id, msg.data, msg.size);
		break;
	default:
		if (k == API_PLAIN)
			snprintf(body, sizeof(body), "{\"capability\": "
			    "\"work\", \"payload\": {\"n\": 1}}");
		else
			snprintf(body, sizeof(body), "{\"capability\": "
			    "\"work\", \"payload\": {\"n\": 1}, "
			    "\"unique_key\": \"%s\"}", key);
		want = k == API_DUP ? 200 : 201;
		if ((st = post(body)) != want)
			bench_die("%s: status %d, want %d", names[k], st, want);
		return bench_mono_s() - t0;
	}
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		bench_die("%s: %s", names[k], r ? r->str : rc->errstr);
	freeReplyObject(r);
	return bench_mono_s() - t0;
}

int
main(int argc, char **argv)
{
	double per[KINDS][ROUNDS_MAX], sum[KINDS];
	struct hive_task t = { 0 };
	struct proto_err err;
	int n = 2000, rounds = 5, o;
	redisReply *r;

	while ((o = getopt(argc, argv, "n:r:")) != -1) {
		if (o == 'n')
			n = atoi(optarg);
		else if (o == 'r')
			rounds = atoi(optarg);
		else
			bench_die("usage: bench_unique [-n N] [-r R]");
	}
	if (n < BLOCK * KINDS || rounds < 1 || rounds > ROUNDS_MAX)
		bench_die("-n at least %d, -r 1..%d", BLOCK * KINDS, ROUNDS_MAX);
	if (!getenv("HIVE_TEST_REDIS_HOST") || !getenv("HIVED") ||
	    !getenv("HIVE_WORKER") || !getenv("HIVE_ECHO"))
		bench_die("needs HIVE_TEST_REDIS_HOST/PORT, HIVED, HIVE_WORKER, "
		    "HIVE_ECHO (bench/run sets them)");
	snprintf(prefix, sizeof(prefix), "bu%d", (int)getpid());
	snprintf(dir, sizeof(dir), "/tmp/hive-bench-unique.%d", (int)getpid());
	if (mkdir(dir, 0700) != 0)
		bench_die("%s: %s", dir, strerror(errno));
	rc = redisConnect(getenv("HIVE_TEST_REDIS_HOST"),
	    atoi(getenv("HIVE_TEST_REDIS_PORT")));
	if (rc == NULL || rc->err)
		bench_die("redis: %s", rc ? rc->errstr : "out of memory");
	proto_key_queue(queue, sizeof(queue), prefix, "raw", 1);
	msgpack_sbuffer_init(&msg);
	t.id = HIVE_STR("t-00000000000000000000");
	t.attempt = 1;
	t.unique_key = HIVE_STR("k-0000000000");
	if (proto_encode_task(&msg, &t, &err) < 0)
		bench_die("encode");
	r = redisCommand(rc, "SCRIPT LOAD %s", proto_unique_submit_lua);
	if (r == NULL || r->type != REDIS_REPLY_STRING)
		bench_die("SCRIPT LOAD");
	snprintf(sha, sizeof(sha), "%s", r->str);
	freeReplyObject(r);
	start_hived();
	atexit(stop_hived);
	/* A first taker of the duplicates' key, on both paths. */
	one(RAW_DUP);
	post("{\"capability\": \"work\", \"unique_key\": \"dup-0\"}");
	for (int k = 0; k < KINDS; k++)
		for (int i = 0; i < BLOCK; i++)
			one((enum kind)k);               /* warm up */
	for (int rd = 0; rd < rounds; rd++) {
		memset(sum, 0, sizeof(sum));
		for (int done = 0; done < n; done += BLOCK)
			for (int k = 0; k < KINDS; k++)
				for (int i = 0; i < BLOCK; i++)
					sum[(k + rd) % KINDS] +=
					    one((enum kind)((k + rd) % KINDS));
		for (int k = 0; k < KINDS; k++)
			per[k][rd] = sum[k] / ((n + BLOCK - 1) / BLOCK * BLOCK) *
			    1e6;
		bench_cmd(rc, "DEL %s", queue);
	}
	for (int k = 0; k < KINDS; k++)
		qsort(per[k], (size_t)rounds, sizeof(double), bench_cmp_double);
	for (int k = 0; k < KINDS; k++) {
		int ceil = k < API_PLAIN ? RAW_XADD : API_PLAIN;
		double v = per[k][rounds / 2], c = per[ceil][rounds / 2];

		if (k == ceil)
			printf("%s: %.1f us (the ceiling; median of %d rounds "
			    "of %d, one at a time)\n", names[k], v, rounds, n);
		else
			printf("%s: %.1f us (%s: %.1f us, same run: %+.1f us, "
			    "x%.2f)\n", names[k], v, names[ceil], c, v - c,
			    v / c);
	}
	stop_hived();
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench_unique: could not remove %s\n", dir);
	}
	redisFree(rc);
	return 0;
}
