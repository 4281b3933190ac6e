/* Checks the etcd client (metadata/etcd.h) against a live etcd: status,
 * keys and values (binary, 1 MiB), lists, deletes, transactions, leases,
 * watches and their stop flag, endpoint failover, dead endpoints; then, with
 * a small local HTTP server, answers no etcd sends (bad base64, numbers that
 * are not strings, oversized or endless answers, silence). Prints "ok NAME"
 * or "FAIL NAME: why" per check and the mean latency of a put and a get.
 *
 * The subcommand catalog checks the catalog's etcd backend
 * (metadata/catalog_etcd.c) instead: records put, deleted and loaded back in
 * order, duplicate keys in a transaction, the fence, the op limit, foreign
 * keys, and commits whose answer is lost (through the local server).
 *
 * usage: kura-etcdcheck [catalog] --endpoints URLS [--compact]
 *   --compact  also compact etcd's history to check that a watch from a
 *              compacted revision ends with -ECANCELED (for test etcds only) */
#include "common/log.h"
#include "common/util.h"
#include "metadata/catalog.h"
#include "metadata/etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_MS 1000

struct model;

struct ctx {
	const char *endpoints;
	char p[64]; /* key prefix of this run */
	struct kura_etcd *e;
	char why[512];
	/* the catalog checks: the backend under test and what it should hold */
	char cp[96];
	const struct kura_cat_ops *cops;
	void *cbe;
	struct model *m;
};

static int failf(struct ctx *c, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int failf(struct ctx *c, int line, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(c->why, sizeof(c->why), "line %d: ", line);

	va_start(ap, fmt);
	vsnprintf(c->why + n, sizeof(c->why) - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

#define EXPECT(c, cond, ...)                                                           \
	do {                                                                           \
		if (!(cond))                                                           \
			return failf(c, __LINE__, __VA_ARGS__);                        \
	} while (0)
#define EXPECT_ERR(c, call, want)                                                      \
	do {                                                                           \
		int got_ = (call);                                                     \
		if (got_ != (want))                                                    \
			return failf(c, __LINE__, "%s: %s, expected %s", #call,       \
				     got_ ? strerror(-got_) : "0",                     \
				     (want) ? strerror(-(want)) : "0");                \
	} while (0)

static double ms_since(uint64_t t0)
{
	return (double)(kura_now_ns() - t0) / 1e6;
}

static const char *key(struct ctx *c, char *buf, const char *suffix)
{
	snprintf(buf, 128, "%s%s", c->p, suffix);
	return buf;
}

static int open_at(struct ctx *c, const char *endpoints, struct kura_etcd **e)
{
	char err[200];

	EXPECT_ERR(c, kura_etcd_open(endpoints, TIMEOUT_MS, e, err, sizeof(err)), 0);
	return 0;
}

/* ---- checks against etcd ---- */

static int check_status(struct ctx *c)
{
	int64_t rev = 0;
	uint64_t id = 0;

	EXPECT_ERR(c, kura_etcd_status(c->e, &rev, &id), 0);
	EXPECT(c, rev > 0 && id != 0, "revision %lld, cluster %llu", (long long)rev,
	       (unsigned long long)id);
	EXPECT_ERR(c, kura_etcd_status(c->e, NULL, NULL), 0);
	return 0;
}

static int check_bad_arguments(struct ctx *c)
{
	struct kura_etcd *e;
	struct kura_etcd_kv kv;
	char err[200];

	EXPECT_ERR(c, kura_etcd_open("127.0.0.1:2379", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT(c, strstr(err, "http://HOST:PORT"), "message: %s", err);
	EXPECT_ERR(c, kura_etcd_open("https://127.0.0.1:2379", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_etcd_open("http://127.0.0.1:2379/v3", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_etcd_open("http://a:1,,http://b:2", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_etcd_open("", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_etcd_open("http://h", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_etcd_open("http://h:", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_etcd_open("http://h:65536", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_etcd_open("http://u@h:1", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_etcd_open("http://h:1?x", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_etcd_open("http://[::1:1", 0, &e, err, sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_etcd_open("http://[::1]:2379/,http://a.b-c:1", 0, &e, err, sizeof(err)),
		   0);
	EXPECT(c, !strcmp(kura_etcd_endpoints(e), "http://[::1]:2379/,http://a.b-c:1"),
	       "endpoints");
	kura_etcd_close(e);
	EXPECT_ERR(c, kura_etcd_get(c->e, "", &kv), -EINVAL);
	EXPECT_ERR(c, kura_etcd_put(c->e, "k", NULL, 1, 0), -EINVAL);
	EXPECT_ERR(c, kura_etcd_lease_grant(c->e, 0, &(int64_t){ 0 }), -EINVAL);
	return 0;
}

static int check_put_get(struct ctx *c)
{
	static const char bin[] = "a\0b\0\xff\x80\n\"\\";
	size_t big_len = 1 << 20;
	char *big = malloc(big_len), k[128];
	struct kura_etcd_kv kv;
	int err;

	EXPECT(c, big, "malloc");
	EXPECT_ERR(c, kura_etcd_put(c->e, key(c, k, "bin"), bin, sizeof(bin), 0), 0);
	EXPECT_ERR(c, kura_etcd_get(c->e, k, &kv), 0);
	err = strcmp(kv.key, k) || kv.val_len != sizeof(bin) || memcmp(kv.val, bin, sizeof(bin)) ||
	      kv.val[kv.val_len] || kv.version != 1 || kv.lease || kv.mod_rev != kv.create_rev;
	kura_etcd_kv_free(&kv);
	EXPECT(c, !err, "binary value or fields differ");
	/* a second put: version 2, create revision kept */
	EXPECT_ERR(c, kura_etcd_put(c->e, k, "", 0, 0), 0);
	EXPECT_ERR(c, kura_etcd_get(c->e, k, &kv), 0);
	err = kv.val_len != 0 || kv.val[0] || kv.version != 2 || kv.mod_rev <= kv.create_rev;
	{
		int64_t rev = 0;

		EXPECT_ERR(c, kura_etcd_get_rev(c->e, k, &rev), 0);
		err = err || rev != kv.mod_rev;
	}
	kura_etcd_kv_free(&kv);
	EXPECT(c, !err, "empty value, version or revision alone differ");
	for (size_t i = 0; i < big_len; i++)
		big[i] = (char)(i * 2654435761u >> 13);
	err = kura_etcd_put(c->e, key(c, k, "big"), big, big_len, 0);
	if (!err) {
		err = kura_etcd_get(c->e, k, &kv);
		if (!err && (kv.val_len != big_len || memcmp(kv.val, big, big_len)))
			err = -EBADMSG;
		kura_etcd_kv_free(&kv);
	}
	free(big);
	EXPECT_ERR(c, err, 0);
	return 0;
}

static int check_get_missing(struct ctx *c)
{
	struct kura_etcd_kv kv;
	char k[128];

	int64_t rev;

	EXPECT_ERR(c, kura_etcd_get(c->e, key(c, k, "missing"), &kv), -ENOENT);
	EXPECT(c, !kv.key && !kv.val, "kv filled for a missing key");
	EXPECT_ERR(c, kura_etcd_get_rev(c->e, k, &rev), -ENOENT);
	return 0;
}

static int check_list(struct ctx *c)
{
	static const char *const names[] = { "list/b", "list/a", "list/c", "list0", "lis",
					     "list/a/deeper" };
	static const char *const want[] = { "list/a", "list/a/deeper", "list/b", "list/c" };
	struct kura_etcd_kv *kvs;
	int64_t rev = 0, now = 0;
	char k[128];
	size_t n;

	for (size_t i = 0; i < KURA_ARRAY_SIZE(names); i++) {
		key(c, k, names[i]);
		EXPECT_ERR(c, kura_etcd_put(c->e, k, names[i], strlen(names[i]), 0), 0);
	}
	EXPECT_ERR(c, kura_etcd_list(c->e, key(c, k, "list/"), &kvs, &n, &rev), 0);
	EXPECT_ERR(c, kura_etcd_status(c->e, &now, NULL), 0);
	for (size_t i = 0; i < n && n == KURA_ARRAY_SIZE(want); i++)
		if (strcmp(kvs[i].key + strlen(c->p), want[i]) || strcmp(kvs[i].val, want[i]))
			n = 0;
	kura_etcd_kvs_free(kvs, n);
	EXPECT(c, n == KURA_ARRAY_SIZE(want), "wrong keys, order or values");
	EXPECT(c, rev == now, "list at revision %lld, etcd at %lld", (long long)rev,
	       (long long)now);
	EXPECT_ERR(c, kura_etcd_list(c->e, key(c, k, "nothing/"), &kvs, &n, NULL), 0);
	EXPECT(c, n == 0 && !kvs, "keys under an unused prefix");
	/* a prefix ending in 0xff bytes ends at the next byte up */
	EXPECT_ERR(c, kura_etcd_put(c->e, key(c, k, "ff\xff\xff" "x"), "1", 1, 0), 0);
	EXPECT_ERR(c, kura_etcd_put(c->e, key(c, k, "fg"), "1", 1, 0), 0);
	EXPECT_ERR(c, kura_etcd_list(c->e, key(c, k, "ff\xff"), &kvs, &n, NULL), 0);
	kura_etcd_kvs_free(kvs, n);
	EXPECT(c, n == 1, "%zu keys under a prefix ending in 0xff", n);
	return 0;
}

static int check_delete(struct ctx *c)
{
	struct kura_etcd_kv kv;
	char k[128];

	EXPECT_ERR(c, kura_etcd_put(c->e, key(c, k, "del"), "x", 1, 0), 0);
	EXPECT_ERR(c, kura_etcd_delete(c->e, k), 0);
	EXPECT_ERR(c, kura_etcd_get(c->e, k, &kv), -ENOENT);
	EXPECT_ERR(c, kura_etcd_delete(c->e, k), 0);
	return 0;
}

static int check_txn(struct ctx *c)
{
	char k1[128], k2[128];
	struct kura_etcd_cmp cmp[2] = { { key(c, k1, "txn/1"), 0 }, { key(c, k2, "txn/2"), 0 } };
	struct kura_etcd_op ops[2] = { { k1, "one", 3, 0 }, { k2, "two", 3, 0 } };
	struct kura_etcd_kv kv;
	int64_t rev = 0, rev2 = 0;
	int ok = -1, err;

	/* must-not-exist: both created at one revision */
	EXPECT_ERR(c, kura_etcd_txn(c->e, cmp, 2, ops, 2, &ok, &rev), 0);
	EXPECT(c, ok == 1 && rev > 0, "create: ok %d rev %lld", ok, (long long)rev);
	EXPECT_ERR(c, kura_etcd_get(c->e, k2, &kv), 0);
	err = kv.mod_rev != rev || strcmp(kv.val, "two");
	kura_etcd_kv_free(&kv);
	EXPECT(c, !err, "txn put not applied at its revision");
	/* again: the keys exist now, nothing applied */
	EXPECT_ERR(c, kura_etcd_txn(c->e, cmp, 2, ops, 2, &ok, &rev2), 0);
	EXPECT(c, ok == 0 && rev2 == rev, "second create: ok %d rev %lld", ok, (long long)rev2);
	/* compare on the right mod revision: put one, delete the other */
	cmp[0].mod_rev = rev;
	ops[0] = (struct kura_etcd_op){ k1, "uno", 3, 0 };
	ops[1] = (struct kura_etcd_op){ k2, NULL, 0, 0 };
	EXPECT_ERR(c, kura_etcd_txn(c->e, cmp, 1, ops, 2, &ok, &rev2), 0);
	EXPECT(c, ok == 1 && rev2 == rev + 1, "update: ok %d rev %lld", ok, (long long)rev2);
	EXPECT_ERR(c, kura_etcd_get(c->e, k2, &kv), -ENOENT);
	/* the old revision no longer matches: value unchanged */
	ops[0].val = "dos";
	EXPECT_ERR(c, kura_etcd_txn(c->e, cmp, 1, ops, 1, &ok, NULL), 0);
	EXPECT(c, ok == 0, "stale compare applied");
	EXPECT_ERR(c, kura_etcd_get(c->e, k1, &kv), 0);
	err = strcmp(kv.val, "uno");
	kura_etcd_kv_free(&kv);
	EXPECT(c, !err, "value changed by a failed txn");
	/* etcd refuses two ops on one key */
	ops[1] = (struct kura_etcd_op){ k1, NULL, 0, 0 };
	EXPECT_ERR(c, kura_etcd_txn(c->e, NULL, 0, ops, 2, &ok, NULL), -EINVAL);
	return 0;
}

static int check_lease(struct ctx *c)
{
	struct kura_etcd_kv kv;
	int64_t id = 0, left = 0;
	char k[128];
	int err;

	EXPECT_ERR(c, kura_etcd_lease_grant(c->e, 30, &id), 0);
	EXPECT(c, id > 0, "lease id %lld", (long long)id);
	EXPECT_ERR(c, kura_etcd_put(c->e, key(c, k, "leased"), "up", 2, id), 0);
	EXPECT_ERR(c, kura_etcd_get(c->e, k, &kv), 0);
	err = kv.lease != id;
	kura_etcd_kv_free(&kv);
	EXPECT(c, !err, "key not bound to its lease");
	EXPECT_ERR(c, kura_etcd_lease_keepalive(c->e, id, &left), 0);
	EXPECT(c, left > 0 && left <= 30, "ttl left %lld", (long long)left);
	EXPECT_ERR(c, kura_etcd_lease_revoke(c->e, id), 0);
	EXPECT_ERR(c, kura_etcd_get(c->e, k, &kv), -ENOENT);
	EXPECT_ERR(c, kura_etcd_lease_keepalive(c->e, id, &left), -ENOENT);
	EXPECT_ERR(c, kura_etcd_lease_revoke(c->e, id), 0);
	EXPECT_ERR(c, kura_etcd_put(c->e, k, "x", 1, id), -ENOENT);
	return 0;
}

/* ---- watch ---- */

struct seen {
	atomic_int n, stop, fn_rc;
	enum kura_etcd_event ev[8];
	char key[8][128], val[8][16];
	size_t val_len[8];
	int64_t rev[8];
	uint64_t stop_at;
	struct ctx *c;
};

static int on_event(void *arg, enum kura_etcd_event ev, const struct kura_etcd_kv *kv)
{
	struct seen *s = arg;
	int i = atomic_load(&s->n);

	if (i < 8) {
		s->ev[i] = ev;
		snprintf(s->key[i], sizeof(s->key[i]), "%s", kv->key);
		snprintf(s->val[i], sizeof(s->val[i]), "%s", kv->val);
		s->val_len[i] = kv->val_len;
		s->rev[i] = kv->mod_rev;
	}
	atomic_store(&s->n, i + 1);
	return atomic_load(&s->fn_rc);
}

/* Writes three keys and deletes one from its own connection, waits until
 * the watch saw the four events and the stream is idle, then sets stop. */
static void *writer(void *arg)
{
	struct seen *s = arg;
	struct kura_etcd *e = NULL;
	char k[128];

	if (!open_at(s->c, s->c->endpoints, &e)) {
		for (int i = 1; i <= 3; i++) {
			char name[16], val[8];
			snprintf(name, sizeof(name), "w/%d", i);
			snprintf(val, sizeof(val), "v%d", i);
			kura_etcd_put(e, key(s->c, k, name), val, strlen(val), 0);
		}
		kura_etcd_delete(e, key(s->c, k, "w/2"));
		kura_etcd_close(e);
	}
	for (int i = 0; i < 500 && atomic_load(&s->n) < 4; i++)
		usleep(10000);
	usleep(300000);
	s->stop_at = kura_now_ns();
	atomic_store(&s->stop, 1);
	return NULL;
}

static int check_watch(struct ctx *c)
{
	static const char *const keys[] = { "w/1", "w/2", "w/3", "w/2" };
	static const char *const vals[] = { "v1", "v2", "v3", "" };
	struct seen *s = calloc(1, sizeof(*s));
	struct kura_etcd_kv *kvs;
	pthread_t t;
	int64_t rev;
	size_t n;
	double stop_ms;
	char k[128];
	int err;

	EXPECT(c, s, "calloc");
	s->c = c;
	EXPECT_ERR(c, kura_etcd_list(c->e, key(c, k, "w/"), &kvs, &n, &rev), 0);
	kura_etcd_kvs_free(kvs, n);
	EXPECT(c, pthread_create(&t, NULL, writer, s) == 0, "pthread_create");
	err = kura_etcd_watch(c->e, k, rev + 1, on_event, s, &s->stop);
	stop_ms = ms_since(s->stop_at);
	pthread_join(t, NULL);
	EXPECT_ERR(c, err, 0);
	EXPECT(c, s->n == 4, "%d events", s->n);
	for (int i = 0; i < 4; i++) {
		EXPECT(c, s->ev[i] == (i == 3 ? KURA_ETCD_DELETE : KURA_ETCD_PUT), "event %d type",
		       i);
		EXPECT(c, !strcmp(s->key[i] + strlen(c->p), keys[i]), "event %d key %s", i,
		       s->key[i]);
		EXPECT(c, !strcmp(s->val[i], vals[i]) && s->val_len[i] == strlen(vals[i]),
		       "event %d value %s", i, s->val[i]);
		EXPECT(c, s->rev[i] == rev + 1 + i, "event %d at revision %lld", i,
		       (long long)s->rev[i]);
	}
	EXPECT(c, stop_ms < 300, "stopped %.0f ms after the stop flag", stop_ms);
	printf("   watch stopped %.0f ms after the stop flag\n", stop_ms);
	/* fn's value ends the watch: the history replays from rev + 1 */
	memset(s, 0, sizeof(*s));
	atomic_store(&s->fn_rc, 42);
	EXPECT_ERR(c, kura_etcd_watch(c->e, k, rev + 1, on_event, s, &s->stop), 42);
	EXPECT(c, s->n == 1 && s->rev[0] == rev + 1, "%d events before fn's value", s->n);
	free(s);
	return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* A value large enough to reach the watch in many pieces. */
static int check_watch_big(struct ctx *c)
{
	size_t len = 300 << 10;
	char *big = malloc(len), k[128];
	struct kura_etcd_kv kv;
	struct seen s = { 0 };
	int64_t rev = 0;
	int err;

	EXPECT(c, big, "malloc");
	for (size_t i = 0; i < len; i++)
		big[i] = (char)(i % 251);
	err = kura_etcd_put(c->e, key(c, k, "wbig/1"), big, len, 0);
	if (!err && !(err = kura_etcd_get(c->e, k, &kv))) {
		rev = kv.mod_rev;
		kura_etcd_kv_free(&kv);
	}
	atomic_store(&s.fn_rc, 1);
	s.val_len[0] = 0;
	if (!err)
		err = kura_etcd_watch(c->e, key(c, k, "wbig/"), rev, on_event, &s, &s.stop);
	free(big);
	EXPECT_ERR(c, err, 1);
	EXPECT(c, s.n == 1 && s.val_len[0] == len && s.rev[0] == rev, "%d events, %zu bytes",
	       s.n, s.val_len[0]);
	return 0;
}

static CURLcode http_post(const char *url, const char *body, size_t len, long *status)
{
	CURL *h = curl_easy_init();
	CURLcode r;

	*status = 0;
	if (!h)
		return CURLE_FAILED_INIT;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	r = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(h);
	return r;
}

/* A POST outside the client, for what it does not offer (compaction). */
static int raw_post(struct ctx *c, const char *path, const char *body)
{
	char url[256];
	CURLcode r;
	long status;

	snprintf(url, sizeof(url), "%.*s%s", (int)strcspn(c->endpoints, ","), c->endpoints, path);
	r = http_post(url, body, strlen(body), &status);
	EXPECT(c, r == CURLE_OK && status == 200, "POST %s: %s, HTTP %ld", path,
	       curl_easy_strerror(r), status);
	return 0;
}

static int check_watch_compacted(struct ctx *c)
{
	struct seen s = { 0 };
	int64_t rev = 0;
	char k[128], body[64];

	EXPECT_ERR(c, kura_etcd_put(c->e, key(c, k, "w/compact"), "x", 1, 0), 0);
	EXPECT_ERR(c, kura_etcd_status(c->e, &rev, NULL), 0);
	snprintf(body, sizeof(body), "{\"revision\":\"%lld\"}", (long long)rev);
	if (raw_post(c, "/v3/kv/compaction", body))
		return -1;
	EXPECT_ERR(c, kura_etcd_watch(c->e, key(c, k, "w/"), rev - 1, on_event, &s, &s.stop),
		   -ECANCELED);
	EXPECT(c, s.n == 0, "events from a compacted revision");
	return 0;
}

/* ---- endpoints ---- */

static int check_failover(struct ctx *c)
{
	struct kura_etcd *e;
	struct kura_etcd_kv kv;
	struct seen s = { 0 };
	char list[512], k[128];
	uint64_t t0;
	double first_ms, next_ms;
	int64_t rev = 0;
	int err;

	snprintf(list, sizeof(list), "http://127.0.0.1:1,%s", c->endpoints);
	if (open_at(c, list, &e))
		return -1;
	t0 = kura_now_ns();
	err = kura_etcd_put(e, key(c, k, "failover"), "f", 1, 0);
	first_ms = ms_since(t0);
	t0 = kura_now_ns();
	if (!err)
		err = kura_etcd_get(e, k, &kv);
	next_ms = ms_since(t0);
	if (!err) {
		rev = kv.mod_rev;
		kura_etcd_kv_free(&kv);
	}
	kura_etcd_close(e);
	/* a watch fails over too */
	atomic_store(&s.fn_rc, 7);
	if (!err && !(err = open_at(c, list, &e))) {
		err = kura_etcd_watch(e, k, rev, on_event, &s, &s.stop);
		err = err == 7 && s.n == 1 ? 0 : err ? err : -EBADMSG;
		kura_etcd_close(e);
	}
	EXPECT_ERR(c, err, 0);
	EXPECT(c, first_ms < TIMEOUT_MS && next_ms < 100, "first call %.1f ms, next %.1f ms",
	       first_ms, next_ms);
	return 0;
}

static int check_unreachable(struct ctx *c)
{
	struct kura_etcd *e;
	struct seen s = { 0 };
	uint64_t t0;
	double ms;

	if (open_at(c, "http://127.0.0.1:1,http://127.0.0.1:2", &e))
		return -1;
	t0 = kura_now_ns();
	EXPECT_ERR(c, kura_etcd_status(e, NULL, NULL), -EHOSTUNREACH);
	EXPECT_ERR(c, kura_etcd_txn(e, NULL, 0, NULL, 0, &(int){ 0 }, NULL), -EHOSTUNREACH);
	EXPECT_ERR(c, kura_etcd_watch(e, "x", 0, on_event, &s, &s.stop), -EHOSTUNREACH);
	ms = ms_since(t0);
	kura_etcd_close(e);
	EXPECT(c, ms < TIMEOUT_MS, "took %.0f ms", ms);
	return 0;
}

/* ---- a server that is not etcd ---- */

struct fake {
	int fd, port;
	atomic_int quit;
	atomic_int served; /* connections finished with */
	/* the whole HTTP answer; NULL: read the request and say nothing */
	_Atomic(const char *) answer;
	_Atomic size_t piece;	/* write the answer this many bytes at a time */
	_Atomic size_t endless; /* after the answer: this many bytes of spaces, chunked */
	/* hand each request on to this etcd (and drop its answer) first */
	atomic_int forwarding;
	char forward_to[256];
};

/* read() that waits through the receive timeouts (which are only there so
 * that the server notices quit). */
static ssize_t read_wait(struct fake *f, int fd, char *buf, size_t len)
{
	for (;;) {
		ssize_t r = read(fd, buf, len);
		if (r >= 0 || errno != EAGAIN || atomic_load(&f->quit))
			return r;
	}
}

/* Reads one request (headers, then Content-Length bytes); *req is the whole
 * request, or NULL when it did not fit in the buffer. */
static int read_request(struct fake *f, int fd, const char **req, size_t *req_len)
{
	static char buf[1 << 16];
	size_t len = 0, need = 0;
	char *hdr_end = NULL;
	int whole = 1;

	while (!hdr_end || len < need) {
		ssize_t r = read_wait(f, fd, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			return -1;
		len += (size_t)r;
		buf[len] = '\0';
		if (!hdr_end && (hdr_end = strstr(buf, "\r\n\r\n"))) {
			char *cl = strcasestr(buf, "Content-Length:");
			need = (size_t)(hdr_end + 4 - buf) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
		}
		if (len == sizeof(buf) - 1) {
			len = 0; /* the body itself is not needed */
			whole = 0;
		}
	}
	*req = whole ? buf : NULL;
	*req_len = len;
	return 0;
}

/* Hands a request on to the etcd at url and drops its answer: a fake that
 * then says nothing is a member that applied a request and went silent. */
static void forward(const char *url, const char *req, size_t len)
{
	const char *path = strchr(req, ' '), *body = strstr(req, "\r\n\r\n");
	char to[512];
	long status;

	if (!path || !body)
		return;
	path++;
	body += 4;
	snprintf(to, sizeof(to), "%s%.*s", url, (int)strcspn(path, " "), path);
	http_post(to, body, len - (size_t)(body - req), &status);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void serve(struct fake *f, int fd)
{
	static char chunk[1 << 16];

	const char *answer = atomic_load(&f->answer), *req;
	size_t piece = atomic_load(&f->piece), endless = atomic_load(&f->endless), req_len;

	if (read_request(f, fd, &req, &req_len))
		return;
	if (atomic_load(&f->forwarding) && req)
		forward(f->forward_to, req, req_len);
	if (endless) {
		const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
		char size[16];
		write_all(fd, h, strlen(h));
		if (answer) {
			snprintf(size, sizeof(size), "%x\r\n", (unsigned)strlen(answer));
			write_all(fd, size, strlen(size));
			write_all(fd, answer, strlen(answer));
			write_all(fd, "\r\n", 2);
		}
		memset(chunk, ' ', sizeof(chunk));
		snprintf(size, sizeof(size), "%x\r\n", (unsigned)sizeof(chunk));
		for (size_t sent = 0; sent < endless && !atomic_load(&f->quit);
		     sent += sizeof(chunk)) {
			write_all(fd, size, strlen(size));
			write_all(fd, chunk, sizeof(chunk));
			write_all(fd, "\r\n", 2);
		}
	} else if (answer) {
		size_t n = strlen(answer), step = piece ? piece : n;
		for (size_t at = 0; at < n; at += step) {
			write_all(fd, answer + at, KURA_MIN(step, n - at));
			if (piece)
				usleep(2000);
		}
	} else {
		while (read_wait(f, fd, chunk, sizeof(chunk)) > 0)
			;
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	while (!atomic_load(&f->quit)) {
		int fd = accept(f->fd, NULL, NULL);
		if (fd < 0)
			continue;
		serve(f, fd);
		close(fd);
		atomic_fetch_add(&f->served, 1);
	}
	return NULL;
}

static int fake_start(struct fake *f, pthread_t *t)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(sa);
	struct timeval tv = { 0, 100000 };

	f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(f->fd, (struct sockaddr *)&sa, &len) || listen(f->fd, 8))
		return -1;
	/* accept() and read() wake up to look at quit */
	setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	f->port = ntohs(sa.sin_port);
	return pthread_create(t, NULL, fake_main, f) ? -1 : 0;
}

/* Sets what the server answers the next connection with. */
static void fake_set(struct fake *f, const char *answer, size_t piece)
{
	atomic_store(&f->answer, answer);
	atomic_store(&f->piece, piece);
}

/* Waits until the server is done with the connection that came after
 * served was `before`, so that what it was writing can be freed. */
static void fake_done(struct fake *f, int before)
{
	for (int i = 0; i < 500 && atomic_load(&f->served) == before; i++)
		usleep(10000);
	fake_set(f, NULL, 0);
}

static char *http_answer(int status, const char *body)
{
	size_t n = strlen(body) + 200;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
			 strlen(body), body);
	return s;
}

#define HDR "\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":\"9\"}"

/* Each body is wrong in one way; a get must refuse it with -EPROTO. */
static const char *const bad_bodies[] = {
	"{" HDR ",\"kvs\":[{\"key\":\"aw==\",\"value\":\"eA=\"}],\"count\":\"1\"}",
	"{" HDR ",\"kvs\":[{\"key\":\"aw==\",\"value\":\"eB==\"}],\"count\":\"1\"}",
	"{" HDR ",\"kvs\":[{\"key\":\"aw==\",\"mod_revision\":5}],\"count\":\"1\"}",
	"{" HDR ",\"kvs\":[{\"key\":\"aw==\",\"mod_revision\":\"-5\"}],\"count\":\"1\"}",
	"{" HDR ",\"kvs\":[{\"key\":\"aw==\",\"version\":\"99999999999999999999\"}],"
	"\"count\":\"1\"}",
	"{" HDR ",\"kvs\":[{\"key\":\"aw==\",\"version\":\"007\"}],\"count\":\"1\"}",
	"{" HDR ",\"kvs\":[{\"key\":\"aw==\"}],\"count\":\"2\"}",
	"{" HDR ",\"kvs\":[{\"key\":\"bA==\"}],\"count\":\"1\"}",
	"{" HDR ",\"kvs\":[{\"key\":\"awBr\"}],\"count\":\"1\"}",
	"{" HDR ",\"kvs\":{},\"count\":\"1\"}",
	"{\"header\":{\"revision\":\"x\"}}",
	"{\"kvs\":[]}",
	"[1]",
	"not json",
	"{" HDR ",\"kvs\":[{\"key\":\"aw==\"}],\"count\":\"1\",\"count\":\"1\"}",
};

/* A get from the server answering status and body (NULL: no answer). */
static int fake_get(struct ctx *c, struct fake *f, int status, const char *body, int want)
{
	struct kura_etcd_kv kv;
	char *ans = body ? http_answer(status, body) : NULL;
	char url[64];
	struct kura_etcd *e;
	int err, before = atomic_load(&f->served);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", f->port);
	if (open_at(c, url, &e)) {
		free(ans);
		return -1;
	}
	fake_set(f, ans, 0);
	err = kura_etcd_get(e, "k", &kv);
	kura_etcd_close(e);
	fake_done(f, before);
	free(ans);
	if (!err)
		kura_etcd_kv_free(&kv);
	EXPECT(c, err == want, "answer %s: %s", body ? body : "(none)", strerror(-err));
	return 0;
}

#define WHDR "{\"result\":{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\"}"
#define CREATED WHDR ",\"created\":true}}\n"
#define EVENT(key, rev) WHDR ",\"events\":[{\"kv\":{\"key\":\"" key "\",\"mod_revision\":\"" \
	rev "\",\"value\":\"aGVsbG8=\"}}]}}\n"
#define STREAM "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"

/* A watch on "w/" from revision 5 of a server streaming body (NULL: no
 * answer at all), piece bytes at a time: it must end with want after
 * events events, each "hello". */
static int fake_watch(struct ctx *c, struct fake *f, const char *body, size_t piece, int want,
		      int events)
{
	struct kura_etcd *e;
	struct seen s = { 0 };
	char url[64];
	int err, before = atomic_load(&f->served);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", f->port);
	if (open_at(c, url, &e))
		return -1;
	fake_set(f, body, piece);
	err = kura_etcd_watch(e, "w/", 5, on_event, &s, &s.stop);
	kura_etcd_close(e);
	fake_done(f, before);
	EXPECT(c, err == want && s.n == events, "stream %s: %s after %d events", body,
	       strerror(-err), s.n);
	for (int i = 0; i < events; i++)
		EXPECT(c, !strcmp(s.val[i], "hello"), "event %d: value %s", i, s.val[i]);
	return 0;
}

static int fake_watches(struct ctx *c, struct fake *f)
{
	uint64_t t0;

	/* messages cut anywhere are put together; a stream closed by the
	 * server is a member gone */
	if (fake_watch(c, f, STREAM CREATED EVENT("dy8x", "5") EVENT("dy95", "6"), 7,
		       -EHOSTUNREACH, 2) ||
	    fake_watch(c, f, STREAM EVENT("dy8x", "5"), 0, -EPROTO, 0) ||
	    fake_watch(c, f, STREAM CREATED CREATED, 0, -EPROTO, 0) ||
	    fake_watch(c, f, STREAM CREATED EVENT("eC8x", "5"), 0, -EPROTO, 0) ||
	    fake_watch(c, f, STREAM CREATED EVENT("dy8x", "4"), 0, -EPROTO, 0) ||
	    fake_watch(c, f, STREAM CREATED EVENT("dy8x", "6") EVENT("dy8x", "5"), 0, -EPROTO, 1) ||
	    fake_watch(c, f, STREAM CREATED WHDR ",\"canceled\":true}}\n", 0, -ECANCELED, 0) ||
	    fake_watch(c, f, STREAM CREATED "{\"error\":{\"grpc_code\":14,\"message\":\"x\"}}\n",
		       0, -EHOSTUNREACH, 0))
		return -1;
	/* one message past 64 MiB is cut off */
	atomic_store(&f->endless, (size_t)65 << 20);
	t0 = kura_now_ns();
	if (fake_watch(c, f, CREATED, 0, -EPROTO, 0))
		return -1;
	atomic_store(&f->endless, 0);
	printf("   64 MiB watch message refused after %.0f ms\n", ms_since(t0));
	return 0;
}

static int fake_checks(struct ctx *c, struct fake *f)
{
	struct kura_etcd *e;
	char url[64];
	uint64_t t0;
	double ms;

	for (size_t i = 0; i < KURA_ARRAY_SIZE(bad_bodies); i++)
		if (fake_get(c, f, 200, bad_bodies[i], -EPROTO))
			return -1;
	if (fake_get(c, f, 200, "{" HDR ",\"kvs\":[{\"key\":\"aw==\",\"value\":\"eA==\"}],"
		     "\"count\":\"1\"}", 0))
		return -1;
	/* the gateway's error shapes, and what is not one */
	if (fake_get(c, f, 404, "{\"error\":\"x\",\"message\":\"gone\",\"code\":5}", -ENOENT) ||
	    fake_get(c, f, 400, "{\"error\":\"x\",\"message\":\"bad\",\"code\":3}", -EINVAL) ||
	    fake_get(c, f, 500, "{\"error\":\"x\",\"message\":\"odd\",\"code\":9}", -EIO) ||
	    fake_get(c, f, 200, "{\"error\":{\"grpc_code\":5,\"message\":\"gone\"}}", -ENOENT) ||
	    fake_get(c, f, 404, "Not Found", -EPROTO) ||
	    fake_get(c, f, 503, "{\"error\":\"x\",\"message\":\"no leader\",\"code\":14}",
		     -EHOSTUNREACH))
		return -1;
	/* silence: no answer within the timeout is an unreachable member */
	t0 = kura_now_ns();
	if (fake_get(c, f, 0, NULL, -EHOSTUNREACH))
		return -1;
	ms = ms_since(t0);
	EXPECT(c, ms >= TIMEOUT_MS * 0.9 && ms < TIMEOUT_MS * 1.5, "silence took %.0f ms", ms);
	/* a transaction that may have reached etcd is not sent again */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d,%s", f->port, c->endpoints);
	if (open_at(c, url, &e))
		return -1;
	EXPECT_ERR(c, kura_etcd_txn(e, NULL, 0, NULL, 0, &(int){ 0 }, NULL), -ETIMEDOUT);
	kura_etcd_close(e);
	/* answers past 64 MiB are cut off */
	atomic_store(&f->endless, (size_t)65 << 20);
	t0 = kura_now_ns();
	if (fake_get(c, f, 0, NULL, -EPROTO))
		return -1;
	atomic_store(&f->endless, 0);
	printf("   64 MiB answer refused after %.0f ms\n", ms_since(t0));
	return fake_watches(c, f);
}

static int check_not_etcd(struct ctx *c)
{
	struct fake f = { .fd = -1 };
	pthread_t t;
	int err;

	EXPECT(c, fake_start(&f, &t) == 0, "cannot start a local server");
	err = fake_checks(c, &f);
	atomic_store(&f.quit, 1);
	pthread_join(t, NULL);
	close(f.fd);
	return err;
}

/* ---- the catalog's etcd backend ---- */

#define MODEL_MAX 512

struct mrec {
	char kind;
	uint64_t id;
	char val[160];
};

/* Records as the backend should hold them, or as a load returned them. */
struct model {
	size_t n;
	int overflow;
	struct mrec r[MODEL_MAX];
};

static int rec_cmp(char k1, uint64_t i1, char k2, uint64_t i2)
{
	if (k1 != k2)
		return (unsigned char)k1 < (unsigned char)k2 ? -1 : 1;
	return i1 < i2 ? -1 : i1 > i2;
}

static int mrec_cmp(const void *a, const void *b)
{
	const struct mrec *x = a, *y = b;

	return rec_cmp(x->kind, x->id, y->kind, y->id);
}

static void model_append(struct model *m, char kind, uint64_t id, const char *val)
{
	if (m->n == MODEL_MAX || strlen(val) >= sizeof(m->r[0].val)) {
		m->overflow = 1;
		return;
	}
	m->r[m->n].kind = kind;
	m->r[m->n].id = id;
	snprintf(m->r[m->n].val, sizeof(m->r[0].val), "%s", val);
	m->n++;
}

/* A put, or with val NULL a delete, as a committed transaction applies it. */
static void model_set(struct model *m, char kind, uint64_t id, const char *val)
{
	size_t i = 0;

	while (i < m->n && rec_cmp(m->r[i].kind, m->r[i].id, kind, id))
		i++;
	if (i < m->n)
		m->r[i] = m->r[--m->n];
	if (val)
		model_append(m, kind, id, val);
}

/* Adds to t a record the test expects to be committed. */
static void cat_add(struct ctx *c, struct kura_cat_txn *t, char kind, uint64_t id,
		    const char *val)
{
	kura_cat_txn_add(t, kind, id, val);
	model_set(c->m, kind, id, val);
}

/* Commits t through a backend and frees it. */
static int cat_commit(const struct kura_cat_ops *ops, void *be, struct kura_cat_txn *t)
{
	int err = t->err ? t->err : ops->commit(be, t);

	kura_cat_txn_free(t);
	return err;
}

struct loaded {
	struct model got;
	int disorder;    /* a record at or before the one before it */
	int stop_after;  /* return 5 from the call after this many (0: never) */
	int calls;
};

static int collect(void *arg, const struct kura_cat_rec *r)
{
	struct loaded *l = arg;
	const struct mrec *prev = l->got.n ? &l->got.r[l->got.n - 1] : NULL;

	if (l->stop_after && l->calls++ == l->stop_after)
		return 5;
	if (prev && rec_cmp(prev->kind, prev->id, r->kind, r->id) >= 0)
		l->disorder = 1;
	model_append(&l->got, r->kind, r->id, r->val);
	return 0;
}

static int compare_loaded(struct ctx *c, const struct kura_cat_ops *ops, void *be,
			  struct loaded *l)
{
	struct model *m = c->m;

	EXPECT_ERR(c, ops->load(be, collect, l), 0);
	EXPECT(c, !l->got.overflow && !m->overflow, "more records than the test keeps");
	EXPECT(c, !l->disorder, "records not in (kind, id) order");
	qsort(m->r, m->n, sizeof(m->r[0]), mrec_cmp);
	for (size_t i = 0; i < m->n && i < l->got.n; i++) {
		const struct mrec *g = &l->got.r[i], *w = &m->r[i];
		EXPECT(c, !mrec_cmp(g, w) && !strcmp(g->val, w->val),
		       "record %zu: got %c/%" PRIx64 " %s, expected %c/%" PRIx64 " %s", i, g->kind,
		       g->id, g->val, w->kind, w->id, w->val);
	}
	EXPECT(c, l->got.n == m->n, "loaded %zu records, expected %zu", l->got.n, m->n);
	return 0;
}

/* Loads through a backend: every record of the model, in order, no other. */
static int cat_expect(struct ctx *c, const struct kura_cat_ops *ops, void *be)
{
	struct loaded *l = calloc(1, sizeof(*l));
	int err;

	EXPECT(c, l, "calloc");
	err = compare_loaded(c, ops, be, l);
	free(l);
	return err;
}

static int cat_open(struct ctx *c, const char *endpoints, const char *fence, int64_t rev,
		    const struct kura_cat_ops **ops, void **be)
{
	char err[200];

	EXPECT_ERR(c, kura_cat_etcd_create(endpoints, c->cp, fence, rev, ops, be, err,
					   sizeof(err)), 0);
	return 0;
}

static int check_cat_create(struct ctx *c)
{
	const struct kura_cat_ops *ops;
	void *be;
	char err[200];

	EXPECT_ERR(c, kura_cat_etcd_create(c->endpoints, "", NULL, 0, &ops, &be, err, sizeof(err)),
		   -EINVAL);
	EXPECT_ERR(c, kura_cat_etcd_create(c->endpoints, c->cp, "f", 0, &ops, &be, err,
					   sizeof(err)), -EINVAL);
	EXPECT_ERR(c, kura_cat_etcd_create("localhost:2379", c->cp, NULL, 0, &ops, &be, err,
					   sizeof(err)), -EINVAL);
	EXPECT(c, strstr(err, "http://HOST:PORT"), "message: %s", err);
	if (cat_open(c, c->endpoints, NULL, 0, &c->cops, &c->cbe))
		return -1;
	EXPECT(c, !strcmp(c->cops->name, "etcd"), "backend name %s", c->cops->name);
	return cat_expect(c, c->cops, c->cbe);
}

/* Every kind with ids that sort differently as text of other widths, in an
 * order of their own; values with quotes, backslashes and UTF-8. */
static int check_cat_put_load(struct ctx *c)
{
	static const char kinds[] = "pvnljqi";
	static const uint64_t ids[] = { 0xa0, 9, UINT64_MAX, 0, 10, 1ull << 63, 0x100 };
	struct kura_cat_txn t;
	struct kura_etcd_kv kv;
	char val[128], k[160];
	int err;

	kura_cat_txn_init(&t);
	for (size_t i = 0; i < KURA_ARRAY_SIZE(ids); i++)
		for (size_t j = 0; j < strlen(kinds); j++) {
			snprintf(val, sizeof(val), "{\"kind\":\"%c\",\"id\":%" PRIu64
				 ",\"s\":\"\\\"\\\\ \xc3\xa9\"}", kinds[j], ids[i]);
			cat_add(c, &t, kinds[j], ids[i], val);
		}
	EXPECT_ERR(c, cat_commit(c->cops, c->cbe, &t), 0);
	if (cat_expect(c, c->cops, c->cbe))
		return -1;
	/* the key layout other tools rely on */
	snprintf(k, sizeof(k), "%sv/00000000000000a0", c->cp);
	EXPECT_ERR(c, kura_etcd_get(c->e, k, &kv), 0);
	err = strncmp(kv.val, "{\"kind\":\"v\",\"id\":160,", 21);
	kura_etcd_kv_free(&kv);
	EXPECT(c, !err, "value of %s", k);
	return 0;
}

static int check_cat_delete_put(struct ctx *c)
{
	struct kura_cat_txn t;

	kura_cat_txn_init(&t);
	cat_add(c, &t, 'v', 9, NULL);
	cat_add(c, &t, 'v', 11, "{\"new\":true}");
	cat_add(c, &t, 'l', 0, "{\"overwritten\":true}");
	cat_add(c, &t, 'v', 12345, NULL); /* deleting what is not there is no error */
	EXPECT_ERR(c, cat_commit(c->cops, c->cbe, &t), 0);
	return cat_expect(c, c->cops, c->cbe);
}

/* etcd refuses two ops on one key; the backend keeps the later. */
static int check_cat_duplicate(struct ctx *c)
{
	struct kura_cat_txn t;

	kura_cat_txn_init(&t);
	cat_add(c, &t, 'j', 5, "{\"first\":1}");
	cat_add(c, &t, 'j', 6, "{\"gone\":1}");
	cat_add(c, &t, 'j', 0, NULL);
	cat_add(c, &t, 'j', 5, "{\"second\":2}");
	cat_add(c, &t, 'j', 6, NULL);
	cat_add(c, &t, 'j', 0, "{\"back\":1}");
	cat_add(c, &t, 'j', 5, "{\"third\":3}");
	EXPECT_ERR(c, cat_commit(c->cops, c->cbe, &t), 0);
	return cat_expect(c, c->cops, c->cbe);
}

static int marker(struct ctx *c, char *val, size_t len)
{
	struct kura_etcd_kv kv;
	char k[160];

	snprintf(k, sizeof(k), "%stxn", c->cp);
	EXPECT_ERR(c, kura_etcd_get(c->e, k, &kv), 0);
	snprintf(val, len, "%s", kv.val);
	kura_etcd_kv_free(&kv);
	return 0;
}

static int fenced_checks(struct ctx *c, const struct kura_cat_ops *ops, void *be,
			 const char *fence)
{
	struct kura_cat_txn t;
	char before[64], after[64];

	kura_cat_txn_init(&t);
	cat_add(c, &t, 'f', 1, "{\"fenced\":1}");
	EXPECT_ERR(c, cat_commit(ops, be, &t), 0);
	if (cat_expect(c, ops, be) || marker(c, before, sizeof(before)))
		return -1;
	/* someone else takes the fence: nothing more is applied */
	EXPECT_ERR(c, kura_etcd_put(c->e, fence, "holder-2", 8, 0), 0);
	kura_cat_txn_init(&t);
	kura_cat_txn_add(&t, 'f', 1, NULL);
	kura_cat_txn_add(&t, 'f', 2, "{\"stale\":1}");
	EXPECT_ERR(c, cat_commit(ops, be, &t), -ESTALE);
	if (cat_expect(c, ops, be) || marker(c, after, sizeof(after)))
		return -1;
	EXPECT(c, !strcmp(before, after), "marker moved from %s to %s", before, after);
	return 0;
}

static int check_cat_fence(struct ctx *c)
{
	const struct kura_cat_ops *ops;
	struct kura_cat_txn t;
	char fence[128];
	int64_t rev;
	void *be;
	int err;

	EXPECT_ERR(c, kura_etcd_put(c->e, key(c, fence, "fence"), "holder-1", 8, 0), 0);
	EXPECT_ERR(c, kura_etcd_get_rev(c->e, fence, &rev), 0);
	if (cat_open(c, c->endpoints, fence, rev, &ops, &be))
		return -1;
	err = fenced_checks(c, ops, be, fence);
	ops->close(be);
	if (err)
		return err;
	/* the new holder commits with the new revision */
	EXPECT_ERR(c, kura_etcd_get_rev(c->e, fence, &rev), 0);
	if (cat_open(c, c->endpoints, fence, rev, &ops, &be))
		return -1;
	kura_cat_txn_init(&t);
	cat_add(c, &t, 'f', 2, "{\"new holder\":1}");
	err = cat_commit(ops, be, &t);
	ops->close(be);
	EXPECT_ERR(c, err, 0);
	return cat_expect(c, c->cops, c->cbe);
}

/* n records of kind 'b' from id first, to commit (model) or to refuse. */
static void add_many(struct ctx *c, struct kura_cat_txn *t, size_t n, uint64_t first, int model)
{
	char val[32];

	for (size_t i = 0; i < n; i++) {
		snprintf(val, sizeof(val), "{\"many\":%zu}", i);
		if (model)
			cat_add(c, t, 'b', first + i, val);
		else
			kura_cat_txn_add(t, 'b', first + i, val);
	}
}

/* etcd takes 128 ops, the marker being one of them. */
static int check_cat_too_big(struct ctx *c)
{
	struct kura_cat_txn t;

	kura_cat_txn_init(&t);
	add_many(c, &t, 200, 0, 0);
	EXPECT_ERR(c, cat_commit(c->cops, c->cbe, &t), -E2BIG);
	kura_cat_txn_init(&t);
	add_many(c, &t, 128, 1000, 0);
	EXPECT_ERR(c, cat_commit(c->cops, c->cbe, &t), -E2BIG);
	if (cat_expect(c, c->cops, c->cbe))
		return -1;
	kura_cat_txn_init(&t);
	add_many(c, &t, 127, 2000, 1);
	EXPECT_ERR(c, cat_commit(c->cops, c->cbe, &t), 0);
	return cat_expect(c, c->cops, c->cbe);
}

/* Keys under the prefix that the backend did not write are left out of a
 * load (with a warning each); so is a value holding a NUL byte. */
static int check_cat_foreign_keys(struct ctx *c)
{
	static const char *const bad[] = {
		"v/123", "vv/0000000000000001", "v-0000000000000001", "v/000000000000000g",
		"v/00000000000000A1", "v/0000000000000001x", "zzz", "v/0000000000000001/x", "txn2",
	};
	struct loaded *l;
	char k[160];
	int err;

	for (size_t i = 0; i < KURA_ARRAY_SIZE(bad); i++) {
		snprintf(k, sizeof(k), "%s%s", c->cp, bad[i]);
		EXPECT_ERR(c, kura_etcd_put(c->e, k, "{}", 2, 0), 0);
	}
	snprintf(k, sizeof(k), "%sw/0000000000000001", c->cp);
	EXPECT_ERR(c, kura_etcd_put(c->e, k, "{\0}", 3, 0), 0);
	if (cat_expect(c, c->cops, c->cbe))
		return -1;
	/* fn's value stops the load */
	l = calloc(1, sizeof(*l));
	EXPECT(c, l, "calloc");
	l->stop_after = 3;
	err = c->cops->load(c->cbe, collect, l);
	err = err != 5 ? -1 : l->got.n != 3 ? -2 : 0;
	free(l);
	EXPECT(c, !err, "load not stopped by fn's value (%d)", err);
	/* the later checks load without these warnings */
	for (size_t i = 0; i < KURA_ARRAY_SIZE(bad); i++) {
		snprintf(k, sizeof(k), "%s%s", c->cp, bad[i]);
		EXPECT_ERR(c, kura_etcd_delete(c->e, k), 0);
	}
	snprintf(k, sizeof(k), "%sw/0000000000000001", c->cp);
	EXPECT_ERR(c, kura_etcd_delete(c->e, k), 0);
	return 0;
}

/* A put committed through endpoints "fake,etcd": the first request goes to
 * the fake, which says nothing. Must be applied once. */
static int lost_commit(struct ctx *c, struct fake *f, uint64_t id, double *ms)
{
	const struct kura_cat_ops *ops;
	struct kura_etcd_kv kv;
	struct kura_cat_txn t;
	char list[512], k[160];
	uint64_t t0;
	void *be;
	int err;

	snprintf(list, sizeof(list), "http://127.0.0.1:%d,%s", f->port, c->endpoints);
	if (cat_open(c, list, NULL, 0, &ops, &be))
		return -1;
	kura_cat_txn_init(&t);
	cat_add(c, &t, 'x', id, "{\"lost answer\":1}");
	t0 = kura_now_ns();
	err = cat_commit(ops, be, &t);
	*ms = ms_since(t0);
	ops->close(be);
	EXPECT_ERR(c, err, 0);
	snprintf(k, sizeof(k), "%sx/%016" PRIx64, c->cp, id);
	EXPECT_ERR(c, kura_etcd_get(c->e, k, &kv), 0);
	err = kv.version != 1;
	kura_etcd_kv_free(&kv);
	EXPECT(c, !err, "record %s put more than once", k);
	return cat_expect(c, c->cops, c->cbe);
}

static int lost_checks(struct ctx *c, struct fake *f)
{
	double ms;

	/* the fake applies the transaction on etcd and loses the answer: the
	 * marker says it was applied */
	snprintf(f->forward_to, sizeof(f->forward_to), "%.*s", (int)strcspn(c->endpoints, ","),
		 c->endpoints);
	atomic_store(&f->forwarding, 1);
	if (lost_commit(c, f, 1, &ms))
		return -1;
	printf("   applied, answer lost: settled after %.0f ms\n", ms);
	/* the fake drops the transaction: the marker says not applied, and it
	 * is sent again */
	atomic_store(&f->forwarding, 0);
	if (lost_commit(c, f, 2, &ms))
		return -1;
	printf("   not applied, answer lost: sent again, done after %.0f ms\n", ms);
	return 0;
}

static int check_cat_lost_answer(struct ctx *c)
{
	struct fake f = { .fd = -1 };
	pthread_t t;
	int err;

	EXPECT(c, fake_start(&f, &t) == 0, "cannot start a local server");
	err = lost_checks(c, &f);
	atomic_store(&f.quit, 1);
	pthread_join(t, NULL);
	close(f.fd);
	return err;
}

/* With no etcd at all a commit gives up after about 10 s; a load at once. */
static int check_cat_unreachable(struct ctx *c)
{
	const struct kura_cat_ops *ops;
	struct loaded *l = calloc(1, sizeof(*l));
	struct kura_cat_txn t;
	uint64_t t0;
	double ms;
	void *be;
	int err, load_err;

	EXPECT(c, l, "calloc");
	if (cat_open(c, "http://127.0.0.1:1", NULL, 0, &ops, &be)) {
		free(l);
		return -1;
	}
	kura_cat_txn_init(&t);
	kura_cat_txn_add(&t, 'x', 3, "{}");
	t0 = kura_now_ns();
	err = cat_commit(ops, be, &t);
	ms = ms_since(t0);
	load_err = ops->load(be, collect, l);
	ops->close(be);
	free(l);
	EXPECT_ERR(c, err, -EHOSTUNREACH);
	EXPECT_ERR(c, load_err, -EHOSTUNREACH);
	EXPECT(c, ms > 9500 && ms < 12000, "gave up after %.0f ms", ms);
	printf("   gave up after %.0f ms\n", ms);
	return 0;
}

static int run(struct ctx *c, const char *name, int (*fn)(struct ctx *));

static int catalog_checks(struct ctx *c)
{
	int failed;

	snprintf(c->cp, sizeof(c->cp), "%scat/", c->p);
	c->m = calloc(1, sizeof(*c->m));
	if (!c->m)
		return 1;
	failed = run(c, "cat-create", check_cat_create);
	if (!failed) {
		failed += run(c, "cat-put-load", check_cat_put_load);
		failed += run(c, "cat-delete-put", check_cat_delete_put);
		failed += run(c, "cat-duplicate", check_cat_duplicate);
		failed += run(c, "cat-fence", check_cat_fence);
		failed += run(c, "cat-too-big", check_cat_too_big);
		failed += run(c, "cat-foreign-keys", check_cat_foreign_keys);
		failed += run(c, "cat-lost-answer", check_cat_lost_answer);
		failed += run(c, "cat-unreachable", check_cat_unreachable);
		c->cops->close(c->cbe);
	}
	free(c->m);
	return failed;
}

/* ---- latency ---- */

static int check_latency(struct ctx *c)
{
	struct kura_etcd_kv kv;
	char k[128], v[64];
	uint64_t t0;
	double put_us, get_us;
	const int n = 1000;

	key(c, k, "latency");
	memset(v, 'v', sizeof(v));
	t0 = kura_now_ns();
	for (int i = 0; i < n; i++)
		EXPECT_ERR(c, kura_etcd_put(c->e, k, v, sizeof(v), 0), 0);
	put_us = ms_since(t0) * 1000 / n;
	t0 = kura_now_ns();
	for (int i = 0; i < n; i++) {
		EXPECT_ERR(c, kura_etcd_get(c->e, k, &kv), 0);
		kura_etcd_kv_free(&kv);
	}
	get_us = ms_since(t0) * 1000 / n;
	printf("   mean latency over %d calls: put %.0f us, get %.0f us\n", n, put_us, get_us);
	return 0;
}

static int run(struct ctx *c, const char *name, int (*fn)(struct ctx *))
{
	c->why[0] = '\0';
	if (fn(c) == 0) {
		printf("ok %s\n", name);
		fflush(stdout);
		return 0;
	}
	printf("FAIL %s: %s\n", name, c->why);
	fflush(stdout);
	return 1;
}

int main(int argc, char **argv)
{
	struct ctx c = { 0 };
	int compact = 0, catalog = 0, failed = 0, i = 1;

	if (argc > 1 && !strcmp(argv[1], "catalog")) {
		catalog = 1;
		i = 2;
	}
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--endpoints") && i + 1 < argc)
			c.endpoints = argv[++i];
		else if (!strcmp(argv[i], "--compact"))
			compact = 1;
		else
			c.endpoints = NULL, i = argc;
	}
	if (!c.endpoints) {
		fprintf(stderr, "usage: kura-etcdcheck [catalog] --endpoints URLS [--compact]\n");
		return 2;
	}
	kura_log_set_level(KURA_LOG_WARN);
	/* the local server writes to clients that may have hung up */
	signal(SIGPIPE, SIG_IGN);
	snprintf(c.p, sizeof(c.p), "/kura-etcdcheck/%d/", (int)getpid());
	if (open_at(&c, c.endpoints, &c.e)) {
		printf("FAIL open: %s\n", c.why);
		return 1;
	}
	if (catalog) {
		failed = catalog_checks(&c);
		kura_etcd_close(c.e);
		printf("%d failed\n", failed);
		return failed ? 1 : 0;
	}
	failed += run(&c, "status", check_status);
	failed += run(&c, "bad-arguments", check_bad_arguments);
	failed += run(&c, "put-get", check_put_get);
	failed += run(&c, "get-missing", check_get_missing);
	failed += run(&c, "list", check_list);
	failed += run(&c, "delete", check_delete);
	failed += run(&c, "txn", check_txn);
	failed += run(&c, "lease", check_lease);
	failed += run(&c, "watch", check_watch);
	failed += run(&c, "watch-big", check_watch_big);
	if (compact)
		failed += run(&c, "watch-compacted", check_watch_compacted);
	failed += run(&c, "failover", check_failover);
	failed += run(&c, "unreachable", check_unreachable);
	failed += run(&c, "not-etcd", check_not_etcd);
	failed += run(&c, "latency", check_latency);
	kura_etcd_close(c.e);
	printf("%d failed\n", failed);
	return failed ? 1 : 0;
}
