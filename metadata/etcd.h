/* A client of etcd's v3 JSON gateway (etcd 3.4: POST /v3/kv/..., /v3/lease/...,
 * /v3/watch), over libcurl.
 *
 * What it is for: cluster membership (leases), the cluster map, the catalog.
 * etcd is never on the data path.
 *
 * Thread rule: every call blocks on the network and must run on a worker or
 * agent thread, never on a loop thread. One struct kura_etcd is used by one
 * thread at a time; threads that talk to etcd at once each open their own
 * (one curl handle, under a kilobyte, and up to 64 KiB of answer buffer kept
 * between calls).
 *
 * Endpoints: a comma-separated list of http://HOST:PORT URLs (a slash after
 * the port is allowed, nothing else). A call goes to the endpoint that
 * answered last and, when that one does not answer (or answers that it
 * cannot serve now, e.g. without a leader), to the others in list order.
 * A transaction is the exception: once it may have reached a member it is
 * not sent again (see -ETIMEDOUT). etcd's gateway carries keys and values in
 * base64; this client hides that: keys are C strings, values are bytes with a
 * length (and a NUL after them, for JSON texts). Revisions and lease ids are
 * etcd's signed 64-bit numbers (the gateway sends them as strings; absent
 * means 0).
 *
 * Errors: 0 or -errno:
 *   -EHOSTUNREACH  no endpoint answered (connection refused, reset, timeout)
 *   -ETIMEDOUT     kura_etcd_txn() only: the member it went to stopped answering
 *                  after the request may have reached it, so it may or may not
 *                  have been applied: read the keys to find out
 *   -EPROTO        an answer that is not what etcd sends (logged with the
 *                  reason), including one longer than 64 MiB (answers are
 *                  buffered whole, and no further) and a key holding a NUL byte
 *   -ENOENT        get of a missing key; keepalive of an expired lease; a put
 *                  with a lease etcd does not have
 *   -ECANCELED     watch: etcd cancelled the watch (compacted revision): list again
 *   -EINVAL        bad arguments, bad endpoint URL, or etcd refused the
 *                  request as invalid (logged with etcd's message, e.g. two
 *                  ops on one key, more than --max-txn-ops (128) ops, a
 *                  request over --max-request-bytes (1.5 MiB))
 *   -EIO           etcd refused the request for another reason (logged with
 *                  etcd's message: out of space, a request over the gateway's
 *                  2 MiB, permission denied, ...)
 *   -ENOMEM
 * Every field of every answer is checked before use (types, base64, numbers).
 */
#ifndef KURA_METADATA_ETCD_H
#define KURA_METADATA_ETCD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct kura_etcd;

struct kura_etcd_kv {
	char *key;      /* NUL-terminated */
	char *val;      /* val_len bytes and a NUL; "" for a delete event */
	size_t val_len;
	int64_t create_rev, mod_rev, version, lease;
};

/* Parses the endpoint list; timeout_ms bounds each request to one endpoint,
 * connection included (0: 2000 ms), so a call with every endpoint silent
 * takes up to n times that. Does not connect: kura_etcd_status() does. On
 * error errbuf says why in one line. */
int kura_etcd_open(const char *endpoints, unsigned timeout_ms, struct kura_etcd **out,
		   char *errbuf, size_t errlen);
void kura_etcd_close(struct kura_etcd *e);
/* The endpoint list as given (for messages). */
const char *kura_etcd_endpoints(const struct kura_etcd *e);

/* Asks an endpoint for the cluster's status: its current revision and the
 * cluster id etcd reports (optional outputs may be NULL). */
int kura_etcd_status(struct kura_etcd *e, int64_t *revision, uint64_t *cluster_id);

/* One key. -ENOENT when absent. Free with kura_etcd_kv_free(). */
int kura_etcd_get(struct kura_etcd *e, const char *key, struct kura_etcd_kv *out);
void kura_etcd_kv_free(struct kura_etcd_kv *kv);

/* A key's mod revision only (no value travels): -ENOENT when absent. For
 * polling a large value cheaply. */
int kura_etcd_get_rev(struct kura_etcd *e, const char *key, int64_t *mod_rev);

/* Every key starting with prefix ("" for every key), in key order, read at
 * one revision (*rev, optional) by one request, so the whole answer must fit
 * in 64 MiB. *kvs is NULL when there are none. Free with kura_etcd_kvs_free(). */
int kura_etcd_list(struct kura_etcd *e, const char *prefix, struct kura_etcd_kv **kvs,
		   size_t *n, int64_t *rev);
void kura_etcd_kvs_free(struct kura_etcd_kv *kvs, size_t n);

/* Unconditional put (lease 0: none) and delete (a missing key is not an error). */
int kura_etcd_put(struct kura_etcd *e, const char *key, const void *val, size_t len,
		  int64_t lease);
int kura_etcd_delete(struct kura_etcd *e, const char *key);

/* A transaction: when every comparison holds (a key's mod revision equals
 * mod_rev; mod_rev 0 means the key must not exist), apply every op (a put,
 * or with val NULL a delete) atomically and set *ok = 1; otherwise apply
 * nothing and set *ok = 0. *rev (optional) is the revision after the call. */
struct kura_etcd_cmp {
	const char *key;
	int64_t mod_rev;
};
struct kura_etcd_op {
	const char *key;
	const void *val; /* NULL: delete */
	size_t len;
	int64_t lease;
};
int kura_etcd_txn(struct kura_etcd *e, const struct kura_etcd_cmp *cmp, size_t ncmp,
		  const struct kura_etcd_op *ops, size_t nops, int *ok, int64_t *rev);

/* Leases: grant one of ttl_s seconds (etcd may grant more); keep it alive
 * (*ttl_left, optional: seconds etcd says remain; -ENOENT when it has
 * expired); revoke it (its keys go; a lease etcd no longer has, expired or
 * revoked before, is not an error, its keys being gone either way). */
int kura_etcd_lease_grant(struct kura_etcd *e, unsigned ttl_s, int64_t *id);
int kura_etcd_lease_keepalive(struct kura_etcd *e, int64_t id, int64_t *ttl_left);
int kura_etcd_lease_revoke(struct kura_etcd *e, int64_t id);

/* Watches keys starting with prefix from revision start_rev (events after a
 * kura_etcd_list() at rev: start_rev = rev + 1). Blocks, calling fn for each
 * event in revision order, until:
 *   fn returns non-zero           -> returns that value
 *   *stop becomes non-zero        -> returns 0 (checked at least every 250 ms)
 *   the stream breaks or etcd cancels the watch -> -errno (-ECANCELED when the
 *                                    revision was compacted: list again;
 *                                    -EHOSTUNREACH when the stream broke:
 *                                    watch again from the last mod_rev seen + 1)
 * The first endpoint that confirms the watch within the timeout serves it.
 * A delete event has val "", create_rev and version 0, and as mod_rev the
 * revision of the delete. One message may hold up to 64 MiB of events; a
 * member that vanishes without closing the stream is noticed by TCP
 * keepalives, in about half a minute. fn runs on the calling thread and must
 * not use e (which is in the middle of the stream); kv is valid during the
 * call only. */
enum kura_etcd_event { KURA_ETCD_PUT = 0, KURA_ETCD_DELETE = 1 };
typedef int (*kura_etcd_watch_fn)(void *arg, enum kura_etcd_event ev,
				  const struct kura_etcd_kv *kv);
int kura_etcd_watch(struct kura_etcd *e, const char *prefix, int64_t start_rev,
		    kura_etcd_watch_fn fn, void *arg, const atomic_int *stop);

#endif
