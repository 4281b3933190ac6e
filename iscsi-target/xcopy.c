/* EXTENDED COPY (LID1) and RECEIVE COPY RESULTS: VMware's XCOPY. The copy
 * runs inside blockd, LU to LU, as clone-class reads and writes through the
 * LUs' range locks; no data crosses the network. Only identification CSCD
 * descriptors (0xE4, by NAA) and block-to-block segments (0x02) are taken. */
#include "iscsi-target/scsi_int.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CSCD 16u
#define MAX_SEGS 64u
#define MAX_DESC_LEN (MAX_CSCD * 32u + MAX_SEGS * 28u)
#define MAX_SEG_BLOCKS 65535u
#define CHUNK (1u << 20)
#define RESULTS 16u

struct copy_result {
	uint64_t nexus;
	uint8_t list_id;
	uint8_t status;      /* 1 done, 2 done with errors */
	uint16_t segs;
	uint32_t kib;        /* data moved, KiB */
};

struct seg {
	struct kura_scsi_lu *src, *dst;
	uint64_t src_lba, dst_lba;
	uint32_t n;
};

/* One EXTENDED COPY being run. */
struct copy {
	struct kura_scsi_cmd *cmd;
	struct seg segs[MAX_SEGS];
	unsigned nseg, cur;
	uint64_t done;       /* bytes of the current segment copied */
	uint64_t moved;      /* bytes in all */
	uint32_t len;        /* bytes of the chunk in flight */
	uint8_t *buf;
	uint8_t list_id;
};

struct scsi_xcopy {
	struct copy_result r[RESULTS];
	unsigned next;
};

void scsi_xcopy_free(struct kura_scsi_lu *lu)
{
	free(lu->xc);
	lu->xc = NULL;
}

static void record(struct kura_scsi_lu *lu, uint64_t nexus, uint8_t id, uint8_t status,
		   uint16_t segs, uint64_t bytes)
{
	struct copy_result *r;

	if (!lu->xc && !(lu->xc = calloc(1, sizeof(*lu->xc))))
		return;
	r = &lu->xc->r[lu->xc->next++ % RESULTS];
	*r = (struct copy_result){nexus, id, status, segs, (uint32_t)(bytes >> 10)};
}

static void copy_aborted(struct kura_scsi_cmd *cmd, uint8_t asc, uint8_t ascq)
{
	scsi_check(cmd, SK_COPY_ABORTED, asc, ascq);
}

static void copy_end(struct copy *c, int err)
{
	struct kura_scsi_cmd *cmd = c->cmd;

	record(cmd->lu, cmd->nexus->id, c->list_id, err ? 2 : 1, (uint16_t)c->cur, c->moved);
	free(c->buf);
	free(c);
	if (!err)
		scsi_good(cmd);
	else if (err == -EROFS)
		scsi_check(cmd, SK_DATA_PROTECT, 0x27, 0x00);
	else if (err == -ECANCELED)
		scsi_complete(cmd);
	else
		copy_aborted(cmd, 0x0d, 0x01); /* THIRD PARTY DEVICE FAILURE */
}

static void copy_step(struct copy *c);

static void chunk_written(void *arg, int err)
{
	struct copy *c = arg;

	if (err) {
		copy_end(c, err);
		return;
	}
	c->done += c->len;
	c->moved += c->len;
	copy_step(c);
}

static void chunk_read(void *arg, int err)
{
	struct copy *c = arg;
	struct seg *s = &c->segs[c->cur];
	int e;

	if (err) {
		copy_end(c, err);
		return;
	}
	e = scsi_lu_write(s->dst, s->dst_lba * KURA_SCSI_LBS + c->done, c->len, c->buf, KURA_IO_CLONE,
			  chunk_written, c);
	if (e)
		copy_end(c, e);
}

static void copy_step(struct copy *c)
{
	struct seg *s;
	uint64_t left;
	int e;

	if (c->cmd->aborted) {
		copy_end(c, -ECANCELED);
		return;
	}
	while (c->cur < c->nseg && c->done >= (uint64_t)c->segs[c->cur].n * KURA_SCSI_LBS) {
		c->cur++;
		c->done = 0;
	}
	if (c->cur == c->nseg) {
		copy_end(c, 0);
		return;
	}
	s = &c->segs[c->cur];
	left = (uint64_t)s->n * KURA_SCSI_LBS - c->done;
	c->len = (uint32_t)(left < CHUNK ? left : CHUNK);
	e = scsi_lu_read(s->src, s->src_lba * KURA_SCSI_LBS + c->done, c->len, c->buf, KURA_IO_CLONE,
			 chunk_read, c);
	if (e)
		copy_end(c, e);
}

/* The LU an identification descriptor names, or NULL. */
static struct kura_scsi_lu *resolve(struct kura_scsi_lu *lu, const uint8_t *d)
{
	struct kura_scsi_lu *t = NULL;

	if ((d[5] & 0x0f) != 0x03 || d[7] != 16)
		return NULL; /* we name LUs by 16-byte NAA designators only */
	if (lu->o.lookup)
		t = lu->o.lookup(lu->o.lookup_ctx, d + 8);
	if (!t && !memcmp(d + 8, lu->naa, 16))
		t = lu;
	return t;
}

void scsi_xcopy(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu, *cscd[MAX_CSCD];
	uint32_t len = scsi_be32(cmd->cdb + 10), got, tdl, sdl, off, ncscd = 0;
	const uint8_t *p;
	struct copy *c;

	if (cmd->cdb[1] & 0x1f) { /* only LID1 (service action 0) */
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	if (!len) {
		scsi_good(cmd);
		return;
	}
	if (len > 16 + MAX_DESC_LEN) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return;
	}
	p = scsi_dout(cmd, len, &got);
	if (len < 16 || got < len) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return;
	}
	tdl = scsi_be16(p + 2);
	sdl = scsi_be32(p + 8);
	if (scsi_be32(p + 12)) { /* inline data is not supported */
		scsi_bad_param(cmd, 12, -1);
		return;
	}
	if (tdl / 32 > MAX_CSCD) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x06); /* TOO MANY TARGET DESCRIPTORS */
		return;
	}
	if (sdl / 28 > MAX_SEGS) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x08); /* TOO MANY SEGMENT DESCRIPTORS */
		return;
	}
	if ((uint64_t)16 + tdl + sdl > len || tdl + sdl > MAX_DESC_LEN) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	c->cmd = cmd;
	c->list_id = p[0];
	/* CSCD descriptors. */
	for (off = 16; off < 16 + tdl; off += 32, ncscd++) {
		const uint8_t *d = p + off;

		if (d[0] != 0xe4) {
			free(c);
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x07); /* UNSUPPORTED TARGET DESCRIPTOR TYPE CODE */
			return;
		}
		if (off + 32 > 16 + tdl) {
			free(c);
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
			return;
		}
		if ((d[1] & 0x1f) != 0 ||
		    (d[29] << 16 | d[30] << 8 | d[31]) != (int)KURA_SCSI_LBS) {
			free(c);
			copy_aborted(cmd, 0x00, 0x00); /* not a block device of our block size */
			return;
		}
		cscd[ncscd] = resolve(lu, d);
		if (!cscd[ncscd]) {
			free(c);
			copy_aborted(cmd, 0x0d, 0x02); /* COPY TARGET DEVICE NOT REACHABLE */
			return;
		}
	}
	/* Segment descriptors. */
	for (off = 16 + tdl; off < 16 + tdl + sdl;) {
		const uint8_t *d = p + off;
		uint32_t dl;
		uint16_t si, di;
		struct seg *s;

		if (off + 4 > 16 + tdl + sdl) {
			free(c);
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
			return;
		}
		dl = scsi_be16(d + 2) + 4u;
		if (d[0] != 0x02) {
			free(c);
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x09); /* UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE */
			return;
		}
		if (dl != 28 || off + dl > 16 + tdl + sdl) {
			free(c);
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
			return;
		}
		si = scsi_be16(d + 4);
		di = scsi_be16(d + 6);
		if (si >= ncscd || di >= ncscd) {
			free(c);
			copy_aborted(cmd, 0x00, 0x00);
			return;
		}
		s = &c->segs[c->nseg++];
		s->src = cscd[si];
		s->dst = cscd[di];
		s->n = scsi_be16(d + 10);
		s->src_lba = scsi_be64(d + 12);
		s->dst_lba = scsi_be64(d + 20);
		if (s->src_lba > s->src->nblocks || s->n > s->src->nblocks - s->src_lba ||
		    s->dst_lba > s->dst->nblocks || s->n > s->dst->nblocks - s->dst_lba) {
			free(c);
			copy_aborted(cmd, 0x00, 0x00); /* a segment outside its LU */
			return;
		}
		if (s->dst->o.read_only || s->dst->swp) {
			free(c);
			scsi_check(cmd, SK_DATA_PROTECT, 0x27, 0x00);
			return;
		}
		off += dl;
	}
	if (!(c->buf = kura_aligned_alloc(CHUNK))) {
		free(c);
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	copy_step(c);
}

void scsi_copy_results(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	uint8_t sa = cmd->cdb[1] & 0x1f, t[64] = {0}, *d;
	uint32_t alloc = scsi_be32(cmd->cdb + 10), n;

	if (sa == 0x03) { /* OPERATING PARAMETERS */
		scsi_put16(t + 8, MAX_CSCD);
		scsi_put16(t + 10, MAX_SEGS);
		scsi_put32(t + 12, MAX_DESC_LEN);
		scsi_put32(t + 16, MAX_SEG_BLOCKS * KURA_SCSI_LBS);
		scsi_put16(t + 34, 1);  /* total concurrent copies */
		t[36] = 1;              /* maximum concurrent copies */
		t[37] = 12;             /* data segment granularity: 4096 */
		t[43] = 2;
		t[44] = 0x02;           /* block to block */
		t[45] = 0xe4;           /* identification descriptor */
		n = 46;
		scsi_put32(t, n - 4);
	} else if (sa == 0x00) { /* COPY STATUS */
		struct copy_result *r = NULL;

		for (unsigned i = 0; lu->xc && i < RESULTS; i++)
			if (lu->xc->r[i].status && lu->xc->r[i].nexus == cmd->nexus->id &&
			    lu->xc->r[i].list_id == cmd->cdb[2])
				r = &lu->xc->r[i];
		if (!r) {
			scsi_bad_cdb(cmd, 2, -1);
			return;
		}
		t[4] = r->status;
		scsi_put16(t + 5, r->segs);
		t[7] = 0xf1; /* transfer count in KiB */
		scsi_put32(t + 8, r->kib);
		n = 12;
		scsi_put32(t, n - 4);
	} else {
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	if ((d = scsi_din(cmd, n, alloc)))
		memcpy(d, t, n < alloc ? n : alloc);
	scsi_complete(cmd);
}
