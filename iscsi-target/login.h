/* iSCSI login (RFC 7143 sections 6, 12, 13 and 11.12/11.13): text keys,
 * security negotiation (CHAP one-way and mutual, with MD5 and SHA-256),
 * operational negotiation, and the Text Request exchanges of the full
 * feature phase (SendTargets, renegotiation).
 *
 * A struct kura_iscsi_login lives while one connection logs in. The
 * connection code hands it each Login Request (header and data segment,
 * already framed and digest-checked) and sends the response it builds. It
 * neither reads sockets nor knows about sessions: target lookup, ACLs and
 * the list of targets come through the ops table.
 *
 * Thread rule: pure state machine; the caller's thread. No blocking calls.
 * Errors: 0 or -errno from functions; login outcomes are Login Response
 * status classes in the response.
 */
#ifndef KURA_ISCSI_LOGIN_H
#define KURA_ISCSI_LOGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KURA_ISCSI_NAME_MAX 223 /* RFC 7143: iSCSI names are at most 223 bytes */
#define KURA_ISCSI_CHAP_MAX 256 /* user and secret lengths */
#define KURA_ISCSI_TEXT_MAX 65536 /* a text negotiation's whole key set (across C-bit PDUs) */

/* Negotiated values (RFC 7143 section 13). Defaults before negotiation are
 * the RFC's; "ours" are what kura offers. */
struct kura_iscsi_params {
	uint32_t max_recv_dsl;     /* ours: what we accept per PDU (we declare 256 KiB) */
	uint32_t max_xmit_dsl;     /* the initiator's MaxRecvDataSegmentLength: what we may send */
	uint32_t max_burst;        /* MaxBurstLength (min of both) */
	uint32_t first_burst;      /* FirstBurstLength (min of both) */
	uint32_t max_outstanding_r2t;
	uint32_t max_connections;  /* we offer 1 */
	uint32_t default_time2wait, default_time2retain;
	uint32_t erl;              /* ErrorRecoveryLevel: 0 */
	bool initial_r2t;          /* OR */
	bool immediate_data;       /* AND */
	bool data_pdu_in_order, data_seq_in_order; /* OR; we want Yes */
	bool header_digest, data_digest; /* CRC32C when both sides offer it */
};

/* Defaults of RFC 7143 (before any key is exchanged) with our MaxRecvDSL. */
void kura_iscsi_params_default(struct kura_iscsi_params *p);

/* What the portal knows about one target, for one initiator. */
struct kura_iscsi_target_auth {
	/* CHAP: empty user means no CHAP required. Mutual: the target's own
	 * credentials, used when the initiator asks to authenticate us. */
	char user[KURA_ISCSI_CHAP_MAX + 1], secret[KURA_ISCSI_CHAP_MAX + 1];
	char muser[KURA_ISCSI_CHAP_MAX + 1], msecret[KURA_ISCSI_CHAP_MAX + 1];
};

struct kura_iscsi_login_ops {
	/* Target lookup for a normal session: 0 with *auth filled when the
	 * target exists and iname may log in to it; -ENOENT unknown target
	 * (Login status 02/03 NOT FOUND); -EACCES initiator not on its ACL
	 * (02/02 NOT AUTHORIZED); -EAGAIN target busy or not ready (03/01).
	 * Called once, when TargetName arrives. */
	int (*target)(void *ctx, const char *tname, const char *iname,
		      struct kura_iscsi_target_auth *auth);
	/* SendTargets: appends "TargetName=..." and "TargetAddress=..." pairs
	 * (each NUL-terminated, as on the wire) for every target iname may see,
	 * or for the one named by `which` ("All", "" for the session's own
	 * target, or a target name). Returns bytes written, or -ENOSPC when cap
	 * is too small. */
	int (*send_targets)(void *ctx, const char *iname, const char *which, const char *own_target,
			    char *buf, size_t cap);
	/* One line for the log: a refused login (wrong CHAP, not on ACL). */
	void (*log_refusal)(void *ctx, const char *iname, const char *tname, const char *why);
	/* Random bytes for CHAP challenges and identifiers. */
	void (*random)(void *ctx, void *buf, size_t len);
};

enum kura_iscsi_session_type { KURA_ISCSI_DISCOVERY = 1, KURA_ISCSI_NORMAL = 2 };

struct kura_iscsi_login;

int kura_iscsi_login_create(const struct kura_iscsi_login_ops *ops, void *ctx,
			    struct kura_iscsi_login **out);
void kura_iscsi_login_free(struct kura_iscsi_login *l);

/* Processes one Login Request (bhs: 48 bytes; data: its data segment,
 * dlen bytes, without padding) and builds the Login Response: rsp (48 bytes)
 * with every field except StatSN, ExpCmdSN, MaxCmdSN and TSIH, which the
 * caller fills; *rsp_data (malloc'd, caller frees) holds its data segment.
 * Partial key sets across PDUs with the C bit are gathered (Login Response
 * with empty data until the last). Returns:
 *   0  more login PDUs expected;
 *   1  login complete: the response moves to full feature phase; the
 *      results below are final;
 *  < 0 login failed (-EACCES authentication or authorization, -ENOENT no
 *      such target, -EAGAIN target not ready, -EIO target error, -ENOMEM,
 *      -EPROTO anything else): rsp carries the status class and detail to send, with no
 *      data; then close the connection. Every failure is logged once
 *      through ops->log_refusal. */
int kura_iscsi_login_step(struct kura_iscsi_login *l, const uint8_t *bhs, const uint8_t *data,
			  uint32_t dlen, uint8_t *rsp, uint8_t **rsp_data, uint32_t *rsp_dlen);

/* Results, valid once login_step has seen the first PDU (ISID, TSIH, CID
 * come from it) or returned 1 (the rest). */
struct kura_iscsi_login_result {
	enum kura_iscsi_session_type type;
	char iname[KURA_ISCSI_NAME_MAX + 1];
	char tname[KURA_ISCSI_NAME_MAX + 1]; /* empty for discovery */
	char ialias[256];
	uint8_t isid[6];
	uint16_t tsih;                  /* as the initiator sent it: 0 = new session */
	uint16_t cid;
	uint32_t cmdsn;                 /* CmdSN of the first request: the session's ExpCmdSN */
	uint32_t expstatsn;
	struct kura_iscsi_params params; /* as negotiated */
};
const struct kura_iscsi_login_result *kura_iscsi_login_result(const struct kura_iscsi_login *l);

/* Full feature phase Text Request (11.10): gathers C-bit continuations,
 * answers SendTargets (discovery sessions and normal sessions alike) and
 * renegotiable keys (MaxRecvDataSegmentLength; others are Irrelevant or
 * Reject per RFC), NotUnderstood for unknown keys. Same return and response
 * rules as login_step (0 = send rsp, more may come; < 0 = send rsp, close;
 * only -ENOMEM closes). A request that cannot be taken (a TTT we never
 * issued, text that is malformed, too long or repeats a key) makes rsp a
 * Reject PDU (opcode 0x3f, reason Invalid PDU field or Protocol Error, the
 * rejected header as its data) and returns 0: the connection stays.
 * params is updated in place. The caller fills StatSN, ExpCmdSN, MaxCmdSN;
 * TTT handling for continued responses is done here. */
struct kura_iscsi_text;
int kura_iscsi_text_create(const struct kura_iscsi_login_ops *ops, void *ctx,
			   const char *iname, const char *own_target,
			   struct kura_iscsi_text **out);
void kura_iscsi_text_free(struct kura_iscsi_text *t);
int kura_iscsi_text_step(struct kura_iscsi_text *t, struct kura_iscsi_params *params,
			 const uint8_t *bhs, const uint8_t *data, uint32_t dlen, uint8_t *rsp,
			 uint8_t **rsp_data, uint32_t *rsp_dlen);

/* Text keys (exposed for tests and the fuzz target): splits a data segment
 * into key=value pairs. Each pair is NUL-terminated; a segment that does not
 * end in NUL, a pair without '=', a key that is empty, over 63 bytes or holds
 * a character other than letters, digits and . - + @ _ #, or a value over 255
 * bytes (8192 for CHAP_C and CHAP_R) is -EINVAL (RFC 7143 6.1). Empty
 * entries (padding NULs) are skipped. fn is called per pair; a non-zero
 * return stops the walk and is returned. */
int kura_iscsi_text_parse(const uint8_t *data, uint32_t dlen,
			  int (*fn)(void *arg, const char *key, const char *val), void *arg);

/* CHAP primitives (exposed for tests): response = H(id || secret || challenge)
 * with H MD5 (CHAP_A=5, 16 bytes) or SHA-256 (CHAP_A=7, 32 bytes). Returns
 * the digest length, or -EINVAL for another algorithm. */
int kura_iscsi_chap_response(int alg, uint8_t id, const uint8_t *secret, size_t slen,
			     const uint8_t *chal, size_t clen, uint8_t *out);

#endif
