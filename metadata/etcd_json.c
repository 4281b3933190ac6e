/* etcd's gateway JSON: request members and answer decoding; the contract is
 * in etcd_json.h.
 *
 * The gateway marshals etcd's protobuf messages with jsonpb: 64-bit integers
 * become decimal strings, bytes become base64, enums become their names, and
 * members equal to their default value are left out. Decoders hold answers
 * to exactly that, so that a proxy or a broken member that sends something
 * else is noticed at the first wrong field rather than deep in a caller.
 */
#include "metadata/etcd_json.h"

#include "common/base64.h"
#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad(const char *where, const char *field, const char *why)
{
	kura_log(WARN, "etcd %s: answer field \"%s\" %s", where, field, why);
	return -EPROTO;
}

/* ---- requests ---- */

static void jw_bytes(struct kura_jw *w, const char *name, const void *p, size_t len)
{
	char *b = malloc(KURA_B64_ENC_LEN(len));

	if (!b) {
		w->err = -ENOMEM;
		return;
	}
	kura_b64_encode(p, len, b);
	kura_jw_str(w, name, b);
	free(b);
}

static void jw_key(struct kura_jw *w, const char *name, const char *key)
{
	jw_bytes(w, name, key, strlen(key));
}

/* 64-bit integers go as strings, the way etcd sends them */
static void jw_int(struct kura_jw *w, const char *name, int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRId64, v);
	kura_jw_str(w, name, s);
}

/* "key" and "range_end" for every key starting with prefix. The end is the
 * prefix with its last byte below 0xff incremented and what follows dropped;
 * "\0" (etcd's "to the last key") when there is no such byte, and "\0" is
 * also where the empty prefix starts. */
static void jw_range(struct kura_jw *w, const char *prefix)
{
	size_t n = strlen(prefix);
	char *end = malloc(n + 1);

	if (!end) {
		w->err = -ENOMEM;
		return;
	}
	memcpy(end, prefix, n);
	while (n > 0 && (unsigned char)end[n - 1] == 0xff)
		n--;
	if (n > 0)
		end[n - 1]++;
	jw_bytes(w, "key", prefix, *prefix ? strlen(prefix) : 1);
	jw_bytes(w, "range_end", n ? end : "", n ? n : 1);
	free(end);
}

static void jw_put(struct kura_jw *w, const char *key, const void *val, size_t len,
		   int64_t lease)
{
	jw_key(w, "key", key);
	jw_bytes(w, "value", val, len);
	if (lease)
		jw_int(w, "lease", lease);
}

void kura_etcd_req_empty(struct kura_jw *w)
{
	kura_jw_init(w);
	kura_jw_obj(w, NULL);
	kura_jw_end(w);
}

void kura_etcd_req_key(struct kura_jw *w, const char *key, int prefix, int keys_only)
{
	kura_jw_init(w);
	kura_jw_obj(w, NULL);
	if (prefix)
		jw_range(w, key);
	else
		jw_key(w, "key", key);
	if (keys_only)
		kura_jw_bool(w, "keys_only", 1);
	kura_jw_end(w);
}

void kura_etcd_req_int(struct kura_jw *w, const char *name, int64_t v)
{
	kura_jw_init(w);
	kura_jw_obj(w, NULL);
	jw_int(w, name, v);
	kura_jw_end(w);
}

void kura_etcd_req_put(struct kura_jw *w, const char *key, const void *val, size_t len,
		       int64_t lease)
{
	kura_jw_init(w);
	kura_jw_obj(w, NULL);
	jw_put(w, key, val, len, lease);
	kura_jw_end(w);
}

void kura_etcd_req_txn(struct kura_jw *w, const struct kura_etcd_cmp *cmp, size_t ncmp,
		       const struct kura_etcd_op *ops, size_t nops)
{
	kura_jw_init(w);
	kura_jw_obj(w, NULL);
	kura_jw_arr(w, "compare");
	for (size_t i = 0; i < ncmp; i++) {
		kura_jw_obj(w, NULL);
		jw_key(w, "key", cmp[i].key);
		kura_jw_str(w, "target", "MOD");
		kura_jw_str(w, "result", "EQUAL");
		jw_int(w, "mod_revision", cmp[i].mod_rev);
		kura_jw_end(w);
	}
	kura_jw_end(w);
	kura_jw_arr(w, "success");
	for (size_t i = 0; i < nops; i++) {
		kura_jw_obj(w, NULL);
		kura_jw_obj(w, ops[i].val ? "request_put" : "request_delete_range");
		if (ops[i].val)
			jw_put(w, ops[i].key, ops[i].val, ops[i].len, ops[i].lease);
		else
			jw_key(w, "key", ops[i].key);
		kura_jw_end(w);
		kura_jw_end(w);
	}
	kura_jw_end(w);
	kura_jw_end(w);
}

void kura_etcd_req_watch(struct kura_jw *w, const char *prefix, int64_t start_rev)
{
	kura_jw_init(w);
	kura_jw_obj(w, NULL);
	kura_jw_obj(w, "create_request");
	jw_range(w, prefix);
	if (start_rev)
		jw_int(w, "start_revision", start_rev);
	kura_jw_end(w);
	kura_jw_end(w);
}

/* ---- numbers and flags ---- */

/* Decimal digits only, no sign, no leading zero: what jsonpb writes. */
static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s || (s[0] == '0' && s[1]))
		return -1;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static int parse_i64(const char *s, int64_t *out)
{
	int neg = s[0] == '-';
	uint64_t mag;

	if (parse_u64(s + neg, &mag) || (neg && !mag) || mag > (uint64_t)INT64_MAX + neg)
		return -1;
	/* written so that -2^63 never overflows on the way */
	*out = neg ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;
	return 0;
}

static int want_obj(const struct kura_json *v, const char *field, const char *where)
{
	if (kura_json_type(v) != KURA_JSON_OBJ)
		return bad(where, field, "is missing or not an object");
	return 0;
}

/* The text of member name, "" when absent, NULL when not a string. */
static const char *str_member(const struct kura_json *o, const char *name)
{
	const struct kura_json *v = kura_json_get(o, name);

	return v ? kura_json_str(v) : "";
}

/* The text of number member name: NULL when absent; -1 when not a string. */
static int num_member(const struct kura_json *o, const char *name, const char **s)
{
	const struct kura_json *v = kura_json_get(o, name);

	*s = v ? kura_json_str(v) : NULL;
	return v && !*s ? -1 : 0;
}

int kura_etcd_j_i64(const struct kura_json *o, const char *name, int64_t *out,
		    const char *where)
{
	const char *s;

	*out = 0;
	if (num_member(o, name, &s) || (s && parse_i64(s, out)))
		return bad(where, name, "is not a 64-bit integer in a string");
	return 0;
}

int kura_etcd_j_rev(const struct kura_json *o, const char *name, int64_t *out,
		    const char *where)
{
	int err = kura_etcd_j_i64(o, name, out, where);

	if (!err && *out < 0)
		return bad(where, name, "is negative");
	return err;
}

int kura_etcd_j_u64(const struct kura_json *o, const char *name, uint64_t *out,
		    const char *where)
{
	const char *s;

	*out = 0;
	if (num_member(o, name, &s) || (s && parse_u64(s, out)))
		return bad(where, name, "is not an unsigned 64-bit integer in a string");
	return 0;
}

int kura_etcd_j_bool(const struct kura_json *o, const char *name, int *out, const char *where)
{
	const struct kura_json *v = kura_json_get(o, name);

	*out = 0;
	if (v && kura_json_bool(v, out))
		return bad(where, name, "is not a boolean");
	return 0;
}

/* ---- keys, values, headers ---- */

/* Base64 member name decoded into a new buffer with a NUL after it; absent
 * is "". A key must be non-empty and free of NUL bytes, because keys are C
 * strings on this side. */
static int get_bytes(const struct kura_json *o, const char *name, int is_key, char **out,
		     size_t *len, const char *where)
{
	const char *s = str_member(o, name);
	size_t slen;
	char *buf;
	long n;

	if (!s)
		return bad(where, name, "is not a string");
	slen = strlen(s); /* the JSON reader refuses NULs inside strings */
	buf = malloc(KURA_B64_DEC_LEN(slen));
	if (!buf)
		return -ENOMEM;
	n = kura_b64_decode(s, slen, buf);
	if (n < 0 || (is_key && (n == 0 || memchr(buf, '\0', (size_t)n)))) {
		free(buf);
		return bad(where, name,
			   n < 0 ? "is not canonical base64" : n ? "holds a NUL byte" : "is empty");
	}
	*out = buf;
	*len = (size_t)n;
	return 0;
}

int kura_etcd_j_header(const struct kura_json *ans, int64_t *rev, uint64_t *cluster_id,
		       const char *where)
{
	const struct kura_json *h = kura_json_get(ans, "header");
	uint64_t cluster, member, term;
	int64_t r;
	int err;

	if ((err = want_obj(h, "header", where)) ||
	    (err = kura_etcd_j_u64(h, "cluster_id", &cluster, where)) ||
	    (err = kura_etcd_j_u64(h, "member_id", &member, where)) ||
	    (err = kura_etcd_j_rev(h, "revision", &r, where)) ||
	    (err = kura_etcd_j_u64(h, "raft_term", &term, where)))
		return err;
	if (rev)
		*rev = r;
	if (cluster_id)
		*cluster_id = cluster;
	return 0;
}

static int get_kv(const struct kura_json *o, struct kura_etcd_kv *kv, const char *where)
{
	size_t klen;
	int err;

	memset(kv, 0, sizeof(*kv));
	if ((err = want_obj(o, "kv", where)))
		return err;
	err = get_bytes(o, "key", 1, &kv->key, &klen, where);
	if (!err)
		err = get_bytes(o, "value", 0, &kv->val, &kv->val_len, where);
	if (!err && !(err = kura_etcd_j_rev(o, "create_revision", &kv->create_rev, where)) &&
	    !(err = kura_etcd_j_rev(o, "mod_revision", &kv->mod_rev, where)) &&
	    !(err = kura_etcd_j_rev(o, "version", &kv->version, where)))
		err = kura_etcd_j_rev(o, "lease", &kv->lease, where);
	if (err)
		kura_etcd_kv_free(kv);
	return err;
}

/* ---- range ---- */

static int range_key_ok(const struct kura_etcd_kv *kvs, size_t i, const char *prefix,
			int exact, const char *where)
{
	if (exact ? strcmp(kvs[i].key, prefix) != 0
		  : strncmp(kvs[i].key, prefix, strlen(prefix)) != 0)
		return bad(where, "kvs.key", "is outside the range asked for");
	if (i > 0 && strcmp(kvs[i - 1].key, kvs[i].key) >= 0)
		return bad(where, "kvs.key", "is not in ascending order");
	return 0;
}

int kura_etcd_j_range(const struct kura_json *ans, const char *prefix, int exact,
		      struct kura_etcd_kv **kvs, size_t *n, int64_t *rev, const char *where)
{
	const struct kura_json *arr = kura_json_get(ans, "kvs");
	struct kura_etcd_kv *out;
	size_t cnt = kura_json_len(arr), i;
	int64_t count;
	int more, err;

	*kvs = NULL;
	*n = 0;
	if ((err = kura_etcd_j_header(ans, rev, NULL, where)) ||
	    (err = kura_etcd_j_rev(ans, "count", &count, where)) ||
	    (err = kura_etcd_j_bool(ans, "more", &more, where)))
		return err;
	if (arr && kura_json_type(arr) != KURA_JSON_ARR)
		return bad(where, "kvs", "is not an array");
	/* no limit was asked for, so etcd sends every key it counts */
	if ((uint64_t)count != cnt || more)
		return bad(where, "count", "differs from the keys sent");
	if (exact && cnt > 1)
		return bad(where, "kvs", "holds more than one key for one key asked for");
	if (!cnt)
		return 0;
	out = calloc(cnt, sizeof(*out));
	if (!out)
		return -ENOMEM;
	for (i = 0; i < cnt; i++) {
		err = get_kv(kura_json_at(arr, i), &out[i], where);
		if (err)
			break;
		err = range_key_ok(out, i, prefix, exact, where);
		if (err) {
			i++;
			break;
		}
	}
	if (err) {
		kura_etcd_kvs_free(out, i);
		return err;
	}
	*kvs = out;
	*n = cnt;
	return 0;
}

/* ---- status, leases, transactions ---- */

int kura_etcd_j_status(const struct kura_json *ans, int64_t *rev, uint64_t *cluster_id,
		       const char *where)
{
	const struct kura_json *errs = kura_json_get(ans, "errors");
	const char *version = str_member(ans, "version");
	uint64_t leader, index, term, applied;
	int64_t size, in_use;
	int err;

	if ((err = kura_etcd_j_header(ans, rev, cluster_id, where)) ||
	    (err = kura_etcd_j_u64(ans, "leader", &leader, where)) ||
	    (err = kura_etcd_j_u64(ans, "raftIndex", &index, where)) ||
	    (err = kura_etcd_j_u64(ans, "raftTerm", &term, where)) ||
	    (err = kura_etcd_j_u64(ans, "raftAppliedIndex", &applied, where)) ||
	    (err = kura_etcd_j_rev(ans, "dbSize", &size, where)) ||
	    (err = kura_etcd_j_rev(ans, "dbSizeInUse", &in_use, where)))
		return err;
	if (!version || !*version)
		return bad(where, "version", "is missing or not a string");
	if (errs && kura_json_type(errs) != KURA_JSON_ARR)
		return bad(where, "errors", "is not an array");
	for (size_t i = 0; i < kura_json_len(errs); i++) {
		const char *e = kura_json_str(kura_json_at(errs, i));
		if (!e)
			return bad(where, "errors", "holds something other than strings");
		kura_log(WARN, "etcd %s: member reports: %s", where, e);
	}
	return 0;
}

int kura_etcd_j_lease(const struct kura_json *ans, int64_t kept, int64_t *id, int64_t *ttl,
		      const char *where)
{
	const char *error;
	int err;

	/* keepalive is a stream in gRPC: through the gateway, one request
	 * gets one "result" */
	if (kept && (err = want_obj(ans = kura_json_get(ans, "result"), "result", where)))
		return err;
	error = str_member(ans, "error");
	if ((err = kura_etcd_j_header(ans, NULL, NULL, where)) ||
	    (err = kura_etcd_j_rev(ans, "ID", id, where)) ||
	    (err = kura_etcd_j_i64(ans, "TTL", ttl, where)))
		return err;
	if (!error)
		return bad(where, "error", "is not a string");
	if (*error) {
		kura_log(WARN, "etcd %s: refused: %s", where, error);
		return -EIO;
	}
	if (kept && *id != kept)
		return bad(where, "ID", "is not the lease kept alive");
	if (!kept && (*id <= 0 || *ttl <= 0))
		return bad(where, "ID", "or \"TTL\" of a new lease is not positive");
	return 0;
}

/* One response of a transaction that succeeded: the kind of the op sent. */
static int txn_response(const struct kura_json *r, const struct kura_etcd_op *op,
			const char *where)
{
	const char *kind = op->val ? "response_put" : "response_delete_range";
	const struct kura_json *body = kura_json_get(r, kind);
	int64_t deleted;
	int err;

	if (kura_json_len(r) != 1 || !body)
		return bad(where, "responses", "does not match the ops sent");
	if ((err = want_obj(body, kind, where)) ||
	    (err = kura_etcd_j_header(body, NULL, NULL, where)))
		return err;
	return op->val ? 0 : kura_etcd_j_rev(body, "deleted", &deleted, where);
}

int kura_etcd_j_txn(const struct kura_json *ans, const struct kura_etcd_op *ops, size_t nops,
		    int *ok, int64_t *rev, const char *where)
{
	const struct kura_json *rs = kura_json_get(ans, "responses");
	int err;

	if ((err = kura_etcd_j_header(ans, rev, NULL, where)) ||
	    (err = kura_etcd_j_bool(ans, "succeeded", ok, where)))
		return err;
	if (rs && kura_json_type(rs) != KURA_JSON_ARR)
		return bad(where, "responses", "is not an array");
	/* the failure branch was sent empty */
	if (kura_json_len(rs) != (*ok ? nops : 0))
		return bad(where, "responses", "does not match the ops sent");
	for (size_t i = 0; i < kura_json_len(rs); i++)
		if ((err = txn_response(kura_json_at(rs, i), &ops[i], where)))
			return err;
	return 0;
}

/* ---- watch ---- */

int kura_etcd_j_wmsg(const struct kura_json *msg, struct kura_etcd_wmsg *m, const char *where)
{
	const struct kura_json *r = kura_json_get(msg, "result");
	int64_t id;
	int fragment, err;

	memset(m, 0, sizeof(*m));
	if ((err = want_obj(r, "result", where)) ||
	    (err = kura_etcd_j_header(r, NULL, NULL, where)) ||
	    (err = kura_etcd_j_rev(r, "watch_id", &id, where)) ||
	    (err = kura_etcd_j_bool(r, "created", &m->created, where)) ||
	    (err = kura_etcd_j_bool(r, "canceled", &m->canceled, where)) ||
	    (err = kura_etcd_j_bool(r, "fragment", &fragment, where)) ||
	    (err = kura_etcd_j_rev(r, "compact_revision", &m->compact_rev, where)))
		return err;
	m->cancel_reason = str_member(r, "cancel_reason");
	if (!m->cancel_reason)
		return bad(where, "cancel_reason", "is not a string");
	/* fragments are sent only to watchers that ask for them; this one does not */
	if (fragment)
		return bad(where, "fragment", "is set on a watch that did not ask for it");
	m->events = kura_json_get(r, "events");
	if (m->events && kura_json_type(m->events) != KURA_JSON_ARR)
		return bad(where, "events", "is not an array");
	m->nevents = kura_json_len(m->events);
	return 0;
}

int kura_etcd_j_event(const struct kura_etcd_wmsg *m, size_t i, enum kura_etcd_event *ev,
		      struct kura_etcd_kv *kv, const char *where)
{
	const struct kura_json *e = kura_json_at(m->events, i);
	const char *type = str_member(e, "type");
	int err;

	if (kura_json_type(e) != KURA_JSON_OBJ)
		return bad(where, "events", "holds something other than objects");
	if (!type || (*type && strcmp(type, "PUT") && strcmp(type, "DELETE")))
		return bad(where, "events.type", "is neither PUT nor DELETE");
	*ev = strcmp(type, "DELETE") == 0 ? KURA_ETCD_DELETE : KURA_ETCD_PUT;
	err = get_kv(kura_json_get(e, "kv"), kv, where);
	if (!err && *ev == KURA_ETCD_DELETE && kv->val_len) {
		kura_etcd_kv_free(kv);
		return bad(where, "events.kv.value", "is set in a delete event");
	}
	return err;
}

/* ---- errors ---- */

/* gRPC status codes the gateway forwards (google.golang.org/grpc/codes). */
enum {
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_NOT_FOUND = 5,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNAVAILABLE = 14,
	GRPC_MAX = 16,
};

int kura_etcd_j_error(const struct kura_json *ans, long http_status, const char *where)
{
	const struct kura_json *e = kura_json_get(ans, "error"), *c;
	const char *msg;
	int64_t code;

	/* inside a stream the gateway nests the error; for calls it is flat */
	if (e && kura_json_type(e) == KURA_JSON_OBJ) {
		c = kura_json_get(e, "grpc_code");
		msg = str_member(e, "message");
	} else {
		c = kura_json_get(ans, "code");
		msg = str_member(ans, "message");
	}
	if (!c || kura_json_i64(c, &code) || code <= 0 || code > GRPC_MAX || !msg) {
		kura_log(WARN, "etcd %s: HTTP status %ld with an error that is not etcd's",
			 where, http_status);
		return -EPROTO;
	}
	switch (code) {
	case GRPC_NOT_FOUND:
		return -ENOENT;
	case GRPC_UNAVAILABLE:
	case GRPC_DEADLINE_EXCEEDED:
		kura_log(INFO, "etcd %s: member cannot serve: %s", where, msg);
		return -EAGAIN;
	case GRPC_INVALID_ARGUMENT:
	case GRPC_OUT_OF_RANGE:
		kura_log(WARN, "etcd %s: refused: %s", where, msg);
		return -EINVAL;
	default:
		kura_log(WARN, "etcd %s: refused (gRPC code %" PRId64 "): %s", where, code, msg);
		return -EIO;
	}
}

int kura_etcd_j_answer(const char *text, size_t len, long http_status, struct kura_json **out,
		       const char *where)
{
	const struct kura_json *e;
	struct kura_json *a;
	char why[128];
	int err = kura_json_parse(text, len, &a, why, sizeof(why));

	*out = NULL;
	if (err == -ENOMEM)
		return err;
	if (err || kura_json_type(a) != KURA_JSON_OBJ) {
		kura_log(WARN, "etcd %s: HTTP status %ld, answer not a JSON object: %s", where,
			 http_status, err ? why : "another type");
		kura_json_free(a);
		return -EPROTO;
	}
	/* a 200 answer has an "error" object only when a stream failed */
	e = kura_json_get(a, "error");
	if (http_status != 200 || kura_json_type(e) == KURA_JSON_OBJ) {
		err = kura_etcd_j_error(a, http_status, where);
		kura_json_free(a);
		return err;
	}
	*out = a;
	return 0;
}
