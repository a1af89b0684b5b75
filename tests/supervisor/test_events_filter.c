/*
 * test_events_filter.c - events_filter_parse (supervisor/events.c), GET
 * /events's arguments as a pure function: what each one takes, and the
 * exact error of each it refuses.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "events.h"

static struct ev_filter
ok(const char *types, const char *agent, const char *instance,
    const char *last)
{
	struct ev_filter f;
	char err[128] = "";

	cr_assert_eq(events_filter_parse(types, agent, instance, last, &f, err,
	    sizeof(err)), 0, "%s/%s/%s/%s: %s", types, agent, instance, last,
	    err);
	return f;
}

static void
bad(const char *types, const char *agent, const char *instance,
    const char *last, const char *want)
{
	struct ev_filter f;
	char err[128] = "";

	cr_assert_eq(events_filter_parse(types, agent, instance, last, &f, err,
	    sizeof(err)), -1, "%s/%s/%s/%s", types, agent, instance, last);
	cr_assert_str_eq(err, want);
}

Test(events_filter, defaults_take_everything)
{
	struct ev_filter f = ok(NULL, NULL, NULL, NULL);

	cr_assert_eq(f.types, (1u << EV_T_COUNT) - 1);
	cr_assert_str_eq(f.agent, "");
	cr_assert_eq(f.instance, 0);
	cr_assert_eq(f.resume, 0);
	cr_assert_eq(ok("", NULL, NULL, NULL).types, (1u << EV_T_COUNT) - 1);
}

Test(events_filter, types)
{
	cr_assert_eq(ok("agent,dead", NULL, NULL, NULL).types,
	    (1u << EV_T_AGENT) | (1u << EV_T_DEAD));
	/* task stands for the coalesced tasks too */
	cr_assert_eq(ok("task", NULL, NULL, NULL).types,
	    (1u << EV_T_TASK) | (1u << EV_T_TASKS));
	cr_assert_eq(ok("metrics,metrics", NULL, NULL, NULL).types,
	    1u << EV_T_METRICS);
	bad("agent,bogus", NULL, NULL, NULL, "types: unknown type \"bogus\"");
	bad("Agent", NULL, NULL, NULL, "types: unknown type \"Agent\"");
	bad("agent,", NULL, NULL, NULL, "types: a name after the last comma");
	bad(",agent", NULL, NULL, NULL, "types: expected names separated by "
	    "commas");
	bad("averyveryverylongname", NULL, NULL, NULL, "types: expected names "
	    "separated by commas");
}

Test(events_filter, agent_and_instance)
{
	struct ev_filter f = ok(NULL, "reviewer", "12", NULL);

	cr_assert_str_eq(f.agent, "reviewer");
	cr_assert_eq(f.instance, 12);
	cr_assert_eq(ok(NULL, NULL, "9999", NULL).instance, 9999);
	bad(NULL, "", NULL, NULL, "agent: expected a name of 1..64 bytes");
	bad(NULL, NULL, "0", NULL, "instance: expected a number 1..9999");
	bad(NULL, NULL, "10000", NULL, "instance: expected a number 1..9999");
	bad(NULL, NULL, "1x", NULL, "instance: expected a number 1..9999");
	bad(NULL, NULL, "", NULL, "instance: expected a number 1..9999");
}

Test(events_filter, last_event_id)
{
	struct ev_filter f = ok(NULL, NULL, NULL, "1796630400123456");

	cr_assert_eq(f.resume, 1);
	cr_assert_eq(f.last_id, 1796630400123456ull);
	cr_assert_eq(ok(NULL, NULL, NULL, "0").last_id, 0);
	bad(NULL, NULL, NULL, "", "last event id: expected a decimal number");
	bad(NULL, NULL, NULL, "-1", "last event id: expected a decimal number");
	bad(NULL, NULL, NULL, "12345678901234567890", "last event id: expected "
	    "a decimal number");
}
