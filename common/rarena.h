/*
 * rarena.h - hiredis replies built in blocks of our own (see rarena.c),
 * for a connection that reads many stream entries.  rconn_reply_arena()
 * is how a connection asks for it; nothing else needs this header.
 */
#ifndef HIVE_RARENA_H
#define HIVE_RARENA_H

#include <hiredis/hiredis.h>

struct rarena;

/* NULL when out of memory.  rarena_free accepts NULL. */
struct rarena *rarena_new(void);
void rarena_free(struct rarena *);
/* Build the replies of reader in a from now on (nothing read yet). */
void rarena_attach(struct rarena *a, redisReader *reader);
/*
 * Call it before freeing the arena of a reader that outlives it (hiredis
 * frees a context, and a half-built reply with it, only later): that
 * free then touches no arena.
 */
void rarena_detach(redisReader *reader);

#endif
