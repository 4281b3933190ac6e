/* Drives and checks replicated I/O from outside, as a client of blockd's
 * store socket (which, in a cluster, reads and writes through the
 * replication layer) and of the node links (which reach each node's own
 * copy).
 *
 *   kura-repcheck load SOCK LAYER NEXT SECONDS OUT
 *       writes 64 KiB pieces of extents 0..NEXT-1 of LAYER at queue depth 16
 *       for SECONDS, each piece filled with (extent, block, round); at the
 *       end reads everything back through SOCK and checks that every block
 *       holds the last round acknowledged for it (or, for the writes still
 *       in flight when a request failed, that round or the one before).
 *       Writes OUT: one line "rounds N writes N max_ms N" (the longest a
 *       write waited: a stall while a node is lost), and OUT.acked: the
 *       round each piece was last acknowledged at.
 *   kura-repcheck verify SOCK LAYER NEXT OUT
 *       reads extents 0..NEXT-1 of LAYER back through SOCK and checks them
 *       against OUT.acked (of an earlier load): a read that fails, or a
 *       block other than acknowledged, is a failure.
 *   kura-repcheck fill SOCK LAYER FIRST MAX
 *       writes block 0 of extents FIRST, FIRST+1, ... one at a time until a
 *       write fails (at most MAX): that one must fail with ENOSPC; then
 *       writes block 1 of every extent it filled (no new space needed)
 *       and reads both back. Prints "filled N extents; ...".
 *   kura-repcheck free SOCK LAYER FIRST N
 *       frees extents FIRST .. FIRST+N-1 of LAYER; each must succeed.
 *   kura-repcheck corrupt IMG NEXT
 *       flips a byte in every block of disk image IMG that holds block 0
 *       of one of extents 0..NEXT-1 as load writes it (bit rot).
 *   kura-repcheck bench SOCK LAYER QD SECONDS
 *       4 KiB writes to random blocks of 64 extents at queue depth QD for
 *       SECONDS; prints "iops N mean_us N p99_us N".
 *   kura-repcheck touch SOCK LAYER FIRST N [SEED]
 *       writes one 4 KiB block (a random one, by SEED) in each of extents
 *       FIRST .. FIRST+N-1 of LAYER, one at a time: N extents and N * 4 KiB
 *       changed.
 *   kura-repcheck replicas CLUSTER_ID LAYER NEXT R ADDR...
 *       over a node link to each ADDR, checks that every extent is held by
 *       exactly R of them, at the same version, with the same data.
 *   kura-repcheck fsdown PATH
 *       shuts down the ext4 (or XFS) file system holding PATH as a dying
 *       disk would: every later I/O to it fails with EIO.
 * Exits 1 with a line on stderr at the first difference. */
#include "blockd/client.h"
#include "blockd/store.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PIECE_BLOCKS 16u /* 64 KiB */
#define PIECES (KURA_EXT_BLOCKS / PIECE_BLOCKS)
#define QD 16u

static void die(const char *fmt, const char *a, unsigned long long b)
{
	fprintf(stderr, "repcheck: ");
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, "\n");
	exit(1);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t word(uint64_t ext, unsigned blk, uint64_t round, unsigned i)
{
	return kura_hash64(ext * 1000003 + blk * 7919 + round * 104729 + i) ^ round;
}

static void fill_block(uint8_t *b, uint64_t ext, unsigned blk, uint64_t round)
{
	uint64_t *w = (uint64_t *)(void *)b;

	w[0] = round;
	for (unsigned i = 1; i < KURA_BLK_SIZE / 8; i++)
		w[i] = word(ext, blk, round, i);
}

/* The round a block holds, or UINT64_MAX if it is none of ours. */
static uint64_t round_of(const uint8_t *b, uint64_t ext, unsigned blk)
{
	const uint64_t *w = (const void *)b;
	uint64_t round = w[0];

	if (!round) {
		for (unsigned i = 0; i < KURA_BLK_SIZE / 8; i++)
			if (w[i])
				return UINT64_MAX;
		return 0;
	}
	for (unsigned i = 1; i < KURA_BLK_SIZE / 8; i++)
		if (w[i] != word(ext, blk, round, i))
			return UINT64_MAX;
	return round;
}

/* Reads extents 0..next-1 of layer back through c: 0 when every block
 * holds the round acked[] says its piece was last acknowledged at, else 1
 * with a line on stderr (a read that fails ends the program). */
static int check_back(struct kura_client *c, const char *sock, uint64_t layer, uint64_t next,
		      const uint64_t *acked)
{
	uint8_t *r = kura_aligned_alloc_raw(KURA_EXT_SIZE);

	if (!r)
		die("out of memory%s%llu", "", 0);
	for (uint64_t e = 0; e < next; e++) {
		struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_READ,
					    .layer = layer, .ext = e, .nblk = KURA_EXT_BLOCKS };
		size_t got;
		int st = kura_client_call(c, &q, NULL, r, KURA_EXT_SIZE, &got);

		if (st || got != KURA_EXT_SIZE) {
			fprintf(stderr, "repcheck: %s: read back of extent %llu failed: %s\n", sock,
				(unsigned long long)e, st ? strerror(-st) : "short answer");
			exit(1);
		}
		for (unsigned b = 0; b < KURA_EXT_BLOCKS; b++) {
			uint64_t want = acked[e * PIECES + b / PIECE_BLOCKS];
			uint64_t have = round_of(r + (size_t)b * KURA_BLK_SIZE, e, b);

			if (have != want) {
				fprintf(stderr, "repcheck: extent %llu block %u holds round %llu, "
					"round %llu was acknowledged\n", (unsigned long long)e, b,
					(unsigned long long)have, (unsigned long long)want);
				free(r);
				return 1;
			}
		}
	}
	free(r);
	return 0;
}

/* What load acknowledged, for verify: OUT.acked holds next * PIECES
 * rounds (native uint64). */
static void acked_path(char *p, size_t len, const char *out)
{
	snprintf(p, len, "%s.acked", out);
}

static int verify(char **argv)
{
	const char *sock = argv[2];
	uint64_t layer = strtoull(argv[3], NULL, 0), next = strtoull(argv[4], NULL, 0);
	uint64_t *acked;
	struct kura_client *c;
	char path[4096];
	FILE *f;
	int bad;

	if (next < 2 || next > 4096)
		die("NEXT %s: give 2 to 4096 extents", argv[4], 0);
	acked_path(path, sizeof(path), argv[5]);
	if (!(acked = calloc(next * PIECES, sizeof(*acked))))
		die("out of memory%s%llu", "", 0);
	if (!(f = fopen(path, "r")) || fread(acked, sizeof(*acked), next * PIECES, f) != next * PIECES)
		die("cannot read %s (written by load)%llu", path, 0);
	fclose(f);
	if (kura_client_connect(sock, &c))
		die("cannot connect to %s%llu", sock, 0);
	bad = check_back(c, sock, layer, next, acked);
	kura_client_close(c);
	free(acked);
	if (!bad)
		printf("ok: %llu extents read back through %s as acknowledged\n",
		       (unsigned long long)next, sock);
	return bad;
}

struct slot {
	uint64_t ext, round, t0;
	unsigned piece;
	uint8_t *buf;
	int busy;
};

static int load(int argc, char **argv)
{
	const char *sock = argv[2], *out = argv[6];
	uint64_t layer = strtoull(argv[3], NULL, 0), next = strtoull(argv[4], NULL, 0);
	uint64_t secs = strtoull(argv[5], NULL, 0), end, max_ms = 0, writes = 0, rounds = 0;
	uint64_t *acked, *tried;
	uint8_t *pbusy; /* a piece with a write in flight gets no second one */
	struct slot s[QD] = { 0 };
	struct kura_client *c;
	uint64_t cursor = 0;
	unsigned busy = 0;
	int bad;
	FILE *f;

	(void)argc;
	if (next < 2 || next > 4096)
		die("NEXT %s: give 2 to 4096 extents", argv[4], 0);
	acked = calloc(next * PIECES, sizeof(*acked));
	tried = calloc(next * PIECES, sizeof(*tried));
	pbusy = calloc(next * PIECES, 1);
	if (!acked || !tried || !pbusy || kura_client_connect(sock, &c))
		die("cannot start against %s%llu", sock, 0);
	for (unsigned i = 0; i < QD; i++)
		if (!(s[i].buf = kura_aligned_alloc_raw(PIECE_BLOCKS * KURA_BLK_SIZE)))
			die("out of memory%s%llu", "", 0);
	end = now_ms() + secs * 1000;
	while (now_ms() < end || busy) {
		struct kura_proto_resp resp;
		int st;

		for (unsigned i = 0; i < QD && now_ms() < end; i++) {
			struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_WRITE,
						    .layer = layer, .nblk = PIECE_BLOCKS,
						    .data_len = PIECE_BLOCKS * KURA_BLK_SIZE };
			uint64_t k = cursor % (next * PIECES);

			if (s[i].busy || pbusy[k])
				continue;
			cursor++;
			pbusy[k] = 1;
			if (k == 0)
				rounds++;
			s[i].ext = k / PIECES;
			s[i].piece = (unsigned)(k % PIECES);
			s[i].round = tried[k] + 1;
			tried[k] = s[i].round;
			for (unsigned b = 0; b < PIECE_BLOCKS; b++)
				fill_block(s[i].buf + b * KURA_BLK_SIZE, s[i].ext,
				     s[i].piece * PIECE_BLOCKS + b, s[i].round);
			q.tag = i;
			q.ext = s[i].ext;
			q.blk = (uint16_t)(s[i].piece * PIECE_BLOCKS);
			if (kura_client_send(c, &q, s[i].buf))
				die("send to %s failed%llu", sock, 0);
			s[i].busy = 1;
			s[i].t0 = now_ms();
			busy++;
		}
		if (!busy)
			break;
		if ((st = kura_client_recv(c, &resp, NULL, 0)))
			die("%s: connection lost (%llu)", sock, (unsigned long long)-st);
		if (resp.tag >= QD || !s[resp.tag].busy)
			die("%s: answer with an unknown tag %llu", sock, resp.tag);
		{
			struct slot *x = &s[resp.tag];
			uint64_t k = x->ext * PIECES + x->piece;

			if (resp.status)
				die("a write failed: %s %llu", strerror(-resp.status), x->ext);
			acked[k] = KURA_MAX(acked[k], x->round);
			pbusy[k] = 0;
			max_ms = KURA_MAX(max_ms, now_ms() - x->t0);
			x->busy = 0;
			busy--;
			writes++;
		}
	}
	/* every block holds the last round acknowledged for it */
	bad = check_back(c, sock, layer, next, acked);
	kura_client_close(c);
	for (unsigned i = 0; i < QD; i++)
		free(s[i].buf);
	if (bad) {
		/* freed, so that a sanitizer build's leak report does not bury
		 * the message above in the test's log */
		free(acked);
		free(tried);
		free(pbusy);
		return 1;
	}
	{
		char path[4096];

		acked_path(path, sizeof(path), out);
		if (!(f = fopen(path, "w")) ||
		    fwrite(acked, sizeof(*acked), next * PIECES, f) != next * PIECES || fclose(f))
			die("cannot write %s%llu", path, 0);
	}
	free(acked);
	free(tried);
	free(pbusy);
	if (!(f = fopen(out, "w")))
		die("cannot write %s%llu", out, 0);
	fprintf(f, "rounds %llu writes %llu max_ms %llu\n", (unsigned long long)rounds,
		(unsigned long long)writes, (unsigned long long)max_ms);
	fclose(f);
	printf("ok: %llu writes in %llu rounds over %llu extents read back as acknowledged; "
	       "longest write %llu ms\n", (unsigned long long)writes, (unsigned long long)rounds,
	       (unsigned long long)next, (unsigned long long)max_ms);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int bench(char **argv)
{
	uint64_t layer = strtoull(argv[3], NULL, 0), qd = strtoull(argv[4], NULL, 0);
	uint64_t secs = strtoull(argv[5], NULL, 0), end, n = 0, cap = 1u << 20, sum = 0;
	uint64_t t0[64] = { 0 }; /* start of the write in each slot; 0: free */
	uint64_t *lat = malloc(cap * sizeof(*lat)), seed = 0x1234567, start;
	uint8_t *buf = kura_aligned_alloc_raw(KURA_BLK_SIZE);
	struct kura_client *c;
	unsigned busy = 0;

	if (!qd || qd > 64 || !lat || !buf || kura_client_connect(argv[2], &c))
		die("bench: give QD 1 to 64 and a live socket (%s)%llu", argv[2], 0);
	memset(buf, 0x5a, KURA_BLK_SIZE);
	start = now_us();
	end = start + secs * 1000000;
	for (;;) {
		struct kura_proto_resp resp;

		while (busy < qd && now_us() < end) {
			struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_WRITE,
						    .layer = layer, .nblk = 1,
						    .data_len = KURA_BLK_SIZE };
			unsigned slot = 0;

			while (slot < qd && t0[slot])
				slot++;
			seed = kura_hash64(seed);
			q.ext = seed % 64;
			q.blk = (uint16_t)((seed >> 20) % KURA_EXT_BLOCKS);
			q.tag = slot;
			t0[slot] = now_us();
			if (kura_client_send(c, &q, buf))
				die("bench: send failed%s%llu", "", 0);
			busy++;
		}
		if (!busy)
			break;
		if (kura_client_recv(c, &resp, NULL, 0) || resp.status || resp.tag >= qd)
			die("bench: a write failed%s%llu", "", 0);
		if (n < cap)
			lat[n] = now_us() - t0[resp.tag];
		sum += now_us() - t0[resp.tag];
		t0[resp.tag] = 0;
		n++;
		busy--;
	}
	qsort(lat, KURA_MIN(n, cap), sizeof(*lat), cmp_u64);
	printf("iops %llu mean_us %llu p99_us %llu\n",
	       (unsigned long long)(n * 1000000 / KURA_MAX(now_us() - start, 1)),
	       (unsigned long long)(n ? sum / n : 0),
	       (unsigned long long)(n ? lat[KURA_MIN(n, cap) * 99 / 100] : 0));
	kura_client_close(c);
	free(lat);
	free(buf);
	return 0;
}

static int touch(char **argv)
{
	uint64_t layer = strtoull(argv[3], NULL, 0), first = strtoull(argv[4], NULL, 0);
	uint64_t n = strtoull(argv[5], NULL, 0), seed = argv[6] ? strtoull(argv[6], NULL, 0) : 0x7357;
	uint8_t *buf = kura_aligned_alloc_raw(KURA_BLK_SIZE);
	struct kura_client *c;

	if (!buf || kura_client_connect(argv[2], &c))
		die("touch: no socket at %s%llu", argv[2], 0);
	for (uint64_t e = first; e < first + n; e++) {
		struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_WRITE,
					    .layer = layer, .ext = e, .nblk = 1,
					    .data_len = KURA_BLK_SIZE };
		struct kura_proto_resp resp;

		seed = kura_hash64(seed);
		q.blk = (uint16_t)(seed % KURA_EXT_BLOCKS);
		memset(buf, (int)(seed >> 32), KURA_BLK_SIZE);
		if (kura_client_send(c, &q, buf) || kura_client_recv(c, &resp, NULL, 0) ||
		    resp.status)
			die("touch: the write to extent %s%llu failed", "", (unsigned long long)e);
	}
	kura_client_close(c);
	free(buf);
	return 0;
}

/* One request on c, its status (a failure to talk ends the program). */
static int call1(struct kura_client *c, const char *sock, struct kura_proto_req *q,
		 const void *data, void *buf, size_t cap)
{
	struct kura_proto_resp resp;

	q->magic = KURA_PROTO_MAGIC;
	if (kura_client_send(c, q, data) || kura_client_recv(c, &resp, buf, cap))
		die("%s: connection lost%llu", sock, 0);
	return resp.status;
}

/* fill: block 0 of each extent from FIRST on, one at a time, until a write
 * fails: it must fail with ENOSPC, and in time; then every filled extent
 * takes a write to block 1 (no new space) and both read back. */
static int fill(char **argv)
{
	const char *sock = argv[2];
	uint64_t layer = strtoull(argv[3], NULL, 0), first = strtoull(argv[4], NULL, 0);
	uint64_t max = strtoull(argv[5], NULL, 0), e, longest = 0, t0;
	uint8_t *b = kura_aligned_alloc_raw(2 * KURA_BLK_SIZE);
	struct kura_client *c;
	int st = 0;

	if (!b || kura_client_connect(sock, &c))
		die("fill: no socket at %s%llu", sock, 0);
	for (e = first; e < first + max; e++) {
		struct kura_proto_req q = { .op = KURA_OP_WRITE, .layer = layer, .ext = e,
					    .nblk = 1, .data_len = KURA_BLK_SIZE };

		fill_block(b, e, 0, 1);
		t0 = now_ms();
		st = call1(c, sock, &q, b, NULL, 0);
		longest = KURA_MAX(longest, now_ms() - t0);
		if (st)
			break;
	}
	if (st != -ENOSPC) {
		fprintf(stderr, "repcheck: fill: extent %llu: %s, not ENOSPC\n", (unsigned long long)e,
			st ? strerror(-st) : "no failure");
		return 1;
	}
	printf("filled %llu extents; the next write failed with ENOSPC; longest write %llu ms\n",
	       (unsigned long long)(e - first), (unsigned long long)longest);
	for (uint64_t x = first; x < e; x++) {
		struct kura_proto_req w = { .op = KURA_OP_WRITE, .layer = layer, .ext = x, .blk = 1,
					    .nblk = 1, .data_len = KURA_BLK_SIZE };
		struct kura_proto_req r = { .op = KURA_OP_READ, .layer = layer, .ext = x, .nblk = 2 };

		fill_block(b, x, 1, 2);
		if ((st = call1(c, sock, &w, b, NULL, 0)))
			die("fill: a write into allocated extent %s%llu failed", "", (unsigned long long)x);
		if ((st = call1(c, sock, &r, NULL, b, 2 * KURA_BLK_SIZE)) || round_of(b, x, 0) != 1 ||
		    round_of(b + KURA_BLK_SIZE, x, 1) != 2)
			die("fill: extent %s%llu did not read back", "", (unsigned long long)x);
	}
	printf("ok: writes into the %llu allocated extents go on; all read back\n",
	       (unsigned long long)(e - first));
	kura_client_close(c);
	free(b);
	return 0;
}

/* corrupt: every 4 KiB block of IMG that holds block 0 of one of extents
 * 0..NEXT-1 (as load writes it, any round) gets one byte flipped, as bit
 * rot would; written through the page cache and synced (the store reads
 * with O_DIRECT, which sees it). Prints how many blocks it changed. */
static int corrupt(char **argv)
{
	uint64_t next = strtoull(argv[3], NULL, 0), n = 0;
	uint8_t *b = kura_aligned_alloc_raw(KURA_BLK_SIZE);
	int fd = open(argv[2], O_RDWR);

	if (!b || fd < 0)
		die("corrupt: cannot open %s%llu", argv[2], 0);
	for (off_t off = 0; pread(fd, b, KURA_BLK_SIZE, off) == KURA_BLK_SIZE; off += KURA_BLK_SIZE) {
		uint64_t round = *(const uint64_t *)(const void *)b;

		if (!round)
			continue;
		for (uint64_t e = 0; e < next; e++) {
			if (round_of(b, e, 0) != round)
				continue;
			b[100] ^= 0x5a;
			if (pwrite(fd, b, KURA_BLK_SIZE, off) != KURA_BLK_SIZE)
				die("corrupt: cannot write %s%llu", argv[2], 0);
			n++;
			break;
		}
	}
	if (fsync(fd))
		die("corrupt: cannot sync %s%llu", argv[2], 0);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	free(b);
	printf("corrupted %llu blocks\n", (unsigned long long)n);
	return n ? 0 : 1;
}

/* free: extents FIRST .. FIRST+N-1, each must succeed. */
static int free_exts(char **argv)
{
	uint64_t layer = strtoull(argv[3], NULL, 0), first = strtoull(argv[4], NULL, 0);
	uint64_t n = strtoull(argv[5], NULL, 0);
	struct kura_client *c;

	if (kura_client_connect(argv[2], &c))
		die("free: no socket at %s%llu", argv[2], 0);
	for (uint64_t e = first; e < first + n; e++) {
		struct kura_proto_req q = { .op = KURA_OP_FREE, .layer = layer, .ext = e };
		int st = call1(c, argv[2], &q, NULL, NULL, 0);

		if (st)
			die("free: extent %s: %llu", strerror(-st), (unsigned long long)e);
	}
	kura_client_close(c);
	return 0;
}

static struct kura_client *link_to(const char *addr, const char *cluster)
{
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_HELLO,
				    .data_len = sizeof(struct kura_proto_hello) };
	struct kura_proto_hello h = { .version = KURA_PROTO_VERSION }, a;
	struct kura_client *c;
	size_t got;

	memcpy(h.cluster_id, cluster, strnlen(cluster, 36));
	snprintf(h.node, sizeof(h.node), "repcheck");
	if (kura_client_connect_tcp(addr, &c) || kura_client_call(c, &q, &h, &a, sizeof(a), &got))
		die("no node link to %s%llu", addr, 0);
	return c;
}

static int replicas(int argc, char **argv)
{
	uint64_t layer = strtoull(argv[3], NULL, 0), next = strtoull(argv[4], NULL, 0);
	unsigned want = (unsigned)strtoul(argv[5], NULL, 0), nodes = (unsigned)(argc - 6);
	struct kura_client *c[16];
	uint8_t *first = kura_aligned_alloc_raw(KURA_EXT_SIZE), *r = kura_aligned_alloc_raw(KURA_EXT_SIZE);
	uint64_t copies = 0;

	if (nodes < 1 || nodes > 16 || !first || !r)
		die("give 1 to 16 node addresses%s%llu", "", 0);
	for (unsigned i = 0; i < nodes; i++)
		c[i] = link_to(argv[6 + i], argv[2]);
	for (uint64_t e = 0; e < next; e++) {
		unsigned held = 0;
		uint64_t version = 0;

		for (unsigned i = 0; i < nodes; i++) {
			struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_INFO,
						    .layer = layer, .ext = e };
			struct kura_proto_info info;
			size_t got;
			int st = kura_client_call(c[i], &q, NULL, &info, sizeof(info), &got);

			if (st == -ENOENT)
				continue;
			if (st)
				die("info from %s failed (%llu)", argv[6 + i], (unsigned long long)-st);
			q = (struct kura_proto_req){ .magic = KURA_PROTO_MAGIC, .op = KURA_OP_READ,
						     .layer = layer, .ext = e, .nblk = KURA_EXT_BLOCKS };
			if (kura_client_call(c[i], &q, NULL, held ? r : first, KURA_EXT_SIZE, &got))
				die("read from %s failed%llu", argv[6 + i], 0);
			if (held && (info.version != version || memcmp(first, r, KURA_EXT_SIZE))) {
				fprintf(stderr, "repcheck: extent %llu: the copy on %s differs (version "
					"%llu, first copy %llu)\n", (unsigned long long)e, argv[6 + i],
					(unsigned long long)info.version, (unsigned long long)version);
				return 1;
			}
			version = info.version;
			held++;
		}
		if (held != want) {
			fprintf(stderr, "repcheck: extent %llu is held by %u nodes, not %u\n",
				(unsigned long long)e, held, want);
			return 1;
		}
		copies += held;
	}
	for (unsigned i = 0; i < nodes; i++)
		kura_client_close(c[i]);
	free(first);
	free(r);
	printf("ok: %llu extents, each on %u nodes, copies identical (%llu compared)\n",
	       (unsigned long long)next, want, (unsigned long long)copies);
	return 0;
}

/* The file systems' shutdown ioctl ('X', 125; ext4 and XFS share it),
 * without flushing the log: what a disk that stops answering leaves. */
#define FS_IOC_SHUTDOWN _IOR('X', 125, uint32_t)
#define FS_SHUTDOWN_NOLOGFLUSH 2u

static int fsdown(const char *path)
{
	uint32_t how = FS_SHUTDOWN_NOLOGFLUSH;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || ioctl(fd, FS_IOC_SHUTDOWN, &how)) {
		fprintf(stderr, "kura-repcheck: cannot shut down the file system of %s: %s\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	close(fd);
	return 0;
}

/* stats SOCK: the store's statistics (JSON) on one line */
static int stats(const char *sock)
{
	struct kura_proto_req q = { .magic = KURA_PROTO_MAGIC, .op = KURA_OP_STATS };
	struct kura_client *c;
	static char buf[16384];
	size_t got;

	if (kura_client_connect(sock, &c) ||
	    kura_client_call(c, &q, NULL, buf, sizeof(buf) - 1, &got)) {
		fprintf(stderr, "repcheck: %s: no statistics\n", sock);
		return 1;
	}
	buf[got] = '\0';
	printf("%s\n", buf);
	kura_client_close(c);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "stats"))
		return stats(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "fsdown"))
		return fsdown(argv[2]);
	if (argc == 7 && !strcmp(argv[1], "load"))
		return load(argc, argv);
	if (argc == 6 && !strcmp(argv[1], "fill"))
		return fill(argv);
	if (argc == 4 && !strcmp(argv[1], "corrupt"))
		return corrupt(argv);
	if (argc == 6 && !strcmp(argv[1], "free"))
		return free_exts(argv);
	if (argc == 6 && !strcmp(argv[1], "verify"))
		return verify(argv);
	if (argc >= 7 && !strcmp(argv[1], "replicas"))
		return replicas(argc, argv);
	if ((argc == 6 || argc == 7) && !strcmp(argv[1], "touch"))
		return touch(argv);
	if (argc == 6 && !strcmp(argv[1], "bench"))
		return bench(argv);
	fprintf(stderr, "usage: kura-repcheck load SOCK LAYER NEXT SECONDS OUT\n"
			"       kura-repcheck verify SOCK LAYER NEXT OUT\n"
			"       kura-repcheck fill SOCK LAYER FIRST MAX\n"
			"       kura-repcheck free SOCK LAYER FIRST N\n"
			"       kura-repcheck corrupt IMG NEXT\n"
			"       kura-repcheck bench SOCK LAYER QD SECONDS\n"
			"       kura-repcheck touch SOCK LAYER FIRST N [SEED]\n"
			"       kura-repcheck replicas CLUSTER_ID LAYER NEXT R ADDR...\n"
			"       kura-repcheck fsdown PATH\n"
			"       kura-repcheck stats SOCK\n");
	return 2;
}
