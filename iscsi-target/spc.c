/* SPC-4 commands every LU answers: TEST UNIT READY, REQUEST SENSE,
 * INQUIRY and its VPD pages, MODE SENSE/SELECT, START STOP UNIT, REPORT
 * LUNS, REPORT SUPPORTED OPERATION CODES. */
#include "iscsi-target/scsi_int.h"

#include <stdio.h>
#include <string.h>

/* ---- INQUIRY ---- */

static void ascii(uint8_t *dst, const char *s, size_t n)
{
	size_t l = strlen(s);

	memset(dst, ' ', n);
	memcpy(dst, s, l < n ? l : n);
}

static uint32_t std_inquiry(struct kura_scsi_lu *lu, uint8_t *d)
{
	(void)lu;
	d[0] = 0x00;                 /* direct access block device */
	d[2] = 0x06;                 /* SPC-4 */
	d[3] = 0x12;                 /* HISUP, response data format 2 */
	d[5] = 0x08;                 /* 3PC: third-party copy (EXTENDED COPY) */
	d[7] = 0x02;                 /* CMDQUE */
	ascii(d + 8, "KURA", 8);
	ascii(d + 16, "VDISK", 16);
	ascii(d + 32, "0001", 4);
	/* Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3. */
	scsi_put16(d + 58, 0x00a0);
	scsi_put16(d + 60, 0x0960);
	scsi_put16(d + 62, 0x0460);
	scsi_put16(d + 64, 0x04c0);
	d[4] = 66 - 5;
	return 66;
}

static const uint8_t vpd_pages[] = {0x00, 0x80, 0x83, 0x86, 0xb0, 0xb1, 0xb2};

static uint32_t vpd(struct kura_scsi_lu *lu, uint8_t page, uint8_t *d)
{
	uint32_t n = 4;

	d[1] = page;
	switch (page) {
	case 0x00:
		memcpy(d + 4, vpd_pages, sizeof(vpd_pages));
		n += sizeof(vpd_pages);
		break;
	case 0x80: { /* unit serial number: the NAA id in hex, stable per vdisk */
		char s[33];
		for (int i = 0; i < 16; i++)
			snprintf(s + 2 * i, 3, "%02x", lu->naa[i]);
		memcpy(d + 4, s, 32);
		n += 32;
		break;
	}
	case 0x83: {
		uint8_t *p = d + 4;
		size_t nl = strlen(lu->name);
		/* NAA, binary, LU */
		p[0] = 0x01;
		p[1] = 0x03;
		p[3] = 16;
		memcpy(p + 4, lu->naa, 16);
		p += 20;
		/* T10 vendor id, ASCII, LU: "KURA    " + name */
		if (nl > 64)
			nl = 64;
		p[0] = 0x02;
		p[1] = 0x01;
		p[3] = (uint8_t)(8 + nl);
		ascii(p + 4, "KURA", 8);
		memcpy(p + 12, lu->name, nl);
		p += 4 + 8 + nl;
		/* relative target port, binary, target port, iSCSI */
		p[0] = 0x51;
		p[1] = 0x94;
		p[3] = 4;
		scsi_put16(p + 6, 1);
		p += 8;
		/* target port group, binary, target port, iSCSI */
		p[0] = 0x51;
		p[1] = 0x95;
		p[3] = 4;
		scsi_put16(p + 6, 1);
		p += 8;
		n = (uint32_t)(p - d);
		break;
	}
	case 0x86: /* extended INQUIRY: simple task attribute, head of queue */
		d[5] = 0x07; /* HEADSUP ORDSUP SIMPSUP */
		d[6] = 0x00;
		n = 64;
		break;
	case 0xb0: /* block limits */
		d[4] = 0x00;                                 /* WSNZ 0: WRITE SAME of 0 blocks = to the end */
		d[5] = SCSI_MAX_CAW_BLOCKS;                  /* MAXIMUM COMPARE AND WRITE LENGTH */
		scsi_put16(d + 6, SCSI_PB_LBAS);             /* OPTIMAL TRANSFER LENGTH GRANULARITY: 4 KiB */
		scsi_put32(d + 8, SCSI_MAX_XFER_LBAS);       /* MAXIMUM TRANSFER LENGTH */
		scsi_put32(d + 12, SCSI_XFER_CHUNK / KURA_SCSI_LBS); /* OPTIMAL TRANSFER LENGTH: 1 MiB */
		scsi_put32(d + 20, SCSI_MAX_UNMAP_LBAS);     /* MAXIMUM UNMAP LBA COUNT */
		scsi_put32(d + 24, SCSI_MAX_UNMAP_DESC);     /* MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT */
		scsi_put32(d + 28, SCSI_PB_LBAS);            /* OPTIMAL UNMAP GRANULARITY */
		d[32] = 0x80;                                /* UGAVALID: granularity aligned at LBA 0 */
		scsi_put64(d + 36, SCSI_MAX_WS_LBAS);        /* MAXIMUM WRITE SAME LENGTH */
		n = 64;
		break;
	case 0xb1: /* block device characteristics */
		scsi_put16(d + 4, 0x0001);                   /* non-rotating medium */
		n = 64;
		break;
	case 0xb2: /* logical block provisioning */
		d[5] = 0xe4; /* LBPU LBPWS LBPWS10, LBPRZ (bits 4-2 = 001) */
		d[6] = 0x02; /* provisioning type: thin */
		n = 8;
		break;
	default:
		return 0;
	}
	scsi_put16(d + 2, (uint16_t)(n - 4));
	return n;
}

static void inquiry(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	uint8_t tmp[512] = {0};
	uint32_t alloc = scsi_be16(cmd->cdb + 3), n;
	uint8_t *d;

	if (cmd->cdb[1] & 0xfe) {
		scsi_bad_cdb(cmd, 1, 1);
		return;
	}
	if (cmd->cdb[1] & 1) {
		n = vpd(lu, cmd->cdb[2], tmp);
		if (!n) {
			scsi_bad_cdb(cmd, 2, -1);
			return;
		}
	} else {
		if (cmd->cdb[2]) {
			scsi_bad_cdb(cmd, 2, -1);
			return;
		}
		n = std_inquiry(lu, tmp);
	}
	if (!(d = scsi_din(cmd, n, alloc))) {
		scsi_complete(cmd);
		return;
	}
	memcpy(d, tmp, n < alloc ? n : alloc);
	scsi_good(cmd);
}

/* ---- MODE SENSE / SELECT ---- */

/* One page into p (current, changeable or default values); its length. */
static uint32_t mode_page(struct kura_scsi_lu *lu, uint8_t page, int pc, uint8_t *p)
{
	switch (page) {
	case 0x08: /* caching */
		p[0] = 0x08;
		p[1] = 0x12;
		if (pc == 0)
			p[2] = lu->wce ? 0x04 : 0x00;
		else if (pc == 1)
			p[2] = 0x04; /* WCE changeable: writes without FUA may complete cached */
		return 20;
	case 0x0a: /* control */
		p[0] = 0x0a;
		p[1] = 0x0a;
		if (pc == 0) {
			p[3] = 0x10;                   /* QERR 00, queue algorithm modifier 1 */
			p[4] = lu->swp ? 0x08 : 0x00;  /* SWP */
			scsi_put16(p + 10, 0xffff);    /* busy timeout period: unlimited */
		} else if (pc == 1) {
			p[4] = 0x08; /* SWP changeable */
		} else {
			p[3] = 0x10;
			scsi_put16(p + 10, 0xffff);
		}
		return 12;
	case 0x1c: /* informational exceptions control */
		p[0] = 0x1c;
		p[1] = 0x0a;
		return 12;
	}
	return 0;
}

static void mode_sense(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	bool ten = cmd->cdb[0] == 0x5a;
	bool dbd = cmd->cdb[1] & 0x08, llbaa = ten && (cmd->cdb[1] & 0x10);
	int pc = cmd->cdb[2] >> 6;
	uint8_t page = cmd->cdb[2] & 0x3f, sub = cmd->cdb[3];
	uint32_t alloc = ten ? scsi_be16(cmd->cdb + 7) : cmd->cdb[4];
	uint8_t tmp[512] = {0}, *d;
	uint32_t hl = ten ? 8 : 4, bl = dbd ? 0 : (llbaa ? 16 : 8), n;

	if (pc == 3) {
		scsi_check_field(cmd, SK_ILLEGAL_REQUEST, 0x39, 0x00, true, 2, 7); /* SAVING PARAMETERS NOT SUPPORTED */
		return;
	}
	if (sub && sub != 0xff) {
		scsi_bad_cdb(cmd, 3, -1);
		return;
	}
	n = hl + bl;
	if (page == 0x3f) {
		static const uint8_t all[] = {0x08, 0x0a, 0x1c};
		for (unsigned i = 0; i < sizeof(all); i++)
			n += mode_page(lu, all[i], pc, tmp + n);
	} else {
		uint32_t pl = mode_page(lu, page, pc, tmp + n);
		if (!pl || sub == 0xff) {
			scsi_bad_cdb(cmd, 2, 5);
			return;
		}
		n += pl;
	}
	/* Header: mode data length, medium type 0, device-specific (WP), block descriptor length. */
	if (ten) {
		scsi_put16(tmp, (uint16_t)(n - 2));
		tmp[3] = ((lu->o.read_only || lu->swp) ? 0x80 : 0) | 0x10; /* WP, DPOFUA */
		tmp[4] = llbaa ? 1 : 0;
		scsi_put16(tmp + 6, (uint16_t)bl);
	} else {
		tmp[0] = (uint8_t)(n - 1);
		tmp[2] = ((lu->o.read_only || lu->swp) ? 0x80 : 0) | 0x10; /* WP, DPOFUA */
		tmp[3] = (uint8_t)bl;
	}
	if (bl == 8) {
		scsi_put32(tmp + hl, lu->nblocks > 0xffffffffull ? 0xffffffffu : (uint32_t)lu->nblocks);
		scsi_put32(tmp + hl + 4, KURA_SCSI_LBS);
	} else if (bl == 16) {
		scsi_put64(tmp + hl, lu->nblocks);
		scsi_put32(tmp + hl + 12, KURA_SCSI_LBS);
	}
	if (!(d = scsi_din(cmd, n, alloc))) {
		scsi_complete(cmd);
		return;
	}
	memcpy(d, tmp, n < alloc ? n : alloc);
	scsi_good(cmd);
}

/* A block descriptor in MODE SELECT may only restate the LU's geometry:
 * NUMBER OF LOGICAL BLOCKS 0 (unchanged) or the current count, and the
 * current block length. False when it answered. */
static bool block_desc_ok(struct kura_scsi_cmd *cmd, const uint8_t *p, uint32_t hl, uint32_t bl,
			  bool longlba)
{
	uint64_t nb = cmd->lu->nblocks, have;
	const uint8_t *b = p + hl;
	uint32_t blen;

	if (bl != (longlba ? 16u : 8u)) {
		scsi_bad_param(cmd, (uint16_t)(hl - (hl == 8 ? 2 : 1)), -1);
		return false;
	}
	if (longlba) {
		have = scsi_be64(b);
		blen = scsi_be32(b + 12);
	} else {
		have = scsi_be32(b);
		blen = scsi_be24(b + 5);
		if (nb > 0xffffffffull)
			nb = 0xffffffffull;
	}
	if (have && have != nb) {
		scsi_bad_param(cmd, (uint16_t)hl, -1);
		return false;
	}
	if (blen != KURA_SCSI_LBS) {
		scsi_bad_param(cmd, (uint16_t)(hl + (longlba ? 12 : 5)), -1);
		return false;
	}
	return true;
}

static void mode_select(struct kura_scsi_cmd *cmd)
{
	struct kura_scsi_lu *lu = cmd->lu;
	bool ten = cmd->cdb[0] == 0x55;
	uint32_t len = ten ? scsi_be16(cmd->cdb + 7) : cmd->cdb[4], got, hl = ten ? 8 : 4, bl, off;
	const uint8_t *p;
	bool wce = lu->wce, swp = lu->swp;

	if (!(cmd->cdb[1] & 0x10)) { /* PF: pages in the standard format only */
		scsi_bad_cdb(cmd, 1, 4);
		return;
	}
	if (cmd->cdb[1] & 0x01) { /* SP */
		scsi_bad_cdb(cmd, 1, 0);
		return;
	}
	if (!len) {
		scsi_good(cmd);
		return;
	}
	p = scsi_dout(cmd, len, &got);
	if (got < len || len < hl) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00); /* PARAMETER LIST LENGTH ERROR */
		return;
	}
	bl = ten ? scsi_be16(p + 6) : p[3];
	off = hl + bl;
	if (off > len) {
		scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return;
	}
	if (p[ten ? 2 : 1]) { /* MEDIUM TYPE: 0 for a direct-access block device */
		scsi_bad_param(cmd, ten ? 2 : 1, -1);
		return;
	}
	if (bl && !block_desc_ok(cmd, p, hl, bl, ten && (p[4] & 1)))
		return;
	while (off < len) {
		uint8_t cur[64] = {0}, chg[64] = {0};
		uint32_t pl;

		if (len - off < 2) {
			scsi_check(cmd, SK_ILLEGAL_REQUEST, 0x1a, 0x00);
			return;
		}
		pl = mode_page(lu, p[off] & 0x3f, 0, cur);
		mode_page(lu, p[off] & 0x3f, 1, chg);
		if (!pl || (p[off] & 0x40)) {
			scsi_bad_param(cmd, (uint16_t)off, 5);
			return;
		}
		if (p[off + 1] != pl - 2 || off + pl > len) {
			scsi_bad_param(cmd, (uint16_t)(off + 1), -1);
			return;
		}
		/* Every bit that is not changeable must keep its current value. */
		for (uint32_t i = 2; i < pl; i++)
			if ((p[off + i] ^ cur[i]) & ~chg[i]) {
				scsi_bad_param(cmd, (uint16_t)(off + i), -1);
				return;
			}
		if ((p[off] & 0x3f) == 0x08)
			wce = p[off + 2] & 0x04;
		else if ((p[off] & 0x3f) == 0x0a)
			swp = p[off + 4] & 0x08;
		off += pl;
	}
	if (wce != lu->wce || swp != lu->swp) {
		lu->wce = wce;
		lu->swp = swp;
		scsi_ua_all(lu, cmd->nexus->id, 0x2a, 0x01); /* MODE PARAMETERS CHANGED */
	}
	scsi_good(cmd);
}

/* ---- the rest ---- */

static void request_sense(struct kura_scsi_cmd *cmd)
{
	uint32_t alloc = cmd->cdb[4];
	uint8_t asc = 0, ascq = 0, key = SK_NO_SENSE, *d;

	if (cmd->cdb[1] & 0x01) { /* DESC: descriptor format is not offered */
		scsi_bad_cdb(cmd, 1, 0);
		return;
	}
	if (scsi_ua_pop(cmd->lu, cmd->nexus->id, &asc, &ascq))
		key = SK_UNIT_ATTENTION;
	if (!(d = scsi_din(cmd, 18, alloc))) {
		scsi_complete(cmd);
		return;
	}
	{
		uint8_t s[18] = {0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq};
		memcpy(d, s, alloc < 18 ? alloc : 18);
	}
	scsi_good(cmd);
}

static void report_luns(struct kura_scsi_cmd *cmd)
{
	uint32_t alloc = scsi_be32(cmd->cdb + 6);
	uint8_t sel = cmd->cdb[2], *d;

	if (sel > 2) { /* SPC-4: all LUs, well-known LUs, all LUs and well-known LUs */
		scsi_bad_cdb(cmd, 2, -1);
		return;
	}
	if (alloc < 16) {
		scsi_bad_cdb(cmd, 6, -1);
		return;
	}
	/* LUN 0, and no well-known LUs. */
	if (!(d = scsi_din(cmd, sel == 1 ? 8 : 16, alloc))) {
		scsi_complete(cmd);
		return;
	}
	scsi_put32(d, sel == 1 ? 0 : 8);
	scsi_good(cmd);
}

static void start_stop(struct kura_scsi_cmd *cmd)
{
	uint8_t pc = cmd->cdb[4] >> 4;

	if (pc && pc != 0x1 && pc != 0x2 && pc != 0x3 && pc != 0x7 && pc != 0xa && pc != 0xb) {
		scsi_bad_cdb(cmd, 4, 7);
		return;
	}
	if ((cmd->cdb[4] & 0x02) && !pc) {
		/* LOEJ: a vdisk has no medium to eject. */
		scsi_check_field(cmd, SK_ILLEGAL_REQUEST, 0x53, 0x02, true, 4, 1); /* MEDIUM REMOVAL PREVENTED */
		return;
	}
	scsi_good(cmd);
}

/* ---- REPORT SUPPORTED OPERATION CODES ---- */

struct opinfo {
	uint8_t op;
	uint16_t sa;      /* 0xffff: no service action */
	uint8_t len;      /* CDB length */
	uint8_t mask[16]; /* CDB usage data */
};

/* Every command kura_scsi_exec runs (spc.c, sbc.c, pr.c, xcopy.c), with the
 * CDB bits it looks at. The CONTROL byte is 0: NACA and linked commands are
 * not supported. */
static const struct opinfo ops[] = {
	{0x00, 0xffff, 6, {0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
	{0x03, 0xffff, 6, {0x03, 0x01, 0x00, 0x00, 0xff, 0x00}},
	{0x08, 0xffff, 6, {0x08, 0x1f, 0xff, 0xff, 0xff, 0x00}},
	{0x0a, 0xffff, 6, {0x0a, 0x1f, 0xff, 0xff, 0xff, 0x00}},
	{0x12, 0xffff, 6, {0x12, 0x01, 0xff, 0xff, 0xff, 0x00}},
	{0x15, 0xffff, 6, {0x15, 0x11, 0x00, 0x00, 0xff, 0x00}},
	{0x16, 0xffff, 6, {0x16, 0x00, 0x00, 0x00, 0x00, 0x00}},
	{0x17, 0xffff, 6, {0x17, 0x00, 0x00, 0x00, 0x00, 0x00}},
	{0x1a, 0xffff, 6, {0x1a, 0x08, 0xff, 0xff, 0xff, 0x00}},
	{0x1b, 0xffff, 6, {0x1b, 0x01, 0x00, 0x0f, 0xf7, 0x00}},
	{0x25, 0xffff, 10, {0x25, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x00}},
	{0x28, 0xffff, 10, {0x28, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00}},
	{0x2a, 0xffff, 10, {0x2a, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00}},
	{0x2e, 0xffff, 10, {0x2e, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00}},
	{0x2f, 0xffff, 10, {0x2f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00}},
	{0x34, 0xffff, 10, {0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00}},
	{0x35, 0xffff, 10, {0x35, 0x06, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00}},
	{0x37, 0xffff, 10, {0x37, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00}},
	{0x41, 0xffff, 10, {0x41, 0xe8, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00}},
	{0x42, 0xffff, 10, {0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0xff, 0xff, 0x00}},
	{0x55, 0xffff, 10, {0x55, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00}},
	{0x5a, 0xffff, 10, {0x5a, 0x18, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00}},
	{0x5e, 0x00, 10, {0x5e, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00}},
	{0x5e, 0x01, 10, {0x5e, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00}},
	{0x5e, 0x02, 10, {0x5e, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00}},
	{0x5e, 0x03, 10, {0x5e, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00}},
	{0x5f, 0x00, 10, {0x5f, 0x1f, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00}},
	{0x5f, 0x01, 10, {0x5f, 0x1f, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00}},
	{0x5f, 0x02, 10, {0x5f, 0x1f, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00}},
	{0x5f, 0x03, 10, {0x5f, 0x1f, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00}},
	{0x5f, 0x04, 10, {0x5f, 0x1f, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00}},
	{0x5f, 0x05, 10, {0x5f, 0x1f, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00}},
	{0x5f, 0x06, 10, {0x5f, 0x1f, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00}},
	{0x5f, 0x07, 10, {0x5f, 0x1f, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00}},
	{0x83, 0x00, 16, {0x83, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
			  0xff, 0xff, 0x00, 0x00}},
	{0x84, 0x00, 16, {0x84, 0x1f, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
			  0xff, 0xff, 0x00, 0x00}},
	{0x84, 0x03, 16, {0x84, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
			  0xff, 0xff, 0x00, 0x00}},
	{0x88, 0xffff, 16, {0x88, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0x3f, 0x00}},
	{0x89, 0xffff, 16, {0x89, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00,
			    0x00, 0xff, 0x3f, 0x00}},
	{0x8a, 0xffff, 16, {0x8a, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0x3f, 0x00}},
	{0x8b, 0xffff, 16, {0x8b, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0x3f, 0x00}},
	{0x8e, 0xffff, 16, {0x8e, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0x3f, 0x00}},
	{0x8f, 0xffff, 16, {0x8f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0x3f, 0x00}},
	{0x90, 0xffff, 16, {0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0x3f, 0x00}},
	{0x91, 0xffff, 16, {0x91, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0x3f, 0x00}},
	{0x93, 0xffff, 16, {0x93, 0xe9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			    0xff, 0xff, 0x3f, 0x00}},
	{0x9e, 0x10, 16, {0x9e, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			  0xff, 0xff, 0x00, 0x00}},
	{0x9e, 0x12, 16, {0x9e, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			  0xff, 0xff, 0x00, 0x00}},
	{0xa0, 0xffff, 12, {0xa0, 0x00, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00}},
	{0xa3, 0x0c, 12, {0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00}},
	{0xa8, 0xffff, 12, {0xa8, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x00}},
	{0xaa, 0xffff, 12, {0xaa, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x00}},
	{0xae, 0xffff, 12, {0xae, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x00}},
	{0xaf, 0xffff, 12, {0xaf, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x00}},
	{0xb7, 0xffff, 12, {0xb7, 0x1f, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00}},
};

#define NOPS (sizeof(ops) / sizeof(ops[0]))

static void rsoc(struct kura_scsi_cmd *cmd)
{
	uint8_t opts = cmd->cdb[2] & 0x07, op = cmd->cdb[3];
	uint16_t sa = scsi_be16(cmd->cdb + 4);
	bool rctd = cmd->cdb[2] & 0x80;
	uint32_t alloc = scsi_be32(cmd->cdb + 6), n = 0;
	uint8_t tmp[4096] = {0}, *d;

	if (opts == 0) {
		n = 4;
		for (unsigned i = 0; i < NOPS; i++) {
			uint8_t *p = tmp + n;
			p[0] = ops[i].op;
			if (ops[i].sa != 0xffff) {
				scsi_put16(p + 2, ops[i].sa);
				p[5] = 0x01; /* SERVACTV */
			}
			if (rctd)
				p[5] |= 0x02; /* CTDP */
			scsi_put16(p + 6, ops[i].len);
			n += 8;
			if (rctd) {
				scsi_put16(p + 8, 0x0a);
				p[11] = 0; /* command-specific */
				scsi_put32(p + 12, 0);  /* nominal: unknown */
				scsi_put32(p + 16, 30); /* recommended timeout, seconds */
				n += 12;
			}
		}
		scsi_put32(tmp, n - 4);
	} else if (opts <= 3) {
		const struct opinfo *f = NULL;
		bool has_sa = false, op_known = false;

		for (unsigned i = 0; i < NOPS; i++) {
			if (ops[i].op != op)
				continue;
			op_known = true;
			has_sa |= ops[i].sa != 0xffff;
			if (ops[i].sa == 0xffff || (opts != 1 && ops[i].sa == sa))
				f = &ops[i];
		}
		if ((opts == 1 && has_sa) || (opts == 2 && op_known && !has_sa)) {
			scsi_bad_cdb(cmd, 2, 2);
			return;
		}
		if (opts == 1 && f && f->sa != 0xffff)
			f = NULL;
		tmp[1] = f ? 0x03 : 0x01; /* supported per standard / not supported */
		if (rctd && f)
			tmp[1] |= 0x80;
		n = 4;
		if (f) {
			scsi_put16(tmp + 2, f->len);
			memcpy(tmp + 4, f->mask, f->len);
			n += f->len;
			if (rctd) {
				scsi_put16(tmp + n, 0x0a);
				scsi_put32(tmp + n + 8, 30);
				n += 12;
			}
		}
	} else {
		scsi_bad_cdb(cmd, 2, 2);
		return;
	}
	if (!(d = scsi_din(cmd, n, alloc))) {
		scsi_complete(cmd);
		return;
	}
	memcpy(d, tmp, n < alloc ? n : alloc);
	scsi_good(cmd);
}

bool scsi_spc_exec(struct kura_scsi_cmd *cmd)
{
	switch (cmd->cdb[0]) {
	case 0x00: /* TEST UNIT READY */
		scsi_good(cmd);
		return true;
	case 0x03:
		request_sense(cmd);
		return true;
	case 0x12:
		inquiry(cmd);
		return true;
	case 0x15:
	case 0x55:
		mode_select(cmd);
		return true;
	case 0x1a:
	case 0x5a:
		mode_sense(cmd);
		return true;
	case 0x1b:
		start_stop(cmd);
		return true;
	case 0xa0:
		report_luns(cmd);
		return true;
	case 0xa3:
		if ((cmd->cdb[1] & 0x1f) == 0x0c) {
			rsoc(cmd);
			return true;
		}
		scsi_bad_cdb(cmd, 1, 4);
		return true;
	}
	return false;
}
