/*
 * api_ui.h - the dashboard's files (supervisor/ui/), built into hived:
 * supervisor/ui/embed.py turns them into ui_files.c at build time, and
 * api_ui.c serves them (GET /, GET /ui/{file}).
 */
#ifndef HIVE_API_UI_H
#define HIVE_API_UI_H

#include <stddef.h>

struct ui_file {
	const char *name;            /* "app.js" */
	const char *ctype;           /* its Content-Type */
	const char *etag;            /* "\"<hash of data>\"" */
	const unsigned char *data;
	size_t len;
};

/* Every file, ending with a row whose name is NULL (ui_files.c). */
extern const struct ui_file ui_files[];

#endif
