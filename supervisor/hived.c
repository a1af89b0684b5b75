/*
 * hived.c - the daemon around the agents: one libev loop, its signals, the
 * housekeeping timer, reload, graceful stop, and what systemd is told.
 *
 * Signal handlers do nothing but wake the loop (ev_signal); all the work
 * happens in these callbacks, on the loop, like everything else.
 */
#include "hived.h"
#include "events.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <netdb.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"

static void sup_signal_cb(struct ev_loop *, ev_signal *, int);
static void sup_hk_cb(struct ev_loop *, ev_timer *, int);

/* Seconds between two malloc_trim calls (sup_trim). */
#define SUP_TRIM_S 60

/*
 * The token: the first line of path, without surrounding blanks, into buf
 * (len bytes with its NUL).  The whole line is read: one that does not
 * fit is refused, never cut (a cut token would accept a prefix of the
 * real one and refuse the real one).  0, or -1 (logged, naming the file).
 */
int
sup_read_token(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	struct stat st;
	char *line = NULL, *s;
	size_t cap = 0, n;
	int ret = -1;

	if (f == NULL) {
		log_warn("token_file %s", path);
		return -1;
	}
	if (fstat(fileno(f), &st) == -1) {
		log_warn("token_file %s", path);
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		log_warnx("token_file %s: is a directory, not a file", path);
		goto out;
	}
	if (getline(&line, &cap, f) == -1) {
		if (ferror(f))
			log_warn("token_file %s", path);
		else
			log_warnx("token_file %s: empty", path);
		goto out;
	}
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
		line[--n] = '\0';
	for (s = line; *s == ' ' || *s == '\t'; s++)
		;
	if (*s == '\0') {
		log_warnx("token_file %s: empty", path);
		goto out;
	}
	if (strlen(s) >= len) {
		log_warnx("token_file %s: the token is %zu bytes long, more than "
		    "the %zu allowed", path, strlen(s), len - 1);
		goto out;
	}
	memcpy(buf, s, strlen(s) + 1);
	ret = 0;
out:
	free(line);
	fclose(f);
	return ret;
}

/* Write the HTTP port for tests and scripts: to a temporary name, then
 * renamed, so a reader never sees half a number. */
static int
write_port_file(const char *path, unsigned port)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "we")) == NULL) {
		log_warn("port file %s", tmp);
		return -1;
	}
	fprintf(f, "%u\n", port);
	if (fclose(f) != 0 || rename(tmp, path) == -1) {
		log_warn("port file %s", path);
		return -1;
	}
	return 0;
}

/*
 * Each worker costs a socketpair end for its life and an exec pipe until
 * it has exec'd, and a start forks every worker within a second or so:
 * 500 instances would pass a soft limit of 1024.  Raise the soft limit to
 * the hard one (systemd's own advice); workers get the original back
 * (sup->nofile), for programs that still use select().
 */
static void
sup_limits_init(struct sup *sup)
{
	if (getrlimit(RLIMIT_NOFILE, &sup->nofile) == 0 &&
	    sup->nofile.rlim_cur < sup->nofile.rlim_max) {
		struct rlimit rl = sup->nofile;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("raise RLIMIT_NOFILE");
	}
}

/*
 * Signals wake the loop (ev_signal); children are reaped by ev_child.
 * hived is a child subreaper: what a dead worker leaves running (its
 * handler and the handler's group) becomes hived's child, not init's,
 * and is killed when that worker is reaped (spawn.c, "Left behind").
 */
static void
sup_signals_init(struct sup *sup)
{
	ev_signal_init(&sup->sig_term, sup_signal_cb, SIGTERM);
	ev_signal_init(&sup->sig_int, sup_signal_cb, SIGINT);
	ev_signal_init(&sup->sig_hup, sup_signal_cb, SIGHUP);
	ev_signal_init(&sup->sig_usr1, sup_signal_cb, SIGUSR1);
	sup->sig_term.data = sup->sig_int.data = sup;
	sup->sig_hup.data = sup->sig_usr1.data = sup;
	ev_signal_start(sup->loop, &sup->sig_term);
	ev_signal_start(sup->loop, &sup->sig_int);
	ev_signal_start(sup->loop, &sup->sig_hup);
	ev_signal_start(sup->loop, &sup->sig_usr1);
	ev_child_init(&sup->child, sup_spawn_child_cb, 0, 0);
	sup->child.data = sup;
	ev_child_start(sup->loop, &sup->child);
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		log_warn("PR_SET_CHILD_SUBREAPER");
}

/* The housekeeping timer, every SUP_HOUSEKEEPING_S or more often when
 * systemd's watchdog asks for it. */
static void
sup_hk_init(struct sup *sup)
{
	double hk = SUP_HOUSEKEEPING_S;
	uint64_t usec = 0;

	/* systemd wants a ping at least every WATCHDOG_USEC; twice as often
	 * leaves room for a slow iteration. */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		sup->watchdog_usec = usec;
		if (usec / 2e6 < hk)
			hk = usec / 2e6;
	}
	ev_timer_init(&sup->hk, sup_hk_cb, hk, hk);
	sup->hk.data = sup;
	/* Lowest priority: in an iteration that also has heartbeats to read
	 * (after a stall), they are read before deadlines are judged. */
	ev_set_priority(&sup->hk, EV_MINPRI);
	ev_timer_start(sup->loop, &sup->hk);
}

/* An agent for each section, not started yet (sup_run does). */
static int
sup_agents_init(struct sup *sup, const struct hive_conf *conf)
{
	sup_spawn_init(sup);
	for (size_t i = 0; i < conf->nagents; i++) {
		struct sup_agent *a = sup_agent_new(sup, sup->cref,
		    &conf->agents[i]);

		if (a == NULL) {
			log_warnx("agent=%s: out of memory", conf->agents[i].name);
			return -1;
		}
		TAILQ_INSERT_TAIL(&sup->agents, a, entry);
	}
	return 0;
}

/* The HTTP control endpoint if configured, and its port for tests. */
static int
sup_http_init(struct sup *sup, const struct hive_conf *conf)
{
	if (conf->http[0] == '\0')
		return 0;
	if ((sup->http = sup_http_new(sup, conf->http)) == NULL)
		return -1;
	if (sup->port_file != NULL &&
	    write_port_file(sup->port_file, sup_http_port(sup->http)) == -1)
		return -1;
	return 0;
}

/* 1 if the first address host resolves to (as http.c binds it) is a
 * loopback one, 0 if not, -1 if it does not resolve. */
static int
host_is_loopback(const char *host)
{
	struct addrinfo hints, *res = NULL;
	int lo = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
		return -1;
	if (res->ai_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)res->ai_addr;

		lo = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	} else if (res->ai_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)res->ai_addr;
		const uint8_t *b = s6->sin6_addr.s6_addr;

		lo = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && b[12] == 127);
	}
	freeaddrinfo(res);
	return lo;
}

/*
 * What an operator should hear once, at start: the API reachable from
 * other hosts (the token crosses the network in clear: the advice is a
 * TLS proxy), a token file others may read, a token short enough to
 * guess.  Warnings only: each can be a choice.
 */
static void
sup_warn_exposure(struct sup *sup, const struct hive_conf *conf)
{
	char host[64], *colon;
	struct stat st;

	if (conf->http[0] != '\0') {
		snprintf(host, sizeof(host), "%s", conf->http);
		if ((colon = strrchr(host, ':')) != NULL)
			*colon = '\0';
		if (host[0] == '[' && host[strlen(host) - 1] == ']') {
			memmove(host, host + 1, strlen(host));
			host[strlen(host) - 1] = '\0';
		}
		if (host_is_loopback(host) == 0)
			log_warnx("http = %s is not a loopback address: the API "
			    "and its bearer token travel in clear to any host "
			    "that reaches it; bind 127.0.0.1 and put a TLS "
			    "proxy in front", conf->http);
	}
	if (conf->token_file == NULL || *conf->token_file == '\0')
		return;
	if (stat(conf->token_file, &st) == 0 && (st.st_mode & 077) != 0)
		log_warnx("token_file %s is open to group or others (mode "
		    "%04o): chmod 600 it", conf->token_file,
		    (unsigned)(st.st_mode & 07777));
	if (strlen(sup->token) < SUP_TOKEN_MIN)
		log_warnx("token_file %s: the token is %zu bytes, fewer than "
		    "%d: easy to guess; use %d random bytes or more (e.g. "
		    "openssl rand -hex 32)", conf->token_file, strlen(sup->token),
		    SUP_TOKEN_MIN, 2 * SUP_TOKEN_MIN);
}

struct sup *
sup_new(const char *conf_path, struct hive_conf *conf, const char *port_file)
{
	struct sup *sup = calloc(1, sizeof(*sup));

	if (sup == NULL) {
		conf_free(conf);
		return NULL;
	}
	TAILQ_INIT(&sup->agents);
	sup->devnull = -1;
	sup->port_file = port_file;
	if ((sup->conf_path = strdup(conf_path)) == NULL ||
	    (sup->cref = sup_cref_new(conf)) == NULL) {
		conf_free(conf);
		goto err;
	}
	sup->loop = ev_default_loop(EVFLAG_AUTO);
	if (sup->loop == NULL) {
		log_warnx("cannot initialise libev");
		goto err;
	}
	sup->started = ev_now(sup->loop);
	signal(SIGPIPE, SIG_IGN);
	sup_limits_init(sup);
	if ((sup->devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1) {
		log_warn("/dev/null");
		goto err;
	}
	if ((sup->mem = sup_memstore_new()) == NULL)
		goto err;
	if (conf->token_file != NULL && *conf->token_file &&
	    sup_read_token(conf->token_file, sup->token, sizeof(sup->token)) == -1)
		goto err;
	sup_signals_init(sup);
	sup_hk_init(sup);
	if ((sup->events = sup_events_new(sup)) == NULL)
		goto err;
	if (sup_agents_init(sup, conf) == -1 || sup_http_init(sup, conf) == -1)
		goto err;
	snprintf(sup->http_started, sizeof(sup->http_started), "%s", conf->http);
	sup_warn_exposure(sup, conf);
	return sup;
err:
	sup_free(sup);
	return NULL;
}

/*
 * After a graceful stop every worker has been reaped.  When start-up
 * fails half-way, workers may not have been forked yet.  Either way any
 * worker still alive is left to the EOF rule (spawn.c): its socketpair
 * closes with us.
 */
void
sup_free(struct sup *sup)
{
	struct sup_agent *a;

	if (sup == NULL)
		return;
	while ((a = TAILQ_FIRST(&sup->agents)) != NULL) {
		TAILQ_REMOVE(&sup->agents, a, entry);
		sup_agent_free(a);
	}
	sup_http_free(sup->http);
	sup_events_free(sup->events);    /* after: its streams have ended */
	sup_store_free(sup);
	sup_memstore_free(sup->mem);
	sup_cref_unref(sup->cref);
	if (sup->loop != NULL) {
		ev_timer_stop(sup->loop, &sup->hk);
		ev_signal_stop(sup->loop, &sup->sig_term);
		ev_signal_stop(sup->loop, &sup->sig_int);
		ev_signal_stop(sup->loop, &sup->sig_hup);
		ev_signal_stop(sup->loop, &sup->sig_usr1);
		ev_child_stop(sup->loop, &sup->child);
		ev_loop_destroy(sup->loop);
	}
	if (sup->devnull >= 0)
		close(sup->devnull);
	free(sup->conf_path);
	free(sup);
}

unsigned
sup_count_states(struct sup *sup, unsigned counts[SUP_ST_COUNT])
{
	struct sup_agent *a;
	unsigned n = 0;

	memset(counts, 0, sizeof(unsigned) * SUP_ST_COUNT);
	TAILQ_FOREACH(a, &sup->agents, entry)
		for (unsigned i = 0; i < a->ninst; i++, n++)
			counts[a->inst[i]->fsm.state]++;
	return n;
}

void
sup_summary(struct sup *sup, char *buf, size_t len)
{
	unsigned c[SUP_ST_COUNT], nagents = 0;
	struct sup_agent *a;
	size_t off;
	int w;

	sup_count_states(sup, c);
	TAILQ_FOREACH(a, &sup->agents, entry)
		nagents += !a->removed;
	w = snprintf(buf, len, "%s%u agent%s: %u ready, %u busy, %u failed",
	    sup->held_all ? "stop-all: " : "", nagents, nagents == 1 ? "" : "s",
	    c[SUP_ST_READY], c[SUP_ST_BUSY], c[SUP_ST_FAILED]);
	off = w < 0 ? 0 : (size_t)w;
	/* The rest only when there are some: the line stays short. */
	for (int s = 0; s < SUP_ST_COUNT && off < len; s++) {
		if (s == SUP_ST_READY || s == SUP_ST_BUSY || s == SUP_ST_FAILED ||
		    c[s] == 0)
			continue;
		w = snprintf(buf + off, len - off, ", %u %s", c[s],
		    sup_state_name((enum sup_state)s));
		off += w < 0 ? 0 : (size_t)w;
	}
}

static void
sup_notify_status(struct sup *sup, int force)
{
	char line[sizeof(sup->status)];

	sup_summary(sup, line, sizeof(line));
	if (!force && strcmp(line, sup->status) == 0)
		return;
	memcpy(sup->status, line, sizeof(line));
	sd_notifyf(0, "STATUS=%s", line);
}

/*
 * Give the heap's free pages back to the system: glibc only returns the
 * top of the heap by itself, and a burst (start-up, a recorder batch, a
 * reload, a large HTTP answer) leaves free pages between live blocks that
 * would stay resident for the daemon's life.  Done once start-up is over
 * and then every SUP_TRIM_S by the housekeeping timer; it walks the free
 * lists of a heap of a few hundred KB, tens of microseconds.
 */
static void
sup_trim(struct sup *sup)
{
	malloc_trim(0);
	sup->trimmed = ev_now(sup->loop);
}

/*
 * Start-up is over when every instance has settled: ready or busy, or
 * somewhere it will stay without an operator (failed at the restart-rate
 * limit, crashed, asleep).  An instance whose worker or handler cannot
 * start reaches failed after its limit (handler failures count too,
 * agent.c), so READY=1 always comes, and one bad agent does not make
 * systemd fail the start of all the others.
 */
static int
sup_first_settled(struct sup *sup)
{
	struct sup_agent *a;

	TAILQ_FOREACH(a, &sup->agents, entry) {
		if (a->removed)
			continue;
		for (unsigned i = 0; i < a->ninst; i++)
			switch (a->inst[i]->fsm.state) {
			case SUP_ST_STARTING:
			case SUP_ST_RESTARTING:
			case SUP_ST_STOPPING:
				return 0;
			default:
				break;
			}
	}
	return 1;
}

void
sup_state_changed(struct sup *sup)
{
	if (sup->stopping) {
		if (sup->nchildren == 0)
			sup_store_stop(sup);
		return;
	}
	if (!sup->ready_sent && sup_first_settled(sup)) {
		char line[sizeof(sup->status)];

		sup->ready_sent = 1;
		sup_summary(sup, line, sizeof(line));
		memcpy(sup->status, line, sizeof(line));
		sd_notifyf(0, "READY=1\nSTATUS=%s", line);
		log_info("ready %s", line);
		sup_trim(sup);
	}
}

/*
 * The new configuration, loaded and validated whole, or NULL when it is
 * bad and the running one stays: every error logged, and listed in
 * errs for the API.
 */
static struct sup_cref *
reload_load(struct sup *sup, struct conf_errors *errs)
{
	struct hive_conf *nc;
	struct sup_cref *ncref;

	nc = conf_load_list(sup->conf_path, errs);
	for (size_t i = 0; i < errs->n; i++)
		log_warnx("reload: %s", errs->v[i]);
	if (nc == NULL) {
		log_warnx("reload failed: keeping the running configuration");
		return NULL;
	}
	if ((ncref = sup_cref_new(nc)) == NULL) {
		conf_free(nc);
		log_warnx("reload: out of memory");
		return NULL;
	}
	return ncref;
}

/*
 * [hive] keys a running hived cannot follow: redis, prefix and host name
 * where everything lives (the workers, and the recorder, reclaimer and
 * coordinator reading there); moving the workers alone would leave their
 * tasks unrecorded, moving all while the old workers drain would leave
 * those workers' last results where nobody reads.  postgres turned on or
 * off would start or end the whole record.  A restart does each in order
 * (drain, record what was read, start on the new settings).  0: none of
 * them changed; -1: the reload is refused, said so in the log.
 */
static int
reload_refused(const struct hive_conf *oc, const struct hive_conf *nc,
    char *why, size_t len)
{
	char keys[64] = "";

	if (strcmp(oc->redis, nc->redis) != 0)
		strcat(keys, ", redis");
	if (strcmp(oc->prefix, nc->prefix) != 0)
		strcat(keys, ", prefix");
	if (strcmp(oc->host, nc->host) != 0)
		strcat(keys, ", host");
	if ((oc->postgres[0] == '\0') != (nc->postgres[0] == '\0'))
		strcat(keys, nc->postgres[0] ? ", postgres (set)" :
		    ", postgres (emptied)");
	if (keys[0] == '\0')
		return 0;
	snprintf(why, len, "[hive] %s changed, which needs a restart of hived "
	    "(systemctl restart hived); keeping the running configuration",
	    keys + 2);
	log_warnx("reload refused: %s", why);
	return -1;
}

/* The address the API listens on, "host:port" with the port it got. */
static void
http_listening(struct sup *sup, char *buf, size_t len)
{
	const char *colon = strrchr(sup->http_started, ':');
	int hostlen = colon ? (int)(colon - sup->http_started) : 0;

	snprintf(buf, len, "%.*s:%u", hostlen, sup->http_started,
	    sup->http != NULL ? sup_http_port(sup->http) : 0);
}

/* The settings of hived itself: the token now, the http address only at
 * the next start (said so at every reload until then, against what the
 * API listens on), verbose if either asks for it, log_format and
 * log_time unless the command line set them (the workers get them when
 * they restart: both are CF_WORKER). */
static void
reload_settings(struct sup *sup, const struct hive_conf *nc)
{
	char addr[96];

	if (strcmp(sup->http_started, nc->http) != 0) {
		if (sup->http_started[0] == '\0')
			log_warnx("reload: http = %s needs a restart of hived (the "
			    "API is off)", nc->http);
		else {
			http_listening(sup, addr, sizeof(addr));
			log_warnx("reload: http = %s needs a restart of hived "
			    "(listening on %s)", nc->http[0] ? nc->http : "(off)",
			    addr);
		}
	}
	if (nc->token_file != NULL && *nc->token_file) {
		char tok[SUP_TOKEN_MAX];

		if (sup_read_token(nc->token_file, tok, sizeof(tok)) == 0)
			memcpy(sup->token, tok, sizeof(tok));
		else
			log_warnx("reload: keeping the previous token");
	} else {
		sup->token[0] = '\0';
	}
	log_set_verbose(log_verbose() || nc->verbose);
	log_set_format((enum log_format)(sup->log_format_arg >= 0 ?
	    sup->log_format_arg : nc->log_format));
	log_set_time((enum log_time)(sup->log_time_arg >= 0 ?
	    sup->log_time_arg : nc->log_time));
}

/*
 * Each agent against its new section: removed ones drain and stop, then
 * ncref becomes the running configuration, then added ones start,
 * changed ones restart (each instance drains and comes back with its
 * memory) and unchanged ones keep their workers.
 */
static void
reload_agents(struct sup *sup, struct sup_cref *ncref, char *sum, size_t len)
{
	const struct hive_conf *nc = ncref->conf;
	struct sup_agent *a;
	unsigned added = 0, changed = 0, removed = 0, same = 0;
	int all = sup->cref->conf->worker_hash != nc->worker_hash;

	TAILQ_FOREACH(a, &sup->agents, entry)
		if (conf_agent(nc, a->name) == NULL && !a->removed) {
			a->removed = 1;
			removed++;
			log_info("agent=%s removed: stopping", a->name);
			sup_agent_event(a, SUP_EV_STOP);
		}
	/* The cref switch comes first: spawns below read globals from it. */
	sup_cref_unref(sup->cref);
	sup->cref = ncref;
	for (size_t i = 0; i < nc->nagents; i++) {
		const struct hive_agent_conf *ac = &nc->agents[i];

		if ((a = sup_agent_find(sup, ac->name)) == NULL) {
			if ((a = sup_agent_new(sup, ncref, ac)) == NULL) {
				log_warnx("agent=%s: out of memory", ac->name);
				continue;
			}
			TAILQ_INSERT_TAIL(&sup->agents, a, entry);
			added++;
			log_info("agent=%s added", a->name);
			sup_agent_start(a);
			continue;
		}
		if (a->removed || all || a->conf->hash != ac->hash) {
			changed++;
			log_info("agent=%s changed: restarting", a->name);
			sup_agent_reconfigure(a, ncref, ac, 1);
		} else {
			same++;
			sup_agent_reconfigure(a, ncref, ac, 0);
		}
	}
	snprintf(sum, len, "added=%u changed=%u removed=%u unchanged=%u",
	    added, changed, removed, same);
	log_info("reload done %s", sum);
}

/*
 * SIGHUP and POST /reload, one path.  The file is loaded and validated
 * whole before anything changes; a bad one, or one that changes what
 * only a restart can (reload_refused), is logged and the running
 * configuration stays.  Then hived's own settings, the agents
 * (reload_agents) and the record side (sup_store_reload) change.  res
 * (may be NULL) says what happened; its errors are the caller's to free
 * (sup_reload_res_free).
 */
int
sup_reload(struct sup *sup, struct sup_reload_res *res)
{
	struct sup_reload_res local;
	struct sup_cref *ncref, *old;
	struct timespec ts;

	if (res == NULL)
		res = &local;
	memset(res, 0, sizeof(*res));
	if (sup->stopping) {
		res->status = SUP_RELOAD_STOPPING;
		snprintf(res->message, sizeof(res->message), "hived is stopping");
		log_info("reload ignored: stopping");
		return -1;
	}
	/* sd_notify(3): MONOTONIC_USEC is CLOCK_MONOTONIC, which is what
	 * systemd compares it with (ev_time() is the wall clock). */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL, sup->conf_path);
	log_info("reload file=%s", sup->conf_path);
	if ((ncref = reload_load(sup, &res->errors)) == NULL) {
		res->status = SUP_RELOAD_INVALID;
		snprintf(res->message, sizeof(res->message), "%s: %zu error%s; "
		    "keeping the running configuration", sup->conf_path,
		    res->errors.n, res->errors.n == 1 ? "" : "s");
		goto keep;
	}
	if (reload_refused(sup->cref->conf, ncref->conf, res->message,
	    sizeof(res->message)) == -1) {
		res->status = SUP_RELOAD_REFUSED;
		sup_cref_unref(ncref);
		goto keep;
	}
	/* The old configuration lives until the record side has seen it. */
	old = sup_cref_ref(sup->cref);
	reload_settings(sup, ncref->conf);
	reload_agents(sup, ncref, res->message, sizeof(res->message));
	sup_store_reload(sup, old->conf);
	sup_cref_unref(old);
	sup_store_queues(sup);
	sup_state_changed(sup);
	sd_notifyf(0, "READY=1\nSTATUS=reloaded");
	sup_notify_status(sup, 1);
	if (res == &local)
		sup_reload_res_free(res);
	return 0;
keep:
	sd_notify(0, "READY=1");
	sup_notify_status(sup, 1);
	if (res == &local)
		sup_reload_res_free(res);
	return -1;
}

void
sup_reload_res_free(struct sup_reload_res *res)
{
	if (res != NULL)
		conf_errors_free(&res->errors);
}

/*
 * SIGTERM/SIGINT: stop taking work and stop every worker.  Each live
 * worker gets CONTROL drain and stop_timeout to finish its tasks, then
 * SIGKILL (the grace timer is the instance timer: agent.c).  The loop ends
 * once every child is reaped (sup_state_changed).
 */
void
sup_shutdown(struct sup *sup)
{
	struct sup_agent *a;

	if (sup->stopping) {
		log_info("already stopping, children=%u", sup->nchildren);
		return;
	}
	sup->stopping = 1;
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
	log_info("stopping children=%u timeout_ms=%u", sup->nchildren,
	    sup->cref->conf->stop_timeout_ms);
	TAILQ_FOREACH(a, &sup->agents, entry)
		sup_agent_event(a, SUP_EV_STOP);
	sup_state_changed(sup);
}

/*
 * POST /stop-all: every instance an operator's stop (SUP_EV_OPSTOP):
 * drained, SIGKILLed at bound_ms (0: stop_timeout), then STOPPED and
 * held; hived goes on serving, the record and the memory are kept.
 * STATUS= says so until start-all.  Returns the instances it applied to.
 */
unsigned
sup_stop_all(struct sup *sup, unsigned bound_ms, const char *who)
{
	struct sup_agent *a;
	unsigned n = 0;

	log_warnx("stop-all by %s: stopping every instance timeout_ms=%u", who,
	    bound_ms > 0 ? bound_ms : sup->cref->conf->stop_timeout_ms);
	sup->held_all = 1;
	TAILQ_FOREACH(a, &sup->agents, entry)
		for (unsigned i = 0; i < a->ninst; i++) {
			a->inst[i]->grace_ms = bound_ms;
			n += (unsigned)sup_inst_event(a->inst[i], SUP_EV_OPSTOP, 0);
		}
	log_info("stop-all by %s: stopping=%u", who, n);
	sup_notify_status(sup, 1);
	return n;
}

/* Stopped by an operator: held, or on its way there. */
static int
inst_operator_stopped(const struct sup_inst *in)
{
	return (in->fsm.state == SUP_ST_STOPPED && in->held) ||
	    (in->fsm.state == SUP_ST_STOPPING &&
	    (in->fsm.after == SUP_AFTER_HOLD ||
	    in->fsm.after == SUP_AFTER_DRAIN));
}

/*
 * POST /start-all: an operator's start (SUP_EV_OPSTART) for every
 * instance an operator stopped (stop-all, stop, drain), whatever it was
 * before; nothing else is touched (an agent asleep by autostart = no
 * stays asleep).  Returns the instances it applied to.
 */
unsigned
sup_start_all(struct sup *sup, const char *who)
{
	struct sup_agent *a;
	unsigned n = 0;

	log_info("start-all by %s", who);
	sup->held_all = 0;
	TAILQ_FOREACH(a, &sup->agents, entry) {
		if (a->removed)
			continue;
		for (unsigned i = 0; i < a->ninst; i++)
			if (!a->inst[i]->retired &&
			    inst_operator_stopped(a->inst[i]))
				n += (unsigned)sup_inst_event(a->inst[i],
				    SUP_EV_OPSTART, 0);
	}
	log_info("start-all by %s: starting=%u", who, n);
	sup_notify_status(sup, 1);
	return n;
}

static void
sup_log_status(struct sup *sup)
{
	struct sup_agent *a;
	char line[sizeof(sup->status)];

	sup_summary(sup, line, sizeof(line));
	log_info("status %s children=%u memory_bytes=%zu", line,
	    sup->nchildren, sup_memstore_bytes(sup->mem));
	sup_store_log_status(sup);
	TAILQ_FOREACH(a, &sup->agents, entry)
		for (unsigned i = 0; i < a->ninst; i++)
			sup_inst_log_status(a->inst[i]);
}

static void
sup_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct sup *sup = w->data;

	switch (w->signum) {
	case SIGTERM:
	case SIGINT:
		log_info("signal=%s", w->signum == SIGTERM ? "TERM" : "INT");
		sup_shutdown(sup);
		break;
	case SIGHUP:
		sup_reload(sup, NULL);
		break;
	case SIGUSR1:
		sup_log_status(sup);
		break;
	}
}

/*
 * The housekeeping timer (like Redis' serverCron): heartbeat deadlines,
 * freeing what reload retired, the systemd watchdog and STATUS=.
 */
static void
sup_hk_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct sup *sup = w->data;
	ev_tstamp now = ev_now(loop);
	struct sup_agent *a, *next;

	TAILQ_FOREACH(a, &sup->agents, entry) {
		const struct hive_agent_conf *c = a->conf;

		for (unsigned i = 0; i < a->ninst; i++) {
			struct sup_inst *in = a->inst[i];
			enum sup_state s = in->fsm.state;

			/* A drain has no grace timer: the deadline is
			 * what ends a worker that hangs while draining. */
			if (in->pid <= 0 || c->heartbeat_deadline_ms == 0 ||
			    (s != SUP_ST_STARTING && s != SUP_ST_READY &&
			    s != SUP_ST_BUSY && !(s == SUP_ST_STOPPING &&
			    in->fsm.after == SUP_AFTER_DRAIN)))
				continue;
			if ((now - in->last_hb) * 1000. < c->heartbeat_deadline_ms)
				continue;
			log_warnx("agent=%s pid=%ld heartbeat deadline missed "
			    "age_ms=%.0f deadline_ms=%u", in->label, (long)in->pid,
			    (now - in->last_hb) * 1000., c->heartbeat_deadline_ms);
			sup_inst_event(in, SUP_EV_DEADLINE, 0);
		}
	}
	for (a = TAILQ_FIRST(&sup->agents); a != NULL; a = next) {
		next = TAILQ_NEXT(a, entry);
		sup_agent_collect(a);
		if (sup_agent_gone(a)) {
			log_info("agent=%s gone", a->name);
			TAILQ_REMOVE(&sup->agents, a, entry);
			sup_agent_free(a);
		}
	}
	sup_store_tick(sup);
	if (sup->watchdog_usec > 0)
		sd_notify(0, "WATCHDOG=1");
	if (sup->ready_sent && !sup->stopping)
		sup_notify_status(sup, 0);
	if (sup->ready_sent && now - sup->trimmed >= SUP_TRIM_S)
		sup_trim(sup);
}

int
sup_run(struct sup *sup)
{
	log_info("started pid=%ld agents=%zu config=%s", (long)getpid(),
	    sup->cref->conf->nagents, sup->conf_path);
	/* The agents start once Redis and PostgreSQL have been looked at
	 * (store.c); without agents, READY=1 may go out at once. */
	if (sup_store_start(sup) < 0)
		return 1;
	if (TAILQ_EMPTY(&sup->agents))
		sup_state_changed(sup);
	ev_run(sup->loop, 0);
	log_info("stopped");
	return sup->exit_code;
}
