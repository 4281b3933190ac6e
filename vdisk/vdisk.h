/* kura vdisks: thin virtual disks made of chains of store layers, with O(1)
 * snapshots and clones, rollback, background flatten, full clone, import and
 * export jobs, and the control requests the `vdisk` CLI sends.
 *
 * Model. A vdisk is a chain of layers, newest first; a read takes each 4 KiB
 * block from the newest layer holding it, a write goes to the top layer.
 * Layers form a tree: a snapshot freezes the top layer (it gets the
 * snapshot's name) and puts a new empty top layer above it; a clone is a new
 * vdisk whose top layer's parent is a snapshot's layer. Deleting a snapshot
 * merges its blocks into its only child (moving whole extents where the child
 * has none) or, when clones depend on it, hides it until they go. Every change
 * of the tree is one atomic, durable catalog transaction; long work (freeing,
 * merging, copying) is a job whose progress is in the catalog, so it resumes
 * after a restart.
 *
 * Thread rule: an engine is owned by the thread running the store's loop;
 * every kura_vd_* call is made there and every callback runs there, never
 * from inside the call that submitted it. kura_vd_engine_open/close block.
 *
 * Errors: 0 or -errno: -ENOENT unknown vdisk or snapshot, -EEXIST name
 * taken, -EINVAL bad name, size or range, -EBUSY exported or in use by a job,
 * -ENOTEMPTY dependents exist, -EROFS write to a snapshot handle,
 * -ENOSPC, -EIO, KURA_E_DEAD from the store.
 */
#ifndef KURA_VDISK_VDISK_H
#define KURA_VDISK_VDISK_H

#include <stddef.h>
#include <stdint.h>

#include "blockd/store.h"
#include "common/json.h"
#include "metadata/catalog.h"

#define KURA_VD_NAME_MAX 64
#define KURA_VD_SIZE_MAX (1ull << 50) /* 1 PiB */
/* Layer ids from here up belong to vdisks; lower ids are free for raw store
 * protocol clients and are not the catalog's business. */
#define KURA_VD_ID_BASE (1ull << 32)

struct kura_vd_engine;
struct kura_vd_handle;

/* Where an engine's blocks live: the node's own store (blockd/store.h), or
 * the cluster's replicated layer (replication/vdblk.h). Each operation means
 * what blockd/store.h says of the store's function of that name; writes take
 * no version (the layer below orders them). move may be NULL: extents then
 * move between layers by copying. extent_info, list, layers and layer_usage
 * answer synchronously from memory. Same thread rule as the engine. */
struct kura_vd_blk_ops {
	int (*read)(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk, void *buf,
		    enum kura_io_class cls, kura_blk_cb cb, void *arg);
	int (*write)(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		     const void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg);
	/* Write-back (kura_blk_write_cached): may complete once in a volatile
	 * cache, durable after a later flush. NULL: writes are durable only. */
	int (*write_cached)(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
			    const void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg);
	int (*trim)(void *b, uint64_t layer, uint64_t ext, unsigned blk, unsigned nblk,
		    kura_blk_cb cb, void *arg);
	int (*free)(void *b, uint64_t layer, uint64_t ext, kura_blk_cb cb, void *arg);
	int (*move)(void *b, uint64_t layer, uint64_t ext, uint64_t new_layer, uint64_t new_ext,
		    kura_blk_cb cb, void *arg);
	int (*flush)(void *b, kura_blk_cb cb, void *arg);
	int (*extent_info)(void *b, uint64_t layer, uint64_t ext,
			   struct kura_blk_extent_info *out);
	int (*list)(void *b, uint64_t layer, uint64_t **exts, size_t *n);
	int (*layers)(void *b, uint64_t **ids, size_t *n);
	void (*layer_usage)(void *b, uint64_t layer, uint64_t *extents, uint64_t *blocks);
	/* The disks under it, for `vdisk stats` (-ENOENT past the last). */
	int (*disk_info)(void *b, unsigned i, struct kura_blk_disk_info *out);
	/* Reads copy `copy` (0, 1, ...) of the blocks where several are kept
	 * (replication/rep.h, kura_rep_read_copy): -ENOENT past the last copy,
	 * -EAGAIN when that copy cannot be read now; who names where it is.
	 * NULL: one copy only (a scrub reads it with read). */
	int (*read_copy)(void *b, unsigned copy, uint64_t layer, uint64_t ext, unsigned blk,
			 unsigned nblk, void *buf, enum kura_io_class cls, char who[64],
			 kura_blk_cb cb, void *arg);
};

/* The store's operations (b: the struct kura_blk_store). */
extern const struct kura_vd_blk_ops kura_vd_store_ops;

struct kura_vd_opts {
	struct kura_loop *loop;
	struct kura_blk_store *store; /* used when blk is NULL */
	const struct kura_vd_blk_ops *blk;
	void *blk_arg;
	struct kura_cat *cat;
	unsigned job_qd;       /* extents in flight per job; 0: 8 */
	unsigned max_jobs;     /* jobs running at once; 0: 4 */
	int no_resume;         /* tests: leave jobs paused after open */
	int sched_fifo;        /* I/O scheduler off: admit every I/O at once (FIFO) */
	uint64_t scrub_every_ms; /* a vdisk whose last scrub (or creation) is this old
				  * is scrubbed, one at a time; 0: only on demand */
};

int kura_vd_engine_open(const struct kura_vd_opts *o, struct kura_vd_engine **out, char *err,
			size_t errlen);
/* Stops jobs at a resumable point, waits for I/O in flight, closes handles'
 * bookkeeping (handles must be closed first). */
void kura_vd_engine_close(struct kura_vd_engine *e);

/* 0 when name is valid, else -EINVAL. */
int kura_vd_name_check(const char *name);

/* I/O handles: what a frontend exports. A vdisk with an open handle cannot be
 * deleted or rolled back. snap NULL opens the vdisk read-write; a snapshot is
 * always read-only. */
int kura_vd_open(struct kura_vd_engine *e, const char *name, const char *snap,
		 struct kura_vd_handle **out);
void kura_vd_close(struct kura_vd_handle *h);
uint64_t kura_vd_size(const struct kura_vd_handle *h);
/* A stable id for what the handle reads: the vdisk's id, or the snapshot's
 * layer id (frontends derive device identifiers from it). */
uint64_t kura_vd_handle_uid(const struct kura_vd_handle *h);
/* Synchronous, from memory: whether 4 KiB block `blk` of the handle holds
 * data in any layer of its chain (1) or reads as zeros never written (0);
 * *run receives how many blocks from blk (at most max) share that state.
 * -EINVAL when blk is past the end. */
int kura_vd_mapped(struct kura_vd_handle *h, uint64_t blk, uint64_t max, uint64_t *run);

/* Walks every ready vdisk (snap NULL) and each of its snapshots, in catalog
 * order; fn's non-zero return stops the walk and is returned. For frontends
 * listing what they can export. */
int kura_vd_each(struct kura_vd_engine *e,
		 int (*fn)(void *arg, const char *name, const char *snap, uint64_t uid, uint64_t size),
		 void *arg);
/* The id of vdisk `name` (snap NULL) or of its snapshot: what
 * kura_vd_handle_uid would give. -ENOENT when absent. */
int kura_vd_uid(struct kura_vd_engine *e, const char *name, const char *snap, uint64_t *uid);

/* off and len multiples of 4 KiB; buf 4 KiB aligned. */
int kura_vd_read(struct kura_vd_handle *h, uint64_t off, uint64_t len, void *buf,
		 enum kura_io_class cls, kura_blk_cb cb, void *arg);
int kura_vd_write(struct kura_vd_handle *h, uint64_t off, uint64_t len, const void *buf,
		  enum kura_io_class cls, kura_blk_cb cb, void *arg);
/* Write-back: the write may complete before it is durable (once in the
 * store's volatile device cache, where a crash of blockd does not lose it
 * but a power cut may); kura_vd_flush makes every write completed before it
 * durable. Below a layer without write-back (the cluster's), a plain write. */
int kura_vd_write_cached(struct kura_vd_handle *h, uint64_t off, uint64_t len, const void *buf,
			 enum kura_io_class cls, kura_blk_cb cb, void *arg);
/* The range reads as zeros afterwards; space is freed where no lower layer
 * holds data under it. */
int kura_vd_discard(struct kura_vd_handle *h, uint64_t off, uint64_t len, kura_blk_cb cb,
		    void *arg);
int kura_vd_flush(struct kura_vd_handle *h, kura_blk_cb cb, void *arg);

/* A control request (docs/control.md): req is the parsed object. The answer's
 * members (after "ok") are written into out, an open object; cb(arg, err,
 * msg) runs when the request is done, with a one-line msg when err != 0. */
typedef void (*kura_vd_ctl_cb)(void *arg, int err, const char *msg);
void kura_vd_ctl(struct kura_vd_engine *e, const struct kura_json *req, struct kura_jw *out,
		 kura_vd_ctl_cb cb, void *arg);

/* Runs the loop until no job is running (tests and benchmarks). */
void kura_vd_wait_jobs(struct kura_vd_engine *e);

#endif
