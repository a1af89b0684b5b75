/*
 * log.h - one line per event on stderr, for journald and for people.
 *
 *   <6>hived[1234]: agent=reviewer/1 pid=4242 restarting after 200ms
 *
 * The "<N>" prefix is the syslog priority (journald reads it with
 * SyslogLevelPrefix=, the default). Messages carry key=value fields;
 * log_warn appends ": strerror(errno)". fatal/fatalx log and exit(1): use
 * them only at start-up or when an invariant is broken.
 */
#ifndef HIVE_LOG_H
#define HIVE_LOG_H

#include <stdarg.h>

#define HIVE_PRINTF(a, b) __attribute__((format(printf, a, b)))

void log_init(const char *role, int verbose);
void log_set_verbose(int verbose);
int log_verbose(void);

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
