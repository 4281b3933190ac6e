/* The vdisk catalog: vdisks, layers, snapshots and jobs, as records behind one
 * interface so that the embedded node (RocksDB) and the cluster (etcd) keep
 * them the same way.
 *
 * A record is addressed by (kind, id) and holds a JSON text owned by the vdisk
 * layer (vdisk/catalog_rec.c); the catalog does not look inside. Kinds:
 *   'v' vdisk   'l' layer   'j' job   'n' id counters (id 0)
 *   'q' a vdisk's QoS settings (by vdisk id)
 *   'i', 'p' iSCSI target settings and persistent reservations
 *
 * Thread rule: kura_cat_open/close and kura_cat_load are called on the owner
 * loop's thread at start and stop (load blocks, unless kura_cat_prefetch read
 * the records first; close runs the loop until commits in flight end);
 * kura_cat_prefetch and kura_cat_commit are called on the owner loop's thread
 * and their callbacks run there, in submission order. Backends run their
 * blocking calls on the catalog's worker thread.
 *
 * Errors: 0 or -errno; a failed commit leaves the catalog as it was (the
 * transaction is atomic) and is logged by the backend.
 */
#ifndef KURA_METADATA_CATALOG_H
#define KURA_METADATA_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/loop.h"

struct kura_md;

struct kura_cat_rec {
	char kind;
	uint64_t id;
	char *val; /* NUL-terminated JSON; NULL in a transaction means delete */
};

/* A transaction: records to put or delete, applied all or nothing. */
struct kura_cat_txn {
	struct kura_cat_rec *recs;
	size_t n, cap;
	int err; /* -ENOMEM from an add, reported by commit */
};

void kura_cat_txn_init(struct kura_cat_txn *t);
/* Adds a put (val copied) or, with val NULL, a delete. */
void kura_cat_txn_add(struct kura_cat_txn *t, char kind, uint64_t id, const char *val);
void kura_cat_txn_free(struct kura_cat_txn *t);

/* A backend: a table of blocking operations. */
struct kura_cat_ops {
	const char *name;
	/* Calls fn for every record in (kind, id) order; fn's val is valid only
	 * during the call. A non-zero return from fn stops and is returned. */
	int (*load)(void *be, int (*fn)(void *arg, const struct kura_cat_rec *r), void *arg);
	/* Applies t atomically; returns once it is durable. */
	int (*commit)(void *be, const struct kura_cat_txn *t);
	void (*close)(void *be);
};

/* The embedded backend: records in the node's RocksDB under key space 'V'. */
int kura_cat_rocks_create(struct kura_md *md, const struct kura_cat_ops **ops, void **be);

/* The cluster backend: records in etcd under prefix (e.g. "/kura/<cluster id>/cat/"),
 * key = prefix + kind + '/' + id as 16 lowercase hex digits, value = the JSON text.
 * Every commit is one etcd transaction; when fence_key is not NULL the transaction
 * applies only while fence_key's mod revision is still fence_rev (the caller holds
 * that key, e.g. the right to change the catalog), else commit returns -ESTALE and
 * nothing is applied. Each transaction also puts the key prefix + "txn" to a value
 * of its own, so that a commit whose answer was lost (-ETIMEDOUT, -EHOSTUNREACH)
 * can read whether it was applied; it reads, and sends again what was not applied,
 * for up to about 10 s before it returns the error. This assumes that only this
 * backend writes under prefix (the fence, or the caller, sees to that).
 *
 * The backend opens its own etcd client (endpoints as kura_etcd_open() takes them,
 * 2 s per request) and ops->close closes it; load and commit run one at a time.
 * Load reads every record at one etcd revision in one answer (up to 64 MiB); it
 * skips, with a warning, keys under prefix that are not record keys and values
 * holding a NUL byte. Within one transaction the later record of two with the same
 * kind and id wins. Commit errors besides the client's (metadata/etcd.h):
 *   -E2BIG    more than 127 records (etcd takes 128 ops, the marker is one)
 *   -ESTALE   the fence key moved: the caller no longer holds it
 *   -EINVAL   a record of kind '\0'
 * Create returns -EINVAL for an empty prefix or fence key or fence_rev < 1, or
 * what kura_etcd_open() returns; err then says why in one line. */
int kura_cat_etcd_create(const char *endpoints, const char *prefix, const char *fence_key,
			 int64_t fence_rev, const struct kura_cat_ops **ops, void **be,
			 char *err, size_t errlen);

struct kura_cat;

int kura_cat_open(struct kura_loop *loop, const struct kura_cat_ops *ops, void *be,
		  struct kura_cat **out);
/* Waits for every commit in flight, then closes the backend. */
void kura_cat_close(struct kura_cat *c);
int kura_cat_load(struct kura_cat *c, int (*fn)(void *arg, const struct kura_cat_rec *r),
		  void *arg);
/* Reads every record on the worker thread (a node taking over the cluster's
 * vdisks must not stall its event loop on etcd) and keeps them; cb(arg, err)
 * runs on the loop once they are read or the read failed. Until the next
 * commit, kura_cat_load serves these records without calling the backend.
 * Returns -ENOMEM (and cb will not run) when the request cannot be allocated. */
int kura_cat_prefetch(struct kura_cat *c, void (*cb)(void *arg, int err), void *arg);
/* Takes t (and frees it); cb(arg, err) runs on the loop once the
 * transaction is durable or has failed. Returns -ENOMEM (and cb will not
 * run) when the request itself cannot be allocated. */
int kura_cat_commit(struct kura_cat *c, struct kura_cat_txn *t, void (*cb)(void *arg, int err),
		    void *arg);
/* Blocking commit, for start-up and tests. */
int kura_cat_commit_sync(struct kura_cat *c, struct kura_cat_txn *t);

#endif
