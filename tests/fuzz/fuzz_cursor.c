/*
 * fuzz_cursor.c - libFuzzer target for the list cursor of GET /tasks and
 * GET /workflows (supervisor/api_tasks.h), which reads what any client
 * sends.  The input is read both ways:
 *
 *   as a cursor:  s --decode--> (us, id) --encode--> s'      s == s'
 *                 (one spelling per key: a cursor that decodes is the
 *                 one the encoder writes), and s' is URL-safe
 *   as a key:     8 bytes of us, the rest an id --encode--> s
 *                 --decode--> (us', id')                    equal
 *
 * Seeds: tests/fuzz/corpus/cursor/.
 */
#include "api_tasks.h"
#include "fuzz_common.h"

static void
url_safe(const char *s)
{
	for (; *s != '\0'; s++)
		FZ_CHECK((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9') || strchr("._~-", *s) != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[512], out[API_CURSOR_MAX], id[HIVE_ID_MAX + 1];
	int64_t us, us2;
	int n;

	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (api_cursor_decode(s, &us, id, sizeof(id)) == 0) {
		FZ_CHECK(us >= 0);
		FZ_CHECK(proto_valid_id(id, strlen(id)) == 0);
		n = api_cursor_encode(out, sizeof(out), us, id, strlen(id));
		FZ_CHECK(n > 0 && (size_t)n == strlen(s));
		FZ_CHECK(strcmp(out, s) == 0);
		url_safe(out);
	}
	if (size >= 8) {
		memcpy(&us, data, 8);
		n = api_cursor_encode(out, sizeof(out), us, (const char *)data + 8,
		    size - 8);
		FZ_CHECK(n < 0 || (us >= 0 && proto_valid_id((const char *)data +
		    8, size - 8) == 0));
		if (n > 0) {
			url_safe(out);
			FZ_CHECK(api_cursor_decode(out, &us2, id, sizeof(id)) == 0);
			FZ_CHECK(us2 == us && strlen(id) == size - 8 &&
			    memcmp(id, data + 8, size - 8) == 0);
		}
	}
	return 0;
}
