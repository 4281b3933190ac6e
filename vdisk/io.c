/* The vdisk data path: reads through chains, writes to the top layer, extent
 * locks for job steps, and the write pause that makes snapshots exact. */
#include "vdisk/vd_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- bitmaps ---- */

void vd_bm_range(struct kura_blk_bitmap *b, unsigned blk, unsigned n)
{
	for (unsigned i = 0; i < KURA_EXT_BLOCKS; i++)
		if (i < blk || i >= blk + n)
			b->w[i / 64] &= ~(1ull << (i % 64));
}

unsigned vd_bm_count(const struct kura_blk_bitmap *b)
{
	unsigned n = 0;

	for (unsigned i = 0; i < KURA_EXT_BLOCKS / 64; i++)
		n += (unsigned)__builtin_popcountll(b->w[i]);
	return n;
}

unsigned vd_bm_next_run(const struct kura_blk_bitmap *b, unsigned *pos, unsigned end)
{
	unsigned i = *pos, n = 0;

	while (i < end && !vd_bm_test(b, i))
		i++;
	*pos = i;
	while (i + n < end && vd_bm_test(b, i + n))
		n++;
	return n;
}

static void bm_andnot(struct kura_blk_bitmap *a, const struct kura_blk_bitmap *b)
{
	for (unsigned i = 0; i < KURA_EXT_BLOCKS / 64; i++)
		a->w[i] &= ~b->w[i];
}

static void bm_and(struct kura_blk_bitmap *a, const struct kura_blk_bitmap *b)
{
	for (unsigned i = 0; i < KURA_EXT_BLOCKS / 64; i++)
		a->w[i] &= b->w[i];
}

static void bm_or(struct kura_blk_bitmap *a, const struct kura_blk_bitmap *b)
{
	for (unsigned i = 0; i < KURA_EXT_BLOCKS / 64; i++)
		a->w[i] |= b->w[i];
}

static int bm_empty(const struct kura_blk_bitmap *b)
{
	for (unsigned i = 0; i < KURA_EXT_BLOCKS / 64; i++)
		if (b->w[i])
			return 0;
	return 1;
}

/* Drops blocks at or past byte offset lim (layer data hidden by a shrink). */
static void bm_clip(struct kura_blk_bitmap *b, uint64_t ext, uint64_t lim)
{
	uint64_t base = ext * VD_EXT;

	if (lim >= base + VD_EXT)
		return;
	vd_bm_range(b, 0, lim > base ? (unsigned)((lim - base) / VD_BLK) : 0);
}

/* ---- chain reads ---- */

struct cread {
	struct kura_op op;
	unsigned pending;
	int err;
	struct kura_blk_bitmap present;
	vd_read_cb cb;
	void *arg;
};

static void cread_finish(struct cread *cr)
{
	cr->cb(cr->arg, cr->err, &cr->present);
	free(cr);
}

static void cread_deferred(struct kura_op *op, int res)
{
	(void)res;
	cread_finish(KURA_CONTAINER_OF(op, struct cread, op));
}

static void cread_one(void *arg, int err)
{
	struct cread *cr = arg;

	if (err && !cr->err)
		cr->err = err;
	if (!--cr->pending)
		cread_finish(cr);
}

/* Visible blocks of layer i of c within want; removes them from want. */
static int layer_take(struct kura_vd_engine *e, const struct vd_chain *c, unsigned i,
		      uint64_t ext, struct kura_blk_bitmap *want, struct kura_blk_bitmap *take)
{
	struct kura_blk_extent_info info;

	bm_clip(want, ext, c->lims[i]);
	if (e->bops->extent_info(e->b, c->ids[i], ext, &info))
		return 0;
	*take = info.present;
	bm_and(take, want);
	bm_andnot(want, take);
	return !bm_empty(take);
}

void vd_chain_present(struct kura_vd_engine *e, const struct vd_chain *c, uint64_t ext,
		      struct kura_blk_bitmap *out)
{
	struct kura_blk_bitmap want, take;

	memset(out, 0, sizeof(*out));
	memset(&want, 0xff, sizeof(want));
	for (unsigned i = 0; i < c->n && !bm_empty(&want); i++)
		if (layer_take(e, c, i, ext, &want, &take))
			bm_or(out, &take);
}

static void zero_absent(const struct kura_blk_bitmap *present, unsigned blk, unsigned nblk,
			char *buf)
{
	for (unsigned b = blk; b < blk + nblk; b++)
		if (!vd_bm_test(present, b))
			memset(buf + (size_t)(b - blk) * VD_BLK, 0, VD_BLK);
}

/* Which layers below the top hold ext, from the cache or looked up. */
static uint64_t lower_mask(struct kura_vd_engine *e, const struct vd_chain *c, uint64_t ext)
{
	unsigned k = (unsigned)(kura_hash64(ext) % VD_CACHE_SLOTS);
	struct kura_blk_extent_info info;
	uint64_t mask = 0;

	if (c->cache->slot[k].ext1 == ext + 1 && c->cache->slot[k].gen == e->store_gen)
		return c->cache->slot[k].mask;
	for (unsigned i = 1; i < c->n; i++)
		if (!e->bops->extent_info(e->b, c->ids[i], ext, &info))
			mask |= 1ull << (i - 1);
	c->cache->slot[k].ext1 = ext + 1;
	c->cache->slot[k].gen = e->store_gen;
	c->cache->slot[k].mask = mask;
	return mask;
}

int vd_chain_read(struct kura_vd_engine *e, const struct vd_chain *c, uint64_t ext,
		  unsigned blk, unsigned nblk, void *buf, enum kura_io_class cls, vd_read_cb cb,
		  void *arg)
{
	struct cread *cr = calloc(1, sizeof(*cr));
	struct kura_blk_bitmap want = { { 0 } }, take;
	uint64_t lower = ~0ull;
	int err = 0;

	if (!cr)
		return -ENOMEM;
	cr->cb = cb;
	cr->arg = arg;
	cr->pending = 1;
	memset(&want, 0xff, sizeof(want));
	vd_bm_range(&want, blk, nblk);
	for (unsigned i = 0; i < c->n && !bm_empty(&want) && !err; i++) {
		/* Skipped layers need no clipping: limits only shrink down the
		 * chain, so the next layer looked at clips at least as much. */
		if (i == 1 && c->cache)
			lower = lower_mask(e, c, ext);
		if (i && !((lower >> (i - 1)) & 1))
			continue;
		if (!layer_take(e, c, i, ext, &want, &take))
			continue;
		bm_or(&cr->present, &take);
		for (unsigned pos = blk, n; (n = vd_bm_next_run(&take, &pos, blk + nblk)); pos += n) {
			err = e->bops->read(e->b, c->ids[i], ext, pos, n,
					    (char *)buf + (size_t)(pos - blk) * VD_BLK, cls,
					    cread_one, cr);
			if (err)
				break;
			cr->pending++;
		}
	}
	zero_absent(&cr->present, blk, nblk, buf);
	if (err) {
		if (cr->pending == 1) {
			free(cr);
			return err;
		}
		cr->err = err;
	}
	if (!--cr->pending) {
		cr->op.fn = cread_deferred;
		kura_loop_defer(e->loop, &cr->op, 0);
	}
	return 0;
}

/* ---- extent locks ---- */

struct vd_lockreq {
	uint64_t ext;
	bool shared;
	void (*cb)(void *arg);
	void *arg;
	struct vd_lockreq *next;
};

enum io_kind { IO_READ, IO_WRITE, IO_WRITE_CACHED, IO_DISCARD };

struct vd_io {
	struct kura_vd_handle *h;
	struct vd_vdisk *v;
	enum io_kind kind;
	uint64_t off, len;
	char *buf;
	enum kura_io_class cls;
	kura_blk_cb cb;
	void *arg;
	unsigned pending;
	int err;
	uint64_t ticket;
	struct vd_io *prev, *next; /* in flight list, or a wait queue (next only) */
	struct kura_op op;
	void *zeros;
	struct vd_sreq sr;     /* its place in the scheduler */
};

/* A lock on ext that a new one (shared or not) would collide with. */
static struct vd_lockent *lock_find(struct kura_vd_engine *e, uint64_t ext, bool shared)
{
	for (unsigned i = 0; i < e->nlocks; i++)
		if (e->locks[i].ext == ext && !(shared && e->locks[i].shared))
			return &e->locks[i];
	return NULL;
}

static void lock_deferred(struct kura_op *op, int res);

struct lock_grant {
	struct kura_op op;
	void (*cb)(void *arg);
	void *arg;
};

static void lock_grant_later(struct kura_vd_engine *e, struct vd_lockent *le)
{
	struct lock_grant *g = malloc(sizeof(*g));

	le->granted = true;
	if (!g) {
		/* Cannot defer without memory: grant now; the caller's step
		 * tolerates it (it only submits I/O). */
		le->cb(le->arg);
		return;
	}
	g->op.fn = lock_deferred;
	g->cb = le->cb;
	g->arg = le->arg;
	kura_loop_defer(e->loop, &g->op, 0);
}

static void lock_deferred(struct kura_op *op, int res)
{
	struct lock_grant *g = KURA_CONTAINER_OF(op, struct lock_grant, op);

	(void)res;
	g->cb(g->arg);
	free(g);
}

/* Grants every lock whose older I/O has finished. */
static void locks_check(struct kura_vd_engine *e)
{
	uint64_t oldest = e->io_head ? e->io_head->ticket : UINT64_MAX;

	for (unsigned i = 0; i < e->nlocks; i++) {
		struct vd_lockent *le = &e->locks[i];
		if (!le->granted && oldest >= le->ticket)
			lock_grant_later(e, le);
	}
}

static int lock_take(struct kura_vd_engine *e, uint64_t ext, bool shared, void (*cb)(void *arg),
		     void *arg)
{
	struct vd_lockent *le;

	if (e->nlocks == KURA_ARRAY_SIZE(e->locks) || lock_find(e, ext, shared))
		return 0;
	le = &e->locks[e->nlocks++];
	le->ext = ext;
	le->ticket = shared ? 0 : e->next_ticket; /* shared: waits for no guest I/O */
	le->cb = cb;
	le->arg = arg;
	le->granted = false;
	le->shared = shared;
	locks_check(e);
	return 1;
}

int vd_lock_ext(struct kura_vd_engine *e, uint64_t ext, bool shared, void (*cb)(void *arg),
		void *arg)
{
	struct vd_lockreq *r, **p;

	if (lock_take(e, ext, shared, cb, arg))
		return 0;
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->ext = ext;
	r->shared = shared;
	r->cb = cb;
	r->arg = arg;
	r->next = NULL;
	for (p = &e->lock_pending; *p; p = &(*p)->next)
		;
	*p = r;
	return 0;
}

static void io_start(struct vd_io *io);

void vd_unlock_ext(struct kura_vd_engine *e, uint64_t ext, bool shared)
{
	struct vd_lockent *le = NULL;
	struct vd_io *wq;

	for (unsigned i = 0; i < e->nlocks && !le; i++)
		if (e->locks[i].ext == ext && e->locks[i].shared == shared && e->locks[i].granted)
			le = &e->locks[i];
	if (!le)
		return;
	/* The holder may have changed frozen layers: cached lookups are stale. */
	if (!shared)
		e->store_gen++;
	*le = e->locks[--e->nlocks];
	for (struct vd_lockreq **p = &e->lock_pending; *p;) {
		struct vd_lockreq *r = *p;
		if (lock_take(e, r->ext, r->shared, r->cb, r->arg)) {
			*p = r->next;
			free(r);
		} else {
			p = &r->next;
		}
	}
	if (shared)
		return; /* no guest I/O waits for a shared lock */
	/* Waiting guest I/O tries again; what still collides queues again. */
	wq = e->lock_wq_head;
	e->lock_wq_head = e->lock_wq_tail = NULL;
	while (wq) {
		struct vd_io *io = wq;
		wq = io->next;
		io_start(io);
	}
}

/* ---- guest I/O ---- */

static void io_list_add(struct kura_vd_engine *e, struct vd_io *io)
{
	io->ticket = e->next_ticket++;
	io->next = NULL;
	io->prev = e->io_tail;
	if (e->io_tail)
		e->io_tail->next = io;
	else
		e->io_head = io;
	e->io_tail = io;
}

static void io_list_del(struct kura_vd_engine *e, struct vd_io *io)
{
	if (io->prev)
		io->prev->next = io->next;
	else
		e->io_head = io->next;
	if (io->next)
		io->next->prev = io->prev;
	else
		e->io_tail = io->prev;
}

static void queue_tail(struct vd_io **head, struct vd_io **tail, struct vd_io *io)
{
	io->next = NULL;
	if (*tail)
		(*tail)->next = io;
	else
		*head = io;
	*tail = io;
}

static void io_end(struct vd_io *io)
{
	struct kura_vd_engine *e = io->h->e;
	struct vd_vdisk *v = io->v;

	io_list_del(e, io);
	vd_sched_end(e, &io->sr);
	if (io->kind != IO_READ && !--v->writes_inflight && v->paused && v->drained) {
		void (*fn)(void *) = v->drained;
		v->drained = NULL;
		fn(v->drained_arg);
	}
	io->cb(io->arg, io->err);
	free(io->zeros);
	free(io);
	if (e->nlocks)
		locks_check(e);
}

static void io_piece_done(void *arg, int err)
{
	struct vd_io *io = arg;

	if (err && !io->err)
		io->err = err;
	if (!--io->pending)
		io_end(io);
}

static void io_read_piece_done(void *arg, int err, const struct kura_blk_bitmap *present)
{
	(void)present;
	io_piece_done(arg, err);
}

static int io_locked(struct kura_vd_engine *e, const struct vd_io *io)
{
	uint64_t first = io->off / VD_EXT, last = (io->off + io->len - 1) / VD_EXT;

	for (unsigned i = 0; i < e->nlocks; i++)
		if (!e->locks[i].shared && e->locks[i].ext >= first && e->locks[i].ext <= last)
			return 1;
	return 0;
}

/* Writes zeros where lower layers hold data, trims the rest. */
static int discard_piece(struct vd_io *io, const struct vd_chain *c, uint64_t ext, unsigned blk,
			 unsigned nblk)
{
	struct kura_vd_engine *e = io->h->e;
	struct kura_blk_bitmap below;
	struct vd_chain lower = *c;

	lower.ids++;
	lower.lims++;
	lower.cache = NULL; /* its slots index the whole chain */
	lower.n = c->n ? c->n - 1 : 0;
	vd_chain_present(e, &lower, ext, &below);
	vd_bm_range(&below, blk, nblk);
	if (bm_empty(&below))
		return e->bops->trim(e->b, c->ids[0], ext, blk, nblk, io_piece_done, io);
	if (!io->zeros && !(io->zeros = kura_aligned_alloc(VD_EXT)))
		return -ENOMEM;
	return e->bops->write(e->b, c->ids[0], ext, blk, nblk, io->zeros,
			      KURA_IO_GUEST, io_piece_done, io);
}

static int io_piece(struct vd_io *io, const struct vd_chain *c, uint64_t ext, unsigned blk,
		    unsigned nblk, char *buf)
{
	struct kura_vd_engine *e = io->h->e;

	switch (io->kind) {
	case IO_READ:
		return vd_chain_read(e, c, ext, blk, nblk, buf, io->cls, io_read_piece_done, io);
	case IO_WRITE:
		return e->bops->write(e->b, c->ids[0], ext, blk, nblk, buf,
				      io->cls, io_piece_done, io);
	case IO_WRITE_CACHED:
		return (e->bops->write_cached ? e->bops->write_cached : e->bops->write)(
			e->b, c->ids[0], ext, blk, nblk, buf, io->cls, io_piece_done, io);
	default:
		return discard_piece(io, c, ext, blk, nblk);
	}
}

static void io_fail_deferred(struct kura_op *op, int res)
{
	struct vd_io *io = KURA_CONTAINER_OF(op, struct vd_io, op);

	/* A piece may have failed already: never let a later 0 hide it. */
	if (res && !io->err)
		io->err = res;
	if (!--io->pending)
		io_end(io);
}

static void io_start(struct vd_io *io)
{
	struct kura_vd_engine *e = io->h->e;
	struct vd_vdisk *v = io->v;
	struct vd_chain *c = &io->h->chain;
	uint64_t off = io->off, end = io->off + io->len;
	int err = 0;

	if (io->kind != IO_READ && v->paused) {
		queue_tail(&v->wq_head, &v->wq_tail, io);
		return;
	}
	if (e->nlocks && io_locked(e, io)) {
		queue_tail(&e->lock_wq_head, &e->lock_wq_tail, io);
		return;
	}
	io_list_add(e, io);
	if (io->kind != IO_READ)
		v->writes_inflight++;
	if (!io->h->snap_layer)
		err = vd_chain_get(e, v, &c);
	else if (c->gen != e->tree_gen)
		err = vd_chain_build(e, c, io->h->snap_layer, UINT64_MAX);
	io->pending = 1;
	while (!err && off < end) {
		uint64_t ext = off / VD_EXT;
		unsigned blk = (unsigned)(off % VD_EXT / VD_BLK);
		uint64_t n = KURA_MIN(end - off, VD_EXT - (off % VD_EXT));
		err = io_piece(io, c, ext, blk, (unsigned)(n / VD_BLK),
			       io->buf ? io->buf + (off - io->off) : NULL);
		if (!err)
			io->pending++;
		off += n;
	}
	/* Completion always comes from the loop, even for an error now. */
	io->op.fn = io_fail_deferred;
	kura_loop_defer(e->loop, &io->op, err);
}

static void io_admitted(struct vd_sreq *r)
{
	io_start(KURA_CONTAINER_OF(r, struct vd_io, sr));
}

static int io_submit(struct kura_vd_handle *h, enum io_kind kind, uint64_t off, uint64_t len,
		     void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	struct vd_io *io;

	uint64_t size = kura_vd_size(h);

	if (off % VD_BLK || len % VD_BLK || !len || off > size || len > size - off)
		return -EINVAL;
	if (kind != IO_READ && h->snap_layer)
		return -EROFS;
	if (h->v->deleting)
		return -ENOENT;
	io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->h = h;
	io->v = h->v;
	io->kind = kind;
	io->off = off;
	io->len = len;
	io->buf = buf;
	io->cls = cls;
	io->cb = cb;
	io->arg = arg;
	io->sr.vdisk = h->v->id;
	io->sr.cls = cls;
	io->sr.bytes = kind == IO_DISCARD ? 0 : len; /* a discard moves no data */
	io->sr.dispatch = io_admitted;
	vd_sched_go(h->e, &io->sr);
	return 0;
}

int kura_vd_read(struct kura_vd_handle *h, uint64_t off, uint64_t len, void *buf,
		 enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	return io_submit(h, IO_READ, off, len, buf, cls, cb, arg);
}

int kura_vd_write(struct kura_vd_handle *h, uint64_t off, uint64_t len, const void *buf,
		  enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	return io_submit(h, IO_WRITE, off, len, (void *)buf, cls, cb, arg);
}

int kura_vd_write_cached(struct kura_vd_handle *h, uint64_t off, uint64_t len, const void *buf,
			 enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	return io_submit(h, IO_WRITE_CACHED, off, len, (void *)buf, cls, cb, arg);
}

int kura_vd_discard(struct kura_vd_handle *h, uint64_t off, uint64_t len, kura_blk_cb cb,
		    void *arg)
{
	return io_submit(h, IO_DISCARD, off, len, NULL, KURA_IO_GUEST, cb, arg);
}

int kura_vd_flush(struct kura_vd_handle *h, kura_blk_cb cb, void *arg)
{
	return h->e->bops->flush(h->e->b, cb, arg);
}

/* ---- write pause for snapshots ---- */

static void drained_deferred(struct kura_op *op, int res);

struct drained_call {
	struct kura_op op;
	void (*cb)(void *arg);
	void *arg;
};

static void drained_deferred(struct kura_op *op, int res)
{
	struct drained_call *d = KURA_CONTAINER_OF(op, struct drained_call, op);

	(void)res;
	d->cb(d->arg);
	free(d);
}

void vd_pause_writes(struct kura_vd_engine *e, struct vd_vdisk *v, void (*cb)(void *arg),
		     void *arg)
{
	struct drained_call *d;

	v->paused = true;
	if (v->writes_inflight) {
		v->drained = cb;
		v->drained_arg = arg;
		return;
	}
	d = malloc(sizeof(*d));
	if (!d) {
		v->drained = cb; /* runs at the next write completion, or now */
		v->drained_arg = arg;
		cb(arg);
		return;
	}
	d->op.fn = drained_deferred;
	d->cb = cb;
	d->arg = arg;
	kura_loop_defer(e->loop, &d->op, 0);
}

void vd_resume_writes(struct kura_vd_engine *e, struct vd_vdisk *v)
{
	struct vd_io *wq = v->wq_head;

	(void)e;
	v->paused = false;
	v->drained = NULL;
	v->wq_head = v->wq_tail = NULL;
	while (wq) {
		struct vd_io *io = wq;
		wq = io->next;
		io_start(io);
	}
}

/* ---- handles ---- */

int kura_vd_open(struct kura_vd_engine *e, const char *name, const char *snap,
		 struct kura_vd_handle **out)
{
	struct vd_vdisk *v = vd_find(e, name);
	struct kura_vd_handle *h;
	struct vd_layer *l = NULL;
	int err;

	if (!v)
		return -ENOENT;
	if (v->state != VD_READY)
		return -EBUSY;
	if (snap && !(l = vd_snap_find(e, v, snap)))
		return -ENOENT;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->e = e;
	h->v = v;
	h->size = v->size;
	if (l) {
		h->snap_layer = l->id;
		h->size = l->size;
		err = vd_chain_build(e, &h->chain, l->id, UINT64_MAX);
		if (err) {
			free(h);
			return err;
		}
	}
	v->opens++;
	if (l)
		l->opens++;
	*out = h;
	return 0;
}

void kura_vd_close(struct kura_vd_handle *h)
{
	if (!h)
		return;
	h->v->opens--;
	if (h->snap_layer) {
		struct vd_layer *l = vd_layer_get(h->e, h->snap_layer);
		if (l)
			l->opens--;
	}
	vd_chain_free(&h->chain);
	free(h);
}

uint64_t kura_vd_size(const struct kura_vd_handle *h)
{
	return h->snap_layer ? h->size : h->v->size;
}

uint64_t kura_vd_handle_uid(const struct kura_vd_handle *h)
{
	return h->snap_layer ? h->snap_layer : h->v->id;
}

int kura_vd_mapped(struct kura_vd_handle *h, uint64_t blk, uint64_t max, uint64_t *run)
{
	struct kura_vd_engine *e = h->e;
	uint64_t nblk = kura_vd_size(h) / VD_BLK, b = blk, ext = UINT64_MAX;
	struct kura_blk_bitmap bm;
	struct vd_chain *c = &h->chain;
	int state = -1, err;

	if (blk >= nblk)
		return -EINVAL;
	if (!h->snap_layer && (err = vd_chain_get(e, h->v, &c)))
		return err;
	if (max > nblk - blk)
		max = nblk - blk;
	while (b < blk + max) {
		uint64_t x = b / KURA_EXT_BLOCKS;
		int st;

		if (x != ext) {
			vd_chain_present(e, c, x, &bm);
			ext = x;
			/* Whole extents in one state skip the per-block walk. */
			if (state >= 0 && b % KURA_EXT_BLOCKS == 0 &&
			    vd_bm_count(&bm) == (state ? KURA_EXT_BLOCKS : 0u) &&
			    b + KURA_EXT_BLOCKS <= blk + max) {
				b += KURA_EXT_BLOCKS;
				continue;
			}
		}
		st = vd_bm_test(&bm, (unsigned)(b % KURA_EXT_BLOCKS)) ? 1 : 0;
		if (state < 0)
			state = st;
		else if (st != state)
			break;
		b++;
	}
	*run = b - blk;
	return state;
}
