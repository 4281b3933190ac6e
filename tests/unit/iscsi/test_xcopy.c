/* EXTENDED COPY and RECEIVE COPY RESULTS (xcopy.c) on memory LUs: copies
 * within a LU and between two LUs found through the lookup function, zero
 * chunks deallocated, overlapping ranges, every refusal of the parameter
 * list with its sense, read-only and reserved destinations, backend errors,
 * aborts, and the copy manager's operating parameters and copy status. */
#include "iscsi-target/scsi_int.h"
#include "tests/unit/harness.h"
#include "tests/unit/iscsi/memlu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LBS KURA_SCSI_LBS
#define LU_SIZE (64u << 20)
#define NBLOCKS (LU_SIZE / LBS)

/* Two LUs that find each other by NAA, and two nexuses. */
struct fx {
	struct kura_loop *loop;
	struct memlu *m1, *m2;
	uint8_t naa1[16], naa2[16];
	struct kura_scsi_nexus a, b;
	struct kura_scsi_cmd cmd;
};

static struct kura_scsi_lu *lookup(void *ctx, const uint8_t naa[16])
{
	struct fx *f = ctx;

	if (!memcmp(naa, f->naa1, 16))
		return f->m1->lu;
	if (f->m2 && !memcmp(naa, f->naa2, 16))
		return f->m2->lu;
	return NULL;
}

static void fx_init(struct fx *f, bool ro2)
{
	memset(f, 0, sizeof(*f));
	CHECK_EQ(kura_loop_create(&f->loop, 64), 0);
	f->m1 = memlu_new(f->loop, LU_SIZE, false, 0x101, "vd1", NULL);
	f->m2 = memlu_new(f->loop, LU_SIZE, ro2, 0x202, "vd2", NULL);
	kura_scsi_lu_naa(f->m1->lu, f->naa1);
	kura_scsi_lu_naa(f->m2->lu, f->naa2);
	CHECK(memcmp(f->naa1, f->naa2, 16));
	/* What blockd's portal passes in kura_scsi_lu_opts; memlu_new has no
	 * parameter for it, and the LU reads it only when a copy starts. */
	f->m1->lu->o.lookup = lookup;
	f->m1->lu->o.lookup_ctx = f;
	f->m2->lu->o.lookup = lookup;
	f->m2->lu->o.lookup_ctx = f;
	memlu_nexus(&f->a, 1, "iqn.2026-11.test:esx-a", 1);
	memlu_nexus(&f->b, 2, "iqn.2026-11.test:esx-b", 2);
	kura_scsi_nexus_new(f->m1->lu, &f->a);
	kura_scsi_nexus_new(f->m1->lu, &f->b);
	kura_scsi_nexus_new(f->m2->lu, &f->a);
	kura_scsi_nexus_new(f->m2->lu, &f->b);
}

static void fx_fini(struct fx *f)
{
	kura_scsi_cmd_release(&f->cmd);
	memlu_free(f->m1);
	if (f->m2)
		memlu_free(f->m2);
	kura_loop_destroy(f->loop);
}

#define CHECK_GOOD(c) CHECK_EQ((c)->status, KURA_SCSI_GOOD)
#define CHECK_SENSE(cx, k, a, q)                                 \
	do {                                                     \
		const struct kura_scsi_cmd *c_ = (cx);           \
		CHECK_EQ(c_->status, KURA_SCSI_CHECK_CONDITION); \
		CHECK_EQ(memlu_sk(c_), k);                       \
		CHECK_EQ(memlu_asc(c_), a);                      \
		CHECK_EQ(memlu_ascq(c_), q);                     \
	} while (0)
#define CHECK_PARAM_PTR(c, field)                          \
	do {                                               \
		CHECK_EQ((c)->sense[15] & 0xc0, 0x80);     \
		CHECK_EQ(scsi_be16((c)->sense + 16), field); \
	} while (0)

/* An EXTENDED COPY parameter list: CSCD descriptors first, then segments. */
struct plist {
	uint8_t b[8192];
	uint32_t tdl, sdl, len;
};

static void pl_init(struct plist *p, uint8_t list_id, uint8_t usage)
{
	memset(p, 0, sizeof(*p));
	p->b[0] = list_id;
	p->b[1] = (uint8_t)(usage << 3);
}

/* An identification CSCD descriptor (0xE4) naming naa. */
static uint8_t *pl_cscd(struct plist *p, const uint8_t naa[16])
{
	uint8_t *d = p->b + 16 + p->tdl;

	CHECK(!p->sdl);
	d[0] = 0xe4;
	d[4] = 0x01;       /* binary */
	d[5] = 0x03;       /* LU association, NAA */
	d[7] = 16;
	memcpy(d + 8, naa, 16);
	d[30] = LBS >> 8;  /* disk block length */
	d[31] = LBS & 0xff;
	p->tdl += 32;
	return d;
}

/* A block-to-block segment descriptor (0x02). */
static uint8_t *pl_seg(struct plist *p, uint16_t si, uint16_t di, uint16_t nb, uint64_t slba,
		       uint64_t dlba)
{
	uint8_t *d = p->b + 16 + p->tdl + p->sdl;

	d[0] = 0x02;
	scsi_put16(d + 2, 0x18);
	scsi_put16(d + 4, si);
	scsi_put16(d + 6, di);
	scsi_put16(d + 10, nb);
	scsi_put64(d + 12, slba);
	scsi_put64(d + 20, dlba);
	p->sdl += 28;
	return d;
}

static void pl_done(struct plist *p)
{
	scsi_put16(p->b + 2, (uint16_t)p->tdl);
	scsi_put32(p->b + 8, p->sdl);
	p->len = 16 + p->tdl + p->sdl;
}

static struct kura_scsi_cmd *xcopy_len(struct fx *f, struct memlu *m,
				       const struct kura_scsi_nexus *n, const struct plist *p,
				       uint32_t len)
{
	uint8_t cdb[16] = {0x83};

	scsi_put32(cdb + 10, len);
	memlu_run(m, &f->cmd, n, cdb, 16, len, KURA_SCSI_WRITE, p->b, len);
	return &f->cmd;
}

static struct kura_scsi_cmd *xcopy(struct fx *f, struct memlu *m, const struct plist *p)
{
	return xcopy_len(f, m, &f->a, p, p->len);
}

static struct kura_scsi_cmd *copy_results(struct fx *f, struct memlu *m,
					  const struct kura_scsi_nexus *n, uint8_t sa,
					  uint8_t list_id, uint32_t alloc)
{
	uint8_t cdb[16] = {0x84, sa, list_id};

	scsi_put32(cdb + 10, alloc);
	memlu_run(m, &f->cmd, n, cdb, 16, alloc, KURA_SCSI_READ, NULL, 0);
	return &f->cmd;
}

static void fill(struct memlu *m, uint64_t lba, uint64_t n, uint32_t seed)
{
	for (uint64_t i = 0; i < n * LBS; i += 4) {
		uint32_t v = seed ^ (uint32_t)((lba * LBS + i) * 2654435761u);

		memcpy(m->data + lba * LBS + i, &v, 4);
	}
	memset(m->mapped + lba * LBS / KURA_SCSI_PBS, 1,
	       (n * LBS + KURA_SCSI_PBS - 1) / KURA_SCSI_PBS);
}

static bool same(struct memlu *a, uint64_t alba, struct memlu *b, uint64_t blba, uint64_t n)
{
	return !memcmp(a->data + alba * LBS, b->data + blba * LBS, n * LBS);
}

TEST(test_xcopy_copies_within_a_lu)
{
	struct fx f;
	struct plist p;
	uint8_t before[LBS];

	fx_init(&f, false);
	fill(f.m1, 0, 2048, 1);
	memcpy(before, f.m1->data + 99999 * LBS, LBS);
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 2048, 0, 100000); /* 1 MiB, not 4 KiB aligned */
	pl_seg(&p, 0, 0, 7, 3, NBLOCKS - 7);   /* up to the last block */
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	CHECK(same(f.m1, 0, f.m1, 100000, 2048));
	CHECK(same(f.m1, 3, f.m1, NBLOCKS - 7, 7));
	CHECK(!memcmp(before, f.m1->data + 99999 * LBS, LBS)); /* nothing around it */
	fx_fini(&f);
}

TEST(test_xcopy_copies_between_lus)
{
	struct fx f;
	struct plist p;

	fx_init(&f, false);
	fill(f.m1, 1000, 20000, 2);    /* ~10 MiB: several chunks in flight */
	/* pushed: the command goes to the source LU */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 0, 1, 20000, 1000, 5000);
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	CHECK(same(f.m1, 1000, f.m2, 5000, 20000));
	CHECK(f.m2->writes >= 10);
	/* pulled: the command goes to the destination LU, CSCDs in the other order */
	fill(f.m1, 60000, 100, 3);
	pl_init(&p, 2, 0);
	pl_cscd(&p, f.naa2);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 1, 0, 100, 60000, 40000);
	pl_seg(&p, 1, 0, 100, 60000, 40200);
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m2, &p));
	CHECK(same(f.m1, 60000, f.m2, 40000, 100));
	CHECK(same(f.m1, 60000, f.m2, 40200, 100));
	fx_fini(&f);
}

TEST(test_xcopy_own_naa_without_lookup)
{
	struct fx f;
	struct plist p;

	fx_init(&f, false);
	f.m1->lu->o.lookup = NULL;
	fill(f.m1, 0, 64, 4);
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 64, 0, 512);
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	CHECK(same(f.m1, 0, f.m1, 512, 64));
	/* the other LU is unknown without the lookup */
	pl_init(&p, 2, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 0, 1, 64, 0, 512);
	pl_done(&p);
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_COPY_ABORTED, 0x08, 0x04);
	fx_fini(&f);
}

TEST(test_xcopy_zero_chunks_are_deallocated)
{
	struct fx f;
	struct plist p;
	static const uint8_t zero[LBS];

	fx_init(&f, false);
	fill(f.m2, 0, 8192, 5);        /* the destination has data */
	fill(f.m1, 4096, 8, 6);        /* source: 2 MiB of zeros, then data */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 0, 1, 4104, 0, 0);
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	CHECK(same(f.m1, 0, f.m2, 0, 4104));
	CHECK(f.m2->discards >= 2);
	for (uint64_t b = 0; b < 4096 * LBS / KURA_SCSI_PBS; b++)
		CHECK_EQ(f.m2->mapped[b], 0);   /* deallocated, reads as zeros */
	CHECK(!memcmp(f.m2->data + 100 * LBS, zero, LBS));
	CHECK_EQ(f.m2->mapped[4096 * LBS / KURA_SCSI_PBS], 1);
	fx_fini(&f);
}

TEST(test_xcopy_overlapping_ranges_copy_like_memmove)
{
	/* ~10 MiB: more chunks than run at once, so a careless pipeline would
	 * read what it has just written. */
	enum { N = 20000, SHIFT = 1000 };
	struct fx f;
	struct plist p;
	uint8_t *want = malloc((size_t)N * LBS);

	CHECK(want);
	fx_init(&f, false);
	/* destination after the source */
	fill(f.m1, 0, N + SHIFT, 7);
	memcpy(want, f.m1->data, (size_t)N * LBS);
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, N, 0, SHIFT);
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	CHECK(!memcmp(f.m1->data + SHIFT * LBS, want, (size_t)N * LBS));
	/* destination before the source */
	fill(f.m1, 0, N + SHIFT, 8);
	memcpy(want, f.m1->data + SHIFT * LBS, (size_t)N * LBS);
	pl_init(&p, 2, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, N, SHIFT, 0);
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	CHECK(!memcmp(f.m1->data, want, (size_t)N * LBS));
	free(want);
	fx_fini(&f);
}

TEST(test_xcopy_parameter_list_refusals)
{
	struct fx f;
	struct plist p;
	struct kura_scsi_cmd *c;

	fx_init(&f, false);
	/* no parameter list: GOOD, nothing done */
	pl_init(&p, 1, 0);
	CHECK_GOOD(xcopy_len(&f, f.m1, &f.a, &p, 0));
	/* shorter than the header, or than the lengths it gives */
	CHECK_SENSE(xcopy_len(&f, f.m1, &f.a, &p, 15), SK_ILLEGAL_REQUEST, 0x1a, 0x00);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 8, 0, 8);
	pl_done(&p);
	CHECK_SENSE(xcopy_len(&f, f.m1, &f.a, &p, 16 + 32 - 1), SK_ILLEGAL_REQUEST, 0x1a, 0x00);
	CHECK_SENSE(xcopy_len(&f, f.m1, &f.a, &p, p.len - 1), SK_ILLEGAL_REQUEST, 0x1a, 0x00);
	/* LIST ID USAGE 01b is reserved */
	p.b[1] = 1 << 3;
	c = xcopy(&f, f.m1, &p);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x00);
	CHECK_PARAM_PTR(c, 1);
	p.b[1] = 0;
	/* inline data is not taken */
	scsi_put32(p.b + 12, 4);
	CHECK_SENSE(xcopy_len(&f, f.m1, &f.a, &p, p.len + 4), SK_ILLEGAL_REQUEST, 0x26, 0x0b);
	scsi_put32(p.b + 12, 0);
	/* 17 CSCDs */
	pl_init(&p, 1, 0);
	for (int i = 0; i < 17; i++)
		pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 8, 0, 8);
	pl_done(&p);
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_ILLEGAL_REQUEST, 0x26, 0x06);
	/* 65 segments */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	for (int i = 0; i < 65; i++)
		pl_seg(&p, 0, 0, 8, 0, 8);
	pl_done(&p);
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_ILLEGAL_REQUEST, 0x26, 0x08);
	/* too many of both and longer than the maximum list: a length error */
	pl_init(&p, 1, 0);
	for (int i = 0; i < 17; i++)
		pl_cscd(&p, f.naa1);
	for (int i = 0; i < 65; i++)
		pl_seg(&p, 0, 0, 8, 0, 8);
	pl_done(&p);
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_ILLEGAL_REQUEST, 0x1a, 0x00);
	/* a Fibre Channel CSCD descriptor, a stream segment descriptor */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1)[0] = 0xe0;
	pl_seg(&p, 0, 0, 8, 0, 8);
	pl_done(&p);
	c = xcopy(&f, f.m1, &p);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x07);
	CHECK_PARAM_PTR(c, 16);
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 8, 0, 8);
	pl_seg(&p, 0, 0, 8, 0, 8)[0] = 0x03;
	pl_done(&p);
	c = xcopy(&f, f.m1, &p);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x09);
	CHECK_PARAM_PTR(c, 16 + 32 + 28);
	/* a segment descriptor of the wrong length */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	scsi_put16(pl_seg(&p, 0, 0, 8, 0, 8) + 2, 0x14);
	pl_done(&p);
	c = xcopy(&f, f.m1, &p);
	CHECK_EQ(c->status, KURA_SCSI_CHECK_CONDITION);
	CHECK_EQ(memlu_sk(c), SK_ILLEGAL_REQUEST);
	/* ... also when the list's lengths add up around it */
	scsi_put16(p.b + 16 + 32 + 2, 0x14);
	scsi_put32(p.b + 8, 24);
	c = xcopy_len(&f, f.m1, &f.a, &p, 16 + 32 + 24);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x00);
	CHECK_PARAM_PTR(c, 16 + 32 + 2);
	/* a block length that is not the LU's */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1)[30] = 0x10; /* 4096 */
	pl_seg(&p, 0, 0, 8, 0, 8);
	pl_done(&p);
	c = xcopy(&f, f.m1, &p);
	CHECK_SENSE(c, SK_ILLEGAL_REQUEST, 0x26, 0x00);
	CHECK_PARAM_PTR(c, 16 + 29);
	/* LID4 (service action 1) is not offered */
	{
		uint8_t cdb[16] = {0x83, 0x01};

		memlu_run(f.m1, &f.cmd, &f.a, cdb, 16, 0, 0, NULL, 0);
		CHECK_SENSE(&f.cmd, SK_ILLEGAL_REQUEST, 0x24, 0x00);
	}
	/* nothing was copied by any of these */
	CHECK_EQ(f.m1->writes, 0);
	CHECK_EQ(f.m1->discards, 0);
	fx_fini(&f);
}

TEST(test_xcopy_unreachable_and_out_of_range)
{
	struct fx f;
	struct plist p;
	struct kura_scsi_cmd *c;
	uint8_t other[16];

	fx_init(&f, false);
	/* an NAA no LU has */
	memcpy(other, f.naa1, 16);
	other[15] ^= 0x5a;
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, other);
	pl_seg(&p, 0, 1, 8, 0, 8);
	pl_done(&p);
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_COPY_ABORTED, 0x08, 0x04);
	/* a designator that is not an NAA one */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1)[5] = 0x02; /* EUI-64 */
	pl_seg(&p, 0, 0, 8, 0, 8);
	pl_done(&p);
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_COPY_ABORTED, 0x08, 0x04);
	/* a segment naming a CSCD that is not there */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 1, 8, 0, 8);
	pl_done(&p);
	c = xcopy(&f, f.m1, &p);
	CHECK_SENSE(c, SK_COPY_ABORTED, 0x08, 0x04);
	CHECK_EQ(scsi_be32(c->sense + 8), 16 + 32); /* the segment descriptor's offset */
	/* one block past the end of the destination, then of the source */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 2048, 0, NBLOCKS - 2047);
	pl_done(&p);
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_COPY_ABORTED, 0x00, 0x00);
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 2, NBLOCKS - 1, 0);
	pl_done(&p);
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_COPY_ABORTED, 0x00, 0x00);
	/* exactly to the end, and zero blocks: fine */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 2048, 0, NBLOCKS - 2048);
	pl_seg(&p, 0, 0, 0, NBLOCKS, NBLOCKS);
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	/* a later bad segment stops the copy before any data moves */
	f.m1->writes = 0;
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 8, 0, 8);
	pl_seg(&p, 0, 0, 8, 0, NBLOCKS);
	pl_done(&p);
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_COPY_ABORTED, 0x00, 0x00);
	CHECK_EQ(f.m1->writes, 0);
	fx_fini(&f);
}

TEST(test_xcopy_read_only_destination)
{
	struct fx f;
	struct plist p;

	fx_init(&f, true); /* vd2 is a snapshot */
	fill(f.m2, 0, 64, 9);
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 0, 1, 64, 0, 0);
	pl_done(&p);
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_DATA_PROTECT, 0x27, 0x00);
	CHECK_EQ(f.m2->writes, 0);
	/* reading from it is fine */
	pl_init(&p, 2, 0);
	pl_cscd(&p, f.naa2);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 1, 64, 0, 128);
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	CHECK(same(f.m2, 0, f.m1, 128, 64));
	fx_fini(&f);
}

TEST(test_xcopy_honours_reservations_on_the_other_lu)
{
	struct fx f;
	struct plist p;
	uint8_t cdb[10] = {0x5f, 6}, pl[24] = {0};
	uint8_t res[10] = {0x5f, 1, 3}, pr[24] = {0};

	fx_init(&f, false);
	/* b registers on vd2 and reserves it Exclusive Access */
	scsi_put32(cdb + 5, 24);
	scsi_put64(pl + 8, 0xb);
	memlu_run(f.m2, &f.cmd, &f.b, cdb, 10, 24, KURA_SCSI_WRITE, pl, 24);
	CHECK_GOOD(&f.cmd);
	scsi_put32(res + 5, 24);
	scsi_put64(pr, 0xb);
	memlu_run(f.m2, &f.cmd, &f.b, res, 10, 24, KURA_SCSI_WRITE, pr, 24);
	CHECK_GOOD(&f.cmd);
	/* a may not read or write vd2 through a copy sent to vd1 */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 0, 1, 8, 0, 0);
	pl_done(&p);
	CHECK_EQ(xcopy(&f, f.m1, &p)->status, KURA_SCSI_RESERVATION_CONFLICT);
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 1, 0, 8, 0, 0);
	pl_done(&p);
	CHECK_EQ(xcopy(&f, f.m1, &p)->status, KURA_SCSI_RESERVATION_CONFLICT);
	/* b may */
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 0, 1, 8, 0, 0);
	pl_done(&p);
	CHECK_GOOD(xcopy_len(&f, f.m1, &f.b, &p, p.len));
	fx_fini(&f);
}

TEST(test_xcopy_backend_errors)
{
	struct fx f;
	struct plist p;

	fx_init(&f, false);
	pl_init(&p, 3, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 0, 1, 64, 0, 0);
	pl_done(&p);
	f.m1->fail_next = -EIO;
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_COPY_ABORTED, 0x11, 0x00);
	/* held status: completed with errors */
	CHECK_GOOD(copy_results(&f, f.m1, &f.a, 0x00, 3, 64));
	CHECK_EQ(f.cmd.din[4], 0x02);
	fill(f.m1, 0, 64, 10);
	f.m2->fail_next = -EIO;
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_COPY_ABORTED, 0x0c, 0x00);
	f.m2->fail_next = -ENOSPC;
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_DATA_PROTECT, 0x27, 0x07);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	CHECK(same(f.m1, 0, f.m2, 0, 64));
	CHECK_GOOD(copy_results(&f, f.m1, &f.a, 0x00, 3, 64));
	CHECK_EQ(f.cmd.din[4], 0x01);
	fx_fini(&f);
}

TEST(test_xcopy_operating_parameters)
{
	struct fx f;
	struct kura_scsi_cmd *c;
	const uint8_t *d;

	fx_init(&f, false);
	c = copy_results(&f, f.m1, &f.a, 0x03, 0, 1024);
	CHECK_GOOD(c);
	d = c->din;
	CHECK_EQ(c->din_len, 46);
	CHECK_EQ(scsi_be32(d), 42);                /* available data */
	CHECK_EQ(d[4] & 1, 1);                     /* SNLID */
	CHECK_EQ(scsi_be16(d + 8), 16);            /* CSCD descriptors */
	CHECK_EQ(scsi_be16(d + 10), 64);           /* segment descriptors */
	CHECK_EQ(scsi_be32(d + 12), 16 * 32 + 64 * 28);
	CHECK_EQ(scsi_be32(d + 16), 0xffffu * LBS); /* maximum segment length */
	CHECK_EQ(scsi_be32(d + 20), 0);            /* inline data */
	CHECK_EQ(scsi_be32(d + 24), 0);            /* held data */
	CHECK(scsi_be16(d + 34) >= 1);
	CHECK(d[36] >= 1);
	CHECK_EQ(d[43], 2);
	CHECK_EQ(d[44], 0x02);
	CHECK_EQ(d[45], 0xe4);
	/* cut by the allocation length */
	c = copy_results(&f, f.m1, &f.a, 0x03, 0, 10);
	CHECK_GOOD(c);
	CHECK_EQ(c->din_len, 10);
	CHECK_EQ(scsi_be32(c->din), 42);
	/* service actions that hold nothing here */
	CHECK_SENSE(copy_results(&f, f.m1, &f.a, 0x01, 0, 1024), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	CHECK_SENSE(copy_results(&f, f.m1, &f.a, 0x04, 0, 1024), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	fx_fini(&f);
}

TEST(test_xcopy_copy_status)
{
	struct fx f;
	struct plist p;
	struct kura_scsi_cmd *c;

	fx_init(&f, false);
	CHECK_SENSE(copy_results(&f, f.m1, &f.a, 0x00, 5, 1024), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	pl_init(&p, 5, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 16, 0, 100);
	pl_seg(&p, 0, 0, 16, 0, 200);
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	c = copy_results(&f, f.m1, &f.a, 0x00, 5, 1024);
	CHECK_GOOD(c);
	CHECK_EQ(c->din_len, 12);
	CHECK_EQ(scsi_be32(c->din), 8);
	CHECK_EQ(c->din[4], 0x01);                 /* completed without errors */
	CHECK_EQ(scsi_be16(c->din + 5), 2);        /* segments processed */
	CHECK_EQ(c->din[7], 0x00);                 /* in bytes */
	CHECK_EQ(scsi_be32(c->din + 8), 32 * LBS);
	/* another nexus's list ids are its own */
	CHECK_SENSE(copy_results(&f, f.m1, &f.b, 0x00, 5, 1024), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* another LU knows nothing of it */
	CHECK_SENSE(copy_results(&f, f.m2, &f.a, 0x00, 5, 1024), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* LIST ID USAGE 10b and 11b: nothing held */
	pl_init(&p, 6, 2);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 16, 0, 100);
	pl_done(&p);
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	CHECK_SENSE(copy_results(&f, f.m1, &f.a, 0x00, 6, 1024), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	p.b[0] = 0;
	p.b[1] = 3 << 3;
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	CHECK_SENSE(copy_results(&f, f.m1, &f.a, 0x00, 0, 1024), SK_ILLEGAL_REQUEST, 0x24, 0x00);
	fx_fini(&f);
}

TEST(test_xcopy_in_progress_status_and_duplicate_list_id)
{
	struct fx f;
	struct plist p;
	struct kura_scsi_cmd c1 = {0};
	uint8_t cdb[16] = {0x83};
	int done = 0;

	fx_init(&f, false);
	fill(f.m1, 0, 4096, 11);
	pl_init(&p, 9, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 0, 1, 4096, 0, 0);
	pl_done(&p);
	scsi_put32(cdb + 10, p.len);
	f.m1->hold = 1;
	memlu_start(f.m1, &c1, &f.a, cdb, 16, p.len, KURA_SCSI_WRITE, p.b, p.len, &done);
	for (int i = 0; i < 10; i++)
		kura_loop_run_once(f.loop, 0);
	CHECK(!done);
	/* status while it runs */
	CHECK_GOOD(copy_results(&f, f.m1, &f.a, 0x00, 9, 64));
	CHECK_EQ(f.cmd.din[4], 0x00);
	/* the same list id from the same nexus: OPERATION IN PROGRESS */
	CHECK_SENSE(xcopy(&f, f.m1, &p), SK_ILLEGAL_REQUEST, 0x00, 0x16);
	f.m1->hold = 0;
	memlu_release(f.m1);
	while (!done)
		kura_loop_run_once(f.loop, 1000000000ULL);
	CHECK_GOOD(&c1);
	CHECK(same(f.m1, 0, f.m2, 0, 4096));
	free(c1.dout);
	kura_scsi_cmd_release(&c1);
	fx_fini(&f);
}

TEST(test_xcopy_abort_stops_the_copy)
{
	struct fx f;
	struct plist p;
	struct kura_scsi_cmd c1 = {0};
	uint8_t cdb[16] = {0x83};
	int done = 0;

	fx_init(&f, false);
	fill(f.m1, 0, 60000, 12);
	pl_init(&p, 4, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 0, 1, 60000, 0, 0);
	pl_done(&p);
	scsi_put32(cdb + 10, p.len);
	f.m1->hold = 1;
	memlu_start(f.m1, &c1, &f.a, cdb, 16, p.len, KURA_SCSI_WRITE, p.b, p.len, &done);
	for (int i = 0; i < 10; i++)
		kura_loop_run_once(f.loop, 0);
	kura_scsi_abort(&c1);
	f.m1->hold = 0;
	memlu_release(f.m1);
	while (!done)
		kura_loop_run_once(f.loop, 1000000000ULL);
	CHECK_EQ(c1.status, KURA_SCSI_TASK_ABORTED);
	CHECK(f.m2->writes < 30); /* it stopped early: 30 MiB were asked for */
	CHECK_GOOD(copy_results(&f, f.m1, &f.a, 0x00, 4, 64));
	CHECK_EQ(f.cmd.din[4], 0x02);
	free(c1.dout);
	kura_scsi_cmd_release(&c1);
	fx_fini(&f);
}

TEST(test_xcopy_busy_beyond_the_copy_limit)
{
	enum { RUNNING = 16 };
	struct fx f;
	struct plist p;
	struct kura_scsi_cmd *c = calloc(RUNNING, sizeof(*c));
	int done[RUNNING] = {0};
	uint8_t cdb[16] = {0x83};

	CHECK(c);
	fx_init(&f, false);
	f.m1->hold = 1;
	for (int i = 0; i < RUNNING; i++) {
		pl_init(&p, (uint8_t)i, 0);
		pl_cscd(&p, f.naa1);
		pl_seg(&p, 0, 0, 8, 0, 1000 + 8 * (uint64_t)i);
		pl_done(&p);
		scsi_put32(cdb + 10, p.len);
		memlu_start(f.m1, &c[i], &f.a, cdb, 16, p.len, KURA_SCSI_WRITE, p.b, p.len, &done[i]);
	}
	for (int i = 0; i < 10; i++)
		kura_loop_run_once(f.loop, 0);
	pl_init(&p, 200, 0);
	pl_cscd(&p, f.naa1);
	pl_seg(&p, 0, 0, 8, 0, 0);
	pl_done(&p);
	CHECK_EQ(xcopy(&f, f.m1, &p)->status, KURA_SCSI_BUSY);
	f.m1->hold = 0;
	memlu_release(f.m1);
	for (int i = 0; i < RUNNING; i++) {
		while (!done[i])
			kura_loop_run_once(f.loop, 1000000000ULL);
		CHECK_GOOD(&c[i]);
		free(c[i].dout);
		kura_scsi_cmd_release(&c[i]);
	}
	CHECK_GOOD(xcopy(&f, f.m1, &p));
	free(c);
	fx_fini(&f);
}

TEST(test_xcopy_other_lu_gone_midway)
{
	struct fx f;
	struct plist p;
	struct kura_scsi_cmd c1 = {0};
	uint8_t cdb[16] = {0x83};
	int done = 0;

	fx_init(&f, false);
	fill(f.m1, 0, 20000, 13);
	pl_init(&p, 1, 0);
	pl_cscd(&p, f.naa1);
	pl_cscd(&p, f.naa2);
	pl_seg(&p, 0, 1, 20000, 0, 0);
	pl_done(&p);
	scsi_put32(cdb + 10, p.len);
	f.m1->hold = 1; /* reads wait: nothing is in flight to vd2 */
	memlu_start(f.m1, &c1, &f.a, cdb, 16, p.len, KURA_SCSI_WRITE, p.b, p.len, &done);
	for (int i = 0; i < 10; i++)
		kura_loop_run_once(f.loop, 0);
	CHECK(!done);
	/* vd2's last session ends and its LU goes */
	memlu_free(f.m2);
	f.m2 = NULL;
	f.m1->hold = 0;
	memlu_release(f.m1);
	while (!done)
		kura_loop_run_once(f.loop, 1000000000ULL);
	CHECK_SENSE(&c1, SK_COPY_ABORTED, 0x0d, 0x02); /* COPY TARGET DEVICE NOT REACHABLE */
	free(c1.dout);
	kura_scsi_cmd_release(&c1);
	fx_fini(&f);
}
