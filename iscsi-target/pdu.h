/* iSCSI PDUs (RFC 7143 section 11): the 48-byte Basic Header Segment, field
 * accessors, and the check every received header passes before anything
 * else looks at it.
 *
 * Thread rule: pure functions, any thread.
 * Errors: kura_iscsi_hdr_check returns 0 or a Reject reason (> 0).
 */
#ifndef KURA_ISCSI_PDU_H
#define KURA_ISCSI_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KURA_ISCSI_BHS 48u

/* Initiator opcodes. */
#define ISCSI_OP_NOP_OUT 0x00
#define ISCSI_OP_SCSI_CMD 0x01
#define ISCSI_OP_TMF_REQ 0x02
#define ISCSI_OP_LOGIN_REQ 0x03
#define ISCSI_OP_TEXT_REQ 0x04
#define ISCSI_OP_DATA_OUT 0x05
#define ISCSI_OP_LOGOUT_REQ 0x06
#define ISCSI_OP_SNACK 0x10
/* Target opcodes. */
#define ISCSI_OP_NOP_IN 0x20
#define ISCSI_OP_SCSI_RSP 0x21
#define ISCSI_OP_TMF_RSP 0x22
#define ISCSI_OP_LOGIN_RSP 0x23
#define ISCSI_OP_TEXT_RSP 0x24
#define ISCSI_OP_DATA_IN 0x25
#define ISCSI_OP_LOGOUT_RSP 0x26
#define ISCSI_OP_R2T 0x31
#define ISCSI_OP_ASYNC 0x32
#define ISCSI_OP_REJECT 0x3f

/* Reject reasons (11.17.1). */
#define ISCSI_REJECT_DIGEST 0x02
#define ISCSI_REJECT_SNACK 0x03
#define ISCSI_REJECT_PROTOCOL 0x04
#define ISCSI_REJECT_UNSUPPORTED 0x05
#define ISCSI_REJECT_IMM_CMD 0x06
#define ISCSI_REJECT_TASK_IN_PROGRESS 0x07
#define ISCSI_REJECT_INVALID_DATA_ACK 0x08
#define ISCSI_REJECT_INVALID_FIELD 0x09
#define ISCSI_REJECT_LONG_OP 0x0a
#define ISCSI_REJECT_NEGOTIATION_RESET 0x0b
#define ISCSI_REJECT_WAITING_LOGOUT 0x0c

/* Flags byte 1. */
#define ISCSI_F_FINAL 0x80
#define ISCSI_F_READ 0x40  /* SCSI command */
#define ISCSI_F_WRITE 0x20 /* SCSI command */
#define ISCSI_F_ACK 0x40   /* Data-In A bit */
#define ISCSI_F_O 0x04     /* Data-In / SCSI response overflow */
#define ISCSI_F_U 0x02     /* underflow */
#define ISCSI_F_S 0x01     /* Data-In carries status */
#define ISCSI_F_IMMEDIATE 0x40 /* byte 0 */
#define ISCSI_F_TRANSIT 0x80 /* login T bit */
#define ISCSI_F_CONTINUE 0x40 /* login/text C bit */

#define ISCSI_RSVD_TAG 0xffffffffu

static inline uint32_t iscsi_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void iscsi_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline uint16_t iscsi_get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void iscsi_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Fields common to every BHS. */
static inline uint8_t iscsi_opcode(const uint8_t *bhs) { return bhs[0] & 0x3f; }
static inline bool iscsi_immediate(const uint8_t *bhs) { return bhs[0] & ISCSI_F_IMMEDIATE; }
static inline uint8_t iscsi_flags(const uint8_t *bhs) { return bhs[1]; }
static inline uint32_t iscsi_ahs_len(const uint8_t *bhs) { return (uint32_t)bhs[4] * 4; }
static inline uint32_t iscsi_dlen(const uint8_t *bhs)
{
	return (uint32_t)bhs[5] << 16 | (uint32_t)bhs[6] << 8 | bhs[7];
}
static inline void iscsi_set_dlen(uint8_t *bhs, uint32_t len)
{
	bhs[5] = (uint8_t)(len >> 16);
	bhs[6] = (uint8_t)(len >> 8);
	bhs[7] = (uint8_t)len;
}
static inline uint64_t iscsi_lun(const uint8_t *bhs)
{
	return (uint64_t)iscsi_get32(bhs + 8) << 32 | iscsi_get32(bhs + 12);
}
static inline uint32_t iscsi_itt(const uint8_t *bhs) { return iscsi_get32(bhs + 16); }
/* Bytes 20..23: TTT (NOP-Out, Data-Out, Text, SNACK) or EDTL (SCSI command). */
static inline uint32_t iscsi_w20(const uint8_t *bhs) { return iscsi_get32(bhs + 20); }
static inline uint32_t iscsi_cmdsn(const uint8_t *bhs) { return iscsi_get32(bhs + 24); }
static inline uint32_t iscsi_expstatsn(const uint8_t *bhs) { return iscsi_get32(bhs + 28); }
/* Data-Out: DataSN at 36, Buffer Offset at 40. */
static inline uint32_t iscsi_datasn(const uint8_t *bhs) { return iscsi_get32(bhs + 36); }
static inline uint32_t iscsi_bufoff(const uint8_t *bhs) { return iscsi_get32(bhs + 40); }

/* The 8-bit LUN of the flat/peripheral addressing forms; UINT32_MAX when the
 * LUN field uses another form (the command then gets LOGICAL UNIT NOT
 * SUPPORTED). */
uint32_t kura_iscsi_lun_id(uint64_t lun_field);

/* Serial number arithmetic (RFC 1982, 32 bits). */
static inline bool iscsi_sn_lt(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }
static inline bool iscsi_sn_le(uint32_t a, uint32_t b) { return (int32_t)(a - b) <= 0; }

struct kura_iscsi_hdr_limits {
	bool full_feature;      /* false: only Login (and nothing else) is valid */
	uint32_t max_recv_dsl;  /* our MaxRecvDataSegmentLength (8192 while logging in) */
	uint32_t max_ahs;       /* largest AHS accepted, bytes */
};

/* Checks a received BHS: an opcode an initiator may send in this phase,
 * AHS and data segment lengths within limits, fields that must be valid or
 * consistent for that opcode (a SCSI command's R/W bits against EDTL and
 * its immediate data, F=0 only with unsolicited data to follow; no immediate
 * bit on Data-Out; NOP-Out tags and I bit; TMF function and Logout reason
 * ranges; the reserved ITT). Returns 0, or the Reject reason to send; *why
 * is a static string for the log; *fatal set when the connection must
 * close instead (the stream can no longer be framed: data segment over the
 * limit, AHS too large, a non-login PDU before login completes). */
int kura_iscsi_hdr_check(const uint8_t *bhs, const struct kura_iscsi_hdr_limits *lim,
			 bool *fatal, const char **why);

/* Length on the wire of the part after the BHS: AHS, header digest, data
 * segment padded to 4, data digest. */
size_t kura_iscsi_pdu_tail(const uint8_t *bhs, bool hdigest, bool ddigest);

#endif
