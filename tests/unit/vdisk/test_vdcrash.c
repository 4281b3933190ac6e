/* Power cuts during vdisk operations: a scripted day of snapshots, clones,
 * deletes, rollbacks and jobs, cut at many points. After the restart, jobs
 * finish, fsck finds nothing, and every vdisk and snapshot reads as it did
 * after the last acknowledged step or after the step in flight. */
#include "tests/unit/harness.h"
#include "tests/unit/vdisk/tvd.h"

#include "common/util.h"

#include <errno.h>

#define NPROBE 8
#define NOBJ 6

static const uint64_t probes[NPROBE] = { 0, 1, 255, 256, 700, 1024, 3000, 5000 };
static const char *const objs[NOBJ][2] = {
	{ "a", NULL }, { "a", "s1" }, { "a", "s2" }, { "b", NULL }, { "c", NULL }, { "c", "t" },
};

struct state {
	int exists[NOBJ];
	uint64_t tags[NOBJ][NPROBE];
};

/* One acknowledged thing per step: a control request, or one block write
 * (vdisk, probe, tag); jobs: wait for background jobs first. */
struct act {
	const char *ctl;
	const char *v;
	int probe;
	uint64_t tag;
	int jobs;
};

static const struct act acts[] = {
	{ "{\"op\":\"create\",\"name\":\"a\",\"size\":33554432}", NULL, 0, 0, 0 },
	{ NULL, "a", 0, 100, 0 }, { NULL, "a", 1, 101, 0 }, { NULL, "a", 3, 103, 0 },
	{ "{\"op\":\"snapshot\",\"name\":\"a\",\"snap\":\"s1\"}", NULL, 0, 0, 0 },
	{ NULL, "a", 0, 200, 0 }, { NULL, "a", 4, 204, 0 },
	{ "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s1\",\"new\":\"b\"}", NULL, 0, 0, 0 },
	{ NULL, "b", 1, 301, 0 }, { NULL, "b", 5, 305, 0 },
	{ "{\"op\":\"snapshot\",\"name\":\"a\",\"snap\":\"s2\"}", NULL, 0, 0, 0 },
	{ NULL, "a", 2, 402, 0 }, { NULL, "a", 6, 406, 0 },
	{ "{\"op\":\"delete\",\"name\":\"a\",\"snap\":\"s1\"}", NULL, 0, 0, 0 },
	{ "{\"op\":\"clone\",\"name\":\"a\",\"snap\":\"s2\",\"new\":\"c\",\"full\":true}", NULL, 0, 0, 0 },
	{ NULL, "c", 7, 507, 1 },
	{ "{\"op\":\"delete\",\"name\":\"b\"}", NULL, 0, 0, 0 },
	{ "{\"op\":\"snapshot\",\"name\":\"c\",\"snap\":\"t\"}", NULL, 0, 0, 1 },
	{ NULL, "c", 0, 600, 0 },
	{ "{\"op\":\"rollback\",\"name\":\"a\",\"snap\":\"s2\"}", NULL, 0, 0, 0 },
	{ "{\"op\":\"delete\",\"name\":\"a\",\"snap\":\"s2\"}", NULL, 0, 0, 0 },
	{ "{\"op\":\"delete\",\"name\":\"c\",\"snap\":\"t\"}", NULL, 0, 0, 1 },
	{ NULL, "a", 7, 707, 1 }, { NULL, "a", 2, 702, 0 },
};

#define NSTEP ((int)KURA_ARRAY_SIZE(acts))

static int step(struct tvd *t, int k)
{
	const struct act *a = &acts[k];

	if (a->jobs)
		tvd_jobs(t);
	if (a->ctl)
		return tvd_ctl(t, "%s", a->ctl);
	return tvd_write(t, a->v, probes[a->probe], 1, a->tag);
}

static void capture(struct tvd *t, struct state *s)
{
	memset(s, 0, sizeof(*s));
	for (int o = 0; o < NOBJ; o++) {
		struct kura_vd_handle *h;
		if (kura_vd_open(t->e, objs[o][0], objs[o][1], &h))
			continue;
		kura_vd_close(h);
		s->exists[o] = 1;
		for (int i = 0; i < NPROBE; i++)
			s->tags[o][i] = tvd_tag(t, objs[o][0], objs[o][1], probes[i]);
	}
}

static int same(const struct state *a, const struct state *b)
{
	return !memcmp(a, b, sizeof(*a));
}

static void show(const char *what, const struct state *s)
{
	fprintf(stderr, "  %s:", what);
	for (int o = 0; o < NOBJ; o++) {
		if (!s->exists[o])
			continue;
		fprintf(stderr, " %s%s%s=[", objs[o][0], objs[o][1] ? "@" : "",
			objs[o][1] ? objs[o][1] : "");
		for (int i = 0; i < NPROBE; i++)
			fprintf(stderr, "%s%llu", i ? " " : "", (unsigned long long)s->tags[o][i]);
		fprintf(stderr, "]");
	}
	fprintf(stderr, "\n");
}

static struct state golden[64];
static uint64_t golden_writes;

static void run_golden(void)
{
	struct tvd t;
	uint64_t w0;

	tvd_open(&t, 64u << 20);
	w0 = t.m->writes;
	capture(&t, &golden[0]);
	for (int k = 0; k < NSTEP; k++) {
		CHECK_EQ(step(&t, k), 0);
		tvd_jobs(&t);
		capture(&t, &golden[k + 1]);
	}
	tvd_fsck_clean(&t);
	golden_writes = t.m->writes - w0;
	tvd_close(&t);
}

static void run_cut(uint64_t cut, enum fake_cut_mode mode)
{
	struct tvd t;
	struct state got;
	int k;

	tvd_open(&t, 64u << 20);
	t.m->cut_at = t.m->writes + cut;
	t.m->cut_mode = mode;
	t.m->seed = (unsigned)cut;
	for (k = 0; k < NSTEP; k++)
		if (step(&t, k))
			break;
	/* steps before k were acknowledged; k may or may not have happened */
	tvd_crash_restart(&t);
	tvd_jobs(&t);
	tvd_fsck_clean(&t);
	capture(&t, &got);
	if (!same(&got, &golden[k]) && (k == NSTEP || !same(&got, &golden[k + 1]))) {
		fprintf(stderr, "  cut at write %llu during step %d\n", (unsigned long long)cut, k);
		show("got", &got);
		show("after the last acknowledged step", &golden[k]);
		if (k < NSTEP)
			show("after the step in flight", &golden[k + 1]);
		exit(1);
	}
	tvd_close(&t);
}

static unsigned points(void)
{
	const char *p = getenv("KURA_CRASH_POINTS");
	unsigned long n = p ? strtoul(p, NULL, 10) : 0;

	return n > 0 && n < 100000 ? (unsigned)n : 40;
}

TEST_T(test_vdisk_power_cut_during_operations, 300)
{
	unsigned n = points();

	const char *only = getenv("KURA_CRASH_AT"); /* one cut point, for debugging */

	run_golden();
	CHECK(golden_writes > 10);
	if (only) {
		run_cut((uint64_t)atoll(only), CUT_DROP);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t cut = 1 + (golden_writes * i) / n;
		run_cut(cut, i % 2 ? CUT_RANDOM : CUT_DROP);
	}
}
