/* EXTENDED COPY (LID1, SPC-4 6.4) and RECEIVE COPY RESULTS (6.18): the
 * XCOPY that VMware's VAAI uses to clone and move virtual disks. The copy
 * runs inside blockd, LU to LU, as clone-class reads and writes through the
 * LUs' range locks; no data crosses the network.
 *
 * Taken: identification CSCD descriptors (0xE4) naming a LU of this node by
 * the 16-byte NAA designator of its VPD page 0x83, and block-to-block
 * segment descriptors (0x02). Each segment is copied in 1 MiB chunks, a few
 * in flight; a chunk that reads as zeros is deallocated on the destination
 * instead of written (kura LUs are thin and read deallocated blocks as
 * zeros, LBPRZ), so clones of sparse disks stay sparse. A segment whose
 * source and destination overlap on one LU is copied one chunk at a time in
 * the direction that keeps memmove semantics.
 *
 * Every descriptor is checked before any data moves, so a refused command
 * has changed nothing. */
#include "iscsi-target/scsi_int.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CSCD 16u
#define MAX_SEGS 64u
#define CSCD_LEN 32u
#define SEG_LEN 28u /* block to block */
#define MAX_DESC_LEN (MAX_CSCD * CSCD_LEN + MAX_SEGS * SEG_LEN)
#define MAX_SEG_BLOCKS 0xffffu /* the NUMBER OF BLOCKS field's range */
#define CHUNK (1u << 20)
#define DEPTH 4u
/* Copies running at once per LU; beyond: BUSY, which initiators retry.
 * With DEPTH chunks each this bounds a LU's copy buffers to 64 MiB. */
#define MAX_COPIES 16u
#define RESULTS 16u

/* LIST ID USAGE (parameter list byte 1, bits 4-3). */
enum { USAGE_HOLD = 0, USAGE_RESERVED = 1, USAGE_DISCARD = 2, USAGE_NONE = 3 };

/* COPY MANAGER STATUS of COPY STATUS. */
enum { ST_RUNNING = 0x00, ST_DONE = 0x01, ST_FAILED = 0x02 };

struct copy;

/* A copy's use of a LU other than the one the command came to: that LU's
 * destruction stops the copy instead of leaving it a dangling pointer. */
struct xref {
	struct copy *c;
	struct kura_scsi_lu *lu; /* NULL once that LU is gone */
	struct xref *next;       /* in lu->xc->users */
};

struct seg {
	struct kura_scsi_lu *src, *dst;
	uint64_t src_off, dst_off, len; /* bytes */
	uint32_t desc_off;              /* of its descriptor in the parameter list */
};

struct chunk {
	struct copy *c;
	uint8_t *buf;
	uint64_t off; /* within the segment */
	uint32_t len;
	bool busy;
};

/* One EXTENDED COPY being run. */
struct copy {
	struct kura_scsi_cmd *cmd;
	struct kura_scsi_lu *lu; /* the command's */
	uint64_t nexus;
	uint8_t list_id, usage;
	struct seg segs[MAX_SEGS];
	unsigned nseg, cur;      /* segments, and how many are done */
	uint64_t issued;         /* bytes of the current segment handed to chunks */
	uint64_t moved;          /* bytes copied in all */
	unsigned inflight, depth;
	bool backward, lost;
	int err;                 /* first error */
	bool err_write;          /* ... and it came from a write */
	struct chunk ch[DEPTH];
	struct xref refs[MAX_CSCD];
	unsigned nref;
	struct copy *next;       /* in lu->xc->running */
};

struct result {
	uint64_t nexus;
	uint8_t list_id, status;
	uint16_t segs;
	uint32_t bytes;
};

struct scsi_xcopy {
	struct copy *running;
	unsigned nrunning;
	struct result r[RESULTS]; /* finished copies whose status is held */
	unsigned nr, next;
	struct xref *users;       /* copies of other LUs reading or writing this one */
};

static struct scsi_xcopy *xc_of(struct kura_scsi_lu *lu)
{
	if (!lu->xc)
		lu->xc = calloc(1, sizeof(*lu->xc));
	return lu->xc;
}

void scsi_xcopy_free(struct kura_scsi_lu *lu)
{
	struct scsi_xcopy *xc = lu->xc;

	if (!xc)
		return;
	/* Copies driven from other LUs issue nothing more to this one. */
	for (struct xref *x = xc->users; x; x = x->next) {
		x->lu = NULL;
		x->c->lost = true;
	}
	free(xc);
	lu->xc = NULL;
}

/* ---- the copy ---- */

static void copy_pump(struct copy *c);

/* CHECK CONDITION with the parameter list offset of the segment descriptor
 * being processed in the COMMAND-SPECIFIC INFORMATION field, where SPC-4
 * has a copy manager report it. */
static void copy_fail(struct kura_scsi_cmd *cmd, uint8_t key, uint8_t asc, uint8_t ascq,
		      uint32_t desc_off)
{
	scsi_check(cmd, key, asc, ascq);
	scsi_put32(cmd->sense + 8, desc_off);
}

static void copy_error(struct copy *c)
{
	struct kura_scsi_cmd *cmd = c->cmd;
	uint32_t at = c->cur < c->nseg ? c->segs[c->cur].desc_off : 0;

	if (c->err == -EROFS)
		copy_fail(cmd, SK_DATA_PROTECT, 0x27, 0x00, at);       /* WRITE PROTECTED */
	else if (c->err == -ENOSPC)
		copy_fail(cmd, SK_DATA_PROTECT, 0x27, 0x07, at);       /* SPACE ALLOCATION FAILED WRITE PROTECT */
	else if (c->err == -ENXIO)
		copy_fail(cmd, SK_COPY_ABORTED, 0x0d, 0x02, at);       /* COPY TARGET DEVICE NOT REACHABLE */
	else if ((c->err == -EIO || c->err == -EILSEQ) && c->err_write)
		copy_fail(cmd, SK_COPY_ABORTED, 0x0c, 0x00, at);       /* WRITE ERROR */
	else if (c->err == -EIO || c->err == -EILSEQ)
		copy_fail(cmd, SK_COPY_ABORTED, 0x11, 0x00, at);       /* UNRECOVERED READ ERROR */
	else
		copy_fail(cmd, SK_COPY_ABORTED, 0x0d, 0x01, at);       /* THIRD PARTY DEVICE FAILURE */
}

static void record(struct copy *c, uint8_t status)
{
	struct scsi_xcopy *xc = c->lu->xc;
	struct result *r = NULL;

	for (unsigned i = 0; i < xc->nr; i++)
		if (xc->r[i].nexus == c->nexus && xc->r[i].list_id == c->list_id)
			r = &xc->r[i]; /* a list id used again replaces its old status */
	if (!r) {
		r = &xc->r[xc->next];
		xc->next = (xc->next + 1) % RESULTS;
		if (xc->nr < RESULTS)
			xc->nr++;
	}
	*r = (struct result){c->nexus, c->list_id, status, (uint16_t)c->cur, (uint32_t)c->moved};
}

static void copy_end(struct copy *c)
{
	struct scsi_xcopy *xc = c->lu->xc;
	struct kura_scsi_cmd *cmd = c->cmd;
	bool aborted = cmd->aborted;

	for (struct copy **pp = &xc->running; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	xc->nrunning--;
	for (unsigned i = 0; i < c->nref; i++) {
		struct kura_scsi_lu *o = c->refs[i].lu;

		if (!o)
			continue;
		for (struct xref **pp = &o->xc->users; *pp; pp = &(*pp)->next)
			if (*pp == &c->refs[i]) {
				*pp = c->refs[i].next;
				break;
			}
	}
	if (c->lost && !c->err)
		c->err = -ENXIO;
	if (c->usage == USAGE_HOLD)
		record(c, c->err || aborted ? ST_FAILED : ST_DONE);
	if (aborted)
		scsi_complete(cmd); /* lu.c answers TASK ABORTED */
	else if (c->err)
		copy_error(c);
	else
		scsi_good(cmd);
	for (unsigned i = 0; i < DEPTH; i++)
		free(c->ch[i].buf);
	free(c);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	const uint64_t *w = (const uint64_t *)(const void *)p; /* buffers are 4 KiB aligned */
	size_t i;

	for (i = 0; i < n / 8; i++)
		if (w[i])
			return false;
	for (i *= 8; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* A chunk ended: written (or deallocated) when err is 0 and written is
 * true; stopped early when both are 0. */
static void chunk_done(struct chunk *k, int err, bool written, bool in_write)
{
	struct copy *c = k->c;

	if (err && !c->err) {
		c->err = err;
		c->err_write = in_write;
	}
	if (written)
		c->moved += k->len;
	k->busy = false;
	c->inflight--;
	copy_pump(c);
}

static void chunk_written(void *arg, int err)
{
	chunk_done(arg, err, !err, true);
}

static void chunk_read(void *arg, int err)
{
	struct chunk *k = arg;
	struct copy *c = k->c;
	struct seg *s = &c->segs[c->cur];

	if (err) {
		chunk_done(k, err, false, false);
		return;
	}
	if (c->lost || c->err || c->cmd->aborted) {
		chunk_done(k, 0, false, false); /* stopping: write nothing more */
		return;
	}
	if (all_zero(k->buf, k->len))
		err = scsi_lu_discard(s->dst, s->dst_off + k->off, k->len, chunk_written, k);
	else
		err = scsi_lu_write(s->dst, s->dst_off + k->off, k->len, k->buf, KURA_IO_CLONE,
				    chunk_written, k);
	if (err)
		chunk_done(k, err, false, true);
}

/* The next segment: how many chunks may run at once, in which direction. */
static void seg_start(struct copy *c)
{
	struct seg *s = &c->segs[c->cur];
	bool overlap = s->src == s->dst && s->src_off < s->dst_off + s->len &&
		       s->dst_off < s->src_off + s->len;

	c->issued = 0;
	c->depth = overlap ? 1 : DEPTH;
	c->backward = overlap && s->dst_off > s->src_off;
}

/* Starts chunks while there is room and work, and ends the copy once all of
 * it is done or it has to stop. */
static void copy_pump(struct copy *c)
{
	for (;;) {
		struct seg *s;
		struct chunk *k = NULL;
		uint64_t left;
		int err;

		if (c->err || c->lost || c->cmd->aborted || c->cur == c->nseg)
			break;
		s = &c->segs[c->cur];
		if (c->issued == s->len) {
			if (c->inflight)
				break; /* segments run in order: this one finishes first */
			if (++c->cur < c->nseg)
				seg_start(c);
			continue;
		}
		if (c->inflight >= c->depth)
			break;
		for (unsigned i = 0; i < DEPTH && !k; i++)
			if (c->ch[i].buf && !c->ch[i].busy)
				k = &c->ch[i];
		if (!k)
			break;
		left = s->len - c->issued;
		k->len = (uint32_t)(left < CHUNK ? left : CHUNK);
		k->off = c->backward ? left - k->len : c->issued;
		k->busy = true;
		c->issued += k->len;
		c->inflight++;
		err = scsi_lu_read(s->src, s->src_off + k->off, k->len, k->buf, KURA_IO_CLONE,
				   chunk_read, k);
		if (err) {
			k->busy = false;
			c->inflight--;
			c->err = err;
		}
	}
	if (!c->inflight && (c->err || c->lost || c->cmd->aborted || c->cur == c->nseg))
		copy_end(c);
}

/* ---- EXTENDED COPY: checking the parameter list ---- */

static void param_len_error(struct kura_scsi_cmd *cmd)
{
	scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
}

/* The LU an identification CSCD descriptor names, or NULL. */
static struct kura_scsi_lu *resolve(struct kura_scsi_lu *lu, const uint8_t *d)
{
	struct kura_scsi_lu *t = NULL;

	/* LUs are named by their 16-byte NAA designator only. */
	if ((d[5] & 0x0f) != 0x03 || d[7] != 16)
		return NULL;
	if (lu->o.lookup)
		t = lu->o.lookup(lu->o.lookup_ctx, d + 8);
	if (!t && !memcmp(d + 8, lu->naa, 16))
		t = lu;
	return t;
}

/* Checks the CSCD descriptors and finds their LUs; false with the command
 * answered when one is refused. */
static bool parse_cscds(struct kura_scsi_cmd *cmd, const uint8_t *p, uint32_t tdl,
			struct kura_scsi_lu **lus, unsigned *n)
{
	for (uint32_t off = 16; off < 16 + tdl; off += CSCD_LEN) {
		const uint8_t *d = p + off;

		if (d[0] != 0xe4) {
			scsi_check_field(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x07, false, (uint16_t)off,
					 -1); /* UNSUPPORTED TARGET DESCRIPTOR TYPE CODE */
			return false;
		}
		if (off + CSCD_LEN > 16 + tdl) { /* the list length cuts it */
			scsi_bad_param(cmd, 2, -1);
			return false;
		}
		/* LU ID TYPE, NUL (obsolete) and the relative initiator port
		 * are ignored, as SPC-4 lets a copy manager do. */
		if (d[7] > 20) {
			scsi_bad_param(cmd, (uint16_t)(off + 7), -1);
			return false;
		}
		if (d[1] & 0x1f) { /* only block devices here */
			copy_fail(cmd, SK_COPY_ABORTED, 0x0d, 0x03, 0); /* INCORRECT COPY TARGET DEVICE TYPE */
			return false;
		}
		if (scsi_be24(d + 29) != KURA_SCSI_LBS) {
			scsi_bad_param(cmd, (uint16_t)(off + 29), -1);
			return false;
		}
		if (!(lus[*n] = resolve(cmd->lu, d))) {
			copy_fail(cmd, SK_COPY_ABORTED, 0x08, 0x04, 0); /* UNREACHABLE COPY TARGET */
			return false;
		}
		(*n)++;
	}
	return true;
}

/* Checks the segment descriptors into c->segs; false with the command
 * answered when one is refused. */
static bool parse_segs(struct kura_scsi_cmd *cmd, struct copy *c, const uint8_t *p,
		       uint32_t start, uint32_t sdl, struct kura_scsi_lu **lus, unsigned ncscd)
{
	for (uint32_t off = start; off < start + sdl; off += SEG_LEN) {
		const uint8_t *d = p + off;
		uint16_t si, di, nb;
		struct seg *s;

		if (d[0] != 0x02) {
			scsi_check_field(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x09, false, (uint16_t)off,
					 -1); /* UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE */
			return false;
		}
		if (scsi_be16(d + 2) != SEG_LEN - 4) {
			scsi_bad_param(cmd, (uint16_t)(off + 2), -1);
			return false;
		}
		si = scsi_be16(d + 4);
		di = scsi_be16(d + 6);
		if (si >= ncscd || di >= ncscd) {
			copy_fail(cmd, SK_COPY_ABORTED, 0x08, 0x04, off); /* names no CSCD */
			return false;
		}
		nb = scsi_be16(d + 10);
		s = &c->segs[c->nseg];
		s->src = lus[si];
		s->dst = lus[di];
		s->src_off = scsi_be64(d + 12);
		s->dst_off = scsi_be64(d + 20);
		s->desc_off = off;
		/* Ranges are checked as the copy target would check a READ or
		 * WRITE; its LBA OUT OF RANGE becomes COPY ABORTED. */
		if (s->src_off > s->src->nblocks || nb > s->src->nblocks - s->src_off ||
		    s->dst_off > s->dst->nblocks || nb > s->dst->nblocks - s->dst_off) {
			copy_fail(cmd, SK_COPY_ABORTED, 0x00, 0x00, off);
			return false;
		}
		if (s->dst->o.read_only || s->dst->swp) {
			copy_fail(cmd, SK_DATA_PROTECT, 0x27, 0x00, off); /* WRITE PROTECTED */
			return false;
		}
		/* The initiator could not have read or written these itself. */
		if ((s->src != cmd->lu && scsi_pr_io_conflict(s->src, cmd->nexus, false)) ||
		    (s->dst != cmd->lu && scsi_pr_io_conflict(s->dst, cmd->nexus, true))) {
			cmd->status = KURA_SCSI_RESERVATION_CONFLICT;
			scsi_complete(cmd);
			return false;
		}
		if (!nb)
			continue; /* no blocks: nothing to do, not an error */
		s->src_off *= KURA_SCSI_LBS;
		s->dst_off *= KURA_SCSI_LBS;
		s->len = (uint64_t)nb * KURA_SCSI_LBS;
		c->nseg++;
	}
	return true;
}

/* Counts the segment descriptors by their lengths; false with the command
 * answered when the list does not hold together. */
static bool count_segs(struct kura_scsi_cmd *cmd, const uint8_t *p, uint32_t start,
		       uint32_t sdl, unsigned *n)
{
	uint32_t off = start;

	*n = 0;
	while (off < start + sdl) {
		if (off + 4 > start + sdl) {
			param_len_error(cmd);
			return false;
		}
		off += scsi_be16(p + off + 2) + 4u;
		if (off > start + sdl) {
			param_len_error(cmd);
			return false;
		}
		if (++*n > MAX_SEGS) {
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x08); /* TOO MANY SEGMENT DESCRIPTORS */
			return false;
		}
	}
	return true;
}

static struct copy *running(struct scsi_xcopy *xc, uint64_t nexus, uint8_t list_id)
{
	for (struct copy *c = xc ? xc->running : NULL; c; c = c->next)
		if (c->nexus == nexus && c->list_id == list_id && c->usage != USAGE_NONE)
			return c;
	return NULL;
}

/* Tells every other LU the copy uses that it does. */
static bool add_refs(struct copy *c)
{
	for (unsigned i = 0; i < c->nseg; i++) {
		struct kura_scsi_lu *both[2] = {c->segs[i].src, c->segs[i].dst};

		for (unsigned j = 0; j < 2; j++) {
			struct kura_scsi_lu *o = both[j];
			bool known = o == c->lu;
			struct scsi_xcopy *oxc;

			for (unsigned k = 0; k < c->nref && !known; k++)
				known = c->refs[k].lu == o;
			if (known)
				continue;
			if (!(oxc = xc_of(o)))
				return false;
			c->refs[c->nref] = (struct xref){c, o, oxc->users};
			oxc->users = &c->refs[c->nref++];
		}
	}
	return true;
}

void scsi_xcopy(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu, *lus[MAX_CSCD];
	uint32_t len = scsi_be32(cmd->cdb + 10), got, tdl, sdl, inl;
	unsigned ncscd = 0, nseg;
	struct scsi_xcopy *xc;
	const uint8_t *p;
	uint64_t biggest = 0;
	struct copy *c;

	if (cmd->cdb[1] & 0x1f) { /* LID4 (token-based copies) is not offered */
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	if (!len) { /* SPC-4: no parameter list is not an error */
		scsi_good(cmd);
		return;
	}
	p = scsi_dout(cmd, len, &got);
	if (len < 16 || got < len) {
		param_len_error(cmd);
		return;
	}
	if (((p[1] >> 3) & 0x03) == USAGE_RESERVED) {
		scsi_bad_param(cmd, 1, 4);
		return;
	}
	tdl = scsi_be16(p + 2);
	sdl = scsi_be32(p + 8);
	inl = scsi_be32(p + 12);
	/* The whole list's length first: a list too long to take is refused as
	 * such even when it also has too many descriptors. */
	if ((uint64_t)tdl + sdl > MAX_DESC_LEN) {
		param_len_error(cmd);
		return;
	}
	if (inl) { /* MAXIMUM INLINE DATA LENGTH is 0 */
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x0b); /* INLINE DATA LENGTH EXCEEDED */
		return;
	}
	if (16 + (uint64_t)tdl + sdl > len) {
		param_len_error(cmd);
		return;
	}
	if ((tdl + CSCD_LEN - 1) / CSCD_LEN > MAX_CSCD) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x26, 0x06); /* TOO MANY TARGET DESCRIPTORS */
		return;
	}
	if (!count_segs(cmd, p, 16 + tdl, sdl, &nseg))
		return;
	if (!parse_cscds(cmd, p, tdl, lus, &ncscd))
		return;
	if (!(c = calloc(1, sizeof(*c)))) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	c->cmd = cmd;
	c->lu = lu;
	c->nexus = cmd->nexus->id;
	c->list_id = p[0];
	c->usage = (p[1] >> 3) & 0x03;
	if (!parse_segs(cmd, c, p, 16 + tdl, sdl, lus, ncscd)) {
		free(c);
		return;
	}
	if (!(xc = xc_of(lu))) {
		free(c);
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	if (c->usage != USAGE_NONE && running(xc, c->nexus, c->list_id)) {
		free(c);
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x00, 0x16); /* OPERATION IN PROGRESS */
		return;
	}
	if (xc->nrunning >= MAX_COPIES) {
		free(c);
		cmd->status = KURA_SCSI_BUSY;
		scsi_complete(cmd);
		return;
	}
	for (unsigned i = 0; i < c->nseg; i++)
		if (c->segs[i].len > biggest)
			biggest = c->segs[i].len;
	/* Fewer chunks in flight when memory is short is still a copy. */
	for (unsigned i = 0; i < DEPTH && biggest; i++)
		if (!(c->ch[i].buf = kura_aligned_alloc_raw(biggest < CHUNK ? biggest : CHUNK)))
			break;
	if ((biggest && !c->ch[0].buf) || !add_refs(c)) {
		for (unsigned i = 0; i < c->nref; i++)
			for (struct xref **pp = &c->refs[i].lu->xc->users; *pp; pp = &(*pp)->next)
				if (*pp == &c->refs[i]) {
					*pp = c->refs[i].next;
					break;
				}
		for (unsigned i = 0; i < DEPTH; i++)
			free(c->ch[i].buf);
		free(c);
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	for (unsigned i = 0; i < DEPTH; i++)
		c->ch[i].c = c;
	c->next = xc->running;
	xc->running = c;
	xc->nrunning++;
	if (c->nseg)
		seg_start(c);
	copy_pump(c);
}

/* ---- RECEIVE COPY RESULTS ---- */

static uint32_t operating_parameters(uint8_t *t)
{
	t[4] = 0x01;                       /* SNLID: LIST ID USAGE 11b is taken */
	scsi_put16(t + 8, MAX_CSCD);
	scsi_put16(t + 10, MAX_SEGS);
	scsi_put32(t + 12, MAX_DESC_LEN);
	scsi_put32(t + 16, MAX_SEG_BLOCKS * KURA_SCSI_LBS); /* maximum segment length */
	/* maximum inline data length, held data limit, maximum stream device
	 * transfer size: 0, none of them exists here */
	scsi_put16(t + 34, MAX_COPIES);    /* total concurrent copies */
	t[36] = MAX_COPIES;                /* maximum concurrent copies */
	t[37] = 9;                         /* data segment granularity: 2^9, a logical block */
	t[43] = 2;                         /* implemented descriptor type codes: */
	t[44] = 0x02;                      /* block to block */
	t[45] = 0xe4;                      /* identification CSCD descriptor */
	scsi_put32(t, 46 - 4);
	return 46;
}

static bool copy_status(struct kura_scsi_cmd *cmd, uint8_t *t)
{
	struct scsi_xcopy *xc = cmd->lu->xc;
	uint8_t id = cmd->cdb[2];
	struct copy *c = running(xc, cmd->nexus->id, id);
	struct result r = {0};
	bool found = false;

	if (c && c->usage != USAGE_NONE) {
		r = (struct result){c->nexus, id, ST_RUNNING, (uint16_t)c->cur, (uint32_t)c->moved};
		found = true;
	}
	for (unsigned i = 0; !found && xc && i < xc->nr; i++)
		if (xc->r[i].nexus == cmd->nexus->id && xc->r[i].list_id == id) {
			r = xc->r[i];
			found = true;
		}
	if (!found)
		return false;
	scsi_put32(t, 12 - 4);
	t[4] = r.status;                   /* HDD 0: no held data */
	scsi_put16(t + 5, r.segs);         /* segments processed */
	t[7] = 0x00;                       /* transfer count in bytes */
	scsi_put32(t + 8, r.bytes);
	return true;
}

void scsi_copy_results(struct kura_scsi_cmd *cmd)
{
	uint8_t sa = cmd->cdb[1] & 0x1f, t[64] = {0}, *d;
	uint32_t alloc = scsi_be32(cmd->cdb + 10), n;

	switch (sa) {
	case 0x00: /* COPY STATUS */
		if (!copy_status(cmd, t)) {
			scsi_bad_cdb(cmd, 2, -1); /* no such copy from this nexus */
			return;
		}
		n = 12;
		break;
	case 0x03: /* OPERATING PARAMETERS */
		n = operating_parameters(t);
		break;
	default:   /* RECEIVE DATA, FAILED SEGMENT DETAILS, LID4: nothing held */
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	if ((d = scsi_din(cmd, n, alloc)))
		memcpy(d, t, n < alloc ? n : alloc);
	scsi_complete(cmd);
}
