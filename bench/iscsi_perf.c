/* kura-iscsi-perf: random reads or writes of one size at a fixed queue depth
 * against an iSCSI LUN, through libiscsi's asynchronous API on one TCP
 * connection, for a fixed time: what a target does with no block layer,
 * QEMU or NBD in between (libiscsi's own iscsi-perf only reads).
 *
 *   kura-iscsi-perf [-w] [-f] [-m QD] [-b BYTES] [-t SECONDS] [-s SPAN] URL
 *
 * -w writes (default: reads), -f writes with FUA, -b the I/O size (4096),
 * -s the bytes of the LUN used from its start (default: all of it).
 * Prints one line: "iops N mean_us X p50_us X p99_us X max_us X errors N".
 * Exit status 1 on a connect or I/O error (the line is still printed). */
#include <errno.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct run {
	struct iscsi_context *iscsi;
	int lun, write, fua;
	uint32_t bs, lbs;
	uint64_t nblocks; /* of bs bytes in the span */
	uint64_t end_ns, rng;
	unsigned inflight;
	uint64_t done, errors;
	uint64_t *lat; /* ns of every I/O, up to cap */
	size_t nlat, cap;
	unsigned char *buf;
};

struct io {
	struct run *r;
	uint64_t t0;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t next_rand(struct run *r)
{
	r->rng ^= r->rng << 13;
	r->rng ^= r->rng >> 7;
	r->rng ^= r->rng << 17;
	return r->rng;
}

static void issue(struct run *r);

static void io_done(struct iscsi_context *iscsi, int status, void *data, void *priv)
{
	struct io *io = priv;
	struct run *r = io->r;
	uint64_t t = now_ns() - io->t0;

	(void)iscsi;
	r->inflight--;
	if (status != SCSI_STATUS_GOOD)
		r->errors++;
	else if (r->nlat < r->cap)
		r->lat[r->nlat++] = t;
	r->done++;
	scsi_free_scsi_task(data);
	free(io);
	if (now_ns() < r->end_ns && !r->errors)
		issue(r);
}

static void issue(struct run *r)
{
	struct io *io = malloc(sizeof(*io));
	uint64_t blk = next_rand(r) % r->nblocks;
	uint64_t lba = blk * (r->bs / r->lbs);
	struct scsi_task *t;

	if (!io) {
		r->errors++;
		return;
	}
	io->r = r;
	io->t0 = now_ns();
	if (r->write)
		t = iscsi_write16_task(r->iscsi, r->lun, lba, r->buf, r->bs, (int)r->lbs, 0, 0,
				       r->fua, 0, 0, io_done, io);
	else
		t = iscsi_read16_task(r->iscsi, r->lun, lba, r->bs, (int)r->lbs, 0, 0, 0, 0, 0,
				      io_done, io);
	if (!t) {
		free(io);
		r->errors++;
		return;
	}
	r->inflight++;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int usage(void)
{
	fprintf(stderr, "usage: kura-iscsi-perf [-w] [-f] [-m QD] [-b BYTES] [-t SECONDS] "
			"[-s SPAN] iscsi://HOST[:PORT]/IQN/LUN\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct run r = { .bs = 4096, .rng = 0x9e3779b97f4a7c15ull };
	unsigned qd = 32, secs = 10;
	uint64_t span = 0, t_start, elapsed;
	struct iscsi_url *url;
	struct scsi_task *cap;
	struct scsi_readcapacity16 *rc16;
	double mean = 0;
	int c;

	while ((c = getopt(argc, argv, "wfm:b:t:s:")) != -1) {
		switch (c) {
		case 'w': r.write = 1; break;
		case 'f': r.fua = 1; break;
		case 'm': qd = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'b': r.bs = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 't': secs = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': span = strtoull(optarg, NULL, 10); break;
		default: return usage();
		}
	}
	if (optind != argc - 1 || !qd || qd > 1024 || !secs || !r.bs || r.bs % 512)
		return usage();
	r.iscsi = iscsi_create_context("iqn.2026-11.io.kura:perf");
	if (!r.iscsi)
		return fprintf(stderr, "kura-iscsi-perf: cannot create a context\n"), 1;
	url = iscsi_parse_full_url(r.iscsi, argv[optind]);
	if (!url)
		return fprintf(stderr, "kura-iscsi-perf: %s\n", iscsi_get_error(r.iscsi)), 1;
	iscsi_set_session_type(r.iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(r.iscsi, ISCSI_HEADER_DIGEST_NONE);
	iscsi_set_targetname(r.iscsi, url->target);
	if (url->user[0])
		iscsi_set_initiator_username_pwd(r.iscsi, url->user, url->passwd);
	r.lun = url->lun;
	if (iscsi_full_connect_sync(r.iscsi, url->portal, url->lun))
		return fprintf(stderr, "kura-iscsi-perf: login: %s\n", iscsi_get_error(r.iscsi)), 1;
	cap = iscsi_readcapacity16_sync(r.iscsi, r.lun);
	if (!cap || cap->status != SCSI_STATUS_GOOD || !(rc16 = scsi_datain_unmarshall(cap)))
		return fprintf(stderr, "kura-iscsi-perf: READ CAPACITY 16 failed\n"), 1;
	r.lbs = rc16->block_length;
	if (!r.lbs || r.bs % r.lbs)
		return fprintf(stderr, "kura-iscsi-perf: -b must be a multiple of the LUN's %u-byte "
				       "blocks\n", r.lbs), 1;
	if (!span || span > (rc16->returned_lba + 1) * r.lbs)
		span = (rc16->returned_lba + 1) * r.lbs;
	r.nblocks = span / r.bs;
	scsi_free_scsi_task(cap);
	if (!r.nblocks)
		return fprintf(stderr, "kura-iscsi-perf: the LUN is smaller than one I/O\n"), 1;
	r.cap = (size_t)secs * 400000u;
	r.lat = malloc(r.cap * sizeof(*r.lat));
	if (posix_memalign((void **)&r.buf, 4096, r.bs) || !r.lat)
		return fprintf(stderr, "kura-iscsi-perf: out of memory\n"), 1;
	for (uint32_t i = 0; i < r.bs; i++)
		r.buf[i] = (unsigned char)next_rand(&r);
	t_start = now_ns();
	r.end_ns = t_start + (uint64_t)secs * 1000000000ull;
	for (unsigned i = 0; i < qd; i++)
		issue(&r);
	while (r.inflight) {
		struct pollfd p = { .fd = iscsi_get_fd(r.iscsi), .events = (short)iscsi_which_events(r.iscsi) };

		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			break;
		if (iscsi_service(r.iscsi, p.revents) < 0) {
			fprintf(stderr, "kura-iscsi-perf: %s\n", iscsi_get_error(r.iscsi));
			r.errors++;
			break;
		}
	}
	elapsed = now_ns() - t_start;
	qsort(r.lat, r.nlat, sizeof(*r.lat), cmp_u64);
	for (size_t i = 0; i < r.nlat; i++)
		mean += (double)r.lat[i];
	if (r.nlat)
		mean /= (double)r.nlat;
	printf("iops %.0f mean_us %.1f p50_us %.1f p99_us %.1f max_us %.1f errors %llu\n",
	       (double)(r.done - r.errors) * 1e9 / (double)elapsed, mean / 1000,
	       r.nlat ? (double)r.lat[r.nlat / 2] / 1000 : 0,
	       r.nlat ? (double)r.lat[r.nlat * 99 / 100] / 1000 : 0,
	       r.nlat ? (double)r.lat[r.nlat - 1] / 1000 : 0, (unsigned long long)r.errors);
	iscsi_logout_sync(r.iscsi);
	iscsi_destroy_url(url);
	iscsi_destroy_context(r.iscsi);
	free(r.lat);
	free(r.buf);
	return r.errors ? 1 : 0;
}
