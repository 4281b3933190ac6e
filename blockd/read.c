/* The store's reads: from the disk, verified against the block checksums,
 * and from the writes queued on an extent that are not in place yet
 * (io_int.h). A read that raced an in-place write and sees a checksum
 * mismatch reads again. */
#include "blockd/io_int.h"
#include "common/crc.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct rreq {
	struct kura_blk_store *s;
	uint64_t layer, ext, gen;
	uint16_t blk, nblk, first, last;
	int tries;
	uint64_t t0;      /* guest class: when it arrived (ns), else 0 */
	uint8_t *buf;
	kura_blk_cb cb;
	void *arg;
	struct rreq *next;
	uint32_t loc;
	struct kura_op op;
	struct iovec iov;
	struct kura_blk_bitmap bm;
	struct kura_blk_bitmap queued; /* blocks taken from queued writes, into mem */
	uint8_t *mem;                  /* nblk blocks, when some are */
	uint32_t crc[KURA_EXT_BLOCKS];
};

static void crc_error(struct kura_blk_store *s, struct pool_disk *pd, uint64_t off,
		      const struct rreq *r, unsigned blk)
{
	uint64_t held = 0;

	s->st.crc_errors++;
	pd->crc_errors++;
	if (kura_ratelimit_ok(&pd->rl, &held))
		kura_log(ERR,
			 "disk %s: checksum mismatch at offset %llu (layer %llu extent %llu block %u) "
			 "(%llu similar lines held back)",
			 pd->disk->path, (unsigned long long)off, (unsigned long long)r->layer,
			 (unsigned long long)r->ext, blk, (unsigned long long)held);
}

static void read_start(struct kura_op *op, int res);

static void read_finish(struct rreq *r, int err)
{
	if (!err) {
		r->s->st.reads++;
		r->s->st.read_bytes += (uint64_t)r->nblk * KURA_BLK_SIZE;
		if (bm_count(&r->queued))
			r->s->st.queued_reads++;
	}
	io_guest_end(r->s, r->t0);
	r->cb(r->arg, err);
	free(r->mem);
	free(r);
}

static void zero_absent(struct rreq *r)
{
	for (unsigned i = 0; i < r->nblk; i++)
		if (!bm_test(&r->bm, r->blk + i))
			memset(r->buf + (size_t)i * KURA_BLK_SIZE, 0, KURA_BLK_SIZE);
}

static void read_done(struct kura_op *op, int res)
{
	struct rreq *r = KURA_CONTAINER_OF(op, struct rreq, op);
	struct kura_blk_store *s = r->s;
	struct pool_disk *pd = pool_disk_of(&s->pool, r->loc);

	if (res < 0) {
		store_io_error(s, pd, pool_data_off(pd, r->loc, r->first), res, "data read");
		read_finish(r, -EIO);
		return;
	}
	for (unsigned b = r->first; b <= r->last; b++) {
		uint8_t *p = r->buf + (size_t)(b - r->blk) * KURA_BLK_SIZE;
		if (!bm_test(&r->bm, b) || bm_test(&r->queued, b) ||
		    kura_crc32c(0, p, KURA_BLK_SIZE) == r->crc[b])
			continue;
		if (s->apply_gen != r->gen && r->tries < 8) {
			/* a write was applied while we read: look again */
			r->tries++;
			read_start(&r->op, 0);
			return;
		}
		crc_error(s, pd, pool_data_off(pd, r->loc, b), r, b);
		read_finish(r, -EIO);
		return;
	}
	for (unsigned b = r->blk; b < (unsigned)r->blk + r->nblk; b++)
		if (bm_test(&r->queued, b))
			memcpy(r->buf + (size_t)(b - r->blk) * KURA_BLK_SIZE,
			       r->mem + (size_t)(b - r->blk) * KURA_BLK_SIZE, KURA_BLK_SIZE);
	zero_absent(r);
	read_finish(r, 0);
}

/* Takes the blocks r asks for that writes queued on x hold (data and
 * checksum perhaps not in place yet) from those writes' data, the last write
 * to each block winning: a flush and an in-place write would otherwise stand
 * between a guest and the data it has just written. Returns 1 when that
 * answers every block the extent holds (the blocks are in r->buf), 2 when
 * others must come from the disk (the blocks taken are in r->mem and
 * r->queued, put over the disk's once it has answered), 0 when the last
 * write to a block is not answered yet (the read waits for it, so it never
 * shows data the writer has not been told is written), -ENOMEM. */
static int read_queued(const struct xstate *x, struct rreq *r)
{
	const struct wreq *src[KURA_EXT_BLOCKS] = { 0 };
	int all = 1;
	uint8_t *dst;

	for (const struct wreq *w = x->head; w; w = w->xnext)
		for (unsigned b = w->blk; b < (unsigned)w->blk + w->nblk; b++)
			if (b >= r->blk && b < (unsigned)r->blk + r->nblk)
				src[b] = w;
	for (unsigned b = r->blk; b < (unsigned)r->blk + r->nblk; b++) {
		if (!bm_test(&r->bm, b))
			continue;
		if (src[b] && !src[b]->answered)
			return 0;
		if (!src[b])
			all = 0;
	}
	if (!all && !(r->mem = malloc((size_t)r->nblk * KURA_BLK_SIZE)))
		return -ENOMEM;
	dst = all ? r->buf : r->mem;
	for (unsigned b = r->blk; b < (unsigned)r->blk + r->nblk; b++) {
		if (!src[b] || !bm_test(&r->bm, b))
			continue;
		memcpy(dst + (size_t)(b - r->blk) * KURA_BLK_SIZE,
		       (const uint8_t *)src[b]->buf + (size_t)(b - src[b]->blk) * KURA_BLK_SIZE,
		       KURA_BLK_SIZE);
		bm_set(&r->queued, b);
	}
	return all ? 1 : 2;
}

static void read_start(struct kura_op *op, int res)
{
	struct rreq *r = KURA_CONTAINER_OF(op, struct rreq, op);
	struct kura_blk_store *s = r->s;
	struct idx_entry *e;
	struct xstate *x;
	struct pool_disk *pd;
	uint32_t *crcs;
	int got;

	free(r->mem); /* of an earlier attempt */
	r->mem = NULL;
	memset(&r->queued, 0, sizeof(r->queued));
	if (s->dead || res < 0) {
		read_finish(r, s->dead ? KURA_E_DEAD : -EIO);
		return;
	}
	e = idx_find(&s->idx, r->layer, r->ext);
	if (e)
		idx_bitmap(&s->idx, e, &r->bm);
	if (!e || !bm_any_range(&r->bm, r->blk, r->nblk)) {
		memset(r->buf, 0, (size_t)r->nblk * KURA_BLK_SIZE);
		read_finish(r, 0);
		return;
	}
	r->loc = e->loc;
	x = io_xs_find(s, r->loc);
	if (x && io_x_overlaps(x, r->blk, r->nblk)) {
		got = read_queued(x, r);
		if (got < 0) {
			read_finish(r, got);
			return;
		}
		if (got == 1) {
			zero_absent(r);
			read_finish(r, 0);
			return;
		}
		if (got == 0) {
			r->op.fn = read_start;
			r->next = x->waiters;
			x->waiters = r;
			return; /* answered writes wake it (write_cached, write_durable) */
		}
	}
	r->op.fn = read_start;
	got = crc_get(&s->crc, r->loc, &r->op, &crcs);
	if (got == 0)
		return;
	if (got < 0) {
		read_finish(r, got);
		return;
	}
	/* the blocks to read from the disk: held, not taken from queued writes */
	r->first = r->blk;
	while (!bm_test(&r->bm, r->first) || bm_test(&r->queued, r->first))
		r->first++;
	r->last = (uint16_t)(r->blk + r->nblk - 1);
	while (!bm_test(&r->bm, r->last) || bm_test(&r->queued, r->last))
		r->last--;
	memcpy(&r->crc[r->first], &crcs[r->first], 4u * (r->last - r->first + 1u));
	r->gen = s->apply_gen;
	pd = pool_disk_of(&s->pool, r->loc);
	r->iov.iov_base = r->buf + (size_t)(r->first - r->blk) * KURA_BLK_SIZE;
	r->iov.iov_len = (size_t)(r->last - r->first + 1u) * KURA_BLK_SIZE;
	r->op.fn = read_done;
	pd->disk->ops->rw(pd->disk, 0, &r->iov, 1, pool_data_off(pd, r->loc, r->first), 0, &r->op);
}

int kura_blk_read(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
		  unsigned nblk, void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg)
{
	struct rreq *r;
	int err = io_check_range(ext, blk, nblk);

	if (err)
		return err;
	if ((unsigned)cls >= KURA_IO_NCLASS || !buf || ((uintptr_t)buf % KURA_BLK_SIZE))
		return -EINVAL;
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->s = s;
	r->layer = layer;
	r->ext = ext;
	r->blk = (uint16_t)blk;
	r->nblk = (uint16_t)nblk;
	r->buf = buf;
	r->cb = cb;
	r->arg = arg;
	r->tries = 0;
	r->mem = NULL;
	r->t0 = io_guest_start(s, cls);
	r->op.fn = read_start;
	kura_loop_defer(s->loop, &r->op, 0);
	return 0;
}

void read_wake(struct kura_blk_store *s, struct rreq *list)
{
	while (list) {
		struct rreq *r = list;
		list = r->next;
		kura_loop_defer(s->loop, &r->op, 0);
	}
}
