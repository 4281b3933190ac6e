/* Crash consistency at many cut points: a workload of writes (guest writes
 * through the journal, large clone writes that go to their place directly),
 * trims and frees runs against a fake disk that loses power at the Nth write
 * (dropping or randomly keeping what was not flushed, tearing the write in
 * progress); after recovery every extent must hold the value of a prefix of
 * the operations submitted to it that includes every acknowledged one (writes
 * in flight together to different extents have no order, as on any disk), no
 * block may be torn or fail its checksum, and no extent may leak. The
 * write-back series make most guest writes cached (answered once in the
 * device's cache) and add flushes: a cached write must survive only when a
 * flush submitted after it completed, and what survives is still a prefix.
 * The reorder series model a cache that writes back whole writes in any
 * order, and after recovery write every block again and lose power once
 * more: nothing the cache kept beyond where replay stopped may come back. */
#include "blockd/store_int.h"
#include "common/util.h"
#include "tests/unit/harness.h"
#include "tests/unit/tstore.h"

#include <errno.h>

#define LAYERS 2
#define EXTS 6
#define BLKS 64
#define NOPS 400
#define QD 8
#define SALT 0x5eed
#define MEDIA (48ull << 20)

enum { OP_WRITE, OP_TRIM, OP_FREE, OP_FLUSH };

struct op {
	int kind;
	enum kura_io_class cls;
	uint64_t layer, ext;
	unsigned blk, n;
	uint64_t tag; /* data tag (writes) */
	int cached;   /* kura_blk_write_cached */
	int done, err;
};

struct run {
	struct tstore t;
	struct op ops[NOPS];
	unsigned submitted, inflight;
	uint64_t rng;
	int writeback; /* plan cached writes and flushes */
};

static uint64_t next_rand(uint64_t *r)
{
	*r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
	return *r >> 33;
}

static void plan(struct run *r, uint64_t seed)
{
	r->rng = seed;
	for (unsigned i = 0; i < NOPS; i++) {
		struct op *o = &r->ops[i];
		uint64_t x = next_rand(&r->rng) % 100;

		o->kind = x < 85 ? OP_WRITE : x < 95 ? OP_TRIM : OP_FREE;
		if (r->writeback && x >= 80 && x < 85)
			o->kind = OP_FLUSH;
		o->layer = o->kind == OP_FLUSH ? 0 : 1 + next_rand(&r->rng) % LAYERS;
		o->ext = next_rand(&r->rng) % EXTS;
		o->n = 1 + (unsigned)(next_rand(&r->rng) % 16);
		o->cls = KURA_IO_GUEST;
		if (o->kind == OP_WRITE && next_rand(&r->rng) % 4 == 0) {
			/* a clone write, large enough to go in place directly */
			o->cls = KURA_IO_CLONE;
			o->n = 16 + (unsigned)(next_rand(&r->rng) % (BLKS - 15));
		} else if (o->kind == OP_WRITE && r->writeback) {
			o->cached = next_rand(&r->rng) % 8 != 0;
		}
		o->blk = (unsigned)(next_rand(&r->rng) % (BLKS - o->n + 1));
		o->tag = i + 1;
	}
}

static void op_done(void *arg, int err)
{
	struct op *o = arg;

	o->done = 1;
	o->err = err;
}

static void submit(struct run *r, unsigned i, uint8_t *buf)
{
	struct op *o = &r->ops[i];
	int err = 0;

	switch (o->kind) {
	case OP_WRITE:
		for (unsigned b = 0; b < o->n; b++)
			ts_fill(buf + (size_t)b * KURA_BLK_SIZE, o->tag, SALT);
		err = (o->cached ? kura_blk_write_cached : kura_blk_write)(
			r->t.s, o->layer, o->ext, o->blk, o->n, buf, o->tag, o->cls, op_done, o);
		break;
	case OP_FLUSH:
		err = kura_blk_flush(r->t.s, op_done, o);
		break;
	case OP_TRIM:
		err = kura_blk_trim(r->t.s, o->layer, o->ext, o->blk, o->n, op_done, o);
		break;
	case OP_FREE:
		err = kura_blk_free(r->t.s, o->layer, o->ext, op_done, o);
		break;
	}
	CHECK_EQ(err, 0);
}

/* Runs the workload until it ends or the disk loses power. */
static void workload(struct run *r)
{
	uint8_t *buf = kura_aligned_alloc(BLKS * KURA_BLK_SIZE);
	unsigned reaped = 0;

	r->submitted = 0;
	for (unsigned i = 0; i < NOPS; i++)
		r->ops[i].done = 0;
	while (reaped < NOPS && !r->t.m->lost) {
		while (r->submitted < NOPS && r->submitted - reaped < QD)
			submit(r, r->submitted++, buf);
		kura_loop_run_once(r->t.loop, 10000000ULL);
		while (reaped < r->submitted && r->ops[reaped].done) {
			struct op *o = &r->ops[reaped];
			if (o->err)
				CHECK(o->err == -ENOSPC || r->t.m->lost || r->t.s->dead ||
				      (o->kind == OP_FREE && o->err == -ENOENT));
			reaped++;
		}
	}
	free(buf);
}

/* The expected tag of every block of one extent if exactly the first p of
 * the ops on it took effect. */
static void expected(const struct run *r, uint64_t layer, uint64_t ext, unsigned p,
		     uint64_t *exp)
{
	memset(exp, 0, sizeof(uint64_t) * BLKS);
	for (unsigned i = 0; i < r->submitted && p; i++) {
		const struct op *o = &r->ops[i];

		if (o->layer != layer || o->ext != ext)
			continue;
		p--;
		if (o->done && (o->err == -ENOSPC || o->err == -ENOENT))
			continue; /* refused: no effect (an EIO at the cut may or may not have) */
		if (o->kind == OP_FREE)
			memset(exp, 0, sizeof(*exp) * BLKS);
		else
			for (unsigned b = o->blk; b < o->blk + o->n; b++)
				exp[b] = o->kind == OP_WRITE ? o->tag : 0;
	}
}

/* Ops below this index were made durable by a flush that completed. */
static unsigned flushed_below(const struct run *r)
{
	unsigned below = 0;

	for (unsigned i = 0; i < r->submitted; i++)
		if (r->ops[i].kind == OP_FLUSH && r->ops[i].done && !r->ops[i].err)
			below = i;
	return below;
}

/* Whether the extent holds a prefix of its ops that includes every one of
 * them that was acknowledged as durable. */
static int extent_matches(const struct run *r, uint64_t layer, uint64_t ext, const uint64_t *got)
{
	uint64_t exp[BLKS];
	unsigned n = 0, min = 0, flushed = flushed_below(r);

	for (unsigned i = 0; i < r->submitted; i++) {
		const struct op *o = &r->ops[i];
		if (o->layer != layer || o->ext != ext)
			continue;
		n++;
		if (o->done && !o->err && (!o->cached || i < flushed))
			min = n;
	}
	for (unsigned p = min; p <= n; p++) {
		expected(r, layer, ext, p, exp);
		if (!memcmp(got, exp, sizeof(exp)))
			return 1;
	}
	fprintf(stderr, "  layer %llu ext %llu: no prefix of its %u ops from %u matches\n",
		(unsigned long long)layer, (unsigned long long)ext, n, min);
	return 0;
}

static void verify(struct run *r)
{
	static uint64_t got[BLKS];
	uint8_t *buf = kura_aligned_alloc(BLKS * KURA_BLK_SIZE);
	struct kura_blk_stats st;
	uint64_t listed = 0;

	for (uint64_t l = 1; l <= LAYERS; l++) {
		uint64_t *exts;
		size_t n;

		for (uint64_t e = 0; e < EXTS; e++) {
			CHECK_EQ(ts_read(&r->t, l, e, 0, BLKS, buf), 0); /* no checksum failure */
			for (unsigned b = 0; b < BLKS; b++) {
				uint64_t tag = ts_tag(buf + (size_t)b * KURA_BLK_SIZE, SALT);
				if (tag == UINT64_MAX)
					fprintf(stderr, "  torn block: layer %llu ext %llu blk %u\n",
						(unsigned long long)l, (unsigned long long)e, b);
				CHECK(tag != UINT64_MAX);
				got[b] = tag;
			}
			CHECK(extent_matches(r, l, e, got));
		}
		CHECK_EQ(kura_blk_list(r->t.s, l, &exts, &n), 0);
		listed += n;
		free(exts);
	}
	kura_blk_stats(r->t.s, &st);
	CHECK_EQ(st.used_extents, listed); /* nothing leaked */
	free(buf);
}

/* After recovery the store takes new writes and returns them. */
static void still_works(struct run *r)
{
	uint8_t *w = ts_buf(1), *rb = ts_buf(1);

	ts_fill(w, 424242, SALT);
	CHECK_EQ(ts_write(&r->t, 1, 0, 200, 1, w, 1), 0);
	CHECK_EQ(ts_read(&r->t, 1, 0, 200, 1, rb), 0);
	CHECK(!memcmp(w, rb, KURA_BLK_SIZE));
}

/* Reads every block of the workload's extents into tags. */
static void read_all(struct run *r, uint64_t tags[LAYERS][EXTS][BLKS], uint8_t *buf)
{
	for (uint64_t l = 0; l < LAYERS; l++)
		for (uint64_t e = 0; e < EXTS; e++) {
			CHECK_EQ(ts_read(&r->t, l + 1, e, 0, BLKS, buf), 0);
			for (unsigned b = 0; b < BLKS; b++)
				tags[l][e][b] = ts_tag(buf + (size_t)b * KURA_BLK_SIZE, SALT);
		}
}

/* After a recovery the journal is written again from where replay stopped;
 * whatever the cache kept beyond that point must never come back. A few
 * times: one durable write of the workload's sizes, then power fails with
 * nothing of it unflushed: every block holds what it held before, but for
 * that write (a batch the cache kept beyond the hole, at the position and
 * sequence number the journal reached, would show here). */
static void second_life(struct run *r, const char *name)
{
	static uint64_t want[LAYERS][EXTS][BLKS], got[LAYERS][EXTS][BLKS];
	uint8_t *buf = kura_aligned_alloc(BLKS * KURA_BLK_SIZE);

	read_all(r, want, buf);
	for (unsigned life = 0; life < 3; life++) {
		uint64_t l = next_rand(&r->rng) % LAYERS, e = next_rand(&r->rng) % EXTS;
		unsigned n = 1 + (unsigned)(next_rand(&r->rng) % 16);
		unsigned b = (unsigned)(next_rand(&r->rng) % (BLKS - n + 1));
		uint64_t tag = 100000 + life;

		for (unsigned k = 0; k < n; k++) {
			ts_fill(buf + (size_t)k * KURA_BLK_SIZE, tag, SALT);
			want[l][e][b + k] = tag;
		}
		CHECK_EQ(ts_write(&r->t, l + 1, e, b, n, buf, tag), 0);
		ts_crash(&r->t);
		fake_power_on(r->t.m);
		CHECK_EQ(ts_open(&r->t, r->t.m, name), 0);
		read_all(r, got, buf);
		CHECK(!memcmp(want, got, sizeof(want)));
	}
	free(buf);
}

static void one_cut(uint64_t seed, uint64_t cut, enum fake_cut_mode mode, unsigned recovery_cut,
		    int writeback)
{
	static struct run r;
	struct fake_media *m = fake_media_create(MEDIA);
	char name[64];

	memset(&r, 0, sizeof(r));
	r.writeback = writeback;
	plan(&r, seed);
	snprintf(name, sizeof(name), "c%llu-%d", (unsigned long long)cut, (int)mode);
	CHECK_EQ(ts_open(&r.t, m, name), 0);
	m->cut_at = m->writes + cut;
	m->cut_mode = mode;
	m->seed = (unsigned)(seed + cut);
	workload(&r);
	ts_crash(&r.t);
	fake_power_on(m);
	if (recovery_cut) {
		/* power fails again while recovering */
		m->cut_at = m->writes + recovery_cut;
		m->cut_mode = mode;
		if (ts_open(&r.t, m, name) == 0)
			ts_crash(&r.t);
		fake_power_on(m);
	}
	CHECK_EQ(ts_open(&r.t, m, name), 0);
	verify(&r);
	if (mode == CUT_REORDER)
		second_life(&r, name);
	still_works(&r);
	ts_close(&r.t);
	fake_media_destroy(m);
}

static uint64_t count_writes(uint64_t seed, int writeback)
{
	static struct run r;
	struct fake_media *m = fake_media_create(MEDIA);
	struct kura_blk_stats st;
	uint64_t base, n, flushes;

	memset(&r, 0, sizeof(r));
	r.writeback = writeback;
	plan(&r, seed);
	CHECK_EQ(ts_open(&r.t, m, "dry"), 0);
	base = m->writes;
	flushes = m->flushes;
	workload(&r);
	verify(&r);
	kura_blk_stats(r.t.s, &st);
	CHECK(st.direct_writes > 0); /* the cuts land inside direct writes too */
	if (writeback)
		CHECK(m->flushes > flushes); /* some cached writes had to survive */
	n = m->writes - base;
	ts_close(&r.t);
	fake_media_destroy(m);
	return n;
}

static unsigned points(void)
{
	const char *e = getenv("KURA_CRASH_POINTS");
	return e ? (unsigned)strtoul(e, NULL, 10) : 40;
}

static void cut_series(enum fake_cut_mode mode, uint64_t seed, int in_recovery, int writeback)
{
	uint64_t total = count_writes(seed, writeback);
	unsigned np = points();

	CHECK(total > 50);
	for (unsigned i = 0; i < np; i++) {
		uint64_t cut = 1 + (total * i) / np + (i % 3);
		one_cut(seed + i, cut, mode, in_recovery ? 1 + i % 6 : 0, writeback);
	}
}

TEST_T(test_crash_power_cut_drops_unflushed_writes, 600)
{
	cut_series(CUT_DROP, 1000, 0, 0);
}

TEST_T(test_crash_power_cut_keeps_random_sectors, 600)
{
	cut_series(CUT_RANDOM, 2000, 0, 0);
}

TEST_T(test_crash_power_cut_during_recovery, 600)
{
	cut_series(CUT_RANDOM, 3000, 1, 0);
}

TEST_T(test_crash_writeback_power_cut_drops_unflushed_writes, 600)
{
	cut_series(CUT_DROP, 4000, 0, 1);
}

TEST_T(test_crash_writeback_power_cut_keeps_random_sectors, 600)
{
	cut_series(CUT_RANDOM, 5000, 0, 1);
}

TEST_T(test_crash_writeback_power_cut_during_recovery, 600)
{
	cut_series(CUT_RANDOM, 6000, 1, 1);
}

TEST_T(test_crash_power_cut_reorders_cached_writes, 600)
{
	cut_series(CUT_REORDER, 7000, 0, 0);
}

TEST_T(test_crash_writeback_power_cut_reorders_cached_writes, 600)
{
	cut_series(CUT_REORDER, 8000, 0, 1);
}
