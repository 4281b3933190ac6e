/* SBC-3 commands: capacity, reads and writes of every size, verify,
 * pre-fetch, cache sync, UNMAP, WRITE SAME, COMPARE AND WRITE, GET LBA
 * STATUS. Transfers are split into backend calls of at most 1 MiB. */
#include "iscsi-target/scsi_int.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1u << 20)
#define MAX_UNMAP_LBAS (1u << 20) /* 512 MiB */
#define MAX_UNMAP_DESC 256u
#define MAX_WS_LBAS (KURA_SCSI_MAX_XFER / KURA_SCSI_LBS)
#define MAX_CAW_BLOCKS 8u

/* The LBA range and flags of a read/write-family CDB. */
struct rw {
	uint64_t lba;
	uint32_t n;
	uint8_t prot; /* RDPROTECT / WRPROTECT / VRPROTECT */
	unsigned len_field; /* byte of the transfer length, for field pointers */
};

static void parse_rw(const uint8_t *cdb, struct rw *r)
{
	memset(r, 0, sizeof(*r));
	switch (cdb[0] >> 5) {
	case 0: /* 6-byte */
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

static bool out_of_range(struct kura_scsi_lu *lu, uint64_t lba, uint64_t n)
{
	return lba > lu->nblocks || n > lu->nblocks - lba;
}

static void lba_oob(struct kura_scsi_cmd *cmd)
{
	scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x21, 0x00);
}

static bool write_protected(struct kura_scsi_cmd *cmd)
{
	if (!cmd->lu->o.read_only && !cmd->lu->swp)
		return false;
	scsi_check(cmd, SK_DATA_PROTECT, 0x27, 0x00);
	return true;
}

/* Checks common to the read/write family; false when it already answered. */
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
	if ((uint64_t)r->n * KURA_SCSI_LBS > KURA_SCSI_MAX_XFER) {
		scsi_bad_cdb(cmd, (uint16_t)r->len_field, -1);
		return false;
	}
	if (write && write_protected(cmd))
		return false;
	return true;
}

/* Issues buf-sized I/O in chunks; step runs when all are done. */
static void chunked(struct kura_scsi_cmd *cmd, bool write, uint64_t off, uint64_t len,
		    uint8_t *buf, enum kura_io_class cls, void (*step)(struct kura_scsi_cmd *, int))
{
	struct scsi_cstate *cs = scsi_cs(cmd);

	cs->step = step;
	cs->err = 0;
	cs->pending = 1; /* held until every chunk is submitted */
	for (uint64_t done = 0; done < len;) {
		uint64_t n = len - done < CHUNK ? len - done : CHUNK;
		int err;

		cs->pending++;
		err = write ? scsi_lu_write(cmd->lu, off + done, n, buf + done, cls, scsi_io_done, cmd)
			    : scsi_lu_read(cmd->lu, off + done, n, buf + done, cls, scsi_io_done, cmd);
		if (err) {
			cs->pending--;
			if (!cs->err)
				cs->err = err;
			break;
		}
		done += n;
	}
	if (--cs->pending == 0)
		step(cmd, cs->err);
}

static void rw_done(struct kura_scsi_cmd *cmd, int err)
{
	if (err)
		scsi_io_error(cmd, err, cmd->cdb[0] != 0x08 && cmd->cdb[0] != 0x28 &&
					    cmd->cdb[0] != 0xa8 && cmd->cdb[0] != 0x88);
	scsi_complete(cmd);
}

static void do_read(struct kura_scsi_cmd *cmd)
{
	struct rw r;
	uint32_t want;
	uint8_t *d;

	parse_rw(cmd->cdb, &r);
	if (cmd->cdb[0] == 0x08 && !cmd->cdb[4])
		r.n = 256;
	if (!rw_ok(cmd, &r, false))
		return;
	want = r.n * KURA_SCSI_LBS;
	if (!(d = scsi_din(cmd, want, want))) {
		scsi_complete(cmd);
		return;
	}
	if (!r.n) {
		scsi_good(cmd);
		return;
	}
	chunked(cmd, false, r.lba * KURA_SCSI_LBS, want, d, KURA_IO_GUEST, rw_done);
}

/* A write whose Expected Data Transfer Length differs from what the CDB
 * names transfers the smaller of the two (SAM-5 5.4.3; iSCSI residuals):
 * the blocks past it are left as they were. */
static void do_write(struct kura_scsi_cmd *cmd)
{
	struct rw r;
	uint32_t want, got, n;

	parse_rw(cmd->cdb, &r);
	if (!rw_ok(cmd, &r, true))
		return;
	want = r.n * KURA_SCSI_LBS;
	scsi_dout(cmd, want, &got);
	n = want < cmd->edtl ? want : cmd->edtl;
	if (n > got)
		n = got;
	if (!n) {
		scsi_good(cmd);
		return;
	}
	chunked(cmd, true, r.lba * KURA_SCSI_LBS, n, cmd->dout, KURA_IO_GUEST, rw_done);
}

/* ---- VERIFY: read back and compare when BYTCHK asks ---- */

static void miscompare(struct kura_scsi_cmd *cmd, uint32_t at)
{
	scsi_check(cmd, SK_MISCOMPARE, 0x1d, 0x00);
	cmd->sense[0] |= 0x80; /* VALID: INFORMATION holds the offset */
	scsi_put32(cmd->sense + 3, at);
}

static void verify_read(struct kura_scsi_cmd *cmd, int err)
{
	struct scsi_cstate *cs = scsi_cs(cmd);
	uint32_t len = (uint32_t)cs->a, unit = (uint32_t)cs->b;

	if (err) {
		scsi_io_error(cmd, err, false);
		scsi_complete(cmd);
		return;
	}
	for (uint32_t i = 0; i < len; i++)
		if (cs->buf[i] != cmd->dout[unit ? i % unit : i]) {
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
	want = bytchk == 0 ? 0 : bytchk == 1 ? r.n * KURA_SCSI_LBS : (r.n ? KURA_SCSI_LBS : 0);
	scsi_dout(cmd, want, &got);
	if (got < want || cmd->edtl != want) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x0e, 0x03);
		return;
	}
	if (!r.n || !bytchk) {
		/* Every block carries a checksum the store verifies on reads; a
		 * VERIFY without data to compare reads the blocks to prove it. */
		if (!r.n) {
			scsi_good(cmd);
			return;
		}
	}
	cs->buf = kura_aligned_alloc((size_t)r.n * KURA_SCSI_LBS);
	if (!cs->buf) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	cs->a = bytchk ? (uint64_t)r.n * KURA_SCSI_LBS : 0;
	cs->b = bytchk == 3 ? KURA_SCSI_LBS : 0;
	chunked(cmd, false, r.lba * KURA_SCSI_LBS, (uint64_t)r.n * KURA_SCSI_LBS, cs->buf,
		KURA_IO_GUEST, verify_read);
}

/* ---- capacity, cache, pre-fetch ---- */

static void read_capacity10(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	uint8_t *d;

	if (!(cmd->cdb[8] & 1) && scsi_be32(cmd->cdb + 2)) {
		scsi_bad_cdb(cmd, 2, -1);
		return;
	}
	if (!(d = scsi_din(cmd, 8, 8))) {
		scsi_complete(cmd);
		return;
	}
	scsi_put32(d, lu->nblocks - 1 > 0xffffffffull ? 0xffffffffu : (uint32_t)(lu->nblocks - 1));
	scsi_put32(d + 4, KURA_SCSI_LBS);
	scsi_good(cmd);
}

static void read_capacity16(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	uint32_t alloc = scsi_be32(cmd->cdb + 10);
	uint8_t *d;

	if (!(d = scsi_din(cmd, 32, alloc))) {
		scsi_complete(cmd);
		return;
	}
	{
		uint8_t t[32] = {0};
		scsi_put64(t, lu->nblocks - 1);
		scsi_put32(t + 8, KURA_SCSI_LBS);
		/* LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT stays 0: 4 KiB alignment is
		 * advertised as OPTIMAL TRANSFER LENGTH GRANULARITY instead, and any
		 * 512-byte write is exact (read-modify-write below the LU). */
		t[14] = 0xc0; /* LBPME, LBPRZ */
		memcpy(d, t, alloc < 32 ? alloc : 32);
	}
	scsi_good(cmd);
}

static void flushed(void *arg, int err)
{
	struct kura_scsi_cmd *cmd = arg;

	if (err)
		scsi_io_error(cmd, err, true);
	scsi_complete(cmd);
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
	if ((err = cmd->lu->o.ops->flush(cmd->lu->o.be, flushed, cmd)))
		flushed(cmd, err);
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
	/* Blocks are read from the store on demand; there is no cache to fill. */
	scsi_good(cmd);
}

/* ---- UNMAP and WRITE SAME ---- */

static void discard_ranges(struct kura_scsi_cmd *cmd, const uint64_t *lba, const uint32_t *n,
			   unsigned cnt)
{
	struct scsi_cstate *cs = scsi_cs(cmd);

	cs->step = rw_done;
	cs->err = 0;
	cs->pending = 1;
	for (unsigned i = 0; i < cnt; i++) {
		int err;
		if (!n[i])
			continue;
		cs->pending++;
		err = scsi_lu_discard(cmd->lu, lba[i] * KURA_SCSI_LBS, (uint64_t)n[i] * KURA_SCSI_LBS,
				      scsi_io_done, cmd);
		if (err) {
			cs->pending--;
			cs->err = err;
			break;
		}
	}
	if (--cs->pending == 0)
		rw_done(cmd, cs->err);
}

static void unmap(struct kura_scsi_cmd *cmd)
{
	uint32_t len = scsi_be16(cmd->cdb + 7), got, bdl, cnt;
	uint64_t lbas[MAX_UNMAP_DESC];
	uint32_t ns[MAX_UNMAP_DESC];
	const uint8_t *p;

	if (cmd->cdb[1] & 0x01) { /* ANCHOR: anchored blocks are not supported */
		scsi_bad_cdb(cmd, 1, 0);
		return;
	}
	if (write_protected(cmd))
		return;
	if (!len) {
		scsi_good(cmd);
		return;
	}
	p = scsi_dout(cmd, len, &got);
	if (len < 8 || got < len) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return;
	}
	bdl = scsi_be16(p + 2);
	if (scsi_be16(p) + 2u > len || bdl + 8u > len || bdl % 16) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return;
	}
	cnt = bdl / 16;
	if (cnt > MAX_UNMAP_DESC) {
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
		if (ns[i] > MAX_UNMAP_LBAS) {
			scsi_bad_param(cmd, (uint16_t)(8 + 16 * i + 8), -1);
			return;
		}
	}
	discard_ranges(cmd, lbas, ns, cnt);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* WRITE SAME with a pattern: writes buffers of the block repeated. */
static void ws_next(struct kura_scsi_cmd *cmd, int err)
{
	struct scsi_cstate *cs = scsi_cs(cmd);
	uint64_t off = cs->a, end = cs->b, n;
	int e;

	if (err || off >= end) {
		rw_done(cmd, err);
		return;
	}
	n = end - off < CHUNK ? end - off : CHUNK;
	cs->a = off + n;
	cs->step = ws_next;
	cs->err = 0;
	cs->pending = 1;
	if ((e = scsi_lu_write(cmd->lu, off, n, cs->buf, KURA_IO_GUEST, scsi_io_done, cmd)))
		scsi_io_done(cmd, e);
}

static void write_same(struct kura_scsi_cmd *cmd)
{
	struct scsi_cstate *cs = scsi_cs(cmd);
	bool sixteen = cmd->cdb[0] == 0x93;
	uint64_t lba = sixteen ? scsi_be64(cmd->cdb + 2) : scsi_be32(cmd->cdb + 2);
	uint32_t n = sixteen ? scsi_be32(cmd->cdb + 10) : scsi_be16(cmd->cdb + 7);
	bool unmap_bit = cmd->cdb[1] & 0x08, ndob = sixteen && (cmd->cdb[1] & 0x01);
	uint32_t got;
	const uint8_t *blk = NULL;

	if (cmd->cdb[1] >> 5) {
		scsi_bad_cdb(cmd, 1, 7);
		return;
	}
	if (cmd->cdb[1] & 0x10) { /* ANCHOR */
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	if (out_of_range(cmd->lu, lba, n)) {
		lba_oob(cmd);
		return;
	}
	if (!n) { /* WSNZ: zero blocks is not "to the end" here */
		scsi_bad_cdb(cmd, sixteen ? 10 : 7, -1);
		return;
	}
	if (n > MAX_WS_LBAS) {
		scsi_bad_cdb(cmd, sixteen ? 10 : 7, -1);
		return;
	}
	if (write_protected(cmd))
		return;
	if (!ndob) {
		blk = scsi_dout(cmd, KURA_SCSI_LBS, &got);
		if (cmd->edtl != KURA_SCSI_LBS || got != KURA_SCSI_LBS) {
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x0e, 0x03);
			return;
		}
	}
	if (ndob || (unmap_bit && all_zero(blk, KURA_SCSI_LBS))) {
		/* Zeros with UNMAP: deallocate (reads return zeros, LBPRZ). Zeros
		 * without it are written, as eager-zeroing initiators expect. */
		discard_ranges(cmd, &lba, &n, 1);
		return;
	}
	cs->buf = kura_aligned_alloc(CHUNK);
	if (!cs->buf) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	for (uint32_t i = 0; i < CHUNK / KURA_SCSI_LBS; i++)
		memcpy(cs->buf + (size_t)i * KURA_SCSI_LBS, blk, KURA_SCSI_LBS);
	cs->a = lba * KURA_SCSI_LBS;
	cs->b = (lba + n) * KURA_SCSI_LBS;
	ws_next(cmd, 0);
}

/* ---- COMPARE AND WRITE ---- */

static void caw_written(void *arg, int err)
{
	struct kura_scsi_cmd *cmd = arg;
	struct scsi_cstate *cs = scsi_cs(cmd);

	scsi_lock_drop(cmd->lu, (struct scsi_lock *)(uintptr_t)cs->b);
	if (err)
		scsi_io_error(cmd, err, true);
	scsi_complete(cmd);
}

static void caw_read(void *arg, int err)
{
	struct kura_scsi_cmd *cmd = arg;
	struct scsi_cstate *cs = scsi_cs(cmd);
	struct kura_scsi_lu *lu = cmd->lu;
	uint32_t len = (uint32_t)cmd->cdb[13] * KURA_SCSI_LBS;
	uint64_t off = scsi_be64(cmd->cdb + 2) * KURA_SCSI_LBS;

	if (!err && cmd->aborted)
		err = -ECANCELED;
	if (!err) {
		for (uint32_t i = 0; i < len; i++)
			if (cs->buf[i] != cmd->dout[i]) {
				scsi_lock_drop(lu, (struct scsi_lock *)(uintptr_t)cs->b);
				miscompare(cmd, i);
				return;
			}
		/* The lock is ours: write under it. */
		err = scsi_lu_write_locked(lu, off, len, cmd->dout + len, caw_written, cmd);
		if (!err)
			return;
	}
	caw_written(cmd, err == -ECANCELED ? 0 : err);
}

static void caw_locked(void *arg)
{
	struct kura_scsi_cmd *cmd = arg;
	struct scsi_cstate *cs = scsi_cs(cmd);
	struct kura_scsi_lu *lu = cmd->lu;
	uint32_t len = (uint32_t)cmd->cdb[13] * KURA_SCSI_LBS;
	int err;

	if (cmd->aborted) {
		caw_written(cmd, 0);
		return;
	}
	err = scsi_lu_read_locked(lu, scsi_be64(cmd->cdb + 2) * KURA_SCSI_LBS, len, cs->buf,
				  caw_read, cmd);
	if (err)
		caw_written(cmd, err);
}

static void compare_and_write(struct kura_scsi_cmd *cmd)
{
	struct scsi_cstate *cs = scsi_cs(cmd);
	uint64_t lba = scsi_be64(cmd->cdb + 2);
	uint32_t n = cmd->cdb[13], want = 2 * n * KURA_SCSI_LBS, got;
	struct scsi_lock *l;

	if (cmd->cdb[1] >> 5) {
		scsi_bad_cdb(cmd, 1, 7);
		return;
	}
	if (out_of_range(cmd->lu, lba, n)) {
		lba_oob(cmd);
		return;
	}
	if (n > MAX_CAW_BLOCKS) {
		scsi_bad_cdb(cmd, 13, -1);
		return;
	}
	if (write_protected(cmd))
		return;
	scsi_dout(cmd, want, &got);
	if (cmd->edtl != want || got != want) {
		scsi_bad_cdb(cmd, 13, -1);
		return;
	}
	if (!n) {
		scsi_good(cmd);
		return;
	}
	if (!(cs->buf = kura_aligned_alloc((size_t)n * KURA_SCSI_LBS)) ||
	    !(l = scsi_lock_take(cmd->lu, lba * KURA_SCSI_LBS, (uint64_t)n * KURA_SCSI_LBS, true,
				 caw_locked, cmd))) {
		scsi_check(cmd, SK_HARDWARE_ERROR, 0x44, 0x00);
		return;
	}
	cs->b = (uint64_t)(uintptr_t)l;
}

/* ---- GET LBA STATUS ---- */

static void get_lba_status(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	uint64_t lba = scsi_be64(cmd->cdb + 2);
	uint32_t alloc = scsi_be32(cmd->cdb + 10), max_desc, n = 8;
	uint8_t *d;

	if (lba >= lu->nblocks) {
		lba_oob(cmd);
		return;
	}
	max_desc = alloc < 24 ? 1 : (alloc - 8) / 16;
	if (max_desc > 256)
		max_desc = 256;
	if (!(d = scsi_din(cmd, 8 + 16 * max_desc, 8 + 16 * max_desc)))
		goto out;
	for (uint32_t i = 0; i < max_desc && lba < lu->nblocks; i++) {
		/* The backend answers per 4 KiB block; a run ends on a block edge. */
		const uint64_t per = KURA_SCSI_PBS / KURA_SCSI_LBS;
		uint64_t pb = lba / per, run = 0, npb = (lu->nblocks + per - 1) / per;
		uint64_t max = npb - pb, end;
		int st = lu->o.ops->mapped(lu->o.be, pb, max > 0xffffffu ? 0xffffffu : max, &run);

		if (st < 0) {
			scsi_io_error(cmd, st, false);
			goto out;
		}
		end = (pb + run) * per;
		if (end > lu->nblocks)
			end = lu->nblocks;
		scsi_put64(d + n, lba);
		scsi_put32(d + n + 8, (uint32_t)(end - lba));
		d[n + 12] = st ? 0 : 1; /* mapped / deallocated */
		n += 16;
		lba = end;
	}
	scsi_put32(d, n - 4);
	/* Report what we filled, within the allocation length. */
	{
		uint32_t keep = n < alloc ? n : alloc;
		cmd->din_len = keep < cmd->edtl ? keep : cmd->edtl;
		cmd->overflow = keep > cmd->edtl;
		cmd->underflow = keep < cmd->edtl;
		cmd->residual = keep > cmd->edtl ? keep - cmd->edtl : cmd->edtl - keep;
	}
	scsi_good(cmd);
	return;
out:
	scsi_complete(cmd);
}

bool scsi_sbc_exec(struct kura_scsi_cmd *cmd)
{
	switch (cmd->cdb[0]) {
	case 0x08: case 0x28: case 0xa8: case 0x88:
		do_read(cmd);
		return true;
	case 0x0a: case 0x2a: case 0xaa: case 0x8a:
	case 0x2e: case 0xae: case 0x8e: /* WRITE AND VERIFY: a durable write is verified */
		do_write(cmd);
		return true;
	case 0x2f: case 0xaf: case 0x8f:
		do_verify(cmd);
		return true;
	case 0x25:
		read_capacity10(cmd);
		return true;
	case 0x9e:
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
	}
	return false;
}
