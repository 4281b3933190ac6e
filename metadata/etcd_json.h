/* The JSON side of the etcd client (etcd.h): requests in, answers out. Used
 * by metadata/etcd.c only.
 *
 * Thread rule: pure functions, any thread.
 *
 * Decoders check every field they read and return 0 or -EPROTO; on -EPROTO
 * they have logged one WARN line naming `where` (the URL that answered), the
 * field and what is wrong with it. Fields etcd leaves out because they hold
 * their default value decode as 0, false or "". Unknown fields are ignored,
 * so a newer etcd that adds fields still works.
 */
#ifndef KURA_METADATA_ETCD_JSON_H
#define KURA_METADATA_ETCD_JSON_H

#include "common/json.h"
#include "metadata/etcd.h"

/* The most bytes one answer (one watch message) may have; a longer one is
 * refused with -EPROTO rather than buffered. */
#define KURA_ETCD_MAX_ANSWER (64u << 20)

/* Requests: each initialises w and writes the whole request into it; an
 * allocation failure is left for kura_jw_finish() to report. Keys are
 * non-empty C strings, checked by the caller. */
void kura_etcd_req_empty(struct kura_jw *w); /* {} */
/* {"key"} for one key, or {"key", "range_end"} for every key under a prefix */
/* A range of one key or a prefix; keys_only: revisions without values. */
void kura_etcd_req_key(struct kura_jw *w, const char *key, int prefix, int keys_only);
/* {"name": v} */
void kura_etcd_req_int(struct kura_jw *w, const char *name, int64_t v);
void kura_etcd_req_put(struct kura_jw *w, const char *key, const void *val, size_t len,
		       int64_t lease);
/* comparisons on mod revisions; ops as the success branch, none for failure */
void kura_etcd_req_txn(struct kura_jw *w, const struct kura_etcd_cmp *cmp, size_t ncmp,
		       const struct kura_etcd_op *ops, size_t nops);
/* {"create_request": ...} for every key under prefix, from start_rev (0: now) */
void kura_etcd_req_watch(struct kura_jw *w, const char *prefix, int64_t start_rev);

/* Typed members: a signed 64-bit integer sent as a decimal string, one that
 * must also be >= 0 (revisions, versions, lease ids), an unsigned one, a
 * boolean. Absent: 0. */
int kura_etcd_j_i64(const struct kura_json *o, const char *name, int64_t *out,
		    const char *where);
int kura_etcd_j_rev(const struct kura_json *o, const char *name, int64_t *out,
		    const char *where);
int kura_etcd_j_u64(const struct kura_json *o, const char *name, uint64_t *out,
		    const char *where);
int kura_etcd_j_bool(const struct kura_json *o, const char *name, int *out, const char *where);

/* The "header" every answer carries: the revision the answer was read at and
 * the cluster id (outputs may be NULL). */
int kura_etcd_j_header(const struct kura_json *ans, int64_t *rev, uint64_t *cluster_id,
		       const char *where);

/* A range answer: for a get (exact) at most one kv whose key is prefix; for a
 * list, kvs whose keys start with prefix, strictly ascending. *kvs is NULL
 * when there are none; free with kura_etcd_kvs_free(). */
int kura_etcd_j_range(const struct kura_json *ans, const char *prefix, int exact,
		      struct kura_etcd_kv **kvs, size_t *n, int64_t *rev, const char *where);

/* The answers of maintenance/status (problems the member reports are
 * logged); of lease/grant (kept 0: a new lease, with a positive TTL) and
 * lease/keepalive (kept: the lease asked for, its answer inside "result");
 * and of a transaction made of ops (ok: whether its comparisons held). */
int kura_etcd_j_status(const struct kura_json *ans, int64_t *rev, uint64_t *cluster_id,
		       const char *where);
int kura_etcd_j_lease(const struct kura_json *ans, int64_t kept, int64_t *id, int64_t *ttl,
		      const char *where);
int kura_etcd_j_txn(const struct kura_json *ans, const struct kura_etcd_op *ops, size_t nops,
		    int *ok, int64_t *rev, const char *where);

/* One watch message ({"result": {...}}) taken apart; events stays inside msg. */
struct kura_etcd_wmsg {
	int created, canceled;
	int64_t compact_rev;
	const char *cancel_reason; /* "" when absent */
	const struct kura_json *events; /* NULL when absent */
	size_t nevents;
};
int kura_etcd_j_wmsg(const struct kura_json *msg, struct kura_etcd_wmsg *m, const char *where);
/* Event i of a watch message; free kv with kura_etcd_kv_free(). */
int kura_etcd_j_event(const struct kura_etcd_wmsg *m, size_t i, enum kura_etcd_event *ev,
		      struct kura_etcd_kv *kv, const char *where);

/* An answer (or one message of a stream) and its HTTP status: 0 and *out
 * (to free) when it is a JSON object that is not an error; otherwise -EPROTO
 * or -ENOMEM, or what etcd's error means (below). */
int kura_etcd_j_answer(const char *text, size_t len, long http_status, struct kura_json **out,
		       const char *where);

/* An error etcd answered with, in either of the gateway's two shapes
 * ({"error": text, "code": n} for calls, {"error": {"grpc_code": n, ...}}
 * inside streams), as -errno: -EINVAL (etcd refused the arguments, logged),
 * -ENOENT (not found), -EAGAIN (this member cannot serve now: try another),
 * -EIO (any other refusal, logged), -EPROTO (not an error etcd sends). */
int kura_etcd_j_error(const struct kura_json *ans, long http_status, const char *where);

#endif
