/* The in-memory extent index. */
#include "blockd/store_int.h"
#include "common/util.h"
#include "tests/unit/harness.h"

#include <errno.h>

TEST(test_index_add_find_delete_many)
{
	struct kura_idx x;
	const uint64_t n = 200000;

	CHECK_EQ(idx_init(&x), 0);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(idx_add(&x, i % 7, i * 3, (uint32_t)i), 0);
	CHECK_EQ(x.nextents, n);
	CHECK_EQ(idx_add(&x, 0, 0, 5), -EEXIST);
	for (uint64_t i = 0; i < n; i++) {
		struct idx_entry *e = idx_find(&x, i % 7, i * 3);
		CHECK(e && e->loc == i);
		CHECK(!idx_find(&x, i % 7, i * 3 + 1));
	}
	/* delete every other one; the rest must still be found (probe runs intact) */
	for (uint64_t i = 0; i < n; i += 2)
		idx_del(&x, i % 7, i * 3);
	for (uint64_t i = 0; i < n; i++) {
		struct idx_entry *e = idx_find(&x, i % 7, i * 3);
		if (i % 2)
			CHECK(e && e->loc == i);
		else
			CHECK(e == NULL);
	}
	CHECK_EQ(x.nextents, n / 2);
	idx_destroy(&x);
}

TEST(test_index_bitmaps_full_empty_and_partial)
{
	struct kura_idx x;
	struct kura_blk_bitmap b;
	struct idx_entry *e;

	CHECK_EQ(idx_init(&x), 0);
	CHECK_EQ(idx_add(&x, 1, 1, 9), 0);
	e = idx_find(&x, 1, 1);
	CHECK_EQ(e->bm, BM_EMPTY);
	idx_set_bits(&x, e, 0, 10);
	CHECK(e->bm != BM_FULL && e->bm != BM_EMPTY);
	idx_bitmap(&x, e, &b);
	CHECK_EQ(bm_count(&b), 10);
	idx_set_bits(&x, e, 10, KURA_EXT_BLOCKS - 10);
	CHECK_EQ(e->bm, BM_FULL); /* full extents need no bitmap memory */
	CHECK_EQ(x.bm_used, 0);
	CHECK_EQ(idx_clear_bits(&x, e, 100, 6), KURA_EXT_BLOCKS - 6);
	idx_bitmap(&x, e, &b);
	CHECK(!bm_test(&b, 100) && !bm_test(&b, 105) && bm_test(&b, 106) && bm_test(&b, 99));
	CHECK_EQ(idx_clear_bits(&x, e, 0, KURA_EXT_BLOCKS), 0);
	CHECK_EQ(e->bm, BM_EMPTY);
	CHECK_EQ(x.bm_used, 0);
	idx_destroy(&x);
}

TEST(test_index_move_keeps_bitmap_and_version)
{
	struct kura_idx x;
	struct kura_blk_bitmap b;
	struct idx_entry *e;

	CHECK_EQ(idx_init(&x), 0);
	CHECK_EQ(idx_add(&x, 1, 5, 42), 0);
	e = idx_find(&x, 1, 5);
	idx_set_bits(&x, e, 3, 2);
	ent_raise_version(e, 77);
	ent_raise_version(e, 12); /* versions never go back */
	CHECK_EQ(idx_add(&x, 2, 8, 43), 0);
	CHECK_EQ(idx_move(&x, 1, 5, 2, 8), -EEXIST);
	CHECK_EQ(idx_move(&x, 1, 6, 2, 9), -ENOENT);
	CHECK_EQ(idx_move(&x, 1, 5, 2, 9), 0);
	CHECK(!idx_find(&x, 1, 5));
	e = idx_find(&x, 2, 9);
	CHECK(e && e->loc == 42);
	CHECK_EQ(ent_version(e), 77);
	idx_bitmap(&x, e, &b);
	CHECK(bm_count(&b) == 2 && bm_test(&b, 3) && bm_test(&b, 4));
	idx_destroy(&x);
}

TEST(test_index_ram_per_extent_within_budget)
{
	struct kura_idx x;
	const uint64_t n = 1u << 20; /* 1 TiB of 1 MiB extents */

	CHECK_EQ(idx_init(&x), 0);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(idx_add(&x, 1 + i % 16, i / 16, (uint32_t)i), 0);
	free(x.dirty); /* steady state: changes checkpointed */
	x.dirty = NULL;
	x.ndirty = x.dirty_cap = 0;
	/* aim: at most 64 MiB per TiB */
	CHECK(idx_mem_bytes(&x) <= 64ull << 20);
	idx_destroy(&x);
}
