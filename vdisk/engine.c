/* The vdisk engine: the in-memory catalog (vdisks, layers, jobs), loading it,
 * writing its changes as catalog transactions, and resolving chains. */
#include "vdisk/vd_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vd_layer *vd_layer_get(struct kura_vd_engine *e, uint64_t id)
{
	for (struct vd_layer *l = e->layers; l; l = l->next)
		if (l->id == id)
			return l;
	return NULL;
}

struct vd_vdisk *vd_find(struct kura_vd_engine *e, const char *name)
{
	for (struct vd_vdisk *v = e->vdisks; v; v = v->next)
		if (!strcmp(v->name, name))
			return v;
	return NULL;
}

struct vd_vdisk *vd_get(struct kura_vd_engine *e, uint64_t id)
{
	for (struct vd_vdisk *v = e->vdisks; v; v = v->next)
		if (v->id == id)
			return v;
	return NULL;
}

struct vd_layer *vd_snap_find(struct kura_vd_engine *e, const struct vd_vdisk *v,
			      const char *snap)
{
	for (struct vd_layer *l = e->layers; l; l = l->next)
		if (l->vdisk == v->id && l->snap[0] && !strcmp(l->snap, snap))
			return l;
	return NULL;
}

unsigned vd_children(struct kura_vd_engine *e, uint64_t id, struct vd_layer **first)
{
	unsigned n = 0;

	if (first)
		*first = NULL;
	for (struct vd_layer *l = e->layers; l; l = l->next) {
		if (l->parent == id) {
			if (first && !n)
				*first = l;
			n++;
		}
	}
	return n;
}

uint64_t vd_new_id(struct kura_vd_engine *e)
{
	return e->next_id++;
}

int kura_vd_name_check(const char *name)
{
	return kura_name_ok(name, strlen(name)) ? 0 : -EINVAL;
}

/* ---- chains ---- */

void vd_chain_free(struct vd_chain *c)
{
	free(c->ids);
	free(c->lims);
	free(c->cache);
	memset(c, 0, sizeof(*c));
}

int vd_chain_build(struct kura_vd_engine *e, struct vd_chain *c, uint64_t id, uint64_t lim0)
{
	unsigned n = 0, cap = 0;
	uint64_t *ids = NULL, *lims = NULL, lim = lim0;

	while (id) {
		struct vd_layer *l = vd_layer_get(e, id);
		if (!l || n > 100000) {
			free(ids);
			free(lims);
			return -EUCLEAN;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			uint64_t *ni = realloc(ids, cap * sizeof(*ni));
			if (ni)
				ids = ni;
			uint64_t *nl = ni ? realloc(lims, cap * sizeof(*nl)) : NULL;
			if (!nl) {
				free(ids);
				free(lims);
				return -ENOMEM;
			}
			lims = nl;
		}
		ids[n] = id;
		lims[n] = lim;
		n++;
		lim = KURA_MIN(lim, l->clip);
		id = l->parent;
	}
	vd_chain_free(c);
	c->ids = ids;
	c->lims = lims;
	c->n = n;
	c->gen = e->tree_gen;
	/* Without memory for it, reads just look up every layer. */
	if (n > VD_CACHE_DEPTH && n <= 65)
		c->cache = calloc(1, sizeof(*c->cache));
	return 0;
}

int vd_chain_get(struct kura_vd_engine *e, struct vd_vdisk *v, struct vd_chain **out)
{
	if (!v->chain.n || v->chain.gen != e->tree_gen) {
		int err = vd_chain_build(e, &v->chain, v->top, UINT64_MAX);
		if (err)
			return err;
	}
	*out = &v->chain;
	return 0;
}

/* ---- records ---- */

static void put_json(struct kura_cat_txn *t, char kind, uint64_t id, struct kura_jw *w)
{
	const char *s = kura_jw_finish(w, NULL);

	if (!s)
		t->err = -ENOMEM;
	else
		kura_cat_txn_add(t, kind, id, s);
	kura_jw_free(w);
}

void vd_txn_vdisk(struct kura_cat_txn *t, const struct vd_vdisk *v)
{
	struct kura_jw w;

	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_str(&w, "name", v->name);
	kura_jw_u64(&w, "size", v->size);
	kura_jw_u64(&w, "top", v->top);
	kura_jw_u64(&w, "created", v->created);
	kura_jw_str(&w, "state", v->state == VD_BUILDING ? "building" : "ready");
	kura_jw_u64(&w, "job", v->job);
	if (v->scrubbed) {
		kura_jw_u64(&w, "scrubbed", v->scrubbed);
		kura_jw_u64(&w, "scrub_bad_blocks", v->scrub_bad);
	}
	kura_jw_end(&w);
	put_json(t, 'v', v->id, &w);
}

void vd_txn_layer(struct kura_cat_txn *t, const struct vd_layer *l)
{
	struct kura_jw w;

	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_u64(&w, "parent", l->parent);
	kura_jw_u64(&w, "vdisk", l->vdisk);
	kura_jw_u64(&w, "size", l->size);
	kura_jw_u64(&w, "clip", l->clip);
	kura_jw_u64(&w, "created", l->created);
	kura_jw_u64(&w, "job", l->job);
	kura_jw_str(&w, "snap", l->snap);
	kura_jw_bool(&w, "hidden", l->hidden);
	kura_jw_end(&w);
	put_json(t, 'l', l->id, &w);
}

void vd_txn_counter(struct kura_cat_txn *t, const struct kura_vd_engine *e)
{
	struct kura_jw w;

	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_u64(&w, "next", e->next_id);
	kura_jw_end(&w);
	put_json(t, 'n', 0, &w);
}

void vd_txn_job(struct kura_cat_txn *t, const struct vd_job *j)
{
	struct kura_jw w;

	kura_jw_init(&w);
	vd_job_json(&w, NULL, j);
	put_json(t, 'j', j->id, &w);
}

struct commit_ctx {
	struct kura_vd_engine *e;
	void (*cb)(void *arg, int err);
	void *arg;
};

static void commit_done(void *arg, int err)
{
	struct commit_ctx *cc = arg;
	struct kura_vd_engine *e = cc->e;

	e->commits--;
	e->commit_done_seq++;
	if (err && !e->cat_err)
		e->cat_err = err;
	if (cc->cb)
		cc->cb(cc->arg, err);
	free(cc);
	vd_jobs_kick(e);
}

void vd_commit(struct kura_vd_engine *e, struct kura_cat_txn *t, void (*cb)(void *arg, int err),
	       void *arg)
{
	struct commit_ctx *cc = calloc(1, sizeof(*cc));

	e->tree_gen++;
	vd_txn_counter(t, e);
	if (cc) {
		cc->e = e;
		cc->cb = cb;
		cc->arg = arg;
		e->commits++;
		e->commit_seq++;
		if (!kura_cat_commit(e->cat, t, commit_done, cc))
			return;
		e->commits--;
		e->commit_seq--;
		free(cc);
	}
	kura_cat_txn_free(t);
	/* Out of memory for the commit: the in-memory change stands but is not
	 * durable; refuse further changes so the two cannot drift apart. */
	e->cat_err = -ENOMEM;
	kura_log(ERR, "catalog commit: out of memory; restart blockd");
	if (cb)
		cb(arg, -ENOMEM);
}

/* ---- unlinking ---- */

void vd_layer_unlink(struct kura_vd_engine *e, struct vd_layer *l)
{
	for (struct vd_layer **p = &e->layers; *p; p = &(*p)->next) {
		if (*p == l) {
			*p = l->next;
			free(l);
			e->tree_gen++;
			return;
		}
	}
}

void vd_vdisk_unlink(struct kura_vd_engine *e, struct vd_vdisk *v)
{
	for (struct vd_vdisk **p = &e->vdisks; *p; p = &(*p)->next) {
		if (*p == v) {
			*p = v->next;
			vd_chain_free(&v->chain);
			free(v);
			return;
		}
	}
}

void vd_layer_gc(struct kura_vd_engine *e, uint64_t id, struct kura_cat_txn *t)
{
	struct vd_layer *l = vd_layer_get(e, id), *child;
	struct vd_job *j;
	unsigned n;

	if (!l || !l->hidden || l->job || l->top)
		return;
	/* A job still moving blocks into or out of it: that job's end runs
	 * this again. */
	for (j = e->jobs; j; j = j->next)
		if (j->state == JOB_RUNNING && (j->dst == id || j->src == id))
			return;
	n = vd_children(e, id, &child);
	if (n > 1)
		return;
	/* Its child is being merged into the child's own child: merging into
	 * it now would write into a layer about to go. That merge's end runs
	 * this again for the new child. */
	for (j = e->jobs; n && j; j = j->next)
		if (j->state == JOB_RUNNING && j->src == child->id)
			return;
	j = vd_job_new(e, n ? JOB_MERGE : JOB_FREE);
	if (!j) {
		t->err = -ENOMEM;
		return;
	}
	if (n) {
		j->src = id;
		j->dst = child->id;
	} else {
		j->layers = malloc(sizeof(*j->layers));
		if (!j->layers) {
			t->err = -ENOMEM;
			return;
		}
		j->layers[0] = id;
		j->nlayers = 1;
	}
	snprintf(j->source, sizeof(j->source), "layer %llu", (unsigned long long)id);
	l->job = j->id;
	vd_txn_layer(t, l);
	vd_txn_job(t, j);
}

/* ---- loading ---- */

static int get_u64(const struct kura_json *o, const char *k, uint64_t *out)
{
	int err = kura_json_get_u64(o, k, out);
	return err == -ENOENT ? (*out = 0, 0) : err;
}

static int copy_name(char *dst, size_t cap, const struct kura_json *o, const char *k)
{
	const char *s = NULL;
	int err = kura_json_get_str(o, k, &s);

	if (err == -ENOENT) {
		dst[0] = '\0';
		return 0;
	}
	if (err || strlen(s) >= cap)
		return -EINVAL;
	snprintf(dst, cap, "%s", s);
	return 0;
}

static int load_vdisk(struct kura_vd_engine *e, uint64_t id, const struct kura_json *o)
{
	struct vd_vdisk *v = calloc(1, sizeof(*v));
	const char *st = NULL;
	int err;

	if (!v)
		return -ENOMEM;
	v->id = id;
	err = copy_name(v->name, sizeof(v->name), o, "name");
	if (!err)
		err = kura_json_get_u64(o, "size", &v->size);
	if (!err)
		err = kura_json_get_u64(o, "top", &v->top);
	if (!err)
		err = get_u64(o, "created", &v->created);
	if (!err)
		err = get_u64(o, "job", &v->job);
	if (!err)
		err = get_u64(o, "scrubbed", &v->scrubbed);
	if (!err)
		err = get_u64(o, "scrub_bad_blocks", &v->scrub_bad);
	if (!err && !kura_json_get_str(o, "state", &st) && !strcmp(st, "building"))
		v->state = VD_BUILDING;
	if (err) {
		free(v);
		return err;
	}
	v->next = e->vdisks;
	e->vdisks = v;
	return 0;
}

static int load_layer(struct kura_vd_engine *e, uint64_t id, const struct kura_json *o)
{
	struct vd_layer *l = calloc(1, sizeof(*l));
	int err, hidden = 0;

	if (!l)
		return -ENOMEM;
	l->id = id;
	err = get_u64(o, "parent", &l->parent);
	if (!err)
		err = get_u64(o, "vdisk", &l->vdisk);
	if (!err)
		err = get_u64(o, "size", &l->size);
	if (!err)
		err = kura_json_get_u64(o, "clip", &l->clip);
	if (!err)
		err = get_u64(o, "created", &l->created);
	if (!err)
		err = get_u64(o, "job", &l->job);
	if (!err)
		err = copy_name(l->snap, sizeof(l->snap), o, "snap");
	if (!err && kura_json_get_bool(o, "hidden", &hidden) == -EINVAL)
		err = -EINVAL;
	if (err) {
		free(l);
		return err;
	}
	l->hidden = hidden;
	l->next = e->layers;
	e->layers = l;
	return 0;
}

struct load_ctx {
	struct kura_vd_engine *e;
	char *err;
	size_t errlen;
};

static int load_rec(void *arg, const struct kura_cat_rec *r)
{
	struct load_ctx *lc = arg;
	struct kura_vd_engine *e = lc->e;
	struct kura_json *o;
	char perr[128];
	int err;

	err = kura_json_parse(r->val, strlen(r->val), &o, perr, sizeof(perr));
	if (!err && kura_json_type(o) != KURA_JSON_OBJ)
		err = -EINVAL;
	if (!err) {
		switch (r->kind) {
		case 'n':
			err = kura_json_get_u64(o, "next", &e->next_id);
			break;
		case 'v':
			err = load_vdisk(e, r->id, o);
			break;
		case 'l':
			err = load_layer(e, r->id, o);
			break;
		case 'j':
			err = vd_job_from_json(e, r->id, o);
			break;
		case 'q':
			err = vd_qos_load(e, r->id, o);
			break;
		default:
			/* Other kinds belong to other modules (frontends' settings). */
			break;
		}
	}
	if (!err || err == -ENOMEM)
		kura_json_free(o);
	else if (o)
		kura_json_free(o);
	if (err)
		snprintf(lc->err, lc->errlen, "catalog record %c/%llu is damaged (%s)", r->kind,
			 (unsigned long long)r->id, err == -ENOMEM ? "out of memory" : "bad field");
	return err;
}

static int check_loaded(struct kura_vd_engine *e, char *errbuf, size_t errlen)
{
	for (struct vd_vdisk *v = e->vdisks; v; v = v->next) {
		struct vd_layer *l = vd_layer_get(e, v->top);
		if (!l) {
			snprintf(errbuf, errlen, "catalog: vdisk '%s' has no top layer %llu", v->name,
				 (unsigned long long)v->top);
			return -EUCLEAN;
		}
		l->top = true;
	}
	if (e->next_id < KURA_VD_ID_BASE)
		e->next_id = KURA_VD_ID_BASE;
	return 0;
}

int kura_vd_engine_open(const struct kura_vd_opts *o, struct kura_vd_engine **out, char *errbuf,
			size_t errlen)
{
	struct kura_vd_engine *e = calloc(1, sizeof(*e));
	struct load_ctx lc = { e, errbuf, errlen };
	int err;

	if (!e)
		return -ENOMEM;
	errbuf[0] = '\0';
	e->loop = o->loop;
	e->bops = o->blk ? o->blk : &kura_vd_store_ops;
	e->b = o->blk ? o->blk_arg : (void *)o->store;
	e->cat = o->cat;
	e->job_qd = o->job_qd ? o->job_qd : 8;
	e->max_jobs = o->max_jobs ? o->max_jobs : 4;
	e->no_resume = o->no_resume;
	e->scrub_every_s = o->scrub_every_ms ? KURA_MAX(1, o->scrub_every_ms / 1000) : 0;
	e->tree_gen = 1;
	err = vd_qos_start(e, o->sched_fifo);
	if (!err)
		err = kura_cat_load(e->cat, load_rec, &lc);
	if (!err)
		err = check_loaded(e, errbuf, errlen);
	if (err) {
		if (!errbuf[0])
			snprintf(errbuf, errlen, "cannot load the vdisk catalog: %s", strerror(-err));
		kura_vd_engine_close(e);
		return err;
	}
	if (!e->no_resume) {
		vd_jobs_kick(e);
		vd_scrub_auto_start(e);
	}
	*out = e;
	return 0;
}

void kura_vd_engine_close(struct kura_vd_engine *e)
{
	e->closing = true;
	/* control requests: those waiting are refused, the running one ends */
	while (e->ctl_head) {
		struct vd_ctl *c = e->ctl_head;

		e->ctl_head = c->next;
		c->cb(c->arg, -ESHUTDOWN, "the vdisks are no longer served here");
		free(c);
	}
	e->ctl_tail = NULL;
	vd_scrub_auto_stop(e);
	while (e->ctl_busy)
		kura_loop_run_once(e->loop, 100000000ull);
	vd_jobs_stop(e);
	vd_share_drop_all(e);
	while (e->commits)
		kura_loop_run_once(e->loop, 100000000ull);
	vd_qos_stop(e);
	while (e->vdisks)
		vd_vdisk_unlink(e, e->vdisks);
	while (e->layers)
		vd_layer_unlink(e, e->layers);
	while (e->jobs) {
		struct vd_job *j = e->jobs;
		e->jobs = j->next;
		vd_job_free(j);
	}
	free(e);
}

void kura_vd_wait_jobs(struct kura_vd_engine *e)
{
	for (;;) {
		bool busy = e->commits > 0;
		for (struct vd_job *j = e->jobs; j; j = j->next)
			if (j->state == JOB_RUNNING && !j->paused)
				busy = true;
		if (!busy)
			return;
		kura_loop_run_once(e->loop, 100000000ull);
	}
}

int kura_vd_each(struct kura_vd_engine *e,
		 int (*fn)(void *arg, const char *name, const char *snap, uint64_t uid, uint64_t size),
		 void *arg)
{
	int err;

	for (struct vd_vdisk *v = e->vdisks; v; v = v->next) {
		if (v->state != VD_READY || v->deleting)
			continue;
		if ((err = fn(arg, v->name, NULL, v->id, v->size)))
			return err;
		for (struct vd_layer *l = e->layers; l; l = l->next)
			if (l->vdisk == v->id && l->snap[0] && !l->hidden &&
			    (err = fn(arg, v->name, l->snap, l->id, l->size)))
				return err;
	}
	return 0;
}

int kura_vd_uid(struct kura_vd_engine *e, const char *name, const char *snap, uint64_t *uid)
{
	struct vd_vdisk *v = vd_find(e, name);
	struct vd_layer *l;

	if (!v || v->deleting)
		return -ENOENT;
	if (!snap) {
		*uid = v->id;
		return 0;
	}
	if (!(l = vd_snap_find(e, v, snap)))
		return -ENOENT;
	*uid = l->id;
	return 0;
}
