/*
 * test_keys.c - stream keys, consumer names and the name rules.  The key
 * formats are part of the protocol (docs/PROTOCOL.md): these tests pin
 * them.
 */
#include <criterion/criterion.h>

#include "hive_proto.h"

Test(keys, formats)
{
	char b[HIVE_KEY_MAX];

	cr_assert_eq(proto_key_queue(b, sizeof(b), "hive", "echo", 1), 13);
	cr_assert_str_eq(b, "hive:q:echo:1");
	cr_assert_eq(proto_key_queue(b, sizeof(b), "hive", "code.review", 2),
	    20);
	cr_assert_str_eq(b, "hive:q:code.review:2");
	cr_assert_gt(proto_key_agent_queue(b, sizeof(b), "hive", "reviewer", 0),
	    0);
	cr_assert_str_eq(b, "hive:q:@reviewer:0");
	cr_assert_gt(proto_key_direct(b, sizeof(b), "hive", "reviewer", 2), 0);
	cr_assert_str_eq(b, "hive:direct:reviewer/2");
	cr_assert_gt(proto_key_named(b, sizeof(b), "t1-2-x", "broadcast"), 0);
	cr_assert_str_eq(b, "t1-2-x:broadcast");
	cr_assert_gt(proto_key_named(b, sizeof(b), "hive", "results"), 0);
	cr_assert_str_eq(b, "hive:results");
	cr_assert_gt(proto_key_named(b, sizeof(b), "hive", "events"), 0);
	cr_assert_str_eq(b, "hive:events");
	cr_assert_gt(proto_key_named(b, sizeof(b), "hive", "dead"), 0);
	cr_assert_str_eq(b, "hive:dead");
	cr_assert_gt(proto_key_named(b, sizeof(b), "hive", "workflows"), 0);
	cr_assert_str_eq(b, "hive:workflows");
	cr_assert_gt(proto_consumer_name(b, sizeof(b), "reviewer", 2,
	    "node-1.example.org"), 0);
	cr_assert_str_eq(b, "reviewer/2@node-1.example.org");
}

Test(keys, refusals)
{
	char b[64];

	cr_assert_eq(proto_key_queue(b, sizeof(b), "hive", "echo", 3), -1,
	    "prio 3");
	cr_assert_eq(proto_key_queue(b, sizeof(b), "hive", "bad name", 1), -1);
	cr_assert_eq(proto_key_queue(b, sizeof(b), "hive", "", 1), -1);
	cr_assert_eq(proto_key_queue(b, sizeof(b), "hive", NULL, 1), -1);
	cr_assert_eq(proto_key_queue(b, sizeof(b), "", "echo", 1), -1);
	cr_assert_eq(proto_key_queue(b, sizeof(b), "hi ve", "echo", 1), -1);
	cr_assert_eq(proto_key_queue(b, 13, "hive", "echo", 1), -1,
	    "no room for the NUL");
	cr_assert_str_eq(b, "", "buffer left empty");
	cr_assert_eq(proto_key_queue(b, 14, "hive", "echo", 1), 13);
	cr_assert_eq(proto_key_agent_queue(b, sizeof(b), "hive", "a/1", 1), -1);
	cr_assert_eq(proto_key_direct(b, sizeof(b), "hive", "a", 0), -1);
	cr_assert_eq(proto_key_direct(b, sizeof(b), "hive", "a",
	    HIVE_INSTANCE_MAX + 1), -1);
	cr_assert_eq(proto_key_named(b, sizeof(b), "hive", "queue"), -1);
	cr_assert_eq(proto_key_named(b, sizeof(b), "hive", NULL), -1);
	cr_assert_eq(proto_consumer_name(b, sizeof(b), "a", 1, "bad host"), -1);
	cr_assert_eq(proto_consumer_name(b, sizeof(b), "a", 0, "h"), -1);
	cr_assert_eq(proto_key_queue(NULL, 0, "hive", "echo", 1), -1);
}

Test(keys, name_and_id_rules)
{
	char name[HIVE_NAME_MAX + 2], id[HIVE_ID_MAX + 2];

	cr_assert_eq(proto_valid_name("echo", 4), 0);
	cr_assert_eq(proto_valid_name("A_b.c-9", 7), 0);
	cr_assert_eq(proto_valid_name("_x", 2), 0);
	cr_assert_eq(proto_valid_name(".x", 2), -1);
	cr_assert_eq(proto_valid_name("-x", 2), -1);
	cr_assert_eq(proto_valid_name("a b", 3), -1);
	cr_assert_eq(proto_valid_name("a/b", 3), -1);
	cr_assert_eq(proto_valid_name("a:b", 3), -1);
	cr_assert_eq(proto_valid_name("", 0), -1);
	cr_assert_eq(proto_valid_name(NULL, 0), -1);
	memset(name, 'n', sizeof(name));
	cr_assert_eq(proto_valid_name(name, HIVE_NAME_MAX), 0);
	cr_assert_eq(proto_valid_name(name, HIVE_NAME_MAX + 1), -1);

	cr_assert_eq(proto_valid_id("task-1", 6), 0);
	cr_assert_eq(proto_valid_id("a:b/c@d{}~!", 11), 0);
	cr_assert_eq(proto_valid_id("a b", 3), -1);
	cr_assert_eq(proto_valid_id("a\x7f", 2), -1);
	cr_assert_eq(proto_valid_id("a\0", 2), -1);
	cr_assert_eq(proto_valid_id("", 0), -1);
	memset(id, 'i', sizeof(id));
	cr_assert_eq(proto_valid_id(id, HIVE_ID_MAX), 0);
	cr_assert_eq(proto_valid_id(id, HIVE_ID_MAX + 1), -1);
}

Test(keys, now_is_recent)
{
	/* 2023-11-14 and some centuries to spare */
	cr_assert_gt(proto_now_ms(), 1700000000000ull);
	cr_assert_lt(proto_now_ms(), 10000000000000ull);
}
