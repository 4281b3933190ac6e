/* The catalog front: transactions, and commits handed to a worker thread so
 * that a durable write never stalls the event loop. */
#include "metadata/catalog.h"

#include "common/log.h"
#include "common/util.h"
#include "common/worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct kura_cat {
	struct kura_loop *loop;
	const struct kura_cat_ops *ops;
	void *be;
	struct kura_worker *worker;
	unsigned inflight;
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
	free(c);
}

int kura_cat_load(struct kura_cat *c, int (*fn)(void *arg, const struct kura_cat_rec *r),
		  void *arg)
{
	return c->ops->load(c->be, fn, arg);
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
	int err = t->err ? t->err : c->ops->commit(c->be, t);

	kura_cat_txn_free(t);
	return err;
}
