/* A disk of the pool, as a table of operations.
 *
 * The store drives every disk through these operations only, so the real
 * io_uring implementation (disk_file.c) and the fault-injecting fake disk of
 * the unit tests (tests/unit/fakedisk.c) are interchangeable.
 *
 * Thread rule: a disk belongs to the store's loop thread; operations are
 * called there and complete there (op->fn never runs inside the call).
 * Results: op->fn(op, res) with res = bytes transferred or -errno; a short
 * transfer is reported as -EIO.
 */
#ifndef KURA_BLOCKD_DISK_H
#define KURA_BLOCKD_DISK_H

#include <limits.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/loop.h"

#define KURA_DISK_FUA 1u /* the write is durable when it completes */

struct kura_disk;

struct kura_disk_ops {
	/* Reads (write=0) or writes iovcnt 4 KiB-aligned buffers at byte offset
	 * off (4 KiB aligned). iov must stay valid until op->fn runs. */
	void (*rw)(struct kura_disk *d, int write, const struct iovec *iov, int iovcnt,
		   uint64_t off, unsigned flags, struct kura_op *op);
	/* Makes every write that completed before this call durable. */
	void (*flush)(struct kura_disk *d, struct kura_op *op);
	/* Releases the disk (and its lock); no operation may be in flight. */
	void (*close)(struct kura_disk *d);
};

/* An I/O that takes longer than this is slow: the device (or the layers under
 * it: a host filesystem, a hypervisor's virtual disk) stalled. Counted per
 * disk and logged as a warning at most every KURA_DISK_SLOW_REPORT_NS. */
#define KURA_DISK_SLOW_NS 100000000ull
#define KURA_DISK_SLOW_REPORT_NS 10000000000ull

struct kura_disk_slow {
	uint64_t ios;       /* slow I/Os since open */
	uint64_t worst_ns;  /* the slowest since open */
	uint64_t pending;   /* slow I/Os not yet reported in the log */
	uint64_t pending_worst_ns;
	uint64_t reported_ns; /* when the log last reported them */
};

struct kura_disk {
	const struct kura_disk_ops *ops;
	struct kura_loop *loop;
	char path[PATH_MAX];
	uint64_t size; /* bytes */
	int created;   /* the file was created by this open */
	struct kura_disk_slow slow; /* filled by implementations that time their I/O */
};

/* Records an I/O that took ns nanoseconds (ended at now_ns); counts and logs
 * it when it is slow. Loop thread. */
void kura_disk_note_latency(struct kura_disk *d, uint64_t ns, uint64_t now_ns);

/* Opens a file or block device with O_DIRECT and takes an exclusive lock on
 * it. A missing file is created and allocated at `size` bytes (*created set).
 * Errors: -EBUSY (locked by another process), -ENOSPC, -errno; errbuf says why. */
int kura_disk_file_open(struct kura_loop *loop, const char *path, uint64_t size,
			struct kura_disk **out, int *created, char *errbuf, size_t errlen);

/* Run one operation to completion by turning the loop (startup and shutdown
 * only). Return 0 or -errno. */
int kura_disk_rw_sync(struct kura_disk *d, int write, void *buf, size_t len, uint64_t off,
		      unsigned flags);
int kura_disk_flush_sync(struct kura_disk *d);

#endif
