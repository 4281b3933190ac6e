/* Checkpoints: make the effects of journal batches durable outside the
 * journal, so that their space can be reused.
 *
 *  1. seal the open batch (seq S) and capture the index changes made by every
 *     record up to S (the in-memory index reflects exactly those, because it
 *     is updated when a record is appended) into a RocksDB batch;
 *  2. wait until every batch up to S is durable and applied in place;
 *  3. write the dirty checksum pages;
 *  4. flush every disk;
 *  5. write the RocksDB batch with the journal's new start, synchronously
 *     (on the worker thread);
 *  6. trim the journal up to S.
 * A crash anywhere before 5 completes replays from the previous start, which
 * is still intact; replaying a record over data that already holds it is
 * harmless because records are replayed in order. */
#include "blockd/store_int.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { CK_IDLE, CK_APPLY, CK_CRC, CK_FLUSH, CK_MD };

struct ck_flush {
	struct kura_op op;
	struct kura_blk_store *s;
};

struct ckpt {
	int phase, again;
	uint64_t seq, end_lpos;
	struct jbatch *done; /* the last batch up to seq found done (journal_done_through) */
	uint64_t t_start, t_phase; /* ns: the checkpoint's start, its phase's start */
	struct kura_md_batch *b;
	struct kura_work work;
	struct kura_md *md;
	struct kura_op crc_op;
	struct ck_flush *flushes;
	unsigned flushes_pending;
	int err;
};

static void ck_start(struct kura_blk_store *s);

static void timer_fired(struct kura_op *op, int res)
{
	struct kura_blk_store *s = KURA_CONTAINER_OF(op, struct kura_blk_store, ck_timer.op);

	s->ck_timer_armed = 0;
	if (res == -ECANCELED || s->closing)
		return;
	if (!s->dead && (s->idx.ndirty || journal_used(&s->journal)))
		ckpt_request(s);
	s->ck_timer_armed = 1;
	kura_loop_timer(s->loop, &s->ck_timer, s->checkpoint_ns);
}

int ckpt_init(struct kura_blk_store *s)
{
	s->ck = calloc(1, sizeof(*s->ck));
	if (!s->ck)
		return -ENOMEM;
	s->ck->flushes = calloc(s->pool.n, sizeof(*s->ck->flushes));
	if (!s->ck->flushes)
		return -ENOMEM;
	s->ck_timer.op.fn = timer_fired;
	return 0;
}

void ckpt_start_timer(struct kura_blk_store *s)
{
	s->ck_timer_armed = 1;
	kura_loop_timer(s->loop, &s->ck_timer, s->checkpoint_ns);
}

void ckpt_destroy(struct kura_blk_store *s)
{
	if (!s->ck)
		return;
	kura_md_batch_destroy(s->ck->b);
	free(s->ck->flushes);
	free(s->ck);
	s->ck = NULL;
}

int ckpt_active(struct kura_blk_store *s)
{
	return s->ck->phase != CK_IDLE || s->ck->again;
}

void ckpt_request(struct kura_blk_store *s)
{
	if (s->dead)
		return;
	if (s->ck->phase != CK_IDLE)
		s->ck->again = 1;
	else
		ck_start(s);
}

void ckpt_poke(struct kura_blk_store *s)
{
	if (s->ck->phase != CK_IDLE || s->dead)
		return;
	if (journal_used(&s->journal) > s->journal.len / 2 || s->crc.ndirty > s->crc.cap / 2)
		ck_start(s);
}

static int capture(struct kura_blk_store *s, struct kura_md_batch *b)
{
	for (size_t i = 0; i < s->idx.ndirty; i++) {
		struct idx_key *k = &s->idx.dirty[i];
		struct idx_entry *e = idx_find(&s->idx, k->layer, k->ext);
		uint8_t key[17];

		md_extent_key(key, k->layer, k->ext);
		if (e) {
			struct md_extent v = { .loc = e->loc, .version = ent_version(e) };
			idx_bitmap(&s->idx, e, &v.present);
			kura_md_batch_put(b, key, sizeof(key), &v, sizeof(v));
			ent_set_dirty(e, 0);
		} else {
			kura_md_batch_delete(b, key, sizeof(key));
		}
	}
	s->idx.ndirty = 0;
	if (s->idx.dirty_cap > 65536) {
		/* a burst of changes is over: give its memory back */
		free(s->idx.dirty);
		s->idx.dirty = NULL;
		s->idx.dirty_cap = 0;
	}
	return 0;
}

static void ck_reset(struct ckpt *c)
{
	kura_md_batch_destroy(c->b);
	c->b = NULL;
	c->phase = CK_IDLE;
	c->again = 0;
}

static void ck_fail(struct kura_blk_store *s, const char *what, int err)
{
	ck_reset(s->ck);
	store_fail(s, what, err);
}

/* The store stopped while a checkpoint was under way: it must not go on to
 * record a new journal start, since writes it counted may not be in place. */
static int ck_abandoned(struct kura_blk_store *s)
{
	if (!s->dead)
		return 0;
	ck_reset(s->ck);
	return 1;
}

static void ck_start(struct kura_blk_store *s)
{
	struct ckpt *c = s->ck;

	c->again = 0;
	c->b = kura_md_batch_create();
	if (!c->b) {
		ck_fail(s, "out of memory for a checkpoint", -ENOMEM);
		return;
	}
	c->seq = journal_seal(&s->journal);
	c->done = NULL;
	c->t_start = c->t_phase = kura_now_ns();
	capture(s, c->b);
	c->phase = CK_APPLY;
	ckpt_progress(s);
}

static void md_run(struct kura_work *w)
{
	struct ckpt *c = KURA_CONTAINER_OF(w, struct ckpt, work);

	w->result = kura_md_write(c->md, c->b, 1);
}

static void md_done(struct kura_op *op, int res)
{
	struct ckpt *c = KURA_CONTAINER_OF(op, struct ckpt, work.done);
	struct kura_blk_store *s = c->flushes[0].s;

	if (res) {
		ck_fail(s, "the metadata database could not be written", res);
		return;
	}
	if (s->dead) {
		/* recorded while the store was stopping; nothing more may follow */
		ck_abandoned(s);
		return;
	}
	kura_md_batch_destroy(c->b);
	c->b = NULL;
	journal_trim(&s->journal, c->seq, c->end_lpos);
	pool_prune_busy(&s->pool, s->journal.tail_seq);
	s->st.checkpoints++;
	kura_log(DEBUG, "checkpoint %llu: %llu ms (metadata %llu ms)",
		 (unsigned long long)c->seq, (unsigned long long)((kura_now_ns() - c->t_start) / 1000000),
		 (unsigned long long)((kura_now_ns() - c->t_phase) / 1000000));
	c->phase = CK_IDLE;
	store_unblock(s);
	if (c->again && c->phase == CK_IDLE)
		ck_start(s);
	else
		ckpt_poke(s);
}

static void flush_done(struct kura_op *op, int res)
{
	struct ck_flush *f = KURA_CONTAINER_OF(op, struct ck_flush, op);
	struct kura_blk_store *s = f->s;
	struct ckpt *c = s->ck;
	struct md_journal jv;
	uint8_t jkey[2] = { 'J', 0 };

	if (res < 0) {
		struct pool_disk *pd = &s->pool.d[f - c->flushes];

		store_io_error(s, pd, 0, res, "flush");
		store_disk_failed(s, pd);
		c->err = res;
	}
	if (--c->flushes_pending)
		return;
	if (ck_abandoned(s))
		return;
	if (c->err) {
		ck_fail(s, "a disk flush failed", c->err);
		return;
	}
	kura_log(DEBUG, "checkpoint %llu: in place and flushed after %llu ms (flush %llu ms)",
		 (unsigned long long)c->seq, (unsigned long long)((kura_now_ns() - c->t_start) / 1000000),
		 (unsigned long long)((kura_now_ns() - c->t_phase) / 1000000));
	c->t_phase = kura_now_ns();
	jv.seq = c->seq + 1;
	jv.lpos = c->end_lpos;
	jv.nonce = s->journal.nonce;
	kura_md_batch_put(c->b, jkey, sizeof(jkey), &jv, sizeof(jv));
	c->phase = CK_MD;
	c->md = s->md;
	c->work.run = md_run;
	c->work.done.fn = md_done;
	kura_worker_submit(s->worker, &c->work);
}

static void crc_done(struct kura_op *op, int res)
{
	struct ckpt *c = KURA_CONTAINER_OF(op, struct ckpt, crc_op);
	struct kura_blk_store *s = c->flushes[0].s;

	if (res < 0) {
		ck_fail(s, "checksum pages could not be written", res);
		return;
	}
	if (ck_abandoned(s))
		return;
	c->phase = CK_FLUSH;
	c->t_phase = kura_now_ns();
	c->err = 0;
	c->flushes_pending = 1; /* no completion may end the round while it starts */
	for (unsigned i = 0; i < s->pool.n; i++) {
		struct kura_disk *d = s->pool.d[i].disk;

		if (!d)
			continue; /* failed: holds nothing */
		c->flushes[i].s = s;
		c->flushes[i].op.fn = flush_done;
		c->flushes_pending++;
		d->ops->flush(d, &c->flushes[i].op);
	}
	flush_done(&c->flushes[0].op, 0); /* the round's own count */
}

void ckpt_progress(struct kura_blk_store *s)
{
	struct ckpt *c = s->ck;

	if (c->phase == CK_IDLE) {
		ckpt_poke(s);
		return;
	}
	if (c->phase != CK_APPLY || ck_abandoned(s))
		return;
	if (s->applyq)
		io_apply_kick(s);
	if (!journal_done_through(&s->journal, c->seq, &c->done, &c->end_lpos)) {
		journal_flush_through(&s->journal, c->seq); /* cached batches: flush now */
		return;
	}
	c->phase = CK_CRC;
	c->flushes[0].s = s;
	c->crc_op.fn = crc_done;
	crc_writeback(&s->crc, &c->crc_op);
}

int ckpt_sync(struct kura_blk_store *s)
{
	uint64_t before = s->st.checkpoints;

	ckpt_request(s);
	while (!s->dead && (s->ck->phase != CK_IDLE || s->ck->again ||
			    s->st.checkpoints == before))
		kura_loop_run_once(s->loop, 100000000ULL);
	return s->dead ? -EIO : 0;
}
