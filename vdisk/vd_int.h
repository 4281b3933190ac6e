/* vdisk internals. Everything here belongs to the engine's loop thread. */
#ifndef KURA_VDISK_VD_INT_H
#define KURA_VDISK_VD_INT_H

#include "vdisk/sched.h"
#include "vdisk/vdisk.h"

#include <stdbool.h>

#define VD_BLK KURA_BLK_SIZE
#define VD_EXT KURA_EXT_SIZE

/* While guests run (under the scheduler), background data moves in pieces
 * of at most 128 KiB, one after the other: a journal batch then carries
 * little of it, so a guest write that shares the batch does not wait for a
 * whole extent, and a guest read queues behind no more than that at the
 * disk. Otherwise a job step reads and writes everything at once. */
#define VD_STEP_CHUNK_BLOCKS 32u

struct vd_layer {
	uint64_t id;
	uint64_t parent;   /* 0: bottom of its chain */
	uint64_t vdisk;    /* owner vdisk id (kept after the vdisk is deleted) */
	uint64_t size;     /* the vdisk's size when the layer was frozen */
	uint64_t clip;     /* lower layers' blocks at or past this offset are hidden */
	uint64_t created;  /* unix seconds */
	uint64_t job;      /* job freeing or merging it, or 0 */
	char snap[KURA_VD_NAME_MAX + 1]; /* snapshot name; "" for a top or hidden layer */
	bool hidden;       /* a deleted snapshot that others still depend on */
	bool top;          /* some vdisk's top layer */
	unsigned opens;    /* open snapshot handles */
	struct vd_layer *next;
};

enum vd_state { VD_READY, VD_BUILDING };

/* A resolved chain, newest layer first; lim: offset from which this layer's
 * blocks are hidden by a shrink above it. */
struct vd_chain {
	unsigned n;
	uint64_t gen;
	uint64_t *ids;
	uint64_t *lims;
	struct vd_chain_cache *cache; /* deep chains: which frozen layers hold an extent */
};

/* For chains deeper than VD_CACHE_DEPTH, reads remember per extent which of
 * the layers below the top hold it (the top changes with every write and is
 * always looked up). An entry is valid while the tree and every frozen
 * layer are unchanged: e->store_gen moves whenever a job changes one. */
#define VD_CACHE_DEPTH 8
#define VD_CACHE_SLOTS 4096
struct vd_chain_cache {
	struct {
		uint64_t ext1;  /* extent + 1; 0 empty */
		uint64_t gen;
		uint64_t mask;  /* bit i-1: layer i of the chain holds the extent */
	} slot[VD_CACHE_SLOTS];
};

struct vd_io;
struct vd_lockreq;

struct vd_vdisk {
	uint64_t id;
	char name[KURA_VD_NAME_MAX + 1];
	uint64_t size;
	uint64_t top;
	uint64_t created;
	enum vd_state state;
	uint64_t job;          /* job building it */
	uint64_t scrubbed;     /* when its last scrub ended (unix s; 0: never) */
	uint64_t scrub_bad;    /* ... and the blocks that did not read in it */
	uint64_t scrub_tried;  /* when a periodic scrub of it last started (unix s;
				* in memory only) */
	unsigned opens;        /* open handles (exports) */
	bool deleting;         /* removed from the catalog; handles drain */

	unsigned writes_inflight;
	bool paused;           /* a snapshot is switching the top layer */
	struct vd_io *wq_head, *wq_tail; /* writes waiting for a snapshot */
	void (*drained)(void *arg); /* runs when paused and no writes in flight */
	void *drained_arg;

	struct vd_chain chain;
	struct vd_vdisk *next;
};

struct kura_vd_handle {
	struct kura_vd_engine *e;
	struct vd_vdisk *v;
	uint64_t snap_layer;   /* 0: the vdisk itself */
	uint64_t size;
	struct vd_chain chain; /* for a snapshot handle */
};

enum vd_job_type { JOB_FREE, JOB_MERGE, JOB_FLATTEN, JOB_CLONE, JOB_IMPORT, JOB_EXPORT, JOB_SCRUB };
enum vd_job_state { JOB_RUNNING, JOB_DONE, JOB_FAILED, JOB_CANCELLED };

#define VD_SCRUB_KEEP 8

struct vd_job {
	uint64_t id;
	enum vd_job_type type;
	enum vd_job_state state;
	uint64_t vdisk;          /* vdisk it works for (0 for freeing) */
	char vname[KURA_VD_NAME_MAX + 1];
	char source[2 * KURA_VD_NAME_MAX + 2];
	char target[4096];
	uint64_t src, dst;       /* layers: merge src into dst; flatten/clone: dst's chain into dst */
	uint64_t *layers;        /* JOB_FREE: layers to free */
	unsigned nlayers;
	char *file;              /* import / export */
	uint64_t size;           /* import / export bytes */
	uint64_t cursor;         /* extents below this are done */
	/* JOB_SCRUB: what it read, the blocks that would not read, and where
	 * the first VD_SCRUB_KEEP of those are */
	uint64_t scrub_bytes, bad_blocks;
	uint64_t copies_repaired; /* blocks written again: a copy failed or differed */
	struct vd_bad {
		uint64_t layer, off; /* off: byte offset in the vdisk */
	} bad[VD_SCRUB_KEEP];
	unsigned nbad;
	uint64_t done, total;    /* bytes, for progress */
	uint64_t started, finished;
	char error[256];
	bool cancel;
	bool paused;             /* engine closing: stop at a resumable point */
	uint64_t ready_seq;      /* runs once this catalog commit is durable */
	bool retry_armed;
	unsigned retries;         /* failed attempts so far */
	int err_code;
	struct kura_vd_engine *e;

	/* run state */
	bool running;
	uint64_t *exts;          /* work list */
	size_t nexts, pos;
	unsigned inflight;
	uint64_t *inflight_ext;  /* extents in flight, to compute the cursor */
	int fd;
	struct vd_chain chain;
	unsigned li;             /* JOB_FREE: layer being freed */
	uint64_t last_save_ns;
	bool saving;
	uint64_t rate_t0, rate_b0; /* rate window */
	double rate;
	struct kura_timer retry;
	struct vd_job *next;
};

struct kura_vd_engine {
	struct kura_loop *loop;
	const struct kura_vd_blk_ops *bops; /* where the blocks live */
	void *b;
	struct kura_cat *cat;
	unsigned job_qd, max_jobs;
	bool no_resume;
	uint64_t scrub_every_s;  /* scrub.c: periodic scrubs (0: none) */
	struct kura_timer scrub_timer;
	bool scrub_armed;

	struct vd_vdisk *vdisks;
	struct vd_layer *layers;
	struct vd_job *jobs;
	uint64_t next_id;
	uint64_t tree_gen;
	uint64_t store_gen;      /* bumps when a job changes a frozen layer */
	unsigned running_jobs;
	unsigned commits;        /* catalog transactions in flight */
	uint64_t commit_seq, commit_done_seq; /* submitted / completed, in order */
	bool closing;
	int cat_err;             /* a failed commit: refuse further changes */

	/* Extent locks: a job step holds an extent while it moves or copies
	 * blocks between layers; guest I/O to that extent waits. Guest I/O in
	 * flight sits in a list in ticket order, so a locker can wait for the
	 * I/O that started before it without counting every extent. A shared
	 * lock (a full clone's step: it reads frozen layers and writes the
	 * top layer of a vdisk nobody can open yet) keeps out only the
	 * exclusive ones, whose steps change frozen layers; guest I/O never
	 * waits for it, nor it for guest I/O. */
	struct vd_lockent {
		uint64_t ext;
		uint64_t ticket;          /* I/O before this ticket must finish */
		void (*cb)(void *arg);
		void *arg;
		bool granted;
		bool shared;
	} locks[64];
	unsigned nlocks;
	struct vd_lockreq *lock_pending; /* waiting for a slot or a held extent */
	struct vd_io *lock_wq_head, *lock_wq_tail; /* guest I/O waiting for a lock */
	uint64_t next_ticket;
	struct vd_io *io_head, *io_tail; /* guest I/O in flight, oldest first */

	/* the I/O scheduler (qos.c) */
	struct vd_sched *sched;
	struct kura_timer control_timer, pace_timer;
	bool control_armed, pace_armed, sched_stopping;

	/* full clones' shared source reads (share.c) */
	struct vd_share *shares;
	size_t share_bytes;

	/* control requests run one at a time */
	struct vd_ctl *ctl_head, *ctl_tail;
	bool ctl_busy;
};

/* ---- share.c: full clones of one template read each span once ---- */
struct vd_share;
/* For a clone step that needs blocks lo..hi of ext through chain c. 1: an
 * entry that holds them is ready (*out; nothing is called back); 0: they
 * are being read into *out, and cb(arg, err) runs when they are;
 * -EAGAIN: nothing to share (the step reads on its own); -ENOMEM. Either
 * way but -EAGAIN and -ENOMEM the caller holds *out until vd_share_put. */
int vd_share_get(struct kura_vd_engine *e, const struct vd_chain *c, uint64_t ext, unsigned lo,
		 unsigned hi, enum kura_io_class cls, void (*cb)(void *arg, int err), void *arg,
		 struct vd_share **out);
/* Block lo's data in s (lo within the span asked for). */
const char *vd_share_data(const struct vd_share *s, unsigned lo);
void vd_share_put(struct kura_vd_engine *e, struct vd_share *s);
/* Engine close: every entry goes (none may be held). */
void vd_share_drop_all(struct kura_vd_engine *e);

/* ---- engine.c ---- */
struct vd_layer *vd_layer_get(struct kura_vd_engine *e, uint64_t id);
struct vd_vdisk *vd_find(struct kura_vd_engine *e, const char *name);
struct vd_vdisk *vd_get(struct kura_vd_engine *e, uint64_t id);
struct vd_layer *vd_snap_find(struct kura_vd_engine *e, const struct vd_vdisk *v,
			      const char *snap);
unsigned vd_children(struct kura_vd_engine *e, uint64_t id, struct vd_layer **first);
uint64_t vd_new_id(struct kura_vd_engine *e);
/* Chain starting at layer id; lim0 is the limit of the first layer. */
int vd_chain_build(struct kura_vd_engine *e, struct vd_chain *c, uint64_t id, uint64_t lim0);
void vd_chain_free(struct vd_chain *c);
/* A vdisk's own chain, rebuilt when the tree changed. */
int vd_chain_get(struct kura_vd_engine *e, struct vd_vdisk *v, struct vd_chain **out);

/* Catalog transactions built from the in-memory records. */
void vd_txn_vdisk(struct kura_cat_txn *t, const struct vd_vdisk *v);
void vd_txn_layer(struct kura_cat_txn *t, const struct vd_layer *l);
void vd_txn_job(struct kura_cat_txn *t, const struct vd_job *j);
void vd_txn_counter(struct kura_cat_txn *t, const struct kura_vd_engine *e);
/* Commits t; cb(arg, err) runs on the loop afterwards. */
void vd_commit(struct kura_vd_engine *e, struct kura_cat_txn *t, void (*cb)(void *arg, int err),
	       void *arg);

void vd_layer_unlink(struct kura_vd_engine *e, struct vd_layer *l); /* frees it */
void vd_vdisk_unlink(struct kura_vd_engine *e, struct vd_vdisk *v);
/* A hidden layer with one child or none: starts the job merging or freeing
 * it (adds to t). */
void vd_layer_gc(struct kura_vd_engine *e, uint64_t id, struct kura_cat_txn *t);

/* ---- io.c ---- */
typedef void (*vd_read_cb)(void *arg, int err, const struct kura_blk_bitmap *present);
/* Reads blocks [blk, blk+nblk) of extent ext through chain c; present gets
 * which blocks some layer held (the rest are zero-filled). */
int vd_chain_read(struct kura_vd_engine *e, const struct vd_chain *c, uint64_t ext,
		  unsigned blk, unsigned nblk, void *buf, enum kura_io_class cls, vd_read_cb cb,
		  void *arg);
/* Which blocks of ext the chain holds (visible), synchronously. */
void vd_chain_present(struct kura_vd_engine *e, const struct vd_chain *c, uint64_t ext,
		      struct kura_blk_bitmap *out);
/* Extent locks for job steps: cb runs once no I/O to ext is in flight
 * (exclusive), or once no exclusive lock holds ext (shared). Unlock with
 * the same `shared`. */
int vd_lock_ext(struct kura_vd_engine *e, uint64_t ext, bool shared, void (*cb)(void *arg),
		void *arg);
void vd_unlock_ext(struct kura_vd_engine *e, uint64_t ext, bool shared);
/* Snapshot support: pauses the vdisk's writes; cb runs once none are in flight. */
void vd_pause_writes(struct kura_vd_engine *e, struct vd_vdisk *v, void (*cb)(void *arg),
		     void *arg);
void vd_resume_writes(struct kura_vd_engine *e, struct vd_vdisk *v);

/* ---- qos.c: the scheduler on the engine's loop ---- */
#define VD_QOS_WEIGHT_MAX 10000u
#define VD_QOS_WEIGHT_DEFAULT 100u
#define VD_QOS_BW_MIN 4096u
int vd_qos_start(struct kura_vd_engine *e, bool fifo);
void vd_qos_stop(struct kura_vd_engine *e);
/* A catalog record 'q' (a vdisk's settings). */
int vd_qos_load(struct kura_vd_engine *e, uint64_t id, const struct kura_json *o);
/* Submit r to the scheduler (r->dispatch runs when admitted, maybe at once);
 * tell it r finished. */
void vd_sched_go(struct kura_vd_engine *e, struct vd_sreq *r);
void vd_sched_end(struct kura_vd_engine *e, struct vd_sreq *r);

/* ---- job.c ---- */
struct vd_job *vd_job_new(struct kura_vd_engine *e, enum vd_job_type type);
struct vd_job *vd_job_get(struct kura_vd_engine *e, uint64_t id);
int vd_job_from_json(struct kura_vd_engine *e, uint64_t id, const struct kura_json *o);
void vd_job_json(struct kura_jw *w, const char *key, const struct vd_job *j);
const char *vd_job_type_name(enum vd_job_type t);
void vd_jobs_kick(struct kura_vd_engine *e);
void vd_jobs_stop(struct kura_vd_engine *e);
void vd_job_free(struct vd_job *j);
void vd_job_cancel(struct kura_vd_engine *e, struct vd_job *j);
/* Removes vdisk v from the catalog (into t) and starts freeing its layers;
 * *job gets the freeing job's id. */
void vd_delete_vdisk(struct kura_vd_engine *e, struct vd_vdisk *v, struct kura_cat_txn *t,
		     uint64_t *job);

/* ---- control requests (ctl.c, ops.c) ---- */
struct vd_ctl {
	struct kura_vd_engine *e;
	const struct kura_json *req;
	struct kura_jw *out;
	kura_vd_ctl_cb cb;
	void *arg;
	struct kura_op op;
	struct vd_ctl *next;
	/* state of the running op */
	struct vd_vdisk *v;
	struct vd_layer *l;
	uint64_t job;
	uint64_t size;
	unsigned pending;
	int err;
	char snap[KURA_VD_NAME_MAX + 1];
	void (*answer)(struct vd_ctl *c); /* writes the answer once committed */
	bool in_dispatch;  /* a reply now only marks it; the dispatcher frees it */
	bool replied;
};

/* Ends the request: err 0 (answer already in c->out) or -errno with a
 * one-line message, then runs the next queued request. */
void vd_ctl_reply(struct vd_ctl *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void vd_vdisk_json(struct kura_vd_engine *e, struct kura_jw *w, const char *key,
		   struct vd_vdisk *v);
void vd_snap_json(struct kura_vd_engine *e, struct kura_jw *w, const char *key,
		  const struct vd_layer *l);
/* Checks shared by ops: a one-line error into c, or 0. */
int vd_check_name(struct vd_ctl *c, const char *what, const char *name);
int vd_check_size(struct vd_ctl *c, uint64_t size);
struct vd_vdisk *vd_need_vdisk(struct vd_ctl *c, const char *name);

void vd_op_create(struct vd_ctl *c, const char *name, uint64_t size);
void vd_op_resize(struct vd_ctl *c, const char *name, uint64_t size, int shrink);
void vd_op_delete(struct vd_ctl *c, const char *name, const char *snap);
void vd_op_snapshot(struct vd_ctl *c, const char *name, const char *snap);
void vd_op_rollback(struct vd_ctl *c, const char *name, const char *snap);
void vd_op_clone(struct vd_ctl *c, const char *name, const char *snap, const char *new_name,
		 int full);
void vd_op_flatten(struct vd_ctl *c, const char *name);
void vd_op_scrub(struct vd_ctl *c, const char *name);
/* A running job (other than freeing and merging) working for v, or NULL. */
struct vd_job *vd_job_using(struct kura_vd_engine *e, const struct vd_vdisk *v);

/* ---- scrub.c ---- */
/* A scrub job for v, recorded in t (the caller commits it). */
struct vd_job *vd_scrub_new(struct kura_vd_engine *e, struct vd_vdisk *v, struct kura_cat_txn *t);
/* A scrub of v ended: v remembers when and what it found (into t). */
void vd_scrub_ended(struct kura_vd_engine *e, struct vd_job *j, struct kura_cat_txn *t);
/* Periodic scrubs (kura_vd_opts.scrub_every_ms): started at open, stopped
 * at close. */
void vd_scrub_auto_start(struct kura_vd_engine *e);
void vd_scrub_auto_stop(struct kura_vd_engine *e);
void vd_op_import(struct vd_ctl *c, const char *file, const char *name);
void vd_op_export(struct vd_ctl *c, const char *name, const char *snap, const char *file);
void vd_op_job_cancel(struct vd_ctl *c, uint64_t id);
void vd_op_fsck(struct vd_ctl *c);
void vd_op_qos(struct vd_ctl *c, const char *name);
void vd_op_qos_show(struct vd_ctl *c, const char *name);
void vd_op_stats(struct vd_ctl *c, const char *name); /* name NULL: every vdisk */

/* ---- bitmaps ---- */
static inline void vd_bm_set(struct kura_blk_bitmap *b, unsigned i)
{
	b->w[i / 64] |= 1ull << (i % 64);
}
static inline int vd_bm_test(const struct kura_blk_bitmap *b, unsigned i)
{
	return (int)((b->w[i / 64] >> (i % 64)) & 1);
}
/* Keeps only blocks [blk, blk+n). */
void vd_bm_range(struct kura_blk_bitmap *b, unsigned blk, unsigned n);
unsigned vd_bm_count(const struct kura_blk_bitmap *b);
/* The next run of set bits at or after *pos within [0, end): 0 when none. */
unsigned vd_bm_next_run(const struct kura_blk_bitmap *b, unsigned *pos, unsigned end);

#endif
