/* Internals of the block store, shared by the files of blockd/ only.
 * Everything here belongs to the store's loop thread. */
#ifndef KURA_BLOCKD_STORE_INT_H
#define KURA_BLOCKD_STORE_INT_H

#include "blockd/disk.h"
#include "blockd/layout.h"
#include "blockd/store.h"
#include "common/bufpool.h"
#include "common/log.h"
#include "common/worker.h"
#include "metadata/md.h"

#define LOC_NONE UINT32_MAX
#define BM_FULL UINT32_MAX
#define BM_EMPTY (UINT32_MAX - 1)

/* ---- index.c: the in-memory extent index (20 bytes an extent) ---- */

struct idx_entry {
	uint32_t ext;
	uint32_t loc;    /* LOC_NONE marks an empty slot */
	uint32_t bm;     /* BM_FULL, BM_EMPTY or an index into the bitmap pool */
	uint32_t ver_lo; /* version: 63 bits over ver_lo and ver_hi */
	uint32_t ver_hi; /* top bit: changed since the last checkpoint */
	uint32_t cpos;   /* its place in its class's list (when kept) */
};

#define ENT_DIRTY 0x80000000u
#define KURA_VERSION_MAX ((1ull << 63) - 1)

static inline uint64_t ent_version(const struct idx_entry *e)
{
	return ((uint64_t)(e->ver_hi & ~ENT_DIRTY) << 32) | e->ver_lo;
}

/* Versions only grow: the extent keeps the highest one written to it. */
static inline void ent_raise_version(struct idx_entry *e, uint64_t v)
{
	if (v > KURA_VERSION_MAX)
		v = KURA_VERSION_MAX;
	if (v <= ent_version(e))
		return;
	e->ver_lo = (uint32_t)v;
	e->ver_hi = (e->ver_hi & ENT_DIRTY) | (uint32_t)(v >> 32);
}

static inline int ent_dirty(const struct idx_entry *e)
{
	return (e->ver_hi & ENT_DIRTY) != 0;
}

static inline void ent_set_dirty(struct idx_entry *e, int dirty)
{
	e->ver_hi = dirty ? (e->ver_hi | ENT_DIRTY) : (e->ver_hi & ~ENT_DIRTY);
}

struct idx_layer {
	uint64_t id;
	uint32_t cap, count; /* open addressing, linear probing, cap a power of two */
	struct idx_entry *slots;
};

struct idx_key {
	uint64_t layer, ext;
};

/* The extents of one class (kura_blk_index_classes), in no order; each
 * entry's cpos is its place here. 12 bytes: the layer in two halves. */
struct idx_ckey {
	uint32_t layer_lo, layer_hi, ext;
};
struct idx_class {
	struct idx_ckey *v;
	uint32_t n, cap;
};

struct kura_idx {
	struct idx_layer **layers; /* open addressing by id; NULL empty */
	struct idx_class *classes; /* KURA_BLK_CLASSES of them, or NULL: not kept */
	uint32_t lcap, lcount;
	struct kura_blk_bitmap *bms; /* bitmaps of partly filled extents */
	uint32_t bm_cap, bm_used, bm_free;
	struct idx_key *dirty;
	size_t ndirty, dirty_cap;
	uint64_t nextents;
};

int idx_init(struct kura_idx *x);
void idx_destroy(struct kura_idx *x);
struct idx_entry *idx_find(struct kura_idx *x, uint64_t layer, uint64_t ext);
/* Adds an empty extent at loc; -EEXIST, -ENOMEM. Pointers into the index are
 * valid only until the next idx_add/idx_del. */
int idx_add(struct kura_idx *x, uint64_t layer, uint64_t ext, uint32_t loc);
void idx_del(struct kura_idx *x, uint64_t layer, uint64_t ext);
int idx_move(struct kura_idx *x, uint64_t layer, uint64_t ext, uint64_t nlayer, uint64_t next);
/* Keeps the per-class lists from now on; -ENOMEM (nothing kept). */
int idx_classes_keep(struct kura_idx *x);
/* The keys of classes c with (c & mask) == value, unsorted; -ENOMEM. */
int idx_classes_list(const struct kura_idx *x, uint32_t mask, uint32_t value,
		     struct kura_blk_key **out, size_t *n);
void idx_bitmap(const struct kura_idx *x, const struct idx_entry *e, struct kura_blk_bitmap *out);
int idx_set_bits(struct kura_idx *x, struct idx_entry *e, unsigned blk, unsigned n);
/* Returns how many blocks remain present. */
unsigned idx_clear_bits(struct kura_idx *x, struct idx_entry *e, unsigned blk, unsigned n);
void idx_set_bitmap(struct kura_idx *x, struct idx_entry *e, const struct kura_blk_bitmap *bm);
int idx_mark_dirty(struct kura_idx *x, uint64_t layer, uint64_t ext);
/* Makes room to mark two more extents dirty; -ENOMEM. Call before changing
 * the index so that a change is never left unrecorded. */
int idx_reserve(struct kura_idx *x);
typedef int (*idx_fn)(void *arg, uint64_t layer, const struct idx_entry *e);
int idx_for_layer(struct kura_idx *x, uint64_t layer, idx_fn fn, void *arg);
int idx_for_each(struct kura_idx *x, idx_fn fn, void *arg);
uint64_t idx_mem_bytes(const struct kura_idx *x);

static inline int bm_test(const struct kura_blk_bitmap *b, unsigned i)
{
	return (int)((b->w[i / 64] >> (i % 64)) & 1);
}
static inline void bm_set(struct kura_blk_bitmap *b, unsigned i)
{
	b->w[i / 64] |= 1ull << (i % 64);
}
unsigned bm_count(const struct kura_blk_bitmap *b);
int bm_any_range(const struct kura_blk_bitmap *b, unsigned blk, unsigned n);

/* 'E' record in RocksDB */
struct md_extent {
	uint32_t loc;
	uint32_t pad;
	uint64_t version;
	struct kura_blk_bitmap present;
};
void md_extent_key(uint8_t key[17], uint64_t layer, uint64_t ext);

/* 'J' record: where the live journal starts */
/* Where replay starts, and the nonce that tags the batches from there on. A
 * new nonce is drawn at every open (after replay): batches a volatile cache
 * kept beyond a hole the replay stopped at never match again, even where
 * the journal, written again from the hole, lines up with them. Stores made
 * before the nonce was kept here have 16 bytes and use the superblock's. */
struct md_journal {
	uint64_t seq, lpos, nonce;
};

/* ---- pool.c: disks and extent allocation ---- */

struct pool_disk {
	struct kura_disk *disk;
	struct kura_sb sb;
	uint32_t base;    /* first global extent number (a multiple of 4) */
	uint32_t nfree;
	uint64_t *used;   /* one bit per extent */
	uint32_t hint;
	struct kura_ratelimit rl;
	uint64_t io_errors, crc_errors;
	/* recorded as failed at open: disk is NULL, every extent counts as
	 * used (none is allocated there) and none is in the capacity */
	int failed;
	char *failed_path;
};

/* Which extents a journal record still to be replayed writes data to or
 * frees (the seq of the last such batch): an extent may take a direct write
 * (data in place before its record) only once no replay can write over it
 * and its release is durable, i.e. once that seq is below the journal's
 * tail. Holds only extents touched since the last checkpoint. */
struct pool_busy {
	uint32_t loc;
	uint64_t seq;
};

struct kura_pool {
	struct pool_disk *d;
	unsigned n;
	uint64_t capacity, nfree;
	struct pool_busy *busy; /* open addressing, cap a power of two */
	uint32_t busy_cap, busy_count;
	uint64_t busy_floor;    /* every extent counts as busy up to this seq */
};

int pool_add(struct kura_pool *p, struct kura_disk *disk, const struct kura_sb *sb);
/* Adds the place of a disk recorded as failed (its superblock as it was). */
int pool_add_failed(struct kura_pool *p, const struct kura_sb *sb, const char *path);
void pool_destroy(struct kura_pool *p);
struct pool_disk *pool_disk_of(struct kura_pool *p, uint32_t loc);
/* Byte offset of block blk of global extent loc on its disk. */
uint64_t pool_data_off(struct pool_disk *pd, uint32_t loc, unsigned blk);
int pool_alloc(struct kura_pool *p, uint32_t *loc);
/* Like pool_alloc, but only an extent that is clean below tail_seq (see
 * struct pool_busy); -EAGAIN when none is found quickly. */
int pool_alloc_clean(struct kura_pool *p, uint64_t tail_seq, uint32_t *loc);
/* Records that the batch seq writes data to or releases loc. */
void pool_mark_busy(struct kura_pool *p, uint32_t loc, uint64_t seq);
int pool_clean(const struct kura_pool *p, uint32_t loc, uint64_t tail_seq);
/* Forgets what batches below tail_seq did (a checkpoint trimmed them). */
void pool_prune_busy(struct kura_pool *p, uint64_t tail_seq);
/* Marks loc used; -EEXIST if it already was, -ERANGE if no disk holds it. */
int pool_take(struct kura_pool *p, uint32_t loc);
void pool_release(struct kura_pool *p, uint32_t loc);
void pool_reset(struct kura_pool *p);

/* ---- crcpage.c: cache of checksum pages ---- */

struct crcpage;
struct kura_crccache {
	struct kura_blk_store *s;
	struct crcpage **buckets;
	uint32_t nbuckets, count, cap;
	struct crcpage *lru_head, *lru_tail; /* clean, ready pages, oldest first */
	uint32_t ndirty;
	uint64_t writeback_pending;
	struct kura_op *wb_done;
	int wb_err;
};

int crc_init(struct kura_crccache *c, struct kura_blk_store *s, uint64_t bytes);
void crc_destroy(struct kura_crccache *c);
/* 1 and *crcs = the 256 checksums of extent loc when the page is in memory
 * (valid until the loop turns); 0 when it is being loaded: waiter->fn runs
 * with 0 or -EIO once it is; -errno on failure. */
int crc_get(struct kura_crccache *c, uint32_t loc, struct kura_op *waiter, uint32_t **crcs);
/* Page must be in memory (crc_get returned 1 this turn). */
void crc_update(struct kura_crccache *c, uint32_t loc, unsigned blk, unsigned n,
		const uint32_t *crcs);
/* Writes every dirty page; done->fn(done, 0 or -EIO) when all are written. */
void crc_writeback(struct kura_crccache *c, struct kura_op *done);
uint64_t crc_mem_bytes(const struct kura_crccache *c);

/* ---- journal.c ---- */

struct jbatch;

/* A request that waits for the journal: durable() runs once its batch (and
 * every batch before it) is durable, or with an error. A request with
 * cached() set may be answered earlier: cached() runs once its batch has
 * been written (it is in the device's volatile cache; a power cut may still
 * lose it, a crash of the process may not), and such a batch is written
 * without FUA; durable() still runs later, when a flush has covered it. */
struct jreq {
	struct jreq *next;
	void (*durable)(struct jreq *j, int err);
	void (*cached)(struct jreq *j);
	struct jbatch *batch;
};

struct kura_journal {
	struct kura_blk_store *s;
	struct pool_disk *pd;
	uint64_t off, len, nonce;
	uint64_t next_seq;       /* seq of the next batch to seal */
	uint64_t head;           /* logical end of the last sealed batch */
	uint64_t tail, tail_seq; /* start of the live journal (last checkpoint) */
	struct jbatch *open;     /* batch taking records */
	struct jbatch *first, *last; /* sealed batches not yet checkpointed, oldest first */
	struct jbatch *inflight;
	uint64_t done_ns;        /* when the last batch write ended (monotonic) */
	struct jbatch *written;  /* a written batch with none but written ones
				  * before it (NULL: start at first): where the
				  * next batch to write is looked for */
	struct jbatch *dpos;     /* likewise, the last durable one */
	struct kura_op kick;
	int kick_pending;
	uint64_t written_seq;    /* every batch up to this one is written */
	uint64_t durable_seq;    /* every batch up to this one is durable */
	/* Batches written without FUA (only cached requests in them) become
	 * durable by a flush of the journal's disk: at once when something
	 * waits for durability, else JOURNAL_FLUSH_DELAY_NS after the first. */
	struct kura_op flush_op;
	uint64_t flush_covers;   /* written_seq when the flush in flight was issued */
	int flush_inflight, flush_again;
	struct kura_timer flush_timer;
	int flush_timer_armed;
	uint8_t *spare_hdr[4];   /* header buffers for reuse */
	unsigned nspare;
};

int journal_init(struct kura_journal *j, struct kura_blk_store *s, struct pool_disk *pd,
		 uint64_t seq, uint64_t lpos, uint64_t nonce);
void journal_destroy(struct kura_journal *j);
/* Whether a record of rec_bytes header bytes and data_bytes more fits now
 * within quarters/4 of the journal. */
int journal_has_room(struct kura_journal *j, uint32_t rec_bytes, uint32_t data_bytes,
		     unsigned quarters);
/* Appends a record (and its data pages, which must stay valid until durable)
 * to the open batch; rec is copied. jr (may be NULL) is completed when the
 * batch is durable. Caller checked journal_has_room(). Returns the batch. */
struct jbatch *journal_append(struct kura_journal *j, const struct kura_jrec *rec,
			      const uint32_t *crcs, void *data, struct jreq *jr);
/* Adds a completion that fires once everything appended so far is durable. */
int journal_barrier(struct kura_journal *j, struct jreq *jr);
/* Something waits for the batches up to seq, written without FUA, to become
 * durable (a checkpoint): flush now rather than
 * later, unless they are durable or a flush under way covers them (a batch
 * not written yet gets its flush when it is). */
void journal_flush_through(struct kura_journal *j, uint64_t seq);
/* 1 while a journal flush or its timer is pending (closing waits). */
int journal_flush_pending(const struct kura_journal *j);
void journal_batch_apply_start(struct jbatch *b);
void journal_batch_apply_done(struct kura_journal *j, struct jbatch *b);
/* Seals the open batch; returns the seq of the last sealed batch (0 if none). */
uint64_t journal_seal(struct kura_journal *j);
/* 1 when every batch up to seq is durable and applied; *end_lpos is where the
 * last of them ends. A caller that asks again for the same seq passes the
 * same *from (NULL the first time): the walk resumes after the last batch
 * found done (one that stays done and listed until journal_trim), so asking
 * after every apply costs the batches done since, not the whole list. */
int journal_done_through(struct kura_journal *j, uint64_t seq, struct jbatch **from,
			 uint64_t *end_lpos);
/* Forgets batches up to seq: their space is free again. */
void journal_trim(struct kura_journal *j, uint64_t seq, uint64_t end_lpos);
uint64_t journal_used(const struct kura_journal *j);
/* Fails every batch not yet durable (the store is stopping after an error). */
void journal_fail_all(struct kura_journal *j, int err);
/* Replays batches from (seq, lpos): calls fn for every record of every valid
 * batch; end_seq and end_lpos get where the next batch goes. Synchronous. */
typedef int (*journal_replay_fn)(void *arg, const struct kura_jrec *rec, const uint32_t *crcs,
				 const uint8_t *data);
int journal_replay(struct kura_journal *j, uint64_t seq, uint64_t lpos, journal_replay_fn fn,
		   void *arg, uint64_t *end_seq, uint64_t *end_lpos, uint64_t *nbatches);

/* ---- io.c / ckpt.c ---- */

struct xstate;
struct wreq;

/* A disk flush that makes direct writes durable (io.c). */
struct dflush {
	struct kura_op op;
	struct kura_blk_store *s;
	int want;
};

struct kura_blk_store {
	struct kura_loop *loop;
	struct kura_worker *worker;
	struct kura_md *md;
	int dir_lock_fd;
	char dir[4096];
	uint8_t store_uuid[16];

	struct kura_pool pool;
	struct kura_idx idx;
	struct kura_bufpool bufs; /* writes' copies of their data */
	struct kura_crccache crc;
	struct kura_journal journal;

	struct xstate **xs;    /* physical extents with writes not yet applied */
	uint32_t xs_cap, xs_count;
	uint64_t apply_gen;    /* bumps on every apply, for read retries */
	struct xstate *applyq; /* extents with acknowledged writes not yet applying */
	unsigned unstarted;
	unsigned napplying;    /* in-place writes in flight (io.c, apply_depth) */
	unsigned apply_backlog; /* blocks of acknowledged writes not yet applying (about) */
	int apply_held;         /* writes let go (io_apply_kick) wait for a slot */
	uint64_t apply_idle_ns; /* kura_blk_opts.apply_idle_ns */
	struct kura_timer apply_timer;
	int apply_timer_armed;

	struct pend *blocked_head, *blocked_tail; /* waiting for journal room */
	struct pend *unblocking;
	int dead;
	int failed_disk; /* kura_blk_failed_disk(), -1: none */

	/* direct writes (io.c): in place before their record */
	struct wreq *directs;  /* data being written, record not yet appended */
	unsigned ndirect;
	struct pend *held_head, *held_tail; /* on an extent a direct write holds */
	struct pend *flushq_head, *flushq_tail; /* flushes behind them */
	uint64_t sub_seq;      /* numbers directs, held submissions and flushes */
	struct wreq *dwait;    /* in place, waiting for the next disk flush */
	struct wreq *dflushed; /* in place, covered by the flushes in flight */
	struct dflush *dflush; /* one per disk */
	unsigned dflush_pending;
	int dflush_err;

	/* checkpoint */
	struct ckpt *ck;
	uint64_t checkpoint_ns;
	struct kura_timer ck_timer;
	int ck_timer_armed;
	int closing;

	struct kura_blk_stats st;
};

/* A submission waiting for journal room. retry() returns 1 while it must
 * keep waiting (it stays first in line) and 0 once it went through or failed. */
/* A submission waiting for journal room. Background writes wait once the
 * journal is 3/4 full, so that guest writes keep the last quarter: a guest
 * write may pass waiting background writes of other extents (never another
 * guest write, a metadata change, or anything on its own extent). */
enum pend_kind { PEND_META = 0, PEND_GUEST, PEND_BG };

struct pend {
	struct pend *next;
	int (*retry)(struct pend *p);
	enum pend_kind kind;
	uint64_t layer, ext;
	uint64_t layer2, ext2; /* a move's target: a second extent it touches */
	uint8_t nkeys;         /* extents it touches: 0 (a barrier), 1 or 2 */
	uint64_t sid;          /* submission number: the order of submission */
	uint8_t held;          /* on the held list (behind a direct write) */
};

void store_block(struct kura_blk_store *s, struct pend *p);
void store_unblock(struct kura_blk_store *s);
void store_fail(struct kura_blk_store *s, const char *what, int err);
/* A write or flush to pd failed: a data disk (not the journal's) is recorded
 * as failed in the metadata, once (store.c). Call before store_fail. */
void store_disk_failed(struct kura_blk_store *s, struct pool_disk *pd);
void store_io_error(struct kura_blk_store *s, struct pool_disk *pd, uint64_t off, int err,
		    const char *what);
void io_batch_durable(struct kura_blk_store *s); /* after a journal batch completes */
int io_init(struct kura_blk_store *s);
void io_destroy(struct kura_blk_store *s);
int io_meta_apply(struct kura_blk_store *s, const struct kura_jrec *rec);
/* Starts queued applies now, as many as may be in flight (io.c). */
void io_apply_kick(struct kura_blk_store *s);
/* A journal write ended: applies started but held back for lack of a slot
 * may go in the gap before the next one. */
void io_apply_gap(struct kura_blk_store *s);
int io_pending(struct kura_blk_store *s);

int ckpt_init(struct kura_blk_store *s);
void ckpt_destroy(struct kura_blk_store *s);
void ckpt_poke(struct kura_blk_store *s);   /* start one if worthwhile */
void ckpt_request(struct kura_blk_store *s); /* start one as soon as possible */
void ckpt_progress(struct kura_blk_store *s);
int ckpt_active(struct kura_blk_store *s);
int ckpt_sync(struct kura_blk_store *s);  /* blocking full checkpoint (open/close) */
void ckpt_start_timer(struct kura_blk_store *s);

#endif
