/* Shared source reads for full clones. Clones of one template started
 * together copy the same extents of the same frozen layers: the first step
 * to need a span of an extent reads it, and the steps of the other clone
 * jobs on that chain take their copy from the same buffer instead of
 * reading it again. Four clones of one template then read it once and
 * write it four times: five units of disk traffic for four, not eight.
 *
 * An entry is keyed by the chain (its layer ids and limits, compared in
 * full), the extent and the span of blocks read. It is good while the
 * tree and every frozen layer are unchanged (tree_gen, store_gen: a merge
 * step that moved blocks of a frozen layer bumps store_gen when it
 * unlocks). The reading step holds a shared lock on the extent, so no
 * merge changes it while it is read. An entry goes once each clone job on
 * that chain has taken it (counted when it was made), or when memory is
 * short (SHARE_BYTES in all), oldest unused first. */
#include "vdisk/vd_int.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SHARE_BYTES (32u << 20)

struct share_waiter {
	void (*cb)(void *arg, int err);
	void *arg;
	struct share_waiter *next;
};

struct vd_share {
	uint64_t ext;
	unsigned lo, hi;
	struct vd_chain chain;    /* a copy: the key, and what is read */
	uint64_t tree_gen, store_gen;
	char *buf;                /* blocks lo..hi */
	int state;                /* 1 reading, 0 ready, -errno failed */
	unsigned refs;            /* steps holding it (waiting or writing from it) */
	unsigned uses, expected;  /* steps that took it; clone jobs that will */
	unsigned pos;             /* reading in pieces: the next block */
	enum kura_io_class cls;
	struct share_waiter *waiters;
	struct kura_vd_engine *e;
	struct vd_share *next;
};

static size_t share_size(const struct vd_share *s)
{
	return (size_t)(s->hi - s->lo) * VD_BLK;
}

static bool chain_same(const struct vd_chain *a, const struct vd_chain *b)
{
	return a->n == b->n && !memcmp(a->ids, b->ids, a->n * sizeof(*a->ids)) &&
	       !memcmp(a->lims, b->lims, a->n * sizeof(*a->lims));
}

static bool share_current(const struct kura_vd_engine *e, const struct vd_share *s)
{
	return s->tree_gen == e->tree_gen && s->store_gen == e->store_gen;
}

static void share_free(struct kura_vd_engine *e, struct vd_share *s)
{
	for (struct vd_share **p = &e->shares; *p; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			break;
		}
	}
	e->share_bytes -= share_size(s);
	free(s->chain.ids);
	free(s->chain.lims);
	free(s->buf);
	free(s);
}

/* Drops unused entries that are stale, used up, or (to make room for
 * `need` bytes) the oldest. */
static void share_trim(struct kura_vd_engine *e, size_t need)
{
	struct vd_share *s = e->shares, *n;

	for (; s; s = n) {
		n = s->next;
		if (!s->refs && (s->state < 0 || !share_current(e, s) || s->uses >= s->expected))
			share_free(e, s);
	}
	/* the list is newest first: the last unused entry is the oldest */
	while (e->share_bytes + need > SHARE_BYTES) {
		struct vd_share *old = NULL;
		for (s = e->shares; s; s = s->next)
			if (!s->refs)
				old = s;
		if (!old)
			return;
		share_free(e, old);
	}
}

/* Clone jobs running now whose source chain is c. */
static unsigned clone_jobs_on(const struct kura_vd_engine *e, const struct vd_chain *c)
{
	unsigned n = 0;

	for (const struct vd_job *j = e->jobs; j; j = j->next)
		if (j->type == JOB_CLONE && j->running && j->state == JOB_RUNNING &&
		    j->chain.n && chain_same(&j->chain, c))
			n++;
	return n;
}

static void share_read_next(void *arg, int err, const struct kura_blk_bitmap *present);

static void share_read_done(struct vd_share *s, int err)
{
	struct kura_vd_engine *e = s->e;
	struct share_waiter *w = s->waiters;

	s->state = err ? err : 0;
	s->waiters = NULL;
	while (w) {
		struct share_waiter *n = w->next;
		w->cb(w->arg, err);
		free(w);
		w = n;
	}
	share_trim(e, 0);
}

/* The next piece: while guests run, VD_STEP_CHUNK_BLOCKS at a time, one
 * after the other, as job steps read (vdisk/job.c); otherwise the rest. */
static int share_submit(struct vd_share *s)
{
	struct kura_vd_engine *e = s->e;
	unsigned n = s->hi - s->pos;
	int err;

	if (vd_sched_guests_active(e->sched, kura_now_ns()))
		n = KURA_MIN(n, VD_STEP_CHUNK_BLOCKS);
	err = vd_chain_read(e, &s->chain, s->ext, s->pos, n,
			    s->buf + (size_t)(s->pos - s->lo) * VD_BLK, s->cls, share_read_next, s);
	if (!err)
		s->pos += n;
	return err;
}

static void share_read_next(void *arg, int err, const struct kura_blk_bitmap *present)
{
	struct vd_share *s = arg;

	(void)present;
	if (!err && s->pos < s->hi && !(err = share_submit(s)))
		return; /* the next piece is on its way */
	share_read_done(s, err);
}

static int add_waiter(struct vd_share *s, void (*cb)(void *arg, int err), void *arg)
{
	struct share_waiter *w = malloc(sizeof(*w)), **p;

	if (!w)
		return -ENOMEM;
	w->cb = cb;
	w->arg = arg;
	w->next = NULL;
	for (p = &s->waiters; *p; p = &(*p)->next)
		;
	*p = w;
	return 0;
}

int vd_share_get(struct kura_vd_engine *e, const struct vd_chain *c, uint64_t ext, unsigned lo,
		 unsigned hi, enum kura_io_class cls, void (*cb)(void *arg, int err), void *arg,
		 struct vd_share **out)
{
	struct vd_share *s;
	unsigned expected;
	int err;

	for (s = e->shares; s; s = s->next) {
		if (s->ext != ext || s->lo > lo || s->hi < hi || s->state < 0 ||
		    !share_current(e, s) || !chain_same(&s->chain, c))
			continue;
		if (s->state == 1 && (err = add_waiter(s, cb, arg)))
			return err;
		s->refs++;
		s->uses++;
		*out = s;
		return s->state == 1 ? 0 : 1;
	}
	expected = clone_jobs_on(e, c);
	if (expected < 2)
		return -EAGAIN; /* nobody to share with */
	share_trim(e, (size_t)(hi - lo) * VD_BLK);
	if (e->share_bytes + (size_t)(hi - lo) * VD_BLK > SHARE_BYTES)
		return -EAGAIN;
	if (!(s = calloc(1, sizeof(*s))))
		return -ENOMEM;
	s->e = e;
	s->ext = ext;
	s->lo = lo;
	s->hi = hi;
	s->cls = cls;
	s->tree_gen = e->tree_gen;
	s->store_gen = e->store_gen;
	s->expected = expected;
	s->chain.n = c->n;
	s->chain.ids = malloc(c->n * sizeof(uint64_t));
	s->chain.lims = malloc(c->n * sizeof(uint64_t));
	s->buf = kura_aligned_alloc_raw((size_t)(hi - lo) * VD_BLK);
	if (!s->chain.ids || !s->chain.lims || !s->buf || add_waiter(s, cb, arg)) {
		free(s->chain.ids);
		free(s->chain.lims);
		free(s->buf);
		free(s->waiters);
		free(s);
		return -ENOMEM;
	}
	memcpy(s->chain.ids, c->ids, c->n * sizeof(uint64_t));
	memcpy(s->chain.lims, c->lims, c->n * sizeof(uint64_t));
	s->state = 1;
	s->refs = 1;
	s->uses = 1;
	s->next = e->shares;
	e->shares = s;
	e->share_bytes += share_size(s);
	/* vd_chain_read never calls back from inside itself, so neither does
	 * this */
	s->pos = lo;
	err = share_submit(s);
	if (err) {
		/* nothing in flight: undo, and let the caller read on its own */
		free(s->waiters);
		s->waiters = NULL;
		s->refs = 0;
		share_free(e, s);
		return -EAGAIN;
	}
	*out = s;
	return 0;
}

const char *vd_share_data(const struct vd_share *s, unsigned lo)
{
	return s->buf + (size_t)(lo - s->lo) * VD_BLK;
}

void vd_share_put(struct kura_vd_engine *e, struct vd_share *s)
{
	if (--s->refs == 0)
		share_trim(e, 0);
}

void vd_share_drop_all(struct kura_vd_engine *e)
{
	while (e->shares)
		share_free(e, e->shares);
}
