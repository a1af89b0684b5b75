/*
 * test_idset.c - record/idset.c: a set of hashes in two generations that
 * forgets the older when the newer is full.  No services.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdint.h>

#include "rec.h"

Test(idset, has_what_was_added)
{
	struct idset *s = idset_new(16);

	cr_assert_not_null(s);
	for (uint64_t h = 1; h <= 10; h++)
		idset_add(s, h * 7919, h);
	for (uint64_t h = 1; h <= 10; h++)
		cr_assert(idset_has(s, h * 7919), "%" PRIu64, h);
	cr_assert_not(idset_has(s, 3));
	cr_assert_eq(idset_forgotten(s), 0);
	idset_free(s);
	idset_free(NULL);
}

Test(idset, collisions_probe_on)
{
	struct idset *s = idset_new(4);      /* 8 slots */

	/* one low-bit pattern: each one probes past the others */
	idset_add(s, 0x10, 1);
	idset_add(s, 0x18, 1);
	idset_add(s, 0x20, 1);
	cr_assert(idset_has(s, 0x10));
	cr_assert(idset_has(s, 0x18));
	cr_assert(idset_has(s, 0x20));
	cr_assert_not(idset_has(s, 0x28));
	idset_free(s);
}

Test(idset, the_older_generation_is_forgotten_with_its_stamp)
{
	struct idset *s = idset_new(4);

	for (uint64_t h = 1; h <= 4; h++)
		idset_add(s, h, h * 10);         /* the first generation full */
	idset_add(s, 5, 50);                 /* the second begins */
	cr_assert_eq(idset_forgotten(s), 0);
	for (uint64_t h = 1; h <= 5; h++)
		cr_assert(idset_has(s, h));
	for (uint64_t h = 6; h <= 8; h++)
		idset_add(s, h, h * 10);         /* the second full */
	idset_add(s, 9, 90);                 /* the first is forgotten */
	cr_assert_eq(idset_forgotten(s), 40, "forgotten %" PRIu64,
	    idset_forgotten(s));
	for (uint64_t h = 1; h <= 4; h++)
		cr_assert_not(idset_has(s, h), "%" PRIu64 " still there", h);
	for (uint64_t h = 5; h <= 9; h++)
		cr_assert(idset_has(s, h));
	idset_free(s);
}

Test(idset, adding_again_takes_no_room)
{
	struct idset *s = idset_new(2);

	idset_add(s, 1, 1);
	idset_add(s, 1, 2);
	idset_add(s, 2, 3);                  /* still the first generation */
	idset_add(s, 3, 4);                  /* the second */
	idset_add(s, 4, 5);
	cr_assert_eq(idset_forgotten(s), 0);
	cr_assert(idset_has(s, 1));
	idset_add(s, 5, 6);                  /* now the first goes */
	cr_assert_eq(idset_forgotten(s), 3);
	cr_assert_not(idset_has(s, 1));
	cr_assert(idset_has(s, 5));
	idset_free(s);
}
