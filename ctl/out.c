/*
 * out.c - what hivectl prints: tables whose columns line up, the API's
 * JSON for --json, and the small conversions a cell needs (a field as
 * text, a duration in human units, a long text cut to one line).
 */
#include "hivectl.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void
oom(void)
{
	fprintf(stderr, "hivectl: out of memory\n");
	exit(CTL_FAILED);
}

void
ctl_table_rowv(struct ctl_table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **p = reallocarray(t->cells, cap * t->ncols, sizeof(*p));

		if (p == NULL)
			oom();
		t->cells = p;
		t->cap = cap;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		char *copy = strdup(cells[i] != NULL ? cells[i] : "-");

		if (copy == NULL)
			oom();
		t->cells[t->nrows * t->ncols + i] = copy;
	}
	t->nrows++;
}

static void
table_add(struct ctl_table *t, va_list ap)
{
	const char *cells[CTL_TABLE_COLS];

	for (size_t i = 0; i < t->ncols && i < CTL_TABLE_COLS; i++)
		cells[i] = va_arg(ap, const char *);
	ctl_table_rowv(t, cells);
}

void
ctl_table_init(struct ctl_table *t, size_t ncols, ...)
{
	va_list ap;

	memset(t, 0, sizeof(*t));
	t->ncols = ncols < CTL_TABLE_COLS ? ncols : CTL_TABLE_COLS;
	va_start(ap, ncols);
	table_add(t, ap);
	va_end(ap);
}

void
ctl_table_row(struct ctl_table *t, ...)
{
	va_list ap;

	va_start(ap, t);
	table_add(t, ap);
	va_end(ap);
}

/* Columns two spaces apart, each as wide as its widest cell; the last
 * one is not padded (no blanks at the ends of lines). */
void
ctl_table_print(struct ctl_table *t, FILE *f)
{
	size_t w[CTL_TABLE_COLS] = { 0 };

	for (size_t r = 0; r < t->nrows; r++)
		for (size_t i = 0; i < t->ncols; i++) {
			size_t n = strlen(t->cells[r * t->ncols + i]);

			if (n > w[i])
				w[i] = n;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];

			if (i + 1 == t->ncols)
				fprintf(f, "%s\n", s);
			else
				fprintf(f, "%-*s  ", (int)w[i], s);
		}
	}
}

void
ctl_table_free(struct ctl_table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

int
ctl_json_print(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
	    JSON_ENCODE_ANY);

	if (s == NULL)
		oom();
	printf("%s\n", s);
	free(s);
	return CTL_OK;
}

const char *
ctl_str(const json_t *obj, const char *key, char *buf, size_t len)
{
	const json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return "-";
	switch (json_typeof(v)) {
	case JSON_STRING:
		return ctl_cut(json_string_value(v), len - 4, buf, len);
	case JSON_INTEGER:
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	case JSON_REAL:
		snprintf(buf, len, "%g", json_real_value(v));
		return buf;
	case JSON_TRUE:
		return "yes";
	case JSON_FALSE:
		return "no";
	case JSON_NULL:
		return "-";
	default:
		return "...";
	}
}

const char *
ctl_dur(const json_t *obj, const char *key, char *buf, size_t len)
{
	const json_t *v = json_object_get(obj, key);
	long long ms, s;

	if (!json_is_integer(v) || (ms = json_integer_value(v)) < 0)
		return "-";
	s = ms / 1000;
	if (ms < 1000)
		snprintf(buf, len, "%lldms", ms);
	else if (s < 60)
		snprintf(buf, len, "%llds", s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
	return buf;
}

const char *
ctl_cut(const char *s, size_t n, char *buf, size_t len)
{
	size_t i, o = 0;

	if (s == NULL)
		return "-";
	if (len < 4)
		return "";
	if (n > len - 4)
		n = len - 4;
	for (i = 0; s[i] != '\0' && i < n; i++)
		buf[o++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' :
		    s[i];
	if (s[i] != '\0') {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}
