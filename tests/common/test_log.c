/*
 * test_log.c - common/log.c: the text line (priority first, then the ISO
 * 8601 time, then role[pid]), log_time, JSON lines parsed back with
 * jansson (fields, hostile bytes, long messages), the field parser, and
 * the journald path's fall-back to stderr.
 *
 * Each test points stderr at a pipe and reads back what one call wrote
 * (a line is one write, so it is all there when the call returns).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define JDIR "/run/systemd/journal"
#define JSOCK JDIR "/socket"

static int rd = -1, saved_err = -1;
static int made_jdir;         /* we made JDIR: remove it at the end */

/* stderr -> a pipe we read (non-blocking), until restore. */
static void
capture(void)
{
	int p[2];

	cr_assert(pipe(p) == 0);
	cr_assert(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
	/* A JSON line can be 50 KB: room for one at least. */
	fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
	saved_err = dup(STDERR_FILENO);
	cr_assert(dup2(p[1], STDERR_FILENO) == STDERR_FILENO);
	close(p[1]);
	rd = p[0];
	unsetenv("JOURNAL_STREAM");
	log_init("t", 0);
	log_set_format(LOG_FORMAT_TEXT);
	log_set_time(LOG_TIME_AUTO);
}

static void
restore(void)
{
	if (saved_err >= 0) {
		dup2(saved_err, STDERR_FILENO);
		close(saved_err);
		saved_err = -1;
	}
	if (rd >= 0)
		close(rd);
	rd = -1;
	if (made_jdir) {
		unlink(JSOCK);
		rmdir(JDIR);
		made_jdir = 0;
	}
}

TestSuite(log, .fini = restore, .timeout = 30);

/* Everything written since the last call (static; "" if nothing). */
static const char *
out(void)
{
	static char buf[1 << 20];
	size_t len = 0;
	ssize_t n;

	while (len < sizeof(buf) - 1 &&
	    (n = read(rd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	return buf;
}

/* "2026-12-07T11:00:00.123Z" at s, within a minute of now. */
static void
assert_time(const char *s)
{
	struct tm tm;
	const char *end;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	cr_assert(end != NULL, "no time at %.40s", s);
	cr_assert(end[0] == '.' && end[1] >= '0' && end[1] <= '9' &&
	    end[2] >= '0' && end[2] <= '9' && end[3] >= '0' && end[3] <= '9' &&
	    end[4] == 'Z', "no .mmmZ at %.40s", s);
	t = timegm(&tm);
	cr_assert(labs((long)(t - time(NULL))) < 60, "time %.24s is not now", s);
}

Test(log, text_line_has_priority_then_utc_time)
{
	char want[128];
	const char *l;

	capture();
	log_notice("agent=a/1 hello");
	l = out();
	cr_assert(strncmp(l, "<5>", 3) == 0, "%s", l);
	assert_time(l + 3);
	snprintf(want, sizeof(want), "Z t[%ld]: agent=a/1 hello\n",
	    (long)getpid());
	cr_assert_str_eq(l + 3 + 23, want, "%s", l);
	/* log_warn: the error's text last, still one line */
	errno = ENOENT;
	log_warn("open x");
	l = out();
	cr_assert(strncmp(l, "<4>", 3) == 0, "%s", l);
	cr_assert(strstr(l, "]: open x: No such file or directory\n") != NULL,
	    "%s", l);
}

Test(log, log_time_no_and_yes)
{
	char want[128];

	capture();
	log_set_time(LOG_TIME_NO);
	log_info("plain");
	snprintf(want, sizeof(want), "<6>t[%ld]: plain\n", (long)getpid());
	cr_assert_str_eq(out(), want);
	log_set_time(LOG_TIME_YES);
	log_info("timed");
	assert_time(out() + 3);
	cr_assert_str_eq(log_time_name(LOG_TIME_NO), "no");
	cr_assert_eq(log_time_parse("auto"), LOG_TIME_AUTO);
	cr_assert_eq(log_time_parse("never"), -1);
	cr_assert_eq(log_format_parse("json"), LOG_FORMAT_JSON);
	cr_assert_eq(log_format_parse("xml"), -1);
}

Test(log, field_parser)
{
	static const struct {
		const char *msg, *agent, *inst, *task, *trace;
	} c[] = {
		{ "agent=rev/2 task=T1 trace=abc: said task=evil",
		  "rev", "2", "T1", "abc" },
		{ "agent=rev/2: task=evil trace=evil", "rev", "2", NULL, NULL },
		{ "agent=rev removed: stopping", "rev", NULL, NULL, NULL },
		{ "agent=a/b x", "a/b", NULL, NULL, NULL },
		{ "agent=a/1234567890 x", "a/1234567890", NULL, NULL, NULL },
		{ "agent=/3 x", "/3", NULL, NULL, NULL },
		{ "api: dead letter retry of task=d-1: gone agent=z",
		  NULL, NULL, "d-1", NULL },
		{ "recorder: task=k,  agent=q/7", "q", "7", "k", NULL },
		{ "xagent=a task= trace=:", NULL, NULL, NULL, NULL },
		{ "", NULL, NULL, NULL, NULL },
		{ "   ", NULL, NULL, NULL, NULL },
		{ "task=A task=B", NULL, NULL, "A", NULL },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct log_fields f;
		const char *got[4], *want[4] = { c[i].agent, c[i].inst,
		    c[i].task, c[i].trace };
		size_t len[4];

		log_parse_fields(c[i].msg, strlen(c[i].msg), &f);
		got[0] = f.agent, len[0] = f.agent_len;
		got[1] = f.instance, len[1] = f.instance_len;
		got[2] = f.task, len[2] = f.task_len;
		got[3] = f.trace, len[3] = f.trace_len;
		for (int k = 0; k < 4; k++) {
			if (want[k] == NULL) {
				cr_assert(got[k] == NULL, "%s: field %d: %.*s",
				    c[i].msg, k, (int)len[k], got[k]);
				continue;
			}
			cr_assert(got[k] != NULL && len[k] == strlen(want[k]) &&
			    memcmp(got[k], want[k], len[k]) == 0,
			    "%s: field %d: want %s", c[i].msg, k, want[k]);
		}
	}
}

/* The one JSON line out() holds, parsed; its common members checked. */
static json_t *
json_line(const char *pri_name, int pri)
{
	const char *l = out();
	json_error_t e;
	json_t *j;
	size_t n = strlen(l);

	cr_assert(n > 0 && l[n - 1] == '\n' && strchr(l, '\n') == l + n - 1,
	    "not one line: %.200s", l);
	j = json_loads(l, 0, &e);
	cr_assert(j != NULL, "%s: %.300s", e.text, l);
	cr_assert(json_is_object(j));
	assert_time(json_string_value(json_object_get(j, "time")));
	cr_assert_str_eq(json_string_value(json_object_get(j, "level")),
	    pri_name);
	cr_assert_eq(json_integer_value(json_object_get(j, "priority")), pri);
	cr_assert_str_eq(json_string_value(json_object_get(j, "role")), "t");
	cr_assert_eq(json_integer_value(json_object_get(j, "pid")), getpid());
	return j;
}

static const char *
jstr(json_t *j, const char *k)
{
	return json_string_value(json_object_get(j, k));
}

Test(log, json_lines_with_fields)
{
	json_t *j;

	capture();
	log_set_format(LOG_FORMAT_JSON);
	log_info("agent=rev/2 task=T-9 trace=4bf92f3577b34da6a3ce929d0e0e4736: "
	    "said \"hi\"");
	j = json_line("info", 6);
	cr_assert_str_eq(jstr(j, "agent"), "rev");
	cr_assert_eq(json_integer_value(json_object_get(j, "instance")), 2);
	cr_assert_str_eq(jstr(j, "task"), "T-9");
	cr_assert_str_eq(jstr(j, "trace"), "4bf92f3577b34da6a3ce929d0e0e4736");
	cr_assert_str_eq(jstr(j, "msg"), "agent=rev/2 task=T-9 "
	    "trace=4bf92f3577b34da6a3ce929d0e0e4736: said \"hi\"");
	json_decref(j);

	/* no fields: none of the members */
	log_crit("started pid=1");
	j = json_line("crit", 2);
	cr_assert_null(json_object_get(j, "agent"));
	cr_assert_null(json_object_get(j, "instance"));
	cr_assert_null(json_object_get(j, "task"));
	cr_assert_null(json_object_get(j, "trace"));
	json_decref(j);

	/* an instance with leading zeros is still a JSON number */
	log_set_verbose(1);
	log_debug("agent=a/007 x");
	j = json_line("debug", 7);
	cr_assert_eq(json_integer_value(json_object_get(j, "instance")), 7);
	json_decref(j);
	errno = EPIPE;
	log_warn("write");
	j = json_line("warning", 4);
	cr_assert_str_eq(jstr(j, "msg"), "write: Broken pipe");
	json_decref(j);
}

Test(log, json_survives_hostile_messages)
{
	static const char *const hostile[] = {
		"quote \" backslash \\ slash / done",
		"ctl \x01\x02\x1f\x7f tab\tcr\rnl\nend",
		"invalid \xff\xfe \xc0\xaf overlong \xed\xa0\x80 surrogate "
		    "\xf4\x90\x80\x80 big \xe2\x82 cut",
		"agent=\"x\\\"/1 task=\x01\xff: q",
		"utf-8 \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9d ok",
		"\\u0000 not an escape",
		"}{\"msg\":1}",
	};
	static char big[3 * LOG_MSG_MAX];
	json_t *j;

	capture();
	log_set_format(LOG_FORMAT_JSON);
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		log_warnx("%s", hostile[i]);
		j = json_line("warning", 4);
		cr_assert(jstr(j, "msg") != NULL, "%zu", i);
		json_decref(j);
	}
	/* valid UTF-8 and controls come back as they went */
	log_warnx("%s", hostile[1]);
	j = json_line("warning", 4);
	cr_assert_str_eq(jstr(j, "msg"), hostile[1]);
	json_decref(j);
	log_warnx("%s", hostile[4]);
	j = json_line("warning", 4);
	cr_assert_str_eq(jstr(j, "msg"), hostile[4]);
	json_decref(j);
	/* invalid bytes become U+FFFD, the rest stays */
	log_warnx("a\xff" "b");
	j = json_line("warning", 4);
	cr_assert_str_eq(jstr(j, "msg"), "a\xef\xbf\xbd" "b");
	json_decref(j);
	/* very long: cut, still one object; all controls (6 bytes each) */
	memset(big, 'x', sizeof(big) - 1);
	log_info("%s", big);
	j = json_line("info", 6);
	cr_assert_eq(strlen(jstr(j, "msg")), LOG_MSG_MAX - 1);
	json_decref(j);
	memset(big, '\x01', sizeof(big) - 1);
	log_info("agent=a/1 %s", big);
	j = json_line("info", 6);
	cr_assert_str_eq(jstr(j, "agent"), "a");
	cr_assert_eq(strlen(jstr(j, "msg")), LOG_MSG_MAX - 1);
	json_decref(j);
}

Test(log, render_takes_any_bytes)
{
	static char buf[LOG_MSG_MAX * 8];
	const char msg[] = "nul \0 inside \xff";
	json_error_t e;
	json_t *j;
	size_t n;

	log_init("t", 0);
	log_set_format(LOG_FORMAT_JSON);
	n = log_render(buf, sizeof(buf), 6, msg, sizeof(msg) - 1);
	cr_assert(n > 0 && buf[n - 1] == '\n');
	j = json_loadb(buf, n, JSON_ALLOW_NUL, &e);
	cr_assert(j != NULL, "%s: %s", e.text, buf);
	cr_assert(memcmp(jstr(j, "msg"), "nul \0 inside \xef\xbf\xbd", 17) == 0);
	json_decref(j);
	/* too small a buffer: nothing, rather than half an object */
	cr_assert_eq(log_render(buf, 100, 6, "x", 1), 0);
	log_set_format(LOG_FORMAT_TEXT);
	log_set_time(LOG_TIME_NO);
	n = log_render(buf, sizeof(buf), 3, "x", 1);
	cr_assert(n > 0 && strncmp(buf, "<3>t[", 5) == 0, "%s", buf);
}

/* JOURNAL_STREAM naming our stderr (the pipe), or not. */
static void
journal_stream(int matching)
{
	struct stat st;
	char v[64];

	cr_assert(fstat(STDERR_FILENO, &st) == 0);
	snprintf(v, sizeof(v), "%llu:%llu",
	    (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino + (matching ? 0 : 1));
	setenv("JOURNAL_STREAM", v, 1);
	log_init("t", 0);
}

Test(log, journal_stream_elsewhere_is_plain_stderr)
{
	const char *l;

	capture();
	journal_stream(0);
	cr_assert_eq(log_journal(), 0);
	log_info("agent=a/1 to stderr");
	l = out();
	cr_assert(strncmp(l, "<6>", 3) == 0, "%s", l);
	assert_time(l + 3);
	setenv("JOURNAL_STREAM", "garbage", 1);
	log_init("t", 0);
	cr_assert_eq(log_journal(), 0);
}

/* Every "KEY=value\n" field of a native journal datagram (none has a
 * newline in its value here) must include want. */
static void
assert_field(const char *dgram, const char *want)
{
	char w[512];

	snprintf(w, sizeof(w), "%s\n", want);
	cr_assert(strncmp(dgram, w, strlen(w)) == 0 ||
	    (strstr(dgram, w) != NULL && strstr(dgram, w)[-1] == '\n'),
	    "no %s in:\n%s", want, dgram);
}

/*
 * Our stderr is the journal's stream but journald's socket is not there
 * (this test's usual machine; libsystemd would drop the line and say
 * 0): the line is written to stderr, nothing lost, and without the time
 * (log_time auto: journald stamps its lines).
 */
static void
journal_without_socket(void)
{
	char want[128];
	const char *l;

	journal_stream(1);
	cr_assert_eq(log_journal(), 1);
	log_info("agent=a/1 task=T trace=abc: to the journal");
	l = out();
	snprintf(want, sizeof(want), "<6>t[%ld]: agent=a/1 task=T trace=abc: "
	    "to the journal\n", (long)getpid());
	cr_assert_str_eq(l, want);
	/* log_time yes: the fall-back line has it */
	log_set_time(LOG_TIME_YES);
	log_notice("again");
	l = out();
	cr_assert(strncmp(l, "<5>", 3) == 0, "%s", l);
	assert_time(l + 3);
	/* json never goes through the journal: one object on stderr */
	log_set_format(LOG_FORMAT_JSON);
	log_info("agent=a/1 json");
	json_decref(json_line("info", 6));
	log_set_format(LOG_FORMAT_TEXT);
	log_set_time(LOG_TIME_AUTO);
}

/*
 * One test (the steps share journald's path): first without journald's
 * socket, see journal_without_socket; then a stand-in journald: a
 * datagram socket at journald's path (made only
 * where there is none and we may: root, no journald), what
 * sd_journal_sendv sends read back field by field.  Then a path that
 * refuses (a plain file there): sd_journal_sendv fails, the line goes
 * to stderr.
 */
Test(log, journal_fields_and_fall_backs)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dg[4096], want[128];
	ssize_t n;
	int s, fd;

	if (access(JSOCK, F_OK) == 0)
		cr_skip_test(JSOCK " is there (journald runs): lines go to it");
	capture();
	journal_without_socket();
	if (access(JDIR, F_OK) == 0)
		cr_skip_test(JDIR " is there (journald's or another's): not "
		    "standing in for it");
	if (mkdir(JDIR, 0755) == -1)
		cr_skip_test("cannot make " JDIR " to stand in for journald: %s",
		    strerror(errno));
	made_jdir = 1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", JSOCK);
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	cr_assert(s >= 0);
	cr_assert(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0, "%s",
	    strerror(errno));
	journal_stream(1);
	log_warnx("agent=rev/2 task=T-1 trace=4bf9: said task=evil");
	cr_assert_str_eq(out(), "", "nothing on stderr");
	n = recv(s, dg, sizeof(dg) - 1, 0);
	cr_assert(n > 0, "no datagram: %s", strerror(errno));
	dg[n] = '\0';
	assert_field(dg, "PRIORITY=4");
	assert_field(dg, "MESSAGE=agent=rev/2 task=T-1 trace=4bf9: said "
	    "task=evil");
	assert_field(dg, "SYSLOG_IDENTIFIER=t");
	assert_field(dg, "AGENT=rev");
	assert_field(dg, "INSTANCE=2");
	assert_field(dg, "TASK_ID=T-1");
	assert_field(dg, "TRACE_ID=4bf9");
	/* no fields, none sent */
	log_info("plain");
	n = recv(s, dg, sizeof(dg) - 1, 0);
	cr_assert(n > 0);
	dg[n] = '\0';
	cr_assert(strstr(dg, "AGENT=") == NULL && strstr(dg, "TASK_ID=") ==
	    NULL, "%s", dg);
	close(s);

	/* refused: a plain file where the socket was */
	cr_assert(unlink(JSOCK) == 0);
	cr_assert((fd = open(JSOCK, O_CREAT | O_WRONLY, 0600)) >= 0);
	close(fd);
	log_info("agent=a/1 refused");
	snprintf(want, sizeof(want), "<6>t[%ld]: agent=a/1 refused\n",
	    (long)getpid());
	cr_assert_str_eq(out(), want);
}
