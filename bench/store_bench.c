/* make bench, part 1: the store through its own API against fio with
 * io_uring and O_DIRECT on the same file, the same region, the same queue
 * depth, in the same run. Prints a table of IOPS, mean and p99 latency, and
 * the ratio kura/fio; then the RAM the extent index needs per TiB.
 *
 * usage: kura-bench-store --dir DIR [--size 1G] [--runtime 10] [--fio fio]
 */
#include "blockd/store_int.h"
#include "common/util.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HBUCKETS 4096

struct result {
	double iops, mean_us, p99_us;
};

struct bench {
	struct kura_loop *loop;
	struct kura_blk_store *s;
	uint64_t next;           /* extents in the region */
	uint64_t rng;
	uint64_t hist[HBUCKETS]; /* latency in 1 us buckets up to 4 ms, then coarse */
	uint64_t ops, lat_sum;
	unsigned inflight;
	int write, stop;
	uint8_t *bufs;
};

struct slot {
	struct bench *b;
	uint64_t start;
	unsigned idx;
};

static uint64_t rnd(struct bench *b)
{
	b->rng ^= b->rng << 13;
	b->rng ^= b->rng >> 7;
	b->rng ^= b->rng << 17;
	return b->rng;
}

static void issue(struct slot *sl);

static void done(void *arg, int err)
{
	struct slot *sl = arg;
	struct bench *b = sl->b;
	uint64_t lat = kura_now_ns() - sl->start, us = lat / 1000;

	if (err) {
		fprintf(stderr, "bench: I/O failed: %d\n", err);
		exit(1);
	}
	b->ops++;
	b->lat_sum += lat;
	b->hist[us < HBUCKETS ? us : HBUCKETS - 1]++;
	b->inflight--;
	if (!b->stop)
		issue(sl);
}

static void issue(struct slot *sl)
{
	struct bench *b = sl->b;
	uint64_t x = rnd(b) % (b->next * KURA_EXT_BLOCKS);
	uint8_t *buf = b->bufs + (size_t)sl->idx * KURA_BLK_SIZE;
	int err;

	sl->start = kura_now_ns();
	b->inflight++;
	if (b->write) {
		((uint64_t *)buf)[0] = x;
		((uint64_t *)buf)[1] = sl->start;
		err = kura_blk_write(b->s, 1, x / KURA_EXT_BLOCKS, (unsigned)(x % KURA_EXT_BLOCKS), 1,
				     buf, 1, KURA_IO_GUEST, done, sl);
	} else {
		err = kura_blk_read(b->s, 1, x / KURA_EXT_BLOCKS, (unsigned)(x % KURA_EXT_BLOCKS), 1,
				    buf, KURA_IO_GUEST, done, sl);
	}
	if (err) {
		fprintf(stderr, "bench: submit failed: %d\n", err);
		exit(1);
	}
}

static struct result run(struct bench *b, int write, unsigned qd, double seconds)
{
	struct slot *slots = calloc(qd, sizeof(*slots));
	struct result r = { 0 };
	uint64_t t0, end, target, acc = 0;

	memset(b->hist, 0, sizeof(b->hist));
	b->ops = b->lat_sum = 0;
	b->write = write;
	b->stop = 0;
	t0 = kura_now_ns();
	end = t0 + (uint64_t)(seconds * 1e9);
	for (unsigned i = 0; i < qd; i++) {
		slots[i].b = b;
		slots[i].idx = i;
		issue(&slots[i]);
	}
	while (kura_now_ns() < end)
		kura_loop_run_once(b->loop, 1000000ULL);
	b->stop = 1;
	end = kura_now_ns();
	while (b->inflight)
		kura_loop_run_once(b->loop, 1000000ULL);
	r.iops = (double)b->ops / ((double)(end - t0) / 1e9);
	r.mean_us = b->ops ? (double)b->lat_sum / (double)b->ops / 1000.0 : 0;
	target = b->ops - b->ops / 100;
	for (unsigned i = 0; i < HBUCKETS; i++) {
		acc += b->hist[i];
		if (acc >= target) {
			r.p99_us = i;
			break;
		}
	}
	free(slots);
	return r;
}

static void fill_done(void *arg, int err)
{
	unsigned *pending = arg;

	if (err) {
		fprintf(stderr, "bench: precondition write failed: %d\n", err);
		exit(1);
	}
	(*pending)--;
}

/* Writes the whole region once so reads find data everywhere. */
static void precondition(struct bench *b)
{
	uint8_t *buf = kura_aligned_alloc(KURA_EXT_SIZE);
	unsigned pending = 0;

	memset(buf, 0x5a, KURA_EXT_SIZE);
	for (uint64_t e = 0; e < b->next; e++) {
		while (pending >= 4)
			kura_loop_run_once(b->loop, 1000000ULL);
		pending++;
		if (kura_blk_write(b->s, 1, e, 0, KURA_EXT_BLOCKS, buf, 1, KURA_IO_GUEST, fill_done,
				   &pending)) {
			fprintf(stderr, "bench: precondition submit failed\n");
			exit(1);
		}
	}
	while (pending)
		kura_loop_run_once(b->loop, 1000000ULL);
	free(buf);
}

/* Extracts from fio's JSON the value of `key` inside the object of `section`
 * ("read" or "write") of the first job. */
static double json_after(const char *js, const char *section, const char *path1,
			 const char *path2)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\" : {", section);
	p = strstr(js, pat);
	if (!p)
		return -1;
	p = strstr(p, path1);
	if (!p)
		return -1;
	if (path2) {
		p = strstr(p, path2);
		if (!p)
			return -1;
	}
	p = strchr(p, ':');
	return p ? strtod(p + 1, NULL) : -1;
}

static struct result fio(const char *fiobin, const char *file, uint64_t off, uint64_t size,
			 int write, unsigned qd, double seconds, int dsync)
{
	char cmd[2048], *js = NULL;
	size_t len = 0, cap = 0;
	struct result r = { -1, -1, -1 };
	const char *sec = write ? "write" : "read";
	FILE *f;

	snprintf(cmd, sizeof(cmd),
		 "%s --name=ref --filename=%s --offset=%llu --size=%llu --direct=1 "
		 "--ioengine=io_uring --bs=4k --iodepth=%u --rw=%s --time_based --runtime=%.0f "
		 "--norandommap --randrepeat=0 %s --output-format=json 2>/dev/null",
		 fiobin, file, (unsigned long long)off, (unsigned long long)size, qd,
		 write ? "randwrite" : "randread", seconds, dsync ? "--sync=dsync" : "");
	f = popen(cmd, "r");
	if (!f)
		return r;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			js = realloc(js, cap);
		}
		size_t n = fread(js + len, 1, 4096, f);
		if (!n)
			break;
		len += n;
	}
	pclose(f);
	if (!js)
		return r;
	js[len] = '\0';
	r.iops = json_after(js, sec, "\"iops\"", NULL);
	r.mean_us = json_after(js, sec, "\"clat_ns\"", "\"mean\"") / 1000.0;
	r.p99_us = json_after(js, sec, "\"clat_ns\"", "\"99.000000\"") / 1000.0;
	free(js);
	return r;
}

/* Bytes of index memory for n extents, measured with the allocator. */
static double index_bytes_per_extent(uint64_t n)
{
	struct kura_idx x;
	struct mallinfo2 before, after;
	double per;

	before = mallinfo2();
	idx_init(&x);
	for (uint64_t i = 0; i < n; i++) {
		idx_add(&x, 1 + i % 64, i / 64, (uint32_t)i);
		struct idx_entry *e = idx_find(&x, 1 + i % 64, i / 64);
		idx_set_bits(&x, e, 0, i % 16 == 0 ? 7 : KURA_EXT_BLOCKS); /* 1 in 16 partial */
	}
	/* steady state: what changed has been checkpointed */
	free(x.dirty);
	x.dirty = NULL;
	x.ndirty = x.dirty_cap = 0;
	after = mallinfo2();
	per = (double)(after.uordblks + after.hblkhd - before.uordblks - before.hblkhd) / (double)n;
	idx_destroy(&x);
	return per;
}

#define ROUNDS 2

static void add(struct result *acc, struct result r)
{
	acc->iops += r.iops;
	acc->mean_us += r.mean_us;
	acc->p99_us += r.p99_us;
}

static void scale(struct result *r)
{
	r->iops /= ROUNDS;
	r->mean_us /= ROUNDS;
	r->p99_us /= ROUNDS;
}

static void row(const char *name, unsigned qd, struct result k, struct result f, struct result fd)
{
	printf("%-10s QD%-3u %9.0f %8.1f %8.0f | %9.0f %8.1f %8.0f | %5.2f", name, qd, k.iops,
	       k.mean_us, k.p99_us, f.iops, f.mean_us, f.p99_us, f.iops > 0 ? k.iops / f.iops : 0);
	if (fd.iops > 0)
		printf(" | %9.0f %5.2f", fd.iops, k.iops / fd.iops);
	printf("\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' }, { "size", required_argument, NULL, 's' },
		{ "runtime", required_argument, NULL, 'r' }, { "fio", required_argument, NULL, 'f' },
		{ "only-kura", no_argument, NULL, 'k' }, { 0 }
	};
	const char *dir = NULL, *fiobin = "fio";
	uint64_t size = 1ull << 30;
	double secs = 10;
	struct bench b = { .rng = 0x9e3779b97f4a7c15ULL };
	struct kura_blk_disk_spec spec = { 0 };
	struct kura_blk_opts o = { 0 };
	struct kura_blk_stats st;
	struct result kr[4], fr[4], fd[2], none = { -1, -1, -1 };
	char errbuf[512], disk[4096], sz[32];
	uint64_t data_off;
	int c, only_kura = 0;


	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 's':
			if (kura_parse_size(optarg, &size) || size < KURA_EXT_SIZE) {
				fprintf(stderr, "bench: bad --size\n");
				return 2;
			}
			break;
		case 'r': secs = strtod(optarg, NULL); break;
		case 'f': fiobin = optarg; break;
		case 'k': only_kura = 1; break;
		default:
			fprintf(stderr, "usage: kura-bench-store --dir DIR [--size 1G] [--runtime 10] [--fio fio]\n");
			return 2;
		}
	}
	if (!dir) {
		fprintf(stderr, "usage: kura-bench-store --dir DIR [--size 1G] [--runtime 10] [--fio fio]\n");
		return 2;
	}
	kura_log_set_level(KURA_LOG_WARN);
	snprintf(disk, sizeof(disk), "%s/disk0.img", dir);
	b.next = size / KURA_EXT_SIZE;
	kura_loop_create(&b.loop, 256);
	spec.path = disk;
	spec.size = size + size / 8 + (300ull << 20);
	o.dir = dir;
	o.loop = b.loop;
	o.disks = &spec;
	o.ndisks = 1;
	o.journal_size = 256ull << 20;
	o.create = 1;
	if (kura_blk_store_open(&o, &b.s, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "bench: %s\n", errbuf);
		return 1;
	}
	b.bufs = kura_aligned_alloc(64 * KURA_BLK_SIZE);
	printf("store on %s, region %s, %.0f s per run\n", disk, kura_fmt_size(size, sz, sizeof(sz)),
	       secs);
	fflush(stdout);
	precondition(&b);
	data_off = b.s->pool.d[0].sb.data_off;
	/* The device is noisy: kura and fio take turns, ROUNDS times, and the
	 * means are compared. Reads come first (fio's writes would leave blocks
	 * whose checksums kura does not know); the store stays open but idle while
	 * fio runs. */
	memset(kr, 0, sizeof(kr));
	memset(fr, 0, sizeof(fr));
	memset(fd, 0, sizeof(fd));
	for (unsigned t = 0; t < 4; t++) {
		int write = t >= 2;
		unsigned qd = (t % 2) ? 32 : 1;
		for (unsigned round = 0; round < ROUNDS; round++) {
			add(&kr[t], run(&b, write, qd, secs));
			if (only_kura)
				continue;
			add(&fr[t], fio(fiobin, disk, data_off, size, write, qd, secs, 0));
			if (write)
				add(&fd[t - 2], fio(fiobin, disk, data_off, size, 1, qd, secs, 1));
		}
	}
	kura_blk_stats(b.s, &st);
	kura_blk_store_close(b.s);
	kura_loop_destroy(b.loop);
	for (unsigned t = 0; t < 4; t++) {
		scale(&kr[t]);
		scale(&fr[t]);
	}
	scale(&fd[0]);
	scale(&fd[1]);
	if (only_kura) {
		fr[0] = fr[1] = fr[2] = fr[3] = fd[0] = fd[1] = none;
	}

	printf("\n4 KiB random I/O       kura: IOPS  mean us   p99 us |  fio: IOPS  mean us   p99 us | ratio | fio dsync ratio\n");
	row("randread", 1, kr[0], fr[0], none);
	row("randread", 32, kr[1], fr[1], none);
	row("randwrite", 1, kr[2], fr[2], fd[0]);
	row("randwrite", 32, kr[3], fr[3], fd[1]);
	printf("(means of %u alternating %.0f s runs of each)\n", ROUNDS, secs);
	printf("\nkura writes are durable when acknowledged (journal write with FUA/O_DSYNC);\n"
	       "plain fio writes are not; 'fio dsync' is fio with --sync=dsync, the durable reference.\n");
	{
		/* bytes per extent vary with where the tables are in their growth */
		static const uint64_t ns[] = { 1u << 20, 1300000, 1600000, 2000000 };
		double lo = 1e9, hi = 0;
		for (unsigned i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
			double v = index_bytes_per_extent(ns[i]);
			lo = v < lo ? v : lo;
			hi = v > hi ? v : hi;
		}
		/* 1 TiB = 2^20 extents of 1 MiB: bytes per extent = MiB per TiB */
		printf("\nRAM: extent index %.1f to %.1f MiB per TiB allocated (1 to 2 TiB of 1 MiB "
		       "extents, 1 in 16 partly filled);\n"
		       "     this run: index %s for %llu extents, checksum cache %s "
		       "(a fixed-size cache, default 64 MiB)\n",
		       lo, hi, kura_fmt_size(st.index_bytes, sz, sizeof(sz)),
		       (unsigned long long)st.used_extents,
		       kura_fmt_size(st.crc_cache_bytes, errbuf, sizeof(errbuf)));
	}
	printf("checkpoints during the run: %llu\n", (unsigned long long)st.checkpoints);
	return 0;
}
