/* The catalog front: a prefetch reads on the worker thread and serves loads
 * until a commit; a commit submitted while a prefetch runs makes it keep
 * nothing. The backend is an in-memory table that counts its loads. */
#include "tests/unit/harness.h"

#include "metadata/catalog.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#define MAX_RECS 16

struct mem_be {
	struct kura_cat_rec recs[MAX_RECS];
	char vals[MAX_RECS][32];
	size_t n;
	unsigned loads;
	pthread_t loader; /* the thread of the last load */
	int fail_load;
};

static int mem_load(void *be, int (*fn)(void *arg, const struct kura_cat_rec *r), void *arg)
{
	struct mem_be *m = be;
	int err;

	m->loads++;
	m->loader = pthread_self();
	if (m->fail_load)
		return m->fail_load;
	for (size_t i = 0; i < m->n; i++)
		if ((err = fn(arg, &m->recs[i])))
			return err;
	return 0;
}

static int mem_commit(void *be, const struct kura_cat_txn *t)
{
	struct mem_be *m = be;

	for (size_t i = 0; i < t->n; i++) {
		if (m->n == MAX_RECS || !t->recs[i].val)
			return -EINVAL;
		m->recs[m->n] = t->recs[i];
		snprintf(m->vals[m->n], sizeof(m->vals[0]), "%s", t->recs[i].val);
		m->recs[m->n].val = m->vals[m->n];
		m->n++;
	}
	return 0;
}

static void mem_close(void *be)
{
	(void)be;
}

static const struct kura_cat_ops mem_ops = { "mem", mem_load, mem_commit, mem_close };

static int count_one(void *arg, const struct kura_cat_rec *r)
{
	size_t *n = arg;

	CHECK(r->val && r->val[0] == '{');
	(*n)++;
	return 0;
}

static void done_cb(void *arg, int err)
{
	int *res = arg;

	*res = err;
}

static void put(struct kura_cat_txn *t, uint64_t id)
{
	kura_cat_txn_init(t);
	kura_cat_txn_add(t, 'v', id, "{}");
}

static void put_sync(struct kura_cat *c, uint64_t id)
{
	struct kura_cat_txn t;

	put(&t, id);
	CHECK(kura_cat_commit_sync(c, &t) == 0);
}

static void open_cat(struct mem_be *m, struct kura_loop **l, struct kura_cat **c)
{
	CHECK(kura_loop_create(l, 64) == 0);
	CHECK(kura_cat_open(*l, &mem_ops, m, c) == 0);
}

static void wait_for(struct kura_loop *l, const int *res)
{
	for (int i = 0; i < 500 && *res == 1; i++)
		kura_loop_run_once(l, 10000000ull);
	CHECK(*res != 1);
}

TEST(test_catalog_prefetch_serves_loads_until_a_commit)
{
	struct mem_be m = { 0 };
	struct kura_loop *l;
	struct kura_cat *c;
	struct kura_cat_txn t;
	int res = 1, cres = 1;
	size_t n = 0;

	open_cat(&m, &l, &c);
	put_sync(c, 1);
	put_sync(c, 2);
	CHECK(kura_cat_prefetch(c, done_cb, &res) == 0);
	wait_for(l, &res);
	CHECK_EQ(res, 0);
	CHECK_EQ(m.loads, 1);
	CHECK(!pthread_equal(m.loader, pthread_self())); /* read off the loop thread */
	/* two loads served from the records read, the backend untouched */
	CHECK(kura_cat_load(c, count_one, &n) == 0);
	CHECK(kura_cat_load(c, count_one, &n) == 0);
	CHECK_EQ(n, 4);
	CHECK_EQ(m.loads, 1);
	/* a commit: the next load asks the backend and sees it */
	put(&t, 3);
	CHECK(kura_cat_commit(c, &t, done_cb, &cres) == 0);
	wait_for(l, &cres);
	CHECK_EQ(cres, 0);
	n = 0;
	CHECK(kura_cat_load(c, count_one, &n) == 0);
	CHECK_EQ(n, 3);
	CHECK_EQ(m.loads, 2);
	kura_cat_close(c);
	kura_loop_destroy(l);
}

TEST(test_catalog_prefetch_overtaken_by_a_commit_keeps_nothing)
{
	struct mem_be m = { 0 };
	struct kura_loop *l;
	struct kura_cat *c;
	struct kura_cat_txn t;
	int res = 1, cres = 1;
	size_t n = 0;

	open_cat(&m, &l, &c);
	put_sync(c, 1);
	CHECK(kura_cat_prefetch(c, done_cb, &res) == 0);
	put(&t, 2);
	CHECK(kura_cat_commit(c, &t, done_cb, &cres) == 0);
	wait_for(l, &res);
	wait_for(l, &cres);
	CHECK_EQ(res, 0);
	CHECK_EQ(cres, 0);
	CHECK(kura_cat_load(c, count_one, &n) == 0);
	CHECK_EQ(n, 2); /* from the backend, with the commit */
	CHECK_EQ(m.loads, 2);
	kura_cat_close(c);
	kura_loop_destroy(l);
}

TEST(test_catalog_prefetch_failure_is_reported_and_keeps_nothing)
{
	struct mem_be m = { .fail_load = -ETIMEDOUT };
	struct kura_loop *l;
	struct kura_cat *c;
	int res = 1;
	size_t n = 0;

	open_cat(&m, &l, &c);
	CHECK(kura_cat_prefetch(c, done_cb, &res) == 0);
	wait_for(l, &res);
	CHECK_EQ(res, -ETIMEDOUT);
	m.fail_load = 0;
	CHECK(kura_cat_load(c, count_one, &n) == 0);
	CHECK_EQ(m.loads, 2);
	/* close while a prefetch is in flight waits for it */
	res = 1;
	CHECK(kura_cat_prefetch(c, done_cb, &res) == 0);
	kura_cat_close(c);
	CHECK_EQ(res, 0);
	kura_loop_destroy(l);
}
