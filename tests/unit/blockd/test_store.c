/* The store through its API on a fake disk: data in equals data out. */
#include "blockd/store_int.h"
#include "common/err.h"
#include "common/util.h"
#include "tests/unit/harness.h"
#include "tests/unit/tstore.h"

#include <errno.h>

#define MEDIA (48ull << 20)

static void *blocks(unsigned n)
{
	return ts_buf(n);
}

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

struct order {
	unsigned seq, *next;
	int err;
};

static void order_done(void *arg, int err)
{
	struct order *o = arg;

	o->seq = ++*o->next;
	o->err = err;
}

/* Background writes that fill the journal wait at 3/4 of it; a guest write
 * to another extent goes ahead of them, one to the same extent does not. */
TEST(test_store_guest_writes_keep_the_last_quarter_of_the_journal)
{
	struct tstore t = { .journal_size = 16u << 20 };
	struct fake_media *m = fake_media_create(MEDIA);
	struct order bg[16] = { 0 }, g_other = { 0 }, g_same = { 0 };
	unsigned next = 0, last_bg = 0;
	uint8_t *w = blocks(256), *g1 = blocks(1), *g2 = blocks(1), *r = blocks(1);

	CHECK_EQ(ts_open(&t, m, "s"), 0);
	for (unsigned b = 0; b < 256; b++)
		ts_fill(w + b * KURA_BLK_SIZE, b + 1, 7);
	ts_fill(g1, 1001, 7);
	ts_fill(g2, 1002, 7);
	/* 16 MiB of clone writes submitted at once: more than 3/4 of it */
	for (unsigned i = 0; i < 16; i++) {
		bg[i].next = &next;
		CHECK_EQ(kura_blk_write(t.s, 2, i, 0, 256, w, 1, KURA_IO_CLONE, order_done, &bg[i]), 0);
	}
	CHECK(t.s->blocked_head != NULL);
	g_other.next = g_same.next = &next;
	CHECK_EQ(kura_blk_write(t.s, 1, 0, 0, 1, g1, 1, KURA_IO_GUEST, order_done, &g_other), 0);
	CHECK_EQ(kura_blk_write(t.s, 2, 15, 0, 1, g2, 2, KURA_IO_GUEST, order_done, &g_same), 0);
	while (next < 18)
		kura_loop_run_once(t.loop, 100000000ull);
	for (unsigned i = 0; i < 16; i++) {
		CHECK_EQ(bg[i].err, 0);
		last_bg = KURA_MAX(last_bg, bg[i].seq);
	}
	CHECK_EQ(g_other.err, 0);
	CHECK_EQ(g_same.err, 0);
	CHECK(g_other.seq < last_bg);  /* passed the waiting clone writes */
	CHECK(g_same.seq > bg[15].seq); /* never passes a write to its extent */
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
	CHECK_EQ(ts_write_replica(&t, 9, 4, 10, 2, b, 5), 0); /* new extent: applied */
	ts_fill(b, 2, 3);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 10, 1, b, 5), 0); /* the same version again */
	ts_fill(b, 3, 3);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 11, 1, b, 4), 0); /* older */
	CHECK_EQ(ts_read(&t, 9, 4, 10, 2, r), 0);
	CHECK_EQ(ts_tag(r, 3), 1);
	CHECK_EQ(ts_tag(r + KURA_BLK_SIZE, 3), 1);
	ts_fill(b, 4, 3);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 11, 1, b, 6), 0); /* newer: applied */
	CHECK_EQ(kura_blk_extent_info(t.s, 9, 4, &info), 0);
	CHECK_EQ(info.version, 6);
	ts_crash(&t);
	fake_power_on(m);
	CHECK_EQ(ts_open(&t, m, "replica"), 0);
	CHECK_EQ(ts_read(&t, 9, 4, 10, 2, r), 0);
	CHECK_EQ(ts_tag(r, 3), 1);
	CHECK_EQ(ts_tag(r + KURA_BLK_SIZE, 3), 4);
	ts_fill(b, 5, 3);
	CHECK_EQ(ts_write_replica(&t, 9, 4, 10, 1, b, 6), 0); /* replayed version kept */
	CHECK_EQ(ts_read(&t, 9, 4, 10, 1, r), 0);
	CHECK_EQ(ts_tag(r, 3), 1);
	ts_close(&t);
	fake_media_destroy(m);
}
