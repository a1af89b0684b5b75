/*
 * main.c - hived's command line.
 *
 *   hived [-v] [--config FILE] [--port-file FILE] [--log-format text|json]
 *         [--log-time auto|yes|no]
 *   hived --check-config FILE
 *   hived --help | --version
 *
 * Start-up may die (fatal): a bad configuration, a port in use, another
 * hived with the same prefix and host (lock_instance).  Once the
 * loop runs, hived never exits but for SIGTERM/SIGINT (hived.c).
 */
#include "hived.h"
#include "hive_version.h"

#include <sys/file.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#ifndef HIVE_CONFDIR
#define HIVE_CONFDIR "/etc/hive"
#endif
#define HIVED_DEFAULT_CONF HIVE_CONFDIR "/hive.conf"

#ifndef HIVE_LIBEXECDIR
#define HIVE_LIBEXECDIR "/usr/local/libexec"
#endif

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: hived [-v] [--config FILE] [--port-file FILE]\n"
	    "             [--log-format text|json] [--log-time auto|yes|no]\n"
	    "       hived --check-config FILE\n"
	    "       hived --help | --version\n"
	    "\n"
	    "  -c, --config FILE        configuration (default %s)\n"
	    "  -n, --check-config FILE  validate FILE (and its agents.d/), print\n"
	    "                           every error as file:line, exit 0 or 1\n"
	    "  -p, --port-file FILE     write the HTTP port there once listening\n"
	    "  -v, --verbose            debug logging (and -v for the workers)\n"
	    "      --log-format FORMAT  text or json: log_format =, over the\n"
	    "                           configuration's (workers' lines too)\n"
	    "      --log-time WHEN      auto, yes or no: log_time =, likewise\n"
	    "  -h, --help               this text\n"
	    "  -V, --version            print the version\n"
	    "\n"
	    "Signals: TERM/INT stop gracefully, HUP reloads the configuration,\n"
	    "USR1 logs one status line per agent instance.\n",
	    HIVED_DEFAULT_CONF);
}

/*
 * The default worker = (docs/CONFIG.md), the first executable one of:
 * beside hived, in the build tree's layout (so that
 * build/supervisor/hived finds build/worker/hive-worker), then where
 * `meson install` puts it (LIBEXECDIR/hive, off PATH); its real path, or
 * NULL when there is none (the configuration's own default, the same
 * LIBEXECDIR/hive/hive-worker, then stands).  Found here, once, so that
 * the parser touches no file but the configuration's.
 */
static char *
default_worker(void)
{
	char exe[PATH_MAX], *cand[3] = { NULL }, *ret = NULL;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	size_t i;

	if (n > 0) {
		char *slash;

		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL)
			*slash = '\0';
		if (asprintf(&cand[0], "%s/hive-worker", exe) < 0)
			cand[0] = NULL;
		if (asprintf(&cand[1], "%s/../worker/hive-worker", exe) < 0)
			cand[1] = NULL;
	}
	cand[2] = strdup(HIVE_LIBEXECDIR "/hive/hive-worker");
	for (i = 0; i < 3 && ret == NULL; i++)
		if (cand[i] != NULL && access(cand[i], X_OK) == 0)
			ret = realpath(cand[i], NULL);
	for (i = 0; i < 3; i++)
		free(cand[i]);
	return ret;
}

/*
 * One hived per prefix and host: two would both serve the API (had the
 * port been shareable) and run two workers for every instance.  The lock
 * is a flock'd file, in the first of: $RUNTIME_DIRECTORY (systemd's
 * RuntimeDirectory=, /run/hive), /run/hive if writable, /tmp; named
 * after the prefix and host.  The kernel drops it when hived ends, however
 * it ends; the file stays (removing it would race with a starting hived).
 * The descriptor is kept open (CLOEXEC: no worker inherits it); it holds
 * hived's pid, for the message a second one prints.  Exits on failure.
 */
static void
lock_instance(const struct hive_conf *conf)
{
	const char *env = getenv("RUNTIME_DIRECTORY");
	char dir[PATH_MAX], path[PATH_MAX + 300], who[32];
	ssize_t n;
	int fd;

	if (env != NULL && *env == '/')
		snprintf(dir, sizeof(dir), "%.*s", (int)strcspn(env, ":"), env);
	else if (access("/run/hive", W_OK | X_OK) == 0)
		snprintf(dir, sizeof(dir), "/run/hive");
	else
		snprintf(dir, sizeof(dir), "/tmp");
	/* prefix and host are [A-Za-z0-9._-] (config.c); a name too long for
	 * the file system gets the host's hash instead. */
	if (strlen(conf->prefix) + strlen(conf->host) < 200)
		snprintf(path, sizeof(path), "%s/hived-%s-%s.lock", dir,
		    conf->prefix, conf->host);
	else
		snprintf(path, sizeof(path), "%s/hived-%s-%016llx.lock", dir,
		    conf->prefix, (unsigned long long)hash_fnv1a(conf->host,
		    strlen(conf->host)));
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0644)) == -1)
		fatal("lock file %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK)
			fatal("lock file %s", path);
		n = pread(fd, who, sizeof(who) - 1, 0);
		who[n > 0 ? n : 0] = '\0';
		who[strcspn(who, "\n")] = '\0';
		fatalx("another hived (pid %s) runs with prefix=%s host=%s: "
		    "%s is locked; stop it first, or give this one another "
		    "prefix", who[0] ? who : "?", conf->prefix, conf->host, path);
	}
	snprintf(who, sizeof(who), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 ||
	    pwrite(fd, who, strlen(who), 0) != (ssize_t)strlen(who))
		log_warn("lock file %s: writing the pid", path);
	log_debug("lock file=%s", path);
}

/* conf_load with its errors sent through the log, one line each. */
static struct hive_conf *
load(const char *path)
{
	struct hive_conf *c;
	char *errs = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&errs, &len);

	if (f == NULL)
		fatal("open_memstream");
	c = conf_load(path, f);
	fclose(f);
	log_warnx_lines("config", errs);
	free(errs);
	return c;
}

/* --log-format, --log-time: the value (log.h's enum), or exit 2. */
static int
log_arg(const char *opt, const char *arg, int (*parse)(const char *),
    const char *what)
{
	int v = parse(arg);

	if (v == -1) {
		fprintf(stderr, "hived: --%s %s: %s is expected\n", opt, arg,
		    what);
		exit(2);
	}
	return v;
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", required_argument, NULL, 'n' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		/* Long only: 256 and up is no letter. */
		{ "log-format", required_argument, NULL, 256 },
		{ "log-time", required_argument, NULL, 257 },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf_path = HIVED_DEFAULT_CONF, *check = NULL;
	const char *port_file = NULL;
	struct hive_conf *conf;
	struct sup *sup;
	char *worker;
	int ch, verbose = 0, rc, log_format = -1, log_time = -1;

	/*
	 * glibc raises its mmap threshold to the largest block freed so far
	 * (up to 32 MB) and its trim threshold to twice that.  After the
	 * configuration's read buffer (1 MB, config.c) no free heap under
	 * 2 MB would go back to the system, and every large transient buffer
	 * (a reply, a memory frame) would stay resident in a daemon that
	 * runs for months.  Setting them turns the adjustment off: both stay
	 * at glibc's initial 128 KB, blocks that large are mmap'd and given
	 * back when freed, and a free heap top above it is returned.
	 */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	mallopt(M_TRIM_THRESHOLD, 128 * 1024);

	while ((ch = getopt_long(argc, argv, "c:n:p:vhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			conf_path = optarg;
			break;
		case 'n':
			check = optarg;
			break;
		case 'p':
			port_file = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 256:
			log_format = log_arg("log-format", optarg,
			    log_format_parse, "text or json");
			break;
		case 257:
			log_time = log_arg("log-time", optarg, log_time_parse,
			    "auto, yes or no");
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("hived %s\n", HIVE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	log_init("hived", verbose);
	/* Given on the command line, the format holds from the first line
	 * (a bad configuration's errors too), and over the file's. */
	if (log_format >= 0)
		log_set_format((enum log_format)log_format);
	if (log_time >= 0)
		log_set_time((enum log_time)log_time);
	/* A closed 0, 1 or 2 would be reused by the next open(): a socket
	 * could become a worker's stdin, a log line land in a socket. */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) == -1 && open("/dev/null", O_RDWR) != fd)
			fatal("/dev/null");

	if ((worker = default_worker()) != NULL &&
	    conf_set_worker_default(worker) != 0)
		fatalx("worker path %s is too long", worker);
	free(worker);

	if (check != NULL) {
		/* Errors as the parser writes them, for people and editors. */
		if ((conf = conf_load(check, stderr)) == NULL)
			return 1;
		printf("%s: ok, %zu agent%s\n", check, conf->nagents,
		    conf->nagents == 1 ? "" : "s");
		conf_free(conf);
		return 0;
	}

	if ((conf = load(conf_path)) == NULL)
		fatalx("configuration %s is not valid", conf_path);
	if (conf->verbose)
		log_set_verbose(1);
	if (log_format < 0)
		log_set_format((enum log_format)conf->log_format);
	if (log_time < 0)
		log_set_time((enum log_time)conf->log_time);
	lock_instance(conf);
	if ((sup = sup_new(conf_path, conf, port_file)) == NULL)
		fatalx("cannot start");
	sup->log_format_arg = log_format;
	sup->log_time_arg = log_time;
	rc = sup_run(sup);
	sup_free(sup);
	return rc;
}
