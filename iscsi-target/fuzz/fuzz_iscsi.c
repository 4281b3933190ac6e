/* libFuzzer entry point for the bytes an initiator sends: the input is a
 * TCP stream of PDUs, framed and dispatched the way the connection code
 * does it (header check, login until full feature phase, then Text
 * Requests), against a fake portal. It proves that no input makes the
 * header check, login, text keys or CHAP read out of bounds, leak, or
 * break the promises the connection code relies on.
 *
 * The fake portal's targets are chosen by the end of their name: ":chap"
 * (one-way CHAP, user alice, secret secret123456789), ":mutual" (and the
 * target answers as tgt, secret targetsecret42), ":acl" (not allowed),
 * ":busy" (not ready), ":nope" (unknown); any other name is open. A
 * well-formed CHAP_R (0x and the digest's length in hex) is replaced by the
 * right answer to the target's challenge, so that inputs captured from a
 * real login get past authentication.
 *
 * Build and run: make fuzz (FUZZ_SECONDS=600). */
#include "common/util.h"
#include "iscsi-target/hash.h"
#include "iscsi-target/login.h"
#include "iscsi-target/login_int.h"
#include "iscsi-target/pdu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "secret123456789"
#define MSECRET "targetsecret42"

struct fz {
	unsigned rnd;
	/* the target's last CHAP challenge, as its answer carried it */
	int alg;
	uint8_t id;
	uint8_t chal[64];
	size_t chal_len;
};

static bool ends_with(const char *s, const char *end)
{
	size_t a = strlen(s), b = strlen(end);

	return a >= b && !strcmp(s + a - b, end);
}

static int fz_target(void *ctx, const char *tname, const char *iname,
		     struct kura_iscsi_target_auth *auth)
{
	(void)ctx;
	(void)iname;
	memset(auth, 0, sizeof(*auth));
	if (ends_with(tname, ":nope"))
		return -ENOENT;
	if (ends_with(tname, ":acl"))
		return -EACCES;
	if (ends_with(tname, ":busy"))
		return -EAGAIN;
	if (ends_with(tname, ":chap") || ends_with(tname, ":mutual")) {
		snprintf(auth->user, sizeof(auth->user), "%s", "alice");
		snprintf(auth->secret, sizeof(auth->secret), "%s", SECRET);
	}
	if (ends_with(tname, ":mutual")) {
		snprintf(auth->muser, sizeof(auth->muser), "%s", "tgt");
		snprintf(auth->msecret, sizeof(auth->msecret), "%s", MSECRET);
	}
	return 0;
}

/* Forty targets: enough to need continued answers at small PDU sizes. */
static int fz_send_targets(void *ctx, const char *iname, const char *which, const char *own,
			   char *buf, size_t cap)
{
	size_t len = 0;

	(void)ctx;
	(void)iname;
	for (int i = 0; i < 40; i++) {
		char name[48];
		int n;

		snprintf(name, sizeof(name), "iqn.2026-11.io.kura:t%02d", i);
		if (strcmp(which, "All") && strcmp(name, which[0] ? which : own))
			continue;
		n = snprintf(buf + len, cap - len, "TargetName=%s%cTargetAddress=127.0.0.1:3260,1%c",
			     name, 0, 0);
		if (n < 0 || (size_t)n >= cap - len)
			return -ENOSPC;
		len += (size_t)n;
	}
	return (int)len;
}

static void fz_log(void *ctx, const char *iname, const char *tname, const char *why)
{
	(void)ctx;
	/* the strings must be readable whole */
	if (strlen(iname) > KURA_ISCSI_NAME_MAX || strlen(tname) > KURA_ISCSI_NAME_MAX || !why[0])
		__builtin_trap();
}

static void fz_random(void *ctx, void *buf, size_t len)
{
	struct fz *f = ctx;

	for (size_t i = 0; i < len; i++)
		((uint8_t *)buf)[i] = (uint8_t)(f->rnd++ * 131 + 17);
}

static const struct kura_iscsi_login_ops fz_ops = {
	.target = fz_target,
	.send_targets = fz_send_targets,
	.log_refusal = fz_log,
	.random = fz_random,
};

/* Remembers the challenge in a login answer. */
static int grab(void *arg, const char *key, const char *val)
{
	struct fz *f = arg;
	uint64_t n;

	if (!strcmp(key, "CHAP_A") && !iscsi_parse_num(val, 0, 255, &n))
		f->alg = (int)n;
	else if (!strcmp(key, "CHAP_I") && !iscsi_parse_num(val, 0, 255, &n))
		f->id = (uint8_t)n;
	else if (!strcmp(key, "CHAP_C") && iscsi_parse_bin(val, f->chal, sizeof(f->chal), &f->chal_len))
		f->chal_len = 0;
	return 0;
}

/* A well-formed CHAP_R in the request gets the right digits, in place. */
static void answer_challenge(struct fz *f, uint8_t *data, uint32_t dlen)
{
	uint8_t r[32];
	int rl;
	uint32_t pos = 0;

	if (!f->chal_len || !dlen || data[dlen - 1])
		return;
	rl = kura_iscsi_chap_response(f->alg, f->id, (const uint8_t *)SECRET, strlen(SECRET),
				      f->chal, f->chal_len, r);
	if (rl < 0)
		return;
	while (pos < dlen) {
		char *p = (char *)data + pos;
		size_t n = strlen(p);

		if (n == 9 + 2 * (size_t)rl && !memcmp(p, "CHAP_R=0x", 9)) {
			static const char d[] = "0123456789abcdef";
			for (int i = 0; i < rl; i++) {
				p[9 + 2 * i] = d[r[i] >> 4];
				p[10 + 2 * i] = d[r[i] & 15];
			}
		}
		pos += (uint32_t)n + 1;
	}
}

/* What the connection code relies on in every answer. */
static void check_answer(const uint8_t *rsp, const uint8_t *data, uint32_t dlen, uint32_t max)
{
	if ((dlen && !data) || dlen > max)
		__builtin_trap();
	if (rsp[0] == ISCSI_OP_REJECT) {
		if (dlen != KURA_ISCSI_BHS)
			__builtin_trap();
		return;
	}
	if (dlen && data[dlen - 1] != 0 && !(rsp[1] & ISCSI_F_CONTINUE))
		__builtin_trap(); /* a finished answer ends its last pair */
	if ((rsp[1] & ISCSI_F_CONTINUE) && (rsp[1] & (ISCSI_F_TRANSIT | ISCSI_F_FINAL)))
		__builtin_trap();
}

static int ignore(void *arg, const char *key, const char *val)
{
	(void)arg;
	if (strlen(key) > ISCSI_KEY_MAX || strlen(val) > ISCSI_LARGE_VALUE_MAX)
		__builtin_trap();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	struct fz f = {0};
	struct kura_iscsi_login *login = NULL;
	struct kura_iscsi_text *text = NULL;
	struct kura_iscsi_params params;
	bool ffp = false, hd = false, dd = false;
	size_t pos = 0;

	kura_iscsi_params_default(&params);
	if (kura_iscsi_login_create(&fz_ops, &f, &login))
		return 0;
	while (size - pos >= KURA_ISCSI_BHS) {
		struct kura_iscsi_hdr_limits lim = {
			.full_feature = ffp,
			.max_recv_dsl = ffp ? params.max_recv_dsl : ISCSI_LOGIN_DSL,
			.max_ahs = 1024,
		};
		uint8_t bhs[KURA_ISCSI_BHS], rsp[KURA_ISCSI_BHS], *data = NULL, *rd = NULL;
		const char *why = NULL;
		uint32_t dlen, rl = 0;
		size_t tail, off;
		bool fatal;
		int reason, ret = 0;

		memcpy(bhs, in + pos, KURA_ISCSI_BHS);
		reason = kura_iscsi_hdr_check(bhs, &lim, &fatal, &why);
		if (!why || (reason && !why[0]))
			__builtin_trap();
		if (fatal)
			break;
		tail = kura_iscsi_pdu_tail(bhs, hd, dd);
		if (size - pos - KURA_ISCSI_BHS < tail)
			break; /* the stream ends inside the PDU */
		dlen = iscsi_dlen(bhs);
		off = pos + KURA_ISCSI_BHS + iscsi_ahs_len(bhs) + (hd ? 4 : 0);
		pos += KURA_ISCSI_BHS + tail;
		(void)kura_iscsi_lun_id(iscsi_lun(bhs));
		if (reason)
			continue;
		if (dlen) {
			if (!(data = malloc(dlen)))
				break;
			memcpy(data, in + off, dlen);
			(void)kura_iscsi_text_parse(data, dlen, ignore, NULL);
		}
		if (!ffp) {
			answer_challenge(&f, data, dlen);
			ret = kura_iscsi_login_step(login, bhs, data, dlen, rsp, &rd, &rl);
			if (rsp[0] != ISCSI_OP_LOGIN_RSP || (ret < 0 && (rl || rsp[36] == 0)) ||
			    (ret == 1 && (!(rsp[1] & ISCSI_F_TRANSIT) || (rsp[1] & 3) != 3)))
				__builtin_trap();
			check_answer(rsp, rd, rl, ISCSI_LOGIN_DSL);
			if (rl && !(rsp[1] & ISCSI_F_CONTINUE))
				(void)kura_iscsi_text_parse(rd, rl, grab, &f);
			if (ret == 1) {
				const struct kura_iscsi_login_result *r = kura_iscsi_login_result(login);

				params = r->params;
				if (params.max_xmit_dsl < 512 || params.first_burst > params.max_burst)
					__builtin_trap();
				hd = params.header_digest;
				dd = params.data_digest;
				ffp = true;
				if (kura_iscsi_text_create(&fz_ops, &f, r->iname,
							   r->type == KURA_ISCSI_NORMAL ? r->tname : "",
							   &text))
					ret = -ENOMEM;
			}
		} else if (iscsi_opcode(bhs) == ISCSI_OP_TEXT_REQ) {
			uint32_t max = KURA_MAX(params.max_xmit_dsl, 512u);

			ret = kura_iscsi_text_step(text, &params, bhs, data, dlen, rsp, &rd, &rl);
			if (ret == 0)
				check_answer(rsp, rd, rl, KURA_MAX(max, KURA_ISCSI_BHS));
		}
		free(rd);
		free(data);
		if (ret < 0)
			break; /* the connection closes */
	}
	kura_iscsi_text_free(text);
	kura_iscsi_login_free(login);
	return 0;
}
