/* iSCSI text keys (RFC 7143 sections 6 and 13, RFC 7144): splitting a data
 * segment into key=value pairs, value formats, operational key negotiation,
 * and the Text Request exchanges of the full feature phase (see login.h). */
#include "iscsi-target/login_int.h"

#include "common/base64.h"
#include "common/util.h"
#include "iscsi-target/pdu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A SendTargets answer grows to this before we give up on it: bounded, and
 * far more than the targets one node serves. */
#define SENDTARGETS_MAX (1u << 20)

void kura_iscsi_params_default(struct kura_iscsi_params *p)
{
	memset(p, 0, sizeof(*p));
	p->max_recv_dsl = ISCSI_OUR_MAX_RECV_DSL;
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

/* ---- key=value pairs ---- */

/* Key names are standard labels (letters, digits, . - + @ _) or the X- and
 * X# extension forms; anything else in a key means the text is garbage. */
static bool key_char_ok(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '+' || c == '@' || c == '_' || c == '#';
}

static size_t value_max(const char *key, size_t klen)
{
	if (klen == 6 && (!memcmp(key, "CHAP_C", 6) || !memcmp(key, "CHAP_R", 6)))
		return ISCSI_LARGE_VALUE_MAX;
	return ISCSI_VALUE_MAX;
}

/* One pair of n bytes (its NUL not counted). Returns the key length, or 0
 * when the pair is malformed. */
static size_t pair_check(const char *pair, size_t n)
{
	const char *eq = memchr(pair, '=', n);
	size_t kl;

	if (!eq)
		return 0;
	kl = (size_t)(eq - pair);
	if (!kl || kl > ISCSI_KEY_MAX || n - kl - 1 > value_max(pair, kl))
		return 0;
	for (size_t i = 0; i < kl; i++)
		if (!key_char_ok((unsigned char)pair[i]))
			return 0;
	return kl;
}

/* Walks the pairs of a segment: calls fn(arg, pair, n, klen) for each. Empty
 * entries (a NUL right after a NUL) are skipped: some initiators pad. */
static int walk(const char *data, uint32_t dlen,
		int (*fn)(void *arg, const char *pair, size_t n, size_t kl), void *arg)
{
	uint32_t pos = 0;

	if (dlen && data[dlen - 1] != 0)
		return -EINVAL;
	while (pos < dlen) {
		const char *pair = data + pos;
		size_t n = strlen(pair); /* bounded: data[dlen - 1] is a NUL */
		size_t kl;
		int r;

		pos += (uint32_t)n + 1;
		if (!n)
			continue;
		if (!(kl = pair_check(pair, n)))
			return -EINVAL;
		if ((r = fn(arg, pair, n, kl)))
			return r;
	}
	return 0;
}

struct parse_walk {
	int (*fn)(void *arg, const char *key, const char *val);
	void *arg;
};

static int parse_one(void *arg, const char *pair, size_t n, size_t kl)
{
	struct parse_walk *w = arg;
	char key[ISCSI_KEY_MAX + 1];

	(void)n;
	memcpy(key, pair, kl);
	key[kl] = 0;
	return w->fn(w->arg, key, pair + kl + 1);
}

int kura_iscsi_text_parse(const uint8_t *data, uint32_t dlen,
			  int (*fn)(void *arg, const char *key, const char *val), void *arg)
{
	struct parse_walk w = {fn, arg};

	return walk((const char *)data, dlen, parse_one, &w);
}

struct split_walk {
	struct iscsi_kvlist *kv;
	const char **dup;
};

static int split_one(void *arg, const char *pair, size_t n, size_t kl)
{
	struct split_walk *w = arg;
	struct iscsi_kvlist *kv = w->kv;
	char *p = (char *)pair; /* the caller's own buffer */

	(void)n;
	p[kl] = 0;
	for (unsigned i = 0; i < kv->n; i++)
		if (!strcmp(kv->v[i].key, p)) {
			*w->dup = kv->v[i].key;
			return -EEXIST;
		}
	if (kv->n == ISCSI_PAIRS_MAX)
		return -E2BIG;
	kv->v[kv->n].key = p;
	kv->v[kv->n].val = p + kl + 1;
	kv->n++;
	return 0;
}

int iscsi_text_split(char *buf, uint32_t len, struct iscsi_kvlist *kv, const char **dup)
{
	struct split_walk w = {kv, dup};

	kv->n = 0;
	*dup = NULL;
	if (!len)
		return 0;
	return walk(buf, len, split_one, &w);
}

const char *iscsi_kv_get(const struct iscsi_kvlist *kv, const char *key)
{
	for (unsigned i = 0; i < kv->n; i++)
		if (!strcmp(kv->v[i].key, key))
			return kv->v[i].val;
	return NULL;
}

/* ---- values ---- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool prefix(const char *s, char c)
{
	return s[0] == '0' && (s[1] == c || s[1] == (c - 'a' + 'A'));
}

int iscsi_parse_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	unsigned base = prefix(s, 'x') ? 16 : 10;
	const char *p = base == 16 ? s + 2 : s;
	uint64_t v = 0;

	if (!*p)
		return -EINVAL;
	for (; *p; p++) {
		int d = hexval((unsigned char)*p);

		if (d < 0 || (unsigned)d >= base || v > (UINT64_MAX - (unsigned)d) / base)
			return -EINVAL;
		v = v * base + (unsigned)d;
	}
	if (v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

int iscsi_parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "Yes"))
		*out = true;
	else if (!strcmp(s, "No"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int parse_hex(const char *p, uint8_t *out, size_t cap, size_t *len)
{
	size_t l = strlen(p), n = 0;

	if (!l || (l + 1) / 2 > cap)
		return -EINVAL;
	if (l % 2) { /* an odd count: the first digit is a whole byte's low nibble */
		int d = hexval((unsigned char)*p++);
		if (d < 0)
			return -EINVAL;
		out[n++] = (uint8_t)d;
	}
	for (; *p; p += 2) {
		int hi = hexval((unsigned char)p[0]), lo = hexval((unsigned char)p[1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[n++] = (uint8_t)(hi << 4 | lo);
	}
	*len = n;
	return 0;
}

/* RFC 4648 base64; the '=' padding may be left out. */
static int parse_b64(const char *p, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = 0, chars = 0, pad = 0;
	unsigned acc = 0, bits = 0;

	for (; *p; p++) {
		int v;

		if (*p == '=') {
			pad++;
			continue;
		}
		if (pad || (v = kura_b64_sextet((unsigned char)*p)) < 0)
			return -EINVAL; /* data after padding, or not base64 */
		chars++;
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= cap)
				return -EINVAL;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	if (!n || chars % 4 == 1 || pad > 2 || (pad && (chars + pad) % 4))
		return -EINVAL;
	*len = n;
	return 0;
}

int iscsi_parse_bin(const char *s, uint8_t *out, size_t cap, size_t *len)
{
	if (prefix(s, 'x'))
		return parse_hex(s + 2, out, cap, len);
	if (prefix(s, 'b'))
		return parse_b64(s + 2, out, cap, len);
	return -EINVAL;
}

bool iscsi_list_has(const char *list, const char *item)
{
	size_t n = strlen(item);

	for (const char *p = list;;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);

		if (l == n && !memcmp(p, item, n))
			return true;
		if (!c)
			return false;
		p = c + 1;
	}
}

/* ---- answers ---- */

void iscsi_put(struct iscsi_out *o, const char *key, const char *val)
{
	size_t kl = strlen(key), vl = strlen(val);

	if (o->overflow || o->cap - o->len < kl + vl + 2) {
		o->overflow = true;
		return;
	}
	memcpy(o->buf + o->len, key, kl);
	o->buf[o->len + kl] = '=';
	memcpy(o->buf + o->len + kl + 1, val, vl);
	o->buf[o->len + kl + 1 + vl] = 0;
	o->len += kl + vl + 2;
}

void iscsi_put_num(struct iscsi_out *o, const char *key, uint64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
	iscsi_put(o, key, s);
}

void iscsi_put_hex(struct iscsi_out *o, const char *key, const uint8_t *b, size_t n)
{
	static const char d[] = "0123456789abcdef";
	char s[2 + 2 * 64 + 1];

	if (n > 64) {
		o->overflow = true;
		return;
	}
	s[0] = '0';
	s[1] = 'x';
	for (size_t i = 0; i < n; i++) {
		s[2 + 2 * i] = d[b[i] >> 4];
		s[3 + 2 * i] = d[b[i] & 15];
	}
	s[2 + 2 * n] = 0;
	iscsi_put(o, key, s);
}

/* ---- operational keys ---- */

enum op {
	OP_HDIGEST,
	OP_DDIGEST,
	OP_MAXCONN,
	OP_IR2T,
	OP_IMMD,
	OP_MRDSL,
	OP_MBL,
	OP_FBL,
	OP_T2W,
	OP_T2R,
	OP_MAXR2T,
	OP_DPIO,
	OP_DSIO,
	OP_ERL,
	OP_LEVEL,
};

enum use {
	USE_IO,  /* any login, never in full feature phase */
	USE_LO,  /* the login of a new session only */
	USE_ALL, /* login and full feature phase */
};

static const struct op_def {
	const char *name;
	enum op op;
	enum use use;
	bool irrelevant_in_discovery; /* section 13: "Irrelevant when: SessionType=Discovery" */
} op_defs[] = {
	{"HeaderDigest", OP_HDIGEST, USE_IO, false},
	{"DataDigest", OP_DDIGEST, USE_IO, false},
	{"MaxConnections", OP_MAXCONN, USE_LO, true},
	{"InitialR2T", OP_IR2T, USE_LO, true},
	{"ImmediateData", OP_IMMD, USE_LO, true},
	{"MaxRecvDataSegmentLength", OP_MRDSL, USE_ALL, false},
	{"MaxBurstLength", OP_MBL, USE_LO, true},
	{"FirstBurstLength", OP_FBL, USE_LO, true},
	{"DefaultTime2Wait", OP_T2W, USE_LO, false},
	{"DefaultTime2Retain", OP_T2R, USE_LO, false},
	{"MaxOutstandingR2T", OP_MAXR2T, USE_LO, true},
	{"DataPDUInOrder", OP_DPIO, USE_LO, true},
	{"DataSequenceInOrder", OP_DSIO, USE_LO, true},
	{"ErrorRecoveryLevel", OP_ERL, USE_LO, false},
	{"iSCSIProtocolLevel", OP_LEVEL, USE_LO, false},
};

/* Numerical keys: min or max of the offer and ours, or Reject when the
 * offer is out of the key's range. Returns the result, or -1. */
static int64_t num_key(const char *v, uint64_t lo, uint64_t hi)
{
	uint64_t n;

	return iscsi_parse_num(v, lo, hi, &n) ? -1 : (int64_t)n;
}

static void put_bool(struct iscsi_out *o, const char *k, bool b)
{
	iscsi_put(o, k, b ? "Yes" : "No");
}

static void negotiate(struct iscsi_neg *n, const struct op_def *d, const char *v, struct iscsi_out *o)
{
	struct kura_iscsi_params *p = n->p;
	const char *k = d->name;
	int64_t x = 0;
	bool b;

	switch (d->op) {
	case OP_HDIGEST:
	case OP_DDIGEST: {
		/* A list: we take CRC32C whenever the initiator can do it (the
		 * RFC lets a target refuse None), else None. */
		bool crc = iscsi_list_has(v, "CRC32C");

		if (!crc && !iscsi_list_has(v, "None")) {
			iscsi_put(o, k, "Reject");
			return;
		}
		if (d->op == OP_HDIGEST)
			p->header_digest = crc;
		else
			p->data_digest = crc;
		iscsi_put(o, k, crc ? "CRC32C" : "None");
		return;
	}
	case OP_MAXCONN: /* min: one connection per session */
		if ((x = num_key(v, 1, 65535)) >= 0) {
			p->max_connections = 1;
			iscsi_put_num(o, k, 1);
		}
		break;
	case OP_IR2T: /* OR with our No: the offer decides */
	case OP_IMMD: /* AND with our Yes: the offer decides */
		if (iscsi_parse_bool(v, &b)) {
			x = -1;
			break;
		}
		if (d->op == OP_IR2T)
			p->initial_r2t = b;
		else
			p->immediate_data = b;
		put_bool(o, k, b);
		break;
	case OP_MRDSL: /* declarative: what we may send; nothing to answer */
		if ((x = num_key(v, 512, 16777215)) >= 0)
			p->max_xmit_dsl = (uint32_t)x;
		break;
	case OP_MBL:
		if ((x = num_key(v, 512, 16777215)) >= 0) {
			p->max_burst = (uint32_t)KURA_MIN((uint64_t)x, ISCSI_OUR_MAX_BURST);
			iscsi_put_num(o, k, p->max_burst);
		}
		break;
	case OP_FBL: /* answered once the request's MaxBurstLength, InitialR2T
		      * and ImmediateData are known */
		n->fbl_pending = true;
		n->fbl_bad = (x = num_key(v, 512, 16777215)) < 0;
		n->fbl = n->fbl_bad ? 0 : (uint64_t)x;
		return;
	case OP_T2W: /* max with our 2 */
		if ((x = num_key(v, 0, 3600)) >= 0) {
			p->default_time2wait = (uint32_t)KURA_MAX(x, 2);
			iscsi_put_num(o, k, p->default_time2wait);
		}
		break;
	case OP_T2R: /* min with our 0: at ErrorRecoveryLevel 0 nothing is kept */
		if ((x = num_key(v, 0, 3600)) >= 0) {
			p->default_time2retain = 0;
			iscsi_put_num(o, k, 0);
		}
		break;
	case OP_MAXR2T:
		if ((x = num_key(v, 1, 65535)) >= 0) {
			p->max_outstanding_r2t = (uint32_t)KURA_MIN((uint64_t)x, ISCSI_OUR_MAX_R2T);
			iscsi_put_num(o, k, p->max_outstanding_r2t);
		}
		break;
	case OP_DPIO: /* OR with our Yes: always Yes (we need data in order) */
	case OP_DSIO:
		if (iscsi_parse_bool(v, &b)) {
			x = -1;
			break;
		}
		if (d->op == OP_DPIO)
			p->data_pdu_in_order = true;
		else
			p->data_seq_in_order = true;
		put_bool(o, k, true);
		break;
	case OP_ERL: /* min with our 0 */
		if ((x = num_key(v, 0, 2)) >= 0) {
			p->erl = 0;
			iscsi_put_num(o, k, 0);
		}
		break;
	case OP_LEVEL: /* min with ours (RFC 7144) */
		if ((x = num_key(v, 0, 31)) >= 0)
			iscsi_put_num(o, k, KURA_MIN((uint64_t)x, ISCSI_OUR_PROTOCOL_LEVEL));
		break;
	}
	if (x < 0)
		iscsi_put(o, k, "Reject");
}

int iscsi_op_key(struct iscsi_neg *n, const char *k, const char *v, struct iscsi_out *o)
{
	const struct op_def *d = NULL;

	/* RFC 7144: Irrelevant in discovery sessions; we implement level 1,
	 * which does not know the key. */
	if (!strcmp(k, "TaskReporting")) {
		iscsi_put(o, k, n->in_login && n->discovery ? "Irrelevant" : "NotUnderstood");
		return 0;
	}
	for (size_t i = 0; i < KURA_ARRAY_SIZE(op_defs); i++)
		if (!strcmp(op_defs[i].name, k)) {
			d = &op_defs[i];
			break;
		}
	if (!d)
		return -ENOENT;
	if (!n->in_login && d->use != USE_ALL) {
		iscsi_put(o, k, "Reject"); /* only MaxRecvDataSegmentLength changes after login */
		return 0;
	}
	if ((n->in_login && d->use == USE_LO && !n->leading) ||
	    (d->irrelevant_in_discovery && n->discovery)) {
		iscsi_put(o, k, "Irrelevant");
		return 0;
	}
	negotiate(n, d, v, o);
	return 0;
}

void iscsi_op_finish(struct iscsi_neg *n, struct iscsi_out *o)
{
	struct kura_iscsi_params *p = n->p;

	if (!n->fbl_pending)
		return;
	n->fbl_pending = false;
	if (n->fbl_bad) {
		iscsi_put(o, "FirstBurstLength", "Reject");
	} else if (p->initial_r2t && !p->immediate_data) {
		iscsi_put(o, "FirstBurstLength", "Irrelevant"); /* no unsolicited data at all */
	} else {
		p->first_burst = (uint32_t)KURA_MIN(KURA_MIN(n->fbl, ISCSI_OUR_FIRST_BURST),
						    (uint64_t)p->max_burst);
		iscsi_put_num(o, "FirstBurstLength", p->first_burst);
	}
}

/* ---- full feature phase Text Request ---- */

struct kura_iscsi_text {
	const struct kura_iscsi_login_ops *ops;
	void *ctx;
	char iname[KURA_ISCSI_NAME_MAX + 1];
	char own[KURA_ISCSI_NAME_MAX + 1]; /* empty: a discovery session */
	/* The open exchange: one ITT, the TTT we gave it last. */
	bool open;
	uint32_t itt, ttt, next_ttt;
	char *req;        /* the request gathered across C-bit PDUs */
	uint32_t req_len;
	char *seen;       /* keys of the exchange so far (F=0 rounds), NUL-separated */
	size_t seen_len;
	char *ans;        /* the answer still to send, in max_xmit_dsl pieces */
	size_t ans_len, ans_off;
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
	snprintf(t->iname, sizeof(t->iname), "%s", iname ? iname : "");
	snprintf(t->own, sizeof(t->own), "%s", own_target ? own_target : "");
	*out = t;
	return 0;
}

static void exchange_end(struct kura_iscsi_text *t)
{
	free(t->req);
	free(t->seen);
	free(t->ans);
	t->req = t->seen = t->ans = NULL;
	t->req_len = 0;
	t->seen_len = t->ans_len = t->ans_off = 0;
	t->open = false;
}

void kura_iscsi_text_free(struct kura_iscsi_text *t)
{
	if (!t)
		return;
	exchange_end(t);
	free(t);
}

static uint32_t new_ttt(struct kura_iscsi_text *t)
{
	t->next_ttt = (t->next_ttt + 1) & 0x7fffffffu; /* never the reserved tag */
	t->ttt = t->next_ttt;
	return t->ttt;
}

/* The Text Request cannot be taken: a Reject PDU (11.17) carrying its
 * header goes back instead, and the connection stays. */
static int reject(const uint8_t *bhs, uint8_t reason, uint8_t *rsp, uint8_t **rd, uint32_t *rl)
{
	uint8_t *copy = malloc(KURA_ISCSI_BHS);

	if (!copy)
		return -ENOMEM;
	memcpy(copy, bhs, KURA_ISCSI_BHS);
	memset(rsp, 0, KURA_ISCSI_BHS);
	rsp[0] = ISCSI_OP_REJECT;
	rsp[1] = ISCSI_F_FINAL;
	rsp[2] = reason;
	iscsi_put32(rsp + 16, ISCSI_RSVD_TAG);
	*rd = copy;
	*rl = KURA_ISCSI_BHS;
	return 0;
}

static bool name_like(const char *v)
{
	return strlen(v) <= KURA_ISCSI_NAME_MAX &&
	       (!strncasecmp(v, "iqn.", 4) || !strncasecmp(v, "eui.", 4) ||
		!strncasecmp(v, "naa.", 4));
}

/* SendTargets (appendix C of RFC 7143): "All", a target name, or (normal
 * sessions) empty for the session's own target. All is answered in normal
 * sessions too, as in discovery: the initiator sees the same targets either
 * way, and initiators ask it. Returns 0 or -ENOMEM. */
static int send_targets(struct kura_iscsi_text *t, const char *v, struct iscsi_out *o)
{
	const char *which;
	int n;

	if (!strcmp(v, "All"))
		which = "All";
	else if (!v[0] && t->own[0])
		which = "";
	else if (name_like(v))
		which = v;
	else {
		iscsi_put(o, "SendTargets", "Reject");
		return 0;
	}
	if (!t->ops || !t->ops->send_targets) {
		iscsi_put(o, "SendTargets", "Reject");
		return 0;
	}
	for (;;) {
		n = t->ops->send_targets(t->ctx, t->iname, which, t->own, o->buf + o->len,
					 o->cap - o->len);
		if (n != -ENOSPC)
			break;
		if (o->cap >= SENDTARGETS_MAX) {
			iscsi_put(o, "SendTargets", "Reject");
			return 0;
		}
		{
			size_t cap = KURA_MIN((size_t)o->cap * 2, (size_t)SENDTARGETS_MAX);
			char *nb = realloc(o->buf, cap);

			if (!nb)
				return -ENOMEM;
			o->buf = nb;
			o->cap = cap;
		}
	}
	if (n < 0 || (size_t)n > o->cap - o->len) {
		iscsi_put(o, "SendTargets", "Reject");
		return 0;
	}
	o->len += (size_t)n; /* zero targets: an empty answer */
	return 0;
}

/* Keys that only the target sends, or that belong to login. */
static bool login_only_key(const char *k)
{
	static const char *const keys[] = {
		"InitiatorName", "TargetName", "SessionType", "TargetAlias",
		"TargetAddress", "TargetPortalGroupTag", "AuthMethod",
	};

	for (size_t i = 0; i < KURA_ARRAY_SIZE(keys); i++)
		if (!strcmp(keys[i], k))
			return true;
	return !strncmp(k, "CHAP_", 5);
}

static bool seen_has(const char *seen, size_t len, const char *k)
{
	for (size_t off = 0; off < len; off += strlen(seen + off) + 1)
		if (!strcmp(seen + off, k))
			return true;
	return false;
}

/* Answers the keys of one complete request. Returns 0, -EPROTO (a key
 * repeated within the exchange) or -ENOMEM. */
static int text_answer(struct kura_iscsi_text *t, struct kura_iscsi_params *params,
		       const struct iscsi_kvlist *kv, struct iscsi_out *o)
{
	struct iscsi_neg neg = {.p = params, .in_login = false, .discovery = !t->own[0]};
	size_t need = 0;
	char *ns;

	for (unsigned i = 0; i < kv->n; i++) {
		if (seen_has(t->seen, t->seen_len, kv->v[i].key))
			return -EPROTO;
		need += strlen(kv->v[i].key) + 1;
	}
	if (t->seen_len + need > KURA_ISCSI_TEXT_MAX)
		return -EPROTO;
	if (need) {
		if (!(ns = realloc(t->seen, t->seen_len + need)))
			return -ENOMEM;
		t->seen = ns;
		for (unsigned i = 0; i < kv->n; i++) {
			size_t l = strlen(kv->v[i].key) + 1;
			memcpy(t->seen + t->seen_len, kv->v[i].key, l);
			t->seen_len += l;
		}
	}
	for (unsigned i = 0; i < kv->n; i++) {
		const char *k = kv->v[i].key, *v = kv->v[i].val;
		int r;

		if (!strcmp(k, "SendTargets")) {
			if ((r = send_targets(t, v, o)))
				return r;
		} else if (!strcmp(k, "InitiatorAlias")) {
			continue; /* declarative, any phase: nothing to answer */
		} else if (login_only_key(k)) {
			iscsi_put(o, k, "Reject");
		} else if (iscsi_op_key(&neg, k, v, o) == -ENOENT) {
			iscsi_put(o, k, "NotUnderstood");
		}
	}
	iscsi_op_finish(&neg, o);
	return 0;
}

/* Sends the next piece of the pending answer. final: the request's F bit; a
 * response may end the exchange only when the request did. */
static int send_piece(struct kura_iscsi_text *t, const struct kura_iscsi_params *params,
		      bool final, uint8_t *rsp, uint8_t **rd, uint32_t *rl)
{
	size_t seg = KURA_MAX(params->max_xmit_dsl, 512u);
	size_t n = KURA_MIN(t->ans_len - t->ans_off, seg);

	if (n) {
		if (!(*rd = malloc(n)))
			return -ENOMEM;
		memcpy(*rd, t->ans + t->ans_off, n);
		*rl = (uint32_t)n;
		t->ans_off += n;
	}
	if (t->ans_off < t->ans_len) {
		rsp[1] = ISCSI_F_CONTINUE;
		iscsi_put32(rsp + 20, new_ttt(t));
		return 0;
	}
	free(t->ans);
	t->ans = NULL;
	t->ans_len = t->ans_off = 0;
	if (final) {
		rsp[1] = ISCSI_F_FINAL;
		iscsi_put32(rsp + 20, ISCSI_RSVD_TAG);
		exchange_end(t);
	} else {
		iscsi_put32(rsp + 20, new_ttt(t)); /* the initiator has more to say */
	}
	return 0;
}

int kura_iscsi_text_step(struct kura_iscsi_text *t, struct kura_iscsi_params *params,
			 const uint8_t *bhs, const uint8_t *data, uint32_t dlen, uint8_t *rsp,
			 uint8_t **rsp_data, uint32_t *rsp_dlen)
{
	uint32_t itt = iscsi_itt(bhs), ttt = iscsi_w20(bhs);
	bool final = bhs[1] & ISCSI_F_FINAL, cont = bhs[1] & ISCSI_F_CONTINUE;
	struct iscsi_kvlist *kv;
	struct iscsi_out o = {0};
	const char *dup;
	char *nb;
	int r;

	*rsp_data = NULL;
	*rsp_dlen = 0;
	if (!data)
		dlen = 0;
	if (iscsi_opcode(bhs) != ISCSI_OP_TEXT_REQ || itt == ISCSI_RSVD_TAG)
		return reject(bhs, ISCSI_REJECT_INVALID_FIELD, rsp, rsp_data, rsp_dlen);
	if (final && cont) {
		exchange_end(t);
		return reject(bhs, ISCSI_REJECT_PROTOCOL, rsp, rsp_data, rsp_dlen);
	}
	if (ttt == ISCSI_RSVD_TAG) {
		/* A new request: whatever was under way is dropped (11.10.4). */
		exchange_end(t);
		t->open = true;
		t->itt = itt;
	} else if (!t->open || ttt != t->ttt || itt != t->itt) {
		/* A continuation of nothing we started: the exchange under way,
		 * if any, goes on untouched. */
		return reject(bhs, ISCSI_REJECT_INVALID_FIELD, rsp, rsp_data, rsp_dlen);
	}
	memset(rsp, 0, KURA_ISCSI_BHS);
	rsp[0] = ISCSI_OP_TEXT_RSP;
	memcpy(rsp + 8, bhs + 8, 8); /* LUN */
	iscsi_put32(rsp + 16, itt);
	iscsi_put32(rsp + 20, ISCSI_RSVD_TAG);
	if (t->ans) {
		/* The initiator fetches the rest of a long answer with empty requests. */
		if (dlen || cont) {
			exchange_end(t);
			return reject(bhs, ISCSI_REJECT_PROTOCOL, rsp, rsp_data, rsp_dlen);
		}
		return send_piece(t, params, final, rsp, rsp_data, rsp_dlen);
	}
	if (dlen > KURA_ISCSI_TEXT_MAX - t->req_len) {
		exchange_end(t);
		return reject(bhs, ISCSI_REJECT_PROTOCOL, rsp, rsp_data, rsp_dlen);
	}
	if (dlen) {
		if (!(nb = realloc(t->req, t->req_len + dlen)))
			return -ENOMEM;
		memcpy(nb + t->req_len, data, dlen);
		t->req = nb;
		t->req_len += dlen;
	}
	if (cont) {
		/* More of the request follows: an empty answer asks for it. */
		iscsi_put32(rsp + 20, new_ttt(t));
		return 0;
	}
	if (!(kv = malloc(sizeof(*kv))))
		return -ENOMEM;
	r = iscsi_text_split(t->req, t->req_len, kv, &dup);
	if (!r) {
		o.cap = KURA_ISCSI_TEXT_MAX;
		if (!(o.buf = malloc(o.cap)))
			r = -ENOMEM;
		else
			r = text_answer(t, params, kv, &o);
	}
	free(kv);
	free(t->req);
	t->req = NULL;
	t->req_len = 0;
	if (!r && o.overflow)
		r = -EPROTO; /* more NotUnderstood answers than a request can hold */
	if (r) {
		free(o.buf);
		exchange_end(t);
		if (r == -ENOMEM)
			return r;
		return reject(bhs, ISCSI_REJECT_PROTOCOL, rsp, rsp_data, rsp_dlen);
	}
	t->ans = o.buf;
	t->ans_len = o.len;
	t->ans_off = 0;
	return send_piece(t, params, final, rsp, rsp_data, rsp_dlen);
}
