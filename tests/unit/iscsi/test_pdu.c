/* iSCSI header checks: opcodes per phase, lengths that end a connection,
 * per-opcode field rules, PDU tail lengths and LUN forms. */
#include "tests/unit/harness.h"

#include "iscsi-target/pdu.h"

#include <stdint.h>


static struct kura_iscsi_hdr_limits ffp = {.full_feature = true, .max_recv_dsl = 262144,
					   .max_ahs = 1024};

#define RSVD ISCSI_RSVD_TAG
#define IMM ISCSI_F_IMMEDIATE
#define F ISCSI_F_FINAL
#define R ISCSI_F_READ
#define W ISCSI_F_WRITE
#define C ISCSI_F_CONTINUE

/* One header: opcode byte, flags byte, DataSegmentLength, ITT, bytes 20..23
 * (TTT, EDTL or Referenced Task Tag), AHS words, and the expected reason. */
struct hcase {
	uint8_t op, flags;
	uint32_t dlen, itt, w20;
	uint8_t ahs;
	int reason;
};

static void hdr(uint8_t *bhs, const struct hcase *c)
{
	memset(bhs, 0, KURA_ISCSI_BHS);
	bhs[0] = c->op;
	bhs[1] = c->flags;
	bhs[4] = c->ahs;
	iscsi_set_dlen(bhs, c->dlen);
	iscsi_put32(bhs + 16, c->itt);
	iscsi_put32(bhs + 20, c->w20);
}

static int check(const uint8_t *bhs, const struct kura_iscsi_hdr_limits *lim, bool *fatal)
{
	const char *why = NULL;
	int r = kura_iscsi_hdr_check(bhs, lim, fatal, &why);

	CHECK(why);
	CHECK(r == 0 || why[0]);
	return r;
}

static void expect(const struct hcase *c)
{
	uint8_t b[KURA_ISCSI_BHS];
	bool fatal;
	int r;

	hdr(b, c);
	r = check(b, &ffp, &fatal);
	if (r != c->reason)
		fprintf(stderr, "  opcode 0x%02x flags 0x%02x: reason %d, expected %d\n", c->op,
			c->flags, r, c->reason);
	CHECK_EQ(r, c->reason);
	CHECK(!fatal);
}

#define EXPECT(...) expect(&(struct hcase){__VA_ARGS__})

static void expect_all(const struct hcase *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		expect(&c[i]);
}

TEST(test_pdu_opcodes_and_phase)
{
	struct kura_iscsi_hdr_limits login = {.full_feature = false, .max_recv_dsl = 8192,
					      .max_ahs = 1024};
	uint8_t b[KURA_ISCSI_BHS];
	bool fatal;

	hdr(b, &(struct hcase){ISCSI_OP_LOGIN_REQ | IMM, 0x87, 100, 1, 0, 0, 0});
	CHECK_EQ(check(b, &login, &fatal), 0);
	hdr(b, &(struct hcase){ISCSI_OP_NOP_OUT, F, 0, 1, RSVD, 0, 0});
	CHECK(check(b, &login, &fatal) != 0);
	CHECK(fatal); /* nothing but Login before login completes */
	hdr(b, &(struct hcase){ISCSI_OP_LOGIN_REQ, 0x87, 8193, 1, 0, 0, 0});
	CHECK(check(b, &login, &fatal) != 0);
	CHECK(fatal);
	for (unsigned op = 0; op < 64; op++) {
		struct hcase c = {(uint8_t)op, F, 0, 1, RSVD, 0, 0};

		if (op == ISCSI_OP_SCSI_CMD)
			c.w20 = 0; /* no transfer */
		if (op == ISCSI_OP_TMF_REQ)
			c.flags |= 5; /* LOGICAL UNIT RESET */
		if (op == ISCSI_OP_LOGIN_REQ || op == ISCSI_OP_SNACK)
			c.reason = ISCSI_REJECT_PROTOCOL; /* not in full feature phase; not at ERL 0 */
		else if (op > ISCSI_OP_LOGOUT_REQ)
			c.reason = ISCSI_REJECT_UNSUPPORTED; /* only initiators' opcodes */
		expect(&c);
	}
}

TEST(test_pdu_lengths_fatal)
{
	uint8_t b[KURA_ISCSI_BHS];
	bool fatal;

	hdr(b, &(struct hcase){ISCSI_OP_SCSI_CMD, F | W, 262145, 1, 1 << 20, 0, 0});
	CHECK_EQ(check(b, &ffp, &fatal), ISCSI_REJECT_PROTOCOL);
	CHECK(fatal);
	hdr(b, &(struct hcase){ISCSI_OP_NOP_OUT, F, 0, 1, RSVD, 255, 0}); /* 1020 bytes of AHS */
	CHECK_EQ(check(b, &ffp, &fatal), 0);
	ffp.max_ahs = 16;
	CHECK_EQ(check(b, &ffp, &fatal), ISCSI_REJECT_PROTOCOL);
	CHECK(fatal);
	ffp.max_ahs = 1024;
}

TEST(test_pdu_scsi_command_fields)
{
	static const struct hcase cases[] = {
		{ISCSI_OP_SCSI_CMD, F | R, 0, 1, 4096, 0, 0},
		{ISCSI_OP_SCSI_CMD, F | R | W, 0, 1, 4096, 0, ISCSI_REJECT_UNSUPPORTED}, /* bidi */
		{ISCSI_OP_SCSI_CMD, F, 0, 1, 4096, 0, ISCSI_REJECT_INVALID_FIELD}, /* no R, no W */
		{ISCSI_OP_SCSI_CMD, F | R, 0, 1, 0, 0, 0},     /* R and no length: tolerated */
		{ISCSI_OP_SCSI_CMD, F | W, 0, 1, 0, 0, 0},     /* W and no length: tolerated */
		{ISCSI_OP_SCSI_CMD, F | R, 512, 1, 4096, 0, ISCSI_REJECT_PROTOCOL}, /* data, read */
		{ISCSI_OP_SCSI_CMD, F | W, 8192, 1, 4096, 0, ISCSI_REJECT_PROTOCOL}, /* > EDTL */
		{ISCSI_OP_SCSI_CMD, W, 4096, 1, 65536, 0, 0},  /* F=0: unsolicited data follows */
		{ISCSI_OP_SCSI_CMD, W, 4096, 1, 4096, 0, ISCSI_REJECT_PROTOCOL}, /* ... none left */
		{ISCSI_OP_SCSI_CMD, R, 0, 1, 4096, 0, ISCSI_REJECT_INVALID_FIELD}, /* F=0, read */
		{ISCSI_OP_SCSI_CMD, F | W, 0, 1, 4096, 1, ISCSI_REJECT_UNSUPPORTED}, /* ext. CDB */
		{ISCSI_OP_SCSI_CMD, F, 0, RSVD, 0, 0, ISCSI_REJECT_INVALID_FIELD},
	};

	expect_all(cases, sizeof(cases) / sizeof(cases[0]));
}

TEST(test_pdu_nop_out_rules)
{
	static const struct hcase cases[] = {
		{ISCSI_OP_NOP_OUT, F, 16, 1, RSVD, 0, 0},                 /* a ping: answered */
		{ISCSI_OP_NOP_OUT | IMM, F, 0, RSVD, 0x55, 0, 0},         /* the answer to a NOP-In */
		{ISCSI_OP_NOP_OUT, F, 0, RSVD, 0x55, 0, ISCSI_REJECT_PROTOCOL}, /* ... not immediate */
		{ISCSI_OP_NOP_OUT, F, 0, 1, 0x55, 0, ISCSI_REJECT_INVALID_FIELD}, /* both tags */
		{ISCSI_OP_NOP_OUT | IMM, F, 0, RSVD, RSVD, 0, 0},         /* wants no answer */
		{ISCSI_OP_NOP_OUT, F, 0, RSVD, RSVD, 0, ISCSI_REJECT_PROTOCOL},
		{ISCSI_OP_NOP_OUT, 0, 0, 1, RSVD, 0, ISCSI_REJECT_PROTOCOL}, /* F is always 1 */
	};

	expect_all(cases, sizeof(cases) / sizeof(cases[0]));
}

TEST(test_pdu_tmf_logout_data_out_text)
{
	static const struct hcase cases[] = {
		{ISCSI_OP_TMF_REQ, F | 1, 0, 1, RSVD, 0, ISCSI_REJECT_INVALID_FIELD}, /* no RTT */
		{ISCSI_OP_TMF_REQ, 5, 0, 1, RSVD, 0, ISCSI_REJECT_PROTOCOL},         /* no F */
		{ISCSI_OP_TMF_REQ, F | 5, 4, 1, RSVD, 0, ISCSI_REJECT_PROTOCOL},     /* data */
		{ISCSI_OP_TMF_REQ, F | 5, 0, RSVD, RSVD, 0, ISCSI_REJECT_INVALID_FIELD},
		{ISCSI_OP_LOGOUT_REQ, F, 8, 1, RSVD, 0, ISCSI_REJECT_PROTOCOL},
		{ISCSI_OP_LOGOUT_REQ, 0, 0, 1, RSVD, 0, ISCSI_REJECT_PROTOCOL},
		{ISCSI_OP_LOGOUT_REQ, F, 0, RSVD, RSVD, 0, ISCSI_REJECT_INVALID_FIELD},
		{ISCSI_OP_DATA_OUT, F, 4096, 1, RSVD, 0, 0},
		{ISCSI_OP_DATA_OUT | IMM, F, 4096, 1, RSVD, 0, ISCSI_REJECT_PROTOCOL},
		{ISCSI_OP_TEXT_REQ, F | C, 10, 1, RSVD, 0, ISCSI_REJECT_PROTOCOL},
		{ISCSI_OP_TEXT_REQ, C, 10, 1, RSVD, 0, 0},
		{ISCSI_OP_TEXT_REQ, F, 10, RSVD, RSVD, 0, ISCSI_REJECT_INVALID_FIELD},
	};

	expect_all(cases, sizeof(cases) / sizeof(cases[0]));
	for (unsigned fn = 0; fn < 128; fn++) /* functions 1 to 8 */
		EXPECT(ISCSI_OP_TMF_REQ | IMM, (uint8_t)(F | fn), 0, 1, 3, 0,
		       fn >= 1 && fn <= 8 ? 0 : ISCSI_REJECT_INVALID_FIELD);
	for (unsigned reason = 0; reason < 128; reason++) /* reasons 0 to 2 */
		EXPECT(ISCSI_OP_LOGOUT_REQ | IMM, (uint8_t)(F | reason), 0, 1, RSVD, 0,
		       reason <= 2 ? 0 : ISCSI_REJECT_INVALID_FIELD);
}

TEST(test_pdu_tail_and_lun)
{
	uint8_t b[KURA_ISCSI_BHS];

	hdr(b, &(struct hcase){ISCSI_OP_SCSI_CMD, F, 5, 1, 0, 2, 0});
	CHECK_EQ(kura_iscsi_pdu_tail(b, false, false), 8 + 8);
	CHECK_EQ(kura_iscsi_pdu_tail(b, true, true), 8 + 4 + 8 + 4);
	iscsi_set_dlen(b, 0);
	CHECK_EQ(kura_iscsi_pdu_tail(b, true, true), 8 + 4); /* no data, no data digest */
	iscsi_set_dlen(b, 0xffffff);
	b[4] = 255;
	CHECK_EQ(kura_iscsi_pdu_tail(b, true, true), 1020 + 4 + 0x1000000 + 4);
	CHECK_EQ(kura_iscsi_lun_id(0), 0);
	CHECK_EQ(kura_iscsi_lun_id(0x0001000000000000ull), 1);
	CHECK_EQ(kura_iscsi_lun_id(0x00ff000000000000ull), 255);
	CHECK_EQ(kura_iscsi_lun_id(0x4101000000000000ull), 0x101); /* flat space */
	CHECK_EQ(kura_iscsi_lun_id(0x0101000000000000ull), UINT32_MAX); /* bus 1 */
	CHECK_EQ(kura_iscsi_lun_id(0x0001000000000001ull), UINT32_MAX); /* second level */
	CHECK_EQ(kura_iscsi_lun_id(0x8001000000000000ull), UINT32_MAX); /* logical unit addressing */
}
