/*
 * api_ui.c - the dashboard (docs/DASHBOARD.md): the files of
 * supervisor/ui/, built into hived (api_ui.h), served as they are.
 *
 *   GET /            index.html
 *   GET /ui/{file}   index.html, app.js, app.css; 404 for another name
 *
 * The files hold no data (the page reads the API like any client), so
 * they are served without the token even with http_auth_reads
 * (API_PUBLIC): a browser cannot send a bearer token when it loads a
 * page; the page asks for it and sends it with its own requests.  The
 * Content-Security-Policy lets the page load nothing that does not come
 * from hived itself, and run no inline script or style: what the API
 * says reaches the page as text only (app.js), and this is the second
 * line behind that.  Cache-Control no-cache with the file's ETag: a
 * browser may keep a copy but asks each time, and a copy that is still
 * the file gets a 304 without a body (a new hived may bring new files).
 */
#include "hived.h"
#include "api.h"
#include "api_ui.h"
#include "sse.h"

#include <string.h>

static const char *const ui_headers[] = {
	"Content-Security-Policy", "default-src 'none'; script-src 'self'; "
	    "style-src 'self'; img-src 'self'; connect-src 'self'; "
	    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"Cache-Control", "no-cache",
	"X-Content-Type-Options", "nosniff",
	"Referrer-Policy", "no-referrer",
	NULL
};

static void
ui_send(struct api_req *req, const char *name)
{
	const struct ui_file *f;
	const char *hdrs[sizeof(ui_headers) / sizeof(ui_headers[0]) + 2];
	const char *inm;
	size_t n = 0;

	for (f = ui_files; f->name != NULL; f++)
		if (strcmp(f->name, name) == 0)
			break;
	if (f->name == NULL) {
		api_fail(req, 404, "not_found", "no file '%s' in the dashboard",
		    name);
		return;
	}
	for (; ui_headers[n] != NULL; n++)
		hdrs[n] = ui_headers[n];
	hdrs[n++] = "ETag";
	hdrs[n++] = f->etag;
	hdrs[n] = NULL;
	/* The browser's copy is this file (an ETag among If-None-Match's,
	 * weak or strong alike): 304, no body. */
	inm = api_header(req, "If-None-Match");
	if (inm != NULL && (strstr(inm, f->etag) != NULL ||
	    strcmp(inm, "*") == 0)) {
		api_reply_hdrs(req, 304, f->ctype, "", 0, hdrs);
		return;
	}
	api_reply_hdrs(req, 200, f->ctype, (const char *)f->data, f->len,
	    hdrs);
}

static void
ui_index(struct api_req *req)
{
	ui_send(req, "index.html");
}

static void
ui_file(struct api_req *req)
{
	ui_send(req, api_arg(req, 0));
}

const struct api_route api_ui_routes[] = {
	{ "GET", "/", "", API_TEXT | API_PUBLIC, ui_index },
	{ "GET", "/ui/{}", "", API_TEXT | API_PUBLIC, ui_file },
	{ NULL, NULL, NULL, 0, NULL }
};
