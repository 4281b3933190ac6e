/* The store through its API on a fake disk: data in equals data out. */
#include "blockd/store_int.h"
#include "common/err.h"
#include "common/util.h"
#include "tests/unit/blockd/storetest.h"
#include "tests/unit/harness.h"
#include "tests/unit/tstore.h"

#include <errno.h>

TEST(test_store_write_then_read_returns_same_data)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	uint8_t *w = blocks(8), *r = blocks(8);

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	for (unsigned i = 0; i < 8; i++)
		ts_fill(w + i * KURA_BLK_SIZE, 100 + i, 7);
	CHECK_EQ(ts_write(&t, 1, 0, 10, 8, w, 1), 0);
	CHECK_EQ(ts_read(&t, 1, 0, 10, 8, r), 0);
	CHECK(memcmp(w, r, 8 * KURA_BLK_SIZE) == 0);
	/* a partial read in the middle */
	CHECK_EQ(ts_read(&t, 1, 0, 12, 2, r), 0);
	CHECK(memcmp(w + 2 * KURA_BLK_SIZE, r, 2 * KURA_BLK_SIZE) == 0);
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_absent_blocks_read_as_zeros)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	uint8_t *w = blocks(1), *r = blocks(4);

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	memset(r, 0xaa, 4 * KURA_BLK_SIZE);
	CHECK_EQ(ts_read(&t, 5, 3, 0, 4, r), 0); /* extent never written */
	for (unsigned i = 0; i < 4 * KURA_BLK_SIZE; i++)
		CHECK(r[i] == 0);
	ts_fill(w, 9, 9);
	CHECK_EQ(ts_write(&t, 5, 3, 1, 1, w, 1), 0);
	memset(r, 0xaa, 4 * KURA_BLK_SIZE);
	CHECK_EQ(ts_read(&t, 5, 3, 0, 4, r), 0);
	CHECK_EQ(ts_tag(r, 9), 0);
	CHECK_EQ(ts_tag(r + KURA_BLK_SIZE, 9), 9);
	CHECK_EQ(ts_tag(r + 2 * KURA_BLK_SIZE, 9), 0);
	CHECK_EQ(ts_tag(r + 3 * KURA_BLK_SIZE, 9), 0);
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_bitmap_version_and_list)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_extent_info info;
	uint8_t *w = blocks(3);
	uint64_t *exts;
	size_t n;

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	ts_fill(w, 1, 1);
	ts_fill(w + KURA_BLK_SIZE, 2, 1);
	ts_fill(w + 2 * KURA_BLK_SIZE, 3, 1);
	CHECK_EQ(ts_write(&t, 2, 7, 64, 3, w, 5), 0);
	CHECK_EQ(ts_write(&t, 2, 3, 0, 1, w, 9), 0);
	CHECK_EQ(ts_write(&t, 2, 7, 0, 1, w, 4), 0); /* lower version keeps the higher */
	CHECK_EQ(kura_blk_extent_info(t.s, 2, 7, &info), 0);
	CHECK_EQ(info.version, 5);
	CHECK_EQ(info.nblocks, 4);
	CHECK(bm_test(&info.present, 0) && bm_test(&info.present, 64) &&
	      bm_test(&info.present, 66) && !bm_test(&info.present, 67));
	CHECK_EQ(kura_blk_extent_info(t.s, 2, 8, &info), -ENOENT);
	CHECK_EQ(kura_blk_list(t.s, 2, &exts, &n), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(exts[0], 3);
	CHECK_EQ(exts[1], 7);
	free(exts);
	/* it all survives a restart */
	ts_close(&t);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(kura_blk_extent_info(t.s, 2, 7, &info), 0);
	CHECK_EQ(info.version, 5);
	CHECK_EQ(info.nblocks, 4);
	CHECK_EQ(kura_blk_extent_info(t.s, 2, 3, &info), 0);
	CHECK_EQ(info.version, 9);
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_trim_free_and_move)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_stats st;
	uint8_t *w = blocks(4), *r = blocks(4);

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	for (unsigned i = 0; i < 4; i++)
		ts_fill(w + i * KURA_BLK_SIZE, 20 + i, 3);
	CHECK_EQ(ts_write(&t, 1, 1, 0, 4, w, 1), 0);
	CHECK_EQ(ts_trim(&t, 1, 1, 1, 2), 0);
	CHECK_EQ(ts_read(&t, 1, 1, 0, 4, r), 0);
	CHECK_EQ(ts_tag(r, 3), 20);
	CHECK_EQ(ts_tag(r + KURA_BLK_SIZE, 3), 0);
	CHECK_EQ(ts_tag(r + 2 * KURA_BLK_SIZE, 3), 0);
	CHECK_EQ(ts_tag(r + 3 * KURA_BLK_SIZE, 3), 23);
	/* move keeps the data and empties the source */
	CHECK_EQ(ts_move(&t, 1, 1, 9, 4), 0);
	CHECK_EQ(ts_read(&t, 9, 4, 0, 4, r), 0);
	CHECK_EQ(ts_tag(r, 3), 20);
	CHECK_EQ(ts_tag(r + 3 * KURA_BLK_SIZE, 3), 23);
	CHECK_EQ(ts_read(&t, 1, 1, 0, 1, r), 0);
	CHECK_EQ(ts_tag(r, 3), 0);
	CHECK_EQ(ts_move(&t, 1, 1, 9, 5), -ENOENT);
	CHECK_EQ(ts_write(&t, 9, 5, 0, 1, w, 1), 0);
	CHECK_EQ(ts_move(&t, 9, 4, 9, 5), -EEXIST);
	/* trimming the last blocks frees the extent */
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.used_extents, 2);
	CHECK_EQ(ts_trim(&t, 9, 4, 0, 256), 0);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.used_extents, 1);
	CHECK_EQ(ts_free(&t, 9, 5), 0);
	CHECK_EQ(ts_free(&t, 9, 5), -ENOENT);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.used_extents, 0);
	ts_close(&t);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.used_extents, 0);
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_bad_arguments_rejected)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	uint8_t *w = blocks(1);

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(kura_blk_write(t.s, 1, 0, 250, 7, w, 1, KURA_IO_GUEST, NULL, NULL), -EINVAL);
	CHECK_EQ(kura_blk_write(t.s, 1, 0, 0, 0, w, 1, KURA_IO_GUEST, NULL, NULL), -EINVAL);
	CHECK_EQ(kura_blk_write(t.s, 1, KURA_EXT_MAX, 0, 1, w, 1, KURA_IO_GUEST, NULL, NULL),
		 -EINVAL);
	CHECK_EQ(kura_blk_read(t.s, 1, 0, 0, 1, w + 1, KURA_IO_GUEST, NULL, NULL), -EINVAL);
	CHECK_EQ(kura_blk_read(t.s, 1, 0, 0, 1, w, (enum kura_io_class)99, NULL, NULL), -EINVAL);
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_disk_full_gives_enospc_then_space_is_reused)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_stats st;
	uint8_t *w = blocks(1), *r = blocks(1);
	uint64_t cap, i;

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	kura_blk_stats(t.s, &st);
	cap = st.capacity_extents;
	CHECK(cap >= 16);
	for (i = 0; i < cap; i++) {
		ts_fill(w, i + 1, 5);
		CHECK_EQ(ts_write(&t, 3, i, 0, 1, w, 1), 0);
	}
	ts_fill(w, 999, 5);
	CHECK_EQ(ts_write(&t, 3, cap, 0, 1, w, 1), -ENOSPC);
	/* everything else keeps working: reads, writes into allocated extents */
	CHECK_EQ(ts_write(&t, 3, 0, 1, 1, w, 2), 0);
	CHECK_EQ(ts_read(&t, 3, 5, 0, 1, r), 0);
	CHECK_EQ(ts_tag(r, 5), 6);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.enospc, 1);
	/* freed space is usable again */
	CHECK_EQ(ts_free(&t, 3, 7), 0);
	CHECK_EQ(ts_write(&t, 3, cap, 0, 1, w, 1), 0);
	CHECK_EQ(ts_read(&t, 3, cap, 0, 1, r), 0);
	CHECK_EQ(ts_tag(r, 5), 999);
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_read_error_gives_eio_and_counts)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_stats st;
	uint8_t *w = blocks(2), *r = blocks(2);

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	ts_fill(w, 1, 1);
	ts_fill(w + KURA_BLK_SIZE, 2, 1);
	CHECK_EQ(ts_write(&t, 1, 0, 0, 2, w, 1), 0);
	ts_close(&t);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	m->fail_read_at = m->reads + 2; /* checksum page, then the data read */
	CHECK_EQ(ts_read(&t, 1, 0, 0, 2, r), -EIO);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.io_errors, 1);
	/* the next read works */
	CHECK_EQ(ts_read(&t, 1, 0, 0, 2, r), 0);
	CHECK(memcmp(w, r, 2 * KURA_BLK_SIZE) == 0);
	ts_close(&t);
	fake_media_destroy(m);
}

/* Finds a block's bytes on the fake media by its pattern. */
static uint8_t *find_block(struct fake_media *m, const uint8_t *pattern)
{
	for (uint64_t off = 0; off < m->size; off += KURA_BLK_SIZE)
		if (!memcmp(m->current + off, pattern, KURA_BLK_SIZE) && off >= (64u << 20) / 4)
			return m->current + off;
	return NULL;
}

TEST(test_store_checksum_mismatch_gives_eio_never_wrong_data)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_stats st;
	uint8_t *w = blocks(1), *r = blocks(1), *onmedia;

	t.journal_size = 16u << 20;
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	ts_fill(w, 77, 1);
	CHECK_EQ(ts_write(&t, 1, 0, 5, 1, w, 1), 0);
	ts_close(&t); /* checkpoint: the block is in place */
	onmedia = find_block(m, w);
	CHECK(onmedia != NULL);
	onmedia[100] ^= 0x40; /* silent corruption */
	memcpy(m->durable + (onmedia - m->current), onmedia, KURA_BLK_SIZE);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(ts_read(&t, 1, 0, 5, 1, r), -EIO);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.crc_errors, 1);
	/* rewriting the block heals it */
	CHECK_EQ(ts_write(&t, 1, 0, 5, 1, w, 2), 0);
	CHECK_EQ(ts_read(&t, 1, 0, 5, 1, r), 0);
	CHECK(memcmp(w, r, KURA_BLK_SIZE) == 0);
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_journal_write_error_stops_store_and_restart_recovers)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	uint8_t *w = blocks(1), *r = blocks(1);

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	ts_fill(w, 1, 1);
	CHECK_EQ(ts_write(&t, 1, 0, 0, 1, w, 1), 0);
	while (io_pending(t.s)) /* let the first write be applied in place */
		kura_loop_run_once(t.loop, 1000000);
	m->fail_write_at = m->writes + 1;
	ts_fill(w, 2, 1);
	CHECK_EQ(ts_write(&t, 1, 0, 0, 1, w, 2), -EIO);
	CHECK_EQ(ts_write(&t, 1, 0, 1, 1, w, 2), KURA_E_DEAD);
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(ts_read(&t, 1, 0, 0, 1, r), 0);
	CHECK_EQ(ts_tag(r, 1), 1);
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_journal_wraps_many_times)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	uint8_t *w = blocks(32), *r = blocks(32);
	struct kura_blk_stats st;

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	/* 40 MiB of writes through a 16 MiB journal, then a restart */
	for (unsigned i = 0; i < 320; i++) {
		for (unsigned b = 0; b < 32; b++)
			ts_fill(w + b * KURA_BLK_SIZE, i * 32 + b + 1, 4);
		CHECK_EQ(ts_write(&t, 1, i % 8, (i / 8 % 8) * 32, 32, w, i), 0);
	}
	kura_blk_stats(t.s, &st);
	CHECK(st.checkpoints >= 3);
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	for (unsigned i = 320 - 64; i < 320; i++) {
		CHECK_EQ(ts_read(&t, 1, i % 8, (i / 8 % 8) * 32, 32, r), 0);
		for (unsigned b = 0; b < 32; b++)
			CHECK_EQ(ts_tag(r + b * KURA_BLK_SIZE, 4), i * 32 + b + 1);
	}
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_pools_two_disks_into_one_allocator)
{
	struct tstore t = { .m2 = fake_media_create(40ull << 20) };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_stats st;
	struct kura_blk_extent_info info;
	uint8_t *buf = blocks(1);
	unsigned on[2] = { 0, 0 };
	uint64_t cap, i;

	CHECK_EQ(ts_open(&t, m, "two"), 0);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.ndisks, 2);
	cap = st.capacity_extents;
	for (i = 0; i < cap; i++) {
		ts_fill(buf, i + 1, 11);
		CHECK_EQ(ts_write(&t, 4, i, 0, 1, buf, 1), 0);
		CHECK_EQ(kura_blk_extent_info(t.s, 4, i, &info), 0);
		on[info.disk]++;
	}
	/* both disks hold data, and all of both is usable */
	CHECK(on[0] > 0 && on[1] > 0);
	CHECK_EQ(on[0] + on[1], cap);
	CHECK_EQ(ts_write(&t, 4, cap, 0, 1, buf, 1), -ENOSPC);
	ts_close(&t);
	/* reopened, every block reads back from whichever disk holds it */
	CHECK_EQ(ts_open(&t, m, "two"), 0);
	for (i = 0; i < cap; i++) {
		CHECK_EQ(ts_read(&t, 4, i, 0, 1, buf), 0);
		CHECK_EQ(ts_tag(buf, 11), i + 1);
	}
	ts_close(&t);
	fake_media_destroy(m);
	fake_media_destroy(t.m2);
}

TEST(test_store_replay_touching_more_checksum_pages_than_cached)
{
	struct tstore t = { .checkpoint_ns = 60000000000ULL };
	struct fake_media *m = fake_media_create(96ull << 20);
	uint8_t *w = blocks(1), *r = blocks(1);
	const unsigned n = 60;

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	ts_crash(&t); /* nothing yet; makes the next open a reopen */
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	for (unsigned i = 0; i < n; i++) {
		ts_fill(w, i + 1, 2);
		CHECK_EQ(ts_write(&t, 1, i, 0, 1, w, 1), 0);
	}
	CHECK_EQ(t.s->st.checkpoints, 0);
	ts_crash(&t); /* every write is only in the journal */
	fake_power_on(m);
	t.crc_cache = 8 * KURA_BLK_SIZE; /* restarted with a smaller cache: 8 pages */
	CHECK_EQ(ts_open(&t, m, "s"), 0); /* replay dirties 15 pages */
	for (unsigned i = 0; i < n; i++) {
		CHECK_EQ(ts_read(&t, 1, i, 0, 1, r), 0);
		CHECK_EQ(ts_tag(r, 2), i + 1);
	}
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_checkpoint_stops_when_an_apply_fails)
{
	struct tstore t = { 0 };
	struct fake_media *m = fake_media_create(MEDIA);
	uint8_t *w = blocks(1), *r = blocks(1);

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	ts_fill(w, 1, 3);
	CHECK_EQ(ts_write(&t, 1, 0, 0, 1, w, 1), 0);
	ts_close(&t);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	/* the checksum table cannot be read any more */
	m->bad_off = t.s->pool.d[0].sb.crc_off;
	m->bad_len = t.s->pool.d[0].sb.crc_len;
	ts_fill(w, 2, 3);
	CHECK_EQ(ts_write(&t, 1, 0, 0, 1, w, 2), 0); /* durable in the journal */
	ckpt_request(t.s); /* must not trim the journal past the unapplied write */
	while (!t.s->dead || ckpt_active(t.s))
		kura_loop_run_once(t.loop, 1000000);
	CHECK_EQ(t.s->st.checkpoints, 0);
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(ts_read(&t, 1, 0, 0, 1, r), 0);
	CHECK_EQ(ts_tag(r, 3), 2); /* the acknowledged write, from the journal */
	ts_close(&t);
	fake_media_destroy(m);
}


/* Background writes that fill the journal wait at 3/4 of it; a guest write
 * to another extent goes ahead of them, one to the same extent does not.
 * (Writes of 15 blocks: larger background writes into absent blocks go to
 * their place directly and hardly use the journal.) */
#define BGW 17
TEST(test_store_guest_writes_keep_the_last_quarter_of_the_journal)
{
	struct tstore t = { .journal_size = 16u << 20 };
	struct fake_media *m = fake_media_create(MEDIA);
	static struct order bg[16][BGW];
	struct order g_other = { 0 }, g_same = { 0 };
	unsigned next = 0, last_bg = 0;
	uint8_t *w = blocks(15), *g1 = blocks(1), *g2 = blocks(1), *r = blocks(1);

	memset(bg, 0, sizeof(bg));
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	for (unsigned b = 0; b < 15; b++)
		ts_fill(w + b * KURA_BLK_SIZE, b + 1, 7);
	ts_fill(g1, 1001, 7);
	ts_fill(g2, 1002, 7);
	/* 16 MiB of clone writes submitted at once: more than 3/4 of it */
	for (unsigned i = 0; i < 16; i++)
		for (unsigned k = 0; k < BGW; k++) {
			bg[i][k].next = &next;
			CHECK_EQ(kura_blk_write(t.s, 2, i, k * 15, 15, w, 1, KURA_IO_CLONE,
						order_done, &bg[i][k]), 0);
		}
	CHECK(t.s->blocked_head != NULL);
	g_other.next = g_same.next = &next;
	CHECK_EQ(kura_blk_write(t.s, 1, 0, 0, 1, g1, 1, KURA_IO_GUEST, order_done, &g_other), 0);
	CHECK_EQ(kura_blk_write(t.s, 2, 15, 0, 1, g2, 2, KURA_IO_GUEST, order_done, &g_same), 0);
	while (next < 16 * BGW + 2)
		kura_loop_run_once(t.loop, 100000000ull);
	for (unsigned i = 0; i < 16; i++)
		for (unsigned k = 0; k < BGW; k++) {
			CHECK_EQ(bg[i][k].err, 0);
			last_bg = KURA_MAX(last_bg, bg[i][k].seq);
		}
	CHECK_EQ(g_other.err, 0);
	CHECK_EQ(g_same.err, 0);
	CHECK(g_other.seq < last_bg);  /* passed the waiting clone writes */
	for (unsigned k = 0; k < BGW; k++)
		CHECK(g_same.seq > bg[15][k].seq); /* never passes a write to its extent */
	CHECK_EQ(ts_read(&t, 2, 15, 0, 1, r), 0);
	CHECK_EQ(ts_tag(r, 7), 1002);
	CHECK_EQ(ts_read(&t, 1, 0, 0, 1, r), 0);
	CHECK_EQ(ts_tag(r, 7), 1001);
	ts_close(&t);
	fake_media_destroy(m);
}

/* Device stalls: I/Os over 100 ms are counted per disk; the log reports
 * them at most every 10 s, with the count and the worst since the last report. */
TEST(test_disk_counts_slow_ios)
{
	struct kura_disk d = { .path = "fake" };
	const uint64_t ms = 1000000ull, s0 = 1000000000000ull;

	kura_disk_note_latency(&d, 99 * ms, s0);
	CHECK_EQ(d.slow.ios, 0);
	kura_disk_note_latency(&d, 150 * ms, s0);
	CHECK_EQ(d.slow.ios, 1);
	CHECK_EQ(d.slow.pending, 0); /* reported at once: the first */
	CHECK_EQ(d.slow.reported_ns, s0);
	kura_disk_note_latency(&d, 600 * ms, s0 + 1000 * ms);
	kura_disk_note_latency(&d, 200 * ms, s0 + 2000 * ms);
	CHECK_EQ(d.slow.ios, 3);
	CHECK_EQ(d.slow.pending, 2); /* held until 10 s have passed */
	CHECK_EQ(d.slow.pending_worst_ns, 600 * ms);
	kura_disk_note_latency(&d, 120 * ms, s0 + 10000 * ms);
	CHECK_EQ(d.slow.pending, 0);
	CHECK_EQ(d.slow.ios, 4);
	CHECK_EQ(d.slow.worst_ns, 600 * ms);
}

/* A replica's copy is applied only when newer than the extent: a write sent
 * twice lands once, an older one never over a newer one; it survives a
 * crash like any write. */
TEST(test_store_replica_writes_apply_only_newer_versions)
{
	struct fake_media *m = fake_media_create(MEDIA);
	struct tstore t = { 0 };
	struct kura_blk_extent_info info;
	uint8_t *b = blocks(2), *r = blocks(2);

	CHECK_EQ(ts_open(&t, m, "replica"), 0);
	ts_fill(b, 1, 3);
	ts_fill(b + KURA_BLK_SIZE, 1, 3);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 10, 2, b, 5, 0), 0); /* new extent: applied */
	ts_fill(b, 2, 3);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 10, 1, b, 5, 0), 0); /* the same version again */
	ts_fill(b, 3, 3);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 11, 1, b, 4, 3), 0); /* older */
	CHECK_EQ(ts_read(&t, 9, 4, 10, 2, r), 0);
	CHECK_EQ(ts_tag(r, 3), 1);
	CHECK_EQ(ts_tag(r + KURA_BLK_SIZE, 3), 1);
	ts_fill(b, 4, 3);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 11, 1, b, 6, 5), 0); /* newer: applied */
	CHECK_EQ(kura_blk_extent_info(t.s, 9, 4, &info), 0);
	CHECK_EQ(info.version, 6);
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "replica"), 0);
	CHECK_EQ(ts_read(&t, 9, 4, 10, 2, r), 0);
	CHECK_EQ(ts_tag(r, 3), 1);
	CHECK_EQ(ts_tag(r + KURA_BLK_SIZE, 3), 4);
	ts_fill(b, 5, 3);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 10, 1, b, 6, 5), 0); /* replayed version kept */
	CHECK_EQ(ts_read(&t, 9, 4, 10, 1, r), 0);
	CHECK_EQ(ts_tag(r, 3), 1);
	ts_close(&t);
	fake_media_destroy(m);
}

/* A replica's copy that follows a version this copy does not hold (it
 * missed a write in between) is written, but the extent keeps its version
 * (a new extent gets 0), also after a crash: the copy never claims a
 * version whose content it lacks. Once it holds the version a copy
 * follows, the copies raise it again. */
TEST(test_store_replica_write_after_a_missed_one_keeps_the_version)
{
	struct fake_media *m = fake_media_create(MEDIA);
	struct tstore t = { 0 };
	struct kura_blk_extent_info info;
	struct kura_blk_stats st;
	uint8_t *b = blocks(1), *r = blocks(1);

	CHECK_EQ(ts_open(&t, m, "replica-gap"), 0);
	ts_fill(b, 1, 7);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 0, 1, b, 5, 0), 0);
	ts_fill(b, 2, 7);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 1, 1, b, 8, 7), 0); /* 6 and 7 missed */
	CHECK_EQ(kura_blk_extent_info(t.s, 9, 4, &info), 0);
	CHECK_EQ(info.version, 5);
	CHECK_EQ(ts_read(&t, 9, 4, 1, 1, r), 0);
	CHECK_EQ(ts_tag(r, 7), 2); /* its blocks are there */
	ts_fill(b, 3, 7);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 2, 1, b, 9, 8), 0); /* follows one it holds no version of */
	CHECK_EQ(kura_blk_extent_info(t.s, 9, 4, &info), 0);
	CHECK_EQ(info.version, 5);
	ts_fill(b, 4, 7);
	CHECK_EQ(ts_write_replica(&t, 9, 5, 0, 1, b, 9, 8), 0); /* a new extent */
	CHECK_EQ(kura_blk_extent_info(t.s, 9, 5, &info), 0);
	CHECK_EQ(info.version, 0);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.replica_gaps, 3);
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "replica-gap"), 0);
	CHECK_EQ(kura_blk_extent_info(t.s, 9, 4, &info), 0);
	CHECK_EQ(info.version, 5);
	CHECK_EQ(ts_read(&t, 9, 4, 2, 1, r), 0);
	CHECK_EQ(ts_tag(r, 7), 3);
	CHECK_EQ(kura_blk_extent_info(t.s, 9, 5, &info), 0);
	CHECK_EQ(info.version, 0);
	ts_fill(b, 5, 7);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 3, 1, b, 10, 5), 0); /* follows the version it holds */
	CHECK_EQ(kura_blk_extent_info(t.s, 9, 4, &info), 0);
	CHECK_EQ(info.version, 10);
	ts_close(&t);
	fake_media_destroy(m);
}

/* ---- direct writes (blockd/io.c) ---- */

/* A write of class cls, waited for. */
static int cls_write(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n,
		     const void *buf, uint64_t version, enum kura_io_class cls)
{
	unsigned next = 0;
	struct order o = { .next = &next };
	int err = kura_blk_write(t->s, layer, ext, blk, n, buf, version, cls, order_done, &o);

	if (err)
		return err;
	while (!o.seq)
		kura_loop_run_once(t->loop, 100000000ull);
	return o.err;
}

static uint64_t direct_writes(struct tstore *t)
{
	struct kura_blk_stats st;

	kura_blk_stats(t->s, &st);
	return st.direct_writes;
}

static void run_until(struct tstore *t, const unsigned *next, unsigned n)
{
	while (*next < n)
		kura_loop_run_once(t->loop, 100000000ull);
}

/* Large background writes into new extents are direct; guest writes and
 * small ones are not; all read back, after a restart and after a crash
 * that leaves the direct write only in the journal (as a record of
 * checksums: replay must not write its blocks). */
TEST(test_store_direct_clone_write_counts_reads_back_and_survives_crash)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_extent_info info;
	struct kura_blk_stats st;
	uint8_t *a = blocks(256), *b = blocks(256), *c = blocks(15), *d = blocks(16),
		*e = blocks(256);
	uint64_t ck0;

	fill_tags(a, 256, 1000, 5);
	fill_tags(b, 256, 2000, 5);
	fill_tags(c, 15, 3000, 5);
	fill_tags(d, 16, 4000, 5);
	fill_tags(e, 256, 5000, 5);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(cls_write(&t, 1, 0, 0, 256, a, 3, KURA_IO_CLONE), 0);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.direct_writes, 1);
	CHECK_EQ(st.direct_bytes, 256 * KURA_BLK_SIZE);
	CHECK_EQ(st.writes, 1);
	CHECK_EQ(cls_write(&t, 1, 1, 0, 256, b, 3, KURA_IO_GUEST), 0);
	CHECK_EQ(direct_writes(&t), 1);
	CHECK_EQ(cls_write(&t, 1, 2, 100, 15, c, 3, KURA_IO_CLONE), 0);
	CHECK_EQ(direct_writes(&t), 1);
	CHECK_EQ(cls_write(&t, 1, 3, 200, 16, d, 3, KURA_IO_REBUILD), 0);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.direct_writes, 2);
	CHECK_EQ(st.direct_bytes, (256 + 16) * KURA_BLK_SIZE);
	CHECK_EQ(st.writes, 4);
	expect_tags(&t, 1, 0, 0, 256, 1000, 5);
	expect_tags(&t, 1, 1, 0, 256, 2000, 5);
	expect_tags(&t, 1, 2, 100, 15, 3000, 5);
	expect_tags(&t, 1, 3, 200, 16, 4000, 5);
	expect_tags(&t, 1, 3, 0, 200, 0, 5);
	CHECK_EQ(kura_blk_extent_info(t.s, 1, 0, &info), 0);
	CHECK_EQ(info.nblocks, 256);
	CHECK_EQ(info.version, 3);
	ts_close(&t);

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	expect_tags(&t, 1, 0, 0, 256, 1000, 5);
	expect_tags(&t, 1, 1, 0, 256, 2000, 5);
	expect_tags(&t, 1, 2, 100, 15, 3000, 5);
	expect_tags(&t, 1, 3, 200, 16, 4000, 5);
	CHECK_EQ(kura_blk_extent_info(t.s, 1, 3, &info), 0);
	CHECK_EQ(info.nblocks, 16);
	/* a direct write acknowledged, then the power fails before any
	 * checkpoint: only its record knows of it */
	ck0 = t.s->st.checkpoints;
	CHECK_EQ(cls_write(&t, 1, 4, 0, 256, e, 7, KURA_IO_MERGE), 0);
	CHECK_EQ(direct_writes(&t), 1);
	CHECK_EQ(t.s->st.checkpoints, ck0);
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	expect_tags(&t, 1, 4, 0, 256, 5000, 5);
	CHECK_EQ(kura_blk_extent_info(t.s, 1, 4, &info), 0);
	CHECK_EQ(info.nblocks, 256);
	CHECK_EQ(info.version, 7);
	expect_tags(&t, 1, 0, 0, 256, 1000, 5);
	expect_tags(&t, 1, 3, 200, 16, 4000, 5);
	ts_close(&t);
	/* and once more, now from a checkpoint */
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	expect_tags(&t, 1, 4, 0, 256, 5000, 5);
	ts_close(&t);
	fake_media_destroy(m);
}

/* The data of a direct write is in place before its record: when the power
 * fails before the record is durable, the write is not acknowledged and its
 * blocks are absent after the restart. */
TEST(test_store_direct_write_without_its_record_is_absent_after_crash)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_extent_info info;
	struct order o = { 0 };
	unsigned next = 0;
	uint8_t *a = blocks(256), *g = blocks(1);

	fill_tags(a, 256, 100, 6);
	ts_fill(g, 7, 6);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(ts_write(&t, 1, 9, 0, 1, g, 1), 0);
	o.next = &next;
	CHECK_EQ(kura_blk_write(t.s, 1, 0, 0, 256, a, 1, KURA_IO_CLONE, order_done, &o), 0);
	CHECK_EQ(t.s->ndirect, 1);
	t.m->lost = 1; /* the data went with FUA; nothing after it reaches the media */
	run_until(&t, &next, 1);
	CHECK(o.err != 0);
	CHECK_EQ(direct_writes(&t), 0);
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(kura_blk_extent_info(t.s, 1, 0, &info), -ENOENT);
	expect_tags(&t, 1, 0, 0, 256, 0, 6);
	expect_tags(&t, 1, 9, 0, 1, 7, 6);
	ts_close(&t);
	fake_media_destroy(m);
}

/* A write and a trim to the range of a direct write in flight are held and
 * reach the journal after its record, in order: they win over it. */
TEST_T(test_store_direct_write_holds_later_writes_and_trims_of_its_extent, 20)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_extent_info info;
	struct order od = { 0 }, og = { 0 }, ot = { 0 };
	unsigned next = 0;
	uint8_t *a = blocks(64), *g = blocks(1);

	fill_tags(a, 64, 500, 8);
	ts_fill(g, 9999, 8);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	od.next = og.next = ot.next = &next;
	CHECK_EQ(kura_blk_write(t.s, 2, 0, 0, 64, a, 1, KURA_IO_CLONE, order_done, &od), 0);
	CHECK_EQ(kura_blk_write(t.s, 2, 0, 10, 1, g, 2, KURA_IO_GUEST, order_done, &og), 0);
	CHECK_EQ(kura_blk_trim(t.s, 2, 0, 20, 1, order_done, &ot), 0);
	CHECK(t.s->held_head != NULL);
	run_until(&t, &next, 3);
	CHECK_EQ(od.err, 0);
	CHECK_EQ(og.err, 0);
	CHECK_EQ(ot.err, 0);
	CHECK(od.seq < og.seq);
	CHECK(og.seq < ot.seq);
	CHECK_EQ(direct_writes(&t), 1);
	CHECK(t.s->held_head == NULL);
	expect_tags(&t, 2, 0, 0, 10, 500, 8);
	expect_tags(&t, 2, 0, 10, 1, 9999, 8);
	expect_tags(&t, 2, 0, 11, 9, 511, 8);
	expect_tags(&t, 2, 0, 20, 1, 0, 8);
	expect_tags(&t, 2, 0, 21, 43, 521, 8);
	CHECK_EQ(kura_blk_extent_info(t.s, 2, 0, &info), 0);
	CHECK_EQ(info.nblocks, 63);
	CHECK_EQ(info.version, 2);
	/* replayed in the same order */
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	expect_tags(&t, 2, 0, 0, 10, 500, 8);
	expect_tags(&t, 2, 0, 10, 1, 9999, 8);
	expect_tags(&t, 2, 0, 11, 9, 511, 8);
	expect_tags(&t, 2, 0, 20, 1, 0, 8);
	expect_tags(&t, 2, 0, 21, 43, 521, 8);
	CHECK_EQ(kura_blk_extent_info(t.s, 2, 0, &info), 0);
	CHECK_EQ(info.nblocks, 63);
	ts_close(&t);
	fake_media_destroy(m);
}

/* Moves and frees touching an extent a direct write is filling wait for
 * its record: a move onto it then finds it there, a move of it takes its
 * data along, a free frees it. */
TEST(test_store_direct_write_holds_moves_and_frees_of_its_extent)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_extent_info info;
	struct kura_blk_stats st;
	struct order o[6] = { 0 };
	unsigned next = 0;
	uint8_t *a = blocks(256), *b = blocks(256), *c = blocks(256), *g = blocks(1);
	uint64_t used;

	fill_tags(a, 256, 10000, 9);
	fill_tags(b, 256, 20000, 9);
	fill_tags(c, 256, 30000, 9);
	ts_fill(g, 77, 9);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(ts_write(&t, 3, 5, 0, 1, g, 1), 0);
	kura_blk_stats(t.s, &st);
	used = st.used_extents;
	for (unsigned i = 0; i < 6; i++)
		o[i].next = &next;
	/* move onto the extent being filled: submitted after the write */
	CHECK_EQ(kura_blk_write(t.s, 3, 9, 0, 256, a, 1, KURA_IO_CLONE, order_done, &o[0]), 0);
	CHECK_EQ(kura_blk_move(t.s, 3, 5, 3, 9, order_done, &o[1]), 0);
	CHECK(t.s->held_head != NULL);
	/* free of the extent being filled */
	CHECK_EQ(kura_blk_write(t.s, 3, 20, 0, 256, b, 1, KURA_IO_CLONE, order_done, &o[2]), 0);
	CHECK_EQ(kura_blk_free(t.s, 3, 20, order_done, &o[3]), 0);
	/* move of the extent being filled */
	CHECK_EQ(kura_blk_write(t.s, 3, 40, 0, 256, c, 1, KURA_IO_CLONE, order_done, &o[4]), 0);
	CHECK_EQ(kura_blk_move(t.s, 3, 40, 3, 41, order_done, &o[5]), 0);
	CHECK_EQ(t.s->ndirect, 3);
	run_until(&t, &next, 6);
	CHECK_EQ(o[0].err, 0);
	CHECK_EQ(o[1].err, -EEXIST);
	CHECK_EQ(o[2].err, 0);
	CHECK_EQ(o[3].err, 0);
	CHECK_EQ(o[4].err, 0);
	CHECK_EQ(o[5].err, 0);
	/* (a move that fails answers at once, as on the journaled path: its
	 * -EEXIST says it was held, else it would have gone first) */
	CHECK(o[2].seq < o[3].seq);
	CHECK(o[4].seq < o[5].seq);
	CHECK_EQ(direct_writes(&t), 3);
	for (unsigned pass = 0; pass < 2; pass++) {
		expect_tags(&t, 3, 5, 0, 1, 77, 9);
		expect_tags(&t, 3, 9, 0, 256, 10000, 9);
		CHECK_EQ(kura_blk_extent_info(t.s, 3, 20, &info), -ENOENT);
		expect_tags(&t, 3, 20, 0, 256, 0, 9);
		CHECK_EQ(kura_blk_extent_info(t.s, 3, 40, &info), -ENOENT);
		expect_tags(&t, 3, 41, 0, 256, 30000, 9);
		kura_blk_stats(t.s, &st);
		CHECK_EQ(st.used_extents, used + 2);
		if (pass)
			break;
		ts_crash(&t); /* replayed in the same order */
		fake_power_on(m);
		CHECK_EQ(ts_open(&t, m, "s"), 0);
	}
	ts_close(&t);
	fake_media_destroy(m);
}

/* A flush answers only once the direct writes submitted before it are
 * durable. */
TEST(test_store_direct_write_flush_waits_for_it)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	struct order ow = { 0 }, of = { 0 }, of2 = { 0 };
	unsigned next = 0;
	uint8_t *a = blocks(256);

	fill_tags(a, 256, 40000, 10);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	ow.next = of.next = of2.next = &next;
	CHECK_EQ(kura_blk_write(t.s, 4, 0, 0, 256, a, 1, KURA_IO_CLONE, order_done, &ow), 0);
	CHECK_EQ(t.s->ndirect, 1);
	CHECK_EQ(kura_blk_flush(t.s, order_done, &of), 0);
	run_until(&t, &next, 2);
	CHECK_EQ(ow.err, 0);
	CHECK_EQ(of.err, 0);
	CHECK(ow.seq < of.seq);
	CHECK_EQ(direct_writes(&t), 1);
	/* with nothing in flight a flush just goes */
	CHECK_EQ(kura_blk_flush(t.s, order_done, &of2), 0);
	run_until(&t, &next, 3);
	CHECK_EQ(of2.err, 0);
	expect_tags(&t, 4, 0, 0, 256, 40000, 10);
	ts_close(&t);
	fake_media_destroy(m);
}

/* An extent that a record in the live journal writes to or frees takes no
 * direct write: a replay could write over it, or the write could land on
 * an extent whose release is not yet durable. */
TEST(test_store_direct_writes_avoid_extents_busy_in_the_journal)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_stats st;
	struct idx_entry *e;
	uint8_t *g = blocks(1), *a = blocks(256);
	uint64_t cap, nd, i;
	uint32_t x, freed;

	fill_tags(a, 256, 60000, 11);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	/* a journaled write makes its extent busy until a checkpoint */
	ts_fill(g, 1, 11);
	CHECK_EQ(ts_write(&t, 5, 0, 0, 1, g, 1), 0);
	e = idx_find(&t.s->idx, 5, 0);
	CHECK(e != NULL);
	x = e->loc;
	CHECK_EQ(pool_clean(&t.s->pool, x, t.s->journal.tail_seq), 0);
	nd = direct_writes(&t);
	CHECK_EQ(cls_write(&t, 5, 0, 64, 64, a, 1, KURA_IO_CLONE), 0);
	CHECK_EQ(direct_writes(&t), nd); /* journaled */
	expect_tags(&t, 5, 0, 0, 1, 1, 11);
	expect_tags(&t, 5, 0, 64, 64, 60000, 11);
	CHECK_EQ(ckpt_sync(t.s), 0);
	CHECK_EQ(pool_clean(&t.s->pool, x, t.s->journal.tail_seq), 1);
	CHECK_EQ(cls_write(&t, 5, 0, 128, 64, a + 64 * KURA_BLK_SIZE, 1, KURA_IO_CLONE), 0);
	CHECK_EQ(direct_writes(&t), nd + 1);
	CHECK_EQ(idx_find(&t.s->idx, 5, 0)->loc, x);
	/* a direct write into an extent is no reason to keep it busy */
	CHECK_EQ(pool_clean(&t.s->pool, x, t.s->journal.tail_seq), 1);
	/* but a direct write into blocks the extent holds is journaled */
	CHECK_EQ(cls_write(&t, 5, 0, 100, 64, a + 192 * KURA_BLK_SIZE, 1, KURA_IO_CLONE), 0);
	CHECK_EQ(direct_writes(&t), nd + 1);
	expect_tags(&t, 5, 0, 0, 1, 1, 11);
	expect_tags(&t, 5, 0, 64, 36, 60000, 11);
	expect_tags(&t, 5, 0, 100, 64, 60192, 11);
	expect_tags(&t, 5, 0, 164, 28, 60100, 11);
	expect_tags(&t, 5, 0, 192, 64, 0, 11);

	/* fill the disk, so that the only free extent is one whose release is
	 * still in the live journal */
	kura_blk_stats(t.s, &st);
	cap = st.capacity_extents;
	CHECK(cap >= 8);
	for (i = 1; i < cap; i++) {
		ts_fill(g, 100 + i, 11);
		CHECK_EQ(ts_write(&t, 6, i, 0, 1, g, 1), 0);
	}
	CHECK_EQ(ckpt_sync(t.s), 0);
	freed = idx_find(&t.s->idx, 6, 3)->loc;
	CHECK_EQ(pool_clean(&t.s->pool, freed, t.s->journal.tail_seq), 1);
	CHECK_EQ(ts_trim(&t, 6, 3, 0, 1), 0);
	CHECK(idx_find(&t.s->idx, 6, 3) == NULL);
	CHECK_EQ(pool_clean(&t.s->pool, freed, t.s->journal.tail_seq), 0);
	nd = direct_writes(&t);
	CHECK_EQ(cls_write(&t, 7, 0, 0, 256, a, 2, KURA_IO_CLONE), 0);
	CHECK_EQ(direct_writes(&t), nd); /* journaled, on the only free extent */
	CHECK_EQ(idx_find(&t.s->idx, 7, 0)->loc, freed);
	expect_tags(&t, 7, 0, 0, 256, 60000, 11);
	/* once the release is checkpointed the extent may take a direct write */
	CHECK_EQ(ckpt_sync(t.s), 0);
	CHECK_EQ(ts_free(&t, 7, 0), 0);
	CHECK_EQ(pool_clean(&t.s->pool, freed, t.s->journal.tail_seq), 0);
	CHECK_EQ(ckpt_sync(t.s), 0);
	CHECK_EQ(pool_clean(&t.s->pool, freed, t.s->journal.tail_seq), 1);
	CHECK_EQ(cls_write(&t, 7, 1, 0, 256, a, 3, KURA_IO_CLONE), 0);
	CHECK_EQ(direct_writes(&t), nd + 1);
	CHECK_EQ(idx_find(&t.s->idx, 7, 1)->loc, freed);
	expect_tags(&t, 7, 1, 0, 256, 60000, 11);
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	expect_tags(&t, 7, 1, 0, 256, 60000, 11);
	expect_tags(&t, 7, 0, 0, 256, 0, 11);
	expect_tags(&t, 6, 3, 0, 1, 0, 11);
	expect_tags(&t, 6, 4, 0, 1, 104, 11);
	expect_tags(&t, 5, 0, 100, 64, 60192, 11);
	ts_close(&t);
	fake_media_destroy(m);
}

/* The direct data write fails: the write gets -EIO, what it held fails,
 * the store stops; after a restart nothing of it is there and what was
 * acknowledged before is. */
TEST(test_store_direct_write_error_stops_store_and_restart_recovers)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_extent_info info;
	struct order ow = { 0 }, og = { 0 }, of = { 0 };
	unsigned next = 0;
	uint8_t *a = blocks(256), *b = blocks(256), *g = blocks(1);

	fill_tags(a, 256, 70000, 12);
	fill_tags(b, 256, 80000, 12);
	ts_fill(g, 5, 12);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(ts_write(&t, 6, 0, 0, 1, g, 1), 0);
	CHECK_EQ(cls_write(&t, 6, 1, 0, 256, a, 1, KURA_IO_CLONE), 0);
	CHECK_EQ(direct_writes(&t), 1);
	m->fail_write_at = m->writes + 1; /* the next write: the direct one's data */
	ow.next = og.next = of.next = &next;
	CHECK_EQ(kura_blk_write(t.s, 6, 2, 0, 256, b, 1, KURA_IO_CLONE, order_done, &ow), 0);
	CHECK_EQ(t.s->ndirect, 1);
	CHECK_EQ(kura_blk_write(t.s, 6, 2, 0, 1, g, 2, KURA_IO_GUEST, order_done, &og), 0);
	CHECK_EQ(kura_blk_flush(t.s, order_done, &of), 0);
	run_until(&t, &next, 3);
	CHECK_EQ(ow.err, -EIO);
	CHECK(og.err != 0);
	CHECK(of.err != 0);
	CHECK(ow.seq < og.seq);
	CHECK_EQ(kura_blk_store_dead(t.s), 1);
	CHECK_EQ(direct_writes(&t), 1);
	CHECK_EQ(ts_write(&t, 6, 3, 0, 1, g, 1), KURA_E_DEAD);
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(kura_blk_extent_info(t.s, 6, 2, &info), -ENOENT);
	expect_tags(&t, 6, 2, 0, 256, 0, 12);
	expect_tags(&t, 6, 0, 0, 1, 5, 12);
	expect_tags(&t, 6, 1, 0, 256, 70000, 12);
	/* and the store works again, direct writes included */
	CHECK_EQ(cls_write(&t, 6, 2, 0, 256, b, 2, KURA_IO_CLONE), 0);
	CHECK_EQ(direct_writes(&t), 1);
	expect_tags(&t, 6, 2, 0, 256, 80000, 12);
	ts_close(&t);
	fake_media_destroy(m);
}

/* The store stops (a direct write's data write fails) while the journal
 * batch of a durable write is on its way to the disk, written plainly
 * because a cached batch went before it (a flush was to follow): the write
 * gets its error; it is not left waiting for a flush a stopped store never
 * issues. */
TEST(test_store_stop_with_a_batch_in_flight_answers_its_writes)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	struct order od = { 0 }, ow = { 0 };
	unsigned next = 0;
	uint8_t *a = blocks(256), *g = blocks(1);

	fill_tags(a, 256, 70000, 12);
	ts_fill(g, 5, 12);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(ts_write_cached(&t, 1, 0, 0, 1, g, 1), 0);
	od.next = ow.next = &next;
	/* the guest write's batch goes to the disk on the loop's next turn,
	 * after the direct write's data went (and before that fails) */
	CHECK_EQ(kura_blk_write(t.s, 1, 0, 1, 1, g, 2, KURA_IO_GUEST, order_done, &ow), 0);
	m->fail_write_at = m->writes + 1; /* the direct write's data */
	CHECK_EQ(kura_blk_write(t.s, 6, 1, 0, 256, a, 1, KURA_IO_CLONE, order_done, &od), 0);
	CHECK_EQ(t.s->ndirect, 1);
	for (unsigned i = 0; i < 200 && next < 2; i++)
		kura_loop_run_once(t.loop, 10000000ull);
	CHECK_EQ(kura_blk_store_dead(t.s), 1);
	CHECK_EQ(od.err, -EIO);
	CHECK_EQ(next, 2);
	CHECK(ow.err != 0);
	ts_crash(&t);
	fake_media_destroy(m);
}

/* A large clone write that waited for journal room goes direct once it
 * has room; a guest write to its extent that waited behind it is then held
 * behind it, and what waited behind that guest write still goes. */
TEST(test_store_direct_write_that_waited_for_room_keeps_later_waiters)
{
	struct tstore t = { .journal_size = 16u << 20 };
	struct fake_media *m = fake_media_create(MEDIA);
	static struct order bg[16][BGW];
	struct order od = { 0 }, op = { 0 }, oq = { 0 };
	unsigned next = 0;
	uint64_t deadline;
	uint8_t *w = blocks(15), *a = blocks(256), *g1 = blocks(1), *g2 = blocks(1);

	memset(bg, 0, sizeof(bg));
	fill_tags(w, 15, 1, 13);
	fill_tags(a, 256, 1000, 13);
	ts_fill(g1, 5001, 13);
	ts_fill(g2, 5002, 13);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	/* journaled clone writes: more than 3/4 of the journal */
	for (unsigned i = 0; i < 16; i++)
		for (unsigned k = 0; k < BGW; k++) {
			bg[i][k].next = &next;
			CHECK_EQ(kura_blk_write(t.s, 2, i, k * 15, 15, w, 1, KURA_IO_CLONE,
						order_done, &bg[i][k]), 0);
		}
	CHECK(t.s->blocked_head != NULL);
	od.next = op.next = oq.next = &next;
	CHECK_EQ(kura_blk_write(t.s, 9, 0, 0, 256, a, 1, KURA_IO_CLONE, order_done, &od), 0);
	CHECK_EQ(kura_blk_write(t.s, 9, 0, 5, 1, g1, 2, KURA_IO_GUEST, order_done, &op), 0);
	CHECK_EQ(kura_blk_write(t.s, 9, 1, 0, 1, g2, 2, KURA_IO_GUEST, order_done, &oq), 0);
	CHECK_EQ(t.s->ndirect, 0); /* all three wait for room */
	deadline = kura_now_ns() + 20000000000ull;
	while (next < 16 * BGW + 3 && kura_now_ns() < deadline)
		kura_loop_run_once(t.loop, 100000000ull);
	CHECK(od.seq != 0);
	CHECK(op.seq != 0);
	CHECK(oq.seq != 0); /* not lost from the list of waiters */
	CHECK_EQ(next, 16 * BGW + 3);
	CHECK_EQ(od.err, 0);
	CHECK_EQ(op.err, 0);
	CHECK_EQ(oq.err, 0);
	CHECK(od.seq < op.seq);
	expect_tags(&t, 9, 0, 0, 5, 1000, 13);
	expect_tags(&t, 9, 0, 5, 1, 5001, 13);
	expect_tags(&t, 9, 0, 6, 250, 1006, 13);
	expect_tags(&t, 9, 1, 0, 1, 5002, 13);
	expect_tags(&t, 2, 15, 0, 15, 1, 13);
	ts_close(&t);
	fake_media_destroy(m);
}

TEST(test_store_failed_data_disk_is_recorded_and_dropped_at_open)
{
	struct tstore t = { .m2 = fake_media_create(40ull << 20) };
	struct fake_media *m = fake_media_create(MEDIA);
	uint8_t *w = blocks(1), *r = blocks(1);
	struct kura_blk_extent_info info;
	struct kura_blk_disk_info di;
	struct kura_blk_stats st;
	unsigned on[2] = { 0, 0 }, disk_of[24];
	uint64_t lost = UINT64_MAX, cap, m2_ops;

	CHECK_EQ(ts_open(&t, m, "fd"), 0);
	CHECK_EQ(kura_blk_failed_disk(t.s), -1);
	kura_blk_stats(t.s, &st);
	cap = st.capacity_extents;
	for (unsigned i = 0; i < 24; i++) {
		ts_fill(w, i + 1, 21);
		CHECK_EQ(ts_write(&t, 5, i, 0, 1, w, 1), 0);
		CHECK_EQ(kura_blk_extent_info(t.s, 5, i, &info), 0);
		disk_of[i] = info.disk;
		on[info.disk]++;
		if (info.disk == 1 && lost == UINT64_MAX)
			lost = i;
	}
	CHECK(on[0] > 0 && on[1] > 0);
	while (io_pending(t.s)) /* every write in place */
		kura_loop_run_once(t.loop, 1000000);
	/* disk 1 fails: a write there is journaled, then cannot go in place */
	t.m2->fail_write_at = t.m2->writes + 1;
	ts_fill(w, 100, 21);
	ts_write(&t, 5, lost, 1, 1, w, 2);
	for (int k = 0; k < 2000 && !kura_blk_store_dead(t.s); k++)
		kura_loop_run_once(t.loop, 1000000);
	CHECK(kura_blk_store_dead(t.s));
	CHECK_EQ(kura_blk_failed_disk(t.s), 1);
	ts_crash(&t);
	fake_power_on(m);
	m2_ops = t.m2->reads + t.m2->writes;

	/* the disk is recorded as failed: its extents are lost, and open says so */
	CHECK(ts_open(&t, m, "fd") != 0);
	CHECK(strstr(t.errbuf, "--drop-failed-disks") != NULL);
	t.drop_failed = 1;
	CHECK_EQ(ts_open(&t, m, "fd"), 0);
	CHECK_EQ(kura_blk_disk_info(t.s, 1, &di), 0);
	CHECK(di.failed);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.ndisks, 2);
	CHECK(st.capacity_extents < cap);
	for (unsigned i = 0; i < 24; i++) {
		if (disk_of[i] == 1) {
			CHECK_EQ(kura_blk_extent_info(t.s, 5, i, &info), -ENOENT);
			continue;
		}
		CHECK_EQ(ts_read(&t, 5, i, 0, 1, r), 0);
		CHECK_EQ(ts_tag(r, 21), i + 1);
	}
	/* new data goes to the disk that is left */
	ts_fill(w, 200, 21);
	CHECK_EQ(ts_write(&t, 5, lost, 0, 1, w, 3), 0);
	CHECK_EQ(kura_blk_extent_info(t.s, 5, lost, &info), 0);
	CHECK_EQ(info.disk, 0);
	ts_close(&t);

	/* the drop is durable: the next open needs no flag, and never reads disk 1 */
	t.drop_failed = 0;
	CHECK_EQ(ts_open(&t, m, "fd"), 0);
	for (unsigned i = 0; i < 24; i++) {
		CHECK_EQ(ts_read(&t, 5, i, 0, 1, r), 0);
		CHECK_EQ(ts_tag(r, 21), i == lost ? 200 : disk_of[i] == 1 ? 0 : i + 1);
	}
	ts_close(&t);
	CHECK_EQ(t.m2->reads + t.m2->writes, m2_ops);
	fake_media_destroy(m);
	fake_media_destroy(t.m2);
}

/* Power fails and comes back; the store opens again. */
static void power_cycle(struct tstore *t, struct fake_media *m)
{
	ts_crash(t);
	fake_power_on(m);
	CHECK_EQ(ts_open(t, m, "s"), 0);
}

/* Runs the loop until m has issued more than n flushes, or 1 s passed. */
static void wait_flushes_above(struct tstore *t, struct fake_media *m, uint64_t n)
{
	for (uint64_t t0 = kura_now_ns(); m->flushes <= n && kura_now_ns() - t0 < 1000000000ull;)
		kura_loop_run_once(t->loop, 1000000ull);
}

/* A cached write of 4 blocks at blk of (1, 0), answered with no flush. */
static void cached_no_flush(struct tstore *t, struct fake_media *m, unsigned blk,
			    const uint8_t *buf, uint64_t version)
{
	uint64_t f0 = m->flushes;

	CHECK_EQ(ts_write_cached(t, 1, 0, blk, 4, buf, version), 0);
	CHECK_EQ(m->flushes, f0);
}

/* Write-back: a cached write is answered before it is durable. Reads see it
 * at once; a kill of the process keeps it (it reached the device); a power
 * cut before any flush loses it, and only it: an earlier durable write and
 * the extent stay whole; after kura_blk_flush it survives a power cut; and
 * left alone, the store flushes it by itself (within 50 ms). */
TEST(test_store_cached_writes_durable_after_flush_kept_over_kill)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	uint8_t *a = blocks(4), *b = blocks(4), *c = blocks(4);
	uint64_t f0;

	fill_tags(a, 4, 100, 11);
	fill_tags(b, 4, 200, 11);
	fill_tags(c, 4, 300, 11);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	CHECK_EQ(ts_write(&t, 1, 0, 0, 4, a, 1), 0);
	cached_no_flush(&t, m, 4, b, 2);
	/* power cut: the cached write is gone, the durable one stays */
	power_cycle(&t, m);
	expect_tags(&t, 1, 0, 0, 4, 100, 11);
	expect_tags(&t, 1, 0, 4, 4, 0, 11);
	/* kill -9 right after a cached write: it stays */
	cached_no_flush(&t, m, 4, b, 3);
	ts_kill(&t);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	expect_tags(&t, 1, 0, 0, 4, 100, 11);
	expect_tags(&t, 1, 0, 4, 4, 200, 11);
	/* a flush makes it durable */
	cached_no_flush(&t, m, 8, c, 4);
	CHECK_EQ(ts_flush(&t), 0);
	power_cycle(&t, m);
	expect_tags(&t, 1, 0, 8, 4, 300, 11);
	/* nothing asks: the store flushes by itself */
	fill_tags(c, 4, 400, 11);
	f0 = m->flushes;
	CHECK_EQ(ts_write_cached(&t, 1, 0, 8, 4, c, 5), 0);
	wait_flushes_above(&t, m, f0);
	CHECK(m->flushes > f0);
	power_cycle(&t, m);
	expect_tags(&t, 1, 0, 8, 4, 400, 11);
	expect_tags(&t, 1, 0, 0, 4, 100, 11);
	/* a read of a cached write sees it, from memory: it is no more durable
	 * for that, and a power cut before a flush loses it */
	f0 = m->flushes;
	CHECK_EQ(ts_write_cached(&t, 1, 0, 12, 4, a, 6), 0);
	expect_tags(&t, 1, 0, 12, 4, 100, 11);
	CHECK_EQ(m->flushes, f0);
	power_cycle(&t, m);
	expect_tags(&t, 1, 0, 12, 4, 0, 11);
	expect_tags(&t, 1, 0, 8, 4, 400, 11);
	ts_close(&t);
	fake_media_destroy(m);
}

/* A flush under way covers what was written before it began: a cached
 * write whose batch is written while it runs gets a flush of its own
 * within the flush delay, with nothing else asking. */
TEST(test_store_cached_write_during_a_flush_is_flushed_later)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	uint8_t *b = blocks(1);
	uint64_t f0;

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	m->flush_delay_ns = 20000000ull;
	f0 = m->flushes;
	fill_tags(b, 1, 100, 11);
	CHECK_EQ(ts_write_cached(&t, 1, 0, 0, 1, b, 1), 0);
	wait_flushes_above(&t, m, f0); /* the store's own flush begins */
	CHECK_EQ(m->flushes, f0 + 1);
	fill_tags(b, 1, 200, 11);
	CHECK_EQ(ts_write_cached(&t, 1, 0, 1, 1, b, 2), 0);
	CHECK_EQ(m->flushes, f0 + 1); /* written while that flush runs */
	wait_flushes_above(&t, m, f0 + 1);
	CHECK_EQ(m->flushes, f0 + 2);
	m->flush_delay_ns = 0;
	power_cycle(&t, m);
	expect_tags(&t, 1, 0, 0, 1, 100, 11);
	expect_tags(&t, 1, 0, 1, 1, 200, 11);
	ts_close(&t);
	fake_media_destroy(m);
}

/* A read of blocks whose cached writes are answered but not in place comes
 * from those writes: no flush, no in-place write first, and the newest write
 * of each block wins; a block the extent does not hold reads as zeros, and
 * one in place comes from the disk beside them. */
TEST(test_store_read_of_cached_writes_needs_no_flush)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_stats st;
	uint8_t *b = blocks(4), *r = blocks(4);
	uint64_t f0, w0;

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	fill_tags(b, 1, 500, 11);
	CHECK_EQ(ts_write(&t, 1, 0, 5, 1, b, 1), 0);
	ts_close(&t); /* block 5 in place */
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	f0 = m->flushes;
	fill_tags(b, 3, 100, 11);
	CHECK_EQ(ts_write_cached(&t, 1, 0, 0, 3, b, 2), 0);
	fill_tags(b, 1, 300, 11);
	CHECK_EQ(ts_write_cached(&t, 1, 0, 2, 1, b, 3), 0);
	w0 = m->writes;
	CHECK_EQ(ts_read(&t, 1, 0, 0, 4, r), 0);
	CHECK_EQ(m->flushes, f0);
	CHECK_EQ(m->writes, w0);
	CHECK_EQ(ts_tag(r, 11), 100);
	CHECK_EQ(ts_tag(r + KURA_BLK_SIZE, 11), 101);
	CHECK_EQ(ts_tag(r + 2 * KURA_BLK_SIZE, 11), 300);
	CHECK_EQ(ts_tag(r + 3 * KURA_BLK_SIZE, 11), 0);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.queued_reads, 1);
	/* a read that also needs a block in place reads that one from the
	 * disk and the others from the writes, still with no flush */
	CHECK_EQ(ts_read(&t, 1, 0, 2, 4, r), 0);
	CHECK_EQ(ts_tag(r, 11), 300);
	CHECK_EQ(ts_tag(r + KURA_BLK_SIZE, 11), 0);
	CHECK_EQ(ts_tag(r + 2 * KURA_BLK_SIZE, 11), 0);
	CHECK_EQ(ts_tag(r + 3 * KURA_BLK_SIZE, 11), 500);
	CHECK_EQ(m->flushes, f0);
	kura_blk_stats(t.s, &st);
	CHECK_EQ(st.queued_reads, 2);
	/* a read submitted before the write to its block is answered waits
	 * for that answer, then sees the write */
	{
		unsigned next = 0;
		struct order wo = { .next = &next };
		fill_tags(b, 2, 600, 11);
		CHECK_EQ(kura_blk_write(t.s, 1, 0, 4, 2, b, 4, KURA_IO_GUEST, order_done, &wo), 0);
		CHECK_EQ(ts_read(&t, 1, 0, 3, 3, r), 0);
		CHECK_EQ(wo.seq, 1);
		CHECK_EQ(wo.err, 0);
		CHECK_EQ(ts_tag(r, 11), 0);
		CHECK_EQ(ts_tag(r + KURA_BLK_SIZE, 11), 600);
		CHECK_EQ(ts_tag(r + 2 * KURA_BLK_SIZE, 11), 601);
	}
	/* what was read is what a flush keeps */
	CHECK_EQ(ts_flush(&t), 0);
	power_cycle(&t, m);
	expect_tags(&t, 1, 0, 0, 2, 100, 11);
	expect_tags(&t, 1, 0, 2, 1, 300, 11);
	expect_tags(&t, 1, 0, 3, 1, 0, 11);
	expect_tags(&t, 1, 0, 4, 2, 600, 11);
	ts_close(&t);
	fake_media_destroy(m);
}

static uint64_t xorshift(uint64_t *r)
{
	*r ^= *r << 13;
	*r ^= *r >> 7;
	*r ^= *r << 17;
	return *r;
}

/* Reads of random ranges between random writes (cached and durable), trims
 * and moments where applies and flushes run: every read matches a model of
 * what was written, whatever is queued, in place or on its way there. */
TEST(test_store_reads_match_writes_in_any_state)
{
	struct tstore t = { .checkpoint_ns = 20000000ull };
	struct fake_media *m = fake_media_create(MEDIA);
	static uint64_t model[2][64];
	uint8_t *b = blocks(16), *r = blocks(16);
	uint64_t rng = 0x9e3779b97f4a7c15ull, tag = 1;
	struct kura_blk_stats st;

	memset(model, 0, sizeof(model));
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	for (unsigned i = 0; i < 3000; i++) {
		unsigned ext = (unsigned)(xorshift(&rng) % 2), op = (unsigned)(xorshift(&rng) % 100);
		unsigned blk = (unsigned)(xorshift(&rng) % 60);
		unsigned n = 1 + (unsigned)(xorshift(&rng) % KURA_MIN(16u, 64u - blk));

		if (op < 45) {
			fill_tags(b, n, tag, 11);
			CHECK_EQ(op < 30 ? ts_write_cached(&t, 1, ext, blk, n, b, 1)
					 : ts_write(&t, 1, ext, blk, n, b, 1), 0);
			for (unsigned k = 0; k < n; k++)
				model[ext][blk + k] = tag + k;
			tag += n;
		} else if (op < 50) {
			CHECK_EQ(ts_trim(&t, 1, ext, blk, n), 0);
			for (unsigned k = 0; k < n; k++)
				model[ext][blk + k] = 0;
		} else if (op < 95) {
			CHECK_EQ(ts_read(&t, 1, ext, blk, n, r), 0);
			for (unsigned k = 0; k < n; k++)
				CHECK_EQ(ts_tag(r + (size_t)k * KURA_BLK_SIZE, 11), model[ext][blk + k]);
		} else if (op < 99) {
			kura_loop_run_once(t.loop, 2000000ull); /* applies, flushes */
		} else {
			CHECK_EQ(ts_flush(&t), 0);
		}
	}
	kura_blk_stats(t.s, &st);
	CHECK(st.queued_reads > 0);
	CHECK(st.reads > st.queued_reads);
	ts_close(&t);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	for (unsigned ext = 0; ext < 2; ext++) {
		CHECK_EQ(ts_read(&t, 1, ext, 0, 16, r), 0);
		for (unsigned k = 0; k < 16; k++)
			CHECK_EQ(ts_tag(r + (size_t)k * KURA_BLK_SIZE, 11), model[ext][k]);
	}
	ts_close(&t);
	fake_media_destroy(m);
}

/* A volatile cache may write back a later journal batch and lose an earlier
 * one. Replay stops at the hole; the batch beyond it must stay dead even
 * when the journal, written again from the hole, puts a batch of the same
 * size and sequence number just before it and power fails again: else a
 * lost cached write would come back over a later durable one. */
TEST(test_store_batch_beyond_a_hole_stays_dead)
{
	struct tstore t = { .checkpoint_ns = NO_CKPT };
	struct fake_media *m = fake_media_create(MEDIA);
	uint8_t *b = blocks(1);
	uint64_t f0;

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	fill_tags(b, 1, 100, 11);
	CHECK_EQ(ts_write(&t, 1, 0, 0, 1, b, 1), 0);
	f0 = m->flushes;
	fill_tags(b, 1, 200, 11);
	CHECK_EQ(ts_write_cached(&t, 1, 0, 0, 1, b, 2), 0);
	fill_tags(b, 1, 300, 11);
	CHECK_EQ(ts_write_cached(&t, 1, 0, 0, 1, b, 3), 0);
	CHECK_EQ(m->flushes, f0);
	/* the second cached batch reaches the media, the first does not */
	CHECK_EQ(fake_keep_unflushed(m, 1), 0);
	power_cycle(&t, m);
	expect_tags(&t, 1, 0, 0, 1, 100, 11);
	fill_tags(b, 1, 400, 11);
	CHECK_EQ(ts_write(&t, 1, 0, 0, 1, b, 4), 0);
	power_cycle(&t, m);
	expect_tags(&t, 1, 0, 0, 1, 400, 11);
	/* and over a clean close and open too */
	ts_close(&t);
	CHECK_EQ(ts_open(&t, m, "s"), 0);
	expect_tags(&t, 1, 0, 0, 1, 400, 11);
	ts_close(&t);
	fake_media_destroy(m);
}
