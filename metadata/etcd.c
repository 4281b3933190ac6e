/* The etcd client; the contract is in etcd.h, the JSON side in etcd_json.c.
 *
 * Every call is one HTTP/1.1 POST on the handle's curl easy handle, which
 * keeps its connection to the member open between calls, so a call costs
 * one round trip. A watch runs the same easy handle under a private multi
 * handle: curl_easy_perform() looks at its progress callback only about
 * once a second while a stream is idle, too seldom for the 250 ms promised
 * for *stop, while curl_multi_poll() can wait for exactly as long as we say.
 */
#include "metadata/etcd.h"

#include "common/log.h"
#include "common/util.h"
#include "metadata/etcd_json.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS 2000
/* etcd's members sit on the same network: a connection not made within
 * this is a member cut off (its SYN dropped), not a slow one; the next
 * member is tried at once instead of after the whole request timeout
 * (callers may be on an event loop: every waited ms stalls its I/O) */
#define CONNECT_TIMEOUT_MS 300u
#define URL_MAX 256	     /* a member's URL with the path of a call */
#define BASE_MAX 200	     /* a member's base URL, http://HOST:PORT */
#define WATCH_POLL_MS 100    /* longest wait for stream data between looks at *stop */
#define KEEP_BUF (64u << 10) /* answer buffers larger than this are freed after use */

struct answer {
	char *buf; /* NUL-terminated */
	size_t len, cap;
	size_t scanned;	 /* a stream's bytes known to hold no newline */
	int over, nomem; /* why on_data() refused bytes */
};

struct kura_etcd {
	CURL *curl;
	struct curl_slist *headers;
	char *endpoints; /* as given */
	char **urls;	 /* base URLs, http://HOST:PORT */
	size_t nurls;
	size_t cur; /* the member that answered last */
	unsigned timeout_ms;
	struct answer ans;
	char where[URL_MAX]; /* the URL of the request under way, for messages */
	char cerr[CURL_ERROR_SIZE];
};

/* curl_global_init() is not thread-safe and must run once per process before
 * any thread uses curl. Its result is written once, inside pthread_once(),
 * before any reader gets past it. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int say(char *errbuf, size_t errlen, int err, const char *what, const char *detail)
{
	if (errlen)
		snprintf(errbuf, errlen, "%s%s", what, detail);
	return err;
}

/* ---- endpoints ---- */

/* One endpoint, text[0..len): http://HOST:PORT, a slash after it allowed.
 * HOST is a name, an IPv4 address or a bracketed IPv6 one; etcd has no
 * default port, so PORT is required. */
static int parse_url(const char *text, size_t len, char **out)
{
	static const char scheme[] = "http://";
	const char *host = text + strlen(scheme), *colon = NULL, *end;
	unsigned long port = 0;

	if (len && text[len - 1] == '/')
		len--;
	end = text + len;
	if (len <= strlen(scheme) || len >= BASE_MAX || strncmp(text, scheme, strlen(scheme)))
		return -EINVAL;
	for (const char *p = host; p < end; p++) {
		if (!isalnum((unsigned char)*p) && !strchr(".-_[]:", *p))
			return -EINVAL;
		if (*p == ':')
			colon = p;
	}
	if (!colon || colon == host || colon + 1 == end || (*host == '[' && colon[-1] != ']'))
		return -EINVAL;
	for (const char *p = colon + 1; p < end && port <= 65535; p++)
		port = isdigit((unsigned char)*p) ? port * 10 + (unsigned long)(*p - '0') : 65536;
	if (port == 0 || port > 65535)
		return -EINVAL;
	*out = strndup(text, len);
	return *out ? 0 : -ENOMEM;
}

static int parse_endpoints(struct kura_etcd *e, const char *list, char *errbuf, size_t errlen)
{
	size_t n = 1;

	for (const char *p = list; *p; p++)
		n += *p == ',';
	e->urls = calloc(n, sizeof(*e->urls));
	if (!e->urls)
		return -ENOMEM;
	for (const char *p = list;; p++) {
		size_t len = strcspn(p, ",");
		int err = parse_url(p, len, &e->urls[e->nurls]);

		if (err == -EINVAL)
			return say(errbuf, errlen, err, "etcd endpoints must be a comma-separated "
				   "list of http://HOST:PORT, not: ", list);
		if (err)
			return err;
		e->nurls++;
		p += len;
		if (!*p)
			return 0;
	}
}

/* The k-th member to try: the one that answered last, then the others in
 * list order. */
static size_t nth(size_t first, size_t k)
{
	return k == 0 ? first : k - 1 + (k - 1 >= first);
}

static void remember(struct kura_etcd *e, size_t i)
{
	if (i != e->cur)
		kura_log(INFO, "etcd: %s answers, %s did not", e->urls[i], e->urls[e->cur]);
	e->cur = i;
}

/* ---- one request ---- */

/* Collects an answer, refusing to grow past KURA_ETCD_MAX_ANSWER: a broken
 * or hostile server must not make us allocate without limit. */
static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct answer *a = arg;
	size_t len = size * n;

	if (len > KURA_ETCD_MAX_ANSWER - a->len) {
		a->over = 1;
		return 0;
	}
	if (len >= a->cap - a->len) {
		size_t cap = KURA_MAX(KURA_MAX(a->cap * 2, a->len + len + 1), 4096);
		char *b = realloc(a->buf, cap);

		if (!b) {
			a->nomem = 1;
			return 0;
		}
		a->buf = b;
		a->cap = cap;
	}
	memcpy(a->buf + a->len, p, len);
	a->len += len;
	a->buf[a->len] = '\0';
	return len;
}

static void answer_reset(struct answer *a)
{
	if (a->cap > KEEP_BUF) {
		free(a->buf);
		a->buf = NULL;
		a->cap = 0;
	}
	a->len = a->scanned = 0;
	a->over = a->nomem = 0;
}

static int setup_curl(struct kura_etcd *e)
{
	CURL *c = e->curl = curl_easy_init();
	struct curl_slist *h;

	e->headers = curl_slist_append(NULL, "Content-Type: application/json");
	/* curl would otherwise send "Expect: 100-continue" before large bodies
	 * and wait a round trip for the go-ahead */
	h = e->headers ? curl_slist_append(e->headers, "Expect:") : NULL;
	if (!c || !h)
		return -ENOMEM;
	/* no signals (threads), no proxy from the environment (etcd is local
	 * to the cluster), no redirects, http only */
	if (curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) || curl_easy_setopt(c, CURLOPT_PROXY, "") ||
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http") ||
	    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) ||
	    curl_easy_setopt(c, CURLOPT_POST, 1L) ||
	    curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers) ||
	    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data) ||
	    curl_easy_setopt(c, CURLOPT_WRITEDATA, &e->ans) ||
	    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, e->cerr) ||
	    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
			     (long)KURA_MIN(e->timeout_ms, CONNECT_TIMEOUT_MS)) ||
	    /* a watch stream is idle for long stretches: notice a member that
	     * vanished without closing its connection */
	    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L) ||
	    curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 5L) ||
	    curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 2L))
		return -ENOMEM;
	return 0;
}

/* Points the handle at a new request to member i and empties the answer.
 * A stream (a watch) lasts as long as the caller wants and its total size
 * is not bounded, only that of each message (on_data() and watch_lines()). */
static int prepare(struct kura_etcd *e, size_t i, const char *path, const char *body,
		   size_t len, int stream)
{
	snprintf(e->where, sizeof(e->where), "%s%s", e->urls[i], path);
	answer_reset(&e->ans);
	e->cerr[0] = '\0';
	if (curl_easy_setopt(e->curl, CURLOPT_URL, e->where) ||
	    curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, body) ||
	    curl_easy_setopt(e->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) ||
	    curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, stream ? 0L : (long)e->timeout_ms) ||
	    curl_easy_setopt(e->curl, CURLOPT_MAXFILESIZE_LARGE,
			     (curl_off_t)(stream ? 0 : KURA_ETCD_MAX_ANSWER)))
		return -ENOMEM;
	return 0;
}

/* A transfer that failed: -EAGAIN when the member did not answer (*sent:
 * whether the request may have reached it), or a final error. */
static int transport_error(struct kura_etcd *e, CURLcode c, int *sent)
{
	long reqsize = 0;

	if (c == CURLE_OUT_OF_MEMORY || e->ans.nomem)
		return -ENOMEM;
	if (e->ans.over || c == CURLE_FILESIZE_EXCEEDED) {
		kura_log(WARN, "etcd %s: answer longer than %u bytes", e->where,
			 KURA_ETCD_MAX_ANSWER);
		return -EPROTO;
	}
	/* curl counts the request's bytes only once it has written them */
	curl_easy_getinfo(e->curl, CURLINFO_REQUEST_SIZE, &reqsize);
	*sent = reqsize > 0;
	kura_log(DEBUG, "etcd %s: %s", e->where, e->cerr[0] ? e->cerr : curl_easy_strerror(c));
	return -EAGAIN;
}

/* The whole answer of a finished transfer, parsed (kura_etcd_j_answer()). */
static int parse_answer(struct kura_etcd *e, struct kura_json **out)
{
	long status = 0;

	curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &status);
	return kura_etcd_j_answer(e->ans.buf ? e->ans.buf : "", e->ans.len, status, out,
				  e->where);
}

/* One request to member i: 0 and the answer, -EAGAIN when the member did not
 * answer or cannot serve now (*sent: whether it may have got the request),
 * or a final error. */
static int post(struct kura_etcd *e, size_t i, const char *path, const char *body, size_t len,
		int *sent, struct kura_json **out)
{
	CURLcode c;
	int err;

	*sent = 0;
	if (prepare(e, i, path, body, len, 0))
		return -ENOMEM;
	c = curl_easy_perform(e->curl);
	if (c != CURLE_OK)
		return transport_error(e, c, sent);
	*sent = 1;
	err = parse_answer(e, out);
	if (err != -EAGAIN)
		remember(e, i);
	return err;
}

/* Sends the request in w (freed here) to the members in turn until one
 * answers. A request that must not be applied twice (once) is not sent again
 * after it may have reached a member: its outcome is then unknown
 * (-ETIMEDOUT). */
static int call(struct kura_etcd *e, const char *path, struct kura_jw *w, int once,
		struct kura_json **out)
{
	size_t len, first = e->cur;
	const char *body = kura_jw_finish(w, &len);
	int err = body ? -EAGAIN : -ENOMEM, sent = 0;

	*out = NULL;
	for (size_t k = 0; k < e->nurls && err == -EAGAIN; k++) {
		err = post(e, nth(first, k), path, body, len, &sent, out);
		if (err == -EAGAIN && once && sent) {
			kura_log(WARN, "etcd %s: no answer to a request it may have applied",
				 e->where);
			err = -ETIMEDOUT;
		}
	}
	kura_jw_free(w);
	answer_reset(&e->ans);
	return err == -EAGAIN ? -EHOSTUNREACH : err;
}

/* ---- handle ---- */

int kura_etcd_open(const char *endpoints, unsigned timeout_ms, struct kura_etcd **out,
		   char *errbuf, size_t errlen)
{
	struct kura_etcd *e;
	int err;

	*out = NULL;
	if (!endpoints)
		return say(errbuf, errlen, -EINVAL, "no etcd endpoints", "");
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK)
		return say(errbuf, errlen, -ENOMEM, "libcurl: ",
			   curl_easy_strerror(curl_init_result));
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
	e->endpoints = strdup(endpoints);
	err = e->endpoints ? parse_endpoints(e, endpoints, errbuf, errlen) : -ENOMEM;
	if (!err)
		err = setup_curl(e);
	if (err) {
		if (err == -ENOMEM)
			say(errbuf, errlen, err, "out of memory", "");
		kura_etcd_close(e);
		return err;
	}
	*out = e;
	return 0;
}

void kura_etcd_close(struct kura_etcd *e)
{
	if (!e)
		return;
	if (e->curl)
		curl_easy_cleanup(e->curl);
	curl_slist_free_all(e->headers);
	for (size_t i = 0; i < e->nurls; i++)
		free(e->urls[i]);
	free(e->urls);
	free(e->endpoints);
	free(e->ans.buf);
	free(e);
}

const char *kura_etcd_endpoints(const struct kura_etcd *e)
{
	return e->endpoints;
}

void kura_etcd_kv_free(struct kura_etcd_kv *kv)
{
	if (!kv)
		return;
	free(kv->key);
	free(kv->val);
	memset(kv, 0, sizeof(*kv));
}

void kura_etcd_kvs_free(struct kura_etcd_kv *kvs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		kura_etcd_kv_free(&kvs[i]);
	free(kvs);
}

/* ---- calls ---- */

static int key_ok(const char *key)
{
	return key && *key;
}

/* A request whose answer is only a header. */
static int simple(struct kura_etcd *e, const char *path, struct kura_jw *w)
{
	struct kura_json *a;
	int err = call(e, path, w, 0, &a);

	if (!err)
		err = kura_etcd_j_header(a, NULL, NULL, e->where);
	kura_json_free(a);
	return err;
}

int kura_etcd_status(struct kura_etcd *e, int64_t *revision, uint64_t *cluster_id)
{
	struct kura_json *a;
	struct kura_jw w;
	int64_t rev;
	uint64_t id;
	int err;

	kura_etcd_req_empty(&w);
	err = call(e, "/v3/maintenance/status", &w, 0, &a);
	if (!err)
		err = kura_etcd_j_status(a, &rev, &id, e->where);
	kura_json_free(a);
	if (!err && revision)
		*revision = rev;
	if (!err && cluster_id)
		*cluster_id = id;
	return err;
}

/* A range request for one key or for every key under a prefix. */
static int range(struct kura_etcd *e, const char *key, int prefix, int keys_only,
		 struct kura_etcd_kv **kvs, size_t *n, int64_t *rev)
{
	struct kura_json *a;
	struct kura_jw w;
	int err;

	kura_etcd_req_key(&w, key, prefix, keys_only);
	err = call(e, "/v3/kv/range", &w, 0, &a);
	if (!err)
		err = kura_etcd_j_range(a, key, !prefix, kvs, n, rev, e->where);
	kura_json_free(a);
	return err;
}

int kura_etcd_get(struct kura_etcd *e, const char *key, struct kura_etcd_kv *out)
{
	struct kura_etcd_kv *kvs = NULL;
	size_t n = 0;
	int err;

	memset(out, 0, sizeof(*out));
	if (!key_ok(key))
		return -EINVAL;
	err = range(e, key, 0, 0, &kvs, &n, NULL);
	if (!err && !n)
		err = -ENOENT;
	if (!err)
		*out = kvs[0];
	free(kvs);
	return err;
}

int kura_etcd_get_rev(struct kura_etcd *e, const char *key, int64_t *mod_rev)
{
	struct kura_etcd_kv *kvs = NULL;
	size_t n = 0;
	int err;

	if (!key_ok(key))
		return -EINVAL;
	err = range(e, key, 0, 1, &kvs, &n, NULL);
	if (!err && !n)
		err = -ENOENT;
	if (!err)
		*mod_rev = kvs[0].mod_rev;
	kura_etcd_kvs_free(kvs, n);
	return err;
}

int kura_etcd_list(struct kura_etcd *e, const char *prefix, struct kura_etcd_kv **kvs,
		   size_t *n, int64_t *rev)
{
	int64_t r;
	int err;

	*kvs = NULL;
	*n = 0;
	if (!prefix)
		return -EINVAL;
	err = range(e, prefix, 1, 0, kvs, n, &r);
	if (!err && rev)
		*rev = r;
	return err;
}

int kura_etcd_put(struct kura_etcd *e, const char *key, const void *val, size_t len,
		  int64_t lease)
{
	struct kura_jw w;

	if (!key_ok(key) || (!val && len) || lease < 0)
		return -EINVAL;
	kura_etcd_req_put(&w, key, val, len, lease);
	return simple(e, "/v3/kv/put", &w);
}

int kura_etcd_delete(struct kura_etcd *e, const char *key)
{
	struct kura_jw w;

	if (!key_ok(key))
		return -EINVAL;
	kura_etcd_req_key(&w, key, 0, 0);
	return simple(e, "/v3/kv/deleterange", &w);
}

static int txn_args_ok(const struct kura_etcd_cmp *cmp, size_t ncmp,
		       const struct kura_etcd_op *ops, size_t nops)
{
	if ((ncmp && !cmp) || (nops && !ops))
		return 0;
	for (size_t i = 0; i < ncmp; i++)
		if (!key_ok(cmp[i].key) || cmp[i].mod_rev < 0)
			return 0;
	for (size_t i = 0; i < nops; i++)
		if (!key_ok(ops[i].key) || ops[i].lease < 0 || (!ops[i].val && ops[i].len))
			return 0;
	return 1;
}

int kura_etcd_txn(struct kura_etcd *e, const struct kura_etcd_cmp *cmp, size_t ncmp,
		  const struct kura_etcd_op *ops, size_t nops, int *ok, int64_t *rev)
{
	struct kura_json *a;
	struct kura_jw w;
	int64_t r;
	int err;

	*ok = 0;
	if (!txn_args_ok(cmp, ncmp, ops, nops))
		return -EINVAL;
	kura_etcd_req_txn(&w, cmp, ncmp, ops, nops);
	/* applied twice, a transaction would report its own first run as a
	 * failed comparison */
	err = call(e, "/v3/kv/txn", &w, 1, &a);
	if (!err)
		err = kura_etcd_j_txn(a, ops, nops, ok, &r, e->where);
	kura_json_free(a);
	if (err)
		*ok = 0;
	else if (rev)
		*rev = r;
	return err;
}

/* ---- leases ---- */

int kura_etcd_lease_grant(struct kura_etcd *e, unsigned ttl_s, int64_t *id)
{
	struct kura_json *a;
	struct kura_jw w;
	int64_t ttl;
	int err;

	*id = 0;
	if (!ttl_s)
		return -EINVAL;
	/* granted again after a lost answer, a lease just expires unused */
	kura_etcd_req_int(&w, "TTL", ttl_s);
	err = call(e, "/v3/lease/grant", &w, 0, &a);
	if (!err)
		err = kura_etcd_j_lease(a, 0, id, &ttl, e->where);
	kura_json_free(a);
	if (err)
		*id = 0;
	return err;
}

int kura_etcd_lease_keepalive(struct kura_etcd *e, int64_t id, int64_t *ttl_left)
{
	struct kura_json *a;
	struct kura_jw w;
	int64_t ttl;
	int err;

	if (id <= 0)
		return -EINVAL;
	kura_etcd_req_int(&w, "ID", id);
	err = call(e, "/v3/lease/keepalive", &w, 0, &a);
	if (!err)
		err = kura_etcd_j_lease(a, id, &id, &ttl, e->where);
	kura_json_free(a);
	/* etcd answers for a lease it no longer has with TTL 0 (so, left out) */
	if (!err && ttl <= 0)
		err = -ENOENT;
	if (!err && ttl_left)
		*ttl_left = ttl;
	return err;
}

int kura_etcd_lease_revoke(struct kura_etcd *e, int64_t id)
{
	struct kura_jw w;
	int err;

	if (id <= 0)
		return -EINVAL;
	/* etcd 3.4 serves this path and the older /v3/kv/lease/revoke */
	kura_etcd_req_int(&w, "ID", id);
	err = simple(e, "/v3/lease/revoke", &w);
	return err == -ENOENT ? 0 : err;
}

/* ---- watch ---- */

struct watch {
	struct kura_etcd *e;
	const char *prefix;
	int64_t next_rev; /* events must not go back before this revision */
	kura_etcd_watch_fn fn;
	void *arg;
	int created;  /* etcd confirmed the watch */
	int fn_done;  /* fn returned fn_rc, which the watch returns */
	int fn_rc;
};

static int watch_event(struct watch *w, const struct kura_etcd_wmsg *m, size_t i)
{
	struct kura_etcd_kv kv;
	enum kura_etcd_event ev;
	int err = kura_etcd_j_event(m, i, &ev, &kv, w->e->where);

	if (err)
		return err;
	if (strncmp(kv.key, w->prefix, strlen(w->prefix)) || kv.mod_rev < w->next_rev) {
		kura_log(WARN, "etcd %s: event for %s at revision %lld %s", w->e->where, kv.key,
			 (long long)kv.mod_rev,
			 kv.mod_rev < w->next_rev ? "goes back" : "is outside the prefix");
		kura_etcd_kv_free(&kv);
		return -EPROTO;
	}
	w->next_rev = kv.mod_rev;
	w->fn_rc = w->fn(w->arg, ev, &kv);
	kura_etcd_kv_free(&kv);
	w->fn_done = w->fn_rc != 0;
	return w->fn_rc;
}

/* One message: the confirmation first, then events, until a cancellation. */
static int watch_apply(struct watch *w, const struct kura_etcd_wmsg *m)
{
	const char *where = w->e->where;
	int err = 0;

	if (m->created == w->created) {
		kura_log(WARN, "etcd %s: watch message %s", where,
			 w->created ? "confirms the watch again" : "before the confirmation");
		return -EPROTO;
	}
	w->created = 1;
	if (m->canceled || m->compact_rev) {
		if (m->compact_rev)
			kura_log(INFO, "etcd %s: history before revision %lld is compacted",
				 where, (long long)m->compact_rev);
		else
			kura_log(WARN, "etcd %s: watch cancelled: %s", where,
				 *m->cancel_reason ? m->cancel_reason : "no reason given");
		return -ECANCELED;
	}
	for (size_t i = 0; i < m->nevents && !err; i++)
		err = watch_event(w, m, i);
	return err;
}

static int watch_line(struct watch *w, const char *text, size_t len)
{
	struct kura_etcd_wmsg m;
	struct kura_json *j;
	int err = kura_etcd_j_answer(text, len, 200, &j, w->e->where);

	if (!err && !(err = kura_etcd_j_wmsg(j, &m, w->e->where)))
		err = watch_apply(w, &m);
	kura_json_free(j);
	return err;
}

/* Hands every complete message received so far to watch_line(). The gateway
 * ends each message of a stream with a newline and never puts one inside
 * (jsonpb escapes it); curl may cut messages anywhere, so the rest waits,
 * and is not searched again, for the next data. */
static int watch_lines(struct watch *w)
{
	struct answer *a = &w->e->ans;
	size_t done = 0, from = a->scanned;
	long status = 0;
	char *nl;
	int err = 0;

	curl_easy_getinfo(w->e->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		return 0; /* an error answer is read whole when the transfer ends */
	while (!err && from < a->len && (nl = memchr(a->buf + from, '\n', a->len - from))) {
		err = watch_line(w, a->buf + done, (size_t)(nl - a->buf) - done);
		done = from = (size_t)(nl - a->buf) + 1;
	}
	if (done) {
		memmove(a->buf, a->buf + done, a->len - done);
		a->len -= done;
		a->buf[a->len] = '\0';
	}
	a->scanned = a->len;
	return err;
}

/* The stream ended: how (-EAGAIN when it broke or etcd closed it). */
static int watch_ended(struct watch *w, CURLM *m)
{
	struct kura_json *a = NULL;
	CURLcode c = CURLE_OK;
	long status = 0;
	CURLMsg *msg;
	int left, sent, err = -EAGAIN;

	while ((msg = curl_multi_info_read(m, &left)))
		if (msg->msg == CURLMSG_DONE)
			c = msg->data.result;
	curl_easy_getinfo(w->e->curl, CURLINFO_RESPONSE_CODE, &status);
	if (c != CURLE_OK)
		err = transport_error(w->e, c, &sent);
	else if (status != 200)
		err = parse_answer(w->e, &a); /* etcd's error, never 0 */
	kura_json_free(a);
	if (err == -EAGAIN && w->created)
		kura_log(INFO, "etcd %s: watch stream ended: %s", w->e->where,
			 c != CURLE_OK ? curl_easy_strerror(c) : "closed by etcd");
	return err;
}

/* The watch on member i, until it ends, *stop is set or fn says so. */
static int watch_on(struct watch *w, size_t i, const char *body, size_t len,
		    const atomic_int *stop)
{
	struct kura_etcd *e = w->e;
	uint64_t deadline = kura_now_ns() + (uint64_t)e->timeout_ms * 1000000;
	CURLM *m = curl_multi_init();
	int running = 1, err = 0;
	CURLMcode mc = CURLM_OK;

	if (!m)
		return -ENOMEM;
	if (prepare(e, i, "/v3/watch", body, len, 1) || curl_multi_add_handle(m, e->curl)) {
		curl_multi_cleanup(m);
		return -ENOMEM;
	}
	while (!atomic_load(stop)) {
		mc = curl_multi_perform(m, &running);
		if (mc || (err = watch_lines(w)))
			break;
		if (!running) {
			err = watch_ended(w, m);
			break;
		}
		if (!w->created && kura_now_ns() > deadline) {
			kura_log(DEBUG, "etcd %s: no confirmation of the watch", e->where);
			err = -EAGAIN;
			break;
		}
		mc = curl_multi_poll(m, NULL, 0, WATCH_POLL_MS, NULL);
		if (mc)
			break;
	}
	if (mc)
		err = mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
	if (w->created)
		remember(e, i);
	curl_multi_remove_handle(m, e->curl);
	curl_multi_cleanup(m);
	answer_reset(&e->ans);
	return err;
}

int kura_etcd_watch(struct kura_etcd *e, const char *prefix, int64_t start_rev,
		    kura_etcd_watch_fn fn, void *arg, const atomic_int *stop)
{
	struct watch w = { .e = e, .prefix = prefix, .next_rev = start_rev, .fn = fn, .arg = arg };
	size_t len, first = e->cur;
	const char *body;
	struct kura_jw jw;
	int err = -EAGAIN;

	if (!prefix || !fn || !stop || start_rev < 0)
		return -EINVAL;
	kura_etcd_req_watch(&jw, prefix, start_rev);
	body = kura_jw_finish(&jw, &len);
	if (!body)
		err = -ENOMEM;
	/* members are tried in turn until one confirms the watch */
	for (size_t k = 0; k < e->nurls && err == -EAGAIN && !w.created; k++)
		err = watch_on(&w, nth(first, k), body, len, stop);
	kura_jw_free(&jw);
	if (w.fn_done)
		return w.fn_rc;
	return err == -EAGAIN ? -EHOSTUNREACH : err;
}
