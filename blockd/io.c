/* The data path: writes and the metadata operations of the store (reads
 * are in read.c).
 *
 * A write copies its data, computes the block checksums, updates the in-memory
 * index at once (so later submissions see it), and joins the journal's open
 * batch. When the batch is durable the write is acknowledged and then applied:
 * its checksums go into the checksum page and its data is written in place.
 * Writes waiting to be applied are queued per physical extent (struct xstate);
 * a read takes the blocks they hold from their data (read_queued), never from
 * the disk, where data and checksum may disagree until the write is in place;
 * it waits only for a write not answered yet.
 *
 * Direct writes: a background write (clone, rebuild, scrub, merge) of at
 * least DIRECT_MIN_BLOCKS blocks that only fills blocks an extent does not
 * hold, on a physical extent no live journal record writes to or frees
 * (struct pool_busy), goes to its place first and, once a disk flush made it
 * durable (one flush for every direct write that completed before it), joins
 * the journal as a record of checksums only (KURA_JREC_DWRITE): the device
 * writes its data once instead of twice. Until the record is appended the
 * index does not show the write (reads see the old blocks, a crash leaves
 * the blocks absent), and every later submission that touches its extent
 * waits in the store's held list, so records still reach the journal in the
 * order they were submitted. */
#include "blockd/io_int.h"
#include "common/crc.h"
#include "common/err.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XS_BUCKETS 4096u

/* Acknowledged writes are applied in place in groups of APPLY_BATCH, or
 * APPLY_DELAY_NS after the first of them, or at once when a checkpoint needs
 * them: an in-place write issued alongside each journal write would slow
 * that journal write down by the device flush it then waits for. */
#define APPLY_BATCH 32u
#define APPLY_DELAY_NS 1000000ULL
/* In-place writes in flight at most: a flush makes hundreds of cached writes durable at once, and a journal write (a
 * guest waits for it) queued at the device behind hundreds of in-place
 * writes waits for all of them (tens of ms where 16 cost no throughput). */
#define APPLY_DEPTH 16u
/* While guests write at a low queue depth the journal is idle between
 * their writes: in-place writes go in those gaps, APPLY_DEPTH_GAP at a
 * time, and APPLY_DEPTH_BUSY while a journal write is at the device, so
 * that the next guest write finds few of them ahead of it. All
 * APPLY_DEPTH when more than APPLY_BACKLOG_MAX blocks wait (the writes
 * come faster than that pace applies them), when a checkpoint waits for
 * them, or when no journal write is at the device nor ended for
 * kura_blk_opts.apply_idle_ns (2 ms).
 * Measured with 4 KiB cached writes from libiscsi at QD1 (docs/store.md):
 * p99 205-239 µs against 433-600 with APPLY_DEPTH always; 2 or 8 in the
 * gaps did worse than 4, and 0 or 1 while busy the same. */
#define APPLY_DEPTH_GAP 4u
#define APPLY_DEPTH_BUSY 1u
#define APPLY_BACKLOG_MAX 2048u /* blocks: 8 MiB */

/* Direct writes start at 64 KiB: below that the journal's group commit
 * costs less than a write of its own with FUA. */
#define DIRECT_MIN_BLOCKS 16u

/* Freed copies of write data kept for the next writes (common/bufpool.h). */
#define IO_BUFPOOL_BYTES (2u << 20) /* per size class */

struct mreq {
	struct jreq j;
	struct pend pend;
	struct kura_blk_store *s;
	struct kura_jrec rec;
	kura_blk_cb cb;
	void *arg;
	struct kura_op op;
	int ndisks;
};

uint64_t io_guest_start(struct kura_blk_store *s, enum kura_io_class cls)
{
	if (cls != KURA_IO_GUEST)
		return 0;
	s->st.guest_started++;
	return kura_now_ns() | 1; /* never 0 */
}

void io_guest_end(struct kura_blk_store *s, uint64_t t0)
{
	uint64_t now;

	if (!t0)
		return;
	now = kura_now_ns();
	s->st.guest_done++;
	s->st.guest_lat_ns += now > t0 ? now - t0 : 0;
}

const char *kura_io_class_name(enum kura_io_class c)
{
	static const char *const names[] = { "guest", "clone", "rebuild", "scrub", "merge" };
	return (unsigned)c < KURA_IO_NCLASS ? names[c] : "unknown";
}

/* ---- errors ---- */

void store_io_error(struct kura_blk_store *s, struct pool_disk *pd, uint64_t off, int err,
		    const char *what)
{
	uint64_t held = 0;

	s->st.io_errors++;
	if (pd)
		pd->io_errors++;
	if (pd && kura_ratelimit_ok(&pd->rl, &held))
		kura_log(ERR, "disk %s: %s failed at offset %llu: %s (%llu similar lines held back)",
			 pd->disk->path, what, (unsigned long long)off, kura_strerror(err),
			 (unsigned long long)held);
}

/* ---- per physical extent queues ---- */

static struct xstate **xs_bucket(struct kura_blk_store *s, uint32_t loc)
{
	return &s->xs[kura_hash64(loc) & (XS_BUCKETS - 1)];
}

struct xstate *io_xs_find(struct kura_blk_store *s, uint32_t loc)
{
	struct xstate *x = *xs_bucket(s, loc);

	while (x && x->loc != loc)
		x = x->hnext;
	return x;
}

static struct xstate *xs_get(struct kura_blk_store *s, uint32_t loc)
{
	struct xstate *x = io_xs_find(s, loc);

	if (x)
		return x;
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->loc = loc;
	x->hnext = *xs_bucket(s, loc);
	*xs_bucket(s, loc) = x;
	s->xs_count++;
	return x;
}

static void xs_put(struct kura_blk_store *s, struct xstate *x)
{
	struct xstate **pp;

	if (x->head || x->waiters || x->queued)
		return;
	for (pp = xs_bucket(s, x->loc); *pp != x; pp = &(*pp)->hnext)
		;
	*pp = x->hnext;
	s->xs_count--;
	free(x);
}

static int overlaps(unsigned a, unsigned an, unsigned b, unsigned bn)
{
	return a < b + bn && b < a + an;
}

int io_x_overlaps(const struct xstate *x, unsigned blk, unsigned n)
{
	for (const struct wreq *w = x->head; w; w = w->xnext)
		if (overlaps(w->blk, w->nblk, blk, n))
			return 1;
	return 0;
}

int io_pending(struct kura_blk_store *s)
{
	return s->xs_count != 0 || s->ndirect || s->held_head || s->flushq_head;
}

/* ---- blocked submissions (journal full) ---- */

void store_block(struct kura_blk_store *s, struct pend *p)
{
	p->next = NULL;
	if (s->blocked_tail)
		s->blocked_tail->next = p;
	else
		s->blocked_head = p;
	s->blocked_tail = p;
	ckpt_request(s);
}

/* Whether blocked p may go before the blocked entries ahead of it. */
static int may_pass(struct kura_blk_store *s, const struct pend *p)
{
	if (p->kind != PEND_GUEST)
		return 0;
	for (struct pend *q = s->blocked_head; q && q != p; q = q->next)
		if (q->kind != PEND_BG || (q->layer == p->layer && q->ext == p->ext))
			return 0;
	return 1;
}

void store_unblock(struct kura_blk_store *s)
{
	struct pend **pp = &s->blocked_head, *prev = NULL;

	while (*pp) {
		struct pend *p = *pp, *nx;
		int still;

		if (p != s->blocked_head && !may_pass(s, p)) {
			prev = p;
			pp = &p->next;
			continue;
		}
		nx = p->next;
		s->unblocking = p;
		still = p->retry(p);
		s->unblocking = NULL;
		if (still) {
			ckpt_request(s);
			if (p->kind != PEND_BG)
				return; /* nothing behind it may pass it */
			prev = p;
			pp = &p->next;
			continue;
		}
		/* a retry that held p (behind a direct write) relinked it; one that
		 * queued more behind p (the tail) left them at p->next */
		*pp = p->held ? nx : p->next;
		if (s->blocked_tail == p)
			s->blocked_tail = prev;
	}
}

/* Keeps submissions in order: once one waits for journal room, all wait,
 * but for guest writes passing background ones (struct pend). */
static int must_wait(struct kura_blk_store *s, struct pend *p, uint32_t rec_bytes,
		     uint32_t data_bytes)
{
	int room = journal_has_room(&s->journal, rec_bytes, data_bytes,
				    p->kind == PEND_BG ? 3 : 4);

	if (s->unblocking == p)
		return !room;
	if (room && !s->blocked_head)
		return 0;
	if (room && p->kind == PEND_GUEST) {
		p->next = NULL; /* not in the list: check against all of it */
		if (may_pass(s, p))
			return 0;
	}
	store_block(s, p);
	return 1;
}

/* ---- writes ---- */

static void wreq_free(struct wreq *w)
{
	if (w->pooled)
		kura_bufpool_put(&w->s->bufs, w->buf, (size_t)w->nblk * KURA_BLK_SIZE);
	else
		free(w->buf);
	free(w);
}

static void x_try_apply(struct kura_blk_store *s, struct xstate *x);

static void finish_deferred(struct kura_op *op, int res)
{
	struct wreq *w = KURA_CONTAINER_OF(op, struct wreq, op);

	io_guest_end(w->s, w->t0);
	w->cb(w->arg, res);
	wreq_free(w);
}

/* Lets the reads waiting on x look again. */
static void x_wake(struct kura_blk_store *s, struct xstate *x)
{
	struct rreq *waiters = x->waiters;

	x->waiters = NULL;
	read_wake(s, waiters);
}

/* Takes w off its extent's queue; `applied` says whether its data reached
 * its place (a write that did not stays counted against its journal batch,
 * so no checkpoint can trim the only copy of it). */
static void x_remove(struct kura_blk_store *s, struct xstate *x, struct wreq *w, int applied)
{
	struct wreq **pp = &x->head, *prev = NULL;

	while (*pp != w) {
		prev = *pp;
		pp = &(*pp)->xnext;
	}
	*pp = w->xnext;
	if (x->tail == w)
		x->tail = prev;
	if (applied)
		journal_batch_apply_done(&s->journal, w->batch);
	x_wake(s, x);
	x_try_apply(s, x);
	xs_put(s, x);
}

/* A write of w's data in place failed: the store stops. */
static void data_write_failed(struct kura_blk_store *s, struct wreq *w, int res, const char *why)
{
	struct pool_disk *pd = pool_disk_of(&s->pool, w->loc);

	store_io_error(s, pd, pool_data_off(pd, w->loc, w->blk), res, "data write");
	store_disk_failed(s, pd);
	store_fail(s, why, res);
}

/* How many in-place writes may be in flight now (APPLY_DEPTH_GAP above). */
static unsigned apply_depth(struct kura_blk_store *s)
{
	const struct kura_journal *j = &s->journal;

	if (s->apply_backlog > APPLY_BACKLOG_MAX || ckpt_active(s))
		return APPLY_DEPTH;
	if (j->inflight)
		return APPLY_DEPTH_BUSY;
	return kura_now_ns() - j->done_ns > s->apply_idle_ns ? APPLY_DEPTH : APPLY_DEPTH_GAP;
}

/* An in-place write ended (or never started): one more may go. */
static void apply_end(struct kura_blk_store *s)
{
	s->napplying--;
	if (s->applyq && s->napplying < apply_depth(s))
		io_apply_kick(s);
}

static void apply_done(struct kura_op *op, int res)
{
	struct wreq *w = KURA_CONTAINER_OF(op, struct wreq, op);
	struct kura_blk_store *s = w->s;

	if (res < 0)
		data_write_failed(s, w, res, "a write could not be applied in place");
	x_remove(s, io_xs_find(s, w->loc), w, res >= 0);
	wreq_free(w);
	apply_end(s);
	ckpt_progress(s);
}

static void apply_go(struct wreq *w)
{
	struct kura_blk_store *s = w->s;
	struct pool_disk *pd = pool_disk_of(&s->pool, w->loc);

	crc_update(&s->crc, w->loc, w->blk, w->nblk, w->crc);
	s->apply_gen++;
	w->iov.iov_base = w->buf;
	w->iov.iov_len = (size_t)w->nblk * KURA_BLK_SIZE;
	w->op.fn = apply_done;
	pd->disk->ops->rw(pd->disk, 1, &w->iov, 1, pool_data_off(pd, w->loc, w->blk), 0, &w->op);
}

static void apply_crc_ready(struct kura_op *op, int res)
{
	struct wreq *w = KURA_CONTAINER_OF(op, struct wreq, op);
	uint32_t *crcs;

	if (res >= 0 && crc_get(&w->s->crc, w->loc, &w->op, &crcs) == 1) {
		apply_go(w);
		return;
	}
	if (res >= 0)
		return; /* queued again behind a reload */
	store_fail(w->s, "a checksum page could not be read", res);
	x_remove(w->s, io_xs_find(w->s, w->loc), w, 0);
	apply_end(w->s);
	wreq_free(w);
}

static void apply_start(struct kura_blk_store *s, struct wreq *w)
{
	uint32_t *crcs;
	int r;

	w->applying = 1;
	s->napplying++;
	w->op.fn = apply_crc_ready;
	r = crc_get(&s->crc, w->loc, &w->op, &crcs);
	if (r == 1)
		apply_go(w);
	else if (r < 0)
		kura_loop_defer(s->loop, &w->op, r);
}

static void apply_queue(struct kura_blk_store *s, struct xstate *x)
{
	if (!x->queued) {
		x->queued = 1;
		x->qnext = s->applyq;
		s->applyq = x;
	}
}

static void x_try_apply(struct kura_blk_store *s, struct xstate *x)
{
	for (struct wreq *w = x->head; w; w = w->xnext) {
		int blocked = 0;

		if (!w->acked || w->applying || s->dead)
			continue;
		for (struct wreq *e = x->head; e != w; e = e->xnext)
			if (overlaps(e->blk, e->nblk, w->blk, w->nblk))
				blocked = 1;
		if (blocked)
			continue;
		if (s->napplying >= apply_depth(s)) {
			apply_queue(s, x); /* an in-place write or journal write that ends starts it */
			s->apply_held = 1;
			return;
		}
		s->apply_backlog -= s->apply_backlog < w->nblk ? s->apply_backlog : w->nblk;
		apply_start(s, w);
	}
}

/* Answers w's caller once: when cached (written, not yet durable) or when
 * durable, whichever comes first. */
static void write_answer(struct wreq *w, int err)
{
	struct kura_blk_store *s = w->s;

	if (w->answered)
		return;
	w->answered = 1;
	if (!err) {
		s->st.writes++;
		s->st.write_bytes += (uint64_t)w->nblk * KURA_BLK_SIZE;
	}
	io_guest_end(s, w->t0);
	w->cb(w->arg, err);
}

static void write_cached(struct jreq *j)
{
	struct wreq *w = KURA_CONTAINER_OF(j, struct wreq, j);
	struct kura_blk_store *s = w->s;
	uint32_t loc = w->loc;
	struct xstate *x;

	write_answer(w, 0); /* the callback may stop the store: w may be gone */
	if ((x = io_xs_find(s, loc)))
		x_wake(s, x); /* a read may take its data now */
}

static void write_durable(struct jreq *j, int err)
{
	struct wreq *w = KURA_CONTAINER_OF(j, struct wreq, j);
	struct kura_blk_store *s = w->s;
	struct xstate *x = io_xs_find(s, w->loc);

	w->acked = 1;
	write_answer(w, err);
	if (err) {
		x_remove(s, x, w, 1); /* never written: nothing to keep the batch for */
		wreq_free(w);
		return;
	}
	x_wake(s, x); /* a read waiting for this write may take its data now */
	apply_queue(s, x);
	s->apply_backlog += w->nblk;
	if (++s->unstarted >= APPLY_BATCH)
		io_apply_kick(s);
	else if (!s->apply_timer_armed) {
		s->apply_timer_armed = 1;
		kura_loop_timer(s->loop, &s->apply_timer, APPLY_DELAY_NS);
	}
}

static void apply_timer_fired(struct kura_op *op, int res)
{
	struct kura_blk_store *s = KURA_CONTAINER_OF(op, struct kura_blk_store, apply_timer.op);

	(void)res;
	s->apply_timer_armed = 0;
	io_apply_kick(s);
}

void io_apply_kick(struct kura_blk_store *s)
{
	s->unstarted = 0;
	while (s->applyq && s->napplying < apply_depth(s)) {
		struct xstate *x = s->applyq;
		s->applyq = x->qnext;
		x->queued = 0;
		x_try_apply(s, x); /* may queue it again */
		xs_put(s, x);
	}
	s->apply_held = s->applyq != NULL;
}

void io_apply_gap(struct kura_blk_store *s)
{
	if (s->apply_held && s->applyq)
		io_apply_kick(s);
}

static void skip_done(void *arg, int err)
{
	struct wreq *w = arg;

	io_guest_end(w->s, w->t0);
	w->cb(w->arg, err);
	wreq_free(w);
}

/* The journal record of w (its type set by the caller). */
static void wreq_rec(const struct wreq *w, struct kura_jrec *rec)
{
	rec->blk = w->blk;
	rec->nblk = w->nblk;
	rec->loc = w->loc;
	rec->layer = w->layer;
	rec->ext = w->ext;
	rec->version = w->version;
}

/* The index shows w (its record was just appended). */
static void wreq_show(struct kura_blk_store *s, const struct wreq *w)
{
	struct idx_entry *e = idx_find(&s->idx, w->layer, w->ext);

	idx_set_bits(&s->idx, e, w->blk, w->nblk);
	ent_raise_version(e, w->version);
	idx_mark_dirty(&s->idx, w->layer, w->ext);
}

/* ---- direct writes and the submissions they hold ---- */

static int pend_touches(const struct pend *p, uint64_t layer, uint64_t ext)
{
	return (p->nkeys >= 1 && p->layer == layer && p->ext == ext) ||
	       (p->nkeys >= 2 && p->layer2 == layer && p->ext2 == ext);
}

static int pends_meet(const struct pend *a, const struct pend *b)
{
	return (b->nkeys >= 1 && pend_touches(a, b->layer, b->ext)) ||
	       (b->nkeys >= 2 && pend_touches(a, b->layer2, b->ext2));
}

/* Whether p must wait: for a direct write in flight on an extent it touches,
 * or for a submission held before it (a smaller sid) that touches one. */
static int held_back(struct kura_blk_store *s, const struct pend *p)
{
	for (struct wreq *d = s->directs; d; d = d->dnext)
		if (pend_touches(p, d->layer, d->ext))
			return 1;
	for (struct pend *q = s->held_head; q && q->sid < p->sid; q = q->next)
		if (pends_meet(p, q))
			return 1;
	return 0;
}

/* Holds p, in submission order, if it must wait (held_back). */
static int hold_if_busy(struct kura_blk_store *s, struct pend *p)
{
	struct pend **pp = &s->held_head;

	if (!s->ndirect && !s->held_head)
		return 0;
	if (!held_back(s, p))
		return 0;
	while (*pp && (*pp)->sid < p->sid)
		pp = &(*pp)->next;
	p->next = *pp;
	*pp = p;
	if (!p->next)
		s->held_tail = p;
	p->held = 1;
	return 1;
}

static void flushq_run(struct kura_blk_store *s);

/* A direct write reached the journal or failed: submit, in order, what it
 * held and nothing still held before it holds. */
static void held_release(struct kura_blk_store *s)
{
	struct pend **pp = &s->held_head, *prev = NULL;

	while (*pp) {
		struct pend *p = *pp;

		if (held_back(s, p)) {
			prev = p;
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		if (s->held_tail == p)
			s->held_tail = prev;
		p->held = 0;
		p->retry(p); /* goes, or waits for journal room: nothing holds it now */
	}
	flushq_run(s);
}

static void direct_unlink(struct kura_blk_store *s, struct wreq *w)
{
	struct wreq **pp = &s->directs;

	while (*pp != w)
		pp = &(*pp)->dnext;
	*pp = w->dnext;
	s->ndirect--;
}

/* The direct write failed before its record: nothing of it is in the index. */
static void direct_fail(struct kura_blk_store *s, struct wreq *w, int err)
{
	direct_unlink(s, w);
	if (w->fresh)
		pool_release(&s->pool, w->loc);
	w->op.fn = finish_deferred;
	kura_loop_defer(s->loop, &w->op, err);
	held_release(s);
}

static void direct_durable(struct jreq *j, int err)
{
	struct wreq *w = KURA_CONTAINER_OF(j, struct wreq, j);
	struct kura_blk_store *s = w->s;

	if (!err) {
		s->st.writes++;
		s->st.write_bytes += (uint64_t)w->nblk * KURA_BLK_SIZE;
		s->st.direct_writes++;
		s->st.direct_bytes += (uint64_t)w->nblk * KURA_BLK_SIZE;
	}
	io_guest_end(s, w->t0);
	w->cb(w->arg, err);
	wreq_free(w);
}

static void direct_crc_ready(struct kura_op *op, int res);

/* The data is in place: append the record (when the journal has room and the
 * checksum page is in memory) and show the write in the index. Returns 1
 * while it waits for journal room (struct pend). */
static int direct_record(struct kura_blk_store *s, struct wreq *w)
{
	struct kura_jrec rec = { .type = KURA_JREC_DWRITE };
	uint32_t *crcs;
	int err;

	if (s->dead) {
		direct_fail(s, w, KURA_E_DEAD);
		return 0;
	}
	if (must_wait(s, &w->pend, (uint32_t)(sizeof(rec) + 4u * w->nblk), 0))
		return 1;
	w->op.fn = direct_crc_ready;
	err = crc_get(&s->crc, w->loc, &w->op, &crcs);
	if (err == 0)
		return 0; /* direct_crc_ready comes back here */
	if (err < 0)
		goto fail;
	err = idx_reserve(&s->idx);
	if (!err && w->fresh)
		err = idx_add(&s->idx, w->layer, w->ext, w->loc);
	if (err)
		goto fail;
	wreq_rec(w, &rec);
	w->j.durable = direct_durable;
	w->batch = journal_append(&s->journal, &rec, w->crc, NULL, &w->j);
	if (!w->batch) {
		if (w->fresh)
			idx_del(&s->idx, w->layer, w->ext);
		err = -ENOMEM;
		goto fail;
	}
	crc_update(&s->crc, w->loc, w->blk, w->nblk, w->crc);
	s->apply_gen++;
	wreq_show(s, w);
	direct_unlink(s, w);
	held_release(s);
	return 0;
fail:
	if (err != -ENOMEM)
		store_fail(s, "a checksum page could not be read", err);
	direct_fail(s, w, err == -ENOMEM ? err : -EIO);
	return 0;
}

static int direct_retry(struct pend *p)
{
	struct wreq *w = KURA_CONTAINER_OF(p, struct wreq, pend);

	return direct_record(w->s, w);
}

static void direct_crc_ready(struct kura_op *op, int res)
{
	struct wreq *w = KURA_CONTAINER_OF(op, struct wreq, op);

	if (res < 0) {
		store_fail(w->s, "a checksum page could not be read", res);
		direct_fail(w->s, w, -EIO);
		return;
	}
	direct_record(w->s, w);
}

static void dflush_start(struct kura_blk_store *s);

/* The flushes are done: what they covered is durable (or not, on an error). */
static void dflush_done(struct kura_op *op, int res)
{
	struct dflush *f = KURA_CONTAINER_OF(op, struct dflush, op);
	struct kura_blk_store *s = f->s;
	struct wreq *list;

	if (res < 0) {
		struct pool_disk *pd = &s->pool.d[f - s->dflush];

		store_io_error(s, pd, 0, res, "flush");
		store_disk_failed(s, pd);
		s->dflush_err = res;
	}
	if (--s->dflush_pending)
		return;
	list = s->dflushed;
	s->dflushed = NULL;
	if (s->dflush_err)
		store_fail(s, "a disk flush failed", s->dflush_err);
	while (list) {
		struct wreq *w = list;
		list = w->xnext;
		if (s->dflush_err) {
			direct_fail(s, w, -EIO);
			continue;
		}
		w->pend.retry = direct_retry;
		direct_record(s, w);
	}
	if (s->dwait)
		dflush_start(s);
}

/* Flushes every disk that holds a direct write waiting for durability. */
static void dflush_start(struct kura_blk_store *s)
{
	if (!s->dflush && !(s->dflush = calloc(s->pool.n, sizeof(*s->dflush)))) {
		while (s->dwait) {
			struct wreq *w = s->dwait;
			s->dwait = w->xnext;
			direct_fail(s, w, -ENOMEM);
		}
		return;
	}
	s->dflushed = s->dwait;
	s->dwait = NULL;
	s->dflush_err = 0;
	for (struct wreq *w = s->dflushed; w; w = w->xnext)
		s->dflush[pool_disk_of(&s->pool, w->loc) - s->pool.d].want = 1;
	s->dflush_pending = 1; /* no completion may end the round while it starts */
	for (unsigned i = 0; i < s->pool.n; i++) {
		struct dflush *f = &s->dflush[i];
		if (!f->want)
			continue;
		f->want = 0;
		f->s = s;
		f->op.fn = dflush_done;
		s->dflush_pending++;
		s->pool.d[i].disk->ops->flush(s->pool.d[i].disk, &f->op);
	}
	s->dflush_pending--;
}

static void direct_written(struct kura_op *op, int res)
{
	struct wreq *w = KURA_CONTAINER_OF(op, struct wreq, op);
	struct kura_blk_store *s = w->s;

	if (res < 0) {
		data_write_failed(s, w, res, "a direct write failed");
		direct_fail(s, w, -EIO);
		return;
	}
	/* durable with the next flush: every write in place by then shares it */
	w->xnext = s->dwait;
	s->dwait = w;
	if (!s->dflush_pending)
		dflush_start(s);
}

/* Starts w as a direct write when it may be one (see the top of this file):
 * returns 1 when it did. */
static int direct_start(struct kura_blk_store *s, struct wreq *w, struct idx_entry *e)
{
	struct kura_blk_bitmap bm;
	struct pool_disk *pd;
	uint32_t loc;

	if (w->pend.kind != PEND_BG || w->nblk < DIRECT_MIN_BLOCKS)
		return 0;
	if (e) {
		idx_bitmap(&s->idx, e, &bm);
		if (bm_any_range(&bm, w->blk, w->nblk) || io_xs_find(s, e->loc) ||
		    !pool_clean(&s->pool, e->loc, s->journal.tail_seq))
			return 0;
		loc = e->loc;
		w->fresh = 0;
	} else {
		if (pool_alloc_clean(&s->pool, s->journal.tail_seq, &loc))
			return 0; /* the journaled path allocates, or reports ENOSPC */
		w->fresh = 1;
	}
	w->loc = loc;
	w->dnext = s->directs;
	s->directs = w;
	s->ndirect++;
	pd = pool_disk_of(&s->pool, loc);
	w->iov.iov_base = w->buf;
	w->iov.iov_len = (size_t)w->nblk * KURA_BLK_SIZE;
	w->op.fn = direct_written;
	pd->disk->ops->rw(pd->disk, 1, &w->iov, 1, pool_data_off(pd, loc, w->blk), 0, &w->op);
	return 1;
}

static int write_submit(struct kura_blk_store *s, struct wreq *w)
{
	struct kura_jrec rec = { 0 };
	struct idx_entry *e = NULL;
	struct xstate *x;
	int err, added = 0;

	if (s->dead) {
		err = KURA_E_DEAD;
		goto fail;
	}
	if (hold_if_busy(s, &w->pend))
		return 0;
	if (must_wait(s, &w->pend, (uint32_t)(sizeof(rec) + 4u * w->nblk),
		      (uint32_t)w->nblk * KURA_BLK_SIZE))
		return 1;
	err = idx_reserve(&s->idx);
	if (err)
		goto fail;
	e = idx_find(&s->idx, w->layer, w->ext);
	if (e && w->if_newer && w->version <= ent_version(e)) {
		/* a copy this extent has already had (or an older one): nothing to
		 * write, but answer only once what it has is durable */
		err = kura_blk_flush(s, skip_done, w);
		if (err)
			goto fail;
		return 0;
	}
	if (w->if_newer && w->prev != (e ? ent_version(e) : 0)) {
		/* this copy missed a write before this one: its blocks go, but
		 * the extent keeps the version whose content it holds */
		w->version = e ? ent_version(e) : 0;
		s->st.replica_gaps++;
	}
	if (direct_start(s, w, e))
		return 0;
	if (!e) {
		uint32_t loc;
		err = pool_alloc(&s->pool, &loc);
		if (err) {
			if (err == -ENOSPC)
				s->st.enospc++;
			goto fail;
		}
		err = idx_add(&s->idx, w->layer, w->ext, loc);
		if (err) {
			pool_release(&s->pool, loc);
			goto fail;
		}
		added = 1;
		e = idx_find(&s->idx, w->layer, w->ext);
	}
	x = xs_get(s, e->loc);
	if (!x) {
		err = -ENOMEM;
		goto undo;
	}
	w->loc = e->loc;
	rec.type = KURA_JREC_WRITE;
	wreq_rec(w, &rec);
	w->j.durable = write_durable;
	w->j.cached = w->cached ? write_cached : NULL;
	w->batch = journal_append(&s->journal, &rec, w->crc, w->buf, &w->j);
	if (!w->batch) {
		xs_put(s, x);
		err = -ENOMEM;
		goto undo;
	}
	journal_batch_apply_start(w->batch);
	pool_mark_busy(&s->pool, w->loc, s->journal.next_seq);
	wreq_show(s, w);
	w->xnext = NULL;
	if (x->tail)
		x->tail->xnext = w;
	else
		x->head = w;
	x->tail = w;
	return 0;
undo:
	if (added) {
		uint32_t loc = e->loc;
		idx_del(&s->idx, w->layer, w->ext);
		pool_release(&s->pool, loc);
	}
fail:
	w->op.fn = finish_deferred;
	kura_loop_defer(s->loop, &w->op, err);
	return 0;
}

static int write_retry(struct pend *p)
{
	struct wreq *w = KURA_CONTAINER_OF(p, struct wreq, pend);

	return write_submit(w->s, w);
}

int io_check_range(uint64_t ext, unsigned blk, unsigned nblk)
{
	if (ext >= KURA_EXT_MAX || !nblk || blk >= KURA_EXT_BLOCKS || nblk > KURA_EXT_BLOCKS ||
	    blk + nblk > KURA_EXT_BLOCKS)
		return -EINVAL;
	return 0;
}

/* Both write entry points: `own` says buf is handed over (freed by the store)
 * rather than copied. */
static int write_common(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
			unsigned nblk, void *buf, int own, uint64_t version, uint64_t prev,
			enum kura_io_class cls, kura_blk_cb cb, void *arg, int if_newer, int cached)
{
	struct wreq *w;
	int err = io_check_range(ext, blk, nblk);

	if (err)
		return err;
	if ((unsigned)cls >= KURA_IO_NCLASS || !buf || (own && (uintptr_t)buf % KURA_BLK_SIZE))
		return -EINVAL;
	w = calloc(1, sizeof(*w) + 4u * nblk);
	if (!w)
		return -ENOMEM;
	if (own) {
		w->buf = buf;
	} else {
		w->buf = kura_bufpool_get(&s->bufs, (size_t)nblk * KURA_BLK_SIZE);
		if (!w->buf) {
			free(w);
			return -ENOMEM;
		}
		w->pooled = 1;
		memcpy(w->buf, buf, (size_t)nblk * KURA_BLK_SIZE);
	}
	for (unsigned i = 0; i < nblk; i++)
		w->crc[i] = kura_crc32c(0, (uint8_t *)w->buf + (size_t)i * KURA_BLK_SIZE,
					KURA_BLK_SIZE);
	w->s = s;
	w->layer = layer;
	w->ext = ext;
	w->blk = (uint16_t)blk;
	w->nblk = (uint16_t)nblk;
	w->version = version;
	w->prev = prev;
	w->if_newer = (uint8_t)if_newer;
	w->cached = (uint8_t)cached;
	w->cb = cb;
	w->arg = arg;
	w->pend.retry = write_retry;
	w->pend.kind = cls == KURA_IO_GUEST ? PEND_GUEST : PEND_BG;
	w->pend.layer = layer;
	w->pend.ext = ext;
	w->pend.nkeys = 1;
	w->pend.sid = ++s->sub_seq;
	w->t0 = io_guest_start(s, cls);
	write_submit(s, w);
	return 0;
}

int kura_blk_write(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
		   unsigned nblk, const void *buf, uint64_t version, enum kura_io_class cls,
		   kura_blk_cb cb, void *arg)
{
	return write_common(s, layer, ext, blk, nblk, (void *)buf, 0, version, 0, cls, cb, arg, 0, 0);
}

int kura_blk_write_cached(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
			  unsigned nblk, const void *buf, uint64_t version, enum kura_io_class cls,
			  kura_blk_cb cb, void *arg)
{
	return write_common(s, layer, ext, blk, nblk, (void *)buf, 0, version, 0, cls, cb, arg, 0, 1);
}

int kura_blk_write_owned(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
			 unsigned nblk, void *buf, uint64_t version, enum kura_io_class cls,
			 kura_blk_cb cb, void *arg)
{
	return write_common(s, layer, ext, blk, nblk, buf, 1, version, 0, cls, cb, arg, 0, 0);
}

int kura_blk_write_replica(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
			   unsigned nblk, void *buf, uint64_t version, uint64_t prev,
			   enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	return write_common(s, layer, ext, blk, nblk, buf, 1, version, prev, cls, cb, arg, 1, 0);
}

/* ---- trim, free, move, flush ---- */

static void meta_durable(struct jreq *j, int err)
{
	struct mreq *m = KURA_CONTAINER_OF(j, struct mreq, j);

	m->cb(m->arg, err);
	free(m);
}

static void meta_finish_deferred(struct kura_op *op, int res)
{
	struct mreq *m = KURA_CONTAINER_OF(op, struct mreq, op);

	m->cb(m->arg, res);
	free(m);
}

/* Applies a trim, free or move to the index and the allocator (at submission,
 * and again at replay). */
int io_meta_apply(struct kura_blk_store *s, const struct kura_jrec *rec)
{
	struct idx_entry *e = idx_find(&s->idx, rec->layer, rec->ext);
	uint32_t loc;

	switch (rec->type) {
	case KURA_JREC_TRIM:
		if (!e)
			return 0;
		if (idx_clear_bits(&s->idx, e, rec->blk, rec->nblk) == 0) {
			loc = e->loc;
			idx_del(&s->idx, rec->layer, rec->ext);
			pool_release(&s->pool, loc);
		} else {
			idx_mark_dirty(&s->idx, rec->layer, rec->ext);
		}
		return 0;
	case KURA_JREC_FREE:
		if (!e)
			return -ENOENT;
		loc = e->loc;
		idx_del(&s->idx, rec->layer, rec->ext);
		pool_release(&s->pool, loc);
		return 0;
	case KURA_JREC_MOVE:
		return idx_move(&s->idx, rec->layer, rec->ext, rec->arg_layer, rec->arg_ext);
	default:
		return -EINVAL;
	}
}

static int meta_submit(struct kura_blk_store *s, struct mreq *m)
{
	struct idx_entry *e;
	uint32_t loc = LOC_NONE;
	int err;

	if (s->dead) {
		err = KURA_E_DEAD;
		goto fail;
	}
	if (hold_if_busy(s, &m->pend))
		return 0;
	if (must_wait(s, &m->pend, sizeof(m->rec), 0))
		return 1;
	err = idx_reserve(&s->idx);
	if (err)
		goto fail;
	e = idx_find(&s->idx, m->rec.layer, m->rec.ext);
	if (e && m->rec.type != KURA_JREC_MOVE)
		loc = e->loc;
	err = io_meta_apply(s, &m->rec);
	if (err)
		goto fail;
	m->j.durable = meta_durable;
	if (!journal_append(&s->journal, &m->rec, NULL, NULL, &m->j)) {
		/* the index already shows the change: stop rather than diverge */
		store_fail(s, "out of memory for a journal record", -ENOMEM);
		err = -ENOMEM;
		goto fail;
	}
	/* a trim or free: no direct write may land there before it is durable
	 * and out of the live journal */
	if (loc != LOC_NONE)
		pool_mark_busy(&s->pool, loc, s->journal.next_seq);
	return 0;
fail:
	m->op.fn = meta_finish_deferred;
	kura_loop_defer(s->loop, &m->op, err);
	return 0;
}

static int meta_retry(struct pend *p)
{
	struct mreq *m = KURA_CONTAINER_OF(p, struct mreq, pend);

	return meta_submit(m->s, m);
}

static int meta_op(struct kura_blk_store *s, const struct kura_jrec *rec, kura_blk_cb cb,
		   void *arg)
{
	struct mreq *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->s = s;
	m->rec = *rec;
	m->cb = cb;
	m->arg = arg;
	m->pend.retry = meta_retry;
	m->pend.layer = rec->layer;
	m->pend.ext = rec->ext;
	m->pend.nkeys = 1;
	if (rec->type == KURA_JREC_MOVE) {
		m->pend.layer2 = rec->arg_layer;
		m->pend.ext2 = rec->arg_ext;
		m->pend.nkeys = 2;
	}
	m->pend.sid = ++s->sub_seq;
	meta_submit(s, m);
	return 0;
}

int kura_blk_trim(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
		  unsigned nblk, kura_blk_cb cb, void *arg)
{
	struct kura_jrec rec = { .type = KURA_JREC_TRIM, .layer = layer, .ext = ext };
	int err = io_check_range(ext, blk, nblk);

	if (err)
		return err;
	rec.blk = (uint16_t)blk;
	rec.nblk = (uint16_t)nblk;
	return meta_op(s, &rec, cb, arg);
}

int kura_blk_free(struct kura_blk_store *s, uint64_t layer, uint64_t ext, kura_blk_cb cb,
		  void *arg)
{
	struct kura_jrec rec = { .type = KURA_JREC_FREE, .layer = layer, .ext = ext };

	if (ext >= KURA_EXT_MAX)
		return -EINVAL;
	return meta_op(s, &rec, cb, arg);
}

int kura_blk_move(struct kura_blk_store *s, uint64_t layer, uint64_t ext, uint64_t new_layer,
		  uint64_t new_ext, kura_blk_cb cb, void *arg)
{
	struct kura_jrec rec = { .type = KURA_JREC_MOVE, .layer = layer, .ext = ext,
				 .arg_layer = new_layer, .arg_ext = new_ext };

	if (ext >= KURA_EXT_MAX || new_ext >= KURA_EXT_MAX)
		return -EINVAL;
	return meta_op(s, &rec, cb, arg);
}

/* Issues the barrier of a flush (or fails it on a dead store). */
static void flush_go(struct kura_blk_store *s, struct mreq *m)
{
	if (s->dead || journal_barrier(&s->journal, &m->j)) {
		m->op.fn = meta_finish_deferred;
		kura_loop_defer(s->loop, &m->op, s->dead ? KURA_E_DEAD : -ENOMEM);
	}
}

/* The oldest submission number among direct writes and held submissions. */
static uint64_t oldest_sid(struct kura_blk_store *s)
{
	uint64_t min = UINT64_MAX;

	for (struct wreq *d = s->directs; d; d = d->dnext)
		if (d->pend.sid < min)
			min = d->pend.sid;
	for (struct pend *p = s->held_head; p; p = p->next)
		if (p->sid < min)
			min = p->sid;
	return min;
}

/* Flushes wait for the direct writes and held submissions before them. */
static void flushq_run(struct kura_blk_store *s)
{
	uint64_t min;

	if (!s->flushq_head)
		return;
	min = oldest_sid(s);
	while (s->flushq_head && s->flushq_head->sid < min) {
		struct pend *p = s->flushq_head;
		s->flushq_head = p->next;
		if (!s->flushq_head)
			s->flushq_tail = NULL;
		flush_go(s, KURA_CONTAINER_OF(p, struct mreq, pend));
	}
}

int kura_blk_flush(struct kura_blk_store *s, kura_blk_cb cb, void *arg)
{
	struct mreq *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->s = s;
	m->cb = cb;
	m->arg = arg;
	m->j.durable = meta_durable;
	m->pend.sid = ++s->sub_seq;
	if (!s->dead && (s->ndirect || s->held_head)) {
		m->pend.next = NULL;
		if (s->flushq_tail)
			s->flushq_tail->next = &m->pend;
		else
			s->flushq_head = &m->pend;
		s->flushq_tail = &m->pend;
		return 0;
	}
	flush_go(s, m);
	return 0;
}

void io_batch_durable(struct kura_blk_store *s)
{
	ckpt_progress(s);
}

int io_init(struct kura_blk_store *s)
{
	s->apply_timer.op.fn = apply_timer_fired;
	kura_bufpool_init(&s->bufs, IO_BUFPOOL_BYTES);
	s->xs = calloc(XS_BUCKETS, sizeof(*s->xs));
	return s->xs ? 0 : -ENOMEM;
}

void io_destroy(struct kura_blk_store *s)
{
	free(s->dflush);
	s->dflush = NULL;
	if (!s->xs)
		return;
	for (unsigned i = 0; i < XS_BUCKETS; i++) {
		struct xstate *x = s->xs[i];
		while (x) {
			struct xstate *n = x->hnext;
			struct wreq *w = x->head;
			while (w) {
				struct wreq *wn = w->xnext;
				wreq_free(w);
				w = wn;
			}
			free(x);
			x = n;
		}
	}
	free(s->xs);
	s->xs = NULL;
	kura_bufpool_drain(&s->bufs);
}

void store_fail(struct kura_blk_store *s, const char *what, int err)
{
	if (s->dead)
		return;
	s->dead = 1;
	kura_log(ERR, "store stopped: %s (%s); writes now fail; restart blockd to recover "
		 "from the journal", what, kura_strerror(err));
	journal_fail_all(&s->journal, KURA_E_DEAD);
	store_unblock(s); /* every waiting submission fails at once now */
	ckpt_progress(s); /* a checkpoint under way gives up */
}
