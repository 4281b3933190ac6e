/* Helpers of the store's unit tests (test_store.c, test_store_apply.c). */
#ifndef KURA_TESTS_UNIT_BLOCKD_STORETEST_H
#define KURA_TESTS_UNIT_BLOCKD_STORETEST_H

#include "blockd/store_int.h"
#include "tests/unit/harness.h"
#include "tests/unit/tstore.h"

#include <string.h>

#define MEDIA (48ull << 20)
#define NO_CKPT 60000000000ULL /* checkpoint_ns: none but those the tests force */

static inline void *blocks(unsigned n)
{
	return ts_buf(n);
}

/* A completion that records its turn among others sharing next. */
struct order {
	unsigned seq, *next;
	int err;
};

static inline void order_done(void *arg, int err)
{
	struct order *o = arg;

	o->seq = ++*o->next;
	o->err = err;
}

static inline void fill_tags(uint8_t *buf, unsigned n, uint64_t tag0, uint64_t salt)
{
	for (unsigned i = 0; i < n; i++)
		ts_fill(buf + (size_t)i * KURA_BLK_SIZE, tag0 + i, salt);
}

/* Blocks blk..blk+n-1 of (layer, ext) read as tags tag0, tag0 + 1, ... or,
 * with tag0 0, as zeros. */
static inline void expect_tags(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk,
			       unsigned n, uint64_t tag0, uint64_t salt)
{
	uint8_t *r = blocks(n);

	memset(r, 0xa5, (size_t)n * KURA_BLK_SIZE);
	CHECK_EQ(ts_read(t, layer, ext, blk, n, r), 0);
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(ts_tag(r + (size_t)i * KURA_BLK_SIZE, salt), tag0 ? tag0 + i : 0);
}

#endif
