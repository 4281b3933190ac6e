/* iSCSI PDU header checks (see pdu.h; RFC 7143 section 11). */
#include "iscsi-target/pdu.h"

uint32_t kura_iscsi_lun_id(uint64_t lun)
{
	unsigned method = (unsigned)(lun >> 62);

	if (lun & 0x0000ffffffffffffull)
		return UINT32_MAX;
	if (method == 0) /* peripheral device addressing: bus 0, 8-bit LUN */
		return (lun >> 56) & 0x3f ? UINT32_MAX : (uint32_t)(lun >> 48) & 0xff;
	if (method == 1) /* flat space addressing: 14-bit LUN */
		return (uint32_t)(lun >> 48) & 0x3fff;
	return UINT32_MAX;
}

size_t kura_iscsi_pdu_tail(const uint8_t *bhs, bool hdigest, bool ddigest)
{
	uint32_t dlen = iscsi_dlen(bhs);

	return iscsi_ahs_len(bhs) + (hdigest ? 4 : 0) + ((dlen + 3) & ~3u) +
	       (ddigest && dlen ? 4 : 0);
}

static int bad(const char **why, const char *w, int reason)
{
	*why = w;
	return reason;
}

static int check_nop_out(const uint8_t *bhs, const char **why)
{
	uint32_t itt = iscsi_itt(bhs), ttt = iscsi_w20(bhs);

	if (!(bhs[1] & ISCSI_F_FINAL))
		return bad(why, "NOP-Out without the F bit", ISCSI_REJECT_PROTOCOL);
	/* 11.18: a NOP-Out that wants no answer (ITT reserved) must not take
	 * a CmdSN, so it must be immediate; one answering our NOP-In (TTT
	 * set) is such a NOP-Out. */
	if (ttt != ISCSI_RSVD_TAG && itt != ISCSI_RSVD_TAG)
		return bad(why, "NOP-Out with both an ITT and a TTT", ISCSI_REJECT_INVALID_FIELD);
	if (itt == ISCSI_RSVD_TAG && !iscsi_immediate(bhs))
		return bad(why, "NOP-Out that wants no answer without the immediate bit",
			   ISCSI_REJECT_PROTOCOL);
	return 0;
}

static int check_scsi_cmd(const uint8_t *bhs, const char **why)
{
	uint8_t f = bhs[1];
	uint32_t dlen = iscsi_dlen(bhs), edtl = iscsi_w20(bhs);
	bool r = f & ISCSI_F_READ, w = f & ISCSI_F_WRITE;

	if (iscsi_itt(bhs) == ISCSI_RSVD_TAG)
		return bad(why, "SCSI command with the reserved ITT", ISCSI_REJECT_INVALID_FIELD);
	if (r && w)
		return bad(why, "bidirectional commands are not supported", ISCSI_REJECT_UNSUPPORTED);
	if (iscsi_ahs_len(bhs))
		return bad(why, "extended CDBs are not supported", ISCSI_REJECT_UNSUPPORTED);
	/* 11.3.1: a transfer needs a direction. R or W with no transfer is
	 * let through: some initiators set W on a zero-length write. */
	if (edtl && !r && !w)
		return bad(why, "SCSI command with a transfer length and neither R nor W",
			   ISCSI_REJECT_INVALID_FIELD);
	if (dlen && !w)
		return bad(why, "immediate data with a command that writes nothing",
			   ISCSI_REJECT_PROTOCOL);
	if (dlen > edtl)
		return bad(why, "more immediate data than the expected transfer length",
			   ISCSI_REJECT_PROTOCOL);
	/* F = 0 announces unsolicited Data-Out: only a write with data left
	 * after the immediate data can have it. */
	if (!(f & ISCSI_F_FINAL)) {
		if (!w)
			return bad(why, "SCSI command without F that writes nothing",
				   ISCSI_REJECT_INVALID_FIELD);
		if (edtl <= dlen)
			return bad(why, "SCSI command without F and no data left to send",
				   ISCSI_REJECT_PROTOCOL);
	}
	return 0;
}

static int check_tmf(const uint8_t *bhs, const char **why)
{
	uint8_t fn = bhs[1] & 0x7f;

	if (!(bhs[1] & ISCSI_F_FINAL) || iscsi_dlen(bhs))
		return bad(why, "Task Management request without F or with data",
			   ISCSI_REJECT_PROTOCOL);
	if (iscsi_itt(bhs) == ISCSI_RSVD_TAG)
		return bad(why, "Task Management request with the reserved ITT",
			   ISCSI_REJECT_INVALID_FIELD);
	/* 11.5.1: functions 1 (ABORT TASK) to 8 (TASK REASSIGN). */
	if (fn < 1 || fn > 8)
		return bad(why, "Task Management function out of range", ISCSI_REJECT_INVALID_FIELD);
	if (fn == 1 && iscsi_w20(bhs) == ISCSI_RSVD_TAG)
		return bad(why, "ABORT TASK without a Referenced Task Tag", ISCSI_REJECT_INVALID_FIELD);
	return 0;
}

static int check_text(const uint8_t *bhs, const char **why)
{
	if ((bhs[1] & ISCSI_F_FINAL) && (bhs[1] & ISCSI_F_CONTINUE))
		return bad(why, "Text Request with both F and C", ISCSI_REJECT_PROTOCOL);
	if (iscsi_itt(bhs) == ISCSI_RSVD_TAG)
		return bad(why, "Text Request with the reserved ITT", ISCSI_REJECT_INVALID_FIELD);
	return 0;
}

static int check_logout(const uint8_t *bhs, const char **why)
{
	if (!(bhs[1] & ISCSI_F_FINAL) || iscsi_dlen(bhs))
		return bad(why, "Logout Request without F or with data", ISCSI_REJECT_PROTOCOL);
	/* 11.14.1: 0 close the session, 1 the connection, 2 for recovery. */
	if ((bhs[1] & 0x7f) > 2)
		return bad(why, "Logout Request reason code out of range", ISCSI_REJECT_INVALID_FIELD);
	if (iscsi_itt(bhs) == ISCSI_RSVD_TAG)
		return bad(why, "Logout Request with the reserved ITT", ISCSI_REJECT_INVALID_FIELD);
	return 0;
}

int kura_iscsi_hdr_check(const uint8_t *bhs, const struct kura_iscsi_hdr_limits *lim,
			 bool *fatal, const char **why)
{
	uint8_t op = iscsi_opcode(bhs);

	*fatal = false;
	*why = "";
	/* Lengths first: beyond them the stream cannot be framed any more. */
	if (iscsi_ahs_len(bhs) > lim->max_ahs) {
		*fatal = true;
		return bad(why, "AHS longer than we accept", ISCSI_REJECT_PROTOCOL);
	}
	if (iscsi_dlen(bhs) > lim->max_recv_dsl) {
		*fatal = true;
		return bad(why, "data segment longer than MaxRecvDataSegmentLength",
			   ISCSI_REJECT_PROTOCOL);
	}
	if (!lim->full_feature) {
		if (op == ISCSI_OP_LOGIN_REQ)
			return 0;
		*fatal = true; /* 6.3: nothing but Login until login completes */
		return bad(why, "a PDU other than Login Request before login completed",
			   ISCSI_REJECT_PROTOCOL);
	}
	switch (op) {
	case ISCSI_OP_NOP_OUT:
		return check_nop_out(bhs, why);
	case ISCSI_OP_SCSI_CMD:
		return check_scsi_cmd(bhs, why);
	case ISCSI_OP_TMF_REQ:
		return check_tmf(bhs, why);
	case ISCSI_OP_LOGIN_REQ:
		return bad(why, "Login Request in full feature phase", ISCSI_REJECT_PROTOCOL);
	case ISCSI_OP_TEXT_REQ:
		return check_text(bhs, why);
	case ISCSI_OP_DATA_OUT:
		if (iscsi_immediate(bhs))
			return bad(why, "Data-Out with the immediate bit", ISCSI_REJECT_PROTOCOL);
		return 0;
	case ISCSI_OP_LOGOUT_REQ:
		return check_logout(bhs, why);
	case ISCSI_OP_SNACK:
		/* 11.16: SNACK needs ErrorRecoveryLevel > 0; we negotiate 0. */
		return bad(why, "SNACK at ErrorRecoveryLevel 0", ISCSI_REJECT_PROTOCOL);
	default:
		return bad(why, "an opcode initiators do not send", ISCSI_REJECT_UNSUPPORTED);
	}
}
