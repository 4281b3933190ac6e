/* kura node-local block store: the API every upper layer builds on.
 *
 * A store pools one or more disks (files or block devices) into one allocator
 * of 1 MiB extents made of 256 blocks of 4 KiB. Data is addressed as
 * (layer id, extent number, block range): a layer is a sparse map of extents
 * (a vdisk layer, a snapshot, a replica's copy); an extent records which of
 * its blocks are present (bitmap) and a version number for resync.
 *
 * Durability: a write completes (cb with 0) only once it is durable: it has
 * reached the disk's journal in one flushed write, together with its
 * metadata (a large background write into blocks the extent does not hold
 * goes to its place first, with FUA, and then journals only its metadata).
 * It survives kill -9 and power loss from then on. (A write-back write,
 * kura_blk_write_cached, completes earlier: see there.) A write that had
 * not completed reads back, per 4 KiB block, as wholly old or wholly new.
 * Every block carries a crc32c that every read verifies; a mismatch or a disk
 * read error gives -EIO, never wrong data.
 *
 * Thread rule: a store is owned by the thread that runs its loop (the loop
 * passed in opts). Every kura_blk_* call must be made on that thread, and
 * every callback runs there. Callbacks never run from inside the call that
 * submitted them. kura_blk_store_open() and kura_blk_store_close() block
 * (they run the loop themselves) and must not be called from a callback.
 *
 * Errors: 0 or -errno (and kura codes from common/err.h):
 *   -EINVAL  bad range, unaligned buffer, extent number too large
 *   -ENOSPC  no free extent (other writes, reads and frees keep working)
 *   -ENOENT  extent absent (info/move/free)
 *   -EEXIST  move target already exists
 *   -EIO     disk error or checksum mismatch (logged, rate-limited, counted)
 *   KURA_E_DEAD  the store stopped after a journal or apply write failed;
 *            restart blockd to recover from the journal.
 * Buffers passed to read/write must be 4 KiB aligned (O_DIRECT); the store
 * copies write data before kura_blk_write() returns.
 */
#ifndef KURA_BLOCKD_STORE_H
#define KURA_BLOCKD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/loop.h"
#include "common/util.h"

#define KURA_BLK_SIZE 4096u
#define KURA_EXT_BLOCKS 256u
#define KURA_EXT_SIZE (KURA_BLK_SIZE * KURA_EXT_BLOCKS)
#define KURA_EXT_MAX 0xffffffffull /* extent numbers are below this */

/* I/O classes, for the QoS scheduler. */
enum kura_io_class {
	KURA_IO_GUEST = 0,
	KURA_IO_CLONE,
	KURA_IO_REBUILD,
	KURA_IO_SCRUB,
	KURA_IO_MERGE,
	KURA_IO_NCLASS
};
const char *kura_io_class_name(enum kura_io_class c);

typedef void (*kura_blk_cb)(void *arg, int err);

struct kura_blk_bitmap {
	uint64_t w[KURA_EXT_BLOCKS / 64];
};
static inline int kura_blk_bit(const struct kura_blk_bitmap *b, unsigned i)
{
	return (int)(b->w[i / 64] >> (i % 64) & 1);
}

struct kura_blk_extent_info {
	uint64_t layer, ext;
	uint64_t version;       /* highest version written to this extent */
	uint32_t disk;          /* index of the disk holding it */
	uint32_t nblocks;       /* blocks present */
	struct kura_blk_bitmap present;
};

struct kura_disk; /* blockd/disk.h */

struct kura_blk_disk_spec {
	const char *path;     /* file (created if missing) or block device */
	uint64_t size;        /* for a new file; 0 = the default */
	struct kura_disk *disk; /* already opened (tests' fake disks); overrides path */
};

struct kura_blk_opts {
	const char *dir;            /* data dir: holds meta/ (RocksDB) and LOCK */
	struct kura_loop *loop;     /* the owner thread's loop */
	const struct kura_blk_disk_spec *disks;
	unsigned ndisks;            /* 0: use recorded disks; a new store gets one default file disk */
	uint64_t default_disk_size; /* 0: 8 GiB */
	uint64_t journal_size;      /* per disk, for newly formatted disks; 0: 1/16 of the disk, 16-256 MiB */
	uint64_t crc_cache_bytes;   /* 0: 64 MiB (covers 256 GiB of hot data) */
	uint64_t checkpoint_ns;     /* checkpoint at least this often when dirty; 0: 5 s */
	uint64_t apply_idle_ns;     /* no journal write this long: in-place writes take
				     * every slot (blockd/io.c); 0: 2 ms */
	int create;                 /* create a new store when dir holds none */
	/* a disk recorded as failed (kura_blk_failed_disk) is never opened
	 * again; its extents are lost to this store. With drop_failed_disks
	 * open forgets them (in a cluster, resync copies them back from the
	 * other nodes); without it, open refuses, saying so. */
	int drop_failed_disks;
};

struct kura_blk_store;

/* Opens or creates the store: locks dir, opens RocksDB and every disk, replays
 * the journals and checkpoints. On error returns -errno with a one-line
 * explanation in errbuf. */
int kura_blk_store_open(const struct kura_blk_opts *opts, struct kura_blk_store **out,
			char *errbuf, size_t errlen);
/* Waits for in-flight work, checkpoints, closes. */
void kura_blk_store_close(struct kura_blk_store *s);
/* Frees memory without writing anything: what a crash leaves (tests). */
void kura_blk_store_abandon(struct kura_blk_store *s);

/* Reads nblk blocks from block blk of (layer, ext) into buf. Absent blocks
 * read as zeros. */
int kura_blk_read(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
		  unsigned nblk, void *buf, enum kura_io_class cls, kura_blk_cb cb, void *arg);

/* Writes nblk blocks at block blk of (layer, ext), allocating the extent if
 * needed; the extent's version becomes max(version, its current version). */
int kura_blk_write(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
		   unsigned nblk, const void *buf, uint64_t version, enum kura_io_class cls,
		   kura_blk_cb cb, void *arg);

/* Write-back: like kura_blk_write, but cb may run (with 0) once the write is
 * in the device's volatile cache, before it is durable. It survives a crash
 * of the process from then on; a power cut loses it unless a flush
 * (kura_blk_flush) completed after cb ran. Reads see it at once. Whatever a
 * power cut leaves is still, per extent, a prefix of what was submitted:
 * later writes are never kept while an earlier one is lost. The store
 * flushes such writes by itself within a few milliseconds. */
int kura_blk_write_cached(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
			  unsigned nblk, const void *buf, uint64_t version, enum kura_io_class cls,
			  kura_blk_cb cb, void *arg);

/* The same, without a copy: buf (4 KiB aligned, from malloc or
 * posix_memalign) is handed to the store, which frees it. When this returns
 * an error, buf still belongs to the caller. */
int kura_blk_write_owned(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
			 unsigned nblk, void *buf, uint64_t version, enum kura_io_class cls,
			 kura_blk_cb cb, void *arg);

/* A replica's copy of a write its group's primary ordered (replication/
 * rep.h): like kura_blk_write_owned, but written only when version is above
 * the extent's version at the moment it reaches the journal; otherwise
 * nothing is written and cb runs once everything before it is durable. So
 * a write sent again after a link broke is not applied twice, and an older
 * write never lands over a newer one. prev is the version the primary's
 * extent had before this write (0: none, or freed). When this copy is at
 * another version (it missed a write in between: a node catching up gets
 * new writes before the old ones), the blocks are written but the extent
 * keeps its version (a new extent gets 0): it never claims a version whose
 * content it lacks, so whoever compares versions later copies the rest.
 * Counted in kura_blk_stats.replica_gaps. */
int kura_blk_write_replica(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
			   unsigned nblk, void *buf, uint64_t version, uint64_t prev,
			   enum kura_io_class cls, kura_blk_cb cb, void *arg);

/* Drops blocks (they read as zeros and no longer count as present); an
 * extent left with no blocks is freed. Durable when cb runs. */
int kura_blk_trim(struct kura_blk_store *s, uint64_t layer, uint64_t ext, unsigned blk,
		  unsigned nblk, kura_blk_cb cb, void *arg);

/* Frees a whole extent. Durable when cb runs. */
int kura_blk_free(struct kura_blk_store *s, uint64_t layer, uint64_t ext, kura_blk_cb cb,
		  void *arg);

/* Moves a whole extent to (new_layer, new_ext) without copying data. */
int kura_blk_move(struct kura_blk_store *s, uint64_t layer, uint64_t ext, uint64_t new_layer,
		  uint64_t new_ext, kura_blk_cb cb, void *arg);

/* Completes once everything submitted before it is durable (but for
 * submissions that were still waiting for journal room). */
int kura_blk_flush(struct kura_blk_store *s, kura_blk_cb cb, void *arg);

/* Synchronous, from memory: -ENOENT when the extent is absent. */
int kura_blk_extent_info(struct kura_blk_store *s, uint64_t layer, uint64_t ext,
			 struct kura_blk_extent_info *out);

/* Synchronous: the extent numbers of a layer in ascending order, into a
 * malloc'd array the caller frees. */
int kura_blk_list(struct kura_blk_store *s, uint64_t layer, uint64_t **exts, size_t *n);

/* Synchronous: the ids of every layer holding at least one extent, ascending,
 * into a malloc'd array the caller frees. */
int kura_blk_layers(struct kura_blk_store *s, uint64_t **ids, size_t *n);

/* Extent classes: 16 bits of a hash of an extent's key. Placement masks
 * them to a group number (replication/map.c: groups are a power of two, at
 * most KURA_BLK_CLASSES), so a group is a set of classes. */
#define KURA_BLK_CLASSES 65536u
static inline uint32_t kura_blk_ext_class(uint64_t layer, uint64_t ext)
{
	/* mixing after adding ext sends consecutive extents of one layer to
	 * unrelated classes */
	return (uint32_t)(kura_hash64(kura_hash64(layer ^ 0x6b7572612d6c6179ULL /* "kura-lay" */) +
				      ext) &
			  (KURA_BLK_CLASSES - 1));
}
struct kura_blk_key {
	uint64_t layer, ext;
};
/* From now on the store keeps a list of its extents per class (12 bytes an
 * extent), so that kura_blk_list_classes answers from those lists instead of
 * walking every extent (building them walks every extent once: call it
 * when that costs least). Once per store; -ENOMEM. */
int kura_blk_index_classes(struct kura_blk_store *s);
/* Synchronous: the keys of the extents whose class c has (c & mask) == value
 * (mask + 1 a power of two: a placement group), ascending by (layer, ext),
 * into a malloc'd array the caller frees. Keeps the lists from then on
 * (kura_blk_index_classes) if it did not yet. */
int kura_blk_list_classes(struct kura_blk_store *s, uint32_t mask, uint32_t value,
			  struct kura_blk_key **out, size_t *n);

/* Synchronous: extents and blocks a layer holds (0 and 0 when absent). */
void kura_blk_layer_usage(struct kura_blk_store *s, uint64_t layer, uint64_t *extents,
			  uint64_t *blocks);

/* The node's metadata database, shared with the vdisk catalog (its own key
 * space); valid until the store closes. */
struct kura_md *kura_blk_store_md(struct kura_blk_store *s);

struct kura_blk_stats {
	uint64_t capacity_extents, used_extents;
	uint64_t reads, writes, read_bytes, write_bytes;
	uint64_t direct_writes, direct_bytes; /* of them, written in place first */
	uint64_t queued_reads; /* reads answered from writes not in place yet */
	uint64_t io_errors, crc_errors, enospc;
	uint64_t replica_gaps; /* replica copies written without their version */
	uint64_t journal_bytes, journal_used;
	uint64_t checkpoints;
	/* guest-class reads and writes: arrived, answered, and the time from
	 * one to the other in all (ns): what a scheduler above watches */
	uint64_t guest_started, guest_done, guest_lat_ns;
	uint64_t index_bytes, crc_cache_bytes; /* RAM */
	unsigned ndisks;
	int dead;
};
void kura_blk_stats(struct kura_blk_store *s, struct kura_blk_stats *out);
/* Just the guest-class counts of kura_blk_stats (cheap: for a scheduler's
 * every tick). */
void kura_blk_guest_counts(const struct kura_blk_store *s, uint64_t *started, uint64_t *done,
			   uint64_t *lat_ns);
/* 1 once the store has stopped (a disk failed: writes fail until blockd
 * restarts), else 0. */
int kura_blk_store_dead(const struct kura_blk_store *s);
/* The index of the data disk (never disk 0, the journal's) whose write or
 * flush failed and stopped the store, or -1. Such a disk is recorded as
 * failed in the metadata at once: the store's next open does not use it
 * (kura_blk_opts.drop_failed_disks). A failed journal disk is not recorded:
 * the store cannot go on without its journal. */
int kura_blk_failed_disk(const struct kura_blk_store *s);
/* 1 when fewer extents are free than the store's reserve (1/64 of its
 * capacity, at least 8 and at most 1024 extents), else 0. In a cluster a
 * group's primary takes no write that needs a new extent while one of the
 * group's copies is this low (replication/rep.h): the reserve absorbs the
 * writes already on their way. */
int kura_blk_space_low(const struct kura_blk_store *s);
/* Disk I/O errors so far (a checksum mismatch is not one). */
uint64_t kura_blk_io_errors(const struct kura_blk_store *s);

struct kura_blk_disk_info {
	const char *path;       /* valid until the store closes */
	uint64_t size;          /* bytes */
	uint64_t used_extents;  /* extents allocated on it */
	uint64_t slow_ios;      /* I/Os slower than 100 ms: device stalls */
	uint64_t slow_worst_ns; /* the slowest I/O among them */
	int failed;             /* recorded as failed: not opened, holds nothing */
};
/* Disk i, for status lines: -ENOENT past the last disk. */
int kura_blk_disk_info(struct kura_blk_store *s, unsigned i, struct kura_blk_disk_info *out);

#endif
