/* SBC-3 commands: capacity, reads and writes of every size, verify,
 * pre-fetch, cache sync, UNMAP, WRITE SAME, COMPARE AND WRITE, ORWRITE,
 * GET LBA STATUS, READ DEFECT DATA. Medium transfers go through
 * scsi_xfer (1 MiB backend calls, a few in flight, range-locked writes). */
#include "iscsi-target/scsi_int.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LBS KURA_SCSI_LBS

/* The LBA range and flags of a read/write-family CDB. */
struct rw {
	uint64_t lba;
	uint32_t n;
	uint8_t prot;       /* RDPROTECT / WRPROTECT / VRPROTECT / ORPROTECT */
	uint16_t len_field; /* byte of the transfer length, for field pointers */
};

static void parse_rw(const uint8_t *cdb, struct rw *r)
{
	memset(r, 0, sizeof(*r));
	switch (cdb[0] >> 5) {
	case 0: /* 6-byte: no protection field; 0 blocks means 256 */
		r->lba = (uint64_t)(cdb[1] & 0x1f) << 16 | (uint64_t)cdb[2] << 8 | cdb[3];
		r->n = cdb[4] ? cdb[4] : 256;
		r->len_field = 4;
		break;
	case 1: /* 10-byte */
	case 2:
		r->lba = scsi_be32(cdb + 2);
		r->n = scsi_be16(cdb + 7);
		r->prot = cdb[1] >> 5;
		r->len_field = 7;
		break;
	case 5: /* 12-byte */
		r->lba = scsi_be32(cdb + 2);
		r->n = scsi_be32(cdb + 6);
		r->prot = cdb[1] >> 5;
		r->len_field = 6;
		break;
	case 4: /* 16-byte */
		r->lba = scsi_be64(cdb + 2);
		r->n = scsi_be32(cdb + 10);
		r->prot = cdb[1] >> 5;
		r->len_field = 10;
		break;
	}
}

static bool out_of_range(const struct kura_scsi_lu *lu, uint64_t lba, uint64_t n)
{
	return lba > lu->nblocks || n > lu->nblocks - lba;
}

static void lba_oob(struct kura_scsi_cmd *cmd)
{
	scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x21, 0x00); /* LBA OUT OF RANGE */
}

static bool write_protected(struct kura_scsi_cmd *cmd)
{
	if (!cmd->lu->o.read_only && !cmd->lu->swp)
		return false;
	scsi_check(cmd, SK_DATA_PROTECT, 0x27, 0x00); /* WRITE PROTECTED */
	return true;
}

/* Checks common to the read/write family; false when it already answered.
 * Protection information is not supported (INQUIRY PROTECT=0), so any
 * non-zero protection field is an invalid field. */
static bool rw_ok(struct kura_scsi_cmd *cmd, const struct rw *r, bool write)
{
	if (r->prot) {
		scsi_bad_cdb(cmd, 1, 7);
		return false;
	}
	if (out_of_range(cmd->lu, r->lba, r->n)) {
		lba_oob(cmd);
		return false;
	}
	if (r->n > SCSI_MAX_XFER_LBAS) {
		scsi_bad_cdb(cmd, r->len_field, -1);
		return false;
	}
	if (write && write_protected(cmd))
		return false;
	return true;
}

static void read_done(struct kura_scsi_cmd *cmd, int err)
{
	if (err)
		scsi_io_error(cmd, err, false);
	scsi_complete(cmd);
}

static void write_done(struct kura_scsi_cmd *cmd, int err)
{
	if (err)
		scsi_io_error(cmd, err, true);
	scsi_complete(cmd);
}

/* How many bytes of write data to use: what the CDB names, cut to what
 * the initiator said it would send (SAM-5 5.4.3 overflow: the blocks past
 * it are left as they were). A cut inside a logical block cannot be
 * written: INVALID FIELD IN INFORMATION UNIT, residual still reported.
 * -1 when it answered. */
static int64_t write_len(struct kura_scsi_cmd *cmd, uint32_t want)
{
	uint32_t got, n;

	scsi_dout(cmd, want, &got);
	n = KURA_MIN(want, cmd->edtl);
	n = KURA_MIN(n, got);
	if (n % LBS) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x0e, 0x03);
		return -1;
	}
	return n;
}

static void do_read(struct kura_scsi_cmd *cmd)
{
	uint32_t want, len;
	struct rw r;
	uint8_t *d;

	parse_rw(cmd->cdb, &r);
	if (!rw_ok(cmd, &r, false))
		return;
	want = r.n * LBS;
	if (!(d = scsi_din_raw(cmd, want, want))) {
		scsi_complete(cmd);
		return;
	}
	/* Only what goes out is read (whole blocks). */
	len = (uint32_t)KURA_ALIGN_UP(cmd->din_len, LBS);
	if (!len) {
		scsi_good(cmd);
		return;
	}
	scsi_xfer(cmd, 0, r.lba * LBS, len, d, KURA_IO_GUEST, read_done);
}

/* WRITE and WRITE AND VERIFY: a write is checksummed when it completes and
 * durable unless the write cache is enabled (WCE) and the command is a plain
 * WRITE without FUA; then it completes once in the store's device cache,
 * and SYNCHRONIZE CACHE makes it durable. WRITE AND VERIFY is always
 * durable, so its verification (with or without BYTCHK) has nothing left to
 * find. DPO needs nothing. */
static void do_write(struct kura_scsi_cmd *cmd)
{
	const uint8_t op = cmd->cdb[0];
	bool plain = op == 0x0a || op == 0x2a || op == 0xaa || op == 0x8a;
	/* WRITE(6) has no FUA bit */
	bool fua = op != 0x0a && (cmd->cdb[1] & 0x08);
	unsigned flags = SCSI_XFER_WRITE;
	struct rw r;
	int64_t n;

	parse_rw(cmd->cdb, &r);
	if (!rw_ok(cmd, &r, true))
		return;
	if ((n = write_len(cmd, r.n * LBS)) < 0)
		return;
	if (!n) {
		scsi_good(cmd);
		return;
	}
	if (plain && !fua && cmd->lu->wce)
		flags |= SCSI_XFER_CACHED;
	scsi_xfer(cmd, flags, r.lba * LBS, (uint64_t)n, cmd->dout, KURA_IO_GUEST, write_done);
}

/* ---- VERIFY: read back, and compare when BYTCHK asks ---- */

static void miscompare(struct kura_scsi_cmd *cmd, uint32_t at)
{
	scsi_check(cmd, SK_MISCOMPARE, 0x1d, 0x00);
	cmd->sense[0] |= 0x80; /* VALID: INFORMATION holds the offset */
	scsi_put32(cmd->sense + 3, at);
}

static void verify_read(struct kura_scsi_cmd *cmd, int err)
{
	struct scsi_cstate *cs = scsi_cs(cmd);
	uint8_t bytchk = (cmd->cdb[1] >> 1) & 3;
	struct rw r;
	uint32_t len;

	if (err) {
		read_done(cmd, err);
		return;
	}
	parse_rw(cmd->cdb, &r);
	len = r.n * LBS;
	/* BYTCHK 1: Data-Out holds every block; 3: one block for all of them. */
	for (uint32_t i = 0; bytchk && i < len; i++)
		if (cs->buf[i] != cmd->dout[bytchk == 3 ? i % LBS : i]) {
			miscompare(cmd, i);
			return;
		}
	scsi_good(cmd);
}

static void do_verify(struct kura_scsi_cmd *cmd)
{
	struct scsi_cstate *cs = scsi_cs(cmd);
	uint8_t bytchk = (cmd->cdb[1] >> 1) & 3;
	uint32_t want, got;
	struct rw r;

	parse_rw(cmd->cdb, &r);
	if (!rw_ok(cmd, &r, false))
		return;
	if (bytchk == 2) {
		scsi_bad_cdb(cmd, 1, 2);
		return;
	}
	want = bytchk == 0 ? 0 : bytchk == 1 ? r.n * LBS : (r.n ? LBS : 0);
	scsi_dout(cmd, want, &got);
	if (got < want || cmd->edtl != want) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x0e, 0x03); /* INVALID FIELD IN INFORMATION UNIT */
		return;
	}
	if (!r.n) {
		scsi_good(cmd);
		return;
	}
	/* Without BYTCHK the blocks are still read: the store checks every
	 * block's checksum, which is the medium verification SBC asks for. */
	if (!(cs->buf = kura_aligned_alloc_raw((size_t)r.n * LBS))) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	scsi_xfer(cmd, 0, r.lba * LBS, (uint64_t)r.n * LBS, cs->buf, KURA_IO_GUEST, verify_read);
}

/* ---- capacity, cache, pre-fetch ---- */

static void read_capacity10(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	uint8_t *d;

	/* PMI is obsolete; without it the LBA field must be 0. */
	if (!(cmd->cdb[8] & 1) && scsi_be32(cmd->cdb + 2)) {
		scsi_bad_cdb(cmd, 2, -1);
		return;
	}
	if (!(d = scsi_din(cmd, 8, 8))) {
		scsi_complete(cmd);
		return;
	}
	/* 0xffffffff sends the initiator to READ CAPACITY(16). */
	scsi_put32(d, lu->nblocks - 1 > 0xffffffffull ? 0xffffffffu : (uint32_t)(lu->nblocks - 1));
	scsi_put32(d + 4, LBS);
	scsi_good(cmd);
}

static void read_capacity16(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	uint8_t *d;

	if (!(d = scsi_din(cmd, 32, scsi_be32(cmd->cdb + 10)))) {
		scsi_complete(cmd);
		return;
	}
	scsi_put64(d, lu->nblocks - 1);
	scsi_put32(d + 8, LBS);
	/* LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT stays 0 although the
	 * backend works in 4 KiB: an exponent of 3 makes libiscsi's GET LBA
	 * STATUS test expect descriptors to start on the next physical block
	 * (it fails against any target reporting the requested LBA, as SBC
	 * requires). The 4 KiB preference is given instead by the OPTIMAL
	 * TRANSFER LENGTH GRANULARITY and unmap granularity of the BLOCK
	 * LIMITS page, and any 512-byte write is exact (read-modify-write
	 * under a range lock). */
	d[14] = 0xc0; /* LBPME: thin; LBPRZ: deallocated blocks read as zeros */
	scsi_good(cmd);
}

static void flushed(void *arg, int err)
{
	write_done(arg, err);
}

static void sync_cache(struct kura_scsi_cmd *cmd)
{
	bool sixteen = cmd->cdb[0] == 0x91;
	uint64_t lba = sixteen ? scsi_be64(cmd->cdb + 2) : scsi_be32(cmd->cdb + 2);
	uint32_t n = sixteen ? scsi_be32(cmd->cdb + 10) : scsi_be16(cmd->cdb + 7);
	int err;

	if (out_of_range(cmd->lu, lba, n)) {
		lba_oob(cmd);
		return;
	}
	/* Makes every write completed before it durable: those that completed
	 * cached (write cache enabled), and whatever the backend still holds. */
	if ((err = cmd->lu->o.ops->flush(cmd->lu->o.be, flushed, cmd)))
		write_done(cmd, err);
}

static void prefetch(struct kura_scsi_cmd *cmd)
{
	bool sixteen = cmd->cdb[0] == 0x90;
	uint64_t lba = sixteen ? scsi_be64(cmd->cdb + 2) : scsi_be32(cmd->cdb + 2);
	uint32_t n = sixteen ? scsi_be32(cmd->cdb + 10) : scsi_be16(cmd->cdb + 7);

	if (out_of_range(cmd->lu, lba, n)) {
		lba_oob(cmd);
		return;
	}
	/* SBC-3: CONDITION MET when the blocks were placed in the cache, GOOD
	 * when the cache cannot take them. There is no cache to fill (reads
	 * come from the store on demand), so the answer is GOOD. */
	scsi_good(cmd);
}

/* ---- UNMAP and WRITE SAME ---- */

static void discard_ranges(struct kura_scsi_cmd *cmd, const uint64_t *lba, const uint32_t *n,
			   unsigned cnt)
{
	struct scsi_cstate *cs = scsi_cs(cmd);

	cs->step = write_done;
	cs->err = 0;
	cs->pending = 1; /* held while submitting */
	for (unsigned i = 0; i < cnt; i++) {
		int err;

		if (!n[i])
			continue;
		cs->pending++;
		err = scsi_lu_discard(cmd->lu, lba[i] * LBS, (uint64_t)n[i] * LBS, scsi_io_done, cmd);
		if (err) {
			cs->pending--;
			cs->err = err;
			break;
		}
	}
	scsi_io_done(cmd, 0);
}

static void unmap(struct kura_scsi_cmd *cmd)
{
	uint32_t len = scsi_be16(cmd->cdb + 7), got, bdl, cnt;
	uint64_t lbas[SCSI_MAX_UNMAP_DESC], total = 0;
	uint32_t ns[SCSI_MAX_UNMAP_DESC];
	const uint8_t *p;

	if (cmd->cdb[1] & 0x01) { /* ANCHOR: anchored blocks are not supported (ANC_SUP 0) */
		scsi_bad_cdb(cmd, 1, 0);
		return;
	}
	if (write_protected(cmd))
		return;
	if (!len) { /* no parameter list: nothing to do, not an error */
		scsi_good(cmd);
		return;
	}
	p = scsi_dout(cmd, len, &got);
	if (len < 8 || got < len) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00); /* PARAMETER LIST LENGTH ERROR */
		return;
	}
	bdl = scsi_be16(p + 2);
	if (scsi_be16(p) + 2u > len || bdl + 8u > len) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return;
	}
	cnt = bdl / 16; /* an incomplete last descriptor is ignored (SBC-3 5.28.2) */
	if (cnt > SCSI_MAX_UNMAP_DESC) {
		scsi_bad_param(cmd, 2, -1);
		return;
	}
	for (uint32_t i = 0; i < cnt; i++) {
		const uint8_t *d = p + 8 + 16 * i;

		lbas[i] = scsi_be64(d);
		ns[i] = scsi_be32(d + 8);
		if (out_of_range(cmd->lu, lbas[i], ns[i])) {
			lba_oob(cmd);
			return;
		}
		total += ns[i];
		if (total > SCSI_MAX_UNMAP_LBAS) {
			scsi_bad_param(cmd, (uint16_t)(8 + 16 * i + 8), -1);
			return;
		}
	}
	discard_ranges(cmd, lbas, ns, cnt);
}

static void write_same(struct kura_scsi_cmd *cmd)
{
	struct scsi_cstate *cs = scsi_cs(cmd);
	struct kura_scsi_lu *lu = cmd->lu;
	bool sixteen = cmd->cdb[0] == 0x93;
	uint64_t lba = sixteen ? scsi_be64(cmd->cdb + 2) : scsi_be32(cmd->cdb + 2);
	uint32_t n = sixteen ? scsi_be32(cmd->cdb + 10) : scsi_be16(cmd->cdb + 7), got;
	uint16_t nfield = sixteen ? 10 : 7;
	bool unmap_bit = cmd->cdb[1] & 0x08, ndob = sixteen && (cmd->cdb[1] & 0x01);
	const uint8_t *blk = NULL;
	size_t blen;

	if (cmd->cdb[1] >> 5) { /* WRPROTECT: no protection information */
		scsi_bad_cdb(cmd, 1, 7);
		return;
	}
	if (cmd->cdb[1] & 0x10) { /* ANCHOR (ANC_SUP 0) */
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	if (cmd->cdb[1] & 0x06) { /* PBDATA / LBDATA (obsolete): not offered */
		scsi_bad_cdb(cmd, 1, cmd->cdb[1] & 0x04 ? 2 : 1);
		return;
	}
	if (out_of_range(lu, lba, n)) {
		lba_oob(cmd);
		return;
	}
	/* WSNZ is 0: zero blocks means up to the last block, within the
	 * MAXIMUM WRITE SAME LENGTH like any other length. */
	if (!n && lba < lu->nblocks && lu->nblocks - lba <= SCSI_MAX_WS_LBAS)
		n = (uint32_t)(lu->nblocks - lba);
	else if (!n && lba < lu->nblocks) {
		scsi_bad_cdb(cmd, nfield, -1);
		return;
	}
	if (n > SCSI_MAX_WS_LBAS) {
		scsi_bad_cdb(cmd, nfield, -1);
		return;
	}
	if (write_protected(cmd))
		return;
	if (!ndob) {
		blk = scsi_dout(cmd, LBS, &got);
		if (cmd->edtl != LBS || got != LBS) {
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x0e, 0x03); /* INVALID FIELD IN INFORMATION UNIT */
			return;
		}
	}
	if (!n) {
		scsi_good(cmd);
		return;
	}
	if (unmap_bit) {
		/* UNMAP with ANCHOR 0 on a thin LU: deallocate (SBC-4's WRITE SAME
		 * table), whatever the block holds; reads then return zeros
		 * (LBPRZ), as initiators that unmap this way expect. Zeros without
		 * UNMAP are written: eager-zeroing initiators expect the blocks
		 * to be allocated afterwards. */
		discard_ranges(cmd, &lba, &n, 1);
		return;
	}
	/* The block repeated over one chunk, written chunk after chunk. */
	blen = KURA_MIN((size_t)n * LBS, (size_t)SCSI_XFER_CHUNK);
	if (!(cs->buf = ndob ? kura_aligned_alloc(blen) : kura_aligned_alloc_raw(blen))) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	for (size_t i = 0; !ndob && i < blen / LBS; i++)
		memcpy(cs->buf + i * LBS, blk, LBS);
	scsi_xfer(cmd, SCSI_XFER_WRITE | SCSI_XFER_REPEAT, lba * LBS, (uint64_t)n * LBS, cs->buf,
		  KURA_IO_GUEST, write_done);
}

/* ---- COMPARE AND WRITE and ORWRITE: read, change, write under one
 * exclusive range lock, so no other write to those blocks lands between
 * the read and the write ---- */

static struct scsi_lock *held_lock(struct kura_scsi_cmd *cmd)
{
	return (struct scsi_lock *)(uintptr_t)scsi_cs(cmd)->b;
}

static void locked_end(struct kura_scsi_cmd *cmd)
{
	scsi_lock_drop(cmd->lu, held_lock(cmd));
	scsi_cs(cmd)->b = 0;
	scsi_complete(cmd);
}

static void locked_written(struct kura_scsi_cmd *cmd, int err)
{
	if (err)
		scsi_io_error(cmd, err, true);
	locked_end(cmd);
}

/* cs->a: byte length of the range; the LBA is in the CDB. */
static void locked_read(struct kura_scsi_cmd *cmd, int err)
{
	struct scsi_cstate *cs = scsi_cs(cmd);
	uint32_t len = (uint32_t)cs->a;
	const uint8_t *src = cs->buf;

	if (err || cmd->aborted) {
		if (err)
			scsi_io_error(cmd, err, false);
		locked_end(cmd);
		return;
	}
	if (cmd->cdb[0] == 0x89) {
		/* Data-Out: the verify data, then the write data. */
		for (uint32_t i = 0; i < len; i++)
			if (cs->buf[i] != cmd->dout[i]) {
				scsi_lock_drop(cmd->lu, held_lock(cmd));
				cs->b = 0;
				miscompare(cmd, i);
				return;
			}
		src = cmd->dout + len;
	} else {
		for (uint32_t i = 0; i < len; i++)
			cs->buf[i] |= cmd->dout[i];
	}
	scsi_xfer(cmd, SCSI_XFER_WRITE | SCSI_XFER_LOCKED, scsi_be64(cmd->cdb + 2) * LBS, len,
		  (uint8_t *)src, KURA_IO_GUEST, locked_written);
}

static void locked_granted(void *arg)
{
	struct kura_scsi_cmd *cmd = arg;
	struct scsi_cstate *cs = scsi_cs(cmd);

	if (cmd->aborted) { /* waited, then aborted: ends here with TASK ABORTED */
		locked_end(cmd);
		return;
	}
	scsi_xfer(cmd, SCSI_XFER_LOCKED, scsi_be64(cmd->cdb + 2) * LBS, cs->a, cs->buf,
		  KURA_IO_GUEST, locked_read);
}

static void locked_start(struct kura_scsi_cmd *cmd, uint64_t lba, uint32_t len)
{
	struct scsi_cstate *cs = scsi_cs(cmd);
	struct scsi_lock *l;

	cs->a = len;
	if (!(cs->buf = kura_aligned_alloc_raw(len)) ||
	    !(l = scsi_lock_take(cmd->lu, lba * LBS, len, true, locked_granted, cmd))) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	cs->b = (uint64_t)(uintptr_t)l;
}

static void compare_and_write(struct kura_scsi_cmd *cmd)
{
	uint64_t lba = scsi_be64(cmd->cdb + 2);
	uint32_t n = cmd->cdb[13], want = 2 * n * LBS, got;

	if (cmd->cdb[1] >> 5) { /* WRPROTECT */
		scsi_bad_cdb(cmd, 1, 7);
		return;
	}
	if (out_of_range(cmd->lu, lba, n)) {
		lba_oob(cmd);
		return;
	}
	if (n > SCSI_MAX_CAW_BLOCKS) {
		scsi_bad_cdb(cmd, 13, -1);
		return;
	}
	if (write_protected(cmd))
		return;
	scsi_dout(cmd, want, &got);
	if (cmd->edtl != want || got != want) {
		/* Half of the buffer would compare against the wrong blocks (a
		 * CAW of "256" blocks arrives as 0 with 256 blocks of data). */
		scsi_bad_cdb(cmd, 13, -1);
		return;
	}
	if (!n) { /* SBC-3: no read or write, and not an error */
		scsi_good(cmd);
		return;
	}
	locked_start(cmd, lba, n * LBS);
}

static void orwrite(struct kura_scsi_cmd *cmd)
{
	struct rw r;
	int64_t n;

	parse_rw(cmd->cdb, &r);
	if (!rw_ok(cmd, &r, true))
		return;
	if ((n = write_len(cmd, r.n * LBS)) < 0)
		return;
	if (!n) {
		scsi_good(cmd);
		return;
	}
	locked_start(cmd, r.lba, (uint32_t)n);
}

/* ---- GET LBA STATUS, READ DEFECT DATA ---- */

static void get_lba_status(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	uint64_t lba = scsi_be64(cmd->cdb + 2);
	uint32_t alloc = scsi_be32(cmd->cdb + 10), max_desc, n = 8;
	uint8_t t[8 + 16 * 64] = {0}, *d;

	if (lba >= lu->nblocks) {
		lba_oob(cmd);
		return;
	}
	/* As many descriptors as the allocation length holds, at least one
	 * (cut by the allocation length like any response). */
	max_desc = alloc < 24 ? 1 : KURA_MIN((alloc - 8) / 16, 64u);
	for (uint32_t i = 0; i < max_desc && lba < lu->nblocks; i++) {
		/* The backend answers per 4 KiB block; a run ends on a block edge. */
		uint64_t pb = lba / SCSI_PB_LBAS, run = 0;
		uint64_t npb = KURA_ALIGN_UP(lu->nblocks, SCSI_PB_LBAS) / SCSI_PB_LBAS;
		uint64_t end, max = KURA_MIN(npb - pb, 0xffffffull);
		int st = lu->o.ops->mapped(lu->o.be, pb, max, &run);

		if (st < 0 || !run) {
			scsi_io_error(cmd, st < 0 ? st : -EIO, false);
			scsi_complete(cmd);
			return;
		}
		end = KURA_MIN((pb + run) * SCSI_PB_LBAS, lu->nblocks);
		scsi_put64(t + n, lba);
		scsi_put32(t + n + 8, (uint32_t)(end - lba));
		t[n + 12] = st ? 0 : 1; /* PROVISIONING STATUS: mapped / deallocated */
		n += 16;
		lba = end;
	}
	scsi_put32(t, n - 4);
	if (!(d = scsi_din(cmd, n, alloc))) {
		scsi_complete(cmd);
		return;
	}
	memcpy(d, t, n);
	scsi_good(cmd);
}

static void read_defect_data(struct kura_scsi_cmd *cmd)
{
	bool twelve = cmd->cdb[0] == 0xb7;
	uint8_t req = twelve ? cmd->cdb[1] : cmd->cdb[2]; /* REQ_PLIST, REQ_GLIST, format */
	uint32_t alloc = twelve ? scsi_be32(cmd->cdb + 6) : scsi_be16(cmd->cdb + 7);
	uint8_t *d;

	/* A virtual disk has no defects: an empty list in the format asked for. */
	if (!(d = scsi_din(cmd, twelve ? 8 : 4, alloc))) {
		scsi_complete(cmd);
		return;
	}
	d[1] = req & 0x1f;
	scsi_good(cmd);
}

bool scsi_sbc_exec(struct kura_scsi_cmd *cmd)
{
	switch (cmd->cdb[0]) {
	case 0x08: case 0x28: case 0xa8: case 0x88: /* READ */
		do_read(cmd);
		return true;
	case 0x0a: case 0x2a: case 0xaa: case 0x8a: /* WRITE */
	case 0x2e: case 0xae: case 0x8e:            /* WRITE AND VERIFY */
		do_write(cmd);
		return true;
	case 0x2f: case 0xaf: case 0x8f:            /* VERIFY */
		do_verify(cmd);
		return true;
	case 0x25:
		read_capacity10(cmd);
		return true;
	case 0x9e: /* SERVICE ACTION IN(16) */
		if ((cmd->cdb[1] & 0x1f) == 0x10)
			read_capacity16(cmd);
		else if ((cmd->cdb[1] & 0x1f) == 0x12)
			get_lba_status(cmd);
		else
			scsi_bad_cdb(cmd, 1, 4);
		return true;
	case 0x35: case 0x91:
		sync_cache(cmd);
		return true;
	case 0x34: case 0x90:
		prefetch(cmd);
		return true;
	case 0x42:
		unmap(cmd);
		return true;
	case 0x41: case 0x93:
		write_same(cmd);
		return true;
	case 0x89:
		compare_and_write(cmd);
		return true;
	case 0x8b:
		orwrite(cmd);
		return true;
	case 0x37: case 0xb7:
		read_defect_data(cmd);
		return true;
	}
	return false;
}
