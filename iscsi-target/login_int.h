/* What login.c, text.c and chap.c share and nobody else needs: text key
 * splitting, value parsers, the answer buffer, operational key negotiation
 * and the security stage. See login.h for the public contract.
 *
 * Thread rule: pure functions on the caller's objects, any thread.
 * Errors: 0 or -errno; login outcomes as status codes (class << 8 | detail).
 */
#ifndef KURA_ISCSI_LOGIN_INT_H
#define KURA_ISCSI_LOGIN_INT_H

#include "iscsi-target/login.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 7143 section 6.1: key names, ordinary values, and the large binary
 * values of CHAP_C and CHAP_R. */
#define ISCSI_KEY_MAX 63u
#define ISCSI_VALUE_MAX 255u
#define ISCSI_LARGE_VALUE_MAX 8192u
/* More keys than any initiator sends in one request (libiscsi sends 20):
 * the bound keeps duplicate detection quadratic in a small number. */
#define ISCSI_PAIRS_MAX 256u

/* What kura declares and accepts. */
#define ISCSI_OUR_MAX_RECV_DSL 262144u
#define ISCSI_OUR_MAX_BURST 16777215u /* "16 MiB": the largest value the key takes */
/* Unsolicited data is buffered before any R2T throttles it: 128 commands in
 * the window times this is what one session may make us hold. */
#define ISCSI_OUR_FIRST_BURST 262144u
#define ISCSI_OUR_MAX_R2T 16u
#define ISCSI_OUR_PROTOCOL_LEVEL 1u /* RFC 7143; RFC 7144 features are not offered */
#define ISCSI_LOGIN_DSL 8192u       /* what both sides accept per PDU while logging in */

/* Login status classes and details (RFC 7143 section 11.13.5). */
#define LST_INIT_ERR 0x0200
#define LST_AUTH_FAIL 0x0201
#define LST_FORBIDDEN 0x0202
#define LST_NOT_FOUND 0x0203
#define LST_BAD_VERSION 0x0205
#define LST_MISSING 0x0207
#define LST_BAD_TYPE 0x0209
#define LST_INVALID_DURING_LOGIN 0x020b
#define LST_TARGET_ERR 0x0300
#define LST_UNAVAILABLE 0x0301
#define LST_NO_RESOURCES 0x0302

/* ---- text ---- */

struct iscsi_kv {
	const char *key, *val;
};

struct iscsi_kvlist {
	unsigned n;
	struct iscsi_kv v[ISCSI_PAIRS_MAX];
};

/* Splits buf[0..len) in place (each '=' becomes a NUL) into kv, with the
 * rules of kura_iscsi_text_parse. Returns 0, -EINVAL (malformed), -EEXIST
 * (a key twice; *dup names it) or -E2BIG (more than ISCSI_PAIRS_MAX). */
int iscsi_text_split(char *buf, uint32_t len, struct iscsi_kvlist *kv, const char **dup);
const char *iscsi_kv_get(const struct iscsi_kvlist *kv, const char *key);

/* Values (section 6.1). Numbers: decimal or 0x hex, within [lo, hi].
 * Binary: 0x hex (an odd digit count has an implied leading zero) or 0b
 * base64, at most cap bytes. */
int iscsi_parse_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
int iscsi_parse_bool(const char *s, bool *out);
int iscsi_parse_bin(const char *s, uint8_t *out, size_t cap, size_t *len);
/* Whether the comma-separated list holds item exactly. */
bool iscsi_list_has(const char *list, const char *item);

/* The answer being built: NUL-terminated key=value pairs. A pair that does
 * not fit sets overflow and is dropped. */
struct iscsi_out {
	char *buf;
	size_t len, cap;
	bool overflow;
};

void iscsi_put(struct iscsi_out *o, const char *key, const char *val);
void iscsi_put_num(struct iscsi_out *o, const char *key, uint64_t v);
/* key=0x<hex of b> */
void iscsi_put_hex(struct iscsi_out *o, const char *key, const uint8_t *b, size_t n);

/* ---- operational keys (section 13 and RFC 7144) ---- */

struct iscsi_neg {
	struct kura_iscsi_params *p;
	bool in_login;   /* false: a Text Request in full feature phase */
	bool leading;    /* login of a new session (TSIH 0) */
	bool discovery;
	bool fbl_pending; /* FirstBurstLength waits for the keys it depends on */
	uint64_t fbl;
	bool fbl_bad;
};

/* Negotiates one operational key into o. Returns 0 when k is one, -ENOENT
 * when it is not (the caller decides: its own keys, or NotUnderstood). */
int iscsi_op_key(struct iscsi_neg *n, const char *k, const char *v, struct iscsi_out *o);
/* Answers what had to wait for the whole request (FirstBurstLength). */
void iscsi_op_finish(struct iscsi_neg *n, struct iscsi_out *o);

/* ---- security stage (chap.c) ---- */

#define ISCSI_CHAP_CHAL_LEN 32u

enum iscsi_sec_state {
	SEC_START,      /* nothing agreed */
	SEC_NONE,       /* AuthMethod=None agreed */
	SEC_CHAP,       /* AuthMethod=CHAP agreed, CHAP_A awaited */
	SEC_CHALLENGED, /* our challenge sent, CHAP_N/CHAP_R awaited */
	SEC_DONE,       /* the initiator proved itself (and we did, if asked) */
};

struct iscsi_sec {
	enum iscsi_sec_state state;
	int alg;
	uint8_t id;
	uint8_t chal[ISCSI_CHAP_CHAL_LEN];
};

struct iscsi_sec_ctx {
	const struct kura_iscsi_login_ops *ops;
	void *ctx;
	const struct kura_iscsi_target_auth *auth;
};

/* The security keys of one request (AuthMethod, CHAP_*), answers into o.
 * Returns 0 or a login status, with *why for the log. */
unsigned iscsi_sec_keys(struct iscsi_sec *s, const struct iscsi_sec_ctx *c,
			const struct iscsi_kvlist *kv, struct iscsi_out *o, const char **why);
/* Whether the security stage may end now: 1 yes, 0 not yet (the exchange
 * is under way), or a login status when it never can. */
unsigned iscsi_sec_may_leave(const struct iscsi_sec *s, const struct kura_iscsi_target_auth *auth,
			     const char **why);
bool iscsi_sec_key(const char *k);

#endif
