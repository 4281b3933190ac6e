/* The catalog front: transactions, and commits handed to a worker thread so
 * that a durable write never stalls the event loop. */
#include "metadata/catalog.h"

#include "common/log.h"
#include "common/util.h"
#include "common/worker.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct kura_cat {
	struct kura_loop *loop;
	const struct kura_cat_ops *ops;
	void *be;
	struct kura_worker *worker;
	unsigned inflight;
	/* records read by kura_cat_prefetch, served by kura_cat_load until the
	 * next commit; commits counts commits submitted, so a prefetch that a
	 * commit overtook keeps nothing */
	struct kura_cat_txn cache;
	bool cached;
	uint64_t commits;
};

struct prefetch {
	struct kura_work work;
	struct kura_cat *cat;
	struct kura_cat_txn recs;
	uint64_t commits; /* c->commits when submitted */
	void (*cb)(void *arg, int err);
	void *arg;
};

struct commit {
	struct kura_work work;
	struct kura_cat *cat;
	struct kura_cat_txn txn;
	void (*cb)(void *arg, int err);
	void *arg;
};

void kura_cat_txn_init(struct kura_cat_txn *t)
{
	memset(t, 0, sizeof(*t));
}

void kura_cat_txn_add(struct kura_cat_txn *t, char kind, uint64_t id, const char *val)
{
	struct kura_cat_rec *r;

	if (t->err)
		return;
	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 8;
		r = realloc(t->recs, ncap * sizeof(*r));
		if (!r) {
			t->err = -ENOMEM;
			return;
		}
		t->recs = r;
		t->cap = ncap;
	}
	r = &t->recs[t->n];
	r->kind = kind;
	r->id = id;
	r->val = NULL;
	if (val && !(r->val = strdup(val))) {
		t->err = -ENOMEM;
		return;
	}
	t->n++;
}

void kura_cat_txn_free(struct kura_cat_txn *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->recs[i].val);
	free(t->recs);
	memset(t, 0, sizeof(*t));
}

int kura_cat_open(struct kura_loop *loop, const struct kura_cat_ops *ops, void *be,
		  struct kura_cat **out)
{
	struct kura_cat *c = calloc(1, sizeof(*c));
	int err;

	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->ops = ops;
	c->be = be;
	err = kura_worker_create(&c->worker, loop, "kura-catalog");
	if (err) {
		free(c);
		return err;
	}
	*out = c;
	return 0;
}

void kura_cat_close(struct kura_cat *c)
{
	if (!c)
		return;
	while (c->inflight)
		kura_loop_run_once(c->loop, 100000000ull);
	kura_worker_destroy(c->worker);
	c->ops->close(c->be);
	kura_cat_txn_free(&c->cache);
	free(c);
}

int kura_cat_load(struct kura_cat *c, int (*fn)(void *arg, const struct kura_cat_rec *r),
		  void *arg)
{
	int err;

	if (!c->cached)
		return c->ops->load(c->be, fn, arg);
	for (size_t i = 0; i < c->cache.n; i++)
		if ((err = fn(arg, &c->cache.recs[i])))
			return err;
	return 0;
}

static void cache_drop(struct kura_cat *c)
{
	c->commits++;
	c->cached = false;
	kura_cat_txn_free(&c->cache);
}

static int prefetch_one(void *arg, const struct kura_cat_rec *r)
{
	struct kura_cat_txn *t = arg;

	kura_cat_txn_add(t, r->kind, r->id, r->val);
	return t->err;
}

static void prefetch_run(struct kura_work *w)
{
	struct prefetch *pf = KURA_CONTAINER_OF(w, struct prefetch, work);

	w->result = pf->cat->ops->load(pf->cat->be, prefetch_one, &pf->recs);
}

static void prefetch_done(struct kura_op *op, int res)
{
	struct prefetch *pf = KURA_CONTAINER_OF(op, struct prefetch, work.done);
	struct kura_cat *c = pf->cat;

	c->inflight--;
	if (!res && pf->commits == c->commits) {
		kura_cat_txn_free(&c->cache);
		c->cache = pf->recs;
		c->cached = true;
	} else {
		kura_cat_txn_free(&pf->recs);
	}
	pf->cb(pf->arg, res);
	free(pf);
}

int kura_cat_prefetch(struct kura_cat *c, void (*cb)(void *arg, int err), void *arg)
{
	struct prefetch *pf = calloc(1, sizeof(*pf));

	if (!pf)
		return -ENOMEM;
	pf->cat = c;
	kura_cat_txn_init(&pf->recs);
	pf->commits = c->commits;
	pf->cb = cb;
	pf->arg = arg;
	c->inflight++;
	pf->work.run = prefetch_run;
	pf->work.done.fn = prefetch_done;
	kura_worker_submit(c->worker, &pf->work);
	return 0;
}

static void commit_run(struct kura_work *w)
{
	struct commit *cm = KURA_CONTAINER_OF(w, struct commit, work);

	w->result = cm->cat->ops->commit(cm->cat->be, &cm->txn);
}

static void commit_done(struct kura_op *op, int res)
{
	struct commit *cm = KURA_CONTAINER_OF(op, struct commit, work.done);

	cm->cat->inflight--;
	if (res)
		kura_log(ERR, "catalog commit of %zu records failed: %s", cm->txn.n,
			 strerror(-res));
	cm->cb(cm->arg, res);
	kura_cat_txn_free(&cm->txn);
	free(cm);
}

int kura_cat_commit(struct kura_cat *c, struct kura_cat_txn *t, void (*cb)(void *arg, int err),
		    void *arg)
{
	struct commit *cm = calloc(1, sizeof(*cm));

	if (!cm) {
		kura_cat_txn_free(t);
		return -ENOMEM;
	}
	cm->cat = c;
	cm->txn = *t;
	memset(t, 0, sizeof(*t));
	cm->cb = cb;
	cm->arg = arg;
	cache_drop(c);
	c->inflight++;
	if (cm->txn.err) {
		cm->work.done.fn = commit_done;
		kura_loop_defer(c->loop, &cm->work.done, cm->txn.err);
		return 0;
	}
	cm->work.run = commit_run;
	cm->work.done.fn = commit_done;
	kura_worker_submit(c->worker, &cm->work);
	return 0;
}

int kura_cat_commit_sync(struct kura_cat *c, struct kura_cat_txn *t)
{
	int err;

	cache_drop(c);
	err = t->err ? t->err : c->ops->commit(c->be, t);

	kura_cat_txn_free(t);
	return err;
}
