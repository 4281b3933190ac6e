/* Disks that are files or block devices, driven through io_uring with O_DIRECT. */
#include "blockd/disk.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

struct file_disk {
	struct kura_disk d;
	int fd;
};

struct rw_req {
	struct kura_op op;
	struct kura_op *user;
	struct kura_disk *d;
	size_t expect;
	uint64_t start_ns;
};

static void rw_done(struct kura_op *op, int res)
{
	struct rw_req *r = KURA_CONTAINER_OF(op, struct rw_req, op);
	struct kura_op *user = r->user;
	uint64_t now = kura_now_ns();

	kura_disk_note_latency(r->d, now - r->start_ns, now);
	if (res >= 0 && (size_t)res != r->expect)
		res = -EIO;
	free(r);
	user->fn(user, res);
}

static void file_rw(struct kura_disk *d, int write, const struct iovec *iov, int iovcnt,
		    uint64_t off, unsigned flags, struct kura_op *op)
{
	struct file_disk *fd = KURA_CONTAINER_OF(d, struct file_disk, d);
	struct rw_req *r = malloc(sizeof(*r));
	struct io_uring_sqe *sqe;
	size_t len = 0;

	if (!r) {
		kura_loop_defer(d->loop, op, -ENOMEM);
		return;
	}
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	r->op.fn = rw_done;
	r->user = op;
	r->expect = len;
	r->d = d;
	r->start_ns = kura_now_ns();
	sqe = kura_loop_sqe(d->loop, &r->op);
	if (iovcnt == 1 && write)
		io_uring_prep_write(sqe, fd->fd, iov->iov_base, (unsigned)len, off);
	else if (iovcnt == 1)
		io_uring_prep_read(sqe, fd->fd, iov->iov_base, (unsigned)len, off);
	else if (write)
		io_uring_prep_writev(sqe, fd->fd, iov, (unsigned)iovcnt, off);
	else
		io_uring_prep_readv(sqe, fd->fd, iov, (unsigned)iovcnt, off);
	if (write && (flags & KURA_DISK_FUA))
		sqe->rw_flags = RWF_DSYNC;
}

void kura_disk_note_latency(struct kura_disk *d, uint64_t ns, uint64_t now_ns)
{
	struct kura_disk_slow *sl = &d->slow;

	if (ns < KURA_DISK_SLOW_NS)
		return;
	sl->ios++;
	sl->worst_ns = KURA_MAX(sl->worst_ns, ns);
	sl->pending++;
	sl->pending_worst_ns = KURA_MAX(sl->pending_worst_ns, ns);
	if (sl->reported_ns && now_ns - sl->reported_ns < KURA_DISK_SLOW_REPORT_NS)
		return;
	kura_log(WARN, "disk %s: %llu I/O(s) took over %llu ms (worst %llu ms): the device stalled",
		 d->path, (unsigned long long)sl->pending,
		 (unsigned long long)(KURA_DISK_SLOW_NS / 1000000),
		 (unsigned long long)(sl->pending_worst_ns / 1000000));
	sl->pending = 0;
	sl->pending_worst_ns = 0;
	sl->reported_ns = now_ns;
}

static void file_flush(struct kura_disk *d, struct kura_op *op)
{
	struct file_disk *fd = KURA_CONTAINER_OF(d, struct file_disk, d);
	struct io_uring_sqe *sqe = kura_loop_sqe(d->loop, op);

	io_uring_prep_fsync(sqe, fd->fd, IORING_FSYNC_DATASYNC);
}

static void file_close(struct kura_disk *d)
{
	struct file_disk *fd = KURA_CONTAINER_OF(d, struct file_disk, d);

	close(fd->fd); /* drops the flock too */
	free(fd);
}

static const struct kura_disk_ops file_ops = {
	.rw = file_rw,
	.flush = file_flush,
	.close = file_close,
};

int kura_disk_file_open(struct kura_loop *loop, const char *path, uint64_t size,
			struct kura_disk **out, int *created, char *errbuf, size_t errlen)
{
	struct file_disk *fd;
	struct stat st;
	int err, f;

	*created = 0;
	f = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (f < 0 && errno == ENOENT) {
		if (!size) {
			snprintf(errbuf, errlen, "disk %s does not exist; give its size with --disk %s,size=SIZE",
				 path, path);
			return -ENOENT;
		}
		f = open(path, O_RDWR | O_DIRECT | O_CLOEXEC | O_CREAT | O_EXCL, 0600);
		if (f >= 0)
			*created = 1;
	}
	if (f < 0) {
		err = -errno;
		snprintf(errbuf, errlen, "cannot open disk %s: %s", path, strerror(errno));
		return err;
	}
	/* A process killed a moment ago still holds its disks until the kernel
	 * has torn down its io_uring; give that a few seconds. */
	for (int i = 0; flock(f, LOCK_EX | LOCK_NB) && errno == EWOULDBLOCK && i < 300; i++)
		usleep(10000);
	if (flock(f, LOCK_EX | LOCK_NB)) {
		err = -errno;
		snprintf(errbuf, errlen, "disk %s is in use by another process (another blockd?)",
			 path);
		close(f);
		return err == -EWOULDBLOCK ? -EBUSY : err;
	}
	if (fstat(f, &st)) {
		err = -errno;
		snprintf(errbuf, errlen, "cannot stat disk %s: %s", path, strerror(errno));
		goto close_fd;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes = 0;
		if (ioctl(f, BLKGETSIZE64, &bytes)) {
			err = -errno;
			snprintf(errbuf, errlen, "cannot size block device %s: %s", path,
				 strerror(errno));
			goto close_fd;
		}
		st.st_size = (off_t)bytes;
	} else if (!S_ISREG(st.st_mode)) {
		err = -EINVAL;
		snprintf(errbuf, errlen, "disk %s is neither a regular file nor a block device",
			 path);
		goto close_fd;
	} else if (*created) {
		/* Allocate now so that a full host filesystem is an error here,
		 * never a failed write after the store has acknowledged it. */
		err = posix_fallocate(f, 0, (off_t)size);
		if (err) {
			char sz[32];
			snprintf(errbuf, errlen, "cannot allocate %s for disk %s: %s",
				 kura_fmt_size(size, sz, sizeof(sz)), path, strerror(err));
			err = -err;
			unlink(path);
			goto close_fd;
		}
		st.st_size = (off_t)size;
	}
	fd = calloc(1, sizeof(*fd));
	if (!fd) {
		err = -ENOMEM;
		snprintf(errbuf, errlen, "out of memory");
		goto close_fd;
	}
	fd->fd = f;
	fd->d.ops = &file_ops;
	fd->d.loop = loop;
	fd->d.size = (uint64_t)st.st_size;
	fd->d.created = *created;
	snprintf(fd->d.path, sizeof(fd->d.path), "%s", path);
	*out = &fd->d;
	return 0;

close_fd:
	close(f);
	return err;
}

struct sync_op {
	struct kura_op op;
	int done, res;
};

static void sync_done(struct kura_op *op, int res)
{
	struct sync_op *s = KURA_CONTAINER_OF(op, struct sync_op, op);

	s->done = 1;
	s->res = res;
}

static int sync_wait(struct kura_disk *d, struct sync_op *s)
{
	while (!s->done)
		kura_loop_run_once(d->loop, 1000000000ULL);
	return s->res;
}

int kura_disk_rw_sync(struct kura_disk *d, int write, void *buf, size_t len, uint64_t off,
		      unsigned flags)
{
	struct sync_op s = { .op.fn = sync_done };
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	int res;

	d->ops->rw(d, write, &iov, 1, off, flags, &s.op);
	res = sync_wait(d, &s);
	return res < 0 ? res : 0;
}

int kura_disk_flush_sync(struct kura_disk *d)
{
	struct sync_op s = { .op.fn = sync_done };

	d->ops->flush(d, &s.op);
	return sync_wait(d, &s);
}
