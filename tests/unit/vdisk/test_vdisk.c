/* The vdisk layer: chains, snapshots, clones, rollback, deletes, flatten,
 * jobs, and the control requests' refusals. Data is checked block by block
 * with tagged patterns. */
#include "tests/unit/harness.h"
#include "tests/unit/vdisk/tvd.h"

#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#define EXTB 256u /* blocks per extent */

static uint64_t used_extents(struct tvd *t)
{
	struct kura_blk_stats st;

	kura_blk_stats(t->ts.s, &st);
	return st.used_extents;
}

static int tvd_discard(struct tvd *t, const char *name, uint64_t lba, unsigned nblk);

static void create(struct tvd *t, const char *name, const char *size)
{
	uint64_t b;

	CHECK(kura_parse_size(size, &b) == 0);
	CHECK(tvd_ctl(t, "{\"op\":\"create\",\"name\":\"%s\",\"size\":%llu}", name,
		      (unsigned long long)b) == 0);
}

static void snap(struct tvd *t, const char *name, const char *s)
{
	CHECK(tvd_ctl(t, "{\"op\":\"snapshot\",\"name\":\"%s\",\"snap\":\"%s\"}", name, s) == 0);
}

static void expect1(struct tvd *t, const char *name, const char *s, uint64_t lba, uint64_t tag)
{
	tvd_expect(t, name, s, lba, 1, &tag);
}

struct dwait {
	int done, err;
};

static void discard_done(void *arg, int err)
{
	struct dwait *w = arg;
	w->done = 1;
	w->err = err;
}

static int tvd_discard(struct tvd *t, const char *name, uint64_t lba, unsigned nblk)
{
	struct kura_vd_handle *h;
	struct dwait w = { 0 };
	int err;

	if ((err = kura_vd_open(t->e, name, NULL, &h)))
		return err;
	err = kura_vd_discard(h, lba * 4096, (uint64_t)nblk * 4096, discard_done, &w);
	while (!err && !w.done)
		kura_loop_run_once(t->ts.loop, 100000000ull);
	kura_vd_close(h);
	return err ? err : w.err;
}

TEST(test_layer_read_falls_through_to_parent)
{
	struct tvd t;
	uint64_t want[4] = { 1, 2, 1, 1 }, old[4] = { 1, 1, 1, 1 };

	tvd_open(&t, 0);
	create(&t, "a", "64M");
	CHECK(tvd_write(&t, "a", 0, 4, 1) == 0);
	snap(&t, "a", "s1");
	CHECK(tvd_write(&t, "a", 1, 1, 2) == 0);
	tvd_expect(&t, "a", NULL, 0, 4, want);
	tvd_expect(&t, "a", "s1", 0, 4, old);
	expect1(&t, "a", NULL, 1000, 0);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"a\"}"), 0);
	CHECK_EQ(tvd_ans_u64(&t, "vdisk", "depth"), 2);
	CHECK_EQ(tvd_ans_u64(&t, "vdisk", "allocated"), 5 * 4096);
	tvd_restart(&t);
	tvd_expect(&t, "a", NULL, 0, 4, want);
	tvd_expect(&t, "a", "s1", 0, 4, old);
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

TEST(test_layer_partial_blocks_across_extents)
{
	struct tvd t;
	uint64_t want[EXTB + 4];

	tvd_open(&t, 0);
	create(&t, "a", "16M");
	/* Bottom layer: every other block across the end of extent 0. */
	for (unsigned i = 0; i < EXTB + 4; i += 2)
		CHECK(tvd_write(&t, "a", EXTB - 4 + i, 1, 10 + i) == 0);
	snap(&t, "a", "s1");
	for (unsigned i = 1; i < EXTB + 4; i += 4)
		CHECK(tvd_write(&t, "a", EXTB - 4 + i, 1, 1000 + i) == 0);
	for (unsigned i = 0; i < EXTB + 4; i++)
		want[i] = i % 2 == 0 ? 10 + i : (i % 4 == 1 ? 1000 + i : 0);
	/* One read spanning both extents and both layers. */
	tvd_expect(&t, "a", NULL, EXTB - 4, 8, want);
	tvd_expect(&t, "a", NULL, EXTB - 4, EXTB + 4, want);
	tvd_close(&t);
}

TEST(test_snapshot_of_snapshot_and_clone_of_clone)
{
	struct tvd t;

	tvd_open(&t, 0);
	create(&t, "a", "32M");
	CHECK(tvd_write(&t, "a", 0, 1, 1) == 0);
	snap(&t, "a", "s1");
	CHECK(tvd_write(&t, "a", 1, 1, 2) == 0);
	snap(&t, "a", "s2");
	CHECK(tvd_write(&t, "a", 0, 1, 3) == 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s1\",\"new\":\"b\"}") == 0);
	CHECK(tvd_write(&t, "b", 2, 1, 4) == 0);
	snap(&t, "b", "t");
	CHECK(tvd_ctl(&t, "{\"op\":\"clone\",\"name\":\"b\",\"snap\":\"t\",\"new\":\"c\"}") == 0);
	CHECK(tvd_write(&t, "c", 0, 1, 5) == 0);
	CHECK(tvd_write(&t, "b", 0, 1, 6) == 0);
	for (int round = 0; round < 2; round++) {
		expect1(&t, "a", NULL, 0, 3);
		expect1(&t, "a", NULL, 1, 2);
		expect1(&t, "a", "s2", 0, 1);
		expect1(&t, "a", "s1", 1, 0);
		expect1(&t, "b", NULL, 0, 6);
		expect1(&t, "b", NULL, 1, 0);
		expect1(&t, "b", "t", 0, 1);
		expect1(&t, "b", "t", 2, 4);
		expect1(&t, "c", NULL, 0, 5);
		expect1(&t, "c", NULL, 2, 4);
		CHECK(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"c\"}") == 0);
		CHECK_EQ(tvd_ans_u64(&t, "vdisk", "depth"), 3);
		CHECK(!strcmp(kura_json_str(kura_json_get(kura_json_get(t.ans, "vdisk"), "parent")),
			      "b@t"));
		tvd_restart(&t);
	}
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

TEST(test_rollback_restores_and_frees)
{
	struct tvd t;
	uint64_t before;

	tvd_open(&t, 0);
	create(&t, "a", "32M");
	CHECK(tvd_write(&t, "a", 0, 8, 1) == 0);
	snap(&t, "a", "s1");
	before = used_extents(&t);
	CHECK(tvd_write(&t, "a", 0, 1, 2) == 0);
	CHECK(tvd_write(&t, "a", 5 * EXTB, 1, 2) == 0);
	CHECK(used_extents(&t) == before + 2);
	CHECK(tvd_ctl(&t, "{\"op\":\"rollback\",\"name\":\"a\",\"snap\":\"s1\"}") == 0);
	tvd_jobs(&t);
	expect1(&t, "a", NULL, 0, 1);
	expect1(&t, "a", NULL, 5 * EXTB, 0);
	CHECK_EQ(used_extents(&t), before);
	/* rollback while exported is refused */
	{
		struct kura_vd_handle *h;
		CHECK(kura_vd_open(t.e, "a", NULL, &h) == 0);
		CHECK_EQ(tvd_ctl(&t, "{\"op\":\"rollback\",\"name\":\"a\",\"snap\":\"s1\"}"), -EBUSY);
		CHECK(strstr(t.msg, "exported"));
		CHECK_EQ(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\"}"), -EBUSY);
		kura_vd_close(h);
	}
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

/* Three snapshots, each with its own writes; deleting one at a time, in
 * every position, must leave everything else reading the same. */
static void chain3(struct tvd *t)
{
	create(t, "a", "32M");
	CHECK(tvd_write(t, "a", 0, 4, 1) == 0);          /* s1: 1 1 1 1 */
	snap(t, "a", "s1");
	CHECK(tvd_write(t, "a", 1, 1, 2) == 0);          /* s2: 1 2 1 1 */
	CHECK(tvd_write(t, "a", 3 * EXTB, 1, 2) == 0);
	snap(t, "a", "s2");
	CHECK(tvd_write(t, "a", 2, 1, 3) == 0);          /* s3: 1 2 3 1 */
	snap(t, "a", "s3");
	CHECK(tvd_write(t, "a", 3, 1, 4) == 0);          /* top: 1 2 3 4 */
}

static const uint64_t v_s1[4] = { 1, 1, 1, 1 }, v_s2[4] = { 1, 2, 1, 1 },
		      v_s3[4] = { 1, 2, 3, 1 }, v_top[4] = { 1, 2, 3, 4 };

static void check_chain(struct tvd *t, int s1, int s2, int s3)
{
	tvd_expect(t, "a", NULL, 0, 4, v_top);
	expect1(t, "a", NULL, 3 * EXTB, 2);
	if (s1)
		tvd_expect(t, "a", "s1", 0, 4, v_s1);
	if (s2)
		tvd_expect(t, "a", "s2", 0, 4, v_s2);
	if (s3)
		tvd_expect(t, "a", "s3", 0, 4, v_s3);
}

static void delete_snap(struct tvd *t, const char *s)
{
	CHECK(tvd_ctl(t, "{\"op\":\"delete\",\"name\":\"a\",\"snap\":\"%s\"}", s) == 0);
	tvd_jobs(t);
}

TEST(test_delete_snapshot_in_every_position)
{
	static const char *const orders[3][3] = {
		{ "s2", "s1", "s3" }, { "s1", "s3", "s2" }, { "s3", "s2", "s1" },
	};

	for (int o = 0; o < 3; o++) {
		struct tvd t;
		int alive[3] = { 1, 1, 1 };
		tvd_open(&t, 0);
		chain3(&t);
		check_chain(&t, 1, 1, 1);
		for (int k = 0; k < 3; k++) {
			delete_snap(&t, orders[o][k]);
			alive[orders[o][k][1] - '1'] = 0;
			check_chain(&t, alive[0], alive[1], alive[2]);
			tvd_fsck_clean(&t);
			CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"a\"}"), 0);
			CHECK_EQ(tvd_ans_u64(&t, "vdisk", "depth"), 4 - (k + 1));
		}
		tvd_restart(&t);
		check_chain(&t, 0, 0, 0);
		/* Every extent is held once: 0 and 3. */
		CHECK_EQ(used_extents(&t), 2);
		tvd_close(&t);
	}
}

TEST(test_delete_snapshot_moves_extents_without_copy)
{
	struct tvd t;
	uint64_t before;

	tvd_open(&t, 0);
	create(&t, "a", "64M");
	for (unsigned x = 0; x < 20; x++)
		CHECK(tvd_write(&t, "a", x * EXTB, EXTB, 100 + x) == 0);
	snap(&t, "a", "s1");
	CHECK(tvd_write(&t, "a", 0, 1, 7) == 0); /* the child holds extent 0 only */
	before = used_extents(&t);
	delete_snap(&t, "s1");
	/* 19 extents moved, extent 0 merged: one extent freed, none copied. */
	CHECK_EQ(used_extents(&t), before - 1);
	expect1(&t, "a", NULL, 0, 7);
	expect1(&t, "a", NULL, 1, 100);
	expect1(&t, "a", NULL, 19 * EXTB + 5, 119);
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

TEST(test_snapshot_with_clone_stays_hidden_until_clone_goes)
{
	struct tvd t;

	tvd_open(&t, 0);
	create(&t, "a", "32M");
	CHECK(tvd_write(&t, "a", 0, 2, 1) == 0);
	snap(&t, "a", "s1");
	CHECK(tvd_write(&t, "a", 1, 1, 2) == 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s1\",\"new\":\"b\"}") == 0);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\"}"), -ENOTEMPTY);
	CHECK(strstr(t.msg, "clones: b"));
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\",\"snap\":\"s1\"}") == 0);
	CHECK(!strcmp(kura_json_str(kura_json_get(t.ans, "note")), "b"));
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"a\",\"snap\":\"s1\"}"), -ENOENT);
	tvd_jobs(&t);
	expect1(&t, "b", NULL, 1, 1);
	expect1(&t, "a", NULL, 1, 2);
	tvd_fsck_clean(&t);
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"b\"}") == 0);
	tvd_jobs(&t);
	/* the hidden layer merged into a's top */
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"a\"}"), 0);
	CHECK_EQ(tvd_ans_u64(&t, "vdisk", "depth"), 1);
	expect1(&t, "a", NULL, 0, 1);
	expect1(&t, "a", NULL, 1, 2);
	tvd_fsck_clean(&t);
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\"}") == 0);
	tvd_jobs(&t);
	CHECK_EQ(used_extents(&t), 0);
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

TEST(test_flatten_detaches_clone)
{
	struct tvd t;

	tvd_open(&t, 0);
	create(&t, "a", "32M");
	CHECK(tvd_write(&t, "a", 0, 3, 1) == 0);
	CHECK(tvd_write(&t, "a", 2 * EXTB, 3, 1) == 0);
	snap(&t, "a", "s1");
	CHECK(tvd_ctl(&t, "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s1\",\"new\":\"b\"}") == 0);
	CHECK(tvd_write(&t, "b", 1, 1, 2) == 0);
	snap(&t, "b", "bs");
	CHECK(tvd_write(&t, "b", 2, 1, 3) == 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"flatten\",\"name\":\"b\"}") == 0);
	tvd_jobs(&t);
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\"}") == 0);
	tvd_jobs(&t);
	expect1(&t, "b", NULL, 0, 1);
	expect1(&t, "b", NULL, 1, 2);
	expect1(&t, "b", NULL, 2, 3);
	expect1(&t, "b", NULL, 2 * EXTB + 2, 1);
	expect1(&t, "b", "bs", 2, 1);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"flatten\",\"name\":\"b\"}"), -EINVAL);
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

TEST(test_full_clone_is_independent_and_resumes)
{
	struct tvd t;

	tvd_open(&t, 0);
	create(&t, "a", "64M");
	for (unsigned x = 0; x < 40; x++)
		CHECK(tvd_write(&t, "a", x * EXTB + x, 1, 500 + x) == 0);
	snap(&t, "a", "s1");
	CHECK(tvd_ctl(&t, "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s1\",\"new\":\"b\","
		      "\"full\":true}") == 0);
	/* building: not openable, not deletable */
	{
		struct kura_vd_handle *h;
		CHECK_EQ(kura_vd_open(t.e, "b", NULL, &h), -EBUSY);
	}
	/* stop the job part-way: a restart resumes it */
	for (int i = 0; i < 3; i++)
		kura_loop_run_once(t.ts.loop, 1000000);
	tvd_restart(&t);
	tvd_jobs(&t);
	CHECK(tvd_write(&t, "a", 0, 1, 9) == 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\",\"snap\":\"s1\"}") == 0);
	tvd_jobs(&t);
	for (unsigned x = 0; x < 40; x++)
		expect1(&t, "b", NULL, x * EXTB + x, 500 + x);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"b\"}"), 0);
	CHECK_EQ(tvd_ans_u64(&t, "vdisk", "depth"), 1);
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

/* Full clones of one template at once read it once between them
 * (vdisk/share.c), and each gets every block. */
TEST(test_full_clones_of_one_template_share_their_reads)
{
	struct tvd t;
	uint64_t r0, one, three;
	const char *names[] = { "c", "d", "e" };

	tvd_open(&t, 0);
	create(&t, "a", "64M");
	for (unsigned x = 0; x < 40; x++)
		CHECK(tvd_write(&t, "a", x * EXTB + 3 * x, 8, 700 + x) == 0);
	snap(&t, "a", "s1");
	r0 = t.m->reads;
	CHECK(tvd_ctl(&t, "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s1\",\"new\":\"b\","
		      "\"full\":true}") == 0);
	tvd_jobs(&t);
	one = t.m->reads - r0;
	/* three at once: created, then started together by a restart */
	for (unsigned i = 0; i < 3; i++)
		CHECK(tvd_ctl(&t, "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s1\",\"new\":\"%s\","
			      "\"full\":true}", names[i]) == 0);
	tvd_restart(&t);
	r0 = t.m->reads;
	tvd_jobs(&t);
	three = t.m->reads - r0;
	CHECK(one >= 40);
	CHECK(three < 2 * one);
	/* a change to the template's snapshot chain after the fact is not seen */
	CHECK(tvd_write(&t, "a", 0, 1, 9) == 0);
	for (unsigned i = 0; i < 3; i++)
		for (unsigned x = 0; x < 40; x++)
			for (unsigned b = 0; b < 8; b++)
				expect1(&t, names[i], NULL, x * EXTB + 3 * x + b, 700 + x);
	for (unsigned i = 0; i < 3; i++) {
		CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"%s\"}", names[i]), 0);
		CHECK_EQ(tvd_ans_u64(&t, "vdisk", "depth"), 1);
	}
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

TEST(test_cancelled_clone_leaves_nothing)
{
	struct tvd t;
	uint64_t id, before;

	tvd_open(&t, 0);
	create(&t, "a", "64M");
	for (unsigned x = 0; x < 40; x++)
		CHECK(tvd_write(&t, "a", x * EXTB, 1, 1) == 0);
	snap(&t, "a", "s1");
	before = used_extents(&t);
	CHECK(tvd_ctl(&t, "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s1\",\"new\":\"b\","
		      "\"full\":true}") == 0);
	id = tvd_ans_u64(&t, "job", "id");
	CHECK(tvd_ctl(&t, "{\"op\":\"job_cancel\",\"id\":%llu}", (unsigned long long)id) == 0);
	tvd_jobs(&t);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"b\"}"), -ENOENT);
	CHECK_EQ(used_extents(&t), before);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"job_cancel\",\"id\":%llu}", (unsigned long long)id), -EINVAL);
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

TEST(test_bad_requests_change_nothing)
{
	struct tvd t;

	tvd_open(&t, 0);
	create(&t, "a", "16M");
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"create\",\"name\":\"a\",\"size\":4096}"), -EEXIST);
	CHECK(strstr(t.msg, "already exists"));
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"create\",\"name\":\"a b\",\"size\":4096}"), -EINVAL);
	CHECK(strstr(t.msg, "A-Z a-z 0-9 . _ -"));
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"create\",\"name\":\"-x\",\"size\":4096}"), -EINVAL);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"create\",\"name\":\"x\",\"size\":0}"), -EINVAL);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"create\",\"name\":\"x\",\"size\":4097}"), -EINVAL);
	CHECK(strstr(t.msg, "multiple of 4 KiB"));
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"create\",\"name\":\"x\",\"size\":%llu}",
			 (unsigned long long)(KURA_VD_SIZE_MAX + 4096)), -EFBIG);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"create\",\"name\":\"x\"}"), -EINVAL);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"create\",\"name\":7,\"size\":4096}"), -EINVAL);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"nonsense\"}"), -EINVAL);
	CHECK_EQ(tvd_ctl(&t, "[1,2]"), -EINVAL);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"zz\"}"), -ENOENT);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\",\"snap\":\"nope\"}"), -ENOENT);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"rollback\",\"name\":\"a\",\"snap\":\"nope\"}"), -ENOENT);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"resize\",\"name\":\"a\",\"size\":4096}"), -EINVAL);
	CHECK(strstr(t.msg, "--shrink"));
	snap(&t, "a", "s");
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"snapshot\",\"name\":\"a\",\"snap\":\"s\"}"), -EEXIST);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s\",\"new\":\"a\"}"),
		 -EEXIST);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"import\",\"file\":\"rel/path\",\"name\":\"i\"}"), -EINVAL);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"import\",\"file\":\"/nonexistent/x\",\"name\":\"i\"}"),
		 -ENOENT);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"job\",\"id\":12345}"), -ENOENT);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"list\"}"), 0);
	CHECK_EQ(kura_json_len(kura_json_get(t.ans, "vdisks")), 1);
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

TEST(test_shrink_hides_old_data_after_regrow)
{
	struct tvd t;

	tvd_open(&t, 0);
	create(&t, "a", "8M");
	CHECK(tvd_write(&t, "a", 2000, 4, 1) == 0);
	snap(&t, "a", "s");
	CHECK(tvd_write(&t, "a", 2040, 4, 2) == 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"resize\",\"name\":\"a\",\"size\":%u,\"shrink\":true}",
		      1024u * 4096) == 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"resize\",\"name\":\"a\",\"size\":%u}", 2048u * 4096) == 0);
	expect1(&t, "a", NULL, 2000, 0);
	expect1(&t, "a", NULL, 2040, 0);
	expect1(&t, "a", "s", 2000, 1);
	CHECK(tvd_write(&t, "a", 2001, 1, 3) == 0);
	expect1(&t, "a", NULL, 2001, 3);
	tvd_restart(&t);
	expect1(&t, "a", NULL, 2000, 0);
	expect1(&t, "a", NULL, 2001, 3);
	tvd_close(&t);
}

TEST(test_discard_reads_zeros_over_parent)
{
	struct tvd t;

	tvd_open(&t, 0);
	create(&t, "a", "8M");
	CHECK(tvd_write(&t, "a", 0, 8, 1) == 0);
	snap(&t, "a", "s");
	CHECK(tvd_write(&t, "a", EXTB, 8, 2) == 0);
	CHECK(tvd_discard(&t, "a", 0, 2 * EXTB) == 0);
	expect1(&t, "a", NULL, 3, 0);
	expect1(&t, "a", NULL, EXTB + 3, 0);
	expect1(&t, "a", "s", 3, 1);
	tvd_restart(&t);
	expect1(&t, "a", NULL, 3, 0);
	expect1(&t, "a", NULL, EXTB + 3, 0);
	/* extent 1 was the top's own: trimmed, so freed */
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"a\"}"), 0);
	tvd_close(&t);
}

TEST(test_snapshot_survives_power_cut)
{
	struct tvd t;

	tvd_open(&t, 0);
	create(&t, "a", "8M");
	CHECK(tvd_write(&t, "a", 0, 2, 1) == 0);
	snap(&t, "a", "s");
	CHECK(tvd_write(&t, "a", 0, 1, 2) == 0);
	tvd_crash_restart(&t);
	expect1(&t, "a", NULL, 0, 2);
	expect1(&t, "a", NULL, 1, 1);
	expect1(&t, "a", "s", 0, 1);
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

static void write_file(const char *path, size_t len, unsigned seed)
{
	char *buf = malloc(len);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	CHECK(buf && fd >= 0);
	srand(seed);
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(rand() & 0xff);
	/* a hole of zeros that import must not allocate */
	memset(buf + 4096, 0, len / 2);
	CHECK(write(fd, buf, len) == (ssize_t)len);
	close(fd);
	free(buf);
}

static int same_file(const char *a, const char *b, size_t len)
{
	char *x = malloc(len + 1), *y = malloc(len + 1);
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY), same;

	CHECK(x && y && fa >= 0 && fb >= 0);
	same = read(fa, x, len + 1) == (ssize_t)len && read(fb, y, len + 1) == (ssize_t)len &&
	       !memcmp(x, y, len);
	close(fa);
	close(fb);
	free(x);
	free(y);
	return same;
}

TEST(test_import_export_round_trip)
{
	struct tvd t;
	char in[400], out[400], out2[400];
	size_t len = 5u * 1048576 + 4096;

	snprintf(in, sizeof(in), "%s/in.img", test_tmpdir());
	snprintf(out, sizeof(out), "%s/out.img", test_tmpdir());
	snprintf(out2, sizeof(out2), "%s/out2.img", test_tmpdir());
	write_file(in, len, 7);
	tvd_open(&t, 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"import\",\"file\":\"%s\",\"name\":\"i\"}", in) == 0);
	CHECK_EQ(tvd_ans_u64(&t, "vdisk", "size"), len);
	tvd_jobs(&t);
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"i\"}"), 0);
	CHECK(tvd_ans_u64(&t, "vdisk", "allocated") <= len - len / 2 + 4096);
	snap(&t, "i", "s");
	CHECK(tvd_write(&t, "i", 0, 1, 9) == 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"export\",\"name\":\"i\",\"snap\":\"s\",\"file\":\"%s\"}",
		      out) == 0);
	tvd_jobs(&t);
	CHECK(same_file(in, out, len));
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"export\",\"name\":\"i\",\"file\":\"%s\"}", out), -EEXIST);
	CHECK(tvd_ctl(&t, "{\"op\":\"export\",\"name\":\"i\",\"file\":\"%s\"}", out2) == 0);
	tvd_jobs(&t);
	CHECK(!same_file(in, out2, len));
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

/* Deep chains remember which layers hold an extent; merges and flattens
 * must not leave that memory stale. */
TEST(test_deep_chain_reads_stay_right_across_merges)
{
	struct tvd t;
	char s[16];

	tvd_open(&t, 0);
	create(&t, "a", "32M");
	for (int i = 0; i < 20; i++) {
		CHECK(tvd_write(&t, "a", (uint64_t)i * 3, 1, 100 + i) == 0);
		CHECK(tvd_write(&t, "a", 5 * EXTB + i, 1, 200 + i) == 0);
		snprintf(s, sizeof(s), "s%d", i);
		snap(&t, "a", s);
	}
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 20; i++) {
			expect1(&t, "a", NULL, (uint64_t)i * 3, 100 + i);
			expect1(&t, "a", NULL, 5 * EXTB + i, 200 + i);
			expect1(&t, "a", "s16", 5 * EXTB + i, i <= 16 ? 200 + i : 0);
		}
		/* merge the oldest, a middle and the newest snapshot */
		for (int k = 0; k < 3; k++) {
			static const int victim[3][3] = { { 0, 10, 19 }, { 1, 11, 18 }, { 2, 12, 17 } };
			snprintf(s, sizeof(s), "s%d", victim[round][k]);
			delete_snap(&t, s);
		}
	}
	CHECK(tvd_ctl(&t, "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s16\",\"new\":\"b\"}") == 0);
	for (int i = 0; i < 20; i++)
		expect1(&t, "b", NULL, 5 * EXTB + i, i <= 16 ? 200 + i : 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"flatten\",\"name\":\"b\"}") == 0);
	tvd_jobs(&t);
	for (int i = 0; i < 20; i++)
		expect1(&t, "b", NULL, 5 * EXTB + i, i <= 16 ? 200 + i : 0);
	tvd_fsck_clean(&t);
	tvd_close(&t);
}

/* a: 12 extents (2 blocks each), snapshot s1 with a clone b of it, every
 * third extent's second block rewritten, snapshot s2, block 0 rewritten. */
static void chain_with_clone(struct tvd *t)
{
	tvd_open(t, 0);
	create(t, "a", "32M");
	for (unsigned x = 0; x < 12; x++)
		CHECK(tvd_write(t, "a", x * EXTB, 2, 10 + x) == 0);
	snap(t, "a", "s1");
	CHECK(tvd_ctl(t, "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s1\",\"new\":\"b\"}") == 0);
	for (unsigned x = 0; x < 12; x += 3)
		CHECK(tvd_write(t, "a", x * EXTB + 1, 1, 100 + x) == 0);
	snap(t, "a", "s2");
	CHECK(tvd_write(t, "a", 0, 1, 7) == 0);
}

/* A layer being merged into must not itself be merged away until that
 * merge ends: deleting the next snapshot while the first merge runs. */
TEST(test_delete_snapshot_while_merging_into_it)
{
	struct tvd t;

	chain_with_clone(&t);
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\",\"snap\":\"s1\"}") == 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"b\"}") == 0);
	/* s1's layer now merges into s2's; delete s2 before that ends */
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\",\"snap\":\"s2\"}") == 0);
	tvd_jobs(&t);
	tvd_fsck_clean(&t);
	for (unsigned x = 0; x < 12; x++) {
		expect1(&t, "a", NULL, x * EXTB, x ? 10 + x : 7);
		expect1(&t, "a", NULL, x * EXTB + 1, x % 3 ? 10 + x : 100 + x);
	}
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"a\"}"), 0);
	CHECK_EQ(tvd_ans_u64(&t, "vdisk", "depth"), 1);
	CHECK_EQ(used_extents(&t), 12);
	tvd_close(&t);
}

TEST(test_hidden_snapshot_waits_for_its_child_merging_away)
{
	struct tvd t;

	chain_with_clone(&t);
	/* the top holds every extent, so s2's merge copies and takes a while */
	for (unsigned x = 0; x < 12; x++)
		CHECK(tvd_write(&t, "a", x * EXTB + 2, 1, 200 + x) == 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\",\"snap\":\"s1\"}") == 0);
	/* s2's layer merges into the top; while it does, s1's layer loses its
	 * last clone and may be collected: it must merge into the top, not
	 * into s2's layer on its way out */
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"a\",\"snap\":\"s2\"}") == 0);
	CHECK(tvd_ctl(&t, "{\"op\":\"delete\",\"name\":\"b\"}") == 0);
	tvd_jobs(&t);
	tvd_fsck_clean(&t);
	for (unsigned x = 0; x < 12; x++) {
		expect1(&t, "a", NULL, x * EXTB, x ? 10 + x : 7);
		expect1(&t, "a", NULL, x * EXTB + 1, x % 3 ? 10 + x : 100 + x);
		expect1(&t, "a", NULL, x * EXTB + 2, 200 + x);
	}
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"info\",\"name\":\"a\"}"), 0);
	CHECK_EQ(tvd_ans_u64(&t, "vdisk", "depth"), 1);
	CHECK_EQ(used_extents(&t), 12);
	tvd_crash_restart(&t);
	tvd_fsck_clean(&t);
	expect1(&t, "a", NULL, 0, 7);
	tvd_close(&t);
}

/* Spoils, on the media, the block written with tag and salt (ts_fill)
 * outside the journal (its first 16 MiB): as a disk's silent corruption. */
static void spoil_block(struct tvd *t, uint64_t tag, uint64_t salt)
{
	char *pattern = ts_buf(1);
	int found = 0;

	ts_fill(pattern, tag, salt);
	for (uint64_t off = 16u << 20; off + 4096 <= t->m->size; off += 4096)
		if (!memcmp(t->m->current + off, pattern, 4096)) {
			t->m->current[off + 100] ^= 0x40;
			t->m->durable[off + 100] ^= 0x40;
			found++;
		}
	CHECK_EQ(found, 1);
}

static uint64_t scrub(struct tvd *t, const char *name)
{
	uint64_t id;

	CHECK(tvd_ctl(t, "{\"op\":\"scrub\",\"name\":\"%s\"}", name) == 0);
	id = tvd_ans_u64(t, "job", "id");
	tvd_jobs(t);
	CHECK(tvd_ctl(t, "{\"op\":\"job\",\"id\":%llu}", (unsigned long long)id) == 0);
	return id;
}

TEST(test_scrub_reads_every_layer_and_places_the_blocks_that_do_not_read)
{
	struct tvd t;
	const struct kura_json *bad, *job;
	const char *s;

	tvd_open(&t, 0);
	create(&t, "a", "64M");
	CHECK(tvd_write(&t, "a", 0, 4, 11) == 0);
	CHECK(tvd_write(&t, "a", EXTB + 44, 2, 12) == 0);
	snap(&t, "a", "s1");
	CHECK(tvd_write(&t, "a", 1, 1, 13) == 0); /* hides s1's block 1 from reads of a */
	CHECK(tvd_write(&t, "a", 2 * EXTB + 88, 1, 14) == 0);
	tvd_restart(&t); /* every block in place */

	/* all well: 8 blocks read, none bad */
	scrub(&t, "a");
	job = kura_json_get(t.ans, "job");
	CHECK(kura_json_get_str(job, "state", &s) == 0 && !strcmp(s, "done"));
	CHECK(kura_json_get_str(job, "type", &s) == 0 && !strcmp(s, "scrub"));
	CHECK_EQ(tvd_ans_u64(&t, "job", "scrub_bytes"), 8 * 4096);
	CHECK_EQ(tvd_ans_u64(&t, "job", "bad_blocks"), 0);

	/* s1's block 1, which no read of a reaches, and a's own block at
	 * 2 * EXTB + 88 */
	spoil_block(&t, 11, 1);
	spoil_block(&t, 14, 2 * EXTB + 88);
	scrub(&t, "a");
	job = kura_json_get(t.ans, "job");
	CHECK(kura_json_get_str(job, "state", &s) == 0 && !strcmp(s, "done"));
	CHECK_EQ(tvd_ans_u64(&t, "job", "bad_blocks"), 2);
	CHECK_EQ(tvd_ans_u64(&t, "job", "scrub_bytes"), 6 * 4096); /* the rest read */
	bad = kura_json_get(job, "bad");
	CHECK_EQ(kura_json_len(bad), 2);
	for (size_t i = 0; i < kura_json_len(bad); i++) {
		const struct kura_json *b = kura_json_at(bad, i);
		uint64_t off = 0;

		CHECK(kura_json_get_u64(b, "offset", &off) == 0);
		if (off == 4096) {
			CHECK(kura_json_get_str(b, "snapshot", &s) == 0 && !strcmp(s, "s1"));
		} else {
			CHECK_EQ(off, (2 * EXTB + 88) * 4096ull);
			CHECK_EQ(kura_json_type(kura_json_get(b, "snapshot")), KURA_JSON_NULL);
		}
	}
	/* the blocks beside the bad ones read as written */
	expect1(&t, "a", NULL, 0, 11);
	expect1(&t, "a", NULL, 1, 13);
	expect1(&t, "a", "s1", 2, 11);
	expect1(&t, "a", NULL, EXTB + 45, 12);
	/* a scrub is refused on what is not there */
	CHECK_EQ(tvd_ctl(&t, "{\"op\":\"scrub\",\"name\":\"nope\"}"), -ENOENT);
	tvd_close(&t);
}

/* Copies for the scrub to compare (as in a cluster): copy 0 is the store's
 * blocks, copy 1 the same except that block rot_blk of extent rot_ext
 * reads with a byte changed while `rot` is above 0 (-1: rotten until
 * written again; n > 0: for n more reads of that copy only, as a write
 * landing between the scrub's reads would show); copy 2 is not there. */
static struct {
	uint64_t rot_ext;
	unsigned rot_blk;
	int rot;
	unsigned writes_over; /* writes that covered the rotten block */
} copies;

static int copy_read(void *b, unsigned copy, uint64_t layer, uint64_t ext, unsigned blk,
		     unsigned nblk, void *buf, enum kura_io_class cls, char who[64], kura_blk_cb cb,
		     void *arg);

static void rot_copy(void *buf, uint64_t ext, unsigned blk, unsigned nblk)
{
	if (copies.rot && ext == copies.rot_ext && copies.rot_blk >= blk &&
	    copies.rot_blk < blk + nblk) {
		((char *)buf)[(size_t)(copies.rot_blk - blk) * 4096 + 7] ^= 1;
		if (copies.rot > 0)
			copies.rot--;
	}
}

struct copy_ctx {
	kura_blk_cb cb;
	void *arg, *buf;
	uint64_t ext;
	unsigned blk, nblk, copy;
};

static void copy_done(void *arg, int err)
{
	struct copy_ctx *c = arg;

	if (!err && c->copy == 1)
		rot_copy(c->buf, c->ext, c->blk, c->nblk);
	c->cb(c->arg, err);
	free(c);
}

static int copy_read(void *b, unsigned copy, uint64_t layer, uint64_t ext, unsigned blk,
		     unsigned nblk, void *buf, enum kura_io_class cls, char who[64], kura_blk_cb cb,
		     void *arg)
{
	struct copy_ctx *c;
	int err;

	if (copy > 1)
		return -ENOENT;
	snprintf(who, 64, "copy%u", copy);
	c = calloc(1, sizeof(*c));
	*c = (struct copy_ctx){ cb, arg, buf, ext, blk, nblk, copy };
	err = kura_vd_store_ops.read(b, layer, ext, blk, nblk, buf, cls, copy_done, c);
	if (err)
		free(c);
	return err;
}

static int copy_write(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		      const void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	if (ext == copies.rot_ext && copies.rot_blk >= blk && copies.rot_blk < blk + nblk) {
		copies.writes_over++;
		if (copies.rot < 0)
			copies.rot = 0; /* every copy written again */
	}
	return kura_vd_store_ops.write(b, layer, ext, blk, nblk, buf, cls, cb, arg);
}

TEST(test_scrub_compares_copies_and_writes_again_only_what_still_differs_locked)
{
	struct kura_vd_blk_ops ops = kura_vd_store_ops;
	struct tvd t;

	ops.read_copy = copy_read;
	ops.write = copy_write;
	ops.write_cached = NULL;
	tvd_open(&t, 0);
	t.blk = &ops;
	tvd_restart(&t);
	create(&t, "a", "16M");
	CHECK(tvd_write(&t, "a", 0, 40, 21) == 0);
	CHECK(tvd_write(&t, "a", EXTB + 3, 1, 22) == 0);
	memset(&copies, 0, sizeof(copies));
	copies.rot_ext = 0;
	copies.rot_blk = 37; /* in the second chunk of 32 */

	/* every copy alike: nothing written */
	scrub(&t, "a");
	CHECK_EQ(tvd_ans_u64(&t, "job", "copies_repaired"), 0);
	CHECK_EQ(tvd_ans_u64(&t, "job", "scrub_bytes"), 41 * 4096);
	CHECK_EQ(copies.writes_over, 0);

	/* copy 1 differs once, then no more (a write came between the
	 * scrub's reads): compared again locked, alike, nothing written */
	copies.rot = 1;
	scrub(&t, "a");
	CHECK_EQ(tvd_ans_u64(&t, "job", "copies_repaired"), 0);
	CHECK_EQ(copies.writes_over, 0);
	CHECK_EQ(copies.rot, 0);

	/* copy 1 rotten: its chunk (blocks 32-39) is written again, once */
	copies.rot = -1;
	scrub(&t, "a");
	CHECK_EQ(tvd_ans_u64(&t, "job", "copies_repaired"), 8);
	CHECK_EQ(tvd_ans_u64(&t, "job", "bad_blocks"), 0);
	CHECK_EQ(copies.writes_over, 1);
	CHECK_EQ(copies.rot, 0);
	{
		uint64_t tags[40];

		for (unsigned i = 0; i < 40; i++)
			tags[i] = 21;
		tvd_expect(&t, "a", NULL, 0, 40, tags);
	}
	expect1(&t, "a", NULL, EXTB + 3, 22);
	/* and scrubbed again, every copy alike */
	scrub(&t, "a");
	CHECK_EQ(tvd_ans_u64(&t, "job", "copies_repaired"), 0);
	CHECK_EQ(copies.writes_over, 1);
	tvd_close(&t);
}
