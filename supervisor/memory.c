/*
 * memory.c - the latest memory of each agent instance.
 *
 * Workers report memory after each acknowledged task that changed it
 * (MEMORY frames); hived keeps the highest memory_v and hands it, as the
 * first frame, to every worker it starts for that instance.  Entries are
 * kept as msgpack bytes (the map alone), so holding them costs one copy
 * and sending them one decode.
 *
 * A list is enough: entries are looked up when an instance is created,
 * not per frame (each instance keeps a pointer to its entry).
 */
#include "hived.h"

#include <stdlib.h>
#include <string.h>

struct sup_memstore {
	struct sup_mem *head;
};

struct sup_memstore *
sup_memstore_new(void)
{
	return calloc(1, sizeof(struct sup_memstore));
}

void
sup_memstore_free(struct sup_memstore *ms)
{
	struct sup_mem *m, *next;

	if (ms == NULL)
		return;
	for (m = ms->head; m != NULL; m = next) {
		next = m->next;
		free(m->buf);
		free(m);
	}
	free(ms);
}

struct sup_mem *
sup_mem_get(struct sup_memstore *ms, const char *name, unsigned instance)
{
	char key[HIVE_AGENT_MAX + 1];
	struct sup_mem *m;

	snprintf(key, sizeof(key), "%s/%u", name, instance);
	for (m = ms->head; m != NULL; m = m->next)
		if (strcmp(m->key, key) == 0)
			return m;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	memcpy(m->key, key, sizeof(key));
	m->next = ms->head;
	ms->head = m;
	return m;
}

int
sup_mem_put_raw(struct sup_mem *m, uint64_t v, const char *buf, size_t len)
{
	char *copy;

	if (v <= m->v)
		return 0;
	if ((copy = malloc(len ? len : 1)) == NULL)
		return -1;
	memcpy(copy, buf, len);
	free(m->buf);
	m->buf = copy;
	m->len = len;
	m->v = v;
	return 1;
}

int
sup_mem_put(struct sup_mem *m, uint64_t v, const msgpack_object *obj)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	int r;

	if (v <= m->v)
		return 0;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (msgpack_pack_object(&pk, *obj) != 0) {
		msgpack_sbuffer_destroy(&sb);
		return -1;
	}
	r = sup_mem_put_raw(m, v, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
	return r;
}

int
sup_mem_encode_frame(const struct sup_mem *m, const char *name,
    unsigned instance, msgpack_sbuffer *sb)
{
	struct hive_frame f;
	struct proto_err err;
	msgpack_unpacked up;
	size_t off = 0;
	int r = -1;

	msgpack_unpacked_init(&up);
	memset(&f, 0, sizeof(f));
	f.v = HIVE_PROTO_VERSION;
	f.type = HIVE_FRAME_MEMORY;
	f.u.memory.agent = HIVE_STR(name);
	f.u.memory.instance = instance;
	f.u.memory.memory_v = 0;
	f.u.memory.memory.type = MSGPACK_OBJECT_NIL;
	if (m->v > 0 && m->buf != NULL) {
		if (msgpack_unpack_next(&up, m->buf, m->len, &off) !=
		    MSGPACK_UNPACK_SUCCESS)
			goto err;
		f.u.memory.memory_v = m->v;
		f.u.memory.memory = up.data;
	}
	if (proto_encode_frame(sb, &f, &err) == -1)
		goto err;
	r = 0;
err:
	msgpack_unpacked_destroy(&up);
	return r;
}

size_t
sup_memstore_bytes(const struct sup_memstore *ms)
{
	size_t n = 0;

	for (const struct sup_mem *m = ms->head; m != NULL; m = m->next)
		n += m->len;
	return n;
}
