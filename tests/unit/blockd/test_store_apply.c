/* The store's pace of in-place writes (blockd/io.c, apply_depth) on a fake
 * disk whose writes take time. */
#include "tests/unit/blockd/storetest.h"
#include "common/util.h"

/* In-place writes keep out of the way of a guest's next journal write: a
 * stream of cached writes at queue depth 1, flushed every 100, finds at
 * most 4 in-place writes at the device whenever its journal write is
 * there, while the writes each flush made durable are applied (blockd/
 * io.c, APPLY_DEPTH_GAP); a burst that leaves more than 8 MiB to apply
 * gets more slots than that; and everything reads back after a restart.
 * (The store's idle rule, every slot after 2 ms without a journal write,
 * is set out of reach here: a slow test machine would trip it.) */
TEST(test_store_in_place_writes_leave_room_for_a_low_queue_depth_guest)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT, .journal_size = 64u << 20,
			    .apply_idle_ns = 3600000000000ULL };
	struct fake_media *m = fake_media_create(160ull << 20);
	uint8_t *b = blocks(256);
	unsigned next = 0;
	struct order o[24];
	uint64_t t0;

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	m->watch_lo = 1u << 20; /* the journal (blockd/layout.h) */
	m->watch_hi = m->watch_lo + t.journal_size;
	m->write_delay_ns = 50000;
	for (unsigned i = 0; i < 400; i++) {
		fill_tags(b, 1, 1000 + i, 11);
		CHECK_EQ(ts_write_cached(&t, 1, i / 256, i % 256, 1, b, i + 1), 0);
		if (i % 100 == 99)
			CHECK_EQ(ts_flush(&t), 0);
	}
	CHECK(m->max_out > 0); /* applied meanwhile */
	CHECK(m->max_out <= 4);
	CHECK(m->max_out_while_in <= 4);
	/* 24 writes of whole extents at once: 6,144 blocks (24 MiB, under the
	 * half of the journal that calls a checkpoint) to apply */
	for (unsigned i = 0; i < 24; i++) {
		o[i] = (struct order){ .next = &next };
		fill_tags(b, 256, 100000 + i * 256, 11);
		CHECK_EQ(kura_blk_write_cached(t.s, 1, 10 + i, 0, 256, b, 1, KURA_IO_GUEST, order_done,
					       &o[i]), 0);
	}
	while (next < 24)
		kura_loop_run_once(t.loop, 100000000ull);
	CHECK_EQ(ts_flush(&t), 0);
	t0 = kura_now_ns();
	while (m->max_out <= 4 && kura_now_ns() - t0 < 2000000000ull)
		kura_loop_run_once(t.loop, 1000000ull);
	CHECK(m->max_out > 4);
	ts_close(&t);
	m->write_delay_ns = 0;
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	expect_tags(&t, 1, 0, 0, 256, 1000, 11);
	expect_tags(&t, 1, 1, 0, 144, 1256, 11);
	for (unsigned i = 0; i < 24; i++) {
		CHECK_EQ(o[i].err, 0);
		expect_tags(&t, 1, 10 + i, 0, 256, 100000 + i * 256, 11);
	}
	ts_close(&t);
	fake_media_destroy(m);
}
