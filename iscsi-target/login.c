/* iSCSI login and text negotiation (see login.h). */
#include "iscsi-target/login.h"

#include "iscsi-target/hash.h"
#include "iscsi-target/pdu.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUR_MAX_RECV_DSL 262144u
#define OUR_MAX_BURST (16u << 20)
#define OUR_FIRST_BURST 262144u
#define OUR_MAX_R2T 16u
#define LOGIN_RSP_MAX 8192u  /* what an initiator accepts before it declares more */
#define CHAP_CHAL_LEN 32u
#define MAX_PAIRS 128u

/* Login status classes and details (11.13.5). */
#define ST_INIT_ERR 0x0200
#define ST_AUTH_FAIL 0x0201
#define ST_FORBIDDEN 0x0202
#define ST_NOT_FOUND 0x0203
#define ST_REMOVED 0x0204
#define ST_BAD_VERSION 0x0205
#define ST_MISSING 0x0207
#define ST_BAD_TYPE 0x0209
#define ST_TARGET_ERR 0x0300
#define ST_UNAVAILABLE 0x0301

void kura_iscsi_params_default(struct kura_iscsi_params *p)
{
	memset(p, 0, sizeof(*p));
	p->max_recv_dsl = OUR_MAX_RECV_DSL;
	p->max_xmit_dsl = 8192;
	p->max_burst = 262144;
	p->first_burst = 65536;
	p->max_outstanding_r2t = 1;
	p->max_connections = 1;
	p->default_time2wait = 2;
	p->default_time2retain = 20;
	p->erl = 0;
	p->initial_r2t = true;
	p->immediate_data = true;
	p->data_pdu_in_order = true;
	p->data_seq_in_order = true;
}

/* ---- text keys ---- */

int kura_iscsi_text_parse(const uint8_t *data, uint32_t dlen,
			  int (*fn)(void *arg, const char *key, const char *val), void *arg)
{
	uint32_t pos = 0;

	if (dlen && data[dlen - 1] != 0)
		return -EINVAL;
	while (pos < dlen) {
		const char *pair = (const char *)data + pos;
		size_t n = strlen(pair);
		const char *eq = memchr(pair, '=', n);
		char key[64];
		size_t kl;
		int r;

		pos += (uint32_t)n + 1;
		if (!n)
			continue; /* padding NULs some initiators leave */
		if (!eq)
			return -EINVAL;
		kl = (size_t)(eq - pair);
		if (!kl || kl > 63 || n - kl - 1 > 8192)
			return -EINVAL;
		memcpy(key, pair, kl);
		key[kl] = 0;
		if ((r = fn(arg, key, eq + 1)))
			return r;
	}
	return 0;
}

struct out {
	char *buf;
	size_t len, cap;
	bool overflow;
};

static void put_kv(struct out *o, const char *key, const char *val)
{
	size_t kl = strlen(key), vl = strlen(val);

	if (o->len + kl + vl + 2 > o->cap) {
		o->overflow = true;
		return;
	}
	memcpy(o->buf + o->len, key, kl);
	o->buf[o->len + kl] = '=';
	memcpy(o->buf + o->len + kl + 1, val, vl);
	o->buf[o->len + kl + 1 + vl] = 0;
	o->len += kl + vl + 2;
}

static void put_num(struct out *o, const char *key, uint64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
	put_kv(o, key, s);
}

static int parse_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s[0] || s[0] == '-' || s[0] == '+' || isspace((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "Yes"))
		*out = true;
	else if (!strcmp(s, "No"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

/* Whether a comma-separated list holds item. */
static bool list_has(const char *list, const char *item)
{
	size_t n = strlen(item);

	for (const char *p = list; *p;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);

		if (l == n && !memcmp(p, item, n))
			return true;
		if (!c)
			break;
		p = c + 1;
	}
	return false;
}

/* The first item of the initiator's list that we support, or NULL. */
static const char *list_pick(const char *list, const char *const *ours, unsigned nours)
{
	for (const char *p = list; *p;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);

		for (unsigned i = 0; i < nours; i++)
			if (strlen(ours[i]) == l && !memcmp(p, ours[i], l))
				return ours[i];
		if (!c)
			break;
		p = c + 1;
	}
	return NULL;
}

/* Binary values: 0x hex or 0b base64. */
static int b64v(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static int parse_bin(const char *s, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		size_t l = strlen(s + 2);
		const char *p = s + 2;

		if (!l)
			return -EINVAL;
		if (l % 2) { /* an odd count: the first digit stands alone */
			if (!isxdigit((unsigned char)p[0]))
				return -EINVAL;
			out[n++] = (uint8_t)(isdigit((unsigned char)p[0]) ? p[0] - '0'
					     : (tolower((unsigned char)p[0]) - 'a' + 10));
			p++;
		}
		for (; *p; p += 2) {
			unsigned v;
			if (n >= cap || !isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]) ||
			    sscanf(p, "%2x", &v) != 1)
				return -EINVAL;
			out[n++] = (uint8_t)v;
		}
	} else if (s[0] == '0' && (s[1] == 'b' || s[1] == 'B')) {
		unsigned acc = 0, bits = 0;

		for (const char *p = s + 2; *p && *p != '='; p++) {
			int v = b64v((unsigned char)*p);
			if (v < 0)
				return -EINVAL;
			acc = acc << 6 | (unsigned)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				if (n >= cap)
					return -EINVAL;
				out[n++] = (uint8_t)(acc >> bits);
			}
		}
		if (!n)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	*len = n;
	return 0;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	out[0] = '0';
	out[1] = 'x';
	for (size_t i = 0; i < n; i++) {
		out[2 + 2 * i] = d[b[i] >> 4];
		out[3 + 2 * i] = d[b[i] & 15];
	}
	out[2 + 2 * n] = 0;
}

int kura_iscsi_chap_response(int alg, uint8_t id, const uint8_t *secret, size_t slen,
			     const uint8_t *chal, size_t clen, uint8_t *out)
{
	struct kura_hash_piece v[3] = {{&id, 1}, {secret, slen}, {chal, clen}};

	if (alg == 5) {
		kura_md5(v, 3, out);
		return 16;
	}
	if (alg == 7) {
		kura_sha256(v, 3, out);
		return 32;
	}
	return -EINVAL;
}

static bool same_secret(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return !d;
}

/* ---- one negotiation round ---- */

struct pairs {
	unsigned n;
	char *key[MAX_PAIRS];
	char *val[MAX_PAIRS];
	bool dup;
};

static int collect(void *arg, const char *key, const char *val)
{
	struct pairs *p = arg;

	for (unsigned i = 0; i < p->n; i++)
		if (!strcmp(p->key[i], key)) {
			p->dup = true;
			return 0;
		}
	if (p->n == MAX_PAIRS)
		return -E2BIG;
	p->key[p->n] = strdup(key);
	p->val[p->n] = strdup(val);
	if (!p->key[p->n] || !p->val[p->n]) {
		free(p->key[p->n]);
		free(p->val[p->n]);
		return -ENOMEM;
	}
	p->n++;
	return 0;
}

static void pairs_free(struct pairs *p)
{
	for (unsigned i = 0; i < p->n; i++) {
		free(p->key[i]);
		free(p->val[i]);
	}
	p->n = 0;
}

static const char *get(const struct pairs *p, const char *key)
{
	for (unsigned i = 0; i < p->n; i++)
		if (!strcmp(p->key[i], key))
			return p->val[i];
	return NULL;
}

/* Negotiates one operational key; returns 0 when it was one. leading: the
 * session's first login (keys of session scope are valid only there). */
static int op_key(struct kura_iscsi_params *pr, const char *k, const char *v, struct out *o,
		  bool in_login)
{
	static const char *const digests[] = {"CRC32C", "None"};
	uint64_t n;
	bool b;

#define NUM(lo, hi) (parse_num(v, lo, hi, &n) ? (put_kv(o, k, "Reject"), 1) : 0)
#define BOOL() (parse_bool(v, &b) ? (put_kv(o, k, "Reject"), 1) : 0)
	if (!strcmp(k, "HeaderDigest") || !strcmp(k, "DataDigest")) {
		const char *pick = list_pick(v, digests, 2);
		if (!in_login) {
			put_kv(o, k, "Reject");
			return 0;
		}
		if (!pick) {
			put_kv(o, k, "Reject");
			return 0;
		}
		if (k[0] == 'H')
			pr->header_digest = !strcmp(pick, "CRC32C");
		else
			pr->data_digest = !strcmp(pick, "CRC32C");
		put_kv(o, k, pick);
	} else if (!strcmp(k, "MaxRecvDataSegmentLength")) {
		if (parse_num(v, 512, 16777215, &n))
			put_kv(o, k, "Reject");
		else
			pr->max_xmit_dsl = (uint32_t)n; /* declarative: no answer */
	} else if (!in_login) {
		return -ENOENT; /* only MaxRecvDataSegmentLength may change in full feature */
	} else if (!strcmp(k, "MaxConnections")) {
		if (!NUM(1, 65535)) {
			pr->max_connections = 1;
			put_num(o, k, 1);
		}
	} else if (!strcmp(k, "InitialR2T")) {
		if (!BOOL()) {
			pr->initial_r2t = b; /* OR with our No */
			put_kv(o, k, b ? "Yes" : "No");
		}
	} else if (!strcmp(k, "ImmediateData")) {
		if (!BOOL()) {
			pr->immediate_data = b; /* AND with our Yes */
			put_kv(o, k, b ? "Yes" : "No");
		}
	} else if (!strcmp(k, "MaxBurstLength")) {
		if (!NUM(512, 16777215)) {
			pr->max_burst = (uint32_t)(n < OUR_MAX_BURST ? n : OUR_MAX_BURST);
			put_num(o, k, pr->max_burst);
		}
	} else if (!strcmp(k, "FirstBurstLength")) {
		if (!NUM(512, 16777215)) {
			pr->first_burst = (uint32_t)(n < OUR_FIRST_BURST ? n : OUR_FIRST_BURST);
			put_num(o, k, pr->first_burst);
		}
	} else if (!strcmp(k, "DefaultTime2Wait")) {
		if (!NUM(0, 3600)) {
			pr->default_time2wait = (uint32_t)(n > 2 ? n : 2);
			put_num(o, k, pr->default_time2wait);
		}
	} else if (!strcmp(k, "DefaultTime2Retain")) {
		if (!NUM(0, 3600)) {
			pr->default_time2retain = 0; /* min with ours: ERL 0 keeps nothing */
			put_num(o, k, 0);
		}
	} else if (!strcmp(k, "MaxOutstandingR2T")) {
		if (!NUM(1, 65535)) {
			pr->max_outstanding_r2t = (uint32_t)(n < OUR_MAX_R2T ? n : OUR_MAX_R2T);
			put_num(o, k, pr->max_outstanding_r2t);
		}
	} else if (!strcmp(k, "DataPDUInOrder")) {
		if (!BOOL()) {
			pr->data_pdu_in_order = true; /* OR with our Yes */
			put_kv(o, k, "Yes");
		}
	} else if (!strcmp(k, "DataSequenceInOrder")) {
		if (!BOOL()) {
			pr->data_seq_in_order = true;
			put_kv(o, k, "Yes");
		}
	} else if (!strcmp(k, "ErrorRecoveryLevel")) {
		if (!NUM(0, 2)) {
			pr->erl = 0;
			put_num(o, k, 0);
		}
	} else if (!strcmp(k, "iSCSIProtocolLevel")) {
		if (!NUM(0, 31))
			put_num(o, k, n < 1 ? n : 1);
	} else if (!strcmp(k, "TaskReporting")) {
		put_kv(o, k, "RFC3720");
	} else {
		return -ENOENT;
	}
#undef NUM
#undef BOOL
	return 0;
}

/* ---- login ---- */

enum sec_state { SEC_START, SEC_CHALLENGED, SEC_DONE };

struct kura_iscsi_login {
	const struct kura_iscsi_login_ops *ops;
	void *ctx;
	struct kura_iscsi_login_result r;
	bool started, target_known, tpgt_sent, mrdsl_sent, none_ok;
	int stage; /* CSG the next PDU must carry */
	char *tbuf;
	size_t tlen;
	struct kura_iscsi_target_auth auth;
	enum sec_state sec;
	bool auth_chap; /* AuthMethod=CHAP agreed */
	int alg;
	uint8_t chap_id;
	uint8_t chal[CHAP_CHAL_LEN];
};

int kura_iscsi_login_create(const struct kura_iscsi_login_ops *ops, void *ctx,
			    struct kura_iscsi_login **out)
{
	struct kura_iscsi_login *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->ops = ops;
	l->ctx = ctx;
	kura_iscsi_params_default(&l->r.params);
	*out = l;
	return 0;
}

void kura_iscsi_login_free(struct kura_iscsi_login *l)
{
	if (!l)
		return;
	free(l->tbuf);
	memset(l->auth.secret, 0, sizeof(l->auth.secret));
	memset(l->auth.msecret, 0, sizeof(l->auth.msecret));
	free(l);
}

const struct kura_iscsi_login_result *kura_iscsi_login_result(const struct kura_iscsi_login *l)
{
	return &l->r;
}

static int fail(struct kura_iscsi_login *l, uint8_t *rsp, unsigned status, const char *why)
{
	rsp[1] = 0;
	rsp[36] = (uint8_t)(status >> 8);
	rsp[37] = (uint8_t)status;
	if (why && l->ops->log_refusal)
		l->ops->log_refusal(l->ctx, l->r.iname, l->r.tname, why);
	return (status >> 8) == 3 ? -EAGAIN
	       : status == ST_NOT_FOUND ? -ENOENT
	       : status == ST_AUTH_FAIL || status == ST_FORBIDDEN ? -EACCES
					       : -EPROTO;
}

/* Security keys: AuthMethod and CHAP. Returns 0, or a failure status. */
static unsigned security(struct kura_iscsi_login *l, const struct pairs *p, struct out *o,
			 const char **why)
{
	const char *am = get(p, "AuthMethod"), *a = get(p, "CHAP_A");
	const char *n = get(p, "CHAP_N"), *r = get(p, "CHAP_R");
	const char *mi = get(p, "CHAP_I"), *mc = get(p, "CHAP_C");
	bool need = l->auth.user[0] != 0;

	if (am) {
		if (need && list_has(am, "CHAP")) {
			l->auth_chap = true;
			put_kv(o, "AuthMethod", "CHAP");
		} else if (!need && list_has(am, "None")) {
			l->none_ok = true;
			put_kv(o, "AuthMethod", "None");
		} else {
			*why = need ? "the target requires CHAP and the initiator did not offer it"
				    : "no authentication method in common";
			return ST_AUTH_FAIL;
		}
	}
	if (a) {
		if (!l->auth_chap || l->sec != SEC_START) {
			*why = "CHAP_A out of turn";
			return ST_INIT_ERR;
		}
		l->alg = list_has(a, "7") ? 7 : list_has(a, "5") ? 5 : 0;
		if (!l->alg) {
			*why = "no CHAP algorithm in common (MD5 or SHA-256)";
			return ST_AUTH_FAIL;
		}
		{
			char s[8], ch[2 + 2 * CHAP_CHAL_LEN + 1];

			l->ops->random(l->ctx, &l->chap_id, 1);
			l->ops->random(l->ctx, l->chal, sizeof(l->chal));
			snprintf(s, sizeof(s), "%d", l->alg);
			put_kv(o, "CHAP_A", s);
			snprintf(s, sizeof(s), "%u", l->chap_id);
			put_kv(o, "CHAP_I", s);
			hex(l->chal, sizeof(l->chal), ch);
			put_kv(o, "CHAP_C", ch);
		}
		l->sec = SEC_CHALLENGED;
	}
	if (n || r) {
		uint8_t got[64], want[32], mchal[1024];
		size_t gl, ml;
		int dl;

		if (l->sec != SEC_CHALLENGED || !n || !r) {
			*why = "CHAP response out of turn";
			return ST_INIT_ERR;
		}
		dl = kura_iscsi_chap_response(l->alg, l->chap_id, (const uint8_t *)l->auth.secret,
					      strlen(l->auth.secret), l->chal, sizeof(l->chal), want);
		if (strcmp(n, l->auth.user) || parse_bin(r, got, sizeof(got), &gl) ||
		    gl != (size_t)dl || !same_secret(got, want, gl)) {
			*why = "wrong CHAP user or secret";
			return ST_AUTH_FAIL;
		}
		if (mi || mc) {
			uint64_t id;
			char rs[2 + 64 + 1];

			if (!mi || !mc || parse_num(mi, 0, 255, &id) ||
			    parse_bin(mc, mchal, sizeof(mchal), &ml) || ml < 1) {
				*why = "malformed mutual CHAP challenge";
				return ST_AUTH_FAIL;
			}
			if (!l->auth.muser[0]) {
				*why = "mutual CHAP asked for, but the target has no mutual credentials";
				return ST_AUTH_FAIL;
			}
			if (ml == sizeof(l->chal) && !memcmp(mchal, l->chal, ml)) {
				*why = "mutual CHAP challenge reflects ours";
				return ST_AUTH_FAIL;
			}
			dl = kura_iscsi_chap_response(l->alg, (uint8_t)id,
						      (const uint8_t *)l->auth.msecret,
						      strlen(l->auth.msecret), mchal, ml, want);
			hex(want, (size_t)dl, rs);
			put_kv(o, "CHAP_N", l->auth.muser);
			put_kv(o, "CHAP_R", rs);
		}
		l->sec = SEC_DONE;
	}
	return 0;
}

/* Keys every login PDU may carry, whatever the stage. Returns a status on failure. */
static unsigned login_keys(struct kura_iscsi_login *l, const struct pairs *p, struct out *o,
			   const char **why)
{
	for (unsigned i = 0; i < p->n; i++) {
		const char *k = p->key[i], *v = p->val[i];

		if (!strcmp(k, "InitiatorName") || !strcmp(k, "TargetName") ||
		    !strcmp(k, "SessionType")) {
			continue; /* handled on the first PDU */
		} else if (!strcmp(k, "InitiatorAlias")) {
			snprintf(l->r.ialias, sizeof(l->r.ialias), "%s", v);
		} else if (!strcmp(k, "AuthMethod") || !strncmp(k, "CHAP_", 5)) {
			if (l->stage != 0) {
				*why = "security keys outside the security stage";
				return ST_INIT_ERR;
			}
		} else if (!strcmp(k, "TargetAlias") || !strcmp(k, "TargetAddress") ||
			   !strcmp(k, "TargetPortalGroupTag")) {
			*why = "a key only targets send";
			return ST_INIT_ERR;
		} else if (op_key(&l->r.params, k, v, o, true)) {
			put_kv(o, k, "NotUnderstood");
		}
	}
	return 0;
}

/* The first PDU: who logs in to what. */
static unsigned first_pdu(struct kura_iscsi_login *l, const uint8_t *bhs, const struct pairs *p,
			  const char **why)
{
	const char *in = get(p, "InitiatorName"), *tn = get(p, "TargetName");
	const char *st = get(p, "SessionType");
	int err;

	memcpy(l->r.isid, bhs + 8, 6);
	l->r.tsih = iscsi_get16(bhs + 14);
	l->r.cid = iscsi_get16(bhs + 20);
	l->r.cmdsn = iscsi_cmdsn(bhs);
	l->r.expstatsn = iscsi_expstatsn(bhs);
	if (bhs[3] > 0) {
		*why = "unsupported protocol version";
		return ST_BAD_VERSION;
	}
	if (!in || !in[0] || strlen(in) > KURA_ISCSI_NAME_MAX) {
		*why = "no InitiatorName";
		return ST_MISSING;
	}
	snprintf(l->r.iname, sizeof(l->r.iname), "%s", in);
	if (!st || !strcmp(st, "Normal")) {
		l->r.type = KURA_ISCSI_NORMAL;
	} else if (!strcmp(st, "Discovery")) {
		l->r.type = KURA_ISCSI_DISCOVERY;
	} else {
		*why = "unknown SessionType";
		return ST_BAD_TYPE;
	}
	if (l->r.type == KURA_ISCSI_DISCOVERY)
		return 0;
	if (!tn || !tn[0] || strlen(tn) > KURA_ISCSI_NAME_MAX) {
		*why = "no TargetName";
		return ST_MISSING;
	}
	snprintf(l->r.tname, sizeof(l->r.tname), "%s", tn);
	err = l->ops->target(l->ctx, tn, in, &l->auth);
	if (err == -ENOENT) {
		*why = "no such target";
		return ST_NOT_FOUND;
	}
	if (err == -EACCES) {
		*why = "initiator not on the target's ACL";
		return ST_FORBIDDEN;
	}
	if (err) {
		*why = "target not available";
		return ST_UNAVAILABLE;
	}
	l->target_known = true;
	return 0;
}

int kura_iscsi_login_step(struct kura_iscsi_login *l, const uint8_t *bhs, const uint8_t *data,
			  uint32_t dlen, uint8_t *rsp, uint8_t **rsp_data, uint32_t *rsp_dlen)
{
	uint8_t f = bhs[1];
	bool transit = f & ISCSI_F_TRANSIT, cont = f & ISCSI_F_CONTINUE;
	int csg = (f >> 2) & 3, nsg = f & 3;
	struct pairs p = {0};
	struct out o = {0};
	const char *why = NULL;
	unsigned st = 0;
	int ret = 0;

	*rsp_data = NULL;
	*rsp_dlen = 0;
	rsp[0] = ISCSI_OP_LOGIN_RSP;
	rsp[2] = 0x00; /* version max */
	rsp[3] = 0x00; /* version active */
	memcpy(rsp + 8, bhs + 8, 6); /* ISID */
	memcpy(rsp + 16, bhs + 16, 4); /* ITT */
	if (!l->started && (bhs[3] > 0)) {
		memcpy(l->r.isid, bhs + 8, 6);
		l->r.cmdsn = iscsi_cmdsn(bhs);
		l->r.expstatsn = iscsi_expstatsn(bhs);
		return fail(l, rsp, ST_BAD_VERSION, "unsupported protocol version");
	}
	if (!l->started && csg == 1)
		l->stage = 1; /* no security stage: the target decides below whether that is allowed */
	if (csg != l->stage || csg == 2 || csg == 3 || (transit && cont) ||
	    (transit && (nsg == 2 || nsg <= csg))) {
		if (!l->started) {
			memcpy(l->r.isid, bhs + 8, 6);
			l->r.cmdsn = iscsi_cmdsn(bhs);
			l->r.expstatsn = iscsi_expstatsn(bhs);
		}
		return fail(l, rsp, ST_INIT_ERR, "login stage out of order");
	}
	/* Gather C-bit continuations. */
	if (l->tlen + dlen > KURA_ISCSI_TEXT_MAX)
		return fail(l, rsp, ST_INIT_ERR, "login text too long");
	if (dlen) {
		char *nb = realloc(l->tbuf, l->tlen + dlen);
		if (!nb)
			return fail(l, rsp, ST_TARGET_ERR, NULL);
		memcpy(nb + l->tlen, data, dlen);
		l->tbuf = nb;
		l->tlen += dlen;
	}
	if (cont) {
		rsp[1] = (uint8_t)(csg << 2);
		return 0;
	}
	ret = kura_iscsi_text_parse((const uint8_t *)l->tbuf, (uint32_t)l->tlen, collect, &p);
	free(l->tbuf);
	l->tbuf = NULL;
	l->tlen = 0;
	if (ret || p.dup) {
		pairs_free(&p);
		if (!l->started) {
			memcpy(l->r.isid, bhs + 8, 6);
			l->r.cmdsn = iscsi_cmdsn(bhs);
			l->r.expstatsn = iscsi_expstatsn(bhs);
		}
		return fail(l, rsp, ret == -ENOMEM ? ST_TARGET_ERR : ST_INIT_ERR,
			    p.dup ? "a key sent twice" : "malformed login text");
	}
	if (!(o.buf = malloc(LOGIN_RSP_MAX))) {
		pairs_free(&p);
		return fail(l, rsp, ST_TARGET_ERR, NULL);
	}
	o.cap = LOGIN_RSP_MAX;
	if (!l->started) {
		st = first_pdu(l, bhs, &p, &why);
		l->started = true;
	}
	if (!st)
		st = login_keys(l, &p, &o, &why);
	if (!st && csg == 0)
		st = security(l, &p, &o, &why);
	if (!st && l->r.type == KURA_ISCSI_NORMAL && !l->tpgt_sent) {
		put_num(&o, "TargetPortalGroupTag", 1);
		l->tpgt_sent = true;
	}
	if (!st && csg == 1 && !l->mrdsl_sent) {
		put_num(&o, "MaxRecvDataSegmentLength", OUR_MAX_RECV_DSL);
		l->mrdsl_sent = true;
	}
	/* Leaving the security stage needs authentication done. */
	if (!st && (transit || csg == 1)) {
		bool authed = l->auth.user[0] ? l->sec == SEC_DONE : true;
		if (!authed && (csg == 1 || transit)) {
			if (csg == 1 || !l->auth_chap) {
				why = "the target requires CHAP and the initiator skipped it";
				st = ST_AUTH_FAIL;
			} else {
				transit = false; /* CHAP agreed: the exchange comes first */
			}
		}
	}
	pairs_free(&p);
	if (!st && o.overflow) {
		why = "login answer too long";
		st = ST_INIT_ERR;
	}
	if (st) {
		free(o.buf);
		return fail(l, rsp, st, why);
	}
	if (transit && csg == 0 && l->sec == SEC_CHALLENGED)
		transit = false; /* the initiator must answer our challenge first */
	rsp[1] = (uint8_t)((csg << 2) | (transit ? ISCSI_F_TRANSIT | nsg : 0));
	rsp[36] = 0;
	rsp[37] = 0;
	*rsp_data = (uint8_t *)o.buf;
	*rsp_dlen = (uint32_t)o.len;
	if (!o.len) {
		free(o.buf);
		*rsp_data = NULL;
	}
	if (transit) {
		l->stage = nsg;
		if (nsg == 3)
			return 1;
	}
	return 0;
}

/* ---- full feature phase Text ---- */

struct kura_iscsi_text {
	const struct kura_iscsi_login_ops *ops;
	void *ctx;
	char iname[KURA_ISCSI_NAME_MAX + 1];
	char own[KURA_ISCSI_NAME_MAX + 1];
	char *tbuf;             /* request being gathered (C bit) */
	size_t tlen;
	char *pend;             /* answer still to send (continued) */
	size_t plen, poff;
	uint32_t ttt, next_ttt;
};

int kura_iscsi_text_create(const struct kura_iscsi_login_ops *ops, void *ctx,
			   const char *iname, const char *own_target,
			   struct kura_iscsi_text **out)
{
	struct kura_iscsi_text *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->ops = ops;
	t->ctx = ctx;
	snprintf(t->iname, sizeof(t->iname), "%s", iname);
	snprintf(t->own, sizeof(t->own), "%s", own_target ? own_target : "");
	t->ttt = ISCSI_RSVD_TAG;
	*out = t;
	return 0;
}

void kura_iscsi_text_free(struct kura_iscsi_text *t)
{
	if (!t)
		return;
	free(t->tbuf);
	free(t->pend);
	free(t);
}

struct text_walk {
	struct kura_iscsi_text *t;
	struct kura_iscsi_params *params;
	struct out *o;
};

static int text_key(void *arg, const char *k, const char *v)
{
	struct text_walk *w = arg;
	struct out *o = w->o;

	if (!strcmp(k, "SendTargets")) {
		int n;

		if (strcmp(v, "All") && v[0] && strncmp(v, "iqn.", 4) && strncmp(v, "eui.", 4) &&
		    strncmp(v, "naa.", 4)) {
			put_kv(o, k, "Reject");
			return 0;
		}
		n = w->t->ops->send_targets(w->t->ctx, w->t->iname, v, w->t->own, o->buf + o->len,
					    o->cap - o->len);
		if (n == -ENOSPC) {
			o->overflow = true;
			return 0;
		}
		if (n < 0)
			return n;
		if (n == 0 && strcmp(v, "All"))
			put_kv(o, k, "Reject"); /* no such target for this initiator */
		else
			o->len += (size_t)n;
		return 0;
	}
	if (op_key(w->params, k, v, o, false) == -ENOENT)
		put_kv(o, k, "NotUnderstood");
	return 0;
}

int kura_iscsi_text_step(struct kura_iscsi_text *t, struct kura_iscsi_params *params,
			 const uint8_t *bhs, const uint8_t *data, uint32_t dlen, uint8_t *rsp,
			 uint8_t **rsp_data, uint32_t *rsp_dlen)
{
	uint32_t ttt = iscsi_w20(bhs), seg = params->max_xmit_dsl ? params->max_xmit_dsl : 8192;
	bool final = bhs[1] & ISCSI_F_FINAL, cont = bhs[1] & ISCSI_F_CONTINUE;
	uint8_t *piece;
	size_t n;

	*rsp_data = NULL;
	*rsp_dlen = 0;
	rsp[0] = ISCSI_OP_TEXT_RSP;
	memcpy(rsp + 8, bhs + 8, 8);
	memcpy(rsp + 16, bhs + 16, 4);
	iscsi_put32(rsp + 20, ISCSI_RSVD_TAG);
	if (ttt != ISCSI_RSVD_TAG && (ttt != t->ttt || !t->pend)) {
		rsp[1] = ISCSI_F_FINAL;
		return -EPROTO; /* a continuation we never offered */
	}
	if (ttt == ISCSI_RSVD_TAG) {
		/* A new request (or more of one, with C). */
		free(t->pend);
		t->pend = NULL;
		if (t->tlen + dlen > KURA_ISCSI_TEXT_MAX) {
			rsp[1] = ISCSI_F_FINAL;
			return -EPROTO;
		}
		if (dlen) {
			char *nb = realloc(t->tbuf, t->tlen + dlen);
			if (!nb)
				return -ENOMEM;
			memcpy(nb + t->tlen, data, dlen);
			t->tbuf = nb;
			t->tlen += dlen;
		}
		if (cont || !final) {
			/* Ask for the rest. */
			t->ttt = ++t->next_ttt & 0x7fffffffu;
			rsp[1] = 0;
			iscsi_put32(rsp + 20, t->ttt);
			if (!cont) {
				free(t->tbuf);
				t->tbuf = NULL;
				t->tlen = 0;
				rsp[1] = ISCSI_F_FINAL;
				iscsi_put32(rsp + 20, ISCSI_RSVD_TAG);
			}
			return 0;
		}
		{
			struct out o = {.cap = KURA_ISCSI_TEXT_MAX};
			struct text_walk w = {t, params, &o};
			int r;

			if (!(o.buf = malloc(o.cap)))
				return -ENOMEM;
			r = kura_iscsi_text_parse((const uint8_t *)t->tbuf, (uint32_t)t->tlen, text_key,
						  &w);
			free(t->tbuf);
			t->tbuf = NULL;
			t->tlen = 0;
			if (r || o.overflow) {
				free(o.buf);
				rsp[1] = ISCSI_F_FINAL;
				if (r == -EINVAL) {
					/* Malformed text: answer nothing, the request is refused. */
					return -EPROTO;
				}
				return r ? r : -ENOSPC;
			}
			t->pend = o.buf;
			t->plen = o.len;
			t->poff = 0;
		}
	}
	/* Send the next piece of the pending answer. */
	n = t->plen - t->poff < seg ? t->plen - t->poff : seg;
	piece = n ? malloc(n) : NULL;
	if (n && !piece)
		return -ENOMEM;
	if (n)
		memcpy(piece, t->pend + t->poff, n);
	t->poff += n;
	*rsp_data = piece;
	*rsp_dlen = (uint32_t)n;
	if (t->poff < t->plen) {
		t->ttt = ++t->next_ttt & 0x7fffffffu;
		rsp[1] = ISCSI_F_CONTINUE;
		iscsi_put32(rsp + 20, t->ttt);
	} else {
		rsp[1] = ISCSI_F_FINAL;
		free(t->pend);
		t->pend = NULL;
		t->ttt = ISCSI_RSVD_TAG;
	}
	return 0;
}
