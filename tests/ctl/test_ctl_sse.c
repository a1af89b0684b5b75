/*
 * test_ctl_sse.c - hivectl's event-stream parser (ctl/sse.c) alone: the
 * events of a text/event-stream fed whole and byte by byte, "\n",
 * "\r\n" and "\r" line ends, comments, several data lines, an id kept
 * for the events after it, and the function's stop.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "sse.h"

struct got {
	char text[4096];
	int n, stop_at;
};

static int
on_event(const char *id, const char *event, const char *data, void *arg)
{
	struct got *g = arg;
	size_t len = strlen(g->text);

	snprintf(g->text + len, sizeof(g->text) - len, "[%s|%s|%s]", id, event,
	    data);
	return ++g->n == g->stop_at;
}

static const char stream[] =
    ": keepalive\n"
    "id: 17\n"
    "event: output\n"
    "data: {\"text\": \"a\"}\n"
    "\n"
    "event: agent\r\n"
    "data:x\r\n"
    "data: y\r\n"
    "\r\n"
    "id: 18\r"
    "data\r"
    "\r"
    "event: nodata\n"
    "\n"
    "data: last\n\n";

static const char want[] =
    "[17|output|{\"text\": \"a\"}][17|agent|x\ny][18|message|][18|message|last]";

Test(ctl_sse, whole_and_byte_by_byte)
{
	struct ctl_sse_parser p;
	struct got g = { .stop_at = -1 };

	ctl_sse_init(&p, on_event, &g);
	cr_assert_eq(ctl_sse_feed(&p, stream, sizeof(stream) - 1), 0);
	cr_assert_str_eq(g.text, want);
	ctl_sse_free(&p);

	memset(&g, 0, sizeof(g));
	g.stop_at = -1;
	ctl_sse_init(&p, on_event, &g);
	for (size_t i = 0; i < sizeof(stream) - 1; i++)
		cr_assert_eq(ctl_sse_feed(&p, stream + i, 1), 0);
	cr_assert_str_eq(g.text, want);
	ctl_sse_free(&p);
}

Test(ctl_sse, stop_ends_the_feed)
{
	struct ctl_sse_parser p;
	struct got g = { .stop_at = 2 };

	ctl_sse_init(&p, on_event, &g);
	cr_assert_eq(ctl_sse_feed(&p, stream, sizeof(stream) - 1), 1);
	cr_assert_eq(g.n, 2, "nothing after the stop");
	ctl_sse_free(&p);
}

Test(ctl_sse, partial_event_waits_for_its_blank_line)
{
	struct ctl_sse_parser p;
	struct got g = { .stop_at = -1 };

	ctl_sse_init(&p, on_event, &g);
	cr_assert_eq(ctl_sse_feed(&p, "id: 1\ndata: half", 16), 0);
	cr_assert_eq(g.n, 0);
	cr_assert_eq(ctl_sse_feed(&p, "\n\n", 2), 0);
	cr_assert_str_eq(g.text, "[1|message|half]");
	ctl_sse_free(&p);
}
