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

/* ---- lists by class ---- */

struct brute {
	uint32_t mask, value;
	struct kura_blk_key *v;
	size_t n;
};

static int brute_one(void *arg, uint64_t layer, const struct idx_entry *e)
{
	struct brute *b = arg;

	if ((kura_blk_ext_class(layer, e->ext) & b->mask) == b->value) {
		b->v = realloc(b->v, (b->n + 1) * sizeof(*b->v));
		b->v[b->n].layer = layer;
		b->v[b->n++].ext = e->ext;
	}
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	const struct kura_blk_key *x = a, *y = b;

	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return x->ext < y->ext ? -1 : x->ext > y->ext;
}

/* Every class list holds exactly the index's extents of that class, and
 * each entry's cpos names its own key. */
static void check_classes(struct kura_idx *x)
{
	static const uint32_t masks[] = { 0, 3, 63, 255, KURA_BLK_CLASSES - 1 };
	uint64_t total = 0;

	for (uint32_t c = 0; c < KURA_BLK_CLASSES; c++) {
		for (uint32_t i = 0; i < x->classes[c].n; i++) {
			const struct idx_ckey *k = &x->classes[c].v[i];
			uint64_t layer = (uint64_t)k->layer_hi << 32 | k->layer_lo;
			struct idx_entry *e = idx_find(x, layer, k->ext);

			CHECK(e && e->cpos == i);
			CHECK_EQ(kura_blk_ext_class(layer, k->ext), c);
		}
		total += x->classes[c].n;
	}
	CHECK_EQ(total, x->nextents);
	for (size_t m = 0; m < KURA_ARRAY_SIZE(masks); m++)
		for (uint32_t value = 0; value <= masks[m] && value < 9; value++) {
			struct brute b = { masks[m], value, NULL, 0 };
			struct kura_blk_key *v;
			size_t n;

			CHECK_EQ(idx_for_each(x, brute_one, &b), 0);
			CHECK_EQ(idx_classes_list(x, masks[m], value, &v, &n), 0);
			CHECK_EQ(n, b.n);
			if (n == b.n && n) {
				qsort(v, n, sizeof(*v), key_cmp);
				qsort(b.v, n, sizeof(*b.v), key_cmp);
				CHECK(!memcmp(v, b.v, n * sizeof(*v)));
			}
			free(v);
			free(b.v);
		}
}

/* Random adds, deletes and moves over a few layers (one with a 64-bit id),
 * the class lists kept from half-way on (built from what is there then),
 * compared with a walk of the index every 500 steps. */
TEST(test_index_class_lists_match_the_index)
{
	static const uint64_t layers[] = { 1, 2, 7, 0x7e57000021ull, 0xfedcba9876543210ull };
	struct kura_idx x;
	uint64_t rnd = 0x2545f4914f6cdd1dull;

	CHECK_EQ(idx_init(&x), 0);
	for (int step = 0; step < 20000; step++) {
		uint64_t l, e, nl, ne;

		rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
		l = layers[rnd % 5];
		e = (rnd >> 8) % 3000;
		nl = layers[(rnd >> 24) % 5];
		ne = (rnd >> 32) % 3000;
		switch ((rnd >> 40) % 4) {
		case 0:
		case 1:
			idx_add(&x, l, e, (uint32_t)step);
			break;
		case 2:
			idx_del(&x, l, e);
			break;
		default:
			idx_move(&x, l, e, nl, ne);
			break;
		}
		if (step == 10000) {
			CHECK(!x.classes);
			CHECK_EQ(idx_classes_keep(&x), 0);
			CHECK_EQ(idx_classes_keep(&x), 0); /* once */
		}
		if (step >= 10000 && step % 500 == 0)
			check_classes(&x);
		x.ndirty = 0; /* as a checkpoint would */
	}
	check_classes(&x);
	/* everything deleted: every list empties */
	for (size_t i = 0; i < KURA_ARRAY_SIZE(layers); i++)
		for (uint64_t e = 0; e < 3000; e++)
			idx_del(&x, layers[i], e);
	CHECK_EQ(x.nextents, 0);
	check_classes(&x);
	idx_destroy(&x);
}

/* With the class lists kept, the index stays within 96 MiB per TiB. */
TEST(test_index_class_lists_ram_per_extent)
{
	struct kura_idx x;
	const uint64_t n = 1u << 20;

	CHECK_EQ(idx_init(&x), 0);
	CHECK_EQ(idx_classes_keep(&x), 0);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(idx_add(&x, 1 + i % 16, i / 16, (uint32_t)i), 0);
	free(x.dirty);
	x.dirty = NULL;
	x.ndirty = x.dirty_cap = 0;
	CHECK(idx_mem_bytes(&x) <= 96ull << 20);
	idx_destroy(&x);
}
