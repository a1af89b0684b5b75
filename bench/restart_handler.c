/*
 * restart_handler.c - the stream-mode handler of bench/restart: it answers
 * each task with a memory of a set size, so that every worker hived
 * restarts in the benchmark has a real memory to be handed:
 *
 *   in:  {"id": ID, ...}\n
 *   out: {"id": ID, "status": "ok", "result": {"n": K},
 *         "memory": {"n": K, "pad": "xxx..."}}\n
 *
 * K counts the tasks this process answered; the pad makes the memory
 * about RESTART_MEM_BYTES (default 4096) long.  No JSON library: the id is
 * copied through verbatim (it is a JSON string already).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The JSON string value of the top-level key "id" in line, or NULL. */
static const char *
find_id(char *line, size_t *len)
{
	char *p = strstr(line, "\"id\"");
	char *q;

	if (p == NULL || (p = strchr(p + 4, ':')) == NULL)
		return NULL;
	for (p++; *p == ' '; p++)
		;
	if (*p != '"')
		return NULL;
	for (q = p + 1; *q && *q != '"'; q++)
		if (*q == '\\' && q[1])
			q++;
	if (*q != '"')
		return NULL;
	*len = (size_t)(q - p) + 1;
	return p;
}

int
main(void)
{
	const char *env = getenv("RESTART_MEM_BYTES");
	size_t pad = env ? strtoul(env, NULL, 10) : 4096;
	char *padding = malloc(pad + 1), *line = NULL;
	size_t cap = 0, idlen;
	unsigned long long n = 0;
	const char *id;

	if (padding == NULL)
		return 1;
	memset(padding, 'x', pad);
	padding[pad] = '\0';
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	while (getline(&line, &cap, stdin) != -1) {
		if ((id = find_id(line, &idlen)) == NULL)
			continue;
		n++;
		printf("{\"id\":%.*s,\"status\":\"ok\",\"result\":{\"n\":%llu},"
		    "\"memory\":{\"n\":%llu,\"pad\":\"%s\"}}\n", (int)idlen, id, n,
		    n, padding);
		fflush(stdout);
	}
	free(line);
	free(padding);
	return 0;
}
