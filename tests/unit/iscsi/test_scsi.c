/* The SCSI logical unit (lu.c, spc.c, sbc.c) on a memory backend: data
 * paths, sense data, residuals, unit attentions, range locks, aborts. */
#include "iscsi-target/scsi_int.h"
#include "tests/unit/harness.h"
#include "tests/unit/iscsi/memlu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LBS KURA_SCSI_LBS
#define MIB (1u << 20)

struct fx {
	struct kura_loop *loop;
	struct memlu *m;
	struct kura_scsi_nexus n, n2;
	struct kura_scsi_cmd c;
};

static void fx_init(struct fx *f, uint64_t size, bool ro, uint64_t uid)
{
	memset(f, 0, sizeof(*f));
	CHECK_EQ(kura_loop_create(&f->loop, 64), 0);
	f->m = memlu_new(f->loop, size, ro, uid, "vd1", NULL);
	memlu_nexus(&f->n, 1, "iqn.2026-11.test:a", 1);
	memlu_nexus(&f->n2, 2, "iqn.2026-11.test:b", 2);
	kura_scsi_nexus_new(f->m->lu, &f->n);
	kura_scsi_nexus_new(f->m->lu, &f->n2);
}

static void fx_fini(struct fx *f)
{
	kura_scsi_cmd_release(&f->c);
	kura_scsi_nexus_gone(f->m->lu, &f->n);
	kura_scsi_nexus_gone(f->m->lu, &f->n2);
	memlu_free(f->m);
	kura_loop_destroy(f->loop);
}

static struct kura_scsi_cmd *run_as(struct fx *f, const struct kura_scsi_nexus *n,
				    const uint8_t *cdb, unsigned cl, uint32_t edtl, unsigned dir,
				    const void *out, uint32_t olen)
{
	memlu_run(f->m, &f->c, n, cdb, cl, edtl, dir, out, olen);
	return &f->c;
}

static struct kura_scsi_cmd *run(struct fx *f, const uint8_t *cdb, unsigned cl, uint32_t edtl,
				 unsigned dir, const void *out, uint32_t olen)
{
	return run_as(f, &f->n, cdb, cl, edtl, dir, out, olen);
}

static void turn(struct fx *f, int n)
{
	while (n--)
		kura_loop_run_once(f->loop, 0);
}

static void wait_done(struct fx *f, const int *done)
{
	while (!*done)
		kura_loop_run_once(f->loop, 1000000000ULL);
}

#define CHECK_GOOD(c) CHECK_EQ((c)->status, KURA_SCSI_GOOD)
#define CHECK_SENSE(cx, k, a, q)                                    \
	do {                                                        \
		const struct kura_scsi_cmd *c_ = (cx); /* runs once */ \
		CHECK_EQ(c_->status, KURA_SCSI_CHECK_CONDITION);    \
		CHECK_EQ(c_->sense[0] & 0x7f, 0x70);                \
		CHECK_EQ(c_->sense_len, 18);                        \
		CHECK_EQ(memlu_sk(c_), k);                          \
		CHECK_EQ(memlu_asc(c_), a);                         \
		CHECK_EQ(memlu_ascq(c_), q);                        \
	} while (0)

/* A read/write-family CDB of the size the opcode's group implies. */
static unsigned cdb_rw(uint8_t *cdb, uint8_t op, uint64_t lba, uint32_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	switch (op >> 5) {
	case 0:
		cdb[1] = (uint8_t)((lba >> 16) & 0x1f);
		cdb[2] = (uint8_t)(lba >> 8);
		cdb[3] = (uint8_t)lba;
		cdb[4] = (uint8_t)n;
		return 6;
	case 1:
	case 2:
		scsi_put32(cdb + 2, (uint32_t)lba);
		scsi_put16(cdb + 7, (uint16_t)n);
		return 10;
	case 5:
		scsi_put32(cdb + 2, (uint32_t)lba);
		scsi_put32(cdb + 6, n);
		return 12;
	default:
		scsi_put64(cdb + 2, lba);
		scsi_put32(cdb + 10, n);
		return 16;
	}
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seed + i / 509);
}

static struct kura_scsi_cmd *rd(struct fx *f, uint8_t op, uint64_t lba, uint32_t n)
{
	uint8_t cdb[16];
	unsigned cl = cdb_rw(cdb, op, lba, n);

	return run(f, cdb, cl, n * LBS, KURA_SCSI_READ, NULL, 0);
}

static struct kura_scsi_cmd *wr(struct fx *f, uint8_t op, uint64_t lba, uint32_t n,
				const uint8_t *data)
{
	uint8_t cdb[16];
	unsigned cl = cdb_rw(cdb, op, lba, n);

	return run(f, cdb, cl, n * LBS, KURA_SCSI_WRITE, data, n * LBS);
}

static void check_reads(struct fx *f, uint64_t lba, uint32_t n, const uint8_t *want)
{
	struct kura_scsi_cmd *c = rd(f, 0x88, lba, n);

	CHECK_GOOD(c);
	CHECK_EQ(c->din_len, n * LBS);
	CHECK(!memcmp(c->din, want, (size_t)n * LBS));
}

static struct kura_scsi_cmd *inquiry(struct fx *f, bool evpd, uint8_t page, uint16_t alloc)
{
	uint8_t cdb[6] = {0x12, evpd ? 1 : 0, page};

	scsi_put16(cdb + 3, alloc);
	return run(f, cdb, 6, alloc, KURA_SCSI_READ, NULL, 0);
}

static struct kura_scsi_cmd *tur(struct fx *f, const struct kura_scsi_nexus *n)
{
	uint8_t cdb[6] = {0};

	return run_as(f, n, cdb, 6, 0, 0, NULL, 0);
}

/* ---- data paths ---- */

TEST(test_scsi_every_read_write_size_reads_back)
{
	static const uint8_t ops[][2] = {
		{0x08, 0x0a}, {0x28, 0x2a}, {0xa8, 0xaa}, {0x88, 0x8a},
		{0x28, 0x2e}, {0xa8, 0xae}, {0x88, 0x8e}, /* WRITE AND VERIFY */
	};
	static const struct { uint64_t lba; uint32_t n; } at[] = {
		{0, 1}, {0, 8}, {3, 5}, {7, 2}, {100, 33}, {8191, 1}, {1000, 256},
	};
	uint8_t *data = malloc(256 * LBS);
	struct fx f;

	fx_init(&f, 4 * MIB, false, 1);
	for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		for (unsigned j = 0; j < sizeof(at) / sizeof(at[0]); j++) {
			/* 6-byte CDBs carry at most 256 blocks (0 means 256) below LBA 2^21. */
			fill(data, (size_t)at[j].n * LBS, i * 16 + j);
			CHECK_GOOD(wr(&f, ops[i][1], at[j].lba, at[j].n, data));
			CHECK_GOOD(rd(&f, ops[i][0], at[j].lba, at[j].n));
			CHECK_EQ(f.c.din_len, at[j].n * LBS);
			CHECK(!memcmp(f.c.din, data, (size_t)at[j].n * LBS));
		}
	/* A 512-byte write keeps the rest of its 4 KiB block. */
	fill(data, 8 * LBS, 99);
	CHECK_GOOD(wr(&f, 0x2a, 16, 8, data));
	memset(data + 2 * LBS, 0x5a, LBS);
	CHECK_GOOD(wr(&f, 0x2a, 18, 1, data + 2 * LBS));
	check_reads(&f, 16, 8, data);
	free(data);
	fx_fini(&f);
}

TEST(test_scsi_large_transfer_is_split_and_windowed)
{
	uint32_t n = KURA_SCSI_MAX_XFER / LBS;
	uint8_t *data = malloc(KURA_SCSI_MAX_XFER), cdb[16];
	unsigned cl;
	int done = 0;
	struct fx f;

	fx_init(&f, 16 * MIB, false, 1);
	fill(data, KURA_SCSI_MAX_XFER, 3);
	f.m->hold = 1;
	cl = cdb_rw(cdb, 0x8a, 4096, n);
	memlu_start(f.m, &f.c, &f.n, cdb, cl, n * LBS, KURA_SCSI_WRITE, data, n * LBS, &done);
	turn(&f, 10);
	/* 8 MiB in 1 MiB backend calls, no more than SCSI_XFER_DEPTH at once. */
	CHECK_EQ(f.m->writes, SCSI_XFER_DEPTH);
	CHECK(!done);
	f.m->hold = 0;
	memlu_release(f.m);
	wait_done(&f, &done);
	free(f.c.dout);
	f.c.dout = NULL;
	CHECK_GOOD(&f.c);
	CHECK_EQ(f.m->writes, KURA_SCSI_MAX_XFER / SCSI_XFER_CHUNK);
	CHECK(!memcmp(f.m->data + 4096ull * LBS, data, KURA_SCSI_MAX_XFER));
	check_reads(&f, 4096, n, data);
	/* One block more than MAXIMUM TRANSFER LENGTH is an invalid field. */
	cl = cdb_rw(cdb, 0x88, 0, n + 1);
	CHECK_SENSE(run(&f, cdb, cl, 0, KURA_SCSI_READ, NULL, 0), SK_ILLEGAL_REQUEST, 0x24, 0);
	free(data);
	fx_fini(&f);
}

TEST(test_scsi_lba_out_of_range_at_the_boundary)
{
	uint8_t data[2 * LBS] = {0}, cdb[16];
	uint64_t last = 4 * MIB / LBS - 1;
	unsigned cl;
	struct fx f;

	fx_init(&f, 4 * MIB, false, 1);
	CHECK_GOOD(rd(&f, 0x28, last, 1));
	CHECK_GOOD(wr(&f, 0x2a, last, 1, data));
	CHECK_SENSE(rd(&f, 0x28, last, 2), SK_ILLEGAL_REQUEST, 0x21, 0);
	CHECK_SENSE(wr(&f, 0x8a, last, 2, data), SK_ILLEGAL_REQUEST, 0x21, 0);
	CHECK_SENSE(rd(&f, 0x88, last + 1, 1), SK_ILLEGAL_REQUEST, 0x21, 0);
	CHECK_SENSE(rd(&f, 0x88, 1ull << 63, 1), SK_ILLEGAL_REQUEST, 0x21, 0);
	CHECK_SENSE(rd(&f, 0x88, ~0ull, 1), SK_ILLEGAL_REQUEST, 0x21, 0);
	/* Zero blocks past the end are still out of range. */
	cl = cdb_rw(cdb, 0x28, last + 2, 0);
	CHECK_SENSE(run(&f, cdb, cl, 0, KURA_SCSI_READ, NULL, 0), SK_ILLEGAL_REQUEST, 0x21, 0);
	fx_fini(&f);
}

TEST(test_scsi_zero_length_read_write_do_no_io)
{
	uint8_t cdb[16];
	unsigned cl;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	cl = cdb_rw(cdb, 0x28, 5, 0);
	CHECK_GOOD(run(&f, cdb, cl, 0, KURA_SCSI_READ, NULL, 0));
	CHECK_EQ(f.c.din_len, 0);
	cl = cdb_rw(cdb, 0x8a, 5, 0);
	CHECK_GOOD(run(&f, cdb, cl, 0, KURA_SCSI_WRITE, NULL, 0));
	CHECK_EQ(f.m->reads + f.m->writes, 0);
	fx_fini(&f);
}

TEST(test_scsi_completion_is_never_inside_exec)
{
	uint8_t cdb[16] = {0}; /* TEST UNIT READY */
	int done = 0;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	memlu_start(f.m, &f.c, &f.n, cdb, 6, 0, 0, NULL, 0, &done);
	CHECK(!done);
	wait_done(&f, &done);
	CHECK_GOOD(&f.c);
	cdb[0] = 0xc7; /* not a command: the error is deferred too */
	memlu_start(f.m, &f.c, &f.n, cdb, 6, 0, 0, NULL, 0, &done);
	CHECK(!done);
	wait_done(&f, &done);
	CHECK_SENSE(&f.c, SK_ILLEGAL_REQUEST, 0x20, 0);
	fx_fini(&f);
}

/* ---- INQUIRY, capacity, REPORT LUNS, sense format ---- */

TEST(test_scsi_inquiry_standard_data)
{
	struct kura_scsi_cmd *c;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	c = inquiry(&f, false, 0, 255);
	CHECK_GOOD(c);
	CHECK(c->din_len >= 36);
	CHECK_EQ(c->din[0], 0x00);         /* connected direct-access block device */
	CHECK_EQ(c->din[2], 0x06);         /* SPC-4 */
	CHECK_EQ(c->din[3] & 0x0f, 2);     /* response data format */
	CHECK_EQ(c->din[4] + 5, c->din_len);
	CHECK_EQ(c->din[5] & 0x30, 0);     /* TPGS 0 */
	CHECK(c->din[7] & 0x02);           /* CMDQUE */
	CHECK(!memcmp(c->din + 8, "KURA    ", 8));
	CHECK(!memcmp(c->din + 16, "VDISK           ", 16));
	/* The allocation length cuts the data and sets the residual. */
	c = inquiry(&f, false, 0, 5);
	CHECK_GOOD(c);
	CHECK_EQ(c->din_len, 5);
	CHECK(!c->overflow && !c->underflow);
	{
		uint8_t cdb[6] = {0x12, 0, 0, 0, 36};
		c = run(&f, cdb, 6, 100, KURA_SCSI_READ, NULL, 0);
		CHECK_GOOD(c);
		CHECK_EQ(c->din_len, 36);
		CHECK(c->underflow);
		CHECK_EQ(c->residual, 64);
		c = run(&f, cdb, 6, 10, KURA_SCSI_READ, NULL, 0);
		CHECK_EQ(c->din_len, 10);
		CHECK(c->overflow);
		CHECK_EQ(c->residual, 26);
	}
	/* A page code without EVPD: INVALID FIELD IN CDB pointing at byte 2. */
	c = inquiry(&f, false, 0x80, 255);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x24, 0);
	CHECK_EQ(c->sense[15], 0xc0); /* SKSV, C/D, no bit pointer */
	CHECK_EQ(scsi_be16(c->sense + 16), 2);
	fx_fini(&f);
}

static const uint8_t *find_desig(const uint8_t *p, uint32_t len, uint8_t assoc_type)
{
	for (uint32_t o = 4; o + 4 <= len; o += 4 + p[o + 3])
		if ((p[o + 1] & 0x3f) == assoc_type)
			return p + o;
	return NULL;
}

TEST(test_scsi_vpd_pages)
{
	struct kura_scsi_cmd *c;
	const uint8_t *d;
	uint8_t naa[16];
	struct fx f;

	fx_init(&f, 64 * MIB, false, 0x1234);
	c = inquiry(&f, true, 0x00, 255);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[1], 0x00);
	{
		static const uint8_t want[] = {0x00, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2};
		CHECK_EQ(scsi_be16(c->din + 2), sizeof(want));
		CHECK(!memcmp(c->din + 4, want, sizeof(want)));
		/* Every page listed is served. */
		for (unsigned i = 0; i < sizeof(want); i++) {
			c = inquiry(&f, true, want[i], 255);
			CHECK_GOOD(c);
			CHECK_EQ(c->din[1], want[i]);
			CHECK_EQ(scsi_be16(c->din + 2) + 4u, c->din_len);
		}
	}
	c = inquiry(&f, true, 0x80, 255);
	CHECK(scsi_be16(c->din + 2) > 0);
	for (unsigned i = 0; i < scsi_be16(c->din + 2); i++)
		CHECK(c->din[4 + i] > 0x20 && c->din[4 + i] < 0x7f);

	c = inquiry(&f, true, 0x83, 255);
	CHECK_GOOD(c);
	d = find_desig(c->din, c->din_len, 0x03); /* LU, NAA */
	CHECK(d);
	CHECK_EQ(d[0] & 0x0f, 1);                 /* binary */
	CHECK_EQ(d[3], 16);
	CHECK_EQ(d[4] >> 4, 6);                   /* NAA 6: IEEE registered extended */
	kura_scsi_lu_naa(f.m->lu, naa);
	CHECK(!memcmp(d + 4, naa, 16));
	CHECK_EQ(scsi_be64(naa + 8), 0x1234);
	d = find_desig(c->din, c->din_len, 0x01); /* LU, T10 vendor id */
	CHECK(d && !memcmp(d + 4, "KURA    ", 8));
	d = find_desig(c->din, c->din_len, 0x14); /* target port, relative port */
	CHECK(d && scsi_be16(d + 6) == 1);
	d = find_desig(c->din, c->din_len, 0x15); /* target port, target port group */
	CHECK(d);

	c = inquiry(&f, true, 0xb0, 255);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[4] & 1, 0);                                  /* WSNZ */
	CHECK_EQ(c->din[5], SCSI_MAX_CAW_BLOCKS);
	CHECK_EQ(scsi_be16(c->din + 6), KURA_SCSI_PBS / LBS);
	CHECK_EQ(scsi_be32(c->din + 8), KURA_SCSI_MAX_XFER / LBS);
	CHECK_EQ(scsi_be32(c->din + 20), SCSI_MAX_UNMAP_LBAS);
	CHECK_EQ(scsi_be32(c->din + 24), SCSI_MAX_UNMAP_DESC);
	CHECK_EQ(scsi_be32(c->din + 28), KURA_SCSI_PBS / LBS);
	CHECK_EQ(scsi_be64(c->din + 36), SCSI_MAX_WS_LBAS);
	c = inquiry(&f, true, 0xb1, 255);
	CHECK_EQ(scsi_be16(c->din + 4), 1);                          /* non-rotating */
	c = inquiry(&f, true, 0xb2, 255);
	CHECK_EQ(c->din[5] & 0xe0, 0xe0);                            /* LBPU LBPWS LBPWS10 */
	CHECK_EQ((c->din[5] >> 2) & 7, 1);                           /* LBPRZ */
	CHECK_EQ(c->din[6] & 7, 2);                                  /* thin */

	c = inquiry(&f, true, 0x99, 255);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x24, 0);
	CHECK_EQ(scsi_be16(c->sense + 16), 2);
	fx_fini(&f);
}

TEST(test_scsi_device_id_is_stable_per_uid)
{
	struct kura_loop *loop;
	struct memlu *a, *b, *c;
	uint8_t na[16], nb[16], nc[16];

	CHECK_EQ(kura_loop_create(&loop, 16), 0);
	a = memlu_new(loop, MIB, false, 77, "x", NULL);
	b = memlu_new(loop, MIB, true, 77, "x@s", NULL);
	c = memlu_new(loop, MIB, false, 78, "y", NULL);
	kura_scsi_lu_naa(a->lu, na);
	kura_scsi_lu_naa(b->lu, nb);
	kura_scsi_lu_naa(c->lu, nc);
	CHECK(!memcmp(na, nb, 16));
	CHECK(memcmp(na, nc, 16));
	/* The same designator as before this rewrite: initiators key multipath
	 * devices and datastores by it. */
	CHECK_EQ(scsi_be32(na), 0x66b75720u);
	memlu_free(a);
	memlu_free(b);
	memlu_free(c);
	kura_loop_destroy(loop);
}

TEST(test_scsi_read_capacity)
{
	uint8_t cdb[16] = {0x25};
	struct kura_scsi_cmd *c;
	struct fx f;

	fx_init(&f, 64 * MIB, false, 1);
	c = run(&f, cdb, 10, 8, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	CHECK_EQ(scsi_be32(c->din), 64 * MIB / LBS - 1);
	CHECK_EQ(scsi_be32(c->din + 4), LBS);
	scsi_put32(cdb + 2, 5); /* LBA without PMI */
	CHECK_SENSE(run(&f, cdb, 10, 8, KURA_SCSI_READ, NULL, 0), SK_ILLEGAL_REQUEST, 0x24, 0);
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x9e;
	cdb[1] = 0x10;
	scsi_put32(cdb + 10, 32);
	c = run(&f, cdb, 16, 32, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	CHECK_EQ(c->din_len, 32);
	CHECK_EQ(scsi_be64(c->din), 64 * MIB / LBS - 1);
	CHECK_EQ(scsi_be32(c->din + 8), LBS);
	CHECK_EQ(c->din[13] & 0x0f, 0); /* LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT */
	CHECK_EQ(c->din[14] & 0xc0, 0xc0); /* LBPME, LBPRZ */
	cdb[1] = 0x11; /* an unknown service action */
	CHECK_SENSE(run(&f, cdb, 16, 32, KURA_SCSI_READ, NULL, 0), SK_ILLEGAL_REQUEST, 0x24, 0);
	fx_fini(&f);
}

TEST(test_scsi_report_luns)
{
	uint8_t cdb[12] = {0xa0};
	struct kura_scsi_cmd *c;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	scsi_put32(cdb + 6, 64);
	for (uint8_t sel = 0; sel <= 2; sel++) {
		cdb[2] = sel;
		c = run(&f, cdb, 12, 64, KURA_SCSI_READ, NULL, 0);
		CHECK_GOOD(c);
		CHECK_EQ(c->din_len, sel == 1 ? 8 : 16);
		CHECK_EQ(scsi_be32(c->din), sel == 1 ? 0 : 8); /* LUN 0; no well-known LUs */
		CHECK_EQ(scsi_be64(c->din + 8), 0);
	}
	cdb[2] = 3;
	CHECK_SENSE(run(&f, cdb, 12, 64, KURA_SCSI_READ, NULL, 0), SK_ILLEGAL_REQUEST, 0x24, 0);
	cdb[2] = 0x10;
	CHECK_SENSE(run(&f, cdb, 12, 64, KURA_SCSI_READ, NULL, 0), SK_ILLEGAL_REQUEST, 0x24, 0);
	cdb[2] = 0;
	scsi_put32(cdb + 6, 8); /* an allocation length under 16 */
	CHECK_SENSE(run(&f, cdb, 12, 8, KURA_SCSI_READ, NULL, 0), SK_ILLEGAL_REQUEST, 0x24, 0);
	fx_fini(&f);
}

TEST(test_scsi_sense_has_field_and_bit_pointers)
{
	uint8_t cdb[16];
	struct kura_scsi_cmd *c;
	unsigned cl;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	cl = cdb_rw(cdb, 0x28, 0, 1);
	cdb[1] = 0x20; /* RDPROTECT */
	c = run(&f, cdb, cl, LBS, KURA_SCSI_READ, NULL, 0);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x24, 0);
	CHECK_EQ(c->sense[15], 0x80 | 0x40 | 0x08 | 7); /* SKSV C/D BPV bit 7 */
	CHECK_EQ(scsi_be16(c->sense + 16), 1);
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x04; /* FORMAT UNIT: not offered */
	c = run(&f, cdb, 6, 0, 0, NULL, 0);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x20, 0);
	CHECK_EQ(scsi_be16(c->sense + 16), 0);
	fx_fini(&f);
}

/* ---- MODE SENSE / MODE SELECT ---- */

static struct kura_scsi_cmd *mode_sense10(struct fx *f, const struct kura_scsi_nexus *n,
					  uint8_t pc_page, uint8_t flags)
{
	uint8_t cdb[10] = {0x5a, flags, pc_page};

	scsi_put16(cdb + 7, 512);
	return run_as(f, n, cdb, 10, 512, KURA_SCSI_READ, NULL, 0);
}

static struct kura_scsi_cmd *mode_select10(struct fx *f, uint8_t flags, const uint8_t *p,
					   uint16_t len)
{
	uint8_t cdb[10] = {0x55, flags};

	scsi_put16(cdb + 7, len);
	return run(f, cdb, 10, len, KURA_SCSI_WRITE, p, len);
}

TEST(test_scsi_mode_sense_select_round_trip)
{
	struct kura_scsi_cmd *c;
	uint8_t p[64];
	struct fx f;
	uint16_t len;

	fx_init(&f, 64 * MIB, false, 1);
	/* Current caching page, with the block descriptor. */
	c = mode_sense10(&f, &f.n, 0x08, 0);
	CHECK_GOOD(c);
	CHECK_EQ(scsi_be16(c->din + 6), 8);               /* block descriptor length */
	CHECK_EQ(scsi_be32(c->din + 8), 64 * MIB / LBS);  /* number of blocks */
	CHECK_EQ(scsi_be32(c->din + 12), LBS);
	CHECK_EQ(c->din[3] & 0x80, 0);                    /* not write-protected */
	CHECK_EQ(c->din[16], 0x08);
	CHECK_EQ(c->din[16 + 2] & 0x04, 0);               /* WCE off */
	len = (uint16_t)(scsi_be16(c->din) + 2);
	CHECK_EQ(len, 16 + 20);
	/* Set WCE: the header's mode data length is reserved in MODE SELECT. */
	memcpy(p, c->din, len);
	p[0] = p[1] = 0;
	p[16 + 2] |= 0x04;
	CHECK_GOOD(mode_select10(&f, 0x10, p, len));
	CHECK_EQ(mode_sense10(&f, &f.n, 0x08, 0x08)->din[8 + 2] & 0x04, 0x04); /* DBD */
	/* Another nexus hears of it, and once. */
	CHECK_SENSE(tur(&f, &f.n2), SK_UNIT_ATTENTION, 0x2a, 0x01);
	CHECK_GOOD(tur(&f, &f.n2));
	CHECK_GOOD(tur(&f, &f.n));

	/* Changeable values: WCE in caching, SWP in control. */
	c = mode_sense10(&f, &f.n, 0x40 | 0x08, 0x08);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[8 + 2], 0x04);
	c = mode_sense10(&f, &f.n, 0x40 | 0x0a, 0x08);
	CHECK_EQ(c->din[8 + 4], 0x08);
	/* Saved values: SAVING PARAMETERS NOT SUPPORTED. */
	CHECK_SENSE(mode_sense10(&f, &f.n, 0xc0 | 0x08, 0), SK_ILLEGAL_REQUEST, 0x39, 0);
	/* All pages: caching, control, informational exceptions. */
	c = mode_sense10(&f, &f.n, 0x3f, 0x08);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[8], 0x08);
	CHECK_EQ(c->din[8 + 20], 0x0a);
	CHECK_EQ(c->din[8 + 20 + 12], 0x1c);
	CHECK_EQ(scsi_be16(c->din) + 2, 8 + 20 + 12 + 12);
	CHECK_SENSE(mode_sense10(&f, &f.n, 0x05, 0), SK_ILLEGAL_REQUEST, 0x24, 0);

	/* Refusals: a bit that is not changeable (byte 3 of the caching page at
	 * offset 16 of the list), PF 0, SP 1, a wrong page length, a block
	 * descriptor with another block size. */
	c = mode_sense10(&f, &f.n, 0x08, 0);
	memcpy(p, c->din, len);
	p[0] = p[1] = 0;
	p[16 + 3] ^= 0x01;
	c = mode_select10(&f, 0x10, p, len);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0);
	CHECK_EQ(c->sense[15] & 0xc0, 0x80); /* SKSV, in the parameter list */
	CHECK_EQ(scsi_be16(c->sense + 16), 16 + 3);
	p[16 + 3] ^= 0x01;
	CHECK_SENSE(mode_select10(&f, 0x00, p, len), SK_ILLEGAL_REQUEST, 0x24, 0);
	CHECK_SENSE(mode_select10(&f, 0x11, p, len), SK_ILLEGAL_REQUEST, 0x24, 0);
	p[16 + 1] = 0x11;
	CHECK_SENSE(mode_select10(&f, 0x10, p, len), SK_ILLEGAL_REQUEST, 0x26, 0);
	p[16 + 1] = 0x12;
	scsi_put32(p + 12, 4096);
	CHECK_SENSE(mode_select10(&f, 0x10, p, len), SK_ILLEGAL_REQUEST, 0x26, 0);
	scsi_put32(p + 12, LBS);
	CHECK_SENSE(mode_select10(&f, 0x10, p, 6), SK_ILLEGAL_REQUEST, 0x1a, 0);
	CHECK_GOOD(mode_select10(&f, 0x10, p, len));
	fx_fini(&f);
}

/* With WCE set, a WRITE without FUA goes to the backend's write cache; FUA,
 * WRITE AND VERIFY and a cleared WCE are durable writes; a reset returns
 * WCE to the administrator's setting, which kura_scsi_lu_set_write_cache
 * changes (with a unit attention for every nexus). */
TEST(test_scsi_write_cache_routes_writes)
{
	uint8_t data[8 * 512], cdb[16], p[64];
	static const uint8_t plain[] = { 0x0a, 0x2a, 0xaa, 0x8a };
	struct kura_scsi_cmd *c;
	unsigned cl, w0;
	uint16_t len;
	struct fx f;

	fx_init(&f, 64 * MIB, false, 1);
	fill(data, sizeof(data), 3);
	for (unsigned i = 0; i < 4; i++)
		CHECK_GOOD(wr(&f, plain[i], 8, 8, data));
	CHECK_EQ(f.m->cached_writes, 0); /* WCE off: every write durable */
	/* WCE on through MODE SELECT */
	c = mode_sense10(&f, &f.n, 0x08, 0);
	len = (uint16_t)(scsi_be16(c->din) + 2);
	memcpy(p, c->din, len);
	p[0] = p[1] = 0;
	p[16 + 2] |= 0x04;
	CHECK_GOOD(mode_select10(&f, 0x10, p, len));
	CHECK_SENSE(tur(&f, &f.n2), SK_UNIT_ATTENTION, 0x2a, 0x01);
	for (unsigned i = 0; i < 4; i++)
		CHECK_GOOD(wr(&f, plain[i], 16 + i * 8, 8, data));
	CHECK_EQ(f.m->cached_writes, 4);
	check_reads(&f, 24, 8, data);
	/* FUA (WRITE 10/12/16) and WRITE AND VERIFY are durable */
	w0 = f.m->writes;
	for (unsigned i = 1; i < 4; i++) {
		cl = cdb_rw(cdb, plain[i], 64, 8);
		cdb[1] |= 0x08;
		CHECK_GOOD(run(&f, cdb, cl, 8 * LBS, KURA_SCSI_WRITE, data, 8 * LBS));
	}
	CHECK_GOOD(wr(&f, 0x2e, 64, 8, data));
	CHECK_EQ(f.m->writes - w0, 4);
	CHECK_EQ(f.m->cached_writes, 4);
	/* SYNCHRONIZE CACHE reaches the backend's flush */
	cl = cdb_rw(cdb, 0x35, 0, 0);
	w0 = f.m->flushes;
	CHECK_GOOD(run(&f, cdb, cl, 0, 0, NULL, 0));
	CHECK_EQ(f.m->flushes, w0 + 1);
	/* a reset brings back the saved setting: off */
	kura_scsi_lu_reset(f.m->lu, &f.n);
	CHECK_SENSE(tur(&f, &f.n), SK_UNIT_ATTENTION, 0x29, 0x03);
	CHECK_SENSE(tur(&f, &f.n2), SK_UNIT_ATTENTION, 0x29, 0x03);
	CHECK_EQ(mode_sense10(&f, &f.n, 0x08, 0)->din[16 + 2] & 0x04, 0);
	CHECK_GOOD(wr(&f, 0x2a, 8, 8, data));
	CHECK_EQ(f.m->cached_writes, 4);
	/* the administrator's setting: at once, after resets, and heard of */
	kura_scsi_lu_set_write_cache(f.m->lu, true);
	CHECK_SENSE(tur(&f, &f.n), SK_UNIT_ATTENTION, 0x2a, 0x01);
	CHECK_SENSE(tur(&f, &f.n2), SK_UNIT_ATTENTION, 0x2a, 0x01);
	CHECK_EQ(mode_sense10(&f, &f.n, 0x08, 0)->din[16 + 2] & 0x04, 0x04);
	kura_scsi_lu_reset(f.m->lu, &f.n);
	CHECK_SENSE(tur(&f, &f.n), SK_UNIT_ATTENTION, 0x29, 0x03);
	CHECK_SENSE(tur(&f, &f.n2), SK_UNIT_ATTENTION, 0x29, 0x03);
	c = mode_sense10(&f, &f.n2, 0x08, 0);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[16 + 2] & 0x04, 0x04);
	CHECK_GOOD(wr(&f, 0x2a, 8, 8, data));
	CHECK_EQ(f.m->cached_writes, 5);
	fx_fini(&f);
}

TEST(test_scsi_swp_and_read_only_report_write_protect)
{
	struct kura_scsi_cmd *c;
	uint8_t p[64], data[LBS] = {1};
	struct fx f;
	uint16_t len;

	fx_init(&f, MIB, true, 1);
	CHECK_EQ(mode_sense10(&f, &f.n, 0x3f, 0)->din[3] & 0x80, 0x80);
	fx_fini(&f);

	/* SWP set through MODE SELECT write-protects a writable LU. */
	fx_init(&f, MIB, false, 1);
	c = mode_sense10(&f, &f.n, 0x0a, 0x08);
	len = (uint16_t)(scsi_be16(c->din) + 2);
	memcpy(p, c->din, len);
	p[0] = p[1] = 0;
	p[8 + 4] |= 0x08;
	CHECK_GOOD(mode_select10(&f, 0x10, p, len));
	CHECK_EQ(mode_sense10(&f, &f.n, 0x3f, 0)->din[3] & 0x80, 0x80);
	CHECK_SENSE(wr(&f, 0x2a, 0, 1, data), SK_DATA_PROTECT, 0x27, 0);
	p[8 + 4] &= (uint8_t)~0x08;
	CHECK_GOOD(mode_select10(&f, 0x10, p, len));
	CHECK_GOOD(wr(&f, 0x2a, 0, 1, data));
	fx_fini(&f);
}

/* ---- thin provisioning: UNMAP, WRITE SAME, GET LBA STATUS ---- */

static struct kura_scsi_cmd *get_lba_status(struct fx *f, uint64_t lba, uint32_t alloc)
{
	uint8_t cdb[16] = {0x9e, 0x12};

	scsi_put64(cdb + 2, lba);
	scsi_put32(cdb + 10, alloc);
	return run(f, cdb, 16, alloc, KURA_SCSI_READ, NULL, 0);
}

static struct kura_scsi_cmd *unmap1(struct fx *f, uint64_t lba, uint32_t n)
{
	uint8_t cdb[10] = {0x42}, p[24] = {0};

	scsi_put16(p, 22);
	scsi_put16(p + 2, 16);
	scsi_put64(p + 8, lba);
	scsi_put32(p + 16, n);
	scsi_put16(cdb + 7, sizeof(p));
	return run(f, cdb, 10, sizeof(p), KURA_SCSI_WRITE, p, sizeof(p));
}

TEST(test_scsi_unmap_deallocates_and_reads_zero)
{
	uint8_t *data = malloc(64 * LBS);
	struct kura_scsi_cmd *c;
	struct fx f;

	fx_init(&f, 4 * MIB, false, 1);
	fill(data, 64 * LBS, 5);
	CHECK_GOOD(wr(&f, 0x2a, 0, 64, data));
	c = get_lba_status(&f, 0, 64);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[8 + 12], 0);              /* mapped */
	CHECK_EQ(scsi_be32(c->din + 8 + 8), 64);

	/* Whole 4 KiB blocks 8..23 go; a partial one (LBA 30) reads zeros. */
	CHECK_GOOD(unmap1(&f, 8, 16));
	CHECK_GOOD(unmap1(&f, 30, 1));
	CHECK(f.m->discards >= 1);
	c = get_lba_status(&f, 0, 64);
	CHECK_GOOD(c);
	CHECK_EQ(scsi_be32(c->din), 4 + 3 * 16);
	CHECK_EQ(scsi_be64(c->din + 8), 0);
	CHECK_EQ(scsi_be32(c->din + 16), 8);
	CHECK_EQ(c->din[20], 0);
	CHECK_EQ(scsi_be64(c->din + 24), 8);
	CHECK_EQ(scsi_be32(c->din + 32), 16);
	CHECK_EQ(c->din[36], 1);                  /* deallocated */
	CHECK_EQ(scsi_be64(c->din + 40), 24);
	CHECK_EQ(c->din[52], 0);
	/* A descriptor starts at the LBA asked for, inside a 4 KiB block too. */
	c = get_lba_status(&f, 10, 24);
	CHECK_EQ(scsi_be64(c->din + 8), 10);
	CHECK_EQ(scsi_be32(c->din + 16), 14);
	CHECK_EQ(c->din[20], 1);
	memset(data + 8 * LBS, 0, 16 * LBS);
	memset(data + 30 * LBS, 0, LBS);
	check_reads(&f, 0, 64, data);

	/* Validation of the parameter list. */
	{
		uint8_t cdb[10] = {0x42}, p[40] = {0};
		scsi_put16(cdb + 7, 4);
		CHECK_SENSE(run(&f, cdb, 10, 4, KURA_SCSI_WRITE, p, 4), SK_ILLEGAL_REQUEST, 0x1a, 0);
		scsi_put16(p + 2, 32);                 /* more descriptors than sent */
		scsi_put16(cdb + 7, 24);
		CHECK_SENSE(run(&f, cdb, 10, 24, KURA_SCSI_WRITE, p, 24), SK_ILLEGAL_REQUEST, 0x1a, 0);
		CHECK_SENSE(unmap1(&f, 4 * MIB / LBS - 1, 2), SK_ILLEGAL_REQUEST, 0x21, 0);
		CHECK_SENSE(unmap1(&f, 0, SCSI_MAX_UNMAP_LBAS + 1), SK_ILLEGAL_REQUEST, 0x21, 0);
		scsi_put16(cdb + 7, 0);                /* no list: nothing to do */
		CHECK_GOOD(run(&f, cdb, 10, 0, KURA_SCSI_WRITE, NULL, 0));
		cdb[1] = 1;                            /* ANCHOR */
		CHECK_SENSE(run(&f, cdb, 10, 0, KURA_SCSI_WRITE, NULL, 0), SK_ILLEGAL_REQUEST, 0x24, 0);
	}
	free(data);
	fx_fini(&f);
}

TEST(test_scsi_unmap_refuses_too_many_blocks)
{
	uint8_t cdb[10] = {0x42}, p[8 + 48] = {0};
	struct kura_scsi_cmd *c;
	struct fx f;

	/* Three descriptors over the same 256 MiB add up past the limit. */
	fx_init(&f, 256 * MIB, false, 1);
	scsi_put16(p, sizeof(p) - 2);
	scsi_put16(p + 2, 48);
	scsi_put32(p + 8 + 8, SCSI_MAX_UNMAP_LBAS / 2);
	scsi_put32(p + 24 + 8, SCSI_MAX_UNMAP_LBAS / 2);
	scsi_put32(p + 40 + 8, 1);
	scsi_put16(cdb + 7, sizeof(p));
	c = run(&f, cdb, 10, sizeof(p), KURA_SCSI_WRITE, p, sizeof(p));
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0);
	CHECK_EQ(c->sense[15], 0x80); /* SKSV, in the parameter list */
	CHECK_EQ(scsi_be16(c->sense + 16), 40 + 8);
	CHECK_EQ(f.m->discards, 0);
	fx_fini(&f);
}

static struct kura_scsi_cmd *write_same(struct fx *f, bool sixteen, uint8_t flags, uint64_t lba,
					uint32_t n, const uint8_t *blk)
{
	uint8_t cdb[16] = {sixteen ? 0x93 : 0x41, flags};

	if (sixteen) {
		scsi_put64(cdb + 2, lba);
		scsi_put32(cdb + 10, n);
	} else {
		scsi_put32(cdb + 2, (uint32_t)lba);
		scsi_put16(cdb + 7, (uint16_t)n);
	}
	return run(f, cdb, sixteen ? 16 : 10, blk ? LBS : 0, blk ? KURA_SCSI_WRITE : 0, blk,
		   blk ? LBS : 0);
}

TEST(test_scsi_write_same_unmap_deallocates)
{
	uint8_t *data = malloc(64 * LBS), zero[LBS] = {0};
	struct kura_scsi_cmd *c;
	struct fx f;

	fx_init(&f, 4 * MIB, false, 1);
	fill(data, 64 * LBS, 9);
	CHECK_GOOD(wr(&f, 0x2a, 0, 64, data));
	CHECK_GOOD(write_same(&f, true, 0x08, 8, 16, zero));   /* UNMAP, zero data */
	CHECK_GOOD(write_same(&f, false, 0x08, 24, 8, zero));  /* WRITE SAME(10) too */
	c = get_lba_status(&f, 0, 64);
	CHECK_EQ(c->din[20], 0);
	CHECK_EQ(scsi_be64(c->din + 24), 8);
	CHECK_EQ(scsi_be32(c->din + 32), 24);
	CHECK_EQ(c->din[36], 1);
	CHECK_EQ(c->din[52], 0);
	memset(data + 8 * LBS, 0, 24 * LBS);
	check_reads(&f, 0, 64, data);
	/* NDOB with UNMAP: no data at all. */
	CHECK_GOOD(wr(&f, 0x2a, 0, 8, data));
	CHECK_GOOD(write_same(&f, true, 0x09, 0, 8, NULL));
	CHECK_EQ(get_lba_status(&f, 0, 24)->din[20], 1);
	/* Zeros without UNMAP are written: the blocks stay allocated. */
	CHECK_GOOD(write_same(&f, false, 0x00, 0, 8, zero));
	CHECK_EQ(get_lba_status(&f, 0, 24)->din[20], 0);
	/* UNMAP deallocates whatever the block holds (reads give zeros). */
	memset(data, 0xff, LBS);
	CHECK_GOOD(write_same(&f, false, 0x08, 0, 8, data));
	CHECK_EQ(get_lba_status(&f, 0, 24)->din[20], 1);
	memset(data, 0, 8 * LBS);
	check_reads(&f, 0, 8, data);
	free(data);
	fx_fini(&f);
}

TEST(test_scsi_write_same_pattern)
{
	uint32_t n = SCSI_XFER_CHUNK / LBS * 2 + 3; /* more than two chunks */
	uint8_t blk[LBS], data[LBS];
	struct kura_scsi_cmd *c;
	struct fx f;

	fx_init(&f, 16 * MIB, false, 1);
	fill(blk, LBS, 11);
	memset(data, 0xee, LBS);
	CHECK_GOOD(wr(&f, 0x2a, 99, 1, data));
	CHECK_GOOD(wr(&f, 0x2a, 100 + n, 1, data));
	CHECK_GOOD(write_same(&f, true, 0x00, 100, n, blk));
	for (uint32_t i = 0; i < n; i++)
		CHECK(!memcmp(f.m->data + (100ull + i) * LBS, blk, LBS));
	CHECK(!memcmp(f.m->data + 99ull * LBS, data, LBS));
	CHECK(!memcmp(f.m->data + (100ull + n) * LBS, data, LBS));
	c = rd(&f, 0x28, 100 + n - 1, 1);
	CHECK(!memcmp(c->din, blk, LBS));
	/* The data-out must be exactly one block. */
	{
		uint8_t cdb[10] = {0x41};
		scsi_put16(cdb + 7, 4);
		CHECK_SENSE(run(&f, cdb, 10, 2 * LBS, KURA_SCSI_WRITE, f.m->data, 2 * LBS),
			    SK_ILLEGAL_REQUEST, 0x0e, 0x03);
	}
	CHECK_SENSE(write_same(&f, true, 0x00, 0, SCSI_MAX_WS_LBAS + 1, blk), SK_ILLEGAL_REQUEST,
		    0x24, 0);
	CHECK_SENSE(write_same(&f, true, 0x10, 0, 1, blk), SK_ILLEGAL_REQUEST, 0x24, 0); /* ANCHOR */
	CHECK_SENSE(write_same(&f, true, 0x00, 16 * MIB / LBS, 1, blk), SK_ILLEGAL_REQUEST, 0x21, 0);
	fx_fini(&f);
}

TEST(test_scsi_write_same_zero_blocks_means_to_the_end)
{
	uint64_t nb = 16 * MIB / LBS;
	uint8_t blk[LBS];
	struct fx f;

	fx_init(&f, 16 * MIB, false, 1);
	fill(blk, LBS, 12);
	CHECK_GOOD(write_same(&f, true, 0, nb - 10, 0, blk));
	for (uint64_t i = nb - 10; i < nb; i++)
		CHECK(!memcmp(f.m->data + i * LBS, blk, LBS));
	/* More than MAXIMUM WRITE SAME LENGTH to the end: invalid field. */
	CHECK_SENSE(write_same(&f, false, 0, 0, 0, blk), SK_ILLEGAL_REQUEST, 0x24, 0);
	CHECK_SENSE(write_same(&f, false, 0, nb + 1, 0, blk), SK_ILLEGAL_REQUEST, 0x21, 0);
	fx_fini(&f);
}

/* ---- COMPARE AND WRITE, ORWRITE, VERIFY ---- */

static unsigned cdb_caw(uint8_t *cdb, uint64_t lba, uint8_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = 0x89;
	scsi_put64(cdb + 2, lba);
	cdb[13] = n;
	return 16;
}

static struct kura_scsi_cmd *caw(struct fx *f, uint64_t lba, uint8_t n, const uint8_t *cmp,
				 const uint8_t *newd)
{
	uint8_t cdb[16], *buf = malloc(2u * n * LBS + 1);
	struct kura_scsi_cmd *c;

	cdb_caw(cdb, lba, n);
	memcpy(buf, cmp, (size_t)n * LBS);
	memcpy(buf + (size_t)n * LBS, newd, (size_t)n * LBS);
	c = run(f, cdb, 16, 2u * n * LBS, KURA_SCSI_WRITE, buf, 2u * n * LBS);
	free(buf);
	return c;
}

TEST(test_scsi_compare_and_write_success_and_miscompare)
{
	uint8_t old[3 * LBS], neu[3 * LBS], other[3 * LBS];
	struct kura_scsi_cmd *c;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	fill(old, sizeof(old), 1);
	fill(neu, sizeof(neu), 2);
	CHECK_GOOD(wr(&f, 0x2a, 5, 3, old));
	CHECK_GOOD(caw(&f, 5, 3, old, neu));
	check_reads(&f, 5, 3, neu);
	/* The compare data now differs at byte 700: MISCOMPARE, offset in
	 * INFORMATION, blocks unchanged. */
	memcpy(other, neu, sizeof(other));
	other[700] ^= 0xff;
	c = caw(&f, 5, 3, other, old);
	CHECK_SENSE(c, SK_MISCOMPARE, 0x1d, 0);
	CHECK(c->sense[0] & 0x80);
	CHECK_EQ(scsi_be32(c->sense + 3), 700);
	check_reads(&f, 5, 3, neu);
	/* Zero blocks: GOOD, nothing read or written. */
	{
		uint8_t cdb[16];
		unsigned r = f.m->reads, w = f.m->writes;
		cdb_caw(cdb, 5, 0);
		CHECK_GOOD(run(&f, cdb, 16, 0, 0, NULL, 0));
		CHECK_EQ(f.m->reads, r);
		CHECK_EQ(f.m->writes, w);
	}
	CHECK_SENSE(caw(&f, MIB / LBS - 1, 2, old, neu), SK_ILLEGAL_REQUEST, 0x21, 0);
	{
		uint8_t big[2 * 9 * LBS] = {0}, cdb[16];
		cdb_caw(cdb, 0, 9); /* beyond MAXIMUM COMPARE AND WRITE LENGTH */
		CHECK_SENSE(run(&f, cdb, 16, sizeof(big), KURA_SCSI_WRITE, big, sizeof(big)),
			    SK_ILLEGAL_REQUEST, 0x24, 0);
	}
	fx_fini(&f);
}

/* WRITE (held at the backend), then COMPARE AND WRITE, then another WRITE,
 * all to the same blocks: the CAW reads only after the first write is done
 * and the second write lands only after the CAW has written. */
TEST(test_scsi_compare_and_write_is_atomic_against_writes)
{
	struct kura_scsi_cmd c1 = {0}, c2 = {0}, c3 = {0};
	uint8_t a[8 * LBS], b[8 * LBS], cw[2 * LBS], cdb[16];
	int d1, d2, d3;
	unsigned cl;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	memset(cw, 'a', LBS);
	memset(cw + LBS, 'c', LBS);
	f.m->hold = 1;
	cl = cdb_rw(cdb, 0x2a, 0, 8);
	memlu_start(f.m, &c1, &f.n, cdb, cl, sizeof(a), KURA_SCSI_WRITE, a, sizeof(a), &d1);
	turn(&f, 5);
	CHECK_EQ(f.m->writes, 1);
	cdb_caw(cdb, 3, 1);
	memlu_start(f.m, &c2, &f.n2, cdb, 16, sizeof(cw), KURA_SCSI_WRITE, cw, sizeof(cw), &d2);
	turn(&f, 5);
	CHECK_EQ(f.m->reads, 0); /* waits for the write in flight */
	cl = cdb_rw(cdb, 0x2a, 0, 8);
	memlu_start(f.m, &c3, &f.n, cdb, cl, sizeof(b), KURA_SCSI_WRITE, b, sizeof(b), &d3);
	turn(&f, 5);
	CHECK_EQ(f.m->writes, 1); /* waits behind the CAW (FIFO) */
	CHECK(!d1 && !d2 && !d3);
	f.m->hold = 0;
	memlu_release(f.m);
	wait_done(&f, &d1);
	wait_done(&f, &d2);
	wait_done(&f, &d3);
	CHECK_GOOD(&c1);
	CHECK_GOOD(&c2); /* it compared against 'a': it ran between the writes */
	CHECK_GOOD(&c3);
	CHECK(!memcmp(f.m->data, b, sizeof(b)));
	CHECK_EQ(f.m->writes, 3);
	free(c1.dout);
	free(c2.dout);
	free(c3.dout);
	kura_scsi_cmd_release(&c1);
	kura_scsi_cmd_release(&c2);
	kura_scsi_cmd_release(&c3);
	fx_fini(&f);
}

TEST(test_scsi_abort_of_a_command_waiting_on_a_caw_lock)
{
	struct kura_scsi_cmd c1 = {0}, c2 = {0}, c3 = {0};
	uint8_t a[8 * LBS], cw[2 * LBS], cdb[16];
	int d1, d2, d3;
	unsigned cl;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	memset(a, 'a', sizeof(a));
	memset(cw, 'a', sizeof(cw));
	f.m->hold = 1;
	cl = cdb_rw(cdb, 0x2a, 0, 8);
	memlu_start(f.m, &c1, &f.n, cdb, cl, sizeof(a), KURA_SCSI_WRITE, a, sizeof(a), &d1);
	turn(&f, 5);
	cdb_caw(cdb, 0, 1);
	memlu_start(f.m, &c2, &f.n, cdb, 16, sizeof(cw), KURA_SCSI_WRITE, cw, sizeof(cw), &d2);
	cl = cdb_rw(cdb, 0x2a, 0, 8);
	memlu_start(f.m, &c3, &f.n, cdb, cl, sizeof(a), KURA_SCSI_WRITE, a, sizeof(a), &d3);
	turn(&f, 5);
	CHECK(!d1 && !d2 && !d3);
	/* The CAW waits for the lock and the second write waits behind it:
	 * aborting them ends them at once, while the first write is still at
	 * the backend. */
	kura_scsi_abort(&c3);
	turn(&f, 3);
	CHECK(d3);
	CHECK_EQ(c3.status, KURA_SCSI_TASK_ABORTED);
	kura_scsi_abort(&c2);
	turn(&f, 3);
	CHECK(d2);
	CHECK_EQ(c2.status, KURA_SCSI_TASK_ABORTED);
	CHECK_EQ(c2.sense_len, 0);
	CHECK(!d1);
	CHECK_EQ(f.m->reads, 0);
	CHECK_EQ(f.m->writes, 1);
	/* A command at the backend ends when the backend answers. */
	kura_scsi_abort(&c1);
	turn(&f, 3);
	CHECK(!d1);
	f.m->hold = 0;
	memlu_release(f.m);
	wait_done(&f, &d1);
	CHECK_EQ(c1.status, KURA_SCSI_TASK_ABORTED);
	/* Nothing is left locked. */
	CHECK_GOOD(caw(&f, 0, 1, cw, cw + LBS));
	free(c1.dout);
	free(c2.dout);
	free(c3.dout);
	fx_fini(&f);
}

TEST(test_scsi_lu_reset_aborts_and_raises_unit_attention)
{
	struct kura_scsi_cmd c1 = {0};
	uint8_t a[8 * LBS] = {0}, cdb[16];
	unsigned cl;
	int d1;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	f.m->hold = 1;
	cl = cdb_rw(cdb, 0x2a, 0, 8);
	memlu_start(f.m, &c1, &f.n, cdb, cl, sizeof(a), KURA_SCSI_WRITE, a, sizeof(a), &d1);
	turn(&f, 5);
	kura_scsi_lu_reset(f.m->lu, &f.n2);
	f.m->hold = 0;
	memlu_release(f.m);
	wait_done(&f, &d1);
	CHECK_EQ(c1.status, KURA_SCSI_TASK_ABORTED);
	free(c1.dout);
	/* INQUIRY is neither blocked nor clears it; the next TUR reports it. */
	CHECK_GOOD(inquiry(&f, false, 0, 36));
	CHECK_SENSE(tur(&f, &f.n), SK_UNIT_ATTENTION, 0x29, 0x03);
	CHECK_GOOD(tur(&f, &f.n));
	CHECK_SENSE(tur(&f, &f.n2), SK_UNIT_ATTENTION, 0x29, 0x03);
	fx_fini(&f);
}

TEST(test_scsi_orwrite_ors_the_data)
{
	uint8_t x[4 * LBS], y[4 * LBS], want[4 * LBS];
	struct fx f;

	fx_init(&f, MIB, false, 1);
	memset(x, 0xa5, sizeof(x));
	memset(y, 0x5a, sizeof(y));
	y[3] = 0x00;
	for (unsigned i = 0; i < sizeof(want); i++)
		want[i] = x[i] | y[i];
	CHECK_GOOD(wr(&f, 0x2a, 9, 4, x));
	CHECK_GOOD(wr(&f, 0x8b, 9, 4, y));
	check_reads(&f, 9, 4, want);
	CHECK_SENSE(wr(&f, 0x8b, MIB / LBS - 1, 2, y), SK_ILLEGAL_REQUEST, 0x21, 0);
	fx_fini(&f);
}

static struct kura_scsi_cmd *verify(struct fx *f, uint8_t op, uint8_t bytchk, uint64_t lba,
				    uint32_t n, const uint8_t *data, uint32_t dlen)
{
	uint8_t cdb[16];
	unsigned cl = cdb_rw(cdb, op, lba, n);

	cdb[1] |= (uint8_t)(bytchk << 1);
	return run(f, cdb, cl, dlen, dlen ? KURA_SCSI_WRITE : 0, data, dlen);
}

TEST(test_scsi_verify_bytchk)
{
	uint8_t data[4 * LBS], pat[LBS];
	struct kura_scsi_cmd *c;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	fill(data, sizeof(data), 4);
	CHECK_GOOD(wr(&f, 0x2a, 20, 4, data));
	CHECK_GOOD(verify(&f, 0x2f, 0, 20, 4, NULL, 0));
	CHECK_GOOD(verify(&f, 0xaf, 1, 20, 4, data, sizeof(data)));
	data[1234] ^= 1;
	c = verify(&f, 0x8f, 1, 20, 4, data, sizeof(data));
	CHECK_SENSE(c, SK_MISCOMPARE, 0x1d, 0);
	CHECK(c->sense[0] & 0x80);
	CHECK_EQ(scsi_be32(c->sense + 3), 1234);
	/* BYTCHK 3: one block compared with every block. */
	memset(pat, 0x3c, LBS);
	for (int i = 0; i < 4; i++)
		memcpy(data + i * LBS, pat, LBS);
	CHECK_GOOD(wr(&f, 0x2a, 20, 4, data));
	CHECK_GOOD(verify(&f, 0x2f, 3, 20, 4, pat, LBS));
	CHECK_SENSE(verify(&f, 0x2f, 2, 20, 4, pat, LBS), SK_ILLEGAL_REQUEST, 0x24, 0);
	CHECK_SENSE(verify(&f, 0x2f, 0, MIB / LBS, 1, NULL, 0), SK_ILLEGAL_REQUEST, 0x21, 0);
	/* A medium error found while verifying. */
	f.m->fail_next = -EIO;
	CHECK_SENSE(verify(&f, 0x2f, 0, 20, 4, NULL, 0), SK_MEDIUM_ERROR, 0x11, 0);
	fx_fini(&f);
}

/* ---- write protection, unit attentions, residuals, errors ---- */

TEST(test_scsi_read_only_lu_refuses_every_write)
{
	uint8_t cdb[16], buf[2 * LBS] = {0}, p[24] = {0};
	static const uint8_t writes[] = {0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e, 0x8b};
	struct fx f;
	unsigned cl;

	fx_init(&f, MIB, true, 1);
	for (unsigned i = 0; i < sizeof(writes); i++)
		CHECK_SENSE(wr(&f, writes[i], 0, 1, buf), SK_DATA_PROTECT, 0x27, 0);
	CHECK_SENSE(write_same(&f, false, 0, 0, 1, buf), SK_DATA_PROTECT, 0x27, 0);
	CHECK_SENSE(write_same(&f, true, 0x08, 0, 1, buf), SK_DATA_PROTECT, 0x27, 0);
	CHECK_SENSE(caw(&f, 0, 1, buf, buf + LBS), SK_DATA_PROTECT, 0x27, 0);
	scsi_put16(p, 22);
	scsi_put16(p + 2, 16);
	scsi_put32(p + 16, 1);
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x42;
	scsi_put16(cdb + 7, sizeof(p));
	CHECK_SENSE(run(&f, cdb, 10, sizeof(p), KURA_SCSI_WRITE, p, sizeof(p)), SK_DATA_PROTECT,
		    0x27, 0);
	CHECK_EQ(f.m->writes + f.m->discards, 0);
	/* Reads are fine. */
	cl = cdb_rw(cdb, 0x28, 0, 1);
	CHECK_GOOD(run(&f, cdb, cl, LBS, KURA_SCSI_READ, NULL, 0));
	fx_fini(&f);
}

TEST(test_scsi_resize_raises_capacity_unit_attention)
{
	uint8_t cdb[16] = {0x25}, rs[6] = {0x03, 0, 0, 0, 18};
	struct kura_scsi_cmd *c;
	struct fx f;

	fx_init(&f, 4 * MIB, false, 1);
	kura_scsi_lu_resized(f.m->lu, 2 * MIB);
	/* INQUIRY and REPORT LUNS pass and leave it pending. */
	CHECK_GOOD(inquiry(&f, false, 0, 36));
	c = run(&f, cdb, 10, 8, KURA_SCSI_READ, NULL, 0);
	CHECK_SENSE(c, SK_UNIT_ATTENTION, 0x2a, 0x09);
	CHECK_EQ(c->din_len, 0);
	c = run(&f, cdb, 10, 8, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	CHECK_EQ(scsi_be32(c->din), 2 * MIB / LBS - 1);
	CHECK_SENSE(rd(&f, 0x28, 2 * MIB / LBS, 1), SK_ILLEGAL_REQUEST, 0x21, 0);
	/* The other nexus reads it through REQUEST SENSE, then nothing. */
	c = run_as(&f, &f.n2, rs, 6, 18, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[0], 0x70);
	CHECK_EQ(c->din[2] & 0x0f, SK_UNIT_ATTENTION);
	CHECK_EQ(c->din[12], 0x2a);
	CHECK_EQ(c->din[13], 0x09);
	c = run_as(&f, &f.n2, rs, 6, 18, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[2] & 0x0f, SK_NO_SENSE);
	CHECK_GOOD(tur(&f, &f.n2));
	/* A nexus that is gone has nothing pending when it comes back. */
	kura_scsi_lu_resized(f.m->lu, 4 * MIB);
	kura_scsi_nexus_gone(f.m->lu, &f.n2);
	kura_scsi_nexus_new(f.m->lu, &f.n2);
	CHECK_GOOD(tur(&f, &f.n2));
	fx_fini(&f);
}

TEST(test_scsi_residual_overflow_and_underflow)
{
	uint8_t data[4 * LBS], cdb[16], old[2 * LBS];
	struct kura_scsi_cmd *c;
	unsigned cl;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	fill(data, sizeof(data), 21);
	CHECK_GOOD(wr(&f, 0x2a, 0, 4, data));
	/* READ of 2 blocks, initiator expects 1: one block sent, overflow. */
	cl = cdb_rw(cdb, 0x28, 0, 2);
	c = run(&f, cdb, cl, LBS, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	CHECK_EQ(c->din_len, LBS);
	CHECK(c->overflow && !c->underflow);
	CHECK_EQ(c->residual, LBS);
	CHECK(!memcmp(c->din, data, LBS));
	/* READ of 1 block, initiator expects 3: underflow. */
	cl = cdb_rw(cdb, 0x28, 0, 1);
	c = run(&f, cdb, cl, 3 * LBS, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	CHECK_EQ(c->din_len, LBS);
	CHECK(c->underflow && !c->overflow);
	CHECK_EQ(c->residual, 2 * LBS);

	/* WRITE of 2 blocks with 1 block of data: only that block is written. */
	memcpy(old, data, sizeof(old));
	memset(data, 'w', sizeof(data));
	cl = cdb_rw(cdb, 0x2a, 0, 2);
	c = run(&f, cdb, cl, LBS, KURA_SCSI_WRITE, data, LBS);
	CHECK_GOOD(c);
	CHECK(c->overflow);
	CHECK_EQ(c->residual, LBS);
	CHECK(!memcmp(f.m->data, data, LBS));
	CHECK(!memcmp(f.m->data + LBS, old + LBS, LBS));
	/* WRITE of 1 block with 2 blocks of data: one written, underflow. */
	cl = cdb_rw(cdb, 0x2a, 2, 1);
	c = run(&f, cdb, cl, 2 * LBS, KURA_SCSI_WRITE, data, 2 * LBS);
	CHECK_GOOD(c);
	CHECK(c->underflow);
	CHECK_EQ(c->residual, LBS);
	/* Part of a block: refused, and the residual still says so. */
	c = run(&f, cdb, cl, 200, KURA_SCSI_WRITE, data, 200);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x0e, 0x03);
	CHECK(c->overflow);
	CHECK_EQ(c->residual, LBS - 200);
	/* No data at all for a 1-block write: GOOD, nothing written. */
	c = run(&f, cdb, cl, 0, KURA_SCSI_WRITE, NULL, 0);
	CHECK_GOOD(c);
	CHECK(c->overflow);
	CHECK_EQ(c->residual, LBS);
	fx_fini(&f);
}

TEST(test_scsi_backend_errors_map_to_sense)
{
	uint8_t data[8 * LBS] = {0};
	struct fx f;

	fx_init(&f, MIB, false, 1);
	f.m->fail_next = -EIO;
	CHECK_SENSE(rd(&f, 0x28, 0, 8), SK_MEDIUM_ERROR, 0x11, 0);
	CHECK_EQ(f.c.din_len, 0); /* no half-read buffer goes out */
	f.m->fail_next = -EIO;
	CHECK_SENSE(wr(&f, 0x2a, 0, 8, data), SK_MEDIUM_ERROR, 0x0c, 0);
	f.m->fail_next = -ENOSPC;
	CHECK_SENSE(wr(&f, 0x2a, 0, 8, data), SK_DATA_PROTECT, 0x27, 0x07);
	f.m->fail_next = -EPROTO;
	CHECK_SENSE(wr(&f, 0x2a, 0, 8, data), SK_HARDWARE_ERROR, 0x44, 0);
	/* A partial-block write fails in its read half too. */
	f.m->fail_next = -EIO;
	CHECK_SENSE(wr(&f, 0x2a, 1, 1, data), SK_MEDIUM_ERROR, 0x0c, 0);
	CHECK_GOOD(wr(&f, 0x2a, 0, 8, data));
	fx_fini(&f);
}

TEST(test_scsi_sync_cache_and_prefetch)
{
	uint8_t cdb[16] = {0x35};
	struct fx f;

	fx_init(&f, MIB, false, 1);
	CHECK_GOOD(run(&f, cdb, 10, 0, 0, NULL, 0));
	CHECK_EQ(f.m->flushes, 1);
	cdb[0] = 0x91;
	scsi_put64(cdb + 2, MIB / LBS);
	scsi_put32(cdb + 10, 1);
	CHECK_SENSE(run(&f, cdb, 16, 0, 0, NULL, 0), SK_ILLEGAL_REQUEST, 0x21, 0);
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x34;
	scsi_put16(cdb + 7, 8);
	CHECK_GOOD(run(&f, cdb, 10, 0, 0, NULL, 0));
	scsi_put32(cdb + 2, MIB / LBS - 4);
	CHECK_SENSE(run(&f, cdb, 10, 0, 0, NULL, 0), SK_ILLEGAL_REQUEST, 0x21, 0);
	fx_fini(&f);
}

TEST(test_scsi_get_lba_status_beyond_the_end)
{
	struct fx f;

	fx_init(&f, MIB, false, 1);
	CHECK_GOOD(get_lba_status(&f, MIB / LBS - 1, 24));
	CHECK_SENSE(get_lba_status(&f, MIB / LBS, 24), SK_ILLEGAL_REQUEST, 0x21, 0);
	fx_fini(&f);
}

/* ---- REPORT SUPPORTED OPERATION CODES against what exec accepts ---- */

static bool invalid_opcode(const struct kura_scsi_cmd *c)
{
	return c->status == KURA_SCSI_CHECK_CONDITION && memlu_sk(c) == SK_ILLEGAL_REQUEST &&
	       memlu_asc(c) == 0x20;
}

/* The opcode (and service action) alone, everything else zero, on a fresh
 * LU so no command's side effects reach the next. */
static bool accepted(uint8_t op, int sa, unsigned cdb_len)
{
	uint8_t cdb[16] = {op};
	struct fx f;
	bool ok;

	if (sa >= 0)
		cdb[1] = (uint8_t)sa;
	fx_init(&f, MIB, false, 1);
	ok = !invalid_opcode(run(&f, cdb, cdb_len, 0, 0, NULL, 0));
	fx_fini(&f);
	return ok;
}

TEST(test_scsi_report_supported_opcodes_matches_exec)
{
	uint8_t cdb[12] = {0xa3, 0x0c}, listed[256] = {0};
	struct kura_scsi_cmd *c;
	uint32_t len;
	unsigned count = 0;
	struct fx f;

	fx_init(&f, MIB, false, 1);
	scsi_put32(cdb + 6, 8192);
	c = run(&f, cdb, 12, 8192, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	len = scsi_be32(c->din) + 4;
	CHECK(len <= c->din_len);
	for (uint32_t o = 4; o + 8 <= len; o += 8, count++) {
		const uint8_t *d = c->din + o;
		bool has_sa = d[5] & 1;

		CHECK(!(d[5] & 2)); /* no timeouts descriptor unless RCTD */
		listed[d[0]] = 1;
		CHECK(accepted(d[0], has_sa ? scsi_be16(d + 2) : -1, scsi_be16(d + 6)));
	}
	CHECK(count >= 50);
	/* ORWRITE and the PR/XCOPY opcodes are there. */
	CHECK(listed[0x8b] && listed[0x5e] && listed[0x5f] && listed[0x83] && listed[0x84]);
	/* Every opcode that is not listed is an INVALID COMMAND OPERATION CODE. */
	for (unsigned op = 0; op < 256; op++)
		if (!listed[op])
			CHECK(!accepted((uint8_t)op, -1, 16));

	/* One command, with the timeouts descriptor. */
	cdb[2] = 0x80 | 0x01;
	cdb[3] = 0x2a;
	c = run(&f, cdb, 12, 8192, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[1] & 0x87, 0x83); /* CTDP, supported */
	CHECK_EQ(scsi_be16(c->din + 2), 10);
	CHECK_EQ(c->din[4], 0x2a);
	CHECK_EQ(scsi_be16(c->din + 4 + 10), 0x0a);
	cdb[3] = 0x5e; /* has service actions: reporting option 1 is invalid */
	CHECK_SENSE(run(&f, cdb, 12, 8192, KURA_SCSI_READ, NULL, 0), SK_ILLEGAL_REQUEST, 0x24, 0);
	cdb[2] = 0x02;
	cdb[4] = 0;
	cdb[5] = 0x03;
	c = run(&f, cdb, 12, 8192, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[1] & 7, 3);
	cdb[2] = 0x01;
	cdb[3] = 0x04; /* FORMAT UNIT: not supported */
	c = run(&f, cdb, 12, 8192, KURA_SCSI_READ, NULL, 0);
	CHECK_GOOD(c);
	CHECK_EQ(c->din[1] & 7, 1);
	fx_fini(&f);
}
