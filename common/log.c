/*
 * log.c - see log.h.  Lines are built in one buffer and written with one
 * write(2) so that lines of several processes sharing stderr never mix.
 */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

static char log_role[32] = "hive";
static int log_verb;

void
log_init(const char *role, int verbose)
{
	snprintf(log_role, sizeof(log_role), "%s", role);
	log_verb = verbose;
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

static void
log_vemit(int pri, const char *errstr, const char *fmt, va_list ap)
{
	char line[2048];
	int n, m;

	n = snprintf(line, sizeof(line), "<%d>%s[%ld]: ", pri, log_role,
	    (long)getpid());
	m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	if (errstr != NULL) {
		m = snprintf(line + n, sizeof(line) - n, ": %s", errstr);
		n += m;
		if (n > (int)sizeof(line) - 2)
			n = (int)sizeof(line) - 2;
	}
	line[n++] = '\n';
	/* One write; a short or failed write to stderr has nowhere to go. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
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
