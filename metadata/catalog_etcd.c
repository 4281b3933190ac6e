/* The cluster catalog backend: records in etcd, prefix + kind + '/' + id as
 * 16 lowercase hex digits -> JSON text, one etcd transaction per commit.
 *
 * The fixed-width hex id makes etcd's key order (bytes) the catalog's
 * (kind, id) order: a kind is one byte, '/' follows it in every record key,
 * and '0'-'9' sort below 'a'-'f', so the keys of one kind sort by id.
 *
 * Every transaction also puts a marker (prefix + "txn") holding a value no
 * other commit uses. When the answer to a transaction is lost the marker
 * tells whether it was applied: etcd applies a transaction whole, marker
 * included. This assumes one writer under the prefix at a time, which the
 * fence key (or the caller) ensures. */
#include "metadata/catalog.h"
#include "metadata/etcd.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define ETCD_TIMEOUT_MS 2000
/* etcd's --max-txn-ops default: a larger transaction is refused */
#define MAX_TXN_OPS 128
#define MARKER "txn"
#define ID_DIGITS 16
/* kind, '/', id */
#define REC_SUFFIX_LEN (2 + ID_DIGITS)
/* how long a commit whose outcome is unknown keeps trying to settle it */
#define RESOLVE_NS (10 * 1000000000ull)
#define RETRY_SLEEP_NS (200 * 1000000l)

struct etcd_cat {
	struct kura_etcd *e;
	char *prefix;
	size_t plen;
	char *marker_key;
	char *fence_key; /* NULL: no fence */
	int64_t fence_rev;
	/* the marker is nonce-commits: the nonce tells this backend's markers
	 * from those of an earlier run, the count one commit from the next */
	uint64_t nonce;
	uint64_t commits;
};

/* ---- keys ---- */

static int hex_digit(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

/* Parses the part of a key after the prefix; 0 or -EINVAL. */
static int parse_rec_key(const char *s, struct kura_cat_rec *r)
{
	if (strlen(s) != REC_SUFFIX_LEN || s[1] != '/')
		return -EINVAL;
	for (int i = 0; i < ID_DIGITS; i++)
		if (!hex_digit(s[2 + i]))
			return -EINVAL;
	r->kind = s[0];
	r->id = strtoull(s + 2, NULL, 16);
	return 0;
}

static void format_rec_key(const struct etcd_cat *b, char *key, char kind, uint64_t id)
{
	snprintf(key, b->plen + REC_SUFFIX_LEN + 1, "%s%c/%016" PRIx64, b->prefix, kind, id);
}

/* ---- load ---- */

/* Whether kv is a record; a key that is neither a record nor the marker was
 * written by someone else and is worth a line in the log. */
static int load_rec(const struct etcd_cat *b, const struct kura_etcd_kv *kv,
		    struct kura_cat_rec *r)
{
	const char *rest = kv->key + b->plen;

	if (!strcmp(rest, MARKER))
		return 0;
	if (parse_rec_key(rest, r)) {
		kura_log(WARN, "catalog: skipping key %s under %s: not a record key", kv->key,
			 b->prefix);
		return 0;
	}
	/* the catalog's values are C strings */
	if (memchr(kv->val, '\0', kv->val_len)) {
		kura_log(WARN, "catalog: skipping record %s: its value holds a NUL byte", kv->key);
		return 0;
	}
	r->val = kv->val;
	return 1;
}

static int etcd_load(void *be, int (*fn)(void *arg, const struct kura_cat_rec *r), void *arg)
{
	struct etcd_cat *b = be;
	struct kura_etcd_kv *kvs;
	struct kura_cat_rec r;
	size_t n;
	int err;

	err = kura_etcd_list(b->e, b->prefix, &kvs, &n, NULL);
	if (err) {
		kura_log(ERR, "catalog: cannot list %s in etcd %s: %s", b->prefix,
			 kura_etcd_endpoints(b->e), strerror(-err));
		return err;
	}
	for (size_t i = 0; i < n && !err; i++)
		if (load_rec(b, &kvs[i], &r))
			err = fn(arg, &r);
	kura_etcd_kvs_free(kvs, n);
	return err;
}

/* ---- commit ---- */

/* Whether a later record of t has the same key as record i: etcd refuses
 * two ops on one key, and the later one is what a write batch would keep. */
static int overwritten_later(const struct kura_cat_txn *t, size_t i)
{
	for (size_t j = i + 1; j < t->n; j++)
		if (t->recs[j].kind == t->recs[i].kind && t->recs[j].id == t->recs[i].id)
			return 1;
	return 0;
}

/* Fills ops (t->n + 1 entries) with t's records, keyed in keys (t->n keys of
 * plen + REC_SUFFIX_LEN + 1 bytes), then the marker; *nops is how many. */
static int build_ops(const struct etcd_cat *b, const struct kura_cat_txn *t,
		     struct kura_etcd_op *ops, char *keys, const char *marker, size_t *nops)
{
	size_t n = 0, klen = b->plen + REC_SUFFIX_LEN + 1;

	for (size_t i = 0; i < t->n; i++) {
		const struct kura_cat_rec *r = &t->recs[i];
		if (r->kind == '\0') {
			kura_log(ERR, "catalog commit: record %" PRIu64 " has kind NUL", r->id);
			return -EINVAL;
		}
		if (overwritten_later(t, i))
			continue;
		format_rec_key(b, keys + n * klen, r->kind, r->id);
		ops[n] = (struct kura_etcd_op){ keys + n * klen, r->val,
						r->val ? strlen(r->val) : 0, 0 };
		n++;
	}
	ops[n++] = (struct kura_etcd_op){ b->marker_key, marker, strlen(marker), 0 };
	*nops = n;
	return 0;
}

/* One attempt: 0, -ESTALE when the fence moved, or the client's error. */
static int send_txn(const struct etcd_cat *b, const struct kura_etcd_op *ops, size_t nops)
{
	struct kura_etcd_cmp fence = { b->fence_key, b->fence_rev };
	int ok = 0, err;

	err = kura_etcd_txn(b->e, &fence, b->fence_key ? 1 : 0, ops, nops, &ok, NULL);
	if (!err && !ok)
		err = -ESTALE;
	return err;
}

static void nap(void)
{
	struct timespec ts = { 0, RETRY_SLEEP_NS };

	nanosleep(&ts, NULL);
}

/* Whether the transaction that wrote marker was applied: 1 yes, 0 no, or the
 * last error when etcd could not be read before the deadline. Each read
 * waits a little first, so that a request still on its way through etcd
 * has landed before we decide it never will. */
static int marker_applied(const struct etcd_cat *b, const char *marker, uint64_t deadline)
{
	struct kura_etcd_kv kv;
	int err, same;

	for (;;) {
		nap();
		err = kura_etcd_get(b->e, b->marker_key, &kv);
		if (err == -ENOENT)
			return 0;
		if (!err) {
			same = kv.val_len == strlen(marker) && !memcmp(kv.val, marker, kv.val_len);
			kura_etcd_kv_free(&kv);
			return same;
		}
		if (kura_now_ns() >= deadline)
			return err;
	}
}

/* Sends the transaction until etcd says whether it applied it. When an
 * answer is lost the marker settles it; a transaction found not applied is
 * sent again, which is safe: if the first copy still lands, both copies
 * carry the same records and marker. For the same reason a fence refusal
 * after a lost answer is checked against the marker: the first copy may
 * have been applied before the fence moved. */
static int send_resolved(const struct etcd_cat *b, const struct kura_etcd_op *ops, size_t nops,
			 const char *marker)
{
	uint64_t deadline = kura_now_ns() + RESOLVE_NS;
	int err, applied, unsure = 0;

	for (;;) {
		err = send_txn(b, ops, nops);
		if (err == -ESTALE && unsure && marker_applied(b, marker, deadline) == 1)
			return 0;
		if (err != -ETIMEDOUT && err != -EHOSTUNREACH)
			return err;
		unsure = 1;
		applied = marker_applied(b, marker, deadline);
		if (applied == 1)
			return 0;
		if (applied < 0 || kura_now_ns() >= deadline)
			return err;
		kura_log(WARN, "catalog commit: etcd did not answer (%s) and did not apply it: "
			 "sending it again", strerror(-err));
	}
}

static int etcd_commit(void *be, const struct kura_cat_txn *t)
{
	struct etcd_cat *b = be;
	struct kura_etcd_op *ops;
	char marker[48], *keys;
	size_t nops;
	int err;

	/* the marker is one more op */
	if (t->n + 1 > MAX_TXN_OPS) {
		kura_log(ERR, "catalog commit of %zu records: etcd takes at most %d", t->n,
			 MAX_TXN_OPS - 1);
		return -E2BIG;
	}
	snprintf(marker, sizeof(marker), "%016" PRIx64 "-%" PRIu64, b->nonce, ++b->commits);
	ops = calloc(t->n + 1, sizeof(*ops));
	keys = malloc(t->n * (b->plen + REC_SUFFIX_LEN + 1) + 1);
	err = ops && keys ? build_ops(b, t, ops, keys, marker, &nops) : -ENOMEM;
	if (!err) {
		err = send_resolved(b, ops, nops, marker);
		if (err == -ESTALE)
			kura_log(WARN, "catalog commit refused: fence key %s is no longer at "
				 "revision %" PRId64, b->fence_key, b->fence_rev);
		else if (err)
			kura_log(ERR, "catalog commit to etcd %s failed: %s",
				 kura_etcd_endpoints(b->e), strerror(-err));
	}
	free(keys);
	free(ops);
	return err;
}

/* ---- handle ---- */

static void etcd_close(void *be)
{
	struct etcd_cat *b = be;

	if (!b)
		return;
	kura_etcd_close(b->e);
	free(b->prefix);
	free(b->marker_key);
	free(b->fence_key);
	free(b);
}

static const struct kura_cat_ops etcd_ops = {
	.name = "etcd",
	.load = etcd_load,
	.commit = etcd_commit,
	.close = etcd_close,
};

static int copy_names(struct etcd_cat *b, const char *prefix, const char *fence_key)
{
	b->prefix = strdup(prefix);
	b->plen = strlen(prefix);
	b->marker_key = malloc(b->plen + sizeof(MARKER));
	if (b->marker_key)
		snprintf(b->marker_key, b->plen + sizeof(MARKER), "%s%s", prefix, MARKER);
	b->fence_key = fence_key ? strdup(fence_key) : NULL;
	return b->prefix && b->marker_key && (b->fence_key || !fence_key) ? 0 : -ENOMEM;
}

/* Up to 256 bytes, getrandom() fills the buffer whole or fails. */
static int random_nonce(uint64_t *out)
{
	if (getrandom(out, sizeof(*out), 0) == (ssize_t)sizeof(*out))
		return 0;
	return errno ? -errno : -EIO;
}

static int setup(struct etcd_cat *b, const char *endpoints, const char *prefix,
		 const char *fence_key, char *err, size_t errlen)
{
	int ret = copy_names(b, prefix, fence_key);

	if (ret) {
		snprintf(err, errlen, "out of memory");
		return ret;
	}
	ret = random_nonce(&b->nonce);
	if (ret) {
		snprintf(err, errlen, "getrandom: %s", strerror(-ret));
		return ret;
	}
	return kura_etcd_open(endpoints, ETCD_TIMEOUT_MS, &b->e, err, errlen);
}

int kura_cat_etcd_create(const char *endpoints, const char *prefix, const char *fence_key,
			 int64_t fence_rev, const struct kura_cat_ops **ops, void **be,
			 char *err, size_t errlen)
{
	struct etcd_cat *b;
	int ret;

	*be = NULL;
	if (!prefix || !prefix[0] || (fence_key && (!fence_key[0] || fence_rev <= 0))) {
		snprintf(err, errlen, "catalog in etcd: empty prefix or fence key, or a fence "
			 "revision below 1");
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->fence_rev = fence_rev;
	ret = setup(b, endpoints, prefix, fence_key, err, errlen);
	if (ret) {
		etcd_close(b);
		return ret;
	}
	*ops = &etcd_ops;
	*be = b;
	return 0;
}
