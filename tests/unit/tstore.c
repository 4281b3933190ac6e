#include "tests/unit/tstore.h"
#include "tests/unit/harness.h"
#include "common/util.h"

#include <errno.h>

int ts_open(struct tstore *t, struct fake_media *m, const char *name)
{
	struct kura_blk_disk_spec spec[2] = { 0 };
	struct kura_blk_opts o = { 0 };

	if (!t->journal_size)
		t->journal_size = 16u << 20;
	snprintf(t->dir, sizeof(t->dir), "%s/%s", test_tmpdir(), name);
	t->m = m;
	if (kura_loop_create(&t->loop, 256))
		return -ENOMEM;
	spec[0].disk = fake_disk_open(t->loop, m, "fake0");
	if (t->m2)
		spec[1].disk = fake_disk_open(t->loop, t->m2, "fake1");
	o.dir = t->dir;
	o.loop = t->loop;
	o.disks = spec;
	o.ndisks = t->m2 ? 2 : 1;
	o.journal_size = t->journal_size;
	o.crc_cache_bytes = t->crc_cache ? t->crc_cache : 1u << 20;
	o.checkpoint_ns = t->checkpoint_ns ? t->checkpoint_ns : 50000000ULL;
	o.apply_idle_ns = t->apply_idle_ns;
	o.create = 1;
	o.drop_failed_disks = t->drop_failed;
	t->err = kura_blk_store_open(&o, &t->s, t->errbuf, sizeof(t->errbuf));
	if (t->err) {
		/* the store closed the fake disk on failure */
		kura_loop_destroy(t->loop);
		t->loop = NULL;
		t->s = NULL;
	}
	return t->err;
}

void ts_close(struct tstore *t)
{
	kura_blk_store_close(t->s);
	kura_loop_destroy(t->loop);
	t->s = NULL;
	t->loop = NULL;
}

void ts_crash(struct tstore *t)
{
	int idle = 0;

	/* The power is gone: the media keeps nothing from now on. What was in
	 * flight completes with errors, then the store is dropped unwritten. */
	t->m->lost = 1;
	while (idle < 20)
		idle = kura_loop_run_once(t->loop, 1000000ULL) ? 0 : idle + 1;
	kura_blk_store_abandon(t->s);
	kura_loop_destroy(t->loop);
	t->s = NULL;
	t->loop = NULL;
}

void ts_kill(struct tstore *t)
{
	kura_blk_store_abandon(t->s);
	kura_loop_destroy(t->loop);
	t->s = NULL;
	t->loop = NULL;
}

static void **bufs;
static size_t nbufs;

static void free_bufs(void)
{
	for (size_t i = 0; i < nbufs; i++)
		free(bufs[i]);
	free(bufs);
}

void *ts_buf(unsigned nblocks)
{
	void *p = kura_aligned_alloc((size_t)nblocks * KURA_BLK_SIZE);

	if (!nbufs)
		atexit(free_bufs);
	bufs = realloc(bufs, sizeof(*bufs) * (nbufs + 1));
	bufs[nbufs++] = p;
	return p;
}

struct waiter {
	int done, err;
};

static void wdone(void *arg, int err)
{
	struct waiter *w = arg;
	w->done = 1;
	w->err = err;
}

static int wait_for(struct tstore *t, struct waiter *w, int submit_err)
{
	if (submit_err)
		return submit_err;
	while (!w->done)
		kura_loop_run_once(t->loop, 100000000ULL);
	return w->err;
}

int ts_write(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n,
	     const void *buf, uint64_t version)
{
	struct waiter w = { 0 };
	return wait_for(t, &w, kura_blk_write(t->s, layer, ext, blk, n, buf, version,
					      KURA_IO_GUEST, wdone, &w));
}

int ts_write_cached(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n,
		    const void *buf, uint64_t version)
{
	struct waiter w = { 0 };
	return wait_for(t, &w, kura_blk_write_cached(t->s, layer, ext, blk, n, buf, version,
						     KURA_IO_GUEST, wdone, &w));
}

int ts_flush(struct tstore *t)
{
	struct waiter w = { 0 };
	return wait_for(t, &w, kura_blk_flush(t->s, wdone, &w));
}

int ts_write_replica(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n,
		     const void *buf, uint64_t version, uint64_t prev)
{
	struct waiter w = { 0 };
	void *copy = kura_aligned_alloc_raw((size_t)n * KURA_BLK_SIZE);
	int err;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, buf, (size_t)n * KURA_BLK_SIZE);
	err = kura_blk_write_replica(t->s, layer, ext, blk, n, copy, version, prev, KURA_IO_GUEST, wdone,
				     &w);
	if (err)
		free(copy);
	return wait_for(t, &w, err);
}

int ts_read(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n, void *buf)
{
	struct waiter w = { 0 };
	return wait_for(t, &w,
			kura_blk_read(t->s, layer, ext, blk, n, buf, KURA_IO_GUEST, wdone, &w));
}

int ts_trim(struct tstore *t, uint64_t layer, uint64_t ext, unsigned blk, unsigned n)
{
	struct waiter w = { 0 };
	return wait_for(t, &w, kura_blk_trim(t->s, layer, ext, blk, n, wdone, &w));
}

int ts_free(struct tstore *t, uint64_t layer, uint64_t ext)
{
	struct waiter w = { 0 };
	return wait_for(t, &w, kura_blk_free(t->s, layer, ext, wdone, &w));
}

int ts_move(struct tstore *t, uint64_t layer, uint64_t ext, uint64_t nl, uint64_t ne)
{
	struct waiter w = { 0 };
	return wait_for(t, &w, kura_blk_move(t->s, layer, ext, nl, ne, wdone, &w));
}

void ts_fill(void *blk, uint64_t tag, uint64_t salt)
{
	uint64_t *p = blk;

	for (unsigned sec = 0; sec < KURA_BLK_SIZE / 512; sec++) {
		uint64_t *q = p + sec * 64;
		q[0] = tag;
		q[1] = salt;
		q[2] = sec;
		for (unsigned i = 3; i < 64; i++)
			q[i] = kura_hash64(tag * 131 + salt * 7 + sec * 64 + i);
	}
}

uint64_t ts_tag(const void *blk, uint64_t salt)
{
	const uint64_t *p = blk;
	uint64_t tag = p[0];
	int zero = 1;

	for (unsigned i = 0; i < KURA_BLK_SIZE / 8; i++)
		if (p[i])
			zero = 0;
	if (zero)
		return 0;
	for (unsigned sec = 0; sec < KURA_BLK_SIZE / 512; sec++) {
		const uint64_t *q = p + sec * 64;
		if (q[0] != tag || q[1] != salt || q[2] != sec)
			return UINT64_MAX;
		for (unsigned i = 3; i < 64; i++)
			if (q[i] != kura_hash64(tag * 131 + salt * 7 + sec * 64 + i))
				return UINT64_MAX;
	}
	return tag;
}
