/*
 * dl.c - libpq and libmicrohttpd, loaded only when the configuration asks
 * for them.
 *
 * Linked in, the two cost every hived their pages whether it uses them or
 * not: libpq brings libssl, libcrypto, Kerberos and LDAP, libmicrohttpd
 * brings GnuTLS, p11-kit and nettle, whose constructors run before main.
 * That was 5 MB of the 8.5 MB RSS of a hived with 8 agents, no
 * `postgres =` and no `http =` (bench/README.md).  So hived links neither.
 * This file defines each libpq and MHD function that hived calls, with
 * the prototype of the library's own header (the compiler checks that it
 * matches), as a jump through a table that sup_dl_libpq and
 * sup_dl_microhttpd fill with dlopen + dlsym; the rest of hived calls
 * libpq and MHD as usual:
 *
 *   pg.c --PQsendQuery()--> dl.c: pq.PQsendQuery --> libpq.so.5
 *
 * hived.c loads a library at start-up when its setting is not empty, and
 * fails to start with the loader's message when it cannot; both settings
 * need a restart to change, so nothing is loaded later.  A call before its
 * library is loaded is a broken invariant: fatalx.
 *
 * A libpq or MHD function that hived calls and this file lacks fails the
 * link of hived (undefined reference): add it to the list and give it a
 * trampoline below.  Tests and benchmarks that compile pg.c or http.c
 * themselves link the real libraries and never see this file.
 */
#include "hived.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <string.h>

#include <libpq-fe.h>
#include <microhttpd.h>

#include "log.h"

/* The sonames hived was built against (Debian: libpq5, libmicrohttpd12);
 * a packager with other majors passes -DHIVE_LIBPQ_SONAME=... */
#ifndef HIVE_LIBPQ_SONAME
#define HIVE_LIBPQ_SONAME "libpq.so.5"
#endif
#ifndef HIVE_MHD_SONAME
#define HIVE_MHD_SONAME "libmicrohttpd.so.12"
#endif

#define PQ_FUNCS(X) \
	X(PQclear) X(PQconnectPoll) X(PQconnectStart) X(PQconsumeInput) \
	X(PQerrorMessage) X(PQfinish) X(PQflush) X(PQfreemem) \
	X(PQgetResult) X(PQgetvalue) X(PQisBusy) X(PQnotifies) \
	X(PQntuples) X(PQputCopyData) X(PQputCopyEnd) \
	X(PQresultErrorField) X(PQresultErrorMessage) X(PQresultStatus) \
	X(PQsendQuery) X(PQsendQueryParams) X(PQsetnonblocking) X(PQsocket) \
	X(PQstatus) X(PQunescapeBytea)

/* MHD_start_daemon and MHD_get_daemon_info are variadic: the trampolines
 * call MHD_start_daemon_va, and MHD_get_daemon_info without the extra
 * arguments, which the info types hived asks for do not take. */
#define MHD_FUNCS(X) \
	X(MHD_add_response_header) X(MHD_create_response_from_buffer) \
	X(MHD_destroy_response) X(MHD_get_connection_values) \
	X(MHD_get_daemon_info) X(MHD_get_timeout) \
	X(MHD_lookup_connection_value) X(MHD_queue_response) X(MHD_run) \
	X(MHD_start_daemon_va) X(MHD_stop_daemon)

#define DL_FIELD(f) __typeof__(f) *f;

static struct {
	void *handle;
	PQ_FUNCS(DL_FIELD)
} pq;

static struct {
	void *handle;
	MHD_FUNCS(DL_FIELD)
} mhd;

/* dlopen soname for the setting what; NULL when it cannot (logged with
 * dlerror's text). */
static void *
dl_open(const char *soname, const char *what)
{
	void *h;

	/* RTLD_LAZY: functions hived never calls are never bound. */
	if ((h = dlopen(soname, RTLD_LAZY | RTLD_LOCAL)) == NULL)
		log_warnx("%s is set but %s cannot be loaded: %s", what, soname,
		    dlerror());
	return h;
}

/* The address of name in h, or NULL (logged). */
static void *
dl_sym(void *h, const char *soname, const char *name)
{
	void *p;

	if ((p = dlsym(h, name)) == NULL)
		log_warnx("%s has no %s: %s", soname, name, dlerror());
	return p;
}

/* A function of a library, and the table slot its address goes to. */
struct dl_fn {
	const char *name;
	void *slot;
};

#define DL_PQ(f)  { #f, &pq.f },
#define DL_MHD(f) { #f, &mhd.f },

static const struct dl_fn pq_fns[] = { PQ_FUNCS(DL_PQ) };
static const struct dl_fn mhd_fns[] = { MHD_FUNCS(DL_MHD) };

/*
 * Load soname for the setting what and fill every slot of fns; *handle
 * says it is done (then this does nothing).  On a failure the table
 * (lib, size bytes) is left empty and the library closed.
 */
static int
dl_load(void **handle, const char *soname, const char *what,
    const struct dl_fn *fns, size_t n, void *lib, size_t size)
{
	void *h, *p;

	if (*handle != NULL)
		return 0;
	if ((h = dl_open(soname, what)) == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if ((p = dl_sym(h, soname, fns[i].name)) == NULL) {
			memset(lib, 0, size);
			dlclose(h);
			return -1;
		}
		/* POSIX: dlsym's void * converts to the function pointer. */
		memcpy(fns[i].slot, &p, sizeof(p));
	}
	*handle = h;
	return 0;
}

int
sup_dl_libpq(void)
{
	return dl_load(&pq.handle, HIVE_LIBPQ_SONAME, "postgres", pq_fns,
	    sizeof(pq_fns) / sizeof(pq_fns[0]), &pq, sizeof(pq));
}

int
sup_dl_microhttpd(void)
{
	return dl_load(&mhd.handle, HIVE_MHD_SONAME, "http", mhd_fns,
	    sizeof(mhd_fns) / sizeof(mhd_fns[0]), &mhd, sizeof(mhd));
}

static void
dl_need(const void *handle, const char *soname)
{
	if (handle == NULL)
		fatalx("%s called before it was loaded", soname);
}

/* ---- libpq ---- */

#define PQ(f) (dl_need(pq.handle, HIVE_LIBPQ_SONAME), pq.f)

void
PQclear(PGresult *res)
{
	PQ(PQclear)(res);
}

PostgresPollingStatusType
PQconnectPoll(PGconn *conn)
{
	return PQ(PQconnectPoll)(conn);
}

PGconn *
PQconnectStart(const char *conninfo)
{
	return PQ(PQconnectStart)(conninfo);
}

int
PQconsumeInput(PGconn *conn)
{
	return PQ(PQconsumeInput)(conn);
}

char *
PQerrorMessage(const PGconn *conn)
{
	return PQ(PQerrorMessage)(conn);
}

void
PQfinish(PGconn *conn)
{
	PQ(PQfinish)(conn);
}

int
PQflush(PGconn *conn)
{
	return PQ(PQflush)(conn);
}

void
PQfreemem(void *ptr)
{
	PQ(PQfreemem)(ptr);
}

PGresult *
PQgetResult(PGconn *conn)
{
	return PQ(PQgetResult)(conn);
}

char *
PQgetvalue(const PGresult *res, int tup_num, int field_num)
{
	return PQ(PQgetvalue)(res, tup_num, field_num);
}

int
PQisBusy(PGconn *conn)
{
	return PQ(PQisBusy)(conn);
}

PGnotify *
PQnotifies(PGconn *conn)
{
	return PQ(PQnotifies)(conn);
}

int
PQntuples(const PGresult *res)
{
	return PQ(PQntuples)(res);
}

int
PQputCopyData(PGconn *conn, const char *buffer, int nbytes)
{
	return PQ(PQputCopyData)(conn, buffer, nbytes);
}

int
PQputCopyEnd(PGconn *conn, const char *errormsg)
{
	return PQ(PQputCopyEnd)(conn, errormsg);
}

char *
PQresultErrorField(const PGresult *res, int fieldcode)
{
	return PQ(PQresultErrorField)(res, fieldcode);
}

char *
PQresultErrorMessage(const PGresult *res)
{
	return PQ(PQresultErrorMessage)(res);
}

ExecStatusType
PQresultStatus(const PGresult *res)
{
	return PQ(PQresultStatus)(res);
}

int
PQsendQuery(PGconn *conn, const char *query)
{
	return PQ(PQsendQuery)(conn, query);
}

int
PQsendQueryParams(PGconn *conn, const char *command, int nParams,
    const Oid *paramTypes, const char *const *paramValues,
    const int *paramLengths, const int *paramFormats, int resultFormat)
{
	return PQ(PQsendQueryParams)(conn, command, nParams, paramTypes,
	    paramValues, paramLengths, paramFormats, resultFormat);
}

int
PQsetnonblocking(PGconn *conn, int arg)
{
	return PQ(PQsetnonblocking)(conn, arg);
}

int
PQsocket(const PGconn *conn)
{
	return PQ(PQsocket)(conn);
}

ConnStatusType
PQstatus(const PGconn *conn)
{
	return PQ(PQstatus)(conn);
}

unsigned char *
PQunescapeBytea(const unsigned char *strtext, size_t *retbuflen)
{
	return PQ(PQunescapeBytea)(strtext, retbuflen);
}

/* ---- libmicrohttpd ---- */

#define MHD(f) (dl_need(mhd.handle, HIVE_MHD_SONAME), mhd.f)

enum MHD_Result
MHD_add_response_header(struct MHD_Response *response, const char *header,
    const char *content)
{
	return MHD(MHD_add_response_header)(response, header, content);
}

struct MHD_Response *
MHD_create_response_from_buffer(size_t size, void *buffer,
    enum MHD_ResponseMemoryMode mode)
{
	return MHD(MHD_create_response_from_buffer)(size, buffer, mode);
}

void
MHD_destroy_response(struct MHD_Response *response)
{
	MHD(MHD_destroy_response)(response);
}

int
MHD_get_connection_values(struct MHD_Connection *connection,
    enum MHD_ValueKind kind, MHD_KeyValueIterator iterator,
    void *iterator_cls)
{
	return MHD(MHD_get_connection_values)(connection, kind, iterator,
	    iterator_cls);
}

const union MHD_DaemonInfo *
MHD_get_daemon_info(struct MHD_Daemon *daemon,
    enum MHD_DaemonInfoType info_type, ...)
{
	return MHD(MHD_get_daemon_info)(daemon, info_type);
}

enum MHD_Result
MHD_get_timeout(struct MHD_Daemon *daemon, MHD_UNSIGNED_LONG_LONG *timeout)
{
	return MHD(MHD_get_timeout)(daemon, timeout);
}

const char *
MHD_lookup_connection_value(struct MHD_Connection *connection,
    enum MHD_ValueKind kind, const char *key)
{
	return MHD(MHD_lookup_connection_value)(connection, kind, key);
}

enum MHD_Result
MHD_queue_response(struct MHD_Connection *connection,
    unsigned int status_code, struct MHD_Response *response)
{
	return MHD(MHD_queue_response)(connection, status_code, response);
}

enum MHD_Result
MHD_run(struct MHD_Daemon *daemon)
{
	return MHD(MHD_run)(daemon);
}

struct MHD_Daemon *
MHD_start_daemon(unsigned int flags, uint16_t port,
    MHD_AcceptPolicyCallback apc, void *apc_cls,
    MHD_AccessHandlerCallback dh, void *dh_cls, ...)
{
	struct MHD_Daemon *d;
	va_list ap;

	va_start(ap, dh_cls);
	d = MHD(MHD_start_daemon_va)(flags, port, apc, apc_cls, dh, dh_cls, ap);
	va_end(ap);
	return d;
}

void
MHD_stop_daemon(struct MHD_Daemon *daemon)
{
	MHD(MHD_stop_daemon)(daemon);
}
