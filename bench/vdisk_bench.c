/* make bench, part 2: vdisks. Snapshot and clone creation time on a 1 GiB
 * vdisk and on a 1 TiB one (1 GiB written to each); snapshot deletion time
 * against the blocks the snapshot holds; 4 KiB random read latency through a
 * chain of depth 1 and of depth 64; import and export of a 1 GiB file
 * against cp of the same file. Everything in one run, on one store file.
 *
 * usage: kura-bench-vdisk --dir DIR [--runtime SECONDS] [--file-size 1G]
 */
#include "vdisk/vdisk.h"

#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1ull << 20)
#define GIB (1ull << 30)
#define HB 20000 /* latency histogram: 1 us buckets */

struct ctx {
	struct kura_loop *loop;
	struct kura_blk_store *s;
	struct kura_cat *cat;
	struct kura_vd_engine *e;
	const char *dir;
	double runtime;
	uint64_t file_size;
};

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

struct wait {
	int done, err;
	char msg[512];
};

static void ctl_done(void *arg, int err, const char *msg)
{
	struct wait *w = arg;

	w->done = 1;
	w->err = err;
	if (msg)
		snprintf(w->msg, sizeof(w->msg), "%s", msg);
}

/* A control request; returns its time in ns; *ans (if given) gets the job id. */
static uint64_t ctl(struct ctx *c, uint64_t *job, const char *fmt, ...)
{
	struct wait w = { 0 };
	struct kura_json *req, *ans;
	struct kura_jw jw;
	char text[1024], why[128];
	uint64_t t0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (kura_json_parse(text, strlen(text), &req, why, sizeof(why)))
		die("bad request %s", text);
	kura_jw_init(&jw);
	kura_jw_obj(&jw, NULL);
	t0 = kura_now_ns();
	kura_vd_ctl(c->e, req, &jw, ctl_done, &w);
	while (!w.done)
		kura_loop_run_once(c->loop, 100000000ull);
	t0 = kura_now_ns() - t0;
	if (w.err)
		die("%s: %s", text, w.msg);
	kura_jw_end(&jw);
	if (job) {
		const char *out = kura_jw_finish(&jw, NULL);
		*job = 0;
		if (out && !kura_json_parse(out, strlen(out), &ans, why, sizeof(why))) {
			const struct kura_json *j = kura_json_get(ans, "job");
			if (kura_json_type(j) == KURA_JSON_OBJ)
				kura_json_get_u64(j, "id", job);
			else
				kura_json_u64(j, job);
			kura_json_free(ans);
		}
	}
	kura_jw_free(&jw);
	kura_json_free(req);
	return t0;
}

/* ---- writing and reading through handles ---- */

struct io {
	struct ctx *c;
	struct kura_vd_handle *h;
	uint64_t *offs;
	size_t n, next, done;
	unsigned inflight;
	size_t len;
	char *bufs;
	int write;
	uint64_t start[64];
	uint64_t hist[HB], lat_sum;
	uint64_t deadline;
};

struct slot {
	struct io *io;
	unsigned i;
};

static void io_issue(struct slot *s);

static void io_done(void *arg, int err)
{
	struct slot *s = arg;
	struct io *io = s->io;
	uint64_t lat = kura_now_ns() - io->start[s->i];

	if (err)
		die("I/O failed: %s", strerror(-err));
	io->done++;
	io->inflight--;
	io->lat_sum += lat;
	io->hist[KURA_MIN(lat / 1000, HB - 1)]++;
	io_issue(s);
}

static void io_issue(struct slot *s)
{
	struct io *io = s->io;
	char *buf = io->bufs + (size_t)s->i * io->len;
	uint64_t off;
	int err;

	if (io->deadline ? kura_now_ns() >= io->deadline : io->next == io->n)
		return;
	off = io->offs[io->next++ % io->n];
	io->start[s->i] = kura_now_ns();
	io->inflight++;
	if (io->write) {
		for (size_t k = 0; k < io->len; k += 4096)
			((uint64_t *)(buf + k))[0] = off + k + 1;
		err = kura_vd_write(io->h, off, io->len, buf, KURA_IO_GUEST, io_done, s);
	} else {
		err = kura_vd_read(io->h, off, io->len, buf, KURA_IO_GUEST, io_done, s);
	}
	if (err)
		die("submit: %s", strerror(-err));
}

static void run_io(struct ctx *c, const char *name, uint64_t *offs, size_t n, size_t len,
		   unsigned qd, int write, double seconds, struct io *io)
{
	struct slot slots[64];
	int err;

	memset(io, 0, sizeof(*io));
	io->c = c;
	io->offs = offs;
	io->n = n;
	io->len = len;
	io->write = write;
	io->bufs = kura_aligned_alloc(len * qd);
	if (!io->bufs)
		die("out of memory");
	if ((err = kura_vd_open(c->e, name, NULL, &io->h)))
		die("open %s: %s", name, strerror(-err));
	if (seconds > 0)
		io->deadline = kura_now_ns() + (uint64_t)(seconds * 1e9);
	for (unsigned i = 0; i < qd; i++) {
		slots[i].io = io;
		slots[i].i = i;
		io_issue(&slots[i]);
	}
	while (io->inflight)
		kura_loop_run_once(c->loop, 100000000ull);
	kura_vd_close(io->h);
	free(io->bufs);
}

static double pct(const struct io *io, double p)
{
	uint64_t want = (uint64_t)(p * (double)io->done), seen = 0;

	for (unsigned i = 0; i < HB; i++)
		if ((seen += io->hist[i]) > want)
			return i + 0.5;
	return HB;
}

/* Writes len bytes at every offset in offs, 1 MiB at a time, QD 16. */
static void fill(struct ctx *c, const char *name, uint64_t *offs, size_t n)
{
	struct io io;

	run_io(c, name, offs, n, MIB, 16, 1, 0, &io);
}

static uint64_t *range_offs(uint64_t start, uint64_t stride, size_t n)
{
	uint64_t *v = malloc(n * sizeof(*v));

	if (!v)
		die("out of memory");
	for (size_t i = 0; i < n; i++)
		v[i] = start + i * stride;
	return v;
}

static void create(struct ctx *c, const char *name, uint64_t size)
{
	ctl(c, NULL, "{\"op\":\"create\",\"name\":\"%s\",\"size\":%llu}", name,
	    (unsigned long long)size);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double median_ms(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return (double)v[n / 2] / 1e6;
}

/* ---- part 1: snapshot and clone creation ---- */

static void bench_create(struct ctx *c)
{
	const char *names[2] = { "small", "huge" };
	uint64_t snap_ns[2][15], clone_ns[2][15];
	double sm[2], cm[2];

	printf("\n== snapshot and clone creation (1 GiB written to each vdisk) ==\n");
	create(c, "small", GIB);
	create(c, "huge", 1024 * GIB);
	uint64_t *a = range_offs(0, MIB, 1024), *b = range_offs(0, GIB, 1024);
	fill(c, "small", a, 1024);
	fill(c, "huge", b, 1024);
	free(a);
	free(b);
	for (int v = 0; v < 2; v++) {
		for (int i = 0; i < 15; i++) {
			snap_ns[v][i] = ctl(c, NULL, "{\"op\":\"snapshot\",\"name\":\"%s\",\"snap\":"
					    "\"s%d\"}", names[v], i);
			clone_ns[v][i] = ctl(c, NULL, "{\"op\":\"clone\",\"name\":\"%s\",\"snap\":"
					     "\"s%d\",\"new\":\"%s-c%d\"}", names[v], i, names[v], i);
		}
		sm[v] = median_ms(snap_ns[v], 15);
		cm[v] = median_ms(clone_ns[v], 15);
	}
	printf("%-28s %12s %12s %8s\n", "operation (median of 15)", "1 GiB vdisk", "1 TiB vdisk",
	       "ratio");
	printf("%-28s %9.2f ms %9.2f ms %8.2f\n", "snapshot", sm[0], sm[1], sm[1] / sm[0]);
	printf("%-28s %9.2f ms %9.2f ms %8.2f\n", "clone (linked)", cm[0], cm[1], cm[1] / cm[0]);
	for (int v = 0; v < 2; v++) {
		for (int i = 0; i < 15; i++)
			ctl(c, NULL, "{\"op\":\"delete\",\"name\":\"%s-c%d\"}", names[v], i);
		ctl(c, NULL, "{\"op\":\"delete\",\"name\":\"%s\"}", names[v]);
	}
	kura_vd_wait_jobs(c->e);
}

/* ---- part 2: snapshot deletion against blocks held ---- */

static void bench_delete(struct ctx *c)
{
	static const unsigned mibs[] = { 16, 64, 256, 1024 };
	uint64_t vsize[2] = { GIB, 1024 * GIB };

	printf("\n== snapshot deletion (until its space is merged or freed) ==\n");
	printf("%-12s %-10s %-22s %10s %12s\n", "vdisk size", "held", "child holds", "time",
	       "per MiB held");
	for (int v = 0; v < 2; v++) {
		for (size_t m = 0; m < KURA_ARRAY_SIZE(mibs); m++) {
			for (int overlap = 0; overlap < 2; overlap++) {
				uint64_t *offs = range_offs(0, MIB, mibs[m]), t0, ns;
				char sz[32];
				create(c, "d", vsize[v]);
				fill(c, "d", offs, mibs[m]);
				ctl(c, NULL, "{\"op\":\"snapshot\",\"name\":\"d\",\"snap\":\"s\"}");
				if (overlap)
					fill(c, "d", offs, mibs[m]);
				t0 = kura_now_ns();
				ctl(c, NULL, "{\"op\":\"delete\",\"name\":\"d\",\"snap\":\"s\"}");
				kura_vd_wait_jobs(c->e);
				ns = kura_now_ns() - t0;
				printf("%-12s %4u MiB   %-22s %7.2f ms %9.1f us\n",
				       kura_fmt_size(vsize[v], sz, sizeof(sz)), mibs[m],
				       overlap ? "the same blocks" : "nothing (moves)",
				       (double)ns / 1e6, (double)ns / 1e3 / mibs[m]);
				ctl(c, NULL, "{\"op\":\"delete\",\"name\":\"d\"}");
				kura_vd_wait_jobs(c->e);
				free(offs);
			}
		}
	}
}

/* ---- part 3: reads through deep chains ---- */

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void bench_depth(struct ctx *c)
{
	const uint64_t region = 256 * MIB;
	uint64_t *offs = range_offs(0, MIB, region / MIB), *rd;
	size_t nrd = 1 << 20;
	struct io io;
	double mean[2] = { 0 }, p50[2] = { 0 }, p99[2] = { 0 }, iops[2] = { 0 };
	const char *names[2] = { "depth1", "depth64" };

	printf("\n== 4 KiB random reads, QD1, through a chain of depth 1 and depth 64 ==\n");
	create(c, "depth1", GIB);
	create(c, "depth64", GIB);
	fill(c, "depth1", offs, region / MIB);
	fill(c, "depth64", offs, region / MIB);
	/* 63 snapshots above the data, each layer holding an extent of its own
	 * (outside the read region), so every read walks 64 layers. */
	for (int i = 0; i < 63; i++) {
		uint64_t o = region + (uint64_t)i * MIB;
		fill(c, "depth64", &o, 1);
		ctl(c, NULL, "{\"op\":\"snapshot\",\"name\":\"depth64\",\"snap\":\"d%d\"}", i);
	}
	rd = malloc(nrd * sizeof(*rd));
	for (size_t i = 0; i < nrd; i++)
		rd[i] = (rnd() % (region / 4096)) * 4096;
	for (int round = 0; round < 2; round++) {
		for (int v = 0; v < 2; v++) {
			run_io(c, names[v], rd, nrd, 4096, 1, 0, c->runtime / 2, &io);
			mean[v] += (double)io.lat_sum / (double)io.done / 1e3 / 2;
			p50[v] += pct(&io, 0.5) / 2;
			p99[v] += pct(&io, 0.99) / 2;
			iops[v] += (double)io.done / (c->runtime / 2) / 2;
		}
	}
	printf("%-10s %10s %10s %10s %10s\n", "chain", "IOPS", "mean us", "p50 us", "p99 us");
	for (int v = 0; v < 2; v++)
		printf("%-10s %10.0f %10.1f %10.1f %10.1f\n", v ? "depth 64" : "depth 1", iops[v],
		       mean[v], p50[v], p99[v]);
	printf("mean latency ratio depth64/depth1: %.3f (aim: at most 1.2)\n", mean[1] / mean[0]);
	free(rd);
	free(offs);
	ctl(c, NULL, "{\"op\":\"delete\",\"name\":\"depth1\"}");
	ctl(c, NULL, "{\"op\":\"delete\",\"name\":\"depth64\"}");
	kura_vd_wait_jobs(c->e);
}

/* ---- part 4: import and export against cp ---- */

static void make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char *buf = malloc(MIB);

	if (fd < 0 || !buf)
		die("cannot create %s", path);
	for (uint64_t off = 0; off < size; off += MIB) {
		for (size_t k = 0; k < MIB / 8; k++)
			((uint64_t *)buf)[k] = rnd();
		if (write(fd, buf, MIB) != (ssize_t)MIB)
			die("write %s: %s", path, strerror(errno));
	}
	fsync(fd);
	close(fd);
	free(buf);
}

static void drop_caches(void)
{
	int fd;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "3\n", 2) < 0)
			(void)0;
		close(fd);
	}
}

static double timed_system(const char *cmd)
{
	uint64_t t0 = kura_now_ns();

	if (system(cmd))
		die("%s failed", cmd);
	return (double)(kura_now_ns() - t0) / 1e9;
}

static double job_seconds(struct ctx *c, const char *fmt, const char *a, const char *b)
{
	uint64_t job, t0 = kura_now_ns();

	ctl(c, &job, fmt, a, b);
	kura_vd_wait_jobs(c->e);
	return (double)(kura_now_ns() - t0) / 1e9;
}

static void bench_import(struct ctx *c)
{
	char src[600], dst[600], out[600], cmd[2000];
	double mib = (double)c->file_size / MIB, t_cp = 0, t_imp = 0, t_exp = 0;

	printf("\n== import and export of a %.0f MiB file (page cache dropped before each) ==\n",
	       mib);
	snprintf(src, sizeof(src), "%s/src.img", c->dir);
	snprintf(dst, sizeof(dst), "%s/cp.img", c->dir);
	snprintf(out, sizeof(out), "%s/export.img", c->dir);
	make_file(src, c->file_size);
	for (int round = 0; round < 2; round++) {
		unlink(dst);
		unlink(out);
		drop_caches();
		snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && sync '%s'", src, dst, dst);
		t_cp += timed_system(cmd) / 2;
		drop_caches();
		t_imp += job_seconds(c, "{\"op\":\"import\",\"file\":\"%s\",\"name\":\"%s\"}", src,
				     "imported") / 2;
		drop_caches();
		t_exp += job_seconds(c, "{\"op\":\"export\",\"name\":\"%s\",\"file\":\"%s\"}",
				     "imported", out) / 2;
		snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", src, out);
		if (system(cmd))
			die("export differs from the imported file");
		ctl(c, NULL, "{\"op\":\"delete\",\"name\":\"imported\"}");
		kura_vd_wait_jobs(c->e);
	}
	printf("%-24s %8s %10s %14s\n", "copy", "seconds", "MiB/s", "ratio to cp");
	printf("%-24s %8.2f %10.0f %14s\n", "cp + sync", t_cp, mib / t_cp, "1.00");
	printf("%-24s %8.2f %10.0f %14.2f\n", "vdisk import", t_imp, mib / t_imp, t_cp / t_imp);
	printf("%-24s %8.2f %10.0f %14.2f\n", "vdisk export", t_exp, mib / t_exp, t_cp / t_exp);
	unlink(src);
	unlink(dst);
	unlink(out);
}

static void open_all(struct ctx *c)
{
	struct kura_blk_disk_spec disk = { 0 };
	struct kura_blk_opts o = { 0 };
	struct kura_vd_opts vo = { 0 };
	const struct kura_cat_ops *ops;
	char err[512], path[600], sdir[600];
	void *be;

	snprintf(sdir, sizeof(sdir), "%s/store", c->dir);
	snprintf(path, sizeof(path), "%s/store/disk0.img", c->dir);
	mkdir(sdir, 0755);
	disk.path = path;
	disk.size = 8 * GIB;
	if (kura_loop_create(&c->loop, 1024))
		die("io_uring");
	o.dir = sdir;
	o.loop = c->loop;
	o.disks = &disk;
	o.ndisks = 1;
	o.create = 1;
	o.journal_size = 256 * MIB;
	if (kura_blk_store_open(&o, &c->s, err, sizeof(err)))
		die("%s", err);
	kura_cat_rocks_create(kura_blk_store_md(c->s), &ops, &be);
	if (kura_cat_open(c->loop, ops, be, &c->cat))
		die("catalog");
	vo.loop = c->loop;
	vo.store = c->s;
	vo.cat = c->cat;
	if (kura_vd_engine_open(&vo, &c->e, err, sizeof(err)))
		die("%s", err);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "runtime", required_argument, NULL, 'r' },
		{ "file-size", required_argument, NULL, 'f' },
		{ "only", required_argument, NULL, 'o' },
		{ 0 }
	};
	struct ctx c = { .runtime = 6, .file_size = GIB };
	const char *only = "create,delete,depth,import";
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'd': c.dir = optarg; break;
		case 'r': c.runtime = atof(optarg); break;
		case 'f':
			if (kura_parse_size(optarg, &c.file_size) || c.file_size % MIB)
				die("--file-size: a size in MiB, like 1G");
			break;
		case 'o': only = optarg; break;
		default:
			die("usage: kura-bench-vdisk --dir DIR [--runtime S] [--file-size SIZE] "
			    "[--only create,delete,depth,import]");
		}
	}
	if (!c.dir)
		die("usage: kura-bench-vdisk --dir DIR [--runtime S] [--file-size SIZE]");
	mkdir(c.dir, 0755);
	open_all(&c);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strstr(only, "create"))
		bench_create(&c);
	if (strstr(only, "delete"))
		bench_delete(&c);
	if (strstr(only, "depth"))
		bench_depth(&c);
	if (strstr(only, "import"))
		bench_import(&c);
	kura_vd_engine_close(c.e);
	kura_cat_close(c.cat);
	kura_blk_store_close(c.s);
	kura_loop_destroy(c.loop);
	return 0;
}
