/*
 * main.c - hivectl's command line: the options, the verb table, help.
 *
 *   hivectl [GLOBAL OPTIONS] VERB [ARGS] [OPTIONS]
 *   hivectl help [VERB] | VERB --help | --help | --version
 *
 * Options may come anywhere after the program name (getopt_long permutes;
 * "--" ends them, for a JSON payload that starts with '-').  One option
 * table serves every verb; each verb's row says which of the verb options
 * it accepts, and any other one is a usage error (exit 2).
 */
#include "hivectl.h"
#include "hive_version.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define ACTION_HELP(what) \
	"AGENT is a name (every instance) or NAME/N (instance N).\n" what

static const struct ctl_verb verbs[] = {
	{ "status", verb_status, 0, 1, 0, "status [AGENT[/N]]",
	  "One line per agent instance: its state, pid, uptime, worker\n"
	  "restarts, memory version and the task it runs (GET /agents).\n"
	  "AGENT keeps the lines of that agent (or instance)." },
	{ "start", verb_action, 1, 1, 0, "start AGENT[/N]",
	  ACTION_HELP("Start stopped, crashed or sleeping instances.") },
	{ "stop", verb_action, 1, 1, 0, "stop AGENT[/N]",
	  ACTION_HELP("Stop: drain, then SIGKILL at stop_timeout; the\n"
	  "instances stay stopped until started.") },
	{ "restart", verb_action, 1, 1, 0, "restart AGENT[/N]",
	  ACTION_HELP("Restart the workers.") },
	{ "sleep", verb_action, 1, 1, 0, "sleep AGENT[/N]",
	  ACTION_HELP("Put instances to sleep (stopped until woken).") },
	{ "wake", verb_action, 1, 1, 0, "wake AGENT[/N]",
	  ACTION_HELP("Wake sleeping instances.") },
	{ "reset", verb_action, 1, 1, 0, "reset AGENT[/N]",
	  ACTION_HELP("Clear quarantine (failed) and the restart count;\n"
	  "the instances start again.") },
	{ "drain", verb_action, 1, 1, 0, "drain AGENT[/N]",
	  ACTION_HELP("Take no new task, finish the running ones (no\n"
	  "stop_timeout kill), then stop.  start brings them back.") },
	{ "reload", verb_reload, 0, 0, 0, "reload",
	  "Validate the configuration files, then apply them.  A bad\n"
	  "configuration prints every file:line error and exits 1; the old\n"
	  "configuration keeps running." },
	{ "stop-all", verb_stop_all, 0, 0, OPT_TIMEOUT,
	  "stop-all [--timeout DURATION]",
	  "Emergency stop of every instance: drain, then SIGKILL at the\n"
	  "bound (--timeout; default each agent's stop_timeout).  The record\n"
	  "is kept; start-all undoes it." },
	{ "start-all", verb_start_all, 0, 0, 0, "start-all",
	  "Start every stopped instance." },
	{ "health", verb_health, 0, 0, 0, "health",
	  "hived's health: Redis, PostgreSQL, quarantined instances.\n"
	  "Exit 0 when healthy, 1 when degraded (or stopping)." },
	{ "submit", verb_submit, 1, 2, OPT_PRIORITY | OPT_AGENT | OPT_ID |
	  OPT_WAIT | OPT_TIMEOUT,
	  "submit CAPABILITY JSON | --agent AGENT[/N] JSON\n"
	  "       [--priority N] [--id ID] [--wait [--timeout DURATION]]",
	  "Submit a task whose payload is JSON (\"-\": read it from stdin)\n"
	  "and print its id.  --agent sends it to that agent's queue (or\n"
	  "instance N's) instead of a capability's.\n"
	  "  --priority N        0 (high), 1 (default), 2 (low)\n"
	  "  --id ID             the task's id (default: hived makes one)\n"
	  "  --wait              wait for the outcome and print the result;\n"
	  "                      exit 1 when the task failed or went dead\n"
	  "  --timeout DURATION  give up waiting after DURATION (exit 1)" },
	{ "wait", verb_wait, 1, 1, OPT_TIMEOUT | OPT_FOLLOW,
	  "wait ID [--timeout DURATION | -f]",
	  "Wait for task ID to finish and print its result; exit 1 when it\n"
	  "failed, went dead, or DURATION passed first.\n"
	  "  -f, --follow    print the task's output as it comes (its\n"
	  "                  chunks on stdout; its progress on stderr, as a\n"
	  "                  status line on a terminal), then the result" },
	{ "task", verb_task, 1, 1, 0, "task ID",
	  "A task: its states with their times, each attempt, the result." },
	{ "tasks", verb_tasks, 0, 0, OPT_STATE | OPT_CAPABILITY | OPT_AGENT |
	  OPT_WORKFLOW | OPT_SINCE | OPT_LIMIT,
	  "tasks [--state S] [--capability C] [--agent A] [--workflow W]\n"
	  "       [--since T] [--limit N]",
	  "Tasks, newest first.\n"
	  "  --state S       waiting, queued, running, completed, failed, dead\n"
	  "  --capability C  of capability C\n"
	  "  --agent A       run by agent A (a name, or NAME/N)\n"
	  "  --workflow W    of workflow W\n"
	  "  --since T       created at or after T (RFC 3339, or Unix ms)\n"
	  "  --limit N       at most N tasks (default 100)" },
	{ "workflow", verb_workflow, 1, 1, 0, "workflow ID",
	  "A workflow: its tasks, their dependencies and states." },
	{ "workflows", verb_workflows, 0, 0, OPT_STATE | OPT_SINCE | OPT_LIMIT,
	  "workflows [--state S] [--since T] [--limit N]",
	  "Workflows, newest first (--limit: default 100)." },
	{ "queues", verb_queues, 0, 0, 0, "queues",
	  "Each queue (capability or @agent, and priority): length, pending,\n"
	  "lag, the age of its oldest entry, consumers." },
	{ "dead", verb_dead, 0, 2, OPT_CODE | OPT_CAPABILITY | OPT_ALL |
	  OPT_LIMIT,
	  "dead [ls] [--code C] [--capability C] [--limit N]\n"
	  "       dead show DEAD_ID\n"
	  "       dead retry DEAD_ID | --all | --code C [--capability C]",
	  "Dead letters (hive:dead), newest first.\n"
	  "  ls               list them (the default)\n"
	  "  show DEAD_ID     one, with its task decoded\n"
	  "  retry DEAD_ID    put its task back on its queue as a new attempt\n"
	  "  retry --all      every retryable one\n"
	  "  retry --code C   those of code C (and/or --capability C)" },
	{ "logs", verb_logs, 1, 1, OPT_FOLLOW | OPT_LINES,
	  "logs AGENT[/N] [-f] [-n N]",
	  "An agent's output: the lines its handlers wrote to stderr, as\n"
	  "hived keeps them (output_lines per instance), oldest first:\n"
	  "TIME AGENT/N [TASK] TEXT.  --json: one JSON object per line.\n"
	  "AGENT is a name (every instance) or NAME/N (instance N).\n"
	  "  -n, --lines N   the last N lines (default 100)\n"
	  "  -f, --follow    then print new lines as they come, until\n"
	  "                  Ctrl-C" },
	{ "usage", verb_usage, 0, 0, OPT_BY | OPT_SINCE | OPT_LIMIT,
	  "usage [--by agent|capability|workflow] [--since T] [--limit N]",
	  "What tasks cost: the usage their results reported (tokens,\n"
	  "cost), summed, most expensive first.\n"
	  "  --by K     agent (default), capability or workflow\n"
	  "  --since T  tasks finished at or after T (RFC 3339, or Unix ms)\n"
	  "  --limit N  at most N rows (default 100)" },
	{ "help", NULL, 0, 1, 0, "help [VERB]", "Help on hivectl or a verb." },
	{ NULL, NULL, 0, 0, 0, NULL, NULL },
};

static const char *const global_help =
    "Options for every verb:\n"
    "  --json                   print the API's JSON (one document)\n"
    "  --url URL                hived's API (else HIVE_URL, else the\n"
    "                           config's http key)\n"
    "  --token-file FILE        the bearer token (else HIVE_TOKEN_FILE,\n"
    "                           else the config's token_file key)\n"
    "  --config FILE            read http and token_file there (default\n"
    "                           " CTL_DEFAULT_CONF ")\n"
    "  --http-timeout DURATION  bound on one request (default 30s)\n"
    "  -h, --help               help\n"
    "  -V, --version            hivectl's version\n"
    "DURATION: a number with ms, s, m or h (bare: milliseconds).\n";

static const char *const exit_help =
    "Exit: 0 ok, 1 the task or action failed, 2 usage, 3 hived\n"
    "unreachable (or 5xx), 4 refused: token.\n";

enum {
	LO_URL = 256, LO_TOKEN_FILE, LO_CONFIG, LO_JSON, LO_HTTP_TIMEOUT,
	LO_PRIORITY, LO_AGENT, LO_ID, LO_WAIT, LO_TIMEOUT, LO_STATE,
	LO_CAPABILITY, LO_WORKFLOW, LO_SINCE, LO_LIMIT, LO_CODE, LO_ALL,
	LO_FOLLOW, LO_LINES, LO_BY,
};

static const struct option longopts[] = {
	{ "url", required_argument, NULL, LO_URL },
	{ "token-file", required_argument, NULL, LO_TOKEN_FILE },
	{ "config", required_argument, NULL, LO_CONFIG },
	{ "json", no_argument, NULL, LO_JSON },
	{ "http-timeout", required_argument, NULL, LO_HTTP_TIMEOUT },
	{ "priority", required_argument, NULL, LO_PRIORITY },
	{ "agent", required_argument, NULL, LO_AGENT },
	{ "id", required_argument, NULL, LO_ID },
	{ "wait", no_argument, NULL, LO_WAIT },
	{ "timeout", required_argument, NULL, LO_TIMEOUT },
	{ "state", required_argument, NULL, LO_STATE },
	{ "capability", required_argument, NULL, LO_CAPABILITY },
	{ "workflow", required_argument, NULL, LO_WORKFLOW },
	{ "since", required_argument, NULL, LO_SINCE },
	{ "limit", required_argument, NULL, LO_LIMIT },
	{ "code", required_argument, NULL, LO_CODE },
	{ "all", no_argument, NULL, LO_ALL },
	{ "follow", no_argument, NULL, LO_FOLLOW },
	{ "lines", required_argument, NULL, LO_LINES },
	{ "by", required_argument, NULL, LO_BY },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* The option bit of a verb option, for the per-verb check. */
static unsigned
opt_bit(int lo)
{
	return lo >= LO_PRIORITY && lo <= LO_BY ?
	    1u << (unsigned)(lo - LO_PRIORITY) : 0;
}

static const char *
opt_name(unsigned bit)
{
	for (const struct option *o = longopts; o->name != NULL; o++)
		if (opt_bit(o->val) == bit)
			return o->name;
	return "?";
}

static const struct ctl_verb *
verb_find(const char *name)
{
	for (const struct ctl_verb *v = verbs; v->name != NULL; v++)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

static void
help_all(FILE *f)
{
	fprintf(f, "usage: hivectl [OPTIONS] VERB [ARGS]\n\nVerbs:\n");
	for (const struct ctl_verb *v = verbs; v->name != NULL; v++) {
		const char *s = v->synopsis;

		/* The first line of each synopsis. */
		fprintf(f, "  %.*s\n", (int)strcspn(s, "\n"), s);
	}
	fprintf(f, "\n%s\n%s\nhivectl help VERB, or hivectl VERB --help: "
	    "one verb.\n", global_help, exit_help);
}

static void
help_verb(const struct ctl_verb *v, FILE *f)
{
	fprintf(f, "usage: hivectl %s\n\n%s\n\n%s\n%s", v->synopsis, v->help,
	    global_help, exit_help);
}

int
ctl_usage(const struct ctl *c, const char *fmt, ...)
{
	va_list ap;

	fputs("hivectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (c != NULL && c->verb != NULL)
		fprintf(stderr, "\nTry 'hivectl %s --help'.\n", c->verb);
	else
		fputs("\nTry 'hivectl --help'.\n", stderr);
	return CTL_USAGE;
}

long long
ctl_parse_duration(const char *s)
{
	static const struct { const char *unit; long long ms; } units[] = {
		{ "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 },
	};
	char *end;
	long long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || v > 100LL * 24 * 3600 * 1000)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].unit) == 0)
			return v * units[i].ms;
	return -1;
}

/* A whole decimal number in lo..hi, or -1 (lo >= 0). */
static long
parse_num(const char *s, long lo, long hi)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		return -1;
	return v;
}

/* One option into c; CTL_OK or CTL_USAGE after saying why. */
static int
take_option(struct ctl *c, int o, const char *arg)
{
	c->given |= opt_bit(o);
	switch (o) {
	case LO_URL: c->url_opt = arg; break;
	case LO_TOKEN_FILE: c->token_file_opt = arg; break;
	case LO_CONFIG: c->config_opt = arg; break;
	case LO_JSON: c->json = 1; break;
	case LO_HTTP_TIMEOUT:
		if ((c->http_timeout_ms = ctl_parse_duration(arg)) <= 0)
			return ctl_usage(c, "--http-timeout: '%s' is not a "
			    "duration above 0 (500ms, 10s, 2m)", arg);
		break;
	case LO_PRIORITY:
		if ((c->priority = parse_num(arg, 0, 2)) < 0)
			return ctl_usage(c, "--priority: '%s' is not 0, 1 or 2",
			    arg);
		break;
	case LO_AGENT: c->agent = arg; break;
	case LO_ID: c->id = arg; break;
	case LO_WAIT: c->wait = 1; break;
	case LO_TIMEOUT:
		if ((c->timeout_ms = ctl_parse_duration(arg)) < 0)
			return ctl_usage(c, "--timeout: '%s' is not a duration "
			    "(500ms, 10s, 2m; bare: milliseconds)", arg);
		break;
	case LO_STATE: c->state = arg; break;
	case LO_CAPABILITY: c->capability = arg; break;
	case LO_WORKFLOW: c->workflow = arg; break;
	case LO_SINCE: c->since = arg; break;
	case LO_LIMIT:
		if ((c->limit = parse_num(arg, 1, 1000000)) < 0)
			return ctl_usage(c, "--limit: '%s' is not a number "
			    "1..1000000", arg);
		break;
	case LO_CODE: c->code = arg; break;
	case LO_ALL: c->all = 1; break;
	case LO_FOLLOW: c->follow = 1; break;
	case LO_LINES:
		if ((c->lines = parse_num(arg, 1, 100000)) < 0)
			return ctl_usage(c, "-n: '%s' is not a number 1..100000",
			    arg);
		break;
	case LO_BY: c->by = arg; break;
	default:
		return CTL_USAGE;
	}
	return CTL_OK;
}

/* The options of argv into c, the positionals left in argv[optind..]. */
static int
parse_options(struct ctl *c, int argc, char **argv, int *help, int *version)
{
	int o, r;

	opterr = 0;
	while ((o = getopt_long(argc, argv, ":hVfn:", longopts, NULL)) != -1) {
		/* -f and -n are --follow and --lines, as tail has them. */
		if (o == 'f')
			o = LO_FOLLOW;
		else if (o == 'n')
			o = LO_LINES;
		if (o == 'h')
			*help = 1;
		else if (o == 'V')
			*version = 1;
		else if (o == '?')
			return ctl_usage(NULL, "unknown option '%s'",
			    argv[optind - 1]);
		else if (o == ':')
			return ctl_usage(NULL, "option '%s' needs a value",
			    argv[optind - 1]);
		else if ((r = take_option(c, o, optarg)) != CTL_OK)
			return r;
	}
	return CTL_OK;
}

/* What the verb's row allows: options, number of arguments. */
static int
check_verb(struct ctl *c, const struct ctl_verb *v)
{
	unsigned extra = c->given & ~v->opts;

	if (extra != 0)
		return ctl_usage(c, "%s takes no --%s", v->name,
		    opt_name(extra & -extra));
	if (c->nargs < v->min_args)
		return ctl_usage(c, "%s needs %s", v->name,
		    v->min_args == 1 ? "an argument" : "more arguments");
	if (c->nargs > v->max_args)
		return ctl_usage(c, "%s: unexpected argument '%s'", v->name,
		    c->args[v->max_args]);
	if ((c->given & OPT_TIMEOUT) && (v->opts & OPT_WAIT) && !c->wait)
		return ctl_usage(c, "--timeout needs --wait");
	return CTL_OK;
}

static void
ctl_free(struct ctl *c)
{
	ctl_http_free(c);
	ctl_conf_free(c);
}

int
main(int argc, char **argv)
{
	struct ctl c;
	const struct ctl_verb *v;
	int help = 0, version = 0, r;

	memset(&c, 0, sizeof(c));
	c.timeout_ms = -1;
	c.priority = -1;
	if ((r = parse_options(&c, argc, argv, &help, &version)) != CTL_OK)
		return r;
	if (version) {
		printf("hivectl %s\n", HIVE_VERSION);
		return CTL_OK;
	}
	if (optind >= argc) {
		if (help) {
			help_all(stdout);
			return CTL_OK;
		}
		return ctl_usage(NULL, "no verb given");
	}
	c.verb = argv[optind];
	c.args = argv + optind + 1;
	c.nargs = argc - optind - 1;
	if ((v = verb_find(c.verb)) == NULL) {
		c.verb = NULL;
		return ctl_usage(&c, "unknown verb '%s'", argv[optind]);
	}
	if (v->fn == NULL) {            /* help [VERB] */
		const struct ctl_verb *hv;

		if (c.nargs == 0) {
			help_all(stdout);
			return CTL_OK;
		}
		if ((hv = verb_find(c.args[0])) == NULL)
			return ctl_usage(NULL, "unknown verb '%s'", c.args[0]);
		help_verb(hv, stdout);
		return CTL_OK;
	}
	if (help) {
		help_verb(v, stdout);
		return CTL_OK;
	}
	if ((r = check_verb(&c, v)) != CTL_OK)
		return r;
	if ((r = ctl_conf_resolve(&c)) == CTL_OK)
		r = v->fn(&c);
	ctl_free(&c);
	return r;
}
