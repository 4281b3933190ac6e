/* Cluster control requests (cluster_init, cluster_status; cluster_out and
 * cluster_remove are member_ask.c's) and the records
 * the member keeps in etcd (replication/member.h). */
#include "replication/member_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

/* ---- records ---- */

int member_parse_cluster(const char *text, size_t len, struct mcluster *out)
{
	struct kura_json *j;
	const char *id;
	uint64_t replicas, pgs;
	int err = kura_json_parse(text, len, &j, NULL, 0);

	if (err)
		return err;
	memset(out, 0, sizeof(*out));
	if (kura_json_get_str(j, "id", &id) || strlen(id) != 36 ||
	    kura_json_get_u64(j, "replicas", &replicas) || !replicas ||
	    replicas > KURA_MAP_MAX_REPLICAS || kura_json_get_u64(j, "pgs", &pgs) || !pgs ||
	    pgs > KURA_MAP_PGS_MAX || (pgs & (pgs - 1)) ||
	    kura_json_get_u64(j, "out_after_ms", &out->out_after_ms)) {
		kura_json_free(j);
		return -EINVAL;
	}
	kura_json_get_u64(j, "created_ms", &out->created_ms);
	memcpy(out->id, id, 37);
	out->replicas = (unsigned)replicas;
	out->pgs = (unsigned)pgs;
	kura_json_free(j);
	return 0;
}

static int copy_field(const struct kura_json *j, const char *key, char *dst, size_t cap)
{
	const char *s;

	if (kura_json_get_str(j, key, &s) || !*s || strlen(s) >= cap)
		return -EINVAL;
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

int member_parse_reg(const char *key, const char *text, size_t len, struct mreg *out)
{
	struct kura_json *j;
	int err = kura_json_parse(text, len, &j, NULL, 0);

	if (err)
		return err;
	memset(out, 0, sizeof(*out));
	if (copy_field(j, "name", out->n.name, sizeof(out->n.name)) ||
	    copy_field(j, "addr", out->n.addr, sizeof(out->n.addr)) ||
	    copy_field(j, "domain", out->n.domain, sizeof(out->n.domain)) ||
	    strcmp(key + strlen(KEY_NODES), out->n.name))
		err = -EINVAL;
	kura_json_get_u64(j, "capacity", &out->capacity);
	kura_json_get_u64(j, "used", &out->used);
	kura_json_get_u64(j, "started_ms", &out->started_ms);
	out->n.started_ms = out->started_ms;
	kura_json_get_u64(j, "synced_ms", &out->n.synced_ms);
	kura_json_get_u64(j, "synced_epoch", &out->n.synced_epoch);
	kura_json_get_u64(j, "filled_epoch", &out->n.filled_epoch);
	member_asks_parse(j, &out->n);
	{
		const struct kura_json *u = kura_json_get(j, "unreachable");

		for (size_t i = 0; i < kura_json_len(u) && out->n.nunreach < KURA_MAP_UNREACH_MAX;
		     i++) {
			const char *name = kura_json_str(kura_json_at(u, i));

			if (kura_json_type(u) == KURA_JSON_ARR && name &&
			    strlen(name) < KURA_MAP_NAME_MAX)
				snprintf(out->n.unreach[out->n.nunreach++], KURA_MAP_NAME_MAX, "%s",
					 name);
		}
	}
	kura_json_free(j);
	return err;
}

int member_list_regs(struct kura_member *m, struct regtab *feed, int64_t *missed,
		     struct mreg **regs, size_t *n)
{
	struct kura_etcd_kv *kvs;
	size_t nkv, k = 0;
	int64_t rev = 0;
	int err = kura_etcd_list(m->etcd, KEY_NODES, &kvs, &nkv, &rev);

	if (err)
		return err;
	if (feed) {
		/* the table parses what is new in the listing; its copy also has
		 * whatever the watch brought after the listing was read */
		err = regtab_list(feed, kvs, nkv, rev, missed);
		kura_etcd_kvs_free(kvs, nkv);
		return err ? err : regtab_copy(feed, regs, n);
	}
	*regs = calloc(nkv ? nkv : 1, sizeof(**regs));
	if (!*regs) {
		kura_etcd_kvs_free(kvs, nkv);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nkv; i++) {
		if (member_parse_reg(kvs[i].key, kvs[i].val, kvs[i].val_len, &(*regs)[k])) {
			kura_log(WARN, "cluster: %s in etcd is not a node registration; ignored",
				 kvs[i].key);
			continue;
		}
		k++;
	}
	kura_etcd_kvs_free(kvs, nkv);
	*n = k;
	return 0;
}

/* ---- on the agent thread ---- */

static void agent_init(struct kura_member *m, struct mreq *r)
{
	struct kura_map map;
	struct kura_jw w;
	uuid_t u;
	char id[37], *mapjs = NULL;
	const char *cjs;
	int ok = 0;

	uuid_generate(u);
	uuid_unparse_lower(u, id);
	if (kura_map_init(&map, id, r->replicas, r->pgs, r->out_after_ms)) {
		r->err = -EINVAL;
		snprintf(r->msg, sizeof(r->msg), "--replicas must be 1 to %d and --pgs a power of "
			 "two up to %d", KURA_MAP_MAX_REPLICAS, KURA_MAP_PGS_MAX);
		return;
	}
	mapjs = kura_map_to_json(&map);
	kura_map_free(&map);
	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_str(&w, "id", id);
	kura_jw_u64(&w, "replicas", r->replicas);
	kura_jw_u64(&w, "pgs", r->pgs);
	kura_jw_u64(&w, "out_after_ms", r->out_after_ms);
	kura_jw_u64(&w, "created_ms", member_wall_ms());
	kura_jw_end(&w);
	cjs = kura_jw_finish(&w, NULL);
	if (!mapjs || !cjs) {
		r->err = -ENOMEM;
		snprintf(r->msg, sizeof(r->msg), "out of memory");
	} else {
		struct kura_etcd_cmp cmp[2] = { { KEY_CLUSTER, 0 }, { KEY_MAP, 0 } };
		struct kura_etcd_op ops[2] = { { KEY_CLUSTER, cjs, strlen(cjs), 0 },
					       { KEY_MAP, mapjs, strlen(mapjs), 0 } };

		r->err = kura_etcd_txn(m->etcd, cmp, 2, ops, 2, &ok, NULL);
		if (r->err)
			snprintf(r->msg, sizeof(r->msg), "etcd at %s: %s", m->endpoints,
				 strerror(-r->err));
		else if (!ok) {
			r->err = -EEXIST;
			snprintf(r->msg, sizeof(r->msg), "etcd at %s already holds a cluster; see "
				 "`vdisk cluster status`", m->endpoints);
		} else {
			snprintf(r->cluster_id, sizeof(r->cluster_id), "%s", id);
			kura_log(INFO, "cluster: created cluster %s (%u replicas, %u placement groups)",
				 id, r->replicas, r->pgs);
		}
	}
	free(mapjs);
	kura_jw_free(&w);
}

int member_agent_request(struct kura_member *m, struct mreq *r)
{
	if (r->kind == MREQ_ASK)
		return !member_ask_start(m, r);
	agent_init(m, r);
	return 0;
}

void member_post_answer(struct kura_member *m, struct mreq *r)
{
	atomic_fetch_add(&m->posted, 1);
	kura_loop_post(m->loop, &r->op, 0);
}

static void view_arrived(struct kura_op *op, int res)
{
	struct mview *v = KURA_CONTAINER_OF(op, struct mview, op);
	struct kura_member *m = v->m;

	(void)res;
	if (m->view) {
		free(m->view->regs);
		free(m->view);
	}
	m->view = v;
	atomic_fetch_add(&m->delivered, 1);
}

void member_post_view(struct kura_member *m, struct mreg *regs, size_t n)
{
	struct mview *v = calloc(1, sizeof(*v));

	if (!v) {
		free(regs);
		return;
	}
	v->op.fn = view_arrived;
	v->m = m;
	v->regs = regs;
	v->nregs = n;
	v->read_ms = member_wall_ms();
	snprintf(v->leader, sizeof(v->leader), "%s", m->leader_name);
	atomic_fetch_add(&m->posted, 1);
	kura_loop_post(m->loop, &v->op, 0);
}

/* ---- on the loop thread ---- */

static const struct mreg *find_reg(const struct mview *v, const char *name)
{
	for (size_t i = 0; v && i < v->nregs; i++)
		if (!strcmp(v->regs[i].n.name, name))
			return &v->regs[i];
	return NULL;
}

void member_status_json(struct kura_member *m, struct kura_jw *w)
{
	const struct kura_map *map = m->have_map ? &m->map : NULL;
	const struct mview *v = m->view;
	uint64_t failing = atomic_load(&m->etcd_failing_ms);
	struct kura_map_health h = { 0 };
	unsigned listed = 0;

	kura_jw_str(w, "etcd", m->endpoints);
	kura_jw_bool(w, "etcd_answers", !failing);
	if (failing)
		kura_jw_u64(w, "etcd_failing_since_ms", failing);
	/* the keys followed by watch (member_watch.c), of MEMBER_WATCHES */
	kura_jw_u64(w, "etcd_watches", (uint64_t)KURA_MAX(atomic_load(&m->watch_live), 0));
	/* the leader's registrations from a watch (regtab.h), not listed at every tick */
	kura_jw_bool(w, "registrations_watched", atomic_load(&m->regw_live) > 0);
	kura_jw_bool(w, "initialized", map != NULL);
	kura_jw_obj(w, "node");
	kura_jw_str(w, "name", m->name);
	kura_jw_str(w, "addr", m->addr);
	kura_jw_str(w, "domain", m->domain);
	kura_jw_bool(w, "may_ack", kura_member_may_ack(m));
	if (m->status)
		m->status(m->arg, w);
	kura_jw_end(w);
	if (!map)
		return;
	kura_map_health(map, &h);
	kura_jw_str(w, "cluster_id", map->cluster_id);
	kura_jw_u64(w, "epoch", map->epoch);
	kura_jw_str(w, "leader", v && v->leader[0] ? v->leader : NULL);
	kura_jw_str(w, "vdisk_service", m->svc_holder[0] ? m->svc_holder : NULL);
	kura_jw_u64(w, "nodes_read_ms", v ? v->read_ms : 0);
	kura_jw_u64(w, "replicas", map->replicas);
	kura_jw_u64(w, "out_after_ms", map->out_after_ms);
	kura_jw_arr(w, "nodes");
	for (unsigned i = 0; i < map->nnodes; i++) {
		const struct kura_map_node *n = &map->nodes[i];
		const struct mreg *g = find_reg(v, n->name);

		kura_jw_obj(w, NULL);
		kura_jw_str(w, "name", n->name);
		kura_jw_str(w, "addr", n->addr);
		kura_jw_str(w, "domain", n->domain);
		kura_jw_str(w, "state", kura_node_state_name(n->state));
		kura_jw_u64(w, "since_ms", n->since_ms);
		kura_jw_bool(w, "registered", g != NULL);
		kura_jw_u64(w, "capacity", g ? g->capacity : 0);
		kura_jw_u64(w, "used", g ? g->used : 0);
		kura_jw_end(w);
	}
	kura_jw_end(w);
	kura_jw_obj(w, "pgs");
	kura_jw_u64(w, "total", map->pgs);
	kura_jw_u64(w, "clean", h.clean);
	kura_jw_u64(w, "degraded", h.degraded);
	kura_jw_u64(w, "down", h.down);
	kura_jw_arr(w, "not_clean");
	for (uint32_t pg = 0; pg < map->pgs && listed < 64; pg++) {
		unsigned idx[KURA_MAP_MAX_REPLICAS], k = kura_map_place(map, pg, idx), up = 0;

		for (unsigned i = 0; i < k; i++)
			up += map->nodes[idx[i]].state == KURA_NODE_UP;
		if (up == map->replicas)
			continue;
		kura_jw_obj(w, NULL);
		kura_jw_u64(w, "pg", pg);
		kura_jw_arr(w, "replicas");
		for (unsigned i = 0; i < k; i++)
			kura_jw_str(w, NULL, map->nodes[idx[i]].name);
		kura_jw_end(w);
		kura_jw_u64(w, "up", up);
		kura_jw_end(w);
		listed++;
	}
	kura_jw_end(w);
	kura_jw_end(w);
}

static void ask_answer(struct kura_jw *out, const struct mreq *r)
{
	kura_jw_str(out, "node", r->ask.node);
	kura_jw_str(out, "state", r->state);
	kura_jw_u64(out, "epoch", r->epoch);
}

static void request_done(struct kura_op *op, int res)
{
	struct mreq *r = KURA_CONTAINER_OF(op, struct mreq, op);
	struct kura_member *m = r->m;

	(void)res;
	if (!r->err && r->kind == MREQ_ASK)
		ask_answer(r->out, r);
	else if (!r->err)
		kura_jw_str(r->out, "cluster_id", r->cluster_id);
	r->cb(r->arg, r->err, r->err ? r->msg : NULL);
	free(r);
	atomic_fetch_add(&m->delivered, 1);
}

static int parse_init(const struct kura_json *req, struct mreq *r, char *msg, size_t len)
{
	uint64_t v;
	int err;

	r->pgs = 256;
	r->out_after_ms = KURA_MEMBER_OUT_AFTER_MS;
	if ((err = kura_json_get_u64(req, "replicas", &v)) || !v || v > KURA_MAP_MAX_REPLICAS) {
		snprintf(msg, len, "give --replicas 1, 2 or 3");
		return -EINVAL;
	}
	r->replicas = (unsigned)v;
	err = kura_json_get_u64(req, "pgs", &v);
	if (err == -EINVAL || (!err && (!v || v > KURA_MAP_PGS_MAX || (v & (v - 1))))) {
		snprintf(msg, len, "--pgs must be a power of two from 1 to %d", KURA_MAP_PGS_MAX);
		return -EINVAL;
	}
	if (!err)
		r->pgs = (unsigned)v;
	err = kura_json_get_u64(req, "out_after_ms", &v);
	if (err == -EINVAL || (!err && v < 1000)) {
		snprintf(msg, len, "--out-after must be at least 1s");
		return -EINVAL;
	}
	if (!err)
		r->out_after_ms = v;
	return 0;
}

void kura_member_ctl(struct kura_member *m, const struct kura_json *req, struct kura_jw *out,
		     kura_vd_ctl_cb cb, void *arg)
{
	const char *op = "";
	char msg[256];
	struct mreq *r;
	int err;

	if (!m) {
		cb(arg, -ENOTSUP, "this node is not in a cluster (blockd runs without --cluster)");
		return;
	}
	kura_json_get_str(req, "op", &op);
	if (!(r = calloc(1, sizeof(*r)))) {
		cb(arg, -ENOMEM, "out of memory");
		return;
	}
	if (!strcmp(op, "cluster_init")) {
		r->kind = MREQ_INIT;
		if ((err = parse_init(req, r, msg, sizeof(msg)))) {
			free(r);
			cb(arg, err, msg);
			return;
		}
	} else if (!strcmp(op, "cluster_out") || !strcmp(op, "cluster_remove")) {
		err = member_ask_parse(m, req, !strcmp(op, "cluster_remove"), r, msg, sizeof(msg));
		if (err) {
			if (err > 0) /* done already */
				ask_answer(out, r);
			free(r);
			cb(arg, err > 0 ? 0 : err, err > 0 ? NULL : msg);
			return;
		}
	} else if (!strcmp(op, "cluster_status")) {
		/* from what the node holds: never waits for etcd */
		free(r);
		atomic_store(&m->view_wanted_ms, member_mono_ms());
		member_status_json(m, out);
		cb(arg, 0, NULL);
		return;
	} else {
		free(r);
		snprintf(msg, sizeof(msg), "unknown op %.64s", op);
		cb(arg, -EINVAL, msg);
		return;
	}
	r->op.fn = request_done;
	r->m = m;
	r->out = out;
	r->cb = cb;
	r->arg = arg;
	pthread_mutex_lock(&m->mu);
	r->next = m->reqs;
	m->reqs = r;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
}
