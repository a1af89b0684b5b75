/*
 * fuzz_handler.c - libFuzzer target for worker/answer.c, the parser of
 * what handlers write: the same functions hive-worker calls.
 *
 * The input is a handler's output, any bytes:
 *
 *   split at '\n'    each piece is a stream handler's line
 *                    (wrk_answer_line, as handler_stream.c feeds it)
 *   whole            one line (newlines inside), and an exec handler's
 *                    stdout (wrk_answer_exec)
 *
 * Whatever the input, the parser neither crashes, reads out of bounds nor
 * leaks, and what it returns is within the limits the worker relies on:
 * an accepted answer names a valid task id, has a status, an error text
 * exactly when it failed, a memory that is an object or none, and turns
 * into a result the codec accepts (unless its values are too deep or too
 * big, which the worker reports as such); a refused one comes with a
 * reason that is itself a valid error text, and the id it guessed, if
 * any, is a valid task id.  wrk_excerpt of the input is a valid text too.
 *
 * Seeds: tests/fuzz/corpus/handler/.
 */
#include <jansson.h>

#include "fuzz_common.h"
#include "worker.h"

/* An encoded result with these fields must be accepted.  result and
 * memory may be refused for depth (E_SIZE) or size (E_TOOBIG, E_SIZE). */
static void
publish(const char *id, enum hive_status status, const char *error,
    json_t *result, json_t *memory)
{
	struct hive_result r;
	struct proto_err err;
	msgpack_sbuffer sb;
	msgpack_zone z;
	int rc;

	memset(&r, 0, sizeof(r));
	memset(&err, 0, sizeof(err));
	msgpack_zone_init(&z, 2048);
	msgpack_sbuffer_init(&sb);
	r.v = HIVE_PROTO_VERSION;
	r.id = HIVE_STR(id);
	r.agent = HIVE_STR("fuzz/1");
	r.host = HIVE_STR("host");
	r.status = status;
	r.error = HIVE_STR(error);
	r.attempt = 1;
	r.result.type = MSGPACK_OBJECT_NIL;
	r.memory.type = MSGPACK_OBJECT_NIL;
	if (result != NULL &&
	    proto_json_to_obj(result, &z, &r.result, &err) == -1) {
		fz_err_ok(&err);
		FZ_CHECK(err.code == PROTO_E_SIZE);
		goto out;
	}
	if (memory != NULL) {
		if (proto_json_to_obj(memory, &z, &r.memory, &err) == -1) {
			fz_err_ok(&err);
			FZ_CHECK(err.code == PROTO_E_SIZE);
			goto out;
		}
		FZ_CHECK(r.memory.type == MSGPACK_OBJECT_MAP);
		r.memory_v = 1;
	}
	rc = proto_encode_result(&sb, &r, &err);
	if (rc == -1) {
		fz_err_ok(&err);
		FZ_CHECK(err.code == PROTO_E_SIZE || err.code == PROTO_E_TOOBIG);
	}
out:
	msgpack_sbuffer_destroy(&sb);
	msgpack_zone_destroy(&z);
}

/* A reason (or an error) is a text the codec takes as a result's error. */
static void
valid_text(const char *s, size_t size)
{
	FZ_CHECK(memchr(s, '\0', size) != NULL);
	FZ_CHECK(s[0] != '\0');
	FZ_CHECK(strlen(s) < HIVE_ERROR_MAX);
	publish("x", HIVE_STATUS_ERROR, s, NULL, NULL);
}

static void
check(int rc, const struct wrk_answer *a, const char *why, size_t whylen,
    bool exec)
{
	FZ_CHECK(rc >= -1 && rc <= (exec ? 0 : 2));
	FZ_CHECK(memchr(a->id, '\0', sizeof(a->id)) != NULL);
	FZ_CHECK(memchr(a->error, '\0', sizeof(a->error)) != NULL);
	if (a->id[0] != '\0')
		FZ_CHECK(proto_valid_id(a->id, strlen(a->id)) == 0);
	FZ_CHECK(a->memory == NULL || json_is_object(a->memory));
	FZ_CHECK(a->progress == NULL || json_is_object(a->progress));
	FZ_CHECK(a->chunk == NULL || json_is_string(a->chunk));
	FZ_CHECK(rc == 2 || (a->progress == NULL && a->chunk == NULL));
	switch (rc) {
	case 2:         /* progress and/or a chunk: a task's output */
		FZ_CHECK(a->id_sure && a->result == NULL && a->memory == NULL);
		if (why[0] != '\0')
			valid_text(why, whylen);
		break;
	case 1:         /* blank */
		FZ_CHECK(a->result == NULL && a->memory == NULL);
		FZ_CHECK(a->id[0] == '\0');
		break;
	case -1:
		FZ_CHECK(a->result == NULL && a->memory == NULL);
		FZ_CHECK(!a->id_sure || a->id[0] != '\0');
		valid_text(why, whylen);
		break;
	case 0:
		FZ_CHECK(exec ? a->id[0] == '\0' : a->id_sure);
		FZ_CHECK(a->status == HIVE_STATUS_OK ||
		    a->status == HIVE_STATUS_ERROR);
		if (a->status == HIVE_STATUS_ERROR)
			valid_text(a->error, sizeof(a->error));
		else
			FZ_CHECK(a->error[0] == '\0');
		FZ_CHECK(!exec || a->status == HIVE_STATUS_OK);
		publish(exec ? "x" : a->id, a->status, a->error, a->result,
		    a->memory);
		break;
	}
}

static void
one_line(const char *p, size_t len)
{
	struct wrk_answer a;
	char why[HIVE_ERROR_MAX];
	int rc;

	rc = wrk_answer_line(p, len, &a, why, sizeof(why));
	check(rc, &a, why, sizeof(why), false);
	wrk_answer_clear(&a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;
	struct wrk_answer a;
	char why[HIVE_ERROR_MAX], ex[WRK_EXCERPT_SIZE];
	int rc;

	/* Lines as handler_stream.c cuts them. */
	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		one_line(p, (size_t)(nl - p));
		p = nl + 1;
	}
	if (p < end)
		one_line(p, (size_t)(end - p));
	one_line((const char *)data, size);

	rc = wrk_answer_exec((const char *)data, size, &a, why, sizeof(why));
	check(rc, &a, why, sizeof(why), true);
	wrk_answer_clear(&a);

	wrk_excerpt((const char *)data, size, ex, sizeof(ex));
	FZ_CHECK(strlen(ex) < sizeof(ex));
	if (ex[0] != '\0')
		valid_text(ex, sizeof(ex));
	return 0;
}
