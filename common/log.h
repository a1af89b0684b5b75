/*
 * log.h - one line per event on stderr, for journald and for people.
 *
 *   <6>2026-12-07T11:00:00.123Z hived[1234]: agent=reviewer/1 pid=4242 restarting after 200ms
 *
 * The "<N>" prefix is the syslog priority (journald reads it with
 * SyslogLevelPrefix=, the default); the time (UTC, milliseconds) follows
 * unless log_time says no (auto: no under journald, which stamps lines
 * itself).  Messages carry key=value fields; log_warn appends
 * ": strerror(errno)".  fatal/fatalx log and exit(1): use them only at
 * start-up or when an invariant is broken.
 *
 * log_format json: one JSON object per line instead (docs/OPERATIONS.md,
 * Logs), with the fields agent=NAME/N, task=ID and trace=ID of the
 * message as members of their own.  Under journald (JOURNAL_STREAM names
 * our stderr) text lines go to the journal through sd_journal_sendv with
 * those fields as AGENT=, INSTANCE=, TASK_ID=, TRACE_ID=; to stderr if
 * the journal refuses them, or if its socket was missing at log_init.
 *
 * Every line is built in static buffers (no allocation) and written with
 * one write(2), so that lines of several processes sharing stderr never
 * mix.  Not for signal handlers (none logs).
 */
#ifndef HIVE_LOG_H
#define HIVE_LOG_H

#include <stdarg.h>
#include <stddef.h>

#define HIVE_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Values are the indexes of the config's names: text json; auto yes no. */
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };
enum log_time { LOG_TIME_AUTO = 0, LOG_TIME_YES, LOG_TIME_NO };

/* Bytes of a message (with log_warn's ": strerror"); longer ones are cut. */
#define LOG_MSG_MAX 8192

/* role: "hived", "hive-worker".  Looks at JOURNAL_STREAM and stderr once:
 * call it again after either changes. */
void log_init(const char *role, int verbose);
void log_set_verbose(int verbose);
int log_verbose(void);
void log_set_format(enum log_format);
enum log_format log_get_format(void);
void log_set_time(enum log_time);
enum log_time log_get_time(void);
/* 1 when stderr is journald's stream (JOURNAL_STREAM, at log_init). */
int log_journal(void);
/* "text"/"json", "auto"/"yes"/"no"; NULL for a value out of range.  And
 * back: -1 for a name that is none. */
const char *log_format_name(enum log_format);
const char *log_time_name(enum log_time);
int log_format_parse(const char *);
int log_time_parse(const char *);

/*
 * The fields of a message, pointing into it (len 0: absent): the first
 * agent=, task= and trace= words, scanned up to the first ": " after a
 * field (what follows is free text, such as an agent's own output, whose
 * words must not pass for hived's).  agent=NAME/N gives agent NAME and
 * instance N; a value ends at white space, less a trailing ':' or ','.
 */
struct log_fields {
	const char *agent, *instance, *task, *trace;
	size_t agent_len, instance_len, task_len, trace_len;
};
void log_parse_fields(const char *msg, size_t len, struct log_fields *);

/*
 * The line log_* would write to stderr for msg (len bytes, any bytes) at
 * priority pri in the current format, newline included, into buf: its
 * length (at most size - 1; NUL-terminated).  JSON is valid whatever the
 * bytes (invalid UTF-8 becomes U+FFFD).  For tests and the fuzz target.
 */
size_t log_render(char *buf, size_t size, int pri, const char *msg,
    size_t len);

void log_warn(const char *fmt, ...) HIVE_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) HIVE_PRINTF(1, 2);
void log_notice(const char *fmt, ...) HIVE_PRINTF(1, 2);
void log_info(const char *fmt, ...) HIVE_PRINTF(1, 2);
void log_debug(const char *fmt, ...) HIVE_PRINTF(1, 2);
void log_crit(const char *fmt, ...) HIVE_PRINTF(1, 2);
/* Each line of text (a program's error report, say) as its own log_warnx
 * line, "prefix: line"; empty lines are skipped.  text may be NULL. */
void log_warnx_lines(const char *prefix, const char *text);
__attribute__((noreturn)) void fatal(const char *fmt, ...) HIVE_PRINTF(1, 2);
__attribute__((noreturn)) void fatalx(const char *fmt, ...) HIVE_PRINTF(1, 2);

#endif
