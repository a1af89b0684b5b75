/*
 * keys.c - names of the Redis keys and consumers Hive uses, and the rules
 * for the names in them.  docs/PROTOCOL.md lists the same keys; clients
 * build them by hand from that page, so the formats here never change
 * without a new protocol version.
 */
#include "proto_int.h"

#include <stdarg.h>
#include <stdio.h>

/* A key prefix: like a stream key part, printable without space; short
 * enough to leave room for the rest of a key. */
#define PREFIX_MAX 64

static int
valid_prefix(const char *prefix)
{
	enum proto_errcode why;

	return prefix != NULL ? proto_check_print(prefix, strlen(prefix),
	    PREFIX_MAX, &why) : -1;
}

static int
valid_cname(const char *name)
{
	enum proto_errcode why;

	return name != NULL ? proto_check_name(name, strlen(name), &why) : -1;
}

/* snprintf that fails when the result does not fit. */
static int
fmt(char *buf, size_t len, const char *f, ...)
    __attribute__((format(printf, 3, 4)));

static int
fmt(char *buf, size_t len, const char *f, ...)
{
	va_list ap;
	int n;

	if (buf == NULL || len == 0)
		return -1;
	va_start(ap, f);
	n = vsnprintf(buf, len, f, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return -1;
	}
	return n;
}

int
proto_key_queue(char *buf, size_t len, const char *prefix,
    const char *capability, unsigned prio)
{
	if (valid_prefix(prefix) == -1 || valid_cname(capability) == -1 ||
	    prio >= HIVE_PRIO_LEVELS)
		return -1;
	return fmt(buf, len, "%s:q:%s:%u", prefix, capability, prio);
}

int
proto_key_agent_queue(char *buf, size_t len, const char *prefix,
    const char *agent, unsigned prio)
{
	if (valid_prefix(prefix) == -1 || valid_cname(agent) == -1 ||
	    prio >= HIVE_PRIO_LEVELS)
		return -1;
	return fmt(buf, len, "%s:q:@%s:%u", prefix, agent, prio);
}

int
proto_key_direct(char *buf, size_t len, const char *prefix,
    const char *agent, unsigned instance)
{
	if (valid_prefix(prefix) == -1 || valid_cname(agent) == -1 ||
	    instance < 1 || instance > HIVE_INSTANCE_MAX)
		return -1;
	return fmt(buf, len, "%s:direct:%s/%u", prefix, agent, instance);
}

int
proto_key_named(char *buf, size_t len, const char *prefix, const char *name)
{
	static const char *const names[] = { "broadcast", "results",
		"events", "dead", "workflows" };
	size_t i;

	if (valid_prefix(prefix) == -1 || name == NULL)
		return -1;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			break;
	if (i == sizeof(names) / sizeof(names[0]))
		return -1;
	return fmt(buf, len, "%s:%s", prefix, name);
}

int
proto_key_output(char *buf, size_t len, const char *prefix,
    const char *task_id)
{
	if (valid_prefix(prefix) == -1 || task_id == NULL ||
	    proto_valid_id(task_id, strlen(task_id)) == -1)
		return -1;
	return fmt(buf, len, "%s:output:%s", prefix, task_id);
}

int
proto_consumer_name(char *buf, size_t len, const char *agent,
    unsigned instance, const char *host)
{
	enum proto_errcode why;

	if (valid_cname(agent) == -1 || instance < 1 ||
	    instance > HIVE_INSTANCE_MAX || host == NULL ||
	    proto_check_print(host, strlen(host), HIVE_HOST_MAX, &why) == -1)
		return -1;
	return fmt(buf, len, "%s/%u@%s", agent, instance, host);
}

int
proto_valid_name(const char *s, size_t len)
{
	enum proto_errcode why;

	return s != NULL ? proto_check_name(s, len, &why) : -1;
}

int
proto_valid_id(const char *s, size_t len)
{
	enum proto_errcode why;

	return s != NULL ? proto_check_print(s, len, HIVE_ID_MAX, &why) : -1;
}
