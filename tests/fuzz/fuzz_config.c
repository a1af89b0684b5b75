/*
 * fuzz_config.c - libFuzzer target for supervisor/config.c.
 *
 * The input is the text of a hive.conf (any bytes: NULs, long lines, no
 * final newline).  conf_load_string parses it exactly as conf_load parses
 * a file, without agents.d/ (no files are touched).  Errors are formatted
 * into /dev/null so that the message code runs too.  Whatever the input,
 * the parser must neither crash, read out of bounds nor leak; an accepted
 * config must be complete.  The same bytes also go, NUL-terminated, to the
 * duration and size parsers.
 *
 * Seeds: tests/fuzz/corpus/config/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	struct hive_conf *c;
	char *s;
	unsigned ms;
	uint64_t kb;

	if (devnull == NULL && (devnull = fopen("/dev/null", "we")) == NULL)
		abort();
	c = conf_load_string("fuzz.conf", (const char *)data, size, devnull);
	if (c != NULL) {
		/* What hived relies on for every accepted config. */
		if (c->postgres == NULL || c->worker_path == NULL)
			abort();
		for (size_t i = 0; i < c->nagents; i++) {
			const struct hive_agent_conf *a = &c->agents[i];

			if (a->argv == NULL || a->argv[0] == NULL ||
			    a->instances == 0 || a->concurrency == 0 ||
			    conf_agent(c, a->name) != a)
				abort();
		}
		conf_free(c);
	}

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	(void)conf_parse_duration(s, &ms);
	(void)conf_parse_size_kb(s, &kb);
	free(s);
	return 0;
}
