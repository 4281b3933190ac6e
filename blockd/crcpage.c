/* Cache of checksum pages. A page holds the 256 crc32c of 4 extents; pages
 * are read on demand, updated when writes are applied, and written back at
 * checkpoints (the journal repairs a page torn by a crash, because every
 * checksum that changed since the last checkpoint is still in the journal). */
#include "blockd/store_int.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct crcpage {
	uint32_t pageno;
	uint8_t ready, dirty, writing, in_lru;
	uint64_t gen, written_gen;
	struct crcpage *hnext, *lprev, *lnext;
	struct kura_op *waiters;
	uint32_t *crc;
	void *wb_buf;
	struct iovec iov;
	struct kura_op io_op;
	struct kura_crccache *c;
};

#define CRCS_PER_PAGE (KURA_BLK_SIZE / 4)

int crc_init(struct kura_crccache *c, struct kura_blk_store *s, uint64_t bytes)
{
	memset(c, 0, sizeof(*c));
	c->s = s;
	c->cap = (uint32_t)KURA_MAX(bytes / KURA_BLK_SIZE, 8);
	c->nbuckets = 1024;
	while (c->nbuckets < c->cap)
		c->nbuckets *= 2;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	return c->buckets ? 0 : -ENOMEM;
}

static void page_free(struct crcpage *p)
{
	free(p->crc);
	free(p->wb_buf);
	free(p);
}

void crc_destroy(struct kura_crccache *c)
{
	for (uint32_t i = 0; i < c->nbuckets; i++) {
		struct crcpage *p = c->buckets ? c->buckets[i] : NULL;
		while (p) {
			struct crcpage *n = p->hnext;
			page_free(p);
			p = n;
		}
	}
	free(c->buckets);
	memset(c, 0, sizeof(*c));
}

static struct crcpage **bucket(struct kura_crccache *c, uint32_t pageno)
{
	return &c->buckets[kura_hash64(pageno) & (c->nbuckets - 1)];
}

static struct crcpage *page_find(struct kura_crccache *c, uint32_t pageno)
{
	struct crcpage *p = *bucket(c, pageno);

	while (p && p->pageno != pageno)
		p = p->hnext;
	return p;
}

static void page_unhash(struct kura_crccache *c, struct crcpage *p)
{
	struct crcpage **pp = bucket(c, p->pageno);

	while (*pp != p)
		pp = &(*pp)->hnext;
	*pp = p->hnext;
	c->count--;
}

static void lru_remove(struct kura_crccache *c, struct crcpage *p)
{
	if (!p->in_lru)
		return;
	if (p->lprev)
		p->lprev->lnext = p->lnext;
	else
		c->lru_head = p->lnext;
	if (p->lnext)
		p->lnext->lprev = p->lprev;
	else
		c->lru_tail = p->lprev;
	p->lprev = p->lnext = NULL;
	p->in_lru = 0;
}

static void lru_push(struct kura_crccache *c, struct crcpage *p)
{
	p->lprev = c->lru_tail;
	p->lnext = NULL;
	if (c->lru_tail)
		c->lru_tail->lnext = p;
	else
		c->lru_head = p;
	c->lru_tail = p;
	p->in_lru = 1;
}

static void evict(struct kura_crccache *c)
{
	while (c->count > c->cap && c->lru_head) {
		struct crcpage *p = c->lru_head;
		lru_remove(c, p);
		page_unhash(c, p);
		page_free(p);
	}
}

static uint64_t page_off(struct kura_crccache *c, uint32_t pageno, struct pool_disk **pdo)
{
	uint32_t loc = pageno * KURA_CRC_PER_PAGE_EXTENTS;
	struct pool_disk *pd = pool_disk_of(&c->s->pool, loc);

	*pdo = pd;
	return pd->sb.crc_off + (uint64_t)(loc - pd->base) / KURA_CRC_PER_PAGE_EXTENTS *
					   KURA_BLK_SIZE;
}

static void wake(struct crcpage *p, int err)
{
	struct kura_op *w = p->waiters;

	p->waiters = NULL;
	while (w) {
		struct kura_op *n = w->next;
		w->fn(w, err);
		w = n;
	}
}

static void load_done(struct kura_op *op, int res)
{
	struct crcpage *p = KURA_CONTAINER_OF(op, struct crcpage, io_op);
	struct kura_crccache *c = p->c;

	if (res < 0) {
		struct pool_disk *pd;
		uint64_t off = page_off(c, p->pageno, &pd);
		store_io_error(c->s, pd, off, res, "checksum page read");
		page_unhash(c, p);
		wake(p, -EIO);
		page_free(p);
		return;
	}
	p->ready = 1;
	/* make room before this page joins the LRU, so the page its waiters
	 * asked for is still here when they run (all others may be dirty) */
	evict(c);
	lru_push(c, p);
	wake(p, 0);
}

int crc_get(struct kura_crccache *c, uint32_t loc, struct kura_op *waiter, uint32_t **crcs)
{
	uint32_t pageno = loc / KURA_CRC_PER_PAGE_EXTENTS;
	struct crcpage *p = page_find(c, pageno);
	struct pool_disk *pd;

	if (p && p->ready) {
		if (p->in_lru) {
			lru_remove(c, p);
			lru_push(c, p);
		}
		*crcs = p->crc + (loc % KURA_CRC_PER_PAGE_EXTENTS) * KURA_EXT_BLOCKS;
		return 1;
	}
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		p->crc = kura_aligned_alloc(KURA_BLK_SIZE);
		if (!p->crc) {
			free(p);
			return -ENOMEM;
		}
		p->c = c;
		p->pageno = pageno;
		p->hnext = *bucket(c, pageno);
		*bucket(c, pageno) = p;
		c->count++;
		p->iov.iov_base = p->crc;
		p->iov.iov_len = KURA_BLK_SIZE;
		p->io_op.fn = load_done;
		uint64_t off = page_off(c, pageno, &pd);
		pd->disk->ops->rw(pd->disk, 0, &p->iov, 1, off, 0, &p->io_op);
	}
	waiter->next = p->waiters;
	p->waiters = waiter;
	return 0;
}

void crc_update(struct kura_crccache *c, uint32_t loc, unsigned blk, unsigned n,
		const uint32_t *crcs)
{
	struct crcpage *p = page_find(c, loc / KURA_CRC_PER_PAGE_EXTENTS);

	memcpy(p->crc + (loc % KURA_CRC_PER_PAGE_EXTENTS) * KURA_EXT_BLOCKS + blk, crcs,
	       n * sizeof(*crcs));
	p->gen++;
	if (!p->dirty) {
		p->dirty = 1;
		lru_remove(c, p);
		c->ndirty++;
	}
}

static void wb_finish(struct kura_crccache *c)
{
	struct kura_op *done = c->wb_done;

	c->wb_done = NULL;
	done->fn(done, c->wb_err);
}

static void wb_done(struct kura_op *op, int res)
{
	struct crcpage *p = KURA_CONTAINER_OF(op, struct crcpage, io_op);
	struct kura_crccache *c = p->c;

	p->writing = 0;
	free(p->wb_buf);
	p->wb_buf = NULL;
	if (res < 0) {
		struct pool_disk *pd;
		uint64_t off = page_off(c, p->pageno, &pd);
		store_io_error(c->s, pd, off, res, "checksum page write");
		store_disk_failed(c->s, pd);
		c->wb_err = -EIO;
	} else if (p->gen == p->written_gen) {
		p->dirty = 0;
		c->ndirty--;
		lru_push(c, p);
	}
	if (--c->writeback_pending == 0) {
		evict(c);
		wb_finish(c);
	}
}

void crc_writeback(struct kura_crccache *c, struct kura_op *done)
{
	c->wb_done = done;
	c->wb_err = 0;
	c->writeback_pending = 1; /* held until every write is issued */
	for (uint32_t i = 0; i < c->nbuckets; i++) {
		for (struct crcpage *p = c->buckets[i]; p; p = p->hnext) {
			struct pool_disk *pd;
			uint64_t off;

			if (!p->dirty || p->writing)
				continue;
			if (!(p->wb_buf = kura_aligned_alloc(KURA_BLK_SIZE))) {
				c->wb_err = -ENOMEM;
				continue;
			}
			memcpy(p->wb_buf, p->crc, KURA_BLK_SIZE);
			p->written_gen = p->gen;
			p->writing = 1;
			p->iov.iov_base = p->wb_buf;
			p->iov.iov_len = KURA_BLK_SIZE;
			p->io_op.fn = wb_done;
			c->writeback_pending++;
			off = page_off(c, p->pageno, &pd);
			pd->disk->ops->rw(pd->disk, 1, &p->iov, 1, off, 0, &p->io_op);
		}
	}
	if (--c->writeback_pending == 0) {
		c->wb_done = NULL;
		kura_loop_defer(c->s->loop, done, c->wb_err);
	}
}

uint64_t crc_mem_bytes(const struct kura_crccache *c)
{
	return (uint64_t)c->count * (KURA_BLK_SIZE + sizeof(struct crcpage)) +
	       (uint64_t)c->nbuckets * sizeof(void *);
}
