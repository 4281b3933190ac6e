/* The security stage of login (RFC 7143 section 12.1.3, RFC 1994): the
 * AuthMethod choice and CHAP, one-way and mutual, with MD5 (CHAP_A=5) or
 * SHA-256 (CHAP_A=7). */
#include "iscsi-target/hash.h"
#include "iscsi-target/login_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define CHAP_MD5 5
#define CHAP_SHA256 7
/* RFC 7143 12.1.3 bounds an initiator's challenge at 1024 bytes. */
#define CHAP_CHAL_MAX 1024u

int kura_iscsi_chap_response(int alg, uint8_t id, const uint8_t *secret, size_t slen,
			     const uint8_t *chal, size_t clen, uint8_t *out)
{
	struct kura_hash_piece v[3] = {{&id, 1}, {secret, slen}, {chal, clen}};

	if (alg == CHAP_MD5) {
		kura_md5(v, 3, out);
		return 16;
	}
	if (alg == CHAP_SHA256) {
		kura_sha256(v, 3, out);
		return 32;
	}
	return -EINVAL;
}

bool iscsi_sec_key(const char *k)
{
	return !strcmp(k, "AuthMethod") || !strcmp(k, "CHAP_A") || !strcmp(k, "CHAP_I") ||
	       !strcmp(k, "CHAP_C") || !strcmp(k, "CHAP_N") || !strcmp(k, "CHAP_R");
}

/* Equality whose time depends only on the lengths, not on where the first
 * difference is: a response or a name must not be guessable byte by byte. */
static bool same(const void *a, size_t al, const void *b, size_t bl)
{
	const uint8_t *x = a, *y = b;
	size_t n = al < bl ? al : bl;
	uint8_t d = al != bl;

	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return !d;
}

/* CHAP_A: a list of algorithms. SHA-256 whenever offered, else MD5. */
static int pick_alg(const char *list)
{
	bool md5 = false, sha = false;

	for (const char *p = list;;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		char item[24];
		uint64_t a;

		if (l < sizeof(item)) {
			memcpy(item, p, l);
			item[l] = 0;
			if (!iscsi_parse_num(item, 0, 255, &a)) {
				md5 |= a == CHAP_MD5;
				sha |= a == CHAP_SHA256;
			}
		}
		if (!c)
			break;
		p = c + 1;
	}
	return sha ? CHAP_SHA256 : md5 ? CHAP_MD5 : 0;
}

static unsigned auth_method(struct iscsi_sec *s, const struct kura_iscsi_target_auth *auth,
			    const char *am, struct iscsi_out *o, const char **why)
{
	if (s->state != SEC_START) {
		*why = "AuthMethod after the method was agreed";
		return LST_INIT_ERR;
	}
	if (auth->user[0]) {
		if (!iscsi_list_has(am, "CHAP")) {
			*why = "the target requires CHAP and the initiator did not offer it";
			return LST_AUTH_FAIL;
		}
		s->state = SEC_CHAP;
		iscsi_put(o, "AuthMethod", "CHAP");
		return 0;
	}
	if (!iscsi_list_has(am, "None")) {
		*why = "the target has no CHAP secret and the initiator did not offer AuthMethod None";
		return LST_AUTH_FAIL;
	}
	s->state = SEC_NONE;
	iscsi_put(o, "AuthMethod", "None");
	return 0;
}

static unsigned challenge(struct iscsi_sec *s, const struct iscsi_sec_ctx *c, const char *a,
			  struct iscsi_out *o, const char **why)
{
	if (s->state != SEC_CHAP) {
		*why = "CHAP_A before AuthMethod=CHAP was agreed";
		return LST_INIT_ERR;
	}
	if (!(s->alg = pick_alg(a))) {
		*why = "no CHAP algorithm in common (the target takes MD5 or SHA-256)";
		return LST_AUTH_FAIL;
	}
	c->ops->random(c->ctx, &s->id, 1);
	c->ops->random(c->ctx, s->chal, sizeof(s->chal));
	iscsi_put_num(o, "CHAP_A", (uint64_t)s->alg);
	iscsi_put_num(o, "CHAP_I", s->id);
	iscsi_put_hex(o, "CHAP_C", s->chal, sizeof(s->chal));
	s->state = SEC_CHALLENGED;
	return 0;
}

/* CHAP_I: a number; a base64 form of one byte is taken too. */
static int parse_id(const char *v, uint8_t *id)
{
	uint64_t n;
	size_t l;

	if (!iscsi_parse_num(v, 0, 255, &n)) {
		*id = (uint8_t)n;
		return 0;
	}
	if ((v[0] == '0' && (v[1] == 'b' || v[1] == 'B')) && !iscsi_parse_bin(v, id, 1, &l) && l == 1)
		return 0;
	return -EINVAL;
}

/* The initiator asks us to prove ourselves (its CHAP_I and CHAP_C). */
static unsigned mutual(const struct iscsi_sec *s, const struct kura_iscsi_target_auth *auth,
		       const char *mi, const char *mc, struct iscsi_out *o, const char **why)
{
	uint8_t chal[CHAP_CHAL_MAX], r[32], id;
	size_t cl;
	int rl;

	if (!mi || !mc || parse_id(mi, &id) || iscsi_parse_bin(mc, chal, sizeof(chal), &cl)) {
		*why = "malformed mutual CHAP challenge (CHAP_I and CHAP_C)";
		return LST_AUTH_FAIL;
	}
	if (!auth->muser[0]) {
		*why = "the initiator asked for mutual CHAP and the target has no mutual credentials";
		return LST_AUTH_FAIL;
	}
	/* Answering our own challenge would hand the initiator the response it
	 * owes us (a reflection attack). */
	if (cl == sizeof(s->chal) && !memcmp(chal, s->chal, cl)) {
		*why = "the initiator's CHAP challenge is the target's own";
		return LST_AUTH_FAIL;
	}
	rl = kura_iscsi_chap_response(s->alg, id, (const uint8_t *)auth->msecret,
				      strlen(auth->msecret), chal, cl, r);
	iscsi_put(o, "CHAP_N", auth->muser);
	iscsi_put_hex(o, "CHAP_R", r, (size_t)rl);
	return 0;
}

static unsigned response(struct iscsi_sec *s, const struct iscsi_sec_ctx *c,
			 const struct iscsi_kvlist *kv, struct iscsi_out *o, const char **why)
{
	const struct kura_iscsi_target_auth *auth = c->auth;
	const char *n = iscsi_kv_get(kv, "CHAP_N"), *r = iscsi_kv_get(kv, "CHAP_R");
	const char *mi = iscsi_kv_get(kv, "CHAP_I"), *mc = iscsi_kv_get(kv, "CHAP_C");
	uint8_t got[64], want[32];
	size_t gl = 0;
	bool name_ok, resp_ok;
	int wl;

	if (s->state != SEC_CHALLENGED || iscsi_kv_get(kv, "CHAP_A")) {
		*why = "a CHAP response before the target's challenge";
		return LST_INIT_ERR;
	}
	if (!n || !r) {
		*why = "a CHAP response without CHAP_N or CHAP_R";
		return LST_AUTH_FAIL;
	}
	wl = kura_iscsi_chap_response(s->alg, s->id, (const uint8_t *)auth->secret,
				      strlen(auth->secret), s->chal, sizeof(s->chal), want);
	name_ok = same(n, strlen(n), auth->user, strlen(auth->user));
	resp_ok = !iscsi_parse_bin(r, got, sizeof(got), &gl) && same(got, gl, want, (size_t)wl);
	explicit_bzero(want, sizeof(want));
	if (!name_ok || !resp_ok) {
		*why = "wrong CHAP user or secret";
		return LST_AUTH_FAIL;
	}
	if (mi || mc) {
		unsigned st = mutual(s, auth, mi, mc, o, why);
		if (st)
			return st;
	}
	s->state = SEC_DONE;
	return 0;
}

unsigned iscsi_sec_keys(struct iscsi_sec *s, const struct iscsi_sec_ctx *c,
			const struct iscsi_kvlist *kv, struct iscsi_out *o, const char **why)
{
	const char *am = iscsi_kv_get(kv, "AuthMethod"), *a = iscsi_kv_get(kv, "CHAP_A");
	unsigned st;

	if (am && (st = auth_method(s, c->auth, am, o, why)))
		return st;
	if (a && (st = challenge(s, c, a, o, why)))
		return st;
	if (iscsi_kv_get(kv, "CHAP_N") || iscsi_kv_get(kv, "CHAP_R") || iscsi_kv_get(kv, "CHAP_I") ||
	    iscsi_kv_get(kv, "CHAP_C"))
		return response(s, c, kv, o, why);
	return 0;
}

unsigned iscsi_sec_may_leave(const struct iscsi_sec *s, const struct kura_iscsi_target_auth *auth,
			     const char **why)
{
	switch (s->state) {
	case SEC_START:
		if (!auth->user[0])
			return 1; /* nothing to prove: the initiator need not even ask */
		*why = "the target requires CHAP and the initiator did not authenticate";
		return LST_AUTH_FAIL;
	case SEC_CHAP:
	case SEC_CHALLENGED:
		return 0; /* the exchange is under way: stay in the security stage */
	case SEC_NONE:
	case SEC_DONE:
		return 1;
	}
	return LST_TARGET_ERR;
}
