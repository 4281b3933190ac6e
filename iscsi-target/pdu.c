/* iSCSI PDU header checks (see pdu.h). */
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

int kura_iscsi_hdr_check(const uint8_t *bhs, const struct kura_iscsi_hdr_limits *lim,
			 bool *fatal, const char **why)
{
	uint8_t op = iscsi_opcode(bhs), f = bhs[1];
	uint32_t dlen = iscsi_dlen(bhs);

	*fatal = false;
	*why = "";
	if (iscsi_ahs_len(bhs) > lim->max_ahs) {
		*fatal = true;
		*why = "AHS longer than we accept";
		return ISCSI_REJECT_PROTOCOL;
	}
	if (dlen > lim->max_recv_dsl) {
		*fatal = true;
		*why = "data segment longer than MaxRecvDataSegmentLength";
		return ISCSI_REJECT_PROTOCOL;
	}
	if (!lim->full_feature) {
		if (op != ISCSI_OP_LOGIN_REQ) {
			*fatal = true;
			*why = "a PDU other than Login Request before login completed";
			return ISCSI_REJECT_PROTOCOL;
		}
		return 0;
	}
	switch (op) {
	case ISCSI_OP_NOP_OUT:
		if (!(f & ISCSI_F_FINAL)) {
			*why = "NOP-Out without the F bit";
			return ISCSI_REJECT_PROTOCOL;
		}
		if (iscsi_itt(bhs) == ISCSI_RSVD_TAG && iscsi_w20(bhs) == ISCSI_RSVD_TAG &&
		    !iscsi_immediate(bhs)) {
			*why = "NOP-Out that asks for no answer must be immediate";
			return ISCSI_REJECT_PROTOCOL;
		}
		return 0;
	case ISCSI_OP_SCSI_CMD:
		if ((f & ISCSI_F_READ) && (f & ISCSI_F_WRITE)) {
			*why = "bidirectional commands are not supported";
			return ISCSI_REJECT_UNSUPPORTED;
		}
		if (dlen && !(f & ISCSI_F_WRITE)) {
			*why = "data with a command that writes nothing";
			return ISCSI_REJECT_PROTOCOL;
		}
		if (!(f & ISCSI_F_FINAL) && !(f & ISCSI_F_WRITE)) {
			*why = "a non-final command that writes nothing";
			return ISCSI_REJECT_PROTOCOL;
		}
		if (iscsi_ahs_len(bhs)) {
			*why = "extended CDBs are not supported";
			return ISCSI_REJECT_UNSUPPORTED;
		}
		return 0;
	case ISCSI_OP_TMF_REQ:
		if (!(f & ISCSI_F_FINAL) || dlen) {
			*why = "malformed task management request";
			return ISCSI_REJECT_PROTOCOL;
		}
		return 0;
	case ISCSI_OP_LOGIN_REQ:
		*why = "Login Request in full feature phase";
		return ISCSI_REJECT_PROTOCOL;
	case ISCSI_OP_TEXT_REQ:
		return 0;
	case ISCSI_OP_DATA_OUT:
		if (iscsi_immediate(bhs)) {
			*why = "Data-Out with the immediate bit";
			return ISCSI_REJECT_PROTOCOL;
		}
		return 0;
	case ISCSI_OP_LOGOUT_REQ:
		if (!(f & ISCSI_F_FINAL) || (f & 0x7f) > 2 || dlen) {
			*why = "malformed Logout Request";
			return ISCSI_REJECT_PROTOCOL;
		}
		return 0;
	case ISCSI_OP_SNACK:
		*why = "SNACK needs ErrorRecoveryLevel > 0";
		return ISCSI_REJECT_PROTOCOL;
	default:
		*why = "unknown opcode";
		return ISCSI_REJECT_UNSUPPORTED;
	}
}
