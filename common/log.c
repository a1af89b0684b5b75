/*
 * log.c - see log.h.  A line is built in static buffers (one process,
 * one thread, no logging from signal handlers) and leaves with one
 * write(2) or one sd_journal_sendv; nothing is allocated per line.
 *
 * The message is formatted at lbuf + LOG_HDR: the text header is copied
 * into the bytes just before it (and "MESSAGE=" for the journal), so
 * that the line is contiguous without moving the message.
 *
 *   lbuf: [ ...free... | <6>2026-...Z hived[12]: | message | \n ]
 *                      ^ lbuf + LOG_HDR - header   ^ lbuf + LOG_HDR
 */
#include "log.h"

#include <sys/stat.h>
#include <sys/uio.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

/* Room before the message: "<N>", the time, role[pid]: (role < 32). */
#define LOG_HDR        128
/* Bytes of a field's value kept (JSON, journal): ids are far shorter. */
#define LOG_FIELD_MAX  256
/* A JSON line: every message byte may become "\u00XX" (6 bytes); the
 * rest (time, level, role, pid, four fields) fits in the slack. */
#define LOG_JSON_MAX   (6 * LOG_MSG_MAX + 8192)
#define LOG_RENDER_MIN (4 * 6 * LOG_FIELD_MAX + 2048)
/* Where libsystemd sends (sd_journal_sendv, fixed in it). */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static char log_role[32] = "hive";
static char log_ident[32 + sizeof("SYSLOG_IDENTIFIER=")] =
    "SYSLOG_IDENTIFIER=hive";
static int log_verb;
static enum log_format log_fmt = LOG_FORMAT_TEXT;
static enum log_time log_tm = LOG_TIME_AUTO;
static int log_jrnl;          /* stderr is journald's stream */
static int log_jsend;         /* ...and its socket is there: sendv */

static char lbuf[LOG_HDR + LOG_MSG_MAX + 1];
static char jbuf[LOG_JSON_MAX];

static const char *const format_names[] = { "text", "json" };
static const char *const time_names[] = { "auto", "yes", "no" };
static const char *const level_names[] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

/*
 * systemd gives a service's stderr stream "JOURNAL_STREAM=DEV:INODE"
 * (systemd.exec(5)); a program whose stderr is that very file talks to
 * journald, while one whose stderr was redirected elsewhere (a child's
 * 2>file) inherited the variable but not the stream.
 */
static int
journal_is_stderr(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char *end;

	if (e == NULL || fstat(STDERR_FILENO, &st) == -1)
		return 0;
	errno = 0;
	dev = strtoull(e, &end, 10);
	if (end == e || *end != ':' || errno != 0)
		return 0;
	e = end + 1;
	ino = strtoull(e, &end, 10);
	if (end == e || *end != '\0' || errno != 0)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_init(const char *role, int verbose)
{
	snprintf(log_role, sizeof(log_role), "%s", role);
	snprintf(log_ident, sizeof(log_ident), "SYSLOG_IDENTIFIER=%s",
	    log_role);
	log_verb = verbose;
	log_jrnl = journal_is_stderr();
	/* sd_journal_sendv says 0 when the socket is missing (ENOENT), and
	 * the line would be lost: without it, lines stay on stderr. */
	log_jsend = log_jrnl && access(JOURNAL_SOCKET, F_OK) == 0;
}

void
log_set_verbose(int verbose)
{
	log_verb = verbose;
}

int
log_verbose(void)
{
	return log_verb;
}

void
log_set_format(enum log_format f)
{
	log_fmt = f == LOG_FORMAT_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT;
}

enum log_format
log_get_format(void)
{
	return log_fmt;
}

void
log_set_time(enum log_time t)
{
	log_tm = t == LOG_TIME_YES || t == LOG_TIME_NO ? t : LOG_TIME_AUTO;
}

enum log_time
log_get_time(void)
{
	return log_tm;
}

int
log_journal(void)
{
	return log_jrnl;
}

const char *
log_format_name(enum log_format f)
{
	return (unsigned)f < 2 ? format_names[f] : NULL;
}

const char *
log_time_name(enum log_time t)
{
	return (unsigned)t < 3 ? time_names[t] : NULL;
}

int
log_format_parse(const char *s)
{
	for (int i = 0; i < 2; i++)
		if (s != NULL && strcmp(s, format_names[i]) == 0)
			return i;
	return -1;
}

int
log_time_parse(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (s != NULL && strcmp(s, time_names[i]) == 0)
			return i;
	return -1;
}

/* ---- the fields of a message ---- */

static int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
	    c == '\v' || c == '\f';
}

/* Word w (n bytes) is "key=VALUE": VALUE less a trailing ':' or ',', cut
 * to LOG_FIELD_MAX, into *v; 0, or -1 (not that key, or no value). */
static int
field_value(const char *w, size_t n, const char *key, const char **v,
    size_t *vlen)
{
	size_t k = strlen(key);

	if (n <= k || memcmp(w, key, k) != 0)
		return -1;
	w += k;
	n -= k;
	if (n > 0 && (w[n - 1] == ':' || w[n - 1] == ','))
		n--;
	if (n == 0)
		return -1;
	*v = w;
	*vlen = n < LOG_FIELD_MAX ? n : LOG_FIELD_MAX;
	return 0;
}

/* agent=NAME/N: the instance is 1 to 9 digits after the last '/', so
 * that it is a number every JSON reader takes; otherwise all is name. */
static void
field_agent(struct log_fields *f, const char *v, size_t n)
{
	size_t slash = n, d;

	while (slash > 0 && v[slash - 1] != '/')
		slash--;
	d = n - slash;
	if (slash > 1 && d >= 1 && d <= 9) {
		size_t i;

		for (i = slash; i < n && v[i] >= '0' && v[i] <= '9'; i++)
			;
		if (i == n) {
			f->instance = v + slash;
			f->instance_len = d;
			n = slash - 1;
		}
	}
	f->agent = v;
	f->agent_len = n;
}

void
log_parse_fields(const char *msg, size_t len, struct log_fields *f)
{
	size_t i = 0, s;
	int any = 0;

	memset(f, 0, sizeof(*f));
	while (i < len) {
		const char *v;
		size_t vl;

		while (i < len && is_space(msg[i]))
			i++;
		for (s = i; i < len && !is_space(msg[i]); i++)
			;
		if (i == s)
			break;
		if (f->agent == NULL &&
		    field_value(msg + s, i - s, "agent=", &v, &vl) == 0) {
			field_agent(f, v, vl);
			any = 1;
		} else if (f->task == NULL &&
		    field_value(msg + s, i - s, "task=", &v, &vl) == 0) {
			f->task = v;
			f->task_len = vl;
			any = 1;
		} else if (f->trace == NULL &&
		    field_value(msg + s, i - s, "trace=", &v, &vl) == 0) {
			f->trace = v;
			f->trace_len = vl;
			any = 1;
		}
		/* "...: free text" after the fields: stop. */
		if (any && msg[i - 1] == ':' && i < len)
			break;
	}
}

/* ---- rendering ---- */

/* "2026-12-07T11:00:00.123Z" into out (32 bytes); its length.  The
 * seconds part is made once a second. */
static size_t
log_stamp(char *out)
{
	static time_t last = -1;
	static char secs[32];
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != last) {
		if (gmtime_r(&ts.tv_sec, &tm) == NULL ||
		    strftime(secs, sizeof(secs), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
			snprintf(secs, sizeof(secs), "1970-01-01T00:00:00");
		last = ts.tv_sec;
	}
	n = snprintf(out, 32, "%s.%03ldZ", secs, ts.tv_nsec / 1000000);
	return n > 0 && n < 32 ? (size_t)n : 0;
}

/* The text line's header, "<6>TIME hived[12]: ", into hdr (LOG_HDR). */
static size_t
text_header(char *hdr, int pri)
{
	char ts[32];
	int time_on = log_tm == LOG_TIME_YES ||
	    (log_tm == LOG_TIME_AUTO && !log_jrnl);
	int n;

	if (time_on && log_stamp(ts) > 0)
		n = snprintf(hdr, LOG_HDR, "<%d>%s %s[%ld]: ", pri, ts,
		    log_role, (long)getpid());
	else
		n = snprintf(hdr, LOG_HDR, "<%d>%s[%ld]: ", pri, log_role,
		    (long)getpid());
	return n > 0 && n < LOG_HDR ? (size_t)n : 0;
}

/* Bytes of the valid UTF-8 sequence at s (RFC 3629: no overlong forms,
 * no surrogates, nothing past U+10FFFF), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/*
 * s (n bytes, any) as the inside of a JSON string at out + o, stopping
 * before a character that would pass lim; the new offset.  Controls are
 * escaped, invalid UTF-8 becomes \ufffd, valid UTF-8 stays as it is.
 */
static size_t
json_esc(char *out, size_t o, size_t lim, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	char tmp[8];

	for (size_t i = 0; i < n; ) {
		const char *rep = tmp;
		size_t rl = 2, adv = 1;
		unsigned c = s[i];

		tmp[0] = '\\';
		if (c == '"' || c == '\\')
			tmp[1] = (char)c;
		else if (c == '\n')
			tmp[1] = 'n';
		else if (c == '\t')
			tmp[1] = 't';
		else if (c == '\r')
			tmp[1] = 'r';
		else if (c < 0x20 || c == 0x7f)
			rl = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", c);
		else if (c < 0x80)
			rep = str + i, rl = 1;
		else if ((adv = utf8_len(s + i, n - i)) > 0)
			rep = str + i, rl = adv;
		else
			rep = "\\ufffd", rl = 6, adv = 1;
		if (o + rl > lim)
			break;
		memcpy(out + o, rep, rl);
		o += rl;
		i += adv;
	}
	return o;
}

/* ,"key":"value" at out + o (the room is there: LOG_RENDER_MIN). */
static size_t
json_field(char *out, size_t o, size_t lim, const char *key,
    const char *v, size_t n)
{
	o += (size_t)snprintf(out + o, lim - o, ",\"%s\":\"", key);
	o = json_esc(out, o, lim - 1, v, n);
	out[o++] = '"';
	return o;
}

/*
 * One JSON line (msg last, so that what is cut of a long message is its
 * end and the object still closes).  size >= LOG_RENDER_MIN.
 */
static size_t
render_json(char *out, size_t size, int pri, const char *msg, size_t len)
{
	struct log_fields f;
	char ts[32];
	size_t o, lim = size - 4;      /* room for "}\n and the NUL */

	log_parse_fields(msg, len, &f);
	if (log_stamp(ts) == 0)
		ts[0] = '\0';
	o = (size_t)snprintf(out, lim, "{\"time\":\"%s\",\"level\":\"%s\","
	    "\"priority\":%d,\"role\":\"", ts, level_names[pri & 7], pri & 7);
	o = json_esc(out, o, lim, log_role, strlen(log_role));
	o += (size_t)snprintf(out + o, lim - o, "\",\"pid\":%ld",
	    (long)getpid());
	if (f.agent != NULL)
		o = json_field(out, o, lim, "agent", f.agent, f.agent_len);
	if (f.instance != NULL)
		o += (size_t)snprintf(out + o, lim - o, ",\"instance\":%lu",
		    strtoul(f.instance, NULL, 10));
	if (f.task != NULL)
		o = json_field(out, o, lim, "task", f.task, f.task_len);
	if (f.trace != NULL)
		o = json_field(out, o, lim, "trace", f.trace, f.trace_len);
	o = json_field(out, o, lim, "msg", msg, len);
	out[o++] = '}';
	out[o++] = '\n';
	out[o] = '\0';
	return o;
}

size_t
log_render(char *buf, size_t size, int pri, const char *msg, size_t len)
{
	char hdr[LOG_HDR];
	size_t h;

	if (size < LOG_RENDER_MIN) {
		if (size > 0)
			buf[0] = '\0';
		return 0;
	}
	if (log_fmt == LOG_FORMAT_JSON)
		return render_json(buf, size, pri, msg, len);
	h = text_header(hdr, pri);
	if (len > size - h - 2)
		len = size - h - 2;
	memcpy(buf, hdr, h);
	memcpy(buf + h, msg, len);
	buf[h + len] = '\n';
	buf[h + len + 1] = '\0';
	return h + len + 1;
}

/*
 * msg (at lbuf + LOG_HDR, len bytes) to the journal with its fields;
 * 0, or -1 when the journal did not take it (the caller writes it to
 * stderr instead: nothing is lost).
 */
static int
journal_send(int pri, size_t len)
{
	static char fb[4][LOG_FIELD_MAX + 16];
	static const char *const names[4] = {
		"AGENT", "INSTANCE", "TASK_ID", "TRACE_ID",
	};
	char *msg = lbuf + LOG_HDR - (sizeof("MESSAGE=") - 1), prio[16];
	struct iovec iov[7];
	struct log_fields f;
	const char *v[4];
	size_t vl[4];
	int n = 0;

	log_parse_fields(lbuf + LOG_HDR, len, &f);
	v[0] = f.agent, vl[0] = f.agent_len;
	v[1] = f.instance, vl[1] = f.instance_len;
	v[2] = f.task, vl[2] = f.task_len;
	v[3] = f.trace, vl[3] = f.trace_len;
	memcpy(msg, "MESSAGE=", sizeof("MESSAGE=") - 1);
	snprintf(prio, sizeof(prio), "PRIORITY=%d", pri & 7);
	iov[n].iov_base = prio, iov[n++].iov_len = strlen(prio);
	iov[n].iov_base = msg;
	iov[n++].iov_len = len + sizeof("MESSAGE=") - 1;
	iov[n].iov_base = log_ident, iov[n++].iov_len = strlen(log_ident);
	for (int i = 0; i < 4; i++) {
		int m;

		if (v[i] == NULL)
			continue;
		m = snprintf(fb[i], sizeof(fb[i]), "%s=%.*s", names[i],
		    (int)vl[i], v[i]);
		iov[n].iov_base = fb[i], iov[n++].iov_len = (size_t)m;
	}
	return sd_journal_sendv(iov, n) < 0 ? -1 : 0;
}

static void
log_vemit(int pri, const char *errstr, const char *fmt, va_list ap)
{
	char *msg = lbuf + LOG_HDR, hdr[LOG_HDR];
	size_t len, h;
	int m;

	m = vsnprintf(msg, LOG_MSG_MAX, fmt, ap);
	len = m < 0 ? 0 : (size_t)m < LOG_MSG_MAX ? (size_t)m : LOG_MSG_MAX - 1;
	if (errstr != NULL) {
		m = snprintf(msg + len, LOG_MSG_MAX - len, ": %s", errstr);
		len += m < 0 ? 0 : (size_t)m < LOG_MSG_MAX - len ? (size_t)m :
		    LOG_MSG_MAX - len - 1;
	}
	/* A short or failed write to stderr has nowhere to go. */
	if (log_fmt == LOG_FORMAT_JSON) {
		h = render_json(jbuf, sizeof(jbuf), pri, msg, len);
		if (write(STDERR_FILENO, jbuf, h) < 0)
			errno = 0;
		return;
	}
	if (log_jsend && journal_send(pri, len) == 0)
		return;
	h = text_header(hdr, pri);
	memcpy(msg - h, hdr, h);
	msg[len] = '\n';
	if (write(STDERR_FILENO, msg - h, h + len + 1) < 0)
		errno = 0;
}

#define LOG_FN(name, pri, cond, witherr)			\
void								\
name(const char *fmt, ...)					\
{								\
	int saved = errno;					\
	va_list ap;						\
	if (!(cond))						\
		return;						\
	va_start(ap, fmt);					\
	log_vemit(pri, (witherr) ? strerror(saved) : NULL, fmt, ap); \
	va_end(ap);						\
	errno = saved;						\
}

LOG_FN(log_warn, LOG_WARNING, 1, 1)
LOG_FN(log_warnx, LOG_WARNING, 1, 0)
LOG_FN(log_notice, LOG_NOTICE, 1, 0)
LOG_FN(log_info, LOG_INFO, 1, 0)
LOG_FN(log_crit, LOG_CRIT, 1, 0)
LOG_FN(log_debug, LOG_DEBUG, log_verb > 0, 0)

void
log_warnx_lines(const char *prefix, const char *text)
{
	while (text != NULL && *text != '\0') {
		size_t n = strcspn(text, "\n");

		if (n > 0)
			log_warnx("%s: %.*s", prefix, (int)n, text);
		text += n + (text[n] == '\n');
	}
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_CRIT, strerror(saved), fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_CRIT, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
