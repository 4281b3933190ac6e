/* iSCSI login: MD5/SHA-256 vectors, text keys, login conversations as
 * libiscsi holds them (no auth, CHAP MD5 and SHA-256, mutual), refusals,
 * C-bit continuation both ways, and the full feature Text Request
 * (header checks are in test_pdu.c). */
#include "tests/unit/harness.h"

#include "iscsi-target/hash.h"
#include "iscsi-target/login.h"
#include "iscsi-target/login_int.h"
#include "iscsi-target/pdu.h"

#include <errno.h>
#include <stdint.h>

#define TGT "iqn.2026-11.io.kura:vm1"
#define INI "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
#define WHO "InitiatorName=" INI "\nTargetName=" TGT
#define SECRET "secret123456789"
#define MSECRET "targetsecret42"
/* The operational keys libiscsi 1.19 sends, in its order, and what kura
 * answers to them. */
#define OPNEG                                                                              \
	"HeaderDigest=None,CRC32C\nDataDigest=None\nInitialR2T=No\nImmediateData=Yes\n"    \
	"MaxBurstLength=262144\nFirstBurstLength=262144\nDefaultTime2Wait=2\n"             \
	"DefaultTime2Retain=0\nMaxOutstandingR2T=1\nErrorRecoveryLevel=0\nIFMarker=No\n"   \
	"OFMarker=No\nMaxConnections=1\nMaxRecvDataSegmentLength=262144\n"                 \
	"DataPDUInOrder=Yes\nDataSequenceInOrder=Yes"
#define OPNEG_ANSWER                                                                       \
	"HeaderDigest=CRC32C\nDataDigest=None\nInitialR2T=No\nImmediateData=Yes\n"         \
	"MaxBurstLength=262144\nFirstBurstLength=262144\nDefaultTime2Wait=2\n"             \
	"DefaultTime2Retain=0\nMaxOutstandingR2T=1\nErrorRecoveryLevel=0\n"                \
	"IFMarker=NotUnderstood\nOFMarker=NotUnderstood\nMaxConnections=1\n"               \
	"DataPDUInOrder=Yes\nDataSequenceInOrder=Yes\nMaxRecvDataSegmentLength=262144"

/* ---- a fake portal ---- */

struct fake {
	int target_err;
	struct kura_iscsi_target_auth auth;
	unsigned refusals;
	char why[256];
	unsigned rnd;
	unsigned ntargets; /* targets SendTargets=All lists */
};

static int f_target(void *ctx, const char *tname, const char *iname,
		    struct kura_iscsi_target_auth *auth)
{
	struct fake *f = ctx;

	(void)iname;
	if (strcmp(tname, TGT))
		return -ENOENT;
	if (f->target_err)
		return f->target_err;
	*auth = f->auth;
	return 0;
}

static int f_send_targets(void *ctx, const char *iname, const char *which, const char *own,
			  char *buf, size_t cap)
{
	struct fake *f = ctx;
	size_t len = 0;

	(void)iname;
	for (unsigned i = 0; i < f->ntargets; i++) {
		char name[64];
		int n;

		snprintf(name, sizeof(name), "iqn.2026-11.io.kura:disk%04u", i);
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

static void f_log(void *ctx, const char *iname, const char *tname, const char *why)
{
	struct fake *f = ctx;

	(void)iname;
	(void)tname;
	f->refusals++;
	snprintf(f->why, sizeof(f->why), "%s", why);
}

static void f_random(void *ctx, void *buf, size_t len)
{
	struct fake *f = ctx;

	for (size_t i = 0; i < len; i++)
		((uint8_t *)buf)[i] = (uint8_t)(0x5a + 7 * f->rnd++);
}

static const struct kura_iscsi_login_ops ops = {
	.target = f_target,
	.send_targets = f_send_targets,
	.log_refusal = f_log,
	.random = f_random,
};

static void set_chap(struct fake *f, const char *muser, const char *msecret)
{
	snprintf(f->auth.user, sizeof(f->auth.user), "alice");
	snprintf(f->auth.secret, sizeof(f->auth.secret), SECRET);
	snprintf(f->auth.muser, sizeof(f->auth.muser), "%s", muser ? muser : "");
	snprintf(f->auth.msecret, sizeof(f->auth.msecret), "%s", msecret ? msecret : "");
}

/* ---- PDUs and conversations ---- */

struct req {
	uint8_t bhs[KURA_ISCSI_BHS];
	char data[70000];
	uint32_t dlen;
};

struct rsp {
	uint8_t bhs[KURA_ISCSI_BHS];
	uint8_t *data;
	uint32_t dlen;
	int ret;
};

/* The data segment from pairs written one a line. */
static void req_lines(struct req *q, const char *lines)
{
	q->dlen = 0;
	for (const char *p = lines; *p;) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		CHECK(q->dlen + n + 1 <= sizeof(q->data));
		memcpy(q->data + q->dlen, p, n);
		q->data[q->dlen + n] = 0;
		q->dlen += (uint32_t)n + 1;
		p += n + (e ? 1 : 0);
	}
}

static void rsp_free(struct rsp *r)
{
	free(r->data);
	r->data = NULL;
	r->dlen = 0;
}

static unsigned status(const struct rsp *r) { return (unsigned)r->bhs[36] << 8 | r->bhs[37]; }
static bool rsp_t(const struct rsp *r) { return r->bhs[1] & ISCSI_F_TRANSIT; }
static bool rsp_c(const struct rsp *r) { return r->bhs[1] & ISCSI_F_CONTINUE; }
static int rsp_csg(const struct rsp *r) { return (r->bhs[1] >> 2) & 3; }
static int rsp_nsg(const struct rsp *r) { return r->bhs[1] & 3; }

/* The value of key in a data segment, or NULL. */
static const char *get(const uint8_t *data, uint32_t dlen, const char *key)
{
	size_t kl = strlen(key);

	CHECK(dlen == 0 || data[dlen - 1] == 0);
	for (uint32_t pos = 0; pos < dlen; pos += (uint32_t)strlen((const char *)data + pos) + 1) {
		const char *p = (const char *)data + pos;

		if (!strncmp(p, key, kl) && p[kl] == '=')
			return p + kl + 1;
	}
	return NULL;
}

static const char *rsp_get(const struct rsp *r, const char *key)
{
	return get(r->data, r->dlen, key);
}

/* Every "key=value" line of want is in the data segment. */
static void has_all(const uint8_t *data, uint32_t dlen, const char *want)
{
	for (const char *p = want; *p;) {
		const char *e = strchr(p, '\n'), *eq = strchr(p, '=');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		char key[80], val[300];
		const char *got;

		CHECK(eq && eq < p + n && (size_t)(eq - p) < sizeof(key) && n < sizeof(val));
		memcpy(key, p, (size_t)(eq - p));
		key[eq - p] = 0;
		memcpy(val, eq + 1, n - (size_t)(eq - p) - 1);
		val[n - (size_t)(eq - p) - 1] = 0;
		got = get(data, dlen, key);
		if (!got || strcmp(got, val)) {
			fprintf(stderr, "  %s=%s, expected %s\n", key, got ? got : "(absent)", val);
			exit(1);
		}
		p += n + (e ? 1 : 0);
	}
}

static void has(const struct rsp *r, const char *want)
{
	has_all(r->data, r->dlen, want);
}

/* One login: the fake portal, the login, the request being built and the
 * last answer. */
struct conv {
	struct fake f;
	struct kura_iscsi_login *l;
	struct req q;
	struct rsp r;
};

static struct conv *conv_new(void)
{
	struct conv *c = calloc(1, sizeof(*c));

	CHECK(c);
	return c;
}

static void conv_free(struct conv *c)
{
	rsp_free(&c->r);
	kura_iscsi_login_free(c->l);
	free(c);
}

/* A Login Request header as libiscsi builds it: immediate, ISID of type
 * random, ITT, CID and CmdSN fixed for the whole login. */
static void login_hdr(struct req *q, int csg, int nsg, bool t, bool cont)
{
	static const uint8_t isid[6] = {0x80, 0x12, 0x34, 0x56, 0x00, 0x01};

	memset(q->bhs, 0, sizeof(q->bhs));
	q->bhs[0] = ISCSI_F_IMMEDIATE | ISCSI_OP_LOGIN_REQ;
	q->bhs[1] = (uint8_t)((t ? ISCSI_F_TRANSIT : 0) | (cont ? ISCSI_F_CONTINUE : 0) | csg << 2 |
			      nsg);
	memcpy(q->bhs + 8, isid, 6);
	iscsi_put32(q->bhs + 16, 0x1000);
	iscsi_put32(q->bhs + 24, 0x2000); /* CmdSN */
	iscsi_put32(q->bhs + 28, 0x3000); /* ExpStatSN */
}

/* Sends c->q as it stands (header and data). */
static struct rsp *send_req(struct conv *c)
{
	struct rsp *r = &c->r;

	if (!c->l)
		CHECK_EQ(kura_iscsi_login_create(&ops, &c->f, &c->l), 0);
	rsp_free(r);
	iscsi_set_dlen(c->q.bhs, c->q.dlen);
	r->ret = kura_iscsi_login_step(c->l, c->q.bhs, (const uint8_t *)c->q.data, c->q.dlen,
				       r->bhs, &r->data, &r->dlen);
	CHECK_EQ(r->bhs[0], ISCSI_OP_LOGIN_RSP);
	CHECK(r->dlen == 0 || r->data);
	CHECK(r->dlen <= 8192);
	return r;
}

static struct rsp *say(struct conv *c, int csg, int nsg, bool t, const char *lines)
{
	login_hdr(&c->q, csg, nsg, t, false);
	req_lines(&c->q, lines);
	return send_req(c);
}

static void check_libiscsi_params(const struct kura_iscsi_login_result *res)
{
	const struct kura_iscsi_params *p = &res->params;

	CHECK(p->header_digest && !p->data_digest);
	CHECK(!p->initial_r2t && p->immediate_data);
	CHECK_EQ(p->max_burst, 262144);
	CHECK_EQ(p->first_burst, 262144);
	CHECK_EQ(p->max_recv_dsl, 262144);
	CHECK_EQ(p->max_xmit_dsl, 262144);
	CHECK_EQ(p->max_outstanding_r2t, 1);
	CHECK_EQ(p->max_connections, 1);
	CHECK_EQ(p->default_time2wait, 2);
	CHECK_EQ(p->default_time2retain, 0);
	CHECK_EQ(p->erl, 0);
	CHECK(p->data_pdu_in_order && p->data_seq_in_order);
}

/* The operational stage as libiscsi ends every normal login. */
static void opneg_finish(struct conv *c)
{
	struct rsp *r = say(c, 1, 3, true, OPNEG);

	CHECK_EQ(r->ret, 1);
	CHECK_EQ(status(r), 0);
	CHECK(rsp_t(r) && rsp_csg(r) == 1 && rsp_nsg(r) == 3);
	has(r, OPNEG_ANSWER);
	check_libiscsi_params(kura_iscsi_login_result(c->l));
}

static void hex_upper(const uint8_t *b, size_t n, char *out) /* as libiscsi writes */
{
	static const char d[] = "0123456789ABCDEF";

	*out++ = '0';
	*out++ = 'x';
	for (size_t i = 0; i < n; i++) {
		*out++ = d[b[i] >> 4];
		*out++ = d[b[i] & 15];
	}
	*out = 0;
}

static void b64(const uint8_t *b, size_t n, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) |
			     (i + 2 < n ? b[i + 2] : 0);
		*out++ = t[v >> 18];
		*out++ = t[(v >> 12) & 63];
		*out++ = i + 1 < n ? t[(v >> 6) & 63] : '=';
		*out++ = i + 2 < n ? t[v & 63] : '=';
	}
	*out = 0;
}

/* The initiator's side of CHAP: H(id || secret || challenge) from the
 * target's CHAP_A, CHAP_I and CHAP_C, with the hash functions tested below. */
static size_t chap_digest(const struct rsp *r, const char *secret, uint8_t *out)
{
	const char *a = rsp_get(r, "CHAP_A"), *i = rsp_get(r, "CHAP_I"), *c = rsp_get(r, "CHAP_C");
	uint8_t chal[1024], id;
	size_t cl = 0;

	CHECK(a && i && c && !strncmp(c, "0x", 2));
	for (const char *p = c + 2; p[0] && p[1]; p += 2) {
		unsigned v;
		CHECK(sscanf(p, "%2x", &v) == 1);
		chal[cl++] = (uint8_t)v;
	}
	CHECK(cl >= 16);
	id = (uint8_t)strtoul(i, NULL, 10);
	{
		struct kura_hash_piece v[3] = {{&id, 1}, {secret, strlen(secret)}, {chal, cl}};

		if (!strcmp(a, "5")) {
			kura_md5(v, 3, out);
			return 16;
		}
		CHECK(!strcmp(a, "7"));
		kura_sha256(v, 3, out);
		return 32;
	}
}

/* libiscsi's security stage with a user set, up to our challenge: the
 * identity keys with AuthMethod, then CHAP_A. */
static void chap_to_challenge(struct conv *c, const char *alg)
{
	char kv[64];
	struct rsp *r = say(c, 0, 1, true, WHO "\nSessionType=Normal\nAuthMethod=CHAP,None");

	CHECK_EQ(r->ret, 0);
	CHECK_EQ(status(r), 0);
	CHECK(!rsp_t(r) && rsp_csg(r) == 0); /* the exchange comes first */
	has(r, "AuthMethod=CHAP\nTargetPortalGroupTag=1");
	snprintf(kv, sizeof(kv), "CHAP_A=%s", alg);
	r = say(c, 0, 1, false, kv);
	CHECK_EQ(r->ret, 0);
	CHECK_EQ(status(r), 0);
	CHECK(!rsp_t(r));
	CHECK(rsp_get(r, "CHAP_I") && rsp_get(r, "CHAP_C"));
}

/* "CHAP_N=user\nCHAP_R=..." answering the challenge in c->r. */
static void chap_reply(struct conv *c, const char *user, const char *secret, bool base64,
		       char *out, size_t cap)
{
	uint8_t d[32];
	size_t n = chap_digest(&c->r, secret, d);
	char enc[80];

	if (base64) {
		enc[0] = '0';
		enc[1] = 'b';
		b64(d, n, enc + 2);
	} else {
		hex_upper(d, n, enc);
	}
	snprintf(out, cap, "CHAP_N=%s\nCHAP_R=%s", user, enc);
}

/* A login the target refuses at its first request: the status, the return,
 * no T bit, no data, one log line (containing why). */
struct refusal {
	int csg, nsg;
	bool t, c, chap;
	int target_err;
	const char *keys; /* pairs, one a line */
	unsigned status;
	int ret;
	const char *why;
};

static void refuse(const struct refusal *x)
{
	struct conv *c = conv_new();
	struct rsp *r;

	c->f.target_err = x->target_err;
	if (x->chap)
		set_chap(&c->f, NULL, NULL);
	login_hdr(&c->q, x->csg, x->nsg, x->t, x->c);
	req_lines(&c->q, x->keys);
	r = send_req(c);
	if (status(r) != x->status)
		fprintf(stderr, "  [%s]: status %04x (%s), expected %04x\n", x->keys, status(r),
			c->f.why, x->status);
	CHECK_EQ(status(r), x->status);
	CHECK_EQ(r->ret, x->ret);
	CHECK(!rsp_t(r));
	CHECK_EQ(r->dlen, 0);
	CHECK_EQ(c->f.refusals, 1);
	CHECK(!x->why || strstr(c->f.why, x->why));
	conv_free(c);
}

#define REFUSE(...) refuse(&(struct refusal){__VA_ARGS__})

/* ---- hashes ---- */

static void check_digest(const uint8_t *d, size_t n, const char *hex)
{
	char s[65];

	for (size_t i = 0; i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", d[i]);
	if (strcmp(s, hex)) {
		fprintf(stderr, "  digest %s, expected %s\n", s, hex);
		exit(1);
	}
}

static void md5_str(const char *s, const char *hex)
{
	struct kura_hash_piece v = {s, strlen(s)};
	uint8_t d[16];

	kura_md5(&v, 1, d);
	check_digest(d, 16, hex);
}

static void sha_str(const char *s, const char *hex)
{
	struct kura_hash_piece v = {s, strlen(s)};
	uint8_t d[32];

	kura_sha256(&v, 1, d);
	check_digest(d, 32, hex);
}

TEST(test_chap_md5_rfc1321_vectors)
{
	md5_str("", "d41d8cd98f00b204e9800998ecf8427e");
	md5_str("a", "0cc175b9c0f1b6a831c399e269772661");
	md5_str("abc", "900150983cd24fb0d6963f7d28e17f72");
	md5_str("message digest", "f96b697d7cb7938d525a2f31aaf161d0");
	md5_str("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b");
	md5_str("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
		"d174ab98d277d9f5a5611c2c9f419d9f");
	md5_str("1234567890123456789012345678901234567890123456789012345678901234567890"
		"1234567890",
		"57edf4a22be3c955ac49da2e2107b67a");
}

TEST(test_chap_sha256_fips180_vectors)
{
	static char million[1000001];

	sha_str("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha_str("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha_str("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	sha_str("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
		"jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
		"cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
	memset(million, 'a', 1000000);
	sha_str(million, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	md5_str(million, "7707d6ae4e027c70eea2a935c2296f21");
}

/* Pieces split anywhere, around the 55/56/64-byte padding edges, give the
 * digest of the whole. */
TEST(test_chap_hash_pieces_match_whole)
{
	uint8_t buf[200], a[32], b[32];

	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	for (size_t len = 0; len <= 130; len++) {
		for (size_t cut = 0; cut <= len; cut += 13) {
			struct kura_hash_piece whole = {buf, len};
			struct kura_hash_piece two[2] = {{buf, cut}, {buf + cut, len - cut}};

			kura_md5(&whole, 1, a);
			kura_md5(two, 2, b);
			CHECK(!memcmp(a, b, 16));
			kura_sha256(&whole, 1, a);
			kura_sha256(two, 2, b);
			CHECK(!memcmp(a, b, 32));
		}
	}
}

TEST(test_chap_response_is_hash_of_id_secret_challenge)
{
	static const uint8_t chal[4] = {0xde, 0xad, 0xbe, 0xef};
	uint8_t buf[1 + 6 + 4], want[32], got[32];
	struct kura_hash_piece v = {buf, sizeof(buf)};

	buf[0] = 0x2a;
	memcpy(buf + 1, "secret", 6);
	memcpy(buf + 7, chal, 4);
	kura_md5(&v, 1, want);
	CHECK_EQ(kura_iscsi_chap_response(5, 0x2a, (const uint8_t *)"secret", 6, chal, 4, got), 16);
	CHECK(!memcmp(want, got, 16));
	kura_sha256(&v, 1, want);
	CHECK_EQ(kura_iscsi_chap_response(7, 0x2a, (const uint8_t *)"secret", 6, chal, 4, got), 32);
	CHECK(!memcmp(want, got, 32));
	CHECK_EQ(kura_iscsi_chap_response(6, 1, (const uint8_t *)"s", 1, chal, 4, got), -EINVAL);
}

/* ---- text keys ---- */

struct collect {
	unsigned n;
	char keys[8][64];
	char vals[8][300];
};

static int collect(void *arg, const char *key, const char *val)
{
	struct collect *c = arg;

	if (c->n == 8)
		return -E2BIG;
	snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", key);
	snprintf(c->vals[c->n], sizeof(c->vals[0]), "%s", val);
	c->n++;
	return 0;
}

static int parse(const char *seg, size_t len, struct collect *c)
{
	memset(c, 0, sizeof(*c));
	return kura_iscsi_text_parse((const uint8_t *)seg, (uint32_t)len, collect, c);
}

TEST(test_text_parse_good_segments)
{
	static const char seg[] = "InitiatorName=iqn.x\0MaxBurstLength=0x40000\0Empty=\0X-org.a.b=c=d";
	struct collect c;

	CHECK_EQ(parse(seg, sizeof(seg), &c), 0);
	CHECK_EQ(c.n, 4);
	CHECK(!strcmp(c.keys[0], "InitiatorName") && !strcmp(c.vals[0], "iqn.x"));
	CHECK(!strcmp(c.keys[1], "MaxBurstLength") && !strcmp(c.vals[1], "0x40000"));
	CHECK(!strcmp(c.keys[2], "Empty") && !strcmp(c.vals[2], ""));
	CHECK(!strcmp(c.keys[3], "X-org.a.b") && !strcmp(c.vals[3], "c=d")); /* first '=' splits */
	CHECK_EQ(parse("", 0, &c), 0);
	CHECK_EQ(c.n, 0);
	CHECK_EQ(parse("A=1\0\0\0B=2\0", 10, &c), 0); /* padding NULs between pairs */
	CHECK_EQ(c.n, 2);
}

TEST(test_text_parse_bad_segments)
{
	char big[9000];
	struct collect c;

	CHECK_EQ(parse("A=1", 3, &c), -EINVAL);            /* not NUL-terminated */
	CHECK_EQ(parse("A=1\0NoEquals\0", 13, &c), -EINVAL); /* a pair without '=' */
	CHECK_EQ(parse("=value\0", 7, &c), -EINVAL);        /* empty key */
	CHECK_EQ(parse("Bad Key=1\0", 10, &c), -EINVAL);    /* a blank in a key */
	CHECK_EQ(parse("Bad\001=1\0", 7, &c), -EINVAL);     /* a control character */
	/* key: 63 bytes fine, 64 not */
	memset(big, 'K', 63);
	memcpy(big + 63, "=v", 3);
	CHECK_EQ(parse(big, 66, &c), 0);
	memset(big, 'K', 64);
	memcpy(big + 64, "=v", 3);
	CHECK_EQ(parse(big, 67, &c), -EINVAL);
	/* value: 255 for ordinary keys */
	memcpy(big, "InitiatorAlias=", 15);
	memset(big + 15, 'v', 255);
	big[270] = 0;
	CHECK_EQ(parse(big, 271, &c), 0);
	memset(big + 15, 'v', 256);
	big[271] = 0;
	CHECK_EQ(parse(big, 272, &c), -EINVAL);
	/* ... and 8192 for CHAP_C and CHAP_R */
	memcpy(big, "CHAP_C=", 7);
	memset(big + 7, 'f', 8192);
	big[7 + 8192] = 0;
	CHECK_EQ(parse(big, 7 + 8192 + 1, &c), 0);
	memset(big + 7, 'f', 8193);
	big[7 + 8193] = 0;
	CHECK_EQ(parse(big, 7 + 8193 + 1, &c), -EINVAL);
	/* the callback's error stops the walk */
	CHECK_EQ(parse("A=1\0B=2\0C=3\0D=4\0E=5\0F=6\0G=7\0H=8\0I=9\0", 36, &c), -E2BIG);
}

TEST(test_text_values_numbers_booleans_binary)
{
	uint64_t n;
	bool b;
	uint8_t bin[64];
	size_t bl;

	CHECK(!iscsi_parse_num("8192", 512, 16777215, &n) && n == 8192);
	CHECK(!iscsi_parse_num("0x2000", 512, 16777215, &n) && n == 8192);
	CHECK(!iscsi_parse_num("0X2000", 512, 16777215, &n) && n == 8192);
	CHECK(iscsi_parse_num("511", 512, 16777215, &n));        /* below range */
	CHECK(iscsi_parse_num("16777216", 512, 16777215, &n));   /* above range */
	CHECK(iscsi_parse_num("", 0, 10, &n));
	CHECK(iscsi_parse_num("0x", 0, 10, &n));
	CHECK(iscsi_parse_num("-1", 0, 10, &n));
	CHECK(iscsi_parse_num(" 1", 0, 10, &n));
	CHECK(iscsi_parse_num("1a", 0, 100, &n));
	CHECK(iscsi_parse_num("99999999999999999999999", 0, UINT64_MAX, &n)); /* overflow */
	CHECK(!iscsi_parse_num("0xffffffffffffffff", 0, UINT64_MAX, &n) && n == UINT64_MAX);
	CHECK(iscsi_parse_num("0x10000000000000000", 0, UINT64_MAX, &n));
	CHECK(!iscsi_parse_bool("Yes", &b) && b);
	CHECK(!iscsi_parse_bool("No", &b) && !b);
	CHECK(iscsi_parse_bool("yes", &b));
	CHECK(iscsi_parse_bool("", &b));
	CHECK(!iscsi_parse_bin("0xdeadBEEF", bin, sizeof(bin), &bl) && bl == 4 && bin[0] == 0xde &&
	      bin[3] == 0xef);
	CHECK(!iscsi_parse_bin("0xabc", bin, sizeof(bin), &bl) && bl == 2 && bin[0] == 0x0a &&
	      bin[1] == 0xbc);
	CHECK(iscsi_parse_bin("0x", bin, sizeof(bin), &bl));
	CHECK(iscsi_parse_bin("0xzz", bin, sizeof(bin), &bl));
	CHECK(iscsi_parse_bin("deadbeef", bin, sizeof(bin), &bl)); /* no prefix */
	CHECK(iscsi_parse_bin("0x0102030405", bin, 4, &bl));       /* over cap */
	CHECK(!iscsi_parse_bin("0bAQID", bin, sizeof(bin), &bl) && bl == 3 && bin[2] == 3);
	CHECK(!iscsi_parse_bin("0bAQI=", bin, sizeof(bin), &bl) && bl == 2 && bin[1] == 2);
	CHECK(!iscsi_parse_bin("0bAQ==", bin, sizeof(bin), &bl) && bl == 1 && bin[0] == 1);
	CHECK(!iscsi_parse_bin("0bAQ", bin, sizeof(bin), &bl) && bl == 1); /* padding left out */
	CHECK(iscsi_parse_bin("0bA", bin, sizeof(bin), &bl));      /* 6 bits: no byte */
	CHECK(iscsi_parse_bin("0bAQ=", bin, sizeof(bin), &bl));    /* short padding */
	CHECK(iscsi_parse_bin("0bAQ==AQ", bin, sizeof(bin), &bl)); /* data after padding */
	CHECK(iscsi_parse_bin("0bA*==", bin, sizeof(bin), &bl));
	CHECK(iscsi_parse_bin("0b", bin, sizeof(bin), &bl));
	CHECK(iscsi_list_has("None,CRC32C", "CRC32C"));
	CHECK(iscsi_list_has("None,CRC32C", "None"));
	CHECK(!iscsi_list_has("None,CRC32C", "CRC32"));
	CHECK(!iscsi_list_has("", "None"));
}

/* ---- login conversations ---- */

TEST(test_login_libiscsi_no_auth)
{
	struct conv *c = conv_new();
	const struct kura_iscsi_login_result *res;
	struct rsp *r;

	/* libiscsi without a user starts in the operational stage */
	r = say(c, 1, 3, true, WHO "\nInitiatorAlias=host\nSessionType=Normal\n" OPNEG);
	CHECK_EQ(r->ret, 1);
	CHECK_EQ(status(r), 0);
	CHECK(rsp_t(r) && !rsp_c(r) && rsp_csg(r) == 1 && rsp_nsg(r) == 3);
	CHECK_EQ(r->bhs[2], 0); /* Version-max */
	CHECK_EQ(r->bhs[3], 0); /* Version-active */
	CHECK_EQ(iscsi_itt(r->bhs), 0x1000);
	CHECK(!memcmp(r->bhs + 8, c->q.bhs + 8, 6));
	has(r, "TargetPortalGroupTag=1\n" OPNEG_ANSWER);
	res = kura_iscsi_login_result(c->l);
	CHECK_EQ(res->type, KURA_ISCSI_NORMAL);
	CHECK(!strcmp(res->iname, INI) && !strcmp(res->tname, TGT) && !strcmp(res->ialias, "host"));
	CHECK_EQ(res->tsih, 0);
	CHECK_EQ(res->cmdsn, 0x2000);
	CHECK_EQ(res->expstatsn, 0x3000);
	CHECK(!memcmp(res->isid, c->q.bhs + 8, 6));
	check_libiscsi_params(res);
	CHECK_EQ(c->f.refusals, 0);
	CHECK(say(c, 1, 3, true, "")->ret < 0); /* nothing after the end */
	conv_free(c);
}

static void chap_login(const char *alg, size_t want_len, bool base64)
{
	struct conv *c = conv_new();
	char reply[200];
	struct rsp *r;

	set_chap(&c->f, NULL, NULL);
	chap_to_challenge(c, alg);
	CHECK_EQ(strlen(rsp_get(&c->r, "CHAP_C")), 2 + 2 * ISCSI_CHAP_CHAL_LEN);
	chap_reply(c, "alice", SECRET, base64, reply, sizeof(reply));
	CHECK_EQ(strlen(strstr(reply, "CHAP_R=") + 9), base64 ? (want_len + 2) / 3 * 4 : 2 * want_len);
	r = say(c, 0, 1, true, reply);
	CHECK_EQ(r->ret, 0);
	CHECK_EQ(status(r), 0);
	CHECK(rsp_t(r) && rsp_csg(r) == 0 && rsp_nsg(r) == 1);
	CHECK(!rsp_get(r, "CHAP_N")); /* one-way */
	opneg_finish(c);
	CHECK_EQ(c->f.refusals, 0);
	conv_free(c);
}

TEST(test_login_libiscsi_chap_md5)
{
	chap_login("5", 16, false);
}

TEST(test_login_libiscsi_chap_sha256)
{
	chap_login("7", 32, false);
}

TEST(test_chap_sha256_picked_when_offered_with_md5)
{
	chap_login("5,7", 32, false);
	chap_login("7,5", 32, false);
	chap_login("6,5,8", 16, false); /* SHA-1 and SHA3-256 are not ours: MD5 */
}

TEST(test_chap_base64_response)
{
	chap_login("5", 16, true);
	chap_login("7", 32, true);
}

TEST(test_login_libiscsi_mutual_chap)
{
	struct conv *c = conv_new();
	uint8_t ichal[32], want[32], id = 1;
	struct kura_hash_piece v[3] = {{&id, 1}, {MSECRET, strlen(MSECRET)}, {ichal, 32}};
	char reply[400], chex[80], whex[80];
	struct rsp *r;

	set_chap(&c->f, "tgt", MSECRET);
	chap_to_challenge(c, "5");
	chap_reply(c, "alice", SECRET, false, reply, sizeof(reply));
	for (unsigned i = 0; i < sizeof(ichal); i++)
		ichal[i] = (uint8_t)(i * 3 + 1);
	hex_upper(ichal, sizeof(ichal), chex);
	snprintf(reply + strlen(reply), sizeof(reply) - strlen(reply), "\nCHAP_I=1\nCHAP_C=%s", chex);
	r = say(c, 0, 1, true, reply);
	CHECK_EQ(r->ret, 0);
	CHECK_EQ(status(r), 0);
	CHECK(rsp_t(r)); /* libiscsi looks for CHAP_N and CHAP_R with T set */
	kura_md5(v, 3, want);
	memcpy(whex, "0x", 2);
	for (int i = 0; i < 16; i++)
		snprintf(whex + 2 + 2 * i, 3, "%02x", want[i]);
	CHECK(!strcmp(rsp_get(r, "CHAP_N"), "tgt"));
	CHECK(!strcmp(rsp_get(r, "CHAP_R"), whex));
	opneg_finish(c);
	conv_free(c);
}

/* libiscsi's oversize test puts a valid base64 prefix in front. */
TEST(test_chap_base64_oversize_response_refused)
{
	struct conv *c = conv_new();
	char reply[200], big[240];
	struct rsp *r;

	set_chap(&c->f, NULL, NULL);
	chap_to_challenge(c, "5");
	chap_reply(c, "alice", SECRET, true, reply, sizeof(reply));
	snprintf(big, sizeof(big), "CHAP_N=alice\nCHAP_R=0bb3ZlcnNpemUK%s", strstr(reply, "=0b") + 3);
	r = say(c, 0, 1, true, big);
	CHECK_EQ(r->ret, -EACCES);
	CHECK_EQ(status(r), 0x0201);
	conv_free(c);
}

/* libiscsi with a user set, against a target without CHAP: AuthMethod is
 * answered None, and libiscsi then sends its identity keys once more in
 * the operational stage. */
TEST(test_login_chap_offer_answered_none)
{
	struct conv *c = conv_new();
	struct rsp *r = say(c, 0, 1, true, WHO "\nSessionType=Normal\nAuthMethod=CHAP,None");

	CHECK_EQ(r->ret, 0);
	has(r, "AuthMethod=None");
	CHECK(rsp_t(r) && rsp_nsg(r) == 1);
	r = say(c, 1, 3, true, WHO "\nSessionType=Normal\n" OPNEG);
	CHECK_EQ(r->ret, 1);
	has(r, OPNEG_ANSWER);
	conv_free(c);
}

TEST(test_login_chap_wrong_secret_or_user_refused)
{
	static const char *const tries[][2] = {
		{"alice", "wrongsecret999"}, {"bob", SECRET}, {"alice2", SECRET}, {"alic", SECRET},
	};

	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct conv *c = conv_new();
		char reply[200];
		struct rsp *r;

		set_chap(&c->f, NULL, NULL);
		chap_to_challenge(c, "5");
		chap_reply(c, tries[i][0], tries[i][1], false, reply, sizeof(reply));
		r = say(c, 0, 1, true, reply);
		CHECK_EQ(r->ret, -EACCES);
		CHECK_EQ(status(r), 0x0201);
		CHECK(!rsp_t(r));
		CHECK_EQ(r->dlen, 0);
		CHECK_EQ(c->f.refusals, 1);
		CHECK(strstr(c->f.why, "wrong CHAP user or secret"));
		conv_free(c);
	}
}

TEST(test_login_chap_required_initiator_jumps_to_operational)
{
	REFUSE(.csg = 1, .nsg = 3, .t = true, .chap = true, .status = 0x0201, .ret = -EACCES,
	       .keys = WHO "\nSessionType=Normal\nHeaderDigest=None", .why = "requires CHAP");
}

TEST(test_login_chap_required_other_refusals)
{
	/* only None offered */
	REFUSE(.csg = 0, .nsg = 1, .t = true, .chap = true, .status = 0x0201, .ret = -EACCES,
	       .keys = WHO "\nAuthMethod=None");
	/* in the security stage without AuthMethod, asking to leave it */
	REFUSE(.csg = 0, .nsg = 1, .t = true, .chap = true, .status = 0x0201, .ret = -EACCES,
	       .keys = WHO "\nSessionType=Normal");
	/* the target has no CHAP secret and None is not offered */
	REFUSE(.csg = 0, .nsg = 1, .t = true, .status = 0x0201, .ret = -EACCES,
	       .keys = WHO "\nAuthMethod=CHAP");
}

TEST(test_chap_algorithm_not_supported_refused)
{
	static const char *const offers[] = {"56", "", "6", "8,6", "x"};

	for (size_t i = 0; i < sizeof(offers) / sizeof(offers[0]); i++) {
		struct conv *c = conv_new();
		char kv[64];
		struct rsp *r;

		set_chap(&c->f, NULL, NULL);
		CHECK_EQ(say(c, 0, 1, true, WHO "\nAuthMethod=CHAP,None")->ret, 0);
		snprintf(kv, sizeof(kv), "CHAP_A=%s", offers[i]);
		r = say(c, 0, 1, false, kv);
		CHECK_EQ(r->ret, -EACCES);
		CHECK_EQ(status(r), 0x0201);
		conv_free(c);
	}
}

/* Mutual CHAP the target must refuse: no credentials of its own, its own
 * challenge handed back (reflection), a challenge without CHAP_I. */
static void mutual_refused(const char *muser, bool reflect, bool no_id)
{
	struct conv *c = conv_new();
	char reply[400];
	size_t n;
	struct rsp *r;

	set_chap(&c->f, muser, muser ? MSECRET : NULL);
	chap_to_challenge(c, "5");
	chap_reply(c, "alice", SECRET, false, reply, sizeof(reply));
	n = strlen(reply);
	snprintf(reply + n, sizeof(reply) - n, "%s\nCHAP_C=%s", no_id ? "" : "\nCHAP_I=7",
		 reflect ? rsp_get(&c->r, "CHAP_C") : "0x0102030405060708");
	r = say(c, 0, 1, true, reply);
	CHECK_EQ(r->ret, -EACCES);
	CHECK_EQ(status(r), 0x0201);
	CHECK_EQ(c->f.refusals, 1);
	conv_free(c);
}

TEST(test_chap_mutual_without_target_credentials_refused)
{
	mutual_refused(NULL, false, false);
}

TEST(test_chap_mutual_reflected_challenge_refused)
{
	mutual_refused("tgt", true, false);
}

TEST(test_chap_mutual_challenge_without_id_refused)
{
	mutual_refused("tgt", false, true);
}

TEST(test_chap_keys_out_of_turn)
{
	struct conv *c = conv_new();

	/* CHAP_A before AuthMethod was agreed */
	REFUSE(.csg = 0, .nsg = 1, .chap = true, .status = 0x0200, .ret = -EPROTO,
	       .keys = WHO "\nCHAP_A=5");
	/* a security key in the operational stage */
	REFUSE(.csg = 1, .nsg = 3, .t = true, .status = 0x0200, .ret = -EPROTO,
	       .keys = WHO "\nAuthMethod=None");
	/* CHAP_R before the challenge */
	set_chap(&c->f, NULL, NULL);
	CHECK_EQ(say(c, 0, 1, true, WHO "\nAuthMethod=CHAP")->ret, 0);
	CHECK_EQ(status(say(c, 0, 1, true, "CHAP_N=alice\nCHAP_R=0x00")), 0x0200);
	conv_free(c);
}

/* The initiator asks to move on before answering the challenge: the
 * target keeps the security stage. */
TEST(test_chap_transit_waits_for_the_exchange)
{
	struct conv *c = conv_new();
	struct rsp *r;

	set_chap(&c->f, NULL, NULL);
	CHECK_EQ(say(c, 0, 1, true, WHO "\nAuthMethod=CHAP")->ret, 0);
	r = say(c, 0, 1, true, "CHAP_A=5");
	CHECK_EQ(r->ret, 0);
	CHECK(!rsp_t(r));
	CHECK(rsp_get(r, "CHAP_C"));
	conv_free(c);
}

TEST(test_login_unknown_keys_not_understood)
{
	struct conv *c = conv_new();
	struct rsp *r = say(c, 1, 3, true,
			    WHO "\nX-com.example.Foo=1\nX#12345=bar\nFooBar=Yes\nIFMarkInt=2048~8192\n"
				"OFMarkInt=1\nTaskReporting=RFC3720,ResponseFence\n"
				"iSCSIProtocolLevel=2\nSendTargets=All");

	CHECK_EQ(r->ret, 1);
	has(r, "X-com.example.Foo=NotUnderstood\nX#12345=NotUnderstood\nFooBar=NotUnderstood\n"
	       "IFMarkInt=NotUnderstood\nOFMarkInt=NotUnderstood\nTaskReporting=NotUnderstood\n"
	       "iSCSIProtocolLevel=1\n"
	       "SendTargets=Reject"); /* full feature phase only */
	conv_free(c);
}

TEST(test_login_operational_values_per_rfc_rules)
{
	struct conv *c = conv_new();
	const struct kura_iscsi_params *p;
	struct rsp *r = say(c, 1, 3, true,
			    WHO "\nHeaderDigest=None\nDataDigest=CRC32C,None\nMaxConnections=8\n"
				"InitialR2T=Yes\nImmediateData=No\nMaxRecvDataSegmentLength=0x10000\n"
				"MaxBurstLength=16777215\nFirstBurstLength=8192\nDefaultTime2Wait=0\n"
				"DefaultTime2Retain=3600\nMaxOutstandingR2T=64\nDataPDUInOrder=No\n"
				"DataSequenceInOrder=No\nErrorRecoveryLevel=2\niSCSIProtocolLevel=0");

	CHECK_EQ(r->ret, 1);
	has(r, "HeaderDigest=None\nDataDigest=CRC32C\nMaxConnections=1\nInitialR2T=Yes\n"
	       "ImmediateData=No\nMaxBurstLength=16777215\nDefaultTime2Wait=2\n"
	       "DefaultTime2Retain=0\nMaxOutstandingR2T=16\nDataPDUInOrder=Yes\n"
	       "DataSequenceInOrder=Yes\nErrorRecoveryLevel=0\niSCSIProtocolLevel=0\n"
	       "FirstBurstLength=Irrelevant\n" /* InitialR2T=Yes and ImmediateData=No */
	       "MaxRecvDataSegmentLength=262144"); /* ours, declared */
	p = &kura_iscsi_login_result(c->l)->params;
	CHECK(!p->header_digest && p->data_digest);
	CHECK(p->initial_r2t && !p->immediate_data);
	CHECK_EQ(p->max_xmit_dsl, 65536);
	CHECK_EQ(p->max_burst, 16777215);
	CHECK_EQ(p->max_outstanding_r2t, 16);
	conv_free(c);
}

TEST(test_login_first_burst_capped_and_values_rejected)
{
	struct conv *c = conv_new();
	const struct kura_iscsi_params *p;
	/* FirstBurstLength before the MaxBurstLength it may not exceed */
	struct rsp *r = say(c, 1, 3, true,
			    "InitialR2T=No\nFirstBurstLength=16777215\n" WHO "\nMaxBurstLength=16384\n"
			    "HeaderDigest=MD5\nMaxRecvDataSegmentLength=100\nImmediateData=Maybe\n"
			    "MaxConnections=0\nErrorRecoveryLevel=3\nDefaultTime2Wait=3601\n"
			    "MaxOutstandingR2T=0x");

	CHECK_EQ(r->ret, 1);
	has(r, "FirstBurstLength=16384\nMaxBurstLength=16384\nHeaderDigest=Reject\n"
	       "ImmediateData=Reject\nMaxConnections=Reject\nErrorRecoveryLevel=Reject\n"
	       "DefaultTime2Wait=Reject\nMaxOutstandingR2T=Reject\n"
	       "MaxRecvDataSegmentLength=Reject"); /* a declaration out of range */
	p = &kura_iscsi_login_result(c->l)->params;
	CHECK_EQ(p->first_burst, 16384);
	CHECK_EQ(p->max_xmit_dsl, 8192); /* the default stays */
	CHECK(!p->header_digest);
	conv_free(c);
}

TEST(test_login_duplicate_key_in_one_request_refused)
{
	REFUSE(.csg = 1, .nsg = 3, .t = true, .status = 0x0200, .ret = -EPROTO, .why = "twice",
	       .keys = WHO "\nMaxBurstLength=8192\nMaxBurstLength=8192");
}

TEST(test_login_duplicate_key_across_requests_refused)
{
	struct conv *c = conv_new();
	struct rsp *r = say(c, 1, 3, false, WHO "\nHeaderDigest=None");

	CHECK_EQ(r->ret, 0);
	CHECK(!rsp_t(r)); /* the initiator did not ask to move on */
	has(r, "HeaderDigest=None");
	r = say(c, 1, 3, true, "HeaderDigest=CRC32C");
	CHECK_EQ(r->ret, -EPROTO);
	CHECK_EQ(status(r), 0x0200);
	conv_free(c);
	/* an identity key again, with another value */
	c = conv_new();
	CHECK_EQ(say(c, 1, 3, false, WHO)->ret, 0);
	CHECK_EQ(status(say(c, 1, 3, true, "InitiatorName=iqn.2000-01.other:x")), 0x0200);
	conv_free(c);
}

TEST(test_login_first_request_checks)
{
	static const struct refusal cases[] = {
		{.keys = "TargetName=" TGT, .status = 0x0207, .ret = -EPROTO},
		{.keys = "InitiatorName=" INI, .status = 0x0207, .ret = -EPROTO},
		{.keys = "InitiatorName=\nTargetName=" TGT, .status = 0x0207, .ret = -EPROTO},
		{.keys = "InitiatorName=" INI "\nTargetName=iqn.2026-11.io.kura:nope",
		 .status = 0x0203, .ret = -ENOENT, .why = "no such target"},
		{.keys = WHO, .target_err = -EACCES, .status = 0x0202, .ret = -EACCES,
		 .why = "not on the target's ACL"},
		{.keys = WHO, .target_err = -EAGAIN, .status = 0x0301, .ret = -EAGAIN},
		{.keys = WHO, .target_err = -EIO, .status = 0x0300, .ret = -EIO},
		{.keys = "InitiatorName=" INI "\nSessionType=Both", .status = 0x0209, .ret = -EPROTO},
		{.keys = WHO "\nTargetAlias=me", .status = 0x0200, .ret = -EPROTO},
		{.keys = WHO "\nTargetPortalGroupTag=1", .status = 0x0200, .ret = -EPROTO},
		{.keys = WHO "\nNoEqualSign", .status = 0x0200, .ret = -EPROTO},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct refusal x = cases[i];

		x.csg = 1;
		x.nsg = 3;
		x.t = true;
		refuse(&x);
	}
}

TEST(test_login_version_isid_tsih_reported)
{
	struct conv *c = conv_new();
	const struct kura_iscsi_login_result *res;
	struct rsp *r;

	login_hdr(&c->q, 1, 3, true, false);
	c->q.bhs[3] = 1; /* Version-min 1 */
	iscsi_put16(c->q.bhs + 14, 0x1234); /* TSIH: a connection for an existing session */
	iscsi_put16(c->q.bhs + 20, 7);      /* CID */
	req_lines(&c->q, WHO);
	r = send_req(c);
	CHECK_EQ(status(r), 0x0205);
	CHECK(r->bhs[2] == 0 && r->bhs[3] == 0);
	res = kura_iscsi_login_result(c->l);
	CHECK_EQ(res->tsih, 0x1234);
	CHECK_EQ(res->cid, 7);
	CHECK_EQ(res->cmdsn, 0x2000);
	CHECK(!memcmp(res->isid, c->q.bhs + 8, 6));
	conv_free(c);
	/* a non-leading login: session-wide keys are Irrelevant; the result
	 * reports the TSIH and the connection code decides */
	c = conv_new();
	login_hdr(&c->q, 1, 3, true, false);
	iscsi_put16(c->q.bhs + 14, 0x1234);
	req_lines(&c->q, WHO "\nMaxBurstLength=8192\nHeaderDigest=CRC32C");
	r = send_req(c);
	CHECK_EQ(r->ret, 1);
	has(r, "MaxBurstLength=Irrelevant\nHeaderDigest=CRC32C");
	CHECK_EQ(kura_iscsi_login_result(c->l)->tsih, 0x1234);
	conv_free(c);
}

TEST(test_login_stage_and_bit_errors)
{
	static const struct refusal cases[] = {
		{.csg = 1, .nsg = 3, .t = true, .c = true}, /* T and C */
		{.csg = 3, .nsg = 3, .t = true},            /* CSG full feature */
		{.csg = 2, .nsg = 3, .t = true},            /* CSG reserved */
		{.csg = 1, .nsg = 2, .t = true},            /* NSG reserved */
		{.csg = 1, .nsg = 1, .t = true},            /* NSG not after CSG */
		{.csg = 0, .nsg = 0, .t = true},
	};
	struct conv *c;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct refusal x = cases[i];

		x.keys = WHO;
		x.status = 0x0200;
		x.ret = -EPROTO;
		refuse(&x);
	}
	/* a later request in another stage than the target is in */
	c = conv_new();
	CHECK(!rsp_t(say(c, 0, 1, false, WHO "\nAuthMethod=None")));
	CHECK_EQ(status(say(c, 1, 3, true, "")), 0x0200);
	conv_free(c);
	/* the ISID may not change */
	c = conv_new();
	CHECK_EQ(say(c, 1, 3, false, WHO)->ret, 0);
	login_hdr(&c->q, 1, 3, true, false);
	c->q.bhs[13] ^= 1;
	c->q.dlen = 0;
	CHECK_EQ(status(send_req(c)), 0x0200);
	conv_free(c);
}

/* The initiator continues its first request over three PDUs, one of them
 * cutting a key in half: each gets an empty answer in the same stage. */
TEST(test_login_c_bit_from_initiator)
{
	struct conv *c = conv_new();
	struct req whole;
	uint32_t cuts[] = {0, 10, 37, 0};
	struct rsp *r = NULL;

	req_lines(&whole, WHO "\nSessionType=Normal\n" OPNEG);
	cuts[3] = whole.dlen;
	for (int i = 0; i < 3; i++) {
		bool last = i == 2;

		login_hdr(&c->q, 1, 3, last, !last);
		c->q.dlen = cuts[i + 1] - cuts[i];
		memcpy(c->q.data, whole.data + cuts[i], c->q.dlen);
		r = send_req(c);
		if (!last) {
			CHECK_EQ(r->ret, 0);
			CHECK_EQ(status(r), 0);
			CHECK_EQ(r->dlen, 0);
			CHECK(!rsp_t(r) && !rsp_c(r) && rsp_csg(r) == 1);
		}
	}
	CHECK_EQ(r->ret, 1);
	has(r, OPNEG_ANSWER);
	check_libiscsi_params(kura_iscsi_login_result(c->l));
	conv_free(c);
}

/* An answer longer than 8192 bytes goes out in pieces with C set; the
 * initiator fetches each with an empty request. */
TEST(test_login_c_bit_from_target)
{
	struct conv *c = conv_new();
	static uint8_t all[40000];
	static char keys[30000];
	size_t kl = 0;
	uint32_t got = 0;
	int pieces = 0;
	struct rsp *r;

	kl += (size_t)snprintf(keys, sizeof(keys), "%s", WHO "\n" OPNEG);
	for (int i = 0; i < 200; i++)
		kl += (size_t)snprintf(keys + kl, sizeof(keys) - kl,
				       "\nX-com.example.a-long-vendor-key-name-to-fill-the-answer-%03d=1", i);
	r = say(c, 1, 3, true, keys);
	for (;;) {
		CHECK_EQ(status(r), 0);
		CHECK(got + r->dlen <= sizeof(all));
		memcpy(all + got, r->data, r->dlen);
		got += r->dlen;
		pieces++;
		if (!rsp_c(r))
			break;
		CHECK_EQ(r->ret, 0);
		CHECK(!rsp_t(r));
		CHECK_EQ(r->dlen, 8192);
		r = say(c, 1, 3, true, "");
	}
	CHECK(pieces >= 2);
	CHECK_EQ(r->ret, 1);
	CHECK(rsp_t(r));
	has_all(all, got, "X-com.example.a-long-vendor-key-name-to-fill-the-answer-199=NotUnderstood\n"
			  OPNEG_ANSWER);
	conv_free(c);
}

TEST(test_login_limits_on_text_and_pdus)
{
	struct conv *c = conv_new();
	int i;

	/* continued text beyond 64 KiB */
	for (i = 0; i < 20; i++) {
		login_hdr(&c->q, 1, 3, false, true);
		memset(c->q.data, 'A', 8192);
		c->q.dlen = 8192;
		if (send_req(c)->ret < 0)
			break;
	}
	CHECK(i == 8);
	CHECK_EQ(status(&c->r), 0x0200);
	conv_free(c);
	/* requests that go round in circles */
	c = conv_new();
	CHECK_EQ(say(c, 1, 3, false, WHO)->ret, 0);
	for (i = 0; i < 100 && say(c, 1, 3, false, "")->ret == 0; i++)
		;
	CHECK(i < 100);
	conv_free(c);
}

/* ---- discovery and the full feature Text Request ---- */

static void discovery_login(struct fake *f, struct kura_iscsi_params *p)
{
	struct conv *c = conv_new();
	struct rsp *r;

	c->f = *f;
	r = say(c, 1, 3, true, "InitiatorName=" INI "\nSessionType=Discovery\n" OPNEG);
	CHECK_EQ(r->ret, 1);
	CHECK(!rsp_get(r, "TargetPortalGroupTag"));
	has(r, "InitialR2T=Irrelevant\nImmediateData=Irrelevant\nMaxBurstLength=Irrelevant\n"
	       "FirstBurstLength=Irrelevant\nMaxConnections=Irrelevant\nHeaderDigest=CRC32C\n"
	       "ErrorRecoveryLevel=0\nMaxRecvDataSegmentLength=262144");
	CHECK_EQ(kura_iscsi_login_result(c->l)->type, KURA_ISCSI_DISCOVERY);
	*p = kura_iscsi_login_result(c->l)->params;
	conv_free(c);
}

/* One connection in full feature phase: its Text Requests and answers. */
struct tconv {
	struct fake f;
	struct kura_iscsi_params p;
	struct kura_iscsi_text *t;
	struct req q;
	struct rsp r;
};

static struct tconv *tconv_new(unsigned ntargets, const char *own)
{
	struct tconv *c = calloc(1, sizeof(*c));

	CHECK(c);
	c->f.ntargets = ntargets;
	kura_iscsi_params_default(&c->p);
	CHECK_EQ(kura_iscsi_text_create(&ops, &c->f, INI, own, &c->t), 0);
	return c;
}

static void tconv_free(struct tconv *c)
{
	rsp_free(&c->r);
	kura_iscsi_text_free(c->t);
	free(c);
}

static struct rsp *ask(struct tconv *c, uint32_t itt, uint32_t ttt, bool final, bool cont,
		       const char *lines)
{
	struct rsp *r = &c->r;

	memset(c->q.bhs, 0, sizeof(c->q.bhs));
	c->q.bhs[0] = ISCSI_F_IMMEDIATE | ISCSI_OP_TEXT_REQ;
	c->q.bhs[1] = (uint8_t)((final ? ISCSI_F_FINAL : 0) | (cont ? ISCSI_F_CONTINUE : 0));
	iscsi_put32(c->q.bhs + 16, itt);
	iscsi_put32(c->q.bhs + 20, ttt);
	if (lines)
		req_lines(&c->q, lines);
	rsp_free(r);
	iscsi_set_dlen(c->q.bhs, c->q.dlen);
	r->ret = kura_iscsi_text_step(c->t, &c->p, c->q.bhs, (const uint8_t *)c->q.data, c->q.dlen,
				      r->bhs, &r->data, &r->dlen);
	CHECK_EQ(r->ret, 0);
	CHECK(r->dlen == 0 || r->data);
	return r;
}

static unsigned count_targets(const uint8_t *data, uint32_t len)
{
	unsigned n = 0;

	for (uint32_t pos = 0; pos < len; pos += (uint32_t)strlen((const char *)data + pos) + 1)
		n += !strncmp((const char *)data + pos, "TargetName=", 11);
	return n;
}

static bool rejected(const struct rsp *r, uint8_t reason)
{
	return r->bhs[0] == ISCSI_OP_REJECT && r->bhs[2] == reason &&
	       iscsi_itt(r->bhs) == ISCSI_RSVD_TAG && r->dlen == KURA_ISCSI_BHS;
}

TEST(test_text_discovery_send_targets)
{
	struct tconv *c = tconv_new(3, "");
	struct rsp *r;

	discovery_login(&c->f, &c->p);
	r = ask(c, 0x77, ISCSI_RSVD_TAG, true, false, "SendTargets=All");
	CHECK_EQ(r->bhs[0], ISCSI_OP_TEXT_RSP);
	CHECK_EQ(r->bhs[1], ISCSI_F_FINAL); /* libiscsi takes exactly F */
	CHECK_EQ(iscsi_itt(r->bhs), 0x77);
	CHECK_EQ(iscsi_w20(r->bhs), ISCSI_RSVD_TAG);
	CHECK_EQ(count_targets(r->data, r->dlen), 3);
	has(r, "TargetAddress=127.0.0.1:3260,1");
	/* one named target; a well-formed unknown name lists nothing */
	r = ask(c, 0x78, ISCSI_RSVD_TAG, true, false, "SendTargets=iqn.2026-11.io.kura:disk0001");
	CHECK_EQ(count_targets(r->data, r->dlen), 1);
	CHECK_EQ(ask(c, 0x79, ISCSI_RSVD_TAG, true, false, "SendTargets=iqn.2026-11.io.kura:x")->dlen,
		 0);
	/* invalid values and keys, as libiscsi's SendTargets tests send them;
	 * empty (the session's own target) means nothing in discovery */
	has(ask(c, 0x7a, ISCSI_RSVD_TAG, true, false, "SendTargets=Alle"), "SendTargets=Reject");
	has(ask(c, 0x7b, ISCSI_RSVD_TAG, true, false, "SendTargets="), "SendTargets=Reject");
	has(ask(c, 0x7c, ISCSI_RSVD_TAG, true, false, "sENDtARGETS=aLL\nSendTargetsPlease=All"),
	    "sENDtARGETS=NotUnderstood\nSendTargetsPlease=NotUnderstood");
	tconv_free(c);
}

/* 300 targets do not fit in 512-byte PDUs: C set, a TTT, and the initiator
 * fetches the rest with empty requests carrying it. */
TEST(test_text_send_targets_continued)
{
	struct tconv *c = tconv_new(300, "");
	static uint8_t all[65536];
	uint32_t got = 0;
	int pieces = 0;
	struct rsp *r;

	discovery_login(&c->f, &c->p);
	c->p.max_xmit_dsl = 512;
	r = ask(c, 5, ISCSI_RSVD_TAG, true, false, "SendTargets=All");
	for (;;) {
		CHECK_EQ(r->bhs[0], ISCSI_OP_TEXT_RSP);
		CHECK(r->dlen <= 512 && got + r->dlen <= sizeof(all));
		memcpy(all + got, r->data, r->dlen);
		got += r->dlen;
		pieces++;
		if (!rsp_c(r))
			break;
		CHECK(!(r->bhs[1] & ISCSI_F_FINAL));
		CHECK(iscsi_w20(r->bhs) != ISCSI_RSVD_TAG);
		r = ask(c, 5, iscsi_w20(r->bhs), true, false, "");
	}
	CHECK(r->bhs[1] & ISCSI_F_FINAL);
	CHECK_EQ(iscsi_w20(r->bhs), ISCSI_RSVD_TAG);
	CHECK(pieces > 10);
	CHECK_EQ(count_targets(all, got), 300);
	CHECK_EQ(all[got - 1], 0);
	tconv_free(c);
}

TEST(test_text_unknown_ttt_rejected)
{
	struct tconv *c = tconv_new(300, "");
	uint32_t ttt;
	struct rsp *r;

	c->p.max_xmit_dsl = 1024;
	/* nothing under way */
	r = ask(c, 9, 0x1234, true, false, "");
	CHECK(rejected(r, ISCSI_REJECT_INVALID_FIELD));
	CHECK(!memcmp(r->data, c->q.bhs, KURA_ISCSI_BHS));
	/* a long answer under way: a wrong TTT or ITT is refused, the right
	 * pair goes on */
	r = ask(c, 9, ISCSI_RSVD_TAG, true, false, "SendTargets=All");
	CHECK(rsp_c(r));
	ttt = iscsi_w20(r->bhs);
	CHECK(rejected(ask(c, 9, ttt + 1, true, false, ""), ISCSI_REJECT_INVALID_FIELD));
	CHECK(rejected(ask(c, 10, ttt, true, false, ""), ISCSI_REJECT_INVALID_FIELD));
	r = ask(c, 9, ttt, true, false, "");
	CHECK(r->bhs[0] == ISCSI_OP_TEXT_RSP && r->dlen > 0);
	/* F and C together, and the reserved ITT */
	CHECK(rejected(ask(c, 11, ISCSI_RSVD_TAG, true, true, ""), ISCSI_REJECT_PROTOCOL));
	CHECK(rejected(ask(c, ISCSI_RSVD_TAG, ISCSI_RSVD_TAG, true, false, ""),
		       ISCSI_REJECT_INVALID_FIELD));
	tconv_free(c);
}

TEST(test_text_normal_session_keys)
{
	struct tconv *c = tconv_new(5, "iqn.2026-11.io.kura:disk0003");
	struct rsp *r = ask(c, 1, ISCSI_RSVD_TAG, true, false,
			    "SendTargets=\nMaxRecvDataSegmentLength=65536\nX-vendor.key=1\n"
			    "MaxBurstLength=4096\nHeaderDigest=CRC32C\nInitiatorName=" INI "\n"
			    "InitiatorAlias=again\nAuthMethod=None\nTaskReporting=RFC3720");

	CHECK_EQ(r->bhs[1], ISCSI_F_FINAL);
	CHECK_EQ(count_targets(r->data, r->dlen), 1);
	has(r, "TargetName=iqn.2026-11.io.kura:disk0003\nX-vendor.key=NotUnderstood\n"
	       "MaxBurstLength=Reject\n" /* leading login only */
	       "HeaderDigest=Reject\n"   /* login only */
	       "InitiatorName=Reject\nAuthMethod=Reject\nTaskReporting=NotUnderstood");
	CHECK(!rsp_get(r, "MaxRecvDataSegmentLength")); /* declarative */
	CHECK(!rsp_get(r, "InitiatorAlias"));
	CHECK_EQ(c->p.max_xmit_dsl, 65536);
	CHECK_EQ(c->p.max_burst, 262144);
	/* SendTargets=All works in a normal session too */
	r = ask(c, 2, ISCSI_RSVD_TAG, true, false, "SendTargets=All");
	CHECK_EQ(count_targets(r->data, r->dlen), 5);
	/* a key twice, or malformed text: the request is rejected */
	r = ask(c, 3, ISCSI_RSVD_TAG, true, false,
		"MaxRecvDataSegmentLength=8192\nMaxRecvDataSegmentLength=8192");
	CHECK(rejected(r, ISCSI_REJECT_PROTOCOL));
	CHECK_EQ(c->p.max_xmit_dsl, 65536);
	memcpy(c->q.data, "NoEquals", 9);
	c->q.dlen = 9;
	CHECK(rejected(ask(c, 4, ISCSI_RSVD_TAG, true, false, NULL), ISCSI_REJECT_PROTOCOL));
	tconv_free(c);
}

/* The request itself continued (C bit), and an F=0 negotiation that goes
 * on over two rounds with the TTT we handed out. */
TEST(test_text_c_bit_and_rounds)
{
	struct tconv *c = tconv_new(2, "");
	static const char whole[] = "SendTargets=All\0MaxRecvDataSegmentLength=32768";
	uint32_t ttt;
	struct rsp *r;

	memcpy(c->q.data, whole, 20);
	c->q.dlen = 20;
	r = ask(c, 40, ISCSI_RSVD_TAG, false, true, NULL);
	CHECK(r->bhs[0] == ISCSI_OP_TEXT_RSP && r->dlen == 0);
	CHECK(!(r->bhs[1] & (ISCSI_F_FINAL | ISCSI_F_CONTINUE)));
	ttt = iscsi_w20(r->bhs);
	CHECK(ttt != ISCSI_RSVD_TAG);
	memcpy(c->q.data, whole + 20, sizeof(whole) - 20);
	c->q.dlen = sizeof(whole) - 20;
	r = ask(c, 40, ttt, true, false, NULL);
	CHECK_EQ(r->bhs[1], ISCSI_F_FINAL);
	CHECK_EQ(count_targets(r->data, r->dlen), 2);
	CHECK_EQ(c->p.max_xmit_dsl, 32768);
	/* F=0: the answer keeps the exchange open; a key may not come back */
	r = ask(c, 41, ISCSI_RSVD_TAG, false, false, "X-a=1");
	CHECK(!(r->bhs[1] & ISCSI_F_FINAL));
	ttt = iscsi_w20(r->bhs);
	CHECK(ttt != ISCSI_RSVD_TAG);
	r = ask(c, 41, ttt, true, false, "X-b=1");
	CHECK_EQ(r->bhs[1], ISCSI_F_FINAL);
	has(r, "X-b=NotUnderstood");
	ttt = iscsi_w20(ask(c, 42, ISCSI_RSVD_TAG, false, false, "X-a=1")->bhs);
	CHECK(rejected(ask(c, 42, ttt, true, false, "X-a=2"), ISCSI_REJECT_PROTOCOL));
	tconv_free(c);
}

