/* The journal: a ring of batches on the first disk. Every change to the store
 * (block data with its checksums, trims, frees, moves) is appended to the open
 * batch; one batch is written at a time with FUA, so everything appended while
 * a batch is in flight is committed together by the next one (group commit).
 * A request is acknowledged when its batch is durable. Batches stay until a
 * checkpoint has made their effects durable elsewhere (data in place,
 * checksum pages, RocksDB index).
 *
 * Write-back: a batch whose requests all accept a cached answer (struct
 * jreq.cached) is written without FUA and answers them once written; a
 * flush of the disk later makes it durable (JOURNAL_FLUSH_DELAY_NS after
 * it, or at once when something waits for durability). A batch that needs
 * durability goes with FUA only when every batch before it is durable;
 * after cached ones it is written plainly and followed by a flush, since
 * FUA makes durable only the write that carries it. Replay stops at the
 * first batch that is not whole, so a power cut keeps a prefix of the
 * batches; nothing of a batch goes in place before it is durable. */
#include "blockd/store_int.h"
#include "common/crc.h"
#include "common/err.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct jbatch {
	uint64_t seq, lpos, size;
	uint8_t *hdr;
	uint32_t hdr_used, nrec, data_pages;
	struct iovec *iov;
	int iovcnt, iovcap;
	struct jreq *reqs_head, *reqs_tail;
	unsigned unapplied;
	int written, durable, sealed;
	int sync; /* a request in it waits for durability, not just the cache */
	int fua;  /* written with FUA */
	struct jbatch *next;
	struct kura_op op;
	struct kura_journal *j;
};

#define BATCH_SLACK ((uint64_t)KURA_MAX_BATCH_DATA + KURA_MAX_BATCH_HDR)
/* Batches written without FUA are flushed this long after the first of
 * them at the latest: cached writes are applied in place only once durable,
 * and a flush per batch would cost what FUA does. Every flush also stalls
 * the journal writes beside it. Measured over iSCSI, 4 KiB writes, two
 * rounds: at 2 ms a QD1 writer met a flush every ~15 writes (p99 640-720
 * us), at 10 ms every ~70 (p99 1.6-1.9 ms), at 50 ms past its p99 (280-400
 * us, mean 125-132 against 148-253 us); at QD32, 50 ms gave the most IOPS
 * (24.6-29.3k against 22.3-24.3k) and a higher p99 (4-8.5 ms against 3 ms:
 * bigger flushes). An initiator that needs durability asks for it. */
#define JOURNAL_FLUSH_DELAY_NS 50000000ull

static void kick(struct kura_op *op, int res);
static void flush_done(struct kura_op *op, int res);
static void flush_timer_fired(struct kura_op *op, int res);

int journal_init(struct kura_journal *j, struct kura_blk_store *s, struct pool_disk *pd,
		 uint64_t seq, uint64_t lpos, uint64_t nonce)
{
	memset(j, 0, sizeof(*j));
	j->s = s;
	j->pd = pd;
	j->off = pd->sb.journal_off;
	j->len = pd->sb.journal_len;
	j->nonce = nonce;
	j->next_seq = seq;
	j->tail_seq = seq;
	j->head = j->tail = lpos;
	j->durable_seq = j->written_seq = j->flush_covers = seq - 1;
	j->kick.fn = kick;
	j->flush_op.fn = flush_done;
	j->flush_timer.op.fn = flush_timer_fired;
	return 0;
}

static void batch_free(struct jbatch *b)
{
	free(b->hdr);
	free(b->iov);
	free(b);
}

/* Header buffers are reused: a fresh 64 KiB buffer per batch costs page
 * faults on every commit. */
static void hdr_put(struct kura_journal *j, uint8_t *hdr)
{
	if (hdr && j->nspare < KURA_ARRAY_SIZE(j->spare_hdr))
		j->spare_hdr[j->nspare++] = hdr;
	else
		free(hdr);
}

static uint8_t *hdr_get(struct kura_journal *j)
{
	if (j->nspare)
		return j->spare_hdr[--j->nspare];
	return kura_aligned_alloc_raw(KURA_MAX_BATCH_HDR);
}

void journal_destroy(struct kura_journal *j)
{
	struct jbatch *b = j->first;

	while (b) {
		struct jbatch *n = b->next;
		batch_free(b);
		b = n;
	}
	if (j->open)
		batch_free(j->open);
	j->first = j->last = j->open = j->written = j->dpos = NULL;
	while (j->nspare)
		free(j->spare_hdr[--j->nspare]);
}

static uint64_t batch_bytes(const struct jbatch *b)
{
	return KURA_ALIGN_UP((uint64_t)b->hdr_used, KURA_BLK_SIZE) +
	       (uint64_t)b->data_pages * KURA_BLK_SIZE;
}

int journal_has_room(struct kura_journal *j, uint32_t rec_bytes, uint32_t data_bytes,
		     unsigned quarters)
{
	uint64_t need = j->head + (j->open ? batch_bytes(j->open) : 0) +
			KURA_ALIGN_UP(rec_bytes + sizeof(struct kura_jhdr), KURA_BLK_SIZE) +
			data_bytes + BATCH_SLACK;

	return need <= j->tail + (quarters >= 4 ? j->len : j->len / 4 * quarters);
}

uint64_t journal_used(const struct kura_journal *j)
{
	return j->head - j->tail + (j->open ? batch_bytes(j->open) : 0);
}

static struct jbatch *batch_new(struct kura_journal *j)
{
	struct jbatch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->hdr = hdr_get(j);
	if (b->hdr)
		memset(b->hdr, 0, sizeof(struct kura_jhdr));
	b->iovcap = 16;
	b->iov = malloc(sizeof(*b->iov) * (size_t)b->iovcap);
	if (!b->hdr || !b->iov) {
		batch_free(b);
		return NULL;
	}
	b->hdr_used = sizeof(struct kura_jhdr);
	b->iovcnt = 1; /* iov[0] is the header */
	b->j = j;
	return b;
}

static void seal_open(struct kura_journal *j)
{
	struct jbatch *b = j->open;
	struct kura_jhdr *h;

	if (!b)
		return;
	j->open = NULL;
	b->sealed = 1;
	if (b->nrec) {
		uint64_t phys;
		h = (struct kura_jhdr *)b->hdr;
		h->magic = KURA_JHDR_MAGIC;
		h->nonce = j->nonce;
		h->seq = b->seq = j->next_seq++;
		h->hdr_pages = (uint32_t)(KURA_ALIGN_UP(b->hdr_used, KURA_BLK_SIZE) / KURA_BLK_SIZE);
		h->data_pages = b->data_pages;
		h->nrec = b->nrec;
		h->hdr_bytes = b->hdr_used;
		h->hdr_crc = 0;
		memset(b->hdr + b->hdr_used, 0, (size_t)h->hdr_pages * KURA_BLK_SIZE - b->hdr_used);
		h->hdr_crc = kura_crc32c(0, b->hdr, (size_t)h->hdr_pages * KURA_BLK_SIZE);
		b->size = batch_bytes(b);
		phys = j->head % j->len;
		if (phys + b->size > j->len)
			j->head += j->len - phys; /* never straddle the end of the ring */
		b->lpos = j->head;
		j->head += b->size;
		b->iov[0].iov_base = b->hdr;
		b->iov[0].iov_len = (size_t)h->hdr_pages * KURA_BLK_SIZE;
	}
	if (j->last)
		j->last->next = b;
	else
		j->first = b;
	j->last = b;
}

static void complete_reqs(struct jbatch *b, int err)
{
	struct jreq *r = b->reqs_head;

	b->reqs_head = b->reqs_tail = NULL;
	while (r) {
		struct jreq *n = r->next;
		r->durable(r, err);
		r = n;
	}
}

/* Answers b's cached requests. A caller's callback may stop the store
 * (out of memory for what it submits next): b's requests are then failed
 * and freed at once (journal_fail_all), so the walk ends there. */
static void cached_reqs(struct kura_journal *j, struct jbatch *b)
{
	for (struct jreq *r = b->reqs_head; r && !j->s->dead;) {
		struct jreq *next = r->next;
		if (r->cached)
			r->cached(r);
		r = next;
	}
}

/* Takes b, whose predecessor is prev (NULL: b is first), off the list. */
static void unlink_batch(struct kura_journal *j, struct jbatch *prev, struct jbatch *b)
{
	if (prev)
		prev->next = b->next;
	else
		j->first = b->next;
	if (j->last == b)
		j->last = prev;
}

static void submit_next(struct kura_journal *j);

/* Every batch up to seq is durable: answer their requests in order. */
static void durable_through(struct kura_journal *j, uint64_t seq)
{
	struct jbatch *b;

	if (seq <= j->durable_seq)
		return;
	j->durable_seq = seq;
	for (b = j->dpos ? j->dpos->next : j->first; b; b = b->next) {
		if (!b->nrec)
			continue; /* a barrier: submit_next answers it */
		if (!b->written || b->seq > seq)
			break;
		b->durable = 1;
		j->dpos = b;
		complete_reqs(b, 0);
	}
	io_batch_durable(j->s);
}

static void flush_start(struct kura_journal *j)
{
	if (j->s->dead || j->written_seq <= j->durable_seq)
		return;
	if (j->flush_inflight) {
		if (j->written_seq > j->flush_covers)
			j->flush_again = 1;
		return;
	}
	j->flush_inflight = 1;
	j->flush_again = 0;
	j->flush_covers = j->written_seq;
	j->pd->disk->ops->flush(j->pd->disk, &j->flush_op);
}

/* Batches are written that no flush covers: one within
 * JOURNAL_FLUSH_DELAY_NS. */
static void flush_later(struct kura_journal *j)
{
	if (j->written_seq <= j->durable_seq || j->flush_timer_armed || j->flush_inflight ||
	    j->s->dead)
		return;
	j->flush_timer_armed = 1;
	kura_loop_timer(j->s->loop, &j->flush_timer, JOURNAL_FLUSH_DELAY_NS);
}

static void flush_done(struct kura_op *op, int res)
{
	struct kura_journal *j = KURA_CONTAINER_OF(op, struct kura_journal, flush_op);

	j->flush_inflight = 0;
	if (j->s->dead)
		return;
	if (res < 0) {
		store_io_error(j->s, j->pd, j->off, res, "journal flush");
		store_fail(j->s, "journal flush failed", res);
		return;
	}
	durable_through(j, j->flush_covers);
	if (j->flush_again)
		flush_start(j);
	else
		flush_later(j); /* batches written while it was in flight */
	submit_next(j); /* a barrier may have waited for this */
}

static void flush_timer_fired(struct kura_op *op, int res)
{
	struct kura_journal *j = KURA_CONTAINER_OF(op, struct kura_journal, flush_timer.op);

	j->flush_timer_armed = 0;
	if (res != -ECANCELED)
		flush_start(j);
}

void journal_flush_through(struct kura_journal *j, uint64_t seq)
{
	if (j->durable_seq >= seq || (j->flush_inflight && j->flush_covers >= seq))
		return;
	flush_start(j);
}

int journal_flush_pending(const struct kura_journal *j)
{
	return j->flush_inflight || j->flush_timer_armed;
}

static void batch_written(struct kura_op *op, int res)
{
	struct jbatch *b = KURA_CONTAINER_OF(op, struct jbatch, op);
	struct kura_journal *j = b->j;
	int fua = b->fua;

	j->inflight = NULL;
	j->done_ns = kura_now_ns();
	if (res < 0) {
		store_io_error(j->s, j->pd, j->off + b->lpos % j->len, res, "journal write");
		complete_reqs(b, -EIO); /* these writes get the disk's error */
		store_fail(j->s, "journal write failed", res);
		return;
	}
	b->written = 1;
	j->written = b; /* batches are written in list order */
	j->written_seq = b->seq;
	hdr_put(j, b->hdr);
	b->hdr = NULL;
	free(b->iov);
	b->iov = NULL;
	if (j->s->dead) {
		/* stopped while it was written (journal_fail_all left it to this
		 * completion): no flush will make it durable now */
		complete_reqs(b, KURA_E_DEAD);
		return;
	}
	cached_reqs(j, b);
	if (fua) {
		durable_through(j, b->seq);
	} else if (b->sync) {
		flush_start(j);
	} else {
		flush_later(j);
	}
	if (j->open && !j->inflight)
		seal_open(j);
	submit_next(j);
	io_apply_gap(j->s);
}

static void submit_next(struct kura_journal *j)
{
	struct jbatch *b;

	while (!j->inflight && !j->s->dead) {
		/* from the last written batch, not the list's start: at a low queue
		 * depth thousands of small durable batches wait for a checkpoint */
		for (b = j->written ? j->written->next : j->first; b && b->written; b = b->next)
			j->written = b;
		if (!b)
			return;
		if (!b->nrec) {
			/* a barrier with nothing of its own: done once all before it
			 * are durable */
			if (j->durable_seq < j->written_seq) {
				flush_start(j);
				return;
			}
			unlink_batch(j, j->written, b);
			if (j->dpos == b)
				j->dpos = j->written;
			complete_reqs(b, 0);
			batch_free(b);
			continue;
		}
		j->inflight = b;
		b->op.fn = batch_written;
		/* FUA makes only its own write durable: after batches written
		 * without it, write plainly and flush (batch_written) */
		b->fua = b->sync && j->durable_seq == j->written_seq;
		j->pd->disk->ops->rw(j->pd->disk, 1, b->iov, b->iovcnt, j->off + b->lpos % j->len,
				     b->fua ? KURA_DISK_FUA : 0, &b->op);
	}
}

static void kick(struct kura_op *op, int res)
{
	struct kura_journal *j = KURA_CONTAINER_OF(op, struct kura_journal, kick);

	(void)res;
	j->kick_pending = 0;
	if (j->inflight || j->s->dead)
		return;
	seal_open(j);
	submit_next(j);
}

static void schedule_kick(struct kura_journal *j)
{
	if (!j->kick_pending) {
		j->kick_pending = 1;
		kura_loop_defer(j->s->loop, &j->kick, 0);
	}
}

static void add_req(struct jbatch *b, struct jreq *jr)
{
	if (!jr)
		return;
	if (!jr->cached)
		b->sync = 1;
	jr->next = NULL;
	jr->batch = b;
	if (b->reqs_tail)
		b->reqs_tail->next = jr;
	else
		b->reqs_head = jr;
	b->reqs_tail = jr;
}

struct jbatch *journal_append(struct kura_journal *j, const struct kura_jrec *rec,
			      const uint32_t *crcs, void *data, struct jreq *jr)
{
	uint32_t rsize = kura_jrec_size(rec);
	unsigned npages = rec->type == KURA_JREC_WRITE ? rec->nblk : 0;
	struct jbatch *b = j->open;
	struct kura_jrec *dst;

	if (b && (b->hdr_used + rsize > KURA_MAX_BATCH_HDR ||
		  (uint64_t)(b->data_pages + npages) * KURA_BLK_SIZE > KURA_MAX_BATCH_DATA ||
		  b->iovcnt + 1 > 1024))
		seal_open(j);
	if (!j->open && !(j->open = batch_new(j)))
		return NULL;
	b = j->open;
	if (npages && b->iovcnt == b->iovcap) {
		struct iovec *n = realloc(b->iov, sizeof(*n) * (size_t)b->iovcap * 2);
		if (!n)
			return NULL;
		b->iov = n;
		b->iovcap *= 2;
	}
	dst = (struct kura_jrec *)(b->hdr + b->hdr_used);
	*dst = *rec;
	if (kura_jrec_has_crcs(rec))
		memcpy(dst + 1, crcs, 4u * rec->nblk);
	if (npages) {
		dst->data_page = b->data_pages;
		b->iov[b->iovcnt].iov_base = data;
		b->iov[b->iovcnt].iov_len = (size_t)npages * KURA_BLK_SIZE;
		b->iovcnt++;
		b->data_pages += npages;
	}
	b->hdr_used += rsize;
	b->nrec++;
	add_req(b, jr);
	schedule_kick(j);
	return b;
}

int journal_barrier(struct kura_journal *j, struct jreq *jr)
{
	if (!j->open && !(j->open = batch_new(j)))
		return -ENOMEM;
	add_req(j->open, jr);
	schedule_kick(j);
	return 0;
}

void journal_batch_apply_start(struct jbatch *b)
{
	b->unapplied++;
}

void journal_batch_apply_done(struct kura_journal *j, struct jbatch *b)
{
	(void)j;
	b->unapplied--;
}

uint64_t journal_seal(struct kura_journal *j)
{
	if (j->open && j->open->nrec)
		seal_open(j);
	schedule_kick(j);
	return j->next_seq - 1;
}

int journal_done_through(struct kura_journal *j, uint64_t seq, struct jbatch **from,
			 uint64_t *end_lpos)
{
	struct jbatch *b = *from ? (*from)->next : j->first;

	if (!*from)
		*end_lpos = j->tail;
	for (; b && (b->seq <= seq || !b->nrec); b = b->next) {
		if (!b->nrec)
			continue; /* a barrier: unlinked once done, never a cursor */
		if (!b->durable || b->unapplied)
			return 0;
		*end_lpos = b->lpos + b->size;
		*from = b;
	}
	return j->durable_seq >= seq;
}

void journal_trim(struct kura_journal *j, uint64_t seq, uint64_t end_lpos)
{
	while (j->first && j->first->nrec && j->first->seq <= seq) {
		struct jbatch *b = j->first;
		j->first = b->next;
		if (!j->first)
			j->last = NULL;
		if (j->written == b)
			j->written = NULL;
		if (j->dpos == b)
			j->dpos = NULL;
		batch_free(b);
	}
	j->tail = end_lpos;
	j->tail_seq = seq + 1;
}

void journal_fail_all(struct kura_journal *j, int err)
{
	/* the batch being written still owns its buffers: its completion decides */
	for (struct jbatch *b = j->first; b; b = b->next)
		if (!b->durable && b != j->inflight)
			complete_reqs(b, err);
	if (j->open)
		complete_reqs(j->open, err);
}

/* ---- replay ---- */

static int read_batch(struct kura_journal *j, uint64_t seq, uint64_t lpos, uint8_t *hdr,
		      uint8_t *data, uint64_t *size)
{
	struct kura_disk *d = j->pd->disk;
	struct kura_jhdr *h = (struct kura_jhdr *)hdr;
	uint64_t phys = lpos % j->len, off = j->off + phys, dlen;
	uint32_t crc, pos;

	if (phys + KURA_BLK_SIZE > j->len)
		return -1;
	if (kura_disk_rw_sync(d, 0, hdr, KURA_BLK_SIZE, off, 0) < 0)
		return -EIO;
	if (h->magic != KURA_JHDR_MAGIC || h->nonce != j->nonce || h->seq != seq ||
	    !h->hdr_pages || (uint64_t)h->hdr_pages * KURA_BLK_SIZE > KURA_MAX_BATCH_HDR ||
	    (uint64_t)h->data_pages * KURA_BLK_SIZE > KURA_MAX_BATCH_DATA ||
	    h->hdr_bytes > (uint64_t)h->hdr_pages * KURA_BLK_SIZE)
		return -1;
	*size = ((uint64_t)h->hdr_pages + h->data_pages) * KURA_BLK_SIZE;
	if (phys + *size > j->len)
		return -1;
	if (h->hdr_pages > 1 &&
	    kura_disk_rw_sync(d, 0, hdr + KURA_BLK_SIZE, (size_t)(h->hdr_pages - 1) * KURA_BLK_SIZE,
			      off + KURA_BLK_SIZE, 0) < 0)
		return -EIO;
	crc = h->hdr_crc;
	h->hdr_crc = 0;
	if (kura_crc32c(0, hdr, (size_t)h->hdr_pages * KURA_BLK_SIZE) != crc)
		return -1;
	h->hdr_crc = crc;
	dlen = (uint64_t)h->data_pages * KURA_BLK_SIZE;
	if (dlen && kura_disk_rw_sync(d, 0, data, dlen, off + (uint64_t)h->hdr_pages * KURA_BLK_SIZE,
				      0) < 0)
		return -EIO;
	/* every record must be well formed and every block must match its crc */
	pos = sizeof(*h);
	for (uint32_t i = 0; i < h->nrec; i++) {
		const struct kura_jrec *r = (const struct kura_jrec *)(hdr + pos);
		const uint32_t *crcs = (const uint32_t *)(r + 1);

		if (pos + sizeof(*r) > h->hdr_bytes || pos + kura_jrec_size(r) > h->hdr_bytes)
			return -1;
		if (kura_jrec_has_crcs(r) && (!r->nblk || r->blk + r->nblk > KURA_EXT_BLOCKS))
			return -1;
		if (r->type == KURA_JREC_WRITE) {
			if ((uint64_t)r->data_page + r->nblk > h->data_pages)
				return -1;
			for (unsigned k = 0; k < r->nblk; k++)
				if (kura_crc32c(0, data + ((size_t)r->data_page + k) * KURA_BLK_SIZE,
						KURA_BLK_SIZE) != crcs[k])
					return -1;
		}
		pos += kura_jrec_size(r);
	}
	return 0;
}

int journal_replay(struct kura_journal *j, uint64_t seq, uint64_t lpos, journal_replay_fn fn,
		   void *arg, uint64_t *end_seq, uint64_t *end_lpos, uint64_t *nbatches)
{
	uint8_t *hdr = kura_aligned_alloc(KURA_MAX_BATCH_HDR);
	uint8_t *data = kura_aligned_alloc(KURA_MAX_BATCH_DATA);
	int err = 0;

	*nbatches = 0;
	if (!hdr || !data) {
		err = -ENOMEM;
		goto out;
	}
	for (;;) {
		uint64_t size = 0, at = lpos;
		int r = read_batch(j, seq, at, hdr, data, &size);
		const struct kura_jhdr *h = (const struct kura_jhdr *)hdr;
		uint32_t pos;

		if (r == -1 && at % j->len) {
			at = KURA_ALIGN_UP(at, j->len); /* the writer wrapped here */
			r = read_batch(j, seq, at, hdr, data, &size);
		}
		if (r == -EIO) {
			err = -EIO;
			goto out;
		}
		if (r)
			break;
		pos = sizeof(*h);
		for (uint32_t i = 0; i < h->nrec; i++) {
			const struct kura_jrec *rec = (const struct kura_jrec *)(hdr + pos);
			err = fn(arg, rec, (const uint32_t *)(rec + 1),
				 data + (size_t)rec->data_page * KURA_BLK_SIZE);
			if (err)
				goto out;
			pos += kura_jrec_size(rec);
		}
		lpos = at + size;
		seq++;
		(*nbatches)++;
	}
out:
	*end_seq = seq;
	*end_lpos = lpos;
	free(hdr);
	free(data);
	return err;
}
