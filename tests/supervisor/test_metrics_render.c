/*
 * test_metrics_render.c - supervisor/metrics.c's text alone: a struct
 * sup built by hand (no store, no Redis), its scrape read line by line;
 * label values escaped; promtool check metrics on it when installed.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hived.h"
#include "util.h"

static char *
label(const char *s)
{
	struct hbuf b = { 0 };

	cr_assert_eq(sup_metrics_label(&b, s), 0);
	cr_assert_eq(hbuf_putc(&b, '\0'), 0);
	return b.p;
}

Test(metrics_render, label_escaping)
{
	char *s;

	cr_assert_str_eq(s = label("plain-name_1.x"), "plain-name_1.x");
	free(s);
	cr_assert_str_eq(s = label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
	free(s);
	cr_assert_str_eq(s = label("caf\xc3\xa9"), "caf\xc3\xa9");
	free(s);
	/* not UTF-8: a lone continuation byte, a cut sequence, 0xff */
	cr_assert_str_eq(s = label("\x80x\xc3\xff"),
	    "\xef\xbf\xbdx\xef\xbf\xbd\xef\xbf\xbd");
	free(s);
	cr_assert_str_eq(s = label(""), "");
	free(s);
}

static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return 1;
	return 0;
}

/* Two instances of one agent, one live and one crashed; no store. */
Test(metrics_render, agents_without_store)
{
	struct sup sup;
	struct sup_agent a;
	struct sup_inst i1, i2, *inst[2] = { &i1, &i2 };
	struct hive_agent_conf conf;
	struct hbuf b = { 0 };
	const char *t;

	memset(&sup, 0, sizeof(sup));
	memset(&a, 0, sizeof(a));
	memset(&i1, 0, sizeof(i1));
	memset(&i2, 0, sizeof(i2));
	memset(&conf, 0, sizeof(conf));
	sup.loop = ev_default_loop(0);
	TAILQ_INIT(&sup.agents);
	snprintf(a.name, sizeof(a.name), "we\"ird\\");
	conf.instances = 2;
	a.conf = &conf;
	a.inst = inst;
	a.ninst = 2;
	TAILQ_INSERT_TAIL(&sup.agents, &a, entry);
	i1.agent = i2.agent = &a;
	i1.n = 1;
	i2.n = 2;
	i1.fsm.state = SUP_ST_READY;
	i1.pid = 4242;
	i1.have_hb = 1;
	i1.last_hb = ev_now(sup.loop) - 2;
	i1.rss_pid = 4242;
	i1.rss_kb = 100;
	i1.restarts = 3;
	i2.fsm.state = SUP_ST_CRASHED;
	i2.restarts = 4;
	i2.handler_restarts = 5;
	i2.rss_pid = 17;             /* an old worker's sample: not shown */
	i2.rss_kb = 7;

	cr_assert_eq(sup_metrics_render(&sup, &b), 0);
	cr_assert_eq(hbuf_putc(&b, '\0'), 0);
	t = b.p;
	cr_assert(has_line(t, "# TYPE hive_agent_instances gauge"), "%s", t);
	cr_assert(has_line(t, "hive_agent_instances{agent=\"we\\\"ird\\\\\","
	    "state=\"ready\"} 1"), "%s", t);
	cr_assert(has_line(t, "hive_agent_instances{agent=\"we\\\"ird\\\\\","
	    "state=\"crashed\"} 1"), "%s", t);
	cr_assert(has_line(t, "hive_agent_instances{agent=\"we\\\"ird\\\\\","
	    "state=\"failed\"} 0"), "%s", t);
	cr_assert(has_line(t, "hive_agent_instances_configured{agent="
	    "\"we\\\"ird\\\\\"} 2"), "%s", t);
	cr_assert(has_line(t, "hive_worker_restarts_total{agent="
	    "\"we\\\"ird\\\\\"} 7"), "%s", t);
	cr_assert(has_line(t, "hive_handler_restarts_total{agent="
	    "\"we\\\"ird\\\\\"} 5"), "%s", t);
	cr_assert(has_line(t, "hive_heartbeat_age_seconds{agent="
	    "\"we\\\"ird\\\\\",agent_instance=\"1\"} 2"), "%s", t);
	cr_assert(has_line(t, "hive_worker_rss_bytes{agent="
	    "\"we\\\"ird\\\\\",agent_instance=\"1\"} 102400"), "%s", t);
	cr_assert_null(strstr(t, "agent_instance=\"2\""), "%s", t);
	cr_assert(has_line(t, "hive_redis_up 0"), "%s", t);
	cr_assert_null(strstr(t, "hive_postgres_up"), "no postgres");
	cr_assert_null(strstr(t, "hive_tasks_"), "no recorder");
	cr_assert(strstr(t, "\nhive_hived_rss_bytes ") != NULL);
	cr_assert(has_line(t, "# TYPE hive_queue_length gauge"), "%s", t);

	if (system("command -v promtool >/dev/null 2>&1") != 0) {
		fprintf(stderr, "SKIP promtool check metrics: promtool is not "
		    "installed (Debian package prometheus)\n");
	} else {
		FILE *f = popen("promtool check metrics >&2", "w");
		cr_assert_not_null(f);
		fputs(t, f);
		int st = pclose(f);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "promtool check metrics: 0x%x on:\n%s", st, t);
	}
	hbuf_free(&b);
}
