/* iSCSI login (RFC 7143 sections 6.3, 11.12, 11.13): stages and their
 * transitions, C-bit continuation both ways, who logs in to what, and the
 * keys of each stage (see login.h). */
#include "iscsi-target/login_int.h"

#include "common/util.h"
#include "iscsi-target/pdu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A login takes 1 to 4 exchanges, a few more when the text is continued:
 * beyond this an initiator is going round in circles. */
#define LOGIN_PDUS_MAX 64u

struct kura_iscsi_login {
	const struct kura_iscsi_login_ops *ops;
	void *ctx;
	struct kura_iscsi_login_result r;
	struct kura_iscsi_target_auth auth;
	struct iscsi_sec sec;
	unsigned npdu;
	int stage;             /* CSG the next request must carry; -1 before the first */
	bool hdr_seen;         /* ISID, TSIH, CID and the SNs are recorded */
	bool keys_seen;        /* the first request (who logs in to what) is done */
	bool ended;            /* failed, or reached full feature phase */
	bool tpgt_sent, mrdsl_sent;
	char *req;             /* the request gathered across C-bit PDUs */
	uint32_t req_len;
	char *seen;            /* every key the initiator sent in this login, NUL-separated */
	size_t seen_len;
	char *pend;            /* an answer longer than one PDU: what is left of it */
	uint32_t pend_len, pend_off;
	bool pend_transit;
	int pend_nsg;
};

int kura_iscsi_login_create(const struct kura_iscsi_login_ops *ops, void *ctx,
			    struct kura_iscsi_login **out)
{
	struct kura_iscsi_login *l;

	if (!ops || !ops->target || !ops->random)
		return -EINVAL;
	if (!(l = calloc(1, sizeof(*l))))
		return -ENOMEM;
	l->ops = ops;
	l->ctx = ctx;
	l->stage = -1;
	kura_iscsi_params_default(&l->r.params);
	*out = l;
	return 0;
}

void kura_iscsi_login_free(struct kura_iscsi_login *l)
{
	if (!l)
		return;
	free(l->req);
	free(l->seen);
	free(l->pend);
	explicit_bzero(&l->auth, sizeof(l->auth));
	free(l);
}

const struct kura_iscsi_login_result *kura_iscsi_login_result(const struct kura_iscsi_login *l)
{
	return &l->r;
}

static void drop_buffers(struct kura_iscsi_login *l)
{
	free(l->req);
	free(l->pend);
	l->req = l->pend = NULL;
	l->req_len = l->pend_len = l->pend_off = 0;
}

/* Ends the login with a status: the response carries it, no data, no T. */
static int fail(struct kura_iscsi_login *l, uint8_t *rsp, unsigned status, const char *why)
{
	rsp[1] = 0;
	rsp[36] = (uint8_t)(status >> 8);
	rsp[37] = (uint8_t)status;
	l->ended = true;
	drop_buffers(l);
	if (l->ops->log_refusal)
		l->ops->log_refusal(l->ctx, l->r.iname, l->r.tname, why ? why : "login failed");
	switch (status) {
	case LST_AUTH_FAIL:
	case LST_FORBIDDEN:
		return -EACCES;
	case LST_NOT_FOUND:
		return -ENOENT;
	case LST_NO_RESOURCES:
		return -ENOMEM;
	case LST_UNAVAILABLE:
		return -EAGAIN;
	default:
		return (status >> 8) == 3 ? -EIO : -EPROTO;
	}
}

/* The header of every request: the same initiator, session and connection
 * throughout, a valid stage and transition. Returns 0 or a status. */
static unsigned check_header(struct kura_iscsi_login *l, const uint8_t *bhs, const char **why)
{
	uint8_t f = bhs[1];
	bool transit = f & ISCSI_F_TRANSIT;
	int csg = (f >> 2) & 3, nsg = f & 3;

	if (iscsi_opcode(bhs) != ISCSI_OP_LOGIN_REQ) {
		*why = "a PDU other than Login Request during login";
		return LST_INVALID_DURING_LOGIN;
	}
	if (!l->hdr_seen) {
		l->hdr_seen = true;
		memcpy(l->r.isid, bhs + 8, 6);
		l->r.tsih = iscsi_get16(bhs + 14);
		l->r.cid = iscsi_get16(bhs + 20);
		l->r.cmdsn = iscsi_cmdsn(bhs);
		l->r.expstatsn = iscsi_expstatsn(bhs);
		if (bhs[3] > 0) { /* Version-min: we speak version 0 only */
			*why = "the initiator needs an iSCSI version above 0";
			return LST_BAD_VERSION;
		}
	} else if (memcmp(l->r.isid, bhs + 8, 6) || l->r.tsih != iscsi_get16(bhs + 14) ||
		   l->r.cid != iscsi_get16(bhs + 20)) {
		*why = "ISID, TSIH or CID changed during login";
		return LST_INIT_ERR;
	}
	if (transit && (f & ISCSI_F_CONTINUE)) {
		*why = "a login request with both T and C";
		return LST_INIT_ERR;
	}
	if (csg != 0 && csg != 1) {
		*why = "a login request in no login stage (CSG 2 or 3)";
		return LST_INIT_ERR;
	}
	if (l->stage < 0)
		l->stage = csg;
	if (csg != l->stage) {
		*why = "a login request out of stage";
		return LST_INIT_ERR;
	}
	if (transit && (nsg <= csg || nsg == 2)) {
		*why = "a login request asking for an invalid next stage";
		return LST_INIT_ERR;
	}
	return 0;
}

/* InitiatorName, TargetName and SessionType: who logs in to what, sent
 * with the first request. Returns 0 or a status. */
static unsigned first_request(struct kura_iscsi_login *l, const struct iscsi_kvlist *kv, int csg,
			      const char **why)
{
	const char *in = iscsi_kv_get(kv, "InitiatorName"), *tn = iscsi_kv_get(kv, "TargetName");
	const char *st = iscsi_kv_get(kv, "SessionType");
	int err;

	if (!in || !in[0]) {
		*why = "no InitiatorName in the first login request";
		return LST_MISSING;
	}
	if (strlen(in) > KURA_ISCSI_NAME_MAX) {
		*why = "an InitiatorName longer than 223 bytes";
		return LST_INIT_ERR;
	}
	snprintf(l->r.iname, sizeof(l->r.iname), "%s", in);
	if (!st || !strcmp(st, "Normal")) {
		l->r.type = KURA_ISCSI_NORMAL;
	} else if (!strcmp(st, "Discovery")) {
		l->r.type = KURA_ISCSI_DISCOVERY;
		return 0; /* no target: nothing to look up or authenticate against */
	} else {
		*why = "an unknown SessionType";
		return LST_BAD_TYPE;
	}
	if (!tn || !tn[0]) {
		*why = "no TargetName in the first login request of a normal session";
		return LST_MISSING;
	}
	if (strlen(tn) > KURA_ISCSI_NAME_MAX) {
		*why = "no such target";
		return LST_NOT_FOUND;
	}
	snprintf(l->r.tname, sizeof(l->r.tname), "%s", tn);
	err = l->ops->target(l->ctx, tn, in, &l->auth);
	switch (err) {
	case 0:
		break;
	case -ENOENT:
		*why = "no such target";
		return LST_NOT_FOUND;
	case -EACCES:
		*why = "initiator not on the target's ACL";
		return LST_FORBIDDEN;
	case -EAGAIN:
		*why = "target not available";
		return LST_UNAVAILABLE;
	default:
		*why = "target lookup failed";
		return LST_TARGET_ERR;
	}
	/* The secrets are strings: make sure whatever filled them ended them. */
	l->auth.user[KURA_ISCSI_CHAP_MAX] = l->auth.secret[KURA_ISCSI_CHAP_MAX] = 0;
	l->auth.muser[KURA_ISCSI_CHAP_MAX] = l->auth.msecret[KURA_ISCSI_CHAP_MAX] = 0;
	if (csg == 1 && l->auth.user[0]) {
		*why = "the target requires CHAP and the initiator went straight to the operational stage";
		return LST_AUTH_FAIL;
	}
	return 0;
}

static bool identity_key(const char *k)
{
	return !strcmp(k, "InitiatorName") || !strcmp(k, "TargetName") || !strcmp(k, "SessionType");
}

/* An identity key sent again after the first request: harmless when it
 * says what the first one did. libiscsi does this when its offer of CHAP
 * was answered None: it starts the operational stage as if anew. */
static bool identity_same(const struct kura_iscsi_login *l, const char *k, const char *v)
{
	if (!strcmp(k, "InitiatorName"))
		return !strcmp(v, l->r.iname);
	if (!strcmp(k, "TargetName"))
		return l->r.type == KURA_ISCSI_DISCOVERY || !strcmp(v, l->r.tname);
	if (!strcmp(k, "SessionType"))
		return !strcmp(v, l->r.type == KURA_ISCSI_DISCOVERY ? "Discovery" : "Normal");
	if (!strcmp(k, "InitiatorAlias"))
		return !strcmp(v, l->r.ialias);
	return false;
}

static bool seen_has(const struct kura_iscsi_login *l, const char *k)
{
	for (size_t off = 0; off < l->seen_len; off += strlen(l->seen + off) + 1)
		if (!strcmp(l->seen + off, k))
			return true;
	return false;
}

/* RFC 7143 6.2: no key may be negotiated or declared twice in a login.
 * Marks the repeats that are allowed (skip) and remembers the new keys.
 * Returns 0 or a status. */
static unsigned check_repeats(struct kura_iscsi_login *l, const struct iscsi_kvlist *kv, bool *skip,
			      const char **why)
{
	size_t need = 0;
	char *ns;

	for (unsigned i = 0; i < kv->n; i++) {
		skip[i] = false;
		if (!seen_has(l, kv->v[i].key)) {
			need += strlen(kv->v[i].key) + 1;
			continue;
		}
		if (!identity_same(l, kv->v[i].key, kv->v[i].val)) {
			*why = "a key sent twice in one login";
			return LST_INIT_ERR;
		}
		skip[i] = true;
	}
	if (!need)
		return 0;
	if (l->seen_len + need > KURA_ISCSI_TEXT_MAX) {
		*why = "more keys in one login than the target keeps";
		return LST_INIT_ERR;
	}
	if (!(ns = realloc(l->seen, l->seen_len + need))) {
		*why = "out of memory";
		return LST_NO_RESOURCES;
	}
	l->seen = ns;
	for (unsigned i = 0; i < kv->n; i++) {
		size_t len = strlen(kv->v[i].key) + 1;

		if (skip[i])
			continue;
		memcpy(l->seen + l->seen_len, kv->v[i].key, len);
		l->seen_len += len;
	}
	return 0;
}

/* Every key of a request but the security ones (iscsi_sec_keys takes
 * those). Returns 0 or a status. */
static unsigned login_keys(struct kura_iscsi_login *l, const struct iscsi_kvlist *kv,
			   const bool *skip, bool first, int csg, struct iscsi_neg *neg,
			   struct iscsi_out *o, const char **why)
{
	for (unsigned i = 0; i < kv->n; i++) {
		const char *k = kv->v[i].key, *v = kv->v[i].val;

		if (skip[i])
			continue;
		if (identity_key(k)) {
			if (!first && !identity_same(l, k, v)) {
				*why = "InitiatorName, TargetName or SessionType changed during login";
				return LST_INIT_ERR;
			}
		} else if (!strcmp(k, "InitiatorAlias")) {
			snprintf(l->r.ialias, sizeof(l->r.ialias), "%s", v);
		} else if (!strcmp(k, "TargetAlias") || !strcmp(k, "TargetAddress") ||
			   !strcmp(k, "TargetPortalGroupTag")) {
			*why = "the initiator sent a key only targets send";
			return LST_INIT_ERR;
		} else if (iscsi_sec_key(k)) {
			if (csg != 0) {
				*why = "a security key outside the security stage";
				return LST_INIT_ERR;
			}
		} else if (!strcmp(k, "SendTargets")) {
			iscsi_put(o, k, "Reject"); /* full feature phase only */
		} else if (iscsi_op_key(neg, k, v, o) == -ENOENT) {
			/* Unknown, X- and X# extensions, and the markers RFC 7143 dropped. */
			iscsi_put(o, k, "NotUnderstood");
		}
	}
	return 0;
}

/* Sends the next piece of a pending answer (the whole of it when it fits).
 * req_transit: the T bit of the request being answered. Returns 0, or 1
 * when the login reached full feature phase. */
static int deliver(struct kura_iscsi_login *l, int csg, bool req_transit, uint8_t *rsp,
		   uint8_t **rsp_data, uint32_t *rsp_dlen)
{
	uint32_t n = KURA_MIN(l->pend_len - l->pend_off, ISCSI_LOGIN_DSL);
	bool transit = l->pend_transit && req_transit;
	int nsg = l->pend_nsg;

	if (l->pend_off || n < l->pend_len) {
		/* A piece: copy it out, keep the rest. */
		if (n && !(*rsp_data = malloc(n)))
			return fail(l, rsp, LST_NO_RESOURCES, "out of memory");
		if (n)
			memcpy(*rsp_data, l->pend + l->pend_off, n);
		l->pend_off += n;
	} else {
		*rsp_data = (uint8_t *)l->pend; /* all of it: hand the buffer over */
		l->pend = NULL;
		l->pend_off = n;
	}
	*rsp_dlen = n;
	if (l->pend_off < l->pend_len) {
		rsp[1] = (uint8_t)(ISCSI_F_CONTINUE | csg << 2);
		return 0;
	}
	free(l->pend);
	l->pend = NULL;
	l->pend_len = l->pend_off = 0;
	if (!*rsp_dlen) {
		free(*rsp_data);
		*rsp_data = NULL;
	}
	rsp[1] = (uint8_t)(csg << 2);
	if (!transit)
		return 0;
	rsp[1] |= (uint8_t)(ISCSI_F_TRANSIT | nsg);
	l->stage = nsg;
	if (nsg != 3)
		return 0;
	l->ended = true;
	l->r.params.first_burst = KURA_MIN(l->r.params.first_burst, l->r.params.max_burst);
	return 1;
}

/* A whole request is in l->req: answer it. */
static int answer(struct kura_iscsi_login *l, bool transit, int csg, int nsg, uint8_t *rsp,
		  uint8_t **rsp_data, uint32_t *rsp_dlen)
{
	struct iscsi_neg neg = {.p = &l->r.params, .in_login = true, .leading = l->r.tsih == 0};
	struct iscsi_sec_ctx sc = {l->ops, l->ctx, &l->auth};
	struct iscsi_out o = {.cap = KURA_ISCSI_TEXT_MAX};
	struct iscsi_kvlist *kv = malloc(sizeof(*kv));
	bool *skip = malloc(ISCSI_PAIRS_MAX * sizeof(bool));
	bool first = !l->keys_seen;
	const char *why = NULL, *dup;
	unsigned st = 0;
	int err;

	o.buf = malloc(o.cap);
	if (!kv || !skip || !o.buf) {
		st = LST_NO_RESOURCES;
		why = "out of memory";
		goto out;
	}
	err = iscsi_text_split(l->req, l->req_len, kv, &dup);
	if (err) {
		st = LST_INIT_ERR;
		why = err == -EEXIST ? "a key sent twice in one login request"
		      : err == -E2BIG ? "more keys in one login request than the target takes"
				      : "malformed login text";
		goto out;
	}
	if ((st = check_repeats(l, kv, skip, &why)))
		goto out;
	if (first) {
		l->keys_seen = true;
		if ((st = first_request(l, kv, csg, &why)))
			goto out;
	}
	neg.discovery = l->r.type == KURA_ISCSI_DISCOVERY;
	if ((st = login_keys(l, kv, skip, first, csg, &neg, &o, &why)))
		goto out;
	if (csg == 0 && (st = iscsi_sec_keys(&l->sec, &sc, kv, &o, &why)))
		goto out;
	iscsi_op_finish(&neg, &o);
	if (transit && csg == 0) {
		unsigned may = iscsi_sec_may_leave(&l->sec, &l->auth, &why);

		if (may == 0)
			transit = false; /* the initiator must finish the exchange first */
		else if (may != 1 && (st = may))
			goto out;
	}
	/* Our declarations: the portal group in the first answer of a normal
	 * session; our MaxRecvDataSegmentLength once, in the operational stage
	 * or the last answer, or initiators would keep to 8192 bytes. */
	if (l->r.type == KURA_ISCSI_NORMAL && !l->tpgt_sent) {
		iscsi_put_num(&o, "TargetPortalGroupTag", 1);
		l->tpgt_sent = true;
	}
	if (!l->mrdsl_sent && (csg == 1 || (transit && nsg == 3))) {
		iscsi_put_num(&o, "MaxRecvDataSegmentLength", ISCSI_OUR_MAX_RECV_DSL);
		l->mrdsl_sent = true;
	}
	if (o.overflow) {
		st = LST_INIT_ERR;
		why = "a login answer longer than 64 KiB";
	}
out:
	free(kv);
	free(skip);
	free(l->req);
	l->req = NULL;
	l->req_len = 0;
	if (st) {
		free(o.buf);
		return fail(l, rsp, st, why);
	}
	l->pend = o.buf;
	l->pend_len = (uint32_t)o.len;
	l->pend_off = 0;
	l->pend_transit = transit;
	l->pend_nsg = nsg;
	return deliver(l, csg, transit, rsp, rsp_data, rsp_dlen);
}

int kura_iscsi_login_step(struct kura_iscsi_login *l, const uint8_t *bhs, const uint8_t *data,
			  uint32_t dlen, uint8_t *rsp, uint8_t **rsp_data, uint32_t *rsp_dlen)
{
	uint8_t f = bhs[1];
	bool transit = f & ISCSI_F_TRANSIT, cont = f & ISCSI_F_CONTINUE;
	int csg = (f >> 2) & 3, nsg = f & 3;
	const char *why = NULL;
	unsigned st;
	char *nb;

	*rsp_data = NULL;
	*rsp_dlen = 0;
	memset(rsp, 0, KURA_ISCSI_BHS);
	rsp[0] = ISCSI_OP_LOGIN_RSP;
	rsp[2] = 0x00; /* Version-max */
	rsp[3] = 0x00; /* Version-active */
	memcpy(rsp + 8, bhs + 8, 6); /* ISID */
	memcpy(rsp + 16, bhs + 16, 4); /* ITT */
	if (!data)
		dlen = 0;
	if (l->ended)
		return fail(l, rsp, LST_INIT_ERR, "a login request after the login ended");
	if (++l->npdu > LOGIN_PDUS_MAX)
		return fail(l, rsp, LST_INIT_ERR, "too many login requests");
	if ((st = check_header(l, bhs, &why)))
		return fail(l, rsp, st, why);
	if (l->pend) {
		/* The initiator fetches the rest of our answer with empty requests. */
		if (dlen || cont)
			return fail(l, rsp, LST_INIT_ERR, "login text while the target's answer continues");
		return deliver(l, csg, transit, rsp, rsp_data, rsp_dlen);
	}
	if (dlen > KURA_ISCSI_TEXT_MAX - l->req_len)
		return fail(l, rsp, LST_INIT_ERR, "login text longer than 64 KiB");
	if (dlen) {
		if (!(nb = realloc(l->req, l->req_len + dlen)))
			return fail(l, rsp, LST_NO_RESOURCES, "out of memory");
		memcpy(nb + l->req_len, data, dlen);
		l->req = nb;
		l->req_len += dlen;
	}
	if (cont) {
		/* More of this request follows: an empty answer in the same stage. */
		rsp[1] = (uint8_t)(csg << 2);
		return 0;
	}
	return answer(l, transit, csg, nsg, rsp, rsp_data, rsp_dlen);
}
