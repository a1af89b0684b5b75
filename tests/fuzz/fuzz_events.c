/*
 * fuzz_events.c - libFuzzer target for GET /events's arguments
 * (events_filter_parse, supervisor/events.h), which any client sends:
 * the query's types, agent and instance and the Last-Event-ID header.
 *
 * The input is up to four fields separated by '\n' (types, agent,
 * instance, last id); a field that is exactly "-" is absent.  Whatever
 * it is, the parser answers 0 with a filter in range, or -1 with an
 * error text.
 *
 * Seeds: tests/fuzz/corpus/events/.
 */
#include "events.h"
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char buf[2048], *f[4] = { NULL, NULL, NULL, NULL }, *p, err[128];
	struct ev_filter flt;
	int n = 0, r;

	if (size >= sizeof(buf))
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	if (strlen(buf) != size)
		return 0;                /* a query value holds no NUL */
	for (p = buf; n < 4; n++) {
		f[n] = p;
		if ((p = strchr(p, '\n')) == NULL) {
			n++;
			break;
		}
		*p++ = '\0';
	}
	for (int i = 0; i < 4; i++)
		if (f[i] != NULL && strcmp(f[i], "-") == 0)
			f[i] = NULL;
	err[0] = '\0';
	r = events_filter_parse(f[0], f[1], f[2], f[3], &flt, err, sizeof(err));
	FZ_CHECK(r == 0 || r == -1);
	if (r == -1) {
		FZ_CHECK(err[0] != '\0');
		return 0;
	}
	FZ_CHECK(flt.types != 0 && flt.types < (1u << EV_T_COUNT));
	FZ_CHECK(strlen(flt.agent) <= HIVE_NAME_MAX);
	FZ_CHECK(flt.instance <= HIVE_INSTANCE_MAX);
	FZ_CHECK(flt.resume == (f[3] != NULL));
	FZ_CHECK(f[2] == NULL || flt.instance >= 1);
	return 0;
}
