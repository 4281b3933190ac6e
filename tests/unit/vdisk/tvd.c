#include "tests/unit/vdisk/tvd.h"
#include "tests/unit/harness.h"

#include "common/util.h"

#include <errno.h>
#include <sys/stat.h>
#include <stdarg.h>

static void start(struct tvd *t)
{
	const struct kura_cat_ops *ops;
	struct kura_vd_opts o = { 0 };
	char err[256];
	void *be;

	CHECK(ts_open(&t->ts, t->m, t->name) == 0);
	kura_cat_rocks_create(kura_blk_store_md(t->ts.s), &ops, &be);
	CHECK(kura_cat_open(t->ts.loop, ops, be, &t->cat) == 0);
	o.loop = t->ts.loop;
	o.store = t->ts.s;
	o.blk = t->blk;
	o.blk_arg = t->ts.s;
	o.cat = t->cat;
	if (kura_vd_engine_open(&o, &t->e, err, sizeof(err))) {
		fprintf(stderr, "  engine open: %s\n", err);
		exit(1);
	}
}

void tvd_open(struct tvd *t, uint64_t media_size)
{
	struct stat st;

	memset(t, 0, sizeof(*t));
	/* each store of a test in a directory of its own */
	for (int i = 0;; i++) {
		char p[400];
		snprintf(t->name, sizeof(t->name), "vd%d", i);
		snprintf(p, sizeof(p), "%s/%s", test_tmpdir(), t->name);
		if (stat(p, &st))
			break;
	}
	t->m = fake_media_create(media_size ? media_size : 256u << 20);
	CHECK(t->m);
	start(t);
}

static void stop(struct tvd *t)
{
	kura_vd_engine_close(t->e);
	kura_cat_close(t->cat);
	kura_json_free(t->ans);
	t->ans = NULL;
}

void tvd_close(struct tvd *t)
{
	stop(t);
	ts_close(&t->ts);
	fake_media_destroy(t->m);
}

void tvd_restart(struct tvd *t)
{
	stop(t);
	ts_close(&t->ts);
	memset(&t->ts, 0, sizeof(t->ts));
	start(t);
}

void tvd_crash_restart(struct tvd *t)
{
	/* The power is gone: nothing more reaches the media. What is in
	 * flight fails; then the process's memory goes, only the media and
	 * what the catalog had made durable remain. */
	t->m->lost = 1;
	stop(t);
	ts_crash(&t->ts);
	memset(&t->ts, 0, sizeof(t->ts));
	fake_power_on(t->m);
	start(t);
}

struct wait {
	int done, err;
	char *msg;
	size_t msglen;
};

static void ctl_done(void *arg, int err, const char *msg)
{
	struct wait *w = arg;

	w->done = 1;
	w->err = err;
	if (msg)
		snprintf(w->msg, w->msglen, "%s", msg);
}

int tvd_ctl(struct tvd *t, const char *fmt, ...)
{
	struct wait w = { .msg = t->msg, .msglen = sizeof(t->msg) };
	struct kura_json *req;
	struct kura_jw jw;
	char text[4096], why[128];
	const char *out;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (kura_json_parse(text, strlen(text), &req, why, sizeof(why))) {
		fprintf(stderr, "  bad test request %s: %s\n", text, why);
		exit(1);
	}
	t->msg[0] = '\0';
	kura_jw_init(&jw);
	kura_jw_obj(&jw, NULL);
	kura_vd_ctl(t->e, req, &jw, ctl_done, &w);
	CHECK(!w.done); /* never answers from inside the call */
	while (!w.done)
		kura_loop_run_once(t->ts.loop, 100000000ull);
	kura_jw_end(&jw);
	out = kura_jw_finish(&jw, NULL);
	CHECK(out);
	kura_json_free(t->ans);
	CHECK(kura_json_parse(out, strlen(out), &t->ans, why, sizeof(why)) == 0);
	kura_jw_free(&jw);
	kura_json_free(req);
	if (w.err)
		fprintf(stderr, "  (request %s: %s)\n", text, t->msg);
	return w.err;
}

uint64_t tvd_ans_u64(struct tvd *t, const char *obj, const char *key)
{
	const struct kura_json *o = obj ? kura_json_get(t->ans, obj) : t->ans;
	uint64_t v = 0;

	CHECK(o && kura_json_get_u64(o, key, &v) == 0);
	return v;
}

struct iow {
	int done, err;
};

static void io_done(void *arg, int err)
{
	struct iow *w = arg;
	w->done = 1;
	w->err = err;
}

static int wait_io(struct tvd *t, struct iow *w)
{
	while (!w->done)
		kura_loop_run_once(t->ts.loop, 100000000ull);
	return w->err;
}

int tvd_write(struct tvd *t, const char *name, uint64_t lba, unsigned nblk, uint64_t tag)
{
	struct kura_vd_handle *h;
	struct iow w = { 0 };
	char *buf = ts_buf(nblk);
	int err;

	for (unsigned i = 0; i < nblk; i++) {
		if (tag)
			ts_fill(buf + (size_t)i * 4096, tag, lba + i);
		else
			memset(buf + (size_t)i * 4096, 0, 4096);
	}
	if ((err = kura_vd_open(t->e, name, NULL, &h)))
		return err;
	err = kura_vd_write(h, lba * 4096, (uint64_t)nblk * 4096, buf, KURA_IO_GUEST, io_done, &w);
	if (!err)
		err = wait_io(t, &w);
	kura_vd_close(h);
	return err;
}

uint64_t tvd_tag(struct tvd *t, const char *name, const char *snap, uint64_t lba)
{
	struct kura_vd_handle *h;
	struct iow w = { 0 };
	char *buf = ts_buf(1);

	CHECK(kura_vd_open(t->e, name, snap, &h) == 0);
	CHECK(kura_vd_read(h, lba * 4096, 4096, buf, KURA_IO_GUEST, io_done, &w) == 0);
	CHECK(wait_io(t, &w) == 0);
	kura_vd_close(h);
	return ts_tag(buf, lba);
}

void tvd_expect(struct tvd *t, const char *name, const char *snap, uint64_t lba, unsigned nblk,
		const uint64_t *tags)
{
	struct kura_vd_handle *h;
	struct iow w = { 0 };
	char *buf = ts_buf(nblk);

	CHECK(kura_vd_open(t->e, name, snap, &h) == 0);
	CHECK(kura_vd_read(h, lba * 4096, (uint64_t)nblk * 4096, buf, KURA_IO_GUEST, io_done,
			   &w) == 0);
	CHECK(wait_io(t, &w) == 0);
	kura_vd_close(h);
	for (unsigned i = 0; i < nblk; i++) {
		uint64_t got = ts_tag(buf + (size_t)i * 4096, lba + i);
		if (got != tags[i]) {
			fprintf(stderr, "  %s%s%s block %llu: tag %llu, expected %llu\n", name,
				snap ? "@" : "", snap ? snap : "", (unsigned long long)(lba + i),
				(unsigned long long)got, (unsigned long long)tags[i]);
			exit(1);
		}
	}
}

void tvd_jobs(struct tvd *t)
{
	kura_vd_wait_jobs(t->e);
}

void tvd_fsck_clean(struct tvd *t)
{
	const struct kura_json *p;
	int clean = 0;

	CHECK(tvd_ctl(t, "{\"op\":\"fsck\"}") == 0);
	p = kura_json_get(t->ans, "problems");
	for (size_t i = 0; i < kura_json_len(p); i++)
		fprintf(stderr, "  fsck: %s\n", kura_json_str(kura_json_at(p, i)));
	CHECK(kura_json_get_bool(t->ans, "clean", &clean) == 0 && clean);
}
